//! Alert stages: final windows through an alert plugin, with the alert state of each
//! (rule, series) kept by the host so plugins can apply hysteresis without state of their
//! own, and a plugin swap never forgets what is firing. Alert states belong to the partition
//! whose windows raised them (a series stays in one partition), and are checkpointed with
//! its window state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
use super::stage::{StageError, require_world};
use crate::lineproto::format_point;
use crate::plugin::{CallEnv, LoadedPlugin, PluginSlot, StageState, World};
use crate::point::{Alert, AlertState, Field, FieldValue, Point, Tag, WindowResult};
use crate::tenant::TenantId;

/// The alert state of every (rule, series, field), as alert plugins last set it.
#[derive(Debug, Default)]
pub struct AlertStates {
    states: Mutex<HashMap<String, AlertState>>,
}

impl AlertStates {
    /// Evaluates `windows` round by round with `call`: each round holds each (rule, series,
    /// field) at most once, in window order, with `state` filled in before the call and the
    /// returned alerts recorded after it. So the second window of a series sees the state
    /// its first one left, even when both closed together.
    ///
    /// # Errors
    /// The first error of `call`.
    pub fn evaluate_rounds<E>(
        &self,
        mut windows: Vec<WindowResult>,
        mut call: impl FnMut(&[WindowResult]) -> Result<Vec<Alert>, E>,
    ) -> Result<Vec<Alert>, E> {
        windows.sort_by_key(|w| w.window_end);
        let mut rounds: Vec<Vec<WindowResult>> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for w in windows {
            let round = seen
                .entry(key(&w.rule, &w.series.to_string(), &w.field))
                .or_insert(0);
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(w);
            *round += 1;
        }
        let mut out = Vec::new();
        for mut round in rounds {
            self.fill(&mut round);
            let alerts = call(&round)?;
            self.apply(&alerts);
            out.extend(alerts);
        }
        Ok(out)
    }

    fn fill(&self, windows: &mut [WindowResult]) {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        for w in windows {
            w.state = states
                .get(&key(&w.rule, &w.series.to_string(), &w.field))
                .copied()
                .unwrap_or(AlertState::Ok);
        }
    }

    /// The states as bytes, for a checkpoint: (key, state name) pairs.
    pub fn export(&self) -> Vec<u8> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let mut named: Vec<(&str, String)> = states
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        named.sort_unstable();
        postcard::to_stdvec(&named).unwrap_or_default()
    }

    /// States saved by [`AlertStates::export`].
    ///
    /// # Errors
    /// When `bytes` are not saved states.
    pub fn import(bytes: &[u8]) -> Result<Self, postcard::Error> {
        let named: Vec<(String, String)> = postcard::from_bytes(bytes)?;
        let states = named
            .into_iter()
            .filter_map(|(k, v)| {
                let state = match v.as_str() {
                    "ok" => AlertState::Ok,
                    "warning" => AlertState::Warning,
                    "critical" => AlertState::Critical,
                    _ => return None,
                };
                Some((k, state))
            })
            .collect();
        Ok(Self {
            states: Mutex::new(states),
        })
    }

    fn apply(&self, alerts: &[Alert]) {
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
        windows: Vec<WindowResult>,
        env: &CallEnv,
    ) -> Result<Vec<Alert>, crate::plugin::CallError> {
        self.evaluate_rounds(windows, |round| plugin.evaluate(round, env))
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
        value: w.rule.as_str().into(),
    });
    let mut point = Point {
        measurement: w.series.measurement.clone(),
        tags,
        fields: w
            .aggregates
            .iter()
            .map(|a| Field {
                key: compact_str::format_compact!("{}_{}", w.field, a.name),
                value: FieldValue::Float(a.value),
            })
            .collect(),
        timestamp: w.window_end,
    };
    point.sort_tags();
    point
}

/// An alert plugin applied to final windows.
pub struct AlertStage {
    tenant: TenantId,
    name: String,
    slot: Arc<PluginSlot>,
    env: CallEnv,
    dead_letters: Arc<DeadLetterLog>,
}

impl AlertStage {
    /// `tenant`'s alert stage `name` running `slot`; the plugin's health is the tenant's
    /// own.
    ///
    /// # Errors
    /// When the plugin is not an alert plugin.
    pub fn new(
        tenant: &TenantId,
        name: &str,
        slot: Arc<PluginSlot>,
        env: CallEnv,
        dead_letters: Arc<DeadLetterLog>,
    ) -> Result<Self, StageError> {
        let name = format!("{tenant}/{name}");
        require_world(&name, &slot, &[World::Alert], "an alert plugin")?;
        Ok(Self {
            tenant: tenant.clone(),
            name,
            slot,
            env,
            dead_letters,
        })
    }

    /// The stage's name (`tenant/rule`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An empty plugin state with the stage's limits: what a partition starts with.
    pub fn new_state(&self) -> StageState {
        StageState::new(self.env.state.limits())
    }

    /// Runs the plugin once on no windows, with the rule's parameters and an empty
    /// state: a plugin that refuses its parameters says so here. Not counted in its
    /// health.
    ///
    /// # Errors
    /// The plugin's error.
    pub fn probe(&self) -> Result<(), String> {
        let env = CallEnv {
            state: Arc::new(self.new_state()),
            ..self.env.clone()
        };
        self.slot
            .current()
            .evaluate(&[], &env)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The alerts `windows` raise, given and updating `states`, with the plugin's own
    /// key-value state `plugin_state` (the partition's); none when the plugin fails (the
    /// windows are dead-lettered).
    ///
    /// # Errors
    /// Only when a failed batch could not be kept as a dead letter.
    pub fn process(
        &self,
        states: &AlertStates,
        windows: Vec<WindowResult>,
        plugin_state: &Arc<StageState>,
    ) -> Result<Vec<Alert>, DeadLetterError> {
        let _span =
            tracing::info_span!("alert_stage", stage = %self.name, plugin = %self.slot.name())
                .entered();
        let env = CallEnv {
            state: plugin_state.clone(),
            ..self.env.clone()
        };
        states.evaluate_rounds(windows, |round| {
            let outcome = self.slot.run(&self.tenant, round.len(), Vec::len, |p| {
                p.evaluate(round, &env)
            });
            match outcome.result {
                Ok(alerts) => Ok(alerts),
                Err(error) => {
                    let items = round
                        .iter()
                        .map(|w| format_point(&window_as_point(w)))
                        .collect();
                    let letter = DeadLetter::new(&self.tenant, &self.name, &error, items);
                    self.dead_letters.put(&letter.derived())?;
                    Ok(Vec::new())
                }
            }
        })
    }
}
