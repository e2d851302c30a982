//! The one clock every deadline is measured on: `CLOCK_BOOTTIME`.
//!
//! It is monotonic (never jumps with wall time or NTP) and, unlike `CLOCK_MONOTONIC`, keeps counting
//! while the machine is suspended. etcd's lease TTL keeps running on the server while we are suspended,
//! so our view of "how long since the last acknowledged keepalive" must too.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the boot-time clock. Only differences between two instants mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BootInstant(Duration);

impl BootInstant {
    /// Now, on `CLOCK_BOOTTIME`.
    pub fn now() -> Self {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .expect("CLOCK_BOOTTIME exists on every Linux since 2.6.39");
        BootInstant(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: BootInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Time left until `self`, zero if it has passed.
    pub fn remaining(self) -> Duration {
        self.saturating_duration_since(BootInstant::now())
    }

    /// Whether this instant has been reached.
    pub fn has_passed(self) -> bool {
        BootInstant::now() >= self
    }

    /// Nanoseconds since boot, for timers armed on `CLOCK_BOOTTIME`.
    pub fn as_nanos(self) -> u128 {
        self.0.as_nanos()
    }

    /// Milliseconds since boot, for logs that need to be compared across processes.
    pub fn as_millis(self) -> u128 {
        self.0.as_millis()
    }
}

impl Add<Duration> for BootInstant {
    type Output = BootInstant;
    fn add(self, rhs: Duration) -> BootInstant {
        BootInstant(self.0 + rhs)
    }
}

impl Sub<Duration> for BootInstant {
    type Output = BootInstant;
    fn sub(self, rhs: Duration) -> BootInstant {
        BootInstant(self.0.saturating_sub(rhs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_moves_forward() {
        let a = BootInstant::now();
        let b = BootInstant::now();
        assert!(b >= a);
        assert_eq!(
            a.saturating_duration_since(b + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert!((a + Duration::from_secs(5)).remaining() > Duration::from_secs(4));
        assert!((a - Duration::from_secs(5)).has_passed());
    }
}
