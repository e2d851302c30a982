//! Health-gated leadership: the leader checks its child, and a child that stops working (alive but
//! wedged) makes the leader step down, so a standby with a working child takes over.
//!
//! What lives here: the check's settings ([`HealthConfig`], validated from the `--health-*`
//! options), the pure bookkeeping of consecutive failures and the start period ([`Tracker`], table
//! tested), the schedule of checks ([`Schedule`]), the HTTP check ([`http_check`]) and the
//! [`Monitor`] that drives them for one child. Command checks run in the process thread
//! ([`crate::process::check`]).
//!
//! Invariants:
//! * a check never runs in the process thread's way: a command check is forked by the process
//!   thread (the only reaper) in its own process group with its own timeout enforced there, killed
//!   with its whole group when it ends or times out, and killed at once when the stop sequence
//!   begins, its output read there without blocking; an HTTP check is a task with a timeout.
//!   Neither can delay the fail-closed deadline or a keepalive, and a result is known the moment
//!   the check ends (nothing waits for its output's end-of-file);
//! * at most one check is in flight; checks start on a fixed tick (`interval` after the child
//!   started, then every `interval`), and `timeout <= interval`, so a wedged leader keeps its
//!   leadership at most `start_period + interval × retries + timeout + grace` ([`HealthConfig::worst_case`]).

#![forbid(unsafe_code)]

use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::core::exit_code::ChildStatus;
use crate::core::timing::MAX_DURATION;
use crate::process::contract::CheckExit;

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `/bin/sh -c CMD`; exit status 0 is healthy.
    Command(String),
    /// HTTP GET; a 2xx answer is healthy.
    Url(HttpTarget),
}

/// A validated `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub url: String,
    /// `host:port` to connect to.
    pub connect: String,
    /// The `Host` header.
    pub host: String,
    /// Path and query.
    pub path: String,
}

/// The `--health-*` options, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl HealthConfig {
    /// Validates the options: `Ok(None)` when no check was asked for.
    pub fn new(
        cmd: Option<String>,
        url: Option<String>,
        interval: Duration,
        timeout: Duration,
        retries: u32,
        start_period: Duration,
    ) -> Result<Option<HealthConfig>, String> {
        let check = match (cmd, url) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("--health-cmd and --health-url cannot be used together".into())
            }
            (Some(c), None) if c.trim().is_empty() => {
                return Err("--health-cmd is empty".into());
            }
            (Some(c), None) => Check::Command(c),
            (None, Some(u)) => Check::Url(parse_url(&u)?),
        };
        if interval < Duration::from_millis(100) {
            return Err(format!(
                "--health-interval {} is too short: at least 100ms",
                humantime::format_duration(interval)
            ));
        }
        if timeout.is_zero() || timeout > interval {
            return Err(format!(
                "--health-timeout {} must be more than 0 and at most --health-interval {}, so \
                 checks never overlap and a wedged leader is found in a bounded time",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ));
        }
        if retries == 0 {
            return Err("--health-retries must be at least 1".into());
        }
        within_limits(interval, retries, start_period)?;
        Ok(Some(HealthConfig {
            check,
            interval,
            timeout,
            retries,
            start_period,
        }))
    }

    /// How long a leader whose child wedged can keep leadership: the start period, `retries` checks
    /// on the `interval` tick, the last one running to its `timeout`, then the stop's `grace`.
    /// Validated options keep every term within a year; saturating all the same, since the fields
    /// are public.
    pub fn worst_case(&self, grace: Duration) -> Duration {
        self.start_period
            .saturating_add(self.interval.saturating_mul(self.retries))
            .saturating_add(self.timeout)
            .saturating_add(grace)
    }

    /// The check, as the start-up log shows it (its durations are fields of their own).
    pub fn describe(&self) -> String {
        match &self.check {
            Check::Command(c) => format!("cmd {c:?}"),
            Check::Url(t) => format!("url {}", t.url),
        }
    }
}

/// The durations the checks add to instants, and `retries` checks of `interval`, each within
/// [`MAX_DURATION`]: the schedule and the worst case are then exact (no overflow, no panic), and
/// a wedged leader is found within a year at most.
fn within_limits(interval: Duration, retries: u32, start_period: Duration) -> Result<(), String> {
    let limit = humantime::format_duration(MAX_DURATION);
    let too_long = |option: &str, d: Duration| {
        let d = humantime::format_duration(d);
        format!(
            "{option} {d} is above the limit of {limit} (rule: every duration is at most {limit})"
        )
    };
    if interval > MAX_DURATION {
        return Err(too_long("--health-interval", interval));
    }
    if start_period > MAX_DURATION {
        return Err(too_long("--health-start-period", start_period));
    }
    if interval
        .checked_mul(retries)
        .is_none_or(|d| d > MAX_DURATION)
    {
        return Err(format!(
            "--health-retries {retries} x --health-interval {} is above the limit of {limit} \
             (rule: retries x interval <= {limit}, the time a wedged leader may keep leading)",
            humantime::format_duration(interval)
        ));
    }
    Ok(())
}

/// Parses `http://host[:port][/path]`. Only plain HTTP: a health endpoint is the app's own,
/// normally on loopback; a check through TLS would need certificates the app's probe rarely has.
pub fn parse_url(s: &str) -> Result<HttpTarget, String> {
    let bad = |why: &str| format!("--health-url {s:?}: {why}");
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| bad("use an http:// URL (https is not supported for health checks)"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad(
            "give a host (and no user info), e.g. http://127.0.0.1:8080/healthz",
        ));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) || path.contains('#') {
        return Err(bad("the path has spaces, control characters or a fragment"));
    }
    // The port is after the last ':' unless that is inside an IPv6 literal's brackets.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => {
            let port: u16 = authority[i + 1..]
                .parse()
                .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
            (&authority[..i], port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() || port == 0 {
        return Err(bad("give a host and a port from 1 to 65535"));
    }
    Ok(HttpTarget {
        url: s.to_string(),
        connect: format!("{host}:{port}"),
        host: authority.to_string(),
        path,
    })
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Healthy,
    /// Unhealthy, and why: the exit status and the end of the output, the HTTP status, a timeout.
    Failed(String),
}

/// What one result means for the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// A failure during the start period: not counted.
    Ignored,
    /// `n` consecutive failures, fewer than `retries`.
    Failing(u32),
    /// `n` consecutive failures, at least `retries`: step down.
    Unhealthy(u32),
}

/// Consecutive failures and the start period of one child. Pure: fed results and the time since
/// the child started, it says what each result means.
#[derive(Debug, Clone)]
pub struct Tracker {
    retries: u32,
    start_period: Duration,
    /// Set by the first success or by the end of the start period, whichever comes first (as
    /// Docker does: once a check passed, failures count even within the start period).
    started: bool,
    failures: u32,
}

impl Tracker {
    pub fn new(cfg: &HealthConfig) -> Tracker {
        Tracker {
            retries: cfg.retries,
            start_period: cfg.start_period,
            started: cfg.start_period.is_zero(),
            failures: 0,
        }
    }

    /// Records a check that began `began_after` the child started.
    pub fn record(&mut self, outcome: &Outcome, began_after: Duration) -> Verdict {
        if matches!(outcome, Outcome::Healthy) {
            self.started = true;
            self.failures = 0;
            return Verdict::Healthy;
        }
        if !self.started && began_after < self.start_period {
            return Verdict::Ignored;
        }
        self.started = true;
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.retries {
            Verdict::Unhealthy(self.failures)
        } else {
            Verdict::Failing(self.failures)
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// When checks start: on a fixed tick from the child's start. A check that ends just after the
/// next tick (its timeout equals the interval) delays the next check by that little, not by a
/// whole interval; only ticks more than an interval in the past are skipped.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub child_started: Instant,
    next: Instant,
    interval: Duration,
}

impl Schedule {
    pub fn new(child_started: Instant, interval: Duration) -> Schedule {
        Schedule {
            child_started,
            next: child_started + interval,
            interval,
        }
    }

    pub fn next(&self) -> Instant {
        self.next
    }

    /// A check starts now, for the tick that was due: the next one is due on the following tick.
    pub fn advance(&mut self, now: Instant) {
        self.next += self.interval;
        while self.next + self.interval <= now {
            self.next += self.interval;
        }
    }
}

/// Characters of a check's output shown as the reason it failed.
const DETAIL_CHARS: usize = 200;

/// One line of detail from a check's output: its last non-empty line, shortened.
pub fn last_line(output: &str) -> Option<String> {
    let line = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    let mut s: String = line.chars().take(DETAIL_CHARS).collect();
    if line.chars().count() > DETAIL_CHARS {
        s.push('…');
    }
    Some(s)
}

/// How one HTTP GET ended, before it is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The server answered with this status.
    Status(u16),
    /// No answer: cannot connect, or the exchange broke; why.
    NoAnswer(String),
    /// No answer within the check's timeout.
    TimedOut,
}

impl Answer {
    /// Healthy on a 2xx status; anything else is a failure, and says why.
    pub fn outcome(self, timeout: Duration) -> Outcome {
        match self {
            Answer::Status(status) if (200..300).contains(&status) => Outcome::Healthy,
            Answer::Status(status) => Outcome::Failed(format!("HTTP status {status}")),
            Answer::NoAnswer(why) => Outcome::Failed(why),
            Answer::TimedOut => Outcome::Failed(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            )),
        }
    }
}

/// An HTTP GET of `target` within `timeout`: healthy on a 2xx status.
pub async fn http_check(target: &HttpTarget, timeout: Duration) -> Outcome {
    let answer = tokio::time::timeout(timeout, get(target))
        .await
        .unwrap_or(Answer::TimedOut);
    answer.outcome(timeout)
}

async fn get(target: &HttpTarget) -> Answer {
    match get_status(target).await {
        Ok(status) => Answer::Status(status),
        Err(why) => Answer::NoAnswer(why),
    }
}

async fn get_status(target: &HttpTarget) -> Result<u16, String> {
    use http_body_util::Empty;
    let stream = tokio::net::TcpStream::connect(&target.connect)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", target.connect))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, target.host.as_str())
        .header(hyper::header::USER_AGENT, "singleton-exec health check")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("HTTP request: {e}"))?;
    let answer = sender.send_request(req).await;
    conn.abort();
    answer
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("HTTP: {e}"))
}

/// One check's result as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub verdict: Verdict,
    pub outcome: Outcome,
    /// Consecutive failures counted so far.
    pub failures: u32,
    pub retries: u32,
    pub took: Duration,
}

/// A command check the process thread is asked to run (see [`crate::process::contract::Request::Check`]).
pub struct CheckRequest {
    pub id: u64,
    pub command: String,
    pub timeout: Duration,
}

struct InFlight {
    id: u64,
    began: Instant,
}

/// Checks one child while it runs: says when the next check is due, starts it, turns what comes
/// back into [`Report`]s. Owned by the leadership loop; dropping it abandons a check in flight (the
/// process thread kills a command check when the stop begins).
pub struct Monitor {
    cfg: HealthConfig,
    tracker: Tracker,
    schedule: Schedule,
    in_flight: Option<InFlight>,
    next_id: u64,
    results: UnboundedSender<(u64, Outcome)>,
    tasks: Vec<JoinHandle<()>>,
}

/// Where a [`Monitor`]'s results arrive; kept apart so the loop can wait on it and on
/// [`Monitor::due`] at once.
pub type Results = UnboundedReceiver<(u64, Outcome)>;

impl Monitor {
    pub fn new(cfg: &HealthConfig, child_started: Instant) -> (Monitor, Results) {
        let (results, rx) = unbounded_channel();
        let monitor = Monitor {
            cfg: cfg.clone(),
            tracker: Tracker::new(cfg),
            schedule: Schedule::new(child_started, cfg.interval),
            in_flight: None,
            next_id: 0,
            results,
            tasks: Vec::new(),
        };
        (monitor, rx)
    }

    /// Resolves when the next check should start (never while one is in flight).
    pub async fn due(&self) {
        if self.in_flight.is_some() {
            return std::future::pending().await;
        }
        tokio::time::sleep_until(self.schedule.next()).await;
    }

    /// Starts the next check: an HTTP check runs here as a task; a command check is returned for
    /// the process thread to fork.
    pub fn start(&mut self) -> Option<CheckRequest> {
        let now = Instant::now();
        self.schedule.advance(now);
        self.next_id += 1;
        let id = self.next_id;
        let timeout = self.cfg.timeout;
        self.tasks.retain(|t| !t.is_finished());
        match &self.cfg.check {
            Check::Url(target) => {
                let (target, tx) = (target.clone(), self.results.clone());
                self.tasks.push(tokio::spawn(async move {
                    let _ = tx.send((id, http_check(&target, timeout).await));
                }));
                self.in_flight = Some(InFlight { id, began: now });
                None
            }
            Check::Command(command) => {
                self.in_flight = Some(InFlight { id, began: now });
                Some(CheckRequest {
                    id,
                    command: command.clone(),
                    timeout,
                })
            }
        }
    }

    /// The process thread says how command check `id` ended, with its output; the result
    /// follows on [`Results`] at once.
    pub fn check_ended(&mut self, id: u64, exit: CheckExit, output: &str) {
        if self.in_flight.as_ref().is_none_or(|f| f.id != id) {
            return;
        }
        if let CheckExit::NotRun(why) = &exit {
            // No result: the child is not running (its end is on the way), or a stop began.
            tracing::debug!(%why, "health check not run");
            self.in_flight = None;
            return;
        }
        let _ = self
            .results
            .send((id, command_outcome(&exit, output, self.cfg.timeout)));
    }

    /// Records a result: `None` if it belongs to no check in flight (a stale one).
    pub fn record(&mut self, id: u64, outcome: Outcome) -> Option<Report> {
        let flight = self.in_flight.take_if(|f| f.id == id)?;
        let began_after = flight
            .began
            .saturating_duration_since(self.schedule.child_started);
        let verdict = self.tracker.record(&outcome, began_after);
        Some(Report {
            verdict,
            outcome,
            failures: self.tracker.failures(),
            retries: self.cfg.retries,
            took: flight.began.elapsed(),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A command check's result from its exit and output.
fn command_outcome(exit: &CheckExit, output: &str, timeout: Duration) -> Outcome {
    let with_output = |what: String| match last_line(output) {
        Some(line) => format!("{what}: {line}"),
        None => what,
    };
    match exit {
        CheckExit::Exited(ChildStatus::Exited(0)) => Outcome::Healthy,
        CheckExit::Exited(status) => Outcome::Failed(with_output(status.to_string())),
        CheckExit::TimedOut => Outcome::Failed(with_output(format!(
            "timed out after {} (killed)",
            humantime::format_duration(timeout)
        ))),
        CheckExit::SpawnFailed(e) | CheckExit::NotRun(e) => Outcome::Failed(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(retries: u32, start_period_s: u64) -> HealthConfig {
        HealthConfig {
            check: Check::Command("true".into()),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            retries,
            start_period: Duration::from_secs(start_period_s),
        }
    }

    const OK: Outcome = Outcome::Healthy;
    fn bad() -> Outcome {
        Outcome::Failed("exit status 1".into())
    }

    /// Each row: retries, start period (s), then (healthy?, seconds since the child started,
    /// expected verdict) in order.
    #[test]
    fn consecutive_failures_and_the_start_period() {
        use Verdict::*;
        type Row = (u32, u64, &'static [(bool, u64, Verdict)]);
        let rows: &[Row] = &[
            // Failures count up to retries; the retries-th is the step-down.
            (
                3,
                0,
                &[
                    (false, 10, Failing(1)),
                    (false, 20, Failing(2)),
                    (false, 30, Unhealthy(3)),
                ],
            ),
            // A success resets the count.
            (
                3,
                0,
                &[
                    (false, 10, Failing(1)),
                    (false, 20, Failing(2)),
                    (true, 30, Healthy),
                    (false, 40, Failing(1)),
                ],
            ),
            // retries 1: the first failure.
            (1, 0, &[(false, 10, Unhealthy(1))]),
            // Failures within the start period are not counted; after it they are.
            (
                2,
                25,
                &[
                    (false, 10, Ignored),
                    (false, 20, Ignored),
                    (false, 30, Failing(1)),
                    (false, 40, Unhealthy(2)),
                ],
            ),
            // A success ends the start period early: failures count from then on.
            (
                2,
                60,
                &[
                    (true, 10, Healthy),
                    (false, 20, Failing(1)),
                    (false, 30, Unhealthy(2)),
                ],
            ),
            // Past Unhealthy the count keeps growing (a restart under the same tracker never happens,
            // but the verdict stays Unhealthy).
            (
                1,
                0,
                &[(false, 10, Unhealthy(1)), (false, 20, Unhealthy(2))],
            ),
        ];
        for (retries, start, steps) in rows {
            let mut t = Tracker::new(&cfg(*retries, *start));
            for (i, (healthy, at, want)) in steps.iter().enumerate() {
                let outcome = if *healthy { OK } else { bad() };
                let got = t.record(&outcome, Duration::from_secs(*at));
                assert_eq!(got, *want, "retries={retries} start={start} step {i}");
            }
        }
    }

    #[test]
    fn the_worst_case_is_start_period_plus_retries_intervals_plus_timeout_plus_grace() {
        let c = cfg(3, 7);
        assert_eq!(
            c.worst_case(Duration::from_secs(3)),
            Duration::from_secs(7 + 30 + 5 + 3)
        );
        let unchecked = HealthConfig {
            interval: Duration::MAX,
            retries: u32::MAX,
            ..cfg(3, 7)
        };
        assert_eq!(unchecked.worst_case(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn options_are_validated() {
        let s = Duration::from_secs;
        let ok = |cmd: Option<&str>, url: Option<&str>, i, t, r| {
            HealthConfig::new(
                cmd.map(Into::into),
                url.map(Into::into),
                s(i),
                s(t),
                r,
                s(0),
            )
        };
        assert_eq!(ok(None, None, 10, 5, 3), Ok(None));
        assert!(ok(Some("true"), None, 10, 5, 3).unwrap().is_some());
        assert!(ok(Some("true"), None, 10, 10, 3).unwrap().is_some());
        for (cmd, url, i, t, r, why) in [
            (Some("true"), Some("http://a/"), 10, 5, 3, "together"),
            (Some("  "), None, 10, 5, 3, "empty"),
            (Some("true"), None, 10, 11, 3, "at most"),
            (Some("true"), None, 10, 0, 3, "more than 0"),
            (Some("true"), None, 10, 5, 0, "at least 1"),
            (Some("true"), None, 0, 0, 3, "too short"),
            (None, Some("https://a/"), 10, 5, 3, "http://"),
        ] {
            let e = ok(cmd, url, i, t, r).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/healthz?deep=1").unwrap();
        assert_eq!(t.connect, "127.0.0.1:8080");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/healthz?deep=1");
        let t = parse_url("http://localhost").unwrap();
        assert_eq!((t.connect.as_str(), t.path.as_str()), ("localhost:80", "/"));
        let t = parse_url("http://[::1]:9000/h").unwrap();
        assert_eq!(t.connect, "[::1]:9000");
        let t = parse_url("http://[::1]/h").unwrap();
        assert_eq!(t.connect, "[::1]:80");
        let t = parse_url("http://h?x=1").unwrap();
        assert_eq!(t.path, "/?x=1");
        for bad in [
            "127.0.0.1:8080/healthz",
            "https://h/",
            "http://",
            "http:///x",
            "http://u@h/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://h/a b",
            "http://h/a#frag",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_schedule_ticks_from_the_child_start_and_only_skips_long_passed_ticks() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, Duration::from_secs(10));
        assert_eq!(s.next(), t0 + Duration::from_secs(10));
        s.advance(t0 + Duration::from_secs(10));
        assert_eq!(s.next(), t0 + Duration::from_secs(20));
        // The check for tick 20 started late, at 21 (the previous one ran to its timeout): tick 30
        // stays due.
        s.advance(t0 + Duration::from_secs(21));
        assert_eq!(s.next(), t0 + Duration::from_secs(30));
        // Started at 52 for tick 30 (the process was suspended): ticks more than an interval past
        // are skipped, the one just past is due at once.
        s.advance(t0 + Duration::from_secs(52));
        assert_eq!(s.next(), t0 + Duration::from_secs(50));
    }

    #[test]
    fn command_results() {
        let t = Duration::from_secs(5);
        let ok = CheckExit::Exited(ChildStatus::Exited(0));
        assert_eq!(command_outcome(&ok, "fine\n", t), Outcome::Healthy);
        let bad = CheckExit::Exited(ChildStatus::Exited(1));
        let Outcome::Failed(d) = command_outcome(&bad, "db: connection refused\n", t) else {
            panic!()
        };
        assert!(
            d.contains('1') && d.ends_with("db: connection refused"),
            "{d}"
        );
        let Outcome::Failed(d) = command_outcome(&CheckExit::TimedOut, "", t) else {
            panic!()
        };
        assert_eq!(d, "timed out after 5s (killed)");
        let spawn = CheckExit::SpawnFailed("cannot run \"/bin/sh\"".into());
        assert!(matches!(command_outcome(&spawn, "", t), Outcome::Failed(_)));
    }

    #[test]
    fn an_http_answer_is_healthy_only_with_a_2xx_status() {
        let t = Duration::from_millis(1500);
        let failed = |s: &str| Outcome::Failed(s.to_owned());
        let rows = [
            (Answer::Status(200), Outcome::Healthy),
            (Answer::Status(204), Outcome::Healthy),
            (Answer::Status(299), Outcome::Healthy),
            (Answer::Status(199), failed("HTTP status 199")),
            (Answer::Status(301), failed("HTTP status 301")),
            (Answer::Status(404), failed("HTTP status 404")),
            (Answer::Status(503), failed("HTTP status 503")),
            (
                Answer::NoAnswer("cannot connect to h:1: refused".into()),
                failed("cannot connect to h:1: refused"),
            ),
            (Answer::TimedOut, failed("timed out after 1s 500ms")),
        ];
        for (answer, want) in rows {
            assert_eq!(answer.clone().outcome(t), want, "{answer:?}");
        }
    }

    /// The start period's end is exclusive: a check that begins exactly at its end counts.
    #[test]
    fn the_start_periods_edges() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (retries, start period, began after, verdict of a first failure)
        let rows = [
            (3, s(30), ms(29_999), Verdict::Ignored),
            (3, s(30), s(30), Verdict::Failing(1)),
            (3, s(30), s(31), Verdict::Failing(1)),
            (1, s(30), s(30), Verdict::Unhealthy(1)),
            (3, s(0), s(0), Verdict::Failing(1)),
            (1, s(0), s(0), Verdict::Unhealthy(1)),
        ];
        for (retries, start_period, began_after, want) in rows {
            let mut c = cfg(retries, 0);
            c.start_period = start_period;
            let got = Tracker::new(&c).record(&bad(), began_after);
            assert_eq!(got, want, "{retries} {start_period:?} {began_after:?}");
        }
    }

    /// Once a failure counted, the start period is over for good: later failures count even if
    /// they began "earlier" (a check reported late).
    #[test]
    fn a_counted_failure_ends_the_start_period() {
        let mut t = Tracker::new(&cfg(3, 60));
        assert_eq!(
            t.record(&bad(), Duration::from_secs(70)),
            Verdict::Failing(1)
        );
        assert_eq!(
            t.record(&bad(), Duration::from_secs(10)),
            Verdict::Failing(2)
        );
        assert_eq!(t.failures(), 2);
        assert_eq!(t.record(&OK, Duration::from_secs(80)), Verdict::Healthy);
        assert_eq!(t.failures(), 0);
    }

    #[test]
    fn the_count_saturates() {
        let mut t = Tracker::new(&cfg(u32::MAX, 0));
        t.failures = u32::MAX - 1;
        assert_eq!(
            t.record(&bad(), Duration::ZERO),
            Verdict::Unhealthy(u32::MAX)
        );
        assert_eq!(
            t.record(&bad(), Duration::ZERO),
            Verdict::Unhealthy(u32::MAX)
        );
    }

    /// Each row: when checks start (seconds after the child started), and the next tick due
    /// after each (interval 10 s).
    #[test]
    fn the_schedule_by_table() {
        let rows: &[(&str, &[(u64, u64)])] = &[
            ("on time", &[(10, 20), (20, 30), (30, 40)]),
            ("a little late keeps the tick", &[(19, 20), (29, 30)]),
            (
                "one interval late: the tick just past is due at once",
                &[(20, 20), (20, 30)],
            ),
            ("long suspended", &[(1000, 1000), (1000, 1010)]),
            ("early (a due that fired before its time)", &[(5, 20)]),
        ];
        for (what, steps) in rows {
            let t0 = Instant::now();
            let mut s = Schedule::new(t0, Duration::from_secs(10));
            for (at, next) in *steps {
                s.advance(t0 + Duration::from_secs(*at));
                assert_eq!(s.next(), t0 + Duration::from_secs(*next), "{what}: at {at}");
            }
        }
    }

    #[test]
    fn option_boundaries() {
        let ms = Duration::from_millis;
        let new = |interval, timeout, retries| {
            HealthConfig::new(Some("true".into()), None, interval, timeout, retries, ms(0))
        };
        // (interval, timeout, retries, accepted?)
        let rows = [
            (ms(100), ms(100), 1, true),
            (ms(99), ms(99), 1, false),
            (ms(100), ms(1), 315_576_000, true),
            (ms(100), ms(1), 315_576_001, false),
            (ms(100), ms(1), u32::MAX, false),
            (MAX_DURATION, ms(1), 1, true),
            (MAX_DURATION + ms(1), ms(1), 1, false),
            (MAX_DURATION, ms(1), 2, false),
            (Duration::MAX, ms(1), u32::MAX, false),
            (ms(100), ms(101), 1, false),
            (ms(100), ms(0), 1, false),
            (ms(100), ms(50), 0, false),
        ];
        for (interval, timeout, retries, ok) in rows {
            let got = new(interval, timeout, retries);
            assert_eq!(
                got.is_ok(),
                ok,
                "{interval:?} {timeout:?} {retries}: {got:?}"
            );
        }
        let start = |period| HealthConfig::new(Some("x".into()), None, ms(100), ms(1), 1, period);
        assert!(start(MAX_DURATION).is_ok());
        let e = start(Duration::MAX).unwrap_err();
        assert!(e.contains("--health-start-period"), "{e}");
        let e = new(Duration::MAX, ms(1), 1).unwrap_err();
        assert!(
            e.contains("--health-interval") && e.contains("limit of 1year"),
            "{e}"
        );
        let e = new(ms(100), ms(1), u32::MAX).unwrap_err();
        assert!(
            e.contains("--health-retries") && e.contains("limit of 1year"),
            "{e}"
        );
    }

    #[test]
    fn the_start_up_line_describes_the_check() {
        let mut c = cfg(3, 7);
        assert_eq!(c.describe(), "cmd \"true\"");
        c.check = Check::Url(parse_url("http://h:81/z").unwrap());
        assert_eq!(c.describe(), "url http://h:81/z");
    }

    #[test]
    fn url_parts_by_table() {
        // (url, connect to, Host header, path)
        let rows = [
            ("http://h", "h:80", "h", "/"),
            ("http://h/", "h:80", "h", "/"),
            (
                "http://h:65535/a/b?c=d&e",
                "h:65535",
                "h:65535",
                "/a/b?c=d&e",
            ),
            (
                "http://10.0.0.1:8080",
                "10.0.0.1:8080",
                "10.0.0.1:8080",
                "/",
            ),
            ("http://[fe80::1]:1/x", "[fe80::1]:1", "[fe80::1]:1", "/x"),
            ("http://h?", "h:80", "h", "/?"),
        ];
        for (url, connect, host, path) in rows {
            let t = parse_url(url).unwrap();
            assert_eq!(
                (
                    t.connect.as_str(),
                    t.host.as_str(),
                    t.path.as_str(),
                    t.url.as_str()
                ),
                (connect, host, path, url),
            );
        }
        for bad in ["http://h:/", "http://:80/", "HTTP://h/", "http://h:-1/"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_results_by_exit() {
        let t = Duration::from_secs(5);
        let failed = |s: &str| Outcome::Failed(s.to_owned());
        let rows = [
            (
                CheckExit::Exited(ChildStatus::Exited(0)),
                "",
                Outcome::Healthy,
            ),
            (
                CheckExit::Exited(ChildStatus::Exited(0)),
                "noise\n",
                Outcome::Healthy,
            ),
            (
                CheckExit::Exited(ChildStatus::Exited(3)),
                "",
                failed("exited with status 3"),
            ),
            (
                CheckExit::Exited(ChildStatus::Signaled(9)),
                "half\n",
                failed("killed by SIGKILL: half"),
            ),
            (
                CheckExit::TimedOut,
                "slow\n",
                failed("timed out after 5s (killed): slow"),
            ),
            (
                CheckExit::SpawnFailed("no sh".into()),
                "out",
                failed("no sh"),
            ),
            (CheckExit::NotRun("stopping".into()), "", failed("stopping")),
        ];
        for (exit, output, want) in rows {
            assert_eq!(command_outcome(&exit, output, t), want, "{exit:?}");
        }
    }

    /// A command check through the monitor: one in flight, its result recorded once, stale ones
    /// and checks that did not run leave no report.
    #[test]
    fn the_monitor_tracks_one_command_check_at_a_time() {
        let started = Instant::now();
        let (mut m, mut results) = Monitor::new(&cfg(2, 0), started);
        let first = m
            .start()
            .expect("a command check is for the process thread");
        assert_eq!((first.id, first.command.as_str()), (1, "true"));
        assert_eq!(first.timeout, Duration::from_secs(5));
        // Another check's end, and a result for no check in flight, are ignored.
        m.check_ended(7, CheckExit::Exited(ChildStatus::Exited(1)), "");
        assert!(results.try_recv().is_err());
        assert_eq!(m.record(7, OK), None);
        m.check_ended(1, CheckExit::Exited(ChildStatus::Exited(1)), "db down\n");
        let (id, outcome) = results.try_recv().expect("the result at once");
        let report = m.record(id, outcome).expect("a report");
        assert_eq!(report.verdict, Verdict::Failing(1));
        assert_eq!((report.failures, report.retries), (1, 2));
        assert!(matches!(&report.outcome, Outcome::Failed(d) if d.ends_with("db down")));
        assert_eq!(m.record(1, OK), None, "recorded once");
        // A check that did not run gives no result and frees the slot.
        let second = m.start().unwrap();
        m.check_ended(second.id, CheckExit::NotRun("stopping".into()), "");
        assert!(results.try_recv().is_err());
        let third = m.start().unwrap();
        assert_eq!(third.id, 3);
        let report = m.record(3, bad()).unwrap();
        assert_eq!(report.verdict, Verdict::Unhealthy(2));
    }

    #[test]
    fn last_line_edges() {
        let exactly = "y".repeat(DETAIL_CHARS);
        let wide = "é".repeat(DETAIL_CHARS + 5);
        let rows = [
            ("  \n\t\n", None),
            ("one", Some("one".to_owned())),
            ("  padded  \n", Some("padded".to_owned())),
            ("a\r\nb\r\n", Some("b".to_owned())),
            (exactly.as_str(), Some(exactly.clone())),
            (wide.as_str(), Some("é".repeat(DETAIL_CHARS) + "…")),
        ];
        for (output, want) in rows {
            assert_eq!(last_line(output), want, "{output:?}");
        }
    }

    #[test]
    fn the_detail_is_the_last_output_line_shortened() {
        assert_eq!(last_line("a\nb\n\n  \n"), Some("b".into()));
        assert_eq!(last_line(""), None);
        let long = "x".repeat(500);
        let d = last_line(&long).unwrap();
        assert_eq!(d.chars().count(), DETAIL_CHARS + 1);
    }
}
