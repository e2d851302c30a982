//! The command a leader runs, as the user gave it (program and arguments, not yet resolved through
//! `PATH`: the process side does that, once at start-up and again for each start).

use std::ffi::OsString;

/// The command to run while leader.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
}
