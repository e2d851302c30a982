//! Which connections the HTTP endpoints keep open, so that no client can keep a probe out.
//!
//! Anyone who can reach `--health-addr` (in Kubernetes: every pod) can open connections and send
//! nothing, send a request head a byte at a time, or never read an answer. A liveness probe that
//! cannot get through kills a healthy leader, so:
//!
//! * the accept loop never waits for room: a connection left in the kernel's backlog is one a
//!   probe queues behind;
//! * at most [`cap`] connections are open, so descriptors and memory stay bounded; a connection
//!   beyond that closes another ([`to_close`]): the oldest one still waiting for its request head
//!   (a probe sends its head at once, so a connection that has not is idle or slow), else the
//!   oldest of all. The newest connection always gets in;
//! * each connection has its deadlines ([`HEAD_TIMEOUT`], [`EXCHANGE_TIMEOUT`]) and carries one
//!   request (no keep-alive), so nothing stays open unused once the attack stops.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

/// A connection must deliver its whole request head within this long. Probes and scrapers send
/// theirs as soon as they are connected; a client sending it a byte at a time is closed here.
pub(super) const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole exchange, answer written included, is over within this long: `/status` waits up to
/// a second for each of its two reads from etcd, and a client that does not read its answer holds
/// the connection no longer than this.
pub(super) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many connections however many descriptors there are: one costs a descriptor, a
/// task of 2 KiB, and once it sends, 16 KiB of buffers; probes and scrapers need a few.
const MAX_OPEN: usize = 256;
/// With a low descriptor limit, at most a quarter of it: the rest are for the connections to etcd,
/// the child's start and the health checks.
const SHARE_OF_DESCRIPTORS: u64 = 4;
const MIN_OPEN: usize = 4;

/// How many connections may be open, given the soft limit on open descriptors (`None`: unknown).
pub(super) fn cap(nofile: Option<u64>) -> usize {
    let share = nofile.map_or(MAX_OPEN, |n| {
        usize::try_from(n / SHARE_OF_DESCRIPTORS).unwrap_or(MAX_OPEN)
    });
    share.clamp(MIN_OPEN, MAX_OPEN)
}

/// The soft limit on open descriptors of this process, if it can be read.
pub(super) fn descriptor_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Where a connection is in its one exchange; shared with the task that serves it.
#[derive(Debug, Clone, Default)]
pub(super) struct Stage(Arc<AtomicBool>);

impl Stage {
    /// Its request head is complete: it is being answered.
    pub(super) fn head_read(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub(super) fn answering(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which connection to close so that one more fits, given whether each open one is being answered
/// (oldest first): none while there is room, else the oldest still waiting for its head, else the
/// oldest.
pub(super) fn to_close(answering: &[bool], cap: usize) -> Option<usize> {
    if answering.len() < cap {
        return None;
    }
    answering.iter().position(|a| !a).or(Some(0))
}

/// One open connection: its stage, and the task serving it (aborting it closes the connection).
struct Open {
    stage: Stage,
    task: AbortHandle,
}

/// The connections open now, oldest first.
pub(super) struct Connections {
    open: VecDeque<Open>,
    cap: usize,
}

impl Connections {
    pub(super) fn new(cap: usize) -> Connections {
        Connections {
            open: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Makes room for one more connection (closing one if all the room is taken); returns how
    /// many were closed.
    pub(super) fn make_room(&mut self) -> usize {
        self.open.retain(|c| !c.task.is_finished());
        let answering: Vec<bool> = self.open.iter().map(|c| c.stage.answering()).collect();
        match to_close(&answering, self.cap) {
            Some(i) => usize::from(self.close(i)),
            None => 0,
        }
    }

    /// Closes the oldest connection still waiting for its head, if any: when descriptors run out,
    /// that frees one for the next probe.
    pub(super) fn close_oldest_waiting(&mut self) -> bool {
        match self.open.iter().position(|c| !c.stage.answering()) {
            Some(i) => self.close(i),
            None => false,
        }
    }

    /// Keeps track of a connection just accepted (after [`Connections::make_room`]).
    pub(super) fn add(&mut self, stage: Stage, task: AbortHandle) {
        self.open.push_back(Open { stage, task });
    }

    fn close(&mut self, i: usize) -> bool {
        self.open.remove(i).map(|c| c.task.abort()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_quarter_of_the_descriptors_within_bounds() {
        let rows: [(Option<u64>, usize); 8] = [
            (None, MAX_OPEN),
            (Some(0), MIN_OPEN),
            (Some(16), MIN_OPEN),
            (Some(64), 16),
            (Some(1024), 256),
            (Some(4096), MAX_OPEN),
            (Some(1 << 20), MAX_OPEN),
            (Some(u64::MAX), MAX_OPEN),
        ];
        for (limit, want) in rows {
            assert_eq!(cap(limit), want, "descriptor limit {limit:?}");
        }
    }

    #[test]
    fn a_new_connection_closes_the_oldest_waiting_one_else_the_oldest() {
        // "w": waiting for its request head, "a": being answered; oldest first.
        let rows: [(&str, usize, Option<usize>); 9] = [
            ("", 3, None),
            ("ww", 3, None),
            ("aa", 3, None),
            ("www", 3, Some(0)),
            ("aww", 3, Some(1)),
            ("aaw", 3, Some(2)),
            ("aaa", 3, Some(0)),
            ("aaaw", 3, Some(3)),
            ("a", 1, Some(0)),
        ];
        for (open, cap, want) in rows {
            let answering: Vec<bool> = open.chars().map(|c| c == 'a').collect();
            assert_eq!(
                to_close(&answering, cap),
                want,
                "{open:?} with room for {cap}"
            );
        }
    }

    #[tokio::test]
    async fn room_is_made_by_closing_a_waiting_connection() {
        let mut conns = Connections::new(2);
        let pending = || tokio::spawn(std::future::pending::<()>());
        let (old, newer) = (pending(), pending());
        let (answering, waiting) = (Stage::default(), Stage::default());
        answering.head_read();
        conns.add(answering, old.abort_handle());
        assert_eq!(conns.make_room(), 0, "room for a second one");
        conns.add(waiting, newer.abort_handle());
        assert_eq!(conns.make_room(), 1, "full: one closed");
        assert!(newer.await.is_err_and(|e| e.is_cancelled()));
        assert!(!old.is_finished(), "the one being answered stays");
        assert!(!conns.close_oldest_waiting(), "none waiting any more");
        old.abort();
    }
}
