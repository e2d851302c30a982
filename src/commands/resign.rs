//! `singleton-exec resign`: a planned switchover, from any machine with etcd access.
//!
//! 1. Read the leader (none: exit 1); with `--slots N`, the holder of the slot named by `--slot`.
//! 2. Put a step-down request addressed to its key and fencing revision ([`crate::election::step_down`]), under a
//!    lease of our own, so a request whose requester died is gone within about `--timeout`.
//! 3. Wait until that leader key is gone: the leader stopped its child's tree and revoked its lease,
//!    so a standby can take over (and the old leader waits as a standby after `--resign-holdoff`).
//!    Exit 0, printing who leads now.
//!
//! After `--timeout`: exit 124, saying whether the leader had acknowledged (deleted) the request,
//! i.e. is still stopping its child, or never saw it. On SIGINT/SIGTERM: exit 128+signal. In every
//! case the request is withdrawn (its lease revoked) first, so it cannot act after we have gone.

use std::time::Duration;

use etcd_client::PutOptions;
use tokio::time::Instant;

use crate::commands::status::{failed, Target, NO_LEADER};
use crate::config::cli::ResignArgs;
use crate::core::backoff::Schedule;
use crate::core::exit_code;
use crate::election::connector::EtcdError;
use crate::election::queue::{Candidacy, Candidate};
use crate::election::slots::SlotsView;
use crate::election::step_down::ResignRequest;
use crate::process::signals;

/// `--timeout` passed: the same code as `--acquire-timeout` and timeout(1).
pub const TIMED_OUT: i32 = exit_code::ACQUIRE_TIMEOUT;
/// How long, after the old leader stepped down, the answer waits to name its successor.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(1);

/// How the wait ended.
#[derive(Debug)]
enum Outcome {
    SteppedDown,
    TimedOut,
    Interrupted(libc::c_int),
    Failed(EtcdError),
}

pub async fn run(args: ResignArgs) -> i32 {
    // The deadline below adds it to an instant.
    if let Err(e) = crate::config::at_most_max("--timeout", args.timeout) {
        eprintln!("singleton-exec: {e}");
        return exit_code::USAGE;
    }
    let target =
        match Target::for_subcommand(&args.election, &args.prefix, args.etcd, &args.sources) {
            Ok(t) => t,
            Err(code) => return code,
        };
    let interrupted = signals::interrupted();
    let deadline = Instant::now() + args.timeout;
    let (old, revision, slot) = match whom(&target, args.slot).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    let request = ResignRequest {
        leader_key: old.key.clone(),
        fencing_revision: old.revision,
        by: requester(),
    };
    let mut lease = None;
    let outcome = tokio::select! {
        r = request_and_wait(&target, &request, revision + 1, args.timeout, &mut lease) => match r {
            Ok(()) => Outcome::SteppedDown,
            Err(e) => Outcome::Failed(e),
        },
        _ = tokio::time::sleep_until(deadline) => Outcome::TimedOut,
        sig = interrupted => Outcome::Interrupted(sig),
    };
    let acknowledged = match outcome {
        Outcome::TimedOut => Some(acknowledged(&target, &request).await),
        _ => None,
    };
    if let Some(id) = lease {
        withdraw(&target, id).await;
    }
    report(&target, &old, slot, outcome, acknowledged, args.timeout).await
}

/// The leader to ask (with slots, the holder of `slot`), the revision it was read at, and the slot
/// when the election has slots; or the exit code when there is none to ask.
async fn whom(target: &Target, slot: Option<u32>) -> Result<(Candidate, i64, Option<u32>), i32> {
    let name = &target.name;
    let slots = target.slots().await.map_err(|e| failed(&e))?;
    match choose(name, slots.as_ref(), slot) {
        Choice::Leader => {
            let queue = target.queue().await.map_err(|e| failed(&e))?;
            match queue.leader() {
                Some(l) => Ok((l.clone(), queue.revision, None)),
                None => {
                    println!("election {name}: no leader, nothing to resign");
                    Err(NO_LEADER)
                }
            }
        }
        Choice::Holder {
            holder,
            revision,
            slot,
        } => Ok((holder, revision, Some(slot))),
        Choice::NoHolder(i) => {
            println!("election {name}: slot {i} has no holder, nothing to resign");
            Err(NO_LEADER)
        }
        Choice::Usage(why) => {
            eprintln!("singleton-exec: {why}");
            Err(exit_code::USAGE)
        }
    }
}

/// Whom to ask, from the slots read (`None`: the election runs no slots) and `--slot`.
#[derive(Debug, PartialEq, Eq)]
enum Choice {
    /// The singleton's leader, read from its queue.
    Leader,
    /// The holder of `slot`, as read at `revision`.
    Holder {
        holder: Candidate,
        revision: i64,
        slot: u32,
    },
    /// The slot named has no holder: nothing to resign.
    NoHolder(u32),
    /// `--slot` does not fit the election: what to change.
    Usage(String),
}

fn choose(name: &str, slots: Option<&SlotsView>, slot: Option<u32>) -> Choice {
    match (slots, slot) {
        (None, None | Some(0)) => Choice::Leader,
        (None, Some(i)) => Choice::Usage(format!(
            "election {name} runs no slots (--slots 1): there is no slot {i}"
        )),
        (Some(v), None) => Choice::Usage(format!(
            "election {name} runs {} slots: name the one to resign with --slot (0..{})",
            v.count,
            v.count - 1
        )),
        (Some(v), Some(i)) if i >= v.count => Choice::Usage(format!(
            "election {name} has {} slots: --slot must be 0..{}",
            v.count,
            v.count - 1
        )),
        (Some(v), Some(i)) => match v.holders.get(i as usize).cloned().flatten() {
            Some(holder) => Choice::Holder {
                holder,
                revision: v.revision,
                slot: i,
            },
            None => Choice::NoHolder(i),
        },
    }
}

/// Who leads now (with slots, who holds `slot`), for the report.
/// Who leads (holds `slot`) now. The standby that takes over does so a few milliseconds after the
/// old key goes (it reads, then claims), so an empty answer is read again for up to
/// [`SUCCESSOR_WAIT`] before it is reported as "none yet".
async fn successor_soon(
    target: &Target,
    slot: Option<u32>,
) -> Result<Option<Candidate>, EtcdError> {
    let until = tokio::time::Instant::now() + SUCCESSOR_WAIT;
    loop {
        let now = successor(target, slot).await?;
        if now.is_some() || tokio::time::Instant::now() >= until {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn successor(target: &Target, slot: Option<u32>) -> Result<Option<Candidate>, EtcdError> {
    if let (Some(i), Some(v)) = (slot, target.slots().await?) {
        return Ok(v.holders.get(i as usize).cloned().flatten());
    }
    Ok(target.queue().await?.leader().cloned())
}

/// Puts the request and waits for the leader key to go. `lease` is set as soon as there is one, so
/// the caller can withdraw the request whatever ends the wait.
async fn request_and_wait(
    target: &Target,
    request: &ResignRequest,
    from: i64,
    timeout: Duration,
    lease: &mut Option<i64>,
) -> Result<(), EtcdError> {
    // The request lives about as long as we wait for it, at least etcd's minimum TTL.
    let ttl = (timeout.as_secs() as i64 + 1).max(2);
    let id = retrying(|| {
        target
            .connector
            .call(|mut c| async move { Ok::<_, EtcdError>(c.lease_grant(ttl, None).await?.id()) })
    })
    .await?;
    *lease = Some(id);
    let (key, value) = (target.election.resign_key(), request.encode());
    retrying(|| {
        let (key, value) = (key.clone(), value.clone());
        target.connector.call(|mut c| async move {
            c.put(key, value, Some(PutOptions::new().with_lease(id)))
                .await?;
            Ok::<_, EtcdError>(())
        })
    })
    .await?;
    tracing::debug!(%key, %value, "step-down request put");
    // Only the key is watched; its deletion after `from` is the leader giving the lease up.
    let old = Candidacy {
        key: request.leader_key.clone(),
        lease: crate::core::lifecycle::LeaseId(0),
        revision: request.fencing_revision,
        leads_since: request.fencing_revision,
        slot: None,
    };
    let (election, old) = (&target.election, &old);
    retrying(|| {
        target
            .connector
            .call(|mut c| async move { election.wait_key_deleted(&mut c, old, from).await })
    })
    .await
}

/// Retries while etcd is unavailable (the caller bounds the whole wait); a rejection is final.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, EtcdError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EtcdError>>,
{
    let mut retry = Schedule::SUBCOMMAND.start();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_rejected() => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "etcd unavailable; retrying");
                tokio::time::sleep(retry.next_pause()).await;
            }
        }
    }
}

/// A call bounded by the request timeout: etcd's answer, or none (a failure and the timeout
/// alike, since the callers do the same on both).
enum Reply<T> {
    Answered(T),
    NoAnswer,
}

async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, EtcdError>>,
) -> Reply<T> {
    let answer = tokio::time::timeout(limit, call).await.ok();
    match answer.and_then(Result::ok) {
        Some(v) => Reply::Answered(v),
        None => Reply::NoAnswer,
    }
}

/// Whether the leader took the request (deleted it, or a newer request replaced it).
async fn acknowledged(target: &Target, request: &ResignRequest) -> bool {
    let key = target.election.resign_key();
    let key = &key;
    let read =
        target.read(|mut c| async move { Ok::<_, EtcdError>(c.get(key.as_str(), None).await?) });
    match within(target.connector.request_timeout(), read).await {
        Reply::Answered(resp) => taken(resp.kvs().first().map(|kv| kv.value()), request),
        Reply::NoAnswer => false,
    }
}

/// Whether the request key's value (`None`: no key) shows our request taken: gone, or replaced
/// by another (an unreadable value is not ours either).
fn taken(value: Option<&[u8]>, request: &ResignRequest) -> bool {
    value.is_none_or(|v| ResignRequest::parse(v).ok().as_ref() != Some(request))
}

/// Revokes the request's lease, which deletes the request if it is still there.
async fn withdraw(target: &Target, lease: i64) {
    let revoke = target.read(|mut c| async move {
        c.lease_revoke(lease).await?;
        Ok::<_, EtcdError>(())
    });
    if let Reply::NoAnswer = within(target.connector.request_timeout(), revoke).await {
        tracing::warn!(
            lease = %crate::core::lifecycle::LeaseId(lease),
            "cannot withdraw the step-down request; it expires with its lease"
        );
    }
}

fn requester() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "singleton-exec resign on {host} (pid {})",
        std::process::id()
    )
}

fn describe(c: &Candidate) -> String {
    let id = if c.id.is_empty() {
        crate::commands::status::EMPTY_ID
    } else {
        &c.id
    };
    format!("{id} (key {}, fencing revision {})", c.key, c.revision)
}

async fn report(
    target: &Target,
    old: &Candidate,
    slot: Option<u32>,
    outcome: Outcome,
    acknowledged: Option<bool>,
    timeout: Duration,
) -> i32 {
    match outcome {
        Outcome::SteppedDown => {
            println!("stepped down: {}", describe(old));
            let now = match slot {
                Some(i) => format!("slot {i} now:   "),
                None => "leader:       ".to_owned(),
            };
            match successor_soon(target, slot).await {
                Ok(Some(new)) => println!("{now}{}", describe(&new)),
                Ok(None) => println!(
                    "{now}none yet (no standby was waiting; the old holder campaigns again after its --resign-holdoff)"
                ),
                Err(e) => println!("{now}unknown ({e})"),
            }
            0
        }
        Outcome::TimedOut => {
            let why = if acknowledged == Some(true) {
                "it took the request and is still stopping its child (see its --grace)"
            } else {
                "it did not take the request (a singleton-exec without `resign` support, or no read permission on the request key?)"
            };
            eprintln!(
                "singleton-exec: {} has not stepped down within {}: {why}",
                describe(old),
                humantime::format_duration(timeout)
            );
            TIMED_OUT
        }
        Outcome::Interrupted(sig) => {
            eprintln!(
                "singleton-exec: interrupted by {}; the request was withdrawn (unless the leader had already taken it)",
                crate::core::exit_code::signal_name(sig)
            );
            exit_code::SIGNALED_BASE + sig
        }
        Outcome::Failed(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::LeaseId;

    fn holder(id: &str, revision: i64) -> Candidate {
        Candidate {
            id: id.into(),
            key: format!("/p/app@slots/3/slot/{revision}"),
            lease: LeaseId(revision),
            revision,
        }
    }

    fn three_slots() -> SlotsView {
        SlotsView {
            revision: 40,
            count: 3,
            holders: vec![Some(holder("a", 7)), None, Some(holder("c", 9))],
            health: vec![None, None, None],
            standbys: vec![],
            other_counts: vec![],
        }
    }

    #[test]
    fn whom_to_ask_by_the_slots_read_and_the_slot_named() {
        let v = three_slots();
        let usage = |s: &str| Choice::Usage(s.to_owned());
        let rows = [
            // (slots read, --slot, expected)
            (None, None, Choice::Leader),
            (None, Some(0), Choice::Leader),
            (
                None,
                Some(1),
                usage("election app runs no slots (--slots 1): there is no slot 1"),
            ),
            (
                Some(&v),
                None,
                usage("election app runs 3 slots: name the one to resign with --slot (0..2)"),
            ),
            (
                Some(&v),
                Some(0),
                Choice::Holder {
                    holder: holder("a", 7),
                    revision: 40,
                    slot: 0,
                },
            ),
            (Some(&v), Some(1), Choice::NoHolder(1)),
            (
                Some(&v),
                Some(2),
                Choice::Holder {
                    holder: holder("c", 9),
                    revision: 40,
                    slot: 2,
                },
            ),
            (
                Some(&v),
                Some(3),
                usage("election app has 3 slots: --slot must be 0..2"),
            ),
            (
                Some(&v),
                Some(u32::MAX),
                usage("election app has 3 slots: --slot must be 0..2"),
            ),
        ];
        for (slots, slot, want) in rows {
            assert_eq!(choose("app", slots, slot), want, "{slot:?}");
        }
    }

    #[test]
    fn a_view_shorter_than_its_count_has_no_holder_there() {
        let mut v = three_slots();
        v.holders.truncate(1);
        assert_eq!(choose("app", Some(&v), Some(2)), Choice::NoHolder(2));
    }

    #[test]
    fn the_request_is_taken_once_it_is_gone_or_replaced() {
        let ours = ResignRequest {
            leader_key: "/p/app/a1".into(),
            fencing_revision: 5,
            by: "me".into(),
        };
        let newer = ResignRequest {
            by: "someone else".into(),
            ..ours.clone()
        };
        let (ours_v, newer_v) = (ours.encode(), newer.encode());
        let rows: [(Option<&[u8]>, bool); 4] = [
            // (value of the request key, taken?)
            (None, true),
            (Some(ours_v.as_bytes()), false),
            (Some(newer_v.as_bytes()), true),
            (Some(b"not json"), true),
        ];
        for (value, want) in rows {
            assert_eq!(
                taken(value, &ours),
                want,
                "{:?}",
                value.map(String::from_utf8_lossy)
            );
        }
    }
}
