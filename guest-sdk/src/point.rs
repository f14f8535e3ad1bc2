//! Helpers on the WIT data types.

use crate::{Field, FieldValue, PluginError, Point, Series, Tag};

impl Point {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }

    /// Sets tag `key` to `value`, keeping tags sorted by key and unique.
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
    /// A stable text key of the series, `measurement,k=v,...` (tags sorted by the host).
    pub fn key(&self) -> String {
        let mut key = self.measurement.clone();
        for t in &self.tags {
            key.push(',');
            key.push_str(&t.key);
            key.push('=');
            key.push_str(&t.value);
        }
        key
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
