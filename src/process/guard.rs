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
//! signalled by the stop sequence), and it holds one end of a socket pair whose other end only the
//! supervisor holds (and, until they exec, the children it starts: close-on-exec). The supervisor writes the process groups to kill (the child's, and a running
//! health check's) whenever they change, and an empty line when none is left. When the pipe reaches
//! end-of-file (the supervisor is gone, however it died), the guard SIGKILLs the last groups it was
//! told and exits: within milliseconds, long before the lease can expire.
//!
//! Each message is one line, `PGID STARTTIME` per group, sent in one `send(MSG_NOSIGNAL)` on a
//! socket pair (never half a line, never a SIGPIPE if the guard is gone).
//!
//! The child's group is told before the child runs a single instruction of its own: the child
//! sends the line itself, between clone and exec ([`ChildNote`], `crate::process::spawn`), with
//! its own pid and a start time of 0 (no check), and the supervisor sends it again with the start
//! time once the child runs. Told only by the supervisor after the start, a supervisor SIGKILLed
//! in between (its process thread not scheduled while the child already forked: a loaded
//! machine) left the child's children running. Before killing, the guard
//! checks that a process numbered PGID, if there is one, is still the leader it was told about (its
//! start time): after the leader was reaped and its group emptied, the number may belong to someone
//! else.
//!
//! The guard's mode is reachable only from the supervisor that starts it. The variable that
//! selects it names the stage and the supervisor's pid (`SINGLETON_EXEC_INTERNAL_GUARD=1:PID`),
//! and counts only when stdin is a socket that process created: a `socketpair` records its
//! creator in both ends' peer credentials (`SO_PEERCRED`), which no one can set. Stage 1 must also
//! be that process' child. Anything else (the variable set by a user, copied from a guard's
//! environment, stdin a terminal, a pipe or another socket) runs the binary as usual.
//!
//! What it cannot reach: a descendant that left the child's process group (`setsid`, a daemon that
//! double-forks into its own group). Under systemd the unit's cgroup covers those (`KillMode=mixed`
//! kills what is left when the main process dies); in a container, the PID namespace does.

#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io::{self, BufRead};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::socket::{
    getsockopt, socketpair, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
};

use crate::process::signals;

/// Set to `STAGE:SUPERVISOR_PID` in the guard's environment: with the socket the supervisor made
/// as stdin, the binary then runs as the guard.
const GUARD_ENV: &str = "SINGLETON_EXEC_INTERNAL_GUARD";

/// Which part of the guard a process started as one plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Stage 1, the supervisor's child: starts stage 2 and exits, orphaning it.
    Launch { supervisor: libc::pid_t },
    /// Stage 2, the guard itself: waits for end-of-file on stdin.
    Watch,
}

/// The stage this process is to play, if any. `marker` is [`GUARD_ENV`]'s value, `stdin_peer`
/// the pid in stdin's peer credentials (`None`: not a socket), `parent` our parent's pid. Pure:
/// the variable alone never selects the guard's mode, only with a socket the named supervisor
/// created (and, for stage 1, being its child).
fn stage_of(marker: &OsStr, stdin_peer: Option<libc::pid_t>, parent: libc::pid_t) -> Option<Stage> {
    let (stage, pid) = marker.to_str()?.split_once(':')?;
    let supervisor: libc::pid_t = pid.parse().ok().filter(|&p| p > 0)?;
    if stdin_peer != Some(supervisor) {
        return None;
    }
    match stage {
        "1" if parent == supervisor => Some(Stage::Launch { supervisor }),
        "2" => Some(Stage::Watch),
        _ => None,
    }
}

/// The pid of the process that created the socket on stdin (both ends of a `socketpair` carry
/// it); `None` if stdin is not a Unix socket.
fn stdin_peer() -> Option<libc::pid_t> {
    let stdin = io::stdin();
    let creds = getsockopt(&stdin.as_fd(), sockopt::PeerCredentials).ok()?;
    Some(creds.pid()).filter(|&p| p > 0)
}

/// [`GUARD_ENV`]'s value for `stage`, naming this process as the supervisor.
fn marker(stage: u8, supervisor: libc::pid_t) -> String {
    format!("{stage}:{supervisor}")
}

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
        let me = std::process::id() as libc::pid_t;
        let stage1 = Command::new(&exe)
            .env(GUARD_ENV, marker(1, me))
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
        let mut line = groups_text(groups);
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

/// What a child about to start sends the guard itself, before it execs: the line the supervisor
/// would send with the child's group at its end, which only the child can complete (its pid, a
/// start time of 0). `prefix` holds the other groups to keep watching (a running check's), each
/// followed by a space.
pub struct ChildNote<'a> {
    pub socket: BorrowedFd<'a>,
    pub prefix: String,
}

impl Guard {
    /// The note for a child about to start while `others` are watched too.
    pub fn child_note(&self, others: &[libc::pid_t]) -> ChildNote<'_> {
        let mut prefix = groups_text(others);
        if !prefix.is_empty() {
            prefix.push(' ');
        }
        ChildNote {
            socket: self.socket.as_fd(),
            prefix,
        }
    }
}

/// `PGID STARTTIME` per group, space-separated, no newline.
fn groups_text(groups: &[libc::pid_t]) -> String {
    groups
        .iter()
        .map(|&g| format!("{g} {}", start_time(g).unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(" ")
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

/// Runs the guard if this process was started as one by a supervisor ([`stage_of`]); returns its
/// exit code. Called first in `main`; `None` (run as usual) for everyone else.
pub fn run_if_guard() -> Option<i32> {
    let marker = std::env::var_os(GUARD_ENV)?;
    let parent = nix::unistd::getppid().as_raw();
    Some(match stage_of(&marker, stdin_peer(), parent)? {
        Stage::Launch { supervisor } => stage1(supervisor),
        Stage::Watch => stage2(),
    })
}

fn stage1(supervisor: libc::pid_t) -> i32 {
    let Ok(exe) = std::env::current_exe() else {
        return 1;
    };
    // stdin (the socket) is inherited; the guard needs no output. Its pid goes to the supervisor.
    let started = Command::new(exe)
        .arg0("singleton-exec-guard")
        .env(GUARD_ENV, marker(2, supervisor))
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

    /// Only the variable naming a supervisor, with a socket that supervisor created on stdin,
    /// selects a stage; stage 1 also needs that supervisor as its parent. One row: the variable,
    /// stdin's peer pid (`None`: not a socket), the parent's pid, the stage.
    #[test]
    fn the_guards_mode_needs_the_supervisors_socket() {
        let launch = Some(Stage::Launch { supervisor: 40 });
        let rows: &[(&str, Option<libc::pid_t>, libc::pid_t, Option<Stage>)] = &[
            ("1:40", Some(40), 40, launch),
            ("2:40", Some(40), 1, Some(Stage::Watch)),
            ("2:40", Some(40), 40, Some(Stage::Watch)),
            // What a user may set: the variable without a pid, or with one not behind stdin.
            ("1", Some(40), 40, None),
            ("2", Some(40), 40, None),
            ("1:40", None, 40, None),
            ("2:40", None, 1, None),
            ("1:40", Some(41), 40, None),
            ("2:40", Some(41), 1, None),
            // Stage 1 is the supervisor's own child.
            ("1:40", Some(40), 1, None),
            ("3:40", Some(40), 40, None),
            ("1:0", Some(0), 0, None),
            ("1:-1", Some(-1), -1, None),
            ("", Some(40), 40, None),
            (":40", Some(40), 40, None),
            ("1:40:1", Some(40), 40, None),
        ];
        for (marker, peer, parent, want) in rows {
            let got = stage_of(OsStr::new(marker), *peer, *parent);
            assert_eq!(got, *want, "{marker:?} {peer:?} {parent}");
        }
        assert_eq!(marker(1, 40), "1:40");
    }

    /// Both ends of a socketpair name their creator: the check the guard makes of its stdin.
    #[test]
    fn a_socketpair_names_its_creator() {
        let (a, b) = socket_pair().unwrap();
        let me = std::process::id() as libc::pid_t;
        for end in [&a, &b] {
            let creds = getsockopt(end, sockopt::PeerCredentials).unwrap();
            assert_eq!(creds.pid(), me);
        }
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
