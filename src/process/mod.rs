//! The process side: one OS thread that owns the child, and knows nothing of etcd.
//!
//! The async side talks to it only through [`contract`] (requests in, events out, and the lease's
//! fail-closed deadline carried in every request that may start or extend a child). The thread
//! ([`thread`]) spawns ([`spawn`]), forwards signals ([`signals`]), reaps every process
//! (`waitpid(-1)`: it is the only reaper), runs health-check commands ([`check`]), finds the whole
//! tree ([`tree`]) and stops it, and stops it by itself when the deadline passes; [`guard`] kills
//! the child's group if this process is SIGKILLed.

pub mod check;
pub mod contract;
pub mod guard;
pub mod signals;
pub mod spawn;
pub mod thread;
pub(crate) mod tree;
