//! Permanent refusals end the replica at once instead of being retried as "etcd unavailable":
//! input that can never work is a usage error (exit 2) before any etcd call, and an answer etcd
//! will give again however often it is asked is a refusal (exit 3) once every endpoint has given
//! it. Either way: one clear line naming the reason, and no child started.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{EtcdCluster, Replica};

/// Far above what a refusal takes (a usage error: milliseconds; a refusal: one round over the
/// endpoints, about 2 s plus the dial time), far below "retried for ever".
const BOUND: Duration = Duration::from_secs(20);

/// `ARGS -- sh -c 'touch DIR/started; sleep 60'`: the file shows whether a child ever ran.
fn with_child(args: &[&str], dir: &Path) -> Vec<String> {
    let script = format!("touch {}/started; sleep 60", dir.display());
    let child = ["--", "sh", "-c", &script];
    args.iter().chain(&child).map(|s| s.to_string()).collect()
}

/// Runs a replica that must end by itself within [`BOUND`] with `code`, without a child; returns
/// its log and how long it took.
fn ends_with(code: i32, name: &str, endpoints: &str, args: &[&str]) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut r = Replica::start(name, endpoints, &with_child(args, dir.path()));
    let got = r.wait(BOUND);
    let took = started.elapsed();
    let log = r.log();
    assert_eq!(got, code, "{name}: {args:?}:\n{log}");
    assert!(!dir.path().join("started").exists(), "{name}: a child ran");
    (log, took)
}

/// `--endpoints http://127.0.0.1:99999` dials port 80, `ftp://` is looked up as a host name,
/// `--ttl` above etcd's maximum lease TTL is refused by every member, and a zero `--dial-timeout`
/// times every call out: each is a usage error, one line on stderr, before etcd is asked.
#[test]
fn input_that_can_never_work_is_a_usage_error() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let port = ep.rsplit(':').next().unwrap().to_owned();
    let ftp = format!("ftp://127.0.0.1:{port}");
    // (endpoints, options, what the one line says)
    let rows: [(&str, &[&str], &str); 5] = [
        ("http://127.0.0.1:99999", &[], "port 99999"),
        ("http://127.0.0.1:0", &[], "port 0"),
        (&ftp, &[], "ftp"),
        (&ep, &["--ttl", "99999999999s"], "above the limit"),
        (&ep, &["--dial-timeout", "0s"], "--dial-timeout"),
    ];
    for (endpoints, opts, reason) in rows {
        let (log, took) = ends_with(2, "usage", endpoints, opts);
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{endpoints} {opts:?}: one line:\n{log}");
        assert!(lines[0].contains(reason), "{endpoints} {opts:?}: {log}");
        println!("{endpoints} {opts:?}: exit 2 after {took:?}: {}", lines[0]);
    }
}

/// `--user` on an etcd without authentication: every member answers "authentication is not
/// enabled", and will again. Each endpoint is tried in turn (one misconfigured member must not end
/// a replica), then the replica exits 3 with one error line naming etcd's reason.
#[test]
fn credentials_for_an_etcd_without_authentication_are_refused() {
    let etcd = EtcdCluster::start(3);
    let opts = ["--user", "bob:bobs-secret-pw"];
    let (log, took) = ends_with(3, "bob", &etcd.endpoints(), &opts);
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line:\n{log}");
    assert!(errors[0].contains("authentication is not enabled"), "{log}");
    let tried = log.matches("rejected us; trying the next").count();
    assert_eq!(tried, 2, "the other two endpoints are tried first:\n{log}");
    assert!(!log.contains("bobs-secret-pw"), "password in the log");
    println!("exit 3 after {took:?}: {}", errors[0]);
}
