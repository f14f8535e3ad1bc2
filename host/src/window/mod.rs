//! Event-time tumbling windows for alert rules: points in, closed window results out.
//!
//! This is the first cut of the host's windowing: tumbling windows aligned to the epoch, an
//! explicit grace period per rule, and a watermark per rule and partition: the newest event
//! time seen. The wall clock moves it only while the partition is idle (the heartbeat), so a
//! backfill or a replay after downtime closes its windows one by one, in event time. A point
//! dated further ahead of the wall clock than `max_future` moves nothing: it is stored, but
//! counted and left out of the windows, so one bad clock can't close everyone's windows
//! early. Points for a window that has already closed are late: counted, and left out of
//! the alert evaluation (they are stored as raw points like any other). State lives in
//! memory; checkpointing it with the transport offsets, hopping and session windows and
//! rollup tiers come with the windowing work.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::aggregate::{Acc, Function};
use crate::point::{Aggregate, AlertState, Nanos, Point, Series, WindowResult};
use crate::time::floor_to;

/// What an alert rule windows.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Rule name (carried into window results and alerts).
    pub name: String,
    /// Measurement to window.
    pub measurement: String,
    /// Field to aggregate.
    pub field: String,
    /// Window width.
    pub width: Nanos,
    /// How long after its end a window still accepts points.
    pub grace: Nanos,
    /// How far ahead of the wall clock a point may be and still count.
    pub max_future: Nanos,
    /// The aggregates each window reports.
    pub aggregates: Vec<Function>,
}

/// The open windows of one rule on one partition.
#[derive(Debug)]
pub struct Tumbling {
    spec: Arc<RuleSpec>,
    /// Open windows by start time, then series.
    open: BTreeMap<Nanos, HashMap<String, (Series, Acc)>>,
    /// Newest event time seen.
    max_event: Nanos,
    /// Windows ending at or before this have been closed.
    closed_through: Nanos,
    late: u64,
    future: u64,
}

/// What became of a recorded point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Not this rule's measurement or field.
    Ignored,
    /// Added to its window.
    Open,
    /// Its window had closed.
    Late,
    /// Dated past `max_future`: left out.
    Future,
}

impl Tumbling {
    /// No open windows.
    pub fn new(spec: Arc<RuleSpec>) -> Self {
        Self {
            spec,
            open: BTreeMap::new(),
            max_event: Nanos::MIN,
            closed_through: Nanos::MIN,
            late: 0,
            future: 0,
        }
    }

    /// Points dated past `max_future` when they came.
    pub fn future(&self) -> u64 {
        self.future
    }

    /// Points that arrived after their window closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Adds `point` to its window when it is of this rule's measurement and has the field,
    /// unless its window has closed or it is dated past `max_future` from `wall_now`.
    pub fn record(&mut self, point: &Point, wall_now: Nanos) -> Recorded {
        if point.measurement != self.spec.measurement {
            return Recorded::Ignored;
        }
        let Some(value) = point.field(&self.spec.field) else {
            return Recorded::Ignored;
        };
        if point.timestamp > wall_now.saturating_add(self.spec.max_future) {
            self.future += 1;
            return Recorded::Future;
        }
        let start = floor_to(point.timestamp, self.spec.width);
        let end = start.saturating_add(self.spec.width);
        if end <= self.closed_through {
            self.late += 1;
            return Recorded::Late;
        }
        self.max_event = self.max_event.max(point.timestamp);
        let series = point.series();
        let key = series.to_string();
        self.open
            .entry(start)
            .or_default()
            .entry(key)
            .or_insert_with(|| (series, Acc::default()))
            .1
            .add(value.as_f64());
        Recorded::Open
    }

    /// Closes every window whose end plus grace the watermark has passed. The watermark is
    /// the newest event time seen; while the partition is `idle`, at least the wall clock
    /// minus one window width (the heartbeat).
    pub fn close(&mut self, wall_now: Nanos, idle: bool) -> Vec<WindowResult> {
        let heartbeat = if idle {
            wall_now.saturating_sub(self.spec.width)
        } else {
            Nanos::MIN
        };
        let watermark = self.max_event.max(heartbeat);
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            let end = start.saturating_add(self.spec.width);
            if end.saturating_add(self.spec.grace) > watermark {
                break;
            }
            let windows = entry.remove();
            self.closed_through = self.closed_through.max(end);
            // Keyed by the series' text form: sorting by it gives a stable output order.
            let mut closed: Vec<_> = windows.into_iter().collect();
            closed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (_, (series, acc)) in closed {
                out.push(WindowResult {
                    rule: self.spec.name.clone(),
                    series,
                    field: self.spec.field.clone(),
                    window_start: start,
                    window_end: end,
                    aggregates: self
                        .spec
                        .aggregates
                        .iter()
                        .filter_map(|f| {
                            Some(Aggregate {
                                name: f.name().into(),
                                value: acc.finish(*f)?,
                            })
                        })
                        .collect(),
                    state: AlertState::Ok,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    fn spec() -> Arc<RuleSpec> {
        Arc::new(RuleSpec {
            name: "hot".into(),
            measurement: "temp".into(),
            field: "c".into(),
            width: 10,
            grace: 5,
            max_future: 1_000,
            aggregates: vec![Function::Mean, Function::Max, Function::Count],
        })
    }

    fn feed(w: &mut Tumbling, lp: &str) {
        for p in parse(lp, Precision::Nanoseconds, 0).0 {
            w.record(&p, 0);
        }
    }

    #[test]
    fn windows_close_after_grace_on_event_time_and_late_points_are_counted() {
        let mut w = Tumbling::new(spec());
        feed(
            &mut w,
            "temp,room=a c=1 1\ntemp,room=a c=3 9\ntemp,room=b c=7 4\nother c=100 2\ntemp,room=a c=5 12\n",
        );
        assert!(
            w.close(Nanos::MAX, false).is_empty(),
            "watermark 12 < end 10 + grace 5, and a busy partition ignores the wall clock"
        );
        feed(&mut w, "temp,room=a c=2 14\n");
        assert!(w.close(Nanos::MIN, false).is_empty());
        feed(&mut w, "temp,room=a c=2 15\n");
        let closed = w.close(Nanos::MIN, false);
        assert_eq!(closed.len(), 2, "one result per series of window [0, 10)");
        assert_eq!(closed[0].series.to_string(), "temp,room=a");
        assert_eq!((closed[0].window_start, closed[0].window_end), (0, 10));
        let aggs: Vec<(String, f64)> = closed[0]
            .aggregates
            .iter()
            .map(|a| (a.name.clone(), a.value))
            .collect();
        assert_eq!(
            aggs,
            [
                ("mean".into(), 2.0),
                ("max".into(), 3.0),
                ("count".into(), 2.0)
            ]
        );
        feed(&mut w, "temp,room=a c=9 3\n");
        assert_eq!(w.late(), 1, "window [0,10) is closed");
    }

    #[test]
    fn the_wall_clock_closes_an_idle_partition_only() {
        let mut w = Tumbling::new(spec());
        feed(&mut w, "temp,room=a c=1 1\n");
        assert!(w.close(25, false).is_empty(), "busy: event time only");
        assert!(
            w.close(20, true).is_empty(),
            "20 - width 10 = 10 < end + grace"
        );
        assert_eq!(w.close(25, true).len(), 1);
    }

    #[test]
    fn a_backfill_closes_window_by_window_in_event_time() {
        let mut w = Tumbling::new(spec());
        // A day of history, replayed while the wall clock says much later.
        let now = 1_000_000;
        let mut closed = Vec::new();
        for t in (0..1_000).step_by(3) {
            w.record(
                &parse(&format!("temp c={t} {t}"), Precision::Nanoseconds, 0).0[0],
                now,
            );
            closed.extend(w.close(now, false));
        }
        assert_eq!(w.late(), 0, "no point of the backfill is late");
        // Every window but the last ones closed, each with its own points.
        assert!(closed.len() >= 98, "{}", closed.len());
        for (i, r) in closed.iter().enumerate() {
            assert_eq!(r.window_start, 10 * i as i64);
            let count = r
                .aggregates
                .iter()
                .find(|a| a.name == "count")
                .map(|a| a.value);
            assert!(matches!(count, Some(3.0 | 4.0)), "{r:?}");
        }
    }

    #[test]
    fn a_point_from_the_future_moves_nothing() {
        let mut w = Tumbling::new(spec());
        let now = 100;
        let far = parse("temp c=1 1000000", Precision::Nanoseconds, 0).0;
        assert_eq!(w.record(&far[0], now), Recorded::Future);
        assert_eq!(w.future(), 1);
        // Later points are not late, and their windows close on their own event time.
        feed(&mut w, "temp,room=a c=1 90\ntemp,room=a c=3 95\n");
        assert_eq!(w.late(), 0);
        assert!(w.close(now, false).is_empty());
        feed(&mut w, "temp,room=a c=1 105\n");
        let closed = w.close(now, false);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].window_start, 90);
        // Within max_future is fine.
        let near = parse("temp c=1 1100", Precision::Nanoseconds, 0).0;
        assert_eq!(w.record(&near[0], now), Recorded::Open);
    }

    proptest::proptest! {
        #[test]
        fn windows_across_the_whole_range_never_panic_and_hold_their_points(
            times in proptest::collection::vec(proptest::num::i64::ANY, 1..100),
            width in 1..i64::MAX,
            grace in 0..i64::MAX,
            now in proptest::num::i64::ANY,
        ) {
            let mut w = Tumbling::new(Arc::new(RuleSpec {
                width,
                grace,
                max_future: Nanos::MAX,
                ..(*spec()).clone()
            }));
            for t in &times {
                w.record(&parse(&format!("temp c=1 {t}"), Precision::Nanoseconds, 0).0[0], now);
            }
            for r in w.close(now, true).into_iter().chain(w.close(Nanos::MAX, true)) {
                proptest::prop_assert!(r.window_start <= r.window_end);
                proptest::prop_assert!(times.iter().any(|t| floor_to(*t, width) == r.window_start
                    && (*t < r.window_end)));
            }
        }
    }
}
