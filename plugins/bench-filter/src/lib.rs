//! The trivial filter of the host benchmark: keep a point iff it has a field `value` whose
//! numeric value is >= 0. The benchmark runs the same logic natively for comparison.

use sluice_guest::{FieldValue, Filter, PluginError, Point, export_filter};

struct BenchFilter;

impl Filter for BenchFilter {
    fn new() -> Result<Self, PluginError> {
        Ok(BenchFilter)
    }

    fn keep(&mut self, point: &Point) -> bool {
        point
            .field("value")
            .and_then(FieldValue::as_f64)
            .is_some_and(|v| v >= 0.0)
    }
}

export_filter!(BenchFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_non_negative_numeric_value_only() {
        let verdict = |p: Point| BenchFilter.keep(&p);
        assert!(verdict(Point::new("m", 0).with_field("value", 0.0)));
        assert!(verdict(Point::new("m", 0).with_field("value", 3_u64)));
        assert!(!verdict(Point::new("m", 0).with_field("value", -1_i64)));
        assert!(!verdict(Point::new("m", 0).with_field("value", "1")));
        assert!(!verdict(Point::new("m", 0).with_field("other", 1.0)));
    }
}
