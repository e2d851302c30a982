//! The process thread: the one owner of spawning, signalling and reaping.
//!
//! Everything about the child's processes happens on one plain OS thread that lives as long as the
//! supervisor: it starts the child (so `PR_SET_PDEATHSIG` stays armed), reads every signal from a
//! signalfd, reaps with `waitpid(-1, WNOHANG)` (so the main child's status is never stolen and a pid is
//! never signalled after it was reaped), and runs the stop sequence ([`crate::process::stop`]): stop
//! signal to the child's group, then to the rest of the tree with SIGCONT to stopped processes,
//! SIGKILL at the kill deadline, reap until no process is left.
//!
//! It also enforces the lease deadline on its own. The async side sends the fail-closed deadlines
//! ([`LeaseDeadline`]) with the spawn request and every time a keepalive is acknowledged; if they are
//! not moved in time, this thread starts the stop sequence by itself, woken by a `CLOCK_BOOTTIME`
//! timerfd. So the safety of the lease does not depend on the async runtime being scheduled.
//!
//! The deadline path waits on nothing but the kernel: deadlines are checked first on every wake-up,
//! and again after the reap; signals go out before anything is logged, and logging never blocks
//! ([`crate::report::logging`]). Nobody outside can hold it off: a wake-up reads at most
//! [`SIGNALS_PER_WAKE`] signals (and one read of sent faults), so a flood of signals only makes
//! the loop go round more often, and no signal costs more than a few system calls (whether job
//! control applies is read from `/proc` at most once per [`JOB_CONTROL_FRESH`]).
//!
//! Health-check commands ([`Request::Check`]) are started here too, since this thread is the only
//! reaper: each in its own process group, with its timeout on the same timerfd, killed with its group
//! when it ends, times out or a stop begins. A check in flight is a child like any other, so the tree
//! is reported gone only once it is reaped as well; it is killed at once when the stop begins.
//!
//! Job control (Ctrl-Z) is detected here and carried out in two halves. When the main child is
//! stopped by SIGTSTP, or SIGTSTP reaches us, and a job-control shell could continue us (a
//! controlling terminal, and a parent that could continue our process group, see
//! [`tree::under_job_control`]; not PID 1; SIGTSTP not ignored at start),
//! [`Event::SuspendRequested`] goes out (once per suspension) and the child stays stopped. The
//! async side stops the tree the usual way, gives the lease up, and only then asks for
//! [`Request::Suspend`]. This thread refuses it while any tree exists (a suspended replica never
//! has a child or a lease), once a shutdown signal came (it must end the replica, which a
//! stopped one cannot), and when SIGCONT came after the Ctrl-Z (the job was continued before it
//! stopped: stopping now would wait for a SIGCONT already spent); refused, it answers
//! [`Event::Resumed`] at once. Without job control nobody could continue a stopped replica, so
//! SIGTSTP keeps its old meaning: forwarded, and a child it stopped continued at once.
//!
//! Its duties, each a method of [`ProcessOwner`]: `enforce_deadlines`, `read_signals`,
//! `forward_sent_faults`, `handle` (requests), `reap`. The async side holds the other end,
//! [`crate::process::handle::ProcessThread`]: it sends [`Request`]s and receives [`Event`]s.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::sync::mpsc::UnboundedSender;

use crate::core::clock::BootInstant;
use crate::core::command::CommandSpec;
use crate::core::duration::Short;
use crate::core::exit_code::{signal_name, ChildStatus};
use crate::core::lifecycle::StopReason;
use crate::process::check::CheckSlot;
use crate::process::contract::{
    CheckExit, Event, LeaseDeadline, PromoteRefusal, Request, Settings,
};
use crate::process::guard::Guard;
use crate::process::signals::{self, Inherited};
use crate::process::spawn::{self, Reaped, SpawnError, Waitable};
use crate::process::stop::{AfterReap, Begin, Due, Main, Stop, Tree};
use crate::process::tree;

/// The thread's ends of its channels to the handle.
pub struct Channels {
    pub requests: mpsc::Receiver<Request>,
    pub events: UnboundedSender<Event>,
    /// Written by the handle after every request, and when it is dropped.
    pub wake: Arc<EventFd>,
}

/// The process thread's state: the one owner of the child's processes (and of a check's).
pub struct ProcessOwner {
    sigfd: SignalFd,
    timer: TimerFd,
    sent_faults: Option<OwnedFd>,
    channels: Channels,
    settings: Settings,
    routing: SignalRouting,
    blocked: SigSet,
    is_pid1: bool,
    /// A shutdown signal arrived: no child is started again.
    shutdown: Option<libc::c_int>,
    /// Where a Ctrl-Z stands on this side.
    suspension: Suspension,
    /// The last answer to whether job control applies, and when it was read.
    job_control_seen: Option<(bool, BootInstant)>,
    tree: Option<Tree>,
    /// The health check in flight, if any; only while the child runs.
    check: CheckSlot,
    guard: Option<Guard>,
}

impl ProcessOwner {
    /// The state of a process thread that reads the signals `inherited.blocked` from a signalfd.
    /// `sent_faults` is the pipe from [`signals::forward_sent_faults`], if installed; `guard` is
    /// told every child's process group ([`crate::process::guard`]).
    pub fn new(
        channels: Channels,
        settings: Settings,
        inherited: &Inherited,
        sent_faults: Option<OwnedFd>,
        guard: Option<Guard>,
    ) -> io::Result<ProcessOwner> {
        let sigfd = SignalFd::with_flags(
            &inherited.blocked,
            SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK,
        )?;
        let timer = TimerFd::new(
            ClockId::CLOCK_BOOTTIME,
            TimerFlags::TFD_CLOEXEC | TimerFlags::TFD_NONBLOCK,
        )?;
        Ok(ProcessOwner {
            sigfd,
            timer,
            sent_faults,
            channels,
            routing: SignalRouting {
                me: std::process::id(),
                sigint_ignored: inherited.was_ignored(libc::SIGINT),
                tstp_ignored: inherited.was_ignored(libc::SIGTSTP),
                resign_signal: settings.resign_signal,
            },
            settings,
            blocked: inherited.blocked,
            is_pid1: std::process::id() == 1,
            shutdown: None,
            suspension: Suspension::Idle,
            job_control_seen: None,
            tree: None,
            check: CheckSlot::default(),
            guard,
        })
    }

    /// The thread's body: until the handle is gone and no tree is left.
    pub fn run(mut self) {
        // This thread reads the signalfd: it must block those signals itself, whatever the thread
        // that started it did.
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.blocked), None);
        loop {
            self.arm_timer();
            self.poll();
            // Deadlines first: the fail-closed path never waits behind anything else.
            self.enforce_deadlines();
            self.check.enforce_timeout();
            self.read_signals();
            self.check.drain_output();
            self.forward_sent_faults();
            let handle_open = self.handle_requests();
            self.reap();
            self.enforce_deadlines();
            // After the reap: a tree that ended on this wake-up, after the handle had gone, would
            // otherwise leave the thread asleep for good (nothing else is left to wake it).
            if !handle_open && self.tree.is_none() {
                return; // the handle is gone and nothing is left to look after
            }
        }
    }

    /// Sleeps until a signal, a request, a deadline, the main child's end or a check's output.
    fn poll(&self) {
        let wake = self.channels.wake.as_fd();
        let optional = [
            self.sent_faults.as_ref().map(|f| f.as_fd()),
            self.tree.as_ref().and_then(Tree::pidfd),
            self.check.output_fd(),
            self.check.pidfd(),
        ];
        // An absent descriptor is stood in for by `wake`, which is polled anyway (poll(2) takes
        // the same descriptor twice): the set stays on the stack, nothing is allocated here.
        let [sent, pidfd, output, check] = optional.map(|fd| fd.unwrap_or(wake));
        let mut fds = [
            self.sigfd.as_fd(),
            wake,
            self.timer.as_fd(),
            sent,
            pidfd,
            output,
            check,
        ]
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN));
        if let Err(e) = nix::poll::poll(&mut fds, PollTimeout::NONE) {
            if e != Errno::EINTR {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        drain(&*self.channels.wake);
        drain(&self.timer);
    }

    fn arm_timer(&self) {
        let tree = self.tree.as_ref().and_then(Tree::next_wake);
        let next = tree.into_iter().chain(self.check.next_wake()).min();
        // A timer that cannot be set is noticed nowhere else; the next wake-up re-arms it.
        let _ = match next {
            Some(at) => self.timer.set(
                Expiration::OneShot(timer_value(at)),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            ),
            None => self.timer.unset(),
        };
    }

    fn emit(&self, event: Event) {
        // The receiver only goes away when the runtime is shutting down; nothing to tell then.
        let _ = self.channels.events.send(event);
    }

    fn enforce_deadlines(&mut self) {
        let now = BootInstant::now();
        let Some(tree) = &mut self.tree else { return };
        match tree.stop.due(now) {
            Some(Due::BeginStop { late }) if tree.demoting => {
                // Not a lost keepalive: the deadline was frozen for a demotion the child did not
                // confirm in time. Signals first, then the line.
                self.begin_stop(StopReason::Deadline, None);
                tracing::warn!(late = %Short(late),
                    "the child did not confirm its demotion (ROLE=standby) before the deadline frozen for it: stopping the child's tree");
            }
            Some(Due::BeginStop { late }) => self.begin_stop(StopReason::Deadline, Some(late)),
            Some(Due::Sweep { reason }) => {
                tree.stop = tree.stop.swept();
                let sig = reason.stop_signal(self.settings.stop_signal);
                let processes = self.sweep(sig, true);
                tracing::debug!(processes, signal = %signal_name(sig), "swept the child's tree");
            }
            Some(Due::Kill { reason }) => {
                tree.stop = Stop::Killing { reason };
                self.kill_round();
                tracing::warn!("grace period over: killed the child's tree");
            }
            Some(Due::KillAgain) => self.kill_round(),
            None => {}
        }
    }

    /// Reads and acts on at most [`SIGNALS_PER_WAKE`] signals; the rest wait for the next turn of
    /// the loop, after the deadlines were checked again.
    fn read_signals(&mut self) {
        for _ in 0..SIGNALS_PER_WAKE {
            let Ok(Some(info)) = self.sigfd.read_signal() else {
                return;
            };
            let sig = info.ssi_signo as libc::c_int;
            match self.routing.route(sig, info.ssi_pid) {
                SignalRoute::Reap => {} // reaped right after
                SignalRoute::OwnDoing => {
                    tracing::debug!(signal = %signal_name(sig), "ignored a signal raised by our own action");
                }
                SignalRoute::IgnoredInterrupt => {
                    tracing::debug!("SIGINT ignored: it was ignored when singleton-exec started");
                }
                SignalRoute::Shutdown => self.shutdown_requested(sig),
                SignalRoute::Resign => {
                    tracing::info!(signal = %signal_name(sig), "step-down requested");
                    self.emit(Event::ResignSignal);
                }
                SignalRoute::TerminalStop if self.job_control() => self.suspend_requested(false),
                SignalRoute::Continue => {
                    self.continued();
                    self.forward(sig);
                }
                SignalRoute::TerminalStop | SignalRoute::Forward => self.forward(sig),
                SignalRoute::Drop => {}
            }
        }
    }

    /// Whether a stop of this process could be undone by a job-control shell, so Ctrl-Z may
    /// suspend the replica (see the module doc). Once a suspension is asked for, yes until it is
    /// carried out; otherwise the answer read from `/proc` is kept for [`JOB_CONTROL_FRESH`], so
    /// a flood of SIGTSTP costs no more than any other signal.
    fn job_control(&mut self) -> bool {
        if self.is_pid1 || self.routing.tstp_ignored {
            return false;
        }
        if self.suspension != Suspension::Idle {
            return true;
        }
        let now = BootInstant::now();
        match self.job_control_seen {
            Some((answer, at)) if now.saturating_duration_since(at) < JOB_CONTROL_FRESH => answer,
            _ => {
                let answer = tree::under_job_control();
                self.job_control_seen = Some((answer, now));
                answer
            }
        }
    }

    /// Ctrl-Z under job control: the async side stops the tree, gives the lease up and asks for
    /// [`Request::Suspend`]. `group`: the suspension stops our whole process group. Asked for
    /// once: later ones until the suspension is carried out add nothing (but `group`).
    fn suspend_requested(&mut self, group: bool) {
        self.suspension = match self.suspension {
            Suspension::Idle => {
                tracing::info!(
                    "suspend requested (Ctrl-Z): the child's tree, if any, is stopped and the \
                     lease given up before singleton-exec stops"
                );
                self.emit(Event::SuspendRequested);
                Suspension::Asked { group }
            }
            Suspension::Asked { group: before } => Suspension::Asked {
                group: before || group,
            },
            Suspension::Continued => {
                tracing::info!("suspend requested again (Ctrl-Z) before singleton-exec stopped");
                Suspension::Asked { group }
            }
        };
    }

    /// SIGCONT: a suspension asked for and not carried out yet is called off (the job was
    /// continued before it stopped).
    fn continued(&mut self) {
        if let Suspension::Asked { .. } = self.suspension {
            tracing::info!(
                "continued (SIGCONT) before stopping: the child's tree is stopped and the lease \
                 given up as asked, then campaigning again"
            );
            self.suspension = Suspension::Continued;
        }
    }

    /// Suspends this process until it is continued, unless [`suspend_refusal`] says why not;
    /// reports [`Event::Resumed`] either way.
    fn suspend(&mut self) {
        // Signals sent since the last read count too: a SIGCONT, a SIGTERM just sent.
        self.read_signals();
        let asked = std::mem::replace(&mut self.suspension, Suspension::Idle);
        let group = matches!(asked, Suspension::Asked { group: true });
        // Asked for a grace period ago: look again, uncached (no tree and no lease now, so the
        // look delays nothing), whether anyone could still continue us (the shell may have died and
        // left us to an init that never will).
        let refused = suspend_refusal(
            self.tree.is_some(),
            self.shutdown,
            asked == Suspension::Continued,
        )
        .or_else(|| (!tree::under_job_control()).then_some(SuspendRefusal::NoJobControl));
        match refused {
            Some(SuspendRefusal::TreeLeft) => {
                tracing::error!("suspend refused: the child's tree is still running");
            }
            Some(SuspendRefusal::Shutdown(sig)) => {
                tracing::info!(signal = %signal_name(sig), "not suspending: a shutdown was asked for");
            }
            Some(SuspendRefusal::Continued) => {
                tracing::info!("not suspending: continued (SIGCONT) already");
            }
            Some(SuspendRefusal::NoJobControl) => {
                tracing::warn!("not suspending: no shell could continue us any more (no terminal, or our parent is gone); campaigning again");
            }
            None => signals::suspend_self(group),
        }
        self.emit(Event::Resumed);
    }

    /// SIGTERM or SIGINT: the stop sequence begins (or, under way for another reason, the child
    /// gets this signal too), and no child is started again.
    fn shutdown_requested(&mut self, sig: libc::c_int) {
        let first = self.shutdown.is_none();
        self.shutdown = Some(sig);
        let reason = StopReason::Shutdown(sig);
        let hot = self.settings.role_signal.is_some();
        match on_shutdown(self.tree.as_ref().map(|t| t.stop), hot, first) {
            OnShutdown::Forward => self.forward(reason.stop_signal(self.settings.stop_signal)),
            OnShutdown::BeginStop => self.begin_stop(reason, None),
            OnShutdown::Demote => {
                // The async side demotes the child (it is told `standby` and confirms), gives the
                // lease up, then stops the standby child. Meanwhile the deadline no longer moves:
                // a demotion that does not end in time ends at the deadline, as any lease would.
                if let Some(tree) = &mut self.tree {
                    tree.demoting = true;
                }
                tracing::info!(signal = %signal_name(sig),
                    "shutdown requested while the child leads: demoting it first (--hot-standby)");
            }
        }
        tracing::info!(signal = %signal_name(sig), "shutdown requested");
        self.emit(Event::ShutdownSignal(sig));
    }

    /// Signals that another process sent us and that faults could also raise (see [`signals`]).
    fn forward_sent_faults(&mut self) {
        let Some(pipe) = self.sent_faults.as_ref().map(|f| f.as_fd()) else {
            return;
        };
        // One read per wake-up, as for the signalfd: the rest waits for the next turn.
        let mut buf = [0u8; SIGNALS_PER_WAKE];
        if let Ok(n @ 1..) = nix::unistd::read(pipe, &mut buf) {
            for &sig in &buf[..n] {
                self.forward(libc::c_int::from(sig));
            }
        }
    }

    /// Passes `sig` to the main child, if it runs.
    fn forward(&self, sig: libc::c_int) {
        if let Some(pid) = self.tree.as_ref().and_then(Tree::main_pid) {
            // The pid is our unreaped child, so it cannot have been reused.
            let _ = signals::send(pid, sig);
            tracing::debug!(signal = %signal_name(sig), pid, "forwarded signal");
        }
    }

    /// Handles every pending request; false once the handle is gone.
    fn handle_requests(&mut self) -> bool {
        loop {
            match self.channels.requests.try_recv() {
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
                own_pid_variable,
                deadline,
            } => self.spawn(&command, &env, own_pid_variable, deadline),
            Request::ExtendGrace { sent_at, until } => self.extend_grace(sent_at, until),
            Request::Extend(deadline) => {
                // Not while a demotion is under way: it must be over by the deadline as it stood.
                if let Some(Tree {
                    stop: Stop::NotBegun { lease },
                    demoting: false,
                    ..
                }) = &mut self.tree
                {
                    *lease = deadline;
                }
            }
            Request::Promote(deadline) => self.promote(deadline),
            Request::RoleSignal => self.role_signal(),
            Request::Demote => {
                if let Some(tree) = &mut self.tree {
                    tree.demoting = tree.stop.leads();
                }
            }
            Request::Disarm => {
                if let Some(tree) = &mut self.tree {
                    if let Some(disarmed) = tree.stop.disarm() {
                        tree.stop = disarmed;
                        tree.demoting = false;
                        tracing::debug!("the child no longer leads: the lease deadline is off");
                    }
                }
            }
            Request::Stop(reason) => self.begin_stop(reason, None),
            Request::Check {
                id,
                command,
                env,
                timeout,
            } => self.start_check(id, &command, &env, timeout),
            Request::Suspend => self.suspend(),
        }
    }

    /// Starts a health check, only while the main child runs and no stop has begun.
    fn start_check(&mut self, id: u64, command: &str, env: &[(String, String)], timeout: Duration) {
        let child_running = matches!(
            &self.tree,
            Some(Tree {
                main: Main::Running { .. },
                stop: Stop::NotBegun { .. },
                ..
            })
        );
        let child_available = child_running && self.shutdown.is_none();
        let refused = check_refusal(self.check.is_running(), child_available);
        let result = match refused {
            Some(why) => Err(CheckExit::NotRun(why.into())),
            None => {
                // The check tells the guard its group itself before it execs, the tree's kept.
                let others: Vec<libc::pid_t> =
                    self.tree.as_ref().map(|t| t.pgid).into_iter().collect();
                let note = self.guard.as_ref().map(|g| g.child_note(&others));
                self.check.start(id, command, env, timeout, note.as_ref())
            }
        };
        // The start time follows; after a failed start, the line the check may have sent names
        // a group that is gone.
        self.tell_guard();
        match result {
            Ok(()) => {}
            Err(exit) => self.emit(Event::CheckEnded {
                id,
                exit,
                output: String::new(),
            }),
        }
    }

    /// The child asked for more time to finish: SIGKILL moves later, at most to the lease's kill
    /// deadline of when the stop began ([`Stop::extend_grace`]).
    /// One sent before the stop signal (`sent_at`) was meant for the child's start-up and came
    /// late (the listener coalesces): it changes nothing.
    fn extend_grace(&mut self, sent_at: BootInstant, until: BootInstant) {
        let Some(tree) = &mut self.tree else { return };
        if tree.stop_began.is_none_or(|began| sent_at < began) {
            return;
        }
        let Some(extended) = tree.stop.extend_grace(until) else {
            return;
        };
        tree.stop = extended;
        if let Stop::Stopping { kill_at, .. } = extended {
            let now = BootInstant::now();
            let asked = until.saturating_duration_since(now).as_millis() as u64;
            let kill_in = kill_at.saturating_duration_since(now).as_millis() as u64;
            if kill_at < until {
                tracing::info!(asked_ms = asked, kill_in_ms = kill_in,
                    "the child asked for more time to stop (EXTEND_TIMEOUT_USEC) than the lease allows: SIGKILL at the lease's kill deadline");
            } else {
                tracing::info!(
                    kill_in_ms = kill_in,
                    "the child asked for more time to stop (EXTEND_TIMEOUT_USEC)"
                );
            }
        }
    }

    /// A hot standby's child is to lead: the deadline is armed here, before the async side
    /// tells the child (role file, then [`Request::RoleSignal`]), so it never leads without one.
    fn promote(&mut self, lease: LeaseDeadline) {
        let stage = self.tree.as_ref().map(|t| (t.stop, t.main_pid().is_some()));
        let promoted = match promote_refusal(stage, self.shutdown, lease.stop_at.has_passed()) {
            Some(why) => return self.emit(Event::PromoteRefused(why)),
            None => stage.and_then(|(s, _)| s.promote(lease)),
        };
        if let (Some(tree), Some(stop)) = (&mut self.tree, promoted) {
            tree.stop = stop;
            tree.demoting = false;
            self.emit(Event::Promoted);
        }
    }

    /// Tells the main child its role file changed, unless it is being stopped.
    fn role_signal(&self) {
        let (Some(sig), Some(tree)) = (self.settings.role_signal, &self.tree) else {
            return;
        };
        if let (Some(pid), false) = (tree.main_pid(), tree.stop.has_begun()) {
            // The pid is our unreaped child, so it cannot have been reused.
            let _ = signals::send(pid, sig);
            tracing::debug!(signal = %signal_name(sig), pid, "role signal sent");
        }
    }

    fn spawn(
        &mut self,
        command: &CommandSpec,
        env: &[(String, String)],
        own_pid_variable: Option<&'static str>,
        lease: Option<LeaseDeadline>,
    ) {
        let refused = spawn_refusal(
            self.shutdown,
            self.tree.is_some(),
            lease.is_some_and(|l| l.stop_at.has_passed()),
        );
        match refused {
            Some(SpawnRefusal::Shutdown(sig)) => {
                return self.emit(Event::SpawnRefused(StopReason::Shutdown(sig)));
            }
            Some(SpawnRefusal::TreeLeft) => {
                tracing::error!("spawn refused: the previous child's tree is still running");
                return self.emit(Event::SpawnFailed(SpawnError {
                    program: command.program.clone(),
                    source: io::Error::other("the previous child's tree is still running"),
                }));
            }
            Some(SpawnRefusal::NoLeaseTime) => {
                return self.emit(Event::SpawnRefused(StopReason::Deadline));
            }
            None => {}
        }
        let terminal = spawn::owns_terminal_foreground();
        tracing::trace!("starting the child");
        // The child tells the guard its group itself before it execs (the check's kept); the
        // start time follows from here once it runs.
        let others: Vec<libc::pid_t> = self.check.group().into_iter().collect();
        let note = self.guard.as_ref().map(|g| g.child_note(&others));
        let spawned = spawn::spawn(command, env, own_pid_variable, terminal, note.as_ref());
        drop(note);
        match spawned {
            Ok(pid) => {
                tracing::trace!(pid, "the child runs");
                self.tree = Some(Tree::started(pid, spawn::pidfd(pid), lease, terminal));
                self.tell_guard();
                self.emit(Event::Started { pid });
            }
            Err(e) => {
                if terminal {
                    spawn::take_back_terminal();
                }
                // The line the child may have sent names a group that is gone.
                self.tell_guard();
                self.emit(Event::SpawnFailed(e));
            }
        }
    }

    /// Begins the stop sequence: stop signal to the child's process group now, to the rest of the
    /// tree (and SIGCONT to its stopped processes) [`crate::process::stop::SWEEP_AFTER`] later,
    /// SIGKILL at the earlier of grace and the lease's kill deadline. When leadership is known to
    /// be lost (another replica may already lead), SIGKILL to every process at once. Signals
    /// first, log afterwards: one line, a warning when leadership is lost or at risk. `late`: how
    /// long after the renew deadline this stop for it begins (the deadline's own stop).
    fn begin_stop(&mut self, reason: StopReason, late: Option<Duration>) {
        self.check.cancel();
        let now = BootInstant::now();
        let grace = self.settings.grace;
        let Some(tree) = &mut self.tree else { return };
        let late = late.map(|d| tracing::field::display(Short(d)));
        match tree.stop.begin(reason, now, grace) {
            None => {}
            Some(Begin::KillNow { first }) => {
                tree.stop = Stop::Killing { reason: first };
                tree.stop_began.get_or_insert(now);
                self.kill_round();
                tracing::warn!(%reason, late, "killing the child's tree at once");
                self.emit(Event::Stopping {
                    reason: first,
                    kill_in: Duration::ZERO,
                });
            }
            Some(Begin::Signal { kill_at, cap }) => {
                tree.stop_began.get_or_insert(now);
                let sig = reason.stop_signal(self.settings.stop_signal);
                // The child's group at once, with one call and no /proc scan; the rest of the
                // tree a moment later (see `stop`), unless the tree is gone by then. Without a
                // main child there is no group to signal: every process at once.
                let group = tree.main_pid().is_some();
                tree.stop = Stop::stopping(reason, kill_at, cap, now, group);
                let pgid = tree.pgid;
                let processes = if group {
                    // The group leader is unreaped, so the group id cannot have been reused.
                    let _ = signals::send_to_group(pgid, sig);
                    None
                } else {
                    Some(self.sweep(sig, false))
                };
                let kill_in = kill_at.saturating_duration_since(now);
                let (signal, kill) = (signal_name(sig), Short(kill_in));
                if late.is_some() {
                    tracing::warn!(late, %signal, kill_in = %kill, processes,
                        "renew deadline passed without an acknowledged keepalive: stopping the child's tree");
                } else if reason.is_lease_loss() {
                    tracing::warn!(%reason, %signal, kill_in = %kill, processes, "stopping the child's tree");
                } else {
                    tracing::info!(%reason, %signal, kill_in = %kill, processes, "stopping the child's tree");
                }
                self.emit(Event::Stopping { reason, kill_in });
            }
        }
    }

    /// Sends `sig` to every process of the tree that has not had it, and SIGCONT to the stopped
    /// ones. `group_signalled`: the child's process group had it already (its members are left
    /// out). Returns how many processes the tree has. Reads every process in `/proc`.
    fn sweep(&self, sig: libc::c_int, group_signalled: bool) -> usize {
        let Some(tree) = &self.tree else { return 0 };
        let pgid = tree.pgid;
        let pids = tree::descendants();
        // Each process gets the stop signal once (a second one makes some programs quit hard).
        // When /proc cannot tell a process' group, the group signal is taken to have reached it;
        // SIGKILL at the deadline reaches every descendant anyway.
        let outside: Vec<libc::pid_t> = pids
            .iter()
            .copied()
            .filter(|&p| !group_signalled || tree::group_of(p).is_some_and(|g| g != pgid))
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
        pids.len()
    }

    fn kill_round(&mut self) {
        let Some(tree) = &mut self.tree else { return };
        tree.killed_at.get_or_insert_with(BootInstant::now);
        if self.is_pid1 {
            // From PID 1, kill(-1) signals every other process of the namespace.
            let _ = signals::send(-1, libc::SIGKILL);
        } else {
            if tree.main_pid().is_some() {
                // The group leader is unreaped, so the group id cannot have been reused.
                let _ = signals::send_to_group(tree.pgid, libc::SIGKILL);
            }
            tree::signal_all(&tree::descendants(), libc::SIGKILL);
        }
    }

    /// Reaps every child that has ended; notices when the tree is gone.
    fn reap(&mut self) {
        let any_left = self.reap_all();
        let Some(tree) = &self.tree else { return };
        match tree.after_reap(any_left) {
            AfterReap::Wait => {}
            AfterReap::StopLeftovers => self.begin_stop(StopReason::ChildExited, None),
            AfterReap::Gone => self.tree_gone(),
        }
    }

    /// Reaps (and reports stops of) every child that has changed state; whether any is left.
    fn reap_all(&mut self) -> bool {
        loop {
            let pid = match spawn::peek_waitable() {
                Waitable::Exited(pid) => {
                    // Still a zombie: a check's group id is still its own, so kill the group now.
                    self.check.exited(pid);
                    pid
                }
                Waitable::Stopped(pid) => pid,
                Waitable::NoneYet => return true,
                Waitable::NoChildren => {
                    self.no_children_left();
                    return false;
                }
                Waitable::Error => return false,
            };
            match spawn::reap(pid) {
                Some(Reaped::Stopped(sig)) => self.on_stopped(pid, sig),
                Some(Reaped::Ended(how)) => self.on_reaped(pid, how),
                Some(Reaped::Continued) => {}
                // Reaped by someone else meanwhile: look again on the next wake-up.
                None => return true,
            }
        }
    }

    /// The main child is reaped and nothing is left: report how it ended.
    fn tree_gone(&mut self) {
        let Some(tree) = self.tree.take() else { return };
        self.tell_guard();
        if tree.terminal {
            spawn::take_back_terminal();
        }
        let Main::Reaped(status) = tree.main else {
            return;
        };
        let reason = tree.stop.outcome();
        let now = BootInstant::now();
        let stop_took = tree
            .stop_began
            .map(|began| now.saturating_duration_since(began));
        let after_kill = tree
            .killed_at
            .map(|killed| now.saturating_duration_since(killed));
        self.emit(Event::Finished {
            status,
            reason,
            stop_took,
            after_kill,
        });
        let teardown = after_kill.map(|d| tracing::field::display(Short(d)));
        tracing::info!(%status, teardown, "the child's tree is gone");
    }

    /// The main child was stopped. A stopped child still holds what it holds, so it is never
    /// left stopped under a lease for long: under job control, Ctrl-Z (SIGTSTP) suspends the
    /// whole replica (the stop sequence continues the child to end it, the lease is given up,
    /// then we stop); without job control nobody could continue us, so the child is continued
    /// at once. An explicit SIGSTOP is respected until the stop sequence, which sends SIGCONT.
    fn on_stopped(&mut self, pid: libc::pid_t, sig: libc::c_int) {
        let Some(tree) = &self.tree else { return };
        if tree.main_pid() != Some(pid) {
            return;
        }
        match sig {
            libc::SIGTSTP => {
                let (pgid, terminal, begun) = (tree.pgid, tree.terminal, tree.stop.has_begun());
                let act = after_terminal_stop(self.job_control(), begun);
                if act.continue_child {
                    // The group leader is unreaped, so the group id cannot have been reused.
                    let _ = signals::send_to_group(pgid, libc::SIGCONT);
                }
                if act.suspend {
                    self.suspend_requested(terminal);
                } else {
                    tracing::warn!(
                        "the child was stopped by SIGTSTP: continued (without job control a \
                         singleton is not suspended; stop it with Ctrl-C or SIGTERM)"
                    );
                }
            }
            libc::SIGTTIN | libc::SIGTTOU => {
                tracing::warn!(signal = %signal_name(sig),
                "the child was stopped for using the terminal from the background")
            }
            _ => {
                tracing::info!(signal = %signal_name(sig), pid, "the child was stopped")
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
        let stopping_for = tree.stop.has_begun().then(|| tree.stop.outcome());
        let asked = stop_asked_from_terminal(
            how,
            tree.terminal,
            stopping_for,
            self.settings.stop_signal,
            self.shutdown.is_some(),
        );
        if let Some(sig) = asked {
            self.shutdown = Some(sig);
            tracing::info!(signal = %signal_name(sig), "the child died of a terminal signal: shutting down");
            self.emit(Event::ShutdownSignal(sig));
        }
        // At debug: the line that counts is the tree's end (`tree_gone`), usually at once.
        tracing::debug!(pid, status = %how, "the child ended");
    }
}

/// Reads and discards what is pending on a non-blocking counter (an eventfd, a timerfd).
fn drain(counter: impl AsFd) {
    let _ = nix::unistd::read(counter, &mut [0u8; 8]);
}

/// The timerfd value that expires at `at` (absolute, on `CLOCK_BOOTTIME`). An all-zero value
/// disarms a timerfd, so the nanoseconds are at least 1.
fn timer_value(at: BootInstant) -> TimeSpec {
    let nanos = at.as_nanos();
    TimeSpec::new(
        // `as _`, not `as libc::time_t`: the libc crate deprecates that alias on musl (the images'
        // static build); the seconds field is a `time_t` either way.
        (nanos / 1_000_000_000) as _,
        ((nanos % 1_000_000_000) as libc::c_long).max(1),
    )
}

/// The most signals one wake-up reads. The deadlines are checked between two such batches, so no
/// flood of signals, however fast, holds them off; the rest stay pending for the next turn.
pub const SIGNALS_PER_WAKE: usize = 64;

/// How long an answer to "would a job-control shell continue us" is reused. Reading it walks
/// `/proc` (milliseconds on a busy host); SIGTSTP can come by the thousand. An answer this old is
/// still right, or wrong harmlessly: a stale yes starts a suspension (the tree stopped, the lease
/// given up), and the look made again, uncached, just before the replica stops itself refuses it
/// when nobody could continue us any more (the replica then campaigns again); a stale no keeps the
/// old behaviour (forward).
pub const JOB_CONTROL_FRESH: Duration = Duration::from_secs(1);

/// Where a Ctrl-Z stands on the process thread's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suspension {
    /// None asked for, or the last one was carried out (or refused).
    Idle,
    /// [`Event::SuspendRequested`] went out; [`Request::Suspend`] will follow once the tree is gone
    /// and the lease given up. `group`: the stop must take our whole process group (the
    /// terminal's Ctrl-Z reached only the child's group, which had the terminal).
    Asked { group: bool },
    /// Asked, then SIGCONT came before this process stopped: the job was continued already, so
    /// it does not stop (nothing would continue it again).
    Continued,
}

/// Why [`Request::Suspend`] is answered without stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SuspendRefusal {
    /// A tree is still running: a suspended replica must have none.
    TreeLeft,
    /// A shutdown signal came: the replica is to exit, which a stopped one cannot.
    Shutdown(libc::c_int),
    /// SIGCONT came after the Ctrl-Z.
    Continued,
    /// Job control is gone since the Ctrl-Z (no terminal, or nobody left who could continue us).
    NoJobControl,
}

/// Whether a suspension is refused, and why: a tree left is an error whatever else holds, and a
/// shutdown wins over a SIGCONT.
fn suspend_refusal(
    tree_left: bool,
    shutdown: Option<libc::c_int>,
    continued: bool,
) -> Option<SuspendRefusal> {
    match (tree_left, shutdown, continued) {
        (true, _, _) => Some(SuspendRefusal::TreeLeft),
        (false, Some(sig), _) => Some(SuspendRefusal::Shutdown(sig)),
        (false, None, true) => Some(SuspendRefusal::Continued),
        (false, None, false) => None,
    }
}

/// What the process thread does with a signal it read from its signalfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignalRoute {
    /// SIGCHLD: the reap that follows every wake-up looks after it.
    Reap,
    /// Raised at us for our own doing (SIGPIPE after a write to a closed pipe carries our own
    /// pid): nobody's request, never forwarded.
    OwnDoing,
    /// SIGINT, which was ignored when we started (`nohup`, a background job): it stops nothing.
    IgnoredInterrupt,
    /// SIGTERM or SIGINT: shut down.
    Shutdown,
    /// The `--resign-signal`: step down; not forwarded.
    Resign,
    /// SIGTSTP: suspend the replica under job control, else forward it.
    TerminalStop,
    /// SIGCONT: forwarded; it also calls off a suspension asked for and not carried out yet.
    Continue,
    /// Everything else the child may be sent: pass it on.
    Forward,
    /// Not forwardable (arrives through [`signals::forward_sent_faults`] if at all).
    Drop,
}

/// What decides a signal's route, fixed when the thread starts.
#[derive(Debug, Clone, Copy)]
struct SignalRouting {
    /// Our pid: a signal from it was raised by our own action.
    me: u32,
    sigint_ignored: bool,
    /// SIGTSTP was ignored at start: it never suspends us (and the child ignores it too).
    tstp_ignored: bool,
    resign_signal: Option<libc::c_int>,
}

impl SignalRouting {
    /// The route of `sig`, sent by `sender` (0 when the sender is outside our PID namespace).
    fn route(self, sig: libc::c_int, sender: u32) -> SignalRoute {
        match sig {
            libc::SIGCHLD => SignalRoute::Reap,
            _ if sender == self.me => SignalRoute::OwnDoing,
            libc::SIGINT if self.sigint_ignored => SignalRoute::IgnoredInterrupt,
            libc::SIGTERM | libc::SIGINT => SignalRoute::Shutdown,
            _ if Some(sig) == self.resign_signal => SignalRoute::Resign,
            libc::SIGTSTP if !self.tstp_ignored => SignalRoute::TerminalStop,
            libc::SIGCONT => SignalRoute::Continue,
            _ if signals::is_forwardable(sig) => SignalRoute::Forward,
            _ => SignalRoute::Drop,
        }
    }
}

/// What follows a stop of the main child by SIGTSTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AfterTerminalStop {
    /// SIGCONT to the child's group now.
    continue_child: bool,
    /// Ask the async side for a suspension.
    suspend: bool,
}

/// Under job control the replica suspends, and the child stays stopped until the stop sequence
/// continues it; if that sequence has already begun (it sent its SIGCONT before this stop), it
/// is continued now so it can run its handler. Without job control it is continued at once.
fn after_terminal_stop(job_control: bool, stop_begun: bool) -> AfterTerminalStop {
    AfterTerminalStop {
        continue_child: !job_control || stop_begun,
        suspend: job_control,
    }
}

/// Why a health check cannot start now, if it cannot: another one is in flight, or the child is
/// not available to check (not running, being stopped, or a shutdown is under way).
fn check_refusal(check_running: bool, child_available: bool) -> Option<&'static str> {
    match (check_running, child_available) {
        (true, _) => Some("a check is still running"),
        (false, false) => Some("the child is not running"),
        (false, true) => None,
    }
}

/// Why the child cannot be started now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpawnRefusal {
    /// A shutdown signal came first.
    Shutdown(libc::c_int),
    /// The previous child's tree is still running.
    TreeLeft,
    /// The lease's renew deadline has passed.
    NoLeaseTime,
}

/// Whether a promotion is refused, and why: `stage` is the tree's, with whether its main child
/// still runs (`None`: no tree); a shutdown wins, then a missing tree (the caller starts a child
/// as the leader). A tree that is not a running standby (being stopped, or its main child gone
/// and leftovers being stopped) is to be waited for.
fn promote_refusal(
    stage: Option<(Stop, bool)>,
    shutdown: Option<libc::c_int>,
    renew_deadline_passed: bool,
) -> Option<PromoteRefusal> {
    match (shutdown, stage, renew_deadline_passed) {
        (Some(sig), _, _) => Some(PromoteRefusal::Shutdown(sig)),
        (None, None, _) => Some(PromoteRefusal::NoChild),
        (None, Some((Stop::Standby, true)), true) => Some(PromoteRefusal::NoLeaseTime),
        (None, Some((Stop::Standby, true)), false) => None,
        (None, Some(_), _) => Some(PromoteRefusal::NotStandby),
    }
}

/// What a shutdown signal does to the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnShutdown {
    /// Begin the stop sequence (nothing, when no tree runs).
    BeginStop,
    /// A stop is under way: the child gets this signal too.
    Forward,
    /// A hot child that leads: it is demoted first (the async side), the deadline frozen.
    Demote,
}

/// What a shutdown signal does, given the tree's stage (`None`: no tree), whether the child is a
/// hot standby's (`--hot-standby`) and whether this is the first shutdown signal: a second one
/// stops the tree at once, demotion or not.
fn on_shutdown(stage: Option<Stop>, hot: bool, first: bool) -> OnShutdown {
    match stage {
        Some(stage) if stage.has_begun() => OnShutdown::Forward,
        Some(stage) if stage.leads() && hot && first => OnShutdown::Demote,
        _ => OnShutdown::BeginStop,
    }
}

/// Whether a spawn request is refused, and why; a shutdown wins over everything else.
fn spawn_refusal(
    shutdown: Option<libc::c_int>,
    tree_left: bool,
    renew_deadline_passed: bool,
) -> Option<SpawnRefusal> {
    match (shutdown, tree_left, renew_deadline_passed) {
        (Some(sig), _, _) => Some(SpawnRefusal::Shutdown(sig)),
        (None, true, _) => Some(SpawnRefusal::TreeLeft),
        (None, false, true) => Some(SpawnRefusal::NoLeaseTime),
        (None, false, false) => None,
    }
}

/// With the terminal handed over, Ctrl-C, Ctrl-\ and a hang-up reach the child, not us: as in a
/// shell, the child's death by one of them is the user's request to stop, unless we were stopping
/// it anyway (`stopping_for`: why the stop sequence began, if it did). A stop for a suspension
/// (Ctrl-Z) is the exception: the child keeps the terminal until its tree is gone, so a Ctrl-C
/// meanwhile reaches only the child, and it asks to end the job rather than suspend it; unless
/// the child died of the very signal that stop sent it (`stop_signal`, `--stop-signal`).
/// Returns that signal.
fn stop_asked_from_terminal(
    how: ChildStatus,
    terminal: bool,
    stopping_for: Option<StopReason>,
    stop_signal: libc::c_int,
    shutting_down: bool,
) -> Option<libc::c_int> {
    let ChildStatus::Signaled(sig @ (libc::SIGINT | libc::SIGQUIT | libc::SIGHUP)) = how else {
        return None;
    };
    if !terminal || shutting_down {
        return None;
    }
    match stopping_for {
        None => Some(sig),
        Some(StopReason::Suspend) if sig != stop_signal => Some(sig),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    //! The thread's decisions, without a thread. The thread itself is tested through its handle
    //! ([`crate::process::handle`]).
    use super::*;
    use crate::process::assert_table;

    #[test]
    fn every_signal_takes_its_route() {
        let routing = SignalRouting {
            me: 100,
            sigint_ignored: false,
            tstp_ignored: false,
            resign_signal: Some(libc::SIGUSR2),
        };
        // ((signal, sender), route)
        let rows = [
            ((libc::SIGCHLD, 42), SignalRoute::Reap),
            ((libc::SIGCHLD, 100), SignalRoute::Reap),
            ((libc::SIGPIPE, 100), SignalRoute::OwnDoing),
            ((libc::SIGTERM, 100), SignalRoute::OwnDoing),
            ((libc::SIGTERM, 42), SignalRoute::Shutdown),
            ((libc::SIGINT, 42), SignalRoute::Shutdown),
            // A sender outside our PID namespace (docker stop) shows as pid 0.
            ((libc::SIGTERM, 0), SignalRoute::Shutdown),
            ((libc::SIGUSR2, 42), SignalRoute::Resign),
            ((libc::SIGUSR1, 42), SignalRoute::Forward),
            ((libc::SIGHUP, 42), SignalRoute::Forward),
            ((libc::SIGWINCH, 0), SignalRoute::Forward),
            ((libc::SIGTSTP, 0), SignalRoute::TerminalStop),
            ((libc::SIGTSTP, 42), SignalRoute::TerminalStop),
            ((libc::SIGTSTP, 100), SignalRoute::OwnDoing),
            ((libc::SIGTTIN, 42), SignalRoute::Forward),
            ((libc::SIGTTOU, 42), SignalRoute::Forward),
            ((libc::SIGCONT, 42), SignalRoute::Continue),
            ((libc::SIGCONT, 0), SignalRoute::Continue),
            ((libc::SIGRTMIN() + 3, 42), SignalRoute::Forward),
            ((libc::SIGSEGV, 42), SignalRoute::Drop),
        ];
        assert_table(rows, |(sig, sender)| routing.route(sig, sender));
    }

    #[test]
    fn an_interrupt_ignored_at_start_stops_nothing_and_the_resign_signal_is_not_forwarded() {
        // ((ignored at start, resign signal, signal), route)
        let rows = [
            ((true, None, libc::SIGINT), SignalRoute::IgnoredInterrupt),
            ((true, None, libc::SIGTERM), SignalRoute::Shutdown),
            // SIGINT and SIGTSTP ignored at start: SIGTSTP is only forwarded.
            ((true, None, libc::SIGTSTP), SignalRoute::Forward),
            (
                (false, Some(libc::SIGTSTP), libc::SIGTSTP),
                SignalRoute::Resign,
            ),
            ((false, None, libc::SIGUSR2), SignalRoute::Forward),
            (
                (false, Some(libc::SIGUSR2), libc::SIGUSR2),
                SignalRoute::Resign,
            ),
            (
                (false, Some(libc::SIGHUP), libc::SIGHUP),
                SignalRoute::Resign,
            ),
            (
                (false, Some(libc::SIGHUP), libc::SIGUSR2),
                SignalRoute::Forward,
            ),
        ];
        assert_table(rows, |(sigint_ignored, resign_signal, sig)| {
            let routing = SignalRouting {
                me: 100,
                sigint_ignored,
                tstp_ignored: sigint_ignored,
                resign_signal,
            };
            routing.route(sig, 42)
        });
    }

    #[test]
    fn a_child_stopped_by_sigtstp_is_left_stopped_only_for_a_suspension_that_stops_it() {
        let act = |continue_child, suspend| AfterTerminalStop {
            continue_child,
            suspend,
        };
        // ((job control, stop sequence begun), what follows)
        let rows = [
            ((true, false), act(false, true)),
            ((true, true), act(true, true)),
            ((false, false), act(true, false)),
            ((false, true), act(true, false)),
        ];
        assert_table(rows, |(job_control, begun)| {
            after_terminal_stop(job_control, begun)
        });
    }

    #[test]
    fn a_check_runs_only_alone_beside_an_available_child() {
        // ((check running, child available), refusal)
        let rows = [
            ((false, true), None),
            ((true, true), Some("a check is still running")),
            ((true, false), Some("a check is still running")),
            ((false, false), Some("the child is not running")),
        ];
        assert_table(rows, |(check, child)| check_refusal(check, child));
    }

    #[test]
    fn a_spawn_is_refused_after_a_shutdown_beside_a_tree_and_without_lease_time() {
        use SpawnRefusal::*;
        let term = Some(libc::SIGTERM);
        // ((shutdown, tree left, renew deadline passed), refusal)
        let rows = [
            ((None, false, false), None),
            ((term, false, false), Some(Shutdown(libc::SIGTERM))),
            ((term, true, true), Some(Shutdown(libc::SIGTERM))),
            ((None, true, false), Some(TreeLeft)),
            ((None, true, true), Some(TreeLeft)),
            ((None, false, true), Some(NoLeaseTime)),
        ];
        assert_table(rows, |(shutdown, tree, passed)| {
            spawn_refusal(shutdown, tree, passed)
        });
    }

    #[test]
    fn a_hot_standby_child_is_promoted_only_while_it_runs_as_a_standby_with_lease_time_left() {
        use PromoteRefusal::*;
        let t0 = BootInstant::now();
        let lease = LeaseDeadline {
            stop_at: t0 + Duration::from_secs(1),
            kill_at: t0 + Duration::from_secs(2),
        };
        let leads = Some((Stop::NotBegun { lease }, true));
        let stopping = Some((
            Stop::Killing {
                reason: StopReason::Resign,
            },
            true,
        ));
        let standby = Some((Stop::Standby, true));
        // The main child ended, its leftovers are being stopped.
        let leftovers = Some((Stop::Standby, false));
        let term = Some(libc::SIGTERM);
        // ((the tree's stage and whether its main child runs, shutdown, renew deadline passed),
        // refusal)
        let rows = [
            ((standby, None, false), None),
            ((standby, None, true), Some(NoLeaseTime)),
            ((standby, term, false), Some(Shutdown(libc::SIGTERM))),
            ((None, None, false), Some(NoChild)),
            ((None, term, false), Some(Shutdown(libc::SIGTERM))),
            ((leads, None, false), Some(NotStandby)),
            ((stopping, None, false), Some(NotStandby)),
            ((leftovers, None, false), Some(NotStandby)),
        ];
        assert_table(rows, |(stage, shutdown, passed)| {
            promote_refusal(stage, shutdown, passed)
        });
    }

    #[test]
    fn a_shutdown_demotes_a_leading_hot_child_first_and_a_second_one_stops_it() {
        use OnShutdown::*;
        let t0 = BootInstant::now();
        let leads = Some(Stop::NotBegun {
            lease: LeaseDeadline {
                stop_at: t0 + Duration::from_secs(1),
                kill_at: t0 + Duration::from_secs(2),
            },
        });
        let stopping = Some(Stop::Killing {
            reason: StopReason::Resign,
        });
        // ((stage, hot standby, first shutdown signal), what it does)
        let rows = [
            ((leads, true, true), Demote),
            ((leads, true, false), BeginStop),
            ((leads, false, true), BeginStop),
            ((Some(Stop::Standby), true, true), BeginStop),
            ((stopping, true, true), Forward),
            ((stopping, false, false), Forward),
            ((None, true, true), BeginStop),
        ];
        assert_table(rows, |(stage, hot, first)| on_shutdown(stage, hot, first));
    }

    #[test]
    fn a_child_killed_from_its_terminal_is_a_request_to_stop() {
        use ChildStatus::*;
        use StopReason as R;
        let int = Signaled(libc::SIGINT);
        let term = libc::SIGTERM;
        // ((how, terminal handed over, stopping for, stop signal, shutting down), request)
        let rows = [
            ((int, true, None, term, false), Some(libc::SIGINT)),
            (
                (Signaled(libc::SIGQUIT), true, None, term, false),
                Some(libc::SIGQUIT),
            ),
            (
                (Signaled(libc::SIGHUP), true, None, term, false),
                Some(libc::SIGHUP),
            ),
            ((Signaled(libc::SIGTERM), true, None, term, false), None),
            ((Exited(130), true, None, term, false), None),
            ((int, false, None, term, false), None),
            ((int, true, None, term, true), None),
            // Stopping for another reason: its own doing, or beside the point.
            ((int, true, Some(R::Resign), term, false), None),
            ((int, true, Some(R::Deadline), libc::SIGINT, false), None),
            // Stopping for Ctrl-Z, the child still has the terminal: Ctrl-C ends the job...
            (
                (int, true, Some(R::Suspend), term, false),
                Some(libc::SIGINT),
            ),
            (
                (Signaled(libc::SIGHUP), true, Some(R::Suspend), term, false),
                Some(libc::SIGHUP),
            ),
            // ... unless that is the signal the stop sent, or the terminal was not the child's.
            ((int, true, Some(R::Suspend), libc::SIGINT, false), None),
            ((int, false, Some(R::Suspend), term, false), None),
            (
                (Signaled(libc::SIGTERM), true, Some(R::Suspend), term, false),
                None,
            ),
            (
                (Signaled(libc::SIGKILL), true, Some(R::Suspend), term, false),
                None,
            ),
        ];
        assert_table(
            rows,
            |(how, terminal, stopping_for, stop_signal, shutdown)| {
                stop_asked_from_terminal(how, terminal, stopping_for, stop_signal, shutdown)
            },
        );
    }

    #[test]
    fn a_suspension_is_refused_beside_a_tree_after_a_shutdown_and_once_continued() {
        use SuspendRefusal::*;
        let term = Some(libc::SIGTERM);
        // ((tree left, shutdown, continued since the Ctrl-Z), refusal)
        let rows = [
            ((false, None, false), None),
            ((false, None, true), Some(Continued)),
            ((false, term, false), Some(Shutdown(libc::SIGTERM))),
            ((false, term, true), Some(Shutdown(libc::SIGTERM))),
            ((true, None, false), Some(TreeLeft)),
            ((true, term, true), Some(TreeLeft)),
        ];
        assert_table(rows, |(tree, shutdown, continued)| {
            suspend_refusal(tree, shutdown, continued)
        });
    }

    #[test]
    fn the_timer_value_is_the_instant_and_never_all_zero() {
        // The clock's origin: subtraction saturates there.
        let zero = BootInstant::now() - Duration::MAX;
        assert_eq!(zero.as_nanos(), 0);
        // (after the origin, (seconds, nanoseconds))
        let rows = [
            (Duration::ZERO, (0, 1)),
            (Duration::from_nanos(7), (0, 7)),
            (Duration::from_secs(3), (3, 1)),
            (Duration::new(12, 345_678_901), (12, 345_678_901)),
        ];
        assert_table(rows, |since_origin| {
            let t = timer_value(zero + since_origin);
            (t.tv_sec(), t.tv_nsec())
        });
    }
}
