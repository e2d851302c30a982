//! One etcd watch stream per candidacy, set up when the candidate joins the queue and kept until
//! its leadership ends: it watches our own key (deleted: our place, or our leadership, is gone),
//! the step-down request key ([`crate::election::step_down`]), and, while standby, the one candidate just ahead
//! (or, for the first standby of an election with slots, every slot key: [`crate::election::slots`]).
//!
//! Why one stream from the start: a standby that becomes leader then needs no new watch and no
//! read to learn that its key is deleted or that a step-down is asked of it, so a leader change
//! costs etcd only the old leader's revoke and the new leader's one verifying read (plus a check
//! of the old leader's lease; see [`crate::election::queue`]).
//!
//! Invariants:
//! * every watch starts at a revision no later than the read it continues from (the join, or the
//!   read that named the candidate ahead), so no deletion between the two is missed;
//! * when the stream breaks, each watch is re-established after a fresh read of its key (the
//!   history may be compacted meanwhile): a key found gone counts as deleted;
//! * a permission error on the request key ends only that watch (a warning says so); leadership is
//!   never affected by it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::lifecycle::LeaseId;
use crate::election::connector::{Connector, EtcdError};
use crate::election::queue::{Candidacy, Election, WaitAhead};
use crate::election::step_down;

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Watch ids on the stream (etcd accepts ids chosen by the client).
const OWN: i64 = 1;
const REQUESTS: i64 = 2;
/// The candidate ahead gets a new id each time it changes, so a late event of an earlier one is
/// never taken for the current one.
const AHEAD_FIRST: i64 = 3;

/// A key ahead that is gone: the key, and for a deletion watched under a prefix (the slot keys)
/// the lease it had (0 when not known: found gone on a re-read).
#[derive(Debug)]
struct Gone {
    key: Vec<u8>,
    lease: i64,
}

/// What the wait for our turn asks of the watch task.
enum Command {
    /// Tell me when `key` (every key under it, if `prefix`) is deleted after revision `from - 1`.
    WatchAhead {
        key: Vec<u8>,
        from: i64,
        prefix: bool,
    },
}

/// The handle held by the leadership loop. Dropping it ends the watches.
pub struct CandidacyWatch {
    commands: UnboundedSender<Command>,
    /// The keys ahead that were deleted (or found gone), in order.
    ahead_gone: UnboundedReceiver<Gone>,
    own_deleted: watch::Receiver<bool>,
    /// The store revision at which our key was deleted, once known (0: not known).
    deleted_at: Arc<AtomicI64>,
    /// The latest store revision at which our key was known to exist.
    alive_at: Arc<AtomicI64>,
    task: JoinHandle<()>,
}

impl CandidacyWatch {
    /// Starts watching for `me`, which joined at `joined_at` (the store revision of the join):
    /// our key and the request key from the next revision. Step-down requests addressed to `me`
    /// send its fencing revision on `step_down`.
    pub fn start(
        connector: Arc<Connector>,
        election: &Election,
        me: &Candidacy,
        joined_at: i64,
        step_down: UnboundedSender<i64>,
    ) -> CandidacyWatch {
        let (commands, rx) = unbounded_channel();
        let (ahead_tx, ahead_gone) = unbounded_channel();
        let (own_tx, own_deleted) = watch::channel(false);
        let deleted_at = Arc::new(AtomicI64::new(0));
        let alive_at = Arc::new(AtomicI64::new(joined_at));
        let mut task = Task {
            connector,
            me: me.clone(),
            request_key: election.resign_key().into_bytes(),
            own_from: joined_at + 1,
            requests_from: Some(joined_at + 1),
            ahead: None,
            next_ahead_id: AHEAD_FIRST,
            fired: None,
            canceled_by_us: None,
            commands: rx,
            ahead_gone: ahead_tx,
            own_deleted: own_tx,
            deleted_at: deleted_at.clone(),
            alive_at: alive_at.clone(),
            step_down,
        };
        let task = tokio::spawn(async move { task.run().await });
        CandidacyWatch {
            commands,
            ahead_gone,
            own_deleted,
            deleted_at,
            alive_at,
            task,
        }
    }

    /// Resolves once our key is gone (deleted, or its lease expired), and again every time it is
    /// awaited after that.
    pub async fn own_deleted(&mut self) {
        wait_true(&mut self.own_deleted).await
    }

    /// Whether our key is known to be gone (deleted, its lease expired, or found missing).
    pub fn was_deleted(&self) -> bool {
        *self.own_deleted.borrow()
    }

    /// The store revision at which our key was deleted, if it was and the deletion was seen on
    /// the watch (not found missing after a break).
    pub fn deleted_at(&self) -> Option<i64> {
        Some(self.deleted_at.load(Ordering::SeqCst)).filter(|&r| r > 0)
    }

    /// The latest store revision at which our key was known to exist (at least the join's).
    pub fn alive_at(&self) -> i64 {
        self.alive_at.load(Ordering::SeqCst)
    }
}

impl WaitAhead for CandidacyWatch {
    /// Waits until `key` (the candidate just ahead, as read at revision `from - 1`) is deleted.
    /// `Err` if our own key is deleted first.
    async fn wait_ahead_gone(&mut self, key: Vec<u8>, from: i64) -> Result<(), EtcdError> {
        let _ = self.commands.send(Command::WatchAhead {
            key: key.clone(),
            from,
            prefix: false,
        });
        loop {
            tokio::select! {
                // Our key first: the task ends only once it is gone, and then both branches are
                // ready; the closed channel must never be taken for "go on waiting".
                biased;
                _ = wait_true(&mut self.own_deleted) => {
                    return Err(EtcdError::Unavailable("our key was deleted while waiting".into()));
                }
                gone = self.ahead_gone.recv() => match gone {
                    Some(g) if g.key == key => return Ok(()),
                    Some(_) => {} // an earlier candidate ahead
                    None => return Err(EtcdError::Unavailable("the candidacy watch ended".into())),
                },
            }
        }
    }
}

impl CandidacyWatch {
    /// Waits until a key under `prefix` (the slot keys, as read at revision `from - 1`) is
    /// deleted, and returns it with the lease it had; or `prefix` itself (and no lease) when the
    /// watch broke and the keys must be read again. `Err` if our own key is deleted first.
    pub async fn wait_deleted_under(
        &mut self,
        prefix: Vec<u8>,
        from: i64,
    ) -> Result<(Vec<u8>, Option<LeaseId>), EtcdError> {
        let _ = self.commands.send(Command::WatchAhead {
            key: prefix.clone(),
            from,
            prefix: true,
        });
        tokio::select! {
            biased; // as in `wait_ahead_gone`
            _ = wait_true(&mut self.own_deleted) => {
                Err(EtcdError::Unavailable("our key was deleted while waiting".into()))
            }
            gone = self.ahead_gone.recv() => match gone {
                // Whatever it is (even a late one of an earlier wait): the caller reads again.
                Some(g) => Ok((g.key, Some(LeaseId(g.lease)).filter(|l| l.0 != 0))),
                None => Err(EtcdError::Unavailable("the candidacy watch ended".into())),
            },
        }
    }
}

impl Drop for CandidacyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resolves once the connector has given up the connection of `generation`.
async fn moved_from(moves: &mut watch::Receiver<u64>, generation: u64) {
    loop {
        let now = *moves.borrow_and_update();
        if now != generation {
            return;
        }
        if moves.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|d| *d).await.is_err() {
        // The task ended without seeing it: nothing more to learn.
        std::future::pending::<()>().await;
    }
}

/// The candidate ahead being watched.
struct Ahead {
    id: i64,
    key: Vec<u8>,
    from: i64,
    /// Every key under `key` (the slot keys): any deletion is reported, with the deleted key.
    prefix: bool,
}

struct Task {
    connector: Arc<Connector>,
    me: Candidacy,
    request_key: Vec<u8>,
    /// Where each watch resumes; `None` for a watch that is over.
    own_from: i64,
    requests_from: Option<i64>,
    ahead: Option<Ahead>,
    next_ahead_id: i64,
    /// A watch of every slot key that has fired: canceled before the next one starts (it would
    /// go on reporting every slot change), and its cancellation is not a broken stream.
    fired: Option<i64>,
    canceled_by_us: Option<i64>,
    commands: UnboundedReceiver<Command>,
    ahead_gone: UnboundedSender<Gone>,
    own_deleted: watch::Sender<bool>,
    deleted_at: Arc<AtomicI64>,
    alive_at: Arc<AtomicI64>,
    step_down: UnboundedSender<i64>,
}

/// How one stream ended.
enum Ended {
    /// Our key is gone (deleted at this revision, when the watch saw it): nothing left to watch.
    OwnDeleted(Option<i64>),
    /// The connection or the stream failed: the endpoint's fault, re-establish after fresh reads.
    Broke(EtcdError),
    /// etcd canceled a watch (a compacted revision, an expired token), or the connection under
    /// the stream was given up by another user of it: re-establish after fresh reads.
    Canceled(String),
}

impl Task {
    async fn run(&mut self) {
        let mut wait = RETRY_MIN;
        let mut fresh = true;
        loop {
            let conn = match self.connector.get().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "candidacy watch: no etcd connection; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                    continue;
                }
            };
            let mut client = conn.client.clone();
            // After a break, read each key again: its history may be compacted, and a key found
            // gone counts as deleted.
            // Reading and setting up on a connection that is given up meanwhile (the keepalives
            // found it dead) may hang until the request timeout: start over on the next one.
            let mut moves = self.connector.moves();
            let generation = conn.generation;
            let ended = tokio::select! {
                ended = async {
                    let ready = if fresh { Ok(true) } else { self.reread(&mut client).await };
                    match ready {
                        Ok(true) => self.stream(&mut client, generation).await,
                        Ok(false) => Ended::OwnDeleted(None),
                        Err(e) => Ended::Broke(e),
                    }
                } => ended,
                _ = moved_from(&mut moves, generation) => {
                    Ended::Canceled("the connection was given up".into())
                }
            };
            match ended {
                Ended::OwnDeleted(at) => {
                    self.deleted_at.store(at.unwrap_or(0), Ordering::SeqCst);
                    let _ = self.own_deleted.send(true);
                    return;
                }
                Ended::Broke(e) => {
                    tracing::debug!(error = %e, "candidacy watch broke; re-watching");
                    self.connector.report(conn.generation, &conn.endpoint, e);
                    fresh = false;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Ended::Canceled(why) => {
                    tracing::debug!(%why, "candidacy watch canceled; re-watching");
                    fresh = false;
                    // The endpoint served us until now: retry soon (a waiting standby must not lag).
                    wait = RETRY_MIN;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Reads our key, the candidate ahead and the request key again, and sets where each watch
    /// resumes. A deletion found here is acted on as if watched; `Ok(false)`: our key is gone.
    async fn reread(&mut self, client: &mut Client) -> Result<bool, EtcdError> {
        let resp = client.get(self.me.key.as_bytes(), None).await?;
        let at = resp.header().map(|h| h.revision()).unwrap_or_default();
        let ours = resp.kvs().first().is_some_and(|kv| {
            kv.lease() == self.me.lease.0 && kv.create_revision() == self.me.revision
        });
        if !ours {
            return Ok(false);
        }
        self.alive_at.fetch_max(at, Ordering::SeqCst);
        self.own_from = at + 1;
        if self.ahead.as_ref().is_some_and(|a| a.prefix) {
            // The slot keys may have changed meanwhile: the waiter reads them again.
            if let Some(a) = self.ahead.take() {
                let _ = self.ahead_gone.send(Gone {
                    key: a.key,
                    lease: 0,
                });
            }
        }
        if let Some(ahead) = &mut self.ahead {
            let resp = client
                .get(ahead.key.clone(), Some(GetOptions::new().with_keys_only()))
                .await?;
            // Gone, or back with a new create-revision (deleted, then joined again with the same
            // lease): behind us now, so not ahead any more.
            let still_ahead = resp
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() < self.me.revision);
            if !still_ahead {
                let _ = self.ahead_gone.send(Gone {
                    key: std::mem::take(&mut ahead.key),
                    lease: 0,
                });
                self.ahead = None;
            } else {
                ahead.from = at + 1;
            }
        }
        if self.requests_from.is_some() {
            // A request put while the stream was down is read here and considered.
            match client
                .get(self.request_key.clone(), None)
                .await
                .map_err(EtcdError::from)
            {
                Ok(resp) => {
                    let at = resp.header().map(|h| h.revision()).unwrap_or_default();
                    if let Some(kv) = resp.kvs().first() {
                        self.consider(kv.value(), kv.mod_revision());
                    }
                    self.requests_from = Some(at + 1);
                }
                Err(EtcdError::Rejected(why)) => self.refused(&why),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    async fn stream(&mut self, client: &mut Client, generation: u64) -> Ended {
        (self.fired, self.canceled_by_us) = (None, None);
        let mut moves = self.connector.moves();
        let own = WatchOptions::new()
            .with_watch_id(OWN)
            .with_start_revision(self.own_from);
        let mut stream = match client.watch(self.me.key.as_bytes(), Some(own)).await {
            Ok(s) => s,
            Err(e) => return Ended::Broke(e.into()),
        };
        if let Some(from) = self.requests_from {
            let opts = WatchOptions::new()
                .with_watch_id(REQUESTS)
                .with_start_revision(from);
            if let Err(e) = stream.watch(self.request_key.clone(), Some(opts)).await {
                return Ended::Broke(e.into());
            }
        }
        if let Some(a) = &self.ahead {
            if let Err(e) = watch_ahead(&mut stream, a).await {
                return Ended::Broke(e);
            }
        }
        loop {
            tokio::select! {
                // A stream on a connection that was found dead may stall without an error.
                _ = moved_from(&mut moves, generation) => {
                    return Ended::Canceled("the connection was given up".into());
                }
                Some(cmd) = self.commands.recv() => {
                    let Command::WatchAhead { key, from, prefix } = cmd;
                    // Recorded before anything is sent: if the stream breaks (or this future is
                    // dropped) meanwhile, the re-read after the break acts on it.
                    self.ahead = Some(Ahead { id: self.next_ahead_id, key, from, prefix });
                    self.next_ahead_id += 1;
                    if let Some(id) = self.fired.take() {
                        self.canceled_by_us = Some(id);
                        if let Err(e) = stream.cancel(id).await {
                            return Ended::Broke(e.into());
                        }
                    }
                    if let Some(a) = &self.ahead {
                        if let Err(e) = watch_ahead(&mut stream, a).await {
                            return Ended::Broke(e);
                        }
                    }
                }
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return Ended::Broke(EtcdError::Unavailable("watch stream closed".into())),
                        Err(e) => return Ended::Broke(e.into()),
                    };
                    if let Some(ended) = self.on_response(&resp) {
                        return ended;
                    }
                }
            }
        }
    }

    fn on_response(&mut self, resp: &etcd_client::WatchResponse) -> Option<Ended> {
        let id = resp.watch_id();
        if resp.canceled() && self.canceled_by_us == Some(id) {
            self.canceled_by_us = None;
            return None;
        }
        if resp.canceled() {
            let why = resp.cancel_reason().to_owned();
            // etcd refuses a watch it may not create with id -1, not the one asked for. Only the
            // request key can be refused: the election's keys are readable, or the join failed.
            if why.contains("permission denied") && self.requests_from.is_some() {
                self.refused(&why);
                return None;
            }
            return Some(Ended::Canceled(why));
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            match (id, event.event_type()) {
                (OWN, EventType::Delete) => {
                    return Some(Ended::OwnDeleted(Some(kv.mod_revision())))
                }
                (OWN, EventType::Put) => self.own_from = kv.mod_revision() + 1,
                (REQUESTS, EventType::Put) => {
                    self.consider(kv.value(), kv.mod_revision());
                    self.requests_from = Some(kv.mod_revision() + 1);
                }
                (REQUESTS, EventType::Delete) => self.requests_from = Some(kv.mod_revision() + 1),
                (id, EventType::Delete) if self.ahead.as_ref().is_some_and(|a| a.id == id) => {
                    if let Some(a) = self.ahead.take() {
                        tracing::trace!(
                            revision = kv.mod_revision(),
                            "the candidate ahead is gone"
                        );
                        if a.prefix {
                            self.fired = Some(a.id);
                        }
                        let gone = match (a.prefix, event.prev_kv()) {
                            (true, Some(prev)) => Gone {
                                key: kv.key().to_vec(),
                                lease: prev.lease(),
                            },
                            (true, None) => Gone {
                                key: kv.key().to_vec(),
                                lease: 0,
                            },
                            (false, _) => Gone {
                                key: a.key,
                                lease: 0,
                            },
                        };
                        let _ = self.ahead_gone.send(gone);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// A step-down request: obeyed (and acknowledged) if addressed to this candidacy.
    fn consider(&self, value: &[u8], mod_revision: i64) {
        match step_down::examine(value, &self.me) {
            step_down::Verdict::Obey(r) => {
                tracing::info!(by = ?r.by, "step-down requested through etcd");
                let _ = self.step_down.send(self.me.revision);
                let (connector, key) = (self.connector.clone(), self.request_key.clone());
                tokio::spawn(async move {
                    step_down::acknowledge(&connector, &String::from_utf8_lossy(&key), mod_revision)
                        .await
                });
            }
            step_down::Verdict::Ignore(why) => {
                tracing::debug!(%why, "ignoring a step-down request for another leadership")
            }
        }
    }

    fn refused(&mut self, why: &str) {
        tracing::warn!(key = %String::from_utf8_lossy(&self.request_key), error = %why,
            "cannot read step-down requests (grant read and write on this key): `singleton-exec resign` will not reach this leader");
        self.requests_from = None;
    }
}

async fn watch_ahead(stream: &mut WatchStream, a: &Ahead) -> Result<(), EtcdError> {
    let mut opts = WatchOptions::new()
        .with_watch_id(a.id)
        .with_start_revision(a.from);
    if a.prefix {
        // The deleted slot key's lease tells the claimer whose child may still run.
        opts = opts.with_prefix().with_prev_key();
    }
    stream.watch(a.key.clone(), Some(opts)).await?;
    Ok(())
}
