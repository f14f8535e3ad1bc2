//! PromQL, evaluated by Sluice with Prometheus 2.42's semantics: parsed by `promql-parser`,
//! evaluated over a [`Source`] of labelled samples at every step of a [`Grid`] at once.
//!
//! Each node of the expression yields a value for all steps (Prometheus' range evaluation):
//! a scalar per step, or series with an optional value per step. Selectors read their
//! series once for the whole grid; range functions slide a window over those samples.
//! Semantics kept from Prometheus 2.42, since a differential test holds Sluice to it:
//! lookback and range windows closed at both ends (`[t - 5m, t]`), staleness markers end a
//! series, `rate` extrapolates to the window's edges, and most functions drop the metric
//! name.

mod aggregation;
mod binary;
mod eval;
mod functions;
mod labels;

use std::time::Duration;

pub use eval::{Evaluated, Series, evaluate, millis};
pub use labels::{Labels, METRIC_NAME};
pub use promql_parser::label::Matcher;

/// Milliseconds since the epoch: PromQL's unit of time.
pub type Millis = i64;

/// How far back an instant selector looks for a series' latest sample (Prometheus' default).
pub const LOOKBACK: Millis = 5 * 60 * 1000;

/// The step of a subquery that names none (Prometheus' default evaluation interval).
pub const DEFAULT_SUBQUERY_STEP: Millis = 60 * 1000;

/// Whether `v` is Prometheus' staleness marker (a NaN that ends a series), as remote write
/// and OTLP store it.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == crate::ingest::remote_write::STALE_NAN
}

/// The times a query is evaluated at: `start`, `start + step`, ... up to `end`. An instant
/// query is a grid of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The first evaluation time.
    pub start: Millis,
    /// The last evaluation time (inclusive).
    pub end: Millis,
    /// Between evaluation times; positive.
    pub step: Millis,
}

impl Grid {
    /// One evaluation at `at`.
    pub fn instant(at: Millis) -> Self {
        Self {
            start: at,
            end: at,
            step: 1,
        }
    }

    /// How many evaluation times.
    pub fn len(&self) -> usize {
        usize::try_from((self.end - self.start) / self.step + 1).unwrap_or(0)
    }

    /// Whether the grid has no evaluation times (never, for a valid grid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th evaluation time.
    pub fn at(&self, i: usize) -> Millis {
        self.start + self.step * i as Millis
    }
}

/// One series as a source holds it: its labels and samples, sorted by time. Staleness
/// markers are kept ([`is_stale`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    /// The labels, `__name__` among them.
    pub labels: Labels,
    /// (time, value), sorted by time.
    pub samples: Vec<(Millis, f64)>,
}

/// Where selectors read series from.
pub trait Source {
    /// Every series matching all of `matchers`, with its samples in `[start, end]`.
    ///
    /// # Errors
    /// When the series can't be read; the query fails with it.
    fn select(
        &self,
        matchers: &[Matcher],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<RawSeries>, EvalError>;

    /// [`Source::select`], each series handed to `reduce` as it is read, by the thread
    /// that read it: what it reduces to (a range function's value at each step, under the
    /// series' own labels) is all that is kept of it. A range function over 1,000 series of
    /// a day held every sample at once before (138 MB), then evaluated on one thread. The
    /// default selects all, then reduces.
    ///
    /// # Errors
    /// [`Source::select`]'s, and the first of `reduce`.
    fn select_reduced(
        &self,
        matchers: &[Matcher],
        start: Millis,
        end: Millis,
        reduce: Reduce<'_>,
    ) -> Result<Vec<Series>, EvalError> {
        self.select(matchers, start, end)?
            .into_iter()
            .map(reduce)
            .collect()
    }
}

/// What [`Source::select_reduced`] makes of each series.
pub type Reduce<'a> = &'a (dyn Fn(RawSeries) -> Result<Series, EvalError> + Sync);

/// How much a query may read and hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Samples selectors may read, in all (Prometheus' `--query.max-samples` is 50 M).
    pub max_samples: usize,
    /// How long evaluation may take.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Why a query failed, in Prometheus' error types.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query is malformed or uses what Sluice does not support; retrying can't help.
    #[error("{0}")]
    BadData(String),
    /// The query is valid but its evaluation failed on the data (many-to-many matching,
    /// duplicate series); retrying the same query over the same data can't help.
    #[error("{0}")]
    Execution(String),
    /// Over the query's limits; a narrower query can succeed.
    #[error("{0}")]
    TooLarge(String),
    /// The query took longer than allowed; a narrower query can succeed.
    #[error("query timed out after {0:?}; a narrower range or fewer series can help")]
    Timeout(Duration),
    /// The series could not be read (the store failed); retrying can help once it is back.
    #[error("{0}")]
    Unavailable(String),
}

impl EvalError {
    /// A query using a feature Sluice does not evaluate.
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        EvalError::BadData(format!("unsupported in Sluice's PromQL: {what}"))
    }
}

/// Parses `query`, naming what is wrong with it.
///
/// # Errors
/// [`EvalError::BadData`] with the parser's message.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr, EvalError> {
    use promql_parser::parser::{Function, value::ValueType};
    // Prometheus 2.x's name for what 3.x calls `double_exponential_smoothing`; the parser
    // knows only the new one.
    static HOLT_WINTERS: std::sync::Once = std::sync::Once::new();
    HOLT_WINTERS.call_once(|| {
        let registered = promql_parser::parser::register_extra_functions(vec![Function {
            name: "holt_winters",
            arg_types: vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            variadic: 0,
            return_type: ValueType::Vector,
            experimental: false,
        }]);
        if let Err(e) = registered {
            tracing::warn!(error = e, "holt_winters() is not available in PromQL.");
        }
    });
    promql_parser::parser::parse(query)
        .map_err(|e| EvalError::BadData(format!("invalid parameter \"query\": {e}")))
}

/// A sample value as Prometheus writes it: the shortest decimal that reads back the same,
/// never in exponent notation (Go's `FormatFloat(v, 'f', -1, 64)`), and `+Inf`, `-Inf`,
/// `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests;
