//! Races between operators' etcdctl and a standby's wait for the former holder's child (the tree
//! markers, src/election/queue.rs). Each child ignores SIGTERM and holds a file lock; a child that
//! finds the lock taken when it starts writes to `lock-held`: two copies at once. Leaders cut off
//! from etcd (a proxy dropping everything) keep their child until their own fail-closed deadline,
//! which makes every race as wide as it can be.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::proxy::FaultProxy;
use crate::support::{EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(40);

fn etcdctl(ep: &str) -> Command {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3").args(["--endpoints", ep]);
    c
}

fn out(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Keys under `prefix`, create order.
fn keys(ep: &str, prefix: &str) -> Vec<String> {
    out(etcdctl(ep).args([
        "get",
        "--prefix",
        prefix,
        "--keys-only",
        "--sort-by=CREATE",
        "--order=ASCEND",
    ]))
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect()
}

fn revoke(ep: &str, lease_hex: &str) {
    out(etcdctl(ep).args(["lease", "revoke", lease_hex]));
}

/// A child that ignores SIGTERM, notes in DIR/lock-held if another child still holds DIR/lock,
/// prints TAG and then holds the lock.
fn child(election: &str, ttl: &str, d: &str, tag: &str, extra: &[&str]) -> Vec<String> {
    let script = format!(
        "trap '' TERM; flock -n {d}/lock true || echo {tag} >> {d}/lock-held; \
         echo {tag}; exec flock {d}/lock sleep 300"
    );
    let mut v: Vec<String> = ["--election", election, "--ttl", ttl, "--margin", "100ms"]
        .map(String::from)
        .to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend(["--", "sh", "-c", &script].map(String::from));
    v
}

fn lock_held(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("lock-held")).unwrap_or_default()
}

fn report(what: &str, dir: &std::path::Path, a: &Replica, b: &Replica) {
    let held = lock_held(dir);
    eprintln!("=== {what}: lock-held = {held:?}");
    if !held.is_empty() {
        eprintln!("--- a:\n{}\n--- b:\n{}", a.log(), b.log());
    }
    assert!(held.is_empty(), "{what}: two children at once ({held})");
}

/// The standby joins behind the leader; the leader's lease is revoked between the join and
/// the standby's first read of the queue. The leader is cut off (so its child lives until its
/// own deadline).
#[test]
fn revoke_between_join_and_first_read() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let pa = FaultProxy::start(&etcd.endpoint(0));
    let pb = FaultProxy::start(&etcd.endpoint(0));
    pb.set_delay(Duration::from_millis(150));
    let a = Replica::start("a", &pa.url, &child("race", "5s", &d, "started-a", &[]));
    a.wait_stdout("started-a", LONG);
    let a_key = keys(&ep, "/singleton-exec/race/")[0].clone();
    let b = Replica::start("b", &pb.url, &child("race", "20s", &d, "started-b", &[]));
    let t = Instant::now();
    while keys(&ep, "/singleton-exec/race/").len() < 2 {
        assert!(t.elapsed() < LONG, "b never joined: {}", b.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    pa.cut();
    revoke(&ep, a_key.rsplit('/').next().unwrap());
    b.wait_stdout("started-b", LONG);
    eprintln!("b started {:?} after its key appeared", t.elapsed());
    pa.heal();
    report("revoke between join and first read", dir.path(), &a, &b);
}

/// A cut-off leader's key is put (taken off its lease), then its candidacy lease revoked.
#[test]
fn put_then_revoke_of_a_cut_off_leader() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let pa = FaultProxy::start(&etcd.endpoint(0));
    let a = Replica::start("a", &pa.url, &child("putrev", "5s", &d, "started-a", &[]));
    a.wait_stdout("started-a", LONG);
    let b = Replica::start("b", &ep, &child("putrev", "5s", &d, "started-b", &[]));
    b.wait_log("role=\"standby\"", LONG);
    let a_key = keys(&ep, "/singleton-exec/putrev/")[0].clone();
    let value = out(etcdctl(&ep).args(["get", &a_key, "--print-value-only"]));
    pa.cut();
    let t = Instant::now();
    out(etcdctl(&ep).args(["put", &a_key, value.trim_end()]));
    revoke(&ep, a_key.rsplit('/').next().unwrap());
    b.wait_stdout("started-b", LONG);
    eprintln!("b started {:?} after the put", t.elapsed());
    pa.heal();
    report("put then revoke", dir.path(), &a, &b);
}

/// `etcdctl del --prefix PREFIX/NAME` (no trailing slash: the markers go too) while the
/// leader is cut off. `slash` = with the trailing slash, for contrast.
fn del_prefix(slash: bool) {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let name = if slash { "delslash" } else { "delnoslash" };
    let pa = FaultProxy::start(&etcd.endpoint(0));
    let a = Replica::start("a", &pa.url, &child(name, "8s", &d, "started-a", &[]));
    a.wait_stdout("started-a", LONG);
    let b = Replica::start("b", &ep, &child(name, "8s", &d, "started-b", &[]));
    b.wait_log("role=\"standby\"", LONG);
    eprintln!(
        "before: {:?}",
        keys(&ep, &format!("/singleton-exec/{name}"))
    );
    pa.cut();
    let t = Instant::now();
    let prefix = format!("/singleton-exec/{name}{}", if slash { "/" } else { "" });
    out(etcdctl(&ep).args(["del", "--prefix", &prefix]));
    b.wait_stdout("started-b", LONG);
    eprintln!("slash={slash}: b started {:?} after the del", t.elapsed());
    pa.heal();
    report(&format!("del --prefix {prefix}"), dir.path(), &a, &b);
}

#[test]
fn del_prefix_without_slash_of_a_cut_off_leader() {
    del_prefix(false);
}

#[test]
fn del_prefix_with_slash_of_a_cut_off_leader() {
    del_prefix(true);
}

async fn enable_auth(endpoint: &str, prefix: &str) -> Result<(), etcd_client::Error> {
    use etcd_client::{Client, Permission};
    let mut c = Client::connect([endpoint], None).await?;
    c.user_add("root", "root-secret-pw", None).await?;
    c.user_grant_role("root", "root").await?;
    c.role_add("app").await?;
    c.role_grant_permission("app", Permission::read_write(prefix).with_prefix())
        .await?;
    c.user_add("app", "app-secret-pw", None).await?;
    c.user_grant_role("app", "app").await?;
    c.auth_enable().await?;
    Ok(())
}

/// Expired auth tokens on the marker calls: idle past the token TTL, then an operator revokes
/// the leader's candidacy lease (b reads markers and lease TTLs with an expired token), then the
/// new leader is stopped with SIGTERM after another idle period (its release txn).
#[test]
fn expired_tokens_on_the_marker_calls() {
    use crate::support::etcd::Options;
    let etcd = EtcdCluster::start_with_args(1, Options::default(), &["--auth-token-ttl", "2"]);
    let ep = etcd.endpoints();
    crate::support::runtime()
        .block_on(enable_auth(&etcd.endpoint(0), "/singleton-exec/tok"))
        .expect("enable auth");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let user = ["--user", "app:app-secret-pw"];
    let a = Replica::start("a", &ep, &child("tok", "10s", &d, "started-a", &user));
    a.wait_stdout("started-a", LONG);
    let mut b = Replica::start("b", &ep, &child("tok", "10s", &d, "started-b", &user));
    b.wait_log("role=\"standby\"", LONG);
    assert!(
        !a.log().contains("cannot write our tree marker"),
        "{}",
        a.log()
    );
    std::thread::sleep(Duration::from_secs(6));
    let root = ["--user", "root:root-secret-pw"];
    let k = out(etcdctl(&ep).args(root).args([
        "get",
        "--prefix",
        "/singleton-exec/tok/",
        "--keys-only",
        "--sort-by=CREATE",
        "--order=ASCEND",
    ]));
    let a_key = k.lines().next().unwrap().to_owned();
    let t = Instant::now();
    out(etcdctl(&ep)
        .args(root)
        .args(["lease", "revoke", a_key.rsplit('/').next().unwrap()]));
    b.wait_stdout("started-b", LONG);
    eprintln!("b started {:?} after the revoke", t.elapsed());
    assert!(b.try_status().is_none(), "b exited: {}", b.log());
    report("tokens", dir.path(), &a, &b);
    // a queues again; idle; then SIGTERM to b: its release txn and revokes with an old token.
    wait_log_count(&a, "role=\"standby\"", 2);
    std::thread::sleep(Duration::from_secs(6));
    let t = Instant::now();
    b.signal(libc::SIGTERM);
    let code = b.wait(LONG);
    a.wait_stdout("started-a\nstarted-a", LONG);
    eprintln!("b exited {code}; a started {:?} after SIGTERM", t.elapsed());
    eprintln!(
        "b release: {}",
        b.log()
            .lines()
            .filter(|l| l.contains("released") || l.contains("revok"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn wait_log_count(r: &Replica, needle: &str, n: usize) {
    crate::support::wait_for(LONG, || r.log().matches(needle).count() >= n, || r.log());
}

/// A role that may write `PREFIX/NAME@tree/` but not read it: the standby learns it only at
/// the handoff.
#[test]
fn write_only_tree_permission() {
    use etcd_client::{Client, Permission};
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    crate::support::runtime()
        .block_on(async {
            let mut c = Client::connect([etcd.endpoint(0)], None).await?;
            c.user_add("root", "root-secret-pw", None).await?;
            c.user_grant_role("root", "root").await?;
            c.role_add("app").await?;
            for p in [
                "/singleton-exec/wo/",
                "/singleton-exec/wo@resign",
                "/singleton-exec/wo@slots/",
            ] {
                c.role_grant_permission("app", Permission::read_write(p).with_prefix())
                    .await?;
            }
            c.role_grant_permission(
                "app",
                Permission::write("/singleton-exec/wo@tree/").with_prefix(),
            )
            .await?;
            c.user_add("app", "app-secret-pw", None).await?;
            c.user_grant_role("app", "app").await?;
            c.auth_enable().await?;
            Ok::<(), etcd_client::Error>(())
        })
        .expect("auth");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_string_lossy().into_owned();
    let user = ["--user", "app:app-secret-pw"];
    let mut a = Replica::start("a", &ep, &child("wo", "5s", &d, "started-a", &user));
    a.wait_stdout("started-a", LONG);
    let mut b = Replica::start("b", &ep, &child("wo", "5s", &d, "started-b", &user));
    b.wait_log("role=\"standby\"", LONG);
    a.signal(libc::SIGKILL);
    let _ = a.wait(LONG);
    let t = Instant::now();
    while !(b.stdout().contains("started-b") || b.try_status().is_some()) {
        assert!(t.elapsed() < LONG, "{}", b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "b: status {:?}\n{}",
        b.try_status(),
        b.log()
            .lines()
            .filter(|l| !l.contains("acknowledged"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(b.stdout().contains("started-b"), "b did not take over");
}

/// `del --prefix PREFIX/NAME` (no slash) with a connected leader whose child takes a while to
/// die (768 MiB ballast), rounds until an overlap shows.
#[test]
fn del_prefix_without_slash_heavy_connected() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let _reap = crate::support::worker::Reap(dir.path().to_owned());
    let heavy = |name: &str| {
        let script = "mkdir -p \"$1\"; flock -n \"$1/lock\" true || echo $$ >> \"$1/lock-held\"; \
             exec python3 \"$2\" \"$1\" --ballast-mib 768";
        let mut args: Vec<String> = [
            "--election",
            "delheavy",
            "--ttl",
            "5s",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ]
        .map(String::from)
        .to_vec();
        args.push(dir.path().to_string_lossy().into());
        args.push(
            crate::support::program("worker.py")
                .to_string_lossy()
                .into(),
        );
        Replica::start(name, &ep, &args)
    };
    let a = heavy("a");
    crate::support::worker::wait_starts(dir.path(), 1, LONG, || a.log());
    let b = heavy("b");
    b.wait_log("role=\"standby\"", LONG);
    for round in 1..=4 {
        let leader = crate::support::worker::starts(dir.path())
            .last()
            .cloned()
            .unwrap();
        let file = dir.path().join(format!("{}.ballast", leader.pid));
        crate::support::wait_for(LONG, || file.exists(), || "ballast".into());
        let t = Instant::now();
        while keys(&ep, "/singleton-exec/delheavy/").len() < 2 {
            assert!(t.elapsed() < LONG, "no standby");
            std::thread::sleep(Duration::from_millis(20));
        }
        out(etcdctl(&ep).args(["del", "--prefix", "/singleton-exec/delheavy"]));
        crate::support::worker::wait_starts(dir.path(), round + 1, LONG, || a.log() + &b.log());
        let held = lock_held(dir.path());
        eprintln!("round {round}: lock-held = {held:?}");
        if !held.is_empty() {
            panic!("two at once in round {round}");
        }
    }
}
