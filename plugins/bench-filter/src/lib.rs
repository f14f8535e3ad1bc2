//! The trivial filter of the host benchmark: keep a point iff it has a field `value` whose
//! numeric value is >= 0. The benchmark runs the same logic natively for comparison.

use sluice_guest::{FieldRef, Filter, PluginError, PointView, export_filter};

struct BenchFilter;

impl Filter for BenchFilter {
    fn new() -> Result<Self, PluginError> {
        Ok(BenchFilter)
    }

    fn keep(&mut self, point: &PointView<'_>) -> bool {
        point
            .field("value")
            .as_ref()
            .and_then(FieldRef::as_f64)
            .is_some_and(|v| v >= 0.0)
    }
}

export_filter!(BenchFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::{Batch, Point};

    #[test]
    fn keeps_non_negative_numeric_value_only() {
        let verdict = |p: Point| {
            BenchFilter
                .filter(&Batch::from_points(&[p]))
                .expect("filter")[0]
        };
        assert!(verdict(Point::new("m", 0).with_field("value", 0.0)));
        assert!(verdict(Point::new("m", 0).with_field("value", 3_u64)));
        assert!(!verdict(Point::new("m", 0).with_field("value", -1_i64)));
        assert!(!verdict(Point::new("m", 0).with_field("value", "1")));
        assert!(!verdict(Point::new("m", 0).with_field("other", 1.0)));
    }
}
