//! Logs an operator reads and greps, measured on real replicas against a real etcd at the default
//! level (info): a leader and a standby through start-up, a 10 s etcd outage, the recovery, a
//! handoff and a stop. The outage is at most a few warnings per replica, not one every 250 ms;
//! no line is longer than 200 characters; no field is empty (`lease=`); every duration is one
//! token (`1.5s`, not `1s 500ms`).

use std::time::Duration;

use crate::support::proxy::FaultProxy;
use crate::support::{alive, hold, parse_duration, replica_with, wait_for, EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(60);
/// How long etcd is down.
const OUTAGE: Duration = Duration::from_secs(10);
/// Warnings one replica may log for the whole run, outage included.
const MAX_WARNINGS: usize = 5;
/// The longest line at the default level.
const MAX_LINE: usize = 200;

/// How etcd goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// etcd is stopped (SIGKILL), then started again on its data: connections are refused.
    Stopped,
    /// A proxy between the replicas and etcd drops every byte, then passes them again: requests
    /// time out.
    BlackHole,
}

/// A replica of election `logs` at the default log level, its child saying `started`.
fn replica(name: &str, endpoints: &str, ttl: Option<&str>) -> Replica {
    let mut opts = vec!["--election", "logs"];
    if let Some(ttl) = ttl {
        opts.extend(["--ttl", ttl]);
    }
    opts.extend(["--", "sh", "-c", "echo started; exec sleep 300"]);
    replica_with(name, endpoints, &opts, |cmd| {
        // Empty: the default filter, as an operator runs it.
        cmd.env("SINGLETON_EXEC_LOG", "");
    })
}

/// The phase lines of a log (`role="..."`).
fn phases(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" role=\"")).collect()
}

/// Whether a replica leads: its last phase line says `leader`, and no end of that leadership
/// follows (at info, that is the "leadership given up" line; the `lost` phase is at debug).
fn leads_now(r: &Replica) -> bool {
    r.log()
        .lines()
        .rfind(|l| l.contains(" role=\"") || l.contains("leadership given up"))
        .is_some_and(|l| l.contains("role=\"leader\""))
}

/// The child's pid in the last leader line.
fn child_pid(r: &Replica) -> Option<i32> {
    phases(&r.log())
        .iter()
        .rev()
        .find(|l| l.contains("role=\"leader\""))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("pid=")?.parse().ok())
}

/// A line's words, a quoted value with its spaces counting as part of its word.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                continue;
            }
            _ => {}
        }
        word.push(c);
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Whether `text` is a duration as the logs write it, with a unit (`500ms`, `1.5s`; not `3`).
fn is_duration(text: &str) -> bool {
    text.ends_with(|c: char| c.is_ascii_alphabetic()) && parse_duration(text).is_some()
}

/// What an operator would trip over in a log: lines over [`MAX_LINE`], empty fields, durations
/// in more than one token. Empty when there is nothing.
fn format_faults(log: &str) -> Vec<String> {
    let mut faults = Vec::new();
    for line in log.lines() {
        let fault = |what: &str| format!("{what}: {line}");
        if line.chars().count() > MAX_LINE {
            faults.push(fault(&format!("over {MAX_LINE} characters")));
        }
        let words = words(line);
        for (i, word) in words.iter().enumerate() {
            let Some((_, value)) = word.split_once('=') else {
                continue;
            };
            if value.is_empty() || value == "\"\"" {
                faults.push(fault("an empty field"));
            }
            let next_is_duration = words.get(i + 1).is_some_and(|n| is_duration(n));
            let inner: Vec<&str> = value.trim_matches('"').split(' ').collect();
            let split_inside = inner.len() > 1 && inner.iter().all(|w| is_duration(w));
            if (is_duration(value) && next_is_duration) || split_inside {
                faults.push(fault("a duration in two tokens"));
            }
        }
    }
    faults
}

/// The checks themselves, on lines as the logs used to be written and as they are now.
#[test]
fn the_format_checks_find_what_they_look_for() {
    let t = "2026-12-02T16:38:37.282722Z  INFO";
    let bad = [
        format!("{t} starting timing=ttl=10s grace=1s 500ms margin=1s"),
        format!("{t} x grace=\"1s 500ms\""),
        format!("{t} stopping: x role=\"stopping\" lease= pid=0"),
        format!("{t} lost: x key=\"\""),
        format!("{t} {}", "x".repeat(MAX_LINE)),
    ];
    for line in &bad {
        assert!(!format_faults(line).is_empty(), "{line}");
    }
    let good = [
        format!("{t} timing ttl=10s keepalive_interval=1s grace=1.5s margin=1s"),
        format!("{t} child exited; restarting (--on-child-exit=restart) status=\"exited with status 1\" restart_in=4s"),
        format!("{t} x reason=\"a = b\" error=\"say \\\"hi\\\" = 1s\" n=3"),
    ];
    for line in &good {
        assert_eq!(format_faults(line), Vec::<String>::new(), "{line}");
    }
}

/// A leader and a standby; etcd gone for [`OUTAGE`], then back; then the leader handed over
/// (SIGTERM) and the new leader stopped (SIGTERM). Returns both logs.
fn outage_then_handoff(outage: Outage, ttl: Option<&str>, leader_survives: bool) -> [String; 2] {
    let mut etcd = EtcdCluster::single();
    let proxy = FaultProxy::start(&etcd.endpoint(0));
    let endpoints = match outage {
        Outage::Stopped => etcd.endpoints(),
        Outage::BlackHole => proxy.url.clone(),
    };
    let a = replica("a", &endpoints, ttl);
    a.wait_stdout("started", LONG);
    let b = replica("b", &endpoints, ttl);
    b.wait_log("role=\"standby\"", LONG);
    let first = child_pid(&a).expect("a's child in its leader line");

    match outage {
        Outage::Stopped => etcd.stop(0),
        Outage::BlackHole => proxy.cut(),
    }
    hold(
        OUTAGE,
        || !leader_survives || alive(first),
        || format!("a's child stopped during the outage:\n{}", a.log()),
    );
    match outage {
        Outage::Stopped => etcd.restart(0),
        Outage::BlackHole => proxy.heal(),
    }
    if leader_survives {
        assert!(alive(first) && leads_now(&a), "{}", a.log());
    } else {
        a.wait_log("renew deadline passed", LONG);
    }

    // Someone leads again (at the default TTL, once the leases etcd kept through its restart
    // expire); it hands over, then the other stops.
    let mut rs = [a, b];
    wait_for(
        LONG,
        || rs.iter().any(leads_now),
        || format!("nobody leads:\n{}\n{}", rs[0].log(), rs[1].log()),
    );
    let leader = if leads_now(&rs[0]) { 0 } else { 1 };
    let other = 1 - leader;
    rs[leader].signal(libc::SIGTERM);
    rs[leader].wait(LONG);
    wait_for(
        LONG,
        || leads_now(&rs[other]),
        || format!("no handoff:\n{}", rs[other].log()),
    );
    rs[other].signal(libc::SIGTERM);
    rs[other].wait(LONG);
    if leader_survives {
        assert_eq!(leader, 0, "a led through the outage");
        assert!(!rs[0].log().contains("renew deadline"), "{}", rs[0].log());
    }
    [rs[0].log(), rs[1].log()]
}

/// What the outage cost in log lines, and how they read.
fn check(logs: &[String; 2], what: &str) {
    for (name, log) in ["a", "b"].iter().zip(logs) {
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
        let longest = log.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        println!(
            "{what}: {name}: {} lines, {} warnings, longest {longest} characters",
            log.lines().count(),
            warnings.len()
        );
        assert!(
            warnings.len() <= MAX_WARNINGS,
            "{what}: {name}: {} warnings:\n{log}",
            warnings.len()
        );
        // The outage is named once, by its endpoint and reason, and its end once.
        let failed = log.matches("etcd request failed; retrying").count();
        assert_eq!(failed, 1, "{what}: {name}:\n{log}");
        let ended = log.matches("etcd requests succeed again").count();
        assert_eq!(ended, 1, "{what}: {name}:\n{log}");
        assert!(
            log.contains(" endpoint=127.0.0.1:"),
            "{what}: {name}:\n{log}"
        );
        // Its own key from before the outage (its lease outlived our view of it: etcd extends
        // every lease when it starts) is not another replica with its --id.
        assert!(!log.contains("the same --id"), "{what}: {name}:\n{log}");
        let faults = format_faults(log);
        assert!(faults.is_empty(), "{what}: {name}:\n{}", faults.join("\n"));
    }
}

/// Promise: at a TTL whose tolerated outage (`singleton-exec timing`: 12 s at `--ttl 30s`) is
/// longer than the outage, the leader's child runs through it, and each replica says so in a few
/// lines. Failed before: a warning for every failed request, about 40 per replica, many of them
/// over 400 characters; `lease=` and `pid=0` on the stop lines; `grace=1s 500ms`.
#[test]
fn an_etcd_outage_the_leader_survives_is_a_few_short_lines() {
    let logs = outage_then_handoff(Outage::Stopped, Some("30s"), true);
    check(&logs, "ttl 30s");
}

/// The same through a black hole, where requests time out instead of being refused.
#[test]
fn a_black_hole_the_leader_survives_is_a_few_short_lines() {
    let logs = outage_then_handoff(Outage::BlackHole, Some("30s"), true);
    check(&logs, "ttl 30s, black hole");
}

/// At the default TTL (a 4 s tolerated outage) the leader stops its child, and both replicas
/// lose their leases; still a few warnings each, saying so.
#[test]
fn an_etcd_outage_that_ends_a_leadership_is_a_few_short_lines() {
    let logs = outage_then_handoff(Outage::Stopped, None, false);
    check(&logs, "default ttl");
    assert!(logs[0].contains("leadership given up"), "{}", logs[0]);
}
