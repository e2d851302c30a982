//! One datagram of the notify protocol, read as systemd reads it (sd_notify(3)): newline-separated
//! `VARIABLE=VALUE` assignments, the ones we act on matched exactly (`READY=1`, not `READY=yes`),
//! every other line ignored. Pure: bytes in, a [`Message`] out, table-tested.
//!
//! What a child can send is bounded before it gets here: a datagram longer than
//! [`MAX_DATAGRAM`] (systemd's limit too) is refused whole by the socket reader, one with a NUL
//! byte or nothing in it is [`Malformed`] (as systemd has it), a line that is not UTF-8 is
//! ignored, and a `STATUS=` text is made one printable line of at most [`MAX_STATUS`] bytes
//! ([`sanitize_status`]) before anything stores, logs or publishes it.

#![forbid(unsafe_code)]

use std::time::Duration;

/// The longest datagram read: systemd's limit (`PIPE_BUF`). A longer one is ignored whole.
pub const MAX_DATAGRAM: usize = 4096;

/// The longest `STATUS=` text kept, in bytes; a longer one is cut (at a character boundary) and
/// ends with `…`.
pub const MAX_STATUS: usize = 256;

/// What one datagram says. A variable given twice counts once (the last `STATUS=` wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// `READY=1`: start-up is complete.
    pub ready: bool,
    /// `STOPPING=1`: the child is shutting down.
    pub stopping: bool,
    /// `WATCHDOG=1`: the heartbeat.
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: the child found itself broken and asks for the watchdog's action.
    pub trigger: bool,
    /// `STATUS=...`, sanitised ([`sanitize_status`]).
    pub status: Option<String>,
    /// `EXTEND_TIMEOUT_USEC=N`: the child asks for N µs more than the time it has now (to become
    /// ready, or to stop).
    pub extend_timeout: Option<Duration>,
    /// `ROLE=leader` or `ROLE=standby` (`--hot-standby`): the role the child acts in now.
    pub role: Option<Role>,
    /// Lines that are no assignment we act on: unknown variables (`MAINPID=`, `FDSTORE=1`,
    /// `BARRIER=1`, whose descriptor the kernel has closed already), bad values, text that is not
    /// UTF-8.
    pub ignored: u32,
}

impl Message {
    /// Whether the datagram said anything we act on.
    pub fn says_anything(&self) -> bool {
        self.ready
            || self.stopping
            || self.watchdog
            || self.trigger
            || self.status.is_some()
            || self.extend_timeout.is_some()
            || self.role.is_some()
    }
}

/// The role a hot standby's child says it acts in (`ROLE=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// Why a whole datagram is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Empty,
    /// A NUL byte: systemd refuses these too (a C reader would stop there).
    Nul,
}

/// Reads one datagram (at most [`MAX_DATAGRAM`] bytes, as the socket reader guarantees).
pub fn parse(datagram: &[u8]) -> Result<Message, Malformed> {
    if datagram.is_empty() {
        return Err(Malformed::Empty);
    }
    if datagram.contains(&0) {
        return Err(Malformed::Nul);
    }
    let mut m = Message::default();
    for line in datagram.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue; // a trailing newline, as `echo` leaves one
        }
        let Ok(line) = std::str::from_utf8(line) else {
            m.ignored += 1;
            continue;
        };
        match line.split_once('=') {
            Some(("READY", "1")) => m.ready = true,
            Some(("STOPPING", "1")) => m.stopping = true,
            Some(("WATCHDOG", "1")) => m.watchdog = true,
            Some(("WATCHDOG", "trigger")) => m.trigger = true,
            Some(("STATUS", text)) => m.status = Some(sanitize_status(text)),
            Some(("ROLE", "leader")) => m.role = Some(Role::Leader),
            Some(("ROLE", "standby")) => m.role = Some(Role::Standby),
            Some(("EXTEND_TIMEOUT_USEC", usec)) => match usec.parse::<u64>() {
                Ok(usec) => m.extend_timeout = Some(Duration::from_micros(usec)),
                Err(_) => m.ignored += 1,
            },
            _ => m.ignored += 1,
        }
    }
    Ok(m)
}

/// A status text made safe to store, log, publish and print on a terminal: control characters
/// (a terminal's escape sequences among them) and the invisible characters that reorder text
/// (bidirectional overrides) become spaces, and the text is cut to [`MAX_STATUS`] bytes at a
/// character boundary, ending with `…` when cut. Also applied to what `status` reads back from
/// etcd, where anyone with write access could have put anything.
pub fn sanitize_status(text: &str) -> String {
    const ELLIPSIS: char = '…';
    let mut out = String::with_capacity(text.len().min(MAX_STATUS));
    for c in text.chars() {
        let c = if c.is_control() || reorders_text(c) {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_STATUS {
            while out.len() + ELLIPSIS.len_utf8() > MAX_STATUS {
                out.pop();
            }
            out.push(ELLIPSIS);
            return out;
        }
        out.push(c);
    }
    out
}

/// The format characters that change how a terminal orders or joins what follows them
/// (Unicode bidirectional controls, and the zero-width ones around them).
fn reorders_text(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(f: impl FnOnce(&mut Message)) -> Result<Message, Malformed> {
        let mut m = Message::default();
        f(&mut m);
        Ok(m)
    }

    #[test]
    fn each_datagram_is_read_as_systemd_reads_it() {
        let ms = Duration::from_millis;
        // (datagram, what it says)
        let rows: Vec<(&[u8], Result<Message, Malformed>)> = vec![
            (b"READY=1", message(|m| m.ready = true)),
            (b"READY=1\n", message(|m| m.ready = true)),
            (
                b"READY=1\nSTATUS=serving 3 clients",
                message(|m| {
                    m.ready = true;
                    m.status = Some("serving 3 clients".into());
                }),
            ),
            (b"WATCHDOG=1", message(|m| m.watchdog = true)),
            (b"WATCHDOG=trigger", message(|m| m.trigger = true)),
            (b"STOPPING=1", message(|m| m.stopping = true)),
            (
                b"EXTEND_TIMEOUT_USEC=2500000",
                message(|m| m.extend_timeout = Some(ms(2_500))),
            ),
            // Exact values only, as systemd has them.
            (b"READY=yes", message(|m| m.ignored = 1)),
            (b"READY=0", message(|m| m.ignored = 1)),
            (b"WATCHDOG=2", message(|m| m.ignored = 1)),
            (b"EXTEND_TIMEOUT_USEC=-5", message(|m| m.ignored = 1)),
            (b"EXTEND_TIMEOUT_USEC=1e6", message(|m| m.ignored = 1)),
            // Variables we do not act on, and lines that are no assignment.
            (
                b"MAINPID=42\nBARRIER=1\nFDSTORE=1\nnonsense\n=\nREADY=1",
                message(|m| {
                    m.ready = true;
                    m.ignored = 5;
                }),
            ),
            // The last status wins; an empty one is an empty status.
            (
                b"STATUS=a\nSTATUS=b",
                message(|m| m.status = Some("b".into())),
            ),
            (b"STATUS=", message(|m| m.status = Some(String::new()))),
            // A line that is not UTF-8 is ignored, the others count.
            (
                b"STATUS=\xff\xfe\nREADY=1",
                message(|m| {
                    m.ready = true;
                    m.ignored = 1;
                }),
            ),
            // A hot standby's child says which role it acts in; the last one wins.
            (b"ROLE=leader", message(|m| m.role = Some(Role::Leader))),
            (b"ROLE=standby\n", message(|m| m.role = Some(Role::Standby))),
            (
                b"ROLE=leader\nROLE=standby",
                message(|m| m.role = Some(Role::Standby)),
            ),
            (b"ROLE=Leader", message(|m| m.ignored = 1)),
            (b"ROLE=", message(|m| m.ignored = 1)),
            (b"", Err(Malformed::Empty)),
            (b"READY=1\0STATUS=x", Err(Malformed::Nul)),
            (b"\n\n", message(|_| {})),
        ];
        for (datagram, want) in rows {
            assert_eq!(
                parse(datagram),
                want,
                "{:?}",
                String::from_utf8_lossy(datagram)
            );
        }
        assert!(!parse(b"MAINPID=1").unwrap().says_anything());
        assert!(parse(b"STATUS=").unwrap().says_anything());
    }

    #[test]
    fn a_status_is_one_printable_line_of_bounded_length() {
        let long = "x".repeat(MAX_STATUS + 10);
        let cut = format!("{}…", "x".repeat(MAX_STATUS - '…'.len_utf8()));
        let exact = "y".repeat(MAX_STATUS);
        // A multi-byte character is never split.
        let wide = "é".repeat(MAX_STATUS);
        let wide_cut = format!("{}…", "é".repeat((MAX_STATUS - '…'.len_utf8()) / 2));
        // (text, shown)
        let rows = [
            ("serving", "serving".to_owned()),
            ("a\tb\rc", "a b c".to_owned()),
            ("\u{1b}[31mred\u{1b}[0m", " [31mred [0m".to_owned()),
            ("bell\u{7}", "bell ".to_owned()),
            ("c1\u{9b}x", "c1 x".to_owned()),
            ("abc\u{202e}fed", "abc fed".to_owned()),
            ("zero\u{200b}width", "zero width".to_owned()),
            ("日本語", "日本語".to_owned()),
            (&long, cut),
            (&exact, exact.clone()),
            (&wide, wide_cut),
        ];
        for (text, want) in rows {
            let shown = sanitize_status(text);
            assert_eq!(shown, want, "{text:?}");
            assert!(shown.len() <= MAX_STATUS, "{text:?}");
            assert!(!shown.chars().any(char::is_control), "{text:?}");
        }
    }
}
