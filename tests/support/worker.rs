//! What `tests/programs/worker.py` (and `noisy_worker.py`) record in DIR/events.log, read back:
//! one place for the event format and the overlap check every leadership test ends with.

use std::path::Path;

/// One line of DIR/events.log: `KIND ID REVISION PID BOOT_NS [overlap=N]`.
#[derive(Debug, Clone)]
pub struct Ev {
    pub kind: String,
    pub id: String,
    pub revision: i64,
    pub pid: i32,
    pub boot_ns: u128,
    pub overlap: usize,
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
                overlap: f
                    .get(5)
                    .and_then(|o| o.strip_prefix("overlap="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
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

/// No worker saw another alive when it started.
pub fn assert_no_overlap(dir: &Path) {
    let evs = events(dir);
    assert!(
        evs.iter().all(|e| e.overlap == 0),
        "two children ran at once: {evs:?}"
    );
}
