//! Turns summed stack-trace values back into stacks: a function-name tree for
//! flame graphs, or a pprof profile for `go tool pprof`.
//!
//! Both walk the partition's stack tree once, in node order. Because a parent
//! always precedes its children, one forward pass maps every node that leads
//! to a non-zero value, without rebuilding any stack per sample.

use std::collections::HashMap;

use ember_model::flamegraph::{FunctionTree, NodeId};
use ember_proto::google::v1 as pprof;
use rustc_hash::FxHashMap;

use crate::{ROOT_NODE, Symbols};

/// Marks the nodes on the path from the root to every node with a non-zero sum.
fn live_nodes(symbols: &Symbols, sums: &[i64]) -> Vec<bool> {
    let parents = &symbols.stacks.parents;
    let mut live = vec![false; parents.len()];
    for (node, &v) in sums.iter().enumerate().rev() {
        if v == 0 {
            continue;
        }
        let mut n = node;
        while n != ROOT_NODE as usize && !live[n] {
            live[n] = true;
            n = parents[n] as usize;
        }
    }
    live
}

/// Adds the per-node `sums` of a partition to `tree`, one frame per function
/// (inlined functions become frames of their own, callers first).
pub fn add_to_function_tree(symbols: &Symbols, sums: &[i64], tree: &mut FunctionTree) {
    let live = live_nodes(symbols, sums);
    let mut names = vec![u32::MAX; symbols.functions.len()];
    let mut mapped: Vec<NodeId> = vec![FunctionTree::ROOT; live.len()];
    for node in 1..live.len() {
        if !live[node] {
            continue;
        }
        let mut at = mapped[symbols.stacks.parents[node] as usize];
        let location = &symbols.locations[symbols.stacks.locations[node] as usize];
        for line in location.lines.iter().rev() {
            let name = &mut names[line.function as usize];
            if *name == u32::MAX {
                *name = tree.intern(symbols.function_name(line.function));
            }
            at = tree.child(at, *name);
        }
        mapped[node] = at;
        if sums[node] != 0 {
            tree.add_self(at, sums[node]);
        }
    }
}

/// A location's identity in the output: mapping, address and `(function, line)` pairs.
type LocationKey = (u64, u64, Vec<(u64, i64)>);

/// Builds one pprof profile from the sums of any number of partitions,
/// de-duplicating symbols across them.
#[derive(Debug)]
pub struct PprofBuilder {
    profile: pprof::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64, i64, i64), u64>,
    mappings: HashMap<(u64, u64, u64, i64, i64), u64>,
    locations: HashMap<LocationKey, u64>,
    samples: HashMap<Vec<u64>, usize>,
}

impl PprofBuilder {
    /// Starts a profile of one sample type, e.g. `("cpu", "nanoseconds")`.
    pub fn new(sample_type: (&str, &str), period_type: (&str, &str), period: i64) -> Self {
        let mut b = Self {
            profile: pprof::Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            mappings: HashMap::new(),
            locations: HashMap::new(),
            samples: HashMap::new(),
        };
        b.string("");
        let st = pprof::ValueType {
            r#type: b.string(sample_type.0),
            unit: b.string(sample_type.1),
        };
        b.profile.sample_type = vec![st];
        if !period_type.0.is_empty() {
            b.profile.period_type = Some(pprof::ValueType {
                r#type: b.string(period_type.0),
                unit: b.string(period_type.1),
            });
        }
        b.profile.period = period;
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    /// Adds the per-node `sums` of a partition.
    pub fn add(&mut self, symbols: &Symbols, sums: &[i64]) {
        let live = live_nodes(symbols, sums);
        let mut function_ids: FxHashMap<u32, u64> = FxHashMap::default();
        let mut mapping_ids: FxHashMap<u32, u64> = FxHashMap::default();
        let mut location_ids: FxHashMap<u32, u64> = FxHashMap::default();
        // Stacks leaf first, built incrementally from each node's parent.
        let mut stacks: Vec<Option<Vec<u64>>> = vec![None; live.len()];
        stacks[ROOT_NODE as usize] = Some(Vec::new());
        for node in 1..live.len() {
            if !live[node] {
                continue;
            }
            let local_location = symbols.stacks.locations[node];
            let location = match location_ids.get(&local_location) {
                Some(&id) => id,
                None => {
                    let id =
                        self.location(symbols, local_location, &mut function_ids, &mut mapping_ids);
                    location_ids.insert(local_location, id);
                    id
                }
            };
            let parent = symbols.stacks.parents[node] as usize;
            let mut stack = Vec::with_capacity(stacks[parent].as_ref().map_or(0, Vec::len) + 1);
            stack.push(location);
            stack.extend_from_slice(stacks[parent].as_deref().unwrap_or_default());
            if sums[node] != 0 {
                self.sample(stack.clone(), sums[node]);
            }
            stacks[node] = Some(stack);
        }
    }

    fn sample(&mut self, stack: Vec<u64>, value: i64) {
        match self.samples.get(&stack) {
            Some(&i) => self.profile.sample[i].value[0] += value,
            None => {
                self.samples
                    .insert(stack.clone(), self.profile.sample.len());
                self.profile.sample.push(pprof::Sample {
                    location_id: stack,
                    value: vec![value],
                    label: vec![],
                });
            }
        }
    }

    fn location(
        &mut self,
        symbols: &Symbols,
        local: u32,
        function_ids: &mut FxHashMap<u32, u64>,
        mapping_ids: &mut FxHashMap<u32, u64>,
    ) -> u64 {
        let loc = &symbols.locations[local as usize];
        let mapping_id = if loc.mapping == 0 {
            0
        } else if let Some(&id) = mapping_ids.get(&loc.mapping) {
            id
        } else {
            let m = symbols.mappings[loc.mapping as usize];
            let key = (
                m.memory_start,
                m.memory_limit,
                m.file_offset,
                self.string(&symbols.strings[m.filename as usize]),
                self.string(&symbols.strings[m.build_id as usize]),
            );
            let next = self.profile.mapping.len() as u64 + 1;
            let id = *self.mappings.entry(key).or_insert(next);
            if id == next {
                self.profile.mapping.push(pprof::Mapping {
                    id,
                    memory_start: key.0,
                    memory_limit: key.1,
                    file_offset: key.2,
                    filename: key.3,
                    build_id: key.4,
                    has_functions: m.flags & 1 != 0,
                    has_filenames: m.flags & 2 != 0,
                    has_line_numbers: m.flags & 4 != 0,
                    has_inline_frames: m.flags & 8 != 0,
                });
            }
            mapping_ids.insert(loc.mapping, id);
            id
        };
        let mut lines = Vec::with_capacity(loc.lines.len());
        for line in &loc.lines {
            let function_id = match function_ids.get(&line.function) {
                Some(&id) => id,
                None => {
                    let f = symbols.functions[line.function as usize];
                    let key = (
                        self.string(&symbols.strings[f.name as usize]),
                        self.string(&symbols.strings[f.system_name as usize]),
                        self.string(&symbols.strings[f.filename as usize]),
                        f.start_line,
                    );
                    let next = self.profile.function.len() as u64 + 1;
                    let id = *self.functions.entry(key).or_insert(next);
                    if id == next {
                        self.profile.function.push(pprof::Function {
                            id,
                            name: key.0,
                            system_name: key.1,
                            filename: key.2,
                            start_line: key.3,
                        });
                    }
                    function_ids.insert(line.function, id);
                    id
                }
            };
            lines.push((function_id, line.line));
        }
        let key = (mapping_id, loc.address, lines);
        let next = self.profile.location.len() as u64 + 1;
        let id = *self.locations.entry(key.clone()).or_insert(next);
        if id == next {
            self.profile.location.push(pprof::Location {
                id,
                mapping_id,
                address: loc.address,
                line: key
                    .2
                    .iter()
                    .map(|&(function_id, line)| pprof::Line {
                        function_id,
                        line,
                        column: 0,
                    })
                    .collect(),
                is_folded: false,
            });
        }
        id
    }

    /// Returns the profile, stamped with its time range.
    pub fn finish(mut self, time_nanos: i64, duration_nanos: i64) -> pprof::Profile {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
        self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SymbolsBuilder, testutil::profile};

    fn sums_of(b: &SymbolsBuilder, ids: &[u32], values: &[i64]) -> Vec<i64> {
        let mut sums = vec![0; b.symbols().stacks.len()];
        for (id, v) in ids.iter().zip(values) {
            sums[*id as usize] += v;
        }
        sums
    }

    #[test]
    fn pprof_round_trip_keeps_stacks_and_values() {
        let mut b = SymbolsBuilder::new();
        let stacks: &[(&[&str], i64)] = &[(&["a", "b"], 1), (&["a", "c"], 2), (&["a"], 4)];
        let ids = b.add_profile(&profile(stacks));
        let sums = sums_of(&b, &ids, &[1, 2, 4]);
        let mut pb = PprofBuilder::new(("cpu", "nanoseconds"), ("cpu", "nanoseconds"), 10);
        pb.add(b.symbols(), &sums);
        pb.add(b.symbols(), &sums);
        let p = pb.finish(0, 0);
        assert_eq!(p.sample.len(), 3);
        assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 14);
        // a leaf-first stack [b, a]
        let names: Vec<Vec<&str>> = p
            .sample
            .iter()
            .map(|s| {
                s.location_id
                    .iter()
                    .map(|id| {
                        let loc = &p.location[*id as usize - 1];
                        let f = &p.function[loc.line[0].function_id as usize - 1];
                        p.string_table[f.name as usize].as_str()
                    })
                    .collect()
            })
            .collect();
        assert!(names.contains(&vec!["b", "a"]), "{names:?}");
        assert!(names.contains(&vec!["a"]), "{names:?}");
    }
}
