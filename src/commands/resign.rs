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
use crate::election::step_down::ResignRequest;
use crate::process::signals;

/// `--timeout` passed: the same code as `--acquire-timeout` and timeout(1).
pub const TIMED_OUT: i32 = exit_code::ACQUIRE_TIMEOUT;

/// How the wait ended.
#[derive(Debug)]
enum Outcome {
    SteppedDown,
    TimedOut,
    Interrupted(libc::c_int),
    Failed(EtcdError),
}

pub async fn run(args: ResignArgs) -> i32 {
    let target = match Target::new(&args.election, &args.prefix, args.etcd) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("singleton-exec: {e}");
            return exit_code::USAGE;
        }
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
    match (slots, slot) {
        (None, None | Some(0)) => {
            let queue = target.queue().await.map_err(|e| failed(&e))?;
            match queue.leader() {
                Some(l) => Ok((l.clone(), queue.revision, None)),
                None => {
                    println!("election {name}: no leader, nothing to resign");
                    Err(NO_LEADER)
                }
            }
        }
        (None, Some(i)) => {
            eprintln!(
                "singleton-exec: election {name} runs no slots (--slots 1): there is no slot {i}"
            );
            Err(exit_code::USAGE)
        }
        (Some(v), None) => {
            eprintln!(
                "singleton-exec: election {name} runs {} slots: name the one to resign with --slot (0..{})",
                v.count,
                v.count - 1
            );
            Err(exit_code::USAGE)
        }
        (Some(v), Some(i)) if i >= v.count => {
            eprintln!(
                "singleton-exec: election {name} has {} slots: --slot must be 0..{}",
                v.count,
                v.count - 1
            );
            Err(exit_code::USAGE)
        }
        (Some(v), Some(i)) => match &v.holders[i as usize] {
            Some(h) => Ok((h.clone(), v.revision, Some(i))),
            None => {
                println!("election {name}: slot {i} has no holder, nothing to resign");
                Err(NO_LEADER)
            }
        },
    }
}

/// Who leads now (with slots, who holds `slot`), for the report.
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

/// Whether the leader took the request (deleted it, or a newer request replaced it).
async fn acknowledged(target: &Target, request: &ResignRequest) -> bool {
    let key = target.election.resign_key();
    let key = &key;
    let read =
        target.read(|mut c| async move { Ok::<_, EtcdError>(c.get(key.as_str(), None).await?) });
    match tokio::time::timeout(target.connector.request_timeout(), read).await {
        Ok(Ok(resp)) => resp
            .kvs()
            .first()
            .is_none_or(|kv| ResignRequest::parse(kv.value()).ok().as_ref() != Some(request)),
        _ => false,
    }
}

/// Revokes the request's lease, which deletes the request if it is still there.
async fn withdraw(target: &Target, lease: i64) {
    let revoke = target.read(|mut c| async move {
        c.lease_revoke(lease).await?;
        Ok::<_, EtcdError>(())
    });
    match tokio::time::timeout(target.connector.request_timeout(), revoke).await {
        Ok(Ok(())) => {}
        _ => tracing::warn!(
            lease = %crate::core::lifecycle::LeaseId(lease),
            "cannot withdraw the step-down request; it expires with its lease"
        ),
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
            match successor(target, slot).await {
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
