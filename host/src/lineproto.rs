//! InfluxDB line protocol: parsing (with `influxdb-line-protocol`, the IOx parser, a port of
//! the canonical Go one) into [`Point`]s, and writing points back out.
//!
//! Parse errors name the line (1-based) and the reason, so a client can fix its input.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use influxdb_line_protocol as ilp;

use crate::point::{Field, FieldValue, Nanos, Point, Tag};

/// Timestamp precision of a write, as InfluxDB's `precision` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the default, as in InfluxDB).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
}

impl Precision {
    /// Nanoseconds per unit of this precision.
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // InfluxDB v1 also spells these `n`, `u`, `ms`, `s`.
        match s {
            "ns" | "n" => Ok(Precision::Nanoseconds),
            "us" | "u" | "µs" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            other => Err(format!(
                "unknown precision `{other}`: expected ns, us, ms or s"
            )),
        }
    }
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses every line of `body`; lines without a timestamp get `default_ts`.
///
/// Returns the points of the good lines and the errors of the bad ones, in order, so the
/// caller can choose its partial-write rule.
pub fn parse(body: &str, precision: Precision, default_ts: Nanos) -> (Vec<Point>, Vec<LineError>) {
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in ilp::split_lines(body).enumerate() {
        let line = index + 1;
        let Some(parsed) = ilp::parse_lines(raw).next() else {
            continue; // blank line or comment
        };
        match parsed
            .map_err(|e| e.to_string())
            .and_then(|p| to_point(p, precision, default_ts))
        {
            Ok(point) => points.push(point),
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    (points, errors)
}

fn to_point(
    line: ilp::ParsedLine<'_>,
    precision: Precision,
    default_ts: Nanos,
) -> Result<Point, String> {
    let timestamp = match line.timestamp {
        Some(ts) => ts
            .checked_mul(precision.nanos_per_unit())
            .ok_or_else(|| format!("timestamp {ts} overflows nanoseconds at this precision"))?,
        None => default_ts,
    };
    let tags = line
        .series
        .tag_set
        .into_iter()
        .flatten()
        .map(|(k, v)| Tag {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect();
    let fields = line
        .field_set
        .into_iter()
        .map(|(k, v)| Field {
            key: k.to_string(),
            value: match v {
                ilp::FieldValue::I64(v) => FieldValue::Integer(v),
                ilp::FieldValue::U64(v) => FieldValue::Unsigned(v),
                ilp::FieldValue::F64(v) => FieldValue::Float(v),
                ilp::FieldValue::Boolean(v) => FieldValue::Boolean(v),
                ilp::FieldValue::String(v) => FieldValue::String(v.to_string()),
            },
        })
        .collect();
    let mut point = Point {
        measurement: line.series.measurement.to_string(),
        tags,
        fields,
        timestamp,
    };
    point.sort_tags();
    Ok(point)
}

/// Writes `measurement,k=v,...` with line-protocol escaping.
pub fn write_series_key(out: &mut impl fmt::Write, measurement: &str, tags: &[Tag]) -> fmt::Result {
    escape(out, measurement, &[',', ' '])?;
    for tag in tags {
        out.write_char(',')?;
        escape(out, &tag.key, &[',', '=', ' '])?;
        out.write_char('=')?;
        escape(out, &tag.value, &[',', '=', ' '])?;
    }
    Ok(())
}

/// Formats one point as a line of line protocol (no trailing newline).
pub fn format_point(point: &Point) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_point(&mut out, point);
    out
}

fn write_point(out: &mut String, point: &Point) -> fmt::Result {
    write_series_key(out, &point.measurement, &point.tags)?;
    for (i, field) in point.fields.iter().enumerate() {
        out.write_char(if i == 0 { ' ' } else { ',' })?;
        escape(out, &field.key, &[',', '=', ' '])?;
        out.write_char('=')?;
        match &field.value {
            FieldValue::Float(v) => write!(out, "{v}")?,
            FieldValue::Integer(v) => write!(out, "{v}i")?,
            FieldValue::Unsigned(v) => write!(out, "{v}u")?,
            FieldValue::Boolean(v) => write!(out, "{v}")?,
            FieldValue::String(v) => {
                out.write_char('"')?;
                escape(out, v, &['"', '\\'])?;
                out.write_char('"')?;
            }
        }
    }
    write!(out, " {}", point.timestamp)
}

fn escape(out: &mut impl fmt::Write, s: &str, special: &[char]) -> fmt::Result {
    for c in s.chars() {
        if special.contains(&c) {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_tags_and_precision() {
        let body = "cpu,region=eu,host=a usage=1.5,count=3i,big=7u,up=t,name=\"x y\" 1700000000\n";
        let (points, errors) = parse(body, Precision::Seconds, 0);
        assert!(errors.is_empty(), "{errors:?}");
        let p = &points[0];
        assert_eq!(p.measurement, "cpu");
        // tags come out sorted by key
        assert_eq!(p.tags[0].key, "host");
        assert_eq!(p.tag("region"), Some("eu"));
        assert_eq!(p.timestamp, 1_700_000_000_000_000_000);
        assert_eq!(p.field("count"), Some(&FieldValue::Integer(3)));
        assert_eq!(p.field("big"), Some(&FieldValue::Unsigned(7)));
        assert_eq!(p.field("up"), Some(&FieldValue::Boolean(true)));
        assert_eq!(p.field("name"), Some(&FieldValue::String("x y".into())));
    }

    #[test]
    fn errors_name_the_line_and_keep_good_lines() {
        let body = "cpu v=1 1\n\ncpu v=oops 2\nmem free=2i\ncpu\n";
        let (points, errors) = parse(body, Precision::Nanoseconds, 42);
        assert_eq!(points.len(), 2);
        assert_eq!(
            points[1].timestamp, 42,
            "missing timestamp takes the default"
        );
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 3);
        assert_eq!(errors[1].line, 5);
        assert!(
            errors[0].to_string().starts_with("line 3:"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn format_round_trips() {
        let body = "disk\\ io,dev=sd\\,a,host=h\\=1 free=1.5,n=2i,u=3u,ok=false,s=\"q\\\"uote\" 99";
        let (points, errors) = parse(body, Precision::Nanoseconds, 0);
        assert!(errors.is_empty(), "{errors:?}");
        let line = format_point(&points[0]);
        let (again, errors) = parse(&line, Precision::Nanoseconds, 0);
        assert!(errors.is_empty(), "{line}: {errors:?}");
        assert_eq!(again, points);
    }

    #[test]
    fn timestamp_overflow_is_an_error() {
        let (_, errors) = parse("cpu v=1 9223372036854775807", Precision::Seconds, 0);
        assert!(errors[0].reason.contains("overflows"), "{errors:?}");
    }
}
