//! (c) queries over profiles stored in Parquet blocks: the mix is appended
//! `n` times over with distinct timestamps, flushed to a filesystem object
//! store, and read back by a querier that has no ingester.

use std::{
    borrow::Cow,
    future::Future,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use ember_block::{BlockView, ProfileVisitor};
use ember_ingester::{Ingester, IngesterConfig};
use ember_model::{
    flamegraph::FunctionTree, ingest::labels_of, ingest::series_for, new_profile_id,
};
use ember_proto::{
    Tenant,
    querier::v1::{
        SelectMergeProfileRequest, SelectMergeStacktracesRequest, SelectSeriesRequest,
        querier_service_server::QuerierService,
    },
    types::v1::TimeSeriesAggregationType,
};
use ember_querier::{DEFAULT_MAX_NODES, Querier};
use ember_query::Plan;
use object_store::{ObjectStore, local::LocalFileSystem};

use crate::{
    BoxResult, TENANT,
    corpus::{Corpus, jittered},
};

/// The first stored profile's time: 2024-01-01T00:00:00Z.
const T0_NANOS: i64 = 1_704_067_200_000_000_000;
/// Stored profiles are this far apart.
const INTERVAL_NANOS: i64 = 10_000_000_000;
/// Warm timings are the median of this many runs.
const WARM_RUNS: usize = 7;
/// `SelectSeries` resolution, as Grafana asks for a day-long panel.
const STEP_SECONDS: f64 = 300.0;

/// Profiles written to a block store.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) profiles: usize,
    /// Appending the decoded profiles (series split + symbolization).
    pub(crate) append: Duration,
    /// `flush_all`: Parquet encoding and the filesystem writes.
    pub(crate) flush: Duration,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    /// The head before the flush.
    pub(crate) head: HeadFootprint,
}

/// What a head holds in memory once every profile is appended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadFootprint {
    /// `ember_ingester_head_bytes`: the head's heap by capacities.
    pub(crate) bytes: u64,
    /// Stored (stack, value) pairs.
    pub(crate) samples: u64,
    /// Growth of the process's resident set over the appends (allocator
    /// overhead and freed-but-kept memory included).
    pub(crate) rss_growth: u64,
}

impl HeadFootprint {
    pub(crate) fn per_sample(&self, bytes: u64) -> f64 {
        bytes as f64 / self.samples.max(1) as f64
    }
}

/// Returns the resident set size of this process (`/proc/self/statm`), or 0
/// where there is none.
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// Appends `n` profiles cycling through the mix, profile `i` at
/// `T0 + i * 10 s` in service `service(i, input index)`, and flushes them
/// as blocks into a filesystem store rooted at `dir`. With `jitter`, each
/// copy of a file gets its own values (see [`jittered`]), and the append time
/// includes making the copy.
pub(crate) async fn store_profiles(
    corpus: &Corpus,
    n: usize,
    dir: &Path,
    service: impl Fn(usize, usize) -> String,
    jitter: bool,
) -> BoxResult<Stored> {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir)?);
    let ingester = Ingester::new(
        IngesterConfig::default(),
        store.clone(),
        ember_time::SystemClock::shared(),
    );
    let rss_before = rss_bytes();
    let started = Instant::now();
    // CPU-bound, like the distributor's calls: keep it off the async workers.
    tokio::task::block_in_place(|| -> BoxResult<()> {
        for i in 0..n {
            let k = i % corpus.inputs.len();
            let input = &corpus.inputs[k];
            let profile = if jitter {
                Cow::Owned(jittered(&input.profile, i as u64))
            } else {
                Cow::Borrowed(&input.profile)
            };
            let labels = labels_of(&[("service_name", &service(i, k))]);
            let series = series_for(&profile, &labels);
            let time = T0_NANOS + i as i64 * INTERVAL_NANOS;
            ingester.append(TENANT, &profile, &series, time, new_profile_id())?;
        }
        Ok(())
    })?;
    let append = started.elapsed();
    let heads = ingester.heads(TENANT);
    let head = HeadFootprint {
        bytes: heads.iter().map(|h| h.counts().bytes).sum(),
        samples: heads.iter().map(|h| h.counts().samples).sum(),
        rss_growth: rss_bytes().saturating_sub(rss_before),
    };
    drop(heads);
    let started = Instant::now();
    ingester.flush_all().await?;
    let flush = started.elapsed();
    let end = T0_NANOS + n as i64 * INTERVAL_NANOS;
    Ok(Stored {
        store,
        profiles: n,
        append,
        flush,
        start_ms: T0_NANOS / 1_000_000,
        end_ms: end / 1_000_000,
        head,
    })
}

/// Cold (fresh querier: blocks unopened, symbols not cached; the OS page
/// cache is warm) and warm (median) latency of one query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) cold: Duration,
    pub(crate) warm: Duration,
}

/// Where a flame-graph query spends its time, measured with the public
/// pieces the querier is made of.
#[derive(Debug)]
pub(crate) struct FlameSplit {
    /// Once per querier: list blocks, read `meta.json`, decode `series.parquet`.
    pub(crate) open: Duration,
    /// Once per querier: read and decode the five symbol files.
    pub(crate) symbols: Duration,
    /// Per query: read `profiles.parquet` into memory.
    pub(crate) fetch: Duration,
    /// Per query: decode the profile rows and sum values per stack-trace ID.
    pub(crate) scan: Duration,
    /// Per query: scan + sum + resolve the stack tree into a function tree.
    pub(crate) merge_tree: Duration,
    /// Per query: function tree to the flame-graph response.
    pub(crate) to_flamegraph: Duration,
    /// Pushed profiles merged (distinct timestamps), profile rows, samples.
    pub(crate) profiles: usize,
    pub(crate) rows: usize,
    pub(crate) samples: usize,
}

/// `SelectMergeStacktraces` of one profile type over the whole range.
#[derive(Debug)]
pub(crate) struct Flame {
    pub(crate) profile_type: String,
    pub(crate) latency: Latency,
    /// Function names in the response.
    pub(crate) names: usize,
    pub(crate) split: FlameSplit,
}

/// The results of (c) for the CPU type.
#[derive(Debug)]
pub(crate) struct QueryResults {
    pub(crate) flame: Flame,
    pub(crate) series: Latency,
    pub(crate) merge_profile: Latency,
    pub(crate) series_count: usize,
    pub(crate) pprof_samples: usize,
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(Tenant(TENANT.into()));
    request
}

async fn timed<T, F: Future<Output = BoxResult<T>>>(f: F) -> BoxResult<(Duration, T)> {
    let started = Instant::now();
    let out = f.await?;
    Ok((started.elapsed(), out))
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Times `query` on a fresh querier (cold), then [`WARM_RUNS`] more times on
/// the same querier; returns the latency and the first result.
async fn measure<T, F, Fut>(stored: &Stored, query: F) -> BoxResult<(Latency, T)>
where
    F: Fn(Arc<Querier>) -> Fut,
    Fut: Future<Output = BoxResult<T>>,
{
    let querier = Arc::new(Querier::new(None, stored.store.clone()));
    let (cold, first) = timed(query(querier.clone())).await?;
    let mut warm = Vec::with_capacity(WARM_RUNS);
    for _ in 0..WARM_RUNS {
        warm.push(timed(query(querier.clone())).await?.0);
    }
    let warm = median(warm);
    Ok((Latency { cold, warm }, first))
}

/// Sums values per stack-trace ID, as the querier does before resolving,
/// and counts what it visits.
#[derive(Debug, Default)]
struct Sums {
    sums: Vec<i64>,
    times: Vec<i64>,
    samples: usize,
}

impl ProfileVisitor for Sums {
    fn visit(&mut self, _: u128, _: u32, time: i64, _: i64, samples: Option<(&[u32], &[i64])>) {
        self.times.push(time);
        let Some((ids, values)) = samples else { return };
        self.samples += ids.len();
        for (&id, &v) in ids.iter().zip(values) {
            let id = id as usize;
            if self.sums.len() <= id {
                self.sums.resize(id + 1, 0);
            }
            self.sums[id] += v;
        }
    }
}

/// Splits one flame-graph query into its stages (cold open and symbol load,
/// then the per-query stages on the opened blocks).
async fn flame_split(stored: &Stored, plan: &Plan) -> BoxResult<FlameSplit> {
    let started = Instant::now();
    let mut blocks = Vec::new();
    for ulid in ember_block::list_blocks(&stored.store, TENANT).await? {
        blocks.push(Arc::new(
            ember_block::Block::open(stored.store.clone(), TENANT, ulid).await?,
        ));
    }
    let open = started.elapsed();
    let started = Instant::now();
    for b in &blocks {
        let partitions: Vec<u32> = (0..b.meta.partitions.len() as u32).collect();
        b.symbols_of(&partitions, &ember_block::Fetched::default())
            .await?;
    }
    let symbols = started.elapsed();
    let started = Instant::now();
    let mut views: Vec<BlockView> = Vec::new();
    for b in &blocks {
        views.push(b.view(true).await?);
    }
    let fetch = started.elapsed();

    let started = Instant::now();
    let mut sums = Sums::default();
    for v in &views {
        let selected = plan.select(&v.block.series);
        // One vector for all blocks is wrong for sums but right for timing.
        v.scan(&selected, plan.start, plan.end, true, &mut sums)?;
    }
    let scan = started.elapsed();
    let rows = sums.times.len();
    sums.times.sort_unstable();
    sums.times.dedup();
    let started = Instant::now();
    let mut tree = FunctionTree::new();
    for v in &views {
        ember_query::merge_tree(v, plan, &mut tree)?;
    }
    let merge_tree = started.elapsed();
    let started = Instant::now();
    std::hint::black_box(tree.to_flamegraph(DEFAULT_MAX_NODES));
    let to_flamegraph = started.elapsed();
    Ok(FlameSplit {
        open,
        symbols,
        fetch,
        scan,
        merge_tree,
        to_flamegraph,
        profiles: sums.times.len(),
        rows,
        samples: sums.samples,
    })
}

fn whole_range(stored: &Stored, profile_type: &str) -> Plan {
    Plan::new(
        Some(profile_type.to_owned()),
        Vec::new(),
        stored.start_ms * 1_000_000,
        stored.end_ms * 1_000_000 + 999_999,
    )
}

/// Times `SelectMergeStacktraces` of `profile_type` over the whole stored
/// range with the default `max_nodes`, and splits it into stages.
pub(crate) async fn flame(stored: &Stored, profile_type: &str) -> BoxResult<Flame> {
    let req = SelectMergeStacktracesRequest {
        profile_type_id: profile_type.to_owned(),
        label_selector: "{}".into(),
        start: stored.start_ms,
        end: stored.end_ms,
        ..Default::default()
    };
    let (latency, response) = measure(stored, |q| {
        let req = req.clone();
        async move { Ok(q.select_merge_stacktraces(request(req)).await?.into_inner()) }
    })
    .await?;
    Ok(Flame {
        profile_type: profile_type.to_owned(),
        latency,
        names: response.flamegraph.map_or(0, |f| f.names.len()),
        split: flame_split(stored, &whole_range(stored, profile_type)).await?,
    })
}

/// Runs (c): `SelectMergeStacktraces`, `SelectSeries` and
/// `SelectMergeProfile` for `profile_type` over the whole stored range.
pub(crate) async fn run(stored: &Stored, profile_type: &str) -> BoxResult<QueryResults> {
    let (start, end) = (stored.start_ms, stored.end_ms);
    let flame = flame(stored, profile_type).await?;

    let series_req = SelectSeriesRequest {
        profile_type_id: profile_type.to_owned(),
        label_selector: "{}".into(),
        start,
        end,
        group_by: vec!["service_name".into()],
        step: STEP_SECONDS,
        aggregation: Some(TimeSeriesAggregationType::Sum as i32),
        ..Default::default()
    };
    let (series, series_out) = measure(stored, |q| {
        let req = series_req.clone();
        async move { Ok(q.select_series(request(req)).await?.into_inner()) }
    })
    .await?;

    let merge_req = SelectMergeProfileRequest {
        profile_type_id: profile_type.to_owned(),
        label_selector: "{}".into(),
        start,
        end,
        ..Default::default()
    };
    let (merge_profile, pprof) = measure(stored, |q| {
        let req = merge_req.clone();
        async move { Ok(q.select_merge_profile(request(req)).await?.into_inner()) }
    })
    .await?;

    Ok(QueryResults {
        flame,
        series,
        merge_profile,
        series_count: series_out.series.len(),
        pprof_samples: pprof.sample.len(),
    })
}
