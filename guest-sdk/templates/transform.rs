//! A transform: converts the field `temp_f` (Fahrenheit) into `temp_c` (Celsius), rounded
//! to the parameter `decimals` (default 1). Other points pass unchanged.

use sluice_guest::{FieldValue, PluginError, Point, Transform, export_transform, params};

struct Celsius {
    scale: f64,
}

impl Transform for Celsius {
    // Once per batch: a bad parameter fails the batch with a message naming it.
    fn new() -> Result<Self, PluginError> {
        let decimals: i32 = params::parse("decimals")?.unwrap_or(1);
        Ok(Self {
            scale: 10f64.powi(decimals.clamp(0, 9)),
        })
    }

    // Once per point: push what replaces it (nothing drops it, several split it).
    fn transform(&mut self, mut point: Point, out: &mut Vec<Point>) -> Result<(), PluginError> {
        if let Some(f) = point.field("temp_f").and_then(FieldValue::as_f64) {
            point.remove_field("temp_f");
            let c = ((f - 32.0) * 5.0 / 9.0 * self.scale).round() / self.scale;
            point.set_field("temp_c", FieldValue::Float(c));
        }
        out.push(point);
        Ok(())
    }
}

export_transform!(Celsius);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::Batch;

    #[test]
    fn converts_fahrenheit_and_passes_the_rest() {
        let mut t = Celsius { scale: 10.0 };
        let batch = Batch::from_points(&[
            Point::new("weather", 1).with_tag("ville", "Zürich").with_field("temp_f", 212.0),
            Point::new("cpu", 2).with_field("value", 1.0),
        ]);
        let out = t.transform_batch(&batch).expect("transform");
        assert_eq!(out[0].field("temp_c"), Some(&FieldValue::Float(100.0)));
        assert_eq!(out[0].field("temp_f"), None);
        assert_eq!(out[0].tag("ville"), Some("Zürich"));
        assert_eq!(out[1], Point::new("cpu", 2).with_field("value", 1.0));
    }
}
