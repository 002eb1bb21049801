//! `--flush-memory`: the peak memory of flushing a long head and of
//! compacting hourly blocks into one, on synthetic CPU profiles of ten pods
//! ([`synth`](crate::synth)).
//!
//! The dataset is one service (`checkout`) of ten pods, `checkout-0` to
//! `checkout-9`, each pushing a 15 s CPU profile every 15 s for `H` hours
//! (57,600 profiles for 24 h), appended through the real `Ingester`. Two
//! phases, each measured alone:
//!
//! - flush: every profile in one head (`max_block_duration` = `H` hours),
//!   then `flush_all` to a `LocalFileSystem` store;
//! - compaction: the same profiles flushed hour by hour into hourly blocks,
//!   then one `Compactor` pass (ranges 1h and `H` h, default downsampling)
//!   that merges them into one block and its pre-aggregated copies.
//!
//! Peak memory is the kernel's high-water mark of the resident set
//! (`VmHWM` in `/proc/self/status`), reset to the current resident set
//! before each phase by writing `5` to `/proc/self/clear_refs` (Linux 4.0 and
//! later; see proc(5)). Freed heap from what ran before is first given back
//! to the kernel (`malloc_trim`), so the resident set before a phase is what
//! the phase starts with: for the flush, mostly the head itself.

use std::{sync::Arc, time::Duration, time::Instant};

use ember_compactor::{Compactor, CompactorConfig, Retention};
use ember_ingester::{Ingester, IngesterConfig};
use ember_model::{ingest::labels_of, ingest::series_for};
use ember_time::{Clock, SystemClock};
use object_store::{ObjectStore, local::LocalFileSystem};

use crate::{
    BoxResult, TENANT, storage,
    synth::{PROFILE_NANOS, Service},
};

/// Pods of the service, each a series per sample type.
const PODS: usize = 10;
const HOUR_NANOS: i64 = 3_600_000_000_000;

/// The resident set before a phase and its peak during it.
#[derive(Debug)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) before: u64,
    pub(crate) peak: u64,
    pub(crate) elapsed: Duration,
    /// Blocks in the store after the phase and their bytes.
    pub(crate) blocks: usize,
    pub(crate) bytes: u64,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct FlushResults {
    pub(crate) hours: usize,
    pub(crate) profiles: usize,
    pub(crate) samples: u64,
    pub(crate) phases: Vec<Phase>,
}

/// Returns a `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> BoxResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    Ok(kb * 1024)
}

/// Gives freed heap back to the kernel and resets the high-water mark to the
/// resident set; returns that resident set.
fn reset_peak() -> BoxResult<u64> {
    // SAFETY: malloc_trim only releases free memory of glibc's arenas.
    unsafe { libc::malloc_trim(0) };
    std::fs::write("/proc/self/clear_refs", "5")
        .map_err(|e| format!("resetting VmHWM through /proc/self/clear_refs: {e}"))?;
    status_bytes("VmRSS")
}

/// Appends `hours` of the ten pods' profiles, from `start`, into `ingester`;
/// `after_hour` runs at the end of each hour. Returns the samples stored.
async fn append_hours(
    ingester: &Ingester,
    start: i64,
    hours: usize,
    mut after_hour: impl AsyncFnMut(&Ingester) -> BoxResult<()>,
) -> BoxResult<u64> {
    let service = Service::new(0);
    let labels: Vec<_> = (0..PODS)
        .map(|pod| {
            labels_of(&[
                ("service_name", "checkout"),
                ("pod", &format!("checkout-{pod}")),
            ])
        })
        .collect();
    let per_hour = (HOUR_NANOS / PROFILE_NANOS) as usize;
    let mut samples = 0u64;
    for hour in 0..hours {
        tokio::task::block_in_place(|| -> BoxResult<()> {
            for step in 0..per_hour {
                let k = hour * per_hour + step;
                let time = start + k as i64 * PROFILE_NANOS;
                for (pod, labels) in labels.iter().enumerate() {
                    let n = (k * PODS + pod) as u64;
                    let profile = service.cpu_profile(n, time);
                    let series = series_for(&profile, labels);
                    ingester.append(TENANT, &profile, &series, time, u128::from(n) + 1)?;
                }
            }
            Ok(())
        })?;
        after_hour(ingester).await?;
    }
    for tenant in ingester.tenants() {
        samples += ingester
            .heads(&tenant)
            .iter()
            .map(|h| h.read().sample_count())
            .sum::<u64>();
    }
    Ok(samples)
}

fn store_at(dir: &std::path::Path) -> BoxResult<Arc<dyn ObjectStore>> {
    Ok(Arc::new(LocalFileSystem::new_with_prefix(dir)?))
}

/// Runs both phases over `hours` hours of profiles.
pub(crate) async fn run(hours: usize) -> BoxResult<FlushResults> {
    // Whole days back, so that the compactor finds the range complete.
    let now = SystemClock.now_nanos();
    let day = 24 * HOUR_NANOS;
    let start = (now.div_euclid(day) - (hours as i64).div_euclid(24) - 2) * day;
    let mut phases = Vec::new();

    eprintln!("flush: appending {hours} h of {PODS} pods into one head...");
    let dir = tempfile::tempdir()?;
    let config = IngesterConfig {
        max_block_duration: Duration::from_secs(3600 * hours as u64),
        max_block_bytes: u64::MAX,
        ..Default::default()
    };
    let ingester = Ingester::new(config, store_at(dir.path())?, SystemClock::shared());
    let samples = append_hours(&ingester, start, hours, async |_| Ok(())).await?;
    let profiles = hours * (HOUR_NANOS / PROFILE_NANOS) as usize * PODS;
    eprintln!("flush: {profiles} profiles, {samples} samples; flushing...");
    let before = reset_peak()?;
    let started = Instant::now();
    ingester.flush_all().await?;
    let elapsed = started.elapsed();
    let peak = status_bytes("VmHWM")?;
    drop(ingester);
    let footprint = storage::measure(dir.path())?;
    phases.push(Phase {
        name: "flush of one head",
        before,
        peak,
        elapsed,
        blocks: footprint.blocks,
        bytes: footprint.total(),
    });
    drop(dir);

    eprintln!("compaction: appending and flushing {hours} hourly blocks...");
    let dir = tempfile::tempdir()?;
    let store = store_at(dir.path())?;
    let ingester = Ingester::new(
        IngesterConfig::default(),
        store.clone(),
        SystemClock::shared(),
    );
    append_hours(&ingester, start, hours, async |i| Ok(i.flush_all().await?)).await?;
    drop(ingester);
    let ranges = if hours > 1 {
        vec![
            Duration::from_secs(3600),
            Duration::from_secs(3600 * hours as u64),
        ]
    } else {
        vec![Duration::from_secs(3600)]
    };
    let config = CompactorConfig {
        block_ranges: ranges,
        ..Default::default()
    };
    let keep_forever: Retention = Arc::new(|_: &str| Duration::ZERO);
    let compactor = Compactor::new(store, config, keep_forever, SystemClock::shared())?;
    eprintln!("compaction: merging...");
    let before = reset_peak()?;
    let started = Instant::now();
    let report = compactor.run_once().await?;
    let elapsed = started.elapsed();
    let peak = status_bytes("VmHWM")?;
    if report.failures > 0 {
        return Err(format!("compaction failed: {report:?}").into());
    }
    let footprint = storage::measure(dir.path())?;
    phases.push(Phase {
        name: "compaction of the hourly blocks",
        before,
        peak,
        elapsed,
        blocks: footprint.blocks,
        bytes: footprint.total(),
    });
    Ok(FlushResults {
        hours,
        profiles,
        samples,
        phases,
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// Prints the phases as a Markdown table.
pub(crate) fn print(r: &FlushResults) {
    println!(
        "\n{} h, {PODS} pods: {} profiles, {} rows' samples",
        r.hours, r.profiles, r.samples
    );
    println!(
        "\n| phase | RSS before | peak RSS (VmHWM) | peak − before | time | blocks after, bytes |"
    );
    println!("|---|---|---|---|---|---|");
    for p in &r.phases {
        println!(
            "| {} | {} | {} | {} | {:.1} s | {}, {} |",
            p.name,
            mb(p.before),
            mb(p.peak),
            mb(p.peak.saturating_sub(p.before)),
            p.elapsed.as_secs_f64(),
            p.blocks,
            mb(p.bytes),
        );
    }
}
