//! Health-check processes, as the process thread runs them ([`crate::process::thread`]): at most one at
//! a time, each `/bin/sh -c CMD` in a process group of its own.
//!
//! Invariants:
//! * the group is SIGKILLed when the check's timeout passes, when a stop begins, and when its
//!   leader has exited but is not reaped yet (its zombie pins the group id, so the id cannot name
//!   another group): nothing a check started in its group outlives it;
//! * its stdout and stderr are a pipe whose non-blocking read end this thread polls and drains
//!   (the first [`OUTPUT_KEPT`] bytes kept, the rest discarded, so the check never blocks on a full
//!   pipe); the output is complete when the check is reaped, nothing waits for end-of-file;
//! * every call is a non-blocking system call: nothing here can delay the fail-closed deadline.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::core::clock::BootInstant;
use crate::core::exit_code::ChildStatus;
use crate::process::contract::CheckExit;
use crate::process::guard::ChildNote;
use crate::process::{signals, spawn};

/// Output kept per check, for the log and `/status`.
pub const OUTPUT_KEPT: usize = 4096;
/// Bytes read per wake-up at most, so a check that floods its output cannot hold this thread.
const READ_PER_WAKE: usize = 64 * 1024;

/// How a check ended, with its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: u64,
    pub exit: CheckExit,
    pub output: String,
}

struct Running {
    id: u64,
    /// Also its process group id.
    pid: libc::pid_t,
    timeout_at: BootInstant,
    timed_out: bool,
    /// Killed because the stop sequence began: it has no result.
    cancelled: bool,
    /// The read end of its output pipe, until end-of-file.
    output: Option<OwnedFd>,
    /// Readable once the check has ended: its end wakes the thread even when no SIGCHLD reaches
    /// the signalfd (another thread that does not block SIGCHLD may take it) and the output's
    /// end-of-file came just before the process became reapable.
    pidfd: Option<OwnedFd>,
    kept: Vec<u8>,
}

/// The check in flight, if any.
#[derive(Default)]
pub struct CheckSlot {
    current: Option<Running>,
}

impl CheckSlot {
    pub fn is_running(&self) -> bool {
        self.current.is_some()
    }

    /// Starts the check. `Err` is the result to report at once (the start or the pipe failed).
    pub fn start(
        &mut self,
        id: u64,
        command: &str,
        env: &[(String, String)],
        timeout: Duration,
        note: Option<&ChildNote<'_>>,
    ) -> Result<(), CheckExit> {
        let (read, write) = pipe().map_err(|e| CheckExit::SpawnFailed(format!("pipe: {e}")))?;
        let pid = spawn::spawn_check(command, env, write, note)
            .map_err(|e| CheckExit::SpawnFailed(e.to_string()))?;
        self.current = Some(Running {
            id,
            pid,
            timeout_at: BootInstant::now() + timeout,
            timed_out: false,
            cancelled: false,
            output: Some(read),
            pidfd: spawn::pidfd(pid),
            kept: Vec::new(),
        });
        Ok(())
    }

    /// The check's process group, for the guard.
    pub fn group(&self) -> Option<libc::pid_t> {
        self.current.as_ref().map(|c| c.pid)
    }

    /// The output pipe to poll, while it is open.
    pub fn output_fd(&self) -> Option<BorrowedFd<'_>> {
        self.current
            .as_ref()
            .and_then(|c| c.output.as_ref())
            .map(|f| f.as_fd())
    }

    /// The check's pidfd, to poll, while it runs.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.current
            .as_ref()
            .and_then(|c| c.pidfd.as_ref())
            .map(|f| f.as_fd())
    }

    /// When the timeout must be enforced, if it has not been.
    pub fn next_wake(&self) -> Option<BootInstant> {
        self.current
            .as_ref()
            .filter(|c| !c.timed_out && !c.cancelled)
            .map(|c| c.timeout_at)
    }

    /// Kills a check past its timeout, with its group.
    pub fn enforce_timeout(&mut self) {
        if let Some(c) = &mut self.current {
            if !c.timed_out && !c.cancelled && c.timeout_at.has_passed() {
                c.timed_out = true;
                kill_group(c.pid);
            }
        }
    }

    /// A stop began: the check is killed with its group and will have no result.
    pub fn cancel(&mut self) {
        if let Some(c) = &mut self.current {
            c.cancelled = true;
            kill_group(c.pid);
        }
    }

    /// Reads what the check wrote since the last call, without blocking.
    pub fn drain_output(&mut self) {
        let Some(c) = &mut self.current else { return };
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < READ_PER_WAKE {
            let Some(output) = &c.output else {
                return;
            };
            match nix::unistd::read(output, &mut buf) {
                Ok(0) => {
                    c.output = None; // end-of-file: every writer is gone; stop polling it
                    return;
                }
                Ok(n) => {
                    read += n;
                    keep(&mut c.kept, &buf[..n]);
                }
                // EAGAIN (nothing more now) or an error: try again on the next wake-up.
                Err(_) => return,
            }
        }
    }

    /// Called with a child that has exited and is not reaped yet: if it is the check, its group
    /// is killed now, while the zombie still pins the group id.
    pub fn exited(&self, pid: libc::pid_t) {
        if self.current.as_ref().is_some_and(|c| c.pid == pid) {
            kill_group(pid);
        }
    }

    /// `pid` was reaped: if it was the check, how it ended.
    pub fn reaped(&mut self, pid: libc::pid_t, how: ChildStatus) -> Option<Ended> {
        self.drain_output();
        let c = self.current.take_if(|c| c.pid == pid)?;
        Some(Ended {
            id: c.id,
            exit: outcome(c.cancelled, c.timed_out, how),
            output: String::from_utf8_lossy(&c.kept).into_owned(),
        })
    }
}

/// How a reaped check is reported: a cancelled one has no result (whatever killed it), a timed
/// out one failed, any other ended as `how` says.
fn outcome(cancelled: bool, timed_out: bool, how: ChildStatus) -> CheckExit {
    if cancelled {
        CheckExit::NotRun("the stop sequence began".into())
    } else if timed_out {
        CheckExit::TimedOut
    } else {
        CheckExit::Exited(how)
    }
}

/// Adds what fits of `chunk` to `kept`, which never grows past [`OUTPUT_KEPT`] bytes.
fn keep(kept: &mut Vec<u8>, chunk: &[u8]) {
    let room = OUTPUT_KEPT.saturating_sub(kept.len());
    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

fn kill_group(pgid: libc::pid_t) {
    // The check's leader is unreaped whenever this is called, so its group id is its own.
    let _ = signals::send_to_group(pgid, libc::SIGKILL);
}

/// `(read, write)`: both close-on-exec (only the check gets the write end, as its stdout and
/// stderr), the read end non-blocking (the write end stays blocking, as a program expects).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_check_has_no_result_and_a_timed_out_one_failed() {
        use ChildStatus::*;
        let killed = Signaled(libc::SIGKILL);
        let not_run = || CheckExit::NotRun("the stop sequence began".into());
        // ((cancelled, timed out, how it ended), reported)
        let rows = [
            ((false, false, Exited(0)), CheckExit::Exited(Exited(0))),
            ((false, false, Exited(3)), CheckExit::Exited(Exited(3))),
            ((false, false, killed), CheckExit::Exited(killed)),
            ((false, true, killed), CheckExit::TimedOut),
            ((false, true, Exited(0)), CheckExit::TimedOut),
            ((true, false, killed), not_run()),
            ((true, true, killed), not_run()),
        ];
        crate::process::assert_table(rows, |(cancelled, timed_out, how)| {
            outcome(cancelled, timed_out, how)
        });
    }

    #[test]
    fn only_the_first_bytes_of_the_output_are_kept() {
        let mut kept = Vec::new();
        keep(&mut kept, b"hello ");
        keep(&mut kept, b"world");
        assert_eq!(kept, b"hello world");
        keep(&mut kept, &vec![b'x'; OUTPUT_KEPT]);
        assert_eq!(kept.len(), OUTPUT_KEPT);
        assert!(kept.starts_with(b"hello worldxx"));
        keep(&mut kept, b"more");
        assert_eq!(kept.len(), OUTPUT_KEPT);
        assert!(kept.ends_with(b"xxxx"));
    }
}
