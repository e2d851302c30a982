//! How the process ends: the child's status when there is one, else one of the supervisor's own
//! codes, in one place so `--help`, docs/usage.md#exit-codes and the code agree.
//!
//! The child's own status always wins when there is one: exit N → N, killed by signal S → 128+S. The
//! codes below are for the cases where the supervisor, not the child, decides how the process ends. A
//! child may exit with the same numbers; the log always says which one happened.

/// Bad flags, a bad environment variable, an impossible timing model, unreadable TLS files.
pub const USAGE: i32 = 2;
/// etcd refused us for good, on every endpoint: authentication failed, permission denied on the
/// election prefix, or another answer no retry can change.
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
  3        etcd refused us for good on every endpoint (credentials, permissions, an answer no retry changes)
  122      leadership was lost and --on-lease-lost=exit
  124      --acquire-timeout passed before this replica became leader
  125      the supervisor itself failed
  126      the command could not be executed
  127      the command was not found
  0        also: a standby stopped by SIGTERM/SIGINT before it led again (not with --once)
  N        with --once, a replica that did not run COMMAND: the outcome recorded in etcd, 0
           after a run succeeded, the last failed run's status after --once-attempts failures
  128+S    also, with --once: stopped by signal S (SIGTERM, SIGINT) before an outcome was
           recorded, never 0";

/// How the main child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    Exited(i32),
    Signaled(i32),
}

impl ChildStatus {
    /// The status a shell would report: N, or 128+S.
    pub fn code(self) -> i32 {
        match self {
            ChildStatus::Exited(code) => code,
            ChildStatus::Signaled(sig) => SIGNALED_BASE + sig,
        }
    }

    /// Decodes a `waitpid` status of a process that ended (not one that stopped).
    pub fn from_wait(status: libc::c_int) -> Option<ChildStatus> {
        if libc::WIFEXITED(status) {
            Some(ChildStatus::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(ChildStatus::Signaled(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

impl std::fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildStatus::Exited(code) => write!(f, "exited with status {code}"),
            ChildStatus::Signaled(sig) => write!(f, "killed by {}", signal_name(*sig)),
        }
    }
}

/// Why the process ends, and so its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The child's status is ours.
    Child(ChildStatus),
    /// A standby (or a replica between two leaderships) stopped on request: 0.
    Withdrew,
    /// With `--once`, a replica that did not run the command: the outcome recorded in etcd, 0
    /// after a run succeeded, else the last failed run's status (N, or 128+S).
    Recorded(i32),
    /// With `--once`, a replica stopped by this signal before an outcome was recorded: 128+S, as
    /// a shell reports a command killed by it. Never 0, which would say the command succeeded.
    Interrupted(libc::c_int),
    Usage,
    EtcdRejected,
    LeaseLost,
    AcquireTimeout,
    Internal,
    NotExecutable,
    NotFound,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            Exit::Child(status) => status.code(),
            Exit::Withdrew => 0,
            Exit::Recorded(code) => code,
            Exit::Interrupted(sig) => SIGNALED_BASE + sig,
            Exit::Usage => USAGE,
            Exit::EtcdRejected => ETCD_REJECTED,
            Exit::LeaseLost => LEASE_LOST,
            Exit::AcquireTimeout => ACQUIRE_TIMEOUT,
            Exit::Internal => INTERNAL,
            Exit::NotExecutable => NOT_EXECUTABLE,
            Exit::NotFound => NOT_FOUND,
        }
    }
}

/// A human name for a signal number, for logs.
pub fn signal_name(sig: libc::c_int) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) if sig >= libc::SIGRTMIN() && sig <= libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", sig - libc::SIGRTMIN())
        }
        Err(_) => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_shell_and_the_table() {
        assert_eq!(Exit::Child(ChildStatus::Exited(7)).code(), 7);
        assert_eq!(
            Exit::Child(ChildStatus::Signaled(libc::SIGKILL)).code(),
            137
        );
        assert_eq!(
            Exit::Child(ChildStatus::Signaled(libc::SIGTERM)).code(),
            143
        );
        assert_eq!(Exit::Withdrew.code(), 0);
        assert_eq!(Exit::Recorded(0).code(), 0);
        assert_eq!(Exit::Recorded(137).code(), 137);
        assert_eq!(Exit::Interrupted(libc::SIGTERM).code(), 143);
        assert_eq!(Exit::Interrupted(libc::SIGINT).code(), 130);
        for (exit, code) in [
            (Exit::Usage, 2),
            (Exit::EtcdRejected, 3),
            (Exit::LeaseLost, 122),
            (Exit::AcquireTimeout, 124),
            (Exit::Internal, 125),
            (Exit::NotExecutable, 126),
            (Exit::NotFound, 127),
        ] {
            assert_eq!(exit.code(), code, "{exit:?}");
            assert!(
                HELP_TABLE.contains(&format!("  {code} ")),
                "{code} not in --help"
            );
        }
    }

    #[test]
    fn wait_statuses_decode() {
        // Exit status 3 is encoded as 3 << 8; death by SIGKILL as 9.
        assert_eq!(ChildStatus::from_wait(3 << 8), Some(ChildStatus::Exited(3)));
        assert_eq!(ChildStatus::from_wait(9), Some(ChildStatus::Signaled(9)));
        // Stopped by SIGTSTP (0x7f marker): not an end.
        assert_eq!(ChildStatus::from_wait((libc::SIGTSTP << 8) | 0x7f), None);
    }
}
