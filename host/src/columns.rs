//! The columnar form of a batch of points: every string of the batch in one text; points,
//! tags and fields as columns of little-endian numbers; every column bytes.
//!
//! It is the layout of two things at once, on purpose: the body of a log record (format
//! version 3, `format.rs`, which writes the rows of each run of points of one [`Shape`]
//! once) and the `batch` a plugin is handed (`wit/plugin.wit`). So a
//! pipeline stage lends a record's own columns to its plugin, and the points are encoded
//! once, when they are appended to the log, however many plugins read them. Encoding
//! was two thirds of the cost of a plugin call before (`benches/plugin_throughput.rs`). The
//! WIT package describes the layout to plugins and this module owns it: the two agree
//! because the plugin boundary moves these columns into the WIT record unchanged
//! (`plugin/batch.rs`), naming every field, so a change to either stops the build.

use crate::point::{Field, FieldValue, Nanos, Point, Samples, Tag};

/// A batch of points in columns. Row `i` of a column with `n` numbers per row starts at
/// number `i * n`; a span is a byte offset and a length in bytes into `text`, and the bytes
/// of every span are UTF-8. Tags of a point are sorted by key, as in [`Point`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    /// Every string of the batch as UTF-8 bytes, concatenated (repeats share one span).
    pub text: Vec<u8>,
    /// Six u32 per point: measurement span (start, length), then its first tag and tag
    /// count (rows of `tags`), then its first field and field count (rows of the field
    /// columns). Rows no point refers to (those of points a filter dropped, see
    /// [`Columns::retain`]) are ignored.
    pub points: Vec<u8>,
    /// One i64 per point: its event time, nanoseconds since the Unix epoch.
    pub timestamps: Vec<u8>,
    /// Four u32 per tag: key span (start, length), value span (start, length).
    pub tags: Vec<u8>,
    /// Two u32 per field: key span (start, length).
    pub field_keys: Vec<u8>,
    /// One byte per field, its type: 0 float, 1 integer, 2 unsigned, 3 boolean, 4 string.
    pub field_kinds: Vec<u8>,
    /// One 64-bit value per field: the float's IEEE bits, the integer, the unsigned, 0 or
    /// 1, or for a string its span as `start << 32 | length`.
    pub field_values: Vec<u8>,
}

/// Field type codes of `field-kinds`.
const FLOAT: u8 = 0;
const INTEGER: u8 = 1;
const UNSIGNED: u8 = 2;
const BOOLEAN: u8 = 3;
const STRING: u8 = 4;

/// Offsets of a batch fit in u32: request bodies are bounded far below 4 GiB.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("batch offsets stay below 4 GiB: request bodies are bounded")
}

/// Appends `s` to `text`; its (start, length) in bytes.
fn span(text: &mut Vec<u8>, s: &str) -> [u32; 2] {
    let start = to_u32(text.len());
    text.extend_from_slice(s.as_bytes());
    [start, to_u32(s.len())]
}

/// The last string written at one place of a point (its measurement, its third tag's key)
/// and its span: consecutive points mostly repeat their measurement, keys and many tag
/// values, and a repeat reuses the span instead of copying the string again. Half the cost
/// of a call was copying strings into `text` before this.
#[derive(Clone, Copy, Default)]
struct Last<'a> {
    text: &'a str,
    span: [u32; 2],
}

impl<'a> Last<'a> {
    fn span(&mut self, text: &mut Vec<u8>, s: &'a str) -> [u32; 2] {
        // The first use compares against "" at span [0, 0]: also right for an empty string.
        if !same(self.text.as_bytes(), s.as_bytes()) {
            *self = Last {
                text: s,
                span: span(text, s),
            };
        }
        self.span
    }
}

/// The last strings written at each place of a point (see [`Last`]).
#[derive(Default)]
struct Lasts<'a> {
    measurement: Last<'a>,
    tag_keys: Vec<Last<'a>>,
    tag_values: Vec<Last<'a>>,
    field_keys: Vec<Last<'a>>,
}

impl<'a> Lasts<'a> {
    /// The row of a point's tag `j`, its strings in `text`.
    fn tag(&mut self, text: &mut Vec<u8>, j: usize, tag: &'a Tag) -> [u8; 16] {
        if self.tag_keys.len() <= j {
            self.tag_keys.resize(j + 1, Last::default());
            self.tag_values.resize(j + 1, Last::default());
        }
        let k = self.tag_keys[j].span(text, &tag.key);
        let v = self.tag_values[j].span(text, &tag.value);
        le::<4, 16>([k[0], k[1], v[0], v[1]])
    }

    /// The key row of a point's field `j`, named `key`, in `text`.
    fn field_key(&mut self, text: &mut Vec<u8>, j: usize, key: &'a str) -> [u8; 8] {
        if self.field_keys.len() <= j {
            self.field_keys.resize(j + 1, Last::default());
        }
        le::<2, 8>(self.field_keys[j].span(text, key))
    }
}

/// Whether `a` and `b` are equal. Inline for the short strings of names and tags, where a
/// call of `memcmp` took a third of the time of encoding a batch.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Two loads that overlap cover every length from one load's size to twice it.
    match n {
        0 => true,
        // First, middle and last byte: every byte of 1 to 3.
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// `numbers`, little-endian, as one array: appended with one copy.
fn le<const N: usize, const B: usize>(numbers: [u32; N]) -> [u8; B] {
    let mut out = [0; B];
    for (chunk, n) in out.chunks_exact_mut(4).zip(numbers) {
        chunk.copy_from_slice(&n.to_le_bytes());
    }
    out
}

/// What a point is apart from its time and values: its measurement's span, and its tag
/// rows, field-key rows and field types as bytes of their columns. The samples of one series
/// share one, and a log record holds each run of points of one shape once (format 3,
/// `format.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    /// The measurement's span.
    pub measurement: [u32; 2],
    /// Its tag rows: four u32 each, as in [`Columns::tags`].
    pub tags: &'a [u8],
    /// Its field-key rows: two u32 each, as in [`Columns::field_keys`].
    pub field_keys: &'a [u8],
    /// Its fields' type codes, as in [`Columns::field_kinds`].
    pub field_kinds: &'a [u8],
}

impl PartialEq for Shape<'_> {
    fn eq(&self, other: &Self) -> bool {
        // The samples of a series name the same tag rows (`Columns::from_samples`): those
        // are equal without reading them. Short rows compare inline (see `same`).
        let rows = |a: &[u8], b: &[u8]| std::ptr::eq(a, b) || same(a, b);
        self.measurement == other.measurement
            && rows(self.tags, other.tags)
            && rows(self.field_keys, other.field_keys)
            && rows(self.field_kinds, other.field_kinds)
    }
}

impl Eq for Shape<'_> {}

/// How many point, tag and field rows columns have.
#[derive(Clone, Copy)]
struct Rows {
    points: usize,
    tags: usize,
    fields: usize,
}

impl Columns {
    /// The columns of `points`.
    ///
    /// The number columns are sized up front and rows written in place: appending each row
    /// to a `Vec` cost a call of `memcpy` per row (callgrind: ~200 instructions a point).
    pub fn from_points(points: &[Point]) -> Columns {
        let n = points.len();
        let (tags, fields) = points
            .iter()
            .fold((0, 0), |(t, f), p| (t + p.tags.len(), f + p.fields.len()));
        let mut b = Columns {
            // Distinct strings only: a guess that holds for a batch of one series' points.
            text: Vec::with_capacity(n * 16),
            points: vec![0; n * 24],
            timestamps: vec![0; n * 8],
            tags: vec![0; tags * 16],
            field_keys: vec![0; fields * 8],
            field_kinds: vec![0; fields],
            field_values: vec![0; fields * 8],
        };
        let mut lasts = Lasts::default();
        let (mut t, mut f) = (0usize, 0usize);
        for (i, p) in points.iter().enumerate() {
            b.timestamps[i * 8..i * 8 + 8].copy_from_slice(&p.timestamp.to_le_bytes());
            let m = lasts.measurement.span(&mut b.text, &p.measurement);
            b.points[i * 24..i * 24 + 24].copy_from_slice(&le::<6, 24>([
                m[0],
                m[1],
                to_u32(t),
                to_u32(p.tags.len()),
                to_u32(f),
                to_u32(p.fields.len()),
            ]));
            for (j, tag) in p.tags.iter().enumerate() {
                let row = lasts.tag(&mut b.text, j, tag);
                b.tags[t * 16..t * 16 + 16].copy_from_slice(&row);
                t += 1;
            }
            for (j, field) in p.fields.iter().enumerate() {
                let key = lasts.field_key(&mut b.text, j, &field.key);
                b.field_keys[f * 8..f * 8 + 8].copy_from_slice(&key);
                b.put_value(f, &field.value);
                f += 1;
            }
        }
        b
    }

    /// The columns of the samples of `series` number `which` (in that order): each sample is
    /// its series' point at the sample's time, each field a float of its value. The samples
    /// of a series share its tag rows (the layout lets points name the same rows), so each
    /// takes its point, field and time rows only, and no point is made.
    pub fn from_samples(series: &[Point], samples: &Samples, which: &[usize]) -> Columns {
        let n: usize = which.iter().map(|&s| samples.of(s).len()).sum();
        let fields: usize = which
            .iter()
            .filter_map(|&s| Some(samples.of(s).len() * series.get(s)?.fields.len()))
            .sum();
        let mut b = Columns {
            text: Vec::with_capacity(which.len() * 32),
            points: Vec::with_capacity(n * 24),
            timestamps: Vec::with_capacity(n * 8),
            tags: Vec::new(),
            field_keys: Vec::with_capacity(fields * 8),
            field_kinds: Vec::with_capacity(fields),
            field_values: Vec::with_capacity(fields * 8),
        };
        let mut lasts = Lasts::default();
        let mut keys = Vec::new();
        for (p, samples) in which
            .iter()
            .filter_map(|&s| Some((series.get(s)?, samples.of(s))))
        {
            let m = lasts.measurement.span(&mut b.text, &p.measurement);
            let first_tag = to_u32(b.tags.len() / 16);
            for (j, tag) in p.tags.iter().enumerate() {
                let row = lasts.tag(&mut b.text, j, tag);
                b.tags.extend_from_slice(&row);
            }
            keys.clear();
            for (j, field) in p.fields.iter().enumerate() {
                keys.extend_from_slice(&lasts.field_key(&mut b.text, j, &field.key));
            }
            let (tags, fields) = (to_u32(p.tags.len()), to_u32(p.fields.len()));
            for &(timestamp, value) in samples {
                let first_field = to_u32(b.field_kinds.len());
                b.points.extend_from_slice(&le::<6, 24>([
                    m[0],
                    m[1],
                    first_tag,
                    tags,
                    first_field,
                    fields,
                ]));
                b.timestamps.extend_from_slice(&timestamp.to_le_bytes());
                b.field_keys.extend_from_slice(&keys);
                for _ in 0..fields {
                    b.field_kinds.push(FLOAT);
                    b.field_values
                        .extend_from_slice(&value.to_bits().to_le_bytes());
                }
            }
        }
        b
    }

    /// Writes field row `f`'s type and value (a string's into the text).
    fn put_value(&mut self, f: usize, value: &FieldValue) {
        let (kind, bits) = match value {
            FieldValue::Float(v) => (FLOAT, v.to_bits()),
            FieldValue::Integer(v) => (INTEGER, *v as u64),
            FieldValue::Unsigned(v) => (UNSIGNED, *v),
            FieldValue::Boolean(v) => (BOOLEAN, u64::from(*v)),
            FieldValue::String(s) => {
                let [start, len] = span(&mut self.text, s);
                (STRING, (u64::from(start) << 32) | u64::from(len))
            }
        };
        self.field_kinds[f] = kind;
        self.field_values[f * 8..f * 8 + 8].copy_from_slice(&bits.to_le_bytes());
    }

    /// The points, or what is wrong with the columns: the first column, point, span or type
    /// code that breaks the layout.
    ///
    /// # Errors
    /// A message naming the column, point and span at fault.
    pub fn to_points(&self) -> Result<Vec<Point>, String> {
        let rows = self.rows()?;
        (0..rows.points)
            .map(|i| {
                let mut point = Point::default();
                self.point_into_rows(i, rows, &mut point).map(|()| point)
            })
            .collect()
    }

    /// Whether the columns make their points, without making them: what
    /// [`Columns::to_points`] refuses, it refuses alike. A point of the shape of the one
    /// before has its names checked once: reading a log record back, making its points was
    /// most of the cost of decoding it.
    ///
    /// # Errors
    /// As [`Columns::to_points`].
    pub fn check(&self) -> Result<(), String> {
        match self.sound() {
            Some(()) => Ok(()),
            // Made to say what is wrong, as they say it.
            None => self.to_points().map(drop),
        }
    }

    /// `Some` when every point's rows are in the columns, its names and string values are
    /// spans of UTF-8 in `text`, and its type codes known.
    fn sound(&self) -> Option<()> {
        let rows = self.rows().ok()?;
        let text = &self.text;
        let named = |start: u32, len: u32| span_of(text, start, len).is_ok();
        let mut last: Option<Shape<'_>> = None;
        for i in 0..rows.points {
            let (shape, values) = self.shape(i)?;
            if last != Some(shape) {
                let pairs = |rows: &[u8]| {
                    rows.chunks_exact(8)
                        .all(|r| named(u32_at(r, 0), u32_at(r, 1)))
                };
                let sound = named(shape.measurement[0], shape.measurement[1])
                    && pairs(shape.tags)
                    && pairs(shape.field_keys)
                    && shape.field_kinds.iter().all(|k| *k <= STRING);
                if !sound {
                    return None;
                }
                last = Some(shape);
            }
            for (kind, bits) in shape.field_kinds.iter().zip(values.chunks_exact(8)) {
                let bits = u64_at(bits, 0);
                if *kind == STRING && !named((bits >> 32) as u32, bits as u32) {
                    return None;
                }
            }
        }
        Some(())
    }

    /// Makes point `i` in `out` (its tags and fields keep their room), or says what is
    /// wrong with the columns, as [`Columns::to_points`] says it.
    ///
    /// # Errors
    /// A message naming the column, point and span at fault, or that there is no point `i`.
    pub fn point_into(&self, i: usize, out: &mut Point) -> Result<(), String> {
        let rows = self.rows()?;
        if i >= rows.points {
            return Err(format!("no point {i}: there are {}", rows.points));
        }
        self.point_into_rows(i, rows, out)
    }

    /// How many rows the columns have, or the first column whose length is wrong.
    fn rows(&self) -> Result<Rows, String> {
        let points = rows_of(&self.points, 24, "points")?;
        if rows_of(&self.timestamps, 8, "timestamps")? != points {
            return Err(format!(
                "{points} points but {} timestamps",
                self.timestamps.len() / 8
            ));
        }
        let tags = rows_of(&self.tags, 16, "tags")?;
        let fields = rows_of(&self.field_keys, 8, "field-keys")?;
        if self.field_kinds.len() != fields
            || rows_of(&self.field_values, 8, "field-values")? != fields
        {
            return Err(format!(
                "{fields} field keys but {} field kinds and {} field values",
                self.field_kinds.len(),
                self.field_values.len() / 8
            ));
        }
        Ok(Rows {
            points,
            tags,
            fields,
        })
    }

    /// Makes point `i` (below `rows.points`) in `out`, whose tags and fields keep their
    /// room, or says what is wrong with its rows (`out` then holds part of it).
    fn point_into_rows(&self, i: usize, rows: Rows, out: &mut Point) -> Result<(), String> {
        let text = &self.text;
        let span = |start: u32, len: u32, what: &dyn Fn() -> String| -> Result<&str, String> {
            span_of(text, start, len).map_err(|e| format!("{}: {e}", what()))
        };
        let range = |first: u32, count: u32, rows: usize, what: &str| {
            let (first, count) = (first as usize, count as usize);
            match first.checked_add(count) {
                Some(end) if end <= rows => Ok(first..end),
                _ => Err(format!("{what} {first}+{count} past the {rows} there are")),
            }
        };
        let row = |j| u32_at(&self.points, i * 6 + j);
        let at = |e: String| format!("point {i}: {e}");
        out.measurement = span(row(0), row(1), &|| "measurement".into())
            .map_err(at)?
            .into();
        out.tags.clear();
        for t in range(row(2), row(3), rows.tags, "tags").map_err(at)? {
            let n = |j| u32_at(&self.tags, t * 4 + j);
            let key = span(n(0), n(1), &|| format!("tag {t} key")).map_err(at)?;
            let value = span(n(2), n(3), &|| format!("tag {t} value")).map_err(at)?;
            out.tags.push(Tag {
                key: key.into(),
                value: value.into(),
            });
        }
        out.fields.clear();
        for f in range(row(4), row(5), rows.fields, "fields").map_err(at)? {
            let (start, len) = (
                u32_at(&self.field_keys, 2 * f),
                u32_at(&self.field_keys, 2 * f + 1),
            );
            let key = span(start, len, &|| format!("field {f} key")).map_err(at)?;
            let bits = u64_at(&self.field_values, f);
            let value = self
                .value(self.field_kinds[f], bits)
                .map_err(|e| at(format!("field {f} {e}")))?;
            out.fields.push(Field {
                key: key.into(),
                value,
            });
        }
        out.timestamp = self.timestamp(i);
        Ok(())
    }

    /// Point `i`'s timestamp (`i` below [`Columns::len`]).
    fn timestamp(&self, i: usize) -> Nanos {
        u64_at(&self.timestamps, i) as Nanos
    }

    /// Point `i`'s shape and its field values' bytes, whatever the order of the rows (a
    /// filter leaves them out of order); `None` when its rows are not in the columns.
    pub fn shape(&self, i: usize) -> Option<(Shape<'_>, &[u8])> {
        fn rows(column: &[u8], first: usize, count: usize, width: usize) -> Option<&[u8]> {
            column.get(first * width..(first + count) * width)
        }
        let row = self.points.get(i * 24..i * 24 + 24)?;
        let n = |j: usize| u32_at(row, j) as usize;
        let (tags, fields) = ((n(2), n(3)), (n(4), n(5)));
        let shape = Shape {
            measurement: [u32_at(row, 0), u32_at(row, 1)],
            tags: rows(&self.tags, tags.0, tags.1, 16)?,
            field_keys: rows(&self.field_keys, fields.0, fields.1, 8)?,
            field_kinds: rows(&self.field_kinds, fields.0, fields.1, 1)?,
        };
        Some((shape, rows(&self.field_values, fields.0, fields.1, 8)?))
    }

    /// Appends the rows of `count` points of `shape`, each point's tag and field rows after
    /// the last ones; their timestamps and field values are the caller's to append.
    ///
    /// # Errors
    /// When the rows would number past u32 (the columns' numbers are u32).
    pub fn push_run(&mut self, count: usize, shape: Shape<'_>) -> Result<(), String> {
        let (tags, fields) = (shape.tags.len() / 16, shape.field_keys.len() / 8);
        let (first_tag, first_field) = (self.tags.len() / 16, self.field_keys.len() / 8);
        let fits = |first: usize, each: usize| {
            count
                .checked_mul(each)
                .and_then(|n| n.checked_add(first))
                .is_some_and(|end| u32::try_from(end).is_ok())
        };
        if !fits(first_tag, tags) || !fits(first_field, fields) {
            return Err(format!(
                "{count} points of {tags} tags and {fields} fields number past 2^32 rows"
            ));
        }
        self.points.reserve(count * 24);
        self.tags.reserve(count * shape.tags.len());
        self.field_keys.reserve(count * shape.field_keys.len());
        self.field_kinds.reserve(count * fields);
        for k in 0..count {
            self.points.extend_from_slice(&le::<6, 24>([
                shape.measurement[0],
                shape.measurement[1],
                to_u32(first_tag + k * tags),
                to_u32(tags),
                to_u32(first_field + k * fields),
                to_u32(fields),
            ]));
            self.tags.extend_from_slice(shape.tags);
            self.field_keys.extend_from_slice(shape.field_keys);
            self.field_kinds.extend_from_slice(shape.field_kinds);
        }
        Ok(())
    }

    /// The value of type code `kind` and bits `bits` (a field-values entry), or what is
    /// wrong with them, to follow the field's name.
    fn value(&self, kind: u8, bits: u64) -> Result<FieldValue, String> {
        Ok(match kind {
            FLOAT => FieldValue::Float(f64::from_bits(bits)),
            INTEGER => FieldValue::Integer(bits as i64),
            UNSIGNED => FieldValue::Unsigned(bits),
            BOOLEAN => FieldValue::Boolean(bits != 0),
            STRING => FieldValue::String(
                span_of(&self.text, (bits >> 32) as u32, bits as u32)
                    .map_err(|e| format!("string value: {e}"))?
                    .to_owned(),
            ),
            kind => return Err(format!("has type code {kind}, not 0-4")),
        })
    }

    /// Point `i`'s timestamp and the values of its fields, in order (each `None` when its
    /// type code or string is not in the columns), from its `shape` and `values` as
    /// [`Columns::shape`] gave them: what a store writes of each point of a run whose shape
    /// it has seen, without reading the point. `None` when it has no timestamp.
    pub fn sample<'a>(
        &'a self,
        i: usize,
        shape: Shape<'a>,
        values: &'a [u8],
    ) -> Option<(Nanos, impl Iterator<Item = Option<FieldValue>> + 'a)> {
        let timestamp = self.timestamps.get(i * 8..i * 8 + 8)?;
        let values = shape
            .field_kinds
            .iter()
            .zip(values.chunks_exact(8))
            .map(|(kind, bits)| self.value(*kind, u64_at(bits, 0)).ok());
        Some((u64_at(timestamp, 0) as Nanos, values))
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.timestamps.len() / 8
    }

    /// Bytes of their columns.
    pub fn bytes(&self) -> usize {
        [
            &self.text,
            &self.points,
            &self.timestamps,
            &self.tags,
            &self.field_keys,
            &self.field_kinds,
            &self.field_values,
        ]
        .iter()
        .map(|c| c.len())
        .sum()
    }

    /// True without points.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Keeps point `i` iff `keep[i]`: what a filter's verdicts do. Only the point rows and
    /// timestamps move; the tags and fields of dropped points stay, unreferenced, so the
    /// rest is not copied. Points past the end of `keep` go.
    pub fn retain(&mut self, keep: &[bool]) {
        let mut kept = 0;
        for (i, _) in keep
            .iter()
            .take(self.len())
            .enumerate()
            .filter(|(_, k)| **k)
        {
            if i != kept {
                self.points.copy_within(i * 24..i * 24 + 24, kept * 24);
                self.timestamps.copy_within(i * 8..i * 8 + 8, kept * 8);
            }
            kept += 1;
        }
        self.points.truncate(kept * 24);
        self.timestamps.truncate(kept * 8);
    }
}

/// A batch's points: made, with their columns once made, or in columns only, a point made
/// when something asks for it. Remote write's samples go from ingest to the store in
/// columns only: making a [`Point`] of each (two `Vec`s) and dropping it again was a fifth
/// of remote-write ingest (perf, the Prometheus bench).
#[derive(Debug, Clone, Default)]
pub struct Points {
    /// The points, once made.
    made: Option<Vec<Point>>,
    /// The same points in columns, once made; where `made` is not, they are.
    columns: Option<Columns>,
}

impl From<Vec<Point>> for Points {
    fn from(points: Vec<Point>) -> Self {
        Self::new(points, None)
    }
}

impl Points {
    /// Made `points`, and the same points in `columns` if they are made too.
    pub fn new(points: Vec<Point>, columns: Option<Columns>) -> Self {
        Self {
            made: Some(points),
            columns,
        }
    }

    /// Points in `columns` only, whose rows are all well formed (made by Sluice or read
    /// whole): a point that doesn't make is refused where it is asked for.
    pub fn in_columns(columns: Columns) -> Self {
        Self {
            made: None,
            columns: Some(columns),
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        match (&self.made, &self.columns) {
            (Some(points), _) => points.len(),
            (None, columns) => columns.as_ref().map_or(0, Columns::len),
        }
    }

    /// True without points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About how much memory the points take: their columns, and each made point with its
    /// tags and fields (not names too long to be kept inline).
    pub fn bytes(&self) -> usize {
        let made = self.made.iter().flatten().map(|p| {
            size_of::<Point>()
                + p.tags.len() * size_of::<Tag>()
                + p.fields.len() * size_of::<Field>()
        });
        made.sum::<usize>() + self.columns.as_ref().map_or(0, Columns::bytes)
    }

    /// The points in columns, where made.
    pub fn columns(&self) -> Option<&Columns> {
        self.columns.as_ref()
    }

    /// Sets the points' columns (made of the same points).
    pub fn set_columns(&mut self, columns: Columns) {
        self.columns = Some(columns);
    }

    /// The made points, if they are.
    pub fn made(&self) -> Option<&[Point]> {
        self.made.as_deref()
    }

    /// The points, made from the columns first where they are only there (the columns
    /// stay).
    ///
    /// # Errors
    /// What is wrong with the columns, as [`Columns::to_points`] says it.
    pub fn make(&mut self) -> Result<&mut Vec<Point>, String> {
        if self.made.is_none() {
            self.made = Some(self.to_made()?.into_owned());
        }
        Ok(self.made.get_or_insert_default())
    }

    /// The made points and their columns, if any.
    ///
    /// # Errors
    /// As [`Points::make`].
    pub fn into_made(mut self) -> Result<(Vec<Point>, Option<Columns>), String> {
        let points = std::mem::take(self.make()?);
        Ok((points, self.columns))
    }

    /// Point `i`: the made one, or made from the columns in `scratch` (see
    /// [`Columns::point_into`]).
    ///
    /// # Errors
    /// As [`Columns::point_into`].
    pub fn point<'a>(&'a self, i: usize, scratch: &'a mut Point) -> Result<&'a Point, String> {
        match (&self.made, &self.columns) {
            (Some(points), _) => points
                .get(i)
                .ok_or_else(|| format!("no point {i}: there are {}", points.len())),
            (None, Some(columns)) => {
                columns.point_into(i, scratch)?;
                Ok(scratch)
            }
            (None, None) => Err(format!("no point {i}: there are none")),
        }
    }

    /// Takes point `i` out, making the points first; their columns go, as they are no longer
    /// of the same points.
    ///
    /// # Errors
    /// As [`Points::make`], or when there is no point `i`.
    pub fn remove(&mut self, i: usize) -> Result<Point, String> {
        let points = self.make()?;
        if i >= points.len() {
            return Err(format!("no point {i}: there are {}", points.len()));
        }
        let point = points.remove(i);
        self.columns = None;
        Ok(point)
    }

    /// The points, borrowed where made, else made from the columns.
    ///
    /// # Errors
    /// As [`Points::make`].
    pub fn to_made(&self) -> Result<std::borrow::Cow<'_, [Point]>, String> {
        match (&self.made, &self.columns) {
            (Some(points), _) => Ok(std::borrow::Cow::Borrowed(points)),
            (None, columns) => columns
                .as_ref()
                .map_or(Ok(Vec::new()), Columns::to_points)
                .map(std::borrow::Cow::Owned),
        }
    }

    /// Every point's timestamp, in order.
    pub fn timestamps(&self) -> impl Iterator<Item = Nanos> + '_ {
        let made = self.made.iter().flatten().map(|p| p.timestamp);
        let columns = self
            .columns
            .iter()
            .filter(|_| self.made.is_none())
            .flat_map(|c| (0..c.len()).map(|i| c.timestamp(i)));
        made.chain(columns)
    }
}

impl PartialEq for Points {
    /// Points are equal when they are the same points, made or in columns.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.to_made() == other.to_made()
    }
}

/// The string at `start`, `len` bytes long, in `text`, or what is wrong with the span.
fn span_of(text: &[u8], start: u32, len: u32) -> Result<&str, String> {
    let (start, len) = (start as usize, len as usize);
    let bytes = start
        .checked_add(len)
        .and_then(|end| text.get(start..end))
        .ok_or_else(|| format!("span {start}+{len} is outside the {}-byte text", text.len()))?;
    // Only spans must be UTF-8: bytes between them are nobody's business.
    std::str::from_utf8(bytes).map_err(|_| format!("span {start}+{len} is not UTF-8"))
}

/// The rows of a column of `width`-byte rows, or what is wrong with its length.
fn rows_of(column: &[u8], width: usize, name: &str) -> Result<usize, String> {
    if column.len().is_multiple_of(width) {
        Ok(column.len() / width)
    } else {
        Err(format!(
            "column `{name}` is {} bytes, not a whole number of {width}-byte rows",
            column.len()
        ))
    }
}

fn u32_at(column: &[u8], i: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&column[i * 4..i * 4 + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(column: &[u8], i: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&column[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    fn u32s(column: &[u8]) -> Vec<u32> {
        column
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    }

    fn u64s(column: &[u8]) -> Vec<u64> {
        column
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }

    #[test]
    fn a_batch_decodes_to_the_points_it_encodes() {
        let (points, errors) = parse(
            "température,城市=東京,host=é u=-0.0,s=\"ü🚀\",n=-9223372036854775808i,\
             m=18446744073709551615u,b=t 9223372036854775807\nmem free=3u -9223372036854775808\n",
            Precision::Nanoseconds,
            0,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(Columns::from_points(&points).to_points(), Ok(points));
        assert_eq!(Columns::from_points(&[]).to_points(), Ok(vec![]));
    }

    #[test]
    fn a_broken_batch_is_refused_naming_what_and_where() {
        let (points, _) = parse("cpu,host=é v=1 1\nmem v=2i 2\n", Precision::Nanoseconds, 0);
        let good = Columns::from_points(&points);
        assert_eq!(good.check(), Ok(()));
        let broken = |f: &dyn Fn(&mut Columns)| {
            let mut b = good.clone();
            f(&mut b);
            let error = b.to_points().expect_err("broken");
            // Checked without making the points, they are refused alike.
            assert_eq!(b.check(), Err(error.clone()));
            error
        };
        let cut = broken(&|b| b.tags[8..12].copy_from_slice(&12u32.to_le_bytes()));
        assert!(cut.starts_with("point 0: tag 0 value: span 12+2"), "{cut}");
        let half = broken(&|b| b.tags[12..16].copy_from_slice(&1u32.to_le_bytes()));
        assert_eq!(half, "point 0: tag 0 value: span 7+1 is not UTF-8");
        let kind = broken(&|b| b.field_kinds[1] = 7);
        assert_eq!(kind, "point 1: field 1 has type code 7, not 0-4");
        let count = broken(&|b| b.points[44..48].copy_from_slice(&5u32.to_le_bytes()));
        assert_eq!(count, "point 1: fields 1+5 past the 2 there are");
        let short = broken(&|b| {
            b.timestamps.pop();
        });
        assert!(short.contains("`timestamps` is 15 bytes"), "{short}");
        let utf8 = broken(&|b| b.text[0] = 0xff);
        assert_eq!(utf8, "point 0: measurement: span 0+3 is not UTF-8");
        // Bytes no span covers may be anything.
        let mut padded = good.clone();
        padded.text.push(0xff);
        assert_eq!(padded.to_points(), Ok(points));
    }

    #[test]
    fn retain_keeps_the_kept_points_whole_and_in_order() {
        let (points, errors) = parse(
            "a,t=1 f=1 1\nb,t=2 f=2i,g=\"x\" 2\nc f=t 3\nd,t=4,u=5 f=4u 4\n",
            Precision::Nanoseconds,
            0,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let kept = |keep: &[bool]| {
            let mut c = Columns::from_points(&points);
            c.retain(keep);
            assert_eq!(c.len(), c.points.len() / 24);
            c.to_points().expect("decodes")
        };
        let pick = |i: &[usize]| i.iter().map(|&i| points[i].clone()).collect::<Vec<_>>();
        assert_eq!(kept(&[true, false, false, true]), pick(&[0, 3]));
        assert_eq!(kept(&[false, true, true, false]), pick(&[1, 2]));
        assert_eq!(kept(&[true; 4]), points);
        assert_eq!(kept(&[false; 4]), []);
        // Verdicts past the points are ignored; points past the verdicts go.
        assert_eq!(kept(&[false, true]), pick(&[1]));
        assert_eq!(kept(&[true; 9]), points);
    }

    #[test]
    fn same_compares_every_length() {
        let words = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
        ];
        let long = "abcdefghijklmnopqrstuvwxyz";
        for n in 0..=long.len() {
            let a = &long.as_bytes()[..n];
            assert!(same(a, a));
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!same(a, &b), "{n} bytes, byte {i} differs");
            }
        }
        for a in words {
            for b in words {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn repeated_strings_share_one_span_and_changes_get_their_own() {
        let (points, _) = parse(
            "cpu,host=a v=1 1\ncpu,host=b v=2 2\ncpu,host=b v=3 3\n",
            Precision::Nanoseconds,
            0,
        );
        let b = Columns::from_points(&points);
        assert_eq!(b.text, b"cpuhostavb");
        let tags = u32s(&b.tags);
        assert_eq!(tags, [3, 4, 7, 1, 3, 4, 9, 1, 3, 4, 9, 1]);
        let rows = u32s(&b.points);
        assert_eq!((rows[0], rows[6], rows[12]), (0, 0, 0), "one `cpu`");
    }

    #[test]
    fn numbers_point_at_the_strings_and_values_of_each_point() {
        let (points, _) = parse(
            "cpu,host=é u=1.5,s=\"x\",n=-2i 7\nmem free=3u 8\n",
            Precision::Nanoseconds,
            0,
        );
        let b = Columns::from_points(&points);
        let s = |start: u32, len: u32| {
            std::str::from_utf8(&b.text[start as usize..(start + len) as usize]).expect("utf-8")
        };
        let rows = u32s(&b.points);
        assert_eq!(rows.len(), 12);
        assert_eq!(s(rows[6], rows[7]), "mem");
        assert_eq!(&rows[8..12], &[1, 0, 3, 1], "no tags; its field is the 4th");
        let tags = u32s(&b.tags);
        assert_eq!((s(tags[0], tags[1]), s(tags[2], tags[3])), ("host", "é"));
        assert_eq!(tags[3], 2, "spans count bytes: é is two");
        assert_eq!(u64s(&b.timestamps), [7, 8]);
        let keys = u32s(&b.field_keys);
        let values = u64s(&b.field_values);
        let field = |key: &str| {
            let i = (0..4)
                .find(|i| s(keys[2 * i], keys[2 * i + 1]) == key)
                .expect("field");
            (b.field_kinds[i], values[i])
        };
        assert_eq!(field("u"), (FLOAT, 1.5f64.to_bits()));
        assert_eq!(field("n"), (INTEGER, -2i64 as u64));
        assert_eq!(field("free"), (UNSIGNED, 3));
        let (kind, bits) = field("s");
        assert_eq!((kind, s((bits >> 32) as u32, bits as u32)), (STRING, "x"));
    }
}
