//! What `tests/programs/worker.py` (and `noisy_worker.py`) record in DIR/events.log, read back:
//! one place for the event format and the overlap check every leadership test ends with; and the
//! `noisy_worker.py` command line, a wait for its starts, and a guard that kills what it left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{program, wait_for};

/// One line of DIR/events.log: `KIND ID REVISION PID BOOT_NS [overlap=N lock=free|held ...]`.
#[derive(Debug, Clone)]
pub struct Ev {
    pub kind: String,
    pub id: String,
    pub revision: i64,
    pub pid: i32,
    pub boot_ns: u128,
    /// Other workers alive when this one started (a start's).
    pub overlap: usize,
    /// The flock every worker holds for its life was still held when this one started (a
    /// start's): the previous worker had not closed its files yet.
    pub lock_held: bool,
}

/// The value of field `name=VALUE` among a line's fields.
fn field<'a>(fields: &[&'a str], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
}

/// Every event the workers appended to DIR/events.log so far.
pub fn events(dir: &Path) -> Vec<Ev> {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Ev {
                kind: f.first()?.to_string(),
                id: f.get(1)?.to_string(),
                revision: f.get(2)?.parse().ok()?,
                pid: f.get(3)?.parse().ok()?,
                boot_ns: f.get(4)?.parse().ok()?,
                overlap: field(&f, "overlap")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                lock_held: field(&f, "lock") == Some("held"),
            })
        })
        .collect()
}

/// The child starts so far, in order.
pub fn starts(dir: &Path) -> Vec<Ev> {
    events(dir)
        .into_iter()
        .filter(|e| e.kind == "start")
        .collect()
}

/// Waits until the workers recorded `n` starts; panics with their events and `what()` after
/// `timeout`.
pub fn wait_starts(dir: &Path, n: usize, timeout: Duration, what: impl FnOnce() -> String) {
    wait_for(
        timeout,
        || starts(dir).len() >= n,
        || {
            format!(
                "expected {n} child starts, have {:?}; {}",
                events(dir),
                what()
            )
        },
    );
}

/// `-- python3 noisy_worker.py DIR EXTRA...`
pub fn noisy(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--".into(),
        "python3".into(),
        program("noisy_worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Kills, at the end of a test (also on panic), every worker that registered its pid in DIR.
pub struct Reap(pub PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_suffix(".pid")
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains("worker.py") {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// No worker saw another alive, or found the lock held, when it started.
pub fn assert_no_overlap(dir: &Path) {
    let evs = events(dir);
    assert!(
        evs.iter().all(|e| e.overlap == 0 && !e.lock_held),
        "two children ran at once: {evs:?}"
    );
}

/// One line of DIR/events.log as `tests/programs/slot_worker.py` writes it (`--slots N`):
/// `KIND ID REVISION PID BOOT_NS SLOT SLOT_COUNT LEADER_KEY LOCK_KEY [overlap=N]`, where `overlap` counts
/// the other children of the same slot alive at the start (a variable the child lacked is "-").
#[derive(Debug, Clone)]
pub struct SlotEv {
    pub kind: String,
    pub id: String,
    pub revision: i64,
    pub pid: i32,
    pub boot_ns: u128,
    pub slot: u32,
    pub slot_count: u32,
    /// `SINGLETON_EXEC_LEADER_KEY`
    pub key: String,
    /// `ETCD_LOCK_KEY`
    pub lock_key: String,
    pub overlap: usize,
}

/// Every event the slot workers appended to DIR/events.log so far.
pub fn slot_events(dir: &Path) -> Vec<SlotEv> {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(SlotEv {
                kind: f.first()?.to_string(),
                id: f.get(1)?.to_string(),
                // A variable the child did not get ("-") shows as -1 / u32::MAX / 0, so that
                // the assertion that reads it fails rather than the line being dropped.
                revision: f.get(2)?.parse().unwrap_or(-1),
                pid: f.get(3)?.parse().ok()?,
                boot_ns: f.get(4)?.parse().ok()?,
                slot: f.get(5)?.parse().unwrap_or(u32::MAX),
                slot_count: f.get(6)?.parse().unwrap_or(0),
                key: f.get(7)?.to_string(),
                lock_key: f.get(8)?.to_string(),
                overlap: f
                    .get(9)
                    .and_then(|o| o.strip_prefix("overlap="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            })
        })
        .collect()
}

/// The slot workers' starts so far, in order.
pub fn slot_starts(dir: &Path) -> Vec<SlotEv> {
    slot_events(dir)
        .into_iter()
        .filter(|e| e.kind == "start")
        .collect()
}

/// Per slot, never two children at once: no worker saw another of its slot alive when it started,
/// and each start of a slot comes after the stop (if recorded) of the slot's previous child.
pub fn assert_no_slot_overlap(dir: &Path) {
    let evs = slot_events(dir);
    assert!(
        evs.iter().all(|e| e.overlap == 0),
        "two children ran at once on one slot: {evs:?}"
    );
    let mut slots: Vec<u32> = evs.iter().map(|e| e.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    for slot in slots {
        let of_slot: Vec<&SlotEv> = evs.iter().filter(|e| e.slot == slot).collect();
        let starts: Vec<&&SlotEv> = of_slot.iter().filter(|e| e.kind == "start").collect();
        for w in starts.windows(2) {
            let (old, new) = (w[0], w[1]);
            if let Some(stop) = of_slot
                .iter()
                .find(|e| e.kind == "stop" && e.pid == old.pid)
            {
                assert!(
                    stop.boot_ns < new.boot_ns,
                    "slot {slot}: child {} started before child {} stopped: {evs:?}",
                    new.pid,
                    old.pid
                );
            }
        }
    }
}
