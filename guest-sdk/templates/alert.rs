//! An alert: fires `critical` when a window's aggregate `max` is above the parameter
//! `threshold` (default 90), and resolves (`ok`) when it is back under it. The host passes
//! the series' last recorded state, so only changes are returned.

use sluice_guest::{Alert, AlertEvent, AlertState, PluginError, WindowResult, export_alert, params};

struct Threshold {
    threshold: f64,
}

impl Alert for Threshold {
    // Once per batch: a bad parameter fails the batch with a message naming it.
    fn new() -> Result<Self, PluginError> {
        Ok(Self {
            threshold: params::parse("threshold")?.unwrap_or(90.0),
        })
    }

    // Once per closed window: an alert only when the state changes.
    fn evaluate(&mut self, window: &WindowResult) -> Option<AlertEvent> {
        let max = window.aggregates.iter().find(|a| a.name == "max")?.value;
        let state = if max > self.threshold {
            AlertState::Critical
        } else {
            AlertState::Ok
        };
        (state != window.state).then(|| {
            let message = format!("{} max {max} (threshold {})", window.field, self.threshold);
            AlertEvent::new(state, max, message)
        })
    }
}

export_alert!(Threshold);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::{Aggregate, Point};

    fn window(max: f64, state: AlertState) -> WindowResult {
        WindowResult {
            rule: "cpu-max".into(),
            series: Point::new("cpu", 0).with_tag("host", "web-1").series(),
            field: "usage".into(),
            window_start: 0,
            window_end: 60_000_000_000,
            aggregates: vec![Aggregate {
                name: "max".into(),
                value: max,
            }],
            state,
        }
    }

    #[test]
    fn fires_above_the_threshold_and_resolves_below_it_once() {
        let mut alert = Threshold { threshold: 90.0 };
        let fired = alert.evaluate(&window(95.0, AlertState::Ok)).expect("fires");
        assert_eq!((fired.state, fired.value), (AlertState::Critical, 95.0));
        assert!(alert.evaluate(&window(97.0, AlertState::Critical)).is_none());
        let resolved = alert.evaluate(&window(50.0, AlertState::Critical)).expect("resolves");
        assert_eq!(resolved.state, AlertState::Ok);
        assert!(alert.evaluate(&window(50.0, AlertState::Ok)).is_none());
    }
}
