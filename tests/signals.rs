//! PID 1's signal duties, against a real etcd. The child gets the signal the user sent: SIGINT
//! as SIGINT, SIGTERM as --stop-signal, fault signals sent with kill(2) too (the supervisor survives
//! them, also when they come from a parent PID namespace); SIGTERM ends the replica even during a
//! step-down or its hold-off; signals ignored when singleton-exec started stay ignored, and an
//! ignored SIGCHLD does not hang it. On a terminal the child can read it, Ctrl-C is the user's
//! request to stop and our own stop signal is not; without job control (a service's own session)
//! a child stopped by SIGTSTP is continued and SIGTSTP is forwarded, and a child stopped by
//! SIGSTOP is continued only by the stop sequence (SIGCONT with the stop signal); with job
//! control, Ctrl-Z suspends the replica (`tests/job_control.rs`). A dead guard's
//! SIGPIPE never reaches a child. Each test's doc comment names the promise (docs/failures.md) it
//! attacks or the defect it reproduces.
//!
//! Children are mostly `tests/programs/noisy_worker.py` (worker.py's overlap check, plus a slow
//! TERM handler) and `tests/programs/sigecho.py` (prints each signal it gets).

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::procfs::{descendants, proc_state};
use crate::support::worker::{events, noisy, starts, wait_starts, Reap};
use crate::support::{
    alive, args, bin, hold, own_session, program, replica_with, wait_for, with_rlimit, EtcdCluster,
    Proc, Replica,
};

const LONG: Duration = Duration::from_secs(30);

/// `-- python3 sigecho.py`
fn sigecho() -> Vec<String> {
    vec![
        "--".into(),
        "python3".into(),
        program("sigecho.py").to_string_lossy().into(),
    ]
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

// ---------------------------------------------------------------------------------------------
// Signals the user sends
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

// ---------------------------------------------------------------------------------------------
// Fault signals
// ---------------------------------------------------------------------------------------------

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
        // A stop signal the child survives: the stop sequence then sweeps the tree (below).
        "--stop-signal",
        "USR1",
        "--grace",
        "1s",
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
    assert_eq!(r.wait(LONG), 137, "SIGKILLed after the grace: {}", r.log());
    // This /proc is the host's: its pid numbers are not the namespace's. The sweep that follows
    // the stop signal to the child's group must have found the child alone, not whatever the
    // host numbers as our "children", and left it out (it had the signal with its group).
    assert_eq!(
        echoed(&r).iter().filter(|l| *l == "SIGUSR1").count(),
        1,
        "{:?}",
        echoed(&r)
    );
    let signalled: Vec<u32> = r
        .log()
        .lines()
        .filter(|l| l.contains("swept the child's tree"))
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

// ---------------------------------------------------------------------------------------------
// Job control and terminals
// ---------------------------------------------------------------------------------------------

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

/// Policy: without job control (a session of its own, as systemd runs a service: nobody could
/// continue a stopped replica), SIGTSTP keeps its old meaning. A child stopped by SIGTSTP is
/// continued by the supervisor, which would otherwise hold leadership with a frozen child, and
/// SIGTSTP sent to the supervisor is forwarded to the child (so it stops, and is continued): the
/// replica keeps leading and never stops. A child stopped by an explicit SIGSTOP stays stopped
/// (someone meant it) until the stop sequence, which continues it.
#[test]
fn without_job_control_a_child_stopped_by_sigtstp_is_continued_but_sigstop_is_kept() {
    let etcd = EtcdCluster::single();
    let mut r = replica_with(
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
        own_session,
    );
    r.wait_stdout("pid ", LONG);
    let child: i32 = r
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse().ok())
        .expect("child pid");
    std::thread::sleep(Duration::from_millis(200));
    for (target, who) in [(child, "the child"), (r.pid(), "singleton-exec")] {
        let stopped = || r.log().matches("stopped by SIGTSTP").count();
        let before = stopped();
        unsafe { libc::kill(target, libc::SIGTSTP) };
        wait_for(
            Duration::from_secs(3),
            || stopped() > before,
            || format!("SIGTSTP to {who} did not stop the child:\n{}", r.log()),
        );
        wait_for(
            Duration::from_secs(3),
            || proc_state(child).is_some_and(|s| s != 'T'),
            || {
                format!(
                    "after SIGTSTP to {who}, the child was not continued (state {:?}); log:\n{}",
                    proc_state(child),
                    r.log()
                )
            },
        );
        assert_ne!(proc_state(r.pid()), Some('T'), "{}", r.log());
        assert!(!r.log().contains("suspend requested"), "{}", r.log());
    }

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

// ---------------------------------------------------------------------------------------------
// The guard
// ---------------------------------------------------------------------------------------------

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
