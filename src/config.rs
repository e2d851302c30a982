//! CLI + environment → one validated [`Config`]. Every rule about the input lives here (or in
//! [`crate::timing`] for durations), so the rest of the program never sees an impossible value.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cli::{EtcdArgs, OnChildExit, OnLeaseLost, RunArgs};
use crate::timing::{TimingError, TimingInput, TimingModel};

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
        "--prefix {0:?} is invalid: it must be non-empty and must not end with '/' (one is added)"
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
    #[error("--resign-signal {0} cannot be caught, or is SIGTERM/SIGINT/SIGCHLD which have their own meaning")]
    BadResignSignal(Signal),
    #[error("--password given without --user")]
    PasswordWithoutUser,
    #[error("cannot determine the host name for the default --id: {0}; pass --id")]
    NoHostname(nix::Error),
}

/// A value that must never reach a log line or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// PEM bytes read at start-up, so an unreadable file is a usage error and not a runtime surprise.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub tls: Option<TlsFiles>,
    pub credentials: Option<(String, Secret)>,
    pub dial_timeout: Duration,
}

/// The command to run while leader.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
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
    pub command: CommandSpec,
    pub health_addr: Option<std::net::SocketAddr>,
    pub resign_signal: Option<Signal>,
    pub resign_holdoff: Duration,
}

/// Reads an environment variable, treating unset and empty alike.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    pub fn from_args(args: RunArgs) -> Result<Config, ConfigError> {
        let mut command = args.command.into_iter();
        let program = command.next().ok_or(ConfigError::EmptyCommand)?;
        if program.is_empty() {
            return Err(ConfigError::EmptyProgram);
        }
        let election = match args.election {
            Some(name) => validate_election(&name)?,
            None => {
                let base = Path::new(&program)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned());
                let base = base.unwrap_or_default();
                validate_election(&base)
                    .map_err(|_| ConfigError::NoDefaultElection(program.to_string_lossy().into()))?
            }
        };
        let id = match args.id {
            Some(id) => id,
            None => nix::unistd::gethostname()
                .map_err(ConfigError::NoHostname)?
                .to_string_lossy()
                .into_owned(),
        };
        if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
            return Err(ConfigError::BadId(id));
        }
        if args.prefix.is_empty() || args.prefix.ends_with('/') {
            return Err(ConfigError::BadPrefix(args.prefix));
        }
        let timing = TimingModel::new(TimingInput {
            ttl: Some(args.ttl),
            keepalive_interval: args.keepalive_interval,
            grace: args.grace,
            margin: args.margin,
        })?;
        let stop_signal = parse_signal(&args.stop_signal)?;
        if matches!(stop_signal, Signal::SIGKILL | Signal::SIGSTOP) {
            return Err(ConfigError::UncatchableStopSignal(stop_signal));
        }
        let health_addr = args
            .health_addr
            .as_deref()
            .map(crate::http::parse_addr)
            .transpose()
            .map_err(ConfigError::BadHealthAddr)?;
        let resign_signal = args
            .resign_signal
            .as_deref()
            .map(parse_signal)
            .transpose()?;
        if let Some(sig) = resign_signal {
            if matches!(
                sig,
                Signal::SIGKILL
                    | Signal::SIGSTOP
                    | Signal::SIGTERM
                    | Signal::SIGINT
                    | Signal::SIGCHLD
            ) {
                return Err(ConfigError::BadResignSignal(sig));
            }
        }
        Ok(Config {
            health_addr,
            resign_signal,
            resign_holdoff: args.resign_holdoff,
            etcd: EtcdConfig::from_args(args.etcd)?,
            election,
            prefix: args.prefix,
            id,
            timing,
            stop_signal,
            on_lease_lost: args.on_lease_lost,
            on_child_exit: args.on_child_exit,
            acquire_timeout: args.acquire_timeout,
            command: CommandSpec {
                program,
                args: command.collect(),
            },
        })
    }
}

impl EtcdConfig {
    pub fn from_args(args: EtcdArgs) -> Result<EtcdConfig, ConfigError> {
        let mut endpoints = args.endpoints;
        if endpoints.is_empty() {
            endpoints = match env_var("ETCDCTL_ENDPOINTS") {
                Some(list) => list.split(',').map(str::to_owned).collect(),
                None => vec![DEFAULT_ENDPOINT.to_owned()],
            };
        }
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.trim().to_owned()).collect();
        for e in &endpoints {
            let host = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .unwrap_or(e);
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(ConfigError::BadEndpoint(e.clone()));
            }
        }

        let cacert = args
            .cacert
            .or_else(|| env_var("ETCDCTL_CACERT").map(PathBuf::from));
        let cert = args
            .cert
            .or_else(|| env_var("ETCDCTL_CERT").map(PathBuf::from));
        let key = args
            .key
            .or_else(|| env_var("ETCDCTL_KEY").map(PathBuf::from));
        let tls = if cacert.is_some() || cert.is_some() || key.is_some() {
            if let Some(e) = endpoints.iter().find(|e| e.starts_with("http://")) {
                return Err(ConfigError::TlsOverHttp(e.clone()));
            }
            let identity = match (cert, key) {
                (Some(c), Some(k)) => Some((read_pem("--cert", &c)?, read_pem("--key", &k)?)),
                (None, None) => None,
                _ => return Err(ConfigError::HalfIdentity),
            };
            let ca = cacert.map(|p| read_pem("--cacert", &p)).transpose()?;
            Some(TlsFiles { ca, identity })
        } else {
            None
        };

        let mut user = args.user.or_else(|| env_var("ETCDCTL_USER"));
        let mut password = args.password.or_else(|| env_var("ETCDCTL_PASSWORD"));
        // etcdctl accepts --user USER:PASSWORD.
        if let (Some(u), None) = (&user, &password) {
            if let Some((name, pw)) = u.split_once(':') {
                password = Some(pw.to_owned());
                user = Some(name.to_owned());
            }
        }
        let credentials = match (user, password) {
            (Some(u), p) => Some((u, Secret(p.unwrap_or_default()))),
            (None, Some(_)) => return Err(ConfigError::PasswordWithoutUser),
            (None, None) => None,
        };
        Ok(EtcdConfig {
            endpoints,
            tls,
            credentials,
            dial_timeout: args.dial_timeout,
        })
    }
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
        let s = Secret("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
