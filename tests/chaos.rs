//! The proof: several replicas over a real three-member etcd cluster, a fault injected every round,
//! and a checker that no two children ever ran at once.
//!
//! Children are `tests/programs/worker.py`: each records its start on the boot clock and checks, after
//! registering itself, whether any other worker is still alive (the definitive overlap test, with no
//! sampling). A monitor thread also timestamps each child's death, to report the margin between an
//! old child's death and the next child's start and the leaderless gap each fault caused.
//!
//! `cargo test chaos` runs 20 rounds; `CHAOS_ROUNDS=200 cargo test --release chaos -- --nocapture` is
//! the long run. `CHAOS_SEED` replays a run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::netns::NetNs;
use crate::support::proxy::FaultProxy;
use crate::support::{alive, boot_ns, program, wait_for, EtcdCluster, Replica};

const TTL_S: u64 = 4;
const REPLICAS: usize = 3;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Fault {
    SigtermLeader,
    SigkillLeader,
    PartitionLeader,
    /// Where root: the leader's network namespace loses its link (`ip link set down`).
    LinkDownLeader,
    StopMember,
    PauseMember,
    RestartCluster,
    SigstopStandby,
}

const FAULTS: [Fault; 8] = [
    Fault::SigtermLeader,
    Fault::SigkillLeader,
    Fault::PartitionLeader,
    Fault::LinkDownLeader,
    Fault::StopMember,
    Fault::PauseMember,
    Fault::RestartCluster,
    Fault::SigstopStandby,
];

impl Fault {
    /// The longest leaderless gap this fault may cause, given how long it was held.
    fn gap_bound(self, held: Duration) -> Duration {
        let ttl = Duration::from_secs(TTL_S);
        match self {
            // Quiet runs stay under 0.3 s (the report prints the real figure); the bound is generous
            // because the new child is a python interpreter, slow to start on a loaded machine.
            Fault::SigtermLeader => Duration::from_secs(2),
            Fault::SigkillLeader | Fault::PartitionLeader | Fault::LinkDownLeader => {
                ttl + Duration::from_secs(3)
            }
            _ => ttl + held + Duration::from_secs(10),
        }
    }

    /// Whether this fault may change the leader at all.
    fn may_change_leader(self) -> bool {
        !matches!(self, Fault::SigstopStandby)
    }
}

#[derive(Debug, Clone)]
struct Start {
    id: String,
    pid: i32,
    boot_ns: u128,
    overlap: usize,
}

fn starts(dir: &Path) -> Vec<Start> {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("start "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Start {
                id: f.get(1)?.to_string(),
                pid: f.get(3)?.parse().ok()?,
                boot_ns: f.get(4)?.parse().ok()?,
                overlap: f.get(5)?.strip_prefix("overlap=")?.parse().ok()?,
            })
        })
        .collect()
}

/// Timestamps the death of every worker that registered in the directory.
struct DeathMonitor {
    deaths: Arc<Mutex<HashMap<i32, u128>>>,
    stop: Arc<AtomicBool>,
}

impl DeathMonitor {
    fn start(dir: &Path) -> Self {
        let deaths = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s, dir) = (deaths.clone(), stop.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let Some(pid) = name
                            .strip_suffix(".pid")
                            .and_then(|p| p.parse::<i32>().ok())
                        else {
                            continue;
                        };
                        let mut map = d.lock().unwrap();
                        if !map.contains_key(&pid) && !alive(pid) {
                            map.insert(pid, boot_ns());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        DeathMonitor { deaths, stop }
    }

    fn death(&self, pid: i32) -> Option<u128> {
        self.deaths.lock().unwrap().get(&pid).copied()
    }
}

impl Drop for DeathMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Slot {
    name: String,
    proxies: Vec<FaultProxy>,
    /// Where root: the replica's own network namespace; its proxies listen on our side of the link.
    netns: Option<NetNs>,
    replica: Replica,
}

fn start_replica(name: &str, proxies: &[FaultProxy], netns: Option<&NetNs>, dir: &Path) -> Replica {
    let endpoints = proxies
        .iter()
        .map(|p| p.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let ttl = format!("{TTL_S}s");
    let worker = program("worker.py");
    let args = [
        "--election",
        "chaos",
        "--ttl",
        &ttl,
        "--dial-timeout",
        "1s",
        "--",
        "python3",
        worker.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    if let Some(ns) = netns {
        return Replica::start_in_netns(&ns.name, name, &endpoints, &args);
    }
    Replica::start(name, &endpoints, &args)
}

/// The child that runs now: the newest start whose process is alive.
fn running(dir: &Path, mon: &DeathMonitor) -> Option<Start> {
    starts(dir)
        .into_iter()
        .rev()
        .find(|s| mon.death(s.pid).is_none() && alive(s.pid))
}

fn wait_running(
    dir: &Path,
    mon: &DeathMonitor,
    not: Option<i32>,
    timeout: Duration,
    slots: &[Slot],
) -> Start {
    let mut found = None;
    wait_for(
        timeout,
        || {
            found = running(dir, mon).filter(|s| Some(s.pid) != not);
            found.is_some()
        },
        || {
            let logs: String = slots
                .iter()
                .map(|s| format!("--- {}:\n{}\n", s.name, tail(&s.replica.log(), 30)))
                .collect();
            format!(
                "no child running (not {not:?}); starts: {:?}\n{logs}",
                starts(dir)
            )
        },
    );
    found.unwrap()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How many candidates are in the queue, read from any member that answers.
fn candidates(etcd: &EtcdCluster) -> Option<i64> {
    crate::support::runtime().block_on(async {
        for m in 0..etcd.members.len() {
            let opts = etcd_client::ConnectOptions::new()
                .with_timeout(Duration::from_secs(1))
                .with_connect_timeout(Duration::from_secs(1));
            let Ok(mut c) = etcd_client::Client::connect([etcd.endpoint(m)], Some(opts)).await
            else {
                continue;
            };
            let get = etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only();
            if let Ok(r) = c.get("/singleton-exec/chaos/", Some(get)).await {
                return Some(r.count());
            }
        }
        None
    })
}

#[derive(Default)]
struct Report {
    faults: BTreeMap<Fault, usize>,
    max_gap: BTreeMap<Fault, Duration>,
    changes: usize,
    min_margin: Option<i128>,
}

#[test]
fn chaos_no_two_children_ever_run_at_once() {
    let rounds: usize = std::env::var("CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| (boot_ns() as u64) | 1);
    println!("chaos: {rounds} rounds, seed {seed} (CHAOS_SEED={seed} replays this run)");
    let mut rng = Rng(seed);
    let mut etcd = EtcdCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let mon = DeathMonitor::start(dir.path());
    let use_netns = NetNs::available();
    println!(
        "chaos: network namespaces {}",
        if use_netns {
            "on (root)"
        } else {
            "off (not root): LinkDownLeader uses the proxies"
        }
    );
    let mut slots: Vec<Slot> = (0..REPLICAS)
        .map(|i| {
            let name = format!("r{i}");
            let netns = use_netns.then(|| NetNs::create(i as u8).expect("network namespace"));
            let host = netns
                .as_ref()
                .map(|n| n.host_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into());
            let proxies: Vec<FaultProxy> = (0..3)
                .map(|m| FaultProxy::start_on(&host, &etcd.endpoint(m)))
                .collect();
            let replica = start_replica(&name, &proxies, netns.as_ref(), dir.path());
            Slot {
                name,
                proxies,
                netns,
                replica,
            }
        })
        .collect();
    let long = Duration::from_secs(60);
    let mut report = Report::default();

    // Every kind once, in a shuffled order, then at random: even a short run covers them all.
    let mut order = FAULTS.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for round in 0..rounds {
        // Each fault starts from a settled system: every replica back in the queue.
        wait_for(
            long,
            || candidates(&etcd) == Some(REPLICAS as i64),
            || {
                format!(
                    "round {round}: replicas not all back in the queue: {:?}",
                    candidates(&etcd)
                )
            },
        );
        let before = wait_running(dir.path(), &mon, None, long, &slots);
        let leader = slots
            .iter()
            .position(|s| s.name == before.id)
            .expect("leader slot");
        let fault = order
            .get(round)
            .copied()
            .unwrap_or_else(|| FAULTS[rng.below(FAULTS.len() as u64) as usize]);
        *report.faults.entry(fault).or_default() += 1;
        let hold = Duration::from_millis(500 + rng.below(2500));
        let t = Instant::now();
        match fault {
            Fault::SigtermLeader | Fault::SigkillLeader => {
                let sig = if fault == Fault::SigtermLeader {
                    libc::SIGTERM
                } else {
                    libc::SIGKILL
                };
                slots[leader].replica.signal(sig);
                slots[leader].replica.wait(long);
                wait_running(dir.path(), &mon, Some(before.pid), long, &slots);
                let s = &mut slots[leader];
                s.replica = start_replica(&s.name, &s.proxies, s.netns.as_ref(), dir.path());
            }
            Fault::PartitionLeader => {
                slots[leader].proxies.iter().for_each(FaultProxy::cut);
                wait_running(dir.path(), &mon, Some(before.pid), long, &slots);
                slots[leader].proxies.iter().for_each(FaultProxy::heal);
            }
            Fault::LinkDownLeader => {
                let cut = |s: &Slot, down: bool| match (&s.netns, down) {
                    (Some(ns), true) => ns.cut(),
                    (Some(ns), false) => ns.heal(),
                    (None, true) => s.proxies.iter().for_each(FaultProxy::cut),
                    (None, false) => s.proxies.iter().for_each(FaultProxy::heal),
                };
                cut(&slots[leader], true);
                wait_running(dir.path(), &mon, Some(before.pid), long, &slots);
                cut(&slots[leader], false);
            }
            Fault::StopMember => {
                let m = rng.below(3) as usize;
                etcd.stop(m);
                std::thread::sleep(hold);
                etcd.restart(m);
            }
            Fault::PauseMember => {
                let m = rng.below(3) as usize;
                etcd.pause(m);
                std::thread::sleep(hold);
                etcd.resume(m);
            }
            Fault::RestartCluster => {
                (0..3).for_each(|m| etcd.stop(m));
                std::thread::sleep(hold);
                for m in 0..3 {
                    etcd.restart_no_wait(m);
                }
                (0..3).for_each(|m| etcd.wait_healthy(m));
            }
            Fault::SigstopStandby => {
                let s = (leader + 1 + rng.below(REPLICAS as u64 - 1) as usize) % REPLICAS;
                slots[s].replica.signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_secs(TTL_S + 1));
                slots[s].replica.signal(libc::SIGCONT);
            }
        }
        let after = wait_running(dir.path(), &mon, None, long, &slots);
        let held = t.elapsed();
        if after.pid != before.pid {
            assert!(
                fault.may_change_leader(),
                "round {round}: {fault:?} changed the leader {} -> {}",
                before.id,
                after.id
            );
            report.changes += 1;
            // Every start after the old one, up to the current, is a handoff; measure each.
            let all = starts(dir.path());
            let first_new = all
                .iter()
                .find(|s| s.boot_ns > before.boot_ns && s.pid != before.pid)
                .unwrap();
            let died = mon.death(before.pid).expect("the old child is dead");
            let margin = first_new.boot_ns as i128 - died as i128;
            report.min_margin = Some(report.min_margin.map_or(margin, |m| m.min(margin)));
            assert!(
                margin > 0,
                "round {round}: {fault:?}: new child started {margin} ns before the old one died"
            );
            let gap = Duration::from_nanos(margin as u64);
            let bound = fault.gap_bound(held);
            assert!(
                gap <= bound,
                "round {round}: {fault:?}: leaderless for {gap:?}, bound {bound:?}"
            );
            let max = report.max_gap.entry(fault).or_default();
            *max = (*max).max(gap);
        }
        println!(
            "round {round:3}: {fault:?} {} -> {} in {:.2}s",
            before.id,
            after.id,
            held.as_secs_f64()
        );
    }

    let overlaps = starts(dir.path()).iter().filter(|s| s.overlap > 0).count();
    // Stop everything and check that nothing is left.
    for s in &slots {
        s.replica.signal(libc::SIGCONT);
        s.replica.signal(libc::SIGTERM);
    }
    for s in &mut slots {
        s.replica.wait(long);
    }
    let all = starts(dir.path());
    wait_for(
        Duration::from_secs(10),
        || all.iter().all(|s| !alive(s.pid)),
        || "a child outlived its supervisor".into(),
    );

    println!(
        "chaos summary: rounds {rounds}, leader changes {}, overlaps {overlaps}",
        report.changes
    );
    for (f, n) in &report.faults {
        let gap = report
            .max_gap
            .get(f)
            .map(|g| format!("{:.3}s", g.as_secs_f64()))
            .unwrap_or_else(|| "-".into());
        println!("  {f:?}: {n} rounds, max leaderless gap {gap}");
    }
    if let Some(m) = report.min_margin {
        println!(
            "  smallest margin old child death -> next child start: {:.3}s",
            m as f64 / 1e9
        );
    }
    assert_eq!(overlaps, 0, "two children ran at once: {all:?}");
}
