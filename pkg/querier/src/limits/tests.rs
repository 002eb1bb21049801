use std::{fmt::Debug, sync::Arc, time::Duration};

use ember_limits::{LimitsOverride, Overrides};
use ember_proto::{
    Tenant,
    error::{Code, ErrorCode},
    querier::v1::querier_service_server::QuerierService,
};
use ember_query::{Need, Plan, RecentData, RecentSources};
use ember_time::ManualClock;
use object_store::memory::InMemory;
use tonic::Status;

use super::*;
use crate::Querier;

/// Now on the tests' clock: 2024-01-01T00:00:00Z.
const NOW: i64 = 1_704_067_200_000;
const HOUR: i64 = 3_600_000;

fn with(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::unlimited();
    change(&mut limits);
    limits
}

fn query_limits(limits: impl TenantLimits + 'static) -> QueryLimits {
    QueryLimits::new(Arc::new(limits), Arc::new(ManualClock::default()))
}

fn stacktraces(start: i64, end: i64, max_nodes: Option<i64>) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        start,
        end,
        max_nodes,
        ..Default::default()
    }
}

/// Returns the request as the limits of tenant `t` leave it; panics if refused.
fn admitted<R: Bounded>(limits: &QueryLimits, request: R) -> Option<R> {
    match limits.admit("t", request) {
        Ok(admitted) => admitted.map(|(request, _)| request),
        Err(e) => panic!("refused: {e}"),
    }
}

/// Returns the code and message of the refusal of `request` of tenant `t`.
fn refusal<R: Bounded + Debug>(limits: &QueryLimits, request: R) -> (Code, String) {
    match limits.admit("t", request) {
        Ok(admitted) => panic!("admitted: {:?}", admitted.map(|(r, _)| r)),
        Err(e) => (e.code(), e.to_string()),
    }
}

#[test]
fn max_query_length_refuses_a_longer_range_naming_the_limit() {
    let limits = query_limits(with(|l| l.max_query_length = Duration::from_secs(3600)));
    let (code, message) = refusal(&limits, stacktraces(NOW - 2 * HOUR, NOW, None));
    assert_eq!(code, Code::BadRequest);
    assert_eq!(
        message,
        "tenant \"t\": the query's time range of 2h is longer than the limit of 1h \
         (limits.max_query_length): narrow start and end to at most 1h apart"
    );
    // Exactly the limit passes, unchanged.
    let inside = admitted(&limits, stacktraces(NOW - HOUR, NOW, None)).unwrap();
    assert_eq!((inside.start, inside.end), (NOW - HOUR, NOW));
    // All time reads the last max_query_length.
    let all_time = admitted(&limits, stacktraces(0, 0, None)).unwrap();
    assert_eq!((all_time.start, all_time.end), (NOW - HOUR, NOW));
    // Label queries with a range are checked too, without one they are not.
    let labels = |start, end| LabelNamesRequest {
        start,
        end,
        ..Default::default()
    };
    refusal(&limits, labels(NOW - 2 * HOUR, NOW));
    admitted(&limits, labels(0, 0)).unwrap();
    // 0 disables.
    let off = query_limits(Limits::unlimited());
    admitted(&off, stacktraces(NOW - 48 * HOUR, NOW, None)).unwrap();
    admitted(&off, stacktraces(0, 0, None)).unwrap();
}

#[test]
fn max_query_lookback_clamps_the_start_and_empties_older_ranges() {
    let limits = query_limits(with(|l| {
        l.max_query_lookback = Duration::from_secs(24 * 3600)
    }));
    let clamped = admitted(&limits, stacktraces(NOW - 48 * HOUR, NOW, None)).unwrap();
    assert_eq!((clamped.start, clamped.end), (NOW - 24 * HOUR, NOW));
    assert!(admitted(&limits, stacktraces(NOW - 72 * HOUR, NOW - 48 * HOUR, None)).is_none());
    // Grafana's health check asks for 1970: an empty answer, not an error.
    let health = ProfileTypesRequest {
        start: 1000,
        end: 4000,
    };
    assert!(admitted(&limits, health).is_none());
    // All time becomes the lookback.
    let all = admitted(&limits, stacktraces(0, 0, None)).unwrap();
    assert_eq!((all.start, all.end), (NOW - 24 * HOUR, MAX_END_MS));
    // The length is checked once the start is clamped.
    let both = query_limits(with(|l| {
        l.max_query_lookback = Duration::from_secs(24 * 3600);
        l.max_query_length = Duration::from_secs(24 * 3600);
    }));
    let kept = admitted(&both, stacktraces(NOW - 72 * HOUR, NOW, None)).unwrap();
    assert_eq!(kept.start, NOW - 24 * HOUR);
    refusal(&both, stacktraces(NOW - 12 * HOUR, NOW + 24 * HOUR, None));
    // A diff side wholly before the lookback reads its first millisecond.
    let diff = admitted(
        &limits,
        DiffRequest {
            left: Some(stacktraces(NOW - 72 * HOUR, NOW - 48 * HOUR, None)),
            right: Some(stacktraces(NOW - 48 * HOUR, NOW, None)),
        },
    )
    .unwrap();
    let (left, right) = (diff.left.unwrap(), diff.right.unwrap());
    assert_eq!((left.start, left.end), (NOW - 24 * HOUR, NOW - 24 * HOUR));
    assert_eq!((right.start, right.end), (NOW - 24 * HOUR, NOW));
}

#[test]
fn max_flamegraph_nodes_set_the_default_and_refuse_more_than_the_max() {
    let limits = query_limits(with(|l| {
        l.max_flamegraph_nodes_default = 8192;
        l.max_flamegraph_nodes_max = 10_000;
    }));
    let nodes = |n| {
        admitted(&limits, stacktraces(NOW - HOUR, NOW, n))
            .unwrap()
            .max_nodes
    };
    assert_eq!(nodes(None), Some(8192));
    assert_eq!(nodes(Some(0)), Some(8192));
    assert_eq!(nodes(Some(100)), Some(100));
    assert_eq!(nodes(Some(10_000)), Some(10_000));
    let (code, message) = refusal(&limits, stacktraces(NOW - HOUR, NOW, Some(10_001)));
    assert_eq!(code, Code::BadRequest);
    assert_eq!(
        message,
        "tenant \"t\": max_nodes 10001 is more than the limit of 10000 \
         (limits.max_flamegraph_nodes_max): ask for at most 10000 nodes"
    );
    // No limit at all is more than any maximum.
    let (_, message) = refusal(&limits, stacktraces(NOW - HOUR, NOW, Some(-1)));
    assert!(
        message.contains("limits.max_flamegraph_nodes_max"),
        "{message}"
    );
    // Without a maximum, a negative number keeps every node; the default is capped by the maximum.
    let open = query_limits(with(|l| l.max_flamegraph_nodes_default = 0));
    let every = admitted(&open, stacktraces(NOW - HOUR, NOW, Some(-1))).unwrap();
    assert_eq!(every.max_nodes, Some(-1));
    assert_eq!(crate::max_nodes(every.max_nodes), 0);
    let capped = query_limits(with(|l| {
        l.max_flamegraph_nodes_default = 8192;
        l.max_flamegraph_nodes_max = 100;
    }));
    let request = admitted(&capped, stacktraces(NOW - HOUR, NOW, None)).unwrap();
    assert_eq!(request.max_nodes, Some(100));
    // A diff's sides both get the larger of theirs, checked once.
    let mut left = stacktraces(NOW - HOUR, NOW, Some(50));
    let right = stacktraces(NOW - HOUR, NOW, Some(70));
    let diff = admitted(
        &capped,
        DiffRequest {
            left: Some(left.clone()),
            right: Some(right.clone()),
        },
    )
    .unwrap();
    assert_eq!(diff.left.unwrap().max_nodes, Some(70));
    assert_eq!(diff.right.unwrap().max_nodes, Some(70));
    left.max_nodes = Some(101);
    let (_, message) = refusal(
        &capped,
        DiffRequest {
            left: Some(left),
            right: Some(right),
        },
    );
    assert!(message.contains("max_nodes 101"), "{message}");
}

#[test]
fn max_concurrent_queries_refuses_one_more_until_one_ends() {
    let overrides = Overrides {
        defaults: with(|l| l.max_concurrent_queries = 2),
        tenants: [(
            "big".to_string(),
            LimitsOverride {
                max_concurrent_queries: Some(0),
                ..LimitsOverride::default()
            },
        )]
        .into(),
    };
    let limits = query_limits(overrides);
    let stats = || GetProfileStatsRequest::default();
    let first = limits.admit("t", stats()).unwrap().unwrap();
    let second = limits.admit("t", stats()).unwrap().unwrap();
    let (code, message) = refusal(&limits, stats());
    assert_eq!(code, Code::RateLimited);
    assert!(
        message.starts_with(
            "tenant \"t\" already runs 2 queries, the limit of 2 (limits.max_concurrent_queries)"
        ),
        "{message}"
    );
    // Another tenant has places of its own; "big" has no limit.
    let other = limits.admit("u", stats()).unwrap().unwrap();
    let big: Vec<_> = (0..10)
        .map(|_| limits.admit("big", stats()).unwrap().unwrap())
        .collect();
    drop(first);
    let third = limits.admit("t", stats()).unwrap().unwrap();
    drop((second, third, other, big));
    // Nothing runs: no tenant keeps an entry.
    assert!(limits.running.lock().unwrap().is_empty());
}

#[tokio::test]
async fn query_timeout_stops_a_query_naming_the_limit() {
    let limits = query_limits(with(|l| l.query_timeout = Duration::from_millis(20)));
    let error = limits
        .timed("t", std::future::pending::<Result<()>>())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Timeout);
    assert_eq!(
        error.to_string(),
        "tenant \"t\": the query ran longer than the limit of 20ms (limits.query_timeout): \
         narrow the time range or the selector"
    );
    assert_eq!(limits.timed("t", async { Ok(7) }).await.unwrap(), 7);
    let off = query_limits(Limits::unlimited());
    let slow = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(1)
    };
    assert_eq!(off.timed("t", slow).await.unwrap(), 1);
}

/// Recent data that never answers: a query that can only time out.
#[derive(Debug)]
struct Stalled;

#[async_trait::async_trait]
impl RecentData for Stalled {
    async fn sources(
        &self,
        _: &str,
        _: &Plan,
        _: Need,
    ) -> std::result::Result<RecentSources, Status> {
        std::future::pending().await
    }
}

fn request<T>(tenant: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(Tenant(tenant.into()));
    request
}

#[tokio::test]
async fn the_querier_answers_refusals_as_statuses_per_tenant() {
    let overrides = Overrides {
        defaults: with(|l| {
            l.max_query_length = Duration::from_secs(24 * 3600);
            l.max_query_lookback = Duration::from_secs(7 * 24 * 3600);
            l.query_timeout = Duration::from_millis(50);
            l.max_concurrent_queries = 1;
        }),
        tenants: [(
            "short".to_string(),
            LimitsOverride {
                max_query_length: Some(Duration::from_secs(3600)),
                ..LimitsOverride::default()
            },
        )]
        .into(),
    };
    let querier = Querier::new(None, Arc::new(InMemory::new()))
        .with_limits(Arc::new(overrides), Arc::new(ManualClock::default()));
    let status = querier
        .select_merge_stacktraces(request("short", stacktraces(NOW - 2 * HOUR, NOW, None)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(Code::of(&status), Code::BadRequest);
    assert!(
        status
            .message()
            .contains("limit of 1h (limits.max_query_length)")
    );
    // The override is that tenant's only: another answers the same query.
    let answer = querier
        .select_merge_stacktraces(request("t", stacktraces(NOW - 2 * HOUR, NOW, None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.flamegraph.unwrap().total, 0);
    // Grafana's health check answers, empty.
    let health = querier
        .profile_types(request(
            "t",
            ProfileTypesRequest {
                start: 1000,
                end: 4000,
            },
        ))
        .await
        .unwrap();
    assert!(health.into_inner().profile_types.is_empty());

    let stalled = Querier::new(Some(Arc::new(Stalled)), Arc::new(InMemory::new())).with_limits(
        Arc::new(with(|l| {
            l.query_timeout = Duration::from_millis(50);
            l.max_concurrent_queries = 1;
        })),
        Arc::new(ManualClock::default()),
    );
    for _ in 0..2 {
        // The second is not refused as a second running query: the first
        // gave its place back when it timed out.
        let status = stalled
            .select_series(request(
                "t",
                SelectSeriesRequest {
                    profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                    start: NOW - HOUR,
                    end: NOW,
                    step: 15.0,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(Code::of(&status), Code::Timeout);
        assert!(
            status
                .message()
                .contains("limit of 50ms (limits.query_timeout)")
        );
    }
}
