//! The guard: the child's tree dies with the supervisor, also when the supervisor cannot stop it.
//!
//! When singleton-exec is SIGKILLed or OOM-killed, nothing of ours runs again. As PID 1 of a
//! container that is fine: the kernel kills every process of the PID namespace with it. Otherwise
//! `PR_SET_PDEATHSIG` reaches only the direct child; its descendants (nginx workers, the commands of
//! an `sh -c` pipeline) would live on, unsupervised, and overlap the next leader once the lease
//! expires.
//!
//! So, when not PID 1, start-up launches a guard: our own binary again, in a mode that only waits.
//! It is double-forked, so it is nobody's child of ours (not reaped, not in the child's tree, not
//! signalled by the stop sequence), and it holds the read end of a pipe whose write end only the
//! supervisor holds. The supervisor writes the process groups to kill (the child's, and a running
//! health check's) whenever they change, and an empty line when none is left. When the pipe reaches
//! end-of-file (the supervisor is gone, however it died), the guard SIGKILLs the last groups it was
//! told and exits: within milliseconds, long before the lease can expire.
//!
//! Each message is one line, `PGID STARTTIME` per group, sent in one `send(MSG_NOSIGNAL)` on a
//! socket pair (never half a line, never a SIGPIPE if the guard is gone). Before killing, the guard
//! checks that a process numbered PGID, if there is one, is still the leader it was told about (its
//! start time): after the leader was reaped and its group emptied, the number may belong to someone
//! else.
//!
//! What it cannot reach: a descendant that left the child's process group (`setsid`, a daemon that
//! double-forks into its own group). Under systemd the unit's cgroup covers those (`KillMode=mixed`
//! kills what is left when the main process dies); in a container, the PID namespace does.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::process::signals;

/// Set (to a stage) in the guard's environment: the binary then runs as the guard.
const GUARD_ENV: &str = "SINGLETON_EXEC_INTERNAL_GUARD";

/// The supervisor's end of the channel.
pub struct Guard {
    socket: OwnedFd,
}

impl Guard {
    /// Launches the guard. Call before becoming a subreaper (so the orphaned guard goes to our
    /// ancestors' reaper, not to us) and before the process thread starts.
    pub fn start() -> io::Result<Guard> {
        let (ours, theirs) = socket_pair()?;
        let exe = std::env::current_exe()?;
        let stage1 = Command::new(&exe)
            .env(GUARD_ENV, "1")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        // Stage 1 starts the guard, prints its pid and exits at once, orphaning it.
        let out = stage1.wait_with_output()?;
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || pid.is_empty() {
            return Err(io::Error::other(format!(
                "the guard did not start: {}",
                out.status
            )));
        }
        tracing::debug!(guard = %pid, "guard started");
        Ok(Guard { socket: ours })
    }

    /// The groups to kill if we die are `groups` now (none: nothing to kill). Never blocks; an
    /// error means the guard is gone.
    pub fn watch(&mut self, groups: &[libc::pid_t]) -> io::Result<()> {
        let mut line = groups
            .iter()
            .map(|&g| format!("{g} {}", start_time(g).unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(" ");
        line.push('\n');
        // One send: no SIGPIPE, no waiting.
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        let n = nix::sys::socket::send(self.socket.as_raw_fd(), line.as_bytes(), flags)?;
        if n == line.len() {
            Ok(())
        } else {
            Err(io::Error::other("the guard took half a message"))
        }
    }
}

/// A process' start time (field 22 of `/proc/PID/stat`), which tells a pid from its reuse.
fn start_time(pid: libc::pid_t) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the command: state is field 3, start time field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Runs the guard if this process was started as one; returns its exit code. Called first in
/// `main`.
pub fn run_if_guard() -> Option<i32> {
    let stage = std::env::var_os(GUARD_ENV)?;
    Some(match stage.to_str() {
        Some("1") => stage1(),
        Some("2") => stage2(),
        _ => 2,
    })
}

fn stage1() -> i32 {
    let Ok(exe) = std::env::current_exe() else {
        return 1;
    };
    // stdin (the socket) is inherited; the guard needs no output. Its pid goes to the supervisor.
    let started = Command::new(exe)
        .arg0("singleton-exec-guard")
        .env(GUARD_ENV, OsString::from("2"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match started {
        Ok(guard) => {
            println!("{}", guard.id());
            0
        }
        Err(_) => 1,
    }
}

fn stage2() -> i32 {
    // Our own session, so a terminal's Ctrl-C or hangup does not reach us; the signals a process
    // group gets are ignored (the mask inherited from the supervisor blocks everything; unblock
    // first so the dispositions are what decides): only end-of-file ends the guard.
    let _ = nix::unistd::setsid();
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        signals::ignore(sig);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let mut last: Vec<(libc::pid_t, u64)> = Vec::new();
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        // A line we cannot read changes nothing; only end-of-file ends the guard.
        if let Some(groups) = parse_groups(&line) {
            last = groups;
        }
    }
    for (pgid, started) in last {
        kill_group(pgid, started);
    }
    0
}

/// `PGID STARTTIME` pairs; `None` if the line is not made of them.
fn parse_groups(line: &str) -> Option<Vec<(libc::pid_t, u64)>> {
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if !fields.len().is_multiple_of(2) {
        return None;
    }
    fields
        .chunks(2)
        .map(|p| {
            let pgid = libc::pid_t::try_from(p[0]).ok().filter(|&g| g > 0)?;
            Some((pgid, p[1]))
        })
        .collect()
}

/// SIGKILLs group `pgid` unless its number now belongs to another process than the leader that
/// started at `started`. No process with that pid: the group cannot have been reused (a number in
/// use as a group id is not handed out), so killing it is safe.
fn kill_group(pgid: libc::pid_t, started: u64) {
    match start_time(pgid) {
        Some(now) if started != 0 && now != started => {}
        _ => {
            let _ = signals::send_to_group(pgid, libc::SIGKILL);
        }
    }
}

/// A connected pair of stream sockets. Close-on-exec: the child never inherits either end (stdin
/// redirection dups the guard's end for the guard only).
fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let pair = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lines() {
        assert_eq!(parse_groups(""), Some(vec![]));
        assert_eq!(parse_groups("12 345"), Some(vec![(12, 345)]));
        assert_eq!(parse_groups("12 345 13 0"), Some(vec![(12, 345), (13, 0)]));
        assert_eq!(parse_groups("12"), None);
        assert_eq!(parse_groups("0 5"), None);
        assert_eq!(parse_groups("x 5"), None);
        assert_eq!(parse_groups("-3 5"), None);
    }

    #[test]
    fn start_times_tell_a_pid_from_its_reuse() {
        let me = std::process::id() as libc::pid_t;
        let t = start_time(me).expect("our own start time");
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(0), None);
        assert_eq!(start_time(-1), None);
    }
}
