//! Fuzzes the `/ingest` `name` parser: `app.cpu{key=value,...}` with quotes and escapes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        let _ = ember_formats::name::parse(input);
    }
});
