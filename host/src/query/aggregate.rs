//! Aggregation of raw points into fixed steps with any [`Function`] (`mean`, `p99`...). Buckets are aligned to multiples of the step since the epoch, so the same query
//! gives the same buckets whatever its start.

use crate::aggregate::{Acc, Function};
use crate::api::ApiError;
use crate::point::{FieldValue, Nanos};
use crate::search::skip_while;
use crate::time::floor_to;

/// An aggregation: a function over buckets of `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregation {
    /// The function.
    pub function: Function,
    /// Bucket width.
    pub step: Nanos,
}

impl Aggregation {
    /// From the query parameters `agg` and `step` (`10s`, `1m`, `1h`...).
    ///
    /// # Errors
    /// A 400 naming the parameter.
    pub fn parse(agg: &str, step: Option<&str>) -> Result<Self, ApiError> {
        let function: Function = agg
            .parse()
            .map_err(|e| ApiError::invalid(format!("parameter `agg` = {e}")))?;
        let raw = step.ok_or_else(|| ApiError::invalid("`agg` needs `step`"))?;
        let step = super::parse_step(raw)?;
        Ok(Self { function, step })
    }

    /// Aggregates time-sorted points into (bucket start, value); non-numeric values are
    /// skipped (they count for `count`).
    pub fn apply(&self, points: &[(Nanos, FieldValue)]) -> Vec<(Nanos, f64)> {
        let mut buckets = Buckets::new(*self);
        let mut out: Vec<(Nanos, f64)> = points
            .iter()
            .filter_map(|(ts, v)| buckets.push(*ts, v))
            .collect();
        out.extend(buckets.finish());
        out
    }
}

/// Buckets filled one time-sorted point at a time, so a series of any length aggregates in
/// constant memory.
#[derive(Debug, Clone)]
pub struct Buckets {
    aggregation: Aggregation,
    open: Option<(Nanos, Fold)>,
}

/// A bucket's accumulator: the few numbers the basic functions need, or an [`Acc`] for the
/// standard deviation and quantiles. `Acc::add` keeps a running variance, two divisions a
/// value: 12 % of the time of a query of hourly means (`perf`, 8.64 M points).
#[derive(Debug, Clone)]
enum Fold {
    Basic(Basic),
    Full(Acc),
}

/// What mean, min, max, sum, count, first and last need of time-sorted values.
#[derive(Debug, Clone, Default)]
struct Basic {
    /// Every value, numeric or not (`count`).
    count: u64,
    /// The finite numbers among them, which the others take, as [`Acc`] does.
    numeric: u64,
    sum: f64,
    min: f64,
    max: f64,
    first: f64,
    last: f64,
}

impl Basic {
    /// Values taken a run at a time by [`Basic::add_all`]: one accumulator of each kind per
    /// lane, so additions don't wait on each other and the compiler keeps them in vector
    /// registers.
    const LANES: usize = 4;

    /// Adds numbers in time order. Runs of [`Self::LANES`] finite values (nearly all) go
    /// through independent accumulators: one sum and one branch per value, each waiting on
    /// the last, were 15 % of the time of a query of hourly means over 1,000 series (`perf`,
    /// 8.64 M points). Sums are added in another order than one at a time, which changes
    /// their last bits.
    fn add_all(&mut self, values: &[f64]) {
        self.count += values.len() as u64;
        let mut rest = values;
        if self.numeric == 0 {
            let Some(at) = rest.iter().position(|v| v.is_finite()) else {
                return;
            };
            let v = rest[at];
            (self.first, self.min, self.max, self.last, self.sum) = (v, v, v, v, v);
            self.numeric = 1;
            rest = &rest[at + 1..];
        }
        let mut sums = [0.0; Self::LANES];
        let mut mins = [self.min; Self::LANES];
        let mut maxs = [self.max; Self::LANES];
        let (mut last, mut numeric) = (self.last, self.numeric);
        for run in rest.chunks(Self::LANES) {
            let full = <&[f64; Self::LANES]>::try_from(run).ok();
            if let Some(run) = full.filter(|run| run.iter().all(|v| v.is_finite())) {
                for (k, &v) in run.iter().enumerate() {
                    sums[k] += v;
                    mins[k] = if v < mins[k] { v } else { mins[k] };
                    maxs[k] = if v > maxs[k] { v } else { maxs[k] };
                }
                last = run[Self::LANES - 1];
                numeric += Self::LANES as u64;
            } else {
                // A run with an infinity or NaN, or the last few values.
                for &v in run.iter().filter(|v| v.is_finite()) {
                    sums[0] += v;
                    (mins[0], maxs[0], last) = (mins[0].min(v), maxs[0].max(v), v);
                    numeric += 1;
                }
            }
        }
        self.sum += sums.into_iter().sum::<f64>();
        self.min = mins.into_iter().fold(f64::INFINITY, f64::min);
        self.max = maxs.into_iter().fold(f64::NEG_INFINITY, f64::max);
        (self.last, self.numeric) = (last, numeric);
    }
}

impl Fold {
    fn new(function: Function) -> Self {
        match function {
            Function::Stddev | Function::Quantile(_) => Fold::Full(Acc::for_functions(&[function])),
            _ => Fold::Basic(Basic::default()),
        }
    }

    fn add(&mut self, ts: Nanos, value: Option<f64>) {
        match value {
            Some(v) => self.add_all(&[ts], &[v]),
            None => match self {
                Fold::Full(acc) => acc.add(ts, None),
                Fold::Basic(b) => b.count += 1,
            },
        }
    }

    /// Adds numbers, by time: `times` and `values` side by side.
    fn add_all(&mut self, times: &[Nanos], values: &[f64]) {
        match self {
            Fold::Full(acc) => {
                for (ts, v) in times.iter().zip(values) {
                    acc.add(*ts, Some(*v));
                }
            }
            Fold::Basic(b) => b.add_all(values),
        }
    }

    fn finish(&self, function: Function) -> Option<f64> {
        let b = match self {
            Fold::Full(acc) => return acc.finish(function),
            Fold::Basic(b) => b,
        };
        if function == Function::Count {
            return Some(b.count as f64);
        }
        (b.numeric > 0).then_some(match function {
            Function::Mean => b.sum / b.numeric as f64,
            Function::Min => b.min,
            Function::Max => b.max,
            Function::First => b.first,
            Function::Last => b.last,
            // Sum; count is above; stddev and quantiles are `Full`.
            _ => b.sum,
        })
    }
}

impl Buckets {
    /// No bucket open yet.
    pub fn new(aggregation: Aggregation) -> Self {
        Self {
            aggregation,
            open: None,
        }
    }

    /// The start of the bucket holding `ts`.
    pub fn start_of(&self, ts: Nanos) -> Nanos {
        floor_to(ts, self.aggregation.step)
    }

    /// Adds a point (after the last one); returns the bucket it closed, if any had a
    /// value.
    pub fn push(&mut self, ts: Nanos, value: &FieldValue) -> Option<(Nanos, f64)> {
        self.push_number(ts, value.as_f64())
    }

    /// [`Buckets::push`] of a value as [`FieldValue::as_f64`] reads it: none for one that
    /// is not a number.
    pub fn push_number(&mut self, ts: Nanos, value: Option<f64>) -> Option<(Nanos, f64)> {
        let step = self.aggregation.step;
        let closed = match &mut self.open {
            // In the open bucket: no division (a bucket's start is a floor, one a point
            // was most of the time left here). The difference of two times fits in u64.
            Some((b, fold)) if ts >= *b && (ts.wrapping_sub(*b) as u64) < step as u64 => {
                fold.add(ts, value);
                return None;
            }
            _ => self.open.take(),
        };
        let start = self.start_of(ts);
        let mut fold = Fold::new(self.aggregation.function);
        fold.add(ts, value);
        self.open = Some((start, fold));
        closed.and_then(|(b, fold)| Some((b, fold.finish(self.aggregation.function)?)))
    }

    /// Adds time-sorted numbers (after the last point), `times` and `values` side by
    /// side, closing buckets into `out` a run of points at a time. Once `out` holds `max`,
    /// stops and returns the start of the bucket the next point opens: the next answer's
    /// first.
    pub fn push_numbers(
        &mut self,
        times: &[Nanos],
        values: &[f64],
        out: &mut Vec<(Nanos, f64)>,
        max: usize,
    ) -> Option<Nanos> {
        let step = self.aggregation.step;
        let function = self.aggregation.function;
        let mut i = 0;
        while let Some(&ts) = times.get(i) {
            let (start, fold) = match &mut self.open {
                Some((b, fold)) if ts >= *b && (ts.wrapping_sub(*b) as u64) < step as u64 => {
                    (*b, fold)
                }
                open => {
                    let closed = open.take();
                    out.extend(closed.and_then(|(b, fold)| Some((b, fold.finish(function)?))));
                    let start = floor_to(ts, step);
                    if out.len() >= max {
                        return Some(start);
                    }
                    let (_, fold) = open.insert((start, Fold::new(function)));
                    (start, fold)
                }
            };
            // The open bucket's points: up to its end (all of them when that is past
            // i64::MAX).
            let end = start
                .checked_add(step)
                .map_or(times.len(), |end| skip_while(times, i, |t| *t < end));
            fold.add_all(&times[i..end], &values[i..end]);
            i = end;
        }
        None
    }

    /// Closes the last bucket.
    pub fn finish(self) -> Option<(Nanos, f64)> {
        let (b, fold) = self.open?;
        Some((b, fold.finish(self.aggregation.function)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_to_the_step_and_each_function_is_right() {
        let pts: Vec<(Nanos, FieldValue)> = [(5, 1.0), (9, 3.0), (10, 10.0), (25, -2.0), (29, 4.0)]
            .into_iter()
            .map(|(t, v)| (t, FieldValue::Float(v)))
            .collect();
        let agg = |f: &str| {
            Aggregation::parse(f, Some("10ns"))
                .expect("parse")
                .apply(&pts)
        };
        assert_eq!(agg("mean"), [(0, 2.0), (10, 10.0), (20, 1.0)]);
        assert_eq!(agg("min"), [(0, 1.0), (10, 10.0), (20, -2.0)]);
        assert_eq!(agg("max"), [(0, 3.0), (10, 10.0), (20, 4.0)]);
        assert_eq!(agg("sum"), [(0, 4.0), (10, 10.0), (20, 2.0)]);
        assert_eq!(agg("count"), [(0, 2.0), (10, 1.0), (20, 2.0)]);
        assert_eq!(agg("last"), [(0, 3.0), (10, 10.0), (20, 4.0)]);
        assert!(Aggregation::parse("median", Some("1s")).is_err());
        // At the ends of the range: the lowest bucket starts at i64::MIN, buckets in order.
        let extreme: Vec<(Nanos, FieldValue)> =
            [i64::MIN, i64::MIN + 5, -1, i64::MAX - 1, i64::MAX]
                .into_iter()
                .map(|t| (t, FieldValue::Float(1.0)))
                .collect();
        let counts = Aggregation::parse("count", Some("1m"))
            .expect("parse")
            .apply(&extreme);
        let starts: Vec<Nanos> = counts.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            starts,
            [
                i64::MIN,
                -60_000_000_000,
                i64::MAX - i64::MAX % 60_000_000_000
            ]
        );
        assert_eq!(counts[0].1, 2.0);
        assert_eq!(counts[2].1, 2.0);
        assert!(Aggregation::parse("mean", None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn buckets_across_the_whole_range_are_ordered_floors_that_count_every_point(
            mut times in proptest::collection::vec(proptest::num::i64::ANY, 1..200),
            step in 1..i64::MAX,
        ) {
            times.sort_unstable();
            let points: Vec<(Nanos, FieldValue)> =
                times.iter().map(|t| (*t, FieldValue::Integer(1))).collect();
            let agg = Aggregation { function: Function::Count, step };
            let buckets = agg.apply(&points);
            proptest::prop_assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
            for (start, _) in &buckets {
                proptest::prop_assert!(times.iter().any(|t| floor_to(*t, step) == *start));
            }
            let counted: f64 = buckets.iter().map(|(_, n)| n).sum();
            proptest::prop_assert_eq!(counted as usize, times.len());
        }

        #[test]
        fn runs_of_numbers_aggregate_as_points_added_one_at_a_time(
            mut times in proptest::collection::vec(
                proptest::prop_oneof![
                    0i64..10_000,
                    proptest::num::i64::ANY,
                    proptest::sample::select(vec![i64::MIN, i64::MAX]),
                ],
                0..300,
            ),
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => -1e6f64..1e6,
                    1 => proptest::sample::select(vec![f64::NAN, f64::INFINITY, -0.0]),
                ],
                300,
            ),
            function in proptest::sample::select(
                vec!["mean", "min", "max", "sum", "count", "first", "last", "stddev", "p90"],
            ),
            step in proptest::prop_oneof![1i64..2_000, 1..i64::MAX],
            runs in proptest::collection::vec(1usize..100, 1..10),
            max in 1usize..40,
        ) {
            times.sort_unstable();
            times.dedup();
            let values = &values[..times.len()];
            let aggregation = Aggregation {
                function: function.parse().expect("a function"),
                step,
            };
            // One point at a time, stopping as the query's reader of other values does.
            let mut one = Buckets::new(aggregation);
            let mut want = Vec::new();
            let mut want_next = None;
            for (ts, v) in times.iter().zip(values) {
                want.extend(one.push_number(*ts, Some(*v)));
                if want.len() == max {
                    want_next = Some(one.start_of(*ts));
                    break;
                }
            }
            if want_next.is_none() {
                want.extend(one.finish());
            }
            // In runs of the lengths given, as pages of a read come.
            let mut runs_of = Buckets::new(aggregation);
            let mut got = Vec::new();
            let mut got_next = None;
            let mut at = 0;
            for len in runs.iter().cycle() {
                let end = (at + len).min(times.len());
                got_next = runs_of.push_numbers(&times[at..end], &values[at..end], &mut got, max);
                at = end;
                if got_next.is_some() || at == times.len() {
                    break;
                }
            }
            if got_next.is_none() {
                got.extend(runs_of.finish());
            }
            // Bit for bit, but for sums (and means), added in another order by runs.
            let summed = matches!(aggregation.function, Function::Mean | Function::Sum);
            let bits = |b: &[(Nanos, f64)]| -> Vec<(Nanos, u64)> {
                b.iter()
                    .map(|(t, v)| (*t, if summed { 0 } else { v.to_bits() }))
                    .collect()
            };
            proptest::prop_assert_eq!(bits(&got), bits(&want));
            for ((_, got), (_, want)) in got.iter().zip(&want).filter(|_| summed) {
                proptest::prop_assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{got} against {want}"
                );
            }
            proptest::prop_assert_eq!(got_next, want_next);
        }
    }
}
