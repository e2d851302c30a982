//! How to reach etcd, as validated from the `--endpoints`, TLS and credential options: the input of
//! [`crate::election::connector`]. Secrets never reach a log line.
//!
//! Also the limits of etcd itself that input can break: what no retry could ever get past (an
//! endpoint that cannot name an etcd, a zero dial timeout, a TTL above etcd's maximum) is refused
//! here, before any etcd call, so it is a usage error and not an "etcd unavailable" for ever.

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

/// etcd's largest lease TTL (`MaxLeaseTTL` in etcd's `server/lease/lessor.go`): every member
/// answers a longer one with "too large lease TTL". The timing model's limit on `--ttl` (a year)
/// is below it, so every TTL we accept is one etcd grants (a test keeps it so).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(9_000_000_000);

/// Why an endpoint can never name an etcd, however often it is dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointFault {
    #[error("it is empty or contains spaces")]
    Blank,
    /// etcd-client reads anything but `http://` and `https://` as part of a host name.
    #[error("the scheme {0:?} is neither http nor https")]
    Scheme(String),
    #[error("it names no host")]
    NoHost,
    /// A port beyond 65535 would be dialled as the scheme's default port, 80 or 443.
    #[error("port {0} is not a number from 1 to 65535")]
    Port(String),
    /// Credentials in the URL are not used, and would show wherever the endpoint does (the log,
    /// the child's environment).
    #[error("user info in the URL is not used; give --user and --password")]
    UserInfo,
    #[error("an IPv6 address goes in brackets, as in http://[::1]:2379")]
    BareIpv6,
}

/// Checks one endpoint: `http://HOST[:PORT]`, `https://HOST[:PORT]` or `HOST[:PORT]` (the scheme
/// then follows from the TLS options), HOST a name, an IPv4 address or a bracketed IPv6 address.
/// A path after the authority is left alone: the client ignores it.
pub fn check_endpoint(endpoint: &str) -> Result<(), EndpointFault> {
    if endpoint.is_empty() || endpoint.contains(char::is_whitespace) {
        return Err(EndpointFault::Blank);
    }
    let rest = match endpoint.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some((scheme, _)) => return Err(EndpointFault::Scheme(scheme.to_owned())),
        None => endpoint,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(EndpointFault::UserInfo);
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err(EndpointFault::NoHost);
    }
    match port.map(str::parse::<u16>) {
        Some(Ok(0) | Err(_)) => Err(EndpointFault::Port(port.unwrap_or_default().to_owned())),
        None | Some(Ok(_)) => Ok(()),
    }
}

/// `HOST[:PORT]` or `[IPV6][:PORT]` → the host and the port as written, if any.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), EndpointFault> {
    let (host, after_host) = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').ok_or(EndpointFault::BareIpv6)?,
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    match after_host.strip_prefix(':') {
        Some(port) if port.contains(':') => Err(EndpointFault::BareIpv6),
        Some(port) => Ok((host, Some(port))),
        None if after_host.is_empty() => Ok((host, None)),
        // `[::1]2379`: what follows the brackets is no `:PORT`.
        None => Err(EndpointFault::Port(after_host.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ttl_we_accept_is_one_etcd_grants() {
        assert!(crate::core::timing::MAX_DURATION <= MAX_LEASE_TTL);
    }

    /// One row an endpoint: what etcd-client would make of it decides the fault.
    #[test]
    fn endpoints_that_can_name_an_etcd() {
        use EndpointFault::*;
        let port = |p: &str| Err(Port(p.to_owned()));
        let rows: &[(&str, Result<(), EndpointFault>)] = &[
            ("http://127.0.0.1:2379", Ok(())),
            ("https://etcd.example:2379", Ok(())),
            ("etcd-0.etcd:2379", Ok(())),
            ("localhost", Ok(())),
            ("https://etcd.example", Ok(())),
            ("http://[::1]:2379", Ok(())),
            ("[fe80::1]", Ok(())),
            ("http://127.0.0.1:2379/", Ok(())),
            ("http://127.0.0.1:65535", Ok(())),
            // Dialled as port 80 (the client keeps only a port that fits in 16 bits).
            ("http://127.0.0.1:99999", port("99999")),
            ("http://127.0.0.1:0", port("0")),
            ("http://127.0.0.1:", port("")),
            ("127.0.0.1:x", port("x")),
            ("127.0.0.1:-1", port("-1")),
            ("http://[::1]:65536", port("65536")),
            // Read as the host name "ftp" of an http:// URL: "dns error" for ever.
            ("ftp://127.0.0.1:2379", Err(Scheme("ftp".into()))),
            ("unix:///run/etcd.sock", Err(Scheme("unix".into()))),
            ("HTTP://127.0.0.1:2379", Err(Scheme("HTTP".into()))),
            ("http://", Err(NoHost)),
            ("https://:2379", Err(NoHost)),
            (":2379", Err(NoHost)),
            ("http://[::1]2379", port("2379")),
            ("http://[]:2379", Err(NoHost)),
            ("http://user:pw@127.0.0.1:2379", Err(UserInfo)),
            ("::1", Err(BareIpv6)),
            ("http://::1:2379", Err(BareIpv6)),
            ("http://[::1:2379", Err(BareIpv6)),
            ("", Err(Blank)),
            ("a b:1", Err(Blank)),
        ];
        for (endpoint, want) in rows {
            assert_eq!(&check_endpoint(endpoint), want, "{endpoint:?}");
        }
    }
}
