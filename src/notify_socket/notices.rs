//! What a child has said on its notify socket so far ([`Notices`]), and what that means for its
//! leadership ([`judge`]): ready or not yet, its watchdog fed or missed, a step-down asked for.
//! Both pure and table-tested; the listener thread keeps the notices, the leadership loop judges.
//!
//! The rules, after systemd's:
//! * `READY=1` counts once; a later one changes nothing.
//! * With `--ready-timeout`, a child that has not sent `READY=1` in time is not ready, and the
//!   leader steps down ([`Judgement::NotReady`]). `EXTEND_TIMEOUT_USEC=N` sent before it is ready
//!   gives it until N after that message, if that is later.
//! * With `--watchdog`, the watchdog runs from the child's start, or from its `READY=1` when
//!   `--ready-timeout` asks for one (as systemd's runs from the end of start-up), and every
//!   `WATCHDOG=1` restarts it; a child silent for longer has missed it
//!   ([`Judgement::WatchdogMissed`]). After `STOPPING=1` the watchdog rests (the child is on its
//!   way out), but, as systemd arms its stop timeout then, the child has the stop's grace
//!   ([`Expectations::stop_timeout`]), or longer if it sends `EXTEND_TIMEOUT_USEC=` after
//!   `STOPPING=1`, to be gone; still running after that, it is judged as a missed watchdog
//!   ([`Judgement::StillStopping`]): a child that hangs in a shutdown of its own does not keep
//!   its leadership for ever.
//! * `WATCHDOG=trigger` asks for the watchdog's action at once, with or without `--watchdog`.
//!
//! * `ROLE=leader` / `ROLE=standby` (`--hot-standby`): the role the child says it acts in now,
//!   numbered in the order the messages were read ([`RoleNotice`]). A demotion is confirmed only
//!   by a `ROLE=standby` read after a point the leadership loop marks once the role file says
//!   `standby` ([`confirms`]): one the child sent earlier (at its start, say) confirms nothing.
//!
//! None of this touches the lease: the watchdog decides only whether the leader steps down
//! through the usual stop, never when the child must be dead. That is the lease deadline's, on
//! the process thread, which nothing here can move.

#![forbid(unsafe_code)]

use std::time::Duration;

use crate::core::clock::BootInstant;
use crate::notify_socket::message::{Message, Role};

/// What the child has said, as of now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notices {
    /// When the first `READY=1` came.
    pub ready_at: Option<BootInstant>,
    /// The last `STATUS=` text (sanitised).
    pub status: Option<String>,
    /// When the first `STOPPING=1` came.
    pub stopping_at: Option<BootInstant>,
    /// When the last `WATCHDOG=1` came.
    pub last_ping: Option<BootInstant>,
    /// When `WATCHDOG=trigger` came.
    pub trigger_at: Option<BootInstant>,
    /// The last `EXTEND_TIMEOUT_USEC=`: when it came, and what it asked for.
    pub extension: Option<Extension>,
    /// Datagrams from the child's tree that said something.
    pub accepted: u64,
    /// The last `ROLE=` message, if any.
    pub role: Option<RoleNotice>,
    /// How many `ROLE=` messages were read so far: the number of the last one.
    pub role_messages: u64,
    /// The last `ROLE=leader`, if any: a promotion is confirmed by one read after its mark even
    /// when a `ROLE=standby` followed before the leadership loop looked (the child led, then
    /// stood down by itself: [`led`]).
    pub last_leader: Option<RoleNotice>,
}

/// A `ROLE=` message: the role, when it came, and its number among the child's `ROLE=` messages
/// (1 for the first), in the order they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleNotice {
    pub role: Role,
    pub at: BootInstant,
    pub number: u64,
}

/// Whether the child confirmed `role` after `mark`: its last `ROLE=` message says so and was read
/// after the first `mark` ones. The leadership loop takes the mark once the role file says
/// `role`, after every datagram sent before was read ([`crate::notify_socket::Channel::sync`]);
/// so a confirmation was sent after the file changed, and (a child sends the role it acts in
/// at the moment it sends it) the child acts in that role since, and will until the file
/// changes again.
pub fn confirms(n: &Notices, role: Role, mark: u64) -> Option<BootInstant> {
    n.role
        .filter(|r| r.role == role && r.number > mark)
        .map(|r| r.at)
}

/// The child's `ROLE=leader` read after `mark`, if it sent one, whatever it said since: its
/// promotion was confirmed (it acted as the leader from that message on). Unlike [`confirms`],
/// a later `ROLE=standby` does not undo it: that is the child standing down by itself, which
/// the leadership loop reads as such (`ROLE=standby` after this message's number), rather than
/// as a promotion never confirmed.
pub fn led(n: &Notices, mark: u64) -> Option<RoleNotice> {
    n.last_leader.filter(|r| r.number > mark)
}

/// An `EXTEND_TIMEOUT_USEC=` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    pub at: BootInstant,
    pub asked: Duration,
}

impl Extension {
    /// Until when the child asks to be given time.
    pub fn until(self) -> BootInstant {
        self.at + self.asked.min(crate::core::timing::MAX_DURATION)
    }
}

/// What a message changed, beyond the heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// Something the leadership loop must act on at once: ready, stopping, a trigger.
    pub at_once: bool,
    /// Something it shows, which may wait a moment: a new status text, an extension.
    pub shown: bool,
}

impl Notices {
    /// Takes in one message that came at `now`; says what changed.
    pub fn apply(&mut self, m: &Message, now: BootInstant) -> Changed {
        let mut changed = Changed::default();
        if m.watchdog {
            self.last_ping = Some(now);
        }
        if m.ready && self.ready_at.is_none() {
            self.ready_at = Some(now);
            changed.at_once = true;
        }
        if m.stopping && self.stopping_at.is_none() {
            self.stopping_at = Some(now);
            changed.at_once = true;
        }
        if m.trigger && self.trigger_at.is_none() {
            self.trigger_at = Some(now);
            changed.at_once = true;
        }
        if let Some(status) = &m.status {
            if self.status.as_ref() != Some(status) {
                self.status = Some(status.clone());
                changed.shown = true;
            }
        }
        if let Some(asked) = m.extend_timeout {
            self.extension = Some(Extension { at: now, asked });
            changed.shown = true;
        }
        if let Some(role) = m.role {
            self.role_messages += 1;
            let notice = RoleNotice {
                role,
                at: now,
                number: self.role_messages,
            };
            self.role = Some(notice);
            if role == Role::Leader {
                self.last_leader = Some(notice);
            }
            changed.at_once = true;
        }
        if m.says_anything() {
            self.accepted += 1;
        }
        changed
    }
}

/// What the leader expects of its child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expectations {
    /// `--watchdog`.
    pub watchdog: Option<Duration>,
    /// `--ready-timeout`.
    pub ready_timeout: Option<Duration>,
    /// With `--watchdog`: how long the child may still run after `STOPPING=1` (the stop's
    /// grace, `--grace`, as systemd's `TimeoutStopSec=`); set by the leadership loop.
    pub stop_timeout: Option<Duration>,
}

impl Expectations {
    /// Whether the child counts as ready only once it says so.
    pub fn awaits_ready(&self) -> bool {
        self.ready_timeout.is_some()
    }

    /// Whether the child is ready: it said so, or nobody waits for it to.
    pub fn ready(&self, n: &Notices) -> bool {
        n.ready_at.is_some() || !self.awaits_ready()
    }
}

/// What the notices of a child that started at `started` mean at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Nothing to do; look again at `next`, if anything can change by then.
    Fine { next: Option<BootInstant> },
    /// `WATCHDOG=trigger`.
    Triggered,
    /// No `WATCHDOG=1` for `silent` (at least `--watchdog`).
    WatchdogMissed { silent: Duration },
    /// No `READY=1` after `waited` (at least `--ready-timeout`, or the extension asked for).
    NotReady { waited: Duration },
    /// `STOPPING=1` `waited` ago (at least the stop timeout, or the extension asked for since),
    /// and the child still runs.
    StillStopping { waited: Duration },
}

/// The rules of the module doc, in order: a trigger, then readiness, then the watchdog.
pub fn judge(n: &Notices, e: Expectations, started: BootInstant, now: BootInstant) -> Judgement {
    if n.trigger_at.is_some() {
        return Judgement::Triggered;
    }
    let mut next: Option<BootInstant> = None;
    if let (Some(timeout), None) = (e.ready_timeout, n.ready_at) {
        let extended = n.extension.map(Extension::until);
        let ready_by = (started + timeout).max(extended.unwrap_or(started));
        if now >= ready_by {
            return Judgement::NotReady {
                waited: now.saturating_duration_since(started),
            };
        }
        next = Some(ready_by);
    }
    let armed_at = match e.ready_timeout {
        Some(_) => n.ready_at,
        None => Some(started),
    };
    if let (Some(_), Some(stopping_at), Some(limit)) = (e.watchdog, n.stopping_at, e.stop_timeout) {
        let extended = n
            .extension
            .filter(|x| x.at >= stopping_at)
            .map(Extension::until);
        let gone_by = (stopping_at + limit).max(extended.unwrap_or(stopping_at));
        if now >= gone_by {
            return Judgement::StillStopping {
                waited: now.saturating_duration_since(stopping_at),
            };
        }
        next = Some(next.map_or(gone_by, |n| n.min(gone_by)));
    }
    if let (Some(watchdog), Some(armed_at), None) = (e.watchdog, armed_at, n.stopping_at) {
        let fed = n.last_ping.map_or(armed_at, |p| p.max(armed_at));
        let missed_at = fed + watchdog;
        if now >= missed_at {
            return Judgement::WatchdogMissed {
                silent: now.saturating_duration_since(fed),
            };
        }
        next = Some(next.map_or(missed_at, |n| n.min(missed_at)));
    }
    Judgement::Fine { next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn messages_change_the_notices_once_each() {
        let t0 = BootInstant::now();
        let mut n = Notices::default();
        let msg = |f: fn(&mut Message)| {
            let mut m = Message::default();
            f(&mut m);
            m
        };
        let once = Changed {
            at_once: true,
            shown: false,
        };
        let shown = Changed {
            at_once: false,
            shown: true,
        };
        // (message, at, what changed)
        let rows = [
            (msg(|m| m.watchdog = true), ms(1), Changed::default()),
            (msg(|m| m.ready = true), ms(2), once),
            (msg(|m| m.ready = true), ms(3), Changed::default()),
            (msg(|m| m.status = Some("a".into())), ms(4), shown),
            (
                msg(|m| m.status = Some("a".into())),
                ms(5),
                Changed::default(),
            ),
            (msg(|m| m.status = Some("b".into())), ms(6), shown),
            (msg(|m| m.extend_timeout = Some(ms(100))), ms(7), shown),
            (msg(|m| m.stopping = true), ms(8), once),
            (msg(|m| m.trigger = true), ms(9), once),
            (msg(|m| m.trigger = true), ms(10), Changed::default()),
            (msg(|m| m.watchdog = true), ms(11), Changed::default()),
            (Message::default(), ms(12), Changed::default()),
        ];
        for (m, at, want) in rows {
            assert_eq!(n.apply(&m, t0 + at), want, "{m:?}");
        }
        assert_eq!(n.ready_at, Some(t0 + ms(2)));
        assert_eq!(n.status.as_deref(), Some("b"));
        assert_eq!(n.stopping_at, Some(t0 + ms(8)));
        assert_eq!(n.trigger_at, Some(t0 + ms(9)));
        assert_eq!(n.last_ping, Some(t0 + ms(11)));
        assert_eq!(n.extension.map(Extension::until), Some(t0 + ms(107)));
        assert_eq!(n.accepted, 11);
    }

    /// Every `ROLE=` counts and is numbered (the child may say the same role again, for a new
    /// demotion); only one read after the mark, and the last one, confirms.
    #[test]
    fn a_role_is_confirmed_only_by_the_last_role_message_read_after_the_mark() {
        let t0 = BootInstant::now();
        let role = |r| Message {
            role: Some(r),
            ..Message::default()
        };
        let mut n = Notices::default();
        assert_eq!(confirms(&n, Role::Standby, 0), None);
        // Its start-up confirmation, then the mark taken for a demotion.
        assert!(n.apply(&role(Role::Standby), t0 + ms(1)).at_once);
        let mark = n.role_messages;
        assert_eq!(
            confirms(&n, Role::Standby, mark),
            None,
            "sent before the mark"
        );
        assert_eq!(confirms(&n, Role::Standby, 0), Some(t0 + ms(1)));
        assert!(n.apply(&role(Role::Leader), t0 + ms(2)).at_once);
        assert_eq!(confirms(&n, Role::Standby, mark), None, "it says it leads");
        assert_eq!(confirms(&n, Role::Leader, mark), Some(t0 + ms(2)));
        assert!(n.apply(&role(Role::Standby), t0 + ms(3)).at_once);
        assert_eq!(confirms(&n, Role::Standby, mark), Some(t0 + ms(3)));
        assert_eq!(
            confirms(&n, Role::Leader, mark),
            None,
            "the last one counts"
        );
        assert_eq!(n.role_messages, 3);
        assert_eq!(n.accepted, 3);
    }

    /// A `ROLE=leader` after the mark stays a confirmed promotion when a `ROLE=standby` follows
    /// before anyone looks; one before the mark confirms nothing.
    #[test]
    fn a_promotion_is_confirmed_by_any_role_leader_after_the_mark() {
        let t0 = BootInstant::now();
        let role = |r| Message {
            role: Some(r),
            ..Message::default()
        };
        let mut n = Notices::default();
        assert_eq!(led(&n, 0), None);
        n.apply(&role(Role::Leader), t0 + ms(1));
        let mark = n.role_messages;
        assert_eq!(led(&n, mark), None, "sent before the mark");
        n.apply(&role(Role::Standby), t0 + ms(2));
        assert_eq!(led(&n, mark), None, "still none after the mark");
        n.apply(&role(Role::Leader), t0 + ms(3));
        n.apply(&role(Role::Standby), t0 + ms(4));
        let leader = led(&n, mark).expect("a ROLE=leader after the mark");
        assert_eq!((leader.number, leader.at), (3, t0 + ms(3)));
        assert_eq!(
            confirms(&n, Role::Leader, mark),
            None,
            "the last one says standby"
        );
        assert_eq!(confirms(&n, Role::Standby, leader.number), Some(t0 + ms(4)));
    }

    #[test]
    #[rustfmt::skip]
    fn what_the_notices_mean() {
        let t0 = BootInstant::now();
        let at = |m: u64| Some(t0 + ms(m));
        let n = |ready: Option<BootInstant>, ping: Option<BootInstant>| Notices {
            ready_at: ready,
            last_ping: ping,
            ..Notices::default()
        };
        let wd = |w: u64| Expectations { watchdog: Some(ms(w)), ready_timeout: None, stop_timeout: None };
        let both = |w: u64, r: u64| Expectations { watchdog: Some(ms(w)), ready_timeout: Some(ms(r)), stop_timeout: None };
        let ready_only = |r: u64| Expectations { watchdog: None, ready_timeout: Some(ms(r)), stop_timeout: None };
        let fine = |next: Option<BootInstant>| Judgement::Fine { next };
        let missed = |silent: u64| Judgement::WatchdogMissed { silent: ms(silent) };
        let not_ready = |waited: u64| Judgement::NotReady { waited: ms(waited) };
        // ((notices, expectations, now after start), judgement)
        let rows = [
            // Nothing expected: nothing to judge.
            ((n(None, None), Expectations::default(), 99_999), fine(None)),
            // The watchdog from the start, restarted by each heartbeat.
            ((n(None, None), wd(500), 499), fine(at(500))),
            ((n(None, None), wd(500), 500), missed(500)),
            ((n(None, at(300)), wd(500), 799), fine(at(800))),
            ((n(None, at(300)), wd(500), 900), missed(600)),
            // A ready child without --ready-timeout: READY=1 does not restart the watchdog...
            ((n(at(100), None), wd(500), 600), missed(600)),
            // ... with it, the watchdog runs from READY=1, and waits for it.
            ((n(None, None), both(500, 3_000), 2_999), fine(at(3_000))),
            ((n(None, None), both(500, 3_000), 3_000), not_ready(3_000)),
            ((n(at(2_000), None), both(500, 3_000), 2_400), fine(at(2_500))),
            ((n(at(2_000), None), both(500, 3_000), 2_500), missed(500)),
            // A heartbeat before READY=1 counts from READY=1.
            ((n(at(2_000), at(1_000)), both(500, 3_000), 2_499), fine(at(2_500))),
            // Readiness alone.
            ((n(None, None), ready_only(1_000), 10), fine(at(1_000))),
            ((n(None, None), ready_only(1_000), 1_000), not_ready(1_000)),
            ((n(at(900), None), ready_only(1_000), 99_999), fine(None)),
        ];
        crate::process::assert_table(rows, |(notices, e, now)| judge(&notices, e, t0, t0 + ms(now)));
    }

    #[test]
    fn a_trigger_wins_stopping_rests_the_watchdog_for_the_stop_timeout_and_an_extension_waits_longer(
    ) {
        let t0 = BootInstant::now();
        let e = Expectations {
            watchdog: Some(ms(500)),
            ready_timeout: Some(ms(1_000)),
            stop_timeout: None,
        };
        let triggered = Notices {
            trigger_at: Some(t0),
            ready_at: Some(t0),
            ..Notices::default()
        };
        assert_eq!(judge(&triggered, e, t0, t0), Judgement::Triggered);
        assert_eq!(
            judge(&triggered, Expectations::default(), t0, t0),
            Judgement::Triggered
        );
        let stopping = Notices {
            ready_at: Some(t0),
            stopping_at: Some(t0 + ms(100)),
            ..Notices::default()
        };
        assert_eq!(
            judge(&stopping, e, t0, t0 + ms(60_000)),
            Judgement::Fine { next: None }
        );
        // With a stop timeout (the leader sets one with --watchdog): STOPPING=1 gives the child
        // that long to be gone, longer if it asks for more after STOPPING=1 (not before).
        let timed = Expectations {
            stop_timeout: Some(ms(2_000)),
            ..e
        };
        let still = |waited: u64| Judgement::StillStopping { waited: ms(waited) };
        let asked = |at: u64, asked: u64| Notices {
            extension: Some(Extension {
                at: t0 + ms(at),
                asked: ms(asked),
            }),
            ..stopping.clone()
        };
        // ((notices, expectations, now), judgement)
        let rows = [
            (
                (stopping.clone(), timed, 2_099),
                Judgement::Fine {
                    next: Some(t0 + ms(2_100)),
                },
            ),
            ((stopping.clone(), timed, 2_100), still(2_000)),
            // No heartbeat is needed meanwhile, and none saves it.
            (
                (
                    Notices {
                        last_ping: Some(t0 + ms(2_000)),
                        ..stopping.clone()
                    },
                    timed,
                    2_100,
                ),
                still(2_000),
            ),
            (
                (asked(1_000, 4_000), timed, 4_999),
                Judgement::Fine {
                    next: Some(t0 + ms(5_000)),
                },
            ),
            ((asked(1_000, 4_000), timed, 5_000), still(4_900)),
            ((asked(50, 60_000), timed, 2_100), still(2_000)),
            // Without --watchdog nothing is judged.
            (
                (
                    stopping.clone(),
                    Expectations {
                        watchdog: None,
                        ..timed
                    },
                    99_999,
                ),
                Judgement::Fine { next: None },
            ),
        ];
        crate::process::assert_table(rows, |(n, e, now)| judge(&n, e, t0, t0 + ms(now)));
        // EXTEND_TIMEOUT_USEC=5s at 800 ms: ready by 5.8 s, not 1 s.
        let extended = Notices {
            extension: Some(Extension {
                at: t0 + ms(800),
                asked: ms(5_000),
            }),
            ..Notices::default()
        };
        assert_eq!(
            judge(&extended, e, t0, t0 + ms(5_000)),
            Judgement::Fine {
                next: Some(t0 + ms(5_800))
            }
        );
        assert_eq!(
            judge(&extended, e, t0, t0 + ms(5_800)),
            Judgement::NotReady { waited: ms(5_800) }
        );
        // One asking for less than is left changes nothing.
        let short = Notices {
            extension: Some(Extension {
                at: t0,
                asked: ms(10),
            }),
            ..Notices::default()
        };
        assert_eq!(
            judge(&short, e, t0, t0 + ms(999)),
            Judgement::Fine {
                next: Some(t0 + ms(1_000))
            }
        );
        assert!(e.awaits_ready() && !e.ready(&short) && e.ready(&triggered));
        assert!(Expectations::default().ready(&short));
    }
}
