//! A head: the in-memory, still-growing block of one tenant.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock, RwLockReadGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use ember_block::{BlockData, Compaction, ProfileRow, ProfileVisitor, SeriesEntry};
use ember_model::{Labels, ProfileId, ingest::SeriesSpec, series_profile_id};
use ember_proto::google::v1::Profile;
use ember_query::SourceView;
use ember_symdb::{Symbols, SymbolsBuilder};
use ulid::Ulid;

#[derive(Debug)]
pub struct Head {
    /// The ID the head's block will have.
    pub ulid: Ulid,
    /// Wall-clock creation time: heads are cut at aligned instants.
    pub created_at: SystemTime,
    /// The lowest write-ahead log segment holding one of its profiles
    /// (`u64::MAX` when none does).
    wal_segment: AtomicU64,
    data: RwLock<HeadData>,
}

/// The contents of a head. Series references are indices into `series`;
/// profiles are kept in arrival order.
#[derive(Debug)]
pub struct HeadData {
    ulid: Ulid,
    series_index: HashMap<Labels, u32>,
    series: Vec<SeriesEntry>,
    partition_index: HashMap<String, u32>,
    partitions: Vec<(String, SymbolsBuilder)>,
    profiles: Vec<ProfileRow>,
    time_range: Option<(i64, i64)>,
    profile_bytes: usize,
}

impl Default for Head {
    fn default() -> Self {
        Self::new()
    }
}

impl Head {
    pub fn new() -> Self {
        Self::with_ulid(Ulid::new())
    }

    /// Returns an empty head whose block will have `ulid` (a head rebuilt from
    /// the write-ahead log keeps the ID it had).
    pub fn with_ulid(ulid: Ulid) -> Self {
        Self {
            ulid,
            created_at: SystemTime::now(),
            wal_segment: AtomicU64::new(u64::MAX),
            data: RwLock::new(HeadData {
                ulid,
                series_index: HashMap::new(),
                series: Vec::new(),
                partition_index: HashMap::new(),
                partitions: Vec::new(),
                profiles: Vec::new(),
                time_range: None,
                profile_bytes: 0,
            }),
        }
    }

    /// Records that one of its profiles is in WAL segment `segment` (or later).
    pub(crate) fn note_wal_segment(&self, segment: u64) {
        self.wal_segment.fetch_min(segment, Ordering::AcqRel);
    }

    /// Returns the lowest WAL segment holding one of its profiles, if any.
    pub(crate) fn wal_segment(&self) -> Option<u64> {
        Some(self.wal_segment.load(Ordering::Acquire)).filter(|&s| s != u64::MAX)
    }

    pub fn read(&self) -> RwLockReadGuard<'_, HeadData> {
        self.data.read().expect("poisoned")
    }

    /// Returns whether the head is empty and its approximate size in bytes.
    pub fn size(&self) -> (bool, usize) {
        let d = self.read();
        let symbols: usize = d
            .partitions
            .iter()
            .map(|(_, s)| s.symbols().estimated_bytes())
            .sum();
        (d.profiles.is_empty(), d.profile_bytes + symbols)
    }

    /// Symbolizes `profile` into the partition of its service and stores one
    /// profile row per series, the `i`-th with ID `series_profile_id(id, i)`.
    pub fn append(&self, profile: &Profile, series: &[SeriesSpec], time_nanos: i64, id: ProfileId) {
        let Some(first) = series.first() else { return };
        let mut d = self.data.write().expect("poisoned");
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

        let mut pairs: Vec<(u32, i64)> = Vec::new();
        for (i, spec) in series.iter().enumerate() {
            pairs.clear();
            let mut push = |i: usize| {
                let v = profile.sample[i].value[spec.sample_type];
                if v != 0 {
                    pairs.push((stack_ids[i], v));
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
            d.profile_bytes += 48 + row.values.len() * 12;
            d.time_range = Some(match d.time_range {
                Some((lo, hi)) => (lo.min(time_nanos), hi.max(time_nanos)),
                None => (time_nanos, time_nanos),
            });
            d.profiles.push(row);
        }
    }

    /// Returns the head's contents as a block: series sorted by labels,
    /// profiles by (series, time).
    pub fn to_block_data(&self, source: String) -> BlockData {
        let d = self.read();
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
        }
    }
}

impl SourceView for HeadData {
    fn id(&self) -> Ulid {
        self.ulid
    }

    fn series(&self) -> &[SeriesEntry] {
        &self.series
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        self.time_range
    }

    fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> ember_query::Result<()> {
        for p in &self.profiles {
            if selected[p.series as usize] && p.time_nanos >= start && p.time_nanos <= end {
                let samples = with_samples.then_some((&p.stacktrace_ids[..], &p.values[..]));
                visitor.visit(p.id, p.series, p.time_nanos, p.total, samples);
            }
        }
        Ok(())
    }

    fn symbols(&self, partition: u32) -> Option<&Symbols> {
        self.partitions
            .get(partition as usize)
            .map(|(_, b)| b.symbols())
    }
}
