//! The stop sequence as data: where the child's tree stands between its start and its last reap,
//! and the rules that move it on.
//!
//! A tree is `NotBegun` (the lease deadlines apply), then `Stopping` (stop signal sent, SIGKILL at
//! `kill_at`), then `Killing` (SIGKILL sent, repeated every [`KILL_RESCAN`] until nothing is left).
//! It only moves forward, and each stage names its next wake-up. With `--hot-standby` a tree may
//! also be a `Standby`: its child runs but does not lead, so no lease deadline applies to it; it is
//! promoted to `NotBegun` (the deadline armed before the child is told it leads) and disarmed back
//! to `Standby` only once the child has confirmed that it no longer leads ([`Stop::promote`],
//! [`Stop::disarm`]). A stop from `Standby` has no lease to answer to: SIGKILL after the grace. Everything here is pure: it is
//! given `now` and answers what is due; the process thread ([`crate::process::thread`]) sends the
//! signals and reaps.
//!
//! The stop signal reaches the child's process group at once, with one `kill(2)`. The rest of the
//! tree (processes that left the group, and stopped ones, which need a SIGCONT to act on it) can
//! only be found by reading every process of the machine in `/proc` (10 to 20 µs each: 10 ms with
//! 700 processes, 40 ms with 2,000, measured), and the process thread reaps nothing meanwhile. So
//! that sweep is due [`SWEEP_AFTER`] later: a child that exits on its stop signal is reaped, and
//! its lease handed over, without waiting for a read of the whole machine. A SIGKILL round is
//! never put off: it reads `/proc` at once.
//!
//! Invariants the rules keep:
//! * SIGKILL comes no later than the lease's `kill_at`, whatever the grace period, and whatever
//!   the child asks for: an extension of its grace (`EXTEND_TIMEOUT_USEC` on its notify socket,
//!   [`Stop::extend_grace`]) moves SIGKILL later only up to the lease's `kill_at` as it stood
//!   when the stop began;
//! * a known loss of leadership (another replica may already lead) kills at once, also when a stop
//!   is already under way; any other second request changes nothing;
//! * the first reason given is the one reported when the tree is gone.

#![forbid(unsafe_code)]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::core::clock::BootInstant;
use crate::core::exit_code::ChildStatus;
use crate::core::lifecycle::StopReason;
use crate::process::contract::LeaseDeadline;

/// While killing, re-scan for processes that appeared (re-parented orphans, late forks) this often.
pub const KILL_RESCAN: Duration = Duration::from_millis(20);

/// How long after the stop signal reached the child's process group the rest of the tree is swept
/// for (see the module doc). A child that exits on the signal is normally reaped well within it;
/// a process outside the group gets its stop signal this much later, and its SIGKILL no later.
pub const SWEEP_AFTER: Duration = Duration::from_millis(20);

/// The main child: running (unreaped, so its pid and group id cannot be reused) or reaped.
#[derive(Debug)]
pub enum Main {
    /// `pidfd` becomes readable when it ends: a wake-up that does not depend on SIGCHLD reaching
    /// our signalfd (it always does in the binary; not in a test harness with other threads).
    Running {
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
    },
    Reaped(ChildStatus),
}

/// Where the stop sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A hot standby's child (`--hot-standby`): it runs, but does not lead, so no lease deadline
    /// applies to it.
    Standby,
    /// Not begun; the lease deadlines apply.
    NotBegun { lease: LeaseDeadline },
    /// Stop signal sent; SIGKILL at `kill_at`. `sweep_at`: when the rest of the tree gets the
    /// stop signal ([`Due::Sweep`]); `None` once it has (or the signal went to every process).
    /// `cap`: the latest `kill_at` may ever be, the lease's kill deadline when the stop began.
    Stopping {
        reason: StopReason,
        kill_at: BootInstant,
        sweep_at: Option<BootInstant>,
        cap: BootInstant,
    },
    /// SIGKILL sent; repeated every [`KILL_RESCAN`] until nothing is left.
    Killing { reason: StopReason },
}

/// How a stop request begins (or hurries) the stop sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Stop signal to the tree now, SIGKILL at `kill_at`; no extension of the grace moves it past
    /// `cap` (the lease's kill deadline).
    Signal {
        kill_at: BootInstant,
        cap: BootInstant,
    },
    /// SIGKILL now: leadership is known lost, or no time is left before the kill deadline.
    /// `first` is the reason the tree is stopped for (the first one given).
    KillNow { first: StopReason },
}

/// What a deadline asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The lease's renew deadline passed without an extension, `late` ago: begin the stop
    /// sequence ([`StopReason::Deadline`]).
    BeginStop { late: Duration },
    /// The stop signal reached the child's group a moment ago: now send it to the rest of the
    /// tree (and SIGCONT to stopped processes).
    Sweep { reason: StopReason },
    /// The kill deadline passed: SIGKILL the tree, which is `Killing` from now on.
    Kill { reason: StopReason },
    /// Still killing: another SIGKILL round for what appeared since the last one.
    KillAgain,
}

impl Stop {
    /// Whether the stop sequence has begun.
    pub fn has_begun(self) -> bool {
        !matches!(self, Stop::NotBegun { .. } | Stop::Standby)
    }

    /// Whether the child leads: the lease deadlines apply and no stop has begun.
    pub fn leads(self) -> bool {
        matches!(self, Stop::NotBegun { .. })
    }

    /// A hot standby's child is to lead: the lease deadlines apply from now on. `None` for any
    /// other stage (the child leads already, or is being stopped).
    pub fn promote(self, lease: LeaseDeadline) -> Option<Stop> {
        match self {
            Stop::Standby => Some(Stop::NotBegun { lease }),
            _ => None,
        }
    }

    /// The child confirmed that it no longer leads: the lease deadlines stop applying. `None`
    /// unless it leads (a stop under way goes on: a confirmation never calls one off).
    pub fn disarm(self) -> Option<Stop> {
        match self {
            Stop::NotBegun { .. } => Some(Stop::Standby),
            _ => None,
        }
    }

    /// The stage a stop signal sent at `now` begins. `group_signalled`: it went to the child's
    /// process group alone, so the rest of the tree is swept for [`SWEEP_AFTER`] later; otherwise
    /// (the main child is reaped, and the group with it) every process got it at once.
    pub fn stopping(
        reason: StopReason,
        kill_at: BootInstant,
        cap: BootInstant,
        now: BootInstant,
        group_signalled: bool,
    ) -> Stop {
        // With SIGKILL close (a grace of a few ms, a deadline stop begun late), the rest of the
        // tree is swept at once: a process outside the group, or a stopped one waiting for its
        // SIGCONT, still gets its stop signal before the SIGKILL.
        let sweep_at = match kill_at.saturating_duration_since(now) > 2 * SWEEP_AFTER {
            true => now + SWEEP_AFTER,
            false => now,
        };
        Stop::Stopping {
            reason,
            kill_at,
            sweep_at: group_signalled.then_some(sweep_at),
            cap: cap.max(kill_at),
        }
    }

    /// The same stage with SIGKILL moved to `until`, as the child asked (`EXTEND_TIMEOUT_USEC`),
    /// but never past the cap (the lease's kill deadline when the stop began); `None` when
    /// nothing changes: no stop signal was sent yet (the request is for another stage of the
    /// child's life), SIGKILL is already sent, or `until` is no later than the kill already due.
    pub fn extend_grace(self, until: BootInstant) -> Option<Stop> {
        match self {
            Stop::Stopping {
                reason,
                kill_at,
                sweep_at,
                cap,
            } if until.min(cap) > kill_at => Some(Stop::Stopping {
                reason,
                kill_at: until.min(cap),
                sweep_at,
                cap,
            }),
            _ => None,
        }
    }

    /// The same stage once the rest of the tree has been swept.
    pub fn swept(self) -> Stop {
        match self {
            Stop::Stopping {
                reason,
                kill_at,
                cap,
                ..
            } => Stop::Stopping {
                reason,
                kill_at,
                sweep_at: None,
                cap,
            },
            other => other,
        }
    }

    /// When the process thread must wake up next for this stage; `None`: nothing is due (a
    /// standby's child).
    pub fn wake_at(self, now: BootInstant) -> Option<BootInstant> {
        match self {
            Stop::Standby => None,
            Stop::NotBegun { lease } => Some(lease.stop_at),
            Stop::Stopping {
                kill_at, sweep_at, ..
            } => Some(sweep_at.map_or(kill_at, |s| s.min(kill_at))),
            Stop::Killing { .. } => Some(now + KILL_RESCAN),
        }
    }

    /// What a request to stop for `reason`, at `now`, does; `None`: nothing changes. SIGKILL
    /// comes at the earlier of `grace` and the lease's kill deadline.
    pub fn begin(self, reason: StopReason, now: BootInstant, grace: Duration) -> Option<Begin> {
        let (first, kill_at, cap) = match self {
            Stop::NotBegun { lease } => (reason, (now + grace).min(lease.kill_at), lease.kill_at),
            // No lease to answer to: the grace alone, and no extension past it.
            Stop::Standby => (reason, now + grace, now + grace),
            // Already stopping: only a known loss of leadership changes anything (kill now).
            Stop::Stopping { reason: first, .. } if reason.leadership_known_lost() => {
                (first, now, now)
            }
            Stop::Stopping { .. } | Stop::Killing { .. } => return None,
        };
        if reason.leadership_known_lost() || kill_at <= now {
            Some(Begin::KillNow { first })
        } else {
            Some(Begin::Signal { kill_at, cap })
        }
    }

    /// What is due at `now`, if anything.
    pub fn due(self, now: BootInstant) -> Option<Due> {
        match self {
            Stop::NotBegun { lease } if now >= lease.stop_at => Some(Due::BeginStop {
                late: now.saturating_duration_since(lease.stop_at),
            }),
            Stop::Stopping {
                reason, kill_at, ..
            } if now >= kill_at => Some(Due::Kill { reason }),
            Stop::Stopping {
                reason,
                sweep_at: Some(at),
                ..
            } if now >= at => Some(Due::Sweep { reason }),
            Stop::Killing { .. } => Some(Due::KillAgain),
            _ => None,
        }
    }

    /// Why the tree ended, as reported once it is gone: the reason the stop began for, or
    /// [`StopReason::ChildExited`] if none did.
    pub fn outcome(self) -> StopReason {
        match self {
            Stop::NotBegun { .. } | Stop::Standby => StopReason::ChildExited,
            Stop::Stopping { reason, .. } | Stop::Killing { reason } => reason,
        }
    }
}

/// The child's tree while it exists.
pub struct Tree {
    /// The main child's process group (== its pid).
    pub pgid: libc::pid_t,
    pub main: Main,
    pub stop: Stop,
    /// When the stop sequence began, once it has: what a stop took is measured from it.
    pub stop_began: Option<BootInstant>,
    /// When the first SIGKILL went out: from then on, how long the tree takes to go is the
    /// kernel's teardown (a big working set is freed before the files close), the time
    /// `--margin` must cover.
    pub killed_at: Option<BootInstant>,
    /// Whether the terminal's foreground was handed to the child's group.
    pub terminal: bool,
    /// A hot child that leads is being demoted: the lease deadline no longer moves, so the
    /// demotion is over (confirmed, or the tree stopped) by the deadline as it stood.
    pub demoting: bool,
}

/// What a reap pass leaves of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReap {
    /// The main child runs, or the stop sequence is taking care of what is left: nothing to do.
    Wait,
    /// The main child ended by itself and left processes behind: they get the stop sequence.
    StopLeftovers,
    /// The main child is reaped and no process is left: the tree is gone.
    Gone,
}

impl Tree {
    /// A tree whose main child `pid` has just started, under the deadlines `lease`; `None`: a
    /// hot standby's child, which does not lead.
    pub fn started(
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
        lease: Option<LeaseDeadline>,
        terminal: bool,
    ) -> Tree {
        Tree {
            pgid: pid,
            main: Main::Running { pid, pidfd },
            stop: lease.map_or(Stop::Standby, |lease| Stop::NotBegun { lease }),
            stop_began: None,
            killed_at: None,
            terminal,
            demoting: false,
        }
    }

    pub fn main_pid(&self) -> Option<libc::pid_t> {
        match self.main {
            Main::Running { pid, .. } => Some(pid),
            Main::Reaped(_) => None,
        }
    }

    /// The main child's pidfd, to poll, while it runs.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match &self.main {
            Main::Running { pidfd, .. } => pidfd.as_ref().map(|f| f.as_fd()),
            Main::Reaped(_) => None,
        }
    }

    /// When the process thread must wake up next for this tree, if ever.
    pub fn next_wake(&self) -> Option<BootInstant> {
        self.stop.wake_at(BootInstant::now())
    }

    /// What is left to do after a reap pass; `any_left`: `waitpid` still reports children.
    pub fn after_reap(&self, any_left: bool) -> AfterReap {
        match (&self.main, any_left) {
            (Main::Running { .. }, _) => AfterReap::Wait,
            (Main::Reaped(_), true) if self.stop.has_begun() => AfterReap::Wait,
            (Main::Reaped(_), true) => AfterReap::StopLeftovers,
            (Main::Reaped(_), false) => AfterReap::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::assert_table;
    use StopReason::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Not begun, under a lease that must be renewed by `t0` + 1 s and killed by `t0` + 3 s.
    fn not_begun(t0: BootInstant) -> Stop {
        Stop::NotBegun {
            lease: LeaseDeadline {
                stop_at: t0 + ms(1_000),
                kill_at: t0 + ms(3_000),
            },
        }
    }

    /// Stopping, the rest of the tree already swept, SIGKILL at `kill_at` (also its cap).
    fn stopping(reason: StopReason, kill_at: BootInstant) -> Stop {
        Stop::Stopping {
            reason,
            kill_at,
            sweep_at: None,
            cap: kill_at,
        }
    }

    #[test]
    fn a_first_request_signals_and_kills_at_the_earlier_of_grace_and_the_lease_kill_deadline() {
        let t0 = BootInstant::now();
        // The cap is the lease's kill deadline, whatever the grace.
        let signal = |kill_at| {
            Some(Begin::Signal {
                kill_at,
                cap: t0 + ms(3_000),
            })
        };
        // ((grace, reason), SIGKILL at); the lease's kill deadline is t0 + 3 s.
        let rows = [
            ((500, Resign), signal(t0 + ms(500))),
            ((2_999, Unhealthy), signal(t0 + ms(2_999))),
            ((10_000, Shutdown(libc::SIGTERM)), signal(t0 + ms(3_000))),
            ((10_000, ChildExited), signal(t0 + ms(3_000))),
            ((10_000, Deadline), signal(t0 + ms(3_000))),
        ];
        assert_table(rows, |(grace, reason)| {
            not_begun(t0).begin(reason, t0, ms(grace))
        });
    }

    #[test]
    fn no_time_left_before_the_kill_deadline_kills_at_once() {
        let t0 = BootInstant::now();
        let kill_now = |first| Some(Begin::KillNow { first });
        // ((now, grace, reason), expected): the kill would be due at or before now.
        let rows = [
            ((t0, 0, Resign), kill_now(Resign)),
            ((t0 + ms(3_000), 10_000, Deadline), kill_now(Deadline)),
            (
                (t0 + ms(5_000), 10_000, Shutdown(libc::SIGINT)),
                kill_now(Shutdown(libc::SIGINT)),
            ),
        ];
        assert_table(rows, |(now, grace, reason)| {
            not_begun(t0).begin(reason, now, ms(grace))
        });
    }

    #[test]
    fn a_known_loss_of_leadership_kills_at_once_keeping_the_first_reason() {
        let t0 = BootInstant::now();
        let resigning = stopping(Resign, t0 + ms(10_000));
        let kill_now = |first| Some(Begin::KillNow { first });
        // ((stage, request), expected)
        let rows = [
            ((not_begun(t0), LeaseGone), kill_now(LeaseGone)),
            ((not_begun(t0), KeyDeleted), kill_now(KeyDeleted)),
            ((resigning, LeaseGone), kill_now(Resign)),
            ((resigning, KeyDeleted), kill_now(Resign)),
            ((Stop::Killing { reason: Deadline }, LeaseGone), None),
        ];
        assert_table(rows, |(stage, reason)| stage.begin(reason, t0, ms(30_000)));
    }

    #[test]
    fn any_other_second_request_changes_nothing() {
        let t0 = BootInstant::now();
        let stages = [
            stopping(Unhealthy, t0 + ms(10_000)),
            Stop::Killing { reason: Resign },
        ];
        let reasons = [
            Resign,
            Deadline,
            Unhealthy,
            ChildExited,
            Shutdown(libc::SIGTERM),
        ];
        let rows = stages
            .iter()
            .flat_map(|&stage| reasons.map(|reason| ((stage, reason), None)));
        assert_table(rows, |(stage, reason)| stage.begin(reason, t0, ms(0)));
    }

    #[test]
    fn each_stage_is_due_at_its_own_deadline() {
        let t0 = BootInstant::now();
        let resigning = stopping(Resign, t0 + ms(2_000));
        let begin = |late| Some(Due::BeginStop { late: ms(late) });
        let kill = Some(Due::Kill { reason: Resign });
        // ((stage, now), expected)
        let rows = [
            ((not_begun(t0), t0 + ms(999)), None),
            ((not_begun(t0), t0 + ms(1_000)), begin(0)),
            ((not_begun(t0), t0 + ms(1_250)), begin(250)),
            ((resigning, t0 + ms(1_999)), None),
            ((resigning, t0 + ms(2_000)), kill),
            ((resigning, t0 + ms(9_000)), kill),
            ((Stop::Killing { reason: Resign }, t0), Some(Due::KillAgain)),
        ];
        assert_table(rows, |(stage, now)| stage.due(now));
    }

    #[test]
    fn each_stage_names_its_next_wake_up() {
        let t0 = BootInstant::now();
        let rows = [
            (Stop::Standby, None),
            (not_begun(t0), Some(t0 + ms(1_000))),
            (stopping(Resign, t0 + ms(2_000)), Some(t0 + ms(2_000))),
            (Stop::Killing { reason: Resign }, Some(t0 + KILL_RESCAN)),
        ];
        assert_table(rows, |stage| stage.wake_at(t0));
    }

    #[test]
    fn the_rest_of_the_tree_is_swept_a_moment_after_the_group_got_the_signal() {
        let t0 = BootInstant::now();
        let kill_at = t0 + ms(2_000);
        let sweep = Some(Due::Sweep { reason: Resign });
        let kill = Some(Due::Kill { reason: Resign });
        // SIGKILL near: no delay.
        let soon = Stop::stopping(Resign, t0 + ms(30), t0 + ms(30), t0, true);
        assert_eq!(soon.due(t0), Some(Due::Sweep { reason: Resign }));
        let after_group = Stop::stopping(Resign, kill_at, kill_at, t0, true);
        let all_signalled = Stop::stopping(Resign, kill_at, kill_at, t0, false);
        assert_eq!(all_signalled, stopping(Resign, kill_at));
        // ((stage, now), what is due, next wake-up)
        let rows = [
            // The group got the signal at t0: the sweep is due SWEEP_AFTER later, not before.
            ((after_group, t0), None, t0 + SWEEP_AFTER),
            (
                (after_group, t0 + SWEEP_AFTER - ms(1)),
                None,
                t0 + SWEEP_AFTER,
            ),
            ((after_group, t0 + SWEEP_AFTER), sweep, t0 + SWEEP_AFTER),
            // Swept once: only the kill is left.
            ((after_group.swept(), t0 + SWEEP_AFTER), None, kill_at),
            ((after_group.swept(), kill_at), kill, kill_at),
            // Every process got the signal at once: nothing to sweep.
            ((all_signalled, t0 + SWEEP_AFTER), None, kill_at),
            // The kill deadline first: the kill round reads /proc anyway.
            ((after_group, kill_at), kill, t0 + SWEEP_AFTER),
        ];
        for ((stage, now), due, wake) in rows {
            assert_eq!(stage.due(now), due, "{stage:?} at {now:?}");
            assert_eq!(stage.wake_at(now), Some(wake), "{stage:?}");
        }
        // A grace shorter than twice the sweep's delay: the sweep at once (the stop signal and
        // SIGCONT reach every process before the SIGKILL), then the kill, which wins once due.
        let short = Stop::stopping(Resign, t0 + ms(5), t0 + ms(5), t0, true);
        assert_eq!(short.wake_at(t0), Some(t0));
        assert_eq!(short.due(t0), Some(Due::Sweep { reason: Resign }));
        assert_eq!(short.swept().wake_at(t0), Some(t0 + ms(5)));
        assert_eq!(short.due(t0 + ms(5)), Some(Due::Kill { reason: Resign }));
        // A sweep changes nothing but the sweep.
        assert_eq!(after_group.swept().outcome(), Resign);
        let killing = Stop::Killing { reason: Resign };
        assert_eq!(killing.swept(), killing);
    }

    /// What the child asks for (EXTEND_TIMEOUT_USEC) moves SIGKILL later, never past the lease's
    /// kill deadline as it stood when the stop began, and never before a stop began or after
    /// SIGKILL went out.
    #[test]
    fn the_child_may_extend_its_grace_only_up_to_the_lease_kill_deadline() {
        let t0 = BootInstant::now();
        // SIGKILL due at t0 + 1 s (the grace), the lease's kill deadline at t0 + 3 s.
        let begun = match not_begun(t0).begin(Resign, t0, ms(1_000)) {
            Some(Begin::Signal { kill_at, cap }) => Stop::stopping(Resign, kill_at, cap, t0, false),
            other => panic!("{other:?}"),
        };
        let kill_at = |stop: Option<Stop>| match stop {
            Some(Stop::Stopping { kill_at, .. }) => Some(kill_at.saturating_duration_since(t0)),
            _ => None,
        };
        // ((stage, until), SIGKILL after t0, if moved)
        let rows = [
            ((begun, t0 + ms(2_000)), Some(ms(2_000))),
            // More than the lease allows: as much as it allows.
            ((begun, t0 + ms(60_000)), Some(ms(3_000))),
            ((begun, t0 + ms(3_000)), Some(ms(3_000))),
            // Earlier than the kill already due: nothing changes.
            ((begun, t0 + ms(500)), None),
            ((begun, t0 + ms(1_000)), None),
            // No stop yet, or SIGKILL sent: nothing to extend.
            ((not_begun(t0), t0 + ms(2_000)), None),
            ((Stop::Killing { reason: Resign }, t0 + ms(2_000)), None),
            // A stop that began at the lease's kill deadline: capped there.
            ((stopping(Deadline, t0 + ms(3_000)), t0 + ms(9_000)), None),
        ];
        assert_table(rows, |(stage, until)| kill_at(stage.extend_grace(until)));
        // Extended twice: the cap holds, and the rest of the stage is kept.
        let twice = begun
            .extend_grace(t0 + ms(2_500))
            .and_then(|s| s.extend_grace(t0 + ms(9_000)))
            .expect("extended");
        assert_eq!(kill_at(Some(twice)), Some(ms(3_000)));
        assert_eq!(twice.extend_grace(t0 + ms(9_500)), None);
        assert_eq!(twice.outcome(), Resign);
        assert_eq!(twice.due(t0 + ms(2_999)), None);
        assert_eq!(
            twice.due(t0 + ms(3_000)),
            Some(Due::Kill { reason: Resign })
        );
    }

    /// A hot standby's child: nothing is due while it does not lead; promoted, the lease's
    /// deadlines apply before anything else happens; disarmed only while it leads and no stop
    /// has begun (a confirmation that comes after the stop signal calls nothing off).
    #[test]
    fn a_standby_child_answers_to_the_lease_only_between_its_promotion_and_its_confirmed_demotion()
    {
        let t0 = BootInstant::now();
        let lease = LeaseDeadline {
            stop_at: t0 + ms(1_000),
            kill_at: t0 + ms(3_000),
        };
        // Nothing is ever due for a standby's child, however late.
        assert_eq!(Stop::Standby.due(t0 + ms(1_000_000)), None);
        assert!(!Stop::Standby.has_begun() && !Stop::Standby.leads());
        assert_eq!(Stop::Standby.outcome(), ChildExited);
        // (stage, promoted to)
        let rows = [
            (Stop::Standby, Some(not_begun(t0))),
            (not_begun(t0), None),
            (stopping(Resign, t0 + ms(2_000)), None),
            (Stop::Killing { reason: Resign }, None),
        ];
        assert_table(rows, |stage| stage.promote(lease));
        let promoted = Stop::Standby.promote(lease).unwrap();
        assert!(promoted.leads());
        assert_eq!(
            promoted.due(t0 + ms(1_000)),
            Some(Due::BeginStop { late: ms(0) })
        );
        // (stage, disarmed to)
        let rows = [
            (not_begun(t0), Some(Stop::Standby)),
            (Stop::Standby, None),
            (stopping(Resign, t0 + ms(2_000)), None),
            (Stop::Killing { reason: Resign }, None),
        ];
        assert_table(rows, |stage| stage.disarm());
    }

    /// A standby's child stopped (the replica exits, or its child is replaced): SIGKILL after
    /// the grace, which nothing extends, since no lease bounds it; a known loss kills at once.
    #[test]
    fn a_standby_child_is_stopped_within_the_grace() {
        let t0 = BootInstant::now();
        let signal = |kill_at| {
            Some(Begin::Signal {
                kill_at,
                cap: kill_at,
            })
        };
        let rows = [
            ((500, Shutdown(libc::SIGTERM)), signal(t0 + ms(500))),
            ((30_000, Resign), signal(t0 + ms(30_000))),
            (
                (0, Shutdown(libc::SIGTERM)),
                Some(Begin::KillNow {
                    first: Shutdown(libc::SIGTERM),
                }),
            ),
            (
                (30_000, LeaseGone),
                Some(Begin::KillNow { first: LeaseGone }),
            ),
        ];
        assert_table(rows, |(grace, reason)| {
            Stop::Standby.begin(reason, t0, ms(grace))
        });
        let stopping = Stop::stopping(Resign, t0 + ms(500), t0 + ms(500), t0, true);
        assert_eq!(stopping.extend_grace(t0 + ms(5_000)), None);
    }

    #[test]
    fn the_outcome_is_the_reason_the_stop_began_for() {
        let t0 = BootInstant::now();
        let rows = [
            (not_begun(t0), ChildExited),
            (stopping(Unhealthy, t0), Unhealthy),
            (Stop::Killing { reason: LeaseGone }, LeaseGone),
        ];
        assert_table(rows, Stop::outcome);
    }

    #[test]
    fn a_tree_is_gone_only_when_its_main_child_is_reaped_and_nothing_is_left() {
        let t0 = BootInstant::now();
        let resigning = stopping(Resign, t0);
        // ((main running, stage, any process left), expected)
        let rows = [
            ((true, not_begun(t0), true), AfterReap::Wait),
            ((true, not_begun(t0), false), AfterReap::Wait),
            ((true, resigning, true), AfterReap::Wait),
            ((false, not_begun(t0), true), AfterReap::StopLeftovers),
            ((false, resigning, true), AfterReap::Wait),
            ((false, not_begun(t0), false), AfterReap::Gone),
            ((false, resigning, false), AfterReap::Gone),
        ];
        assert_table(rows, |(running, stop, any_left)| {
            let main = match running {
                true => Main::Running {
                    pid: 42,
                    pidfd: None,
                },
                false => Main::Reaped(ChildStatus::Exited(0)),
            };
            let tree = Tree {
                pgid: 42,
                main,
                stop,
                stop_began: None,
                killed_at: None,
                terminal: false,
                demoting: false,
            };
            assert_eq!(tree.main_pid(), running.then_some(42));
            tree.after_reap(any_left)
        });
    }
}
