//! `meta.json`: what a block holds, readable without opening its Parquet files.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// The block format this binary writes. Readers accept every version up to it.
///
/// 2 added the `id` column of `profiles.parquet`.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub version: u32,
    pub ulid: Ulid,
    pub min_time_nanos: i64,
    pub max_time_nanos: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    /// The process that wrote the block (an ingester or compactor ID).
    pub source: String,
    /// The service name of each symbol partition, by partition index.
    pub partitions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    pub series: u64,
    pub profiles: u64,
    pub samples: u64,
    /// Total bytes of the block's files, `meta.json` excluded.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for blocks cut by an ingester; compaction raises it.
    pub level: u32,
    /// The level-1 blocks whose data this block contains.
    pub sources: Vec<Ulid>,
}

impl BlockMeta {
    /// Returns whether the block may hold profiles in `[start, end]` (nanoseconds).
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.min_time_nanos <= end && self.max_time_nanos >= start
    }
}
