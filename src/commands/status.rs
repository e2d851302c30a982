//! `singleton-exec status`: who leads an election right now, and who waits behind it; with `--watch`,
//! every leader change until interrupted (like `etcdctl elect -l`). An election run with `--slots N`
//! is found by its keys and shown slot by slot (every slot's holder, then the standbys).
//!
//! Reading is I/O ([`run`]); what is printed is a pure function of the [`Queue`] read
//! ([`render_text`], [`render_json`], [`render_change`]), so the formats are unit-tested.
//!
//! A queue key that the lease its name says does not hold (no lease, or another one: `etcdctl
//! put` on it) is flagged as orphaned; at the head it blocks the queue until a standby removes it
//! (see [`crate::election::queue`]), so `status` then exits [`ORPHANED_HEAD`], not 0.

use std::io::Write;
use std::time::Duration;

use etcd_client::Client;

use crate::config::cli::{EnvSources, EtcdArgs, OutputFormat, StatusArgs};
use crate::config::{etcd_config, validate_election, validate_prefix, ConfigError};
use crate::core::backoff::Schedule;
use crate::core::exit_code;
use crate::election::connector::{Connector, EtcdError};
use crate::election::queue::{Candidate, CheckRecord, Election, HealthRecord, Holding, Queue};
use crate::election::slots::SlotsView;
use crate::notify_socket::message::sanitize_status;
use crate::process::signals;

/// Exit code when the election has no leader.
pub const NO_LEADER: i32 = 1;

/// Exit code when the head of the queue is orphaned: no live lease of its own holds it, so no
/// replica leads under it.
pub const ORPHANED_HEAD: i32 = 4;

/// How an `etcdctl lock` holder (which stores an empty value under the same layout) is shown.
pub const EMPTY_ID: &str = "(no id: empty value, e.g. an etcdctl lock holder)";

/// An election to read or act on from outside the replicas: validated names and a connection.
pub(crate) struct Target {
    pub name: String,
    pub prefix: String,
    pub election: Election,
    pub connector: Connector,
}

impl Target {
    pub(crate) fn new(election: &str, prefix: &str, etcd: EtcdArgs) -> Result<Target, ConfigError> {
        let name = validate_election(election)?;
        let prefix = validate_prefix(prefix)?;
        let connector = Connector::new(etcd_config(etcd)?);
        Ok(Target {
            election: Election::new(&prefix, &name),
            name,
            prefix,
            connector,
        })
    }

    /// The target a subcommand's options name; a bad option is printed (naming the variable
    /// it came from, if it did), and its exit code returned.
    pub(crate) fn for_subcommand(
        election: &str,
        prefix: &str,
        etcd: EtcdArgs,
        sources: &EnvSources,
    ) -> Result<Target, i32> {
        Target::new(election, prefix, etcd).map_err(|e| {
            eprintln!(
                "singleton-exec: {}",
                sources.explain(&e.to_string(), &e.options())
            );
            exit_code::USAGE
        })
    }

    /// One read, tried on each endpoint in turn until one answers: etcd's answer, or the last
    /// failure (a rejection at once, since only a full round of them is reported as one).
    pub async fn read<T, F, Fut>(&self, op: F) -> Result<T, EtcdError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, EtcdError>>,
    {
        let mut last = EtcdError::Unavailable("no endpoint".into());
        for _ in 0..self.connector.endpoints().len() {
            match self.connector.call(&op).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_rejected() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The queue and the leader's health result, read on any endpoint.
    pub async fn queue(&self) -> Result<Queue, EtcdError> {
        let election = &self.election;
        self.read(|mut c| async move {
            let mut queue = election.queue(&mut c).await?;
            if let Some(key) = queue.leader().map(|l| l.key.clone()) {
                // Only shown: a leader without a check, or a role that may not read it, shows none.
                queue.health = election.health(&mut c, &key).await.unwrap_or(None);
            }
            Ok(queue)
        })
        .await
    }
}

impl Target {
    /// The election's slots, when it runs with `--slots N` > 1 (`None` otherwise). A role that
    /// may read only `PREFIX/NAME/` (as before slots) is refused this read: then `None` too, and
    /// the singleton's queue is shown as before.
    pub async fn slots(&self) -> Result<Option<SlotsView>, EtcdError> {
        let election = &self.election;
        // A refusal comes back as Ok(Err): no fault of the endpoint, so it is not counted as one.
        let read = self
            .read(|mut c| async move {
                match SlotsView::read(election, &mut c).await {
                    Err(EtcdError::Rejected(why)) => Ok(Err(why)),
                    other => other.map(Ok),
                }
            })
            .await?;
        Ok(read.unwrap_or_else(|why| {
            tracing::debug!(%why, "cannot read the slots keys; showing the singleton's queue");
            None
        }))
    }

    /// What `status` shows: the singleton's queue, or the slots when there are any.
    async fn shown(&self) -> Result<Shown, EtcdError> {
        Ok(match self.slots().await? {
            Some(slots) => Shown::Slots(slots),
            None => Shown::Queue(self.queue().await?),
        })
    }
}

/// One read of an election, as shown.
enum Shown {
    Queue(Queue),
    Slots(SlotsView),
}

impl Shown {
    /// 0 when there is a leader (with slots: every slot has a holder), else [`NO_LEADER`];
    /// [`ORPHANED_HEAD`] when the head of the queue is orphaned.
    fn code(&self) -> i32 {
        match self {
            Shown::Queue(q) => queue_code(q),
            Shown::Slots(v) if !v.orphaned().is_empty() => ORPHANED_HEAD,
            Shown::Slots(v) if v.held() == v.count as usize => 0,
            Shown::Slots(_) => NO_LEADER,
        }
    }

    /// What a `--watch` line is printed for: who holds what, at which revision.
    /// Who holds each place: key, fencing revision and lease (a put that takes the key off its
    /// lease keeps the first two, and orphans the place: `--watch` shows that too).
    fn holders(&self) -> Vec<Option<(String, i64, i64)>> {
        let of = |c: &Candidate| (c.key.clone(), c.revision, c.lease.0);
        match self {
            Shown::Queue(q) => vec![q.leader().map(of)],
            Shown::Slots(v) => v.holders.iter().map(|h| h.as_ref().map(of)).collect(),
        }
    }

    fn revision(&self) -> i64 {
        match self {
            Shown::Queue(q) => q.revision,
            Shown::Slots(v) => v.revision,
        }
    }
}

/// The exit code for an etcd failure, after printing it.
pub(crate) fn failed(e: &EtcdError) -> i32 {
    if e.is_rejected() {
        eprintln!("singleton-exec: {e}");
        exit_code::ETCD_REJECTED
    } else {
        eprintln!("singleton-exec: cannot read the election: {e}");
        exit_code::INTERNAL
    }
}

/// Prints the queue once (0 with a leader, 1 without, 4 when an orphaned key heads it), or
/// follows it with `--watch`. (`status --once NAME` is [`crate::commands::once::status`].)
pub async fn run(args: StatusArgs) -> i32 {
    let target =
        match Target::for_subcommand(&args.election, &args.prefix, args.etcd, &args.sources) {
            Ok(t) => t,
            Err(code) => return code,
        };
    if args.watch {
        let interrupted = signals::interrupted();
        return tokio::select! {
            code = watch(&target, args.output) => code,
            _ = interrupted => 0,
        };
    }
    match target.shown().await {
        Ok(shown) => {
            match (&shown, args.output) {
                (Shown::Queue(q), OutputFormat::Text) => print!("{}", render_text(&target.name, q)),
                (Shown::Queue(q), OutputFormat::Json) => println!("{}", render_json(&target, q)),
                (Shown::Slots(v), OutputFormat::Text) => {
                    print!("{}", render_slots_text(&target.name, v))
                }
                (Shown::Slots(v), OutputFormat::Json) => {
                    println!("{}", slots_json(&target.name, &target.prefix, v))
                }
            }
            shown.code()
        }
        Err(e) => failed(&e),
    }
}

/// Prints the leader at start and on every change of it; returns only when etcd rejects us or
/// stdout is closed (`status --watch | head -1`: the reader is done, so are we, with 0).
async fn watch(target: &Target, format: OutputFormat) -> i32 {
    let mut shown: Option<Vec<Option<(String, i64, i64)>>> = None;
    let mut retry = Schedule::ETCD.start();
    loop {
        let now = match target.shown().await {
            Ok(q) => q,
            Err(e) if e.is_rejected() => return failed(&e),
            // An unavailable etcd is the connector's to tell, once for a whole outage.
            Err(e @ EtcdError::Unavailable(_)) => {
                tracing::debug!(error = %e, "cannot read the election; retrying");
                tokio::time::sleep(retry.next_pause()).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the election; retrying");
                tokio::time::sleep(retry.next_pause()).await;
                continue;
            }
        };
        retry.succeeded(Duration::ZERO);
        let holders = now.holders();
        if shown.as_ref() != Some(&holders) {
            let line = match &now {
                Shown::Queue(q) => render_change(format, target, q),
                Shown::Slots(v) => slots_change_line(format, &target.name, &target.prefix, v),
            };
            if writeln!(std::io::stdout(), "{line}").is_err() {
                return 0;
            }
            shown = Some(holders);
        }
        // Any change in the queue (or the slots) may be a leader change; the next read tells.
        // Watching from the read's revision misses nothing in between.
        let (election, from) = (&target.election, now.revision() + 1);
        let changed = target
            .connector
            .call(|mut c| async move {
                let mut slots = c.clone();
                tokio::select! {
                    r = election.wait_any_change(&mut c, from) => r,
                    r = election.wait_any_slots_change(&mut slots, from) => r,
                }
            })
            .await;
        if let Err(e) = changed {
            // The read that follows backs off if etcd is down; this short pause only keeps a
            // watch that breaks at once from spinning.
            tracing::debug!(error = %e, "watch broke; reading again");
            tokio::time::sleep(Schedule::ETCD.min).await;
        }
    }
}

/// The exit code for a singleton's queue: who heads it, and whether its own lease holds it.
fn queue_code(q: &Queue) -> i32 {
    match q.leader().map(Candidate::holding) {
        None => NO_LEADER,
        Some(Holding::Own) => 0,
        Some(_) => ORPHANED_HEAD,
    }
}

fn shown_id(c: &Candidate) -> &str {
    if c.id.is_empty() {
        EMPTY_ID
    } else {
        &c.id
    }
}

/// The default output: one `label: value` line each for the leader (scripts parse them), then
/// the queue. `fencing_revision` is the leader key's create revision, the number a fenced resource
/// compares.
pub fn render_text(name: &str, queue: &Queue) -> String {
    let line =
        |label: &str, value: &dyn std::fmt::Display| format!("{:18}{value}\n", format!("{label}:"));
    let mut out = line("election", &name);
    let Some(l) = queue.leader() else {
        out += &line("leader", &"none");
        return out;
    };
    out += &line("leader", &shown_id(l));
    out += &line("key", &l.key);
    out += &line("lease", &l.lease);
    out += &line("fencing_revision", &l.revision);
    out += &line("candidates", &queue.candidates.len());
    out += &queue_lines(&queue.candidates, true);
    let record = queue.health.as_ref();
    if let Some(ready) = ready_text(record) {
        out += &line("ready", &ready);
    }
    if let Some(text) = child_status_of(record) {
        out += &line("child_status", &text);
    }
    if let Some(c) = record.and_then(|r| r.check.as_ref()) {
        out += &line("health", &health_text(c));
    }
    if let Some(why) = l.holding().orphaned() {
        out += &line("warning", &format!("the head of the queue is orphaned ({why}): nobody leads until a standby removes it (within the TTL of the lease its name says) or it is deleted"));
    }
    out
}

/// One line per candidate, in queue order, numbered from 1; with `flag` (the singleton's
/// queue, whose key names are leases), an orphaned key says so.
fn queue_lines(candidates: &[Candidate], flag: bool) -> String {
    candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let orphaned = match c.holding().orphaned() {
                Some(why) if flag => format!("  orphaned: {why}"),
                _ => String::new(),
            };
            format!(
                "  {}. {}  key={}  lease={}  create_revision={}{orphaned}\n",
                i + 1,
                shown_id(c),
                c.key,
                c.lease,
                c.revision
            )
        })
        .collect()
}

/// The leader's health in one phrase.
fn health_text(h: &CheckRecord) -> String {
    if h.healthy {
        "healthy".into()
    } else {
        format!(
            "failing ({} of {} failures before stepping down): {}",
            h.consecutive_failures, h.retries, h.last
        )
    }
}

/// The text of an election with slots: every slot, then the standbys in queue order.
pub fn render_slots_text(name: &str, v: &SlotsView) -> String {
    let mut out = format!("election:   {name}\n");
    out += &format!("slots:      {} ({} held)\n", v.count, v.held());
    for (i, h) in v.holders.iter().enumerate() {
        let Some(h) = h else {
            out += &format!("slot {i}:     none\n");
            continue;
        };
        out += &format!(
            "slot {i}:     {}  key={}  lease={}  fencing_revision={}",
            shown_id(h),
            h.key,
            h.lease,
            h.revision
        );
        let record = v.health[i].as_ref();
        if let Some(c) = record.and_then(|r| r.check.as_ref()) {
            out += &format!("  health: {}", health_text(c));
        }
        if let Some(ready) = ready_text(record) {
            out += &format!("  ready: {ready}");
        }
        if let Some(text) = child_status_of(record) {
            out += &format!("  child_status: {text}");
        }
        if h.lease.0 == 0 {
            out += "  orphaned: no lease (put by another client): no child runs here until the first standby removes it";
        }
        out.push('\n');
    }
    out += &format!("standbys:   {}\n", v.standbys.len());
    out += &queue_lines(&v.standbys, false);
    for n in &v.other_counts {
        out += &format!("warning:    keys of --slots {n} are here too: replicas that disagree on --slots refuse to run\n");
    }
    out
}

/// `--output json` for an election with slots (the schema is in docs/operations.md).
fn slots_json(name: &str, prefix: &str, v: &SlotsView) -> serde_json::Value {
    let holders: Vec<serde_json::Value> = v
        .holders
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let Some(h) = h else {
                return serde_json::Value::Null;
            };
            serde_json::json!({
                "slot": i,
                "id": h.id,
                "key": h.key,
                "lease": h.lease.to_string(),
                "fencing_revision": h.revision,
                "health": health_json(v.health[i].as_ref()),
                "ready": ready_of(v.health[i].as_ref()),
                "ready_after_ms": v.health[i].as_ref().and_then(|r| r.ready_after_ms),
                "child_status": child_status_of(v.health[i].as_ref()),
                "orphaned": (h.lease.0 == 0).then_some("no lease"),
            })
        })
        .collect();
    serde_json::json!({
        "election": name,
        "prefix": prefix,
        "store_revision": v.revision,
        "slots": v.count,
        "held": v.held(),
        "orphaned_slots": v.orphaned(),
        "holders": holders,
        "standbys": v.standbys.iter().map(candidate_json).collect::<Vec<_>>(),
        "other_slot_counts": v.other_counts,
    })
}

/// One `--watch` line for an election with slots.
fn slots_change_line(format: OutputFormat, name: &str, prefix: &str, v: &SlotsView) -> String {
    if format == OutputFormat::Json {
        return slots_json(name, prefix, v).to_string();
    }
    let each: Vec<String> = v
        .holders
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            None => format!("slot {i} none"),
            Some(h) => format!("slot {i} {} fencing_revision={}", shown_id(h), h.revision),
        })
        .collect();
    format!(
        "election {name}: {}/{} slots held: {}  standbys={}",
        v.held(),
        v.count,
        each.join(", "),
        v.standbys.len()
    )
}

/// A holder's last health check, or null when it runs none.
fn health_json(record: Option<&HealthRecord>) -> serde_json::Value {
    let Some(h) = record.and_then(|r| r.check.as_ref()) else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "healthy": h.healthy,
        "consecutive_failures": h.consecutive_failures,
        "retries": h.retries,
        "last": h.last,
    })
}

/// Whether a holder's child is ready, as its holder shows it; a holder that shows nothing (it
/// does not wait for `READY=1` and its child has said nothing, or it runs an earlier version)
/// counts as ready, as its `/leader` would.
fn ready_of(record: Option<&HealthRecord>) -> bool {
    record.is_none_or(|r| r.ready)
}

/// The child's status text, made safe to print again: anyone who may write the key could
/// have put anything there.
fn child_status_of(record: Option<&HealthRecord>) -> Option<String> {
    record
        .and_then(|r| r.child_status.as_deref())
        .map(sanitize_status)
}

/// The readiness phrase, when there is something to say: not ready yet, or ready since its
/// `READY=1`. A child ready from its start (nobody waits for READY=1) says nothing.
fn ready_text(record: Option<&HealthRecord>) -> Option<String> {
    let r = record?;
    match (r.ready, r.ready_after_ms) {
        (false, _) => Some("no: waiting for READY=1".into()),
        (true, Some(ms)) => Some(format!(
            "yes (READY=1 {} after its start)",
            humantime::format_duration(std::time::Duration::from_millis(ms))
        )),
        (true, None) => None,
    }
}

fn candidate_json(c: &Candidate) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "key": c.key,
        "lease": c.lease.to_string(),
        "create_revision": c.revision,
    })
}

/// `--output json` (the schema is in docs/operations.md): the raw id (empty for an `etcdctl lock` holder).
pub(crate) fn render_json(target: &Target, queue: &Queue) -> serde_json::Value {
    json_of(&target.name, &target.prefix, queue)
}

fn json_of(name: &str, prefix: &str, queue: &Queue) -> serde_json::Value {
    let leader = queue.leader().map(|l| {
        let mut v = flagged_json(l);
        v["fencing_revision"] = l.revision.into();
        let record = queue.health.as_ref();
        v["health"] = health_json(record);
        v["ready"] = ready_of(record).into();
        v["ready_after_ms"] = record.and_then(|r| r.ready_after_ms).into();
        v["child_status"] = child_status_of(record).into();
        v
    });
    serde_json::json!({
        "election": name,
        "prefix": prefix,
        "store_revision": queue.revision,
        "leader": leader,
        "candidates": queue.candidates.iter().map(flagged_json).collect::<Vec<_>>(),
    })
}

/// A candidate of the singleton's queue: `orphaned` is why no lease of its own holds it, or null.
fn flagged_json(c: &Candidate) -> serde_json::Value {
    let mut v = candidate_json(c);
    v["orphaned"] = c.holding().orphaned().into();
    v
}

/// One `--watch` line: the JSON object on one line, or a one-line text summary.
pub(crate) fn render_change(format: OutputFormat, target: &Target, queue: &Queue) -> String {
    change_line(format, &target.name, &target.prefix, queue)
}

fn change_line(format: OutputFormat, name: &str, prefix: &str, queue: &Queue) -> String {
    match (format, queue.leader()) {
        (OutputFormat::Json, _) => json_of(name, prefix, queue).to_string(),
        (OutputFormat::Text, None) => format!("election {name}: leader none"),
        (OutputFormat::Text, Some(l)) => format!(
            "election {name}: leader {}  key={}  lease={}  fencing_revision={}  candidates={}{}",
            shown_id(l),
            l.key,
            l.lease,
            l.revision,
            queue.candidates.len(),
            l.holding()
                .orphaned()
                .map_or(String::new(), |why| format!("  orphaned: {why}"))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::LeaseId;

    fn queue() -> Queue {
        let c = |id: &str, lease: i64, revision: i64| Candidate {
            id: id.into(),
            key: format!("/singleton-exec/app/{lease:x}"),
            lease: LeaseId(lease),
            revision,
        };
        Queue {
            revision: 20,
            candidates: vec![c("", 0xa1, 5), c("b", 0xb2, 9), c("c", 0xc3, 12)],
            health: None,
        }
    }

    fn record(healthy: bool) -> HealthRecord {
        HealthRecord {
            id: "h".into(),
            key: "/k".into(),
            revision: 3,
            check: Some(check(healthy)),
            ready: true,
            ready_after_ms: None,
            child_status: None,
        }
    }

    fn check(healthy: bool) -> CheckRecord {
        CheckRecord {
            healthy,
            consecutive_failures: u32::from(!healthy),
            retries: 3,
            last: if healthy {
                "healthy"
            } else {
                "HTTP status 500"
            }
            .into(),
        }
    }

    /// Three slots: 0 and 2 held (2 with a failing check), 1 free; one standby; and keys of
    /// replicas that run `--slots 5`.
    fn slots() -> SlotsView {
        let c = |id: &str, key: &str, lease: i64, revision: i64| Candidate {
            id: id.into(),
            key: key.into(),
            lease: LeaseId(lease),
            revision,
        };
        SlotsView {
            revision: 30,
            count: 3,
            holders: vec![
                Some(c("a", "/p/app@slots/3/slot/0", 0xa, 11)),
                None,
                Some(c("", "/p/app@slots/3/slot/2", 0xc, 17)),
            ],
            health: vec![None, None, Some(record(false))],
            standbys: vec![c("d", "/p/app@slots/3/queue/d", 0xd, 21)],
            other_counts: vec![5],
        }
    }

    #[test]
    fn exit_codes_say_whether_every_place_is_held() {
        let mut full = slots();
        full.holders[1] = full.holders[0].clone();
        let mut orphaned_slot = full.clone();
        if let Some(h) = &mut orphaned_slot.holders[1] {
            h.lease = LeaseId(0);
        }
        assert_eq!(orphaned_slot.orphaned(), [1]);
        assert_eq!(orphaned_slot.held(), 2);
        let text = render_slots_text("app", &orphaned_slot);
        let flagged: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("orphaned: no lease"))
            .collect();
        assert_eq!(flagged.len(), 1, "{text}");
        assert!(flagged[0].starts_with("slot 1:"), "{text}");
        let v = slots_json("app", "/p", &orphaned_slot);
        assert_eq!(v["orphaned_slots"], serde_json::json!([1]));
        assert_eq!(v["holders"][1]["orphaned"], "no lease");
        let none = Queue {
            revision: 1,
            candidates: vec![],
            health: None,
        };
        let rows = [
            (Shown::Queue(queue()), 0),
            (Shown::Queue(none), NO_LEADER),
            (Shown::Slots(slots()), NO_LEADER),
            (Shown::Slots(full), 0),
            // The head taken off its lease (`etcdctl put`): no lease, or another one.
            (Shown::Queue(orphaned(0, 0)), ORPHANED_HEAD),
            (Shown::Queue(orphaned(0, 0xcd)), ORPHANED_HEAD),
            // Orphaned behind a rightful leader: flagged, but someone leads.
            (Shown::Queue(orphaned(1, 0)), 0),
            // A slot key taken off its lease: that slot has no child until a standby removes it.
            (Shown::Slots(orphaned_slot.clone()), ORPHANED_HEAD),
        ];
        for (shown, want) in rows {
            assert_eq!(shown.code(), want, "{:?}", shown.holders());
        }
    }

    /// The queue of [`queue()`] with candidate `i` read with lease `lease`.
    fn orphaned(i: usize, lease: i64) -> Queue {
        let mut q = queue();
        q.candidates[i].lease = LeaseId(lease);
        q
    }

    #[test]
    fn orphaned_keys_are_flagged_in_text_json_and_watch_lines() {
        // (candidate orphaned, lease read, flag, warned about the head)
        let rows = [
            (0, 0, "no lease", true),
            (0, 0xcd, "held by another lease", true),
            (2, 0, "no lease", false),
        ];
        for (i, lease, flag, head) in rows {
            let q = orphaned(i, lease);
            let text = render_text("app", &q);
            let flagged: Vec<&str> = text.lines().filter(|l| l.contains("orphaned: ")).collect();
            assert_eq!(flagged.len(), 1, "{text}");
            assert!(flagged[0].starts_with(&format!("  {}. ", i + 1)), "{text}");
            assert!(
                flagged[0].ends_with(&format!("  orphaned: {flag}")),
                "{text}"
            );
            assert_eq!(
                text.contains("warning:          the head of the queue is orphaned"),
                head
            );
            let v = json_of("app", "/p", &q);
            let flags: Vec<&serde_json::Value> = v["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| &c["orphaned"])
                .collect();
            let mut want = vec![&serde_json::Value::Null; 3];
            let shown = serde_json::Value::from(flag);
            want[i] = &shown;
            assert_eq!(flags, want, "{v}");
            assert_eq!(&v["leader"]["orphaned"], want[0]);
            let line = change_line(OutputFormat::Text, "app", "/p", &q);
            assert_eq!(line.contains(&format!("orphaned: {flag}")), head, "{line}");
        }
        let fine = render_text("app", &queue());
        assert!(
            !fine.contains("orphaned") && !fine.contains("warning"),
            "{fine}"
        );
    }

    #[test]
    fn watch_lines_are_printed_for_a_change_of_holders() {
        let q = Shown::Queue(queue());
        assert_eq!(
            q.holders(),
            [Some(("/singleton-exec/app/a1".into(), 5, 0xa1))]
        );
        assert_eq!(q.revision(), 20);
        let v = Shown::Slots(slots());
        assert_eq!(
            v.holders(),
            [
                Some(("/p/app@slots/3/slot/0".into(), 11, 0xa)),
                None,
                Some(("/p/app@slots/3/slot/2".into(), 17, 0xc)),
            ]
        );
        assert_eq!(v.revision(), 30);
        // A new standby is no change of holders.
        let mut more = queue();
        more.candidates.push(more.candidates[1].clone());
        assert_eq!(Shown::Queue(more).holders(), q.holders());
        // The head taken off its lease (a put) is: `--watch` shows it orphaned.
        let mut put = queue();
        put.candidates[0].lease = LeaseId(0);
        assert_ne!(Shown::Queue(put).holders(), q.holders());
    }

    #[test]
    fn slots_as_text() {
        let want = "\
election:   app
slots:      3 (2 held)
slot 0:     a  key=/p/app@slots/3/slot/0  lease=a  fencing_revision=11
slot 1:     none
slot 2:     (no id: empty value, e.g. an etcdctl lock holder)  key=/p/app@slots/3/slot/2  lease=c  fencing_revision=17  health: failing (1 of 3 failures before stepping down): HTTP status 500
standbys:   1
  1. d  key=/p/app@slots/3/queue/d  lease=d  create_revision=21
warning:    keys of --slots 5 are here too: replicas that disagree on --slots refuse to run
";
        assert_eq!(render_slots_text("app", &slots()), want);
    }

    #[test]
    fn slots_as_json() {
        let v = slots_json("app", "/p", &slots());
        let want = serde_json::json!({
            "election": "app",
            "prefix": "/p",
            "store_revision": 30,
            "slots": 3,
            "held": 2,
            "holders": [
                {
                    "slot": 0, "id": "a", "key": "/p/app@slots/3/slot/0", "lease": "a",
                    "fencing_revision": 11, "health": null, "orphaned": null,
                    "ready": true, "ready_after_ms": null, "child_status": null,
                },
                null,
                {
                    "slot": 2, "id": "", "key": "/p/app@slots/3/slot/2", "lease": "c",
                    "fencing_revision": 17, "orphaned": null,
                    "ready": true, "ready_after_ms": null, "child_status": null,
                    "health": {
                        "healthy": false, "consecutive_failures": 1, "retries": 3,
                        "last": "HTTP status 500",
                    },
                },
            ],
            "standbys": [
                {"id": "d", "key": "/p/app@slots/3/queue/d", "lease": "d", "create_revision": 21},
            ],
            "other_slot_counts": [5],
            "orphaned_slots": [],
        });
        assert_eq!(v, want);
    }

    #[test]
    fn slots_watch_lines() {
        let text = slots_change_line(OutputFormat::Text, "app", "/p", &slots());
        assert_eq!(
            text,
            format!(
                "election app: 2/3 slots held: slot 0 a fencing_revision=11, slot 1 none, \
                 slot 2 {EMPTY_ID} fencing_revision=17  standbys=1"
            )
        );
        let json = slots_change_line(OutputFormat::Json, "app", "/p", &slots());
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v, slots_json("app", "/p", &slots()));
    }

    /// What the child said of itself, as its leader shows it: not ready, ready since READY=1,
    /// or nothing to say (ready from its start, or no record); its status text made safe again.
    #[test]
    fn readiness_and_the_child_status_in_text_and_json() {
        let with = |ready, after: Option<u64>, status: Option<&str>| {
            let mut q = queue();
            q.health = Some(HealthRecord {
                check: None,
                ready,
                ready_after_ms: after,
                child_status: status.map(str::to_owned),
                ..record(true)
            });
            q
        };
        // (queue, ready line, status line, JSON ready, JSON child_status)
        let rows = [
            (queue(), None, None, true, serde_json::Value::Null),
            (
                with(true, None, None),
                None,
                None,
                true,
                serde_json::Value::Null,
            ),
            (
                with(false, None, Some("loading 3/7")),
                Some("ready:            no: waiting for READY=1"),
                Some("child_status:     loading 3/7"),
                false,
                "loading 3/7".into(),
            ),
            (
                with(true, Some(1_250), Some("serving\u{1b}[2J")),
                Some("ready:            yes (READY=1 1s 250ms after its start)"),
                Some("child_status:     serving [2J"),
                true,
                "serving [2J".into(),
            ),
        ];
        for (q, ready, status, json_ready, json_status) in rows {
            let text = render_text("app", &q);
            let line = |label: &str| {
                text.lines()
                    .find(|l| l.starts_with(label))
                    .map(str::to_owned)
            };
            assert_eq!(line("ready:").as_deref(), ready, "{text}");
            assert_eq!(line("child_status:").as_deref(), status, "{text}");
            assert!(!text.contains("health:"), "no check: {text}");
            let v = json_of("app", "/p", &q);
            assert_eq!(v["leader"]["ready"], json_ready, "{v}");
            assert_eq!(v["leader"]["child_status"], json_status, "{v}");
            assert!(v["leader"]["health"].is_null(), "{v}");
        }
        // With slots, on the holder's line.
        let mut v = slots();
        v.health[0] = with(false, None, Some("warming up")).health;
        let text = render_slots_text("app", &v);
        let slot0 = text.lines().find(|l| l.starts_with("slot 0:")).unwrap();
        assert!(
            slot0.ends_with("  ready: no: waiting for READY=1  child_status: warming up"),
            "{slot0}"
        );
        let json = slots_json("app", "/p", &v);
        assert_eq!(json["holders"][0]["ready"], false);
        assert_eq!(json["holders"][0]["child_status"], "warming up");
        assert_eq!(json["holders"][2]["ready"], true);
    }

    #[test]
    fn the_health_phrase() {
        let mut many = check(false);
        many.consecutive_failures = 7;
        many.retries = 2;
        let rows = [
            (check(true), "healthy".to_owned()),
            (
                check(false),
                "failing (1 of 3 failures before stepping down): HTTP status 500".to_owned(),
            ),
            (
                many,
                "failing (7 of 2 failures before stepping down): HTTP status 500".to_owned(),
            ),
        ];
        for (h, want) in rows {
            assert_eq!(health_text(&h), want);
        }
    }

    #[test]
    fn a_healthy_leader_in_text_and_json() {
        let mut q = queue();
        q.health = Some(record(true));
        assert!(render_text("app", &q).ends_with("health:           healthy\n"));
        let v = json_of("app", "/p", &q);
        assert_eq!(v["leader"]["health"]["healthy"], true);
        assert_eq!(v["leader"]["health"]["last"], "healthy");
        // The leader's health is not repeated for the other candidates.
        assert!(v["candidates"][0].get("health").is_none());
    }

    #[test]
    fn text_keeps_the_leader_lines_and_lists_the_queue() {
        let out = render_text("app", &queue());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "election:         app");
        assert_eq!(lines[1], format!("leader:           {EMPTY_ID}"));
        assert_eq!(lines[2], "key:              /singleton-exec/app/a1");
        assert_eq!(lines[3], "lease:            a1");
        assert_eq!(lines[4], "fencing_revision: 5");
        assert_eq!(lines[5], "candidates:       3");
        // One meaning of "revision" everywhere: the fencing revision says so.
        assert!(!out.lines().any(|l| l.starts_with("revision")), "{out}");
        assert_eq!(
            lines[7],
            "  2. b  key=/singleton-exec/app/b2  lease=b2  create_revision=9"
        );
        let none = Queue {
            revision: 3,
            candidates: vec![],
            health: None,
        };
        assert_eq!(
            render_text("app", &none),
            "election:         app\nleader:           none\n"
        );
    }

    #[test]
    fn json_has_the_leader_and_every_candidate_in_order() {
        let v = json_of("app", "/singleton-exec", &queue());
        assert_eq!(v["election"], "app");
        assert_eq!(v["prefix"], "/singleton-exec");
        // The store revision the read was made at, under its own name.
        assert_eq!(v["store_revision"], 20);
        assert!(v.get("revision").is_none(), "{v}");
        assert_eq!(v["leader"]["id"], "");
        assert_eq!(v["leader"]["key"], "/singleton-exec/app/a1");
        assert_eq!(v["leader"]["lease"], "a1");
        assert_eq!(v["leader"]["fencing_revision"], 5);
        assert_eq!(v["leader"]["create_revision"], 5);
        let ids: Vec<&str> = v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["", "b", "c"]);
        assert!(v["candidates"][1].get("fencing_revision").is_none());
        let none = Queue {
            revision: 3,
            candidates: vec![],
            health: None,
        };
        let v = json_of("app", "/p", &none);
        assert!(v["leader"].is_null());
        assert_eq!(v["candidates"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn the_leaders_health_is_shown_when_it_runs_a_check() {
        let mut q = queue();
        assert!(!render_text("app", &q).contains("health:"));
        assert!(json_of("app", "/p", &q)["leader"]["health"].is_null());
        q.health = Some(HealthRecord {
            id: "".into(),
            key: "/singleton-exec/app/a1".into(),
            revision: 5,
            check: Some(CheckRecord {
                healthy: false,
                consecutive_failures: 2,
                retries: 3,
                last: "exited with status 1: db down".into(),
            }),
            ready: true,
            ready_after_ms: None,
            child_status: None,
        });
        let text = render_text("app", &q);
        assert!(
            text.ends_with(
                "health:           failing (2 of 3 failures before stepping down): exited with status 1: db down\n"
            ),
            "{text}"
        );
        let v = json_of("app", "/p", &q);
        assert_eq!(v["leader"]["health"]["consecutive_failures"], 2);
        assert_eq!(v["leader"]["health"]["healthy"], false);
    }

    #[test]
    fn watch_lines_are_one_line_each() {
        let q = queue();
        let text = change_line(OutputFormat::Text, "app", "/p", &q);
        assert!(
            text.contains("fencing_revision=5") && text.contains(EMPTY_ID),
            "{text}"
        );
        let json = change_line(OutputFormat::Json, "app", "/p", &q);
        assert!(!json.contains('\n'));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap()["leader"]["lease"],
            "a1"
        );
        let none = Queue {
            revision: 1,
            candidates: vec![],
            health: None,
        };
        assert_eq!(
            change_line(OutputFormat::Text, "app", "/p", &none),
            "election app: leader none"
        );
    }
}
