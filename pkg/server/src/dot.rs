//! Graphviz (`dot`) text of a call tree, as `/pyroscope/render?format=dot`
//! answers it (Pyroscope renders it with pprof's graph driver): one box per
//! function with its self and total value, one edge per caller → callee with
//! the value that flowed through it. Only the `max_nodes` functions of
//! largest total are drawn, and edges between them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use ember_model::flamegraph::FunctionTree;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn percent(v: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        v as f64 * 100.0 / total as f64
    }
}

/// Returns the Graphviz text of `tree`, titled `name`, values in `units`.
pub(crate) fn render(tree: &FunctionTree, name: &str, units: &str, max_nodes: usize) -> String {
    let total = tree.total();
    let mut stats = tree.top_table();
    stats.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
    stats.truncate(max_nodes);
    let ids: HashMap<&str, usize> = stats
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i + 1))
        .collect();
    // Caller → callee value, each edge counted once per stack (recursion).
    let mut edges: BTreeMap<(usize, usize), i64> = BTreeMap::new();
    tree.for_each_stack(|stack, value| {
        let mut seen = HashSet::new();
        for pair in stack.windows(2) {
            if let (Some(&a), Some(&b)) = (ids.get(pair[0]), ids.get(pair[1]))
                && seen.insert((a, b))
            {
                *edges.entry((a, b)).or_default() += value;
            }
        }
    });
    let max_total = stats.first().map_or(1, |s| s.total.max(1));
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(name));
    let _ = writeln!(out, "node [style=filled fillcolor=\"#f8f8f8\"]");
    let _ = writeln!(
        out,
        "subgraph cluster_L {{ \"{}\" [shape=box fontsize=16 label=\"{}\\lTotal {units}: {total}\\lShowing {} of {} functions\\l\"] }}",
        escape(name),
        escape(name),
        stats.len(),
        tree.top_table().len(),
    );
    for (i, s) in stats.iter().enumerate() {
        // Size and colour grow with the share of the total, as pprof draws them.
        let share = s.total as f64 / max_total as f64;
        let fontsize = 8.0 + 42.0 * percent(s.self_value, total) / 100.0;
        let red = 0x80 + (0x7f as f64 * share) as u32;
        let _ = writeln!(
            out,
            "N{} [label=\"{}\\n{} ({:.2}%)\\nof {} ({:.2}%)\" id=\"node{}\" fontsize={:.0} shape=box tooltip=\"{} ({})\" color=\"#{red:02x}0000\" fillcolor=\"#{red:02x}d5d5\"]",
            i + 1,
            escape(&s.name),
            s.self_value,
            percent(s.self_value, total),
            s.total,
            percent(s.total, total),
            i + 1,
            fontsize,
            escape(&s.name),
            s.total,
        );
    }
    for ((a, b), value) in &edges {
        let weight = (percent(*value, total) as i64).max(1);
        let penwidth = (1.0 + 5.0 * percent(*value, total) / 100.0).min(6.0);
        let _ = writeln!(
            out,
            "N{a} -> N{b} [label=\" {value}\" weight={weight} penwidth={penwidth:.1} tooltip=\"{} -> {} ({value})\"]",
            escape(&stats[a - 1].name),
            escape(&stats[b - 1].name),
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_functions_and_call_edges() {
        let mut tree = FunctionTree::new();
        tree.insert_stack(&["main", "work", "hash"], 30);
        tree.insert_stack(&["main", "idle"], 10);
        tree.insert_stack(&["main", "work", "work"], 5);
        let dot = render(&tree, "cpu{service_name=\"a\"}", "samples", 100);
        assert!(
            dot.starts_with("digraph \"cpu{service_name=\\\"a\\\"}\" {"),
            "{dot}"
        );
        assert!(dot.trim_end().ends_with('}'));
        // main (N1, total 45), work (N2, 35), hash (N3, 30), idle (N4, 10).
        assert!(
            dot.contains("N1 [label=\"main\\n0 (0.00%)\\nof 45 (100.00%)\""),
            "{dot}"
        );
        assert!(
            dot.contains("N2 [label=\"work\\n5 (11.11%)\\nof 35 (77.78%)\""),
            "{dot}"
        );
        assert!(dot.contains("N1 -> N2 [label=\" 35\""), "{dot}");
        assert!(dot.contains("N2 -> N3 [label=\" 30\""), "{dot}");
        assert!(dot.contains("N2 -> N2 [label=\" 5\""), "{dot}");
        assert!(dot.contains("N1 -> N4 [label=\" 10\""), "{dot}");
        // Cut to two functions: no edge reaches a dropped one.
        let cut = render(&tree, "x", "samples", 2);
        assert!(!cut.contains("N3"), "{cut}");
        assert!(cut.contains("N1 -> N2"));
    }
}
