//! Connections to etcd: one endpoint at a time, moving to the next when one fails, and the one
//! policy for what a failed call means.
//!
//! etcd-client balances requests over all endpoints without health checks and never re-opens a
//! broken stream, so a dead endpoint would fail a share of requests forever. Instead we hold a client
//! for one endpoint, and every call goes through [`Connector::call`], which on failure moves to the
//! next endpoint (once per failure, however many tasks report it). Streams are re-opened by their
//! owners on the new client.
//!
//! The policy, in one place:
//! * an unavailable endpoint (down, slow, partitioned) → next endpoint, the caller retries;
//! * an expired auth token ("invalid auth token": simple tokens expire when unused, JWTs always) →
//!   the client re-authenticates and retries once by itself; if that fails too, a fresh client
//!   authenticates anew. Never a reason to give up;
//! * a rejection: an answer that asking again cannot change (bad credentials, no permission,
//!   `--user` for an etcd without authentication, a TLS certificate one side refuses, a request
//!   etcd finds invalid; [`classify_status`] sorts every answer etcd gives) → next endpoint too,
//!   because one misconfigured member must not end a replica that others would serve; only when
//!   every endpoint in turn has rejected us is it final ([`EtcdError::Rejected`]). When all
//!   agree, that is one answer from each, the caller's backoff pausing between them (0.2 s, then
//!   0.4 s, ..., at most 2 s): about 0.6 s for three endpoints.
//!
//! Its configuration ([`EtcdConfig`]) is the config layer's; lease ids are the core's.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::etcd::EtcdConfig;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// HTTP/2 pings detect a dead or frozen connection; etcd closes connections that ping more often than
/// every 5 s (its `--grpc-keepalive-min-time`).
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(5);

/// An etcd failure, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// Retrying will not help: every endpoint in turn gave an answer that asking again cannot
    /// change (credentials, permissions, a certificate, a request etcd refuses as such).
    #[error("etcd rejected us: {0}")]
    Rejected(String),
    /// The endpoint is down, slow or partitioned, or our token expired; try again (maybe elsewhere).
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// etcd says the lease does not exist (revoked, or expired on the server): final for that lease.
    #[error("the lease is gone: {0}")]
    LeaseGone(String),
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

/// Whether a read at an old revision failed because that history is not there: compacted, or
/// after a restore from a snapshot, a revision the store has not reached.
pub fn history_gone(e: &etcd_client::Error) -> bool {
    let text = e.to_string();
    text.contains("compacted") || text.contains("future revision")
}

/// Sorts an etcd-client error into permanent, transient and lease-gone.
pub fn classify(e: &etcd_client::Error) -> EtcdError {
    use etcd_client::Error as E;
    let text = e.to_string();
    let kind = match e {
        E::GRpcStatus(s) => classify_status(s.code(), s.message(), &format!("{s:?}")),
        // etcd-client's keepalive stream reports a first reply of TTL 0 this way.
        E::LeaseKeepAliveError(m) if m.contains("lease not found") => Kind::LeaseGone,
        E::InvalidArgs(_) | E::InvalidUri(_) => Kind::Rejected,
        E::TransportError(t) if is_tls_failure(&format!("{t:?}")) => Kind::Rejected,
        _ => Kind::Unavailable,
    };
    match kind {
        Kind::Rejected => EtcdError::Rejected(text),
        Kind::Unavailable => EtcdError::Unavailable(text),
        Kind::LeaseGone => EtcdError::LeaseGone(text),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Rejected,
    Unavailable,
    LeaseGone,
}

/// etcd's answers that stand whatever the code says: they are matched on the whole message, as
/// etcd's own client maps them back to its errors (`api/v3rpc/rpctypes/error.go`), less the
/// `etcdserver: ` prefix.
///
/// Asking again can change these, though their codes say final: an expired token is renewed.
const RETRYABLE: [&str; 1] = ["invalid auth token"];
/// Asking again cannot change these, though their codes (FailedPrecondition, OutOfRange, NotFound)
/// say the cluster's state may: they answer what we asked or how etcd is set up, not a passing state.
const FINAL: [&str; 17] = [
    "too large lease TTL",
    "authentication is not enabled",
    "user name not found",
    "role name not found",
    "root user does not exist",
    "root user does not have root role",
    "user name already exists",
    "role name already exists",
    "role is not granted to the user",
    "permission is not granted to the role",
    "member ID already exist",
    "Peer URLs already exists",
    "member not found",
    "can only promote a learner member",
    "too many learner members in cluster",
    "bad leader transferee",
    "no inflight downgrade job",
];

/// The decision behind [`classify`] for a gRPC status, on plain values so it can be tested: etcd's
/// answers listed above by their message, the rest by their code. Final codes are gRPC's "asking
/// again does not help": the request is invalid, unauthenticated, not permitted or not served
/// at all. Everything else (unavailable, timed out, no leader, a full or corrupt cluster, a
/// compacted revision) may pass, so it is retried.
fn classify_status(code: tonic::Code, message: &str, debug: &str) -> Kind {
    use tonic::Code as C;
    let answer = message.strip_prefix("etcdserver: ").unwrap_or(message);
    if RETRYABLE.contains(&answer) {
        return Kind::Unavailable;
    }
    if answer == "requested lease not found" {
        return Kind::LeaseGone;
    }
    let final_code = matches!(
        code,
        C::Unauthenticated | C::PermissionDenied | C::InvalidArgument | C::Unimplemented
    );
    if final_code || FINAL.contains(&answer) || is_tls_failure(debug) {
        Kind::Rejected
    } else {
        Kind::Unavailable
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

/// What waiting for an etcd call within a time limit came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Within<T> {
    Done(T),
    Failed(EtcdError),
    /// No answer in time: whatever connection it waited on is not serving us.
    TimedOut,
}

/// Waits for `call` at most `limit`.
pub async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, EtcdError>>,
) -> Within<T> {
    match tokio::time::timeout(limit, call).await {
        Err(_) => Within::TimedOut,
        Ok(answer) => answer.map_or_else(Within::Failed, Within::Done),
    }
}

/// Hands out a client for the current endpoint and moves on when told it failed.
pub struct Connector {
    cfg: EtcdConfig,
    current: Mutex<Option<(u64, Client)>>,
    /// Bumped on every move; index into the endpoint list modulo its length.
    generation: AtomicU64,
    /// Endpoints that rejected us in a row; reset by any success.
    rejections: AtomicUsize,
    /// Tells long-lived streams (watches) that the connection was given up, so they move too:
    /// the keepalives notice a dead connection within half an interval, a quiet watch never would.
    moved: tokio::sync::watch::Sender<u64>,
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
            rejections: AtomicUsize::new(0),
            moved: tokio::sync::watch::channel(0).0,
        }
    }

    pub fn endpoints(&self) -> &[String] {
        &self.cfg.endpoints
    }

    /// Per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.cfg.dial_timeout
    }

    /// Runs `op` on the current endpoint's client and applies the failure policy (module doc).
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, EtcdError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let conn = self.get().await?;
        let result = op(conn.client).await;
        match result {
            Ok(v) => {
                self.succeeded();
                Ok(v)
            }
            Err(e) => Err(self.report(conn.generation, &conn.endpoint, e)),
        }
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
        let client = tokio::time::timeout(self.cfg.dial_timeout, connect(&self.cfg, &endpoint))
            .await
            .map_err(|_| EtcdError::Unavailable(format!("connecting to {endpoint} timed out")))
            .and_then(|r| r);
        let client = match client {
            Ok(c) => c,
            Err(e) => return Err(self.report(generation, &endpoint, e)),
        };
        *self.current.lock().expect("connector lock") = Some((generation, client.clone()));
        Ok(Conn {
            client,
            generation,
            endpoint,
        })
    }

    /// Applies the failure policy to an error seen on the client of `generation`; returns what the
    /// caller should act on.
    pub fn report(&self, generation: u64, endpoint: &str, e: EtcdError) -> EtcdError {
        match e {
            EtcdError::LeaseGone(_) => e,
            EtcdError::Unavailable(_) => {
                self.failed(generation);
                e
            }
            EtcdError::Rejected(why) => {
                let streak = self.rejections.fetch_add(1, Ordering::SeqCst) + 1;
                self.failed(generation);
                if streak >= self.cfg.endpoints.len() {
                    self.rejections.store(0, Ordering::SeqCst);
                    EtcdError::Rejected(why)
                } else {
                    tracing::warn!(endpoint, error = %why, "this etcd endpoint rejected us; trying the next");
                    EtcdError::Unavailable(format!("{endpoint} rejected us: {why}"))
                }
            }
        }
    }

    /// The generation of the current client, for a later [`failed`](Self::failed).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn succeeded(&self) {
        self.rejections.store(0, Ordering::SeqCst);
    }

    /// Reports that the client of `generation` failed: the next [`get`](Self::get) uses the next
    /// endpoint (the same one, with a fresh connection and token, when there is only one).
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
        {
            self.moved.send_replace(generation + 1);
            if self.cfg.endpoints.len() > 1 {
                tracing::info!(from = %self.endpoint(generation), to = %self.endpoint(generation + 1), "switching etcd endpoint");
            }
        }
    }

    /// Changes whenever the current connection is given up ([`Connector::failed`]).
    pub fn moves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.moved.subscribe()
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
        // Tokens expire while we only keep a lease alive and watch; re-authenticate on demand.
        opts = opts
            .with_user(user.clone(), password.expose().to_owned())
            .with_auto_token_refresh(true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    /// Every answer in etcd's `api/v3rpc/rpctypes/error.go`, with its code, sorted into final
    /// (`Rejected`: asking again, here or at another member, gets the same answer), retry
    /// (`Unavailable`: it may pass) or `LeaseGone`, and why.
    #[test]
    fn every_etcd_answer_is_final_or_retried() {
        use Code::*;
        use Kind::{LeaseGone as Gone, Rejected as Final, Unavailable as Retry};
        let rows: &[(Code, &str, Kind, &str)] = &[
            // Requests etcd finds malformed: the same request is malformed again.
            (InvalidArgument, "key is not provided", Final, "our request"),
            (
                InvalidArgument,
                "key not found",
                Final,
                "put with ignore_* on no key",
            ),
            (InvalidArgument, "value is provided", Final, "our request"),
            (InvalidArgument, "lease is provided", Final, "our request"),
            (InvalidArgument, "ttl is 0", Final, "our request"),
            (
                InvalidArgument,
                "too many operations in txn request",
                Final,
                "--max-txn-ops",
            ),
            (
                InvalidArgument,
                "duplicate key given in txn request",
                Final,
                "our request",
            ),
            (
                InvalidArgument,
                "request is too large",
                Final,
                "--max-request-bytes",
            ),
            (
                OutOfRange,
                "too large lease TTL",
                Final,
                "above MaxLeaseTTL, every member",
            ),
            // History: the caller reads again at a revision that exists.
            (
                OutOfRange,
                "mvcc: required revision has been compacted",
                Retry,
                "read anew",
            ),
            (
                OutOfRange,
                "mvcc: required revision is a future revision",
                Retry,
                "read anew",
            ),
            // The cluster's state: an operator or time fixes it, and the replica carries on.
            (
                ResourceExhausted,
                "mvcc: database space exceeded",
                Retry,
                "NOSPACE alarm",
            ),
            (ResourceExhausted, "too many requests", Retry, "load"),
            (
                DataLoss,
                "corrupt cluster",
                Retry,
                "CORRUPT alarm, repaired by an operator",
            ),
            // Leases.
            (
                NotFound,
                "requested lease not found",
                Gone,
                "final for that lease only",
            ),
            (
                FailedPrecondition,
                "lease already exists",
                Retry,
                "a new grant, a new id",
            ),
            // Membership (not ours to call): what was asked, or a state that passes.
            (
                FailedPrecondition,
                "member ID already exist",
                Final,
                "what was asked",
            ),
            (
                FailedPrecondition,
                "Peer URLs already exists",
                Final,
                "what was asked",
            ),
            (
                FailedPrecondition,
                "re-configuration failed due to not enough started members",
                Retry,
                "members start",
            ),
            (
                InvalidArgument,
                "given member URLs are invalid",
                Final,
                "what was asked",
            ),
            (NotFound, "member not found", Final, "what was asked"),
            (
                FailedPrecondition,
                "can only promote a learner member",
                Final,
                "what was asked",
            ),
            (
                FailedPrecondition,
                "can only promote a learner member which is in sync with leader",
                Retry,
                "the learner catches up",
            ),
            (
                FailedPrecondition,
                "too many learner members in cluster",
                Final,
                "config",
            ),
            // Authentication and authorization: credentials and roles change by hand only.
            (
                FailedPrecondition,
                "root user does not exist",
                Final,
                "auth setup",
            ),
            (
                FailedPrecondition,
                "root user does not have root role",
                Final,
                "auth setup",
            ),
            (
                FailedPrecondition,
                "user name already exists",
                Final,
                "auth setup",
            ),
            (
                InvalidArgument,
                "user name is empty",
                Final,
                "auth on, no --user",
            ),
            (
                FailedPrecondition,
                "user name not found",
                Final,
                "no such --user",
            ),
            (
                FailedPrecondition,
                "role name already exists",
                Final,
                "auth setup",
            ),
            (
                FailedPrecondition,
                "role name not found",
                Final,
                "auth setup",
            ),
            (InvalidArgument, "role name is empty", Final, "auth setup"),
            (
                InvalidArgument,
                "authentication failed, invalid user ID or password",
                Final,
                "wrong --user/--password",
            ),
            (
                PermissionDenied,
                "permission denied",
                Final,
                "the role's permissions",
            ),
            (
                FailedPrecondition,
                "role is not granted to the user",
                Final,
                "auth setup",
            ),
            (
                FailedPrecondition,
                "permission is not granted to the role",
                Final,
                "auth",
            ),
            (
                FailedPrecondition,
                "authentication is not enabled",
                Final,
                "--user, auth off",
            ),
            (
                Unauthenticated,
                "invalid auth token",
                Retry,
                "expired: authenticate again",
            ),
            (
                FailedPrecondition,
                "revision of auth store is old",
                Retry,
                "authenticate again",
            ),
            (
                InvalidArgument,
                "invalid auth management",
                Final,
                "what was asked",
            ),
            // The member or the cluster cannot serve now: the next member, or later.
            (Unavailable, "no leader", Retry, "an election"),
            (FailedPrecondition, "not leader", Retry, "a leader change"),
            (Unavailable, "leader changed", Retry, "a leader change"),
            (
                Unavailable,
                "not capable",
                Retry,
                "cluster version, an upgrade",
            ),
            (Unavailable, "server stopped", Retry, "the next member"),
            (Unavailable, "request timed out", Retry, "load"),
            (
                Unavailable,
                "request timed out, possibly due to previous leader failure",
                Retry,
                "an election",
            ),
            (
                Unavailable,
                "request timed out, possibly due to connection lost",
                Retry,
                "the network",
            ),
            (Unavailable, "unhealthy cluster", Retry, "quorum comes back"),
            (
                Unavailable,
                "rpc not supported for learner",
                Retry,
                "the next member",
            ),
            (
                FailedPrecondition,
                "bad leader transferee",
                Final,
                "what was asked",
            ),
            // Downgrades (not ours to call).
            (
                Unavailable,
                "cluster version not found during downgrade",
                Retry,
                "passes",
            ),
            (
                InvalidArgument,
                "wrong downgrade target version format",
                Final,
                "asked",
            ),
            (
                InvalidArgument,
                "invalid downgrade target version",
                Final,
                "asked",
            ),
            (
                FailedPrecondition,
                "cluster has a downgrade job in progress",
                Retry,
                "ends",
            ),
            (
                FailedPrecondition,
                "no inflight downgrade job",
                Final,
                "what was asked",
            ),
        ];
        for (code, answer, want, why) in rows {
            let message = format!("etcdserver: {answer}");
            let got = classify_status(*code, &message, &message);
            assert_eq!(got, *want, "{code:?} {message:?} ({why})");
        }
    }

    /// Answers that are not etcd's own: by their code, and a certificate either side refuses.
    #[test]
    fn other_answers_by_their_code() {
        use Code::*;
        let rows = [
            (Unknown, "etcdserver: invalid auth token", Kind::Unavailable),
            (
                Unavailable,
                "error trying to connect: tcp connect error",
                Kind::Unavailable,
            ),
            (
                DeadlineExceeded,
                "context deadline exceeded",
                Kind::Unavailable,
            ),
            (Cancelled, "Timeout expired", Kind::Unavailable),
            (Unknown, "h2 protocol error", Kind::Unavailable),
            (
                Unimplemented,
                "unknown service etcdserverpb.Lease",
                Kind::Rejected,
            ),
            (PermissionDenied, "denied by a proxy", Kind::Rejected),
            (Unauthenticated, "no credentials", Kind::Rejected),
            // A future etcd's transient answer must not end the replica.
            (
                FailedPrecondition,
                "etcdserver: something new",
                Kind::Unavailable,
            ),
        ];
        for (code, message, want) in rows {
            assert_eq!(classify_status(code, message, message), want, "{message}");
        }
        assert_eq!(
            classify_status(Unknown, "transport", "InvalidCertificate(UnknownIssuer)"),
            Kind::Rejected
        );
    }

    #[test]
    fn keepalive_open_on_a_gone_lease_is_lease_gone() {
        let e = classify(&etcd_client::Error::LeaseKeepAliveError(
            "lease not found".into(),
        ));
        assert!(matches!(e, EtcdError::LeaseGone(_)), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_within_a_limit_is_done_failed_or_timed_out() {
        let limit = Duration::from_secs(1);
        let down = EtcdError::Unavailable("down".into());
        assert_eq!(within(limit, async { Ok(3) }).await, Within::Done(3));
        assert_eq!(
            within(limit, async { Err::<(), _>(down.clone()) }).await,
            Within::Failed(down)
        );
        let late = async {
            tokio::time::sleep(limit * 2).await;
            Ok(())
        };
        assert_eq!(within(limit, late).await, Within::TimedOut);
        let pending = std::future::pending::<Result<(), EtcdError>>();
        assert_eq!(within(limit, pending).await, Within::TimedOut);
    }

    fn connector(n: usize) -> Connector {
        Connector::new(EtcdConfig {
            endpoints: (0..n)
                .map(|i| format!("http://127.0.0.{}:2379", i + 1))
                .collect(),
            tls: None,
            credentials: None,
            dial_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn a_rejection_is_final_only_when_every_endpoint_rejected_in_a_row() {
        let c = connector(3);
        let rej = || EtcdError::Rejected("bad certificate".into());
        assert!(matches!(c.report(0, "a", rej()), EtcdError::Unavailable(_)));
        assert_eq!(
            c.endpoint(c.generation.load(Ordering::SeqCst)),
            "http://127.0.0.2:2379"
        );
        assert!(matches!(c.report(1, "b", rej()), EtcdError::Unavailable(_)));
        assert!(c.report(2, "c", rej()).is_rejected());
        // A success in between resets the streak.
        let c = connector(2);
        assert!(!c.report(0, "a", rej()).is_rejected());
        c.succeeded();
        assert!(!c.report(1, "b", rej()).is_rejected());
        assert!(c.report(2, "a", rej()).is_rejected());
        // One endpoint: its rejection is final at once.
        assert!(connector(1).report(0, "a", rej()).is_rejected());
    }

    #[test]
    fn failures_move_to_the_next_endpoint_once_per_generation() {
        let c = connector(2);
        let e = c.report(0, "a", EtcdError::Unavailable("down".into()));
        assert!(matches!(e, EtcdError::Unavailable(_)));
        // A second report about the same old client does not skip the next endpoint.
        c.failed(0);
        assert_eq!(c.generation.load(Ordering::SeqCst), 1);
        // Lease gone is not the endpoint's fault.
        c.report(1, "b", EtcdError::LeaseGone("x".into()));
        assert_eq!(c.generation.load(Ordering::SeqCst), 1);
    }
}
