//! Interoperability with etcd's own tools, against a real etcd: our key layout is etcd's concurrency
//! layout (`PREFIX/NAME/<lease hex>`, the lowest create revision leads), so `etcdctl elect` and
//! `etcdctl lock` on `/singleton-exec/NAME` see and join our elections, and a child written for
//! `etcdctl lock NAME -- cmd` gets the same `ETCD_LOCK_KEY` / `ETCD_LOCK_REV` from us.
//!
//! etcdctl processes run through [`Replica::spawn`] (stdout to a file, SIGKILLed on drop).
//! `etcdctl elect` prints the key and value once it wins (`-l`: on every leader change), and
//! `etcdctl lock NAME` prints the key once it holds the lock; both give up cleanly on SIGINT.

use std::process::Command;
use std::time::Duration;

use crate::support::{bin, program, wait_for, EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(30);

fn etcdctl(endpoints: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args);
    cmd
}

/// One of ours, in election `election`, whose child prints "started" and sleeps.
fn ours(name: &str, endpoints: &str, election: &str) -> Replica {
    Replica::start(
        name,
        endpoints,
        &[
            "--election",
            election,
            "--ttl",
            "5s",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ],
    )
}

/// `singleton-exec status`: (exit code, stdout).
fn status(endpoints: &str, election: &str) -> (i32, String) {
    let out = Command::new(bin())
        .args(["status", "--endpoints", endpoints, "--election", election])
        .env_remove("SINGLETON_EXEC_ENDPOINTS")
        .output()
        .expect("singleton-exec status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A field of `status`'s output ("leader", "key", "candidates", ...).
fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn wait_candidates(endpoints: &str, election: &str, n: usize) {
    wait_for(
        LONG,
        || field(&status(endpoints, election).1, "candidates") == n.to_string(),
        || {
            format!(
                "{election}: not {n} candidates: {}",
                status(endpoints, election).1
            )
        },
    );
}

/// What `tests/programs/lock_env.sh` reported.
#[derive(Debug)]
struct LockEnv {
    key: String,
    rev: i64,
    create: i64,
    write: String,
}

fn lock_env(output: &str) -> LockEnv {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("lock-env: "))
        .unwrap_or_else(|| panic!("no lock-env line in {output:?}"));
    let get = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    LockEnv {
        key: get("key"),
        rev: get("rev").parse().unwrap_or(-1),
        create: get("create").parse().unwrap_or(-1),
        write: get("write"),
    }
}

/// The script under `etcdctl lock /singleton-exec/NAME -- ...` (the command line etcdctl users
/// have): its etcdctl process, running until the script is done.
fn under_etcdctl_lock(endpoints: &str, election: &str) -> Replica {
    let script = program("lock_env.sh");
    Replica::spawn(
        "etcdctl-lock-cmd",
        etcdctl(
            endpoints,
            &[
                "lock",
                &format!("/singleton-exec/{election}"),
                "--",
                "sh",
                script.to_str().unwrap(),
                endpoints,
                "/lock-env/state",
            ],
        ),
    )
}

/// The same script under singleton-exec: leads, runs it once, exits with its status.
fn under_singleton_exec(endpoints: &str, election: &str) -> Replica {
    let script = program("lock_env.sh");
    Replica::start(
        "ours",
        endpoints,
        &[
            "--election",
            election,
            "--",
            "sh",
            script.to_str().unwrap(),
            endpoints,
            "/lock-env/state",
        ],
    )
}

/// Checks what one tool handed the script; `waited`: whether another holder was ahead.
fn check_lock_env(tool: &str, env: &LockEnv, election: &str, waited: bool) {
    let lease = env
        .key
        .strip_prefix(&format!("/singleton-exec/{election}/"))
        .unwrap_or_else(|| panic!("{tool}: ETCD_LOCK_KEY {} not in the election", env.key));
    assert!(
        !lease.is_empty() && lease.bytes().all(|b| b.is_ascii_hexdigit()),
        "{tool}: {env:?}"
    );
    if waited {
        // The revision at which the lock was acquired, after the holder ahead let go.
        assert!(env.rev > env.create, "{tool} (waited): {env:?}");
    } else {
        // Nobody ahead: acquired by the put itself.
        assert_eq!(env.rev, env.create, "{tool} (uncontended): {env:?}");
    }
    assert_eq!(env.write, "SUCCESS", "{tool}: the fenced write: {env:?}");
}

/// Takes `/singleton-exec/NAME` with a bare `etcdctl lock` (held until SIGINT).
fn hold_lock(endpoints: &str, election: &str) -> Replica {
    let prefix = format!("/singleton-exec/{election}");
    let hold = Replica::spawn("etcdctl-lock", etcdctl(endpoints, &["lock", &prefix]));
    hold.wait_stdout(&format!("{prefix}/"), LONG);
    hold
}

#[test]
fn etcd_lock_env_is_the_same_under_etcdctl_lock_and_singleton_exec() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let election = "lockenv";

    // Nobody ahead: both hand over the key and its create revision, and the write goes through.
    let mut theirs = under_etcdctl_lock(&ep, election);
    assert_eq!(theirs.wait(LONG), 0, "{}", theirs.log());
    check_lock_env("etcdctl lock", &lock_env(&theirs.stdout()), election, false);
    let mut ours = under_singleton_exec(&ep, election);
    assert_eq!(ours.wait(LONG), 0, "{}", ours.log());
    let our_env = lock_env(&ours.stdout());
    check_lock_env("singleton-exec", &our_env, election, false);

    // Queued behind a holder: both hand over the revision of the acquisition, later than the key's.
    for tool in ["etcdctl lock", "singleton-exec"] {
        let mut hold = hold_lock(&ep, election);
        let mut waiter = match tool {
            "etcdctl lock" => under_etcdctl_lock(&ep, election),
            _ => under_singleton_exec(&ep, election),
        };
        wait_candidates(&ep, election, 2);
        assert!(
            waiter.stdout().is_empty(),
            "{tool} ran while etcdctl held the lock"
        );
        hold.signal(libc::SIGINT);
        assert_eq!(hold.wait(LONG), 0, "{}", hold.log());
        assert_eq!(waiter.wait(LONG), 0, "{tool}: {}", waiter.log());
        check_lock_env(tool, &lock_env(&waiter.stdout()), election, true);
    }

    // After the lock is gone, the same variables no longer fence anything.
    let out = Command::new("sh")
        .arg(program("lock_env.sh"))
        .args([ep.as_str(), "/lock-env/state"])
        .env("ETCD_LOCK_KEY", &our_env.key)
        .env("ETCD_LOCK_REV", our_env.rev.to_string())
        .output()
        .expect("lock_env.sh");
    let stale = lock_env(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        stale.write, "FAILURE",
        "a released lock still fences: {stale:?}"
    );
}

#[test]
fn etcdctl_elect_listen_observes_our_leader() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let mut alpha = ours("alpha", &ep, "observed");
    alpha.wait_stdout("started", LONG);
    let observer = Replica::spawn(
        "etcdctl-elect-l",
        etcdctl(&ep, &["elect", "-l", "/singleton-exec/observed"]),
    );
    // It prints the leader's key, then its value (our --id).
    let key = field(&status(&ep, "observed").1, "key");
    observer.wait_stdout(&format!("{key}\nalpha\n"), LONG);

    let beta = ours("beta", &ep, "observed");
    beta.wait_log("role=\"standby\"", LONG);
    alpha.signal(libc::SIGTERM);
    alpha.wait(LONG);
    beta.wait_stdout("started", LONG);
    let key = field(&status(&ep, "observed").1, "key");
    observer.wait_stdout(&format!("{key}\nbeta\n"), LONG);
}

#[test]
fn etcdctl_elect_candidates_queue_with_ours() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let prefix = "/singleton-exec/mixed";
    // Queue: etcdctl candidate e1, then ours, then etcdctl candidate e2.
    let mut e1 = Replica::spawn("e1", etcdctl(&ep, &["elect", prefix, "e1"]));
    e1.wait_stdout("\ne1\n", LONG);
    let mut alpha = ours("alpha", &ep, "mixed");
    alpha.wait_log("role=\"standby\"", LONG);
    let e2 = Replica::spawn("e2", etcdctl(&ep, &["elect", prefix, "e2"]));
    wait_candidates(&ep, "mixed", 3);
    let (code, st) = status(&ep, "mixed");
    assert_eq!((code, field(&st, "leader")), (0, "e1".to_owned()), "{st}");
    assert!(alpha.stdout().is_empty(), "ours ran while e1 led");

    // e1 resigns: ours is next and starts its child; e2, behind it, keeps waiting.
    e1.signal(libc::SIGINT);
    assert_eq!(e1.wait(LONG), 0, "{}", e1.log());
    alpha.wait_stdout("started", LONG);
    assert_eq!(field(&status(&ep, "mixed").1, "leader"), "alpha");
    assert!(!e2.stdout().contains("e2"), "e2 elected while ours leads");

    // Ours stops: the etcdctl candidate behind it wins.
    alpha.signal(libc::SIGTERM);
    alpha.wait(LONG);
    e2.wait_stdout("\ne2\n", LONG);
    assert_eq!(field(&status(&ep, "mixed").1, "leader"), "e2");
}

#[test]
fn etcdctl_lock_is_a_maintenance_hold_our_replicas_wait_behind() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let mut hold = hold_lock(&ep, "maint");
    let a = ours("a", &ep, "maint");
    let b = ours("b", &ep, "maint");
    a.wait_log("role=\"standby\"", LONG);
    b.wait_log("role=\"standby\"", LONG);
    wait_candidates(&ep, "maint", 3);
    // The holder stored no id: status says what it probably is instead of printing nothing.
    let (code, st) = status(&ep, "maint");
    assert_eq!(code, 0, "{st}");
    assert_eq!(
        field(&st, "leader"),
        "(no id: empty value, e.g. an etcdctl lock holder)",
        "{st}"
    );
    assert!(a.stdout().is_empty() && b.stdout().is_empty());

    // Released: exactly one of ours starts.
    hold.signal(libc::SIGINT);
    assert_eq!(hold.wait(LONG), 0, "{}", hold.log());
    let started = || {
        [&a, &b]
            .iter()
            .filter(|r| r.stdout().contains("started"))
            .count()
    };
    wait_for(
        LONG,
        || started() > 0,
        || format!("{}\n{}", a.log(), b.log()),
    );
    // The other stays a standby: still one child once the leader is known to status.
    let leader = field(&status(&ep, "maint").1, "leader");
    assert!(leader == "a" || leader == "b", "{leader}");
    assert_eq!(started(), 1);

    // The other way round: an etcdctl lock taken while ours lead queues behind them and holds once
    // they are gone.
    let prefix = "/singleton-exec/maint";
    let late = Replica::spawn("etcdctl-lock-late", etcdctl(&ep, &["lock", prefix]));
    wait_candidates(&ep, "maint", 3);
    assert!(
        !late.stdout().contains(prefix),
        "the lock was granted over our leader"
    );
    let (mut first, mut second) = if leader == "a" { (a, b) } else { (b, a) };
    first.signal(libc::SIGTERM);
    first.wait(LONG);
    second.wait_stdout("started", LONG);
    assert!(!late.stdout().contains(prefix), "the lock jumped the queue");
    second.signal(libc::SIGTERM);
    second.wait(LONG);
    late.wait_stdout(&format!("{prefix}/"), LONG);
}
