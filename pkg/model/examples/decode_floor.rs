//! Measures row (a) of `docs/benchmarks.md`, the decode floor, on its own:
//! `ember_model::pprof::decode` (gunzip + protobuf decode + validation) over
//! the shared mix, without building the rest of `ember-bench`.
//!
//! `cargo run --release -p ember-model --example decode_floor [-- SECONDS]`
//!
//! The mix is `ember-bench`'s: every shared profile that decodes except the
//! crafted bad inputs, plain files gzipped first. Whole passes run until the
//! thread has used SECONDS (default 2) of CPU; rates are per core, from the
//! thread's CPU time (`/proc/thread-self/schedstat`), so other load on the
//! machine slows them little.

use std::io::Write;

use ember_model::pprof::{self, DecodeLimits};
use ember_testkit::testdata;

/// Returns the CPU time this thread has used, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("reading /proc/thread-self/schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat starts with the CPU time in nanoseconds")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS is a number"))
        .unwrap_or(2.0);
    let limits = DecodeLimits {
        max_samples: 0,
        max_stack_depth: 0,
        ..Default::default()
    };
    let mix: Vec<Vec<u8>> = testdata::all_profiles()
        .into_iter()
        .filter(|name| !testdata::is_bad_input(name))
        .map(|name| testdata::read(&name))
        .filter(|raw| pprof::decode(raw, &limits).is_ok())
        .map(|raw| {
            if raw.starts_with(&[0x1f, 0x8b]) {
                raw
            } else {
                gzip(&raw)
            }
        })
        .collect();
    let gz_bytes: usize = mix.iter().map(Vec::len).sum();

    let (mut decode_ns, mut gunzip_ns, mut passes) = (0u64, 0u64, 0u64);
    while (decode_ns as f64) < seconds * 1e9 {
        let start = thread_cpu_nanos();
        for raw in &mix {
            drop(pprof::decode(raw, &limits).expect("decodes"));
        }
        decode_ns += thread_cpu_nanos() - start;
        let start = thread_cpu_nanos();
        for raw in &mix {
            drop(pprof::gunzip_bounded(raw, limits.max_decompressed_bytes).expect("inflates"));
        }
        gunzip_ns += thread_cpu_nanos() - start;
        passes += 1;
    }
    let profiles = passes * mix.len() as u64;
    let secs = decode_ns as f64 / 1e9;
    println!(
        "(a) decode floor: {} files, {gz_bytes} bytes gzipped a pass, {passes} passes: \
         {:.1} MB/s, {:.0} profiles/s per core; per profile decode {:.0} µs, of which gunzip {:.0} µs",
        mix.len(),
        (passes as f64 * gz_bytes as f64) / secs / 1e6,
        profiles as f64 / secs,
        decode_ns as f64 / profiles as f64 / 1e3,
        gunzip_ns as f64 / profiles as f64 / 1e3,
    );
}
