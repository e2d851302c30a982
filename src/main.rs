//! The `singleton-exec` binary: the duties of start-up in order, each one a library call.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use singleton_exec::commands::{once, resign, status, timing};
use singleton_exec::config::cli::{self, Cli, Command, OnceAction};
use singleton_exec::config::Config;
use singleton_exec::core::command::CommandSpec;
use singleton_exec::core::exit_code::{self, Exit};
use singleton_exec::health::Check;
use singleton_exec::leadership;
use singleton_exec::notify_socket::{Listener, Tally};
use singleton_exec::process::contract::Settings;
use singleton_exec::process::handle::{self, ProcessThread};
use singleton_exec::process::{guard, signals, spawn};
use singleton_exec::report::observer::Observer;
use singleton_exec::report::{logging, notify};

fn main() {
    if let Some(code) = guard::run_if_guard() {
        std::process::exit(code);
    }
    // Before any thread exists: every thread and the child inherit this mask.
    signals::block_all();
    let code = run();
    // Queued log lines get a moment to reach stderr; a stalled reader does not hold up the exit.
    logging::flush(Duration::from_millis(500));
    std::process::exit(code);
}

fn run() -> i32 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match cli::parse(argv.iter().cloned()) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprint!("{}", cli::render_parse_error(&e, &argv));
            return Exit::Usage.code();
        }
        Err(e) => {
            let _ = e.print(); // --help, --version
            return 0;
        }
    };
    let log = match &cli.subcommand {
        Some(Command::Status(args)) => &args.log,
        Some(Command::Resign(args)) => &args.log,
        Some(Command::Timing(args)) => &args.run.log,
        Some(Command::Once(args)) => match &args.action {
            OnceAction::Clear(a) => &a.log,
        },
        None => &cli.run.log,
    };
    if let Err(e) = logging::init(log) {
        eprintln!("singleton-exec: {e}");
        return Exit::Usage.code();
    }
    match cli.subcommand {
        Some(Command::Status(args)) if args.once.is_some() => block_on(once::status(args)),
        Some(Command::Status(args)) => block_on(status::run(args)),
        Some(Command::Resign(args)) => block_on(resign::run(args)),
        Some(Command::Timing(args)) => timing::run(*args),
        Some(Command::Once(args)) => match args.action {
            OnceAction::Clear(a) => block_on(once::clear(a)),
        },
        None => {
            logging::install_panic_hook();
            supervise(cli, &argv).code()
        }
    }
}

/// The supervising mode, as its duties in order: validate, check the commands, take charge of
/// orphans, bind the health port, start the process thread and the children's notify sockets,
/// run the leadership loop.
fn supervise(cli: Cli, argv: &[OsString]) -> Exit {
    match prepare(cli, argv) {
        Ok(run) => run(),
        Err(exit) => exit,
    }
}

/// Everything that can fail before the leadership loop starts; then the loop, to run.
fn prepare(cli: Cli, argv: &[OsString]) -> Result<impl FnOnce() -> Exit, Exit> {
    not_a_mistyped_subcommand(argv, &cli.run.command)?;
    let sources = cli.run.sources.clone();
    let config = Config::from_args(cli.run).map_err(|e| {
        eprintln!(
            "singleton-exec: {}",
            sources.explain(&e.to_string(), &e.options())
        );
        Exit::Usage
    })?;
    for (warning, options) in config.warnings() {
        tracing::warn!("{}", sources.explain(warning, options));
    }
    check_commands(&config)?;
    let sent_faults = signals::forward_sent_faults()
        .inspect_err(|e| tracing::warn!(error = %e, "cannot forward SIGABRT/SIGSEGV/... sent by other processes"))
        .ok();
    let guard = take_charge_of_orphans()?;
    let health = config
        .health_addr
        .map(std::net::TcpListener::bind)
        .transpose()
        .map_err(|e| {
            eprintln!("singleton-exec: --health-addr: cannot listen: {e}");
            Exit::Usage
        })?;
    // Read before the child could ever see them (spawn removes them from its environment).
    let notifier = notify::Notifier::from_env();
    let observer = Arc::new(
        Observer::new(
            config.id.clone(),
            config.election.clone(),
            config.timing,
            notifier,
        )
        .expecting(config.notify),
    );
    let settings = Settings {
        stop_signal: config.stop_signal as i32,
        grace: config.timing.grace,
        resign_signal: config.resign_signal.map(|s| s as i32),
        role_signal: config.hot.map(|h| h.role_signal as i32),
    };
    let process = ProcessThread::start(settings, sent_faults, guard).map_err(|e| {
        tracing::error!(error = %e, "cannot start the process thread");
        Exit::Internal
    })?;
    let notify = children_notify_sockets(&config, observer.clone())?;
    Ok(move || match runtime() {
        Ok(rt) => rt.block_on(leadership::run(config, process, observer, health, notify)),
        Err(code) => code,
    })
}

/// The thread that reads each child's notify socket. Without it a child gets no NOTIFY_SOCKET:
/// a warning, unless `--watchdog` or `--ready-timeout` needs it (then nothing could be judged).
fn children_notify_sockets(
    config: &Config,
    tally: Arc<Observer>,
) -> Result<Option<Listener>, Exit> {
    let tally: Arc<dyn Tally> = tally;
    match Listener::start(tally) {
        Ok(listener) => Ok(Some(listener)),
        Err(e) if config.notify == Default::default() && config.hot.is_none() => {
            tracing::warn!(error = %e, "cannot listen for the child's notifications: it gets no NOTIFY_SOCKET");
            Ok(None)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for the child's notifications, which --watchdog, --ready-timeout and --hot-standby need");
            Err(Exit::Internal)
        }
    }
}

/// `singleton-exec stauts`: a word in the place of a subcommand, close to one, that names no
/// command on PATH is a mistyped subcommand (a usage error), not a command that is not found.
fn not_a_mistyped_subcommand(argv: &[OsString], command: &[OsString]) -> Result<(), Exit> {
    let Some((word, meant)) = cli::mistyped_subcommand(argv, command) else {
        return Ok(());
    };
    let spec = CommandSpec {
        program: word.clone().into(),
        args: vec![],
    };
    match spawn::preflight(&spec) {
        Err(e) if e.exit_code() == exit_code::NOT_FOUND => {
            eprintln!("singleton-exec: unknown subcommand `{word}`, and no command `{word}` on PATH: did you mean `{meant}`?");
            Err(Exit::Usage)
        }
        _ => Ok(()),
    }
}

/// The command, and the shell a `--health-cmd` needs, can be run: else a clear error now.
fn check_commands(config: &Config) -> Result<(), Exit> {
    if let Err(e) = spawn::preflight(&config.command) {
        eprintln!("singleton-exec: {e}");
        return Err(e.exit());
    }
    if let Some(Check::Command(_)) = config.health.as_ref().map(|h| &h.check) {
        let sh = CommandSpec {
            program: "/bin/sh".into(),
            args: vec![],
        };
        if let Err(e) = spawn::preflight(&sh) {
            eprintln!("singleton-exec: --health-cmd runs /bin/sh -c, and {e}; without a shell (a FROM-scratch image), use --health-url");
            return Err(Exit::Usage);
        }
    }
    Ok(())
}

/// Starts the guard (unless we are PID 1: the kernel kills the PID namespace with us), then
/// becomes a child subreaper, so orphans of the child's tree are ours to reap and wait for.
fn take_charge_of_orphans() -> Result<Option<guard::Guard>, Exit> {
    // Before becoming a subreaper, so the double-forked guard is not re-parented to us; a subreaper
    // setting inherited across exec would have the same effect, so it is cleared first.
    let _ = handle::clear_subreaper();
    let guard = if std::process::id() == 1 {
        None
    } else {
        guard::Guard::start()
            .inspect_err(|e| tracing::warn!(error = %e, "cannot start the guard: the child's tree may outlive a SIGKILL of singleton-exec"))
            .ok()
    };
    handle::become_subreaper().map_err(|e| {
        tracing::error!(error = %e, "cannot become a child subreaper");
        Exit::Internal
    })?;
    Ok(guard)
}

fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("singleton-exec: cannot start the async runtime: {e}");
            Exit::Internal
        })
}

fn block_on<F: std::future::Future<Output = i32>>(f: F) -> i32 {
    match runtime() {
        Ok(rt) => rt.block_on(f),
        Err(exit) => exit.code(),
    }
}
