//! Profile type IDs: `name:sample_type:sample_unit:period_type:period_unit`.

use std::{fmt, str::FromStr};

use crate::{Error, Result};

/// The type of one series: which pprof sample type it holds and how it was sampled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ProfileType {
    /// Profile name, e.g. `process_cpu`, `memory`.
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
}

impl ProfileType {
    /// Returns the ID, e.g. `memory:alloc_space:bytes:space:bytes`.
    pub fn id(&self) -> String {
        self.to_string()
    }

    /// Converts to the wire form.
    pub fn to_proto(&self) -> ember_proto::types::v1::ProfileType {
        ember_proto::types::v1::ProfileType {
            id: self.id(),
            name: self.name.clone(),
            sample_type: self.sample_type.clone(),
            sample_unit: self.sample_unit.clone(),
            period_type: self.period_type.clone(),
            period_unit: self.period_unit.clone(),
        }
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit
        )
    }
}

impl FromStr for ProfileType {
    type Err = Error;

    fn from_str(id: &str) -> Result<Self> {
        let parts: Vec<&str> = id.split(':').collect();
        match parts[..] {
            [name, sample_type, sample_unit, period_type, period_unit] if !name.is_empty() => {
                Ok(Self {
                    name: name.into(),
                    sample_type: sample_type.into(),
                    sample_unit: sample_unit.into(),
                    period_type: period_type.into(),
                    period_unit: period_unit.into(),
                })
            }
            _ => Err(Error::Malformed(format!(
                "profile type {id:?} must have the form name:sample_type:sample_unit:period_type:period_unit, \
                 e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let id = "memory:alloc_space:bytes:space:bytes";
        let t: ProfileType = id.parse().unwrap();
        assert_eq!(t.sample_type, "alloc_space");
        assert_eq!(t.id(), id);
    }

    #[test]
    fn rejects_wrong_arity() {
        let err = "process_cpu:cpu".parse::<ProfileType>().unwrap_err();
        assert!(err.to_string().contains("name:sample_type"), "{err}");
    }
}
