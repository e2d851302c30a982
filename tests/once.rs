//! `--once NAME` against a real etcd: invocations that race run the command exactly once and all
//! exit 0; later ones exit 0 without running it; a runner killed mid-run is followed by exactly
//! one more run, after its lease expired, never overlapping; failed runs are counted across the
//! replicas up to `--once-attempts`, then everyone exits with the failed run's status; an etcd
//! outage follows the fail-closed rules; a runner whose key is gone never records a success;
//! `once clear` and `status --once`.
//!
//! The command is `tests/programs/once_worker.py`: each run appends a `start` line to
//! DIR/runs.log with its replica, fencing revision, attempt and previous run, and whether it found
//! the flock every run holds for its whole life still held by another (an overlap); while
//! DIR/wait exists it runs until DIR/go exists; it exits with DIR/exit-code (0 if absent).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::proxy::FaultProxy;
use crate::support::{alive, program, run_subcommand, wait_for, EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(30);
/// The lease TTL of these tests: a crashed runner is replaced after about this long.
const TTL: &str = "3s";

/// One `start` line of DIR/runs.log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Start {
    id: String,
    revision: String,
    attempt: String,
    previous: String,
    pid: i32,
    boot_ns: u128,
    overlap: bool,
}

fn runs(dir: &Path) -> Vec<Start> {
    let text = std::fs::read_to_string(dir.join("runs.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                ["start", id, rev, attempt, previous, pid, boot, lock] => Some(Start {
                    id: id.into(),
                    revision: rev.into(),
                    attempt: attempt.into(),
                    previous: previous.into(),
                    pid: pid.parse().ok()?,
                    boot_ns: boot.parse().ok()?,
                    overlap: lock != "lock=free",
                }),
                _ => None,
            }
        })
        .collect()
}

/// The replicas' logs, for a failure message.
fn logs(rs: &[&Replica]) -> String {
    rs.iter()
        .map(|r| format!("--- {} ---\n{}", r.name, r.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_runs(dir: &Path, n: usize, rs: &[&Replica]) -> Vec<Start> {
    wait_for(
        LONG,
        || runs(dir).len() >= n,
        || format!("expected {n} runs, have {:?}\n{}", runs(dir), logs(rs)),
    );
    runs(dir)
}

fn touch(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// `--election ELECTION --once NAME --ttl TTL EXTRA -- python3 once_worker.py DIR` (no `--ttl
/// TTL` when EXTRA has a `--ttl`).
fn args(election: &str, name: &str, extra: &[&str], dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["--election", election, "--once", name]
        .map(String::from)
        .into();
    if !extra.contains(&"--ttl") {
        args.extend(["--ttl".to_owned(), TTL.to_owned()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--".into(),
        "python3".into(),
        program("once_worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ]);
    args
}

fn replica(id: &str, endpoints: &str, name: &str, extra: &[&str], dir: &Path) -> Replica {
    Replica::start(id, endpoints, &args("job", name, extra, dir))
}

/// `status --election job --once NAME --output json`: its exit code and its JSON.
fn status(etcd: &EtcdCluster, name: &str) -> (i32, serde_json::Value) {
    let out = run_subcommand(
        "status",
        etcd,
        &["--election", "job", "--once", name, "--output", "json"],
    );
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// `status --once NAME` as text.
fn status_text(etcd: &EtcdCluster, name: &str) -> String {
    let out = run_subcommand("status", etcd, &["--election", "job", "--once", name]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `once clear NAME` (and `extra`): its exit code and what it printed.
fn clear(etcd: &EtcdCluster, name: &str, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(crate::support::bin())
        .args(["once", "clear", "--endpoints", &etcd.endpoints()])
        .args(["--election", "job", name])
        .args(extra)
        .output()
        .expect("run singleton-exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Waits until `n` replicas wait behind the runner.
fn wait_waiting(etcd: &EtcdCluster, name: &str, n: u64, rs: &[&Replica]) {
    wait_for(
        LONG,
        || status(etcd, name).1["waiting"].as_u64() == Some(n),
        || format!("not {n} waiting: {}\n{}", status(etcd, name).1, logs(rs)),
    );
}

fn replica_of<'a>(rs: &'a [Replica], id: &str) -> &'a Replica {
    rs.iter()
        .find(|r| r.name == id)
        .expect("a replica of that id")
}

/// Five invocations at once: one runs the command, four wait and exit 0 without running it once
/// it succeeded; then five more exit 0 at once, without running it or joining the queue.
#[test]
fn five_invocations_run_the_command_once_and_all_exit_0() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    let mut rs: Vec<Replica> = (1..=5)
        .map(|i| replica(&format!("r{i}"), &etcd.endpoints(), "migrate-1", &[], d))
        .collect();
    let refs: Vec<&Replica> = rs.iter().collect();
    let first = wait_runs(d, 1, &refs)[0].clone();
    wait_waiting(&etcd, "migrate-1", 4, &refs);
    let (code, v) = status(&etcd, "migrate-1");
    assert_eq!((code, v["state"].as_str()), (1, Some("running")), "{v}");
    assert_eq!(
        (v["attempts"].as_u64(), v["runner_alive"].as_bool()),
        (Some(1), Some(true)),
        "{v}"
    );
    assert_eq!(v["runner"]["id"], first.id.as_str(), "{v}");
    assert!(v["exit_code"].is_null(), "{v}");
    touch(d, "go", "");
    for r in rs.iter_mut() {
        assert_eq!(r.wait(LONG), 0, "{}: {}", r.name, r.log());
    }
    assert_eq!(runs(d), std::slice::from_ref(&first), "exactly one run");
    assert!(!first.overlap);
    assert_eq!(
        (first.attempt.as_str(), first.previous.as_str()),
        ("1", "-")
    );
    for r in &rs {
        let log = r.log();
        if r.name == first.id {
            assert!(
                log.contains("once migrate-1: done here: attempt 1 of 1 succeeded"),
                "{log}"
            );
        } else {
            let said = format!(
                "once migrate-1: done by {} (attempt 1, fencing revision {}",
                first.id, first.revision
            );
            assert!(log.contains(&said) && log.contains("not run here"), "{log}");
        }
    }
    let (code, v) = status(&etcd, "migrate-1");
    assert_eq!(
        (code, v["state"].as_str(), v["exit_code"].as_i64()),
        (0, Some("done"), Some(0)),
        "{v}"
    );
    assert_eq!(v["attempts"].as_u64(), Some(1), "{v}");
    assert_eq!(v["record"]["id"], first.id.as_str(), "{v}");
    assert_eq!(
        v["record"]["fencing_revision"].to_string(),
        first.revision,
        "{v}"
    );
    assert_eq!(v["waiting"].as_u64(), Some(0), "{v}");
    let text = status_text(&etcd, "migrate-1");
    assert!(text.contains("state:            done\n"), "{text}");
    assert!(
        text.contains(&format!("by:               {}\n", first.id)),
        "{text}"
    );

    // A second wave (a later deploy): exit 0 at once, without running or queueing.
    let started = Instant::now();
    let mut wave: Vec<Replica> = (6..=10)
        .map(|i| replica(&format!("r{i}"), &etcd.endpoints(), "migrate-1", &[], d))
        .collect();
    for r in wave.iter_mut() {
        assert_eq!(r.wait(LONG), 0, "{}: {}", r.name, r.log());
        assert!(r.log().contains("done by"), "{}", r.log());
        assert!(
            !r.log().contains("role=\"standby\""),
            "it queued: {}",
            r.log()
        );
    }
    assert!(started.elapsed() < LONG);
    assert_eq!(runs(d).len(), 1, "the second wave ran nothing");
}

/// The runner's supervisor SIGKILLed mid-run: its child dies with it (the guard), and after its
/// lease expires exactly one waiter runs the command again, as the same attempt, told the
/// fencing revision of the run it repeats; never two runs at once.
#[test]
fn a_runner_killed_mid_run_is_followed_by_exactly_one_more_run_never_overlapping() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    let mut rs: Vec<Replica> = (1..=3)
        .map(|i| replica(&format!("k{i}"), &etcd.endpoints(), "backfill", &[], d))
        .collect();
    let refs: Vec<&Replica> = rs.iter().collect();
    let first = wait_runs(d, 1, &refs)[0].clone();
    wait_waiting(&etcd, "backfill", 2, &refs);
    let killed_at = Instant::now();
    replica_of(&rs, &first.id).signal(libc::SIGKILL);
    let again = wait_runs(d, 2, &refs)[1].clone();
    let took = killed_at.elapsed();
    assert!(!again.overlap, "two runs at once: {:?}", runs(d));
    assert!(!alive(first.pid), "the killed runner's child lives on");
    assert_ne!(again.id, first.id);
    assert_eq!(
        again.attempt, "1",
        "a run cut short is not a failed attempt"
    );
    assert_eq!(
        again.previous, first.revision,
        "the rerun knows the run it repeats"
    );
    assert!(again.revision > first.revision);
    // Taken over when the lease expired (TTL 3 s), not before.
    assert!(took >= Duration::from_secs(2), "taken over after {took:?}");
    let (_, v) = status(&etcd, "backfill");
    assert_eq!(
        (v["state"].as_str(), v["interrupted"].as_u64()),
        (Some("running"), Some(1)),
        "{v}"
    );
    touch(d, "go", "");
    for r in rs.iter_mut() {
        let code = r.wait(LONG);
        let want = if r.name == first.id { 137 } else { 0 };
        assert_eq!(code, want, "{}: {}", r.name, r.log());
    }
    assert_eq!(runs(d).len(), 2, "exactly one more run: {:?}", runs(d));
    let (code, v) = status(&etcd, "backfill");
    assert_eq!(
        (code, v["record"]["id"].as_str()),
        (0, Some(again.id.as_str())),
        "{v}"
    );
    assert!(replica_of(&rs, &again.id)
        .log()
        .contains("running again a run that was cut short"));
}

/// A failed run with the default `--once-attempts 1`: nobody runs it again; the runner exits
/// with its child's status, every waiter with the same status and a line naming the replica
/// and the attempt.
#[test]
fn a_failed_run_ends_every_invocation_with_its_status() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    touch(d, "exit-code", "3");
    let mut rs: Vec<Replica> = (1..=3)
        .map(|i| replica(&format!("f{i}"), &etcd.endpoints(), "report", &[], d))
        .collect();
    let refs: Vec<&Replica> = rs.iter().collect();
    let first = wait_runs(d, 1, &refs)[0].clone();
    wait_waiting(&etcd, "report", 2, &refs);
    touch(d, "go", "");
    for r in rs.iter_mut() {
        assert_eq!(r.wait(LONG), 3, "{}: {}", r.name, r.log());
    }
    assert_eq!(runs(d).len(), 1, "{:?}", runs(d));
    for r in &rs {
        let log = r.log();
        if r.name == first.id {
            assert!(
                log.contains("attempt 1 of 1 failed here (exited with status 3"),
                "{log}"
            );
        } else {
            let said = format!(
                "once report: attempt 1 failed on {} (exited with status 3",
                first.id
            );
            assert!(log.contains(&said), "{log}");
        }
    }
    let (code, v) = status(&etcd, "report");
    assert_eq!(
        (code, v["state"].as_str(), v["exit_code"].as_i64()),
        (1, Some("failed"), Some(3)),
        "{v}"
    );
    assert_eq!(
        (v["attempts"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    // A later invocation exits with it at once.
    let mut late = replica("f9", &etcd.endpoints(), "report", &[], d);
    assert_eq!(late.wait(LONG), 3, "{}", late.log());
    assert_eq!(runs(d).len(), 1);
}

/// `--once-attempts 3`, a command that always fails, four replicas: it runs exactly three times,
/// each time on another replica (a runner that failed exits with its status), as attempts 1, 2,
/// 3, each told the run before it; then everyone exits with its status.
#[test]
fn three_attempts_run_three_times_across_the_replicas_then_everyone_exits_with_the_status() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    touch(d, "exit-code", "3");
    let extra = ["--once-attempts", "3"];
    let mut rs: Vec<Replica> = (1..=4)
        .map(|i| replica(&format!("t{i}"), &etcd.endpoints(), "flaky", &extra, d))
        .collect();
    let refs: Vec<&Replica> = rs.iter().collect();
    wait_runs(d, 1, &refs);
    wait_waiting(&etcd, "flaky", 3, &refs);
    touch(d, "go", "");
    for r in rs.iter_mut() {
        assert_eq!(r.wait(LONG), 3, "{}: {}", r.name, r.log());
    }
    let all = runs(d);
    assert_eq!(all.len(), 3, "{all:?}");
    let attempts: Vec<&str> = all.iter().map(|s| s.attempt.as_str()).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "each run on another replica: {all:?}");
    assert_eq!(all[0].previous, "-");
    for pair in all.windows(2) {
        assert_eq!(pair[1].previous, pair[0].revision, "{all:?}");
        assert!(pair[1].boot_ns > pair[0].boot_ns);
    }
    assert!(all.iter().all(|s| !s.overlap), "{all:?}");
    let last = &all[2];
    let fourth = rs.iter().find(|r| !ids.contains(&r.name.as_str())).unwrap();
    let said = format!(
        "once flaky: attempt 3 failed on {} (exited with status 3",
        last.id
    );
    assert!(fourth.log().contains(&said), "{}", fourth.log());
    assert!(
        fourth
            .log()
            .contains("3 of 3 attempts failed: not run here"),
        "{}",
        fourth.log()
    );
    let (code, v) = status(&etcd, "flaky");
    assert_eq!(
        (code, v["state"].as_str(), v["exit_code"].as_i64()),
        (1, Some("failed"), Some(3)),
        "{v}"
    );
    assert_eq!(
        (v["attempts"].as_u64(), v["max_attempts"].as_u64()),
        (Some(3), Some(3)),
        "{v}"
    );
}

/// `once clear` forgets an outcome, so the next invocation runs again; it refuses (exit 1,
/// nothing deleted) while an invocation runs or waits. `status --once` before anything ran.
#[test]
fn clear_makes_the_next_invocation_run_again_and_waits_for_running_ones() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, v) = status(&etcd, "nightly");
    assert_eq!(
        (code, v["state"].as_str(), v["attempts"].as_u64()),
        (1, Some("none"), Some(0)),
        "{v}"
    );
    assert!(v["exit_code"].is_null() && v["record"].is_null(), "{v}");
    assert_eq!(clear(&etcd, "nightly", &[]).0, 0);

    let mut a = replica("c1", &etcd.endpoints(), "nightly", &[], d);
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    assert_eq!(runs(d).len(), 1);
    let (code, said) = clear(&etcd, "nightly", &[]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("once nightly: cleared (it was done by c1, attempt 1"),
        "{said}"
    );
    assert_eq!(status(&etcd, "nightly").1["state"], "none");

    touch(d, "wait", "");
    let mut b = replica("c2", &etcd.endpoints(), "nightly", &[], d);
    wait_runs(d, 2, &[&b]);
    let (code, said) = clear(&etcd, "nightly", &[]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("not cleared: 1 replica(s) run or wait under it (c2)"),
        "{said}"
    );
    assert_eq!(status(&etcd, "nightly").1["state"], "running");
    let text = status_text(&etcd, "nightly");
    assert!(
        text.contains("state:            running\n") && text.contains("runner_alive:     yes\n"),
        "{text}"
    );
    touch(d, "go", "");
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    let (_, v) = status(&etcd, "nightly");
    assert_eq!(
        (v["state"].as_str(), v["record"]["id"].as_str()),
        (Some("done"), Some("c2")),
        "{v}"
    );
    assert_eq!(clear(&etcd, "nightly", &[]).0, 0);
    let (code, said) = clear(&etcd, "nightly", &[]);
    assert_eq!(code, 0);
    assert!(said.contains("nothing to clear"), "{said}");
    // Only the record and the attempts went: no tree marker or queue key was touched by hand.
    let (code, said) = clear(&etcd, "bad/name", &[]);
    assert_eq!(code, 2, "{said}");
}

/// A runner cut off from etcd (a partition, its etcd down) mid-run: its child is stopped by the
/// fail-closed deadline, before its lease can expire; a waiter runs the command again after the
/// expiry, never overlapping; the cut-off runner, back, finds the outcome and exits 0 without
/// running it.
#[test]
fn an_etcd_outage_during_the_run_stops_it_fail_closed_and_a_waiter_runs_it_again() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let mut a = replica("o1", &proxy.url, "rotate", &[], d);
    let first = wait_runs(d, 1, &[&a])[0].clone();
    let mut b = replica("o2", &etcd.endpoints(), "rotate", &[], d);
    wait_waiting(&etcd, "rotate", 1, &[&a, &b]);
    proxy.cut();
    let again = wait_runs(d, 2, &[&a, &b])[1].clone();
    assert_eq!(again.id, "o2");
    assert!(!again.overlap, "two runs at once: {:?}", runs(d));
    assert!(!alive(first.pid));
    let log = std::fs::read_to_string(d.join("runs.log")).unwrap();
    assert!(
        log.contains(&format!("term o1 {}", first.revision)),
        "stopped by its own deadline: {log}"
    );
    proxy.heal();
    touch(d, "go", "");
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    assert!(a.log().contains("run cut short"), "{}", a.log());
    assert!(a.log().contains("once rotate: done by o2"), "{}", a.log());
    assert_eq!(runs(d).len(), 2, "{:?}", runs(d));
}

/// A runner whose key was deleted (an operator) while it could not hear of it: its command
/// succeeds, but the record is fenced by the key, so it is not written; the waiter that took
/// over once the runner's tree was gone runs it again and its record is the one; the first
/// runner, joining again as a waiter, reports that record.
#[test]
fn a_runner_whose_key_is_gone_records_nothing() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    // A long TTL: the runner's lease outlives the cut; only its key goes.
    let mut a = Replica::start(
        "g1",
        &proxy.url,
        &args("job", "fenced", &["--ttl", "20s"], d),
    );
    let first = wait_runs(d, 1, &[&a])[0].clone();
    let mut b = replica("g2", &etcd.endpoints(), "fenced", &[], d);
    wait_waiting(&etcd, "fenced", 1, &[&a, &b]);
    let key = status(&etcd, "fenced").1["runner"]["key"]
        .as_str()
        .expect("a runner")
        .to_owned();
    proxy.cut();
    let (code, out) = crate::support::etcd::etcdctl(&etcd.endpoints(), &["del", &key]);
    assert_eq!((code, out.trim()), (0, "1"), "{out}");
    touch(d, "go", "");
    a.wait_log("the run's outcome", LONG);
    proxy.heal();
    a.wait_log("its success could not be recorded", LONG);
    let again = wait_runs(d, 2, &[&a, &b])[1].clone();
    assert_eq!(again.id, "g2");
    assert!(!again.overlap, "{:?}", runs(d));
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    assert!(a.log().contains("once fenced: done by g2"), "{}", a.log());
    let (_, v) = status(&etcd, "fenced");
    assert_eq!(v["record"]["id"], "g2", "{v}");
    assert_eq!(
        v["record"]["fencing_revision"].to_string(),
        again.revision,
        "{v}"
    );
    assert_ne!(again.revision, first.revision);
}

/// A runner cut off for longer than its TTL, whose command succeeded just after the cut: it
/// cannot record it before its lease's deadline, and gives up trying; the lease expires, a waiter
/// runs the command again and records it; the first, back, reports the waiter's record. No
/// record from the attempt whose lease expired is ever accepted.
#[test]
fn a_success_whose_lease_expired_before_it_was_recorded_is_not_accepted() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let mut a = replica("e1", &proxy.url, "expired", &[], d);
    wait_runs(d, 1, &[&a]);
    let mut b = replica("e2", &etcd.endpoints(), "expired", &[], d);
    wait_waiting(&etcd, "expired", 1, &[&a, &b]);
    proxy.cut();
    touch(d, "go", "");
    a.wait_log("its success could not be recorded", LONG);
    let again = wait_runs(d, 2, &[&a, &b])[1].clone();
    assert_eq!(again.id, "e2");
    assert!(!again.overlap);
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    proxy.heal();
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    assert!(a.log().contains("once expired: done by e2"), "{}", a.log());
    let (_, v) = status(&etcd, "expired");
    assert_eq!(v["record"]["id"], "e2", "{v}");
    assert_eq!(runs(d).len(), 2);
}

/// SIGTERM before an outcome is recorded: a waiter exits 143, never the 0 that says the command
/// succeeded; so does the runner, even though its command exits 0 on SIGTERM (it was stopped,
/// not done: nothing is recorded). The next invocation runs the command again, as the same
/// attempt.
#[test]
fn a_sigterm_before_the_outcome_never_exits_0() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    touch(d, "term-code", "0");
    let mut a = replica("s1", &etcd.endpoints(), "stopped", &[], d);
    let first = wait_runs(d, 1, &[&a])[0].clone();
    let mut b = replica("s2", &etcd.endpoints(), "stopped", &[], d);
    wait_waiting(&etcd, "stopped", 1, &[&a, &b]);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(LONG), 143, "{}", b.log());
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait(LONG), 143, "{}", a.log());
    let log = std::fs::read_to_string(d.join("runs.log")).unwrap();
    assert!(
        log.contains(&format!("term s1 {}", first.revision)),
        "{log}"
    );
    let (code, v) = status(&etcd, "stopped");
    assert_eq!(
        (code, v["state"].as_str(), v["runner_alive"].as_bool()),
        (1, Some("running"), Some(false)),
        "{v}"
    );
    assert!(v["record"].is_null(), "{v}");
    touch(d, "go", "");
    let mut c = replica("s3", &etcd.endpoints(), "stopped", &[], d);
    assert_eq!(c.wait(LONG), 0, "{}", c.log());
    let again = runs(d)[1].clone();
    assert_eq!((again.id.as_str(), again.attempt.as_str()), ("s3", "1"));
    assert_eq!(again.previous, first.revision);
    assert_eq!(status(&etcd, "stopped").1["interrupted"].as_u64(), Some(1));
}

/// What cannot go with `--once` is refused before anything runs (exit 2).
#[test]
fn once_refuses_what_does_not_go_with_it() {
    let rows: &[&[&str]] = &[
        &["--once", "m", "--slots", "2"],
        &["--once", "m", "--on-child-exit", "restart"],
        &["--once", "m", "--health-cmd", "true"],
        &["--once", "a/b"],
        &["--once-attempts", "2"],
        &["--once", "m", "--once-attempts", "0"],
    ];
    for extra in rows {
        let out = std::process::Command::new(crate::support::bin())
            .args(["--endpoints", "http://127.0.0.1:1"])
            .args(*extra)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Ctrl-C on a runner in a shell (the command has the terminal, so only it gets the SIGINT, and
/// singleton-exec takes its death by it as the user's request to stop): the run was cut short by
/// the user, not failed. Nothing is counted, so a waiter elsewhere runs it again instead of
/// exiting 130 with "attempt 1 failed" for a job nobody let finish.
#[test]
fn ctrl_c_on_a_runner_in_a_shell_cuts_the_run_short_and_counts_no_failure() {
    use crate::support::shell::{Shell, CTRL_C};
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    let mut shell = Shell::start();
    let line = format!(
        "{} --endpoints {} --id tty {} ; echo status=$?",
        crate::support::bin(),
        etcd.endpoints(),
        args("job", "interrupted", &[], d).join(" ")
    );
    shell.type_line(&line);
    let first = wait_runs(d, 1, &[]).remove(0);
    assert_eq!(first.id, "tty", "{}", shell.screen());
    let mut w = replica("w", &etcd.endpoints(), "interrupted", &[], d);
    wait_waiting(&etcd, "interrupted", 1, &[&w]);
    shell.press(CTRL_C);
    shell.wait_screen(LONG, |s| s.contains("status=130"));
    let again = wait_runs(d, 2, &[&w])[1].clone();
    assert_eq!(
        (again.id.as_str(), again.attempt.as_str()),
        ("w", "1"),
        "{}",
        shell.screen()
    );
    touch(d, "go", "");
    assert_eq!(w.wait(LONG), 0, "{}", w.log());
    let (code, v) = status(&etcd, "interrupted");
    assert_eq!((code, v["failed"].as_u64()), (0, Some(0)), "{v}");
}

/// `once clear` while the runner is still finishing: its success transaction went through (the
/// record is in etcd, its key is gone with it) but the answer came too late, so it reads the
/// record back to learn that it was its own. A clear in that window found the queue empty and
/// went through, the runner then found no record, took its success for unrecorded, joined again
/// and ran the command a second time itself. The clear must wait until the runner is gone.
#[test]
fn once_clear_waits_for_a_runner_still_writing_its_outcome() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    touch(d, "wait", "");
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let mut a = Replica::start(
        "c1",
        &proxy.url,
        &args(
            "job",
            "late-answer",
            &["--ttl", "10s", "--dial-timeout", "1s"],
            d,
        ),
    );
    wait_runs(d, 1, &[&a]);
    // The outcome reaches etcd after 700 ms; its answer comes back 700 ms later, after the 1 s
    // the runner waits for it.
    proxy.set_delay(Duration::from_millis(700));
    touch(d, "go", "");
    let record = "/singleton-exec/job@once/late-answer@record";
    wait_for(
        LONG,
        || {
            let (_, out) =
                crate::support::etcd::etcdctl(&etcd.endpoints(), &["get", "--keys-only", record]);
            out.contains("@record")
        },
        || format!("no record:\n{}", a.log()),
    );
    proxy.set_delay(Duration::ZERO);
    // Cleared as soon as it can be: once the runner knows its outcome, never before.
    let mut cleared = None;
    let started = Instant::now();
    while started.elapsed() < LONG {
        let (code, out) = clear(&etcd, "late-answer", &[]);
        if code == 0 {
            cleared = Some(out);
            break;
        }
        assert_eq!(code, 1, "{out}");
    }
    let code = a.wait(LONG);
    assert_eq!(runs(d).len(), 1, "ran twice: {:?}\n{}", runs(d), a.log());
    assert_eq!(code, 0, "{}", a.log());
    assert!(a.log().contains("done here"), "{}", a.log());
    let cleared = cleared.expect("never cleared");
    assert!(cleared.contains("it was done by c1"), "{cleared}");
}
