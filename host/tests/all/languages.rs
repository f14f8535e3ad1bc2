//! The same plugin logic in Rust, Python and JavaScript gives the same answers through the
//! real host: 10,000 points with non-ASCII measurements, tag keys and values and string
//! fields, where a guest that indexed the batch's text by characters instead of bytes would
//! match the wrong text. Each build runs in the code of both compilers (optimizing and
//! baseline).

use sluice::plugin::{LoadedPlugin, PluginLimits};
use sluice::point::{Aggregate, AlertState, Field, FieldValue, Point, Series, Tag, WindowResult};

use crate::common::{TIERS, env, load_tier};

const LANGUAGES: [&str; 3] = ["", "-py", "-js"];

/// 10,000 points: measurements, tags and strings in several scripts, every field type.
fn points() -> Vec<Point> {
    let measurements = ["cpu", "température", "swap", "swäp-файл", "温度", "mem"];
    let hosts = ["wéb-1", "web-2", "db-🚀", "東京-3", "web-é"];
    (0..10_000usize)
        .map(|i| {
            let mut tags = vec![
                Tag {
                    key: "host".into(),
                    value: hosts[i % hosts.len()].into(),
                },
                Tag {
                    key: "城市".into(),
                    value: if i % 3 == 0 { "東京" } else { "Zürich" }.into(),
                },
            ];
            if i % 7 == 0 {
                tags.push(Tag {
                    key: "ünit".into(),
                    value: "°C".into(),
                });
            }
            tags.sort_by(|a, b| a.key.cmp(&b.key));
            Point {
                measurement: measurements[i % measurements.len()].into(),
                tags,
                fields: vec![
                    Field {
                        key: "value".into(),
                        value: FieldValue::Float((i % 200) as f64 / 2.0 - 1.25),
                    },
                    Field {
                        key: "note".into(),
                        value: FieldValue::String(format!("ñ{i}✓")),
                    },
                    Field {
                        key: "n".into(),
                        value: FieldValue::Integer(-(i as i64)),
                    },
                    Field {
                        key: "u".into(),
                        value: FieldValue::Unsigned(u64::MAX - i as u64),
                    },
                    Field {
                        key: "ok".into(),
                        value: FieldValue::Boolean(i % 2 == 0),
                    },
                ],
                timestamp: 1_700_000_000_000_000_000 + i as i64,
            }
        })
        .collect()
}

/// Each language's build of plugin `name`, in the code of each compiler: a new version of
/// a big component serves baseline code first, which must answer the same.
fn each_language(name: &str) -> Vec<(String, LoadedPlugin)> {
    LANGUAGES
        .iter()
        .flat_map(|suffix| {
            TIERS.into_iter().map(move |tier| {
                let file = format!("{name}{suffix}");
                let plugin = load_tier(&file, PluginLimits::default(), tier);
                (format!("{file} ({tier:?})"), plugin)
            })
        })
        .collect()
}

#[test]
fn drop_filter_gives_the_same_verdicts_in_every_language() {
    let points = points();
    let plugins = each_language("drop-filter");
    let cases: [&[(&str, &str)]; 4] = [
        &[("measurement", "swap*,温?")],
        &[("tag", "host=wéb-?,城市=東*")],
        &[
            ("measurement", "*é*"),
            ("tag", "ünit=°?"),
            ("invert", "true"),
        ],
        &[("tag", "host=*🚀")],
    ];
    for params in cases {
        let env = env(params);
        let mut answers = Vec::new();
        for (file, plugin) in &plugins {
            let verdicts: Vec<bool> = points
                .chunks(1000)
                .flat_map(|batch| {
                    plugin
                        .filter(batch, &env)
                        .unwrap_or_else(|e| panic!("{file} {params:?}: {e}"))
                })
                .collect();
            answers.push((file, verdicts));
        }
        let (reference, verdicts) = &answers[0];
        let kept = verdicts.iter().filter(|k| **k).count();
        assert!(
            kept > 0 && kept < points.len(),
            "{params:?} keeps {kept}: a case that keeps all or none tells nothing"
        );
        for (file, other) in &answers[1..] {
            let differ = verdicts.iter().zip(other).position(|(a, b)| a != b);
            assert!(
                differ.is_none(),
                "{file} differs from {reference} for {params:?} first at point {:?}: {:?}",
                differ,
                differ.map(|i| &points[i])
            );
        }
    }
}

/// Closed windows of the points' series: the point's `value` as mean, in turn from every
/// prior state.
fn windows(points: &[Point]) -> Vec<WindowResult> {
    let states = [AlertState::Ok, AlertState::Warning, AlertState::Critical];
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let value = p.field("value").and_then(FieldValue::as_f64).unwrap_or(0.0);
            WindowResult {
                rule: "heat-é".into(),
                series: Series {
                    measurement: p.measurement.clone(),
                    tags: p.tags.clone(),
                },
                field: "value".into(),
                window_start: p.timestamp - 60_000_000_000,
                window_end: p.timestamp,
                aggregates: vec![
                    Aggregate {
                        name: "mean".into(),
                        value: value + 20.0,
                    },
                    Aggregate {
                        name: "max".into(),
                        value: value * 1.5,
                    },
                ],
                state: states[i % states.len()],
            }
        })
        .collect()
}

#[test]
fn threshold_alert_raises_the_same_alerts_in_every_language() {
    let windows = windows(&points());
    let plugins = each_language("threshold-alert");
    let cases: [&[(&str, &str)]; 2] = [
        &[
            ("warn_above", "60"),
            ("crit_above", "90"),
            ("hysteresis", "5"),
        ],
        &[("aggregate", "max"), ("crit_above", "70.5")],
    ];
    for params in cases {
        let env = env(params);
        let mut answers = Vec::new();
        for (file, plugin) in &plugins {
            let alerts: Vec<_> = windows
                .chunks(1000)
                .flat_map(|batch| {
                    plugin
                        .evaluate(batch, &env)
                        .unwrap_or_else(|e| panic!("{file} {params:?}: {e}"))
                })
                .collect();
            answers.push((file, alerts));
        }
        let (reference, alerts) = &answers[0];
        assert!(alerts.len() > 100, "{params:?}: {} alerts", alerts.len());
        for (file, other) in &answers[1..] {
            assert_eq!(
                other.len(),
                alerts.len(),
                "{file} vs {reference} {params:?}"
            );
            for (a, b) in alerts.iter().zip(other) {
                assert_eq!(a, b, "{file} vs {reference} {params:?}");
            }
        }
    }
}
