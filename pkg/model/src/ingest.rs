//! How one pushed pprof becomes series: one per sample type and per distinct
//! set of sample labels (pprof labels such as `handler="/api"`), each named
//! by its profile type ID as Grafana Pyroscope names them.

use std::collections::BTreeMap;

use ember_proto::types::v1::ProfileAnnotation;
use tonic::Status;

use crate::{
    Error, Label, Labels, ProfileId, ProfileType,
    labels::{METRIC_NAME, PROFILE_TYPE, RESERVED_PREFIX, SERVICE_NAME, UNKNOWN_SERVICE},
    pprof::FlatProfile,
};

/// Sample labels that identify one request rather than a workload; storing
/// them as series labels would create a series per request.
const PER_REQUEST_LABELS: &[&str] = &["span_id", "span_name", "profile_id", "trace_id"];

/// One series within a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// Complete labels: client labels, `service_name`, `__name__`, `__profile_type__`.
    pub labels: Labels,
    pub profile_type: ProfileType,
    /// Index into the profile's `sample_type` and each sample's `value`.
    pub sample_type: usize,
    /// The samples of this series, or `None` for all of them.
    pub samples: Option<Vec<u32>>,
}

/// A key and value a client attached to a profile
/// (`RawProfileSeries.annotations`), e.g. Pyroscope's
/// `pyroscope.ingest.throttled`. Stored with the profile and returned on the
/// time-series points that hold it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Annotation {
    pub key: String,
    pub value: String,
}

/// Annotations one profile may carry: they are returned on every point that
/// holds the profile, so they stay few and small.
pub const MAX_ANNOTATIONS_PER_PROFILE: usize = 16;
pub const MAX_ANNOTATION_KEY_BYTES: usize = 256;
pub const MAX_ANNOTATION_VALUE_BYTES: usize = 4096;

/// Returns the annotations of a push, checked against the bounds above;
/// duplicates are dropped and the rest sorted.
pub fn annotations(annotations: &[ProfileAnnotation]) -> Result<Vec<Annotation>, Error> {
    if annotations.len() > MAX_ANNOTATIONS_PER_PROFILE {
        return Err(Error::Malformed(format!(
            "a profile carries at most {MAX_ANNOTATIONS_PER_PROFILE} annotations, got {}",
            annotations.len()
        )));
    }
    let mut out = Vec::with_capacity(annotations.len());
    for a in annotations {
        if a.key.is_empty() || a.key.len() > MAX_ANNOTATION_KEY_BYTES {
            return Err(Error::Malformed(format!(
                "annotation key {:?} must be 1 to {MAX_ANNOTATION_KEY_BYTES} bytes long",
                a.key
            )));
        }
        if a.value.len() > MAX_ANNOTATION_VALUE_BYTES {
            return Err(Error::Malformed(format!(
                "the value of annotation {:?} is {} bytes long, more than {MAX_ANNOTATION_VALUE_BYTES}",
                a.key,
                a.value.len()
            )));
        }
        out.push(Annotation {
            key: a.key.clone(),
            value: a.value.clone(),
        });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Returns annotations as the API sends them.
pub fn annotations_to_proto(annotations: &[Annotation]) -> Vec<ProfileAnnotation> {
    annotations
        .iter()
        .map(|a| ProfileAnnotation {
            key: a.key.clone(),
            value: a.value.clone(),
        })
        .collect()
}

/// One accepted profile, validated and turned into deltas, on its way to storage.
#[derive(Debug, Clone, Copy)]
pub struct ProfileWrite<'a> {
    /// The ID shared by every replica of the profile.
    pub id: ProfileId,
    pub profile: &'a FlatProfile,
    pub series: &'a [SeriesSpec],
    pub time_nanos: i64,
    /// The tenant's active-series limit (0: none), enforced by each ingester.
    pub max_active_series: usize,
    /// Sorted and unique ([`annotations`]).
    pub annotations: &'a [Annotation],
    /// The profile's protobuf encoding when at hand, taken as is by the
    /// write-ahead log and the replicas instead of encoding the profile
    /// again: the decompressed push, while nothing but validation changed
    /// the profile since (every decoder validates again, and validation's
    /// fixes give the same profile twice), or the bytes a replica received.
    pub encoded: Option<&'a [u8]>,
}

/// Where the distributor writes accepted profiles: the ingester of this process
/// (`-target=all`), or replicas on the ingesters of the ring. Blocking: called
/// off the async runtime.
pub trait IngestSink: Send + Sync + std::fmt::Debug {
    /// Returns once the profile is durable (in a write-ahead log, or on a
    /// quorum of replicas), or the status that says why it was refused.
    fn write(&self, tenant: &str, write: &ProfileWrite<'_>) -> Result<(), Status>;
}

/// Returns the profile name Pyroscope uses for a sample type.
pub fn profile_name(sample_type: &str, period_type: &str) -> String {
    let name = match sample_type {
        "cpu" => "process_cpu",
        "samples" if period_type == "wall" => "wall",
        "samples" => "process_cpu",
        "wall" => "wall",
        "goroutine" | "goroutines" => "goroutines",
        "contentions" | "delay" | "lock_count" | "lock_time" => "mutex",
        "exception" | "exceptions" => "exceptions",
        t if t.starts_with("alloc") || t.starts_with("inuse") => "memory",
        t if period_type.is_empty() => t,
        _ => period_type,
    };
    name.to_owned()
}

/// Splits `profile` into series. `client` are the labels sent with the push;
/// reserved `__` labels are dropped except `__name__`, which names the
/// profile when the client knows better than the sample types (e.g. `block`).
pub fn series_for(flat: &FlatProfile, client: &Labels) -> Vec<SeriesSpec> {
    let (profile, samples) = (&flat.header, &flat.samples);
    let str_at = |i: i64| flat.strings.at(i);
    let name_hint = client.get(METRIC_NAME).filter(|n| !n.is_empty());
    let mut base = Labels::new(
        client
            .iter()
            .filter(|l| !l.name.starts_with(RESERVED_PREFIX) && !l.value.is_empty())
            .cloned()
            .collect(),
    );
    if base.get(SERVICE_NAME).is_none() {
        base.set(SERVICE_NAME, UNKNOWN_SERVICE);
    }

    // Group samples by their string labels; BTreeMap keeps the order stable.
    // Without any, all samples are one group: most profiles, at no cost a sample.
    let mut groups: BTreeMap<Vec<(&str, &str)>, Vec<u32>> = BTreeMap::new();
    let grouped = samples.all_labels().iter().any(|l| l.str != 0);
    for i in (0..samples.len()).filter(|_| grouped) {
        let mut key: Vec<(&str, &str)> = samples
            .labels(i)
            .iter()
            .filter(|l| l.str != 0)
            .map(|l| (str_at(l.key), str_at(l.str)))
            .filter(|(k, v)| {
                !k.is_empty()
                    && !v.is_empty()
                    && !k.starts_with(RESERVED_PREFIX)
                    && !PER_REQUEST_LABELS.contains(k)
            })
            .collect();
        key.sort_unstable();
        key.dedup_by(|a, b| a.0 == b.0);
        groups.entry(key).or_default().push(i as u32);
    }
    let single_group = groups.len() <= 1;

    let (period_type, period_unit) = profile
        .period_type
        .as_ref()
        .map(|p| (str_at(p.r#type), str_at(p.unit)))
        .unwrap_or(("", ""));
    let mut out = Vec::new();
    for (index, vt) in profile.sample_type.iter().enumerate() {
        let sample_type = str_at(vt.r#type);
        let profile_type = ProfileType {
            name: name_hint
                .map(str::to_owned)
                .unwrap_or_else(|| profile_name(sample_type, period_type)),
            sample_type: sample_type.to_owned(),
            sample_unit: str_at(vt.unit).to_owned(),
            period_type: period_type.to_owned(),
            period_unit: period_unit.to_owned(),
        };
        let mut labels = base.clone();
        labels.set(METRIC_NAME, profile_type.name.clone());
        labels.set(PROFILE_TYPE, profile_type.id());
        if single_group {
            out.push(SeriesSpec {
                labels,
                profile_type,
                sample_type: index,
                samples: None,
            });
            continue;
        }
        for (key, samples) in &groups {
            let mut labels = labels.clone();
            for (k, v) in key {
                if labels.get(k).is_none() {
                    labels.set(k, *v);
                }
            }
            out.push(SeriesSpec {
                labels,
                profile_type: profile_type.clone(),
                sample_type: index,
                samples: Some(samples.clone()),
            });
        }
    }
    out
}

/// Builds labels from `name=value` pairs (test and tooling convenience).
pub fn labels_of(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_proto::google::v1::{Label as PLabel, Profile, Sample, ValueType};

    fn go_cpu() -> Profile {
        let strings = [
            "",
            "samples",
            "count",
            "cpu",
            "nanoseconds",
            "handler",
            "/a",
            "/b",
            "span_id",
            "1",
        ];
        let label = |k: i64, v: i64| PLabel {
            key: k,
            str: v,
            ..Default::default()
        };
        Profile {
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            sample_type: vec![
                ValueType { r#type: 1, unit: 2 },
                ValueType { r#type: 3, unit: 4 },
            ],
            period_type: Some(ValueType { r#type: 3, unit: 4 }),
            sample: vec![
                Sample {
                    value: vec![1, 10],
                    label: vec![label(5, 6), label(8, 9)],
                    ..Default::default()
                },
                Sample {
                    value: vec![2, 20],
                    label: vec![label(5, 7)],
                    ..Default::default()
                },
                Sample {
                    value: vec![3, 30],
                    label: vec![label(5, 6)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn one_series_per_sample_type_and_label_set() {
        let client = labels_of(&[("service_name", "api"), ("__secret", "x"), ("env", "prod")]);
        let series = series_for(&go_cpu().into(), &client);
        assert_eq!(series.len(), 4);
        let ids: Vec<String> = series.iter().map(|s| s.profile_type.id()).collect();
        assert_eq!(ids[0], "process_cpu:samples:count:cpu:nanoseconds");
        assert_eq!(ids[2], "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        let a = &series[0];
        assert_eq!(a.labels.get("handler"), Some("/a"));
        assert_eq!(a.samples, Some(vec![0, 2]), "span_id must not split series");
        assert_eq!(a.labels.get("__secret"), None);
        assert_eq!(a.labels.get("env"), Some("prod"));
        assert_eq!(a.labels.get(PROFILE_TYPE), Some(ids[0].as_str()));
    }

    #[test]
    fn fills_service_name_and_honours_name_hint() {
        let mut p = go_cpu();
        for s in &mut p.sample {
            s.label.clear();
        }
        let series = series_for(&p.into(), &labels_of(&[("__name__", "block")]));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels.service_name(), UNKNOWN_SERVICE);
        assert_eq!(series[0].profile_type.name, "block");
        assert_eq!(series[0].samples, None);
    }

    #[test]
    fn samples_without_labels_that_split_are_one_series() {
        // Numeric labels and per-request ones (span_id) do not split series.
        let mut p = go_cpu();
        for s in &mut p.sample {
            s.label = vec![PLabel {
                key: 5,
                num: 3,
                ..Default::default()
            }];
        }
        p.sample[1].label.push(PLabel {
            key: 8,
            str: 9,
            ..Default::default()
        });
        let series = series_for(&p.into(), &labels_of(&[("service_name", "api")]));
        assert_eq!(series.len(), 2);
        assert!(series.iter().all(|s| s.samples.is_none()), "{series:?}");
    }

    #[test]
    fn names_common_sample_types() {
        assert_eq!(profile_name("alloc_space", "space"), "memory");
        assert_eq!(profile_name("inuse_objects", "space"), "memory");
        assert_eq!(profile_name("goroutine", "goroutine"), "goroutines");
        assert_eq!(profile_name("samples", "wall"), "wall");
        assert_eq!(profile_name("contentions", "contentions"), "mutex");
        assert_eq!(profile_name("exception", ""), "exceptions");
    }
}
