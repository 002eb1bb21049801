//! Immutable blocks in object storage.
//!
//! A block holds every profile of one tenant over a time range, under
//! `<tenant>/blocks/<ULID>/`:
//!
//! | file | rows | columns |
//! |---|---|---|
//! | `meta.json` | — | [`BlockMeta`]: format version, time range, counts, partitions |
//! | `series.parquet` | one per series, sorted by labels | `partition`, `label_names`, `label_values` |
//! | `profiles.parquet` | one per (series, time), sorted by both | `series`, `time_nanos`, `total`, `stacktrace_ids`, `values`, `id` (format 2), `span_ids`, `span_stacktrace_ids`, `span_values` (format 3) |
//! | `strings.parquet`, `mappings.parquet`, `functions.parquet`, `locations.parquet`, `stacktraces.parquet` | symbols, sorted by partition then ID | `partition`, ... |
//!
//! | `annotations.parquet` | one per (profile, annotation), sorted by profile ID; only when some profile has annotations | `id`, `key`, `value` |
//! | `deletion-mark.json` | — | [`DeletionMark`], written by the compactor into a block it will delete |
//!
//! A profile's `(stacktrace_ids, values)` pairs are sorted by stack-trace ID, so
//! the ID column delta-encodes to a few bits per sample. Samples taken inside
//! a span (pprof label `span_id`) are counted there too, and again in the
//! `span_*` columns as `(span, stack-trace ID, value)` triples sorted by span
//! then stack: a span flame graph reads only those, a normal one never does. `meta.json` is written
//! last: a block without it is incomplete and ignored. A block deleted by the
//! compactor loses `meta.json` first and its deletion mark last.
//!
//! Beside the blocks, `<tenant>/bucket-index.json` ([`index`]) holds the
//! metas of every complete block as the compactor last saw them.

mod annotations;
mod cache;
pub mod downsample;
mod error;
mod fetch;
pub mod index;
mod mem;
mod meta;
mod metrics;
mod read;
mod schema;
mod write;

pub use annotations::Annotations;
pub use cache::BlockCache;
pub use error::{Error, Result};
pub use index::{BucketIndex, read_index, write_index};
pub use mem::{MemBlock, PackedRows, SPAN_ID_LABEL, parse_span_id};
pub use meta::{
    BlockMeta, BlockStats, Compaction, DeletionMark, FORMAT_VERSION, live_blocks, superseded,
};
pub use metrics::BlockCacheMetrics;
pub use read::{
    Block, BlockView, Fetch, Fetched, ProfileVisitor, SpanSamples, list_blocks, read_meta,
};
pub use schema::{DELETION_MARK_FILE, META_FILE};
pub use write::{BlockData, BlockParts, EncodedBlock, encode_block, upload_block, write_block};

use ember_model::{Labels, ProfileId};

/// A series of a block: its labels and the symbol partition of its service.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesEntry {
    pub labels: Labels,
    pub partition: u32,
}

/// One stored profile: a series at one point in time, with its samples
/// summed per stack trace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileRow {
    /// The ID the distributor gave the profile: replicas of one profile share
    /// it, which is how queries and the compactor count it once. 0 for
    /// profiles written before IDs existed (format 1): they are never merged.
    pub id: ProfileId,
    pub series: u32,
    pub time_nanos: i64,
    pub total: i64,
    /// Sorted ascending, unique.
    pub stacktrace_ids: Vec<u32>,
    pub values: Vec<i64>,
    /// The samples taken inside a span, as `(span, stack, value)` columns
    /// sorted by `(span, stack)` and unique; empty in blocks before format 3.
    pub span_ids: Vec<u64>,
    pub span_stacktrace_ids: Vec<u32>,
    pub span_values: Vec<i64>,
}

/// Returns the object path prefix of a tenant's blocks.
pub fn blocks_prefix(tenant: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("{tenant}/blocks"))
}

/// Returns the object path of `file` in block `ulid`.
pub fn block_file(tenant: &str, ulid: ulid::Ulid, file: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("{tenant}/blocks/{ulid}/{file}"))
}
