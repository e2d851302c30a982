//! Connections to etcd: one endpoint at a time, moving to the next when one fails.
//!
//! etcd-client balances requests over all endpoints without health checks and never re-opens a
//! broken stream, so a dead endpoint would fail a share of requests forever. Instead we hold a client
//! for one endpoint, and whoever sees a transport failure calls [`Connector::failed`], which moves to the
//! next endpoint (once per failure, however many tasks report it). Streams are re-opened by their
//! owners on the new client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::config::EtcdConfig;

/// HTTP/2 pings detect a dead or frozen connection; etcd closes connections that ping more often than
/// every 5 s (its `--grpc-keepalive-min-time`).
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(5);

/// An etcd failure, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// Retrying will not help: bad credentials, no permission, a TLS certificate etcd or we reject.
    #[error("etcd rejected us: {0}")]
    Rejected(String),
    /// The endpoint is down, slow or partitioned; try again (maybe elsewhere).
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
}

impl EtcdError {
    pub fn is_rejected(&self) -> bool {
        matches!(self, EtcdError::Rejected(_))
    }
}

impl From<etcd_client::Error> for EtcdError {
    fn from(e: etcd_client::Error) -> Self {
        classify(&e)
    }
}

/// Sorts an etcd-client error into permanent and transient.
pub fn classify(e: &etcd_client::Error) -> EtcdError {
    use etcd_client::Error as E;
    let text = e.to_string();
    let rejected = match e {
        E::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) || s.message().contains("authentication failed")
                || s.message().contains("permission denied")
                || s.message().contains("user name is empty")
                || is_tls_failure(&format!("{s:?}"))
        }
        E::InvalidArgs(_) | E::InvalidUri(_) => true,
        E::TransportError(t) => is_tls_failure(&format!("{t:?}")),
        _ => false,
    };
    if rejected {
        EtcdError::Rejected(text)
    } else {
        EtcdError::Unavailable(text)
    }
}

fn is_tls_failure(debug: &str) -> bool {
    [
        "certificate",
        "UnknownIssuer",
        "HandshakeFailure",
        "BadCertificate",
        "CertNotValid",
    ]
    .iter()
    .any(|needle| debug.contains(needle))
}

/// Hands out a client for the current endpoint and moves on when told it failed.
pub struct Connector {
    cfg: EtcdConfig,
    current: Mutex<Option<(u64, Client)>>,
    /// Bumped on every move; index into the endpoint list modulo its length.
    generation: AtomicU64,
}

/// A client and the generation it belongs to, so a failure report for an old client is ignored.
#[derive(Clone)]
pub struct Conn {
    pub client: Client,
    pub generation: u64,
    pub endpoint: String,
}

impl Connector {
    pub fn new(cfg: EtcdConfig) -> Self {
        Connector {
            cfg,
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.cfg.endpoints
    }

    /// Per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.cfg.dial_timeout
    }

    /// The client for the current endpoint, connecting if needed. With credentials this makes one
    /// authentication round trip; otherwise connecting is lazy and failures show on first use.
    pub async fn get(&self) -> Result<Conn, EtcdError> {
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some((g, client)) = self.current.lock().expect("connector lock").as_ref() {
            if *g == generation {
                return Ok(Conn {
                    client: client.clone(),
                    generation,
                    endpoint: self.endpoint(generation),
                });
            }
        }
        let endpoint = self.endpoint(generation);
        let client = tokio::time::timeout(self.cfg.dial_timeout * 2, connect(&self.cfg, &endpoint))
            .await
            .map_err(|_| EtcdError::Unavailable(format!("connecting to {endpoint} timed out")))
            .and_then(|r| r);
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                if !e.is_rejected() {
                    self.failed(generation);
                }
                return Err(e);
            }
        };
        *self.current.lock().expect("connector lock") = Some((generation, client.clone()));
        Ok(Conn {
            client,
            generation,
            endpoint,
        })
    }

    /// Reports that the client of `generation` failed: the next [`get`](Self::get) uses the next endpoint.
    pub fn failed(&self, generation: u64) {
        if self
            .generation
            .compare_exchange(
                generation,
                generation + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
            && self.cfg.endpoints.len() > 1
        {
            tracing::info!(from = %self.endpoint(generation), to = %self.endpoint(generation + 1), "switching etcd endpoint");
        }
    }

    fn endpoint(&self, generation: u64) -> String {
        self.cfg.endpoints[(generation % self.cfg.endpoints.len() as u64) as usize].clone()
    }
}

async fn connect(cfg: &EtcdConfig, endpoint: &str) -> Result<Client, EtcdError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.dial_timeout)
        .with_timeout(cfg.dial_timeout)
        .with_keep_alive(HTTP2_PING_INTERVAL, cfg.dial_timeout)
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let Some((user, password)) = &cfg.credentials {
        opts = opts.with_user(user.clone(), password.expose().to_owned());
    }
    if let Some(tls) = &cfg.tls {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca {
            t = t.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &tls.identity {
            t = t.identity(Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(t);
    }
    Ok(Client::connect([endpoint], Some(opts)).await?)
}
