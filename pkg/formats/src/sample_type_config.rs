//! `sample_type_config`: the JSON the Go and Node.js SDKs send next to a
//! pprof on `/ingest` (`{"alloc_space":{"units":"bytes","display-name":
//! "alloc_space_bytes","aggregation":"sum","cumulative":true}}`). Ember
//! applies `display-name` (renames the sample type) and `units` (replaces
//! its unit), as Pyroscope does; `aggregation`, `cumulative` and `sampled`
//! are accepted and not needed (deltas are decided per series).

use std::collections::BTreeMap;

use ember_proto::google::v1::Profile;
use serde::Deserialize;

use crate::{Error, Result};

/// Largest accepted configuration in bytes.
pub const MAX_CONFIG_BYTES: usize = 64 << 10;

/// The configuration of one sample type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SampleTypeConfig {
    pub units: Option<String>,
    #[serde(rename = "display-name")]
    pub display_name: Option<String>,
    pub aggregation: Option<String>,
    pub cumulative: Option<bool>,
    pub sampled: Option<bool>,
}

/// Per sample type name.
pub type Config = BTreeMap<String, SampleTypeConfig>;

/// Parses a `sample_type_config` document.
pub fn parse(input: &[u8]) -> Result<Config> {
    if input.len() > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge(format!(
            "sample_type_config is {} bytes, more than the limit of {MAX_CONFIG_BYTES}",
            input.len()
        )));
    }
    serde_json::from_slice(input).map_err(|e| {
        Error::Malformed(format!(
            "invalid sample_type_config JSON: {e}; expected {{\"<sample type>\": {{\"units\": .., \"display-name\": ..}}}}"
        ))
    })
}

/// Renames sample types and sets their units as `config` says.
pub fn apply(profile: &mut Profile, config: &Config) {
    for i in 0..profile.sample_type.len() {
        let vt = profile.sample_type[i];
        let Some(name) = profile.string_table.get(vt.r#type as usize) else {
            continue;
        };
        let Some(c) = config.get(name) else { continue };
        let (display, units) = (c.display_name.clone(), c.units.clone());
        if let Some(d) = display.filter(|d| !d.is_empty()) {
            profile.sample_type[i].r#type = push_string(profile, d);
        }
        if let Some(u) = units.filter(|u| !u.is_empty()) {
            profile.sample_type[i].unit = push_string(profile, u);
        }
    }
}

fn push_string(profile: &mut Profile, s: String) -> i64 {
    if let Some(i) = profile.string_table.iter().position(|x| *x == s) {
        return i as i64;
    }
    profile.string_table.push(s);
    profile.string_table.len() as i64 - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_proto::google::v1::ValueType;

    #[test]
    fn renames_and_sets_units() {
        let config = parse(
            br#"{"goroutine":{"units":"goroutines","aggregation":"average","display-name":"goroutines"},
                 "other":{"sampled":true}}"#,
        )
        .unwrap();
        let mut p = Profile {
            string_table: vec!["".into(), "goroutine".into(), "count".into()],
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            ..Default::default()
        };
        apply(&mut p, &config);
        let vt = p.sample_type[0];
        assert_eq!(p.string_table[vt.r#type as usize], "goroutines");
        assert_eq!(p.string_table[vt.unit as usize], "goroutines");
    }

    #[test]
    fn refuses_bad_json() {
        let e = parse(b"[1]").unwrap_err().to_string();
        assert!(e.contains("sample_type_config"), "{e}");
    }
}
