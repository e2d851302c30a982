//! `--slots N` against a real etcd: N children across the replicas, each on its own slot 0..N-1,
//! never two on one slot at once; a holder's slot goes to a standby under the same number (at once
//! on SIGTERM, within the TTL on SIGKILL, after failed health checks); replicas that disagree on N
//! are refused with exit code 2; and `--slots 1` keeps the singleton's etcd keys exactly.
//!
//! Children are `tests/programs/slot_worker.py`, which records start/stop with its slot on the boot
//! clock and detects overlap on its slot by itself (it checks whether any other worker of the same
//! slot is alive when it starts).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::worker::{assert_no_slot_overlap, slot_events, slot_starts, SlotEv};
use crate::support::{
    alive, bin, boot_ns, free_port, http, program, run_subcommand, wait_for, EtcdCluster, Replica,
};

const LONG: Duration = Duration::from_secs(30);
const PREFIX: &str = "/singleton-exec";

/// `--election ELECTION [--slots N] EXTRA -- python3 slot_worker.py DIR`; no `--slots` flag at all
/// when `slots` is `None`.
fn args(election: &str, slots: Option<u32>, extra: &[&str], dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["--election".into(), election.into()];
    if let Some(n) = slots {
        args.extend(["--slots".into(), n.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--".into(),
        "python3".into(),
        program("slot_worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ]);
    args
}

/// A replica running [`args`].
fn replica(
    name: &str,
    etcd: &EtcdCluster,
    election: &str,
    slots: Option<u32>,
    extra: &[&str],
    dir: &Path,
) -> Replica {
    Replica::start(name, &etcd.endpoints(), &args(election, slots, extra, dir))
}

/// A replica running [`args`] without `--slots`, the count given as `SINGLETON_EXEC_SLOTS=N`.
fn replica_slots_env(
    name: &str,
    etcd: &EtcdCluster,
    election: &str,
    n: u32,
    extra: &[&str],
    dir: &Path,
) -> Replica {
    let mut cmd = Command::new(bin());
    cmd.env("SINGLETON_EXEC_SLOTS", n.to_string())
        .arg("--endpoints")
        .arg(etcd.endpoints())
        .arg("--id")
        .arg(name)
        .args(args(election, None, extra, dir));
    Replica::spawn(name, cmd)
}

fn logs(rs: &[Replica]) -> String {
    rs.iter()
        .map(|r| format!("--- {} ---\n{}", r.name, r.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_starts(dir: &Path, n: usize, what: impl FnOnce() -> String) {
    wait_for(
        LONG,
        || slot_starts(dir).len() >= n,
        || {
            format!(
                "expected {n} child starts, have {:?}\n{}",
                slot_events(dir),
                what()
            )
        },
    );
}

/// `cond` holds at every look for `period` (a negative check: nothing moves meanwhile).
fn holds_for(period: Duration, mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(cond(), "{}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last child started on each slot.
fn latest(dir: &Path) -> BTreeMap<u32, SlotEv> {
    slot_starts(dir).into_iter().map(|e| (e.slot, e)).collect()
}

/// One key as etcd has it.
#[derive(Debug, Clone)]
struct Kv {
    key: String,
    value: String,
    lease: i64,
    create_revision: i64,
}

/// Every key in etcd (each test has its own etcd), sorted by key, but the tree markers
/// (`PREFIX/NAME@tree/<lease hex>`, one per replica whatever its layout: see [`tree_markers`]).
fn all_keys(etcd: &EtcdCluster) -> Vec<Kv> {
    every_key(etcd)
        .into_iter()
        .filter(|kv| !kv.key.contains("@tree/"))
        .collect()
}

/// The tree markers in etcd: `PREFIX/NAME@tree/<lease hex>`, each on a lease of its own (its
/// replica's tree lease, not the lease its name says).
fn tree_markers(etcd: &EtcdCluster) -> Vec<Kv> {
    let markers: Vec<Kv> = every_key(etcd)
        .into_iter()
        .filter(|kv| kv.key.contains("@tree/"))
        .collect();
    for m in &markers {
        let named = i64::from_str_radix(m.key.rsplit('/').next().unwrap(), 16).unwrap();
        assert!(m.lease > 0 && m.lease != named, "{m:?}");
    }
    markers
}

fn every_key(etcd: &EtcdCluster) -> Vec<Kv> {
    crate::support::runtime().block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
            .await
            .unwrap();
        c.get("", Some(etcd_client::GetOptions::new().with_all_keys()))
            .await
            .unwrap()
            .kvs()
            .iter()
            .map(|kv| Kv {
                key: kv.key_str().unwrap().to_owned(),
                value: kv.value_str().unwrap().to_owned(),
                lease: kv.lease(),
                create_revision: kv.create_revision(),
            })
            .collect()
    })
}

/// `PREFIX/NAME@slots/N/`
fn slots_dir(election: &str, n: u32) -> String {
    format!("{PREFIX}/{election}@slots/{n}/")
}

/// The keys under `PREFIX/NAME@slots/N/SUB/`.
fn keys_under(etcd: &EtcdCluster, election: &str, n: u32, sub: &str) -> Vec<Kv> {
    let dir = format!("{}{sub}/", slots_dir(election, n));
    all_keys(etcd)
        .into_iter()
        .filter(|kv| kv.key.starts_with(&dir))
        .collect()
}

/// Waits until both slots of a `--slots 2` election are held and `standbys` replicas queue.
fn wait_settled(etcd: &EtcdCluster, election: &str, standbys: usize, rs: &[Replica]) {
    wait_for(
        LONG,
        || {
            keys_under(etcd, election, 2, "slot").len() == 2
                && keys_under(etcd, election, 2, "queue").len() == standbys
        },
        || format!("keys: {:#?}\n{}", all_keys(etcd), logs(rs)),
    );
}

fn index_of(rs: &[Replica], id: &str) -> usize {
    rs.iter()
        .position(|r| r.name == id)
        .unwrap_or_else(|| panic!("no replica {id}"))
}

/// The slot key's lease in hex, as etcd's concurrency layout spells it in the key.
fn lease_hex(lease: i64) -> String {
    format!("{lease:x}")
}

#[test]
fn four_replicas_with_two_slots_run_two_children_on_slots_0_and_1() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let election = "two";
    // d gets the count from the environment (SINGLETON_EXEC_SLOTS), the others from --slots.
    let mut rs: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| replica(n, &etcd, election, Some(2), &["--ttl", "5s"], dir.path()))
        .collect();
    rs.push(replica_slots_env(
        "d",
        &etcd,
        election,
        2,
        &["--ttl", "5s"],
        dir.path(),
    ));
    wait_starts(dir.path(), 2, || logs(&rs));
    wait_settled(&etcd, election, 2, &rs);
    for r in &rs {
        r.wait_log("role=\"standby\"", LONG);
    }
    // Two children and no third, for a while.
    holds_for(
        Duration::from_secs(3),
        || slot_starts(dir.path()).len() == 2,
        || {
            format!(
                "a third child: {:?}\n{}",
                slot_events(dir.path()),
                logs(&rs)
            )
        },
    );

    let starts = slot_starts(dir.path());
    let mut slots: Vec<u32> = starts.iter().map(|e| e.slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1], "{starts:?}");
    assert_ne!(
        starts[0].id, starts[1].id,
        "one replica, two slots: {starts:?}"
    );
    let slot_keys = keys_under(&etcd, election, 2, "slot");
    for e in &starts {
        assert!(alive(e.pid), "child of slot {} is gone: {e:?}", e.slot);
        assert_eq!(e.slot_count, 2, "{e:?}");
        let key = format!("{}slot/{}", slots_dir(election, 2), e.slot);
        assert_eq!(e.key, key, "SINGLETON_EXEC_LEADER_KEY is the slot key");
        assert_eq!(e.lock_key, key, "ETCD_LOCK_KEY is the slot key");
        let kv = slot_keys
            .iter()
            .find(|kv| kv.key == key)
            .unwrap_or_else(|| panic!("no {key} in {slot_keys:?}"));
        assert_eq!(kv.value, e.id, "the slot key names its holder");
        assert_eq!(
            e.revision, kv.create_revision,
            "SINGLETON_EXEC_REVISION is the slot key's create-revision"
        );
        assert!(rs[index_of(&rs, &e.id)].is_leader());
    }
    // The other two are standbys: queued, each under its own lease, and never led.
    let holders: Vec<&str> = starts.iter().map(|e| e.id.as_str()).collect();
    let mut queued: Vec<String> = keys_under(&etcd, election, 2, "queue")
        .iter()
        .map(|kv| {
            let hex = kv.key.rsplit('/').next().unwrap();
            assert_eq!(hex, lease_hex(kv.lease), "a queue key is its lease: {kv:?}");
            kv.value.clone()
        })
        .collect();
    queued.sort();
    let mut standbys: Vec<String> = rs
        .iter()
        .filter(|r| !holders.contains(&r.name.as_str()))
        .map(|r| r.name.clone())
        .collect();
    standbys.sort();
    assert_eq!(queued, standbys);
    for name in &standbys {
        let r = &rs[index_of(&rs, name)];
        assert!(!r.is_leader(), "standby {name} led:\n{}", r.log());
    }
    // Nothing outside the slots layout of this count (no singleton key), but one tree marker
    // per replica, each naming a candidacy lease that holds a key of the layout.
    let keys = all_keys(&etcd);
    for kv in &keys {
        assert!(kv.key.starts_with(&slots_dir(election, 2)), "{kv:?}");
    }
    let markers = tree_markers(&etcd);
    assert_eq!(markers.len(), rs.len(), "{markers:#?}");
    for m in &markers {
        assert!(
            m.key.starts_with(&format!("{PREFIX}/{election}@tree/")),
            "{m:?}"
        );
        assert_eq!(m.value, "live", "{m:?}");
        let named = i64::from_str_radix(m.key.rsplit('/').next().unwrap(), 16).unwrap();
        assert!(
            keys.iter().any(|kv| kv.lease == named),
            "{m:?} names no key's lease"
        );
    }
    assert_no_slot_overlap(dir.path());
}

#[test]
fn sigterm_of_a_holder_hands_its_slot_to_a_standby_under_the_same_number() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let election = "term";
    let mut rs: Vec<Replica> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| replica(n, &etcd, election, Some(2), &["--ttl", "10s"], dir.path()))
        .collect();
    wait_starts(dir.path(), 2, || logs(&rs));
    wait_settled(&etcd, election, 2, &rs);
    // Round 1 frees slot 0, round 2 slot 1; each time a standby takes it.
    for (round, slot) in [(1usize, 0u32), (2, 1)] {
        let now = latest(dir.path());
        let (old, other) = (now[&slot].clone(), now[&(1 - slot)].clone());
        let standbys: Vec<String> = rs
            .iter()
            .filter(|r| r.name != old.id && r.name != other.id)
            .map(|r| r.name.clone())
            .collect();
        let l = index_of(&rs, &old.id);
        rs[l].signal(libc::SIGTERM);
        assert_eq!(
            rs[l].wait(LONG),
            0,
            "the holder exits with its child's status:\n{}",
            rs[l].log()
        );
        wait_starts(dir.path(), 2 + round, || logs(&rs));
        let new = slot_starts(dir.path()).last().cloned().unwrap();
        let evs = slot_events(dir.path());
        assert_eq!(new.slot, slot, "the standby took another slot: {evs:?}");
        assert!(standbys.contains(&new.id), "{new:?} not of {standbys:?}");
        assert!(
            new.revision > old.revision,
            "the slot's fencing revision must grow: {old:?} -> {new:?}"
        );
        let stop = evs
            .iter()
            .find(|e| e.kind == "stop" && e.pid == old.pid)
            .unwrap_or_else(|| panic!("the old child got no stop signal: {evs:?}"));
        assert!(stop.boot_ns < new.boot_ns, "{evs:?}");
        assert!(!alive(old.pid));
        let handoff = Duration::from_nanos((new.boot_ns - stop.boot_ns) as u64);
        println!("slot {slot}: old child stopped -> new child started: {handoff:?}");
        assert!(
            handoff < Duration::from_secs(5),
            "a graceful handoff must not wait for the 10 s TTL: {handoff:?}"
        );
        // The other slot's child is untouched.
        assert!(alive(other.pid), "the other slot's child is gone: {evs:?}");
        assert!(
            !evs.iter().any(|e| e.pid == other.pid && e.kind != "start"),
            "{evs:?}"
        );
        rs.remove(l);
        wait_settled(&etcd, election, 2 - round, &rs);
    }
    holds_for(
        Duration::from_secs(2),
        || slot_starts(dir.path()).len() == 4,
        || format!("{:?}\n{}", slot_events(dir.path()), logs(&rs)),
    );
    assert_no_slot_overlap(dir.path());
}

#[test]
fn sigkill_of_a_holder_hands_its_slot_to_a_standby_within_the_ttl() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let election = "kill";
    let ttl = Duration::from_secs(3);
    let mut rs: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| replica(n, &etcd, election, Some(2), &["--ttl", "3s"], dir.path()))
        .collect();
    wait_starts(dir.path(), 2, || logs(&rs));
    wait_settled(&etcd, election, 1, &rs);
    let now = latest(dir.path());
    let (old, other) = (now[&0].clone(), now[&1].clone());
    let standby = rs
        .iter()
        .find(|r| r.name != old.id && r.name != other.id)
        .unwrap()
        .name
        .clone();
    let l = index_of(&rs, &old.id);
    let killed_at = Instant::now();
    rs[l].signal(libc::SIGKILL);
    wait_for(
        Duration::from_secs(5),
        || !alive(old.pid),
        || "the child survived SIGKILL of its supervisor (guard)".into(),
    );
    wait_starts(dir.path(), 3, || logs(&rs));
    let took = killed_at.elapsed();
    println!("slot 0: takeover after SIGKILL of its holder (TTL 3s): {took:?}");
    let new = slot_starts(dir.path()).last().cloned().unwrap();
    let evs = slot_events(dir.path());
    assert_eq!(new.slot, 0, "{evs:?}");
    assert_eq!(new.id, standby, "{evs:?}");
    assert!(new.revision > old.revision, "{old:?} -> {new:?}");
    assert!(
        took >= Duration::from_secs(2),
        "took over before the lease could expire: {took:?}"
    );
    assert!(
        took < ttl + Duration::from_secs(7),
        "took {took:?} with a TTL of {ttl:?}"
    );
    assert_eq!(rs[l].wait(LONG), 128 + libc::SIGKILL);
    assert!(alive(other.pid), "the other slot's child is gone: {evs:?}");
    assert!(
        !evs.iter().any(|e| e.pid == other.pid && e.kind != "start"),
        "{evs:?}"
    );
    rs.remove(l);
    // The dead holder's keys went with its lease; nobody queues any more.
    wait_settled(&etcd, election, 0, &rs);
    assert_no_slot_overlap(dir.path());
}

/// `etcdctl` (API v3) against `etcd`.
fn etcdctl(etcd: &EtcdCluster, args: &[&str]) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints()))
        .args(args);
    cmd
}

/// Starts a replica that must be refused: exit code 2, and a log that says `--slots`.
fn assert_refused(name: &str, etcd: &EtcdCluster, election: &str, slots: Option<u32>, dir: &Path) {
    let mut r = replica(name, etcd, election, slots, &["--ttl", "5s"], dir);
    let code = r.wait(LONG);
    assert_eq!(
        code,
        2,
        "{name} (--slots {slots:?}) in election {election}:\n{}",
        r.log()
    );
    assert!(
        r.log().contains("--slots"),
        "{name}: the log does not say why:\n{}",
        r.log()
    );
}

#[test]
fn a_mismatched_slot_count_is_refused() {
    let etcd = EtcdCluster::single();

    // Two --slots 2 replicas hold both slots; other counts (and the singleton) are refused.
    let dir = tempfile::tempdir().unwrap();
    let rs: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|n| replica(n, &etcd, "mm", Some(2), &["--ttl", "5s"], dir.path()))
        .collect();
    wait_starts(dir.path(), 2, || logs(&rs));
    wait_settled(&etcd, "mm", 0, &rs);
    let running = latest(dir.path());
    assert_refused("c", &etcd, "mm", Some(3), dir.path());
    assert_refused("d", &etcd, "mm", Some(1), dir.path());
    assert_refused("e", &etcd, "mm", None, dir.path());
    // A standby of the right count still joins.
    let f = replica("f", &etcd, "mm", Some(2), &["--ttl", "5s"], dir.path());
    f.wait_log("role=\"standby\"", LONG);
    // The refused replicas' keys went with their (revoked) leases.
    wait_for(
        LONG,
        || {
            let keys = all_keys(&etcd);
            keys.len() == 3
                && keys
                    .iter()
                    .all(|kv| kv.key.starts_with(&slots_dir("mm", 2)))
        },
        || format!("{:#?}", all_keys(&etcd)),
    );
    assert_eq!(
        slot_starts(dir.path()).len(),
        2,
        "{:?}",
        slot_events(dir.path())
    );
    for e in running.values() {
        assert!(alive(e.pid), "{e:?}");
    }
    assert!(
        !slot_events(dir.path()).iter().any(|e| e.kind == "stop"),
        "{:?}",
        slot_events(dir.path())
    );

    // A --slots 1 replica leads: a --slots 2 replica is refused.
    let dir1 = tempfile::tempdir().unwrap();
    let single = replica("g", &etcd, "mm1", Some(1), &["--ttl", "5s"], dir1.path());
    wait_starts(dir1.path(), 1, || single.log());
    assert_refused("h", &etcd, "mm1", Some(2), dir1.path());
    assert!(alive(slot_starts(dir1.path())[0].pid), "{}", single.log());
    assert_eq!(slot_starts(dir1.path()).len(), 1);
    wait_for(
        LONG,
        || {
            all_keys(&etcd)
                .iter()
                .filter(|kv| kv.key.starts_with(&format!("{PREFIX}/mm1")))
                .count()
                == 1
        },
        || format!("{:#?}", all_keys(&etcd)),
    );

    // `etcdctl lock PREFIX/NAME` holds: a --slots 2 replica is refused.
    let lock = format!("{PREFIX}/mmlock");
    let mut hold = Replica::spawn("etcdctl-lock", etcdctl(&etcd, &["lock", &lock]));
    hold.wait_stdout(&format!("{lock}/"), LONG);
    let dir2 = tempfile::tempdir().unwrap();
    assert_refused("i", &etcd, "mmlock", Some(2), dir2.path());
    assert!(
        hold.try_status().is_none(),
        "etcdctl lock ended: {}",
        hold.log()
    );
    assert!(slot_starts(dir2.path()).is_empty());
    wait_for(
        LONG,
        || {
            all_keys(&etcd)
                .iter()
                .filter(|kv| kv.key.starts_with(&lock))
                .count()
                == 1
        },
        || format!("{:#?}", all_keys(&etcd)),
    );

    // Nothing of all that touched the first election's children.
    assert_eq!(slot_starts(dir.path()).len(), 2);
    for e in running.values() {
        assert!(alive(e.pid), "{e:?}");
    }
    assert_no_slot_overlap(dir.path());
}

/// Every key in `keys` under `PREFIX/NAME/` is a singleton candidate's: `PREFIX/NAME/<lease hex>`,
/// attached to that lease, its value a replica id; returns the ids in key order.
fn singleton_ids(keys: &[Kv], election: &str) -> Vec<String> {
    let dir = format!("{PREFIX}/{election}/");
    keys.iter()
        .filter(|kv| kv.key.starts_with(&dir))
        .map(|kv| {
            let hex = &kv.key[dir.len()..];
            assert_eq!(hex, lease_hex(kv.lease), "{kv:?}");
            assert!(kv.lease > 0, "{kv:?}");
            kv.value.clone()
        })
        .collect()
}

#[test]
fn with_one_slot_the_keys_in_etcd_are_exactly_the_singletons() {
    let etcd = EtcdCluster::single();
    // Three elections: --slots 1 twice; no flag twice; one of each (a rolling upgrade's mix).
    type Member = (&'static str, Option<u32>);
    let runs: [(&str, [Member; 2]); 3] = [
        ("one", [("a", Some(1)), ("b", Some(1))]),
        ("plain", [("c", None), ("d", None)]),
        ("mixed", [("e", None), ("f", Some(1))]),
    ];
    let dirs: Vec<tempfile::TempDir> = runs.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut all: Vec<Replica> = Vec::new();
    for ((election, members), dir) in runs.iter().zip(&dirs) {
        let first = replica(
            members[0].0,
            &etcd,
            election,
            members[0].1,
            &["--ttl", "5s"],
            dir.path(),
        );
        wait_starts(dir.path(), 1, || first.log());
        let second = replica(
            members[1].0,
            &etcd,
            election,
            members[1].1,
            &["--ttl", "5s"],
            dir.path(),
        );
        second.wait_log("role=\"standby\"", LONG);
        all.extend([first, second]);
    }
    let keys = all_keys(&etcd);
    for ((election, members), dir) in runs.iter().zip(&dirs) {
        let ids = singleton_ids(&keys, election);
        let want: Vec<String> = members.iter().map(|(n, _)| n.to_string()).collect();
        let mut got = ids.clone();
        got.sort();
        assert_eq!(got, want, "{election}: one key per replica: {keys:#?}");
        // The child of a singleton gets slot 0 of 1 and the election's leader key.
        let starts = slot_starts(dir.path());
        assert_eq!(starts.len(), 1, "{election}: {starts:?}");
        let leader = &starts[0];
        assert_eq!(leader.id, members[0].0, "{election}");
        assert_eq!((leader.slot, leader.slot_count), (0, 1), "{leader:?}");
        let kv = keys.iter().find(|kv| kv.key == leader.key).unwrap();
        assert_eq!(kv.value, leader.id);
        assert_eq!(kv.create_revision, leader.revision, "{leader:?}");
    }
    // No other key at all: no `@slots`, no `@health`, no `@resign`.
    assert_eq!(keys.len(), 6, "{keys:#?}");
    assert!(!keys.iter().any(|kv| kv.key.contains('@')), "{keys:#?}");
    assert!(
        all.iter().all(|r| !r.log().contains("--slots")),
        "{}",
        logs(&all)
    );
}

/// `--health-addr PORT`'s /status.
fn status(port: u16) -> serde_json::Value {
    serde_json::from_str(&http("GET", port, "/status").1).unwrap_or_default()
}

#[test]
fn a_slot_holder_that_fails_its_health_check_hands_its_slot_over() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let election = "health";
    // Fails while DIR/wedged-ID exists for the holder running it.
    let check = format!(
        "test ! -e {}/wedged-$SINGLETON_EXEC_LEADER_ID",
        dir.path().display()
    );
    let (interval, retries, grace) = (Duration::from_millis(500), 3u32, Duration::from_secs(2));
    let names = ["a", "b", "c"];
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let rs: Vec<Replica> = names
        .iter()
        .zip(&ports)
        .map(|(n, port)| {
            let port = port.to_string();
            let opts = [
                "--ttl",
                "5s",
                "--grace",
                "2s",
                "--resign-holdoff",
                "1s",
                "--health-addr",
                &port,
                "--health-cmd",
                &check,
                "--health-interval",
                "500ms",
                "--health-timeout",
                "500ms",
                "--health-retries",
                "3",
            ];
            replica(n, &etcd, election, Some(2), &opts, dir.path())
        })
        .collect();
    wait_starts(dir.path(), 2, || logs(&rs));
    wait_settled(&etcd, election, 1, &rs);
    let now = latest(dir.path());
    let (old, other) = (now[&1].clone(), now[&0].clone());
    let standby = rs
        .iter()
        .find(|r| r.name != old.id && r.name != other.id)
        .unwrap()
        .name
        .clone();
    let w = index_of(&rs, &old.id);
    // Both holders show a passed check, each on its slot's health key.
    let healthy = |slot: u32, holder: &SlotEv| {
        keys_under(&etcd, election, 2, "health")
            .iter()
            .find(|kv| kv.key == format!("{}health/{slot}", slots_dir(election, 2)))
            .and_then(|kv| serde_json::from_str::<serde_json::Value>(&kv.value).ok())
            .is_some_and(|v| {
                v["id"] == holder.id.as_str()
                    && v["key"] == holder.key.as_str()
                    && v["fencing_revision"] == holder.revision
                    && v["healthy"] == true
            })
    };
    wait_for(
        LONG,
        || healthy(1, &old) && healthy(0, &other),
        || format!("{:#?}\n{}", all_keys(&etcd), logs(&rs)),
    );

    let wedged_at = boot_ns();
    std::fs::write(dir.path().join(format!("wedged-{}", old.id)), "").unwrap();
    wait_starts(dir.path(), 3, || logs(&rs));
    let new = slot_starts(dir.path()).last().cloned().unwrap();
    let evs = slot_events(dir.path());
    let took = Duration::from_nanos((new.boot_ns - wedged_at) as u64);
    println!("slot 1: wedged -> the standby's child started: {took:?}");
    assert_eq!(new.slot, 1, "{evs:?}");
    assert_eq!(new.id, standby, "{evs:?}");
    assert!(new.revision > old.revision, "{old:?} -> {new:?}");
    let bound = interval * retries + grace + Duration::from_secs(3);
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    let stop = evs
        .iter()
        .find(|e| e.kind == "stop" && e.pid == old.pid)
        .unwrap_or_else(|| panic!("the wedged holder's child was not stopped: {evs:?}"));
    assert!(stop.boot_ns < new.boot_ns, "{evs:?}");
    assert!(
        rs[w]
            .log()
            .contains("failed 3 times in a row: stepping down"),
        "{}",
        rs[w].log()
    );
    // The other slot is untouched.
    assert!(alive(other.pid), "{evs:?}");
    assert!(
        !evs.iter().any(|e| e.pid == other.pid && e.kind != "start"),
        "{evs:?}"
    );
    // The unhealthy replica stays up, as a standby in the queue; the new holder shows its health.
    wait_for(
        LONG,
        || status(ports[w])["role"] == "standby",
        || rs[w].log(),
    );
    wait_settled(&etcd, election, 1, &rs);
    let queued = keys_under(&etcd, election, 2, "queue");
    assert_eq!(queued[0].value, old.id, "{queued:?}");
    wait_for(
        LONG,
        || healthy(1, &new),
        || format!("{:#?}\n{}", all_keys(&etcd), logs(&rs)),
    );
    holds_for(
        Duration::from_secs(2),
        || slot_starts(dir.path()).len() == 3,
        || format!("{:?}\n{}", slot_events(dir.path()), logs(&rs)),
    );
    assert!(alive(other.pid) && alive(new.pid));
    assert_no_slot_overlap(dir.path());
}

#[test]
fn slot_counts_outside_1_to_1024_are_usage_errors() {
    for n in ["0", "1025", "-1", "two"] {
        let out = Command::new(bin())
            .args(["--endpoints", "http://127.0.0.1:1"])
            .arg(format!("--slots={n}"))
            .args(["--", "true"])
            .env_remove("SINGLETON_EXEC_ENDPOINTS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--slots {n}: {stderr}");
        assert!(stderr.contains("--slots"), "--slots {n}: {stderr}");
    }
}

fn metric(port: u16, line: &str) -> bool {
    http("GET", port, "/metrics").1.lines().any(|l| l == line)
}

#[test]
fn status_resign_and_the_endpoints_show_every_slot() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let election = "ops";
    let names = ["a", "b", "c"];
    let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
    let mut rs: Vec<Replica> = names
        .iter()
        .zip(&ports)
        .map(|(n, port)| {
            let addr = format!("127.0.0.1:{port}");
            let extra = ["--health-addr", addr.as_str(), "--resign-holdoff", "1s"];
            replica(n, &etcd, election, Some(2), &extra, dir.path())
        })
        .collect();
    wait_starts(dir.path(), 2, || logs(&rs));
    wait_settled(&etcd, election, 1, &rs);
    let held = latest(dir.path());
    let standby = names
        .iter()
        .find(|n| held.values().all(|e| e.id != **n))
        .unwrap()
        .to_string();

    // Text: every slot's holder, then the standby; exit 0 with every slot held.
    let out = run_subcommand("status", &etcd, &["--election", election]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("slots:      2 (2 held)\n"), "{text}");
    for (slot, e) in &held {
        let line = format!(
            "slot {slot}:     {}  key={}  ",
            e.id,
            slots_dir(election, 2) + &format!("slot/{slot}")
        );
        assert!(text.contains(&line), "{line:?} in\n{text}");
        assert!(
            text.contains(&format!("fencing_revision={}\n", e.revision)),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!("standbys:   1\n  1. {standby}  key=")),
        "{text}"
    );

    // JSON: the same, by slot.
    let out = run_subcommand(
        "status",
        &etcd,
        &["--election", election, "--output", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["slots"].as_u64(), v["held"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    for (slot, e) in &held {
        let h = &v["holders"][*slot as usize];
        assert_eq!(h["slot"].as_u64(), Some(u64::from(*slot)), "{v}");
        assert_eq!(h["id"].as_str(), Some(e.id.as_str()), "{v}");
        assert_eq!(h["fencing_revision"].as_i64(), Some(e.revision), "{v}");
    }
    assert_eq!(
        v["standbys"][0]["id"].as_str(),
        Some(standby.as_str()),
        "{v}"
    );

    // A holder's own endpoints: its slot, every slot's holder, the per-slot metric.
    let one = &held[&1];
    let port1 = ports[index_of(&rs, &one.id)];
    let st = status(port1);
    assert_eq!(
        (st["slot"].as_u64(), st["slots"].as_u64()),
        (Some(1), Some(2)),
        "{st}"
    );
    assert_eq!(
        st["slot_holders"][0]["id"].as_str(),
        Some(held[&0].id.as_str()),
        "{st}"
    );
    assert!(metric(port1, "singleton_exec_slot_leading{slot=\"1\"} 1"));

    // `resign` needs a slot, in range.
    let out = run_subcommand("resign", &etcd, &["--election", election]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--slot"));
    let out = run_subcommand("resign", &etcd, &["--election", election, "--slot", "2"]);
    assert_eq!(out.status.code(), Some(2));

    // `resign --slot 1`: its holder steps down, the standby takes slot 1, slot 0 is untouched.
    let out = run_subcommand("resign", &etcd, &["--election", election, "--slot", "1"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}\n{}", logs(&rs));
    assert!(
        said.contains(&format!("stepped down: {} ", one.id)),
        "{said}"
    );
    assert!(
        said.contains(&format!("slot 1 now:   {standby} ")),
        "{said}"
    );
    wait_for(
        LONG,
        || latest(dir.path())[&1].pid != one.pid,
        || format!("{:?}\n{}", slot_events(dir.path()), logs(&rs)),
    );
    let now = latest(dir.path());
    assert_eq!(now[&1].id, standby);
    assert!(now[&1].revision > one.revision);
    assert_eq!(now[&0].pid, held[&0].pid);
    assert!(alive(held[&0].pid));
    wait_for(
        LONG,
        || metric(port1, "singleton_exec_slot_leading{slot=\"1\"} 0"),
        || http("GET", port1, "/metrics").1,
    );
    assert_no_slot_overlap(dir.path());

    // With fewer replicas than slots, `status` shows the free slot and exits 1.
    wait_settled(&etcd, election, 1, &rs);
    let gone = index_of(&rs, &one.id); // the standby now
    rs[gone].signal(libc::SIGTERM);
    assert_eq!(rs[gone].wait(LONG), 0);
    let zero = index_of(&rs, &held[&0].id);
    rs[zero].signal(libc::SIGTERM);
    rs[zero].wait(LONG);
    wait_for(
        LONG,
        || {
            run_subcommand("status", &etcd, &["--election", election])
                .status
                .code()
                == Some(1)
        },
        || {
            String::from_utf8_lossy(
                &run_subcommand("status", &etcd, &["--election", election]).stdout,
            )
            .into_owned()
        },
    );
    let text =
        String::from_utf8_lossy(&run_subcommand("status", &etcd, &["--election", election]).stdout)
            .into_owned();
    assert!(
        text.contains("slots:      2 (1 held)\nslot 0:     none\n"),
        "{text}"
    );
}

/// The store revision: it moves with every write, and only with writes (keepalives and lease
/// grants do not move it).
fn store_revision(etcd: &EtcdCluster) -> i64 {
    crate::support::runtime().block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
            .await
            .unwrap();
        c.get("/", None).await.unwrap().header().unwrap().revision()
    })
}

/// A refused replica must write nothing: were it to put its key before finding the conflict, a
/// rightful replica joining at that moment would see that key and refuse in turn (a crash-looping
/// misconfigured replica would take the others down one rejoin at a time).
#[test]
fn a_refused_replica_writes_nothing_to_etcd() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let rs: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|n| replica(n, &etcd, "w", Some(2), &[], dir.path()))
        .collect();
    wait_starts(dir.path(), 2, || logs(&rs));
    let single = replica("s", &etcd, "w1", None, &[], dir.path());
    wait_starts(dir.path(), 3, || logs(&rs) + &single.log());
    let before = store_revision(&etcd);
    assert_refused("c", &etcd, "w", Some(3), dir.path());
    assert_refused("d", &etcd, "w", Some(1), dir.path());
    assert_refused("e", &etcd, "w1", Some(2), dir.path());
    assert_eq!(
        store_revision(&etcd),
        before,
        "a refused replica wrote to etcd: {:#?}",
        all_keys(&etcd)
    );
}

/// An operator's `etcdctl del --prefix` on the slots while one holder is cut off from etcd: that
/// holder cannot see the deletion and its child runs on. Every other replica sees its own key
/// deleted (a holder its slot key, a standby its queue key) and joins again; whoever then claims
/// the cut-off holder's slot must first wait for that holder's lease (which it revokes once it sees
/// the deletion and its child is dead), as a new singleton leader does.
#[test]
fn after_the_slots_are_deleted_a_cut_off_holders_slot_is_claimed_only_once_it_is_gone() {
    use crate::support::proxy::FaultProxy;
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let election = "former";
    // The proxy drops bytes while cut: a keepalive during the cut must fail for a to give the
    // connection up, so a keeps them frequent.
    let a = Replica::start(
        "a",
        &proxy.url,
        &args(
            election,
            Some(2),
            &["--grace", "1s", "--keepalive-interval", "300ms"],
            dir.path(),
        ),
    );
    wait_starts(dir.path(), 1, || a.log());
    let rs: Vec<Replica> = ["b", "c"]
        .iter()
        .map(|n| replica(n, &etcd, election, Some(2), &[], dir.path()))
        .collect();
    wait_settled(&etcd, election, 1, &rs);
    let a_slot = latest(dir.path())
        .values()
        .find(|e| e.id == "a")
        .expect("a holds a slot")
        .slot;
    proxy.cut();
    let root = format!("{PREFIX}/{election}@slots/");
    crate::support::runtime().block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
            .await
            .unwrap();
        c.delete(root, Some(etcd_client::DeleteOptions::new().with_prefix()))
            .await
            .unwrap();
    });
    // The others join again at once; a's slot would be claimed within milliseconds without the
    // wait. a sees the deletion only once its connection is back.
    std::thread::sleep(Duration::from_millis(800));
    proxy.heal();
    wait_for(
        LONG,
        || {
            slot_starts(dir.path())
                .iter()
                .any(|e| e.slot == a_slot && e.id != "a")
        },
        || format!("{:?}\n{}\n{}", slot_events(dir.path()), a.log(), logs(&rs)),
    );
    assert_no_slot_overlap(dir.path());
    assert!(
        slot_events(dir.path()).iter().all(|e| e.overlap == 0),
        "two children on one slot: {:?}\na:\n{}\n{}",
        slot_events(dir.path()),
        a.log(),
        logs(&rs)
    );
}
