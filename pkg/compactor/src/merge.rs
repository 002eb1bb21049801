//! Merges blocks into one: the union of their series, each profile ID once,
//! and symbols rebuilt per partition.

use std::collections::HashMap;

use ember_block::{
    Annotations, BlockParts, BlockView, Compaction, PackedRows, ProfileRow, ProfileVisitor,
    SeriesEntry, SpanSamples,
};
use ember_model::{Labels, ProfileId};
use ember_symdb::{Remap, Symbols, SymbolsBuilder};
use rustc_hash::{FxHashMap, FxHashSet};
use ulid::Ulid;

use crate::{Error, Result};

/// The block being built from the blocks of one group, added one at a time so
/// that only one source is in memory besides the result.
///
/// Series are numbered in order of arrival and sorted by labels at the end;
/// partitions are one per service, in order of arrival.
#[derive(Debug, Default)]
pub(crate) struct Merger {
    seen: FxHashSet<ProfileId>,
    series_index: HashMap<Labels, u32>,
    series: Vec<SeriesEntry>,
    partition_index: HashMap<String, u32>,
    partitions: Vec<(String, SymbolsBuilder)>,
    /// The rows kept from the sources added so far.
    rows: PackedRows,
    /// The rows kept from the source being added, until its span samples
    /// are in.
    pending: Vec<ProfileRow>,
    /// Replicas of a profile carry the same annotations: the first is kept.
    annotations: Annotations,
    /// Profiles read from the sources, and of those, copies of a profile
    /// already kept.
    pub(crate) profiles_in: u64,
    pub(crate) duplicates: u64,
}

fn corrupt(block: Ulid, message: impl Into<String>) -> Error {
    Error::Corrupt {
        block: block.to_string(),
        message: message.into(),
    }
}

impl Merger {
    /// Returns the number of profiles kept so far.
    pub(crate) fn profiles(&self) -> usize {
        self.rows.len()
    }

    /// Counts the profiles of `view` and, of those, the ones [`Self::add`]
    /// would keep, reading only the IDs. A replica whose every profile is
    /// already in needs neither its samples nor its symbols read.
    pub(crate) fn count_new(&self, view: &BlockView) -> Result<(u64, u64)> {
        struct Count<'a>(&'a FxHashSet<ProfileId>, u64, u64);
        impl ProfileVisitor for Count<'_> {
            fn visit(
                &mut self,
                id: ProfileId,
                _: u32,
                _: i64,
                _: i64,
                _: Option<(&[u32], &[i64])>,
            ) {
                self.1 += 1;
                self.2 += u64::from(id == 0 || !self.0.contains(&id));
            }
        }
        let mut count = Count(&self.seen, 0, 0);
        let selected = vec![true; view.block.series.len()];
        view.scan(&selected, i64::MIN, i64::MAX, false, &mut count)?;
        Ok((count.1, count.2))
    }

    /// Records a source of which every profile is already in.
    pub(crate) fn skip(&mut self, profiles: u64) {
        self.profiles_in += profiles;
        self.duplicates += profiles;
    }

    /// Adds every profile of `view` whose ID is not already in, re-mapping
    /// its series and stack traces. CPU-bound: call it off the async runtime.
    pub(crate) fn add(&mut self, view: &BlockView) -> Result<()> {
        let block = &view.block;
        let ulid = block.meta.ulid;
        // Where each source series and partition goes.
        let mut series_map = Vec::with_capacity(block.series.len());
        let mut partition_map: Vec<Option<u32>> = vec![None; block.meta.partitions.len()];
        for s in &block.series {
            let name = block
                .meta
                .partitions
                .get(s.partition as usize)
                .ok_or_else(|| {
                    corrupt(
                        ulid,
                        format!("a series refers to missing partition {}", s.partition),
                    )
                })?;
            let dst = match self.partition_index.get(name) {
                Some(&p) => p,
                None => {
                    let p = self.partitions.len() as u32;
                    self.partitions.push((name.clone(), SymbolsBuilder::new()));
                    self.partition_index.insert(name.clone(), p);
                    p
                }
            };
            partition_map[s.partition as usize] = Some(dst);
            let series = match self.series_index.get(&s.labels) {
                Some(&i) => i,
                None => {
                    let i = self.series.len() as u32;
                    self.series.push(SeriesEntry {
                        labels: s.labels.clone(),
                        partition: dst,
                    });
                    self.series_index.insert(s.labels.clone(), i);
                    i
                }
            };
            series_map.push((series, s.partition));
        }
        let mut sources = Vec::with_capacity(partition_map.len());
        for (p, dst) in partition_map.iter().enumerate() {
            sources.push(match dst {
                Some(dst) => {
                    let symbols = view.symbols(p as u32).ok_or_else(|| {
                        corrupt(ulid, format!("symbols of partition {p} are missing"))
                    })?;
                    Some((*dst, symbols))
                }
                None => None,
            });
        }

        let mut visitor = Copier {
            ulid,
            series_map: &series_map,
            sources: &sources,
            remaps: (0..sources.len()).map(|_| None).collect(),
            merger: self,
            pairs: Vec::new(),
            rows: FxHashMap::default(),
            error: None,
        };
        let selected = vec![true; block.series.len()];
        view.scan(&selected, i64::MIN, i64::MAX, true, &mut visitor)?;
        // Then the samples taken inside spans, into the rows just copied.
        view.scan_spans(&selected, i64::MIN, i64::MAX, &mut visitor)?;
        if let Some(e) = visitor.error {
            return Err(e);
        }
        for row in self.pending.drain(..) {
            self.rows.push(&row);
        }
        for (id, a) in view.annotations() {
            self.annotations.entry(*id).or_insert_with(|| a.clone());
        }
        Ok(())
    }

    /// Returns the merged block: series sorted by labels, profiles by
    /// `(series, time)` (then ID, so the order is deterministic).
    pub(crate) fn finish(self, ulid: Ulid, source: String, compaction: Compaction) -> Merged {
        let mut order: Vec<u32> = (0..self.series.len() as u32).collect();
        order.sort_by(|&a, &b| {
            self.series[a as usize]
                .labels
                .cmp(&self.series[b as usize].labels)
        });
        let mut remap = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let mut series: Vec<Option<SeriesEntry>> = self.series.into_iter().map(Some).collect();
        let series = order
            .iter()
            .map(|&i| series[i as usize].take().expect("each series once"))
            .collect();
        let rows = self.rows;
        let mut order: Vec<u32> = (0..rows.len() as u32).collect();
        order.sort_unstable_by_key(|&i| {
            let (series, time, id) = rows.key(i as usize);
            (remap[series as usize], time, id)
        });
        Merged {
            ulid,
            source,
            compaction,
            series,
            partitions: self
                .partitions
                .into_iter()
                .map(|(name, b)| (name, b.into_symbols()))
                .collect(),
            annotations: self.annotations,
            rows,
            order,
            remap,
        }
    }
}

/// A merged block ready to write: its rows packed, in merge order, with the
/// order to write them in.
#[derive(Debug)]
pub(crate) struct Merged {
    ulid: Ulid,
    source: String,
    compaction: Compaction,
    series: Vec<SeriesEntry>,
    partitions: Vec<(String, Symbols)>,
    annotations: Annotations,
    rows: PackedRows,
    /// Row numbers sorted by `(series, time, ID)`.
    order: Vec<u32>,
    /// The block's series of each merger series.
    remap: Vec<u32>,
}

impl Merged {
    /// Returns what the block holds besides its rows.
    pub(crate) fn parts(&self) -> BlockParts<'_> {
        BlockParts {
            ulid: self.ulid,
            source: self.source.clone(),
            compaction: self.compaction.clone(),
            resolution_nanos: 0,
            series: &self.series,
            partitions: self
                .partitions
                .iter()
                .map(|(name, s)| (name.as_str(), s))
                .collect(),
            annotations: &self.annotations,
        }
    }

    /// Returns the rows in block order, each decoded when reached.
    pub(crate) fn profiles(&self) -> impl Iterator<Item = ProfileRow> + '_ {
        self.order.iter().map(|&i| {
            let row = self.rows.get(i as usize);
            ProfileRow {
                series: self.remap[row.series as usize],
                ..row
            }
        })
    }
}

/// Copies the profiles of one source into the merger.
struct Copier<'a> {
    ulid: Ulid,
    /// Per source series: its series in the merger and its source partition.
    series_map: &'a [(u32, u32)],
    /// Per source partition: its partition in the merger and its symbols.
    sources: &'a [Option<(u32, &'a Symbols)>],
    /// Per source partition, created on first use.
    remaps: Vec<Option<Remap<'a>>>,
    merger: &'a mut Merger,
    pairs: Vec<(u32, i64)>,
    /// The merger's row of each profile copied from this source, by ID.
    rows: FxHashMap<ProfileId, usize>,
    error: Option<Error>,
}

impl ProfileVisitor for Copier<'_> {
    fn visit(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        samples: Option<(&[u32], &[i64])>,
    ) {
        if self.error.is_some() {
            return;
        }
        let m = &mut *self.merger;
        m.profiles_in += 1;
        // Replicas share an ID; 0 is "no ID" and always kept.
        if id != 0 && !m.seen.insert(id) {
            m.duplicates += 1;
            return;
        }
        let (ids, values) = samples.unwrap_or_default();
        let (dst_series, src_partition) = self.series_map[series as usize];
        let Some((dst_partition, symbols)) = self.sources[src_partition as usize] else {
            unreachable!("every partition of a series is mapped")
        };
        if ids.iter().any(|&n| n as usize >= symbols.stacks.len()) {
            self.error = Some(corrupt(
                self.ulid,
                format!(
                    "a profile refers to a stack trace beyond partition {src_partition}'s tree"
                ),
            ));
            return;
        }
        let remap = self.remaps[src_partition as usize].get_or_insert_with(|| Remap::new(symbols));
        let builder = &mut m.partitions[dst_partition as usize].1;
        self.pairs.clear();
        self.pairs.extend(
            ids.iter()
                .zip(values)
                .map(|(&n, &v)| (remap.stack(builder, n), v)),
        );
        // New IDs come in another order; distinct source stacks are distinct
        // here too, but sum any that meet rather than rely on it.
        self.pairs.sort_unstable_by_key(|p| p.0);
        let mut row = ProfileRow {
            id,
            series: dst_series,
            time_nanos,
            total,
            stacktrace_ids: Vec::with_capacity(self.pairs.len()),
            values: Vec::with_capacity(self.pairs.len()),
            ..Default::default()
        };
        for &(n, v) in &self.pairs {
            if row.stacktrace_ids.last() == Some(&n) {
                *row.values.last_mut().expect("paired") += v;
            } else {
                row.stacktrace_ids.push(n);
                row.values.push(v);
            }
        }
        if id != 0 {
            self.rows.insert(id, m.pending.len());
        }
        m.pending.push(row);
    }

    fn visit_spans(
        &mut self,
        id: ProfileId,
        series: u32,
        _time_nanos: i64,
        _total: i64,
        spans: SpanSamples<'_>,
    ) {
        // Only rows this source contributed (not replicas already merged).
        let Some(&row) = self.rows.get(&id) else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        let (_, src_partition) = self.series_map[series as usize];
        let Some((dst_partition, symbols)) = self.sources[src_partition as usize] else {
            unreachable!("every partition of a series is mapped")
        };
        if spans
            .stacktrace_ids
            .iter()
            .any(|&n| n as usize >= symbols.stacks.len())
        {
            self.error = Some(corrupt(
                self.ulid,
                format!(
                    "a span sample refers to a stack trace beyond partition {src_partition}'s tree"
                ),
            ));
            return;
        }
        let m = &mut *self.merger;
        let remap = self.remaps[src_partition as usize].get_or_insert_with(|| Remap::new(symbols));
        let builder = &mut m.partitions[dst_partition as usize].1;
        let mut triples: Vec<(u64, u32, i64)> = spans
            .spans
            .iter()
            .zip(spans.stacktrace_ids)
            .zip(spans.values)
            .map(|((&span, &n), &v)| (span, remap.stack(builder, n), v))
            .collect();
        triples.sort_unstable_by_key(|t| (t.0, t.1));
        let row = &mut m.pending[row];
        for (span, stack, v) in triples {
            let last = row.span_ids.last().zip(row.span_stacktrace_ids.last());
            if last == Some((&span, &stack)) {
                *row.span_values.last_mut().expect("paired") += v;
            } else {
                row.span_ids.push(span);
                row.span_stacktrace_ids.push(stack);
                row.span_values.push(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ember_block::{Block, MemBlock, encode_block, upload_block};
    use ember_model::{Label, ProfileType, ingest::SeriesSpec, labels::PROFILE_TYPE};
    use ember_testkit::pprof::PprofBuilder;
    use object_store::{ObjectStore, memory::InMemory};

    use super::*;

    const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

    /// A block of one profile with span samples, as one replica wrote it.
    async fn replica(store: &Arc<dyn ObjectStore>) -> BlockView {
        let mut head = MemBlock::default();
        let series = SeriesSpec {
            labels: Labels::new(vec![
                Label::new(PROFILE_TYPE, CPU),
                Label::new("service_name", "svc"),
            ]),
            profile_type: CPU.parse::<ProfileType>().unwrap(),
            sample_type: 0,
            samples: None,
        };
        let profile = PprofBuilder::new(&[("cpu", "nanoseconds")])
            .sample(&["main", "idle"], &[1])
            .sample_with_labels(&["main", "work"], &[5], &[("span_id", "00000000000000aa")])
            .build();
        head.append(&profile.into(), &[series], 1_000, 42);
        let encoded = encode_block(&head.to_block_data("test".into())).unwrap();
        upload_block(store, "t", &encoded).await.unwrap();
        let block = Arc::new(Block::open(store.clone(), "t", head.ulid()).await.unwrap());
        block.view(true).await.unwrap()
    }

    #[tokio::test]
    async fn span_samples_survive_a_merge_of_replicas_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut merger = Merger::default();
        for _ in 0..2 {
            merger.add(&replica(&store).await).unwrap();
        }
        let data = merger.finish(
            Ulid::new(),
            "c".into(),
            Compaction {
                level: 2,
                sources: Vec::new(),
            },
        );
        let rows: Vec<ProfileRow> = data.profiles().collect();
        assert_eq!(rows.len(), 1, "replicas merge into one profile");
        let row = &rows[0];
        assert_eq!(row.span_ids, [0xaa]);
        assert_eq!(row.span_values, [5]);
        // The span's stack is the merged partition's `main;work`.
        let symbols = &data.partitions[0].1;
        let node = row.span_stacktrace_ids[0] as usize;
        let location = &symbols.locations[symbols.stacks.locations[node] as usize];
        assert_eq!(symbols.function_name(location.lines[0].function), "work");
    }
}
