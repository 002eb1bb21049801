//! Decoding and checking the flame-graph wire form of DESIGN.md §2.
//!
//! `names[0] = "total"`; each level is a flat list of quadruples `[x_offset,
//! total, self, name_index]`, where the stored offset is the gap after the end of
//! the previous node in the same level; children are laid out left to right from
//! `parent.x + parent.self`.

use std::collections::{BTreeMap, BTreeSet};

use ember_proto::querier::v1::FlameGraph;

pub use ember_testkit::flame::design_example;

/// One node of a flame graph with absolute position and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Depth: 0 is the root (`total`).
    pub level: usize,
    /// Absolute x offset.
    pub x: i64,
    /// Total value (self and descendants).
    pub total: i64,
    /// Self value.
    pub self_value: i64,
    /// The function name.
    pub name: String,
    /// The index of the parent in the node list, `None` for the root.
    pub parent: Option<usize>,
}

/// Returns the graph's nodes, level by level, or what makes the graph malformed.
///
/// Checks the structure: quadruples, name indices, non-negative gaps and values,
/// one root named `total` holding `total`, every node inside its parent's child
/// area, and each node's self plus its children's totals equal to its total.
pub fn nodes(fg: &FlameGraph) -> Result<Vec<Node>, String> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut level_ranges: Vec<(usize, usize)> = Vec::new();
    for (level, lv) in fg.levels.iter().enumerate() {
        let v = &lv.values;
        if v.len() % 4 != 0 {
            return Err(format!(
                "level {level} has {} values, not a multiple of 4",
                v.len()
            ));
        }
        let first = nodes.len();
        let mut prev_end = 0i64;
        for q in v.chunks(4) {
            let (gap, total, self_value, name_index) = (q[0], q[1], q[2], q[3]);
            if gap < 0 || total < 0 || self_value < 0 || self_value > total {
                return Err(format!(
                    "level {level}: bad node {q:?} (gap, total, self must be >= 0, self <= total)"
                ));
            }
            let name = usize::try_from(name_index)
                .ok()
                .and_then(|i| fg.names.get(i))
                .ok_or_else(|| format!("level {level}: name index {name_index} out of range"))?;
            let x = prev_end + gap;
            prev_end = x + total;
            let parent = if level == 0 {
                None
            } else {
                let (from, to) = level_ranges[level - 1];
                let parent = (from..to).find(|&p| {
                    let p = &nodes[p];
                    p.x + p.self_value <= x && x + total <= p.x + p.total
                });
                Some(parent.ok_or_else(|| {
                    format!(
                        "level {level}: node {name:?} at x={x} total={total} lies in no parent's child area"
                    )
                })?)
            };
            nodes.push(Node {
                level,
                x,
                total,
                self_value,
                name: name.clone(),
                parent,
            });
        }
        level_ranges.push((first, nodes.len()));
    }

    if nodes.is_empty() {
        return if fg.total == 0 {
            Ok(nodes)
        } else {
            Err(format!("no levels but total = {}", fg.total))
        };
    }
    if fg.names.first().map(String::as_str) != Some("total") {
        return Err(format!(
            "names[0] must be \"total\", got {:?}",
            fg.names.first()
        ));
    }
    let (root_from, root_to) = level_ranges[0];
    if root_to - root_from != 1 || nodes[0].name != "total" || nodes[0].x != 0 {
        return Err("level 0 must hold exactly one node, \"total\", at x=0".into());
    }
    if nodes[0].total != fg.total {
        return Err(format!(
            "root total {} differs from the graph's total {}",
            nodes[0].total, fg.total
        ));
    }
    let mut child_sum = vec![0i64; nodes.len()];
    for n in &nodes {
        if let Some(p) = n.parent {
            child_sum[p] += n.total;
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if n.self_value + child_sum[i] != n.total {
            return Err(format!(
                "node {:?} at level {}: self {} + children {} != total {}",
                n.name, n.level, n.self_value, child_sum[i], n.total
            ));
        }
    }
    let max_self = nodes.iter().map(|n| n.self_value).max().unwrap_or(0);
    if max_self != fg.max_self {
        return Err(format!(
            "max_self is {} but the largest self value is {max_self}",
            fg.max_self
        ));
    }
    Ok(nodes)
}

/// Returns the nodes or panics with what is malformed; `context` names the query.
pub fn checked_nodes(fg: &FlameGraph, context: &str) -> Vec<Node> {
    nodes(fg).unwrap_or_else(|e| panic!("{context}: malformed flame graph: {e}"))
}

/// Returns the names of nodes with a non-zero self value (the leaves of the
/// merged stacks), the root excluded.
pub fn leaf_names(nodes: &[Node]) -> BTreeSet<String> {
    nodes
        .iter()
        .filter(|n| n.level > 0 && n.self_value != 0)
        .map(|n| n.name.clone())
        .collect()
}

/// Returns the root-first path of names of every node but the root.
fn path(nodes: &[Node], mut i: usize) -> Vec<String> {
    let mut path = Vec::new();
    while let Some(p) = nodes[i].parent {
        path.push(nodes[i].name.clone());
        i = p;
    }
    path.reverse();
    path
}

/// Returns the graph as a map from root-first name path to (total, self): a form
/// that does not depend on the order of `names`, for comparing graphs.
pub fn tree(nodes: &[Node]) -> BTreeMap<Vec<String>, (i64, i64)> {
    let mut tree: BTreeMap<Vec<String>, (i64, i64)> = BTreeMap::new();
    for i in 1..nodes.len() {
        let e = tree.entry(path(nodes, i)).or_default();
        e.0 += nodes[i].total;
        e.1 += nodes[i].self_value;
    }
    tree
}

/// Checks that siblings are ordered by name and that no two siblings share a name.
pub fn check_siblings_ordered(nodes: &[Node]) -> Result<(), String> {
    let mut by_parent: BTreeMap<usize, Vec<&Node>> = BTreeMap::new();
    for n in nodes {
        if let Some(p) = n.parent {
            by_parent.entry(p).or_default().push(n);
        }
    }
    for (p, children) in by_parent {
        for pair in children.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(format!(
                    "children of {:?} are not ordered by name: {:?} before {:?}",
                    nodes[p].name, pair[0].name, pair[1].name
                ));
            }
        }
    }
    Ok(())
}

/// Returns the levels with name indices replaced by names, so graphs can be
/// compared exactly whatever order `names` lists them in.
pub fn named_levels(fg: &FlameGraph) -> Vec<Vec<(i64, i64, i64, String)>> {
    fg.levels
        .iter()
        .map(|lv| {
            lv.values
                .chunks(4)
                .map(|q| {
                    let name = usize::try_from(q.get(3).copied().unwrap_or(-1))
                        .ok()
                        .and_then(|i| fg.names.get(i))
                        .cloned()
                        .unwrap_or_else(|| "<bad name index>".into());
                    (
                        q[0],
                        q.get(1).copied().unwrap_or(0),
                        q.get(2).copied().unwrap_or(0),
                        name,
                    )
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_design_example() {
        let fg = design_example();
        let nodes = nodes(&fg).unwrap();
        check_siblings_ordered(&nodes).unwrap();
        let t = tree(&nodes);
        let p = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(t[&p(&["a"])], (4, 0));
        assert_eq!(t[&p(&["a", "b", "e"])], (1, 1));
        assert_eq!(t[&p(&["a", "c"])], (3, 2));
        assert_eq!(t[&p(&["a", "c", "d"])], (1, 1));
        assert_eq!(t.len(), 5);
        assert_eq!(
            leaf_names(&nodes),
            ["c", "d", "e"].iter().map(|s| s.to_string()).collect()
        );
    }

    #[test]
    fn rejects_a_child_outside_its_parent() {
        let mut fg = design_example();
        // Move d to the left of c's child area (into c's self part).
        fg.levels[3].values[4] = 1;
        assert!(nodes(&fg).is_err());
    }

    #[test]
    fn rejects_inconsistent_totals() {
        let mut fg = design_example();
        fg.levels[1].values[1] = 5;
        assert!(nodes(&fg).is_err());
    }
}
