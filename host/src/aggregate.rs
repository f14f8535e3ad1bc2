//! Aggregate functions over a run of values, shared by queries (steps) and windows.

use std::str::FromStr;

/// The aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Arithmetic mean.
    Mean,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Sum.
    Sum,
    /// Number of points.
    Count,
    /// The latest value.
    Last,
}

impl Function {
    /// Every function, in the order windows report them by default.
    pub const ALL: [Function; 6] = [
        Function::Mean,
        Function::Min,
        Function::Max,
        Function::Sum,
        Function::Count,
        Function::Last,
    ];

    /// The function's name (`mean`...).
    pub fn name(self) -> &'static str {
        match self {
            Function::Mean => "mean",
            Function::Min => "min",
            Function::Max => "max",
            Function::Sum => "sum",
            Function::Count => "count",
            Function::Last => "last",
        }
    }
}

impl FromStr for Function {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Function::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("`{s}`: expected mean, min, max, sum, count or last"))
    }
}

/// A running aggregate: every function at once, so one pass serves any of them.
#[derive(Debug, Clone, Default)]
pub struct Acc {
    count: u64,
    numeric: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: Option<f64>,
}

impl Acc {
    /// Adds a value; none for a non-numeric one (counted only).
    pub fn add(&mut self, v: Option<f64>) {
        self.count += 1;
        let Some(v) = v else { return };
        if self.numeric == 0 {
            self.min = v;
            self.max = v;
        }
        self.numeric += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = Some(v);
    }

    /// The function's value; none without numeric values (except `count`).
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
            Function::Last => self.last?,
            Function::Count => self.count as f64,
        })
    }
}
