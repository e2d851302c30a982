//! The process thread: the one owner of spawning, signalling and reaping.
//!
//! Everything about the child's processes happens on one plain OS thread that lives as long as the
//! supervisor: it forks the child (so `PR_SET_PDEATHSIG` stays armed), reads every signal from a
//! signalfd, reaps with `waitpid(-1, WNOHANG)` (so the main child's status is never stolen and a pid is
//! never signalled after it was reaped), and runs the stop sequence: stop signal and SIGCONT to the
//! whole tree, SIGKILL at the kill deadline, reap until no process is left.
//!
//! It also enforces the lease deadline on its own. The async side sends the fail-closed deadlines
//! ([`LeaseDeadline`]) with the spawn request and every time a keepalive is acknowledged; if they are
//! not moved in time, this thread starts the stop sequence by itself, woken by a `CLOCK_BOOTTIME`
//! timerfd. So the safety of the lease does not depend on the async runtime being scheduled.
//!
//! The deadline path waits on nothing but the kernel: deadlines are checked first on every wake-up,
//! signals go out before anything is logged, and logging never blocks ([`crate::report::logging`]).
//!
//! Health-check commands ([`Request::Check`]) are forked here too, since this thread is the only
//! reaper: each in its own process group, with its timeout on the same timerfd, killed with its group
//! when it ends, times out or a stop begins. A check in flight is a child like any other, so the tree
//! is reported gone only once it is reaped as well; it is killed at once when the stop begins.
//!
//! Its duties, each a method of `Thread`: `enforce_deadlines`, `read_signals`,
//! `forward_sent_faults`, `handle` (requests), `reap`. Callers talk to it only through [`Request`]s
//! and receive [`Event`]s.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::core::clock::BootInstant;
use crate::core::command::CommandSpec;
use crate::core::exit_code::ChildStatus;
use crate::core::lifecycle::StopReason;
use crate::process::check::CheckSlot;
use crate::process::contract::{CheckExit, Event, LeaseDeadline, Request, Settings};
use crate::process::guard::Guard;
use crate::process::signals;
use crate::process::spawn::{self, SpawnError};
use crate::process::tree;

/// While killing, re-scan for processes that appeared (re-parented orphans, late forks) this often.
const KILL_RESCAN: Duration = Duration::from_millis(20);

/// The handle the async side holds.
pub struct ProcessThread {
    /// `None` only while dropping: the sender must be gone before the thread is woken to notice.
    requests: Option<mpsc::Sender<Request>>,
    wake: OwnedFd,
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
        sent_faults: Option<OwnedFd>,
        guard: Option<Guard>,
    ) -> io::Result<ProcessThread> {
        let inherited = signals::inherited().ok_or_else(|| {
            io::Error::other("signals::block_all must run before the supervisor starts")
        })?;
        // SAFETY: signalfd/eventfd/timerfd creation with valid arguments; each fd is owned at once.
        let (sigfd, wake, timer) = unsafe {
            let s = libc::signalfd(
                -1,
                &inherited.blocked,
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            );
            let w = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            let t =
                libc::timerfd_create(libc::CLOCK_BOOTTIME, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK);
            if s < 0 || w < 0 || t < 0 {
                return Err(io::Error::last_os_error());
            }
            (
                OwnedFd::from_raw_fd(s),
                OwnedFd::from_raw_fd(w),
                OwnedFd::from_raw_fd(t),
            )
        };
        let wake_thread = wake.try_clone()?;
        let (req_tx, req_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = unbounded_channel();
        let owner = Thread {
            sigfd,
            wake: wake_thread,
            timer,
            sent_faults,
            requests: req_rx,
            events: ev_tx,
            settings,
            sigint_ignored: inherited.was_ignored(libc::SIGINT),
            blocked: inherited.blocked,
            is_pid1: std::process::id() == 1,
            shutdown: None,
            tree: None,
            check: CheckSlot::default(),
            guard,
        };
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
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to an eventfd we own.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
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
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to an eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Makes this process a child subreaper when it is not PID 1, so orphans of the child's tree are
/// re-parented to us and can be reaped and waited for.
pub fn become_subreaper() -> io::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The main child: running (unreaped, so its pid and group id cannot be reused) or reaped.
#[derive(Debug)]
enum Main {
    /// `pidfd` becomes readable when it ends: a wake-up that does not depend on SIGCHLD reaching
    /// our signalfd (it always does in the binary; not in a test harness with other threads).
    Running {
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
    },
    Reaped(ChildStatus),
}

/// Where the stop sequence is.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// Not begun; the lease deadlines apply.
    NotBegun { lease: LeaseDeadline },
    /// Stop signal sent; SIGKILL at `kill_at`.
    Stopping {
        reason: StopReason,
        kill_at: BootInstant,
    },
    /// SIGKILL sent; repeated every [`KILL_RESCAN`] until nothing is left.
    Killing { reason: StopReason },
}

/// The child's tree while it exists.
struct Tree {
    /// The main child's process group (== its pid).
    pgid: libc::pid_t,
    main: Main,
    stop: Stop,
    /// Whether the terminal's foreground was handed to the child's group.
    terminal: bool,
}

impl Tree {
    fn main_pid(&self) -> Option<libc::pid_t> {
        match self.main {
            Main::Running { pid, .. } => Some(pid),
            Main::Reaped(_) => None,
        }
    }

    fn pidfd(&self) -> Option<RawFd> {
        match &self.main {
            Main::Running { pidfd, .. } => pidfd.as_ref().map(|f| f.as_raw_fd()),
            Main::Reaped(_) => None,
        }
    }

    /// When the process thread must wake up next for this tree.
    fn next_wake(&self) -> BootInstant {
        match self.stop {
            Stop::NotBegun { lease } => lease.stop_at,
            Stop::Stopping { kill_at, .. } => kill_at,
            Stop::Killing { .. } => BootInstant::now() + KILL_RESCAN,
        }
    }
}

struct Thread {
    sigfd: OwnedFd,
    wake: OwnedFd,
    timer: OwnedFd,
    sent_faults: Option<OwnedFd>,
    requests: mpsc::Receiver<Request>,
    events: UnboundedSender<Event>,
    settings: Settings,
    /// SIGINT was ignored when we started (`nohup`, a background job): it must not stop anything.
    sigint_ignored: bool,
    blocked: libc::sigset_t,
    is_pid1: bool,
    /// A shutdown signal arrived: no child is started again.
    shutdown: Option<libc::c_int>,
    tree: Option<Tree>,
    /// The health check in flight, if any; only while the child runs.
    check: CheckSlot,
    guard: Option<Guard>,
}

impl Thread {
    fn run(mut self) {
        // This thread reads the signalfd: it must block those signals itself, whatever the thread
        // that started it did.
        // SAFETY: setting this thread's mask to a valid set.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.blocked, std::ptr::null_mut()) };
        loop {
            self.arm_timer();
            self.poll();
            // Deadlines first: the fail-closed path never waits behind anything else.
            self.enforce_deadlines();
            self.check.enforce_timeout();
            self.read_signals();
            self.check.drain_output();
            self.forward_sent_faults();
            if !self.handle_requests() && self.tree.is_none() {
                return; // the handle is gone and nothing is left to look after
            }
            self.reap();
            self.enforce_deadlines();
        }
    }

    fn poll(&self) {
        let mut fds = [
            Some(self.sigfd.as_raw_fd()),
            Some(self.wake.as_raw_fd()),
            Some(self.timer.as_raw_fd()),
            self.sent_faults.as_ref().map(|f| f.as_raw_fd()),
            self.tree.as_ref().and_then(Tree::pidfd),
            self.check.output_fd(),
        ]
        .map(|fd| libc::pollfd {
            fd: fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: polling valid fds (a negative fd is ignored by poll).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            std::thread::sleep(Duration::from_millis(10));
        }
        drain(self.wake.as_raw_fd());
        drain(self.timer.as_raw_fd());
    }

    fn emit(&self, event: Event) {
        // The receiver only goes away when the runtime is shutting down; nothing to tell then.
        let _ = self.events.send(event);
    }

    fn read_signals(&mut self) {
        loop {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reading one siginfo record into a buffer of its size.
            let n = unsafe { libc::read(self.sigfd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            if n != size as isize {
                return;
            }
            // SAFETY: the kernel filled the whole record.
            let info = unsafe { info.assume_init() };
            let sig = info.ssi_signo as libc::c_int;
            // A signal the kernel raised at us for our own doing (SIGPIPE after a write to a closed
            // pipe carries our own pid) is nobody's request: never forward it.
            if info.ssi_pid == std::process::id() && sig != libc::SIGCHLD {
                tracing::debug!(signal = %crate::core::exit_code::signal_name(sig), "ignored a signal raised by our own action");
                continue;
            }
            self.on_signal(sig);
        }
    }

    fn on_signal(&mut self, sig: libc::c_int) {
        match sig {
            libc::SIGCHLD => {} // reaped right after
            libc::SIGINT if self.sigint_ignored => {
                tracing::debug!("SIGINT ignored: it was ignored when singleton-exec started");
            }
            libc::SIGTERM | libc::SIGINT => {
                self.shutdown = Some(sig);
                let reason = StopReason::Shutdown(sig);
                let already = self
                    .tree
                    .as_ref()
                    .is_some_and(|t| !matches!(t.stop, Stop::NotBegun { .. }));
                if already {
                    // A stop is under way for another reason: pass this one on as well.
                    self.forward(reason.stop_signal(self.settings.stop_signal));
                } else {
                    self.begin_stop(reason);
                }
                tracing::info!(signal = %crate::core::exit_code::signal_name(sig), "shutdown requested");
                self.emit(Event::ShutdownSignal(sig));
            }
            _ if Some(sig) == self.settings.resign_signal => {
                tracing::info!(signal = %crate::core::exit_code::signal_name(sig), "step-down requested");
                self.emit(Event::ResignSignal);
            }
            _ if signals::is_forwardable(sig) => self.forward(sig),
            _ => {}
        }
    }

    /// Signals that another process sent us and that faults could also raise (see [`signals`]).
    fn forward_sent_faults(&mut self) {
        let Some(fd) = self.sent_faults.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a buffer of its size from a non-blocking pipe we own.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
            for &sig in &buf[..n as usize] {
                self.forward(libc::c_int::from(sig));
            }
        }
    }

    /// Passes `sig` to the main child, if it runs.
    fn forward(&self, sig: libc::c_int) {
        if let Some(pid) = self.tree.as_ref().and_then(Tree::main_pid) {
            // SAFETY: pid is our unreaped child, so it cannot have been reused.
            unsafe { libc::kill(pid, sig) };
            tracing::debug!(signal = %crate::core::exit_code::signal_name(sig), pid, "forwarded signal");
        }
    }

    /// Handles every pending request; false once the handle is gone.
    fn handle_requests(&mut self) -> bool {
        loop {
            match self.requests.try_recv() {
                Ok(req) => self.handle(req),
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Spawn {
                command,
                env,
                deadline,
            } => self.spawn(&command, &env, deadline),
            Request::Extend(deadline) => {
                if let Some(Tree {
                    stop: Stop::NotBegun { lease },
                    ..
                }) = &mut self.tree
                {
                    *lease = deadline;
                }
            }
            Request::Stop(reason) => self.begin_stop(reason),
            Request::Check {
                id,
                command,
                env,
                timeout,
            } => self.start_check(id, &command, &env, timeout),
        }
    }

    /// Forks a health check, only while the main child runs and no stop has begun.
    fn start_check(&mut self, id: u64, command: &str, env: &[(String, String)], timeout: Duration) {
        let running = matches!(
            &self.tree,
            Some(Tree {
                main: Main::Running { .. },
                stop: Stop::NotBegun { .. },
                ..
            })
        );
        let result = match () {
            _ if self.check.is_running() => {
                Err(CheckExit::NotRun("a check is still running".into()))
            }
            _ if !running || self.shutdown.is_some() => {
                Err(CheckExit::NotRun("the child is not running".into()))
            }
            _ => self.check.start(id, command, env, timeout),
        };
        match result {
            Ok(()) => self.tell_guard(),
            Err(exit) => self.emit(Event::CheckEnded {
                id,
                exit,
                output: String::new(),
            }),
        }
    }

    fn spawn(&mut self, command: &CommandSpec, env: &[(String, String)], lease: LeaseDeadline) {
        if let Some(sig) = self.shutdown {
            self.emit(Event::SpawnRefused(StopReason::Shutdown(sig)));
            return;
        }
        if self.tree.is_some() {
            tracing::error!("spawn refused: the previous child's tree is still running");
            self.emit(Event::SpawnFailed(SpawnError {
                program: command.program.clone(),
                source: io::Error::other("the previous child's tree is still running"),
            }));
            return;
        }
        if lease.stop_at.has_passed() {
            self.emit(Event::SpawnRefused(StopReason::Deadline));
            return;
        }
        let terminal = spawn::owns_terminal_foreground();
        tracing::trace!("forking the child");
        match spawn::spawn(command, env, terminal) {
            Ok(pid) => {
                tracing::trace!(pid, "the child runs");
                self.tree = Some(Tree {
                    pgid: pid,
                    main: Main::Running {
                        pid,
                        pidfd: pidfd_open(pid),
                    },
                    stop: Stop::NotBegun { lease },
                    terminal,
                });
                self.tell_guard();
                self.emit(Event::Started { pid });
            }
            Err(e) => {
                if terminal {
                    spawn::take_back_terminal();
                }
                self.emit(Event::SpawnFailed(e));
            }
        }
    }

    /// Begins the stop sequence: stop signal and SIGCONT to every process of the tree now, SIGKILL
    /// at the earlier of grace and the lease's kill deadline. When leadership is known to be lost
    /// (another replica may already lead), SIGKILL at once. Signals first, log afterwards.
    fn begin_stop(&mut self, reason: StopReason) {
        self.check.cancel();
        let now = BootInstant::now();
        let grace = self.settings.grace;
        let Some(tree) = &mut self.tree else { return };
        let (first, kill_at) = match tree.stop {
            Stop::NotBegun { lease } => (reason, (now + grace).min(lease.kill_at)),
            // Already stopping: only a known loss of leadership changes anything (kill now).
            Stop::Stopping { reason: first, .. } if reason.leadership_known_lost() => (first, now),
            Stop::Stopping { .. } | Stop::Killing { .. } => return,
        };
        if reason.leadership_known_lost() || kill_at <= now {
            tree.stop = Stop::Killing { reason: first };
            self.kill_round();
            tracing::warn!(reason = %reason, "killing the child's tree at once");
            self.emit(Event::Stopping {
                reason: first,
                kill_in: Duration::ZERO,
            });
            return;
        }
        tree.stop = Stop::Stopping {
            reason: first,
            kill_at,
        };
        let sig = reason.stop_signal(self.settings.stop_signal);
        // The child's group first, with one call and no /proc scan; then whatever left the group.
        let pgid = tree.pgid;
        let group_alive = tree.main_pid().is_some();
        if group_alive {
            // SAFETY: the group leader is unreaped, so the group id cannot have been reused.
            unsafe { libc::killpg(pgid, sig) };
        }
        let pids = tree::descendants();
        // Each process gets the stop signal once (a second one makes some programs quit hard).
        // When /proc cannot tell a process' group, the group signal is taken to have reached it;
        // SIGKILL at the deadline reaches every descendant anyway.
        let outside: Vec<libc::pid_t> = pids
            .iter()
            .copied()
            .filter(|&p| !group_alive || tree::group_of(p).is_some_and(|g| g != pgid))
            .collect();
        tree::signal_all(&outside, sig);
        // A stopped process (SIGSTOP, Ctrl-Z) would never run its handler: wake it, as systemd
        // does; only the stopped ones, so a running child does not see a SIGCONT it never asked for.
        let stopped: Vec<libc::pid_t> = pids
            .iter()
            .copied()
            .filter(|&p| tree::is_stopped(p))
            .collect();
        tree::signal_all(&stopped, libc::SIGCONT);
        let kill_in = kill_at.saturating_duration_since(now);
        tracing::info!(reason = %reason, processes = pids.len(), signal = %crate::core::exit_code::signal_name(sig),
            kill_in_ms = kill_in.as_millis() as u64, "stopping the child's tree");
        self.emit(Event::Stopping { reason, kill_in });
    }

    fn kill_round(&mut self) {
        let Some(tree) = &self.tree else { return };
        if self.is_pid1 {
            // SAFETY: kill(-1) from PID 1 signals every other process of the namespace.
            unsafe { libc::kill(-1, libc::SIGKILL) };
        } else {
            if tree.main_pid().is_some() {
                // SAFETY: the group leader is unreaped, so the group id cannot have been reused.
                unsafe { libc::killpg(tree.pgid, libc::SIGKILL) };
            }
            tree::signal_all(&tree::descendants(), libc::SIGKILL);
        }
    }

    fn enforce_deadlines(&mut self) {
        let now = BootInstant::now();
        let Some(tree) = &mut self.tree else { return };
        match tree.stop {
            Stop::NotBegun { lease } if now >= lease.stop_at => {
                self.begin_stop(StopReason::Deadline);
                tracing::warn!(
                    late_ms = now.saturating_duration_since(lease.stop_at).as_millis() as u64,
                    "lease renew deadline passed without an acknowledged keepalive"
                );
            }
            Stop::Stopping { reason, kill_at } if now >= kill_at => {
                tree.stop = Stop::Killing { reason };
                self.kill_round();
                tracing::warn!("grace period over: killed the child's tree");
            }
            Stop::Killing { .. } => self.kill_round(),
            _ => {}
        }
    }

    fn arm_timer(&self) {
        let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        let check = self.check.next_wake();
        let tree = self.tree.as_ref().map(Tree::next_wake);
        let next = match (tree, check) {
            (Some(t), Some(c)) => Some(t.min(c)),
            (t, c) => t.or(c),
        };
        if let Some(at) = next {
            let nanos = at.as_nanos();
            // An all-zero it_value disarms the timer, so an instant at 0 is nudged forward.
            spec.it_value.tv_sec = (nanos / 1_000_000_000) as _;
            spec.it_value.tv_nsec = ((nanos % 1_000_000_000) as libc::c_long).max(1);
        }
        // SAFETY: setting an absolute CLOCK_BOOTTIME timer on our timerfd.
        unsafe {
            libc::timerfd_settime(
                self.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
    }

    /// Reaps every child that has ended; notices when the tree is gone.
    fn reap(&mut self) {
        let any_left = loop {
            let pid = match peek_waitable() {
                Waitable::Exited(pid) => {
                    // Still a zombie: a check's group id is still its own, so kill the group now.
                    self.check.exited(pid);
                    pid
                }
                Waitable::Stopped(pid) => pid,
                Waitable::NoneYet => break true,
                Waitable::NoChildren => {
                    self.no_children_left();
                    break false;
                }
                Waitable::Error => break false,
            };
            let mut status = 0;
            // SAFETY: waitpid on a child that is waitable now, non-blocking; stops reported too.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) } != pid {
                break true; // reaped by someone else meanwhile: look again on the next wake-up
            }
            if libc::WIFSTOPPED(status) {
                self.on_stopped(pid, libc::WSTOPSIG(status));
            } else if let Some(how) = ChildStatus::from_wait(status) {
                self.on_reaped(pid, how);
            }
        };
        let Some(tree) = &self.tree else { return };
        let main_reaped = matches!(tree.main, Main::Reaped(_));
        if main_reaped && any_left {
            // The main child ended and left processes behind (waitpid says so, /proc or not):
            // they get the stop sequence.
            if matches!(tree.stop, Stop::NotBegun { .. }) {
                self.begin_stop(StopReason::ChildExited);
            }
            return;
        }
        if !main_reaped {
            return;
        }
        let Some(tree) = self.tree.take() else { return };
        self.tell_guard();
        if tree.terminal {
            spawn::take_back_terminal();
        }
        let Main::Reaped(status) = tree.main else {
            return;
        };
        let reason = match tree.stop {
            Stop::NotBegun { .. } => StopReason::ChildExited,
            Stop::Stopping { reason, .. } | Stop::Killing { reason } => reason,
        };
        self.emit(Event::Finished { status, reason });
        tracing::info!(%status, "the child's tree is gone");
    }

    /// The main child was stopped. Ctrl-Z does not suspend a singleton: a suspended leader would
    /// hold leadership while doing nothing, and suspending ourselves would let the lease expire
    /// while the child lives on. So a terminal stop (SIGTSTP) is undone at once; an explicit
    /// SIGSTOP is respected until the stop sequence, which sends SIGCONT.
    fn on_stopped(&mut self, pid: libc::pid_t, sig: libc::c_int) {
        let Some(tree) = &self.tree else { return };
        if tree.main_pid() != Some(pid) {
            return;
        }
        match sig {
            libc::SIGTSTP => {
                // SAFETY: the group leader is unreaped, so the group id cannot have been reused.
                unsafe { libc::killpg(tree.pgid, libc::SIGCONT) };
                tracing::warn!(
                    "the child was stopped by SIGTSTP (Ctrl-Z): continued; a singleton is not \
                     suspended, stop it with Ctrl-C or SIGTERM"
                );
            }
            libc::SIGTTIN | libc::SIGTTOU => {
                tracing::warn!(signal = %crate::core::exit_code::signal_name(sig),
                "the child was stopped for using the terminal from the background")
            }
            _ => {
                tracing::info!(signal = %crate::core::exit_code::signal_name(sig), pid, "the child was stopped")
            }
        }
    }

    /// Tells the guard which process groups to kill if we die (the child's, a check's); forgets a
    /// guard that is gone.
    fn tell_guard(&mut self) {
        let groups: Vec<libc::pid_t> = self
            .tree
            .as_ref()
            .map(|t| t.pgid)
            .into_iter()
            .chain(self.check.group())
            .collect();
        if let Some(guard) = &mut self.guard {
            if let Err(e) = guard.watch(&groups) {
                tracing::warn!(error = %e, "the guard is gone: the child's tree may outlive a SIGKILL of singleton-exec");
                self.guard = None;
            }
        }
    }

    /// `waitpid` says we have no children while the main child was never reaped: someone else
    /// reaped it (SIGCHLD ignored by the kernel's rules). Its status is lost; never wait forever.
    fn no_children_left(&mut self) {
        let Some(tree) = &mut self.tree else { return };
        if let Main::Running { pid, .. } = tree.main {
            tracing::error!(
                pid,
                "the child was reaped by someone else: its status is lost"
            );
            tree.main = Main::Reaped(ChildStatus::Exited(crate::core::exit_code::INTERNAL));
        }
    }

    fn on_reaped(&mut self, pid: libc::pid_t, how: ChildStatus) {
        if let Some(ended) = self.check.reaped(pid, how) {
            self.tell_guard();
            self.emit(Event::CheckEnded {
                id: ended.id,
                exit: ended.exit,
                output: ended.output,
            });
            return;
        }
        let Some(tree) = &mut self.tree else {
            tracing::debug!(pid, status = %how, "reaped an orphan");
            return;
        };
        if tree.main_pid() != Some(pid) {
            tracing::debug!(pid, status = %how, "reaped a process of the child's tree");
            return;
        }
        tree.main = Main::Reaped(how);
        // With the terminal handed over, Ctrl-C, Ctrl-\ and a hang-up reach the child, not us: as
        // in a shell, the child's death by one of them is the user's request to stop.
        let from_terminal = matches!(
            how,
            ChildStatus::Signaled(libc::SIGINT | libc::SIGQUIT | libc::SIGHUP)
        );
        let we_stopped_it = !matches!(tree.stop, Stop::NotBegun { .. });
        if tree.terminal && from_terminal && !we_stopped_it && self.shutdown.is_none() {
            let ChildStatus::Signaled(sig) = how else {
                return;
            };
            self.shutdown = Some(sig);
            tracing::info!(signal = %crate::core::exit_code::signal_name(sig), "the child died of a terminal signal: shutting down");
            self.emit(Event::ShutdownSignal(sig));
        }
        tracing::info!(pid, status = %how, "the child ended");
    }
}

/// What `waitid(WNOWAIT)` says about our children, without reaping any.
enum Waitable {
    Exited(libc::pid_t),
    Stopped(libc::pid_t),
    /// Children exist, none has changed state.
    NoneYet,
    NoChildren,
    Error,
}

/// Peeks at the next child that can be reaped (or reports a stop), leaving it unreaped, so a
/// check's group can be killed while its leader's zombie still pins the group id.
fn peek_waitable() -> Waitable {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on any child, non-blocking, without reaping (WNOWAIT).
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r < 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ECHILD) => Waitable::NoChildren,
            _ => Waitable::Error,
        };
    }
    // SAFETY: after a successful waitid, si_pid is set (0 when no child changed state).
    let pid = unsafe { info.si_pid() };
    match pid {
        0 => Waitable::NoneYet,
        _ if info.si_code == libc::CLD_STOPPED || info.si_code == libc::CLD_TRAPPED => {
            Waitable::Stopped(pid)
        }
        _ => Waitable::Exited(pid),
    }
}

/// A pidfd for our child, if the kernel has them (5.3+).
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags; the fd is owned at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a fresh fd.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads and discards what is pending on a non-blocking counter fd.
fn drain(fd: RawFd) {
    let mut buf = [0u8; 8];
    // SAFETY: reading at most 8 bytes into an 8-byte buffer.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 8) };
}

#[cfg(test)]
mod tests {
    //! The process thread on its own, no etcd: real children, real signals, real deadlines.
    use super::*;
    use std::ffi::OsString;
    use std::time::Instant;

    fn supervisor(grace_ms: u64) -> ProcessThread {
        signals::block_all();
        ProcessThread::start(
            Settings {
                stop_signal: libc::SIGTERM,
                grace: Duration::from_millis(grace_ms),
                resign_signal: None,
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
        sup.request(Request::Spawn {
            command: sh(script),
            env: vec![],
            deadline,
        });
        match next(sup) {
            Event::Started { pid } => pid,
            other => panic!("expected Started, got {other:?}"),
        }
    }

    #[test]
    fn an_unextended_lease_stops_then_kills_at_the_deadlines() {
        let _serial = crate::test_children();
        let mut sup = supervisor(10_000);
        let t0 = Instant::now();
        // The child ignores the stop signal, so only SIGKILL at kill_at ends it.
        start(
            &mut sup,
            "trap '' TERM; while :; do sleep 0.05; done",
            deadline_in(300, 900),
        );
        match next(&mut sup) {
            Event::Stopping { reason, kill_in } => {
                assert_eq!(reason, StopReason::Deadline);
                // kill_at is the lease's (600 ms later), not the 10 s grace.
                assert!(kill_in <= Duration::from_millis(650), "{kill_in:?}");
            }
            other => panic!("expected Stopping, got {other:?}"),
        }
        let stopped = t0.elapsed();
        assert!(
            stopped >= Duration::from_millis(290),
            "stopped early: {stopped:?}"
        );
        match next(&mut sup) {
            Event::Finished { status, reason } => {
                assert_eq!(status, ChildStatus::Signaled(libc::SIGKILL));
                assert_eq!(reason, StopReason::Deadline);
            }
            other => panic!("expected Finished, got {other:?}"),
        }
        let killed = t0.elapsed();
        assert!(
            killed >= Duration::from_millis(890),
            "killed early: {killed:?}"
        );
        assert!(killed < Duration::from_secs(5), "killed late: {killed:?}");
        sup.end();
    }

    #[test]
    fn extensions_keep_the_child_running() {
        let _serial = crate::test_children();
        let mut sup = supervisor(1_000);
        start(&mut sup, "sleep 0.6; exit 7", deadline_in(200, 400));
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(100));
            sup.request(Request::Extend(deadline_in(200, 400)));
        }
        match next(&mut sup) {
            Event::Finished { status, reason } => {
                assert_eq!(status, ChildStatus::Exited(7));
                assert_eq!(reason, StopReason::ChildExited);
            }
            other => panic!("expected Finished, got {other:?}"),
        }
        sup.end();
    }

    #[test]
    fn known_loss_of_leadership_kills_without_grace() {
        let _serial = crate::test_children();
        let mut sup = supervisor(30_000);
        let t0 = Instant::now();
        start(
            &mut sup,
            "trap '' TERM; sleep 30",
            deadline_in(60_000, 60_000),
        );
        sup.request(Request::Stop(StopReason::KeyDeleted));
        match next(&mut sup) {
            Event::Stopping { reason, kill_in } => {
                assert_eq!(reason, StopReason::KeyDeleted);
                assert_eq!(kill_in, Duration::ZERO);
            }
            other => panic!("expected Stopping, got {other:?}"),
        }
        match next(&mut sup) {
            Event::Finished { status, .. } => {
                assert_eq!(status, ChildStatus::Signaled(libc::SIGKILL))
            }
            other => panic!("expected Finished, got {other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        sup.end();
    }

    #[test]
    fn a_stop_already_under_way_escalates_on_known_loss() {
        let _serial = crate::test_children();
        let mut sup = supervisor(30_000);
        start(
            &mut sup,
            "trap '' TERM; sleep 30",
            deadline_in(60_000, 60_000),
        );
        sup.request(Request::Stop(StopReason::Resign));
        assert!(matches!(
            next(&mut sup),
            Event::Stopping {
                reason: StopReason::Resign,
                ..
            }
        ));
        sup.request(Request::Stop(StopReason::LeaseGone));
        // The first reason is kept (it decides what follows); the kill is immediate.
        assert!(matches!(
            next(&mut sup),
            Event::Stopping {
                reason: StopReason::Resign,
                kill_in: Duration::ZERO
            }
        ));
        match next(&mut sup) {
            Event::Finished { status, reason } => {
                assert_eq!(status, ChildStatus::Signaled(libc::SIGKILL));
                assert_eq!(reason, StopReason::Resign);
            }
            other => panic!("expected Finished, got {other:?}"),
        }
        sup.end();
    }

    #[test]
    fn a_stopped_child_is_continued_so_it_can_stop() {
        let _serial = crate::test_children();
        let mut sup = supervisor(30_000);
        let pid = start(
            &mut sup,
            "trap 'exit 5' TERM; while :; do sleep 0.05; done",
            deadline_in(60_000, 60_000),
        );
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(100));
        sup.request(Request::Stop(StopReason::Resign));
        assert!(matches!(next(&mut sup), Event::Stopping { .. }));
        match next(&mut sup) {
            Event::Finished { status, .. } => assert_eq!(status, ChildStatus::Exited(5)),
            other => panic!("expected Finished, got {other:?}"),
        }
        sup.end();
    }

    #[test]
    fn a_spawn_with_no_lease_time_left_is_refused_as_a_deadline() {
        let _serial = crate::test_children();
        let mut sup = supervisor(1_000);
        let now = BootInstant::now();
        sup.request(Request::Spawn {
            command: sh("exit 0"),
            env: vec![],
            deadline: LeaseDeadline {
                stop_at: now - Duration::from_millis(1),
                kill_at: now + Duration::from_millis(100),
            },
        });
        assert!(matches!(
            next(&mut sup),
            Event::SpawnRefused(StopReason::Deadline)
        ));
        sup.end();
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
        let _serial = crate::test_children();
        let mut sup = supervisor(1_000);
        start(&mut sup, "sleep 600", deadline_in(600_000, 600_000));
        // Keep the process thread busy, as keepalive acknowledgements would.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (requests, wake) = (
            sup.requests.clone().expect("open"),
            sup.wake.try_clone().unwrap(),
        );
        let busy = stop.clone();
        let churn = std::thread::spawn(move || {
            while !busy.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = requests.send(Request::Extend(deadline_in(600_000, 600_000)));
                let one: u64 = 1;
                // SAFETY: writing 8 bytes to an eventfd we own.
                unsafe { libc::write(wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
                // Often, not flat out: a request flood would only starve the thread under test.
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let mut leaked = Vec::new();
        for id in 0..200 {
            let (exit, output) = run_check(&mut sup, id, "echo $$; sleep 30 & exit 0", 5_000);
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
                // SAFETY: cleaning up after a failed check of ours.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        sup.request(Request::Stop(StopReason::Resign));
        while !matches!(next(&mut sup), Event::Finished { .. }) {}
        sup.end();
        assert!(
            leaked.is_empty(),
            "checks left processes behind: {leaked:?}"
        );
    }

    #[test]
    fn a_check_that_hangs_is_killed_with_its_group_at_its_timeout_and_its_output_kept() {
        let _serial = crate::test_children();
        let mut sup = supervisor(1_000);
        start(&mut sup, "sleep 600", deadline_in(600_000, 600_000));
        let t = Instant::now();
        let (exit, output) = run_check(&mut sup, 1, "echo $$; echo wedged >&2; sleep 600", 300);
        assert_eq!(exit, CheckExit::TimedOut);
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let mut lines = output.lines();
        let pgid: libc::pid_t = lines.next().unwrap().parse().unwrap();
        assert_eq!(
            lines.next(),
            Some("wedged"),
            "stderr is captured too: {output:?}"
        );
        assert!(group_members(pgid).is_empty());
        // A check that floods its output is drained, not blocked: it ends by itself.
        let (exit, output) = run_check(
            &mut sup,
            2,
            "head -c 300000 /dev/zero | tr '\\0' x; echo; echo done",
            5_000,
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
            match next(&mut sup) {
                Event::CheckEnded { id: 3, exit, .. } => check = Some(exit),
                Event::Finished { .. } => break,
                _ => {}
            }
        }
        assert!(matches!(check, Some(CheckExit::NotRun(_))), "{check:?}");
        // No child: a check is not run.
        let (exit, _) = run_check(&mut sup, 4, "true", 1_000);
        assert!(matches!(exit, CheckExit::NotRun(_)), "{exit:?}");
        sup.end();
    }

    #[test]
    fn an_exec_failure_is_reported_with_its_code() {
        let _serial = crate::test_children();
        let mut sup = supervisor(1_000);
        sup.request(Request::Spawn {
            command: CommandSpec {
                program: "/nonexistent/command".into(),
                args: vec![],
            },
            env: vec![],
            deadline: deadline_in(60_000, 60_000),
        });
        match next(&mut sup) {
            Event::SpawnFailed(e) => assert_eq!(e.exit_code(), crate::core::exit_code::NOT_FOUND),
            other => panic!("expected SpawnFailed, got {other:?}"),
        }
        sup.end();
    }
}
