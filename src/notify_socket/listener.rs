//! The listener: one OS thread that reads the current child's notify socket, so that nothing a
//! child sends runs on the process thread (the fail-closed deadline) or on the leadership loop's
//! runtime (the keepalives).
//!
//! The leadership loop opens a socket for each child before asking for it ([`Listener::open`]),
//! gives the child its address, and holds the [`Channel`]: the child's [`Notices`] as a watch,
//! which it is woken by only when something changed that it acts on or shows. Dropping the
//! channel (the child's tree is gone, or it never started) closes the socket.
//!
//! Bounded work, whatever a child (or anyone else) sends: a wake-up reads at most
//! [`DATAGRAMS_PER_WAKE`] datagrams into one fixed buffer; each costs a `recvmsg`, at most one
//! read of `/proc` for its sender ([`crate::notify_socket::sender`]) and a parse of at most
//! [`MAX_DATAGRAM`] bytes; nothing is logged per datagram (the first refusal of each kind per
//! child, then counts). The heartbeat (`WATCHDOG=1`) wakes nobody: the leadership loop reads the
//! last one when its watchdog is due. A new status text or an extension wakes it at most every
//! [`COALESCE`] (the latest wins); `READY=1`, `STOPPING=1` and `WATCHDOG=trigger`, which come
//! once each, at once. A flood of 10,000 datagrams a second thus costs this thread a few percent
//! of a core and the leadership loop nothing.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::watch;

use crate::core::clock::BootInstant;
use crate::notify_socket::message::{self, Malformed, MAX_DATAGRAM};
use crate::notify_socket::notices::Notices;
use crate::notify_socket::sender::Senders;
use crate::notify_socket::socket::{ChildSocket, Credentials, Place, Receive};

/// The most datagrams one wake-up reads; then the thread looks at its commands again.
pub const DATAGRAMS_PER_WAKE: usize = 256;

/// The leadership loop hears of a new status text or an extension at most this often.
pub const COALESCE: Duration = Duration::from_millis(50);

/// What became of one datagram, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the child's tree, and read.
    Accepted,
    /// From a process outside the child's tree: ignored.
    Foreign,
    /// Empty, or with a NUL byte: ignored.
    Malformed,
    /// Longer than [`MAX_DATAGRAM`]: ignored.
    Oversized,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Foreign => "foreign",
            Outcome::Malformed => "malformed",
            Outcome::Oversized => "oversized",
        }
    }
}

/// Who counts the datagrams (the metrics).
pub trait Tally: Send + Sync {
    fn datagram(&self, outcome: Outcome);
}

/// The handle the leadership loop holds.
pub struct Listener {
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
    place: Arc<Place>,
    /// The number of the next child's socket.
    next: AtomicU64,
}

/// What the thread is asked.
enum Command {
    /// Read this socket (child `n`) from now on, in place of any other.
    Open {
        n: u64,
        socket: ChildSocket,
        notices: watch::Sender<Notices>,
    },
    /// Child `n` started with this pid.
    Started { n: u64, pid: libc::pid_t },
    /// Child `n`'s socket is no longer needed.
    Close { n: u64 },
    /// Read every datagram child `n`'s socket holds now, then answer how many `ROLE=` messages
    /// were read so far (`None`: the socket could not be emptied, see [`SYNC_DATAGRAMS`]).
    Sync {
        n: u64,
        reply: tokio::sync::oneshot::Sender<Option<u64>>,
    },
}

/// The most datagrams a [`Channel::sync`] reads before it gives up: a child that floods its
/// socket faster than it is read cannot have a confirmation taken from it (its demotion then
/// ends at the lease deadline, as an unconfirmed one does).
pub const SYNC_DATAGRAMS: usize = 16 * DATAGRAMS_PER_WAKE;

/// One child's socket, as the leadership loop holds it.
pub struct Channel {
    n: u64,
    env_value: String,
    pub notices: watch::Receiver<Notices>,
    commands: mpsc::Sender<Command>,
    wake: Arc<EventFd>,
}

impl Channel {
    /// `NOTIFY_SOCKET`'s value for the child.
    pub fn env_value(&self) -> &str {
        &self.env_value
    }

    /// The child started with this pid: its own datagrams need no look in `/proc`.
    pub fn started(&self, pid: libc::pid_t) {
        let _ = self.commands.send(Command::Started { n: self.n, pid });
        wake(&self.wake);
    }

    /// Has every datagram the socket holds now read, and answers how many `ROLE=` messages were
    /// read by then: a mark after which a `ROLE=` message was sent after this call began
    /// ([`crate::notify_socket::notices::confirms`]). `None`: the socket could not be emptied
    /// (a flood), or the thread is gone.
    pub async fn sync(&self) -> Option<u64> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.commands
            .send(Command::Sync { n: self.n, reply })
            .ok()?;
        wake(&self.wake);
        answer.await.ok().flatten()
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close { n: self.n });
        wake(&self.wake);
    }
}

impl Listener {
    /// Makes the sockets' place and starts the thread. `tally` counts each datagram.
    pub fn start(tally: Arc<dyn Tally>) -> io::Result<Listener> {
        let place = Arc::new(Place::create());
        match &*place {
            Place::Dir(dir) => {
                tracing::debug!(dir = %dir.display(), "the children's notify sockets are in this directory")
            }
            Place::Abstract(name) => tracing::info!(prefix = %name,
                "no directory for the children's notify sockets (a read-only file system?): they are abstract"),
        }
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let (commands, received) = mpsc::channel();
        let reader = Reader {
            commands: received,
            wake: wake.clone(),
            tally,
            senders: Senders::new(
                nix::unistd::getpid().as_raw(),
                crate::process::tree::proc_is_ours(),
            ),
            current: None,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
        };
        // Not joined: it ends by itself once no command can come (see `Drop`), and the binary
        // ends with `process::exit`.
        let started = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || reader.run());
        if let Err(e) = started {
            place.remove();
            return Err(e);
        }
        Ok(Listener {
            commands,
            wake,
            place,
            next: AtomicU64::new(1),
        })
    }

    /// A socket for the next child, read from now on (in place of the last one's).
    pub fn open(&self) -> io::Result<Channel> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let socket = ChildSocket::bind(&self.place, n)?;
        let env_value = socket.env_value();
        let (tx, rx) = watch::channel(Notices::default());
        self.commands
            .send(Command::Open {
                n,
                socket,
                notices: tx,
            })
            .map_err(|_| io::Error::other("the notify socket's thread is gone"))?;
        wake(&self.wake);
        Ok(Channel {
            n,
            env_value,
            notices: rx,
            commands: self.commands.clone(),
            wake: self.wake.clone(),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The thread ends once every sender of commands is gone: ours here, a channel's later.
        // (A channel still held keeps it reading until that is dropped too.)
        let (gone, _) = mpsc::channel();
        self.commands = gone;
        wake(&self.wake);
        self.place.remove();
    }
}

fn wake(eventfd: &EventFd) {
    let _ = eventfd.write(1);
}

/// The thread's state.
struct Reader {
    commands: mpsc::Receiver<Command>,
    wake: Arc<EventFd>,
    tally: Arc<dyn Tally>,
    senders: Senders,
    current: Option<Current>,
    buf: Box<[u8]>,
}

/// The socket being read, and what its child said.
struct Current {
    n: u64,
    socket: ChildSocket,
    notices: watch::Sender<Notices>,
    /// When the leadership loop was last woken for a shown change, and since when one waits.
    last_woken: Option<Instant>,
    waiting: Option<Instant>,
    /// Refusals so far, each kind logged the first time.
    refused: Refused,
}

#[derive(Debug, Default)]
struct Refused {
    foreign: u64,
    malformed: u64,
    oversized: u64,
}

impl Reader {
    fn run(mut self) {
        loop {
            self.poll();
            if !self.take_commands() {
                self.close();
                return;
            }
            let _ = self.read_datagrams();
            self.wake_if_due(Instant::now());
        }
    }

    /// Sleeps until a command, a datagram, or the moment a waiting change is due.
    fn poll(&self) {
        let wake = self.wake.as_fd();
        let socket = self.current.as_ref().map_or(wake, |c| c.socket.as_fd());
        let mut fds = [wake, socket].map(|fd| PollFd::new(fd, PollFlags::POLLIN));
        let timeout = match self.current.as_ref().and_then(Current::due_at) {
            Some(at) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis();
                // Rounded up, so the wake-up is not early; at most a second (a u16 of ms).
                PollTimeout::from((ms + 1).min(1_000) as u16)
            }
            None => PollTimeout::NONE,
        };
        if let Err(e) = nix::poll::poll(&mut fds, timeout) {
            if e != nix::errno::Errno::EINTR {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = nix::unistd::read(&*self.wake, &mut [0u8; 8]);
    }

    /// Applies every pending command; false once nobody can send one any more.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Open { n, socket, notices }) => {
                    self.close();
                    self.senders.child(None);
                    self.current = Some(Current {
                        n,
                        socket,
                        notices,
                        last_woken: None,
                        waiting: None,
                        refused: Refused::default(),
                    });
                }
                Ok(Command::Started { n, pid }) => {
                    if self.current.as_ref().is_some_and(|c| c.n == n) {
                        self.senders.main_started(pid);
                    }
                }
                Ok(Command::Close { n }) => {
                    if self.current.as_ref().is_some_and(|c| c.n == n) {
                        self.close();
                    }
                }
                Ok(Command::Sync { n, reply }) => {
                    let _ = reply.send(self.sync(n));
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Closes the current socket, saying what was refused on it.
    fn close(&mut self) {
        let Some(c) = self.current.take() else { return };
        let r = &c.refused;
        if r.foreign + r.malformed + r.oversized > 0 {
            tracing::info!(
                foreign = r.foreign,
                malformed = r.malformed,
                oversized = r.oversized,
                accepted = c.notices.borrow().accepted,
                "the child's notify socket is closed; datagrams were ignored on it"
            );
        }
    }

    /// Reads what child `n`'s socket holds, at most [`SYNC_DATAGRAMS`]; then how many `ROLE=`
    /// messages were read, if the socket was emptied.
    fn sync(&mut self, n: u64) -> Option<u64> {
        if self.current.as_ref().is_none_or(|c| c.n != n) {
            return None;
        }
        for _ in 0..SYNC_DATAGRAMS / DATAGRAMS_PER_WAKE {
            if self.read_datagrams() {
                return self
                    .current
                    .as_ref()
                    .map(|c| c.notices.borrow().role_messages);
            }
        }
        None
    }

    /// Reads at most [`DATAGRAMS_PER_WAKE`] datagrams; whether the socket is empty now.
    fn read_datagrams(&mut self) -> bool {
        for _ in 0..DATAGRAMS_PER_WAKE {
            let Some(c) = &mut self.current else {
                return true;
            };
            let got = match c.socket.receive(&mut self.buf) {
                Ok(Receive::Nothing) => return true,
                Ok(Receive::Datagram {
                    len,
                    sender,
                    truncated,
                    ..
                }) => (len, sender, truncated),
                Err(e) => {
                    tracing::debug!(error = %e, "reading the child's notify socket failed");
                    return false;
                }
            };
            let (len, sender, truncated) = got;
            let outcome = self.one(len, sender, truncated);
            self.tally.datagram(outcome);
        }
        false
    }

    /// One datagram: who sent it, whether it fits, what it says.
    fn one(&mut self, len: usize, sender: Option<Credentials>, truncated: bool) -> Outcome {
        let Some(c) = &mut self.current else {
            return Outcome::Foreign;
        };
        let pid = sender.map_or(0, |s| s.pid);
        if !self
            .senders
            .belongs(pid, crate::process::tree::parent_and_start)
        {
            c.refused.foreign += 1;
            if c.refused.foreign == 1 {
                tracing::warn!(pid, uid = sender.map(|s| s.uid),
                    "ignored a datagram on the child's notify socket from a process outside the child's tree (more are counted, not logged)");
            }
            return Outcome::Foreign;
        }
        if truncated || len > MAX_DATAGRAM {
            c.refused.oversized += 1;
            if c.refused.oversized == 1 {
                tracing::warn!(bytes = len, limit = MAX_DATAGRAM,
                    "ignored a datagram on the child's notify socket: too long (more are counted, not logged)");
            }
            return Outcome::Oversized;
        }
        let message = match message::parse(&self.buf[..len]) {
            Ok(m) => m,
            Err(why) => {
                c.refused.malformed += 1;
                if c.refused.malformed == 1 {
                    let why = match why {
                        Malformed::Empty => "empty",
                        Malformed::Nul => "a NUL byte",
                    };
                    tracing::warn!(why, "ignored a datagram on the child's notify socket (more are counted, not logged)");
                }
                return Outcome::Malformed;
            }
        };
        let now = BootInstant::now();
        let mut changed = Default::default();
        c.notices.send_if_modified(|n| {
            changed = n.apply(&message, now);
            changed.at_once
        });
        if changed.at_once {
            c.last_woken = Some(Instant::now());
            c.waiting = None;
        } else if changed.shown && c.waiting.is_none() {
            c.waiting = Some(Instant::now());
        }
        Outcome::Accepted
    }

    /// Wakes the leadership loop for a waiting change once [`COALESCE`] has passed since the
    /// last time.
    fn wake_if_due(&mut self, now: Instant) {
        let Some(c) = &mut self.current else { return };
        if c.due_at().is_some_and(|at| at <= now) {
            c.notices.send_modify(|_| {});
            c.last_woken = Some(now);
            c.waiting = None;
        }
    }
}

impl Current {
    /// When a waiting change is to be told, if one waits: at once, or [`COALESCE`] after the
    /// last time.
    fn due_at(&self) -> Option<Instant> {
        let since = self.waiting?;
        Some(self.last_woken.map_or(since, |t| (t + COALESCE).max(since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[derive(Default)]
    struct Counts([AtomicU64; 4]);

    impl Tally for Counts {
        fn datagram(&self, o: Outcome) {
            self.0[o as usize].fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Counts {
        fn get(&self, o: Outcome) -> u64 {
            self.0[o as usize].load(Ordering::SeqCst)
        }
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn send(channel: &Channel, what: &[u8]) {
        let client = UnixDatagram::unbound().unwrap();
        match channel.env_value().strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
                client.send_to_addr(what, &addr).unwrap();
            }
            None => {
                client.send_to(what, channel.env_value()).unwrap();
            }
        }
    }

    /// The listener hears this test process as the child would be heard (its own datagrams are
    /// from outside every child's tree): a child of ours sends for it.
    fn send_from_child(channel: &Channel, what: &str) {
        let _serial = crate::test_children();
        let sock = channel.env_value().to_owned();
        let status = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys\n\
                 a=sys.argv[1]\n\
                 a='\\0'+a[1:] if a.startswith('@') else a\n\
                 s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\n\
                 s.sendto(sys.argv[2].encode(),a)",
                &sock,
                what,
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_child_is_heard_outsiders_are_counted_and_a_closed_socket_is_gone() {
        // Tests that start children take turns; this one's children are only senders.
        let counts = Arc::new(Counts::default());
        let listener = Listener::start(counts.clone()).unwrap();
        let mut channel = listener.open().unwrap();
        // This test process is no descendant of itself: foreign.
        send(&channel, b"READY=1");
        wait_until("a foreign datagram", || counts.get(Outcome::Foreign) == 1);
        assert_eq!(channel.notices.borrow().ready_at, None);
        send_from_child(&channel, "READY=1\nSTATUS=up and \u{1b}[1mrunning");
        wait_until("READY=1 from a child", || {
            channel.notices.borrow().ready_at.is_some()
        });
        assert!(channel.notices.has_changed().unwrap());
        let n = channel.notices.borrow_and_update().clone();
        assert_eq!(n.status.as_deref(), Some("up and  [1mrunning"));
        assert_eq!(counts.get(Outcome::Accepted), 1);
        send_from_child(&channel, "");
        send_from_child(&channel, &"x".repeat(MAX_DATAGRAM + 1));
        wait_until("an empty and an oversized datagram", || {
            counts.get(Outcome::Malformed) == 1 && counts.get(Outcome::Oversized) == 1
        });
        // A heartbeat wakes nobody, but is there to read.
        send_from_child(&channel, "WATCHDOG=1");
        wait_until("a heartbeat", || {
            channel.notices.borrow().last_ping.is_some()
        });
        assert!(!channel.notices.has_changed().unwrap());
        // A new status text alone wakes the watcher too.
        send_from_child(&channel, "STATUS=busy");
        wait_until("a status change to be told", || {
            channel.notices.has_changed().unwrap()
        });
        assert_eq!(
            channel.notices.borrow_and_update().status.as_deref(),
            Some("busy")
        );
        // The next child's socket replaces this one, which is unlinked.
        let old = channel.env_value().to_owned();
        let next = listener.open().unwrap();
        assert_ne!(next.env_value(), old);
        wait_until("the old socket to go", || {
            old.starts_with('@') || !std::path::Path::new(&old).exists()
        });
        drop(channel);
        drop(next);
        drop(listener);
        if !old.starts_with('@') {
            let dir = std::path::Path::new(&old).parent().unwrap().to_owned();
            assert!(!dir.exists(), "{dir:?} left behind");
        }
    }

    /// A sync has everything sent before it read: its mark counts a `ROLE=` message sent just
    /// before, whether or not the thread had woken for it yet.
    #[test]
    fn a_sync_reads_everything_sent_before_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let listener = Listener::start(Arc::new(Counts::default())).unwrap();
        let channel = listener.open().unwrap();
        assert_eq!(rt.block_on(channel.sync()), Some(0));
        for round in 1..=3 {
            send_from_child(&channel, "ROLE=standby\nSTATUS=standing by");
            assert_eq!(rt.block_on(channel.sync()), Some(round));
        }
        let n = channel.notices.borrow().clone();
        assert_eq!(
            n.role.map(|r| r.role),
            Some(crate::notify_socket::message::Role::Standby)
        );
        // A replaced channel is synced no more.
        let next = listener.open().unwrap();
        assert_eq!(rt.block_on(channel.sync()), None);
        assert_eq!(rt.block_on(next.sync()), Some(0));
    }

    #[test]
    fn a_waiting_change_is_told_after_the_coalescing_pause() {
        let t0 = Instant::now();
        let (tx, _rx) = watch::channel(Notices::default());
        let place = Place::Abstract(format!("singleton-exec-test/due/{}", std::process::id()));
        let mut c = Current {
            n: 1,
            socket: ChildSocket::bind(&place, 1).unwrap(),
            notices: tx,
            last_woken: None,
            waiting: None,
            refused: Refused::default(),
        };
        assert_eq!(c.due_at(), None);
        // The first change is due as it came (it used to be due a moment after every look).
        c.waiting = Some(t0);
        assert_eq!(c.due_at(), Some(t0));
        c.last_woken = Some(t0);
        assert_eq!(c.due_at(), Some(t0 + COALESCE));
        c.last_woken = Some(t0 - COALESCE * 3);
        assert_eq!(c.due_at(), Some(t0));
    }
}
