//! Acceptance: `/metrics` of `-target=all` counts what really happened.
//!
//! N real profiles are pushed and M refused (a malformed one: 400
//! `invalid_profile`; one over `limits.max_profile_size_bytes`: 413), a flame
//! graph is queried, and the scrape shows exactly those counts, the querier's
//! request, the open head's contents, and, once the head is cut and flushed,
//! its block in object storage. `promtool check metrics` accepts the scrape.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ember_tests::client::push_request;
use ember_tests::{
    Client, Codec, EmberProcess, MULTITENANCY, PushEncoding, TimeRange, eventually, testdata,
};

const TENANT: &str = "metrics-e2e";
const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// Heads are cut when the wall clock enters a new window of this length.
const BLOCK_SECONDS: u64 = 20;

/// Returns the value of the sample of `name` whose labels include `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| v.parse().ok())
            .flatten()
        })
        .next()
}

/// Returns the value, failing with the scrape when the series is missing.
fn must(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels)
        .unwrap_or_else(|| panic!("no {name} with {labels:?} in the scrape:\n{text}"))
}

fn scrape(client: &Client) -> String {
    let resp = client.get("/metrics");
    assert!(resp.is_success(), "GET /metrics: HTTP {}", resp.status);
    resp.text()
}

/// Sleeps until at least `needed` seconds remain in the current cut window.
fn wait_for_window_with(needed: u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.as_secs_f64() % BLOCK_SECONDS as f64;
    let left = BLOCK_SECONDS as f64 - into;
    if left < needed as f64 {
        std::thread::sleep(Duration::from_secs_f64(left + 0.2));
    }
}

fn try_push(client: &Client, raw: &[u8]) -> Option<ember_tests::ConnectError> {
    client
        .push(
            Some(TENANT),
            &push_request(&[("service_name", "metrics-e2e")], raw),
            PushEncoding::PROTO,
        )
        .connect_error()
}

#[test]
fn metrics_count_pushes_refusals_queries_heads_and_flushes() {
    let cpu = testdata::read("cpu.pb.gz");
    let heap = testdata::read("heap.pb.gz");
    let limit = 8 * 1024;
    assert!(cpu.len() < limit && heap.len() > limit);
    let ember = EmberProcess::start(&[
        MULTITENANCY,
        &format!("-limits.max-profile-size-bytes={limit}"),
        &format!("-ingester.max-block-duration={BLOCK_SECONDS}s"),
        "-ingester.flush-interval=500ms",
    ]);
    let client = ember.client();

    // Everything up to the head checks happens inside one cut window.
    wait_for_window_with(12);
    const N: usize = 5;
    for i in 0..N {
        if let Some(e) = try_push(&client, &cpu) {
            panic!("push {i} of cpu.pb.gz was refused: {e}");
        }
    }
    let malformed = try_push(&client, b"\x1f\x8bthis is not gzip").expect("malformed is refused");
    assert_eq!(malformed.status, 400, "{malformed}");
    let too_large = try_push(&client, &heap).expect("a profile over the size limit is refused");
    assert_eq!(too_large.status, 413, "{too_large}");

    let flame = client.flame_graph(
        Some(TENANT),
        CPU_TYPE,
        "{}",
        TimeRange::new(0, 0),
        None,
        Codec::Proto,
    );
    assert!(!flame.names.is_empty(), "the flame graph is empty");

    let text = scrape(&client);
    let tenant = ("tenant", TENANT);
    assert_eq!(
        must(
            &text,
            "ember_distributor_received_profiles_total",
            &[tenant, ("type", "process_cpu")]
        ),
        N as f64
    );
    assert!(
        must(
            &text,
            "ember_distributor_received_samples_total",
            &[tenant, ("type", "process_cpu")]
        ) > 0.0
    );
    let compressed = must(
        &text,
        "ember_distributor_received_compressed_bytes_total",
        &[tenant, ("type", "process_cpu")],
    );
    assert_eq!(compressed, (N * cpu.len()) as f64);
    assert!(
        must(
            &text,
            "ember_distributor_received_decompressed_bytes_total",
            &[tenant, ("type", "process_cpu")]
        ) > compressed
    );
    let rejected = |reason: &str, status: &str| {
        must(
            &text,
            "ember_distributor_rejected_profiles_total",
            &[tenant, ("reason", reason), ("status", status)],
        )
    };
    assert_eq!(rejected("invalid_profile", "400"), 1.0);
    assert_eq!(rejected("max_profile_size_bytes", "413"), 1.0);
    let all_rejections: f64 = text
        .lines()
        .filter(|l| l.starts_with("ember_distributor_rejected_profiles_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(all_rejections, 2.0, "{text}");

    assert_eq!(
        must(&text, "ember_ingester_ingested_profiles_total", &[]),
        N as f64
    );
    for gauge in [
        "ember_ingester_head_series",
        "ember_ingester_head_profiles",
        "ember_ingester_head_samples",
        "ember_ingester_head_bytes",
    ] {
        assert!(must(&text, gauge, &[]) > 0.0, "{gauge} is 0 before the cut");
    }
    assert_eq!(must(&text, "ember_ingester_head_cuts_total", &[]), 0.0);
    assert!(
        must(
            &text,
            "ember_ingester_wal_append_duration_seconds_count",
            &[]
        ) >= N as f64
    );
    assert!(must(&text, "ember_ingester_wal_written_bytes_total", &[]) > 0.0);
    assert_eq!(
        must(
            &text,
            "ember_querier_request_duration_seconds_count",
            &[("rpc", "SelectMergeStacktraces"), ("status", "ok")]
        ),
        1.0
    );
    assert!(must(&text, "ember_querier_query_profiles_sum", &[]) >= N as f64);
    assert_eq!(
        must(&text, "ember_querier_ingester_failures_total", &[]),
        0.0
    );
    assert_eq!(
        must(&text, "ember_ring_members", &[("state", "ACTIVE")]),
        1.0
    );
    assert_eq!(
        must(&text, "ember_ingester_ring_state", &[("state", "ACTIVE")]),
        1.0
    );
    assert_eq!(must(&text, "ember_build_info", &[("target", "all")]), 1.0);
    assert!(must(&text, "process_resident_memory_bytes", &[]) > 0.0);
    assert_eq!(
        must(
            &text,
            "ember_objstore_operation_failures_total",
            &[("operation", "put")]
        ),
        0.0
    );

    // The next window cuts the head; its block goes to object storage.
    let text = eventually(
        "the head is cut and flushed",
        Duration::from_secs(BLOCK_SECONDS + 20),
        || {
            let text = scrape(&client);
            match value(&text, "ember_ingester_blocks_uploaded_total", &[]) {
                Some(v) if v >= 1.0 => Ok(text),
                other => Err(format!("blocks uploaded: {other:?}")),
            }
        },
    );
    assert_eq!(must(&text, "ember_ingester_head_cuts_total", &[]), 1.0);
    assert_eq!(must(&text, "ember_ingester_head_profiles", &[]), 0.0);
    assert_eq!(must(&text, "ember_ingester_head_bytes", &[]), 0.0);
    assert_eq!(must(&text, "ember_ingester_flush_failures_total", &[]), 0.0);
    assert!(must(&text, "ember_ingester_flushed_bytes_total", &[]) > 0.0);
    assert!(
        must(
            &text,
            "ember_objstore_operations_total",
            &[("operation", "put")]
        ) > 0.0
    );
    assert!(
        must(&text, "ember_objstore_written_bytes_total", &[])
            >= must(&text, "ember_ingester_flushed_bytes_total", &[])
    );

    promtool_accepts(&text);
}

/// Runs `promtool check metrics` on the scrape; skipped outside CI without promtool.
fn promtool_accepts(text: &str) {
    let Some(promtool) = crate::prometheus::promtool() else {
        return;
    };
    if let Err(out) = crate::prometheus::check_metrics(&promtool, text) {
        panic!("promtool check metrics failed:\n{out}");
    }
}
