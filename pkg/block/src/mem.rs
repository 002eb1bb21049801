//! [`MemBlock`]: a block still in memory, growing as profiles arrive.
//!
//! An ingester's head is one (behind a lock, with what the ingester tracks
//! around it); a querier turns the merged answers of remote ingesters into one,
//! and tests build blocks with it. Its contents are the block's: series,
//! profile rows and one symbol partition per service, written out by
//! [`MemBlock::to_block_data`].
//!
//! Samples are packed ([`packed`]): a row's pairs are a few bytes each in
//! shared chunks, decoded when the row is scanned or written out.

mod packed;

use std::collections::HashMap;
use std::sync::Arc;

use ember_model::{
    Labels, ProfileId,
    ingest::{Annotation, SeriesSpec},
    pprof::FlatProfile,
    series_profile_id,
};
use ember_symdb::{Symbols, SymbolsBuilder, table_bytes};
use object_store::ObjectStore;
use ulid::Ulid;

use crate::{
    Annotations, BlockData, BlockMeta, BlockParts, Compaction, ProfileRow, ProfileVisitor, Result,
    SeriesEntry, SpanSamples, write_block,
};
use packed::Chunks;

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
fn sample_spans(profile: &FlatProfile) -> Option<Vec<Option<u64>>> {
    if !profile.samples.has_labels() {
        return None;
    }
    let strings = &profile.strings;
    let key = strings.iter().position(|s| s == SPAN_ID_LABEL)? as i64;
    let mut any = false;
    let spans = profile
        .samples
        .iter()
        .map(|sample| {
            let label = sample.labels.iter().find(|l| l.key == key && l.str != 0)?;
            let span = parse_span_id(strings.get(label.str as usize)?);
            any |= span.is_some();
            span
        })
        .collect();
    any.then_some(spans)
}

/// Sorts `keys`, each `stack << 32 | index` with the indices ascending, as
/// `sort_unstable` would: by stack, then index. A large profile's keys are
/// sorted by a stable counting sort on 11-bit digits of the stack, at most
/// three passes, linear where a comparison sort is `n log n`; the digits
/// above the largest stack's are skipped.
fn sort_by_stack(keys: &mut Vec<u64>, scratch: &mut Vec<u64>) {
    const DIGIT: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT;
    if keys.len() < 4 * BUCKETS {
        keys.sort_unstable();
        return;
    }
    let max_stack = keys.iter().map(|k| k >> 32).max().unwrap_or(0);
    let mut shift = 32;
    while shift < 64 && max_stack >> (shift - 32) != 0 {
        let digit = |k: u64| ((k >> shift) as usize) & (BUCKETS - 1);
        let mut starts = [0usize; BUCKETS];
        keys.iter().for_each(|&k| starts[digit(k)] += 1);
        let mut sum = 0;
        for start in &mut starts {
            (*start, sum) = (sum, sum + *start);
        }
        scratch.clear();
        scratch.resize(keys.len(), 0);
        for &k in keys.iter() {
            let at = &mut starts[digit(k)];
            scratch[*at] = k;
            *at += 1;
        }
        std::mem::swap(keys, scratch);
        shift += DIGIT;
    }
}

/// One profile row in memory: what [`ProfileRow`] holds, its samples packed.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// The profile ID as two halves, so the row is 8-byte aligned.
    id: [u64; 2],
    time_nanos: i64,
    total: i64,
    series: u32,
    /// Number of `(stack, value)` pairs, and of span triples.
    samples: u32,
    spans: u32,
    /// The packed pairs, then the packed triples.
    data: packed::Span,
    span_bytes: u32,
}

impl Row {
    fn id(&self) -> ProfileId {
        (self.id[0] as u128) << 64 | self.id[1] as u128
    }

    /// Returns the packed pairs and the packed triples of the row.
    fn bytes<'a>(&self, chunks: &'a Chunks) -> (&'a [u8], &'a [u8]) {
        let bytes = chunks.get(self.data);
        bytes.split_at(bytes.len() - self.span_bytes as usize)
    }

    fn decode(&self, chunks: &Chunks) -> ProfileRow {
        let mut row = ProfileRow {
            id: self.id(),
            series: self.series,
            time_nanos: self.time_nanos,
            total: self.total,
            ..Default::default()
        };
        let (samples, spans) = self.bytes(chunks);
        packed::decode_samples(
            samples,
            self.samples as usize,
            &mut row.stacktrace_ids,
            &mut row.values,
        );
        if self.spans > 0 {
            packed::decode_spans(
                spans,
                self.spans as usize,
                &mut row.span_ids,
                &mut row.span_stacktrace_ids,
                &mut row.span_values,
            );
        }
        row
    }
}

/// Profile rows packed as a head packs its own ([`packed`]): a few bytes a
/// sample in shared chunks instead of two vectors a row, each decoded when
/// read. The compactor holds a group's merged rows so.
#[derive(Debug, Default)]
pub struct PackedRows {
    rows: Vec<Row>,
    chunks: Chunks,
    encoder: packed::RowEncoder,
}

impl PackedRows {
    /// Stores `p`, whose pairs are sorted by stack and unique (as
    /// [`ProfileRow`] says), as row number [`Self::len`].
    pub fn push(&mut self, p: &ProfileRow) {
        let e = &mut self.encoder;
        e.clear();
        for (&stack, &value) in p.stacktrace_ids.iter().zip(&p.values) {
            e.push(stack, value);
        }
        e.flush();
        let sample_bytes = e.bytes.len();
        e.triples.extend(
            p.span_ids
                .iter()
                .zip(&p.span_stacktrace_ids)
                .zip(&p.span_values)
                .map(|((&span, &stack), &value)| (span, stack, value)),
        );
        packed::encode_spans(&mut e.bytes, &e.triples);
        self.rows.push(Row {
            id: [(p.id >> 64) as u64, p.id as u64],
            time_nanos: p.time_nanos,
            total: p.total,
            series: p.series,
            samples: e.samples,
            spans: e.triples.len() as u32,
            data: self.chunks.push(&e.bytes),
            span_bytes: (e.bytes.len() - sample_bytes) as u32,
        });
    }

    /// Returns the number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Returns whether no row is stored.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Returns the series, time and ID of row `i`, without decoding it.
    pub fn key(&self, i: usize) -> (u32, i64, ProfileId) {
        let r = &self.rows[i];
        (r.series, r.time_nanos, r.id())
    }

    /// Returns row `i`, decoded.
    pub fn get(&self, i: usize) -> ProfileRow {
        self.rows[i].decode(&self.chunks)
    }
}

/// Reused buffers of a scan: one row's samples, decoded.
#[derive(Debug, Default)]
struct Decoded {
    stacks: Vec<u32>,
    values: Vec<i64>,
    spans: Vec<u64>,
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
    rows: Vec<Row>,
    chunks: Chunks,
    samples: u64,
    time_range: Option<(i64, i64)>,
    /// Heap bytes of the label and service-name strings (each held twice:
    /// in the list and in its index).
    owned_bytes: usize,
    /// Reused buffers of an append: the samples as `stack << 32 | index`
    /// in stack order (and room to sort them), a sample mask, one encoder
    /// per series.
    order: Vec<u64>,
    sort_scratch: Vec<u64>,
    member: Vec<bool>,
    encoders: Vec<packed::RowEncoder>,
    annotations: Annotations,
    /// Heap bytes of `annotations`.
    annotation_bytes: usize,
}

impl Default for MemBlock {
    fn default() -> Self {
        Self::new(Ulid::new())
    }
}

fn labels_bytes(labels: &Labels) -> usize {
    labels.len() * size_of::<ember_model::Label>()
        + labels
            .iter()
            .map(|l| l.name.capacity() + l.value.capacity())
            .sum::<usize>()
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
            rows: Vec::new(),
            chunks: Chunks::default(),
            samples: 0,
            time_range: None,
            owned_bytes: 0,
            order: Vec::new(),
            sort_scratch: Vec::new(),
            member: Vec::new(),
            encoders: Vec::new(),
            annotations: Annotations::new(),
            annotation_bytes: 0,
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

    /// Returns the number of profile rows.
    pub fn profile_count(&self) -> usize {
        self.rows.len()
    }

    /// Returns the number of `(stack, value)` pairs over all profile rows.
    pub fn sample_count(&self) -> u64 {
        self.samples
    }

    /// Returns the `i`-th profile row (in arrival order), decoded.
    pub fn profile(&self, i: usize) -> Option<ProfileRow> {
        self.rows.get(i).map(|r| self.decode(r))
    }

    /// Returns the profile rows in arrival order, each decoded.
    pub fn profiles(&self) -> impl Iterator<Item = ProfileRow> + '_ {
        self.rows.iter().map(|r| self.decode(r))
    }

    fn decode(&self, r: &Row) -> ProfileRow {
        r.decode(&self.chunks)
    }

    /// Returns the packed pairs and the packed triples of a row.
    fn row_bytes(&self, r: &Row) -> (&[u8], &[u8]) {
        r.bytes(&self.chunks)
    }

    /// Visits the profiles of selected series within `[start, end]`, in
    /// arrival order; `with_samples` decodes their samples.
    pub fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) {
        let mut d = Decoded::default();
        for r in &self.rows {
            if !(selected[r.series as usize] && r.time_nanos >= start && r.time_nanos <= end) {
                continue;
            }
            let samples = with_samples.then(|| {
                let bytes = self.row_bytes(r).0;
                packed::decode_samples(bytes, r.samples as usize, &mut d.stacks, &mut d.values);
                (&d.stacks[..], &d.values[..])
            });
            visitor.visit(r.id(), r.series, r.time_nanos, r.total, samples);
        }
    }

    /// Visits the span samples of the profiles of selected series within
    /// `[start, end]` that have any ([`ProfileVisitor::visit_spans`]).
    pub fn scan_spans(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        visitor: &mut dyn ProfileVisitor,
    ) {
        let mut d = Decoded::default();
        for r in &self.rows {
            if r.spans == 0
                || !selected[r.series as usize]
                || r.time_nanos < start
                || r.time_nanos > end
            {
                continue;
            }
            let bytes = self.row_bytes(r).1;
            packed::decode_spans(
                bytes,
                r.spans as usize,
                &mut d.spans,
                &mut d.stacks,
                &mut d.values,
            );
            let spans = SpanSamples {
                spans: &d.spans,
                stacktrace_ids: &d.stacks,
                values: &d.values,
            };
            visitor.visit_spans(r.id(), r.series, r.time_nanos, r.total, spans);
        }
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

    /// Returns the bytes the block holds on the heap: the capacities of its
    /// vectors, tables and sample chunks, its strings, and its symbols'
    /// (see [`SymbolsBuilder::heap_bytes`]). What is allocated, not what is
    /// used: a vector's spare capacity counts. Costs a step per partition
    /// and per chunk, none per profile. The sum of [`Self::heap_parts`].
    pub fn heap_bytes(&self) -> usize {
        self.heap_parts().iter().map(|p| p.1).sum()
    }

    /// Returns [`Self::heap_bytes`] per structure: the packed samples, the
    /// profile rows, the series (labels and index), the buffers an append
    /// reuses, then the symbols of all partitions per structure
    /// ([`SymbolsBuilder::heap_parts`]).
    pub fn heap_parts(&self) -> Vec<(&'static str, usize)> {
        let d = self;
        let mut parts = vec![
            ("packed samples", d.chunks.heap_bytes()),
            ("profile rows", d.rows.capacity() * size_of::<Row>()),
            ("annotations", d.annotation_bytes),
            (
                "series and partitions",
                d.owned_bytes
                    + table_bytes(d.series_index.capacity(), size_of::<(Labels, u32)>())
                    + d.series.capacity() * size_of::<SeriesEntry>()
                    + table_bytes(d.partition_index.capacity(), size_of::<(String, u32)>())
                    + d.partitions.capacity() * size_of::<(String, SymbolsBuilder)>(),
            ),
            (
                "append buffers",
                (d.order.capacity() + d.sort_scratch.capacity()) * size_of::<u64>()
                    + d.member.capacity()
                    + d.encoders.capacity() * size_of::<packed::RowEncoder>()
                    + d.encoders
                        .iter()
                        .map(packed::RowEncoder::heap_bytes)
                        .sum::<usize>(),
            ),
        ];
        for (_, symbols) in &d.partitions {
            for (i, (name, bytes)) in symbols.heap_parts().into_iter().enumerate() {
                match parts.get_mut(4 + i) {
                    Some(part) => part.1 += bytes,
                    None => parts.push((name, bytes)),
                }
            }
        }
        parts
    }

    /// Returns whether the block is empty and its heap bytes ([`Self::heap_bytes`]).
    pub fn size(&self) -> (bool, usize) {
        (self.rows.is_empty(), self.heap_bytes())
    }

    /// Returns the partition of `service`, creating it if new.
    fn partition(&mut self, service: &str) -> u32 {
        if let Some(&p) = self.partition_index.get(service) {
            return p;
        }
        let p = self.partitions.len() as u32;
        self.owned_bytes += 2 * service.len();
        self.partitions
            .push((service.to_owned(), SymbolsBuilder::new()));
        self.partition_index.insert(service.to_owned(), p);
        p
    }

    /// Returns the reference of the series `labels`, creating it if new.
    fn series_ref(&mut self, labels: &Labels, partition: u32) -> u32 {
        if let Some(&s) = self.series_index.get(labels) {
            return s;
        }
        let s = self.series.len() as u32;
        self.owned_bytes += 2 * labels_bytes(labels);
        self.series.push(SeriesEntry {
            labels: labels.clone(),
            partition,
        });
        self.series_index.insert(labels.clone(), s);
        s
    }

    /// Symbolizes `profile` into the partition of its service and stores one
    /// profile row per series, the `i`-th with ID `series_profile_id(id, i)`.
    pub fn append(
        &mut self,
        profile: &FlatProfile,
        series: &[SeriesSpec],
        time_nanos: i64,
        id: ProfileId,
    ) {
        let samples = &profile.samples;
        let Some(first) = series.first() else { return };
        let partition = self.partition(first.labels.service_name());
        let stack_ids = self.partitions[partition as usize].1.add_profile(profile);
        let spans = sample_spans(profile);

        // The samples in stack-ID order, once for all series.
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(
            stack_ids
                .iter()
                .enumerate()
                .map(|(i, &stack)| (stack as u64) << 32 | i as u64),
        );
        sort_by_stack(&mut order, &mut self.sort_scratch);
        let mut encoders = std::mem::take(&mut self.encoders);
        if encoders.len() < series.len() {
            encoders.resize_with(series.len(), Default::default);
        }
        encoders.iter_mut().for_each(packed::RowEncoder::clear);
        let span_of = |i: usize| spans.as_ref().and_then(|s| s[i]);

        // The series of all samples (the usual case) in one pass, reading
        // each sample's values once.
        let whole: Vec<(usize, usize)> = series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.samples.is_none())
            .map(|(i, s)| (i, s.sample_type))
            .collect();
        if !whole.is_empty() {
            for &key in &order {
                let (stack, i) = ((key >> 32) as u32, key as u32 as usize);
                let values = samples.values(i);
                let span = span_of(i);
                for &(e, t) in &whole {
                    let v = values[t];
                    if v != 0 {
                        encoders[e].push(stack, v);
                        if let Some(span) = span {
                            encoders[e].triples.push((span, stack, v));
                        }
                    }
                }
            }
        }
        // The series of some samples (split by pprof labels), one by one.
        let mut member = std::mem::take(&mut self.member);
        for (e, spec) in series.iter().enumerate() {
            let Some(indices) = &spec.samples else {
                continue;
            };
            let encoder = &mut encoders[e];
            let t = spec.sample_type;
            let mut push = |stack: u32, i: usize| {
                let v = samples.values(i)[t];
                if v != 0 {
                    encoder.push(stack, v);
                    if let Some(span) = span_of(i) {
                        encoder.triples.push((span, stack, v));
                    }
                }
            };
            if indices.len() * 8 < order.len() {
                // A few samples of many: sort just those.
                let mut subset: Vec<u64> = indices
                    .iter()
                    .map(|&i| (stack_ids[i as usize] as u64) << 32 | i as u64)
                    .collect();
                subset.sort_unstable();
                subset
                    .iter()
                    .for_each(|&k| push((k >> 32) as u32, k as u32 as usize));
            } else {
                member.clear();
                member.resize(samples.len(), false);
                indices.iter().for_each(|&i| member[i as usize] = true);
                for &k in &order {
                    let i = k as u32 as usize;
                    if member[i] {
                        push((k >> 32) as u32, i);
                    }
                }
            }
        }

        for (i, spec) in series.iter().enumerate() {
            let encoder = &mut encoders[i];
            encoder.flush();
            if encoder.samples == 0 {
                continue;
            }
            let triples = &mut encoder.triples;
            triples.sort_unstable_by_key(|t| (t.0, t.1));
            triples.dedup_by(|next, kept| {
                let same = (next.0, next.1) == (kept.0, kept.1);
                if same {
                    kept.2 += next.2;
                }
                same
            });
            let sample_bytes = encoder.bytes.len();
            packed::encode_spans(&mut encoder.bytes, triples);
            let data = self.chunks.push(&encoder.bytes);
            let series = self.series_ref(&spec.labels, partition);
            let row_id = series_profile_id(id, i);
            self.rows.push(Row {
                id: [(row_id >> 64) as u64, row_id as u64],
                time_nanos,
                total: encoder.total,
                series,
                samples: encoder.samples,
                spans: triples.len() as u32,
                data,
                span_bytes: (encoder.bytes.len() - sample_bytes) as u32,
            });
            self.samples += encoder.samples as u64;
            self.time_range = Some(match self.time_range {
                Some((lo, hi)) => (lo.min(time_nanos), hi.max(time_nanos)),
                None => (time_nanos, time_nanos),
            });
        }
        self.order = order;
        self.member = member;
        self.encoders = encoders;
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
        // The shared list, and an entry (ID, pointer, length) per row.
        self.annotation_bytes += annotations
            .iter()
            .map(|a| a.key.len() + a.value.len() + 48)
            .sum::<usize>()
            + series * 48;
    }

    /// Returns the annotations of the profiles, by row ID.
    pub fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    /// Returns the series sorted by labels, and the rows' positions sorted by
    /// (new series, time), then arrival: the order a block is written in.
    fn block_order(&self) -> (Vec<SeriesEntry>, Vec<(u32, i64, u32)>) {
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
        let series = order
            .iter()
            .map(|&i| self.series[i as usize].clone())
            .collect();
        // An index rather than the rows: 16 bytes a row, while a decoded
        // row holds its samples.
        let mut rows: Vec<(u32, i64, u32)> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (remap[r.series as usize], r.time_nanos, i as u32))
            .collect();
        rows.sort_unstable();
        (series, rows)
    }

    /// Returns the rows in block order ([`Self::block_order`]), each
    /// decoded when reached, with its new series reference.
    fn rows_in<'a>(
        &'a self,
        order: &'a [(u32, i64, u32)],
    ) -> impl Iterator<Item = ProfileRow> + 'a {
        order.iter().map(|&(series, _, i)| ProfileRow {
            series,
            ..self.decode(&self.rows[i as usize])
        })
    }

    fn compaction(&self) -> Compaction {
        Compaction {
            level: 1,
            sources: vec![self.ulid],
        }
    }

    /// Returns the contents as a block to write: series sorted by labels,
    /// profiles by (series, time). Holds every row decoded: [`Self::write`]
    /// streams a block instead.
    pub fn to_block_data(&self, source: String) -> BlockData {
        let (series, order) = self.block_order();
        BlockData {
            ulid: self.ulid,
            source,
            compaction: self.compaction(),
            profiles: self.rows_in(&order).collect(),
            series,
            partitions: self
                .partitions
                .iter()
                .map(|(name, b)| (name.clone(), Arc::new(b.symbols().clone())))
                .collect(),
            annotations: self.annotations.clone(),
        }
    }

    /// Writes the contents to `store` as a level-1 block ([`write_block`]),
    /// decoding one row at a time. Blocking: call it from `spawn_blocking`.
    pub fn write(
        &self,
        store: &Arc<dyn ObjectStore>,
        tenant: &str,
        source: String,
    ) -> Result<BlockMeta> {
        let (series, order) = self.block_order();
        let parts = BlockParts {
            ulid: self.ulid,
            source,
            compaction: self.compaction(),
            resolution_nanos: 0,
            series: &series,
            partitions: self
                .partitions
                .iter()
                .map(|(name, b)| (name.as_str(), b.symbols()))
                .collect(),
            annotations: &self.annotations,
        };
        write_block(store, tenant, &parts, self.rows_in(&order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_model::{ingest, pprof};
    use ember_testkit::testdata;

    #[test]
    fn packed_rows_read_back_as_pushed() {
        let rows = [
            ProfileRow {
                id: u128::MAX - 3,
                series: 2,
                time_nanos: -5,
                total: 7,
                stacktrace_ids: vec![0, 1, 900, 70_000],
                values: vec![3, 0, -1, 5],
                span_ids: vec![1, 1, u64::MAX],
                span_stacktrace_ids: vec![1, 900, 0],
                span_values: vec![2, -1, 4],
            },
            ProfileRow::default(),
            ProfileRow {
                id: 9,
                series: 0,
                time_nanos: i64::MAX,
                total: i64::MIN,
                stacktrace_ids: vec![u32::MAX],
                values: vec![i64::MIN],
                ..Default::default()
            },
        ];
        let mut packed = PackedRows::default();
        rows.iter().for_each(|r| packed.push(r));
        assert_eq!(packed.len(), 3);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(&packed.get(i), row);
            assert_eq!(packed.key(i), (row.series, row.time_nanos, row.id));
        }
    }

    /// Every shared profile that decodes.
    fn shared_profiles() -> Vec<(String, FlatProfile)> {
        let limits = pprof::DecodeLimits {
            max_samples: 0,
            max_stack_depth: 0,
            ..Default::default()
        };
        testdata::decode_all(20, |raw| pprof::decode(raw, &limits))
    }

    /// The rows of one appended profile as the unpacked head built them:
    /// pairs collected in sample order, sorted and summed per stack.
    fn unpacked_rows(
        profile: &FlatProfile,
        series: &[SeriesSpec],
        stack_ids: &[u32],
        time_nanos: i64,
        id: ProfileId,
    ) -> Vec<(Labels, ProfileRow)> {
        let spans = sample_spans(profile);
        let mut rows = Vec::new();
        for (i, spec) in series.iter().enumerate() {
            let indices: Vec<usize> = match &spec.samples {
                Some(s) => s.iter().map(|&i| i as usize).collect(),
                None => (0..profile.samples.len()).collect(),
            };
            let mut pairs = Vec::new();
            let mut triples = Vec::new();
            for i in indices {
                let v = profile.samples.values(i)[spec.sample_type];
                if v != 0 {
                    pairs.push((stack_ids[i], v));
                    if let Some(span) = spans.as_ref().and_then(|s| s[i]) {
                        triples.push((span, stack_ids[i], v));
                    }
                }
            }
            if pairs.is_empty() {
                continue;
            }
            pairs.sort_by_key(|p| p.0);
            triples.sort_by_key(|t| (t.0, t.1));
            let mut row = ProfileRow {
                id: series_profile_id(id, i),
                time_nanos,
                ..Default::default()
            };
            for (stack, v) in pairs {
                if row.stacktrace_ids.last() == Some(&stack) {
                    *row.values.last_mut().unwrap() += v;
                } else {
                    row.stacktrace_ids.push(stack);
                    row.values.push(v);
                }
            }
            for (span, stack, v) in triples {
                if row.span_ids.last() == Some(&span)
                    && row.span_stacktrace_ids.last() == Some(&stack)
                {
                    *row.span_values.last_mut().unwrap() += v;
                } else {
                    row.span_ids.push(span);
                    row.span_stacktrace_ids.push(stack);
                    row.span_values.push(v);
                }
            }
            row.total = row.values.iter().sum();
            rows.push((spec.labels.clone(), row));
        }
        rows
    }

    #[test]
    fn packed_rows_are_the_unpacked_rows() {
        let mut block = MemBlock::default();
        let mut symbols: HashMap<String, SymbolsBuilder> = HashMap::new();
        let mut expected = Vec::new();
        // Twice over, so that the second pass hits known stacks.
        for pass in 0..2 {
            for (i, (name, profile)) in shared_profiles().iter().enumerate() {
                let service = format!("svc-{}", i % 5);
                let labels = ingest::labels_of(&[("service_name", &service), ("file", name)]);
                let series = ingest::series_for(profile, &labels);
                let time = 1_000 * pass + i as i64;
                let id = (pass * 100 + i as i64 + 1) as ProfileId;
                block.append(profile, &series, time, id);
                if series.is_empty() {
                    continue;
                }
                let stack_ids = symbols.entry(service).or_default().add_profile(profile);
                expected.extend(unpacked_rows(profile, &series, &stack_ids, time, id));
            }
        }
        assert!(block.sample_count() > 10_000);
        let data = block.to_block_data("test".into());
        let mut got: Vec<(Labels, ProfileRow)> = data
            .profiles
            .into_iter()
            .map(|r| (data.series[r.series as usize].labels.clone(), r))
            .collect();
        let key = |(l, r): &(Labels, ProfileRow)| (l.clone(), r.time_nanos, r.id);
        got.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(got.len(), expected.len());
        for ((gl, g), (el, e)) in got.iter().zip(&expected) {
            assert_eq!(gl, el);
            assert_eq!(
                g.series,
                data.series.iter().position(|s| &s.labels == gl).unwrap() as u32
            );
            let e = ProfileRow {
                series: g.series,
                ..e.clone()
            };
            assert_eq!(g, &e);
        }
        // The symbols are those of one builder per service.
        for (name, partition) in &data.partitions {
            assert!(
                **partition == *symbols[name].symbols(),
                "symbols of {name} differ"
            );
        }
    }

    #[test]
    fn stacks_sort_as_a_comparison_sort_sorts_them() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut scratch = Vec::new();
        for (n, stacks) in [
            (10, 5),
            (9_000, 3),
            (20_000, 1 << 20),
            (30_000, u32::MAX as u64),
        ] {
            let mut keys: Vec<u64> = (0..n).map(|i| (next() % stacks) << 32 | i).collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            sort_by_stack(&mut keys, &mut scratch);
            assert!(keys == expected, "{n} keys of {stacks} stacks");
        }
    }

    #[test]
    fn spans_and_sample_subsets_round_trip() {
        use ember_testkit::pprof::PprofBuilder;
        let mut b = PprofBuilder::new(&[("cpu", "nanoseconds")]);
        for i in 0..40i64 {
            let span = format!("{:x}", i % 3 + 1);
            let frames: &[&str] = if i % 2 == 0 {
                &["main", "a"]
            } else {
                &["main", "b"]
            };
            b = b.sample_with_labels(frames, &[i - 5], &[("span_id", &span)]);
        }
        let profile = FlatProfile::from(b.build());
        let labels = ingest::labels_of(&[("service_name", "svc")]);
        let all = ingest::series_for(&profile, &labels).remove(0);
        let series = [
            all.clone(),
            SeriesSpec {
                samples: Some(vec![3, 1, 2]),
                ..all.clone()
            },
            SeriesSpec {
                samples: Some((0..40).rev().filter(|i| i % 4 != 0).collect()),
                ..all
            },
        ];
        let mut block = MemBlock::default();
        block.append(&profile, &series, 7, 9);
        let mut symbols = SymbolsBuilder::new();
        let stack_ids = symbols.add_profile(&profile);
        let expected = unpacked_rows(&profile, &series, &stack_ids, 7, 9);
        let got: Vec<ProfileRow> = block.profiles().collect();
        assert_eq!(got.len(), 3);
        assert!(!got[0].span_ids.is_empty());
        for (g, (_, e)) in got.iter().zip(&expected) {
            assert_eq!(g, e);
        }
    }

    #[test]
    fn heap_bytes_grow_with_appends_and_stay_small_per_sample() {
        let mut block = MemBlock::default();
        assert_eq!(block.heap_bytes(), 0);
        let profiles = shared_profiles();
        let mut last = 0;
        for round in 0..20 {
            for (i, (_, profile)) in profiles.iter().enumerate() {
                let service = format!("svc-{}", i % 5);
                let labels = ingest::labels_of(&[("service_name", &service)]);
                let series = ingest::series_for(profile, &labels);
                block.append(profile, &series, round, 1);
            }
            let bytes = block.heap_bytes();
            assert!(bytes >= last, "{bytes} < {last}");
            last = bytes;
        }
        let per_sample = block.heap_bytes() as f64 / block.sample_count() as f64;
        // Copies of the same profiles: their symbols are shared, so the
        // packed samples dominate.
        assert!(per_sample < 15.0, "{per_sample:.1} bytes a sample");
    }
}
