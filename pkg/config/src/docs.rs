//! Help text from doc comments: a configuration section derives [`Documented`] and
//! `-help` prints the first paragraph of each field's doc comment.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

pub use ember_config_derive::Documented;

/// A configuration section or value whose keys have help lines.
///
/// `#[derive(Documented)]` on a struct answers for each field with the first
/// paragraph of its doc comment, and for the keys below a field by asking the
/// field's type; leaves (numbers, strings, lists, enums) answer for nothing below
/// them.
pub trait Documented {
    /// Returns the help line of the key at `path` (dotted, relative to this
    /// section), or `None` when there is no such key.
    fn key_help(path: &str) -> Option<&'static str> {
        let _ = path;
        None
    }
}

macro_rules! leaves {
    ($($ty:ty),* $(,)?) => {
        $(impl Documented for $ty {})*
    };
}

leaves!(
    bool, u8, u16, u32, u64, usize, i32, i64, f32, f64, String, PathBuf, Duration
);

impl<T> Documented for Vec<T> {}
impl<T> Documented for Option<T> {}
impl<K, V> Documented for BTreeMap<K, V> {}
impl<K, V, S> Documented for HashMap<K, V, S> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Documented)]
    #[allow(dead_code)]
    struct Outer {
        /// Port to listen on.
        ///
        /// Details that stay out of the help line.
        port: u16,
        /// The inner section.
        inner: Inner,
        /// A help line written
        /// over two lines.
        wrapped: Vec<String>,
    }

    #[derive(Documented)]
    #[allow(dead_code)]
    struct Inner {
        /// How long to wait.
        timeout: Duration,
    }

    #[test]
    fn help_is_the_first_paragraph_of_the_doc_comment() {
        assert_eq!(Outer::key_help("port"), Some("Port to listen on."));
        assert_eq!(
            Outer::key_help("wrapped"),
            Some("A help line written over two lines.")
        );
        assert_eq!(Outer::key_help("inner"), Some("The inner section."));
        assert_eq!(Outer::key_help("inner.timeout"), Some("How long to wait."));
        assert_eq!(Outer::key_help("inner.nope"), None);
        assert_eq!(Outer::key_help("port.below"), None);
        assert_eq!(Outer::key_help("nope"), None);
    }
}
