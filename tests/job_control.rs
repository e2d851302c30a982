//! Job control (Ctrl-Z), against a real etcd, from a real pseudo-terminal: an interactive bash
//! runs singleton-exec as a job, and the tests press Ctrl-Z and type `fg` into its terminal.
//!
//! Promises (docs/failures.md, "Terminals and Ctrl-Z"): Ctrl-Z on a leader stops its child's tree the usual
//! way, gives the lease up so a standby takes over at once (its child starts only after ours is
//! gone), then suspends singleton-exec, so the shell reports the job stopped; `fg` makes it
//! campaign again as a standby, and when it wins it starts the child with the terminal. Ctrl-Z on
//! a standby takes its key out of the queue before it stops. A SIGCONT that comes before the
//! replica could stop, a shutdown signal or a Ctrl-C while it is on its way, are not lost. Without
//! a terminal, or under a parent that is PID 1 of its namespace, SIGTSTP keeps its old meaning
//! (forwarded, the child continued). No signal flood holds off the fail-closed deadline.
//!
//! Children are `tests/programs/worker.py`: it records `start` and, on SIGTERM, `stop`, with
//! `CLOCK_BOOTTIME` instants and whether another worker was alive when it started; and
//! `tests/programs/held_stop.sh`, whose stop the test holds open until it lets go.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::etcd::etcdctl;
use crate::support::procfs::{descendants, proc_state};
use crate::support::proxy::FaultProxy;
use crate::support::shell::{Shell, CTRL_C, CTRL_Z};
use crate::support::worker::{assert_no_overlap, events, starts, wait_starts, Ev, Reap};
use crate::support::{
    alive, args, bin, own_session, program, wait_for, EtcdCluster, Proc, Replica,
};

const LONG: Duration = Duration::from_secs(30);

/// `-- python3 worker.py DIR`
fn worker(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--".into(),
        "python3".into(),
        program("worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ]
}

/// `-- sh held_stop.sh DIR`
fn held_child(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--".into(),
        "sh".into(),
        program("held_stop.sh").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ]
}

/// How many lines of held_stop.sh's `DIR/events` are of `kind` (`start`, `stopping`, `stop`).
fn held_events(dir: &std::path::Path, kind: &str) -> usize {
    std::fs::read_to_string(dir.join("events"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(kind))
        .count()
}

/// Lets held_stop.sh's children finish their stop.
fn let_go(dir: &std::path::Path) {
    std::fs::write(dir.join("let-go"), b"").unwrap();
}

/// The command line that runs a replica of `election` named `id`, through `endpoints`, with
/// `child` (`-- ...`).
fn job_line(endpoints: &str, id: &str, election: &str, child: &[String]) -> String {
    format!(
        "{} --endpoints {endpoints} --id {id} --election {election} {}",
        bin(),
        child.join(" ")
    )
}

/// The command line that runs a replica of `election` named `id` with a worker in `dir`.
fn command_line(etcd: &EtcdCluster, id: &str, election: &str, dir: &std::path::Path) -> String {
    job_line(&etcd.endpoints(), id, election, &worker(dir))
}

/// The one `singleton-exec` process below `pid`.
fn supervisor_below(pid: i32) -> i32 {
    let mut found = None;
    wait_for(
        LONG,
        || {
            found = descendants(pid).into_iter().find(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "singleton-exec")
            });
            found.is_some()
        },
        || format!("no singleton-exec below {pid}"),
    );
    found.expect("the supervisor's pid")
}

/// The keys of `election`'s queue.
fn queue(etcd: &EtcdCluster, election: &str) -> Vec<String> {
    let prefix = format!("/singleton-exec/{election}/");
    let (code, out) = etcdctl(
        &etcd.endpoints(),
        &["get", "--prefix", "--keys-only", &prefix],
    );
    assert_eq!(code, 0, "{out}");
    out.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `stop` event of the worker that recorded `start`.
fn stop_of(dir: &std::path::Path, start: &Ev) -> Option<Ev> {
    events(dir)
        .into_iter()
        .find(|e| e.kind == "stop" && e.pid == start.pid)
}

/// Asserts that `later` started only after `earlier`'s worker had stopped and was gone.
fn started_after_gone(dir: &std::path::Path, earlier: &Ev, later: &Ev) {
    let stop = stop_of(dir, earlier).unwrap_or_else(|| {
        panic!(
            "{} started while {}'s child never recorded its stop: {:?}",
            later.id,
            earlier.id,
            events(dir)
        )
    });
    assert!(
        stop.boot_ns < later.boot_ns,
        "{}'s child started before {}'s child stopped: {:?}",
        later.id,
        earlier.id,
        events(dir)
    );
    assert!(!alive(earlier.pid), "{:?}", events(dir));
    assert_no_overlap(dir);
}

/// How many times the shell's replica `id` entered standby so far.
fn standby_rounds(shell: &Shell, id: &str) -> usize {
    shell
        .screen()
        .matches(&format!("role=\"standby\" id=\"{id}\""))
        .count()
}

/// Ctrl-Z on a leader whose child has the terminal: the standby's child starts only after ours
/// recorded its stop, the job shows as stopped, `fg` makes it a standby again, and a later
/// handoff back starts our child with the terminal (Ctrl-C reaches it; exit 130). Failed before:
/// the child stopped by SIGTSTP was continued at once, the standby never led, the shell hung.
#[test]
fn ctrl_z_on_a_leader_hands_over_once_its_tree_is_gone_and_fg_rejoins() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut shell = Shell::start();
    shell.type_line(&command_line(&etcd, "a", "jobs-leader", dir.path()));
    wait_starts(dir.path(), 1, LONG, || shell.screen());
    let a = shell.supervisor("jobs-leader");
    let mut b = Replica::start(
        "b",
        &etcd.endpoints(),
        &args(&["--election", "jobs-leader"], &worker(dir.path())),
    );
    b.wait_log("waiting for leadership", LONG);

    shell.press(CTRL_Z);
    wait_starts(dir.path(), 2, LONG, || {
        format!(
            "the standby did not take over after Ctrl-Z:\n{}",
            shell.screen()
        )
    });
    let [first, second] = [0, 1].map(|i| starts(dir.path())[i].clone());
    assert_eq!((first.id.as_str(), second.id.as_str()), ("a", "b"));
    started_after_gone(dir.path(), &first, &second);
    shell.wait_screen(LONG, |s| s.contains("Stopped"));
    assert_eq!(proc_state(a), Some('T'), "{}", shell.screen());

    shell.type_line("fg");
    wait_for(
        LONG,
        || standby_rounds(&shell, "a") >= 2,
        || format!("no standby again after fg:\n{}", shell.screen()),
    );
    assert_eq!(starts(dir.path()).len(), 2, "{:?}", events(dir.path()));

    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    wait_starts(dir.path(), 3, LONG, || {
        format!("no handoff back:\n{}", shell.screen())
    });
    let third = starts(dir.path())[2].clone();
    assert_eq!(third.id, "a", "{:?}", events(dir.path()));
    started_after_gone(dir.path(), &second, &third);

    // The child has the terminal again: Ctrl-C reaches it, and its status is the job's.
    shell.press(CTRL_C);
    wait_for(
        LONG,
        || !alive(a),
        || format!("Ctrl-C did not end the replica:\n{}", shell.screen()),
    );
    shell.type_line("echo status=$?");
    shell.wait_screen(LONG, |s| s.contains("status=130"));
}

/// Ctrl-Z on a standby: its key leaves the queue before it stops; `fg` joins again with a fresh
/// lease, and it leads once the leader goes. Failed before: SIGTSTP was forwarded to no child,
/// nothing stopped, and the shell hung.
#[test]
fn ctrl_z_on_a_standby_leaves_the_queue_and_fg_joins_again() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut a = Replica::start(
        "a",
        &etcd.endpoints(),
        &args(&["--election", "jobs-standby"], &worker(dir.path())),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let mut shell = Shell::start();
    shell.type_line(&command_line(&etcd, "b", "jobs-standby", dir.path()));
    wait_for(
        LONG,
        || standby_rounds(&shell, "b") == 1,
        || format!("b did not join the queue:\n{}", shell.screen()),
    );
    let b = shell.supervisor("jobs-standby");
    let joined = queue(&etcd, "jobs-standby");
    assert_eq!(joined.len(), 2, "{joined:?}");

    shell.press(CTRL_Z);
    shell.wait_screen(LONG, |s| s.contains("Stopped"));
    assert_eq!(proc_state(b), Some('T'), "{}", shell.screen());
    let left = queue(&etcd, "jobs-standby");
    assert_eq!(
        left.len(),
        1,
        "b's key is still queued: {left:?}\n{}",
        shell.screen()
    );

    shell.type_line("fg");
    wait_for(
        LONG,
        || standby_rounds(&shell, "b") >= 2,
        || format!("no standby again after fg:\n{}", shell.screen()),
    );
    let again = queue(&etcd, "jobs-standby");
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(
        again
            .iter()
            .all(|k| !joined.contains(k) || left.contains(k)),
        "b joined again with its old lease: {joined:?} then {again:?}"
    );

    a.signal(libc::SIGTERM);
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    wait_starts(dir.path(), 2, LONG, || shell.screen());
    let [first, second] = [0, 1].map(|i| starts(dir.path())[i].clone());
    assert_eq!(second.id, "b", "{:?}", events(dir.path()));
    started_after_gone(dir.path(), &first, &second);
    shell.press(CTRL_C);
    wait_for(
        LONG,
        || !alive(b),
        || format!("Ctrl-C did not end the replica:\n{}", shell.screen()),
    );
    shell.type_line("echo status=$?");
    shell.wait_screen(LONG, |s| s.contains("status=130"));
}

/// No terminal: a shell with `set -m` (in a session of its own, no controlling terminal) runs the
/// leader as a background job, so its process group is not orphaned; yet without a terminal no
/// job control is assumed (a service's `sh -c`, an init, do the same and never continue a stopped
/// job). `kill -TSTP` keeps its old meaning: forwarded to the child, which is continued at once;
/// the replica keeps leading, nothing is handed over, and the shell's `wait` returns only when
/// the replica exits, with its child's status. Failed before: the replica suspended itself.
#[test]
fn sigtstp_to_a_job_of_a_shell_without_a_terminal_is_forwarded() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out");
    let script = r#"set -m
"$@" </dev/null 2>"$LOG" &
pid=$!
echo "pid $pid"
wait $pid; echo "waited $?""#;
    let mut cmd = Command::new("setsid");
    cmd.args(["bash", "-c", script, "bash", bin()])
        .args(["--endpoints", &etcd.endpoints(), "--id", "a"])
        .args(args(&["--election", "jobs-kill"], &worker(dir.path())))
        .env("LOG", out_dir.path().join("a.log"))
        .env("SINGLETON_EXEC_LOG", "singleton_exec=info")
        .env_remove("SINGLETON_EXEC_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null());
    let mut shell = Proc::spawn(&mut cmd);
    let said = || std::fs::read_to_string(&out).unwrap_or_default();
    let a_log = || std::fs::read_to_string(out_dir.path().join("a.log")).unwrap_or_default();
    wait_starts(dir.path(), 1, LONG, a_log);
    let a: i32 = said()
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the job's pid");
    let child = starts(dir.path())[0].pid;
    let b = Replica::start(
        "b",
        &etcd.endpoints(),
        &args(&["--election", "jobs-kill"], &worker(dir.path())),
    );
    b.wait_log("waiting for leadership", LONG);

    unsafe { libc::kill(a, libc::SIGTSTP) };
    wait_for(
        LONG,
        || a_log().contains("the child was stopped by SIGTSTP: continued"),
        || format!("SIGTSTP was not forwarded to the child:\n{}", a_log()),
    );
    wait_for(
        LONG,
        || proc_state(child).is_some_and(|s| s != 'T'),
        || format!("the child was not continued:\n{}", a_log()),
    );
    assert_ne!(proc_state(a), Some('T'), "{}", a_log());
    assert!(!a_log().contains("suspend requested"), "{}", a_log());
    assert!(!said().contains("waited"), "{}\n{}", said(), a_log());
    assert_eq!(starts(dir.path()).len(), 1, "{:?}", events(dir.path()));

    unsafe { libc::kill(a, libc::SIGTERM) };
    wait_for(
        LONG,
        || said().contains("waited "),
        || format!("the job did not end:\n{}\n{}", said(), a_log()),
    );
    // The child's status after SIGTERM (the worker exits 0), as for any leader.
    assert!(said().contains("waited 0"), "{}\n{}", said(), a_log());
    let _ = shell.0.wait();
}

/// A service's `ExecStart=/bin/sh -c "timeout 1d singleton-exec ...; ..."`: a session of its
/// own, no terminal, and `timeout` puts singleton-exec in a process group whose parent (`timeout`'s
/// `sh`) is in the session, so the group is not orphaned, yet nothing there would ever continue a
/// stopped job. SIGTSTP is forwarded and the child continued: the replica keeps leading. Failed
/// before: the replica suspended itself for good.
#[test]
fn sigtstp_under_a_service_shell_without_a_terminal_is_forwarded() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("a.log");
    let mut cmd = Command::new("setsid");
    cmd.args(["sh", "-c", "timeout 1d \"$@\"; echo exited $?", "sh", bin()])
        .args(["--endpoints", &etcd.endpoints(), "--id", "a"])
        .args(args(&["--election", "jobs-svc"], &worker(dir.path())))
        .env("SINGLETON_EXEC_LOG", "singleton_exec=info")
        .env_remove("SINGLETON_EXEC_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let service = Proc::spawn(&mut cmd);
    let a_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_starts(dir.path(), 1, LONG, a_log);
    let a = supervisor_below(service.pid());
    let child = starts(dir.path())[0].pid;

    unsafe { libc::kill(a, libc::SIGTSTP) };
    wait_for(
        LONG,
        || a_log().contains("the child was stopped by SIGTSTP: continued"),
        || {
            format!(
                "SIGTSTP was not forwarded to the child (singleton-exec is {:?}):\n{}",
                proc_state(a),
                a_log()
            )
        },
    );
    wait_for(
        LONG,
        || proc_state(child).is_some_and(|s| s != 'T'),
        || format!("the child was not continued:\n{}", a_log()),
    );
    assert_ne!(proc_state(a), Some('T'), "{}", a_log());
    assert!(!a_log().contains("suspend requested"), "{}", a_log());
}

/// A terminal, but an init that never does job control as the parent: `tini` as PID 1 of a PID
/// namespace (as `docker run -it --init` runs it) puts singleton-exec in a process group of its
/// own, which is not orphaned (tini is in the session, in another group). A parent that is PID 1
/// of its namespace does not count: SIGTSTP is forwarded and the child continued. Failed before:
/// the replica suspended itself, and tini never continues it.
#[test]
fn sigtstp_under_pid_1_of_a_namespace_is_forwarded() {
    let etcd = EtcdCluster::single();
    let mut shell = Shell::start();
    shell.type_line(&format!(
        "unshare --pid --fork tini -- {}",
        job_line(
            &etcd.endpoints(),
            "a",
            "jobs-tini",
            &["--".into(), "sleep".into(), "1000".into()]
        )
    ));
    shell.wait_screen(LONG, |s| s.contains("role=\"leader\""));
    let a = shell.supervisor("jobs-tini");
    let mut child = None;
    wait_for(
        LONG,
        || {
            child = descendants(a).first().copied();
            child.is_some()
        },
        || format!("no child below singleton-exec:\n{}", shell.screen()),
    );
    let child = child.expect("the child's pid");

    unsafe { libc::kill(a, libc::SIGTSTP) };
    shell.wait_screen(LONG, |s| {
        s.contains("the child was stopped by SIGTSTP: continued") || s.contains("suspend requested")
    });
    assert!(
        !shell.screen().contains("suspend requested"),
        "suspended under tini: {:?}\n{}",
        proc_state(a),
        shell.screen()
    );
    wait_for(
        LONG,
        || proc_state(child).is_some_and(|s| s != 'T'),
        || format!("the child was not continued:\n{}", shell.screen()),
    );
    assert_ne!(proc_state(a), Some('T'), "{}", shell.screen());
}

/// A SIGCONT that comes while the tree is still stopping (after SIGTSTP, before singleton-exec
/// could stop itself) is not forgotten: the job was continued, so the replica does not stop; it
/// campaigns again at once and, alone, leads again. Failed before: the SIGCONT was only
/// forwarded, and the replica stopped itself for good once its lease was given up.
#[test]
fn a_sigcont_before_the_replica_could_stop_is_not_forgotten() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let mut shell = Shell::start();
    shell.type_line(&job_line(
        &etcd.endpoints(),
        "a",
        "jobs-cont",
        &held_child(dir.path()),
    ));
    wait_for(
        LONG,
        || held_events(dir.path(), "start") == 1,
        || format!("the child did not start:\n{}", shell.screen()),
    );
    let a = shell.supervisor("jobs-cont");

    unsafe { libc::kill(a, libc::SIGTSTP) };
    wait_for(
        LONG,
        || held_events(dir.path(), "stopping") == 1,
        || format!("SIGTSTP did not stop the tree:\n{}", shell.screen()),
    );
    unsafe { libc::kill(a, libc::SIGCONT) };
    let_go(dir.path());
    wait_for(
        LONG,
        || held_events(dir.path(), "start") == 2,
        || {
            format!(
                "continued before it could stop, the replica did not lead again (state {:?}):\n{}",
                proc_state(a),
                shell.screen()
            )
        },
    );
    assert_ne!(proc_state(a), Some('T'), "{}", shell.screen());
    assert!(!shell.screen().contains("Stopped"), "{}", shell.screen());
}

/// SIGTERM after the tree is gone, while the lease is being given up on the way to a suspension
/// (etcd is cut off, so that takes a second): the shutdown wins, the replica exits (0, as a
/// standby asked to stop does) instead of stopping itself with the shutdown pending. Failed
/// before: it stopped, and the SIGTERM waited for a SIGCONT nobody would send.
#[test]
fn sigterm_on_the_way_to_a_suspension_ends_the_replica() {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let mut shell = Shell::start();
    shell.type_line(&job_line(
        &proxy.url,
        "a",
        "jobs-term",
        &held_child(dir.path()),
    ));
    wait_for(
        LONG,
        || held_events(dir.path(), "start") == 1,
        || format!("the child did not start:\n{}", shell.screen()),
    );
    let a = shell.supervisor("jobs-term");

    unsafe { libc::kill(a, libc::SIGTSTP) };
    wait_for(
        LONG,
        || held_events(dir.path(), "stopping") == 1,
        || format!("SIGTSTP did not stop the tree:\n{}", shell.screen()),
    );
    // Giving the lease up now waits for etcd: a second at most.
    proxy.cut();
    let_go(dir.path());
    shell.wait_screen(LONG, |s| s.contains("the child's tree is gone"));
    unsafe { libc::kill(a, libc::SIGTERM) };
    wait_for(
        LONG,
        || !alive(a) || proc_state(a) == Some('T'),
        || {
            format!(
                "the replica neither exited nor stopped:\n{}",
                shell.screen()
            )
        },
    );
    assert!(
        !alive(a),
        "the replica stopped itself with a shutdown pending:\n{}",
        shell.screen()
    );
    shell.type_line("echo status=$?");
    shell.wait_screen(LONG, |s| s.contains("status=0"));
}

/// Ctrl-C while the child's tree is stopping for a Ctrl-Z (the child still has the terminal, so
/// the key reaches it): the user asks to end the job, not to suspend it. The replica exits with
/// the child's status (130, killed by SIGINT), as Ctrl-C on a running leader does. Failed before:
/// a child's death by SIGINT during a stop was taken for the stop's doing, and the replica
/// suspended.
#[test]
fn ctrl_c_while_the_tree_stops_for_ctrl_z_ends_the_replica() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let mut shell = Shell::start();
    shell.type_line(&job_line(
        &etcd.endpoints(),
        "a",
        "jobs-int",
        &held_child(dir.path()),
    ));
    wait_for(
        LONG,
        || held_events(dir.path(), "start") == 1,
        || format!("the child did not start:\n{}", shell.screen()),
    );
    let a = shell.supervisor("jobs-int");

    shell.press(CTRL_Z);
    wait_for(
        LONG,
        || held_events(dir.path(), "stopping") == 1,
        || format!("Ctrl-Z did not stop the tree:\n{}", shell.screen()),
    );
    shell.press(CTRL_C);
    wait_for(
        LONG,
        || !alive(a) || proc_state(a) == Some('T'),
        || {
            format!(
                "the replica neither exited nor stopped:\n{}",
                shell.screen()
            )
        },
    );
    assert!(
        !alive(a),
        "Ctrl-C during the stop, yet the replica suspended:\n{}",
        shell.screen()
    );
    shell.type_line("echo status=$?");
    shell.wait_screen(LONG, |s| s.contains("status=130"));
}

/// Floods a process with signals from a few threads; stops when dropped (also on a failed
/// assertion), before the target's own guard kills it, so its pid is never signalled after it
/// was reaped.
struct Flood {
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Flood {
    /// Sends `signals` to `pid`, one after the other, as fast as `threads` threads can.
    fn start(pid: i32, signals: &'static [i32], threads: usize) -> Flood {
        use std::sync::atomic::Ordering;
        let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let threads = (0..threads)
            .map(|_| {
                let running = on.clone();
                std::thread::spawn(move || {
                    let mut rounds = 0u64;
                    while running.load(Ordering::Relaxed) {
                        for &sig in signals {
                            unsafe { libc::kill(pid, sig) };
                        }
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        Flood { on, threads }
    }

    /// Stops, and says how many rounds of signals were sent.
    fn stop(mut self) -> u64 {
        self.on.store(false, std::sync::atomic::Ordering::Relaxed);
        self.threads.drain(..).map(|t| t.join().unwrap_or(0)).sum()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.on.store(false, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `n` idle processes (a busy host runs hundreds), killed on drop.
fn crowd(n: usize) -> Proc {
    let script = format!("i=0; while [ $i -lt {n} ]; do sleep 600 & i=$((i+1)); done; wait");
    let crowd = Proc::spawn(Command::new("sh").args(["-c", &script]));
    wait_for(
        LONG,
        || descendants(crowd.pid()).len() >= n,
        || format!("{n} processes did not start"),
    );
    crowd
}

/// `late` of the "renew deadline passed" line of a log, in milliseconds, if there is one.
fn deadline_late_ms(log: &str) -> Option<u64> {
    let late = log
        .lines()
        .find(|l| l.contains("renew deadline passed"))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("late="))?;
    crate::support::parse_duration(late).map(|d| d.as_millis() as u64)
}

/// Promise: the child is dead before the lease can expire, whatever signals arrive. A leader
/// without job control (a session of its own: every SIGTSTP is looked at, then forwarded), on a
/// host running several hundred processes, cut off from etcd, is flooded with SIGTSTP and
/// SIGWINCH (forwarded; its child ignores both) until the standby takes over. The fail-closed
/// deadline still fires on time: the old child is stopped and gone before the standby's starts.
/// Failed before: every SIGTSTP read the stat file of every process in /proc and signals were
/// read until none was left, so the deadline was not checked until the flood ended: the lease
/// expired first and the standby's child started beside ours.
#[test]
fn a_signal_flood_does_not_hold_off_the_fail_closed_deadline() {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let timing = ["--ttl", "3s", "--grace", "1s", "--dial-timeout", "1s"];
    let opts: Vec<&str> = ["--election", "jobs-flood"]
        .iter()
        .chain(&timing)
        .copied()
        .collect();
    // The child ignores SIGTSTP (SIG_IGN survives the exec) and SIGWINCH (its default).
    let ignoring = vec![
        "--".into(),
        "sh".into(),
        "-c".into(),
        "trap '' TSTP; exec python3 \"$0\" \"$1\"".into(),
        program("worker.py").to_string_lossy().into(),
        dir.path().to_string_lossy().into(),
    ];
    // Logging at info (`env` outranks the replica's debug setting): a debug line per forwarded
    // signal would fill the disk.
    let mut cmd = Command::new("env");
    cmd.args(["SINGLETON_EXEC_LOG=singleton_exec=info", bin()])
        .args(["--endpoints", &proxy.url, "--id", "a"])
        .args(args(&opts, &ignoring));
    own_session(&mut cmd);
    let a = Replica::spawn("a", cmd);
    wait_starts(dir.path(), 1, LONG, || a.log());
    let old = starts(dir.path())[0].clone();
    let b = Replica::start("b", &etcd.endpoints(), &args(&opts, &worker(dir.path())));
    b.wait_log("waiting for leadership", LONG);

    let _crowd = crowd(600);
    let flood = Flood::start(a.pid(), &[libc::SIGTSTP, libc::SIGWINCH], 2);
    proxy.cut();
    wait_starts(dir.path(), 2, LONG, || {
        format!("b did not take over:\n{}", b.log())
    });
    let rounds = flood.stop();
    let evs = events(dir.path());
    let new = starts(dir.path())[1].clone();
    assert_eq!(new.id, "b", "{evs:?}");
    let stop = stop_of(dir.path(), &old).unwrap_or_else(|| {
        panic!(
            "b's child started while a's never got the stop signal ({rounds} rounds of signals): \
             {evs:?}\n{}",
            a.log()
        )
    });
    assert!(stop.boot_ns < new.boot_ns, "{evs:?}");
    assert_no_overlap(dir.path());
    let late = deadline_late_ms(&a.log());
    println!("flood: {rounds} rounds of signals; the deadline fired {late:?} ms late");
    assert!(
        late.is_some_and(|ms| ms < 1_000),
        "the deadline fired {late:?} ms late under {rounds} rounds of signals:\n{}",
        a.log()
    );
}
