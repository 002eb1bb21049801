//! Encodes a block's Parquet files and uploads them.
//!
//! One encoder writes every file into a sink: memory ([`encode_block`]) or
//! object storage as it goes ([`write_block`]), where `profiles.parquet` is
//! built a batch of rows at a time and uploaded a part at a time, so a
//! block's memory is bounded by a row group and a part, not by its size.

use std::{borrow::Borrow, io::Write, sync::Arc};

use arrow::{
    array::{
        ArrayRef, FixedSizeBinaryArray, Int64Array, ListArray, RecordBatch, StringArray,
        UInt8Array, UInt32Array, UInt64Array,
    },
    buffer::{Buffer, OffsetBuffer},
    datatypes::{DataType, Field, SchemaRef},
};
use bytes::Bytes;
use ember_symdb::Symbols;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::metadata::KeyValue,
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};
use tracing::{debug, warn};
use ulid::Ulid;

use crate::{
    Annotations, ProfileRow, Result, SeriesEntry,
    annotations::{self, ANNOTATIONS_FILE},
    block_file,
    meta::{BlockMeta, BlockStats, Compaction, FORMAT_VERSION},
    schema::{self, *},
};

/// Everything a block holds, ready to encode. `series` must be sorted by
/// labels and `profiles` by `(series, time_nanos)`.
#[derive(Debug, Clone)]
pub struct BlockData {
    pub ulid: Ulid,
    pub source: String,
    pub compaction: Compaction,
    pub series: Vec<SeriesEntry>,
    pub profiles: Vec<ProfileRow>,
    /// Service name and symbols of each partition, by partition index.
    pub partitions: Vec<(String, Arc<Symbols>)>,
    /// What clients attached to the profiles, by profile ID.
    pub annotations: Annotations,
}

/// A block's encoded files and metadata.
#[derive(Debug, Clone)]
pub struct EncodedBlock {
    pub meta: BlockMeta,
    pub files: Vec<(&'static str, Bytes)>,
}

/// Profiles per row group. Queries select pages through the page index, so
/// row groups need not be small to be skipped; large ones keep a block's
/// per-profile columns (series, time, total) in a few contiguous ranges, which
/// a time series fetches in a request per row group (a day of ten pods in 4
/// row groups of 4,096 profiles took 15 requests). The writer holds a row
/// group's compressed pages until it is closed: ~30 MB for a day of ten pods.
#[cfg(not(test))]
const PROFILES_PER_ROW_GROUP: usize = 65_536;
/// Small in tests, so that blocks of a few thousand rows span row groups.
#[cfg(test)]
const PROFILES_PER_ROW_GROUP: usize = 2048;
/// Profiles per data page. The page index records each page's series and
/// time range, so a query fetches the pages of its series alone: one
/// service's hour of one profile type is a few hundred profiles.
pub(crate) const PROFILES_PER_PAGE: usize = 128;

fn list<T: arrow::array::Array + 'static>(
    item: DataType,
    offsets: Vec<i32>,
    values: T,
) -> ArrayRef {
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", item, false)),
        OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        None,
    ))
}

pub(crate) fn base_props() -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_created_by(format!("ember {}", env!("CARGO_PKG_VERSION")))
}

/// What a block holds besides its profile rows, borrowed from where it was
/// built (a head, a merge), so that writing it copies nothing whole.
#[derive(Debug, Clone)]
pub struct BlockParts<'a> {
    pub ulid: Ulid,
    pub source: String,
    pub compaction: Compaction,
    /// 0 for a raw block; the interval of a pre-aggregated copy
    /// ([`crate::downsample`]).
    pub resolution_nanos: i64,
    /// Sorted by labels.
    pub series: &'a [SeriesEntry],
    /// Service name and symbols of each partition, by partition index.
    pub partitions: Vec<(&'a str, &'a Symbols)>,
    pub annotations: &'a Annotations,
}

impl BlockData {
    /// Returns the block's parts, to write with its rows.
    pub fn parts(&self) -> BlockParts<'_> {
        BlockParts {
            ulid: self.ulid,
            source: self.source.clone(),
            compaction: self.compaction.clone(),
            resolution_nanos: 0,
            series: &self.series,
            partitions: self
                .partitions
                .iter()
                .map(|(name, s)| (name.as_str(), s.as_ref()))
                .collect(),
            annotations: &self.annotations,
        }
    }
}

/// Encodes `data` into Parquet files in memory, for small blocks and tests;
/// [`write_block`] streams a block to object storage instead. CPU-bound: call
/// it off the async runtime.
pub fn encode_block(data: &BlockData) -> Result<EncodedBlock> {
    let mut sink = MemSink::default();
    let meta = encode(&mut sink, &data.parts(), &data.profiles)?;
    let mut files = sink.files;
    // The series table first: it is what a reader opens.
    let series = files
        .iter()
        .position(|(name, _)| *name == SERIES_FILE)
        .expect("every block has a series table");
    files[..=series].rotate_right(1);
    Ok(EncodedBlock { meta, files })
}

/// Encodes a block of `parts` and `profiles` (sorted by `(series,
/// time_nanos)`) and uploads it to `store` as it goes: each file in parts of
/// [`PART_BYTES`], so that neither the rows nor the encoded files are ever
/// whole in memory. `meta.json` goes last, so a block that fails half way is
/// never read; a file being uploaded is aborted. Returns the block's meta.
///
/// Blocking: call it from `spawn_blocking` (it waits for the uploads on the
/// runtime it was called from).
pub fn write_block<R: Borrow<ProfileRow>>(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    parts: &BlockParts<'_>,
    profiles: impl IntoIterator<Item = R>,
) -> Result<BlockMeta> {
    write_in_parts(store, tenant, parts, profiles, PART_BYTES)
}

/// [`write_block`] with parts of `part_bytes`.
fn write_in_parts<R: Borrow<ProfileRow>>(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    parts: &BlockParts<'_>,
    profiles: impl IntoIterator<Item = R>,
    part_bytes: usize,
) -> Result<BlockMeta> {
    let mut sink = StoreSink {
        handle: tokio::runtime::Handle::current(),
        store: store.clone(),
        tenant,
        ulid: parts.ulid,
        part_bytes,
    };
    let meta = encode(&mut sink, parts, profiles)?;
    let json = serde_json::to_vec_pretty(&meta)?;
    sink.handle.block_on(store.put(
        &block_file(tenant, parts.ulid, META_FILE),
        PutPayload::from(json),
    ))?;
    debug!(tenant, ulid = %parts.ulid, bytes = meta.stats.bytes, "uploaded block");
    Ok(meta)
}

/// Parts of a multipart upload: above S3's 5 MiB minimum, and a gigabyte of
/// profiles in 128 requests.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Where encoded files go.
trait Sink {
    type File: Write + Send;

    fn create(&mut self, name: &'static str) -> Result<Self::File>;

    /// Makes `file` whole where it goes; returns its size.
    fn finish(&mut self, name: &'static str, file: Self::File) -> Result<u64>;
}

/// Files kept in memory, for [`encode_block`].
#[derive(Debug, Default)]
struct MemSink {
    files: Vec<(&'static str, Bytes)>,
}

impl Sink for MemSink {
    type File = Vec<u8>;

    fn create(&mut self, _: &'static str) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    fn finish(&mut self, name: &'static str, file: Vec<u8>) -> Result<u64> {
        let size = file.len() as u64;
        self.files.push((name, Bytes::from(file)));
        Ok(size)
    }
}

/// Files uploaded to object storage as they are written, for [`write_block`].
struct StoreSink<'a> {
    handle: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    tenant: &'a str,
    ulid: Ulid,
    part_bytes: usize,
}

impl Sink for StoreSink<'_> {
    type File = StoreFile;

    fn create(&mut self, name: &'static str) -> Result<StoreFile> {
        Ok(StoreFile {
            handle: self.handle.clone(),
            store: self.store.clone(),
            path: block_file(self.tenant, self.ulid, name),
            part: Vec::new(),
            part_bytes: self.part_bytes,
            upload: None,
            size: 0,
        })
    }

    fn finish(&mut self, _: &'static str, mut file: StoreFile) -> Result<u64> {
        let part = PutPayload::from(std::mem::take(&mut file.part));
        match file.upload.take() {
            // Smaller than a part: one request.
            None => {
                file.handle.block_on(file.store.put(&file.path, part))?;
            }
            Some(mut upload) => {
                let result = file.handle.block_on(async {
                    if part.content_length() > 0 {
                        upload.put_part(part).await?;
                    }
                    upload.complete().await
                });
                if let Err(e) = result {
                    abort(&file.handle, &file.path, upload);
                    return Err(e.into());
                }
            }
        }
        Ok(file.size)
    }
}

/// A file being uploaded: bytes gather into a part of `part_bytes`, and the
/// first full part starts a multipart upload. Dropped before it is finished,
/// it aborts the upload, so no half file is ever visible.
struct StoreFile {
    handle: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    part: Vec<u8>,
    part_bytes: usize,
    upload: Option<Box<dyn MultipartUpload>>,
    size: u64,
}

impl StoreFile {
    fn put_part(&mut self) -> Result<(), object_store::Error> {
        let part = PutPayload::from(std::mem::take(&mut self.part));
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => {
                let upload = self.handle.block_on(self.store.put_multipart(&self.path))?;
                self.upload.insert(upload)
            }
        };
        self.handle.block_on(upload.put_part(part))
    }
}

impl Write for StoreFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A part's buffer at its full size from the start: growing it by
        // doubling would copy it and briefly hold one and a half parts. Its
        // pages become resident only when written, so a small file costs
        // only what it writes.
        if self.part.capacity() == 0 {
            self.part.reserve_exact(self.part_bytes);
        }
        // Parts of one size: some stores want all but the last equal.
        let n = buf.len().min(self.part_bytes - self.part.len());
        self.part.extend_from_slice(&buf[..n]);
        self.size += n as u64;
        if self.part.len() == self.part_bytes {
            self.put_part().map_err(std::io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StoreFile {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            abort(&self.handle, &self.path, upload);
        }
    }
}

/// Aborts an unfinished multipart upload. Best effort: a store that keeps the
/// parts anyway (S3 without a lifecycle rule) never shows them as an object.
fn abort(
    handle: &tokio::runtime::Handle,
    path: &object_store::path::Path,
    mut upload: Box<dyn MultipartUpload>,
) {
    if let Err(e) = handle.block_on(upload.abort()) {
        warn!(%path, error = %e, "aborting multipart upload failed");
    }
}

/// A file written and its entry in `ember.files`: name, size and footer size.
type FileEntry = (&'static str, u64, u64);

/// Writes one Parquet file of `schema` to `sink`, `write` giving it its
/// rows; returns its size and the size of its footer (page indexes and
/// metadata), which readers fetch in one request.
fn write_parquet<S: Sink>(
    sink: &mut S,
    name: &'static str,
    schema: &SchemaRef,
    props: WriterProperties,
    write: impl FnOnce(&mut ArrowWriter<S::File>) -> Result<()>,
) -> Result<FileEntry> {
    let mut writer = ArrowWriter::try_new(sink.create(name)?, schema.clone(), Some(props))?;
    write(&mut writer)?;
    writer.flush()?;
    // Everything after the last row group is the footer.
    let body = writer.bytes_written() as u64;
    let size = sink.finish(name, writer.into_inner()?)?;
    Ok((name, size, size - body))
}

/// Encodes `columns` as a Parquet file in memory (tests of readers).
#[cfg(test)]
pub(crate) fn parquet_bytes(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    props: WriterProperties,
) -> Result<Bytes> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut sink = MemSink::default();
    write_parquet(&mut sink, PROFILES_FILE, schema, props, |w| {
        Ok(w.write(&batch)?)
    })?;
    Ok(sink.files.remove(0).1)
}

/// Encodes a whole block into `sink`: the profiles as they come, then the
/// symbols and annotations, then the series table that records the others'
/// sizes. Returns the block's meta, for the caller to write last.
fn encode<S: Sink, R: Borrow<ProfileRow>>(
    sink: &mut S,
    parts: &BlockParts<'_>,
    profiles: impl IntoIterator<Item = R>,
) -> Result<BlockMeta> {
    let mut stats = ProfileStats::default();
    let (profiles_hint, totals) = write_profiles(sink, profiles, &mut stats)?;
    let mut hints = vec![profiles_hint, write_totals(sink, totals)?];
    let symbols: Vec<&Symbols> = parts.partitions.iter().map(|(_, s)| *s).collect();
    encode_symbols(sink, &symbols, &mut hints)?;
    if !parts.annotations.is_empty() {
        let batch = annotations::batch(parts.annotations)?;
        hints.push(write_parquet(
            sink,
            ANNOTATIONS_FILE,
            &batch.schema(),
            base_props().build(),
            |w| Ok(w.write(&batch)?),
        )?);
    }
    // The series table, read whole when a block is opened, records where
    // the other files' footers start, so each is fetched in one request.
    let series = encode_series(sink, parts.series, &hints)?;
    let bytes = hints.iter().map(|(_, size, _)| size).sum::<u64>() + series;
    Ok(BlockMeta {
        version: FORMAT_VERSION,
        ulid: parts.ulid,
        min_time_nanos: stats.min_time.unwrap_or(0),
        max_time_nanos: stats.max_time.unwrap_or(0),
        stats: BlockStats {
            series: parts.series.len() as u64,
            profiles: stats.profiles,
            samples: stats.samples,
            bytes,
            annotations: annotations::rows(parts.annotations) as u64,
        },
        compaction: parts.compaction.clone(),
        source: parts.source.clone(),
        partitions: parts
            .partitions
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect(),
        resolution_nanos: parts.resolution_nanos,
    })
}

/// Writes `profiles.parquet` a batch of rows at a time, counting them into
/// `stats`. Returns its hint and the batches' columns of `totals.parquet`,
/// which share their buffers: 36 bytes a profile are kept, the samples not.
fn write_profiles<S: Sink, R: Borrow<ProfileRow>>(
    sink: &mut S,
    profiles: impl IntoIterator<Item = R>,
    stats: &mut ProfileStats,
) -> Result<(FileEntry, Vec<RecordBatch>)> {
    let mut totals = Vec::new();
    let mut write = |writer: &mut ArrowWriter<S::File>, columns: &mut ProfileColumns| {
        let batch = columns.take()?;
        writer.write(&batch)?;
        let kept = TOTALS_COLUMNS.map(|c| batch.column(c).clone());
        totals.push(RecordBatch::try_new(schema::TOTALS.clone(), kept.to_vec())?);
        Ok::<_, crate::Error>(())
    };
    let hint = write_parquet(
        sink,
        PROFILES_FILE,
        &schema::PROFILES,
        profiles_props(),
        |writer| {
            let mut columns = ProfileColumns::default();
            for row in profiles {
                let row = row.borrow();
                stats.add(row);
                columns.push(row);
                if columns.rows == PROFILES_PER_BATCH {
                    write(writer, &mut columns)?;
                }
            }
            if columns.rows > 0 {
                write(writer, &mut columns)?;
            }
            Ok(())
        },
    )?;
    Ok((hint, totals))
}

/// The columns of `profiles.parquet` that `totals.parquet` repeats, in its order.
const TOTALS_COLUMNS: [usize; 4] = [
    schema::profiles::SERIES,
    schema::profiles::TIME,
    schema::profiles::TOTAL,
    schema::profiles::ID,
];

/// Writes `totals.parquet`: one row group (up to a million profiles), read
/// whole by time-series queries.
fn write_totals<S: Sink>(sink: &mut S, batches: Vec<RecordBatch>) -> Result<FileEntry> {
    let props = base_props()
        .set_statistics_enabled(EnabledStatistics::Chunk)
        // Rows come by series, then time: deltas of a series' times are its
        // push interval.
        .set_column_dictionary_enabled(ColumnPath::from("time_nanos"), false)
        .set_column_encoding(
            ColumnPath::from("time_nanos"),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_column_dictionary_enabled(ColumnPath::from("id"), false)
        .set_column_statistics_enabled(ColumnPath::from("id"), EnabledStatistics::None)
        .build();
    write_parquet(sink, TOTALS_FILE, &schema::TOTALS, props, |w| {
        for batch in &batches {
            w.write(batch)?;
        }
        Ok(())
    })
}

/// Encodes `profiles.parquet` of `rows` in memory (tests of readers).
#[cfg(test)]
pub(crate) fn encode_profiles(rows: &[ProfileRow]) -> Result<Bytes> {
    let mut sink = MemSink::default();
    write_profiles(&mut sink, rows, &mut ProfileStats::default())?;
    Ok(sink.files.remove(0).1)
}

/// What `meta.json` counts of the profile rows.
#[derive(Debug, Default)]
struct ProfileStats {
    profiles: u64,
    samples: u64,
    min_time: Option<i64>,
    max_time: Option<i64>,
}

impl ProfileStats {
    fn add(&mut self, p: &ProfileRow) {
        self.profiles += 1;
        self.samples += p.values.len() as u64;
        self.min_time = Some(self.min_time.map_or(p.time_nanos, |t| t.min(p.time_nanos)));
        self.max_time = Some(self.max_time.map_or(p.time_nanos, |t| t.max(p.time_nanos)));
    }
}

fn encode_series<S: Sink>(
    sink: &mut S,
    series: &[SeriesEntry],
    hints: &[FileEntry],
) -> Result<u64> {
    let mut offsets = vec![0i32];
    let mut names = Vec::new();
    let mut values = Vec::new();
    for s in series {
        for l in s.labels.iter() {
            names.push(l.name.as_str());
            values.push(l.value.as_str());
        }
        offsets.push(names.len() as i32);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            series.iter().map(|s| s.partition),
        )),
        list(DataType::Utf8, offsets.clone(), StringArray::from(names)),
        list(DataType::Utf8, offsets, StringArray::from(values)),
    ];
    let batch = RecordBatch::try_new(schema::SERIES.clone(), columns)?;
    let hints = serde_json::to_string(hints)?;
    let props = base_props()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            crate::read::FILES_KEY.to_owned(),
            hints,
        )]))
        .build();
    let (_, size, _) = write_parquet(sink, SERIES_FILE, &schema::SERIES, props, |w| {
        Ok(w.write(&batch)?)
    })?;
    Ok(size)
}

/// Profiles encoded into Arrow arrays at a time: a divisor of
/// [`PROFILES_PER_ROW_GROUP`] and a multiple of [`PROFILES_PER_PAGE`], so that
/// pages and row groups fall where one batch of every row would put them.
const PROFILES_PER_BATCH: usize = 1024;

/// The columns of `profiles.parquet` for a batch of rows.
#[derive(Debug, Default)]
struct ProfileColumns {
    rows: usize,
    series: Vec<u32>,
    time_nanos: Vec<i64>,
    total: Vec<i64>,
    offsets: Vec<i32>,
    stacktrace_ids: Vec<u32>,
    values: Vec<i64>,
    ids: Vec<u8>,
    span_offsets: Vec<i32>,
    span_ids: Vec<u64>,
    span_stacktrace_ids: Vec<u32>,
    span_values: Vec<i64>,
}

impl ProfileColumns {
    fn push(&mut self, p: &ProfileRow) {
        if self.rows == 0 {
            self.offsets.push(0);
            self.span_offsets.push(0);
        }
        self.rows += 1;
        self.series.push(p.series);
        self.time_nanos.push(p.time_nanos);
        self.total.push(p.total);
        self.stacktrace_ids.extend_from_slice(&p.stacktrace_ids);
        self.values.extend_from_slice(&p.values);
        self.offsets.push(self.stacktrace_ids.len() as i32);
        self.ids.extend_from_slice(&p.id.to_be_bytes());
        self.span_ids.extend_from_slice(&p.span_ids);
        self.span_stacktrace_ids
            .extend_from_slice(&p.span_stacktrace_ids);
        self.span_values.extend_from_slice(&p.span_values);
        self.span_offsets.push(self.span_ids.len() as i32);
    }

    /// Returns the rows pushed so far as a batch, and starts a new one.
    fn take(&mut self) -> Result<RecordBatch> {
        let c = std::mem::take(self);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(c.series)),
            Arc::new(Int64Array::from(c.time_nanos)),
            Arc::new(Int64Array::from(c.total)),
            list(
                DataType::UInt32,
                c.offsets.clone(),
                UInt32Array::from(c.stacktrace_ids),
            ),
            list(DataType::Int64, c.offsets, Int64Array::from(c.values)),
            Arc::new(FixedSizeBinaryArray::new(16, Buffer::from_vec(c.ids), None)),
            list(
                DataType::UInt64,
                c.span_offsets.clone(),
                UInt64Array::from(c.span_ids),
            ),
            list(
                DataType::UInt32,
                c.span_offsets.clone(),
                UInt32Array::from(c.span_stacktrace_ids),
            ),
            list(
                DataType::Int64,
                c.span_offsets,
                Int64Array::from(c.span_values),
            ),
        ];
        Ok(RecordBatch::try_new(schema::PROFILES.clone(), columns)?)
    }
}

fn profiles_props() -> WriterProperties {
    let span_ids_path = ColumnPath::new(vec!["span_ids".into(), "list".into(), "item".into()]);
    let ids_path = ColumnPath::new(vec!["stacktrace_ids".into(), "list".into(), "item".into()]);
    let values_path = ColumnPath::new(vec!["values".into(), "list".into(), "item".into()]);
    base_props()
        .set_max_row_group_row_count(Some(PROFILES_PER_ROW_GROUP))
        .set_data_page_row_count_limit(PROFILES_PER_PAGE)
        .set_write_batch_size(PROFILES_PER_PAGE)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        // A page index (per-page min and max) on the sort columns.
        .set_column_statistics_enabled(ColumnPath::from("series"), EnabledStatistics::Page)
        .set_column_statistics_enabled(ColumnPath::from("time_nanos"), EnabledStatistics::Page)
        // Sorted IDs within a profile: deltas are tiny.
        .set_column_dictionary_enabled(ids_path.clone(), false)
        .set_column_encoding(ids_path, Encoding::DELTA_BINARY_PACKED)
        // Values take many distinct magnitudes: a dictionary overflows, while
        // splitting their bytes into streams lets zstd find the shared high bytes.
        .set_column_dictionary_enabled(values_path.clone(), false)
        .set_column_encoding(values_path, Encoding::BYTE_STREAM_SPLIT)
        // Random IDs: neither a dictionary nor min/max statistics help.
        .set_column_dictionary_enabled(ColumnPath::from("id"), false)
        .set_column_statistics_enabled(ColumnPath::from("id"), EnabledStatistics::None)
        // Sorted within a profile, one run per span.
        .set_column_dictionary_enabled(span_ids_path.clone(), false)
        .set_column_encoding(span_ids_path, Encoding::DELTA_BINARY_PACKED)
        .build()
}

/// Writer settings for a symbol file of `schema`. Its integer columns are
/// references and addresses, nearly all distinct: a dictionary of them
/// overflows into plain pages, while splitting their bytes into streams hands
/// zstd runs of alike high bytes (it halves a block's stack parents). The
/// columns in `dictionary` repeat few values (line numbers) and keep one;
/// strings are distinct too, so they go plain.
fn symbol_props(schema: &SchemaRef, dictionary: &[&str]) -> WriterProperties {
    let mut props = base_props().set_dictionary_enabled(false);
    for field in schema.fields() {
        let (path, item) = match field.data_type() {
            DataType::List(item) => (
                vec![field.name().clone(), "list".into(), item.name().clone()],
                item.data_type(),
            ),
            other => (vec![field.name().clone()], other),
        };
        let path = ColumnPath::new(path);
        if dictionary.contains(&path.string().as_str()) {
            props = props.set_column_dictionary_enabled(path, true);
        } else if item.is_integer() {
            props = props.set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
        }
    }
    props.build()
}

/// Encodes the columns of a symbol file with one row group per run of
/// `lengths` rows (empty runs are skipped), so that a reader fetches one
/// partition's rows alone; `dictionary` as in [`symbol_props`].
fn symbol_file<S: Sink>(
    sink: &mut S,
    name: &'static str,
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    lengths: &[usize],
    dictionary: &[&str],
) -> Result<FileEntry> {
    let props = symbol_props(schema, dictionary);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    write_parquet(sink, name, schema, props, |writer| {
        let mut offset = 0;
        for &len in lengths {
            if len > 0 {
                writer.write(&batch.slice(offset, len))?;
                writer.flush()?;
            }
            offset += len;
        }
        Ok(())
    })
}

/// Encodes the symbol files into `sink`, adding their hints to `hints`.
fn encode_symbols<S: Sink>(
    sink: &mut S,
    partitions: &[&Symbols],
    hints: &mut Vec<FileEntry>,
) -> Result<()> {
    let lengths =
        |len: fn(&Symbols) -> usize| -> Vec<usize> { partitions.iter().map(|s| len(s)).collect() };
    let part = |len: fn(&Symbols) -> usize| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(
            partitions
                .iter()
                .enumerate()
                .flat_map(|(i, s)| std::iter::repeat_n(i as u32, len(s))),
        ))
    };
    let all = || partitions.iter().copied();

    hints.push(symbol_file(
        sink,
        STRINGS_FILE,
        &schema::STRINGS,
        vec![
            part(|s| s.strings.len()),
            Arc::new(StringArray::from_iter_values(
                all().flat_map(|s| s.strings.iter()),
            )),
        ],
        &lengths(|s| s.strings.len()),
        &[],
    )?);

    let mappings = || all().flat_map(|s| s.mappings.iter());
    hints.push(symbol_file(
        sink,
        MAPPINGS_FILE,
        &schema::MAPPINGS,
        vec![
            part(|s| s.mappings.len()),
            Arc::new(UInt64Array::from_iter_values(
                mappings().map(|m| m.memory_start),
            )),
            Arc::new(UInt64Array::from_iter_values(
                mappings().map(|m| m.memory_limit),
            )),
            Arc::new(UInt64Array::from_iter_values(
                mappings().map(|m| m.file_offset),
            )),
            Arc::new(UInt32Array::from_iter_values(
                mappings().map(|m| m.filename),
            )),
            Arc::new(UInt32Array::from_iter_values(
                mappings().map(|m| m.build_id),
            )),
            Arc::new(UInt8Array::from_iter_values(mappings().map(|m| m.flags))),
        ],
        &lengths(|s| s.mappings.len()),
        &[],
    )?);

    let functions = || all().flat_map(|s| s.functions.iter());
    hints.push(symbol_file(
        sink,
        FUNCTIONS_FILE,
        &schema::FUNCTIONS,
        vec![
            part(|s| s.functions.len()),
            Arc::new(UInt32Array::from_iter_values(functions().map(|f| f.name))),
            Arc::new(UInt32Array::from_iter_values(
                functions().map(|f| f.system_name),
            )),
            Arc::new(UInt32Array::from_iter_values(
                functions().map(|f| f.filename),
            )),
            Arc::new(Int64Array::from_iter_values(
                functions().map(|f| f.start_line),
            )),
        ],
        &lengths(|s| s.functions.len()),
        &[],
    )?);

    let locations = || all().flat_map(|s| s.locations.iter());
    let mut offsets = vec![0i32];
    let mut line_functions = Vec::new();
    let mut line_numbers = Vec::new();
    for l in locations() {
        line_functions.extend(l.lines.iter().map(|l| l.function));
        line_numbers.extend(l.lines.iter().map(|l| l.line));
        offsets.push(line_functions.len() as i32);
    }
    hints.push(symbol_file(
        sink,
        LOCATIONS_FILE,
        &schema::LOCATIONS,
        vec![
            part(|s| s.locations.len()),
            Arc::new(UInt32Array::from_iter_values(
                locations().map(|l| l.mapping),
            )),
            Arc::new(UInt64Array::from_iter_values(
                locations().map(|l| l.address),
            )),
            list(
                DataType::UInt32,
                offsets.clone(),
                UInt32Array::from(line_functions),
            ),
            list(DataType::Int64, offsets, Int64Array::from(line_numbers)),
        ],
        &lengths(|s| s.locations.len()),
        &["line_numbers.list.item"],
    )?);

    hints.push(symbol_file(
        sink,
        STACKTRACES_FILE,
        &schema::STACKTRACES,
        vec![
            part(|s| s.stacks.len()),
            Arc::new(UInt32Array::from_iter_values(
                all().flat_map(|s| s.stacks.parents.iter().copied()),
            )),
            Arc::new(UInt32Array::from_iter_values(
                all().flat_map(|s| s.stacks.locations.iter().copied()),
            )),
        ],
        &lengths(|s| s.stacks.len()),
        &[],
    )?);

    Ok(())
}

/// Uploads an encoded block; `meta.json` goes last so that readers never see
/// a block with missing files.
pub async fn upload_block(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    block: &EncodedBlock,
) -> Result<()> {
    let ulid = block.meta.ulid;
    for (name, bytes) in &block.files {
        store
            .put(
                &block_file(tenant, ulid, name),
                PutPayload::from_bytes(bytes.clone()),
            )
            .await?;
    }
    let meta = serde_json::to_vec_pretty(&block.meta)?;
    store
        .put(&block_file(tenant, ulid, META_FILE), PutPayload::from(meta))
        .await?;
    debug!(tenant, %ulid, bytes = block.meta.stats.bytes, "uploaded block");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use ember_model::{Label, Labels, ProfileId};
    use ember_symdb::SymbolsBuilder;
    use futures::{StreamExt, stream::BoxStream};
    use object_store::{
        GetOptions, GetResult, ListResult, ObjectMeta, PutMultipartOptions, PutOptions, PutResult,
        UploadPart, memory::InMemory, path::Path,
    };
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::{Block, Fetch, ProfileVisitor};

    const SERIES: u32 = 3;

    /// 10,000 rows over three series: two row groups and more, and enough
    /// distinct values that `profiles.parquet` takes many 64 KiB parts.
    fn data() -> BlockData {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let mut profiles = Vec::new();
        for series in 0..SERIES {
            for t in 0..10_000 / SERIES as i64 {
                let stacktrace_ids: Vec<u32> =
                    (0..40).map(|i| i * 3 + (next() % 3) as u32).collect();
                let values: Vec<i64> = stacktrace_ids
                    .iter()
                    .map(|_| next() as i64 % 100_000)
                    .collect();
                profiles.push(ProfileRow {
                    id: (next() as u128) << 64 | next() as u128,
                    series,
                    time_nanos: t * 15_000_000_000,
                    total: values.iter().sum(),
                    stacktrace_ids,
                    values,
                    ..Default::default()
                });
            }
        }
        BlockData {
            ulid: Ulid::new(),
            source: "test".into(),
            compaction: Compaction {
                level: 1,
                sources: Vec::new(),
            },
            series: (0..SERIES)
                .map(|i| SeriesEntry {
                    labels: Labels::new(vec![Label::new("pod", format!("pod-{i}"))]),
                    partition: 0,
                })
                .collect(),
            profiles,
            partitions: vec![(
                "svc".into(),
                Arc::new(SymbolsBuilder::new().symbols().clone()),
            )],
            annotations: Annotations::new(),
        }
    }

    /// Writes `data` to `store` from a blocking thread, in parts of 64 KiB.
    async fn write_small_parts(
        store: &Arc<dyn ObjectStore>,
        data: &BlockData,
    ) -> Result<BlockMeta> {
        let (store, data) = (store.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            write_in_parts(&store, "t", &data.parts(), &data.profiles, 64 * 1024)
        })
        .await?
    }

    struct Rows(Vec<ProfileRow>);

    impl ProfileVisitor for Rows {
        fn visit(
            &mut self,
            id: ProfileId,
            series: u32,
            time_nanos: i64,
            total: i64,
            samples: Option<(&[u32], &[i64])>,
        ) {
            let (ids, values) = samples.expect("scanned with samples");
            self.0.push(ProfileRow {
                id,
                series,
                time_nanos,
                total,
                stacktrace_ids: ids.to_vec(),
                values: values.to_vec(),
                ..Default::default()
            });
        }
    }

    /// The symbol files' encodings are what `symbol_props` says: split bytes
    /// for integer columns, a dictionary only for line numbers, plain strings.
    #[test]
    fn symbol_files_split_integer_bytes_and_keep_a_dictionary_for_line_numbers() {
        use parquet::basic::Encoding::{BYTE_STREAM_SPLIT, RLE_DICTIONARY};
        let mut builder = ember_testkit::pprof::PprofBuilder::new(&[("cpu", "nanoseconds")]);
        for i in 0..50i64 {
            let (f, g) = (format!("f{}", i % 7), format!("g{i}"));
            builder = builder.sample(&["main", &f, &g], &[i + 1]);
        }
        let mut symbols = SymbolsBuilder::new();
        symbols.add_profile(&builder.build().into());
        let mut data = data();
        data.partitions = vec![("svc".into(), Arc::new(symbols.symbols().clone()))];
        let encoded = encode_block(&data).unwrap();
        let encodings = |file: &str, column: &str| {
            let (_, bytes) = encoded.files.iter().find(|(n, _)| *n == file).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
            let chunk = reader
                .metadata()
                .row_group(0)
                .columns()
                .iter()
                .find(|c| c.column_path().string() == column)
                .unwrap()
                .clone();
            (
                chunk.encodings().collect::<Vec<_>>(),
                chunk.dictionary_page_offset(),
            )
        };
        for (file, column) in [
            (STACKTRACES_FILE, "parent"),
            (STACKTRACES_FILE, "location"),
            (FUNCTIONS_FILE, "name"),
            (LOCATIONS_FILE, "address"),
            (LOCATIONS_FILE, "line_functions.list.item"),
        ] {
            let (used, dictionary) = encodings(file, column);
            assert!(
                used.contains(&BYTE_STREAM_SPLIT),
                "{file} {column}: {used:?}"
            );
            assert_eq!(dictionary, None, "{file} {column}");
        }
        let (used, dictionary) = encodings(LOCATIONS_FILE, "line_numbers.list.item");
        assert!(
            used.contains(&RLE_DICTIONARY) && dictionary.is_some(),
            "{used:?}"
        );
        let (used, dictionary) = encodings(STRINGS_FILE, "value");
        assert!(
            !used.contains(&RLE_DICTIONARY) && dictionary.is_none(),
            "{used:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_block_streamed_in_parts_is_the_encoded_block_and_reads_back() {
        let data = data();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let meta = write_small_parts(&store, &data).await.unwrap();
        let encoded = encode_block(&data).unwrap();
        assert_eq!(meta, encoded.meta);
        let get = |name: &str| {
            let (store, path) = (store.clone(), block_file("t", data.ulid, name));
            async move { store.get(&path).await.unwrap().bytes().await.unwrap() }
        };
        // Byte for byte what the in-memory encoder writes.
        for (name, bytes) in &encoded.files {
            assert_eq!(&get(name).await, bytes, "{name}");
        }
        let profiles = get(PROFILES_FILE).await;
        assert!(profiles.len() > 8 * 64 * 1024, "{} bytes", profiles.len());
        let builder = ParquetRecordBatchReaderBuilder::try_new(profiles.clone()).unwrap();
        assert!(builder.metadata().num_row_groups() > 2);
        // The footer sizes series.parquet records are those a reader finds.
        let series = ParquetRecordBatchReaderBuilder::try_new(get(SERIES_FILE).await).unwrap();
        let hints = series
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == crate::read::FILES_KEY))
            .and_then(|e| e.value.clone())
            .unwrap();
        let hints: Vec<(String, u64, u64)> = serde_json::from_str(&hints).unwrap();
        assert_eq!(hints.len(), 7);
        for (name, size, footer) in hints {
            let file = get(&name).await;
            assert_eq!(size, file.len() as u64, "{name}");
            assert_eq!(footer, crate::fetch::footer_len(&file).unwrap(), "{name}");
        }
        // And the rows read back.
        let block = Arc::new(Block::open(store.clone(), "t", data.ulid).await.unwrap());
        let view = block.view(false).await.unwrap();
        let mut rows = Rows(Vec::new());
        view.scan(
            &[true; SERIES as usize],
            i64::MIN,
            i64::MAX,
            true,
            &mut rows,
        )
        .unwrap();
        assert_eq!(rows.0, data.profiles);
    }

    /// `(id, series, time, total)` of each profile visited.
    struct Totals(Vec<(ProfileId, u32, i64, i64)>);

    impl ProfileVisitor for Totals {
        fn visit(
            &mut self,
            id: ProfileId,
            s: u32,
            t: i64,
            total: i64,
            _: Option<(&[u32], &[i64])>,
        ) {
            self.0.push((id, s, t, total));
        }
    }

    /// A query of totals alone reads `totals.parquet`, whole in one request,
    /// and finds there what the profiles file holds.
    #[tokio::test(flavor = "multi_thread")]
    async fn totals_come_from_their_own_file_in_one_request() {
        let data = data();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        write_small_parts(&store, &data).await.unwrap();
        let block = Arc::new(Block::open(store, "t", data.ulid).await.unwrap());
        let selected = vec![false, true, false];
        let want = Fetch {
            selected: selected.clone(),
            start: 10 * 15_000_000_000,
            end: 20 * 15_000_000_000,
            samples: false,
            spans: false,
            symbols: false,
        };
        let view = block.fetch(&want).await.unwrap();
        assert_eq!(view.fetched_requests(), 1);
        let mut totals = Totals(Vec::new());
        view.scan(&selected, want.start, want.end, false, &mut totals)
            .unwrap();
        let expected: Vec<_> = data
            .profiles
            .iter()
            .filter(|p| p.series == 1 && (want.start..=want.end).contains(&p.time_nanos))
            .map(|p| (p.id, p.series, p.time_nanos, p.total))
            .collect();
        assert_eq!(expected.len(), 11);
        assert_eq!(totals.0, expected);
        // Samples are not in it: their scan needs a fetch of profiles.parquet.
        let err = view
            .scan(&selected, want.start, want.end, true, &mut Rows(Vec::new()))
            .unwrap_err();
        assert!(err.to_string().contains("did not fetch"), "{err}");
    }

    /// A store whose multipart uploads fail at their third part, counting
    /// the uploads aborted.
    #[derive(Debug)]
    struct FailingParts {
        inner: InMemory,
        aborted: Arc<AtomicUsize>,
    }

    impl std::fmt::Display for FailingParts {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FailingParts")
        }
    }

    #[derive(Debug)]
    struct FailingUpload {
        inner: Box<dyn MultipartUpload>,
        parts: usize,
        aborted: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl MultipartUpload for FailingUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            self.parts += 1;
            if self.parts == 3 {
                return Box::pin(async {
                    Err(object_store::Error::Generic {
                        store: "test",
                        source: "part refused".into(),
                    })
                });
            }
            self.inner.put_part(data)
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            self.aborted.fetch_add(1, Ordering::SeqCst);
            self.inner.abort().await
        }
    }

    #[async_trait]
    impl ObjectStore for FailingParts {
        async fn put_opts(
            &self,
            l: &Path,
            p: PutPayload,
            o: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(l, p, o).await
        }

        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            Ok(Box::new(FailingUpload {
                inner: self.inner.put_multipart_opts(l, o).await?,
                parts: 0,
                aborted: self.aborted.clone(),
            }))
        }

        async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
            self.inner.get_opts(l, o).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            o: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, o).await
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_part_that_fails_fails_the_write_and_aborts_the_upload() {
        let data = data();
        let aborted = Arc::new(AtomicUsize::new(0));
        let store: Arc<dyn ObjectStore> = Arc::new(FailingParts {
            inner: InMemory::new(),
            aborted: aborted.clone(),
        });
        let err = write_small_parts(&store, &data).await.unwrap_err();
        assert!(err.to_string().contains("part refused"), "{err}");
        assert_eq!(aborted.load(Ordering::SeqCst), 1);
        // Neither the half file nor meta.json.
        let files: Vec<_> = store.list(None).collect::<Vec<_>>().await;
        assert!(files.is_empty(), "{files:?}");
    }
}
