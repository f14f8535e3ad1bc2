//! A filter: drops points whose field `value` is above the parameter `max` (default 100).
//! Points without a numeric `value` are kept.

use sluice_guest::{FieldRef, Filter, PluginError, PointView, export_filter, params};

struct MaxValue {
    max: f64,
}

impl Filter for MaxValue {
    // Once per batch: a bad parameter fails the batch with a message naming it.
    fn new() -> Result<Self, PluginError> {
        Ok(Self {
            max: params::parse("max")?.unwrap_or(100.0),
        })
    }

    // Once per point: true keeps it. A view borrows from the batch; reading copies nothing.
    fn keep(&mut self, point: &PointView<'_>) -> bool {
        point
            .field("value")
            .as_ref()
            .and_then(FieldRef::as_f64)
            .is_none_or(|v| v <= self.max)
    }
}

export_filter!(MaxValue);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::{Batch, Point};

    #[test]
    fn keeps_values_up_to_max_and_points_without_one() {
        let mut filter = MaxValue { max: 50.0 };
        let batch = Batch::from_points(&[
            Point::new("cpu", 1).with_field("value", 20.0),
            Point::new("cpu", 2).with_field("value", 80.0),
            Point::new("température", 3).with_tag("ville", "Zürich").with_field("value", 50i64),
            Point::new("cpu", 4).with_field("other", 99.0),
        ]);
        assert_eq!(filter.filter(&batch), Ok(vec![true, false, true, true]));
    }
}
