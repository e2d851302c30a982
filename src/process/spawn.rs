//! Starting the child: clone and exec with a clean slate. Called only from the process thread.
//!
//! The child gets its own process group (so its tree can be signalled as one), `PR_SET_PDEATHSIG` so it
//! dies if the supervisor is SIGKILLed (the death signal fires when the forking *thread* exits, which is
//! why only the long-lived process thread forks), the signal mask and ignored set the user started us
//! with (not the everything-blocked mask we run with), and an environment without the systemd
//! protocol variables that are meant for us, plus the leadership variables. stdin, stdout and stderr are
//! passed through untouched.
//!
//! Terminals: when stdin is a terminal and we are in its foreground process group (a shell, `docker
//! run -it`), the child's new process group is made the terminal's foreground group before exec, as
//! tini does. Otherwise its first read of the terminal would stop it with SIGTTIN, and Ctrl-C would
//! reach us instead of it. [`take_back_terminal`] returns the terminal once the tree is gone.
//!
//! The start is on the handoff path, so it is done the way `posix_spawn` does it: everything is
//! prepared in the parent (the program found in PATH, argv, the environment, the signal set-up), and
//! the child is a `clone(CLONE_VM | CLONE_VFORK)` on a stack of its own that only makes system
//! calls and execs. No page tables are copied, and there is one `execve`, not one per PATH entry.
//! `posix_spawn` itself cannot set `PR_SET_PDEATHSIG`. While the child shares our memory it writes
//! nothing but its own stack, the errno slot it reports an exec failure in, and the C library's
//! `errno` of the calling thread (which reads it only if the clone itself failed); that thread is
//! suspended until the child has exec'd or exited, and every signal is blocked in the child until
//! its handlers are reset, so none of ours can run there. A child whose exec failed is reaped here;
//! otherwise the process thread's `waitpid(-1)` loop is the only reaper.
//!
//! A file that exists but is not a valid executable (a script without `#!`) is run by `/bin/sh`,
//! as `execvp` and the shells do.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::core::command::CommandSpec;
use crate::core::exit_code;
use crate::process::signals;

/// Variables that belong to the supervisor's own service manager, never to the child.
const SCRUBBED: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// The search path when PATH is unset, for [`preflight`] and the exec.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why the child could not be started, with the exit code a shell would use.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program:?}: {source}")]
pub struct SpawnError {
    pub program: OsString,
    pub source: io::Error,
}

impl SpawnError {
    /// How the process ends when the command cannot be started.
    pub fn exit(&self) -> crate::core::exit_code::Exit {
        use crate::core::exit_code::Exit;
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
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
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

/// Starts `spec` with `extra_env` added, handing it the terminal's foreground when
/// `hand_terminal`. Returns the child's pid.
pub fn spawn(
    spec: &CommandSpec,
    extra_env: &[(String, String)],
    hand_terminal: bool,
) -> Result<libc::pid_t, SpawnError> {
    let fail = |source| SpawnError {
        program: spec.program.clone(),
        source,
    };
    let found = preflight(spec)?;
    let plan = Plan::new(
        &candidates_from(&found, spec),
        &spec.program,
        &spec.args,
        extra_env,
        hand_terminal,
        None,
    )
    .map_err(fail)?;
    plan.start().map_err(fail)
}

/// Starts a health check, `/bin/sh -c CHECK`, with the child's environment, in a process group of
/// its own (so it and whatever it started can be killed as one), stdin from /dev/null and stdout
/// and stderr into `output`. Never given the terminal.
pub fn spawn_check(
    check: &str,
    extra_env: &[(String, String)],
    output: OwnedFd,
) -> Result<libc::pid_t, SpawnError> {
    let program = OsString::from("/bin/sh");
    let fail = |source| SpawnError {
        program: program.clone(),
        source,
    };
    let null = std::fs::File::open("/dev/null").map_err(fail)?;
    let args = [OsString::from("-c"), OsString::from(check)];
    let stdio = Stdio {
        stdin: null.as_raw_fd(),
        output: output.as_raw_fd(),
    };
    let plan = Plan::new(
        &[PathBuf::from(&program)],
        &program,
        &args,
        extra_env,
        false,
        Some(stdio),
    )
    .map_err(fail)?;
    // `null` and `output` stay open until the child has exec'd (start returns only then).
    plan.start().map_err(fail)
}

/// Descriptors a health check's standard streams are pointed at.
#[derive(Clone, Copy)]
struct Stdio {
    stdin: libc::c_int,
    output: libc::c_int,
}

/// Stack for the child between clone and exec: system calls only, so a little is plenty; a guard
/// page below it turns an overflow into a fault instead of a write into our memory.
const CHILD_STACK: usize = 64 * 1024;

/// The paths exec tries, in order: the one [`preflight`] found, then, for a name looked up in PATH,
/// the same name in every later PATH directory. `execvp` goes on to the next directory when exec
/// fails with "not found" or "permission denied" (a `#!` interpreter or an ELF loader missing from
/// the first one found); so does the child.
fn candidates_from(found: &std::path::Path, spec: &CommandSpec) -> Vec<PathBuf> {
    let mut paths = vec![found.to_path_buf()];
    if spec.program.as_bytes().contains(&b'/') {
        return paths;
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let later = std::env::split_paths(&path)
        .map(|dir| dir.join(&spec.program))
        .skip_while(|p| p != found)
        .skip(1);
    paths.extend(later);
    paths
}

/// Everything the child needs, prepared in the parent: between clone and exec the child allocates
/// nothing, takes no lock, and reads only this.
struct Plan {
    /// Where the program may be, in the order exec tries them (see [`candidates_from`]).
    paths: Vec<CString>,
    /// Pointers into `_strings`, NULL-terminated: argv, envp, and per path the argv of the
    /// `/bin/sh PATH ARGS...` fallback for a file without `#!`.
    argv: Vec<*const libc::c_char>,
    script_argvs: Vec<Vec<*const libc::c_char>>,
    envp: Vec<*const libc::c_char>,
    _strings: Vec<CString>,
    parent: libc::pid_t,
    hand_terminal: bool,
    stdio: Option<Stdio>,
    /// Per signal 1..=64: ignore it (as the user started us with it ignored) or take the default.
    ignored: u64,
    mask: libc::sigset_t,
    /// Set by the child when it cannot exec: the errno.
    error: AtomicI32,
}

/// What every process we start gets: our environment `base` without our service manager's
/// variables and our own secret (ETCDCTL_* stay, as the user set them), plus `extra_env`.
fn child_environment(
    base: impl Iterator<Item = (OsString, OsString)>,
    extra_env: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .filter(|(k, _)| {
            !SCRUBBED.iter().any(|s| k == s)
                && k != "SINGLETON_EXEC_PASSWORD"
                && !extra_env.iter().any(|(e, _)| k == e.as_str())
        })
        .collect();
    env.extend(extra_env.iter().map(|(k, v)| (k.into(), v.into())));
    env
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

impl Plan {
    fn new(
        paths: &[PathBuf],
        program: &OsStr,
        args: &[OsString],
        extra_env: &[(String, String)],
        hand_terminal: bool,
        stdio: Option<Stdio>,
    ) -> io::Result<Plan> {
        let paths = paths
            .iter()
            .map(|p| c_string(p.as_os_str()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut strings = Vec::new();
        let mut keep = |c: CString| {
            let p = c.as_ptr();
            strings.push(c);
            p
        };
        let mut argv = vec![keep(c_string(program)?)];
        for a in args {
            argv.push(keep(c_string(a)?));
        }
        argv.push(std::ptr::null());
        let sh = keep(CString::from(c"/bin/sh"));
        let script_argvs = paths
            .iter()
            .map(|p| {
                let mut v = vec![sh, p.as_ptr()];
                v.extend_from_slice(&argv[1..]);
                v
            })
            .collect();
        let mut envp = Vec::new();
        for (k, v) in child_environment(std::env::vars_os(), extra_env) {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envp.push(keep(
                CString::new(kv).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
            ));
        }
        envp.push(std::ptr::null());
        // Without the recorded state (never in the binary), what std::process::Command gives:
        // nothing ignored, nothing blocked.
        let (ignored, mask) = match signals::inherited() {
            Some(inh) => (inh.ignored, inh.mask),
            // SAFETY: an empty sigset_t, initialized by sigemptyset.
            None => unsafe {
                let mut m = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigemptyset(m.as_mut_ptr());
                (0, m.assume_init())
            },
        };
        Ok(Plan {
            paths,
            argv,
            script_argvs,
            envp,
            _strings: strings,
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
            hand_terminal,
            stdio,
            ignored,
            mask,
            error: AtomicI32::new(0),
        })
    }

    /// Clones the child and returns once it has exec'd (its pid) or failed to (the errno; it is
    /// reaped then).
    fn start(self) -> io::Result<libc::pid_t> {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        };
        // SAFETY: a fresh anonymous mapping, unmapped below once the child no longer uses it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHILD_STACK + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let pid = {
            // SAFETY: the lowest page of our own mapping becomes the guard; the mask calls get
            // valid sigset_t pointers; clone gets a stack top inside the mapping and a pointer to
            // `self`, which outlives the child's use of it: with CLONE_VFORK, clone returns only
            // after the child has exec'd or exited.
            unsafe {
                if libc::mprotect(base, page, libc::PROT_NONE) != 0 {
                    let e = io::Error::last_os_error();
                    libc::munmap(base, CHILD_STACK + page);
                    return Err(e);
                }
                let top = (base as *mut u8).add(CHILD_STACK + page);
                let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigfillset(all.as_mut_ptr());
                let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                // Even the fault signals, whose handlers must not run in the child, which shares
                // our memory; blocked only for the moment the clone takes.
                libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
                let pid = libc::clone(
                    child_main,
                    top as *mut libc::c_void,
                    libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                    &self as *const Plan as *mut libc::c_void,
                );
                let clone_error = io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
                libc::munmap(base, CHILD_STACK + page);
                if pid < 0 {
                    return Err(clone_error);
                }
                pid
            }
        };
        match self.error.load(Ordering::SeqCst) {
            0 => Ok(pid),
            errno => {
                // It has exited (that is what let clone return): reap it, it was never a child
                // anyone else waits for.
                // SAFETY: waitpid on our own child's pid.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

/// The child, from clone to exec. It shares the parent's memory, so only system calls: no
/// allocation, no lock, no panic. On failure it records the errno in the plan and exits 127.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Plan`, alive and unchanged while the parent is suspended.
    let plan = unsafe { &*(arg as *const Plan) };
    // SAFETY: system calls on values the plan prepared; see `run_child`.
    let errno = unsafe { run_child(plan) };
    plan.error.store(errno.max(1), Ordering::SeqCst);
    // SAFETY: _exit never returns and runs no handlers of the parent's.
    unsafe { libc::_exit(exit_code::NOT_FOUND) }
}

/// The child's steps; returns the errno of the step that failed (exec never returns on success).
///
/// # Safety
/// Only from [`child_main`]: every pointer in `plan` must be valid and NUL-terminated.
unsafe fn run_child(plan: &Plan) -> libc::c_int {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    if libc::setpgid(0, 0) != 0 {
        return errno();
    }
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
        return errno();
    }
    // The parent may have died before prctl: then nothing would kill us later.
    if libc::getppid() != plan.parent {
        return libc::ESRCH;
    }
    // Every signal is blocked, SIGTTOU included, so a background group may take the terminal.
    if plan.hand_terminal {
        libc::tcsetpgrp(0, libc::getpid());
    }
    if let Some(stdio) = plan.stdio {
        if libc::dup2(stdio.stdin, 0) < 0
            || libc::dup2(stdio.output, 1) < 0
            || libc::dup2(stdio.output, 2) < 0
        {
            return errno();
        }
    }
    // Our handlers (the fault signals) must be gone before anything is unblocked; the rest is the
    // ignored set the user started us with.
    for sig in 1..=signals::MAX_SIGNAL {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        signals::set_disposition_raw(sig, plan.ignored & (1u64 << (sig - 1)) != 0);
    }
    libc::pthread_sigmask(libc::SIG_SETMASK, &plan.mask, std::ptr::null_mut());
    // As execvp: the next candidate after "not found" or "permission denied", a script without
    // `#!` to /bin/sh, anything else is final; EACCES wins over a later ENOENT.
    let mut denied = false;
    let mut last = libc::ENOENT;
    for (i, path) in plan.paths.iter().enumerate() {
        libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        last = errno();
        match last {
            libc::ENOEXEC => {
                libc::execve(
                    plan.script_argvs[i][0],
                    plan.script_argvs[i].as_ptr(),
                    plan.envp.as_ptr(),
                );
                return errno();
            }
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE => {}
            e => return e,
        }
    }
    if denied {
        libc::EACCES
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_environment_drops_our_managers_and_our_secret_and_takes_the_leadership_variables()
    {
        let ours = [
            ("NOTIFY_SOCKET", "/run/notify"),
            ("WATCHDOG_USEC", "1000"),
            ("SINGLETON_EXEC_PASSWORD", "secret"),
            ("SINGLETON_EXEC_REVISION", "stale"),
            ("ETCDCTL_USER", "kept"),
            ("PATH", "/bin"),
        ];
        let env = child_environment(
            ours.iter().map(|(k, v)| (k.into(), v.into())),
            &[("SINGLETON_EXEC_REVISION".into(), "42".into())],
        );
        let get = |k: &str| {
            env.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert!(get("NOTIFY_SOCKET").is_empty());
        assert!(get("SINGLETON_EXEC_PASSWORD").is_empty());
        assert_eq!(get("SINGLETON_EXEC_REVISION"), vec![OsString::from("42")]);
        assert!(get("WATCHDOG_USEC").is_empty());
        assert_eq!(get("ETCDCTL_USER"), vec![OsString::from("kept")]);
        assert_eq!(get("PATH"), vec![OsString::from("/bin")]);
    }

    /// The clone path end to end, without etcd: a started child's status is ours to reap, and a
    /// child whose exec fails (a missing interpreter, found only by the kernel) is reported with
    /// its errno and already reaped.
    #[test]
    fn a_started_child_runs_and_an_exec_failure_comes_back_as_its_errno() {
        let _serial = crate::test_children();
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("bad-interpreter");
        std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let spec = |program: &std::path::Path, args: &[&str]| CommandSpec {
            program: program.as_os_str().to_owned(),
            args: args.iter().map(OsString::from).collect(),
        };
        let e = spawn(&spec(&script, &[]), &[], false).unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::ENOENT), "{e}");
        assert_eq!(e.exit_code(), exit_code::NOT_FOUND);

        let pid = spawn(
            &spec(
                std::path::Path::new("sh"),
                &["-c", "exit $SINGLETON_EXEC_T"],
            ),
            &[("SINGLETON_EXEC_T".into(), "7".into())],
            false,
        )
        .unwrap();
        // SAFETY: getpgid and waitpid on our own child (a zombie keeps its group until reaped).
        assert_eq!(
            unsafe { libc::getpgid(pid) },
            pid,
            "a process group of its own"
        );
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7,
            "status {status:#x}"
        );
    }
}
