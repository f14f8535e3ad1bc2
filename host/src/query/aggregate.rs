//! Aggregation of raw points into fixed steps: `mean`, `min`, `max`, `sum`, `count`,
//! `last`. Buckets are aligned to multiples of the step since the epoch, so the same query
//! gives the same buckets whatever its start.

use crate::aggregate::{Acc, Function};
use crate::api::ApiError;
use crate::point::{FieldValue, Nanos};

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
        let step = humantime::parse_duration(raw)
            .map_err(|e| ApiError::invalid(format!("parameter `step` = `{raw}`: {e}")))?;
        let step = Nanos::try_from(step.as_nanos())
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                ApiError::invalid(format!("parameter `step` = `{raw}`: out of range"))
            })?;
        Ok(Self { function, step })
    }

    /// Aggregates time-sorted points into (bucket start, value); non-numeric values are
    /// skipped (they count for `count`).
    pub fn apply(&self, points: &[(Nanos, FieldValue)]) -> Vec<(Nanos, f64)> {
        let mut out: Vec<(Nanos, f64)> = Vec::new();
        let mut bucket: Option<(Nanos, Acc)> = None;
        for (ts, value) in points {
            let start = ts.div_euclid(self.step) * self.step;
            match &mut bucket {
                Some((b, acc)) if *b == start => acc.add(value.as_f64()),
                _ => {
                    if let Some((b, acc)) = bucket.take() {
                        out.extend(acc.finish(self.function).map(|v| (b, v)));
                    }
                    let mut acc = Acc::default();
                    acc.add(value.as_f64());
                    bucket = Some((start, acc));
                }
            }
        }
        if let Some((b, acc)) = bucket {
            out.extend(acc.finish(self.function).map(|v| (b, v)));
        }
        out
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
        assert!(Aggregation::parse("mean", None).is_err());
    }
}
