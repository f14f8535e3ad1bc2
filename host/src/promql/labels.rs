//! A series' label set, sorted by name, as PromQL sees it.

use std::fmt;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Labels sorted by name, without empty values (an empty label is no label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Labels from pairs in any order; empty values are left out, later duplicates win.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut labels = Self::default();
        for (name, value) in pairs {
            labels.set(&name, value);
        }
        labels
    }

    /// The value of `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.index(name).ok().map(|i| self.0[i].1.as_str())
    }

    /// The value of `name`, or `""` (how matchers see a missing label).
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Sets `name` to `value`; an empty value removes it.
    pub fn set(&mut self, name: &str, value: String) {
        match (self.index(name), value.is_empty()) {
            (Ok(i), true) => {
                self.0.remove(i);
            }
            (Ok(i), false) => self.0[i].1 = value,
            (Err(_), true) => {}
            (Err(i), false) => self.0.insert(i, (name.to_owned(), value)),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.index(name) {
            self.0.remove(i);
        }
    }

    /// The set without the metric name.
    pub fn without_name(mut self) -> Self {
        self.remove(METRIC_NAME);
        self
    }

    /// Only the labels named in `names`.
    pub fn keep(&self, names: &[String]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(n, _)| names.contains(n))
                .cloned()
                .collect(),
        )
    }

    /// Every label but those named in `names`.
    pub fn drop(&self, names: &[String]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(n, _)| !names.contains(n))
                .cloned()
                .collect(),
        )
    }

    /// The (name, value) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    fn index(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }
}

/// Prometheus' notation: `{a="1", b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted_and_empty_values_are_no_label() {
        let mut l = Labels::new([
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
            ("c".to_owned(), String::new()),
        ]);
        assert_eq!(l.to_string(), r#"{a="1", b="2"}"#);
        l.set("a", String::new());
        l.set("0", "x".to_owned());
        assert_eq!(l.to_string(), r#"{0="x", b="2"}"#);
        assert_eq!(l.value("missing"), "");
        assert_eq!(l.keep(&["b".to_owned()]).to_string(), r#"{b="2"}"#);
        assert_eq!(l.drop(&["b".to_owned()]).to_string(), r#"{0="x"}"#);
    }
}
