use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Builds a tree from `"a;b;c"` stacks.
fn tree(stacks: &[(&str, i64)]) -> FunctionTree {
    let mut tree = FunctionTree::new();
    for (stack, value) in stacks {
        let frames: Vec<&str> = stack.split(';').collect();
        tree.insert_stack(&frames, *value);
    }
    tree
}

fn levels(levels: &[Level]) -> Vec<Vec<i64>> {
    levels.iter().map(|l| l.values.clone()).collect()
}

/// Returns the tree's stacks as `"a;b;c" -> self`.
fn stacks(tree: &FunctionTree) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    tree.for_each_stack(|stack, value| {
        *out.entry(stack.join(";")).or_insert(0) += value;
    });
    out
}

/// Returns the total of every node as `"a;b;c" -> total`.
fn path_totals(tree: &FunctionTree) -> BTreeMap<String, i64> {
    let totals = tree.totals(&tree.selfs);
    let mut paths = vec![String::new(); tree.len()];
    let mut out = BTreeMap::new();
    for node in 1..tree.len() {
        let parent = &paths[tree.parents[node] as usize];
        let name = tree.node_name(node as NodeId).unwrap();
        let path = if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent};{name}")
        };
        out.insert(path.clone(), totals[node]);
        paths[node] = path;
    }
    out
}

/// Checks the layout invariants of a single flame graph: non-negative gaps,
/// every node inside its parent's child span, and a parent's total equal to
/// its self plus its children's totals. Returns the number of nodes.
fn check_layout(values: &[Vec<i64>], stride: usize, x: usize) -> usize {
    // Absolute (start, total, self, children total) of the level above.
    let mut above: Vec<(i64, i64, i64, i64)> = Vec::new();
    let mut count = 0;
    for (depth, level) in values.iter().enumerate() {
        assert_eq!(level.len() % stride, 0);
        let mut here = Vec::new();
        let mut end = 0;
        for tuple in level.chunks_exact(stride) {
            let (gap, total, self_value) = (tuple[x], tuple[x + 1], tuple[x + 2]);
            assert!(gap >= 0, "negative gap at level {depth}");
            assert!(self_value <= total && self_value >= 0);
            let start = end + gap;
            end = start + total;
            if depth > 0 && total > 0 {
                let i = above.partition_point(|p| p.0 <= start);
                let parent = &mut above[i - 1];
                assert!(
                    start >= parent.0 + parent.2,
                    "child before its parent's self"
                );
                assert!(end <= parent.0 + parent.1, "child past its parent's end");
                parent.3 += total;
            }
            here.push((start, total, self_value, 0));
            count += 1;
        }
        if depth > 0 {
            for parent in &above {
                assert_eq!(parent.1, parent.2 + parent.3, "level {}", depth - 1);
            }
        }
        above = here;
    }
    for leaf in &above {
        assert_eq!(leaf.1, leaf.2);
    }
    count
}

/// Returns one side of a diff as a single flame graph.
fn project(fg: &FlameGraphDiff, right: bool) -> FlameGraph {
    let offset = if right { 3 } else { 0 };
    FlameGraph {
        names: fg.names.clone(),
        levels: fg
            .levels
            .iter()
            .map(|l| Level {
                values: l
                    .values
                    .chunks_exact(7)
                    .flat_map(|t| [t[offset], t[offset + 1], t[offset + 2], t[6]])
                    .collect(),
            })
            .collect(),
        total: if right { fg.right_ticks } else { fg.left_ticks },
        max_self: fg.max_self,
    }
}

#[test]
fn design_example_is_reproduced_exactly() {
    let tree = tree(&[("a;b;e", 1), ("a;c", 2), ("a;c;d", 1)]);
    let fg = tree.to_flamegraph(0);
    assert_eq!(fg.names, ["total", "a", "c", "d", "b", "e"]);
    assert_eq!(
        levels(&fg.levels),
        [
            vec![0, 4, 0, 0],
            vec![0, 4, 0, 1],
            vec![0, 1, 0, 4, 0, 3, 2, 2],
            vec![0, 1, 1, 5, 2, 1, 1, 3],
        ]
    );
    assert_eq!(fg.total, 4);
    assert_eq!(fg.max_self, 2);
    // The default limit changes nothing on a small tree.
    assert_eq!(tree.to_flamegraph(8192), fg);
}

#[test]
fn flamebearer_matches_pyroscope_single_format() {
    let fg = tree(&[("a;b;e", 1), ("a;c", 2), ("a;c;d", 1)]).to_flamegraph(0);
    assert_eq!(
        flamebearer_json(&fg),
        json!({
            "names": ["total", "a", "c", "d", "b", "e"],
            "levels": [[0, 4, 0, 0], [0, 4, 0, 1], [0, 1, 0, 4, 0, 3, 2, 2], [0, 1, 1, 5, 2, 1, 1, 3]],
            "numTicks": 4,
            "maxSelf": 2,
        })
    );
}

#[test]
fn empty_tree_has_only_the_root() {
    let fg = FunctionTree::new().to_flamegraph(10);
    assert_eq!(fg.names, ["total"]);
    assert_eq!(levels(&fg.levels), [vec![0, 0, 0, 0]]);
    assert_eq!((fg.total, fg.max_self), (0, 0));
    assert!(FunctionTree::default().is_empty());
}

#[test]
fn siblings_are_ordered_by_bytes_and_named_right_to_left() {
    let fg = tree(&[("b", 1), ("a", 2), ("B", 3)]).to_flamegraph(0);
    // Bytewise, "B" < "a" < "b"; the walk visits b, a, B.
    assert_eq!(fg.names, ["total", "b", "a", "B"]);
    assert_eq!(
        levels(&fg.levels),
        [vec![0, 6, 0, 0], vec![0, 3, 3, 3, 0, 2, 2, 2, 0, 1, 1, 1]]
    );
    assert_eq!(fg.max_self, 3);
}

#[test]
fn truncation_merges_small_children_into_other() {
    // Pyroscope's Test_FlameGraphMerger "non-empty flamegraph result truncation".
    let tree = tree(&[
        ("foo;bar", 1),
        ("foo;bar;baz", 1),
        ("foo;qux", 2),
        ("fred;zoo", 1),
        ("fred;other", 1),
    ]);
    let fg = tree.to_flamegraph(4);
    assert_eq!(fg.names, ["total", "fred", "other", "foo", "qux", "bar"]);
    assert_eq!(
        levels(&fg.levels),
        [
            vec![0, 6, 0, 0],
            vec![0, 4, 0, 3, 0, 2, 0, 1],
            vec![0, 2, 1, 5, 0, 2, 2, 4, 0, 2, 2, 2],
            vec![1, 1, 1, 2],
        ]
    );
    assert_eq!((fg.total, fg.max_self), (6, 2));

    let decoded = FunctionTree::from_flamegraph(&fg).unwrap();
    assert_eq!(
        stacks(&decoded),
        BTreeMap::from([
            ("foo;bar".to_owned(), 1),
            ("foo;bar;other".to_owned(), 1),
            ("foo;qux".to_owned(), 2),
            ("fred;other".to_owned(), 2),
        ])
    );
}

#[test]
fn truncation_keeps_totals() {
    let mut stacks_in = Vec::new();
    for i in 0..50 {
        stacks_in.push((format!("main;work;f{i}"), i + 1));
        stacks_in.push((format!("main;io;g{i};h"), 1));
    }
    let input: Vec<(&str, i64)> = stacks_in.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    let tree = tree(&input);
    let full = path_totals(&tree);
    let fg = tree.to_flamegraph(10);
    assert_eq!(fg.total, tree.total());
    assert!(fg.names.iter().any(|n| n == OTHER));
    let kept = check_layout(&levels(&fg.levels), 4, 0);
    assert!(kept < 20, "{kept} nodes");
    let decoded = FunctionTree::from_flamegraph(&fg).unwrap();
    assert_eq!(decoded.total(), tree.total());
    for (path, total) in path_totals(&decoded) {
        if !path.ends_with(OTHER) {
            assert_eq!(full[&path], total, "{path}");
        }
    }
    // The io branch (50 leaves of 1) is truncated under `io`.
    assert_eq!(stacks(&decoded)["main;io;other"], 50);
}

#[test]
fn a_function_named_other_is_drawn_as_other() {
    // Pyroscope folds children named "other" into the synthesized node, which
    // sits after the name-ordered siblings.
    let fg = tree(&[("a;other;x", 1), ("a;z", 1)]).to_flamegraph(0);
    assert_eq!(fg.names, ["total", "a", "other", "z"]);
    assert_eq!(
        levels(&fg.levels),
        [
            vec![0, 2, 0, 0],
            vec![0, 2, 0, 1],
            vec![0, 1, 1, 3, 0, 1, 1, 2]
        ]
    );
}

#[test]
fn a_function_named_total_shares_the_root_name() {
    let fg = tree(&[("total;a", 1)]).to_flamegraph(0);
    assert_eq!(fg.names, ["total", "a"]);
    assert_eq!(levels(&fg.levels)[1], [0, 1, 0, 0]);
}

#[test]
fn insert_stack_ignores_empty_stacks_and_non_positive_values() {
    let mut tree = FunctionTree::new();
    tree.insert_stack(&[], 5);
    tree.insert_stack(&["a"], 0);
    tree.insert_stack(&["a"], -3);
    assert!(tree.is_empty());
    assert_eq!(tree.total(), 0);
}

#[test]
fn tree_api_reuses_names_and_children() {
    let mut tree = FunctionTree::with_capacity(4, 2);
    let a = tree.intern("a");
    assert_eq!(tree.intern("a"), a);
    assert_eq!(tree.lookup("a"), Some(a));
    assert_eq!(tree.lookup("b"), None);
    assert_eq!(tree.name(a), "a");
    let node = tree.child(FunctionTree::ROOT, a);
    assert_eq!(tree.child(FunctionTree::ROOT, a), node);
    let inner = tree.child(node, a);
    assert_ne!(inner, node);
    tree.add_self(inner, 3);
    tree.add_self(node, 2);
    assert_eq!(tree.total(), 5);
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.parent(inner), Some(node));
    assert_eq!(tree.parent(FunctionTree::ROOT), None);
    assert_eq!(tree.node_name(inner), Some("a"));
    assert_eq!(tree.node_name(FunctionTree::ROOT), None);
    assert_eq!(tree.self_value(inner), 3);
    assert!(format!("{tree:?}").contains("nodes: 3"));
}

#[test]
fn merge_adds_nodes_and_values() {
    let mut left = tree(&[("a;b", 1), ("c", 2)]);
    let right = tree(&[("c", 3), ("a;d", 4), ("z;a", 5)]);
    left.merge(&right);
    assert_eq!(left.total(), 15);
    assert_eq!(
        stacks(&left),
        BTreeMap::from([
            ("a;b".to_owned(), 1),
            ("a;d".to_owned(), 4),
            ("c".to_owned(), 5),
            ("z;a".to_owned(), 5),
        ])
    );

    let mut empty = FunctionTree::new();
    empty.merge(&right);
    assert_eq!(stacks(&empty), stacks(&right));
    empty.merge(&FunctionTree::new());
    assert_eq!(empty.total(), right.total());
}

#[test]
fn root_self_is_drawn_before_the_children() {
    let mut tree = tree(&[("a", 2)]);
    tree.add_self(FunctionTree::ROOT, 1);
    let fg = tree.to_flamegraph(0);
    assert_eq!(levels(&fg.levels), [vec![0, 3, 1, 0], vec![1, 2, 2, 1]]);
    let decoded = FunctionTree::from_flamegraph(&fg).unwrap();
    assert_eq!(decoded.total(), 3);
    assert_eq!(stacks(&decoded), stacks(&tree));
}

#[test]
fn from_flamegraph_rejects_malformed_input() {
    let bad = |levels: Vec<Vec<i64>>| {
        let fg = FlameGraph {
            names: vec!["total".into(), "a".into()],
            levels: levels.into_iter().map(|values| Level { values }).collect(),
            total: 1,
            max_self: 1,
        };
        FunctionTree::from_flamegraph(&fg).unwrap_err().to_string()
    };
    assert!(bad(vec![vec![0, 1, 0]]).contains("not a multiple of 4"));
    assert!(bad(vec![vec![0, 1, 0, 0, 0, 1, 0, 0]]).contains("exactly the root"));
    assert!(bad(vec![vec![0, 1, 0, 0], vec![0, 1, 1, 7]]).contains("missing name 7"));
    assert!(bad(vec![vec![0, 1, 0, 0], vec![0, 1, 1, -1]]).contains("missing name -1"));
    assert!(bad(vec![vec![0, 1, 0, 0], vec![-5, 1, 1, 1]]).contains("outside any parent"));
    assert!(
        FunctionTree::from_flamegraph(&FlameGraph::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn top_table_counts_recursion_once() {
    let tree = tree(&[("a;b;a;c", 2), ("a;b", 1), ("c", 3), ("b;b", 1)]);
    assert_eq!(
        tree.top_table(),
        [
            FunctionStat {
                name: "c".into(),
                self_value: 5,
                total: 5
            },
            FunctionStat {
                name: "b".into(),
                self_value: 2,
                total: 4
            },
            FunctionStat {
                name: "a".into(),
                self_value: 0,
                total: 3
            },
        ]
    );
    assert_eq!(
        serde_json::to_value(&tree.top_table()[0]).unwrap(),
        json!({"name": "c", "self": 5, "total": 5})
    );
    assert!(FunctionTree::new().top_table().is_empty());
}

#[test]
fn diff_matches_pyroscope() {
    // Pyroscope's Test_Diff_Tree.
    let left = tree(&[("a;b", 1), ("a;c", 2)]);
    let right = tree(&[("a;b", 4), ("a;c", 8)]);
    let fg = diff(&left, &right, 1024);
    assert_eq!(fg.names, ["total", "a", "c", "b"]);
    assert_eq!((fg.max_self, fg.total), (8, 15));
    assert_eq!((fg.left_ticks, fg.right_ticks), (3, 12));
    assert_eq!(
        levels(&fg.levels),
        [
            vec![0, 3, 0, 0, 12, 0, 0],
            vec![0, 3, 0, 0, 12, 0, 1],
            vec![0, 1, 1, 0, 4, 4, 3, 0, 2, 2, 0, 8, 8, 2],
        ]
    );

    // Pyroscope's Test_Diff_Tree_With_Different_Structure.
    let left = tree(&[("a;b", 1), ("a;c", 2), ("a;e", 3)]);
    let right = tree(&[("a;b", 4), ("a;d", 8), ("a;e", 12)]);
    let fg = diff(&left, &right, 1024);
    assert_eq!(fg.names, ["total", "a", "e", "d", "c", "b"]);
    assert_eq!((fg.max_self, fg.total), (12, 30));
    assert_eq!(
        levels(&fg.levels),
        [
            vec![0, 6, 0, 0, 24, 0, 0],
            vec![0, 6, 0, 0, 24, 0, 1],
            vec![
                0, 1, 1, 0, 4, 4, 5, //
                0, 2, 2, 0, 0, 0, 4, //
                0, 0, 0, 0, 8, 8, 3, //
                0, 3, 3, 0, 12, 12, 2,
            ],
        ]
    );
}

#[test]
fn diff_truncation_counts_the_root() {
    // Pyroscope's Test_Diff_Tree_With_MaxNodes.
    let left = tree(&[("a;b", 1), ("a;c", 2)]);
    let right = tree(&[("a;b", 4), ("a;c", 8)]);
    let fg = diff(&left, &right, 2);
    assert_eq!(fg.names, ["total", "a", "other"]);
    assert_eq!((fg.max_self, fg.total), (12, 15));
    assert_eq!(levels(&fg.levels)[2], [0, 3, 3, 0, 12, 12, 2]);
    let fg = diff(&left, &right, usize::MAX);
    assert_eq!(fg.names, ["total", "a", "c", "b"]);
    assert_eq!(diff(&left, &right, 0), fg);
}

#[test]
fn diff_with_disjoint_trees() {
    // Pyroscope's Test_Diff_No_Common_Root.
    let left = tree(&[("a;b", 1)]);
    let right = tree(&[("k;b;a;c", 8)]);
    let fg = diff(&left, &right, 1024);
    assert_eq!(fg.names, ["total", "k", "b", "a", "c"]);
    assert_eq!(
        levels(&fg.levels),
        [
            vec![0, 1, 0, 0, 8, 0, 0],
            vec![0, 1, 0, 0, 0, 0, 3, 0, 0, 0, 0, 8, 0, 1],
            vec![0, 1, 1, 0, 0, 0, 2, 0, 0, 0, 0, 8, 0, 2],
            vec![1, 0, 0, 0, 8, 0, 3],
            vec![1, 0, 0, 0, 8, 8, 4],
        ]
    );
    check_layout(&levels(&project(&fg, false).levels), 4, 0);
    check_layout(&levels(&project(&fg, true).levels), 4, 0);
}

#[test]
fn flamebearer_diff_has_both_tick_counts() {
    let fg = diff(&tree(&[("a", 1)]), &tree(&[("a", 2)]), 0);
    assert_eq!(
        flamebearer_diff_json(&fg),
        json!({
            "names": ["total", "a"],
            "levels": [[0, 1, 0, 0, 2, 0, 0], [0, 1, 1, 0, 2, 2, 1]],
            "numTicks": 3,
            "maxSelf": 2,
            "leftTicks": 1,
            "rightTicks": 2,
        })
    );
}

/// Random stacks over a small alphabet, so that they share prefixes.
fn stacks_strategy() -> impl Strategy<Value = Vec<(Vec<&'static str>, i64)>> {
    prop::collection::vec(
        (
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d", "e"]), 1..6),
            1i64..100,
        ),
        0..40,
    )
}

fn build(stacks: &[(Vec<&str>, i64)]) -> FunctionTree {
    let mut tree = FunctionTree::new();
    for (stack, value) in stacks {
        tree.insert_stack(stack, *value);
    }
    tree
}

fn expected_stacks(stacks: &[(Vec<&str>, i64)]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (stack, value) in stacks {
        *out.entry(stack.join(";")).or_insert(0) += value;
    }
    out
}

proptest! {
    #[test]
    fn flamegraph_keeps_every_stack(input in stacks_strategy()) {
        let tree = build(&input);
        let sum: i64 = input.iter().map(|(_, v)| v).sum();
        prop_assert_eq!(tree.total(), sum);
        let fg = tree.to_flamegraph(0);
        prop_assert_eq!(fg.total, sum);
        let count = check_layout(&levels(&fg.levels), 4, 0);
        prop_assert_eq!(count, tree.len());
        let decoded = FunctionTree::from_flamegraph(&fg).unwrap();
        prop_assert_eq!(stacks(&decoded), expected_stacks(&input));
        // Merging in halves gives the same tree as inserting everything.
        let (first, second) = input.split_at(input.len() / 2);
        let mut merged = build(first);
        merged.merge(&build(second));
        prop_assert_eq!(merged.to_flamegraph(0), fg);
    }

    #[test]
    fn truncation_preserves_totals(input in stacks_strategy(), max_nodes in 1usize..20) {
        let tree = build(&input);
        let fg = tree.to_flamegraph(max_nodes);
        prop_assert_eq!(fg.total, tree.total());
        check_layout(&levels(&fg.levels), 4, 0);
        let decoded = FunctionTree::from_flamegraph(&fg).unwrap();
        prop_assert_eq!(decoded.total(), tree.total());
        let full = path_totals(&tree);
        let mut kept = 0;
        for (path, total) in path_totals(&decoded) {
            if !path.ends_with(OTHER) {
                prop_assert_eq!(full[&path], total);
                kept += 1;
            }
        }
        // Ties at the threshold may keep more, never fewer.
        prop_assert!(kept >= max_nodes.min(tree.len() - 1));
        let threshold = min_total(tree.totals(&tree.selfs)[1..].to_vec(), max_nodes);
        let above = full.values().filter(|&&t| t > threshold).count();
        prop_assert!(above <= max_nodes);
    }

    #[test]
    fn diff_sides_match_single_flamegraphs(left in stacks_strategy(), right in stacks_strategy()) {
        let (left, right) = (build(&left), build(&right));
        let empty = FunctionTree::new();
        let fg = diff(&left, &empty, 0);
        prop_assert_eq!(project(&fg, false).levels, left.to_flamegraph(0).levels);
        prop_assert!(fg.levels.iter().all(|l| l.values.chunks_exact(7).all(|t| t[3..6] == [0, 0, 0])));
        let fg = diff(&empty, &right, 0);
        prop_assert_eq!(project(&fg, true).levels, right.to_flamegraph(0).levels);

        let fg = diff(&left, &right, 0);
        prop_assert_eq!(fg.total, left.total() + right.total());
        prop_assert_eq!((fg.left_ticks, fg.right_ticks), (left.total(), right.total()));
        for side in [false, true] {
            let single = project(&fg, side);
            check_layout(&levels(&single.levels), 4, 0);
            let decoded = FunctionTree::from_flamegraph(&single).unwrap();
            prop_assert_eq!(stacks(&decoded), stacks(if side { &right } else { &left }));
        }
    }

    #[test]
    fn diff_truncation_preserves_totals(
        left in stacks_strategy(),
        right in stacks_strategy(),
        max_nodes in 1usize..20,
    ) {
        let (left, right) = (build(&left), build(&right));
        let fg = diff(&left, &right, max_nodes);
        prop_assert_eq!(fg.total, left.total() + right.total());
        for (side, tree) in [(false, &left), (true, &right)] {
            let single = project(&fg, side);
            check_layout(&levels(&single.levels), 4, 0);
            prop_assert_eq!(FunctionTree::from_flamegraph(&single).unwrap().total(), tree.total());
        }
    }
}
