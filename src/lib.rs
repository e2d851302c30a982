//! singleton-exec: run exactly one copy of a command across all replicas, elected through etcd.
//!
//! The map, in the order a request flows through it:
//! * [`cli`]: what the user typed (clap), every option with its environment variable.
//! * [`config`]: CLI + environment → a validated [`config::Config`]; [`timing`]: the timing model and
//!   its rules, and why the child is dead before the lease can expire.
//! * [`signals`]: blocks every signal first thing in `main`, records what the child should inherit.
//! * [`supervisor`]: the process thread, sole owner of spawn ([`spawn`]), signal forwarding, reaping
//!   and the stop sequence, including the fail-closed lease deadline; [`process_tree`] finds every
//!   descendant.
//! * [`etcd`]: connections, one endpoint at a time, and error classification; [`session`]: the lease
//!   and its keepalives; [`election`]: the queue by create-revision and the fencing revision.
//! * [`leadership`]: the loop standby → leader → stopping → standby/exit.
//! * [`observer`]: live status and Prometheus metrics; [`http`]: `/healthz`, `/leader`, `/status`,
//!   `/metrics`, `POST /resign`; [`notify`]: the systemd notify protocol.
//! * [`status`]: the `status` subcommand; [`logging`]; [`clock`]: `CLOCK_BOOTTIME`; [`exit_code`].

pub mod cli;
pub mod clock;
pub mod config;
pub mod election;
pub mod etcd;
pub mod exit_code;
pub mod http;
pub mod leadership;
pub mod logging;
pub mod notify;
pub mod observer;
pub mod process_tree;
pub mod session;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod supervisor;
pub mod timing;
