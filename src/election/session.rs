//! The etcd session: one lease, kept alive on our own timer, and the deadline it buys.
//!
//! Invariant: [`LeaseState::Alive::safe_until`] is the send instant of the last *acknowledged*
//! keepalive plus the smaller of requested and granted TTL, on [`BootInstant`]. Keepalives are sent
//! one at a time (send, wait for its reply, sleep), so each reply is matched to the request that
//! caused it. Opening the stream sends a keepalive too, and its reply counts.
//!
//! The retry schedule is the one [`crate::core::timing`] reasons about: every attempt (reconnect,
//! re-authenticate, open the stream, get the reply) is bounded by `attempt_timeout` as a whole, and
//! after a failed attempt the next one starts `attempt_timeout` after the failed one started. A
//! reply with `ttl <= 0`, or "lease not found" when (re)opening the stream, means the lease is gone
//! (revoked or expired): that is final and reported at once as [`LeaseState::Lost`].

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::core::clock::BootInstant;
use crate::core::lifecycle::LeaseId;
use crate::core::timing::{Jitter, TimingModel};
use crate::election::connector::{within, Conn, Connector, EtcdError, Within};

/// What a session reports as it goes, for whoever shows it (status and metrics): the session
/// decides nothing by it, and a report never blocks the keepalives.
pub trait LeaseEvents: Send + Sync {
    /// A keepalive was acknowledged (or the lease granted, `rtt` then unknown).
    fn lease_renewed(&self, safe_until: BootInstant, rtt: Option<Duration>);
    /// The lease is gone or given up.
    fn lease_dropped(&self);
    /// One keepalive attempt failed; the next follows per the retry schedule.
    fn keepalive_failed(&self);
}

/// What we know about our lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The server cannot expire the lease before `safe_until`.
    Alive { safe_until: BootInstant },
    /// etcd said the lease is gone, or `safe_until` passed without a renewal.
    Lost,
}

impl LeaseState {
    /// The state as of `now`: `Lost` once `safe_until` is reached, even if no reply said so.
    pub fn at(self, now: BootInstant) -> LeaseState {
        match self {
            LeaseState::Alive { safe_until } if now >= safe_until => LeaseState::Lost,
            s => s,
        }
    }
}

/// A granted lease and the task that keeps it alive.
pub struct Session {
    connector: Arc<Connector>,
    pub lease_id: LeaseId,
    state: watch::Receiver<LeaseState>,
    keepalive: JoinHandle<()>,
}

/// How giving the lease up went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// etcd revoked it now: a standby can take over at once.
    Now,
    /// It was already gone.
    AlreadyGone,
    /// etcd could not be asked in time: it expires after its TTL.
    Failed(String),
}

impl Session {
    /// Grants a lease (one attempt) and starts keeping it alive.
    pub async fn grant(
        connector: Arc<Connector>,
        timing: TimingModel,
        observer: Arc<dyn LeaseEvents>,
    ) -> Result<Session, EtcdError> {
        let sent = BootInstant::now();
        let started = Instant::now();
        let ttl = timing.ttl.as_secs() as i64;
        let resp = connector
            .call(|mut c| async move { Ok(c.lease_grant(ttl, None).await?) })
            .await?;
        let lease_id = LeaseId(resp.id());
        let granted_ttl = Duration::from_secs(resp.ttl().max(0) as u64);
        let safe_until = timing.safe_until(sent, granted_ttl);
        let (tx, rx) = watch::channel(LeaseState::Alive { safe_until });
        observer.lease_renewed(safe_until, None);
        let keeper = KeepAlive {
            connector: connector.clone(),
            timing,
            lease: lease_id,
            granted_ttl,
            tx,
            observer,
        };
        // The first keepalive is due (at most) one interval after the grant was *sent*, like every
        // later one; each wait is jittered so that replicas started together spread out.
        let mut jitter = Jitter::new();
        let first = started + timing.first_jittered(jitter.next());
        let keepalive = tokio::spawn(keeper.run(first, jitter));
        tracing::debug!(lease = %lease_id, granted_ttl_s = granted_ttl.as_secs(), "lease granted");
        Ok(Session {
            connector,
            lease_id,
            state: rx,
            keepalive,
        })
    }

    /// A receiver that sees every change of the lease state.
    pub fn state(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// The lease state now; `Lost` once `safe_until` has passed even if no reply said so.
    pub fn current(&self) -> LeaseState {
        self.state.borrow().at(BootInstant::now())
    }

    /// Stops the keepalives and revokes the lease so a standby can take over at once, trying every
    /// endpoint (and a fresh token) within `within`. Never reports success it did not get.
    pub async fn revoke(self, within: Duration) -> Revoked {
        self.keepalive.abort();
        let lease = self.lease_id;
        let attempts = self.connector.endpoints().len().max(2);
        let tries = async {
            let mut last = String::from("no attempt");
            for _ in 0..attempts {
                let r = self
                    .connector
                    .call(|mut c| async move { Ok(c.lease_revoke(lease.0).await?) })
                    .await;
                match revoked(r) {
                    Ok(done) => return done,
                    Err(why) => last = why,
                }
            }
            Revoked::Failed(last)
        };
        let outcome = timeout(within, tries)
            .await
            .unwrap_or_else(|_| Revoked::Failed("timed out".into()));
        match &outcome {
            Revoked::Now => tracing::debug!(%lease, "lease revoked"),
            Revoked::AlreadyGone => tracing::debug!(%lease, "lease was already gone"),
            Revoked::Failed(why) => tracing::warn!(%lease, error = %why,
                "revoking the lease failed; it expires after its TTL"),
        }
        outcome
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// The keepalive task's state.
struct KeepAlive {
    connector: Arc<Connector>,
    timing: TimingModel,
    lease: LeaseId,
    /// What the server granted; a reply that opens a stream does not show it to us.
    granted_ttl: Duration,
    tx: watch::Sender<LeaseState>,
    observer: Arc<dyn LeaseEvents>,
}

/// How one keepalive attempt or stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broke {
    /// The lease is gone: stop.
    LeaseGone,
    /// Nobody listens any more: stop.
    Closed,
    /// Transport failure, timeout or closed stream: retry per the schedule.
    Retry,
}

impl KeepAlive {
    async fn run(self, first: Instant, mut jitter: Jitter) {
        let attempt = self.timing.attempt_timeout();
        let mut next = first;
        loop {
            tokio::time::sleep_until(next).await;
            let started = Instant::now();
            match self.open_and_keep(&mut jitter).await {
                Broke::LeaseGone => {
                    tracing::warn!(lease = %self.lease, "etcd reports the lease is gone");
                    self.observer.lease_dropped();
                    let _ = self.tx.send(LeaseState::Lost);
                    return;
                }
                Broke::Closed => return,
                Broke::Retry => self.observer.keepalive_failed(),
            }
            next = next_attempt(started, attempt, Instant::now());
        }
    }

    /// One attempt to (re)open the stream, then keepalives on it until it breaks.
    async fn open_and_keep(&self, jitter: &mut Jitter) -> Broke {
        let attempt = self.timing.attempt_timeout();
        let sent = BootInstant::now();
        let started = Instant::now();
        let generation = self.connector.generation();
        // Connecting, authenticating and the first reply all count against one attempt.
        let (conn, mut keeper, mut stream) = match within(attempt, self.open()).await {
            Within::Done(opened) => opened,
            Within::Failed(e) => {
                if !matches!(e, EtcdError::LeaseGone(_)) {
                    tracing::warn!(error = %e, "keepalive: cannot open the stream");
                }
                return not_opened(Some(&e));
            }
            Within::TimedOut => {
                tracing::warn!(
                    timeout_ms = attempt.as_millis() as u64,
                    "keepalive: reconnecting timed out"
                );
                // Whatever connection it was waiting on is not serving us: next time, a fresh one.
                self.connector.failed(generation);
                return not_opened(None);
            }
        };
        // Opening sent a keepalive, and its reply (TTL > 0, or the open would have failed) counts.
        if !self.publish(self.timing.safe_until(sent, self.granted_ttl), started) {
            return Broke::Closed;
        }
        let why = self.keep(&mut keeper, &mut stream, started, jitter).await;
        if matches!(why, Broke::Retry) {
            self.connector.failed(conn.generation);
            tracing::warn!(endpoint = %conn.endpoint, "keepalive stream broke; reconnecting");
        }
        why
    }

    /// Opens the keepalive stream, which sends a keepalive. An endpoint that fails fast (refused,
    /// reset) is followed at once by the next, within the same attempt, so one dead endpoint in
    /// the list does not cost a whole attempt.
    async fn open(&self) -> Result<(Conn, LeaseKeeper, LeaseKeepAliveStream), EtcdError> {
        let mut tries = self.connector.endpoints().len();
        loop {
            tries = tries.saturating_sub(1);
            match self.open_on_current().await {
                Err(e) if try_next_endpoint(&e, tries) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => return other,
            }
        }
    }

    async fn open_on_current(
        &self,
    ) -> Result<(Conn, LeaseKeeper, LeaseKeepAliveStream), EtcdError> {
        let conn = self.connector.get().await?;
        match conn.client.clone().lease_keep_alive(self.lease.0).await {
            Ok((keeper, stream)) => Ok((conn, keeper, stream)),
            Err(e) => Err(self
                .connector
                .report(conn.generation, &conn.endpoint, e.into())),
        }
    }

    /// Keepalives on an open stream, one in flight at a time.
    async fn keep(
        &self,
        keeper: &mut LeaseKeeper,
        stream: &mut LeaseKeepAliveStream,
        mut last: Instant,
        jitter: &mut Jitter,
    ) -> Broke {
        // The first wait on a (re)opened stream takes a random phase: replicas that reconnect
        // together after an etcd outage do not keep reaching it together.
        let mut wait = self.timing.first_jittered(jitter.next());
        let attempt = self.timing.attempt_timeout();
        loop {
            tokio::time::sleep_until(last + wait).await;
            wait = self.timing.jittered(jitter.next());
            let sent = BootInstant::now();
            last = Instant::now();
            let reply = async {
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map(|r| r.ttl()))
            };
            let reply = within(attempt, reply).await;
            match renewal(&self.timing, sent, &reply) {
                Ok(safe_until) => {
                    if !self.publish(safe_until, last) {
                        return Broke::Closed;
                    }
                }
                Err(broke) => {
                    match &reply {
                        Within::Done(None) => tracing::warn!("keepalive stream closed by etcd"),
                        Within::Failed(e) => tracing::warn!(error = %e, "keepalive failed"),
                        Within::TimedOut => tracing::warn!(
                            timeout_ms = attempt.as_millis() as u64,
                            "keepalive: no reply in time"
                        ),
                        Within::Done(Some(_)) => {}
                    }
                    return broke;
                }
            }
        }
    }

    /// Publishes the deadline bought by a keepalive sent at `started`; false if nobody listens.
    fn publish(&self, safe_until: BootInstant, started: Instant) -> bool {
        let rtt = started.elapsed();
        tracing::trace!(rtt_ms = rtt.as_millis() as u64, "keepalive acknowledged");
        self.observer.lease_renewed(safe_until, Some(rtt));
        self.tx.send(LeaseState::Alive { safe_until }).is_ok()
    }
}

/// How an attempt whose stream did not open ends; `error` is what failed (`None`: no answer in
/// time). "Lease not found" is final; anything else (an endpoint down or refusing us, no answer
/// in time) is retried per the schedule.
fn not_opened(error: Option<&EtcdError>) -> Broke {
    match error {
        Some(EtcdError::LeaseGone(_)) => Broke::LeaseGone,
        Some(_) | None => Broke::Retry,
    }
}

/// Whether a failed open moves on to the next endpoint within the same attempt: only when the
/// endpoint is unavailable (a rejection is the connector's to judge) and endpoints are left.
fn try_next_endpoint(e: &EtcdError, tries_left: usize) -> bool {
    matches!(e, EtcdError::Unavailable(_)) && tries_left > 0
}

/// What a keepalive's reply (its TTL; `None`: the stream closed), awaited within the attempt
/// timeout, means: the deadline it buys, counted from when the keepalive was *sent*, with the
/// smaller of requested and granted TTL; or why the stream ends. After a revoke or an expiry
/// etcd keeps the stream open and answers `ttl <= 0`: the lease is gone.
fn renewal(
    timing: &TimingModel,
    sent: BootInstant,
    reply: &Within<Option<i64>>,
) -> Result<BootInstant, Broke> {
    match reply {
        Within::Done(Some(ttl)) if *ttl > 0 => {
            Ok(timing.safe_until(sent, Duration::from_secs(*ttl as u64)))
        }
        Within::Done(Some(_)) => Err(Broke::LeaseGone),
        Within::Done(None) | Within::Failed(_) | Within::TimedOut => Err(Broke::Retry),
    }
}

/// When the attempt after a failed one starts: one attempt-time after the failed one started
/// (see timing), and never in the past.
fn next_attempt(started: Instant, attempt: Duration, now: Instant) -> Instant {
    (started + attempt).max(now + Duration::from_millis(1))
}

/// What one revoke call came to: done (`Ok`), or the error to report if no other try succeeds.
fn revoked<T>(call: Result<T, EtcdError>) -> Result<Revoked, String> {
    match call {
        Ok(_) => Ok(Revoked::Now),
        Err(EtcdError::LeaseGone(_)) => Ok(Revoked::AlreadyGone),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::timing::TimingInput;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn timing(ttl: u64) -> TimingModel {
        let input = TimingInput {
            ttl: Some(secs(ttl)),
            ..TimingInput::default()
        };
        TimingModel::new(input).expect("valid timing")
    }

    #[test]
    fn a_reply_in_time_buys_a_deadline_from_its_send_with_the_smaller_ttl() {
        let sent = BootInstant::now();
        // (requested TTL, granted TTL in the reply) -> deadline after the send
        let rows = [
            (10, 10, 10),
            (10, 5, 5),
            (10, 30, 10),
            (10, 1, 1),
            (2, 2, 2),
        ];
        for (requested, granted, want) in rows {
            let got = renewal(&timing(requested), sent, &Within::Done(Some(granted)));
            assert_eq!(got, Ok(sent + secs(want as u64)), "{requested} {granted}");
        }
    }

    #[test]
    fn a_reply_without_ttl_means_the_lease_is_gone() {
        let sent = BootInstant::now();
        for ttl in [0, -1, i64::MIN] {
            let got = renewal(&timing(10), sent, &Within::Done(Some(ttl)));
            assert_eq!(got, Err(Broke::LeaseGone), "ttl {ttl}");
        }
    }

    #[test]
    fn a_late_failed_or_closed_reply_is_retried() {
        let sent = BootInstant::now();
        let rows = [
            Within::TimedOut,
            Within::Done(None),
            Within::Failed(EtcdError::Unavailable("reset".into())),
            Within::Failed(EtcdError::Rejected("permission denied".into())),
            // An error on the stream is not etcd's "ttl 0": the next open tells.
            Within::Failed(EtcdError::LeaseGone("x".into())),
        ];
        for reply in rows {
            let got = renewal(&timing(10), sent, &reply);
            assert_eq!(got, Err(Broke::Retry), "{reply:?}");
        }
    }

    #[test]
    fn lease_not_found_when_opening_is_final_and_all_else_is_retried() {
        let rows = [
            (
                Some(EtcdError::LeaseGone("not found".into())),
                Broke::LeaseGone,
            ),
            (Some(EtcdError::Unavailable("down".into())), Broke::Retry),
            (Some(EtcdError::Rejected("bad token".into())), Broke::Retry),
            (None, Broke::Retry), // timed out
        ];
        for (error, want) in rows {
            assert_eq!(not_opened(error.as_ref()), want, "{error:?}");
        }
    }

    #[test]
    fn only_an_unavailable_endpoint_moves_to_the_next_within_an_attempt() {
        let down = EtcdError::Unavailable("refused".into());
        let rows = [
            (down.clone(), 2, true),
            (down.clone(), 1, true),
            (down, 0, false),
            (EtcdError::Rejected("denied".into()), 2, false),
            (EtcdError::LeaseGone("gone".into()), 2, false),
        ];
        for (e, tries_left, want) in rows {
            assert_eq!(
                try_next_endpoint(&e, tries_left),
                want,
                "{e:?} {tries_left}"
            );
        }
    }

    #[test]
    fn the_next_attempt_starts_one_attempt_time_after_the_failed_one_started() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        // ((failed attempt started, now), next attempt), in ms after `base`; attempts of 500 ms
        let rows = [
            ((0, 100), 500),
            ((0, 499), 500),
            ((0, 500), 501),
            ((0, 2_000), 2_001),
            ((300, 400), 800),
        ];
        for ((started, now), want) in rows {
            let got = next_attempt(base + ms(started), ms(500), base + ms(now));
            assert_eq!(got - base, ms(want), "{started} {now}");
        }
    }

    #[test]
    fn the_lease_is_lost_once_its_deadline_is_reached() {
        let t0 = BootInstant::now();
        let alive = LeaseState::Alive {
            safe_until: t0 + secs(1),
        };
        let ms = Duration::from_millis;
        let rows = [
            (alive, t0, alive),
            (alive, t0 + ms(999), alive),
            (alive, t0 + secs(1), LeaseState::Lost),
            (alive, t0 + secs(60), LeaseState::Lost),
            (LeaseState::Lost, t0, LeaseState::Lost),
        ];
        for (state, now, want) in rows {
            assert_eq!(state.at(now), want, "{state:?} at {now:?}");
        }
    }

    #[test]
    fn a_revoke_is_done_already_gone_or_the_reason_to_try_again() {
        let rows: [(Result<(), EtcdError>, Result<Revoked, String>); 4] = [
            (Ok(()), Ok(Revoked::Now)),
            (
                Err(EtcdError::LeaseGone("x".into())),
                Ok(Revoked::AlreadyGone),
            ),
            (
                Err(EtcdError::Unavailable("down".into())),
                Err("etcd unavailable: down".into()),
            ),
            (
                Err(EtcdError::Rejected("denied".into())),
                Err("etcd rejected us: denied".into()),
            ),
        ];
        for (call, want) in rows {
            assert_eq!(revoked(call.clone()), want, "{call:?}");
        }
    }
}
