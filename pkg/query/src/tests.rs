//! Table tests of sample selection: call sites, spans and profile IDs, over
//! a head ([`MemBlock`]) and over the block it is written as.

use std::collections::BTreeMap;
use std::sync::Arc;

use ember_block::{Block, BlockView, MemBlock, encode_block, upload_block};
use ember_model::{
    Label, Labels, ProfileId, ProfileType, flamegraph::FunctionTree, ingest::SeriesSpec,
    labels::PROFILE_TYPE,
};
use ember_testkit::pprof::PprofBuilder;
use object_store::{ObjectStore, memory::InMemory};

use crate::{Plan, SourceView, merge_tree, points};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SPAN_A: &str = "00000000000000aa";
const SPAN_B: &str = "00000000000000bb";

fn series() -> SeriesSpec {
    SeriesSpec {
        labels: Labels::new(vec![
            Label::new(PROFILE_TYPE, CPU),
            Label::new("service_name", "svc"),
        ]),
        profile_type: CPU.parse::<ProfileType>().unwrap(),
        sample_type: 0,
        samples: None,
    }
}

/// Two profiles (IDs 100 and 200): the first with work in two spans and
/// outside any, the second with work of span A only.
fn head() -> MemBlock {
    let mut head = MemBlock::default();
    let first = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .sample_with_labels(&["main", "handle", "parse"], &[10], &[("span_id", SPAN_A)])
        .sample_with_labels(&["main", "handle", "render"], &[20], &[("span_id", SPAN_B)])
        .sample_with_labels(&["main", "handle", "parse"], &[1], &[("span_id", SPAN_B)])
        .sample(&["main", "gc"], &[40])
        .sample(&["main", "idle", "handle", "parse"], &[80])
        .build();
    head.append(&first.into(), &[series()], 1_000, 100);
    let second = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .sample_with_labels(&["main", "handle", "parse"], &[5], &[("span_id", SPAN_A)])
        .build();
    head.append(&second.into(), &[series()], 2_000, 200);
    head
}

/// Writes `head` as a block and opens it with symbols.
async fn block_of(head: &MemBlock) -> BlockView {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let encoded = encode_block(&head.to_block_data("test".into())).unwrap();
    upload_block(&store, "t", &encoded).await.unwrap();
    let block = Arc::new(Block::open(store, "t", head.ulid()).await.unwrap());
    block.view(true).await.unwrap()
}

fn plan() -> Plan {
    Plan::new(Some(CPU.into()), Vec::new(), i64::MIN, i64::MAX)
}

/// Returns the stacks (root first, `;`-joined) and values of a flame graph.
fn stacks(view: &dyn SourceView, plan: &Plan) -> BTreeMap<String, i64> {
    let mut tree = FunctionTree::new();
    merge_tree(view, plan, &mut tree).unwrap();
    let mut out = BTreeMap::new();
    tree.for_each_stack(|stack, v| {
        *out.entry(stack.join(";")).or_default() += v;
    });
    out
}

fn expect(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(s, v)| (s.to_string(), *v)).collect()
}

fn with_call_site(names: &[&str]) -> Plan {
    let mut p = plan();
    p.samples.call_site = names.iter().map(|s| s.to_string()).collect();
    p
}

fn with_spans(spans: &[&str]) -> Plan {
    let mut p = plan();
    let ids: Vec<String> = spans.iter().map(|s| s.to_string()).collect();
    p.samples.spans = Some(Arc::new(crate::parse_span_ids(&ids).unwrap()));
    p
}

fn with_ids(ids: &[ProfileId]) -> Plan {
    let mut p = plan();
    p.ids = Some(Arc::new(ids.iter().copied().collect()));
    p
}

/// The cases: a plan and the stacks its flame graph must hold, exactly.
fn cases() -> Vec<(&'static str, Plan, BTreeMap<String, i64>)> {
    vec![
        (
            "no selection: everything",
            plan(),
            expect(&[
                ("main;handle;parse", 16),
                ("main;handle;render", 20),
                ("main;gc", 40),
                ("main;idle;handle;parse", 80),
            ]),
        ),
        (
            // Grafana's function details on main → handle: that subtree only,
            // not `handle` under `idle`.
            "call site main;handle",
            with_call_site(&["main", "handle"]),
            expect(&[("main;handle;parse", 16), ("main;handle;render", 20)]),
        ),
        (
            "call site down to a leaf",
            with_call_site(&["main", "handle", "render"]),
            expect(&[("main;handle;render", 20)]),
        ),
        (
            "call site not at the root matches nothing",
            with_call_site(&["handle"]),
            expect(&[]),
        ),
        (
            "span A: its samples in both profiles",
            with_spans(&[SPAN_A]),
            expect(&[("main;handle;parse", 15)]),
        ),
        (
            "span B: only its own samples",
            with_spans(&[SPAN_B]),
            expect(&[("main;handle;parse", 1), ("main;handle;render", 20)]),
        ),
        (
            "both spans",
            with_spans(&[SPAN_A, SPAN_B]),
            expect(&[("main;handle;parse", 16), ("main;handle;render", 20)]),
        ),
        (
            "an unknown span: nothing",
            with_spans(&["0000000000000ccc"]),
            expect(&[]),
        ),
        (
            "profile 200 only",
            with_ids(&[200]),
            expect(&[("main;handle;parse", 5)]),
        ),
        (
            "an unknown profile ID: nothing",
            with_ids(&[300]),
            expect(&[]),
        ),
        (
            "span B and call site main;handle;parse",
            {
                let mut p = with_spans(&[SPAN_B]);
                p.samples.call_site = vec!["main".into(), "handle".into(), "parse".into()];
                p
            },
            expect(&[("main;handle;parse", 1)]),
        ),
    ]
}

#[tokio::test]
async fn flame_graphs_hold_only_the_selected_samples_in_heads_and_blocks() {
    let head = head();
    let block = block_of(&head).await;
    assert_eq!(block.block.meta.version, ember_block::FORMAT_VERSION);
    for (name, plan, want) in cases() {
        assert_eq!(stacks(&head, &plan), want, "head: {name}");
        assert_eq!(stacks(&block, &plan), want, "block: {name}");
    }
}

fn totals(view: &dyn SourceView, plan: &Plan) -> Vec<(ProfileId, i64)> {
    let mut out = Vec::new();
    points(view, plan, &mut |_, p| out.push((p.id, p.total))).unwrap();
    out.sort();
    out
}

/// A plan and the (profile, total) points it must give.
type TotalsCase = (&'static str, Plan, Vec<(ProfileId, i64)>);

#[tokio::test]
async fn time_series_points_count_only_the_selected_samples() {
    let head = head();
    let block = block_of(&head).await;
    let table: Vec<TotalsCase> = vec![
        ("all", plan(), vec![(100, 151), (200, 5)]),
        (
            "call site main;handle",
            with_call_site(&["main", "handle"]),
            vec![(100, 31), (200, 5)],
        ),
        (
            "call site main;gc",
            with_call_site(&["main", "gc"]),
            vec![(100, 40)],
        ),
        ("span B", with_spans(&[SPAN_B]), vec![(100, 21)]),
        ("profile 100", with_ids(&[100]), vec![(100, 151)]),
    ];
    for (name, plan, want) in table {
        assert_eq!(totals(&head, &plan), want, "head: {name}");
        assert_eq!(totals(&block, &plan), want, "block: {name}");
    }
}

#[test]
fn a_preselected_plan_keeps_the_call_site_and_drops_spans_and_ids() {
    let mut p = with_spans(&[SPAN_A]);
    p.ids = Some(Arc::new([1].into_iter().collect()));
    p.samples.call_site = vec!["main".into()];
    let pre = p.preselected();
    assert!(pre.samples.spans.is_none());
    assert!(pre.ids.is_none());
    assert_eq!(pre.samples.call_site, ["main"]);
}

#[test]
fn spans_ride_along_in_the_head_without_changing_normal_totals() {
    let head = head();
    let row = head.profile(0).unwrap();
    assert_eq!(row.total, 151);
    assert_eq!(row.span_ids, [0xaa, 0xbb, 0xbb]);
    assert_eq!(row.span_values.iter().sum::<i64>(), 31);
    // A span ID that is not hex is not a span.
    let mut head = MemBlock::default();
    let p = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .sample_with_labels(&["main"], &[1], &[("span_id", "not-a-span")])
        .build();
    head.append(&p.into(), &[series()], 1, 1);
    assert!(head.profile(0).unwrap().span_ids.is_empty());
}

#[test]
fn a_copy_answers_only_what_it_answers_exactly() {
    use crate::Downsampling;
    use ember_block::{BlockMeta, BlockStats, Compaction, FORMAT_VERSION};
    use ulid::Ulid;
    const MIN: i64 = 60_000_000_000;
    let meta = |ulid: u128, resolution_nanos: i64, min: i64, max: i64| BlockMeta {
        version: FORMAT_VERSION,
        ulid: Ulid(ulid),
        min_time_nanos: min,
        max_time_nanos: max,
        stats: BlockStats::default(),
        compaction: Compaction {
            level: 3,
            sources: vec![Ulid(1), Ulid(2)],
        },
        source: String::new(),
        partitions: Vec::new(),
        resolution_nanos,
    };
    let raw = meta(10, 0, 61 * MIN, 119 * MIN);
    let fine = meta(11, 15 * MIN, 75 * MIN, 120 * MIN);
    let coarse = meta(12, 60 * MIN, 120 * MIN, 120 * MIN);
    let copies = [&fine, &coarse];
    let plan = |start: i64, end: i64, downsampling| Plan {
        downsampling,
        ..Plan::new(None, Vec::new(), start, end)
    };
    let chosen = |p: &Plan| p.copy_for(&raw, copies).map(|c| c.ulid.0);
    let day = (0, 24 * 60 * MIN);
    assert_eq!(chosen(&plan(day.0, day.1, Downsampling::Off)), None);
    assert_eq!(chosen(&plan(day.0, day.1, Downsampling::Totals)), Some(12));
    // A copy must lie inside the range: its last interval ends at 02:00.
    assert_eq!(chosen(&plan(0, 119 * MIN, Downsampling::Totals)), None);
    assert_eq!(chosen(&plan(0, 120 * MIN, Downsampling::Totals)), Some(12));
    // Steps must be multiples of the resolution, from a multiple of it.
    let steps = |start, step| plan(start, day.1, Downsampling::Steps { start, step });
    assert_eq!(chosen(&steps(0, 5 * MIN)), None);
    assert_eq!(chosen(&steps(0, 30 * MIN)), Some(11));
    assert_eq!(chosen(&steps(0, 120 * MIN)), Some(12));
    assert_eq!(chosen(&steps(MIN, 60 * MIN)), None);
    // Profile IDs and spans need the raw rows.
    let mut by_id = plan(day.0, day.1, Downsampling::Totals);
    by_id.ids = Some(Arc::new([7u128].into_iter().collect()));
    assert_eq!(chosen(&by_id), None);
    // Copies of other blocks never stand in.
    let other = meta(13, 60 * MIN, 120 * MIN, 120 * MIN);
    let other = BlockMeta {
        compaction: Compaction {
            level: 3,
            sources: vec![Ulid(3)],
        },
        ..other
    };
    let p = plan(day.0, day.1, Downsampling::Totals);
    assert_eq!(p.copy_for(&raw, [&other]).map(|c| c.ulid.0), None);
}
