//! The process thread: the one owner of spawning, signalling and reaping.
//!
//! Everything about the child's processes happens on one plain OS thread that lives as long as the
//! supervisor: it forks the child (so `PR_SET_PDEATHSIG` stays armed), reads every signal from a
//! signalfd, reaps with `waitpid(-1, WNOHANG)` (so the main child's status is never stolen and a pid is
//! never signalled after it was reaped), and runs the stop sequence: stop signal to the whole tree,
//! SIGKILL at the kill deadline, reap until no process is left.
//!
//! It also enforces the lease deadline on its own. The async side sends the fail-closed deadlines
//! ([`LeaseDeadline`]) with the spawn request and every time a keepalive is acknowledged; if they are
//! not moved in time, this thread starts the stop sequence by itself, woken by a `CLOCK_BOOTTIME`
//! timerfd. So the safety of the lease does not depend on the async runtime being scheduled.
//!
//! Callers talk to it only through [`Request`]s and receive [`Event`]s.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::clock::BootInstant;
use crate::config::CommandSpec;
use crate::process_tree;
use crate::signals;
use crate::spawn::{self, SpawnError};

/// While killing, re-scan for processes that appeared (re-parented orphans, late forks) this often.
const KILL_RESCAN: Duration = Duration::from_millis(20);

/// How the main child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    Exited(i32),
    Signaled(i32),
}

impl ChildStatus {
    /// The status a shell would report: N, or 128+S.
    pub fn exit_code(self) -> i32 {
        match self {
            ChildStatus::Exited(code) => code,
            ChildStatus::Signaled(sig) => crate::exit_code::SIGNALED_BASE + sig,
        }
    }

    pub fn success(self) -> bool {
        self == ChildStatus::Exited(0)
    }
}

impl std::fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildStatus::Exited(code) => write!(f, "exited with status {code}"),
            ChildStatus::Signaled(sig) => write!(f, "killed by {}", signals::name(*sig)),
        }
    }
}

/// The fail-closed deadlines of the current lease (see [`crate::timing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseDeadline {
    /// Begin the stop sequence if not extended by then.
    pub stop_at: BootInstant,
    /// SIGKILL the tree by then, whatever happened.
    pub kill_at: BootInstant,
}

/// Why the stop sequence began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT reached the supervisor.
    Signal(libc::c_int),
    /// No keepalive was acknowledged in time: the fail-closed deadline fired in the process thread.
    LeaseDeadline,
    /// The main child exited; what is left of its tree is being stopped.
    ChildExited,
    /// The leadership loop asked (lease reported gone, leader key deleted, ...).
    Requested(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Signal(sig) => write!(f, "received {}", signals::name(*sig)),
            StopReason::LeaseDeadline => {
                f.write_str("lease renew deadline passed without an acknowledged keepalive")
            }
            StopReason::ChildExited => {
                f.write_str("the main child exited; stopping what is left of its tree")
            }
            StopReason::Requested(why) => f.write_str(why),
        }
    }
}

/// What the async side asks of the process thread.
#[derive(Debug)]
pub enum Request {
    /// Start the child. Refused if a tree is still running or `deadline.stop_at` has passed.
    Spawn {
        command: CommandSpec,
        env: Vec<(String, String)>,
        deadline: LeaseDeadline,
    },
    /// A keepalive was acknowledged: move the deadlines later.
    Extend(LeaseDeadline),
    /// Begin the stop sequence now.
    Stop { reason: StopReason },
}

/// What the process thread reports.
#[derive(Debug)]
pub enum Event {
    Started {
        pid: libc::pid_t,
    },
    SpawnFailed(SpawnError),
    /// SIGTERM or SIGINT reached the supervisor; the stop sequence has begun if a child runs.
    ShutdownSignal(libc::c_int),
    /// The `--resign-signal` reached the supervisor (it is not forwarded).
    ResignSignal,
    /// The stop sequence began.
    Stopping {
        reason: StopReason,
        kill_in: Duration,
    },
    /// The main child was reaped and no process of its tree is left. `stopped` is why the stop
    /// sequence began, if it did before the main child ended.
    Finished {
        status: ChildStatus,
        stopped: Option<StopReason>,
    },
}

/// The handle the async side holds.
pub struct Supervisor {
    requests: mpsc::Sender<Request>,
    wake: OwnedFd,
    pub events: UnboundedReceiver<Event>,
}

impl Supervisor {
    /// Starts the process thread. [`signals::block_all`] must have run first.
    pub fn start(
        stop_signal: libc::c_int,
        grace: Duration,
        resign_signal: Option<libc::c_int>,
    ) -> io::Result<Supervisor> {
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
        let me = std::process::id() as libc::pid_t;
        let owner = Owner {
            sigfd,
            wake: wake_thread,
            timer,
            requests: req_rx,
            events: ev_tx,
            stop_signal,
            grace,
            resign_signal,
            me,
            is_pid1: me == 1,
            tree: None,
        };
        std::thread::Builder::new()
            .name("process".into())
            .spawn(move || owner.run())?;
        Ok(Supervisor {
            requests: req_tx,
            wake,
            events: ev_rx,
        })
    }

    /// Sends a request; the process thread acts on it at once.
    pub fn request(&self, request: Request) {
        if self.requests.send(request).is_ok() {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to an eventfd we own.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
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

/// The child's tree while it exists.
struct Tree {
    /// The main child while it has not been reaped.
    main: Option<libc::pid_t>,
    /// Its process group (== its pid).
    pgid: libc::pid_t,
    /// Its status once reaped.
    status: Option<ChildStatus>,
    deadline: LeaseDeadline,
    stop: Option<StopPhase>,
}

struct StopPhase {
    kill_at: BootInstant,
    killed: bool,
    reason: StopReason,
}

struct Owner {
    sigfd: OwnedFd,
    wake: OwnedFd,
    timer: OwnedFd,
    requests: mpsc::Receiver<Request>,
    events: UnboundedSender<Event>,
    stop_signal: libc::c_int,
    grace: Duration,
    resign_signal: Option<libc::c_int>,
    me: libc::pid_t,
    is_pid1: bool,
    tree: Option<Tree>,
}

impl Owner {
    fn run(mut self) {
        loop {
            self.arm_timer();
            let mut fds = [
                self.sigfd.as_raw_fd(),
                self.wake.as_raw_fd(),
                self.timer.as_raw_fd(),
            ]
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: polling three valid fds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %io::Error::last_os_error(), "poll failed in the process thread");
                std::thread::sleep(Duration::from_millis(10));
            }
            drain(self.wake.as_raw_fd(), 8);
            drain(self.timer.as_raw_fd(), 8);
            self.read_signals();
            while let Ok(req) = self.requests.try_recv() {
                self.handle(req);
            }
            self.reap();
            self.enforce_deadlines();
        }
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
            let sig = unsafe { info.assume_init() }.ssi_signo as libc::c_int;
            match sig {
                libc::SIGCHLD => {} // reaped right after
                libc::SIGTERM | libc::SIGINT => {
                    tracing::info!(signal = %signals::name(sig), "shutdown requested");
                    self.begin_stop(StopReason::Signal(sig));
                    self.emit(Event::ShutdownSignal(sig));
                }
                _ if Some(sig) == self.resign_signal => {
                    tracing::info!(signal = %signals::name(sig), "step-down requested");
                    self.emit(Event::ResignSignal);
                }
                _ if signals::is_forwardable(sig) => {
                    if let Some(pid) = self.tree.as_ref().and_then(|t| t.main) {
                        tracing::debug!(signal = %signals::name(sig), pid, "forwarding signal");
                        // SAFETY: pid is our unreaped child, so it cannot have been reused.
                        unsafe { libc::kill(pid, sig) };
                    }
                }
                _ => {}
            }
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Spawn {
                command,
                env,
                deadline,
            } => {
                if self.tree.is_some() {
                    tracing::error!("spawn refused: the previous child's tree is still running");
                    return;
                }
                if deadline.stop_at.has_passed() {
                    let err = io::Error::other("the lease has less than grace + margin left");
                    self.emit(Event::SpawnFailed(SpawnError {
                        program: command.program,
                        source: err,
                    }));
                    return;
                }
                match spawn::spawn(&command, &env) {
                    Ok(pid) => {
                        self.tree = Some(Tree {
                            main: Some(pid),
                            pgid: pid,
                            status: None,
                            deadline,
                            stop: None,
                        });
                        self.emit(Event::Started { pid });
                    }
                    Err(e) => self.emit(Event::SpawnFailed(e)),
                }
            }
            Request::Extend(deadline) => {
                if let Some(tree) = &mut self.tree {
                    tree.deadline = deadline;
                }
            }
            Request::Stop { reason } => self.begin_stop(reason),
        }
    }

    /// Stop signal to every process of the tree now, SIGKILL at the earlier of grace and the lease's
    /// kill deadline.
    fn begin_stop(&mut self, reason: StopReason) {
        let grace = self.grace;
        let Some(tree) = &mut self.tree else { return };
        if tree.stop.is_some() {
            return;
        }
        let now = BootInstant::now();
        let kill_at = (now + grace).min(tree.deadline.kill_at);
        tree.stop = Some(StopPhase {
            kill_at,
            killed: false,
            reason: reason.clone(),
        });
        let mut pids = process_tree::descendants(self.me);
        if let Some(main) = tree.main {
            if !pids.contains(&main) {
                pids.push(main);
            }
        }
        tracing::info!(reason = %reason, processes = pids.len(), signal = %signals::name(self.stop_signal),
            kill_in_ms = kill_at.saturating_duration_since(now).as_millis() as u64, "stopping the child's tree");
        process_tree::signal_all(&pids, self.stop_signal);
        self.emit(Event::Stopping {
            reason,
            kill_in: kill_at.saturating_duration_since(now),
        });
    }

    fn kill_round(&mut self) {
        let Some(tree) = &self.tree else { return };
        if self.is_pid1 {
            // SAFETY: kill(-1) from PID 1 signals every other process of the namespace.
            unsafe { libc::kill(-1, libc::SIGKILL) };
        } else {
            if tree.main.is_some() {
                // SAFETY: the group leader is unreaped, so the group id cannot have been reused.
                unsafe { libc::killpg(tree.pgid, libc::SIGKILL) };
            }
            process_tree::signal_all(&process_tree::descendants(self.me), libc::SIGKILL);
        }
    }

    fn enforce_deadlines(&mut self) {
        let now = BootInstant::now();
        let Some(tree) = &mut self.tree else { return };
        match &mut tree.stop {
            None if now >= tree.deadline.stop_at => {
                let late = now.saturating_duration_since(tree.deadline.stop_at);
                tracing::warn!(late_ms = late.as_millis() as u64,
                    "lease renew deadline passed without an acknowledged keepalive: stopping the child");
                self.begin_stop(StopReason::LeaseDeadline);
            }
            Some(stop) if !stop.killed && now >= stop.kill_at => {
                stop.killed = true;
                tracing::warn!("grace period over: killing the child's tree");
                self.kill_round();
            }
            Some(stop) if stop.killed => self.kill_round(),
            _ => {}
        }
    }

    fn arm_timer(&self) {
        let at = self.tree.as_ref().map(|tree| match &tree.stop {
            None => Some(tree.deadline.stop_at),
            Some(stop) if !stop.killed => Some(stop.kill_at),
            Some(_) => Some(BootInstant::now() + KILL_RESCAN),
        });
        let at: Option<BootInstant> = at.flatten();
        let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        if let Some(at) = at {
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

    /// Reaps every child that has exited; notices when the tree is gone.
    fn reap(&mut self) {
        let any_left;
        loop {
            let mut status = 0;
            // SAFETY: waitpid on any child, non-blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                let how = if libc::WIFEXITED(status) {
                    ChildStatus::Exited(libc::WEXITSTATUS(status))
                } else if libc::WIFSIGNALED(status) {
                    ChildStatus::Signaled(libc::WTERMSIG(status))
                } else {
                    continue;
                };
                self.on_reaped(pid, how);
                continue;
            }
            any_left = pid == 0;
            break;
        }
        let tree_gone = self
            .tree
            .as_ref()
            .is_some_and(|t| t.status.is_some() && !any_left);
        if tree_gone {
            if let Some(tree) = self.tree.take() {
                if let Some(status) = tree.status {
                    tracing::info!(%status, "the child's tree is gone");
                    self.emit(Event::Finished {
                        status,
                        stopped: tree.stop.map(|s| s.reason),
                    });
                }
            }
        }
    }

    fn on_reaped(&mut self, pid: libc::pid_t, how: ChildStatus) {
        let Some(tree) = &mut self.tree else {
            tracing::debug!(pid, status = %how, "reaped an orphan");
            return;
        };
        if tree.main != Some(pid) {
            tracing::debug!(pid, status = %how, "reaped a process of the child's tree");
            return;
        }
        tree.main = None;
        tree.status = Some(how);
        tracing::info!(pid, status = %how, "the child ended");
        if tree.stop.is_none() && !process_tree::descendants(self.me).is_empty() {
            self.begin_stop(StopReason::ChildExited);
        }
    }
}

/// Reads and discards what is pending on a non-blocking counter fd.
fn drain(fd: RawFd, size: usize) {
    let mut buf = [0u8; 8];
    // SAFETY: reading at most 8 bytes into an 8-byte buffer.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), size.min(8)) };
}
