//! The `singleton-exec` binary: the steps of start-up in order, each one a library call.

use std::sync::Arc;

use clap::Parser;

use singleton_exec::cli::{Cli, Command};
use singleton_exec::config::Config;
use singleton_exec::observer::Observer;
use singleton_exec::{exit_code, leadership, logging, notify, signals, spawn, status, supervisor};

fn main() {
    // Before any thread exists: every thread and the child inherit this mask.
    signals::block_all();
    std::process::exit(run());
}

fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit_code::USAGE } else { 0 };
        }
    };
    if let Some(Command::Status(args)) = cli.subcommand {
        logging::init(&args.log);
        return block_on(status::run(args));
    }
    logging::init(&cli.run.log);
    let config = match Config::from_args(cli.run) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("singleton-exec: {e}");
            return exit_code::USAGE;
        }
    };
    if let Err(e) = spawn::preflight(&config.command) {
        eprintln!("singleton-exec: {e}");
        return e.exit_code();
    }
    if let Err(e) = supervisor::become_subreaper() {
        tracing::error!(error = %e, "cannot become a child subreaper");
        return exit_code::INTERNAL;
    }
    let health = match config
        .health_addr
        .map(std::net::TcpListener::bind)
        .transpose()
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("singleton-exec: --health-addr: cannot listen: {e}");
            return exit_code::USAGE;
        }
    };
    // Read before the child could ever see them (spawn removes them from its environment).
    let notifier = notify::Notifier::from_env();
    let observer = Arc::new(Observer::new(
        config.id.clone(),
        config.election.clone(),
        config.timing,
        notifier,
    ));
    let sup = match supervisor::Supervisor::start(
        config.stop_signal as i32,
        config.timing.grace,
        config.resign_signal.map(|s| s as i32),
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the process thread");
            return exit_code::INTERNAL;
        }
    };
    block_on(leadership::run(config, sup, observer, health))
}

fn block_on<F: std::future::Future<Output = i32>>(f: F) -> i32 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("singleton-exec: cannot start the async runtime: {e}");
            exit_code::INTERNAL
        }
    }
}
