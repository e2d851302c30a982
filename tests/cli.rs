//! The command-line contract: help, usage errors and their exit codes, secrets kept out of output,
//! and the environment the child gets, which a nested singleton-exec can run with (none of it reads
//! as one of its own options).

use std::process::Command;
use std::time::Duration;

use crate::support::{args, bin, replica_with, EtcdCluster, Replica};

const LONG: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> (i32, String, String) {
    run_with_env(args, &[])
}

/// `singleton-exec ARGS` against an unreachable etcd, giving up after a second, with `VAR=VALUE`
/// pairs added to the environment.
fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env("SINGLETON_EXEC_ENDPOINTS", "http://127.0.0.1:1")
        .env("SINGLETON_EXEC_ACQUIRE_TIMEOUT", "1s")
        .envs(env.iter().copied())
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_documents_every_option_env_var_default_and_exit_code() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for opt in [
        "--endpoints",
        "--election",
        "--id",
        "--ttl",
        "--grace",
        "--stop-signal",
        "--on-lease-lost",
        "--on-child-exit",
        "--acquire-timeout",
        "--cacert",
        "--cert",
        "--key",
        "--user",
        "--password",
        "--log-format",
        "--verbose",
        "--quiet",
        "--margin",
        "--keepalive-interval",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}");
    }
    for env in [
        "SINGLETON_EXEC_ENDPOINTS",
        "SINGLETON_EXEC_TTL",
        "SINGLETON_EXEC_GRACE",
        "SINGLETON_EXEC_PASSWORD",
        "ETCDCTL_ENDPOINTS",
    ] {
        assert!(out.contains(env), "--help lacks {env}");
    }
    for default in [
        "http://127.0.0.1:2379",
        "[default: 10s]",
        "[default: TERM]",
        "recampaign",
        "the file name of COMMAND",
    ] {
        assert!(out.contains(default), "--help lacks default {default}");
    }
    for code in ["128+S", "122", "124", "125", "126", "127"] {
        assert!(out.contains(code), "--help lacks exit code {code}");
    }
}

#[test]
fn usage_errors_exit_2_with_the_rule_named() {
    let (code, _, err) = run(&["--bogus", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["--ttl", "0s", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("ttl >= 2s"), "{err}");
    let (code, _, err) = run(&["--ttl", "10s", "--grace", "9500ms", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("grace + margin < ttl"), "{err}");
    let (code, _, err) = run(&[
        "--ttl",
        "5s",
        "--grace",
        "2s",
        "--keepalive-interval",
        "2s",
        "--",
        "true",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("2 x keepalive interval"), "{err}");
    let (code, _, _) = run(&["--ttl", "ten", "--", "true"]);
    assert_eq!(code, 2);
    let (code, _, _) = run(&[]);
    assert_eq!(code, 2, "no command");
    let (code, _, err) = run(&["--", ""]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["--election", "a/b", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("election name"), "{err}");
    let (code, _, err) = run(&["--stop-signal", "KILL", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["--stop-signal", "NOPE", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&[
        "--endpoints",
        "https://127.0.0.1:1",
        "--cacert",
        "/nonexistent/ca.pem",
        "--",
        "true",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read --cacert"), "{err}");
    let (code, _, err) = run(&[
        "--endpoints",
        "https://127.0.0.1:1",
        "--cacert",
        "/etc/hostname",
        "--",
        "true",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a PEM file"), "{err}");
    let (code, _, err) = run(&[
        "--endpoints",
        "http://127.0.0.1:1",
        "--cacert",
        "/etc/hostname",
        "--",
        "true",
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn missing_and_non_executable_commands_fail_before_campaigning() {
    let (code, _, err) = run(&["--", "/nonexistent/command"]);
    assert_eq!(code, 127, "{err}");
    let (code, _, err) = run(&["--", "no-such-command-anywhere"]);
    assert_eq!(code, 127, "{err}");
    let plain = tempfile::NamedTempFile::new().unwrap();
    let (code, _, err) = run(&["--", plain.path().to_str().unwrap()]);
    assert_eq!(code, 126, "{err}");
    let (code, _, err) = run(&["--", "/tmp"]);
    assert_eq!(code, 126, "{err}");
}

#[test]
fn unreachable_etcd_gives_up_at_the_acquire_timeout_without_running_the_child() {
    let marker = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&marker).unwrap();
    let (code, _, err) = run(&["--election", "x", "--", "touch", marker.to_str().unwrap()]);
    assert_eq!(code, 124, "{err}");
    assert!(err.contains("acquire-timeout"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "the log says why: {err}");
    assert!(!marker.exists(), "the child ran without leadership");
}

#[test]
fn secrets_never_appear_in_help_or_logs() {
    let out = Command::new(bin())
        .args(["--help"])
        .env("SINGLETON_EXEC_PASSWORD", "hunter2-secret")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2-secret"));
    let out = Command::new(bin())
        .args([
            "-vv",
            "--endpoints",
            "http://127.0.0.1:1",
            "--acquire-timeout",
            "1s",
            "--user",
            "root",
            "--",
            "true",
        ])
        .env("SINGLETON_EXEC_PASSWORD", "hunter2-secret")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("hunter2-secret"), "{all}");
}

#[path = "../examples/gen_docs.rs"]
mod gen_docs;

#[test]
fn man_page_and_completions_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    for (path, bytes) in gen_docs::render() {
        let committed = std::fs::read(root.join(&path)).unwrap_or_default();
        assert!(
            committed == bytes,
            "packaging/{} is stale: run `cargo run --example gen_docs -- packaging`",
            path.display()
        );
    }
}

/// Promise: elections never share key space. `--prefix /a --election b` and `--prefix /a/b
/// --election c` would (`/a/b/...`), so a prefix of more than one path segment is a usage error
/// (exit 2, naming the prefix) found before etcd is touched. `--prefix /a` still works.
#[test]
fn a_prefix_of_more_than_one_segment_is_refused() {
    let mut r = Replica::start(
        "pfx",
        "http://127.0.0.1:1",
        &[
            "--prefix",
            "/a/b",
            "--election",
            "c",
            "--acquire-timeout",
            "3s",
            "--",
            "true",
        ],
    );
    let code = r.wait(LONG);
    assert_eq!(
        code,
        2,
        "--prefix /a/b must be a usage error before etcd is contacted; log:\n{}",
        r.log()
    );
    assert!(r.log().contains("prefix"), "{}", r.log());

    let etcd = EtcdCluster::single();
    let mut ok = Replica::start(
        "pfx1",
        &etcd.endpoints(),
        &["--prefix", "/a", "--election", "b", "--", "true"],
    );
    assert_eq!(ok.wait(LONG), 0, "{}", ok.log());
}

/// Promise: "What the child gets": the leader's facts under SINGLETON_EXEC_LEADER_*,
/// SINGLETON_EXEC_LEASE_ID, SINGLETON_EXEC_REVISION, SINGLETON_EXEC_ETCD_ENDPOINTS, and nothing a
/// nested singleton-exec would read as one of its own options: SINGLETON_EXEC_KEY is the TLS
/// `--key` option, so `singleton-exec status` run by the child failed with exit 2.
#[test]
fn the_child_environment_can_run_a_nested_status() {
    let etcd = EtcdCluster::single();
    let ep = etcd.endpoints();
    let script = r#"env | grep '^SINGLETON_EXEC_' | sort; "$HARDENING_BIN" status --election "$SINGLETON_EXEC_LEADER_ELECTION" --endpoints "$SINGLETON_EXEC_ETCD_ENDPOINTS"; echo rc=$?"#;
    let mut r = replica_with(
        "envr",
        &ep,
        &args(
            &["--election", "envs"],
            &["--".into(), "sh".into(), "-c".into(), script.into()],
        ),
        |c| {
            c.env("HARDENING_BIN", bin());
        },
    );
    assert_eq!(r.wait(LONG), 0, "{}", r.log());
    let out = r.stdout();
    let var = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    for name in [
        "SINGLETON_EXEC_LEADER_KEY",
        "SINGLETON_EXEC_LEADER_ID",
        "SINGLETON_EXEC_LEADER_ELECTION",
        "SINGLETON_EXEC_LEASE_ID",
        "SINGLETON_EXEC_REVISION",
        "SINGLETON_EXEC_ETCD_ENDPOINTS",
    ] {
        assert!(
            var(name).is_some(),
            "the child lacks {name}; it got:\n{out}"
        );
    }
    assert!(
        var("SINGLETON_EXEC_KEY").is_none(),
        "SINGLETON_EXEC_KEY reached the child (a nested singleton-exec reads it as --key):\n{out}"
    );
    assert_eq!(var("SINGLETON_EXEC_LEADER_ID").as_deref(), Some("envr"));
    assert_eq!(
        var("SINGLETON_EXEC_LEADER_ELECTION").as_deref(),
        Some("envs")
    );
    assert_eq!(var("SINGLETON_EXEC_ETCD_ENDPOINTS"), Some(ep.clone()));
    assert!(
        var("SINGLETON_EXEC_LEADER_KEY")
            .unwrap()
            .starts_with("/singleton-exec/envs/"),
        "{out}"
    );
    assert!(
        out.contains("rc=0"),
        "the nested status failed:\n{out}\nlog:\n{}",
        r.log()
    );
    assert!(out.contains("leader:           envr"), "{out}");
}

/// A usage error as the user sees it: exit 2, one line on stderr that says each of `needles`, no
/// panic.
fn assert_one_line_usage_error(
    what: &str,
    (code, _, err): (i32, String, String),
    needles: &[&str],
) {
    assert_eq!(code, 2, "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{what}: lacks {needle:?}: {err}");
    }
}

/// The largest duration the parser takes.
const MAX_DURATION: &str = "18446744073709551615s";

/// Promise: a duration or count too large for the arithmetic done on it is a usage error that
/// names the option and its limit (exit 2, one line), from the flag and from its variable alike,
/// never a panic. One row a line: the option, the value, then what the message says; options
/// that need a health check get `--health-cmd true`.
#[test]
fn out_of_range_durations_and_counts_are_usage_errors() {
    let table = "
        --ttl                  9999999999999999999s  limit of 1year
        --ttl                  MAX                   limit of 1year
        --grace                MAX                   grace + margin < ttl
        --margin               MAX                   grace + margin < ttl
        --keepalive-interval   MAX                   2 x keepalive interval
        --keepalive-interval   9999999999999999999s  2 x keepalive interval
        --acquire-timeout      MAX                   limit of 1year
        --resign-holdoff       MAX                   limit of 1year
        --dial-timeout         MAX                   limit of 1year
        --health-interval      MAX                   limit of 1year
        --health-timeout       MAX                   at most --health-interval
        --health-start-period  MAX                   limit of 1year
        --health-retries       4294967295            limit of 1year
    ";
    for row in table.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = row.split_whitespace();
        let (option, value) = (words.next().unwrap(), words.next().unwrap());
        let message = words.collect::<Vec<_>>().join(" ");
        let value = if value == "MAX" { MAX_DURATION } else { value };
        let health: &[&str] = if option.starts_with("--health") {
            &["--health-cmd", "true"]
        } else {
            &[]
        };
        let flag = [health, &[option, value, "--", "true"]].concat();
        assert_one_line_usage_error(row, run(&flag), &[&message, option]);
        let var = format!(
            "SINGLETON_EXEC_{}",
            option[2..].replace('-', "_").to_uppercase()
        );
        let from_env = run_with_env(&[health, &["--", "true"]].concat(), &[(&var, value)]);
        assert_one_line_usage_error(&var, from_env, &[&message, option]);
    }
    // The combination that overflowed the health check's worst case.
    let both = [
        "--health-cmd",
        "true",
        "--health-retries",
        "4294967295",
        "--health-interval",
        "5000000000s",
        "--",
        "true",
    ];
    assert_one_line_usage_error("retries x interval", run(&both), &["limit of 1year"]);
    // The operator subcommands: their connection option and `resign --timeout`.
    let status = ["status", "--election", "x", "--dial-timeout", MAX_DURATION];
    assert_one_line_usage_error("status", run(&status), &["--dial-timeout"]);
    let resign = ["resign", "--election", "x", "--timeout", MAX_DURATION];
    assert_one_line_usage_error("resign", run(&resign), &["--timeout"]);
}

/// Promise: `--acquire-timeout 0s` would give up before trying once, so it is refused (exit 2),
/// from the flag and from its variable.
#[test]
fn a_zero_acquire_timeout_is_refused() {
    let flag = run(&["--acquire-timeout", "0s", "--", "true"]);
    assert_one_line_usage_error("flag", flag, &["--acquire-timeout"]);
    let var = run_with_env(&["--", "true"], &[("SINGLETON_EXEC_ACQUIRE_TIMEOUT", "0s")]);
    assert_one_line_usage_error("variable", var, &["--acquire-timeout"]);
}

/// Promise: a log filter that is not one is a usage error naming `SINGLETON_EXEC_LOG` (exit 2),
/// for the supervisor and the subcommands alike, rather than a filter that hides every line,
/// errors included.
#[test]
fn a_bad_log_filter_is_a_usage_error() {
    for filter in ["[[[", "singleton_exec=loud", "a=b=c", "my app=debug"] {
        let env = [("SINGLETON_EXEC_LOG", filter)];
        for args in [
            &["--", "true"][..],
            &["status", "--election", "x"],
            &["resign", "--election", "x"],
        ] {
            let what = format!("{filter:?} {args:?}");
            let got = run_with_env(args, &env);
            assert_one_line_usage_error(&what, got, &["SINGLETON_EXEC_LOG"]);
        }
    }
    // A good filter still works, and an empty variable is no filter (the default levels).
    for filter in ["debug", "singleton_exec=trace,warn", ""] {
        let (code, _, err) = run_with_env(&["--", "true"], &[("SINGLETON_EXEC_LOG", filter)]);
        assert_eq!(code, 124, "{filter:?}: {err}");
        assert!(err.contains("acquire-timeout"), "{filter:?}: {err}");
    }
}

/// Promise: the guard's mode is reachable only by the supervisor that starts it. The variable
/// that marks it, set by a user (any stage), changes nothing: the command runs and its exit code
/// is ours.
#[test]
fn the_guards_variable_set_by_a_user_changes_nothing() {
    let etcd = EtcdCluster::single();
    for (i, value) in ["1", "2", "1:1", "x"].into_iter().enumerate() {
        let name = format!("guardvar{i}");
        let mut r = replica_with(
            &name,
            &etcd.endpoints(),
            &[
                "--election",
                "guardvar",
                "--",
                "sh",
                "-c",
                "echo ran; exit 7",
            ],
            |c| {
                c.env("SINGLETON_EXEC_INTERNAL_GUARD", value);
            },
        );
        assert_eq!(r.wait(LONG), 7, "{value}: {}", r.log());
        assert_eq!(r.stdout(), "ran\n", "{value}: {}", r.log());
        assert!(r.log().contains("guard started"), "{value}: {}", r.log());
    }
}

/// `singleton-exec timing` reads the configuration a replica would (flags, SINGLETON_EXEC_*
/// variables, defaults), refuses what a replica refuses, and prints the figures the replica logs
/// at debug level when it starts.
#[test]
fn timing_prints_the_worst_cases_of_the_configuration() {
    let (code, out, err) = run(&["timing"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("timing of --ttl 10s "), "{out}");
    for line in [
        "etcd outage survived without a stop     4s ",
        "takeover after the leader's host dies   10.5s ",
        "takeover after a graceful stop          3s ",
        "stop signal to the child's tree         6s ",
        "SIGKILL to the child's tree             9s ",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    // A variable, a flag and a replica's whole command line.
    let (code, out, err) = run_with_env(
        &[
            "timing", "--grace", "5s", "--output", "json", "--", "sleep", "1",
        ],
        &[("SINGLETON_EXEC_TTL", "20s")],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["ttl_ms"], 20_000);
    assert_eq!(v["stop_after_keepalive_ms"], 13_000);
    assert_eq!(v["tolerated_outage_ms"], 9_000);
    assert_eq!(v["takeover_after_graceful_stop_ms"], 5_000);
    let (code, _, err) = run(&["timing", "--ttl", "10s", "--grace", "9500ms"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("grace + margin < ttl"), "{err}");

    // The replica logs the same figures at debug level on start-up.
    let (_, _, log) = run_with_env(
        &["--id", "t", "--", "true"],
        &[("SINGLETON_EXEC_LOG", "singleton_exec=debug")],
    );
    let line = log
        .lines()
        .find(|l| l.contains("timing: worst cases"))
        .unwrap_or_else(|| panic!("no timing line:\n{log}"));
    for field in [
        "tolerated_outage=4s",
        "takeover_after_crash=10.5s",
        "takeover_after_graceful_stop=3s",
        "stop_after_keepalive=6s",
        "kill_after_keepalive=9s",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
}

/// A mistyped subcommand that names no command on PATH is a usage error that says what was
/// meant; after `--`, or when the word is a command (`stat`), it runs as a command.
#[test]
fn a_mistyped_subcommand_gets_a_suggestion() {
    let (code, _, err) = run(&["stauts"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `status`?"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = run(&["resing", "--election", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `resign`?"), "{err}");
    // Meant as a command: not found.
    let (code, _, err) = run(&["--", "stauts"]);
    assert_eq!(code, 127, "{err}");
    assert!(!err.contains("did you mean"), "{err}");
    // `stat` is close to `status`, and a command: it is run (here: until the acquire timeout).
    let (code, _, err) = run(&["stat", "/"]);
    assert_eq!(code, 124, "{err}");
    assert!(!err.contains("did you mean"), "{err}");
}

/// A negative duration is refused with a message that does not suggest `-- -5s` (which would
/// make it the command); an option where a value was forgotten says so.
#[test]
fn negative_durations_get_a_message_that_helps() {
    for args in [
        &["--ttl", "-5s", "--", "true"][..],
        &["--grace=-1s", "--", "true"],
        &["status", "--election", "a", "--dial-timeout", "-1s"],
        &["resign", "--election", "a", "--timeout", "-10s"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("cannot be negative; did you mean"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("-- -"), "{args:?}: {err}");
    }
    let (code, _, err) = run(&["--ttl", "--grace", "1s", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a duration is missing before the option --grace"),
        "{err}"
    );
    let (code, _, err) = run(&["--slots", "-1", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("-- -1"), "{err}");
}

/// An error about a value that came from a SINGLETON_EXEC_* variable names the variable, whether
/// clap or the configuration refuses it.
#[test]
fn errors_about_values_from_variables_name_the_variable() {
    let rows: &[(&[&str], (&str, &str), &str)] = &[
        (
            &["--", "true"],
            ("SINGLETON_EXEC_TTL", "-5s"),
            "from SINGLETON_EXEC_TTL",
        ),
        (
            &["--", "true"],
            ("SINGLETON_EXEC_TTL", "1s"),
            "(--ttl from SINGLETON_EXEC_TTL)",
        ),
        (
            &["--ttl", "10s", "--", "true"],
            ("SINGLETON_EXEC_GRACE", "9s"),
            "(--grace from SINGLETON_EXEC_GRACE)",
        ),
        (
            &["--", "true"],
            ("SINGLETON_EXEC_HEALTH_RETRIES", "5"),
            "(--health-retries from SINGLETON_EXEC_HEALTH_RETRIES)",
        ),
        (
            &["--", "true"],
            ("SINGLETON_EXEC_STOP_SIGNAL", "NOPE"),
            "(--stop-signal from SINGLETON_EXEC_STOP_SIGNAL)",
        ),
        (
            &["status", "--election", "a"],
            ("SINGLETON_EXEC_PREFIX", "/a/b"),
            "(--prefix from SINGLETON_EXEC_PREFIX)",
        ),
        (
            &["timing"],
            ("SINGLETON_EXEC_MARGIN", "10ms"),
            "(--margin from SINGLETON_EXEC_MARGIN)",
        ),
    ];
    for (args, var, want) in rows {
        let (code, _, err) = run_with_env(args, &[*var]);
        assert_eq!(code, 2, "{args:?} {var:?}: {err}");
        assert!(err.contains(want), "{args:?} {var:?}: {err}");
    }
    // The same value given as a flag: no variable to name.
    let (code, _, err) = run(&["--ttl", "1s", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("SINGLETON_EXEC_TTL"), "{err}");
}

/// Settings that would do nothing are not silent: health-check settings without a check are a
/// usage error; a token for POST /resign without --health-addr runs, with a warning.
#[test]
fn settings_that_do_nothing_are_refused_or_warned_about() {
    let (code, _, err) = run(&["--health-interval", "5s", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--health-interval tunes a health check, but none is asked for"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123456789\n").unwrap();
    let token = token.to_string_lossy().into_owned();
    let (code, _, err) = run(&["--resign-token-file", &token, "--", "true"]);
    assert_eq!(code, 124, "it runs: {err}");
    assert!(
        err.lines().any(|l| l.contains("WARN")
            && l.contains("--resign-token-file has no effect without --health-addr")),
        "{err}"
    );
    let (_, _, err) = run_with_env(
        &["--", "true"],
        &[("SINGLETON_EXEC_RESIGN_TOKEN_FILE", &token)],
    );
    assert!(
        err.contains("(--resign-token-file from SINGLETON_EXEC_RESIGN_TOKEN_FILE)"),
        "{err}"
    );
}
