//! The optional HTTP endpoints (`--health-addr`), for probes, monitoring and operators:
//!
//! * `GET /healthz`: 200 while the etcd session is fresh, else 503. For liveness probes: it never
//!   depends on being leader.
//! * `GET /leader`: 200 only while leading with a fresh lease, else 503. For active/passive Services.
//! * `GET /status`: JSON with role, ids, fencing revision, milliseconds until the fail-closed
//!   deadline, child pid, the current leader's id, and the last transition.
//! * `GET /metrics`: Prometheus metrics (OpenMetrics text).
//! * `POST /resign`: step down (stop the child, revoke, hold off, campaign again); 202 if leading,
//!   409 otherwise.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;

use crate::clock::BootInstant;
use crate::election::Election;
use crate::etcd::Connector;
use crate::observer::{Observer, RoleName};

/// What the handlers need.
pub struct Endpoints {
    pub observer: Arc<Observer>,
    pub election: Election,
    pub connector: Arc<Connector>,
    pub resign: UnboundedSender<()>,
}

/// Parses `--health-addr`: `PORT`, `:PORT` (both on loopback) or `HOST:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.parse::<u16>().is_ok() {
        format!("127.0.0.1:{s}")
    } else if let Some(port) = s.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not PORT, :PORT or HOST:PORT (e.g. 8080, 0.0.0.0:8080)"))
}

/// Serves until the runtime stops. The listener is bound by the caller, so a bad address fails
/// at start-up.
pub async fn serve(listener: std::net::TcpListener, endpoints: Arc<Endpoints>) {
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
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, endpoints.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    ep: Arc<Endpoints>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let obs = &ep.observer;
    let text = "text/plain; charset=utf-8";
    let r = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
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
        (&Method::GET, "/leader") => {
            if obs.status().role == RoleName::Leader && obs.session_fresh() {
                reply(StatusCode::OK, text, "leader\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, text, "not leader\n".into())
            }
        }
        (&Method::GET, "/status") => {
            reply(StatusCode::OK, "application/json", status_json(&ep).await)
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            obs.encode_metrics(),
        ),
        (&Method::POST, "/resign") => {
            if obs.status().role == RoleName::Leader && ep.resign.send(()).is_ok() {
                reply(StatusCode::ACCEPTED, text, "resigning\n".into())
            } else {
                reply(StatusCode::CONFLICT, text, "not leader\n".into())
            }
        }
        (_, "/healthz" | "/leader" | "/status" | "/metrics" | "/resign") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "method not allowed\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, text, "not found\n".into()),
    };
    Ok(r)
}

async fn status_json(ep: &Endpoints) -> String {
    let obs = &ep.observer;
    let st = obs.status();
    let leader = async {
        let conn = ep.connector.get().await.ok()?;
        ep.election.leader(&mut conn.client.clone()).await.ok()?
    };
    let leader = tokio::time::timeout(Duration::from_secs(1), leader)
        .await
        .ok()
        .flatten();
    let now = BootInstant::now();
    let body = serde_json::json!({
        "role": st.role.as_str(),
        "id": obs.id,
        "election": obs.election,
        "key": st.key,
        "lease_id": st.lease.map(|l| format!("{l:x}")),
        "fencing_revision": st.revision,
        "ms_until_deadline": obs.ms_until_deadline(),
        "session_fresh": obs.session_fresh(),
        "child_pid": st.child_pid,
        "leader_id": leader.as_ref().map(|l| l.id.clone()),
        "leader_revision": leader.as_ref().map(|l| l.revision),
        "last_transition": st.last_transition.map(|(role, why, at)| serde_json::json!({
            "role": role.as_str(),
            "why": why,
            "ms_ago": now.saturating_duration_since(at).as_millis() as u64,
        })),
    });
    body.to_string() + "\n"
}
