//! Times and durations in Docker's encoding: RFC 3339 timestamps (Go's
//! zero time for "never") and durations in nanoseconds.

use std::time::{Duration, UNIX_EPOCH};

/// Go's zero `time.Time`, which Docker prints for a time never set.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A store time (ms since the epoch) as Docker prints it.
pub fn date(ms: i64) -> Option<String> {
    if ms <= 0 {
        return Some(ZERO_TIME.into());
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
    Some(humantime::format_rfc3339_nanos(t).to_string())
}

/// A duration in nanoseconds (Docker) as whole milliseconds (the store),
/// rounded up so that a positive duration never becomes 0.
pub fn ns_to_ms(ns: i64) -> u64 {
    if ns <= 0 {
        0
    } else {
        (ns as u64).div_ceil(1_000_000)
    }
}

/// Milliseconds (the store) as nanoseconds (Docker).
pub fn ms_to_ns(ms: u64) -> i64 {
    (ms as i64).saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(date(0).as_deref(), Some(ZERO_TIME));
        assert_eq!(
            date(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20.123000000Z")
        );
    }

    #[test]
    fn durations_round_up() {
        assert_eq!(ns_to_ms(5_000_000_000), 5000);
        assert_eq!(ns_to_ms(1), 1);
        assert_eq!(ns_to_ms(0), 0);
        assert_eq!(ms_to_ns(1500), 1_500_000_000);
    }
}
