//! Acceptance: the flame-graph wire form of DESIGN.md §2, exactly, and its
//! `max_nodes` truncation into `other`.

use std::collections::BTreeSet;

use ember_tests::checks::{service_selector, the_type_with_data};
use ember_tests::flame::design_example;
use ember_tests::pprof::PprofBuilder;
use ember_tests::{Codec, EmberProcess, MULTITENANCY, TimeRange, flame, now_nanos};

const TENANT: Option<&str> = Some("flamegraph");

#[test]
fn design_example_is_reproduced_exactly() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 600_000);
    let profile = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .period_type("cpu", "nanoseconds", 1)
        .time(now, 1_000_000_000)
        .sample(&["a", "c"], &[2])
        .sample(&["a", "c", "d"], &[1])
        .sample(&["a", "b", "e"], &[1])
        .encode();
    client.push_pprof(TENANT, &[("service_name", "design-example")], &profile);
    let selector = service_selector("design-example");
    let (id, _) = the_type_with_data(&client, TENANT, range, &selector, "cpu", "nanoseconds");

    let want = design_example();
    for codec in [Codec::Json, Codec::Proto] {
        let got = client.flame_graph(TENANT, &id, &selector, range, None, codec);
        let context = format!("{codec:?} flame graph {got:?}");
        assert_eq!(got.total, want.total, "{context}: total");
        assert_eq!(got.max_self, want.max_self, "{context}: max_self");
        assert_eq!(
            got.names.first().map(String::as_str),
            Some("total"),
            "{context}: names[0]"
        );
        let names: BTreeSet<&String> = got.names.iter().collect();
        assert_eq!(
            names.len(),
            got.names.len(),
            "{context}: names are listed once each"
        );
        assert_eq!(
            names,
            want.names.iter().collect::<BTreeSet<_>>(),
            "{context}: names"
        );
        // The levels, exactly, once name indices are read through `names` (the
        // order of `names` after `total` is the server's choice).
        assert_eq!(
            flame::named_levels(&got),
            flame::named_levels(&want),
            "{context}: levels"
        );
        let nodes = flame::checked_nodes(&got, &context);
        flame::check_siblings_ordered(&nodes).unwrap_or_else(|e| panic!("{context}: {e}"));
    }
}

#[test]
fn max_nodes_folds_small_nodes_into_other_and_keeps_totals() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 600_000);
    let mut builder = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .period_type("cpu", "nanoseconds", 1)
        .time(now, 1_000_000_000)
        .sample(&["main", "big_a"], &[1000])
        .sample(&["main", "big_b"], &[900])
        .sample(&["main", "big_c"], &[800]);
    let small_names: Vec<String> = (0..200).map(|i| format!("small_{i:03}")).collect();
    for name in &small_names {
        builder = builder.sample(&["main", "helper", name], &[1]);
    }
    client.push_pprof(TENANT, &[("service_name", "truncation")], &builder.encode());
    let selector = service_selector("truncation");
    let (id, _) = the_type_with_data(&client, TENANT, range, &selector, "cpu", "nanoseconds");
    let total = 1000 + 900 + 800 + 200;

    // The default cut (8192) keeps all 206 nodes.
    let full = client.flame_graph(TENANT, &id, &selector, range, None, Codec::Json);
    let full_nodes = flame::checked_nodes(&full, "untruncated");
    assert_eq!(full.total, total);
    assert_eq!(
        full_nodes.len(),
        1 + 1 + 3 + 1 + 200,
        "every node without a cut"
    );
    assert!(!full.names.iter().any(|n| n == "other"));

    // Node totals are 2900 (main), 1000, 900, 800, 200 (helper) and 1 (each small
    // leaf): a cut at 5 nodes falls well above the small leaves, however the
    // root is counted, so no tie decides what stays.
    let max_nodes = 5;
    for codec in [Codec::Json, Codec::Proto] {
        let cut = client.flame_graph(TENANT, &id, &selector, range, Some(max_nodes), codec);
        let context = format!("max_nodes={max_nodes} ({codec:?})");
        let nodes = flame::checked_nodes(&cut, &context);
        assert_eq!(cut.total, total, "{context}: truncation keeps the total");
        let others: Vec<&flame::Node> = nodes.iter().filter(|n| n.name == "other").collect();
        assert!(
            !others.is_empty(),
            "{context}: small nodes merge into \"other\": {nodes:#?}"
        );
        let kept = nodes
            .iter()
            .filter(|n| n.level > 0 && n.name != "other")
            .count();
        assert!(
            kept as i64 <= max_nodes,
            "{context}: {kept} nodes besides the root and \"other\" exceed max_nodes"
        );
        // The big frames survive with their exact totals.
        let tree = flame::tree(&nodes);
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            tree.get(&path(&["main"])),
            Some(&(total, 0)),
            "{context}: main"
        );
        assert_eq!(tree.get(&path(&["main", "big_a"])).map(|v| v.0), Some(1000));
        assert_eq!(tree.get(&path(&["main", "big_b"])).map(|v| v.0), Some(900));
        assert_eq!(tree.get(&path(&["main", "big_c"])).map(|v| v.0), Some(800));
        // No small leaf survives on its own: they are all in `other`.
        assert!(
            !nodes.iter().any(|n| n.name.starts_with("small_")),
            "{context}: value-1 leaves must be cut before the big frames"
        );
    }
}
