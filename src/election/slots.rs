//! N slots (`--slots N`, N > 1): exactly N children across the replicas, each on a slot 0..N-1
//! that is never held twice at once.
//!
//! Keys, under `PREFIX/NAME@slots/N/` (outside every election's key space, see
//! [`Election::slots_root`]; the count is in the path so that a replica with another count finds
//! the keys of this one):
//! * `queue/<lease hex>` = id: a standby, attached to its lease; standbys queue by create-revision,
//!   as the singleton's candidates do;
//! * `slot/<i>` = id: slot `i`'s holder, attached to its lease. Its create-revision is the slot's
//!   fencing revision: each holder creates the key anew, so it only grows from one to the next;
//! * `health/<i>`: what the holder shows of its child: its last health check, its readiness and
//!   status (`status`).
//!
//! How a slot is claimed: only the first standby (no queue key ahead of it) claims, so a freed slot
//! wakes one replica, not all of them. It takes the lowest free slot in one transaction: if its
//! queue key is still its own (same lease, same create-revision) and the slot key does not exist,
//! put the slot key under its lease and delete its queue key. Deleting the queue key wakes the next
//! standby, which watches it, and which then, first in turn, watches the slot keys. Standbys behind
//! the first watch only the queue key just ahead of theirs, as in the singleton.
//!
//! Why two holders of a slot cannot run at once: the slot key exists at most once (the claim is a
//! create), it is attached to its holder's lease, and a holder's child is dead before that lease
//! can expire (the same fail-closed deadline as the singleton's, [`crate::core::timing`]). A graceful
//! holder releases its slot key only after its child's tree is gone, marking its tree released in
//! the same transaction (the singleton's tree markers, [`crate::election::queue`]). A slot key
//! deleted by hand, or its holder's lease revoked, is the way around that: the claimer then waits,
//! as the singleton's new leader does, for the former holder's tree lease to go (for a holder
//! without a marker, for its lease, at most [`PREDECESSOR_WAIT`]), and the holder, which watches
//! its slot key and its leases, kills its child at once.
//!
//! A replica holds at most one slot: it claims only while standby, and gives the slot up (its
//! lease) before it queues again.

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};

use crate::core::lifecycle::LeaseId;
use crate::election::answer::{kvs, Answer, Found, Kv};
use crate::election::candidacy_watch::CandidacyWatch;
use crate::election::connector::EtcdError;
use crate::election::queue::{
    delete_if_unchanged, former_tree, just_ahead_of, put_if_absent, range_end, still_ours,
    wait_tree_gone, Candidacy, Candidate, Election, FormerTree, HealthRecord, WaitAhead,
    PREDECESSOR_WAIT,
};

/// The keys of one election with N > 1 slots.
#[derive(Debug, Clone)]
pub struct SlotElection {
    base: Election,
    n: u32,
    /// `PREFIX/NAME@slots/N/`
    dir: String,
}

/// What etcd shows that contradicts our slot count: another count, or a singleton election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Replicas with `--slots N` (N > 1) use the election; 0 when a key under the slots layout
    /// names no count.
    Slots(u32),
    /// A singleton (`--slots 1`, `etcdctl lock` or `elect`) uses the election.
    Singleton,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Slots(0) => write!(f, "replicas with another --slots use this election"),
            Mismatch::Slots(n) => write!(f, "replicas with --slots {n} use this election"),
            Mismatch::Singleton => write!(
                f,
                "a singleton (--slots 1, or etcdctl lock/elect) uses this election"
            ),
        }
    }
}

/// Who holds each slot, as read at one store revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holders {
    pub revision: i64,
    /// Index = slot.
    pub slots: Vec<Option<Holder>>,
}

/// A slot's holder, as read from etcd: its key is the slot key, whose create-revision is the
/// holder's fencing revision.
pub type Holder = Candidate;

impl Holders {
    pub fn lowest_free(&self) -> Option<u32> {
        self.slots
            .iter()
            .position(Option::is_none)
            .map(|i| i as u32)
    }

    fn held_with(&self, lease: LeaseId) -> Option<(u32, &Holder)> {
        self.slots.iter().enumerate().find_map(|(i, h)| {
            h.as_ref()
                .filter(|h| h.lease == lease)
                .map(|h| (i as u32, h))
        })
    }

    fn lease_of(&self, slot: u32) -> Option<LeaseId> {
        self.slots.get(slot as usize)?.as_ref().map(|h| h.lease)
    }
}

/// After joining the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// Queued as a standby, with the store revision of the join.
    Standby(Candidacy, i64),
    /// A claim of an earlier attempt (same lease) succeeded: we hold this slot already.
    Holding(Candidacy),
    /// Etcd shows another slot count: we must not run (our queue key is left to our lease, which
    /// the caller revokes).
    Refused(Mismatch),
}

/// What the first standby learns from one read.
#[derive(Debug, PartialEq, Eq)]
struct View {
    at: i64,
    /// The queue key just ahead of ours, if any.
    ahead: Option<Vec<u8>>,
    holders: Holders,
    /// The first slot whose key no lease holds (`etcdctl put` took it off its holder's lease: no
    /// revoke or expiry will delete it), as read.
    orphaned: Option<(u32, Found)>,
}

// The positions of [`SlotElection::join_txn`]'s operations: both branches send them in this
// order.
/// The put of our queue key (`then`), or the read of it (`else`).
const JOIN_MINE: usize = 0;
/// One key of a singleton's candidates.
const JOIN_SINGLETON: usize = 1;
/// One key of a smaller slot count (it sorts before ours under the slots root).
const JOIN_LOWER_COUNT: usize = 2;
/// One key of a larger slot count.
const JOIN_HIGHER_COUNT: usize = 3;
/// Every slot key of our count.
const JOIN_SLOTS: usize = 4;

// The positions of [`SlotElection::view_txn`]'s operations.
/// The queue key just ahead of ours, if any.
const VIEW_AHEAD: usize = 0;
/// Every slot key.
const VIEW_SLOTS: usize = 1;

/// When a join found our queue key (a put earlier with our lease) no longer held by our lease:
/// its mod revision.
fn taken_from_us(answer: &Answer, lease: LeaseId) -> Option<i64> {
    let mine = answer.first(JOIN_MINE).filter(|_| !answer.succeeded)?;
    (mine.lease != lease.0).then_some(mine.mod_revision)
}

/// What a claim of `slot` (slot key `key`) by `me` came to: a claim writes and reads nothing
/// back, so only whether it ran, and at which revision, tell.
fn claimed(
    me: &Candidacy,
    key: String,
    slot: u32,
    answer: &Answer,
) -> Result<Option<Candidacy>, EtcdError> {
    if !answer.succeeded {
        return Ok(None);
    }
    let Some(at) = answer.revision.filter(|&r| r > 0) else {
        return Err(EtcdError::Unavailable("a claim without a revision".into()));
    };
    Ok(Some(Candidacy {
        key,
        lease: me.lease,
        revision: at,
        leads_since: at,
        slot: Some(slot),
    }))
}

/// An election with slots as `status` shows it, from one read of every key under its slots root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotsView {
    pub revision: i64,
    pub count: u32,
    /// Index = slot.
    pub holders: Vec<Option<Holder>>,
    /// What the holder shows of its child (its last health check, its readiness and status),
    /// per slot, when it shows anything.
    pub health: Vec<Option<HealthRecord>>,
    /// Standbys in queue order (the first claims the next freed slot).
    pub standbys: Vec<Candidate>,
    /// Keys of other slot counts: replicas that disagree (they refuse to run; their queue keys
    /// last until their lease goes).
    pub other_counts: Vec<u32>,
}

impl SlotsView {
    /// Builds the view from the keys under [`Election::slots_root`], in create-revision order.
    /// The count is that of the oldest key; `None` without any key.
    pub fn from_kvs(base: &Election, kvs: &[Kv], revision: i64) -> Option<SlotsView> {
        let count = kvs.iter().find_map(|kv| base.slots_of_key(kv.key))?;
        let layout = SlotElection::of(base, count);
        let holders = layout.holders_from(kvs, revision).slots;
        let mut health = vec![None; count as usize];
        let (mut standbys, mut other_counts) = (Vec::new(), Vec::new());
        let health_dir = format!("{}health/", layout.dir);
        for kv in kvs {
            let n = base.slots_of_key(kv.key);
            if n != Some(count) {
                if let Some(n) = n.filter(|n| !other_counts.contains(n)) {
                    other_counts.push(n);
                }
                continue;
            }
            let key = String::from_utf8_lossy(kv.key).into_owned();
            if key.starts_with(&layout.queue_dir()) {
                standbys.push(Candidate {
                    id: String::from_utf8_lossy(kv.value).into_owned(),
                    key,
                    lease: LeaseId(kv.lease),
                    revision: kv.create_revision,
                });
            } else if let Some(slot) = key.strip_prefix(&health_dir) {
                let slot = canonical_number(slot)
                    .map(|i| i as usize)
                    .filter(|&i| i < count as usize);
                let record = HealthRecord::from_json(kv.value);
                if let (Some(i), Some(r)) = (slot, record) {
                    // Only the current holder's (a record of an earlier one is not shown).
                    if holders[i]
                        .as_ref()
                        .is_some_and(|h| h.key == r.key && h.revision == r.revision)
                    {
                        health[i] = Some(r);
                    }
                }
            }
        }
        Some(SlotsView {
            revision,
            count,
            holders,
            health,
            standbys,
            other_counts,
        })
    }

    /// Slots held by a holder's lease (a key no lease holds is no holder: see [`SlotsView::orphaned`]).
    pub fn held(&self) -> usize {
        self.holders
            .iter()
            .flatten()
            .filter(|h| h.lease.0 > 0)
            .count()
    }

    /// The slots whose key no lease holds (`etcdctl put` took it off its holder's lease): no child
    /// runs there until the first standby removes it.
    pub fn orphaned(&self) -> Vec<u32> {
        let orphan = |(i, h): (usize, &Option<Holder>)| {
            h.as_ref().filter(|h| h.lease.0 == 0).map(|_| i as u32)
        };
        self.holders.iter().enumerate().filter_map(orphan).collect()
    }

    /// Reads the view (`None`: the election has no slots keys).
    pub async fn read(
        base: &Election,
        client: &mut Client,
    ) -> Result<Option<SlotsView>, EtcdError> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let resp = client.get(base.slots_root(), Some(opts)).await?;
        let at = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok(SlotsView::from_kvs(base, &kvs(resp.kvs()), at))
    }
}

impl SlotElection {
    pub fn new(prefix: &str, name: &str, n: u32) -> Self {
        SlotElection::of(&Election::new(prefix, name), n)
    }

    /// The slots layout of `base` with `n` slots.
    pub fn of(base: &Election, n: u32) -> Self {
        let dir = format!("{}{n}/", base.slots_root());
        SlotElection {
            base: base.clone(),
            n,
            dir,
        }
    }

    /// `PREFIX/NAME@slots/N/`: every key of this layout starts with it.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    pub fn queue_dir(&self) -> String {
        format!("{}queue/", self.dir)
    }

    pub fn slot_dir(&self) -> String {
        format!("{}slot/", self.dir)
    }

    pub fn slot_key(&self, slot: u32) -> String {
        format!("{}slot/{slot}", self.dir)
    }

    pub fn health_key(&self, slot: u32) -> String {
        format!("{}health/{slot}", self.dir)
    }

    /// The slot number in a slot key of this election, if it is one (and below N).
    pub fn slot_of_key(&self, key: &[u8]) -> Option<u32> {
        let rest = key.strip_prefix(self.slot_dir().as_bytes())?;
        let s = std::str::from_utf8(rest).ok()?;
        canonical_number(s).filter(|&i| i < self.n)
    }

    /// Reads, for a transaction, every slot key.
    fn slots_op(&self) -> TxnOp {
        TxnOp::get(self.slot_dir(), Some(GetOptions::new().with_prefix()))
    }

    fn holders_from(&self, kvs: &[Kv], revision: i64) -> Holders {
        let mut slots = vec![None; self.n as usize];
        for kv in kvs {
            if let Some(i) = self.slot_of_key(kv.key) {
                slots[i as usize] = Some(Candidate {
                    id: String::from_utf8_lossy(kv.value).into_owned(),
                    key: String::from_utf8_lossy(kv.key).into_owned(),
                    lease: LeaseId(kv.lease),
                    revision: kv.create_revision,
                });
            }
        }
        Holders { revision, slots }
    }

    fn holders_of(&self, found: &[Found], revision: i64) -> Holders {
        let kvs: Vec<Kv> = found.iter().map(Found::as_kv).collect();
        self.holders_from(&kvs, revision)
    }

    /// Puts our queue key if absent and, in the same transaction, reads what would forbid us to
    /// run (a singleton's key, a key of another slot count) and who holds the slots.
    pub async fn join(
        &self,
        client: &mut Client,
        lease: LeaseId,
        id: &str, // the value of our keys: the queue key now, the slot key once claimed
    ) -> Result<Joined, EtcdError> {
        let key = format!("{}{lease}", self.queue_dir());
        let join = self.join_txn(&key, lease, id);
        let mut answer = Answer::of(&client.txn(join.clone()).await?);
        if let Some(seen) = taken_from_us(&answer, lease) {
            // Our queue key's name, which no other lease may hold, put by another client: it
            // never goes with our lease. Remove it (unless changed since) and join afresh.
            tracing::warn!(%key, "our queue key was put by another client; removing it and joining again");
            client
                .txn(delete_if_unchanged(key.as_bytes(), seen))
                .await?;
            answer = Answer::of(&client.txn(join).await?);
        }
        let joined = self.joined(&answer, key.clone(), lease);
        if let Ok(Joined::Holding(_)) = &joined {
            // Our claim went through but its answer was lost: we hold the slot. The queue key we
            // just put would make the standbys behind it wait for us: take it out.
            client.delete(key, None).await?;
        }
        joined
    }

    /// Where a replica that disagrees with us would have keys, as ranges `[from, to)`: a
    /// singleton's candidates, and another count, which sorts before ours or after it under the
    /// slots root. In the order of [`JOIN_SINGLETON`], [`JOIN_LOWER_COUNT`], [`JOIN_HIGHER_COUNT`].
    fn conflicts(&self) -> [(String, Vec<u8>); 3] {
        let (dir, root) = (self.base.dir(), self.base.slots_root());
        [
            (dir.to_owned(), range_end(dir.as_bytes())),
            (root.clone(), self.dir.clone().into_bytes()),
            (
                String::from_utf8_lossy(&range_end(self.dir.as_bytes())).into_owned(),
                range_end(root.as_bytes()),
            ),
        ]
    }

    /// Put-if-absent, only where nothing contradicts us: a refused replica writes nothing, so it
    /// cannot make a rightful one (joining at the same moment) refuse in turn. Either way, read
    /// back our key, one key of each conflicting range and every slot key, in
    /// the order of the `JOIN_*` positions.
    fn join_txn(&self, key: &str, lease: LeaseId, id: &str) -> Txn {
        let conflicts = self.conflicts();
        let mut reads: Vec<TxnOp> = conflicts
            .iter()
            .map(|(from, to)| {
                let opts = GetOptions::new()
                    .with_range(to.clone())
                    .with_keys_only()
                    .with_limit(1);
                TxnOp::get(from.clone(), Some(opts))
            })
            .collect();
        reads.push(self.slots_op());
        let conditions = conflicts.iter().map(|(from, to)| {
            // An empty range compares as one absent key: create-revision 0.
            Compare::create_revision(from.clone(), CompareOp::Equal, 0).with_range(to.clone())
        });
        put_if_absent(key, id, lease, conditions.collect(), reads)
    }

    /// What a join's answer means for queue key `key` with `lease`. [`Joined::Holding`] leaves
    /// the queue key to be deleted by the caller.
    fn joined(&self, answer: &Answer, key: String, lease: LeaseId) -> Result<Joined, EtcdError> {
        let at = answer.revision.unwrap_or_default();
        if answer.first(JOIN_SINGLETON).is_some() {
            return Ok(Joined::Refused(Mismatch::Singleton));
        }
        let other_count = answer.first(JOIN_LOWER_COUNT);
        if let Some(kv) = other_count.or(answer.first(JOIN_HIGHER_COUNT)) {
            let n = self.base.slots_of_key(&kv.key).unwrap_or(0);
            return Ok(Joined::Refused(Mismatch::Slots(n)));
        }
        // The condition held: our queue key was put now.
        let revision = if answer.succeeded {
            at
        } else {
            answer
                .first(JOIN_MINE)
                .filter(|kv| kv.lease == lease.0)
                .map_or(0, |kv| kv.create_revision)
        };
        if revision <= 0 {
            return Err(EtcdError::Unavailable(format!(
                "could not place {key} in the election"
            )));
        }
        let holders = self.holders_of(answer.read(JOIN_SLOTS), at);
        if let Some((slot, h)) = holders.held_with(lease) {
            return Ok(Joined::Holding(Candidacy {
                key: h.key.clone(),
                lease,
                revision: h.revision,
                leads_since: at,
                slot: Some(slot),
            }));
        }
        let me = Candidacy {
            key,
            lease,
            revision,
            leads_since: 0,
            slot: None,
        };
        Ok(Joined::Standby(me, at))
    }

    /// The slots' holders at store revision `at`; `None` when that history is compacted (the
    /// deletion is old then).
    async fn holders_at(&self, client: &mut Client, at: i64) -> Result<Option<Holders>, EtcdError> {
        let opts = GetOptions::new().with_prefix().with_revision(at.max(1));
        match client.get(self.slot_dir(), Some(opts)).await {
            Ok(resp) => Ok(Some(self.holders_from(&kvs(resp.kvs()), at))),
            // Compacted: the deletion is old. A future revision: etcd was restored from an older
            // snapshot, and our revision is not there.
            Err(e) if crate::election::connector::history_gone(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One transaction: if our queue key is still ours, the key just ahead of it and every slot's
    /// holder, at one revision.
    async fn view(&self, client: &mut Client, me: &Candidacy) -> Result<View, EtcdError> {
        let resp = client.txn(self.view_txn(me)).await?;
        self.view_of(me, &Answer::of(&resp))
    }

    /// In the order of [`VIEW_AHEAD`], [`VIEW_SLOTS`]: the queue key just ahead of ours, every slot key.
    fn view_txn(&self, me: &Candidacy) -> Txn {
        Txn::new().when(still_ours(me)).and_then([
            TxnOp::get(self.queue_dir(), Some(just_ahead_of(me))),
            self.slots_op(),
        ])
    }

    fn view_of(&self, me: &Candidacy, answer: &Answer) -> Result<View, EtcdError> {
        // The condition: our queue key still exists with our lease and our create-revision.
        if !answer.succeeded {
            return Err(crate::election::queue::key_vanished(
                &me.key,
                "waiting (lease expired?)",
            ));
        }
        let at = answer.revision.unwrap_or_default();
        let orphaned = answer.read(VIEW_SLOTS).iter().find_map(|kv| {
            let slot = self.slot_of_key(&kv.key)?;
            (kv.lease == 0).then(|| (slot, kv.clone()))
        });
        Ok(View {
            at,
            ahead: answer.first(VIEW_AHEAD).map(|kv| kv.key.clone()),
            holders: self.holders_of(answer.read(VIEW_SLOTS), at),
            orphaned,
        })
    }

    /// Claims `slot` if it is free and our queue key is still ours: the slot key under our lease,
    /// our queue key deleted, in one transaction. `None`: not claimed (taken, or our key is gone;
    /// the next read tells which).
    async fn claim(
        &self,
        client: &mut Client,
        me: &Candidacy,
        slot: u32,
        id: &str,
    ) -> Result<Option<Candidacy>, EtcdError> {
        let key = self.slot_key(slot);
        let mut when = still_ours(me).to_vec();
        when.push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
        let txn = Txn::new().when(when).and_then([
            TxnOp::put(
                key.clone(),
                id,
                Some(PutOptions::new().with_lease(me.lease.0)),
            ),
            TxnOp::delete(me.key.clone(), None),
        ]);
        let resp = client.txn(txn).await?;
        claimed(me, key, slot, &Answer::of(&resp))
    }

    /// Waits for our turn in the queue and claims a free slot; returns the slot's candidacy. `Err`
    /// when etcd cannot be reached or our queue key is gone (the caller joins again).
    ///
    /// Each wake-up of the first standby costs one claim transaction (a freed slot is claimed
    /// straight from the watch event), sent with a check of the former holder's lease.
    ///
    /// `former_at`: our previous key (queue or slot) was deleted, and the slots had their former
    /// holders at this revision. A holder whose key went in the same `del --prefix` may still
    /// run its child (cut off, it sees the deletion late): a slot it held is claimed only once its
    /// lease is gone (or after [`PREDECESSOR_WAIT`]), as if we had watched it go.
    pub async fn take_slot(
        &self,
        client: &mut Client,
        me: &Candidacy,
        id: &str,
        watch: &mut CandidacyWatch,
        former_at: Option<i64>,
        markers: bool,
    ) -> Result<Candidacy, EtcdError> {
        // Who held each slot when our previous key was deleted, and when we last looked: a slot
        // free now was held by the latter, if anyone, else by the former.
        let before_deletion: Option<Holders> = match former_at {
            Some(at) => self.holders_at(client, at).await?,
            None => None,
        };
        let mut known: Option<Holders> = None;
        // A slot whose key we watched being deleted, with the lease it had.
        let mut freed: Option<(u32, Option<LeaseId>)> = None;
        loop {
            let (slot, deleted_with) = match freed.take() {
                Some(f) => f,
                None => {
                    let v = self.view(client, me).await?;
                    match next_step(&v) {
                        Next::Claim(slot) => (slot, None),
                        Next::WaitAhead(key) => {
                            tracing::debug!(waiting_on = %String::from_utf8_lossy(&key), "standby: watching the standby ahead");
                            known = Some(v.holders);
                            watch.wait_ahead_gone(key, v.at + 1).await?;
                            continue;
                        }
                        Next::ClearOrphan => {
                            if let Some((slot, kv)) = &v.orphaned {
                                self.clear_orphan(client, me, *slot, kv, markers).await?;
                            }
                            continue;
                        }
                        Next::WatchSlots => {
                            tracing::debug!("first standby: watching the slots");
                            known = Some(v.holders);
                            let (gone, lease) = watch
                                .wait_deleted_under(self.slot_dir().into_bytes(), v.at + 1)
                                .await?;
                            freed = self.slot_of_key(&gone).map(|slot| (slot, lease));
                            continue;
                        }
                    }
                }
            };
            let former = former_holder(slot, deleted_with, [&known, &before_deletion], me.lease);
            self.wait_former_child(client, me, former, markers).await?;
            match self.claim(client, me, slot, id).await? {
                Some(holder) => return Ok(holder),
                None => continue, // taken by someone else (or our key is gone): read again
            }
        }
    }
}

impl SlotElection {
    /// Before a claim: waits until no former holder's child may still run. With the slot's former
    /// holder known (`former`, its candidacy lease), by its tree marker (released: at once; on a
    /// living tree lease: until that lease goes) or, without one, by its lease as before markers;
    /// else by every tree marker whose candidacy has left the slots.
    async fn wait_former_child(
        &self,
        client: &mut Client,
        me: &Candidacy,
        former: Option<LeaseId>,
        markers: bool,
    ) -> Result<(), EtcdError> {
        if !markers {
            // A role that may not read the markers: by the former holder's lease, as before them.
            return match former {
                Some(lease) => wait_lease_gone(client, lease).await,
                None => Ok(()),
            };
        }
        let Some(lease) = former else {
            let present = |keys: &[Found]| {
                keys.iter()
                    .map(|k| k.lease)
                    .chain(keys.iter().filter_map(|k| self.queue_lease_of(&k.key)))
                    .filter(|&l| l > 0)
                    .collect()
            };
            let rejoin = |lease: LeaseId| format!("{}{lease}", self.queue_dir());
            return self
                .base
                .wait_departed_trees(client, me, present, &self.dir, rejoin)
                .await;
        };
        let marker = client.get(self.base.tree_key(lease), None).await?;
        let marker = marker.kvs().first().map(Found::of);
        match former_tree(marker.as_ref()) {
            FormerTree::Released => Ok(()),
            FormerTree::MayLive(tree_lease) => {
                let rejoin = format!("{}{lease}", self.queue_dir());
                wait_tree_gone(client, me, tree_lease, (rejoin.as_bytes(), lease.0)).await
            }
            FormerTree::Unknown => wait_lease_gone(client, lease).await,
        }
    }

    /// Slot `slot`'s key, read as `kv`, is held by no lease (`etcdctl put` took it off its
    /// holder's): nothing will ever delete it. Waits until its former holder's child cannot run
    /// (that holder, seeing its key changed, kills its tree and gives its leases up; a crashed
    /// one's expire), then deletes the key, fenced by its create revision and the absence of a
    /// lease (a key put again by anyone since is left alone). The former holder is the lease of the
    /// key's previous version, from history; with the history compacted, every tree marker whose
    /// candidacy left the slots is waited for instead.
    async fn clear_orphan(
        &self,
        client: &mut Client,
        me: &Candidacy,
        slot: u32,
        kv: &Found,
        markers: bool,
    ) -> Result<(), EtcdError> {
        let shown = String::from_utf8_lossy(&kv.key).into_owned();
        tracing::warn!(key = %shown, slot, "a slot key held by no lease (put by another client): removing it once its former holder's child ends");
        let opts = GetOptions::new().with_revision((kv.mod_revision - 1).max(1));
        let former = match client.get(kv.key.clone(), Some(opts)).await {
            Ok(resp) => resp
                .kvs()
                .first()
                .filter(|prev| prev.create_revision() == kv.create_revision && prev.lease() > 0)
                .map(|prev| LeaseId(prev.lease())),
            Err(e) if crate::election::connector::history_gone(&e) => None,
            Err(e) => return Err(e.into()),
        };
        match former {
            Some(lease) if !markers || !self.tree_known(client, lease).await? => {
                // No tree marker (a replica of a release before markers): its lease, no time
                // bound, as for an orphaned key of the singleton's queue.
                while lease_alive(client, lease).await? {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            former => self.wait_former_child(client, me, former, markers).await?,
        }
        let fenced = Txn::new()
            .when([
                Compare::create_revision(kv.key.clone(), CompareOp::Equal, kv.create_revision),
                Compare::lease(kv.key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([TxnOp::delete(kv.key.clone(), None)]);
        if client.txn(fenced).await?.succeeded() {
            tracing::warn!(key = %shown, slot, "removed the orphaned slot key");
        }
        Ok(())
    }

    /// Whether the candidacy with lease `lease` has a tree marker.
    async fn tree_known(&self, client: &mut Client, lease: LeaseId) -> Result<bool, EtcdError> {
        let marker = client.get(self.base.tree_key(lease), None).await?;
        Ok(!marker.kvs().is_empty())
    }

    /// The candidacy lease a queue key of ours is named by.
    fn queue_lease_of(&self, key: &[u8]) -> Option<i64> {
        let name = std::str::from_utf8(key.strip_prefix(self.queue_dir().as_bytes())?).ok()?;
        i64::from_str_radix(name, 16)
            .ok()
            .filter(|&l| l > 0 && format!("{l:x}") == name)
    }
}

/// What a standby does after one read of the queue and the slots.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Wait for this queue key, just ahead of ours, to go.
    WaitAhead(Vec<u8>),
    /// First in the queue, and this slot is free: claim it.
    Claim(u32),
    /// First in the queue, every slot is held, and one of them by a key no lease holds: remove
    /// it once its former holder's child cannot run ([`SlotElection::clear_orphan`]).
    ClearOrphan,
    /// First in the queue, and every slot is held: wait for a slot key to go.
    WatchSlots,
}

fn next_step(view: &View) -> Next {
    match (&view.ahead, view.holders.lowest_free(), &view.orphaned) {
        (Some(key), _, _) => Next::WaitAhead(key.clone()),
        (None, Some(slot), _) => Next::Claim(slot),
        (None, None, Some(_)) => Next::ClearOrphan,
        (None, None, None) => Next::WatchSlots,
    }
}

/// Whose child may still run on `slot`, which we are about to claim: the deleted key's holder
/// when we watched it go (`deleted_with`); else whoever held the slot in the first of `seen` (when
/// we last looked, then when our previous key was deleted) that shows a holder. Never ourselves.
/// Waited for before the claim, so that a retry (the claim's answer lost) cannot skip it; in a
/// graceful handoff it is one `LeaseTimeToLive` that finds the lease revoked.
fn former_holder(
    slot: u32,
    deleted_with: Option<LeaseId>,
    seen: [&Option<Holders>; 2],
    mine: LeaseId,
) -> Option<LeaseId> {
    deleted_with
        .or_else(|| seen.iter().find_map(|h| h.as_ref()?.lease_of(slot)))
        .filter(|&l| l != mine && l.0 > 0)
}

/// A number written as `slot_key` and the layout write it: decimal digits only, no sign, no
/// leading zero (one spelling per number).
pub fn canonical_number(s: &str) -> Option<u32> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

async fn lease_alive(client: &mut Client, lease: LeaseId) -> Result<bool, EtcdError> {
    crate::election::queue::lease_lives(client, lease.0).await
}

/// A freed slot whose former holder's lease still lives: its key was deleted by hand, and the
/// holder may still run its child until it sees that (it then kills the child and revokes the
/// lease). Waits for the lease to go, at most [`PREDECESSOR_WAIT`] (see the singleton's
/// `Election::wait_predecessor_gone` for why the wait is bounded).
///
/// A failed look counts as "still alive": the lease learned from the deletion exists only here,
/// and an error must not end the attempt and lose it (a retry would then claim at once).
async fn wait_lease_gone(client: &mut Client, lease: LeaseId) -> Result<(), EtcdError> {
    let start = tokio::time::Instant::now();
    loop {
        match lease_alive(client, lease).await {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                tracing::debug!(%lease, error = %e, "cannot tell whether the former holder's lease lives")
            }
        }
        if start.elapsed() > PREDECESSOR_WAIT {
            tracing::info!(%lease, "the slot's key was deleted and its former holder's lease still lives: going ahead");
            return Ok(());
        }
        tracing::debug!(%lease, "the slot's key was deleted while its holder's lease lives; waiting for it");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(key: &str, lease: i64, create_revision: i64) -> Found {
        Found {
            key: key.as_bytes().to_vec(),
            value: b"id".to_vec(),
            lease,
            create_revision,
            ..Found::default()
        }
    }

    fn candidacy(key: &str, revision: i64, leads_since: i64, slot: Option<u32>) -> Candidacy {
        Candidacy {
            key: key.into(),
            lease: LeaseId(0xab),
            revision,
            leads_since,
            slot,
        }
    }

    #[test]
    fn the_join_transaction_reads_what_its_answer_names() {
        let s = SlotElection::new("/p", "app", 3);
        let key = "/p/app@slots/3/queue/ab";
        let (then, otherwise) =
            crate::election::answer::ops_of(&s.join_txn(key, LeaseId(0xab), "a"));
        assert_eq!(then[JOIN_MINE], ("RequestPut".into(), key.into()));
        assert_eq!(otherwise[JOIN_MINE], ("RequestRange".into(), key.into()));
        for ops in [then, otherwise] {
            let at = |i: usize| ops[i].1.as_str();
            assert_eq!(at(JOIN_SINGLETON), "/p/app/");
            assert_eq!(at(JOIN_LOWER_COUNT), "/p/app@slots/");
            assert_eq!(at(JOIN_HIGHER_COUNT), "/p/app@slots/30");
            assert_eq!(at(JOIN_SLOTS), "/p/app@slots/3/slot/");
            assert_eq!(ops.len(), 5);
        }
    }

    #[test]
    fn what_a_slots_join_answer_means() {
        let s = SlotElection::new("/p", "app", 3);
        let queue_key = "/p/app@slots/3/queue/ab";
        let put = |reads: Vec<(usize, Found)>| {
            Answer::with(
                true,
                Some(20),
                reads.into_iter().map(|(op, f)| (op, vec![f])),
            )
        };
        let found_again = |reads: Vec<(usize, Found)>| Answer {
            succeeded: false,
            ..put(reads)
        };
        let standby = |revision| Ok(Joined::Standby(candidacy(queue_key, revision, 0, None), 20));
        let refused = |m| Ok(Joined::Refused(m));
        let rows: Vec<(Answer, Result<Joined, ()>)> = vec![
            (put(vec![]), standby(20)),
            // Our key survived an earlier attempt with our lease: its place stands.
            (
                found_again(vec![(JOIN_MINE, found(queue_key, 0xab, 9))]),
                standby(9),
            ),
            // A key of that name with another lease is not ours: not placed.
            (
                found_again(vec![(JOIN_MINE, found(queue_key, 0xcd, 9))]),
                Err(()),
            ),
            (found_again(vec![]), Err(())),
            // Whoever else uses the election: refused, whether or not we were put.
            (
                put(vec![(JOIN_SINGLETON, found("/p/app/cd", 0xcd, 2))]),
                refused(Mismatch::Singleton),
            ),
            (
                found_again(vec![(
                    JOIN_LOWER_COUNT,
                    found("/p/app@slots/2/slot/0", 1, 2),
                )]),
                refused(Mismatch::Slots(2)),
            ),
            (
                found_again(vec![(
                    JOIN_HIGHER_COUNT,
                    found("/p/app@slots/5/queue/ff", 1, 2),
                )]),
                refused(Mismatch::Slots(5)),
            ),
            (
                found_again(vec![(JOIN_HIGHER_COUNT, found("/p/app@slots/x", 1, 2))]),
                refused(Mismatch::Slots(0)),
            ),
            // An earlier claim with our lease went through: we hold that slot already.
            (
                Answer::with(
                    true,
                    Some(20),
                    [(
                        JOIN_SLOTS,
                        vec![
                            found("/p/app@slots/3/slot/0", 0xcd, 5),
                            found("/p/app@slots/3/slot/2", 0xab, 8),
                        ],
                    )],
                ),
                Ok(Joined::Holding(candidacy(
                    "/p/app@slots/3/slot/2",
                    8,
                    20,
                    Some(2),
                ))),
            ),
            (
                put(vec![(JOIN_SLOTS, found("/p/app@slots/3/slot/2", 0xcd, 8))]),
                standby(20),
            ),
        ];
        for (i, (answer, want)) in rows.into_iter().enumerate() {
            let got = s.joined(&answer, queue_key.into(), LeaseId(0xab));
            assert_eq!(got.map_err(|_| ()), want, "row {i}: {answer:?}");
        }
    }

    #[test]
    fn what_the_first_standbys_read_shows() {
        let s = SlotElection::new("/p", "app", 2);
        let me = candidacy("/p/app@slots/2/queue/ab", 9, 0, None);
        let holder = found("/p/app@slots/2/slot/1", 0xcd, 4);
        let ahead = found("/p/app@slots/2/queue/aa", 0xaa, 8);
        let reads = [(VIEW_AHEAD, vec![ahead]), (VIEW_SLOTS, vec![holder])];
        let answer = Answer::with(true, Some(11), reads);
        let view = s.view_of(&me, &answer).unwrap();
        assert_eq!(view.at, 11);
        assert_eq!(view.ahead.as_deref(), Some(&b"/p/app@slots/2/queue/aa"[..]));
        assert_eq!(view.holders.lease_of(1), Some(LeaseId(0xcd)));
        assert_eq!(view.holders.lowest_free(), Some(0));
        let gone = Answer {
            succeeded: false,
            ..answer
        };
        assert!(s.view_of(&me, &gone).is_err(), "our queue key is gone");
        let (then, _) = crate::election::answer::ops_of(&s.view_txn(&me));
        assert_eq!(then[VIEW_AHEAD].1, s.queue_dir());
        assert_eq!(then[VIEW_SLOTS].1, s.slot_dir());
    }

    #[test]
    fn what_a_claim_answer_means() {
        let me = candidacy("/p/app@slots/2/queue/ab", 9, 0, None);
        let slot_key = "/p/app@slots/2/slot/1";
        let answer = |succeeded, revision| Answer {
            succeeded,
            revision,
            reads: vec![],
        };
        let rows = [
            (
                answer(true, Some(30)),
                Ok(Some(candidacy(slot_key, 30, 30, Some(1)))),
            ),
            // Taken by someone else, or our queue key is gone: read again.
            (answer(false, Some(30)), Ok(None)),
            (answer(false, None), Ok(None)),
            // Claimed, but no revision to fence with: not usable.
            (answer(true, None), Err(())),
            (answer(true, Some(0)), Err(())),
        ];
        for (a, want) in rows {
            let got = claimed(&me, slot_key.into(), 1, &a).map_err(|_| ());
            assert_eq!(got, want, "{a:?}");
        }
    }

    #[test]
    fn what_a_standby_does_after_a_read() {
        let h = |lease| {
            Some(Candidate {
                id: "r".into(),
                key: "k".into(),
                lease: LeaseId(lease),
                revision: lease,
            })
        };
        let view = |ahead: Option<&str>, slots| View {
            at: 5,
            ahead: ahead.map(|k| k.as_bytes().to_vec()),
            holders: Holders { revision: 5, slots },
            orphaned: None,
        };
        let orphaned = |ahead: Option<&str>, slots| View {
            orphaned: Some((1, Found::default())),
            ..view(ahead, slots)
        };
        let rows = [
            // An orphaned slot is the first standby's to clear, once no slot is free.
            (orphaned(None, vec![h(1), h(0)]), Next::ClearOrphan),
            (orphaned(None, vec![None, h(0)]), Next::Claim(0)),
            (
                orphaned(Some("q/aa"), vec![h(1), h(0)]),
                Next::WaitAhead(b"q/aa".to_vec()),
            ),
            (
                view(Some("q/aa"), vec![None, None]),
                Next::WaitAhead(b"q/aa".to_vec()),
            ),
            (
                view(Some("q/aa"), vec![h(1), h(2)]),
                Next::WaitAhead(b"q/aa".to_vec()),
            ),
            (view(None, vec![h(1), None]), Next::Claim(1)),
            (view(None, vec![h(1), h(2)]), Next::WatchSlots),
        ];
        for (v, want) in rows {
            assert_eq!(next_step(&v), want, "{v:?}");
        }
    }

    #[test]
    fn whose_child_may_still_run_on_a_slot_about_to_be_claimed() {
        let holders = |slots: Vec<Option<i64>>| {
            Some(Holders {
                revision: 1,
                slots: slots
                    .into_iter()
                    .map(|l| {
                        l.map(|l| Candidate {
                            id: "r".into(),
                            key: "k".into(),
                            lease: LeaseId(l),
                            revision: 1,
                        })
                    })
                    .collect(),
            })
        };
        let mine = LeaseId(0xab);
        // (deleted with, last looked, at our previous key's deletion) -> former holder of slot 1
        let rows = [
            (
                Some(0x1),
                holders(vec![None, Some(0x2)]),
                holders(vec![None, Some(0x3)]),
                Some(0x1),
            ),
            (
                None,
                holders(vec![None, Some(0x2)]),
                holders(vec![None, Some(0x3)]),
                Some(0x2),
            ),
            (
                None,
                holders(vec![Some(0x2), None]),
                holders(vec![None, Some(0x3)]),
                Some(0x3),
            ),
            (None, None, holders(vec![None, Some(0x3)]), Some(0x3)),
            (None, None, None, None),
            // Never ourselves: our own lease is no one to wait for.
            (Some(0xab), None, None, None),
            // A slot key no lease held (put by another client) names no holder: the claim
            // waits for the departed trees instead.
            (None, holders(vec![None, Some(0)]), None, None),
            (
                None,
                holders(vec![None, Some(0xab)]),
                holders(vec![None, Some(0x3)]),
                None,
            ),
        ];
        for (deleted, known, before, want) in rows {
            let got = former_holder(1, deleted.map(LeaseId), [&known, &before], mine);
            assert_eq!(got, want.map(LeaseId), "{deleted:?} {known:?} {before:?}");
        }
    }

    #[test]
    fn slot_keys_and_numbers() {
        let s = SlotElection::new("/singleton-exec", "app", 3);
        assert_eq!(s.slot_key(2), "/singleton-exec/app@slots/3/slot/2");
        assert_eq!(s.queue_dir(), "/singleton-exec/app@slots/3/queue/");
        assert_eq!(s.health_key(0), "/singleton-exec/app@slots/3/health/0");
        // After the slot keys' prefix: a slot below N, in its one spelling.
        let slot_dir = s.slot_dir();
        let valid = [("0", 0), ("2", 2)];
        let invalid = ["3", "02", "+1", " 1", "x", ""];
        let rows = valid.map(|(rest, slot)| (rest, Some(slot)));
        for (rest, want) in rows.into_iter().chain(invalid.map(|rest| (rest, None))) {
            let key = format!("{slot_dir}{rest}");
            assert_eq!(s.slot_of_key(key.as_bytes()), want, "{key}");
        }
        // Another count's slot key, and a queue key.
        for key in [
            "/singleton-exec/app@slots/4/slot/0",
            "/singleton-exec/app@slots/3/queue/ff",
        ] {
            assert_eq!(s.slot_of_key(key.as_bytes()), None, "{key}");
        }
        let e = Election::new("/singleton-exec", "app");
        assert!(!s.slot_key(0).starts_with(e.dir()));
        assert_eq!(e.slots_of_key(s.slot_key(0).as_bytes()), Some(3));
    }

    #[test]
    fn the_lowest_free_slot_is_taken_first() {
        let h = |lease: i64| {
            Some(Candidate {
                id: "r".into(),
                key: "k".into(),
                lease: LeaseId(lease),
                revision: lease,
            })
        };
        let rows: [(Vec<Option<Holder>>, Option<u32>); 4] = [
            (vec![None, None], Some(0)),
            (vec![h(1), None], Some(1)),
            (vec![h(1), h(2), None, h(3)], Some(2)),
            (vec![h(1), h(2)], None),
        ];
        for (slots, want) in rows {
            let holders = Holders { revision: 1, slots };
            assert_eq!(holders.lowest_free(), want);
        }
        let holders = Holders {
            revision: 1,
            slots: vec![h(1), None, h(7)],
        };
        assert_eq!(holders.held_with(LeaseId(7)).map(|(i, _)| i), Some(2));
        assert_eq!(holders.held_with(LeaseId(9)), None);
        assert_eq!(holders.lease_of(0), Some(LeaseId(1)));
        assert_eq!(holders.lease_of(1), None);
    }

    #[test]
    fn the_status_view_groups_holders_standbys_and_other_counts() {
        let e = Election::new("/p", "app");
        let health = HealthRecord {
            id: "b".into(),
            key: "/p/app@slots/2/slot/1".into(),
            revision: 6,
            check: Some(crate::election::queue::CheckRecord {
                healthy: true,
                consecutive_failures: 0,
                retries: 3,
                last: "healthy".into(),
            }),
            ready: true,
            ready_after_ms: None,
            child_status: Some("serving".into()),
        };
        let stale = HealthRecord {
            key: "/p/app@slots/2/slot/0".into(),
            revision: 4,
            ..health.clone()
        };
        let (health, stale) = (health.to_json(), stale.to_json());
        let kv = |key: &'static str, value: &'static str, lease: i64, rev: i64| {
            (key, value.to_string(), lease, rev)
        };
        let rows = [
            kv("/p/app@slots/2/slot/1", "b", 0xb, 6),
            kv("/p/app@slots/2/queue/c", "c", 0xc, 7),
            ("/p/app@slots/2/health/1", health, 0xb, 8),
            ("/p/app@slots/2/health/0", stale, 0xa, 3),
            kv("/p/app@slots/3/queue/d", "d", 0xd, 9),
            kv("/p/app@slots/2/queue/e", "e", 0xe, 10),
            kv("/p/app@slots/2/slot/7", "junk", 0xf, 11),
        ];
        let rows: Vec<Kv> = rows
            .iter()
            .map(|(key, value, lease, rev)| Kv {
                key: key.as_bytes(),
                value: value.as_bytes(),
                lease: *lease,
                create_revision: *rev,
            })
            .collect();
        assert_eq!(SlotsView::from_kvs(&e, &[], 1), None);
        let v = SlotsView::from_kvs(&e, &rows, 12).unwrap();
        assert_eq!(v.count, 2);
        assert_eq!(v.revision, 12);
        assert!(v.holders[0].is_none());
        let h = v.holders[1].as_ref().unwrap();
        assert_eq!((h.id.as_str(), h.lease, h.revision), ("b", LeaseId(0xb), 6));
        assert_eq!(v.held(), 1);
        let ids: Vec<&str> = v.standbys.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c", "e"]);
        assert_eq!(v.other_counts, [3]);
        assert!(v.health[0].is_none(), "a record of no current holder");
        assert_eq!(v.health[1].as_ref().map(|r| r.revision), Some(6));
    }

    #[test]
    fn mismatches_say_what_was_found() {
        assert!(Mismatch::Slots(3).to_string().contains("--slots 3"));
        assert!(Mismatch::Singleton.to_string().contains("singleton"));
    }
}
