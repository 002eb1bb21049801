//! Acceptance: traces to profiles. A real Go program runs two kinds of work
//! under `pprof.Do` with distinct `span_id` labels (what `otel-profiling-go`
//! sets) and some outside any span; its CPU profile is pushed to Ember. Each
//! span's flame graph (`SelectMergeSpanProfile`) holds only its own hot
//! function, from the head and, after a restart, from the flushed block; and
//! exemplars of `SelectSeries` open, by profile ID, a profile of their value.

use std::process::Command;

use ember_proto::querier::v1::{
    FlameGraph, HeatmapQueryType, SelectHeatmapRequest, SelectHeatmapResponse,
    SelectMergeSpanProfileRequest, SelectMergeSpanProfileResponse, SelectMergeStacktracesRequest,
    SelectSeriesRequest, SelectSeriesResponse,
};
use ember_proto::types::v1::{ExemplarType, Location, StackTraceSelector};
use ember_tests::checks::service_selector;
use ember_tests::client::querier_path;
use ember_tests::{
    Client, Codec, EmberProcess, TimeRange, build_go_program, go_binary, now_millis,
    skip_or_fail_missing_tool,
};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const ALPHA_SPAN: &str = "00000000000000a1";
const BETA_SPAN: &str = "00000000000000b2";
const ALPHA: &str = "main.emberSpanAlpha";
const BETA: &str = "main.emberSpanBeta";
const NO_SPAN: &str = "main.emberNoSpan";

/// Builds and runs `tests/go/spans` for `seconds`; returns its CPU profile.
fn profile_of_go_program(go: &std::path::Path, seconds: u32) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let binary = build_go_program(go, "go/spans", work.path());
    let path = work.path().join("cpu.pb.gz");
    let out = Command::new(&binary)
        .arg(&path)
        .arg(seconds.to_string())
        .output()
        .expect("run the Go program");
    assert!(
        out.status.success(),
        "the Go program failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).unwrap()
}

fn span_flame_graph(client: &Client, range: TimeRange, spans: &[&str], codec: Codec) -> FlameGraph {
    let req = SelectMergeSpanProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: service_selector("go-spans"),
        span_selector: spans.iter().map(|s| s.to_string()).collect(),
        start: range.start,
        end: range.end,
        ..Default::default()
    };
    let resp: SelectMergeSpanProfileResponse = client
        .call(None, &querier_path("SelectMergeSpanProfile"), &req, codec)
        .unwrap_or_else(|e| panic!("SelectMergeSpanProfile {spans:?} failed: {e}"));
    resp.flamegraph.unwrap_or_default()
}

fn has(fg: &FlameGraph, name: &str) -> bool {
    fg.names.iter().any(|n| n == name)
}

/// Checks every span's flame graph against the whole service's.
fn check_spans(client: &Client, range: TimeRange, when: &str) {
    let all = client.flame_graph(
        None,
        CPU,
        &service_selector("go-spans"),
        range,
        None,
        Codec::Json,
    );
    for name in [ALPHA, BETA, NO_SPAN] {
        assert!(
            has(&all, name),
            "{when}: {name} missing from {:?}",
            all.names
        );
    }
    let cases = [
        (ALPHA_SPAN, ALPHA, Codec::Json),
        (BETA_SPAN, BETA, Codec::Proto),
    ];
    let mut span_totals = 0;
    let mut by_span = Vec::new();
    for (span, hot, codec) in cases {
        let fg = span_flame_graph(client, range, &[span], codec);
        by_span.push((span.to_owned(), fg.total));
        assert!(fg.total > 0, "{when}: span {span} has no samples");
        assert!(
            has(&fg, hot),
            "{when}: {hot} missing from span {span}: {:?}",
            fg.names
        );
        for other in [ALPHA, BETA, NO_SPAN].into_iter().filter(|n| *n != hot) {
            assert!(
                !has(&fg, other),
                "{when}: span {span} holds {other}: {:?}",
                fg.names
            );
        }
        span_totals += fg.total;
    }
    let both = span_flame_graph(client, range, &[ALPHA_SPAN, BETA_SPAN], Codec::Json);
    assert_eq!(both.total, span_totals, "{when}: both spans");
    assert!(
        both.total < all.total,
        "{when}: work outside spans counts only in the whole"
    );
    let none = span_flame_graph(client, range, &["00000000000000ff"], Codec::Json);
    assert_eq!(none.total, 0, "{when}: a span that never ran");
    check_span_heatmap(client, "go-spans", range, &by_span, when);
}

/// A span heatmap counts each span of the profile once, at its own value,
/// and its exemplar names the largest span with that span's flame-graph total.
pub(crate) fn check_span_heatmap(
    client: &Client,
    service: &str,
    range: TimeRange,
    by_span: &[(String, i64)],
    when: &str,
) {
    let heatmap: SelectHeatmapResponse = client
        .call(
            None,
            &querier_path("SelectHeatmap"),
            &SelectHeatmapRequest {
                profile_type_id: CPU.into(),
                label_selector: service_selector(service),
                start: range.start,
                end: range.end,
                step: (range.end - range.start) as f64 / 1000.0,
                query_type: HeatmapQueryType::Span as i32,
                exemplar_type: ExemplarType::Span as i32,
                ..Default::default()
            },
            Codec::Json,
        )
        .unwrap_or_else(|e| panic!("{when}: span SelectHeatmap failed: {e}"));
    assert_eq!(heatmap.series.len(), 1, "{when}: {heatmap:?}");
    let series = &heatmap.series[0];
    let counted: i32 = series.slots.iter().flat_map(|s| &s.counts).sum();
    assert_eq!(
        counted as usize,
        by_span.len(),
        "{when}: one per span: {series:?}"
    );
    assert_eq!(series.exemplars.len(), 1, "{when}: {series:?}");
    let e = &series.exemplars[0];
    // Two spans may take the same time: either may then be the exemplar.
    let largest = by_span.iter().map(|(_, v)| *v).max().unwrap();
    assert_eq!(e.value, largest, "{when}: {e:?} of {by_span:?}");
    assert!(
        by_span.contains(&(e.span_id.clone(), e.value)),
        "{when}: {e:?} names a span of that value: {by_span:?}"
    );
}

#[test]
fn each_spans_flame_graph_holds_only_its_own_work() {
    let Some(go) = go_binary() else {
        skip_or_fail_missing_tool("Go (to build tests/go/spans)", "apt-get install golang-go");
        return;
    };
    let profile = profile_of_go_program(&go, 3);
    let mut ember = EmberProcess::start(&[]);
    let client = ember.client();
    let start = now_millis() - 120_000;
    client.push_pprof(None, &[("service_name", "go-spans")], &profile);
    let range = TimeRange::new(start, now_millis() + 60_000);
    check_spans(&client, range, "from the head");

    // Exemplars name the pushed profile; opening it by ID gives its value.
    let series: SelectSeriesResponse = client
        .call(
            None,
            &querier_path("SelectSeries"),
            &SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: service_selector("go-spans"),
                start: range.start,
                end: range.end,
                step: 60.0,
                exemplar_type: ExemplarType::Individual as i32,
                ..Default::default()
            },
            Codec::Json,
        )
        .unwrap_or_else(|e| panic!("SelectSeries failed: {e}"));
    let exemplars: Vec<_> = series
        .series
        .iter()
        .flat_map(|s| &s.points)
        .flat_map(|p| &p.exemplars)
        .collect();
    assert_eq!(exemplars.len(), 1, "{:?}", series.series);
    let e = exemplars[0];
    let one = client
        .select_merge_stacktraces(
            None,
            &SelectMergeStacktracesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start: range.start,
                end: range.end,
                profile_id_selector: vec![e.profile_id.clone()],
                ..Default::default()
            },
            Codec::Json,
        )
        .unwrap_or_else(|err| panic!("the exemplar's profile {e:?}: {err}"));
    assert_eq!(one.total, e.value, "exemplar {e:?}");

    // A call site (Grafana's function details): that subtree's totals only.
    let (alpha_path, alpha_total) = alpha_path(&client, range);
    let site = client
        .select_merge_stacktraces(
            None,
            &SelectMergeStacktracesRequest {
                profile_type_id: CPU.into(),
                label_selector: service_selector("go-spans"),
                start: range.start,
                end: range.end,
                stack_trace_selector: Some(StackTraceSelector {
                    call_site: alpha_path
                        .iter()
                        .map(|n| Location { name: n.clone() })
                        .collect(),
                    go_pgo: None,
                }),
                ..Default::default()
            },
            Codec::Json,
        )
        .unwrap();
    assert!(has(&site, ALPHA) && !has(&site, BETA), "{:?}", site.names);
    assert_eq!(site.total, alpha_total, "the call site {alpha_path:?}");

    // After a restart the head is a block (format 3): the same answers.
    assert!(ember.stop().success(), "ember exits cleanly on SIGTERM");
    ember.restart();
    let client = ember.client();
    check_spans(&client, range, "from the block after a restart");
}

/// Returns the frames from the root down to `main.emberSpanAlpha` in the
/// service's flame graph, and that node's total.
fn alpha_path(client: &Client, range: TimeRange) -> (Vec<String>, i64) {
    let fg = client.flame_graph(
        None,
        CPU,
        &service_selector("go-spans"),
        range,
        None,
        Codec::Json,
    );
    let nodes = ember_tests::flame::checked_nodes(&fg, "go-spans");
    let tree = ember_tests::flame::tree(&nodes);
    tree.iter()
        .find(|(path, _)| path.last().map(String::as_str) == Some(ALPHA))
        .map(|(path, (total, _))| (path.clone(), *total))
        .unwrap_or_else(|| panic!("{ALPHA} not in {:?}", tree.keys().collect::<Vec<_>>()))
}
