//! Symbol tables of one partition and the ingestion of pprof symbols into them.

use ember_model::pprof::FlatProfile;
use rustc_hash::FxHashMap;

use hashbrown::HashTable;

use crate::interner::{Index, table_bytes};
use crate::whole_stacks::{self, WholeStacks};

/// The stack-trace ID of the empty stack: the tree's root.
pub const ROOT_NODE: u32 = 0;

/// How many samples ahead of the one looked up in the whole-stack cache
/// the slot of the next is prefetched: enough to overlap a few misses to
/// memory, few enough that the slots are still cached when reached.
const PREFETCH_AHEAD: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mapping {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: u32,
    pub build_id: u32,
    /// pprof's has_functions, has_filenames, has_line_numbers, has_inline_frames as bits 0..4.
    pub flags: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Function {
    pub name: u32,
    pub system_name: u32,
    pub filename: u32,
    pub start_line: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Line {
    pub function: u32,
    pub line: i64,
}

/// A code location; `lines[0]` is the innermost inlined frame, the last line the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Location {
    pub mapping: u32,
    pub address: u64,
    pub lines: Vec<Line>,
}

/// The parent-pointer tree of stack traces. Node `i` is the stack
/// `stack(parents[i]) + locations[i]`; a child is always created after its
/// parent, so `parents[i] < i` for every node but the root.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StackTree {
    pub parents: Vec<u32>,
    pub locations: Vec<u32>,
}

impl StackTree {
    fn with_root() -> Self {
        Self {
            parents: vec![ROOT_NODE],
            locations: vec![u32::MAX],
        }
    }

    pub fn len(&self) -> usize {
        self.parents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parents.len() <= 1
    }
}

/// The symbols of one partition. Index 0 of strings is `""`, index 0 of
/// mappings is the empty mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Symbols {
    pub strings: Vec<String>,
    pub mappings: Vec<Mapping>,
    pub functions: Vec<Function>,
    pub locations: Vec<Location>,
    pub stacks: StackTree,
}

impl Default for Symbols {
    fn default() -> Self {
        Self {
            strings: vec![String::new()],
            mappings: vec![Mapping::default()],
            functions: Vec::new(),
            locations: Vec::new(),
            stacks: StackTree::with_root(),
        }
    }
}

impl Symbols {
    /// Returns the name of `function`.
    pub fn function_name(&self, function: u32) -> &str {
        &self.strings[self.functions[function as usize].name as usize]
    }

    /// Approximate heap size, used to decide when a head block is full.
    pub fn estimated_bytes(&self) -> usize {
        self.strings.iter().map(|s| s.len() + 24).sum::<usize>()
            + self.mappings.len() * size_of::<Mapping>()
            + self.functions.len() * size_of::<Function>()
            + self
                .locations
                .iter()
                .map(|l| 40 + l.lines.len() * size_of::<Line>())
                .sum::<usize>()
            + self.stacks.len() * 8
    }
}

/// [`Symbols`] plus the hash indices that de-duplicate appends.
#[derive(Debug)]
pub struct SymbolsBuilder {
    symbols: Symbols,
    strings: Index,
    mappings: Index,
    functions: Index,
    locations: Index,
    /// The tree's nodes by `(parent, location)`, read from the tree itself.
    stacks: HashTable<u32>,
    /// Whole stacks seen before, by the 128-bit hash of their locations (root
    /// first): a repeated stack costs one probe instead of one per frame.
    /// Not persisted; it refills as profiles arrive.
    whole_stacks: WholeStacks,
    /// Reused buffer of one sample's locations, root first.
    scratch_path: Vec<u32>,
    /// Heap bytes of the strings and of the locations' lines, which
    /// capacities of the tables do not show.
    string_bytes: usize,
    line_bytes: usize,
}

/// Returns the hash of the tree node `(parent, location)`.
fn node_hash(parent: u32, location: u32) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one((parent, location))
}

impl Default for SymbolsBuilder {
    /// Returns [`SymbolsBuilder::new`]: a derived default would leave the
    /// indices unaware of the `""` string and the empty mapping.
    fn default() -> Self {
        Self::new()
    }
}

impl SymbolsBuilder {
    pub fn new() -> Self {
        let symbols = Symbols::default();
        Self::from_symbols(symbols)
    }

    /// Resumes appending to existing symbols (e.g. when compacting blocks).
    pub fn from_symbols(symbols: Symbols) -> Self {
        let tree = &symbols.stacks;
        let hash_of = |&i: &u32| node_hash(tree.parents[i as usize], tree.locations[i as usize]);
        let mut stacks = HashTable::with_capacity(tree.len());
        for i in 1..tree.len() as u32 {
            stacks.insert_unique(hash_of(&i), i, hash_of);
        }
        let string_bytes = symbols.strings.iter().map(String::capacity).sum();
        let line_bytes = symbols
            .locations
            .iter()
            .map(|l| l.lines.capacity() * size_of::<Line>())
            .sum();
        Self {
            strings: Index::build(&symbols.strings),
            mappings: Index::build(&symbols.mappings),
            functions: Index::build(&symbols.functions),
            locations: Index::build(&symbols.locations),
            stacks,
            whole_stacks: WholeStacks::default(),
            scratch_path: Vec::new(),
            string_bytes,
            line_bytes,
            symbols,
        }
    }

    /// Returns the bytes the builder holds on the heap, from the capacities
    /// of its vectors and tables (what is allocated, not what is used) and
    /// the sizes of its strings and lines: the sum of [`Self::heap_parts`].
    pub fn heap_bytes(&self) -> usize {
        self.heap_parts().iter().map(|p| p.1).sum()
    }

    /// Returns [`Self::heap_bytes`] per structure: the tables of strings,
    /// of mappings, functions and locations, the stack tree, the indices
    /// that de-duplicate them, and the whole-stack cache.
    pub fn heap_parts(&self) -> [(&'static str, usize); 5] {
        let s = &self.symbols;
        [
            (
                "strings",
                self.string_bytes + s.strings.capacity() * size_of::<String>(),
            ),
            (
                "mappings, functions, locations",
                self.line_bytes
                    + s.mappings.capacity() * size_of::<Mapping>()
                    + s.functions.capacity() * size_of::<Function>()
                    + s.locations.capacity() * size_of::<Location>(),
            ),
            (
                "stack tree",
                (s.stacks.parents.capacity() + s.stacks.locations.capacity()) * size_of::<u32>(),
            ),
            (
                "symbol indices",
                self.strings.heap_bytes()
                    + self.mappings.heap_bytes()
                    + self.functions.heap_bytes()
                    + self.locations.heap_bytes()
                    + table_bytes(self.stacks.capacity(), size_of::<u32>())
                    + self.scratch_path.capacity() * size_of::<u32>(),
            ),
            ("whole-stack cache", self.whole_stacks.heap_bytes()),
        ]
    }

    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    pub fn into_symbols(self) -> Symbols {
        self.symbols
    }

    pub fn intern_string(&mut self, s: &str) -> u32 {
        let before = self.symbols.strings.len();
        let i = self.strings.intern(&mut self.symbols.strings, s);
        if self.symbols.strings.len() > before {
            self.string_bytes += self.symbols.strings[i as usize].capacity();
        }
        i
    }

    pub fn intern_function(&mut self, f: Function) -> u32 {
        self.functions.intern(&mut self.symbols.functions, &f)
    }

    pub fn intern_mapping(&mut self, m: Mapping) -> u32 {
        self.mappings.intern(&mut self.symbols.mappings, &m)
    }

    pub fn intern_location(&mut self, l: &Location) -> u32 {
        let before = self.symbols.locations.len();
        let i = self.locations.intern(&mut self.symbols.locations, l);
        if self.symbols.locations.len() > before {
            self.line_bytes +=
                self.symbols.locations[i as usize].lines.capacity() * size_of::<Line>();
        }
        i
    }

    /// Returns the node for `location` called from `parent`, creating it if new.
    pub fn stack_child(&mut self, parent: u32, location: u32) -> u32 {
        let tree = &mut self.symbols.stacks;
        let hash = node_hash(parent, location);
        let found = self.stacks.find(hash, |&i| {
            tree.parents[i as usize] == parent && tree.locations[i as usize] == location
        });
        if let Some(&node) = found {
            return node;
        }
        let node = tree.parents.len() as u32;
        tree.parents.push(parent);
        tree.locations.push(location);
        self.stacks.insert_unique(hash, node, |&i| {
            node_hash(tree.parents[i as usize], tree.locations[i as usize])
        });
        node
    }

    /// Adds the symbols of a validated pprof profile and returns the
    /// stack-trace ID of each of its samples, in sample order.
    pub fn add_profile(&mut self, flat: &FlatProfile) -> Vec<u32> {
        let (profile, samples) = (&flat.header, &flat.samples);
        let mut strings = vec![u32::MAX; flat.strings.len()];
        let mut string = |b: &mut Self, idx: i64| -> u32 {
            let slot = &mut strings[idx as usize];
            if *slot == u32::MAX {
                *slot = b.intern_string(flat.strings.at(idx));
            }
            *slot
        };

        let mut functions = IdMap::with_capacity(profile.function.len());
        for f in &profile.function {
            let local = Function {
                name: string(self, f.name),
                system_name: string(self, f.system_name),
                filename: string(self, f.filename),
                start_line: f.start_line,
            };
            functions.insert(f.id, self.intern_function(local));
        }
        let mut mappings = IdMap::with_capacity(profile.mapping.len());
        for m in &profile.mapping {
            let flags = m.has_functions as u8
                | (m.has_filenames as u8) << 1
                | (m.has_line_numbers as u8) << 2
                | (m.has_inline_frames as u8) << 3;
            let local = Mapping {
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: string(self, m.filename),
                build_id: string(self, m.build_id),
                flags,
            };
            mappings.insert(m.id, self.intern_mapping(local));
        }
        // A function id 0 or a missing name still yields a frame: it is named
        // after its address so that stacks keep their shape.
        let unknown_function = |b: &mut Self, address: u64| {
            let name = b.intern_string(&format!("0x{address:x}"));
            b.intern_function(Function {
                name,
                ..Function::default()
            })
        };
        let mut locations = IdMap::with_capacity(flat.locations.len());
        let mut scratch = Location::default();
        for loc in flat.locations.iter() {
            scratch.mapping = mappings.get(loc.mapping_id).unwrap_or(0);
            scratch.address = loc.address;
            scratch.lines.clear();
            for line in loc.lines {
                let function = match functions.get(line.function_id) {
                    Some(f) => f,
                    None => unknown_function(self, loc.address),
                };
                scratch.lines.push(Line {
                    function,
                    line: line.line,
                });
            }
            if scratch.lines.is_empty() {
                let function = unknown_function(self, loc.address);
                scratch.lines.push(Line { function, line: 0 });
            }
            locations.insert(loc.id, self.intern_location(&scratch));
        }

        // Every sample's stack is hashed first, then looked up with the
        // slots of the next ones prefetched: the lookups wait for memory
        // together instead of one after the other.
        let dense = locations.dense_only();
        let path = |stack: &[u64], path: &mut Vec<u32>| {
            path.clear();
            // Validation guarantees every id resolves.
            match dense {
                Some(table) => path.extend(stack.iter().rev().map(|&id| {
                    let local = table.get(id as usize).copied().unwrap_or(u32::MAX);
                    if local == u32::MAX { 0 } else { local }
                })),
                None => path.extend(stack.iter().rev().map(|&id| locations.get(id).unwrap_or(0))),
            }
        };
        let mut scratch = std::mem::take(&mut self.scratch_path);
        let hashes: Vec<[u32; 4]> = samples
            .iter()
            .map(|sample| {
                path(sample.stack, &mut scratch);
                path_hash(&scratch)
            })
            .collect();
        let mut ids = Vec::with_capacity(hashes.len());
        for (i, hash) in hashes.iter().enumerate() {
            if let Some(ahead) = hashes.get(i + PREFETCH_AHEAD) {
                self.whole_stacks.prefetch(ahead);
            }
            let node = match self.whole_stacks.get(hash) {
                Some(node) => node,
                None => {
                    path(samples.stack(i), &mut scratch);
                    self.insert_stack(*hash, &scratch)
                }
            };
            ids.push(node);
        }
        self.scratch_path = scratch;
        ids
    }

    /// Returns the node of the stack `path` (locations, root first), creating
    /// the nodes it lacks.
    pub fn stack(&mut self, path: &[u32]) -> u32 {
        let hash = path_hash(path);
        match self.whole_stacks.get(&hash) {
            Some(node) => node,
            None => self.insert_stack(hash, path),
        }
    }

    /// Walks the tree along `path`, a stack not in the whole-stack cache,
    /// creating the nodes it lacks, and caches its node under `hash`.
    fn insert_stack(&mut self, hash: [u32; 4], path: &[u32]) -> u32 {
        let node = path.iter().fold(ROOT_NODE, |node, &location| {
            self.stack_child(node, location)
        });
        self.whole_stacks.insert(hash, node);
        node
    }
}

/// The whole-stack cache's key of a path: the 128-bit hash of its locations'
/// bytes, read in place.
fn path_hash(path: &[u32]) -> [u32; 4] {
    whole_stacks::split(xxhash_rust::xxh3::xxh3_128(bytemuck::cast_slice(path)))
}

/// Maps pprof's u64 IDs to local u32 indices: a vector when IDs are dense
/// (the norm, 1..=n), a hash map otherwise.
#[derive(Debug)]
struct IdMap {
    dense: Vec<u32>,
    sparse: FxHashMap<u64, u32>,
}

impl IdMap {
    const DENSE_LIMIT: u64 = 1 << 22;

    fn with_capacity(n: usize) -> Self {
        Self {
            dense: Vec::with_capacity(n + 1),
            sparse: FxHashMap::default(),
        }
    }

    fn insert(&mut self, id: u64, local: u32) {
        if id < Self::DENSE_LIMIT {
            let i = id as usize;
            if self.dense.len() <= i {
                self.dense.resize(i + 1, u32::MAX);
            }
            self.dense[i] = local;
        } else {
            self.sparse.insert(id, local);
        }
    }

    /// Returns the dense table (`u32::MAX` where no ID) when every ID was
    /// dense: translating a frame through it is one load, without the
    /// branches to the sparse map.
    fn dense_only(&self) -> Option<&[u32]> {
        self.sparse.is_empty().then_some(&self.dense[..])
    }

    fn get(&self, id: u64) -> Option<u32> {
        if id < Self::DENSE_LIMIT {
            self.dense
                .get(id as usize)
                .copied()
                .filter(|&v| v != u32::MAX)
        } else {
            self.sparse.get(&id).copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::profile;

    #[test]
    fn shares_prefixes_and_dedups_symbols() {
        let mut b = SymbolsBuilder::new();
        let ids = b.add_profile(&profile(&[
            (&["a", "b"], 1),
            (&["a", "c"], 2),
            (&["a", "b"], 3),
        ]));
        assert_eq!(ids[0], ids[2]);
        assert_ne!(ids[0], ids[1]);
        // root + a + b + c
        assert_eq!(b.symbols().stacks.len(), 4);
        // the same profile again adds nothing
        let again = b.add_profile(&profile(&[(&["a", "b"], 1), (&["a", "c"], 2)]));
        assert_eq!(again, ids[..2]);
        assert_eq!(b.symbols().functions.len(), 3);
        assert_eq!(b.symbols().strings.len(), 4);
        let s = b.symbols();
        let b_node = ids[0] as usize;
        assert!(s.stacks.parents[b_node] < b_node as u32);
    }

    #[test]
    fn default_knows_the_empty_string_and_heap_bytes_grow() {
        let mut b = SymbolsBuilder::default();
        assert_eq!(b.intern_string(""), 0);
        assert_eq!(b.symbols().strings.len(), 1);
        let empty = b.heap_bytes();
        b.add_profile(&profile(&[(&["a", "b"], 1), (&["a", "c"], 2)]));
        let one = b.heap_bytes();
        assert!(one > empty);
        // The same profile again allocates nothing new.
        b.add_profile(&profile(&[(&["a", "b"], 1), (&["a", "c"], 2)]));
        assert_eq!(b.heap_bytes(), one);
    }

    #[test]
    fn resumes_from_existing_symbols() {
        let mut b = SymbolsBuilder::new();
        let first = b.add_profile(&profile(&[(&["a", "b"], 1)]));
        let mut resumed = SymbolsBuilder::from_symbols(b.into_symbols());
        let second = resumed.add_profile(&profile(&[(&["a", "b"], 1)]));
        assert_eq!(first, second);
    }

    #[test]
    fn locations_without_lines_get_address_names() {
        let mut p = profile(&[(&["a"], 1)]).into_profile();
        p.location[0].line.clear();
        p.location[0].address = 0xbeef;
        let mut b = SymbolsBuilder::new();
        let ids = b.add_profile(&p.into());
        let s = b.symbols();
        let loc = &s.locations[s.stacks.locations[ids[0] as usize] as usize];
        assert_eq!(s.function_name(loc.lines[0].function), "0xbeef");
    }
}
