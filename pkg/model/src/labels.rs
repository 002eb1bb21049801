//! Label sets that identify series.

use std::fmt;

/// The label naming the service; every series has one.
pub const SERVICE_NAME: &str = "service_name";
/// The value of [`SERVICE_NAME`] when a client sends none.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// The profile name label (`process_cpu`, `memory`, ...).
pub const METRIC_NAME: &str = "__name__";
/// The profile type ID label, e.g. `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
pub const PROFILE_TYPE: &str = "__profile_type__";
/// Set to `"false"` on a series whose cumulative profiles must not become deltas.
pub const DELTA: &str = "__delta__";
/// Labels starting with this prefix are reserved for Ember.
pub const RESERVED_PREFIX: &str = "__";

/// One name/value pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set sorted by name with unique names: the identity of a series.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set; on duplicate names the last value wins.
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.reverse();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|a, b| a.name == b.name);
        Self(labels)
    }

    /// Returns the value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Sets `name` to `value`, replacing any previous value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        match self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => self.0[i].value = value.into(),
            Err(i) => self.0.insert(i, Label::new(name, value)),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0.remove(i).value)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns the service this series belongs to.
    pub fn service_name(&self) -> &str {
        self.get(SERVICE_NAME).unwrap_or(UNKNOWN_SERVICE)
    }

    /// Converts to the wire form.
    pub fn to_proto(&self) -> Vec<ember_proto::types::v1::LabelPair> {
        self.0
            .iter()
            .map(|l| ember_proto::types::v1::LabelPair {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect()
    }

    /// Builds a label set from the wire form.
    pub fn from_proto(pairs: &[ember_proto::types::v1::LabelPair]) -> Self {
        Self::new(
            pairs
                .iter()
                .map(|p| Label::new(p.name.clone(), p.value.clone()))
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    /// Formats as a selector: `{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sorts_and_keeps_last_duplicate() {
        let labels = Labels::new(vec![
            Label::new("b", "1"),
            Label::new("a", "x"),
            Label::new("b", "2"),
        ]);
        assert_eq!(labels.get("a"), Some("x"));
        assert_eq!(labels.get("b"), Some("2"));
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.to_string(), r#"{a="x", b="2"}"#);
    }

    #[test]
    fn set_and_remove_keep_order() {
        let mut labels = Labels::default();
        labels.set("z", "1");
        labels.set("a", "2");
        labels.set("z", "3");
        assert_eq!(labels.to_string(), r#"{a="2", z="3"}"#);
        assert_eq!(labels.remove("a"), Some("2".into()));
        assert_eq!(labels.service_name(), UNKNOWN_SERVICE);
    }
}
