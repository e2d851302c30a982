//! TLS and authentication against a real etcd, and bad input that must fail cleanly: a clear
//! error, the documented exit code, no child left behind, no secret in any output. A refusal by
//! one endpoint is not a refusal by etcd (the next endpoint is tried; exit 3 only when all refuse),
//! and an expired auth token is renewed, not fatal. Certificates are made in the test with rcgen.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::support::etcd::{etcdctl, Options};
use crate::support::worker::{assert_no_overlap, noisy, starts, wait_starts, Reap};
use crate::support::{alive, args, hold, program, runtime, wait_for, EtcdCluster, Proc, Replica};

const LONG: Duration = Duration::from_secs(30);

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// ca.pem (trusted by the replica) with server.pem/key (etcd) and client.pem/key; other-ca.pem,
    /// an unrelated CA, with bad-server.pem/key for the same names, which the replica cannot verify.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.self_signed(&key).unwrap();
            (cert, Issuer::new(p, key))
        };
        let leaf = |issuer: &Issuer<'_, KeyPair>,
                    names: Vec<String>,
                    cn: &str,
                    usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            (
                p.signed_by(&key, issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let names = || vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let (ca_cert, issuer) = ca("singleton-exec test CA");
        write("ca.pem", ca_cert.pem());
        let (other_cert, other) = ca("some other CA");
        write("other-ca.pem", other_cert.pem());
        let (c, k) = leaf(
            &issuer,
            names(),
            "etcd",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("server.pem", c);
        write("server.key", k);
        let (c, k) = leaf(
            &other,
            names(),
            "impostor",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("bad-server.pem", c);
        write("bad-server.key", k);
        let (c, k) = leaf(
            &issuer,
            vec![],
            "replica",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        write("client.pem", c);
        write("client.key", k);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A TLS endpoint presenting the certificate of the other CA: `https://127.0.0.1:PORT`.
    fn bad_endpoint(&self) -> (Proc, String) {
        let mut cmd = Command::new("python3");
        cmd.arg(program("tls_server.py"))
            .arg(self.path("bad-server.pem"))
            .arg(self.path("bad-server.key"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut p = Proc::spawn(&mut cmd);
        let mut line = String::new();
        let mut out = p.0.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let port: u16 = line.trim().parse().expect("tls_server.py port");
        (p, format!("https://127.0.0.1:{port}"))
    }
}

fn worker_args(dir: &Path) -> Vec<String> {
    vec![
        "--".into(),
        "python3".into(),
        program("worker.py").to_string_lossy().into(),
        dir.to_string_lossy().into(),
    ]
}

fn with(args: &[&str], dir: &Path) -> Vec<String> {
    args.iter()
        .map(|s| s.to_string())
        .chain(worker_args(dir))
        .collect()
}

fn child_started(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .contains("start ")
}

#[test]
fn tls_with_the_right_ca_leads_and_a_wrong_ca_or_no_client_cert_is_refused() {
    let pki = Pki::new();
    let etcd = EtcdCluster::start_with(
        1,
        Options {
            tls: Some((
                pki.path("server.pem"),
                pki.path("server.key"),
                pki.path("ca.pem"),
            )),
        },
    );
    let ep = etcd.endpoints();
    let (ca, cert, key, other) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
        pki.path("other-ca.pem"),
    );
    let (ca, cert, key, other) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        other.to_str().unwrap(),
    );

    let d = tempfile::tempdir().unwrap();
    let mut good = Replica::start(
        "good",
        &ep,
        &with(
            &[
                "--election",
                "tls",
                "--cacert",
                ca,
                "--cert",
                cert,
                "--key",
                key,
            ],
            d.path(),
        ),
    );
    wait_for(LONG, || child_started(d.path()), || good.log());
    good.signal(libc::SIGTERM);
    assert_eq!(good.wait(LONG), 0);

    let d = tempfile::tempdir().unwrap();
    let mut wrong_ca = Replica::start(
        "badca",
        &ep,
        &with(
            &[
                "--election",
                "tls",
                "--acquire-timeout",
                "20s",
                "--cacert",
                other,
                "--cert",
                cert,
                "--key",
                key,
            ],
            d.path(),
        ),
    );
    assert_eq!(
        wrong_ca.wait(LONG),
        3,
        "a server certificate we cannot verify is refused for good:\n{}",
        wrong_ca.log()
    );
    assert!(
        wrong_ca.log().to_lowercase().contains("certificate"),
        "{}",
        wrong_ca.log()
    );
    assert!(!child_started(d.path()));

    let d = tempfile::tempdir().unwrap();
    let mut no_client_cert = Replica::start(
        "nocert",
        &ep,
        &with(
            &[
                "--election",
                "tls",
                "--acquire-timeout",
                "20s",
                "--cacert",
                ca,
            ],
            d.path(),
        ),
    );
    assert_eq!(
        no_client_cert.wait(LONG),
        3,
        "etcd's certificate alert is final:\n{}",
        no_client_cert.log()
    );
    assert!(!child_started(d.path()));
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

/// A replica etcd refuses for good: exit 3, the reason in the log, no child, no secret logged.
fn refused(name: &str, endpoints: &str, args: &[&str], reason: &str, secret: &str) {
    let d = tempfile::tempdir().unwrap();
    let mut r = Replica::start(name, endpoints, &with(args, d.path()));
    assert_eq!(r.wait(LONG), 3, "{}", r.log());
    assert!(r.log().contains(reason), "{}", r.log());
    assert!(!r.log().contains(secret), "secret in the log");
    assert!(!child_started(d.path()));
}

#[test]
fn auth_with_a_role_limited_to_the_election_prefix() {
    let etcd = EtcdCluster::single();
    runtime()
        .block_on(enable_auth(&etcd.endpoint(0), "/singleton-exec/authz/"))
        .expect("enable auth");
    let ep = etcd.endpoints();

    let d = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(crate::support::bin());
    // The endpoint twice: a refusal counted against it would show as a switch to "the next".
    let twice = format!("{ep},{ep}");
    cmd.args(["--endpoints", &twice, "--id", "app", "--user", "app"])
        .args(with(
            &[
                "--election",
                "authz",
                // The role has no access to PREFIX/authz@health: health results are not shown,
                // and nothing else changes.
                "--health-cmd",
                "true",
                "--health-interval",
                "200ms",
                "--health-timeout",
                "200ms",
            ],
            d.path(),
        ));
    cmd.env("SINGLETON_EXEC_PASSWORD", "app-secret-pw");
    let mut good = Replica::spawn("app", cmd);
    wait_for(LONG, || child_started(d.path()), || good.log());
    good.wait_log("cannot show health results in etcd", LONG);
    // A few more checks pass without another write attempt or an endpoint switch.
    wait_for(
        LONG,
        || good.log().matches("health check passed").count() >= 5,
        || good.log(),
    );
    assert!(!good.log().contains("rejected us"), "{}", good.log());
    assert!(
        !good.log().contains("switching etcd endpoint"),
        "{}",
        good.log()
    );
    good.signal(libc::SIGTERM);
    assert_eq!(good.wait(LONG), 0, "{}", good.log());
    assert!(!good.log().contains("app-secret-pw"), "password in the log");

    refused(
        "badpw",
        &ep,
        &[
            "--election",
            "authz",
            "--user",
            "app",
            "--password",
            "wrong-secret-pw",
            "--acquire-timeout",
            "20s",
        ],
        "authentication failed",
        "wrong-secret-pw",
    );

    refused(
        "noperm",
        &ep,
        &[
            "--election",
            "elsewhere",
            "--user",
            "app:app-secret-pw",
            "--acquire-timeout",
            "20s",
        ],
        "permission denied",
        "app-secret-pw",
    );
}

#[test]
fn a_huge_argument_list_reaches_the_child_intact() {
    let etcd = EtcdCluster::single();
    let many: Vec<String> = (0..50_000).map(|i| format!("arg{i}")).collect();
    let mut args: Vec<String> = vec![
        "--election".into(),
        "huge".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        "echo $# ${50000}".into(),
        "sh".into(),
    ];
    args.extend(many);
    let mut r = Replica::start("r", &etcd.endpoints(), &args);
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    assert_eq!(r.stdout().trim(), "50000 arg49999");
}

#[test]
fn odd_election_names_are_refused_before_touching_etcd() {
    for name in ["a/b", "../x", "sp ace", "tab\there", "nul\u{1}", "é"] {
        let out = std::process::Command::new(crate::support::bin())
            .args([
                "--endpoints",
                "http://127.0.0.1:1",
                "--election",
                name,
                "--",
                "true",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("election name"),
            "{name:?}"
        );
    }
}

/// Promise: "SIGTERM to the leader: ... a standby starts within milliseconds", also after the
/// replicas sat idle longer than etcd's auth token TTL. "invalid auth token" is retryable
/// (authenticate again), not a refusal: the leader's revoke must succeed and the standby must take
/// over at once and keep running, not exit 3.
#[test]
fn expired_auth_tokens_are_renewed_not_fatal() {
    let etcd = EtcdCluster::start_with_args(1, Options::default(), &["--auth-token-ttl", "2"]);
    let ep = etcd.endpoints();
    crate::support::runtime()
        .block_on(enable_auth(&etcd.endpoint(0), "/singleton-exec/tokens/"))
        .expect("enable auth");
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let opts = [
        "--election",
        "tokens",
        "--ttl",
        "10s",
        "--user",
        "app:app-secret-pw",
    ];
    let mut a = Replica::start("a", &ep, &args(&opts, &noisy(dir.path(), &[])));
    wait_starts(dir.path(), 1, LONG, || a.log());
    let mut b = Replica::start("b", &ep, &args(&opts, &noisy(dir.path(), &[])));
    b.wait_log("role=\"standby\"", LONG);
    // Idle: both tokens expire (2 s without a unary request).
    std::thread::sleep(Duration::from_secs(7));
    let lease = a
        .log()
        .lines()
        .find(|l| l.contains("child started"))
        .and_then(|l| l.split("lease=").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .expect("a's lease in its log")
        .to_owned();
    let t = Instant::now();
    a.signal(libc::SIGTERM);
    let code = a.wait(LONG);
    // What etcd says of a's lease right after a exited (its TTL is 10 s).
    let (_, left) = etcdctl(
        &ep,
        &[
            "--user",
            "root:root-secret-pw",
            "lease",
            "timetolive",
            &lease,
        ],
    );
    println!("a's lease after a exited: {}", left.trim());
    wait_for(
        Duration::from_secs(3),
        || starts(dir.path()).len() >= 2 || !alive(b.pid()),
        || {
            format!(
                "no takeover within 3 s of SIGTERM to the leader; a:\n{}\nb:\n{}",
                a.log(),
                b.log()
            )
        },
    );
    assert!(
        b.try_status().is_none(),
        "the standby exited ({:?}) {:?} after SIGTERM to the leader instead of taking over:\n{}",
        b.try_status(),
        t.elapsed(),
        b.log()
    );
    hold(
        Duration::from_secs(1),
        || alive(b.pid()),
        || format!("the new leader exited:\n{}", b.log()),
    );
    assert_eq!(code, 0, "{}", a.log());
    if a.log().contains("lease revoked") {
        assert!(
            left.contains("already expired") || left.contains("not found"),
            "a logged \"lease revoked\" but etcd still had the lease after a exited: {left}\n{}",
            a.log()
        );
    }
    assert_no_overlap(dir.path());
}

/// Promise: "one etcd endpoint dies: the next one is used". An endpoint whose certificate we
/// cannot verify (a stale DNS entry, a wrong server) is one bad endpoint, not a refusal by etcd:
/// the replica moves on and leads through the good one. Only when every endpoint rejects us is it
/// exit 3.
#[test]
fn a_tls_rejection_by_one_endpoint_does_not_end_the_replica() {
    let pki = Pki::new();
    // `..Default::default()` keeps this compiling when Options gains fields.
    #[allow(clippy::needless_update)]
    let etcd = EtcdCluster::start_with(
        1,
        Options {
            tls: Some((
                pki.path("server.pem"),
                pki.path("server.key"),
                pki.path("ca.pem"),
            )),
            ..Default::default()
        },
    );
    let (_bad1, bad1) = pki.bad_endpoint();
    let (_bad2, bad2) = pki.bad_endpoint();
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let tls = [
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];

    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut opts = vec!["--election", "tlsmix", "--acquire-timeout", "20s"];
    opts.extend(tls);
    let mut good = Replica::start(
        "mixed",
        &format!("{bad1},{}", etcd.endpoints()),
        &args(&opts, &noisy(dir.path(), &[])),
    );
    wait_for(
        LONG,
        || !starts(dir.path()).is_empty() || !alive(good.pid()),
        || good.log(),
    );
    assert!(
        good.try_status().is_none(),
        "the replica gave up (exit {:?}) because the first endpoint's certificate was rejected, \
         though the second is good:\n{}",
        good.try_status(),
        good.log()
    );
    good.signal(libc::SIGTERM);
    assert_eq!(good.wait(LONG), 0, "{}", good.log());

    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let mut bad = Replica::start(
        "allbad",
        &format!("{bad1},{bad2}"),
        &args(&opts, &noisy(dir.path(), &[])),
    );
    assert_eq!(
        bad.wait(LONG),
        3,
        "every endpoint rejected: exit 3:\n{}",
        bad.log()
    );
    assert!(starts(dir.path()).is_empty());
}
