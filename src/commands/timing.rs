//! `singleton-exec timing`: the worst cases of a replica's configuration, as an operator plans
//! with them: the etcd outage a leader survives without stopping its child, how long a takeover
//! takes after a crash of the leader's host and after a graceful stop, and when the child gets its
//! stop signal and SIGKILL after the last acknowledged keepalive.
//!
//! Every figure comes from [`crate::core::timing::TimingModel::figures`] (and, with a health check,
//! [`crate::health::HealthConfig::worst_case`]); nothing is measured. The configuration is read
//! as a replica reads it (flags, `SINGLETON_EXEC_*` variables, defaults) and validated by the same
//! rules. What is printed is a pure function of it ([`render_text`], [`render_json`]).

use std::time::Duration;

use crate::config::cli::{OutputFormat, TimingArgs};
use crate::config::TimingConfig;
use crate::core::exit_code;
use crate::core::timing::ETCD_EXPIRY_CHECK;

/// Prints the figures: 0, or [`exit_code::USAGE`] for a configuration a replica would refuse.
pub fn run(args: TimingArgs) -> i32 {
    let (output, sources) = (args.output, args.run.sources.clone());
    match TimingConfig::from_args(args.run) {
        Ok(cfg) => {
            match output {
                OutputFormat::Text => print!("{}", render_text(&cfg)),
                OutputFormat::Json => println!("{}", render_json(&cfg)),
            }
            0
        }
        Err(e) => {
            eprintln!(
                "singleton-exec: {}",
                sources.explain(&e.to_string(), &e.options())
            );
            exit_code::USAGE
        }
    }
}

/// A duration as one token: `250ms`, `4s`, `10.5s`.
pub fn duration(d: Duration) -> String {
    let trimmed = |v: f64| {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if !d.is_zero() && d < Duration::from_secs(1) {
        format!("{}ms", trimmed(d.as_secs_f64() * 1000.0))
    } else {
        format!("{}s", trimmed(d.as_secs_f64()))
    }
}

/// The text for people: each figure, then how it follows from the options.
pub fn render_text(cfg: &TimingConfig) -> String {
    let t = &cfg.timing;
    let f = t.figures();
    let d = duration;
    let row =
        |what: &str, value: Duration, why: &str| format!("  {what:<40}{:<9}{why}\n", d(value));
    let mut out = format!(
        "timing of --ttl {} --keepalive-interval {} --grace {} --margin {}\n",
        d(t.ttl),
        d(t.keepalive_interval),
        d(t.grace),
        d(t.margin)
    );
    out += "\nworst cases:\n";
    out += &row(
        "etcd outage survived without a stop",
        f.tolerated_outage,
        &format!(
            "at any phase: renew deadline {} - 2 x keepalive interval {}",
            d(t.renew_deadline()),
            d(t.keepalive_interval)
        ),
    );
    out += &row(
        "takeover after the leader's host dies",
        f.takeover_after_crash,
        &format!(
            "the TTL after its last keepalive reached etcd, plus etcd's expiry check (every {})",
            d(ETCD_EXPIRY_CHECK)
        ),
    );
    out += &row(
        "takeover after a graceful stop",
        f.takeover_after_graceful_stop,
        "the child's stop (stop signal, SIGKILL after --grace), then a few etcd round trips",
    );
    out +=
        "\nafter the send of the last acknowledged keepalive, if no later one is acknowledged:\n";
    out += &row(
        "stop signal to the child's tree",
        f.stop_after_keepalive,
        "the renew deadline: ttl - grace - margin",
    );
    out += &row(
        "SIGKILL to the child's tree",
        f.kill_after_keepalive,
        "ttl - margin",
    );
    out += &row(
        "earliest lease expiry in etcd",
        f.expiry_after_keepalive,
        "ttl",
    );
    out += &format!(
        "  one lost keepalive is retried and answered by {}: it never stops the child\n",
        d(f.one_lost_keepalive_recovered_by)
    );
    out += &format!(
        "\non a link slower than the attempt timeout ({}), replies are awaited up to {};\n  \
         the etcd outage survived there shrinks to {}\n",
        d(t.attempt_timeout()),
        d(f.slowest_attempt),
        d(f.tolerated_outage_on_a_slow_link)
    );
    if let Some(h) = &cfg.health {
        out += &format!(
            "\nhealth check: a wedged leader steps down within {} (start period {} + interval {} x retries {} + timeout {} + grace {})\n",
            d(h.worst_case(t.grace)),
            d(h.start_period),
            d(h.interval),
            h.retries,
            d(h.timeout),
            d(t.grace)
        );
    }
    if let Some(h) = &cfg.hot {
        out += &format!(
            "\nhot standby: a demotion waits for ROLE=standby at most until the stop signal above ({} \
             after the last acknowledged keepalive;\n  keepalives no longer move it), SIGKILL by {}; \
             a promotion not confirmed within {} is stopped as a failed start\n",
            d(f.stop_after_keepalive),
            d(f.kill_after_keepalive),
            d(h.promote_timeout)
        );
    }
    out
}

/// `--output json`: every figure in milliseconds, under the names of the text.
pub fn render_json(cfg: &TimingConfig) -> serde_json::Value {
    let t = &cfg.timing;
    let f = t.figures();
    let ms = |d: Duration| d.as_millis() as u64;
    serde_json::json!({
        "ttl_ms": ms(t.ttl),
        "keepalive_interval_ms": ms(t.keepalive_interval),
        "attempt_timeout_ms": ms(t.attempt_timeout()),
        "grace_ms": ms(t.grace),
        "margin_ms": ms(t.margin),
        "renew_deadline_ms": ms(t.renew_deadline()),
        "tolerated_outage_ms": ms(f.tolerated_outage),
        "takeover_after_crash_ms": ms(f.takeover_after_crash),
        "takeover_after_graceful_stop_ms": ms(f.takeover_after_graceful_stop),
        "stop_after_keepalive_ms": ms(f.stop_after_keepalive),
        "kill_after_keepalive_ms": ms(f.kill_after_keepalive),
        "lease_expiry_after_keepalive_ms": ms(f.expiry_after_keepalive),
        "one_lost_keepalive_recovered_by_ms": ms(f.one_lost_keepalive_recovered_by),
        "slowest_attempt_ms": ms(f.slowest_attempt),
        "tolerated_outage_on_a_slow_link_ms": ms(f.tolerated_outage_on_a_slow_link),
        "wedged_leader_bound_ms": cfg.health.as_ref().map(|h| ms(h.worst_case(t.grace))),
        "demotion_wait_bound_ms": cfg.hot.map(|_| ms(f.stop_after_keepalive)),
        "promote_timeout_ms": cfg.hot.map(|h| ms(h.promote_timeout)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> TimingConfig {
        let _env = crate::config::tests::env_lock();
        let argv = ["singleton-exec", "timing"].iter().chain(args);
        let cli = crate::config::cli::Cli::try_parse_from(argv).expect("arguments");
        match cli.subcommand {
            Some(crate::config::cli::Command::Timing(t)) => {
                TimingConfig::from_args(t.run).expect("a valid configuration")
            }
            other => panic!("not timing: {other:?}"),
        }
    }

    #[test]
    fn durations_are_one_token() {
        let ms = Duration::from_millis;
        let rows = [
            (ms(0), "0s"),
            (ms(250), "250ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (ms(1000), "1s"),
            (ms(10_500), "10.5s"),
            (ms(4_000), "4s"),
            (ms(31_557_600_000), "31557600s"),
        ];
        for (d, want) in rows {
            assert_eq!(duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn the_defaults_as_text() {
        let want = "\
timing of --ttl 10s --keepalive-interval 1s --grace 3s --margin 1s

worst cases:
  etcd outage survived without a stop     4s       at any phase: renew deadline 6s - 2 x keepalive interval 1s
  takeover after the leader's host dies   10.5s    the TTL after its last keepalive reached etcd, plus etcd's expiry check (every 500ms)
  takeover after a graceful stop          3s       the child's stop (stop signal, SIGKILL after --grace), then a few etcd round trips

after the send of the last acknowledged keepalive, if no later one is acknowledged:
  stop signal to the child's tree         6s       the renew deadline: ttl - grace - margin
  SIGKILL to the child's tree             9s       ttl - margin
  earliest lease expiry in etcd           10s      ttl
  one lost keepalive is retried and answered by 2s: it never stops the child

on a link slower than the attempt timeout (500ms), replies are awaited up to 1.667s;
  the etcd outage survived there shrinks to 1.667s
";
        assert_eq!(render_text(&config(&[])), want);
    }

    #[test]
    fn options_and_a_health_check_change_the_figures() {
        let cfg = config(&[
            "--ttl",
            "20s",
            "--grace",
            "5s",
            "--health-url",
            "http://127.0.0.1:1/",
            "--",
            "my-app",
            "--flag",
        ]);
        let v = render_json(&cfg);
        let want = serde_json::json!({
            "ttl_ms": 20_000,
            "keepalive_interval_ms": 2_000,
            "attempt_timeout_ms": 1_000,
            "grace_ms": 5_000,
            "margin_ms": 2_000,
            "renew_deadline_ms": 13_000,
            "tolerated_outage_ms": 9_000,
            "takeover_after_crash_ms": 20_500,
            "takeover_after_graceful_stop_ms": 5_000,
            "stop_after_keepalive_ms": 13_000,
            "kill_after_keepalive_ms": 18_000,
            "lease_expiry_after_keepalive_ms": 20_000,
            "one_lost_keepalive_recovered_by_ms": 4_000,
            // (13 s - 2 s) / 3, and 13 s - 2 s - 2 x that
            "slowest_attempt_ms": 3_666,
            "tolerated_outage_on_a_slow_link_ms": 3_666,
            // 0 s + 10 s x 3 + 5 s + grace 5 s
            "wedged_leader_bound_ms": 40_000,
            "demotion_wait_bound_ms": null,
            "promote_timeout_ms": null,
        });
        assert_eq!(v, want);
        let text = render_text(&cfg);
        assert!(
            text.ends_with("health check: a wedged leader steps down within 40s (start period 0s + interval 10s x retries 3 + timeout 5s + grace 5s)\n"),
            "{text}"
        );
        assert!(render_json(&config(&[]))["wedged_leader_bound_ms"].is_null());
    }

    /// With --hot-standby: the demotion's bound is the stop signal's, from the same model.
    #[test]
    fn a_hot_standby_shows_the_demotion_bound_and_the_promote_timeout() {
        let cfg = config(&["--hot-standby", "--promote-timeout", "5s", "--", "my-app"]);
        let v = render_json(&cfg);
        assert_eq!(v["demotion_wait_bound_ms"], 6_000);
        assert_eq!(v["demotion_wait_bound_ms"], v["stop_after_keepalive_ms"]);
        assert_eq!(v["promote_timeout_ms"], 5_000);
        let text = render_text(&cfg);
        assert!(text.contains("hot standby: a demotion waits for ROLE=standby at most until the stop signal above (6s"), "{text}");
        assert!(
            text.contains("SIGKILL by 9s; a promotion not confirmed within 5s"),
            "{text}"
        );
    }
}
