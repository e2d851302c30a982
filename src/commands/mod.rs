//! The subcommands: [`status`] reads an election's queue and [`resign`] asks its leader to step
//! down and waits for the handoff, both from outside the election; [`once`] shows (`status
//! --once`) and clears (`once clear`) the outcome of a run-once command; [`timing`] prints the
//! worst cases of a replica's configuration, without etcd.

#![forbid(unsafe_code)]

pub mod once;
pub mod resign;
pub mod status;
pub mod timing;
