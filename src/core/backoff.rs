//! The one backoff: every retry in the program (a lease grant, a campaign, a watch stream, a
//! restarted child, the subcommands' reads) pauses by it. The pause doubles from `min` to `max`;
//! when it goes back to `min` is the caller's [`Reset`] rule, a parameter rather than a copy.
//!
//! Invariants (tested for every schedule below and a sweep of others): every pause lies in
//! `[min, max]`, pauses never shrink until a reset, and the pause after a reset is `min`.

use std::time::Duration;

/// When a backoff starts over from its minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// After any success: the thing retried answered, so the next failure is a new one.
    OnSuccess,
    /// Only after what was retried ran this long (a child that crashes at once must not be
    /// restarted at the minimum pause for ever).
    AfterRunning(Duration),
}

/// A schedule of pauses between attempts: doubling from `min`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub min: Duration,
    pub max: Duration,
    pub reset: Reset,
}

impl Schedule {
    /// Calls to etcd from a replica: short enough that a standby is back in the queue soon after
    /// an etcd outage ends.
    pub const ETCD: Schedule = Schedule {
        min: Duration::from_millis(200),
        max: Duration::from_secs(2),
        reset: Reset::OnSuccess,
    };
    /// A subcommand waiting on etcd for a person: quicker, since nothing else waits on it.
    pub const SUBCOMMAND: Schedule = Schedule {
        min: Duration::from_millis(100),
        max: Duration::from_secs(1),
        reset: Reset::OnSuccess,
    };
    /// `--on-child-exit restart`: a child that ran 10 s counts as having started well.
    pub const RESTART: Schedule = Schedule {
        min: Duration::from_millis(500),
        max: Duration::from_secs(30),
        reset: Reset::AfterRunning(Duration::from_secs(10)),
    };

    pub fn start(self) -> Backoff {
        Backoff {
            schedule: self,
            next: self.min,
        }
    }
}

/// The state of one retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    schedule: Schedule,
    next: Duration,
}

impl Backoff {
    /// The pause before the next attempt; the one after it is twice as long, up to `max`.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next.clamp(self.schedule.min, self.schedule.max);
        self.next = pause.saturating_mul(2).min(self.schedule.max);
        pause
    }

    /// An attempt succeeded, and what it started ran for `ran_for` (zero for a call that only
    /// answered): starts over from `min` if the reset rule says so.
    pub fn succeeded(&mut self, ran_for: Duration) {
        let reset = match self.schedule.reset {
            Reset::OnSuccess => true,
            Reset::AfterRunning(enough) => ran_for >= enough,
        };
        if reset {
            self.next = self.schedule.min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pauses(b: &mut Backoff, n: usize) -> Vec<u64> {
        (0..n).map(|_| b.next_pause().as_millis() as u64).collect()
    }

    #[test]
    fn each_schedule_doubles_to_its_cap() {
        let rows: [(Schedule, &[u64]); 3] = [
            (Schedule::ETCD, &[200, 400, 800, 1600, 2000, 2000]),
            (Schedule::SUBCOMMAND, &[100, 200, 400, 800, 1000, 1000]),
            (
                Schedule::RESTART,
                &[500, 1000, 2000, 4000, 8000, 16000, 30000, 30000],
            ),
        ];
        for (schedule, want) in rows {
            let mut b = schedule.start();
            assert_eq!(pauses(&mut b, want.len()), want, "{schedule:?}");
        }
    }

    #[test]
    fn the_reset_rule_decides_when_to_start_over() {
        // (rule, ran for, pause after the reset attempt)
        let rows = [
            (Reset::OnSuccess, ms(0), 100),
            (Reset::OnSuccess, ms(5), 100),
            (Reset::AfterRunning(ms(1000)), ms(999), 800),
            (Reset::AfterRunning(ms(1000)), ms(1000), 100),
            (Reset::AfterRunning(ms(1000)), ms(60_000), 100),
        ];
        for (reset, ran_for, want) in rows {
            let mut b = Schedule {
                min: ms(100),
                max: ms(10_000),
                reset,
            }
            .start();
            pauses(&mut b, 3); // 100, 200, 400
            b.succeeded(ran_for);
            assert_eq!(b.next_pause(), ms(want), "{reset:?} {ran_for:?}");
        }
    }

    #[test]
    fn pauses_stay_within_bounds_and_never_shrink_until_a_reset() {
        let mins = [0, 1, 3, 100, 999, 5_000];
        let maxes = [0, 1, 7, 100, 2_000, 30_000, u64::MAX / 4];
        for &min in &mins {
            for &max in &maxes {
                if max < min {
                    continue;
                }
                let s = Schedule {
                    min: ms(min),
                    max: ms(max),
                    reset: Reset::OnSuccess,
                };
                let mut b = s.start();
                let mut last = Duration::ZERO;
                for i in 0..80 {
                    let p = b.next_pause();
                    assert!(p >= s.min && p <= s.max, "{s:?} step {i}: {p:?}");
                    assert!(p >= last, "{s:?} step {i}: {p:?} after {last:?}");
                    last = p;
                }
                b.succeeded(Duration::ZERO);
                assert_eq!(b.next_pause(), s.min, "{s:?}");
            }
        }
    }
}
