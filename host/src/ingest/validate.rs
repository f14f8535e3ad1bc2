//! What every point must pass before it is acknowledged, the same on every ingest route:
//! name rules, size limits, and one type per field of a series (checked within the body and
//! against what the tenant wrote before). A body with any refused point is refused whole.

use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

use indexmap::IndexMap;

use crate::point::{FieldType, FieldValue, Point, continues};
use crate::store::Store;
use crate::tenant::TenantId;

/// The limits a point must keep (`ingest.max_*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest series key: measurement, tag keys and values, and field key, in bytes.
    pub max_series_key_bytes: usize,
    /// Most tags on one point.
    pub max_tags: usize,
    /// Most fields on one point.
    pub max_fields: usize,
}

/// Why a point is refused. Retrying the same point can't help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// An empty measurement, tag key, tag value or field key.
    #[error("{what} is empty")]
    Empty {
        /// Which name.
        what: String,
    },
    /// A control character (newline, tab, NUL...) in a name or tag value.
    #[error("{what} contains the control character {ch:?}")]
    Control {
        /// Which name.
        what: String,
        /// The character.
        ch: char,
    },
    /// A name ending with a backslash, which line protocol can't write.
    #[error("{what} ends with a backslash (line protocol can't write one there)")]
    TrailingBackslash {
        /// Which name.
        what: String,
    },
    /// More tags than `ingest.max_tags`.
    #[error("{count} tags; at most {limit} are taken (ingest.max_tags)")]
    TooManyTags {
        /// Tags on the point.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// More fields than `ingest.max_fields`.
    #[error("{count} fields; at most {limit} are taken (ingest.max_fields)")]
    TooManyFields {
        /// Fields on the point.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A series key longer than `ingest.max_series_key_bytes`.
    #[error(
        "series key of field `{field}` is {bytes} bytes (measurement, tags and field key); at most {limit} are taken (ingest.max_series_key_bytes)"
    )]
    KeyTooLong {
        /// The field.
        field: String,
        /// The key's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A tag key given twice.
    #[error("tag `{key}` appears twice")]
    DuplicateTag {
        /// The key.
        key: String,
    },
    /// A field key given twice.
    #[error("field `{key}` appears twice")]
    DuplicateField {
        /// The key.
        key: String,
    },
    /// Older than the tenant keeps points: it would be deleted by the next retention pass.
    #[error(
        "timestamp {timestamp} ({}) is older than the tenant's retention of {days} days (points before {} are deleted)",
        crate::time::human(*timestamp),
        crate::time::human(*cutoff)
    )]
    BeyondRetention {
        /// The point's timestamp, nanoseconds.
        timestamp: i64,
        /// The tenant's `retention_days`.
        days: u64,
        /// The oldest time kept, nanoseconds.
        cutoff: i64,
    },
    /// A value of another type than the series' field already has.
    #[error("field type conflict: field `{field}` is {got} here, but {stored} {where_}")]
    TypeConflict {
        /// The field.
        field: String,
        /// Its type before.
        stored: FieldType,
        /// The type of this value.
        got: FieldType,
        /// Where the other type was seen: earlier in the body, or in earlier writes.
        where_: &'static str,
    },
}

impl Limits {
    /// Checks names, duplicates and sizes of `point` (its tags sorted by key).
    ///
    /// # Errors
    /// The first rule `point` breaks.
    pub fn check(&self, point: &Point) -> Result<(), Invalid> {
        self.check_series(point)?;
        self.check_fields(point)
    }

    /// [`Limits::check`] of each of `points`, in order. The names of a point of the same
    /// series as the one before are not checked again: series often come as runs of
    /// points.
    pub fn check_each<'a>(
        &'a self,
        points: &'a [Point],
    ) -> impl Iterator<Item = Result<(), Invalid>> + 'a {
        // Whether the point before was checked whole.
        let mut checked = false;
        points.iter().enumerate().map(move |(i, point)| {
            if !(checked && continues(points, i, Point::same_series)) {
                checked = false;
                self.check_series(point)?;
                checked = true;
            }
            self.check_fields(point)
        })
    }

    /// The names and counts of `point`'s measurement and tags.
    fn check_series(&self, point: &Point) -> Result<(), Invalid> {
        name(&point.measurement, || "measurement".to_owned())?;
        if point.tags.len() > self.max_tags {
            return Err(Invalid::TooManyTags {
                count: point.tags.len(),
                limit: self.max_tags,
            });
        }
        for (i, tag) in point.tags.iter().enumerate() {
            name(&tag.key, || "a tag key".to_owned())?;
            name(&tag.value, || format!("the value of tag `{}`", tag.key))?;
            if point
                .tags
                .get(i + 1)
                .is_some_and(|next| next.key == tag.key)
            {
                return Err(Invalid::DuplicateTag {
                    key: tag.key.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The names, count and key lengths of `point`'s fields.
    fn check_fields(&self, point: &Point) -> Result<(), Invalid> {
        if point.fields.len() > self.max_fields {
            return Err(Invalid::TooManyFields {
                count: point.fields.len(),
                limit: self.max_fields,
            });
        }
        let series_bytes = point.measurement.len()
            + point
                .tags
                .iter()
                .map(|t| t.key.len() + t.value.len())
                .sum::<usize>();
        for (i, field) in point.fields.iter().enumerate() {
            name(&field.key, || "a field key".to_owned())?;
            let bytes = series_bytes + field.key.len();
            if bytes > self.max_series_key_bytes {
                return Err(Invalid::KeyTooLong {
                    field: field.key.to_string(),
                    bytes,
                    limit: self.max_series_key_bytes,
                });
            }
            // Points have a handful of fields: a quadratic scan beats hashing them.
            if point.fields[..i].iter().any(|f| f.key == field.key) {
                return Err(Invalid::DuplicateField {
                    key: field.key.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A name must be non-empty, free of control characters (they would corrupt line protocol
/// and logs downstream) and not end with a backslash (line protocol can't write that).
fn name(s: &str, what: impl Fn() -> String) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid::Empty { what: what() });
    }
    if s.ends_with('\\') {
        return Err(Invalid::TrailingBackslash { what: what() });
    }
    // Control characters are U+0000 to U+001F and U+007F to U+009F: in UTF-8, a byte
    // below 0x20, 0x7F, or 0xC2 leading the last 32. Bytes are scanned first (the
    // compiler vectorizes that); characters only where such a byte is.
    if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
        return Ok(());
    }
    match s.chars().find(|c| c.is_control()) {
        Some(ch) => Err(Invalid::Control { what: what(), ch }),
        None => Ok(()),
    }
}

/// Series fields whose types are remembered at most; past it a shard starts afresh (types
/// are then read from the store again, where it can tell them).
const REMEMBERED_TYPES: usize = 1 << 20;

/// What [`FieldTypes::admit`] remembered of a body.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The series fields it remembered.
    added: Vec<Vec<u8>>,
    /// How many of the body's series fields neither it nor the store knew.
    pub new_series: usize,
}

/// Shards of the type map, so concurrent requests rarely wait for each other.
const SHARDS: usize = 16;

/// The type of every series field a tenant has written, as ingest accepted it (before the
/// pipeline's stages).
pub struct FieldTypes {
    // foldhash: SipHash of every point's key was 1.2 % of end-to-end CPU on Kafka.
    shards: Vec<Mutex<foldhash::HashMap<Box<[u8]>, FieldType>>>,
}

impl Default for FieldTypes {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

/// Appends `s`, length-prefixed so no name can forge another's key.
fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A series' identity (tenant, measurement and tags) in `out`: its length, after which
/// [`put`] adds a field's key to make a series field's identity.
fn series_of(out: &mut Vec<u8>, tenant: &TenantId, point: &Point) -> usize {
    out.clear();
    put(out, tenant.as_str());
    put(out, &point.measurement);
    for tag in &point.tags {
        put(out, &tag.key);
        put(out, &tag.value);
    }
    out.len()
}

impl FieldTypes {
    fn shard(&self, key: &[u8]) -> &Mutex<foldhash::HashMap<Box<[u8]>, FieldType>> {
        // A byte-at-a-time hash here was 1 % of bulk ingest CPU.
        let h = foldhash::fast::FixedState::default().hash_one(key);
        &self.shards[h as usize % SHARDS]
    }

    /// Admits the field types of `points`: each series field must keep one type within the
    /// body and keep the type it had before. `stored` is the store, asked for series this
    /// map does not know (after a restart, say): whether they exist, and, unless the
    /// tenant's stages may change types (`retyping`), their type. Nothing is remembered of
    /// a refused body; what is remembered of an admitted one is returned, with how many
    /// series fields are new, so a body refused later can be forgotten too.
    ///
    /// With `widen` (JSON, whose numbers have no float or integer type of their own: a
    /// float 30.0 arrives as `30`), whole numbers of a field that is float, in the body or
    /// before, become floats instead of conflicting. A point of the keys of the one before
    /// finds its fields' entries where that one left them.
    ///
    /// # Errors
    /// The index of the first point with a conflicting field, and the conflict.
    pub fn admit(
        &self,
        tenant: &TenantId,
        points: &mut [Point],
        stored: Option<&dyn Store>,
        retyping: bool,
        widen: bool,
    ) -> Result<Admitted, (usize, Invalid)> {
        let widens = |a: FieldType, b: FieldType| {
            widen
                && [a, b].contains(&FieldType::Float)
                && [a, b].iter().all(|t| {
                    matches!(
                        t,
                        FieldType::Float | FieldType::Integer | FieldType::Unsigned
                    )
                })
        };
        let conflict = |i: usize, field: &str, stored, got, where_| {
            (
                i,
                Invalid::TypeConflict {
                    field: field.to_owned(),
                    stored,
                    got,
                    where_,
                },
            )
        };
        // Within the body, in the order they first appear: series field → (type, first
        // point and field with it).
        let mut body: IndexMap<Vec<u8>, (FieldType, usize, usize), foldhash::fast::RandomState> =
            IndexMap::default();
        // Whether a whole number became a float: only then are points rewritten.
        let mut widened = false;
        // A value of a series field seen before in the body: the same type, or widened.
        let mut again = |seen: &mut FieldType, got: FieldType, i: usize, field: &str| {
            if *seen == got {
                return Ok(());
            }
            if !widens(*seen, got) {
                return Err(conflict(i, field, *seen, got, "earlier in this body"));
            }
            *seen = FieldType::Float;
            widened = true;
            Ok(())
        };
        let mut key = Vec::new();
        // The entries of the last point's fields: a point of the same series and fields
        // (a run of one series' points) finds its own there, without building and
        // hashing its keys.
        let mut slots: Vec<usize> = Vec::new();
        for (i, point) in points.iter().enumerate() {
            if continues(points, i, Point::same_keys) {
                for (field, &slot) in point.fields.iter().zip(&slots) {
                    if let Some((_, (seen, _, _))) = body.get_index_mut(slot) {
                        again(seen, field.value.field_type(), i, &field.key)?;
                    }
                }
                continue;
            }
            slots.clear();
            let series = series_of(&mut key, tenant, point);
            for (f, field) in point.fields.iter().enumerate() {
                key.truncate(series);
                put(&mut key, &field.key);
                let got = field.value.field_type();
                let slot = match body.get_full_mut(key.as_slice()) {
                    Some((slot, _, (seen, _, _))) => {
                        again(seen, got, i, &field.key)?;
                        slot
                    }
                    None => body.insert_full(key.clone(), (got, i, f)).0,
                };
                slots.push(slot);
            }
        }
        // Against before, in the body's order, so the error names the earliest line.
        let mut added: Vec<Vec<u8>> = Vec::new();
        let mut new_series = 0;
        for (key, (got, i, f)) in &mut body {
            let (i, field) = (*i, &points[*i].fields[*f].key);
            let shard = self.shard(key);
            let known = shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key.as_slice())
                .copied();
            let before = match known {
                Some(known) => Some(known),
                // A store that can't answer can't refuse: the store checks types itself too.
                None => {
                    let found =
                        stored.and_then(|s| s.field_type(tenant, &points[i], field).ok().flatten());
                    if found.is_none() {
                        new_series += 1;
                    }
                    // What a tenant's stages made may have another type than it ingested.
                    found.filter(|_| !retyping)
                }
            };
            match before {
                Some(before) if before != *got && widens(before, *got) => {
                    *got = FieldType::Float;
                    widened = true;
                }
                Some(before) if before != *got => {
                    self.forget(&Admitted { added, new_series });
                    return Err(conflict(
                        i,
                        field,
                        before,
                        *got,
                        "in earlier writes of this series",
                    ));
                }
                _ => {}
            }
            // A known type stays as it is (the map remembers, it doesn't decide).
            if known.is_none() {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                if shard.len() >= REMEMBERED_TYPES / SHARDS {
                    shard.clear();
                }
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    shard.entry(key.as_slice().into())
                {
                    added.push(key.clone());
                    slot.insert(*got);
                }
            }
        }
        let admitted = Admitted { added, new_series };
        if widened {
            for point in points.iter_mut() {
                let series = series_of(&mut key, tenant, point);
                for f in 0..point.fields.len() {
                    let whole = match point.fields[f].value {
                        FieldValue::Integer(v) => v as f64,
                        FieldValue::Unsigned(v) => v as f64,
                        _ => continue,
                    };
                    key.truncate(series);
                    put(&mut key, &point.fields[f].key);
                    if body
                        .get(key.as_slice())
                        .is_some_and(|(t, _, _)| *t == FieldType::Float)
                    {
                        point.fields[f].value = FieldValue::Float(whole);
                    }
                }
            }
        }
        Ok(admitted)
    }

    /// Forgets what `admitted` remembered (for a body then refused).
    pub fn forget(&self, admitted: &Admitted) {
        for key in &admitted.added {
            self.shard(key)
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key.as_slice());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    fn pts(lp: &str) -> Vec<Point> {
        let (points, errors) = parse(lp, Precision::Nanoseconds, 0);
        assert!(errors.is_empty(), "{errors:?}");
        points
    }

    const LIMITS: Limits = Limits {
        max_series_key_bytes: 20,
        max_tags: 2,
        max_fields: 2,
    };

    #[test]
    fn limits_and_names_are_checked_with_what_broke_them() {
        let check = |lp: &str| LIMITS.check(&pts(lp)[0]).map_err(|e| e.to_string());
        assert_eq!(check("m,a=1,b=2 v=1,w=2 1"), Ok(()));
        assert_eq!(
            check("m,a=1,b=2,c=3 v=1 1"),
            Err("3 tags; at most 2 are taken (ingest.max_tags)".into())
        );
        assert_eq!(
            check("m v=1,w=2,x=3 1"),
            Err("3 fields; at most 2 are taken (ingest.max_fields)".into())
        );
        assert_eq!(
            check("m,host=abcdefghijklmnop v=1 1"),
            Err("series key of field `v` is 22 bytes (measurement, tags and field key); at most 20 are taken (ingest.max_series_key_bytes)".into())
        );
        assert_eq!(
            check("m,a=1,a=2 v=1 1"),
            Err("tag `a` appears twice".into())
        );
        assert_eq!(check("m v=1,v=2 1"), Err("field `v` appears twice".into()));
        let mut p = pts("m,a=x v=1 1").remove(0);
        p.tags[0].value = "x\\".into();
        assert_eq!(
            LIMITS.check(&p).map_err(|e| e.to_string()),
            Err(
                "the value of tag `a` ends with a backslash (line protocol can't write one there)"
                    .into()
            )
        );
        p.measurement = "a\u{7}b".into();
        assert_eq!(
            LIMITS.check(&p).map_err(|e| e.to_string()),
            Err("measurement contains the control character '\\u{7}'".into())
        );
        p.measurement = Default::default();
        assert_eq!(
            LIMITS.check(&p).map_err(|e| e.to_string()),
            Err("measurement is empty".into())
        );
    }

    #[test]
    fn points_checked_in_runs_of_a_series_get_what_each_alone_gets() {
        // Runs of one series, a bad series after a good one, a bad field inside a run, and
        // the same series again after another.
        let mut points = pts(
            "m,a=1 v=1 1\nm,a=1 v=2 2\nm,a=1 v=1,w=2,x=3 3\nm,a=1 v=4 4\n\
             m,a=abcdefghijklmnopqrst v=1 5\nm,a=abcdefghijklmnopqrst v=1 6\nm,a=1 v=7 7",
        );
        let mut bad = points[3].clone();
        bad.tags[0].value = "\u{85}".into();
        points.insert(4, bad.clone());
        points.insert(5, bad);
        let each: Vec<_> = LIMITS.check_each(&points).map(|r| r.err()).collect();
        let alone: Vec<_> = points.iter().map(|p| LIMITS.check(p).err()).collect();
        assert_eq!(each.iter().filter(|e| e.is_some()).count(), 5, "{each:?}");
        assert_eq!(format!("{each:?}"), format!("{alone:?}"));
        // Control characters past ASCII are found; other characters of those bytes pass.
        let mut p = points[0].clone();
        p.measurement = "a\u{9f}b".into();
        assert!(matches!(
            LIMITS.check(&p),
            Err(Invalid::Control { ch: '\u{9f}', .. })
        ));
        p.measurement = "é\u{a0}\u{c2}\u{1f600}".into();
        assert_eq!(LIMITS.check(&p).map_err(|e| e.to_string()), Ok(()));
    }

    #[test]
    fn types_hold_within_a_body_and_across_bodies_and_a_refused_body_leaves_nothing() {
        let types = FieldTypes::default();
        let a = TenantId::new("a");
        let admit = |lp: &str| types.admit(&a, &mut pts(lp), None, false, false);
        let err = admit("m v=1 1\nm v=2i 2").expect_err("in body");
        assert_eq!(err.0, 1);
        assert_eq!(
            err.1.to_string(),
            "field type conflict: field `v` is integer here, but float earlier in this body"
        );
        // The refused body claimed nothing: integers may come first.
        admit("m v=1i 1\nm,t=x v=1 1").expect("first types");
        let err = admit("m v=3i 2\nm,t=x w=1 2\nm,t=x v=true 3").expect_err("before");
        assert_eq!(err.0, 2);
        assert!(
            err.1
                .to_string()
                .contains("is boolean here, but float in earlier writes")
        );
        // `w` of the refused body was forgotten; another tenant has its own types.
        admit("m,t=x w=\"s\" 4").expect("w is new");
        types
            .admit(
                &TenantId::new("b"),
                &mut pts("m v=true 1"),
                None,
                false,
                false,
            )
            .expect("tenant b");
    }

    #[test]
    fn json_whole_numbers_widen_to_float_where_the_field_is_float() {
        let types = FieldTypes::default();
        let a = TenantId::new("a");
        let mut body = pts("m v=30i 1\nm v=30.5 2\nm w=1u 3");
        types
            .admit(&a, &mut body, None, false, true)
            .expect("widened");
        assert_eq!(body[0].fields[0].value, FieldValue::Float(30.0));
        assert_eq!(
            body[2].fields[0].value,
            FieldValue::Unsigned(1),
            "w is not float"
        );
        let mut float_first = pts("n v=1.5 1\nn v=2i 2");
        types
            .admit(&a, &mut float_first, None, false, true)
            .expect("widened after a float");
        assert_eq!(float_first[1].fields[0].value, FieldValue::Float(2.0));
        let mut later = pts("m v=31i 4");
        types
            .admit(&a, &mut later, None, false, true)
            .expect("widened against before");
        assert_eq!(later[0].fields[0].value, FieldValue::Float(31.0));
        // Line protocol says what it means: no widening there.
        assert!(
            types
                .admit(&a, &mut pts("m v=32i 5"), None, false, false)
                .is_err()
        );
        assert!(
            types
                .admit(&a, &mut pts("m v=true 5"), None, false, true)
                .is_err()
        );
    }
}
