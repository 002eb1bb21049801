//! Table tests of the selecting RPCs through [`QuerierService`], over a
//! stored block: call sites, profile IDs, spans, Go PGO, exemplars, heatmaps.

use std::sync::Arc;

use ember_block::{MemBlock, encode_block, upload_block};
use ember_model::{Label, Labels, ProfileType, ingest::SeriesSpec, labels::PROFILE_TYPE};
use ember_proto::{
    Tenant,
    querier::v1::{
        HeatmapQueryType, SelectHeatmapRequest, SelectMergeProfileRequest,
        SelectMergeSpanProfileRequest, SelectMergeStacktracesRequest, SelectSeriesRequest,
        querier_service_server::QuerierService,
    },
    types::v1::{ExemplarType, GoPgo, Location, StackTraceSelector},
};
use ember_testkit::pprof::PprofBuilder;
use object_store::{ObjectStore, ObjectStoreExt, memory::InMemory};
use tonic::Request;

use crate::Querier;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SECOND: i64 = 1_000_000_000;

fn request<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.extensions_mut().insert(Tenant("t".into()));
    r
}

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

/// Returns the values of every point of the CPU series of all profiles
/// from `start` to `end` (milliseconds) at `step` seconds.
async fn point_values(q: &Querier, start: i64, end: i64, step: f64) -> Vec<f64> {
    let series = q
        .select_series(request(SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start,
            end,
            step,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .series;
    series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.value)
        .collect()
}

/// A querier over one block of three profiles, at 10 s, 20 s and 21 s.
async fn querier() -> Querier {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let encoded = encode_block(&three_profiles().to_block_data("test".into())).unwrap();
    upload_block(&store, "t", &encoded).await.unwrap();
    Querier::new(None, store)
}

/// Three profiles, at 10 s, 20 s and 21 s; the first with two spans.
fn three_profiles() -> MemBlock {
    let mut head = MemBlock::default();
    let first = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .sample_with_labels(
            &["main", "handle", "parse"],
            &[10],
            &[("span_id", "9a517183f26a089d")],
        )
        .sample_with_labels(
            &["main", "handle", "render"],
            &[20],
            &[("span_id", "5a4fe264a9c987fe")],
        )
        .sample(&["main", "gc"], &[40])
        .sample(&["main", "idle", "handle", "parse"], &[80])
        .build();
    head.append(&first.into(), &[series()], 10 * SECOND, 0x100);
    let second = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .sample(&["main", "handle", "parse"], &[7])
        .build();
    head.append(&second.into(), &[series()], 20 * SECOND, 0x200);
    let third = PprofBuilder::new(&[("cpu", "nanoseconds")])
        .sample(&["main", "gc"], &[3])
        .build();
    head.append(&third.into(), &[series()], 21 * SECOND, 0x300);
    head
}

fn call_site(names: &[&str]) -> Option<StackTraceSelector> {
    Some(StackTraceSelector {
        call_site: names
            .iter()
            .map(|n| Location {
                name: n.to_string(),
            })
            .collect(),
        go_pgo: None,
    })
}

fn stacktraces(
    selector: Option<StackTraceSelector>,
    ids: &[&str],
) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: "{service_name=\"svc\"}".into(),
        start: 1_000,
        end: 60_000,
        stack_trace_selector: selector,
        profile_id_selector: ids.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A request, its flame graph's total, names it must and must not hold.
type Case = (
    &'static str,
    SelectMergeStacktracesRequest,
    i64,
    Vec<&'static str>,
    Vec<&'static str>,
);

#[tokio::test]
async fn stack_trace_and_profile_id_selectors_give_that_subtree_and_profile() {
    let q = querier().await;
    let id_2 = ember_query::format_profile_id(0x200);
    let table: Vec<Case> = vec![
        (
            "all",
            stacktraces(None, &[]),
            160,
            vec!["gc", "idle"],
            vec![],
        ),
        (
            // Function details of handle, clicked under main: not the 80
            // under idle.
            "call site main;handle",
            stacktraces(call_site(&["main", "handle"]), &[]),
            37,
            vec!["parse", "render"],
            vec!["gc", "idle"],
        ),
        (
            "call site main;handle;render",
            stacktraces(call_site(&["main", "handle", "render"]), &[]),
            20,
            vec!["render"],
            vec!["parse"],
        ),
        (
            "profile 0x200",
            stacktraces(None, &[&id_2]),
            7,
            vec!["parse"],
            vec!["gc"],
        ),
        (
            "profile 0x200 and call site main;gc",
            stacktraces(call_site(&["main", "gc"]), &[&id_2]),
            0,
            vec![],
            vec!["gc"],
        ),
    ];
    for (name, req, total, has, lacks) in table {
        let fg = q
            .select_merge_stacktraces(request(req))
            .await
            .unwrap()
            .into_inner()
            .flamegraph
            .unwrap();
        assert_eq!(fg.total, total, "{name}");
        for n in has {
            assert!(fg.names.iter().any(|x| x == n), "{name}: {n} missing");
        }
        for n in lacks {
            assert!(!fg.names.iter().any(|x| x == n), "{name}: {n} present");
        }
    }
    let bad = q
        .select_merge_stacktraces(request(stacktraces(None, &["not-an-id"])))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains("neither a UUID nor a ULID"),
        "{bad:?}"
    );
}

#[tokio::test]
async fn a_span_flame_graph_holds_only_that_spans_samples() {
    let q = querier().await;
    let span = |ids: &[&str]| SelectMergeSpanProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        span_selector: ids.iter().map(|s| s.to_string()).collect(),
        start: 1_000,
        end: 60_000,
        ..Default::default()
    };
    let table: Vec<(&str, Vec<&str>, i64, Vec<&str>)> = vec![
        ("parse span", vec!["9a517183f26a089d"], 10, vec!["parse"]),
        ("render span", vec!["5a4fe264a9c987fe"], 20, vec!["render"]),
        (
            "both",
            vec!["9a517183f26a089d", "5a4fe264a9c987fe"],
            30,
            vec!["parse", "render"],
        ),
        ("unknown span", vec!["0000000000000001"], 0, vec![]),
    ];
    for (name, ids, total, names) in table {
        let fg = q
            .select_merge_span_profile(request(span(&ids)))
            .await
            .unwrap()
            .into_inner()
            .flamegraph
            .unwrap();
        assert_eq!(fg.total, total, "{name}");
        let mut leaves: Vec<&str> = fg
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| !["total", "main", "handle"].contains(n))
            .collect();
        leaves.sort();
        assert_eq!(leaves, names, "{name}");
    }
    // As Pyroscope's tree bytes, the same span's flame graph.
    let tree = q
        .select_merge_span_profile(request(SelectMergeSpanProfileRequest {
            format: ember_proto::querier::v1::ProfileFormat::Tree as i32,
            ..span(&["9a517183f26a089d"])
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(tree.flamegraph.is_none());
    let decoded = ember_model::flamegraph::FunctionTree::from_tree_bytes(&tree.tree)
        .unwrap()
        .to_flamegraph(0);
    assert_eq!(decoded.total, 10);
    assert!(decoded.names.iter().any(|n| n == "parse"), "{decoded:?}");
    assert!(!decoded.names.iter().any(|n| n == "render"), "{decoded:?}");
    let bad = q
        .select_merge_span_profile(request(span(&["zz"])))
        .await
        .unwrap_err();
    assert!(bad.message().contains("span ID \"zz\""), "{bad:?}");
}

#[tokio::test]
async fn go_pgo_trims_stacks_to_their_leaves() {
    let q = querier().await;
    let req = SelectMergeProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        start: 1_000,
        end: 60_000,
        stack_trace_selector: Some(StackTraceSelector {
            call_site: Vec::new(),
            go_pgo: Some(GoPgo {
                keep_locations: 2,
                aggregate_callees: true,
            }),
        }),
        ..Default::default()
    };
    let p = q
        .select_merge_profile(request(req))
        .await
        .unwrap()
        .into_inner();
    assert!(p.sample.iter().all(|s| s.location_id.len() <= 2));
    assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 160);
    // handle;parse under main and under idle merge once trimmed to 2.
    assert_eq!(p.sample.len(), 3, "{:?}", p.sample);
}

#[tokio::test]
async fn exemplars_name_profiles_whose_single_profile_query_gives_their_value() {
    let q = querier().await;
    let series = q
        .select_series(request(SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: 0,
            end: 30_000,
            step: 15.0,
            exemplar_type: ExemplarType::Individual as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .series;
    assert_eq!(series.len(), 1);
    let points = &series[0].points;
    let values: Vec<(i64, f64)> = points.iter().map(|p| (p.timestamp, p.value)).collect();
    assert_eq!(values, [(15_000, 150.0), (30_000, 10.0)]);
    for point in points {
        assert_eq!(point.exemplars.len(), 1, "{point:?}");
        let e = &point.exemplars[0];
        assert!(e.labels.iter().any(|l| l.value == "svc"));
        let one = q
            .select_merge_stacktraces(request(stacktraces(None, &[&e.profile_id])))
            .await
            .unwrap()
            .into_inner()
            .flamegraph
            .unwrap();
        assert_eq!(one.total, e.value, "exemplar {e:?}");
        let pprof = q
            .select_merge_profile(request(SelectMergeProfileRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start: 1_000,
                end: 60_000,
                profile_id_selector: vec![e.profile_id.clone()],
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            pprof.sample.iter().map(|s| s.value[0]).sum::<i64>(),
            e.value
        );
    }
    // The second point aggregates 7 and 3: its exemplar is the 7.
    assert_eq!(points[1].exemplars[0].value, 7);
    assert_eq!(
        points[1].exemplars[0].profile_id,
        ember_query::format_profile_id(0x200)
    );
}

#[tokio::test]
async fn select_series_with_a_call_site_sums_only_that_subtree() {
    let q = querier().await;
    let series = q
        .select_series(request(SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: 0,
            end: 30_000,
            step: 15.0,
            stack_trace_selector: call_site(&["main", "gc"]),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .series;
    let values: Vec<(i64, f64)> = series[0]
        .points
        .iter()
        .map(|p| (p.timestamp, p.value))
        .collect();
    assert_eq!(values, [(15_000, 40.0), (30_000, 3.0)]);
}

/// The heatmap of every profile of [`querier`] in two 15 s steps.
async fn heatmap(
    query_type: HeatmapQueryType,
    exemplar_type: ExemplarType,
) -> Vec<ember_proto::types::v1::HeatmapSeries> {
    querier()
        .await
        .select_heatmap(request(SelectHeatmapRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: 0,
            end: 30_000,
            step: 15.0,
            query_type: query_type as i32,
            exemplar_type: exemplar_type as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .series
}

#[tokio::test]
async fn a_span_heatmap_counts_each_span_with_its_own_value() {
    let heatmap = heatmap(HeatmapQueryType::Span, ExemplarType::Span).await;
    assert_eq!(heatmap.len(), 1);
    // Only the first profile has spans: two of them, 10 and 20, in its slot.
    let slots = &heatmap[0].slots;
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(slots[0].timestamp, 15_000);
    assert_eq!(slots[0].counts, [1, 1]);
    assert_eq!(slots[0].y_min, [10.0, 10.0 + 19.0 * 10.0 / 20.0]);
    let e = &heatmap[0].exemplars;
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].span_id.as_str(), e[0].value),
        ("5a4fe264a9c987fe", 20)
    );
    assert_eq!(e[0].profile_id, ember_query::format_profile_id(0x100));
}

#[tokio::test]
async fn heatmap_counts_every_profile_once() {
    let heatmap = heatmap(HeatmapQueryType::Individual, ExemplarType::Individual).await;
    assert_eq!(heatmap.len(), 1);
    let slots = &heatmap[0].slots;
    let counts: Vec<i32> = slots.iter().map(|s| s.counts.iter().sum()).collect();
    assert_eq!(counts, [1, 2]);
    // One axis from 3 to 150 in 20 ranges: 150 is in the last.
    assert_eq!(slots[0].y_min.len(), 1);
    assert!((slots[0].y_min[0] - (3.0 + 19.0 * 147.0 / 20.0)).abs() < 1e-9);
    assert_eq!(heatmap[0].exemplars.len(), 2);
}

#[tokio::test]
async fn time_series_read_a_pre_aggregated_copy_at_steps_it_fits() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let data = three_profiles().to_block_data("test".into());
    let raw = encode_block(&data).unwrap();
    upload_block(&store, "t", &raw).await.unwrap();
    let copy =
        ember_block::downsample::encode_downsampled(&data, 10 * SECOND, ulid::Ulid::new()).unwrap();
    upload_block(&store, "t", &copy).await.unwrap();
    let q = Querier::new(None, store.clone());
    let series = |step: f64, exemplar_type: ExemplarType| {
        let q = &q;
        async move {
            q.select_series(request(SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start: 0,
                end: 60_000,
                step,
                exemplar_type: exemplar_type as i32,
                ..Default::default()
            }))
            .await
            .map(|r| {
                let points = &r.into_inner().series[0].points;
                points
                    .iter()
                    .map(|p| (p.timestamp, p.value))
                    .collect::<Vec<_>>()
            })
        }
    };
    let expected = [(10_000, 150.0), (20_000, 7.0), (30_000, 3.0)];
    assert_eq!(series(10.0, ExemplarType::None).await.unwrap(), expected);
    // Without the raw profiles, steps the copy fits still answer the same,
    // while exemplars (profile IDs) and finer steps need the raw block.
    for file in ["profiles.parquet", "totals.parquet"] {
        let path = ember_block::block_file("t", raw.meta.ulid, file);
        store.delete(&path).await.unwrap();
    }
    assert_eq!(series(10.0, ExemplarType::None).await.unwrap(), expected);
    assert_eq!(
        series(20.0, ExemplarType::Unspecified).await.unwrap(),
        [(20_000, 157.0), (40_000, 3.0)]
    );
    assert!(series(10.0, ExemplarType::Individual).await.is_err());
    assert!(series(5.0, ExemplarType::None).await.is_err());
}

/// The second of two identical queries reads nothing from object storage:
/// the block cache holds the footers, pages and symbols the first fetched.
#[tokio::test]
async fn a_repeated_query_is_served_by_the_block_cache() {
    let mut head = MemBlock::default();
    let other = SeriesSpec {
        labels: Labels::new(vec![
            Label::new(PROFILE_TYPE, CPU),
            Label::new("service_name", "other"),
        ]),
        ..series()
    };
    for i in 0..50 {
        let p = PprofBuilder::new(&[("cpu", "nanoseconds")])
            .sample(&["main", "handle", "parse"], &[7 + i])
            .build();
        head.append(&p.into(), &[series()], (10 + i) * SECOND, 0x100 + i as u128);
        let q = PprofBuilder::new(&[("cpu", "nanoseconds")])
            .sample(&["main", "other_work"], &[1])
            .build();
        head.append(
            &q.into(),
            std::slice::from_ref(&other),
            (10 + i) * SECOND,
            0x1000 + i as u128,
        );
    }
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let encoded = encode_block(&head.to_block_data("test".into())).unwrap();
    upload_block(&store, "t", &encoded).await.unwrap();
    let cache_metrics = crate::BlockCacheMetrics::detached();
    let metrics = crate::QuerierMetrics::detached();
    let q = Querier::new(None, store)
        .with_cache(Arc::new(crate::BlockCache::new(
            1 << 20,
            cache_metrics.clone(),
        )))
        .with_metrics(metrics.clone());
    let ask = || async {
        q.select_merge_stacktraces(request(stacktraces(None, &[])))
            .await
            .unwrap()
            .into_inner()
            .flamegraph
            .unwrap()
    };
    let first = ask().await;
    assert_eq!(first.total, (0..50).map(|i| 7 + i).sum::<i64>());
    assert!(!first.names.contains(&"other_work".to_string()));
    let read_cold = metrics.query_read_bytes.get_sample_sum();
    assert!(read_cold > 0.0);
    let hits = |kind: &str| cache_metrics.hits.with_label_values(&[kind]).get();
    assert_eq!((hits("footer"), hits("symbols"), hits("page")), (0, 0, 0));
    let second = ask().await;
    assert_eq!(second, first);
    assert_eq!(metrics.query_read_bytes.get_sample_sum(), read_cold);
    assert!(hits("footer") > 0 && hits("symbols") == 1 && hits("page") > 0);
    assert!(cache_metrics.bytes.get() as u64 <= 1 << 20);
}

#[tokio::test]
async fn a_query_holding_more_block_bytes_than_max_query_bytes_is_refused() {
    let limited = |max_query_bytes| ember_limits::Limits {
        max_query_bytes,
        ..ember_limits::Limits::unlimited()
    };
    let clock = ember_time::SystemClock::shared();
    let q = querier()
        .await
        .with_limits(Arc::new(limited(1024)), clock.clone());
    let status = q
        .select_merge_stacktraces(request(stacktraces(None, &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("limit of 1024 bytes (limits.max_query_bytes)")
            && status
                .message()
                .contains("narrow the time range or the selector"),
        "{}",
        status.message()
    );
    let q = querier()
        .await
        .with_limits(Arc::new(limited(64 << 20)), clock);
    let fg = q
        .select_merge_stacktraces(request(stacktraces(None, &[])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fg.flamegraph.unwrap().total, 160);
}

#[test]
fn overlapping_marks_every_range_that_meets_another() {
    let ranges = [
        Some((10, 20)),
        Some((30, 40)),
        Some((20, 25)), // meets the first at 20
        None,
        Some((50, 60)),
        Some((0, 100)), // meets everything
        Some((200, 300)),
    ];
    assert_eq!(
        crate::overlapping(&ranges),
        [true, true, true, false, true, true, false]
    );
    assert_eq!(
        crate::overlapping(&[Some((1, 2)), Some((3, 4)), None]),
        [false, false, false]
    );
}

#[tokio::test]
async fn blocks_open_with_their_meta_from_the_bucket_index() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let encoded = encode_block(&three_profiles().to_block_data("test".into())).unwrap();
    upload_block(&store, "t", &encoded).await.unwrap();
    ember_block::write_index(&store, "t", vec![encoded.meta.clone()], 0)
        .await
        .unwrap();
    // Without its meta.json, only the index can say what the block is.
    let meta = ember_block::block_file("t", encoded.meta.ulid, ember_block::META_FILE);
    let meta_json = store.get(&meta).await.unwrap().bytes().await.unwrap();
    store.delete(&meta).await.unwrap();
    let total =
        |q: Querier| async move { point_values(&q, 0, 30_000, 30.0).await.iter().sum::<f64>() };
    let q = Querier::new(None, store.clone());
    let from_index = q.metrics.blocks_opened_from_index.clone();
    assert_eq!(total(q).await, 160.0);
    assert_eq!(from_index.get(), 1);
    // A damaged index is only a slower start: blocks open from meta.json.
    store
        .put(&ember_block::index::index_path("t"), "{".into())
        .await
        .unwrap();
    store.put(&meta, meta_json.into()).await.unwrap();
    let q = Querier::new(None, store);
    let failures = q.metrics.bucket_index_failures.clone();
    assert_eq!(total(q).await, 160.0);
    assert_eq!(failures.get(), 1);
}

/// With the bucket index, a cold query opens only the blocks in its range:
/// choosing needs their metas, not their series tables.
#[tokio::test]
async fn a_cold_query_opens_only_the_blocks_it_reads() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let hour = 3600 * SECOND;
    let mut metas = Vec::new();
    for h in 0..3 {
        let profile = PprofBuilder::new(&[("cpu", "nanoseconds")])
            .sample(&["main"], &[h + 1])
            .build();
        let mut head = MemBlock::default();
        head.append(
            &profile.into(),
            &[series()],
            h * hour + SECOND,
            h as u128 + 1,
        );
        let encoded = encode_block(&head.to_block_data("test".into())).unwrap();
        upload_block(&store, "t", &encoded).await.unwrap();
        metas.push(encoded.meta.clone());
    }
    let ulids: Vec<_> = metas.iter().map(|m| m.ulid).collect();
    ember_block::write_index(&store, "t", metas, 0)
        .await
        .unwrap();
    let q = Querier::new(None, store.clone());
    let opened = q.metrics.blocks_opened.clone();
    let hour_ms = hour / 1_000_000;
    let values = |h: i64| point_values(&q, h * hour_ms, (h + 1) * hour_ms - 1, 60.0);
    assert_eq!(values(1).await, [2.0]);
    assert_eq!(opened.get(), 1);
    // The metas the index gave are kept: without the index, or the third
    // block's meta.json, a query of its hour still opens it.
    store
        .delete(&ember_block::index::index_path("t"))
        .await
        .unwrap();
    let meta = ember_block::block_file("t", ulids[2], ember_block::META_FILE);
    store.delete(&meta).await.unwrap();
    assert_eq!(values(2).await, [3.0]);
    assert_eq!(opened.get(), 2);
}
