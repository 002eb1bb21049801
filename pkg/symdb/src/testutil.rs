//! Test fixtures shared by this crate's unit tests.

use ember_proto::google::v1 as pprof;
use pprof::{Line as PLine, Location as PLocation, Sample, ValueType};

/// Builds a profile whose samples are stacks of function names, root first.
pub(crate) fn profile(stacks: &[(&[&str], i64)]) -> pprof::Profile {
    let mut p = pprof::Profile {
        string_table: vec!["".into(), "cpu".into(), "nanoseconds".into()],
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        ..Default::default()
    };
    let mut ids = std::collections::HashMap::new();
    for (stack, value) in stacks {
        let mut location_id = Vec::new();
        for name in stack.iter().rev() {
            let next = ids.len() as u64 + 1;
            let id = *ids.entry(name.to_string()).or_insert_with(|| {
                p.string_table.push(name.to_string());
                p.function.push(pprof::Function {
                    id: next,
                    name: p.string_table.len() as i64 - 1,
                    ..Default::default()
                });
                p.location.push(PLocation {
                    id: next,
                    line: vec![PLine {
                        function_id: next,
                        line: 1,
                        column: 0,
                    }],
                    ..Default::default()
                });
                next
            });
            location_id.push(id);
        }
        p.sample.push(Sample {
            location_id,
            value: vec![*value],
            label: vec![],
        });
    }
    p
}
