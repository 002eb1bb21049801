//! [`Secret`]: a configuration string that never shows in `Debug` output, so a
//! configuration logged at startup does not leak it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Documented;

/// A password, token or key. Serialized as the plain string it is (the
/// configuration file holds it as written); `Debug` shows only whether it is set.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Returns the secret itself, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

impl Documented for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_and_serde_keeps_it() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(serde_yaml::to_string(&s).unwrap(), "hunter2\n");
        let back: Secret = serde_yaml::from_str("hunter2").unwrap();
        assert_eq!(back.expose(), "hunter2");
    }
}
