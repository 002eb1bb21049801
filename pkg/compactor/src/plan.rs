//! Which blocks to merge: groups of blocks that lie inside one complete time
//! range.

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
/// (aligned to the epoch) that holds all of `meta`'s profiles, if one does.
pub(crate) fn range_of(meta: &BlockMeta, range: i64) -> Option<(i64, i64)> {
    let start = meta.min_time_nanos.div_euclid(range).checked_mul(range)?;
    let end = start.checked_add(range)?;
    (meta.max_time_nanos < end).then_some((start, end))
}

/// Returns the groups of stage `stage` (0 for the first of the configured
/// ranges): blocks of level `stage + 1` or lower that lie inside one range of
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
            // Straddles 11:00: only a longer range holds it.
            meta(4, 1, 10 * H + 30, 11 * H + 30),
            meta(5, 1, 11 * H + 2, 11 * H + 3),
            meta(6, 1, 12 * H, 12 * H),
            meta(7, 1, 12 * H + 1, 12 * H + 1),
            // Already compacted: not a stage-0 candidate.
            meta(8, 2, 10 * H, 10 * H + 1),
        ];
        // 12:00-13:00 is not complete yet.
        assert_eq!(
            ulids(&groups(&blocks, 0, H, 12 * H + 30)),
            [(10, vec![1, 2]), (11, vec![3, 5])]
        );
        assert_eq!(ulids(&groups(&blocks, 0, H, 13 * H)).len(), 3);
        // A 4h range (08:00-12:00) holds the straddler and the level-2 block.
        assert_eq!(
            ulids(&groups(&blocks, 1, 4 * H, 12 * H)),
            [(8, vec![1, 2, 3, 4, 5, 8])]
        );
    }

    #[test]
    fn ranges_align_to_the_epoch_before_it_too() {
        assert_eq!(range_of(&meta(1, 1, -5, -1), H), Some((-H, 0)));
        assert_eq!(range_of(&meta(1, 1, -5, 0), H), None);
        assert_eq!(range_of(&meta(1, 1, i64::MAX - 1, i64::MAX), H), None);
    }
}
