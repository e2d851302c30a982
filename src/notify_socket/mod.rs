//! The child talks back: a notify socket of its own for each child, as systemd gives a service
//! (sd_notify(3)), so that an application written for `Type=notify` runs under singleton-exec
//! unchanged and can say when it is ready (`READY=1`), what it is doing (`STATUS=`), that its
//! main loop is alive (`WATCHDOG=1`), that it is broken (`WATCHDOG=trigger`), that it is
//! stopping (`STOPPING=1`), and that it needs longer (`EXTEND_TIMEOUT_USEC=`).
//!
//! * [`socket`]: where the sockets live (a private directory, or abstract names on a read-only
//!   file system) and one socket, read with its sender's credentials and never a descriptor;
//! * [`sender`]: only a process of the child's tree is heard;
//! * [`message`]: one datagram, read as systemd reads it, its status text made safe;
//! * [`notices`]: what the child has said, and what that means (ready, watchdog missed, ...);
//! * [`listener`]: the thread that reads the current child's socket, with bounded work.
//!
//! Invariants: the socket is read on a thread of its own, never on the process thread or the
//! leadership loop's runtime, and each wake-up does bounded work; nothing the child sends
//! reaches the fail-closed deadline (the watchdog only makes the leader step down through the
//! usual stop, and an extension of the grace is capped by the lease on the process thread,
//! [`crate::process::stop::Stop::extend_grace`]).
//!
//! The child always gets `NOTIFY_SOCKET`, whether or not any option uses what it sends: an
//! application that finds it set (libsystemd, `systemd-notify`, the sd_notify libraries) talks,
//! one that does not ignores it, and `status` shows what it said either way.

#![forbid(unsafe_code)]

pub mod listener;
pub mod message;
pub mod notices;
pub mod sender;
pub mod socket;

pub use listener::{Channel, Listener, Outcome, Tally};
pub use notices::{judge, Expectations, Judgement, Notices};
