//! singleton-exec: run exactly one copy of a command across all replicas, elected through etcd.
//!
//! The map, in the order a request flows through it:
//! * [`cli`]: what the user typed (clap), every option with its environment variable.
//! * [`config`]: CLI + environment → a validated [`config::Config`]; [`timing`]: the timing model,
//!   its rules and the retry schedule, and why the child is dead before the lease can expire.
//! * [`signals`]: blocks every signal first thing in `main`, records what the child should inherit,
//!   forwards fault signals that other processes send.
//! * [`supervisor`]: the process thread, sole owner of spawn ([`spawn`]), signal forwarding, reaping
//!   and the stop sequence, including the fail-closed lease deadline; [`process_tree`] finds every
//!   descendant; [`guard`] kills the child's group if the supervisor is SIGKILLed.
//! * [`etcd`]: connections, one endpoint at a time, and the one failure policy; [`session`]: the
//!   lease and its (jittered) keepalives; [`election`]: the queue by create-revision and the
//!   fencing revision; [`candidacy_watch`]: one watch stream per candidacy (its key, step-down
//!   requests, the candidate ahead), so a leader change needs no new watch; [`slots`]: `--slots N`,
//!   N copies each on its own slot, claimed by the first standby.
//! * [`lifecycle`]: the one lifecycle type ([`lifecycle::Phase`]), typed stop reasons and the pure
//!   [`lifecycle::decide`]; [`leadership`]: the loop that moves through it (standby, then lead:
//!   start the child, run until its tree is gone, decide, apply); [`health`]: the leader's health
//!   checks of its child, which make a wedged leader step down ([`check_process`]: command checks
//!   in the process thread).
//! * [`observer`]: live status and Prometheus metrics; [`http`]: `/healthz`, `/leader`, `/status`,
//!   `/metrics`, `POST /resign`; [`notify`]: the systemd notify protocol.
//! * [`resign`]: step-down requests through etcd (their format, and the leader's watch for them);
//!   [`switchover`]: the `resign` subcommand that puts one and waits for the handoff.
//! * [`status`]: the `status` subcommand; [`logging`]: non-blocking logs; [`clock`]:
//!   `CLOCK_BOOTTIME`; [`exit_code`]: the [`exit_code::Exit`] type.
//!
//! Dependencies point one way: `etcd`, `timing` and `clock` depend on nothing upstream; `config` on
//! `cli`, `timing` and the etcd types; `leadership` on everything it drives.

// The map above links the crate-private modules too; read it with `--document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

#[cfg(test)]
/// Unit tests that start children take turns: the process thread reaps with `waitpid(-1)`.
pub(crate) fn test_children() -> std::sync::MutexGuard<'static, ()> {
    static CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) mod candidacy_watch;
pub(crate) mod check_process;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod election;
pub(crate) mod etcd;
pub mod exit_code;
pub mod guard;
pub mod health;
pub(crate) mod http;
pub mod leadership;
pub(crate) mod lifecycle;
pub mod logging;
pub mod notify;
pub mod observer;
pub(crate) mod process_tree;
pub(crate) mod resign;
pub(crate) mod session;
pub mod signals;
pub(crate) mod slots;
pub mod spawn;
pub mod status;
pub mod supervisor;
pub mod switchover;
pub(crate) mod timing;
