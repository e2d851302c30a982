//! Log set-up: tracing to stderr, as text or JSON, at a level set by -v/-q or `SINGLETON_EXEC_LOG`.
//!
//! Logging never blocks the caller. stderr is shared with the child and read by whoever started us
//! (a container log driver, journald, a pipe): when that reader stalls, a write to a full pipe
//! blocks. A blocked log call in the process thread would delay the stop signal and SIGKILL at the
//! fail-closed deadline; in the async side, the keepalives. So every line is formatted by its caller
//! and handed to a bounded queue without waiting; one log thread writes the queue to stderr. When the
//! queue is full the line is dropped and counted, and the count is written as soon as stderr takes
//! lines again. Lossy, never blocking.
//!
//! The text format is one line per event, for a person and for grep alike: the time, the level, a
//! short message, then `key=value` fields ([`Text`]). A value is quoted when it is a string or
//! holds a space, a quote or `=`; an empty value is left out (a field says something or is not
//! there); a line at the default level (info) or above stays within [`MAX_LINE`] characters, its
//! longest values shortened if need be. Durations are written as one token by their callers
//! ([`crate::core::duration::Short`]), and errors summarised ([`crate::election::connector`]):
//! the full chain of an etcd error is logged at debug only.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::cli::{LogArgs, LogFormat};

/// Lines waiting for stderr. About 200 KB of typical lines: more than a pipe buffer, so a short
/// stall loses nothing.
const QUEUE_LINES: usize = 1024;

enum Message {
    Line(Vec<u8>),
    /// Answered once everything queued before it was written.
    Flush(SyncSender<()>),
}

struct Queue {
    tx: SyncSender<Message>,
    dropped: AtomicU64,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

/// The format chosen at [`init`], for the lines [`say`] writes.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Starts the log thread (once) and returns the queue.
fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let started = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || write_lines(rx, io::stderr()));
        if started.is_err() {
            // No thread, no logs; never a reason to block or fail.
            eprintln!("singleton-exec: cannot start the log thread; logging is off");
        }
        Queue {
            tx,
            dropped: AtomicU64::new(0),
        }
    })
}

fn write_lines(rx: Receiver<Message>, mut out: impl Write) {
    for msg in rx {
        match msg {
            Message::Line(line) => {
                let dropped = QUEUE
                    .get()
                    .map(|q| q.dropped.swap(0, Ordering::Relaxed))
                    .unwrap_or(0);
                if dropped > 0 {
                    let _ = writeln!(
                        out,
                        "singleton-exec: {dropped} log lines dropped: stderr was not being read"
                    );
                }
                let _ = out.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Hands one formatted line to the log thread; drops it (counted) if the queue is full.
fn enqueue(line: &[u8]) {
    let q = queue();
    match q.tx.try_send(Message::Line(line.to_vec())) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            q.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One line that is the replica's answer rather than a log event (with `--once`, the outcome a
/// replica exits with): shown whatever the level (`-q`, `-qq`, `SINGLETON_EXEC_LOG`), as
/// `singleton-exec: LINE` in text, as one JSON object with `message` in JSON. Queued as every
/// log line is, so it never blocks; `failed` makes its JSON level ERROR.
pub fn say(line: &str, failed: bool) {
    enqueue(&said(
        FORMAT.get().copied(),
        line,
        failed,
        std::time::SystemTime::now(),
    ));
}

fn said(format: Option<LogFormat>, line: &str, failed: bool, at: std::time::SystemTime) -> Vec<u8> {
    let mut out = match format {
        Some(LogFormat::Json) => serde_json::json!({
            "timestamp": humantime::format_rfc3339_micros(at).to_string(),
            "level": if failed { "ERROR" } else { "INFO" },
            "message": line,
        })
        .to_string(),
        _ => format!("singleton-exec: {line}"),
    }
    .into_bytes();
    out.push(b'\n');
    out
}

/// Waits up to `timeout` for queued lines to reach stderr; called before exiting.
pub fn flush(timeout: Duration) {
    let Some(q) = QUEUE.get() else { return };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    if q.tx.try_send(Message::Flush(done_tx)).is_ok() {
        let _ = done_rx.recv_timeout(timeout);
    }
}

/// Lines dropped so far and not yet reported.
pub fn dropped() -> u64 {
    QUEUE
        .get()
        .map(|q| q.dropped.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// The tracing writer: one event is formatted into one buffer, then queued without blocking.
#[derive(Clone, Copy, Default)]
pub struct NonBlocking;

/// Collects one event's bytes; queued when the formatter drops it.
pub struct LineBuffer(Vec<u8>);

impl Write for LineBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            enqueue(&self.0);
        }
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineBuffer;
    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer(Vec::with_capacity(256))
    }
}

/// The longest line at info level and above, in characters: a line a terminal, a log viewer and
/// grep show whole. Lines at debug and trace may be longer (they carry full error chains).
pub const MAX_LINE: usize = 200;

/// Values are never shortened below this many characters to make a line fit.
const MIN_SHORTENED: usize = 24;

/// The text format (module doc): `TIME LEVEL message key=value ...`.
pub struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let limit = (level <= Level::INFO).then_some(MAX_LINE);
        writeln!(writer, "{}", line(&time, level, &fields, limit))
    }
}

/// One event's message and fields, as text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, Value)>,
}

/// A field's value: a string is always quoted (as tracing's own format does); anything else
/// (numbers, `%display` and `?debug` values) only when it must be to stay one token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Other(String),
}

impl Value {
    fn text(&self) -> &str {
        match self {
            Value::Str(t) | Value::Other(t) => t,
        }
    }

    fn with_text(&self, text: String) -> Value {
        match self {
            Value::Str(_) => Value::Str(text),
            Value::Other(_) => Value::Other(text),
        }
    }

    fn render(&self) -> String {
        match self {
            Value::Str(t) => quoted(t),
            Value::Other(t) if needs_quotes(t) => quoted(t),
            Value::Other(t) => t.clone(),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, Value::Str(value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, Value::Other(format!("{value:?}")));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = value.text().to_owned();
        } else {
            self.pairs.push((field.name(), value));
        }
    }
}

/// Whether a value must be quoted to stay one token that reads back as itself.
fn needs_quotes(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'))
}

/// `text` in double quotes, with quotes, backslashes and control characters escaped: never a
/// second line.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The message on one line: control characters (a stray newline) become spaces.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to `chars` characters, the cut marked with `...`.
fn shortened(text: &str, chars: usize) -> String {
    let keep = chars.saturating_sub(3);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str("...");
    out
}

/// One event as a line (without its newline). With a `limit`, a line that would be longer has its
/// longest values shortened, then its message, until it fits (or nothing is left to shorten).
fn line(time: &str, level: Level, fields: &Fields, limit: Option<usize>) -> String {
    let mut message = one_line(&fields.message);
    // An empty value says nothing: the field is left out rather than shown as `key=`.
    let mut pairs: Vec<_> = (fields.pairs.iter())
        .filter(|(_, v)| !v.text().is_empty())
        .cloned()
        .collect();
    let render = |message: &str, pairs: &[(&str, Value)]| {
        let mut out = format!("{time} {level:>5} {message}");
        for (key, value) in pairs {
            out.push_str(&format!(" {key}={}", value.render()));
        }
        out
    };
    let mut text = render(&message, &pairs);
    let Some(limit) = limit else { return text };
    while text.chars().count() > limit {
        let excess = text.chars().count() - limit;
        let longest = pairs
            .iter_mut()
            .map(|(_, v)| v)
            .filter(|v| v.text().chars().count() > MIN_SHORTENED)
            .max_by_key(|v| v.text().chars().count());
        if let Some(value) = longest {
            let len = value.text().chars().count();
            let to = len.saturating_sub(excess).max(MIN_SHORTENED);
            *value = value.with_text(shortened(value.text(), to));
        } else if message.chars().count() > MIN_SHORTENED {
            let len = message.chars().count();
            message = shortened(&message, len.saturating_sub(excess).max(MIN_SHORTENED));
        } else {
            break;
        }
        text = render(&message, &pairs);
    }
    text
}

/// A panic message must not block either (the default hook writes to stderr and waits): it is
/// written only if stderr can take it now, then the process aborts (release builds) as usual.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let mut msg = format!("singleton-exec: internal error: {info}\n").into_bytes();
        msg.truncate(512);
        // Polled without waiting, then one write that fits a pipe's atomic size. Not through
        // `io::stderr()`'s lock, which the log thread may hold while stderr blocks.
        let stderr = io::stderr();
        let mut pfd = [PollFd::new(stderr.as_fd(), PollFlags::POLLOUT)];
        let writable = poll(&mut pfd, PollTimeout::ZERO) == Ok(1)
            && pfd[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLOUT));
        if writable {
            let _ = nix::unistd::write(stderr.as_fd(), &msg);
        }
    }));
}

/// The level of `-v`/`-q`: each `-v` one more detailed than info, each `-q` one less.
fn level(verbose: u8, quiet: u8) -> &'static str {
    match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    }
}

/// The variable that replaces the levels of `-v`/`-q` with a filter of its own.
pub const FILTER_VAR: &str = "SINGLETON_EXEC_LOG";

/// `SINGLETON_EXEC_LOG` is set but is not a filter. A usage error: ignoring it would log at levels
/// nobody asked for, and some strings parse as a target that matches nothing, hiding every line,
/// errors included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{FILTER_VAR}={given:?} is not a log filter: {why} (a comma-separated list of LEVEL, TARGET \
     or TARGET=LEVEL, e.g. debug or singleton_exec=trace,warn; levels: off error warn info debug \
     trace)"
)]
pub struct BadLogFilter {
    given: String,
    why: String,
}

/// The filter: `given` (the variable, as in RUST_LOG: `target=level,...`) when set and not
/// empty, else `singleton_exec` at the level of `-v`/`-q` and warnings from the libraries.
/// Checked directive by directive: a target is a module path (letters, digits, `_`, `::`), a
/// level one of tracing's; `Targets` itself takes any string as a target.
fn filter(given: Option<&str>, level: &str) -> Result<Targets, BadLogFilter> {
    let given = given.map(str::trim).filter(|g| !g.is_empty());
    let Some(given) = given else {
        let default = format!("singleton_exec={level},warn");
        return Ok(default.parse().expect("a valid default filter"));
    };
    let bad = |why: String| BadLogFilter {
        given: given.to_owned(),
        why,
    };
    let directives: Vec<&str> = given.split(',').map(str::trim).collect();
    for directive in &directives {
        check_directive(directive).map_err(bad)?;
    }
    directives
        .join(",")
        .parse()
        .map_err(|e| bad(format!("{e}")))
}

/// One `LEVEL`, `TARGET` or `TARGET=LEVEL`; why not, if it is none of these.
fn check_directive(directive: &str) -> Result<(), String> {
    let (target, level) = match directive.split_once('=') {
        Some((target, level)) => (target, Some(level)),
        None if directive.parse::<LevelFilter>().is_ok() => return Ok(()),
        None => (directive, None),
    };
    let module_path = !target.is_empty()
        && target.split("::").all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !module_path {
        return Err(format!(
            "{target:?} is not a target (a module path such as singleton_exec)"
        ));
    }
    match level {
        Some(level) if level.parse::<LevelFilter>().is_err() => {
            Err(format!("{level:?} is not a level"))
        }
        _ => Ok(()),
    }
}

/// Sets up logging to stderr. A bad `SINGLETON_EXEC_LOG` is refused before anything is logged.
pub fn init(args: &LogArgs) -> Result<(), BadLogFilter> {
    let level = level(args.verbose, args.quiet);
    // `target=level,...` as in RUST_LOG, without the regex engine EnvFilter would pull in.
    let given = std::env::var_os(FILTER_VAR).map(|v| v.to_string_lossy().into_owned());
    let filter = filter(given.as_deref(), level)?;
    let _ = FORMAT.set(args.log_format);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(NonBlocking)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match args.log_format {
        LogFormat::Text => registry
            .with(layer.with_ansi(false).event_format(Text))
            .try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn fields(message: &str, pairs: &[(&'static str, Value)]) -> Fields {
        Fields {
            message: message.into(),
            pairs: pairs.to_vec(),
        }
    }

    const TIME: &str = "2026-01-02T03:04:05.000006Z";

    /// One row per event: message and fields, then the line after the time and level.
    #[test]
    fn a_line_is_a_message_then_one_token_per_field() {
        let s = |t: &str| Value::Str(t.into());
        let o = |t: &str| Value::Other(t.into());
        let rows: &[(Fields, &str)] = &[
            (fields("starting", &[]), "starting"),
            (
                fields("leader", &[("role", s("leader")), ("revision", o("7"))]),
                r#"leader role="leader" revision=7"#,
            ),
            // Empty values are left out, whatever their kind.
            (
                fields(
                    "stopping",
                    &[("lease", o("")), ("key", s("")), ("pid", o("12"))],
                ),
                "stopping pid=12",
            ),
            // A display value with a space, a quote or `=` is quoted, with escapes.
            (
                fields("x", &[("reason", o("the child exited"))]),
                r#"x reason="the child exited""#,
            ),
            (
                fields("x", &[("error", o(r#"say "hi"\now"#))]),
                r#"x error="say \"hi\"\\now""#,
            ),
            (fields("x", &[("a", o("k=v"))]), r#"x a="k=v""#),
            (fields("x", &[("a", o("1.5s"))]), "x a=1.5s"),
            // Never a second line: newlines in values are escaped, in messages blanked.
            (
                fields("two\nlines", &[("e", o("a\nb"))]),
                r#"two lines e="a\nb""#,
            ),
        ];
        for (event, want) in rows {
            let got = line(TIME, Level::INFO, event, Some(MAX_LINE));
            assert_eq!(got, format!("{TIME}  INFO {want}"), "{event:?}");
        }
    }

    #[test]
    fn a_long_line_at_info_is_shortened_to_fit_and_at_debug_kept() {
        let long = "x".repeat(300);
        let event = fields(
            "cannot do it",
            &[
                ("key", Value::Str("/prefix/name/694d7a1b2c3d4e5f".into())),
                ("error", Value::Other(format!("reason {long}"))),
                ("n", Value::Other("3".into())),
            ],
        );
        for level in [Level::ERROR, Level::WARN, Level::INFO] {
            let got = line(TIME, level, &event, Some(MAX_LINE));
            assert_eq!(got.chars().count(), MAX_LINE, "{got}");
            // The short values stay whole, the long one is cut and says so.
            assert!(
                got.contains(r#"key="/prefix/name/694d7a1b2c3d4e5f""#),
                "{got}"
            );
            assert!(got.ends_with(r#"xxx..." n=3"#), "{got}");
        }
        let got = line(TIME, Level::DEBUG, &event, None);
        assert!(got.contains(&long), "{got}");
        // Nothing long enough to shorten: the line is left as it is.
        let many: Vec<(&'static str, Value)> =
            (0..40).map(|_| ("k", Value::Other("v".into()))).collect();
        let got = line(TIME, Level::INFO, &fields("m", &many), Some(MAX_LINE));
        assert!(got.ends_with("k=v k=v"), "{got}");
    }

    /// Through tracing itself: the message first whatever the order of the macro's arguments,
    /// `%display` values bare, strings quoted.
    #[test]
    fn events_are_formatted_through_the_text_format() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || out.clone())
            .event_format(Text);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let took = crate::core::duration::Short(Duration::from_millis(1_500));
            tracing::warn!(id = "a", took = %took, reason = %"lease gone", "the event");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let (_, rest) = text.split_once("  WARN ").expect(&text);
        assert_eq!(rest, "the event id=\"a\" took=1.5s reason=\"lease gone\"\n");
    }

    #[test]
    fn levels_from_the_flags() {
        let rows = [
            (0, 0, "info"),
            (1, 0, "debug"),
            (2, 0, "trace"),
            (9, 0, "trace"),
            (0, 1, "warn"),
            (0, 2, "error"),
            (0, 9, "error"),
        ];
        for (verbose, quiet, want) in rows {
            assert_eq!(level(verbose, quiet), want, "-v x{verbose} -q x{quiet}");
            let filter = format!("singleton_exec={want},warn");
            assert!(filter.parse::<Targets>().is_ok(), "{filter}");
        }
    }

    /// What `SINGLETON_EXEC_LOG` may hold. One row: the value (`None`: unset), then what the
    /// filter enables, with `-v`/`-q` at info, as (target, level, enabled?) probes; `None` where
    /// the value is refused.
    #[test]
    fn log_filters_are_checked() {
        use tracing::Level;
        /// (target, level, enabled?)
        type Probes = &'static [(&'static str, Level, bool)];
        let rows: &[(Option<&str>, Option<Probes>)] = &[
            (
                None,
                Some(&[
                    ("singleton_exec::x", Level::INFO, true),
                    ("h2", Level::INFO, false),
                ]),
            ),
            (Some(""), Some(&[("singleton_exec", Level::INFO, true)])),
            (Some("  "), Some(&[("singleton_exec", Level::DEBUG, false)])),
            (
                Some("debug"),
                Some(&[("h2", Level::DEBUG, true), ("h2", Level::TRACE, false)]),
            ),
            (
                Some("singleton_exec=trace,warn"),
                Some(&[
                    ("singleton_exec::a", Level::TRACE, true),
                    ("h2", Level::INFO, false),
                ]),
            ),
            (
                Some("singleton_exec::election , h2=off,"),
                Some(&[
                    ("singleton_exec::election", Level::TRACE, true),
                    ("h2", Level::ERROR, false),
                ]),
            ),
            (
                Some("OFF"),
                Some(&[("singleton_exec", Level::ERROR, false)]),
            ),
            (Some("[[["), None),
            (Some("singleton_exec=loud"), None),
            (Some("a=b=c"), None),
            (Some("my app=debug"), None),
            (Some("=debug"), None),
            (Some("a::=debug"), None),
            (Some("x[{y}]=info"), None),
            (Some("singleton-exec"), None),
        ];
        for (given, want) in rows {
            let got = filter(*given, "info");
            match (want, got) {
                (Some(probes), Ok(targets)) => {
                    for (target, level, enabled) in *probes {
                        assert_eq!(
                            targets.would_enable(target, level),
                            *enabled,
                            "{given:?} {target} {level}"
                        );
                    }
                }
                (None, Err(e)) => {
                    let e = e.to_string();
                    assert!(e.starts_with("SINGLETON_EXEC_LOG="), "{e}");
                    assert!(!e.contains('\n'), "{e}");
                }
                (want, got) => panic!("{given:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn answers_are_one_line_in_either_format() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1);
        let text = said(Some(LogFormat::Text), "once m: done", false, at);
        assert_eq!(text, b"singleton-exec: once m: done\n");
        assert_eq!(said(None, "x", true, at), b"singleton-exec: x\n");
        let json = said(Some(LogFormat::Json), "once m: \"failed\"", true, at);
        assert_eq!(json.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["message"], "once m: \"failed\"");
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:01.000000Z");
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // Nobody drains this queue: the writer must still return at once.
        let (tx, _rx) = mpsc::sync_channel::<Message>(2);
        let q = Queue {
            tx,
            dropped: AtomicU64::new(0),
        };
        let start = Instant::now();
        for _ in 0..10_000 {
            if q.tx.try_send(Message::Line(b"x\n".to_vec())).is_err() {
                q.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(q.dropped.load(Ordering::Relaxed), 10_000 - 2);
    }

    #[test]
    fn the_writer_reports_drops_before_the_next_line() {
        let (tx, rx) = mpsc::sync_channel(8);
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        // The global queue's counter is what the writer reports; use it through `queue()`.
        queue().dropped.fetch_add(3, Ordering::Relaxed);
        tx.send(Message::Line(b"after\n".to_vec())).unwrap();
        drop(tx);
        write_lines(rx, Shared(out.clone()));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert!(text.contains("log lines dropped"), "{text}");
        assert!(text.ends_with("after\n"), "{text}");
    }
}
