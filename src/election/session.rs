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
use crate::election::connector::{Connector, EtcdError};

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
        match *self.state.borrow() {
            LeaseState::Alive { safe_until } if safe_until.has_passed() => LeaseState::Lost,
            s => s,
        }
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
                match r {
                    Ok(_) => return Revoked::Now,
                    Err(EtcdError::LeaseGone(_)) => return Revoked::AlreadyGone,
                    Err(e) => last = e.to_string(),
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
            // The next attempt starts one attempt-time after the failed one started (see timing).
            next = (started + attempt).max(Instant::now() + Duration::from_millis(1));
        }
    }

    /// One attempt to (re)open the stream, then keepalives on it until it breaks.
    async fn open_and_keep(&self, jitter: &mut Jitter) -> Broke {
        let attempt = self.timing.attempt_timeout();
        let sent = BootInstant::now();
        let started = Instant::now();
        let lease = self.lease;
        let generation = self.connector.generation();
        // Connecting, authenticating and the first reply all count against one attempt. An endpoint
        // that fails fast (refused, reset) is followed at once by the next, within the same attempt,
        // so one dead endpoint in the list does not cost a whole attempt.
        let opened = timeout(attempt, async {
            let mut tries = self.connector.endpoints().len();
            loop {
                tries -= 1;
                let result = async {
                    let conn = self.connector.get().await?;
                    match conn.client.clone().lease_keep_alive(lease.0).await {
                        Ok((keeper, stream)) => Ok((conn, keeper, stream)),
                        Err(e) => {
                            Err(self
                                .connector
                                .report(conn.generation, &conn.endpoint, e.into()))
                        }
                    }
                }
                .await;
                match result {
                    Err(EtcdError::Unavailable(_)) if tries > 0 => {
                        tokio::time::sleep(Duration::from_millis(10)).await
                    }
                    other => return other,
                }
            }
        })
        .await;
        let (conn, mut keeper, mut stream) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(EtcdError::LeaseGone(_))) => return Broke::LeaseGone,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "keepalive: cannot open the stream");
                return Broke::Retry;
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = attempt.as_millis() as u64,
                    "keepalive: reconnecting timed out"
                );
                // Whatever connection it was waiting on is not serving us: next time, a fresh one.
                self.connector.failed(generation);
                return Broke::Retry;
            }
        };
        // Opening sent a keepalive, and its reply (TTL > 0, or the open would have failed) counts.
        if !self.acknowledged(sent, started, self.granted_ttl) {
            return Broke::Closed;
        }
        let why = self.keep(&mut keeper, &mut stream, started, jitter).await;
        if matches!(why, Broke::Retry) {
            self.connector.failed(conn.generation);
            tracing::warn!(endpoint = %conn.endpoint, "keepalive stream broke; reconnecting");
        }
        why
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
        loop {
            tokio::time::sleep_until(last + wait).await;
            wait = self.timing.jittered(jitter.next());
            let sent = BootInstant::now();
            last = Instant::now();
            let reply = async {
                keeper.keep_alive().await?;
                stream.message().await
            };
            match timeout(self.timing.attempt_timeout(), reply).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    let granted = Duration::from_secs(resp.ttl() as u64);
                    if !self.acknowledged(sent, last, granted) {
                        return Broke::Closed;
                    }
                }
                Ok(Ok(Some(_))) => return Broke::LeaseGone,
                Ok(Ok(None)) => {
                    tracing::warn!("keepalive stream closed by etcd");
                    return Broke::Retry;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "keepalive failed");
                    return Broke::Retry;
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = self.timing.attempt_timeout().as_millis() as u64,
                        "keepalive: no reply in time"
                    );
                    return Broke::Retry;
                }
            }
        }
    }

    /// Publishes the deadline bought by a keepalive sent at `sent`; false if nobody listens.
    fn acknowledged(&self, sent: BootInstant, started: Instant, granted: Duration) -> bool {
        let safe_until = self.timing.safe_until(sent, granted);
        let rtt = started.elapsed();
        tracing::trace!(rtt_ms = rtt.as_millis() as u64, "keepalive acknowledged");
        self.observer.lease_renewed(safe_until, Some(rtt));
        self.tx.send(LeaseState::Alive { safe_until }).is_ok()
    }
}
