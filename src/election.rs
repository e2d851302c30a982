//! The election: etcd's queue-by-create-revision algorithm, done with plain KV and watch.
//!
//! Each candidate puts `PREFIX/NAME/<lease hex>` = its id, attached to its lease, if absent. The
//! candidate with the smallest create-revision under `PREFIX/NAME/` leads. A standby watches only the
//! key just ahead of it (the largest create-revision below its own) for deletion, so a leader change
//! wakes one standby and costs O(1) etcd work however many wait, and no one polls. The trailing `/`
//! keeps elections whose names are prefixes of one another apart.
//!
//! The leader key's create-revision only grows from one leader to the next (etcd revisions are
//! cluster-wide and monotonic), so it is handed to the child as a fencing token.
//!
//! After winning, the key is read back and must still exist with our lease and our create-revision
//! before anything starts: a candidate whose lease expired while it waited must not believe it leads.

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, WatchOptions,
};

use crate::etcd::EtcdError;

/// Where elections live unless `--prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/singleton-exec";

/// One election: the key space `PREFIX/NAME/`.
#[derive(Debug, Clone)]
pub struct Election {
    pub name: String,
    dir: String,
}

/// Our place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidacy {
    pub key: String,
    pub lease: i64,
    /// The key's create-revision: queue position and, once leading, the fencing token.
    pub revision: i64,
}

/// The leader as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub id: String,
    pub key: String,
    pub lease: i64,
    pub revision: i64,
    /// Candidates in the queue, the leader included.
    pub candidates: i64,
}

impl Election {
    pub fn new(prefix: &str, name: &str) -> Self {
        Election {
            name: name.to_owned(),
            dir: format!("{prefix}/{name}/"),
        }
    }

    /// The key prefix of this election, with its trailing `/`.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Puts our key if absent (it survives from an earlier attempt with the same lease) and returns
    /// our place in the queue, and whether we lead already. The same transaction reads the head of
    /// the queue after the put, so an uncontended campaign is one round trip, and "the first key is
    /// ours, with our lease and our create-revision" is its own verification.
    pub async fn join(
        &self,
        client: &mut Client,
        lease: i64,
        id: &str,
    ) -> Result<(Candidacy, bool), EtcdError> {
        let key = format!("{}{lease:x}", self.dir);
        let head = || {
            let opts = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1);
            TxnOp::get(self.dir.clone(), Some(opts))
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key.clone(), id, Some(PutOptions::new().with_lease(lease))),
                head(),
            ])
            .or_else([TxnOp::get(key.clone(), None), head()]);
        let resp = client.txn(txn).await?;
        let ops = resp.op_responses();
        let first_kv = |op: Option<&etcd_client::TxnOpResponse>| match op {
            Some(etcd_client::TxnOpResponse::Get(g)) => g
                .kvs()
                .first()
                .map(|kv| (kv.key().to_vec(), kv.lease(), kv.create_revision())),
            _ => None,
        };
        let revision = if resp.succeeded() {
            resp.header().map(|h| h.revision()).unwrap_or_default()
        } else {
            first_kv(ops.first())
                .map(|(_, _, rev)| rev)
                .unwrap_or_default()
        };
        if revision <= 0 {
            return Err(EtcdError::Unavailable(format!(
                "could not place {key} in the election"
            )));
        }
        let me = Candidacy {
            key,
            lease,
            revision,
        };
        let leads = first_kv(ops.get(1))
            .is_some_and(|(k, l, r)| k == me.key.as_bytes() && l == lease && r == revision);
        Ok((me, leads))
    }

    /// Returns once every candidate ahead of us is gone and our key is verified to still be ours.
    /// Waits by watching the one key just ahead.
    pub async fn wait_turn(&self, client: &mut Client, me: &Candidacy) -> Result<(), EtcdError> {
        loop {
            let opts = GetOptions::new()
                .with_prefix()
                .with_max_create_revision(me.revision - 1)
                .with_sort(SortTarget::Create, SortOrder::Descend)
                .with_limit(1);
            let resp = client.get(self.dir.clone(), Some(opts)).await?;
            let Some(ahead) = resp.kvs().first() else {
                // Nobody ahead. A candidate whose lease expired while it waited must not believe it
                // leads: the key must still be ours.
                return match self.verify(client, me).await? {
                    Some(_) => Ok(()),
                    None => Err(EtcdError::Unavailable(format!(
                        "our key {} vanished while waiting (lease expired?)",
                        me.key
                    ))),
                };
            };
            let ahead_key = ahead.key().to_vec();
            let from = resp.header().map(|h| h.revision()).unwrap_or_default() + 1;
            tracing::debug!(waiting_on = %String::from_utf8_lossy(&ahead_key), "standby: watching the candidate ahead");
            wait_deleted(client, ahead_key, from).await?;
            // Usually the one ahead was the leader and we are first now: one read both tells and
            // verifies it (our key, our lease, our create-revision).
            let opts = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1);
            let head = client.get(self.dir.clone(), Some(opts)).await?;
            match head.kvs().first() {
                Some(kv) if kv.key() == me.key.as_bytes() => {
                    if kv.lease() == me.lease && kv.create_revision() == me.revision {
                        return Ok(());
                    }
                    return Err(EtcdError::Unavailable(format!(
                        "our key {} was replaced while waiting",
                        me.key
                    )));
                }
                Some(kv) if kv.create_revision() < me.revision => continue,
                _ => {
                    return Err(EtcdError::Unavailable(format!(
                        "our key {} vanished while waiting (lease expired?)",
                        me.key
                    )))
                }
            }
        }
    }

    /// Reads our key back: true only if it exists with our lease and our create-revision.
    /// Returns the store revision the answer is valid at.
    pub async fn verify(
        &self,
        client: &mut Client,
        me: &Candidacy,
    ) -> Result<Option<i64>, EtcdError> {
        let resp = client.get(me.key.clone(), None).await?;
        let at = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok(resp
            .kvs()
            .first()
            .filter(|kv| kv.lease() == me.lease && kv.create_revision() == me.revision)
            .map(|_| at))
    }

    /// Returns when our key is deleted after revision `from - 1`; an error if the watch broke.
    pub async fn wait_key_deleted(
        &self,
        client: &mut Client,
        me: &Candidacy,
        from: i64,
    ) -> Result<(), EtcdError> {
        wait_deleted(client, me.key.clone().into_bytes(), from).await
    }

    /// The current leader, if any.
    pub async fn leader(&self, client: &mut Client) -> Result<Option<LeaderInfo>, EtcdError> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let resp = client.get(self.dir.clone(), Some(opts)).await?;
        Ok(resp.kvs().first().map(|kv| LeaderInfo {
            id: String::from_utf8_lossy(kv.value()).into_owned(),
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            lease: kv.lease(),
            revision: kv.create_revision(),
            candidates: resp.count(),
        }))
    }
}

/// Watches `key` from revision `from` until a DELETE event; an error if the stream ends or fails.
async fn wait_deleted(client: &mut Client, key: Vec<u8>, from: i64) -> Result<(), EtcdError> {
    let opts = WatchOptions::new().with_start_revision(from);
    let mut stream = client.watch(key, Some(opts)).await?;
    loop {
        let Some(resp) = stream.message().await? else {
            return Err(EtcdError::Unavailable("watch stream closed".into()));
        };
        if resp.canceled() {
            return Err(EtcdError::Unavailable(format!(
                "watch canceled: {}",
                resp.cancel_reason()
            )));
        }
        if resp
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete)
        {
            return Ok(());
        }
    }
}
