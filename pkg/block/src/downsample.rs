//! Pre-aggregated copies of blocks, for queries over long ranges.
//!
//! A copy at resolution `r` holds one row per series and interval
//! `(T - r, T]` (`T` a multiple of `r`), at time `T`, whose samples are the
//! sums of the raw rows' samples per stack trace. Every total of the raw block
//! is kept exactly: a query reading the copy instead of its raw block gives
//! the same answer whenever it counts whole intervals (the copy's raw block
//! lies inside the query's range, and time-series steps are multiples of `r`
//! starting at a multiple of `r`). Profile IDs, span samples and annotations
//! are not kept: queries that need them read the raw block.

use std::{borrow::Borrow, sync::Arc};

use object_store::ObjectStore;
use ulid::Ulid;

use crate::{
    Annotations, BlockData, BlockMeta, BlockParts, EncodedBlock, ProfileRow, Result, encode_block,
    write_block,
};

/// Returns the end of the interval of resolution `r` holding `t`: the least
/// multiple of `r` at or after `t`.
pub fn interval_end(t: i64, r: i64) -> i64 {
    -(-t).div_euclid(r) * r
}

/// Returns `rows` (sorted by `(series, time)`) pre-aggregated at
/// `resolution_nanos`, one interval at a time: only the interval being summed
/// is held.
pub fn downsampled<R: Borrow<ProfileRow>>(
    rows: impl IntoIterator<Item = R>,
    resolution_nanos: i64,
) -> impl Iterator<Item = ProfileRow> {
    assert!(resolution_nanos > 0, "a resolution is positive");
    let mut rows = rows.into_iter().peekable();
    let key = move |p: &ProfileRow| (p.series, interval_end(p.time_nanos, resolution_nanos));
    let mut pairs: Vec<(u32, i64)> = Vec::new();
    std::iter::from_fn(move || {
        let current = key(rows.peek()?.borrow());
        // Rows are sorted by (series, time): an interval's rows are consecutive.
        while let Some(p) = rows.next_if(|p| key(p.borrow()) == current) {
            let p = p.borrow();
            pairs.extend(
                p.stacktrace_ids
                    .iter()
                    .copied()
                    .zip(p.values.iter().copied()),
            );
        }
        pairs.sort_unstable_by_key(|p| p.0);
        let mut row = ProfileRow {
            series: current.0,
            time_nanos: current.1,
            ..Default::default()
        };
        for &(stack, v) in &pairs {
            if row.stacktrace_ids.last() == Some(&stack) {
                *row.values.last_mut().expect("paired") += v;
            } else {
                row.stacktrace_ids.push(stack);
                row.values.push(v);
            }
        }
        row.total = row.values.iter().sum();
        pairs.clear();
        Some(row)
    })
}

/// Returns `data` pre-aggregated at `resolution_nanos` as block `ulid`, with
/// the raw block's series, symbols and compaction.
pub fn downsample(data: &BlockData, resolution_nanos: i64, ulid: Ulid) -> BlockData {
    BlockData {
        ulid,
        source: data.source.clone(),
        compaction: data.compaction.clone(),
        series: data.series.clone(),
        profiles: downsampled(&data.profiles, resolution_nanos).collect(),
        partitions: data.partitions.clone(),
        annotations: Annotations::new(),
    }
}

/// Encodes the copy of `data` at `resolution_nanos` as block `ulid` in
/// memory. CPU-bound: call it off the async runtime.
pub fn encode_downsampled(
    data: &BlockData,
    resolution_nanos: i64,
    ulid: Ulid,
) -> Result<EncodedBlock> {
    let mut encoded = encode_block(&downsample(data, resolution_nanos, ulid))?;
    encoded.meta.resolution_nanos = resolution_nanos;
    Ok(encoded)
}

/// Writes the copy at `resolution_nanos` of the block of `parts` and `rows`
/// (sorted by `(series, time)`) as block `ulid` to `store`, with the raw
/// block's series, symbols and compaction, streaming ([`write_block`]).
/// Blocking: call it from `spawn_blocking`.
pub fn write_downsampled<R: Borrow<ProfileRow>>(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    parts: &BlockParts<'_>,
    rows: impl IntoIterator<Item = R>,
    resolution_nanos: i64,
    ulid: Ulid,
) -> Result<BlockMeta> {
    static NONE: Annotations = Annotations::new();
    let copy = BlockParts {
        ulid,
        resolution_nanos,
        annotations: &NONE,
        ..parts.clone()
    };
    write_block(store, tenant, &copy, downsampled(rows, resolution_nanos))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{Compaction, SeriesEntry};
    use ember_model::Labels;

    fn row(series: u32, t: i64, samples: &[(u32, i64)]) -> ProfileRow {
        ProfileRow {
            id: (series as u128) << 64 | t as u128,
            series,
            time_nanos: t,
            total: samples.iter().map(|s| s.1).sum(),
            stacktrace_ids: samples.iter().map(|s| s.0).collect(),
            values: samples.iter().map(|s| s.1).collect(),
            span_ids: vec![9],
            span_stacktrace_ids: vec![samples[0].0],
            span_values: vec![1],
        }
    }

    /// Per (series, stack) and per (series, interval): a sum of values.
    type Sums = (BTreeMap<(u32, u32), i64>, BTreeMap<(u32, i64), i64>);

    /// Sums of values per (series, stack), and per (series, interval).
    fn sums(data: &BlockData, r: i64) -> Sums {
        let (mut stacks, mut intervals) = (BTreeMap::new(), BTreeMap::new());
        for p in &data.profiles {
            for (s, v) in p.stacktrace_ids.iter().zip(&p.values) {
                *stacks.entry((p.series, *s)).or_insert(0) += v;
            }
            *intervals
                .entry((p.series, interval_end(p.time_nanos, r)))
                .or_insert(0) += p.total;
        }
        (stacks, intervals)
    }

    #[test]
    fn intervals_are_left_open_right_closed() {
        assert_eq!(interval_end(10, 10), 10);
        assert_eq!(interval_end(11, 10), 20);
        assert_eq!(interval_end(1, 10), 10);
        assert_eq!(interval_end(0, 10), 0);
        assert_eq!(interval_end(-5, 10), 0);
    }

    #[test]
    fn a_copy_keeps_every_total_in_fewer_rows() {
        let data = BlockData {
            ulid: Ulid::nil(),
            source: "test".into(),
            compaction: Compaction {
                level: 3,
                sources: vec![Ulid(1), Ulid(2)],
            },
            series: vec![
                SeriesEntry {
                    labels: Labels::default(),
                    partition: 0,
                };
                2
            ],
            profiles: vec![
                row(0, 5, &[(1, 10), (2, 3)]),
                row(0, 10, &[(2, 4), (3, 1)]),
                row(0, 11, &[(1, 7)]),
                row(0, 35, &[(4, 2)]),
                row(1, 1, &[(1, 100)]),
                row(1, 20, &[(1, 50), (5, 5)]),
            ],
            partitions: Vec::new(),
            annotations: Annotations::new(),
        };
        let copy = downsample(&data, 10, Ulid(9));
        let rows: Vec<(u32, i64, i64)> = copy
            .profiles
            .iter()
            .map(|p| (p.series, p.time_nanos, p.total))
            .collect();
        assert_eq!(
            rows,
            [
                (0, 10, 18),
                (0, 20, 7),
                (0, 40, 2),
                (1, 10, 100),
                (1, 20, 55)
            ]
        );
        assert_eq!(sums(&copy, 10), sums(&data, 10));
        assert_eq!(copy.profiles[0].stacktrace_ids, [1, 2, 3]);
        assert_eq!(copy.profiles[0].values, [10, 7, 1]);
        assert!(
            copy.profiles
                .iter()
                .all(|p| p.id == 0 && p.span_ids.is_empty())
        );
        assert_eq!((copy.ulid, &copy.compaction), (Ulid(9), &data.compaction));
        let encoded = encode_downsampled(&data, 10, Ulid(9)).unwrap();
        assert_eq!(encoded.meta.resolution_nanos, 10);
        assert_eq!(encoded.meta.stats.profiles, 5);
    }
}
