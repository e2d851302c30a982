//! How to reach etcd, as validated from the `--endpoints`, TLS and credential options: the input of
//! [`crate::election::connector`]. Secrets never reach a log line.

use std::fmt;
use std::time::Duration;

/// A value that must never reach a log line or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

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
