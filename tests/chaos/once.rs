//! The chaos suite's run-once mode (`chaos_once_runs_to_completion_never_two_at_once`): every
//! round, three replicas are started with `--once round-N` over the same three-member etcd
//! (authentication on by default, as the other variants), a fault hits the runner (or etcd)
//! mid-run, then the command is allowed to finish. Checked every round:
//! * no two runs at once: each run is `tests/programs/once_worker.py` behind
//!   `once_worker_start.sh`, which tries the flock every run holds for its whole life within
//!   milliseconds of the exec (`lock=held`: an overlap);
//! * no lost completion: once every replica has exited, `status --once` says `done`, and its
//!   record names a run whose command ended with 0;
//! * every replica exits with what it must: 0, or 137 / 143 for the runner SIGKILLed / SIGTERMed;
//! * a quiet round runs the command once; the rest are counted: runs against completions.
//!
//! `CHAOS_ROUNDS` (default 20), `CHAOS_SEED`, `CHAOS_AUTH=0` as for the other variants;
//! `CHAOS_ONCE_FAULTS=SigkillRunner,Quiet` draws only these kinds.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{enable_auth, tail, Rng, ONE_AT_A_TIME, ROOT_PW, USER, USER_PW};
use crate::support::etcd::Options;
use crate::support::proxy::FaultProxy;
use crate::support::{bin, boot_ns, program, runtime, EtcdCluster, Replica};

const TTL: &str = "3s";
const REPLICAS: usize = 3;
const ELECTION: &str = "chaos-once";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OnceFault {
    /// Nothing: the command runs once.
    Quiet,
    /// The runner's supervisor is SIGKILLed mid-run (its child goes with it: the guard).
    SigkillRunner,
    /// The runner gets SIGTERM mid-run: it stops its child and exits 143.
    SigtermRunner,
    /// The runner is cut off from etcd until a waiter runs the command again.
    PartitionRunner,
    /// An operator runs `etcdctl lease revoke` on the runner's lease.
    OperatorRevokesLease,
    /// An operator runs `etcdctl del` on the runner's key.
    OperatorDeletesKey,
    /// One etcd member stops for 0.5-3 s.
    StopMember,
    /// One etcd member is frozen (SIGSTOP) for 0.5-3 s.
    PauseMember,
    /// The command is let finish and its runner is SIGKILLed at once: its record may or may not
    /// be written first; either way the round must end with exactly one.
    SigkillAtSuccess,
}

const ONCE_FAULTS: [OnceFault; 9] = [
    OnceFault::Quiet,
    OnceFault::SigkillRunner,
    OnceFault::SigtermRunner,
    OnceFault::PartitionRunner,
    OnceFault::OperatorRevokesLease,
    OnceFault::OperatorDeletesKey,
    OnceFault::StopMember,
    OnceFault::PauseMember,
    OnceFault::SigkillAtSuccess,
];

impl OnceFault {
    /// Whether the runner's run is surely cut short: a waiter runs the command again.
    fn reruns(self) -> bool {
        matches!(
            self,
            OnceFault::SigkillRunner
                | OnceFault::SigtermRunner
                | OnceFault::PartitionRunner
                | OnceFault::OperatorRevokesLease
                | OnceFault::OperatorDeletesKey
        )
    }

    /// The runner's exit codes: 0, or how the fault ended it (SIGKILLed just after its command
    /// succeeded, it may have recorded and exited 0 first).
    fn runner_exits(self) -> &'static [i32] {
        match self {
            OnceFault::SigkillRunner => &[137],
            OnceFault::SigkillAtSuccess => &[137, 0],
            OnceFault::SigtermRunner => &[143],
            _ => &[0],
        }
    }
}

fn once_faults() -> Vec<OnceFault> {
    match std::env::var("CHAOS_ONCE_FAULTS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|n| {
                ONCE_FAULTS
                    .iter()
                    .copied()
                    .find(|f| format!("{f:?}").eq_ignore_ascii_case(n.trim()))
                    .unwrap_or_else(|| panic!("CHAOS_ONCE_FAULTS: unknown {n:?}: {ONCE_FAULTS:?}"))
            })
            .collect(),
        _ => ONCE_FAULTS.to_vec(),
    }
}

/// One `start` or `end` line of a round's runs.log.
#[derive(Debug, Clone)]
struct Run {
    id: String,
    revision: String,
    overlap: bool,
    boot_ns: u128,
}

fn runs(dir: &Path) -> Vec<Run> {
    lines(dir, "start")
        .into_iter()
        .filter_map(|f| {
            Some(Run {
                id: f.get(1)?.clone(),
                revision: f.get(2)?.clone(),
                boot_ns: f.get(6)?.parse().ok()?,
                overlap: f.get(7)? != "lock=free",
            })
        })
        .collect()
}

/// The revisions of the runs whose command ended by itself with 0.
fn succeeded(dir: &Path) -> Vec<String> {
    lines(dir, "end")
        .into_iter()
        .filter(|f| f.last().map(String::as_str) == Some("code=0"))
        .filter_map(|f| f.get(2).cloned())
        .collect()
}

fn lines(dir: &Path, kind: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("runs.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|f| f.first().map(String::as_str) == Some(kind))
        .collect()
}

struct OnceChaos {
    etcd: EtcdCluster,
    auth: bool,
    /// Per replica slot, one proxy per member: cutting them all partitions that replica.
    proxies: Vec<Vec<FaultProxy>>,
    failures: Vec<String>,
}

impl OnceChaos {
    fn spawn(&self, i: usize, name: &str, dir: &Path) -> Replica {
        let endpoints = self.proxies[i]
            .iter()
            .map(|p| p.url.clone())
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(bin());
        cmd.args(["--endpoints", &endpoints, "--id", &format!("o{i}")]);
        if self.auth {
            cmd.args(["--user", USER])
                .env("SINGLETON_EXEC_PASSWORD", USER_PW);
        }
        cmd.args(["--election", ELECTION, "--once", name, "--ttl", TTL])
            .args(["--dial-timeout", "1s", "--"])
            .arg("sh")
            .arg(program("once_worker_start.sh"))
            .arg(dir);
        Replica::spawn_piped(&format!("o{i}"), cmd)
    }

    /// `status --once NAME --output json`, as root, on any member.
    fn status(&self, name: &str) -> Option<serde_json::Value> {
        let mut cmd = Command::new(bin());
        cmd.args(["status", "--endpoints", &self.etcd.endpoints()])
            .args(["--election", ELECTION, "--once", name, "--output", "json"])
            .args(["--dial-timeout", "2s"]);
        if self.auth {
            cmd.args(["--user", "root", "--password", ROOT_PW]);
        }
        let out = cmd.output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3").args([
            "--endpoints",
            &self.etcd.endpoints(),
            "--dial-timeout=2s",
            "--command-timeout=5s",
        ]);
        if self.auth {
            cmd.args(["--user", &format!("root:{ROOT_PW}")]);
        }
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn logs(rs: &[Replica]) -> String {
    rs.iter()
        .map(|r| format!("--- {} log tail:\n{}\n", r.name, tail(&r.log(), 25)))
        .collect()
}

/// Waits up to `timeout` for `cond`, looking every 20 ms.
fn within(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn chaos_once_runs_to_completion_never_two_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rounds: usize = std::env::var("CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| (boot_ns() as u64) | 1);
    let kinds = once_faults();
    let auth = std::env::var("CHAOS_AUTH").map_or(true, |v| v != "0");
    println!("chaos --once: {rounds} rounds, seed {seed} (CHAOS_SEED={seed} replays this run), faults {kinds:?}, authentication {}",
        if auth { "on, token TTL 2 s" } else { "off" });
    let mut rng = Rng::new(seed);
    let token_ttl: &[&str] = if auth {
        &["--auth-token-ttl", "2"]
    } else {
        &[]
    };
    let etcd = EtcdCluster::start_with_args(3, Options::default(), token_ttl);
    if auth {
        runtime()
            .block_on(enable_auth(&etcd.endpoint(0)))
            .expect("enable auth");
    }
    let proxies = (0..REPLICAS)
        .map(|_| {
            (0..3)
                .map(|m| FaultProxy::start(&etcd.endpoint(m)))
                .collect()
        })
        .collect();
    let mut c = OnceChaos {
        etcd,
        auth,
        proxies,
        failures: Vec::new(),
    };
    let base = tempfile::tempdir().unwrap();
    let long = Duration::from_secs(60);
    let started = Instant::now();
    // (rounds, runs, completions, longest time from the fault to the next run's start)
    let mut tally: BTreeMap<OnceFault, (usize, usize, usize, Duration)> = BTreeMap::new();
    let mut order = kinds.clone();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for round in 0..rounds {
        let fault = order
            .get(round)
            .copied()
            .unwrap_or_else(|| kinds[rng.below(kinds.len() as u64) as usize]);
        let hold = Duration::from_millis(500 + rng.below(2500));
        let member = rng.below(3) as usize;
        let name = format!("round-{round}");
        let dir = base.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("wait"), "").unwrap();
        let mut problems: Vec<String> = Vec::new();
        let mut rs: Vec<Replica> = (0..REPLICAS).map(|i| c.spawn(i, &name, &dir)).collect();
        if !within(long, || !runs(&dir).is_empty()) {
            let line = format!("round {round} {fault:?}: no run started");
            println!("FAILURE {line}\n{}", logs(&rs));
            c.failures.push(line);
            continue;
        }
        let first = runs(&dir)[0].clone();
        let runner: usize = first.id.trim_start_matches('o').parse().unwrap();
        // The others have joined the queue (or the round is not the one this fault is about).
        within(long, || {
            c.status(&name)
                .is_some_and(|v| v["waiting"].as_u64() == Some(REPLICAS as u64 - 1))
        });
        let at = Instant::now();
        let fault_at = boot_ns();
        let rerun = |dir: &Path| within(long, || runs(dir).len() >= 2);
        match fault {
            OnceFault::Quiet => {}
            OnceFault::SigkillRunner | OnceFault::SigtermRunner => {
                let sig = if fault == OnceFault::SigkillRunner {
                    libc::SIGKILL
                } else {
                    libc::SIGTERM
                };
                rs[runner].signal(sig);
                rerun(&dir);
            }
            OnceFault::PartitionRunner => {
                c.proxies[runner].iter().for_each(FaultProxy::cut);
                rerun(&dir);
                c.proxies[runner].iter().for_each(FaultProxy::heal);
            }
            OnceFault::OperatorRevokesLease | OnceFault::OperatorDeletesKey => {
                let v = c.status(&name).unwrap_or_default();
                let (key, lease) = (
                    v["runner"]["key"].as_str().unwrap_or_default().to_owned(),
                    v["runner"]["lease"].as_str().unwrap_or_default().to_owned(),
                );
                let done = match fault {
                    OnceFault::OperatorRevokesLease => c.etcdctl(&["lease", "revoke", &lease]),
                    _ => c.etcdctl(&["del", &key]),
                };
                if let Err(e) = done {
                    problems.push(format!("etcdctl on {key} ({lease}): {e}"));
                }
                rerun(&dir);
            }
            OnceFault::StopMember => {
                c.etcd.stop(member);
                std::thread::sleep(hold);
                c.etcd.restart(member);
            }
            OnceFault::PauseMember => {
                c.etcd.pause(member);
                std::thread::sleep(hold);
                c.etcd.resume(member);
            }
            OnceFault::SigkillAtSuccess => {
                std::fs::write(dir.join("go"), "").unwrap();
                within(long, || !lines(&dir, "end").is_empty());
                rs[runner].signal(libc::SIGKILL);
            }
        }
        std::fs::write(dir.join("go"), "").unwrap();
        // Every replica exits, with what it must.
        for (i, r) in rs.iter_mut().enumerate() {
            if !within(long, || r.try_status().is_some()) {
                problems.push(format!("{} did not exit", r.name));
                continue;
            }
            let code = r.wait(Duration::ZERO);
            let want: &[i32] = if i == runner {
                fault.runner_exits()
            } else {
                &[0]
            };
            if !want.contains(&code) {
                problems.push(format!("{} exited {code}, not {want:?}", r.name));
            }
        }
        let all = runs(&dir);
        // From the fault to the start of the run after the runner's.
        let took = all
            .get(1)
            .map(|r| Duration::from_nanos(r.boot_ns.saturating_sub(fault_at) as u64));
        if let Some(o) = all.iter().find(|r| r.overlap) {
            problems.push(format!(
                "OVERLAP: {} (revision {}) found the lock held",
                o.id, o.revision
            ));
        }
        let v = c.status(&name).unwrap_or_default();
        let completed = v["state"] == "done";
        let revision = v["record"]["fencing_revision"].to_string();
        if !completed {
            problems.push(format!("LOST COMPLETION: the state is {}", v["state"]));
        } else if !succeeded(&dir).contains(&revision) {
            problems.push(format!(
                "the record names revision {revision}, whose run did not end with 0: {:?}",
                lines(&dir, "end")
            ));
        }
        if fault == OnceFault::Quiet && all.len() != 1 {
            problems.push(format!("a quiet round ran {} times", all.len()));
        }
        if fault.reruns() && all.len() < 2 {
            problems.push("the run cut short was not run again".into());
        }
        for what in problems {
            let line = format!("round {round} {fault:?}: {what}");
            println!("FAILURE {line}\n{}", logs(&rs));
            c.failures.push(line);
        }
        let t = tally.entry(fault).or_default();
        t.0 += 1;
        t.1 += all.len();
        t.2 += usize::from(completed);
        if let Some(took) = took {
            t.3 = t.3.max(took);
        }
        println!(
            "round {round:3} {fault:?}: {} run(s), {}, {:.1} s",
            all.len(),
            if completed { "done" } else { "NOT DONE" },
            at.elapsed().as_secs_f64()
        );
    }
    let (mut runs_total, mut done_total) = (0, 0);
    println!(
        "chaos --once summary ({rounds} rounds in {:.0} s):",
        started.elapsed().as_secs_f64()
    );
    for (fault, (n, runs, done, took)) in &tally {
        runs_total += runs;
        done_total += done;
        println!(
            "  {fault:?}: {n} rounds, {runs} runs, {done} completions, longest from the fault to a rerun {:.2} s",
            took.as_secs_f64()
        );
    }
    println!(
        "  all: {runs_total} runs for {done_total} completions in {rounds} rounds; 0 overlaps and 0 lost completions unless listed: {:?}",
        c.failures
    );
    assert!(
        c.failures.is_empty(),
        "chaos --once (CHAOS_SEED={seed}): {:#?}",
        c.failures
    );
}
