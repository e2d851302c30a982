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
    assert_eq!(
        http("GET", pa.parse().unwrap(), "/leader").0,
        200,
        "confirmed: ready"
    );
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
        log.contains(
            "did not confirm its demotion (ROLE=standby) before the deadline frozen for it"
        ),
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
    let port = free_port().to_string();
    let opts = [
        "--health-addr",
        port.as_str(),
        "--promote-timeout",
        "3s",
        "--resign-holdoff",
        "2s",
        "--on-child-exit",
        "restart",
    ];
    let a = replica("a", &ep, dir, &opts, &["--never-promote"]);
    wait_for(LONG, || count(dir, "start", "a") == 1, || a.log());
    let b = replica("b", &ep, dir, &opts[2..], &[]);
    // a leads first (it joined first), its child never confirms: until the timeout a is
    // "promoting", not ready (/leader answers 503, status shows it), then steps down.
    a.wait_log("promoting the standby's child", LONG);
    let (code, _) = http("GET", port.parse().unwrap(), "/leader");
    assert_eq!(code, 503, "a promoting leader is not ready");
    let shown = crate::support::run_subcommand("status", &etcd, &["--election", "hot"]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains("promoting"), "{shown}");
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
    let mut a = replica("a", &ep, dir, &opts, &[]);
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
    // Well past the deadline frozen when the demotion began (renew deadline 2.4 s): the child
    // stands by, and the replica (--on-child-exit exit) stays in the queue.
    let alog = a.log.clone();
    crate::support::hold(
        Duration::from_secs(5),
        || {
            crate::support::alive(child_a)
                && count(dir, "start", "a") == 1
                && a.try_status().is_none()
        },
        || {
            format!(
                "a's demoted child was stopped, or a ended:\n{}\n{}",
                log_of(dir),
                std::fs::read_to_string(&alog).unwrap_or_default()
            )
        },
    );
    let log = a.log();
    assert!(
        !log.contains("renew deadline passed") && !log.contains("before the deadline frozen"),
        "{log}"
    );
    // Back in the queue behind b: promoted again, the same child.
    b.signal(libc::SIGTERM);
    wait_for(LONG, || count(dir, "leader", "a") == 2, || a.log());
    assert_eq!(last(dir, "leader", "a").unwrap().pid, child_a);
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    assert_never_two_leaders(dir, &[&a, &b]);
}

// Attacks on --hot-standby: the moments a promotion or a demotion can be caught at.

/// A leading child that says `ROLE=standby` by itself (it found it cannot lead on) is not left
/// holding the lease with nobody acting as the leader: its replica steps down (tells it
/// `standby`, takes its confirmation, gives the lease up) and the other replica's child is
/// promoted. The child that stood down keeps running, a standby.
#[test]
fn a_child_that_stands_down_by_itself_hands_the_lead_over() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = ["--resign-holdoff", "1s"];
    let a = replica("a", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    a.wait_log("the child confirmed it leads", LONG);
    let b = replica("b", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "start", "b") == 1, || b.log());
    b.wait_log("standby: waiting for leadership", LONG);
    let child_a = last(dir, "leader", "a").unwrap().pid;
    // SAFETY: kill(2) on a pid we read from the child's own log; it still runs.
    unsafe { libc::kill(child_a, libc::SIGHUP) };
    wait_for(
        LONG,
        || count(dir, "leader", "b") == 1,
        || format!("{}\n{}\n{}", log_of(dir), a.log(), b.log()),
    );
    let log = a.log();
    assert!(
        log.contains("said it stands by (ROLE=standby) without being asked"),
        "{log}"
    );
    assert!(log.contains("the child confirmed it stands by"), "{log}");
    // b's child acted only after a's stood down, and a's child still runs, a standby.
    let stood = last(dir, "standby", "a").unwrap();
    assert_eq!(stood.detail, "unasked", "{}", log_of(dir));
    assert!(last(dir, "leader", "b").unwrap().at > stood.at);
    assert!(crate::support::alive(child_a), "{}\n{log}", log_of(dir));
    assert_eq!(count(dir, "start", "a"), 1, "{}", log_of(dir));
    assert_never_two_leaders(dir, &[&a, &b]);
}

/// A child that confirms its promotion and stands down at once (two datagrams back to back) is
/// demoted and keeps running, the lease goes, and (alone by then, its holdoff over) the replica
/// promotes the same child again. Whether the two are read at one look is up to the scheduler;
/// when they are, a promotion read as never confirmed would stop the child after
/// --promote-timeout with nobody leading: `leadership::hot_standby::what_the_role_messages_answer`
/// pins that reading down, this test the whole path.
#[test]
fn a_child_that_leads_and_stands_down_at_once_is_demoted_not_stopped() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = ["--resign-holdoff", "200ms", "--promote-timeout", "30s"];
    let mut b = replica("b", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "leader", "b") == 1, || b.log());
    b.wait_log("the child confirmed it leads", LONG);
    // a's child has said its first ROLE= (as a standby) before it is promoted, so the role
    // signal, not its start-up, tells it to lead.
    let a = replica("a", &ep, dir, &opts, &["--stand-down-at-first-lead"]);
    wait_for(LONG, || count(dir, "spoke", "a") == 1, || a.log());
    a.wait_log("standby: waiting for leadership", LONG);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    wait_for(
        LONG,
        || count(dir, "leader", "a") == 2,
        || format!("{}\n{}", log_of(dir), a.log()),
    );
    a.wait_log("said it stands by (ROLE=standby) without being asked", LONG);
    a.wait_log("the child confirmed it stands by", LONG);
    let log = a.log();
    assert!(!log.contains("did not confirm it leads"), "{log}");
    assert_eq!(
        count(dir, "start", "a"),
        1,
        "the child was stopped and started anew:\n{}\n{log}",
        log_of(dir)
    );
    let stood = last(dir, "standby", "a").unwrap();
    assert_eq!(stood.detail, "unasked", "{}", log_of(dir));
    assert!(last(dir, "leader", "a").unwrap().at > stood.at);
    assert_never_two_leaders(dir, &[&a, &b]);
}

/// The same, alone in the election: after a confirmed resign the replica wins again (its holdoff
/// over) and promotes the same child, a standby again since its confirmation.
#[test]
fn a_replica_alone_promotes_its_demoted_child_again() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = [
        "--resign-signal",
        "USR2",
        "--resign-holdoff",
        "200ms",
        "--on-child-exit",
        "restart",
    ];
    let mut a = replica("a", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    a.wait_log("the child confirmed it leads", LONG);
    a.signal(libc::SIGUSR2);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        if let Some(st) = a.try_status() {
            panic!(
                "a exited ({st:?}) {:?} after its resign:\n{}\n{}",
                start.elapsed(),
                log_of(dir),
                a.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(dir, "leader", "a"), 2, "{}\n{}", log_of(dir), a.log());
    assert_eq!(
        count(dir, "start", "a"),
        1,
        "the child was stopped and started anew:\n{}\n{}",
        log_of(dir),
        a.log()
    );
    let log = a.log();
    assert!(
        !log.contains("renew deadline passed") && !log.contains("before the deadline frozen"),
        "{log}"
    );
}

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based) → index 11, 12 here.
    rest.get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + rest
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

/// A standby's child exits (`--on-child-exit restart`, so a restart is due after the backoff) and
/// the replica wins before the restart: no child to promote, one is started as the leader, and
/// the restart is no longer due. Once that leadership ends with the child kept (a confirmed
/// demotion), the replica stands by without spinning (a restart left due would wake it at once,
/// for ever).
#[test]
fn a_standby_restart_due_when_the_replica_wins_is_dropped() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let opts = [
        "--on-child-exit",
        "restart",
        "--resign-signal",
        "USR2",
        "--resign-holdoff",
        "3s",
    ];
    let a = replica("a", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    a.wait_log("the child confirmed it leads", LONG);
    let b = replica("b", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "start", "b") == 1, || b.log());
    b.wait_log("standby: waiting for leadership", LONG);
    let c = replica("c", &ep, dir, &opts, &[]);
    wait_for(LONG, || count(dir, "start", "c") == 1, || c.log());
    c.wait_log("standby: waiting for leadership", LONG);
    std::thread::sleep(Duration::from_millis(500));
    // b's child dies; a resigns before b's restart (500 ms) is due.
    let first = last(dir, "start", "b").unwrap().pid;
    unsafe { libc::kill(first, libc::SIGKILL) };
    b.wait_log("the standby's child exited; starting it again", LONG);
    a.signal(libc::SIGUSR2);
    wait_for(
        LONG,
        || count(dir, "leader", "b") == 1,
        || format!("{}\n{}", log_of(dir), b.log()),
    );
    b.wait_log("the child confirmed it leads", LONG);
    assert!(
        b.log().contains("NoChild"),
        "b's child was started as the leader:\n{}",
        b.log()
    );
    // b resigns: its child confirms and stays a standby; c (a is in its holdoff) takes over.
    b.signal(libc::SIGUSR2);
    b.wait_log("leadership given up", LONG);
    let t0 = cpu_ticks(b.pid());
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_ticks(b.pid()) - t0;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        used * 1000 / hz < 300,
        "b used {} ms of CPU in 1.5 s while standing by:\n{}",
        used * 1000 / hz,
        b.log()
    );
    drop(c);
}

/// A standby's child whose main process dies while a descendant lingers (the leftovers get the
/// stop signal and SIGKILL after --grace): a win in that window waits for the leftovers to be
/// gone, then starts a child as the leader (it did exit with "the previous child's tree is still
/// running").
#[test]
fn a_win_while_a_standby_childs_leftovers_die_waits_for_them_then_leads() {
    let etcd = EtcdCluster::start(1);
    let ep = etcd.endpoints();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let a = replica("a", &ep, dir, &["--on-child-exit", "restart"], &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    a.wait_log("the child confirmed it leads", LONG);
    // b's child: a shell (its main process) with a helper that ignores SIGTERM, and the hot child.
    let script = format!(
        "sh -c 'trap \"\" TERM; sleep 60' & python3 {} {} b; wait",
        program("hot_child.py").display(),
        dir.display()
    );
    let mut b = Replica::start(
        "b",
        &ep,
        &args(
            &[
                "--election",
                "hot",
                "--hot-standby",
                "--ttl",
                "4s",
                "--on-child-exit",
                "restart",
            ],
            &["--".into(), "sh".into(), "-c".into(), script],
        ),
    );
    wait_for(LONG, || count(dir, "start", "b") == 1, || b.log());
    b.wait_log("standby: waiting for leadership", LONG);
    // b's main process (the shell, parent of the hot child) dies; its leftovers get 1.2 s of grace.
    let py = last(dir, "start", "b").unwrap().pid;
    let stat = std::fs::read_to_string(format!("/proc/{py}/stat")).unwrap();
    let sh: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    unsafe { libc::kill(sh, libc::SIGKILL) };
    a.signal(libc::SIGTERM);
    let log_b = b.log.clone();
    wait_for(
        LONG,
        || count(dir, "leader", "b") == 1 || b.try_status().is_some(),
        || {
            let log = std::fs::read_to_string(&log_b).unwrap_or_default();
            format!("{}\n{log}", log_of(dir))
        },
    );
    assert!(
        b.try_status().is_none(),
        "b exited when it won:\n{}",
        b.log()
    );
    let started = last(dir, "start", "b").unwrap();
    assert!(started.detail.starts_with("role=leader"), "{}", log_of(dir));
    assert_never_two_leaders(dir, &[&a, &b]);
}

/// SIGTERMs at the worst moments (during the demotion, during the next replica's
/// promotion, twice): every replica exits, with its child's status, and no two leaders.
#[test]
fn sigterms_during_promotion_and_demotion_never_hang() {
    for round in 0..3 {
        let etcd = EtcdCluster::start(1);
        let ep = etcd.endpoints();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let mut a = replica("a", &ep, dir, &[], &[]);
        wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
        let mut b = replica("b", &ep, dir, &[], &["--start-delay", "0.3"]);
        wait_for(
            LONG,
            || b.log().contains("standby: waiting for leadership"),
            || b.log(),
        );
        a.signal(libc::SIGTERM);
        if round == 1 {
            a.signal(libc::SIGTERM);
        }
        // b wins and promotes: SIGTERM it in the middle.
        wait_for(
            LONG,
            || {
                b.log().contains("promoting the standby's child")
                    || b.log().contains("not promoted")
            },
            || b.log(),
        );
        b.signal(libc::SIGTERM);
        if round == 2 {
            b.signal(libc::SIGTERM);
        }
        let ca = a.wait(Duration::from_secs(15));
        let cb = b.wait(Duration::from_secs(15));
        eprintln!("round {round}: a={ca} b={cb}");
        assert_never_two_leaders(dir, &[&a, &b]);
        assert!(ca == 0 || ca == 143, "a: {ca}\n{}", a.log());
        assert!(cb == 0 || cb == 143, "b: {cb}\n{}", b.log());
    }
}

/// b's standby child exits 3 by itself leaving a process behind (it ignores SIGTERM, so its stop
/// lasts the grace), and b wins meanwhile: a (the leader) is gone when this returns, b waits
/// for its child's tree. A second run of the child (started as the leader) sleeps. `b_opts`
/// are b's options beyond the hot election's.
fn standby_child_exits_as_its_replica_wins(
    ep: &str,
    dir: &Path,
    b_opts: &[&str],
) -> (Replica, Replica) {
    let mut a = replica("a", ep, dir, &[], &[]);
    wait_for(LONG, || count(dir, "leader", "a") == 1, || a.log());
    a.wait_log("the child confirmed it leads", LONG);
    let (ran, ready, go) = (dir.join("ran"), dir.join("ready"), dir.join("go"));
    let script = format!(
        "if [ -e {ran} ]; then exec sleep 60; fi; touch {ran}; \
         (trap '' TERM; exec sleep 60) & touch {ready}; \
         while [ ! -e {go} ]; do sleep 0.05; done; exit 3",
        ran = ran.display(),
        ready = ready.display(),
        go = go.display()
    );
    let mut opts = vec![
        "--election",
        "hot",
        "--hot-standby",
        "--ttl",
        "10s",
        "--grace",
        "5s",
    ];
    opts.extend(b_opts);
    let child = ["--", "sh", "-c", &script].map(String::from);
    let b = Replica::start("b", ep, &args(&opts, &child));
    wait_for(LONG, || ready.exists(), || b.log());
    b.wait_log("standby: waiting for leadership", LONG);
    std::fs::write(&go, "").unwrap();
    // Its leftover is being stopped (SIGTERM ignored: SIGKILL in 5 s) when b wins.
    b.wait_log("stopping the child's tree", LONG);
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    (a, b)
}

/// The default `--on-child-exit exit` decides on the child's status once the tree is gone: b
/// exits with it. It once started a new child as the leader instead, the status lost.
#[test]
fn a_standby_child_that_exited_as_its_replica_won_keeps_its_status() {
    let etcd = EtcdCluster::start(1);
    let d = tempfile::tempdir().unwrap();
    let (_a, mut b) = standby_child_exits_as_its_replica_wins(&etcd.endpoints(), d.path(), &[]);
    assert_eq!(b.wait(LONG), 3, "{}", b.log());
    assert!(
        !b.log().contains("promoting the standby's child"),
        "{}",
        b.log()
    );
}

/// With `--on-child-exit restart`, b starts a child as the leader once the tree is gone, and
/// the end counts as the child's: /metrics shows its exit code and a restart.
#[test]
fn a_standby_child_that_exited_as_its_replica_won_is_counted_and_restarted() {
    let etcd = EtcdCluster::start(1);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let port = free_port().to_string();
    let opts = [
        "--on-child-exit",
        "restart",
        "--promote-timeout",
        "60s",
        "--health-addr",
        &port,
    ];
    let (_a, b) = standby_child_exits_as_its_replica_wins(&etcd.endpoints(), dir, &opts);
    let metrics = || http("GET", port.parse().unwrap(), "/metrics").1;
    let sample = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    wait_for(
        LONG,
        || sample(&metrics(), "singleton_exec_child_restarts_total").as_deref() == Some("1"),
        || format!("{}\n{}", metrics(), b.log()),
    );
    let text = metrics();
    assert_eq!(
        sample(&text, "singleton_exec_last_child_exit_code").as_deref(),
        Some("3"),
        "{text}"
    );
    b.wait_log("leader: child started", LONG);
    assert!(
        !b.log().contains("promoting the standby's child"),
        "{}",
        b.log()
    );
}
