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
//!
//! A key can also vanish while its holder's child still runs: an operator's `etcdctl lease revoke`
//! of the leader's lease deletes the key at once, and a child with a real working set takes tens of
//! milliseconds to die after its SIGKILL. So every candidate also holds a *tree marker*,
//! `PREFIX/NAME@tree/<lease hex>` (named by its candidacy lease), attached to a second lease of its
//! own ([`crate::election::session`]) that it renews with the first. A leader whose tree is gone
//! deletes its key and writes `released` into its marker in one transaction (the one write of a
//! handoff); after a loss it revokes both leases once its tree is gone. The standby that saw the
//! key ahead go reads that key's marker with its next read: `released`, go at once; still `live`
//! on a living lease, wait until that lease goes (revoked by its holder once its tree is dead, or
//! expired: its holder's deadline came first); no marker (a client of etcd's own, or a replica
//! whose role may not write one), the rules below. A crashed replica's marker lease expires with
//! its key, so a takeover after a crash still comes within the TTL.
//!
//! The queue never stays blocked: a key just ahead that the lease its name says does not hold
//! (`etcdctl put` on it takes it off its lease, so no revoke or expiry will delete it) is
//! orphaned. The standby behind it waits until that lease is gone (its holder, seeing the put,
//! kills its tree and revokes; a crashed holder's lease expires; a holder that never notices is
//! waited for as long as its lease lives), then deletes the key in a transaction fenced by the mod
//! revision it read, and reads again. Only a key no lease holds is deleted by a standby; if the
//! key goes some other way while that lease lives, the wait for the former holder goes on as after
//! any deletion ahead.

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, WatchOptions,
};

use crate::core::backoff::{Reset, Schedule};
use crate::core::duration::Short;
use crate::core::lifecycle::LeaseId;
use crate::election::answer::{Answer, Found};
use crate::election::connector::EtcdError;

/// How a waiting candidate learns that the key just ahead is gone (implemented by
/// [`crate::election::candidacy_watch::CandidacyWatch`], on the watch stream it set up when it joined).
pub trait WaitAhead {
    /// Resolves once `key` is deleted after revision `from - 1`; `Err` if waiting cannot go on
    /// (our own key was deleted meanwhile).
    fn wait_ahead_gone(
        &mut self,
        key: Vec<u8>,
        from: i64,
    ) -> impl std::future::Future<Output = Result<(), EtcdError>> + Send;
}

/// One election: the key space `PREFIX/NAME/`.
#[derive(Debug, Clone)]
pub struct Election {
    dir: String,
}

/// Our place in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidacy {
    pub key: String,
    pub lease: LeaseId,
    /// The key's create-revision: queue position and, once leading, the fencing token.
    pub revision: i64,
    /// The store revision at which we were first seen at the head of the queue (0 while queued):
    /// what `etcdctl lock` hands its child as `ETCD_LOCK_REV`. It equals `revision` when nobody
    /// was ahead, and is later when we waited, as etcdctl's is (the revision of the read that
    /// found the queue ahead of us empty).
    pub leads_since: i64,
    /// With `--slots N` (N > 1), the slot this candidacy holds ([`crate::election::slots`]); `key` is then
    /// the slot's key. `None` for the singleton and for a queued standby.
    pub slot: Option<u32>,
}

impl Candidacy {
    /// Whether `kv`, read at our key, is still ours: our lease and our create-revision (a key
    /// put again under the same name is another candidacy).
    pub fn is_ours(&self, kv: &Found) -> bool {
        kv.lease == self.lease.0 && kv.create_revision == self.revision
    }
}

/// One key in the queue, as read from etcd. The value is the candidate's id; it is empty for an
/// `etcdctl lock` holder, which uses the same key layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub key: String,
    pub lease: LeaseId,
    /// Create-revision: the queue position; the leader's is its fencing revision.
    pub revision: i64,
}

/// The candidates among `candidates` that another replica holds under the id `id`: another live
/// lease than ours (`lease`; a replica with slots may show under one lease twice, by its queue key
/// and its slot key). Two replicas with one `--id` cannot be told apart in `status` or the logs.
pub fn same_id<'a>(candidates: &'a [Candidate], id: &str, lease: LeaseId) -> Vec<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| c.id == id && c.lease != lease && c.lease.0 != 0)
        .collect()
}

impl Candidate {
    /// Whether the lease its name says holds it ([`holding`]).
    pub fn holding(&self) -> Holding {
        holding(self.key.as_bytes(), self.lease.0)
    }
}

/// Whether a queue key is held by the lease its name says. A key that is not is orphaned: its
/// holder's revoke or expiry will not delete it, so it would head (block) the queue for ever
/// (`etcdctl put` on a candidate key, even with the same value, takes it off its lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// By its own lease (a name that says none: by some lease): it goes with that lease.
    Own,
    /// By no lease: nothing will ever delete it.
    NoLease,
    /// By a lease other than the one its name says.
    OtherLease,
}

impl Holding {
    /// How an orphaned key is shown (`status`); `None` for a key held by its own lease.
    pub fn orphaned(self) -> Option<&'static str> {
        match self {
            Holding::Own => None,
            Holding::NoLease => Some("no lease"),
            Holding::OtherLease => Some("held by another lease"),
        }
    }
}

/// Whether candidate key `key`, read with `lease` (0: none), is held by the lease its name says
/// (its last segment: `status` shows every key so).
pub fn holding(key: &[u8], lease: i64) -> Holding {
    match (named_lease(key), lease) {
        (_, 0) => Holding::NoLease,
        (Some(named), held) if named != held => Holding::OtherLease,
        _ => Holding::Own,
    }
}

/// Whether the key just ahead may be removed once the lease its name says is gone: only a key of
/// the election's layout (`named`: the lease its name says) that no lease holds. A key another
/// live lease holds is never removed (whoever holds that lease may rely on it): etcd removes it
/// when that lease ends, as any key ahead; a key outside the layout is never ours to remove.
fn removable(named: Option<i64>, lease: i64) -> bool {
    named.is_some() && lease == 0
}

/// The lease a candidate key's name says holds it: its last segment, in hex (etcd's layout).
fn named_lease(key: &[u8]) -> Option<i64> {
    let name = key.rsplit(|&b| b == b'/').next()?;
    let name = std::str::from_utf8(name).ok()?;
    i64::from_str_radix(name, 16).ok().filter(|&l| l > 0)
}

/// The whole queue at one store revision, leader first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The store revision the read was made at; watch from `revision + 1` to see every change after.
    pub revision: i64,
    pub candidates: Vec<Candidate>,
    /// What the leader shows of its child: its last health check, its readiness and status
    /// (read separately; see [`Election::health`]).
    pub health: Option<HealthRecord>,
}

impl Queue {
    pub fn leader(&self) -> Option<&Candidate> {
        self.candidates.first()
    }
}

/// How a join of the singleton's queue went.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// In the queue: our candidacy, whether we lead already, and the store revision of the join.
    Queued { me: Candidacy, leads: bool, at: i64 },
    /// Replicas with `--slots N` use the election (N; 0 if a key names no count): nothing was put.
    SlotsInUse(u32),
}

/// Where a candidate stands after one read.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Nobody ahead: we lead, as of this store revision.
    First(i64),
    /// `key` is just ahead, as of revision `at`; `orphaned`: the key's mod revision, when no
    /// lease holds it though its name says one ([`removable`]).
    Behind {
        key: Vec<u8>,
        at: i64,
        orphaned: Option<i64>,
    },
}

/// What the look for replicas with slots, before a join, found.
#[derive(Debug, PartialEq, Eq)]
enum SlotsLook {
    /// Replicas with this slot count (0: a key that names none) use the election.
    InUse(u32),
    /// None do.
    Clear,
    /// We may not read there (a role from before slots): join without looking.
    NotAllowed,
}

// The positions of [`Election::join_txn`]'s operations: both branches send them in this order.
/// The put of our key (`then`), or the read of it (`else`: it survives from an earlier attempt,
/// or is absent because a key of replicas with slots stopped the put).
const JOIN_MINE: usize = 0;
/// The head of the queue, after the put.
const JOIN_HEAD: usize = 1;
/// One key of replicas with slots, when the join looks for one.
const JOIN_SLOTS_KEY: usize = 2;

/// The positions of [`Election::next_ahead_txn`]'s reads: the key just ahead of ours, and the
/// tree marker of the key we waited on, when there is one.
const NEXT_AHEAD: usize = 0;
const NEXT_TREE: usize = 1;
const NEXT_TREES: usize = 2;
/// The positions of [`Election::departed_txn`]'s reads: every candidate key, every tree marker.
const DEPARTED_KEYS: usize = 0;
const DEPARTED_TREES: usize = 1;

/// A tree marker's value while its candidacy lives: its holder's child, if any, may run.
pub const TREE_LIVE: &str = "live";
/// A tree marker's value once its holder gave its key up with its tree gone.
pub const TREE_RELEASED: &str = "released";

/// The tree markers a standby read with the queue after the key it waited on went.
#[derive(Debug, Clone, Default)]
struct Trees {
    /// The marker of the key waited on.
    ahead: FormerTree,
    /// Every marker created before our key: candidacies that joined before us, all of them gone
    /// once nobody is ahead of us (or back in the queue behind us, with the same lease).
    earlier: Vec<Found>,
}

impl Trees {
    /// The candidacies that joined before us and whose child may still run: nobody being ahead
    /// of us, every one of them has left the queue (or joined again behind us: waited for until
    /// its key is seen back).
    fn departed(&self, tree_dir: &str, mine: LeaseId) -> Vec<(i64, i64)> {
        departed_trees(tree_dir, &self.earlier, &[], mine)
    }
}

/// What a candidate's tree marker says of the child of a key that went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormerTree {
    /// Its holder released the key after its tree was gone.
    Released,
    /// The marker is there, on this lease: the holder's child may still run while it lives.
    MayLive(i64),
    /// No marker we can go by (none, or one no lease holds): a client that writes none.
    #[default]
    Unknown,
}

/// What the tree marker `marker` (the read of a key's [`Election::tree_key`]) says.
pub fn former_tree(marker: Option<&Found>) -> FormerTree {
    match marker {
        Some(m) if m.value == TREE_RELEASED.as_bytes() => FormerTree::Released,
        Some(m) if m.lease > 0 => FormerTree::MayLive(m.lease),
        _ => FormerTree::Unknown,
    }
}

/// The tree markers, among `markers`, whose candidacy left the election (no key of `present`
/// names their lease) while their child may still run: for each, its candidacy lease and the tree
/// lease to wait for before a child of ours starts. Never `mine`.
pub fn departed_trees(
    tree_dir: &str,
    markers: &[Found],
    present: &[i64],
    mine: LeaseId,
) -> Vec<(i64, i64)> {
    markers
        .iter()
        .filter_map(|m| {
            let named = lease_of_key(tree_dir, &m.key)?;
            let departed = named != mine.0 && !present.contains(&named);
            match former_tree(Some(m)) {
                FormerTree::MayLive(lease) if departed => Some((named, lease)),
                _ => None,
            }
        })
        .collect()
}

/// The position of the one read of the look for replicas with slots.
const ANY_SLOTS_KEY: usize = 0;

/// How every read that finds our own key gone (deleted, or no longer with our lease and create
/// revision) says so: a standby then joins again, and remembers the loss as its key's deletion
/// ([`is_key_vanished`]), as if its watch had seen it.
const KEY_VANISHED: &str = "our key vanished or was replaced";

/// The error for a read that found our key `key` gone, `while_` doing what.
pub fn key_vanished(key: &str, while_: &str) -> EtcdError {
    EtcdError::Unavailable(format!("{KEY_VANISHED} while {while_}: {key}"))
}

/// Whether `e` is a read's finding that our key is gone ([`key_vanished`]).
pub fn is_key_vanished(e: &EtcdError) -> bool {
    matches!(e, EtcdError::Unavailable(m) if m.starts_with(KEY_VANISHED))
}

/// Where `me` stands after one read of the key ahead.
fn turn(me: &Candidacy, answer: &Answer) -> Result<Turn, EtcdError> {
    // The condition: our key still exists with our lease and our create-revision.
    if !answer.succeeded {
        // A candidate whose lease expired while it waited must not believe it leads.
        return Err(key_vanished(&me.key, "waiting (lease expired?)"));
    }
    let at = answer.revision.unwrap_or(me.revision);
    Ok(match answer.first(NEXT_AHEAD) {
        None => Turn::First(at),
        Some(kv) => Turn::Behind {
            key: kv.key.clone(),
            at,
            orphaned: removable(lease_of_key(dir_of(&me.key), &kv.key), kv.lease)
                .then_some(kv.mod_revision),
        },
    })
}

/// The leader as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub id: String,
    pub key: String,
    pub lease: LeaseId,
    pub revision: i64,
    /// Candidates in the queue, the leader included.
    pub candidates: i64,
}

/// What a leader shows of its child in etcd for `status` (`PREFIX/NAME@health`, or its slot's):
/// its last health check, when it runs them, and what the child said of itself on its notify
/// socket (ready, its status text). Written under the leader's lease, so it goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRecord {
    pub id: String,
    /// The leader key it belongs to (a record of an earlier leader is not shown).
    pub key: String,
    pub revision: i64,
    /// The last health check's result, when the leader runs checks.
    pub check: Option<CheckRecord>,
    /// Whether the child is ready: it sent `READY=1`, or its leader does not wait for that
    /// (no `--ready-timeout`). A record without it (written before 0.3) reads as ready.
    pub ready: bool,
    /// How long after its start the child sent `READY=1`, if it did.
    pub ready_after_ms: Option<u64>,
    /// The child's last `STATUS=` text, as it sent it (sanitised by the leader; a reader
    /// sanitises it again, since anyone who may write the key could have put anything).
    pub child_status: Option<String>,
}

/// A leader's last health-check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub retries: u32,
    /// "healthy", or why the last check failed.
    pub last: String,
}

impl HealthRecord {
    /// The record as stored: `revision` is written `fencing_revision`, its one name everywhere;
    /// the check's fields at the top level, as before there was anything else (a replica of 0.2
    /// reads them), and only when there is a check.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::json!({
            "id": self.id,
            "key": self.key,
            "fencing_revision": self.revision,
            "ready": self.ready,
            "ready_after_ms": self.ready_after_ms,
            "child_status": self.child_status,
        });
        if let Some(c) = &self.check {
            v["healthy"] = c.healthy.into();
            v["consecutive_failures"] = c.consecutive_failures.into();
            v["retries"] = c.retries.into();
            v["last"] = c.last.clone().into();
        }
        v.to_string()
    }

    /// A stored record; one a replica of 0.1 wrote (`revision`) reads the same, and one of 0.2
    /// (a check's result and nothing else) as a ready child without a status.
    pub fn from_json(bytes: &[u8]) -> Option<HealthRecord> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let check = match v.get("healthy") {
            None => None,
            Some(healthy) => Some(CheckRecord {
                healthy: healthy.as_bool()?,
                consecutive_failures: u32::try_from(v["consecutive_failures"].as_u64()?).ok()?,
                retries: u32::try_from(v["retries"].as_u64()?).ok()?,
                last: v["last"].as_str()?.to_string(),
            }),
        };
        let optional = |name: &str| match v.get(name) {
            None | Some(serde_json::Value::Null) => Some(None),
            Some(x) => Some(Some(x)),
        };
        Some(HealthRecord {
            id: v["id"].as_str()?.to_string(),
            key: v["key"].as_str()?.to_string(),
            revision: v["fencing_revision"]
                .as_i64()
                .or_else(|| v["revision"].as_i64())?,
            check,
            ready: match optional("ready")? {
                None => true,
                Some(r) => r.as_bool()?,
            },
            ready_after_ms: match optional("ready_after_ms")? {
                None => None,
                Some(ms) => Some(ms.as_u64()?),
            },
            child_status: match optional("child_status")? {
                None => None,
                Some(s) => Some(s.as_str()?.to_string()),
            },
        })
    }
}

impl Election {
    pub fn new(prefix: &str, name: &str) -> Self {
        Election {
            dir: format!("{prefix}/{name}/"),
        }
    }

    /// The key prefix of this election, with its trailing `/`.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Where a step-down request for this election's leader is put (`singleton-exec resign`):
    /// `PREFIX/NAME@resign`. It must be outside every election's key space, or candidates (ours, and
    /// `etcdctl elect` clients) would take it for a candidate. It is: an election's keys start with
    /// `PREFIX'/NAME'/`, where the prefix is one segment and names use only `A-Z a-z 0-9 . _ -`; a
    /// key under it would need a `/` after `NAME'`, and this key has none after `PREFIX/`. And since
    /// `@` is in no name, no other election's request key is the same (`.resign` or `NAME.resign`
    /// would have been: both are valid election names).
    pub fn resign_key(&self) -> String {
        format!("{}@resign", self.dir.trim_end_matches('/'))
    }

    /// Where replicas with `--slots N`, N > 1, keep their keys ([`crate::election::slots`]): `PREFIX/NAME@slots/`,
    /// outside every election's key space for the reasons given for [`Election::resign_key`].
    pub fn slots_root(&self) -> String {
        format!("{}@slots/", self.dir.trim_end_matches('/'))
    }

    /// The slot count in a key under [`Election::slots_root`] (`…@slots/N/…`), if it has one.
    pub fn slots_of_key(&self, key: &[u8]) -> Option<u32> {
        let rest = key.strip_prefix(self.slots_root().as_bytes())?;
        let n = rest.split(|&b| b == b'/').next()?;
        let n = std::str::from_utf8(n).ok()?;
        let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0');
        n.parse().ok().filter(|&n| digits && n > 1)
    }

    /// A read, for a transaction, of one key of replicas with `--slots N` > 1, if any: a singleton
    /// must not run beside them.
    fn any_slots_key(&self) -> TxnOp {
        let root = self.slots_root();
        let opts = GetOptions::new()
            .with_range(range_end(root.as_bytes()))
            .with_keys_only()
            .with_limit(1);
        TxnOp::get(root, Some(opts))
    }

    /// Where the leader shows what it knows of its child (its last health check, what the
    /// child said on its notify socket: [`HealthRecord`]):
    /// `PREFIX/NAME@health`, outside every election's key space for the reasons given for
    /// [`Election::resign_key`], attached to the leader's lease so it goes with the leadership.
    pub fn health_key(&self) -> String {
        format!("{}@health", self.dir.trim_end_matches('/'))
    }

    /// Where the candidate with candidacy lease `lease` keeps its tree marker:
    /// `PREFIX/NAME@tree/<lease hex>`, outside every election's key space for the reasons given
    /// for [`Election::resign_key`], attached to the candidate's tree lease (see the module's doc).
    pub fn tree_key(&self, lease: LeaseId) -> String {
        format!("{}{lease}", self.tree_dir())
    }

    /// `PREFIX/NAME@tree/`: every tree marker of the election.
    pub fn tree_dir(&self) -> String {
        format!("{}@tree/", self.dir.trim_end_matches('/'))
    }

    /// Writes our tree marker ([`TREE_LIVE`], under `tree_lease`) before we join: it must exist
    /// before we can lead. `false` if etcd refuses it (a role that may write only the election's
    /// own keys): we then run as before markers, and say what that costs.
    pub async fn mark_tree(
        &self,
        client: &mut Client,
        lease: LeaseId,
        tree_lease: LeaseId,
    ) -> Result<bool, EtcdError> {
        // The write and a read of the others' markers in one request: a role that may write ours
        // but not read theirs would otherwise fail every standby at its first handoff.
        let opts = PutOptions::new().with_lease(tree_lease.0);
        let read = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_limit(1);
        let txn = Txn::new().and_then([
            TxnOp::put(self.tree_key(lease), TREE_LIVE, Some(opts)),
            TxnOp::get(self.tree_dir(), Some(read)),
        ]);
        match client.txn(txn).await {
            Ok(_) => Ok(true),
            Err(e) => match EtcdError::from(e) {
                EtcdError::Rejected(why) => {
                    // Then a standby that sees our key revoked by an operator cannot tell whether
                    // our child is still dying.
                    tracing::warn!(key = %self.tree_key(lease), reason = %why,
                        "cannot write our tree marker or read the others' (grant read and write on PREFIX/NAME@tree/)");
                    Ok(false)
                }
                e => Err(e),
            },
        }
    }

    /// Gives up candidacy `me`, whose tree is gone, in one transaction: if its key is still ours,
    /// delete it and mark our tree [`TREE_RELEASED`] (under `tree_lease`), so the standby woken by
    /// the deletion goes at once. `true` if it was done.
    pub async fn release(
        &self,
        client: &mut Client,
        me: &Candidacy,
        tree_lease: LeaseId,
    ) -> Result<bool, EtcdError> {
        Ok(client
            .txn(self.release_txn(me, tree_lease))
            .await?
            .succeeded())
    }

    fn release_txn(&self, me: &Candidacy, tree_lease: LeaseId) -> Txn {
        let opts = PutOptions::new().with_lease(tree_lease.0);
        Txn::new().when(still_ours(me)).and_then([
            TxnOp::delete(me.key.clone(), None),
            TxnOp::put(self.tree_key(me.lease), TREE_RELEASED, Some(opts)),
        ])
    }

    /// Waits until no candidate that left the election may still run a child: every tree marker
    /// whose candidacy has no key left (`present`: the candidacy leases that still have one) is
    /// released or its lease gone. For a candidate that finds itself first without having waited
    /// on anyone: a leader whose key an operator just deleted or revoked may still be killing its
    /// child. `present_keys` reads the candidacy leases in the layout's key space (the queue's,
    /// or the slots'). One read when there is nobody to wait for.
    pub async fn wait_departed_trees(
        &self,
        client: &mut Client,
        me: &Candidacy,
        present: impl Fn(&[Found]) -> Vec<i64>,
        layout_dir: &str,
        rejoin_key: impl Fn(LeaseId) -> String,
    ) -> Result<(), EtcdError> {
        let resp = match client.txn(self.departed_txn(layout_dir)).await {
            Ok(resp) => resp,
            Err(e) => match EtcdError::from(e) {
                // A role that may not read the markers could not write ours either: as before
                // markers, the rules for keys without one apply.
                e if e.is_rejected() => {
                    tracing::debug!(error = %e, "cannot read the tree markers");
                    return Ok(());
                }
                e => return Err(e),
            },
        };
        let answer = Answer::of(&resp);
        let present = present(answer.read(DEPARTED_KEYS));
        let tree_dir = self.tree_dir();
        let departed = departed_trees(&tree_dir, answer.read(DEPARTED_TREES), &present, me.lease);
        for (named, tree) in departed {
            let rejoin = rejoin_key(LeaseId(named));
            wait_tree_gone(client, me, tree, (rejoin.as_bytes(), named)).await?;
        }
        Ok(())
    }

    /// Every key under `layout_dir` (keys only) and every tree marker, at one revision, in the
    /// order of [`DEPARTED_KEYS`], [`DEPARTED_TREES`].
    fn departed_txn(&self, layout_dir: &str) -> Txn {
        let keys = GetOptions::new().with_prefix().with_keys_only();
        Txn::new().and_then([
            TxnOp::get(layout_dir, Some(keys)),
            TxnOp::get(self.tree_dir(), Some(GetOptions::new().with_prefix())),
        ])
    }

    /// Shows a leader's health result at `key` ([`Election::health_key`], or a slot's).
    pub async fn put_health(
        &self,
        client: &mut Client,
        key: &str,
        lease: LeaseId,
        record: &HealthRecord,
    ) -> Result<(), EtcdError> {
        let opts = PutOptions::new().with_lease(lease.0);
        client.put(key, record.to_json(), Some(opts)).await?;
        Ok(())
    }

    /// The health result shown by the leader whose key is `leader_key`, if it shows one.
    pub async fn health(
        &self,
        client: &mut Client,
        leader_key: &str,
    ) -> Result<Option<HealthRecord>, EtcdError> {
        let resp = client.get(self.health_key(), None).await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| HealthRecord::from_json(kv.value()))
            .filter(|r| r.key == leader_key))
    }

    /// Puts our key if absent (it survives from an earlier attempt with the same lease) and returns
    /// our place in the queue, whether we lead already, and the store revision of this read (watches
    /// start after it). The same transaction reads the head of the queue after the put, so an
    /// uncontended campaign is one round trip, and "the first key is ours, with our lease and our
    /// create-revision" is its own verification.
    ///
    /// Replicas with `--slots N` > 1 must not share the election: when one of their keys is found
    /// we write nothing and say so ([`Joined::SlotsInUse`]). That look is a read of
    /// [`Election::slots_root`] first; when it is allowed, the same condition is also part of the
    /// transaction (a replica with slots joining at the same moment is seen, and a refused replica
    /// never writes, so it cannot make a rightful one refuse in turn). A role that may read only
    /// `PREFIX/NAME/` (as before slots) is refused that read: then the join is today's transaction,
    /// unchanged, and slot keys are not looked for. Either way the keys written are the singleton's.
    pub async fn join(
        &self,
        client: &mut Client,
        lease: LeaseId,
        id: &str,
    ) -> Result<Joined, EtcdError> {
        let may_look = match self.look_for_slots(client).await? {
            SlotsLook::InUse(n) => return Ok(Joined::SlotsInUse(n)),
            SlotsLook::Clear => true,
            SlotsLook::NotAllowed => false,
        };
        let key = format!("{}{lease}", self.dir);
        let join = self.join_txn(&key, lease, id, may_look);
        let mut answer = Answer::of(&client.txn(join.clone()).await?);
        if let Some(seen) = taken_from_us(&answer, lease) {
            // Our key's name, which no other lease may hold, put by another client: it never
            // goes with our lease. Remove it (unless changed since) and join afresh.
            tracing::warn!(%key, "our key in the queue was put by another client; removing it and joining again");
            client
                .txn(delete_if_unchanged(key.as_bytes(), seen))
                .await?;
            answer = Answer::of(&client.txn(join).await?);
        }
        self.joined(&answer, key, lease)
    }

    /// The look for replicas with slots before a join: one read of [`Election::slots_root`], alone
    /// in a transaction.
    async fn look_for_slots(&self, client: &mut Client) -> Result<SlotsLook, EtcdError> {
        let resp = client
            .txn(Txn::new().and_then([self.any_slots_key()]))
            .await
            .map_err(EtcdError::from);
        self.slots_look(resp.map(|r| Answer::of(&r)))
    }

    /// What the look for replicas with slots found. A permission error (a role from before
    /// slots), or credentials, is no reason not to join: the join tells which it was.
    fn slots_look(&self, answer: Result<Answer, EtcdError>) -> Result<SlotsLook, EtcdError> {
        match answer {
            Ok(a) => Ok(match self.slots_in(a.first(ANY_SLOTS_KEY)) {
                Some(n) => SlotsLook::InUse(n),
                None => SlotsLook::Clear,
            }),
            Err(e) if e.is_rejected() => Ok(SlotsLook::NotAllowed),
            Err(e) => Err(e),
        }
    }

    /// Put-if-absent in one transaction: our key under our lease if it is absent (and, when
    /// `may_look`, no key of replicas with slots exists); either way, read back our key, the head
    /// of the queue and (when `may_look`) one key under the slots root, in the order of [`JOIN_MINE`], [`JOIN_HEAD`], [`JOIN_SLOTS_KEY`].
    fn join_txn(&self, key: &str, lease: LeaseId, id: &str, may_look: bool) -> Txn {
        let head = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let mut reads = vec![TxnOp::get(self.dir.clone(), Some(head))];
        let mut conditions = vec![];
        if may_look {
            conditions.push(no_key_under(&self.slots_root()));
            reads.push(self.any_slots_key());
        }
        put_if_absent(key, id, lease, conditions, reads)
    }

    /// What a join's answer means for candidate `key` with `lease`.
    fn joined(&self, answer: &Answer, key: String, lease: LeaseId) -> Result<Joined, EtcdError> {
        if let Some(n) = self.slots_in(answer.first(JOIN_SLOTS_KEY)) {
            return Ok(Joined::SlotsInUse(n)); // nothing was put
        }
        // The condition held: our key was put now.
        let revision = if answer.succeeded {
            answer.revision.unwrap_or_default()
        } else {
            answer.first(JOIN_MINE).map_or(0, |kv| kv.create_revision)
        };
        if revision <= 0 {
            return Err(EtcdError::Unavailable(format!(
                "could not place {key} in the election"
            )));
        }
        let leads = answer.first(JOIN_HEAD).is_some_and(|h| {
            h.key == key.as_bytes() && h.lease == lease.0 && h.create_revision == revision
        });
        let at = answer.revision.unwrap_or(revision);
        let me = Candidacy {
            key,
            lease,
            revision,
            // The transaction's own revision: our put when it succeeded (then equal to `revision`).
            leads_since: if leads { at } else { 0 },
            slot: None,
        };
        Ok(Joined::Queued { me, leads, at })
    }

    /// The slot count of the key a [`Election::any_slots_key`] read found, if it found one (0 for
    /// a key that names no count: the layout is in use all the same).
    fn slots_in(&self, found: Option<&Found>) -> Option<u32> {
        found.map(|kv| self.slots_of_key(&kv.key).unwrap_or(0))
    }

    /// Returns once every candidate ahead of us is gone and our key is verified to still be ours,
    /// with the store revision at which that was read (our `leads_since`). Waits on `watch` for the
    /// one key just ahead to be deleted.
    ///
    /// Each wake-up costs one transaction (our key is ours, and who is just ahead, at one
    /// revision; with `markers`, also the tree marker of the key we waited on and every marker
    /// written before our key) and, sent with it, one look at the lease of the key we waited on; no
    /// new watch: the stream was set up when we joined. `markers`: we could write our own tree
    /// marker, so we may read the others' (a role without `PREFIX/NAME@tree/` may not).
    pub async fn wait_turn(
        &self,
        client: &mut Client,
        me: &Candidacy,
        watch: &mut impl WaitAhead,
        markers: bool,
    ) -> Result<i64, EtcdError> {
        let mut waited_on: Option<Vec<u8>> = None;
        loop {
            let (turn, trees, predecessor) = match waited_on.as_deref() {
                Some(key) => {
                    let (mut a, mut b) = (client.clone(), client.clone());
                    let tree_key = lease_of_key(&self.dir, key)
                        .filter(|_| markers)
                        .map(|l| self.tree_key(LeaseId(l)));
                    let (read, alive) = tokio::join!(
                        self.next_ahead(&mut a, me, tree_key),
                        self.lease_alive(&mut b, key)
                    );
                    tracing::trace!(
                        "read the queue, the tree markers and the lease of the candidate ahead"
                    );
                    let (turn, trees) = read?;
                    (turn, trees, alive?)
                }
                None => (
                    self.next_ahead(client, me, None).await?.0,
                    Trees::default(),
                    false,
                ),
            };
            match turn {
                Turn::First(at) => {
                    if let Some(key) = &waited_on {
                        self.wait_former_child(client, me, key, trees.ahead, predecessor)
                            .await?;
                        // Whoever was ahead of the key we waited on may have gone with it (a
                        // `del --prefix`, revokes back to back) while its child still dies.
                        for (named, tree) in trees.departed(&self.tree_dir(), me.lease) {
                            let rejoin = format!("{}{}", self.dir, LeaseId(named));
                            wait_tree_gone(client, me, tree, (rejoin.as_bytes(), named)).await?;
                        }
                    } else {
                        // First without having watched anyone go: the key ahead went between our
                        // join and this read, or it was an orphan just removed. As a join that
                        // leads at once: whoever left may still be killing its child.
                        self.wait_former_head(client, me, None, markers).await?;
                    }
                    return Ok(at);
                }
                Turn::Behind {
                    key,
                    at,
                    orphaned: None,
                } => {
                    tracing::debug!(waiting_on = %String::from_utf8_lossy(&key), "standby: watching the candidate ahead");
                    watch.wait_ahead_gone(key.clone(), at + 1).await?;
                    waited_on = Some(key);
                }
                Turn::Behind {
                    key,
                    orphaned: Some(seen),
                    ..
                } => {
                    // Its holder's lease outlived: nobody left to wait for. Else (the key went
                    // or changed while that lease lives) wait for it as after any key ahead.
                    let outlived = self.clear_orphan(client, me, &key, seen).await?;
                    waited_on = (!outlived).then_some(key);
                }
            }
        }
    }

    /// The key we waited on (`key`) is gone and nobody is ahead of us: whether its holder's
    /// child may still run, as its tree marker (`tree`) and its lease (`lease_lives`) say. Returns
    /// once it cannot.
    async fn wait_former_child(
        &self,
        client: &mut Client,
        me: &Candidacy,
        key: &[u8],
        tree: FormerTree,
        lease_lives: bool,
    ) -> Result<(), EtcdError> {
        match tree {
            FormerTree::Released => Ok(()),
            FormerTree::MayLive(tree_lease) => match lease_of_key(&self.dir, key) {
                Some(lease) => wait_tree_gone(client, me, tree_lease, (key, lease)).await,
                None => Ok(()), // not reached: only keys of the layout have markers
            },
            FormerTree::Unknown if lease_lives => self.wait_predecessor_gone(client, me, key).await,
            FormerTree::Unknown => Ok(()),
        }
    }

    /// The key just ahead, `key`, is orphaned (read at mod revision `seen`): once the lease its name
    /// says is gone ([`Election::orphan_outlived`]), delete it, only if nobody changed it since.
    /// `true` if that lease was outlived; `false` if the key went or changed first.
    async fn clear_orphan(
        &self,
        client: &mut Client,
        me: &Candidacy,
        key: &[u8],
        seen: i64,
    ) -> Result<bool, EtcdError> {
        let shown = String::from_utf8_lossy(key).into_owned();
        tracing::warn!(key = %shown, "the key ahead is not held by the lease its name says: removing it once that lease goes");
        let Some(lease) = lease_of_key(&self.dir, key) else {
            return Ok(false); // not a key of the layout: never removed (not reached: see `turn`)
        };
        if !self.orphan_outlived(client, me, key, seen, lease).await? {
            return Ok(false); // the queue changed: read it again
        }
        let resp = client.txn(delete_if_unchanged(key, seen)).await?;
        if resp.succeeded() {
            tracing::warn!(key = %shown, "removed the orphaned key ahead in the queue");
        }
        Ok(true)
    }

    /// Waits for the orphaned key just ahead (`key`, at mod revision `seen`) to be outlived by the
    /// lease its name says: `true` once that lease is gone (its holder, seeing its key changed,
    /// revoked it once its tree was dead, or it expired: a holder cut off from etcd stops its tree
    /// before that), `false` as soon as the key ahead of us is anything else (deleted, put again,
    /// or its holder joined again) so the queue is read again. No time bound: while that lease
    /// lives its holder may still run its child (one that never watches its key, as `etcdctl
    /// lock`, too), so the queue waits for it, and says so every [`ORPHAN_WARN_EVERY`]; our own
    /// key lost ends the wait with an error, as any read of the queue does.
    async fn orphan_outlived(
        &self,
        client: &mut Client,
        me: &Candidacy,
        key: &[u8],
        seen: i64,
        lease: i64,
    ) -> Result<bool, EtcdError> {
        let mut warned = tokio::time::Instant::now();
        // Quick at first (a holder of ours revokes within a fraction of a second), then no more
        // than twice a second for a holder that may live for hours.
        let mut pause = Schedule {
            min: ORPHAN_POLL,
            max: ORPHAN_POLL_MAX,
            reset: Reset::OnSuccess,
        }
        .start();
        loop {
            if !lease_lives(client, lease).await? {
                return Ok(true);
            }
            match self.next_ahead(client, me, None).await?.0 {
                Turn::Behind {
                    key: ahead,
                    orphaned: Some(at),
                    ..
                } if ahead == key && at == seen => {}
                _ => return Ok(false),
            }
            if warned.elapsed() >= ORPHAN_WARN_EVERY {
                warned = tokio::time::Instant::now();
                tracing::warn!(key = %String::from_utf8_lossy(key), lease = %LeaseId(lease),
                    "waiting behind an orphaned key until its former holder's lease goes (stop that holder)");
            }
            tokio::time::sleep(pause.next_pause()).await;
        }
    }

    /// One transaction: if our key still exists with our lease and our create-revision, the key
    /// just ahead of us in the queue (none: we are first), at the transaction's revision; and, when
    /// `tree_key` is given, what the tree marker there says and every marker written before our
    /// key (the candidacies that joined before us).
    async fn next_ahead(
        &self,
        client: &mut Client,
        me: &Candidacy,
        tree_key: Option<String>,
    ) -> Result<(Turn, Trees), EtcdError> {
        let asked = tree_key.is_some();
        let resp = client.txn(self.next_ahead_txn(me, tree_key)).await?;
        let answer = Answer::of(&resp);
        let trees = match asked {
            true => Trees {
                ahead: former_tree(answer.first(NEXT_TREE)),
                earlier: answer.read(NEXT_TREES).to_vec(),
            },
            false => Trees::default(),
        };
        Ok((turn(me, &answer)?, trees))
    }

    /// If our key is still ours, the one key just ahead of it ([`NEXT_AHEAD`]) and, if `tree_key`
    /// is given, the tree marker there ([`NEXT_TREE`]) and the markers created before our key
    /// ([`NEXT_TREES`]).
    fn next_ahead_txn(&self, me: &Candidacy, tree_key: Option<String>) -> Txn {
        let mut reads = vec![TxnOp::get(self.dir.clone(), Some(just_ahead_of(me)))];
        if let Some(k) = tree_key {
            let earlier = GetOptions::new()
                .with_prefix()
                .with_max_create_revision(me.revision - 1);
            reads.push(TxnOp::get(k, None));
            reads.push(TxnOp::get(self.tree_dir(), Some(earlier)));
        }
        Txn::new().when(still_ours(me)).and_then(reads)
    }

    /// We lead as soon as we join (or join again): nobody is ahead. First, every candidacy that
    /// left the election while its tree marker says its child may run is waited for
    /// ([`Election::wait_departed_trees`]): a leader whose key an operator deleted or whose lease
    /// was revoked just now is still killing its child. For keys without a marker: the leader before us may
    /// have lost its key a moment ago (an operator's `etcdctl del --prefix`, and we were waiting
    /// behind it) while it still runs its child: it kills the child and revokes its lease when it
    /// sees the deletion, which a leader briefly cut off from etcd sees late. So look at the queue
    /// as it was at `former_at` (just before our previous key was deleted, or the last revision it
    /// was known to exist at), else just before our key was created: if another key headed it and
    /// its lease lives,
    /// wait for that lease to go, as after waiting on a key ([`PREDECESSOR_WAIT`] at most). One
    /// read of history, only when leading at join; a compacted history means the deletion is old.
    pub async fn wait_former_head(
        &self,
        client: &mut Client,
        me: &Candidacy,
        former_at: Option<i64>,
        markers: bool,
    ) -> Result<(), EtcdError> {
        // Ours show it by their tree markers, whenever their keys went.
        if markers {
            let dir = self.dir.clone();
            let present = |keys: &[Found]| candidacy_leases(&dir, keys);
            let rejoin = |lease: LeaseId| format!("{}{lease}", self.dir);
            self.wait_departed_trees(client, me, present, &self.dir, rejoin)
                .await?;
            if let Some(at) = former_at {
                self.wait_trees_as_of(client, me, at).await?;
            }
        }
        let before = GetOptions::new()
            .with_prefix()
            .with_revision(former_at.unwrap_or(me.revision - 1).max(1))
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_keys_only()
            .with_limit(1);
        let resp = match client.get(self.dir.clone(), Some(before)).await {
            Ok(r) => r,
            // Compacted (the deletion is old), or a revision a store restored from a snapshot
            // has not reached: nothing to look at.
            Err(e) if crate::election::connector::history_gone(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let Some(head) = resp.kvs().first().map(|kv| kv.key().to_vec()) else {
            return Ok(()); // the election was empty: nobody led before us
        };
        if head == me.key.as_bytes() || !self.lease_alive(client, &head).await? {
            return Ok(());
        }
        self.wait_predecessor_gone(client, me, &head).await
    }

    /// Our key was deleted (`del --prefix PREFIX/NAME` takes the tree markers with the keys): the
    /// markers as they were at revision `at`, just before, name the tree leases that still live
    /// while their children may run. Waits for each (one that joined again, or is still in the
    /// queue, is found at once by its key). A compacted history means the deletion is old.
    async fn wait_trees_as_of(
        &self,
        client: &mut Client,
        me: &Candidacy,
        at: i64,
    ) -> Result<(), EtcdError> {
        let opts = GetOptions::new().with_prefix().with_revision(at.max(1));
        let old: Vec<Found> = match client.get(self.tree_dir(), Some(opts)).await {
            Ok(resp) => resp.kvs().iter().map(Found::of).collect(),
            Err(e) if crate::election::connector::history_gone(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for (named, tree) in departed_trees(&self.tree_dir(), &old, &[], me.lease) {
            let rejoin = format!("{}{}", self.dir, LeaseId(named));
            wait_tree_gone(client, me, tree, (rejoin.as_bytes(), named)).await?;
        }
        Ok(())
    }

    /// Whether the lease of candidate key `key` (read from its name) still lives.
    async fn lease_alive(&self, client: &mut Client, key: &[u8]) -> Result<bool, EtcdError> {
        let Some(lease) = lease_of_key(&self.dir, key) else {
            return Ok(false); // not a key of this layout: nothing to wait for
        };
        lease_lives(client, lease).await
    }

    /// The leader's key can vanish while its lease lives (an operator's `etcdctl del`): a leader of
    /// ours then SIGKILLs its tree and revokes the lease once the tree is gone, within milliseconds.
    /// Until then its child may still run, so wait until that lease is gone (in a normal handoff it
    /// already is: one request), or its holder is back in the queue (then it is not leading), at
    /// most [`PREDECESSOR_WAIT`]. The bound is for etcd's own clients: `etcdctl elect` and Go's
    /// `Election.Resign` delete their key and keep their session's lease, which they stopped
    /// leading under; waiting for it would cost their session TTL (60 s for etcdctl). A leader of
    /// ours that is cut off from etcd when an operator deletes its key cannot see the deletion:
    /// its child runs until its own fail-closed deadline, and the fencing revision is the defence.
    async fn wait_predecessor_gone(
        &self,
        client: &mut Client,
        me: &Candidacy,
        key: &[u8],
    ) -> Result<(), EtcdError> {
        let Some(lease) = lease_of_key(&self.dir, key) else {
            return Ok(()); // not a key of this layout: nothing to wait for
        };
        let start = tokio::time::Instant::now();
        loop {
            if !lease_lives(client, lease).await? {
                return Ok(());
            }
            if start.elapsed() > PREDECESSOR_WAIT {
                tracing::info!(lease = %LeaseId(lease), "the leader key ahead was deleted and its lease still lives (etcdctl elect, or a cut-off leader): going ahead");
                return Ok(());
            }
            let back = client.get(key.to_vec(), None).await?;
            if back
                .kvs()
                .iter()
                .any(|kv| kv.lease() == lease && kv.create_revision() > me.revision)
            {
                return Ok(()); // its holder joined again, behind us
            }
            tracing::debug!(lease = %LeaseId(lease), "the leader key ahead was deleted while its lease lives; waiting for it");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
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
            .map(Found::of)
            .filter(|kv| me.is_ours(kv))
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

    /// Every candidate, in queue order (the leader first).
    pub async fn queue(&self, client: &mut Client) -> Result<Queue, EtcdError> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let resp = client.get(self.dir.clone(), Some(opts)).await?;
        let candidates = resp
            .kvs()
            .iter()
            .map(|kv| Candidate {
                id: String::from_utf8_lossy(kv.value()).into_owned(),
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                lease: LeaseId(kv.lease()),
                revision: kv.create_revision(),
            })
            .collect();
        Ok(Queue {
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
            candidates,
            health: None,
        })
    }

    /// Returns at the first change of any key in the election after revision `from - 1`; an error
    /// if the watch broke.
    pub async fn wait_any_change(&self, client: &mut Client, from: i64) -> Result<(), EtcdError> {
        wait_any_change_under(client, self.dir.clone(), from).await
    }

    /// The same for the keys under [`Election::slots_root`].
    pub async fn wait_any_slots_change(
        &self,
        client: &mut Client,
        from: i64,
    ) -> Result<(), EtcdError> {
        wait_any_change_under(client, self.slots_root(), from).await
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
            lease: LeaseId(kv.lease()),
            revision: kv.create_revision(),
            candidates: resp.count(),
        }))
    }
}

/// How long a new leader waits for the lease of a deleted leader key to go (see
/// `Election::wait_predecessor_gone`).
pub const PREDECESSOR_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// When a join found our key (a put earlier with our lease) no longer held by our lease: its mod
/// revision.
fn taken_from_us(answer: &Answer, lease: LeaseId) -> Option<i64> {
    let mine = answer.first(JOIN_MINE).filter(|_| !answer.succeeded)?;
    (mine.lease != lease.0).then_some(mine.mod_revision)
}

/// How often a standby looks whether the lease of an orphaned key ahead is gone.
const ORPHAN_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// The longest pause between two looks at an orphaned key's lease.
const ORPHAN_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(500);
/// How often a standby blocked behind an orphaned key whose lease lives says so.
const ORPHAN_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Deletes `key` if its mod revision is still `seen`: a key changed since (put again with its own
/// lease, say) is not the one judged orphaned.
pub fn delete_if_unchanged(key: &[u8], seen: i64) -> Txn {
    Txn::new()
        .when([Compare::mod_revision(key.to_vec(), CompareOp::Equal, seen)])
        .and_then([TxnOp::delete(key.to_vec(), None)])
}

/// The candidacy leases that still have a key among `keys` (read under `dir`): the lease each key
/// is attached to, and the one its name says.
pub fn candidacy_leases(dir: &str, keys: &[Found]) -> Vec<i64> {
    keys.iter()
        .flat_map(|k| [Some(k.lease), lease_of_key(dir, &k.key)])
        .flatten()
        .filter(|&l| l > 0)
        .collect()
}

/// The lease id in a candidate key of `dir` (`dir` + lease in hex), if the key has that layout.
fn lease_of_key(dir: &str, key: &[u8]) -> Option<i64> {
    let name = std::str::from_utf8(key).ok()?.strip_prefix(dir)?;
    // Exactly as etcd's layout writes it (lower-case hex, no sign, no leading zero).
    i64::from_str_radix(name, 16)
        .ok()
        .filter(|&l| l > 0 && format!("{l:x}") == name)
}

/// The election's directory of candidate `key` (`PREFIX/NAME/`): all of it but its last segment.
fn dir_of(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

/// Put-if-absent in one transaction, as etcd's `Campaign` does: if `key` does not exist and the
/// other `conditions` hold, put it (value `id`) under `lease`. Either branch then makes `reads`,
/// after the put of `key` (`then`) or a read of it (`else`), so that each read answers at the
/// same position whichever branch ran: the key's own at 0, `reads[i]` at `i + 1`.
pub fn put_if_absent(
    key: &str,
    id: &str,
    lease: LeaseId,
    conditions: Vec<Compare>,
    reads: Vec<TxnOp>,
) -> Txn {
    let mut when = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
    when.extend(conditions);
    let put = TxnOp::put(key, id, Some(PutOptions::new().with_lease(lease.0)));
    let branch = |mine: TxnOp| [vec![mine], reads.clone()].concat();
    Txn::new()
        .when(when)
        .and_then(branch(put))
        .or_else(branch(TxnOp::get(key, None)))
}

/// A transaction condition that holds when no key starts with `prefix` (etcd compares an empty
/// range as one absent key: create-revision 0).
pub fn no_key_under(prefix: &str) -> Compare {
    Compare::create_revision(prefix, CompareOp::Equal, 0).with_range(range_end(prefix.as_bytes()))
}

/// A transaction condition: `me`'s key still exists with its lease and its create-revision.
pub fn still_ours(me: &Candidacy) -> [Compare; 2] {
    [
        Compare::create_revision(me.key.clone(), CompareOp::Equal, me.revision),
        Compare::lease(me.key.clone(), CompareOp::Equal, me.lease.0),
    ]
}

/// A read, under a queue's prefix, of the one key just ahead of `me` (the largest create-revision
/// below its own), keys only.
pub fn just_ahead_of(me: &Candidacy) -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_max_create_revision(me.revision - 1)
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_keys_only()
        .with_limit(1)
}

/// The end of the range of every key that starts with `prefix` (etcd's prefix convention).
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// Whether etcd's answer to `LeaseTimeToLive` (the remaining TTL, `ttl`) says the lease lives.
/// etcd truncates the remaining time to whole seconds, so `0` means less than a second left, not
/// gone: a lease is gone only when etcd no longer knows it (`-1`). Taking `0` for gone would let a
/// standby start up to a second before the lease expires, when a cut-off holder's child may still
/// be in its last second before its SIGKILL.
pub fn ttl_lives(ttl: i64) -> bool {
    ttl >= 0
}

/// Whether `lease` still lives, as etcd says now.
pub async fn lease_lives(client: &mut Client, lease: i64) -> Result<bool, EtcdError> {
    match client.lease_time_to_live(lease, None).await {
        Ok(r) => Ok(ttl_lives(r.ttl())),
        Err(e) => match EtcdError::from(e) {
            EtcdError::LeaseGone(_) => Ok(false),
            e => Err(e),
        },
    }
}

/// How often a candidate looks whether a departed holder's tree lease is gone: quick at first (its
/// holder revokes it within milliseconds of its child's death), then no more than every 100 ms
/// (it expires within the TTL if its holder is cut off).
const TREE_POLL: Schedule = Schedule {
    min: std::time::Duration::from_millis(2),
    max: std::time::Duration::from_millis(100),
    reset: Reset::OnSuccess,
};

/// Waits until the child of a candidacy whose key went can no longer run: its tree lease
/// `tree_lease` is gone (its holder revoked it after the tree was gone, or it expired, which its
/// holder's fail-closed deadline precedes), or the candidacy joined again (`rejoin`: the key it
/// puts then, and its lease), which only a candidate that does not lead does (a leader gives its
/// leases up once its key is lost, and takes new ones). No time bound is needed: etcd expires the
/// tree lease within its TTL unless its holder renews it, and a holder renews it only while it
/// runs. Every look also checks that our own key (`me`) is still ours: if it went meanwhile, the
/// wait ends with an error (we join again), never with a child started under a lost key, and two
/// waiters whose keys went together cannot wait on each other for ever.
pub async fn wait_tree_gone(
    client: &mut Client,
    me: &Candidacy,
    tree_lease: i64,
    (rejoin_key, lease): (&[u8], i64),
) -> Result<(), EtcdError> {
    let started = tokio::time::Instant::now();
    let mut pause = TREE_POLL.start();
    let mut waited = false;
    let look = Txn::new()
        .when(still_ours(me))
        .and_then([TxnOp::get(rejoin_key.to_vec(), None)]);
    loop {
        let (mut a, mut b) = (client.clone(), client.clone());
        let (lives, back) = tokio::join!(lease_lives(&mut a, tree_lease), b.txn(look.clone()));
        let back = Answer::of(&back?);
        if !back.succeeded {
            return Err(key_vanished(&me.key, "waiting for a former holder's child"));
        }
        let rejoined = back.read(0).iter().any(|kv| kv.lease == lease);
        if !lives? || rejoined {
            if waited {
                tracing::info!(tree_lease = %LeaseId(tree_lease), waited = %Short(started.elapsed()),
                    rejoined, "the former holder's child cannot run any more: going ahead");
            }
            return Ok(());
        }
        if !waited {
            tracing::info!(tree_lease = %LeaseId(tree_lease), "a candidacy ahead went while its child may still run (revoked or deleted by another client): waiting for its end");
        }
        tokio::time::sleep(pause.next_pause()).await;
        waited = true;
    }
}

/// Watches the keys under `prefix` from revision `from` until any event.
async fn wait_any_change_under(
    client: &mut Client,
    prefix: String,
    from: i64,
) -> Result<(), EtcdError> {
    let opts = WatchOptions::new().with_prefix().with_start_revision(from);
    watch_until(client, prefix.into_bytes(), opts, |_| true).await
}

/// Watches `key` from revision `from` until a DELETE event; an error if the stream ends or fails.
async fn wait_deleted(client: &mut Client, key: Vec<u8>, from: i64) -> Result<(), EtcdError> {
    let opts = WatchOptions::new().with_start_revision(from);
    watch_until(client, key, opts, |e| e.event_type() == EventType::Delete).await
}

/// Watches until an event satisfies `wanted`; an error if the stream ends, fails or is canceled.
async fn watch_until(
    client: &mut Client,
    key: Vec<u8>,
    opts: WatchOptions,
    wanted: impl Fn(&etcd_client::Event) -> bool,
) -> Result<(), EtcdError> {
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
        if resp.events().iter().any(&wanted) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(key: &str, lease: i64, create_revision: i64) -> Found {
        Found {
            key: key.as_bytes().to_vec(),
            lease,
            create_revision,
            ..Found::default()
        }
    }

    fn queued(revision: i64, leads_since: i64, at: i64) -> Joined {
        let me = Candidacy {
            key: "/p/app/ab".into(),
            lease: LeaseId(0xab),
            revision,
            leads_since,
            slot: None,
        };
        Joined::Queued {
            leads: leads_since > 0,
            me,
            at,
        }
    }

    #[test]
    fn the_join_transaction_reads_what_its_answer_names() {
        let e = Election::new("/p", "app");
        let key = "/p/app/ab";
        for may_look in [true, false] {
            let (then, otherwise) =
                crate::election::answer::ops_of(&e.join_txn(key, LeaseId(0xab), "a", may_look));
            assert_eq!(then[JOIN_MINE], ("RequestPut".into(), key.into()));
            assert_eq!(otherwise[JOIN_MINE], ("RequestRange".into(), key.into()));
            for ops in [&then, &otherwise] {
                assert_eq!(ops[JOIN_HEAD].1, e.dir());
                let slots = ops.get(JOIN_SLOTS_KEY).map(|op| op.1.as_str());
                assert_eq!(slots, may_look.then(|| e.slots_root()).as_deref());
            }
        }
    }

    #[test]
    fn what_a_join_answer_means() {
        let e = Election::new("/p", "app");
        let me = |rev| Some(found("/p/app/ab", 0xab, rev));
        let other = Some(found("/p/app/cd", 0xcd, 3));
        let answer = |put, revision, mine: Option<Found>, head: Option<Found>, slots_key| {
            let reads = [
                (JOIN_MINE, mine),
                (JOIN_HEAD, head),
                (JOIN_SLOTS_KEY, slots_key),
            ];
            Answer::with(
                put,
                revision,
                reads.map(|(op, f)| (op, f.into_iter().collect())),
            )
        };
        let rows: [(Answer, Result<Joined, ()>); 9] = [
            // Put now and first: we lead since the put.
            (
                answer(true, Some(10), None, me(10), None),
                Ok(queued(10, 10, 10)),
            ),
            // Put now, behind another.
            (
                answer(true, Some(10), None, other.clone(), None),
                Ok(queued(10, 0, 10)),
            ),
            // Our key survived an earlier attempt: its create-revision is our place.
            (
                answer(false, Some(12), me(6), me(6), None),
                Ok(queued(6, 12, 12)),
            ),
            (
                answer(false, Some(12), me(6), other.clone(), None),
                Ok(queued(6, 0, 12)),
            ),
            // A head with our key but another create-revision is not us.
            (
                answer(false, Some(12), me(6), me(5), None),
                Ok(queued(6, 0, 12)),
            ),
            // No header: the revision of our key stands in for the answer's.
            (answer(false, None, me(6), me(6), None), Ok(queued(6, 6, 6))),
            // Neither put nor found, or put without a revision: not placed.
            (answer(false, Some(12), None, other.clone(), None), Err(())),
            (answer(true, None, None, me(0), None), Err(())),
            // Replicas with slots use the election: nothing was put.
            (
                answer(
                    false,
                    Some(12),
                    None,
                    None,
                    Some(found("/p/app@slots/3/queue/ff", 0xff, 4)),
                ),
                Ok(Joined::SlotsInUse(3)),
            ),
        ];
        for (i, (a, want)) in rows.into_iter().enumerate() {
            let got = e.joined(&a, "/p/app/ab".into(), LeaseId(0xab));
            assert_eq!(got.map_err(|_| ()), want, "row {i}: {a:?}");
        }
        let junk = answer(
            false,
            Some(2),
            None,
            None,
            Some(found("/p/app@slots/x", 1, 1)),
        );
        assert_eq!(
            e.joined(&junk, "/p/app/ab".into(), LeaseId(0xab)),
            Ok(Joined::SlotsInUse(0))
        );
    }

    #[test]
    fn a_join_that_finds_our_key_off_our_lease_removes_it_first() {
        let mine = |lease| {
            let kv = Found {
                mod_revision: 9,
                ..found("/p/app/ab", lease, 6)
            };
            vec![(JOIN_MINE, vec![kv])]
        };
        // (answer) -> mod revision of our key to remove first
        let rows = [
            (Answer::with(true, Some(10), []), None),
            (Answer::with(false, Some(12), mine(0xab)), None),
            (Answer::with(false, Some(12), mine(0)), Some(9)),
            (Answer::with(false, Some(12), mine(0xcd)), Some(9)),
            (Answer::with(false, Some(12), []), None),
        ];
        for (a, want) in rows {
            assert_eq!(taken_from_us(&a, LeaseId(0xab)), want, "{a:?}");
        }
    }

    #[test]
    fn what_the_look_for_replicas_with_slots_finds() {
        let e = Election::new("/p", "app");
        let with = |key: &str| Answer {
            succeeded: true,
            revision: Some(5),
            reads: vec![vec![found(key, 1, 2)]],
        };
        let rows = [
            (Ok(Answer::default()), Ok(SlotsLook::Clear)),
            (Ok(with("/p/app@slots/4/slot/0")), Ok(SlotsLook::InUse(4))),
            (Ok(with("/p/app@slots/junk")), Ok(SlotsLook::InUse(0))),
            // A role from before slots may not look: join without looking.
            (
                Err(EtcdError::Rejected("permission denied".into())),
                Ok(SlotsLook::NotAllowed),
            ),
            (
                Err(EtcdError::Unavailable("down".into())),
                Err(EtcdError::Unavailable("down".into())),
            ),
        ];
        for (answer, want) in rows {
            assert_eq!(e.slots_look(answer.clone()), want, "{answer:?}");
        }
    }

    #[test]
    fn where_a_candidate_stands_after_reading_the_key_ahead() {
        let me = Candidacy {
            key: "/p/app/ab".into(),
            lease: LeaseId(0xab),
            revision: 7,
            leads_since: 0,
            slot: None,
        };
        // The key ahead as read: held by `lease` (0: none), last modified at revision 4.
        let with = |ours, revision, ahead: Option<&str>, lease| {
            let ahead = ahead.map(|k| Found {
                mod_revision: 4,
                ..found(k, lease, 3)
            });
            Answer::with(ours, revision, [(NEXT_AHEAD, ahead.into_iter().collect())])
        };
        let answer = |ours, revision, ahead| with(ours, revision, ahead, 0xcd);
        let behind = |key: &str, at, orphaned| {
            Ok(Turn::Behind {
                key: key.as_bytes().to_vec(),
                at,
                orphaned,
            })
        };
        let rows = [
            (answer(true, Some(15), None), Ok(Turn::First(15))),
            (answer(true, None, None), Ok(Turn::First(7))),
            (
                answer(true, Some(15), Some("/p/app/cd")),
                behind("/p/app/cd", 15, None),
            ),
            // Taken off its lease (`etcdctl put`): orphaned, as last modified.
            (
                with(true, Some(15), Some("/p/app/cd"), 0),
                behind("/p/app/cd", 15, Some(4)),
            ),
            // Held by another live lease: waited for as any key ahead, never removed.
            (
                with(true, Some(15), Some("/p/app/cd"), 0xef),
                behind("/p/app/cd", 15, None),
            ),
            // Not a key of the layout (nested, or a name that is no lease): never removed.
            (
                with(true, Some(15), Some("/p/app/x/cd"), 0),
                behind("/p/app/x/cd", 15, None),
            ),
            (
                with(true, Some(15), Some("/p/app/hold"), 0),
                behind("/p/app/hold", 15, None),
            ),
            // Our key is gone or replaced: never "first".
            (answer(false, Some(15), None), Err(())),
            (answer(false, Some(15), Some("/p/app/cd")), Err(())),
        ];
        for (a, want) in rows {
            assert_eq!(turn(&me, &a).map_err(|_| ()), want, "{a:?}");
        }
        let e = Election::new("/p", "app");
        let (then, _) = crate::election::answer::ops_of(&e.next_ahead_txn(&me, None));
        assert_eq!(then[NEXT_AHEAD].1, "/p/app/");
        assert_eq!(then.len(), 1);
        let tree = e.tree_key(LeaseId(0xab));
        let (then, _) = crate::election::answer::ops_of(&e.next_ahead_txn(&me, Some(tree)));
        assert_eq!(then[NEXT_AHEAD].1, "/p/app/");
        assert_eq!(
            then[NEXT_TREE],
            ("RequestRange".into(), "/p/app@tree/ab".into())
        );
        assert_eq!(
            then[NEXT_TREES],
            ("RequestRange".into(), "/p/app@tree/".into())
        );
        let text = format!(
            "{:?}",
            e.next_ahead_txn(&me, Some(e.tree_key(LeaseId(0xab))))
        );
        assert!(
            text.contains(&format!("max_create_revision: {}", me.revision - 1)),
            "{text}"
        );
    }

    #[test]
    fn what_a_tree_marker_says_of_the_child_of_a_key_that_went() {
        let marker = |value: &str, lease: i64| Found {
            key: b"/p/app@tree/ab".to_vec(),
            value: value.as_bytes().to_vec(),
            lease,
            create_revision: 3,
            mod_revision: 3,
        };
        let rows = [
            (None, FormerTree::Unknown),
            (Some(marker(TREE_RELEASED, 0xcd)), FormerTree::Released),
            // Released stays released when its lease is gone or was never there.
            (Some(marker(TREE_RELEASED, 0)), FormerTree::Released),
            (Some(marker(TREE_LIVE, 0xcd)), FormerTree::MayLive(0xcd)),
            // Any other value on a lease: the child may still run (only "released" says not).
            (Some(marker("released ", 0xcd)), FormerTree::MayLive(0xcd)),
            (Some(marker("", 0xcd)), FormerTree::MayLive(0xcd)),
            // Put by another client, off every lease: nothing to wait on.
            (Some(marker(TREE_LIVE, 0)), FormerTree::Unknown),
        ];
        for (m, want) in rows {
            assert_eq!(former_tree(m.as_ref()), want, "{m:?}");
        }
    }

    #[test]
    fn whose_trees_a_candidate_first_in_line_waits_for() {
        let dir = "/p/app@tree/";
        let marker = |name: &str, value: &str, lease: i64| Found {
            key: format!("{dir}{name}").into_bytes(),
            value: value.as_bytes().to_vec(),
            lease,
            create_revision: 3,
            mod_revision: 3,
        };
        let mine = LeaseId(0x1);
        // (markers, candidacy leases with a key) -> tree leases to wait for
        let rows: [(Vec<Found>, Vec<i64>, Vec<i64>); 7] = [
            (vec![], vec![], vec![]),
            // Ours is never waited for.
            (vec![marker("1", TREE_LIVE, 0x11)], vec![], vec![]),
            // A candidate still in the election (a standby behind us) is not departed.
            (vec![marker("2", TREE_LIVE, 0x12)], vec![0x2], vec![]),
            // Its key gone, its tree lease alive: wait for it.
            (vec![marker("2", TREE_LIVE, 0x12)], vec![], vec![0x12]),
            // Released, or off every lease: nothing to wait for.
            (vec![marker("2", TREE_RELEASED, 0x12)], vec![], vec![]),
            (vec![marker("2", TREE_LIVE, 0)], vec![], vec![]),
            // Names not written as the layout writes them are not markers of ours.
            (
                vec![
                    marker("02", TREE_LIVE, 0x12),
                    marker("x", TREE_LIVE, 0x13),
                    marker("3", TREE_LIVE, 0x14),
                ],
                vec![0x2],
                vec![0x14],
            ),
        ];
        for (markers, present, want) in rows {
            let got: Vec<i64> = departed_trees(dir, &markers, &present, mine)
                .into_iter()
                .map(|(_, tree)| tree)
                .collect();
            assert_eq!(got, want, "{markers:?} {present:?}");
        }
    }

    #[test]
    fn the_candidacy_leases_still_in_the_election() {
        let key = |k: &str, lease: i64| Found {
            key: k.as_bytes().to_vec(),
            lease,
            ..Found::default()
        };
        let keys = [
            key("/p/app/ab", 0xab),
            key("/p/app/cd", 0),
            key("/p/app/zz", 0x5),
        ];
        let mut got = candidacy_leases("/p/app/", &keys);
        got.sort_unstable();
        assert_eq!(got, [0x5, 0xab, 0xab, 0xcd]);
    }

    #[test]
    fn a_release_deletes_the_key_and_marks_the_tree_only_while_the_key_is_ours() {
        let e = Election::new("/p", "app");
        let me = Candidacy {
            key: "/p/app/ab".into(),
            lease: LeaseId(0xab),
            revision: 7,
            leads_since: 7,
            slot: None,
        };
        let txn = e.release_txn(&me, LeaseId(0xcd));
        let (then, otherwise) = crate::election::answer::ops_of(&txn);
        assert_eq!(
            then,
            [
                ("RequestDeleteRange".into(), "/p/app/ab".into()),
                ("RequestPut".into(), "/p/app@tree/ab".into())
            ]
        );
        assert!(otherwise.is_empty());
        let text = format!("{txn:?}");
        assert!(
            text.contains("CreateRevision(7)") && text.contains("Lease(171)"),
            "{text}"
        );
        assert!(
            text.contains("lease: 205"),
            "the marker stays on the tree lease: {text}"
        );
        assert_eq!(e.tree_dir(), "/p/app@tree/");
        assert_eq!(e.tree_key(LeaseId(0xab)), "/p/app@tree/ab");
    }

    #[test]
    fn an_orphaned_key_is_deleted_only_as_it_was_read() {
        let txn = delete_if_unchanged(b"/p/app/cd", 4);
        let (then, otherwise) = crate::election::answer::ops_of(&txn);
        assert_eq!(then, [("RequestDeleteRange".into(), "/p/app/cd".into())]);
        assert!(otherwise.is_empty());
        let text = format!("{txn:?}");
        assert!(
            text.contains("target: Mod") && text.contains("ModRevision(4)"),
            "{text}"
        );
    }

    #[test]
    fn lease_ids_are_read_from_candidate_keys() {
        let dir = "/singleton-exec/app/";
        assert_eq!(
            lease_of_key(dir, b"/singleton-exec/app/694d77aa9e4f2a1b"),
            Some(0x694d77aa9e4f2a1b)
        );
        assert_eq!(lease_of_key(dir, b"/singleton-exec/app/ff"), Some(255));
        // Not this election, not hex, nested: no lease.
        assert_eq!(lease_of_key(dir, b"/singleton-exec/other/ff"), None);
        assert_eq!(lease_of_key(dir, b"/singleton-exec/app/zz"), None);
        assert_eq!(lease_of_key(dir, b"/singleton-exec/app/a/ff"), None);
        // Only as etcd's layout writes a lease: no sign, no upper case, no leading zero.
        assert_eq!(lease_of_key(dir, b"/singleton-exec/app/+ff"), None);
        assert_eq!(lease_of_key(dir, b"/singleton-exec/app/FF"), None);
        assert_eq!(lease_of_key(dir, b"/singleton-exec/app/0ff"), None);
    }

    #[test]
    fn whether_a_queue_key_is_held_by_the_lease_its_name_says() {
        // (key, lease read) -> holding
        let rows: [(&[u8], i64, Holding); 7] = [
            (b"/p/app/694d77aa9e4f2a1b", 0x694d77aa9e4f2a1b, Holding::Own),
            // `etcdctl put` without --lease: detached from its lease, for ever.
            (b"/p/app/694d77aa9e4f2a1b", 0, Holding::NoLease),
            (b"/p/app/694d77aa9e4f2a1b", 0xcd, Holding::OtherLease),
            // A name that says no lease: any lease deletes it in time; none never does.
            (b"/p/app/not-a-lease", 0xcd, Holding::Own),
            (b"/p/app/not-a-lease", 0, Holding::NoLease),
            (b"/p/app/0", 0xcd, Holding::Own),
            (b"\xff/p/app/ff", 0xff, Holding::Own),
        ];
        for (key, lease, want) in rows {
            let shown = String::from_utf8_lossy(key);
            assert_eq!(holding(key, lease), want, "{shown} {lease:x}");
        }
        assert_eq!(Holding::Own.orphaned(), None);
        assert_eq!(Holding::NoLease.orphaned(), Some("no lease"));
        assert_eq!(
            Holding::OtherLease.orphaned(),
            Some("held by another lease")
        );
    }

    #[test]
    fn another_replica_with_our_id_is_one_with_another_lease() {
        let c = |id: &str, lease: i64| Candidate {
            id: id.into(),
            key: format!("/p/e/{lease:x}"),
            lease: LeaseId(lease),
            revision: lease,
        };
        let all = [
            c("a", 1),
            c("b", 2),
            c("a", 3),
            c("a", 0),
            c("", 4),
            c("A", 5),
        ];
        let keys = |found: Vec<&Candidate>| found.iter().map(|c| c.lease.0).collect::<Vec<_>>();
        assert_eq!(keys(same_id(&all, "a", LeaseId(1))), [3]);
        assert_eq!(keys(same_id(&all, "a", LeaseId(3))), [1]);
        assert_eq!(keys(same_id(&all, "b", LeaseId(2))), Vec::<i64>::new());
        assert_eq!(keys(same_id(&all, "c", LeaseId(9))), Vec::<i64>::new());
        // Under one lease twice (a slot key and a queue key): still only us.
        let twice = [c("a", 1), c("a", 1)];
        assert!(same_id(&twice, "a", LeaseId(1)).is_empty());
    }

    #[test]
    fn a_health_record_round_trips_and_garbage_is_none() {
        let r = HealthRecord {
            id: "a".into(),
            key: "/p/e/1".into(),
            revision: 4,
            check: Some(CheckRecord {
                healthy: false,
                consecutive_failures: 2,
                retries: 3,
                last: "exited with status 1: \"quoted\"".into(),
            }),
            ready: false,
            ready_after_ms: None,
            child_status: Some("loading 3/7".into()),
        };
        assert_eq!(
            HealthRecord::from_json(r.to_json().as_bytes()),
            Some(r.clone())
        );
        assert!(
            r.to_json().contains("\"fencing_revision\":4"),
            "{}",
            r.to_json()
        );
        // Without a check: none of its fields; with READY=1.
        let notified = HealthRecord {
            check: None,
            ready: true,
            ready_after_ms: Some(1_250),
            child_status: None,
            ..r.clone()
        };
        assert!(
            !notified.to_json().contains("healthy"),
            "{}",
            notified.to_json()
        );
        assert_eq!(
            HealthRecord::from_json(notified.to_json().as_bytes()),
            Some(notified)
        );
        // As 0.1 wrote it (`revision`, a check and nothing else): a ready child, no status.
        let old = r#"{"id":"a","key":"/p/e/1","revision":4,"healthy":true,"consecutive_failures":0,"retries":3,"last":"healthy"}"#;
        let read = HealthRecord::from_json(old.as_bytes()).expect("an old record");
        assert_eq!(
            (read.ready, read.ready_after_ms, read.child_status),
            (true, None, None)
        );
        assert_eq!(read.check.map(|c| c.healthy), Some(true));
        assert_eq!(HealthRecord::from_json(b"not json"), None);
        assert_eq!(HealthRecord::from_json(b"{\"id\":1}"), None);
        // A check half written, or a field of the wrong kind: no record.
        let half = r#"{"id":"a","key":"k","fencing_revision":1,"healthy":true}"#;
        assert_eq!(HealthRecord::from_json(half.as_bytes()), None);
        let bad = r#"{"id":"a","key":"k","fencing_revision":1,"ready":"yes"}"#;
        assert_eq!(HealthRecord::from_json(bad.as_bytes()), None);
        let e = Election::new("/singleton-exec", "myapp");
        assert_eq!(e.health_key(), "/singleton-exec/myapp@health");
        assert!(!e.health_key().starts_with(e.dir()));
    }

    #[test]
    fn slot_counts_are_read_from_slot_keys() {
        let e = Election::new("/singleton-exec", "app");
        assert_eq!(e.slots_root(), "/singleton-exec/app@slots/");
        assert!(!e.slots_root().starts_with(e.dir()));
        for (key, want) in [
            (&b"/singleton-exec/app@slots/3/slot/0"[..], Some(3)),
            (b"/singleton-exec/app@slots/12/queue/ff", Some(12)),
            (b"/singleton-exec/app@slots/1/slot/0", None),
            (b"/singleton-exec/app@slots/x/slot/0", None),
            (b"/singleton-exec/app@slots/+2/slot/0", None),
            (b"/singleton-exec/app@slots/02/slot/0", None),
            (b"/singleton-exec/app@slots/", None),
            (b"/singleton-exec/apps@slots/3/slot/0", None),
            (b"/singleton-exec/app/ff", None),
        ] {
            assert_eq!(
                e.slots_of_key(key),
                want,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(range_end(b"/a/"), b"/a0");
        assert_eq!(range_end(b"a\xff"), b"b");
        assert_eq!(range_end(b"\xff"), vec![0]);
    }

    #[test]
    fn the_resign_key_is_outside_every_election() {
        let e = Election::new("/singleton-exec", "myapp");
        assert_eq!(e.resign_key(), "/singleton-exec/myapp@resign");
        // Elections whose names look like a request key: none of their key spaces holds it.
        for other in ["myapp", "myapp.resign", ".resign", "resign", "myapp-resign"] {
            let o = Election::new("/singleton-exec", other);
            assert!(!e.resign_key().starts_with(o.dir()), "{other}");
            if other != "myapp" {
                assert_ne!(e.resign_key(), o.resign_key(), "{other}");
            }
        }
    }
}
