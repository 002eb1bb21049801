//! Reading the blocks Ember writes to object storage (DESIGN.md §3), with the
//! `parquet` crate only, as an operator's tool would.
//!
//! Everything the tests assume about file and column names lives in [`layout`]:
//! when the on-disk format changes (with a new format version), adjust it there.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, List};
use serde_json::Value;

/// File and column names of a block, as DESIGN.md §3 and the block writer name them.
pub mod layout {
    /// The directory under a tenant that holds its blocks: `<tenant>/blocks/<ULID>/`.
    pub const BLOCKS_DIR: &str = "blocks";
    /// The block's metadata file.
    pub const META: &str = "meta.json";
    /// The profiles table: one row per (series, timestamp).
    pub const PROFILES: &str = "profiles.parquet";
    /// The series table: one row per series, referenced by the profiles table.
    pub const SERIES: &str = "series.parquet";

    /// Profiles table: the series reference (an index into the series table).
    pub const COL_SERIES: &str = "series";
    /// Profiles table: the profile's time (unix ns).
    pub const COL_TIME: &str = "time_nanos";
    /// Profiles table: the sum of the profile's values.
    pub const COL_TOTAL: &str = "total";
    /// Profiles table: list of stack-trace IDs (nodes of the stack-trace tree).
    pub const COL_STACKTRACE_IDS: &str = "stacktrace_ids";
    /// Profiles table: list of values, one per stack-trace ID.
    pub const COL_VALUES: &str = "values";

    /// `meta.json`: the format version (a number).
    pub const META_VERSION: &str = "version";
    /// `meta.json`: the block ID (the directory name).
    pub const META_ULID: &str = "ulid";
    /// `meta.json`: the time range, unix ns.
    pub const META_MIN_TIME: &str = "min_time_nanos";
    /// `meta.json`: the time range, unix ns.
    pub const META_MAX_TIME: &str = "max_time_nanos";
    /// `meta.json`: path of the profile count.
    pub const META_PROFILES: &[&str] = &["stats", "profiles"];
    /// `meta.json`: path of the series count.
    pub const META_SERIES: &[&str] = &["stats", "series"];
}

/// Returns the block directories of `tenant` under a filesystem store root,
/// sorted; each is named by a ULID.
pub fn block_dirs(store_root: &Path, tenant: &str) -> Vec<PathBuf> {
    let dir = store_root.join(tenant).join(layout::BLOCKS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// Returns a listing of every file under `root`, for failure messages.
pub fn list_files(root: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(format!(
                    "{} ({size} B)",
                    p.strip_prefix(root).unwrap_or(&p).display()
                ));
            }
        }
    }
    out.sort();
    if out.is_empty() {
        "(no files)".into()
    } else {
        out.join("\n")
    }
}

/// Opens a Parquet file.
pub fn open(path: &Path) -> SerializedFileReader<File> {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    SerializedFileReader::new(file)
        .unwrap_or_else(|e| panic!("{} is not a readable Parquet file: {e}", path.display()))
}

/// Returns the names of the top-level columns of a Parquet file.
pub fn top_level_columns(path: &Path) -> Vec<String> {
    let reader = open(path);
    reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

/// Returns the number of rows in a Parquet file, from its metadata.
pub fn row_count(path: &Path) -> i64 {
    open(path).metadata().file_metadata().num_rows()
}

/// One row of the profiles table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    /// The series reference.
    pub series: i128,
    /// The time, unix ns.
    pub time_nanos: i128,
    /// The total value.
    pub total: i128,
    /// The stack-trace IDs.
    pub stacktrace_ids: Vec<i128>,
    /// The values, one per stack-trace ID.
    pub values: Vec<i128>,
}

/// Reads every row of a profiles table through the record API.
pub fn profile_rows(path: &Path) -> Vec<ProfileRow> {
    let reader = open(path);
    let rows = reader
        .get_row_iter(None)
        .unwrap_or_else(|e| panic!("{}: cannot iterate rows: {e}", path.display()));
    rows.map(|row| {
        let row = row.unwrap_or_else(|e| panic!("{}: bad row: {e}", path.display()));
        let fields: BTreeMap<&str, &Field> = row
            .get_column_iter()
            .map(|(name, field)| (name.as_str(), field))
            .collect();
        let get = |name: &str| -> &Field {
            fields.get(name).copied().unwrap_or_else(|| {
                panic!(
                    "{}: no column {name:?} (columns: {:?})",
                    path.display(),
                    fields.keys().collect::<Vec<_>>()
                )
            })
        };
        ProfileRow {
            series: integer(get(layout::COL_SERIES)),
            time_nanos: integer(get(layout::COL_TIME)),
            total: integer(get(layout::COL_TOTAL)),
            stacktrace_ids: integer_list(get(layout::COL_STACKTRACE_IDS)),
            values: integer_list(get(layout::COL_VALUES)),
        }
    })
    .collect()
}

/// Returns an integer field's value, whatever its physical width and sign.
pub fn integer(field: &Field) -> i128 {
    match *field {
        Field::Byte(v) => v.into(),
        Field::Short(v) => v.into(),
        Field::Int(v) => v.into(),
        Field::Long(v) => v.into(),
        Field::UByte(v) => v.into(),
        Field::UShort(v) => v.into(),
        Field::UInt(v) => v.into(),
        Field::ULong(v) => v.into(),
        Field::TimestampMillis(v) => i128::from(v) * 1_000_000,
        Field::TimestampMicros(v) => i128::from(v) * 1_000,
        ref other => panic!("expected an integer column, got {other:?}"),
    }
}

fn integer_list(field: &Field) -> Vec<i128> {
    match field {
        Field::ListInternal(list) => list_elements(list).iter().map(integer).collect(),
        Field::Null => Vec::new(),
        other => panic!("expected a list column, got {other:?}"),
    }
}

fn list_elements(list: &List) -> &[Field] {
    list.elements()
}

/// Reads a block's `meta.json`.
pub fn meta(block_dir: &Path) -> Value {
    let path = block_dir.join(layout::META);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Returns the value at `path` (object keys) in a JSON document.
pub fn json_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}
