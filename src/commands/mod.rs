//! The subcommands that talk to an election from outside it: [`status`] reads the queue, and
//! [`resign`] asks the leader to step down and waits for the handoff.

#![forbid(unsafe_code)]

pub mod resign;
pub mod status;
