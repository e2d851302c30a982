//! Job control (Ctrl-Z), against a real etcd, from a real pseudo-terminal: an interactive bash
//! runs singleton-exec as a job, and the tests press Ctrl-Z and type `fg` into its terminal.
//!
//! Promises (README "Terminals and Ctrl-Z"): Ctrl-Z on a leader stops its child's tree the usual
//! way, gives the lease up so a standby takes over at once (its child starts only after ours is
//! gone), then suspends singleton-exec, so the shell reports the job stopped; `fg` makes it
//! campaign again as a standby, and when it wins it starts the child with the terminal. Ctrl-Z on
//! a standby takes its key out of the queue before it stops. A job of a shell without any terminal
//! gets the same from `kill -TSTP` (its shell's `wait` returns); exit codes keep their rules.
//!
//! Children are `tests/programs/worker.py`: it records `start` and, on SIGTERM, `stop`, with
//! `CLOCK_BOOTTIME` instants and whether another worker was alive when it started.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::etcd::etcdctl;
use crate::support::procfs::proc_state;
use crate::support::shell::{Shell, CTRL_C, CTRL_Z};
use crate::support::worker::{assert_no_overlap, events, starts, wait_starts, Ev, Reap};
use crate::support::{alive, args, bin, program, wait_for, EtcdCluster, Proc, Replica};

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

/// The command line that runs a replica of `election` named `id` with a worker in `dir`.
fn command_line(etcd: &EtcdCluster, id: &str, election: &str, dir: &std::path::Path) -> String {
    format!(
        "{} --endpoints {} --id {id} --election {election} {}",
        bin(),
        etcd.endpoints(),
        worker(dir).join(" ")
    )
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

/// No terminal at all, yet job control: a shell with `set -m` (in a session of its own, no
/// controlling terminal) runs the leader as a background job, and `kill -TSTP` suspends it like
/// Ctrl-Z: the standby's child starts after ours is gone, and the shell's `wait` returns 148
/// (128 + SIGTSTP). `bg` continues it as a standby; it leads again once the other replica goes,
/// and its exit status is its child's, as ever. Failed before: SIGTSTP went to the child, which
/// was continued at once; the handoff never came and `wait` never returned.
#[test]
fn sigtstp_suspends_a_job_of_a_shell_without_a_terminal() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out");
    let script = r#"set -m
"$@" </dev/null 2>"$LOG" &
pid=$!
echo "pid $pid"
wait $pid; echo "waited $?"
read _; bg; wait $pid; echo "exited $?""#;
    let mut cmd = Command::new("setsid");
    cmd.args(["bash", "-c", script, "bash", bin()])
        .args(["--endpoints", &etcd.endpoints(), "--id", "a"])
        .args(args(&["--election", "jobs-kill"], &worker(dir.path())))
        .env("LOG", out_dir.path().join("a.log"))
        .env_remove("SINGLETON_EXEC_ENDPOINTS")
        .stdin(Stdio::piped())
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
    let mut b = Replica::start(
        "b",
        &etcd.endpoints(),
        &args(&["--election", "jobs-kill"], &worker(dir.path())),
    );
    b.wait_log("waiting for leadership", LONG);

    unsafe { libc::kill(a, libc::SIGTSTP) };
    wait_starts(dir.path(), 2, LONG, || {
        format!("no handoff after SIGTSTP:\n{}", a_log())
    });
    let [first, second] = [0, 1].map(|i| starts(dir.path())[i].clone());
    started_after_gone(dir.path(), &first, &second);
    wait_for(
        LONG,
        || said().contains("waited 148"),
        || format!("the shell's wait did not return:\n{}\n{}", said(), a_log()),
    );
    assert_eq!(proc_state(a), Some('T'), "{}", a_log());

    let keys = shell.0.stdin.as_mut().expect("the shell's stdin");
    keys.write_all(b"\n").unwrap();
    keys.flush().unwrap();
    wait_for(
        LONG,
        || a_log().matches("waiting for leadership").count() >= 2,
        || format!("no standby again after bg:\n{}", a_log()),
    );
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait(LONG), 0, "{}", b.log());
    wait_starts(dir.path(), 3, LONG, a_log);
    let third = starts(dir.path())[2].clone();
    assert_eq!(third.id, "a", "{:?}", events(dir.path()));
    started_after_gone(dir.path(), &second, &third);

    unsafe { libc::kill(a, libc::SIGTERM) };
    wait_for(
        LONG,
        || said().contains("exited "),
        || format!("the job did not end:\n{}\n{}", said(), a_log()),
    );
    // The child's status after SIGTERM (the worker exits 0), as for any leader.
    assert!(said().contains("exited 0"), "{}\n{}", said(), a_log());
    let _ = shell.0.wait();
}
