//! The ingester keeps each tenant's recent profiles in an in-memory head,
//! symbolized and de-duplicated as they arrive, and turns heads into
//! immutable Parquet blocks in object storage.
//!
//! A head is cut when the wall clock enters a new `max_block_duration`
//! window (aligned to the epoch), when it holds `max_block_bytes`, and on
//! shutdown. A cut head stays queryable while it is
//! flushed and is dropped only once its block is uploaded; the block keeps the
//! head's ULID so that queriers never count both.
//!
//! Time comes from the injected [`Clock`]: tests cut heads by moving a manual
//! clock, never by sleeping.
//!
//! With a write-ahead log ([`Ingester::open`]) every profile is fsynced to the
//! log before [`Ingester::append`] returns, the log is replayed into heads on
//! start, and a segment is deleted only once every head holding one of its
//! profiles is uploaded. A cut rotates the log so that the cut head's profiles
//! sit in closed segments.

mod active;
mod config;
mod head;
mod metrics;
mod replay;
mod service;
mod wal_record;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::Path,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ember_model::{
    ProfileId,
    ingest::{IngestSink, ProfileWrite, SeriesSpec},
    pprof::FlatProfile,
};
use ember_proto::error::{Code, ErrorCode};
use ember_query::{Need, Plan, RecentData, RecentSources, SharedSource, SourceView};
use ember_time::SharedClock;
use object_store::{ObjectStore, ObjectStoreExt};
use thiserror::Error;
use tracing::{info, warn};
use ulid::Ulid;

pub use active::{ActiveSeries, SeriesLimitExceeded, fingerprint};
pub use config::IngesterConfig;
pub use ember_wal::WalMetrics;
pub use head::Head;
pub use metrics::{HeadCounts, IngesterMetrics};
pub use replay::{ReplayProgress, ReplaySnapshot, thousands};
pub use service::{IngesterApi, plan_of};

#[derive(Debug, Error)]
pub enum Error {
    #[error("the ingester is shutting down and no longer accepts writes")]
    Stopping,
    #[error("flushing block: {0}")]
    Block(#[from] ember_block::Error),
    #[error(transparent)]
    Wal(#[from] ember_wal::Error),
    #[error(
        "tenant {tenant:?} has {active} active series and this push adds {new}, more than the limit of {limit} (limits.max_active_series); a series stays active for {window:?} after its last profile"
    )]
    SeriesLimit {
        tenant: String,
        limit: usize,
        active: usize,
        new: usize,
        window: Duration,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl ErrorCode for Error {
    fn code(&self) -> Code {
        match self {
            // Leaving, or a log that cannot be written: another replica, or a
            // retry later, can take the write.
            Error::Stopping | Error::Wal(_) => Code::Unavailable,
            Error::SeriesLimit { .. } => Code::RateLimited,
            Error::Block(_) => Code::Internal,
        }
    }
}

ember_proto::impl_into_status!(Error);

#[derive(Debug)]
struct TenantHeads {
    active: Arc<Head>,
    /// Series seen within `max_block_duration`, for the active-series limit.
    series: ActiveSeries,
    /// Cut heads waiting for (or in) upload, oldest first.
    flushing: Vec<Arc<Head>>,
    /// Uploaded heads, still answering queries until the given time.
    flushed: Vec<(Arc<Head>, SystemTime)>,
}

/// Returns which `length`-long window since the epoch `t` falls in. Heads are
/// cut when the window changes, so every ingester cuts at the same instants
/// (10:00, 11:00, ...) and replicas' blocks cover the same hours, which the
/// compactor merges together.
fn cut_window(t: SystemTime, length: Duration) -> u128 {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_nanos() / length.as_nanos().max(1)
}

/// How long an uploaded head keeps answering queries. A querier asks an
/// ingester which profiles it has, then to merge those: the head must not
/// vanish in between, or its profiles would be missed (the querier skips
/// their copies in blocks, having been told the ingester holds them).
const FLUSHED_HEAD_GRACE: Duration = Duration::from_secs(30);

/// The ingester of one process.
#[derive(Debug)]
pub struct Ingester {
    config: IngesterConfig,
    /// Written into every block's `meta.json` as its source.
    id: String,
    clock: SharedClock,
    store: Arc<dyn ObjectStore>,
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantHeads>>>>,
    stopping: AtomicBool,
    /// Serializes flushes so a periodic flush and shutdown never upload twice.
    flush_lock: tokio::sync::Mutex<()>,
    /// The write-ahead log; `None` keeps everything in memory only (tests, bench).
    wal: Option<ember_wal::Wal>,
    /// Held shared from a WAL append until its profile is in a head, and
    /// exclusively while choosing which segments to delete, so that no logged
    /// profile is ever outside both a head and the segments kept.
    wal_checkpoint: RwLock<()>,
    metrics: IngesterMetrics,
    /// Records replayed and skipped as corrupt by [`Ingester::open`], counted
    /// into the log's metrics by [`Ingester::with_metrics`].
    replayed: (u64, u64),
}

impl Ingester {
    /// Returns an ingester that keeps everything in memory only (tests,
    /// benchmarks): no write-ahead log.
    pub fn new(config: IngesterConfig, store: Arc<dyn ObjectStore>, clock: SharedClock) -> Self {
        Self {
            config,
            id: "ingester".into(),
            clock,
            store,
            tenants: RwLock::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            flush_lock: tokio::sync::Mutex::new(()),
            wal: None,
            wal_checkpoint: RwLock::new(()),
            metrics: IngesterMetrics::detached(),
            replayed: (0, 0),
        }
    }

    /// Records heads, cuts and flushes into `metrics`, and the write-ahead
    /// log's appends and what [`Ingester::open`] replayed into `wal`.
    pub fn with_metrics(mut self, metrics: IngesterMetrics, wal: ember_wal::WalMetrics) -> Self {
        for heads in self.tenants.get_mut().expect("poisoned").values() {
            metrics.add_head(heads.lock().expect("poisoned").active.counts(), 1);
        }
        self.metrics = metrics;
        wal.replayed_records.inc_by(self.replayed.0);
        wal.corrupt_records.inc_by(self.replayed.1);
        self.wal = self.wal.take().map(|w| w.with_metrics(wal));
        self
    }

    /// Names this ingester in the `meta.json` of the blocks it writes.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Opens an ingester with a write-ahead log in `wal_dir`: replays the log
    /// into heads (which are cut at once, so the next flush uploads them) and
    /// logs every later append. Damaged records are skipped and reported with
    /// `warn!`; they never stop the start. Profiles of a head whose block is
    /// already in object storage (a crash after its upload, before its segments
    /// were deleted) are not replayed again.
    pub async fn open(
        config: IngesterConfig,
        store: Arc<dyn ObjectStore>,
        clock: SharedClock,
        wal_dir: &Path,
    ) -> Result<Self> {
        Self::open_with_progress(config, store, clock, wal_dir, ReplayProgress::shared()).await
    }

    /// [`Ingester::open`], reporting how far the replay has come in
    /// `progress` (finished when this returns, whatever the outcome) and
    /// logging it every few seconds.
    pub async fn open_with_progress(
        config: IngesterConfig,
        store: Arc<dyn ObjectStore>,
        clock: SharedClock,
        wal_dir: &Path,
        progress: Arc<ReplayProgress>,
    ) -> Result<Self> {
        let logger = progress.clone().log_periodically();
        let opened = Self::replay_and_open(config, store, clock, wal_dir, progress.clone()).await;
        progress.finish();
        logger.abort();
        opened
    }

    async fn replay_and_open(
        config: IngesterConfig,
        store: Arc<dyn ObjectStore>,
        clock: SharedClock,
        wal_dir: &Path,
        progress: Arc<ReplayProgress>,
    ) -> Result<Self> {
        let options = config.wal_options();
        // Locked before it is read: another process must not replay or append
        // to the same segments.
        let lock = ember_wal::DirLock::acquire(wal_dir)?;
        let dir = wal_dir.to_path_buf();
        let reading = progress.clone();
        let (records, report) =
            tokio::task::spawn_blocking(move || ember_wal::replay_with(&dir, &reading.wal))
                .await
                .map_err(ember_block::Error::from)??;
        // The cuts first: each says which head a tenant's profiles before it
        // went to, so heads are rebuilt as their profiles are decoded.
        let cuts: Vec<(String, Ulid)> = records
            .iter()
            .filter(|r| wal_record::is_cut(&r.payload))
            .filter_map(|r| match wal_record::decode(&r.payload) {
                Ok(wal_record::Entry::Cut { tenant, head }) => Some((tenant, head)),
                _ => None,
            })
            .collect();

        // Heads whose block made it to object storage (meta.json is uploaded
        // last), or whose data a compacted block holds: the compactor may have
        // merged and deleted the block since, and uploading it again would
        // race that deletion (a block with meta.json but without every file).
        let mut uploaded = HashSet::new();
        let mut compacted: HashMap<String, HashSet<Ulid>> = HashMap::new();
        for (tenant, head) in &cuts {
            let meta = ember_block::block_file(tenant, *head, "meta.json");
            if store.head(&meta).await.is_ok() {
                uploaded.insert((tenant.clone(), *head));
                continue;
            }
            if !compacted.contains_key(tenant) {
                // Best effort: without the store (an outage) the head is
                // uploaded again once it is back, as before.
                let sources = compacted_sources(&store, tenant)
                    .await
                    .unwrap_or_else(|e| {
                        warn!(tenant, error = %e, "listing compacted blocks failed; replayed heads will be uploaded");
                        HashSet::new()
                    });
                compacted.insert(tenant.clone(), sources);
            }
            if compacted[tenant].contains(head) {
                uploaded.insert((tenant.clone(), *head));
            }
        }

        let dir = wal_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut ingester = Self::new(config, store, clock);
            // Per tenant, the heads of its cuts in log order: a profile goes
            // to the head of the tenant's next cut, or to a new head after
            // its last one.
            let mut next_cuts: HashMap<String, VecDeque<Ulid>> = HashMap::new();
            for (tenant, head) in cuts {
                next_cuts.entry(tenant).or_default().push_back(head);
            }
            let mut open: HashMap<String, Rebuilt> = HashMap::new();
            let (mut bad, mut already_uploaded) = (0usize, 0usize);
            progress.start_records(records.len());
            for_each_decoded(&records, |segment, offset, entry| {
                progress.record_done();
                match entry {
                    Ok(wal_record::Entry::Profile(r)) => {
                        let rebuilt = open.entry(r.tenant.clone()).or_insert_with(|| {
                            let ulid = match next_cuts.get(&r.tenant).and_then(|c| c.front()) {
                                Some(&ulid) => ulid,
                                // After the tenant's last cut (`Ulid::default` is nil).
                                None => Ulid::new(),
                            };
                            let skip = uploaded.contains(&(r.tenant.clone(), ulid));
                            Rebuilt {
                                head: (!skip).then(|| Head::with_ulid(ulid, ingester.clock.now())),
                                ulid,
                                profiles: 0,
                            }
                        });
                        rebuilt.profiles += 1;
                        if let Some(head) = &rebuilt.head {
                            head.note_wal_segment(segment);
                            head.append(&r.profile, &r.series, r.time_nanos, r.id);
                            head.annotate(r.id, r.series.len(), &r.annotations);
                        }
                    }
                    Ok(wal_record::Entry::Cut { tenant, head }) => {
                        if let Some(c) = next_cuts.get_mut(tenant) {
                            c.pop_front();
                        }
                        let Some(rebuilt) = open.remove(tenant) else {
                            return;
                        };
                        match rebuilt.head {
                            Some(h) => ingester.keep_replayed(tenant, h),
                            None => {
                                already_uploaded += rebuilt.profiles;
                                info!(tenant, block = %head, profiles = rebuilt.profiles, "not replaying profiles already in an uploaded block");
                            }
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        warn!(segment, offset, error = %e, "skipping undecodable write-ahead log record");
                    }
                }
            });
            // Profiles after a tenant's last cut: a new head, whose cut is logged below.
            let mut uncut = Vec::new();
            for (tenant, rebuilt) in open {
                if let Some(head) = rebuilt.head {
                    ingester.keep_replayed(&tenant, head);
                    uncut.push((tenant, rebuilt.ulid));
                }
            }
            info!(
                dir = %dir.display(),
                segments = report.segments,
                records = report.records,
                damaged = report.skipped.len(),
                undecodable = bad,
                already_uploaded,
                "replayed write-ahead log"
            );
            let wal = ember_wal::Wal::open_locked(lock, options)?;
            for (tenant, ulid) in uncut {
                wal.append(&wal_record::encode_cut(&tenant, ulid))?;
            }
            ingester.wal = Some(wal);
            ingester.replayed = (report.records as u64, (report.skipped.len() + bad) as u64);
            Ok(ingester)
        })
        .await
        .map_err(ember_block::Error::from)?
    }

    /// Queues a head rebuilt from the log for the next flush: replayed heads
    /// become blocks.
    fn keep_replayed(&self, tenant: &str, head: Head) {
        let heads = self.tenant(tenant);
        heads
            .lock()
            .expect("poisoned")
            .flushing
            .push(Arc::new(head));
    }

    fn tenant(&self, tenant: &str) -> Arc<Mutex<TenantHeads>> {
        if let Some(t) = self.tenants.read().expect("poisoned").get(tenant) {
            return t.clone();
        }
        self.tenants
            .write()
            .expect("poisoned")
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(TenantHeads {
                    active: Arc::new(Head::new(self.clock.now())),
                    series: ActiveSeries::default(),
                    flushing: Vec::new(),
                    flushed: Vec::new(),
                }))
            })
            .clone()
    }

    /// Appends a validated profile as the given series. CPU-bound: call it
    /// off the async runtime.
    pub fn append(
        &self,
        tenant: &str,
        profile: &FlatProfile,
        series: &[SeriesSpec],
        time_nanos: i64,
        id: ProfileId,
    ) -> Result<()> {
        let write = ProfileWrite {
            id,
            profile,
            series,
            time_nanos,
            max_active_series: 0,
            annotations: &[],
            encoded: None,
        };
        self.append_write(tenant, &write)
    }

    /// Appends a validated profile with its annotations. CPU-bound: call it
    /// off the async runtime.
    pub fn append_write(&self, tenant: &str, w: &ProfileWrite<'_>) -> Result<()> {
        let ProfileWrite {
            id,
            profile,
            series,
            time_nanos,
            annotations,
            ..
        } = *w;
        if self.stopping.load(Ordering::Acquire) {
            return Err(Error::Stopping);
        }
        let _checkpoint = self.wal_checkpoint.read().expect("poisoned");
        let segment = match &self.wal {
            Some(wal) => {
                let record = wal_record::encode(tenant, w);
                Some(wal.append(&record)?)
            }
            None => None,
        };
        // Appending under the tenant lock keeps a cut head from growing after
        // it was queued for upload.
        let heads = self.tenant(tenant);
        let heads = heads.lock().expect("poisoned");
        if let Some(segment) = segment {
            heads.active.note_wal_segment(segment);
        }
        let added = heads.active.append(profile, series, time_nanos, id);
        heads.active.annotate(id, series.len(), annotations);
        self.metrics.add_head(added, 1);
        self.metrics.ingested_profiles.inc();
        Ok(())
    }

    /// Records `series` as active for `tenant`, or refuses them all when the
    /// new ones would exceed `limit` active series (0 disables the limit).
    /// A series is active for `max_block_duration` after its last profile.
    pub fn admit_series(&self, tenant: &str, series: &[SeriesSpec], limit: usize) -> Result<()> {
        let now = self.clock.now();
        let keys: Vec<u64> = series.iter().map(|s| fingerprint(&s.labels)).collect();
        let window = self.config.max_block_duration;
        let heads = self.tenant(tenant);
        let mut heads = heads.lock().expect("poisoned");
        heads
            .series
            .admit(&keys, limit, now, window)
            .map_err(|e| Error::SeriesLimit {
                tenant: tenant.to_owned(),
                limit,
                active: e.active,
                new: e.new,
                window,
            })
    }

    /// Returns the number of active series of `tenant` (as of the last purge).
    pub fn active_series(&self, tenant: &str) -> usize {
        self.tenants
            .read()
            .expect("poisoned")
            .get(tenant)
            .map_or(0, |t| t.lock().expect("poisoned").series.len())
    }

    /// Returns the tenants that have heads.
    pub fn tenants(&self) -> Vec<String> {
        self.tenants
            .read()
            .expect("poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// Returns the heads of `tenant`: the active one, those being flushed,
    /// and those uploaded within [`FLUSHED_HEAD_GRACE`] (each has the ULID
    /// of its block, so a reader can skip the block's copy).
    pub fn heads(&self, tenant: &str) -> Vec<Arc<Head>> {
        let Some(t) = self.tenants.read().expect("poisoned").get(tenant).cloned() else {
            return Vec::new();
        };
        let t = t.lock().expect("poisoned");
        let now = self.clock.now();
        let mut heads: Vec<Arc<Head>> = t
            .flushed
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(h, _)| h.clone())
            .collect();
        heads.extend(t.flushing.iter().cloned());
        heads.push(t.active.clone());
        heads
    }

    /// Calls `f` with a read view of every head of `tenant`.
    pub fn with_heads(&self, tenant: &str, f: &mut dyn FnMut(&dyn SourceView)) {
        for head in self.heads(tenant) {
            let data = head.read();
            f(&*data);
        }
    }

    /// Cuts every tenant's active head that is full or old enough (all of
    /// them when `force`), moving it to the flush queue.
    fn cut(&self, force: bool) {
        let now = self.clock.now();
        let mut any = false;
        // Exclusive, so that the cut record in the log separates exactly the
        // profiles of the cut head from those of the next one.
        let _gate = self
            .wal
            .as_ref()
            .map(|_| self.wal_checkpoint.write().expect("poisoned"));
        for (tenant, heads) in self.tenants.read().expect("poisoned").iter() {
            let mut heads = heads.lock().expect("poisoned");
            heads.series.purge(now, self.config.max_block_duration);
            let active = &heads.active;
            let (empty, bytes) = active.size();
            let due = force
                || cut_window(active.created_at, self.config.max_block_duration)
                    != cut_window(now, self.config.max_block_duration)
                || bytes as u64 >= self.config.max_block_bytes;
            if due && !empty {
                info!(tenant, head = %active.ulid, bytes, "cutting head");
                if let Some(wal) = &self.wal
                    && let Err(e) = wal.append(&wal_record::encode_cut(tenant, active.ulid))
                {
                    // Without it a replay may count this head's profiles twice, never lose them.
                    warn!(tenant, head = %active.ulid, error = %e, "logging cut failed");
                }
                let old = std::mem::replace(&mut heads.active, Arc::new(Head::new(now)));
                self.metrics.add_head(old.counts(), -1);
                self.metrics.head_cuts.inc();
                heads.flushing.push(old);
                any = true;
            }
        }
        if any && let Some(wal) = &self.wal {
            match wal.rotate() {
                Ok(closed) => info!(segment = closed, "closed write-ahead log segment at cut"),
                Err(e) => warn!(error = %e, "rotating write-ahead log failed"),
            }
        }
    }

    /// Deletes the WAL segments that hold no profile of a head still in memory.
    fn checkpoint_wal(&self) {
        let Some(wal) = &self.wal else { return };
        let _exclusive = self.wal_checkpoint.write().expect("poisoned");
        let mut keep_from = wal.current_segment();
        for heads in self.tenants.read().expect("poisoned").values() {
            let heads = heads.lock().expect("poisoned");
            for head in heads.flushing.iter().chain(std::iter::once(&heads.active)) {
                if let Some(s) = head.wal_segment() {
                    keep_from = keep_from.min(s);
                }
            }
        }
        match wal.delete_before(keep_from) {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, keep_from, "deleted write-ahead log segments"),
            Err(e) => warn!(error = %e, "deleting write-ahead log segments failed"),
        }
    }

    /// Uploads every cut head; a head whose upload fails stays queued and
    /// queryable, and is retried on the next flush.
    async fn flush_cut(&self) -> Result<()> {
        let _serial = self.flush_lock.lock().await;
        let pending: Vec<(String, Arc<Head>)> = self
            .tenants
            .read()
            .expect("poisoned")
            .iter()
            .flat_map(|(tenant, heads)| {
                let heads = heads.lock().expect("poisoned");
                heads
                    .flushing
                    .iter()
                    .map(|h| (tenant.clone(), h.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut first_error = None;
        for (tenant, head) in pending {
            let started = std::time::Instant::now();
            self.metrics.flushes.inc();
            let (source, store, owner, h) = (
                self.id.clone(),
                self.store.clone(),
                tenant.clone(),
                head.clone(),
            );
            // Rows are decoded from the packed head and uploaded a row group
            // and a part at a time, so the flush needs little beside the head.
            let result =
                tokio::task::spawn_blocking(move || h.read().write(&store, &owner, source))
                    .await
                    .map_err(ember_block::Error::from)?
                    .inspect(|meta| self.metrics.flushed_bytes.inc_by(meta.stats.bytes));
            self.metrics
                .flush_duration
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(meta) => {
                    self.metrics.blocks_uploaded.inc();
                    info!(tenant, block = %meta.ulid, profiles = meta.stats.profiles, bytes = meta.stats.bytes, "flushed block");
                    let heads = self.tenant(&tenant);
                    let mut heads = heads.lock().expect("poisoned");
                    heads.flushing.retain(|h| !Arc::ptr_eq(h, &head));
                    let now = self.clock.now();
                    heads.flushed.retain(|(_, until)| *until > now);
                    heads.flushed.push((head.clone(), now + FLUSHED_HEAD_GRACE));
                }
                Err(e) => {
                    self.metrics.flush_failures.inc();
                    warn!(tenant, head = %head.ulid, error = %e, "flushing block failed, will retry");
                    first_error.get_or_insert(Error::Block(e));
                }
            }
        }
        // Only now, with the blocks in object storage, may their segments go.
        self.checkpoint_wal();
        first_error.map_or(Ok(()), Err)
    }

    /// Cuts heads that are due and uploads them (the periodic task).
    pub async fn flush_due(&self) -> Result<()> {
        self.cut(false);
        self.flush_cut().await
    }

    /// Cuts and uploads every head now.
    pub async fn flush_all(&self) -> Result<()> {
        self.cut(true);
        self.flush_cut().await
    }

    /// Stops taking writes and flushes everything (graceful shutdown).
    pub async fn stop(&self) -> Result<()> {
        self.stopping.store(true, Ordering::Release);
        self.flush_all().await
    }

    /// Runs the periodic cut-and-flush loop until the process ends.
    pub async fn run_flush_loop(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            if let Err(e) = self.flush_due().await {
                warn!(error = %e, "periodic flush failed");
            }
        }
    }
}

/// Returns the level-1 blocks of `tenant` whose data a compacted block in
/// `store` holds.
async fn compacted_sources(store: &Arc<dyn ObjectStore>, tenant: &str) -> Result<HashSet<Ulid>> {
    let mut sources = HashSet::new();
    for ulid in ember_block::list_blocks(store, tenant).await? {
        let meta = match ember_block::read_meta(store, tenant, ulid).await {
            Ok(meta) => meta,
            // Not complete, or deleted since the listing; or not readable.
            Err(ember_block::Error::ObjectStore(object_store::Error::NotFound { .. }))
            | Err(ember_block::Error::Meta(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if meta.compaction.level > 1 {
            sources.extend(meta.compaction.sources);
        }
    }
    Ok(sources)
}

/// A head being rebuilt from the log: `None` when its block is already in
/// object storage, whose profiles are only counted.
struct Rebuilt {
    head: Option<Head>,
    ulid: Ulid,
    profiles: usize,
}

/// Records decoded per message from a decoding thread to the rebuilding one.
const DECODED_CHUNK: usize = 32;

/// Decodes the log's records on every core and calls `f` with each, in log
/// order, as they come: decoding (protobuf and validation) and rebuilding the
/// heads (one thread, in order) are most of a replay's CPU, and overlap this
/// way, while only a few chunks of decoded records are held at a time. The
/// records `f` is done with go back to the thread that decoded them to be
/// freed there: freeing a decoded profile costs about two thirds as much as
/// appending it, and would otherwise be on the one rebuilding thread.
fn for_each_decoded(
    records: &[ember_wal::Record],
    mut f: impl FnMut(u64, u64, &std::result::Result<wal_record::Entry, String>),
) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks: Vec<&[ember_wal::Record]> = records.chunks(DECODED_CHUNK).collect();
    std::thread::scope(|s| {
        // Thread `t` decodes chunks t, t + threads, ...; reading them back in
        // that order needs no reordering, and a full channel only waits for
        // the chunk the rebuilding thread takes next.
        let (decoded, spent): (Vec<_>, Vec<_>) = (0..threads)
            .map(|t| {
                let (tx, rx) = std::sync::mpsc::sync_channel(2);
                let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<_>>();
                let mine: Vec<_> = chunks.iter().skip(t).step_by(threads).copied().collect();
                s.spawn(move || {
                    for chunk in mine {
                        while let Ok(done) = spent_rx.try_recv() {
                            drop(done);
                        }
                        let entries: Vec<_> = chunk
                            .iter()
                            .map(|r| (r.segment, r.offset, wal_record::decode(&r.payload)))
                            .collect();
                        if tx.send(entries).is_err() {
                            return;
                        }
                    }
                    // Until the rebuilding thread is done with every chunk.
                    spent_rx.into_iter().for_each(drop);
                });
                (rx, spent_tx)
            })
            .unzip();
        for k in 0..chunks.len() {
            let entries = decoded[k % threads]
                .recv()
                .expect("decoding a log record panicked");
            for (segment, offset, entry) in &entries {
                f(*segment, *offset, entry);
            }
            // Should that thread be gone, they are freed here.
            let _ = spent[k % threads].send(entries);
        }
        drop(spent);
    });
}

/// The ingester of this process as the distributor's sink (`-target=all`).
impl IngestSink for Ingester {
    fn write(&self, tenant: &str, w: &ProfileWrite<'_>) -> std::result::Result<(), tonic::Status> {
        self.admit_series(tenant, w.series, w.max_active_series)?;
        self.append_write(tenant, w)?;
        Ok(())
    }
}

impl SharedSource for Head {
    fn with_view(
        &self,
        f: &mut dyn FnMut(&dyn SourceView) -> ember_query::Result<()>,
    ) -> ember_query::Result<()> {
        f(&*self.read())
    }
}

/// The heads of this process as a querier's recent data (`-target=all`).
#[async_trait::async_trait]
impl RecentData for Ingester {
    async fn sources(
        &self,
        tenant: &str,
        _plan: &Plan,
        _need: Need,
    ) -> std::result::Result<RecentSources, tonic::Status> {
        let heads = self.heads(tenant);
        Ok(RecentSources {
            heads: heads.iter().map(|h| h.ulid).collect(),
            views: heads
                .into_iter()
                .map(|h| h as Arc<dyn SharedSource>)
                .collect(),
            ..RecentSources::default()
        })
    }
}
