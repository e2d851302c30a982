//! The timing model: why the child is dead before etcd can hand leadership to anyone else.
//!
//! ```text
//!   sent ─────────── renew_deadline ───────────┬──── grace ────┬── margin ──┤
//!   (last acknowledged keepalive request sent)  stop_at         kill_at      safe_until
//!                                               stop signal     SIGKILL      = sent + ttl
//! ```
//!
//! * etcd refreshes a lease when it *receives* a keepalive, which is after we *sent* it. So the server
//!   cannot expire the lease before `safe_until = sent + ttl`, measured from the send instant of the
//!   last keepalive that was acknowledged (never the reply time: that is one round trip too late).
//! * `ttl` is the smaller of what we asked for and what the server granted.
//! * If no later keepalive is acknowledged by `stop_at = safe_until - grace - margin`, the supervisor
//!   sends the stop signal to the child's tree; at `kill_at = safe_until - margin` it sends SIGKILL.
//!   The child is dead, and reaped, before `safe_until`, so before any standby can win.
//! * `margin` absorbs what the argument above ignores: the rate difference between our clock and the
//!   server's over one TTL (ppm, so microseconds), SIGKILL delivery and reaping (milliseconds), and
//!   scheduling delays of the supervisor itself.
//! * The retry schedule ([`crate::election::session`]): a keepalive goes out every `keepalive_interval` (I).
//!   Each *attempt* (reconnecting, re-authenticating, opening the stream and getting the reply) is
//!   bounded by `attempt_timeout` = I/2 (R); after a failed attempt the next one starts R after
//!   the failed one started. So after the last acknowledged keepalive sent at `sent`:
//!   - one lost reply: the next attempt starts at `sent + I + R` and is answered by `sent + I + 2R`
//!     = `sent + 2I`. The rule `2 × keepalive_interval < renew_deadline` makes that earlier than
//!     `stop_at`: **one lost keepalive never stops the child**.
//!   - an outage of length O at the worst phase, beginning just as the keepalive after `sent` goes
//!     out (so that one is lost too, and the last acknowledged one is a whole interval old): after
//!     the outage ends, one attempt may still wait for its timeout (R) and the next is answered
//!     within R. So any outage with `O ≤ renew_deadline − I − 2R = renew_deadline − 2I` is survived
//!     at any phase ([`TimingModel::tolerated_outage`]: 4 s at the defaults, measured by
//!     `cargo bench --bench compare` with a black hole that drops every byte).
//! * A slow link is not a dead one: an attempt not answered within R stays in flight while the
//!   next one starts on schedule, and its late reply counts from its send; round trips are
//!   measured and, once the link proves slower than R, a reply is awaited longer before the next
//!   attempt starts. Never longer than [`TimingModel::slowest_attempt`], so one lost keepalive
//!   still never stops the child; the outage survived meanwhile is
//!   [`TimingModel::tolerated_outage_on_a_slow_link`].
//! * Hence the default interval is a tenth of the TTL: at TTL 10 s a keepalive a second, attempts
//!   bounded by half a second, and the 4 s outage an etcd leader election needs.
//! * Keepalives are spread: the first on a new lease or a reopened stream waits a random time
//!   between 0.1 I and I ([`TimingModel::first_jittered`]), each later one between 0.9 I and I
//!   ([`TimingModel::jittered`]), so replicas started together (or reconnected together after an
//!   etcd restart) take random phases at once and do not reach etcd in bursts. Never more than I,
//!   so everything above holds as written.
//! * All instants are on [`BootInstant`], which counts suspend.
//! * Two leases, one deadline: each replica holds a candidacy lease and a tree lease, granted
//!   together and renewed on the same schedule ([`crate::election::session`]); `safe_until` is the
//!   earlier of the two, so everything above holds for both. A crashed replica's leases both
//!   expire within the TTL of their last keepalive that reached etcd, so a takeover after a crash
//!   waits for the later one, which is no later.
//! * [`TimingModel::figures`] turns the model into the worst cases an operator plans with
//!   (`singleton-exec timing`, and the start-up log at debug level).
//!
//! What this cannot protect against: a supervisor that is itself frozen (SIGSTOP, a VM paused for
//! longer than the TTL) cannot kill anything. The fencing revision handed to the child is the defence
//! there; see docs/timing.md.

use std::time::Duration;

use crate::core::clock::BootInstant;

/// etcd's smallest lease TTL with its default election timeout (a request for 1 s is granted 2 s).
pub const MIN_TTL: Duration = Duration::from_secs(2);
/// Below this the margin cannot cover SIGKILL delivery and reaping under load.
pub const MIN_MARGIN: Duration = Duration::from_millis(100);
/// Keepalives more often than this only load etcd.
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_millis(50);
/// How often etcd looks for expired leases (its lessor checks every 500 ms): a lease is revoked,
/// and its keys deleted, up to this long after it expired.
pub const ETCD_EXPIRY_CHECK: Duration = Duration::from_millis(500);
/// The longest duration any option takes (humantime's year, 365.25 days), `--ttl` included.
/// Far beyond any useful setting, and small enough that every sum and product the program forms
/// from validated durations (a deadline on the boot clock, `ttl * 3 / 10`, `2 x keepalive
/// interval`, the health check's worst case) is exact: no overflow, no panic.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);

/// The worst cases of one [`TimingModel`], each derived from it (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// The longest etcd outage, starting at any phase, after which the child still runs.
    pub tolerated_outage: Duration,
    /// From the leader's host crashing (or being cut off from etcd) until a standby can take
    /// over: its leases expire a TTL after their last keepalive reached etcd, and etcd revokes
    /// them at its next expiry check.
    pub takeover_after_crash: Duration,
    /// From a graceful stop (SIGTERM, a step-down) until a standby can take over: the child's
    /// stop (stop signal, then SIGKILL after `grace`); the handoff after the tree is gone is a
    /// few etcd round trips (milliseconds), not counted here.
    pub takeover_after_graceful_stop: Duration,
    /// Measured from the send of the last acknowledged keepalive, when no later one is
    /// acknowledged: the stop signal to the child's tree (the renew deadline), ...
    pub stop_after_keepalive: Duration,
    /// ... SIGKILL to the tree, ...
    pub kill_after_keepalive: Duration,
    /// ... and the earliest moment etcd may expire the lease (the TTL).
    pub expiry_after_keepalive: Duration,
    /// One lost keepalive: its retry is answered by then, after the send of the last
    /// acknowledged one; always before the stop.
    pub one_lost_keepalive_recovered_by: Duration,
    /// On a link slower than the attempt timeout, the longest a reply or a reconnection is
    /// awaited ([`TimingModel::slowest_attempt`]).
    pub slowest_attempt: Duration,
    /// The outage survived at any phase on such a link.
    pub tolerated_outage_on_a_slow_link: Duration,
}

/// A validated set of durations. Construct it with [`TimingModel::new`], which enforces the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingModel {
    /// Lease time-to-live we request from etcd.
    pub ttl: Duration,
    /// How often a keepalive is sent while all is well.
    pub keepalive_interval: Duration,
    /// Time between the stop signal and SIGKILL.
    pub grace: Duration,
    /// Slack kept between SIGKILL and the earliest instant the server may expire the lease.
    pub margin: Duration,
}

/// Durations the user gave; `None` takes the default derived from the TTL.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimingInput {
    pub ttl: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub grace: Option<Duration>,
    pub margin: Option<Duration>,
}

/// A rule of the timing model that the given durations break. The message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("--ttl {} is below etcd's minimum lease TTL of 2s (rule: ttl >= 2s)", fmt(*.0))]
    TtlTooShort(Duration),
    #[error("--ttl {} is not a whole number of seconds (rule: etcd leases have 1s resolution)", fmt(*.0))]
    TtlNotWholeSeconds(Duration),
    #[error("--ttl {} is above the limit of {limit} (rule: ttl <= {limit})", fmt(*.0), limit = fmt(MAX_DURATION))]
    TtlTooLong(Duration),
    #[error("--margin {} is below 100ms (rule: margin >= 100ms, to cover SIGKILL delivery and reaping)", fmt(*.0))]
    MarginTooSmall(Duration),
    #[error("--keepalive-interval {} is below 50ms (rule: keepalive interval >= 50ms)", fmt(*.0))]
    KeepaliveTooShort(Duration),
    #[error(
        "--grace {grace} and --margin {margin} do not fit in --ttl {ttl} \
         (rule: grace + margin < ttl, so that the child is dead before the lease can expire)",
        grace = fmt(*.grace), margin = fmt(*.margin), ttl = fmt(*.ttl)
    )]
    GraceDoesNotFit {
        ttl: Duration,
        grace: Duration,
        margin: Duration,
    },
    #[error(
        "--keepalive-interval {keepalive} is too long for the renew deadline {renew} = ttl - grace - margin \
         (rule: 2 x keepalive interval < ttl - grace - margin, so one lost keepalive never stops the child: \
         its retry, at most half an interval later, must be answered before the deadline)",
        keepalive = fmt(*.keepalive), renew = fmt(*.renew)
    )]
    KeepaliveTooLong {
        keepalive: Duration,
        renew: Duration,
    },
}

impl TimingError {
    /// The options the rule broken is about.
    pub fn options(&self) -> &'static [&'static str] {
        match self {
            TimingError::TtlTooShort(_)
            | TimingError::TtlNotWholeSeconds(_)
            | TimingError::TtlTooLong(_) => &["--ttl"],
            TimingError::MarginTooSmall(_) => &["--margin"],
            TimingError::KeepaliveTooShort(_) => &["--keepalive-interval"],
            TimingError::GraceDoesNotFit { .. } => &["--ttl", "--grace", "--margin"],
            TimingError::KeepaliveTooLong { .. } => {
                &["--keepalive-interval", "--ttl", "--grace", "--margin"]
            }
        }
    }
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl TimingModel {
    /// Default TTL: long enough to ride out an etcd leader election, short enough for a crash failover.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

    /// Fills in defaults (derived from the TTL: grace 30 %, margin 10 %, keepalive 10 %) and checks
    /// every rule. Any input is answered, never a panic: the TTL is bounded first (so the
    /// defaults cannot overflow), and the rules on the other durations, which may be as large as
    /// the parser takes, are checked without overflowing; once they hold, all are below the TTL.
    pub fn new(input: TimingInput) -> Result<Self, TimingError> {
        let ttl = input.ttl.unwrap_or(Self::DEFAULT_TTL);
        if ttl < MIN_TTL {
            return Err(TimingError::TtlTooShort(ttl));
        }
        if ttl > MAX_DURATION {
            return Err(TimingError::TtlTooLong(ttl));
        }
        if ttl.subsec_nanos() != 0 {
            return Err(TimingError::TtlNotWholeSeconds(ttl));
        }
        let grace = input.grace.unwrap_or(ttl * 3 / 10);
        let margin = input.margin.unwrap_or(ttl / 10);
        let keepalive_interval = input.keepalive_interval.unwrap_or(ttl / 10);
        if margin < MIN_MARGIN {
            return Err(TimingError::MarginTooSmall(margin));
        }
        if keepalive_interval < MIN_KEEPALIVE_INTERVAL {
            return Err(TimingError::KeepaliveTooShort(keepalive_interval));
        }
        // A sum too large for a `Duration` does not fit in the TTL either.
        if grace.checked_add(margin).is_none_or(|g| g >= ttl) {
            return Err(TimingError::GraceDoesNotFit { ttl, grace, margin });
        }
        let model = TimingModel {
            ttl,
            keepalive_interval,
            grace,
            margin,
        };
        let renew = model.renew_deadline();
        if keepalive_interval.checked_mul(2).is_none_or(|k| k >= renew) {
            return Err(TimingError::KeepaliveTooLong {
                keepalive: keepalive_interval,
                renew,
            });
        }
        Ok(model)
    }

    /// How long after sending the last acknowledged keepalive the stop sequence begins.
    pub fn renew_deadline(&self) -> Duration {
        self.ttl - self.grace - self.margin
    }

    /// The TTL our own deadline uses: the smaller of requested and granted.
    pub fn effective_ttl(&self, granted: Duration) -> Duration {
        self.ttl.min(granted)
    }

    /// The lease cannot expire on the server before this, given when the keepalive was sent.
    pub fn safe_until(&self, sent: BootInstant, granted: Duration) -> BootInstant {
        sent + self.effective_ttl(granted)
    }

    /// When the stop sequence must begin if nothing newer is acknowledged.
    pub fn stop_at(&self, safe_until: BootInstant) -> BootInstant {
        safe_until - self.grace - self.margin
    }

    /// When the child's tree gets SIGKILL at the latest.
    pub fn kill_at(&self, safe_until: BootInstant) -> BootInstant {
        safe_until - self.margin
    }

    /// The bound of one keepalive attempt (connect, authenticate, open the stream, get the reply),
    /// and the spacing of attempts after a failure.
    pub fn attempt_timeout(&self) -> Duration {
        self.keepalive_interval / 2
    }

    /// The longest etcd outage, starting at any phase, that cannot stop the child: at worst it
    /// begins as a keepalive goes out (so the last acknowledged one is an interval old), and after
    /// it ends one attempt may still be waiting for its timeout, and the next must be answered.
    pub fn tolerated_outage(&self) -> Duration {
        self.renew_deadline() - self.keepalive_interval - self.attempt_timeout() * 2
    }

    /// The wait before the next keepalive: `keepalive_interval` shortened by up to a tenth, by
    /// `u` in [0, 1) (a random draw), never longer than the interval.
    pub fn jittered(&self, u: f64) -> Duration {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.keepalive_interval.mul_f64(1.0 - JITTER * u)
    }

    /// The wait before the first keepalive on a new lease or a reopened stream: anywhere from a
    /// tenth of the interval to the whole of it, by `u` in [0, 1), so replicas that start (or
    /// reconnect) together take random phases at once. Never longer than the interval.
    pub fn first_jittered(&self, u: f64) -> Duration {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.keepalive_interval.mul_f64(1.0 - 0.9 * u)
    }

    /// When the retry after one lost keepalive is answered at the latest, measured from the send of
    /// the last acknowledged one (see the module doc); always before the renew deadline.
    pub fn one_lost_keepalive_recovered_by(&self) -> Duration {
        self.keepalive_interval + self.attempt_timeout() * 2
    }

    /// The longest any attempt waits once the link has shown itself slow: round trips longer
    /// than [`Self::attempt_timeout`] are still answered (late replies count, from their send), and
    /// the bound grows with the measured round trip ([`crate::election::session`]) up to this:
    /// a third of what is left of the renew deadline after one interval, and never less than
    /// the attempt timeout. So one lost keepalive still never stops the child
    /// (`I + 2 × this < renew deadline`), as long as a fresh connection (a TCP handshake and a
    /// round trip, more with TLS or a password) is answered within this.
    pub fn slowest_attempt(&self) -> Duration {
        let third = (self.renew_deadline() - self.keepalive_interval) / 3;
        self.attempt_timeout().max(third)
    }

    /// The outage survived at any phase while the link is as slow as [`Self::slowest_attempt`]
    /// allows: the reasoning of [`Self::tolerated_outage`] with that bound instead of the
    /// attempt timeout.
    pub fn tolerated_outage_on_a_slow_link(&self) -> Duration {
        self.renew_deadline()
            .saturating_sub(self.keepalive_interval + self.slowest_attempt() * 2)
    }

    /// The worst cases an operator plans with, all from this model (no measurement).
    pub fn figures(&self) -> Figures {
        Figures {
            tolerated_outage: self.tolerated_outage(),
            takeover_after_crash: self.ttl + ETCD_EXPIRY_CHECK,
            takeover_after_graceful_stop: self.grace,
            stop_after_keepalive: self.renew_deadline(),
            kill_after_keepalive: self.ttl - self.margin,
            expiry_after_keepalive: self.ttl,
            one_lost_keepalive_recovered_by: self.one_lost_keepalive_recovered_by(),
            slowest_attempt: self.slowest_attempt(),
            tolerated_outage_on_a_slow_link: self.tolerated_outage_on_a_slow_link(),
        }
    }
}

/// The largest share of the keepalive interval taken off by [`TimingModel::jittered`].
const JITTER: f64 = 0.1;

/// A small random source for jitter (xorshift64*), seeded from the pid and the boot clock: no
/// security need, only that replicas differ.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Jitter {
        let seed =
            (std::process::id() as u64).rotate_left(32) ^ BootInstant::now().as_nanos() as u64;
        Jitter(seed | 1)
    }

    /// A draw in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl std::fmt::Display for TimingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ttl={} keepalive_interval={} renew_deadline={} grace={} margin={}",
            fmt(self.ttl),
            fmt(self.keepalive_interval),
            fmt(self.renew_deadline()),
            fmt(self.grace),
            fmt(self.margin)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_shortens_the_interval_by_at_most_a_tenth_never_lengthens_it() {
        let t = TimingModel::new(TimingInput {
            ttl: Some(Duration::from_secs(10)),
            keepalive_interval: None,
            grace: None,
            margin: None,
        })
        .unwrap();
        let i = t.keepalive_interval;
        for (u, want) in [
            (0.0, i),
            (0.5, i.mul_f64(0.95)),
            (0.999_999, i.mul_f64(0.900_000_1)),
        ] {
            let got = t.jittered(u);
            assert!(
                got.abs_diff(want) < Duration::from_micros(1),
                "{u}: {got:?}"
            );
        }
        for bad in [f64::NAN, -1.0, 7.0] {
            let got = t.jittered(bad);
            assert!(got <= i && got >= i.mul_f64(0.9), "{bad}: {got:?}");
            let got = t.first_jittered(bad);
            assert!(got <= i && got >= i.mul_f64(0.1), "{bad}: {got:?}");
        }
        assert_eq!(t.first_jittered(0.0), i);
        assert!(t.first_jittered(0.999_999).abs_diff(i.mul_f64(0.1)) < Duration::from_micros(1));
        // Draws are in [0, 1) and spread: 1000 of them fill every tenth of the range.
        let mut j = Jitter::new();
        let mut tenths = [0usize; 10];
        for _ in 0..1000 {
            let u = j.next();
            assert!((0.0..1.0).contains(&u), "{u}");
            tenths[(u * 10.0) as usize] += 1;
        }
        assert!(tenths.iter().all(|&n| n > 50), "{tenths:?}");
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn defaults_tolerate_an_etcd_election() {
        let t = TimingModel::new(TimingInput::default()).unwrap();
        assert_eq!(t.ttl, Duration::from_secs(10));
        assert_eq!(t.grace, Duration::from_secs(3));
        assert_eq!(t.margin, Duration::from_secs(1));
        assert_eq!(t.keepalive_interval, Duration::from_secs(1));
        assert_eq!(t.renew_deadline(), Duration::from_secs(6));
        // The promise of docs/timing.md.
        assert_eq!(t.tolerated_outage(), Duration::from_secs(4));
    }

    #[test]
    fn the_rule_matches_the_retry_schedule() {
        // The configuration that used to be accepted and stopped the child on one lost keepalive.
        let e = TimingModel::new(TimingInput {
            ttl: secs(10),
            keepalive_interval: secs(3),
            ..Default::default()
        });
        assert!(
            matches!(e, Err(TimingError::KeepaliveTooLong { .. })),
            "{e:?}"
        );
        // Every accepted model recovers from one lost keepalive before the deadline, and tolerates
        // a positive outage.
        for ttl in 2..=60 {
            for ka_ms in (50..=ttl * 1000).step_by(50) {
                let Ok(t) = TimingModel::new(TimingInput {
                    ttl: secs(ttl),
                    keepalive_interval: Some(Duration::from_millis(ka_ms)),
                    ..Default::default()
                }) else {
                    continue;
                };
                assert!(
                    t.one_lost_keepalive_recovered_by() < t.renew_deadline(),
                    "{t}"
                );
                assert!(t.tolerated_outage() > Duration::ZERO, "{t}");
                // However slow the link has been, one lost keepalive is still retried and
                // answered before the deadline, and the patience never shrinks below the model's.
                assert!(
                    t.keepalive_interval + t.slowest_attempt() * 2 < t.renew_deadline(),
                    "{t}"
                );
                assert!(t.slowest_attempt() >= t.attempt_timeout(), "{t}");
                assert!(
                    t.tolerated_outage_on_a_slow_link() <= t.tolerated_outage(),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn defaults_scale_with_ttl() {
        for ttl in [2, 3, 5, 10, 30, 600] {
            let t = TimingModel::new(TimingInput {
                ttl: secs(ttl),
                ..Default::default()
            });
            assert!(t.is_ok(), "ttl {ttl}: {t:?}");
        }
    }

    #[test]
    fn rules_are_named() {
        let e = TimingModel::new(TimingInput {
            ttl: secs(0),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e, TimingError::TtlTooShort(Duration::ZERO));
        assert!(e.to_string().contains("ttl >= 2s"));
        let e = TimingModel::new(TimingInput {
            ttl: Some(Duration::from_millis(2500)),
            ..Default::default()
        });
        assert!(matches!(e, Err(TimingError::TtlNotWholeSeconds(_))));
        let e = TimingModel::new(TimingInput {
            ttl: secs(10),
            grace: secs(9),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("grace + margin < ttl"), "{e}");
        let e = TimingModel::new(TimingInput {
            ttl: secs(10),
            grace: secs(7),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("2 x keepalive interval"), "{e}");
        let e = TimingModel::new(TimingInput {
            margin: Some(Duration::from_millis(10)),
            ..Default::default()
        });
        assert!(matches!(e, Err(TimingError::MarginTooSmall(_))));
    }

    /// Durations up to the parser's maximum are answered with the rule they break, never a
    /// panic; the limit itself is a valid TTL. One row: ttl, keepalive interval, grace, margin
    /// (`None`: the default), then the expected result.
    #[test]
    fn out_of_range_durations_break_a_rule_and_never_overflow() {
        let max = Some(Duration::MAX);
        let huge = secs(u64::MAX / 2);
        let year = Some(MAX_DURATION);
        type Row = (
            Option<Duration>,
            Option<Duration>,
            Option<Duration>,
            Option<Duration>,
            &'static str,
        );
        let rows: &[Row] = &[
            (max, None, None, None, "TtlTooLong"),
            (huge, None, None, None, "TtlTooLong"),
            (secs(31_557_601), None, None, None, "TtlTooLong"),
            (year, None, None, None, "Ok"),
            (year, secs(1), max, None, "GraceDoesNotFit"),
            (year, secs(1), None, max, "GraceDoesNotFit"),
            (year, secs(1), max, max, "GraceDoesNotFit"),
            (year, max, None, None, "KeepaliveTooLong"),
            (year, huge, None, None, "KeepaliveTooLong"),
            (secs(10), max, None, None, "KeepaliveTooLong"),
            (secs(10), None, max, None, "GraceDoesNotFit"),
        ];
        for (i, &(ttl, keepalive_interval, grace, margin, want)) in rows.iter().enumerate() {
            let got = TimingModel::new(TimingInput {
                ttl,
                keepalive_interval,
                grace,
                margin,
            });
            let got = got.map_or_else(|e| format!("{e:?}"), |_| "Ok".to_owned());
            assert!(got.starts_with(want), "row {i}: {got}");
        }
        let e = TimingModel::new(TimingInput {
            ttl: max,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("above the limit of 1year"), "{e}");
    }

    /// The figures at the defaults are docs/timing.md's; for any accepted model they come in the order
    /// the safety argument needs, and match the deadlines the process thread is given.
    #[test]
    fn the_figures_follow_from_the_model() {
        let ms = Duration::from_millis;
        let f = TimingModel::new(TimingInput::default()).unwrap().figures();
        assert_eq!(
            f,
            Figures {
                tolerated_outage: ms(4_000),
                takeover_after_crash: ms(10_500),
                takeover_after_graceful_stop: ms(3_000),
                stop_after_keepalive: ms(6_000),
                kill_after_keepalive: ms(9_000),
                expiry_after_keepalive: ms(10_000),
                one_lost_keepalive_recovered_by: ms(2_000),
                // (6 s - 1 s) / 3, and what it leaves of the 4 s.
                slowest_attempt: Duration::from_nanos(1_666_666_666),
                tolerated_outage_on_a_slow_link: Duration::from_nanos(1_666_666_668),
            }
        );
        // --ttl 20s --keepalive-interval 500ms --grace 5s --margin 2s
        let t = TimingModel::new(TimingInput {
            ttl: secs(20),
            keepalive_interval: Some(ms(500)),
            grace: secs(5),
            margin: secs(2),
        })
        .unwrap();
        let f = t.figures();
        assert_eq!(
            (
                f.stop_after_keepalive,
                f.kill_after_keepalive,
                f.expiry_after_keepalive
            ),
            (ms(13_000), ms(18_000), ms(20_000))
        );
        assert_eq!(f.tolerated_outage, ms(12_000)); // 13 s - 2 x 0.5 s
        assert_eq!(f.one_lost_keepalive_recovered_by, ms(1_000));
        assert_eq!(f.takeover_after_crash, ms(20_500));
        assert_eq!(f.takeover_after_graceful_stop, ms(5_000));
        for ttl in [2, 3, 10, 60, 3600] {
            let t = TimingModel::new(TimingInput {
                ttl: secs(ttl),
                ..Default::default()
            })
            .unwrap();
            let f = t.figures();
            let sent = BootInstant::now();
            let safe = t.safe_until(sent, t.ttl);
            assert_eq!(sent + f.stop_after_keepalive, t.stop_at(safe), "{t}");
            assert_eq!(sent + f.kill_after_keepalive, t.kill_at(safe), "{t}");
            assert!(f.tolerated_outage < f.stop_after_keepalive, "{t}");
            assert!(
                f.one_lost_keepalive_recovered_by < f.stop_after_keepalive,
                "{t}"
            );
            assert!(f.stop_after_keepalive < f.kill_after_keepalive, "{t}");
            assert!(f.kill_after_keepalive < f.expiry_after_keepalive, "{t}");
            assert!(f.expiry_after_keepalive < f.takeover_after_crash, "{t}");
        }
    }

    #[test]
    fn deadlines_order_and_use_the_smaller_ttl() {
        let t = TimingModel::new(TimingInput::default()).unwrap();
        let sent = BootInstant::now();
        // The server granted more than we asked: our deadline keeps the smaller one.
        let safe = t.safe_until(sent, Duration::from_secs(30));
        assert_eq!(safe, sent + Duration::from_secs(10));
        // The server granted less: we follow it.
        assert_eq!(
            t.safe_until(sent, Duration::from_secs(5)),
            sent + Duration::from_secs(5)
        );
        let stop = t.stop_at(safe);
        let kill = t.kill_at(safe);
        assert!(stop < kill && kill < safe);
        assert_eq!(stop, sent + t.renew_deadline());
        assert_eq!(kill + t.margin, safe);
    }
}
