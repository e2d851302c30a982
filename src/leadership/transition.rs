//! One leadership as data: where it is ([`Lead`]), what can happen to it ([`Input`]), and the pure
//! transition ([`step`]) that says where it goes and what the loop must do ([`Action`]).
//!
//! ```text
//!            Started                  TreeGone, decide() = Restart          PauseOver
//! Spawning ─────────► Running ──────────────────────────────────► Pausing ───────────► Verifying
//!    ▲                   │ StopWanted(r): Stop(r), first one kept      │ StopWanted, Shutdown   │
//!    │                   │ TreeGone, decide() ≠ Restart                ▼                        │
//!    │                   └──────────────────────────────────────► Over(Release) ◄───────────────┤
//!    │                                                                             not ours      │
//!    └───────────────────────────────────────────── ours: Spawn ────────────────────────────────┘
//! ```
//!
//! The loop ([`super::lead`]) only gathers the next input for the state it is in, applies the
//! action, and on `Over` releases: that is its one exit. Everything it decides is here, tested by
//! table:
//! * what follows a child's tree is [`decide`]d, with the reason we asked for first (a step-down
//!   must not turn into a restart because the child happened to exit meanwhile), except a health
//!   verdict, which never outranks the child's own exit ([`final_reason`]);
//! * a start refused before any child ran (lease too short, shutdown first) never exits with a
//!   child's status: there was none (`Exit::Withdrew`);
//! * a verdict on the child (its health checks, its watchdog, its readiness:
//!   [`StopReason::is_child_verdict`]) asks for a stop only while no stop is asked for or under
//!   way, and checks start only then ([`Lead::checks_allowed`]); every other reason to stop is passed to the process
//!   thread each time, since a known loss of leadership escalates a stop already under way to
//!   SIGKILL;
//! * once the process thread is gone nobody can vouch that the child's tree is dead, so the lease
//!   is not given up by us ([`Ending::Abandon`]);
//! * a suspension asked for (Ctrl-Z) is sticky ([`Facts::asked`]): a child that starts meanwhile
//!   is stopped at once, no child is started after it, and the leadership ends in
//!   [`Next::Suspend`] (see [`decide`]), always through the release, so after the tree is gone.
//!
//! With `--hot-standby` ([`Facts::hot`]) the child runs already when the leadership begins:
//!
//! ```text
//!              Promoted: TellLeader                       StopWanted(r), Shutdown: Demote
//! Promoting ───────────────────────► Running ─────────────────────────────────► Demoting(r)
//!    │ PromoteRefused(NoChild): Spawn (a child started as the leader)             │ Demoted
//!    └──────────────────────────────► Spawning                                    ▼
//!                                                          Over(Release), the child kept as a standby
//! ```
//!
//! * a promotion refused by the process thread because no child runs starts one as the leader;
//!   refused for a shutdown or a lease too short, it ends as a refused start does;
//! * a step-down for any reason but a known loss of leadership, a passed deadline or a
//!   suspension demotes the child instead of stopping it: the lease is given up only once the
//!   child confirms (`Demoted`) or its tree is gone; a known loss, the deadline or a suspension
//!   while demoting stops the tree as in `Running` (the first reason kept).

use crate::core::exit_code::{ChildStatus, Exit};
use crate::core::lifecycle::{decide, Asked, Next, Policies, StopReason};
use crate::process::contract::PromoteRefusal;

/// Where one leadership is; each variant carries only what is valid in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// The child was asked to start. `last`: the child before it, under `--on-child-exit
    /// restart`; `None` for the first.
    Spawning { last: Option<ChildStatus> },
    /// The child's tree runs. `requested`: the first stop this loop asked for; `stopping`: the
    /// process thread has begun a stop sequence (whoever began it).
    Running {
        requested: Option<StopReason>,
        stopping: bool,
    },
    /// Between two children under `--on-child-exit restart`.
    Pausing { last: ChildStatus },
    /// Before a restart: is our leader key still ours?
    Verifying { last: ChildStatus },
    /// `--hot-standby`: the standby's child is to lead; the process thread arms the deadline.
    Promoting,
    /// `--hot-standby`: the child is told to stand by; the lease is given up once it confirms,
    /// or once its tree is gone. `reason`: why it stops leading.
    Demoting { reason: StopReason },
    /// The leadership is over.
    Over(Ending),
}

/// How a leadership ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// No process of the child's tree is left: give the lease up, then `next`. `reason` is why
    /// (none when the command could not be started); `key_found_gone`: a read found our key gone,
    /// perhaps before the watch saw its deletion.
    Release {
        reason: Option<StopReason>,
        next: Next,
        key_found_gone: bool,
    },
    /// The process thread is gone while a tree may exist: exit without revoking; the lease
    /// expires on its own.
    Abandon(Exit),
}

/// What the loop observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The child started.
    Started,
    /// The command could not be started (exec failed): exit with this.
    SpawnFailed(Exit),
    /// The child was not started: the lease has too little time left, or a shutdown came first.
    SpawnRefused(StopReason),
    /// Leadership must end, or a step-down for this leadership was asked for.
    StopWanted(StopReason),
    /// The process thread began a stop sequence.
    Stopping,
    /// SIGTERM or SIGINT arrived.
    Shutdown(libc::c_int),
    /// The main child was reaped and no process of its tree is left.
    TreeGone {
        status: ChildStatus,
        reason: StopReason,
    },
    /// The pause before a restart is over.
    PauseOver,
    /// Whether our leader key is still ours (when etcd cannot say, it counts as ours: the
    /// lease deadline still holds).
    KeyChecked { ours: bool },
    /// The process thread is gone.
    ThreadGone,
    /// `--hot-standby`: the process thread armed the deadline for the promoted child.
    Promoted,
    /// `--hot-standby`: the child could not be promoted.
    PromoteRefused(PromoteRefusal),
    /// `--hot-standby`: the child confirmed its demotion (`ROLE=standby`).
    Demoted,
}

/// What the loop must do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Ask the process thread to start the child under the lease's current deadline.
    Spawn,
    /// Ask the process thread to stop the tree for this reason.
    Stop(StopReason),
    /// Wait (by the restart backoff) before starting the child again.
    PauseBeforeRestart,
    /// Read our leader key back.
    VerifyKey,
    /// `--hot-standby`: ask the process thread to arm the deadline for the standby's child.
    Promote,
    /// `--hot-standby`: tell the child it leads (role file, role signal).
    TellLeader,
    /// `--hot-standby`: tell the child to stand by (role file, role signal), the deadline frozen.
    Demote,
    /// `--hot-standby`: wait for the child's tree, which is being stopped, to be gone; then ask
    /// for the promotion again (no child then: one is started as the leader).
    PromoteAfterTree,
}

/// What the transition reads and does not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// What the user asked of the replica by signal at some point (sticky): a shutdown, or a
    /// suspension not yet done.
    pub asked: Asked,
    pub policies: Policies,
    /// `--hot-standby`: a step-down demotes the child rather than stopping it.
    pub hot: bool,
}

impl Lead {
    /// A new leadership: its first child is asked for at once.
    pub fn begin() -> (Lead, Option<Action>) {
        (Lead::Spawning { last: None }, Some(Action::Spawn))
    }

    /// A new leadership of a hot standby: its child, if one runs, is promoted.
    pub fn begin_hot() -> (Lead, Option<Action>) {
        (Lead::Promoting, Some(Action::Promote))
    }

    /// Whether a health check may start or count: only while the tree runs and no stop is asked
    /// for or under way (then results mean nothing).
    pub fn checks_allowed(&self) -> bool {
        matches!(
            self,
            Lead::Running {
                requested: None,
                stopping: false
            }
        )
    }
}

/// The transition: where `state` goes on `input`, and what to do.
pub fn step(state: Lead, input: Input, facts: Facts) -> (Lead, Option<Action>) {
    use Input as I;
    match (state, input) {
        (Lead::Over(_), _) => (state, None),
        (_, I::ThreadGone) => (thread_gone(state), None),
        // Ctrl-Z came while the child was starting: it is stopped at once.
        (Lead::Spawning { .. }, I::Started) if facts.asked == Asked::Suspend => (
            Lead::Running {
                requested: Some(StopReason::Suspend),
                stopping: false,
            },
            Some(Action::Stop(StopReason::Suspend)),
        ),
        // A hot standby's leader started while a shutdown came: the process thread left it to a
        // demotion; a child that has just started is simply stopped.
        (Lead::Spawning { .. }, I::Started) if facts.hot && facts.asked == Asked::Shutdown => {
            let reason = StopReason::Shutdown(libc::SIGTERM);
            (
                Lead::Running {
                    requested: Some(reason),
                    stopping: false,
                },
                Some(Action::Stop(reason)),
            )
        }
        (Lead::Spawning { .. }, I::Started) => (
            Lead::Running {
                requested: None,
                stopping: false,
            },
            None,
        ),
        (Lead::Spawning { .. }, I::SpawnFailed(exit)) => {
            (release(None, Next::Exit(exit), false), None)
        }
        (Lead::Spawning { last }, I::SpawnRefused(reason)) => (
            release(Some(reason), refused(reason, last, facts), false),
            None,
        ),
        (
            Lead::Running {
                requested,
                stopping,
            },
            input,
        ) => running(requested, stopping, input, facts),
        (Lead::Pausing { last }, I::PauseOver) => {
            (Lead::Verifying { last }, Some(Action::VerifyKey))
        }
        (Lead::Pausing { last }, I::StopWanted(reason)) => (ended(reason, last, facts), None),
        (Lead::Pausing { last }, I::Shutdown(sig)) => {
            (ended(StopReason::Shutdown(sig), last, facts), None)
        }
        // No child is started once a suspension is asked for.
        (Lead::Verifying { last }, I::KeyChecked { ours: true })
            if facts.asked == Asked::Suspend =>
        {
            (ended(StopReason::Suspend, last, facts), None)
        }
        (Lead::Verifying { last }, I::KeyChecked { ours: true }) => {
            (Lead::Spawning { last: Some(last) }, Some(Action::Spawn))
        }
        (Lead::Verifying { last }, I::KeyChecked { ours: false }) => {
            let next = decide(StopReason::KeyDeleted, facts.asked, last, facts.policies);
            (release(Some(StopReason::KeyDeleted), next, true), None)
        }
        (Lead::Promoting, input) => promoting(input, facts),
        (Lead::Demoting { reason }, input) => demoting(reason, input, facts),
        // Anything else changes nothing here: while spawning, the process thread answers every
        // start (a shutdown makes it refuse or stop the child); while verifying, the read is
        // bounded and the start after it checks the lease again.
        (state, _) => (state, None),
    }
}

/// While the tree runs.
fn running(
    requested: Option<StopReason>,
    stopping: bool,
    input: Input,
    facts: Facts,
) -> (Lead, Option<Action>) {
    let state = Lead::Running {
        requested,
        stopping,
    };
    match input {
        Input::TreeGone { status, reason } => {
            let reason = final_reason(reason, requested);
            match decide(reason, facts.asked, status, facts.policies) {
                Next::Restart => (
                    Lead::Pausing { last: status },
                    Some(Action::PauseBeforeRestart),
                ),
                next => (release(Some(reason), next, false), None),
            }
        }
        Input::StopWanted(reason) if reason.is_child_verdict() && !state.checks_allowed() => {
            (state, None)
        }
        // A hot standby's child is demoted, unless something else stops the tree already.
        Input::StopWanted(reason)
            if facts.hot && demotes(reason) && requested.is_none() && !stopping =>
        {
            (Lead::Demoting { reason }, Some(Action::Demote))
        }
        // The process thread leaves a leading hot child to its demotion (it froze the deadline).
        Input::Shutdown(sig) if facts.hot && requested.is_none() && !stopping => (
            Lead::Demoting {
                reason: StopReason::Shutdown(sig),
            },
            Some(Action::Demote),
        ),
        Input::StopWanted(reason) => (
            Lead::Running {
                requested: requested.or(Some(reason)),
                stopping,
            },
            Some(Action::Stop(reason)),
        ),
        Input::Stopping => (
            Lead::Running {
                requested,
                stopping: true,
            },
            None,
        ),
        // A shutdown signal is the process thread's to act on: it has begun the stop.
        _ => (state, None),
    }
}

/// `--hot-standby`: the standby's child is being promoted.
fn promoting(input: Input, facts: Facts) -> (Lead, Option<Action>) {
    let stop = |reason| {
        let state = Lead::Running {
            requested: Some(reason),
            stopping: false,
        };
        (state, Some(Action::Stop(reason)))
    };
    match input {
        Input::Promoted if facts.asked == Asked::Suspend => stop(StopReason::Suspend),
        Input::Promoted => (
            Lead::Running {
                requested: None,
                stopping: false,
            },
            Some(Action::TellLeader),
        ),
        // The standby's child is gone: one is started as the leader, as without --hot-standby.
        Input::PromoteRefused(PromoteRefusal::NoChild) => {
            (Lead::Spawning { last: None }, Some(Action::Spawn))
        }
        // The process thread is stopping the standby's child (which never led here): the lease
        // can go; the replica waits for that tree before it exits.
        Input::PromoteRefused(PromoteRefusal::Shutdown(sig)) => {
            let reason = StopReason::Shutdown(sig);
            (
                release(Some(reason), refused(reason, None, facts), false),
                None,
            )
        }
        Input::PromoteRefused(PromoteRefusal::NoLeaseTime) => {
            let reason = StopReason::Deadline;
            (
                release(Some(reason), refused(reason, None, facts), false),
                None,
            )
        }
        // The standby's child ended as its replica won (no child to promote): by itself, then
        // by --on-child-exit, as a leader's child's exit would be (started again as the leader,
        // or the replica goes with it); stopped by a shutdown, then the replica exits with it.
        Input::TreeGone { status, reason } => {
            match decide(reason, facts.asked, status, facts.policies) {
                Next::Restart | Next::Recampaign { .. } if reason == StopReason::ChildExited => {
                    (Lead::Spawning { last: Some(status) }, Some(Action::Spawn))
                }
                next => (release(Some(reason), next, false), None),
            }
        }
        // A tree on its way out (a standby's leftovers, a stop begun before the last release):
        // waited for, then asked again.
        Input::PromoteRefused(PromoteRefusal::NotStandby) => {
            (Lead::Promoting, Some(Action::PromoteAfterTree))
        }
        _ => (Lead::Promoting, None),
    }
}

/// `--hot-standby`: the child is told to stand by, for `reason`.
fn demoting(reason: StopReason, input: Input, facts: Facts) -> (Lead, Option<Action>) {
    match input {
        Input::Demoted => (release(Some(reason), demoted(reason, facts), false), None),
        Input::TreeGone { .. } => running(Some(reason), true, input, facts),
        // No time to wait for a confirmation: the tree is stopped, the first reason kept.
        Input::StopWanted(r) if !demotes(r) => (
            Lead::Running {
                requested: Some(reason),
                stopping: false,
            },
            Some(Action::Stop(r)),
        ),
        // The process thread began a stop (the deadline, a second shutdown signal).
        Input::Stopping => (
            Lead::Running {
                requested: Some(reason),
                stopping: true,
            },
            None,
        ),
        _ => (Lead::Demoting { reason }, None),
    }
}

/// Whether a step-down for `reason` demotes a hot standby's child: not when another replica may
/// lead already, the deadline has passed, or the replica is to suspend (with no child); nor when
/// the child did not confirm its promotion in time (`NotReady`): that is a failed start, so the
/// child is stopped, and started again as a standby by the restart policy. A child that stood
/// down by itself (`StoodDown`) is told `standby` like any other: the lease goes once it
/// confirms that, after the file changed.
fn demotes(reason: StopReason) -> bool {
    matches!(
        reason,
        StopReason::Resign
            | StopReason::Unhealthy
            | StopReason::WatchdogMissed
            | StopReason::WatchdogTrigger
            | StopReason::StoodDown
            | StopReason::Shutdown(_)
    )
}

/// What follows a confirmed demotion: the replica exits on a shutdown (after its standby's
/// child is stopped, with that child's status), suspends on Ctrl-Z, and otherwise campaigns
/// again after the holdoff, so another replica takes over.
fn demoted(reason: StopReason, facts: Facts) -> Next {
    if facts.asked == Asked::Shutdown || matches!(reason, StopReason::Shutdown(_)) {
        return Next::Exit(Exit::Withdrew);
    }
    if facts.asked == Asked::Suspend {
        return Next::Suspend;
    }
    Next::Recampaign { holdoff: true }
}

/// Why the tree ended, as the transition decides on it: what was asked first still counts if the
/// child exited by itself meanwhile, except a verdict on the child and a suspension, which never
/// outrank the child's own exit (its status and `--on-child-exit` apply: an exit is not lost to
/// a Ctrl-Z, and the sticky [`Asked::Suspend`] still suspends whatever would have run on).
pub fn final_reason(reported: StopReason, requested: Option<StopReason>) -> StopReason {
    match (reported, requested) {
        (StopReason::ChildExited, Some(asked))
            if !asked.is_child_verdict() && asked != StopReason::Suspend =>
        {
            asked
        }
        _ => reported,
    }
}

/// A start was refused: what follows, given the child before it (if any). With none, a
/// shutdown exits as a withdrawal, not with a child's status: no child ran.
fn refused(reason: StopReason, last: Option<ChildStatus>, facts: Facts) -> Next {
    let status = last.unwrap_or(ChildStatus::Exited(0));
    match decide(reason, facts.asked, status, facts.policies) {
        Next::Exit(Exit::Child(_)) if last.is_none() => Next::Exit(Exit::Withdrew),
        next => next,
    }
}

/// Leadership ended between two children.
fn ended(reason: StopReason, last: ChildStatus, facts: Facts) -> Lead {
    release(
        Some(reason),
        decide(reason, facts.asked, last, facts.policies),
        false,
    )
}

fn release(reason: Option<StopReason>, next: Next, key_found_gone: bool) -> Lead {
    Lead::Over(Ending::Release {
        reason,
        next,
        key_found_gone,
    })
}

/// The process thread is gone. While a tree runs nobody can vouch that it is dead; otherwise
/// there is none, and the lease is given up as after any failure to start.
fn thread_gone(state: Lead) -> Lead {
    match state {
        Lead::Running { .. } | Lead::Promoting | Lead::Demoting { .. } => {
            Lead::Over(Ending::Abandon(Exit::Internal))
        }
        _ => release(None, Next::Exit(Exit::Internal), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::{OnChildExit, OnLeaseLost};

    use ChildStatus::{Exited, Signaled};
    use StopReason as R;

    const TERM: libc::c_int = libc::SIGTERM;
    const NONE: Option<Action> = None;
    const AGAIN: Next = Next::Recampaign { holdoff: false };
    const HOLDOFF: Next = Next::Recampaign { holdoff: true };

    fn facts(shutdown: bool, on_child_exit: OnChildExit) -> Facts {
        let on_lease_lost = OnLeaseLost::Recampaign;
        Facts {
            asked: if shutdown {
                Asked::Shutdown
            } else {
                Asked::Nothing
            },
            policies: Policies {
                on_child_exit,
                on_lease_lost,
            },
            hot: false,
        }
    }

    const EXIT: Facts = Facts {
        asked: Asked::Nothing,
        policies: Policies {
            on_child_exit: OnChildExit::Exit,
            on_lease_lost: OnLeaseLost::Recampaign,
        },
        hot: false,
    };
    const RESTART: Facts = Facts {
        asked: Asked::Nothing,
        policies: Policies {
            on_child_exit: OnChildExit::Restart,
            on_lease_lost: OnLeaseLost::Recampaign,
        },
        hot: false,
    };

    fn running(requested: Option<StopReason>, stopping: bool) -> Lead {
        Lead::Running {
            requested,
            stopping,
        }
    }

    fn rel(reason: StopReason, next: Next) -> Lead {
        Lead::Over(Ending::Release {
            reason: Some(reason),
            next,
            key_found_gone: false,
        })
    }

    fn want(reason: StopReason) -> Input {
        Input::StopWanted(reason)
    }

    fn stop(reason: StopReason) -> Option<Action> {
        Some(Action::Stop(reason))
    }

    fn child(status: ChildStatus) -> Next {
        Next::Exit(Exit::Child(status))
    }

    fn gone(status: ChildStatus, reason: StopReason) -> Input {
        Input::TreeGone { status, reason }
    }

    fn check(rows: &[(Lead, Input, Facts, Lead, Option<Action>)]) {
        for (i, &(state, input, facts, want, action)) in rows.iter().enumerate() {
            assert_eq!(
                step(state, input, facts),
                (want, action),
                "row {i}: {state:?} on {input:?}"
            );
        }
    }

    #[test]
    fn a_leadership_begins_by_asking_for_its_child() {
        assert_eq!(
            Lead::begin(),
            (Lead::Spawning { last: None }, Some(Action::Spawn))
        );
    }

    #[test]
    #[rustfmt::skip]
    fn starting_the_child() {
        let first = Lead::Spawning { last: None };
        let again = Lead::Spawning { last: Some(Exited(3)) };
        let failed = |exit| Lead::Over(Ending::Release {
            reason: None, next: Next::Exit(exit), key_found_gone: false,
        });
        check(&[
            (first, Input::Started, EXIT, running(None, false), NONE),
            (again, Input::Started, RESTART, running(None, false), NONE),
            (first, Input::SpawnFailed(Exit::NotFound), EXIT, failed(Exit::NotFound), NONE),
            // A restart whose exec fails (the binary was removed) exits with exec's code too.
            (again, Input::SpawnFailed(Exit::NotExecutable), RESTART, failed(Exit::NotExecutable), NONE),
            // Events the process thread will follow with an answer change nothing.
            (first, Input::Shutdown(TERM), EXIT, first, NONE),
            (first, Input::Stopping, EXIT, first, NONE),
            (first, Input::PauseOver, EXIT, first, NONE),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_refused_first_start_never_exits_with_a_child_status() {
        let first = Lead::Spawning { last: None };
        let withdrew = Next::Exit(Exit::Withdrew);
        check(&[
            // A shutdown before any child ran: a withdrawal.
            (first, Input::SpawnRefused(R::Shutdown(TERM)), facts(true, OnChildExit::Exit),
                rel(R::Shutdown(TERM), withdrew), NONE),
            // Too little lease left: a lease loss, campaign again.
            (first, Input::SpawnRefused(R::Deadline), EXIT, rel(R::Deadline, AGAIN), NONE),
            // The same with a shutdown already recorded: still a withdrawal.
            (first, Input::SpawnRefused(R::Deadline), facts(true, OnChildExit::Restart),
                rel(R::Deadline, withdrew), NONE),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_refused_restart_exits_with_the_last_child_status() {
        let again = Lead::Spawning { last: Some(Exited(7)) };
        check(&[
            (again, Input::SpawnRefused(R::Shutdown(TERM)), facts(true, OnChildExit::Restart),
                rel(R::Shutdown(TERM), child(Exited(7))), NONE),
            (again, Input::SpawnRefused(R::Deadline), RESTART, rel(R::Deadline, AGAIN), NONE),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn the_first_stop_asked_for_is_kept_and_every_one_is_passed_on() {
        let resigning = running(Some(R::Resign), true);
        check(&[
            (running(None, false), want(R::Resign), EXIT, running(Some(R::Resign), false), stop(R::Resign)),
            // A known loss after a step-down: passed on (the process thread escalates to
            // SIGKILL), the first reason kept.
            (resigning, want(R::LeaseGone), EXIT, resigning, stop(R::LeaseGone)),
            (running(None, true), want(R::KeyDeleted), EXIT, running(Some(R::KeyDeleted), true), stop(R::KeyDeleted)),
            (running(Some(R::Deadline), false), Input::Stopping, EXIT, running(Some(R::Deadline), true), NONE),
            // The process thread acts on a shutdown signal itself.
            (running(None, false), Input::Shutdown(TERM), facts(true, OnChildExit::Exit), running(None, false), NONE),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_verdict_on_the_child_counts_only_while_nothing_else_stops_the_tree() {
        let (healthy, resigning, stopping) = (running(None, false), running(Some(R::Resign), false), running(None, true));
        for verdict in [R::Unhealthy, R::WatchdogMissed, R::WatchdogTrigger, R::NotReady, R::StoodDown] {
            check(&[
                (healthy, want(verdict), EXIT, running(Some(verdict), false), stop(verdict)),
                (resigning, want(verdict), EXIT, resigning, NONE),
                (stopping, want(verdict), EXIT, stopping, NONE),
                // Once stopping for it, it is what the tree ended for (a step-down), unless the
                // child exited by itself meanwhile.
                (running(Some(verdict), true), gone(Signaled(15), verdict), RESTART, rel(verdict, HOLDOFF), NONE),
                (running(Some(verdict), true), gone(Exited(0), R::ChildExited), RESTART,
                    Lead::Pausing { last: Exited(0) }, Some(Action::PauseBeforeRestart)),
            ]);
        }
        assert!(healthy.checks_allowed());
        for not_now in [resigning, stopping, Lead::Spawning { last: None }, Lead::Pausing { last: Exited(0) }] {
            assert!(!not_now.checks_allowed(), "{not_now:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn when_the_tree_is_gone() {
        let pause = Some(Action::PauseBeforeRestart);
        let recampaign = facts(false, OnChildExit::Recampaign);
        let shutting_down = facts(true, OnChildExit::Restart);
        let (idle, resigning, unhealthy) = (running(None, false), running(Some(R::Resign), true), running(Some(R::Unhealthy), true));
        check(&[
            // The child exited by itself: --on-child-exit decides.
            (idle, gone(Exited(4), R::ChildExited), EXIT, rel(R::ChildExited, child(Exited(4))), NONE),
            (idle, gone(Exited(4), R::ChildExited), RESTART, Lead::Pausing { last: Exited(4) }, pause),
            (idle, gone(Exited(4), R::ChildExited), recampaign, rel(R::ChildExited, AGAIN), NONE),
            // A step-down asked for wins over the child's own exit meanwhile: no restart.
            (resigning, gone(Exited(0), R::ChildExited), RESTART, rel(R::Resign, HOLDOFF), NONE),
            // A health verdict does not outrank the child's own exit.
            (unhealthy, gone(Exited(0), R::ChildExited), RESTART, Lead::Pausing { last: Exited(0) }, pause),
            (unhealthy, gone(Signaled(15), R::Unhealthy), RESTART, rel(R::Unhealthy, HOLDOFF), NONE),
            // A shutdown always wins, with the child's status.
            (idle, gone(Signaled(15), R::Shutdown(TERM)), shutting_down, rel(R::Shutdown(TERM), child(Signaled(15))), NONE),
            // The deadline passed: a lease loss.
            (idle, gone(Signaled(9), R::Deadline), EXIT, rel(R::Deadline, AGAIN), NONE),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn between_two_children() {
        let pausing = Lead::Pausing { last: Exited(2) };
        let verify = Some(Action::VerifyKey);
        check(&[
            (pausing, Input::PauseOver, RESTART, Lead::Verifying { last: Exited(2) }, verify),
            (pausing, want(R::LeaseGone), RESTART, rel(R::LeaseGone, AGAIN), NONE),
            (pausing, want(R::Resign), RESTART, rel(R::Resign, HOLDOFF), NONE),
            // A shutdown while no child runs exits with the last child's status.
            (pausing, Input::Shutdown(TERM), facts(true, OnChildExit::Restart), rel(R::Shutdown(TERM), child(Exited(2))), NONE),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_restart_first_reads_the_key_back() {
        let verifying = Lead::Verifying { last: Exited(1) };
        let not_ours = Lead::Over(Ending::Release {
            reason: Some(R::KeyDeleted), next: AGAIN, key_found_gone: true,
        });
        check(&[
            (verifying, Input::KeyChecked { ours: true }, RESTART,
                Lead::Spawning { last: Some(Exited(1)) }, Some(Action::Spawn)),
            (verifying, Input::KeyChecked { ours: false }, RESTART, not_ours, NONE),
            // The shutdown is recorded; the start after the read is refused by the thread.
            (verifying, Input::Shutdown(TERM), facts(true, OnChildExit::Restart), verifying, NONE),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn a_suspension_stops_the_tree_then_releases() {
        let suspending = Facts { asked: Asked::Suspend, ..EXIT };
        let restarting = Facts { asked: Asked::Suspend, ..RESTART };
        let idle = running(None, false);
        let asked = running(Some(R::Suspend), false);
        let suspend = rel(R::Suspend, Next::Suspend);
        check(&[
            // Ctrl-Z: the tree is stopped, the first reason kept, then the lease released.
            (idle, want(R::Suspend), suspending, asked, stop(R::Suspend)),
            (asked, gone(Signaled(15), R::Suspend), suspending, suspend, NONE),
            // The child's own exit meanwhile: its policy applies, but what would run on suspends.
            (asked, gone(Exited(0), R::ChildExited), restarting, rel(R::ChildExited, Next::Suspend), NONE),
            (asked, gone(Exited(4), R::ChildExited), suspending, rel(R::ChildExited, child(Exited(4))), NONE),
            // Asked while stopping for another reason: that reason is reported, yet it suspends.
            (running(Some(R::Resign), true), want(R::Suspend), suspending, running(Some(R::Resign), true), stop(R::Suspend)),
            (running(Some(R::Resign), true), gone(Exited(0), R::ChildExited), suspending, rel(R::Resign, Next::Suspend), NONE),
            (running(None, true), gone(Signaled(9), R::Deadline), suspending, rel(R::Deadline, Next::Suspend), NONE),
            // A child started meanwhile is stopped at once; none is started after the pause.
            (Lead::Spawning { last: None }, Input::Started, suspending, asked, stop(R::Suspend)),
            (Lead::Pausing { last: Exited(2) }, want(R::Suspend), restarting, suspend, NONE),
            (Lead::Verifying { last: Exited(2) }, Input::KeyChecked { ours: true }, restarting, suspend, NONE),
        ]);
    }

    #[test]
    fn without_the_process_thread_a_running_tree_is_never_released() {
        let abandoned = Lead::Over(Ending::Abandon(Exit::Internal));
        let internal = Lead::Over(Ending::Release {
            reason: None,
            next: Next::Exit(Exit::Internal),
            key_found_gone: false,
        });
        let states = [
            (running(None, false), abandoned),
            (running(Some(R::Resign), true), abandoned),
            (Lead::Spawning { last: None }, internal),
            (Lead::Pausing { last: Exited(0) }, internal),
        ];
        for (state, want) in states {
            assert_eq!(
                step(state, Input::ThreadGone, EXIT),
                (want, None),
                "{state:?}"
            );
        }
    }

    #[test]
    fn an_ended_leadership_stays_ended() {
        let over = rel(R::Resign, HOLDOFF);
        for input in [
            Input::Started,
            want(R::LeaseGone),
            Input::ThreadGone,
            Input::PauseOver,
            Input::KeyChecked { ours: true },
        ] {
            assert_eq!(step(over, input, EXIT), (over, None), "{input:?}");
        }
    }

    #[test]
    fn the_reason_a_tree_ended() {
        let rows = [
            (R::ChildExited, None, R::ChildExited),
            (R::ChildExited, Some(R::Resign), R::Resign),
            (R::ChildExited, Some(R::KeyDeleted), R::KeyDeleted),
            // The child's own exit wins over a health verdict that came while it was exiting.
            (R::ChildExited, Some(R::Unhealthy), R::ChildExited),
            (R::ChildExited, Some(R::Suspend), R::ChildExited),
            (R::Suspend, Some(R::Suspend), R::Suspend),
            (R::Unhealthy, Some(R::Unhealthy), R::Unhealthy),
            (R::Deadline, Some(R::Resign), R::Deadline),
        ];
        for (reported, requested, want) in rows {
            assert_eq!(
                final_reason(reported, requested),
                want,
                "{reported:?} {requested:?}"
            );
        }
    }

    #[test]
    #[rustfmt::skip]
    fn a_hot_standby_is_promoted_and_demoted_and_the_lease_waits_for_the_confirmation() {
        let hot = |asked| Facts { asked, hot: true, ..EXIT };
        let (quiet, shutdown, suspend) = (hot(Asked::Nothing), hot(Asked::Shutdown), hot(Asked::Suspend));
        let demoting = |reason| Lead::Demoting { reason };
        let demote = Some(Action::Demote);
        let refused = |why| Input::PromoteRefused(why);
        check(&[
            (Lead::Promoting, Input::Promoted, quiet, running(None, false), Some(Action::TellLeader)),
            (Lead::Promoting, Input::Promoted, suspend, running(Some(R::Suspend), false), stop(R::Suspend)),
            // No child to promote: one is started as the leader.
            (Lead::Promoting, refused(PromoteRefusal::NoChild), quiet,
                Lead::Spawning { last: None }, Some(Action::Spawn)),
            (Lead::Promoting, refused(PromoteRefusal::Shutdown(TERM)), shutdown,
                rel(R::Shutdown(TERM), Next::Exit(Exit::Withdrew)), NONE),
            (Lead::Promoting, refused(PromoteRefusal::NoLeaseTime), quiet, rel(R::Deadline, AGAIN), NONE),
            (Lead::Promoting, refused(PromoteRefusal::NotStandby), quiet,
                Lead::Promoting, Some(Action::PromoteAfterTree)),
            // The answer follows whatever else comes.
            (Lead::Promoting, Input::Shutdown(TERM), shutdown, Lead::Promoting, NONE),
            // The standby's child exited as the replica won: --on-child-exit decides.
            (Lead::Promoting, gone(Exited(3), R::ChildExited), quiet,
                rel(R::ChildExited, Next::Exit(Exit::Child(Exited(3)))), NONE),
            (Lead::Promoting, gone(Exited(3), R::ChildExited), RESTART,
                Lead::Spawning { last: Some(Exited(3)) }, Some(Action::Spawn)),
            (Lead::Promoting, gone(Exited(3), R::ChildExited), suspend,
                rel(R::ChildExited, Next::Exit(Exit::Child(Exited(3)))), NONE),
            // Stopped by a shutdown as the replica won: it exits with the child's status.
            (Lead::Promoting, gone(Signaled(15), R::Shutdown(TERM)), shutdown,
                rel(R::Shutdown(TERM), Next::Exit(Exit::Child(Signaled(15)))), NONE),
            (Lead::Promoting, want(R::Resign), quiet, Lead::Promoting, NONE),
            // A step-down demotes; a known loss, the deadline or Ctrl-Z stops.
            (running(None, false), want(R::Resign), quiet, demoting(R::Resign), demote),
            (running(None, false), want(R::Unhealthy), quiet, demoting(R::Unhealthy), demote),
            // A child that stood down by itself is told to stand by; it confirms that again.
            (running(None, false), want(R::StoodDown), quiet, demoting(R::StoodDown), demote),
            (demoting(R::StoodDown), Input::Demoted, quiet, rel(R::StoodDown, HOLDOFF), NONE),
            // Not while something else stops the tree (it is a verdict on the child).
            (running(Some(R::Resign), false), want(R::StoodDown), quiet, running(Some(R::Resign), false), NONE),
            // A promotion not confirmed in time is a failed start: stopped.
            (running(None, false), want(R::NotReady), quiet, running(Some(R::NotReady), false), stop(R::NotReady)),
            (running(None, false), Input::Shutdown(TERM), shutdown, demoting(R::Shutdown(TERM)), demote),
            (running(None, false), want(R::LeaseGone), quiet, running(Some(R::LeaseGone), false), stop(R::LeaseGone)),
            (running(None, false), want(R::Deadline), quiet, running(Some(R::Deadline), false), stop(R::Deadline)),
            (running(None, false), want(R::Suspend), suspend, running(Some(R::Suspend), false), stop(R::Suspend)),
            // Something stops the tree already: no demotion.
            (running(Some(R::LeaseGone), true), Input::Shutdown(TERM), shutdown, running(Some(R::LeaseGone), true), NONE),
            // Confirmed: the lease goes, the child stays a standby.
            (demoting(R::Resign), Input::Demoted, quiet, rel(R::Resign, HOLDOFF), NONE),
            (demoting(R::Shutdown(TERM)), Input::Demoted, shutdown, rel(R::Shutdown(TERM), Next::Exit(Exit::Withdrew)), NONE),
            (demoting(R::Resign), Input::Demoted, shutdown, rel(R::Resign, Next::Exit(Exit::Withdrew)), NONE),
            (demoting(R::Resign), Input::Demoted, suspend, rel(R::Resign, Next::Suspend), NONE),
            // Not confirmed in time: the process thread stops the tree at the frozen deadline.
            (demoting(R::Resign), Input::Stopping, quiet, running(Some(R::Resign), true), NONE),
            (demoting(R::Resign), gone(Signaled(9), R::Deadline), quiet, rel(R::Deadline, AGAIN), NONE),
            (demoting(R::Resign), gone(Exited(0), R::ChildExited), quiet, rel(R::Resign, HOLDOFF), NONE),
            // A known loss while demoting: stopped at once, the first reason kept.
            (demoting(R::Resign), want(R::KeyDeleted), quiet, running(Some(R::Resign), false), stop(R::KeyDeleted)),
            // Another step-down, a second shutdown: still waiting.
            (demoting(R::Resign), want(R::Unhealthy), quiet, demoting(R::Resign), NONE),
            (demoting(R::Resign), Input::Shutdown(TERM), shutdown, demoting(R::Resign), NONE),
            (demoting(R::Resign), Input::ThreadGone, quiet, Lead::Over(Ending::Abandon(Exit::Internal)), NONE),
        ]);
    }

    /// Every state, every input, every policy: the rules that keep the promise hold on all of
    /// them, not only on the rows above.
    #[test]
    fn the_rules_hold_for_every_state_input_and_policy() {
        let reasons = [
            R::LeaseGone,
            R::KeyDeleted,
            R::KeyChanged,
            R::Deadline,
            R::Resign,
            R::Unhealthy,
            R::WatchdogMissed,
            R::WatchdogTrigger,
            R::NotReady,
            R::StoodDown,
            R::Shutdown(TERM),
            R::Suspend,
            R::ChildExited,
        ];
        let statuses = [Exited(0), Exited(3), Signaled(9)];
        let mut states = vec![Lead::Spawning { last: None }];
        for s in statuses {
            states.extend([
                Lead::Spawning { last: Some(s) },
                Lead::Pausing { last: s },
                Lead::Verifying { last: s },
            ]);
        }
        for requested in std::iter::once(None).chain(reasons.map(Some)) {
            states.extend([running(requested, false), running(requested, true)]);
        }
        states.push(Lead::Promoting);
        states.extend(reasons.map(|reason| Lead::Demoting { reason }));
        let mut inputs = vec![
            Input::Started,
            Input::SpawnFailed(Exit::NotFound),
            Input::SpawnRefused(R::Deadline),
            Input::SpawnRefused(R::Shutdown(TERM)),
            Input::Stopping,
            Input::Shutdown(TERM),
            Input::PauseOver,
            Input::KeyChecked { ours: true },
            Input::KeyChecked { ours: false },
            Input::ThreadGone,
            Input::Promoted,
            Input::PromoteRefused(PromoteRefusal::NoChild),
            Input::PromoteRefused(PromoteRefusal::NotStandby),
            Input::PromoteRefused(PromoteRefusal::Shutdown(TERM)),
            Input::PromoteRefused(PromoteRefusal::NoLeaseTime),
            Input::Demoted,
        ];
        for r in reasons.into_iter().filter(|r| *r != R::ChildExited) {
            inputs.push(Input::StopWanted(r));
        }
        for status in statuses {
            for reason in reasons {
                inputs.push(Input::TreeGone { status, reason });
            }
        }
        for asked in [Asked::Nothing, Asked::Suspend, Asked::Shutdown] {
            for on_child_exit in [
                OnChildExit::Exit,
                OnChildExit::Restart,
                OnChildExit::Recampaign,
            ] {
                for (on_lease_lost, hot) in [OnLeaseLost::Exit, OnLeaseLost::Recampaign]
                    .into_iter()
                    .flat_map(|l| [(l, false), (l, true)])
                {
                    let f = Facts {
                        asked,
                        policies: Policies {
                            on_child_exit,
                            on_lease_lost,
                        },
                        hot,
                    };
                    for &state in &states {
                        for &input in &inputs {
                            let (next, action) = step(state, input, f);
                            let what = format!("{state:?} on {input:?} with {f:?}");
                            // The lease is given up only once no process of the tree is left,
                            // or (a hot standby's) once the child confirmed its demotion, or
                            // when a standby's child that never led here could not be promoted
                            // (it is gone, or being stopped for a shutdown).
                            if let Lead::Over(Ending::Release { .. }) = next {
                                match state {
                                    Lead::Running { .. } => {
                                        assert!(matches!(input, Input::TreeGone { .. }), "{what}")
                                    }
                                    Lead::Demoting { .. } => assert!(
                                        matches!(input, Input::TreeGone { .. } | Input::Demoted),
                                        "{what}"
                                    ),
                                    Lead::Promoting => assert!(
                                        matches!(
                                            input,
                                            Input::PromoteRefused(
                                                PromoteRefusal::Shutdown(_)
                                                    | PromoteRefusal::NoLeaseTime
                                            ) | Input::TreeGone { .. }
                                        ),
                                        "{what}"
                                    ),
                                    _ => {}
                                }
                            }
                            // Demoting never gives up the lease on its own: it waits for the
                            // confirmation, the tree's end, or stops the tree.
                            if let (Lead::Demoting { .. }, Lead::Over(_)) = (state, next) {
                                assert!(
                                    matches!(
                                        input,
                                        Input::TreeGone { .. } | Input::Demoted | Input::ThreadGone
                                    ),
                                    "{what}"
                                );
                            }
                            // A child is demoted only with --hot-standby, only from a running
                            // tree nothing else stops, and told it leads only once promoted.
                            if action == Some(Action::Demote) {
                                assert!(hot, "{what}");
                                assert_eq!(state, running(None, false), "{what}");
                                assert!(matches!(next, Lead::Demoting { .. }), "{what}");
                            }
                            if action == Some(Action::TellLeader) {
                                assert_eq!(
                                    (state, input),
                                    (Lead::Promoting, Input::Promoted),
                                    "{what}"
                                );
                            }
                            // A known loss of leadership is never answered with a demotion.
                            if let Input::StopWanted(r) = input {
                                if r.leadership_known_lost() {
                                    assert_ne!(action, Some(Action::Demote), "{what}");
                                }
                            }
                            // A release never restarts; after a shutdown it always exits, and
                            // with a suspension asked for it suspends unless it exits.
                            if let Lead::Over(Ending::Release { next, .. }) = next {
                                assert_ne!(next, Next::Restart, "{what}");
                                match asked {
                                    Asked::Shutdown => {
                                        assert!(matches!(next, Next::Exit(_)), "{what}")
                                    }
                                    Asked::Suspend => assert!(
                                        matches!(next, Next::Exit(_) | Next::Suspend),
                                        "{what}"
                                    ),
                                    Asked::Nothing => {}
                                }
                            }
                            // A child is asked for only once the key was read back as ours (or,
                            // a hot standby's, when none ran to promote or it has just exited),
                            // and never while a suspension is asked for.
                            if action == Some(Action::Spawn) {
                                assert!(
                                    input == Input::KeyChecked { ours: true }
                                        || state == Lead::Promoting
                                            && matches!(
                                                input,
                                                Input::PromoteRefused(PromoteRefusal::NoChild)
                                                    | Input::TreeGone { .. }
                                            ),
                                    "{what}"
                                );
                                if state != Lead::Promoting {
                                    assert_ne!(asked, Asked::Suspend, "{what}");
                                }
                            }
                            // A stop is asked for only while a tree runs (or has just started,
                            // or was just promoted or refused its promotion).
                            if let Some(Action::Stop(_)) = action {
                                assert!(
                                    matches!(
                                        state,
                                        Lead::Running { .. }
                                            | Lead::Demoting { .. }
                                            | Lead::Promoting
                                    ) || input == Input::Started,
                                    "{what}"
                                );
                            }
                            // A child that starts while a suspension is asked for is stopped.
                            if asked == Asked::Suspend && input == Input::Started {
                                if let Lead::Spawning { .. } = state {
                                    assert_eq!(action, stop(R::Suspend), "{what}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
