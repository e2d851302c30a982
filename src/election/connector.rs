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
//! What the logs say of it, in one place too: an error is summarised (`connection refused`, `no
//! leader`, `timed out`: [`summary`]) and named by its endpoint; its full chain is logged at debug
//! only. While requests keep failing (an outage fails every task's requests every few hundred
//! milliseconds) the failure is said once, then summarised at most every 10 s with a count and
//! how long it has lasted, then one line says when requests succeed again
//! ([`crate::core::repeated`]). A failure on a connection already given up does not begin a new
//! run of failures once requests succeed again: it is old news.
//!
//! Its configuration ([`EtcdConfig`]) is the config layer's; lease ids are the core's.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::etcd::EtcdConfig;
use crate::core::duration::Short;
use crate::core::repeated::{Repeated, Tell};

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

    /// What went wrong, without the kind: a [`summary`] for an error etcd-client gave.
    pub fn reason(&self) -> &str {
        match self {
            EtcdError::Rejected(why) | EtcdError::Unavailable(why) | EtcdError::LeaseGone(why) => {
                why
            }
        }
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

/// Sorts an etcd-client error into permanent, transient and lease-gone; the error it returns
/// carries the [`summary`], and the full chain is logged at debug.
pub fn classify(e: &etcd_client::Error) -> EtcdError {
    use etcd_client::Error as E;
    tracing::debug!(error = %e, "etcd error");
    let text = summary(e);
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

/// The longest summary: an error says what went wrong in a few words, not a chain of types.
const SUMMARY_CHARS: usize = 120;

/// What went wrong, in a few words: the operating system's reason for a failed connection
/// (`connection refused`, `timed out`), etcd's answer without its `etcdserver: ` prefix (`no
/// leader`, `permission denied`), or the innermost cause of anything else (a TLS library's
/// `invalid peer certificate: UnknownIssuer`). Never the Debug form of a gRPC status, which runs
/// to hundreds of characters.
pub fn summary(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    let text = match e {
        E::GRpcStatus(s) => {
            let causes = causes(s);
            status_reason(s.code(), s.message(), &causes)
        }
        E::TransportError(t) => innermost(&causes(t), &t.to_string()),
        E::IoError(io) => io_reason(io).unwrap_or_else(|| io.to_string()),
        // Sending on a stream whose connection is gone.
        E::LeaseKeepAliveError(m) | E::WatchError(m) if m.contains("channel closed") => {
            "stream closed".into()
        }
        E::LeaseKeepAliveError(m) | E::WatchError(m) => m.clone(),
        other => other.to_string(),
    };
    clip(&text)
}

/// What an error's chain of sources says, outermost first: an I/O error by its kind where the
/// kind names the reason, anything else by its text.
fn causes(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause
            .downcast_ref::<std::io::Error>()
            .and_then(io_reason)
            .unwrap_or_else(|| cause.to_string());
        out.push(said);
        next = cause.source();
    }
    out
}

/// An I/O error's reason when its kind names one (`connection refused`), without `(os error
/// 111)`; `None` for the catch-all kinds, whose text (or inner error) says more.
fn io_reason(e: &std::io::Error) -> Option<String> {
    if e.kind() == std::io::ErrorKind::Other {
        return None;
    }
    let reason = e.kind().to_string();
    (reason != "uncategorized error").then_some(reason)
}

/// The innermost cause, or `fallback` when there is none.
fn innermost(causes: &[String], fallback: &str) -> String {
    causes
        .last()
        .cloned()
        .unwrap_or_else(|| fallback.to_owned())
}

/// The reason a gRPC status gives, from its code, its message and its chain of causes (see
/// [`summary`]); pure, so it is tested on plain values.
fn status_reason(code: tonic::Code, message: &str, causes: &[String]) -> String {
    use tonic::Code as C;
    let message = message.trim();
    // tonic's own wording for a request cut off by its timeout.
    if matches!(code, C::Cancelled | C::DeadlineExceeded) && message == "Timeout expired" {
        return "timed out".into();
    }
    // A failed connection: its message only says which step failed, its cause says why.
    if let Some(cause) = causes.last() {
        return cause.clone();
    }
    match message.strip_prefix("etcdserver: ").unwrap_or(message) {
        "" => format!("{code:?}"),
        answer => answer.to_owned(),
    }
}

/// At most [`SUMMARY_CHARS`] characters, on one line.
fn clip(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= SUMMARY_CHARS {
        return one_line;
    }
    let mut out: String = one_line.chars().take(SUMMARY_CHARS - 3).collect();
    out.push_str("...");
    out
}

/// An endpoint as a log names it: its host and port, without the scheme.
pub fn host(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Rejected,
    Unavailable,
    LeaseGone,
}

/// etcd's answers that stand whatever the code says, as etcd's own client maps them back to its
/// errors (`api/v3rpc/rpctypes/error.go`).
///
/// Asking again can change these, though their codes (Unauthenticated, InvalidArgument) say final:
/// an expired token, or one from before a change of users or roles, is renewed.
const RETRYABLE: [&str; 2] = ["invalid auth token", "revision of auth store is old"];
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

/// Messages that are refusals whatever their code: etcd sends some with `Unknown` (a password
/// given for a user that has none; any answer relayed by a grpc-proxy), and a refusal must not be
/// retried for ever.
const REFUSALS: [&str; 3] = [
    "authentication failed",
    "permission denied",
    "user name is empty",
];

/// The decision behind [`classify`] for a gRPC status, on plain values so it can be tested: etcd's
/// answers listed above by their message (contained, so that a relayed or wrapped answer counts
/// too), the rest by their code. Final codes are gRPC's "asking again does not help": the request
/// is invalid, unauthenticated or not permitted. Everything else (unavailable, timed out, no
/// leader, a full or corrupt cluster, a compacted revision, and `Unimplemented`, which is also
/// what a proxy's passing HTTP 404 becomes) may pass, so it is retried.
fn classify_status(code: tonic::Code, message: &str, debug: &str) -> Kind {
    use tonic::Code as C;
    let says = |answers: &[&str]| answers.iter().any(|a| message.contains(a));
    let answer = message.strip_prefix("etcdserver: ").unwrap_or(message);
    if says(&RETRYABLE) {
        return Kind::Unavailable;
    }
    if message.contains("requested lease not found") {
        return Kind::LeaseGone;
    }
    let final_code = matches!(
        code,
        C::Unauthenticated | C::PermissionDenied | C::InvalidArgument
    );
    if final_code || FINAL.contains(&answer) || says(&REFUSALS) || is_tls_failure(debug) {
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
    /// Requests failing in a row, for the log (module doc).
    failing: Mutex<Repeated>,
    /// Whether a move to another endpoint was logged during the current run of failures: the
    /// first is said, the rest (every few hundred milliseconds while all are down) only at debug.
    move_said: AtomicBool,
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
            failing: Mutex::new(Repeated::default()),
            move_said: AtomicBool::new(false),
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
            .map_err(|_| EtcdError::Unavailable("connecting timed out".into()))
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
            EtcdError::Unavailable(ref why) => {
                self.lost(generation, why);
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
        self.reached();
    }

    /// etcd answered (a call, a keepalive): a run of failures, if one was ongoing, is over.
    pub fn reached(&self) {
        let recovered = self
            .failing
            .lock()
            .expect("failing lock")
            .succeeded(Instant::now());
        if let Some(r) = recovered {
            self.move_said.store(false, Ordering::SeqCst);
            tracing::info!(endpoint = %host(&self.endpoint(self.generation())), failures = r.failures,
                after = %Short(r.elapsed), "etcd requests succeed again");
        }
    }

    /// A request on the client of `generation` failed for a reason that asking again may change
    /// (`why`): the connection is given up ([`Connector::failed`]) and the failure logged as one
    /// of a run (module doc).
    pub fn lost(&self, generation: u64, why: &str) {
        let endpoint = self.endpoint(generation);
        let endpoint = host(&endpoint);
        {
            let mut failing = self.failing.lock().expect("failing lock");
            // A connection given up before requests succeeded again: old news.
            let old_news = generation < self.generation() && !failing.is_failing();
            let tell = if old_news {
                Tell::Quiet
            } else {
                failing.failed(Instant::now())
            };
            match tell {
                Tell::First => {
                    tracing::warn!(%endpoint, error = %why, "etcd request failed; retrying")
                }
                Tell::Still { failures, elapsed } => {
                    tracing::warn!(%endpoint, failures, failing_for = %Short(elapsed), last_error = %why,
                        "etcd requests still failing; retrying")
                }
                Tell::Quiet => tracing::debug!(%endpoint, error = %why, "etcd request failed"),
            }
        }
        self.failed(generation);
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
                let (from, to) = (self.endpoint(generation), self.endpoint(generation + 1));
                let (from, to) = (host(&from), host(&to));
                if self.move_said.swap(true, Ordering::SeqCst) {
                    tracing::debug!(%from, %to, "switching etcd endpoint");
                } else {
                    tracing::info!(%from, %to, "switching etcd endpoint");
                }
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

    /// Every answer in etcd's `api/v3rpc/rpctypes/error.go` (3.4 to 3.6; an answer whose code
    /// changed between them is listed with each), sorted into final (asking again, here or at
    /// another member, gets the same answer), retry (it may pass) or gone (final for that lease
    /// only), and why. One row a line: code | sort | answer, less `etcdserver: ` | why.
    const ETCD_ANSWERS: &str = "
        InvalidArgument    | final | key is not provided                          | our request is malformed
        InvalidArgument    | final | key not found                                | a put with ignore_* on no key
        InvalidArgument    | final | value is provided                            | our request is malformed
        InvalidArgument    | final | lease is provided                            | our request is malformed
        InvalidArgument    | final | ttl is 0                                     | our request is malformed
        InvalidArgument    | final | too many operations in txn request           | etcd's --max-txn-ops
        InvalidArgument    | final | duplicate key given in txn request           | our request is malformed
        InvalidArgument    | final | invalid client api version                   | our client
        InvalidArgument    | final | invalid sort option                          | our request is malformed
        InvalidArgument    | final | request is too large                         | etcd's --max-request-bytes
        OutOfRange         | final | too large lease TTL                          | --ttl above MaxLeaseTTL
        OutOfRange         | retry | mvcc: required revision has been compacted   | the caller reads anew
        OutOfRange         | retry | mvcc: required revision is a future revision | the caller reads anew
        ResourceExhausted  | retry | mvcc: database space exceeded                | NOSPACE alarm, disarmed by hand
        ResourceExhausted  | retry | too many requests                            | load passes
        DataLoss           | retry | corrupt cluster                              | CORRUPT alarm, repaired by hand
        NotFound           | gone  | requested lease not found                    | that lease only
        FailedPrecondition | retry | lease already exists                         | a new grant gets a new id
        Cancelled          | retry | watch canceled                               | watched again
        FailedPrecondition | final | member ID already exist                      | what was asked
        FailedPrecondition | final | Peer URLs already exists                     | what was asked
        FailedPrecondition | retry | re-configuration failed due to not enough started members | members start
        InvalidArgument    | final | given member URLs are invalid                | what was asked
        NotFound           | final | member not found                             | what was asked
        FailedPrecondition | final | can only promote a learner member            | what was asked
        FailedPrecondition | retry | can only promote a learner member which is in sync with leader | it catches up
        FailedPrecondition | final | too many learner members in cluster          | etcd's setup
        FailedPrecondition | final | root user does not exist                     | etcd's auth setup
        FailedPrecondition | final | root user does not have root role            | etcd's auth setup
        FailedPrecondition | final | user name already exists                     | etcd's auth setup
        InvalidArgument    | final | user name is empty                           | auth on, no --user
        FailedPrecondition | final | user name not found                          | no such --user
        FailedPrecondition | final | role name already exists                     | etcd's auth setup
        FailedPrecondition | final | role name not found                          | etcd's auth setup
        InvalidArgument    | final | role name is empty                           | etcd's auth setup
        InvalidArgument    | final | authentication failed, invalid user ID or password | --user/--password
        InvalidArgument    | final | permission not given                         | etcd's auth setup
        PermissionDenied   | final | permission denied                            | the role's permissions
        FailedPrecondition | final | role is not granted to the user              | etcd's auth setup
        FailedPrecondition | final | permission is not granted to the role        | etcd's auth setup
        FailedPrecondition | final | authentication is not enabled                | --user for an etcd without auth
        Unauthenticated    | retry | invalid auth token                           | expired: authenticate again
        InvalidArgument    | retry | revision of auth store is old                | users changed: authenticate again
        InvalidArgument    | final | invalid auth management                      | what was asked
        Unavailable        | retry | no leader                                    | an election
        FailedPrecondition | retry | not leader                                   | a leader change
        Unavailable        | retry | leader changed                               | a leader change
        Unavailable        | retry | not capable                                  | 3.4: an upgrade in progress
        FailedPrecondition | retry | not capable                                  | 3.6: an upgrade in progress
        Unavailable        | retry | server stopped                               | the next member
        Unavailable        | retry | request timed out                            | load passes
        Unavailable        | retry | request timed out, possibly due to previous leader failure | an election
        Unavailable        | retry | request timed out, possibly due to connection lost | the network
        Unavailable        | retry | request timed out, waiting for the applied index took too long | load
        Unavailable        | retry | unhealthy cluster                            | quorum comes back
        Unavailable        | retry | rpc not supported for learner                | 3.4: the next member
        FailedPrecondition | retry | rpc not supported for learner                | 3.6: the next member
        FailedPrecondition | final | bad leader transferee                        | what was asked
        Unavailable        | retry | cluster version not found during downgrade   | 3.5: passes
        FailedPrecondition | retry | cluster version not found during downgrade   | 3.6: passes
        InvalidArgument    | final | wrong downgrade target version format        | what was asked
        InvalidArgument    | final | invalid downgrade target version             | what was asked
        FailedPrecondition | retry | cluster has a downgrade job in progress      | it ends
        FailedPrecondition | final | no inflight downgrade job                    | what was asked
        Cancelled          | retry | request canceled                             | asked again
        DeadlineExceeded   | retry | context deadline exceeded                    | asked again
    ";

    #[test]
    fn every_etcd_answer_is_final_or_retried() {
        let code = |name: &str| {
            (0..=16)
                .map(Code::from_i32)
                .find(|c| format!("{c:?}") == name)
                .unwrap_or_else(|| panic!("no gRPC code {name}"))
        };
        for row in ETCD_ANSWERS.lines().filter(|l| !l.trim().is_empty()) {
            let [name, sort, answer, why] = row.split('|').map(str::trim).collect::<Vec<_>>()[..]
            else {
                panic!("a row has four columns: {row}");
            };
            let want = match sort {
                "final" => Kind::Rejected,
                "retry" => Kind::Unavailable,
                "gone" => Kind::LeaseGone,
                other => panic!("no sort {other}: {row}"),
            };
            let message = format!("etcdserver: {answer}");
            let got = classify_status(code(name), &message, &message);
            assert_eq!(got, want, "{name} {message:?} ({why})");
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
            // etcd 3.4's answer to a token from before a change of users or roles.
            (
                Unknown,
                "auth: revision in header is old",
                Kind::Unavailable,
            ),
            (Unknown, "h2 protocol error", Kind::Unavailable),
            // What a proxy's passing HTTP 404 becomes (a route reloading): it may pass.
            (
                Unimplemented,
                "unknown service etcdserverpb.Lease",
                Kind::Unavailable,
            ),
            // Refusals that arrive with another code: a password for a user that has none
            // (etcd 3.5+ sends it as Unknown), or an answer relayed by a grpc-proxy.
            (
                Unknown,
                "auth: authentication failed, password was given for no password user",
                Kind::Rejected,
            ),
            (Unknown, "etcdserver: permission denied", Kind::Rejected),
            // Wrapped in another message: still what it says.
            (
                Unauthenticated,
                "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
                Kind::Unavailable,
            ),
            (
                NotFound,
                "rpc error: desc = etcdserver: requested lease not found",
                Kind::LeaseGone,
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

    /// What a log says of a failed request: a few words, never a gRPC status's Debug form.
    #[test]
    fn errors_are_summarised_in_a_few_words() {
        use std::io::{Error as IoError, ErrorKind};
        // (code, message, causes outermost first) -> summary
        let rows: &[(Code, &str, &[&str], &str)] = &[
            // A failed connection: the step in the message, the reason in its innermost cause.
            (
                Code::Unavailable,
                "tcp connect error",
                &["transport error", "tcp connect error", "connection refused"],
                "connection refused",
            ),
            (Code::Unavailable, "etcdserver: no leader", &[], "no leader"),
            (
                Code::PermissionDenied,
                "etcdserver: permission denied",
                &[],
                "permission denied",
            ),
            (Code::Cancelled, "Timeout expired", &[], "timed out"),
            (Code::DeadlineExceeded, "Timeout expired", &[], "timed out"),
            (
                Code::DeadlineExceeded,
                "context deadline exceeded",
                &[],
                "context deadline exceeded",
            ),
            (Code::Unknown, "", &[], "Unknown"),
            (
                Code::Unknown,
                "transport error",
                &["invalid peer certificate: UnknownIssuer"],
                "invalid peer certificate: UnknownIssuer",
            ),
        ];
        for (code, message, causes, want) in rows {
            let causes: Vec<String> = causes.iter().map(|c| c.to_string()).collect();
            assert_eq!(status_reason(*code, message, &causes), *want, "{message}");
        }
        // Whole errors as etcd-client hands them over.
        let refused =
            tonic::Status::from_error(Box::new(IoError::from(ErrorKind::ConnectionRefused)));
        let rows = [
            (
                etcd_client::Error::GRpcStatus(refused),
                "connection refused",
            ),
            (
                etcd_client::Error::GRpcStatus(tonic::Status::unavailable(
                    "etcdserver: request timed out",
                )),
                "request timed out",
            ),
            (
                etcd_client::Error::LeaseKeepAliveError("channel closed".into()),
                "stream closed",
            ),
            (
                etcd_client::Error::IoError(IoError::from(ErrorKind::TimedOut)),
                "timed out",
            ),
            (
                etcd_client::Error::IoError(IoError::other("a wrapped reason")),
                "a wrapped reason",
            ),
        ];
        for (e, want) in rows {
            assert_eq!(summary(&e), want, "{e:?}");
            assert_eq!(classify(&e).reason(), want, "{e:?}");
        }
        // Long or many-lined: clipped to one short line.
        let long = etcd_client::Error::InvalidArgs(format!("a\nb {}", "x".repeat(500)));
        let got = summary(&long);
        assert!(
            got.chars().count() <= SUMMARY_CHARS && !got.contains('\n'),
            "{got}"
        );
        assert!(
            got.starts_with("invalid arguments: a b xxx") && got.ends_with("..."),
            "{got}"
        );
    }

    /// A real failed connection (nothing listens on port 1), through etcd-client and tonic.
    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
        let mut client = Client::connect(["http://127.0.0.1:1"], Some(opts))
            .await
            .expect("connecting is lazy");
        let e = client.get("k", None).await.expect_err("nothing listens");
        assert_eq!(summary(&e), "connection refused", "{e:?}");
        assert_eq!(host("http://127.0.0.1:1"), "127.0.0.1:1");
        assert_eq!(host("etcd:2379"), "etcd:2379");
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
