//! Starting the child: fork and exec with a clean slate. Called only from the process thread.
//!
//! The child gets its own process group (so its tree can be signalled as one), `PR_SET_PDEATHSIG` so it
//! dies if the supervisor is SIGKILLed (the death signal fires when the forking *thread* exits, which is
//! why only the long-lived process thread forks), the signal mask and ignored set the user started us
//! with (not the everything-blocked mask we run with), and an environment without the systemd
//! protocol variables that are meant for us, plus the leadership variables. stdin, stdout and stderr are
//! passed through untouched. Between fork and exec only async-signal-safe calls run.
//!
//! Terminals: when stdin is a terminal and we are in its foreground process group (a shell, `docker
//! run -it`), the child's new process group is made the terminal's foreground group before exec, as
//! tini does. Otherwise its first read of the terminal would stop it with SIGTTIN, and Ctrl-C would
//! reach us instead of it. [`take_back_terminal`] returns the terminal once the tree is gone.
//!
//! `std::process::Command` is used for the fork/exec itself: it reports exec failures through a
//! close-on-exec pipe, resolves PATH, and reaps a child whose exec failed. We never call `wait` on the
//! returned handle; the process thread's `waitpid(-1)` loop is the only reaper.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::config::CommandSpec;
use crate::exit_code;
use crate::signals;

/// Variables that belong to the supervisor's own service manager, never to the child.
const SCRUBBED: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Why the child could not be started, with the exit code a shell would use.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program:?}: {source}")]
pub struct SpawnError {
    pub program: OsString,
    pub source: io::Error,
}

impl SpawnError {
    /// How the process ends when the command cannot be started.
    pub fn exit(&self) -> crate::exit_code::Exit {
        use crate::exit_code::Exit;
        match self.exit_code() {
            exit_code::NOT_FOUND => Exit::NotFound,
            exit_code::NOT_EXECUTABLE => Exit::NotExecutable,
            _ => Exit::Internal,
        }
    }

    /// 127 for a missing command, 126 for one that exists but cannot be executed, 125 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.source.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => exit_code::NOT_FOUND,
            Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) | Some(libc::EPERM)
            | Some(libc::ETXTBSY) => exit_code::NOT_EXECUTABLE,
            _ => exit_code::INTERNAL,
        }
    }
}

/// Finds the program the way exec will (PATH search unless it contains '/'), so a missing or
/// non-executable command is reported before campaigning rather than after winning.
pub fn preflight(spec: &CommandSpec) -> Result<std::path::PathBuf, SpawnError> {
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    let fail = |errno| SpawnError {
        program: spec.program.clone(),
        source: io::Error::from_raw_os_error(errno),
    };
    let executable = |p: &Path| -> Result<(), i32> {
        let meta = std::fs::metadata(p).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
        if meta.is_dir() {
            return Err(libc::EISDIR);
        }
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::ENOENT)?;
        // SAFETY: access(2) on a NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            return Err(libc::EACCES);
        }
        Ok(())
    };
    if spec.program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(&spec.program);
        return executable(&p).map(|_| p).map_err(fail);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut found_denied = None;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(&spec.program);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(libc::ENOENT) | Err(libc::ENOTDIR) => {}
            Err(e) => found_denied = found_denied.or(Some(e)),
        }
    }
    Err(fail(found_denied.unwrap_or(libc::ENOENT)))
}

/// Whether stdin is a terminal whose foreground process group is ours.
pub fn owns_terminal_foreground() -> bool {
    // SAFETY: isatty/tcgetpgrp/getpgrp on fd 0 have no memory-safety preconditions.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Makes our process group the terminal's foreground group again (after the child's tree is gone).
/// SIGTTOU is blocked in every thread of ours, so this works from the background group.
pub fn take_back_terminal() {
    // SAFETY: tcsetpgrp on fd 0 to our own group.
    unsafe {
        if libc::isatty(0) == 1 {
            libc::tcsetpgrp(0, libc::getpgrp());
        }
    }
}

/// Forks and execs `spec` with `extra_env` added, handing it the terminal's foreground when
/// `hand_terminal`. Returns the child's pid.
pub fn spawn(
    spec: &CommandSpec,
    extra_env: &[(String, String)],
    hand_terminal: bool,
) -> Result<libc::pid_t, SpawnError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    clean_slate(&mut cmd, extra_env, hand_terminal);
    match cmd.spawn() {
        Ok(child) => Ok(child.id() as libc::pid_t),
        Err(source) => Err(SpawnError {
            program: spec.program.clone(),
            source,
        }),
    }
}

/// Forks and execs a health check, `/bin/sh -c CHECK`, with the child's environment, in a process
/// group of its own (so it and whatever it started can be killed as one), stdin from /dev/null and
/// stdout and stderr into `output`. Never given the terminal.
pub fn spawn_check(
    check: &str,
    extra_env: &[(String, String)],
    output: OwnedFd,
) -> Result<libc::pid_t, SpawnError> {
    let program = OsString::from("/bin/sh");
    let mut cmd = Command::new(&program);
    cmd.arg("-c").arg(check).stdin(Stdio::null());
    let fail = |source| SpawnError {
        program: program.clone(),
        source,
    };
    cmd.stderr(Stdio::from(output.try_clone().map_err(fail)?));
    cmd.stdout(Stdio::from(output));
    clean_slate(&mut cmd, extra_env, false);
    cmd.spawn()
        .map(|child| child.id() as libc::pid_t)
        .map_err(fail)
}

/// What every process we start gets: its own process group, `PR_SET_PDEATHSIG`, the signal state
/// the user started us with, an environment without our service manager's and our own secrets.
fn clean_slate(cmd: &mut Command, extra_env: &[(String, String)], hand_terminal: bool) {
    cmd.process_group(0);
    for name in SCRUBBED {
        cmd.env_remove(name);
    }
    // Our credentials are not the child's business; ETCDCTL_* stay, as the user set them.
    cmd.env_remove("SINGLETON_EXEC_PASSWORD");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let inherited = signals::inherited().copied();
    // SAFETY: getpid before fork; the closure below only makes async-signal-safe calls
    // (prctl, getppid, sigaction, pthread_sigmask) and allocates nothing.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nothing would kill us later.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Our own group exists by now (std calls setpgid before this closure); every signal is
            // still blocked, SIGTTOU included, so a background group may take the terminal.
            if hand_terminal {
                libc::tcsetpgrp(0, libc::getpid());
            }
            if let Some(inh) = &inherited {
                for sig in 1..=signals::MAX_SIGNAL {
                    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                        continue;
                    }
                    signals::set_disposition_raw(sig, inh.ignored & (1u64 << (sig - 1)) != 0);
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &inh.mask, std::ptr::null_mut());
            }
            Ok(())
        });
    }
}
