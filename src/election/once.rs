//! `--once NAME`: a command run once across the cluster, to success, never two runs at a time.
//!
//! Keys, under `PREFIX/ELECTION@once/NAME` (outside every election's key space, for the reasons
//! given for [`Election::resign_key`]: `@` is in no name, and NAME, an election name, has no `/`):
//! * `…/NAME/<lease hex>` = id: the queue, etcd's election layout (`etcdctl elect` sees it as the
//!   election `PREFIX/ELECTION@once/NAME`), with its tree markers at `…/NAME@tree/` and the same
//!   fencing revision, fail-closed deadline and predecessor wait as any election of ours. The head
//!   of the queue is the *runner*; the others *wait*;
//! * `…/NAME@attempts`: the runs so far ([`Attempts`], JSON, no lease): the failed ones (counted),
//!   those cut short (a crash, a lost lease: not counted, run again), and the run in progress;
//! * `…/NAME@record`: the completion record ([`Record`], JSON, no lease), written only by a run
//!   that succeeded. While it exists, every invocation with NAME exits 0 without running.
//!
//! `singleton-exec once clear NAME` deletes the last two, while no replica holds a queue key or a
//! tree marker under NAME (`etcdctl del` of each does the same, without that check);
//! the queue's keys go with their leases as always. Never `del --prefix …/NAME@`: that takes the
//! tree markers too, which the queue's predecessor wait relies on.
//!
//! Why never two runs at once: a run starts only at the head of the queue, with its key verified,
//! after the predecessor wait ([`Election::wait_turn`]) found every earlier runner's tree dead, and
//! under the lease's fail-closed deadline; exactly what makes a leader's child the only one.
//!
//! Why every write is fenced: the three writes of a run are transactions guarded by the runner's
//! key, its lease and its create revision (the fencing revision) still being what it verified:
//! * *begin* ([`OnceLayout::begin`]): the run in progress, and the attempt it is, are written only
//!   if no record exists and the attempts are as read (a compare on their mod revision);
//! * *success* ([`OnceLayout::succeed`]): the record, the run's end, the deletion of the runner's
//!   key and its tree marker `released`, all in one transaction, the one that ends the run. A
//!   runner whose key is gone (deleted, its lease revoked or expired) cannot write a record: a
//!   waiter may already have taken over. Its else branch reads the record, so a retry after an
//!   answer that was lost tells an earlier success of our own from none;
//! * *failure* ([`OnceLayout::fail`]): the failed count + 1 and the run's end, with the same
//!   release, guarded by the key and the attempts' mod revision (an atomic increment).
//!
//! A waiter learns the outcome only by reading it here, at the head of the queue (or before it
//! joins): a record, or as many failed runs as its `--once-attempts`. What it reports is what it
//! read. The decisions on what was read are pure ([`settled`], [`at_head`], [`run_end`]) and
//! tested by table.

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
};

use crate::core::exit_code::{ChildStatus, Exit};
use crate::core::lifecycle::{LeaseId, Next, StopReason};
use crate::election::answer::{Answer, Found};
use crate::election::connector::EtcdError;
use crate::election::queue::{
    no_key_under, still_ours, Candidacy, Candidate, Election, TREE_RELEASED,
};

/// The keys of one run-once NAME of an election.
#[derive(Debug, Clone)]
pub struct OnceLayout {
    /// The run-once name.
    pub name: String,
    /// The queue of its invocations: `PREFIX/ELECTION@once/NAME/`.
    pub queue: Election,
    /// `PREFIX/ELECTION@once/NAME`.
    base: String,
}

impl OnceLayout {
    pub fn new(prefix: &str, election: &str, name: &str) -> OnceLayout {
        let base = format!("{prefix}/{election}@once/{name}");
        OnceLayout {
            name: name.to_owned(),
            queue: Election::new(prefix, &format!("{election}@once/{name}")),
            base,
        }
    }

    /// The completion record: `PREFIX/ELECTION@once/NAME@record`.
    pub fn record_key(&self) -> String {
        format!("{}@record", self.base)
    }

    /// The runs so far: `PREFIX/ELECTION@once/NAME@attempts`.
    pub fn attempts_key(&self) -> String {
        format!("{}@attempts", self.base)
    }
}

/// One run of the command: who, under which candidacy, since when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Which attempt it is, from 1: the failed runs before it + 1 (a run cut short is run again
    /// as the same attempt).
    pub attempt: u32,
    /// The runner's `--id`.
    pub id: String,
    /// The runner's key in the queue.
    pub key: String,
    /// The runner key's create revision, handed to the command as `SINGLETON_EXEC_REVISION`.
    pub fencing_revision: i64,
    /// Unix time, milliseconds.
    pub started_at_ms: u64,
    /// `None` while it runs, or when it was cut short (its runner never wrote an end).
    pub ended: Option<Ended>,
}

/// How a run ended, as its runner wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// As a shell reports it: N, or 128+S.
    pub exit_code: i32,
    /// In words: `exited with status 3`, `killed by SIGKILL`.
    pub status: String,
    /// Unix time, milliseconds.
    pub ended_at_ms: u64,
}

/// The runs so far (`…@attempts`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attempts {
    /// Runs that ended in failure (non-zero, or a signal of their own): counted attempts.
    pub failed: u32,
    /// Runs cut short (their runner crashed, lost its lease, or was stopped) and run again.
    pub interrupted: u32,
    /// The `--once-attempts` of the runner that wrote this, for `status`.
    pub max_attempts: u32,
    /// The last run begun: in progress (or cut short) while it has no end.
    pub run: Option<Run>,
    /// The last run that failed.
    pub last_failure: Option<Run>,
    /// The run before `run` (cut short, or failed), as its begin found it: what a runner whose
    /// begin's answer was lost, and which so reads back its own run, tells its command.
    pub previous: Option<Run>,
}

/// The completion record (`…@record`): the run that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub id: String,
    pub key: String,
    pub fencing_revision: i64,
    pub attempt: u32,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

impl Record {
    pub fn duration_ms(&self) -> u64 {
        self.finished_at_ms.saturating_sub(self.started_at_ms)
    }
}

/// A value under one of our keys that we cannot read: refused, never guessed at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{key} holds something that is not ours ({why}): look at it, then `singleton-exec once clear`"
)]
pub struct Unreadable {
    pub key: String,
    pub why: String,
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z): later instants are
/// shown as it, never a panic.
const LAST_MS: u64 = 253_402_300_799_999;

/// Unix milliseconds as RFC 3339 (UTC, milliseconds), as stored.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(LAST_MS));
    humantime::format_rfc3339_millis(at).to_string()
}

/// RFC 3339 back to Unix milliseconds.
fn unix_ms(text: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339_weak(text).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

fn u32_of(v: &serde_json::Value) -> Option<u32> {
    u32::try_from(v.as_u64()?).ok()
}

impl Ended {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "exit_code": self.exit_code,
            "status": self.status,
            "ended_at": rfc3339(self.ended_at_ms),
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<Ended> {
        Some(Ended {
            exit_code: i32::try_from(v["exit_code"].as_i64()?).ok()?,
            status: v["status"].as_str()?.to_owned(),
            ended_at_ms: unix_ms(v["ended_at"].as_str()?)?,
        })
    }
}

impl Run {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "attempt": self.attempt,
            "id": self.id,
            "key": self.key,
            "fencing_revision": self.fencing_revision,
            "started_at": rfc3339(self.started_at_ms),
            "ended": self.ended.as_ref().map(Ended::to_json),
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<Run> {
        Some(Run {
            attempt: u32_of(&v["attempt"])?,
            id: v["id"].as_str()?.to_owned(),
            key: v["key"].as_str()?.to_owned(),
            fencing_revision: v["fencing_revision"].as_i64()?,
            started_at_ms: unix_ms(v["started_at"].as_str()?)?,
            ended: match &v["ended"] {
                serde_json::Value::Null => None,
                e => Some(Ended::from_json(e)?),
            },
        })
    }

    /// Whether this run was begun by candidacy `me`.
    fn is_of(&self, me: &Candidacy) -> bool {
        self.fencing_revision == me.revision && self.key == me.key
    }
}

/// An optional run in JSON: absent is `null`; a run that cannot be read fails the whole value.
fn optional_run(v: &serde_json::Value) -> Option<Option<Run>> {
    match v {
        serde_json::Value::Null => Some(None),
        r => Run::from_json(r).map(Some),
    }
}

impl Attempts {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "failed": self.failed,
            "interrupted": self.interrupted,
            "max_attempts": self.max_attempts,
            "run": self.run.as_ref().map(Run::to_json),
            "last_failure": self.last_failure.as_ref().map(Run::to_json),
            "previous": self.previous.as_ref().map(Run::to_json),
        })
        .to_string()
    }

    pub fn from_json(bytes: &[u8]) -> Option<Attempts> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(Attempts {
            failed: u32_of(&v["failed"])?,
            interrupted: u32_of(&v["interrupted"])?,
            max_attempts: u32_of(&v["max_attempts"])?,
            run: optional_run(&v["run"])?,
            last_failure: optional_run(&v["last_failure"])?,
            previous: optional_run(&v["previous"])?,
        })
    }
}

impl Record {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "name": self.name,
            "id": self.id,
            "key": self.key,
            "fencing_revision": self.fencing_revision,
            "attempt": self.attempt,
            "started_at": rfc3339(self.started_at_ms),
            "finished_at": rfc3339(self.finished_at_ms),
            "duration_ms": self.duration_ms(),
        })
        .to_string()
    }

    pub fn from_json(bytes: &[u8]) -> Option<Record> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(Record {
            name: v["name"].as_str()?.to_owned(),
            id: v["id"].as_str()?.to_owned(),
            key: v["key"].as_str()?.to_owned(),
            fencing_revision: v["fencing_revision"].as_i64()?,
            attempt: u32_of(&v["attempt"])?,
            started_at_ms: unix_ms(v["started_at"].as_str()?)?,
            finished_at_ms: unix_ms(v["finished_at"].as_str()?)?,
        })
    }
}

/// The outcome as read: the record, the attempts (each absent or readable), and the attempts'
/// mod revision (0 when absent), which a write of them compares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub record: Option<Record>,
    pub attempts: Option<Attempts>,
    pub attempts_mod: i64,
}

impl Outcome {
    /// What `record` and `attempts`, read from their keys, say; a value that is not ours is refused.
    pub fn of(
        layout: &OnceLayout,
        record: Option<&Found>,
        attempts: Option<&Found>,
    ) -> Result<Outcome, Unreadable> {
        let unreadable = |key: String| Unreadable {
            key,
            why: "not the JSON singleton-exec writes".into(),
        };
        let record = match record {
            None => None,
            Some(kv) => {
                Some(Record::from_json(&kv.value).ok_or_else(|| unreadable(layout.record_key()))?)
            }
        };
        let (attempts, attempts_mod) = match attempts {
            None => (None, 0),
            Some(kv) => (
                Some(
                    Attempts::from_json(&kv.value)
                        .ok_or_else(|| unreadable(layout.attempts_key()))?,
                ),
                kv.mod_revision,
            ),
        };
        Ok(Outcome {
            record,
            attempts,
            attempts_mod,
        })
    }
}

/// An outcome every waiter exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// A run succeeded: exit 0.
    Done(Record),
    /// `failed` runs failed, as many as our `--once-attempts` or more: exit with the last one's
    /// status.
    GaveUp { last: Run, failed: u32 },
}

impl Settled {
    /// How a replica that did not run the command exits.
    pub fn exit(&self) -> Exit {
        match self {
            Settled::Done(_) => Exit::Recorded(0),
            // Never 0 (which says the command succeeded), nor a value the exit status would
            // cut to 0 (256): a failure's status as written is 1-255; anything else (a value
            // written by hand) exits 1.
            Settled::GaveUp { last, .. } => Exit::Recorded(
                last.ended
                    .as_ref()
                    .map(|e| e.exit_code)
                    .filter(|c| (1..=255).contains(c))
                    .unwrap_or(1),
            ),
        }
    }
}

/// Whether `outcome` settles it for an invocation allowed `max` failed runs: a record, or `max`
/// failed runs (with the last one's end to report).
pub fn settled(outcome: &Outcome, max: u32) -> Option<Settled> {
    if let Some(r) = &outcome.record {
        return Some(Settled::Done(r.clone()));
    }
    let a = outcome.attempts.as_ref()?;
    match &a.last_failure {
        Some(last) if a.failed >= max && last.ended.is_some() => Some(Settled::GaveUp {
            last: last.clone(),
            failed: a.failed,
        }),
        _ => None,
    }
}

/// What the head of the queue does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtHead {
    /// Nothing to run: exit with it.
    Settled(Settled),
    /// Run, after writing `write` (the attempts with `run` in progress). `previous`: the run
    /// before, when there was one (cut short, or failed), for the command to know it reruns.
    Begin {
        write: Box<Attempts>,
        run: Run,
        previous: Option<Run>,
    },
    /// Our own begin went through already (its answer was lost): run it.
    Resume { run: Run, previous: Option<Run> },
}

/// The head of the queue, candidacy `me` (replica `id`, `--once-attempts` `max`), read
/// `outcome`: settled, or which attempt to run. A run in progress that is not ours was cut short:
/// its runner is gone (we lead, after the predecessor wait), so it is run again, as the same
/// attempt, counted as interrupted.
pub fn at_head(outcome: &Outcome, max: u32, me: &Candidacy, id: &str, now_ms: u64) -> AtHead {
    if let Some(s) = settled(outcome, max) {
        return AtHead::Settled(s);
    }
    let a = outcome.attempts.clone().unwrap_or_default();
    let last = a.run.clone();
    match &last {
        Some(r) if r.ended.is_none() && r.is_of(me) => {
            return AtHead::Resume {
                run: r.clone(),
                previous: a.previous.clone(),
            }
        }
        _ => {}
    }
    let cut_short = last.as_ref().is_some_and(|r| r.ended.is_none());
    let previous = last.or(a.last_failure.clone());
    let run = Run {
        attempt: a.failed.saturating_add(1),
        id: id.to_owned(),
        key: me.key.clone(),
        fencing_revision: me.revision,
        started_at_ms: now_ms,
        ended: None,
    };
    let write = Box::new(Attempts {
        failed: a.failed,
        interrupted: a.interrupted.saturating_add(u32::from(cut_short)),
        max_attempts: max,
        run: Some(run.clone()),
        last_failure: a.last_failure.clone(),
        previous: previous.clone(),
    });
    AtHead::Begin {
        write,
        run,
        previous,
    }
}

/// How a run ended, for the outcome: it succeeded or failed by itself, or it was cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Succeeded,
    /// Non-zero, a signal not ours, or a command that could not be started.
    Failed {
        exit_code: i32,
        status: String,
    },
    /// Stopped by us (a shutdown, a lost lease or key, a step-down, Ctrl-Z), or never started:
    /// no outcome; the next runner runs it again.
    Interrupted,
}

/// What a leadership's end (`reason`, why its tree was stopped first; `next`, what follows;
/// `shutdown`, the shutdown signal the replica took, if any) says of the run. Only a child that
/// exited by itself has an outcome; a child we stopped has none, even if it exited 0 on our stop
/// signal (it may not have finished its work). Nor has a child killed by the very signal the
/// replica took as its shutdown: with the terminal handed over, Ctrl-C (Ctrl-\\, a hang-up)
/// reaches only the child, and its death by it is the user's request to stop this invocation
/// (the process thread says so by a shutdown), not a failed run for every waiter to exit with.
pub fn run_end(reason: Option<StopReason>, next: Next, shutdown: Option<libc::c_int>) -> RunEnd {
    match (reason, next) {
        (Some(StopReason::ChildExited), Next::Exit(Exit::Child(ChildStatus::Signaled(sig))))
            if shutdown == Some(sig) =>
        {
            RunEnd::Interrupted
        }
        (Some(StopReason::ChildExited), Next::Exit(Exit::Child(ChildStatus::Exited(0)))) => {
            RunEnd::Succeeded
        }
        (Some(StopReason::ChildExited), Next::Exit(Exit::Child(status))) => RunEnd::Failed {
            exit_code: status.code(),
            status: status.to_string(),
        },
        (None, Next::Exit(e @ (Exit::NotFound | Exit::NotExecutable))) => RunEnd::Failed {
            exit_code: e.code(),
            status: match e {
                Exit::NotFound => "the command was not found".into(),
                _ => "the command could not be executed".into(),
            },
        },
        _ => RunEnd::Interrupted,
    }
}

/// The attempts after `run` (begun in `attempts`) failed: one more failed, the run ended.
pub fn after_failure(attempts: &Attempts, run: &Run, ended: Ended) -> Attempts {
    let done = Run {
        ended: Some(ended),
        ..run.clone()
    };
    Attempts {
        failed: attempts.failed.saturating_add(1),
        run: Some(done.clone()),
        last_failure: Some(done),
        ..attempts.clone()
    }
}

/// The record and the attempts after `run` (begun in `attempts`) succeeded at `now_ms`.
pub fn after_success(
    name: &str,
    attempts: &Attempts,
    run: &Run,
    now_ms: u64,
) -> (Record, Attempts) {
    let record = Record {
        name: name.to_owned(),
        id: run.id.clone(),
        key: run.key.clone(),
        fencing_revision: run.fencing_revision,
        attempt: run.attempt,
        started_at_ms: run.started_at_ms,
        finished_at_ms: now_ms,
    };
    let ended = Ended {
        exit_code: 0,
        status: ChildStatus::Exited(0).to_string(),
        ended_at_ms: now_ms,
    };
    let attempts = Attempts {
        run: Some(Run {
            ended: Some(ended),
            ..run.clone()
        }),
        ..attempts.clone()
    };
    (record, attempts)
}

/// A run begun by us: what the end's transaction compares and writes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begun {
    pub run: Run,
    /// The attempts as we wrote them (or, resumed, as read).
    pub attempts: Attempts,
    /// Their mod revision then.
    pub attempts_mod: i64,
    /// The run before ours, if any.
    pub previous: Option<Run>,
}

/// What the head of the queue found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Nothing to run.
    Settled(Settled),
    /// Our run is begun: start the command.
    Run(Box<Begun>),
    /// Our key is gone: join again.
    Lost,
}

/// How a run's end was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The record (or the failed attempt) is in etcd, and our key released with it.
    Done(Box<Attempts>),
    /// Our key is gone (deleted, its lease revoked or expired): nothing written.
    NotOurs,
}

/// What `once clear` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// Deleted; what was there (either may be absent, or unreadable: then `None` as well).
    Done {
        record: Option<Box<Record>>,
        attempts: Option<Box<Attempts>>,
        found: bool,
    },
    /// Replicas wait or run under the name: nothing deleted. `queue`: the queue, head first;
    /// `finishing`: replicas out of the queue that still hold a tree marker (a runner still
    /// writing its outcome, whose key its success or failure already deleted, or one whose tree
    /// may still be dying).
    Busy {
        queue: Vec<Candidate>,
        finishing: usize,
    },
}

/// The outcome and the queue at one revision, as `status --once` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceView {
    pub revision: i64,
    pub outcome: Outcome,
    /// The queue, head (the runner, or a waiter reading the outcome) first.
    pub queue: Vec<Candidate>,
}

// The positions of [`OnceLayout::read_txn`]'s reads.
const READ_RECORD: usize = 0;
const READ_ATTEMPTS: usize = 1;
const READ_QUEUE: usize = 2;

// The positions of [`OnceLayout::begin_txn`]'s reads (its else branch).
const BEGIN_RECORD: usize = 0;
const BEGIN_ATTEMPTS: usize = 1;
const BEGIN_MINE: usize = 2;

// The position of [`OnceLayout::success_txn`]'s read (its else branch).
const SUCCESS_RECORD: usize = 0;

// The positions of [`OnceLayout::failure_txn`]'s reads (its else branch).
const FAILURE_ATTEMPTS: usize = 0;
const FAILURE_MINE: usize = 1;

// The positions of [`OnceLayout::clear_txn`]'s reads: then, what is deleted; else, the queue
// and the tree markers.
const CLEAR_RECORD: usize = 0;
const CLEAR_ATTEMPTS: usize = 1;
const CLEAR_QUEUE: usize = 0;
const CLEAR_TREES: usize = 1;

/// How many times a begin or a failure is written again after the attempts changed under it (an
/// operator's `once clear`, never another runner): then the caller's retry takes over.
const CONTENDED: usize = 8;

/// The release of a run's end, beside its outcome: the runner's tree marker says `released`,
/// when the runner could write one (`tree`: its tree lease).
fn release_ops(queue: &Election, me: &Candidacy, tree: Option<LeaseId>) -> Vec<TxnOp> {
    let mut ops = vec![TxnOp::delete(me.key.clone(), None)];
    if let Some(tree) = tree {
        let opts = PutOptions::new().with_lease(tree.0);
        ops.push(TxnOp::put(
            queue.tree_key(me.lease),
            TREE_RELEASED,
            Some(opts),
        ));
    }
    ops
}

/// Whether `mine`, a read of our key, shows it still ours.
fn still_mine(me: &Candidacy, mine: Option<&Found>) -> bool {
    mine.is_some_and(|kv| me.is_ours(kv))
}

impl OnceLayout {
    /// The record, the attempts and the queue, at one revision.
    fn read_txn(&self) -> Txn {
        let queue = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        Txn::new().and_then([
            TxnOp::get(self.record_key(), None),
            TxnOp::get(self.attempts_key(), None),
            TxnOp::get(self.queue.dir(), Some(queue)),
        ])
    }

    /// If `me` is still ours, no record exists and the attempts are as read (`seen`, their mod
    /// revision, 0 for none): write `write`. Else read the record, the attempts and our key.
    fn begin_txn(&self, me: &Candidacy, seen: i64, write: &Attempts) -> Txn {
        let mut when = still_ours(me).to_vec();
        when.push(Compare::create_revision(
            self.record_key(),
            CompareOp::Equal,
            0,
        ));
        when.push(Compare::mod_revision(
            self.attempts_key(),
            CompareOp::Equal,
            seen,
        ));
        Txn::new()
            .when(when)
            .and_then([TxnOp::put(self.attempts_key(), write.to_json(), None)])
            .or_else([
                TxnOp::get(self.record_key(), None),
                TxnOp::get(self.attempts_key(), None),
                TxnOp::get(me.key.clone(), None),
            ])
    }

    /// The end of a run that succeeded: if `me` is still ours, the record, the attempts and the
    /// release together. Else read the record.
    fn success_txn(
        &self,
        me: &Candidacy,
        tree: Option<LeaseId>,
        record: &Record,
        attempts: &Attempts,
    ) -> Txn {
        let mut ops = vec![
            TxnOp::put(self.record_key(), record.to_json(), None),
            TxnOp::put(self.attempts_key(), attempts.to_json(), None),
        ];
        ops.extend(release_ops(&self.queue, me, tree));
        Txn::new()
            .when(still_ours(me))
            .and_then(ops)
            .or_else([TxnOp::get(self.record_key(), None)])
    }

    /// The end of a run that failed: if `me` is still ours and the attempts are as we wrote
    /// them (`seen`), the attempts with one more failed and the release together. Else read the
    /// attempts and our key.
    fn failure_txn(
        &self,
        me: &Candidacy,
        tree: Option<LeaseId>,
        seen: i64,
        attempts: &Attempts,
    ) -> Txn {
        let mut when = still_ours(me).to_vec();
        when.push(Compare::mod_revision(
            self.attempts_key(),
            CompareOp::Equal,
            seen,
        ));
        let mut ops = vec![TxnOp::put(self.attempts_key(), attempts.to_json(), None)];
        ops.extend(release_ops(&self.queue, me, tree));
        Txn::new().when(when).and_then(ops).or_else([
            TxnOp::get(self.attempts_key(), None),
            TxnOp::get(me.key.clone(), None),
        ])
    }

    /// Deletes the record and the attempts (reading them first), if no replica waits or runs
    /// (unless `force`); else reads the queue and the tree markers. A replica is in the way
    /// while it holds a key in the queue, and also while it holds a tree marker: a runner whose
    /// outcome's transaction went through but whose answer was lost has no key any more, and
    /// reads the record back to learn that the success was its own. Cleared then, it would take
    /// its success for unrecorded, join again and run the command a second time.
    fn clear_txn(&self, force: bool) -> Txn {
        let when = if force {
            vec![]
        } else {
            vec![
                no_key_under(self.queue.dir()),
                no_key_under(&self.queue.tree_dir()),
            ]
        };
        let queue = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        Txn::new()
            .when(when)
            .and_then([
                TxnOp::get(self.record_key(), None),
                TxnOp::get(self.attempts_key(), None),
                TxnOp::delete(self.record_key(), None),
                TxnOp::delete(self.attempts_key(), None),
            ])
            .or_else([
                TxnOp::get(self.queue.dir(), Some(queue)),
                TxnOp::get(
                    self.queue.tree_dir(),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                ),
            ])
    }

    /// The outcome and the queue, at one revision.
    pub async fn read(
        &self,
        client: &mut Client,
    ) -> Result<Result<OnceView, Unreadable>, EtcdError> {
        let answer = Answer::of(&client.txn(self.read_txn()).await?);
        Ok(self.view(&answer))
    }

    fn view(&self, answer: &Answer) -> Result<OnceView, Unreadable> {
        let outcome = Outcome::of(self, answer.first(READ_RECORD), answer.first(READ_ATTEMPTS))?;
        Ok(OnceView {
            revision: answer.revision.unwrap_or_default(),
            outcome,
            queue: answer
                .read(READ_QUEUE)
                .iter()
                .map(|kv| Candidate {
                    id: String::from_utf8_lossy(&kv.value).into_owned(),
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    lease: LeaseId(kv.lease),
                    revision: kv.create_revision,
                })
                .collect(),
        })
    }

    /// At the head of the queue as `me` (replica `id`, `--once-attempts` `max`): reads the
    /// outcome and, unless it is settled, begins our run (a fenced write: [`OnceLayout::begin_txn`]).
    pub async fn begin(
        &self,
        client: &mut Client,
        me: &Candidacy,
        id: &str,
        max: u32,
        now_ms: u64,
    ) -> Result<Result<Gate, Unreadable>, EtcdError> {
        let read = Answer::of(&client.txn(self.read_txn()).await?);
        let mut outcome = match self.view(&read) {
            Ok(view) => view.outcome,
            Err(e) => return Ok(Err(e)),
        };
        for _ in 0..CONTENDED {
            let (write, run, previous) = match at_head(&outcome, max, me, id, now_ms) {
                AtHead::Settled(s) => return Ok(Ok(Gate::Settled(s))),
                AtHead::Resume { run, previous } => {
                    return Ok(Ok(Gate::Run(Box::new(Begun {
                        run,
                        attempts: outcome.attempts.clone().unwrap_or_default(),
                        attempts_mod: outcome.attempts_mod,
                        previous,
                    }))))
                }
                AtHead::Begin {
                    write,
                    run,
                    previous,
                } => (write, run, previous),
            };
            let txn = self.begin_txn(me, outcome.attempts_mod, &write);
            let answer = Answer::of(&client.txn(txn).await?);
            if answer.succeeded {
                let Some(at) = answer.revision.filter(|&r| r > 0) else {
                    return Err(EtcdError::Unavailable("a begin without a revision".into()));
                };
                return Ok(Ok(Gate::Run(Box::new(Begun {
                    run,
                    attempts: *write,
                    attempts_mod: at,
                    previous,
                }))));
            }
            if !still_mine(me, answer.first(BEGIN_MINE)) {
                return Ok(Ok(Gate::Lost));
            }
            outcome = match Outcome::of(
                self,
                answer.first(BEGIN_RECORD),
                answer.first(BEGIN_ATTEMPTS),
            ) {
                Ok(o) => o,
                Err(e) => return Ok(Err(e)),
            };
        }
        Err(EtcdError::Unavailable(format!(
            "{} kept changing while a run was begun",
            self.attempts_key()
        )))
    }

    /// Ends `begun`, which succeeded, in one transaction with our release: the record. `tree`:
    /// our tree lease, if our marker was written.
    pub async fn succeed(
        &self,
        client: &mut Client,
        me: &Candidacy,
        tree: Option<LeaseId>,
        begun: &Begun,
        now_ms: u64,
    ) -> Result<Written, EtcdError> {
        let (record, attempts) = after_success(&self.name, &begun.attempts, &begun.run, now_ms);
        let txn = self.success_txn(me, tree, &record, &attempts);
        let answer = Answer::of(&client.txn(txn).await?);
        Ok(success_written(me, &answer, attempts))
    }

    /// Ends `begun`, which failed (`ended`), in one transaction with our release: one more
    /// failed attempt. `tree`: our tree lease, if our marker was written.
    pub async fn fail(
        &self,
        client: &mut Client,
        me: &Candidacy,
        tree: Option<LeaseId>,
        begun: &Begun,
        ended: Ended,
    ) -> Result<Written, EtcdError> {
        let (mut base, mut seen) = (begun.attempts.clone(), begun.attempts_mod);
        for _ in 0..CONTENDED {
            let attempts = after_failure(&base, &begun.run, ended.clone());
            let txn = self.failure_txn(me, tree, seen, &attempts);
            let answer = Answer::of(&client.txn(txn).await?);
            match failure_written(me, &answer, attempts) {
                FailureAnswer::Written(w) => return Ok(w),
                FailureAnswer::Changed(now, at) => (base, seen) = (*now, at),
            }
        }
        Err(EtcdError::Unavailable(format!(
            "{} kept changing while a failed run was counted",
            self.attempts_key()
        )))
    }

    /// `once clear`: forgets the outcome, unless replicas wait or run (or `force`).
    pub async fn clear(&self, client: &mut Client, force: bool) -> Result<Cleared, EtcdError> {
        let answer = Answer::of(&client.txn(self.clear_txn(force)).await?);
        Ok(self.cleared(&answer))
    }

    fn cleared(&self, answer: &Answer) -> Cleared {
        if !answer.succeeded {
            let queue: Vec<Candidate> = answer
                .read(CLEAR_QUEUE)
                .iter()
                .map(|kv| Candidate {
                    id: String::from_utf8_lossy(&kv.value).into_owned(),
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    lease: LeaseId(kv.lease),
                    revision: kv.create_revision,
                })
                .collect();
            // A marker is named by its replica's candidacy lease, as its queue key is.
            let tree_dir = self.queue.tree_dir();
            let finishing = answer
                .read(CLEAR_TREES)
                .iter()
                .filter_map(|kv| {
                    let key = String::from_utf8_lossy(&kv.key).into_owned();
                    let name = key.strip_prefix(&tree_dir)?.to_owned();
                    Some(format!("{}{name}", self.queue.dir()))
                })
                .filter(|queued| !queue.iter().any(|c| &c.key == queued))
                .count();
            return Cleared::Busy { queue, finishing };
        }
        let (record, attempts) = (answer.first(CLEAR_RECORD), answer.first(CLEAR_ATTEMPTS));
        Cleared::Done {
            found: record.is_some() || attempts.is_some(),
            record: record.and_then(|kv| Record::from_json(&kv.value).map(Box::new)),
            attempts: attempts.and_then(|kv| Attempts::from_json(&kv.value).map(Box::new)),
        }
    }
}

/// What the success transaction's answer means: written now, or by an earlier try of ours whose
/// answer was lost (the record it reads back is ours); anything else is not ours to write.
fn success_written(me: &Candidacy, answer: &Answer, attempts: Attempts) -> Written {
    if answer.succeeded {
        return Written::Done(Box::new(attempts));
    }
    let ours = answer
        .first(SUCCESS_RECORD)
        .and_then(|kv| Record::from_json(&kv.value))
        .is_some_and(|r| r.fencing_revision == me.revision && r.key == me.key);
    if ours {
        Written::Done(Box::new(attempts))
    } else {
        Written::NotOurs
    }
}

/// What the failure transaction's answer means.
enum FailureAnswer {
    Written(Written),
    /// Our key is ours but the attempts changed (an operator's clear): count on these, at this
    /// mod revision.
    Changed(Box<Attempts>, i64),
}

fn failure_written(me: &Candidacy, answer: &Answer, attempts: Attempts) -> FailureAnswer {
    if answer.succeeded {
        return FailureAnswer::Written(Written::Done(Box::new(attempts)));
    }
    let found = answer.first(FAILURE_ATTEMPTS);
    let now = found.and_then(|kv| Attempts::from_json(&kv.value));
    // An earlier try went through (its answer was lost): our failure is the last one counted.
    let counted = now
        .as_ref()
        .and_then(|a| a.last_failure.as_ref())
        .is_some_and(|f| f.is_of(me));
    if counted {
        return FailureAnswer::Written(Written::Done(Box::new(now.unwrap_or(attempts))));
    }
    if !still_mine(me, answer.first(FAILURE_MINE)) {
        return FailureAnswer::Written(Written::NotOurs);
    }
    match (now, found) {
        (Some(now), Some(kv)) => FailureAnswer::Changed(Box::new(now), kv.mod_revision),
        // Cleared (or replaced by something not ours): counted afresh.
        _ => FailureAnswer::Changed(Box::default(), found.map_or(0, |kv| kv.mod_revision)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::answer::ops_of;

    fn layout() -> OnceLayout {
        OnceLayout::new("/p", "app", "m-1")
    }

    fn me() -> Candidacy {
        Candidacy {
            key: "/p/app@once/m-1/ab".into(),
            lease: LeaseId(0xab),
            revision: 50,
            leads_since: 52,
            slot: None,
        }
    }

    fn run(attempt: u32, id: &str, revision: i64, ended: Option<i32>) -> Run {
        Run {
            attempt,
            id: id.into(),
            key: format!("/p/app@once/m-1/{revision:x}"),
            fencing_revision: revision,
            started_at_ms: 1_000,
            ended: ended.map(|code| Ended {
                exit_code: code,
                status: format!("exited with status {code}"),
                ended_at_ms: 2_000,
            }),
        }
    }

    fn record(id: &str, revision: i64) -> Record {
        Record {
            name: "m-1".into(),
            id: id.into(),
            key: format!("/p/app@once/m-1/{revision:x}"),
            fencing_revision: revision,
            attempt: 1,
            started_at_ms: 1_000,
            finished_at_ms: 3_500,
        }
    }

    fn outcome(record: Option<Record>, attempts: Option<Attempts>) -> Outcome {
        Outcome {
            attempts_mod: if attempts.is_some() { 44 } else { 0 },
            record,
            attempts,
        }
    }

    fn attempts(failed: u32, interrupted: u32, run: Option<Run>, last: Option<Run>) -> Attempts {
        Attempts {
            failed,
            interrupted,
            max_attempts: 3,
            run,
            last_failure: last,
            previous: None,
        }
    }

    #[test]
    fn the_keys_are_outside_every_elections_key_space() {
        let l = layout();
        assert_eq!(l.queue.dir(), "/p/app@once/m-1/");
        assert_eq!(l.record_key(), "/p/app@once/m-1@record");
        assert_eq!(l.attempts_key(), "/p/app@once/m-1@attempts");
        assert_eq!(l.queue.tree_dir(), "/p/app@once/m-1@tree/");
        let ours = [
            l.record_key(),
            l.attempts_key(),
            l.queue.tree_dir(),
            format!("{}ab", l.queue.dir()),
        ];
        // The election's own keys, another name's, a name that is a prefix of ours.
        let others = [
            Election::new("/p", "app"),
            OnceLayout::new("/p", "app", "m").queue,
            OnceLayout::new("/p", "app", "m-10").queue,
        ];
        for key in &ours {
            for e in &others {
                assert!(!key.starts_with(e.dir()), "{key} under {}", e.dir());
                assert!(
                    !key.starts_with(&e.tree_dir()),
                    "{key} under {}",
                    e.tree_dir()
                );
            }
        }
        // A shorter name's queue holds none of ours, nor ours a longer name's.
        let long = OnceLayout::new("/p", "app", "m-10");
        assert!(!long.record_key().starts_with(l.queue.dir()));
    }

    #[test]
    fn values_round_trip_and_foreign_ones_are_refused() {
        let a = attempts(
            1,
            2,
            Some(run(2, "b", 60, None)),
            Some(run(1, "a", 40, Some(3))),
        );
        assert_eq!(Attempts::from_json(a.to_json().as_bytes()), Some(a.clone()));
        let r = record("a", 40);
        assert_eq!(Record::from_json(r.to_json().as_bytes()), Some(r.clone()));
        assert_eq!(r.duration_ms(), 2_500);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["finished_at"], "1970-01-01T00:00:03.500Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(unix_ms(&rfc3339(LAST_MS)), Some(LAST_MS));
        assert_eq!(v["duration_ms"], 2_500);
        for foreign in [&b"done"[..], b"{}", b"{\"failed\": -1}", b""] {
            assert_eq!(Attempts::from_json(foreign), None);
            assert_eq!(Record::from_json(foreign), None);
        }
        let l = layout();
        let found = |value: &[u8]| Found {
            value: value.to_vec(),
            mod_revision: 9,
            ..Found::default()
        };
        let e = Outcome::of(&l, Some(&found(b"yes")), None).unwrap_err();
        assert_eq!(e.key, "/p/app@once/m-1@record");
        let e = Outcome::of(&l, None, Some(&found(b"1"))).unwrap_err();
        assert_eq!(e.key, "/p/app@once/m-1@attempts");
        let o = Outcome::of(&l, None, Some(&found(a.to_json().as_bytes()))).unwrap();
        assert_eq!((o.attempts, o.attempts_mod), (Some(a), 9));
    }

    /// What the head of the queue does, for every shape of what it read. One row: the outcome,
    /// `--once-attempts`, then what follows (attempt run and interrupted count written, or the
    /// settled outcome's exit code), and the previous run's fencing revision.
    #[test]
    fn what_the_head_of_the_queue_does() {
        #[derive(Debug, PartialEq)]
        enum Want {
            Begin { attempt: u32, interrupted: u32 },
            Resume,
            Exit(i32),
        }
        use Want::*;
        let ours = Run {
            key: me().key,
            ..run(1, "me", 50, None)
        };
        let rows: Vec<(Outcome, u32, Want, Option<i64>)> = vec![
            // Never run: attempt 1.
            (
                outcome(None, None),
                1,
                Begin {
                    attempt: 1,
                    interrupted: 0,
                },
                None,
            ),
            // Done: exit 0 whatever else is there.
            (outcome(Some(record("a", 40)), None), 1, Exit(0), None),
            (
                outcome(
                    Some(record("a", 40)),
                    Some(attempts(5, 0, None, Some(run(5, "a", 30, Some(2))))),
                ),
                1,
                Exit(0),
                None,
            ),
            // One failure: with 1 attempt, give up with its status; with 3, attempt 2.
            (
                outcome(
                    None,
                    Some(attempts(
                        1,
                        0,
                        Some(run(1, "a", 40, Some(3))),
                        Some(run(1, "a", 40, Some(3))),
                    )),
                ),
                1,
                Exit(3),
                None,
            ),
            (
                outcome(
                    None,
                    Some(attempts(
                        1,
                        0,
                        Some(run(1, "a", 40, Some(3))),
                        Some(run(1, "a", 40, Some(3))),
                    )),
                ),
                3,
                Begin {
                    attempt: 2,
                    interrupted: 0,
                },
                Some(40),
            ),
            // A run cut short (its runner crashed): the same attempt again, counted interrupted.
            (
                outcome(
                    None,
                    Some(attempts(0, 0, Some(run(1, "a", 40, None)), None)),
                ),
                1,
                Begin {
                    attempt: 1,
                    interrupted: 1,
                },
                Some(40),
            ),
            (
                outcome(
                    None,
                    Some(attempts(
                        2,
                        1,
                        Some(run(3, "b", 45, None)),
                        Some(run(2, "a", 40, Some(1))),
                    )),
                ),
                3,
                Begin {
                    attempt: 3,
                    interrupted: 2,
                },
                Some(45),
            ),
            // Our own begin went through already (its answer was lost): run it, write nothing,
            // and tell the command the run before, as the begin found it.
            (
                outcome(None, Some(attempts(0, 0, Some(ours.clone()), None))),
                1,
                Resume,
                None,
            ),
            (
                outcome(
                    None,
                    Some(Attempts {
                        previous: Some(run(1, "a", 40, None)),
                        ..attempts(0, 1, Some(ours.clone()), None)
                    }),
                ),
                1,
                Resume,
                Some(40),
            ),
            // Failed as often as our --once-attempts, or more (another invocation allowed more).
            (
                outcome(
                    None,
                    Some(attempts(
                        3,
                        0,
                        Some(run(3, "c", 48, Some(137))),
                        Some(run(3, "c", 48, Some(137))),
                    )),
                ),
                3,
                Exit(137),
                None,
            ),
            (
                outcome(
                    None,
                    Some(attempts(
                        3,
                        0,
                        Some(run(4, "d", 49, None)),
                        Some(run(3, "c", 48, Some(2))),
                    )),
                ),
                2,
                Exit(2),
                None,
            ),
            // A success without a record (the record alone deleted by hand): not done; run.
            (
                outcome(
                    None,
                    Some(attempts(0, 0, Some(run(1, "a", 40, Some(0))), None)),
                ),
                1,
                Begin {
                    attempt: 1,
                    interrupted: 0,
                },
                Some(40),
            ),
        ];
        for (o, max, want, previous) in rows {
            let got = at_head(&o, max, &me(), "me", 7_000);
            let (shown, prev) = match &got {
                AtHead::Settled(s) => (Exit(s.exit().code()), None),
                AtHead::Resume { previous, .. } => {
                    (Resume, previous.as_ref().map(|p| p.fencing_revision))
                }
                AtHead::Begin {
                    write,
                    run,
                    previous,
                } => {
                    assert_eq!(write.run.as_ref(), Some(run), "{o:?}");
                    assert_eq!(
                        (run.fencing_revision, run.key.as_str()),
                        (50, "/p/app@once/m-1/ab")
                    );
                    assert_eq!(
                        (run.id.as_str(), run.started_at_ms, run.ended.as_ref()),
                        ("me", 7_000, None)
                    );
                    assert_eq!(write.max_attempts, max);
                    let before = o.attempts.clone().unwrap_or_default();
                    assert_eq!(write.failed, before.failed, "never counted at the start");
                    assert_eq!(write.last_failure, before.last_failure);
                    assert_eq!(&write.previous, previous, "kept for a resume");
                    (
                        Begin {
                            attempt: run.attempt,
                            interrupted: write.interrupted,
                        },
                        previous.as_ref().map(|p| p.fencing_revision),
                    )
                }
            };
            assert_eq!((&shown, prev), (&want, previous), "{o:?} max {max}");
        }
    }

    #[test]
    fn settled_only_by_a_record_or_enough_failures() {
        assert_eq!(settled(&outcome(None, None), 1), None);
        let cut_short = attempts(0, 4, Some(run(1, "a", 40, None)), None);
        assert_eq!(
            settled(&outcome(None, Some(cut_short)), 1),
            None,
            "a crash is no failure"
        );
        let failed = attempts(2, 0, None, Some(run(2, "a", 40, Some(9))));
        assert_eq!(settled(&outcome(None, Some(failed.clone())), 3), None);
        assert_eq!(
            settled(&outcome(None, Some(failed)), 2),
            Some(Settled::GaveUp {
                last: run(2, "a", 40, Some(9)),
                failed: 2
            })
        );
        let done = settled(&outcome(Some(record("a", 40)), None), 1).unwrap();
        assert_eq!(done.exit(), Exit::Recorded(0));
        // A failure exits with its status, never with one that says success.
        for (code, exit) in [(9, 9), (255, 255), (0, 1), (256, 1), (512, 1), (-1, 1)] {
            let gave_up = Settled::GaveUp {
                last: run(1, "a", 40, Some(code)),
                failed: 1,
            };
            assert_eq!(gave_up.exit(), Exit::Recorded(exit), "{code}");
        }
    }

    /// Only a child that ended by itself has an outcome; everything we stopped was cut short.
    #[test]
    fn which_ends_are_outcomes() {
        use ChildStatus::{Exited, Signaled};
        use StopReason as R;
        let exit = |s| Next::Exit(Exit::Child(s));
        let failed = |code: i32, status: &str| RunEnd::Failed {
            exit_code: code,
            status: status.into(),
        };
        let rows = [
            (Some(R::ChildExited), exit(Exited(0)), RunEnd::Succeeded),
            (
                Some(R::ChildExited),
                exit(Exited(3)),
                failed(3, "exited with status 3"),
            ),
            (
                Some(R::ChildExited),
                exit(Signaled(9)),
                failed(137, "killed by SIGKILL"),
            ),
            (
                None,
                Next::Exit(Exit::NotFound),
                failed(127, "the command was not found"),
            ),
            (
                None,
                Next::Exit(Exit::NotExecutable),
                failed(126, "the command could not be executed"),
            ),
            // Stopped by us, even if it exited 0 on our stop signal.
            (
                Some(R::Shutdown(libc::SIGTERM)),
                exit(Exited(0)),
                RunEnd::Interrupted,
            ),
            (
                Some(R::Shutdown(libc::SIGINT)),
                exit(Signaled(2)),
                RunEnd::Interrupted,
            ),
            (
                Some(R::LeaseGone),
                Next::Recampaign { holdoff: false },
                RunEnd::Interrupted,
            ),
            (
                Some(R::KeyDeleted),
                Next::Exit(Exit::LeaseLost),
                RunEnd::Interrupted,
            ),
            (
                Some(R::KeyChanged),
                Next::Recampaign { holdoff: false },
                RunEnd::Interrupted,
            ),
            (
                Some(R::Deadline),
                Next::Recampaign { holdoff: false },
                RunEnd::Interrupted,
            ),
            (
                Some(R::Resign),
                Next::Recampaign { holdoff: true },
                RunEnd::Interrupted,
            ),
            (Some(R::Suspend), Next::Suspend, RunEnd::Interrupted),
            // Never started: the lease was too short, or a shutdown came first.
            (
                Some(R::Deadline),
                Next::Exit(Exit::Withdrew),
                RunEnd::Interrupted,
            ),
            // The process thread is gone.
            (None, Next::Exit(Exit::Internal), RunEnd::Interrupted),
        ];
        for (reason, next, want) in rows {
            assert_eq!(run_end(reason, next, None), want, "{reason:?} {next:?}");
        }
        // Killed by the signal the replica took as its shutdown (Ctrl-C reached only the child,
        // which had the terminal): cut short by the user, not failed. Another signal, or the
        // same one with no shutdown taken (a `kill -INT` from elsewhere), is a failure.
        let int = Some(libc::SIGINT);
        let shutdown_rows = [
            (exit(Signaled(libc::SIGINT)), int, RunEnd::Interrupted),
            (
                exit(Signaled(libc::SIGQUIT)),
                Some(libc::SIGQUIT),
                RunEnd::Interrupted,
            ),
            (
                exit(Signaled(libc::SIGINT)),
                None,
                failed(130, "killed by SIGINT"),
            ),
            (
                exit(Signaled(libc::SIGKILL)),
                int,
                failed(137, "killed by SIGKILL"),
            ),
        ];
        for (next, shutdown, want) in shutdown_rows {
            let got = run_end(Some(R::ChildExited), next, shutdown);
            assert_eq!(got, want, "{next:?} {shutdown:?}");
        }
    }

    #[test]
    fn a_runs_end_counts_a_failure_or_writes_the_record() {
        let begun = attempts(
            1,
            1,
            Some(run(2, "b", 60, None)),
            Some(run(1, "a", 40, Some(3))),
        );
        let ended = Ended {
            exit_code: 4,
            status: "exited with status 4".into(),
            ended_at_ms: 9_000,
        };
        let after = after_failure(&begun, &run(2, "b", 60, None), ended.clone());
        assert_eq!(
            (after.failed, after.interrupted, after.max_attempts),
            (2, 1, 3)
        );
        assert_eq!(after.run, after.last_failure);
        assert_eq!(after.run.unwrap().ended, Some(ended));
        let (rec, after) = after_success("m-1", &begun, &run(2, "b", 60, None), 9_000);
        assert_eq!(
            (
                rec.id.as_str(),
                rec.fencing_revision,
                rec.attempt,
                rec.finished_at_ms
            ),
            ("b", 60, 2, 9_000)
        );
        assert_eq!(after.failed, 1, "a success counts no failure");
        assert_eq!(after.last_failure, begun.last_failure);
        assert_eq!(after.run.unwrap().ended.unwrap().exit_code, 0);
    }

    /// Every transaction against its named positions, and what each compares.
    #[test]
    fn the_transactions_write_only_under_our_key() {
        let (l, me) = (layout(), me());
        let kind = |k: &str, key: &str| (k.to_owned(), key.to_owned());
        let (get, put, del) = ("RequestRange", "RequestPut", "RequestDeleteRange");
        let (record, attempts) = (l.record_key(), l.attempts_key());

        let (then, _) = ops_of(&l.read_txn());
        assert_eq!(then[READ_RECORD], kind(get, &record));
        assert_eq!(then[READ_ATTEMPTS], kind(get, &attempts));
        assert_eq!(then[READ_QUEUE], kind(get, l.queue.dir()));

        let begin = l.begin_txn(&me, 44, &Attempts::default());
        let (then, otherwise) = ops_of(&begin);
        assert_eq!(then, [kind(put, &attempts)]);
        assert_eq!(otherwise[BEGIN_RECORD], kind(get, &record));
        assert_eq!(otherwise[BEGIN_ATTEMPTS], kind(get, &attempts));
        assert_eq!(otherwise[BEGIN_MINE], kind(get, &me.key));
        let text = format!("{begin:?}");
        assert!(
            text.contains("CreateRevision(50)") && text.contains("Lease(171)"),
            "{text}"
        );
        assert!(
            text.contains("ModRevision(44)") && text.contains("CreateRevision(0)"),
            "{text}"
        );

        let tree = l.queue.tree_key(me.lease);
        let success = l.success_txn(
            &me,
            Some(LeaseId(0xcd)),
            &record_of_me(),
            &Attempts::default(),
        );
        let (then, otherwise) = ops_of(&success);
        assert_eq!(
            then,
            [
                kind(put, &record),
                kind(put, &attempts),
                kind(del, &me.key),
                kind(put, &tree)
            ]
        );
        assert_eq!(otherwise[SUCCESS_RECORD], kind(get, &record));
        let text = format!("{success:?}");
        assert!(
            text.contains("CreateRevision(50)") && text.contains("Lease(171)"),
            "{text}"
        );
        assert!(
            text.contains("lease: 205"),
            "the marker on the tree lease: {text}"
        );
        // A role that may not write markers: the release without one.
        let (then, _) = ops_of(&l.success_txn(&me, None, &record_of_me(), &Attempts::default()));
        assert_eq!(then.len(), 3);

        let failure = l.failure_txn(&me, Some(LeaseId(0xcd)), 61, &Attempts::default());
        let (then, otherwise) = ops_of(&failure);
        assert_eq!(
            then,
            [kind(put, &attempts), kind(del, &me.key), kind(put, &tree)]
        );
        assert_eq!(otherwise[FAILURE_ATTEMPTS], kind(get, &attempts));
        assert_eq!(otherwise[FAILURE_MINE], kind(get, &me.key));
        let text = format!("{failure:?}");
        assert!(
            text.contains("ModRevision(61)") && text.contains("Lease(171)"),
            "{text}"
        );

        let (then, otherwise) = ops_of(&l.clear_txn(false));
        assert_eq!(then[CLEAR_RECORD], kind(get, &record));
        assert_eq!(then[CLEAR_ATTEMPTS], kind(get, &attempts));
        assert_eq!(&then[2..], [kind(del, &record), kind(del, &attempts)]);
        assert_eq!(otherwise[CLEAR_QUEUE], kind(get, l.queue.dir()));
        assert!(format!("{:?}", l.clear_txn(false)).contains("CreateRevision(0)"));
        assert!(!format!("{:?}", l.clear_txn(true)).contains("compare: [Compare"));
    }

    fn record_of_me() -> Record {
        Record {
            key: me().key,
            ..record("me", 50)
        }
    }

    fn found(key: &str, value: String, lease: i64, create: i64, modr: i64) -> Found {
        Found {
            key: key.as_bytes().to_vec(),
            value: value.into_bytes(),
            lease,
            create_revision: create,
            mod_revision: modr,
        }
    }

    /// A lost answer retried: an earlier success of ours reads back as ours; a record of anyone
    /// else, or none, is not ours to claim.
    #[test]
    fn a_success_is_claimed_only_by_its_own_record() {
        let me = me();
        let rec = |r: Record| found("/r", r.to_json(), 0, 70, 70);
        let rows = [
            (Answer::with(true, Some(70), []), true),
            (
                Answer::with(
                    false,
                    Some(71),
                    [(SUCCESS_RECORD, vec![rec(record_of_me())])],
                ),
                true,
            ),
            (
                Answer::with(
                    false,
                    Some(71),
                    [(SUCCESS_RECORD, vec![rec(record("x", 60))])],
                ),
                false,
            ),
            (Answer::with(false, Some(71), []), false),
        ];
        for (answer, ours) in rows {
            let got = success_written(&me, &answer, Attempts::default());
            assert_eq!(matches!(got, Written::Done(_)), ours, "{answer:?}");
        }
    }

    /// A failure is counted once: an earlier try of ours that went through is recognised; the
    /// attempts changed under a key still ours are counted on again; a key gone writes nothing.
    #[test]
    fn a_failure_is_counted_once_and_only_under_our_key() {
        let me = me();
        let mine = found(&me.key, "me".into(), 0xab, 50, 50);
        let gone = found(&me.key, "x".into(), 0xee, 80, 80);
        let ours_counted = attempts(
            1,
            0,
            Some(Run {
                key: me.key.clone(),
                ..run(1, "me", 50, Some(3))
            }),
            Some(Run {
                key: me.key.clone(),
                ..run(1, "me", 50, Some(3))
            }),
        );
        let cleared = attempts(0, 0, Some(run(1, "z", 55, None)), None);
        let a = |v: &Attempts, m| found("/a", v.to_json(), 0, 10, m);
        let rows: Vec<(Answer, &str)> = vec![
            (Answer::with(true, Some(90), []), "written"),
            (
                Answer::with(
                    false,
                    Some(91),
                    [(FAILURE_ATTEMPTS, vec![a(&ours_counted, 90)])],
                ),
                "written",
            ),
            (
                Answer::with(
                    false,
                    Some(91),
                    [
                        (FAILURE_ATTEMPTS, vec![a(&cleared, 88)]),
                        (FAILURE_MINE, vec![mine.clone()]),
                    ],
                ),
                "changed at 88",
            ),
            (
                Answer::with(false, Some(91), [(FAILURE_MINE, vec![mine])]),
                "changed at 0",
            ),
            (
                Answer::with(
                    false,
                    Some(91),
                    [
                        (FAILURE_ATTEMPTS, vec![a(&cleared, 88)]),
                        (FAILURE_MINE, vec![gone]),
                    ],
                ),
                "not ours",
            ),
            (
                Answer::with(false, Some(91), [(FAILURE_ATTEMPTS, vec![a(&cleared, 88)])]),
                "not ours",
            ),
        ];
        for (answer, want) in rows {
            let got = match failure_written(&me, &answer, Attempts::default()) {
                FailureAnswer::Written(Written::Done(_)) => "written".to_owned(),
                FailureAnswer::Written(Written::NotOurs) => "not ours".to_owned(),
                FailureAnswer::Changed(_, at) => format!("changed at {at}"),
            };
            assert_eq!(got, want, "{answer:?}");
        }
    }

    #[test]
    fn a_clear_says_what_it_found_or_who_is_in_the_way() {
        let l = layout();
        let q = found("/p/app@once/m-1/ab", "web-1".into(), 0xab, 5, 5);
        // Its tree marker, and the marker of a runner whose key its outcome deleted.
        let trees = vec![
            found("/p/app@once/m-1@tree/ab", "live".into(), 0xac, 4, 4),
            found("/p/app@once/m-1@tree/cd", "released".into(), 0xce, 3, 8),
        ];
        let busy = l.cleared(&Answer::with(
            false,
            Some(9),
            [(CLEAR_QUEUE, vec![q]), (CLEAR_TREES, trees)],
        ));
        let Cleared::Busy { queue, finishing } = busy else {
            panic!("{busy:?}")
        };
        assert_eq!((queue[0].id.as_str(), queue[0].revision), ("web-1", 5));
        assert_eq!(finishing, 1);
        let rec = found("/r", record("a", 40).to_json(), 0, 41, 41);
        let done = l.cleared(&Answer::with(true, Some(9), [(CLEAR_RECORD, vec![rec])]));
        assert_eq!(
            done,
            Cleared::Done {
                record: Some(Box::new(record("a", 40))),
                attempts: None,
                found: true
            }
        );
        let nothing = l.cleared(&Answer::with(true, Some(9), []));
        assert!(matches!(nothing, Cleared::Done { found: false, .. }));
    }
}
