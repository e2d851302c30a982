//! What the user typed: the clap definition of every flag, its environment variable and its default.
//!
//! Nothing here is validated beyond parsing; [`crate::config`] turns this into a [`crate::config::Config`]
//! the program runs on. Every option can also come from `SINGLETON_EXEC_<OPTION>`; the etcd connection
//! options fall back to etcdctl's `ETCDCTL_*` variables (resolved in the config step, since clap reads one
//! variable per option).

use crate::core::lifecycle::{OnChildExit, OnLeaseLost};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::core::exit_code::HELP_TABLE;

/// Where elections live unless `--prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/singleton-exec";
/// The most slots an election can have (`--slots`): every holder and `status` read them all.
pub const MAX_SLOTS: u32 = 1024;

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
    override_usage = "singleton-exec [OPTIONS] -- COMMAND [ARG]...\n       singleton-exec status [OPTIONS]\n       singleton-exec resign [OPTIONS]\n       singleton-exec timing [OPTIONS] [-- COMMAND [ARG]...]"
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON object (with --watch: one per line).
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
    #[arg(long)]
    pub slot: Option<u32>,

    /// Give up (exit 124) if the leader has not stepped down after this long.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub log: LogArgs,
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

    #[command(flatten)]
    pub etcd: EtcdArgs,

    #[command(flatten)]
    pub log: LogArgs,
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
    #[arg(long, env = "SINGLETON_EXEC_SLOTS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SLOTS)))]
    pub slots: u32,

    /// Lease TTL, whole seconds, from 2s to 1year. A crashed leader is replaced after about this long.
    #[arg(long, env = "SINGLETON_EXEC_TTL", value_parser = parse_duration, default_value = "10s")]
    pub ttl: Duration,

    /// Time between the stop signal and SIGKILL. [default: 30% of --ttl]
    #[arg(long, env = "SINGLETON_EXEC_GRACE", value_parser = parse_duration)]
    pub grace: Option<Duration>,

    /// Slack kept between SIGKILL and the earliest moment etcd may expire the lease. [default: 10% of --ttl]
    #[arg(long, env = "SINGLETON_EXEC_MARGIN", value_parser = parse_duration)]
    pub margin: Option<Duration>,

    /// Time between keepalives while all is well. [default: 10% of --ttl]
    #[arg(long, env = "SINGLETON_EXEC_KEEPALIVE_INTERVAL", value_parser = parse_duration)]
    pub keepalive_interval: Option<Duration>,

    /// Signal that asks the child to stop (name like TERM or SIGTERM, or a number).
    #[arg(long, env = "SINGLETON_EXEC_STOP_SIGNAL", default_value = "TERM")]
    pub stop_signal: String,

    /// What to do when leadership is lost: stop the child, then campaign again or exit (code 122).
    #[arg(long, env = "SINGLETON_EXEC_ON_LEASE_LOST", value_enum, default_value_t = OnLeaseLost::Recampaign)]
    pub on_lease_lost: OnLeaseLost,

    /// What to do when the child exits while leader: give up leadership and exit with its status,
    /// restart it (with backoff) while still leader, or give up leadership and campaign again.
    #[arg(long, env = "SINGLETON_EXEC_ON_CHILD_EXIT", value_enum, default_value_t = OnChildExit::Exit)]
    pub on_child_exit: OnChildExit,

    /// Give up (exit 124) if not leader after this long; more than 0. [default: wait forever]
    #[arg(long, env = "SINGLETON_EXEC_ACQUIRE_TIMEOUT", value_parser = parse_duration)]
    pub acquire_timeout: Option<Duration>,

    /// Serve /healthz, /leader, /status, /metrics and POST /resign on PORT, :PORT or HOST:PORT
    /// (loopback unless a host is given). Off unless given; without a value, 127.0.0.1:8080.
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub health_addr: Option<String>,

    /// A signal that makes the leader step down (stop the child, revoke, hold off, campaign again)
    /// instead of being forwarded to the child. [default: none, every signal reaches the child]
    #[arg(long, env = "SINGLETON_EXEC_RESIGN_SIGNAL", value_name = "SIGNAL")]
    pub resign_signal: Option<String>,

    /// File holding the bearer token that POST /resign requires (read at start-up, trimmed). Without
    /// it, POST /resign is open on a loopback --health-addr and off on any other.
    #[arg(long, env = "SINGLETON_EXEC_RESIGN_TOKEN_FILE", value_name = "FILE")]
    pub resign_token_file: Option<PathBuf>,

    /// After stepping down, wait this long before campaigning again, so a standby takes over.
    #[arg(long, env = "SINGLETON_EXEC_RESIGN_HOLDOFF", value_parser = parse_duration, default_value = "2s")]
    pub resign_holdoff: Duration,

    /// Key prefix under which elections live, one path segment; the election's keys are PREFIX/NAME/.
    #[arg(long, env = "SINGLETON_EXEC_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,

    #[command(flatten)]
    pub health: HealthArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// The command to run while leader, and its arguments (after `--`).
    #[arg(trailing_var_arg = true, value_name = "COMMAND", required = true)]
    pub command: Vec<OsString>,
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

    /// Time between health checks; the first runs this long after the child starts.
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub health_interval: Duration,

    /// A check that takes longer fails (a command is killed with its process group). At most
    /// --health-interval.
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub health_timeout: Duration,

    /// Consecutive failed checks that make the leader step down; times --health-interval at most
    /// 1year.
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_RETRIES", default_value_t = 3)]
    pub health_retries: u32,

    /// Failed checks during this time after the child starts are not counted (until the first
    /// check passes).
    #[arg(long, env = "SINGLETON_EXEC_HEALTH_START_PERIOD", value_parser = parse_duration, default_value = "0s")]
    pub health_start_period: Duration,
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
    #[arg(long, env = "SINGLETON_EXEC_DIAL_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 500ms, 1m30s)"))
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
            SINGLETON_EXEC_HEALTH_RETRIES=7    -            health_retries  7
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
                "health_retries" => r.health.health_retries.to_string(),
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
