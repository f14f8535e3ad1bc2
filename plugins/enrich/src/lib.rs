//! Unit conversion and tag enrichment from a lookup table.
//!
//! Parameters:
//! - `convert`: comma-separated `field:from:to` conversions; the field becomes a float.
//!   Units: temperature `celsius`, `fahrenheit`, `kelvin`; bytes `bytes`, `kb`, `mb`, `gb`
//!   (powers of 1000), `kib`, `mib`, `gib` (powers of 1024); time `ns`, `us`, `ms`, `s`;
//!   `percent`, `ratio`.
//! - `lookup_table`, `lookup_key`: the row of the table keyed by the value of tag
//!   `lookup_key` is added as tags; existing tags win unless `overwrite=true`.

use sluice_guest::{FieldValue, PluginError, Point, Transform, export_transform, lookup, params};

#[derive(Clone, Copy, PartialEq)]
enum Dimension {
    Temperature,
    Bytes,
    Time,
    Fraction,
}

/// A unit as (dimension, scale to the base unit, offset): base = value * scale + offset.
fn unit(name: &str) -> Option<(Dimension, f64, f64)> {
    use Dimension::*;
    Some(match name {
        "celsius" => (Temperature, 1.0, 0.0),
        "kelvin" => (Temperature, 1.0, -273.15),
        "fahrenheit" => (Temperature, 5.0 / 9.0, -32.0 * 5.0 / 9.0),
        "bytes" => (Bytes, 1.0, 0.0),
        "kb" => (Bytes, 1e3, 0.0),
        "mb" => (Bytes, 1e6, 0.0),
        "gb" => (Bytes, 1e9, 0.0),
        "kib" => (Bytes, 1024.0, 0.0),
        "mib" => (Bytes, 1024.0 * 1024.0, 0.0),
        "gib" => (Bytes, 1024.0 * 1024.0 * 1024.0, 0.0),
        "ns" => (Time, 1e-9, 0.0),
        "us" => (Time, 1e-6, 0.0),
        "ms" => (Time, 1e-3, 0.0),
        "s" => (Time, 1.0, 0.0),
        "percent" => (Fraction, 0.01, 0.0),
        "ratio" => (Fraction, 1.0, 0.0),
        _ => return None,
    })
}

struct Conversion {
    field: String,
    from: (f64, f64),
    to: (f64, f64),
}

impl Conversion {
    fn parse(spec: &str) -> Result<Self, PluginError> {
        let bad = |why: &str| PluginError::new(format!("parameter `convert`: `{spec}`: {why}"));
        let parts: Vec<&str> = spec.split(':').collect();
        let [field, from, to] = parts[..] else {
            return Err(bad("expected field:from:to"));
        };
        let from_u = unit(from).ok_or_else(|| bad(&format!("unknown unit `{from}`")))?;
        let to_u = unit(to).ok_or_else(|| bad(&format!("unknown unit `{to}`")))?;
        if from_u.0 != to_u.0 {
            return Err(bad("units of different kinds"));
        }
        Ok(Self {
            field: field.to_owned(),
            from: (from_u.1, from_u.2),
            to: (to_u.1, to_u.2),
        })
    }

    fn apply(&self, v: f64) -> f64 {
        let base = v * self.from.0 + self.from.1;
        (base - self.to.1) / self.to.0
    }
}

struct Enrich {
    conversions: Vec<Conversion>,
    lookup: Option<(String, String)>,
    overwrite: bool,
}

impl Transform for Enrich {
    fn new() -> Result<Self, PluginError> {
        let conversions = params::list("convert")
            .iter()
            .map(|s| Conversion::parse(s))
            .collect::<Result<_, _>>()?;
        let lookup = match (params::get("lookup_table"), params::get("lookup_key")) {
            (Some(t), Some(k)) => Some((t, k)),
            (None, None) => None,
            _ => return Err(PluginError::new("set both `lookup_table` and `lookup_key`, or neither")),
        };
        Ok(Self {
            conversions,
            lookup,
            overwrite: params::parse("overwrite")?.unwrap_or(false),
        })
    }

    fn transform(&mut self, mut point: Point, out: &mut Vec<Point>) -> Result<(), PluginError> {
        for c in &self.conversions {
            if let Some(v) = point.field(&c.field).and_then(FieldValue::as_f64) {
                point.set_field(&c.field, FieldValue::Float(c.apply(v)));
            }
        }
        if let Some((table, key_tag)) = &self.lookup {
            let row = point.tag(key_tag).and_then(|key| lookup::get(table, key));
            for (column, value) in row.into_iter().flatten() {
                if self.overwrite || point.tag(&column).is_none() {
                    point.set_tag(&column, &value);
                }
            }
        }
        out.push(point);
        Ok(())
    }
}

export_transform!(Enrich);
