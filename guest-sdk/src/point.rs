//! Helpers on the WIT data types.

use crate::{Field, FieldValue, Nanos, PluginError, Point, Series, Tag};

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
