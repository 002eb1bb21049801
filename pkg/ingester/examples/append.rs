//! Measures the head append on its own: `series_for` + `Ingester::append`
//! of each profile just after its decode (so that it is as warm in the
//! caches as in the distributor), the part of row (b) of
//! `docs/benchmarks.md` after decoding, without building the rest of
//! `ember-bench`.
//!
//! `cargo run --release -p ember-ingester --example append [-- SECONDS [FILTER]]`
//! (FILTER keeps the files whose name contains it, for a profiler).
//!
//! The mix is `ember-bench`'s (every shared profile that decodes except the
//! crafted bad inputs, one service per file). Whole passes run until the
//! thread has used SECONDS (default 2) of CPU; times are the thread's CPU
//! time (`/proc/thread-self/schedstat`). It prints the time per profile, the
//! head's heap bytes per stored sample and where they go.

use std::sync::Arc;

use ember_ingester::{Ingester, IngesterConfig};
use ember_model::{
    ingest::{labels_of, series_for},
    new_profile_id,
    pprof::{self, DecodeLimits},
};
use ember_testkit::testdata;
use ember_time::SystemClock;
use object_store::memory::InMemory;

/// Returns the CPU time this thread has used, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("reading /proc/thread-self/schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat starts with the CPU time in nanoseconds")
}

/// Returns the heap bytes the rows of `block` took before samples were
/// packed: a `ProfileRow` each, holding its columns in vectors grown a push
/// at a time (capacity 4, then doubling).
fn unpacked_row_bytes(block: &ember_block::MemBlock) -> usize {
    let capacity = |n: usize| {
        if n == 0 {
            0
        } else {
            n.next_power_of_two().max(4)
        }
    };
    block
        .profiles()
        .map(|r| {
            size_of::<ember_block::ProfileRow>()
                + capacity(r.values.len()) * (size_of::<u32>() + size_of::<i64>())
                + capacity(r.span_values.len())
                    * (size_of::<u64>() + size_of::<u32>() + size_of::<i64>())
        })
        .sum()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS is a number"))
        .unwrap_or(2.0);
    let filter = std::env::args().nth(2).unwrap_or_default();
    let limits = DecodeLimits {
        max_samples: 0,
        max_stack_depth: 0,
        ..Default::default()
    };
    let mix: Vec<_> = testdata::all_profiles()
        .into_iter()
        .filter(|name| !testdata::is_bad_input(name) && name.contains(&filter))
        .filter_map(|name| {
            let raw = testdata::read(&name);
            pprof::decode(&raw, &limits).ok()?;
            let service = format!("bench-{}", name.replace(['/', '.'], "-"));
            Some((name, raw, labels_of(&[("service_name", &service)])))
        })
        .collect();
    let ingester = Ingester::new(
        IngesterConfig::default(),
        Arc::new(InMemory::new()),
        SystemClock::shared(),
    );
    let (mut decode_ns, mut split_ns, mut append_ns, mut passes) = (0u64, 0u64, 0u64, 0u64);
    let mut per_file = vec![(0u64, 0usize); mix.len()];
    while ((split_ns + append_ns) as f64) < seconds * 1e9 {
        for (k, (_, raw, labels)) in mix.iter().enumerate() {
            let start = thread_cpu_nanos();
            let profile = &pprof::decode(raw, &limits).expect("decoded before");
            let t0 = thread_cpu_nanos();
            decode_ns += t0 - start;
            let series = series_for(profile, labels);
            let t1 = thread_cpu_nanos();
            let time = profile.header.time_nanos.max(1);
            ingester
                .append("bench", profile, &series, time, new_profile_id())
                .expect("append");
            split_ns += t1 - t0;
            let t2 = thread_cpu_nanos();
            append_ns += t2 - t1;
            per_file[k].0 += t2 - t0;
            per_file[k].1 = profile.samples.len();
        }
        passes += 1;
    }
    let profiles = passes * mix.len() as u64;
    let per = |ns: u64| ns as f64 / profiles as f64 / 1e3;
    let mut order: Vec<usize> = (0..mix.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(per_file[k].0));
    for &k in order.iter().take(6) {
        let (ns, samples) = per_file[k];
        println!(
            "  {}: {:.0} µs a profile (series_for + append), {samples} samples",
            mix[k].0,
            ns as f64 / passes as f64 / 1e3
        );
    }
    let heads = ingester.heads("bench");
    for head in &heads {
        println!(
            "  the unpacked rows it replaced, computed from the same rows: {:.1} MB",
            unpacked_row_bytes(&head.read()) as f64 / 1e6
        );
        let parts = head.read().heap_parts();
        let total: usize = parts.iter().map(|p| p.1).sum();
        for (name, bytes) in parts {
            println!(
                "  head {name}: {:.1} MB ({:.1}%)",
                bytes as f64 / 1e6,
                bytes as f64 * 100.0 / total.max(1) as f64
            );
        }
    }
    let bytes: u64 = heads.iter().map(|h| h.counts().bytes).sum();
    let samples: u64 = heads.iter().map(|h| h.counts().samples).sum();
    println!(
        "{} profiles ({passes} passes of {}): decode {:.0} µs, then series_for {:.0} µs + append {:.0} µs a profile; head {:.2} bytes/sample ({:.1} MB, {samples} samples)",
        profiles,
        mix.len(),
        per(decode_ns),
        per(split_ns),
        per(append_ns),
        bytes as f64 / samples.max(1) as f64,
        bytes as f64 / 1e6,
    );
}
