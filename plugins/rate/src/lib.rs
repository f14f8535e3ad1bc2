//! Rate (derivative) of counters.
//!
//! Parameters:
//! - `fields`: comma-separated fields (default: every numeric field);
//! - `suffix`: name suffix of the rate field (default `_rate`);
//! - `per`: the rate's time unit, `1s` by default (`ns`, `us`, `ms`, `s`, `m`, `h`);
//! - `counter`: `true` (default) treats a decrease as a counter reset and computes the rate
//!   from zero, as Prometheus does; `false` gives the plain derivative, which may be
//!   negative.
//!
//! The last sample of each series and field is kept in the host's state, so rates continue
//! across batches and plugin swaps. A point no newer than the last sample gets no rate and
//! doesn't change the state.

use sluice_guest::{FieldValue, PluginError, Point, Transform, export_transform, params, state};

struct Rate {
    fields: Vec<String>,
    suffix: String,
    per_ns: f64,
    counter: bool,
}

fn parse_per(raw: &str) -> Result<f64, PluginError> {
    let bad = || PluginError::new(format!("parameter `per` = `{raw}`: expected e.g. 1s, 500ms, 1m"));
    let split = raw.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
    let (n, unit) = raw.split_at(split);
    let n: f64 = if n.is_empty() { 1.0 } else { n.parse().map_err(|_| bad())? };
    let unit_ns = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(bad()),
    };
    if n <= 0.0 {
        return Err(bad());
    }
    Ok(n * unit_ns)
}

impl Transform for Rate {
    fn new() -> Result<Self, PluginError> {
        Ok(Self {
            fields: params::list("fields"),
            suffix: params::get_or("suffix", "_rate"),
            per_ns: parse_per(&params::get_or("per", "1s"))?,
            counter: params::parse("counter")?.unwrap_or(true),
        })
    }

    fn transform(&mut self, mut point: Point, out: &mut Vec<Point>) -> Result<(), PluginError> {
        let series = point.series().key();
        let selected: Vec<(String, f64)> = point
            .fields
            .iter()
            .filter(|f| self.fields.is_empty() || self.fields.contains(&f.key))
            .filter_map(|f| Some((f.key.clone(), f.value.as_f64()?)))
            .collect();
        for (field, value) in selected {
            let key = format!("{series}\u{1f}{field}");
            if let Some((prev_ts, prev)) = state::get_sample(&key) {
                if point.timestamp <= prev_ts {
                    continue; // out of order: no rate, state untouched
                }
                let delta = if self.counter && value < prev { value } else { value - prev };
                let dt = (point.timestamp - prev_ts) as f64;
                point.set_field(&format!("{field}{}", self.suffix), FieldValue::Float(delta / dt * self.per_ns));
            }
            state::set_sample(&key, (point.timestamp, value))?;
        }
        out.push(point);
        Ok(())
    }
}

export_transform!(Rate);
