//! Window rules: what a rule selects, how it groups and windows it, what it computes and
//! when it emits; built from a tenant's `[[tenants.rollups]]` config (or an alert rule),
//! every field checked so a bad rule fails at startup with its name and the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use super::assign::{MAX_HOPS, WindowKind};
use crate::aggregate::Function;
use crate::point::{FieldValue, Nanos, Point};

/// A rollup rule as configured.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RollupConfig {
    /// The rule's name (in logs, metrics and late data).
    pub name: String,
    /// Measurements to roll up: a glob (`*` any run, `?` one character).
    #[serde(default = "any")]
    pub measurement: String,
    /// Fields to roll up: a glob. Numeric fields only; others are skipped.
    #[serde(default = "any")]
    pub fields: String,
    /// Tags a point must have, each value a glob.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Tags that make a group; absent, each series is its own group.
    pub group_by: Option<Vec<String>>,
    /// The windows: `{ tumbling = "1m" }`, `{ hopping = "5m", slide = "1m" }` or
    /// `{ session_gap = "30s" }`.
    pub window: WindowConfig,
    /// What each window reports: count, sum, min, max, mean, first, last, stddev, p50,
    /// p90, p99 or any other quantile `pN`.
    pub aggregates: Vec<String>,
    /// How long after its end a window still takes late points (and corrects its stored
    /// result). Required: no hidden default.
    pub grace: Option<String>,
    /// Emit a window's partial result this often (wall clock) while it is open; absent,
    /// windows are emitted only when they close (and when late points correct them).
    pub early_every: Option<String>,
    /// The tier the results are stored in (declared in the tenant's `tiers`).
    pub tier: String,
}

fn any() -> String {
    "*".into()
}

/// The windows of a rule, as configured: exactly one kind.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Tumbling windows of this size.
    pub tumbling: Option<String>,
    /// Hopping windows of this size...
    pub hopping: Option<String>,
    /// ...starting this often.
    pub slide: Option<String>,
    /// Session windows ended by this much inactivity.
    pub session_gap: Option<String>,
}

/// A rule is unusable: which rule, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rollup `{rule}`: `{field}`: {problem}")]
pub struct RuleError {
    /// The rule.
    pub rule: String,
    /// The field of its config.
    pub field: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// A name pattern, matched without allocating; `*` alone matches everything at no cost.
#[derive(Debug, Clone, PartialEq)]
pub enum Glob {
    /// Every name.
    Any,
    /// One name.
    Exact(String),
    /// A pattern with `*` and `?`.
    Pattern(WildMatch),
}

impl Glob {
    /// The glob of `pattern`.
    pub fn new(pattern: &str) -> Self {
        if pattern.chars().all(|c| c == '*') && !pattern.is_empty() {
            Glob::Any
        } else if pattern.contains(['*', '?']) {
            Glob::Pattern(WildMatch::new(pattern))
        } else {
            Glob::Exact(pattern.to_owned())
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(exact) => exact == name,
            Glob::Pattern(p) => p.matches(name),
        }
    }
}

/// Which points and fields a rule takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// Measurement pattern.
    pub measurement: Glob,
    /// Field pattern.
    pub field: Glob,
    /// Tags a point must have, with matching values.
    pub tags: Vec<(String, Glob)>,
}

impl Select {
    /// Whether the rule takes (some fields of) `point`.
    pub fn point(&self, point: &Point) -> bool {
        self.measurement.matches(&point.measurement)
            && self
                .tags
                .iter()
                .all(|(key, glob)| point.tag(key).is_some_and(|v| glob.matches(v)))
    }

    /// The value of a field the rule takes: numeric and finite (others can't be
    /// aggregated, and are skipped).
    pub fn value(&self, field: &str, value: &FieldValue) -> Option<f64> {
        if !self.field.matches(field) {
            return None;
        }
        value.as_f64().filter(|v| v.is_finite())
    }
}

/// When a rule's windows are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// When the watermark passes a window's end, again for each correction by a late point
    /// within grace, and (optionally) as partial results every `early_every` while open.
    OnClose {
        /// How often open windows with new points are emitted (wall clock).
        early_every: Option<Nanos>,
    },
    /// Once, when the grace period has passed: the final result (what alerting wants).
    Final,
}

/// A built rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRule {
    /// The rule's name.
    pub name: String,
    /// What it takes.
    pub select: Select,
    /// Grouping tags, sorted; none: each series is its own group.
    pub group_by: Option<Vec<String>>,
    /// Its windows.
    pub kind: WindowKind,
    /// What each window reports.
    pub aggregates: Vec<Function>,
    /// How long after its end a window still takes late points.
    pub grace: Nanos,
    /// When windows are emitted.
    pub emit: EmitMode,
}

fn duration(rule: &str, field: &'static str, text: &str) -> Result<Nanos, RuleError> {
    let error = |problem: String| RuleError {
        rule: rule.to_owned(),
        field,
        problem,
    };
    let d = humantime::parse_duration(text).map_err(|e| error(format!("`{text}`: {e}")))?;
    Nanos::try_from(d.as_nanos())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| error(format!("`{text}`: must be above zero and below 292 years")))
}

impl RollupRule {
    /// Builds and checks `config`.
    ///
    /// # Errors
    /// A [`RuleError`] naming the rule and its first bad field.
    pub fn build(config: &RollupConfig) -> Result<Self, RuleError> {
        let name = config.name.as_str();
        let error = |field: &'static str, problem: String| RuleError {
            rule: name.to_owned(),
            field,
            problem,
        };
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(error(
                "name",
                "must be non-empty, without control characters".into(),
            ));
        }
        for (field, pattern) in [
            ("measurement", &config.measurement),
            ("fields", &config.fields),
        ] {
            if pattern.is_empty() {
                return Err(error(field, "an empty pattern matches nothing".into()));
            }
        }
        let w = &config.window;
        let kind = match (&w.tumbling, &w.hopping, &w.slide, &w.session_gap) {
            (Some(size), None, None, None) => WindowKind::Tumbling {
                size: duration(name, "window.tumbling", size)?,
            },
            (None, Some(size), Some(slide), None) => {
                let size = duration(name, "window.hopping", size)?;
                let slide = duration(name, "window.slide", slide)?;
                if slide > size || size / slide > MAX_HOPS {
                    return Err(error(
                        "window.slide",
                        format!(
                            "must be at most the size and at least 1/{MAX_HOPS} of it (a point is in size/slide windows)"
                        ),
                    ));
                }
                WindowKind::Hopping { size, slide }
            }
            (None, None, None, Some(gap)) => WindowKind::Session {
                gap: duration(name, "window.session_gap", gap)?,
            },
            _ => {
                return Err(error(
                    "window",
                    "give exactly one of { tumbling = \"1m\" }, { hopping = \"5m\", slide = \"1m\" }, { session_gap = \"30s\" }".into(),
                ));
            }
        };
        if config.aggregates.is_empty() {
            return Err(error("aggregates", "name at least one".into()));
        }
        let mut aggregates = Vec::new();
        for a in &config.aggregates {
            let f: Function = a.parse().map_err(|e| error("aggregates", e))?;
            if aggregates.contains(&f) {
                return Err(error("aggregates", format!("`{a}` is named twice")));
            }
            aggregates.push(f);
        }
        let grace = match &config.grace {
            Some(g) if g.trim() == "0" || g.trim() == "0s" => 0,
            Some(g) => duration(name, "grace", g)?,
            None => {
                return Err(error(
                    "grace",
                    "required: how long after its end a window takes late points (\"0s\" for none)"
                        .into(),
                ));
            }
        };
        let early_every = config
            .early_every
            .as_deref()
            .map(|e| duration(name, "early_every", e))
            .transpose()?;
        let group_by = config.group_by.as_ref().map(|tags| {
            let mut tags = tags.clone();
            tags.sort();
            tags.dedup();
            tags
        });
        Ok(Self {
            name: name.to_owned(),
            select: Select {
                measurement: Glob::new(&config.measurement),
                field: Glob::new(&config.fields),
                tags: config
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), Glob::new(v)))
                    .collect(),
            },
            group_by,
            kind,
            aggregates,
            grace,
            emit: EmitMode::OnClose { early_every },
        })
    }

    /// The rule of an alert: tumbling windows of one field of one measurement, each
    /// series its own group, emitted once final.
    pub fn for_alert(
        name: &str,
        measurement: &str,
        field: &str,
        size: Nanos,
        grace: Nanos,
        aggregates: Vec<Function>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            select: Select {
                measurement: Glob::Exact(measurement.to_owned()),
                field: Glob::Exact(field.to_owned()),
                tags: Vec::new(),
            },
            group_by: None,
            kind: WindowKind::Tumbling { size: size.max(1) },
            aggregates,
            grace: grace.max(0),
            emit: EmitMode::Final,
        }
    }

    /// Text that changes whenever what the rule computes changes: saved window state is
    /// taken back only by a rule of the same definition.
    pub fn definition(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{}|{:?}",
            self.select, self.group_by, self.kind, self.aggregates, self.grace, self.emit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> RollupConfig {
        toml::from_str(toml_text).expect("toml")
    }

    const GOOD: &str = r#"
        name = "cpu-1m"
        measurement = "cpu*"
        fields = "usage_?"
        tags = { region = "eu-*" }
        group_by = ["host", "dc", "host"]
        window = { tumbling = "1m" }
        aggregates = ["count", "mean", "p99"]
        grace = "10s"
        tier = "1m"
    "#;

    #[test]
    fn a_rule_is_built_with_its_globs_groups_and_windows() {
        let rule = RollupRule::build(&config(GOOD)).expect("build");
        assert_eq!(
            rule.kind,
            WindowKind::Tumbling {
                size: 60_000_000_000
            }
        );
        assert_eq!(rule.grace, 10_000_000_000);
        assert_eq!(
            rule.group_by.as_deref(),
            Some(&["dc".to_owned(), "host".to_owned()][..])
        );
        let point = |lp: &str| {
            crate::lineproto::parse(lp, crate::lineproto::Precision::Nanoseconds, 0)
                .0
                .remove(0)
        };
        assert!(rule.select.point(&point("cpu0,region=eu-west usage_a=1 1")));
        assert!(!rule.select.point(&point("cpu0,region=us usage_a=1 1")));
        assert!(
            !rule.select.point(&point("cpu0 usage_a=1 1")),
            "tag required"
        );
        assert!(!rule.select.point(&point("mem,region=eu-1 usage_a=1 1")));
        assert_eq!(
            rule.select.value("usage_a", &FieldValue::Integer(3)),
            Some(3.0)
        );
        assert_eq!(rule.select.value("usage_ab", &FieldValue::Float(1.0)), None);
        assert_eq!(
            rule.select.value("usage_a", &FieldValue::Boolean(true)),
            None
        );
        assert_eq!(
            rule.select
                .value("usage_a", &FieldValue::Float(f64::INFINITY)),
            None
        );
        let hopping = RollupRule::build(&config(&GOOD.replace(
            r#"{ tumbling = "1m" }"#,
            r#"{ hopping = "5m", slide = "1m" }"#,
        )))
        .expect("hopping");
        assert_eq!(
            hopping.kind,
            WindowKind::Hopping {
                size: 300_000_000_000,
                slide: 60_000_000_000
            }
        );
        let zero = RollupRule::build(&config(&GOOD.replace(r#""10s""#, r#""0s""#))).expect("0s");
        assert_eq!(zero.grace, 0);
    }

    #[test]
    fn every_bad_field_is_named_with_the_rule() {
        for (from, to, field) in [
            (r#"grace = "10s""#, "", "grace"),
            (r#"grace = "10s""#, r#"grace = "soon""#, "grace"),
            (
                r#"{ tumbling = "1m" }"#,
                r#"{ tumbling = "0s" }"#,
                "window.tumbling",
            ),
            (r#"{ tumbling = "1m" }"#, "{}", "window"),
            (
                r#"{ tumbling = "1m" }"#,
                r#"{ tumbling = "1m", session_gap = "1m" }"#,
                "window",
            ),
            (
                r#"{ tumbling = "1m" }"#,
                r#"{ hopping = "1m", slide = "5m" }"#,
                "window.slide",
            ),
            (
                r#"{ tumbling = "1m" }"#,
                r#"{ hopping = "1d", slide = "1s" }"#,
                "window.slide",
            ),
            (r#""p99""#, r#""median""#, "aggregates"),
            (r#""p99""#, r#""mean""#, "aggregates"),
            (r#"["count", "mean", "p99"]"#, "[]", "aggregates"),
            (r#""cpu*""#, r#""""#, "measurement"),
            (
                r#"tier = "1m""#,
                "tier = \"1m\"\nearly_every = \"-1s\"",
                "early_every",
            ),
        ] {
            let text = GOOD.replace(from, to);
            let error = RollupRule::build(&config(&text)).expect_err(&text);
            assert_eq!(error.rule, "cpu-1m");
            assert_eq!(error.field, field, "{error}");
            assert!(
                error.to_string().starts_with("rollup `cpu-1m`: `"),
                "{error}"
            );
        }
    }
}
