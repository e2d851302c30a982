//! Leading: the loop that applies [`super::transition::step`]. It gathers the next input for the state
//! it is in (the process thread's events, the lease, our key's watch, step-down requests, health
//! results), performs the action the transition asks for, and on [`Lead::Over`] releases: that is
//! its one exit.
//!
//! Safety does not rest on this loop being scheduled on time: the spawn request carries the lease's
//! fail-closed deadline, every acknowledged keepalive moves it ([`Request::Extend`]), and the
//! process thread stops the child by itself if it is not moved. This loop adds the fast paths:
//! a stop at once when etcd says the lease is gone or our key was deleted.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::core::backoff::{Backoff, Schedule};
use crate::core::duration::Short;
use crate::core::exit_code::ChildStatus;
use crate::core::lifecycle::{Next, Phase, StopReason};
use crate::election::candidacy_watch::CandidacyWatch;
use crate::election::once::Begun;
use crate::election::queue::Candidacy;
use crate::election::session::{LeaseState, Revoked, Session};
use crate::health::Results;
use crate::process::contract::{Event, PromoteRefusal, Request};

use super::child_health::{check_due, check_result, ChildHealth};
use super::child_notify::{self, notify_changed, ChildNotify, Opened};
use super::health_publisher::{ChildShown, HealthPublisher};
use super::standby::Won;
use super::transition::{step, Action, Ending, Facts, Input, Lead};
use super::{
    deadline_of, for_us, leader_env, lease_lost, leave_requested, next_event, policies, until,
    After, Ctx, Inputs, Leave, Pause, UserRequests,
};

/// What one leadership holds while it runs; everything it decides is in the transition.
struct Leading<'a, 'c> {
    ctx: &'a Ctx<'c>,
    session: Session,
    /// Whether our tree marker exists: then the release marks it released with the key's deletion.
    tree_marked: bool,
    me: Candidacy,
    key: CandidacyWatch,
    restarts: Backoff,
    /// When the current child was asked for (a restart that ran long enough resets the backoff).
    asked_at: Instant,
    /// While paused before a restart: until when.
    pause_until: Instant,
    /// While a tree runs: what is watched for it.
    tree: Option<Tree>,
    /// With `--once`: the run begun, whose end is written with the release.
    once: Option<Begun>,
    /// The next child's notify socket, from the spawn request to its start.
    opened: Option<Opened>,
    /// What this leadership shows of its child in etcd (health, readiness, status).
    publisher: HealthPublisher,
}

/// What is watched while one child's tree runs.
struct Tree {
    lease: watch::Receiver<LeaseState>,
    /// Once the keepalive task has ended, `changed()` returns at once for ever: stop listening.
    lease_open: bool,
    /// Our key's deletion is reported once.
    key_deleted: bool,
    health: Option<ChildHealth>,
    results: Option<Results>,
    /// The child's notify socket, if it has one.
    notify: Option<ChildNotify>,
}

/// Leads until the leadership is over, then releases; returns what follows.
pub(super) async fn lead(ctx: &Ctx<'_>, inp: &mut Inputs<'_>, won: Won) -> After {
    let publisher = HealthPublisher::new(ctx, &won.me);
    let mut run = Leading {
        ctx,
        session: won.session,
        tree_marked: won.tree_marked,
        me: won.me,
        key: won.watch,
        restarts: Schedule::RESTART.start(),
        asked_at: Instant::now(),
        pause_until: Instant::now(),
        tree: None,
        once: won.once,
        opened: None,
        publisher,
    };
    let (mut state, mut action) = match inp.hot {
        Some(_) => Lead::begin_hot(),
        None => Lead::begin(),
    };
    loop {
        if let Lead::Over(ending) = state {
            return run.finish(ending, &inp.user).await;
        }
        let input = match action.take() {
            Some(a) => run.perform(inp, a, state).await,
            None => None,
        };
        let input = match input {
            Some(input) => input,
            None => run.next_input(inp, state).await,
        };
        let facts = Facts {
            asked: inp.user.asked(),
            policies: policies(ctx.cfg),
            hot: inp.hot.is_some(),
        };
        let (next, act) = step(state, input, facts);
        run.moved(state, input, next);
        (state, action) = (next, act);
    }
}

impl Leading<'_, '_> {
    /// Does what the transition asked; `Some` when that already tells the next input.
    async fn perform(
        &mut self,
        inp: &mut Inputs<'_>,
        action: Action,
        state: Lead,
    ) -> Option<Input> {
        match action {
            Action::Spawn => {
                let LeaseState::Alive { safe_until } = self.session.current() else {
                    return Some(Input::SpawnRefused(StopReason::Deadline));
                };
                self.asked_at = Instant::now();
                let mut env = leader_env(self.ctx.cfg, &self.me);
                if let (Some(layout), Some(begun)) = (&self.ctx.once, &self.once) {
                    let max = self.ctx.cfg.once.as_ref().map_or(1, |o| o.attempts);
                    env.extend(super::once::env(layout, begun, max));
                }
                let own_pid_variable = match inp.hot.as_mut() {
                    // The hot standby's child has its socket and role file from the hot side.
                    Some(hot) => {
                        env.extend(hot.leader_spawn_env(self.me.revision));
                        None
                    }
                    None => {
                        self.opened = child_notify::open(self.ctx);
                        self.opened.as_ref().and_then(|o| {
                            env.extend(o.env.iter().cloned());
                            o.own_pid_variable
                        })
                    }
                };
                inp.process.request(Request::Spawn {
                    command: self.ctx.cfg.command.clone(),
                    env,
                    own_pid_variable,
                    deadline: Some(deadline_of(self.ctx.cfg, safe_until)),
                });
                None
            }
            Action::Stop(reason) => {
                inp.process.request(Request::Stop(reason));
                None
            }
            Action::PauseBeforeRestart => {
                self.restarts.succeeded(self.asked_at.elapsed());
                let wait = self.restarts.next_pause();
                if let Lead::Pausing { last } = state {
                    tracing::info!(status = %last, restart_in = %Short(wait),
                        "child exited; restarting (--on-child-exit=restart)");
                }
                self.pause_until = Instant::now() + wait;
                None
            }
            Action::VerifyKey => Some(Input::KeyChecked {
                ours: self.still_ours().await,
            }),
            Action::PromoteAfterTree => {
                // Bounded: the tree is being stopped (SIGKILL after the grace at the latest).
                tracing::info!(
                    "the child's tree is still being stopped: promoting once it is gone"
                );
                loop {
                    let Some(event) = next_event(&mut inp.process, &mut inp.user).await else {
                        return Some(Input::ThreadGone);
                    };
                    if let Some(hot) = inp.hot.as_mut() {
                        hot.observe(&event);
                    }
                    match event {
                        // The standby's child had exited by itself (its leftovers were being
                        // stopped): its status is its exit's, for --on-child-exit to decide on.
                        Event::Finished {
                            status,
                            reason: reason @ StopReason::ChildExited,
                            ..
                        } => return Some(Input::TreeGone { status, reason }),
                        Event::Finished { .. } => break,
                        _ => {}
                    }
                }
                let LeaseState::Alive { safe_until } = self.session.current() else {
                    return Some(Input::PromoteRefused(PromoteRefusal::NoLeaseTime));
                };
                inp.process
                    .request(Request::Promote(deadline_of(self.ctx.cfg, safe_until)));
                None
            }
            Action::Promote => {
                let LeaseState::Alive { safe_until } = self.session.current() else {
                    return Some(Input::PromoteRefused(PromoteRefusal::NoLeaseTime));
                };
                inp.process
                    .request(Request::Promote(deadline_of(self.ctx.cfg, safe_until)));
                None
            }
            Action::TellLeader => {
                let hot = inp.hot.as_mut()?;
                let pid = hot.pid()?;
                self.asked_at = Instant::now();
                self.started(pid);
                self.show_promoting();
                tracing::info!(
                    revision = self.me.revision,
                    pid,
                    "promoting the standby's child: it is told it leads"
                );
                hot.tell_leader(self.me.revision, &inp.process).await;
                None
            }
            Action::Demote => {
                let hot = inp.hot.as_mut()?;
                if let Lead::Demoting { reason } = state {
                    tracing::info!(%reason, "demoting the child: it is told to stand by; the lease is given up once it confirms (ROLE=standby)");
                }
                hot.tell_standby(&inp.process).await;
                None
            }
        }
    }

    /// Waits for the next input that matters in `state`.
    async fn next_input(&mut self, inp: &mut Inputs<'_>, state: Lead) -> Input {
        match state {
            Lead::Spawning { .. } => self.spawn_answer(inp).await,
            Lead::Promoting => promote_answer(inp).await,
            Lead::Running { .. } | Lead::Demoting { .. } => self.while_running(inp, state).await,
            Lead::Pausing { .. } => self.while_paused(inp).await,
            Lead::Verifying { .. } => Input::KeyChecked {
                ours: self.still_ours().await,
            },
            // Never asked: the loop releases first.
            Lead::Over(_) => Input::ThreadGone,
        }
    }

    /// Reports what the step changed, and keeps the tree's watches for as long as it runs.
    fn moved(&mut self, from: Lead, input: Input, to: Lead) {
        match (from, input, to) {
            // (From Promoting: the standby's child ended as its replica won.)
            (Lead::Running { .. } | Lead::Promoting, Input::TreeGone { status, .. }, _) => {
                self.tree = None;
                let restarting = matches!(to, Lead::Pausing { .. } | Lead::Spawning { .. });
                self.ctx.obs.child_exited(status.code(), restarting);
            }
            (_, _, Lead::Running { .. } | Lead::Demoting { .. }) => {}
            _ => self.tree = None,
        }
    }

    /// The process thread's answer to a spawn request.
    async fn spawn_answer(&mut self, inp: &mut Inputs<'_>) -> Input {
        loop {
            let event = next_event(&mut inp.process, &mut inp.user).await;
            if let (Some(hot), Some(event)) = (inp.hot.as_mut(), &event) {
                hot.observe(event);
            }
            match event {
                Some(Event::Started { pid }) => {
                    self.started(pid);
                    if inp.hot.is_some() {
                        self.show_promoting();
                    }
                    return Input::Started;
                }
                Some(Event::SpawnFailed(e)) => {
                    self.opened = None;
                    tracing::error!(error = %e, code = e.exit_code(), "cannot start the command");
                    return Input::SpawnFailed(e.exit());
                }
                Some(Event::SpawnRefused(reason)) => {
                    self.opened = None;
                    tracing::warn!(%reason, "the child was not started");
                    return Input::SpawnRefused(reason);
                }
                Some(_) => {} // a shutdown signal is recorded; the process thread refuses or stops
                None => return Input::ThreadGone,
            }
        }
    }

    /// `--hot-standby`: the child was told it leads and has not confirmed: not ready, for
    /// `/leader`, `/status`, `status` and etcd's record, until it does.
    fn show_promoting(&mut self) {
        self.ctx.obs.hot_promoting();
        let promoting = ChildShown {
            ready: false,
            ready_after_ms: None,
            status: Some("promoting: told it leads, not confirmed yet".into()),
        };
        self.publisher.show_child(promoting, true);
    }

    /// The child runs: shows it, and starts watching its tree.
    fn started(&mut self, pid: libc::pid_t) {
        let (ctx, me) = (self.ctx, &self.me);
        ctx.obs.enter(Phase::Leading {
            lease: me.lease,
            key: me.key.clone(),
            revision: me.revision,
            pid,
            slot: me.slot,
        });
        let (health, results) = ChildHealth::start(ctx, me).unzip();
        let notify = self
            .opened
            .take()
            .map(|o| ChildNotify::start(ctx, o, pid, &mut self.publisher));
        self.tree = Some(Tree {
            lease: self.session.state(),
            lease_open: true,
            key_deleted: false,
            health,
            results,
            notify,
        });
    }

    /// While the tree runs: moves the deadline on every acknowledged keepalive, runs health
    /// checks, reads what the child says on its notify socket, and returns the first input that
    /// matters.
    async fn while_running(&mut self, inp: &mut Inputs<'_>, state: Lead) -> Input {
        let (ctx, me) = (self.ctx, &self.me);
        let Some(tree) = self.tree.as_mut() else {
            return Input::ThreadGone; // not reached: a tree is watched from its start
        };
        loop {
            // When the child's watchdog or ready timeout is due, and when a held-back change of
            // what it said is to be shown: plain instants, worked out again on every turn.
            let notify_due = tree.notify.as_ref().and_then(ChildNotify::due_at);
            let show_due = tree.notify.as_ref().and_then(ChildNotify::show_at);
            let promote_due = inp.hot.as_ref().and_then(|h| h.promotion_due());
            let demoting = matches!(state, Lead::Demoting { .. });
            let input = tokio::select! {
                event = next_event(&mut inp.process, &mut inp.user) => match event {
                    Some(event) => {
                        if let Some(hot) = inp.hot.as_mut() {
                            hot.observe(&event);
                        }
                        on_event(ctx, me, event, tree.health.as_mut())
                    }
                    None => Some(Input::ThreadGone),
                },
                _ = hot_changed(inp.hot.as_mut()) => {
                    let process = &inp.process;
                    let confirmed = inp.hot.as_mut().map(|h| h.take_confirmations(process)).unwrap_or_default();
                    // One that stood down in the same look is not shown leading.
                    if let (Some(took), false) = (confirmed.promoted, confirmed.stood_down) {
                        self.publisher.show_child(ChildShown {
                            ready: true,
                            ready_after_ms: Some(took.as_millis() as u64),
                            status: Some("leading (ROLE=leader)".into()),
                        }, true);
                    }
                    if confirmed.demoted && demoting {
                        Some(Input::Demoted)
                    } else {
                        confirmed.stood_down.then_some(Input::StopWanted(StopReason::StoodDown))
                    }
                }
                _ = until(promote_due), if state.checks_allowed() => {
                    if let Some(hot) = inp.hot.as_mut() {
                        hot.promotion_timed_out();
                    }
                    Some(Input::StopWanted(StopReason::NotReady))
                }
                _ = check_due(tree.health.as_ref()), if state.checks_allowed() => {
                    if let Some(h) = &mut tree.health {
                        h.start_check(&inp.process);
                    }
                    None
                }
                Some((id, outcome)) = check_result(tree.results.as_mut()) => {
                    let publisher = &mut self.publisher;
                    tree.health.as_mut().and_then(|h| h.record(ctx, id, outcome, publisher)).map(Input::StopWanted)
                }
                _ = notify_changed(tree.notify.as_mut()) => {
                    let judged = state.checks_allowed();
                    tree.notify.as_mut()
                        .and_then(|n| n.take_in(ctx, &inp.process, &mut self.publisher, judged))
                        .map(Input::StopWanted)
                }
                _ = until(notify_due), if state.checks_allowed() => {
                    tree.notify.as_mut().and_then(|n| n.verdict(ctx)).map(Input::StopWanted)
                }
                _ = until(show_due) => {
                    if let Some(n) = &mut tree.notify {
                        n.show_now(ctx, &mut self.publisher);
                    }
                    None
                }
                changed = tree.lease.changed(), if tree.lease_open => {
                    tree.lease_open = changed.is_ok();
                    match *tree.lease.borrow_and_update() {
                        LeaseState::Alive { safe_until } if tree.lease_open => {
                            inp.process.request(Request::Extend(deadline_of(ctx.cfg, safe_until)));
                            None
                        }
                        _ => Some(Input::StopWanted(StopReason::LeaseGone)),
                    }
                }
                Some(revision) = inp.resign.recv() => for_us(revision, me).map(Input::StopWanted),
                _ = self.key.own_deleted(), if !tree.key_deleted => {
                    tree.key_deleted = true;
                    Some(Input::StopWanted(key_lost(&self.key)))
                }
            };
            if let Some(input) = input {
                return input;
            }
        }
    }

    /// Between two children: the first reason to end leadership, or the end of the pause.
    async fn while_paused(&mut self, inp: &mut Inputs<'_>) -> Input {
        loop {
            return tokio::select! {
                leave = leave_requested(&mut inp.process, &mut inp.user, None) => match (leave, inp.user.shutdown) {
                    (Leave::Exit(_), Some(sig)) => Input::Shutdown(sig),
                    (Leave::Exit(_), None) => Input::ThreadGone,
                    (Leave::Suspend, _) => Input::StopWanted(StopReason::Suspend),
                },
                reason = lease_lost(self.session.state()) => Input::StopWanted(reason),
                _ = self.key.own_deleted() => Input::StopWanted(key_lost(&self.key)),
                Some(revision) = inp.resign.recv() => match for_us(revision, &self.me) {
                    Some(reason) => Input::StopWanted(reason),
                    None => continue, // for another leadership: keep waiting
                },
                _ = tokio::time::sleep_until(self.pause_until) => Input::PauseOver,
            };
        }
    }

    /// Whether our leader key is still ours. When etcd cannot tell us, yes: the lease deadline
    /// still holds, and the key watch still runs.
    async fn still_ours(&self) -> bool {
        let (election, me) = (&self.ctx.election, &self.me);
        let read = self
            .ctx
            .connector
            .call(|mut c| async move { election.verify(&mut c, me).await });
        let Ok(answer) = tokio::time::timeout(self.ctx.connector.request_timeout(), read).await
        else {
            return true;
        };
        !matches!(answer, Ok(None))
    }

    /// The one release path: the child's tree is gone; give the lease up (revoke, so a standby
    /// takes over at once), record how leadership ended, and say what comes next. With `--once`,
    /// the run's outcome is written with the release ([`super::once::end`]). `user`: what the
    /// user asked of the replica by signal.
    async fn finish(self, ending: Ending, user: &UserRequests) -> After {
        let (reason, mut next, key_found_gone) = match ending {
            Ending::Release {
                reason,
                next,
                key_found_gone,
            } => (reason, next, key_found_gone),
            Ending::Abandon(exit) => {
                tracing::error!("the process thread is gone");
                return After::Exit(exit);
            }
        };
        let (ctx, me) = (self.ctx, &self.me);
        let former_at = former_holders_at(
            self.key.was_deleted(),
            self.key.deleted_at(),
            self.key.alive_at(),
            key_found_gone,
        );
        // With --once, the run's outcome goes with the release (and may change what follows).
        let mut released = false;
        if let Some(begun) = &self.once {
            let ended = (reason, next, user.asked(), user.shutdown);
            let over =
                super::once::end(ctx, me, &self.session, self.tree_marked, begun, ended).await;
            (next, released) = (over.next, over.released);
        }
        let budget = revoke_budget(
            reason,
            next,
            ctx.cfg.timing.margin,
            ctx.connector.request_timeout(),
        );
        let by = Instant::now() + budget;
        if !released && self.tree_marked && !key_found_gone && !self.key.was_deleted() {
            self.release_key(budget).await;
        }
        let revoked = self
            .session
            .revoke(by.saturating_duration_since(Instant::now()))
            .await;
        if let Some(reason) = reason {
            ctx.obs.enter(Phase::Lost {
                key: me.key.clone(),
                revision: me.revision,
                reason,
            });
        }
        let given_up = match &revoked {
            Revoked::Now => "lease revoked",
            Revoked::AlreadyGone => "lease already gone",
            Revoked::Failed(_) => "lease not revoked: it expires after its TTL",
        };
        // One line for the end of a leadership: why, how the lease went, what comes next; a
        // warning when it was lost to the lease (the `lost` phase itself is logged at debug).
        let revision = me.revision;
        let why = reason.map(tracing::field::display);
        let lost = reason.is_some_and(|r| r.is_lease_loss());
        let holdoff = matches!(next, Next::Recampaign { holdoff: true }).then_some(true);
        match next {
            Next::Exit(exit) => {
                let code = exit.code();
                if lost {
                    tracing::warn!(
                        reason = why,
                        revision,
                        code,
                        "leadership given up ({given_up}); exiting"
                    );
                } else {
                    tracing::info!(
                        reason = why,
                        revision,
                        code,
                        "leadership given up ({given_up}); exiting"
                    );
                }
                After::Exit(exit)
            }
            Next::Recampaign { holdoff: pausing } => {
                if lost {
                    tracing::warn!(
                        reason = why,
                        revision,
                        holdoff,
                        "leadership given up ({given_up}); campaigning again"
                    );
                } else {
                    tracing::info!(
                        reason = why,
                        revision,
                        holdoff,
                        "leadership given up ({given_up}); campaigning again"
                    );
                }
                let pause = if pausing { Pause::Holdoff } else { Pause::None };
                After::Recampaign { pause, former_at }
            }
            Next::Suspend => {
                tracing::info!(
                    reason = why,
                    revision,
                    "leadership given up ({given_up}); suspending (Ctrl-Z)"
                );
                After::Recampaign {
                    pause: Pause::Suspension,
                    former_at,
                }
            }
            Next::Restart => After::Recampaign {
                pause: Pause::None,
                former_at,
            },
        }
    }
}

impl Leading<'_, '_> {
    /// Our tree is gone: delete our key and mark our tree released, in one transaction, so the
    /// standby woken by the deletion starts at once (the leases are revoked next, which a standby
    /// no longer waits for). If etcd cannot be asked within `budget`, the revoke that follows
    /// (or the leases' expiry) hands over instead.
    async fn release_key(&self, budget: Duration) {
        let (election, me, tree_lease) = (&self.ctx.election, &self.me, self.session.tree_lease);
        let release = self
            .ctx
            .connector
            .call(|mut c| async move { election.release(&mut c, me, tree_lease).await });
        match tokio::time::timeout(budget, release).await {
            Ok(Ok(true)) => tracing::debug!(key = %me.key, "key released, tree marked released"),
            Ok(Ok(false)) => tracing::debug!(key = %me.key, "key not ours any more: not released"),
            Ok(Err(e)) => {
                tracing::debug!(key = %me.key, error = %e, "releasing the key failed; revoking the lease instead")
            }
            Err(_) => {
                tracing::debug!(key = %me.key, "releasing the key timed out; revoking the lease instead")
            }
        }
    }
}

/// How long the revoke at the end of a leadership may take. On a healthy etcd it takes a
/// millisecond; a revoke that cannot be made only delays the handoff to the lease's expiry (the
/// tree is gone: a standby winning then is safe). So a replica on its way out (it exits next, or
/// suspends while a shell waits for its prompt) waits [`super::REVOKE_ON_EXIT`] at most, never
/// the dial timeout of an etcd it cannot reach; after a lease loss the lease is expired or about
/// to be, and revoking can only save a standby the last margin; otherwise (it campaigns again)
/// two request timeouts.
fn revoke_budget(
    reason: Option<StopReason>,
    next: Next,
    margin: Duration,
    request_timeout: Duration,
) -> Duration {
    let staying = match reason {
        Some(r) if r.is_lease_loss() => margin + Duration::from_secs(1),
        _ => request_timeout * 2,
    };
    match next {
        Next::Exit(_) | Next::Suspend => staying.min(super::REVOKE_ON_EXIT),
        Next::Restart | Next::Recampaign { .. } => staying,
    }
}

/// A process-thread event while the tree runs (but its end, which is an input too): the input it
/// makes, if any.
fn on_event(
    ctx: &Ctx<'_>,
    me: &Candidacy,
    event: Event,
    health: Option<&mut ChildHealth>,
) -> Option<Input> {
    match event {
        Event::Finished {
            status,
            reason,
            stop_took,
            after_kill,
        } => {
            if let Some(took) = stop_took {
                ctx.obs.stop_took(took);
            }
            if let Some(teardown) = after_kill {
                let margin = ctx.cfg.timing.margin;
                let over = ctx.obs.kill_teardown(teardown, margin);
                if over {
                    // The margin is all that stands between a SIGKILL at the lease's kill
                    // deadline and a standby's start once the lease expires: a tree that takes
                    // longer to die than that could still hold its files when the next child
                    // starts. Only the operator can size it (see docs/timing.md).
                    tracing::warn!(teardown = %Short(teardown), margin = %Short(margin),
                        "the child's tree took longer to die after SIGKILL than --margin: \
                         had the lease been lost, a standby could have started before it was gone; raise --margin");
                }
            }
            Some(Input::TreeGone { status, reason })
        }
        Event::Stopping { reason, kill_in } => {
            ctx.obs.enter(Phase::Stopping {
                key: me.key.clone(),
                revision: me.revision,
                reason,
                kill_in,
            });
            Some(Input::Stopping)
        }
        Event::ShutdownSignal(sig) => {
            ctx.obs.notifier.stopping();
            Some(Input::Shutdown(sig))
        }
        Event::ResignSignal => Some(Input::StopWanted(StopReason::Resign)),
        Event::SuspendRequested => Some(Input::StopWanted(StopReason::Suspend)),
        Event::CheckEnded { id, exit, output } => {
            if let Some(h) = health {
                h.check_ended(id, exit, &output);
            }
            None
        }
        Event::Started { .. }
        | Event::SpawnFailed(_)
        | Event::SpawnRefused(_)
        | Event::Resumed
        | Event::Promoted
        | Event::PromoteRefused(_) => None,
    }
}

/// `--hot-standby`: the process thread's answer to a promotion. A standby's child whose end
/// comes before it (it exited, or a shutdown stopped it, as its replica won) makes the answer "no
/// child" or "shutdown": its end is the input then, so its status is not lost (`--on-child-exit`
/// decides on it, and a shutdown exits with it).
async fn promote_answer(inp: &mut Inputs<'_>) -> Input {
    let mut ended = None;
    loop {
        let Some(event) = next_event(&mut inp.process, &mut inp.user).await else {
            return Input::ThreadGone;
        };
        if let Some(hot) = inp.hot.as_mut() {
            hot.observe(&event);
        }
        match event {
            Event::Promoted => return Input::Promoted,
            Event::PromoteRefused(PromoteRefusal::NoChild | PromoteRefusal::Shutdown(_))
                if ended.is_some() =>
            {
                let (status, reason) =
                    ended.unwrap_or((ChildStatus::Exited(0), StopReason::ChildExited));
                tracing::info!(%status, %reason, "the standby's child ended as its replica won");
                return Input::TreeGone { status, reason };
            }
            Event::PromoteRefused(why) => {
                tracing::info!(?why, "the standby's child was not promoted");
                return Input::PromoteRefused(why);
            }
            // Only the standby's child's own end, or a shutdown's stop: the end of a tree this
            // replica stopped before (a demotion's frozen deadline) is no news of the child.
            Event::Finished {
                status,
                reason: reason @ (StopReason::ChildExited | StopReason::Shutdown(_)),
                ..
            } => ended = Some((status, reason)),
            // A standby's start or end, a shutdown (recorded): the answer follows.
            event => tracing::debug!(?event, "while promoting"),
        }
    }
}

/// Resolves when a hot standby's child said something on its notify socket.
async fn hot_changed(hot: Option<&mut super::hot_standby::HotChild<'_>>) {
    match hot {
        Some(hot) => hot.changed().await,
        None => std::future::pending().await,
    }
}

/// Why our key is gone, as the watch saw it: deleted, or put by another client.
fn key_lost(watch: &CandidacyWatch) -> StopReason {
    if watch.was_changed() {
        StopReason::KeyChanged
    } else {
        StopReason::KeyDeleted
    }
}

/// When our key was deleted while we led (not by our own revoke, which comes later), or a read
/// found it gone: a revision at which whoever else led (held a slot) still did, for the next
/// campaign to wait for them (see [`super::After::Recampaign`]). Just before the deletion if the
/// watch saw when; else the last revision the key was known alive at.
fn former_holders_at(
    watch_saw_deletion: bool,
    deleted_at: Option<i64>,
    alive_at: i64,
    key_found_gone: bool,
) -> Option<i64> {
    if watch_saw_deletion {
        return Some(deleted_at.map_or(alive_at, |d| d - 1));
    }
    key_found_gone.then_some(alive_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revoke_on_the_way_out_never_waits_on_an_unreachable_etcd() {
        use crate::core::exit_code::Exit;
        let (margin, request) = (Duration::from_millis(300), Duration::from_secs(5));
        let again = Next::Recampaign { holdoff: false };
        let exit = Next::Exit(Exit::Withdrew);
        let ms = Duration::from_millis;
        let rows = [
            // Campaigning again: worth waiting for a slow etcd (an immediate handoff).
            (Some(StopReason::Resign), again, ms(10_000)),
            (Some(StopReason::ChildExited), again, ms(10_000)),
            (None, again, ms(10_000)),
            // A lease loss: only the last margin to save.
            (Some(StopReason::LeaseGone), again, ms(1_300)),
            (Some(StopReason::Deadline), again, ms(1_300)),
            // On the way out: one second at most, whatever the reason.
            (Some(StopReason::Shutdown(libc::SIGTERM)), exit, ms(1_000)),
            (Some(StopReason::ChildExited), exit, ms(1_000)),
            (Some(StopReason::KeyDeleted), exit, ms(1_000)),
            // Suspending: the shell waits for its prompt; one second at most.
            (Some(StopReason::Suspend), Next::Suspend, ms(1_000)),
            (Some(StopReason::Deadline), Next::Suspend, ms(1_000)),
            (None, exit, ms(1_000)),
        ];
        for (reason, next, want) in rows {
            assert_eq!(
                revoke_budget(reason, next, margin, request),
                want,
                "{reason:?} {next:?}"
            );
        }
    }

    #[test]
    fn where_the_former_holders_are_looked_for() {
        // (watch saw the deletion, at, alive at, a read found it gone) -> revision
        let rows = [
            (false, None, 30, false, None),
            (true, Some(41), 30, false, Some(40)),
            (true, None, 30, false, Some(30)),
            // The read found it gone before the watch said so: as of the last revision it lived.
            (false, None, 30, true, Some(30)),
            (true, Some(41), 30, true, Some(40)),
        ];
        for (saw, at, alive, found_gone, want) in rows {
            assert_eq!(
                former_holders_at(saw, at, alive, found_gone),
                want,
                "{saw} {at:?} {alive} {found_gone}"
            );
        }
    }
}
