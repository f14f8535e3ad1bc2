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

/// A unit: its dimension and its relation to the dimension's base unit,
/// `base = (value + offset) * num / den`. Keeping the scale a ratio of exact numbers (5/9,
/// 1024) makes round numbers convert exactly: 212 °F is 100 °C, not 100.00000000000001.
#[derive(Clone, Copy)]
struct Unit {
    dimension: Dimension,
    offset: f64,
    num: f64,
    den: f64,
}

fn unit(name: &str) -> Option<Unit> {
    use Dimension::*;
    let (dimension, offset, num, den) = match name {
        "celsius" => (Temperature, 0.0, 1.0, 1.0),
        "kelvin" => (Temperature, -273.15, 1.0, 1.0),
        "fahrenheit" => (Temperature, -32.0, 5.0, 9.0),
        "bytes" => (Bytes, 0.0, 1.0, 1.0),
        "kb" => (Bytes, 0.0, 1e3, 1.0),
        "mb" => (Bytes, 0.0, 1e6, 1.0),
        "gb" => (Bytes, 0.0, 1e9, 1.0),
        "kib" => (Bytes, 0.0, 1024.0, 1.0),
        "mib" => (Bytes, 0.0, 1024.0 * 1024.0, 1.0),
        "gib" => (Bytes, 0.0, 1024.0 * 1024.0 * 1024.0, 1.0),
        "ns" => (Time, 0.0, 1.0, 1e9),
        "us" => (Time, 0.0, 1.0, 1e6),
        "ms" => (Time, 0.0, 1.0, 1e3),
        "s" => (Time, 0.0, 1.0, 1.0),
        "percent" => (Fraction, 0.0, 1.0, 100.0),
        "ratio" => (Fraction, 0.0, 1.0, 1.0),
        _ => return None,
    };
    Some(Unit {
        dimension,
        offset,
        num,
        den,
    })
}

/// One `field:from:to` entry of `convert`.
struct Conversion {
    field: String,
    from: Unit,
    to: Unit,
}

impl Conversion {
    fn parse(spec: &str) -> Result<Self, PluginError> {
        let bad = |why: &str| PluginError::new(format!("parameter `convert`: `{spec}`: {why}"));
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        let [field, from, to] = parts[..] else {
            return Err(bad("expected field:from:to"));
        };
        if field.is_empty() {
            return Err(bad("empty field name"));
        }
        let from_u = unit(from).ok_or_else(|| bad(&format!("unknown unit `{from}`")))?;
        let to_u = unit(to).ok_or_else(|| bad(&format!("unknown unit `{to}`")))?;
        if from_u.dimension != to_u.dimension {
            return Err(bad(&format!("cannot convert `{from}` to `{to}`")));
        }
        Ok(Self {
            field: field.to_owned(),
            from: from_u,
            to: to_u,
        })
    }

    fn apply(&self, v: f64) -> f64 {
        let base = (v + self.from.offset) * self.from.num / self.from.den;
        base * self.to.den / self.to.num - self.to.offset
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
            _ => {
                return Err(PluginError::new(
                    "set both `lookup_table` and `lookup_key`, or neither",
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(spec: &str, v: f64) -> f64 {
        Conversion::parse(spec).expect(spec).apply(v)
    }

    #[test]
    fn converts_round_values_exactly() {
        assert_eq!(convert("t:fahrenheit:celsius", 212.0), 100.0);
        assert_eq!(convert("t:celsius:fahrenheit", 100.0), 212.0);
        assert_eq!(convert("t:kelvin:celsius", 373.15), 100.0);
        assert_eq!(convert("b:mib:gib", 2048.0), 2.0);
        assert_eq!(convert("b:kb:bytes", 1.5), 1500.0);
        assert_eq!(convert("d:ms:s", 1500.0), 1.5);
        assert_eq!(convert("d:s:ns", 2.0), 2e9);
        assert_eq!(convert("u:percent:ratio", 50.0), 0.5);
    }

    #[test]
    fn bad_entries_name_the_parameter_and_entry() {
        for spec in ["t:furlongs:celsius", "t:celsius", "t:celsius:ms", ":s:ms"] {
            let err = Conversion::parse(spec).err().expect(spec);
            assert!(
                err.message.contains("`convert`") && err.message.contains(spec),
                "{}",
                err.message
            );
        }
    }
}
