//! Fuzzes the speedscope JSON parser of `/ingest`. Whatever it accepts must be
//! pprof profiles that Ember's validator accepts too.

#![no_main]

use ember_formats::speedscope::{self, SpeedscopeOptions};
use ember_model::pprof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = SpeedscopeOptions {
        sample_rate: 100,
        ..Default::default()
    };
    if let Ok(profiles) = speedscope::parse(data, &options) {
        for mut profile in profiles {
            pprof::validate(&mut profile, &pprof::DecodeLimits::default())
                .unwrap_or_else(|e| panic!("speedscope output does not validate: {e}"));
        }
    }
});
