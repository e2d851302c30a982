//! The child talks back, against a real etcd with real senders: Debian's `systemd-notify` from a
//! shell child, and `tests/programs/notify_child.py`, which speaks the protocol with nothing but
//! Python's socket module. What they show:
//!
//! - `systemd-notify --ready --status=...` works unchanged (its BARRIER=1 is answered at once);
//!   until READY=1, with `--ready-timeout`, `/leader` answers 503 and `status` on another machine
//!   says not ready; then ready, with the child's status text;
//! - a child that stops its heartbeat (`--watchdog`) makes its leader step down, and a standby
//!   takes over within the watchdog plus the handoff; `WATCHDOG=trigger` does it at once; a child
//!   that sends no READY=1 within `--ready-timeout` too; each logged and counted;
//! - a datagram from a process outside the child's tree is ignored and counted;
//! - a flood of 10,000 datagrams a second (with garbage, 64 KiB datagrams, NUL bytes, empty ones,
//!   and a flood from outside the tree) leaves the fail-closed deadline on time; a child that sends
//!   WATCHDOG=1 forever does not keep it from firing while etcd is unreachable;
//! - EXTEND_TIMEOUT_USEC gives a stopping child more time, but never past the lease's kill
//!   deadline;
//! - without a writable directory the sockets are abstract; the directory goes with the replica.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::proxy::FaultProxy;
use crate::support::worker::{events, starts, wait_starts, Ev};
use crate::support::{
    alive, args, bin, boot_ns, free_port, hold, http, program, run_subcommand, tool, wait_for,
    EtcdCluster, Replica,
};

const LONG: Duration = Duration::from_secs(30);

/// `-- python3 notify_child.py DIR EXTRA...`
fn child(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--".into(),
        "python3".into(),
        program("notify_child.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// `--election E --health-addr PORT --resign-holdoff 1s OPTS CHILD`
fn replica(
    name: &str,
    ep: &str,
    election: &str,
    port: u16,
    opts: &[&str],
    child: &[String],
) -> Replica {
    let port = port.to_string();
    let base = [
        "--election",
        election,
        "--health-addr",
        &port,
        "--resign-holdoff",
        "1s",
    ];
    let all: Vec<&str> = base.iter().chain(opts).copied().collect();
    Replica::start(name, ep, &args(&all, child))
}

fn status(port: u16) -> serde_json::Value {
    serde_json::from_str(&http("GET", port, "/status").1).unwrap_or_default()
}

/// A sample of the replica's /metrics (with its labels), 0 if absent.
fn metric(port: u16, name: &str) -> f64 {
    http("GET", port, "/metrics")
        .1
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `singleton-exec status --output json` of the election, read as another machine would.
fn status_json(etcd: &EtcdCluster, election: &str) -> serde_json::Value {
    let out = run_subcommand(
        "status",
        etcd,
        &["--election", election, "--output", "json"],
    );
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The events of one kind of the children.
fn of_kind(dir: &Path, kind: &str) -> Vec<Ev> {
    events(dir).into_iter().filter(|e| e.kind == kind).collect()
}

/// The `socket=` field of a child's start line: its NOTIFY_SOCKET.
fn socket_of(dir: &Path, pid: i32) -> String {
    let log = std::fs::read_to_string(dir.join("events.log")).unwrap_or_default();
    log.lines()
        .find(|l| l.starts_with("start ") && l.split_whitespace().nth(3) == Some(&pid.to_string()))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("socket=")))
        .unwrap_or_else(|| panic!("no socket for {pid} in {log}"))
        .to_owned()
}

/// Sends `what` to a NOTIFY_SOCKET value (a path, or `@name`) from this process, which is in no
/// child's tree; false if it could not go.
fn send_to(socket: &str, what: &[u8]) -> bool {
    let client = UnixDatagram::unbound().unwrap();
    client.set_nonblocking(true).unwrap();
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
            client.send_to_addr(what, &addr).is_ok()
        }
        None => client.send_to(what, socket).is_ok(),
    }
}

/// No two children ever ran at once: each found the lock free when it started.
fn assert_one_at_a_time(dir: &Path) {
    let log = std::fs::read_to_string(dir.join("events.log")).unwrap_or_default();
    assert!(!log.contains("lock=held"), "two children at once:\n{log}");
}

/// Shell child: Debian's `systemd-notify --ready --status=...` once DIR/go exists; the time it
/// took, and its exit status, in DIR/notified. The replica waits for READY=1 (`--ready-timeout`):
/// `/leader` says 503 and `status` says not ready until then. Then the socket's directory goes
/// with the replica on SIGTERM.
#[test]
fn systemd_notify_from_a_shell_child_makes_the_leader_ready_and_shows_its_status_everywhere() {
    let Some(notify) = tool("systemd-notify", "systemd_notify_from_a_shell_child") else {
        return;
    };
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = format!(
        "echo \"$NOTIFY_SOCKET\" > {d}/socket; while [ ! -e {d}/go ]; do sleep 0.02; done; \
         t0=$(date +%s%N); {notify} --ready --status=\"serving from $SINGLETON_EXEC_LEADER_ID\"; \
         rc=$?; echo \"rc=$rc ms=$(( ($(date +%s%N) - t0) / 1000000 ))\" > {d}/notified; \
         exec sleep 300",
        notify = notify.display()
    );
    let port = free_port();
    let child = ["--", "sh", "-c", &script].map(String::from);
    let mut a = replica(
        "a",
        &etcd.endpoints(),
        "sdnotify",
        port,
        &["--ready-timeout", "30s"],
        &child,
    );
    wait_for(LONG, || dir.path().join("socket").exists(), || a.log());
    let socket = std::fs::read_to_string(dir.path().join("socket"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(Path::new(&socket).exists(), "{socket}");
    // Leading, but not ready: 503 here, not ready from anywhere.
    wait_for(LONG, || status(port)["role"] == "leader", || a.log());
    let (code, body) = http("GET", port, "/leader");
    assert_eq!(
        (code, body.as_str()),
        (503, "leader, child not ready (no READY=1 yet)\n")
    );
    assert_eq!(status(port)["ready"], false);
    wait_for(
        LONG,
        || status_json(&etcd, "sdnotify")["leader"]["ready"] == false,
        || format!("{}", status_json(&etcd, "sdnotify")),
    );

    std::fs::write(dir.path().join("go"), "").unwrap();
    wait_for(LONG, || http("GET", port, "/leader").0 == 200, || a.log());
    wait_for(LONG, || dir.path().join("notified").exists(), || a.log());
    let notified = std::fs::read_to_string(dir.path().join("notified")).unwrap();
    let ms: u64 = notified
        .split_whitespace()
        .find_map(|f| f.strip_prefix("ms=")?.parse().ok())
        .unwrap();
    println!("systemd-notify --ready --status=...: {notified}");
    assert!(notified.starts_with("rc=0 "), "{notified}");
    // Its barrier is answered at once (without an answer it waits 5 s and fails).
    assert!(ms < 2_000, "systemd-notify took {ms} ms: {notified}");
    let st = status(port);
    assert_eq!(
        (st["ready"].as_bool(), st["child_status"].as_str()),
        (Some(true), Some("serving from a"))
    );
    wait_for(
        LONG,
        || {
            let v = status_json(&etcd, "sdnotify");
            v["leader"]["ready"] == true && v["leader"]["child_status"] == "serving from a"
        },
        || format!("{}", status_json(&etcd, "sdnotify")),
    );
    let text = run_subcommand("status", &etcd, &["--election", "sdnotify"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("child_status:     serving from a\n"),
        "{text}"
    );
    assert!(text.contains("ready:            yes (READY=1 "), "{text}");
    assert_eq!(
        metric(port, "singleton_exec_takeover_ready_seconds_count"),
        1.0
    );
    assert_eq!(metric(port, "singleton_exec_child_ready"), 1.0);
    assert!(
        a.log().contains("the child is ready (READY=1)"),
        "{}",
        a.log()
    );

    // The sockets' directory goes with the replica, on SIGTERM too.
    let socket_dir = Path::new(&socket).parent().unwrap().to_owned();
    assert!(socket_dir.exists());
    a.signal(libc::SIGTERM);
    a.wait(LONG);
    assert!(!socket_dir.exists(), "{socket_dir:?} left behind");
}

/// A wedged leader (its child alive, its heartbeat stopped) steps down, and the standby's child
/// starts within the watchdog plus the handoff. Before that, the child's status text reaches
/// `/status` and `status` one line, printable, at most 256 bytes.
#[test]
fn a_child_that_stops_its_heartbeat_hands_leadership_to_a_standby() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    // 1 s: the pings (every 250 ms) of a child on a loaded machine still arrive in time.
    let opts = ["--watchdog", "1s", "--grace", "2s"];
    let a = replica(
        "a",
        &etcd.endpoints(),
        "wd",
        pa,
        &opts,
        &child(dir.path(), &[]),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = replica(
        "b",
        &etcd.endpoints(),
        "wd",
        pb,
        &opts,
        &child(dir.path(), &[]),
    );
    wait_for(LONG, || status(pb)["role"] == "standby", || b.log());
    // WATCHDOG_USEC and WATCHDOG_PID were given; the child's pings keep it leading.
    wait_for(
        LONG,
        || status(pa)["child"]["ms_since_watchdog"].as_u64().is_some(),
        || a.log(),
    );

    // A status text with a newline, escape sequences and far too much of it.
    let long = format!("\u{1b}[31mred\u{1b}[0m {}\nsecond line", "y".repeat(1_000));
    std::fs::write(dir.path().join("status-a"), &long).unwrap();
    wait_for(
        LONG,
        || {
            status(pa)["child_status"]
                .as_str()
                .is_some_and(|s| s.contains("red"))
        },
        || a.log(),
    );
    let shown = status(pa)["child_status"].as_str().unwrap().to_owned();
    assert!(
        shown.starts_with(" [31mred [0m yyy") && shown.ends_with('…'),
        "{shown:?}"
    );
    assert!(shown.len() <= 256 && !shown.contains('\n'), "{shown:?}");
    wait_for(
        LONG,
        || status_json(&etcd, "wd")["leader"]["child_status"] == shown.as_str(),
        || format!("{}", status_json(&etcd, "wd")),
    );

    let wedged_at = boot_ns();
    std::fs::write(dir.path().join("wedged-a"), "").unwrap();
    wait_starts(dir.path(), 2, LONG, || format!("{}\n{}", a.log(), b.log()));
    let new = starts(dir.path())[1].clone();
    assert_eq!(
        new.id,
        "b",
        "the standby's child did not take over:\n{:?}\n--- a\n{}\n--- b\n{}",
        events(dir.path()),
        a.log(),
        b.log()
    );
    let took = Duration::from_nanos((new.boot_ns - wedged_at) as u64);
    println!("heartbeat stopped → standby's child started: {took:?} (--watchdog 1s)");
    // The watchdog, then the stop (the child exits on SIGTERM) and the handoff, with room for
    // a loaded machine.
    assert!(took < Duration::from_millis(1_000 + 2_500), "{took:?}");
    let stop = of_kind(dir.path(), "stop");
    assert!(
        stop.iter().any(|e| e.id == "a" && e.boot_ns < new.boot_ns),
        "{:?}",
        events(dir.path())
    );
    assert_one_at_a_time(dir.path());
    assert!(
        a.log()
            .contains("the child sent no WATCHDOG=1 within --watchdog: stepping down"),
        "{}",
        a.log()
    );
    // At least this one (a, its child wedged for good, steps down again whenever it leads again,
    // which a loaded machine can bring about).
    assert!(
        metric(
            pa,
            "singleton_exec_watchdog_step_downs_total{reason=\"missed\"}"
        ) >= 1.0
    );
    wait_for(LONG, || status(pa)["role"] == "standby", || a.log());
}

/// A child that says STOPPING=1 of its own accord, then hangs in its shutdown without a
/// heartbeat, has what systemd would give it (its stop timeout, here `--grace`) to be gone; then
/// the leader steps down as for a missed watchdog. (STOPPING=1 used to rest the watchdog for
/// good: a leader whose child hung in a shutdown of its own kept leading forever.)
#[test]
fn a_child_that_says_stopping_and_hangs_still_makes_its_leader_step_down() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let opts = ["--watchdog", "500ms", "--grace", "1s"];
    let a = replica(
        "a",
        &etcd.endpoints(),
        "stophang",
        pa,
        &opts,
        &child(dir.path(), &[]),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = replica(
        "b",
        &etcd.endpoints(),
        "stophang",
        pb,
        &opts,
        &child(dir.path(), &[]),
    );
    wait_for(LONG, || status(pb)["role"] == "standby", || b.log());
    wait_for(
        LONG,
        || status(pa)["child"]["ms_since_watchdog"].as_u64().is_some(),
        || a.log(),
    );
    let said_at = boot_ns();
    std::fs::write(dir.path().join("stopping-a"), "").unwrap();
    wait_starts(dir.path(), 2, LONG, || format!("{}\n{}", a.log(), b.log()));
    let new = starts(dir.path())[1].clone();
    assert_eq!(
        new.id,
        "b",
        "the standby's child did not take over:\n{:?}\n--- a\n{}\n--- b\n{}",
        events(dir.path()),
        a.log(),
        b.log()
    );
    let took = Duration::from_nanos((new.boot_ns - said_at) as u64);
    println!("STOPPING=1 and a hang → standby's child started: {took:?} (--grace 1s)");
    // The stop timeout (--grace), then the stop (the child exits on SIGTERM) and the handoff.
    assert!(took < Duration::from_millis(1_000 + 2_500), "{took:?}");
    assert!(took >= Duration::from_millis(1_000), "{took:?}");
    assert_one_at_a_time(dir.path());
    assert!(
        a.log()
            .contains("the child sent STOPPING=1 but is still running"),
        "{}",
        a.log()
    );
    assert_eq!(
        metric(
            pa,
            "singleton_exec_watchdog_step_downs_total{reason=\"missed\"}"
        ),
        1.0
    );
}

/// WATCHDOG=trigger steps down at once, with or without --watchdog.
#[test]
fn watchdog_trigger_steps_down_at_once() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a = replica(
        "a",
        &etcd.endpoints(),
        "trig",
        pa,
        &[],
        &child(dir.path(), &[]),
    );
    wait_for(
        LONG,
        || !of_kind(dir.path(), "ready").is_empty(),
        || a.log(),
    );
    let b = replica(
        "b",
        &etcd.endpoints(),
        "trig",
        pb,
        &[],
        &child(dir.path(), &[]),
    );
    wait_for(LONG, || status(pb)["role"] == "standby", || b.log());
    std::fs::write(dir.path().join("trigger-a"), "").unwrap();
    wait_starts(dir.path(), 2, LONG, || format!("{}\n{}", a.log(), b.log()));
    assert_eq!(starts(dir.path())[1].id, "b");
    assert_one_at_a_time(dir.path());
    assert!(
        a.log().contains("the child sent WATCHDOG=trigger"),
        "{}",
        a.log()
    );
    assert!(
        a.log()
            .contains("the child asked to be stopped (WATCHDOG=trigger)"),
        "{}",
        a.log()
    );
    assert_eq!(
        metric(
            pa,
            "singleton_exec_watchdog_step_downs_total{reason=\"trigger\"}"
        ),
        1.0
    );
}

/// A leader whose child sends no READY=1 within --ready-timeout steps down so another replica
/// can try; meanwhile `/leader` says 503.
#[test]
fn a_child_not_ready_in_time_makes_way_for_another_replica() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    // b's child is ready as soon as it starts; a's never.
    std::fs::write(dir.path().join("ready-b"), "").unwrap();
    let (pa, pb) = (free_port(), free_port());
    let opts = ["--ready-timeout", "2s"];
    let extra = ["--ready-when-file"];
    let a = replica(
        "a",
        &etcd.endpoints(),
        "rt",
        pa,
        &opts,
        &child(dir.path(), &extra),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = replica(
        "b",
        &etcd.endpoints(),
        "rt",
        pb,
        &opts,
        &child(dir.path(), &extra),
    );
    wait_for(LONG, || status(pb)["role"] == "standby", || b.log());
    let (code, _) = http("GET", pa, "/leader");
    let first = starts(dir.path())[0].clone();
    let waited = Duration::from_nanos((boot_ns() - first.boot_ns) as u64);
    if waited < Duration::from_millis(1_800) {
        assert_eq!(code, 503, "a child not ready yet");
    }
    wait_for(
        LONG,
        || http("GET", pb, "/leader").0 == 200,
        || format!("{}\n{}", a.log(), b.log()),
    );
    assert_eq!(
        starts(dir.path()).last().map(|s| s.id.clone()),
        Some("b".into())
    );
    assert_one_at_a_time(dir.path());
    assert!(
        a.log()
            .contains("the child sent no READY=1 within --ready-timeout"),
        "{}",
        a.log()
    );
    assert_eq!(metric(pa, "singleton_exec_ready_timeouts_total"), 1.0);
    wait_for(
        LONG,
        || {
            let v = status_json(&etcd, "rt");
            v["leader"]["id"] == "b" && v["leader"]["ready"] == true
        },
        || format!("{}", status_json(&etcd, "rt")),
    );
}

/// A datagram from a process outside the child's tree (this test) is ignored and counted; the
/// child's own is heard.
#[test]
fn a_datagram_from_outside_the_childs_tree_is_ignored() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let opts = ["--ready-timeout", "60s"];
    let a = replica(
        "a",
        &etcd.endpoints(),
        "outside",
        port,
        &opts,
        &child(dir.path(), &["--ready-when-file"]),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let socket = socket_of(dir.path(), starts(dir.path())[0].pid);
    assert!(send_to(&socket, b"READY=1\nSTATUS=forged"));
    wait_for(
        LONG,
        || {
            metric(
                port,
                "singleton_exec_notify_datagrams_total{result=\"foreign\"}",
            ) == 1.0
        },
        || a.log(),
    );
    let st = status(port);
    assert_eq!(
        (st["ready"].as_bool(), st["child_status"].as_str()),
        (Some(false), None),
        "{st}"
    );
    assert_eq!(http("GET", port, "/leader").0, 503);
    assert!(
        a.log().contains("from a process outside the child's tree"),
        "{}",
        a.log()
    );
    // The child's own READY=1 counts.
    std::fs::write(dir.path().join("ready-a"), "").unwrap();
    wait_for(LONG, || http("GET", port, "/leader").0 == 200, || a.log());
    assert_eq!(
        metric(
            port,
            "singleton_exec_notify_datagrams_total{result=\"accepted\"}"
        ),
        1.0
    );
}

/// `late_ms` of the "renew deadline passed" line of a log, if there is one.
fn deadline_late_ms(log: &str) -> Option<u64> {
    let late = log
        .lines()
        .find(|l| l.contains("renew deadline passed"))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("late="))?;
    crate::support::parse_duration(late).map(|d| d.as_millis() as u64)
}

/// CPU time (user + system, in clock ticks) of the replica's thread named `name`.
fn thread_ticks(pid: i32, name: &str) -> Option<u64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let f: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            return Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?);
        }
    }
    None
}

/// A leader behind a proxy that is cut: its child must be stopped by the fail-closed deadline,
/// on time, before the standby's starts. `flood`: the child floods its socket with 10,000
/// datagrams a second (heartbeats, garbage, 64 KiB ones, NUL bytes, empty ones, changing
/// status texts) and this test floods it from outside the tree; without, the child only sends
/// its heartbeats, forever. Returns how late the deadline fired.
fn deadline_under_notify_traffic(election: &str, flood: bool) -> u64 {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let pa = free_port();
    let opts = [
        "--election",
        election,
        "--health-addr",
        &pa.to_string(),
        "--ttl",
        "3s",
        "--grace",
        "1s",
        // The room the timing model leaves for a late wake-up: the bound the tests hold the
        // deadline's lateness to (a loaded machine's scheduler alone can take a few hundred ms).
        "--margin",
        "1s",
        "--dial-timeout",
        "1s",
        "--watchdog",
        "1s",
    ];
    let opts: Vec<&str> = opts.iter().map(|s| s.as_ref()).collect();
    let a = Replica::start("a", &proxy.url, &args(&opts, &child(dir.path(), &[])));
    wait_starts(dir.path(), 1, LONG, || a.log());
    let old = starts(dir.path())[0].clone();
    let b_opts = ["--election", election, "--ttl", "3s", "--grace", "1s"];
    let b = Replica::start(
        "b",
        &etcd.endpoints(),
        &args(&b_opts, &child(dir.path(), &[])),
    );
    b.wait_log("waiting for leadership", LONG);
    wait_for(
        LONG,
        || status(pa)["child"]["ms_since_watchdog"].as_u64().is_some(),
        || a.log(),
    );

    let stop_outside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut outsider = None;
    let ticks_before = thread_ticks(a.pid(), "notify").unwrap_or(0);
    let flood_began = Instant::now();
    if flood {
        std::fs::write(dir.path().join("flood"), "10000").unwrap();
        // Two seconds of it before the cut (and about as long after, until the stop).
        wait_for(LONG, || of_kind(dir.path(), "flood").len() >= 3, || a.log());
        let socket = socket_of(dir.path(), old.pid);
        let stop = stop_outside.clone();
        // 2,000 a second from outside the tree, each costing a read of /proc.
        outsider = Some(std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..20 {
                    sent += u64::from(send_to(&socket, b"WATCHDOG=1"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        }));
    }
    let cut_at = boot_ns();
    proxy.cut();
    wait_starts(dir.path(), 2, LONG, || {
        format!("b did not take over:\n{}\n{}", a.log(), b.log())
    });
    stop_outside.store(true, std::sync::atomic::Ordering::Relaxed);
    let outside_sent = outsider.map(|t| t.join().unwrap_or(0)).unwrap_or(0);
    let ticks = thread_ticks(a.pid(), "notify").unwrap_or(0) - ticks_before;
    let seconds = flood_began.elapsed().as_secs_f64();
    let new = starts(dir.path())[1].clone();
    assert_eq!(new.id, "b", "{:?}", events(dir.path()));
    let stopped = of_kind(dir.path(), "stop")
        .into_iter()
        .find(|e| e.pid == old.pid)
        .unwrap_or_else(|| {
            panic!(
                "a's child never got its stop signal: {:?}\n{}",
                events(dir.path()),
                a.log()
            )
        });
    assert!(stopped.boot_ns < new.boot_ns, "{:?}", events(dir.path()));
    assert!(!alive(old.pid));
    assert_one_at_a_time(dir.path());
    // The deadline, not the watchdog, stopped it: its heartbeats went on to the end.
    let log = a.log();
    assert!(!log.contains("within --watchdog"), "{log}");
    let late = deadline_late_ms(&log).unwrap_or_else(|| panic!("no deadline line:\n{log}"));
    let stop_after_cut = Duration::from_nanos((stopped.boot_ns - cut_at) as u64);
    let ticks_per_s = 100.0; // USER_HZ
                             // The child's own rate, from its first report to its last.
    let reports: Vec<(u128, u64)> = std::fs::read_to_string(dir.path().join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("flood "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sent = f
                .iter()
                .find_map(|x| x.strip_prefix("sent="))?
                .parse()
                .ok()?;
            Some((f.get(4)?.parse().ok()?, sent))
        })
        .collect();
    let rate = match (reports.first(), reports.last()) {
        (Some(&(t0, s0)), Some(&(t1, s1))) if t1 > t0 => (s1 - s0) as f64 * 1e9 / (t1 - t0) as f64,
        _ => 0.0,
    };
    let get = |r: &str| {
        metric(
            pa,
            &format!("singleton_exec_notify_datagrams_total{{result=\"{r}\"}}"),
        )
    };
    println!(
        "{election}: deadline fired {late} ms late; child stopped {stop_after_cut:?} after the cut; \
         notify thread {:.1}% of a core over {seconds:.1} s; the child sent {rate:.0} a second \
         ({} reports); {outside_sent} sent from outside; datagrams accepted={} foreign={} \
         malformed={} oversized={}",
        100.0 * ticks as f64 / ticks_per_s / seconds,
        reports.len(),
        get("accepted"),
        get("foreign"),
        get("malformed"),
        get("oversized"),
    );
    if flood {
        // A flood indeed (10,000 a second asked for; a loaded machine's Python sends fewer).
        assert!(rate > 2_000.0, "only {rate:.0} datagrams a second");
        assert!(get("accepted") > 5_000.0 && get("malformed") > 0.0 && get("oversized") > 0.0);
        assert!(get("foreign") > 0.0);
    }
    late
}

/// How late the deadline may fire in these tests: `--margin`, the room the timing model leaves
/// for it. On a quiet machine it fires within a few milliseconds, flood or not: the figures
/// printed are the measure; the bound only leaves room for a loaded machine.
const LATE_BOUND_MS: u64 = 1_000;

/// Promise: nothing the child sends can delay the fail-closed stop. The deadline fires on time
/// whether the child floods its socket or not, and before the standby's child starts.
#[test]
fn a_notify_flood_leaves_the_fail_closed_deadline_on_time() {
    let late = deadline_under_notify_traffic("flood", true);
    assert!(
        late < LATE_BOUND_MS,
        "the deadline fired {late} ms late under a notify flood"
    );
}

/// Promise: a heartbeat is no keepalive. A child that sends WATCHDOG=1 forever is stopped at the
/// fail-closed deadline all the same while etcd is unreachable.
#[test]
fn heartbeats_forever_do_not_keep_the_deadline_from_firing() {
    let late = deadline_under_notify_traffic("heartbeats", false);
    assert!(late < LATE_BOUND_MS, "the deadline fired {late} ms late");
}

/// EXTEND_TIMEOUT_USEC on the way out: a child that ignores SIGTERM and asks for more time gets
/// it, but never past the lease's kill deadline (TTL 6 s: about 5 s after the stop began, not
/// the minute it asks for). STOPPING=1 and the extension show in `/status` meanwhile.
#[test]
fn extend_timeout_gives_a_stopping_child_more_time_but_never_past_the_lease() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let opts = ["--ttl", "6s", "--grace", "1s"];
    let a = replica(
        "a",
        &etcd.endpoints(),
        "extend",
        port,
        &opts,
        &child(dir.path(), &["--ignore-term"]),
    );
    // (asked, SIGKILL no sooner than, and before)
    let rounds = [(2_000u64, 1_800u64, 4_000u64), (60_000, 3_500, 6_000)];
    for (i, (asked_ms, at_least, below)) in rounds.into_iter().enumerate() {
        wait_starts(dir.path(), i + 1, LONG, || a.log());
        let pid = starts(dir.path())[i].pid;
        wait_for(LONG, || http("GET", port, "/leader").0 == 200, || a.log());
        std::fs::write(dir.path().join("extend"), (asked_ms * 1_000).to_string()).unwrap();
        let t0 = Instant::now();
        assert_eq!(http("POST", port, "/resign").0, 202);
        // STOPPING=1 is shown at once, the extension in the same datagram up to a coalescing
        // pause later: wait for both.
        wait_for(
            LONG,
            || {
                let st = status(port);
                st["child"]["stopping"] == true && st["child"]["extend_timeout_ms"] == asked_ms
            },
            || format!("{}\n{}", status(port), a.log()),
        );
        wait_for(LONG, || !alive(pid), || a.log());
        let took = t0.elapsed();
        println!(
            "EXTEND_TIMEOUT_USEC asking {asked_ms} ms (grace 1 s, TTL 6 s): killed after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(at_least) && took < Duration::from_millis(below),
            "asked {asked_ms} ms, killed after {took:?}:\n{}",
            a.log()
        );
    }
    assert!(
        a.log()
            .contains("than the lease allows: SIGKILL at the lease's kill deadline"),
        "{}",
        a.log()
    );
}

/// Without a directory to make (here TMPDIR is /proc, where nothing can be made), the child's
/// socket is abstract, and works all the same.
#[test]
fn without_a_writable_directory_the_socket_is_abstract() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.args([
        "--endpoints",
        &etcd.endpoints(),
        "--id",
        "a",
        "--election",
        "abstract",
    ])
    .args(["--health-addr", &port.to_string(), "--ready-timeout", "30s"])
    .args(child(dir.path(), &["--status", "on an abstract socket"]))
    .env("TMPDIR", "/proc")
    .env_remove("RUNTIME_DIRECTORY");
    let a = Replica::spawn("a", cmd);
    wait_starts(dir.path(), 1, LONG, || a.log());
    let socket = socket_of(dir.path(), starts(dir.path())[0].pid);
    assert!(socket.starts_with("@singleton-exec/"), "{socket}");
    wait_for(LONG, || http("GET", port, "/leader").0 == 200, || a.log());
    assert_eq!(status(port)["child_status"], "on an abstract socket");
    assert!(a.log().contains("they are abstract"), "{}", a.log());
}

/// With `--slots N`, each holder's readiness and status text, read from another machine.
#[test]
fn each_slot_holder_shows_its_childs_readiness_and_status() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ready-a"), "").unwrap();
    let opts = ["--slots", "2", "--ready-timeout", "60s"];
    let extra = ["--ready-when-file", "--status", "slot child"];
    let a = replica(
        "a",
        &etcd.endpoints(),
        "slotted",
        free_port(),
        &opts,
        &child(dir.path(), &extra),
    );
    let b = replica(
        "b",
        &etcd.endpoints(),
        "slotted",
        free_port(),
        &opts,
        &child(dir.path(), &extra),
    );
    wait_starts(dir.path(), 2, LONG, || format!("{}\n{}", a.log(), b.log()));
    std::fs::write(dir.path().join("status-b"), "b is loading").unwrap();
    let holders = || {
        let v = status_json(&etcd, "slotted");
        let mut seen: Vec<(String, bool, String)> = v["holders"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let id = h["id"].as_str().unwrap_or("").to_owned();
                        let status = h["child_status"].as_str().unwrap_or("").to_owned();
                        (id, h["ready"].as_bool().unwrap_or(true), status)
                    })
                    .collect()
            })
            .unwrap_or_default();
        seen.sort();
        seen
    };
    let want = vec![
        ("a".to_owned(), true, "slot child".to_owned()),
        ("b".to_owned(), false, "b is loading".to_owned()),
    ];
    wait_for(
        LONG,
        || holders() == want,
        || format!("{:?}\n{}\n{}", holders(), a.log(), b.log()),
    );
    let text = run_subcommand("status", &etcd, &["--election", "slotted"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("ready: no: waiting for READY=1  child_status: b is loading"),
        "{text}"
    );
}

/// The examples in examples/notify/ do what docs/notify.md says: ready, with their status line,
/// their watchdog fed.
#[test]
fn the_examples_become_ready_and_feed_their_watchdog() {
    if tool("systemd-notify", "the_examples_become_ready").is_none() {
        return;
    }
    let etcd = EtcdCluster::single();
    let example = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/notify")
            .join(name)
            .to_string_lossy()
            .into_owned()
    };
    let rows = [
        (
            vec!["sh".to_owned(), example("app.sh")],
            "serving (leader a, fencing revision ",
        ),
        (
            vec!["python3".to_owned(), example("app.py")],
            "serving as a",
        ),
    ];
    for (i, (command, status_starts)) in rows.into_iter().enumerate() {
        let port = free_port();
        let election = format!("example{i}");
        let child: Vec<String> = std::iter::once("--".to_owned()).chain(command).collect();
        let opts = ["--ready-timeout", "30s", "--watchdog", "2s"];
        let a = replica("a", &etcd.endpoints(), &election, port, &opts, &child);
        wait_for(LONG, || http("GET", port, "/leader").0 == 200, || a.log());
        // Beyond the watchdog: still leading, fed.
        let fed = || {
            status(port)["child"]["ms_since_watchdog"]
                .as_u64()
                .is_some_and(|ms| ms < 2_000)
        };
        wait_for(LONG, fed, || a.log());
        hold(
            Duration::from_millis(2_500),
            || fed() && status(port)["role"] == "leader",
            || format!("{}\n{}", status(port), a.log()),
        );
        let shown = status(port)["child_status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(shown.starts_with(status_starts), "{shown:?}");
    }
}

/// Under systemd (Type=notify) singleton-exec's own messages are unchanged (READY=1 once
/// campaigning), and its STATUS= line adds what the child said.
#[test]
fn our_status_to_systemd_reflects_the_childs_readiness_and_status() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("systemd.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "--endpoints",
        &etcd.endpoints(),
        "--id",
        "a",
        "--election",
        "mirror",
    ])
    .args(["--ready-timeout", "30s"])
    .args(child(work.path(), &["--status", "serving 3 clients"]))
    .env("NOTIFY_SOCKET", &sock_path);
    let _a = Replica::spawn("a", cmd);
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen
        .iter()
        .any(|l| l.ends_with("; child ready: serving 3 clients"))
    {
        let n = sock.recv(&mut buf).expect("a notification");
        seen.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned),
        );
    }
    let at = |want: &dyn Fn(&String) -> bool| seen.iter().position(want);
    let ready = at(&|l| l == "READY=1");
    let not_ready = at(&|l| l.starts_with("STATUS=leader") && l.ends_with("; child not ready"));
    assert!(ready.is_some() && ready < not_ready, "{seen:?}");
}
