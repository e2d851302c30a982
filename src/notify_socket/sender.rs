//! Who may talk on a child's notify socket: only a process of the child's tree, as the kernel
//! names the sender of each datagram (`SCM_CREDENTIALS`, in our PID namespace).
//!
//! The child's tree is every descendant of this process: the main child, what it starts, and
//! their orphans, which are re-parented to us (a child subreaper, or PID 1). So a sender belongs
//! if its parent links in `/proc` lead to us (or to the main child, where the walk can stop),
//! and not if they end at an init, at a process outside our PID namespace (pid 0: a `docker
//! exec`), or at a process that is gone. The main child's own datagrams need no look at all: it
//! is our unreaped child, so its pid cannot be taken by anyone else.
//!
//! Every answer costs at most one read of `/proc/PID/stat` per datagram: the verdicts of a walk
//! are kept with each process's start time, which tells a process from a later one that reuses
//! its pid. A walk is at most [`MAX_DEPTH`] steps. When `/proc` is not our PID namespace's (a
//! `unshare --pid` without `--mount-proc`), its numbers cannot be checked and only the main child
//! is heard.
//!
//! What this cannot do: a sender with `CAP_SYS_ADMIN` (root) may name another pid in its
//! credentials, as it can under systemd, whose `NotifyAccess=` has the same limit.

#![forbid(unsafe_code)]

use std::collections::HashMap;

/// The deepest a sender may be below us; a deeper one is not heard (a walk stays bounded).
pub const MAX_DEPTH: usize = 64;

/// The most verdicts kept; the table starts afresh when full.
const KEPT: usize = 1024;

/// A process as `/proc` shows it: its parent and its start time.
pub type Lineage = Option<(libc::pid_t, u64)>;

/// Whether a sender belongs to the child's tree; the verdicts of earlier walks are kept.
#[derive(Debug)]
pub struct Senders {
    /// This process, in our PID namespace.
    me: libc::pid_t,
    /// The main child, once known.
    main: Option<libc::pid_t>,
    /// Whether `/proc` numbers processes as our namespace does.
    proc_is_ours: bool,
    /// pid → (start time, belongs).
    known: HashMap<libc::pid_t, (u64, bool)>,
}

impl Senders {
    pub fn new(me: libc::pid_t, proc_is_ours: bool) -> Senders {
        Senders {
            me,
            main: None,
            proc_is_ours,
            known: HashMap::new(),
        }
    }

    /// A new child: its main process, once started; nothing known of the last one's tree.
    pub fn child(&mut self, main: Option<libc::pid_t>) {
        self.main = main;
        self.known.clear();
    }

    /// The main child started with this pid.
    pub fn main_started(&mut self, pid: libc::pid_t) {
        self.main = Some(pid);
    }

    /// Whether `pid` (from the datagram's credentials) is of the child's tree; `lineage` reads a
    /// process's parent and start time (`/proc/PID/stat`).
    pub fn belongs(
        &mut self,
        pid: libc::pid_t,
        mut lineage: impl FnMut(libc::pid_t) -> Lineage,
    ) -> bool {
        if pid <= 0 || pid == self.me {
            return false;
        }
        if Some(pid) == self.main {
            return true;
        }
        if !self.proc_is_ours {
            return false;
        }
        let mut walked: Vec<(libc::pid_t, u64)> = Vec::new();
        let mut at = pid;
        let verdict = loop {
            if at == self.me || Some(at) == self.main {
                break true;
            }
            if at <= 1 || walked.len() >= MAX_DEPTH {
                break false; // an init, or outside our PID namespace, or too deep
            }
            let Some((parent, start)) = lineage(at) else {
                break false; // gone
            };
            if let Some(&(known_start, belongs)) = self.known.get(&at) {
                if known_start == start {
                    break belongs;
                }
            }
            walked.push((at, start));
            at = parent;
        };
        if self.known.len() + walked.len() > KEPT {
            self.known.clear();
        }
        for (p, start) in walked {
            self.known.insert(p, (start, verdict));
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A process table: pid → (parent, start time).
    fn table(rows: &[(libc::pid_t, libc::pid_t, u64)]) -> HashMap<libc::pid_t, (libc::pid_t, u64)> {
        rows.iter()
            .map(|&(p, parent, start)| (p, (parent, start)))
            .collect()
    }

    #[test]
    fn only_the_child_tree_is_heard() {
        // 100 is us; 200 the main child, 201 its child, 202 a grandchild; 300 an orphan of the
        // tree re-parented to us; 400 a process beside us (same parent, 50); 500 under init; 600
        // a deep chain's end; 700 a `docker exec` process (parent 0).
        let mut procs = table(&[
            (100, 50, 1),
            (200, 100, 2),
            (201, 200, 3),
            (202, 201, 4),
            (300, 100, 5),
            (400, 50, 6),
            (50, 1, 0),
            (500, 1, 7),
            (700, 0, 8),
        ]);
        for depth in 0..=MAX_DEPTH as libc::pid_t {
            let (p, parent) = (1000 + depth, if depth == 0 { 100 } else { 999 + depth });
            procs.insert(p, (parent, 9));
        }
        let deepest = 1000 + MAX_DEPTH as libc::pid_t;
        // ((main known, sender), heard)
        let rows = [
            ((true, 200), true),
            ((false, 200), true),
            ((true, 201), true),
            ((true, 202), true),
            ((false, 202), true),
            ((true, 300), true),
            ((true, 400), false),
            ((true, 500), false),
            ((true, 700), false),
            ((true, 1), false),
            ((true, 0), false),
            ((true, -5), false),
            ((true, 100), false),
            // Gone.
            ((true, 999_999), false),
            // Within the depth limit, and one deeper.
            ((true, deepest - 1), true),
            ((true, deepest), false),
        ];
        crate::process::assert_table(rows, |(main_known, pid)| {
            let mut senders = Senders::new(100, true);
            senders.child(main_known.then_some(200));
            senders.belongs(pid, |p| procs.get(&p).copied())
        });
    }

    #[test]
    fn the_main_child_needs_no_look_and_a_verdict_costs_one_read_after_the_first() {
        let procs = table(&[(200, 100, 2), (201, 200, 3), (202, 201, 4), (500, 1, 7)]);
        let reads = Cell::new(0);
        let lineage = |p| {
            reads.set(reads.get() + 1);
            procs.get(&p).copied()
        };
        let mut senders = Senders::new(100, true);
        senders.child(Some(200));
        assert!(senders.belongs(200, lineage));
        assert_eq!(reads.get(), 0);
        assert!(senders.belongs(202, lineage));
        assert_eq!(reads.get(), 2, "202 and 201, then the main child");
        for _ in 0..10 {
            assert!(senders.belongs(202, lineage));
            assert!(!senders.belongs(500, lineage));
        }
        assert_eq!(
            reads.get(),
            2 + 10 + 10,
            "one read a datagram after the first walk"
        );
    }

    #[test]
    fn a_pid_taken_by_another_process_is_judged_again() {
        let mut procs = table(&[(200, 100, 2), (201, 200, 3)]);
        let mut senders = Senders::new(100, true);
        senders.child(Some(200));
        assert!(senders.belongs(201, |p| procs.get(&p).copied()));
        // 201 ended; a process outside the tree got its pid (a new start time).
        procs.insert(201, (1, 99));
        assert!(!senders.belongs(201, |p| procs.get(&p).copied()));
        // A new child: nothing of the last tree is kept.
        senders.child(None);
        procs.insert(201, (200, 100));
        procs.insert(200, (100, 101));
        assert!(senders.belongs(201, |p| procs.get(&p).copied()));
    }

    #[test]
    fn a_proc_of_another_namespace_hears_only_the_main_child() {
        let procs = table(&[(200, 100, 2), (201, 200, 3)]);
        let mut senders = Senders::new(100, false);
        senders.child(None);
        assert!(!senders.belongs(200, |p| procs.get(&p).copied()));
        senders.main_started(200);
        assert!(senders.belongs(200, |p| procs.get(&p).copied()));
        assert!(!senders.belongs(201, |p| procs.get(&p).copied()));
    }
}
