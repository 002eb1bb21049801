//! Arrow schemas of the block files. Column names are part of the on-disk
//! format: renaming one needs a new [`crate::FORMAT_VERSION`].

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, false))),
        false,
    )
}

pub(crate) static SERIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        list_of("label_names", DataType::Utf8),
        list_of("label_values", DataType::Utf8),
    ]))
});

pub(crate) static PROFILES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::UInt32, false),
        Field::new("time_nanos", DataType::Int64, false),
        Field::new("total", DataType::Int64, false),
        list_of("stacktrace_ids", DataType::UInt32),
        list_of("values", DataType::Int64),
        // Format 2; last so that format 1's column indices stay valid.
        Field::new("id", DataType::FixedSizeBinary(16), false),
        // Format 3, after the ID for the same reason.
        list_of("span_ids", DataType::UInt64),
        list_of("span_stacktrace_ids", DataType::UInt32),
        list_of("span_values", DataType::Int64),
    ]))
});

/// Each profile's series, time, total and ID, in the order of `profiles.parquet`:
/// what a time-series query reads, small enough to fetch whole in one request
/// instead of a footer and then column ranges of the large profiles file.
pub(crate) static TOTALS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::UInt32, false),
        Field::new("time_nanos", DataType::Int64, false),
        Field::new("total", DataType::Int64, false),
        Field::new("id", DataType::FixedSizeBinary(16), false),
    ]))
});

pub(crate) mod profiles {
    pub(crate) const SERIES: usize = 0;
    pub(crate) const TIME: usize = 1;
    pub(crate) const TOTAL: usize = 2;
    pub(crate) const STACKTRACE_IDS: usize = 3;
    pub(crate) const VALUES: usize = 4;
    pub(crate) const ID: usize = 5;
    pub(crate) const SPAN_IDS: usize = 6;
    pub(crate) const SPAN_STACKTRACE_IDS: usize = 7;
    pub(crate) const SPAN_VALUES: usize = 8;
}

pub(crate) static STRINGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("value", DataType::Utf8, false),
    ]))
});

pub(crate) static MAPPINGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("memory_start", DataType::UInt64, false),
        Field::new("memory_limit", DataType::UInt64, false),
        Field::new("file_offset", DataType::UInt64, false),
        Field::new("filename", DataType::UInt32, false),
        Field::new("build_id", DataType::UInt32, false),
        Field::new("flags", DataType::UInt8, false),
    ]))
});

pub(crate) static FUNCTIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("name", DataType::UInt32, false),
        Field::new("system_name", DataType::UInt32, false),
        Field::new("filename", DataType::UInt32, false),
        Field::new("start_line", DataType::Int64, false),
    ]))
});

pub(crate) static LOCATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("mapping", DataType::UInt32, false),
        Field::new("address", DataType::UInt64, false),
        list_of("line_functions", DataType::UInt32),
        list_of("line_numbers", DataType::Int64),
    ]))
});

pub(crate) static STACKTRACES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("parent", DataType::UInt32, false),
        Field::new("location", DataType::UInt32, false),
    ]))
});

pub(crate) const SERIES_FILE: &str = "series.parquet";
pub(crate) const PROFILES_FILE: &str = "profiles.parquet";
/// Optional: a block written before it existed is read from `profiles.parquet`
/// alone; series.parquet's list of files says whether a block has it.
pub(crate) const TOTALS_FILE: &str = "totals.parquet";
pub(crate) const STRINGS_FILE: &str = "strings.parquet";
pub(crate) const MAPPINGS_FILE: &str = "mappings.parquet";
pub(crate) const FUNCTIONS_FILE: &str = "functions.parquet";
pub(crate) const LOCATIONS_FILE: &str = "locations.parquet";
pub(crate) const STACKTRACES_FILE: &str = "stacktraces.parquet";
/// The block's metadata, written last.
pub const META_FILE: &str = "meta.json";
/// The compactor's deletion mark ([`crate::DeletionMark`]).
pub const DELETION_MARK_FILE: &str = "deletion-mark.json";
