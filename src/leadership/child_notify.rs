//! The leader's side of its child's notify socket ([`crate::notify_socket`]): what the child
//! gets (`NOTIFY_SOCKET`, and `WATCHDOG_USEC` and `WATCHDOG_PID` with `--watchdog`), what the
//! leadership loop does with what it says, and when it judges it.
//!
//! * `READY=1`, `STATUS=`, `STOPPING=1`: shown at once in `/status` (and `/leader`, when the
//!   leader waits for `READY=1`), logged once each, and passed on to etcd (the health record,
//!   [`HealthPublisher`]) and to systemd (our `STATUS=`): at once for readiness, at most every
//!   [`SHOWN_EVERY`] for a new status text ([`Throttle`]), so a child that rewrites its status
//!   a thousand times a second costs etcd one write a second.
//! * `EXTEND_TIMEOUT_USEC=`: passed to the process thread, which lets it move SIGKILL of a stop
//!   under way no later than the lease allows ([`Request::ExtendGrace`]); before `READY=1` it
//!   also gives `--ready-timeout` longer ([`judge`]).
//! * `WATCHDOG=trigger`, a missed `WATCHDOG=1`, no `READY=1` in time: a verdict on the child
//!   ([`StopReason::is_child_verdict`]), which makes the leader step down as a failed health
//!   check does, logged with its reason and counted. Judged only while nothing else stops the
//!   tree ([`super::transition::Lead::checks_allowed`]).
//!
//! The heartbeat wakes nobody: the watchdog is a timer here, which reads the last `WATCHDOG=1`
//! when it is due. None of this moves the lease deadline; the process thread enforces that
//! alone, whatever the child sends.

use crate::core::duration::Short;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::clock::BootInstant;
use crate::core::lifecycle::StopReason;
use crate::notify_socket::{judge, Channel, Expectations, Judgement, Notices};
use crate::process::contract::Request;

use super::health_publisher::{ChildShown, HealthPublisher};
use super::{Ctx, ProcessThread};

/// The variable the child finds its own pid in, with `--watchdog` (as systemd sets it).
pub(super) const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// A new status text reaches etcd and systemd at most this often (readiness at once).
pub(super) const SHOWN_EVERY: Duration = Duration::from_secs(1);

/// A child's socket, opened before the child is asked for, with what the child is to be given.
pub(super) struct Opened {
    pub channel: Channel,
    /// `NOTIFY_SOCKET` (and the watchdog's variables).
    pub env: Vec<(String, String)>,
    /// `WATCHDOG_PID`, which the child fills in with its own pid, with `--watchdog`.
    pub own_pid_variable: Option<&'static str>,
}

/// Opens the next child's socket; `None` (said once in the log) when there is none to open.
pub(super) fn open(ctx: &Ctx<'_>) -> Option<Opened> {
    let listener = ctx.notify?;
    let channel = match listener.open() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the child's notify socket: it gets no NOTIFY_SOCKET, and --watchdog and --ready-timeout cannot apply to it");
            return None;
        }
    };
    let mut env = vec![("NOTIFY_SOCKET".to_owned(), channel.env_value().to_owned())];
    let own_pid_variable = ctx.cfg.notify.watchdog.map(|w| {
        env.push(("WATCHDOG_USEC".to_owned(), w.as_micros().to_string()));
        WATCHDOG_PID
    });
    Some(Opened {
        channel,
        env,
        own_pid_variable,
    })
}

/// One child's notify socket while its tree runs.
pub(super) struct ChildNotify {
    channel: Channel,
    /// Whether the listener can still tell of changes.
    open: bool,
    expect: Expectations,
    started: BootInstant,
    /// What has been acted on already.
    seen: Seen,
    throttle: Throttle,
}

#[derive(Debug, Default)]
struct Seen {
    ready: bool,
    stopping: bool,
    trigger: bool,
    /// When the last extension passed on came.
    extension: Option<BootInstant>,
}

impl ChildNotify {
    /// The child of `opened` started now as `pid`: its own datagrams need no look in `/proc`,
    /// and a record in etcd shows it from its start if its readiness is awaited (or if the last
    /// child's is shown there).
    pub(super) fn start(
        ctx: &Ctx<'_>,
        opened: Opened,
        pid: libc::pid_t,
        publish: &mut HealthPublisher,
    ) -> ChildNotify {
        opened.channel.started(pid);
        ctx.obs.child_listened(opened.channel.notices.clone());
        let mut expect = ctx.cfg.notify;
        // After STOPPING=1 the watchdog rests, but the child has the stop's grace to be gone.
        expect.stop_timeout = expect.watchdog.map(|_| ctx.cfg.timing.grace);
        let child = ChildShown {
            ready: !expect.awaits_ready(),
            ..ChildShown::default()
        };
        publish.show_child(child, expect.awaits_ready());
        ChildNotify {
            channel: opened.channel,
            open: true,
            expect,
            started: BootInstant::now(),
            seen: Seen::default(),
            throttle: Throttle::new(SHOWN_EVERY),
        }
    }

    /// Resolves when the child said something the loop acts on or shows; never once the
    /// listener is gone.
    pub(super) async fn changed(&mut self) {
        if !self.open || self.channel.notices.changed().await.is_err() {
            self.open = false;
            std::future::pending::<()>().await;
        }
    }

    /// Takes in what changed: shows it, passes an extension on, and returns the trigger's
    /// verdict when it may count (`judged`: nothing else stops the tree).
    pub(super) fn take_in(
        &mut self,
        ctx: &Ctx<'_>,
        process: &ProcessThread,
        publish: &mut HealthPublisher,
        judged: bool,
    ) -> Option<StopReason> {
        let n = self.channel.notices.borrow_and_update().clone();
        ctx.obs.child_noticed(&n);
        let mut at_once = false;
        if let (Some(at), false) = (n.ready_at, self.seen.ready) {
            self.seen.ready = true;
            at_once = true;
            let after = Short(at.saturating_duration_since(self.started));
            tracing::info!(
                %after,
                status = n.status.as_deref().unwrap_or(""),
                "the child is ready (READY=1)"
            );
            ctx.obs.child_became_ready(at);
        }
        if n.stopping_at.is_some() && !self.seen.stopping {
            self.seen.stopping = true;
            at_once = true;
            tracing::info!("the child is stopping (STOPPING=1)");
        }
        if let Some(e) = n.extension.filter(|e| Some(e.at) != self.seen.extension) {
            self.seen.extension = Some(e.at);
            tracing::debug!(
                asked = %Short(e.asked),
                "the child asked for more time (EXTEND_TIMEOUT_USEC)"
            );
            process.request(Request::ExtendGrace {
                sent_at: e.at,
                until: e.until(),
            });
        }
        if self.throttle.offer(at_once, Instant::now()) {
            self.show(ctx, &n, publish);
        }
        if n.trigger_at.is_some() && !self.seen.trigger && judged {
            self.seen.trigger = true;
            return self.verdict_of(ctx, Judgement::Triggered);
        }
        None
    }

    /// Passes what the child said on to etcd and systemd.
    fn show(&self, ctx: &Ctx<'_>, n: &Notices, publish: &mut HealthPublisher) {
        let child = ChildShown {
            ready: self.expect.ready(n),
            ready_after_ms: n
                .ready_at
                .map(|at| at.saturating_duration_since(self.started).as_millis() as u64),
            status: n.status.clone(),
        };
        publish.show_child(child, false);
        ctx.obs.mirror_child();
    }

    /// When a change held back by the throttle is due to be shown, if one is.
    pub(super) fn show_at(&self) -> Option<Instant> {
        self.throttle.due_at()
    }

    /// Shows what the throttle held back.
    pub(super) fn show_now(&mut self, ctx: &Ctx<'_>, publish: &mut HealthPublisher) {
        self.throttle.shown(Instant::now());
        let n = self.channel.notices.borrow().clone();
        self.show(ctx, &n, publish);
    }

    /// When the notices may mean a step-down (the watchdog or the ready timeout is due, as of
    /// the last heartbeat); `None` when nothing is expected.
    pub(super) fn due_at(&self) -> Option<Instant> {
        let now = BootInstant::now();
        let judged = judge(
            &self.channel.notices.borrow(),
            self.expect,
            self.started,
            now,
        );
        match judged {
            Judgement::Fine { next } => {
                next.map(|at| Instant::now() + at.saturating_duration_since(now))
            }
            _ => Some(Instant::now()),
        }
    }

    /// The verdict now, if the child is to be stepped down from: logged and counted.
    pub(super) fn verdict(&mut self, ctx: &Ctx<'_>) -> Option<StopReason> {
        let n = self.channel.notices.borrow().clone();
        let j = judge(&n, self.expect, self.started, BootInstant::now());
        if j == Judgement::Triggered {
            if self.seen.trigger {
                return None;
            }
            self.seen.trigger = true;
        }
        self.verdict_of(ctx, j)
    }

    fn verdict_of(&self, ctx: &Ctx<'_>, j: Judgement) -> Option<StopReason> {
        let status = self
            .channel
            .notices
            .borrow()
            .status
            .clone()
            .unwrap_or_default();
        match j {
            Judgement::Fine { .. } => None,
            Judgement::Triggered => {
                tracing::warn!(%status, "the child sent WATCHDOG=trigger: stepping down so a standby takes over");
                ctx.obs.watchdog_step_down(true);
                Some(StopReason::WatchdogTrigger)
            }
            Judgement::WatchdogMissed { silent } => {
                let watchdog = Short(self.expect.watchdog.unwrap_or_default());
                tracing::warn!(silent = %Short(silent), %watchdog, %status,
                    "the child sent no WATCHDOG=1 within --watchdog: stepping down so a standby takes over");
                ctx.obs.watchdog_step_down(false);
                Some(StopReason::WatchdogMissed)
            }
            Judgement::StillStopping { waited } => {
                let grace = Short(self.expect.stop_timeout.unwrap_or_default());
                tracing::warn!(waited = %Short(waited), %grace, %status,
                    "the child sent STOPPING=1 but is still running after the stop's grace (--grace): stepping down so a standby takes over");
                ctx.obs.watchdog_step_down(false);
                Some(StopReason::WatchdogMissed)
            }
            Judgement::NotReady { waited } => {
                tracing::warn!(waited = %Short(waited), %status,
                    "the child sent no READY=1 within --ready-timeout: stepping down so another replica can try");
                ctx.obs.ready_timed_out();
                Some(StopReason::NotReady)
            }
        }
    }
}

/// Resolves when the child said something; never without a notify socket.
pub(super) async fn notify_changed(notify: Option<&mut ChildNotify>) {
    match notify {
        Some(n) => n.changed().await,
        None => std::future::pending().await,
    }
}

/// At most one showing every `gap`, but what must be shown at once; what is held back is shown
/// when the gap is over (the latest of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Throttle {
    gap: Duration,
    last: Option<Instant>,
    pending: bool,
}

impl Throttle {
    pub(super) fn new(gap: Duration) -> Throttle {
        Throttle {
            gap,
            last: None,
            pending: false,
        }
    }

    /// A change at `now`: whether to show it now (else it is held back).
    pub(super) fn offer(&mut self, at_once: bool, now: Instant) -> bool {
        if at_once || self.last.is_none_or(|last| now >= last + self.gap) {
            self.shown(now);
            return true;
        }
        self.pending = true;
        false
    }

    /// Something was shown at `now`.
    pub(super) fn shown(&mut self, now: Instant) {
        self.last = Some(now);
        self.pending = false;
    }

    /// When what is held back is to be shown, if anything is.
    pub(super) fn due_at(&self) -> Option<Instant> {
        match (self.pending, self.last) {
            (true, Some(last)) => Some(last + self.gap),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_shown_at_most_once_a_gap_but_at_once_when_it_must() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Throttle::new(ms(1_000));
        // ((at once, at), shown now, then due at)
        let rows = [
            ((false, 0), true, None),
            ((false, 10), false, Some(1_000)),
            ((false, 500), false, Some(1_000)),
            // Readiness goes out at once, and takes what waited with it.
            ((true, 600), true, None),
            ((false, 700), false, Some(1_600)),
            ((false, 1_600), true, None),
            ((false, 5_000), true, None),
        ];
        for ((at_once, at), shown, due) in rows {
            assert_eq!(t.offer(at_once, t0 + ms(at)), shown, "at {at}");
            assert_eq!(t.due_at(), due.map(|d| t0 + ms(d)), "at {at}");
        }
        t.offer(false, t0 + ms(5_001));
        t.shown(t0 + ms(6_000));
        assert_eq!(t.due_at(), None);
    }
}
