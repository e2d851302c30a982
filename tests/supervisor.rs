//! PID 1 and process-tree behaviour: exit statuses, signal forwarding, reaping, the stop sequence.
//! Each test runs the real binary against a real etcd; PID 1 is tested with
//! `unshare --pid --fork --mount-proc` (needs root, as CI runs).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{
    alive, bin, own_session, program, replica_with, wait_for, EtcdCluster, Replica,
};

const LONG: Duration = Duration::from_secs(20);
/// How soon a SIGKILLed supervisor's tree must be dead in these tests: well inside the default
/// TTL (10 s), the promise; it takes milliseconds, but a loaded machine's scheduler may delay the
/// guard and the kernel's teardown by more than a tight bound would allow. A tree that
/// outlives its supervisor lives for ever, so this still tells one from the other.
const DEAD_WITHIN: Duration = Duration::from_secs(5);

fn run_once(etcd: &EtcdCluster, election: &str, cmd: &[&str]) -> i32 {
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[&["--election", election, "--"], cmd].concat(),
    );
    r.wait(LONG)
}

#[test]
fn exit_codes_pass_through() {
    let etcd = EtcdCluster::single();
    for code in 0..=255 {
        let got = run_once(&etcd, "codes", &["sh", "-c", &format!("exit {code}")]);
        assert_eq!(got, code, "child exit {code}");
    }
    for (sig, name) in [(15, "TERM"), (9, "KILL"), (10, "USR1")] {
        let got = run_once(&etcd, "codes", &["sh", "-c", &format!("kill -{name} $$")]);
        assert_eq!(got, 128 + sig, "child killed by {name}");
    }
}

/// In a session of its own, as a service runs: without job control SIGTSTP is forwarded too
/// (under job control it suspends the replica, `tests/job_control.rs`).
#[test]
fn every_forwardable_signal_reaches_the_child() {
    let etcd = EtcdCluster::single();
    let mut r = replica_with(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "sig",
            "--",
            "python3",
            program("sigecho.py").to_str().unwrap(),
        ],
        own_session,
    );
    r.wait_stdout("ready", LONG);
    let mut sigs: Vec<(i32, String)> = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
    ]
    .iter()
    .map(|(s, n)| (*s, n.to_string()))
    .collect();
    for rt in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        sigs.push((rt, format!("SIGRTMIN+{}", rt - libc::SIGRTMIN())));
    }
    for (n, (sig, name)) in sigs.iter().enumerate() {
        r.signal(*sig);
        wait_for(
            Duration::from_secs(5),
            || {
                r.stdout()
                    .lines()
                    .filter(|l| !l.starts_with("ready"))
                    .count()
                    > n
            },
            || {
                format!(
                    "{name} did not reach the child; stdout:\n{}\nlog:\n{}",
                    r.stdout(),
                    r.log()
                )
            },
        );
        let last = r.stdout().lines().last().unwrap_or_default().to_owned();
        assert_eq!(last, *name);
    }
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    assert!(r.stdout().lines().any(|l| l == "SIGTERM"));
}

#[test]
fn the_child_starts_with_a_clean_signal_state() {
    let etcd = EtcdCluster::single();
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "mask",
            "--",
            "grep",
            "-E",
            "^Sig(Blk|Ign)",
            "/proc/self/status",
        ],
    );
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    let out = r.stdout();
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");

    // A signal the user ignored on purpose stays ignored (nohup-style).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("trap '' HUP; exec {} --endpoints {} --id r --election mask2 -- grep -E '^SigIgn' /proc/self/status", bin(), etcd.endpoints()));
    let mut r = Replica::spawn("r2", cmd);
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    assert!(
        r.stdout().contains("SigIgn:\t0000000000000001"),
        "{}",
        r.stdout()
    );
}

#[test]
fn a_child_that_ignores_the_stop_signal_is_killed_after_the_grace() {
    let etcd = EtcdCluster::single();
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "stubborn",
            "--grace",
            "1s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    );
    r.wait_stdout("ready", LONG);
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    let code = r.wait(LONG);
    let took = t.elapsed();
    assert_eq!(code, 137, "killed by SIGKILL; log:\n{}", r.log());
    assert!(
        took >= Duration::from_millis(900),
        "killed before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(r.log().contains("grace period over"), "{}", r.log());
}

/// A SIGKILL's teardown (the kernel frees a big working set before it closes the files) is
/// measured and logged with every stop that needed one, and one longer than `--margin` is called
/// out: that margin is all a standby has once a lease is lost. 2 GiB take the kernel 100-200 ms
/// on a quiet machine, longer under load; whichever it is here, the warning appears exactly when
/// the measured teardown exceeds the 100 ms margin.
#[test]
fn a_sigkill_teardown_is_measured_and_one_longer_than_the_margin_is_called_out() {
    let etcd = EtcdCluster::single();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_string_lossy().to_string();
    let worker = program("worker.py").to_string_lossy().to_string();
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "teardown",
            "--grace",
            "500ms",
            "--margin",
            "100ms",
            "--",
            "python3",
            &worker,
            &dir,
            "--ignore-term",
            "--ballast-mib",
            "2048",
        ],
    );
    wait_for(
        LONG,
        || {
            std::fs::read_dir(d.path())
                .map(|mut it| {
                    it.any(|e| {
                        e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".ballast"))
                    })
                })
                .unwrap_or(false)
        },
        || format!("the child never filled its ballast:\n{}", r.log()),
    );
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait(LONG), 137, "killed after the grace:\n{}", r.log());
    let log = r.log();
    let gone = log
        .lines()
        .find(|l| l.contains("the child's tree is gone"))
        .unwrap_or_else(|| panic!("no line for the tree's end:\n{log}"));
    let teardown = gone
        .split_whitespace()
        .find_map(|f| f.strip_prefix("teardown="))
        .and_then(crate::support::parse_duration)
        .unwrap_or_else(|| panic!("no teardown= on {gone:?}"));
    assert!(teardown > Duration::ZERO && teardown < LONG, "{teardown:?}");
    eprintln!("2 GiB child, SIGKILL teardown: {teardown:?}");
    let warned = log.contains("took longer to die after SIGKILL than --margin");
    assert_eq!(
        warned,
        teardown > Duration::from_millis(100),
        "teardown {teardown:?}, margin 100ms, warned: {warned}:\n{log}"
    );
}

#[test]
fn a_grandchild_finishes_its_slow_term_handler_before_the_supervisor_exits() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "slow",
            "--grace",
            "3s",
            "--",
            "python3",
            program("slow_grandchild.py").to_str().unwrap(),
            marker.to_str().unwrap(),
        ],
    );
    r.wait_stdout("grandchild ready", LONG);
    r.signal(libc::SIGTERM);
    let code = r.wait(LONG);
    assert!(
        marker.exists(),
        "the grandchild was cut off; exit {code}; log:\n{}",
        r.log()
    );
    assert_eq!(
        code,
        0,
        "the main child exited 0 on TERM; log:\n{}",
        r.log()
    );
}

/// Promise: the stop signal reaches every process of the child's tree, also one that left the
/// child's process group (`setsid`) and outlives the main child: the group gets the signal at
/// once, the rest of the tree a moment later, long before the grace ends.
#[test]
fn a_process_that_left_the_childs_group_gets_the_stop_signal_too() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let script = format!(
        "setsid sh -c 'trap \"echo term > {}; exit 0\" TERM; echo ready; \
         while :; do sleep 0.05; done' & wait",
        marker.display()
    );
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "setsid",
            "--ttl",
            "30s",
            "--grace",
            "20s",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    r.wait_stdout("ready", LONG);
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    let code = r.wait(LONG);
    let took = t.elapsed();
    assert!(
        marker.exists(),
        "the process outside the group never had SIGTERM (exit {code} after {took:?}); log:\n{}",
        r.log()
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGKILLed at the grace: {took:?}"
    );
    assert_eq!(
        code,
        143,
        "the main child's status (SIGTERM); log:\n{}",
        r.log()
    );
}

/// singleton-exec as PID 1 of a new PID namespace. `--kill-child`: if the test dies and kills
/// unshare, the namespace's PID 1 goes too.
fn pid1(etcd: &EtcdCluster, election: &str, command: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        bin(),
        "--endpoints",
        &etcd.endpoints(),
    ])
    .args(["--id", "p1", "--election", election, "--"])
    .args(command);
    cmd
}

/// Children of `pid` per /proc, with their state letter.
fn children_of(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if rest.get(1).and_then(|s| s.parse::<i32>().ok()) == Some(pid) {
            out.push((p, rest[0].to_owned()));
        }
    }
    out
}

fn orphans_are_reaped(r: &mut Replica, supervisor: impl Fn() -> i32) {
    r.wait_stdout("spawned", LONG);
    let sup = supervisor();
    // The orphans exit quickly; the main child keeps running, so reaping is the supervisor's doing.
    wait_for(
        Duration::from_secs(10),
        || {
            let kids = children_of(sup);
            kids.len() == 1 && kids.iter().all(|(_, st)| st != "Z")
        },
        || {
            format!(
                "zombies or orphans left under {sup}: {:?}\nlog:\n{}",
                children_of(sup),
                r.log()
            )
        },
    );
    assert!(
        r.try_status().is_none(),
        "supervisor exited early: {}",
        r.log()
    );
    unsafe { libc::kill(sup, libc::SIGTERM) };
    assert_eq!(r.wait(LONG), 143, "{}", r.log());
}

const ORPHANS: &str = "for i in $(seq 100); do (sleep 0.2 &); done; echo spawned; exec sleep 30";

#[test]
fn orphans_are_reaped_as_subreaper() {
    let etcd = EtcdCluster::single();
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &["--election", "orphans", "--", "sh", "-c", ORPHANS],
    );
    let pid = r.pid();
    orphans_are_reaped(&mut r, || pid);
}

#[test]
fn orphans_are_reaped_as_pid_1() {
    let etcd = EtcdCluster::single();
    let cmd = pid1(&etcd, "orphans1", &["sh", "-c", ORPHANS]);
    let mut r = Replica::spawn("pid1", cmd);
    let unshare = r.pid();
    orphans_are_reaped(&mut r, || {
        let kids = children_of(unshare);
        assert_eq!(kids.len(), 1, "unshare has one child, our PID 1: {kids:?}");
        kids[0].0
    });
}

#[test]
fn pid_1_forwards_signals_and_passes_the_exit_status() {
    let etcd = EtcdCluster::single();
    let cmd = pid1(
        &etcd,
        "pid1sig",
        &["python3", program("sigecho.py").to_str().unwrap()],
    );
    let mut r = Replica::spawn("pid1", cmd);
    r.wait_stdout("ready", LONG);
    let sup = children_of(r.pid())[0].0;
    unsafe { libc::kill(sup, libc::SIGUSR1) };
    r.wait_stdout("SIGUSR1", LONG);
    unsafe { libc::kill(sup, libc::SIGTERM) };
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    let cmd = pid1(&etcd, "pid1code", &["sh", "-c", "exit 42"]);
    assert_eq!(Replica::spawn("pid1", cmd).wait(LONG), 42);
}

#[test]
fn sigkill_of_the_supervisor_takes_the_child_down() {
    let etcd = EtcdCluster::single();
    let r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "pdeath",
            "--",
            "python3",
            program("sigecho.py").to_str().unwrap(),
        ],
    );
    r.wait_stdout("ready", LONG);
    let child: i32 = r
        .stdout()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(child));
    r.signal(libc::SIGKILL);
    wait_for(
        DEAD_WITHIN,
        || !alive(child),
        || format!("child {child} survived SIGKILL of its supervisor"),
    );
}

/// PR_SET_PDEATHSIG reaches only the direct child: the guard must take the grandchildren (an `sh -c`
/// pipeline's commands, a server's workers) down when the supervisor is SIGKILLed.
#[test]
fn sigkill_of_the_supervisor_takes_the_whole_tree_down() {
    let etcd = EtcdCluster::single();
    let r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "pdeath-tree",
            "--",
            "sh",
            "-c",
            "sleep 1001 & echo worker $!; sleep 1002 & echo worker $!; wait",
        ],
    );
    wait_for(
        LONG,
        || r.stdout().matches("worker").count() == 2,
        || format!("no workers started: {}", r.log()),
    );
    let workers: Vec<i32> = r
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("worker ")?.trim().parse().ok())
        .collect();
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|&p| alive(p)));
    r.signal(libc::SIGKILL);
    wait_for(
        DEAD_WITHIN,
        || workers.iter().all(|&p| !alive(p)),
        || format!("grandchildren {workers:?} survived SIGKILL of their supervisor"),
    );
}

#[test]
fn what_the_main_child_leaves_behind_is_stopped_and_its_status_kept() {
    let etcd = EtcdCluster::single();
    // The main child exits 7 at once, leaving a grandchild that ignores SIGTERM.
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &[
            "--election",
            "leftover",
            "--grace",
            "1s",
            "--",
            "sh",
            "-c",
            "(trap '' TERM; echo grandchild $$; exec sleep 300) & sleep 0.2; exit 7",
        ],
    );
    r.wait_stdout("grandchild", LONG);
    let t = Instant::now();
    assert_eq!(
        r.wait(LONG),
        7,
        "the main child's status, not the grandchild's: {}",
        r.log()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "the leftover got its grace"
    );
    assert!(
        r.log().contains("reason=\"the child exited\""),
        "{}",
        r.log()
    );
    assert!(r.log().contains("grace period over"), "{}", r.log());
    let sleeps: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .map(|c| c == "sleep\u{0}300\u{0}")
                .unwrap_or(false)
        })
        .filter(|p| alive(*p))
        .collect();
    // Other tests may run `sleep 300` too; ours was a child of the supervisor, which has exited, so
    // any survivor would now be re-parented to init.
    let orphaned: Vec<&i32> = sleeps
        .iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| s.rsplit(')').next().unwrap_or("").split_whitespace().nth(1) == Some("1"))
                .unwrap_or(false)
        })
        .collect();
    assert!(
        orphaned.is_empty(),
        "the grandchild outlived the supervisor: {orphaned:?}"
    );
}

/// An executable file `dir/name` holding `text`.
fn executable(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

/// A replica whose PATH starts with `dirs`, running `command`.
fn with_path_first(
    etcd: &EtcdCluster,
    dirs: &[&std::path::Path],
    election: &str,
    command: &[&str],
) -> Replica {
    let mut path: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    path.push(std::env::var("PATH").unwrap());
    let mut cmd = Command::new(bin());
    cmd.env("PATH", path.join(":"))
        .args([
            "--endpoints",
            &etcd.endpoints(),
            "--id",
            "r",
            "--election",
            election,
            "--",
        ])
        .args(command);
    Replica::spawn("r", cmd)
}

/// The child is started by a clone that execs a path found beforehand, not by `execvp`; what
/// `execvp` did must still hold. A file without `#!` is a shell script (run by /bin/sh, with the
/// path as `$0`), found through PATH too; a command whose exec fails only in the kernel (a missing
/// interpreter: the file itself exists and is executable) ends with 127 and a message, at once.
#[test]
fn scripts_without_an_interpreter_line_and_exec_failures_behave_as_with_execvp() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| executable(dir.path(), name, text);
    let plain = write("plain-script", "echo \"ran $0 $1\"; exit 7\n");
    let code = run_once(&etcd, "script", &[plain.to_str().unwrap(), "arg"]);
    assert_eq!(code, 7);

    let mut r = with_path_first(
        &etcd,
        &[dir.path()],
        "script2",
        &["plain-script", "by-name"],
    );
    assert_eq!(r.wait(LONG), 7, "{}", r.log());
    assert_eq!(
        r.stdout().trim(),
        format!("ran {} by-name", plain.display()),
        "{}",
        r.log()
    );

    // As execvp: a first hit whose exec fails with "not found" (its interpreter is missing) is
    // skipped for the same name later in PATH.
    let later = dir.path().join("later");
    std::fs::create_dir(&later).unwrap();
    write("twice", "#!/nonexistent/interpreter\necho never\n");
    executable(&later, "twice", "#!/bin/sh\necho second\n");
    let mut r = with_path_first(&etcd, &[dir.path(), &later], "script3", &["twice"]);
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    assert_eq!(r.stdout().trim(), "second", "{}", r.log());

    let broken = write("broken", "#!/nonexistent/interpreter\necho never\n");
    let started = Instant::now();
    let mut r = Replica::start(
        "r",
        &etcd.endpoints(),
        &["--election", "broken", "--", broken.to_str().unwrap()],
    );
    assert_eq!(r.wait(LONG), 127, "{}", r.log());
    assert!(r.log().contains("cannot run"), "{}", r.log());
    assert!(started.elapsed() < LONG);
}
