//! The contract between the two loops: what the async side asks of the process thread
//! ([`Request`]), what the thread reports back ([`Event`]), the lease's fail-closed deadline that
//! travels with every request that may start or extend a child ([`LeaseDeadline`]), and how the
//! thread stops a child ([`Settings`]). Nothing else crosses between them.

#![forbid(unsafe_code)]

use std::time::Duration;

use crate::core::clock::BootInstant;
use crate::core::command::CommandSpec;
use crate::core::exit_code::ChildStatus;
use crate::core::lifecycle::StopReason;
use crate::process::spawn::SpawnError;

/// The fail-closed deadlines of the current lease (see [`crate::core::timing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseDeadline {
    /// Begin the stop sequence if not extended by then.
    pub stop_at: BootInstant,
    /// SIGKILL the tree by then, whatever happened.
    pub kill_at: BootInstant,
}

/// What the async side asks of the process thread.
#[derive(Debug)]
pub enum Request {
    /// Start the child. Refused after a shutdown signal, or if `deadline.stop_at` has passed.
    /// `own_pid_variable`: a variable the child gets with its own pid as the value
    /// (`WATCHDOG_PID`), which only the child itself can know before it runs. `deadline`:
    /// `None` for a hot standby's child (`--hot-standby`), which does not lead: no lease
    /// deadline applies to it until it is promoted ([`Request::Promote`]).
    Spawn {
        command: CommandSpec,
        env: Vec<(String, String)>,
        own_pid_variable: Option<&'static str>,
        deadline: Option<LeaseDeadline>,
    },
    /// A hot standby's child is to lead: arm the lease deadline for it (before it is told, so
    /// it never leads without one). Answered with [`Event::Promoted`], or
    /// [`Event::PromoteRefused`] when no standby child runs, a stop has begun, a shutdown signal
    /// came or `deadline.stop_at` has passed.
    Promote(LeaseDeadline),
    /// Send the role signal (`--role-signal`) to the main child: its role file has changed.
    /// Nothing is sent once its stop has begun.
    RoleSignal,
    /// The child is being told to stop leading: the lease deadline no longer moves
    /// ([`Request::Extend`] is ignored), so the demotion is over by the deadline as it stands,
    /// confirmed ([`Request::Disarm`]) or not.
    Demote,
    /// The child confirmed that it no longer leads (`ROLE=standby` after its demotion): the lease
    /// deadlines stop applying to it. Changes nothing once a stop has begun.
    Disarm,
    /// A keepalive was acknowledged: move the deadlines later.
    Extend(LeaseDeadline),
    /// The child asked for time to finish (`EXTEND_TIMEOUT_USEC` on its notify socket): while
    /// its stop sequence runs, SIGKILL waits until then, but never past the lease's kill deadline
    /// as it stood when the stop began ([`crate::process::stop::Stop::extend_grace`]). Changes
    /// nothing before the stop signal or after SIGKILL, and an extension the child sent
    /// (`sent_at`) before the stop signal (for its start-up: it reached us late) changes nothing
    /// either.
    ExtendGrace {
        sent_at: BootInstant,
        until: BootInstant,
    },
    /// Begin the stop sequence now (or, for a known loss of leadership, kill at once).
    Stop(StopReason),
    /// Run a health check (`/bin/sh -c command`) while the child runs: killed with its process
    /// group after `timeout`, when it ends, or when the stop sequence begins. Answered with
    /// [`Event::CheckEnded`] carrying the same `id`.
    Check {
        id: u64,
        command: String,
        env: Vec<(String, String)>,
        timeout: Duration,
    },
    /// Suspend this process (job control) and report [`Event::Resumed`] once it is continued.
    /// Asked only once no tree is left and the lease is given up; refused (at once `Resumed`)
    /// while a tree exists, after a shutdown signal, and when SIGCONT came since the Ctrl-Z.
    Suspend,
}

/// What the process thread reports.
#[derive(Debug)]
pub enum Event {
    Started {
        pid: libc::pid_t,
    },
    /// exec failed (missing or non-executable command, fork failure).
    SpawnFailed(SpawnError),
    /// Not started: `Deadline` (the lease has too little time left) or `Shutdown` (a shutdown signal
    /// came first).
    SpawnRefused(StopReason),
    /// SIGTERM or SIGINT reached the supervisor; the stop sequence has begun if a child runs.
    ShutdownSignal(libc::c_int),
    /// The `--resign-signal` reached the supervisor (it is not forwarded).
    ResignSignal,
    /// Ctrl-Z under job control: the main child was stopped by SIGTSTP (it stays stopped until
    /// the stop sequence continues it), or SIGTSTP reached the supervisor. The replica is to stop
    /// the tree, give its lease up, then ask for [`Request::Suspend`]. Sent once per suspension,
    /// however many SIGTSTP come before it is carried out.
    SuspendRequested,
    /// The answer to [`Request::Suspend`]: this process was continued (or never stopped).
    Resumed,
    /// The answer to [`Request::Promote`]: the lease deadline applies to the child from now on.
    Promoted,
    /// The answer to [`Request::Promote`] when the child cannot be promoted.
    PromoteRefused(PromoteRefusal),
    /// The stop sequence began; SIGKILL follows after `kill_in` (zero: it was sent at once).
    Stopping {
        reason: StopReason,
        kill_in: Duration,
    },
    /// A health check requested with [`Request::Check`] ended, with what it wrote (the first
    /// 4 KiB of its stdout and stderr).
    CheckEnded {
        id: u64,
        exit: CheckExit,
        output: String,
    },
    /// The main child was reaped and no process of its tree is left. `reason` is why the stop
    /// sequence began, or `ChildExited` if the child ended by itself; `stop_took`, from the
    /// beginning of the stop sequence (if one began, for leftovers too) to now; `after_kill`,
    /// from the first SIGKILL (if one went out) to now: the kernel's teardown of the tree.
    Finished {
        status: ChildStatus,
        reason: StopReason,
        stop_took: Option<Duration>,
        after_kill: Option<Duration>,
    },
}

/// How the process thread stops a child.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `--stop-signal`.
    pub stop_signal: libc::c_int,
    /// Time between the stop signal and SIGKILL.
    pub grace: Duration,
    /// `--resign-signal`, not forwarded.
    pub resign_signal: Option<libc::c_int>,
    /// `--role-signal` with `--hot-standby`; `None` without. A leading hot child is demoted on
    /// the first shutdown signal rather than stopped (see [`crate::process::thread`]).
    pub role_signal: Option<libc::c_int>,
}

/// Why a hot standby's child was not promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteRefusal {
    /// No child runs (it exited, or was never started): start one as the leader instead.
    NoChild,
    /// A tree exists that is no running standby: being stopped, or its main child gone and the
    /// leftovers being stopped (or, not reached, leading already). Wait for it to be gone.
    NotStandby,
    /// A shutdown signal came first.
    Shutdown(libc::c_int),
    /// The lease's renew deadline has passed.
    NoLeaseTime,
}

/// How a health check process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckExit {
    Exited(ChildStatus),
    /// Killed (with its process group) at its timeout.
    TimedOut,
    /// Not started because no child runs, a stop has begun or a check is in flight: no result.
    NotRun(String),
    /// The fork or exec failed (counts as a failed check).
    SpawnFailed(String),
}
