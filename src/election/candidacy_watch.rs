//! One etcd watch stream per candidacy, set up when the candidate joins the queue and kept until
//! its leadership ends: it watches our own key (deleted, or put by another client with another
//! lease or create revision: our place, or our leadership, is gone),
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
//!
//! What each reply on the stream means, and when to watch again, is decided in
//! [`crate::election::watch_state`], on plain data; this module does the I/O.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use etcd_client::{Client, GetOptions, WatchOptions, WatchStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::clock::BootInstant;
use crate::core::lifecycle::LeaseId;
use crate::election::answer::Found;
use crate::election::connector::{Conn, Connector, EtcdError};
use crate::election::queue::{Candidacy, Election, WaitAhead};
use crate::election::step_down;
use crate::election::watch_state::{
    pause_after, Ahead, Effect, Ended, Gone, Reply, Watches, OWN, REQUESTS, RETRY,
};

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
    /// The store revision at which our key was deleted (or changed), once known (0: not known).
    deleted_at: Arc<AtomicI64>,
    /// Whether our key was lost to another client's put rather than deleted.
    changed: Arc<AtomicBool>,
    /// The latest store revision at which our key was known to exist.
    alive_at: Arc<AtomicI64>,
    /// When a wait for a key ahead (or a slot key) last ended.
    woken_at: Option<BootInstant>,
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
        let changed = Arc::new(AtomicBool::new(false));
        let alive_at = Arc::new(AtomicI64::new(joined_at));
        let mut task = Task {
            connector,
            me: me.clone(),
            request_key: election.resign_key().into_bytes(),
            watches: Watches::new(joined_at),
            commands: rx,
            ahead_gone: ahead_tx,
            own_deleted: own_tx,
            deleted_at: deleted_at.clone(),
            changed: changed.clone(),
            alive_at: alive_at.clone(),
            step_down,
        };
        let task = tokio::spawn(async move { task.run().await });
        CandidacyWatch {
            commands,
            ahead_gone,
            own_deleted,
            deleted_at,
            changed,
            alive_at,
            woken_at: None,
            task,
        }
    }

    /// Resolves once our key is gone (deleted, its lease expired, or put by another client with
    /// another lease or create revision), and again every time it is awaited after that.
    pub async fn own_deleted(&mut self) {
        wait_true(&mut self.own_deleted).await
    }

    /// Whether our key is known to be gone (deleted, its lease expired, found missing, or
    /// changed by another client).
    pub fn was_deleted(&self) -> bool {
        *self.own_deleted.borrow()
    }

    /// Whether our key is gone because another client put it (another lease or create revision),
    /// not because it was deleted.
    pub fn was_changed(&self) -> bool {
        self.was_deleted() && self.changed.load(Ordering::SeqCst)
    }

    /// The store revision at which our key was deleted (or changed), if it was and the watch saw
    /// it (not found missing or replaced after a break).
    pub fn deleted_at(&self) -> Option<i64> {
        Some(self.deleted_at.load(Ordering::SeqCst)).filter(|&r| r > 0)
    }

    /// The latest store revision at which our key was known to exist (at least the join's).
    pub fn alive_at(&self) -> i64 {
        self.alive_at.load(Ordering::SeqCst)
    }

    /// When a wait for the key ahead ([`WaitAhead::wait_ahead_gone`]) or for a slot key
    /// ([`CandidacyWatch::wait_deleted_under`]) last ended with a deletion; `None` if none did.
    /// For a candidate that leads next: when it became first in line (a takeover's start).
    pub fn woken_at(&self) -> Option<BootInstant> {
        self.woken_at
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
                    Some(g) if g.key == key => {
                        self.woken_at = Some(BootInstant::now());
                        return Ok(());
                    }
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
                Some(g) => {
                    self.woken_at = Some(BootInstant::now());
                    Ok((g.key, Some(LeaseId(g.lease)).filter(|l| l.0 != 0)))
                }
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

struct Task {
    connector: Arc<Connector>,
    me: Candidacy,
    request_key: Vec<u8>,
    /// Where each watch stands (the decisions on what the stream says are made there).
    watches: Watches,
    commands: UnboundedReceiver<Command>,
    ahead_gone: UnboundedSender<Gone>,
    own_deleted: watch::Sender<bool>,
    deleted_at: Arc<AtomicI64>,
    changed: Arc<AtomicBool>,
    alive_at: Arc<AtomicI64>,
    step_down: UnboundedSender<i64>,
}

impl Task {
    async fn run(&mut self) {
        let mut backoff = RETRY.start();
        let mut fresh = true;
        loop {
            let began = tokio::time::Instant::now();
            let ended = match self.connector.get().await {
                Ok(conn) => self.round(&conn, fresh).await,
                Err(e) => Ended::NoConnection(e),
            };
            let Some(pause) = pause_after(&ended, &mut backoff, began.elapsed()) else {
                self.key_lost(&ended);
                return;
            };
            match &ended {
                Ended::NoConnection(e) => {
                    tracing::debug!(error = %e, "candidacy watch: no etcd connection; retrying")
                }
                Ended::Broke(e) => {
                    tracing::debug!(error = %e, "candidacy watch broke; re-watching")
                }
                Ended::Canceled(why) => {
                    tracing::debug!(%why, "candidacy watch canceled; re-watching")
                }
                Ended::OwnDeleted(_) | Ended::OwnChanged(_) => {}
            }
            // After a break, read each key again: its history may be compacted, and a key found
            // gone counts as deleted.
            fresh &= matches!(ended, Ended::NoConnection(_));
            tokio::time::sleep(pause).await;
        }
    }

    /// Our key is gone (`ended` says how): the handle learns when, and whether it was changed.
    fn key_lost(&self, ended: &Ended) {
        let at = match *ended {
            Ended::OwnChanged(at) => {
                tracing::warn!(key = %self.me.key, revision = at,
                    "our key was changed by another client (another lease or create revision): it is not ours any more");
                self.changed.store(true, Ordering::SeqCst);
                at
            }
            Ended::OwnDeleted(at) => at.unwrap_or(0),
            _ => 0,
        };
        self.deleted_at.store(at, Ordering::SeqCst);
        let _ = self.own_deleted.send(true);
    }

    /// One round on connection `conn`: a re-read of every key (unless `fresh`), then the stream
    /// until it ends. A broken connection is reported to the connector.
    async fn round(&mut self, conn: &Conn, fresh: bool) -> Ended {
        let mut client = conn.client.clone();
        // Reading and setting up on a connection that is given up meanwhile (the keepalives
        // found it dead) may hang until the request timeout: start over on the next one.
        let mut moves = self.connector.moves();
        let ended = tokio::select! {
            ended = async {
                let ready = if fresh { Ok(true) } else { self.reread(&mut client).await };
                match ready {
                    Ok(true) => self.stream(&mut client, conn.generation).await,
                    Ok(false) => Ended::OwnDeleted(None),
                    Err(e) => Ended::Broke(e),
                }
            } => ended,
            _ = moved_from(&mut moves, conn.generation) => {
                Ended::Canceled("the connection was given up".into())
            }
        };
        if let Ended::Broke(e) = &ended {
            self.connector
                .report(conn.generation, &conn.endpoint, e.clone());
        }
        ended
    }

    /// Reads our key, the candidate ahead and the request key again, and sets where each watch
    /// resumes. A deletion found here is acted on as if watched; `Ok(false)`: our key is gone.
    async fn reread(&mut self, client: &mut Client) -> Result<bool, EtcdError> {
        let resp = client.get(self.me.key.as_bytes(), None).await?;
        let at = resp.header().map(|h| h.revision()).unwrap_or_default();
        let own = resp.kvs().first().map(Found::of);
        let Some(effects) = self.watches.own_reread(own.as_ref(), at, &self.me) else {
            return Ok(false);
        };
        self.alive_at.fetch_max(at, Ordering::SeqCst);
        self.apply(effects);
        if let Some(key) = self.watches.ahead.as_ref().map(|a| a.key.clone()) {
            let resp = client
                .get(key, Some(GetOptions::new().with_keys_only()))
                .await?;
            let found = resp.kvs().first().map(Found::of);
            let gone = self.watches.ahead_reread(found.as_ref(), at, &self.me);
            self.apply(gone.map(Effect::AheadGone));
        }
        if self.watches.requests_from.is_some() {
            match client
                .get(self.request_key.clone(), None)
                .await
                .map_err(EtcdError::from)
            {
                Ok(resp) => {
                    let at = resp.header().map(|h| h.revision()).unwrap_or_default();
                    let found = resp.kvs().first().map(Found::of);
                    let request = self.watches.requests_reread(found.as_ref(), at, &self.me);
                    self.apply(request);
                }
                Err(EtcdError::Rejected(why)) => {
                    self.watches.requests_from = None;
                    self.apply([Effect::RequestsRefused(why)]);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Sets up every watch on a new stream, then follows it and the waiter's commands until it
    /// ends.
    async fn stream(&mut self, client: &mut Client, generation: u64) -> Ended {
        self.watches.stream_starts();
        let mut moves = self.connector.moves();
        let mut stream = match self.open(client).await {
            Ok(s) => s,
            Err(e) => return Ended::Broke(e),
        };
        loop {
            tokio::select! {
                // A stream on a connection that was found dead may stall without an error.
                _ = moved_from(&mut moves, generation) => {
                    return Ended::Canceled("the connection was given up".into());
                }
                Some(cmd) = self.commands.recv() => {
                    let Command::WatchAhead { key, from, prefix } = cmd;
                    if let Err(e) = self.watch_next_ahead(&mut stream, key, from, prefix).await {
                        return Ended::Broke(e);
                    }
                }
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return Ended::Broke(EtcdError::Unavailable("watch stream closed".into())),
                        Err(e) => return Ended::Broke(e.into()),
                    };
                    let heard = self.watches.on_reply(&Reply::of(&resp), &self.me);
                    self.apply(heard.effects);
                    if let Some(ended) = heard.ended {
                        return ended;
                    }
                }
            }
        }
    }

    /// Opens the stream with the watch of our key, then the request key's and the candidate
    /// ahead's, each from where it resumes.
    async fn open(&mut self, client: &mut Client) -> Result<WatchStream, EtcdError> {
        let own = WatchOptions::new()
            .with_watch_id(OWN)
            .with_start_revision(self.watches.own_from);
        let mut stream = client.watch(self.me.key.as_bytes(), Some(own)).await?;
        if let Some(from) = self.watches.requests_from {
            let opts = WatchOptions::new()
                .with_watch_id(REQUESTS)
                .with_start_revision(from);
            stream.watch(self.request_key.clone(), Some(opts)).await?;
        }
        if let Some(a) = &self.watches.ahead {
            watch_ahead(&mut stream, a).await?;
        }
        Ok(stream)
    }

    /// The waiter's next key ahead: recorded before anything is sent (if the stream breaks, or
    /// this future is dropped, meanwhile, the re-read after the break acts on it), then a fired
    /// watch of the slot keys is canceled and the new one set up.
    async fn watch_next_ahead(
        &mut self,
        stream: &mut WatchStream,
        key: Vec<u8>,
        from: i64,
        prefix: bool,
    ) -> Result<(), EtcdError> {
        if let Some(id) = self.watches.watch_ahead(key, from, prefix) {
            stream.cancel(id).await?;
        }
        if let Some(a) = &self.watches.ahead {
            watch_ahead(stream, a).await?;
        }
        Ok(())
    }

    fn apply(&self, effects: impl IntoIterator<Item = Effect>) {
        for effect in effects {
            match effect {
                Effect::AheadGone(gone) => {
                    tracing::trace!("the candidate ahead is gone");
                    let _ = self.ahead_gone.send(gone);
                }
                Effect::StepDown { by, mod_revision } => self.obey(&by, mod_revision),
                Effect::Ignored(why) => {
                    tracing::debug!(%why, "ignoring a step-down request for another leadership")
                }
                Effect::RequestsRefused(why) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&self.request_key), error = %why,
                        "cannot read step-down requests: `resign` will not reach this leader (grant read and write on this key)");
                }
            }
        }
    }

    /// A step-down request addressed to this candidacy: obeyed, and acknowledged.
    fn obey(&self, by: &str, mod_revision: i64) {
        tracing::info!(?by, "step-down requested through etcd");
        let _ = self.step_down.send(self.me.revision);
        let (connector, key) = (self.connector.clone(), self.request_key.clone());
        tokio::spawn(async move {
            step_down::acknowledge(&connector, &String::from_utf8_lossy(&key), mod_revision).await
        });
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
