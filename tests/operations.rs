//! Operations: the HTTP endpoints as leader and as standby (still answering, without spinning,
//! with more connections than file descriptors; hostile clients are in `probes.rs`), stepping
//! down, the systemd notify protocol, and metrics that a Prometheus parser accepts.

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::support::procfs::cpu_ticks;
use crate::support::{
    args, bin, free_port, http, replica_with, wait_for, with_rlimit, EtcdCluster, Replica,
};

const LONG: Duration = Duration::from_secs(30);

/// One HTTP/1.1 request; returns (status, body). Status 0 if nothing answered.
fn start(name: &str, etcd: &EtcdCluster, port: u16, election: &str) -> Replica {
    Replica::start(
        name,
        &etcd.endpoints(),
        &[
            "--election",
            election,
            "--health-addr",
            &port.to_string(),
            "--ttl",
            "5s",
            "--resign-holdoff",
            "1s",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ],
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn metric(body: &str, name: &str) -> f64 {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("metrics parse as Prometheus text");
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("{name} missing:\n{body}"));
    match s.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{name} is not a number"),
    }
}

#[test]
fn endpoints_as_leader_and_standby_and_resign_hands_over() {
    let etcd = EtcdCluster::single();
    let (pa, pb) = (free_port(), free_port());
    let a = start("a", &etcd, pa, "ops");
    a.wait_stdout("started", LONG);
    let b = start("b", &etcd, pb, "ops");
    b.wait_log("role=\"standby\"", LONG);
    wait_for(LONG, || http("GET", pb, "/healthz").0 == 200, || b.log());

    // Leader.
    assert_eq!(http("GET", pa, "/healthz").0, 200);
    assert_eq!(http("GET", pa, "/leader").0, 200);
    let st = json(&http("GET", pa, "/status").1);
    assert_eq!(st["role"], "leader");
    assert_eq!(st["id"], "a");
    assert_eq!(st["election"], "ops");
    assert_eq!(st["leader_id"], "a");
    assert!(st["fencing_revision"].as_i64().unwrap() > 0);
    assert!(st["child_pid"].as_i64().unwrap() > 0);
    assert!(st["lease_id"].is_string() && st["key"].is_string());
    let ms = st["ms_until_deadline"].as_i64().unwrap();
    assert!(ms > 0 && ms <= 5000, "ms_until_deadline {ms}");
    assert_eq!(st["last_transition"]["role"], "leader");
    let m = http("GET", pa, "/metrics").1;
    assert_eq!(metric(&m, "singleton_exec_is_leader"), 1.0);
    assert!(metric(&m, "singleton_exec_deadline_seconds") > 0.0);
    assert!(m.contains("singleton_exec_keepalive_rtt_seconds"));
    assert!(m.contains("singleton_exec_election_wait_seconds"));

    // Standby.
    assert_eq!(http("GET", pb, "/leader").0, 503);
    let st = json(&http("GET", pb, "/status").1);
    assert_eq!(st["role"], "standby");
    assert_eq!(st["leader_id"], "a");
    assert!(st["child_pid"].is_null());
    assert_eq!(
        metric(&http("GET", pb, "/metrics").1, "singleton_exec_is_leader"),
        0.0
    );
    assert_eq!(
        http("POST", pb, "/resign").0,
        409,
        "a standby cannot resign"
    );
    assert_eq!(http("GET", pb, "/resign").0, 405);
    assert_eq!(http("GET", pb, "/nope").0, 404);

    // Step down: b takes over, a waits as standby.
    assert_eq!(http("POST", pa, "/resign").0, 202);
    b.wait_stdout("started", LONG);
    wait_for(LONG, || http("GET", pb, "/leader").0 == 200, || b.log());
    wait_for(
        LONG,
        || json(&http("GET", pa, "/status").1)["role"] == "standby",
        || a.log(),
    );
    assert_eq!(http("GET", pa, "/leader").0, 503);
    assert!(a.log().contains("step-down requested"), "{}", a.log());
    let m = http("GET", pa, "/metrics").1;
    assert!(
        metric(&m, "singleton_exec_last_child_exit_code") == 143.0,
        "{m}"
    );
}

#[test]
fn resign_signal_steps_down_instead_of_reaching_the_child() {
    let etcd = EtcdCluster::single();
    let a = Replica::start(
        "a",
        &etcd.endpoints(),
        &[
            "--election",
            "rsig",
            "--resign-signal",
            "USR2",
            "--resign-holdoff",
            "1s",
            "--",
            "sh",
            "-c",
            "trap 'echo got-usr2' USR2; echo started; while :; do sleep 0.05; done",
        ],
    );
    a.wait_stdout("started", LONG);
    let b = Replica::start(
        "b",
        &etcd.endpoints(),
        &[
            "--election",
            "rsig",
            "--",
            "sh",
            "-c",
            "echo started-b; exec sleep 300",
        ],
    );
    b.wait_log("role=\"standby\"", LONG);
    a.signal(libc::SIGUSR2);
    b.wait_stdout("started-b", LONG);
    assert!(
        !a.stdout().contains("got-usr2"),
        "the resign signal was forwarded"
    );
}

#[test]
fn systemd_notify_protocol_in_order_and_hidden_from_the_child() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "--endpoints",
        &etcd.endpoints(),
        "--id",
        "n",
        "--election",
        "notify",
        "--",
        "sh",
        "-c",
        "env; exec sleep 300",
    ])
    .env("NOTIFY_SOCKET", &sock_path)
    .env("WATCHDOG_USEC", "400000");
    let mut r = Replica::spawn("n", cmd);

    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv = |seen: &mut Vec<String>| {
        let n = sock.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen.extend(msg.lines().map(str::to_owned));
    };
    while !(seen.iter().any(|l| l.starts_with("STATUS=leader"))
        && seen.iter().any(|l| l == "WATCHDOG=1"))
    {
        recv(&mut seen);
    }
    r.wait_stdout("PATH=", LONG);
    assert!(
        !r.stdout().contains("NOTIFY_SOCKET"),
        "NOTIFY_SOCKET leaked to the child"
    );
    assert!(
        !r.stdout().contains("WATCHDOG_USEC"),
        "WATCHDOG_USEC leaked to the child"
    );
    r.signal(libc::SIGTERM);
    r.wait(LONG);
    while !seen.iter().any(|l| l == "STOPPING=1") {
        recv(&mut seen);
    }
    let pos = |pred: &dyn Fn(&String) -> bool| {
        seen.iter()
            .position(pred)
            .unwrap_or_else(|| panic!("missing in {seen:?}"))
    };
    let ready = pos(&|l| l == "READY=1");
    let status = pos(&|l| l.starts_with("STATUS="));
    let leader = pos(&|l| l.starts_with("STATUS=leader"));
    let watchdog = pos(&|l| l == "WATCHDOG=1");
    let stopping = pos(&|l| l == "STOPPING=1");
    assert!(
        ready < leader,
        "READY=1 comes when campaigning starts, before leadership: {seen:?}"
    );
    assert!(
        status <= leader && ready < stopping && watchdog < stopping,
        "{seen:?}"
    );
}

#[test]
fn health_addr_forms_and_errors() {
    let etcd = EtcdCluster::single();
    let port = free_port();
    let a = Replica::start(
        "a",
        &etcd.endpoints(),
        &[
            "--election",
            "hforms",
            "--health-addr",
            &format!(":{port}"),
            "--",
            "sleep",
            "300",
        ],
    );
    wait_for(LONG, || http("GET", port, "/healthz").0 == 200, || a.log());
    let out = Command::new(bin())
        .args(["--health-addr", "not-an-address", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin())
        .args([
            "--endpoints",
            &etcd.endpoints(),
            "--health-addr",
            &port.to_string(),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a port in use is refused at start-up"
    );
}

/// Promise: the supervisor "mostly sleeps" and its health endpoint keeps answering. With few file
/// descriptors and more connections than it has, it keeps its connections to a share of them (so
/// accept never fails with EMFILE, which it would back off from), does not spin, and serves again
/// once the connections are gone.
#[test]
fn the_health_endpoint_does_not_spin_out_of_file_descriptors() {
    let etcd = EtcdCluster::single();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let r = replica_with(
        "fds",
        &etcd.endpoints(),
        &args(
            &["--election", "fds", "--health-addr", &addr],
            &["--".into(), "sleep".into(), "300".into()],
        ),
        |c| with_rlimit(c, libc::RLIMIT_NOFILE, 64),
    );
    wait_for(LONG, || http("GET", port, "/healthz").0 == 200, || r.log());
    let conns: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(conns.len() >= 80, "only {} connections", conns.len());
    let before = cpu_ticks(r.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(r.pid()) - before;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    drop(conns);
    assert!(
        used * 2 < hz,
        "the supervisor used {:.2} s of CPU in 2 s with 100 connections and 64 descriptors",
        used as f64 / hz as f64
    );
    assert!(
        !r.log().contains("accept failed"),
        "the connections took every descriptor:\n{}",
        r.log()
    );
    wait_for(
        LONG,
        || http("GET", port, "/healthz").0 == 200,
        || format!("/healthz does not answer again:\n{}", r.log()),
    );
}
