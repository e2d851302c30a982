//! Many replicas of one election on one local etcd: what a leader change and a quiet minute cost.
//!
//! `cargo bench --bench scale` starts `SCALE_REPLICAS` (default 1000; 0: skip this part) replicas
//! at the defaults (TTL `SCALE_TTL`, default 10 s), all at once, waits until every one is queued,
//! then prints: etcd requests per leader change (keepalives aside) and the handoff (holder's child
//! exits → next child's first line; SIGTERM to the holder → next child's first line), keepalives
//! per second and how evenly they arrive (the busiest 100 ms against the mean), etcd's CPU while
//! idle, and the supervisors' resident memory (the leader's and the standbys' median).
//!
//! Then, for each queue length in `SCALE_STANDBYS` (comma-separated; default `1,30,300,1000`;
//! empty: none), a fresh election of one holder and that many standbys: both handoffs, alternating,
//! [`CHANGES`] of each. The replica that gave up leadership exits (the defaults), and a new one
//! joins at the end of the queue before the next change, so the queue keeps its length.
//! Under `cargo test` it does nothing: it is a benchmark, not a test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use support::etcd::http_get;
use support::{bin, EtcdCluster};

/// Leader changes of each kind per measure (the median is printed).
const CHANGES: usize = 7;
/// Between two leader changes: the old holder gone, the queue whole again.
const BETWEEN_CHANGES: Duration = Duration::from_millis(300);
/// After every replica is queued: each has set up its watch and sent a keepalive or two.
const SETTLE: Duration = Duration::from_secs(5);

struct Replica {
    child: Child,
    fifo: PathBuf,
}

/// The replicas started so far (by number: a child says "started K"), on one etcd.
struct Fleet {
    etcd: EtcdCluster,
    dir: tempfile::TempDir,
    ttl: u64,
    starts_fifo: PathBuf,
    /// When each "started K" line arrived, and K.
    starts: Receiver<(Instant, usize)>,
    replicas: Vec<Option<Replica>>,
}

/// How a leader change is brought about.
#[derive(Clone, Copy)]
enum Change {
    /// The holder's child exits.
    ChildExit,
    /// The holder gets SIGTERM.
    Sigterm,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: a benchmark; run it with `cargo bench --bench scale`");
        return;
    }
    let n: usize = env_or("SCALE_REPLICAS", 1000);
    let ttl: u64 = env_or("SCALE_TTL", 10);
    let standbys: Vec<usize> = std::env::var("SCALE_STANDBYS")
        .unwrap_or_else(|_| "1,30,300,1000".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    raise_fd_limit();
    let mut fleet = Fleet::new(ttl);
    if n > 0 {
        one_election(&mut fleet, n);
    }
    if !standbys.is_empty() {
        queue_lengths(&mut fleet, &standbys);
    }
}

/// `n` replicas of one election: the figures of the first table.
fn one_election(fleet: &mut Fleet, n: usize) {
    let ttl = fleet.ttl;
    let etcd_pid = fleet.etcd.pid(0).expect("etcd pid") as i32;
    println!("singleton-exec, {n} replicas of one election, one local etcd, TTL {ttl} s, other options at their defaults\n");
    let t = Instant::now();
    let all: Vec<usize> = (0..n).map(|_| fleet.start("scale")).collect();
    fleet.wait_queued("scale", n, Duration::from_secs(300));
    let all_queued = t.elapsed();
    // Let the start-up settle: every replica has sent a few keepalives.
    std::thread::sleep(SETTLE);

    // Keepalives over two keepalive intervals (at least 10 s) of quiet, in 100 ms buckets; etcd's
    // CPU over the same time.
    let window = Duration::from_secs((ttl / 5).max(10));
    let cpu0 = cpu_ms(etcd_pid);
    let mut buckets = Vec::new();
    let mut last = keepalives(&fleet.etcd);
    let quiet = Instant::now();
    while quiet.elapsed() < window {
        std::thread::sleep(Duration::from_millis(100));
        let now = keepalives(&fleet.etcd);
        buckets.push(now - last);
        last = now;
    }
    let idle_cpu = (cpu_ms(etcd_pid) - cpu0) / quiet.elapsed().as_secs_f64() / 10.0;
    let mean = buckets.iter().sum::<f64>() / buckets.len() as f64;
    let busiest = buckets.iter().cloned().fold(0.0, f64::max);
    // Per second too: a burst shows as a busy second followed by empty ones.
    let seconds: Vec<f64> = buckets.chunks(10).map(|c| c.iter().sum()).collect();
    let busiest_s = seconds.iter().cloned().fold(0.0, f64::max);
    let quietest_s = seconds.iter().cloned().fold(f64::MAX, f64::min);

    // Memory: the leader (the first to start leads) and the standbys.
    let (_, leader) = fleet
        .starts
        .recv_timeout(Duration::from_secs(30))
        .expect("a leader");
    let leader_rss = rss_kib(fleet.pid(leader)) as f64 / 1024.0;
    let mut standby_rss: Vec<f64> = all
        .iter()
        .filter(|&&k| k != leader)
        .map(|&k| rss_kib(fleet.pid(k)) as f64 / 1024.0)
        .collect();
    standby_rss.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // Leader changes: release the holder's child, time the next child's first line.
    let mut holder = leader;
    let mut on_exit = Vec::new();
    let r0 = requests(&fleet.etcd);
    let cpu1 = cpu_ms(etcd_pid);
    let changes_started = Instant::now();
    for _ in 0..CHANGES {
        let Some((ms, next)) = fleet.change(holder, Change::ChildExit) else {
            break;
        };
        on_exit.push(ms);
        holder = next;
        std::thread::sleep(BETWEEN_CHANGES);
    }
    let changes_took = changes_started.elapsed().as_secs_f64();
    let per_change = (requests(&fleet.etcd) - r0) / on_exit.len().max(1) as f64;
    let change_cpu = (cpu_ms(etcd_pid) - cpu1) / changes_took / 10.0;
    // Then the holder gets SIGTERM (after the request count: the same three requests, and the
    // replica's exit).
    let mut on_sigterm = Vec::new();
    for _ in 0..CHANGES {
        let Some((ms, next)) = fleet.change(holder, Change::Sigterm) else {
            break;
        };
        on_sigterm.push(ms);
        holder = next;
        std::thread::sleep(BETWEEN_CHANGES);
    }

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| replicas started and queued | {n} in {:.1} s |",
        all_queued.as_secs_f64()
    );
    println!(
        "| etcd requests per leader change, keepalives aside | {per_change:.1} (over {} changes) |",
        on_exit.len()
    );
    println!(
        "| handoff (holder's child exits → next child's first line) | {} |",
        median_range(&mut on_exit)
    );
    println!(
        "| handoff (SIGTERM to the holder → next child's first line) | {} |",
        median_range(&mut on_sigterm)
    );
    println!(
        "| keepalives per second | {:.0} mean; busiest second {busiest_s:.0}, quietest {quietest_s:.0}; busiest 100 ms {busiest:.0} ({:.1}× the mean) |",
        mean * 10.0,
        busiest / mean.max(f64::MIN_POSITIVE)
    );
    println!("| etcd CPU, quiet | {idle_cpu:.1} % of one core |");
    println!("| etcd CPU, during the leader changes | {change_cpu:.1} % of one core |");
    println!("| supervisor RSS, leader | {leader_rss:.1} MiB |");
    println!(
        "| supervisor RSS, standbys | {:.1} MiB median [{:.1}–{:.1}] |",
        standby_rss[standby_rss.len() / 2],
        standby_rss[0],
        standby_rss[standby_rss.len() - 1]
    );
    println!();
    fleet.stop_all();
}

/// For each queue length: one holder and `standbys` standbys of a fresh election, both handoffs.
fn queue_lengths(fleet: &mut Fleet, counts: &[usize]) {
    println!(
        "singleton-exec, one holder and N standbys of one election, one local etcd, TTL {} s; \
         {CHANGES} leader changes of each kind, alternating; median [min–max]\n",
        fleet.ttl
    );
    println!("| standbys | handoff: holder's child exits → next child's first line | handoff: SIGTERM to the holder → next child's first line |");
    println!("|---|---|---|");
    for &standbys in counts {
        let election = format!("scale-{standbys}");
        for _ in 0..=standbys {
            fleet.start(&election);
        }
        fleet.wait_queued(&election, standbys + 1, Duration::from_secs(300));
        std::thread::sleep(SETTLE);
        let (_, mut holder) = fleet
            .starts
            .recv_timeout(Duration::from_secs(30))
            .expect("a leader");
        let (mut on_exit, mut on_sigterm) = (Vec::new(), Vec::new());
        'changes: for _ in 0..CHANGES {
            for (how, into) in [
                (Change::ChildExit, &mut on_exit),
                (Change::Sigterm, &mut on_sigterm),
            ] {
                let Some((ms, next)) = fleet.change(holder, how) else {
                    break 'changes;
                };
                into.push(ms);
                fleet.reap(holder);
                holder = next;
                // The queue keeps its length: a new replica joins at its end.
                fleet.start(&election);
                fleet.wait_queued(&election, standbys + 1, Duration::from_secs(30));
                std::thread::sleep(BETWEEN_CHANGES);
            }
        }
        println!(
            "| {standbys} | {} | {} |",
            median_range(&mut on_exit),
            median_range(&mut on_sigterm)
        );
        fleet.stop_all();
    }
    println!();
}

impl Fleet {
    fn new(ttl: u64) -> Fleet {
        let etcd = EtcdCluster::single();
        let dir = tempfile::tempdir().unwrap();
        // Every child writes "started K" to one FIFO; a thread timestamps each line as it arrives.
        let starts_fifo = mkfifo(&dir.path().join("starts"));
        let (tx, starts) = std::sync::mpsc::channel::<(Instant, usize)>();
        let reader_path = starts_fifo.clone();
        std::thread::spawn(move || {
            // Read and write: the FIFO never reaches end-of-file between writers.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(reader_path)
                .unwrap();
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Some(k) = line.strip_prefix("started ").and_then(|k| k.parse().ok()) {
                    if tx.send((Instant::now(), k)).is_err() {
                        break;
                    }
                }
            }
        });
        Fleet {
            etcd,
            dir,
            ttl,
            starts_fifo,
            starts,
            replicas: Vec::new(),
        }
    }

    /// Starts replica K of `election`: its child says "started K" on the shared FIFO, then waits
    /// on its own. Returns K.
    fn start(&mut self, election: &str) -> usize {
        let k = self.replicas.len();
        let fifo = mkfifo(&self.dir.path().join(format!("fifo{k}")));
        let script = format!(
            "echo started {k} > {}; read x < {}",
            self.starts_fifo.display(),
            fifo.display()
        );
        let mut cmd = Command::new(bin());
        cmd.args([
            "--endpoints",
            &self.etcd.endpoints(),
            "--id",
            &format!("r{k}"),
        ])
        .args([
            "--election",
            election,
            "--ttl",
            &format!("{}s", self.ttl),
            "-q",
        ])
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
        // Killed with the benchmark, however it ends: each replica's guard then kills its child.
        let child = support::spawn_with_deathsig(&mut cmd).expect("start a replica");
        self.replicas.push(Some(Replica { child, fifo }));
        k
    }

    fn pid(&self, k: usize) -> i32 {
        self.replicas[k].as_ref().map_or(0, |r| r.child.id() as i32)
    }

    /// One leader change away from `holder`: the time from the cause to the next child's first
    /// line, and who leads now. `None` if no child started within 30 s.
    fn change(&mut self, holder: usize, how: Change) -> Option<(f64, usize)> {
        while self.starts.try_recv().is_ok() {} // nothing stale is taken for the new child
        let t = Instant::now();
        match how {
            Change::ChildExit => release(&self.replicas[holder].as_ref()?.fifo),
            // SAFETY: signalling a replica we started and have not reaped.
            Change::Sigterm => unsafe {
                libc::kill(self.pid(holder), libc::SIGTERM);
            },
        }
        match self.starts.recv_timeout(Duration::from_secs(30)) {
            Ok((at, k)) => Some(((at - t).as_secs_f64() * 1000.0, k)),
            Err(_) => {
                println!("no handoff within 30 s");
                None
            }
        }
    }

    /// Waits for replica K, which is on its way out, to exit.
    fn reap(&mut self, k: usize) {
        if let Some(mut r) = self.replicas[k].take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(r.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            kill(&mut r);
        }
    }

    /// Stops every replica: SIGTERM, so each revokes its lease (no thousand leases left to expire
    /// during the next measure), then SIGKILL for any left after 10 s.
    fn stop_all(&mut self) {
        for r in self.replicas.iter().flatten() {
            // SAFETY: signalling a replica we started and have not reaped.
            unsafe { libc::kill(r.child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for slot in &mut self.replicas {
            if let Some(mut r) = slot.take() {
                while matches!(r.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                kill(&mut r);
            }
        }
        while self.starts.try_recv().is_ok() {}
    }

    fn wait_queued(&self, election: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let dir = format!("/singleton-exec/{election}/");
        loop {
            let queued = support::runtime().block_on(async {
                let mut c = etcd_client::Client::connect([self.etcd.endpoint(0)], None)
                    .await
                    .ok()?;
                let opts = etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only();
                Some(c.get(dir.as_str(), Some(opts)).await.ok()?.count())
            });
            if queued.unwrap_or(0) as usize >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {queued:?} of {n} queued");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for r in self.replicas.iter_mut().flatten() {
            kill(r);
        }
    }
}

/// SIGKILL to a replica's process group (its child included), and reaps it.
fn kill(r: &mut Replica) {
    // SAFETY: signalling the process group of a replica we started and have not reaped.
    unsafe { libc::killpg(r.child.id() as i32, libc::SIGKILL) };
    let _ = r.child.kill();
    let _ = r.child.wait();
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// "M ms median [min–max]" of `v` (sorted here).
fn median_range(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "{:.1} ms median [{:.1}–{:.1}]",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

fn mkfifo(path: &Path) -> PathBuf {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    path.to_path_buf()
}

fn release(fifo: &Path) {
    let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    let _ = f.write_all(b"go\n");
}

fn metric_sum(etcd: &EtcdCluster, keep: impl Fn(&str) -> bool) -> f64 {
    let body = http_get(&etcd.members[0].metrics_url, "/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("grpc_server_msg_received_total") && keep(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn keepalives(etcd: &EtcdCluster) -> f64 {
    metric_sum(etcd, |l| l.contains("grpc_method=\"LeaseKeepAlive\""))
}

fn requests(etcd: &EtcdCluster) -> f64 {
    metric_sum(etcd, |l| !l.contains("grpc_method=\"LeaseKeepAlive\""))
}
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading and raising our own soft limit to the hard one (etcd inherits it).
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// utime + stime of a process, in ms.
fn cpu_ms(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks * 1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
