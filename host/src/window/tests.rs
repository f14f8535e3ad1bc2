//! The engine against its semantics, and streaming results against a batch recomputation
//! over the same points.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::aggregate::Function;
use crate::lineproto::{Precision, parse};

fn rule(kind: WindowKind, grace: Nanos, emit: EmitMode, aggregates: &str) -> RollupRule {
    RollupRule {
        name: "r".into(),
        select: Select {
            measurement: Glob::new("m"),
            field: Glob::new("*"),
            tags: Vec::new(),
        },
        group_by: None,
        kind,
        aggregates: aggregates
            .split(',')
            .map(|a| a.parse().expect("aggregate"))
            .collect(),
        grace,
        emit,
    }
}

const ON_CLOSE: EmitMode = EmitMode::OnClose { early_every: None };

fn engine(rules: Vec<RollupRule>, disorder: Nanos) -> TenantWindows {
    TenantWindows::new(WindowSettings {
        rules: rules.into(),
        disorder,
        max_future: 1_000_000,
    })
}

/// Records line protocol (nanosecond times) at wall time 0, then advances.
fn feed(w: &mut TenantWindows, lp: &str) -> Output {
    let mut out = Output::default();
    for p in parse(lp, Precision::Nanoseconds, 0).0 {
        w.record(&p, 0, &mut out);
    }
    w.advance(0, false, &mut out);
    out
}

type Summary = (String, Nanos, Nanos, Emit, Vec<(String, f64)>);

fn summary(out: &Output) -> Vec<Summary> {
    out.windows
        .iter()
        .map(|r| {
            let tags: Vec<String> = r
                .group
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (
                format!(
                    "{}[{}].{}",
                    r.group.measurement,
                    tags.join(","),
                    r.group.field
                ),
                r.start,
                r.end,
                r.emit,
                r.values.iter().map(|(f, v)| (f.to_string(), *v)).collect(),
            )
        })
        .collect()
}

#[test]
fn tumbling_windows_close_on_event_time_are_corrected_within_grace_and_late_after() {
    let mut w = engine(
        vec![rule(
            WindowKind::Tumbling { size: 10 },
            5,
            ON_CLOSE,
            "count,mean,max",
        )],
        0,
    );
    let out = feed(&mut w, "m,h=a v=1 1\nm,h=a v=3 9\nm,h=b v=7 4\n");
    assert!(out.windows.is_empty(), "watermark 9 < end 10");
    let out = feed(&mut w, "m,h=a v=5 10\n");
    assert_eq!(
        summary(&out),
        [
            (
                "m[h=a].v".into(),
                0,
                10,
                Emit::Closed,
                vec![
                    ("count".into(), 2.0),
                    ("mean".into(), 2.0),
                    ("max".into(), 3.0)
                ]
            ),
            (
                "m[h=b].v".into(),
                0,
                10,
                Emit::Closed,
                vec![
                    ("count".into(), 1.0),
                    ("mean".into(), 7.0),
                    ("max".into(), 7.0)
                ]
            ),
        ]
    );
    // Late within grace (watermark 10 < end 10 + grace 5): corrected, same window.
    let out = feed(&mut w, "m,h=a v=8 2\n");
    assert_eq!(
        summary(&out),
        [(
            "m[h=a].v".into(),
            0,
            10,
            Emit::Corrected,
            vec![
                ("count".into(), 3.0),
                ("mean".into(), 4.0),
                ("max".into(), 8.0)
            ]
        )]
    );
    // Grace passes at watermark 15: the window is dropped; a point for it is late data.
    assert!(feed(&mut w, "m,h=a v=1 15\n").windows.is_empty());
    let out = feed(&mut w, "m,h=a v=9 3\n");
    assert!(out.windows.is_empty());
    assert_eq!(out.late.len(), 1);
    assert_eq!(
        (
            out.late[0].timestamp,
            out.late[0].value,
            out.late[0].field.as_str()
        ),
        (3, 9.0, "v")
    );
    assert_eq!(w.counts().late, [1]);
}

#[test]
fn final_only_rules_emit_once_when_grace_has_passed() {
    let mut w = engine(
        vec![rule(
            WindowKind::Tumbling { size: 10 },
            5,
            EmitMode::Final,
            "count",
        )],
        0,
    );
    assert!(
        feed(&mut w, "m v=1 1\nm v=1 12\n").windows.is_empty(),
        "12 < 10 + 5"
    );
    assert!(
        feed(&mut w, "m v=1 3\n").windows.is_empty(),
        "within grace: taken"
    );
    let out = feed(&mut w, "m v=1 15\n");
    assert_eq!(
        summary(&out),
        [(
            "m[].v".into(),
            0,
            10,
            Emit::Final,
            vec![("count".into(), 2.0)]
        )]
    );
}

#[test]
fn disorder_holds_the_watermark_back_and_only_an_idle_partition_follows_the_clock() {
    let mut w = engine(
        vec![rule(
            WindowKind::Tumbling { size: 10 },
            0,
            ON_CLOSE,
            "count",
        )],
        5,
    );
    assert!(
        feed(&mut w, "m v=1 1\nm v=1 14\n").windows.is_empty(),
        "14 - 5 < 10"
    );
    assert!(
        feed(&mut w, "m v=1 8\n").late.is_empty(),
        "out of order within disorder"
    );
    let mut out = Output::default();
    w.advance(1_000, false, &mut out);
    assert!(
        out.windows.is_empty(),
        "a busy partition ignores the wall clock"
    );
    w.advance(1_000, true, &mut out);
    assert_eq!(
        out.windows.len(),
        2,
        "idle: the heartbeat closes both windows"
    );
    assert_eq!(out.windows[0].values, [(Function::Count, 2.0)]);
    assert_eq!(w.watermark(), 995);
}

#[test]
fn a_backfill_closes_window_by_window_in_event_time() {
    let mut w = engine(
        vec![rule(
            WindowKind::Tumbling { size: 10 },
            0,
            ON_CLOSE,
            "count",
        )],
        0,
    );
    let mut closed = Vec::new();
    let now = 1_000_000;
    for t in (0..1_000).step_by(3) {
        let mut out = Output::default();
        w.record(
            &parse(&format!("m v={t} {t}"), Precision::Nanoseconds, 0).0[0],
            now,
            &mut out,
        );
        w.advance(now, false, &mut out);
        assert!(out.late.is_empty());
        closed.extend(out.windows);
    }
    assert_eq!(closed.len(), 99, "every window but the last");
    for (i, r) in closed.iter().enumerate() {
        assert_eq!(r.start, 10 * i as i64);
        assert!(
            matches!(r.values[..], [(Function::Count, 3.0 | 4.0)]),
            "{r:?}"
        );
    }
}

#[test]
fn a_point_from_the_future_moves_nothing() {
    let mut w = engine(
        vec![rule(
            WindowKind::Tumbling { size: 10 },
            0,
            ON_CLOSE,
            "count",
        )],
        0,
    );
    let mut out = Output::default();
    let far = &parse("m v=1 4102444800000000000", Precision::Nanoseconds, 0).0[0];
    w.record(far, 100, &mut out);
    assert_eq!(w.counts().future, 1);
    assert_eq!(w.watermark(), Nanos::MIN, "the watermark did not move");
    let out = feed(&mut w, "m,h=a v=1 90\nm,h=a v=3 95\nm,h=b v=1 101\n");
    assert!(out.late.is_empty(), "later points are not late");
    assert_eq!(out.windows.len(), 1, "[90,100) closed by event time only");
    assert_eq!(out.windows[0].start, 90);
}

#[test]
fn hopping_windows_hold_each_point_size_over_slide_times() {
    let mut w = engine(
        vec![rule(
            WindowKind::Hopping { size: 10, slide: 5 },
            0,
            ON_CLOSE,
            "count,sum",
        )],
        0,
    );
    let out = feed(&mut w, "m v=1 1\nm v=2 6\nm v=4 11\nm v=100 30\n");
    let rows: Vec<_> = out
        .windows
        .iter()
        .map(|r| (r.start, r.end, r.values.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (-5, 5, vec![(Function::Count, 1.0), (Function::Sum, 1.0)]),
            (0, 10, vec![(Function::Count, 2.0), (Function::Sum, 3.0)]),
            (5, 15, vec![(Function::Count, 2.0), (Function::Sum, 6.0)]),
            (10, 20, vec![(Function::Count, 1.0), (Function::Sum, 4.0)]),
        ]
    );
}

#[test]
fn a_bridging_point_merges_sessions_and_retracts_the_one_emitted_at_the_old_start() {
    let mut w = engine(
        vec![rule(
            WindowKind::Session { gap: 10 },
            100,
            ON_CLOSE,
            "count,first,last",
        )],
        0,
    );
    // Two sessions: [0, 18) and [25, 40); the first closes at watermark 30.
    let out = feed(&mut w, "m v=1 0\nm v=2 8\nm v=3 25\nm v=4 30\n");
    assert_eq!(
        summary(&out),
        [(
            "m[].v".into(),
            0,
            18,
            Emit::Closed,
            vec![
                ("count".into(), 2.0),
                ("first".into(), 1.0),
                ("last".into(), 2.0)
            ]
        )]
    );
    // 16 is within gap of both: one session [0, 40), open again until the watermark passes
    // 40. The one at 25 was never emitted; the one at 0 is corrected.
    assert!(feed(&mut w, "m v=7 16\n").windows.is_empty());
    let out = feed(&mut w, "m v=0 200\n");
    assert_eq!(
        summary(&out),
        [(
            "m[].v".into(),
            0,
            40,
            Emit::Corrected,
            vec![
                ("count".into(), 5.0),
                ("first".into(), 1.0),
                ("last".into(), 4.0)
            ]
        )]
    );
    // Within grace a point before the session's start moves it: the old row is retracted.
    let mut w = engine(
        vec![rule(
            WindowKind::Session { gap: 10 },
            100,
            ON_CLOSE,
            "count",
        )],
        0,
    );
    feed(&mut w, "m v=1 50\nm v=1 100\n");
    let out = feed(&mut w, "m v=1 45\n");
    let kinds: Vec<_> = out.windows.iter().map(|r| (r.start, r.emit)).collect();
    assert_eq!(kinds, [(50, Emit::Retracted), (45, Emit::Corrected)]);
}

#[test]
fn early_updates_come_every_interval_while_a_window_is_open() {
    let every = 1_000;
    let mut w = engine(
        vec![rule(
            WindowKind::Tumbling { size: 10 },
            0,
            EmitMode::OnClose {
                early_every: Some(every),
            },
            "count",
        )],
        0,
    );
    let mut out = Output::default();
    for (wall, t) in [(0, 1), (500, 2), (1_000, 3), (1_500, 4)] {
        w.record(
            &parse(&format!("m v=1 {t}"), Precision::Nanoseconds, 0).0[0],
            wall,
            &mut out,
        );
        w.advance(wall, false, &mut out);
    }
    let emitted: Vec<_> = out
        .windows
        .iter()
        .map(|r| (r.emit, r.values[0].1))
        .collect();
    assert_eq!(emitted, [(Emit::Early, 1.0), (Emit::Early, 3.0)]);
}

#[test]
fn state_exported_and_imported_continues_as_if_never_interrupted() {
    let rules = || {
        vec![
            rule(
                WindowKind::Tumbling { size: 10 },
                5,
                ON_CLOSE,
                "count,mean,p99",
            ),
            rule(WindowKind::Session { gap: 7 }, 5, ON_CLOSE, "count,sum"),
        ]
    };
    let input: Vec<String> = (0..200)
        .map(|i| format!("m,h={} v={} {}", i % 3, i, (i * 7919) % 300))
        .collect();
    let run = |cut: Option<usize>| {
        let mut w = engine(rules(), 20);
        let mut out = Output::default();
        for (i, line) in input.iter().enumerate() {
            if Some(i) == cut {
                let bytes = w.export().expect("export");
                let (back, reset) = TenantWindows::import(
                    WindowSettings {
                        rules: rules().into(),
                        disorder: 20,
                        max_future: 1_000_000,
                    },
                    &bytes,
                )
                .expect("import");
                assert!(reset.is_empty());
                w = back;
            }
            w.record(&parse(line, Precision::Nanoseconds, 0).0[0], 0, &mut out);
            w.advance(0, false, &mut out);
        }
        w.advance(Nanos::MAX, true, &mut out);
        (summary(&out), out.late, w.counts().clone())
    };
    let whole = run(None);
    assert!(
        !whole.0.is_empty() && !whole.1.is_empty(),
        "windows and late data both"
    );
    for cut in [1, 57, 199] {
        assert_eq!(run(Some(cut)), whole, "cut at {cut}");
    }
    // A changed rule starts over; the others keep their state.
    let w = engine(rules(), 20);
    let bytes = w.export().expect("export");
    let mut changed = rules();
    changed[1].grace = 6;
    let (_, reset) = TenantWindows::import(
        WindowSettings {
            rules: changed.into(),
            disorder: 20,
            max_future: 1_000_000,
        },
        &bytes,
    )
    .expect("import");
    assert_eq!(reset, ["r"]);
    assert!(
        TenantWindows::import(
            WindowSettings {
                rules: rules().into(),
                disorder: 0,
                max_future: 0
            },
            b"junk"
        )
        .is_err()
    );
}

/// The windows' final results, as a store holding the emitted rows (upserted by start,
/// deleted by a retraction) would have them.
fn stored(out: &Output) -> BTreeMap<(usize, Group, Nanos), (Nanos, crate::aggregate::Values)> {
    let mut rows = BTreeMap::new();
    for r in &out.windows {
        let key = (r.rule, r.group.clone(), r.start);
        match r.emit {
            Emit::Retracted => {
                rows.remove(&key);
            }
            Emit::Early => {}
            Emit::Closed | Emit::Corrected | Emit::Final => {
                rows.insert(key, (r.end, r.values.clone()));
            }
        }
    }
    rows
}

/// A window's aggregates computed directly from its values (arrival order), as a batch
/// job would: sorted sums, two-pass deviation.
fn batch_values(values: &[(Nanos, f64)], functions: &[Function]) -> Vec<(Function, f64)> {
    let n = values.len() as f64;
    let mut sorted: Vec<f64> = values.iter().map(|(_, v)| *v).collect();
    sorted.sort_by(f64::total_cmp);
    let sum: f64 = sorted.iter().sum();
    let mean = sum / n;
    let first = values
        .iter()
        .fold(values[0], |a, b| if b.0 < a.0 { *b } else { a });
    let last = values
        .iter()
        .fold(values[0], |a, b| if b.0 >= a.0 { *b } else { a });
    functions
        .iter()
        .filter_map(|f| {
            Some((
                *f,
                match f {
                    Function::Count => n,
                    Function::Sum => sum,
                    Function::Mean => mean,
                    Function::Min => sorted[0],
                    Function::Max => sorted[sorted.len() - 1],
                    Function::First => first.1,
                    Function::Last => last.1,
                    Function::Stddev if values.len() < 2 => return None,
                    Function::Stddev => {
                        (sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                    }
                    Function::Quantile(q) => {
                        sorted[(q.fraction() * (sorted.len() - 1) as f64) as usize]
                    }
                },
            ))
        })
        .collect()
}

fn close_enough(got: &[(Function, f64)], want: &[(Function, f64)]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|((fa, a), (fb, b))| {
            let tolerance = if matches!(fa, Function::Quantile(_)) {
                // DDSketch: within 1 % of the true value.
                b.abs() * crate::aggregate::SKETCH_RELATIVE_ERROR * 1.000_001 + 1e-9
            } else {
                1e-9 * a.abs().max(b.abs()).max(1.0)
            };
            fa == fb && (a - b).abs() <= tolerance
        })
}

const AGGREGATES: &str = "count,sum,min,max,mean,first,last,stddev,p50,p99";

/// Random out-of-order input: (group, time, value), in arrival order, delivered in
/// random batches.
fn input() -> impl Strategy<Value = (Vec<(u8, i64, i32)>, Vec<usize>)> {
    (
        proptest::collection::vec((0u8..4, 0i64..2_000, -1_000i32..1_000), 1..300),
        proptest::collection::vec(1usize..40, 1..20),
    )
}

fn run_stream(
    rules: Vec<RollupRule>,
    disorder: Nanos,
    points: &[(u8, i64, i32)],
    batches: &[usize],
) -> (Output, TenantWindows) {
    let mut w = engine(rules, disorder);
    let mut out = Output::default();
    let mut sizes = batches.iter().cycle();
    let mut rest = points;
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
        for (g, t, v) in &rest[..n] {
            let p = &parse(&format!("m,g={g} v={v} {t}"), Precision::Nanoseconds, 0).0[0];
            w.record(p, 0, &mut out);
        }
        w.advance(0, false, &mut out);
        rest = &rest[n..];
    }
    w.advance(Nanos::MAX, true, &mut out);
    (out, w)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fixed_windows_stream_to_what_a_batch_recomputation_gives(
        (points, batches) in input(),
        size in 1i64..300,
        hops in 1i64..4,
        grace in 0i64..300,
        disorder in 0i64..300,
    ) {
        let slide = (size / hops).max(1);
        let kind = if hops == 1 { WindowKind::Tumbling { size } } else { WindowKind::Hopping { size, slide } };
        let r = rule(kind, grace, ON_CLOSE, AGGREGATES);
        let (out, w) = run_stream(vec![r.clone()], disorder, &points, &batches);

        // The batch: the watermark before each point decides whether it is late for a
        // window (dropped once the watermark reaches end + grace); the rest are grouped.
        let mut windows: BTreeMap<(u8, i64), Vec<(Nanos, f64)>> = BTreeMap::new();
        let mut late = 0u64;
        let mut watermark = Nanos::MIN;
        for (g, t, v) in &points {
            let mut is_late = false;
            for span in kind.fixed(*t) {
                if span.end + i128::from(grace) <= i128::from(watermark) {
                    is_late = true;
                } else {
                    windows.entry((*g, span.start as i64)).or_default().push((*t, f64::from(*v)));
                }
            }
            late += u64::from(is_late);
            watermark = watermark.max(t - disorder);
        }
        prop_assert_eq!(w.counts().late[0], late);
        prop_assert_eq!(out.late.len() as u64, late);
        let rows = stored(&out);
        prop_assert_eq!(rows.len(), windows.len());
        for ((g, start), values) in &windows {
            let group = Group { measurement: "m".into(), tags: vec![("g".into(), g.to_string())], field: "v".into() };
            let row = rows.get(&(0, group, *start));
            prop_assert!(row.is_some(), "window {} of g={} missing", start, g);
            let (end, got) = row.expect("row");
            prop_assert_eq!(*end, start + size);
            let want = batch_values(values, &r.aggregates);
            prop_assert!(close_enough(got, &want), "g={} [{}, {}): {:?} vs {:?}", g, start, end, got, want);
        }
        prop_assert_eq!(w.open_windows(), 0, "all closed and dropped at the end of time");
    }

    #[test]
    fn sessions_stream_to_what_a_batch_recomputation_gives(
        (points, batches) in input(),
        gap in 1i64..200,
        disorder in 0i64..300,
    ) {
        // Grace past every input time: nothing is late, so the batch is plain sessions.
        let r = rule(WindowKind::Session { gap }, 10_000, ON_CLOSE, AGGREGATES);
        let (out, _) = run_stream(vec![r.clone()], disorder, &points, &batches);
        prop_assert!(out.late.is_empty());
        let mut by_group: BTreeMap<u8, Vec<(Nanos, f64)>> = BTreeMap::new();
        for (g, t, v) in &points {
            by_group.entry(*g).or_default().push((*t, f64::from(*v)));
        }
        let mut want = BTreeMap::new();
        for (g, values) in by_group {
            let mut times: Vec<Nanos> = values.iter().map(|(t, _)| *t).collect();
            times.sort_unstable();
            // Sessions: runs of times less than gap apart.
            let mut start = times[0];
            let mut last = times[0];
            let mut sessions = Vec::new();
            for t in times.into_iter().skip(1) {
                if t - last >= gap {
                    sessions.push((start, last));
                    start = t;
                }
                last = t;
            }
            sessions.push((start, last));
            for (start, last) in sessions {
                let inside: Vec<_> = values.iter().copied().filter(|(t, _)| (start..=last).contains(t)).collect();
                want.insert((g, start), (last + gap, batch_values(&inside, &r.aggregates)));
            }
        }
        let rows = stored(&out);
        prop_assert_eq!(rows.len(), want.len(), "{:?}", rows.keys().collect::<Vec<_>>());
        for ((g, start), (end, values)) in &want {
            let group = Group { measurement: "m".into(), tags: vec![("g".into(), g.to_string())], field: "v".into() };
            let row = rows.get(&(0, group, *start));
            prop_assert!(row.is_some(), "session at {} of g={} missing", start, g);
            let (got_end, got) = row.expect("row");
            prop_assert_eq!(got_end, end);
            prop_assert!(close_enough(got, values), "{:?} vs {:?}", got, values);
        }
    }

    #[test]
    fn sessions_with_late_data_account_for_every_value(
        (points, batches) in input(),
        gap in 1i64..200,
        grace in 0i64..200,
        disorder in 0i64..100,
    ) {
        let r = rule(WindowKind::Session { gap }, grace, ON_CLOSE, "count");
        let (out, w) = run_stream(vec![r], disorder, &points, &batches);
        let rows = stored(&out);
        let counted: f64 = rows.values().map(|(_, v)| v[0].1).sum();
        prop_assert_eq!(counted as u64 + out.late.len() as u64, points.len() as u64);
        // A group's sessions never overlap, and each spans at least the gap.
        let mut last_end: BTreeMap<Group, Nanos> = BTreeMap::new();
        for ((_, group, start), (end, _)) in &rows {
            prop_assert!(end - start >= gap);
            if let Some(previous) = last_end.insert(group.clone(), *end) {
                prop_assert!(previous <= *start, "{:?} overlaps at {}", group, start);
            }
        }
        prop_assert_eq!(w.open_windows(), 0);
    }

    #[test]
    fn no_timestamp_panics_or_wraps_any_window_kind(
        times in proptest::collection::vec(any::<i64>(), 1..60),
        size in 1i64..i64::MAX,
        grace in 0i64..i64::MAX,
        disorder in 0i64..i64::MAX,
        kind in 0u8..3,
        now in any::<i64>(),
    ) {
        let kind = match kind {
            0 => WindowKind::Tumbling { size },
            1 => WindowKind::Hopping { size, slide: (size / 3).max(1) },
            _ => WindowKind::Session { gap: size },
        };
        let mut w = TenantWindows::new(WindowSettings {
            rules: vec![rule(kind, grace, ON_CLOSE, "count,mean,p99")].into(),
            disorder,
            max_future: Nanos::MAX,
        });
        let mut out = Output::default();
        for t in &times {
            w.record(&parse(&format!("m v=1 {t}"), Precision::Nanoseconds, 0).0[0], now, &mut out);
            w.advance(now, true, &mut out);
        }
        w.advance(Nanos::MAX, true, &mut out);
        for r in out.windows.iter().filter(|r| r.emit != Emit::Retracted) {
            prop_assert!(r.start <= r.end);
            prop_assert!(times.iter().any(|t| r.start <= *t && (*t < r.end || r.end == Nanos::MAX)), "{:?}", r);
        }
    }
}
