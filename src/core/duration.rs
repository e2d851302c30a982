//! Durations as one token, for logs: `250ms`, `1.5s`, `2m30s`, never `1s 500ms`.
//!
//! A value with a space inside would read as two fields to anything that splits a log line on
//! spaces (grep, awk, logfmt parsers), so every duration a log line carries is written through
//! [`Short`]. The text is also one that `humantime` (and so every duration option) parses back,
//! except for fractions, which keep at most three digits.

use std::fmt;
use std::time::Duration;

/// A duration written as one token (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short(pub Duration);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let nanos = d.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if d < Duration::from_millis(1) {
            return write!(f, "{}us", nanos.div_ceil(1_000));
        }
        if d < Duration::from_secs(1) {
            // Milliseconds, with a fraction only where it says something (12.5ms).
            return write_decimal(f, nanos, 1_000_000, "ms");
        }
        if d < Duration::from_secs(60) {
            return write_decimal(f, nanos, 1_000_000_000, "s");
        }
        // A minute or more: whole hours and minutes, then the seconds (with their fraction).
        let secs = d.as_secs();
        let (hours, minutes) = (secs / 3_600, secs % 3_600 / 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        let rest = nanos % 60_000_000_000;
        if rest > 0 {
            write_decimal(f, rest, 1_000_000_000, "s")?;
        }
        Ok(())
    }
}

/// `nanos / unit` with at most three decimals, trailing zeros dropped, then `suffix`. Rounded
/// down: a deadline shown is never later than the real one.
fn write_decimal(f: &mut fmt::Formatter<'_>, nanos: u128, unit: u128, suffix: &str) -> fmt::Result {
    let whole = nanos / unit;
    let thousandths = nanos % unit * 1_000 / unit;
    if thousandths == 0 {
        return write!(f, "{whole}{suffix}");
    }
    let fraction = format!("{thousandths:03}");
    write!(f, "{whole}.{}{suffix}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_one_token() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let rows = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1us"),
            (Duration::from_micros(250), "250us"),
            (ms(1), "1ms"),
            (Duration::from_micros(12_500), "12.5ms"),
            (Duration::from_micros(999_999), "999.999ms"),
            (ms(250), "250ms"),
            (s(1), "1s"),
            (ms(1_500), "1.5s"),
            (ms(2_999), "2.999s"),
            (ms(10_250), "10.25s"),
            (s(59), "59s"),
            (s(60), "1m"),
            (s(90), "1m30s"),
            (ms(60_500), "1m0.5s"),
            (s(3_600), "1h"),
            (s(3_661), "1h1m1s"),
            (s(31_557_600), "8766h"),
        ];
        for (d, want) in rows {
            let got = Short(d).to_string();
            assert_eq!(got, want, "{d:?}");
            assert!(!got.contains(' '), "{got}");
        }
    }

    #[test]
    fn whole_units_parse_back() {
        for text in ["250ms", "1s", "1m30s", "1h1m1s", "8766h"] {
            let d = humantime::parse_duration(text).expect(text);
            assert_eq!(Short(d).to_string(), text);
        }
    }
}
