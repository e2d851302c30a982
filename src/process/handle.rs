//! The handle the async side holds on the process thread ([`crate::process::thread`]): it starts
//! the thread, sends it [`Request`]s (waking it through an eventfd), receives its [`Event`]s, and
//! ends it when dropped (the thread then ends once no tree is left).
//!
//! Also here: making this process the reaper of the child's orphans ([`become_subreaper`]), which
//! must happen before the thread starts the child.

#![forbid(unsafe_code)]

use std::io;
use std::sync::{mpsc, Arc};

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::process::contract::{Event, Request, Settings};
use crate::process::guard::Guard;
use crate::process::signals;
use crate::process::thread::{Channels, ProcessOwner};

/// The handle the async side holds.
pub struct ProcessThread {
    /// `None` only while dropping: the sender must be gone before the thread is woken to notice.
    requests: Option<mpsc::Sender<Request>>,
    wake: Arc<EventFd>,
    pub events: UnboundedReceiver<Event>,
    /// The process thread; it ends once this handle is dropped and no tree is left. Only tests
    /// join it: the binary ends with `process::exit`.
    #[cfg_attr(not(test), allow(dead_code))]
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProcessThread {
    /// Starts the process thread. [`signals::block_all`] must have run first. `sent_faults` is the
    /// pipe from [`signals::forward_sent_faults`], if installed; `guard` is told every child's
    /// process group ([`crate::process::guard`]).
    pub fn start(
        settings: Settings,
        sent_faults: Option<std::os::fd::OwnedFd>,
        guard: Option<Guard>,
    ) -> io::Result<ProcessThread> {
        let inherited = signals::inherited().ok_or_else(|| {
            io::Error::other("signals::block_all must run before the supervisor starts")
        })?;
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let (req_tx, req_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = unbounded_channel();
        let channels = Channels {
            requests: req_rx,
            events: ev_tx,
            wake: wake.clone(),
        };
        let owner = ProcessOwner::new(channels, settings, inherited, sent_faults, guard)?;
        let thread = std::thread::Builder::new()
            .name("process".into())
            .spawn(move || owner.run())?;
        Ok(ProcessThread {
            requests: Some(req_tx),
            wake,
            events: ev_rx,
            thread: Some(thread),
        })
    }

    /// Sends a request; the process thread acts on it at once.
    pub fn request(&self, request: Request) {
        let Some(requests) = &self.requests else {
            return;
        };
        if requests.send(request).is_ok() {
            wake(&self.wake);
        }
    }
}

/// Wakes the process thread. The counter cannot overflow in practice (2^64 - 2 wake-ups between
/// two reads), and a failed write would only mean it is already pending.
fn wake(eventfd: &EventFd) {
    let _ = eventfd.write(1);
}

#[cfg(test)]
impl ProcessThread {
    /// Ends the process thread (no tree may be left) and waits for it, so that its `waitpid(-1)`
    /// cannot reap the next test's children.
    fn end(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for ProcessThread {
    fn drop(&mut self) {
        // Close the channel first, then wake the thread so it notices (it then ends once no tree
        // is left). The other order can let the thread look before the channel is closed, then
        // sleep for good.
        self.requests = None;
        wake(&self.wake);
    }
}

/// Makes this process a child subreaper when it is not PID 1, so orphans of the child's tree are
/// re-parented to us and can be reaped and waited for.
pub fn become_subreaper() -> io::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true)?;
    Ok(())
}

/// Clears a child-subreaper setting inherited across exec, so a process we orphan (the guard) is
/// re-parented to our ancestors' reaper, not to us.
pub fn clear_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(false)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The process thread on its own, no etcd: real children, real signals, real deadlines.
    use super::*;
    use std::ffi::OsString;
    use std::time::{Duration, Instant};

    use crate::core::clock::BootInstant;
    use crate::core::command::CommandSpec;
    use crate::core::exit_code::ChildStatus;
    use crate::core::lifecycle::StopReason;
    use crate::process::contract::{CheckExit, LeaseDeadline, PromoteRefusal};
    use crate::process::tree;

    fn supervisor(grace_ms: u64, role_signal: Option<libc::c_int>) -> ProcessThread {
        signals::block_all();
        ProcessThread::start(
            Settings {
                stop_signal: libc::SIGTERM,
                grace: Duration::from_millis(grace_ms),
                resign_signal: None,
                role_signal,
            },
            None,
            None,
        )
        .expect("process thread")
    }

    fn sh(script: &str) -> CommandSpec {
        CommandSpec {
            program: "/bin/sh".into(),
            args: vec![OsString::from("-c"), script.into()],
        }
    }

    fn deadline_in(stop_ms: u64, kill_ms: u64) -> LeaseDeadline {
        let now = BootInstant::now();
        LeaseDeadline {
            stop_at: now + Duration::from_millis(stop_ms),
            kill_at: now + Duration::from_millis(kill_ms),
        }
    }

    fn next(sup: &mut ProcessThread) -> Event {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match sup.events.try_recv() {
                Ok(ev) => return ev,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("no event from the process thread: {e:?}"),
            }
        }
    }

    fn start(sup: &mut ProcessThread, script: &str, deadline: LeaseDeadline) -> libc::pid_t {
        start_with(sup, script, vec![], deadline)
    }

    fn start_with(
        sup: &mut ProcessThread,
        script: &str,
        env: Vec<(String, String)>,
        deadline: LeaseDeadline,
    ) -> libc::pid_t {
        sup.request(Request::Spawn {
            command: sh(script),
            env,
            own_pid_variable: None,
            deadline: Some(deadline),
        });
        match next(sup) {
            Event::Started { pid } => pid,
            other => panic!("expected Started, got {other:?}"),
        }
    }

    /// Starts `script`, which creates the file `$READY` once its traps are set, and waits for it:
    /// no signal reaches the child before its traps do.
    fn start_ready(sup: &mut ProcessThread, script: &str, deadline: LeaseDeadline) -> libc::pid_t {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ready = dir.path().join("ready");
        let env = vec![("READY".into(), ready.to_string_lossy().into_owned())];
        let pid = start_with(sup, script, env, deadline);
        wait_until(|| ready.exists(), "the child to set its traps");
        pid
    }

    fn wait_until(condition: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !condition() {
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The next event, which must be `Stopping`: its reason and time to SIGKILL.
    fn stopping(sup: &mut ProcessThread) -> (StopReason, Duration) {
        match next(sup) {
            Event::Stopping { reason, kill_in } => (reason, kill_in),
            other => panic!("expected Stopping, got {other:?}"),
        }
    }

    /// The next event, which must be `Finished`: the child's status and the reason.
    fn finished(sup: &mut ProcessThread) -> (ChildStatus, StopReason) {
        match next(sup) {
            Event::Finished { status, reason, .. } => (status, reason),
            other => panic!("expected Finished, got {other:?}"),
        }
    }

    /// Runs `test` against a process thread with `grace_ms` between stop signal and SIGKILL,
    /// alone (the thread reaps with `waitpid(-1)`), then ends the thread.
    fn with_process_thread<T>(grace_ms: u64, test: impl FnOnce(&mut ProcessThread) -> T) -> T {
        let _serial = crate::test_children();
        let mut sup = Ending(Some(supervisor(grace_ms, None)));
        test(sup.0.as_mut().expect("the process thread"))
    }

    /// The same with `--hot-standby` and SIGUSR1 as the role signal.
    fn with_hot_process_thread<T>(grace_ms: u64, test: impl FnOnce(&mut ProcessThread) -> T) -> T {
        let _serial = crate::test_children();
        let mut sup = Ending(Some(supervisor(grace_ms, Some(libc::SIGUSR1))));
        test(sup.0.as_mut().expect("the process thread"))
    }

    /// Starts a hot standby's child (no deadline) that appends a line to `$SIGNALS` for each
    /// role signal, and waits for its traps; returns the file.
    fn start_hot_standby(sup: &mut ProcessThread, dir: &std::path::Path) -> std::path::PathBuf {
        let (ready, signals) = (dir.join("ready"), dir.join("signals"));
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        sup.request(Request::Spawn {
            command: sh("trap 'echo usr1 >> \"$SIGNALS\"' USR1; : > \"$READY\"; \
                         while :; do sleep 0.05; done"),
            env: vec![
                ("READY".into(), path(&ready)),
                ("SIGNALS".into(), path(&signals)),
            ],
            own_pid_variable: None,
            deadline: None,
        });
        assert!(matches!(next(sup), Event::Started { .. }));
        wait_until(|| ready.exists(), "the child to set its traps");
        signals
    }

    fn role_signals(file: &std::path::Path) -> usize {
        std::fs::read_to_string(file).map_or(0, |s| s.lines().count())
    }

    /// A standby's child has no deadline; promoted, it answers to the lease's (armed before it
    /// hears of it), and the role signal reaches it.
    #[test]
    fn a_promoted_hot_child_answers_to_the_lease_deadline() {
        with_hot_process_thread(300, |sup| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let signals = start_hot_standby(sup, dir.path());
            sup.request(Request::RoleSignal);
            wait_until(|| role_signals(&signals) == 1, "the role signal");
            let t0 = Instant::now();
            sup.request(Request::Promote(deadline_in(400, 5_000)));
            assert!(matches!(next(sup), Event::Promoted));
            sup.request(Request::RoleSignal);
            wait_until(|| role_signals(&signals) == 2, "the role signal");
            // Promoted once only: it leads now.
            sup.request(Request::Promote(deadline_in(400, 5_000)));
            assert!(matches!(
                next(sup),
                Event::PromoteRefused(PromoteRefusal::NotStandby)
            ));
            assert_eq!(stopping(sup).0, StopReason::Deadline);
            assert!(
                t0.elapsed() >= Duration::from_millis(350),
                "{:?}",
                t0.elapsed()
            );
            let (status, reason) = finished(sup);
            assert_eq!(status, ChildStatus::Signaled(libc::SIGTERM));
            assert_eq!(reason, StopReason::Deadline);
            // No child left to promote.
            sup.request(Request::Promote(deadline_in(60_000, 60_000)));
            assert!(matches!(
                next(sup),
                Event::PromoteRefused(PromoteRefusal::NoChild)
            ));
        });
    }

    /// Once a demotion begins, acknowledged keepalives no longer move the deadline: a child that
    /// does not confirm is stopped at the deadline as it stood. A confirmed one is a standby
    /// again (it can be promoted again).
    #[test]
    fn a_demotion_freezes_the_deadline_until_the_child_confirms() {
        with_hot_process_thread(300, |sup| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let signals = start_hot_standby(sup, dir.path());
            sup.request(Request::Promote(deadline_in(60_000, 60_000)));
            assert!(matches!(next(sup), Event::Promoted));
            sup.request(Request::Extend(deadline_in(600, 5_000)));
            let t0 = Instant::now();
            sup.request(Request::Demote);
            sup.request(Request::RoleSignal);
            wait_until(|| role_signals(&signals) == 1, "the role signal");
            sup.request(Request::Extend(deadline_in(60_000, 60_000)));
            assert_eq!(stopping(sup).0, StopReason::Deadline);
            let took = t0.elapsed();
            assert!(took < Duration::from_secs(30), "{took:?}");
            assert_eq!(finished(sup).1, StopReason::Deadline);
        });
        with_hot_process_thread(300, |sup| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            start_hot_standby(sup, dir.path());
            sup.request(Request::Promote(deadline_in(60_000, 60_000)));
            assert!(matches!(next(sup), Event::Promoted));
            sup.request(Request::Demote);
            sup.request(Request::Disarm);
            sup.request(Request::Promote(deadline_in(60_000, 60_000)));
            assert!(matches!(next(sup), Event::Promoted));
            sup.request(Request::Stop(StopReason::Shutdown(libc::SIGTERM)));
            stopping(sup);
            assert_eq!(finished(sup).0, ChildStatus::Signaled(libc::SIGTERM));
        });
    }

    /// Ends its process thread when dropped, also when the test panicked, and before the lock on
    /// children is released (it is declared after it): a thread left running would reap the next
    /// test's children with its `waitpid(-1)`, failing that test too. A tree a failed test left
    /// behind is killed first, since the thread ends only once no tree is left.
    struct Ending(Option<ProcessThread>);

    impl Drop for Ending {
        fn drop(&mut self) {
            if let Some(sup) = self.0.take() {
                if std::thread::panicking() {
                    sup.request(Request::Stop(StopReason::LeaseGone));
                }
                sup.end();
            }
        }
    }

    /// Starts a child that ignores the stop signal (so only SIGKILL ends it), its trap set, under
    /// a distant deadline.
    fn start_deaf(sup: &mut ProcessThread) {
        start_ready(
            sup,
            "trap '' TERM; : > \"$READY\"; while :; do sleep 0.05; done",
            deadline_in(60_000, 60_000),
        );
    }

    #[test]
    fn an_unextended_lease_stops_then_kills_at_the_deadlines() {
        with_process_thread(10_000, |sup| {
            start_deaf(sup);
            let t0 = Instant::now();
            sup.request(Request::Extend(deadline_in(300, 900)));
            let (reason, kill_in) = stopping(sup);
            assert_eq!(reason, StopReason::Deadline);
            // kill_at is the lease's (600 ms later), not the 10 s grace.
            assert!(kill_in <= Duration::from_millis(650), "{kill_in:?}");
            let stopped = t0.elapsed();
            assert!(
                stopped >= Duration::from_millis(290),
                "stopped early: {stopped:?}"
            );
            let Event::Finished {
                status,
                reason,
                stop_took,
                after_kill,
            } = next(sup)
            else {
                panic!("expected Finished");
            };
            let killed_by = (ChildStatus::Signaled(libc::SIGKILL), StopReason::Deadline);
            assert_eq!((status, reason), killed_by);
            // The stop took from its stop signal to the tree's end: the 600 ms to SIGKILL.
            let took = stop_took.expect("a stop began");
            assert!(took >= Duration::from_millis(550), "{took:?}");
            assert!(took < Duration::from_secs(20), "{took:?}");
            // SIGKILL went out: its teardown is measured, and is part of the stop.
            let teardown = after_kill.expect("SIGKILL went out");
            assert!(teardown <= took, "{teardown:?} > {took:?}");
            let killed = t0.elapsed();
            assert!(
                killed >= Duration::from_millis(890),
                "killed early: {killed:?}"
            );
            assert!(killed < Duration::from_secs(20), "killed late: {killed:?}");
        });
    }

    #[test]
    fn extensions_keep_the_child_running() {
        with_process_thread(1_000, |sup| {
            // The child outlives its first deadline threefold, kept by an extension every 100 ms;
            // each extension leaves a second, so a loaded machine would have to stall the test
            // for that long to fail it.
            start(sup, "sleep 3; exit 7", deadline_in(1_000, 2_000));
            let event = loop {
                std::thread::sleep(Duration::from_millis(100));
                sup.request(Request::Extend(deadline_in(1_000, 2_000)));
                if let Ok(event) = sup.events.try_recv() {
                    break event;
                }
            };
            let ended = (ChildStatus::Exited(7), StopReason::ChildExited);
            match event {
                Event::Finished {
                    status,
                    reason,
                    stop_took,
                    after_kill,
                } => {
                    assert_eq!((status, reason), ended);
                    assert_eq!(stop_took, None, "no stop began: the child exited by itself");
                    assert_eq!(after_kill, None, "no SIGKILL went out");
                }
                other => panic!("expected Finished, got {other:?}"),
            }
        });
    }

    #[test]
    fn known_loss_of_leadership_kills_without_grace() {
        with_process_thread(30_000, |sup| {
            start_deaf(sup);
            let t0 = Instant::now();
            sup.request(Request::Stop(StopReason::KeyDeleted));
            assert_eq!(stopping(sup), (StopReason::KeyDeleted, Duration::ZERO));
            assert_eq!(finished(sup).0, ChildStatus::Signaled(libc::SIGKILL));
            assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
        });
    }

    /// The handle is dropped while the tree still runs: the thread ends once the tree does (it
    /// used to sleep for good when the tree ended after the handle's last wake-up).
    #[test]
    fn the_thread_ends_when_a_tree_outlives_its_handle() {
        let _serial = crate::test_children();
        let mut sup = supervisor(1_000, None);
        start(&mut sup, "sleep 0.3", deadline_in(60_000, 60_000));
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            sup.end();
            let _ = done.send(());
        });
        ended
            .recv_timeout(Duration::from_secs(20))
            .expect("the process thread did not end after its tree did");
    }

    /// EXTEND_TIMEOUT_USEC moves SIGKILL later only when the child sent it after the stop
    /// signal: one sent for its start-up, which reached the process thread after the stop began,
    /// does not stretch the grace to the lease's kill deadline.
    #[test]
    fn only_an_extension_sent_after_the_stop_signal_moves_sigkill() {
        with_process_thread(300, |sup| {
            start_deaf(sup);
            let before = BootInstant::now();
            std::thread::sleep(Duration::from_millis(5));
            let t0 = Instant::now();
            sup.request(Request::Stop(StopReason::Resign));
            assert_eq!(stopping(sup).0, StopReason::Resign);
            sup.request(Request::ExtendGrace {
                sent_at: before,
                until: BootInstant::now() + Duration::from_secs(30),
            });
            assert_eq!(finished(sup).0, ChildStatus::Signaled(libc::SIGKILL));
            let took = t0.elapsed();
            assert!(took < Duration::from_secs(10), "{took:?}");
        });
        with_process_thread(300, |sup| {
            start_deaf(sup);
            let t0 = Instant::now();
            sup.request(Request::Stop(StopReason::Resign));
            assert_eq!(stopping(sup).0, StopReason::Resign);
            let now = BootInstant::now();
            sup.request(Request::ExtendGrace {
                sent_at: now,
                until: now + Duration::from_millis(1_500),
            });
            assert_eq!(finished(sup).0, ChildStatus::Signaled(libc::SIGKILL));
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(1_400), "{took:?}");
        });
    }

    #[test]
    fn a_stop_already_under_way_escalates_on_known_loss() {
        with_process_thread(30_000, |sup| {
            start_deaf(sup);
            sup.request(Request::Stop(StopReason::Resign));
            assert_eq!(stopping(sup).0, StopReason::Resign);
            sup.request(Request::Stop(StopReason::LeaseGone));
            // The first reason is kept (it decides what follows); the kill is immediate.
            assert_eq!(stopping(sup), (StopReason::Resign, Duration::ZERO));
            let killed = (ChildStatus::Signaled(libc::SIGKILL), StopReason::Resign);
            assert_eq!(finished(sup), killed);
        });
    }

    #[test]
    fn a_stopped_child_is_continued_so_it_can_stop() {
        with_process_thread(30_000, |sup| {
            let pid = start_ready(
                sup,
                "trap 'exit 5' TERM; : > \"$READY\"; while :; do sleep 0.05; done",
                deadline_in(60_000, 60_000),
            );
            // Our own child.
            signals::send(pid, libc::SIGSTOP).unwrap();
            wait_until(|| tree::is_stopped(pid), "the child to stop");
            sup.request(Request::Stop(StopReason::Resign));
            stopping(sup);
            assert_eq!(finished(sup).0, ChildStatus::Exited(5));
        });
    }

    #[test]
    fn a_spawn_with_no_lease_time_left_is_refused_as_a_deadline() {
        with_process_thread(1_000, |sup| {
            let now = BootInstant::now();
            sup.request(Request::Spawn {
                command: sh("exit 0"),
                env: vec![],
                own_pid_variable: None,
                deadline: Some(LeaseDeadline {
                    stop_at: now - Duration::from_millis(1),
                    kill_at: now + Duration::from_millis(100),
                }),
            });
            assert!(matches!(
                next(sup),
                Event::SpawnRefused(StopReason::Deadline)
            ));
        });
    }

    /// Runs one check to its end, returning how it ended and its output.
    fn run_check(
        sup: &mut ProcessThread,
        id: u64,
        command: &str,
        timeout_ms: u64,
    ) -> (CheckExit, String) {
        sup.request(Request::Check {
            id,
            command: command.into(),
            env: vec![],
            timeout: Duration::from_millis(timeout_ms),
        });
        loop {
            if let Event::CheckEnded {
                id: got,
                exit,
                output,
            } = next(sup)
            {
                if got == id {
                    return (exit, output);
                }
            }
        }
    }

    /// The processes of group `pgid` that are not zombies.
    fn group_members(pgid: libc::pid_t) -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
                (f.get(2)? == &pgid.to_string() && f[0] != "Z")
                    .then(|| format!("{} {}", e.file_name().to_string_lossy(), f[0]))
            })
            .collect()
    }

    /// A check that leaves a process in its group is never left behind, even when it exits while
    /// the process thread is busy (its group is killed while its zombie pins the group id).
    #[test]
    fn what_a_check_leaves_in_its_group_is_killed_when_it_ends() {
        let leaked = with_process_thread(1_000, |sup| {
            start(sup, "sleep 600", deadline_in(600_000, 600_000));
            // Keep the process thread busy, as keepalive acknowledgements would.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (requests, wake) = (sup.requests.clone().expect("open"), sup.wake.clone());
            let busy = stop.clone();
            let churn = std::thread::spawn(move || {
                while !busy.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = requests.send(Request::Extend(deadline_in(600_000, 600_000)));
                    super::wake(&wake);
                    // Often, not flat out: a request flood would only starve the thread under test.
                    std::thread::sleep(Duration::from_micros(100));
                }
            });
            let mut leaked = Vec::new();
            for id in 0..200 {
                let (exit, output) = run_check(sup, id, "echo $$; sleep 30 & exit 0", 5_000);
                assert_eq!(exit, CheckExit::Exited(ChildStatus::Exited(0)));
                let pgid: libc::pid_t = output.trim().parse().expect("the check's pid");
                // SIGKILL is delivered asynchronously: give the group a moment to go.
                let deadline = Instant::now() + Duration::from_secs(2);
                while !group_members(pgid).is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let left = group_members(pgid);
                if !left.is_empty() {
                    leaked.push((pgid, left));
                    // Cleaning up after a failed check of ours.
                    let _ = signals::send_to_group(pgid, libc::SIGKILL);
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            churn.join().unwrap();
            sup.request(Request::Stop(StopReason::Resign));
            while !matches!(next(sup), Event::Finished { .. }) {}
            leaked
        });
        assert!(
            leaked.is_empty(),
            "checks left processes behind: {leaked:?}"
        );
    }

    #[test]
    fn a_check_that_hangs_is_killed_with_its_group_at_its_timeout_and_its_output_kept() {
        with_process_thread(1_000, |sup| {
            start(sup, "sleep 600", deadline_in(600_000, 600_000));
            let t = Instant::now();
            let (exit, output) = run_check(sup, 1, "echo $$; echo wedged >&2; sleep 600", 300);
            assert_eq!(exit, CheckExit::TimedOut);
            assert!(
                t.elapsed() >= Duration::from_millis(300),
                "{:?}",
                t.elapsed()
            );
            assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
            let mut lines = output.lines();
            let pgid: libc::pid_t = lines.next().unwrap().parse().unwrap();
            assert_eq!(
                lines.next(),
                Some("wedged"),
                "stderr is captured too: {output:?}"
            );
            // SIGKILL is delivered asynchronously: the group goes a moment after the result.
            wait_until(
                || group_members(pgid).is_empty(),
                "the timed-out check's group to go",
            );
            // A check that floods its output is drained, not blocked: it ends by itself.
            let (exit, output) = run_check(
                sup,
                2,
                "head -c 300000 /dev/zero | tr '\\0' x; echo; echo done",
                // Generous: a blocked check would run into it (and fail the test) however long
                // it is; a loaded machine must not.
                60_000,
            );
            assert_eq!(exit, CheckExit::Exited(ChildStatus::Exited(0)));
            assert_eq!(output.len(), crate::process::check::OUTPUT_KEPT);
            // A stop kills a running check at once: no result.
            sup.request(Request::Check {
                id: 3,
                command: "sleep 600".into(),
                env: vec![],
                timeout: Duration::from_secs(60),
            });
            sup.request(Request::Stop(StopReason::Resign));
            let mut check = None;
            loop {
                match next(sup) {
                    Event::CheckEnded { id: 3, exit, .. } => check = Some(exit),
                    Event::Finished { .. } => break,
                    _ => {}
                }
            }
            assert!(matches!(check, Some(CheckExit::NotRun(_))), "{check:?}");
            // No child: a check is not run.
            let (exit, _) = run_check(sup, 4, "true", 1_000);
            assert!(matches!(exit, CheckExit::NotRun(_)), "{exit:?}");
        });
    }

    #[test]
    fn an_exec_failure_is_reported_with_its_code() {
        with_process_thread(1_000, |sup| {
            sup.request(Request::Spawn {
                command: CommandSpec {
                    program: "/nonexistent/command".into(),
                    args: vec![],
                },
                env: vec![],
                own_pid_variable: None,
                deadline: Some(deadline_in(60_000, 60_000)),
            });
            match next(sup) {
                Event::SpawnFailed(e) => {
                    assert_eq!(e.exit_code(), crate::core::exit_code::NOT_FOUND)
                }
                other => panic!("expected SpawnFailed, got {other:?}"),
            }
        });
    }
}
