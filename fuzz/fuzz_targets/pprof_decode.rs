//! Fuzzes the pprof decoder and validator with untrusted payloads (gzipped or not).
//! Whatever the input, decoding returns a profile or an error, never panics,
//! and an accepted profile splits into series without panicking either.

#![no_main]

use ember_model::{Labels, ingest, pprof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small bounds keep each run fast; the logic is the same as the defaults'.
    let limits = pprof::DecodeLimits {
        max_decompressed_bytes: 1 << 20,
        max_samples: 4_000,
        max_stack_depth: 256,
    };
    if let Ok(profile) = pprof::decode(data, &limits) {
        let series = ingest::series_for(&profile, &Labels::default());
        for s in &series {
            if let Some(samples) = &s.samples {
                for &i in samples {
                    let _ = profile.sample[i as usize].value[s.sample_type];
                }
            }
        }
    }
});
