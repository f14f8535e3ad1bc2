//! The example plugins, run through the host as the service runs them.

use std::sync::Arc;

use sluice::columns::Columns;
use sluice::lookup::LookupTables;
use sluice::pipeline::{AlertStates, DeadLetterLog, Stage};
use sluice::plugin::{CallEnv, World};
use sluice::point::{Aggregate, AlertState, FieldValue, Point, Series, WindowResult};
use sluice::tenant::TenantId;

use crate::common::{env, load, points};
use crate::failures::registry_with;

#[test]
fn drop_filter_drops_by_measurement_and_tag_patterns() {
    let plugin = load("drop-filter");
    assert_eq!(plugin.world(), World::Filter);
    let batch = points(
        "cpu,host=web-1 v=1 1\n\
         swap,host=web-1 v=1 2\n\
         swapfile,host=web-1 v=1 3\n\
         cpu,host=test-7 v=1 4\n\
         mem,host=web-2 v=1 5\n",
    );
    let verdicts = plugin
        .filter(
            &batch,
            &env(&[("measurement", "swap*"), ("tag", "host=test-?")]),
        )
        .expect("filter");
    assert_eq!(verdicts, [true, false, false, false, true]);

    let inverted = plugin
        .filter(
            &batch,
            &env(&[
                ("measurement", "swap*"),
                ("tag", "host=test-?"),
                ("invert", "true"),
            ]),
        )
        .expect("filter");
    assert_eq!(inverted, [false, true, true, true, false]);

    let all = plugin.filter(&batch, &env(&[])).expect("filter");
    assert!(all.iter().all(|k| *k), "no patterns keeps everything");
}

#[test]
fn a_filter_stage_reads_the_records_columns_and_hands_on_those_of_the_points_it_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry_with(dir.path(), &["drop-filter", "enrich"], 3);
    let dead = Arc::new(
        DeadLetterLog::open(&dir.path().join("dead.jsonl"), Default::default())
            .expect("dead letters"),
    );
    let stage = |plugin: &str, params: &[(&str, &str)]| {
        let slot = registry.get(plugin).expect("slot");
        Stage::new(&TenantId::new("t"), plugin, slot, env(params), dead.clone()).expect("stage")
    };
    let filter = stage("drop-filter", &[("measurement", "swap*")]);
    let state = Arc::new(filter.new_state());
    let batch = points("cpu,host=é v=1 1\nswap,host=a v=2 2\nmem,host=b v=3 3\n");
    // Given the record's columns, the plugin reads them, not an encoding of the points:
    // here they differ on purpose (the third point is a `swap` in the columns only).
    let columns = Columns::from_points(&points(
        "cpu,host=é v=1 1\nswap,host=a v=2 2\nswap,host=b v=3 3\n",
    ));
    let out = filter
        .process_with(batch.clone(), Some(columns), &state)
        .expect("process");
    assert_eq!(out.points.as_deref(), Some(&batch[..1]));
    // The kept points' own columns go on to the next stage.
    let kept = out.columns.expect("a filter hands its columns on");
    assert_eq!(kept.to_points(), Ok(batch[..1].to_vec()));
    // Without columns, the stage encodes the points.
    let out = filter
        .process_with(batch.clone(), None, &state)
        .expect("process");
    let expected = vec![batch[0].clone(), batch[2].clone()];
    assert_eq!(out.points.as_ref(), Some(&expected));
    assert_eq!(out.columns.expect("columns").to_points(), Ok(expected));
    // A transform's points are new ones: it hands no columns on.
    let transform = stage("enrich", &[]);
    let out = transform
        .process_with(batch.clone(), Some(Columns::from_points(&batch)), &state)
        .expect("process");
    assert_eq!(out.points.map(|p| p.len()), Some(3));
    assert!(out.columns.is_none());
}

#[test]
fn enrich_converts_units_and_adds_lookup_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("hosts.csv");
    std::fs::write(&csv, "host,dc,rack\nweb-1,eu-1,r7\n").expect("write csv");
    let mut tables = LookupTables::default();
    tables.load_csv("hosts", &csv).expect("load csv");
    let plugin = load("enrich");
    let env = CallEnv {
        lookups: Arc::new(tables),
        ..env(&[
            ("convert", "temp:fahrenheit:celsius,used:mib:gib"),
            ("lookup_table", "hosts"),
            ("lookup_key", "host"),
        ])
    };
    let out = plugin
        .transform(
            &points(
                "sensor,host=web-1,dc=keep temp=212,used=2048i 1\nsensor,host=web-9 temp=32 2\n",
            ),
            &env,
        )
        .expect("transform");
    assert_eq!(out.len(), 2);
    let first = &out[0];
    assert_eq!(
        first.field("temp").and_then(FieldValue::as_f64),
        Some(100.0)
    );
    assert_eq!(first.field("used").and_then(FieldValue::as_f64), Some(2.0));
    assert_eq!(first.tag("rack"), Some("r7"), "lookup adds columns as tags");
    assert_eq!(
        first.tag("dc"),
        Some("keep"),
        "existing tags win without overwrite=true"
    );
    let second = &out[1];
    assert_eq!(second.field("temp").and_then(FieldValue::as_f64), Some(0.0));
    assert_eq!(second.tag("rack"), None, "no row, no tags");

    let bad = plugin
        .transform(
            &out,
            &crate::common::env(&[("convert", "temp:furlongs:celsius")]),
        )
        .expect_err("unknown unit");
    assert!(bad.to_string().contains("convert"), "{bad}");
}

fn rate_of(points: &[Point]) -> Vec<Option<f64>> {
    points
        .iter()
        .map(|p| p.field("bytes_rate").and_then(FieldValue::as_f64))
        .collect()
}

#[test]
fn rate_carries_counter_state_across_batches_and_handles_resets() {
    let plugin = load("rate");
    let env = env(&[("fields", "bytes")]);
    let s = 1_000_000_000i64;
    let first = plugin
        .transform(
            &points(&format!(
                "net,if=eth0 bytes=100i {}\nnet,if=eth1 bytes=5i {}\n",
                s, s
            )),
            &env,
        )
        .expect("first batch");
    assert_eq!(rate_of(&first), [None, None], "no previous sample yet");

    let second = plugin
        .transform(
            &points(&format!(
                "net,if=eth0 bytes=300i {}\nnet,if=eth0 bytes=50i {}\nnet,if=eth1 bytes=5i {}\n",
                3 * s,
                4 * s,
                3 * s
            )),
            &env,
        )
        .expect("second batch");
    // eth0: (300-100)/2s = 100/s; then a reset to 50: 50/1s; eth1 unchanged: 0/s.
    assert_eq!(rate_of(&second), [Some(100.0), Some(50.0), Some(0.0)]);
    assert_eq!(
        second[0].field("bytes"),
        Some(&FieldValue::Integer(300)),
        "original kept"
    );
}

fn window(value: f64, state_end: i64) -> WindowResult {
    WindowResult {
        rule: "cpu-high".into(),
        series: Series {
            measurement: "cpu".into(),
            tags: points("cpu,host=a v=1 1")[0].tags.clone(),
        },
        field: "usage".into(),
        window_start: state_end - 60,
        window_end: state_end,
        aggregates: vec![Aggregate {
            name: "mean".into(),
            value,
        }],
        state: AlertState::Ok,
    }
}

#[test]
fn threshold_alert_fires_escalates_and_resolves_with_hysteresis() {
    let plugin = load("threshold-alert");
    assert_eq!(plugin.world(), World::Alert);
    let env = env(&[
        ("warn_above", "80"),
        ("crit_above", "90"),
        ("hysteresis", "5"),
    ]);
    let states = AlertStates::default();
    let mut transitions = Vec::new();
    for (i, value) in [50.0, 85.0, 82.0, 78.0, 92.0, 87.0, 84.0, 74.0, 70.0]
        .into_iter()
        .enumerate()
    {
        let alerts = states
            .evaluate(&plugin, vec![window(value, i as i64 * 60)], &env)
            .expect("evaluate");
        assert!(alerts.len() <= 1);
        if let Some(a) = alerts.first() {
            assert_eq!(a.rule, "cpu-high");
            assert_eq!(a.field, "usage");
            transitions.push((value, a.state));
        }
    }
    // 85 enters warning; 82 and 78 stay (78 > 80-5); 92 goes critical; 87 stays (> 90-5);
    // 84 drops to warning; 74 resolves (< 80-5); 70 stays ok: no alert.
    assert_eq!(
        transitions,
        [
            (85.0, AlertState::Warning),
            (92.0, AlertState::Critical),
            (84.0, AlertState::Warning),
            (74.0, AlertState::Ok),
        ]
    );
}
