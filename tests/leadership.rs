//! Leadership against a real etcd: one child at a time, handoffs, crash takeover, partitions, etcd
//! faults, every --on-child-exit/--on-lease-lost mode, --acquire-timeout and `status`.
//!
//! Children are `tests/programs/worker.py`, which records start/stop on the boot clock and detects
//! overlap by itself (it checks whether any other worker is alive when it starts).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::proxy::FaultProxy;
use crate::support::worker::{assert_no_overlap, events, starts};
use crate::support::{alive, bin, boot_ns, program, wait_for, EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(30);

/// The lines a child appended to `file` so far.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn worker(dir: &Path) -> Vec<String> {
    vec![
        "--".into(),
        "python3".into(),
        program("worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ]
}

fn replica(name: &str, endpoints: &str, election: &str, extra: &[&str], dir: &Path) -> Replica {
    let mut args: Vec<String> = vec!["--election".into(), election.into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(worker(dir));
    Replica::start(name, endpoints, &args)
}

fn wait_starts(dir: &Path, n: usize, what: &str) {
    wait_for(
        LONG,
        || starts(dir).len() >= n,
        || format!("{what}: expected {n} child starts, have {:?}", events(dir)),
    );
}

fn leader_index(rs: &[Replica], dir: &Path) -> usize {
    let last = starts(dir).last().cloned().expect("a start");
    rs.iter()
        .position(|r| r.name == last.id)
        .expect("leader replica")
}

#[test]
fn three_replicas_one_child_sigterm_hands_over_and_revisions_grow() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let mut rs: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|n| replica(n, &etcd.endpoints(), "three", &["--ttl", "5s"], dir.path()))
        .collect();
    wait_starts(dir.path(), 1, "first leader");
    for r in &rs {
        r.wait_log("role=\"standby\"", LONG);
    }
    assert_eq!(
        starts(dir.path()).len(),
        1,
        "exactly one child with three replicas"
    );
    for round in 1..=2 {
        let l = leader_index(&rs, dir.path());
        rs[l].signal(libc::SIGTERM);
        assert_eq!(
            rs[l].wait(LONG),
            0,
            "the leader exits with its child's status"
        );
        wait_starts(dir.path(), round + 1, "handoff after SIGTERM");
        let evs = events(dir.path());
        let stop = evs
            .iter()
            .rev()
            .find(|e| e.kind == "stop")
            .expect("stop recorded");
        let start = evs.iter().rev().find(|e| e.kind == "start").unwrap();
        assert!(start.boot_ns > stop.boot_ns);
        println!(
            "handoff after SIGTERM (old child stopped -> new child started): {:.1} ms",
            (start.boot_ns - stop.boot_ns) as f64 / 1e6
        );
        assert!(
            start.boot_ns - stop.boot_ns < 4_000_000_000,
            "graceful handoff must not wait for the TTL"
        );
        rs.remove(l);
    }
    assert_no_overlap(dir.path());
    let revs: Vec<i64> = starts(dir.path()).iter().map(|e| e.revision).collect();
    assert!(
        revs.windows(2).all(|w| w[1] > w[0]),
        "fencing revisions must grow: {revs:?}"
    );
}

#[test]
fn sigkill_of_the_leader_hands_over_after_about_the_ttl() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let rs: Vec<Replica> = ["a", "b"]
        .iter()
        .map(|n| replica(n, &etcd.endpoints(), "crash", &["--ttl", "3s"], dir.path()))
        .collect();
    wait_starts(dir.path(), 1, "first leader");
    let l = leader_index(&rs, dir.path());
    let other = 1 - l;
    rs[other].wait_log("role=\"standby\"", LONG);
    let old = starts(dir.path())[0].clone();
    let killed_at = Instant::now();
    rs[l].signal(libc::SIGKILL);
    wait_for(
        Duration::from_secs(2),
        || !alive(old.pid),
        || "old child survived SIGKILL of its supervisor".into(),
    );
    wait_starts(dir.path(), 2, "takeover after crash");
    let took = killed_at.elapsed();
    println!(
        "takeover after SIGKILL of the leader (TTL 3s): {:.2} s",
        took.as_secs_f64()
    );
    assert!(
        took >= Duration::from_secs(2),
        "took over before the lease could expire: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_no_overlap(dir.path());
}

#[test]
fn a_partitioned_leader_stops_its_child_before_another_starts() {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let a = replica(
        "a",
        &proxy.url,
        "part",
        &["--ttl", "3s", "--grace", "1s", "--dial-timeout", "1s"],
        dir.path(),
    );
    wait_starts(dir.path(), 1, "a leads");
    let b = replica(
        "b",
        &etcd.endpoints(),
        "part",
        &["--ttl", "3s", "--grace", "1s"],
        dir.path(),
    );
    b.wait_log("role=\"standby\"", LONG);
    let cut_at = boot_ns();
    proxy.cut();
    wait_starts(dir.path(), 2, "b takes over after the partition");
    let evs = events(dir.path());
    let a_stop = evs
        .iter()
        .find(|e| e.kind == "stop" && e.id == "a")
        .expect("a's child got the stop signal");
    let b_start = evs
        .iter()
        .find(|e| e.kind == "start" && e.id == "b")
        .unwrap();
    assert!(a_stop.boot_ns < b_start.boot_ns, "{evs:?}");
    assert_eq!(
        b_start.overlap, 0,
        "a's child was still alive when b's started"
    );
    println!(
        "partition: cut -> a's child stopped {:.2} s, -> b's child started {:.2} s, margin {:.2} s",
        (a_stop.boot_ns - cut_at) as f64 / 1e9,
        (b_start.boot_ns - cut_at) as f64 / 1e9,
        (b_start.boot_ns - a_stop.boot_ns) as f64 / 1e9
    );
    a.wait_log("renew deadline passed", LONG);
    proxy.heal();
    // a recampaigns (default --on-lease-lost) and waits behind b.
    wait_for(
        LONG,
        || a.log().matches("role=\"standby\"").count() >= 2,
        || format!("a did not return to standby:\n{}", a.log()),
    );
    assert_no_overlap(dir.path());
}

#[test]
fn on_lease_lost_exit_exits_122_after_the_child_is_gone() {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let mut a = replica(
        "a",
        &proxy.url,
        "lostexit",
        &[
            "--ttl",
            "2s",
            "--on-lease-lost",
            "exit",
            "--dial-timeout",
            "500ms",
        ],
        dir.path(),
    );
    wait_starts(dir.path(), 1, "a leads");
    let child = starts(dir.path())[0].pid;
    proxy.cut();
    assert_eq!(a.wait(LONG), 122, "{}", a.log());
    assert!(!alive(child));
}

#[test]
fn paused_and_stopped_etcd_stop_the_child_then_it_leads_again() {
    let mut etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let a = replica(
        "a",
        &etcd.endpoints(),
        "pause",
        &["--ttl", "2s", "--dial-timeout", "500ms"],
        dir.path(),
    );
    wait_starts(dir.path(), 1, "a leads");
    let first = starts(dir.path())[0].pid;

    etcd.pause(0);
    wait_for(
        LONG,
        || !alive(first),
        || format!("child kept running while etcd was frozen:\n{}", a.log()),
    );
    let resumed_at = boot_ns();
    etcd.resume(0);
    wait_starts(dir.path(), 2, "leads again after etcd resumed");
    assert!(starts(dir.path())[1].boot_ns > resumed_at);

    let second = starts(dir.path())[1].pid;
    etcd.stop(0);
    wait_for(
        LONG,
        || !alive(second),
        || format!("child kept running while etcd was down:\n{}", a.log()),
    );
    etcd.restart(0);
    wait_starts(dir.path(), 3, "leads again after etcd restarted");
    assert!(a.log().contains("renew deadline passed"), "{}", a.log());
    assert_no_overlap(dir.path());
}

#[test]
fn stopping_the_etcd_leader_member_does_not_cost_leadership() {
    let mut etcd = EtcdCluster::start(3);
    let raft_leader = etcd.leader_index().expect("raft leader");
    // The replica talks to the raft leader first, so it must move to another endpoint.
    let mut eps = vec![etcd.endpoint(raft_leader)];
    eps.extend(
        (0..3)
            .filter(|&i| i != raft_leader)
            .map(|i| etcd.endpoint(i)),
    );
    let dir = tempfile::tempdir().unwrap();
    let a = replica("a", &eps.join(","), "cluster", &[], dir.path());
    wait_starts(dir.path(), 1, "a leads");
    let child = starts(dir.path())[0].pid;
    etcd.stop(raft_leader);
    // Observe for longer than the renew deadline (6 s at the defaults).
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        assert!(
            alive(child),
            "child stopped after the etcd leader member went away:\n{}",
            a.log()
        );
        assert!(!a.log().contains("role=\"stopping\""), "{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.log().contains("switching etcd endpoint"), "{}", a.log());
    assert_eq!(starts(dir.path()).len(), 1);
}

#[test]
fn on_child_exit_exit_revokes_so_a_standby_takes_over_at_once() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("runs");
    let script = format!(
        "echo $SINGLETON_EXEC_LEADER_ID >> {}; sleep 0.3; exit 3",
        f.display()
    );
    let args = [
        "--election",
        "childexit",
        "--ttl",
        "10s",
        "--",
        "sh",
        "-c",
        &script,
    ];
    let mut a = Replica::start("a", &etcd.endpoints(), &args);
    wait_for(LONG, || f.exists(), || a.log());
    let mut b = Replica::start("b", &etcd.endpoints(), &args);
    assert_eq!(a.wait(LONG), 3, "exit with the child's status");
    let t = Instant::now();
    wait_for(LONG, || lines(&f).len() >= 2, || b.log());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "standby waited for the TTL instead of the revoke"
    );
    assert_eq!(b.wait(LONG), 3);
}

/// A replica with `--on-child-exit restart` whose child appends `line`'s output to `runs`, then
/// exits with `code`; and its etcd.
fn restarting(election: &str, runs: &Path, line: &str, code: i32) -> (EtcdCluster, Replica) {
    let etcd = EtcdCluster::single();
    let script = format!("{line} >> {}; exit {code}", runs.display());
    let a = Replica::start(
        "a",
        &etcd.endpoints(),
        &[
            "--election",
            election,
            "--on-child-exit",
            "restart",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    (etcd, a)
}

#[test]
fn on_child_exit_restart_restarts_while_leader() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("runs");
    let (_etcd, mut a) = restarting("restart", &f, "echo $SINGLETON_EXEC_REVISION", 1);
    wait_for(LONG, || lines(&f).len() >= 3, || a.log());
    let revs = lines(&f);
    assert!(
        revs.iter().all(|r| *r == revs[0]),
        "restarts keep the same leadership: {revs:?}"
    );
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait(LONG), 1, "exit with the last child's status");
}

/// A shutdown in the pause between two children (no child runs) exits with the last child's
/// status: the leader was running a failing child, and says so. Signalled in the fourth pause
/// (4 s), which the log announces, so it cannot land while a child runs.
#[test]
fn sigterm_in_the_restart_pause_exits_with_the_last_child_status() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("runs");
    let (_etcd, mut a) = restarting("restart-pause", &f, "echo run", 3);
    a.wait_log("restart_in=4s", LONG);
    let runs = lines(&f).len();
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait(LONG), 3, "{}", a.log());
    assert_eq!(lines(&f).len(), runs, "no child after the shutdown");
}

/// SIGTERM while etcd cannot be reached (frozen: every request hangs): a standby exits at once and
/// the leader once its child's tree is gone, each after the 1 s revoke budget at most, never after
/// the dial timeout (5 s by default; twice that for a leader before).
#[test]
fn sigterm_with_etcd_unreachable_exits_within_the_revoke_budget() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let mut a = replica("a", &etcd.endpoints(), "unreachable", &[], dir.path());
    wait_starts(dir.path(), 1, "a leads");
    let mut b = replica("b", &etcd.endpoints(), "unreachable", &[], dir.path());
    b.wait_log("standby: waiting for leadership", LONG);
    etcd.pause(0);
    for r in [&mut b, &mut a] {
        let asked = Instant::now();
        r.signal(libc::SIGTERM);
        let code = r.wait(LONG);
        let took = asked.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{} exited {took:?} after SIGTERM (code {code}):\n{}",
            r.name,
            r.log()
        );
    }
    etcd.resume(0);
}

#[test]
fn on_child_exit_recampaign_leads_again_with_a_new_revision() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("runs");
    let script = format!("echo $SINGLETON_EXEC_REVISION >> {}; exit 0", f.display());
    let mut a = Replica::start(
        "a",
        &etcd.endpoints(),
        &[
            "--election",
            "recamp",
            "--on-child-exit",
            "recampaign",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    wait_for(LONG, || lines(&f).len() >= 3, || a.log());
    let revs: Vec<i64> = lines(&f).iter().map(|l| l.parse().unwrap()).collect();
    assert!(
        revs.windows(2).all(|w| w[1] > w[0]),
        "each leadership has a larger revision: {revs:?}"
    );
    a.signal(libc::SIGTERM);
    a.wait(LONG);
}

#[test]
fn acquire_timeout_and_standby_withdrawal_and_status() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let status = |election: &str| {
        let out = Command::new(bin())
            .args([
                "status",
                "--election",
                election,
                "--endpoints",
                &etcd.endpoints(),
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = status("acq");
    assert_eq!(code, 1, "no leader yet: {out}");
    let mut a = replica("a", &etcd.endpoints(), "acq", &[], dir.path());
    wait_starts(dir.path(), 1, "a leads");
    let (code, out) = status("acq");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("leader:           a"), "{out}");
    assert!(
        out.contains(&format!(
            "fencing_revision: {}",
            starts(dir.path())[0].revision
        )),
        "{out}"
    );

    let mut b = replica(
        "b",
        &etcd.endpoints(),
        "acq",
        &["--acquire-timeout", "1s"],
        dir.path(),
    );
    assert_eq!(b.wait(LONG), 124, "{}", b.log());
    assert_eq!(starts(dir.path()).len(), 1, "b's child never ran");

    let mut c = replica("c", &etcd.endpoints(), "acq", &[], dir.path());
    c.wait_log("role=\"standby\"", LONG);
    assert!(status("acq").1.contains("candidates:       2"));
    c.signal(libc::SIGTERM);
    assert_eq!(
        c.wait(Duration::from_secs(5)),
        0,
        "a standby withdraws at once"
    );
    assert!(
        status("acq").1.contains("candidates:       1"),
        "the standby's key was revoked"
    );

    a.signal(libc::SIGTERM);
    a.wait(LONG);
    assert_eq!(status("acq").0, 1);
}

#[test]
fn elections_whose_names_are_prefixes_do_not_collide() {
    let etcd = EtcdCluster::single();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let _a = replica("a", &etcd.endpoints(), "app", &[], d1.path());
    let _b = replica("b", &etcd.endpoints(), "app2", &[], d2.path());
    wait_starts(d1.path(), 1, "app leads");
    wait_starts(d2.path(), 1, "app2 leads independently");
}

#[test]
fn the_fencing_example_writes_while_leading_and_is_refused_with_a_stale_revision() {
    let etcd = EtcdCluster::single();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fencing.sh");
    let mut a = Replica::start(
        "a",
        &etcd.endpoints(),
        &[
            "--election",
            "fenced",
            "--",
            example.to_str().unwrap(),
            "/fenced/state",
        ],
    );
    a.wait_stdout("write 2 accepted", LONG);
    a.signal(libc::SIGTERM);
    a.wait(LONG);
    let stdout = a.stdout();
    let first = stdout
        .lines()
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    let key = first
        .split("key ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let revision = first.split("revision ").nth(1).unwrap().to_owned();
    // The deposed leader's key and token, replayed after it lost leadership, are refused.
    let out = Command::new(&example)
        .arg("/fenced/state")
        .env("SINGLETON_EXEC_LEADER_KEY", key)
        .env("SINGLETON_EXEC_REVISION", &revision)
        .env("SINGLETON_EXEC_LEADER_ID", "stale")
        .env("SINGLETON_EXEC_ETCD_ENDPOINTS", etcd.endpoints())
        .env("FENCING_ONCE", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stale write accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
}

#[test]
fn deleting_the_leader_key_stops_the_child_at_once() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let a = replica(
        "a",
        &etcd.endpoints(),
        "keydel",
        &["--ttl", "30s"],
        dir.path(),
    );
    wait_starts(dir.path(), 1, "a leads");
    let child = starts(dir.path())[0].pid;
    let deleted = Instant::now();
    crate::support::runtime().block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
            .await
            .unwrap();
        c.delete(
            "/singleton-exec/keydel/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    });
    wait_for(LONG, || !alive(child), || a.log());
    assert!(
        deleted.elapsed() < Duration::from_secs(10),
        "stopped by the key watch, not the 30 s lease"
    );
    // The stop reason is logged after the kill (the deadline path signals first), by the log
    // thread: wait for it rather than read the log the instant the child is gone.
    wait_for(
        LONG,
        || a.log().contains("our leader key was deleted"),
        || a.log(),
    );
    // It recampaigns with a new lease and leads again.
    wait_starts(dir.path(), 2, "a leads again");
}

/// The queue as etcd has it: (key, create revision), leader first.
fn queue(etcd: &EtcdCluster, election: &str) -> Vec<(String, i64)> {
    crate::support::runtime().block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
            .await
            .unwrap();
        let opts = etcd_client::GetOptions::new().with_prefix().with_sort(
            etcd_client::SortTarget::Create,
            etcd_client::SortOrder::Ascend,
        );
        c.get(format!("/singleton-exec/{election}/"), Some(opts))
            .await
            .unwrap()
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap().to_owned(), kv.create_revision()))
            .collect()
    })
}

fn etcd_put_or_del(etcd: &EtcdCluster, key: &str, value: Option<&str>) {
    crate::support::runtime().block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
            .await
            .unwrap();
        match value {
            Some(v) => drop(c.put(key, v, None).await.unwrap()),
            None => drop(c.delete(key, None).await.unwrap()),
        }
    });
}

/// A standby whose key is deleted (an operator's `etcdctl del`) joins the queue again, every
/// time, and takes over when the leader goes.
#[test]
fn a_standby_whose_key_is_deleted_joins_the_queue_again() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let a = replica("a", &etcd.endpoints(), "rejoin", &[], dir.path());
    wait_starts(dir.path(), 1, "a leads");
    let b = replica("b", &etcd.endpoints(), "rejoin", &[], dir.path());
    wait_for(LONG, || queue(&etcd, "rejoin").len() == 2, || b.log());
    for round in 0..6 {
        let (key, _) = queue(&etcd, "rejoin")[1].clone();
        etcd_put_or_del(&etcd, &key, None);
        wait_for(
            LONG,
            || {
                let q = queue(&etcd, "rejoin");
                q.len() == 2 && q[1].0 == key
            },
            || format!("round {round}: b did not join again:\n{}", b.log()),
        );
    }
    a.signal(libc::SIGTERM);
    wait_starts(dir.path(), 2, "b takes over");
    assert_eq!(starts(dir.path())[1].id, "b");
    assert_no_overlap(dir.path());
}

/// A step-down request addressed to a standby's candidacy (it was about to lead) must not end a
/// later leadership of the same replica.
#[test]
fn a_request_for_an_earlier_candidacy_does_not_end_a_later_leadership() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let a = replica("a", &etcd.endpoints(), "stale", &[], dir.path());
    wait_starts(dir.path(), 1, "a leads");
    let b = replica("b", &etcd.endpoints(), "stale", &[], dir.path());
    wait_for(LONG, || queue(&etcd, "stale").len() == 2, || b.log());
    let (key, revision) = queue(&etcd, "stale")[1].clone();
    let request = format!(r#"{{"leader_key":"{key}","fencing_revision":{revision},"by":"test"}}"#);
    etcd_put_or_del(&etcd, "/singleton-exec/stale@resign", Some(&request));
    b.wait_log("step-down requested through etcd", LONG);
    // That candidacy ends before it leads; b joins again, with a new revision.
    etcd_put_or_del(&etcd, &key, None);
    wait_for(
        LONG,
        || {
            let q = queue(&etcd, "stale");
            q.len() == 2 && q[1].1 > revision
        },
        || b.log(),
    );
    a.signal(libc::SIGTERM);
    wait_starts(dir.path(), 2, "b takes over");
    let child = starts(dir.path())[1].pid;
    // It keeps leading: the request was for the earlier candidacy.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alive(child), "b's child was stopped:\n{}", b.log());
    assert!(
        !b.log().contains("reason=\"step-down requested\""),
        "{}",
        b.log()
    );
    assert_no_overlap(dir.path());
}

/// An operator deletes the whole queue while the leader is briefly cut off from etcd: the
/// standby joins again and finds nobody ahead, but the leader before it still runs its child until
/// it sees the deletion. The new leader waits for that leader's lease to go, so the old child is
/// dead before the new one starts.
#[test]
fn after_the_queue_is_deleted_a_rejoining_standby_waits_for_the_former_leader() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    // The proxy drops bytes while cut (TCP would deliver them late): a keepalive during the cut
    // must fail for a to give the connection up, so a keeps them frequent.
    let a = replica(
        "a",
        &proxy.url,
        "former",
        &["--grace", "1s", "--keepalive-interval", "300ms"],
        dir.path(),
    );
    wait_starts(dir.path(), 1, "a leads");
    let b = replica("b", &etcd.endpoints(), "former", &[], dir.path());
    wait_for(LONG, || queue(&etcd, "former").len() == 2, || b.log());
    proxy.cut();
    crate::support::runtime().block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
            .await
            .unwrap();
        c.delete(
            "/singleton-exec/former/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    });
    // b sees its own key gone, joins again, and leads at once unless it waits for a.
    b.wait_log("campaign interrupted", LONG);
    std::thread::sleep(Duration::from_millis(800));
    proxy.heal();
    wait_starts(dir.path(), 2, "b leads");
    assert_eq!(starts(dir.path())[1].id, "b");
    let overlap = events(dir.path()).iter().any(|e| e.overlap > 0);
    assert!(
        !overlap,
        "two children at once: a:\n{}\nb:\n{}",
        a.log(),
        b.log()
    );
    assert!(
        a.log().contains("our leader key was deleted"),
        "{}",
        a.log()
    );
}
