//! A failure that repeats, told once: what a log says while something keeps failing.
//!
//! An etcd outage fails every request of every task (two keepalives, a campaign, a watch) every
//! few hundred milliseconds; a line for each would bury the few lines that matter. So a failure
//! of one kind is said once when it begins ([`Tell::First`]), then at most once per
//! [`SUMMARY_EVERY`] with how many failures so far and for how long ([`Tell::Still`]), and once
//! when it ends ([`Recovered`]). The state is one value per kind of failure, its decisions pure
//! functions of the instants the caller passes in, so they are tested on a made-up clock.

use std::time::{Duration, Instant};

/// The shortest time between two summaries of one ongoing failure.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// One kind of failure: whether it is ongoing, since when, and what was said of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repeated {
    ongoing: Option<Ongoing>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ongoing {
    /// The first failure.
    since: Instant,
    /// Failures so far, the first included.
    failures: u64,
    /// When the first failure or the last summary was said.
    told_at: Instant,
}

/// What to say of one more failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    /// The first of a run of failures: say what failed.
    First,
    /// Still failing, [`SUMMARY_EVERY`] or more after the last line said of it: `failures` so
    /// far (this one included), over `elapsed` since the first.
    Still { failures: u64, elapsed: Duration },
    /// Counted, not said.
    Quiet,
}

/// A run of failures ended: `failures` of them, over `elapsed` from the first to the success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub failures: u64,
    pub elapsed: Duration,
}

impl Repeated {
    /// One more failure, at `now`.
    pub fn failed(&mut self, now: Instant) -> Tell {
        let Some(run) = &mut self.ongoing else {
            self.ongoing = Some(Ongoing {
                since: now,
                failures: 1,
                told_at: now,
            });
            return Tell::First;
        };
        run.failures += 1;
        if now.saturating_duration_since(run.told_at) < SUMMARY_EVERY {
            return Tell::Quiet;
        }
        run.told_at = now;
        Tell::Still {
            failures: run.failures,
            elapsed: now.saturating_duration_since(run.since),
        }
    }

    /// A success at `now`: the end of the run of failures, if one was ongoing.
    pub fn succeeded(&mut self, now: Instant) -> Option<Recovered> {
        let run = self.ongoing.take()?;
        Some(Recovered {
            failures: run.failures,
            elapsed: now.saturating_duration_since(run.since),
        })
    }

    /// Whether a run of failures is ongoing.
    pub fn is_failing(&self) -> bool {
        self.ongoing.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up clock: one row per event, at a time in milliseconds after the start, failed
    /// (`F`) or succeeded (`S`), and what is said of it.
    #[test]
    fn a_run_of_failures_is_said_once_then_summarised_then_ended() {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Said {
            First,
            Still(u64, u64),
            Quiet,
            Recovered(u64, u64),
            Nothing,
        }
        use Said::*;
        let rows: &[(u64, char, Said)] = &[
            (0, 'S', Nothing), // all is well: nothing to end
            (1_000, 'F', First),
            (1_250, 'F', Quiet),
            (1_500, 'F', Quiet),
            (10_999, 'F', Quiet), // 9.999 s after the first line: not yet
            (11_000, 'F', Still(5, 10_000)),
            (11_250, 'F', Quiet),
            (20_999, 'F', Quiet), // 9.999 s after the summary
            (21_000, 'F', Still(8, 20_000)),
            (21_400, 'S', Recovered(8, 20_400)),
            (21_500, 'S', Nothing), // ended once
            (30_000, 'F', First),   // a new run
            (30_100, 'S', Recovered(1, 100)),
            // Failures further apart than a summary: each one after the first is summarised.
            (40_000, 'F', First),
            (55_000, 'F', Still(2, 15_000)),
            (80_000, 'F', Still(3, 40_000)),
            (80_001, 'S', Recovered(3, 40_001)),
        ];
        let start = Instant::now();
        let mut r = Repeated::default();
        for &(at, what, want) in rows {
            let now = start + Duration::from_millis(at);
            let ms = |d: Duration| d.as_millis() as u64;
            let said = match what {
                'F' => match r.failed(now) {
                    Tell::First => First,
                    Tell::Still { failures, elapsed } => Still(failures, ms(elapsed)),
                    Tell::Quiet => Quiet,
                },
                _ => match r.succeeded(now) {
                    Some(rec) => Recovered(rec.failures, ms(rec.elapsed)),
                    None => Nothing,
                },
            };
            assert_eq!(said, want, "at {at} ms, {what}");
            assert_eq!(r.is_failing(), what == 'F', "at {at} ms");
        }
    }

    /// A caller may pass instants slightly out of order (two tasks, one lock): never a panic,
    /// never a negative duration.
    #[test]
    fn instants_out_of_order_count_as_no_time() {
        let start = Instant::now() + Duration::from_secs(5);
        let mut r = Repeated::default();
        assert_eq!(r.failed(start), Tell::First);
        assert_eq!(r.failed(start - Duration::from_secs(1)), Tell::Quiet);
        let rec = r.succeeded(start - Duration::from_secs(2)).unwrap();
        assert_eq!(rec.elapsed, Duration::ZERO);
        assert_eq!(rec.failures, 2);
    }
}
