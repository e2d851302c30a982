//! CLI + environment → one validated [`Config`]. Every rule about the input lives here (or in
//! [`crate::core::timing`] for durations), so the rest of the program never sees an impossible value.
//!
//! Depends on the CLI, the timing model and the etcd connection types; nothing downstream.

#![forbid(unsafe_code)]

pub mod cli;
pub mod etcd;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::config::cli::{EtcdArgs, HealthArgs, NotifyArgs, RunArgs};
use crate::config::etcd::{check_endpoint, EndpointFault, EtcdConfig, Secret, TlsFiles};
use crate::core::command::CommandSpec;
use crate::core::lifecycle::{OnChildExit, OnLeaseLost};
use crate::core::timing::{TimingError, TimingInput, TimingModel, MAX_DURATION};
use crate::health::HealthConfig;
use crate::notify_socket::Expectations;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
const MAX_NAME_LEN: usize = 128;
const MAX_ID_LEN: usize = 256;

/// Why the input was refused. Each is a usage error (exit 2); the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Timing(#[from] TimingError),
    #[error("no command given: usage is singleton-exec [OPTIONS] -- COMMAND [ARG]...")]
    EmptyCommand,
    #[error("the command is an empty string")]
    EmptyProgram,
    #[error("election name {0:?} is invalid: use 1 to 128 of A-Z a-z 0-9 '.' '_' '-' (not '.' or '..', no '/')")]
    BadElection(String),
    #[error("cannot derive an election name from the command {0:?}: pass --election NAME")]
    NoDefaultElection(String),
    #[error("--id {0:?} is invalid: it must be 1 to 256 bytes with no control characters")]
    BadId(String),
    #[error(
        "--prefix {0:?} is invalid: use one path segment like /singleton-exec ('/' and 1 to 128 of \
         A-Z a-z 0-9 '.' '_' '-'); a longer prefix such as /a/b would share key space with \
         --prefix /a --election b"
    )]
    BadPrefix(String),
    #[error(
        "{option}: unknown signal {name:?}: use a name like TERM, SIGTERM, QUIT, INT, or a number"
    )]
    BadSignal { option: &'static str, name: String },
    #[error(
        "--stop-signal {0} cannot be caught by a process; use a catchable signal such as TERM"
    )]
    UncatchableStopSignal(Signal),
    #[error(
        "endpoint {0:?} is invalid: {1} (use http://HOST:PORT, https://HOST:PORT or HOST:PORT)"
    )]
    BadEndpoint(String, EndpointFault),
    #[error("--dial-timeout 0s would time out every connection and request: give at least 1ms")]
    ZeroDialTimeout,
    #[error("TLS files were given but endpoint {0:?} is http://; use https:// (or no scheme)")]
    TlsOverHttp(String),
    #[error("--cert and --key must be given together")]
    HalfIdentity,
    #[error("cannot read {what} {path:?}: {source}")]
    UnreadableFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path:?} is not a PEM file (no -----BEGIN line)")]
    NotPem { what: &'static str, path: PathBuf },
    #[error("--health-addr: {0}")]
    BadHealthAddr(String),
    #[error("--resign-signal {0} cannot be caught, is a fault signal (SIGSEGV, SIGABRT, ...), or is SIGTERM/SIGINT/SIGCHLD which have their own meaning")]
    BadResignSignal(Signal),
    #[error("--resign-token-file {0:?} is empty or shorter than 16 characters: put a random token in it (e.g. `head -c 32 /dev/urandom | base64`)")]
    EmptyToken(PathBuf),
    #[error("{0}")]
    BadHealth(String),
    #[error("--password given without --user")]
    PasswordWithoutUser,
    #[error("cannot determine the host name for the default --id: {0}; pass --id")]
    NoHostname(nix::Error),
    #[error(
        "{option} {} is above the limit of {} (rule: every duration is at most {1})",
        humantime::format_duration(*.value),
        humantime::format_duration(MAX_DURATION)
    )]
    DurationTooLong {
        option: &'static str,
        value: Duration,
    },
    #[error(
        "--acquire-timeout 0s would give up before trying once: give a positive duration, or \
         leave it out to wait for leadership forever"
    )]
    ZeroAcquireTimeout,
    #[error(
        "--watchdog {} is too short: at least {} (the child's heartbeat must get through a busy \
         machine's scheduling)",
        humantime::format_duration(*.0),
        humantime::format_duration(MIN_WATCHDOG)
    )]
    WatchdogTooShort(Duration),
    #[error(
        "--ready-timeout 0s would step down before the child could start: give a positive \
         duration, or leave it out to count the child ready once started"
    )]
    ZeroReadyTimeout,
    #[error(
        "{} tune{} a health check, but none is asked for: add --health-cmd or --health-url, or \
         leave {} out (without a check a wedged leader never steps down)",
        .0.join(" and "), if .0.len() == 1 { "s" } else { "" },
        if .0.len() == 1 { "it" } else { "them" }
    )]
    HealthOptionsWithoutCheck(Vec<&'static str>),
    #[error("--once name {0:?} is invalid: use 1 to 128 of A-Z a-z 0-9 '.' '_' '-' (not '.' or '..', no '/')")]
    BadOnceName(String),
    #[error("--once-attempts counts the failed runs of a run-once command: add --once NAME, or leave it out")]
    OnceAttemptsWithoutOnce,
    #[error(
        "--once runs one command at a time across the cluster; --slots {0} runs several: use one          or the other"
    )]
    OnceWithSlots(u32),
    #[error(
        "--once ends a run when its command exits (its status is the outcome; a failed run is          retried by --once-attempts): --on-child-exit {0} does not apply, leave it out"
    )]
    OnceWithOnChildExit(&'static str),
    #[error(
        "--once runs a command to its end, and a health check would stop it midway to run it          again elsewhere: leave {0} out (to bound a run, wrap the command in timeout(1))"
    )]
    OnceWithHealthCheck(&'static str),
    #[error("{0} tunes --hot-standby: add --hot-standby, or leave {0} out")]
    HotOptionWithoutHotStandby(&'static str),
    #[error(
        "--hot-standby runs one leader among standbys; {0} is not supported with it (see \
         docs/hot-standby.md)"
    )]
    HotStandbyWith(&'static str),
    #[error(
        "--role-signal {0} cannot tell the child its role: SIGKILL, SIGSTOP, SIGCHLD and \
         signals raised by faults are reserved, and it must differ from --stop-signal and \
         --resign-signal"
    )]
    BadRoleSignal(Signal),
    #[error(
        "--promote-timeout 0s would fail every promotion: give a positive duration, or leave it \
         out for {}",
        humantime::format_duration(PROMOTE_TIMEOUT)
    )]
    ZeroPromoteTimeout,
}

/// The health check's options, which a [`ConfigError::BadHealth`] message names.
const HEALTH_OPTIONS: [&str; 6] = [
    "--health-cmd",
    "--health-url",
    "--health-interval",
    "--health-timeout",
    "--health-retries",
    "--health-start-period",
];

impl ConfigError {
    /// The options whose values the error is about, so that the message can say which of them
    /// came from a variable ([`crate::config::cli::EnvSources::explain`]).
    pub fn options(&self) -> Vec<&'static str> {
        use ConfigError as E;
        match self {
            E::Timing(t) => t.options().to_vec(),
            E::EmptyCommand | E::EmptyProgram | E::NoDefaultElection(_) | E::NoHostname(_) => {
                vec![]
            }
            E::BadElection(_) => vec!["--election"],
            E::BadId(_) => vec!["--id"],
            E::BadPrefix(_) => vec!["--prefix"],
            E::BadSignal { option, .. } => vec![option],
            E::UncatchableStopSignal(_) => vec!["--stop-signal"],
            E::BadEndpoint(..) => vec!["--endpoints"],
            E::ZeroDialTimeout => vec!["--dial-timeout"],
            E::TlsOverHttp(_) => vec!["--endpoints", "--cacert", "--cert", "--key"],
            E::HalfIdentity => vec!["--cert", "--key"],
            E::UnreadableFile { what, .. } | E::NotPem { what, .. } => vec![what],
            E::BadHealthAddr(_) => vec!["--health-addr"],
            E::BadResignSignal(_) => vec!["--resign-signal"],
            E::EmptyToken(_) => vec!["--resign-token-file"],
            // The health check's messages name their options.
            E::BadHealth(why) => HEALTH_OPTIONS
                .into_iter()
                .filter(|o| names_option(why, o))
                .collect(),
            E::PasswordWithoutUser => vec!["--password", "--user"],
            E::DurationTooLong { option, .. } => vec![option],
            E::ZeroAcquireTimeout => vec!["--acquire-timeout"],
            E::HealthOptionsWithoutCheck(given) => given.clone(),
            E::BadOnceName(_) => vec!["--once"],
            E::OnceAttemptsWithoutOnce => vec!["--once-attempts", "--once"],
            E::OnceWithSlots(_) => vec!["--once", "--slots"],
            E::OnceWithOnChildExit(_) => vec!["--once", "--on-child-exit"],
            E::OnceWithHealthCheck(option) => vec!["--once", option],
            E::WatchdogTooShort(_) => vec!["--watchdog"],
            E::ZeroReadyTimeout => vec!["--ready-timeout"],
            E::HotOptionWithoutHotStandby(option) => vec![option, "--hot-standby"],
            E::HotStandbyWith(option) => vec!["--hot-standby", option],
            E::BadRoleSignal(_) => vec!["--role-signal"],
            E::ZeroPromoteTimeout => vec!["--promote-timeout"],
        }
    }
}

/// Whether `message` names `option` (`--health-timeout`, not as part of a longer option).
fn names_option(message: &str, option: &str) -> bool {
    message.match_indices(option).any(|(i, _)| {
        let next = message[i + option.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Everything the supervising mode runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd: EtcdConfig,
    pub election: String,
    pub prefix: String,
    pub id: String,
    pub timing: TimingModel,
    pub stop_signal: Signal,
    pub on_lease_lost: OnLeaseLost,
    pub on_child_exit: OnChildExit,
    pub acquire_timeout: Option<Duration>,
    /// How many copies run across the replicas (`--slots`); 1 is the singleton.
    pub slots: u32,
    pub command: CommandSpec,
    pub health_addr: Option<std::net::SocketAddr>,
    pub resign_signal: Option<Signal>,
    pub resign_holdoff: Duration,
    /// The bearer token `POST /resign` requires, from `--resign-token-file`.
    pub resign_token: Option<Secret>,
    /// The leader's health check of its child, if asked for.
    pub health: Option<HealthConfig>,
    /// `--once NAME`: run the command once across the cluster, to success.
    pub once: Option<OnceConfig>,
    /// What the leader expects its child to say on its notify socket (`--watchdog`,
    /// `--ready-timeout`).
    pub notify: Expectations,
    /// `--hot-standby`: the child runs on every replica, and one is told it leads.
    pub hot: Option<HotStandby>,
}

/// `--hot-standby` with `--role-signal` and `--promote-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotStandby {
    pub role_signal: Signal,
    pub promote_timeout: Duration,
}

/// `--promote-timeout`'s default: long enough for a child to finish what it was doing and take
/// up the leader's work, short enough that a child that never answers costs a failover little.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// `--once NAME` and `--once-attempts N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnceConfig {
    /// The run-once name, one path segment of its etcd keys.
    pub name: String,
    /// The failed runs, across the cluster, after which every waiter gives up (1: no retry).
    pub attempts: u32,
}

/// Reads an environment variable, treating unset and empty alike.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// What a replica's timing figures depend on (`singleton-exec timing`): its timing model and its
/// health check, validated as [`Config::from_args`] validates them. Nothing else is checked.
#[derive(Debug, Clone)]
pub struct TimingConfig {
    pub timing: TimingModel,
    pub health: Option<HealthConfig>,
    /// `--hot-standby`: the demotion's bound and the promotion's timeout.
    pub hot: Option<HotStandby>,
}

impl TimingConfig {
    pub fn from_args(args: RunArgs) -> Result<TimingConfig, ConfigError> {
        Ok(TimingConfig {
            timing: TimingModel::new(timing_input(&args))?,
            hot: hot_standby(&args)?,
            health: health_config(args.health)?,
        })
    }
}

/// `--ttl`, `--keepalive-interval`, `--grace`, `--margin`, for the timing model's rules.
fn timing_input(args: &RunArgs) -> TimingInput {
    TimingInput {
        ttl: Some(args.ttl),
        keepalive_interval: args.keepalive_interval,
        grace: args.grace,
        margin: args.margin,
    }
}

impl Config {
    pub fn from_args(args: RunArgs) -> Result<Config, ConfigError> {
        let timing = timing_input(&args);
        let once = once_config(&args)?;
        let hot = hot_standby(&args)?;
        let command = command_spec(args.command)?;
        let election = election_name(args.election, &command.program)?;
        Ok(Config {
            once,
            id: replica_id(args.id)?,
            prefix: validate_prefix(&args.prefix)?,
            timing: TimingModel::new(timing)?,
            stop_signal: stop_signal(&args.stop_signal)?,
            health_addr: args
                .health_addr
                .as_deref()
                .map(parse_addr)
                .transpose()
                .map_err(ConfigError::BadHealthAddr)?,
            resign_signal: args
                .resign_signal
                .as_deref()
                .map(resign_signal)
                .transpose()?,
            resign_token: args
                .resign_token_file
                .as_deref()
                .map(read_token)
                .transpose()?,
            health: health_config(args.health)?,
            notify: expectations(args.notify)?,
            hot,
            resign_holdoff: at_most_max("--resign-holdoff", args.resign_holdoff)?,
            etcd: etcd_config(args.etcd)?,
            election,
            on_lease_lost: args.on_lease_lost,
            on_child_exit: args.on_child_exit,
            acquire_timeout: args.acquire_timeout.map(acquire_timeout).transpose()?,
            slots: args.slots,
            command,
        })
    }
}

/// The words after `--`: a program that is not empty, and its arguments.
fn command_spec(words: Vec<OsString>) -> Result<CommandSpec, ConfigError> {
    let mut words = words.into_iter();
    let program = words.next().ok_or(ConfigError::EmptyCommand)?;
    if program.is_empty() {
        return Err(ConfigError::EmptyProgram);
    }
    Ok(CommandSpec {
        program,
        args: words.collect(),
    })
}

/// A duration option within [`MAX_DURATION`], so that adding it to an instant (a deadline, a
/// sleep) can never overflow. The timing options have their own rules ([`TimingModel::new`]), the
/// health check's its own ([`HealthConfig::new`]).
pub fn at_most_max(option: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if value > MAX_DURATION {
        return Err(ConfigError::DurationTooLong { option, value });
    }
    Ok(value)
}

impl Config {
    /// Settings that do nothing in this configuration, each with the options it is about: said
    /// as warnings at start-up (the replica runs as it would without them).
    pub fn warnings(&self) -> Vec<(&'static str, &'static [&'static str])> {
        let mut warnings = Vec::new();
        if self.resign_token.is_some() && self.health_addr.is_none() {
            warnings.push((
                "--resign-token-file has no effect without --health-addr (`singleton-exec \
                 resign` needs no token)",
                &["--resign-token-file"][..],
            ));
        }
        warnings
    }
}

/// `--once NAME` and what it cannot go with. A run-once command runs one child at a time (no
/// `--slots`), to its end: its exit is the outcome (no `--on-child-exit` but the default, exit),
/// and nothing stops it midway to run it again elsewhere (no health check). `--once-attempts`
/// alone would do nothing: refused, as a health option without a check is.
fn once_config(args: &RunArgs) -> Result<Option<OnceConfig>, ConfigError> {
    let Some(name) = &args.once else {
        return match args.once_attempts {
            Some(_) => Err(ConfigError::OnceAttemptsWithoutOnce),
            None => Ok(None),
        };
    };
    let name = validate_election(name).map_err(|_| ConfigError::BadOnceName(name.clone()))?;
    if args.slots > 1 {
        return Err(ConfigError::OnceWithSlots(args.slots));
    }
    match args.on_child_exit {
        OnChildExit::Exit => {}
        OnChildExit::Restart => return Err(ConfigError::OnceWithOnChildExit("restart")),
        OnChildExit::Recampaign => return Err(ConfigError::OnceWithOnChildExit("recampaign")),
    }
    let h = &args.health;
    let check = [
        ("--health-cmd", h.health_cmd.is_some()),
        ("--health-url", h.health_url.is_some()),
    ];
    if let Some((option, _)) = check.into_iter().find(|(_, given)| *given) {
        return Err(ConfigError::OnceWithHealthCheck(option));
    }
    Ok(Some(OnceConfig {
        name,
        attempts: args.once_attempts.unwrap_or(1),
    }))
}

/// `--hot-standby`, `--role-signal` and `--promote-timeout`, and what they cannot go with: the
/// slots (several leaders, each promoted on its own, are not built yet) and `--once` (a run to
/// its end has nothing to stand by for). The role signal is one the child can catch and we do
/// not consume.
fn hot_standby(args: &RunArgs) -> Result<Option<HotStandby>, ConfigError> {
    if !args.hot_standby {
        let given = [
            ("--role-signal", args.role_signal.is_some()),
            ("--promote-timeout", args.promote_timeout.is_some()),
        ];
        return match given.into_iter().find(|(_, g)| *g) {
            Some((option, _)) => Err(ConfigError::HotOptionWithoutHotStandby(option)),
            None => Ok(None),
        };
    }
    if args.slots > 1 {
        return Err(ConfigError::HotStandbyWith("--slots"));
    }
    if args.once.is_some() {
        return Err(ConfigError::HotStandbyWith("--once"));
    }
    // The promotion's confirmation (ROLE=leader within --promote-timeout) is the hot child's
    // readiness; its watchdog is not wired to demotion yet.
    if args.notify.watchdog.is_some() {
        return Err(ConfigError::HotStandbyWith("--watchdog"));
    }
    if args.notify.ready_timeout.is_some() {
        return Err(ConfigError::HotStandbyWith("--ready-timeout"));
    }
    let role_signal = match &args.role_signal {
        Some(name) => parse_signal("--role-signal", name)?,
        None => Signal::SIGUSR1,
    };
    let taken = [
        Some(stop_signal(&args.stop_signal)?),
        args.resign_signal
            .as_deref()
            .map(resign_signal)
            .transpose()?,
    ];
    let reserved = matches!(
        role_signal,
        Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGCHLD
    ) || crate::process::signals::is_synchronous(role_signal as i32)
        || taken.contains(&Some(role_signal));
    if reserved {
        return Err(ConfigError::BadRoleSignal(role_signal));
    }
    let promote_timeout = match args.promote_timeout {
        Some(t) if t.is_zero() => return Err(ConfigError::ZeroPromoteTimeout),
        Some(t) => at_most_max("--promote-timeout", t)?,
        None => PROMOTE_TIMEOUT,
    };
    Ok(Some(HotStandby {
        role_signal,
        promote_timeout,
    }))
}

/// `--acquire-timeout`: positive (0 would give up before the first campaign) and bounded.
fn acquire_timeout(value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::ZeroAcquireTimeout);
    }
    at_most_max("--acquire-timeout", value)
}

/// The shortest `--watchdog`: a heartbeat more frequent than this is lost in a busy machine's
/// scheduling (the health checks' interval has the same floor).
pub const MIN_WATCHDOG: Duration = Duration::from_millis(100);

/// `--watchdog` and `--ready-timeout`: bounded, and long enough to mean something.
fn expectations(n: NotifyArgs) -> Result<Expectations, ConfigError> {
    if let Some(w) = n.watchdog {
        if w < MIN_WATCHDOG {
            return Err(ConfigError::WatchdogTooShort(w));
        }
        at_most_max("--watchdog", w)?;
    }
    if let Some(r) = n.ready_timeout {
        if r.is_zero() {
            return Err(ConfigError::ZeroReadyTimeout);
        }
        at_most_max("--ready-timeout", r)?;
    }
    Ok(Expectations {
        watchdog: n.watchdog,
        ready_timeout: n.ready_timeout,
        stop_timeout: None,
    })
}

/// The health check's defaults (shown in `--help`).
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_RETRIES: u32 = 3;

/// `--health-*`: the leader's check of its child, if one was asked for. A setting of the check
/// without a check would do nothing, while whoever gave it believes a wedged leader steps down:
/// refused.
fn health_config(h: HealthArgs) -> Result<Option<HealthConfig>, ConfigError> {
    if h.health_cmd.is_none() && h.health_url.is_none() {
        let given: Vec<&'static str> = [
            ("--health-interval", h.health_interval.is_some()),
            ("--health-timeout", h.health_timeout.is_some()),
            ("--health-retries", h.health_retries.is_some()),
            ("--health-start-period", h.health_start_period.is_some()),
        ]
        .into_iter()
        .filter_map(|(option, given)| given.then_some(option))
        .collect();
        if !given.is_empty() {
            return Err(ConfigError::HealthOptionsWithoutCheck(given));
        }
    }
    HealthConfig::new(
        h.health_cmd,
        h.health_url,
        h.health_interval.unwrap_or(HEALTH_INTERVAL),
        h.health_timeout.unwrap_or(HEALTH_TIMEOUT),
        h.health_retries.unwrap_or(HEALTH_RETRIES),
        h.health_start_period.unwrap_or_default(),
    )
    .map_err(ConfigError::BadHealth)
}

/// `--stop-signal`: one the child can catch, or its grace would mean nothing.
fn stop_signal(name: &str) -> Result<Signal, ConfigError> {
    let sig = parse_signal("--stop-signal", name)?;
    if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
        return Err(ConfigError::UncatchableStopSignal(sig));
    }
    Ok(sig)
}

/// `--election`, or the command's file name.
fn election_name(given: Option<String>, program: &OsString) -> Result<String, ConfigError> {
    match given {
        Some(name) => validate_election(&name),
        None => {
            let base = Path::new(program)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            validate_election(&base)
                .map_err(|_| ConfigError::NoDefaultElection(program.to_string_lossy().into()))
        }
    }
}

/// `--id`, or the host name.
fn replica_id(given: Option<String>) -> Result<String, ConfigError> {
    let id = match given {
        Some(id) => id,
        None => nix::unistd::gethostname()
            .map_err(ConfigError::NoHostname)?
            .to_string_lossy()
            .into_owned(),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(ConfigError::BadId(id));
    }
    Ok(id)
}

/// `--resign-signal`: catchable, readable from the signalfd (not a fault signal, which cannot be
/// blocked), and not one with a meaning of its own.
fn resign_signal(name: &str) -> Result<Signal, ConfigError> {
    let sig = parse_signal("--resign-signal", name)?;
    let reserved = matches!(
        sig,
        Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGTERM | Signal::SIGINT | Signal::SIGCHLD
    );
    if reserved || crate::process::signals::is_synchronous(sig as i32) {
        return Err(ConfigError::BadResignSignal(sig));
    }
    Ok(sig)
}

/// The etcd connection options, with etcdctl's `ETCDCTL_*` variables as fallbacks.
pub fn etcd_config(args: EtcdArgs) -> Result<EtcdConfig, ConfigError> {
    let endpoints = endpoints(args.endpoints, env_var("ETCDCTL_ENDPOINTS"))?;
    let path = |given: Option<PathBuf>, var| given.or_else(|| env_var(var).map(PathBuf::from));
    let tls = tls_files(
        &endpoints,
        path(args.cacert, "ETCDCTL_CACERT"),
        path(args.cert, "ETCDCTL_CERT"),
        path(args.key, "ETCDCTL_KEY"),
    )?;
    let credentials = credentials(
        args.user.or_else(|| env_var("ETCDCTL_USER")),
        args.password.or_else(|| env_var("ETCDCTL_PASSWORD")),
    )?;
    Ok(EtcdConfig {
        endpoints,
        tls,
        credentials,
        dial_timeout: dial_timeout(at_most_max("--dial-timeout", args.dial_timeout)?)?,
    })
}

/// `--dial-timeout`: more than zero, or no call could ever finish.
fn dial_timeout(given: Duration) -> Result<Duration, ConfigError> {
    if given.is_zero() {
        return Err(ConfigError::ZeroDialTimeout);
    }
    Ok(given)
}

/// `--endpoints`, else the comma-separated `from_env` (`ETCDCTL_ENDPOINTS`), else the local
/// default; each trimmed, and refused if it can never name an etcd ([`check_endpoint`]).
fn endpoints(given: Vec<String>, from_env: Option<String>) -> Result<Vec<String>, ConfigError> {
    let listed = match (given.is_empty(), from_env) {
        (false, _) => given,
        (true, Some(list)) => list.split(',').map(str::to_owned).collect(),
        (true, None) => vec![DEFAULT_ENDPOINT.to_owned()],
    };
    let endpoints: Vec<String> = listed.iter().map(|e| e.trim().to_owned()).collect();
    for e in &endpoints {
        check_endpoint(e).map_err(|fault| ConfigError::BadEndpoint(e.clone(), fault))?;
    }
    Ok(endpoints)
}

/// The TLS files, read now; `None` when none is given. TLS files with an `http://` endpoint are
/// a mistake, not a request for plain text.
fn tls_files(
    endpoints: &[String],
    cacert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    if cacert.is_none() && cert.is_none() && key.is_none() {
        return Ok(None);
    }
    if let Some(e) = endpoints.iter().find(|e| e.starts_with("http://")) {
        return Err(ConfigError::TlsOverHttp(e.clone()));
    }
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((read_pem("--cert", &c)?, read_pem("--key", &k)?)),
        (None, None) => None,
        _ => return Err(ConfigError::HalfIdentity),
    };
    let ca = cacert.map(|p| read_pem("--cacert", &p)).transpose()?;
    Ok(Some(TlsFiles { ca, identity }))
}

/// The user and password; a user without a password may be `USER:PASSWORD`, as etcdctl accepts.
fn credentials(
    user: Option<String>,
    password: Option<String>,
) -> Result<Option<(String, Secret)>, ConfigError> {
    let (user, password) = match (user, password) {
        (Some(u), None) => match u.split_once(':') {
            Some((name, pw)) => (Some(name.to_owned()), Some(pw.to_owned())),
            None => (Some(u), None),
        },
        given => given,
    };
    match (user, password) {
        (Some(u), p) => Ok(Some((u, Secret::new(p.unwrap_or_default())))),
        (None, Some(_)) => Err(ConfigError::PasswordWithoutUser),
        (None, None) => Ok(None),
    }
}

/// The token file is read once, at start-up, so a bad file is a usage error; surrounding whitespace
/// (the newline `echo` and editors add) is not part of the token.
/// Shorter tokens are refused (`head -c 32 /dev/urandom | base64` gives 44 characters).
const MIN_TOKEN_LEN: usize = 16;

fn read_token(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::UnreadableFile {
        what: "--resign-token-file",
        path: path.into(),
        source,
    })?;
    let token = text.trim();
    // A short token is guessable: the endpoint is on the network when a token is required.
    if token.len() < MIN_TOKEN_LEN {
        return Err(ConfigError::EmptyToken(path.into()));
    }
    Ok(Secret::new(token.to_owned()))
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::UnreadableFile {
        what,
        path: path.into(),
        source,
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::NotPem {
            what,
            path: path.into(),
        });
    }
    Ok(bytes)
}

/// The prefix is one path segment, so no election's key space can contain another's: with
/// `/a/b` allowed, `--prefix /a --election b` would see `--prefix /a/b`'s candidates as its own.
pub fn validate_prefix(prefix: &str) -> Result<String, ConfigError> {
    match prefix.strip_prefix('/') {
        Some(segment) if validate_election(segment).is_ok() => Ok(prefix.to_owned()),
        _ => Err(ConfigError::BadPrefix(prefix.to_owned())),
    }
}

/// Parses `--health-addr`: `PORT`, `:PORT` (both on loopback) or `HOST:PORT`.
pub fn parse_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    let full = if s.parse::<u16>().is_ok() {
        format!("127.0.0.1:{s}")
    } else if let Some(port) = s.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not PORT, :PORT or HOST:PORT (e.g. 8080, 0.0.0.0:8080)"))
}

/// Election names become one path segment of an etcd key, so they are kept to a safe alphabet.
pub fn validate_election(name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::BadElection(name.to_owned()))
    }
}

/// Accepts `TERM`, `SIGTERM`, `term` and `15`, as the value of `option`.
pub fn parse_signal(option: &'static str, s: &str) -> Result<Signal, ConfigError> {
    let bad = || ConfigError::BadSignal {
        option,
        name: s.to_owned(),
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn election_names() {
        for good in ["myapp", "my-app_1.2", "A"] {
            assert!(validate_election(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "a\u{7f}",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(validate_election(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("-", "TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("-", "sigquit").unwrap(), Signal::SIGQUIT);
        assert_eq!(parse_signal("-", "9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("-", "NOPE").is_err());
        assert!(parse_signal("-", "999").is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn prefixes_are_one_segment() {
        for good in ["/singleton-exec", "/a", "/team_a.prod"] {
            assert!(validate_prefix(good).is_ok(), "{good}");
        }
        for bad in ["", "/", "a", "/a/", "/a/b", "//a", "/a b", "/.."] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_files_are_trimmed_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  abc123-long-enough-token\n").unwrap();
        assert_eq!(
            read_token(&file).unwrap().expose(),
            "abc123-long-enough-token"
        );
        // Guessable tokens are refused.
        std::fs::write(&file, "abc123\n").unwrap();
        assert!(matches!(read_token(&file), Err(ConfigError::EmptyToken(_))));
        std::fs::write(&file, " \n").unwrap();
        assert!(matches!(read_token(&file), Err(ConfigError::EmptyToken(_))));
        assert!(matches!(
            read_token(&dir.path().join("missing")),
            Err(ConfigError::UnreadableFile { .. })
        ));
    }

    /// Tests that parse a command line take turns with the one that sets `SINGLETON_EXEC_*`.
    pub(crate) fn env_lock() -> std::sync::MutexGuard<'static, ()> {
        static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
        ENV.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The variant's name (and the inner one's, for timing errors): what a caller can branch on.
    fn kind<T>(r: &Result<T, ConfigError>) -> String {
        let Err(e) = r else {
            return "Ok".into();
        };
        fn name(s: &str) -> &str {
            &s[..s
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(s.len())]
        }
        // `Timing(TtlTooShort(1s))` → `Timing(TtlTooShort`; `BadSignal("x")` → `BadSignal`.
        let debug = format!("{e:?}");
        match debug.strip_prefix("Timing(") {
            Some(inner) => format!("Timing({}", name(inner)),
            None => name(&debug).to_owned(),
        }
    }

    fn pem_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// Every option's bad values, through clap and `Config::from_args`, in the order they are
    /// checked: the first bad option is the one reported. One row a line: the arguments (split
    /// on spaces; `''` is an empty one, `PEM` and `SHORT_TOKEN` are files made here, `HUGE` and
    /// `MAX` durations near and at the parser's maximum), then the expected result after `=>`.
    /// Durations above the limit are refused, the limit itself is taken; unused health options
    /// (no check asked for) are not checked.
    #[test]
    fn each_bad_option_is_its_own_config_error() {
        let table = "
            -- sleep 1                                             => Ok
            --user u -- x                                          => Ok
            -- ''                                                  => EmptyProgram
            --election a/b -- x                                    => BadElection
            -- /usr/bin/ü                                          => NoDefaultElection
            -- /                                                   => NoDefaultElection
            --prefix /a/b -- x                                     => BadPrefix
            --ttl 1s -- x                                          => Timing(TtlTooShort
            --ttl 2500ms -- x                                      => Timing(TtlNotWholeSeconds
            --margin 1ms -- x                                      => Timing(MarginTooSmall
            --stop-signal KILL -- x                                => UncatchableStopSignal
            --stop-signal nope -- x                                => BadSignal
            --health-addr nowhere -- x                             => BadHealthAddr
            --resign-signal TERM -- x                              => BadResignSignal
            --resign-signal SEGV -- x                              => BadResignSignal
            --resign-signal USR3 -- x                              => BadSignal
            --resign-token-file /nonexistent/t -- x                => UnreadableFile
            --resign-token-file SHORT_TOKEN -- x                   => EmptyToken
            --health-cmd true --health-timeout 20s -- x            => BadHealth
            --health-cmd '' -- x                                   => BadHealth
            --endpoints http:// -- x                               => BadEndpoint
            --endpoints http://e:99999 -- x                        => BadEndpoint
            --endpoints ftp://e:2379 -- x                          => BadEndpoint
            --dial-timeout 0s -- x                                 => ZeroDialTimeout
            --dial-timeout 1ms -- x                                => Ok
            --ttl 99999999999s --grace 1s -- x                     => Timing(TtlTooLong
            --cacert PEM -- x                                      => TlsOverHttp
            --password pw -- x                                     => PasswordWithoutUser
            --stop-signal KILL --ttl 1s -- x                       => Timing(TtlTooShort
            --health-cmd '' --prefix x -- x                        => BadPrefix
            --resign-signal TERM --health-addr x -- x              => BadHealthAddr
            --grace HUGE -- x                                      => Timing(GraceDoesNotFit
            --grace MAX -- x                                       => Timing(GraceDoesNotFit
            --margin HUGE -- x                                     => Timing(GraceDoesNotFit
            --margin MAX -- x                                      => Timing(GraceDoesNotFit
            --keepalive-interval MAX -- x                          => Timing(KeepaliveTooLong
            --ttl MAX -- x                                         => Timing(TtlTooLong
            --ttl 1y -- x                                          => Ok
            --ttl 1y1s -- x                                        => Timing(TtlTooLong
            --acquire-timeout HUGE -- x                            => DurationTooLong
            --acquire-timeout 1y -- x                              => Ok
            --acquire-timeout 0s -- x                              => ZeroAcquireTimeout
            --acquire-timeout 1ns -- x                             => Ok
            --resign-holdoff HUGE -- x                             => DurationTooLong
            --resign-holdoff 1y -- x                               => Ok
            --resign-holdoff 0s -- x                               => Ok
            --dial-timeout MAX -- x                                => DurationTooLong
            --dial-timeout 1y -- x                                 => Ok
            --health-cmd true --health-interval MAX -- x           => BadHealth
            --health-cmd true --health-start-period MAX -- x       => BadHealth
            --health-cmd true --health-timeout MAX -- x            => BadHealth
            --health-cmd true --health-retries 4294967295 -- x     => BadHealth
            --health-interval MAX --health-retries 4294967295 -- x => HealthOptionsWithoutCheck
            --health-interval 5s -- x                              => HealthOptionsWithoutCheck
            --health-timeout 1s --health-start-period 0s -- x      => HealthOptionsWithoutCheck
            --health-retries 1 -- x                                => HealthOptionsWithoutCheck
            --health-url http://h/ --health-retries 1 -- x         => Ok
            --health-cmd true --health-interval 5s -- x            => Ok
            --once m-1 -- x                                        => Ok
            --once m-1 --once-attempts 3 --on-child-exit exit -- x => Ok
            --once a/b -- x                                        => BadOnceName
            --hot-standby -- x                                     => Ok
            --hot-standby --role-signal HUP --promote-timeout 1s -- x => Ok
            --role-signal USR2 -- x                                => HotOptionWithoutHotStandby
            --promote-timeout 1s -- x                              => HotOptionWithoutHotStandby
            --hot-standby --slots 2 -- x                           => HotStandbyWith
            --hot-standby --once m -- x                            => HotStandbyWith
            --hot-standby --watchdog 1s -- x                       => HotStandbyWith
            --hot-standby --ready-timeout 1s -- x                  => HotStandbyWith
            --hot-standby --role-signal KILL -- x                  => BadRoleSignal
            --hot-standby --role-signal SEGV -- x                  => BadRoleSignal
            --hot-standby --role-signal TERM -- x                  => BadRoleSignal
            --hot-standby --role-signal USR2 --resign-signal USR2 -- x => BadRoleSignal
            --hot-standby --stop-signal USR1 -- x                  => BadRoleSignal
            --hot-standby --role-signal NOPE -- x                  => BadSignal
            --hot-standby --promote-timeout 0s -- x                => ZeroPromoteTimeout
            --hot-standby --promote-timeout HUGE -- x              => DurationTooLong
            --once .. -- x                                         => BadOnceName
            --once-attempts 2 -- x                                 => OnceAttemptsWithoutOnce
            --once m --slots 2 -- x                                => OnceWithSlots
            --once m --slots 1 -- x                                => Ok
            --once m --on-child-exit restart -- x                  => OnceWithOnChildExit
            --once m --on-child-exit recampaign -- x               => OnceWithOnChildExit
            --once m --health-cmd true -- x                        => OnceWithHealthCheck
            --once m --health-url http://h/ -- x                   => OnceWithHealthCheck
            --once m --on-lease-lost exit --resign-signal USR1 -- x => Ok
            --watchdog 99ms -- x                                   => WatchdogTooShort
            --watchdog 100ms -- x                                  => Ok
            --watchdog 1y -- x                                     => Ok
            --watchdog HUGE -- x                                   => DurationTooLong
            --ready-timeout 0s -- x                                => ZeroReadyTimeout
            --ready-timeout 1ms -- x                               => Ok
            --ready-timeout HUGE -- x                              => DurationTooLong
        ";
        let dir = tempfile::tempdir().unwrap();
        let pem = pem_file(&dir, "ca.pem", "-----BEGIN CERTIFICATE-----\nx\n");
        let short_token = pem_file(&dir, "token", "short\n");
        let _env = env_lock();
        for row in table.lines().filter(|l| !l.trim().is_empty()) {
            let (args, want) = row.split_once("=>").expect("ARGS => RESULT");
            let args: Vec<&str> = args
                .split_whitespace()
                .map(|a| match a {
                    "''" => "",
                    "PEM" => &pem,
                    "SHORT_TOKEN" => &short_token,
                    "HUGE" => "9999999999999999999s",
                    "MAX" => "18446744073709551615s",
                    a => a,
                })
                .collect();
            assert_eq!(kind(&config_of(&args)), want.trim(), "{args:?}");
        }
    }

    fn config_of(args: &[&str]) -> Result<Config, ConfigError> {
        use clap::Parser;
        let base = [
            "singleton-exec",
            "--id",
            "r1",
            "--endpoints",
            "http://e:2379",
        ];
        let argv = base.iter().chain(args);
        let cli = crate::config::cli::Cli::try_parse_from(argv).expect("arguments");
        Config::from_args(cli.run)
    }

    /// A huge `--ttl` or `--keepalive-interval` is refused by the timing model, whose defaults and
    /// rules multiply them (`ttl * 3 / 10`, `keepalive_interval * 2`), rather than overflowing.
    /// A token for POST /resign without the endpoint that serves it runs, with a warning.
    #[test]
    fn a_resign_token_without_the_endpoint_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let token = pem_file(&dir, "token", "0123456789abcdef0123\n");
        let _env = env_lock();
        let warned = |args: &[&str]| {
            let cfg = config_of(args).expect("a valid configuration");
            cfg.warnings()
                .iter()
                .map(|(w, o)| (w.to_string(), o.to_vec()))
                .collect::<Vec<_>>()
        };
        let w = warned(&["--resign-token-file", &token, "--", "x"]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0]
            .0
            .starts_with("--resign-token-file has no effect without --health-addr"));
        assert_eq!(w[0].1, ["--resign-token-file"]);
        assert!(warned(&["--resign-token-file", &token, "--health-addr", "--", "x"]).is_empty());
        assert!(warned(&["--health-addr", "--", "x"]).is_empty());
        assert!(warned(&["--", "x"]).is_empty());
    }

    /// Each error says which options it is about (so their variables can be named), and its
    /// message names them.
    #[test]
    fn errors_know_their_options() {
        let _env = env_lock();
        let rows: &[(&[&str], &[&str])] = &[
            (&["--ttl", "1s", "--", "x"], &["--ttl"]),
            (
                &["--ttl", "10s", "--grace", "9s", "--", "x"],
                &["--ttl", "--grace", "--margin"],
            ),
            (&["--stop-signal", "NOPE", "--", "x"], &["--stop-signal"]),
            (
                &["--resign-signal", "NOPE", "--", "x"],
                &["--resign-signal"],
            ),
            (
                &["--health-cmd", "true", "--health-timeout", "20s", "--", "x"],
                &["--health-interval", "--health-timeout"],
            ),
            (&["--health-retries", "2", "--", "x"], &["--health-retries"]),
            (
                &["--acquire-timeout", "0s", "--", "x"],
                &["--acquire-timeout"],
            ),
            (&["--dial-timeout", "0s", "--", "x"], &["--dial-timeout"]),
            (&["--health-addr", "nowhere", "--", "x"], &["--health-addr"]),
            (&["--once", "a b", "--", "x"], &["--once"]),
            (
                &["--once-attempts", "2", "--", "x"],
                &["--once-attempts", "--once"],
            ),
            (
                &["--once", "m", "--slots", "3", "--", "x"],
                &["--once", "--slots"],
            ),
            (
                &["--once", "m", "--on-child-exit", "restart", "--", "x"],
                &["--once", "--on-child-exit"],
            ),
            (
                &["--once", "m", "--health-cmd", "true", "--", "x"],
                &["--once", "--health-cmd"],
            ),
        ];
        for (args, want) in rows {
            let e = config_of(args).unwrap_err();
            assert_eq!(e.options(), *want, "{args:?}: {e}");
            for option in *want {
                assert!(e.to_string().contains(option), "{option} in {e}");
            }
        }
        assert!(names_option("--health-timeout 20s", "--health-timeout"));
        assert!(!names_option("--health-timeout-x", "--health-timeout"));
        assert!(!names_option("--health-interval", "--health-timeout"));
    }

    #[test]
    fn health_settings_without_a_check_name_themselves() {
        let _env = env_lock();
        let e = config_of(&["--health-interval", "5s", "--", "x"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--health-interval tunes a health check, but none is asked for: add --health-cmd or \
             --health-url, or leave it out (without a check a wedged leader never steps down)"
        );
        let e = config_of(&["--health-retries", "2", "--health-timeout", "1s", "--", "x"]);
        let e = e.unwrap_err().to_string();
        assert!(
            e.starts_with("--health-timeout and --health-retries tune a health check"),
            "{e}"
        );
        assert!(e.contains("leave them out"), "{e}");
    }

    #[test]
    fn huge_ttl_and_keepalive_interval_are_refused_not_a_panic() {
        let huge = "9999999999999999999s";
        let rows: &[&[&str]] = &[
            &["--ttl", huge, "--", "x"],
            &["--keepalive-interval", huge, "--", "x"],
        ];
        let _env = env_lock();
        for args in rows {
            let got = std::panic::catch_unwind(|| kind(&config_of(args)));
            assert!(
                got.as_ref().is_ok_and(|k| k.starts_with("Timing(")),
                "{args:?}: {got:?}"
            );
        }
    }

    #[test]
    fn the_command_needs_a_program() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(kind(&command_spec(words(&[]))), "EmptyCommand");
        assert_eq!(kind(&command_spec(words(&[""]))), "EmptyProgram");
        let spec = command_spec(words(&["sleep", "", "1"])).unwrap();
        assert_eq!(spec.program, "sleep");
        assert_eq!(spec.args, words(&["", "1"]));
    }

    #[test]
    fn the_election_defaults_to_the_commands_file_name() {
        let rows: &[(Option<&str>, &str, Result<&str, &str>)] = &[
            // (--election, program, expected name or error)
            (None, "/usr/bin/backup.sh", Ok("backup.sh")),
            (None, "worker", Ok("worker")),
            (None, "./bin/my app", Err("NoDefaultElection")),
            (None, "..", Err("NoDefaultElection")),
            (Some("given"), "/usr/bin/ü", Ok("given")),
            (Some(""), "worker", Err("BadElection")),
            (Some("a b"), "worker", Err("BadElection")),
        ];
        for (given, program, want) in rows {
            let got = election_name(given.map(String::from), &OsString::from(program));
            match (want, &got) {
                (Ok(name), Ok(got)) => assert_eq!(got, name),
                (Err(k), _) => assert_eq!(kind(&got), *k, "{given:?} {program}"),
                _ => panic!("{given:?} {program}: {got:?}"),
            }
        }
    }

    #[test]
    fn replica_ids() {
        let rows = [
            ("r1".to_owned(), "Ok"),
            ("host.example:9/ü".to_owned(), "Ok"),
            ("x".repeat(MAX_ID_LEN), "Ok"),
            ("x".repeat(MAX_ID_LEN + 1), "BadId"),
            // Bytes count, not characters: 129 two-byte characters are 258 bytes.
            ("ü".repeat(129), "BadId"),
            (String::new(), "BadId"),
            ("a\nb".to_owned(), "BadId"),
            ("tab\there".to_owned(), "BadId"),
        ];
        for (id, want) in rows {
            assert_eq!(kind(&replica_id(Some(id.clone()))), want, "{id:?}");
        }
    }

    #[test]
    fn stop_and_resign_signals() {
        // A row a line: the name, as --stop-signal, as --resign-signal ('' is the empty name).
        let table = "
            TERM   Ok                     BadResignSignal
            INT    Ok                     BadResignSignal
            CHLD   Ok                     BadResignSignal
            QUIT   Ok                     Ok
            USR1   Ok                     Ok
            hup    Ok                     Ok
            KILL   UncatchableStopSignal  BadResignSignal
            9      UncatchableStopSignal  BadResignSignal
            STOP   UncatchableStopSignal  BadResignSignal
            SEGV   Ok                     BadResignSignal
            ABRT   Ok                     BadResignSignal
            NOPE   BadSignal              BadSignal
            ''     BadSignal              BadSignal
        ";
        for row in table.lines().filter(|l| !l.trim().is_empty()) {
            let [name, as_stop, as_resign] = row.split_whitespace().collect::<Vec<_>>()[..] else {
                panic!("a row has three columns: {row}");
            };
            let name = if name == "''" { "" } else { name };
            assert_eq!(kind(&stop_signal(name)), as_stop, "--stop-signal {name}");
            assert_eq!(
                kind(&resign_signal(name)),
                as_resign,
                "--resign-signal {name}"
            );
        }
    }

    #[test]
    fn signal_names_and_numbers() {
        let rows: &[(&str, Option<Signal>)] = &[
            ("TERM", Some(Signal::SIGTERM)),
            ("SIGTERM", Some(Signal::SIGTERM)),
            ("term", Some(Signal::SIGTERM)),
            ("sigterm", Some(Signal::SIGTERM)),
            ("15", Some(Signal::SIGTERM)),
            ("1", Some(Signal::SIGHUP)),
            ("RTMIN", None),
            ("0", None),
            ("-15", None),
            ("65", None),
            ("SIG", None),
            (" TERM", None),
            ("SIGSIGTERM", None),
        ];
        for (s, want) in rows {
            assert_eq!(parse_signal("--stop-signal", s).ok(), *want, "{s:?}");
        }
    }

    #[test]
    fn endpoints_come_from_the_flag_then_etcdctls_variable_then_the_default() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        type Row<'a> = (
            &'a [&'a str],
            Option<&'a str>,
            Result<&'a [&'a str], &'a str>,
        );
        let rows: &[Row] = &[
            (&[], None, Ok(&[DEFAULT_ENDPOINT])),
            (
                &[],
                Some("http://a:1,https://b:2"),
                Ok(&["http://a:1", "https://b:2"]),
            ),
            (&["c:3"], Some("http://a:1"), Ok(&["c:3"])),
            (&[" c:3 ", "d:4\n"], None, Ok(&["c:3", "d:4"])),
            (&[], Some(" a:1 , b:2"), Ok(&["a:1", "b:2"])),
            (&["http://"], None, Err("http://")),
            (&["https://"], None, Err("https://")),
            (&[""], None, Err("")),
            (&["a b:1"], None, Err("a b:1")),
            (&[], Some("a:1,,b:2"), Err("")),
        ];
        for (given, env, want) in rows {
            let got = endpoints(list(given), env.map(String::from));
            match (want, got) {
                (Ok(want), Ok(got)) => assert_eq!(got, list(want), "{given:?} {env:?}"),
                (Err(bad), Err(ConfigError::BadEndpoint(e, _))) => assert_eq!(e, *bad),
                (_, got) => panic!("{given:?} {env:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn credentials_like_etcdctl() {
        let s = |v: &str| Some(v.to_owned());
        // (user, password, expected user and password, or the error)
        let rows = [
            (None, None, Ok(None)),
            (s("u"), None, Ok(Some(("u", "")))),
            (s("u"), s("pw"), Ok(Some(("u", "pw")))),
            (s("u:pw"), None, Ok(Some(("u", "pw")))),
            (s("u:pw:more"), None, Ok(Some(("u", "pw:more")))),
            // A password given apart wins: the colon is part of the name.
            (s("u:x"), s("pw"), Ok(Some(("u:x", "pw")))),
            (None, s("pw"), Err("PasswordWithoutUser")),
        ];
        for (user, password, want) in rows {
            let got = credentials(user.clone(), password.clone());
            match (want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(
                    got.as_ref().map(|(u, p)| (u.as_str(), p.expose())),
                    want,
                    "{user:?}"
                ),
                (Err(k), _) => assert_eq!(kind(&got), k),
                _ => panic!("{user:?} {password:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn tls_files_are_read_and_checked_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let pem = Some(PathBuf::from(pem_file(
            &dir,
            "a.pem",
            "-----BEGIN X-----\n",
        )));
        let der = Some(PathBuf::from(pem_file(&dir, "a.der", "0\u{82}binary")));
        let missing = Some(dir.path().join("missing.pem"));
        let https = vec!["https://e:2379".to_owned(), "e2:2379".to_owned()];
        let http = vec!["e2:2379".to_owned(), "http://e:2379".to_owned()];
        // (endpoints, cacert, cert, key, expected)
        let rows = [
            (&http, None, None, None, "none"),
            (&https, pem.clone(), None, None, "ca"),
            (&https, pem.clone(), pem.clone(), pem.clone(), "ca+identity"),
            (&https, None, pem.clone(), pem.clone(), "identity"),
            (&http, pem.clone(), None, None, "TlsOverHttp"),
            (&https, None, pem.clone(), None, "HalfIdentity"),
            (&https, None, None, pem.clone(), "HalfIdentity"),
            (&https, der.clone(), None, None, "NotPem"),
            (&https, None, pem.clone(), der.clone(), "NotPem"),
            (&https, missing.clone(), None, None, "UnreadableFile"),
        ];
        for (i, (endpoints, ca, cert, key, want)) in rows.into_iter().enumerate() {
            let got = tls_files(endpoints, ca, cert, key);
            let shown = match &got {
                Ok(None) => "none".to_owned(),
                Ok(Some(t)) => match (&t.ca, &t.identity) {
                    (Some(_), Some(_)) => "ca+identity".into(),
                    (Some(_), None) => "ca".into(),
                    (None, Some(_)) => "identity".into(),
                    (None, None) => "empty".into(),
                },
                Err(_) => kind(&got),
            };
            assert_eq!(shown, want, "row {i}");
        }
    }

    #[test]
    fn health_addr_forms() {
        assert_eq!(parse_addr("8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(parse_addr(":9").unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert!(parse_addr("localhost").is_err());
    }

    #[test]
    fn more_health_addr_forms() {
        let rows = [
            (" 9090 ", Some("127.0.0.1:9090")),
            ("0", Some("127.0.0.1:0")),
            ("[::1]:80", Some("[::1]:80")),
            ("[::]:8080", Some("[::]:8080")),
            (":65535", Some("127.0.0.1:65535")),
            ("65536", None),
            (":65536", None),
            ("", None),
            (":", None),
            ("-1", None),
            ("localhost:80", None),
            ("::1:80", None),
        ];
        for (given, want) in rows {
            let got = parse_addr(given).ok().map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{given:?}");
        }
    }
}
