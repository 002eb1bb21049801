//! Which blocks to merge: groups of blocks that belong to one complete time
//! range.
//!
//! A block belongs to the range that holds its midpoint, if it is shorter
//! than the range. Ingesters cut heads at the same aligned instants, but a
//! profile's timestamp is the start of its collection window, so a block of
//! 10:00-11:00 usually begins a few seconds before 10:00; by midpoint, it and
//! its replicas from the other ingesters still land in the same range.

use ember_block::BlockMeta;

/// Blocks to merge into one.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Start and end (exclusive) of the range, in unix nanoseconds.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Sorted by ULID, so that merges are deterministic.
    pub(crate) blocks: Vec<BlockMeta>,
}

/// Returns the start and exclusive end of the range of length `range`
/// (aligned to the epoch) that `meta` belongs to: the one holding its
/// midpoint, when the block is shorter than `range`.
pub(crate) fn range_of(meta: &BlockMeta, range: i64) -> Option<(i64, i64)> {
    let span = meta.max_time_nanos.checked_sub(meta.min_time_nanos)?;
    if span >= range {
        return None;
    }
    let midpoint = meta.min_time_nanos + span / 2;
    let start = midpoint.div_euclid(range).checked_mul(range)?;
    let end = start.checked_add(range)?;
    Some((start, end))
}

/// Returns the groups of stage `stage` (0 for the first of the configured
/// ranges): blocks of level `stage + 1` or lower that belong to one range of
/// length `range` whose end is at or before `complete_before`, at least two a
/// range. Blocks of lower levels are those an earlier, shorter range could
/// not hold; merging them here moves them on.
pub(crate) fn groups(
    blocks: &[BlockMeta],
    stage: usize,
    range: i64,
    complete_before: i64,
) -> Vec<Group> {
    let max_level = stage as u32 + 1;
    let mut by_range: std::collections::BTreeMap<(i64, i64), Vec<BlockMeta>> = Default::default();
    for meta in blocks {
        if meta.compaction.level > max_level {
            continue;
        }
        if let Some((start, end)) = range_of(meta, range)
            && end <= complete_before
        {
            by_range.entry((start, end)).or_default().push(meta.clone());
        }
    }
    by_range
        .into_iter()
        .filter(|(_, blocks)| blocks.len() >= 2)
        .map(|((start, end), mut blocks)| {
            blocks.sort_by_key(|m| m.ulid);
            Group { start, end, blocks }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ember_block::{BlockStats, Compaction, FORMAT_VERSION};
    use ulid::Ulid;

    use super::*;

    const H: i64 = 3_600_000_000_000;

    fn meta(ulid: u128, level: u32, min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            version: FORMAT_VERSION,
            ulid: Ulid(ulid),
            min_time_nanos: min,
            max_time_nanos: max,
            stats: BlockStats::default(),
            compaction: Compaction {
                level,
                sources: vec![Ulid(ulid)],
            },
            source: String::new(),
            partitions: Vec::new(),
            resolution_nanos: 0,
        }
    }

    fn ulids(groups: &[Group]) -> Vec<(i64, Vec<u128>)> {
        groups
            .iter()
            .map(|g| (g.start / H, g.blocks.iter().map(|m| m.ulid.0).collect()))
            .collect()
    }

    #[test]
    fn groups_complete_ranges_of_two_or_more() {
        let blocks = [
            meta(1, 1, 10 * H, 10 * H + 5),
            meta(2, 1, 10 * H + 7, 11 * H - 1),
            meta(3, 1, 11 * H, 11 * H + 1),
            // As long as a range: only a longer range holds it.
            meta(4, 1, 10 * H + 30, 11 * H + 30),
            // Starts a little before 11:00, mostly after: belongs to 11:00-12:00.
            meta(9, 1, 11 * H - 10, 11 * H + 100),
            meta(5, 1, 11 * H + 2, 11 * H + 3),
            meta(6, 1, 12 * H, 12 * H),
            meta(7, 1, 12 * H + 1, 12 * H + 1),
            // Already compacted: not a stage-0 candidate.
            meta(8, 2, 10 * H, 10 * H + 1),
        ];
        // 12:00-13:00 is not complete yet.
        assert_eq!(
            ulids(&groups(&blocks, 0, H, 12 * H + 30)),
            [(10, vec![1, 2]), (11, vec![3, 5, 9])]
        );
        assert_eq!(ulids(&groups(&blocks, 0, H, 13 * H)).len(), 3);
        // A 4h range (08:00-12:00) holds the straddler and the level-2 block.
        assert_eq!(
            ulids(&groups(&blocks, 1, 4 * H, 12 * H)),
            [(8, vec![1, 2, 3, 4, 5, 8, 9])]
        );
    }

    #[test]
    fn ranges_align_to_the_epoch_before_it_too() {
        assert_eq!(range_of(&meta(1, 1, -5, -1), H), Some((-H, 0)));
        assert_eq!(range_of(&meta(1, 1, -5, 0), H), Some((-H, 0)));
        assert_eq!(range_of(&meta(1, 1, 0, H), H), None, "as long as the range");
        assert_eq!(range_of(&meta(1, 1, i64::MAX - 1, i64::MAX), H), None);
    }
}
