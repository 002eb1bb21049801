//! `--reads`: what one service's queries fetch from object storage when ten
//! services share the blocks.
//!
//! Ten services each send every file of the corpus every ten minutes (a
//! second apart from each other), each copy with its own values
//! ([`jittered`]), for `hours` hours: ten services of the same size. Each hour becomes one block
//! (as an ingester cuts them), written into an in-memory store behind a
//! [`Delayed`] store that sleeps [`REQUEST_DELAY`] before every read request,
//! the latency of an S3 GET, and the instrumented store of the server counts
//! every request and byte. Then, for service 0's heaviest profile type, a
//! querier without ingester runs `SelectMergeStacktraces` and `SelectSeries`
//! over the whole range: cold (fresh querier and cache), warm (again, with
//! the cache), and warm without a cache (`storage.cache.max_size_bytes: 0`).

use std::{
    fmt,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use ember_block::{BlockCache, BlockCacheMetrics, MemBlock, encode_block, upload_block};
use ember_model::ingest::{labels_of, series_for};
use ember_objstore::{ObjstoreMetrics, instrument};
use ember_proto::{
    Tenant,
    querier::v1::{
        SelectMergeStacktracesRequest, SelectSeriesRequest, querier_service_server::QuerierService,
    },
    types::v1::TimeSeriesAggregationType,
};
use ember_querier::Querier;
use futures::stream::BoxStream;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    memory::InMemory, path::Path,
};
use ulid::Ulid;

use crate::{
    BoxResult, TENANT,
    corpus::{Corpus, jittered},
};

/// The latency added to every read request.
pub(crate) const REQUEST_DELAY: Duration = Duration::from_millis(20);
/// Services sharing the blocks.
const SERVICES: usize = 10;
/// Each service sends each file this often.
const INTERVAL_NANOS: i64 = 600_000_000_000;
const HOUR_NANOS: i64 = 3_600_000_000_000;
/// 2024-01-01T00:00:00Z.
const T0_NANOS: i64 = 1_704_067_200_000_000_000;
/// Block cache of the warm runs: the default.
const CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// An object store that waits [`REQUEST_DELAY`] before each read request
/// (get, ranged get, head, list) of the store it wraps; writes are not delayed.
#[derive(Debug)]
pub(crate) struct Delayed {
    pub(crate) inner: Arc<dyn ObjectStore>,
}

impl fmt::Display for Delayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Delayed({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Delayed {
    async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(l, p, o).await
    }

    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(l, o).await
    }

    async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
        tokio::time::sleep(REQUEST_DELAY).await;
        self.inner.get_opts(l, o).await
    }

    async fn get_ranges(&self, l: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        tokio::time::sleep(REQUEST_DELAY).await;
        self.inner.get_ranges(l, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        tokio::time::sleep(REQUEST_DELAY).await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, o).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, o: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, o).await
    }
}

/// The read requests and bytes the instrumented store has seen.
fn reads(m: &ObjstoreMetrics) -> (u64, u64) {
    let requests = ["get", "get_range", "head", "list"]
        .iter()
        .map(|op| m.operations.with_label_values(&[op]).get())
        .sum();
    (requests, m.read_bytes.get())
}

/// One query run: latency, requests and bytes fetched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) latency: Duration,
    pub(crate) requests: u64,
    pub(crate) bytes: u64,
}

/// One query, cold, warm with the cache and warm without it.
#[derive(Debug)]
pub(crate) struct QueryReads {
    pub(crate) name: &'static str,
    pub(crate) cold: Run,
    pub(crate) warm: Run,
    pub(crate) cold_uncached: Run,
    pub(crate) warm_uncached: Run,
    /// What the answer held (flame-graph names, series points), to show it
    /// is not empty.
    pub(crate) answer: usize,
}

/// Everything `--reads` measures.
#[derive(Debug)]
pub(crate) struct ReadsResults {
    pub(crate) hours: usize,
    pub(crate) blocks: usize,
    pub(crate) profiles: usize,
    pub(crate) stored_bytes: u64,
    pub(crate) profile_type: String,
    pub(crate) queries: Vec<QueryReads>,
    /// What the flame graph's cold fetch holds: footers and pages of
    /// `profiles.parquet`, then symbols (footers and row groups).
    pub(crate) profile_bytes: u64,
    pub(crate) symbol_bytes: u64,
}

/// Splits the flame graph's fetch into profile and symbol bytes, fetching
/// each block's parts apart with no cache.
async fn split(
    store: &Arc<dyn ObjectStore>,
    profile_type: &str,
    start: i64,
    end: i64,
) -> BoxResult<(u64, u64)> {
    let (mut profiles, mut symbols) = (0, 0);
    for ulid in ember_block::list_blocks(store, TENANT).await? {
        let block = Arc::new(ember_block::Block::open(store.clone(), TENANT, ulid).await?);
        let selected: Vec<bool> = block
            .series
            .iter()
            .map(|s| {
                s.labels.get("service_name") == Some("svc-0")
                    && s.labels.get(ember_model::labels::PROFILE_TYPE) == Some(profile_type)
            })
            .collect();
        let mut want = ember_block::Fetch {
            selected,
            start,
            end,
            samples: true,
            spans: false,
            symbols: false,
        };
        let alone = block.fetch(&want).await?.fetched_bytes() as u64;
        want.symbols = true;
        let both = block.fetch(&want).await?.fetched_bytes() as u64;
        profiles += alone;
        symbols += both.saturating_sub(alone);
    }
    Ok((profiles, symbols))
}

/// Writes `hours` hourly blocks of ten services into a delayed store.
async fn write_blocks(
    corpus: &Corpus,
    hours: usize,
    store: &Arc<dyn ObjectStore>,
) -> BoxResult<(usize, usize, u64)> {
    let mut profiles = 0;
    let mut stored = 0;
    for h in 0..hours {
        let start = T0_NANOS + h as i64 * HOUR_NANOS;
        let mut head = MemBlock::new(Ulid::from_parts((start / 1_000_000) as u64, h as u128));
        tokio::task::block_in_place(|| {
            let mut t = start;
            while t < start + HOUR_NANOS {
                for service in 0..SERVICES {
                    let name = format!("svc-{service}");
                    let labels = labels_of(&[("service_name", &name)]);
                    let time = t + service as i64 * 1_000_000_000;
                    for (k, input) in corpus.inputs.iter().enumerate() {
                        let seed = (time / 1_000_000_000) as u64 * 1000 + k as u64;
                        let profile = jittered(&input.profile, seed);
                        let series = series_for(&profile, &labels);
                        profiles += 1;
                        head.append(&profile, &series, time, ember_model::new_profile_id());
                    }
                }
                t += INTERVAL_NANOS;
            }
        });
        let encoded =
            tokio::task::block_in_place(|| encode_block(&head.to_block_data("bench".into())))?;
        stored += encoded.meta.stats.bytes + serde_json::to_vec_pretty(&encoded.meta)?.len() as u64;
        upload_block(store, TENANT, &encoded).await?;
    }
    Ok((hours, profiles, stored))
}

/// Returns the profile type with the most samples in the mix.
fn heaviest_type(corpus: &Corpus) -> String {
    let mut samples: std::collections::BTreeMap<String, usize> = Default::default();
    for input in &corpus.inputs {
        for s in series_for(&input.profile, &input.labels) {
            let n = s.samples.map_or(input.profile.samples.len(), |v| v.len());
            *samples.entry(s.profile_type.id()).or_default() += n;
        }
    }
    samples
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_default()
}

pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(Tenant(TENANT.into()));
    request
}

/// Runs `query` once on `querier`, counting what it read.
async fn run_once<F, Fut>(
    querier: &Arc<Querier>,
    metrics: &ObjstoreMetrics,
    query: &F,
) -> BoxResult<(Run, usize)>
where
    F: Fn(Arc<Querier>) -> Fut,
    Fut: std::future::Future<Output = BoxResult<usize>>,
{
    let (r0, b0) = reads(metrics);
    let started = Instant::now();
    let answer = query(querier.clone()).await?;
    let latency = started.elapsed();
    let (r1, b1) = reads(metrics);
    Ok((
        Run {
            latency,
            requests: r1 - r0,
            bytes: b1 - b0,
        },
        answer,
    ))
}

pub(crate) async fn measure<F, Fut>(
    name: &'static str,
    store: &Arc<dyn ObjectStore>,
    metrics: &ObjstoreMetrics,
    query: F,
) -> BoxResult<QueryReads>
where
    F: Fn(Arc<Querier>) -> Fut,
    Fut: std::future::Future<Output = BoxResult<usize>>,
{
    let cached = Arc::new(
        Querier::new(None, store.clone()).with_cache(Arc::new(BlockCache::new(
            CACHE_BYTES,
            BlockCacheMetrics::detached(),
        ))),
    );
    let (cold, answer) = run_once(&cached, metrics, &query).await?;
    let (warm, again) = run_once(&cached, metrics, &query).await?;
    if again != answer {
        return Err(format!("{name}: the warm answer differs from the cold one").into());
    }
    let uncached =
        Arc::new(Querier::new(None, store.clone()).with_cache(Arc::new(BlockCache::disabled())));
    let (cold_uncached, _) = run_once(&uncached, metrics, &query).await?;
    let (warm_uncached, _) = run_once(&uncached, metrics, &query).await?;
    Ok(QueryReads {
        name,
        cold,
        warm,
        cold_uncached,
        warm_uncached,
        answer,
    })
}

/// Runs `--reads` over `hours` hours of ten services.
pub(crate) async fn run(corpus: &Corpus, hours: usize) -> BoxResult<ReadsResults> {
    let metrics = ObjstoreMetrics::register(&prometheus::Registry::new())?;
    let delayed: Arc<dyn ObjectStore> = Arc::new(Delayed {
        inner: Arc::new(InMemory::new()),
    });
    let store = instrument(delayed, metrics.clone());
    eprintln!("(reads) writing {hours} hourly blocks of {SERVICES} services...");
    let (blocks, profiles, stored_bytes) = write_blocks(corpus, hours, &store).await?;
    let profile_type = heaviest_type(corpus);
    let start = T0_NANOS / 1_000_000;
    let end = (T0_NANOS + hours as i64 * HOUR_NANOS) / 1_000_000 - 1;
    let selector = "{service_name=\"svc-0\"}".to_owned();
    eprintln!("(reads) querying {profile_type} of svc-0...");
    let flame_req = SelectMergeStacktracesRequest {
        profile_type_id: profile_type.clone(),
        label_selector: selector.clone(),
        start,
        end,
        ..Default::default()
    };
    let flame = measure("SelectMergeStacktraces", &store, &metrics, |q| {
        let req = flame_req.clone();
        async move {
            let out = q.select_merge_stacktraces(request(req)).await?.into_inner();
            Ok(out.flamegraph.map_or(0, |f| f.names.len()))
        }
    })
    .await?;
    let series_req = SelectSeriesRequest {
        profile_type_id: profile_type.clone(),
        label_selector: selector,
        start,
        end,
        step: 300.0,
        aggregation: Some(TimeSeriesAggregationType::Sum as i32),
        ..Default::default()
    };
    let series = measure("SelectSeries", &store, &metrics, |q| {
        let req = series_req.clone();
        async move {
            let out = q.select_series(request(req)).await?.into_inner();
            Ok(out.series.iter().map(|s| s.points.len()).sum())
        }
    })
    .await?;
    let (profile_bytes, symbol_bytes) = split(
        &store,
        &profile_type,
        start * 1_000_000,
        end * 1_000_000 + 999_999,
    )
    .await?;
    Ok(ReadsResults {
        profile_bytes,
        symbol_bytes,
        hours,
        blocks,
        profiles,
        stored_bytes,
        profile_type,
        queries: vec![flame, series],
    })
}

/// Prints the results as the Markdown of `docs/benchmarks.md`.
pub(crate) fn print(r: &ReadsResults) {
    let mb = |b: u64| format!("{:.2} MB", b as f64 / 1e6);
    println!(
        "\n{} hourly blocks of {SERVICES} services ({} profiles: each service sends every file of the mix every 10 minutes), {} stored; \
         every read request delayed {} ms. Query: `{}` of `svc-0` over the whole range.\n",
        r.blocks,
        r.profiles,
        mb(r.stored_bytes),
        REQUEST_DELAY.as_millis(),
        r.profile_type,
    );
    println!("| query | run | time | requests | fetched | of stored |");
    println!("|---|---|---|---|---|---|");
    print_query_rows(&r.queries, r.stored_bytes);
    for q in &r.queries {
        println!(
            "\n{}: answer size {} ({}); goal ≤ 30% of stored fetched cold: {}",
            q.name,
            q.answer,
            if q.name == "SelectSeries" {
                "points"
            } else {
                "function names"
            },
            crate::verdict(q.cold.bytes * 10 <= r.stored_bytes * 3),
        );
    }
    println!(
        "\nSelectMergeStacktraces cold, by file: {} of profiles.parquet (footers and pages), \
         {} of symbols (footers and svc-0's row groups)",
        mb(r.profile_bytes),
        mb(r.symbol_bytes),
    );
    let _ = r.hours;
}

/// Prints a Markdown table row for each query and run: its time, requests,
/// bytes fetched and their share of the `stored` bytes.
pub(crate) fn print_query_rows(queries: &[QueryReads], stored: u64) {
    for q in queries {
        for (label, run) in [
            ("cold", q.cold),
            ("warm (cache)", q.warm),
            ("cold, no cache", q.cold_uncached),
            ("warm, no cache", q.warm_uncached),
        ] {
            println!(
                "| {} | {label} | {:.0} ms | {} | {:.2} MB | {:.2}% |",
                q.name,
                run.latency.as_secs_f64() * 1e3,
                run.requests,
                run.bytes as f64 / 1e6,
                run.bytes as f64 * 100.0 / stored.max(1) as f64,
            );
        }
    }
}
