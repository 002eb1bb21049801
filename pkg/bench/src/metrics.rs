//! `--metrics-overhead`: what recording metrics costs the ingest path.
//!
//! A counter cannot be switched off, so the cost is measured directly: (b)'s
//! ingest (`Distributor::ingest_pprof` into an `Ingester`, both recording
//! into a registry) runs interleaved with a loop making exactly the metric
//! calls one ingested profile makes — the distributor's four per-tenant,
//! per-type counters, the ingester's head gauges and counter, and the
//! write-ahead log's two histograms and byte counter (with their clock reads)
//! — and the second is reported as a share of the first.

use std::{sync::Arc, time::Duration, time::Instant};

use ember_distributor::{Distributor, DistributorMetrics};
use ember_ingester::{HeadCounts, Ingester, IngesterConfig, IngesterMetrics, WalMetrics};
use ember_limits::Limits;
use ember_model::labels::METRIC_NAME;
use ember_time::SystemClock;
use object_store::memory::InMemory;
use prometheus::Registry;

use crate::{
    BoxResult, TENANT,
    corpus::{Corpus, Input, unlimited},
    ingest::run_rounds,
};

/// Measures and prints the recording cost per profile against (b)'s ingest.
pub(crate) fn run(corpus: &Corpus, min: Duration) -> BoxResult<()> {
    let registry = Registry::new();
    let distributor_metrics = DistributorMetrics::register(&registry)?;
    let ingester_metrics = IngesterMetrics::register(&registry)?;
    let wal_metrics = WalMetrics::register(&registry)?;
    let ingester = Ingester::new(
        IngesterConfig::default(),
        Arc::new(InMemory::new()),
        SystemClock::shared(),
    )
    .with_metrics(ingester_metrics.clone(), wal_metrics.clone());
    let limits = unlimited();
    let distributor = Distributor::new(
        Arc::new(ingester),
        Arc::new(Limits {
            max_decompressed_profile_size_bytes: limits.max_decompressed_bytes as u64,
            ..Limits::unlimited()
        }),
        SystemClock::shared(),
    )
    .with_metrics(distributor_metrics.clone());
    let mut ingest = |i: &Input| -> BoxResult<()> {
        distributor.ingest_pprof(TENANT, &i.labels, &i.gz)?;
        Ok(())
    };
    let mut record = |i: &Input| -> BoxResult<()> {
        let kind = i.labels.get(METRIC_NAME).unwrap_or("process_cpu");
        let samples = i.profile.samples.len();
        distributor_metrics.received(TENANT, kind, samples, i.gz.len(), 4 * i.gz.len());
        let appended = HeadCounts {
            series: 1,
            profiles: i.profile.header.sample_type.len() as u64,
            samples: samples as u64,
            bytes: 12 * samples as u64,
        };
        ingester_metrics.add_head(appended, 1);
        ingester_metrics.ingested_profiles.inc();
        let started = Instant::now();
        wal_metrics
            .fsync_duration
            .observe(started.elapsed().as_secs_f64());
        wal_metrics.written_bytes.inc_by(i.gz.len() as u64);
        wal_metrics
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    };
    let rates = run_rounds(
        min,
        &corpus.inputs,
        &mut [("ingest", &mut ingest), ("record", &mut record)],
    )?;
    let (ingest, record) = (&rates[0], &rates[1]);
    let per_profile = ingest.elapsed.as_secs_f64() / ingest.profiles as f64;
    let per_record = record.elapsed.as_secs_f64() / record.profiles as f64;
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| (b) ingest with metrics, 1 core | {:.1} MB/s, {:.0} profiles/s, {:.0} µs per profile |",
        ingest.mb_per_sec(),
        ingest.profiles_per_sec(),
        per_profile * 1e6
    );
    println!(
        "| the metric calls of one ingested profile | {:.0} ns = {:.3}% of (b) per profile |",
        per_record * 1e9,
        100.0 * per_record / per_profile
    );
    Ok(())
}
