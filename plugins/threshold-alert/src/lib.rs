//! Threshold alert with hysteresis.
//!
//! Parameters: `aggregate` (default `mean`), `warn_above`, `crit_above` (at least one),
//! `hysteresis` (absolute, default 0). Enters critical at value >= crit_above, warning at
//! value >= warn_above; leaves critical only below crit_above - hysteresis, and warning
//! only below warn_above - hysteresis. An alert is emitted only when the state changes; the
//! previous state comes from the host (`window.state`), so it survives plugin swaps. A window
//! without the aggregate raises nothing.
//!
//! Messages read `cpu usage_user mean 93.2 >= 90 (critical) host=a`; a resolution reads
//! `... 70 < 75 (resolved) ...`, with the threshold in force (lowered by the hysteresis).

use sluice_guest::{
    Alert, AlertEvent, AlertState, PluginError, WindowResult, export_alert, params,
};

struct Threshold {
    aggregate: String,
    warn: Option<f64>,
    crit: Option<f64>,
    hysteresis: f64,
}

impl Alert for Threshold {
    fn new() -> Result<Self, PluginError> {
        let warn = params::parse("warn_above")?;
        let crit = params::parse("crit_above")?;
        if warn.is_none() && crit.is_none() {
            return Err(PluginError::new("set `warn_above`, `crit_above` or both"));
        }
        let hysteresis: f64 = params::parse("hysteresis")?.unwrap_or(0.0);
        if hysteresis.is_nan() || hysteresis < 0.0 {
            return Err(PluginError::new(format!(
                "parameter `hysteresis` = `{hysteresis}`: must be 0 or more"
            )));
        }
        Ok(Self {
            aggregate: params::get_or("aggregate", "mean"),
            warn,
            crit,
            hysteresis,
        })
    }

    fn evaluate(&mut self, window: &WindowResult) -> Option<AlertEvent> {
        let value = window
            .aggregates
            .iter()
            .find(|a| a.name == self.aggregate)?
            .value;
        // While a state holds, its threshold is lowered by the hysteresis, so a value
        // hovering at the threshold doesn't flap.
        let crit = self.crit.map(|c| match window.state {
            AlertState::Critical => c - self.hysteresis,
            _ => c,
        });
        let warn = self.warn.map(|w| match window.state {
            AlertState::Ok => w,
            _ => w - self.hysteresis,
        });
        let (next, limit, op) = match (crit, warn) {
            (Some(c), _) if value >= c => (AlertState::Critical, c, ">="),
            (_, Some(w)) if value >= w => (AlertState::Warning, w, ">="),
            // Resolved: below the lowest threshold in force (the warning one if set).
            // `new` requires one threshold, so the NaN never shows.
            (c, w) => (AlertState::Ok, w.or(c).unwrap_or(f64::NAN), "<"),
        };
        if next == window.state {
            return None;
        }
        let mut message = format!(
            "{} {} {} {value} {op} {limit} ({})",
            window.series.measurement,
            window.field,
            self.aggregate,
            state_name(next),
        );
        for t in &window.series.tags {
            message.push_str(&format!(" {}={}", t.key, t.value));
        }
        Some(AlertEvent::new(next, value, message))
    }
}

fn state_name(s: AlertState) -> &'static str {
    match s {
        AlertState::Ok => "resolved",
        AlertState::Warning => "warning",
        AlertState::Critical => "critical",
    }
}

export_alert!(Threshold);

#[cfg(test)]
mod tests {
    use sluice_guest::{Aggregate, Series, Tag};

    use super::*;

    fn window(value: f64, state: AlertState) -> WindowResult {
        WindowResult {
            rule: "cpu-high".into(),
            series: Series {
                measurement: "cpu".into(),
                tags: vec![Tag::new("host", "a")],
            },
            field: "usage_user".into(),
            window_start: 0,
            window_end: 60,
            aggregates: vec![Aggregate {
                name: "mean".into(),
                value,
            }],
            state,
        }
    }

    #[test]
    fn fires_escalates_and_resolves_with_hysteresis() {
        let mut rule = Threshold {
            aggregate: "mean".into(),
            warn: Some(80.0),
            crit: Some(90.0),
            hysteresis: 5.0,
        };
        let mut state = AlertState::Ok;
        let mut changes = Vec::new();
        for value in [50.0, 85.0, 78.0, 93.2, 87.0, 77.0, 74.0, 70.0] {
            if let Some(alert) = rule.evaluate(&window(value, state)) {
                state = alert.state;
                changes.push((value, state, alert.message));
            }
        }
        let expected = [
            (
                85.0,
                AlertState::Warning,
                "cpu usage_user mean 85 >= 80 (warning) host=a",
            ),
            (
                93.2,
                AlertState::Critical,
                "cpu usage_user mean 93.2 >= 90 (critical) host=a",
            ),
            (
                77.0,
                AlertState::Warning,
                "cpu usage_user mean 77 >= 75 (warning) host=a",
            ),
            (
                74.0,
                AlertState::Ok,
                "cpu usage_user mean 74 < 75 (resolved) host=a",
            ),
        ];
        assert_eq!(changes.len(), expected.len(), "{changes:?}");
        for ((v, s, m), (ev, es, em)) in changes.iter().zip(expected) {
            assert_eq!((*v, *s, m.as_str()), (ev, es, em));
        }
    }

    #[test]
    fn window_without_the_aggregate_raises_nothing() {
        let mut rule = Threshold {
            aggregate: "p99".into(),
            warn: None,
            crit: Some(1.0),
            hysteresis: 0.0,
        };
        assert!(rule.evaluate(&window(100.0, AlertState::Ok)).is_none());
    }
}
