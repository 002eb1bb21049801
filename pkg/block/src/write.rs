//! Encodes a block's Parquet files and uploads them.

use std::sync::Arc;

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
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    file::metadata::KeyValue,
    file::properties::{EnabledStatistics, WriterProperties},
    schema::types::ColumnPath,
};
use tracing::debug;
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

/// Profiles per row group: small enough that a query for a few series skips
/// most of a block, large enough to keep per-group overhead negligible.
const PROFILES_PER_ROW_GROUP: usize = 4096;
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

pub(crate) fn parquet_bytes(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    props: WriterProperties,
) -> Result<Bytes> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}

pub(crate) fn base_props() -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_created_by(format!("ember {}", env!("CARGO_PKG_VERSION")))
}

/// Encodes `data` into Parquet files. CPU-bound: call it off the async runtime.
pub fn encode_block(data: &BlockData) -> Result<EncodedBlock> {
    let mut files = Vec::with_capacity(7);
    files.push((PROFILES_FILE, encode_profiles(&data.profiles)?));
    let symbols: Vec<&Symbols> = data.partitions.iter().map(|(_, s)| s.as_ref()).collect();
    files.extend(encode_symbols(&symbols)?);
    if !data.annotations.is_empty() {
        files.push((ANNOTATIONS_FILE, annotations::encode(&data.annotations)?));
    }
    // The series table, read whole when a block is opened, records where
    // the other files' footers start, so each is fetched in one request.
    let hints = files
        .iter()
        .map(|(name, bytes)| Ok((*name, bytes.len() as u64, crate::fetch::footer_len(bytes)?)))
        .collect::<Result<Vec<_>>>()?;
    files.insert(0, (SERIES_FILE, encode_series(&data.series, &hints)?));

    let meta = BlockMeta {
        version: FORMAT_VERSION,
        ulid: data.ulid,
        min_time_nanos: data
            .profiles
            .iter()
            .map(|p| p.time_nanos)
            .min()
            .unwrap_or(0),
        max_time_nanos: data
            .profiles
            .iter()
            .map(|p| p.time_nanos)
            .max()
            .unwrap_or(0),
        stats: BlockStats {
            series: data.series.len() as u64,
            profiles: data.profiles.len() as u64,
            samples: data.profiles.iter().map(|p| p.values.len() as u64).sum(),
            bytes: files.iter().map(|(_, b)| b.len() as u64).sum(),
            annotations: annotations::rows(&data.annotations) as u64,
        },
        compaction: data.compaction.clone(),
        source: data.source.clone(),
        partitions: data
            .partitions
            .iter()
            .map(|(name, _)| name.clone())
            .collect(),
        resolution_nanos: 0,
    };
    Ok(EncodedBlock { meta, files })
}

fn encode_series(series: &[SeriesEntry], hints: &[(&str, u64, u64)]) -> Result<Bytes> {
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
    let hints = serde_json::to_string(hints)?;
    let props = base_props()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            crate::read::FILES_KEY.to_owned(),
            hints,
        )]))
        .build();
    parquet_bytes(&schema::SERIES, columns, props)
}

pub(crate) fn encode_profiles(profiles: &[ProfileRow]) -> Result<Bytes> {
    let samples: usize = profiles.iter().map(|p| p.values.len()).sum();
    let mut offsets = Vec::with_capacity(profiles.len() + 1);
    offsets.push(0i32);
    let mut ids = Vec::with_capacity(samples);
    let mut values = Vec::with_capacity(samples);
    for p in profiles {
        ids.extend_from_slice(&p.stacktrace_ids);
        values.extend_from_slice(&p.values);
        offsets.push(ids.len() as i32);
    }
    let span_samples: usize = profiles.iter().map(|p| p.span_values.len()).sum();
    let mut span_offsets = Vec::with_capacity(profiles.len() + 1);
    span_offsets.push(0i32);
    let mut span_ids = Vec::with_capacity(span_samples);
    let mut span_stacks = Vec::with_capacity(span_samples);
    let mut span_values = Vec::with_capacity(span_samples);
    for p in profiles {
        span_ids.extend_from_slice(&p.span_ids);
        span_stacks.extend_from_slice(&p.span_stacktrace_ids);
        span_values.extend_from_slice(&p.span_values);
        span_offsets.push(span_ids.len() as i32);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            profiles.iter().map(|p| p.series),
        )),
        Arc::new(Int64Array::from_iter_values(
            profiles.iter().map(|p| p.time_nanos),
        )),
        Arc::new(Int64Array::from_iter_values(
            profiles.iter().map(|p| p.total),
        )),
        list(DataType::UInt32, offsets.clone(), UInt32Array::from(ids)),
        list(DataType::Int64, offsets, Int64Array::from(values)),
        Arc::new(FixedSizeBinaryArray::new(
            16,
            Buffer::from_vec(profiles.iter().flat_map(|p| p.id.to_be_bytes()).collect()),
            None,
        )),
        list(
            DataType::UInt64,
            span_offsets.clone(),
            UInt64Array::from(span_ids),
        ),
        list(
            DataType::UInt32,
            span_offsets.clone(),
            UInt32Array::from(span_stacks),
        ),
        list(DataType::Int64, span_offsets, Int64Array::from(span_values)),
    ];
    let span_ids_path = ColumnPath::new(vec!["span_ids".into(), "list".into(), "item".into()]);
    let ids_path = ColumnPath::new(vec!["stacktrace_ids".into(), "list".into(), "item".into()]);
    let values_path = ColumnPath::new(vec!["values".into(), "list".into(), "item".into()]);
    let props = base_props()
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
        .build();
    parquet_bytes(&schema::PROFILES, columns, props)
}

/// Encodes `columns` with one row group per run of `lengths` rows (empty
/// runs are skipped), so that a reader fetches one partition's rows alone.
fn parquet_row_groups(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    lengths: &[usize],
    props: WriterProperties,
) -> Result<Bytes> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    let mut offset = 0;
    for &len in lengths {
        if len > 0 {
            writer.write(&batch.slice(offset, len))?;
            writer.flush()?;
        }
        offset += len;
    }
    writer.close()?;
    Ok(Bytes::from(out))
}

fn encode_symbols(partitions: &[&Symbols]) -> Result<Vec<(&'static str, Bytes)>> {
    let props = || base_props().build();
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

    let strings = parquet_row_groups(
        &schema::STRINGS,
        vec![
            part(|s| s.strings.len()),
            Arc::new(StringArray::from_iter_values(
                all().flat_map(|s| s.strings.iter()),
            )),
        ],
        &lengths(|s| s.strings.len()),
        props(),
    )?;

    let mappings = || all().flat_map(|s| s.mappings.iter());
    let mappings = parquet_row_groups(
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
        props(),
    )?;

    let functions = || all().flat_map(|s| s.functions.iter());
    let functions = parquet_row_groups(
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
        props(),
    )?;

    let locations = || all().flat_map(|s| s.locations.iter());
    let mut offsets = vec![0i32];
    let mut line_functions = Vec::new();
    let mut line_numbers = Vec::new();
    for l in locations() {
        line_functions.extend(l.lines.iter().map(|l| l.function));
        line_numbers.extend(l.lines.iter().map(|l| l.line));
        offsets.push(line_functions.len() as i32);
    }
    let locations = parquet_row_groups(
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
        props(),
    )?;

    let stacktraces = parquet_row_groups(
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
        props(),
    )?;

    Ok(vec![
        (STRINGS_FILE, strings),
        (MAPPINGS_FILE, mappings),
        (FUNCTIONS_FILE, functions),
        (LOCATIONS_FILE, locations),
        (STACKTRACES_FILE, stacktraces),
    ])
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
