//! Many replicas of one election on one local etcd: what a leader change and a quiet minute cost.
//!
//! `cargo bench --bench scale` starts `SCALE_REPLICAS` (default 1000) replicas at the defaults
//! (TTL `SCALE_TTL`, default 10 s), all at once, waits until every one is queued, then prints: etcd requests per leader
//! change (keepalives aside) and the handoff (holder's child exits → next child's first line),
//! keepalives per second and how evenly they arrive (the busiest 100 ms against the mean), etcd's
//! CPU while idle, and the supervisors' resident memory (the leader's and the standbys' median).
//! Under `cargo test` it does nothing: it is a benchmark, not a test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::etcd::http_get;
use support::{bin, EtcdCluster};

const CHANGES: usize = 5;

struct Replica {
    child: Child,
    fifo: PathBuf,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: a benchmark; run it with `cargo bench --bench scale`");
        return;
    }
    let n: usize = std::env::var("SCALE_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let ttl: u64 = std::env::var("SCALE_TTL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    raise_fd_limit();
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let etcd_pid = etcd.pid(0).expect("etcd pid") as i32;
    println!("singleton-exec, {n} replicas of one election, one local etcd, TTL {ttl} s, other options at their defaults\n");

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
    let t = Instant::now();
    let mut replicas: Vec<Replica> = (0..n)
        .map(|k| start(&etcd, dir.path(), &starts_fifo, k, ttl))
        .collect();
    wait_queued(&etcd, n, Duration::from_secs(300));
    let all_queued = t.elapsed();
    // Let the start-up settle: every replica has sent a few keepalives.
    std::thread::sleep(Duration::from_secs(5));

    // Keepalives over two keepalive intervals (at least 10 s) of quiet, in 100 ms buckets; etcd's
    // CPU over the same time.
    let window = Duration::from_secs((ttl / 5).max(10));
    let cpu0 = cpu_ms(etcd_pid);
    let mut buckets = Vec::new();
    let mut last = keepalives(&etcd);
    let quiet = Instant::now();
    while quiet.elapsed() < window {
        std::thread::sleep(Duration::from_millis(100));
        let now = keepalives(&etcd);
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
    let (_, leader) = starts
        .recv_timeout(Duration::from_secs(30))
        .expect("a leader");
    let leader_rss = rss_kib(replicas[leader].child.id() as i32) as f64 / 1024.0;
    let mut standby_rss: Vec<f64> = replicas
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != leader)
        .map(|(_, r)| rss_kib(r.child.id() as i32) as f64 / 1024.0)
        .collect();
    standby_rss.sort_by(|a, b| a.partial_cmp(b).unwrap());

    // Leader changes: release the holder's child, time the next child's first line.
    let mut holder = leader;
    let mut handoffs = Vec::new();
    let r0 = requests(&etcd);
    let cpu1 = cpu_ms(etcd_pid);
    let changes_started = Instant::now();
    for _ in 0..CHANGES {
        let t = Instant::now();
        release(&replicas[holder].fifo);
        let Ok((at, k)) = starts.recv_timeout(Duration::from_secs(30)) else {
            println!("no handoff within 30 s");
            break;
        };
        handoffs.push((at - t).as_secs_f64() * 1000.0);
        holder = k;
        std::thread::sleep(Duration::from_millis(300));
    }
    let changes_took = changes_started.elapsed().as_secs_f64();
    let per_change = (requests(&etcd) - r0) / handoffs.len().max(1) as f64;
    let change_cpu = (cpu_ms(etcd_pid) - cpu1) / changes_took / 10.0;
    handoffs.sort_by(|a, b| a.partial_cmp(b).unwrap());

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| replicas started and queued | {n} in {:.1} s |",
        all_queued.as_secs_f64()
    );
    println!(
        "| etcd requests per leader change, keepalives aside | {per_change:.1} (over {} changes) |",
        handoffs.len()
    );
    println!(
        "| handoff (holder's child exits → next child's first line) | {:.1} ms median [{:.1}–{:.1}] |",
        handoffs.get(handoffs.len() / 2).copied().unwrap_or(f64::NAN),
        handoffs.first().copied().unwrap_or(f64::NAN),
        handoffs.last().copied().unwrap_or(f64::NAN)
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

    for r in &mut replicas {
        // SAFETY: signalling the replica's process group (its child included).
        unsafe { libc::killpg(r.child.id() as i32, libc::SIGKILL) };
        let _ = r.child.kill();
    }
    for mut r in replicas {
        let _ = r.child.wait();
    }
}

/// Replica `k`: its child says "started K" on the shared FIFO, then waits on its own.
fn start(etcd: &EtcdCluster, dir: &Path, starts: &Path, k: usize, ttl: u64) -> Replica {
    let fifo = mkfifo(&dir.join(format!("fifo{k}")));
    let script = format!(
        "echo started {k} > {}; read x < {}",
        starts.display(),
        fifo.display()
    );
    let mut cmd = Command::new(bin());
    cmd.args(["--endpoints", &etcd.endpoints(), "--id", &format!("r{k}")])
        .args(["--election", "scale", "--ttl", &format!("{ttl}s"), "-q"])
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    Replica {
        child: cmd.spawn().expect("start a replica"),
        fifo,
    }
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

fn wait_queued(etcd: &EtcdCluster, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let queued = support::runtime().block_on(async {
            let mut c = etcd_client::Client::connect([etcd.endpoint(0)], None)
                .await
                .ok()?;
            let opts = etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only();
            Some(
                c.get("/singleton-exec/scale/", Some(opts))
                    .await
                    .ok()?
                    .count(),
            )
        });
        if queued.unwrap_or(0) as usize >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {queued:?} of {n} queued");
        std::thread::sleep(Duration::from_millis(200));
    }
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
