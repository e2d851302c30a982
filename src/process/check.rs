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

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::core::clock::BootInstant;
use crate::core::exit_code::ChildStatus;
use crate::process::contract::CheckExit;
use crate::process::spawn;

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

    /// Forks the check. `Err` is the result to report at once (the fork or the pipe failed).
    pub fn start(
        &mut self,
        id: u64,
        command: &str,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), CheckExit> {
        let (read, write) = pipe().map_err(|e| CheckExit::SpawnFailed(format!("pipe: {e}")))?;
        let pid = spawn::spawn_check(command, env, write)
            .map_err(|e| CheckExit::SpawnFailed(e.to_string()))?;
        self.current = Some(Running {
            id,
            pid,
            timeout_at: BootInstant::now() + timeout,
            timed_out: false,
            cancelled: false,
            output: Some(read),
            kept: Vec::new(),
        });
        Ok(())
    }

    /// The check's process group, for the guard.
    pub fn group(&self) -> Option<libc::pid_t> {
        self.current.as_ref().map(|c| c.pid)
    }

    /// The output pipe to poll, while it is open.
    pub fn output_fd(&self) -> Option<RawFd> {
        self.current
            .as_ref()
            .and_then(|c| c.output.as_ref())
            .map(|f| f.as_raw_fd())
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
        let Some(fd) = c.output.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < READ_PER_WAKE {
            // SAFETY: reading into a buffer we own from a non-blocking fd we own.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                c.output = None; // end-of-file: every writer is gone; stop polling it
                return;
            }
            if n < 0 {
                return; // EAGAIN (nothing more now) or an error: try again on the next wake-up
            }
            let n = n as usize;
            read += n;
            let room = OUTPUT_KEPT.saturating_sub(c.kept.len());
            c.kept.extend_from_slice(&buf[..n.min(room)]);
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
        let exit = if c.cancelled {
            CheckExit::NotRun("the stop sequence began".into())
        } else if c.timed_out {
            CheckExit::TimedOut
        } else {
            CheckExit::Exited(how)
        };
        Some(Ended {
            id: c.id,
            exit,
            output: String::from_utf8_lossy(&c.kept).into_owned(),
        })
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: the check's leader is unreaped whenever this is called, so its group id is its own.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
}

/// `(read, write)`: both close-on-exec (only the check gets the write end, as its stdout and
/// stderr), the read end non-blocking (the write end stays blocking, as a program expects).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds, owned at once below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: setting a status flag on the read end's own open file description.
    if unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((read, write))
}
