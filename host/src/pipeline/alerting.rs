//! Alert stages: closed windows through an alert plugin, with the alert state of each
//! (rule, series) kept by the host so plugins can apply hysteresis without state of their
//! own, and a plugin swap never forgets what is firing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
use crate::lineproto::format_point;
use crate::plugin::{CallEnv, LoadedPlugin, PluginSlot};
use crate::point::{Alert, AlertState, Field, FieldValue, Point, Tag, WindowResult};

/// The alert state of every (rule, series, field), as alert plugins last set it.
#[derive(Debug, Default)]
pub struct AlertStates {
    states: Mutex<HashMap<String, AlertState>>,
}

impl AlertStates {
    /// Sets each window's `state` to the recorded state of its rule, series and field.
    pub fn fill(&self, windows: &mut [WindowResult]) {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        for w in windows {
            w.state = states
                .get(&key(&w.rule, &w.series.to_string(), &w.field))
                .copied()
                .unwrap_or(AlertState::Ok);
        }
    }

    /// Records the new states the alerts announce.
    pub fn apply(&self, alerts: &[Alert]) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        for a in alerts {
            states.insert(key(&a.rule, &a.series.to_string(), &a.field), a.state);
        }
    }

    /// Runs `windows` through `plugin` directly (no registry, no dead letters): what the
    /// `plugin run` command does.
    ///
    /// # Errors
    /// The plugin's [`CallError`](crate::plugin::CallError).
    pub fn evaluate(
        &self,
        plugin: &LoadedPlugin,
        mut windows: Vec<WindowResult>,
        env: &CallEnv,
    ) -> Result<Vec<Alert>, crate::plugin::CallError> {
        self.fill(&mut windows);
        let alerts = plugin.evaluate(&windows, env)?;
        self.apply(&alerts);
        Ok(alerts)
    }
}

fn key(rule: &str, series: &str, field: &str) -> String {
    format!("{rule}\u{1f}{series}\u{1f}{field}")
}

/// A window as a line-protocol point (for dead letters): the series tagged with the rule,
/// one field per aggregate, at the window end.
pub fn window_as_point(w: &WindowResult) -> Point {
    let mut tags = w.series.tags.clone();
    tags.push(Tag {
        key: "_rule".into(),
        value: w.rule.clone(),
    });
    let mut point = Point {
        measurement: w.series.measurement.clone(),
        tags,
        fields: w
            .aggregates
            .iter()
            .map(|a| Field {
                key: format!("{}_{}", w.field, a.name),
                value: FieldValue::Float(a.value),
            })
            .collect(),
        timestamp: w.window_end,
    };
    point.sort_tags();
    point
}

/// An alert plugin applied to closed windows.
pub struct AlertStage {
    name: String,
    slot: Arc<PluginSlot>,
    env: CallEnv,
    states: AlertStates,
    dead_letters: Arc<DeadLetterLog>,
}

impl AlertStage {
    /// An alert stage `name` running `slot`.
    pub fn new(
        name: &str,
        slot: Arc<PluginSlot>,
        env: CallEnv,
        dead_letters: Arc<DeadLetterLog>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            slot,
            env,
            states: AlertStates::default(),
            dead_letters,
        }
    }

    /// The alerts `windows` raise; none when the plugin fails (the windows are dead-lettered).
    ///
    /// # Errors
    /// Only when a failed batch could not be kept as a dead letter.
    pub fn process(&self, mut windows: Vec<WindowResult>) -> Result<Vec<Alert>, DeadLetterError> {
        let _span =
            tracing::info_span!("alert_stage", stage = %self.name, plugin = %self.slot.name())
                .entered();
        self.states.fill(&mut windows);
        let outcome = self
            .slot
            .run(windows.len(), Vec::len, |p| p.evaluate(&windows, &self.env));
        match outcome.result {
            Ok(alerts) => {
                self.states.apply(&alerts);
                Ok(alerts)
            }
            Err(error) => {
                let items = windows
                    .iter()
                    .map(|w| format_point(&window_as_point(w)))
                    .collect();
                self.dead_letters
                    .put(&DeadLetter::new(&self.name, &error, items))?;
                Ok(Vec::new())
            }
        }
    }
}
