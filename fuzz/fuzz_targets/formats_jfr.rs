//! Fuzzes the JFR (Java Flight Recorder) parser of `/ingest`. Whatever it
//! accepts must be pprof profiles that Ember's validator accepts too.

#![no_main]

use ember_formats::jfr::{self, JfrOptions};
use ember_model::pprof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(profiles) = jfr::parse(data, &JfrOptions::default()) {
        for (name, mut profile) in profiles {
            pprof::validate(&mut profile, &pprof::DecodeLimits::default())
                .unwrap_or_else(|e| panic!("JFR output {name} does not validate: {e}"));
        }
    }
});
