//! (d) the object-storage footprint of stored profiles, per sample and per
//! block file.

use std::{collections::BTreeMap, path::Path};

use ember_block::BlockMeta;

use crate::BoxResult;

/// The bytes of every block file under a store root, by file name.
#[derive(Debug, Default)]
pub(crate) struct Footprint {
    pub(crate) blocks: usize,
    pub(crate) samples: u64,
    /// Bytes summed over blocks, by file name (`profiles.parquet`, ...).
    pub(crate) files: BTreeMap<String, u64>,
}

/// The files that hold symbols (strings, mappings, functions, locations, stacks).
const SYMBOL_FILES: &[&str] = &[
    "strings.parquet",
    "mappings.parquet",
    "functions.parquet",
    "locations.parquet",
    "stacktraces.parquet",
];

impl Footprint {
    pub(crate) fn total(&self) -> u64 {
        self.files.values().sum()
    }

    /// Bytes of the symbol files.
    pub(crate) fn symbols(&self) -> u64 {
        SYMBOL_FILES.iter().map(|f| self.file(f)).sum()
    }

    pub(crate) fn file(&self, name: &str) -> u64 {
        self.files.get(name).copied().unwrap_or(0)
    }

    /// Returns `bytes` per stored sample.
    pub(crate) fn per_sample(&self, bytes: u64) -> f64 {
        bytes as f64 / self.samples.max(1) as f64
    }
}

fn walk(dir: &Path, out: &mut Footprint) -> BoxResult<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        *out.files.entry(name.clone()).or_default() += entry.metadata()?.len();
        if name == "meta.json" {
            let meta: BlockMeta = serde_json::from_slice(&std::fs::read(&path)?)?;
            out.blocks += 1;
            out.samples += meta.stats.samples;
        }
    }
    Ok(())
}

/// Walks a filesystem store root and sums its block files.
pub(crate) fn measure(root: &Path) -> BoxResult<Footprint> {
    let mut out = Footprint::default();
    walk(root, &mut out)?;
    Ok(out)
}
