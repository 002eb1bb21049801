//! A head: the in-memory, still-growing block of one tenant.

use std::{
    sync::{
        RwLock, RwLockReadGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use ember_block::{BlockData, MemBlock};
use ember_model::{ProfileId, ingest::SeriesSpec};
use ember_proto::google::v1::Profile;
use ulid::Ulid;

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

    /// Appends a profile as the given series (see [`MemBlock::append`]).
    pub fn append(&self, profile: &Profile, series: &[SeriesSpec], time_nanos: i64, id: ProfileId) {
        self.data
            .write()
            .expect("poisoned")
            .append(profile, series, time_nanos, id);
    }

    /// Returns the head's contents as a block (see [`MemBlock::to_block_data`]).
    pub fn to_block_data(&self, source: String) -> BlockData {
        self.read().to_block_data(source)
    }
}
