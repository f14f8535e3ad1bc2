//! Window assigners: which windows hold a timestamp. Bounds are computed in `i128`, so no
//! timestamp near the ends of the `i64` range can overflow; they are clamped to that range
//! only where they leave the engine.

use serde::{Deserialize, Serialize};

use crate::point::Nanos;

/// The most windows of a hopping rule one point falls in (`size / slide`): beyond it one
/// point would cost more work than a whole batch.
pub const MAX_HOPS: i64 = 1_000;

/// The kind and size of a rule's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WindowKind {
    /// Back-to-back windows of `size`, aligned to the epoch.
    Tumbling {
        /// Width.
        size: Nanos,
    },
    /// Windows of `size` starting every `slide` (aligned to the epoch): a point is in
    /// `size / slide` of them.
    Hopping {
        /// Width.
        size: Nanos,
        /// Distance between window starts; at most `size`.
        slide: Nanos,
    },
    /// Runs of points of one group with less than `gap` between neighbours: a session
    /// spans from its first point to its last point plus `gap`.
    Session {
        /// Inactivity that ends a session.
        gap: Nanos,
    },
}

/// A window's bounds, `[start, end)`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First instant in the window.
    pub start: i128,
    /// First instant after it.
    pub end: i128,
}

/// `t` clamped to the timestamp range.
fn clamp(t: i128) -> Nanos {
    Nanos::try_from(t).unwrap_or(if t < 0 { Nanos::MIN } else { Nanos::MAX })
}

impl Span {
    /// The bounds as timestamps, clamped to the `i64` range.
    pub fn clamped(self) -> (Nanos, Nanos) {
        (clamp(self.start), clamp(self.end))
    }
}

impl WindowKind {
    /// The fixed windows holding `ts`, oldest first; none for sessions (their bounds come
    /// from the data).
    pub fn fixed(self, ts: Nanos) -> impl Iterator<Item = Span> {
        let (size, slide) = match self {
            WindowKind::Tumbling { size } => (size, size),
            WindowKind::Hopping { size, slide } => (size, slide),
            WindowKind::Session { .. } => (0, 1),
        };
        let (ts, size, slide) = (i128::from(ts), i128::from(size), i128::from(slide.max(1)));
        let last = ts - ts.rem_euclid(slide);
        // Windows start at last, last − slide, ... while they still reach past ts.
        let count = if size <= 0 {
            0
        } else {
            (last - (ts - size + 1)).div_euclid(slide) + 1
        };
        (0..count).rev().map(move |k| {
            let start = last - k * slide;
            Span {
                start,
                end: start + size,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tumbling_and_hopping_windows_of_a_point() {
        let spans =
            |kind: WindowKind, ts| kind.fixed(ts).map(|s| (s.start, s.end)).collect::<Vec<_>>();
        assert_eq!(spans(WindowKind::Tumbling { size: 10 }, 15), [(10, 20)]);
        assert_eq!(spans(WindowKind::Tumbling { size: 10 }, -1), [(-10, 0)]);
        assert_eq!(
            spans(WindowKind::Hopping { size: 10, slide: 5 }, 12),
            [(5, 15), (10, 20)]
        );
        assert_eq!(
            spans(WindowKind::Hopping { size: 10, slide: 3 }, 9),
            [(0, 10), (3, 13), (6, 16), (9, 19)]
        );
        assert_eq!(spans(WindowKind::Session { gap: 5 }, 9), []);
        // At the ends of the range the bounds leave i64, and clamp back into it.
        let minute = 60_000_000_000;
        let low: Vec<_> = WindowKind::Tumbling { size: minute }
            .fixed(Nanos::MIN)
            .collect();
        assert_eq!(low.len(), 1);
        assert!(low[0].start < i128::from(Nanos::MIN));
        assert_eq!(low[0].clamped().0, Nanos::MIN);
        let high: Vec<_> = WindowKind::Tumbling { size: minute }
            .fixed(Nanos::MAX)
            .collect();
        assert_eq!(high[0].clamped().1, Nanos::MAX);
    }

    proptest! {
        #[test]
        fn a_point_is_in_exactly_the_windows_that_hold_it(
            ts in any::<i64>(),
            size in 1i64..i64::MAX,
            hops in 1i64..20,
        ) {
            let slide = (size / hops).max(1);
            let kind = WindowKind::Hopping { size, slide };
            let spans: Vec<_> = kind.fixed(ts).collect();
            prop_assert!(!spans.is_empty());
            prop_assert!(spans.len() as i128 <= i128::from(size) / i128::from(slide) + 1);
            for s in &spans {
                prop_assert!(s.start <= i128::from(ts) && i128::from(ts) < s.end);
                prop_assert_eq!(s.start.rem_euclid(i128::from(slide)), 0);
                prop_assert_eq!(s.end - s.start, i128::from(size));
            }
            prop_assert!(spans.windows(2).all(|w| w[1].start - w[0].start == i128::from(slide)));
            // The window before the first and after the last don't hold ts.
            let before = spans[0].start - i128::from(slide);
            prop_assert!(before + i128::from(size) <= i128::from(ts));
            let after = spans[spans.len() - 1].start + i128::from(slide);
            prop_assert!(after > i128::from(ts));
        }
    }
}
