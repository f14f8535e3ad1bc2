//! The plugin boundary: Sluice's own data types ([`crate::point`]) to and from the
//! WIT-generated ones. Conversions move strings and vectors (a `Vec` of one record type
//! becomes one of the other in place), so crossing costs no copies of the text.

use super::bindings::types as wit;
use crate::point::{
    Aggregate, Alert, AlertState, Field, FieldValue, Point, Series, Tag, WindowResult,
};

impl From<wit::FieldValue> for FieldValue {
    fn from(v: wit::FieldValue) -> Self {
        match v {
            wit::FieldValue::Float(f) => FieldValue::Float(f),
            wit::FieldValue::Integer(i) => FieldValue::Integer(i),
            wit::FieldValue::Unsigned(u) => FieldValue::Unsigned(u),
            wit::FieldValue::Boolean(b) => FieldValue::Boolean(b),
            wit::FieldValue::String(s) => FieldValue::String(s),
        }
    }
}

fn tags_in(tags: Vec<wit::Tag>) -> Vec<Tag> {
    tags.into_iter()
        .map(|wit::Tag { key, value }| Tag { key, value })
        .collect()
}

fn tags_out(tags: Vec<Tag>) -> Vec<wit::Tag> {
    tags.into_iter()
        .map(|Tag { key, value }| wit::Tag { key, value })
        .collect()
}

impl From<wit::Point> for Point {
    fn from(p: wit::Point) -> Self {
        Point {
            measurement: p.measurement,
            tags: tags_in(p.tags),
            fields: p
                .fields
                .into_iter()
                .map(|wit::Field { key, value }| Field {
                    key,
                    value: value.into(),
                })
                .collect(),
            timestamp: p.timestamp,
        }
    }
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
                measurement: w.series.measurement,
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

impl From<wit::Alert> for Alert {
    fn from(a: wit::Alert) -> Self {
        Alert {
            rule: a.rule,
            series: Series {
                measurement: a.series.measurement,
                tags: tags_in(a.series.tags),
            },
            field: a.field,
            state: a.state.into(),
            window_start: a.window_start,
            window_end: a.window_end,
            value: a.value,
            message: a.message,
        }
    }
}
