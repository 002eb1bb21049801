//! `--week`: a week (or `--days N`) of one service's ten pods, each pushing a
//! 15 s CPU profile every 15 s, stored and compacted as a cluster would, then
//! queried over the whole range from object storage far away.
//!
//! Profiles come from [`synth`](crate::synth): a fixed call graph, skewed
//! stack frequencies, values varying per profile. Each hour is one block
//! (`MemBlock` → `encode_block` → `upload_block`, as an ingester cuts them);
//! the real [`Compactor`] then merges them into 4 h and 24 h blocks with
//! their pre-aggregated copies (15 min and 1 h, the defaults), passes until
//! there is nothing left to do. With `EMBER_MOTO_SERVER` set, the store is a
//! real S3 server (moto) and the querier reaches it through a proxy that
//! holds back every request 20 ms; without it, an in-memory store behind
//! [`Delayed`]. A querier without ingester answers the flame graph and
//! `SelectSeries` (step 5 min and 1 h) over the whole range: cold (a fresh
//! querier and cache), warm (the same again) and without a cache.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ember_block::{MemBlock, encode_block, upload_block};
use ember_compactor::{Compactor, CompactorConfig};
use ember_model::ingest::{labels_of, series_for};
use ember_objstore::{ObjstoreMetrics, instrument};
use ember_proto::{
    querier::v1::{
        SelectMergeStacktracesRequest, SelectSeriesRequest, querier_service_server::QuerierService,
    },
    types::v1::TimeSeriesAggregationType,
};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, memory::InMemory};
use ulid::Ulid;

use crate::{
    BoxResult, TENANT,
    reads::{self, Delayed, QueryReads, REQUEST_DELAY, measure, request},
    s3::{self, Moto},
    synth::{self, Service},
};

const PODS: usize = 10;
const INTERVAL_NANOS: i64 = synth::PROFILE_NANOS;
const HOUR_NANOS: i64 = 3_600_000_000_000;
/// 2024-01-01T00:00:00Z.
const T0_NANOS: i64 = 1_704_067_200_000_000_000;
const SERVICE: &str = "checkout";
const PROFILE_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// What the store holds at one resolution (0 = raw) after compaction.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Level {
    pub(crate) blocks: usize,
    pub(crate) bytes: u64,
    pub(crate) samples: u64,
}

/// Everything `--week` measures.
#[derive(Debug)]
pub(crate) struct WeekResults {
    pub(crate) days: usize,
    pub(crate) store: &'static str,
    pub(crate) profiles: usize,
    pub(crate) samples: u64,
    pub(crate) build: Duration,
    pub(crate) compaction: Duration,
    pub(crate) passes: usize,
    /// By resolution in nanoseconds, raw (0) first.
    pub(crate) levels: BTreeMap<i64, Level>,
    pub(crate) queries: Vec<QueryReads>,
}

impl WeekResults {
    fn stored(&self) -> u64 {
        self.levels.values().map(|l| l.bytes).sum()
    }
}

/// Writes `days × 24` hourly blocks of the service's pods into `store`;
/// returns the profiles and samples written.
async fn write_blocks(days: usize, store: &Arc<dyn ObjectStore>) -> BoxResult<(usize, u64)> {
    let service = Arc::new(Service::new(0));
    let hours = days * 24;
    let blocks = futures::stream::iter(0..hours)
        .map(|h| {
            let service = service.clone();
            tokio::task::spawn_blocking(move || {
                let start = T0_NANOS + h as i64 * HOUR_NANOS;
                let mut head =
                    MemBlock::new(Ulid::from_parts((start / 1_000_000) as u64, h as u128));
                let mut profiles = 0;
                for pod in 0..PODS {
                    let name = format!("{SERVICE}-{pod}");
                    let labels = labels_of(&[("service_name", SERVICE), ("pod", &name)]);
                    // Pods are a second apart; each sends every 15 s.
                    let mut t = start + pod as i64 * 1_000_000_000 + INTERVAL_NANOS;
                    while t <= start + HOUR_NANOS {
                        let seed = (t / 1_000_000_000) as u64 * 64 + pod as u64;
                        let profile = service.cpu_profile(seed, t);
                        let series = series_for(&profile, &labels);
                        head.append(&profile, &series, t - 1, ember_model::new_profile_id());
                        profiles += 1;
                        t += INTERVAL_NANOS;
                    }
                }
                let encoded = encode_block(&head.to_block_data("bench".into()))?;
                BoxResult::Ok((profiles, encoded))
            })
        })
        .buffer_unordered(2);
    futures::pin_mut!(blocks);
    let (mut profiles, mut samples) = (0, 0);
    while let Some(block) = blocks.next().await {
        let (n, encoded) = block??;
        profiles += n;
        samples += encoded.meta.stats.samples;
        upload_block(store, TENANT, &encoded).await?;
    }
    Ok((profiles, samples))
}

/// Runs the compactor until a pass changes nothing; returns the passes.
async fn compact(store: &Arc<dyn ObjectStore>) -> BoxResult<usize> {
    let config = CompactorConfig {
        // Sources are deleted on the pass after their merge, so the store
        // ends as a long-running one does: merged blocks and their copies.
        deletion_delay: Duration::ZERO,
        ..Default::default()
    };
    let compactor = Compactor::new(
        store.clone(),
        config,
        Arc::new(|_: &str| Duration::ZERO),
        ember_time::SystemClock::shared(),
    )?;
    for pass in 1..=20 {
        let report = compactor.run_once().await?;
        eprintln!("(week) compaction pass {pass}: {report:?}");
        if report.failures > 0 {
            return Err(format!("compaction pass {pass} failed: {report:?}").into());
        }
        if report.is_empty() {
            return Ok(pass);
        }
    }
    Err("the compactor still had work after 20 passes".into())
}

/// What the store holds per resolution.
async fn levels(store: &Arc<dyn ObjectStore>) -> BoxResult<BTreeMap<i64, Level>> {
    let mut levels: BTreeMap<i64, Level> = BTreeMap::new();
    for ulid in ember_block::list_blocks(store, TENANT).await? {
        let meta = ember_block::read_meta(store, TENANT, ulid).await?;
        let prefix = ember_block::block_file(TENANT, ulid, "");
        let bytes: u64 = store
            .list(Some(&prefix))
            .map_ok(|o| o.size)
            .try_collect::<Vec<_>>()
            .await?
            .iter()
            .sum();
        let level = levels.entry(meta.resolution_nanos).or_default();
        level.blocks += 1;
        level.bytes += bytes;
        level.samples += meta.stats.samples;
    }
    Ok(levels)
}

/// Runs `--week` over `days` days.
pub(crate) async fn run(days: usize) -> BoxResult<WeekResults> {
    let metrics = ObjstoreMetrics::register(&prometheus::Registry::new())?;
    // Writes go straight to the store; reads through the delay.
    let moto = Moto::binary().map(|b| Moto::start(&b)).transpose()?;
    let (writer, reader, kind): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>, _) = match &moto {
        Some(moto) => {
            let proxy = s3::delaying_proxy(moto.addr(), REQUEST_DELAY).await?;
            (
                s3::store(moto.addr())?,
                s3::store(proxy)?,
                "moto S3 behind a 20 ms proxy",
            )
        }
        None => {
            let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let delayed: Arc<dyn ObjectStore> = Arc::new(Delayed {
                inner: memory.clone(),
            });
            (memory, delayed, "in-memory store, reads delayed 20 ms")
        }
    };
    let reader = instrument(reader, metrics.clone());
    eprintln!(
        "(week) writing {} hourly blocks of {PODS} pods into {kind}...",
        days * 24
    );
    let started = Instant::now();
    let (profiles, samples) = write_blocks(days, &writer).await?;
    let build = started.elapsed();
    eprintln!("(week) {profiles} profiles, {samples} samples in {build:?}; compacting...");
    let started = Instant::now();
    let passes = compact(&writer).await?;
    let compaction = started.elapsed();
    let levels = levels(&writer).await?;
    eprintln!("(week) compacted in {compaction:?}: {levels:?}");

    let start = T0_NANOS / 1_000_000;
    // Inclusive: the last profile's pre-aggregated interval ends there.
    let end = (T0_NANOS + (days * 24) as i64 * HOUR_NANOS) / 1_000_000;
    let selector = format!("{{service_name=\"{SERVICE}\"}}");
    let flame_req = SelectMergeStacktracesRequest {
        profile_type_id: PROFILE_TYPE.into(),
        label_selector: selector.clone(),
        start,
        end,
        ..Default::default()
    };
    let mut queries = vec![
        measure("SelectMergeStacktraces", &reader, &metrics, |q| {
            let req = flame_req.clone();
            async move {
                let out = q.select_merge_stacktraces(request(req)).await?.into_inner();
                Ok(out.flamegraph.map_or(0, |f| f.names.len()))
            }
        })
        .await?,
    ];
    for (name, step) in [
        ("SelectSeries step 5m", 300.0),
        ("SelectSeries step 1h", 3600.0),
    ] {
        let req = SelectSeriesRequest {
            profile_type_id: PROFILE_TYPE.into(),
            label_selector: selector.clone(),
            start,
            end,
            step,
            aggregation: Some(TimeSeriesAggregationType::Sum as i32),
            ..Default::default()
        };
        queries.push(
            measure(name, &reader, &metrics, |q| {
                let req = req.clone();
                async move {
                    let out = q.select_series(request(req)).await?.into_inner();
                    Ok(out.series.iter().map(|s| s.points.len()).sum())
                }
            })
            .await?,
        );
    }
    drop(moto);
    Ok(WeekResults {
        days,
        store: kind,
        profiles,
        samples,
        build,
        compaction,
        passes,
        levels,
        queries,
    })
}

/// Prints the results as the Markdown of `docs/benchmarks.md`.
pub(crate) fn print(r: &WeekResults) {
    let mb = |b: u64| format!("{:.2} MB", b as f64 / 1e6);
    let stored = r.stored();
    println!(
        "\n{} days of `{SERVICE}`: {PODS} pods, a 15 s CPU profile each every 15 s ({} profiles, \
         {} stored samples); {}. Built in {:.0} s, compacted in {:.0} s ({} passes).\n",
        r.days,
        r.profiles,
        r.samples,
        r.store,
        r.build.as_secs_f64(),
        r.compaction.as_secs_f64(),
        r.passes,
    );
    println!("| level | blocks | bytes | samples | bytes/sample |");
    println!("|---|---|---|---|---|");
    for (res, l) in &r.levels {
        let name = match *res {
            0 => "raw".to_owned(),
            r => format!("{} min sums", r / 60_000_000_000),
        };
        println!(
            "| {name} | {} | {} | {} | {:.2} |",
            l.blocks,
            mb(l.bytes),
            l.samples,
            l.bytes as f64 / l.samples.max(1) as f64,
        );
    }
    println!(
        "\n| query | run | time | requests | fetched | of stored ({}) |",
        mb(stored)
    );
    println!("|---|---|---|---|---|---|");
    reads::print_query_rows(&r.queries, stored);
    for q in &r.queries {
        // The aims: a week's flame graph in a second, its series in
        // 300 ms; series beyond a week in a second.
        let aim = if q.name.starts_with("SelectSeries") && r.days <= 7 {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(1)
        };
        println!(
            "\n{}: answer size {}; cold {:.0} ms, aim ≤ {} ms: {}",
            q.name,
            q.answer,
            q.cold.latency.as_secs_f64() * 1e3,
            aim.as_millis(),
            crate::verdict(q.cold.latency <= aim),
        );
    }
}
