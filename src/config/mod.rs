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

use crate::config::cli::{EtcdArgs, HealthArgs, RunArgs};
use crate::config::etcd::{EtcdConfig, Secret, TlsFiles};
use crate::core::command::CommandSpec;
use crate::core::lifecycle::{OnChildExit, OnLeaseLost};
use crate::core::timing::{TimingError, TimingInput, TimingModel};
use crate::health::HealthConfig;

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
    #[error("unknown signal {0:?}: use a name like TERM, SIGTERM, QUIT, INT, or a number")]
    BadSignal(String),
    #[error(
        "--stop-signal {0} cannot be caught by a process; use a catchable signal such as TERM"
    )]
    UncatchableStopSignal(Signal),
    #[error("endpoint {0:?} is empty or invalid")]
    BadEndpoint(String),
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
}

/// Reads an environment variable, treating unset and empty alike.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    pub fn from_args(args: RunArgs) -> Result<Config, ConfigError> {
        let command = command_spec(args.command)?;
        let election = election_name(args.election, &command.program)?;
        Ok(Config {
            id: replica_id(args.id)?,
            prefix: validate_prefix(&args.prefix)?,
            timing: TimingModel::new(TimingInput {
                ttl: Some(args.ttl),
                keepalive_interval: args.keepalive_interval,
                grace: args.grace,
                margin: args.margin,
            })?,
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
            resign_holdoff: args.resign_holdoff,
            etcd: etcd_config(args.etcd)?,
            election,
            on_lease_lost: args.on_lease_lost,
            on_child_exit: args.on_child_exit,
            acquire_timeout: args.acquire_timeout,
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

/// `--health-*`: the leader's check of its child, if one was asked for.
fn health_config(h: HealthArgs) -> Result<Option<HealthConfig>, ConfigError> {
    HealthConfig::new(
        h.health_cmd,
        h.health_url,
        h.health_interval,
        h.health_timeout,
        h.health_retries,
        h.health_start_period,
    )
    .map_err(ConfigError::BadHealth)
}

/// `--stop-signal`: one the child can catch, or its grace would mean nothing.
fn stop_signal(name: &str) -> Result<Signal, ConfigError> {
    let sig = parse_signal(name)?;
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
    let sig = parse_signal(name)?;
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
        dial_timeout: args.dial_timeout,
    })
}

/// `--endpoints`, else the comma-separated `from_env` (`ETCDCTL_ENDPOINTS`), else the local
/// default; each trimmed, and refused if it has no host or has spaces.
fn endpoints(given: Vec<String>, from_env: Option<String>) -> Result<Vec<String>, ConfigError> {
    let listed = match (given.is_empty(), from_env) {
        (false, _) => given,
        (true, Some(list)) => list.split(',').map(str::to_owned).collect(),
        (true, None) => vec![DEFAULT_ENDPOINT.to_owned()],
    };
    let endpoints: Vec<String> = listed.iter().map(|e| e.trim().to_owned()).collect();
    for e in &endpoints {
        let host = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .unwrap_or(e);
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(ConfigError::BadEndpoint(e.clone()));
        }
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

/// Accepts `TERM`, `SIGTERM`, `term` and `15`.
pub fn parse_signal(s: &str) -> Result<Signal, ConfigError> {
    let bad = || ConfigError::BadSignal(s.to_owned());
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
mod tests {
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
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigquit").unwrap(), Signal::SIGQUIT);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
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

    #[test]
    fn health_addr_forms() {
        assert_eq!(parse_addr("8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(parse_addr(":9").unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert!(parse_addr("localhost").is_err());
    }
}
