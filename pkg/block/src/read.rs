//! Opens blocks and scans their profiles, fetching only the row groups,
//! pages and columns a query needs, and only the symbols of the services
//! it selects.
//!
//! A query's fetch ([`Block::fetch`]) runs in three steps, each through the
//! [`BlockCache`]: the footer of `profiles.parquet` (its page indexes
//! included), which prunes row groups by the series and time statistics of
//! their chunks and then pages by those of the page index; the pages of the
//! needed columns that hold a selected row, ranges close together fetched
//! as one request; and the symbol partitions of the selected series' services
//! (one row group each in blocks that have it). Blocks written before pages
//! were indexed fetch whole column chunks of the row groups they select.
//!
//! A query of totals alone (time series) reads `totals.parquet` instead when
//! the block has it: the same rows without their samples, fetched whole in
//! one request, where the profiles file takes a footer and then column ranges.

use std::{collections::HashMap, ops::Range, sync::Arc};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt8Type, UInt32Type, UInt64Type};
use bytes::Bytes;
use ember_model::{Label, Labels, ProfileId};
use ember_symdb::{Function, Line, Location, Mapping, StackTree, Symbols};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::{
    arrow::{
        ProjectionMask,
        arrow_reader::{
            ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
            RowSelectionPolicy, RowSelector,
        },
    },
    file::{
        metadata::{ParquetMetaData, RowGroupMetaData},
        page_index::column_index::ColumnIndexMetaData,
        statistics::Statistics,
    },
};
use ulid::Ulid;

use crate::{
    Annotations, Error, Result, SeriesEntry,
    annotations::{self, ANNOTATIONS_FILE},
    block_file, blocks_prefix,
    cache::{self, BlockCache, Key, Value},
    fetch::{self, FileHint, Footer, Sparse},
    meta::{BlockMeta, FORMAT_VERSION},
    schema::*,
};

pub use crate::fetch::Fetched;

/// The key of `series.parquet`'s metadata that records the size and footer
/// size of the block's other Parquet files, so that a reader fetches each
/// footer in one request: JSON `[[name, size, footer], ...]`.
pub(crate) const FILES_KEY: &str = "ember.files";

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

/// What a query reads of a block: the profiles of the selected series in a
/// time range, which of their columns, and whether their symbols.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    /// By series reference: whether the series is selected.
    pub selected: Vec<bool>,
    /// Inclusive, in nanoseconds.
    pub start: i64,
    pub end: i64,
    /// The stack-trace IDs and values ([`BlockView::scan`] with samples).
    pub samples: bool,
    /// The span columns ([`BlockView::scan_spans`]).
    pub spans: bool,
    /// The symbols of the selected series' partitions.
    pub symbols: bool,
}

impl Fetch {
    /// Returns the fetch of everything a block holds, for readers that scan
    /// a block whole (the compactor); symbols of every partition with
    /// `with_symbols`.
    pub fn everything(block: &Block, with_symbols: bool) -> Self {
        Self {
            selected: vec![true; block.series.len()],
            start: i64::MIN,
            end: i64::MAX,
            samples: true,
            spans: block.meta.version >= 3,
            symbols: with_symbols,
        }
    }

    fn selects_any(&self) -> bool {
        self.start <= self.end && self.selected.iter().any(|s| *s)
    }
}

/// An opened block: its metadata and series are in memory; profiles and
/// symbols are fetched per query, through the cache the block was opened with.
#[derive(Debug)]
pub struct Block {
    pub meta: BlockMeta,
    pub series: Vec<SeriesEntry>,
    tenant: String,
    store: Arc<dyn ObjectStore>,
    cache: Arc<BlockCache>,
    /// Sizes of the block's files, when the writer recorded them.
    hints: HashMap<String, FileHint>,
    annotations: tokio::sync::OnceCell<Arc<Annotations>>,
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

/// Reads and parses the `meta.json` of block `ulid`, whatever its version.
pub async fn read_meta(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    ulid: Ulid,
) -> Result<BlockMeta> {
    let bytes = store
        .get(&block_file(tenant, ulid, META_FILE))
        .await?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn corrupt(ulid: Ulid, message: impl Into<String>) -> Error {
    Error::Corrupt {
        block: ulid.to_string(),
        message: message.into(),
    }
}

/// The symbol files, in the order [`decode_symbols`] reads them.
const SYMBOL_FILES: [&str; 5] = [
    STRINGS_FILE,
    MAPPINGS_FILE,
    FUNCTIONS_FILE,
    LOCATIONS_FILE,
    STACKTRACES_FILE,
];

impl Block {
    /// Opens block `ulid` without a cache: reads `meta.json` and the series table.
    pub async fn open(store: Arc<dyn ObjectStore>, tenant: &str, ulid: Ulid) -> Result<Self> {
        Self::open_cached(store, Arc::new(BlockCache::disabled()), tenant, ulid).await
    }

    /// Opens block `ulid`, reading through `cache` from then on.
    pub async fn open_cached(
        store: Arc<dyn ObjectStore>,
        cache: Arc<BlockCache>,
        tenant: &str,
        ulid: Ulid,
    ) -> Result<Self> {
        Self::open_with_meta(store, cache, tenant, ulid, None).await
    }

    /// [`Block::open_cached`] with the block's meta when already known (from
    /// the bucket index), which saves reading `meta.json`.
    pub async fn open_with_meta(
        store: Arc<dyn ObjectStore>,
        cache: Arc<BlockCache>,
        tenant: &str,
        ulid: Ulid,
        meta: Option<BlockMeta>,
    ) -> Result<Self> {
        // Both at once: a round trip less per block opened, which on object
        // storage is most of a cold query's wait. The table's errors count
        // only once the block is known complete (meta.json is written last).
        let series_path = block_file(tenant, ulid, SERIES_FILE);
        let (meta, series_bytes) = tokio::join!(
            async {
                match meta {
                    Some(meta) => Ok(meta),
                    None => read_meta(&store, tenant, ulid).await,
                }
            },
            async { store.get(&series_path).await?.bytes().await }
        );
        let meta = meta?;
        if meta.version > FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                block: ulid.to_string(),
                version: meta.version,
                supported: FORMAT_VERSION,
            });
        }
        let series_bytes = series_bytes?;
        let (series, hints) =
            tokio::task::spawn_blocking(move || decode_series(ulid, series_bytes)).await??;
        Ok(Self {
            meta,
            series,
            tenant: tenant.to_owned(),
            store,
            cache,
            hints,
            annotations: tokio::sync::OnceCell::new(),
        })
    }

    /// Returns the annotations of the block's profiles, loading them on first
    /// use; a block without any has no file and costs no request.
    pub async fn annotations(&self) -> Result<Arc<Annotations>> {
        self.annotations
            .get_or_try_init(|| async {
                if self.meta.stats.annotations == 0 {
                    return Ok(Arc::default());
                }
                let path = self.path(ANNOTATIONS_FILE);
                let bytes = self.store.get(&path).await?.bytes().await?;
                Ok(Arc::new(annotations::decode(self.meta.ulid, bytes)?))
            })
            .await
            .cloned()
    }

    fn path(&self, name: &str) -> object_store::path::Path {
        block_file(&self.tenant, self.meta.ulid, name)
    }

    async fn footer(&self, name: &str, fetched: &Fetched) -> Result<Arc<Footer>> {
        let hint = self.hints.get(name).copied();
        fetch::footer(&self.store, &self.cache, &self.path(name), hint, fetched).await
    }

    /// Returns the symbols of `partitions`, each from the cache or fetched:
    /// only the row groups of each symbol file that hold them.
    pub async fn symbols_of(
        &self,
        partitions: &[u32],
        fetched: &Fetched,
    ) -> Result<Vec<(u32, Arc<Symbols>)>> {
        let count = self.meta.partitions.len() as u32;
        if let Some(p) = partitions.iter().find(|&&p| p >= count) {
            return Err(corrupt(
                self.meta.ulid,
                format!("no symbol partition {p} (the block has {count})"),
            ));
        }
        let key = |p: u32| Key::Symbols(self.path(STRINGS_FILE), p);
        let mut out = Vec::with_capacity(partitions.len());
        let mut missing = Vec::new();
        for &p in partitions {
            match self.cache.get(&key(p)) {
                Some(Value::Symbols(s)) => out.push((p, s)),
                _ => missing.push(p),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        missing.sort_unstable();
        missing.dedup();
        let files = futures::future::try_join_all(
            SYMBOL_FILES.map(|name| self.symbol_row_groups(name, &missing, fetched)),
        )
        .await?;
        let ulid = self.meta.ulid;
        let wanted = missing.clone();
        let decoded =
            tokio::task::spawn_blocking(move || decode_symbols(ulid, count, &wanted, files))
                .await??;
        for (p, symbols) in missing.into_iter().zip(decoded) {
            let symbols = Arc::new(symbols);
            let weight = cache::symbols_weight(&symbols);
            self.cache
                .insert(key(p), Value::Symbols(symbols.clone()), weight);
            out.push((p, symbols));
        }
        Ok(out)
    }

    /// Fetches the row groups of symbol file `name` that may hold rows of
    /// `partitions` (sorted); returns the file's footer, its data and them.
    async fn symbol_row_groups(
        &self,
        name: &str,
        partitions: &[u32],
        fetched: &Fetched,
    ) -> Result<(Arc<Footer>, Sparse, Vec<usize>)> {
        let footer = self.footer(name, fetched).await?;
        let mut row_groups = Vec::new();
        let mut ranges = Vec::new();
        for (i, rg) in footer.metadata.row_groups().iter().enumerate() {
            let holds = stats_range_u32(rg.column(0).statistics()).is_none_or(|(lo, hi)| {
                let at = partitions.partition_point(|&p| p < lo);
                partitions.get(at).is_some_and(|&p| p <= hi)
            });
            if holds && rg.num_rows() > 0 {
                row_groups.push(i);
                ranges.push(row_group_range(rg));
            }
        }
        // Decoded symbols are cached; their pages are not kept twice.
        let data = fetch::fetch(
            &self.store,
            &BlockCache::disabled(),
            &self.path(name),
            footer.size,
            ranges,
            fetched,
        )
        .await?;
        Ok((footer, data, row_groups))
    }

    /// Fetches everything a query needs ([`Fetch`]) so that the query itself
    /// runs synchronously off the runtime.
    pub async fn fetch(self: &Arc<Self>, want: &Fetch) -> Result<BlockView> {
        let fetched = Arc::new(Fetched::default());
        let mut view = BlockView {
            block: self.clone(),
            profiles: None,
            symbols: Vec::new(),
            fetched: fetched.clone(),
            annotations: Arc::default(),
        };
        if !want.selects_any() || !self.meta.overlaps(want.start, want.end) {
            return Ok(view);
        }
        view.annotations = self.annotations().await?;
        let mut partitions: Vec<u32> = if !want.symbols {
            Vec::new()
        } else if want.selected.iter().all(|s| *s) {
            // A whole-block read (the compactor) asks for every partition.
            (0..self.meta.partitions.len() as u32).collect()
        } else {
            self.series
                .iter()
                .zip(&want.selected)
                .filter(|(_, s)| **s)
                .map(|(e, _)| e.partition)
                .collect()
        };
        partitions.sort_unstable();
        partitions.dedup();
        let (profiles, symbols) = futures::future::try_join(
            self.fetch_profiles(want, &fetched),
            self.symbols_of(&partitions, &fetched),
        )
        .await?;
        view.profiles = profiles.map(Arc::new);
        view.set_symbols(symbols);
        Ok(view)
    }

    async fn fetch_profiles(&self, want: &Fetch, fetched: &Fetched) -> Result<Option<Profiles>> {
        if !want.samples
            && !want.spans
            && let Some(&hint) = self.hints.get(TOTALS_FILE)
        {
            return self.fetch_totals(hint, fetched).await.map(Some);
        }
        let footer = self.footer(PROFILES_FILE, fetched).await?;
        let columns = Columns {
            samples: want.samples,
            spans: want.spans && has_span_columns(&footer.metadata),
        };
        let plan = plan_profiles(
            &footer.metadata,
            Layout::Profiles,
            &want.selected,
            want.start,
            want.end,
            columns,
        );
        if plan.row_groups.is_empty() {
            return Ok(None);
        }
        let ranges = plan.ranges(&footer.metadata);
        let data = fetch::fetch(
            &self.store,
            &self.cache,
            &self.path(PROFILES_FILE),
            footer.size,
            ranges,
            fetched,
        )
        .await?;
        Ok(Some(Profiles {
            footer,
            data,
            columns,
            layout: Layout::Profiles,
        }))
    }

    /// Fetches `totals.parquet` whole: it is small (36 bytes a profile), and
    /// reading its footer first would double the round trips.
    async fn fetch_totals(&self, hint: FileHint, fetched: &Fetched) -> Result<Profiles> {
        let path = self.path(TOTALS_FILE);
        let data = fetch::fetch(
            &self.store,
            &self.cache,
            &path,
            hint.size,
            std::iter::once(0..hint.size).collect(),
            fetched,
        )
        .await?;
        Ok(Profiles {
            footer: fetch::footer_of_whole(&self.cache, &path, &data)?,
            data,
            columns: Columns::of(Read::Totals),
            layout: Layout::Totals,
        })
    }

    /// Fetches what a query of every series needs: the selected columns of
    /// the profiles file and, with `with_symbols`, every partition's symbols.
    pub async fn view(self: &Arc<Self>, with_symbols: bool) -> Result<BlockView> {
        self.fetch(&Fetch::everything(self, with_symbols)).await
    }
}

/// The byte range of a whole row group.
fn row_group_range(rg: &RowGroupMetaData) -> Range<u64> {
    let mut start = u64::MAX;
    let mut end = 0;
    for c in rg.columns() {
        let (s, len) = c.byte_range();
        start = start.min(s);
        end = end.max(s + len);
    }
    start..end
}

fn has_span_columns(metadata: &ParquetMetaData) -> bool {
    metadata.file_metadata().schema_descr().num_columns() > profiles::SPAN_VALUES
}

/// The optional columns a fetch brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    samples: bool,
    spans: bool,
}

impl Columns {
    fn of(read: Read) -> Self {
        Self {
            samples: read == Read::Samples,
            spans: read == Read::Spans,
        }
    }

    fn covers(self, other: Columns) -> bool {
        (self.samples || !other.samples) && (self.spans || !other.spans)
    }
}

/// Which file a block's profile rows are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `profiles.parquet`, every column.
    Profiles,
    /// `totals.parquet`: series, time, total and ID.
    Totals,
}

/// The fetched part of `profiles.parquet`, or `totals.parquet` whole.
#[derive(Debug)]
struct Profiles {
    footer: Arc<Footer>,
    data: Sparse,
    columns: Columns,
    layout: Layout,
}

/// A block prefetched for one query.
#[derive(Debug, Clone)]
pub struct BlockView {
    pub block: Arc<Block>,
    /// `None` when no row group can hold a selected profile.
    profiles: Option<Arc<Profiles>>,
    /// By partition: the symbols the view fetched.
    symbols: Vec<Option<Arc<Symbols>>>,
    fetched: Arc<Fetched>,
    annotations: Arc<Annotations>,
}

impl BlockView {
    /// Returns how many bytes this view fetched from object storage: footers,
    /// profile pages and symbols, cache hits excluded.
    pub fn fetched_bytes(&self) -> usize {
        self.fetched.bytes() as usize
    }

    /// Returns the annotations of the block's profiles.
    pub fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    /// Returns how many object storage requests this view made.
    pub fn fetched_requests(&self) -> u64 {
        self.fetched.requests()
    }

    /// Returns how many bytes of `profiles.parquet` the view holds (fetched
    /// or from the cache).
    pub fn held_profile_bytes(&self) -> usize {
        self.profiles.as_ref().map_or(0, |p| p.data.held())
    }

    /// Returns how many bytes the view holds in memory: its profile pages
    /// and (estimated) the symbols it fetched.
    pub fn held_bytes(&self) -> usize {
        let symbols: usize = self
            .symbols
            .iter()
            .flatten()
            .map(|s| s.estimated_bytes())
            .sum();
        self.held_profile_bytes() + symbols
    }

    fn set_symbols(&mut self, symbols: Vec<(u32, Arc<Symbols>)>) {
        for (p, s) in symbols {
            let p = p as usize;
            if self.symbols.len() <= p {
                self.symbols.resize(p + 1, None);
            }
            self.symbols[p] = Some(s);
        }
    }

    /// Returns the view with the symbols of every partition loaded, e.g.
    /// once a scan without samples has shown that they are needed.
    pub async fn with_symbols(mut self) -> Result<Self> {
        let all: Vec<u32> = (0..self.block.meta.partitions.len() as u32)
            .filter(|&p| self.symbols.get(p as usize).is_none_or(|s| s.is_none()))
            .collect();
        let symbols = self.block.symbols_of(&all, &self.fetched).await?;
        self.set_symbols(symbols);
        Ok(self)
    }

    /// Returns the symbols of `partition`, when the view fetched them.
    pub fn symbols(&self, partition: u32) -> Option<&Symbols> {
        self.symbols.get(partition as usize)?.as_deref()
    }

    /// Scans the profiles of the selected series (`selected[series]`) with
    /// `start <= time <= end` (nanoseconds), skipping row groups and pages
    /// whose statistics exclude them. The view must have been fetched for
    /// these series, this range or a wider one, and these columns.
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
        self.scan_read(selected, start, end, read, visitor)
    }

    fn scan_read(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        read: Read,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        let Some(profiles) = &self.profiles else {
            return Ok(());
        };
        if !profiles.columns.covers(Columns::of(read)) {
            return Err(corrupt(
                self.block.meta.ulid,
                format!("a {read:?} scan needs columns this view did not fetch"),
            ));
        }
        scan(
            self.block.meta.ulid,
            &profiles.footer.metadata,
            profiles.layout,
            profiles.data.clone(),
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
        self.scan_read(selected, start, end, Read::Spans, visitor)
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

/// Returns whether any series in `lo..=hi` is selected.
fn any_selected(selected: &[bool], lo: u32, hi: u32) -> bool {
    let hi = (hi as usize).min(selected.len().saturating_sub(1));
    selected
        .get(lo as usize..=hi)
        .is_some_and(|s| s.iter().any(|x| *x))
}

/// The row groups and rows of `profiles.parquet` a scan reads, and its columns.
#[derive(Debug)]
struct ProfilesPlan {
    row_groups: Vec<usize>,
    /// Per chosen row group: the rows whose pages may hold a selected profile.
    rows: Vec<RowSelection>,
    /// Root (= leaf) columns to read.
    roots: Vec<usize>,
}

impl ProfilesPlan {
    /// Returns the byte ranges the plan reads: per column chunk, its
    /// dictionary page and the data pages holding a chosen row, or the whole
    /// chunk when the file has no offset index.
    fn ranges(&self, metadata: &ParquetMetaData) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        for (&rg, rows) in self.row_groups.iter().zip(&self.rows) {
            let meta = metadata.row_group(rg);
            let index = metadata.page_index_for_row_group(rg);
            for &c in &self.roots {
                let (start, len) = meta.column(c).byte_range();
                match index.offset_index(c).map(|o| o.page_locations()) {
                    Some(pages) if !pages.is_empty() => {
                        if pages[0].offset as u64 > start {
                            out.push(start..pages[0].offset as u64);
                        }
                        out.extend(rows.scan_ranges(pages));
                    }
                    _ => out.push(start..start + len),
                }
            }
        }
        out
    }

    /// Returns the row selection over the chosen row groups, one after another.
    fn selection(&self) -> RowSelection {
        let selectors: Vec<RowSelector> =
            self.rows.iter().flat_map(|s| s.iter().copied()).collect();
        RowSelection::from(selectors)
    }
}

/// Returns the rows of row group `rg` whose pages of leaf column `column`
/// may hold a value `keep` accepts as (min, max), or `None` without a page index.
fn page_rows(
    metadata: &ParquetMetaData,
    rg: usize,
    column: usize,
    keep: impl Fn(&ColumnIndexMetaData, usize) -> bool,
) -> Option<RowSelection> {
    let index = metadata.page_index_for_row_group(rg);
    let column_index = index.column_index(column)?;
    let pages = index.offset_index(column)?.page_locations();
    let rows = metadata.row_group(rg).num_rows() as usize;
    let ranges = (0..pages.len())
        .filter(|&p| keep(column_index, p))
        .map(|p| {
            let first = pages[p].first_row_index as usize;
            let next = pages
                .get(p + 1)
                .map_or(rows, |n| n.first_row_index as usize);
            first..next
        });
    Some(RowSelection::from_consecutive_ranges(ranges, rows))
}

/// Returns the root (= leaf) columns a scan of `columns` reads.
fn roots(metadata: &ParquetMetaData, layout: Layout, columns: Columns) -> Vec<usize> {
    let count = metadata.file_metadata().schema_descr().num_columns();
    if layout == Layout::Totals {
        // Series, time, total and ID: the same first three as profiles.parquet.
        return (0..count).collect();
    }
    let mut roots = vec![profiles::SERIES, profiles::TIME, profiles::TOTAL];
    if columns.samples {
        roots.extend([profiles::STACKTRACE_IDS, profiles::VALUES]);
    }
    if count > profiles::ID {
        roots.push(profiles::ID);
    }
    if columns.spans && count > profiles::SPAN_VALUES {
        roots.extend([
            profiles::SPAN_IDS,
            profiles::SPAN_STACKTRACE_IDS,
            profiles::SPAN_VALUES,
        ]);
    }
    roots.sort_unstable();
    roots
}

fn plan_profiles(
    metadata: &ParquetMetaData,
    layout: Layout,
    selected: &[bool],
    start: i64,
    end: i64,
    columns: Columns,
) -> ProfilesPlan {
    let mut plan = ProfilesPlan {
        row_groups: Vec::new(),
        rows: Vec::new(),
        roots: roots(metadata, layout, columns),
    };
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        let series_ok = stats_range_u32(rg.column(profiles::SERIES).statistics())
            .is_none_or(|(lo, hi)| any_selected(selected, lo, hi));
        let time_ok = stats_range_i64(rg.column(profiles::TIME).statistics())
            .is_none_or(|(lo, hi)| lo <= end && hi >= start);
        if !series_ok || !time_ok || rg.num_rows() == 0 {
            continue;
        }
        let rows = rg.num_rows() as usize;
        let by_series = page_rows(metadata, i, profiles::SERIES, |index, p| match index {
            ColumnIndexMetaData::INT32(x) => match (x.min_value(p), x.max_value(p)) {
                (Some(&lo), Some(&hi)) => any_selected(selected, lo as u32, hi as u32),
                _ => !x.is_null_page(p),
            },
            _ => true,
        });
        let by_time = page_rows(metadata, i, profiles::TIME, |index, p| match index {
            ColumnIndexMetaData::INT64(x) => match (x.min_value(p), x.max_value(p)) {
                (Some(&lo), Some(&hi)) => lo <= end && hi >= start,
                _ => !x.is_null_page(p),
            },
            _ => true,
        });
        let all = || RowSelection::from(vec![RowSelector::select(rows)]);
        let selection = match (by_series, by_time) {
            (Some(a), Some(b)) => a.intersection(&b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => all(),
        };
        if !selection.selects_any() {
            continue;
        }
        plan.row_groups.push(i);
        plan.rows.push(selection);
    }
    plan
}

#[allow(clippy::too_many_arguments)]
fn scan(
    ulid: Ulid,
    metadata: &Arc<ParquetMetaData>,
    layout: Layout,
    data: Sparse,
    selected: &[bool],
    start: i64,
    end: i64,
    read: Read,
    visitor: &mut dyn ProfileVisitor,
) -> Result<()> {
    if read == Read::Spans && !has_span_columns(metadata) {
        return Err(corrupt(
            ulid,
            "profiles.parquet has no span columns (written before format 3)",
        ));
    }
    if layout == Layout::Totals && read != Read::Totals {
        return Err(corrupt(
            ulid,
            format!("a {read:?} scan cannot read totals.parquet"),
        ));
    }
    let plan = plan_profiles(metadata, layout, selected, start, end, Columns::of(read));
    if plan.row_groups.is_empty() {
        return Ok(());
    }
    let reader_metadata =
        ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new())?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(data, reader_metadata);
    let projection = ProjectionMask::roots(builder.parquet_schema(), plan.roots.iter().copied());
    let batch_size = match read {
        Read::Samples => batch_rows(metadata, &plan.row_groups, profiles::VALUES),
        Read::Spans => batch_rows(metadata, &plan.row_groups, profiles::SPAN_VALUES),
        Read::Totals => BATCH_ROWS_WITHOUT_SAMPLES,
    };
    let selection = plan.selection();
    let reader = builder
        .with_projection(projection)
        .with_row_groups(plan.row_groups)
        .with_row_selection(selection)
        // Selectors skip unselected pages without reading them; a mask
        // would decode (and need) every page of a batch.
        .with_row_selection_policy(RowSelectionPolicy::Selectors)
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

/// Reads the series table and the file sizes its metadata records.
fn decode_series(
    ulid: Ulid,
    bytes: Bytes,
) -> Result<(Vec<SeriesEntry>, HashMap<String, FileHint>)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let hints = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == FILES_KEY))
        .and_then(|e| e.value.as_deref())
        .map(|v| {
            serde_json::from_str::<Vec<(String, u64, u64)>>(v)
                .map_err(|e| corrupt(ulid, format!("series.parquet {FILES_KEY}: {e}")))
        })
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .map(|(name, size, footer)| (name, FileHint { size, footer }))
        .collect();
    let reader = builder.with_batch_size(64 * 1024).build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
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
    Ok((out, hints))
}

/// Decodes the fetched row groups of a symbol file.
fn read_row_groups(
    (footer, data, row_groups): (Arc<Footer>, Sparse, Vec<usize>),
) -> Result<Vec<RecordBatch>> {
    if row_groups.is_empty() {
        return Ok(Vec::new());
    }
    let metadata =
        ArrowReaderMetadata::try_new(footer.metadata.clone(), ArrowReaderOptions::new())?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(data, metadata)
        .with_row_groups(row_groups)
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Splits the rows of a symbol table by their partition column, calling
/// `row` with the slot in `wanted` (sorted) of each wanted partition's rows.
fn by_partition(
    ulid: Ulid,
    batches: &[RecordBatch],
    partitions: u32,
    wanted: &[u32],
    mut row: impl FnMut(usize, &RecordBatch, usize),
) -> Result<()> {
    for batch in batches {
        let part = batch.column(0).as_primitive::<UInt32Type>();
        for i in 0..batch.num_rows() {
            let p = part.value(i);
            if p >= partitions {
                return Err(corrupt(
                    ulid,
                    format!("symbol row refers to partition {p} of {partitions}"),
                ));
            }
            if let Ok(slot) = wanted.binary_search(&p) {
                row(slot, batch, i);
            }
        }
    }
    Ok(())
}

/// Decodes the symbols of the `wanted` partitions (sorted) from the fetched
/// row groups of the five symbol files, in [`SYMBOL_FILES`] order.
fn decode_symbols(
    ulid: Ulid,
    partitions: u32,
    wanted: &[u32],
    files: Vec<(Arc<Footer>, Sparse, Vec<usize>)>,
) -> Result<Vec<Symbols>> {
    let mut out: Vec<Symbols> = wanted
        .iter()
        .map(|_| Symbols {
            strings: Vec::new(),
            mappings: Vec::new(),
            functions: Vec::new(),
            locations: Vec::new(),
            stacks: StackTree::default(),
        })
        .collect();
    let mut files = files.into_iter();
    let mut next = || read_row_groups(files.next().expect("five symbol files"));

    by_partition(ulid, &next()?, partitions, wanted, |p, b, i| {
        out[p]
            .strings
            .push(b.column(1).as_string::<i32>().value(i).to_owned());
    })?;
    by_partition(ulid, &next()?, partitions, wanted, |p, b, i| {
        out[p].mappings.push(Mapping {
            memory_start: b.column(1).as_primitive::<UInt64Type>().value(i),
            memory_limit: b.column(2).as_primitive::<UInt64Type>().value(i),
            file_offset: b.column(3).as_primitive::<UInt64Type>().value(i),
            filename: b.column(4).as_primitive::<UInt32Type>().value(i),
            build_id: b.column(5).as_primitive::<UInt32Type>().value(i),
            flags: b.column(6).as_primitive::<UInt8Type>().value(i),
        });
    })?;
    by_partition(ulid, &next()?, partitions, wanted, |p, b, i| {
        out[p].functions.push(Function {
            name: b.column(1).as_primitive::<UInt32Type>().value(i),
            system_name: b.column(2).as_primitive::<UInt32Type>().value(i),
            filename: b.column(3).as_primitive::<UInt32Type>().value(i),
            start_line: b.column(4).as_primitive::<Int64Type>().value(i),
        });
    })?;
    by_partition(ulid, &next()?, partitions, wanted, |p, b, i| {
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
    by_partition(ulid, &next()?, partitions, wanted, |p, b, i| {
        out[p]
            .stacks
            .parents
            .push(b.column(1).as_primitive::<UInt32Type>().value(i));
        out[p]
            .stacks
            .locations
            .push(b.column(2).as_primitive::<UInt32Type>().value(i));
    })?;
    for (s, &p) in out.iter().zip(wanted) {
        check_symbols(ulid, p as usize, s)?;
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

    /// Scans a whole `profiles.parquet` held in memory.
    fn scan_bytes(
        bytes: Bytes,
        selected: &[bool],
        start: i64,
        end: i64,
        read: Read,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional)
            .parse_and_finish(&bytes)?;
        let data = Sparse::whole(bytes);
        scan(
            Ulid::nil(),
            &Arc::new(metadata),
            Layout::Profiles,
            data,
            selected,
            start,
            end,
            read,
            visitor,
        )
    }

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
        scan_bytes(bytes, &[true, true], 0, 100, Read::Samples, &mut rows).unwrap();
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
        scan_bytes(bytes.clone(), &[true], 0, 100, Read::Spans, &mut spans).unwrap();
        assert_eq!(spans.0, vec![(7, 0xa, 1, 2), (7, 0xb, 2, 1)]);
        // The totals scan is unchanged by the new columns.
        let mut totals = Rows(Vec::new());
        scan_bytes(bytes, &[true], 0, 100, Read::Samples, &mut totals).unwrap();
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
        scan_bytes(
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
        let err = scan_bytes(bytes, &[true, true], 0, 100, Read::Spans, &mut spans);
        assert!(err.unwrap_err().to_string().contains("no span columns"));
    }
}
