//! Fuzzes the label-selector parser: `{a="b", c=~"d.*"}` selectors and
//! `<profile type ID>{...}` queries, as typed by users in Grafana and the UI.

#![no_main]

use ember_model::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = Selector::parse(input) {
        // A parsed selector prints back to something that parses again.
        let printed = selector.to_string();
        Selector::parse(&printed)
            .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which fails: {e}"));
    }
    let _ = Selector::parse_profile_query(input);
});
