//! The line-protocol scanner: splits a body into lines and parses each into a [`Point`].
//!
//! Written here rather than taken from `influxdb-line-protocol` (the IOx port of the Go
//! parser) because that crate's nom combinators were the largest item of bulk ingest CPU:
//! they build and drop an error value for every alternative they try on every field value.
//! `benches/lineproto.rs` compares the two on the bench workloads. The grammar follows that
//! crate rule for rule (line splitting, escapes, value forms), and the
//! `lineproto::tests::agrees_with_influxdb_line_protocol` test runs both on generated input
//! and requires the same answer, with one deliberate difference: floats that overflow to
//! infinity are refused, as InfluxDB does.

use crate::point::{Field, FieldValue, Name, Point, Tag};

/// A logical line of `body` starting at byte `start`: its end (an unquoted newline, or the
/// end of the body) and how many newlines it contains (inside quoted strings).
///
/// A port of the Go parser's `scanLine`: a backslash hides the next byte, and once past the
/// first space a double quote opens or closes a string only where a field value may start
/// (more `=` than `,` seen outside quotes).
pub fn line_end(body: &[u8], start: usize) -> (usize, usize) {
    // Fast path: without quotes or backslashes the line ends at the next newline.
    let rest = &body[start.min(body.len())..];
    let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
    if !rest[..end].iter().any(|&c| c == b'"' || c == b'\\') {
        return (start + end, 0);
    }
    let (mut quoted, mut fields, mut escape) = (false, false, false);
    let (mut equals, mut commas, mut inner) = (0usize, 0usize, 0usize);
    for (i, &c) in body.iter().enumerate().skip(start) {
        if escape {
            escape = false;
            inner += usize::from(c == b'\n');
            continue;
        }
        match c {
            b'\\' => escape = true,
            b' ' => fields = true,
            b'=' if fields && !quoted => equals += 1,
            b',' if fields && !quoted => commas += 1,
            b'"' if fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => return (i, inner),
            b'\n' => inner += 1,
            _ => {}
        }
    }
    (body.len(), inner)
}

/// `line` without leading whitespace and comment lines; empty when nothing is left.
pub fn trim_leading(mut line: &str) -> &str {
    loop {
        line = line.trim_start_matches([' ', '\t', '\n']);
        if !line.starts_with('#') {
            return line;
        }
        line = line.find('\n').map_or("", |n| &line[n..]);
    }
}

/// What may end a token, and which escaped characters stand for themselves.
struct TokenRule {
    /// The bytes a token's scan stops at: those that end it (space, tab, newline and the
    /// rule's own) and the backslash, as one lookup a byte instead of a test of each byte
    /// against a list.
    special: [bool; 256],
    /// Characters a backslash escapes; before any other, the backslash is kept.
    escapable: &'static [u8],
}

impl TokenRule {
    /// A rule ending tokens at space, tab, newline and `stop`.
    const fn new(stop: &[u8], escapable: &'static [u8]) -> Self {
        let mut special = [false; 256];
        special[b' ' as usize] = true;
        special[b'\t' as usize] = true;
        special[b'\n' as usize] = true;
        special[b'\\' as usize] = true;
        let mut i = 0;
        while i < stop.len() {
            special[stop[i] as usize] = true;
            i += 1;
        }
        Self { special, escapable }
    }
}

const MEASUREMENT: TokenRule = TokenRule::new(b",\0", b", \\");
const KEY: TokenRule = TokenRule::new(b"=", b"\\,= ");
const TAG_VALUE: TokenRule = TokenRule::new(b",", b"\\,= ");

/// A line being parsed: the text and the position reached.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.pos += usize::from(hit);
        hit
    }

    /// Skips spaces; whether there were any.
    fn spaces(&mut self) -> bool {
        let start = self.pos;
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        self.pos > start
    }

    /// A name (measurement, key or tag value), unescaped; `what` names it in errors.
    fn token(&mut self, rule: &TokenRule, what: &str) -> Result<Name, String> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut escaped = false;
        while let Some(&c) = bytes.get(self.pos) {
            if rule.special[usize::from(c)] {
                if c != b'\\' {
                    break;
                }
                escaped = true;
                // The escaped character is part of the token whatever it is.
                self.pos += 1 + usize::from(self.pos + 1 < bytes.len());
                continue;
            }
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        if raw.is_empty() {
            return Err(format!("missing {what}"));
        }
        let value = if escaped {
            unescape(raw, rule.escapable).into()
        } else {
            Name::from(raw)
        };
        if value.ends_with('\\') {
            return Err(format!("{what} `{raw}` ends with a backslash"));
        }
        Ok(value)
    }

    /// The bytes up to the next `,` or space: a number, boolean or timestamp.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b',' || c == b' ' {
                break;
            }
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// A double-quoted string value: `\"` and `\\` are escapes, other backslashes literal.
    fn string(&mut self) -> Result<String, String> {
        let bytes = self.text.as_bytes();
        self.pos += 1;
        let start = self.pos;
        let mut out: Option<String> = None;
        let mut run = start;
        while let Some(&c) = bytes.get(self.pos) {
            match c {
                b'"' => {
                    let value = match out {
                        Some(mut s) => {
                            s.push_str(&self.text[run..self.pos]);
                            s
                        }
                        None => self.text[start..self.pos].to_owned(),
                    };
                    self.pos += 1;
                    return Ok(value);
                }
                b'\\' if matches!(bytes.get(self.pos + 1), Some(b'"' | b'\\')) => {
                    let s = out.get_or_insert_with(String::new);
                    s.push_str(&self.text[run..self.pos]);
                    run = self.pos + 1;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        Err(format!(
            "string value starting `\"{}` has no closing quote",
            excerpt(&self.text[start..])
        ))
    }
}

/// `raw` with each `\c` for `c` in `escapable` replaced by `c`.
fn unescape(raw: &str, escapable: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match rest.as_bytes().get(i + 1) {
            Some(c) if escapable.contains(c) => {
                out.push(char::from(*c));
                rest = &rest[i + 2..];
            }
            _ => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The start of `s`, for error messages.
fn excerpt(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// `-?d+(.d+)?([eE][+-]?d+)?`, the float forms line protocol allows.
fn float_form(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

/// A field value: number (`1.5`, `-3i`, `7u`), boolean or string.
fn field_value(cur: &mut Cursor<'_>, key: &str) -> Result<FieldValue, String> {
    if cur.peek() == Some(b'"') {
        return cur.string().map(FieldValue::String);
    }
    let word = cur.word();
    let invalid = || {
        format!(
            "field `{key}`: invalid value `{}` (expected a float like 1.5, an integer like 1i, \
             an unsigned like 1u, true/false or a \"string\")",
            excerpt(word)
        )
    };
    // The last byte tells the form: `i` integer, `u` unsigned, a digit float, else boolean.
    let value = match word.as_bytes().last() {
        Some(b'i') => {
            let n = &word[..word.len() - 1];
            if !digits(n.strip_prefix('-').unwrap_or(n)) {
                return Err(invalid());
            }
            FieldValue::Integer(
                n.parse()
                    .map_err(|_| format!("field `{key}`: integer {n} out of range"))?,
            )
        }
        Some(b'u') => {
            let n = &word[..word.len() - 1];
            if !digits(n) {
                return Err(invalid());
            }
            FieldValue::Unsigned(
                n.parse()
                    .map_err(|_| format!("field `{key}`: unsigned {n} out of range"))?,
            )
        }
        Some(b'0'..=b'9') => {
            if !float_form(word) {
                return Err(invalid());
            }
            let v: f64 = word.parse().map_err(|_| invalid())?;
            if !v.is_finite() {
                return Err(format!("field `{key}`: float {word} out of range"));
            }
            FieldValue::Float(v)
        }
        _ => match word {
            "t" | "T" | "true" | "True" | "TRUE" => FieldValue::Boolean(true),
            "f" | "F" | "false" | "False" | "FALSE" => FieldValue::Boolean(false),
            _ => return Err(invalid()),
        },
    };
    Ok(value)
}

/// Parses one trimmed, non-empty line; the timestamp is as written (no precision applied).
pub fn point(line: &str) -> Result<(Point, Option<i64>), String> {
    let mut cur = Cursor { text: line, pos: 0 };
    let measurement = cur.token(&MEASUREMENT, "measurement")?;
    let mut tags = Vec::new();
    if cur.eat(b',') {
        loop {
            let key = cur.token(&KEY, "tag key")?;
            if !cur.eat(b'=') {
                return Err(format!("tag `{key}` has no `=value`"));
            }
            let value = cur
                .token(&TAG_VALUE, "tag value")
                .map_err(|e| format!("tag `{key}`: {e}"))?;
            tags.push(Tag { key, value });
            if !cur.eat(b',') {
                break;
            }
        }
    }
    if !cur.spaces() {
        return Err(match cur.peek() {
            None => "missing fields (expected a space, then key=value)".to_owned(),
            Some(_) => format!(
                "unexpected `{}` after the series key (expected a space)",
                excerpt(&line[cur.pos..])
            ),
        });
    }
    let mut fields = Vec::new();
    loop {
        let key = cur.token(&KEY, "field key")?;
        if !cur.eat(b'=') {
            return Err(format!("field `{key}` has no `=value`"));
        }
        let value = field_value(&mut cur, &key)?;
        fields.push(Field { key, value });
        if !cur.eat(b',') {
            break;
        }
    }
    let timestamp = if cur.spaces() {
        let word = cur.word();
        if !digits(word.strip_prefix('-').unwrap_or(word)) {
            return Err(format!("invalid timestamp `{}`", excerpt(word)));
        }
        let ts = word
            .parse()
            .map_err(|_| format!("timestamp {word} out of range"))?;
        cur.spaces();
        Some(ts)
    } else {
        None
    };
    if cur.pos < line.len() {
        return Err(format!(
            "unexpected `{}` after the {}",
            excerpt(&line[cur.pos..]),
            if timestamp.is_some() {
                "timestamp"
            } else {
                "fields"
            }
        ));
    }
    let point = Point {
        measurement,
        tags,
        fields,
        timestamp: 0,
    };
    Ok((point, timestamp))
}
