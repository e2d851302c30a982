//! The process side: one OS thread that owns the child, and knows nothing of etcd.
//!
//! The async side talks to it only through [`contract`] (requests in, events out, and the lease's
//! fail-closed deadline carried in every request that may start or extend a child), by way of the
//! handle it holds ([`handle`]). The thread ([`thread`]) spawns ([`spawn`]), forwards signals
//! ([`signals`]), reaps every process (`waitpid(-1)`: it is the only reaper), runs health-check
//! commands ([`check`]), finds the whole tree ([`tree`]) and stops it ([`stop`]: the stop
//! sequence's state and rules), and stops it by itself when the deadline passes; [`guard`] kills
//! the child's group if this process is SIGKILLed.
//!
//! `unsafe` is denied here, and allowed only in [`spawn`] (clone and the child's side of it, the
//! wait calls) and [`signals`] (signal dispositions and handlers); every other module forbids it.

#![deny(unsafe_code)]

pub mod check;
pub mod contract;
pub mod guard;
pub mod handle;
pub mod signals;
pub mod spawn;
pub(crate) mod stop;
pub(crate) mod thread;
pub(crate) mod tree;

/// Checks a decision table: `decide(input)` must be the expected output on every row; a failure
/// names its row.
#[cfg(test)]
pub(crate) fn assert_table<I: std::fmt::Debug, O: PartialEq + std::fmt::Debug>(
    rows: impl IntoIterator<Item = (I, O)>,
    decide: impl Fn(I) -> O,
) {
    for (input, expected) in rows {
        let row = format!("{input:?}");
        assert_eq!(decide(input), expected, "row {row}");
    }
}
