//! A head: the in-memory, still-growing block of one tenant.

use std::{
    sync::{
        RwLock, RwLockReadGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use ember_block::{BlockData, MemBlock};
use ember_model::{
    ProfileId,
    ingest::{Annotation, SeriesSpec},
    pprof::FlatProfile,
};
use ulid::Ulid;

use crate::metrics::HeadCounts;

/// A tenant's [`MemBlock`] being written, with what the ingester tracks about it.
#[derive(Debug)]
pub struct Head {
    /// The ID the head's block will have.
    pub ulid: Ulid,
    /// Wall-clock creation time: heads are cut at aligned instants.
    pub created_at: SystemTime,
    /// The lowest write-ahead log segment holding one of its profiles
    /// (`u64::MAX` when none does).
    wal_segment: AtomicU64,
    data: RwLock<MemBlock>,
    /// Series, profile rows and samples appended, and heap bytes after the
    /// last append, for the head gauges.
    series: AtomicU64,
    profiles: AtomicU64,
    samples: AtomicU64,
    bytes: AtomicU64,
}

impl Head {
    /// Returns an empty head created at `now`, with a new ID.
    pub fn new(now: SystemTime) -> Self {
        Self::with_ulid(Ulid::new(), now)
    }

    /// Returns an empty head whose block will have `ulid` (a head rebuilt from
    /// the write-ahead log keeps the ID it had), created at `now`.
    pub fn with_ulid(ulid: Ulid, now: SystemTime) -> Self {
        Self {
            ulid,
            created_at: now,
            wal_segment: AtomicU64::new(u64::MAX),
            data: RwLock::new(MemBlock::new(ulid)),
            series: AtomicU64::new(0),
            profiles: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
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

    /// Returns a read view of the contents.
    pub fn read(&self) -> RwLockReadGuard<'_, MemBlock> {
        self.data.read().expect("poisoned")
    }

    /// Returns whether the head is empty and its approximate size in bytes.
    pub fn size(&self) -> (bool, usize) {
        self.read().size()
    }

    /// Attaches a profile's annotations to the rows appended for it (see
    /// [`MemBlock::annotate`]).
    pub fn annotate(&self, id: ProfileId, series: usize, annotations: &[Annotation]) {
        if !annotations.is_empty() {
            self.data
                .write()
                .expect("poisoned")
                .annotate(id, series, annotations);
        }
    }

    /// Appends a profile as the given series (see [`MemBlock::append`]);
    /// returns the series, profile rows, samples and heap bytes it added.
    pub fn append(
        &self,
        profile: &FlatProfile,
        series: &[SeriesSpec],
        time_nanos: i64,
        id: ProfileId,
    ) -> HeadCounts {
        let mut data = self.data.write().expect("poisoned");
        let before = (
            data.series().len(),
            data.profile_count(),
            data.sample_count(),
        );
        data.append(profile, series, time_nanos, id);
        let added = HeadCounts {
            series: (data.series().len() - before.0) as u64,
            profiles: (data.profile_count() - before.1) as u64,
            samples: data.sample_count() - before.2,
            // Capacities only grow, so the difference is what it added.
            bytes: (data.heap_bytes() as u64).saturating_sub(self.bytes.load(Ordering::Relaxed)),
        };
        self.bytes.fetch_add(added.bytes, Ordering::Relaxed);
        self.series.fetch_add(added.series, Ordering::Relaxed);
        self.profiles.fetch_add(added.profiles, Ordering::Relaxed);
        self.samples.fetch_add(added.samples, Ordering::Relaxed);
        added
    }

    /// Returns the series, profile rows and samples appended so far, and
    /// the heap bytes after the last append.
    pub fn counts(&self) -> HeadCounts {
        HeadCounts {
            series: self.series.load(Ordering::Relaxed),
            profiles: self.profiles.load(Ordering::Relaxed),
            samples: self.samples.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Returns the head's contents as a block (see [`MemBlock::to_block_data`]).
    pub fn to_block_data(&self, source: String) -> BlockData {
        self.read().to_block_data(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_model::{Labels, ingest, labels::SERVICE_NAME};
    use ember_testkit::pprof::PprofBuilder;

    #[test]
    fn bytes_follow_the_heap_of_the_head() {
        let head = Head::new(SystemTime::now());
        assert_eq!(head.counts().bytes, 0);
        let labels = Labels::new(vec![ember_model::Label::new(SERVICE_NAME, "svc")]);
        let mut total = 0;
        for i in 0..50i64 {
            let profile = PprofBuilder::go_cpu()
                .sample(&["main", "work", &format!("f{i}")], &[3, 30 + i])
                .sample(&["main", "idle"], &[1, 10])
                .build()
                .into();
            let series = ingest::series_for(&profile, &labels);
            let added = head.append(&profile, &series, i, 1);
            total += added.bytes;
            assert_eq!(head.counts().bytes, total);
            assert_eq!(total as usize, head.read().heap_bytes());
        }
        assert!(total > 0);
    }
}
