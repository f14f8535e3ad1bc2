//! Aggregate functions over a run of values, shared by queries (steps) and windows (rollup
//! and alert rules): one accumulator serves every function, and two accumulators merge (a
//! session window absorbing another), so any function can be asked of any window.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use crate::point::Nanos;

/// A quantile, in parts per million (so it is exact, hashable and ordered): `p99` is
/// 990,000, `p99.9` is 999,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Quantile(u32);

impl Quantile {
    const SCALE: u32 = 1_000_000;

    /// The quantile as a fraction of 1.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / f64::from(Self::SCALE)
    }
}

/// The aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Function {
    /// Arithmetic mean.
    Mean,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Sum.
    Sum,
    /// Number of values.
    Count,
    /// The value with the earliest timestamp.
    First,
    /// The value with the latest timestamp.
    Last,
    /// Sample standard deviation (n − 1), as InfluxDB's `STDDEV()`; none below two values.
    Stddev,
    /// A quantile: exact over a few values, then from a DDSketch of 1 % relative error.
    Quantile(Quantile),
}

impl Function {
    /// Every function but the quantiles, in the order windows report them by default.
    pub const BASIC: [Function; 8] = [
        Function::Mean,
        Function::Min,
        Function::Max,
        Function::Sum,
        Function::Count,
        Function::First,
        Function::Last,
        Function::Stddev,
    ];

    /// Whether the function needs a quantile sketch.
    pub fn needs_sketch(self) -> bool {
        matches!(self, Function::Quantile(_))
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Function::Mean => "mean",
            Function::Min => "min",
            Function::Max => "max",
            Function::Sum => "sum",
            Function::Count => "count",
            Function::First => "first",
            Function::Last => "last",
            Function::Stddev => "stddev",
            Function::Quantile(q) => {
                // p99, p99.9: the shortest decimal form, no trailing zeros.
                let text = format!("{:.4}", f64::from(q.0) / 10_000.0);
                let text = text.trim_end_matches('0').trim_end_matches('.');
                return write!(f, "p{text}");
            }
        })
    }
}

impl FromStr for Function {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(found) = Function::BASIC.into_iter().find(|f| f.to_string() == s) {
            return Ok(found);
        }
        let bad = || {
            format!(
                "`{s}`: expected mean, min, max, sum, count, first, last, stddev or a quantile p0.0001 to p99.9999 (p50, p90, p99...)"
            )
        };
        let percent: f64 = s
            .strip_prefix('p')
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        let ppm = (percent * 10_000.0).round();
        if !(1.0..f64::from(Quantile::SCALE)).contains(&ppm) {
            return Err(bad());
        }
        // In range just above: the cast is exact.
        Ok(Function::Quantile(Quantile(ppm as u32)))
    }
}

/// Named values of a run: each function's result.
pub type Values = Vec<(Function, f64)>;

/// The relative error of quantiles: DDSketch's `alpha`.
pub const SKETCH_RELATIVE_ERROR: f64 = 0.01;

/// Bins a sketch may grow to. At 1 % relative error, 2,048 bins span values over 17
/// orders of magnitude before the lowest bins collapse (which only coarsens quantiles
/// below 10⁻⁹ of the largest value).
const SKETCH_MAX_BINS: u32 = 2048;

/// Smallest magnitude told apart from zero.
const SKETCH_MIN_VALUE: f64 = 1e-9;

/// Values kept exactly before a DDSketch takes over: a window of a few points (most are:
/// a minute of 10-second samples holds six) gets exact quantiles, without the sketch's
/// 1 KiB of bins. `cargo bench --bench windows`: with the sketch from the first value,
/// 1,302 bytes per open window and 1.72 M points/s (0.43 of the native loop).
const EXACT_VALUES: usize = 32;

/// Quantiles of a run: its values while they are few, then a DDSketch.
#[derive(Clone, Serialize, Deserialize)]
enum Sketch {
    /// Every value so far (at most [`EXACT_VALUES`]).
    Exact(Vec<f64>),
    /// The sketch of every value so far.
    Sketched(DDSketch),
}

impl Sketch {
    fn new() -> Self {
        Sketch::Exact(Vec::new())
    }

    fn sketch_of(values: &[f64]) -> DDSketch {
        let mut sketch = DDSketch::new(SketchConfig::new(
            SKETCH_RELATIVE_ERROR,
            SKETCH_MAX_BINS,
            SKETCH_MIN_VALUE,
        ));
        for v in values {
            sketch.add(*v);
        }
        sketch
    }

    fn add(&mut self, v: f64) {
        match self {
            Sketch::Exact(values) if values.len() < EXACT_VALUES => values.push(v),
            Sketch::Exact(values) => {
                let mut sketch = Self::sketch_of(values);
                sketch.add(v);
                *self = Sketch::Sketched(sketch);
            }
            Sketch::Sketched(sketch) => sketch.add(v),
        }
    }

    fn merge(&mut self, other: &Sketch) {
        match (&mut *self, other) {
            (Sketch::Exact(mine), Sketch::Exact(theirs))
                if mine.len() + theirs.len() <= EXACT_VALUES =>
            {
                mine.extend_from_slice(theirs);
            }
            (Sketch::Sketched(mine), Sketch::Sketched(theirs)) => {
                // Sketches of one config always merge.
                let _ = mine.merge(theirs);
            }
            (Sketch::Sketched(mine), Sketch::Exact(theirs)) => {
                for v in theirs {
                    mine.add(*v);
                }
            }
            (Sketch::Exact(mine), theirs) => {
                let mut sketch = Self::sketch_of(mine);
                match theirs {
                    Sketch::Exact(values) => values.iter().for_each(|v| sketch.add(*v)),
                    Sketch::Sketched(other) => {
                        let _ = sketch.merge(other);
                    }
                }
                *self = Sketch::Sketched(sketch);
            }
        }
    }

    /// The `q` quantile, DDSketch's way: the value of rank ⌊q × (n − 1)⌋.
    fn quantile(&self, q: f64) -> Option<f64> {
        match self {
            Sketch::Exact(values) => {
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                let rank = (q * (sorted.len().checked_sub(1)? as f64)) as usize;
                sorted.get(rank).copied()
            }
            Sketch::Sketched(sketch) => sketch.quantile(q).ok()?,
        }
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sketch::Exact(values) => write!(f, "Exact({} values)", values.len()),
            Sketch::Sketched(sketch) => write!(f, "Sketched({} values)", sketch.count()),
        }
    }
}

/// A running aggregate: every function at once, so one pass serves any of them, and two
/// merge. Quantiles need [`Acc::with_sketch`]. Equal timestamps: `first` keeps the value
/// added first, `last` the value added last.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Acc {
    count: u64,
    numeric: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Sum of squared deviations from the mean (Welford), for `stddev`.
    m2: f64,
    first: (Nanos, f64),
    last: (Nanos, f64),
    sketch: Option<Box<Sketch>>,
}

impl Acc {
    /// An empty accumulator that also keeps a quantile sketch.
    pub fn with_sketch() -> Self {
        Self {
            sketch: Some(Box::new(Sketch::new())),
            ..Self::default()
        }
    }

    /// An empty accumulator for `functions`: with a sketch when one of them needs it.
    pub fn for_functions(functions: &[Function]) -> Self {
        if functions.iter().any(|f| f.needs_sketch()) {
            Self::with_sketch()
        } else {
            Self::default()
        }
    }

    /// Adds a value at `ts`; none for a non-numeric one (counted only). Non-finite values
    /// count as non-numeric: one NaN must not poison a window's mean.
    pub fn add(&mut self, ts: Nanos, v: Option<f64>) {
        self.count += 1;
        let Some(v) = v.filter(|v| v.is_finite()) else {
            return;
        };
        if self.numeric == 0 {
            self.min = v;
            self.max = v;
            self.first = (ts, v);
            self.last = (ts, v);
        } else {
            let mean = self.sum / self.numeric as f64;
            let delta = v - mean;
            let new_mean = (self.sum + v) / (self.numeric + 1) as f64;
            self.m2 += delta * (v - new_mean);
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if ts < self.first.0 {
                self.first = (ts, v);
            }
            if ts >= self.last.0 {
                self.last = (ts, v);
            }
        }
        self.numeric += 1;
        self.sum += v;
        if let Some(sketch) = &mut self.sketch {
            sketch.add(v);
        }
    }

    /// Takes in `other`'s values, as if each had been added here after this one's.
    pub fn merge(&mut self, other: &Acc) {
        self.count += other.count;
        if other.numeric == 0 {
            return;
        }
        if self.numeric == 0 {
            let (count, sketched) = (self.count, self.sketch.is_some());
            *self = other.clone();
            self.count = count;
            if sketched && self.sketch.is_none() {
                self.sketch = Some(Box::new(Sketch::new()));
            }
            return;
        }
        let (na, nb) = (self.numeric as f64, other.numeric as f64);
        let delta = other.sum / nb - self.sum / na;
        // Chan et al.'s parallel update of the squared deviations.
        self.m2 += other.m2 + delta * delta * na * nb / (na + nb);
        self.numeric += other.numeric;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.first.0 < self.first.0 {
            self.first = other.first;
        }
        if other.last.0 >= self.last.0 {
            self.last = other.last;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.sketch, &other.sketch) {
            mine.merge(theirs);
        }
    }

    /// The function's value; none without numeric values (except `count`), for `stddev`
    /// below two values, and for a quantile without a sketch.
    pub fn finish(&self, f: Function) -> Option<f64> {
        if f == Function::Count {
            return Some(self.count as f64);
        }
        if self.numeric == 0 {
            return None;
        }
        Some(match f {
            Function::Mean => self.sum / self.numeric as f64,
            Function::Min => self.min,
            Function::Max => self.max,
            Function::Sum => self.sum,
            Function::Count => self.count as f64,
            Function::First => self.first.1,
            Function::Last => self.last.1,
            Function::Stddev if self.numeric < 2 => return None,
            Function::Stddev => (self.m2.max(0.0) / (self.numeric - 1) as f64).sqrt(),
            Function::Quantile(q) => self.sketch.as_ref()?.quantile(q.fraction())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_parse_and_print_back() {
        for name in [
            "mean", "min", "max", "sum", "count", "first", "last", "stddev", "p50", "p90", "p99",
            "p99.9", "p0.01",
        ] {
            let f: Function = name.parse().expect(name);
            assert_eq!(f.to_string(), name);
        }
        assert_eq!(
            "p99".parse::<Function>(),
            Ok(Function::Quantile(Quantile(990_000)))
        );
        for bad in ["median", "p100", "p0", "p-1", "pNaN", "p", "P99", "p1e999"] {
            let error = bad.parse::<Function>().expect_err(bad);
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn each_function_over_a_run_out_of_time_order() {
        let mut acc = Acc::with_sketch();
        for (ts, v) in [
            (5, 2.0),
            (1, 4.0),
            (9, 4.0),
            (3, 4.0),
            (9, 5.0),
            (7, 5.0),
            (2, 7.0),
            (4, 9.0),
        ] {
            acc.add(ts, Some(v));
        }
        acc.add(0, None);
        acc.add(0, Some(f64::NAN));
        let f = |name: &str| acc.finish(name.parse().expect(name));
        assert_eq!(f("count"), Some(10.0), "every value counts");
        assert_eq!(f("sum"), Some(40.0));
        assert_eq!(f("mean"), Some(5.0));
        assert_eq!(f("min"), Some(2.0));
        assert_eq!(f("max"), Some(9.0));
        assert_eq!(f("first"), Some(4.0), "earliest timestamp");
        assert_eq!(f("last"), Some(5.0), "latest timestamp, the later of a tie");
        // Sample stddev of 2,4,4,4,5,5,7,9: sqrt(32 / 7).
        assert!((f("stddev").expect("stddev") - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        let median = f("p50").expect("p50");
        assert!(
            (median - 4.0).abs() <= 4.0 * SKETCH_RELATIVE_ERROR,
            "{median}"
        );
        assert_eq!(Acc::default().finish(Function::Mean), None);
        assert_eq!(Acc::default().finish(Function::Count), Some(0.0));
    }

    proptest! {
        #[test]
        fn merging_equals_adding_everything_to_one(
            a in proptest::collection::vec((-1000i64..1000, -1e6f64..1e6), 0..50),
            b in proptest::collection::vec((-1000i64..1000, -1e6f64..1e6), 0..50),
        ) {
            let (mut left, mut right, mut all) = (Acc::with_sketch(), Acc::with_sketch(), Acc::with_sketch());
            for (ts, v) in &a {
                left.add(*ts, Some(*v));
                all.add(*ts, Some(*v));
            }
            for (ts, v) in &b {
                right.add(*ts, Some(*v));
                all.add(*ts, Some(*v));
            }
            left.merge(&right);
            for f in Function::BASIC.into_iter().chain(["p50".parse(), "p99".parse()].map(|f: Result<Function, _>| f.expect("quantile"))) {
                let (got, want) = (left.finish(f), all.finish(f));
                match (got, want) {
                    (Some(g), Some(w)) => prop_assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{f}: merged {g}, one pass {w}"
                    ),
                    _ => prop_assert_eq!(got, want, "{}", f),
                }
            }
        }

        #[test]
        fn quantiles_are_within_the_relative_error(
            values in proptest::collection::vec(1e-3f64..1e9, 1..500),
            q in 1u32..1_000_000,
        ) {
            let mut acc = Acc::with_sketch();
            for v in &values {
                acc.add(0, Some(*v));
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let quantile = Quantile(q);
            // DDSketch's rank: floor(q × (n − 1)).
            let exact = sorted[(quantile.fraction() * (sorted.len() - 1) as f64) as usize];
            let got = acc.finish(Function::Quantile(quantile)).expect("value");
            prop_assert!((got - exact).abs() <= exact * SKETCH_RELATIVE_ERROR * 1.000_001, "{got} vs {exact}");
        }
    }
}
