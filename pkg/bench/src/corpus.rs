//! The benchmark's input: every valid profile of the shared test corpus,
//! gzipped as SDKs push them, decoded once for the steps that skip decoding.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use ember_model::{
    Labels,
    ingest::labels_of,
    pprof::{self, FlatProfile},
};
use ember_testkit::testdata;

/// Decode limits of the benchmark: the defaults, but no sample or depth cap,
/// so that every real file is accepted.
pub(crate) fn unlimited() -> pprof::DecodeLimits {
    pprof::DecodeLimits {
        max_samples: 0,
        max_stack_depth: 0,
        ..Default::default()
    }
}

/// One profile of the mix.
#[derive(Debug)]
pub(crate) struct Input {
    /// Path relative to the corpus root.
    pub(crate) name: String,
    /// The payload as pushed: gzipped pprof (plain files are gzipped here).
    pub(crate) gz: Vec<u8>,
    /// The decoded payload.
    pub(crate) profile: FlatProfile,
    /// Client labels: one service per file.
    pub(crate) labels: Labels,
}

/// The mix and the files left out of it.
#[derive(Debug)]
pub(crate) struct Corpus {
    pub(crate) inputs: Vec<Input>,
    /// Files that are not profiles or failed to decode, with the reason.
    pub(crate) skipped: Vec<(String, String)>,
}

impl Corpus {
    /// Returns the total gzipped bytes of one pass over the mix.
    pub(crate) fn gz_bytes(&self) -> usize {
        self.inputs.iter().map(|i| i.gz.len()).sum()
    }

    /// Returns the total number of pprof samples of one pass over the mix.
    pub(crate) fn samples(&self) -> usize {
        self.inputs.iter().map(|i| i.profile.samples.len()).sum()
    }
}

/// Returns the shared corpus directory (`EMBER_TESTDATA`, else found beside
/// the workspace), or where it looked.
pub(crate) fn default_dir() -> Result<PathBuf, String> {
    testdata::find_profiles_dir()
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// Loads every profile file under `dir` (see
/// [`testdata::profiles_in`]) that decodes as pprof, except the crafted bad
/// inputs, which test error paths, not throughput; sorted by path.
pub(crate) fn load(dir: &Path) -> std::io::Result<Corpus> {
    let limits = unlimited();
    let mut corpus = Corpus {
        inputs: Vec::new(),
        skipped: Vec::new(),
    };
    for name in testdata::profiles_in(dir)? {
        if testdata::is_bad_input(&name) {
            corpus.skipped.push((name, "malformed fixture".into()));
            continue;
        }
        let raw = std::fs::read(dir.join(&name))?;
        let profile = match pprof::decode(&raw, &limits) {
            Ok(p) => p,
            Err(e) => {
                corpus.skipped.push((name, e.to_string()));
                continue;
            }
        };
        let gz = if raw.starts_with(&[0x1f, 0x8b]) {
            raw
        } else {
            gzip(&raw)?
        };
        let service = format!("bench-{}", name.replace(['/', '.'], "-"));
        corpus.inputs.push(Input {
            labels: labels_of(&[("service_name", &service)]),
            name,
            gz,
            profile,
        });
    }
    Ok(corpus)
}

/// Returns a cheap pseudo-random number for `x` (SplitMix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce5_e4b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// Returns a copy of `profile` that looks like the next profile of the same
/// workload rather than an identical resend: each value is scaled by a
/// factor in [0.5, 1.5) and one sample in ten is dropped (its values zeroed,
/// which the ingester skips), both drawn from `seed`. Values stay multiples
/// of their column's unit (the GCD, e.g. the CPU sampling period), as a
/// profiler's values are.
pub(crate) fn jittered(profile: &FlatProfile, seed: u64) -> FlatProfile {
    let mut p = profile.clone();
    let units: Vec<i64> = (0..p.header.sample_type.len())
        .map(|c| p.samples.iter().fold(0, |g, s| gcd(g, s.values[c])).max(1))
        .collect();
    for i in 0..p.samples.len() {
        let r = mix(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let drop = r.is_multiple_of(10);
        let scale = 512 + ((r >> 32) % 1024) as i64; // in 1024ths
        for (v, unit) in p.samples.values_mut(i).iter_mut().zip(&units) {
            let n = (*v / unit).saturating_mul(scale).saturating_add(512) / 1024;
            *v = if drop { 0 } else { n.saturating_mul(*unit) };
        }
    }
    p
}
