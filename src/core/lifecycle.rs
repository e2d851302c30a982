//! The lifecycle of a replica, as data: the one [`Phase`] type that the leadership loop moves
//! through and that logs, `/status` and systemd `STATUS=` all show; the typed [`StopReason`]s that
//! flow from the process thread to the loop; and [`decide`], the pure function that says what
//! follows once the child's tree is gone.
//!
//! ```text
//!   Starting ─► Standby ─► Leading ─► Stopping ─► Lost ─► Standby (recampaign) or exit
//!                              └──── child exited, --on-child-exit=restart ───┘ (stays Leading)
//! ```
//!
//! Invariants kept by the types: only `Leading` has a child pid; `Stopping` always has a reason;
//! `Lost` says why leadership ended. A shutdown request (SIGTERM, SIGINT) always wins in
//! [`decide`]: whatever else happened, the replica exits and never campaigns again. A suspension
//! asked for (Ctrl-Z, under job control) comes next: whatever would have campaigned again or
//! restarted the child suspends the replica instead (an exit stays an exit).

use std::fmt;
use std::time::Duration;

use crate::core::exit_code::signal_name;
use crate::core::exit_code::{ChildStatus, Exit};

/// A lease id, printed as etcd prints it (lower-case hex), which is also its election key's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLeaseLost {
    /// Exit with code 122 once the child's tree is gone.
    Exit,
    /// Take a new lease and go back to standby.
    Recampaign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnChildExit {
    /// Revoke the lease (a standby takes over at once) and exit with the child's status.
    Exit,
    /// Start the child again, with backoff, while still leader.
    Restart,
    /// Revoke the lease and campaign again as a standby.
    Recampaign,
}

/// Why the child's tree is being (or was) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// etcd reported the lease gone (revoked or expired): leadership is known to be lost.
    LeaseGone,
    /// Our leader key was deleted (an operator, or the lease expired): leadership is known lost.
    KeyDeleted,
    /// Another client put our leader key (`etcdctl put`), leaving it with another lease or create
    /// revision: the lease no longer fences it, so leadership is known lost.
    KeyChanged,
    /// No keepalive was acknowledged before the fail-closed deadline: leadership may be lost soon.
    Deadline,
    /// A step-down was requested (`--resign-signal`, `POST /resign`, `singleton-exec resign`).
    Resign,
    /// The child failed `--health-retries` health checks in a row: the leader steps down.
    Unhealthy,
    /// The child sent no `WATCHDOG=1` on its notify socket for `--watchdog`: the leader steps
    /// down.
    WatchdogMissed,
    /// The child sent `WATCHDOG=trigger` (it found itself broken): the leader steps down.
    WatchdogTrigger,
    /// The child did not send `READY=1` within `--ready-timeout`: the leader steps down.
    NotReady,
    /// `--hot-standby`: the leading child said `ROLE=standby` on its own (it cannot lead on):
    /// the leader steps down, and another replica's child is promoted.
    StoodDown,
    /// SIGTERM or SIGINT reached the supervisor.
    Shutdown(libc::c_int),
    /// Ctrl-Z under job control (the child stopped by SIGTSTP, or SIGTSTP to the supervisor):
    /// the tree is stopped, the lease given up, then the replica suspends itself.
    Suspend,
    /// The main child exited by itself; what is left of its tree is stopped.
    ChildExited,
}

impl StopReason {
    /// Whether another replica may already lead: then the tree gets SIGKILL at once, no grace.
    pub fn leadership_known_lost(self) -> bool {
        matches!(
            self,
            StopReason::LeaseGone | StopReason::KeyDeleted | StopReason::KeyChanged
        )
    }

    /// Whether this is a verdict on the child itself (its health checks, its watchdog, its
    /// readiness): the leader steps down like a resign, so a standby with a working child takes
    /// over. A verdict counts only while nothing else stops the tree, and never outranks the
    /// child's own exit ([`crate::leadership::transition`]).
    pub fn is_child_verdict(self) -> bool {
        matches!(
            self,
            StopReason::Unhealthy
                | StopReason::WatchdogMissed
                | StopReason::WatchdogTrigger
                | StopReason::NotReady
                | StopReason::StoodDown
        )
    }

    /// Whether this ends the leadership for lease reasons (`--on-lease-lost` applies).
    pub fn is_lease_loss(self) -> bool {
        matches!(
            self,
            StopReason::LeaseGone
                | StopReason::KeyDeleted
                | StopReason::KeyChanged
                | StopReason::Deadline
        )
    }

    /// The signal that starts the stop: SIGINT stays SIGINT (as dumb-init and tini do); everything
    /// else uses `--stop-signal`.
    pub fn stop_signal(self, configured: libc::c_int) -> libc::c_int {
        match self {
            StopReason::Shutdown(libc::SIGINT) => libc::SIGINT,
            _ => configured,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::LeaseGone => f.write_str("etcd reports the lease is gone"),
            StopReason::KeyDeleted => f.write_str("our leader key was deleted"),
            StopReason::KeyChanged => f.write_str(
                "our leader key was changed by another client (its lease or create revision)",
            ),
            StopReason::Deadline => {
                f.write_str("no keepalive was acknowledged before the renew deadline")
            }
            StopReason::Resign => f.write_str("step-down requested"),
            StopReason::Unhealthy => f.write_str("the child failed its health checks"),
            StopReason::WatchdogMissed => {
                f.write_str("the child sent no WATCHDOG=1 within --watchdog")
            }
            StopReason::WatchdogTrigger => {
                f.write_str("the child asked to be stopped (WATCHDOG=trigger)")
            }
            // With --hot-standby the same verdict on a promotion: no ROLE=leader in time.
            StopReason::NotReady => f.write_str(
                "the child sent no READY=1 within --ready-timeout (with --hot-standby: no ROLE=leader within --promote-timeout)",
            ),
            StopReason::StoodDown => {
                f.write_str("the child said it stands by (ROLE=standby) while it led")
            }
            StopReason::Shutdown(sig) => write!(f, "received {}", signal_name(*sig)),
            StopReason::Suspend => f.write_str("suspend requested (Ctrl-Z)"),
            StopReason::ChildExited => f.write_str("the child exited"),
        }
    }
}

/// Where a replica is; each variant carries exactly what is valid in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Started, no lease yet.
    Starting,
    /// In the queue with a live lease. `revision`: our key's create revision (our place in the
    /// queue; it becomes the fencing revision if this candidacy leads).
    Standby {
        lease: LeaseId,
        key: String,
        revision: i64,
    },
    /// Leading: the key is verified and the child runs. `revision` is the fencing revision (our
    /// key's create revision), here and in the phases after it.
    Leading {
        lease: LeaseId,
        key: String,
        revision: i64,
        pid: libc::pid_t,
        /// The slot held, with `--slots N` > 1.
        slot: Option<u32>,
    },
    /// The child's tree is being stopped; SIGKILL follows after `kill_in` (at once if zero).
    Stopping {
        key: String,
        revision: i64,
        reason: StopReason,
        kill_in: Duration,
    },
    /// This leadership is over and the child's tree is gone.
    Lost {
        key: String,
        revision: i64,
        reason: StopReason,
    },
}

impl Phase {
    /// The role name shown in logs, `/status` and `STATUS=`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Standby { .. } => "standby",
            Phase::Leading { .. } => "leader",
            Phase::Stopping { .. } => "stopping",
            Phase::Lost { .. } => "lost",
        }
    }

    pub fn key(&self) -> Option<&str> {
        match self {
            Phase::Starting => None,
            Phase::Standby { key, .. }
            | Phase::Leading { key, .. }
            | Phase::Stopping { key, .. }
            | Phase::Lost { key, .. } => Some(key),
        }
    }

    /// Our key's create revision, in any phase with a key.
    pub fn create_revision(&self) -> Option<i64> {
        match self {
            Phase::Starting => None,
            Phase::Standby { revision, .. }
            | Phase::Leading { revision, .. }
            | Phase::Stopping { revision, .. }
            | Phase::Lost { revision, .. } => Some(*revision),
        }
    }

    /// The fencing revision of the leadership this phase belongs to: none for a standby, whose
    /// key's create revision fences nothing (yet).
    pub fn fencing_revision(&self) -> Option<i64> {
        match self {
            Phase::Starting | Phase::Standby { .. } => None,
            Phase::Leading { revision, .. }
            | Phase::Stopping { revision, .. }
            | Phase::Lost { revision, .. } => Some(*revision),
        }
    }

    pub fn lease(&self) -> Option<LeaseId> {
        match self {
            Phase::Standby { lease, .. } | Phase::Leading { lease, .. } => Some(*lease),
            _ => None,
        }
    }

    pub fn child_pid(&self) -> Option<libc::pid_t> {
        match self {
            Phase::Leading { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// One line on why the replica is here, for logs and `STATUS=`.
    pub fn summary(&self) -> String {
        match self {
            Phase::Starting => "campaigning".into(),
            Phase::Standby { .. } => "waiting for leadership".into(),
            Phase::Leading { revision, .. } => {
                format!("child started (fencing revision {revision})")
            }
            Phase::Stopping {
                reason, kill_in, ..
            } if kill_in.is_zero() => format!("killing the child's tree at once: {reason}"),
            Phase::Stopping { reason, .. } => format!("stopping the child: {reason}"),
            Phase::Lost { reason, .. } => format!("leadership over: {reason}"),
        }
    }
}

/// The policies the user chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    pub on_child_exit: OnChildExit,
    pub on_lease_lost: OnLeaseLost,
}

/// What follows once the child's tree is gone. Everything but `Restart` gives the lease up
/// (revokes it) first, in one place ([`crate::leadership`]'s release path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Exit with this status.
    Exit(Exit),
    /// Start the child again under the same lease (with backoff).
    Restart,
    /// Campaign again; `holdoff` first waits `--resign-holdoff` so a standby takes over.
    Recampaign { holdoff: bool },
    /// Suspend this process (job control) until it is continued (`fg`, `bg`, SIGCONT), then
    /// campaign again with a fresh lease.
    Suspend,
}

/// What the user asked of the whole replica by signal, at any point of this leadership (sticky
/// until done): the stronger request wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Asked {
    Nothing,
    /// Ctrl-Z under job control.
    Suspend,
    /// SIGTERM or SIGINT.
    Shutdown,
}

/// The decision table. `reason` is why the tree was stopped first (or `ChildExited`), `asked`
/// what the user asked of the replica at any point, `status` the main child's status.
pub fn decide(reason: StopReason, asked: Asked, status: ChildStatus, p: Policies) -> Next {
    if asked == Asked::Shutdown || matches!(reason, StopReason::Shutdown(_)) {
        return Next::Exit(Exit::Child(status));
    }
    let next = match reason {
        StopReason::Suspend => Next::Suspend,
        // A wedged child steps down like a resign: a standby with a working child takes over;
        // with none, this replica leads again after the holdoff, which restarts the child.
        StopReason::Resign => Next::Recampaign { holdoff: true },
        r if r.is_child_verdict() => Next::Recampaign { holdoff: true },
        r if r.is_lease_loss() => match p.on_lease_lost {
            OnLeaseLost::Exit => Next::Exit(Exit::LeaseLost),
            OnLeaseLost::Recampaign => Next::Recampaign { holdoff: false },
        },
        _ => match p.on_child_exit {
            OnChildExit::Exit => Next::Exit(Exit::Child(status)),
            OnChildExit::Restart => Next::Restart,
            OnChildExit::Recampaign => Next::Recampaign { holdoff: false },
        },
    };
    // A Ctrl-Z that came while the tree was stopping for another reason still suspends: the
    // user waits for the job to stop. What would have exited exits all the same.
    match next {
        Next::Restart | Next::Recampaign { .. } if asked == Asked::Suspend => Next::Suspend,
        next => next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_print_as_etcd_does() {
        assert_eq!(LeaseId(0x694d77aa9e4f2a1b).to_string(), "694d77aa9e4f2a1b");
        assert_eq!(LeaseId(255).to_string(), "ff");
    }

    const REASONS: [StopReason; 14] = [
        StopReason::LeaseGone,
        StopReason::KeyDeleted,
        StopReason::KeyChanged,
        StopReason::Deadline,
        StopReason::Resign,
        StopReason::Unhealthy,
        StopReason::WatchdogMissed,
        StopReason::WatchdogTrigger,
        StopReason::NotReady,
        StopReason::StoodDown,
        StopReason::Shutdown(libc::SIGTERM),
        StopReason::Shutdown(libc::SIGINT),
        StopReason::Suspend,
        StopReason::ChildExited,
    ];
    const ASKED: [Asked; 3] = [Asked::Nothing, Asked::Suspend, Asked::Shutdown];
    const CHILD_EXIT: [OnChildExit; 3] = [
        OnChildExit::Exit,
        OnChildExit::Restart,
        OnChildExit::Recampaign,
    ];
    const LEASE_LOST: [OnLeaseLost; 2] = [OnLeaseLost::Exit, OnLeaseLost::Recampaign];

    /// The expected row of the table, written out independently of `decide`'s structure.
    fn expected(reason: StopReason, asked: Asked, status: ChildStatus, p: Policies) -> Next {
        use Asked as A;
        use OnChildExit as C;
        use OnLeaseLost as L;
        use StopReason as R;
        const LOSS_EXIT: Next = Next::Exit(Exit::LeaseLost);
        match (reason, asked, p.on_child_exit, p.on_lease_lost) {
            (_, A::Shutdown, _, _) | (R::Shutdown(_), _, _, _) => Next::Exit(Exit::Child(status)),
            (R::Suspend, _, _, _) => Next::Suspend,
            (
                R::Resign
                | R::Unhealthy
                | R::WatchdogMissed
                | R::WatchdogTrigger
                | R::NotReady
                | R::StoodDown,
                A::Suspend,
                _,
                _,
            ) => Next::Suspend,
            (
                R::Resign
                | R::Unhealthy
                | R::WatchdogMissed
                | R::WatchdogTrigger
                | R::NotReady
                | R::StoodDown,
                A::Nothing,
                _,
                _,
            ) => Next::Recampaign { holdoff: true },
            (R::LeaseGone | R::KeyDeleted | R::KeyChanged | R::Deadline, _, _, L::Exit) => {
                LOSS_EXIT
            }
            (R::LeaseGone | R::KeyDeleted | R::KeyChanged | R::Deadline, A::Suspend, _, _) => {
                Next::Suspend
            }
            (R::LeaseGone | R::KeyDeleted | R::KeyChanged | R::Deadline, A::Nothing, _, _) => {
                Next::Recampaign { holdoff: false }
            }
            (R::ChildExited, _, C::Exit, _) => Next::Exit(Exit::Child(status)),
            (R::ChildExited, A::Suspend, C::Restart | C::Recampaign, _) => Next::Suspend,
            (R::ChildExited, A::Nothing, C::Restart, _) => Next::Restart,
            (R::ChildExited, A::Nothing, C::Recampaign, _) => Next::Recampaign { holdoff: false },
        }
    }

    #[test]
    fn every_combination_of_reason_request_and_policies() {
        let mut rows = 0;
        for reason in REASONS {
            for asked in ASKED {
                for on_child_exit in CHILD_EXIT {
                    for on_lease_lost in LEASE_LOST {
                        for status in [ChildStatus::Exited(0), ChildStatus::Signaled(9)] {
                            let p = Policies {
                                on_child_exit,
                                on_lease_lost,
                            };
                            assert_eq!(
                                decide(reason, asked, status, p),
                                expected(reason, asked, status, p),
                                "{reason:?} {asked:?} {p:?} {status:?}"
                            );
                            rows += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(rows, REASONS.len() * 3 * 3 * 2 * 2);
    }

    #[test]
    fn a_shutdown_always_wins() {
        for reason in REASONS {
            for on_child_exit in CHILD_EXIT {
                for on_lease_lost in LEASE_LOST {
                    let p = Policies {
                        on_child_exit,
                        on_lease_lost,
                    };
                    let next = decide(reason, Asked::Shutdown, ChildStatus::Exited(3), p);
                    assert_eq!(next, Next::Exit(Exit::Child(ChildStatus::Exited(3))));
                }
            }
        }
        assert!(Asked::Shutdown > Asked::Suspend && Asked::Suspend > Asked::Nothing);
    }

    /// A suspension never keeps the child running or the lease held (no `Restart`), and never
    /// turns an exit into something else.
    #[test]
    fn a_suspension_asked_for_never_restarts_and_never_cancels_an_exit() {
        for reason in REASONS {
            for on_child_exit in CHILD_EXIT {
                for on_lease_lost in LEASE_LOST {
                    let p = Policies {
                        on_child_exit,
                        on_lease_lost,
                    };
                    let status = ChildStatus::Exited(3);
                    let suspended = decide(reason, Asked::Suspend, status, p);
                    assert_ne!(suspended, Next::Restart, "{reason:?} {p:?}");
                    if let Next::Exit(e) = decide(reason, Asked::Nothing, status, p) {
                        assert_eq!(suspended, Next::Exit(e), "{reason:?} {p:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn known_loss_kills_at_once_and_sigint_stays_sigint() {
        assert!(StopReason::LeaseGone.leadership_known_lost());
        assert!(StopReason::KeyDeleted.leadership_known_lost());
        for r in [
            StopReason::Deadline,
            StopReason::Resign,
            StopReason::Unhealthy,
            StopReason::WatchdogMissed,
            StopReason::WatchdogTrigger,
            StopReason::NotReady,
            StopReason::StoodDown,
            StopReason::ChildExited,
            StopReason::Shutdown(libc::SIGTERM),
            StopReason::Suspend,
        ] {
            assert!(!r.leadership_known_lost(), "{r:?}");
            assert!(!(r.is_lease_loss() && r.is_child_verdict()), "{r:?}");
        }
        let verdicts: Vec<StopReason> = REASONS
            .into_iter()
            .filter(|r| r.is_child_verdict())
            .collect();
        assert_eq!(
            verdicts,
            [
                StopReason::Unhealthy,
                StopReason::WatchdogMissed,
                StopReason::WatchdogTrigger,
                StopReason::NotReady,
                StopReason::StoodDown
            ]
        );
        assert!(!StopReason::Suspend.is_lease_loss());
        assert_eq!(
            StopReason::Suspend.stop_signal(libc::SIGQUIT),
            libc::SIGQUIT
        );
        assert_eq!(
            StopReason::Shutdown(libc::SIGINT).stop_signal(libc::SIGQUIT),
            libc::SIGINT
        );
        assert_eq!(
            StopReason::Shutdown(libc::SIGTERM).stop_signal(libc::SIGQUIT),
            libc::SIGQUIT
        );
        assert_eq!(
            StopReason::Deadline.stop_signal(libc::SIGTERM),
            libc::SIGTERM
        );
    }

    #[test]
    fn phases_carry_only_their_data() {
        let leading = Phase::Leading {
            lease: LeaseId(0xab),
            key: "/p/e/ab".into(),
            revision: 7,
            pid: 42,
            slot: None,
        };
        assert_eq!(leading.name(), "leader");
        assert_eq!(leading.child_pid(), Some(42));
        assert_eq!(leading.lease(), Some(LeaseId(0xab)));
        assert!(leading.summary().contains("fencing revision 7"));
        let stopping = Phase::Stopping {
            key: "/p/e/ab".into(),
            revision: 7,
            reason: StopReason::KeyDeleted,
            kill_in: Duration::ZERO,
        };
        assert_eq!(stopping.child_pid(), None);
        assert!(
            stopping.summary().contains("at once"),
            "{}",
            stopping.summary()
        );
        assert_eq!(Phase::Starting.key(), None);
        assert_eq!(
            Phase::Lost {
                key: "k".into(),
                revision: 3,
                reason: StopReason::Resign
            }
            .summary(),
            "leadership over: step-down requested"
        );
    }
}
