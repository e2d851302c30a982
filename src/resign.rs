//! Step-down requests through etcd: what a request says, and the leader's side of it.
//!
//! `singleton-exec resign` puts a request at the election's resign key
//! ([`Election::resign_key`], outside the election's key space) naming the leader key and the
//! fencing revision it is addressed to. The leader obeys only a request addressed to its own key and
//! revision, so a request that arrives late (or lingers until its lease expires) cannot make a later
//! leader step down. On obeying, the leader deletes the request: that is the acknowledgement.
//!
//! The leader's watch ([`RequestWatch`]) starts after its child has started, so it never delays a
//! handoff, and it is one watch per leader, none per standby. It is best effort: a role without read
//! permission on the request key only loses this way of stepping down (a warning says so), never the
//! leadership.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, EventType, Txn, TxnOp, WatchOptions};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::election::{Candidacy, Election};
use crate::etcd::{Connector, EtcdError};

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// A request to step down, as stored in etcd (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResignRequest {
    /// The leader key the request is addressed to.
    pub leader_key: String,
    /// That leader's fencing revision (its key's create-revision).
    pub fencing_revision: i64,
    /// Who asked, for the leader's log.
    pub by: String,
}

/// A request value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a step-down request: {0}")]
pub struct BadRequest(String);

/// What a leader does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Addressed to this leadership: step down.
    Obey(ResignRequest),
    /// For another leadership (an earlier one, usually), or unreadable: ignore, and say why.
    Ignore(String),
}

impl ResignRequest {
    pub fn encode(&self) -> String {
        serde_json::json!({
            "leader_key": self.leader_key,
            "fencing_revision": self.fencing_revision,
            "by": self.by,
        })
        .to_string()
    }

    pub fn parse(value: &[u8]) -> Result<ResignRequest, BadRequest> {
        let v: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| BadRequest(e.to_string()))?;
        let leader_key = v["leader_key"]
            .as_str()
            .ok_or_else(|| BadRequest("no leader_key".into()))?;
        let fencing_revision = v["fencing_revision"]
            .as_i64()
            .ok_or_else(|| BadRequest("no fencing_revision".into()))?;
        Ok(ResignRequest {
            leader_key: leader_key.to_owned(),
            fencing_revision,
            by: v["by"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Addressed to this leadership: the same key is not enough (a lease id could in principle be
    /// reused), the fencing revision must match too.
    pub fn is_for(&self, me: &Candidacy) -> bool {
        self.leader_key == me.key && self.fencing_revision == me.revision
    }
}

/// The decision for one request value, as a pure function.
pub fn examine(value: &[u8], me: &Candidacy) -> Verdict {
    match ResignRequest::parse(value) {
        Ok(r) if r.is_for(me) => Verdict::Obey(r),
        Ok(r) => Verdict::Ignore(format!(
            "from {:?}: addressed to {} at fencing revision {}, we are {} at {}",
            r.by, r.leader_key, r.fencing_revision, me.key, me.revision
        )),
        Err(e) => Verdict::Ignore(e.to_string()),
    }
}

/// How one watch attempt ended.
enum Found {
    /// A request for us, at this mod-revision of the request key.
    ForMe(ResignRequest, i64),
    /// etcd refuses us the request key (permission): stop watching, leadership is unaffected.
    Refused(String),
}

/// The leader's watch on the request key; aborted when dropped (when the leadership ends).
pub struct RequestWatch {
    task: JoinHandle<()>,
}

impl RequestWatch {
    /// Starts watching; a request for `me` sends one `()` on `step_down`.
    pub fn start(
        connector: Arc<Connector>,
        election: &Election,
        me: &Candidacy,
        step_down: UnboundedSender<()>,
    ) -> RequestWatch {
        let (key, me) = (election.resign_key(), me.clone());
        let task = tokio::spawn(async move {
            let mut wait = RETRY_MIN;
            loop {
                let (key, me) = (&key, &me);
                let r = connector
                    .call(|mut c| async move { wait_for_request(&mut c, key, me).await })
                    .await;
                match r {
                    Ok(Found::ForMe(request, mod_revision)) => {
                        tracing::info!(by = ?request.by, "step-down requested through etcd");
                        let _ = step_down.send(());
                        acknowledge(&connector, key, mod_revision).await;
                        return;
                    }
                    Ok(Found::Refused(why)) => {
                        tracing::warn!(key = %key, error = %why,
                            "cannot read step-down requests (grant read and write on this key): `singleton-exec resign` will not reach this leader");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "watch on step-down requests broke; re-watching");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RETRY_MAX);
                    }
                }
            }
        });
        RequestWatch { task }
    }
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the request key (a request may predate the watch: it is put once the leader key exists,
/// before the child starts), then watches it for a request addressed to `me`. A permission error is
/// returned as `Ok(Refused)` so that [`Connector::call`] does not count it against the endpoint.
async fn wait_for_request(
    client: &mut Client,
    key: &str,
    me: &Candidacy,
) -> Result<Found, EtcdError> {
    let resp = match client.get(key, None).await.map_err(EtcdError::from) {
        Ok(r) => r,
        Err(EtcdError::Rejected(why)) => return Ok(Found::Refused(why)),
        Err(e) => return Err(e),
    };
    let from = resp.header().map(|h| h.revision()).unwrap_or_default() + 1;
    if let Some(kv) = resp.kvs().first() {
        if let Some(found) = consider(kv.value(), kv.mod_revision(), me) {
            return Ok(found);
        }
    }
    let opts = WatchOptions::new().with_start_revision(from);
    let mut stream = client.watch(key, Some(opts)).await?;
    loop {
        let Some(resp) = stream.message().await? else {
            return Err(EtcdError::Unavailable("watch stream closed".into()));
        };
        if resp.canceled() {
            let why = resp.cancel_reason().to_owned();
            if why.contains("permission denied") {
                return Ok(Found::Refused(why));
            }
            return Err(EtcdError::Unavailable(format!("watch canceled: {why}")));
        }
        for event in resp.events() {
            if event.event_type() != EventType::Put {
                continue;
            }
            if let Some(found) = event
                .kv()
                .and_then(|kv| consider(kv.value(), kv.mod_revision(), me))
            {
                return Ok(found);
            }
        }
    }
}

fn consider(value: &[u8], mod_revision: i64, me: &Candidacy) -> Option<Found> {
    match examine(value, me) {
        Verdict::Obey(r) => Some(Found::ForMe(r, mod_revision)),
        Verdict::Ignore(why) => {
            tracing::info!(%why, "ignoring a step-down request for another leadership");
            None
        }
    }
}

/// Deletes the request we obeyed, unless a newer one replaced it meanwhile. Best effort: the
/// requester's lease removes it anyway.
async fn acknowledge(connector: &Connector, key: &str, mod_revision: i64) {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
        .and_then([TxnOp::delete(key, None)]);
    let call = connector.call(|mut c| async move { Ok::<_, EtcdError>(c.txn(txn).await?) });
    match tokio::time::timeout(connector.request_timeout(), call).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "cannot acknowledge the step-down request"),
        Err(_) => tracing::debug!("acknowledging the step-down request timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::LeaseId;

    fn me() -> Candidacy {
        Candidacy {
            key: "/singleton-exec/app/ab".into(),
            lease: LeaseId(0xab),
            revision: 7,
            leads_since: 7,
        }
    }

    fn request(key: &str, revision: i64) -> Vec<u8> {
        ResignRequest {
            leader_key: key.into(),
            fencing_revision: revision,
            by: "ops@host".into(),
        }
        .encode()
        .into_bytes()
    }

    #[test]
    fn requests_round_trip() {
        let r = ResignRequest {
            leader_key: "/p/e/1".into(),
            fencing_revision: 42,
            by: "x".into(),
        };
        assert_eq!(ResignRequest::parse(r.encode().as_bytes()), Ok(r));
        // `by` is optional: a hand-written request with etcdctl works.
        let hand = br#"{"leader_key":"/p/e/1","fencing_revision":42}"#;
        assert_eq!(ResignRequest::parse(hand).unwrap().fencing_revision, 42);
    }

    #[test]
    fn which_requests_a_leader_obeys() {
        let me = me();
        let cases: [(Vec<u8>, bool); 7] = [
            (request(&me.key, 7), true),
            // An earlier leadership with the same key (lease id reused), or a later one.
            (request(&me.key, 6), false),
            (request(&me.key, 8), false),
            // Another leader's request, at our revision by coincidence.
            (request("/singleton-exec/app/cd", 7), false),
            (b"".to_vec(), false),
            (b"resign".to_vec(), false),
            (
                br#"{"leader_key":"/singleton-exec/app/ab"}"#.to_vec(),
                false,
            ),
        ];
        for (value, obey) in cases {
            let verdict = examine(&value, &me);
            assert_eq!(
                matches!(verdict, Verdict::Obey(_)),
                obey,
                "{:?}: {verdict:?}",
                String::from_utf8_lossy(&value)
            );
        }
    }
}
