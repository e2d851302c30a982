//! singleton-exec beside `etcdctl lock`, against one local etcd, alternating A B A B.
//!
//! `cargo bench --bench compare` prints a table of medians, spreads (min–max) and ratios:
//! launch overhead, handoff on child exit and on SIGTERM, takeover after SIGKILL (TTL 5s) and
//! whether the old child survives, resident memory and idle CPU, etcd requests per leader change
//! with 1, 10, 100 and 300 standbys, and the longest etcd black hole a leader at the defaults survives at
//! the worst phase; and, for singleton-exec alone (etcdctl lock gives its child no notify socket),
//! the handoff on SIGTERM to the new child's READY=1 (`systemd-notify --ready` as the child);
//! and `--hot-standby` beside the cold mode and `etcdctl lock` (`BENCH_ONLY=hot`): SIGTERM to the
//! holder → the new holder's child acting as the leader, and the old child's demotion (or exit) →
//! that, with a child that starts in 1 ms and one that takes 2 s to warm up.
//! `BENCH_REPS` sets the repetitions (default 10); `BENCH_ONLY` picks parts.
//! Under `cargo test` it does nothing: it is a benchmark, not a test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use support::etcd::http_get;
use support::proxy::FaultProxy;
use support::{bin, EtcdCluster};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Se,
    Etcdctl,
    /// singleton-exec --hot-standby
    SeHot,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Se => "singleton-exec",
            Tool::Etcdctl => "etcdctl lock",
            Tool::SeHot => "singleton-exec --hot-standby",
        }
    }
    /// The key prefix under which this tool queues for `name`.
    fn prefix(self, name: &str) -> String {
        match self {
            Tool::Se | Tool::SeHot => format!("/singleton-exec/{name}/"),
            Tool::Etcdctl => format!("{name}/"),
        }
    }
}

/// A running holder or waiter, its stdout lines timestamped as they arrive.
struct Proc {
    child: Child,
    lines: Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().expect("spawn");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// When a line starting with `prefix` arrived, waiting up to `timeout`.
    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Option<(Instant, String)> {
        if let Some(hit) = self.seen.iter().find(|(_, l)| l.starts_with(prefix)) {
            return Some(hit.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (t, line) = self.lines.recv_timeout(left).ok()?;
            self.seen.push((t, line.clone()));
            if line.starts_with(prefix) {
                return Some((t, line));
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Kills the process group (the tool and, for etcdctl, its child) and reaps.
    fn kill(self) {
        drop(self);
    }
}

/// Also when a measurement panics: nothing the bench started outlives it. The group leader is
/// reaped only here, so its process group id cannot have been reused.
impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::killpg(self.pid(), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bench {
    etcd: EtcdCluster,
    dir: tempfile::TempDir,
    seq: u32,
}

impl Bench {
    fn fresh_name(&mut self) -> String {
        self.seq += 1;
        format!("bench{}", self.seq)
    }

    fn fifo(&mut self) -> PathBuf {
        self.seq += 1;
        let p = self.dir.path().join(format!("fifo{}", self.seq));
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        p
    }

    /// `tool` holding or waiting for `name`, running `script` under sh.
    fn start(&self, tool: Tool, name: &str, id: &str, ttl: u64, script: &str) -> Proc {
        let ep = self.etcd.endpoints();
        let mut cmd = match tool {
            Tool::Se | Tool::SeHot => {
                let mut c = Command::new(bin());
                if tool == Tool::SeHot {
                    c.arg("--hot-standby");
                }
                c.args([
                    "--endpoints",
                    &ep,
                    "--id",
                    id,
                    "--election",
                    name,
                    "--ttl",
                    &format!("{ttl}s"),
                    "-q",
                    "--",
                ]);
                c
            }
            Tool::Etcdctl => {
                let mut c = Command::new("etcdctl");
                // `--` so that etcdctl does not take the command's own flags (sh -c) for its.
                c.env("ETCDCTL_API", "3").args([
                    "--endpoints",
                    &ep,
                    "lock",
                    "--ttl",
                    &ttl.to_string(),
                    name,
                    "--",
                ]);
                c
            }
        };
        cmd.args(["sh", "-c", script]);
        Proc::spawn(cmd)
    }

    /// Keys queued for `name` by `tool`.
    fn queued(&self, tool: Tool, name: &str) -> i64 {
        support::runtime().block_on(async {
            let Ok(mut c) = etcd_client::Client::connect([self.etcd.endpoint(0)], None).await
            else {
                return -1;
            };
            let opts = etcd_client::GetOptions::new()
                .with_prefix()
                .with_count_only();
            c.get(tool.prefix(name), Some(opts))
                .await
                .map(|r| r.count())
                .unwrap_or(-1)
        })
    }

    fn wait_queued(&self, tool: Tool, name: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.queued(tool, name) < n {
            assert!(
                Instant::now() < deadline,
                "{} never queued {n} for {name}",
                tool.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every gRPC message etcd received except lease keepalives (a steady background, counted
    /// apart by the scale benchmark).
    fn etcd_requests(&self) -> f64 {
        let body = http_get(&self.etcd.members[0].metrics_url, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("grpc_server_msg_received_total"))
            .filter(|l| !l.contains("grpc_method=\"LeaseKeepAlive\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn release(fifo: &Path) {
    let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
    let _ = f.write_all(b"go\n");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, min, max.
fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Some((s[s.len() / 2], s[0], s[s.len() - 1]))
}

fn fmt(v: &[f64], unit: &str) -> String {
    match stats(v) {
        Some((m, lo, hi)) => format!("{m:.1} {unit} [{lo:.1}–{hi:.1}]"),
        None => "n/a".into(),
    }
}

fn row(what: &str, se: &[f64], ctl: &[f64], unit: &str) {
    let ratio = match (stats(se), stats(ctl)) {
        (Some((a, ..)), Some((b, ..))) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    println!(
        "| {what} | {} | {} | {ratio} |",
        fmt(se, unit),
        fmt(ctl, unit)
    );
}

const TOOLS: [Tool; 2] = [Tool::Se, Tool::Etcdctl];
/// Time between the standby being queued and the handoff.
const SETTLE: Duration = Duration::from_millis(500);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("compare: a benchmark; run it with `cargo bench --bench compare`");
        return;
    }
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut b = Bench {
        etcd: EtcdCluster::single(),
        dir: tempfile::tempdir().unwrap(),
        seq: 0,
    };
    let long = Duration::from_secs(20);
    // `BENCH_ONLY=handoff,scaling` runs only those parts (launch, handoff, ready, kill, memory,
    // scaling, blackhole); the others print "n/a".
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let on = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    println!("singleton-exec vs etcdctl lock, one local etcd, {reps} repetitions, alternating; median [min–max]\n");

    // 1. Launch to child running, no contention.
    let (mut base, mut launch) = (Vec::new(), [Vec::new(), Vec::new()]);
    for _ in 0..if on("launch") { reps } else { 0 } {
        let t = Instant::now();
        let mut p = Proc::spawn({
            let mut c = Command::new("sh");
            c.args(["-c", "echo started $$; exec sleep 100"]);
            c
        });
        let (at, _) = p.wait_line("started", long).expect("child alone");
        base.push(ms(at - t));
        p.kill();
        for (i, tool) in TOOLS.iter().enumerate() {
            let name = b.fresh_name();
            let t = Instant::now();
            let mut p = b.start(*tool, &name, "a", 10, "echo started $$; exec sleep 100");
            let (at, _) = p.wait_line("started", long).expect("launch");
            launch[i].push(ms(at - t));
            p.kill();
        }
    }
    let child_alone = stats(&base).map_or(0.0, |s| s.0);
    let overhead: Vec<Vec<f64>> = launch
        .iter()
        .map(|v| v.iter().map(|x| x - child_alone).collect())
        .collect();

    // 2. Handoff when the holder's child exits; 3. handoff when the holder gets SIGTERM.
    let mut exit_handoff = [Vec::new(), Vec::new()];
    let mut term_handoff = [Vec::new(), Vec::new()];
    let mut term_ignored = [0usize, 0usize];
    for _ in 0..if on("handoff") { reps } else { 0 } {
        for (i, tool) in TOOLS.iter().enumerate() {
            let name = b.fresh_name();
            let fifo = b.fifo();
            let mut a = b.start(
                *tool,
                &name,
                "a",
                10,
                &format!("echo started $$; read x < {}", fifo.display()),
            );
            a.wait_line("started", long).expect("holder");
            let mut w = b.start(*tool, &name, "b", 10, "echo started $$; exec sleep 100");
            b.wait_queued(*tool, &name, 2);
            // Queued is not yet watching: give both tools time to set up their watch, so the
            // figure is the handoff itself.
            std::thread::sleep(SETTLE);
            let t = Instant::now();
            release(&fifo);
            let (at, _) = w.wait_line("started", long).expect("handoff on child exit");
            exit_handoff[i].push(ms(at - t));
            a.kill();
            w.kill();

            let name = b.fresh_name();
            let mut a = b.start(*tool, &name, "a", 10, "echo started $$; exec sleep 100");
            a.wait_line("started", long).expect("holder");
            let mut w = b.start(*tool, &name, "b", 10, "echo started $$; exec sleep 100");
            b.wait_queued(*tool, &name, 2);
            std::thread::sleep(SETTLE);
            let t = Instant::now();
            a.signal(libc::SIGTERM);
            match w.wait_line("started", Duration::from_secs(3)) {
                Some((at, _)) => term_handoff[i].push(ms(at - t)),
                None => term_ignored[i] += 1,
            }
            a.kill();
            w.kill();
        }
    }

    // 3b. The same handoff to the new child's READY=1: the child prints a line when it starts,
    // and another once `systemd-notify --ready` has returned (its barrier answered), so READY=1
    // was read by then. singleton-exec only: etcdctl lock gives its child no notify socket.
    let mut ready_handoff = (Vec::new(), Vec::new());
    let ready_script =
        "echo started $$; systemd-notify --ready --status=serving && echo ready; exec sleep 100";
    let notify_tool = on("ready")
        && Command::new("systemd-notify")
            .arg("--version")
            .output()
            .is_ok();
    for _ in 0..if notify_tool { reps } else { 0 } {
        let name = b.fresh_name();
        let mut a = b.start(Tool::Se, &name, "a", 10, ready_script);
        a.wait_line("ready", long).expect("holder ready");
        let mut w = b.start(Tool::Se, &name, "b", 10, ready_script);
        b.wait_queued(Tool::Se, &name, 2);
        std::thread::sleep(SETTLE);
        let t = Instant::now();
        a.signal(libc::SIGTERM);
        let (started, _) = w.wait_line("started", long).expect("handoff");
        let (ready, _) = w.wait_line("ready", long).expect("READY=1");
        ready_handoff.0.push(ms(started - t));
        ready_handoff.1.push(ms(ready - t));
        a.kill();
        w.kill();
    }

    // 3c. Hot standby beside the cold mode and etcdctl lock: the child takes WARM to start (a
    // warm-up) before it acts as the leader. Cold: it starts when its holder wins, warms up, then
    // acts; the handoff is the old child's exit (etcdctl lock does not hand over on SIGTERM).
    // Hot: it started and warmed up on every replica, and acts when told it leads; the handoff
    // is SIGTERM to the holder, which demotes its child. Measured from the trigger (the old
    // child's release, or SIGTERM), and from the old child's last word (its exit, or its
    // demotion before ROLE=standby) to the new child's "leading".
    let hot_tools = [Tool::SeHot, Tool::Se, Tool::Etcdctl];
    let warmups = [0.001f64, 2.0];
    let mut hot = vec![vec![(Vec::new(), Vec::new()); hot_tools.len()]; warmups.len()];
    let hot_reps = reps.min(5);
    for _ in 0..if on("hot") { hot_reps } else { 0 } {
        for (w, warm) in warmups.iter().enumerate() {
            for (i, tool) in hot_tools.iter().enumerate() {
                let name = b.fresh_name();
                let fifo = b.fifo();
                let script = match tool {
                    Tool::SeHot => hot_script(*warm),
                    _ => cold_script(*warm, &fifo),
                };
                let mut a = b.start(*tool, &name, "a", 10, &script);
                a.wait_line("leading", long).expect("holder leads");
                let mut s = b.start(*tool, &name, "b", 10, &script);
                b.wait_queued(*tool, &name, 2);
                if *tool == Tool::SeHot {
                    s.wait_line("warm", long)
                        .expect("the standby's child warmed up");
                }
                std::thread::sleep(SETTLE);
                let t = Instant::now();
                match tool {
                    Tool::SeHot => a.signal(libc::SIGTERM),
                    _ => release(&fifo),
                }
                let acting = s.wait_line("leading", long).expect("the new child leads");
                let last_word = match tool {
                    Tool::SeHot => a.wait_line("standing by", long),
                    _ => a.wait_line("exiting", long),
                };
                hot[w][i].0.push(ms(acting.0 - t));
                if let Some((at, _)) = last_word {
                    hot[w][i].1.push(ms(acting.0.saturating_duration_since(at)));
                }
                a.kill();
                s.kill();
            }
        }
    }

    // 4. Takeover after SIGKILL of the holder at TTL 5s; is the old child still alive?
    let mut kill_takeover = [Vec::new(), Vec::new()];
    let mut orphans = [0usize, 0usize];
    let kill_reps = reps.min(3);
    for _ in 0..if on("kill") { kill_reps } else { 0 } {
        for (i, tool) in TOOLS.iter().enumerate() {
            let name = b.fresh_name();
            let mut a = b.start(*tool, &name, "a", 5, "echo started $$; exec sleep 100");
            let (_, line) = a.wait_line("started", long).expect("holder");
            let old: i32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            let mut w = b.start(*tool, &name, "b", 5, "echo started $$; exec sleep 100");
            b.wait_queued(*tool, &name, 2);
            let t = Instant::now();
            a.signal(libc::SIGKILL);
            let (at, _) = w
                .wait_line("started", Duration::from_secs(30))
                .expect("takeover after SIGKILL");
            kill_takeover[i].push((at - t).as_secs_f64());
            if support::alive(old) {
                orphans[i] += 1;
                unsafe { libc::kill(old, libc::SIGKILL) };
            }
            a.kill();
            w.kill();
        }
    }

    // 5. Resident memory while leading, CPU over 10 idle seconds.
    let mut rss = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let holders: Vec<Proc> = TOOLS
        .iter()
        .filter(|_| on("memory"))
        .map(|tool| {
            let name = b.fresh_name();
            let mut p = b.start(*tool, &name, "a", 10, "echo started $$; exec sleep 100");
            p.wait_line("started", long).expect("holder");
            p
        })
        .collect();
    std::thread::sleep(Duration::from_secs(if on("memory") { 1 } else { 0 }));
    let cpu0: Vec<f64> = holders.iter().map(|p| cpu_ms(p.pid())).collect();
    std::thread::sleep(Duration::from_secs(if on("memory") { 10 } else { 0 }));
    for (i, p) in holders.iter().enumerate() {
        cpu[i].push(cpu_ms(p.pid()) - cpu0[i]);
        rss[i].push(rss_kib(p.pid()) as f64 / 1024.0);
    }
    holders.into_iter().for_each(Proc::kill);
    // The static build (what the container images ship), when one was built: no shared libc.
    let static_bin = std::env::var("SINGLETON_EXEC_STATIC_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/static/singleton-exec").into()
    });
    let mut static_rss = Vec::new();
    if on("memory") && Path::new(&static_bin).exists() {
        let name = b.fresh_name();
        let mut c = Command::new(&static_bin);
        c.args([
            "--endpoints",
            &b.etcd.endpoints(),
            "--id",
            "a",
            "--election",
            &name,
            "-q",
        ])
        .args(["--", "sh", "-c", "echo started $$; exec sleep 100"]);
        let mut p = Proc::spawn(c);
        p.wait_line("started", long).expect("static holder");
        std::thread::sleep(Duration::from_secs(2));
        static_rss.push(rss_kib(p.pid()) as f64 / 1024.0);
        p.kill();
    }

    // 6. etcd requests per leader change and handoff, with 1, 10, 100 and 300 standbys: a chain
    // of CHANGES handoffs in one queue (each new holder is released in turn).
    let mut scaling = Vec::new();
    for n in [1usize, 10, 100, 300].into_iter().filter(|_| on("scaling")) {
        for tool in TOOLS {
            scaling.push(chain(&mut b, tool, n, long));
        }
    }

    println!("| measure | singleton-exec | etcdctl lock | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| child alone: launch to running | {} | | |",
        fmt(&base, "ms")
    );
    row(
        "launch overhead over the child alone",
        &overhead[0],
        &overhead[1],
        "ms",
    );
    row(
        "handoff when the holder's child exits",
        &exit_handoff[0],
        &exit_handoff[1],
        "ms",
    );
    row(
        "handoff on SIGTERM to the holder",
        &term_handoff[0],
        &term_handoff[1],
        "ms",
    );
    println!(
        "| SIGTERM ignored (no handoff within 3 s) | {}/{reps} | {}/{reps} | |",
        term_ignored[0], term_ignored[1]
    );
    println!(
        "| handoff on SIGTERM, to the new child's start / to its READY=1 (systemd-notify --ready) | {} / {} | n/a (no notify socket) | |",
        fmt(&ready_handoff.0, "ms"),
        fmt(&ready_handoff.1, "ms")
    );
    row(
        "takeover after SIGKILL of the holder, TTL 5s",
        &kill_takeover[0],
        &kill_takeover[1],
        "s",
    );
    println!(
        "| old child still alive after SIGKILL of the holder | {}/{kill_reps} | {}/{kill_reps} | |",
        orphans[0], orphans[1]
    );
    row("resident memory while leading", &rss[0], &rss[1], "MiB");
    row(
        "resident memory while leading, static build (scripts/build-static)",
        &static_rss,
        &rss[1],
        "MiB",
    );
    row("CPU over 10 idle seconds", &cpu[0], &cpu[1], "ms");
    // The tolerated outage, measured: the worst phase, 250 ms steps.
    let mut survived = None;
    let mut stopped = None;
    for step in (14..=24u64).filter(|_| on("blackhole")) {
        let outage = Duration::from_millis(step * 250);
        if survives_black_hole(&mut b, outage) {
            survived = Some(outage);
        } else {
            stopped = Some(outage);
            break;
        }
    }
    let secs = |d: Option<Duration>| {
        d.map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "| etcd black hole survived at the worst phase, defaults (TTL 10s; model: 4 s) | {} (stopped at {}) | | |",
        secs(survived),
        secs(stopped)
    );
    if on("hot") {
        println!();
        println!("| handoff to the new child acting as the leader, {hot_reps} reps | child starts in 1 ms | child warms up 2 s |");
        println!("|---|---|---|");
        for (i, tool) in hot_tools.iter().enumerate() {
            let trigger = match tool {
                Tool::SeHot => "SIGTERM to the holder",
                _ => "the old child released",
            };
            println!(
                "| {}: {trigger} → acting | {} | {} |",
                tool.name(),
                fmt(&hot[0][i].0, "ms"),
                fmt(&hot[1][i].0, "ms")
            );
            println!(
                "| {}: old child demoted (or exited) → acting | {} | {} |",
                tool.name(),
                fmt(&hot[0][i].1, "ms"),
                fmt(&hot[1][i].1, "ms")
            );
        }
    }
    for (tool, n, per_change, handoffs) in &scaling {
        println!(
            "| {}: etcd requests per leader change (keepalives aside), {n} standbys | {per_change:.1} | handoff {} | |",
            tool.name(),
            fmt(handoffs, "ms")
        );
    }
}

/// A cold child: it starts when its holder wins, warms up for `warm` seconds, then acts as the
/// leader until a line comes on `fifo`, and exits (a standby's never gets that far).
fn cold_script(warm: f64, fifo: &Path) -> String {
    format!(
        "echo started $$; sleep {warm}; echo leading; read x < {}; echo exiting",
        fifo.display()
    )
}

/// A hot standby's child, as examples/hot-standby/app.sh: it warms up for `warm` seconds on every
/// replica, then acts in the role its file says, confirming each with ROLE= (systemd-notify).
fn hot_script(warm: f64) -> String {
    format!(
        "role=none; \
         apply() {{ read -r want rev < \"$SINGLETON_EXEC_ROLE_FILE\"; \
           if [ \"$want\" = leader ] && [ $role != leader ]; then role=leader; echo leading; \
             systemd-notify ROLE=leader; \
           elif [ \"$want\" = standby ] && [ $role != standby ]; then \
             [ $role = leader ] && echo standing by; role=standby; systemd-notify ROLE=standby; fi; }}; \
         trap apply USR1; trap 'kill $z 2>/dev/null; exit 0' TERM; \
         echo started $$; sleep {warm}; echo warm; apply; \
         while :; do sleep 1 & z=$!; wait $z; done"
    )
}

/// Leader changes measured per queue length.
const CHANGES: usize = 5;

/// A holder and `n` standbys of `tool`, every one of them holding until released through its own
/// FIFO; then CHANGES handoffs in a row. Returns the tool, `n`, the etcd requests per change
/// (keepalives aside) and each handoff (release → the next holder's child printed its line).
fn chain(b: &mut Bench, tool: Tool, n: usize, long: Duration) -> (Tool, usize, f64, Vec<f64>) {
    let name = b.fresh_name();
    let fifos: Vec<PathBuf> = (0..=n).map(|_| b.fifo()).collect();
    let script = |k: usize| format!("echo started {k}; read x < {}", fifos[k].display());
    let mut procs: Vec<Proc> = vec![b.start(tool, &name, "p0", 60, &script(0))];
    procs[0].wait_line("started", long).expect("holder");
    for k in 1..=n {
        procs.push(b.start(tool, &name, &format!("p{k}"), 60, &script(k)));
    }
    b.wait_queued(tool, &name, n as i64 + 1);
    std::thread::sleep(SETTLE);
    let (mut holder, mut handoffs) = (0usize, Vec::new());
    let r0 = b.etcd_requests();
    for _ in 0..CHANGES.min(n) {
        let t = Instant::now();
        release(&fifos[holder]);
        let deadline = Instant::now() + long;
        let mut next = None;
        while next.is_none() && Instant::now() < deadline {
            for (k, p) in procs.iter_mut().enumerate() {
                if k != holder && p.seen.is_empty() {
                    if let Some((at, _)) = p.wait_line("started", Duration::from_millis(1)) {
                        next = Some((k, at));
                        break;
                    }
                }
            }
        }
        let Some((k, at)) = next else { break };
        handoffs.push(ms(at - t));
        holder = k;
        std::thread::sleep(Duration::from_millis(200));
    }
    let per_change = (b.etcd_requests() - r0) / handoffs.len().max(1) as f64;
    procs.into_iter().for_each(Proc::kill);
    (tool, n, per_change, handoffs)
}

/// LeaseKeepAlive requests etcd has received so far.
fn keepalives_received(etcd: &EtcdCluster) -> u64 {
    http_get(&etcd.members[0].metrics_url, "/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("grpc_server_msg_received_total{")
                && l.contains("grpc_method=\"LeaseKeepAlive\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Whether a leader at the default timing keeps its child through an etcd black hole of `outage`
/// that starts right after etcd received a keepalive (its reply is lost too: the worst phase).
fn survives_black_hole(b: &mut Bench, outage: Duration) -> bool {
    let proxy = FaultProxy::start(&b.etcd.endpoint(0));
    let name = b.fresh_name();
    let mut cmd = Command::new(bin());
    cmd.args([
        "--endpoints",
        &proxy.url,
        "--id",
        "a",
        "--election",
        &name,
        "-q",
    ])
    .args(["--", "sh", "-c", "echo started $$; exec sleep 1000"]);
    let mut p = Proc::spawn(cmd);
    let Some((_, line)) = p.wait_line("started", Duration::from_secs(20)) else {
        p.kill();
        return false;
    };
    let child: i32 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    std::thread::sleep(Duration::from_millis(2500));
    let seen = keepalives_received(&b.etcd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while keepalives_received(&b.etcd) == seen && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    proxy.cut();
    std::thread::sleep(outage);
    proxy.heal();
    // The renew deadline is at most 6 s after the last acknowledged keepalive: long past by now.
    std::thread::sleep(Duration::from_secs(4));
    let alive = unsafe { libc::kill(child, 0) } == 0;
    p.kill();
    alive
}

/// utime + stime of a process, in milliseconds.
fn cpu_ms(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1000.0 / hz
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
