//! The etcd session: one lease, kept alive on our own timer, and the deadline it buys.
//!
//! Invariant: [`LeaseState::Alive::safe_until`] is the send instant of the last *acknowledged*
//! keepalive plus the smaller of requested and granted TTL, on [`BootInstant`]. Keepalives are sent
//! one at a time (send, wait for its reply with a timeout, sleep), so each reply is matched to the
//! request that caused it; a reply that comes too late is dropped with its stream. A reply with
//! `ttl <= 0` means the lease is gone (revoked or expired): that is final. Any other failure makes
//! the session move to the next endpoint and retry faster, for as long as the lease may still live.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::clock::BootInstant;
use crate::etcd::{Connector, EtcdError};
use crate::observer::Observer;
use crate::timing::TimingModel;

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
    pub lease_id: i64,
    /// What the server granted (it may be more than we asked).
    pub granted_ttl: Duration,
    state: watch::Receiver<LeaseState>,
    keepalive: JoinHandle<()>,
}

impl Session {
    /// Grants a lease (one attempt) and starts keeping it alive.
    pub async fn grant(
        connector: Arc<Connector>,
        timing: TimingModel,
        observer: Arc<Observer>,
    ) -> Result<Session, EtcdError> {
        let conn = connector.get().await?;
        let sent = BootInstant::now();
        let resp = match conn
            .client
            .clone()
            .lease_grant(timing.ttl.as_secs() as i64, None)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let e = EtcdError::from(e);
                if !e.is_rejected() {
                    connector.failed(conn.generation);
                }
                return Err(e);
            }
        };
        let granted_ttl = Duration::from_secs(resp.ttl().max(0) as u64);
        let safe_until = timing.safe_until(sent, granted_ttl);
        let (tx, rx) = watch::channel(LeaseState::Alive { safe_until });
        observer.lease_renewed(safe_until, None);
        let keepalive = tokio::spawn(keep_alive(
            connector.clone(),
            timing,
            resp.id(),
            tx,
            observer,
        ));
        tracing::debug!(lease = %format!("{:x}", resp.id()), granted_ttl_s = granted_ttl.as_secs(), endpoint = %conn.endpoint, "lease granted");
        Ok(Session {
            connector,
            lease_id: resp.id(),
            granted_ttl,
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

    pub fn connector(&self) -> &Arc<Connector> {
        &self.connector
    }

    /// Stops the keepalives and revokes the lease so a standby can take over at once. Best effort,
    /// bounded by one request timeout in all: if etcd cannot be reached the lease simply expires
    /// after its TTL.
    pub async fn revoke(self) {
        self.keepalive.abort();
        let deadline = self.connector.request_timeout();
        let lease = self.lease_id;
        if tokio::time::timeout(deadline, self.revoke_on_any_endpoint())
            .await
            .is_err()
        {
            tracing::warn!(lease = %format!("{lease:x}"), "revoking the lease timed out; it will expire after its TTL");
        }
    }

    async fn revoke_on_any_endpoint(&self) {
        let deadline = self.connector.request_timeout();
        for _ in 0..self.connector.endpoints().len().max(1) {
            let Ok(conn) = self.connector.get().await else {
                continue;
            };
            match timeout(deadline, conn.client.clone().lease_revoke(self.lease_id)).await {
                Ok(Ok(_)) => {
                    tracing::debug!(lease = %format!("{:x}", self.lease_id), "lease revoked");
                    return;
                }
                Ok(Err(e)) if e.to_string().contains("requested lease not found") => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "revoking the lease failed"),
                Err(_) => tracing::warn!("revoking the lease timed out"),
            }
            self.connector.failed(conn.generation);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

async fn keep_alive(
    connector: Arc<Connector>,
    timing: TimingModel,
    lease: i64,
    tx: watch::Sender<LeaseState>,
    observer: Arc<Observer>,
) {
    let mut next_send = tokio::time::Instant::now() + timing.keepalive_interval;
    loop {
        tokio::time::sleep_until(next_send).await;
        let conn = match connector.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "keepalive: cannot reach etcd");
                next_send = tokio::time::Instant::now() + timing.retry_interval();
                continue;
            }
        };
        let opened = timeout(
            timing.reply_timeout(),
            conn.client.clone().lease_keep_alive(lease),
        )
        .await;
        let (mut keeper, mut stream) = match opened {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, endpoint = %conn.endpoint, "keepalive: cannot open the stream");
                connector.failed(conn.generation);
                next_send = tokio::time::Instant::now() + timing.retry_interval();
                continue;
            }
            Err(_) => {
                tracing::warn!(endpoint = %conn.endpoint, "keepalive: opening the stream timed out");
                connector.failed(conn.generation);
                next_send = tokio::time::Instant::now() + timing.retry_interval();
                continue;
            }
        };
        // One request in flight at a time on this stream, until it fails.
        loop {
            let sent = BootInstant::now();
            let started = tokio::time::Instant::now();
            let reply = async {
                keeper.keep_alive().await?;
                stream.message().await
            };
            match timeout(timing.reply_timeout(), reply).await {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                    let safe_until =
                        timing.safe_until(sent, Duration::from_secs(resp.ttl() as u64));
                    tracing::trace!(
                        rtt_ms = started.elapsed().as_millis() as u64,
                        "keepalive acknowledged"
                    );
                    observer.lease_renewed(safe_until, Some(started.elapsed()));
                    if tx.send(LeaseState::Alive { safe_until }).is_err() {
                        return;
                    }
                    next_send = started + timing.keepalive_interval;
                    tokio::time::sleep_until(next_send).await;
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease = %format!("{lease:x}"), "etcd reports the lease is gone (ttl 0)");
                    observer.lease_dropped();
                    let _ = tx.send(LeaseState::Lost);
                    return;
                }
                Ok(Ok(None)) => {
                    tracing::warn!(endpoint = %conn.endpoint, "keepalive stream closed by etcd");
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, endpoint = %conn.endpoint, "keepalive failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!(endpoint = %conn.endpoint, timeout_ms = timing.reply_timeout().as_millis() as u64,
                        "keepalive: no reply in time");
                    break;
                }
            }
        }
        observer.keepalive_failed();
        connector.failed(conn.generation);
        next_send = tokio::time::Instant::now() + timing.retry_interval();
    }
}
