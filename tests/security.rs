//! TLS and authentication against a real etcd, and bad input that must fail cleanly: a clear
//! error, the documented exit code, no child left behind, no secret in any output.
//! Certificates are made in the test with rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::support::etcd::Options;
use crate::support::{program, runtime, wait_for, EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(30);

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and an
    /// unrelated CA.
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
        let (ca_cert, issuer) = ca("singleton-exec test CA");
        write("ca.pem", ca_cert.pem());
        let (other_ca, _) = ca("some other CA");
        write("other-ca.pem", other_ca.pem());
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            (
                p.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (c, k) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "etcd",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write("server.pem", c);
        write("server.key", k);
        let (c, k) = leaf(vec![], "replica", ExtendedKeyUsagePurpose::ClientAuth);
        write("client.pem", c);
        write("client.key", k);
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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

async fn enable_auth(endpoint: &str) -> Result<(), etcd_client::Error> {
    use etcd_client::{Client, Permission};
    let mut c = Client::connect([endpoint], None).await?;
    c.user_add("root", "root-secret-pw", None).await?;
    c.user_grant_role("root", "root").await?;
    c.role_add("app").await?;
    c.role_grant_permission(
        "app",
        Permission::read_write("/singleton-exec/authz/").with_prefix(),
    )
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
        .block_on(enable_auth(&etcd.endpoint(0)))
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
