//! The watermark: how far event time has surely progressed on a partition, so windows
//! ending before it can close.

use serde::{Deserialize, Serialize};

use crate::point::Nanos;

/// The newest event time seen minus the allowed disorder; while the partition is idle, at
/// least the wall clock minus the disorder (the heartbeat). It never moves back, and only
/// points (not the clock) move it while data flows: a backfill or a replay after downtime
/// closes its windows one by one, in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    max_event: Nanos,
    heartbeat: Nanos,
    disorder: Nanos,
}

impl Watermark {
    /// Nothing seen yet: the watermark is at the beginning of time.
    pub fn new(disorder: Nanos) -> Self {
        Self {
            max_event: Nanos::MIN,
            heartbeat: Nanos::MIN,
            disorder: disorder.max(0),
        }
    }

    /// The same watermark with another allowed disorder (the config changed across a
    /// restart).
    pub fn with_disorder(self, disorder: Nanos) -> Self {
        Self {
            disorder: disorder.max(0),
            ..self
        }
    }

    /// Notes a point dated `ts` (one already judged not to be from the future).
    pub fn observe(&mut self, ts: Nanos) {
        self.max_event = self.max_event.max(ts);
    }

    /// Moves the watermark to the wall clock `now` (less the disorder): the partition is
    /// idle, so points late by more than that are not expected.
    pub fn heartbeat(&mut self, now: Nanos) {
        self.heartbeat = self.heartbeat.max(now.saturating_sub(self.disorder));
    }

    /// The watermark: windows ending at or before it are complete.
    pub fn get(&self) -> Nanos {
        self.max_event
            .saturating_sub(self.disorder)
            .max(self.heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_less_disorder_the_clock_only_when_idle_and_never_back() {
        let mut w = Watermark::new(10);
        assert_eq!(w.get(), Nanos::MIN);
        w.observe(100);
        assert_eq!(w.get(), 90);
        w.observe(50);
        assert_eq!(w.get(), 90, "an older point moves nothing");
        w.heartbeat(1_000);
        assert_eq!(w.get(), 990);
        w.observe(500);
        w.heartbeat(900);
        assert_eq!(w.get(), 990, "never back");
        w.observe(Nanos::MAX);
        assert_eq!(w.get(), Nanos::MAX - 10);
        let mut low = Watermark::new(Nanos::MAX);
        low.observe(Nanos::MIN + 1);
        low.heartbeat(Nanos::MIN);
        assert_eq!(low.get(), Nanos::MIN, "saturates");
    }
}
