//! Standby: get a lease, join the queue (or, with `--slots N`, claim a slot), wait for our turn,
//! verify. One campaign serves the singleton and the slots; what one attempt came to is a
//! [`Campaign`], not a nest of results.
//!
//! Rules kept here:
//! * a campaign retries (by the one backoff) only while etcd is unavailable; a rejection or another
//!   slot count ends the replica, and its lease is revoked first so its key leaves the queue;
//! * a lease lost while waiting is revoked (the key may outlive our view of the lease) and a new
//!   one taken;
//! * Ctrl-Z (a suspension asked for) revokes the lease, so our key leaves the queue, before the
//!   replica is suspended ([`super::Leave::Suspend`]);
//! * when our key was deleted (an operator's `del --prefix`), the next join waits for whoever held
//!   the queue (the slots) just before the deletion ([`remembered_deletion`]), and a retried join
//!   keeps waiting for them.

use std::cell::RefCell;

use std::time::Duration;

use etcd_client::Client;
use tokio::time::{sleep, Instant};

use crate::core::backoff::{Backoff, Schedule};
use crate::core::clock::BootInstant;
use crate::core::duration::Short;
use crate::core::exit_code::Exit;
use crate::core::lifecycle::{LeaseId, Phase, StopReason};
use crate::election::candidacy_watch::CandidacyWatch;
use crate::election::connector::EtcdError;
use crate::election::queue::{self, Candidacy, Candidate};
use crate::election::session::Session;
use crate::election::slots::{self, Mismatch, SlotElection, SlotsView};

use super::{lease_lost, leave_requested, until, Ctx, Inputs, Leave};

/// What a standby won: the lease, the candidacy that leads (or holds a slot), and its watch.
pub(super) struct Won {
    pub session: Session,
    pub me: Candidacy,
    pub watch: CandidacyWatch,
    /// Whether our tree marker was written (a role may forbid it): then the release marks it.
    pub tree_marked: bool,
    /// With `--once`: our run, begun at the head of the queue ([`super::once::at_head`]).
    pub once: Option<crate::election::once::Begun>,
}

/// What a campaign won: the candidacy, its watch, and whether our tree marker was written.
struct Winning(Candidacy, CandidacyWatch, bool);

/// How one standby round ended.
enum Round {
    Won(Winning),
    LeaseLost(StopReason),
    Over(Leave),
}

/// What a campaign came to.
enum Campaign {
    Won(Winning),
    /// It cannot go on, ever.
    Refused(Refused),
}

/// Why a campaign cannot go on.
enum Refused {
    /// etcd rejected us (credentials, permissions).
    Etcd(EtcdError),
    /// The election runs with another slot count.
    Slots(Mismatch),
}

/// What one attempt inside a connection came to (an etcd error is the connection's to count).
enum Attempt {
    Won(Winning),
    Mismatch(Mismatch),
}

/// Waits for leadership. `former_at`: see [`remembered_deletion`]. `Err`: the replica exits, or
/// suspends (its lease is revoked by then).
pub(super) async fn standby(
    ctx: &Ctx<'_>,
    inp: &mut Inputs<'_>,
    former_at: Option<i64>,
) -> Result<Won, Leave> {
    let acquire_by = ctx.cfg.acquire_timeout.map(|d| Instant::now() + d);
    let last_error = RefCell::new(String::from("none"));
    let exit = |e| Leave::Exit(e);
    loop {
        let session = tokio::select! {
            leave = leave_requested(&mut inp.process, &mut inp.user, inp.hot.as_mut()) => return Err(leave),
            _ = until(acquire_by) => return Err(exit(timed_out(ctx, &last_error))),
            r = grant_with_retries(ctx, &last_error) => r.map_err(|e| exit(rejected(&e)))?,
        };
        took_lease(ctx, session.lease_id);
        let round = tokio::select! {
            leave = leave_requested(&mut inp.process, &mut inp.user, inp.hot.as_mut()) => Round::Over(leave),
            _ = until(acquire_by) => Round::Over(exit(timed_out(ctx, &last_error))),
            reason = lease_lost(session.state()) => Round::LeaseLost(reason),
            c = campaign(ctx, &session, &last_error, former_at) => match c {
                Campaign::Won(won) => Round::Won(won),
                Campaign::Refused(Refused::Etcd(e)) => Round::Over(exit(rejected(&e))),
                Campaign::Refused(Refused::Slots(m)) => Round::Over(exit(mismatched(ctx, &m))),
            },
        };
        match round {
            Round::Won(Winning(me, watch, tree_marked)) => {
                return Ok(Won {
                    session,
                    me,
                    watch,
                    tree_marked,
                    once: None,
                })
            }
            Round::LeaseLost(reason) => {
                tracing::warn!(id = %ctx.cfg.id, lease = %session.lease_id, %reason,
                    "lease lost while standby; taking a new one");
                // The key may outlive our view of the lease: take it out of the queue.
                session.revoke(ctx.connector.request_timeout()).await;
            }
            Round::Over(leave) => {
                // Leaving the queue, for good or until continued: our key goes with the lease.
                // Either way someone waits (the exit, the shell's prompt): one second at most,
                // after which the lease expires by itself.
                let revoked = session.revoke(super::REVOKE_ON_EXIT).await;
                if let Leave::Suspend = leave {
                    tracing::info!(id = %ctx.cfg.id, ?revoked, "left the queue to suspend (Ctrl-Z)");
                }
                return Err(leave);
            }
        }
    }
}

fn timed_out(ctx: &Ctx<'_>, last_error: &RefCell<String>) -> Exit {
    tracing::error!(id = %ctx.cfg.id, election = %ctx.cfg.election, last_error = %last_error.borrow(),
        "--acquire-timeout passed before this replica became leader");
    Exit::AcquireTimeout
}

fn mismatched(ctx: &Ctx<'_>, m: &Mismatch) -> Exit {
    tracing::error!(election = %ctx.cfg.election, slots = ctx.cfg.slots, found = %m,
        "every replica of an election must use the same --slots: refusing to run");
    Exit::Usage
}

fn rejected(e: &EtcdError) -> Exit {
    tracing::error!(error = %e, "etcd refused this replica on every endpoint; check --user/--password, TLS files and the role's permissions");
    Exit::EtcdRejected
}

/// Grants a lease, retrying with backoff while etcd is unavailable; `Err` only when rejected.
async fn grant_with_retries(
    ctx: &Ctx<'_>,
    last_error: &RefCell<String>,
) -> Result<Session, EtcdError> {
    let mut backoff = Schedule::ETCD.start();
    loop {
        match Session::grant(ctx.connector.clone(), ctx.cfg.timing, ctx.obs.clone()).await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_rejected() => return Err(e),
            Err(e) => {
                pause_after(&e, &mut backoff, last_error, "cannot get a lease from etcd").await
            }
        }
    }
}

/// After a failure etcd may recover from: notes it (for `--acquire-timeout`'s message) and pauses.
/// An unavailable etcd is the connector's to tell (once for a whole outage), so only other
/// failures are warned of here.
async fn pause_after(
    e: &EtcdError,
    backoff: &mut Backoff,
    last_error: &RefCell<String>,
    what: &str,
) {
    let wait = backoff.next_pause();
    if matches!(e, EtcdError::Unavailable(_)) {
        tracing::debug!(error = %e, retry_in = %Short(wait), "{what}; retrying");
    } else {
        tracing::warn!(error = %e, retry_in = %Short(wait), "{what}; retrying");
    }
    *last_error.borrow_mut() = e.to_string();
    sleep(wait).await;
}

/// Joins and waits for our turn, retrying while etcd is unavailable.
async fn campaign(
    ctx: &Ctx<'_>,
    session: &Session,
    last_error: &RefCell<String>,
    mut former_at: Option<i64>,
) -> Campaign {
    let mut backoff = Schedule::ETCD.start();
    loop {
        let (lease, tree_lease) = (session.lease_id, session.tree_lease);
        let former = &mut former_at;
        let attempted = ctx
            .connector
            .call(|mut client| async move {
                let leases = (lease, tree_lease);
                match &ctx.slots {
                    None => join_queue(ctx, &mut client, leases, former).await,
                    Some(slots) => claim_slot(ctx, slots, &mut client, leases, former).await,
                }
            })
            .await;
        match attempted {
            Ok(Attempt::Won(won)) => return Campaign::Won(won),
            Ok(Attempt::Mismatch(m)) => return Campaign::Refused(Refused::Slots(m)),
            Err(e) if e.is_rejected() => return Campaign::Refused(Refused::Etcd(e)),
            Err(e) => pause_after(&e, &mut backoff, last_error, "campaign interrupted").await,
        }
    }
}

/// The singleton: join the queue, then wait for the candidate ahead to go (or, at its head at
/// once, for the queue's former head after a deletion).
async fn join_queue(
    ctx: &Ctx<'_>,
    client: &mut Client,
    (lease, tree_lease): (LeaseId, LeaseId),
    former_at: &mut Option<i64>,
) -> Result<Attempt, EtcdError> {
    let election = &ctx.election;
    let (mut me, leads, joined_at) = match election.join(client, lease, &ctx.cfg.id).await? {
        queue::Joined::Queued { me, leads, at } => (me, leads, at),
        queue::Joined::SlotsInUse(n) => return Ok(Attempt::Mismatch(Mismatch::Slots(n))),
    };
    let joined = BootInstant::now();
    // In the queue, and never refused from here on: before any child of ours can run, a marker
    // for its tree (a refused replica writes nothing).
    let marked = election.mark_tree(client, lease, tree_lease).await?;
    enter_standby(ctx, &me);
    warn_if_id_taken(ctx, lease);
    // Our key, step-down requests and the candidate ahead, on one stream from now on.
    let mut watch = CandidacyWatch::start(
        ctx.connector.clone(),
        election,
        &me,
        joined_at,
        ctx.step_down.clone(),
    );
    if leads {
        election
            .wait_former_head(client, &me, *former_at, marked)
            .await?;
    } else {
        match election.wait_turn(client, &me, &mut watch, marked).await {
            Ok(at) => me.leads_since = at,
            Err(e) => {
                remember(former_at, &watch, &e);
                return Err(e);
            }
        }
    }
    ctx.obs.first_in_line(watch.woken_at().unwrap_or(joined));
    Ok(Attempt::Won(Winning(me, watch, marked)))
}

/// `--slots N`, N > 1: join the standby queue and, first in it, claim a free slot
/// ([`crate::election::slots`]). The candidacy won is the slot's, watched from its claim.
async fn claim_slot(
    ctx: &Ctx<'_>,
    slots: &SlotElection,
    client: &mut Client,
    (lease, tree_lease): (LeaseId, LeaseId),
    former_at: &mut Option<i64>,
) -> Result<Attempt, EtcdError> {
    let joined = slots.join(client, lease, &ctx.cfg.id).await?;
    let mut first_in_line = BootInstant::now();
    if let slots::Joined::Refused(m) = joined {
        return Ok(Attempt::Mismatch(m));
    }
    // As for the singleton: joined, so a marker for our tree before any child of ours runs.
    let marked = ctx.election.mark_tree(client, lease, tree_lease).await?;
    warn_if_id_taken(ctx, lease);
    let holder = match joined {
        slots::Joined::Refused(m) => return Ok(Attempt::Mismatch(m)),
        slots::Joined::Holding(holder) => holder,
        slots::Joined::Standby(me, joined_at) => {
            enter_standby(ctx, &me);
            let mut watch = CandidacyWatch::start(
                ctx.connector.clone(),
                &ctx.election,
                &me,
                joined_at,
                ctx.step_down.clone(),
            );
            let taken = slots
                .take_slot(client, &me, &ctx.cfg.id, &mut watch, *former_at, marked)
                .await;
            if let Err(e) = &taken {
                remember(former_at, &watch, e);
            }
            first_in_line = watch.woken_at().unwrap_or(first_in_line);
            taken?
        }
    };
    ctx.obs.first_in_line(first_in_line);
    tracing::debug!(slot = ?holder.slot, revision = holder.revision, "slot claimed");
    // The slot key and step-down requests from the claim on.
    let watch = CandidacyWatch::start(
        ctx.connector.clone(),
        &ctx.election,
        &holder,
        holder.leads_since,
        ctx.step_down.clone(),
    );
    Ok(Attempt::Won(Winning(holder, watch, marked)))
}

/// At most this many of our former leases are remembered: their keys go within a TTL of the
/// etcd outage that kept them from being revoked.
const LEASES_REMEMBERED: usize = 16;

/// Notes a lease this replica took (see [`Ctx::leases_taken`]).
fn took_lease(ctx: &Ctx<'_>, lease: LeaseId) {
    let mut taken = ctx.leases_taken.lock().unwrap_or_else(|p| p.into_inner());
    if taken.len() >= LEASES_REMEMBERED {
        taken.remove(0);
    }
    taken.push(lease);
}

/// How long after joining the candidates are read for another replica with our `--id`: out of
/// the way of a handoff that the join may be part of (a leader that campaigns again).
const ID_CHECK_DELAY: Duration = Duration::from_secs(1);

/// Warns, once per join, when another replica of the election has our `--id` (its own lease):
/// `status` and the logs could not tell the two apart. One read of the candidates' values, in a
/// task of its own a moment after joining; nothing waits for it, and a failed read says nothing.
fn warn_if_id_taken(ctx: &Ctx<'_>, lease: LeaseId) {
    let connector = ctx.connector.clone();
    let (election, with_slots) = (ctx.election.clone(), ctx.slots.is_some());
    let id = ctx.cfg.id.clone();
    let ours = ctx
        .leases_taken
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    tokio::spawn(async move {
        sleep(ID_CHECK_DELAY).await;
        let timeout = connector.request_timeout();
        let read = connector.call(|mut c| async move {
            if !with_slots {
                return Ok(election.queue(&mut c).await?.candidates);
            }
            let view = SlotsView::read(&election, &mut c).await?;
            Ok(view.map_or_else(Vec::new, |v| {
                v.holders
                    .into_iter()
                    .flatten()
                    .chain(v.standbys)
                    .collect::<Vec<Candidate>>()
            }))
        });
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(candidates)) => {
                // Keys of our own earlier leases (not revoked in an etcd outage) are not others'.
                let others: Vec<_> = queue::same_id(&candidates, &id, lease)
                    .into_iter()
                    .filter(|c| !ours.contains(&c.lease))
                    .collect();
                match others.first() {
                    Some(other) => {
                        // Status and logs could not tell the two apart.
                        tracing::warn!(id = %id, other_key = %other.key, others = others.len(),
                        "another replica of this election has the same --id; give each its own")
                    }
                    None => tracing::debug!(
                        candidates = candidates.len(),
                        "no other replica of this election has our --id"
                    ),
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "could not look for another replica with our --id")
            }
            Err(_) => tracing::debug!("could not look for another replica with our --id in time"),
        }
    });
}

fn enter_standby(ctx: &Ctx<'_>, me: &Candidacy) {
    ctx.obs.enter(Phase::Standby {
        lease: me.lease,
        key: me.key.clone(),
        revision: me.revision,
    });
}

/// A join failed with `e`: what to remember of our key's loss. A read that found our key gone
/// counts as its deletion as much as the watch seeing it (which may come later, or not at all).
fn remember(former_at: &mut Option<i64>, watch: &CandidacyWatch, e: &EtcdError) {
    *former_at = remembered_deletion(
        *former_at,
        watch.was_deleted() || queue::is_key_vanished(e),
        watch.deleted_at(),
        watch.alive_at(),
    );
}

/// A join failed. If it was because our key is gone, the revision to wait for the former holders
/// at: just before the deletion if the watch saw it, else the last revision our key was known to
/// exist at (whoever led ahead of it did too); the later of that and what was remembered. Any other
/// failure (etcd unavailable) keeps what was remembered: a later revision would hide the holders
/// of the deletion that still matters.
pub(super) fn remembered_deletion(
    remembered: Option<i64>,
    key_deleted: bool,
    deleted_at: Option<i64>,
    alive_at: i64,
) -> Option<i64> {
    if !key_deleted {
        return remembered;
    }
    let at = deleted_at.map_or(alive_at, |d| d - 1);
    Some(remembered.map_or(at, |f| f.max(at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_failed_join_remembers() {
        // (remembered, key deleted, deleted at, alive at) -> remembered now
        let rows = [
            // etcd unavailable: nothing new, nothing forgotten.
            (None, false, None, 40, None),
            (Some(12), false, Some(50), 40, Some(12)),
            // The watch saw the deletion at 50: the queue as of 49.
            (None, true, Some(50), 40, Some(49)),
            // Gone, but the watch did not see when: the last revision it was known alive at.
            (None, true, None, 40, Some(40)),
            // A later deletion moves it later; an earlier view never moves it back.
            (Some(30), true, Some(50), 40, Some(49)),
            (Some(60), true, Some(50), 40, Some(60)),
        ];
        for (remembered, deleted, deleted_at, alive_at, want) in rows {
            assert_eq!(
                remembered_deletion(remembered, deleted, deleted_at, alive_at),
                want,
                "{remembered:?} {deleted} {deleted_at:?} {alive_at}"
            );
        }
    }
}
