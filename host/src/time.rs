//! Time in nanoseconds since the epoch ([`Nanos`]), with arithmetic that never wraps or
//! panics: any `i64` is a valid timestamp, from `i64::MIN` to `i64::MAX`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::point::Nanos;

/// The wall clock, saturating at the ends of the range (a clock before 1970 reads 0).
pub fn now_ns() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX))
}

/// `ts` for people: RFC 3339 (UTC, seconds) where it is after 1970, else nanoseconds.
pub fn human(ts: Nanos) -> String {
    match u64::try_from(ts) {
        Ok(ns) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
        }
        Err(_) => format!("{ts} ns"),
    }
}

/// `s` seconds in nanoseconds, saturating.
pub fn secs(s: u64) -> Nanos {
    Nanos::try_from(s.saturating_mul(1_000_000_000)).unwrap_or(Nanos::MAX)
}

/// `d` before `ts`, saturating at `i64::MIN`.
pub fn minus(ts: Nanos, d: Duration) -> Nanos {
    ts.saturating_sub(Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX))
}

/// The start of the bucket of width `step` (aligned to the epoch) holding `ts`. Where that
/// start is below `i64::MIN`, the lowest bucket starts at `i64::MIN` instead: it holds the
/// same points, and bucket starts stay in time order.
///
/// `step` must be positive (a zero or negative step is taken as 1 ns).
pub fn floor_to(ts: Nanos, step: Nanos) -> Nanos {
    ts.checked_sub(ts.rem_euclid(step.max(1)))
        .unwrap_or(Nanos::MIN)
}

/// Seconds from `earlier` to `later` (negative when `later` is before), without overflow.
pub fn seconds_between(earlier: Nanos, later: Nanos) -> f64 {
    // i128 holds the difference of any two i64s.
    (i128::from(later) - i128::from(earlier)) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floor_at_the_ends_of_the_range() {
        let minute = 60_000_000_000;
        assert_eq!(floor_to(0, minute), 0);
        assert_eq!(floor_to(-1, minute), -minute);
        assert_eq!(floor_to(Nanos::MIN, minute), Nanos::MIN);
        assert_eq!(floor_to(Nanos::MIN + 1, minute), Nanos::MIN);
        assert_eq!(
            floor_to(Nanos::MAX, minute),
            Nanos::MAX - Nanos::MAX % minute
        );
        assert_eq!(floor_to(5, 0), 5);
        assert_eq!(minus(Nanos::MIN + 1, Duration::from_secs(1)), Nanos::MIN);
        assert_eq!(minus(0, Duration::MAX), Nanos::MIN + 1);
        assert_eq!(
            seconds_between(Nanos::MIN, Nanos::MAX),
            1.8446744073709552e10
        );
    }

    proptest! {
        #[test]
        fn floor_is_the_aligned_bucket_or_the_lowest(ts in any::<i64>(), step in 1..i64::MAX) {
            let start = floor_to(ts, step);
            prop_assert!(start <= ts);
            if start != Nanos::MIN {
                prop_assert_eq!(start.rem_euclid(step), 0);
                // The next bucket starts after ts (or is beyond the range).
                prop_assert!(start.checked_add(step).is_none_or(|next| next > ts));
            } else {
                // Only where the aligned start is i64::MIN itself or below it.
                prop_assert!(i128::from(ts) - i128::from(ts.rem_euclid(step)) <= i128::from(Nanos::MIN));
            }
        }

        #[test]
        fn floor_keeps_time_order(a in any::<i64>(), b in any::<i64>(), step in 1..i64::MAX) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(floor_to(lo, step) <= floor_to(hi, step));
        }
    }
}
