//! The shipped images, as users run them: one etcd container and three replicas of the example app
//! (`ENTRYPOINT ["singleton-exec", "--", "myapp"]`) on a user-defined network. Every image is built
//! FROM scratch from what this machine compiles or has installed (`scripts/build-images`).
//!
//! The replicas run as the Kubernetes example's pods do, as far as Docker can say it: as the image's
//! non-root user (UID 65532), with a read-only root filesystem, every capability dropped and
//! no-new-privileges. PID 1's duties hold there too: signals are forwarded to the app, orphans
//! re-parented to PID 1 are reaped, and the container exits with the app's status.
//!
//! Without a Docker daemon this test prints a loud "skipped" line, except under `CI=true`, where a
//! missing daemon is a failure.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::wait_for;

fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

fn must(args: &[&str]) -> String {
    let (ok, out) = docker(args);
    assert!(ok, "docker {}: {out}", args.join(" "));
    out
}

/// Removes every container and the network of this test, also on panic.
struct Cleanup {
    tag: String,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = docker(&["network", "rm", &self.tag]);
    }
}

/// The image's user, and what `docker run` adds to match the Kubernetes example's securityContext
/// (readOnlyRootFilesystem, capabilities drop ALL, allowPrivilegeEscalation false).
const APP_UID: &str = "65532";
const HARDENED: &[&str] = &[
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

/// A line of /proc/PID/status inside a container (busybox's cat, run as the image's user).
fn proc_status(container: &str, pid: &str, field: &str) -> Option<String> {
    let (ok, out) = docker(&[
        "exec",
        container,
        "busybox",
        "cat",
        &format!("/proc/{pid}/status"),
    ]);
    ok.then(|| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    })?
}

/// (date, seconds of day) of a `docker logs -t` line, comparable across containers of this host.
fn when(line: &str) -> (String, f64) {
    let ts = line.split_whitespace().next().unwrap_or("");
    let (date, time) = ts.split_once('T').unwrap_or(("", "0:0:0Z"));
    let f: Vec<f64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (date.to_owned(), f[0] * 3600.0 + f[1] * 60.0 + f[2])
}

fn log_line(container: &str, needle: &str) -> Option<String> {
    let (_, out) = docker(&["logs", "-t", container]);
    out.lines().find(|l| l.contains(needle)).map(str::to_owned)
}

#[test]
fn containers_stop_kill_disconnect_restart() {
    if !docker(&["info"]).0 {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but no Docker daemon is reachable: the container test cannot run");
        }
        println!("SKIPPED containers_stop_kill_disconnect_restart: no Docker daemon reachable");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let have = |img: &str| docker(&["image", "inspect", img]).0;
    if !(have("singleton-exec:latest")
        && have("singleton-exec-example:latest")
        && have("singleton-exec-etcd:latest"))
    {
        let out = Command::new("bash")
            .arg(format!("{root}/scripts/build-images"))
            .output()
            .expect("scripts/build-images");
        assert!(
            out.status.success(),
            "scripts/build-images failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let tag = format!("se-test-{}", std::process::id());
    let etcd = format!("{tag}-etcd");
    let apps: Vec<String> = (0..3).map(|i| format!("{tag}-app{i}")).collect();
    let _cleanup = Cleanup {
        tag: tag.clone(),
        containers: std::iter::once(etcd.clone()).chain(apps.clone()).collect(),
    };
    must(&["network", "create", &tag]);
    must(&[
        "run",
        "-d",
        "--name",
        &etcd,
        "--network",
        &tag,
        "singleton-exec-etcd:latest",
        "--name",
        "etcd",
        "--data-dir",
        "/var/lib/etcd/data",
        "--listen-client-urls",
        "http://0.0.0.0:2379",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
        "--initial-cluster",
        "etcd=http://127.0.0.1:2380",
    ]);
    // By address, not name: a glibc crt-static build (the fallback when musl is unavailable) has no
    // NSS in a scratch image to resolve container names.
    let ip = must(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &etcd,
    ]);
    let endpoints = format!("SINGLETON_EXEC_ENDPOINTS=http://{}:2379", ip.trim());
    for (i, name) in apps.iter().enumerate() {
        let id = format!("SINGLETON_EXEC_ID=app{i}");
        let mut run = vec!["run", "-d", "--name", name, "--network", &tag];
        run.extend_from_slice(HARDENED);
        run.extend_from_slice(&[
            "-e",
            &endpoints,
            "-e",
            &id,
            "-e",
            "SINGLETON_EXEC_TTL=3s",
            "-e",
            "SINGLETON_EXEC_GRACE=1s",
            "singleton-exec-example:latest",
        ]);
        must(&run);
    }
    // Who leads, asked through any running replica's own binary.
    let leader = || -> Option<usize> {
        for a in &apps {
            let (ok, out) = docker(&["exec", a, "singleton-exec", "status", "--election", "myapp"]);
            if ok {
                let id = out
                    .lines()
                    .find_map(|l| l.strip_prefix("leader:"))?
                    .trim()
                    .to_owned();
                return id.strip_prefix("app")?.parse().ok();
            }
        }
        None
    };
    let candidates = || -> i64 {
        apps.iter()
            .find_map(|a| {
                let (ok, out) =
                    docker(&["exec", a, "singleton-exec", "status", "--election", "myapp"]);
                ok.then(|| {
                    out.lines()
                        .find_map(|l| l.strip_prefix("candidates:"))
                        .and_then(|n| n.trim().parse().ok())
                })?
            })
            .unwrap_or(0)
    };
    let long = Duration::from_secs(60);
    wait_for(
        long,
        || candidates() == 3,
        || "three replicas never queued".into(),
    );
    let first = leader().expect("a leader");

    // Not root, and PID 1's duties hold without privileges.
    for a in &apps {
        let uid = proc_status(a, "1", "Uid").expect("PID 1's status");
        assert_eq!(
            uid,
            format!("{APP_UID} {APP_UID} {APP_UID} {APP_UID}"),
            "{a}: PID 1 runs as the image's user"
        );
        let caps = proc_status(a, "1", "CapEff").expect("PID 1's capabilities");
        assert_eq!(caps, "0000000000000000", "{a}: no capabilities");
        assert_eq!(proc_status(a, "1", "NoNewPrivs").as_deref(), Some("1"));
    }
    wait_for(
        Duration::from_secs(10),
        || log_line(&apps[first], "started revision").is_some(),
        || "the leader's app did not start".into(),
    );
    // A signal for the app reaches it (myapp says so on SIGHUP).
    must(&["kill", "-s", "HUP", &apps[first]]);
    wait_for(
        Duration::from_secs(10),
        || log_line(&apps[first], "got SIGHUP").is_some(),
        || "SIGHUP to PID 1 did not reach the app".into(),
    );
    // An orphan (its shell exits at once) is re-parented to PID 1, which reaps it when it exits:
    // no zombie stays in /proc.
    let orphan = must(&["exec", &apps[first], "sh", "-c", "sleep 1 & echo $!"]);
    let orphan = orphan.trim();
    assert!(orphan.parse::<u32>().is_ok(), "{orphan}");
    wait_for(
        Duration::from_secs(10),
        || proc_status(&apps[first], orphan, "State").is_none(),
        || {
            format!(
                "orphan {orphan} not reaped: {:?}",
                proc_status(&apps[first], orphan, "State")
            )
        },
    );
    println!("as UID {APP_UID}, read-only, no capabilities: SIGHUP forwarded, orphan reaped");

    // docker stop: SIGTERM to PID 1; the app stops, the lease is revoked, a standby takes over at once.
    let t = Instant::now();
    must(&["stop", "-t", "10", &apps[first]]);
    let stop_took = t.elapsed();
    let code = must(&["inspect", "-f", "{{.State.ExitCode}}", &apps[first]]);
    assert_eq!(
        code.trim(),
        "0",
        "myapp exits 0 on SIGTERM, and so does the container"
    );
    assert!(
        stop_took < Duration::from_secs(8),
        "docker stop took {stop_took:?}: more than grace + revoke"
    );
    let mut second = None;
    wait_for(
        Duration::from_secs(5),
        || {
            second = leader().filter(|&l| l != first);
            second.is_some()
        },
        || "no takeover after docker stop".into(),
    );
    let second = second.unwrap();
    println!(
        "docker stop: {:.2} s, exit 0, takeover within {:.2} s",
        stop_took.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );

    // docker restart: the stopped replica comes back as a standby.
    must(&["restart", &apps[first]]);
    wait_for(
        long,
        || candidates() == 3,
        || "the restarted replica did not rejoin".into(),
    );
    assert_eq!(
        leader(),
        Some(second),
        "a rejoining replica waits as standby"
    );

    // docker kill: SIGKILL of PID 1 takes the app with it; takeover after the TTL.
    let t = Instant::now();
    must(&["kill", &apps[second]]);
    let mut third = None;
    wait_for(
        Duration::from_secs(20),
        || {
            third = leader().filter(|&l| l != second);
            third.is_some()
        },
        || "no takeover after docker kill".into(),
    );
    let took = t.elapsed();
    println!(
        "docker kill: takeover after {:.2} s (TTL 3s)",
        took.as_secs_f64()
    );
    assert!(
        took >= Duration::from_secs(2),
        "took over before the lease could expire: {took:?}"
    );
    let third = third.unwrap();
    must(&["start", &apps[second]]);

    // docker network disconnect: the cut-off leader stops its app before another starts one.
    wait_for(
        long,
        || candidates() == 3,
        || "not all replicas queued before the partition".into(),
    );
    must(&["network", "disconnect", &tag, &apps[third]]);
    let mut fourth = None;
    wait_for(
        Duration::from_secs(30),
        || {
            fourth = leader().filter(|&l| l != third);
            fourth.is_some()
        },
        || "no takeover after disconnect".into(),
    );
    let fourth = fourth.unwrap();
    let mut new_start = None;
    wait_for(
        Duration::from_secs(10),
        || {
            new_start = log_line(&apps[fourth], "started revision");
            new_start.is_some()
        },
        || "new leader's app did not start".into(),
    );
    // The newest start line of the new leader, and the stop line of the cut-off one.
    let (_, out) = docker(&["logs", "-t", &apps[fourth]]);
    let new_start = out
        .lines()
        .rfind(|l| l.contains("started revision"))
        .unwrap()
        .to_owned();
    let stopped =
        log_line(&apps[third], "stopping").expect("the cut-off leader's app got the stop signal");
    assert!(
        when(&stopped) < when(&new_start),
        "partitioned leader still ran when the new one started:\n{stopped}\n{new_start}"
    );
    println!(
        "network disconnect: old app stopped at {:?}, new app started at {:?}",
        when(&stopped),
        when(&new_start)
    );
    must(&["network", "connect", &tag, &apps[third]]);
    wait_for(
        long,
        || candidates() == 3,
        || "the reconnected replica did not rejoin as standby".into(),
    );
    assert_eq!(leader(), Some(fourth));

    // The app's exit status is the container's: myapp does not handle SIGUSR1 and dies of it.
    must(&["kill", "-s", "USR1", &apps[fourth]]);
    wait_for(
        Duration::from_secs(10),
        || must(&["inspect", "-f", "{{.State.Running}}", &apps[fourth]]).trim() == "false",
        || "the container did not exit after its app died".into(),
    );
    let code = must(&["inspect", "-f", "{{.State.ExitCode}}", &apps[fourth]]);
    assert_eq!(code.trim(), "138", "128 + SIGUSR1");
    wait_for(
        Duration::from_secs(10),
        || leader().is_some_and(|l| l != fourth),
        || "no takeover after the app died".into(),
    );
}
