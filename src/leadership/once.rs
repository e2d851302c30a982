//! `--once NAME` in the leadership loop: the replica's side of [`crate::election::once`].
//!
//! ```text
//! before joining: settled (a record, or --once-attempts failed runs)? say it, exit with it
//! standby (the once queue) → head: settled? say it, exit │ begin our run (fenced) → lead
//! lead's one release: the run's end written with it (record, or one more failed attempt)
//! ```
//!
//! Rules kept here:
//! * a replica reports only an outcome it read from etcd (before joining, or at the head of the
//!   queue), or, as the runner, one it wrote there; its own success that could not be recorded
//!   (our key gone) is reported by nobody: the replica then acts as after a lost lease, and with
//!   `--on-lease-lost recampaign` (the default) waits in the queue for the outcome like any
//!   waiter;
//! * a run starts only after its begin was written under our verified key: the child's
//!   `SINGLETON_EXEC_REVISION` is the one the begin, and the end, are fenced by;
//! * only a child that ended by itself has an outcome ([`run_end`]); one we stopped (a shutdown, a
//!   lost lease or key, a step-down) was cut short, and the next runner runs it again;
//! * the end is retried while the lease lives (the transaction is fenced, and its else branch
//!   tells an earlier success of ours from none), never past it: then the next head reads what is
//!   in etcd and decides.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{sleep, timeout};

use crate::core::backoff::Schedule;
use crate::core::exit_code::Exit;
use crate::core::lifecycle::{decide, Asked, Next, StopReason};
use crate::election::once::{
    run_end, settled, Begun, Ended, Gate, OnceLayout, RunEnd, Settled, Unreadable, Written,
};
use crate::election::queue::Candidacy;
use crate::election::session::{LeaseState, Session};
use crate::report::logging;

use super::standby::Won;
use super::{lease_lost, leave_requested, policies, Ctx, Inputs, Leave};

/// Now, in Unix milliseconds (the times of the record and the attempts).
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// `--once-attempts`.
fn max_attempts(ctx: &Ctx<'_>) -> u32 {
    ctx.cfg.once.as_ref().map_or(1, |o| o.attempts)
}

/// Before joining the queue: when the outcome is settled already, says it and returns the exit.
/// One read; if etcd cannot answer now, the campaign (which retries) and the head of the queue
/// read it later.
pub(super) async fn settled_before_joining(ctx: &Ctx<'_>) -> Option<Exit> {
    let once = ctx.once.as_ref()?;
    let read = ctx
        .connector
        .call(|mut c| async move { once.read(&mut c).await });
    match timeout(ctx.connector.request_timeout(), read).await {
        Ok(Ok(Ok(view))) => {
            let s = settled(&view.outcome, max_attempts(ctx))?;
            say_settled(ctx, once, &s);
            Some(s.exit())
        }
        Ok(Ok(Err(unreadable))) => Some(refuse(&unreadable)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read the outcome before joining; the queue will");
            None
        }
        Err(_) => None,
    }
}

/// What the head of the queue does next.
pub(super) enum Head {
    /// Run the command: our run is begun (`won.once`).
    Run(Box<Won>),
    /// Exit with this (the lease is given up).
    Exit(Exit),
    /// Our key or lease is gone: join again.
    Again,
    /// Ctrl-Z: suspend (the lease is given up).
    Suspend,
}

/// Why the head of the queue cannot go on.
enum Refusal {
    Etcd(crate::election::connector::EtcdError),
    Unreadable(Unreadable),
}

/// At the head of the queue (`won`): the outcome, or our run begun. Without `--once`, runs.
pub(super) async fn at_head(ctx: &Ctx<'_>, inp: &mut Inputs<'_>, mut won: Won) -> Head {
    let Some(once) = &ctx.once else {
        return Head::Run(Box::new(won));
    };
    let gate = tokio::select! {
        leave = leave_requested(&mut inp.process, &mut inp.user, None) => Err(leave),
        reason = lease_lost(won.session.state()) => Ok(Err(reason)),
        g = gate(ctx, once, &won.me) => Ok(Ok(g)),
    };
    let give_up = |session: Session, within: Duration| session.revoke(within);
    match gate {
        Err(leave) => {
            give_up(won.session, super::REVOKE_ON_EXIT).await;
            match leave {
                Leave::Exit(exit) => Head::Exit(exit),
                Leave::Suspend => Head::Suspend,
            }
        }
        Ok(Err(reason)) => {
            tracing::warn!(id = %ctx.cfg.id, %reason, "lease lost at the head of the queue; joining again");
            give_up(won.session, ctx.connector.request_timeout()).await;
            Head::Again
        }
        Ok(Ok(Ok(Gate::Settled(s)))) => {
            say_settled(ctx, once, &s);
            give_up(won.session, super::REVOKE_ON_EXIT).await;
            Head::Exit(s.exit())
        }
        Ok(Ok(Ok(Gate::Lost))) => {
            tracing::warn!(id = %ctx.cfg.id, key = %won.me.key, "our key is gone at the head of the queue; joining again");
            give_up(won.session, ctx.connector.request_timeout()).await;
            Head::Again
        }
        Ok(Ok(Ok(Gate::Run(begun)))) => {
            let max = max_attempts(ctx);
            match &begun.previous {
                Some(p) if p.ended.is_none() => {
                    tracing::warn!(once = %once.name, attempt = begun.run.attempt, max,
                        cut_short_revision = p.fencing_revision, cut_short_on = %p.id,
                        "running again a run that was cut short (its runner crashed, lost its lease or was stopped)")
                }
                _ => tracing::info!(once = %once.name, attempt = begun.run.attempt, max,
                    fencing_revision = begun.run.fencing_revision, "running the command"),
            }
            won.once = Some(*begun);
            Head::Run(Box::new(won))
        }
        Ok(Ok(Err(refusal))) => {
            give_up(won.session, super::REVOKE_ON_EXIT).await;
            Head::Exit(match refusal {
                Refusal::Etcd(e) => {
                    tracing::error!(error = %e, "etcd refused this replica; check --user/--password, TLS files and the role's permissions on PREFIX/ELECTION@once/");
                    Exit::EtcdRejected
                }
                Refusal::Unreadable(u) => refuse(&u),
            })
        }
    }
}

/// The head's read and begin, retried while etcd is unavailable.
async fn gate(ctx: &Ctx<'_>, once: &OnceLayout, me: &Candidacy) -> Result<Gate, Refusal> {
    let (id, max) = (ctx.cfg.id.as_str(), max_attempts(ctx));
    let mut backoff = Schedule::ETCD.start();
    loop {
        let begun = ctx
            .connector
            .call(|mut c| async move { once.begin(&mut c, me, id, max, now_ms()).await });
        match timeout(ctx.connector.request_timeout() * 2, begun).await {
            Ok(Ok(Ok(gate))) => return Ok(gate),
            Ok(Ok(Err(u))) => return Err(Refusal::Unreadable(u)),
            Ok(Err(e)) if e.is_rejected() => return Err(Refusal::Etcd(e)),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the outcome; retrying"),
            Err(_) => tracing::warn!("reading the outcome timed out; retrying"),
        }
        sleep(backoff.next_pause()).await;
    }
}

/// The variables the command gets with `--once`, beside the leader's.
pub(super) fn env(once: &OnceLayout, begun: &Begun, max: u32) -> Vec<(String, String)> {
    let mut env = vec![
        ("SINGLETON_EXEC_ONCE_NAME".into(), once.name.clone()),
        (
            "SINGLETON_EXEC_ONCE_ATTEMPT".into(),
            begun.run.attempt.to_string(),
        ),
        ("SINGLETON_EXEC_ONCE_MAX_ATTEMPTS".into(), max.to_string()),
    ];
    if let Some(p) = &begun.previous {
        env.push((
            "SINGLETON_EXEC_ONCE_PREVIOUS_REVISION".into(),
            p.fencing_revision.to_string(),
        ));
    }
    env
}

/// How a run's end went: what follows, and whether our key was released with it.
pub(super) struct RunOver {
    pub next: Next,
    pub released: bool,
}

/// The end of our run (`begun`), its tree gone: its outcome, written with our release, when it
/// has one. `reason` and `next` are the leadership's end; `asked` what the user asked by signal,
/// and `shutdown` the shutdown signal, if one came: a replica stopped by it before an outcome
/// was recorded exits 128+S ([`Exit::Interrupted`]), never with a 0 that says it succeeded.
pub(super) async fn end(
    ctx: &Ctx<'_>,
    me: &Candidacy,
    session: &Session,
    tree_marked: bool,
    begun: &Begun,
    (reason, next, asked, shutdown): (Option<StopReason>, Next, Asked, Option<libc::c_int>),
) -> RunOver {
    let Some(once) = &ctx.once else {
        return RunOver {
            next,
            released: false,
        };
    };
    let tree = tree_marked.then_some(session.tree_lease);
    let max = max_attempts(ctx);
    let (attempt, rev) = (begun.run.attempt, begun.run.fencing_revision);
    match run_end(reason, next, shutdown) {
        RunEnd::Interrupted => {
            let why = reason.map_or_else(|| "it never started".to_owned(), |r| r.to_string());
            tracing::warn!(once = %once.name, attempt, fencing_revision = rev, %why,
                "run cut short: no outcome recorded; the next runner runs this attempt again");
            RunOver {
                next: unrecorded(next, shutdown),
                released: false,
            }
        }
        RunEnd::Succeeded => {
            let written = write_end(ctx, session, |mut c| async move {
                once.succeed(&mut c, me, tree, begun, now_ms()).await
            })
            .await;
            match written {
                Some(Written::Done(_)) => {
                    let took =
                        Duration::from_millis(now_ms().saturating_sub(begun.run.started_at_ms));
                    logging::say(
                        &format!(
                            "once {}: done here: attempt {attempt} of {max} succeeded (fencing revision {rev}, took {}); recorded in etcd",
                            once.name,
                            humantime::format_duration(took)
                        ),
                        false,
                    );
                    RunOver {
                        next,
                        released: true,
                    }
                }
                Some(Written::NotOurs) | None => {
                    logging::say(
                        &format!(
                            "once {}: the command succeeded here (attempt {attempt}, fencing revision {rev}) but its success could not be recorded: our key is gone or etcd did not answer before our lease's deadline; it is not done until a record says so",
                            once.name
                        ),
                        true,
                    );
                    // As after a lost lease: wait in the queue for the outcome (or exit 122).
                    let status = crate::core::exit_code::ChildStatus::Exited(0);
                    let next = decide(StopReason::KeyDeleted, asked, status, policies(ctx.cfg));
                    RunOver {
                        next: unrecorded(next, shutdown),
                        released: false,
                    }
                }
            }
        }
        RunEnd::Failed { exit_code, status } => {
            let ended = Ended {
                exit_code,
                status: status.clone(),
                ended_at_ms: now_ms(),
            };
            let written = write_end(ctx, session, |mut c| {
                let ended = ended.clone();
                async move { once.fail(&mut c, me, tree, begun, ended).await }
            })
            .await;
            match written {
                Some(Written::Done(attempts)) => {
                    let left = max.saturating_sub(attempts.failed);
                    let then = match left {
                        0 => format!("no attempts left: every waiter exits with {exit_code}"),
                        1 => "1 attempt left for the next runner".to_owned(),
                        n => format!("{n} attempts left for the next runners"),
                    };
                    logging::say(
                        &format!(
                            "once {}: attempt {attempt} of {max} failed here ({status}, fencing revision {rev}); {then}",
                            once.name
                        ),
                        true,
                    );
                    RunOver {
                        next,
                        released: true,
                    }
                }
                Some(Written::NotOurs) | None => {
                    tracing::warn!(once = %once.name, attempt, fencing_revision = rev, %status,
                        "the run failed, but it could not be counted (our key is gone, or etcd did not answer in time): the next runner runs this attempt again");
                    RunOver {
                        next,
                        released: false,
                    }
                }
            }
        }
    }
}

/// What follows a run without a recorded outcome: with a shutdown signal, an exit with the
/// child's status becomes 128+S (the child may have exited 0 on our stop signal, or succeeded
/// unrecorded); the rest as decided.
fn unrecorded(next: Next, shutdown: Option<libc::c_int>) -> Next {
    match (next, shutdown) {
        (Next::Exit(Exit::Child(_)), Some(sig)) => Next::Exit(Exit::Interrupted(sig)),
        (next, _) => next,
    }
}

/// Writes a run's end, retried while our lease lives (the write is fenced, and tells an
/// earlier success of ours from none, so trying again is safe). `None`: etcd rejected us, or
/// could not be asked before the lease's deadline.
async fn write_end<F, Fut>(ctx: &Ctx<'_>, session: &Session, op: F) -> Option<Written>
where
    F: Fn(etcd_client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<Written, crate::election::connector::EtcdError>>,
{
    let mut backoff = Schedule::ETCD.start();
    loop {
        match timeout(ctx.connector.request_timeout(), ctx.connector.call(&op)).await {
            Ok(Ok(written)) => return Some(written),
            Ok(Err(e)) if e.is_rejected() => {
                tracing::error!(error = %e, "etcd refused the run's outcome");
                return None;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot write the run's outcome; retrying while our lease lives")
            }
            Err(_) => tracing::warn!(
                "writing the run's outcome timed out; retrying while our lease lives"
            ),
        }
        if session.current() == LeaseState::Lost {
            return None;
        }
        sleep(backoff.next_pause()).await;
    }
}

/// The line a replica that did not run the command exits with.
fn say_settled(ctx: &Ctx<'_>, once: &OnceLayout, s: &Settled) {
    let max = max_attempts(ctx);
    let line = match s {
        Settled::Done(r) => format!(
            "once {}: done by {} (attempt {}, fencing revision {}, finished at {}); not run here",
            once.name,
            r.id,
            r.attempt,
            r.fencing_revision,
            crate::election::once::rfc3339(r.finished_at_ms)
        ),
        Settled::GaveUp { last, failed } => {
            let status = last
                .ended
                .as_ref()
                .map_or("failed".to_owned(), |e| e.status.clone());
            format!(
                "once {}: attempt {} failed on {} ({status}, fencing revision {}); {failed} of {max} attempts failed: not run here",
                once.name, last.attempt, last.id, last.fencing_revision
            )
        }
    };
    logging::say(&line, matches!(s, Settled::GaveUp { .. }));
}

/// A value under our keys that is not ours: the replica refuses to guess (exit 2).
fn refuse(u: &Unreadable) -> Exit {
    logging::say(&format!("{u}"), true);
    Exit::Usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::exit_code::ChildStatus;

    /// A replica that ends without a recorded outcome never exits 0 because of a shutdown.
    #[test]
    fn a_shutdown_without_an_outcome_is_never_0() {
        let term = Some(libc::SIGTERM);
        let child = |code| Next::Exit(Exit::Child(ChildStatus::Exited(code)));
        let again = Next::Recampaign { holdoff: false };
        let rows = [
            (child(0), term, Next::Exit(Exit::Interrupted(libc::SIGTERM))),
            (
                child(143),
                term,
                Next::Exit(Exit::Interrupted(libc::SIGTERM)),
            ),
            (child(0), None, child(0)),
            (again, term, again),
            (again, None, again),
            (
                Next::Exit(Exit::LeaseLost),
                term,
                Next::Exit(Exit::LeaseLost),
            ),
        ];
        for (next, shutdown, want) in rows {
            assert_eq!(unrecorded(next, shutdown), want, "{next:?} {shutdown:?}");
        }
    }
}
