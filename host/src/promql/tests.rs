//! The evaluator over series held in memory.

use super::*;

/// Series in memory.
struct Mem(Vec<RawSeries>);

impl Source for Mem {
    fn select(
        &self,
        matchers: &[Matcher],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<RawSeries>, EvalError> {
        Ok(self
            .0
            .iter()
            .filter(|s| matchers.iter().all(|m| m.is_match(s.labels.value(&m.name))))
            .map(|s| RawSeries {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| (start..=end).contains(t))
                    .collect(),
            })
            .collect())
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    )
}

fn series(pairs: &[(&str, &str)], samples: &[(Millis, f64)]) -> RawSeries {
    RawSeries {
        labels: labels(pairs),
        samples: samples.to_vec(),
    }
}

/// Samples every 15 s from 0 to `until` s of `f(seconds)`.
fn every_15s(until: i64, f: impl Fn(f64) -> f64) -> Vec<(Millis, f64)> {
    (0..=until / 15)
        .map(|i| (i * 15_000, f((i * 15) as f64)))
        .collect()
}

fn run(source: &Mem, query: &str, grid: Grid) -> Result<Evaluated, EvalError> {
    evaluate(&parse(query)?, grid, source, Limits::default())
}

/// An instant query's vector, as (labels, value) sorted by labels.
fn instant(source: &Mem, query: &str, at_secs: i64) -> Vec<(String, f64)> {
    match run(source, query, Grid::instant(at_secs * 1000)).expect(query) {
        Evaluated::Vector(v) => {
            let mut out: Vec<(String, f64)> = v
                .into_iter()
                .filter_map(|s| Some((s.labels.to_string(), s.values[0]?)))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("{query}: not a vector: {other:?}"),
    }
}

fn error(source: &Mem, query: &str) -> String {
    run(source, query, Grid::instant(60_000))
        .expect_err(query)
        .to_string()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn http_requests() -> Mem {
    Mem(vec![
        series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a"),
            ],
            &every_15s(600, |t| t),
        ),
        series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "b"),
            ],
            &every_15s(600, |t| 2.0 * t),
        ),
        series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "db"),
                ("instance", "a"),
            ],
            &every_15s(600, |t| 3.0 * t),
        ),
    ])
}

#[test]
fn instant_selectors_look_back_five_minutes_inclusive_and_stop_at_staleness_markers() {
    let stale = f64::from_bits(crate::ingest::remote_write::STALE_NAN);
    let source = Mem(vec![
        series(&[("__name__", "old")], &[(0, 1.0)]),
        series(&[("__name__", "gone")], &[(0, 1.0), (60_000, stale)]),
    ]);
    assert_eq!(
        instant(&source, "old", 300),
        [(r#"{__name__="old"}"#.into(), 1.0)]
    );
    assert!(instant(&source, "old", 301).is_empty());
    assert_eq!(instant(&source, "gone", 59).len(), 1);
    assert!(instant(&source, "gone", 60).is_empty());
    // A range function reads around the marker.
    assert_eq!(
        instant(&source, "count_over_time(gone[5m])", 60),
        [("{}".into(), 1.0)]
    );
}

#[test]
fn rate_over_a_range_query_matches_the_counter_slope_at_every_step() {
    let source = http_requests();
    let grid = Grid {
        start: 120_000,
        end: 600_000,
        step: 60_000,
    };
    let Evaluated::Vector(v) =
        run(&source, r#"rate(http_requests_total{job="api"}[1m])"#, grid).expect("rate")
    else {
        panic!("not a vector")
    };
    assert_eq!(v.len(), 2);
    for s in &v {
        assert!(s.labels.get(METRIC_NAME).is_none(), "rate drops the name");
        let slope = if s.labels.value("instance") == "a" {
            1.0
        } else {
            2.0
        };
        assert_eq!(s.values.len(), 9);
        for value in &s.values {
            let value = value.expect("a value at every step");
            assert!(close(value, slope), "{} {value}", s.labels);
        }
    }
}

#[test]
fn aggregations_group_by_and_without_and_topk_keeps_whole_series() {
    let source = http_requests();
    assert_eq!(
        instant(&source, "sum by (job) (http_requests_total)", 600),
        [
            (r#"{job="api"}"#.into(), 1800.0),
            (r#"{job="db"}"#.into(), 1800.0)
        ]
    );
    assert_eq!(
        instant(&source, "max without (instance) (http_requests_total)", 600),
        [
            (r#"{job="api"}"#.into(), 1200.0),
            (r#"{job="db"}"#.into(), 1800.0)
        ]
    );
    assert_eq!(
        instant(&source, "topk(1, http_requests_total)", 600),
        [(
            r#"{__name__="http_requests_total", instance="a", job="db"}"#.into(),
            1800.0
        )]
    );
    assert_eq!(
        instant(&source, "count(http_requests_total)", 600),
        [("{}".into(), 3.0)]
    );
    let q = instant(&source, "quantile(0.5, http_requests_total)", 600);
    assert_eq!(q, [("{}".into(), 1200.0)]);
}

#[test]
fn vector_matching_follows_on_ignoring_and_group_left() {
    let mut source = http_requests();
    source.0.push(series(
        &[
            ("__name__", "job_owner"),
            ("job", "api"),
            ("owner", "alice"),
        ],
        &[(0, 1.0)],
    ));
    // One-to-one on `job` fails: two `api` series on the left.
    assert!(error(&source, "http_requests_total * on (job) job_owner").contains("many-to-one"));
    let joined = instant(
        &source,
        "http_requests_total * on (job) group_left (owner) job_owner",
        60,
    );
    assert_eq!(
        joined,
        [
            (r#"{instance="a", job="api", owner="alice"}"#.into(), 60.0),
            (r#"{instance="b", job="api", owner="alice"}"#.into(), 120.0)
        ]
    );
    // Comparisons filter and keep the name; `bool` gives 0/1 without it.
    assert_eq!(instant(&source, "http_requests_total > 1000", 600).len(), 2);
    let flags = instant(&source, "http_requests_total > bool 1000", 600);
    assert_eq!(flags.iter().map(|f| f.1).sum::<f64>(), 2.0);
    assert!(flags.iter().all(|f| !f.0.contains("__name__")));
    let unless = instant(
        &source,
        r#"http_requests_total unless on (job) job_owner"#,
        60,
    );
    assert_eq!(unless.len(), 1);
    assert!(unless[0].0.contains(r#"job="db""#));
    let or = instant(&source, r#"job_owner or http_requests_total{job="db"}"#, 60);
    assert_eq!(or.len(), 2);
}

#[test]
fn subqueries_evaluate_their_expression_on_their_own_aligned_steps() {
    let source = http_requests();
    // The rate of a straight-line counter is constant, so its max over any subquery is it.
    let max = instant(
        &source,
        r#"max_over_time(rate(http_requests_total{job="db"}[1m])[5m:1m])"#,
        600,
    );
    assert_eq!(max.len(), 1);
    assert!(close(max[0].1, 3.0), "{max:?}");
    // 5 minutes at a 1-minute step, both ends included: 6 inner steps.
    let count = instant(
        &source,
        r#"count_over_time(http_requests_total{job="db"}[5m:1m])"#,
        600,
    );
    assert_eq!(count[0].1, 6.0);
}

#[test]
fn functions_compute_as_prometheus_does() {
    let mut source = http_requests();
    for (le, count) in [("0.1", 10.0), ("0.5", 30.0), ("+Inf", 40.0)] {
        source.0.push(series(
            &[("__name__", "latency_bucket"), ("le", le)],
            &[(0, count)],
        ));
    }
    let p50 = instant(&source, "histogram_quantile(0.5, latency_bucket)", 60);
    assert_eq!(p50.len(), 1);
    assert!(close(p50[0].1, 0.3), "{p50:?}");
    let relabelled = instant(
        &source,
        r#"label_replace(http_requests_total{job="db"}, "team", "t-$1", "job", "(.*)")"#,
        60,
    );
    assert!(relabelled[0].0.contains(r#"team="t-db""#), "{relabelled:?}");
    let offset = instant(&source, r#"http_requests_total{job="db"} offset 1m"#, 600);
    assert_eq!(offset[0].1, 3.0 * 540.0);
    // A selector's sample times; 50 s reads the sample at 45 s.
    let times = instant(&source, r#"timestamp(http_requests_total{job="db"})"#, 50);
    assert_eq!(times, [(r#"{instance="a", job="db"}"#.into(), 45.0)]);
    let clamped = instant(
        &source,
        r#"clamp_max(http_requests_total{job="db"}, 7)"#,
        600,
    );
    assert_eq!(clamped[0].1, 7.0);
    let increase = instant(
        &source,
        r#"increase(http_requests_total{job="api", instance="a"}[5m])"#,
        600,
    );
    assert!(close(increase[0].1, 300.0), "{increase:?}");
    assert_eq!(
        instant(&source, "absent(nonexistent{job=\"x\"})", 60),
        [(r#"{job="x"}"#.into(), 1.0)]
    );
    match run(
        &source,
        "scalar(sum(http_requests_total)) * 2",
        Grid::instant(60_000),
    ) {
        Ok(Evaluated::Scalar(s)) => assert_eq!(s, [2.0 * (60.0 + 120.0 + 180.0)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_is_not_supported_or_not_well_defined_fails_with_a_message_naming_it() {
    let source = http_requests();
    assert!(error(&source, "holt_winters(http_requests_total[5m], 2, 0.5)").contains("factor"));
    assert!(error(&source, "sum_over_time(http_requests_total)").contains("sum_over_time"));
    assert!(error(&source, "sum(").contains("invalid parameter \"query\""));
    // Dropping the name makes the three series collide only where labels are equal: they
    // are not, so `abs` works; a label_replace that erases the difference does not.
    assert_eq!(instant(&source, "abs(http_requests_total)", 60).len(), 3);
    assert!(
        error(
            &source,
            r#"label_replace(http_requests_total, "instance", "", "instance", ".*")"#
        )
        .contains("same labelset")
    );
}

#[test]
fn a_query_reading_more_samples_than_its_limit_fails_and_one_within_it_reads_every_sample() {
    // Three series of 41 samples each; [10m] at 600 s reads all 123.
    let source = http_requests();
    let with_limit = |query: &str, max_samples: usize| {
        let limits = Limits {
            max_samples,
            ..Limits::default()
        };
        evaluate(
            &parse(query).expect(query),
            Grid::instant(600_000),
            &source,
            limits,
        )
    };
    for query in [
        "sum(rate(http_requests_total[10m]))",
        "max_over_time(http_requests_total[10m])",
        "http_requests_total[10m]",
        // Two selectors, 123 samples each: the limit is on the query's total.
        "increase(http_requests_total[10m]) + count_over_time(http_requests_total[10m])",
    ] {
        let total = if query.contains('+') { 246 } else { 123 };
        assert!(with_limit(query, total).is_ok(), "{query}");
        let error = with_limit(query, total - 1).expect_err(query);
        assert!(
            matches!(error, EvalError::TooLarge(_))
                && error.to_string().contains("too many samples"),
            "{query}: {error}"
        );
    }
}
