//! InfluxDB line protocol: parsing into [`Point`]s (the grammar of the canonical Go parser,
//! see [`scan`] for why it is written here), and writing points back out.
//!
//! Parse errors name the line (1-based, as in the body, counting newlines inside strings)
//! and the reason, so a client can fix its input.

mod scan;

use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::point::{FieldValue, Nanos, Point, Tag};

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

impl Precision {
    /// The unit's name, for messages (`seconds`).
    pub fn unit_name(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "nanoseconds",
            Precision::Microseconds => "microseconds",
            Precision::Milliseconds => "milliseconds",
            Precision::Seconds => "seconds",
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
    let (points, _, errors) = parse_lines(body, precision, default_ts);
    (points, errors)
}

/// As [`parse`], with the 1-based line of each point.
pub fn parse_lines(
    body: &str,
    precision: Precision,
    default_ts: Nanos,
) -> (Vec<Point>, Vec<usize>, Vec<LineError>) {
    let lines = body.bytes().filter(|&c| c == b'\n').count() + 1;
    let mut points = Vec::with_capacity(lines);
    let mut at = Vec::with_capacity(lines);
    let mut errors = Vec::new();
    let (mut start, mut line) = (0, 1);
    while start <= body.len() {
        let (end, inner_newlines) = scan::line_end(body.as_bytes(), start);
        let text = scan::trim_leading(&body[start..end]);
        if !text.is_empty() {
            match scan::point(text).and_then(|(point, ts)| stamp(point, ts, precision, default_ts))
            {
                Ok(point) => {
                    points.push(point);
                    at.push(line);
                }
                Err(reason) => errors.push(LineError { line, reason }),
            }
        }
        start = end + 1;
        line += 1 + inner_newlines;
    }
    (points, at, errors)
}

/// Sets the timestamp (`written` in `precision`, or `default_ts`) and sorts the tags.
fn stamp(
    mut point: Point,
    written: Option<i64>,
    precision: Precision,
    default_ts: Nanos,
) -> Result<Point, String> {
    point.timestamp = match written {
        Some(ts) => ts
            .checked_mul(precision.nanos_per_unit())
            .ok_or_else(|| format!("timestamp {ts} overflows nanoseconds at this precision"))?,
        None => default_ts,
    };
    point.sort_tags();
    Ok(point)
}

/// Writes `measurement,k=v,...` with line-protocol escaping.
pub fn write_series_key(out: &mut impl fmt::Write, measurement: &str, tags: &[Tag]) -> fmt::Result {
    // Backslashes too: the parser reads `\\` as one, so any text prints back as itself.
    escape(out, measurement, &[',', ' ', '\\'])?;
    for tag in tags {
        out.write_char(',')?;
        escape(out, &tag.key, &[',', '=', ' ', '\\'])?;
        out.write_char('=')?;
        escape(out, &tag.value, &[',', '=', ' ', '\\'])?;
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
        escape(out, &field.key, &[',', '=', ' ', '\\'])?;
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

    /// The old parser (the `influxdb-line-protocol` crate) as an oracle: its points, and the
    /// (logical) line numbers of its errors.
    fn reference(body: &str) -> (Vec<Point>, Vec<usize>) {
        use crate::point::Field;
        use influxdb_line_protocol as ilp;
        let mut points = Vec::new();
        let mut errors = Vec::new();
        for (index, raw) in ilp::split_lines(body).enumerate() {
            match ilp::parse_lines(raw).next() {
                None => {}
                Some(Err(_)) => errors.push(index + 1),
                Some(Ok(line)) => {
                    let mut point = Point {
                        measurement: String::from(line.series.measurement).into(),
                        tags: (line.series.tag_set.into_iter().flatten())
                            .map(|(k, v)| Tag {
                                key: String::from(k).into(),
                                value: String::from(v).into(),
                            })
                            .collect(),
                        fields: (line.field_set.into_iter())
                            .map(|(k, v)| Field {
                                key: String::from(k).into(),
                                value: match v {
                                    ilp::FieldValue::I64(v) => FieldValue::Integer(v),
                                    ilp::FieldValue::U64(v) => FieldValue::Unsigned(v),
                                    ilp::FieldValue::F64(v) => FieldValue::Float(v),
                                    ilp::FieldValue::Boolean(v) => FieldValue::Boolean(v),
                                    ilp::FieldValue::String(v) => FieldValue::String(v.into()),
                                },
                            })
                            .collect(),
                        timestamp: line.timestamp.unwrap_or(-1),
                    };
                    point.sort_tags();
                    points.push(point);
                }
            }
        }
        (points, errors)
    }

    /// A small deterministic generator (xorshift), so a failure reproduces.
    struct Gen(u64);

    impl Gen {
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            from[(self.0 % from.len() as u64) as usize]
        }

        /// Mostly `clean`, sometimes `nasty`: enough valid lines to compare values too.
        fn mostly<'a>(&mut self, clean: &[&'a str], nasty: &[&'a str]) -> &'a str {
            if self.pick(&["c", "c", "c", "c", "c", "c", "n"]) == "c" {
                self.pick(clean)
            } else {
                self.pick(nasty)
            }
        }

        fn name(&mut self) -> String {
            const CLEAN: &[&str] = &["m", "cpu", "x1", "é", "-", ".", "\\ ", "\\,", "\\="];
            const NASTY: &[&str] = &[
                "=", ",", " ", "\\", "\\\\", "\\x", "\"", "\t", "#", "\0", "\\\t",
            ];
            let n = 1 + self.pick(&["0", "1", "2"]).parse::<usize>().unwrap_or(0);
            (0..n).map(|_| self.mostly(CLEAN, NASTY)).collect()
        }

        fn line(&mut self) -> String {
            const VALUES: &[&str] = &[
                "1",
                "-1.5",
                "1e5",
                "1.5E-3",
                "01",
                "1.5e+2",
                "1i",
                "-3i",
                "7u",
                "t",
                "TRUE",
                "True",
                "false",
                "F",
                "\"a b\"",
                "\"q\\\"x\"",
                "\"back\\\\\"",
                "\"lone\\ x\"",
                "\"\"",
                "\"multi\nline\"",
                "\"c,d=e\"",
            ];
            const BAD_VALUES: &[&str] = &[
                "1.",
                "1e",
                "-",
                "+1",
                ".5",
                "9223372036854775808i",
                "i",
                "1.5i",
                "-1u",
                "18446744073709551616u",
                "tRUE",
                "tr",
                "\"unterminated",
                "\"x\"y",
                "1\t",
                "",
            ];
            const TIMES: &[&str] = &["", " 123", " -5", "  7", " 1 "];
            const BAD_TIMES: &[&str] =
                &[" +5", " 1.5", " ", " 9223372036854775808", " 1 x", " 1,2"];
            let mut line = self.name();
            for _ in 0..self.pick(&["0", "0", "1", "2"]).parse().unwrap_or(0) {
                line += &format!(",{}={}", self.name(), self.name());
            }
            line += self.mostly(&[" ", "  "], &["\t", ""]);
            for i in 0..self.pick(&["1", "1", "2", "3"]).parse().unwrap_or(1) {
                if i > 0 {
                    line += self.mostly(&[","], &[", ", ",,"]);
                }
                let value = self.mostly(VALUES, BAD_VALUES);
                line += &format!("{}={value}", self.name());
            }
            line + self.mostly(TIMES, BAD_TIMES)
        }
    }

    #[test]
    fn agrees_with_influxdb_line_protocol() {
        let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..30_000 {
            let mut body = String::new();
            for _ in 0..generator.pick(&["1", "2", "3"]).parse().unwrap_or(1) {
                body += &generator.line();
                body += generator.pick(&["\n", "\n", "\r\n", "\n\n", "\n# note \"x\n", "\n  "]);
            }
            let (ours, our_errors) = parse(&body, Precision::Nanoseconds, -1);
            let (theirs, their_errors) = reference(&body);
            assert_eq!(ours, theirs, "points of {body:?}");
            assert_eq!(
                our_errors.len(),
                their_errors.len(),
                "errors of {body:?}: {our_errors:?}"
            );
            // Line numbers agree where no line spans newlines (ours count those).
            if !influxdb_line_protocol::split_lines(&body).any(|l| l.contains('\n')) {
                let lines: Vec<_> = our_errors.iter().map(|e| e.line).collect();
                assert_eq!(lines, their_errors, "error lines of {body:?}");
            }
            accepted += ours.len();
            refused += our_errors.len();
        }
        assert!(
            accepted > 10_000 && refused > 10_000,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn errors_say_what_is_wrong_and_floats_must_be_finite() {
        let reason = |line: &str| parse(line, Precision::Nanoseconds, 0).1[0].reason.clone();
        assert_eq!(reason("cpu v=1e999"), "field `v`: float 1e999 out of range");
        assert!(reason("cpu v=oops").starts_with("field `v`: invalid value `oops`"));
        assert_eq!(reason("cpu,host v=1"), "tag `host` has no `=value`");
        assert_eq!(
            reason("cpu"),
            "missing fields (expected a space, then key=value)"
        );
        assert_eq!(
            reason("cpu s=\"abc"),
            "string value starting `\"abc` has no closing quote"
        );
        assert_eq!(reason("cpu v=1 12x"), "invalid timestamp `12x`");
        let (_, errors) = parse(
            "a v=1\nb s=\"two\nlines\"\nc v=oops",
            Precision::Nanoseconds,
            0,
        );
        assert_eq!(
            errors[0].line, 4,
            "lines count the newline inside the string"
        );
    }

    #[test]
    fn timestamp_overflow_is_an_error() {
        let (_, errors) = parse("cpu v=1 9223372036854775807", Precision::Seconds, 0);
        assert!(errors[0].reason.contains("overflows"), "{errors:?}");
    }
}
