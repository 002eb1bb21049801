//! Acceptance: per-tenant query limits through the real binary (`-target=all`).
//!
//! Small limits are set by flags, and changed for single tenants by the
//! config file's `overrides`. Each limit refuses its query with a 4xx Connect
//! error naming the limit's key and value; the override changes it for that
//! tenant only; a query inside the limits answers with the data.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use ember_proto::querier::v1::{DiffRequest, SelectMergeStacktracesRequest};
use ember_tests::pprof::PprofBuilder;
use ember_tests::process::write_file;
use ember_tests::{
    Client, Codec, ConnectError, EmberProcess, MULTITENANCY, TimeRange, flame, now_nanos,
    querier_path,
};
use serde_json::json;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SELECTOR: &str = "{service_name=\"limited\"}";
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

const OVERRIDES: &str = "\
overrides:
  wide:
    max_query_length: 0s
    max_flamegraph_nodes_max: 0
  recent:
    max_query_length: 0s
    max_query_lookback: 1h
  hurried:
    query_timeout: 1ns
  single:
    max_concurrent_queries: 1
";

/// Pushes a CPU profile at `time` (unix ns) whose one stack ends in `leaf`.
fn push(client: &Client, tenant: &str, time: i64, leaf: &str) {
    let profile = PprofBuilder::go_cpu()
        .time(time, 10_000_000_000)
        .sample(&["main", leaf], &[1, 10_000_000])
        .encode();
    client.push_pprof(Some(tenant), &[("service_name", "limited")], &profile);
}

fn stacktraces(range: TimeRange, max_nodes: Option<i64>) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: SELECTOR.into(),
        start: range.start,
        end: range.end,
        max_nodes,
        ..Default::default()
    }
}

/// Returns the leaves of the flame graph of `tenant` over `range`, or the refusal.
fn leaves(
    client: &Client,
    tenant: &str,
    range: TimeRange,
    max_nodes: Option<i64>,
) -> Result<BTreeSet<String>, ConnectError> {
    let fg = client.select_merge_stacktraces(
        Some(tenant),
        &stacktraces(range, max_nodes),
        Codec::Json,
    )?;
    Ok(flame::leaf_names(&flame::checked_nodes(&fg, tenant)))
}

/// Asserts that `err` is a 4xx Connect error with `status` and `code` whose
/// message holds every one of `needles`.
fn assert_refused(err: &ConnectError, status: u16, code: &str, needles: &[&str]) {
    err.assert_actionable_4xx(&err.message);
    assert_eq!((err.status, err.code.as_str()), (status, code), "{err}");
    for needle in needles {
        assert!(
            err.message.contains(needle),
            "{needle:?} missing from {err}"
        );
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn each_query_limit_refuses_with_its_name_and_overrides_apply_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "ember.yaml", OVERRIDES.as_bytes());
    let config_flag = format!("-config.file={}", config.display());
    let ember = EmberProcess::start(&[
        MULTITENANCY,
        "-limits.max-query-length=2h",
        "-limits.max-flamegraph-nodes-max=100",
        "-limits.max-concurrent-queries=32",
        &config_flag,
    ]);
    let client = ember.client();
    let now = now_nanos();
    let now_ms = now / 1_000_000;
    for tenant in ["t", "wide", "recent", "hurried", "single"] {
        push(&client, tenant, now - 2 * HOUR * 1_000_000, "old");
        push(&client, tenant, now, "new");
    }
    let recent = TimeRange::new(now_ms - 10 * MINUTE, now_ms + MINUTE);
    let three_hours = TimeRange::new(now_ms - 3 * HOUR, now_ms + MINUTE);

    // Inside the limits: the data.
    assert_eq!(leaves(&client, "t", recent, None).unwrap(), set(&["new"]));
    let older = TimeRange::new(now_ms - 2 * HOUR - 5 * MINUTE, now_ms - HOUR);
    assert_eq!(
        leaves(&client, "t", older, Some(100)).unwrap(),
        set(&["old"])
    );

    // max_query_length: 400 naming it and its value, over each RPC with a range.
    let err = leaves(&client, "t", three_hours, None).unwrap_err();
    assert_refused(
        &err,
        400,
        "invalid_argument",
        &["\"t\"", "limits.max_query_length", "2h", "3h1m"],
    );
    for (method, body) in [
        (
            "SelectSeries",
            json!({"profileTypeID": CPU, "labelSelector": SELECTOR, "start": three_hours.start.to_string(), "end": three_hours.end.to_string(), "step": 60.0}),
        ),
        (
            "LabelNames",
            json!({"start": three_hours.start.to_string(), "end": three_hours.end.to_string()}),
        ),
        (
            "SelectMergeProfile",
            json!({"profileTypeID": CPU, "labelSelector": SELECTOR, "start": three_hours.start.to_string(), "end": three_hours.end.to_string()}),
        ),
    ] {
        let (status, answer) = client.connect_json(Some("t"), &querier_path(method), &body);
        assert_eq!(status, 400, "{method}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("limits.max_query_length"),
            "{method}: {answer}"
        );
    }
    // The legacy render path applies it too.
    let query = format!(
        "/pyroscope/render?query={CPU}%7Bservice_name%3D%22limited%22%7D&from=now-3h&until=now"
    );
    let render = client.request("GET", &query, &[("X-Scope-OrgID", "t")], None);
    let err = render.connect_error().expect("a 3h render is refused");
    assert_refused(
        &err,
        400,
        "invalid_argument",
        &["limits.max_query_length", "2h"],
    );
    // The override is that tenant's only.
    assert_eq!(
        leaves(&client, "wide", three_hours, None).unwrap(),
        set(&["new", "old"])
    );
    let render = client.request("GET", &query, &[("X-Scope-OrgID", "wide")], None);
    assert_eq!(render.status, 200, "{}", render.text());

    // max_flamegraph_nodes_max: 400 naming it; the default applies when none is asked.
    let err = leaves(&client, "t", recent, Some(101)).unwrap_err();
    assert_refused(
        &err,
        400,
        "invalid_argument",
        &["limits.max_flamegraph_nodes_max", "100", "101"],
    );
    let err = leaves(&client, "t", recent, Some(-1)).unwrap_err();
    assert_refused(
        &err,
        400,
        "invalid_argument",
        &["limits.max_flamegraph_nodes_max"],
    );
    let diff = DiffRequest {
        left: Some(stacktraces(recent, Some(500))),
        right: Some(stacktraces(recent, None)),
    };
    let err = client
        .call::<_, ember_proto::querier::v1::DiffResponse>(
            Some("t"),
            &querier_path("Diff"),
            &diff,
            Codec::Json,
        )
        .unwrap_err();
    assert_refused(
        &err,
        400,
        "invalid_argument",
        &["limits.max_flamegraph_nodes_max", "500"],
    );
    assert_eq!(
        leaves(&client, "wide", recent, Some(5000)).unwrap(),
        set(&["new"])
    );

    // max_query_lookback: the start is clamped, older ranges answer empty.
    assert_eq!(
        leaves(&client, "recent", three_hours, None).unwrap(),
        set(&["new"])
    );
    assert_eq!(
        leaves(&client, "recent", older, None).unwrap(),
        BTreeSet::new()
    );
    assert_eq!(leaves(&client, "t", older, None).unwrap(), set(&["old"]));

    // query_timeout: 408 deadline_exceeded naming it; others are not stopped.
    let err = (0..20)
        .find_map(|_| leaves(&client, "hurried", recent, None).err())
        .expect("a query with a timeout of 1ns must time out");
    assert_refused(
        &err,
        408,
        "deadline_exceeded",
        &["\"hurried\"", "limits.query_timeout", "1ns"],
    );

    // max_concurrent_queries: one more than the limit at once is a 429.
    let refusals = concurrent_refusals(&client, "single", recent);
    let err = refusals
        .first()
        .expect("16 queries at once, 10 times, must meet a limit of 1");
    assert_refused(
        err,
        429,
        "resource_exhausted",
        &["\"single\"", "limits.max_concurrent_queries", "limit of 1"],
    );
    // Tenant "t" has 32 places: 16 at once all answer.
    assert!(concurrent_refusals(&client, "t", recent).is_empty());

    // Grafana's health check still answers.
    let (status, answer) = client.connect_json(
        Some("recent"),
        &querier_path("ProfileTypes"),
        &json!({"start": 1000, "end": 4000}),
    );
    assert_eq!(status, 200, "{answer}");
}

/// Runs 16 flame-graph queries of `tenant` at once, up to 10 times until one
/// is refused, and returns the refusals; panics on any other failure.
fn concurrent_refusals(client: &Client, tenant: &str, range: TimeRange) -> Vec<ConnectError> {
    const AT_ONCE: usize = 16;
    for _ in 0..10 {
        let barrier = Arc::new(Barrier::new(AT_ONCE));
        let threads: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let (client, barrier, tenant) =
                    (client.clone(), barrier.clone(), tenant.to_owned());
                std::thread::spawn(move || {
                    barrier.wait();
                    leaves(&client, &tenant, range, None)
                })
            })
            .collect();
        let mut refused = Vec::new();
        for thread in threads {
            match thread.join().unwrap() {
                Ok(leaves) => assert_eq!(leaves, set(&["new"]), "{tenant}"),
                Err(err) if err.status == 429 => refused.push(err),
                Err(err) => panic!("{tenant}: {err}"),
            }
        }
        if !refused.is_empty() {
            return refused;
        }
    }
    Vec::new()
}
