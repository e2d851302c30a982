//! singleton-exec: run exactly one copy of a command across all replicas, elected through etcd.
//!
//! Two loops, one on each side of [`process::contract`]:
//! * the **process thread** ([`process`]): a plain OS thread, the only owner of the child. It
//!   spawns, forwards signals, reaps every process, runs the stop sequence and enforces the
//!   lease's fail-closed deadline by itself, waiting on nothing but the kernel. It knows nothing
//!   of etcd;
//! * the **leadership loop** ([`leadership`]): async, on one runtime thread. It keeps the lease
//!   alive and campaigns ([`election`]), and while it leads asks the process thread to start the
//!   child and moves the deadline on every acknowledged keepalive. What happens after a child's
//!   tree ends is one pure transition ([`leadership::transition`]).
//!
//! The map, lowest layer first; a layer uses only the layers before it in this list (docs/architecture.md,
//! code map names every file):
//! * [`core`]: the lifecycle ([`core::lifecycle::Phase`], stop reasons, the pure
//!   [`core::lifecycle::decide`]), the timing model and why the child is dead before the lease can
//!   expire ([`core::timing`]), `CLOCK_BOOTTIME`, exit codes, the command spec, the one backoff,
//!   and how logs say durations and repeated failures.
//! * [`process`]: the process thread (above): its handle and its contract with the async side,
//!   the run loop, the stop sequence, spawn, the process tree, check commands, signal set-up, and
//!   the guard that kills the child's group if we are SIGKILLed.
//! * [`health`]: the leader's health checks of its child, which make a wedged leader step down.
//! * [`notify_socket`]: the child's own notify socket (`READY=1`, `STATUS=`, `WATCHDOG=1`, as
//!   systemd gives one), read on a thread of its own; what the child said, and what it means.
//! * [`config`]: what the user typed ([`config::cli`]) → one validated [`config::Config`].
//! * [`election`]: connections to etcd and the failure policy, the lease session, the queue by
//!   create revision and its fencing revision, the candidacy watch, `--slots N`, `--once NAME`
//!   (its record and attempts, written fenced), step-down requests.
//! * [`report`]: status and metrics ([`report::observer`]), the HTTP endpoints, the systemd
//!   notify protocol, non-blocking logs.
//! * [`leadership`]: the loop that moves a replica through its lifecycle: standby (one campaign
//!   for the queue and the slots), then lead (the pure [`leadership::transition`] applied until
//!   the leadership is over, then the one release), the leader's health checks and their display;
//!   with `--once`, the outcome read at the head of the queue and written with the release.
//! * [`commands`]: the `status` (also `status --once`), `resign`, `timing` and `once clear`
//!   subcommands.
//!
//! A unit test (`src/architecture_tests.rs`) checks that every import points to an earlier layer
//! (or within its own folder), that modules form no cycle, and that `unsafe` stays in spawn and
//! signals.

// The map above links the crate-private modules too; read it with `--document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]
// Unsafe code lives only in process::spawn and process::signals, which allow it; everything else
// forbids it (checked by architecture_tests).
#![deny(unsafe_code)]

#[cfg(test)]
/// Unit tests that start children take turns: the process thread reaps with `waitpid(-1)`.
pub(crate) fn test_children() -> std::sync::MutexGuard<'static, ()> {
    static CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod architecture_tests;
pub mod commands;
pub mod config;
pub mod core;
pub mod election;
pub mod health;
pub mod leadership;
pub mod notify_socket;
pub mod process;
pub mod report;
