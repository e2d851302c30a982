//! Health-gated leadership against a real etcd: a healthy leader is left alone; a leader whose
//! child fails its checks steps down, its child's tree gone before a standby's child starts; the
//! unhealthy replica stays up as a standby; `--health-url` against an HTTP server of the test; a
//! hanging check is killed (with what it started) at its timeout and counts as a failure; failures
//! during the start period are not counted.
//!
//! Children are `tests/programs/worker.py`, which records start/stop on the boot clock and detects
//! overlap by itself. Command checks read files the test writes, through the variables the child
//! gets (`SINGLETON_EXEC_LEADER_ID`, `SINGLETON_EXEC_REVISION`), so a test wedges one leader.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::procfs::state_flags_and_start;
use crate::support::worker::{self, assert_no_overlap, events, starts};
use crate::support::{
    alive, alive_since, bin, boot_ns, free_port, http, program, wait_for, EtcdCluster, Replica,
};

const LONG: Duration = Duration::from_secs(30);

/// `--election E --health-addr PORT --grace 2s ARGS -- python3 worker.py DIR`
fn replica<S: AsRef<str>>(
    name: &str,
    etcd: &EtcdCluster,
    election: &str,
    port: u16,
    args: &[S],
    dir: &Path,
) -> Replica {
    let mut all: Vec<String> = vec![
        "--election".into(),
        election.into(),
        "--health-addr".into(),
        port.to_string(),
        "--grace".into(),
        "2s".into(),
        "--resign-holdoff".into(),
        "1s".into(),
    ];
    all.extend(args.iter().map(|s| s.as_ref().to_string()));
    all.extend([
        "--".into(),
        "python3".into(),
        program("worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ]);
    Replica::start(name, &etcd.endpoints(), &all)
}

fn wait_starts(dir: &Path, n: usize, what: impl FnOnce() -> String) {
    worker::wait_starts(dir, n, LONG, what)
}

fn status(port: u16) -> serde_json::Value {
    serde_json::from_str(&http("GET", port, "/status").1).unwrap_or_default()
}

/// A counter's value in the replica's /metrics, 0 if absent.
fn metric(port: u16, name: &str) -> f64 {
    http("GET", port, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `FLAG CHECK --health-interval I --health-timeout T --health-retries R`.
fn checks(flag: &str, check: &str, interval: &str, timeout: &str, retries: &str) -> Vec<String> {
    [
        flag,
        check,
        "--health-interval",
        interval,
        "--health-timeout",
        timeout,
        "--health-retries",
        retries,
    ]
    .map(String::from)
    .to_vec()
}

/// A check that fails while DIR/wedged-ID exists for the leader running it.
fn wedge_check(dir: &Path) -> String {
    format!(
        "test ! -e {}/wedged-$SINGLETON_EXEC_LEADER_ID",
        dir.display()
    )
}

#[test]
fn a_healthy_leader_is_left_alone() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let check = wedge_check(dir.path());
    let opts = checks("--health-cmd", &check, "200ms", "200ms", "1");
    let (pa, pb) = (free_port(), free_port());
    let a = replica("a", &etcd, "healthy", pa, &opts, dir.path());
    wait_starts(dir.path(), 1, || a.log());
    let _b = replica("b", &etcd, "healthy", pb, &opts, dir.path());
    // Ten passed checks in a row, and nothing moved.
    wait_for(
        LONG,
        || metric(pa, "singleton_exec_health_checks_total{result=\"healthy\"}") >= 10.0,
        || a.log(),
    );
    assert_eq!(starts(dir.path()).len(), 1, "{:?}", events(dir.path()));
    let st = status(pa);
    assert_eq!(st["role"], "leader");
    assert_eq!(st["health"]["healthy"], true, "{st}");
    assert_eq!(st["health"]["consecutive_failures"], 0);
    assert_eq!(metric(pa, "singleton_exec_health_step_downs_total"), 0.0);
    assert!(status(pb)["health"].is_null(), "a standby runs no checks");
    assert_eq!(metric(pb, "singleton_exec_health_checks_total"), 0.0);
}

#[test]
fn a_wedged_leader_steps_down_and_a_standby_with_a_working_child_takes_over() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let check = wedge_check(dir.path());
    // Bound from the issue: interval × retries + grace + 1 s.
    let (interval, retries, grace) = (Duration::from_millis(500), 3u32, Duration::from_secs(2));
    let opts = checks("--health-cmd", &check, "500ms", "500ms", "3");
    let (pa, pb) = (free_port(), free_port());
    let a = replica("a", &etcd, "wedge", pa, &opts, dir.path());
    wait_starts(dir.path(), 1, || a.log());
    let b = replica("b", &etcd, "wedge", pb, &opts, dir.path());
    wait_for(LONG, || status(pb)["role"] == "standby", || b.log());
    wait_for(LONG, || status(pa)["health"]["healthy"] == true, || a.log());

    let wedged_at = boot_ns();
    std::fs::write(dir.path().join("wedged-a"), "").unwrap();
    // Failing, counted, visible before the step-down.
    wait_for(
        LONG,
        || status(pa)["health"]["consecutive_failures"].as_u64() >= Some(1),
        || a.log(),
    );
    wait_starts(dir.path(), 2, || format!("{}\n{}", a.log(), b.log()));
    let took = Duration::from_nanos((starts(dir.path())[1].boot_ns - wedged_at) as u64);
    eprintln!("wedged → standby's child started: {took:?}");
    let bound = interval * retries + grace + Duration::from_secs(1);
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    let evs = events(dir.path());
    assert_eq!(starts(dir.path())[1].id, "b", "{evs:?}");
    // The old child was stopped (stop signal, not SIGKILL: it exits on TERM) before b's started.
    let a_stop = evs
        .iter()
        .find(|e| e.kind == "stop" && e.id == "a")
        .expect("a's child stopped");
    assert!(a_stop.boot_ns < starts(dir.path())[1].boot_ns, "{evs:?}");
    assert_no_overlap(dir.path());
    assert!(
        a.log().contains("failed 3 times in a row: stepping down"),
        "{}",
        a.log()
    );
    assert!(
        a.log().contains("the child failed its health checks"),
        "{}",
        a.log()
    );
    assert_eq!(metric(pa, "singleton_exec_health_step_downs_total"), 1.0);

    // The unhealthy replica stays up, as a standby; `status` shows the new leader's health.
    wait_for(LONG, || status(pa)["role"] == "standby", || a.log());
    wait_for(
        LONG,
        || {
            let out = status_json(&etcd, "wedge");
            out["leader"]["id"] == "b" && out["leader"]["health"]["healthy"] == true
        },
        || format!("{}", status_json(&etcd, "wedge")),
    );
    // Once a's child would be healthy again, it takes over when b goes.
    std::fs::remove_file(dir.path().join("wedged-a")).unwrap();
    b.signal(libc::SIGTERM);
    wait_starts(dir.path(), 3, || a.log());
    assert_eq!(starts(dir.path())[2].id, "a");
    assert_no_overlap(dir.path());
}

#[test]
fn alone_an_unhealthy_leader_leads_again_which_restarts_its_child() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    // Fails for the revision written in DIR/bad-revision: only the first leadership's child.
    let check = format!(
        "test \"$(cat {}/bad-revision 2>/dev/null)\" != \"$SINGLETON_EXEC_REVISION\"",
        dir.path().display()
    );
    let opts = checks("--health-cmd", &check, "200ms", "200ms", "2");
    let a = replica("a", &etcd, "alone", free_port(), &opts, dir.path());
    wait_starts(dir.path(), 1, || a.log());
    let first = starts(dir.path())[0].clone();
    std::fs::write(dir.path().join("bad-revision"), first.revision.to_string()).unwrap();
    wait_starts(dir.path(), 2, || a.log());
    let second = starts(dir.path())[1].clone();
    assert_eq!(second.id, "a");
    assert!(
        second.revision > first.revision,
        "a new leadership: {first:?} {second:?}"
    );
    wait_for(LONG, || !alive(first.pid), || a.log());
    assert_no_overlap(dir.path());
    assert!(a.log().contains("stepping down"), "{}", a.log());
}

/// An HTTP server of the test's: answers `code` to every GET, counts requests.
struct HealthServer {
    port: u16,
    code: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl HealthServer {
    fn start() -> HealthServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let code = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let (c, h) = (code.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                if !req.starts_with("GET /healthz?deep=1 HTTP/1.1\r\n")
                    || !req.contains("host: 127.0.0.1:") && !req.contains("Host: 127.0.0.1:")
                {
                    let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                    continue;
                }
                h.fetch_add(1, Ordering::SeqCst);
                let code = c.load(Ordering::SeqCst);
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        HealthServer { port, code, hits }
    }
}

#[test]
fn health_url_checks_by_http_get_and_a_non_2xx_answer_steps_down() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let server = HealthServer::start();
    let url = format!("http://127.0.0.1:{}/healthz?deep=1", server.port);
    let opts = checks("--health-url", &url, "200ms", "200ms", "2");
    let (pa, pb) = (free_port(), free_port());
    let a = replica("a", &etcd, "url", pa, &opts, dir.path());
    wait_starts(dir.path(), 1, || a.log());
    wait_for(LONG, || status(pa)["health"]["healthy"] == true, || a.log());
    let b = replica("b", &etcd, "url", pb, &opts, dir.path());
    wait_for(LONG, || status(pb)["role"] == "standby", || b.log());
    assert!(server.hits.load(Ordering::SeqCst) >= 1);
    server.code.store(503, Ordering::SeqCst);
    // b leads next. Its own checks get 503 too, so on a loaded machine it may step down before
    // its child (a Python program) has written its start line: b's log says it led.
    wait_for(
        LONG,
        || b.log().contains("leader: child started"),
        || a.log() + &b.log(),
    );
    assert!(a.log().contains("HTTP status 503"), "{}", a.log());
    wait_starts(dir.path(), 2, || a.log());
    assert_no_overlap(dir.path());
    // b's checks get 503 too: it steps down as well, and a (now a standby) leads again: a wedged
    // dependency every replica shares moves leadership around rather than stopping the service.
    // Read from a's log for the same reason as b's leadership above.
    wait_for(
        LONG,
        || a.log().matches("leader: child started").count() >= 2,
        || a.log() + &b.log(),
    );
    assert_no_overlap(dir.path());
}

#[test]
fn a_hanging_check_is_killed_with_what_it_started_at_its_timeout_and_counts_as_a_failure() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("check-pids");
    // The shell, a background sleep in its group, and a foreground sleep: all must die.
    let check = format!(
        "echo $$ >> {p}; sleep 1000 & echo $! >> {p}; exec sleep 1000",
        p = pids.display()
    );
    // Timeout = interval: each check ends (killed) just as the next tick comes.
    let opts = checks("--health-cmd", &check, "500ms", "500ms", "2");
    let pa = free_port();
    let a = replica("a", &etcd, "hang", pa, &opts, dir.path());
    wait_starts(dir.path(), 1, || a.log());
    wait_for(LONG, || a.log().contains("stepping down"), || a.log());
    assert!(
        a.log().contains("timed out after 500ms (killed)"),
        "{}",
        a.log()
    );
    // The timing model: the stop begins by start period + interval × retries + timeout (1.5 s)
    // after the child started (plus scheduling slack).
    wait_for(
        LONG,
        || events(dir.path()).iter().any(|e| e.kind == "stop"),
        || a.log(),
    );
    let evs = events(dir.path());
    let stop = evs.iter().find(|e| e.kind == "stop").unwrap().boot_ns;
    let took = Duration::from_nanos((stop - starts(dir.path())[0].boot_ns) as u64);
    eprintln!("child start → stop signal with a hanging check: {took:?}");
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?}, model 1.5 s"
    );
    // Alone, it leads again; the checks it started are gone, none left behind.
    wait_starts(dir.path(), 2, || a.log());
    let started: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(started.len() >= 4, "two checks, two pids each: {started:?}");
    let before_last = started.len() - 2; // the latest check may still run
    for &pid in &started[..before_last] {
        wait_for(
            Duration::from_secs(5),
            || !alive(pid),
            || format!("check process {pid} left behind"),
        );
    }
    assert_no_overlap(dir.path());
}

#[test]
fn failures_during_the_start_period_are_not_counted() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let opts = [
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "200ms",
        "--health-retries",
        "2",
        "--health-start-period",
        "2s",
    ];
    // Measured from before the replica starts: the child's own start record comes after Python's
    // start-up, up to half a second after the exec on a loaded machine, which would eat into the
    // 2 s. A build that counted failures in the start period steps down about 0.4 s after the
    // child starts, far below 2 s even with the campaign added.
    let started = boot_ns();
    let a = replica("a", &etcd, "startp", free_port(), &opts, dir.path());
    wait_starts(dir.path(), 1, || a.log());
    wait_for(
        LONG,
        || events(dir.path()).iter().any(|e| e.kind == "stop"),
        || a.log(),
    );
    let stopped = events(dir.path())
        .into_iter()
        .find(|e| e.kind == "stop")
        .unwrap()
        .boot_ns;
    let after = Duration::from_nanos(stopped.saturating_sub(started) as u64);
    assert!(
        after >= Duration::from_secs(2),
        "stepped down {after:?} after the start, within the start period"
    );
    assert!(a.log().contains("not counted"), "{}", a.log());
}

#[test]
fn bad_health_options_are_usage_errors() {
    for (args, why) in [
        (
            &[
                "--health-cmd",
                "true",
                "--health-url",
                "http://127.0.0.1:1/",
            ][..],
            "cannot be used with",
        ),
        (
            &["--health-cmd", "true", "--health-timeout", "11s"][..],
            "at most --health-interval",
        ),
        (&["--health-url", "https://127.0.0.1/"][..], "http://"),
        (
            &["--health-cmd", "true", "--health-retries", "0"][..],
            "at least 1",
        ),
        (
            &["--health-cmd", "true", "--health-interval", "soon"][..],
            "invalid value",
        ),
    ] {
        let out = Command::new(bin())
            .args(["--endpoints", "http://127.0.0.1:1", "--election", "x"])
            .args(args)
            .args(["--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

fn status_json(etcd: &EtcdCluster, election: &str) -> serde_json::Value {
    let out = Command::new(bin())
        .args([
            "status",
            "--endpoints",
            &etcd.endpoints(),
            "--election",
            election,
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The child's own exit is what counts, even when a check is running or fails while its leftovers
/// are stopped: its status is the replica's, and it is not taken for a health step-down.
#[test]
fn a_child_that_exits_while_checked_keeps_its_exit_status() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let starts_file = dir.path().join("starts");
    let script = format!(
        "echo x >> {}; trap '' TERM; sleep 100 & sleep 1.5; exit 7",
        starts_file.display()
    );
    let mut a = Replica::start(
        "a",
        &etcd.endpoints(),
        &[
            "--election",
            "exits",
            "--grace",
            "1s",
            "--on-child-exit",
            "exit",
            "--health-cmd",
            "sleep 0.8",
            "--health-interval",
            "1s",
            "--health-timeout",
            "1s",
            "--health-retries",
            "1",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(a.wait(LONG), 7, "{}", a.log());
    let runs = std::fs::read_to_string(&starts_file).unwrap_or_default();
    assert_eq!(runs.lines().count(), 1, "started again: {}", a.log());
    assert!(!a.log().contains("stepping down"), "{}", a.log());
}

/// SIGKILL of the supervisor while a check runs: the guard kills the check's group too.
#[test]
fn a_running_check_dies_with_a_sigkilled_supervisor() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    // Not in the worker's directory: the worker reads every `*.pid` there as a worker's.
    let check_dir = tempfile::tempdir().unwrap();
    let pid_file = check_dir.path().join("check-pid");
    // The sleep is the shell's child: PR_SET_PDEATHSIG reaches only the shell, the guard the group.
    let check = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let a = replica(
        "a",
        &etcd,
        "guarded",
        free_port(),
        &[
            "--health-cmd",
            &check,
            "--health-interval",
            "500ms",
            "--health-timeout",
            "500ms",
        ],
        dir.path(),
    );
    wait_starts(dir.path(), 1, || a.log());
    let child = starts(dir.path())[0].clone();
    // A check's sleep that runs now, known by its pid and start time: each check lives at most
    // its 500 ms timeout, and the next one writes the file anew (pids are reused, fast when the
    // machine is busy).
    let running_check = || {
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let (state, _, start) = state_flags_and_start(pid)?;
        (state != 'Z').then_some((pid, start))
    };
    let mut found = None;
    wait_for(
        LONG,
        || {
            found = running_check();
            found.is_some()
        },
        || a.log(),
    );
    let (check_pid, check_start) = found.unwrap();
    a.signal(libc::SIGKILL);
    let same_check_alive = || {
        state_flags_and_start(check_pid)
            .is_some_and(|(state, _, start)| state != 'Z' && start == check_start)
    };
    wait_for(
        Duration::from_secs(5),
        || !same_check_alive(),
        || format!("check {check_pid} outlived the supervisor"),
    );
    wait_for(
        Duration::from_secs(5),
        || !alive_since(child.pid, child.boot_ns),
        || format!("child {} outlived the supervisor", child.pid),
    );
}
