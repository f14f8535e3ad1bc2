//! Helpers on the WIT data types.

use crate::{AlertEvent, AlertState, Field, FieldValue, Nanos, PluginError, Point, Series, Tag};

impl Point {
    /// A point without tags or fields; add them with [`Point::with_tag`] and
    /// [`Point::with_field`] (the host rejects a point without fields).
    pub fn new(measurement: impl Into<String>, timestamp: Nanos) -> Self {
        Self {
            measurement: measurement.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp,
        }
    }

    /// The point with tag `key` set to `value`, as [`Point::set_tag`].
    #[must_use]
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.set_tag(key, value);
        self
    }

    /// The point with field `key` set to `value`, as [`Point::set_field`].
    #[must_use]
    pub fn with_field(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        self.set_field(key, value.into());
        self
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// Sets tag `key` to `value`, keeping tags sorted by key and unique (the host hands
    /// tags sorted; this relies on that order).
    pub fn set_tag(&mut self, key: &str, value: &str) {
        match self.tags.binary_search_by(|t| t.key.as_str().cmp(key)) {
            Ok(i) => self.tags[i].value = value.to_owned(),
            Err(i) => self.tags.insert(
                i,
                Tag {
                    key: key.to_owned(),
                    value: value.to_owned(),
                },
            ),
        }
    }

    /// Removes tag `key`, returning its value.
    pub fn remove_tag(&mut self, key: &str) -> Option<String> {
        let i = self.tags.iter().position(|t| t.key == key)?;
        Some(self.tags.remove(i).value)
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|f| f.key == key).map(|f| &f.value)
    }

    /// Sets field `key` to `value` (replacing or adding).
    pub fn set_field(&mut self, key: &str, value: FieldValue) {
        match self.fields.iter_mut().find(|f| f.key == key) {
            Some(f) => f.value = value,
            None => self.fields.push(Field {
                key: key.to_owned(),
                value,
            }),
        }
    }

    /// Removes field `key`, returning its value.
    pub fn remove_field(&mut self, key: &str) -> Option<FieldValue> {
        let i = self.fields.iter().position(|f| f.key == key)?;
        Some(self.fields.remove(i).value)
    }

    /// The point's series: measurement and tags.
    pub fn series(&self) -> Series {
        Series {
            measurement: self.measurement.clone(),
            tags: self.tags.clone(),
        }
    }
}

impl Series {
    /// A text key identifying the series, `measurement,k=v,...` with the tags in order (the
    /// host sorts them). `\`, `,` and `=` inside names are escaped with `\`, so two
    /// different series never share a key.
    pub fn key(&self) -> String {
        let mut key = String::new();
        push_escaped(&mut key, &self.measurement);
        for t in &self.tags {
            key.push(',');
            push_escaped(&mut key, &t.key);
            key.push('=');
            push_escaped(&mut key, &t.value);
        }
        key
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

impl Tag {
    /// Tag `key`=`value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl Field {
    /// Field `key` with `value`.
    pub fn new(key: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl FieldValue {
    /// Numeric values as `f64`; none for strings and booleans.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Integer(v) => Some(v as f64),
            FieldValue::Unsigned(v) => Some(v as f64),
            FieldValue::Boolean(_) | FieldValue::String(_) => None,
        }
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Float(v)
    }
}

impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::Integer(v)
    }
}

impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::Unsigned(v)
    }
}

impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Boolean(v)
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::String(v)
    }
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::String(v.to_owned())
    }
}

impl AlertEvent {
    /// An alert changing the state of its window's rule and series to `state`, because of
    /// `value`. [`Alert::evaluate_batch`](crate::Alert::evaluate_batch) sets which window
    /// raised it; a plugin overriding that method sets `window` itself.
    pub fn new(state: AlertState, value: f64, message: impl Into<String>) -> Self {
        Self {
            window: 0,
            state,
            value,
            message: message.into(),
        }
    }
}

impl PluginError {
    /// An error for the whole batch.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            index: None,
        }
    }

    /// An error naming item `index` of the batch.
    pub fn at(index: usize, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            index: u32::try_from(index).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag_keys(p: &Point) -> Vec<&str> {
        p.tags.iter().map(|t| t.key.as_str()).collect()
    }

    fn series(measurement: &str, tags: &[(&str, &str)]) -> Series {
        Series {
            measurement: measurement.to_owned(),
            tags: tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
        }
    }

    #[test]
    fn new_point_has_no_tags_or_fields() {
        let p = Point::new("cpu", -1);
        assert_eq!(p.measurement, "cpu");
        assert_eq!(p.timestamp, -1);
        assert!(p.tags.is_empty() && p.fields.is_empty());
    }

    #[test]
    fn set_tag_keeps_tags_sorted_by_key_and_unique() {
        let mut p = Point::new("cpu", 0)
            .with_tag("region", "eu")
            .with_tag("host", "a")
            .with_tag("zone", "1")
            .with_tag("az", "x");
        assert_eq!(tag_keys(&p), ["az", "host", "region", "zone"]);
        p.set_tag("host", "b");
        assert_eq!(tag_keys(&p), ["az", "host", "region", "zone"]);
        assert_eq!(p.tag("host"), Some("b"));
        // Byte order, as the host sorts: uppercase before lowercase, non-ASCII last.
        p.set_tag("été", "1");
        p.set_tag("Host", "c");
        assert_eq!(
            tag_keys(&p),
            ["Host", "az", "host", "region", "zone", "été"]
        );
        assert_eq!(p.tag("été"), Some("1"));
    }

    #[test]
    fn remove_tag_returns_the_value_once() {
        let mut p = Point::new("cpu", 0)
            .with_tag("a", "1")
            .with_tag("b", "2")
            .with_tag("c", "3");
        assert_eq!(p.remove_tag("b"), Some("2".to_owned()));
        assert_eq!(p.remove_tag("b"), None);
        assert_eq!(p.remove_tag("missing"), None);
        assert_eq!(tag_keys(&p), ["a", "c"]);
        assert_eq!(p.tag("b"), None);
        // Still sorted, so set_tag's binary search keeps working.
        p.set_tag("b", "4");
        assert_eq!(tag_keys(&p), ["a", "b", "c"]);
    }

    #[test]
    fn set_field_replaces_in_place_or_appends() {
        let mut p = Point::new("cpu", 0)
            .with_field("b", 1.0)
            .with_field("a", 2i64);
        p.set_field("b", FieldValue::String("x".into()));
        p.set_field("c", FieldValue::Boolean(true));
        let keys: Vec<&str> = p.fields.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c"], "fields keep insertion order");
        assert_eq!(p.field("b"), Some(&FieldValue::String("x".into())));
        assert_eq!(p.field("a"), Some(&FieldValue::Integer(2)));
        assert_eq!(p.field("missing"), None);
    }

    #[test]
    fn remove_field_returns_the_value_once() {
        let mut p = Point::new("cpu", 0)
            .with_field("temp_f", 212.0)
            .with_field("n", u64::MAX);
        assert_eq!(p.remove_field("temp_f"), Some(FieldValue::Float(212.0)));
        assert_eq!(p.remove_field("temp_f"), None);
        assert_eq!(p.fields, [Field::new("n", u64::MAX)]);
    }

    #[test]
    fn series_copies_measurement_and_sorted_tags() {
        let p = Point::new("cpu", 5)
            .with_tag("b", "2")
            .with_tag("a", "1")
            .with_field("v", 1.0);
        assert_eq!(p.series(), series("cpu", &[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn series_key_lists_measurement_then_tags() {
        assert_eq!(
            series("cpu", &[("host", "a"), ("region", "eu")]).key(),
            "cpu,host=a,region=eu"
        );
        assert_eq!(series("cpu", &[]).key(), "cpu");
        assert_eq!(series("cpu", &[("host", "")]).key(), "cpu,host=");
        assert_eq!(series("", &[]).key(), "");
    }

    #[test]
    fn series_key_escapes_backslash_comma_and_equals_everywhere() {
        assert_eq!(
            series(r"a,b=c\d", &[(r"k,=\", r"v=,\")]).key(),
            r"a\,b\=c\\d,k\,\=\\=v\=\,\\"
        );
        // Spaces and other characters are not escaped.
        assert_eq!(
            series("disk io", &[("path", "/ a")]).key(),
            "disk io,path=/ a"
        );
    }

    #[test]
    fn series_key_leaves_non_ascii_intact() {
        assert_eq!(
            series("température", &[("ville", "Zürich"), ("城市", "東京🚀")]).key(),
            "température,ville=Zürich,城市=東京🚀"
        );
    }

    #[test]
    fn different_series_never_share_a_key() {
        // Each pair would collide without escaping.
        let pairs = [
            (series("cpu,host=a", &[]), series("cpu", &[("host", "a")])),
            (
                series("cpu", &[("a", "1,b=2")]),
                series("cpu", &[("a", "1"), ("b", "2")]),
            ),
            (
                series("cpu", &[("a=b", "c")]),
                series("cpu", &[("a", "b=c")]),
            ),
            (series(r"cpu\", &[("a", "b")]), series(r"cpu\,a=b", &[])),
            (
                series("m", &[("k", r"v\"), ("x", "y")]),
                series("m", &[("k", r"v\,x=y")]),
            ),
            // Collides if a backslash in a name is not escaped itself.
            (
                series("m", &[(r"k\", r"v\"), ("x", "y")]),
                series("m", &[("k=v,x", "y")]),
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(a, b);
            assert_ne!(a.key(), b.key(), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn as_f64_converts_numbers_only() {
        assert_eq!(FieldValue::Float(-0.5).as_f64(), Some(-0.5));
        assert_eq!(FieldValue::Integer(-7).as_f64(), Some(-7.0));
        assert_eq!(FieldValue::Unsigned(7).as_f64(), Some(7.0));
        assert_eq!(FieldValue::Boolean(true).as_f64(), None);
        assert_eq!(FieldValue::String("1.5".into()).as_f64(), None);
    }

    #[test]
    fn as_f64_at_integer_extremes_rounds_to_the_nearest_float() {
        assert_eq!(
            FieldValue::Integer(i64::MIN).as_f64(),
            Some(-(2f64.powi(63)))
        );
        assert_eq!(FieldValue::Integer(i64::MAX).as_f64(), Some(2f64.powi(63)));
        assert_eq!(FieldValue::Unsigned(u64::MAX).as_f64(), Some(2f64.powi(64)));
        assert_eq!(FieldValue::Unsigned(0).as_f64(), Some(0.0));
    }

    #[test]
    fn from_picks_the_matching_variant() {
        assert_eq!(FieldValue::from(1.5), FieldValue::Float(1.5));
        assert_eq!(FieldValue::from(-7i64), FieldValue::Integer(-7));
        assert_eq!(FieldValue::from(u64::MAX), FieldValue::Unsigned(u64::MAX));
        assert_eq!(FieldValue::from(false), FieldValue::Boolean(false));
        assert_eq!(FieldValue::from("é"), FieldValue::String("é".into()));
        assert_eq!(
            FieldValue::from(String::from("x")),
            FieldValue::String("x".into())
        );
        let p = Point::new("m", 0).with_field("i", i64::MIN);
        assert_eq!(p.field("i"), Some(&FieldValue::Integer(i64::MIN)));
    }

    #[test]
    fn tag_and_field_constructors() {
        let t = Tag::new("host", String::from("a"));
        assert_eq!((t.key.as_str(), t.value.as_str()), ("host", "a"));
        let f = Field::new("n", 3u64);
        assert_eq!((f.key.as_str(), &f.value), ("n", &FieldValue::Unsigned(3)));
    }

    #[test]
    fn plugin_error_new_is_for_the_batch_and_at_names_an_item() {
        assert_eq!(
            PluginError::new("bad"),
            PluginError {
                message: "bad".into(),
                index: None
            }
        );
        assert_eq!(PluginError::at(3, "bad").index, Some(3));
        assert_eq!(PluginError::at(0, "x").index, Some(0));
        assert_eq!(
            PluginError::at(u32::MAX as usize, "x").index,
            Some(u32::MAX)
        );
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn plugin_error_at_an_index_past_u32_names_no_item_rather_than_a_wrong_one() {
        assert_eq!(PluginError::at(u32::MAX as usize + 1, "x").index, None);
    }
}
