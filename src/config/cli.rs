//! What the user typed: the clap definition of every flag, its environment variable and its default.
//!
//! Nothing here is validated beyond parsing; [`crate::config`] turns this into a [`crate::config::Config`]
//! the program runs on. Every option can also come from `SINGLETON_EXEC_<OPTION>`; the etcd connection
//! options fall back to etcdctl's `ETCDCTL_*` variables (resolved in the config step, since clap reads one
//! variable per option).
//!
//! [`parse`] also records which options took their value from a variable ([`EnvSources`]), so
//! that an error about such a value names the variable the user has to change, and it says
//! `did you mean`, as for a flag, when a mistyped subcommand would otherwise run as a command
//! ([`mistyped_subcommand`]).

use crate::core::lifecycle::{OnChildExit, OnLeaseLost};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{
    ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
};

use crate::core::exit_code::HELP_TABLE;

/// Where elections live unless `--prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/singleton-exec";
/// The most slots an election can have (`--slots`): every holder and `status` read them all.
pub const MAX_SLOTS: u32 = 1024;
/// The most attempts `--once-attempts` allows: a bound on the runs one failing command gets.
pub const MAX_ONCE_ATTEMPTS: u32 = 1000;

/// Run exactly one copy of COMMAND across all replicas, elected through an etcd lease.
///
/// Every replica campaigns in the same etcd election. Only the leader runs COMMAND (exec'd directly,
/// no shell). If the lease cannot be renewed in time, the command's process tree is stopped (stop
/// signal, grace, SIGKILL) before etcd can expire the lease and let another replica win.
#[derive(Debug, Parser)]
#[command(
    name = "singleton-exec",
    version,
    after_long_help = HELP_TABLE,
    after_help = HELP_TABLE,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    override_usage = "singleton-exec [OPTIONS] -- COMMAND [ARG]...\n       singleton-exec --once NAME [OPTIONS] -- COMMAND [ARG]...\n       singleton-exec status [OPTIONS]\n       singleton-exec resign [OPTIONS]\n       singleton-exec timing [OPTIONS] [-- COMMAND [ARG]...]\n       singleton-exec once clear [OPTIONS] NAME"
)]
pub struct Cli {
    #[command(subcommand)]
    pub subcommand: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the current leader of an election (id, key, lease, fencing revision) and every
    /// candidate in queue order. Exits 0 if there is a leader, 1 if there is none.
    Status(StatusArgs),
    /// Ask the current leader to step down gracefully (planned switchover), from any machine with
    /// etcd access. Exits 0 once it has, 1 if there is no leader, 124 after --timeout.
    Resign(ResignArgs),
    /// Print the worst-case timing of a replica's configuration, from the timing model: the etcd
    /// outage survived without a stop, the takeover after a crash of the leader's host and after a
    /// graceful stop, and the stop and kill deadlines after the last acknowledged keepalive.
    /// Takes the replica's options and SINGLETON_EXEC_* variables (a command after -- is not run;
    /// options the figures do not depend on are not checked). Exits 0, or 2 for a configuration
    /// the replica would refuse.
    // The command a replica needs is optional here: `timing` put before a replica's whole
    // command line prints that replica's figures.
    #[command(mut_arg("command", |a| a.required(false)))]
    Timing(Box<TimingArgs>),
    /// Manage the outcomes of run-once commands (--once NAME): once clear NAME forgets an
    /// outcome, so that the next invocation with that NAME runs its command again.
    Once(OnceArgs),
}

#[derive(Debug, Args)]
pub struct OnceArgs {
    #[command(subcommand)]
    pub action: OnceAction,
}

#[derive(Debug, Subcommand)]
pub enum OnceAction {
    /// Forget the outcome of a run-once command (its completion record and its attempts), so the
    /// next --once NAME invocation runs the command again. Refused while replicas wait or run
    /// under NAME (a key in its queue, or a tree marker: a runner not yet gone), unless --force. Exits 0 once cleared (also when there was nothing to clear), 1
    /// when refused.
    Clear(OnceClearArgs),
}

#[derive(Debug, Args)]
pub struct OnceClearArgs {
    /// The run-once name (--once NAME) whose outcome to forget.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Election the run-once command runs in (as given to the replicas; by default their
    /// command's file name).
    #[arg(long, env = "SINGLETON_EXEC_ELECTION", required = true)]
    pub election: String,

    /// Key prefix under which elections live (as given to the replicas).
    #[arg(long, env = "SINGLETON_EXEC_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    /// Clear even while replicas wait or run under NAME: a run in progress is not stopped, and
    /// its outcome is recorded when it ends.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// The options whose values came from a variable.
    #[arg(skip)]
    pub sources: EnvSources,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON object (`status --watch`: one per line).
    Json,
}

#[derive(Debug, Args)]
pub struct ResignArgs {
    /// Election whose leader should step down.
    #[arg(long, env = "SINGLETON_EXEC_ELECTION", required = true)]
    pub election: String,

    /// Key prefix under which elections live (as given to the replicas).
    #[arg(long, env = "SINGLETON_EXEC_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    /// With `--slots N`: the slot (0..N-1) whose holder should step down. Required for an
    /// election with slots.
    #[arg(long, allow_negative_numbers = true)]
    pub slot: Option<u32>,

    /// Give up (exit 124) if the leader has not stepped down after this long.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true, default_value = "10s")]
    pub timeout: Duration,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// The options whose values came from a variable.
    #[arg(skip)]
    pub sources: EnvSources,
}

#[derive(Debug, Args)]
pub struct TimingArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Election to read.
    #[arg(long, env = "SINGLETON_EXEC_ELECTION", required = true)]
    pub election: String,

    /// Key prefix under which elections live (as given to the replicas).
    #[arg(long, env = "SINGLETON_EXEC_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Keep running and print the leader again on every change (one line, or one JSON object per
    /// line), until SIGINT or SIGTERM (then exit 0).
    #[arg(long)]
    pub watch: bool,

    /// Show the run-once command NAME of the election (--once NAME) instead of its leader: its
    /// state (done, running, failed or none), attempts, exit code, and who ran it or runs it.
    /// Exits 0 when it is done, 1 otherwise.
    #[arg(long, value_name = "NAME", conflicts_with = "watch")]
    pub once: Option<String>,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// The options whose values came from a variable.
    #[arg(skip)]
    pub sources: EnvSources,
}

/// Options of the supervising (default) mode.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,

    /// Election name: replicas with the same name share one leader. Letters, digits, '.', '_', '-'.
    /// [default: the file name of COMMAND]
    #[arg(long, env = "SINGLETON_EXEC_ELECTION")]
    pub election: Option<String>,

    /// This replica's identity, stored as the election value and shown by `status`. [default: host name]
    #[arg(long, env = "SINGLETON_EXEC_ID")]
    pub id: Option<String>,

    /// Run N copies across the replicas instead of one, each holding a slot 0..N-1 (given to the
    /// child as SINGLETON_EXEC_SLOT). Every replica of the election must use the same N; a replica
    /// that finds another N in etcd exits with code 2. 1 keeps the singleton's etcd keys exactly.
    #[arg(long, env = "SINGLETON_EXEC_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SLOTS)), allow_negative_numbers = true)]
    pub slots: u32,

    /// Lease TTL, whole seconds, from 2s to 1year. A crashed leader is replaced after about this long.
    #[arg(long, env = "SINGLETON_EXEC_TTL", value_parser = parse_duration, allow_hyphen_values = true, default_value = "10s")]
    pub ttl: Duration,

    /// Time between the stop signal and SIGKILL. [default: 30% of --ttl]
    #[arg(long, env = "SINGLETON_EXEC_GRACE", value_parser = parse_duration, allow_hyphen_values = true)]
    pub grace: Option<Duration>,

    /// Slack kept between SIGKILL and the earliest moment etcd may expire the lease. [default: 10% of --ttl]
    #[arg(long, env = "SINGLETON_EXEC_MARGIN", value_parser = parse_duration, allow_hyphen_values = true)]
    pub margin: Option<Duration>,

    /// Time between keepalives while all is well. [default: 10% of --ttl]
    #[arg(long, env = "SINGLETON_EXEC_KEEPALIVE_INTERVAL", value_parser = parse_duration, allow_hyphen_values = true)]
    pub keepalive_interval: Option<Duration>,

    /// Signal that asks the child to stop (name like TERM or SIGTERM, or a number).
    #[arg(
        long,
        env = "SINGLETON_EXEC_STOP_SIGNAL",
        default_value = "TERM",
        allow_hyphen_values = true
    )]
    pub stop_signal: String,

    /// What to do when leadership is lost: stop the child, then campaign again or exit (code 122).
    #[arg(long, env = "SINGLETON_EXEC_ON_LEASE_LOST", value_enum, default_value_t = OnLeaseLost::Recampaign)]
    pub on_lease_lost: OnLeaseLost,

    /// What to do when the child exits while leader: give up leadership and exit with its status,
    /// restart it (with backoff) while still leader, or give up leadership and campaign again.
    #[arg(long, env = "SINGLETON_EXEC_ON_CHILD_EXIT", value_enum, default_value_t = OnChildExit::Exit)]
    pub on_child_exit: OnChildExit,

    /// Give up (exit 124) if not leader after this long (with --once: if the outcome is not known
    /// by then); more than 0. [default: wait forever]
    #[arg(long, env = "SINGLETON_EXEC_ACQUIRE_TIMEOUT", value_parser = parse_duration, allow_hyphen_values = true)]
    pub acquire_timeout: Option<Duration>,

    /// Run COMMAND once across the cluster, to success: every invocation with this NAME (and
    /// election) joins one queue; the first to lead runs COMMAND, the others wait. Its success is
    /// recorded in etcd, and every waiter, and every later invocation, exits 0 without running
    /// it. A failed run is counted, and the next waiter runs it again, up to --once-attempts
    /// runs; then every waiter exits with the failed run's status. A run cut short (a crash, a
    /// lost lease) is run again: at least once, never two at a time. singleton-exec once clear
    /// NAME forgets the outcome. Letters, digits, '.', '_', '-'.
    #[arg(long, env = "SINGLETON_EXEC_ONCE", value_name = "NAME")]
    pub once: Option<String>,

    /// With --once: how many failed runs, across the cluster, before every waiter gives up and
    /// exits with the last failed run's status. 1 (the default) means no retry. [default: 1]
    #[arg(long, env = "SINGLETON_EXEC_ONCE_ATTEMPTS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_ONCE_ATTEMPTS)), allow_negative_numbers = true)]
    pub once_attempts: Option<u32>,

    /// Serve /healthz, /leader, /status, /metrics and POST /resign on PORT, :PORT or HOST:PORT
    /// (loopback unless a host is given). Off unless given; without a value, 127.0.0.1:8080.
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub health_addr: Option<String>,

    /// A signal that makes the leader step down (stop the child, revoke, hold off, campaign again)
    /// instead of being forwarded to the child. [default: none, every signal reaches the child]
    #[arg(
        long,
        env = "SINGLETON_EXEC_RESIGN_SIGNAL",
        value_name = "SIGNAL",
        allow_hyphen_values = true
    )]
    pub resign_signal: Option<String>,

    /// Hot standby: COMMAND runs on every replica at once, as a standby, and one of them is
    /// told it leads. Its role is in SINGLETON_EXEC_ROLE at start (standby or leader), in the
    /// file named by SINGLETON_EXEC_ROLE_FILE (one line: `leader REVISION` or `standby`, replaced
    /// atomically), and --role-signal follows every change. The child confirms with ROLE=leader
    /// or ROLE=standby on its notify socket. A leader that must stop leading tells its child
    /// `standby` and gives the lease up only once the child confirms, or once its tree is
    /// killed, which happens before the lease can expire. Not with --slots, --once, --watchdog
    /// or --ready-timeout (see docs/hot-standby.md).
    #[arg(long, env = "SINGLETON_EXEC_HOT_STANDBY", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0, default_missing_value = "true", default_value = "false")]
    pub hot_standby: bool,

    /// With --hot-standby: the signal the child gets after every change of its role file.
    /// [default: SIGUSR1]
    #[arg(
        long,
        env = "SINGLETON_EXEC_ROLE_SIGNAL",
        value_name = "SIGNAL",
        allow_hyphen_values = true
    )]
    pub role_signal: Option<String>,

    /// With --hot-standby: a promoted child that has not confirmed (ROLE=leader) within this long
    /// is handled as a child that failed to start: its tree is stopped, the lease given up so
    /// another replica can try, and it is started again as a standby per --on-child-exit.
    /// [default: 10s]
    #[arg(long, env = "SINGLETON_EXEC_PROMOTE_TIMEOUT", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub promote_timeout: Option<Duration>,

    /// File holding the bearer token that POST /resign requires (read at start-up, trimmed). Without
    /// it, POST /resign is open on a loopback --health-addr and off on any other. Without
    /// --health-addr there is no POST /resign: a warning says so.
    #[arg(long, env = "SINGLETON_EXEC_RESIGN_TOKEN_FILE", value_name = "FILE")]
    pub resign_token_file: Option<PathBuf>,

    /// After stepping down, wait this long before campaigning again, so a standby takes over.
    #[arg(long, env = "SINGLETON_EXEC_RESIGN_HOLDOFF", value_parser = parse_duration, allow_hyphen_values = true, default_value = "2s")]
    pub resign_holdoff: Duration,

    /// Key prefix under which elections live, one path segment; the election's keys are PREFIX/NAME/.
    #[arg(long, env = "SINGLETON_EXEC_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    #[command(flatten)]
    pub health: HealthArgs,

    #[command(flatten)]
    pub notify: NotifyArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// The command to run while leader, and its arguments (after `--`).
    #[arg(trailing_var_arg = true, value_name = "COMMAND", required = true)]
    pub command: Vec<OsString>,

    /// The options whose values came from a variable.
    #[arg(skip)]
    pub sources: EnvSources,
}

/// The leader's health check of its child (named after Docker's HEALTHCHECK options). After
/// --health-retries failures in a row the leader steps down: the child is stopped, the lease
/// revoked, a standby takes over, and this replica waits --resign-holdoff before campaigning again.
#[derive(Debug, Args, Clone)]
pub struct HealthArgs {
    /// Health check command, run with `/bin/sh -c` while leading; exit status 0 is healthy.
    /// [default: no health check]
    #[arg(
        long,
        env = "SINGLETON_EXEC_HEALTH_CMD",
        value_name = "CMD",
        conflicts_with = "health_url"
    )]
    pub health_cmd: Option<String>,

    /// Health check by HTTP GET of an http:// URL; a 2xx status is healthy. Needs no shell, so it
    /// works in FROM-scratch images. [default: no health check]
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_URL", value_name = "URL")]
    pub health_url: Option<String>,

    /// Time between health checks; the first runs this long after the child starts. Only with
    /// --health-cmd or --health-url (alone it is a usage error). [default: 10s]
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_INTERVAL", value_parser = parse_duration, allow_hyphen_values = true)]
    pub health_interval: Option<Duration>,

    /// A check that takes longer fails (a command is killed with its process group). At most
    /// --health-interval. Only with a check. [default: 5s]
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_TIMEOUT", value_parser = parse_duration, allow_hyphen_values = true)]
    pub health_timeout: Option<Duration>,

    /// Consecutive failed checks that make the leader step down; times --health-interval at most
    /// 1year. Only with a check. [default: 3]
    #[arg(
        long,
        env = "SINGLETON_EXEC_HEALTH_RETRIES",
        allow_negative_numbers = true
    )]
    pub health_retries: Option<u32>,

    /// Failed checks during this time after the child starts are not counted (until the first
    /// check passes). Only with a check. [default: 0s]
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_START_PERIOD", value_parser = parse_duration, allow_hyphen_values = true)]
    pub health_start_period: Option<Duration>,
}

/// What the leader expects its child to say on its notify socket. The child always gets one
/// (NOTIFY_SOCKET, as under systemd's Type=notify): READY=1, STATUS=, WATCHDOG=1,
/// WATCHDOG=trigger, STOPPING=1 and EXTEND_TIMEOUT_USEC= are read from its process tree, and
/// STATUS and readiness are shown by `status` and /status.
#[derive(Debug, Args, Clone)]
pub struct NotifyArgs {
    /// The child must send WATCHDOG=1 at least this often (it gets WATCHDOG_USEC and
    /// WATCHDOG_PID, as under systemd's WatchdogSec=): a leader whose child misses it, or sends
    /// WATCHDOG=trigger, steps down (the child stopped, a standby takes over). Counted from the
    /// child's start, or from its READY=1 with --ready-timeout. At least 100ms. [default: no
    /// watchdog; WATCHDOG=trigger still steps down]
    #[arg(long, env = "SINGLETON_EXEC_WATCHDOG", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub watchdog: Option<Duration>,

    /// The child must send READY=1 within this long of its start (systemd's Type=notify; an
    /// EXTEND_TIMEOUT_USEC= before it gives more time): until it has, /leader answers 503, and a
    /// leader whose child does not steps down so another replica can try. [default: the child
    /// is ready once started]
    #[arg(long, env = "SINGLETON_EXEC_READY_TIMEOUT", value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub ready_timeout: Option<Duration>,
}

/// How to reach etcd. Shared by the supervisor and `status`.
#[derive(Debug, Args, Clone)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated, each http://HOST:PORT, https://HOST:PORT or HOST:PORT. Falls
    /// back to ETCDCTL_ENDPOINTS. [default: http://127.0.0.1:2379]
    #[arg(long, env = "SINGLETON_EXEC_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,

    /// CA certificate (PEM) to verify etcd's server certificate. Falls back to ETCDCTL_CACERT.
    #[arg(long, env = "SINGLETON_EXEC_CACERT")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS. Falls back to ETCDCTL_CERT.
    #[arg(long, env = "SINGLETON_EXEC_CERT")]
    pub cert: Option<PathBuf>,

    /// Client private key (PEM) for mutual TLS. Falls back to ETCDCTL_KEY.
    #[arg(long, env = "SINGLETON_EXEC_KEY")]
    pub key: Option<PathBuf>,

    /// etcd user name. Falls back to ETCDCTL_USER (which may be USER:PASSWORD).
    #[arg(long, env = "SINGLETON_EXEC_USER")]
    pub user: Option<String>,

    /// etcd password; prefer the environment variable. Never logged. Falls back to ETCDCTL_PASSWORD.
    #[arg(long, env = "SINGLETON_EXEC_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Timeout of each etcd request and of connecting; more than 0s.
    #[arg(long, env = "SINGLETON_EXEC_DIAL_TIMEOUT", value_parser = parse_duration, allow_hyphen_values = true, default_value = "5s")]
    pub dial_timeout: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, env = "SINGLETON_EXEC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log detail (-q warnings only, -qq errors only).
    #[arg(short, long, action = ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// etcdctl's variables that the connection options fall back to (read in the config step).
pub const ETCDCTL_FALLBACKS: [(&str, &str); 6] = [
    ("--endpoints", "ETCDCTL_ENDPOINTS"),
    ("--cacert", "ETCDCTL_CACERT"),
    ("--cert", "ETCDCTL_CERT"),
    ("--key", "ETCDCTL_KEY"),
    ("--user", "ETCDCTL_USER"),
    ("--password", "ETCDCTL_PASSWORD"),
];

/// Which options of one command line took their value from an environment variable, as
/// (`--option`, `VARIABLE`): a `SINGLETON_EXEC_*` variable clap read, or an `ETCDCTL_*` one the
/// config step falls back to for an option given neither way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSources(Vec<(String, String)>);

impl EnvSources {
    /// What `matches` (of `cmd`, the command that ran) say, with `var` reading the environment.
    fn of(cmd: &clap::Command, matches: &ArgMatches, var: impl Fn(&str) -> Option<String>) -> Self {
        let mut found = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long().map(|l| format!("--{l}")) else {
                continue;
            };
            let from = match matches.value_source(arg.get_id().as_str()) {
                Some(ValueSource::EnvVariable) => {
                    arg.get_env().map(|v| v.to_string_lossy().into_owned())
                }
                Some(ValueSource::CommandLine) => None,
                _ => ETCDCTL_FALLBACKS
                    .iter()
                    .find(|(option, _)| *option == long)
                    .map(|(_, v)| (*v).to_owned())
                    .filter(|v| var(v).is_some_and(|value| !value.is_empty())),
            };
            if let Some(from) = from {
                found.push((long, from));
            }
        }
        EnvSources(found)
    }

    /// The variable `option` (`--ttl`) took its value from, if any.
    pub fn variable_of(&self, option: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(o, _)| o == option)
            .map(|(_, v)| v.as_str())
    }

    /// `message` about `options`, followed by where those of them that came from a variable
    /// came from: ` (--ttl from SINGLETON_EXEC_TTL)`.
    pub fn explain(&self, message: &str, options: &[&str]) -> String {
        let named: Vec<String> = options
            .iter()
            .filter_map(|o| self.variable_of(o).map(|v| format!("{o} from {v}")))
            .collect();
        if named.is_empty() {
            message.to_owned()
        } else {
            format!("{message} ({})", named.join(", "))
        }
    }
}

/// Parses `argv` as `Cli::parse_from` does, recording in each command's arguments which options
/// came from a variable. A clap error about a value from a variable names it
/// ([`render_parse_error`]).
pub fn parse<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cmd = Cli::command();
    let matches = cmd.clone().try_get_matches_from(argv)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let var = |name: &str| std::env::var(name).ok();
    let sub = |name: &str| {
        cmd.find_subcommand(name)
            .cloned()
            .unwrap_or_else(|| cmd.clone())
    };
    match (&mut cli.subcommand, matches.subcommand()) {
        (Some(Command::Status(a)), Some((name, m))) => {
            a.sources = EnvSources::of(&sub(name), m, var)
        }
        (Some(Command::Resign(a)), Some((name, m))) => {
            a.sources = EnvSources::of(&sub(name), m, var)
        }
        (Some(Command::Timing(a)), Some((name, m))) => {
            a.run.sources = EnvSources::of(&sub(name), m, var)
        }
        (Some(Command::Once(a)), Some((name, m))) => {
            let OnceAction::Clear(c) = &mut a.action;
            if let Some((action, m)) = m.subcommand() {
                let once = sub(name);
                let clear = once
                    .find_subcommand(action)
                    .cloned()
                    .unwrap_or_else(|| once.clone());
                c.sources = EnvSources::of(&clear, m, var)
            }
        }
        (None, _) => cli.run.sources = EnvSources::of(&cmd, &matches, var),
        _ => {}
    }
    Ok(cli)
}

/// A parse error as clap renders it, but naming the variable when the bad value came from one
/// (clap says only `invalid value '-5s' for '--ttl <TTL>'`). `argv` is the command line.
pub fn render_parse_error(e: &clap::Error, argv: &[OsString]) -> String {
    let rendered = e.render().to_string();
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return rendered;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return rendered;
    };
    let long = arg.split_whitespace().next().unwrap_or(arg);
    let cmd = Cli::command();
    let env = std::iter::once(&cmd)
        .chain(cmd.get_subcommands())
        .chain(cmd.get_subcommands().flat_map(|c| c.get_subcommands()))
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == long))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned());
    let Some(env) = env else { return rendered };
    let from_env = std::env::var_os(&env).is_some_and(|v| v == OsStr::new(value))
        && !given_on_command_line(argv, long);
    if from_env {
        name_variable(&rendered, arg, &env)
    } else {
        rendered
    }
}

/// Whether `--option` (or `--option=...`) is on the command line before any `--`.
fn given_on_command_line(argv: &[OsString], long: &str) -> bool {
    argv.iter().skip(1).take_while(|a| *a != "--").any(|a| {
        let a = a.to_string_lossy();
        a == long || a.starts_with(&format!("{long}="))
    })
}

/// clap's `for '--ttl <TTL>'` becomes `for '--ttl <TTL>' from SINGLETON_EXEC_TTL`.
fn name_variable(rendered: &str, arg: &str, env: &str) -> String {
    let quoted = format!("'{arg}'");
    rendered.replacen(&quoted, &format!("{quoted} from {env}"), 1)
}

/// The subcommand `word` is likely a mistyping of (case aside, at most two letters off, a
/// transposition counting as one, and at most half the word), if any: `stauts` → `status`.
pub fn suggest_subcommand(word: &str) -> Option<String> {
    let word = word.to_lowercase();
    let cmd = Cli::command();
    let names = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .chain(std::iter::once("help".to_owned()));
    names
        .map(|name| (edit_distance(&word, &name), name))
        .filter(|(d, _)| *d <= 2 && *d * 2 <= word.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// In run mode, the first word of the command when it stands where a subcommand would (no `--`
/// before it), and the subcommand it looks like a mistyping of. `argv` is the whole command line,
/// `command` what clap took as the command (always its tail).
pub fn mistyped_subcommand(argv: &[OsString], command: &[OsString]) -> Option<(String, String)> {
    let first = argv.len().checked_sub(command.len())?;
    let word = command.first()?.to_str()?;
    if first == 0 || argv.get(first - 1).is_some_and(|a| a == "--") {
        return None;
    }
    suggest_subcommand(word).map(|s| (word.to_owned(), s))
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`: the optimal string
/// alignment distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// A duration in humantime's syntax. Options that take one accept values that begin with '-', so
/// that a negative duration, or an option where a value was forgotten, is answered here, not
/// with clap's advice to write `-- -5s` (which would make it the command).
fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "examples: 10s, 500ms, 1m30s";
    if s.starts_with("--") {
        return Err(format!(
            "a duration is missing before the option {s} ({EXAMPLES})"
        ));
    }
    if let Some(positive) = s.strip_prefix('-').filter(|p| !p.is_empty()) {
        return Err(format!(
            "a duration cannot be negative; did you mean {positive}? ({EXAMPLES})"
        ));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} ({EXAMPLES})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        // Conflicting names, bad defaults and missing ids panic here rather than at a user's hand.
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let rows = [
            ("10s", Some(ms(10_000))),
            ("500ms", Some(ms(500))),
            ("1m30s", Some(ms(90_000))),
            ("1m 30s", Some(ms(90_000))),
            ("0s", Some(ms(0))),
            ("2h", Some(ms(7_200_000))),
            ("10", None),
            ("", None),
            ("-1s", None),
            ("1.5s", Some(ms(1_500))),
            ("10 parsecs", None),
            ("99999999999999999999999s", None),
        ];
        for (given, want) in rows {
            assert_eq!(parse_duration(given).ok(), want, "{given:?}");
        }
        let e = parse_duration("10").unwrap_err();
        assert!(e.contains("examples: 10s"), "{e}");
        let e = parse_duration("-5s").unwrap_err();
        assert!(e.contains("cannot be negative; did you mean 5s?"), "{e}");
        assert!(!e.contains("--"), "{e}");
        let e = parse_duration("--grace").unwrap_err();
        assert!(e.contains("missing before the option --grace"), "{e}");
    }

    /// Which mode a command line selects, and what a subcommand refuses.
    #[test]
    fn modes_and_subcommands() {
        use clap::error::ErrorKind::{self, *};
        // `status` without `--election` parses while SINGLETON_EXEC_ELECTION is set.
        let _env = crate::config::tests::env_lock();
        let parse = |args: &[&str]| {
            let argv = std::iter::once("singleton-exec").chain(args.iter().copied());
            Cli::try_parse_from(argv).map_err(|e| e.kind())
        };
        let conflict: &[&str] = &[
            "--health-cmd",
            "true",
            "--health-url",
            "http://h/",
            "--",
            "x",
        ];
        let rows: &[(&[&str], Result<&str, ErrorKind>)] = &[
            (&["--", "sleep", "1"], Ok("run")),
            (&["sleep", "1"], Ok("run")),
            (&["status", "--election", "app"], Ok("status")),
            (&["timing"], Ok("timing")),
            (
                &["timing", "--ttl", "20s", "--output", "json"],
                Ok("timing"),
            ),
            (
                &["timing", "--ttl", "20s", "--", "sleep", "1"],
                Ok("timing"),
            ),
            (&["timing", "--watch"], Err(UnknownArgument)),
            (&["resign", "--election", "a", "--slot", "2"], Ok("resign")),
            (&["once", "clear", "--election", "a", "m-1"], Ok("once")),
            (
                &["once", "clear", "--election", "a"],
                Err(MissingRequiredArgument),
            ),
            (&["once"], Err(DisplayHelpOnMissingArgumentOrSubcommand)),
            (
                &["--once", "m", "--once-attempts", "3", "--", "x"],
                Ok("run"),
            ),
            (
                &["--once", "m", "--once-attempts", "0", "--", "x"],
                Err(ValueValidation),
            ),
            (
                &["--once-attempts", "1001", "--", "x"],
                Err(ValueValidation),
            ),
            (
                &["status", "--election", "a", "--once", "m", "--watch"],
                Err(ArgumentConflict),
            ),
            (&[], Err(MissingRequiredArgument)),
            (&["status"], Err(MissingRequiredArgument)),
            (
                &["status", "--election", "a", "--output", "yaml"],
                Err(InvalidValue),
            ),
            (&["--slots", "0", "--", "x"], Err(ValueValidation)),
            (&["--slots", "1025", "--", "x"], Err(ValueValidation)),
            (&["--slots", "1024", "--", "x"], Ok("run")),
            (&["--ttl", "10", "--", "x"], Err(ValueValidation)),
            (&["--on-lease-lost", "ignore", "--", "x"], Err(InvalidValue)),
            (&["-v", "-q", "--", "x"], Err(ArgumentConflict)),
            (conflict, Err(ArgumentConflict)),
        ];
        for (args, want) in rows {
            let got = parse(args).map(|cli| match cli.subcommand {
                None => "run",
                Some(Command::Status(_)) => "status",
                Some(Command::Resign(_)) => "resign",
                Some(Command::Timing(_)) => "timing",
                Some(Command::Once(_)) => "once",
            });
            assert_eq!(got, *want, "{args:?}");
        }
    }

    /// `--health-addr` alone means the loopback default; the command keeps its own flags.
    #[test]
    fn optional_values_and_the_trailing_command() {
        // The defaults read here are what SINGLETON_EXEC_SLOTS and the like replace.
        let _env = crate::config::tests::env_lock();
        let cli = Cli::try_parse_from(["singleton-exec", "--health-addr", "--", "ls", "-l", "--x"])
            .unwrap();
        assert_eq!(cli.run.health_addr.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(cli.run.command, ["ls", "-l", "--x"]);
        let cli = Cli::try_parse_from(["singleton-exec", "--", "x"]).unwrap();
        assert_eq!(cli.run.health_addr, None);
        assert_eq!(cli.run.prefix, DEFAULT_PREFIX);
        assert_eq!(cli.run.slots, 1);
    }

    #[test]
    fn edit_distances() {
        let rows = [
            ("status", "status", 0),
            ("stauts", "status", 1),
            ("staus", "status", 1),
            ("statuss", "status", 1),
            ("stat", "status", 2),
            ("resing", "resign", 1),
            ("timng", "timing", 1),
            ("", "help", 4),
            ("sleep", "resign", 6),
        ];
        for (a, b, want) in rows {
            assert_eq!(edit_distance(a, b), want, "{a} {b}");
            assert_eq!(edit_distance(b, a), want, "{b} {a}");
        }
    }

    /// Which words in the place of a subcommand look like a mistyped one. (Whether the word is
    /// also a command on PATH, which then runs, is checked at start-up.)
    #[test]
    fn mistyped_subcommands() {
        let _env = crate::config::tests::env_lock();
        let rows: &[(&str, Option<(&str, &str)>)] = &[
            ("stauts", Some(("stauts", "status"))),
            ("STATUS", Some(("STATUS", "status"))),
            ("--ttl 5s stauts --election x", Some(("stauts", "status"))),
            ("resing", Some(("resing", "resign"))),
            ("timng -v", Some(("timng", "timing"))),
            ("hepl", Some(("hepl", "help"))),
            ("stat /", Some(("stat", "status"))),
            // After `--` it is meant as a command.
            ("-- stauts", None),
            ("--ttl 5s -- stauts", None),
            ("sleep 1", None),
            ("ls", None),
            ("st", None),
            ("./stauts", None),
            ("/usr/bin/status", None),
        ];
        for (line, want) in rows {
            let argv: Vec<OsString> = std::iter::once("singleton-exec")
                .chain(line.split_whitespace())
                .map(OsString::from)
                .collect();
            let cli = Cli::try_parse_from(&argv).expect("a command line of run mode");
            let got = mistyped_subcommand(&argv, &cli.run.command);
            let want = want.map(|(w, s)| (w.to_owned(), s.to_owned()));
            assert_eq!(got, want, "{line}");
        }
    }

    /// The options that took a variable's value are known, so an error about them names it; a
    /// flag beats its variable; etcdctl's variables count for an option given neither way.
    #[test]
    fn values_from_variables_are_named() {
        let _env = crate::config::tests::env_lock();
        let vars = [
            ("SINGLETON_EXEC_TTL", "1s"),
            ("SINGLETON_EXEC_PREFIX", "/p"),
            ("ETCDCTL_ENDPOINTS", "e:1"),
        ];
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        let sources = |args: &[&str]| {
            let argv = std::iter::once("singleton-exec").chain(args.iter().copied());
            match parse(argv).expect("arguments") {
                Cli {
                    subcommand: None,
                    run,
                } => run.sources,
                Cli {
                    subcommand: Some(Command::Status(a)),
                    ..
                } => a.sources,
                Cli {
                    subcommand: Some(Command::Resign(a)),
                    ..
                } => a.sources,
                Cli {
                    subcommand: Some(Command::Timing(a)),
                    ..
                } => a.run.sources,
                Cli {
                    subcommand: Some(Command::Once(a)),
                    ..
                } => match a.action {
                    OnceAction::Clear(c) => c.sources,
                },
            }
        };
        let s = sources(&["--grace", "1s", "--", "x"]);
        assert_eq!(s.variable_of("--ttl"), Some("SINGLETON_EXEC_TTL"));
        assert_eq!(s.variable_of("--endpoints"), Some("ETCDCTL_ENDPOINTS"));
        assert_eq!(s.variable_of("--grace"), None);
        assert_eq!(s.variable_of("--slots"), None, "a default is no variable");
        assert_eq!(
            s.explain("bad", &["--grace", "--ttl", "--prefix"]),
            "bad (--ttl from SINGLETON_EXEC_TTL, --prefix from SINGLETON_EXEC_PREFIX)"
        );
        assert_eq!(s.explain("bad", &["--grace"]), "bad");
        let s = sources(&["--ttl", "5s", "--endpoints", "f:1", "--", "x"]);
        assert_eq!(
            (s.variable_of("--ttl"), s.variable_of("--endpoints")),
            (None, None)
        );
        let s = sources(&["status", "--election", "a"]);
        assert_eq!(s.variable_of("--prefix"), Some("SINGLETON_EXEC_PREFIX"));
        assert_eq!(s.variable_of("--endpoints"), Some("ETCDCTL_ENDPOINTS"));
        assert_eq!(
            sources(&["timing"]).variable_of("--ttl"),
            Some("SINGLETON_EXEC_TTL")
        );
        let s = sources(&["once", "clear", "--election", "a", "m"]);
        assert_eq!(s.variable_of("--prefix"), Some("SINGLETON_EXEC_PREFIX"));
        assert_eq!(s.variable_of("--endpoints"), Some("ETCDCTL_ENDPOINTS"));

        // clap's own errors about a variable's value.
        std::env::set_var("SINGLETON_EXEC_TTL", "-5s");
        let argv: Vec<OsString> = ["singleton-exec", "--", "x"].map(OsString::from).into();
        let e = parse(argv.clone()).unwrap_err();
        let shown = render_parse_error(&e, &argv);
        assert!(
            shown.contains(
                "for '--ttl <TTL>' from SINGLETON_EXEC_TTL: a duration cannot be negative"
            ),
            "{shown}"
        );
        let argv: Vec<OsString> = ["singleton-exec", "--ttl", "-5s", "--", "x"]
            .map(OsString::from)
            .into();
        let e = parse(argv.clone()).unwrap_err();
        let shown = render_parse_error(&e, &argv);
        assert!(!shown.contains("SINGLETON_EXEC_TTL"), "{shown}");
        assert!(
            !shown.contains("-- -5"),
            "no advice that makes it the command: {shown}"
        );
        for (k, _) in vars {
            std::env::remove_var(k);
        }
    }

    /// Every option can come from `SINGLETON_EXEC_<OPTION>`, and a flag beats its variable.
    /// Only values every command line accepts are set: other tests parse command lines too, and
    /// the environment is the whole process's. One row a line: the variable, the flag (`-` for
    /// none), the field read and its value.
    #[test]
    fn options_from_the_environment() {
        let table = "
            SINGLETON_EXEC_TTL=20s             -            ttl             20s
            SINGLETON_EXEC_TTL=20s             --ttl=30s    ttl             30s
            SINGLETON_EXEC_ELECTION=env        -            election        Some(\"env\")
            SINGLETON_EXEC_SLOTS=3             -            slots           3
            SINGLETON_EXEC_SLOTS=3             --slots=2    slots           2
            SINGLETON_EXEC_ENDPOINTS=a:1,b:2   -            endpoints       [\"a:1\",\"b:2\"]
            SINGLETON_EXEC_ON_LEASE_LOST=exit  -            on_lease_lost   Exit
            SINGLETON_EXEC_HEALTH_RETRIES=7    -            health_retries  Some(7)
            SINGLETON_EXEC_WATCHDOG=2s         -            watchdog        Some(2s)
            SINGLETON_EXEC_WATCHDOG=2s         --watchdog=3s watchdog       Some(3s)
            SINGLETON_EXEC_READY_TIMEOUT=1m    -            ready_timeout   Some(60s)
            SINGLETON_EXEC_LOG_FORMAT=json     -            log_format      Json
            SINGLETON_EXEC_PASSWORD=pw         -            password        Some(\"pw\")
        ";
        let field = |c: &Cli, name: &str| -> String {
            let r = &c.run;
            match name {
                "ttl" => format!("{:?}", r.ttl),
                "election" => format!("{:?}", r.election),
                "slots" => r.slots.to_string(),
                "endpoints" => format!("{:?}", r.etcd.endpoints).replace(' ', ""),
                "on_lease_lost" => format!("{:?}", r.on_lease_lost),
                "health_retries" => format!("{:?}", r.health.health_retries),
                "watchdog" => format!("{:?}", r.notify.watchdog),
                "ready_timeout" => format!("{:?}", r.notify.ready_timeout),
                "log_format" => format!("{:?}", r.log.log_format),
                "password" => format!("{:?}", r.etcd.password),
                other => panic!("no field {other} in this test"),
            }
        };
        let _env = crate::config::tests::env_lock();
        for row in table.lines().filter(|l| !l.trim().is_empty()) {
            let [setting, flag, name, want] = row.split_whitespace().collect::<Vec<_>>()[..] else {
                panic!("a row has four columns: {row}");
            };
            let (var, value) = setting.split_once('=').expect("VAR=value");
            let flags = if flag == "-" { vec![] } else { vec![flag] };
            let argv = ["singleton-exec"]
                .into_iter()
                .chain(flags)
                .chain(["--", "x"]);
            std::env::set_var(var, value);
            let got = Cli::try_parse_from(argv).map(|c| field(&c, name));
            std::env::remove_var(var);
            assert_eq!(got.as_deref().ok(), Some(want), "{row}");
        }
    }
}
