//! Threshold alert with hysteresis.
//!
//! Parameters: `aggregate` (default `mean`), `warn_above`, `crit_above` (at least one),
//! `hysteresis` (absolute, default 0). Enters critical at value >= crit_above, warning at
//! value >= warn_above; leaves critical only below crit_above - hysteresis, and warning
//! only below warn_above - hysteresis. An alert is emitted only when the state changes; the
//! previous state comes from the host (`window.state`), so it survives plugin swaps.

use sluice_guest::{Alert, AlertEvent, AlertState, PluginError, WindowResult, export_alert, params};

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
        Ok(Self {
            aggregate: params::get_or("aggregate", "mean"),
            warn,
            crit,
            hysteresis: params::parse("hysteresis")?.unwrap_or(0.0),
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
        let next = if crit.is_some_and(|l| value >= l) {
            AlertState::Critical
        } else if warn.is_some_and(|l| value >= l) {
            AlertState::Warning
        } else {
            AlertState::Ok
        };
        if next == window.state {
            return None;
        }
        let (limit, word) = match next {
            AlertState::Critical => (self.crit, ">="),
            AlertState::Warning => (self.warn, ">="),
            AlertState::Ok => (self.warn.or(self.crit), "<"),
        };
        let tags: Vec<String> = window.series.tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect();
        Some(AlertEvent {
            rule: window.rule.clone(),
            series: window.series.clone(),
            field: window.field.clone(),
            state: next,
            window_start: window.window_start,
            window_end: window.window_end,
            value,
            message: format!(
                "{} {} {} {value} {word} {} ({}) {}",
                window.series.measurement,
                window.field,
                self.aggregate,
                limit.unwrap_or(f64::NAN),
                state_name(next),
                tags.join(",")
            ),
        })
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
