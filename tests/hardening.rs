//! Hardening: reproductions of defects found in review, each written against the fixed behaviour.
//! Every test attacks one promise of the README (named in its doc comment) and fails against a
//! build that breaks it. Set `SINGLETON_EXEC_BIN` to run them against another build.
//!
//! Children are mostly `tests/programs/noisy_worker.py` (worker.py's overlap check, plus stderr
//! noise, a slow TERM handler or ignoring TERM) and `tests/programs/sigecho.py`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::etcd::Options;
use crate::support::proxy::FaultProxy;
use crate::support::worker::{assert_no_overlap, events, starts};
use crate::support::{
    alive, bin, free_port, http, program, spawn_with_deathsig, wait_for, EtcdCluster, Replica,
};

const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn wait_starts(dir: &Path, n: usize, timeout: Duration, what: impl FnOnce() -> String) {
    wait_for(
        timeout,
        || starts(dir).len() >= n,
        || {
            format!(
                "expected {n} child starts, have {:?}; {}",
                events(dir),
                what()
            )
        },
    );
}

/// `-- python3 noisy_worker.py DIR EXTRA...`
fn noisy(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--".into(),
        "python3".into(),
        program("noisy_worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `-- python3 sigecho.py`
fn sigecho() -> Vec<String> {
    vec![
        "--".into(),
        "python3".into(),
        program("sigecho.py").to_string_lossy().into(),
    ]
}

fn args(opts: &[&str], child: &[String]) -> Vec<String> {
    opts.iter()
        .map(|s| s.to_string())
        .chain(child.iter().cloned())
        .collect()
}

/// Kills, at the end of a test (also on panic), every worker that registered its pid in DIR.
struct Reap(PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_suffix(".pid")
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains("worker.py") {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A process started by a test outside [`Replica`]; it and every descendant it has at drop time
/// are killed (SIGKILL) on drop.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        Proc(spawn_with_deathsig(cmd).expect("spawn"))
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut all = descendants(self.pid());
        all.push(self.pid());
        for pid in all {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

/// Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, ... [11] utime, [12] stime.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// The state letter of a process ('S', 'R', 'T', 'Z', ...), None once it is gone.
fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// User + system CPU time of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    stat_fields(pid)
        .map(|f| f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0))
        .unwrap_or(0)
}

/// Every process below `pid`, found through the ppid field of /proc/*/stat.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1)?.parse::<i32>().ok()) {
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// Runs etcdctl (API v3) against `endpoints`; returns (exit code, stdout + stderr).
fn etcdctl(endpoints: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .output()
        .expect("run etcdctl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `singleton-exec status`: (exit code, stdout).
fn status(endpoints: &str, election: &str) -> (i32, String) {
    let out = Command::new(bin())
        .args(["status", "--election", election, "--endpoints", endpoints])
        .output()
        .expect("run status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The leader's lease id in hex, from the `lease:` line of `singleton-exec status`.
fn leader_lease(endpoints: &str, election: &str) -> String {
    let (code, out) = status(endpoints, election);
    assert_eq!(code, 0, "status: {out}");
    out.lines()
        .find_map(|l| l.strip_prefix("lease:"))
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| panic!("no lease line in status output:\n{out}"))
}

/// The signal names sigecho.py printed so far (without its `ready` line).
fn echoed(r: &Replica) -> Vec<String> {
    r.stdout()
        .lines()
        .filter(|l| !l.starts_with("ready"))
        .map(str::to_owned)
        .collect()
}

/// sigecho.py's pid, from its `ready PID` line.
fn sigecho_pid(r: &Replica) -> i32 {
    r.wait_stdout("ready", LONG);
    r.stdout()
        .lines()
        .find_map(|l| l.strip_prefix("ready "))
        .and_then(|p| p.trim().parse().ok())
        .expect("sigecho pid")
}

/// Sleeps for `d`, checking `ok` every 50 ms; panics with `what()` the first time it fails.
fn hold(d: Duration, mut ok: impl FnMut() -> bool, what: impl Fn() -> String) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        assert!(ok(), "{}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok(), "{}", what());
}

/// Sets a resource limit in the child before exec.
fn with_rlimit(cmd: &mut Command, resource: libc::__rlimit_resource_t, value: u64) {
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `singleton-exec --endpoints E --id NAME ARGS` as a [`Replica`], after `setup` edited the command.
fn replica_with(
    name: &str,
    endpoints: &str,
    args: &[String],
    setup: impl FnOnce(&mut Command),
) -> Replica {
    let mut cmd = Command::new(bin());
    cmd.arg("--endpoints")
        .arg(endpoints)
        .arg("--id")
        .arg(name)
        .args(args);
    setup(&mut cmd);
    Replica::spawn(name, cmd)
}

// ---------------------------------------------------------------------------------------------
// S1, S2: the child's environment, the prefix
// ---------------------------------------------------------------------------------------------

/// Promise: "What the child gets": the leader's facts under SINGLETON_EXEC_LEADER_*,
/// SINGLETON_EXEC_LEASE_ID, SINGLETON_EXEC_REVISION, SINGLETON_EXEC_ETCD_ENDPOINTS, and nothing a
/// nested singleton-exec would read as one of its own options: SINGLETON_EXEC_KEY is the TLS
/// `--key` option, so `singleton-exec status` run by the child failed with exit 2.
#[test]
fn the_child_environment_can_run_a_nested_status() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let script = r#"env | grep '^SINGLETON_EXEC_' | sort; "$HARDENING_BIN" status --election "$SINGLETON_EXEC_LEADER_ELECTION" --endpoints "$SINGLETON_EXEC_ETCD_ENDPOINTS"; echo rc=$?"#;
    let mut r = replica_with(
        "envr",
        &ep,
        &args(
            &["--election", "envs"],
            &["--".into(), "sh".into(), "-c".into(), script.into()],
        ),
        |c| {
            c.env("HARDENING_BIN", bin());
        },
    );
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    let out = r.stdout();
    let var = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    for name in [
        "SINGLETON_EXEC_LEADER_KEY",
        "SINGLETON_EXEC_LEADER_ID",
        "SINGLETON_EXEC_LEADER_ELECTION",
        "SINGLETON_EXEC_LEASE_ID",
        "SINGLETON_EXEC_REVISION",
        "SINGLETON_EXEC_ETCD_ENDPOINTS",
    ] {
        assert!(
            var(name).is_some(),
            "the child lacks {name}; it got:\n{out}"
        );
    }
    assert!(
        var("SINGLETON_EXEC_KEY").is_none(),
        "SINGLETON_EXEC_KEY reached the child (a nested singleton-exec reads it as --key):\n{out}"
    );
    assert_eq!(var("SINGLETON_EXEC_LEADER_ID").as_deref(), Some("envr"));
    assert_eq!(
        var("SINGLETON_EXEC_LEADER_ELECTION").as_deref(),
        Some("envs")
    );
    assert_eq!(var("SINGLETON_EXEC_ETCD_ENDPOINTS"), Some(ep.clone()));
    assert!(
        var("SINGLETON_EXEC_LEADER_KEY")
            .unwrap()
            .starts_with("/singleton-exec/envs/"),
        "{out}"
    );
    assert!(
        out.contains("rc=0"),
        "the nested status failed:\n{out}\nlog:\n{}",
        r.log()
    );
    assert!(out.contains("leader:     envr"), "{out}");
}

/// Promise: elections never share key space. `--prefix /a --election b` and `--prefix /a/b
/// --election c` would (`/a/b/...`), so a prefix of more than one path segment is a usage error
/// (exit 2, naming the prefix) found before etcd is touched. `--prefix /a` still works.
#[test]
fn a_prefix_of_more_than_one_segment_is_refused() {
    let mut r = Replica::start(
        "pfx",
        "http://127.0.0.1:1",
        &[
            "--prefix",
            "/a/b",
            "--election",
            "c",
            "--acquire-timeout",
            "3s",
            "--",
            "true",
        ],
    );
    let code = r.wait(LONG);
    assert_eq!(
        code,
        2,
        "--prefix /a/b must be a usage error before etcd is contacted; log:\n{}",
        r.log()
    );
    assert!(r.log().contains("prefix"), "{}", r.log());

    let etcd = EtcdCluster::single();
    let mut ok = Replica::start(
        "pfx1",
        &etcd.endpoints(),
        &["--prefix", "/a", "--election", "b", "--", "true"],
    );
    assert_eq!(ok.wait(LONG), 0, "{}", ok.log());
}

// ---------------------------------------------------------------------------------------------
// 2: leadership known lost
// ---------------------------------------------------------------------------------------------

enum Loss {
    DeleteKeys,
    RevokeLease,
}

/// A leader whose child ignores SIGTERM (grace 8 s) learns from etcd that its leadership is gone;
/// the old child must be dead well before the grace, a new child starts, no overlap.
fn known_loss_kills_at_once(loss: Loss, election: &str) {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let opts = ["--election", election, "--ttl", "20s", "--grace", "8s"];
    let child = noisy(dir.path(), &["--ignore-term"]);
    let a = Replica::start("a", &ep, &args(&opts, &child));
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = Replica::start("b", &ep, &args(&opts, &child));
    b.wait_log("role=\"standby\"", LONG);
    let old = starts(dir.path())[0].clone();
    let what = match loss {
        Loss::DeleteKeys => {
            let prefix = format!("/singleton-exec/{election}/");
            let (code, out) = etcdctl(&ep, &["del", "--prefix", &prefix]);
            assert_eq!(code, 0, "{out}");
            "the election's keys were deleted"
        }
        Loss::RevokeLease => {
            let lease = leader_lease(&ep, election);
            let (code, out) = etcdctl(&ep, &["lease", "revoke", &lease]);
            assert_eq!(code, 0, "{out}");
            "the leader's lease was revoked"
        }
    };
    let t = Instant::now();
    wait_for(
        Duration::from_secs(3),
        || !alive(old.pid),
        || {
            format!(
                "{what}, but the old child (ignores SIGTERM) is still alive {:?} later: it must get \
                 SIGKILL at once, not after the 8 s grace; a's log:\n{}",
                t.elapsed(),
                a.log()
            )
        },
    );
    wait_starts(dir.path(), 2, LONG, || {
        format!("a:\n{}\nb:\n{}", a.log(), b.log())
    });
    assert_no_overlap(dir.path());
}

/// Promise: "etcd reports the lease gone, or our key is deleted: the child is stopped at once",
/// i.e. SIGKILL without waiting for --grace: the leadership is already gone.
#[test]
fn deleted_leader_key_kills_the_child_at_once() {
    known_loss_kills_at_once(Loss::DeleteKeys, "lostdel");
}

/// As above, for a lease revoked behind the leader's back (`etcdctl lease revoke`).
#[test]
fn revoked_lease_kills_the_child_at_once() {
    known_loss_kills_at_once(Loss::RevokeLease, "lostrevoke");
}

// ---------------------------------------------------------------------------------------------
// 7: SIGTERM during a step-down
// ---------------------------------------------------------------------------------------------

/// Promise: SIGTERM to the leader ends the replica. A SIGTERM that arrives while the leader steps
/// down (`--resign-signal`, the child's slow TERM handler still running) must not be lost: exactly
/// one child start ever, exit 0 (the child's status).
#[test]
fn sigterm_during_a_step_down_ends_the_replica() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut a = Replica::start(
        "a",
        &etcd.endpoints(),
        &args(
            &["--election", "stepterm", "--resign-signal", "USR1"],
            &noisy(dir.path(), &["--term-delay", "1"]),
        ),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    a.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(300));
    a.signal(libc::SIGTERM);
    wait_for(
        Duration::from_secs(15),
        || !alive(a.pid()),
        || {
            format!(
                "SIGTERM during the step-down was lost: still running 15 s later; events {:?}\n{}",
                events(dir.path()),
                a.log()
            )
        },
    );
    assert_eq!(
        starts(dir.path()).len(),
        1,
        "the child was started again after SIGTERM: {:?}\n{}",
        events(dir.path()),
        a.log()
    );
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
}

/// Promise: as above, for a SIGTERM during the resign hold-off (child already stopped): the
/// replica exits promptly instead of campaigning again after the hold-off.
#[test]
fn sigterm_during_the_resign_holdoff_exits_promptly() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut a = Replica::start(
        "a",
        &etcd.endpoints(),
        &args(
            &[
                "--election",
                "holdterm",
                "--resign-signal",
                "USR1",
                "--resign-holdoff",
                "5s",
            ],
            &noisy(dir.path(), &[]),
        ),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let child = starts(dir.path())[0].pid;
    a.signal(libc::SIGUSR1);
    wait_for(
        LONG,
        || events(dir.path()).iter().any(|e| e.kind == "stop") && !alive(child),
        || format!("the child did not stop on the step-down:\n{}", a.log()),
    );
    // Inside the 5 s hold-off now.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    a.signal(libc::SIGTERM);
    wait_for(
        Duration::from_secs(3),
        || !alive(a.pid()),
        || {
            format!(
                "SIGTERM during the resign hold-off: still running {:?} later; events {:?}\n{}",
                t.elapsed(),
                events(dir.path()),
                a.log()
            )
        },
    );
    assert_eq!(starts(dir.path()).len(), 1, "{:?}", events(dir.path()));
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
}

// ---------------------------------------------------------------------------------------------
// 8, 9, 10: signals
// ---------------------------------------------------------------------------------------------

/// Promise: the child gets the signal the user sent. SIGINT (Ctrl-C) reaches the child as SIGINT
/// (not as the stop signal); SIGTERM becomes --stop-signal.
#[test]
fn sigint_reaches_the_child_as_sigint_and_sigterm_as_the_stop_signal() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();

    let mut r = Replica::start(
        "int",
        &ep,
        &args(&["--election", "sigint", "--grace", "2s"], &sigecho()),
    );
    sigecho_pid(&r);
    r.signal(libc::SIGINT);
    wait_for(
        Duration::from_secs(5),
        || !echoed(&r).is_empty(),
        || format!("no signal reached the child:\n{}", r.log()),
    );
    assert_eq!(
        echoed(&r)[0],
        "SIGINT",
        "SIGINT to the supervisor must reach the child as SIGINT; the child got {:?}",
        echoed(&r)
    );
    r.wait(LONG);
    assert!(
        !echoed(&r).contains(&"SIGTERM".to_owned()),
        "{:?}",
        echoed(&r)
    );

    let mut q = Replica::start(
        "quit",
        &ep,
        &args(
            &[
                "--election",
                "sigquit",
                "--grace",
                "2s",
                "--stop-signal",
                "QUIT",
            ],
            &sigecho(),
        ),
    );
    sigecho_pid(&q);
    q.signal(libc::SIGTERM);
    wait_for(
        Duration::from_secs(5),
        || !echoed(&q).is_empty(),
        || format!("no signal reached the child:\n{}", q.log()),
    );
    assert_eq!(echoed(&q)[0], "SIGQUIT", "{:?}", echoed(&q));
    q.wait(LONG);
    assert!(
        !echoed(&q).contains(&"SIGTERM".to_owned()),
        "{:?}",
        echoed(&q)
    );
}

/// Promise: "only the ignored signals the user started singleton-exec with": a supervisor started
/// with SIGINT ignored (nohup-style, `cmd &` in a non-interactive shell) is not stopped by SIGINT;
/// SIGTERM still stops it normally.
#[test]
fn an_ignored_sigint_does_not_stop_the_child() {
    let etcd = EtcdCluster::single();
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); \
         os.execv(sys.argv[1], sys.argv[1:])",
        bin(),
        "--endpoints",
        &etcd.endpoints(),
        "--id",
        "ign",
        "--election",
        "sigign",
        "--grace",
        "2s",
    ])
    .args(sigecho());
    let mut r = Replica::spawn("ign", cmd);
    let child = sigecho_pid(&r);
    r.signal(libc::SIGINT);
    hold(
        Duration::from_secs(2),
        || alive(child) && alive(r.pid()),
        || {
            format!(
                "SIGINT was ignored when singleton-exec started, yet it stopped the child \
                 (child alive {}, child got {:?}); log:\n{}",
                alive(child),
                echoed(&r),
                r.log()
            )
        },
    );
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
}

/// Promise: "Every catchable signal except SIGCHLD is forwarded to the child". SIGABRT, SIGILL,
/// SIGFPE, SIGTRAP, SIGSYS, SIGBUS and SIGSEGV sent with kill(2) by another process are catchable
/// too: they reach the child, and the supervisor survives them.
#[test]
fn fault_signals_sent_with_kill_are_forwarded_and_survived() {
    let etcd = EtcdCluster::single();
    // No core files if the supervisor dies of one of them.
    let mut r = replica_with(
        "faults",
        &etcd.endpoints(),
        &args(&["--election", "faultsig"], &sigecho()),
        |c| with_rlimit(c, libc::RLIMIT_CORE, 0),
    );
    sigecho_pid(&r);
    let sigs = [
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGSYS, "SIGSYS"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGSEGV, "SIGSEGV"),
    ];
    for (sig, name) in sigs {
        r.signal(sig);
        wait_for(
            Duration::from_secs(5),
            || echoed(&r).iter().any(|l| l == name) || !alive(r.pid()),
            || format!("{name} did not reach the child:\n{}", r.log()),
        );
        assert!(
            r.try_status().is_none(),
            "the supervisor died of {name} sent with kill: {:?}; the child got {:?}",
            r.try_status(),
            echoed(&r)
        );
        assert!(echoed(&r).iter().any(|l| l == name), "{:?}", echoed(&r));
    }
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
}

/// Promise: the stop sequence gives the child its grace to exit cleanly. A child that was stopped
/// (SIGSTOP) cannot run its handler: the supervisor must send SIGCONT with the stop signal, so it
/// exits 0 at once instead of being SIGKILLed after the grace (137).
#[test]
fn a_stopped_child_gets_sigcont_with_the_stop_signal() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut r = Replica::start(
        "stopped",
        &etcd.endpoints(),
        &args(
            &["--election", "stopped", "--ttl", "20s", "--grace", "8s"],
            &noisy(dir.path(), &[]),
        ),
    );
    wait_starts(dir.path(), 1, LONG, || r.log());
    let child = starts(dir.path())[0].pid;
    unsafe { libc::kill(child, libc::SIGSTOP) };
    wait_for(
        Duration::from_secs(5),
        || proc_state(child) == Some('T'),
        || "the child did not stop".into(),
    );
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    let code = r.wait(LONG);
    let took = t.elapsed();
    assert_eq!(
        code,
        0,
        "the stopped child never ran its TERM handler (exit {code} after {took:?}); log:\n{}",
        r.log()
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// 11: terminals
// ---------------------------------------------------------------------------------------------

/// Promise: the child's stdin is passed through untouched. On a terminal the child must be able to
/// read it: in a background process group it is stopped by SIGTTIN and everything hangs.
#[test]
fn the_child_can_read_the_terminal() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let inner = format!(
        "{} --endpoints {} --id tty --election tty -- head -n1",
        bin(),
        etcd.endpoints()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"echo hello | script -qec "$1" /dev/null"#)
        .arg("sh")
        .arg(&inner)
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::null());
    let mut p = Proc::spawn(&mut cmd);
    let t = Instant::now();
    let mut code = None;
    while t.elapsed() < Duration::from_secs(20) {
        if let Some(st) = p.0.try_wait().unwrap() {
            code = Some(st.code().unwrap_or(-1));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    let states: Vec<(i32, Option<char>)> = descendants(p.pid())
        .into_iter()
        .map(|d| (d, proc_state(d)))
        .collect();
    assert_eq!(
        code,
        Some(0),
        "`echo hello | script -qec 'singleton-exec -- head -n1'` did not finish with 0 in 20 s \
         (processes left and their states: {states:?}); output:\n{output}"
    );
    assert!(output.contains("hello"), "{output}");
}

/// Policy: a child stopped by SIGTSTP (Ctrl-Z) is continued by the supervisor, which would
/// otherwise hold leadership with a frozen child; a child stopped by an explicit SIGSTOP stays
/// stopped (someone meant it) until the stop sequence, which continues it.
#[test]
fn a_child_stopped_by_sigtstp_is_continued_but_sigstop_is_kept() {
    let etcd = EtcdCluster::single();
    let mut r = Replica::start(
        "tstp",
        &etcd.endpoints(),
        &[
            "--election",
            "tstp",
            "--ttl",
            "20s",
            "--grace",
            "8s",
            "--",
            "sh",
            "-c",
            "echo pid $$; exec sleep 300",
        ],
    );
    r.wait_stdout("pid ", LONG);
    let child: i32 = r
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse().ok())
        .expect("child pid");
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(child, libc::SIGTSTP) };
    std::thread::sleep(Duration::from_millis(300));
    wait_for(
        Duration::from_secs(3),
        || proc_state(child).is_some_and(|s| s != 'T'),
        || {
            format!(
                "a child stopped by SIGTSTP was not continued (state {:?}); log:\n{}",
                proc_state(child),
                r.log()
            )
        },
    );

    unsafe { libc::kill(child, libc::SIGSTOP) };
    wait_for(
        Duration::from_secs(3),
        || proc_state(child) == Some('T'),
        || "SIGSTOP did not stop the child".into(),
    );
    hold(
        Duration::from_millis(1500),
        || proc_state(child) == Some('T'),
        || format!("a child stopped by SIGSTOP was continued:\n{}", r.log()),
    );
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    let code = r.wait(LONG);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the stopped child was not continued by the stop sequence: exit {code} after {:?}",
        t.elapsed()
    );
    assert_eq!(code, 128 + libc::SIGTERM, "{}", r.log());
}

// ---------------------------------------------------------------------------------------------
// 1: a stalled log pipe
// ---------------------------------------------------------------------------------------------

/// Promise: the child is dead before the lease can expire, whatever else happens. Here the
/// supervisor's stderr is a pipe nobody reads (a stuck log collector) and the child fills it; then
/// the leader is cut off from etcd. Logging must not block the process thread: the old child is
/// dead before the standby's starts.
#[test]
fn a_stalled_log_pipe_does_not_stop_the_fail_closed_deadline() {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let fifo = dir.path().join("stderr.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Held open and never read.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let opts = [
        "--election",
        "stall",
        "--ttl",
        "3s",
        "--grace",
        "1s",
        "--dial-timeout",
        "1s",
    ];
    let mut cmd = Command::new(bin());
    cmd.args(["--endpoints", &proxy.url, "--id", "a"])
        .args(args(&opts, &noisy(dir.path(), &["--noise", "70000"])))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .env_remove("SINGLETON_EXEC_ENDPOINTS")
        .env("SINGLETON_EXEC_LOG", "singleton_exec=debug");
    let a = Proc::spawn(&mut cmd);
    drop(cmd);
    wait_starts(dir.path(), 1, LONG, || "a does not lead".into());
    let old = starts(dir.path())[0].clone();
    let pending = || {
        let mut n: libc::c_int = 0;
        unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut n) };
        n
    };
    wait_for(
        LONG,
        || pending() >= 60_000,
        || format!("the pipe did not fill: {} bytes", pending()),
    );
    let b = Replica::start(
        "b",
        &etcd.endpoints(),
        &args(&opts, &noisy(dir.path(), &[])),
    );
    b.wait_log("role=\"standby\"", LONG);
    proxy.cut();
    wait_starts(dir.path(), 2, LONG, || b.log());
    let evs = events(dir.path());
    let b_start = evs
        .iter()
        .find(|e| e.kind == "start" && e.id == "b")
        .expect("b's start");
    assert_eq!(
        b_start.overlap,
        0,
        "b's child started while a's child (pid {}, a's supervisor {} is {:?}) was alive: a's \
         supervisor is stuck writing to its stalled stderr; events {evs:?}",
        old.pid,
        a.pid(),
        proc_state(a.pid())
    );
    assert!(!alive(old.pid), "a's old child is still alive");
    drop(reader);
}

// ---------------------------------------------------------------------------------------------
// 5: TTL 0 on a re-opened keepalive stream
// ---------------------------------------------------------------------------------------------

/// Promise: "etcd reports the lease gone: the child is stopped at once". A lease revoked while the
/// leader was cut off is reported as a keepalive reply with TTL 0 when the stream is re-opened
/// (etcd-client turns it into an error there): that is a lost lease, not a failure to retry until
/// the renew deadline. TTL 20 s with keepalives every 1 s: the renew deadline is 12 s after the
/// last acknowledged keepalive, the re-opened stream answers about 3 s after the cut.
#[test]
fn a_ttl_0_reply_on_a_reopened_keepalive_stream_is_a_lost_lease() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let a = Replica::start(
        "a",
        &proxy.url,
        &args(
            &[
                "--election",
                "ttl0",
                "--ttl",
                "20s",
                "--keepalive-interval",
                "1s",
            ],
            &noisy(dir.path(), &[]),
        ),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let old = starts(dir.path())[0].clone();
    let lease = leader_lease(&ep, "ttl0");
    let cut = Instant::now();
    proxy.cut();
    let (code, out) = etcdctl(&ep, &["lease", "revoke", &lease]);
    assert_eq!(code, 0, "{out}");
    // Long enough for one keepalive to be lost, far shorter than the renew deadline.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(cut.elapsed()));
    proxy.heal();
    wait_for(
        Duration::from_secs(5).saturating_sub(cut.elapsed()),
        || !alive(old.pid),
        || {
            format!(
                "the lease was revoked and the proxy healed, yet the child still runs {:?} after \
                 the cut (the renew deadline is 12 s after the last ack); log:\n{}",
                cut.elapsed(),
                a.log()
            )
        },
    );
    wait_starts(dir.path(), 2, LONG, || {
        format!("a did not lead again:\n{}", a.log())
    });
    assert_no_overlap(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 3: expired auth tokens
// ---------------------------------------------------------------------------------------------

async fn enable_auth(endpoint: &str, prefix: &str) -> Result<(), etcd_client::Error> {
    use etcd_client::{Client, Permission};
    let mut c = Client::connect([endpoint], None).await?;
    c.user_add("root", "root-secret-pw", None).await?;
    c.user_grant_role("root", "root").await?;
    c.role_add("app").await?;
    c.role_grant_permission("app", Permission::read_write(prefix).with_prefix())
        .await?;
    c.user_add("app", "app-secret-pw", None).await?;
    c.user_grant_role("app", "app").await?;
    c.auth_enable().await?;
    Ok(())
}

/// Promise: "SIGTERM to the leader: ... a standby starts within milliseconds", also after the
/// replicas sat idle longer than etcd's auth token TTL. "invalid auth token" is retryable
/// (authenticate again), not a refusal: the leader's revoke must succeed and the standby must take
/// over at once and keep running, not exit 3.
#[test]
fn expired_auth_tokens_are_renewed_not_fatal() {
    let etcd = EtcdCluster::start_with_args(1, Options::default(), &["--auth-token-ttl", "2"]);
    let ep = etcd.endpoints();
    crate::support::runtime()
        .block_on(enable_auth(&etcd.endpoint(0), "/singleton-exec/tokens/"))
        .expect("enable auth");
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let opts = [
        "--election",
        "tokens",
        "--ttl",
        "10s",
        "--user",
        "app:app-secret-pw",
    ];
    let mut a = Replica::start("a", &ep, &args(&opts, &noisy(dir.path(), &[])));
    wait_starts(dir.path(), 1, LONG, || a.log());
    let mut b = Replica::start("b", &ep, &args(&opts, &noisy(dir.path(), &[])));
    b.wait_log("role=\"standby\"", LONG);
    // Idle: both tokens expire (2 s without a unary request).
    std::thread::sleep(Duration::from_secs(7));
    let lease = a
        .log()
        .lines()
        .find(|l| l.contains("child started"))
        .and_then(|l| l.split("lease=").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .expect("a's lease in its log")
        .to_owned();
    let t = Instant::now();
    a.signal(libc::SIGTERM);
    let code = a.wait(LONG);
    // What etcd says of a's lease right after a exited (its TTL is 10 s).
    let (_, left) = etcdctl(
        &ep,
        &[
            "--user",
            "root:root-secret-pw",
            "lease",
            "timetolive",
            &lease,
        ],
    );
    println!("a's lease after a exited: {}", left.trim());
    wait_for(
        Duration::from_secs(3),
        || starts(dir.path()).len() >= 2 || !alive(b.pid()),
        || {
            format!(
                "no takeover within 3 s of SIGTERM to the leader; a:\n{}\nb:\n{}",
                a.log(),
                b.log()
            )
        },
    );
    assert!(
        b.try_status().is_none(),
        "the standby exited ({:?}) {:?} after SIGTERM to the leader instead of taking over:\n{}",
        b.try_status(),
        t.elapsed(),
        b.log()
    );
    hold(
        Duration::from_secs(1),
        || alive(b.pid()),
        || format!("the new leader exited:\n{}", b.log()),
    );
    assert_eq!(code, 0, "{}", a.log());
    if a.log().contains("lease revoked") {
        assert!(
            left.contains("already expired") || left.contains("not found"),
            "a logged \"lease revoked\" but etcd still had the lease after a exited: {left}\n{}",
            a.log()
        );
    }
    assert_no_overlap(dir.path());
}

// ---------------------------------------------------------------------------------------------
// 4: TLS rejection by one endpoint
// ---------------------------------------------------------------------------------------------

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// ca.pem (trusted by the replica) with server.pem/key (etcd) and client.pem/key; other-ca's
    /// bad-server.pem/key for the same names, which the replica cannot verify.
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            (cert, Issuer::new(p, key))
        };
        let leaf = |issuer: &Issuer<'_, KeyPair>,
                    names: Vec<String>,
                    cn: &str,
                    usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            (
                p.signed_by(&key, issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let names = || vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let (ca_cert, issuer) = ca("singleton-exec test CA");
        write("ca.pem", ca_cert.pem());
        let (other_cert, other) = ca("some other CA");
        write("other-ca.pem", other_cert.pem());
        let (c, k) = leaf(
            &issuer,
            names(),
            "etcd",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("server.pem", c);
        write("server.key", k);
        let (c, k) = leaf(
            &other,
            names(),
            "impostor",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("bad-server.pem", c);
        write("bad-server.key", k);
        let (c, k) = leaf(
            &issuer,
            vec![],
            "replica",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        write("client.pem", c);
        write("client.key", k);
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// A TLS endpoint presenting the certificate of the other CA: `https://127.0.0.1:PORT`.
    fn bad_endpoint(&self) -> (Proc, String) {
        let mut cmd = Command::new("python3");
        cmd.arg(program("tls_server.py"))
            .arg(self.path("bad-server.pem"))
            .arg(self.path("bad-server.key"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut p = Proc::spawn(&mut cmd);
        let mut line = String::new();
        let mut out = p.0.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let port: u16 = line.trim().parse().expect("tls_server.py port");
        (p, format!("https://127.0.0.1:{port}"))
    }
}

/// Promise: "one etcd endpoint dies: the next one is used". An endpoint whose certificate we
/// cannot verify (a stale DNS entry, a wrong server) is one bad endpoint, not a refusal by etcd:
/// the replica moves on and leads through the good one. Only when every endpoint rejects us is it
/// exit 3.
#[test]
fn a_tls_rejection_by_one_endpoint_does_not_end_the_replica() {
    let pki = Pki::new();
    // `..Default::default()` keeps this compiling when Options gains fields.
    #[allow(clippy::needless_update)]
    let etcd = EtcdCluster::start_with(
        1,
        Options {
            tls: Some((
                pki.path("server.pem").into(),
                pki.path("server.key").into(),
                pki.path("ca.pem").into(),
            )),
            ..Default::default()
        },
    );
    let (_bad1, bad1) = pki.bad_endpoint();
    let (_bad2, bad2) = pki.bad_endpoint();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let tls = [
        "--cacert",
        ca.as_str(),
        "--cert",
        cert.as_str(),
        "--key",
        key.as_str(),
    ];

    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut opts = vec!["--election", "tlsmix", "--acquire-timeout", "20s"];
    opts.extend(tls);
    let mut good = Replica::start(
        "mixed",
        &format!("{bad1},{}", etcd.endpoints()),
        &args(&opts, &noisy(dir.path(), &[])),
    );
    wait_for(
        LONG,
        || !starts(dir.path()).is_empty() || !alive(good.pid()),
        || good.log(),
    );
    assert!(
        good.try_status().is_none(),
        "the replica gave up (exit {:?}) because the first endpoint's certificate was rejected, \
         though the second is good:\n{}",
        good.try_status(),
        good.log()
    );
    good.signal(libc::SIGTERM);
    assert_eq!(good.wait(LONG), 0, "{}", good.log());

    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut bad = Replica::start(
        "allbad",
        &format!("{bad1},{bad2}"),
        &args(&opts, &noisy(dir.path(), &[])),
    );
    assert_eq!(
        bad.wait(LONG),
        3,
        "every endpoint rejected: exit 3:\n{}",
        bad.log()
    );
    assert!(starts(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 12: the tolerated outage
// ---------------------------------------------------------------------------------------------

/// LeaseKeepAlive requests etcd member 0 has received so far (its own Prometheus counter).
fn keepalives_received(etcd: &EtcdCluster) -> u64 {
    etcd.metrics(0)
        .lines()
        .filter(|l| {
            l.starts_with("grpc_server_msg_received_total{")
                && l.contains("grpc_method=\"LeaseKeepAlive\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Promise: "The child survives an etcd outage of 4 s at any phase" at the defaults (TTL 10 s,
/// keepalive every second, attempts bounded by half a second, renew deadline 6 s). The outage is a
/// black hole (the proxy drops every byte, both ways, connections stay open), 3.8 s long, starting
/// 0, 250, 500 and 750 ms after etcd received a keepalive. At 0 ms the reply to that keepalive is
/// lost too, so the last acknowledged one is a whole interval old: the worst case of the timing
/// model (`renew_deadline − 2 × interval` = 4 s). The child must never be stopped.
#[test]
fn the_defaults_tolerate_a_four_second_outage_at_any_phase() {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let a = Replica::start(
        "a",
        &proxy.url,
        &args(&["--election", "outage"], &noisy(dir.path(), &[])),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let child = starts(dir.path())[0].pid;
    let ok =
        || alive(child) && !a.log().contains("role=\"stopping\"") && starts(dir.path()).len() == 1;
    let what = |phase: u64| {
        format!(
            "the child was stopped by an etcd black hole of 3.8 s starting {phase} ms after a \
             keepalive; events {:?}; log:\n{}",
            events(dir.path()),
            a.log()
        )
    };
    for phase in [0u64, 250, 500, 750] {
        // Settled: keepalives flow again after the previous outage.
        hold(Duration::from_millis(2500), ok, || what(phase));
        // The next keepalive to arrive sets the phase.
        let seen = keepalives_received(&etcd);
        let t = Instant::now();
        while keepalives_received(&etcd) == seen {
            assert!(ok(), "{}", what(phase));
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no keepalive reached etcd in 10 s:\n{}",
                a.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if phase > 0 {
            hold(Duration::from_millis(phase), ok, || what(phase));
        }
        proxy.cut();
        hold(Duration::from_millis(3800), ok, || what(phase));
        proxy.heal();
    }
    // Whatever the last outage set in motion happens within its renew deadline.
    hold(Duration::from_secs(3), ok, || what(750));
}

// ---------------------------------------------------------------------------------------------
// S3: the HTTP endpoint under fd exhaustion
// ---------------------------------------------------------------------------------------------

/// Promise: the supervisor "mostly sleeps" and its health endpoint keeps answering. Out of file
/// descriptors (EMFILE on accept), it must back off instead of spinning, and serve again once
/// descriptors are free.
#[test]
fn the_health_endpoint_does_not_spin_out_of_file_descriptors() {
    let etcd = EtcdCluster::single();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let r = replica_with(
        "fds",
        &etcd.endpoints(),
        &args(
            &["--election", "fds", "--health-addr", &addr],
            &["--".into(), "sleep".into(), "300".into()],
        ),
        |c| with_rlimit(c, libc::RLIMIT_NOFILE, 64),
    );
    wait_for(LONG, || http("GET", port, "/healthz").0 == 200, || r.log());
    let conns: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(conns.len() >= 80, "only {} connections", conns.len());
    let before = cpu_ticks(r.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(r.pid()) - before;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    drop(conns);
    assert!(
        used * 2 < hz,
        "the supervisor used {:.2} s of CPU in 2 s while out of file descriptors",
        used as f64 / hz as f64
    );
    wait_for(
        LONG,
        || http("GET", port, "/healthz").0 == 200,
        || format!("/healthz does not answer again:\n{}", r.log()),
    );
}

/// Review finding: a supervisor started with SIGCHLD ignored (some shells, daemons, `nohup` setups)
/// had its children reaped by the kernel, never saw its child end, spun, and never exited.
#[test]
fn an_inherited_ignored_sigchld_does_not_hang_the_supervisor() {
    let etcd = EtcdCluster::single();
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); \
         os.execv(sys.argv[1], sys.argv[1:])",
        bin(),
        "--endpoints",
        &etcd.endpoints(),
        "--id",
        "chld",
        "--election",
        "sigchld-ign",
        "--",
        "sh",
        "-c",
        "sleep 0.3; exit 7",
    ]);
    let mut r = Replica::spawn("chld", cmd);
    assert_eq!(r.wait(Duration::from_secs(20)), 7, "{}", r.log());
}

/// Review finding: `kill -ABRT` from outside the supervisor's PID namespace (the host, `docker
/// kill -s ABRT`) arrives with sender pid 0 and was taken for a genuine crash.
#[test]
fn a_fault_signal_from_a_parent_pid_namespace_is_forwarded() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root for a PID namespace");
        return;
    }
    let etcd = EtcdCluster::single();
    // sh is the namespace's PID 1; singleton-exec is its child, so the kernel's PID-1 rules do not
    // apply to it.
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        r#""$@"; exit $?"#,
        "sh",
    ])
    .arg(bin())
    .args([
        "--endpoints",
        &etcd.endpoints(),
        "--id",
        "ns",
        "--election",
        "ns-abrt",
    ])
    .args(sigecho());
    with_rlimit(&mut cmd, libc::RLIMIT_CORE, 0);
    let mut r = Replica::spawn("ns", cmd);
    sigecho_pid(&r);
    let supervisor = descendants(r.pid())
        .into_iter()
        .find(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("ns-abrt"))
                .unwrap_or(false)
                && proc_state(p).is_some()
                && std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .map(|c| c.trim() == "singleton-exec")
                    .unwrap_or(false)
        })
        .expect("the supervisor inside the namespace");
    unsafe { libc::kill(supervisor, libc::SIGABRT) };
    wait_for(
        Duration::from_secs(5),
        || echoed(&r).iter().any(|l| l == "SIGABRT") || !alive(supervisor),
        || format!("SIGABRT did not reach the child:\n{}", r.log()),
    );
    assert!(
        alive(supervisor),
        "the supervisor died of a SIGABRT sent from the parent namespace:\n{}",
        r.log()
    );
    unsafe { libc::kill(supervisor, libc::SIGTERM) };
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    // This /proc is the host's: its pid numbers are not the namespace's. The stop must have
    // signalled the child alone, not whatever the host numbers as our "children".
    let signalled: Vec<u32> = r
        .log()
        .lines()
        .filter(|l| l.contains("stopping the child's tree"))
        .filter_map(|l| {
            l.split("processes=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(signalled, [1], "{}", r.log());
}

/// Review finding: with the terminal handed to the child, Ctrl-C reaches only the child; under
/// `--on-child-exit restart` the supervisor restarted it for ever. A child killed by the terminal's
/// SIGINT is the user's request to stop, as in a shell.
#[test]
fn ctrl_c_on_the_terminal_stops_a_restarting_supervisor() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let inner = format!(
        "{} --endpoints {} --id ctrlc --election ctrlc --on-child-exit restart -- sleep 100",
        bin(),
        etcd.endpoints()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::null());
    let mut p = Proc::spawn(&mut cmd);
    let log = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for(LONG, || log().contains("child started"), log);
    let mut stdin = p.0.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let t = Instant::now();
    let mut code = None;
    while t.elapsed() < Duration::from_secs(10) {
        if let Some(st) = p.0.try_wait().unwrap() {
            code = Some(st.code().unwrap_or(-1));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        code.is_some(),
        "Ctrl-C did not stop singleton-exec under --on-child-exit restart:\n{}",
        log()
    );
    assert_eq!(
        log().matches("child started").count(),
        1,
        "the child was restarted after Ctrl-C:\n{}",
        log()
    );
}

/// Review finding: `--resign-signal` set to a fault signal can never work (those signals are not
/// blocked and never reach the signalfd): refuse it at start-up.
#[test]
fn a_fault_signal_as_resign_signal_is_refused() {
    for sig in ["ABRT", "SEGV", "BUS"] {
        let out = Command::new(bin())
            .args([
                "--endpoints",
                "http://127.0.0.1:1",
                "--acquire-timeout",
                "2s",
                "--resign-signal",
                sig,
                "--",
                "true",
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "--resign-signal {sig}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--resign-signal"));
    }
}

/// The guard's pid, from the supervisor's debug log.
fn guard_pid(r: &Replica) -> i32 {
    r.wait_log("guard started", LONG);
    r.log()
        .lines()
        .find(|l| l.contains("guard started"))
        .and_then(|l| {
            l.split("guard=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("guard pid in the log")
}

/// Review finding: once the guard was gone (OOM killer, `kill -9`), the next message to it raised
/// SIGPIPE, which the supervisor forwarded to the child it had just started: every later child
/// died of it (141).
#[test]
fn a_dead_guard_does_not_kill_later_children() {
    let etcd = EtcdCluster::single();
    let r = Replica::start(
        "g",
        &etcd.endpoints(),
        &[
            "--election",
            "deadguard",
            "--on-child-exit",
            "restart",
            "--",
            "sh",
            "-c",
            "sleep 0.3",
        ],
    );
    let guard = guard_pid(&r);
    unsafe { libc::kill(guard, libc::SIGKILL) };
    let ended = || r.log().matches("the child ended").count();
    let before = ended();
    wait_for(
        LONG,
        || ended() >= before + 3,
        || format!("the child was not restarted three times:\n{}", r.log()),
    );
    assert!(
        !r.log().contains("killed by SIGPIPE") && !r.log().contains("signal=SIGPIPE"),
        "a SIGPIPE of our own reached the child:\n{}",
        r.log()
    );
}

/// Review finding: with the terminal handed over, the supervisor's own stop signal (here
/// `--stop-signal INT`, for a step-down) was taken for the user's Ctrl-C and ended the replica.
#[test]
fn our_own_stop_signal_on_a_terminal_is_not_a_ctrl_c() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let inner = format!(
        "{} --endpoints {} --id tstop --election tstop --stop-signal INT --resign-signal USR1 \
         --resign-holdoff 500ms -- sleep 100",
        bin(),
        etcd.endpoints()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(File::create(&out).unwrap())
        .stderr(Stdio::null());
    let p = Proc::spawn(&mut cmd);
    let log = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for(LONG, || log().contains("child started"), log);
    let supervisor = descendants(p.pid())
        .into_iter()
        .find(|&d| {
            std::fs::read(format!("/proc/{d}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("tstop") && !c.starts_with(b"sh"))
                .unwrap_or(false)
                && std::fs::read_to_string(format!("/proc/{d}/comm"))
                    .map(|c| c.trim() == "singleton-exec")
                    .unwrap_or(false)
        })
        .expect("the supervisor under script");
    unsafe { libc::kill(supervisor, libc::SIGUSR1) };
    wait_for(
        LONG,
        || log().matches("child started").count() >= 2 || !alive(supervisor),
        || format!("no second leadership after the step-down:\n{}", log()),
    );
    assert!(
        alive(supervisor),
        "the step-down ended the replica as if Ctrl-C had been pressed:\n{}",
        log()
    );
}
