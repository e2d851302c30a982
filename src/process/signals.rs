//! Signal set-up that must happen first thing in `main`, before any thread or the tokio runtime exists.
//!
//! Every asynchronous signal is blocked, in the main thread, so every thread created later inherits
//! the mask and no signal is ever delivered to a random runtime thread. The process thread
//! ([`crate::process::thread`]) reads them from a signalfd. Blocked signals are queued even for PID 1 (a
//! PID 1 without handlers would otherwise have them dropped by the kernel).
//!
//! We also record what the user handed us, the original mask and which signals were ignored, so the
//! child can start with exactly that (see [`crate::process::spawn`]).
//!
//! The synchronous signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT) cannot be
//! blocked: a genuine fault must still crash us. But another process may *send* them (`kill -ABRT`,
//! systemd's watchdog abort, a shared PID namespace), and then they belong to the child, as every
//! other signal does. [`forward_sent_faults`] installs a handler that tells the two apart by
//! `si_code` (≤ 0: sent by kill/tgkill/sigqueue) and `si_pid` (not ourselves): a sent signal is
//! written to a pipe the process thread reads and forwards; a genuine fault, or our own `abort()`,
//! restores the default action and re-raises, so it stays fatal with its core dump.
//!
//! The raw signal calls live here, each behind a small safe function ([`send`], [`send_to_group`],
//! [`ignore`]): nix's `kill` takes only the classic signals, and the child may be sent a real-time
//! one.

// Signal dispositions and handlers need libc; every unsafe block says why it is sound.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use nix::sys::signal::SigSet;

/// Signals raised synchronously by faults: blocking them is undefined behaviour, and a crash must
/// still crash. `SIGABRT` stays unblocked so `abort()` works.
const SYNCHRONOUS: [libc::c_int; 7] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGABRT,
];

/// Write end of the pipe the fault handler reports sent signals on (-1 until installed).
static SENT_FAULTS_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The highest signal number on Linux.
pub const MAX_SIGNAL: libc::c_int = 64;

/// What the process inherited from whoever started it.
#[derive(Clone, Copy)]
pub struct Inherited {
    /// The signal mask before we blocked everything.
    pub mask: SigSet,
    /// Signals whose disposition was SIG_IGN at start (bit n-1 for signal n).
    pub ignored: u64,
    /// The mask we run with: everything except the synchronous signals.
    pub blocked: SigSet,
}

static INHERITED: OnceLock<Inherited> = OnceLock::new();

/// Blocks all asynchronous signals for this thread (and so all threads created after) and records
/// the inherited state. Call once, before any other thread starts. Returns the recorded state.
pub fn block_all() -> &'static Inherited {
    INHERITED.get_or_init(|| {
        // SAFETY: plain libc calls on properly sized, initialized sigset_t values (the old mask is
        // written by pthread_sigmask before it is read).
        unsafe {
            let mut blocked = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(blocked.as_mut_ptr());
            let mut blocked = blocked.assume_init();
            for sig in SYNCHRONOUS {
                libc::sigdelset(&mut blocked, sig);
            }
            let mut old = MaybeUninit::<libc::sigset_t>::uninit();
            libc::pthread_sigmask(libc::SIG_SETMASK, &blocked, old.as_mut_ptr());
            let mut ignored = 0u64;
            for sig in 1..=MAX_SIGNAL {
                let mut act = MaybeUninit::<libc::sigaction>::zeroed();
                if libc::sigaction(sig, std::ptr::null(), act.as_mut_ptr()) == 0
                    && act.assume_init().sa_sigaction == libc::SIG_IGN
                {
                    ignored |= 1 << (sig - 1);
                }
            }
            // The Rust runtime ignores SIGPIPE before main runs, so we cannot tell whether the user
            // did; like std::process::Command, the child gets the default.
            ignored &= !(1 << (libc::SIGPIPE - 1));
            // 32 and 33 belong to the C library (thread cancellation, setxid); never the user's.
            ignored &= !(0b11 << 31);
            // An inherited SIG_IGN for SIGCHLD makes the kernel reap our children by itself, so
            // their statuses would be lost and the child's end never seen. The child still starts
            // with it ignored (it is recorded above); we take the default.
            set_disposition_raw(libc::SIGCHLD, false);
            Inherited {
                mask: SigSet::from_sigset_t_unchecked(old.assume_init()),
                ignored,
                blocked: SigSet::from_sigset_t_unchecked(blocked),
            }
        }
    })
}

impl Inherited {
    /// Whether `sig` was ignored when we started (then the child ignores it too).
    pub fn was_ignored(&self, sig: libc::c_int) -> bool {
        (1..=MAX_SIGNAL).contains(&sig) && self.ignored & (1 << (sig - 1)) != 0
    }
}

/// Installs the handler described in the module doc for the synchronous signals and returns the
/// read end of the pipe on which sent ones arrive (one byte each: the signal number). Call once,
/// early in `main`.
pub fn forward_sent_faults() -> std::io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds; both are owned right after.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fds[0] is a fresh fd we own; fds[1] is kept for the handler for the process' life.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    SENT_FAULTS_PIPE.store(fds[1], Ordering::SeqCst);
    for sig in SYNCHRONOUS {
        // SAFETY: installing an SA_SIGINFO handler that only makes async-signal-safe calls.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_synchronous_signal as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(read)
}

/// Whether a signal with this `si_code` and sender was sent by another process (forward it) rather
/// than raised by a fault or by ourselves (keep it fatal).
pub fn sent_by_another_process(si_code: libc::c_int, si_pid: libc::pid_t, me: libc::pid_t) -> bool {
    // SI_USER (0), SI_QUEUE (-1), SI_TKILL (-6), ... are all <= 0; kernel-raised faults are > 0, and
    // the kernel refuses a non-negative si_code from another process. A sender outside our PID
    // namespace shows as pid 0; our own abort() or raise() always carries our own pid.
    si_code <= 0 && si_pid != me
}

extern "C" fn on_synchronous_signal(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo; getpid, write, raise and rt_sigaction are
    // async-signal-safe.
    unsafe {
        let me = libc::getpid();
        let (code, pid) = if info.is_null() {
            (1, 0)
        } else {
            ((*info).si_code, (*info).si_pid())
        };
        let fd = SENT_FAULTS_PIPE.load(Ordering::Relaxed);
        if fd >= 0 && sent_by_another_process(code, pid, me) {
            // The interrupted code may be between a call and its look at errno: a failed write
            // (a full pipe) must not change it.
            let saved = *libc::__errno_location();
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *libc::__errno_location() = saved;
            return;
        }
        // A genuine fault re-executes the faulting instruction on return and dies of it with the
        // default action; a raised one (abort) is raised again, now with the default action.
        set_disposition_raw(sig, false);
        if code <= 0 {
            libc::raise(sig);
        }
    }
}

/// For the one-shot subcommands (`status --watch`, `resign`), which have no process thread: a
/// thread that waits for SIGINT or SIGTERM and reports the first one. The signals stay blocked (as
/// [`block_all`] left them, in every thread), so `sigwait` is the one place they are taken from;
/// unblocking them for a tokio handler instead would race with threads already started.
pub fn interrupted() -> impl std::future::Future<Output = libc::c_int> {
    use nix::sys::signal::{SigSet, Signal};
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // A closed terminal (SIGHUP) or Ctrl-\ (SIGQUIT) ends the command too.
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGQUIT);
    let spawned = std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                let _ = tx.send(sig as libc::c_int);
            }
        });
    if let Err(e) = spawned {
        // Without the thread, Ctrl-C is not seen: say so rather than fail the command.
        tracing::warn!(error = %e, "cannot start the signal thread: SIGINT/SIGTERM will not stop this command");
    }
    async move {
        match rx.await {
            Ok(sig) => sig,
            // No thread (see above): never interrupted.
            Err(_) => std::future::pending().await,
        }
    }
}

/// The state recorded by [`block_all`], if it ran.
pub fn inherited() -> Option<&'static Inherited> {
    INHERITED.get()
}

/// Sets `sig` to the default disposition (or SIG_IGN) with the raw system call, which also works for
/// the C library's internal signals 32 and 33 that `signal(3)` refuses. Async-signal-safe.
///
/// # Safety
/// Changes process-wide signal dispositions; meant for the child between fork and exec.
pub unsafe fn set_disposition_raw(sig: libc::c_int, ignore: bool) {
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let act = KernelSigaction {
        handler: if ignore { libc::SIG_IGN } else { libc::SIG_DFL },
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    libc::syscall(
        libc::SYS_rt_sigaction,
        sig,
        &act as *const KernelSigaction,
        std::ptr::null_mut::<KernelSigaction>(),
        8usize,
    );
}

/// Sends `sig` to `pid` (as kill(2): a negative pid names a process group, -1 every process we may
/// signal). Any signal number, real-time ones included.
pub fn send(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to every process of group `pgid`.
pub fn send_to_group(pgid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: killpg(3) takes two integers and touches no memory of ours.
    if unsafe { libc::killpg(pgid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Stops this process as Ctrl-Z stops a job, and returns once it is continued. SIGTSTP goes to
/// the whole process group (`group`: the terminal's Ctrl-Z reached only the child's group, and a
/// shell sees the job stopped only once every process of it is) or to this process alone; the
/// calling thread then unblocks it for one system call, so it is delivered there with its default
/// action and every thread stops. SIGCONT (`fg`, `bg`, `kill -CONT`) continues them; it stays
/// pending (blocked) for the signalfd. Returns at once if the kernel discards the stop instead:
/// SIGTSTP ignored, an orphaned process group, PID 1, or a SIGCONT sent before the stop.
/// Call only from the thread that reads the signalfd, between two reads.
pub fn suspend_self(group: bool) {
    let target = if group {
        -nix::unistd::getpgrp().as_raw()
    } else {
        nix::unistd::getpid().as_raw()
    };
    let _ = send(target, libc::SIGTSTP);
    let mut tstp = SigSet::empty();
    tstp.add(nix::sys::signal::Signal::SIGTSTP);
    use nix::sys::signal::{pthread_sigmask, SigmaskHow};
    // The pending SIGTSTP is delivered on the return from this call: the process stops there.
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&tstp), None);
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&tstp), None);
}

/// Makes this process ignore `sig` (SIG_IGN; inherited across exec).
pub fn ignore(sig: libc::c_int) {
    // SAFETY: SIG_IGN installs no handler, so no code of ours can run in signal context.
    unsafe { set_disposition_raw(sig, true) };
}

/// Whether `sig`, read from the signalfd, is one the supervisor forwards to the child (everything
/// catchable but SIGCHLD; the synchronous ones arrive through [`forward_sent_faults`] instead).
pub fn is_forwardable(sig: libc::c_int) -> bool {
    sig != libc::SIGCHLD
        && sig != libc::SIGKILL
        && sig != libc::SIGSTOP
        && !SYNCHRONOUS.contains(&sig)
}

/// Whether `sig` is one of the signals raised by faults (and forwarded only when sent).
pub fn is_synchronous(sig: libc::c_int) -> bool {
    SYNCHRONOUS.contains(&sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_signals_are_told_from_faults() {
        let me = 100;
        // kill(2) from another process: SI_USER.
        assert!(sent_by_another_process(libc::SI_USER, 42, me));
        // sigqueue and tgkill from another process.
        assert!(sent_by_another_process(libc::SI_QUEUE, 42, me));
        assert!(sent_by_another_process(libc::SI_TKILL, 42, me));
        // Our own abort() (tgkill to ourselves) stays fatal.
        assert!(!sent_by_another_process(libc::SI_TKILL, me, me));
        // A sender in a parent PID namespace (docker kill, the host's kill) shows as pid 0.
        assert!(sent_by_another_process(libc::SI_USER, 0, me));
        // A genuine fault: SEGV_MAPERR (1), BUS_ADRERR (2), FPE_INTDIV (1), kernel (0x80).
        assert!(!sent_by_another_process(1, 0, me));
        assert!(!sent_by_another_process(2, 0, me));
        assert!(!sent_by_another_process(0x80, 0, me));
    }

    #[test]
    fn names_and_classes() {
        assert_eq!(
            crate::core::exit_code::signal_name(libc::SIGTERM),
            "SIGTERM"
        );
        assert!(crate::core::exit_code::signal_name(libc::SIGRTMIN() + 2).starts_with("SIGRTMIN+"));
        assert!(is_forwardable(libc::SIGUSR1));
        assert!(!is_forwardable(libc::SIGCHLD));
        assert!(!is_forwardable(libc::SIGSEGV));
        assert!(is_synchronous(libc::SIGABRT));
    }
}
