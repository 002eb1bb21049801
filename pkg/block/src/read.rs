//! Opens blocks and scans their profiles, reading only the columns and row
//! groups a query needs.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt8Type, UInt32Type, UInt64Type};
use bytes::Bytes;
use ember_model::{Label, Labels, ProfileId};
use ember_symdb::{Function, Line, Location, Mapping, StackTree, Symbols};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::{
    arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder},
    file::statistics::Statistics,
};
use tokio::sync::OnceCell;
use ulid::Ulid;

use crate::{
    Annotations, Error, Result, SeriesEntry,
    annotations::{self, ANNOTATIONS_FILE},
    block_file, blocks_prefix,
    meta::{BlockMeta, FORMAT_VERSION},
    schema::*,
};

/// Receives the profiles of a scan, in `(series, time)` order.
pub trait ProfileVisitor {
    /// Called once per profile; `samples` holds the stack-trace IDs and
    /// values when the scan asked for them. `id` is 0 in format-1 blocks.
    fn visit(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        samples: Option<(&[u32], &[i64])>,
    );

    /// Called once per profile by a span scan ([`BlockView::scan_spans`])
    /// with the samples the profile took inside spans. Ignored by default.
    fn visit_spans(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        spans: SpanSamples<'_>,
    ) {
        let _ = (id, series, time_nanos, total, spans);
    }
}

/// The samples of one profile taken inside spans: equal-length columns,
/// sorted by `(span, stack)`.
#[derive(Debug, Clone, Copy)]
pub struct SpanSamples<'a> {
    pub spans: &'a [u64],
    pub stacktrace_ids: &'a [u32],
    pub values: &'a [i64],
}

/// Which columns a scan reads besides series, time, total and ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Totals,
    Samples,
    Spans,
}

/// An opened block: its metadata and series are in memory; profiles are read
/// per query; symbols are loaded on first use and kept.
#[derive(Debug)]
pub struct Block {
    pub meta: BlockMeta,
    pub series: Vec<SeriesEntry>,
    tenant: String,
    store: Arc<dyn ObjectStore>,
    symbols: OnceCell<Arc<Vec<Arc<Symbols>>>>,
    annotations: OnceCell<Arc<Annotations>>,
}

/// Returns the ULIDs of the complete blocks of `tenant`.
pub async fn list_blocks(store: &Arc<dyn ObjectStore>, tenant: &str) -> Result<Vec<Ulid>> {
    let prefix = blocks_prefix(tenant);
    let listing = store.list_with_delimiter(Some(&prefix)).await?;
    let mut ulids: Vec<Ulid> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().and_then(|name| Ulid::from_string(name).ok()))
        .collect();
    ulids.sort();
    Ok(ulids)
}

fn corrupt(ulid: Ulid, message: impl Into<String>) -> Error {
    Error::Corrupt {
        block: ulid.to_string(),
        message: message.into(),
    }
}

impl Block {
    /// Opens block `ulid`: reads `meta.json` and the series table.
    pub async fn open(store: Arc<dyn ObjectStore>, tenant: &str, ulid: Ulid) -> Result<Self> {
        let meta_bytes = store
            .get(&block_file(tenant, ulid, META_FILE))
            .await?
            .bytes()
            .await?;
        let meta: BlockMeta = serde_json::from_slice(&meta_bytes)?;
        if meta.version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                block: ulid.to_string(),
                version: meta.version,
                supported: FORMAT_VERSION,
            });
        }
        let series_bytes = store
            .get(&block_file(tenant, ulid, SERIES_FILE))
            .await?
            .bytes()
            .await?;
        let series =
            tokio::task::spawn_blocking(move || decode_series(ulid, series_bytes)).await??;
        Ok(Self {
            meta,
            series,
            tenant: tenant.to_owned(),
            store,
            symbols: OnceCell::new(),
            annotations: OnceCell::new(),
        })
    }

    async fn file(&self, name: &str) -> Result<Bytes> {
        Ok(self
            .store
            .get(&block_file(&self.tenant, self.meta.ulid, name))
            .await?
            .bytes()
            .await?)
    }

    /// Returns the annotations of the block's profiles, loading them on first
    /// use; a block without any has no file and costs no request.
    pub async fn annotations(&self) -> Result<Arc<Annotations>> {
        self.annotations
            .get_or_try_init(|| async {
                if self.meta.stats.annotations == 0 {
                    return Ok(Arc::default());
                }
                let bytes = self.file(ANNOTATIONS_FILE).await?;
                Ok(Arc::new(annotations::decode(self.meta.ulid, bytes)?))
            })
            .await
            .cloned()
    }

    /// Returns the symbols of every partition, loading them on first use.
    pub async fn symbols(&self) -> Result<Arc<Vec<Arc<Symbols>>>> {
        self.symbols
            .get_or_try_init(|| async {
                let files = futures::future::try_join_all(
                    [
                        STRINGS_FILE,
                        MAPPINGS_FILE,
                        FUNCTIONS_FILE,
                        LOCATIONS_FILE,
                        STACKTRACES_FILE,
                    ]
                    .map(|f| self.file(f)),
                )
                .await?;
                let ulid = self.meta.ulid;
                let partitions = self.meta.partitions.len();
                let symbols =
                    tokio::task::spawn_blocking(move || decode_symbols(ulid, partitions, files))
                        .await??;
                Ok(Arc::new(symbols.into_iter().map(Arc::new).collect()))
            })
            .await
            .cloned()
    }

    /// Fetches what a query needs (the profiles file and, with `with_symbols`,
    /// the symbols) so that the query itself runs synchronously off the runtime.
    pub async fn view(self: &Arc<Self>, with_symbols: bool) -> Result<BlockView> {
        let profiles = self.file(PROFILES_FILE).await?;
        let symbols = if with_symbols {
            Some(self.symbols().await?)
        } else {
            None
        };
        Ok(BlockView {
            block: self.clone(),
            profiles,
            symbols,
            annotations: self.annotations().await?,
        })
    }
}

/// A block prefetched for one query.
#[derive(Debug, Clone)]
pub struct BlockView {
    pub block: Arc<Block>,
    profiles: Bytes,
    symbols: Option<Arc<Vec<Arc<Symbols>>>>,
    annotations: Arc<Annotations>,
}

impl BlockView {
    /// Returns how many bytes of the profiles file this view fetched.
    pub fn fetched_bytes(&self) -> usize {
        self.profiles.len()
    }

    /// Returns the view with the symbols loaded, e.g. once a scan without
    /// samples has shown that they are needed.
    pub async fn with_symbols(mut self) -> Result<Self> {
        if self.symbols.is_none() {
            self.symbols = Some(self.block.symbols().await?);
        }
        Ok(self)
    }

    /// Returns the annotations of the block's profiles.
    pub fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    /// Returns the symbols of `partition`, when the view was made with them.
    pub fn symbols(&self, partition: u32) -> Option<&Symbols> {
        self.symbols
            .as_ref()?
            .get(partition as usize)
            .map(|s| s.as_ref())
    }

    /// Scans the profiles of the selected series (`selected[series]`) with
    /// `start <= time <= end` (nanoseconds), skipping row groups whose
    /// statistics rule them out. CPU-bound: call it off the async runtime.
    pub fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        if !self.block.meta.overlaps(start, end) || !selected.iter().any(|s| *s) {
            return Ok(());
        }
        let read = if with_samples {
            Read::Samples
        } else {
            Read::Totals
        };
        scan(
            self.block.meta.ulid,
            self.profiles.clone(),
            selected,
            start,
            end,
            read,
            visitor,
        )
    }

    /// Scans like [`BlockView::scan`] but reads the samples taken inside
    /// spans, calling [`ProfileVisitor::visit_spans`]; blocks older than
    /// format 3 have none, and nothing is visited.
    pub fn scan_spans(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        if self.block.meta.version < 3
            || !self.block.meta.overlaps(start, end)
            || !selected.iter().any(|s| *s)
        {
            return Ok(());
        }
        scan(
            self.block.meta.ulid,
            self.profiles.clone(),
            selected,
            start,
            end,
            Read::Spans,
            visitor,
        )
    }
}

fn stats_range_u32(s: Option<&Statistics>) -> Option<(u32, u32)> {
    match s? {
        Statistics::Int32(s) => Some((*s.min_opt()? as u32, *s.max_opt()? as u32)),
        _ => None,
    }
}

fn stats_range_i64(s: Option<&Statistics>) -> Option<(i64, i64)> {
    match s? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

fn scan(
    ulid: Ulid,
    bytes: Bytes,
    selected: &[bool],
    start: i64,
    end: i64,
    read: Read,
    visitor: &mut dyn ProfileVisitor,
) -> Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let metadata = builder.metadata().clone();
    let row_groups: Vec<usize> = (0..metadata.num_row_groups())
        .filter(|&i| {
            let rg = metadata.row_group(i);
            let series_ok = stats_range_u32(rg.column(0).statistics()).is_none_or(|(lo, hi)| {
                selected
                    .get(lo as usize..=(hi as usize).min(selected.len().saturating_sub(1)))
                    .is_some_and(|s| s.iter().any(|x| *x))
            });
            let time_ok = stats_range_i64(rg.column(1).statistics())
                .is_none_or(|(lo, hi)| lo <= end && hi >= start);
            series_ok && time_ok
        })
        .collect();
    if row_groups.is_empty() {
        return Ok(());
    }
    let parquet_schema = builder.parquet_schema();
    let mut roots = vec![profiles::SERIES, profiles::TIME, profiles::TOTAL];
    let columns = parquet_schema.root_schema().get_fields().len();
    match read {
        Read::Totals => {}
        Read::Samples => roots.extend([profiles::STACKTRACE_IDS, profiles::VALUES]),
        Read::Spans if columns > profiles::SPAN_VALUES => roots.extend([
            profiles::SPAN_IDS,
            profiles::SPAN_STACKTRACE_IDS,
            profiles::SPAN_VALUES,
        ]),
        Read::Spans => {
            return Err(corrupt(
                ulid,
                "profiles.parquet has no span columns (written before format 3)",
            ));
        }
    }
    let has_ids = columns > profiles::ID;
    if has_ids {
        roots.push(profiles::ID);
    }
    let projection = ProjectionMask::roots(parquet_schema, roots);
    let batch_size = match read {
        Read::Samples => batch_rows(&metadata, &row_groups, profiles::VALUES),
        Read::Spans => batch_rows(&metadata, &row_groups, profiles::SPAN_VALUES),
        Read::Totals => BATCH_ROWS_WITHOUT_SAMPLES,
    };
    let reader = builder
        .with_projection(projection)
        .with_row_groups(row_groups)
        .with_batch_size(batch_size)
        .build()?;
    for batch in reader {
        let batch = batch?;
        visit_batch(ulid, &batch, selected, start, end, read, visitor)?;
    }
    Ok(())
}

/// Samples decoded per batch: profiles hold from a handful to thousands of
/// samples, so batches are sized by samples, not rows, to keep each batch's
/// buffers in cache instead of faulting in fresh pages.
const BATCH_SAMPLES: usize = 64 * 1024;
const BATCH_ROWS_WITHOUT_SAMPLES: usize = 8 * 1024;

/// Returns the rows per batch that hold about [`BATCH_SAMPLES`] samples in
/// the densest of the selected row groups.
fn batch_rows(
    metadata: &parquet::file::metadata::ParquetMetaData,
    row_groups: &[usize],
    column: usize,
) -> usize {
    let densest = row_groups
        .iter()
        .map(|&i| {
            let rg = metadata.row_group(i);
            let samples = rg.column(column).num_values().max(0) as usize;
            samples / (rg.num_rows().max(1) as usize)
        })
        .max()
        .unwrap_or(1)
        .max(1);
    (BATCH_SAMPLES / densest).clamp(8, 4096)
}

fn visit_batch(
    ulid: Ulid,
    batch: &RecordBatch,
    selected: &[bool],
    start: i64,
    end: i64,
    read: Read,
    visitor: &mut dyn ProfileVisitor,
) -> Result<()> {
    let series = batch.column(0).as_primitive::<UInt32Type>().values();
    let times = batch.column(1).as_primitive::<Int64Type>().values();
    let totals = batch.column(2).as_primitive::<Int64Type>().values();
    // Projected columns come in schema order: the ID, when present, is last.
    let profile_ids = batch
        .schema()
        .index_of("id")
        .ok()
        .map(|i| batch.column(i).as_fixed_size_binary().clone());
    if read == Read::Spans {
        return visit_span_batch(ulid, batch, selected, start, end, visitor);
    }
    let samples = if read == Read::Samples {
        let ids = batch.column(3).as_list::<i32>();
        let values = batch.column(4).as_list::<i32>();
        if ids.offsets() != values.offsets() {
            return Err(corrupt(
                ulid,
                "stacktrace_ids and values have different lengths",
            ));
        }
        Some((
            ids.offsets().clone(),
            ids.values().as_primitive::<UInt32Type>().values().clone(),
            values.values().as_primitive::<Int64Type>().values().clone(),
        ))
    } else {
        None
    };
    for row in 0..batch.num_rows() {
        let s = series[row];
        let t = times[row];
        if !selected.get(s as usize).copied().unwrap_or(false) || t < start || t > end {
            continue;
        }
        let pairs = samples.as_ref().map(|(offsets, ids, values)| {
            let (a, b) = (offsets[row] as usize, offsets[row + 1] as usize);
            (&ids[a..b], &values[a..b])
        });
        let id = profile_ids.as_ref().map_or(0, |ids| {
            ProfileId::from_be_bytes(ids.value(row).try_into().expect("16-byte IDs"))
        });
        visitor.visit(id, s, t, totals[row], pairs);
    }
    Ok(())
}

/// Visits a batch of the span columns (projected after the totals, before the ID).
fn visit_span_batch(
    ulid: Ulid,
    batch: &RecordBatch,
    selected: &[bool],
    start: i64,
    end: i64,
    visitor: &mut dyn ProfileVisitor,
) -> Result<()> {
    let series = batch.column(0).as_primitive::<UInt32Type>().values();
    let times = batch.column(1).as_primitive::<Int64Type>().values();
    let totals = batch.column(2).as_primitive::<Int64Type>().values();
    let column = |name: &str| {
        batch
            .schema()
            .index_of(name)
            .map_err(|_| corrupt(ulid, format!("column {name} is missing")))
    };
    let profile_ids = column("id")
        .ok()
        .map(|i| batch.column(i).as_fixed_size_binary().clone());
    let spans = batch.column(column("span_ids")?).as_list::<i32>();
    let stacks = batch
        .column(column("span_stacktrace_ids")?)
        .as_list::<i32>();
    let values = batch.column(column("span_values")?).as_list::<i32>();
    if spans.offsets() != stacks.offsets() || spans.offsets() != values.offsets() {
        return Err(corrupt(ulid, "span columns have different lengths"));
    }
    let offsets = spans.offsets();
    let span_values = spans.values().as_primitive::<UInt64Type>().values();
    let stack_values = stacks.values().as_primitive::<UInt32Type>().values();
    let value_values = values.values().as_primitive::<Int64Type>().values();
    for row in 0..batch.num_rows() {
        let s = series[row];
        let t = times[row];
        let (a, b) = (offsets[row] as usize, offsets[row + 1] as usize);
        if a == b || !selected.get(s as usize).copied().unwrap_or(false) || t < start || t > end {
            continue;
        }
        let id = profile_ids.as_ref().map_or(0, |ids| {
            ProfileId::from_be_bytes(ids.value(row).try_into().expect("16-byte IDs"))
        });
        let samples = SpanSamples {
            spans: &span_values[a..b],
            stacktrace_ids: &stack_values[a..b],
            values: &value_values[a..b],
        };
        visitor.visit_spans(id, s, t, totals[row], samples);
    }
    Ok(())
}

fn read_all(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

fn decode_series(ulid: Ulid, bytes: Bytes) -> Result<Vec<SeriesEntry>> {
    let mut out = Vec::new();
    for batch in read_all(bytes)? {
        let partitions = batch.column(0).as_primitive::<UInt32Type>();
        let names = batch.column(1).as_list::<i32>();
        let values = batch.column(2).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let n = names.value(row);
            let v = values.value(row);
            let (n, v) = (n.as_string::<i32>(), v.as_string::<i32>());
            if n.len() != v.len() {
                return Err(corrupt(
                    ulid,
                    "series label names and values differ in length",
                ));
            }
            let labels = (0..n.len())
                .map(|i| Label::new(n.value(i), v.value(i)))
                .collect();
            out.push(SeriesEntry {
                labels: Labels::new(labels),
                partition: partitions.value(row),
            });
        }
    }
    Ok(out)
}

/// Splits the rows of a symbol table by their partition column.
fn by_partition(
    ulid: Ulid,
    batches: &[RecordBatch],
    partitions: usize,
    mut row: impl FnMut(usize, &RecordBatch, usize),
) -> Result<()> {
    for batch in batches {
        let part = batch.column(0).as_primitive::<UInt32Type>();
        for i in 0..batch.num_rows() {
            let p = part.value(i) as usize;
            if p >= partitions {
                return Err(corrupt(
                    ulid,
                    format!("symbol row refers to partition {p} of {partitions}"),
                ));
            }
            row(p, batch, i);
        }
    }
    Ok(())
}

fn decode_symbols(ulid: Ulid, partitions: usize, files: Vec<Bytes>) -> Result<Vec<Symbols>> {
    let mut out: Vec<Symbols> = (0..partitions)
        .map(|_| Symbols {
            strings: Vec::new(),
            mappings: Vec::new(),
            functions: Vec::new(),
            locations: Vec::new(),
            stacks: StackTree::default(),
        })
        .collect();
    let mut files = files.into_iter();
    let mut next = || read_all(files.next().expect("five symbol files"));

    by_partition(ulid, &next()?, partitions, |p, b, i| {
        out[p]
            .strings
            .push(b.column(1).as_string::<i32>().value(i).to_owned());
    })?;
    by_partition(ulid, &next()?, partitions, |p, b, i| {
        out[p].mappings.push(Mapping {
            memory_start: b.column(1).as_primitive::<UInt64Type>().value(i),
            memory_limit: b.column(2).as_primitive::<UInt64Type>().value(i),
            file_offset: b.column(3).as_primitive::<UInt64Type>().value(i),
            filename: b.column(4).as_primitive::<UInt32Type>().value(i),
            build_id: b.column(5).as_primitive::<UInt32Type>().value(i),
            flags: b.column(6).as_primitive::<UInt8Type>().value(i),
        });
    })?;
    by_partition(ulid, &next()?, partitions, |p, b, i| {
        out[p].functions.push(Function {
            name: b.column(1).as_primitive::<UInt32Type>().value(i),
            system_name: b.column(2).as_primitive::<UInt32Type>().value(i),
            filename: b.column(3).as_primitive::<UInt32Type>().value(i),
            start_line: b.column(4).as_primitive::<Int64Type>().value(i),
        });
    })?;
    by_partition(ulid, &next()?, partitions, |p, b, i| {
        let functions = b.column(3).as_list::<i32>().value(i);
        let numbers = b.column(4).as_list::<i32>().value(i);
        let (functions, numbers) = (
            functions.as_primitive::<UInt32Type>(),
            numbers.as_primitive::<Int64Type>(),
        );
        out[p].locations.push(Location {
            mapping: b.column(1).as_primitive::<UInt32Type>().value(i),
            address: b.column(2).as_primitive::<UInt64Type>().value(i),
            lines: functions
                .values()
                .iter()
                .zip(numbers.values().iter())
                .map(|(&function, &line)| Line { function, line })
                .collect(),
        });
    })?;
    by_partition(ulid, &next()?, partitions, |p, b, i| {
        out[p]
            .stacks
            .parents
            .push(b.column(1).as_primitive::<UInt32Type>().value(i));
        out[p]
            .stacks
            .locations
            .push(b.column(2).as_primitive::<UInt32Type>().value(i));
    })?;
    for (p, s) in out.iter().enumerate() {
        check_symbols(ulid, p, s)?;
    }
    Ok(out)
}

/// Checks every reference, so that queries can index without bounds failures.
fn check_symbols(ulid: Ulid, partition: usize, s: &Symbols) -> Result<()> {
    let bad = |what: &str| {
        Err(corrupt(
            ulid,
            format!("partition {partition}: {what} out of range"),
        ))
    };
    let strings = s.strings.len() as u32;
    if s.strings.first().is_none_or(|s| !s.is_empty()) || s.mappings.is_empty() {
        return bad("reserved string or mapping 0");
    }
    if s.functions
        .iter()
        .any(|f| f.name >= strings || f.system_name >= strings || f.filename >= strings)
        || s.mappings
            .iter()
            .any(|m| m.filename >= strings || m.build_id >= strings)
    {
        return bad("string reference");
    }
    let functions = s.functions.len() as u32;
    let mappings = s.mappings.len() as u32;
    if s.locations
        .iter()
        .any(|l| l.mapping >= mappings || l.lines.iter().any(|x| x.function >= functions))
    {
        return bad("location reference");
    }
    let locations = s.locations.len() as u32;
    let tree = &s.stacks;
    if tree.parents.is_empty()
        || (1..tree.len()).any(|i| tree.parents[i] >= i as u32 || tree.locations[i] >= locations)
    {
        return bad("stack trace reference");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, ListArray, UInt32Array};
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::ProfileRow;

    struct Rows(Vec<(ProfileId, u32, i64, i64)>);

    impl ProfileVisitor for Rows {
        fn visit(
            &mut self,
            id: ProfileId,
            series: u32,
            time: i64,
            total: i64,
            _: Option<(&[u32], &[i64])>,
        ) {
            self.0.push((id, series, time, total));
        }
    }

    fn list(item: DataType, values: ArrayRef) -> ArrayRef {
        let field = Arc::new(Field::new("item", item, false));
        Arc::new(ListArray::new(
            field,
            OffsetBuffer::from_lengths([1, 1]),
            values,
            None,
        ))
    }

    /// A format-1 `profiles.parquet` (no `id` column) still reads, with ID 0.
    #[test]
    fn format_1_profiles_read_with_id_0() {
        let schema = Arc::new(Schema::new(PROFILES.fields()[..5].to_vec()));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(vec![0, 1])),
            Arc::new(Int64Array::from(vec![10, 20])),
            Arc::new(Int64Array::from(vec![3, 4])),
            list(DataType::UInt32, Arc::new(UInt32Array::from(vec![1, 2]))),
            list(DataType::Int64, Arc::new(Int64Array::from(vec![3, 4]))),
        ];
        let bytes = crate::write::parquet_bytes(
            &schema,
            columns,
            parquet::file::properties::WriterProperties::builder().build(),
        )
        .unwrap();
        let mut rows = Rows(Vec::new());
        scan(
            Ulid::nil(),
            bytes,
            &[true, true],
            0,
            100,
            Read::Samples,
            &mut rows,
        )
        .unwrap();
        assert_eq!(rows.0, vec![(0, 0, 10, 3), (0, 1, 20, 4)]);
    }

    /// Span samples as `(profile, span, stack, value)`.
    #[derive(Default)]
    struct Spans(Vec<(ProfileId, u64, u32, i64)>);

    impl ProfileVisitor for Spans {
        fn visit(&mut self, _: ProfileId, _: u32, _: i64, _: i64, _: Option<(&[u32], &[i64])>) {
            panic!("a span scan visits spans only");
        }

        fn visit_spans(&mut self, id: ProfileId, _: u32, _: i64, _: i64, s: SpanSamples<'_>) {
            for i in 0..s.spans.len() {
                self.0
                    .push((id, s.spans[i], s.stacktrace_ids[i], s.values[i]));
            }
        }
    }

    #[test]
    fn span_columns_round_trip_and_skip_profiles_without_spans() {
        let rows = vec![
            ProfileRow {
                id: 7,
                series: 0,
                time_nanos: 10,
                total: 5,
                stacktrace_ids: vec![1, 2],
                values: vec![2, 3],
                span_ids: vec![0xa, 0xb],
                span_stacktrace_ids: vec![1, 2],
                span_values: vec![2, 1],
            },
            ProfileRow {
                id: 8,
                series: 0,
                time_nanos: 20,
                total: 1,
                stacktrace_ids: vec![1],
                values: vec![1],
                ..Default::default()
            },
        ];
        let bytes = crate::write::encode_profiles(&rows).unwrap();
        let mut spans = Spans::default();
        scan(
            Ulid::nil(),
            bytes.clone(),
            &[true],
            0,
            100,
            Read::Spans,
            &mut spans,
        )
        .unwrap();
        assert_eq!(spans.0, vec![(7, 0xa, 1, 2), (7, 0xb, 2, 1)]);
        // The totals scan is unchanged by the new columns.
        let mut totals = Rows(Vec::new());
        scan(
            Ulid::nil(),
            bytes,
            &[true],
            0,
            100,
            Read::Samples,
            &mut totals,
        )
        .unwrap();
        assert_eq!(totals.0, vec![(7, 0, 10, 5), (8, 0, 20, 1)]);
    }

    /// A format-2 `profiles.parquet` (no span columns) refuses a span scan
    /// with a clear error; `BlockView::scan_spans` never asks one.
    #[test]
    fn format_2_profiles_have_no_span_columns() {
        let schema = Arc::new(Schema::new(PROFILES.fields()[..6].to_vec()));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(vec![0, 1])),
            Arc::new(Int64Array::from(vec![10, 20])),
            Arc::new(Int64Array::from(vec![3, 4])),
            list(DataType::UInt32, Arc::new(UInt32Array::from(vec![1, 2]))),
            list(DataType::Int64, Arc::new(Int64Array::from(vec![3, 4]))),
            Arc::new(arrow::array::FixedSizeBinaryArray::new(
                16,
                arrow::buffer::Buffer::from_vec(vec![1u8; 32]),
                None,
            )),
        ];
        let bytes = crate::write::parquet_bytes(
            &schema,
            columns,
            parquet::file::properties::WriterProperties::builder().build(),
        )
        .unwrap();
        let mut rows = Rows(Vec::new());
        scan(
            Ulid::nil(),
            bytes.clone(),
            &[true, true],
            0,
            100,
            Read::Samples,
            &mut rows,
        )
        .unwrap();
        assert_eq!(rows.0.len(), 2);
        let mut spans = Spans::default();
        let err = scan(
            Ulid::nil(),
            bytes,
            &[true, true],
            0,
            100,
            Read::Spans,
            &mut spans,
        );
        assert!(err.unwrap_err().to_string().contains("no span columns"));
    }
}
