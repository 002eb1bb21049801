//! Copies stack traces from one partition's symbols into another's builder,
//! as the compactor does when it merges blocks whose symbol tables differ.
//!
//! Replicas of a profile stored by different ingesters hold the same stacks
//! under different IDs: each ingester interned its strings, functions,
//! locations and tree nodes in its own arrival order. [`Remap`] rewrites a
//! source's stack-trace IDs into a destination [`SymbolsBuilder`],
//! re-interning every symbol it meets, so equal stacks from any source end up
//! as one node. Only what is asked for is copied: symbols and nodes no kept
//! profile refers to are left behind.

use crate::{Function, Line, Location, Mapping, ROOT_NODE, Symbols, SymbolsBuilder};

const UNMAPPED: u32 = u32::MAX;

/// The memo of one source partition's copy into one destination: for each
/// source string, mapping, function, location and tree node, its index in the
/// destination once copied.
#[derive(Debug)]
pub struct Remap<'a> {
    source: &'a Symbols,
    strings: Vec<u32>,
    mappings: Vec<u32>,
    functions: Vec<u32>,
    locations: Vec<u32>,
    nodes: Vec<u32>,
    /// Reused buffer of the unmapped nodes of one stack, leaf first.
    path: Vec<u32>,
}

impl<'a> Remap<'a> {
    /// Starts copying from `source`. Every destination shares the root node,
    /// so node 0 maps to node 0 from the start.
    pub fn new(source: &'a Symbols) -> Self {
        let mut nodes = vec![UNMAPPED; source.stacks.len()];
        if let Some(root) = nodes.first_mut() {
            *root = ROOT_NODE;
        }
        Self {
            source,
            strings: vec![UNMAPPED; source.strings.len()],
            mappings: vec![UNMAPPED; source.mappings.len()],
            functions: vec![UNMAPPED; source.functions.len()],
            locations: vec![UNMAPPED; source.locations.len()],
            nodes,
            path: Vec::new(),
        }
    }

    /// Returns the symbols copied from.
    pub fn source(&self) -> &'a Symbols {
        self.source
    }

    /// Returns the node of `dst` that holds the same stack as `node` of the
    /// source, creating it and the symbols it needs when absent. Each source
    /// node is resolved once; later calls are a lookup.
    ///
    /// `node` must be a node of the source's tree, and the source must be
    /// consistent (as blocks are checked to be when read); it panics otherwise.
    pub fn stack(&mut self, dst: &mut SymbolsBuilder, node: u32) -> u32 {
        let mapped = self.nodes[node as usize];
        if mapped != UNMAPPED {
            return mapped;
        }
        // Climb to the nearest node already copied (at worst the root), then
        // copy the path down from there: parents always come first.
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let mut n = node;
        while self.nodes[n as usize] == UNMAPPED {
            path.push(n);
            n = self.source.stacks.parents[n as usize];
        }
        let mut parent = self.nodes[n as usize];
        for &n in path.iter().rev() {
            let location = self.location(dst, self.source.stacks.locations[n as usize]);
            parent = dst.stack_child(parent, location);
            self.nodes[n as usize] = parent;
        }
        self.path = path;
        parent
    }

    fn string(&mut self, dst: &mut SymbolsBuilder, s: u32) -> u32 {
        let slot = &mut self.strings[s as usize];
        if *slot == UNMAPPED {
            *slot = dst.intern_string(&self.source.strings[s as usize]);
        }
        *slot
    }

    fn mapping(&mut self, dst: &mut SymbolsBuilder, m: u32) -> u32 {
        if self.mappings[m as usize] == UNMAPPED {
            let src = self.source.mappings[m as usize];
            let mapping = Mapping {
                filename: self.string(dst, src.filename),
                build_id: self.string(dst, src.build_id),
                ..src
            };
            self.mappings[m as usize] = dst.intern_mapping(mapping);
        }
        self.mappings[m as usize]
    }

    fn function(&mut self, dst: &mut SymbolsBuilder, f: u32) -> u32 {
        if self.functions[f as usize] == UNMAPPED {
            let src = self.source.functions[f as usize];
            let function = Function {
                name: self.string(dst, src.name),
                system_name: self.string(dst, src.system_name),
                filename: self.string(dst, src.filename),
                start_line: src.start_line,
            };
            self.functions[f as usize] = dst.intern_function(function);
        }
        self.functions[f as usize]
    }

    fn location(&mut self, dst: &mut SymbolsBuilder, l: u32) -> u32 {
        if self.locations[l as usize] == UNMAPPED {
            let src = &self.source.locations[l as usize];
            let location = Location {
                mapping: self.mapping(dst, src.mapping),
                address: src.address,
                lines: src
                    .lines
                    .iter()
                    .map(|line| Line {
                        function: self.function(dst, line.function),
                        line: line.line,
                    })
                    .collect(),
            };
            self.locations[l as usize] = dst.intern_location(&location);
        }
        self.locations[l as usize]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testutil::profile;

    /// Returns the function names of `node`'s stack, root first.
    fn names(s: &Symbols, mut node: u32) -> Vec<String> {
        let mut out = Vec::new();
        while node != ROOT_NODE {
            let location = &s.locations[s.stacks.locations[node as usize] as usize];
            for line in location.lines.iter().rev() {
                out.push(s.function_name(line.function).to_owned());
            }
            node = s.stacks.parents[node as usize];
        }
        out.reverse();
        out
    }

    type Stacks = Vec<(Vec<&'static str>, i64)>;

    fn stacks() -> impl Strategy<Value = Stacks> {
        let frame = prop::sample::select(vec!["main", "a", "b", "c", "d", "e"]);
        prop::collection::vec((prop::collection::vec(frame, 0..6), 1i64..100), 1..20)
    }

    fn build(stacks: &Stacks) -> (SymbolsBuilder, Vec<u32>) {
        let borrowed: Vec<(&[&str], i64)> =
            stacks.iter().map(|(s, v)| (s.as_slice(), *v)).collect();
        let mut b = SymbolsBuilder::new();
        let ids = b.add_profile(&profile(&borrowed));
        (b, ids)
    }

    proptest! {
        /// Two sources that interned the same stacks in different orders map
        /// each stack to one destination node with the same frames.
        #[test]
        fn equal_stacks_meet_in_one_node(stacks in stacks(), other in stacks()) {
            let mut reversed = stacks.clone();
            reversed.reverse();
            let sources = [build(&stacks), build(&other), build(&reversed)];
            let mut dst = SymbolsBuilder::new();
            let mut copied: Vec<Vec<u32>> = Vec::new();
            for (src, ids) in &sources {
                let mut remap = Remap::new(src.symbols());
                copied.push(ids.iter().map(|&id| remap.stack(&mut dst, id)).collect());
                // Asking again is a lookup with the same answer.
                for (&id, &node) in ids.iter().zip(copied.last().unwrap()) {
                    prop_assert_eq!(remap.stack(&mut dst, id), node);
                }
            }
            let dst = dst.into_symbols();
            for ((src, ids), nodes) in sources.iter().zip(&copied) {
                for (&id, &node) in ids.iter().zip(nodes) {
                    prop_assert_eq!(names(src.symbols(), id), names(&dst, node));
                }
            }
            let mut forward = copied[0].clone();
            forward.reverse();
            prop_assert_eq!(&forward, &copied[2]);
            // Nothing is copied twice, and nothing unused is copied at all.
            let distinct: std::collections::HashSet<Vec<String>> = sources
                .iter()
                .flat_map(|(s, ids)| ids.iter().map(|&id| names(s.symbols(), id)))
                .collect();
            let leaves: std::collections::HashSet<u32> = copied.iter().flatten().copied().collect();
            prop_assert_eq!(distinct.len(), leaves.len());
            prop_assert!(dst.stacks.len() <= sources.iter().map(|(s, _)| s.symbols().stacks.len()).sum::<usize>());
        }
    }

    #[test]
    fn copies_only_what_is_asked_for() {
        let (src, ids) = build(&vec![(vec!["main", "a"], 1), (vec!["main", "b"], 2)]);
        let mut dst = SymbolsBuilder::new();
        let mut remap = Remap::new(src.symbols());
        let node = remap.stack(&mut dst, ids[1]);
        let dst = dst.into_symbols();
        assert_eq!(names(&dst, node), ["main", "b"]);
        // root + main + b; "a" was never needed.
        assert_eq!(dst.stacks.len(), 3);
        assert_eq!(dst.functions.len(), 2);
        assert!(!dst.strings.iter().any(|s| s == "a"));
        assert_eq!(
            remap.stack(&mut SymbolsBuilder::new(), ROOT_NODE),
            ROOT_NODE
        );
    }
}
