//! The plugin boundary: Sluice's own data types ([`crate::point`]) to and from the
//! WIT-generated ones (points cross as a columnar batch: [`super::batch`]). Conversions move
//! vectors, and strings where they are strings on both sides.

use super::bindings::types as wit;
use crate::point::{Aggregate, Alert, AlertState, Tag, WindowResult};

fn tags_out(tags: Vec<Tag>) -> Vec<wit::Tag> {
    tags.into_iter()
        .map(|Tag { key, value }| wit::Tag {
            key: key.into(),
            value: value.into(),
        })
        .collect()
}

impl From<wit::AlertState> for AlertState {
    fn from(s: wit::AlertState) -> Self {
        match s {
            wit::AlertState::Ok => AlertState::Ok,
            wit::AlertState::Warning => AlertState::Warning,
            wit::AlertState::Critical => AlertState::Critical,
        }
    }
}

impl From<AlertState> for wit::AlertState {
    fn from(s: AlertState) -> Self {
        match s {
            AlertState::Ok => wit::AlertState::Ok,
            AlertState::Warning => wit::AlertState::Warning,
            AlertState::Critical => wit::AlertState::Critical,
        }
    }
}

impl From<WindowResult> for wit::WindowResult {
    fn from(w: WindowResult) -> Self {
        wit::WindowResult {
            rule: w.rule,
            series: wit::Series {
                measurement: w.series.measurement.into(),
                tags: tags_out(w.series.tags),
            },
            field: w.field,
            window_start: w.window_start,
            window_end: w.window_end,
            aggregates: w
                .aggregates
                .into_iter()
                .map(|Aggregate { name, value }| wit::Aggregate { name, value })
                .collect(),
            state: w.state.into(),
        }
    }
}

/// The alert `a` raises for `window`, the window it names.
pub fn alert(a: wit::Alert, window: &WindowResult) -> Alert {
    Alert {
        rule: window.rule.clone(),
        series: window.series.clone(),
        field: window.field.clone(),
        state: a.state.into(),
        window_start: window.window_start,
        window_end: window.window_end,
        value: a.value,
        message: a.message,
    }
}
