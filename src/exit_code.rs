//! The exit codes singleton-exec itself uses, in one place so `--help`, the README and the code agree.
//!
//! The child's own status always wins when there is one: exit N → N, killed by signal S → 128+S. The
//! codes below are for the cases where the supervisor, not the child, decides how the process ends. A
//! child may exit with the same numbers; the log always says which one happened.

/// Bad flags, a bad environment variable, an impossible timing model, unreadable TLS files.
pub const USAGE: i32 = 2;
/// etcd refused us for good: authentication failed or permission denied on the election prefix.
pub const ETCD_REJECTED: i32 = 3;
/// Leadership was lost and `--on-lease-lost exit` was chosen.
pub const LEASE_LOST: i32 = 122;
/// `--acquire-timeout` passed before this replica became leader (etcd unreachable or another leader).
pub const ACQUIRE_TIMEOUT: i32 = 124;
/// The supervisor itself failed (could not fork, lost its process thread, ...), as `docker run` uses it.
pub const INTERNAL: i32 = 125;
/// The command was found but could not be executed (permission denied, bad format).
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// A child killed by signal S makes us exit with `SIGNALED_BASE + S`, as shells do.
pub const SIGNALED_BASE: i32 = 128;

/// The table printed at the end of `--help`.
pub const HELP_TABLE: &str = "\
Exit codes:
  N        the child exited with status N (also 0)
  128+S    the child was killed by signal S (143 after SIGTERM, 137 after SIGKILL)
  2        usage or configuration error (bad flag, timing rule broken, unreadable TLS file)
  3        etcd rejected the credentials or the permission on the election prefix
  122      leadership was lost and --on-lease-lost=exit
  124      --acquire-timeout passed before this replica became leader
  125      the supervisor itself failed
  126      the command could not be executed
  127      the command was not found
  0        also: a standby stopped by SIGTERM/SIGINT before it ever led";
