//! Pyroscope's tree encoding, the `tree` bytes of a
//! `SelectMergeStacktracesResponse` when the request asks for
//! `PROFILE_FORMAT_TREE` (what `profilecli query merge` and Pyroscope's own
//! query frontend read; Pyroscope's `model.Tree.MarshalTruncate`).
//!
//! The tree is written depth first from a nameless virtual root, each node
//! as `uvarint(len(name)) name uvarint(self) uvarint(children)`, followed by
//! its children's subtrees. An empty tree is no bytes at all. With
//! `max_nodes > 0` the same threshold as the flame graph's applies (see the
//! [parent module](super)): the children of a node below it are summed into
//! one child named `other` (added to a child already named so).

use super::{FunctionTree, NodeId, OTHER, min_total};
use crate::{Error, Result};

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_uvarint(input: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = input.get(*pos) else {
            return Err(Error::Malformed("tree: truncated varint".into()));
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(Error::Malformed("tree: varint longer than 64 bits".into()))
}

/// A node to write: a node of the tree with extra self value (an `other`
/// child that absorbs truncated siblings), or a synthesized `other`.
enum Item {
    Node(NodeId, i64),
    Other(i64),
}

impl FunctionTree {
    /// Encodes the tree in Pyroscope's tree format, keeping the nodes whose
    /// total is among the `max_nodes` largest (0: all).
    pub fn to_tree_bytes(&self, max_nodes: usize) -> Vec<u8> {
        if self.total() == 0 && self.len() <= 1 {
            return Vec::new();
        }
        let totals = self.totals(&self.selfs);
        let children = self.children(true);
        let min_total = min_total(totals[1..].to_vec(), max_nodes);
        let other_name = self.lookup(OTHER);
        let mut out = Vec::new();
        let mut stack = vec![Item::Node(Self::ROOT, 0)];
        while let Some(item) = stack.pop() {
            let (node, name, self_value) = match item {
                Item::Other(v) => (None, OTHER, v),
                Item::Node(node, extra) => {
                    let name = if node == Self::ROOT {
                        ""
                    } else {
                        self.name(self.node_names[node as usize])
                    };
                    (Some(node), name, self.selfs[node as usize] + extra)
                }
            };
            put_uvarint(&mut out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
            put_uvarint(&mut out, self_value.max(0) as u64);
            let Some(node) = node else {
                put_uvarint(&mut out, 0);
                continue;
            };
            let mut kept = Vec::new();
            let mut existing_other = None;
            let mut truncated = 0;
            for &child in children.of(node) {
                let total = totals[child as usize];
                if total <= 0 {
                    continue;
                }
                if Some(self.node_names[child as usize]) == other_name {
                    existing_other = Some(kept.len());
                    kept.push(Item::Node(child, 0));
                } else if total >= min_total {
                    kept.push(Item::Node(child, 0));
                } else {
                    truncated += total;
                }
            }
            if truncated > 0 {
                match existing_other {
                    Some(i) => {
                        if let Item::Node(_, extra) = &mut kept[i] {
                            *extra += truncated;
                        }
                    }
                    None => kept.push(Item::Other(truncated)),
                }
            }
            put_uvarint(&mut out, kept.len() as u64);
            // Written in order: the stack pops the first child first.
            stack.extend(kept.into_iter().rev());
        }
        out
    }

    /// Decodes Pyroscope's tree format (see the [module docs](self)).
    pub fn from_tree_bytes(input: &[u8]) -> Result<Self> {
        let mut tree = Self::new();
        if input.is_empty() {
            return Ok(tree);
        }
        let mut pos = 0;
        // (node, children still to read); the virtual root comes first.
        let mut open: Vec<(NodeId, u64)> = Vec::new();
        let mut first = true;
        while first || !open.is_empty() {
            let len = get_uvarint(input, &mut pos)? as usize;
            let name = input
                .get(pos..pos.saturating_add(len))
                .ok_or_else(|| Error::Malformed("tree: name runs past the end".into()))?;
            pos += len;
            let name = std::str::from_utf8(name)
                .map_err(|_| Error::Malformed("tree: a name is not UTF-8".into()))?;
            let self_value = i64::try_from(get_uvarint(input, &mut pos)?)
                .map_err(|_| Error::Malformed("tree: a value is out of range".into()))?;
            let children = get_uvarint(input, &mut pos)?;
            if children > (input.len() - pos) as u64 {
                return Err(Error::Malformed(
                    "tree: more children than bytes left".into(),
                ));
            }
            let node = if first {
                first = false;
                Self::ROOT
            } else {
                let (parent, left) = open.last_mut().expect("open is not empty");
                *left -= 1;
                let parent = *parent;
                let name = tree.intern(name);
                tree.child(parent, name)
            };
            tree.add_self(node, self_value);
            while open.last().is_some_and(|&(_, left)| left == 0) {
                open.pop();
            }
            if children > 0 {
                open.push((node, children));
            }
        }
        if pos != input.len() {
            return Err(Error::Malformed(format!(
                "tree: {} bytes after the last node",
                input.len() - pos
            )));
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> FunctionTree {
        let mut t = FunctionTree::new();
        t.insert_stack(&["a", "b", "e"], 1);
        t.insert_stack(&["a", "c"], 2);
        t.insert_stack(&["a", "c", "d"], 1);
        t
    }

    fn stacks(t: &FunctionTree) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        t.for_each_stack(|s, v| out.push((s.join(";"), v)));
        out
    }

    #[test]
    fn encodes_pyroscope_layout() {
        // root(0 children 1) a(self 0, 2 children) b(0,1) e(1,0) c(2,1) d(1,0)
        let bytes = example().to_tree_bytes(0);
        let want: Vec<u8> = [
            &[0u8, 0, 1][..],
            &[1, b'a', 0, 2],
            &[1, b'b', 0, 1],
            &[1, b'e', 1, 0],
            &[1, b'c', 2, 1],
            &[1, b'd', 1, 0],
        ]
        .concat();
        assert_eq!(bytes, want);
    }

    #[test]
    fn round_trips_and_truncates_into_other() {
        let t = example();
        assert_eq!(
            stacks(&FunctionTree::from_tree_bytes(&t.to_tree_bytes(0)).unwrap()),
            stacks(&t)
        );
        // Two nodes kept (a=4, c=3): b;e (total 1) and d (1) become other.
        let cut = FunctionTree::from_tree_bytes(&t.to_tree_bytes(2)).unwrap();
        assert_eq!(
            stacks(&cut),
            vec![
                ("a;c".to_owned(), 2),
                ("a;c;other".to_owned(), 1),
                ("a;other".to_owned(), 1)
            ]
        );
        assert_eq!(cut.total(), 4);
        assert!(FunctionTree::new().to_tree_bytes(0).is_empty());
    }

    #[test]
    fn rejects_malformed_input() {
        let bytes = example().to_tree_bytes(0);
        for cut in [1, 5, bytes.len() - 1] {
            assert!(
                FunctionTree::from_tree_bytes(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(FunctionTree::from_tree_bytes(&long).is_err());
        // A name length far past the end.
        assert!(FunctionTree::from_tree_bytes(&[0xff, 0xff, 0x03, b'a']).is_err());
    }
}
