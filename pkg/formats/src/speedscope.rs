//! Speedscope JSON (<https://www.speedscope.app/file-format-schema.json>):
//! `sampled` and `evented` profiles over shared frames. Each profile in the
//! file becomes one pprof. A profile whose `unit` is a time (`seconds` ..
//! `nanoseconds`) or `bytes` takes its type from that unit, as Pyroscope
//! does; otherwise the type comes from the name suffix.

use ember_proto::google::v1::Profile;
use serde::Deserialize;

use crate::{
    Error, Limits, ProfileBuilder, Result,
    types::{self, ProfileKind},
};

/// How a speedscope upload becomes profiles.
#[derive(Debug, Clone, Default)]
pub struct SpeedscopeOptions {
    pub limits: Limits,
    /// The profile-type suffix of the upload's name, if any.
    pub suffix: Option<String>,
    /// Hz; turns CPU sample counts into nanoseconds.
    pub sample_rate: u32,
    pub time_nanos: i64,
    pub duration_nanos: i64,
}

#[derive(Deserialize)]
struct File {
    shared: Shared,
    profiles: Vec<SProfile>,
}

#[derive(Deserialize)]
struct Shared {
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    name: String,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum SProfile {
    #[serde(rename = "sampled")]
    Sampled {
        #[serde(default)]
        unit: String,
        samples: Vec<Vec<usize>>,
        #[serde(default)]
        weights: Vec<f64>,
    },
    #[serde(rename = "evented")]
    Evented {
        #[serde(default)]
        unit: String,
        events: Vec<Event>,
    },
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    frame: usize,
    at: f64,
}

/// Parses a speedscope file into one profile per speedscope profile.
pub fn parse(input: &[u8], options: &SpeedscopeOptions) -> Result<Vec<Profile>> {
    Ok(parse_named(input, options)?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

/// Parses a speedscope file into (profile name, profile) pairs; the name is
/// the `__name__` of its series (`process_cpu`, `wall`, `memory`, ...).
pub fn parse_named(input: &[u8], options: &SpeedscopeOptions) -> Result<Vec<(String, Profile)>> {
    let limits = options.limits;
    limits.check_size("speedscope", input.len())?;
    let file: File = serde_json::from_slice(input)
        .map_err(|e| Error::Malformed(format!("invalid speedscope JSON: {e}")))?;
    let frames = &file.shared.frames;
    let frame = |i: usize, p: usize| -> Result<&str> {
        frames.get(i).map(|f| f.name.as_str()).ok_or_else(|| {
            Error::Unprocessable(format!(
                "speedscope profile {p} refers to frame {i}, but there are only {} frames",
                frames.len()
            ))
        })
    };
    let mut out = Vec::with_capacity(file.profiles.len());
    for (p, profile) in file.profiles.iter().enumerate() {
        let unit = match profile {
            SProfile::Sampled { unit, .. } | SProfile::Evented { unit, .. } => unit.as_str(),
        };
        let kind = kind_for(unit, options);
        let mut builder = ProfileBuilder::for_kind("speedscope", &kind, limits);
        builder.time(options.time_nanos, options.duration_nanos);
        let mut names: Vec<&str> = Vec::new();
        match profile {
            SProfile::Sampled {
                samples, weights, ..
            } => {
                if !weights.is_empty() && weights.len() != samples.len() {
                    return Err(Error::Unprocessable(format!(
                        "speedscope profile {p} has {} samples but {} weights",
                        samples.len(),
                        weights.len()
                    )));
                }
                for (i, stack) in samples.iter().enumerate() {
                    limits.check_depth("speedscope", stack.len())?;
                    names.clear();
                    for f in stack {
                        names.push(frame(*f, p)?);
                    }
                    let w = weights.get(i).copied().unwrap_or(1.0);
                    builder.add_names_root_first(&names, weight(w, &kind, p)?)?;
                }
            }
            SProfile::Evented { events, .. } => {
                let mut open: Vec<usize> = Vec::new();
                let mut last = events.first().map_or(0.0, |e| e.at);
                for e in events {
                    if e.at < last {
                        return Err(Error::Unprocessable(format!(
                            "speedscope profile {p}: events are not ordered by time"
                        )));
                    }
                    if !open.is_empty() {
                        names.clear();
                        for f in &open {
                            names.push(frame(*f, p)?);
                        }
                        builder.add_names_root_first(&names, weight(e.at - last, &kind, p)?)?;
                    }
                    last = e.at;
                    match e.kind.as_str() {
                        "O" => {
                            frame(e.frame, p)?;
                            open.push(e.frame);
                            limits.check_depth("speedscope", open.len())?;
                        }
                        "C" => {
                            if open.pop() != Some(e.frame) {
                                return Err(Error::Unprocessable(format!(
                                    "speedscope profile {p} closes frame {} that is not the innermost open frame",
                                    e.frame
                                )));
                            }
                        }
                        other => {
                            return Err(Error::Malformed(format!(
                                "speedscope profile {p} has an event of type {other:?}: use \"O\" or \"C\""
                            )));
                        }
                    }
                }
            }
        }
        out.push((kind.name.clone(), builder.build()));
    }
    Ok(out)
}

fn kind_for(unit: &str, options: &SpeedscopeOptions) -> ProfileKind {
    match unit {
        "seconds" | "milliseconds" | "microseconds" | "nanoseconds" | "bytes" => {
            types::for_suffix(unit, 0).expect("known unit suffix")
        }
        _ => types::for_optional_suffix(options.suffix.as_deref(), options.sample_rate),
    }
}

fn weight(w: f64, kind: &ProfileKind, p: usize) -> Result<i64> {
    if !w.is_finite() || w < 0.0 {
        return Err(Error::Unprocessable(format!(
            "speedscope profile {p} has a weight of {w}: weights must be finite and not negative"
        )));
    }
    Ok((w.round() as i64).saturating_mul(kind.scale))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLED: &str = r#"{"$schema":"https://www.speedscope.app/file-format-schema.json",
      "shared":{"frames":[{"name":"main"},{"name":"work"},{"name":"idle"}]},
      "profiles":[{"type":"sampled","name":"p","unit":"none","startValue":0,"endValue":3,
        "samples":[[0,1],[0,2],[0,1]],"weights":[1,2,3]}]}"#;

    #[test]
    fn sampled_profiles_sum_weights() {
        let out = parse_named(SAMPLED.as_bytes(), &SpeedscopeOptions::default()).unwrap();
        assert_eq!(out.len(), 1);
        let (name, p) = &out[0];
        assert_eq!(name, "process_cpu");
        let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!((p.sample.len(), total), (2, 6));
    }

    #[test]
    fn evented_profiles_attribute_time_to_open_frames() {
        let input = r#"{"shared":{"frames":[{"name":"a"},{"name":"b"}]},
          "profiles":[{"type":"evented","unit":"milliseconds","startValue":0,"endValue":10,
          "events":[{"type":"O","frame":0,"at":0},{"type":"O","frame":1,"at":2},
                    {"type":"C","frame":1,"at":7},{"type":"C","frame":0,"at":10}]}]}"#;
        let out = parse_named(input.as_bytes(), &SpeedscopeOptions::default()).unwrap();
        let (name, p) = &out[0];
        assert_eq!(name, "wall");
        let mut values: Vec<i64> = p.sample.iter().map(|s| s.value[0]).collect();
        values.sort();
        assert_eq!(values, vec![5, 5]);
    }

    #[test]
    fn bad_files_are_refused_with_reasons() {
        let o = SpeedscopeOptions::default();
        assert!(matches!(parse(b"{", &o), Err(Error::Malformed(_))));
        let bad_frame = SAMPLED.replace("[0,2]", "[0,9]");
        let e = parse(bad_frame.as_bytes(), &o).unwrap_err().to_string();
        assert!(e.contains("frame 9"), "{e}");
        let unbalanced = r#"{"shared":{"frames":[{"name":"a"}]},"profiles":[{"type":"evented",
          "events":[{"type":"C","frame":0,"at":0}]}]}"#;
        assert!(parse(unbalanced.as_bytes(), &o).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&input, &SpeedscopeOptions::default());
        }
    }
}
