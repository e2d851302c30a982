//! The optional HTTP endpoints (`--health-addr`), for probes, monitoring and operators:
//!
//! * `GET /healthz`: 200 while the etcd session is fresh, else 503. It never depends on being
//!   leader: a standby that can take over passes (a readiness probe under a disruption budget).
//! * `GET /leader`: 200 only while leading with a fresh lease and a ready child, else 503. For a
//!   load balancer that must reach only the leader. The child is ready once started, or, with
//!   `--ready-timeout`, once it sent `READY=1` on its notify socket.
//! * `GET /status`: JSON with role, ids, the fencing revision (only while this replica leads or
//!   stops its child: a standby's key fences nothing), our key's create revision, milliseconds
//!   until the fail-closed deadline, child pid, the current leader's id and fencing revision, the
//!   last transition, and what the child said of itself on its notify socket (`ready`,
//!   `child_status`, and the details under `child`).
//! * `GET /metrics`: Prometheus metrics: the Prometheus text format, or OpenMetrics when the
//!   `Accept` header asks for it ([`crate::report::exposition`]).
//! * `POST /resign`: step down (stop the child, revoke, hold off, campaign again); 202 if leading,
//!   409 otherwise.
//!
//! `POST /resign` is the one endpoint that changes anything, so it is guarded ([`ResignAuth`]): on a
//! loopback address it is open (only local processes reach it) unless a token is configured; on any
//! other address it needs `Authorization: Bearer TOKEN` with the token from `--resign-token-file`,
//! and without a token file it is off (403). The read-only endpoints stay open everywhere: probes and
//! scrapers carry no credentials.
//!
//! So anyone who can connect can try to keep the probes out, and the endpoints run on the
//! leadership loop's runtime thread. [`connections`] decides which connections stay open: a new one
//! is always accepted, idle and slow ones are closed first. The answers themselves are cheap and
//! bounded: one request per connection, a request head of at most [`MAX_HEAD`], and at most
//! [`ETCD_READS`] reads from etcd at a time for `/status`, so no flood of requests queues up in
//! front of the leadership loop's own calls to etcd.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::Client;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;

use crate::config::etcd::Secret;
use crate::core::clock::BootInstant;
use crate::core::lifecycle::Phase;
use crate::election::connector::{Connector, EtcdError};
use crate::election::queue::{Election, LeaderInfo};
use crate::election::slots::SlotsView;
use crate::report::exposition;
use crate::report::observer::{ChildView, HealthView, Observer};

mod connections;

use connections::{Connections, Stage, EXCHANGE_TIMEOUT, HEAD_TIMEOUT};

/// After an accept error (EMFILE, ENFILE, ENOBUFS), wait before trying again instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// The largest request head read (hyper's smallest buffer); a larger one is answered 431. Ours
/// are a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// `/status` requests reading from etcd at once; others wait for their turn within the same
/// [`ETCD_VIEW_TIMEOUT`] (and show null if it passes).
const ETCD_READS: usize = 2;

/// What the handlers need.
pub struct Endpoints {
    pub observer: Arc<Observer>,
    pub election: Election,
    pub connector: Arc<Connector>,
    /// Step-down requests, each naming the fencing revision of the leadership it is for.
    pub resign: UnboundedSender<i64>,
    pub resign_auth: ResignAuth,
    /// `--slots`: above 1, `/status` shows every slot's holder.
    pub slots: u32,
}

/// Who may `POST /resign`.
#[derive(Debug, Clone)]
pub enum ResignAuth {
    /// Anyone who can connect: the listener is on loopback and no token was configured.
    Open,
    /// Only a request with `Authorization: Bearer TOKEN`.
    Token(Secret),
    /// No one: a non-loopback listener without a token file.
    Disabled,
}

/// The answer to one `POST /resign`, before the role is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// No bearer token: 401 with `WWW-Authenticate: Bearer`.
    NoToken,
    /// A bearer token that is not ours: 403.
    WrongToken,
    /// Off on this address: 403, with how to enable it.
    Disabled,
}

impl ResignAuth {
    /// The rule: a token, when configured, is always required; without one, only loopback is open.
    /// An unknown address counts as not loopback.
    pub fn new(listen: Option<std::net::SocketAddr>, token: Option<Secret>) -> ResignAuth {
        match (token, listen) {
            (Some(t), _) => ResignAuth::Token(t),
            (None, Some(a)) if a.ip().is_loopback() => ResignAuth::Open,
            (None, _) => ResignAuth::Disabled,
        }
    }

    /// Checks the `Authorization` header's value, if any.
    pub fn check(&self, authorization: Option<&[u8]>) -> Access {
        let token = match self {
            ResignAuth::Open => return Access::Allowed,
            ResignAuth::Disabled => return Access::Disabled,
            ResignAuth::Token(t) => t,
        };
        let Some(given) = authorization.and_then(bearer) else {
            return Access::NoToken;
        };
        if constant_time_eq(given, token.expose().as_bytes()) {
            Access::Allowed
        } else {
            Access::WrongToken
        }
    }
}

/// The token of `Bearer TOKEN` (the scheme is case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
/// (The length may show; tokens are random, so that tells nothing useful.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// The endpoints and what their requests share.
struct Server {
    ep: Arc<Endpoints>,
    /// Turns to read from etcd: [`ETCD_READS`] permits.
    etcd_reads: Semaphore,
}

/// Serves until the runtime stops. The listener is bound by the caller, so a bad address fails
/// at start-up.
pub async fn serve(listener: std::net::TcpListener, endpoints: Arc<Endpoints>) {
    deepen_backlog(&listener);
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|_| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "health endpoint: cannot use the listener");
            return;
        }
    };
    let server = Arc::new(Server {
        ep: endpoints,
        etcd_reads: Semaphore::new(ETCD_READS),
    });
    let mut open = Connections::new(connections::cap(connections::descriptor_limit()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "health endpoint: accept failed");
                if out_of_descriptors(&e) {
                    // An idle connection gives one back for the next probe.
                    open.close_oldest_waiting();
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if open.make_room() > 0 {
            // The closed connection's task lets go of its descriptor when it next runs: let it
            // run before accepting more, so a burst cannot take more descriptors than the cap.
            tokio::task::yield_now().await;
        }
        let stage = Stage::default();
        let task = tokio::spawn(exchange(stream, server.clone(), stage.clone()));
        open.add(stage, task.abort_handle());
    }
}

/// Whether an accept failed for want of a file descriptor (the process's or the system's).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Lets the kernel queue as many connections as the system allows (`net.core.somaxconn`) instead
/// of std's 128: a burst of connections then waits to be accepted, where a full queue would drop
/// a probe's SYN and make it try again a second later. (Linux takes `listen` again on a listening
/// socket as a new queue length.)
fn deepen_backlog(listener: &std::net::TcpListener) {
    use nix::sys::socket::{listen, Backlog};
    if let Err(e) = listen(listener, Backlog::MAXCONN) {
        tracing::debug!(error = %e, "health endpoint: cannot lengthen the accept queue");
    }
}

/// One connection: one request and its answer, then close. Ends early if the request head is not
/// complete within [`HEAD_TIMEOUT`], and in any case after [`EXCHANGE_TIMEOUT`].
async fn exchange(stream: TcpStream, server: Arc<Server>, stage: Stage) {
    let head_by = tokio::time::Instant::now() + HEAD_TIMEOUT;
    // Hyper's buffers (16 KiB) are made only for a connection that has sent something: an idle
    // one costs its socket and a task of 2 KiB.
    let Ok(readable) = tokio::time::timeout_at(head_by, stream.readable()).await else {
        return; // nothing sent in time
    };
    if readable.is_err() {
        return;
    }
    let on_head = stage.clone();
    let service = hyper::service::service_fn(move |req| {
        on_head.head_read();
        handle(req, server.clone())
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    let head_late = async {
        tokio::time::sleep_until(head_by).await;
        if stage.answering() {
            std::future::pending::<()>().await;
        }
    };
    let one_exchange = async {
        tokio::select! {
            _ = conn => {}
            _ = head_late => {}
        }
    };
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, one_exchange).await;
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// What a request asks for, from its method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Leader,
    Status,
    Metrics,
    Resign,
    /// A known path with the wrong method: 405.
    WrongMethod,
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::GET, "/healthz") => Route::Healthz,
        (&Method::GET, "/leader") => Route::Leader,
        (&Method::GET, "/status") => Route::Status,
        (&Method::GET, "/metrics") => Route::Metrics,
        (&Method::POST, "/resign") => Route::Resign,
        (_, "/healthz" | "/leader" | "/status" | "/metrics" | "/resign") => Route::WrongMethod,
        _ => Route::NotFound,
    }
}

async fn handle(
    req: Request<Incoming>,
    server: Arc<Server>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let ep = &server.ep;
    let obs = &ep.observer;
    let text = "text/plain; charset=utf-8";
    let r = match route(req.method(), req.uri().path()) {
        Route::Healthz => {
            if obs.session_fresh() {
                reply(StatusCode::OK, text, "ok\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    text,
                    "etcd session not fresh\n".into(),
                )
            }
        }
        Route::Leader => {
            let (leader, ready) = (obs.status().is_leader(), obs.child_ready());
            match (leader && obs.session_fresh(), ready) {
                (true, true) => reply(StatusCode::OK, text, "leader\n".into()),
                (true, false) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    text,
                    "leader, child not ready (no READY=1 yet)\n".into(),
                ),
                (false, _) => reply(StatusCode::SERVICE_UNAVAILABLE, text, "not leader\n".into()),
            }
        }
        Route::Status => reply(
            StatusCode::OK,
            "application/json",
            status_json(&server).await,
        ),
        Route::Metrics => {
            let accept = req.headers().get(hyper::header::ACCEPT);
            let format = exposition::negotiate(accept.and_then(|v| v.to_str().ok()));
            let mut r = reply(
                StatusCode::OK,
                format.content_type(),
                obs.encode_metrics(format),
            );
            // Caches keep one answer per Accept header.
            r.headers_mut().insert(
                hyper::header::VARY,
                hyper::header::HeaderValue::from_static("accept"),
            );
            r
        }
        Route::Resign => resign(&req, ep),
        Route::WrongMethod => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "method not allowed\n".into(),
        ),
        Route::NotFound => reply(StatusCode::NOT_FOUND, text, "not found\n".into()),
    };
    Ok(r)
}

fn resign(req: &Request<Incoming>, ep: &Endpoints) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    // A web page can make a browser POST here ("simple" cross-origin requests need no preflight),
    // and browsers always say where from: no operator's tool does.
    if req.headers().contains_key(hyper::header::ORIGIN) {
        return reply(
            StatusCode::FORBIDDEN,
            text,
            "POST /resign is not for browsers (a request with an Origin header)\n".into(),
        );
    }
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match ep.resign_auth.check(authorization) {
        Access::Allowed => {}
        Access::NoToken => {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                text,
                "send Authorization: Bearer TOKEN (the token of --resign-token-file)\n".into(),
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer realm=\"singleton-exec\""),
            );
            return r;
        }
        Access::WrongToken => {
            // Worth a warning: someone is guessing, or a token was rotated on one side only.
            tracing::warn!("POST /resign with a wrong bearer token refused");
            return reply(StatusCode::FORBIDDEN, text, "wrong token\n".into());
        }
        Access::Disabled => {
            return reply(
                StatusCode::FORBIDDEN,
                text,
                "POST /resign is off on a non-loopback --health-addr: start singleton-exec with \
                 --resign-token-file FILE (or SINGLETON_EXEC_RESIGN_TOKEN_FILE) and send \
                 Authorization: Bearer TOKEN; or use `singleton-exec resign`\n"
                    .into(),
            );
        }
    }
    let leading = match ep.observer.status().phase {
        Phase::Leading { revision, .. } => Some(revision),
        _ => None,
    };
    if leading.is_some_and(|revision| ep.resign.send(revision).is_ok()) {
        reply(StatusCode::ACCEPTED, text, "resigning\n".into())
    } else {
        reply(StatusCode::CONFLICT, text, "not leader\n".into())
    }
}

/// How long `/status` waits for etcd's view; a slow etcd leaves those fields null.
const ETCD_VIEW_TIMEOUT: Duration = Duration::from_secs(1);

async fn status_json(server: &Server) -> String {
    let (leader, holders) = (current_leader(server).await, slot_holders(server).await);
    let ep = &server.ep;
    let body = status_body(
        &ep.observer,
        leader.as_ref(),
        ep.slots,
        holders.as_ref(),
        BootInstant::now(),
    );
    body.to_string() + "\n"
}

/// The election's leader as etcd shows it now.
async fn current_leader(server: &Server) -> Option<LeaderInfo> {
    let election = &server.ep.election;
    etcd_view(server, |mut c| async move { election.leader(&mut c).await }).await
}

/// With `--slots N`: every slot's holder, as etcd shows it.
async fn slot_holders(server: &Server) -> Option<SlotsView> {
    if server.ep.slots <= 1 {
        return None;
    }
    let election = &server.ep.election;
    etcd_view(server, |mut c| async move {
        SlotsView::read(election, &mut c).await
    })
    .await
}

/// One read for `/status`, in its turn, if etcd answers in time: a failure, a slow etcd or a long
/// wait for a turn shows as null.
async fn etcd_view<T, F, Fut>(server: &Server, read: F) -> Option<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, EtcdError>>,
{
    let answer = async {
        let _turn = server.etcd_reads.acquire().await.ok()?;
        server.ep.connector.call(read).await.ok().flatten()
    };
    tokio::time::timeout(ETCD_VIEW_TIMEOUT, answer)
        .await
        .ok()
        .flatten()
}

/// The `/status` document: this replica as its observer sees it at `now`, and etcd's view.
fn status_body(
    obs: &Observer,
    leader: Option<&LeaderInfo>,
    slots: u32,
    holders: Option<&SlotsView>,
    now: BootInstant,
) -> serde_json::Value {
    let st = obs.status();
    let slot = match st.phase {
        Phase::Leading { slot, .. } => slot,
        _ => None,
    };
    serde_json::json!({
        "role": st.phase.name(),
        "id": obs.id,
        "election": obs.election,
        "key": st.phase.key(),
        "lease_id": st.phase.lease().map(|l| l.to_string()),
        "create_revision": st.phase.create_revision(),
        "fencing_revision": st.phase.fencing_revision(),
        "ms_until_deadline": obs.ms_until_deadline(),
        "session_fresh": obs.session_fresh(),
        "child_pid": st.phase.child_pid(),
        "leader_id": leader.map(|l| l.id.clone()),
        "leader_fencing_revision": leader.map(|l| l.revision),
        "slots": slots,
        "slot": slot,
        "slot_holders": holders.map(holders_json),
        "last_transition": st.last_transition.map(|(role, why, at)| serde_json::json!({
            "role": role,
            "why": why,
            "ms_ago": now.saturating_duration_since(at).as_millis() as u64,
        })),
        "health": st.health.map(|h| health_json(&h, now)),
        "ready": st.child.as_ref().map(|c| c.ready),
        "child_status": st.child.as_ref().and_then(|c| c.status.clone()),
        "child": st.child.as_ref().map(|c| child_json(c, now)),
        "hot_standby": st.hot.map(|h| serde_json::json!({
            "told": h.told,
            "told_ms_ago": now.saturating_duration_since(h.told_at).as_millis() as u64,
            "confirmed": h.confirmed,
        })),
    })
}

/// What the current child said of itself on its notify socket.
fn child_json(c: &ChildView, now: BootInstant) -> serde_json::Value {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    serde_json::json!({
        "ready": c.ready,
        "awaits_ready": c.awaits_ready,
        "ready_after_ms": c.ready_after.map(ms),
        "status": c.status,
        "stopping": c.stopping,
        "extend_timeout_ms": c.extend_timeout.map(ms),
        "ms_since_watchdog": c.last_ping.map(|at| ms(now.saturating_duration_since(at))),
        "ms_since_start": ms(now.saturating_duration_since(c.started_at)),
    })
}

/// Every slot's holder (null for a free slot).
fn holders_json(v: &SlotsView) -> serde_json::Value {
    let each = v.holders.iter().map(|h| {
        h.as_ref().map(|h| {
            serde_json::json!({
                "id": h.id,
                "fencing_revision": h.revision,
            })
        })
    });
    serde_json::Value::from(each.collect::<Vec<_>>())
}

fn health_json(h: &HealthView, now: BootInstant) -> serde_json::Value {
    serde_json::json!({
        "healthy": h.healthy,
        "consecutive_failures": h.consecutive_failures,
        "retries": h.retries,
        "last": h.last,
        "ms_ago": now.saturating_duration_since(h.checked_at).as_millis() as u64,
        "took_ms": h.took.as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::LeaseId;
    use crate::election::queue::Candidate;
    use crate::report::observer::tests::{leading, observer};

    fn token() -> Option<Secret> {
        Some(Secret::new("s3cret-token".into()))
    }

    #[test]
    fn who_may_resign_by_address_and_token() {
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().ok();
        let (lo, lo6) = (addr("127.0.0.1:8080"), addr("[::1]:8080"));
        let (any, pod) = (addr("0.0.0.0:8080"), addr("10.1.2.3:8080"));
        type Case<'a> = (Option<std::net::SocketAddr>, bool, Option<&'a [u8]>, Access);
        let cases: [Case; 15] = [
            // (listen, token?, header, expected)
            (lo, false, None, Access::Allowed),
            (lo6, false, Some(b"Bearer x"), Access::Allowed),
            (lo, true, None, Access::NoToken),
            (lo, true, Some(b"Bearer s3cret-token"), Access::Allowed),
            (any, false, None, Access::Disabled),
            (pod, false, Some(b"Bearer s3cret-token"), Access::Disabled),
            (None, false, None, Access::Disabled),
            (any, true, None, Access::NoToken),
            (any, true, Some(b"Basic czNjcmV0LXRva2Vu"), Access::NoToken),
            (any, true, Some(b"Bearer "), Access::NoToken),
            (any, true, Some(b"Bearer wrong"), Access::WrongToken),
            (any, true, Some(b"Bearer s3cret-toke"), Access::WrongToken),
            (any, true, Some(b"Bearer s3cret-tokenX"), Access::WrongToken),
            (any, true, Some(b"Bearer s3cret-token"), Access::Allowed),
            (any, true, Some(b"bearer  s3cret-token "), Access::Allowed),
        ];
        for (listen, with_token, header, want) in cases {
            let auth = ResignAuth::new(listen, if with_token { token() } else { None });
            assert_eq!(
                auth.check(header),
                want,
                "{listen:?} token={with_token} {:?}",
                header.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn requests_are_routed_by_method_and_path() {
        let table = "
            GET     /healthz      Healthz
            GET     /leader       Leader
            GET     /status       Status
            GET     /metrics      Metrics
            POST    /resign       Resign
            GET     /resign       WrongMethod
            POST    /status       WrongMethod
            HEAD    /healthz      WrongMethod
            DELETE  /metrics      WrongMethod
            GET     /             NotFound
            GET     /healthz/     NotFound
            GET     /Status       NotFound
            POST    /resign/now   NotFound
        ";
        for row in table.lines().filter(|l| !l.trim().is_empty()) {
            let [method, path, want] = row.split_whitespace().collect::<Vec<_>>()[..] else {
                panic!("a row has three columns: {row}");
            };
            let method = Method::from_bytes(method.as_bytes()).expect("a method");
            assert_eq!(format!("{:?}", route(&method, path)), want, "{row}");
        }
    }

    #[test]
    fn bearer_tokens() {
        let rows: [(&[u8], Option<&[u8]>); 9] = [
            (b"Bearer abc", Some(b"abc")),
            (b"bearer abc", Some(b"abc")),
            (b"BEARER  abc \t", Some(b"abc")),
            (b"Bearer a b", Some(b"a b")),
            (b"Bearer \xff\xfe", Some(b"\xff\xfe")),
            (b"Bearer", None),
            (b"Bearer    ", None),
            (b"Bearerabc", None),
            (b"Basic abc", None),
        ];
        for (header, want) in rows {
            assert_eq!(
                bearer(header),
                want,
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn who_may_resign_follows_from_the_address_and_the_token() {
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().ok();
        let rows = [
            // (listen, token?, rule)
            (addr("127.0.0.1:1"), false, "Open"),
            (addr("127.9.9.9:1"), false, "Open"),
            (addr("[::1]:1"), false, "Open"),
            (addr("[::ffff:127.0.0.1]:1"), false, "Disabled"),
            (addr("0.0.0.0:1"), false, "Disabled"),
            (addr("[::]:1"), false, "Disabled"),
            (None, false, "Disabled"),
            (addr("127.0.0.1:1"), true, "Token"),
            (addr("0.0.0.0:1"), true, "Token"),
            (None, true, "Token"),
        ];
        for (listen, with_token, want) in rows {
            let auth = ResignAuth::new(listen, if with_token { token() } else { None });
            let got = format!("{auth:?}");
            assert!(got.starts_with(want), "{listen:?} {with_token}: {got}");
            assert!(!got.contains("s3cret"), "{got}");
        }
    }

    #[test]
    fn the_status_of_a_replica_that_just_started() {
        let obs = observer();
        let v = status_body(&obs, None, 1, None, BootInstant::now());
        let want = serde_json::json!({
            "role": "starting",
            "id": "r1",
            "election": "app",
            "key": null,
            "lease_id": null,
            "create_revision": null,
            "fencing_revision": null,
            "ms_until_deadline": null,
            "session_fresh": false,
            "child_pid": null,
            "leader_id": null,
            "leader_fencing_revision": null,
            "slots": 1,
            "slot": null,
            "slot_holders": null,
            "last_transition": null,
            "health": null,
            "ready": null,
            "child_status": null,
            "child": null,
            "hot_standby": null,
        });
        assert_eq!(v, want);
    }

    /// What the child said of itself: its readiness and status, and the details.
    #[test]
    fn the_status_shows_what_the_child_said_of_itself() {
        use crate::notify_socket::{Expectations, Notices};
        let obs = observer().expecting(Expectations {
            watchdog: Some(Duration::from_secs(1)),
            ready_timeout: Some(Duration::from_secs(30)),
            stop_timeout: None,
        });
        obs.enter(leading(None));
        let t0 = BootInstant::now();
        let v = status_body(&obs, None, 1, None, t0);
        assert_eq!(
            (v["ready"].as_bool(), v["child_status"].is_null()),
            (Some(false), true)
        );
        assert_eq!(v["child"]["awaits_ready"], true);
        assert!(
            !obs.child_ready(),
            "not ready before READY=1: /leader answers 503"
        );
        let started = obs.status().child.expect("a child").started_at;
        obs.child_noticed(&Notices {
            ready_at: Some(started + Duration::from_millis(1_500)),
            status: Some("serving".into()),
            last_ping: Some(started + Duration::from_millis(1_600)),
            ..Notices::default()
        });
        let v = status_body(&obs, None, 1, None, started + Duration::from_millis(2_000));
        assert_eq!(v["ready"], true);
        assert_eq!(v["child_status"], "serving");
        let c = &v["child"];
        assert_eq!(
            (
                c["ready_after_ms"].as_u64(),
                c["ms_since_watchdog"].as_u64()
            ),
            (Some(1_500), Some(400))
        );
        assert_eq!(
            (c["stopping"].as_bool(), c["extend_timeout_ms"].is_null()),
            (Some(false), true)
        );
        assert!(obs.child_ready());
    }

    #[test]
    fn the_status_of_a_leader_with_a_slot_and_a_health_check() {
        let obs = observer();
        let t0 = BootInstant::now();
        obs.enter(leading(Some(1)));
        obs.lease_renewed(t0 + Duration::from_secs(10), None);
        obs.health_checked(&crate::health::Report {
            verdict: crate::health::Verdict::Failing(1),
            outcome: crate::health::Outcome::Failed("exit status 1".into()),
            failures: 1,
            retries: 3,
            took: Duration::from_millis(7),
        });
        let leader = LeaderInfo {
            id: "r0".into(),
            key: "/singleton-exec/app/b2".into(),
            lease: LeaseId(0xb2),
            revision: 4,
            candidates: 2,
        };
        let holder = Candidate {
            id: "r1".into(),
            key: "/k/1".into(),
            lease: LeaseId(0xa1),
            revision: 9,
        };
        let view = SlotsView {
            revision: 12,
            count: 2,
            holders: vec![None, Some(holder)],
            health: vec![None, None],
            standbys: vec![],
            other_counts: vec![],
        };
        let later = BootInstant::now() + Duration::from_millis(250);
        let v = status_body(&obs, Some(&leader), 2, Some(&view), later);
        assert_eq!(v["role"], "leader");
        assert_eq!(v["key"], "/singleton-exec/app/a1");
        assert_eq!(v["lease_id"], "a1");
        assert_eq!(
            (v["fencing_revision"].as_i64(), v["child_pid"].as_i64()),
            (Some(9), Some(4242))
        );
        assert_eq!(v["session_fresh"], true);
        assert!(v["ms_until_deadline"]
            .as_i64()
            .is_some_and(|ms| ms > 0 && ms <= 6_000));
        assert_eq!(
            (
                v["leader_id"].as_str(),
                v["leader_fencing_revision"].as_i64()
            ),
            (Some("r0"), Some(4))
        );
        assert_eq!(v["create_revision"], 9);
        assert_eq!(
            (v["slots"].as_u64(), v["slot"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(
            v["slot_holders"],
            serde_json::json!([null, {"id": "r1", "fencing_revision": 9}])
        );
        assert_eq!(v["last_transition"]["role"], "leader");
        assert_eq!(
            v["last_transition"]["why"],
            "child started (fencing revision 9)"
        );
        assert!(v["last_transition"]["ms_ago"]
            .as_u64()
            .is_some_and(|ms| ms >= 250));
        let h = &v["health"];
        assert_eq!(
            (h["healthy"].as_bool(), h["last"].as_str()),
            (Some(false), Some("exit status 1"))
        );
        assert_eq!(
            (h["consecutive_failures"].as_u64(), h["retries"].as_u64()),
            (Some(1), Some(3))
        );
        assert_eq!(h["took_ms"], 7);
        assert!(h["ms_ago"].as_u64().is_some_and(|ms| ms >= 250));
    }

    /// A standby's key fences nothing: its create revision is shown as such, never as a fencing
    /// revision; the leader's fencing revision is the leader's.
    #[test]
    fn a_standby_shows_no_fencing_revision_of_its_own() {
        use crate::core::lifecycle::StopReason;
        use crate::report::observer::tests::standby;
        let obs = observer();
        let leader = LeaderInfo {
            id: "r0".into(),
            key: "/singleton-exec/app/b2".into(),
            lease: LeaseId(0xb2),
            revision: 4,
            candidates: 2,
        };
        let shown = |obs: &Observer| {
            let v = status_body(obs, Some(&leader), 1, None, BootInstant::now());
            let get = |k: &str| v[k].as_i64();
            (
                v["role"].as_str().map(str::to_owned),
                get("create_revision"),
                get("fencing_revision"),
                get("leader_fencing_revision"),
            )
        };
        let role = |r: &str| Some(r.to_owned());
        obs.enter(standby());
        assert_eq!(shown(&obs), (role("standby"), Some(5), None, Some(4)));
        assert!(status_body(&obs, None, 1, None, BootInstant::now())
            .get("leader_revision")
            .is_none());
        obs.enter(leading(None));
        assert_eq!(shown(&obs), (role("leader"), Some(9), Some(9), Some(4)));
        obs.enter(Phase::Stopping {
            key: "/singleton-exec/app/a1".into(),
            revision: 9,
            reason: StopReason::Resign,
            kill_in: Duration::from_secs(3),
        });
        assert_eq!(shown(&obs), (role("stopping"), Some(9), Some(9), Some(4)));
    }

    #[test]
    fn only_a_want_of_descriptors_closes_an_idle_connection() {
        let rows = [
            (libc::EMFILE, true),
            (libc::ENFILE, true),
            (libc::ENOBUFS, false),
            (libc::ENOMEM, false),
            (libc::ECONNABORTED, false),
        ];
        for (errno, want) in rows {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(out_of_descriptors(&e), want, "{e}");
        }
        assert!(!out_of_descriptors(&std::io::ErrorKind::Other.into()));
    }

    #[test]
    fn constant_time_comparison_is_still_a_comparison() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab\0", b"ab"));
    }
}
