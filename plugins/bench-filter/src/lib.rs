//! The trivial filter of the host benchmark: keep a point iff it has a field `value` whose
//! numeric value is >= 0. The benchmark runs the same logic natively for comparison.

use sluice_guest::{Filter, FieldValue, PluginError, Point, export_filter};

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
