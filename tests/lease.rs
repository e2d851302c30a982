//! The lease and its fail-closed deadline, against a real etcd. Once etcd says the leadership is
//! gone (the leader's key deleted, its lease revoked, a keepalive reply with TTL 0 on a re-opened
//! stream), the child is killed at once, without waiting for --grace. While etcd is only
//! unreachable, the child is dead before the server can expire the lease, whatever else blocks
//! (here a log pipe nobody reads); and an outage shorter than `renew_deadline − 2 × interval` (4 s
//! at the defaults, at any phase) never stops it. Each test's doc comment names the promise (docs/timing.md,
//! docs/failures.md) it attacks.
//!
//! Children are `tests/programs/noisy_worker.py` (worker.py's overlap check, plus stderr noise or
//! ignoring TERM).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::etcd::etcdctl;
use crate::support::procfs::proc_state;
use crate::support::proxy::FaultProxy;
use crate::support::worker::{assert_no_overlap, events, noisy, starts, wait_starts, Reap};
use crate::support::{alive, args, bin, hold, wait_for, EtcdCluster, Proc, Replica};

const LONG: Duration = Duration::from_secs(30);

/// `singleton-exec status`: (exit code, stdout).
fn status(endpoints: &str, election: &str) -> (i32, String) {
    let out = Command::new(bin())
        .args(["status", "--election", election, "--endpoints", endpoints])
        .output()
        .expect("run status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The leader's lease id in hex, from the `lease:` line of `singleton-exec status`.
fn leader_lease(endpoints: &str, election: &str) -> String {
    let (code, out) = status(endpoints, election);
    assert_eq!(code, 0, "status: {out}");
    out.lines()
        .find_map(|l| l.strip_prefix("lease:"))
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| panic!("no lease line in status output:\n{out}"))
}

// ---------------------------------------------------------------------------------------------
// Leadership known lost: the child is killed at once
// ---------------------------------------------------------------------------------------------

enum Loss {
    DeleteKeys,
    RevokeLease,
}

/// A leader whose child ignores SIGTERM (grace 8 s) learns from etcd that its leadership is gone;
/// the old child must be dead well before the grace, a new child starts, no overlap.
fn known_loss_kills_at_once(loss: Loss, election: &str) {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let opts = ["--election", election, "--ttl", "20s", "--grace", "8s"];
    let child = noisy(dir.path(), &["--ignore-term"]);
    let a = Replica::start("a", &ep, &args(&opts, &child));
    wait_starts(dir.path(), 1, LONG, || a.log());
    let b = Replica::start("b", &ep, &args(&opts, &child));
    b.wait_log("role=\"standby\"", LONG);
    let old = starts(dir.path())[0].clone();
    let what = match loss {
        Loss::DeleteKeys => {
            let prefix = format!("/singleton-exec/{election}/");
            let (code, out) = etcdctl(&ep, &["del", "--prefix", &prefix]);
            assert_eq!(code, 0, "{out}");
            "the election's keys were deleted"
        }
        Loss::RevokeLease => {
            let lease = leader_lease(&ep, election);
            let (code, out) = etcdctl(&ep, &["lease", "revoke", &lease]);
            assert_eq!(code, 0, "{out}");
            "the leader's lease was revoked"
        }
    };
    let t = Instant::now();
    wait_for(
        Duration::from_secs(3),
        || !alive(old.pid),
        || {
            format!(
                "{what}, but the old child (ignores SIGTERM) is still alive {:?} later: it must get \
                 SIGKILL at once, not after the 8 s grace; a's log:\n{}",
                t.elapsed(),
                a.log()
            )
        },
    );
    wait_starts(dir.path(), 2, LONG, || {
        format!("a:\n{}\nb:\n{}", a.log(), b.log())
    });
    assert_no_overlap(dir.path());
}

/// Promise: "etcd reports the lease gone, or our key is deleted: the child is stopped at once",
/// i.e. SIGKILL without waiting for --grace: the leadership is already gone.
#[test]
fn deleted_leader_key_kills_the_child_at_once() {
    known_loss_kills_at_once(Loss::DeleteKeys, "lostdel");
}

/// As above, for a lease revoked behind the leader's back (`etcdctl lease revoke`).
#[test]
fn revoked_lease_kills_the_child_at_once() {
    known_loss_kills_at_once(Loss::RevokeLease, "lostrevoke");
}

/// Promise: "etcd reports the lease gone: the child is stopped at once". A lease revoked while the
/// leader was cut off is reported as a keepalive reply with TTL 0 when the stream is re-opened
/// (etcd-client turns it into an error there): that is a lost lease, not a failure to retry until
/// the renew deadline. TTL 20 s with keepalives every 1 s: the renew deadline is 12 s after the
/// last acknowledged keepalive, the re-opened stream answers about 3 s after the cut.
#[test]
fn a_ttl_0_reply_on_a_reopened_keepalive_stream_is_a_lost_lease() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let a = Replica::start(
        "a",
        &proxy.url,
        &args(
            &[
                "--election",
                "ttl0",
                "--ttl",
                "20s",
                "--keepalive-interval",
                "1s",
            ],
            &noisy(dir.path(), &[]),
        ),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let old = starts(dir.path())[0].clone();
    let lease = leader_lease(&ep, "ttl0");
    let cut = Instant::now();
    proxy.cut();
    let (code, out) = etcdctl(&ep, &["lease", "revoke", &lease]);
    assert_eq!(code, 0, "{out}");
    // Long enough for one keepalive to be lost, far shorter than the renew deadline.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(cut.elapsed()));
    proxy.heal();
    wait_for(
        Duration::from_secs(5).saturating_sub(cut.elapsed()),
        || !alive(old.pid),
        || {
            format!(
                "the lease was revoked and the proxy healed, yet the child still runs {:?} after \
                 the cut (the renew deadline is 12 s after the last ack); log:\n{}",
                cut.elapsed(),
                a.log()
            )
        },
    );
    wait_starts(dir.path(), 2, LONG, || {
        format!("a did not lead again:\n{}", a.log())
    });
    assert_no_overlap(dir.path());
}

// ---------------------------------------------------------------------------------------------
// etcd unreachable: the deadline holds, a tolerated outage is survived
// ---------------------------------------------------------------------------------------------

/// Promise: the child is dead before the lease can expire, whatever else happens. Here the
/// supervisor's stderr is a pipe nobody reads (a stuck log collector) and the child fills it; then
/// the leader is cut off from etcd. Logging must not block the process thread: the old child is
/// dead before the standby's starts.
#[test]
fn a_stalled_log_pipe_does_not_stop_the_fail_closed_deadline() {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let fifo = dir.path().join("stderr.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Held open and never read.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let opts = [
        "--election",
        "stall",
        "--ttl",
        "3s",
        "--grace",
        "1s",
        "--dial-timeout",
        "1s",
    ];
    let mut cmd = Command::new(bin());
    cmd.args(["--endpoints", &proxy.url, "--id", "a"])
        .args(args(&opts, &noisy(dir.path(), &["--noise", "70000"])))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .env_remove("SINGLETON_EXEC_ENDPOINTS")
        .env("SINGLETON_EXEC_LOG", "singleton_exec=debug");
    let a = Proc::spawn(&mut cmd);
    drop(cmd);
    wait_starts(dir.path(), 1, LONG, || "a does not lead".into());
    let old = starts(dir.path())[0].clone();
    let pending = || {
        let mut n: libc::c_int = 0;
        unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut n) };
        n
    };
    wait_for(
        LONG,
        || pending() >= 60_000,
        || format!("the pipe did not fill: {} bytes", pending()),
    );
    let b = Replica::start(
        "b",
        &etcd.endpoints(),
        &args(&opts, &noisy(dir.path(), &[])),
    );
    b.wait_log("role=\"standby\"", LONG);
    proxy.cut();
    wait_starts(dir.path(), 2, LONG, || b.log());
    let evs = events(dir.path());
    let b_start = evs
        .iter()
        .find(|e| e.kind == "start" && e.id == "b")
        .expect("b's start");
    assert_eq!(
        b_start.overlap,
        0,
        "b's child started while a's child (pid {}, a's supervisor {} is {:?}) was alive: a's \
         supervisor is stuck writing to its stalled stderr; events {evs:?}",
        old.pid,
        a.pid(),
        proc_state(a.pid())
    );
    assert!(!alive(old.pid), "a's old child is still alive");
    drop(reader);
}

/// LeaseKeepAlive requests etcd member 0 has received so far (its own Prometheus counter).
fn keepalives_received(etcd: &EtcdCluster) -> u64 {
    etcd.metrics(0)
        .lines()
        .filter(|l| {
            l.starts_with("grpc_server_msg_received_total{")
                && l.contains("grpc_method=\"LeaseKeepAlive\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Promise: "The child survives an etcd outage of 4 s at any phase" at the defaults (TTL 10 s,
/// keepalive every second, attempts bounded by half a second, renew deadline 6 s). The outage is a
/// black hole (the proxy drops every byte, both ways, connections stay open), 3.8 s long, starting
/// 0, 250, 500 and 750 ms after etcd received a keepalive. At 0 ms the reply to that keepalive is
/// lost too, so the last acknowledged one is a whole interval old: the worst case of the timing
/// model (`renew_deadline − 2 × interval` = 4 s). The child must never be stopped.
#[test]
fn the_defaults_tolerate_a_four_second_outage_at_any_phase() {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let a = Replica::start(
        "a",
        &proxy.url,
        &args(&["--election", "outage"], &noisy(dir.path(), &[])),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let child = starts(dir.path())[0].pid;
    let ok =
        || alive(child) && !a.log().contains("role=\"stopping\"") && starts(dir.path()).len() == 1;
    let what = |phase: u64| {
        format!(
            "the child was stopped by an etcd black hole of 3.8 s starting {phase} ms after a \
             keepalive; events {:?}; log:\n{}",
            events(dir.path()),
            a.log()
        )
    };
    for phase in [0u64, 250, 500, 750] {
        // Settled: keepalives flow again after the previous outage.
        hold(Duration::from_millis(2500), ok, || what(phase));
        // The next keepalive to arrive sets the phase.
        let seen = keepalives_received(&etcd);
        let t = Instant::now();
        while keepalives_received(&etcd) == seen {
            assert!(ok(), "{}", what(phase));
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no keepalive reached etcd in 10 s:\n{}",
                a.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if phase > 0 {
            hold(Duration::from_millis(phase), ok, || what(phase));
        }
        proxy.cut();
        hold(Duration::from_millis(3800), ok, || what(phase));
        proxy.heal();
    }
    // Whatever the last outage set in motion happens within its renew deadline.
    hold(Duration::from_secs(3), ok, || what(750));
}

/// Promise: a slow link is not a dead one. At the defaults (TTL 10 s, a keepalive a second,
/// attempts of half a second) every round trip to etcd takes 700 ms here (350 ms each way): longer
/// than one attempt, far shorter than the TTL. The leader must keep its child for well over a
/// renew deadline (6 s), because every keepalive is answered, only late: the link turns slow
/// under streams already open (`at_start` false) or is slow from the start, so that every
/// stream is opened over it (a new connection takes two round trips, 1.4 s).
fn a_slow_link_keeps_the_lease(at_start: bool) {
    let etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let slow = Duration::from_millis(350);
    if at_start {
        proxy.set_delay(slow);
    }
    let a = Replica::start(
        "a",
        &proxy.url,
        &args(&["--election", "slowlink"], &noisy(dir.path(), &[])),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let child = starts(dir.path())[0].pid;
    proxy.set_delay(slow);
    let ok =
        || alive(child) && !a.log().contains("role=\"stopping\"") && starts(dir.path()).len() == 1;
    hold(Duration::from_secs(15), ok, || {
        format!(
            "a 700 ms round trip stopped the child; events {:?}; log:\n{}",
            events(dir.path()),
            a.log()
        )
    });
}

#[test]
fn a_link_that_turns_slow_keeps_the_lease() {
    a_slow_link_keeps_the_lease(false);
}

#[test]
fn a_link_slow_from_the_start_keeps_the_lease() {
    a_slow_link_keeps_the_lease(true);
}

/// Promise: "one lost keepalive never stops the child": its retry starts half an interval after it
/// went out, over a fresh connection (the next endpoint), and is answered within an attempt. Here
/// the rule is nearly tight (TTL 10 s, renew deadline 6 s, a keepalive every 2.9 s: 2 × 2.9 s <
/// 6 s), so the slowest patience is the attempt timeout itself (1.45 s), and the connection
/// the keepalives use is black-holed for good right after one was answered. The second endpoint
/// answers, over a 600 ms round trip (within an attempt). The retry must go to it at once: an
/// attempt spent on the dead connection first leaves it 2 × 2.9 s after the last acknowledged
/// send, 0.2 s before the deadline, too late for any answer.
#[test]
fn a_lost_keepalive_is_retried_over_a_fresh_connection_when_patience_is_at_its_bound() {
    let etcd = EtcdCluster::single();
    let dead = FaultProxy::start(&etcd.endpoint(0));
    let far = FaultProxy::start(&etcd.endpoint(0));
    let endpoints = format!("{},{}", dead.url, far.url);
    let dir = tempfile::tempdir().unwrap();
    let _reap = Reap(dir.path().into());
    let a = Replica::start(
        "a",
        &endpoints,
        &args(
            &["--election", "patience", "--keepalive-interval", "2900ms"],
            &noisy(dir.path(), &[]),
        ),
    );
    wait_starts(dir.path(), 1, LONG, || a.log());
    let child = starts(dir.path())[0].pid;
    far.set_delay(Duration::from_millis(300));
    let ok =
        || alive(child) && !a.log().contains("role=\"stopping\"") && starts(dir.path()).len() == 1;
    let what = || {
        format!(
            "one lost keepalive (its connection black-holed) stopped the child; events {:?}; \
             log:\n{}",
            events(dir.path()),
            a.log()
        )
    };
    hold(Duration::from_secs(1), ok, what);
    // Just after a keepalive was answered, the connection it went over goes dead.
    let seen = keepalives_received(&etcd);
    wait_for(
        Duration::from_secs(10),
        || keepalives_received(&etcd) > seen,
        || format!("no keepalive reached etcd:\n{}", a.log()),
    );
    std::thread::sleep(Duration::from_millis(100));
    dead.cut();
    hold(Duration::from_secs(12), ok, what);
}
