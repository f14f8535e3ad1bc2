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
    let bad = || {
        PluginError::new(format!(
            "parameter `per` = `{raw}`: expected e.g. 1s, 500ms, 1m"
        ))
    };
    let split = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (n, unit) = raw.split_at(split);
    let n: f64 = if n.is_empty() {
        1.0
    } else {
        n.parse().map_err(|_| bad())?
    };
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

impl Rate {
    /// The rate from sample `prev` to `cur` (timestamp, value) per `per`; none unless `cur`
    /// is newer.
    fn rate(&self, (prev_ts, prev): (i64, f64), (ts, value): (i64, f64)) -> Option<f64> {
        if ts <= prev_ts {
            return None;
        }
        // A counter that went down was reset: it counted up from 0 since.
        let delta = if self.counter && value < prev {
            value
        } else {
            value - prev
        };
        Some(delta * (self.per_ns / (ts - prev_ts) as f64))
    }
}

impl Transform for Rate {
    fn new() -> Result<Self, PluginError> {
        Ok(Self {
            fields: params::list("fields"),
            suffix: params::get_or("suffix", "_rate"),
            per_ns: parse_per(params::get_or("per", "1s").trim())?,
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
            let sample = (point.timestamp, value);
            if let Some(prev) = state::get_sample(&key) {
                // Out of order: no rate, and the state keeps the newer sample.
                let Some(rate) = self.rate(prev, sample) else {
                    continue;
                };
                point.set_field(&format!("{field}{}", self.suffix), FieldValue::Float(rate));
            }
            state::set_sample(&key, sample)?;
        }
        out.push(point);
        Ok(())
    }
}

export_transform!(Rate);

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(counter: bool) -> Rate {
        Rate {
            fields: Vec::new(),
            suffix: "_rate".into(),
            per_ns: 1e9,
            counter,
        }
    }

    #[test]
    fn per_accepts_units_and_rejects_junk() {
        assert_eq!(parse_per("1s").ok(), Some(1e9));
        assert_eq!(parse_per("m").ok(), Some(60e9));
        assert_eq!(parse_per("500ms").ok(), Some(5e8));
        assert_eq!(parse_per("1.5h").ok(), Some(5400e9));
        for bad in ["", "10", "0s", "1d", "s1"] {
            let err = parse_per(bad).expect_err(bad);
            assert!(err.message.contains("`per`"), "{}", err.message);
        }
    }

    #[test]
    fn counter_reset_counts_from_zero_and_derivative_may_be_negative() {
        let s = 1_000_000_000;
        assert_eq!(rate(true).rate((s, 100.0), (3 * s, 300.0)), Some(100.0));
        assert_eq!(rate(true).rate((s, 100.0), (2 * s, 40.0)), Some(40.0));
        assert_eq!(rate(false).rate((s, 100.0), (2 * s, 40.0)), Some(-60.0));
        assert_eq!(rate(true).rate((s, 1.0), (s, 2.0)), None, "same time");
        assert_eq!(rate(true).rate((s, 1.0), (0, 2.0)), None, "older");
    }
}
