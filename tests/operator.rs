//! The operator's toolkit against a real etcd: `singleton-exec resign` (a planned switchover through
//! etcd), `status --output json` and `status --watch`, and the bearer token that guards
//! `POST /resign` off loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::worker::{assert_no_overlap, starts, wait_starts, Reap};
use crate::support::{
    alive, alive_since, bin, free_port, program, run_subcommand, spawn_with_deathsig, wait_for,
    EtcdCluster, Replica,
};

const LONG: Duration = Duration::from_secs(30);

/// A child that prints when it started (wall clock, ns), then waits to be stopped.
fn stamped_child(tag: &str) -> Vec<String> {
    vec![
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!("echo {tag} $(date +%s%N); exec sleep 300"),
    ]
}

fn replica(name: &str, etcd: &EtcdCluster, election: &str, extra: &[&str]) -> Replica {
    let mut args: Vec<String> = vec!["--election".into(), election.into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(stamped_child(&format!("started-{name}")));
    Replica::start(name, &etcd.endpoints(), &args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `status --output json` for `election`.
fn status_json(etcd: &EtcdCluster, election: &str) -> serde_json::Value {
    let out = run_subcommand(
        "status",
        etcd,
        &["--election", election, "--output", "json"],
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

fn leader_key(etcd: &EtcdCluster, election: &str) -> Option<String> {
    status_json(etcd, election)["leader"]["key"]
        .as_str()
        .map(str::to_owned)
}

fn etcdctl(etcd: &EtcdCluster) -> Command {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoints()]);
    c
}

/// A process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn resign_moves_leadership_at_once_and_the_old_leader_stays_a_standby() {
    let etcd = EtcdCluster::single();
    let a = replica("a", &etcd, "switch", &[]);
    a.wait_stdout("started-a", LONG);
    let b = replica("b", &etcd, "switch", &[]);
    b.wait_log("role=\"standby\"", LONG);
    let before = status_json(&etcd, "switch");
    assert_eq!(before["leader"]["id"], "a");

    let asked_at = now_ns();
    let out = run_subcommand("resign", &etcd, &["--election", "switch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    b.wait_stdout("started-b", LONG);
    let started: u128 = b
        .stdout()
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("b's start time");
    let took = Duration::from_nanos((started - asked_at) as u64);
    eprintln!("resign → new child started: {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let printed = text(&out.stdout);
    assert!(printed.contains("stepped down: a"), "{printed}");
    assert!(printed.contains("leader:       b"), "{printed}");
    assert!(a.log().contains("step-down requested"), "{}", a.log());

    // The old leader's process keeps running and queues again behind b (after --resign-holdoff).
    wait_for(
        LONG,
        || a.log().matches("role=\"standby\"").count() >= 2,
        || a.log(),
    );
    let after = status_json(&etcd, "switch");
    assert_eq!(after["leader"]["id"], "b");
    let ids: Vec<&str> = after["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["b", "a"]);
    assert!(
        after["leader"]["fencing_revision"].as_i64()
            > before["leader"]["fencing_revision"].as_i64()
    );
    assert_eq!(a.stdout().matches("started-a").count(), 1);
    // The request was withdrawn: nothing lingers to surprise a later leader.
    let left = etcdctl(&etcd)
        .args(["get", "/singleton-exec/switch@resign"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "{}", text(&left.stdout));
}

#[test]
fn a_stale_request_does_not_make_a_later_leader_step_down() {
    let etcd = EtcdCluster::single();
    let a = replica("a", &etcd, "stale", &[]);
    a.wait_stdout("started-a", LONG);
    let b = replica("b", &etcd, "stale", &[]);
    b.wait_log("role=\"standby\"", LONG);
    let first = status_json(&etcd, "stale")["leader"].clone();
    let out = run_subcommand("resign", &etcd, &["--election", "stale"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    b.wait_stdout("started-b", LONG);
    let second = status_json(&etcd, "stale")["leader"].clone();
    assert_eq!(second["id"], "b");

    // Requests addressed to the earlier leadership, and to b's key at an older revision.
    let stale = [
        (
            first["key"].as_str().unwrap(),
            first["fencing_revision"].as_i64().unwrap(),
            "stale-1",
        ),
        (
            second["key"].as_str().unwrap(),
            first["fencing_revision"].as_i64().unwrap(),
            "stale-2",
        ),
    ];
    for (key, revision, by) in stale {
        let value =
            format!(r#"{{"leader_key":"{key}","fencing_revision":{revision},"by":"{by}"}}"#);
        let put = etcdctl(&etcd)
            .args(["put", "/singleton-exec/stale@resign", &value])
            .output()
            .unwrap();
        assert!(put.status.success(), "{}", text(&put.stderr));
        b.wait_log(by, LONG);
    }
    assert!(
        b.log().contains("ignoring a step-down request"),
        "{}",
        b.log()
    );
    assert_eq!(
        leader_key(&etcd, "stale").as_deref(),
        second["key"].as_str(),
        "b still leads"
    );
    assert!(!b.log().contains("step-down requested"), "{}", b.log());
    assert_eq!(b.stdout().matches("started-b").count(), 1);
}

#[test]
fn resign_without_a_leader_exits_1_and_bad_input_exits_2() {
    let etcd = EtcdCluster::single();
    let out = run_subcommand("resign", &etcd, &["--election", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no leader"));
    let out = run_subcommand("resign", &etcd, &["--election", "a/b"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_subcommand("resign", &etcd, &["--election", "x", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn resign_gives_up_with_124_while_the_leader_is_still_stopping() {
    let etcd = EtcdCluster::single();
    // The child ignores SIGTERM: stopping it takes the whole --grace (10 s).
    let a = Replica::start(
        "a",
        &etcd.endpoints(),
        &[
            "--election",
            "slow",
            "--ttl",
            "20s",
            "--grace",
            "10s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo started; while :; do sleep 0.1; done",
        ],
    );
    a.wait_stdout("started", LONG);
    let t0 = std::time::Instant::now();
    let out = run_subcommand("resign", &etcd, &["--election", "slow", "--timeout", "1s"]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let err = text(&out.stderr);
    assert!(err.contains("still stopping its child"), "{err}");
    a.wait_log("step-down requested", LONG);
}

#[test]
fn status_json_lists_the_queue_and_shows_an_etcdctl_lock_holder() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    // `etcdctl lock` uses the same layout with an empty value: it leads, our replicas wait.
    let lock_out = std::fs::File::create(dir.path().join("lock.out")).unwrap();
    let mut lock = etcdctl(&etcd);
    lock.args(["lock", "/singleton-exec/queue"])
        .stdout(lock_out)
        .stderr(Stdio::null());
    let _lock = Killed(spawn_with_deathsig(&mut lock).expect("etcdctl lock"));
    wait_for(
        LONG,
        || leader_key(&etcd, "queue").is_some(),
        || "etcdctl lock never held the lock".into(),
    );
    let a = replica("a", &etcd, "queue", &[]);
    a.wait_log("role=\"standby\"", LONG);
    let b = replica("b", &etcd, "queue", &[]);
    b.wait_log("role=\"standby\"", LONG);

    let v = status_json(&etcd, "queue");
    assert_eq!(v["election"], "queue");
    assert_eq!(v["prefix"], "/singleton-exec");
    assert_eq!(v["leader"]["id"], "");
    let key = v["leader"]["key"].as_str().unwrap();
    assert!(key.starts_with("/singleton-exec/queue/"), "{v}");
    assert_eq!(key.rsplit('/').next(), v["leader"]["lease"].as_str());
    assert_eq!(
        v["leader"]["fencing_revision"],
        v["leader"]["create_revision"]
    );
    let c = v["candidates"].as_array().unwrap();
    let ids: Vec<&str> = c.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["", "a", "b"], "{v}");
    let revs: Vec<i64> = c
        .iter()
        .map(|c| c["create_revision"].as_i64().unwrap())
        .collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");

    let out = run_subcommand("status", &etcd, &["--election", "queue"]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(
        t.contains("leader:           (no id: empty value, e.g. an etcdctl lock holder)"),
        "{t}"
    );
    assert!(t.contains(&format!("key:              {key}")), "{t}");
    assert!(
        t.contains("candidates:       3") && t.contains("  3. b  key="),
        "{t}"
    );

    let none = run_subcommand(
        "status",
        &etcd,
        &["--election", "empty", "--output", "json"],
    );
    assert_eq!(none.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&none.stdout).unwrap();
    assert!(v["leader"].is_null(), "{v}");
}

/// Starts `status --watch ARGS`, its stdout in `dir/watch.out`.
fn watch(etcd: &EtcdCluster, dir: &Path, args: &[&str]) -> (Killed, std::path::PathBuf) {
    let path = dir.join("watch.out");
    let mut cmd = Command::new(bin());
    cmd.args(["status", "--watch", "--endpoints", &etcd.endpoints()])
        .args(args)
        .stdout(std::fs::File::create(&path).unwrap())
        .stderr(Stdio::null());
    (
        Killed(spawn_with_deathsig(&mut cmd).expect("status --watch")),
        path,
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn exits_with(child: &mut Child, sig: i32) -> Option<i32> {
    unsafe { libc::kill(child.id() as i32, sig) };
    let mut status = None;
    wait_for(
        Duration::from_secs(5),
        || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        },
        || format!("status --watch ignored signal {sig}"),
    );
    status.and_then(|s| s.code())
}

#[test]
fn status_watch_prints_each_leader_change_and_stops_on_ctrl_c() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let (mut w, out) = watch(
        &etcd,
        dir.path(),
        &["--election", "watched", "--output", "json"],
    );
    wait_for(
        LONG,
        || lines(&out).len() == 1,
        || format!("{:?}", lines(&out)),
    );
    let json = |i: usize| -> serde_json::Value { serde_json::from_str(&lines(&out)[i]).unwrap() };
    assert!(json(0)["leader"].is_null());

    let mut a = replica("a", &etcd, "watched", &[]);
    a.wait_stdout("started-a", LONG);
    wait_for(
        LONG,
        || lines(&out).len() == 2,
        || format!("{:?}", lines(&out)),
    );
    assert_eq!(json(1)["leader"]["id"], "a");
    // A standby joining is no leader change.
    let b = replica("b", &etcd, "watched", &[]);
    b.wait_log("role=\"standby\"", LONG);
    a.signal(libc::SIGTERM);
    a.wait(LONG);
    b.wait_stdout("started-b", LONG);
    wait_for(
        LONG,
        || lines(&out).len() >= 3,
        || format!("{:?}", lines(&out)),
    );
    assert_eq!(json(2)["leader"]["id"], "b", "{:?}", lines(&out));
    assert_eq!(lines(&out).len(), 3, "{:?}", lines(&out));
    assert_eq!(exits_with(&mut w.0, libc::SIGINT), Some(0));

    // Text, stopped by SIGTERM.
    let (mut w, out) = watch(&etcd, dir.path(), &["--election", "watched"]);
    wait_for(LONG, || !lines(&out).is_empty(), || "no line".into());
    assert!(
        lines(&out)[0].starts_with("election watched: leader b "),
        "{:?}",
        lines(&out)
    );
    assert_eq!(exits_with(&mut w.0, libc::SIGTERM), Some(0));
}

/// One HTTP/1.1 request with extra headers; returns (status, head, body). Status 0 if nothing
/// answered.
fn http(port: u16, method: &str, path: &str, headers: &[&str]) -> (u16, String, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{extra}\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new(), String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_owned(), body.to_owned())
}

#[test]
fn post_resign_off_loopback_needs_the_bearer_token() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "correct-horse-battery\n").unwrap();
    let token_file = token_file.to_str().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let any = |p: u16| format!("0.0.0.0:{p}");
    let a = replica(
        "a",
        &etcd,
        "tok",
        &["--health-addr", &any(pa), "--resign-token-file", token_file],
    );
    a.wait_stdout("started-a", LONG);
    // Without a token file: POST /resign is off, the rest stays open.
    let b = replica("b", &etcd, "tok", &["--health-addr", &any(pb)]);
    b.wait_log("role=\"standby\"", LONG);
    wait_for(
        LONG,
        || http(pb, "GET", "/healthz", &[]).0 == 200,
        || b.log(),
    );
    let (code, _, body) = http(pb, "POST", "/resign", &[]);
    assert_eq!(code, 403);
    assert!(body.contains("--resign-token-file"), "{body}");
    assert_eq!(http(pb, "GET", "/status", &[]).0, 200);

    let (code, head, _) = http(pa, "POST", "/resign", &[]);
    assert_eq!(code, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let wrong = http(
        pa,
        "POST",
        "/resign",
        &["Authorization: Bearer correct-horse"],
    );
    assert_eq!(wrong.0, 403);
    assert_eq!(
        http(pa, "GET", "/leader", &[]).0,
        200,
        "the read-only endpoints stay open"
    );
    assert!(!a.log().contains("step-down requested"));
    // A browser on some web page may carry the token (a cached credential) or not: refused anyway.
    let from_a_page = http(
        pa,
        "POST",
        "/resign",
        &[
            "Authorization: Bearer correct-horse-battery",
            "Origin: http://somewhere.example",
        ],
    );
    assert_eq!(from_a_page.0, 403, "{}", from_a_page.2);
    let right = http(
        pa,
        "POST",
        "/resign",
        &["Authorization: Bearer correct-horse-battery"],
    );
    assert_eq!(right.0, 202, "{}", right.2);
    b.wait_stdout("started-b", LONG);
    assert!(
        !a.log().contains("correct-horse-battery"),
        "the token reached the log"
    );
}

#[test]
fn a_bad_token_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "  \n").unwrap();
    for file in [empty, dir.path().join("missing")] {
        let out = Command::new(bin())
            .args(["--health-addr", "0.0.0.0:0", "--resign-token-file"])
            .arg(&file)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("--resign-token-file"));
    }
}

/// A role limited to the election's own keys: the leader cannot read step-down requests. It says so
/// once and keeps leading; the operator's `resign`, refused the request key, exits 3.
#[test]
fn without_permission_on_the_request_key_the_leader_keeps_leading() {
    use etcd_client::{Client, Permission};
    let etcd = EtcdCluster::single();
    crate::support::runtime()
        .block_on(async {
            let mut c = Client::connect([etcd.endpoint(0)], None).await?;
            c.user_add("root", "root-pw", None).await?;
            c.user_grant_role("root", "root").await?;
            c.role_add("app").await?;
            let dir = Permission::read_write("/singleton-exec/perm/").with_prefix();
            c.role_grant_permission("app", dir).await?;
            c.user_add("app", "app-pw", None).await?;
            c.user_grant_role("app", "app").await?;
            c.auth_enable().await
        })
        .expect("enable auth");
    let a = replica("a", &etcd, "perm", &["--user", "app:app-pw"]);
    a.wait_stdout("started-a", LONG);
    a.wait_log("cannot read step-down requests", LONG);
    let out = run_subcommand(
        "resign",
        &etcd,
        &[
            "--election",
            "perm",
            "--user",
            "app:app-pw",
            "--timeout",
            "2s",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );
    let st = run_subcommand(
        "status",
        &etcd,
        &["--election", "perm", "--user", "app:app-pw"],
    );
    assert_eq!(st.status.code(), Some(0), "{}", text(&st.stderr));
    assert!(!a.log().contains("step-down requested"));
    let mut a = a;
    assert!(a.try_status().is_none(), "{}", a.log());
}

/// `-- python3 worker.py DIR`: a child that records its start and any overlap in DIR/events.log.
fn recorded_replica(name: &str, etcd: &EtcdCluster, election: &str, dir: &Path) -> Replica {
    let mut args: Vec<String> = ["--election", election, "--ttl", "5s"]
        .map(String::from)
        .to_vec();
    args.extend(["--".into(), "python3".into()]);
    args.push(program("worker.py").to_string_lossy().into());
    args.push(dir.to_string_lossy().into());
    Replica::start(name, &etcd.endpoints(), &args)
}

/// `etcdctl put --prev-kv` of `key` with the value it has: the key was there (its previous value
/// is printed after `OK`), so the put detached it from its lease, keeping its create revision.
fn put_same_value(etcd: &EtcdCluster, key: &str) {
    let value = etcdctl(etcd)
        .args(["get", key, "--print-value-only"])
        .output()
        .unwrap();
    let value = text(&value.stdout).trim_end().to_owned();
    let put = etcdctl(etcd)
        .args(["put", "--prev-kv", key, &value])
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", text(&put.stderr));
    assert!(
        text(&put.stdout).contains(key),
        "not put over the key: {}",
        text(&put.stdout)
    );
}

#[test]
fn an_etcdctl_put_on_the_leaders_key_kills_its_child_at_once_and_a_standby_leads() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let a = recorded_replica("a", &etcd, "put", dir.path());
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = recorded_replica("b", &etcd, "put", dir.path());
    b.wait_log("role=\"standby\"", LONG);
    let key = leader_key(&etcd, "put").expect("a leads");
    let child = starts(dir.path())[0].pid;

    let put_at = Instant::now();
    put_same_value(&etcd, &key);
    wait_for(
        Duration::from_secs(10),
        || !alive(child),
        || format!("a's child survived the put on its key: {}", a.log()),
    );
    let killed = put_at.elapsed();
    wait_starts(dir.path(), 2, LONG, || b.log());
    let took = put_at.elapsed();
    eprintln!("put on the leader's key → old child dead {killed:?}, new child started {took:?}");
    assert_eq!(starts(dir.path())[1].id, "b");
    assert_no_overlap(dir.path());
    assert!(a.log().contains("changed by another client"), "{}", a.log());
    // The lease-less key was cleaned up: b's key heads the queue.
    let after = status_json(&etcd, "put");
    assert_eq!(after["leader"]["id"], "b", "{after}");
}

#[test]
fn after_the_leader_was_sigkilled_its_orphaned_key_is_cleaned_up_within_the_ttl() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let a = recorded_replica("a", &etcd, "crash", dir.path());
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = recorded_replica("b", &etcd, "crash", dir.path());
    b.wait_log("role=\"standby\"", LONG);
    let key = leader_key(&etcd, "crash").expect("a leads");
    let child = starts(dir.path())[0].pid;

    a.signal(libc::SIGKILL);
    wait_for(LONG, || !alive(child), || "a's child outlived a".into());
    // The lease (TTL 5 s) still lives: the put takes the key off it, for good.
    let put_at = Instant::now();
    put_same_value(&etcd, &key);
    wait_starts(dir.path(), 2, LONG, || b.log());
    let took = put_at.elapsed();
    eprintln!("orphaned head after a crash → standby's child started {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(starts(dir.path())[1].id, "b");
    assert_no_overlap(dir.path());
    assert_eq!(status_json(&etcd, "crash")["leader"]["id"], "b");
}

#[test]
fn status_flags_queue_keys_no_lease_of_their_own_holds() {
    let etcd = EtcdCluster::single();
    let grant = |ttl: &str| {
        let out = etcdctl(&etcd)
            .args(["lease", "grant", ttl])
            .output()
            .unwrap();
        // "lease 694d77aa9e4f2a1b granted with TTL(60s)"
        let said = text(&out.stdout);
        said.split_whitespace()
            .nth(1)
            .expect("a lease id")
            .to_owned()
    };
    let put = |key: String, lease: Option<&str>| {
        let mut c = etcdctl(&etcd);
        c.args(["put", &key, "id"]);
        if let Some(l) = lease {
            c.arg(format!("--lease={l}"));
        }
        assert!(c.output().unwrap().status.success(), "put {key}");
    };
    let (own, other) = (grant("60"), grant("60"));
    // A head without a lease; a head held by another lease; a rightful head, an orphan behind it.
    put("/singleton-exec/nolease/694d77aa9e4f2a1b".into(), None);
    put(
        "/singleton-exec/other/694d77aa9e4f2a1b".into(),
        Some(&other),
    );
    put(format!("/singleton-exec/fine/{own}"), Some(&own));
    put("/singleton-exec/fine/694d77aa9e4f2a1b".into(), None);
    let rows = [
        ("nolease", "orphaned: no lease", Some(4)),
        ("other", "held by another lease", Some(4)),
        ("fine", "orphaned: no lease", Some(0)),
    ];
    for (election, flag, code) in rows {
        let out = run_subcommand("status", &etcd, &["--election", election]);
        assert_eq!(out.status.code(), code, "{election}: {}", text(&out.stdout));
        assert!(
            text(&out.stdout).contains(flag),
            "{election}: {}",
            text(&out.stdout)
        );
        let json = run_subcommand(
            "status",
            &etcd,
            &["--election", election, "--output", "json"],
        );
        assert_eq!(json.status.code(), code, "{election}");
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let flags: Vec<&str> = v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["orphaned"].as_str())
            .collect();
        assert_eq!(flags, [flag.trim_start_matches("orphaned: ")], "{v}");
    }
}

#[test]
fn a_standby_whose_key_was_put_by_another_client_joins_again_and_leads_later() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let mut a = recorded_replica("a", &etcd, "standby-put", dir.path());
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = recorded_replica("b", &etcd, "standby-put", dir.path());
    b.wait_log("role=\"standby\"", LONG);
    let v = status_json(&etcd, "standby-put");
    let key = v["candidates"][1]["key"]
        .as_str()
        .expect("b queued")
        .to_owned();

    put_same_value(&etcd, &key);
    b.wait_log("changed by another client", LONG);
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait(LONG), 0, "{}", a.log());
    wait_starts(dir.path(), 2, LONG, || b.log());
    assert_eq!(starts(dir.path())[1].id, "b");
    assert_no_overlap(dir.path());
    let after = status_json(&etcd, "standby-put");
    let left: Vec<&serde_json::Value> = after["candidates"].as_array().unwrap().iter().collect();
    assert_eq!(left.len(), 1, "the orphaned key was removed: {after}");
}

/// An `etcdctl lock` holder (TTL `ttl` seconds) of `election`, a replica `b` queued behind it, and
/// the holder's key put by another client: b has seen it orphaned. Returns the holder, its key, b.
fn orphaned_lock_holder(
    etcd: &EtcdCluster,
    election: &str,
    ttl: &str,
    dir: &Path,
) -> (Killed, String, Replica) {
    let mut lock = etcdctl(etcd);
    lock.args(["lock", "--ttl", ttl, &format!("/singleton-exec/{election}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let lock = Killed(spawn_with_deathsig(&mut lock).expect("etcdctl lock"));
    wait_for(
        LONG,
        || leader_key(etcd, election).is_some(),
        || "etcdctl lock never held the lock".into(),
    );
    let key = leader_key(etcd, election).expect("the lock's key");
    let b = recorded_replica("b", etcd, election, dir);
    b.wait_log("role=\"standby\"", LONG);
    put_same_value(etcd, &key);
    b.wait_log("not held by the lease its name says", LONG);
    (lock, key, b)
}

/// A holder that never watches its key (`etcdctl lock`, or an older singleton-exec) keeps running
/// after an operator's put detached its key: the standby behind it waits as long as that holder's
/// lease lives (here past twice its TTL), not a fixed time, and leads once the holder is gone.
#[test]
fn an_orphaned_key_whose_holder_still_lives_keeps_the_queue_waiting() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let (lock, _, b) = orphaned_lock_holder(&etcd, "holder", "3", dir.path());
    // Twice the holder's TTL: a bound by the TTL would have let b lead by now.
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        assert!(
            starts(dir.path()).is_empty(),
            "b led while the lock holder lived:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(lock); // SIGKILL: its lease expires within its TTL
    wait_starts(dir.path(), 1, LONG, || b.log());
    assert_eq!(starts(dir.path())[0].id, "b");
}

/// An orphaned key deleted by hand while the lease its name says still lives: the standby behind
/// it waits for that holder as after any deletion of the key ahead (2 s at most while the lease
/// lives), not as if the lease had been outlived.
#[test]
fn an_orphaned_key_deleted_while_its_holder_lives_is_waited_for_as_any_deletion() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let (_lock, key, b) = orphaned_lock_holder(&etcd, "deleted", "30", dir.path());
    let deleted = Instant::now();
    let del = etcdctl(&etcd).args(["del", &key]).output().unwrap();
    assert!(del.status.success(), "{}", text(&del.stderr));
    wait_starts(dir.path(), 1, LONG, || b.log());
    let took = deleted.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "b led {took:?} after the orphan's deletion, its holder's lease alive:\n{}",
        b.log()
    );
}

/// A replica of `election` whose child (`worker.py DIR --ballast-mib 768`, per slot with
/// `--slots`) fills 768 MiB of memory and then holds DIR/lock, so that it takes tens to hundreds
/// of milliseconds to die. Before it, a shell tries that lock within a few milliseconds of the
/// child's start (a worker in Python would look 30-300 ms late, after the former child may have
/// died) and appends its pid to DIR/lock-held if another child still holds it: two at once.
fn heavy_replica(
    name: &str,
    etcd: &EtcdCluster,
    election: &str,
    dir: &Path,
    extra: &[&str],
) -> Replica {
    heavy_replica_of(name, &etcd.endpoints(), election, dir, extra, 768)
}

/// [`heavy_replica`] with a ballast of `mib` MiB, on `endpoints`.
fn heavy_replica_of(
    name: &str,
    endpoints: &str,
    election: &str,
    dir: &Path,
    extra: &[&str],
    mib: u32,
) -> Replica {
    let mut args: Vec<String> = ["--election", election, "--ttl", "5s"]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let per_slot = extra.contains(&"--slots");
    let lock_dir = match per_slot {
        true => "$1/slot-$SINGLETON_EXEC_SLOT",
        false => "$1",
    };
    let script = format!(
        "mkdir -p \"{lock_dir}\"; flock -n \"{lock_dir}/lock\" true || echo $$ >> \"{lock_dir}/lock-held\"; \
         exec python3 \"$2\" \"$1\" --ballast-mib {mib} {}",
        if per_slot { "--per-slot" } else { "" }
    );
    args.extend(["--".into(), "sh".into(), "-c".into(), script, "sh".into()]);
    args.push(dir.to_string_lossy().into());
    args.push(program("worker.py").to_string_lossy().into());
    Replica::start(name, endpoints, &args)
}

/// No child found the lock of `dir` held by another when it started.
fn assert_lock_never_held(dir: &Path) {
    let held = std::fs::read_to_string(dir.join("lock-held")).unwrap_or_default();
    assert!(
        held.is_empty(),
        "children started while a former one still held the lock: {held}"
    );
}

/// Waits until the child `pid` (recorded in `dir`) holds its ballast.
fn wait_ballast(dir: &Path, pid: i32) {
    let file = dir.join(format!("{pid}.ballast"));
    wait_for(
        LONG,
        || file.exists(),
        || format!("{} never filled its ballast", pid),
    );
}

/// The lease (hex, as etcdctl takes it) that `key` is attached to.
fn lease_of(etcd: &EtcdCluster, key: &str) -> String {
    let out = etcdctl(etcd)
        .args(["get", key, "-w", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl json");
    format!(
        "{:x}",
        v["kvs"][0]["lease"].as_i64().expect("a key on a lease")
    )
}

fn revoke(etcd: &EtcdCluster, lease: &str) {
    let out = etcdctl(etcd)
        .args(["lease", "revoke", lease])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// An operator's `etcdctl lease revoke` of the leader's lease deletes its key at once, while its
/// child, SIGKILLed on the same event, takes tens of milliseconds to die (768 MiB to free). The
/// standby must not start its child before that one is dead: it waits on the former leader's tree
/// marker, whose own lease the former leader revokes once its tree is gone.
#[test]
fn an_etcdctl_lease_revoke_of_the_leader_starts_the_next_child_only_after_the_old_one_died() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let a = heavy_replica("a", &etcd, "revoke", dir.path(), &[]);
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = heavy_replica("b", &etcd, "revoke", dir.path(), &[]);
    b.wait_log("role=\"standby\"", LONG);
    let replicas = [&a, &b];
    for round in 1..=4 {
        let leader = starts(dir.path()).last().cloned().expect("a leader");
        wait_ballast(dir.path(), leader.pid);
        // The other replica queues behind it (after the previous round it joins again).
        wait_for(
            LONG,
            || {
                status_json(&etcd, "revoke")["candidates"]
                    .as_array()
                    .map_or(0, Vec::len)
                    == 2
            },
            || format!("round {round}: no standby; {}", a.log() + &b.log()),
        );
        let key = leader_key(&etcd, "revoke").expect("a leads");
        revoke(&etcd, key.rsplit('/').next().unwrap());
        wait_starts(dir.path(), round + 1, LONG, || {
            replicas.map(|r| r.log()).join("\n")
        });
        assert_lock_never_held(dir.path());
        assert_no_overlap(dir.path());
        let next = starts(dir.path()).last().cloned().unwrap();
        assert_ne!(next.id, leader.id, "round {round}");
        assert!(
            !alive_since(leader.pid, leader.boot_ns),
            "round {round}: the revoked leader's child lives on"
        );
    }
    let waited = a.log().contains("tree is gone") || b.log().contains("tree is gone");
    assert!(
        waited,
        "no standby waited for a former leader's tree: {}{}",
        a.log(),
        b.log()
    );
}

/// The same with `--slots 2`: the slot of the holder whose lease an operator revoked is claimed only
/// once that holder's child is dead, and the other slot is untouched.
#[test]
fn an_etcdctl_lease_revoke_of_a_slot_holder_frees_its_slot_only_after_its_child_died() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let slots = ["--slots", "2"];
    let a = heavy_replica("a", &etcd, "slotrevoke", dir.path(), &slots);
    let b = heavy_replica("b", &etcd, "slotrevoke", dir.path(), &slots);
    let slot0 = dir.path().join("slot-0");
    let slot1 = dir.path().join("slot-1");
    wait_starts(&slot0, 1, LONG, || a.log() + &b.log());
    wait_starts(&slot1, 1, LONG, || a.log() + &b.log());
    let c = heavy_replica("c", &etcd, "slotrevoke", dir.path(), &slots);
    c.wait_log("role=\"standby\"", LONG);
    let key = "/singleton-exec/slotrevoke@slots/2/slot/0";
    for round in 1..=3 {
        let holder = starts(&slot0).last().cloned().expect("slot 0 held");
        wait_ballast(&slot0, holder.pid);
        let untouched = starts(&slot1).len();
        revoke(&etcd, &lease_of(&etcd, key));
        wait_starts(&slot0, round + 1, LONG, || a.log() + &b.log() + &c.log());
        assert_lock_never_held(&slot0);
        assert_no_overlap(&slot0);
        assert_no_overlap(&slot1);
        assert!(
            !alive_since(holder.pid, holder.boot_ns),
            "round {round}: the revoked holder's child lives on"
        );
        assert_eq!(starts(&slot1).len(), untouched, "slot 1 was disturbed");
        // The revoked replica queues again, so the next round has a standby.
        wait_for(
            LONG,
            || {
                status_json(&etcd, "slotrevoke")["standbys"]
                    .as_array()
                    .map_or(0, Vec::len)
                    == 1
            },
            || {
                format!(
                    "round {round}: no standby; {}",
                    a.log() + &b.log() + &c.log()
                )
            },
        );
    }
}

/// A replica that joins just after an operator deleted the leader's key (nobody else queues) leads
/// at once; the former leader, which sees the deletion at the same moment, may still be killing its
/// child. The joiner looks at the election's tree markers and waits for that child's end.
#[test]
fn a_replica_that_joins_just_after_the_leaders_key_was_deleted_waits_for_its_child() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let a = heavy_replica("a", &etcd, "joinafter", dir.path(), &[]);
    wait_starts(dir.path(), 1, LONG, || a.log());
    let old = starts(dir.path())[0].pid;
    wait_ballast(dir.path(), old);
    let key = leader_key(&etcd, "joinafter").expect("a leads");
    let out = etcdctl(&etcd).args(["del", &key]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let b = heavy_replica("b", &etcd, "joinafter", dir.path(), &[]);
    wait_for(
        LONG,
        || starts(dir.path()).iter().any(|s| s.id == "b"),
        || a.log() + &b.log(),
    );
    assert_lock_never_held(dir.path());
    assert_no_overlap(dir.path());
    assert!(!alive(old), "a's child lives on after its key was deleted");
}

/// `status --output json` exit code and output for an election.
fn status_code_and_json(etcd: &EtcdCluster, election: &str) -> (Option<i32>, serde_json::Value) {
    let out = run_subcommand(
        "status",
        etcd,
        &["--election", election, "--output", "json"],
    );
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), v)
}

/// `--slots 2`: after an operator's `etcdctl put` on a slot key (it leaves its holder's lease) and
/// the holder's crash, the slot key would stay for ever and the slot never get a child while a
/// standby sits idle. `status` flags the slot and exits 4 meanwhile; the standby removes the key
/// once the former holder's leases are gone (within the TTL) and claims the slot.
#[test]
fn an_orphaned_slot_key_is_removed_and_the_slot_claimed_after_its_holder_crashed() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let slots = ["--slots", "2"];
    let a = heavy_replica("a", &etcd, "slotput", dir.path(), &slots);
    let slot0 = dir.path().join("slot-0");
    wait_starts(&slot0, 1, LONG, || a.log());
    let b = heavy_replica("b", &etcd, "slotput", dir.path(), &slots);
    wait_starts(&dir.path().join("slot-1"), 1, LONG, || b.log());
    let c = heavy_replica("c", &etcd, "slotput", dir.path(), &slots);
    c.wait_log("role=\"standby\"", LONG);
    let holder = starts(&slot0)[0].clone();
    let crashed = if holder.id == "a" { &a } else { &b };
    crashed.signal(libc::SIGKILL);
    wait_for(
        LONG,
        || !alive(holder.pid),
        || "the holder's child outlived it".into(),
    );
    // Its leases (TTL 5 s) still live: the put takes the slot key off its lease, for good.
    let key = "/singleton-exec/slotput@slots/2/slot/0";
    let put_at = Instant::now();
    put_same_value(&etcd, key);
    let (code, v) = status_code_and_json(&etcd, "slotput");
    assert_eq!(code, Some(4), "{v}");
    assert_eq!(v["orphaned_slots"], serde_json::json!([0]), "{v}");
    assert_eq!(v["holders"][0]["orphaned"], "no lease", "{v}");
    wait_starts(&slot0, 2, LONG, || a.log() + &b.log() + &c.log());
    let took = put_at.elapsed();
    eprintln!("orphaned slot key after a crash → standby's child on that slot {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(starts(&slot0)[1].id, "c");
    assert_lock_never_held(&slot0);
    assert_no_overlap(&slot0);
    assert!(
        c.log().contains("removed the orphaned slot key"),
        "{}",
        c.log()
    );
    let (code, v) = status_code_and_json(&etcd, "slotput");
    assert_eq!(code, Some(0), "{v}");
}

/// `--slots 2`: an operator's `etcdctl put` on a holder's slot key while it runs stops its child at
/// once; the standby removes the key once that child is dead and claims the slot. And a standby
/// whose queue key is put joins again (it used to retry "could not place" until its lease went).
#[test]
fn a_put_slot_key_is_taken_over_once_its_holders_child_died_and_a_put_queue_key_rejoins() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let slots = ["--slots", "2"];
    let a = heavy_replica("a", &etcd, "slotput2", dir.path(), &slots);
    let slot0 = dir.path().join("slot-0");
    wait_starts(&slot0, 1, LONG, || a.log());
    let b = heavy_replica("b", &etcd, "slotput2", dir.path(), &slots);
    wait_starts(&dir.path().join("slot-1"), 1, LONG, || b.log());
    let c = heavy_replica("c", &etcd, "slotput2", dir.path(), &slots);
    c.wait_log("role=\"standby\"", LONG);
    let all = || a.log() + &b.log() + &c.log();
    // The standby's queue key, put by an operator: it joins again.
    let queue_key = |etcd: &EtcdCluster| {
        let out = etcdctl(etcd)
            .args([
                "get",
                "--prefix",
                "/singleton-exec/slotput2@slots/2/queue/",
                "--keys-only",
            ])
            .output()
            .unwrap();
        text(&out.stdout)
            .lines()
            .find(|l| !l.is_empty())
            .map(str::to_owned)
    };
    let standby_key = queue_key(&etcd).expect("c queues");
    put_same_value(&etcd, &standby_key);
    c.wait_log("our queue key was put by another client", LONG);
    wait_for(
        LONG,
        || {
            status_code_and_json(&etcd, "slotput2").1["standbys"]
                .as_array()
                .map_or(0, Vec::len)
                == 1
        },
        || format!("c did not queue again: {}", all()),
    );
    // The holder of slot 0, its slot key put: its child dies, then the standby takes the slot.
    let holder = starts(&slot0)[0].clone();
    wait_ballast(&slot0, holder.pid);
    put_same_value(&etcd, "/singleton-exec/slotput2@slots/2/slot/0");
    wait_starts(&slot0, 2, LONG, all);
    assert!(!alive(holder.pid), "the holder's child lives on");
    assert_lock_never_held(&slot0);
    assert_no_overlap(&slot0);
    assert_eq!(starts(&slot0)[1].id, "c", "{}", all());
}

/// `status --watch` shows the head of the queue becoming orphaned (an operator's put after the
/// leader crashed: the key keeps its create revision, only its lease changes), not only new leaders.
#[test]
fn status_watch_prints_a_line_when_the_head_becomes_orphaned() {
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let mut a = replica("a", &etcd, "orphwatch", &[]);
    a.wait_stdout("started-a", LONG);
    let key = leader_key(&etcd, "orphwatch").expect("a leads");
    let (mut w, out) = watch(
        &etcd,
        dir.path(),
        &["--election", "orphwatch", "--output", "json"],
    );
    wait_for(
        LONG,
        || lines(&out).len() == 1,
        || format!("{:?}", lines(&out)),
    );
    a.signal(libc::SIGKILL);
    a.wait(LONG);
    put_same_value(&etcd, &key);
    wait_for(
        LONG,
        || lines(&out).len() == 2,
        || format!("{:?}", lines(&out)),
    );
    let v: serde_json::Value = serde_json::from_str(&lines(&out)[1]).unwrap();
    assert_eq!(v["leader"]["key"], key.as_str(), "{v}");
    assert!(!v["leader"]["orphaned"].is_null(), "{v}");
    assert_eq!(exits_with(&mut w.0, libc::SIGINT), Some(0));
}

/// Every queue key, in queue order.
fn queue_keys(etcd: &EtcdCluster, election: &str) -> Vec<String> {
    status_json(etcd, election)["candidates"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The leader's key and the first standby's go in one transaction (as in a `del --prefix` or
/// revokes back to back) while the leader's child, 4 GiB, takes a while to die. The second standby
/// wakes for the first standby's key, not the leader's: it must still wait for the leader's child.
#[test]
fn two_keys_ahead_deleted_together_the_next_waits_for_the_leaders_child() {
    use etcd_client::{Txn, TxnOp};
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().to_owned());
    let ep = etcd.endpoints();
    let a = heavy_replica_of("a", &ep, "twogone", dir.path(), &[], 4096);
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = heavy_replica_of("b", &ep, "twogone", dir.path(), &[], 4096);
    b.wait_log("role=\"standby\"", LONG);
    let c = heavy_replica_of("c", &ep, "twogone", dir.path(), &[], 4096);
    c.wait_log("role=\"standby\"", LONG);
    let leader = starts(dir.path())[0].clone();
    wait_ballast(dir.path(), leader.pid);
    let q = queue_keys(&etcd, "twogone");
    assert_eq!(q.len(), 3, "{q:?}");
    crate::support::runtime()
        .block_on(async {
            let mut client = etcd_client::Client::connect([etcd.endpoint(0)], None).await?;
            let both = [
                TxnOp::delete(q[0].clone(), None),
                TxnOp::delete(q[1].clone(), None),
            ];
            client.txn(Txn::new().and_then(both)).await.map(|_| ())
        })
        .expect("delete two keys");
    wait_starts(dir.path(), 2, LONG, || a.log() + &b.log() + &c.log());
    assert_lock_never_held(dir.path());
    assert_no_overlap(dir.path());
    wait_for(
        LONG,
        || !alive(leader.pid),
        || "the old leader's child lives on".into(),
    );
}

/// A leader cut off from etcd (its proxy drops everything) whose lease an operator revokes cannot
/// see the revoke: its child (which ignores SIGTERM) runs until its own fail-closed deadline. etcd
/// reports a lease's remaining time in whole seconds, truncated: `0` while it still has up to a
/// second. The standby must wait until etcd no longer knows the tree lease (it expires after the
/// leader's deadline), not start when it reads `0`.
#[test]
fn a_cut_off_leader_whose_lease_is_revoked_is_outlived_not_overlapped() {
    use crate::support::proxy::FaultProxy;
    let etcd = EtcdCluster::single();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let child = |tag: &str| -> Vec<String> {
        let script = format!(
            "trap '' TERM; flock -n {d}/lock true || echo {tag} >> {d}/lock-held; \
             echo {tag}; exec flock {d}/lock sleep 300"
        );
        [
            "--election",
            "cutrevoke",
            "--ttl",
            "5s",
            "--margin",
            "100ms",
            "--",
            "sh",
            "-c",
            &script,
        ]
        .map(String::from)
        .to_vec()
    };
    let a = Replica::start("a", &proxy.url, &child("started-a"));
    a.wait_stdout("started-a", LONG);
    let b = Replica::start("b", &etcd.endpoints(), &child("started-b"));
    b.wait_log("role=\"standby\"", LONG);
    let key = leader_key(&etcd, "cutrevoke").expect("a leads");
    proxy.cut();
    revoke(&etcd, key.rsplit('/').next().unwrap());
    b.wait_stdout("started-b", LONG);
    proxy.heal();
    assert_lock_never_held(dir.path());
}
