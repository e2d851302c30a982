//! Log set-up: tracing to stderr, as text or JSON, at a level set by -v/-q or `SINGLETON_EXEC_LOG`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogArgs, LogFormat};

pub fn init(args: &LogArgs) {
    let level = match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    // `target=level,...` as in RUST_LOG, without the regex engine EnvFilter would pull in.
    let filter: Targets = std::env::var("SINGLETON_EXEC_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            format!("singleton_exec={level},warn")
                .parse()
                .expect("a valid default filter")
        });
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match args.log_format {
        LogFormat::Text => registry.with(layer.with_ansi(false)).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
