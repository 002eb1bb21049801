//! The ingester's metrics follow its heads: appends raise the head gauges,
//! a cut lowers them, a flush counts its block and bytes, and a replay counts
//! the log's records.

use std::sync::Arc;

use ember_ingester::{Ingester, IngesterConfig, IngesterMetrics};
use ember_model::{Labels, ingest, labels::SERVICE_NAME, new_profile_id};
use ember_testkit::pprof::PprofBuilder;
use ember_time::SystemClock;
use ember_wal::WalMetrics;
use object_store::memory::InMemory;
use prometheus::Registry;

fn append(ingester: &Ingester) {
    let profile = PprofBuilder::go_cpu()
        .sample(&["main", "work"], &[3, 30])
        .sample(&["main", "idle"], &[1, 10])
        .build()
        .into();
    let labels = Labels::new(vec![ember_model::Label::new(SERVICE_NAME, "svc")]);
    let series = ingest::series_for(&profile, &labels);
    ingester
        .append("t", &profile, &series, 1, new_profile_id())
        .unwrap();
}

#[tokio::test]
async fn appends_cuts_flushes_and_replays_move_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let registry = Registry::new();
    let metrics = IngesterMetrics::register(&registry).unwrap();
    let wal = WalMetrics::register(&registry).unwrap();
    let ingester = Ingester::open(
        IngesterConfig::default(),
        store.clone(),
        SystemClock::shared(),
        dir.path(),
    )
    .await
    .unwrap()
    .with_metrics(metrics.clone(), wal.clone());
    append(&ingester);
    let one = metrics.head_bytes.get();
    assert!(one > 0);
    append(&ingester);
    assert!(metrics.head_bytes.get() >= one);
    assert_eq!(metrics.ingested_profiles.get(), 2);
    assert!(metrics.head_series.get() > 0);
    assert!(metrics.head_profiles.get() >= 2);
    assert!(metrics.head_samples.get() >= 4);
    assert_eq!(wal.append_duration.get_sample_count(), 2);
    assert!(wal.written_bytes.get() > 0);

    ingester.flush_all().await.unwrap();
    assert_eq!(metrics.head_cuts.get(), 1);
    assert_eq!(metrics.head_series.get(), 0);
    assert_eq!(metrics.head_profiles.get(), 0);
    assert_eq!(metrics.head_samples.get(), 0);
    // The new active head is empty: it has allocated nothing yet.
    assert_eq!(metrics.head_bytes.get(), 0);
    assert_eq!(metrics.flushes.get(), 1);
    assert_eq!(metrics.flush_failures.get(), 0);
    assert_eq!(metrics.blocks_uploaded.get(), 1);
    assert!(metrics.flushed_bytes.get() > 0);
    assert_eq!(metrics.flush_duration.get_sample_count(), 1);

    // A profile not yet flushed is replayed by the next process.
    append(&ingester);
    drop(ingester);
    let registry = Registry::new();
    let wal = WalMetrics::register(&registry).unwrap();
    let _reopened = Ingester::open(
        IngesterConfig::default(),
        store,
        SystemClock::shared(),
        dir.path(),
    )
    .await
    .unwrap()
    .with_metrics(IngesterMetrics::register(&registry).unwrap(), wal.clone());
    assert!(wal.replayed_records.get() >= 1);
    assert_eq!(wal.corrupt_records.get(), 0);
    assert!(wal.segments.get() >= 1);
}
