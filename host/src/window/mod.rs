//! The windowing engine: event-time windows over a tenant's points on one partition,
//! driven by a thin loop in the pipeline (points in with [`TenantWindows::record`],
//! emissions out with [`TenantWindows::advance`]).
//!
//! Semantics (`design.md`, "Windowing semantics"):
//! - Event time. The [`Watermark`] is the newest event time seen minus the allowed
//!   disorder; only while the partition is idle does the wall clock move it. A point dated
//!   further ahead of the wall clock than `max_future` is left out of every window and does
//!   not move the watermark (it is stored raw, and counted).
//! - Tumbling, hopping and session windows ([`WindowKind`]), with an explicit grace per rule.
//!   A window is emitted when the watermark passes its end ([`Emit::Closed`]); a point that
//!   arrives later but within grace updates it and it is emitted again
//!   ([`Emit::Corrected`], same key: stores upsert it); after grace the window is dropped and
//!   later points for it are [`LatePoint`]s, never silently dropped. Alert rules are emitted
//!   once, when final ([`Emit::Final`]).
//! - All time arithmetic is in `i128` or saturating: no timestamp can overflow it.
//! - State is a plain value per (tenant, partition): [`TenantWindows::export`] and
//!   [`TenantWindows::import`] move it to a checkpoint and back.

mod assign;
mod fixed;
mod group;
mod rule;
mod session;
mod watermark;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use assign::{Span, WindowKind};
pub use group::Group;
pub use rule::{EmitMode, Glob, RollupConfig, RollupRule, RuleError, Select, WindowConfig};
pub use watermark::Watermark;

use crate::aggregate::{Acc, Values};
use crate::point::{Nanos, Point};
use fixed::Fixed;
use session::Sessions;

/// Why a window was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Emit {
    /// A partial result of a window still open (`early_every`).
    Early,
    /// The watermark passed the window's end.
    Closed,
    /// A late point within grace changed a window already emitted.
    Corrected,
    /// Grace has passed: the result can't change any more (final-only rules).
    Final,
    /// A session merged into another: its row, at its start, is void.
    Retracted,
}

/// One emitted window of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    /// Index of the rule among the tenant's rules.
    pub rule: usize,
    /// The group.
    pub group: Group,
    /// Window start (clamped to the timestamp range).
    pub start: Nanos,
    /// Window end, exclusive (clamped).
    pub end: Nanos,
    /// The rule's aggregates that have a value (none without numeric values, `stddev` of
    /// one value...); empty for a retraction.
    pub values: Values,
    /// Why it was emitted.
    pub emit: Emit,
}

/// A value that came after its window was dropped: kept as late data.
#[derive(Debug, Clone, PartialEq)]
pub struct LatePoint {
    /// Index of the rule among the tenant's rules.
    pub rule: usize,
    /// Measurement.
    pub measurement: String,
    /// Every tag of the point.
    pub tags: Vec<(String, String)>,
    /// Field.
    pub field: String,
    /// Its time.
    pub timestamp: Nanos,
    /// Its value.
    pub value: f64,
}

/// What the engine emitted.
#[derive(Debug, Default)]
pub struct Output {
    /// Windows, rule by rule, each rule's in time order.
    pub windows: Vec<WindowRow>,
    /// Values late beyond grace.
    pub late: Vec<LatePoint>,
}

/// Emission of one rule's windows into an [`Output`].
pub struct Rows<'a> {
    rule: &'a RollupRule,
    index: usize,
    out: &'a mut Vec<WindowRow>,
}

impl Rows<'_> {
    fn push(&mut self, key: &[u8], span: Span, emit: Emit, values: Values) {
        let Some(group) = group::decode(key) else {
            // Keys are only ever written by `group::prefix`.
            tracing::error!(rule = %self.rule.name, "Undecodable window key skipped.");
            return;
        };
        let (start, end) = span.clamped();
        self.out.push(WindowRow {
            rule: self.index,
            group,
            start,
            end,
            values,
            emit,
        });
    }

    fn emit(&mut self, key: &[u8], span: Span, emit: Emit, acc: &Acc) {
        let values = self
            .rule
            .aggregates
            .iter()
            .filter_map(|f| Some((*f, acc.finish(*f)?)))
            .collect();
        self.push(key, span, emit, values);
    }

    fn emit_all<S>(
        &mut self,
        span: Span,
        emit: Emit,
        accs: &std::collections::HashMap<Box<[u8]>, Acc, S>,
    ) {
        // Sorted by key: the same input gives the same output, in the same order.
        let mut all: Vec<_> = accs.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, acc) in all {
            self.emit(key, span, emit, acc);
        }
    }

    fn retract(&mut self, key: &[u8], start: i128) {
        self.push(key, Span { start, end: start }, Emit::Retracted, Vec::new());
    }
}

/// One rule's windows.
#[derive(Debug, Serialize, Deserialize)]
enum RuleState {
    Fixed(Fixed),
    Sessions(Sessions),
}

impl RuleState {
    fn new(rule: &RollupRule) -> Self {
        match rule.kind {
            WindowKind::Session { .. } => RuleState::Sessions(Sessions::default()),
            _ => RuleState::Fixed(Fixed::default()),
        }
    }
}

/// Where [`TenantWindows`] come from and go: rules, disorder, `max_future`.
#[derive(Debug, Clone)]
pub struct WindowSettings {
    /// The tenant's rules (rollups and alerts), in a fixed order.
    pub rules: Arc<[RollupRule]>,
    /// Allowed disorder: how far behind the newest point another may arrive on time.
    pub disorder: Nanos,
    /// How far ahead of the wall clock a point may be dated and still count.
    pub max_future: Nanos,
}

/// Counts of what the engine left out, since it started (or was imported).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Values late beyond grace, per rule.
    pub late: Vec<u64>,
    /// Points dated past `max_future`.
    pub future: u64,
}

/// The windows of one tenant on one partition: a watermark and every rule's state.
#[derive(Debug)]
pub struct TenantWindows {
    settings: WindowSettings,
    watermark: Watermark,
    states: Vec<RuleState>,
    /// Wall time of each rule's last early emission.
    early_at: Vec<Nanos>,
    counts: Counts,
    key: Vec<u8>,
}

/// The saved form of a tenant's windows ([`TenantWindows::export`]).
#[derive(Serialize, Deserialize)]
struct Saved {
    watermark: Watermark,
    /// Each rule's definition, late count and state: taken back only by a rule of the same
    /// definition.
    rules: Vec<(String, u64, RuleState)>,
    future: u64,
}

impl TenantWindows {
    /// No windows open; the watermark at the beginning of time.
    pub fn new(settings: WindowSettings) -> Self {
        let states = settings.rules.iter().map(RuleState::new).collect();
        let n = settings.rules.len();
        Self {
            watermark: Watermark::new(settings.disorder),
            settings,
            states,
            early_at: vec![Nanos::MIN; n],
            counts: Counts {
                late: vec![0; n],
                future: 0,
            },
            key: Vec::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[RollupRule] {
        &self.settings.rules
    }

    /// The watermark.
    pub fn watermark(&self) -> Nanos {
        self.watermark.get()
    }

    /// What was left out so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Open windows, over all groups and rules.
    pub fn open_windows(&self) -> usize {
        self.states
            .iter()
            .map(|s| match s {
                RuleState::Fixed(f) => f.open_windows(),
                RuleState::Sessions(s) => s.open_windows(),
            })
            .sum()
    }

    /// Adds `point` to the windows of the rules that take it; values late beyond grace go
    /// to `out.late`. A point dated past `max_future` from `wall_now` is counted and left
    /// out: it moves nothing.
    pub fn record(&mut self, point: &Point, wall_now: Nanos, out: &mut Output) {
        if point.timestamp > wall_now.saturating_add(self.settings.max_future) {
            self.counts.future += 1;
            return;
        }
        let watermark = self.watermark.get();
        for (i, rule) in self.settings.rules.iter().enumerate() {
            if !rule.select.point(point) {
                continue;
            }
            let prefix = group::prefix(&mut self.key, point, rule.group_by.as_deref());
            for field in &point.fields {
                let Some(value) = rule.select.value(&field.key, &field.value) else {
                    continue;
                };
                group::with_field(&mut self.key, prefix, &field.key);
                let taken = match &mut self.states[i] {
                    RuleState::Fixed(f) => {
                        f.add(rule, &self.key, point.timestamp, value, watermark)
                    }
                    RuleState::Sessions(s) => {
                        s.add(rule, &self.key, point.timestamp, value, watermark)
                    }
                };
                if !taken {
                    self.counts.late[i] += 1;
                    out.late.push(LatePoint {
                        rule: i,
                        measurement: point.measurement.to_string(),
                        tags: point
                            .tags
                            .iter()
                            .map(|t| (t.key.to_string(), t.value.to_string()))
                            .collect(),
                        field: field.key.to_string(),
                        timestamp: point.timestamp,
                        value,
                    });
                }
            }
        }
        self.watermark.observe(point.timestamp);
    }

    /// Emits the windows the watermark has closed (and early results that are due at
    /// `wall_now`). When the partition is `idle`, the wall clock moves the watermark first.
    pub fn advance(&mut self, wall_now: Nanos, idle: bool, out: &mut Output) {
        if idle {
            self.watermark.heartbeat(wall_now);
        }
        let watermark = self.watermark.get();
        for (i, rule) in self.settings.rules.iter().enumerate() {
            let early = match rule.emit {
                EmitMode::OnClose {
                    early_every: Some(every),
                } if wall_now.saturating_sub(self.early_at[i]) >= every => {
                    self.early_at[i] = wall_now;
                    true
                }
                _ => false,
            };
            let mut rows = Rows {
                rule,
                index: i,
                out: &mut out.windows,
            };
            match &mut self.states[i] {
                RuleState::Fixed(f) => f.advance(rule, watermark, early, &mut rows),
                RuleState::Sessions(s) => s.advance(rule, watermark, early, &mut rows),
            }
        }
    }

    /// The state as bytes, for a checkpoint ([`TenantWindows::import`] takes it back).
    ///
    /// # Errors
    /// When the state can't be encoded (it always can: plain data).
    pub fn export(&self) -> Result<Vec<u8>, postcard::Error> {
        #[derive(Serialize)]
        struct SavedRef<'a> {
            watermark: Watermark,
            rules: Vec<(String, u64, &'a RuleState)>,
            future: u64,
        }
        postcard::to_stdvec(&SavedRef {
            watermark: self.watermark,
            rules: self
                .settings
                .rules
                .iter()
                .zip(&self.states)
                .zip(&self.counts.late)
                .map(|((rule, state), late)| (rule.definition(), *late, state))
                .collect(),
            future: self.counts.future,
        })
    }

    /// Windows with the state `bytes` saved by [`TenantWindows::export`]. A rule whose
    /// definition changed since starts empty (its old windows can't be continued); the
    /// names of those rules are returned, to be logged.
    ///
    /// # Errors
    /// When `bytes` are not a saved state.
    pub fn import(
        settings: WindowSettings,
        bytes: &[u8],
    ) -> Result<(Self, Vec<String>), postcard::Error> {
        let saved: Saved = postcard::from_bytes(bytes)?;
        let mut windows = Self::new(settings);
        windows.watermark = saved.watermark.with_disorder(windows.settings.disorder);
        let mut by_definition: std::collections::HashMap<String, (u64, RuleState)> = saved
            .rules
            .into_iter()
            .map(|(definition, late, state)| (definition, (late, state)))
            .collect();
        let mut reset = Vec::new();
        for (i, rule) in windows.settings.rules.iter().enumerate() {
            match by_definition.remove(&rule.definition()) {
                Some((late, state)) => {
                    windows.states[i] = state;
                    windows.counts.late[i] = late;
                }
                None => reset.push(rule.name.clone()),
            }
        }
        windows.counts.future = saved.future;
        Ok((windows, reset))
    }
}

#[cfg(test)]
mod tests;
