//! The function-name call tree that queries aggregate into, and its encodings:
//! Pyroscope's `FlameGraph` (levels of `[x_offset, total, self, name]`), the
//! diff form, and the legacy flamebearer JSON.
//!
//! # The tree
//!
//! [`FunctionTree`] keeps its nodes in columns (parent, name, self value)
//! indexed by a `u32` [`NodeId`], interns function names once, and finds a
//! child by `(parent, name)` through one hash map, so inserting a stack costs
//! a hash lookup per frame and no scan of siblings. A node is always created
//! after its parent, so one reverse pass over the columns computes every
//! total: totals are not maintained while inserting, only when encoding.
//!
//! # The flame graph encoding (wire format, shared with Grafana)
//!
//! [`FunctionTree::to_flamegraph`] reproduces Pyroscope's `NewFlameGraph`
//! (`pkg/model/flamegraph.go`) output exactly, because Grafana's flame graph
//! panel decodes it:
//!
//! - `levels[d]` holds the nodes at depth `d` (level 0 is the root, named
//!   `"total"`) as flat quadruples `[x, total, self, name_index]`, ordered left
//!   to right;
//! - a node's children sit in its span from `x + self` on, ordered by name
//!   (byte-wise), each `total` wide; the `other` node that collects truncated
//!   children (see below) comes after them;
//! - `x` is delta-encoded: each stored value is the gap between the end
//!   (`x + total`) of the previous node on the level, or 0, and the node's
//!   start;
//! - `names` is filled in the order Pyroscope's encoder visits nodes: a
//!   depth-first walk from the root that visits each node's children from the
//!   right to the left (it pops them off a stack). The root is `names[0]`,
//!   and a name shared by several nodes has one entry.
//!
//! So stacks `a;b;e=1, a;c=2, a;c;d=1` give `names=[total,a,c,d,b,e]` and
//! `levels=[[0,4,0,0],[0,4,0,1],[0,1,0,4,0,3,2,2],[0,1,1,5,2,1,1,3]]`.
//!
//! **Truncation.** With `max_nodes > 0`, a node is kept when its total is at
//! least the `max_nodes`-th largest total of the tree (so ties may keep a few
//! more). The children of a kept node that fall below that threshold, and any
//! child literally named `other`, are drawn as one child `other` whose total
//! and self are the sum of their totals. Totals never change: the root's is
//! the tree's, and a kept node's is its own.
//!
//! The diff form ([`diff`], Pyroscope's `NewFlamegraphDiff`) lays both trees
//! out over the union of their nodes in the same order, as 7-tuples
//! `[left_x, left_total, left_self, right_x, right_total, right_self, name]`
//! with the left and right offsets delta-encoded separately.
//!
//! Values are expected to be non-negative, as profile values are; a subtree
//! whose total is not positive has nothing to draw and is left out.

use std::{fmt, hash::BuildHasher};

use ember_proto::querier::v1::{FlameGraph, FlameGraphDiff, Level};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable, hash_table::Entry};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Error, Result};

/// Index of a node in a [`FunctionTree`]; the root is [`FunctionTree::ROOT`].
pub type NodeId = u32;

/// The name of the node that stands for truncated children.
pub const OTHER: &str = "other";
/// The name of the root node in encoded flame graphs.
pub const TOTAL: &str = "total";

/// The name id of the root, which has no name.
const NO_NAME: u32 = u32::MAX;
/// The node id of a synthesized `other` node while encoding.
const OTHER_NODE: NodeId = NodeId::MAX;

/// A call tree keyed by function name. Children are unique by name.
#[derive(Clone)]
pub struct FunctionTree {
    /// Parent of each node; the root is its own parent. `parents[i] < i` for
    /// every other node, which is what lets one reverse pass compute totals.
    parents: Vec<NodeId>,
    /// Name id of each node ([`NO_NAME`] for the root).
    node_names: Vec<u32>,
    /// Self value of each node.
    selfs: Vec<i64>,
    /// Child lookup: `(parent << 32 | name)` to child id.
    children: HashMap<u64, NodeId>,
    /// The name table; a name id indexes it.
    names: Vec<Box<str>>,
    /// Name to id, storing only ids: the strings live once, in `names`.
    name_ids: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Sum of all self values.
    total: i64,
}

/// One function's line in a top table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionStat {
    /// The function name.
    pub name: String,
    /// Sum of the self values of every node of this function.
    #[serde(rename = "self")]
    pub self_value: i64,
    /// Value of the stacks this function appears in, each counted once even
    /// when the function recurses.
    pub total: i64,
}

fn child_key(parent: NodeId, name: u32) -> u64 {
    (u64::from(parent) << 32) | u64::from(name)
}

impl Default for FunctionTree {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FunctionTree {
    /// Summarizes the tree; a tree may hold millions of nodes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionTree")
            .field("nodes", &self.len())
            .field("names", &self.names.len())
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl FunctionTree {
    /// The root: the parent of every stack's outermost frame.
    pub const ROOT: NodeId = 0;

    /// Returns a tree holding only the root.
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Returns an empty tree with room for `nodes` nodes and `names` names.
    pub fn with_capacity(nodes: usize, names: usize) -> Self {
        let nodes = nodes.max(1);
        let mut tree = Self {
            parents: Vec::with_capacity(nodes),
            node_names: Vec::with_capacity(nodes),
            selfs: Vec::with_capacity(nodes),
            children: HashMap::with_capacity(nodes - 1),
            names: Vec::with_capacity(names),
            name_ids: HashTable::with_capacity(names),
            hasher: DefaultHashBuilder::default(),
            total: 0,
        };
        tree.parents.push(Self::ROOT);
        tree.node_names.push(NO_NAME);
        tree.selfs.push(0);
        tree
    }

    /// Returns the number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Returns whether the tree has no node besides the root.
    pub fn is_empty(&self) -> bool {
        self.len() == 1
    }

    /// Returns the id of `name` in this tree's name table, adding it if new.
    pub fn intern(&mut self, name: &str) -> u32 {
        let Self {
            names,
            name_ids,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(name);
        match name_ids.entry(
            hash,
            |&id| *names[id as usize] == *name,
            |&id| hasher.hash_one(&*names[id as usize]),
        ) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let id = u32::try_from(names.len())
                    .ok()
                    .filter(|&id| id != NO_NAME)
                    .expect("a function tree holds fewer than 2^32 - 1 names");
                names.push(name.into());
                entry.insert(id);
                id
            }
        }
    }

    /// Returns the id of `name` if the name table holds it.
    pub fn lookup(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.name_ids
            .find(hash, |&id| *self.names[id as usize] == *name)
            .copied()
    }

    /// Returns the name with id `name`.
    ///
    /// # Panics
    ///
    /// When `name` is not an id of this tree.
    pub fn name(&self, name: u32) -> &str {
        &self.names[name as usize]
    }

    /// Returns the function name of `node`, `None` for the root.
    pub fn node_name(&self, node: NodeId) -> Option<&str> {
        match self.node_names[node as usize] {
            NO_NAME => None,
            name => Some(&self.names[name as usize]),
        }
    }

    /// Returns the parent of `node`, `None` for the root.
    pub fn parent(&self, node: NodeId) -> Option<NodeId> {
        (node != Self::ROOT).then(|| self.parents[node as usize])
    }

    /// Returns the self value of `node`.
    pub fn self_value(&self, node: NodeId) -> i64 {
        self.selfs[node as usize]
    }

    /// Returns the child of `parent` named `name` (an id from [`Self::intern`]), creating it if new.
    ///
    /// # Panics
    ///
    /// When `parent` or `name` does not belong to this tree.
    pub fn child(&mut self, parent: NodeId, name: u32) -> NodeId {
        assert!(
            (parent as usize) < self.parents.len(),
            "node {parent} is not in this tree"
        );
        assert!(
            (name as usize) < self.names.len(),
            "name {name} is not in this tree"
        );
        let next = self.parents.len();
        let Self {
            parents,
            node_names,
            selfs,
            children,
            ..
        } = self;
        *children.entry(child_key(parent, name)).or_insert_with(|| {
            let id = NodeId::try_from(next)
                .ok()
                .filter(|&id| id != OTHER_NODE)
                .expect("a function tree holds fewer than 2^32 - 1 nodes");
            parents.push(parent);
            node_names.push(name);
            selfs.push(0);
            id
        })
    }

    /// Adds `value` to the self value of `node`.
    pub fn add_self(&mut self, node: NodeId, value: i64) {
        self.selfs[node as usize] += value;
        self.total += value;
    }

    /// Inserts one stack, root first, with its value.
    ///
    /// Empty stacks and values that are not positive are ignored, as in
    /// Pyroscope, so the tree never holds nodes that have nothing to draw.
    pub fn insert_stack(&mut self, stack_root_first: &[&str], value: i64) {
        if value <= 0 || stack_root_first.is_empty() {
            return;
        }
        let mut node = Self::ROOT;
        for frame in stack_root_first {
            let name = self.intern(frame);
            node = self.child(node, name);
        }
        self.add_self(node, value);
    }

    /// Adds every node of `other` into this tree.
    pub fn merge(&mut self, other: &FunctionTree) {
        if self.is_empty() && self.names.is_empty() && self.selfs[0] == 0 {
            // Merging into nothing is the common first step of a query.
            *self = other.clone();
            return;
        }
        let map = self.graft(other);
        for (&node, &value) in map.iter().zip(&other.selfs) {
            self.selfs[node as usize] += value;
        }
        self.total += other.total;
    }

    /// Returns the sum of all self values.
    pub fn total(&self) -> i64 {
        self.total
    }

    /// Creates the nodes of `other` in this tree without adding values,
    /// returning the id here of each node of `other`.
    fn graft(&mut self, other: &FunctionTree) -> Vec<NodeId> {
        let names: Vec<u32> = other.names.iter().map(|name| self.intern(name)).collect();
        let mut map = Vec::with_capacity(other.len());
        map.push(Self::ROOT);
        for (&parent, &name) in other.parents.iter().zip(&other.node_names).skip(1) {
            let id = self.child(map[parent as usize], names[name as usize]);
            map.push(id);
        }
        map
    }

    /// Returns the total of every node for the given self values (one per node).
    fn totals(&self, selfs: &[i64]) -> Vec<i64> {
        let mut totals = selfs.to_vec();
        for node in (1..totals.len()).rev() {
            totals[self.parents[node] as usize] += totals[node];
        }
        totals
    }

    /// Returns every node's children, ordered by name when `sorted`.
    fn children(&self, sorted: bool) -> Children {
        let n = self.len();
        // Counting sort by parent: `start[p]..start[p + 1]` will hold p's children.
        let mut start = vec![0u32; n + 1];
        for &parent in &self.parents[1..] {
            start[parent as usize + 1] += 1;
        }
        for i in 1..=n {
            start[i] += start[i - 1];
        }
        let mut next = start.clone();
        let mut list = vec![0; n - 1];
        for (node, &parent) in self.parents.iter().enumerate().skip(1) {
            let slot = &mut next[parent as usize];
            list[*slot as usize] = node as NodeId;
            *slot += 1;
        }
        if sorted {
            // Rank names once so sibling sorts compare integers, not strings.
            let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| self.names[a as usize].cmp(&self.names[b as usize]));
            let mut rank = vec![0u32; order.len()];
            for (r, &name) in order.iter().enumerate() {
                rank[name as usize] = r as u32;
            }
            for w in start.windows(2) {
                let siblings = &mut list[w[0] as usize..w[1] as usize];
                if siblings.len() > 1 {
                    siblings.sort_unstable_by_key(|&c| rank[self.node_names[c as usize] as usize]);
                }
            }
        }
        Children { start, list }
    }

    /// Encodes as a flame graph keeping at most `max_nodes` nodes.
    ///
    /// `max_nodes == 0` means no limit. See the [module docs](self) for the
    /// exact layout and truncation rules.
    pub fn to_flamegraph(&self, max_nodes: usize) -> FlameGraph {
        let totals = self.totals(&self.selfs);
        let children = self.children(true);
        let min_total = min_total(totals[1..].to_vec(), max_nodes);
        let other_name = self.lookup(OTHER);
        let mut names = NameTable::new(self);
        let mut levels: Vec<Vec<i64>> = Vec::new();
        let mut max_self = 0;

        struct Frame {
            node: NodeId,
            depth: usize,
            x: i64,
            /// Total of a synthesized `other` node.
            other: i64,
        }
        let mut stack = vec![Frame {
            node: Self::ROOT,
            depth: 0,
            x: 0,
            other: 0,
        }];
        while let Some(frame) = stack.pop() {
            let (total, self_value, name) = match frame.node {
                OTHER_NODE => (frame.other, frame.other, names.other()),
                Self::ROOT => (totals[0], self.selfs[0], 0),
                node => (
                    totals[node as usize],
                    self.selfs[node as usize],
                    names.get(self.node_names[node as usize]),
                ),
            };
            max_self = max_self.max(self_value);
            if frame.depth == levels.len() {
                levels.push(Vec::new());
            }
            levels[frame.depth].extend_from_slice(&[frame.x, total, self_value, name]);
            if frame.node == OTHER_NODE {
                continue;
            }

            let mut x = frame.x + self_value;
            let mut other = 0;
            for &child in children.of(frame.node) {
                let total = totals[child as usize];
                if total <= 0 {
                    continue;
                }
                if total >= min_total && Some(self.node_names[child as usize]) != other_name {
                    stack.push(Frame {
                        node: child,
                        depth: frame.depth + 1,
                        x,
                        other: 0,
                    });
                    x += total;
                } else {
                    other += total;
                }
            }
            if other != 0 {
                stack.push(Frame {
                    node: OTHER_NODE,
                    depth: frame.depth + 1,
                    x,
                    other,
                });
            }
        }

        FlameGraph {
            names: names.into_names(),
            levels: finish_levels(levels, 4, &[0]),
            total: totals[0],
            max_self,
        }
    }

    /// Decodes a flame graph (as made by [`Self::to_flamegraph`] or Pyroscope)
    /// back into a tree, e.g. to merge flame graphs from several sources.
    /// Truncated children come back as a child named `other`.
    pub fn from_flamegraph(fg: &FlameGraph) -> Result<Self> {
        let malformed = |what: String| Error::Malformed(format!("invalid flame graph: {what}"));
        let mut tree = Self::with_capacity(
            fg.levels.iter().map(|l| l.values.len() / 4).sum(),
            fg.names.len(),
        );
        // Interned on first use, so that "total" only enters the name table
        // when a function has that name.
        let mut name_ids = vec![NO_NAME; fg.names.len()];
        // Start and id of every node on the level above, left to right.
        let mut above: Vec<(i64, NodeId)> = vec![(0, Self::ROOT)];
        for (depth, level) in fg.levels.iter().enumerate() {
            let values = &level.values;
            if values.len() % 4 != 0 {
                return Err(malformed(format!(
                    "level {depth} has {} values, not a multiple of 4",
                    values.len()
                )));
            }
            if depth == 0 {
                if let [_, _, self_value, _] = values[..] {
                    tree.add_self(Self::ROOT, self_value);
                    continue;
                }
                return Err(malformed("level 0 must hold exactly the root".to_owned()));
            }
            let mut here = Vec::with_capacity(values.len() / 4);
            let mut end = 0i64;
            for node in values.chunks_exact(4) {
                let &[gap, total, self_value, name] = node else {
                    unreachable!("chunks of 4")
                };
                let x = end.saturating_add(gap);
                end = x.saturating_add(total);
                let slot = usize::try_from(name)
                    .ok()
                    .and_then(|i| name_ids.get_mut(i))
                    .ok_or_else(|| {
                        malformed(format!("level {depth} refers to missing name {name}"))
                    })?;
                if *slot == NO_NAME {
                    *slot = tree.intern(&fg.names[name as usize]);
                }
                // The parent is the last node above that starts at or before x.
                let parent = match above.partition_point(|&(start, _)| start <= x) {
                    0 => {
                        return Err(malformed(format!(
                            "level {depth} has a node at {x} outside any parent"
                        )));
                    }
                    i => above[i - 1].1,
                };
                let id = tree.child(parent, *slot);
                if self_value != 0 {
                    tree.add_self(id, self_value);
                }
                here.push((x, id));
            }
            above = here;
        }
        Ok(tree)
    }

    /// Calls `f` with every stack (root first) that has a self value, and that
    /// value; siblings come in name order. A self value on the root comes as
    /// the empty stack.
    pub fn for_each_stack(&self, mut f: impl FnMut(&[&str], i64)) {
        if self.selfs[0] != 0 {
            f(&[], self.selfs[0]);
        }
        let children = self.children(true);
        let mut path: Vec<&str> = Vec::new();
        let mut stack: Vec<(NodeId, usize)> = children
            .of(Self::ROOT)
            .iter()
            .rev()
            .map(|&c| (c, 0))
            .collect();
        while let Some((node, depth)) = stack.pop() {
            path.truncate(depth);
            path.push(&self.names[self.node_names[node as usize] as usize]);
            let value = self.selfs[node as usize];
            if value != 0 {
                f(&path, value);
            }
            stack.extend(children.of(node).iter().rev().map(|&c| (c, depth + 1)));
        }
    }

    /// Returns one line per function: its self value summed over all its
    /// nodes, and its total counted once per stack (a recursive function's
    /// inner calls do not count again). Sorted by self value, then total,
    /// largest first, then by name.
    pub fn top_table(&self) -> Vec<FunctionStat> {
        let totals = self.totals(&self.selfs);
        let children = self.children(false);
        let names = self.names.len();
        let mut self_by_name = vec![0i64; names];
        let mut total_by_name = vec![0i64; names];
        let mut seen = vec![false; names];
        // How many nodes of each name are on the current path: a node adds its
        // total only when no ancestor has its name.
        let mut on_path = vec![0u32; names];

        // Depth-first, with an exit marker to leave the path.
        let mut stack: Vec<(NodeId, bool)> = children
            .of(Self::ROOT)
            .iter()
            .map(|&c| (c, false))
            .collect();
        while let Some((node, exit)) = stack.pop() {
            let name = self.node_names[node as usize] as usize;
            if exit {
                on_path[name] -= 1;
                continue;
            }
            seen[name] = true;
            self_by_name[name] += self.selfs[node as usize];
            if on_path[name] == 0 {
                total_by_name[name] += totals[node as usize];
            }
            on_path[name] += 1;
            stack.push((node, true));
            stack.extend(children.of(node).iter().map(|&c| (c, false)));
        }

        let mut table: Vec<FunctionStat> = (0..names)
            .filter(|&name| seen[name])
            .map(|name| FunctionStat {
                name: self.names[name].to_string(),
                self_value: self_by_name[name],
                total: total_by_name[name],
            })
            .collect();
        table.sort_unstable_by(|a, b| {
            (b.self_value, b.total)
                .cmp(&(a.self_value, a.total))
                .then_with(|| a.name.cmp(&b.name))
        });
        table
    }
}

/// Every node's children as one list, `start[p]..start[p + 1]` being p's.
struct Children {
    start: Vec<u32>,
    list: Vec<NodeId>,
}

impl Children {
    fn of(&self, node: NodeId) -> &[NodeId] {
        let node = node as usize;
        &self.list[self.start[node] as usize..self.start[node + 1] as usize]
    }
}

/// Builds an encoded flame graph's name table in the order nodes are
/// visited, `"total"` first.
struct NameTable<'a> {
    tree: &'a FunctionTree,
    /// Output index of each tree name id, or [`NO_NAME`].
    index: Vec<u32>,
    /// The tree's id of `other`, if a function has that name.
    tree_other: Option<u32>,
    /// Output index of a synthesized `other` when the tree has no such name.
    other: Option<u32>,
    out: Vec<String>,
}

impl<'a> NameTable<'a> {
    fn new(tree: &'a FunctionTree) -> Self {
        let mut index = vec![NO_NAME; tree.names.len()];
        // Pyroscope keys its table by string, so a function named "total"
        // shares the root's entry.
        if let Some(total) = tree.lookup(TOTAL) {
            index[total as usize] = 0;
        }
        Self {
            tree,
            index,
            tree_other: tree.lookup(OTHER),
            other: None,
            out: vec![TOTAL.to_owned()],
        }
    }

    fn get(&mut self, name: u32) -> i64 {
        let slot = &mut self.index[name as usize];
        if *slot == NO_NAME {
            *slot = self.out.len() as u32;
            self.out.push(self.tree.names[name as usize].to_string());
        }
        i64::from(*slot)
    }

    fn other(&mut self) -> i64 {
        if let Some(name) = self.tree_other {
            return self.get(name);
        }
        let out = &mut self.out;
        i64::from(*self.other.get_or_insert_with(|| {
            out.push(OTHER.to_owned());
            out.len() as u32 - 1
        }))
    }

    fn into_names(self) -> Vec<String> {
        self.out
    }
}

/// Returns the smallest total a node needs to be kept so that `max_nodes`
/// are: the `max_nodes`-th largest of `totals`, or 0 when there is no limit
/// or every node fits. Nodes tied at the threshold are all kept, as in
/// Pyroscope.
fn min_total(mut totals: Vec<i64>, max_nodes: usize) -> i64 {
    if max_nodes == 0 || totals.len() <= max_nodes {
        return 0;
    }
    let (_, nth, _) = totals.select_nth_unstable_by(max_nodes - 1, |a, b| b.cmp(a));
    *nth
}

/// Turns levels filled in visiting order into wire levels: the walk visits
/// each level right to left, so tuples are reversed, then the offset columns
/// `x_columns` (each followed by its total column) are delta-encoded.
fn finish_levels(levels: Vec<Vec<i64>>, stride: usize, x_columns: &[usize]) -> Vec<Level> {
    levels
        .into_iter()
        .map(|visited| {
            let mut values = Vec::with_capacity(visited.len());
            for tuple in visited.chunks_exact(stride).rev() {
                values.extend_from_slice(tuple);
            }
            for &column in x_columns {
                let mut end = 0;
                for tuple in values.chunks_exact_mut(stride) {
                    let x = tuple[column];
                    tuple[column] = x - end;
                    end = x + tuple[column + 1];
                }
            }
            Level { values }
        })
        .collect()
}

/// Encodes the comparison of `left` and `right`.
///
/// Both trees are laid out over the union of their nodes, in the order and
/// with the rules of [`FunctionTree::to_flamegraph`], as 7-tuples
/// `[left_x, left_total, left_self, right_x, right_total, right_self,
/// name_index]`, each side's offsets delta-encoded on its own. As in
/// Pyroscope's `NewFlamegraphDiff`:
///
/// - `total` is the sum of both totals, `left_ticks` and `right_ticks` each;
/// - `max_self` is the largest self value on either side;
/// - `max_nodes` counts the root, and a node is kept when the larger of its
///   two totals reaches the threshold; children below it become one `other`
///   per parent holding each side's sum (a real `other` function is not
///   folded into it).
pub fn diff(left: &FunctionTree, right: &FunctionTree, max_nodes: usize) -> FlameGraphDiff {
    // The union starts as a copy of the left tree, so left ids carry over.
    let mut union = left.clone();
    let right_map = union.graft(right);
    let n = union.len();
    let mut left_self = left.selfs.clone();
    left_self.resize(n, 0);
    let mut right_self = vec![0; n];
    for (&node, &value) in right_map.iter().zip(&right.selfs) {
        right_self[node as usize] += value;
    }
    let left_totals = union.totals(&left_self);
    let right_totals = union.totals(&right_self);
    let children = union.children(true);
    let min_total = min_total(
        left_totals
            .iter()
            .zip(&right_totals)
            .map(|(&l, &r)| l.max(r))
            .collect(),
        max_nodes,
    );
    let mut names = NameTable::new(&union);
    let mut levels: Vec<Vec<i64>> = Vec::new();
    let mut max_self = 0;

    struct Frame {
        node: NodeId,
        depth: usize,
        left_x: i64,
        right_x: i64,
        /// Totals of a synthesized `other` node.
        left_other: i64,
        right_other: i64,
    }
    let mut stack = vec![Frame {
        node: FunctionTree::ROOT,
        depth: 0,
        left_x: 0,
        right_x: 0,
        left_other: 0,
        right_other: 0,
    }];
    while let Some(frame) = stack.pop() {
        let (left_total, left_self_value, right_total, right_self_value, name) = match frame.node {
            OTHER_NODE => (
                frame.left_other,
                frame.left_other,
                frame.right_other,
                frame.right_other,
                names.other(),
            ),
            node => {
                let i = node as usize;
                let name = match node {
                    FunctionTree::ROOT => 0,
                    _ => names.get(union.node_names[i]),
                };
                (
                    left_totals[i],
                    left_self[i],
                    right_totals[i],
                    right_self[i],
                    name,
                )
            }
        };
        max_self = max_self.max(left_self_value).max(right_self_value);
        if frame.depth == levels.len() {
            levels.push(Vec::new());
        }
        levels[frame.depth].extend_from_slice(&[
            frame.left_x,
            left_total,
            left_self_value,
            frame.right_x,
            right_total,
            right_self_value,
            name,
        ]);
        if frame.node == OTHER_NODE {
            continue;
        }

        let mut left_x = frame.left_x + left_self_value;
        let mut right_x = frame.right_x + right_self_value;
        let (mut left_other, mut right_other) = (0, 0);
        for &child in children.of(frame.node) {
            let (l, r) = (left_totals[child as usize], right_totals[child as usize]);
            if l <= 0 && r <= 0 {
                continue;
            }
            if l.max(r) >= min_total {
                stack.push(Frame {
                    node: child,
                    depth: frame.depth + 1,
                    left_x,
                    right_x,
                    left_other: 0,
                    right_other: 0,
                });
                left_x += l;
                right_x += r;
            } else {
                left_other += l;
                right_other += r;
            }
        }
        if left_other != 0 || right_other != 0 {
            stack.push(Frame {
                node: OTHER_NODE,
                depth: frame.depth + 1,
                left_x,
                right_x,
                left_other,
                right_other,
            });
        }
    }

    FlameGraphDiff {
        names: names.into_names(),
        levels: finish_levels(levels, 7, &[0, 3]),
        total: left_totals[0] + right_totals[0],
        max_self,
        left_ticks: left_totals[0],
        right_ticks: right_totals[0],
    }
}

/// Returns the legacy `/render` flamebearer object of `fg`:
/// `{"names", "levels", "numTicks", "maxSelf"}`. The levels are copied as is:
/// Pyroscope's "single" flamebearer format is the flame graph's.
///
/// The `/render` response wraps it as `{"flamebearer": .., "metadata":
/// {"format": "single", ..}, "timeline": ..}`.
pub fn flamebearer_json(fg: &FlameGraph) -> Value {
    json!({
        "names": fg.names,
        "levels": level_values(&fg.levels),
        "numTicks": fg.total,
        "maxSelf": fg.max_self,
    })
}

/// Returns the legacy `/render-diff` flamebearer object of `fg` (Pyroscope's
/// "double" format): `{"names", "levels", "numTicks", "maxSelf", "leftTicks",
/// "rightTicks"}`, `numTicks` being the sum of both sides.
///
/// Pyroscope's response carries `leftTicks` and `rightTicks` at its top level,
/// beside `"flamebearer"` and `"metadata": {"format": "double", ..}`; a
/// handler should copy them there too.
pub fn flamebearer_diff_json(fg: &FlameGraphDiff) -> Value {
    json!({
        "names": fg.names,
        "levels": level_values(&fg.levels),
        "numTicks": fg.total,
        "maxSelf": fg.max_self,
        "leftTicks": fg.left_ticks,
        "rightTicks": fg.right_ticks,
    })
}

fn level_values(levels: &[Level]) -> Vec<&[i64]> {
    levels.iter().map(|l| l.values.as_slice()).collect()
}

mod tree_bytes;

#[cfg(test)]
mod tests;
