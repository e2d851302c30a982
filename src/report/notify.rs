//! The systemd notify protocol (sd_notify(3)), without libsystemd: datagrams to `$NOTIFY_SOCKET`.
//!
//! `READY=1` is sent once the supervisor is up and campaigning, not when it becomes leader, or a
//! standby would never finish starting (TimeoutStartSec). `STATUS=` follows every transition,
//! `WATCHDOG=1` goes out at half of `$WATCHDOG_USEC` while the leadership loop runs, `STOPPING=1` at
//! shutdown. Without `$NOTIFY_SOCKET` every call is a no-op. The variables are read once at start-up
//! and never reach the child ([`crate::process::spawn`] removes them).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (the watchdog is ours only if the
    /// pid is unset or ours).
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// How often to send `WATCHDOG=1`: half the interval systemd expects.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog).map(|w| w / 2)
    }

    /// Sends one notification; failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        let Some(path) = &self.socket else { return };
        if let Err(e) = send_to(path, message) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=campaigning");
    }

    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }
}

fn send_to(path: &str, message: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // A service manager that does not read must not stall the caller (it may be the keepalive path).
    sock.set_nonblocking(true)?;
    if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())?;
        sock.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        sock.send_to(message.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_interval_and_only_with_a_socket() {
        let s = Duration::from_secs;
        let socket = Some("/run/notify".to_owned());
        let rows = [
            (socket.clone(), Some(s(30)), Some(s(15))),
            (
                socket.clone(),
                Some(Duration::from_micros(3)),
                Some(Duration::from_nanos(1500)),
            ),
            (socket.clone(), None, None),
            (None, Some(s(30)), None),
            (None, None, None),
        ];
        for (socket, watchdog, want) in rows {
            let n = Notifier {
                socket: socket.clone(),
                watchdog,
            };
            assert_eq!(n.watchdog_interval(), want, "{socket:?} {watchdog:?}");
        }
    }

    fn received(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn each_notification_is_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier {
            socket: Some(path.to_string_lossy().into_owned()),
            watchdog: None,
        };
        n.ready();
        n.status("leader fencing_revision 9:\nchild started");
        n.watchdog();
        n.stopping();
        for want in [
            "READY=1\nSTATUS=campaigning",
            "STATUS=leader fencing_revision 9: child started",
            "WATCHDOG=1",
            "STOPPING=1",
        ] {
            assert_eq!(received(&sock), want);
        }
    }

    #[test]
    fn an_abstract_socket_is_named_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("singleton-exec-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier {
            socket: Some(format!("@{name}")),
            watchdog: None,
        };
        n.watchdog();
        assert_eq!(received(&sock), "WATCHDOG=1");
    }

    #[test]
    fn a_missing_socket_is_no_error_for_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody-listens");
        assert!(send_to(&path.to_string_lossy(), "READY=1").is_err());
        // The notifier only logs it.
        Notifier {
            socket: Some(path.to_string_lossy().into_owned()),
            watchdog: None,
        }
        .ready();
    }
}
