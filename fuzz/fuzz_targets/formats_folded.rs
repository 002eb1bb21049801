//! Fuzzes the folded (`a;b;c 12`) and `lines` parsers of `/ingest`. Whatever
//! they accept must be a pprof profile that Ember's validator accepts too.

#![no_main]

use ember_formats::folded::{self, FoldedOptions};
use ember_model::pprof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = FoldedOptions::default();
    let results = [
        folded::parse(data, &options),
        folded::parse_lines(data, &options),
    ];
    for mut profile in results.into_iter().flatten() {
        pprof::validate(&mut profile, &pprof::DecodeLimits::default())
            .unwrap_or_else(|e| panic!("folded output does not validate: {e}"));
    }
});
