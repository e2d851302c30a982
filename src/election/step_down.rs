//! Step-down requests through etcd: what a request says, and the leader's side of it.
//!
//! `singleton-exec resign` puts a request at the election's resign key
//! ([`crate::election::queue::Election::resign_key`], outside the election's key space) naming the leader key and the
//! fencing revision it is addressed to. The leader obeys only a request addressed to its own key and
//! revision, so a request that arrives late (or lingers until its lease expires) cannot make a later
//! leader step down. On obeying, the leader deletes the request: that is the acknowledgement.
//!
//! Every candidate watches the request key on the stream it sets up when it joins
//! ([`crate::election::candidacy_watch`]), so a new leader needs no new watch; requests are rare, and each is
//! read by every candidate and obeyed by the one it is addressed to. It is best effort: a role
//! without read permission on the request key only loses this way of stepping down (a warning says
//! so), never the leadership.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use crate::election::connector::{within, Connector, EtcdError, Within};
use crate::election::queue::Candidacy;

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

/// Deletes the request we obeyed, unless a newer one replaced it meanwhile. Best effort: the
/// requester's lease removes it anyway.
pub(crate) async fn acknowledge(connector: &Connector, key: &str, mod_revision: i64) {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
        .and_then([TxnOp::delete(key, None)]);
    let call = connector.call(|mut c| async move { Ok::<_, EtcdError>(c.txn(txn).await?) });
    match within(connector.request_timeout(), call).await {
        Within::Done(_) => {}
        Within::Failed(e) => {
            tracing::debug!(error = %e, "cannot acknowledge the step-down request")
        }
        Within::TimedOut => tracing::debug!("acknowledging the step-down request timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::LeaseId;

    fn me() -> Candidacy {
        Candidacy {
            key: "/singleton-exec/app/ab".into(),
            lease: LeaseId(0xab),
            revision: 7,
            leads_since: 7,
            slot: None,
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
