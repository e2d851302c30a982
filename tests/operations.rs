//! Operations: the HTTP endpoints as leader and as standby (still answering, without spinning,
//! with more connections than file descriptors; hostile clients are in `probes.rs`), stepping
//! down, the systemd notify protocol, and metrics in the format a scraper asks for, clean for
//! `promtool check metrics` and the Python client's OpenMetrics parser.

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::support::procfs::cpu_ticks;
use crate::support::{
    args, bin, free_port, http, http_with, replica_with, skip_or_fail, tool, wait_for, with_rlimit,
    EtcdCluster, Replica,
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

    let fencing = st["fencing_revision"].as_i64();
    assert_eq!(st["create_revision"].as_i64(), fencing);
    assert_eq!(st["leader_fencing_revision"].as_i64(), fencing);

    // Standby: its key's create revision fences nothing, and is not shown as if it did.
    assert_eq!(http("GET", pb, "/leader").0, 503);
    let st = json(&http("GET", pb, "/status").1);
    assert_eq!(st["role"], "standby");
    assert_eq!(st["leader_id"], "a");
    assert!(st["child_pid"].is_null());
    assert!(st["fencing_revision"].is_null(), "{st}");
    assert!(st["create_revision"].as_i64() > fencing, "{st}");
    assert_eq!(st["leader_fencing_revision"].as_i64(), fencing, "{st}");
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
fn systemd_notify_protocol_in_order_and_its_socket_hidden_from_the_child() {
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
    // The child has a notify socket of its own, never ours (systemd's).
    let given = r
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("NOTIFY_SOCKET=").map(str::to_owned));
    assert!(
        given
            .as_deref()
            .is_some_and(|g| g != sock_path.to_string_lossy()),
        "the child's NOTIFY_SOCKET is {given:?}, systemd's is {sock_path:?}"
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

/// `/metrics` answers in the format asked for: the Prometheus text without an Accept header or
/// for text/plain, clean for `promtool check metrics`; OpenMetrics when asked, which the Python
/// client's strict parser reads. It shows only what happened: no exit code while the first child
/// runs; after a step-down, the child's exit code, one stop and the two takeovers.
#[test]
fn metrics_come_in_the_format_asked_for_and_show_only_what_happened() {
    let promtool = tool("promtool", "metrics_come_in_the_format_asked_for");
    let etcd = EtcdCluster::single();
    let port = free_port();
    let a = start("a", &etcd, port, "scrape");
    a.wait_stdout("started", LONG);
    wait_for(LONG, || http("GET", port, "/leader").0 == 200, || a.log());
    let scrape = |accept: Option<&str>| {
        let headers: Vec<(&str, &str)> = accept.map(|v| ("Accept", v)).into_iter().collect();
        let answer = http_with("GET", port, "/metrics", &headers);
        assert_eq!(answer.status, 200, "{answer:?}");
        answer
    };
    let text = "text/plain; version=0.0.4; charset=utf-8";
    let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let rows = [
        (None, text),
        (Some("text/plain"), text),
        (Some("*/*"), text),
        (Some("application/openmetrics-text;q=0.3, text/plain"), text),
        (
            Some("application/openmetrics-text; version=1.0.0"),
            openmetrics,
        ),
        (Some(prometheus), openmetrics),
    ];
    for (accept, want) in rows {
        let answer = scrape(accept);
        assert_eq!(answer.header("content-type"), Some(want), "{accept:?}");
        assert_eq!(answer.header("vary"), Some("accept"), "{accept:?}");
        assert_eq!(
            answer.body.ends_with("# EOF\n"),
            want == openmetrics,
            "{accept:?}"
        );
    }

    // The first child runs: no exit code yet.
    let plain = scrape(None).body;
    assert!(!plain.contains("last_child_exit_code"), "{plain}");
    assert!(
        plain.contains("\nsingleton_exec_takeover_wait_seconds_count 1\n"),
        "{plain}"
    );
    assert!(
        plain.contains("\nsingleton_exec_stop_seconds_count 0\n"),
        "{plain}"
    );
    lint_clean(promtool.as_deref(), &plain);
    openmetrics_parses(&scrape(Some("application/openmetrics-text")).body);

    // A step-down ends it (SIGTERM: 143); alone in the election, the replica leads again.
    assert_eq!(http("POST", port, "/resign").0, 202);
    wait_for(
        LONG,
        || a.stdout().matches("started").count() == 2,
        || a.log(),
    );
    wait_for(LONG, || http("GET", port, "/leader").0 == 200, || a.log());
    let plain = scrape(None).body;
    for line in plain.lines().filter(|l| {
        l.starts_with("singleton_exec_takeover_wait_seconds_")
            || l.starts_with("singleton_exec_stop_seconds_")
    }) {
        if !line.contains("_bucket") {
            println!("{line}");
        }
    }
    assert_eq!(metric(&plain, "singleton_exec_last_child_exit_code"), 143.0);
    assert!(
        plain.contains("\nsingleton_exec_stop_seconds_count 1\n"),
        "{plain}"
    );
    assert!(
        plain.contains("\nsingleton_exec_takeover_wait_seconds_count 2\n"),
        "{plain}"
    );
    lint_clean(promtool.as_deref(), &plain);
    let om = scrape(Some("application/openmetrics-text")).body;
    assert!(
        om.contains("\nsingleton_exec_last_child_exit_code 143\n"),
        "{om}"
    );
    openmetrics_parses(&om);
}

/// `promtool check metrics` (Prometheus' own lint of the text format) says nothing.
fn lint_clean(promtool: Option<&std::path::Path>, body: &str) {
    use std::io::Write;
    let Some(promtool) = promtool else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\n{body}",
        out.status
    );
}

/// The Python client's OpenMetrics parser (strict: `# EOF`, counters named as OpenMetrics wants,
/// histogram buckets) reads every family. Debian's python3-prometheus-client is for Debian's
/// python3, which is taken before another python3 on PATH (pyenv's, say).
fn openmetrics_parses(body: &str) {
    use std::io::Write;
    let parser = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nprint(len(list(p(sys.stdin.read()))))";
    let importable = |python: &str| {
        Command::new(python)
            .args(["-c", "import prometheus_client"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| importable(p))
        .unwrap_or("python3");
    let mut child = match Command::new(python)
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return skip_or_fail(&format!("OpenMetrics check: python3: {e}")),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'prometheus_client'") {
        return skip_or_fail("OpenMetrics check: python3-prometheus-client is not installed");
    }
    assert!(out.status.success(), "OpenMetrics parser: {err}\n{body}");
    let families: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let types = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(families, types, "{body}");
}

/// Two replicas with one `--id` in one election cannot be told apart in `status` or the logs:
/// the one that joins later says so, from the queue it reads after joining; a replica with an id
/// of its own says nothing.
#[test]
fn a_second_replica_with_the_same_id_is_warned_about() {
    let etcd = EtcdCluster::single();
    let child = [
        "--election",
        "dup",
        "--",
        "sh",
        "-c",
        "echo started; exec sleep 300",
    ];
    let first = Replica::start("same", &etcd.endpoints(), &child);
    first.wait_stdout("started", LONG);
    let warning = "another replica of this election has the same --id";
    let twin = Replica::start("same", &etcd.endpoints(), &child);
    twin.wait_log("role=\"standby\"", LONG);
    twin.wait_log(warning, LONG);
    assert!(twin.log().contains("id=same"), "{}", twin.log());
    let other = Replica::start("other", &etcd.endpoints(), &child);
    other.wait_log("no other replica of this election has our --id", LONG);
    assert!(!other.log().contains(warning), "{}", other.log());
}
