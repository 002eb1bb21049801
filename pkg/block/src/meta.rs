//! `meta.json`: what a block holds, readable without opening its Parquet files.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// The block format this binary writes. Readers accept every version up to it.
///
/// 2 added the `id` column of `profiles.parquet`, 3 the `span_ids`,
/// `span_stacktrace_ids` and `span_values` columns after it.
pub const FORMAT_VERSION: u32 = 3;

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
    /// 0 for a block of the profiles as stored. Otherwise the block is a
    /// pre-aggregated copy of the raw block with the same `compaction`: one
    /// row per series and interval `(T - resolution, T]`, at time `T` (a
    /// multiple of the resolution), summing the raw rows' samples, with no
    /// profile IDs, span samples or annotations ([`crate::downsample`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resolution_nanos: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    pub series: u64,
    pub profiles: u64,
    pub samples: u64,
    /// Total bytes of the block's files, `meta.json` excluded.
    pub bytes: u64,
    /// Rows of `annotations.parquet`; 0 when the block has no such file
    /// (and in blocks written before annotations were stored).
    #[serde(default)]
    pub annotations: u64,
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

    /// Returns whether the block is a pre-aggregated copy of a raw block.
    pub fn is_downsampled(&self) -> bool {
        self.resolution_nanos > 0
    }

    /// Returns whether this block is a pre-aggregated copy of block `raw`.
    pub fn downsamples(&self, raw: &BlockMeta) -> bool {
        self.is_downsampled() && !raw.is_downsampled() && self.compaction == raw.compaction
    }

    /// Returns the level-1 blocks whose data the block holds: its
    /// `compaction.sources`, or the block itself when that list is empty.
    pub fn sources(&self) -> &[Ulid] {
        if self.compaction.sources.is_empty() {
            std::slice::from_ref(&self.ulid)
        } else {
            &self.compaction.sources
        }
    }
}

/// Returns the blocks among `metas` whose data another of them holds, so
/// that readers can skip them: a compacted block and its sources coexist
/// until the compactor deletes the sources.
///
/// Block `a` is superseded by block `b` when `b`'s sources include all of
/// `a`'s ([`BlockMeta::sources`]) and `b` is the better copy: it has more
/// sources, or the same ones at a higher level (a level-1 block is one of its
/// own sources, so a block compacted from it supersedes it), or the same
/// sources and level and a lower ULID (two compactions of the same blocks).
/// Whatever supersedes a block is never itself superseded by it, so every
/// profile stays in at least one remaining block.
///
/// Only raw blocks supersede: a pre-aggregated copy is superseded with its
/// raw block (by a raw block holding more sources, or the same at a higher
/// level), never by its own raw block, and never supersedes one.
pub fn superseded<'a>(metas: impl IntoIterator<Item = &'a BlockMeta>) -> HashSet<Ulid> {
    let metas: Vec<&BlockMeta> = metas.into_iter().collect();
    let sources: Vec<HashSet<Ulid>> = metas
        .iter()
        .map(|m| m.sources().iter().copied().collect())
        .collect();
    // The blocks holding each level-1 block: a superseding block holds a
    // block's first source, so only those are candidates.
    let mut holders: HashMap<Ulid, Vec<usize>> = HashMap::new();
    for (i, m) in metas.iter().enumerate() {
        for s in m.sources() {
            holders.entry(*s).or_default().push(i);
        }
    }
    let better = |b: usize, a: usize| {
        let (ma, mb) = (metas[a], metas[b]);
        if mb.is_downsampled() {
            return false;
        }
        if ma.is_downsampled() {
            return (sources[b].len(), mb.compaction.level)
                > (sources[a].len(), ma.compaction.level);
        }
        (
            sources[b].len(),
            mb.compaction.level,
            std::cmp::Reverse(mb.ulid),
        ) > (
            sources[a].len(),
            ma.compaction.level,
            std::cmp::Reverse(ma.ulid),
        )
    };
    metas
        .iter()
        .enumerate()
        .filter(|&(a, m)| {
            holders[&m.sources()[0]].iter().any(|&b| {
                b != a
                    && metas[b].ulid != m.ulid
                    && better(b, a)
                    && sources[a].is_subset(&sources[b])
            })
        })
        .map(|(_, m)| m.ulid)
        .collect()
}

/// Returns the blocks among `metas` that no other block supersedes ([`superseded`]).
pub fn live_blocks(metas: &[BlockMeta]) -> Vec<&BlockMeta> {
    let superseded = superseded(metas);
    metas
        .iter()
        .filter(|m| !superseded.contains(&m.ulid))
        .collect()
}

/// `deletion-mark.json`: the compactor's note that a block is to be deleted,
/// written into the block's directory (Thanos's format). Readers may keep
/// using a marked block until it is gone; the compactor deletes it once the
/// mark is older than its deletion delay, `meta.json` first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The marked block.
    pub id: Ulid,
    /// When the block was marked, in unix seconds.
    pub deletion_time: i64,
    /// The mark's format, [`DeletionMark::VERSION`].
    #[serde(default = "DeletionMark::version_1")]
    pub version: u32,
}

impl DeletionMark {
    /// The mark format this binary writes.
    pub const VERSION: u32 = 1;

    fn version_1() -> u32 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ulid: u128, level: u32, sources: &[u128]) -> BlockMeta {
        BlockMeta {
            version: FORMAT_VERSION,
            ulid: Ulid(ulid),
            min_time_nanos: 0,
            max_time_nanos: 0,
            stats: BlockStats::default(),
            compaction: Compaction {
                level,
                sources: sources.iter().map(|&s| Ulid(s)).collect(),
            },
            source: String::new(),
            partitions: Vec::new(),
            resolution_nanos: 0,
        }
    }

    fn ulids(set: HashSet<Ulid>) -> Vec<u128> {
        let mut v: Vec<u128> = set.into_iter().map(|u| u.0).collect();
        v.sort();
        v
    }

    #[test]
    fn compacted_blocks_supersede_their_sources() {
        let metas = [
            meta(1, 1, &[1]),
            meta(2, 1, &[2]),
            meta(3, 1, &[3]),
            meta(4, 1, &[]),
            meta(10, 2, &[1, 2]),
            meta(11, 2, &[3]),
            meta(20, 3, &[1, 2, 3]),
        ];
        assert_eq!(ulids(superseded(&metas)), [1, 2, 3, 10, 11]);
        let live: Vec<u128> = live_blocks(&metas).iter().map(|m| m.ulid.0).collect();
        assert_eq!(live, [4, 20]);
        // Without the level-3 block, the level-2 ones are what remains.
        assert_eq!(ulids(superseded(&metas[..6])), [1, 2, 3]);
    }

    #[test]
    fn partial_overlap_supersedes_nothing_and_duplicates_keep_one() {
        let metas = [meta(10, 2, &[1, 2]), meta(11, 2, &[2, 3])];
        assert!(superseded(&metas).is_empty());
        // Two compactions of the same sources: the lower ULID stays.
        let metas = [meta(12, 2, &[1, 2]), meta(10, 2, &[1, 2]), meta(1, 1, &[1])];
        assert_eq!(ulids(superseded(&metas)), [1, 12]);
    }

    #[test]
    fn a_pre_aggregated_copy_lives_and_goes_with_its_raw_block() {
        let copy = |ulid: u128, level: u32, sources: &[u128]| BlockMeta {
            resolution_nanos: 60,
            ..meta(ulid, level, sources)
        };
        // The raw block and its copies supersede one another in neither way.
        let metas = [
            meta(10, 2, &[1, 2]),
            copy(11, 2, &[1, 2]),
            copy(9, 2, &[1, 2]),
        ];
        assert!(superseded(&metas).is_empty());
        assert!(metas[1].downsamples(&metas[0]) && !metas[0].downsamples(&metas[1]));
        // A copy does not supersede the level-1 blocks it was made from.
        let metas = [meta(1, 1, &[1]), copy(11, 2, &[1, 2])];
        assert!(superseded(&metas).is_empty());
        // A raw block merged into a longer one takes its copies along.
        let metas = [
            meta(10, 2, &[1, 2]),
            copy(11, 2, &[1, 2]),
            meta(20, 3, &[1, 2, 3]),
            copy(21, 3, &[1, 2, 3]),
        ];
        assert_eq!(ulids(superseded(&metas)), [10, 11]);
    }
}
