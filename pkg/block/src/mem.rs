//! [`MemBlock`]: a block still in memory, growing as profiles arrive.
//!
//! An ingester's head is one (behind a lock, with what the ingester tracks
//! around it); a querier turns the merged answers of remote ingesters into one,
//! and tests build blocks with it. Its contents are the block's: series,
//! profile rows and one symbol partition per service, written out by
//! [`MemBlock::to_block_data`].

use std::collections::HashMap;
use std::sync::Arc;

use ember_model::{
    Labels, ProfileId,
    ingest::{Annotation, SeriesSpec},
    series_profile_id,
};
use ember_proto::google::v1::Profile;
use ember_symdb::{Symbols, SymbolsBuilder};
use ulid::Ulid;

use crate::{Annotations, BlockData, Compaction, ProfileRow, SeriesEntry};

/// The pprof sample label that names the span a sample was taken in (set by
/// `otel-profiling-go` and by Go's `pprof.Do` with that label).
pub const SPAN_ID_LABEL: &str = "span_id";

/// Parses a span ID: 16 hex digits (an OpenTelemetry span ID), or fewer.
/// Returns `None` for anything else, and for the all-zero (invalid) ID.
pub fn parse_span_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok().filter(|&id| id != 0)
}

/// Returns the span ID of every sample of `profile`, or `None` when no
/// sample has one.
fn sample_spans(profile: &Profile) -> Option<Vec<Option<u64>>> {
    let key = profile
        .string_table
        .iter()
        .position(|s| s == SPAN_ID_LABEL)? as i64;
    let mut any = false;
    let spans = profile
        .sample
        .iter()
        .map(|sample| {
            let label = sample.label.iter().find(|l| l.key == key && l.str != 0)?;
            let span = parse_span_id(profile.string_table.get(label.str as usize)?);
            any |= span.is_some();
            span
        })
        .collect();
    any.then_some(spans)
}

/// The contents of a block in memory. Series references are indices into
/// `series`; profiles are kept in arrival order.
#[derive(Debug)]
pub struct MemBlock {
    ulid: Ulid,
    series_index: HashMap<Labels, u32>,
    series: Vec<SeriesEntry>,
    partition_index: HashMap<String, u32>,
    partitions: Vec<(String, SymbolsBuilder)>,
    profiles: Vec<ProfileRow>,
    time_range: Option<(i64, i64)>,
    profile_bytes: usize,
    annotations: Annotations,
}

impl Default for MemBlock {
    fn default() -> Self {
        Self::new(Ulid::new())
    }
}

impl MemBlock {
    /// Returns an empty block whose ID will be `ulid`.
    pub fn new(ulid: Ulid) -> Self {
        Self {
            ulid,
            series_index: HashMap::new(),
            series: Vec::new(),
            partition_index: HashMap::new(),
            partitions: Vec::new(),
            profiles: Vec::new(),
            time_range: None,
            profile_bytes: 0,
            annotations: Annotations::new(),
        }
    }

    /// Returns the ID the block will have.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// Returns the series, indexed by series reference.
    pub fn series(&self) -> &[SeriesEntry] {
        &self.series
    }

    /// Returns the profile rows, in arrival order.
    pub fn profiles(&self) -> &[ProfileRow] {
        &self.profiles
    }

    /// Returns the (min, max) profile time in nanoseconds, if any profile.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        self.time_range
    }

    /// Returns the symbols of a partition.
    pub fn symbols(&self, partition: u32) -> Option<&Symbols> {
        self.partitions
            .get(partition as usize)
            .map(|(_, b)| b.symbols())
    }

    /// Returns whether the block is empty and its approximate size in bytes.
    pub fn size(&self) -> (bool, usize) {
        let d = self;
        let symbols: usize = d
            .partitions
            .iter()
            .map(|(_, s)| s.symbols().estimated_bytes())
            .sum();
        (d.profiles.is_empty(), d.profile_bytes + symbols)
    }

    /// Symbolizes `profile` into the partition of its service and stores one
    /// profile row per series, the `i`-th with ID `series_profile_id(id, i)`.
    pub fn append(
        &mut self,
        profile: &Profile,
        series: &[SeriesSpec],
        time_nanos: i64,
        id: ProfileId,
    ) {
        let Some(first) = series.first() else { return };
        let d = self;
        let service = first.labels.service_name().to_owned();
        let partition = match d.partition_index.get(&service) {
            Some(&p) => p,
            None => {
                let p = d.partitions.len() as u32;
                d.partitions.push((service.clone(), SymbolsBuilder::new()));
                d.partition_index.insert(service, p);
                p
            }
        };
        let stack_ids = d.partitions[partition as usize].1.add_profile(profile);
        let spans = sample_spans(profile);

        let mut pairs: Vec<(u32, i64)> = Vec::new();
        let mut triples: Vec<(u64, u32, i64)> = Vec::new();
        for (i, spec) in series.iter().enumerate() {
            pairs.clear();
            triples.clear();
            let mut push = |i: usize| {
                let v = profile.sample[i].value[spec.sample_type];
                if v != 0 {
                    pairs.push((stack_ids[i], v));
                    if let Some(span) = spans.as_ref().and_then(|s| s[i]) {
                        triples.push((span, stack_ids[i], v));
                    }
                }
            };
            match &spec.samples {
                Some(indices) => indices.iter().for_each(|&i| push(i as usize)),
                None => (0..profile.sample.len()).for_each(push),
            }
            if pairs.is_empty() {
                continue;
            }
            pairs.sort_unstable_by_key(|p| p.0);
            let mut row = ProfileRow {
                id: series_profile_id(id, i),
                time_nanos,
                ..Default::default()
            };
            for &(id, v) in pairs.iter() {
                if row.stacktrace_ids.last() == Some(&id) {
                    *row.values.last_mut().expect("paired") += v;
                } else {
                    row.stacktrace_ids.push(id);
                    row.values.push(v);
                }
            }
            row.total = row.values.iter().sum();
            triples.sort_unstable_by_key(|t| (t.0, t.1));
            for &(span, stack, v) in triples.iter() {
                let last = row.span_ids.last().zip(row.span_stacktrace_ids.last());
                if last == Some((&span, &stack)) {
                    *row.span_values.last_mut().expect("paired") += v;
                } else {
                    row.span_ids.push(span);
                    row.span_stacktrace_ids.push(stack);
                    row.span_values.push(v);
                }
            }
            row.series = match d.series_index.get(&spec.labels) {
                Some(&s) => s,
                None => {
                    let s = d.series.len() as u32;
                    d.series.push(SeriesEntry {
                        labels: spec.labels.clone(),
                        partition,
                    });
                    d.series_index.insert(spec.labels.clone(), s);
                    s
                }
            };
            d.profile_bytes += 48 + row.values.len() * 12 + row.span_values.len() * 20;
            d.time_range = Some(match d.time_range {
                Some((lo, hi)) => (lo.min(time_nanos), hi.max(time_nanos)),
                None => (time_nanos, time_nanos),
            });
            d.profiles.push(row);
        }
    }

    /// Attaches `annotations` (sorted, unique) to the profile appended with
    /// `id` as `series` series: each of its rows carries them.
    pub fn annotate(&mut self, id: ProfileId, series: usize, annotations: &[Annotation]) {
        if annotations.is_empty() {
            return;
        }
        let shared: Arc<[Annotation]> = annotations.into();
        for i in 0..series {
            self.annotations
                .insert(series_profile_id(id, i), shared.clone());
        }
        self.profile_bytes += annotations
            .iter()
            .map(|a| a.key.len() + a.value.len() + 48)
            .sum::<usize>()
            + series * 32;
    }

    /// Returns the annotations of the profiles, by row ID.
    pub fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    /// Returns the contents as a block to write: series sorted by labels,
    /// profiles by (series, time).
    pub fn to_block_data(&self, source: String) -> BlockData {
        let d = self;
        let mut order: Vec<u32> = (0..d.series.len() as u32).collect();
        order.sort_by(|&a, &b| {
            d.series[a as usize]
                .labels
                .cmp(&d.series[b as usize].labels)
        });
        let mut remap = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let series = order
            .iter()
            .map(|&i| d.series[i as usize].clone())
            .collect();
        let mut profiles: Vec<ProfileRow> = d
            .profiles
            .iter()
            .map(|p| ProfileRow {
                series: remap[p.series as usize],
                ..p.clone()
            })
            .collect();
        profiles.sort_by_key(|p| (p.series, p.time_nanos));
        BlockData {
            ulid: self.ulid,
            source,
            compaction: Compaction {
                level: 1,
                sources: vec![self.ulid],
            },
            series,
            profiles,
            partitions: d
                .partitions
                .iter()
                .map(|(name, b)| (name.clone(), Arc::new(b.symbols().clone())))
                .collect(),
            annotations: d.annotations.clone(),
        }
    }
}
