//! The HTTP endpoints under hostile clients. `--health-addr` is reachable by every pod of a
//! cluster, so any of them can open 1,000 connections and send nothing, send a request head a byte
//! at a time, or ask for `/metrics` and never read the answer. Probes must still be answered at
//! once (a liveness probe that times out kills a healthy leader), the supervisor must not run out
//! of file descriptors, and a leader under the attack keeps renewing its lease and keeps its child.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{alive, args, free_port, http, replica_with, wait_for, with_rlimit};
use crate::support::{EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(30);
/// Idle connections the attack keeps open (it opens a new one for each the server closes).
const IDLE: usize = 1000;
/// Connections sending a never-ending request head, one byte per round (slowloris).
const SLOW: usize = 20;
/// Connections that ask for `/metrics` and never read the answer.
const DEAF: usize = 20;
/// How often the attack looks for connections the server closed and opens new ones, at most
/// [`REOPEN_PER_ROUND`] a round: a steady flow of up to 500 new connections a second.
const ROUND: Duration = Duration::from_millis(100);
const REOPEN_PER_ROUND: usize = 50;
/// How long the attack goes on while the probes ask: two of the leader's 3 s TTLs, so that a
/// stalled leadership loop would lose the lease (and stop the child) within it.
const ATTACK: Duration = Duration::from_secs(6);
/// Kubelet's default probe timeout. The answers take milliseconds; this bound leaves room for a
/// loaded 2-core machine, and the typical (median) answer is held to a tenth of it.
const PROBE_BOUND: Duration = Duration::from_secs(1);
/// The supervisor's descriptor limit in these tests: the usual default soft limit, which the
/// attack's connections alone would nearly use up.
const REPLICA_NOFILE: u64 = 1024;

/// This test process needs more than a thousand descriptors: soft limit up to the hard one.
fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    let needed = (IDLE + SLOW + DEAF) as u64 + 200;
    assert!(
        lim.rlim_cur >= needed,
        "the hard descriptor limit {} is below the {needed} this test needs",
        lim.rlim_cur
    );
}

/// What a hostile connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idle,
    Slow,
    Deaf,
}

/// The slow head: a request line, then header lines forever, never the blank line that ends it.
const SLOW_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
const SLOW_MORE: &[u8] = b"X-Slow: 1\r\n";

/// The byte a slow head sends after `sent` others.
fn slow_byte(sent: usize) -> u8 {
    match SLOW_HEAD.get(sent) {
        Some(b) => *b,
        None => SLOW_MORE[(sent - SLOW_HEAD.len()) % SLOW_MORE.len()],
    }
}

struct Conn {
    kind: Kind,
    stream: Option<TcpStream>,
    /// Bytes of the head a slow connection has sent.
    sent: usize,
}

impl Conn {
    fn open(kind: Kind, addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok();
        let mut c = Conn {
            kind,
            stream,
            sent: 0,
        };
        if let Some(s) = &mut c.stream {
            if kind == Kind::Deaf {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            }
            let _ = s.set_nonblocking(true);
        }
        c
    }

    /// Whether the server has closed it (a deaf connection's unread answer does not count).
    fn closed(&self) -> bool {
        let Some(s) = &self.stream else {
            return true;
        };
        let mut b = [0u8; 1];
        match s.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => self.kind != Kind::Deaf,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        }
    }

    /// One more byte of a slow head.
    fn dribble(&mut self) {
        let (Some(s), Kind::Slow) = (&mut self.stream, self.kind) else {
            return;
        };
        if s.write(&[slow_byte(self.sent)]).is_ok_and(|n| n == 1) {
            self.sent += 1;
        }
    }
}

/// What the attack did.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Idle connections open when the probes began.
    idle_at_start: usize,
    /// New connections opened in place of ones the server closed.
    reopened: usize,
}

/// The attack on one port, kept up by a thread until [`Attack::stop`].
struct Attack {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Tally>>,
}

impl Attack {
    /// Opens every connection (idle ones until one cannot be opened within a second), then keeps
    /// them up.
    fn start(port: u16) -> Attack {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut conns: Vec<Conn> = Vec::new();
        for _ in 0..IDLE {
            let c = Conn::open(Kind::Idle, addr);
            if c.stream.is_none() {
                break;
            }
            conns.push(c);
        }
        let mut tally = Tally {
            idle_at_start: conns.len(),
            ..Tally::default()
        };
        conns.extend((0..SLOW).map(|_| Conn::open(Kind::Slow, addr)));
        conns.extend((0..DEAF).map(|_| Conn::open(Kind::Deaf, addr)));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let mut budget = REOPEN_PER_ROUND;
                for c in conns.iter_mut() {
                    if budget > 0 && c.closed() {
                        *c = Conn::open(c.kind, addr);
                        budget -= 1;
                        tally.reopened += 1;
                    }
                    c.dribble();
                }
                std::thread::sleep(ROUND);
            }
            tally
        });
        Attack {
            stop,
            thread: Some(thread),
        }
    }

    /// Ends the attack: every connection is closed.
    fn stop(&mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop();
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The value of one sample line of `/metrics`, by its exact name.
fn sample(port: u16, name: &str) -> f64 {
    let (_, body) = http("GET", port, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
}

/// Open descriptors of a process.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A leader on `port` with the usual descriptor limit, a 3 s TTL and a child that says "started".
fn leader(etcd: &EtcdCluster, port: u16, election: &str) -> Replica {
    let opts = [
        "--election",
        election,
        "--health-addr",
        &port.to_string(),
        "--ttl",
        "3s",
    ];
    let child = ["--", "sh", "-c", "echo started; exec sleep 300"].map(String::from);
    let r = replica_with("probed", &etcd.endpoints(), &args(&opts, &child), |c| {
        with_rlimit(c, libc::RLIMIT_NOFILE, REPLICA_NOFILE)
    });
    r.wait_stdout("started", LONG);
    wait_for(LONG, || http("GET", port, "/leader").0 == 200, || r.log());
    r
}

/// What the probes saw and how the supervisor fared, for the failure messages and the log.
#[derive(Debug, Default)]
struct Seen {
    answers: Vec<Duration>,
    max_fds: usize,
    max_rss_kib: u64,
}

impl Seen {
    fn quantile(&self, q: f64) -> Duration {
        let mut a = self.answers.clone();
        a.sort();
        a.get(((a.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// One round of probes: every read-only endpoint, each answered 200 within [`PROBE_BOUND`], and
/// `/status` still showing the same child.
fn probe_round(r: &Replica, port: u16, child_pid: i64, seen: &mut Seen) {
    for path in ["/healthz", "/leader", "/status", "/metrics"] {
        let t = Instant::now();
        let (code, body) = http("GET", port, path);
        let took = t.elapsed();
        assert!(
            code == 200 && took < PROBE_BOUND,
            "GET {path} under attack: status {code} after {took:?}, want 200 within \
             {PROBE_BOUND:?}\n{}",
            r.log()
        );
        if path == "/status" {
            let st = json(&body);
            assert_eq!(
                (st["role"].as_str(), st["child_pid"].as_i64()),
                (Some("leader"), Some(child_pid)),
                "the leader lost its child or its role under attack: {st}\n{}",
                r.log()
            );
        }
        seen.answers.push(took);
    }
    seen.max_fds = seen.max_fds.max(fds(r.pid()));
    seen.max_rss_kib = seen.max_rss_kib.max(rss_kib(r.pid()));
}

/// The defect: a few dozen idle connections made every endpoint stop answering for 10 s, and
/// re-opening them kept the endpoints down. Here 1,000 idle connections, re-opened as the server
/// closes them, slow heads and unread answers go on for three TTLs while the probes ask.
#[test]
fn probes_are_answered_at_once_while_a_thousand_idle_connections_are_open() {
    raise_own_fd_limit();
    let etcd = EtcdCluster::single();
    let port = free_port();
    let r = leader(&etcd, port, "probes");
    let child_pid = json(&http("GET", port, "/status").1)["child_pid"]
        .as_i64()
        .expect("a child pid");
    let renewals = || sample(port, "singleton_exec_keepalive_rtt_seconds_count");
    let (renewed_before, fds_before, rss_before) = (renewals(), fds(r.pid()), rss_kib(r.pid()));

    let mut attack = Attack::start(port);
    let mut seen = Seen::default();
    let until = Instant::now() + ATTACK;
    while Instant::now() < until {
        probe_round(&r, port, child_pid, &mut seen);
        std::thread::sleep(Duration::from_millis(50));
    }
    let renewed = renewals() - renewed_before;
    let tally = attack.stop();
    let (median, p99) = (seen.quantile(0.5), seen.quantile(0.99));
    eprintln!(
        "{} answers under attack: median {median:?}, p99 {p99:?}, max {:?}; {tally:?}; \
         supervisor descriptors {fds_before} before, at most {} during; {rss_before} KiB resident \
         before, at most {} KiB during; {renewed} renewals",
        seen.answers.len(),
        seen.quantile(1.0),
        seen.max_fds,
        seen.max_rss_kib,
    );
    assert_eq!(
        tally.idle_at_start, IDLE,
        "the server stopped accepting connections"
    );
    assert!(
        median < PROBE_BOUND / 10,
        "the typical answer took {median:?}"
    );
    assert!(
        renewed >= 3.0,
        "{renewed} lease renewals in {ATTACK:?} with a 3 s TTL\n{}",
        r.log()
    );
    assert!(alive(child_pid as i32), "the child is gone\n{}", r.log());
    assert!(
        seen.max_fds < REPLICA_NOFILE as usize / 2,
        "the supervisor held {} descriptors",
        seen.max_fds
    );
    assert!(
        !r.log().contains("accept failed"),
        "the supervisor ran out of descriptors\n{}",
        r.log()
    );
}

/// Reads until the server closes the connection, calling `each_round` every 100 ms; panics if it
/// is still open after `within`. Returns what the server sent.
fn assert_closed(
    r: &Replica,
    what: &str,
    s: &mut TcpStream,
    within: Duration,
    mut each_round: impl FnMut(&mut TcpStream),
) -> Vec<u8> {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        assert!(
            t.elapsed() < within,
            "{what} is still open after {within:?}\n{}",
            r.log()
        );
        each_round(s);
    }
    eprintln!("{what} was closed after {:?}", t.elapsed());
    got
}

/// Without an attack, a connection holds a slot only while it is useful: one that sends nothing,
/// or sends its head a byte at a time, is closed within seconds; one that asks to be kept alive
/// is closed after its answer; one with an outsized head is refused (431).
#[test]
fn idle_slow_and_kept_alive_connections_are_closed() {
    let etcd = EtcdCluster::single();
    let port = free_port();
    let r = leader(&etcd, port, "probes-close");
    let addr = ("127.0.0.1", port);
    // Comfortably above the 2 s allowed for a request head, well below the 10 s of a whole
    // exchange.
    let bound = Duration::from_secs(5);

    let mut idle = TcpStream::connect(addr).unwrap();
    assert_closed(&r, "an idle connection", &mut idle, bound, |_| {});

    let mut slow = TcpStream::connect(addr).unwrap();
    let mut sent = 0;
    assert_closed(&r, "a slow request head", &mut slow, bound, |s| {
        if s.write_all(&[slow_byte(sent)]).is_ok() {
            sent += 1;
        }
    });

    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let answer = assert_closed(&r, "a kept-alive connection", &mut kept, bound, |_| {});
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut big = TcpStream::connect(addr).unwrap();
    let filler = "a".repeat(10 * 1024);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {filler}\r\n\r\n");
    let _ = big.write_all(head.as_bytes());
    let answer = assert_closed(&r, "a 10 KiB request head", &mut big, bound, |_| {});
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}
