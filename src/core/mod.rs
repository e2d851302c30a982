//! The vocabulary every other part speaks, with no I/O and no dependency on the rest of the crate:
//! the lifecycle of a replica and the pure decision after a child's tree ends, the timing model
//! that keeps the promise, the boot-time clock, exit codes, the command to run, the one
//! backoff used by everything that retries, and how logs say durations and repeated failures.

#![forbid(unsafe_code)]

pub mod backoff;
pub(crate) mod clock;
pub mod command;
pub mod duration;
pub mod exit_code;
pub(crate) mod lifecycle;
pub mod repeated;
pub(crate) mod timing;
