//! Signal set-up that must happen first thing in `main`, before any thread or the tokio runtime exists.
//!
//! Every asynchronous signal is blocked, in the main thread, so every thread created later inherits
//! the mask and no signal is ever delivered to a random runtime thread. The process thread
//! ([`crate::supervisor`]) reads them from a signalfd. Blocked signals are queued even for PID 1 (a
//! PID 1 without handlers would otherwise have them dropped by the kernel).
//!
//! We also record what the user handed us, the original mask and which signals were ignored, so the
//! child can start with exactly that (see [`crate::spawn`]).

use std::mem::MaybeUninit;
use std::sync::OnceLock;

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

/// The highest signal number on Linux.
pub const MAX_SIGNAL: libc::c_int = 64;

/// What the process inherited from whoever started it.
#[derive(Clone, Copy)]
pub struct Inherited {
    /// The signal mask before we blocked everything.
    pub mask: libc::sigset_t,
    /// Signals whose disposition was SIG_IGN at start (bit n-1 for signal n).
    pub ignored: u64,
    /// The mask we run with: everything except the synchronous signals.
    pub blocked: libc::sigset_t,
}

static INHERITED: OnceLock<Inherited> = OnceLock::new();

/// Blocks all asynchronous signals for this thread (and so all threads created after) and records
/// the inherited state. Call once, before any other thread starts. Returns the recorded state.
pub fn block_all() -> &'static Inherited {
    INHERITED.get_or_init(|| {
        // SAFETY: plain libc calls on properly sized, initialized sigset_t values.
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
            Inherited {
                mask: old.assume_init(),
                ignored,
                blocked,
            }
        }
    })
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

/// Whether `sig` is one the supervisor forwards to the child (everything catchable but SIGCHLD).
pub fn is_forwardable(sig: libc::c_int) -> bool {
    sig != libc::SIGCHLD
        && sig != libc::SIGKILL
        && sig != libc::SIGSTOP
        && !SYNCHRONOUS.contains(&sig)
}

/// A human name for a signal number, for logs.
pub fn name(sig: libc::c_int) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) if sig >= libc::SIGRTMIN() && sig <= libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", sig - libc::SIGRTMIN())
        }
        Err(_) => format!("signal {sig}"),
    }
}
