//! The compactor: merges a tenant's blocks into fewer, larger ones, counting
//! each replicated profile once, and deletes blocks past their retention.
//!
//! With replication factor 3, three ingesters each flush a level-1 block
//! holding a copy of the same profiles. The compactor, in passes every
//! [`CompactorConfig::compaction_interval`], for every tenant (a top-level prefix of the
//! store):
//!
//! 1. **Deletes** blocks whose deletion mark is older than
//!    [`CompactorConfig::deletion_delay`]: `meta.json` first, so a half-deleted
//!    block never reads as complete, the mark last, so a pass interrupted
//!    half-way finishes the job next time.
//! 2. **Marks** blocks past the tenant's retention, and blocks whose data
//!    another block holds ([`ember_block::superseded`]: left over when a pass
//!    stopped between writing a merged block and marking its sources).
//! 3. **Merges**, for each of [`CompactorConfig::block_ranges`] in turn, the
//!    unmarked, unsuperseded blocks lying inside one range of that length
//!    (aligned to the epoch) once the range has ended at least
//!    [`CompactorConfig::settle_delay`] ago: the first range gathers level-1
//!    blocks, the next ones the blocks the previous range produced and any
//!    block a shorter range could not hold. A merge writes one block with the
//!    union of the series, each profile ID once (ID 0, from blocks older than
//!    IDs, always kept), symbols rebuilt per service, level = max(levels)+1 and
//!    sources = the level-1 blocks it holds; once its `meta.json` is written,
//!    the merged blocks get a deletion mark.
//!
//! Readers skip superseded blocks at once ([`ember_block::superseded`]), and
//! a marked block stays readable for the deletion delay, so a query that
//! listed blocks before a merge finishes reading them. Blocks without
//! `meta.json` (uploads in progress) are left alone.

mod config;
mod error;
mod merge;
mod metrics;
mod plan;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ember_block::{
    Block, BlockMeta, Compaction, DELETION_MARK_FILE, DeletionMark, META_FILE, block_file,
    blocks_prefix, downsample, superseded, write_block,
};
use futures::StreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use tracing::{Instrument, debug, info, info_span, warn};
use ulid::Ulid;

pub use config::CompactorConfig;
pub use error::{Error, Result};
pub use metrics::CompactorMetrics;

use ember_time::{SharedClock, nanos, unix_nanos};

use crate::{merge::Merger, plan::Group};

/// What one pass did, summed over tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Tenants looked at.
    pub tenants: usize,
    /// Groups of blocks merged into one.
    pub groups_merged: usize,
    /// Merged blocks uploaded.
    pub blocks_written: usize,
    /// Deletion marks written: merged blocks, superseded blocks and expired ones.
    pub blocks_marked: usize,
    /// Of `blocks_marked`, blocks past their tenant's retention.
    pub blocks_expired: usize,
    /// Blocks deleted after their deletion delay.
    pub blocks_deleted: usize,
    /// Profiles in the blocks merged, replicas included.
    pub profiles_before: u64,
    /// Profiles in the blocks written.
    pub profiles_after: u64,
    /// Tenants, merges and deletions that failed (and are retried next pass).
    pub failures: usize,
}

impl Report {
    /// Returns whether the pass changed anything or failed at anything.
    pub fn is_empty(&self) -> bool {
        *self
            == Self {
                tenants: self.tenants,
                ..Self::default()
            }
    }
}

/// The retention of each tenant; zero keeps its blocks forever.
pub type Retention = Arc<dyn Fn(&str) -> Duration + Send + Sync>;

/// Merges and deletes the blocks of every tenant of a store.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    config: CompactorConfig,
    /// Written into every merged block's `meta.json` as its source.
    id: String,
    retention: Retention,
    clock: SharedClock,
    /// `meta.json` of blocks seen: blocks are immutable, so it never goes stale.
    metas: Mutex<HashMap<(String, Ulid), BlockMeta>>,
    /// Held by a pass, so that passes never overlap.
    pass: tokio::sync::Mutex<()>,
    metrics: CompactorMetrics,
}

impl fmt::Debug for Compactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compactor")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// A block directory as listed: its files and, if marked, its mark.
#[derive(Debug, Default)]
struct Listed {
    files: Vec<Path>,
    has_meta: bool,
    mark: Option<ObjectMeta>,
}

impl Compactor {
    /// Returns a compactor of the blocks in `store`, after checking `config`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        config: CompactorConfig,
        retention: Retention,
        clock: SharedClock,
    ) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            store,
            config,
            id: "compactor".into(),
            retention,
            clock,
            metas: Mutex::new(HashMap::new()),
            pass: tokio::sync::Mutex::new(()),
            metrics: CompactorMetrics::detached(),
        })
    }

    /// Records passes, merges and deletions into `metrics`.
    pub fn with_metrics(mut self, metrics: CompactorMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Names this compactor in the `meta.json` of the blocks it writes.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Returns the configuration.
    pub fn config(&self) -> &CompactorConfig {
        &self.config
    }

    /// Runs passes every [`CompactorConfig::compaction_interval`] until `shutdown`
    /// completes. A pass under way when it does stops after its current merge,
    /// so no upload is left half-done.
    pub async fn run<F: Future>(self: Arc<Self>, shutdown: F) {
        let stop = AtomicBool::new(false);
        tokio::pin!(shutdown);
        loop {
            {
                let pass = self.pass(&stop);
                tokio::pin!(pass);
                tokio::select! {
                    result = &mut pass => {
                        if let Err(e) = result {
                            warn!(error = %e, "compaction pass failed");
                        }
                    }
                    _ = &mut shutdown => {
                        stop.store(true, Ordering::Release);
                        let _ = pass.await;
                        info!("compactor stopped");
                        return;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.compaction_interval) => {}
                _ = &mut shutdown => {
                    info!("compactor stopped");
                    return;
                }
            }
        }
    }

    /// Runs one pass over every tenant: deletions, marks, then merges. A
    /// tenant, merge or deletion that fails is logged, counted in
    /// [`Report::failures`] and retried next pass; only listing the tenants
    /// fails the pass.
    pub async fn run_once(&self) -> Result<Report> {
        self.pass(&AtomicBool::new(false)).await
    }

    /// Runs a pass and records it: a pass that fails, or in which anything
    /// fails, is a failed run.
    async fn pass(&self, stop: &AtomicBool) -> Result<Report> {
        let started = std::time::Instant::now();
        let result = self.pass_unrecorded(stop).await;
        let m = &self.metrics;
        m.runs.inc();
        m.run_duration.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(report) if report.failures == 0 => {
                let now = self
                    .clock
                    .now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                m.last_successful_run.set(now.as_secs_f64());
            }
            _ => m.run_failures.inc(),
        }
        result
    }

    async fn pass_unrecorded(&self, stop: &AtomicBool) -> Result<Report> {
        let _pass = self.pass.lock().await;
        let started = std::time::Instant::now();
        let tenants = self.tenants().await?;
        let mut report = Report::default();
        for tenant in tenants {
            if stop.load(Ordering::Acquire) {
                break;
            }
            report.tenants += 1;
            let span = info_span!("compact_tenant", tenant = %tenant);
            if let Err(e) = self
                .compact_tenant(&tenant, stop, &mut report)
                .instrument(span)
                .await
            {
                report.failures += 1;
                warn!(tenant, error = %e, "compaction of tenant failed");
            }
        }
        if !report.is_empty() {
            info!(
                tenants = report.tenants,
                groups_merged = report.groups_merged,
                blocks_written = report.blocks_written,
                blocks_marked = report.blocks_marked,
                blocks_expired = report.blocks_expired,
                blocks_deleted = report.blocks_deleted,
                profiles_before = report.profiles_before,
                profiles_after = report.profiles_after,
                failures = report.failures,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "compaction pass done"
            );
        }
        Ok(report)
    }

    /// Returns the tenants: the top-level prefixes of the store.
    async fn tenants(&self) -> Result<Vec<String>> {
        let listing = self.store.list_with_delimiter(None).await?;
        let mut tenants: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        tenants.sort();
        Ok(tenants)
    }

    /// Lists the block directories of `tenant` with their files.
    async fn list(&self, tenant: &str) -> Result<BTreeMap<Ulid, Listed>> {
        let prefix = blocks_prefix(tenant);
        let mut out: BTreeMap<Ulid, Listed> = BTreeMap::new();
        let mut listing = self.store.list(Some(&prefix));
        while let Some(object) = listing.next().await {
            let object = match object {
                Ok(o) => o,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(mut parts) = object.location.prefix_match(&prefix) else {
                continue;
            };
            let Some(ulid) = parts
                .next()
                .and_then(|p| Ulid::from_string(p.as_ref()).ok())
            else {
                continue;
            };
            let name: Vec<_> = parts.collect();
            let entry = out.entry(ulid).or_default();
            match name.as_slice() {
                [n] if n.as_ref() == META_FILE => entry.has_meta = true,
                [n] if n.as_ref() == DELETION_MARK_FILE => {
                    entry.mark = Some(object.clone());
                    continue;
                }
                _ => {}
            }
            entry.files.push(object.location);
        }
        Ok(out)
    }

    /// Returns the `meta.json` of a complete block, from the cache if seen.
    async fn meta(&self, tenant: &str, ulid: Ulid) -> Result<BlockMeta> {
        let key = (tenant.to_owned(), ulid);
        if let Some(m) = self.metas.lock().expect("poisoned").get(&key) {
            return Ok(m.clone());
        }
        let bytes = self
            .store
            .get(&block_file(tenant, ulid, META_FILE))
            .await?
            .bytes()
            .await?;
        let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            block: ulid.to_string(),
            message: format!("meta.json: {e}"),
        })?;
        if meta.ulid != ulid {
            return Err(Error::Corrupt {
                block: ulid.to_string(),
                message: format!("meta.json names block {}", meta.ulid),
            });
        }
        self.remember(tenant, &meta);
        Ok(meta)
    }

    /// Keeps the meta of a block read or written, for later passes and the
    /// bucket index.
    fn remember(&self, tenant: &str, meta: &BlockMeta) {
        self.metas
            .lock()
            .expect("poisoned")
            .insert((tenant.to_owned(), meta.ulid), meta.clone());
    }

    /// Returns why a marked block goes: `retention` when all of it is older
    /// than its tenant's retention, else `compacted` (merged or superseded;
    /// also when its meta.json is unreadable, which only merges leave behind).
    async fn deletion_reason(&self, tenant: &str, ulid: Ulid, now_nanos: i64) -> &'static str {
        let retention = (self.retention)(tenant);
        if retention.is_zero() {
            return "compacted";
        }
        match self.meta(tenant, ulid).await {
            Ok(m) if m.max_time_nanos < now_nanos.saturating_sub(nanos(retention)) => "retention",
            _ => "compacted",
        }
    }

    /// Returns when a block was marked: the time in its mark, or when the
    /// mark was written if it does not parse.
    async fn mark_time(&self, ulid: Ulid, mark: &ObjectMeta) -> Result<SystemTime> {
        let bytes = self.store.get(&mark.location).await?.bytes().await?;
        Ok(match serde_json::from_slice::<DeletionMark>(&bytes) {
            Ok(m) => UNIX_EPOCH + Duration::from_secs(m.deletion_time.max(0) as u64),
            Err(e) => {
                warn!(block = %ulid, error = %e, "unreadable deletion mark; using its modification time");
                mark.last_modified.into()
            }
        })
    }

    /// Writes the deletion mark of a block and counts it; returns whether it
    /// did (a failure is logged, counted, and retried by the next pass).
    async fn mark(&self, tenant: &str, ulid: Ulid, why: &'static str, report: &mut Report) -> bool {
        match self.write_mark(tenant, ulid).await {
            Ok(()) => {
                report.blocks_marked += 1;
                info!(tenant, block = %ulid, why, "marked block for deletion");
                true
            }
            Err(e) => {
                report.failures += 1;
                warn!(tenant, block = %ulid, why, error = %e, "marking block for deletion failed");
                false
            }
        }
    }

    async fn write_mark(&self, tenant: &str, ulid: Ulid) -> Result<()> {
        let now = self.clock.now();
        let mark = DeletionMark {
            id: ulid,
            deletion_time: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            version: DeletionMark::VERSION,
        };
        let bytes = serde_json::to_vec_pretty(&mark).map_err(|source| Error::Json {
            what: "deletion mark",
            source,
        })?;
        self.store
            .put(
                &block_file(tenant, ulid, DELETION_MARK_FILE),
                PutPayload::from(bytes),
            )
            .await?;
        Ok(())
    }

    /// Deletes every file of a block: `meta.json` first, its mark last.
    async fn delete(&self, tenant: &str, ulid: Ulid, listed: &Listed) -> Result<()> {
        let meta = block_file(tenant, ulid, META_FILE);
        if listed.has_meta {
            delete_if_present(&self.store, &meta).await?;
        }
        self.metas
            .lock()
            .expect("poisoned")
            .remove(&(tenant.to_owned(), ulid));
        // Owned paths: a batch delete where the store has one (S3, Azure).
        let rest: Vec<Result<Path, object_store::Error>> = listed
            .files
            .iter()
            .filter(|f| **f != meta)
            .cloned()
            .map(Ok)
            .collect();
        let mut deleted = self
            .store
            .delete_stream(futures::stream::iter(rest).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(mark) = &listed.mark {
            delete_if_present(&self.store, &mark.location).await?;
        }
        Ok(())
    }

    async fn compact_tenant(
        &self,
        tenant: &str,
        stop: &AtomicBool,
        report: &mut Report,
    ) -> Result<()> {
        let now = self.clock.now();
        let now_nanos = unix_nanos(now);
        let listed = self.list(tenant).await?;

        // 1. Deletions, and the blocks left to look at: complete and unmarked.
        let mut metas = Vec::new();
        for (ulid, block) in &listed {
            if let Some(mark) = &block.mark {
                let marked = match self.mark_time(*ulid, mark).await {
                    Ok(t) => t,
                    // Deleted since the listing (by another pass?): nothing to do.
                    Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => continue,
                    Err(e) => {
                        report.failures += 1;
                        warn!(tenant, block = %ulid, error = %e, "reading deletion mark failed");
                        continue;
                    }
                };
                if now < marked + self.config.deletion_delay {
                    continue;
                }
                let reason = self.deletion_reason(tenant, *ulid, now_nanos).await;
                match self.delete(tenant, *ulid, block).await {
                    Ok(()) => {
                        report.blocks_deleted += 1;
                        self.metrics
                            .blocks_deleted
                            .with_label_values(&[reason])
                            .inc();
                        info!(tenant, block = %ulid, "deleted block");
                    }
                    Err(e) => {
                        report.failures += 1;
                        warn!(tenant, block = %ulid, error = %e, "deleting block failed");
                    }
                }
                continue;
            }
            if !block.has_meta {
                debug!(tenant, block = %ulid, "block without meta.json (upload in progress?) left alone");
                continue;
            }
            match self.meta(tenant, *ulid).await {
                Ok(m) => metas.push(m),
                Err(e) => {
                    report.failures += 1;
                    warn!(tenant, block = %ulid, error = %e, "skipping unreadable block");
                }
            }
        }

        // 2. Marks: expired blocks, then blocks whose data another block holds.
        let retention = (self.retention)(tenant);
        if !retention.is_zero() {
            let oldest = now_nanos.saturating_sub(nanos(retention));
            let mut kept = Vec::with_capacity(metas.len());
            for m in metas {
                if m.max_time_nanos < oldest {
                    if self.mark(tenant, m.ulid, "retention", report).await {
                        report.blocks_expired += 1;
                    }
                } else {
                    kept.push(m);
                }
            }
            metas = kept;
        }
        let old = superseded(&metas);
        for ulid in &old {
            self.mark(tenant, *ulid, "superseded", report).await;
        }
        metas.retain(|m| !old.contains(&m.ulid));

        // 3. Merges, shortest range first, so that the blocks a range
        // produces can be merged by the next one in the same pass.
        let complete_before = now_nanos.saturating_sub(nanos(self.config.settle_delay));
        for (stage, range) in self.config.block_ranges.iter().enumerate() {
            // Pre-aggregated copies go with their raw block; never merged.
            let raw: Vec<BlockMeta> = metas
                .iter()
                .filter(|m| !m.is_downsampled())
                .cloned()
                .collect();
            for group in plan::groups(&raw, stage, nanos(*range), complete_before) {
                if stop.load(Ordering::Acquire) {
                    return Ok(());
                }
                let merged = match self.merge(tenant, &group, report).await {
                    Ok(m) => m,
                    Err(e) => {
                        report.failures += 1;
                        warn!(
                            tenant,
                            blocks = group.blocks.len(),
                            range_start = group.start,
                            error = %e,
                            "merging blocks failed"
                        );
                        continue;
                    }
                };
                for source in &group.blocks {
                    // Should this fail, the next pass marks it as superseded.
                    self.mark(tenant, source.ulid, "merged", report).await;
                }
                metas.retain(|m| group.blocks.iter().all(|b| b.ulid != m.ulid));
                metas.extend(merged);
            }
        }

        // 4. The bucket index of what the pass left.
        if let Err(e) = self.write_index(tenant).await {
            report.failures += 1;
            warn!(tenant, error = %e, "writing the bucket index failed");
        }
        Ok(())
    }

    /// Writes `tenant`'s bucket index: the metas of every block listed with
    /// its `meta.json`, marked ones included, since queriers still see them.
    async fn write_index(&self, tenant: &str) -> Result<()> {
        let mut metas = Vec::new();
        for (ulid, block) in self.list(tenant).await? {
            if !block.has_meta {
                continue;
            }
            match self.meta(tenant, ulid).await {
                Ok(meta) => metas.push(meta),
                // Deleted since the listing: not in the index either.
                Err(Error::ObjectStore(object_store::Error::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        let now = unix_nanos(self.clock.now()) / 1_000_000_000;
        let blocks = metas.len();
        ember_block::write_index(&self.store, tenant, metas, now).await?;
        debug!(tenant, blocks, "wrote bucket index");
        Ok(())
    }

    /// Records the upload of a pre-aggregated copy of a merged block. A copy
    /// that failed is only a slower read (queries read the raw block
    /// instead): it is counted as a failure and not retried.
    async fn record_copy(
        &self,
        tenant: &str,
        ulid: Ulid,
        copy: ember_block::Result<BlockMeta>,
        report: &mut Report,
    ) {
        match copy {
            Ok(meta) => {
                // The bucket index lists it without reading it back.
                self.remember(tenant, &meta);
                self.metrics.blocks_written.inc();
                self.metrics.written_bytes.inc_by(meta.stats.bytes);
                report.blocks_written += 1;
                info!(
                    tenant,
                    block = %ulid,
                    resolution_seconds = meta.resolution_nanos / 1_000_000_000,
                    profiles = meta.stats.profiles,
                    bytes = meta.stats.bytes,
                    "wrote pre-aggregated copy"
                );
            }
            Err(e) => {
                report.failures += 1;
                warn!(tenant, block = %ulid, error = %e, "uploading pre-aggregated copy failed");
                self.delete_unfinished(tenant, ulid).await;
            }
        }
    }

    /// Deletes what an upload that failed left of block `ulid`. Best effort:
    /// a block without `meta.json` is never read, but would stay forever.
    async fn delete_unfinished(&self, tenant: &str, ulid: Ulid) {
        let listed = self.list_block(tenant, ulid).await;
        for path in listed.unwrap_or_default() {
            let _ = delete_if_present(&self.store, &path).await;
        }
    }

    /// Returns the files of block `ulid`.
    async fn list_block(&self, tenant: &str, ulid: Ulid) -> Result<Vec<Path>> {
        let prefix = Path::from(format!("{}/{ulid}", blocks_prefix(tenant)));
        let mut listing = self.store.list(Some(&prefix));
        let mut files = Vec::new();
        while let Some(object) = listing.next().await {
            files.push(object?.location);
        }
        Ok(files)
    }

    /// Merges the blocks of `group` into one and uploads it; returns its meta,
    /// or `None` when the blocks held no profile.
    async fn merge(
        &self,
        tenant: &str,
        group: &Group,
        report: &mut Report,
    ) -> Result<Option<BlockMeta>> {
        let started = std::time::Instant::now();
        let mut merger = Merger::default();
        for meta in &group.blocks {
            let block = Arc::new(Block::open(self.store.clone(), tenant, meta.ulid).await?);
            let view = block.view(false).await?;
            // The IDs first: a replica of profiles already in is skipped
            // without reading its samples or symbols.
            let (m, v, (rows, new)) = tokio::task::spawn_blocking(move || -> Result<_> {
                let counts = merger.count_new(&view)?;
                Ok((merger, view, counts))
            })
            .await??;
            merger = m;
            if new == 0 {
                merger.skip(rows);
                continue;
            }
            let view = v.with_symbols().await?;
            merger = tokio::task::spawn_blocking(move || -> Result<Merger> {
                merger.add(&view)?;
                Ok(merger)
            })
            .await??;
        }
        let sources: BTreeSet<Ulid> = group
            .blocks
            .iter()
            .flat_map(|m| m.sources().iter().copied())
            .collect();
        let compaction = Compaction {
            level: group
                .blocks
                .iter()
                .map(|m| m.compaction.level)
                .max()
                .unwrap_or(1)
                + 1,
            sources: sources.into_iter().collect(),
        };
        let (profiles_in, duplicates) = (merger.profiles_in, merger.duplicates);
        report.groups_merged += 1;
        report.profiles_before += profiles_in;
        self.metrics
            .blocks_compacted
            .inc_by(group.blocks.len() as u64);
        if merger.profiles() == 0 {
            info!(
                tenant,
                blocks = group.blocks.len(),
                "merged blocks hold no profile; nothing to write"
            );
            return Ok(None);
        }
        let ulid = Ulid::from_datetime(self.clock.now());
        let source = self.id.clone();
        let level = compaction.level;
        let resolutions: Vec<i64> = self
            .config
            .downsample_resolutions
            .iter()
            .map(|r| nanos(*r))
            .filter(|&r| group.end - group.start >= 4 * r)
            .collect();
        let copy_ulids: Vec<Ulid> = resolutions
            .iter()
            .map(|_| Ulid::from_datetime(self.clock.now()))
            .collect();
        let (store, owner, ulids) = (self.store.clone(), tenant.to_owned(), copy_ulids.clone());
        // The merged rows are held once, packed; the block and each copy
        // decode them one at a time and stream to the store, a row group
        // and a part at a time.
        let (written, copies) = tokio::task::spawn_blocking(move || {
            let merged = merger.finish(ulid, source, compaction);
            let parts = merged.parts();
            let written = write_block(&store, &owner, &parts, merged.profiles());
            let copies: Vec<_> = match &written {
                Ok(_) => resolutions
                    .iter()
                    .zip(&ulids)
                    .map(|(&r, &copy)| {
                        downsample::write_downsampled(
                            &store,
                            &owner,
                            &parts,
                            merged.profiles(),
                            r,
                            copy,
                        )
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            (written, copies)
        })
        .await
        .map_err(ember_block::Error::from)?;
        let meta = match written {
            Ok(meta) => meta,
            Err(e) => {
                self.delete_unfinished(tenant, ulid).await;
                return Err(e.into());
            }
        };
        self.metrics.blocks_written.inc();
        self.metrics.written_bytes.inc_by(meta.stats.bytes);
        self.remember(tenant, &meta);
        for (copy, result) in copy_ulids.into_iter().zip(copies) {
            self.record_copy(tenant, copy, result, report).await;
        }
        report.blocks_written += 1;
        report.profiles_after += meta.stats.profiles;
        info!(
            tenant,
            block = %ulid,
            level,
            sources = group.blocks.len(),
            range_start = group.start,
            range_end = group.end,
            profiles_in,
            duplicates,
            profiles = meta.stats.profiles,
            bytes = meta.stats.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "merged blocks"
        );
        Ok(Some(meta))
    }
}

async fn delete_if_present(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
