//! `--hot-standby` against a real etcd, with `tests/programs/hot_child.py` as the child: it runs
//! on every replica, acts as the leader (an exclusive flock) only when its role file says so, and
//! confirms each role on its notify socket. What the tests show:
//!
//! - every replica's child starts at once, as a standby (`SINGLETON_EXEC_ROLE=standby`, the file
//!   says `standby`); the leader's is promoted with its fencing revision, and confirms;
//! - SIGTERM to the leader demotes its child first: the new leader's child acts only after the
//!   old one confirmed (the lock is never held twice), without starting anew; the old replica
//!   exits with its child's status;
//! - a child that never confirms its demotion (and ignores SIGTERM) is killed at the lease's
//!   deadline, frozen when the demotion began, before the lease could expire; the next leader's
//!   child finds the lock free;
//! - a standby's child that exits is started again (`--on-child-exit restart`) while the replica
//!   stays in the queue, and is promoted later;
//! - a promoted child that never confirms is stopped after `--promote-timeout`, and another
//!   replica's child takes over.

use std::path::Path;
use std::time::Duration;

use crate::support::{args, free_port, http, program, wait_for, EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(30);

/// One line of the children's `events.log`.
#[derive(Debug, Clone)]
struct Ev {
    what: String,
    name: String,
    pid: i32,
    at: u128,
    detail: String,
}

fn events(dir: &Path) -> Vec<Ev> {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(5, ' ');
            Some(Ev {
                what: w.next()?.into(),
                name: w.next()?.into(),
                pid: w.next()?.parse().ok()?,
                at: w.next()?.parse().ok()?,
                detail: w.next().unwrap_or("").into(),
            })
        })
        .collect()
}

fn count(dir: &Path, what: &str, name: &str) -> usize {
    events(dir)
        .iter()
        .filter(|e| e.what == what && e.name == name)
        .count()
}

fn last(dir: &Path, what: &str, name: &str) -> Option<Ev> {
    events(dir)
        .into_iter()
        .rev()
        .find(|e| e.what == what && e.name == name)
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("events.log")).unwrap_or_default()
}

/// No child ever found the lock held when it took up the leader's work.
fn assert_never_two_leaders(dir: &Path, logs: &[&Replica]) {
    let overlaps: Vec<Ev> = events(dir)
        .into_iter()
        .filter(|e| e.what == "leader" && e.detail.contains("lock=held"))
        .collect();
    assert!(
        overlaps.is_empty(),
        "two children acted as the leader at once: {overlaps:?}\n{}\n{}",
        log_of(dir),
        logs.iter()
            .map(|r| r.log())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
}

/// `--election hot --hot-standby OPTS -- python3 hot_child.py DIR NAME CHILD_ARGS`
fn replica(name: &str, ep: &str, dir: &Path, opts: &[&str], child_args: &[&str]) -> Replica {
    let mut all = vec!["--election", "hot", "--hot-standby", "--ttl", "4s"];
    all.extend(opts);
    let mut child: Vec<String> = vec![
        "--".into(),
        "python3".into(),
        program("hot_child.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
        name.into(),
    ];
    child.extend(child_args.iter().map(|s| s.to_string()));
    Replica::start(name, ep, &args(&all, &child))
}

#[test]
fn the_child_runs_everywhere_and_a_sigterm_hands_over_after_the_confirmed_demotion() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (pa, pb) = (free_port().to_string(), free_port().to_string());
    let mut a = replica("a", &ep, dir, &["--health-addr", &pa], &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    let b = replica("b", &ep, dir, &["--health-addr", &pb], &[]);
    // Both children run; b's as a standby, told so by its variable and its file.
    wait_for(LONG, || count(dir, "start", "b") == 1, || b.log());
    let start_b = last(dir, "start", "b").unwrap();
    assert_eq!(
        start_b.detail,
        "role=standby file=standby",
        "{}",
        log_of(dir)
    );
    // a's was promoted at once, perhaps before it read its file: which then says so.
    let start_a = last(dir, "start", "a").unwrap();
    assert!(
        start_a.detail.starts_with("role=standby file="),
        "{}",
        log_of(dir)
    );
    // a's child was promoted with its fencing revision.
    let lead_a = last(dir, "leader", "a").unwrap();
    assert!(lead_a.detail.starts_with("rev="), "{lead_a:?}");
    a.wait_log("the child confirmed it leads", LONG);
    assert_eq!(count(dir, "leader", "b"), 0);
    // What each replica shows: the role told, the role confirmed, and the counts.
    let hot = |port: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&http("GET", port.parse().unwrap(), "/status").1).unwrap();
        (
            v["role"].clone(),
            v["hot_standby"]["told"].clone(),
            v["hot_standby"]["confirmed"].clone(),
        )
    };
    wait_for(LONG, || hot(&pb).2 == "standby", || b.log());
    assert_eq!(
        hot(&pa),
        ("leader".into(), "leader".into(), "leader".into())
    );
    assert_eq!(
        hot(&pb),
        ("standby".into(), "standby".into(), "standby".into())
    );
    let metrics = http("GET", pa.parse().unwrap(), "/metrics").1;
    assert!(
        metrics.contains("singleton_exec_promotions_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("singleton_exec_promotion_confirm_seconds_count 1"),
        "{metrics}"
    );

    a.signal(libc::SIGTERM);
    wait_for(LONG, || count(dir, "leader", "b") == 1, || b.log());
    assert_eq!(
        a.wait(LONG),
        0,
        "the child's status (it exits 0 on SIGTERM):\n{}",
        a.log()
    );
    let demoted = last(dir, "standby", "a").expect("a's child confirmed its demotion");
    let lead_b = last(dir, "leader", "b").unwrap();
    assert!(demoted.at < lead_b.at, "{}", log_of(dir));
    // b's child was promoted, not started anew.
    assert_eq!(count(dir, "start", "b"), 1, "{}", log_of(dir));
    assert_eq!(lead_b.pid, start_b.pid);
    assert!(count(dir, "exit", "a") == 1, "{}", log_of(dir));
    assert_never_two_leaders(dir, &[&a, &b]);
    assert!(a.log().contains("demoting the child"), "{}", a.log());
    assert_eq!(
        hot(&pb),
        ("leader".into(), "leader".into(), "leader".into())
    );
}

#[test]
fn a_child_that_never_confirms_its_demotion_is_killed_before_the_lease_could_expire() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = [
        "--resign-signal",
        "USR2",
        "--resign-holdoff",
        "1s",
        "--grace",
        "500ms",
    ];
    let a = replica("a", &ep, dir, &opts, &["--never-demote"]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    let b = replica("b", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "start", "b") == 1, || b.log());
    let pid_a = last(dir, "leader", "a").unwrap().pid;
    // A step-down: a's child is told to stand by, never answers, and ignores SIGTERM.
    a.signal(libc::SIGUSR2);
    wait_for(
        LONG,
        || count(dir, "leader", "b") == 1,
        || format!("{}\n{}", a.log(), b.log()),
    );
    assert!(
        !crate::support::alive(pid_a),
        "a's child was killed before b's took over"
    );
    assert_never_two_leaders(dir, &[&a, &b]);
    let log = a.log();
    assert!(
        log.contains("renew deadline passed"),
        "stopped at the frozen deadline:\n{log}"
    );
    assert!(log.contains("killed the child's tree"), "{log}");
}

#[test]
fn a_standby_child_that_exits_is_restarted_and_promoted_later() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = ["--on-child-exit", "restart"];
    let mut a = replica("a", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    let b = replica("b", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "start", "b") == 1, || b.log());
    let first = last(dir, "start", "b").unwrap().pid;
    // The standby's child dies: started again, the replica still waiting in the queue.
    unsafe { libc::kill(first, libc::SIGKILL) };
    wait_for(LONG, || count(dir, "start", "b") == 2, || b.log());
    b.wait_log("the standby's child exited; starting it again", LONG);
    let second = last(dir, "start", "b").unwrap();
    assert_eq!(second.detail, "role=standby file=standby");
    a.signal(libc::SIGTERM);
    wait_for(LONG, || count(dir, "leader", "b") == 1, || b.log());
    assert_eq!(last(dir, "leader", "b").unwrap().pid, second.pid);
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    assert_never_two_leaders(dir, &[&a, &b]);
}

#[test]
fn a_promoted_child_that_never_confirms_is_stopped_after_the_promote_timeout() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = [
        "--promote-timeout",
        "1s",
        "--resign-holdoff",
        "2s",
        "--on-child-exit",
        "restart",
    ];
    let a = replica("a", &ep, dir, &opts, &["--never-promote"]);
    wait_for(LONG, || count(dir, "start", "a") == 1, || a.log());
    let b = replica("b", &ep, dir, &opts, &[]);
    // a leads first (it joined first), its child never confirms: a steps down, b takes over.
    a.wait_log("did not confirm it leads", LONG);
    wait_for(
        LONG,
        || count(dir, "leader", "b") == 1,
        || format!("{}\n{}", a.log(), b.log()),
    );
    assert_never_two_leaders(dir, &[&a, &b]);
    // a's child was stopped (a failed start), and a new standby's child runs in its place.
    wait_for(LONG, || count(dir, "start", "a") == 2, || a.log());
}

/// The shell and Python examples of docs/hot-standby.md, as written: the leader's child leads,
/// and on SIGTERM the standby's takes over without starting anew.
#[test]
fn the_documented_examples_hand_over_on_sigterm() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = [
        vec![root
            .join("examples/hot-standby/app.sh")
            .to_string_lossy()
            .into_owned()],
        vec![
            "python3".to_owned(),
            root.join("examples/hot-standby/app.py")
                .to_string_lossy()
                .into_owned(),
        ],
    ];
    for (i, command) in examples.iter().enumerate() {
        let etcd = EtcdCluster::start(1);
        let ep = etcd.endpoints();
        let election = format!("example{i}");
        let opts = [
            "--election",
            election.as_str(),
            "--hot-standby",
            "--ttl",
            "4s",
        ];
        let mut child = vec!["--".to_owned()];
        child.extend(command.iter().cloned());
        let mut a = Replica::start("a", &ep, &args(&opts, &child));
        a.wait_stdout("leading (fencing revision", LONG);
        let b = Replica::start("b", &ep, &args(&opts, &child));
        b.wait_stdout("started as standby", LONG);
        b.wait_log("standby: waiting for leadership", LONG);
        a.signal(libc::SIGTERM);
        b.wait_stdout("leading (fencing revision", LONG);
        assert_eq!(a.wait(LONG), 0, "{command:?}\n{}", a.log());
        assert!(a.stdout().contains("standing by"), "{}", a.stdout());
        assert!(
            a.log().contains("the child confirmed it stands by"),
            "{}",
            a.log()
        );
        assert_eq!(
            b.stdout().matches("started as").count(),
            1,
            "{}",
            b.stdout()
        );
    }
}

/// A confirmed demotion leaves the child running as a standby: the deadline frozen for the
/// demotion is lifted with the confirmation, so the child is not stopped when it passes, and the
/// replica, back in the queue, is promoted again later with the same child.
#[test]
fn a_confirmed_demotion_keeps_the_child_past_the_frozen_deadline() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = ["--resign-signal", "USR2", "--resign-holdoff", "1s"];
    let a = replica("a", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    let mut b = replica("b", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "start", "b") == 1, || b.log());
    b.wait_log("standby: waiting for leadership", LONG);
    let child_a = last(dir, "start", "a").unwrap().pid;
    a.signal(libc::SIGUSR2);
    wait_for(
        LONG,
        || count(dir, "leader", "b") == 1,
        || a.log() + &b.log(),
    );
    a.wait_log("the child confirmed it stands by", LONG);
    // Well past the deadline frozen when the demotion began (renew deadline 2.4 s).
    crate::support::hold(
        Duration::from_secs(5),
        || crate::support::alive(child_a) && count(dir, "start", "a") == 1,
        || {
            format!(
                "a's demoted child was stopped:\n{}\n{}",
                log_of(dir),
                a.log()
            )
        },
    );
    assert!(!a.log().contains("renew deadline passed"), "{}", a.log());
    // Back in the queue behind b: promoted again, the same child.
    b.signal(libc::SIGTERM);
    wait_for(LONG, || count(dir, "leader", "a") == 2, || a.log());
    assert_eq!(last(dir, "leader", "a").unwrap().pid, child_a);
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    assert_never_two_leaders(dir, &[&a, &b]);
}
