//! Time to compact replicated level-1 blocks of real profiles.
//!
//! `cargo bench -p ember-compactor --bench compact -- [--per-hour N] [--hours N]`
//!
//! Three ingesters each flush one block per hour holding the same `--per-hour`
//! profiles (the mix of `shared/testdata/profiles`, cycling, 5 services, the
//! same IDs, appended in different orders so that their symbol tables
//! differ) to a `LocalFileSystem` store in a temporary directory. A
//! `Compactor::run_once` with 1h ranges then merges each hour's three blocks
//! into one; another with the default ranges merges those into 4h blocks.
//! The setup is not timed.

use std::{
    sync::Arc,
    time::{Duration, Instant, UNIX_EPOCH},
};

use ember_block::MemBlock;
use ember_compactor::{Compactor, CompactorConfig};
use ember_model::{ingest, new_profile_id, pprof};
use ember_testkit::testdata;
use ember_time::ManualClock;
use object_store::{ObjectStore, local::LocalFileSystem};

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;
const BASE: i64 = 1_704_067_200 * SECOND;

/// Every shared profile that decodes with no sample or depth limit.
fn profiles() -> Vec<pprof::FlatProfile> {
    let limits = pprof::DecodeLimits {
        max_samples: 0,
        max_stack_depth: 0,
        ..Default::default()
    };
    testdata::decode_all(1, |raw| pprof::decode(raw, &limits))
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let per_hour = arg("--per-hour", 500);
    let hours = arg("--hours", 4);
    let profiles = profiles();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());

    let setup = Instant::now();
    let mut l1_bytes = 0;
    let mut l1_samples = 0;
    for hour in 0..hours {
        let pushes: Vec<_> = (0..per_hour)
            .map(|i| {
                let p = &profiles[i % profiles.len()];
                let service = format!("svc-{}", i % 5);
                let labels = ingest::labels_of(&[("service_name", &service)]);
                let time = BASE + hour as i64 * HOUR + (i as i64 * 3600 / per_hour as i64) * SECOND;
                (p, ingest::series_for(p, &labels), time, new_profile_id())
            })
            .collect();
        for replica in 0..3 {
            let mut head = MemBlock::default();
            let mut order: Vec<usize> = (0..pushes.len()).collect();
            match replica {
                1 => order.reverse(),
                2 => order.sort_by_key(|i| (i * 7919) % pushes.len()),
                _ => {}
            }
            for i in order {
                let (p, series, time, id) = &pushes[i];
                head.append(p, series, *time, *id);
            }
            let block =
                ember_block::encode_block(&head.to_block_data(format!("ingester-{replica}")))
                    .unwrap();
            l1_bytes += block.meta.stats.bytes;
            l1_samples += block.meta.stats.samples;
            ember_block::upload_block(&store, "bench", &block)
                .await
                .unwrap();
        }
    }
    println!(
        "setup: {} level-1 blocks ({hours} hours x 3 replicas x {per_hour} profiles), {:.1} MB, {l1_samples} samples, {:.1} s",
        hours * 3,
        l1_bytes as f64 / 1e6,
        setup.elapsed().as_secs_f64()
    );

    let clock = Arc::new(ManualClock::new(
        UNIX_EPOCH + Duration::from_nanos((BASE + (hours as i64 + 2) * HOUR) as u64),
    ));
    // Hourly merges first (3 level-1 blocks each), then the 4h ranges of the
    // resulting level-2 blocks.
    let stages = [
        ("1h ranges", vec![Duration::from_secs(3600)]),
        ("4h ranges", CompactorConfig::default().block_ranges),
    ];
    for (name, block_ranges) in stages {
        let config = CompactorConfig {
            block_ranges,
            ..CompactorConfig::default()
        };
        let compactor = Compactor::new(
            store.clone(),
            config,
            Arc::new(|_: &str| Duration::ZERO),
            clock.clone(),
        )
        .unwrap();
        let started = Instant::now();
        let report = compactor.run_once().await.unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(report.failures, 0);
        println!(
            "run_once, {name}: {} groups, {} -> {} profile rows, {:.2} s = {:.0} ms per group, {:.0} rows/s read",
            report.groups_merged,
            report.profiles_before,
            report.profiles_after,
            elapsed,
            elapsed * 1e3 / report.groups_merged.max(1) as f64,
            report.profiles_before as f64 / elapsed
        );
    }
}
