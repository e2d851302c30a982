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
//! nothing but its own stack, the errno slot it reports an exec failure in, the digits of its own
//! pid into an environment entry prepared for them (`WATCHDOG_PID`) and into the line it sends
//! the guard (its process group, told before it execs: [`crate::process::guard::ChildNote`]),
//! and the C library's
//! `errno` of the calling thread (which reads it only if the clone itself failed); that thread is
//! suspended until the child has exec'd or exited, and every signal is blocked in the child until
//! its handlers are reset, so none of ours can run there. A child whose exec failed is reaped here;
//! otherwise the process thread's `waitpid(-1)` loop is the only reaper.
//!
//! A file that exists but is not a valid executable (a script without `#!`) is run by `/bin/sh`,
//! as `execvp` and the shells do.
//!
//! The other system calls on our children that need raw libc live here too, each behind a safe
//! function: [`peek_waitable`] (`waitid` without reaping), [`reap`] (`waitpid`, keeping every
//! status: nix's refuses one with a real-time signal) and [`pidfd`].

// clone, the child's side of it and the wait calls need libc; every unsafe block says why it is
// sound.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::{access, getpgrp, getpid, isatty, tcgetpgrp, tcsetpgrp, AccessFlags, Pid};

use crate::core::command::CommandSpec;
use crate::core::exit_code::{self, ChildStatus};
use crate::process::guard::ChildNote;
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
pub fn preflight(spec: &CommandSpec) -> Result<PathBuf, SpawnError> {
    resolve(&spec.program, &search_path()).map_err(|errno| SpawnError {
        program: spec.program.clone(),
        source: io::Error::from_raw_os_error(errno),
    })
}

/// PATH, or the default search path when it is unset.
fn search_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into())
}

/// Where exec finds `program` in `path` (a PATH value; not searched for a name with a '/'), or the
/// errno it fails with: "permission denied" (or the like) if a file was found but none could run,
/// as `execvp` reports it, else "not found".
fn resolve(program: &OsStr, path: &OsStr) -> Result<PathBuf, libc::c_int> {
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        return executable(&p).map(|_| p);
    }
    let mut found_denied = None;
    for dir in std::env::split_paths(path) {
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(libc::ENOENT) | Err(libc::ENOTDIR) => {}
            Err(e) => found_denied = found_denied.or(Some(e)),
        }
    }
    Err(found_denied.unwrap_or(libc::ENOENT))
}

/// Whether exec could run the file at `p`; the errno it would fail with if not.
fn executable(p: &Path) -> Result<(), libc::c_int> {
    let meta = std::fs::metadata(p).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    if meta.is_dir() {
        return Err(libc::EISDIR);
    }
    access(p, AccessFlags::X_OK).map_err(|_| libc::EACCES)
}

/// Whether stdin is a terminal whose foreground process group is ours.
pub fn owns_terminal_foreground() -> bool {
    let stdin = std::io::stdin();
    isatty(&stdin).unwrap_or(false) && tcgetpgrp(&stdin).is_ok_and(|group| group == getpgrp())
}

/// Makes our process group the terminal's foreground group again (after the child's tree is gone).
/// SIGTTOU is blocked in every thread of ours, so this works from the background group.
pub fn take_back_terminal() {
    let stdin = std::io::stdin();
    if isatty(&stdin).unwrap_or(false) {
        let _ = tcsetpgrp(&stdin, getpgrp());
    }
}

/// Starts `spec` with `extra_env` added, and `own_pid_variable` (if any) set to the child's own
/// pid, handing it the terminal's foreground when `hand_terminal`; with `note`, the child tells
/// the guard its process group before it execs. Returns the child's pid.
pub fn spawn(
    spec: &CommandSpec,
    extra_env: &[(String, String)],
    own_pid_variable: Option<&str>,
    hand_terminal: bool,
    note: Option<&ChildNote<'_>>,
) -> Result<libc::pid_t, SpawnError> {
    let fail = |source| SpawnError {
        program: spec.program.clone(),
        source,
    };
    let found = preflight(spec)?;
    let plan = Plan::new(
        &candidates(&found, &spec.program, &search_path()),
        &spec.program,
        &spec.args,
        extra_env,
        own_pid_variable,
        hand_terminal,
        None,
    )
    .map_err(fail)?
    .with_note(note);
    plan.start().map_err(fail)
}

/// Starts a health check, `/bin/sh -c CHECK`, with the child's environment, in a process group of
/// its own (so it and whatever it started can be killed as one), stdin from /dev/null and stdout
/// and stderr into `output`; with `note`, it tells the guard its group before it execs, as the
/// child does. Never given the terminal.
pub fn spawn_check(
    check: &str,
    extra_env: &[(String, String)],
    output: OwnedFd,
    note: Option<&ChildNote<'_>>,
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
        None,
        false,
        Some(stdio),
    )
    .map_err(fail)?
    .with_note(note);
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

/// The paths exec tries, in order: the one [`preflight`] found, then, for a name looked up in
/// `path`, the same name in every later directory of it. `execvp` goes on to the next directory
/// when exec fails with "not found" or "permission denied" (a `#!` interpreter or an ELF loader
/// missing from the first one found); so does the child.
fn candidates(found: &Path, program: &OsStr, path: &OsStr) -> Vec<PathBuf> {
    let mut paths = vec![found.to_path_buf()];
    if program.as_bytes().contains(&b'/') {
        return paths;
    }
    let later = std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .skip_while(|p| p != found)
        .skip(1);
    paths.extend(later);
    paths
}

/// Everything the child needs, prepared in the parent: between clone and exec the child allocates
/// nothing, takes no lock, and reads only this.
struct Plan {
    /// Where the program may be, in the order exec tries them (see [`candidates`]).
    paths: Vec<CString>,
    /// Pointers into `_strings`, NULL-terminated: argv, envp, and per path the argv of the
    /// `/bin/sh PATH ARGS...` fallback for a file without `#!`.
    argv: Vec<*const libc::c_char>,
    script_argvs: Vec<Vec<*const libc::c_char>>,
    envp: Vec<*const libc::c_char>,
    _strings: Vec<CString>,
    /// The entry of `envp` the child completes with its own pid, if any.
    own_pid: Option<OwnPidEntry>,
    /// The line the child completes with its pid and sends the guard before it execs, if any.
    guard_line: Option<GuardLine>,
    parent: libc::pid_t,
    hand_terminal: bool,
    stdio: Option<Stdio>,
    /// Per signal 1..=64: ignore it (as the user started us with it ignored) or take the default.
    ignored: u64,
    mask: libc::sigset_t,
    /// Set by the child when it cannot exec: the errno.
    error: AtomicI32,
}

/// An environment entry that the child completes with its own pid between clone and exec
/// (`WATCHDOG_PID=4242`): `NAME=`, then room for the digits and the NUL. Only the child knows
/// its pid before it runs; it writes it here, into memory it shares with the suspended parent,
/// and execve copies the entry. Atomic bytes, so that write is sound.
struct OwnPidEntry {
    bytes: Box<[AtomicU8]>,
    /// Where the digits go: just after the `=`.
    digits_at: usize,
}

impl OwnPidEntry {
    /// Room for any pid: at most 10 digits (`pid_t` is 32 bits), and the NUL.
    const DIGITS: usize = 11;

    fn new(name: &str) -> io::Result<OwnPidEntry> {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let bytes: Box<[AtomicU8]> = name
            .bytes()
            .chain(std::iter::once(b'='))
            .chain(std::iter::repeat_n(0, Self::DIGITS))
            .map(AtomicU8::new)
            .collect();
        Ok(OwnPidEntry {
            digits_at: name.len() + 1,
            bytes,
        })
    }

    /// The entry as `envp` holds it (an `AtomicU8` is laid out as a `u8`).
    fn as_ptr(&self) -> *const libc::c_char {
        self.bytes.as_ptr().cast()
    }

    /// Writes `pid` in decimal after the `=`, NUL-terminated: no allocation, no lock, so the
    /// child may call it between clone and exec.
    fn fill(&self, pid: libc::pid_t) {
        let len = put_decimal(&self.bytes[self.digits_at..], pid);
        self.bytes[self.digits_at + len].store(0, Ordering::Relaxed);
    }

    /// What the entry says now (for tests).
    #[cfg(test)]
    fn text(&self) -> String {
        let bytes: Vec<u8> = self
            .bytes
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Writes `pid` in decimal at the start of `to` (room for 10 digits at least); the number of
/// digits. No allocation, no lock: the child calls it between clone and exec.
fn put_decimal(to: &[AtomicU8], pid: libc::pid_t) -> usize {
    let mut digits = [0u8; 10];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    for i in 0..len {
        to[i].store(digits[len - 1 - i], Ordering::Relaxed);
    }
    len
}

/// The line a child sends the guard before it execs: the note's prefix (the other groups), then
/// room for its pid, then ` 0\n` (start time 0: the guard kills the group without checking it;
/// the supervisor sends the start time once the child runs).
struct GuardLine {
    fd: RawFd,
    bytes: Box<[AtomicU8]>,
    digits_at: usize,
}

impl GuardLine {
    const TAIL: &'static [u8] = b" 0\n";

    fn new(note: &ChildNote<'_>) -> GuardLine {
        let bytes: Box<[AtomicU8]> = note
            .prefix
            .bytes()
            .chain(std::iter::repeat_n(
                0,
                OwnPidEntry::DIGITS - 1 + Self::TAIL.len(),
            ))
            .map(AtomicU8::new)
            .collect();
        GuardLine {
            fd: note.socket.as_raw_fd(),
            digits_at: note.prefix.len(),
            bytes,
        }
    }

    /// Completes the line with `pid`; its length. No allocation, no lock.
    fn fill(&self, pid: libc::pid_t) -> usize {
        let mut end = self.digits_at + put_decimal(&self.bytes[self.digits_at..], pid);
        for &b in Self::TAIL {
            self.bytes[end].store(b, Ordering::Relaxed);
            end += 1;
        }
        end
    }

    /// Sends the first `len` bytes in one send: never blocks, never raises SIGPIPE; a guard that
    /// is gone changes nothing for the child (the supervisor finds out on its next message).
    ///
    /// # Safety
    /// Only between clone and exec, from [`prepare_child`]: `fd` is the supervisor's open socket.
    unsafe fn send(&self, len: usize) {
        // The raw system call, not libc's `send`: that is a cancellation point, whose wrapper
        // writes the calling thread's cancellation state, and that thread is the parent's.
        libc::syscall(
            libc::SYS_sendto,
            self.fd,
            self.bytes.as_ptr(),
            len,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        );
    }

    /// What the line says up to `len` (for tests).
    #[cfg(test)]
    fn text(&self, len: usize) -> String {
        let bytes: Vec<u8> = self.bytes[..len]
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What every process we start gets: our environment `base` without our service manager's
/// variables and our own secret (ETCDCTL_* stay, as the user set them), plus `extra_env`; a
/// variable named in `own` is left out, for the child to set itself.
fn child_environment(
    base: impl Iterator<Item = (OsString, OsString)>,
    extra_env: &[(String, String)],
    own: Option<&str>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .filter(|(k, _)| {
            !SCRUBBED.iter().any(|s| k == s)
                && k != "SINGLETON_EXEC_PASSWORD"
                && !extra_env.iter().any(|(e, _)| k == e.as_str())
                && own.is_none_or(|o| k != o)
        })
        .collect();
    env.extend(extra_env.iter().map(|(k, v)| (k.into(), v.into())));
    env
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `KEY=VALUE`, as `envp` holds it.
fn env_entry(key: OsString, value: &OsStr) -> io::Result<CString> {
    let mut kv = key.into_vec();
    kv.push(b'=');
    kv.extend_from_slice(value.as_bytes());
    CString::new(kv).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The strings the child reads, kept alive by the plan; the pointers handed out stay valid
/// because a `CString`'s bytes do not move when the `CString` does.
#[derive(Default)]
struct Strings(Vec<CString>);

impl Strings {
    fn keep(&mut self, c: CString) -> *const libc::c_char {
        let p = c.as_ptr();
        self.0.push(c);
        p
    }

    /// A NULL-terminated array of pointers to `items`, as execve takes argv and envp.
    fn array(
        &mut self,
        items: impl IntoIterator<Item = io::Result<CString>>,
    ) -> io::Result<Vec<*const libc::c_char>> {
        let mut array = Vec::new();
        for item in items {
            array.push(self.keep(item?));
        }
        array.push(std::ptr::null());
        Ok(array)
    }
}

/// The signal state the child starts with: which signals to ignore and the mask. Without the
/// recorded state (never in the binary), what std::process::Command gives: nothing ignored,
/// nothing blocked.
fn inherited_signals() -> (u64, libc::sigset_t) {
    match signals::inherited() {
        Some(inherited) => (inherited.ignored, *inherited.mask.as_ref()),
        None => (0, *SigSet::empty().as_ref()),
    }
}

impl Plan {
    fn new(
        paths: &[PathBuf],
        program: &OsStr,
        args: &[OsString],
        extra_env: &[(String, String)],
        own_pid_variable: Option<&str>,
        hand_terminal: bool,
        stdio: Option<Stdio>,
    ) -> io::Result<Plan> {
        let paths = paths
            .iter()
            .map(|p| c_string(p.as_os_str()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut strings = Strings::default();
        let argv = strings.array(
            std::iter::once(program)
                .chain(args.iter().map(|a| a.as_os_str()))
                .map(c_string),
        )?;
        // Per path, `/bin/sh PATH ARGS...` (argv[1..] ends with the NULL).
        let sh = strings.keep(CString::from(c"/bin/sh"));
        let script_argvs = paths
            .iter()
            .map(|p| {
                [sh, p.as_ptr()]
                    .into_iter()
                    .chain(argv[1..].iter().copied())
                    .collect()
            })
            .collect();
        let extra_env: Vec<(String, String)> = extra_env
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != own_pid_variable)
            .cloned()
            .collect();
        let environment = child_environment(std::env::vars_os(), &extra_env, own_pid_variable);
        let mut envp = strings.array(environment.into_iter().map(|(k, v)| env_entry(k, &v)))?;
        let own_pid = own_pid_variable.map(OwnPidEntry::new).transpose()?;
        if let Some(entry) = &own_pid {
            // Before the terminating NULL; the bytes live in the plan, as the strings do.
            envp.insert(envp.len() - 1, entry.as_ptr());
        }
        let (ignored, mask) = inherited_signals();
        Ok(Plan {
            paths,
            argv,
            script_argvs,
            envp,
            _strings: strings.0,
            own_pid,
            guard_line: None,
            parent: getpid().as_raw(),
            hand_terminal,
            stdio,
            ignored,
            mask,
            error: AtomicI32::new(0),
        })
    }

    /// The child sends the guard `note`, completed with its own group, before it execs.
    fn with_note(mut self, note: Option<&ChildNote<'_>>) -> Plan {
        self.guard_line = note.map(GuardLine::new);
        self
    }

    /// Clones the child and returns once it has exec'd (its pid) or failed to (the errno; it is
    /// reaped then).
    fn start(self) -> io::Result<libc::pid_t> {
        let stack = ChildStack::map()?;
        let pid = self.clone_child(&stack);
        drop(stack);
        let pid = pid?;
        match self.error.load(Ordering::SeqCst) {
            0 => Ok(pid),
            errno => {
                // It has exited (that is what let clone return): reap it, it was never a child
                // anyone else waits for.
                let _ = waitpid(Pid::from_raw(pid), None);
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }

    /// Clones the child onto `stack`; returns once it has exec'd or exited (`CLONE_VFORK`).
    fn clone_child(&self, stack: &ChildStack) -> io::Result<libc::pid_t> {
        // Every signal blocked for the moment the clone takes, even the fault signals, whose
        // handlers must not run in the child, which shares our memory.
        let old = SigSet::all().thread_swap_mask(SigmaskHow::SIG_SETMASK)?;
        // SAFETY: clone gets a stack top inside our mapping and a pointer to `self`, which
        // outlives the child's use of it: with CLONE_VFORK, clone returns only after the child
        // has exec'd or exited. The child runs `child_main`, which makes system calls only.
        let pid = unsafe {
            libc::clone(
                child_main,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                self as *const Plan as *mut libc::c_void,
            )
        };
        let clone_error = io::Error::last_os_error();
        let _ = old.thread_set_mask();
        if pid < 0 {
            return Err(clone_error);
        }
        Ok(pid)
    }
}

/// The child's stack between clone and exec: an anonymous mapping whose lowest page is a guard
/// (an overflow faults instead of writing into our memory), unmapped when dropped.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    fn map() -> io::Result<ChildStack> {
        // SAFETY: sysconf takes an integer and touches no memory of ours.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        };
        let len = CHILD_STACK + page;
        // SAFETY: a fresh anonymous mapping, owned by the `ChildStack` that unmaps it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of our own mapping becomes the guard.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The stack's top: it grows down from here.
    fn top(&self) -> *mut libc::c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the child no longer uses it once clone has returned.
        unsafe { libc::munmap(self.base, self.len) };
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

/// The errno of the system call that just failed, read without allocating.
fn last_errno() -> libc::c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The child's steps; returns the errno of the step that failed (exec never returns on success).
///
/// # Safety
/// Only from [`child_main`]: every pointer in `plan` must be valid and NUL-terminated.
unsafe fn run_child(plan: &Plan) -> libc::c_int {
    match prepare_child(plan) {
        Ok(()) => exec_candidates(plan),
        Err(errno) => errno,
    }
}

/// Between clone and exec: a process group of its own, the death signal, the terminal, the
/// standard streams of a check, and the signal state the user started us with.
///
/// # Safety
/// Only from [`run_child`].
unsafe fn prepare_child(plan: &Plan) -> Result<(), libc::c_int> {
    if let Some(entry) = &plan.own_pid {
        entry.fill(libc::getpid());
    }
    if libc::setpgid(0, 0) != 0 {
        return Err(last_errno());
    }
    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
        return Err(last_errno());
    }
    // The parent may have died before prctl: then nothing would kill us later.
    if libc::getppid() != plan.parent {
        return Err(libc::ESRCH);
    }
    // Our group exists and we die with the supervisor: the guard learns the group now, before
    // anything of the command's can fork, so its children die with the supervisor too.
    if let Some(line) = &plan.guard_line {
        line.send(line.fill(libc::getpid()));
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
            return Err(last_errno());
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
    Ok(())
}

/// As execvp: the next candidate after "not found" or "permission denied", a script without
/// `#!` to /bin/sh, anything else is final; EACCES wins over a later ENOENT. Returns the errno
/// exec failed with.
///
/// # Safety
/// Only from [`run_child`].
unsafe fn exec_candidates(plan: &Plan) -> libc::c_int {
    let mut denied = false;
    let mut last = libc::ENOENT;
    for (i, path) in plan.paths.iter().enumerate() {
        libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        last = last_errno();
        match last {
            libc::ENOEXEC => {
                let script_argv = &plan.script_argvs[i];
                libc::execve(script_argv[0], script_argv.as_ptr(), plan.envp.as_ptr());
                return last_errno();
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

/// What `waitid(WNOWAIT)` says about our children, without reaping any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waitable {
    Exited(libc::pid_t),
    Stopped(libc::pid_t),
    /// Children exist, none has changed state.
    NoneYet,
    NoChildren,
    Error,
}

/// Peeks at the next child that can be reaped (or reports a stop), leaving it unreaped, so a
/// check's group can be killed while its leader's zombie still pins the group id.
pub fn peek_waitable() -> Waitable {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on any child into `info`, non-blocking, without reaping (WNOWAIT).
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r < 0 {
        return match last_errno() {
            libc::ECHILD => Waitable::NoChildren,
            _ => Waitable::Error,
        };
    }
    // SAFETY: after a successful waitid, si_pid is set (0 when no child changed state).
    let pid = unsafe { info.si_pid() };
    waitable(pid, info.si_code)
}

/// What a successful `waitid` reports, from its `si_pid` and `si_code`.
fn waitable(pid: libc::pid_t, si_code: libc::c_int) -> Waitable {
    match pid {
        0 => Waitable::NoneYet,
        _ if si_code == libc::CLD_STOPPED || si_code == libc::CLD_TRAPPED => Waitable::Stopped(pid),
        _ => Waitable::Exited(pid),
    }
}

/// How a child changed state, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// Stopped by this signal; still our child.
    Stopped(libc::c_int),
    /// Ended, and reaped.
    Ended(ChildStatus),
    /// Continued (reported only if asked for; we never do).
    Continued,
}

/// Reaps `pid` (or collects its stop) without blocking; `None` if it was not waitable after all.
/// Unlike nix's `waitpid`, keeps the status of a child killed by a real-time signal.
pub fn reap(pid: libc::pid_t) -> Option<Reaped> {
    let mut status = 0;
    // SAFETY: waitpid writes one int we own; non-blocking, stops reported too.
    if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) } != pid {
        return None;
    }
    Some(reaped(status))
}

/// The meaning of a `waitpid` status.
fn reaped(status: libc::c_int) -> Reaped {
    if libc::WIFSTOPPED(status) {
        Reaped::Stopped(libc::WSTOPSIG(status))
    } else if let Some(how) = ChildStatus::from_wait(status) {
        Reaped::Ended(how)
    } else {
        Reaped::Continued
    }
}

/// A pidfd for our child `pid`, if the kernel has them (5.3+).
pub fn pidfd(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_start_failure_ends_with_the_code_a_shell_would_use() {
        use crate::core::exit_code::Exit;
        let not_found = (exit_code::NOT_FOUND, Exit::NotFound);
        let not_executable = (exit_code::NOT_EXECUTABLE, Exit::NotExecutable);
        let internal = (exit_code::INTERNAL, Exit::Internal);
        // (errno, (exit code, how the process ends))
        let rows = [
            (libc::ENOENT, not_found),
            (libc::ENOTDIR, not_found),
            (libc::EACCES, not_executable),
            (libc::ENOEXEC, not_executable),
            (libc::EISDIR, not_executable),
            (libc::EPERM, not_executable),
            (libc::ETXTBSY, not_executable),
            (libc::ENOMEM, internal),
            (libc::EAGAIN, internal),
        ];
        crate::process::assert_table(rows, |errno| {
            let e = SpawnError {
                program: "cmd".into(),
                source: io::Error::from_raw_os_error(errno),
            };
            (e.exit_code(), e.exit())
        });
        let other = SpawnError {
            program: "cmd".into(),
            source: io::Error::other("no errno"),
        };
        assert_eq!(other.exit_code(), exit_code::INTERNAL);
    }

    /// A file for the PATH tests: its directory (`a`, `b` or `c`), its name and its mode (0: a
    /// directory).
    type File = (&'static str, &'static str, u32);

    /// Directories `a`, `b`, `c` under a temporary one, holding `files`, and the PATH of the three.
    fn path_dirs(files: &[File]) -> (tempfile::TempDir, OsString) {
        let root = tempfile::tempdir().unwrap();
        for dir in ["a", "b", "c"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        for &(dir, name, mode) in files {
            let file = root.path().join(dir).join(name);
            if mode == 0 {
                std::fs::create_dir(&file).unwrap();
                continue;
            }
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let path = std::env::join_paths(["a", "b", "c"].map(|d| root.path().join(d))).unwrap();
        (root, path)
    }

    #[test]
    fn a_name_is_found_in_path_as_execvp_finds_it() {
        // (files: dir, name, mode (0: a directory)), expected: the directory it is found in, or
        // the errno. The file found first that can run wins; one that cannot run is skipped, and
        // reported only if nothing runs.
        let found = |dir: &str| Ok(dir.to_owned());
        let rows: [(&[File], Result<String, i32>); 7] = [
            (&[("b", "cmd", 0o755)], found("b")),
            (&[("a", "cmd", 0o755), ("b", "cmd", 0o755)], found("a")),
            (&[("a", "cmd", 0o644), ("c", "cmd", 0o755)], found("c")),
            (&[("a", "cmd", 0), ("b", "cmd", 0o700)], found("b")),
            (&[("b", "cmd", 0o644)], Err(libc::EACCES)),
            (&[("a", "cmd", 0)], Err(libc::EISDIR)),
            (&[("a", "other", 0o755)], Err(libc::ENOENT)),
        ];
        crate::process::assert_table(rows, |files| {
            let (root, path) = path_dirs(files);
            // Where it was found, as the row says it.
            resolve(OsStr::new("cmd"), &path).map(|found| {
                let dir = found
                    .parent()
                    .and_then(|d| d.strip_prefix(root.path()).ok());
                dir.and_then(|d| d.to_str())
                    .unwrap_or("elsewhere")
                    .to_owned()
            })
        });
    }

    #[test]
    fn a_name_with_a_slash_is_not_looked_up_in_path() {
        let (root, path) = path_dirs(&[("a", "cmd", 0o755), ("b", "cmd", 0o644)]);
        let here = root.path().join("b/cmd");
        assert_eq!(resolve(here.as_os_str(), &path), Err(libc::EACCES));
        let there = root.path().join("a/cmd");
        assert_eq!(resolve(there.as_os_str(), &path), Ok(there.clone()));
        assert_eq!(resolve(OsStr::new("a/cmd"), &path), Err(libc::ENOENT));
        assert_eq!(
            candidates(&there, there.as_os_str(), &path),
            vec![there.clone()]
        );
    }

    #[test]
    fn exec_tries_the_path_found_then_the_same_name_in_every_later_directory() {
        let path = OsStr::new("/one:/two:/three");
        let p = |s: &str| PathBuf::from(s);
        // (found, candidates)
        let rows = [
            (
                "/one/cmd",
                vec![p("/one/cmd"), p("/two/cmd"), p("/three/cmd")],
            ),
            ("/two/cmd", vec![p("/two/cmd"), p("/three/cmd")]),
            ("/three/cmd", vec![p("/three/cmd")]),
        ];
        crate::process::assert_table(rows, |found| {
            candidates(Path::new(found), OsStr::new("cmd"), path)
        });
    }

    #[test]
    fn waitid_reports_a_stop_apart_from_an_end() {
        // ((si_pid, si_code), what is waitable)
        let rows = [
            ((0, 0), Waitable::NoneYet),
            ((42, libc::CLD_EXITED), Waitable::Exited(42)),
            ((42, libc::CLD_KILLED), Waitable::Exited(42)),
            ((42, libc::CLD_DUMPED), Waitable::Exited(42)),
            ((42, libc::CLD_STOPPED), Waitable::Stopped(42)),
            ((42, libc::CLD_TRAPPED), Waitable::Stopped(42)),
        ];
        crate::process::assert_table(rows, |(pid, code)| waitable(pid, code));
    }

    #[test]
    fn every_wait_status_is_kept_real_time_signals_included() {
        let rt = libc::SIGRTMIN() + 2;
        // (raw waitpid status, meaning)
        let rows = [
            (0x0000, Reaped::Ended(ChildStatus::Exited(0))),
            (0x0700, Reaped::Ended(ChildStatus::Exited(7))),
            (0xff00, Reaped::Ended(ChildStatus::Exited(255))),
            (
                libc::SIGKILL,
                Reaped::Ended(ChildStatus::Signaled(libc::SIGKILL)),
            ),
            (
                libc::SIGSEGV | 0x80,
                Reaped::Ended(ChildStatus::Signaled(libc::SIGSEGV)),
            ),
            (rt, Reaped::Ended(ChildStatus::Signaled(rt))),
            ((libc::SIGTSTP << 8) | 0x7f, Reaped::Stopped(libc::SIGTSTP)),
            ((libc::SIGSTOP << 8) | 0x7f, Reaped::Stopped(libc::SIGSTOP)),
            (0xffff, Reaped::Continued),
        ];
        crate::process::assert_table(rows, reaped);
    }

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
            None,
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
        let e = spawn(&spec(&script, &[]), &[], None, false, None).unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::ENOENT), "{e}");
        assert_eq!(e.exit_code(), exit_code::NOT_FOUND);

        let pid = spawn(
            &spec(
                std::path::Path::new("sh"),
                &["-c", "exit $SINGLETON_EXEC_T"],
            ),
            &[("SINGLETON_EXEC_T".into(), "7".into())],
            None,
            false,
            None,
        )
        .unwrap();
        // Our own child: a zombie keeps its group until reaped.
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(pid))).map(Pid::as_raw),
            Ok(pid),
            "a process group of its own"
        );
        let status = waitpid(Pid::from_raw(pid), None);
        assert_eq!(
            status,
            Ok(nix::sys::wait::WaitStatus::Exited(Pid::from_raw(pid), 7))
        );
    }

    #[test]
    fn the_own_pid_entry_takes_any_pid_and_refuses_a_bad_name() {
        let entry = OwnPidEntry::new("WATCHDOG_PID").unwrap();
        assert_eq!(entry.text(), "WATCHDOG_PID=");
        // (pid, entry): a shorter pid after a longer one leaves nothing of it behind.
        let rows = [
            (4242, "WATCHDOG_PID=4242".to_owned()),
            (1, "WATCHDOG_PID=1".to_owned()),
            (i32::MAX, "WATCHDOG_PID=2147483647".to_owned()),
            (77, "WATCHDOG_PID=77".to_owned()),
        ];
        crate::process::assert_table(rows, |pid| {
            entry.fill(pid);
            entry.text()
        });
        for bad in ["", "A=B", "A\0B"] {
            assert!(OwnPidEntry::new(bad).is_err(), "{bad:?}");
        }
    }

    /// The child finds its own pid in the variable named, whatever our environment says, and no
    /// second entry of it.
    #[test]
    fn the_child_gets_its_own_pid_in_the_variable_named() {
        let _serial = crate::test_children();
        let spec = CommandSpec {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "test \"$WATCHDOG_PID\" = \"$$\" && test \"$(env | grep -c ^WATCHDOG_PID=)\" = 1"
                    .into(),
            ],
        };
        let extra = [("WATCHDOG_PID".into(), "stale".into())];
        let pid = spawn(&spec, &extra, Some("WATCHDOG_PID"), false, None).unwrap();
        let status = waitpid(Pid::from_raw(pid), None);
        assert_eq!(
            status,
            Ok(nix::sys::wait::WaitStatus::Exited(Pid::from_raw(pid), 0))
        );
    }

    #[test]
    fn the_guard_line_takes_any_pid_after_the_other_groups() {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let rows = [
            ("", 4242, "4242 0\n"),
            ("", 1, "1 0\n"),
            ("17 99 ", i32::MAX, "17 99 2147483647 0\n"),
            ("17 99 ", 77, "17 99 77 0\n"),
        ];
        for (prefix, pid, want) in rows {
            let note = ChildNote {
                socket: ours.as_fd(),
                prefix: prefix.into(),
            };
            let line = GuardLine::new(&note);
            let len = line.fill(pid);
            assert_eq!(line.text(len), want, "{prefix:?} {pid}");
        }
    }

    /// The child itself tells the guard its group, before it execs: the supervisor has told
    /// nothing here, and the line names the child's pid (its group) after the other groups. The
    /// socket is close-on-exec, so only the child's code before exec can have sent it.
    /// Before, only the supervisor told the guard, after the start: a supervisor SIGKILLed
    /// between the two left the command's own children running.
    #[test]
    fn the_child_and_a_check_tell_the_guard_their_group_before_they_exec() {
        use std::io::Read;
        let _serial = crate::test_children();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let note = ChildNote {
            socket: ours.as_fd(),
            prefix: "17 99 ".into(),
        };
        let line = |from: &mut std::os::unix::net::UnixStream| {
            let mut got = Vec::new();
            while !got.ends_with(b"\n") {
                let mut buf = [0u8; 64];
                let n = from.read(&mut buf).expect("a line from the child");
                assert!(n > 0, "end of file before the line");
                got.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&got).into_owned()
        };
        let spec = CommandSpec {
            program: "sh".into(),
            args: vec!["-c".into(), "exit 0".into()],
        };
        let pid = spawn(&spec, &[], None, false, Some(&note)).unwrap();
        assert_eq!(line(&mut theirs), format!("17 99 {pid} 0\n"));
        let status = waitpid(Pid::from_raw(pid), None);
        assert_eq!(
            status,
            Ok(nix::sys::wait::WaitStatus::Exited(Pid::from_raw(pid), 0))
        );
        // A health check does the same.
        let (_read, write) = nix::unistd::pipe().unwrap();
        let pid = spawn_check("exit 0", &[], write, Some(&note)).unwrap();
        assert_eq!(line(&mut theirs), format!("17 99 {pid} 0\n"));
        let _ = waitpid(Pid::from_raw(pid), None);
    }
}
