//! The evaluator: walks the expression, each node yielding its value at every step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use crate::search::skip_while;

use super::{
    DEFAULT_SUBQUERY_STEP, EvalError, Grid, LOOKBACK, Labels, Limits, METRIC_NAME, Millis,
    RawSeries, Source, is_stale,
};

/// An instant vector over the grid: a series with its value at each step, where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: Labels,
    /// Its value at each step of the grid.
    pub values: Vec<Option<f64>>,
}

/// A range vector over the grid: each series' samples (staleness markers left out), and
/// the window `[end - range, end]` of each step.
#[derive(Debug, Clone)]
pub(crate) struct Windows {
    pub(crate) series: Vec<RawSeries>,
    pub(crate) range: Millis,
    pub(crate) ends: Vec<Millis>,
}

impl Windows {
    /// Calls `f(step, window)` for each step, with the samples of `samples` in its window.
    pub(crate) fn slide(
        &self,
        samples: &[(Millis, f64)],
        mut f: impl FnMut(usize, &[(Millis, f64)]),
    ) {
        self.slide_indices(samples, |step, window| f(step, &samples[window]));
    }

    /// Calls `f(step, window)` for each step, with the indices into `samples` of those in
    /// its window.
    pub(crate) fn slide_indices(
        &self,
        samples: &[(Millis, f64)],
        mut f: impl FnMut(usize, std::ops::Range<usize>),
    ) {
        let (mut lo, mut hi) = (0, 0);
        for (step, &end) in self.ends.iter().enumerate() {
            let start = end.saturating_sub(self.range);
            hi = skip_while(samples, hi, |s| s.0 <= end);
            lo = skip_while(&samples[..hi], lo.min(hi), |s| s.0 < start);
            f(step, lo..hi);
        }
    }
}

/// The error of a query reading more than `limit` samples.
fn too_many_samples(limit: usize) -> EvalError {
    EvalError::TooLarge(format!(
        "query processing would load too many samples into memory (more than {limit}); select fewer series or a shorter range"
    ))
}

/// What `read` finds for each `or` group of `vs`'s matchers (with its metric name), a
/// series matching several groups once (by its `labels`).
fn each_group<T>(
    vs: &VectorSelector,
    mut read: impl FnMut(&[Matcher]) -> Result<Vec<T>, EvalError>,
    labels: impl Fn(&T) -> &Labels,
) -> Result<Vec<T>, EvalError> {
    let name = vs
        .name
        .as_ref()
        .map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME, n));
    let groups: Vec<&[Matcher]> = if vs.matchers.or_matchers.is_empty() {
        vec![&vs.matchers.matchers]
    } else {
        vs.matchers.or_matchers.iter().map(Vec::as_slice).collect()
    };
    let mut found = Vec::new();
    let several = groups.len() > 1;
    let mut seen = std::collections::HashSet::new();
    for group in groups {
        let matchers: Vec<Matcher> = name.iter().chain(group).cloned().collect();
        for series in read(&matchers)? {
            if !several || seen.insert(labels(&series).clone()) {
                found.push(series);
            }
        }
    }
    Ok(found)
}

/// What a node evaluates to.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// One number per step.
    Scalar(Vec<f64>),
    /// Series with a value at some steps.
    Vector(Vec<Series>),
    /// A range selector or subquery.
    Matrix(Windows),
    /// A string literal.
    String(String),
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "instant vector",
            Value::Matrix(_) => "range vector",
            Value::String(_) => "string",
        }
    }
}

/// What a query evaluated to.
#[derive(Debug, Clone)]
pub enum Evaluated {
    /// A number per step of the grid.
    Scalar(Vec<f64>),
    /// Series with a value at some steps of the grid.
    Vector(Vec<Series>),
    /// Samples of a range selector or subquery at the (single) evaluation time.
    Matrix(Vec<RawSeries>),
    /// A string.
    String(String),
}

/// Evaluates `expr` at every step of `grid`, reading series from `source`.
///
/// # Errors
/// A query Sluice does not support, or one failing on the data, the limits or the source.
pub fn evaluate(
    expr: &Expr,
    grid: Grid,
    source: &dyn Source,
    limits: Limits,
) -> Result<Evaluated, EvalError> {
    let mut ev = Evaluator {
        source,
        query: grid,
        grid,
        limits,
        started: Instant::now(),
        samples: 0,
    };
    Ok(match ev.eval(expr)? {
        Value::Scalar(s) => Evaluated::Scalar(s),
        Value::Vector(v) => Evaluated::Vector(v),
        Value::String(s) => Evaluated::String(s),
        Value::Matrix(w) => {
            let end = w.ends.last().copied().unwrap_or(grid.end);
            let start = end.saturating_sub(w.range);
            Evaluated::Matrix(
                w.series
                    .into_iter()
                    .map(|s| RawSeries {
                        labels: s.labels,
                        samples: s
                            .samples
                            .into_iter()
                            .filter(|(t, _)| (start..=end).contains(t))
                            .collect(),
                    })
                    .filter(|s| !s.samples.is_empty())
                    .collect(),
            )
        }
    })
}

/// Builds a vector from series of labels made on the way, refusing two values of one
/// label set at one step (Prometheus: "vector cannot contain metrics with the same
/// labelset").
pub(crate) struct VectorBuilder {
    steps: usize,
    index: HashMap<Labels, usize>,
    series: Vec<Series>,
}

impl VectorBuilder {
    pub(crate) fn new(steps: usize) -> Self {
        Self {
            steps,
            index: HashMap::new(),
            series: Vec::new(),
        }
    }

    /// The index of the series of `labels`, made when new.
    pub(crate) fn slot(&mut self, labels: Labels) -> usize {
        let steps = self.steps;
        let series = &mut self.series;
        *self.index.entry(labels).or_insert_with_key(|labels| {
            series.push(Series {
                labels: labels.clone(),
                values: vec![None; steps],
            });
            series.len() - 1
        })
    }

    /// Sets the value of series `slot` at `step`.
    pub(crate) fn put(&mut self, slot: usize, step: usize, value: f64) -> Result<(), EvalError> {
        let at = &mut self.series[slot].values[step];
        if at.is_some() {
            return Err(EvalError::Execution(format!(
                "vector cannot contain metrics with the same labelset: {}",
                self.series[slot].labels
            )));
        }
        *at = Some(value);
        Ok(())
    }

    /// Adds the values of a whole series under `labels`.
    pub(crate) fn add(
        &mut self,
        labels: Labels,
        values: Vec<Option<f64>>,
    ) -> Result<(), EvalError> {
        let slot = self.slot(labels);
        if self.series[slot].values.iter().all(Option::is_none) {
            self.series[slot].values = values;
            return Ok(());
        }
        for (step, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                self.put(slot, step, v)?;
            }
        }
        Ok(())
    }

    /// The series that have a value somewhere.
    pub(crate) fn finish(self) -> Vec<Series> {
        self.series
            .into_iter()
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect()
    }
}

/// Evaluation state: the source, the grid of the node being evaluated, the limits.
pub(crate) struct Evaluator<'a> {
    source: &'a dyn Source,
    /// The query's own grid (what `@ start()` and `@ end()` refer to).
    query: Grid,
    /// The grid of the current node (a subquery's differs).
    pub(crate) grid: Grid,
    limits: Limits,
    started: Instant,
    samples: usize,
}

impl Evaluator<'_> {
    /// Steps of the current grid.
    pub(crate) fn steps(&self) -> usize {
        self.grid.len()
    }

    pub(crate) fn eval(&mut self, expr: &Expr) -> Result<Value, EvalError> {
        if self.started.elapsed() > self.limits.timeout {
            return Err(EvalError::Timeout(self.limits.timeout));
        }
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(s) => Ok(Value::Scalar(s.into_iter().map(|v| -v).collect())),
                Value::Vector(v) => {
                    let mut out = VectorBuilder::new(self.steps());
                    for s in v {
                        let values = s.values.into_iter().map(|v| v.map(|v| -v)).collect();
                        out.add(s.labels.without_name(), values)?;
                    }
                    Ok(Value::Vector(out.finish()))
                }
                other => Err(EvalError::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.kind()
                ))),
            },
            Expr::VectorSelector(vs) => self.vector_selector(vs, false).map(Value::Vector),
            Expr::MatrixSelector(ms) => {
                let range = millis(ms.range);
                self.matrix(&ms.vs, range).map(Value::Matrix)
            }
            Expr::Subquery(sq) => self.subquery(sq).map(Value::Matrix),
            Expr::Binary(b) => super::binary::eval(self, b),
            Expr::Aggregate(a) => super::aggregation::eval(self, a),
            Expr::Call(c) => super::functions::eval(self, c),
            Expr::Extension(_) => Err(EvalError::unsupported("extension expressions")),
        }
    }

    /// Evaluates `expr`, which must be a scalar.
    pub(crate) fn scalar(&mut self, expr: &Expr, what: &str) -> Result<Vec<f64>, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(s) => Ok(s),
            other => Err(EvalError::BadData(format!(
                "{what}: expected a scalar, got {}",
                other.kind()
            ))),
        }
    }

    /// Evaluates `expr`, which must be an instant vector.
    pub(crate) fn vector(&mut self, expr: &Expr, what: &str) -> Result<Vec<Series>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            other => Err(EvalError::BadData(format!(
                "{what}: expected an instant vector, got {}",
                other.kind()
            ))),
        }
    }

    /// The time a selector reads at for each step: `@` pins it, `offset` moves it back.
    fn times(&self, offset: Option<&Offset>, at: Option<&AtModifier>) -> Vec<Millis> {
        let shift = match offset {
            None => 0,
            Some(Offset::Pos(d)) => millis(*d),
            Some(Offset::Neg(d)) => -millis(*d),
        };
        let pinned = at.map(|at| match at {
            AtModifier::Start => self.query.start,
            AtModifier::End => self.query.end,
            AtModifier::At(t) => match t.duration_since(UNIX_EPOCH) {
                Ok(d) => millis(d),
                Err(e) => -millis(e.duration()),
            },
        });
        (0..self.steps())
            .map(|i| {
                pinned
                    .unwrap_or_else(|| self.grid.at(i))
                    .saturating_sub(shift)
            })
            .collect()
    }

    /// The series `vs` selects, with their samples in `[start, end]`.
    fn select(
        &mut self,
        vs: &VectorSelector,
        start: Millis,
        end: Millis,
    ) -> Result<Vec<RawSeries>, EvalError> {
        let source = self.source;
        let found = each_group(vs, |m| source.select(m, start, end), |s| &s.labels)?;
        self.count_samples(found.iter().map(|s| s.samples.len()).sum())?;
        Ok(found)
    }

    /// Adds `n` samples to those the query read; an error past its limit.
    fn count_samples(&mut self, n: usize) -> Result<(), EvalError> {
        self.samples = self.samples.saturating_add(n);
        if self.samples > self.limits.max_samples {
            return Err(too_many_samples(self.limits.max_samples));
        }
        Ok(())
    }

    /// The range vector `expr` must be, an argument of the function `name`.
    pub(crate) fn range_vector(&mut self, expr: &Expr, name: &str) -> Result<Windows, EvalError> {
        match self.eval(expr)? {
            Value::Matrix(w) => Ok(w),
            other => Err(EvalError::BadData(format!(
                "{name}: expected a range vector, got {}",
                other.kind()
            ))),
        }
    }

    /// `f` of each series of the range vector `expr`: its values at each step, from its
    /// samples (staleness markers left out) and the windows' frame (the range and each
    /// step's end; its `series` is empty). The metric name is dropped unless `keep_name`.
    /// A range selector's series are reduced as they are read, side by side, and only their
    /// values kept (see [`Source::select_reduced`]); other range vectors (subqueries) are
    /// evaluated whole first.
    pub(crate) fn reduce_windows(
        &mut self,
        expr: &Expr,
        name: &str,
        keep_name: bool,
        f: impl Fn(&Windows, &[(Millis, f64)]) -> Vec<Option<f64>> + Sync,
    ) -> Result<Value, EvalError> {
        let found: Vec<Series> = match expr {
            Expr::MatrixSelector(ms) => {
                let frame = Windows {
                    series: Vec::new(),
                    range: millis(ms.range),
                    ends: self.times(ms.vs.offset.as_ref(), ms.vs.at.as_ref()),
                };
                let (Some(&first), Some(&last)) = (frame.ends.first(), frame.ends.last()) else {
                    return Ok(Value::Vector(Vec::new()));
                };
                let start = first.saturating_sub(frame.range);
                // Counted as read, so a query past the limit stops reading.
                let limit = self.limits.max_samples;
                let left = AtomicUsize::new(limit.saturating_sub(self.samples));
                let reduce = |mut s: RawSeries| -> Result<Series, EvalError> {
                    let n = s.samples.len();
                    if left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(n))
                        .is_err()
                    {
                        return Err(too_many_samples(limit));
                    }
                    // Counted first, in a loop without branches (0.45 against retain's
                    // 0.76 ns a sample when nothing goes): only remote-written floats
                    // ever hold a stale marker.
                    if s.samples.iter().filter(|(_, v)| is_stale(*v)).count() > 0 {
                        s.samples.retain(|(_, v)| !is_stale(*v));
                    }
                    Ok(Series {
                        values: f(&frame, &s.samples),
                        labels: s.labels,
                    })
                };
                let source = self.source;
                let found = each_group(
                    &ms.vs,
                    |m| source.select_reduced(m, start, last, &reduce),
                    |s| &s.labels,
                )?;
                self.samples = limit - left.into_inner();
                found
            }
            _ => {
                let w = self.range_vector(expr, name)?;
                w.series
                    .iter()
                    .map(|s| Series {
                        labels: s.labels.clone(),
                        values: f(&w, &s.samples),
                    })
                    .collect()
            }
        };
        let mut out = VectorBuilder::new(self.steps());
        for s in found {
            if s.values.iter().any(Option::is_some) {
                let labels = if keep_name {
                    s.labels
                } else {
                    s.labels.without_name()
                };
                out.add(labels, s.values)?;
            }
        }
        Ok(Value::Vector(out.finish()))
    }

    /// The series `vs` selects, with their latest sample's value at each step (or, with
    /// `sample_times`, its time in seconds: what `timestamp()` of a selector reads).
    pub(crate) fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        sample_times: bool,
    ) -> Result<Vec<Series>, EvalError> {
        let times = self.times(vs.offset.as_ref(), vs.at.as_ref());
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Ok(Vec::new());
        };
        let found = self.select(vs, first.saturating_sub(LOOKBACK), last)?;
        let mut out = Vec::with_capacity(found.len());
        for series in found {
            let samples = &series.samples;
            let mut next = 0;
            let values: Vec<Option<f64>> = times
                .iter()
                .map(|&t| {
                    next = skip_while(samples, next, |s| s.0 <= t);
                    let (at, v) = *samples.get(next.checked_sub(1)?)?;
                    let v = if sample_times { at as f64 / 1000.0 } else { v };
                    (at >= t.saturating_sub(LOOKBACK) && !is_stale(samples[next - 1].1))
                        .then_some(v)
                })
                .collect();
            if values.iter().any(Option::is_some) {
                out.push(Series {
                    labels: series.labels,
                    values,
                });
            }
        }
        Ok(out)
    }

    fn matrix(&mut self, vs: &VectorSelector, range: Millis) -> Result<Windows, EvalError> {
        let ends = self.times(vs.offset.as_ref(), vs.at.as_ref());
        let (Some(&first), Some(&last)) = (ends.first(), ends.last()) else {
            return Ok(Windows {
                series: Vec::new(),
                range,
                ends,
            });
        };
        let mut series = self.select(vs, first.saturating_sub(range), last)?;
        for s in &mut series {
            s.samples.retain(|(_, v)| !is_stale(*v));
        }
        Ok(Windows {
            series,
            range,
            ends,
        })
    }

    /// A subquery: its expression evaluated on a grid of its own step (aligned to multiples
    /// of it) covering every window, as a range vector.
    fn subquery(&mut self, sq: &SubqueryExpr) -> Result<Windows, EvalError> {
        let range = millis(sq.range);
        let step = sq.step.map(millis).filter(|s| *s > 0);
        let step = step.unwrap_or(DEFAULT_SUBQUERY_STEP);
        let ends = self.times(sq.offset.as_ref(), sq.at.as_ref());
        let (Some(&first), Some(&last)) = (ends.first(), ends.last()) else {
            return Ok(Windows {
                series: Vec::new(),
                range,
                ends,
            });
        };
        let lowest = first.saturating_sub(range);
        let start = lowest.div_euclid(step) * step;
        let start = if start < lowest { start + step } else { start };
        if last < start {
            return Ok(Windows {
                series: Vec::new(),
                range,
                ends,
            });
        }
        let inner = Grid {
            start,
            end: last,
            step,
        };
        let outer = std::mem::replace(&mut self.grid, inner);
        let value = self.eval(&sq.expr);
        self.grid = outer;
        let series = match value? {
            Value::Vector(v) => v
                .into_iter()
                .map(|s| RawSeries {
                    labels: s.labels,
                    samples: s
                        .values
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, v)| Some((inner.at(i), v?)))
                        .collect(),
                })
                .collect(),
            Value::Scalar(s) => vec![RawSeries {
                labels: Labels::default(),
                samples: s
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (inner.at(i), v))
                    .collect(),
            }],
            other => {
                return Err(EvalError::BadData(format!(
                    "subquery is only allowed on instant vector or scalar, got {}",
                    other.kind()
                )));
            }
        };
        Ok(Windows {
            series,
            range,
            ends,
        })
    }
}

/// A duration in milliseconds, saturating.
pub fn millis(d: std::time::Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}
