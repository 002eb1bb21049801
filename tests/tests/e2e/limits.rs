//! Acceptance: per-tenant limits and delta profiles through the real binary.
//!
//! - a tenant pushing above its ingestion rate gets 429 naming the limit, while
//!   another tenant is unaffected and a tenant with an `overrides` entry in the
//!   config file gets its own, larger limit;
//! - each limit of DESIGN.md §2 refuses its bad input with its status and a
//!   message naming the limit, its value and the tenant; the server keeps
//!   ingesting and earlier data does not change;
//! - consecutive cumulative Go heap profiles are stored as their differences.

use std::collections::BTreeMap;
use std::time::Duration;

use ember_tests::checks::{assert_still_serving, service_selector, the_type_with_data};
use ember_tests::client::{gzip, push_request};
use ember_tests::pprof::{self, PprofBuilder, Symbols};
use ember_tests::process::write_file;
use ember_tests::{
    Client, Codec, EmberProcess, MULTITENANCY, PushEncoding, TimeRange, eventually, now_nanos,
    testdata,
};

/// Pushes `raw` as one series and returns the refusal, if any.
fn try_push(
    client: &Client,
    tenant: &str,
    labels: &[(&str, &str)],
    raw: &[u8],
) -> Option<ember_tests::ConnectError> {
    client
        .push(
            Some(tenant),
            &push_request(labels, raw),
            PushEncoding::PROTO,
        )
        .connect_error()
}

/// A small CPU profile at `time` whose one stack ends in `leaf`.
fn cpu_profile(time: i64, leaf: &str) -> Vec<u8> {
    PprofBuilder::go_cpu()
        .time(time, 10_000_000_000)
        .sample(&["main", leaf], &[1, 10_000_000])
        .encode()
}

#[test]
fn rate_limits_hold_per_tenant_and_overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "ember.yaml",
        b"overrides:\n  generous:\n    ingestion_rate_mb: 50\n    ingestion_burst_size_mb: 50\n",
    );
    let config_flag = format!("-config.file={}", config.display());
    let ember = EmberProcess::start(&[
        MULTITENANCY,
        "-limits.ingestion-rate-mb=0.1",
        "-limits.ingestion-burst-size-mb=0.2",
        &config_flag,
    ]);
    let client = ember.client();
    // ~40 KB per push: a 0.2 MB burst (209,715 bytes) takes five, then 0.1 MB/s.
    let heap = testdata::read("heap.pb.gz");
    assert!(heap.len() > 30_000, "heap.pb.gz is {} bytes", heap.len());
    let labels = [("service_name", "pusher"), ("__delta__", "false")];

    let mut accepted = 0;
    let mut refusal = None;
    for _ in 0..30 {
        match try_push(&client, "greedy", &labels, &heap) {
            None => accepted += 1,
            Some(err) => {
                refusal = Some(err);
                break;
            }
        }
    }
    let err = refusal.expect("30 pushes of 40 KB at 0.1 MB/s must hit the rate limit");
    assert!(
        accepted >= 4,
        "the burst must let the first pushes through, got {accepted}"
    );
    assert_eq!(err.status, 429, "{err}");
    for needle in [
        "\"greedy\"",
        "limits.ingestion_rate_mb",
        "0.1 MB/s",
        "0.2 MB",
    ] {
        assert!(err.message.contains(needle), "{needle} missing from {err}");
    }

    // Another tenant has its own bucket, with the same defaults.
    assert!(
        try_push(&client, "other", &labels, &heap).is_none(),
        "another tenant must be unaffected"
    );
    assert_still_serving(&client, Some("other"));

    // The override from the file takes effect: 30 pushes pass.
    for i in 0..30 {
        if let Some(err) = try_push(&client, "generous", &labels, &heap) {
            panic!("push {i} of the tenant with a 50 MB/s override was refused: {err}");
        }
    }

    // The greedy tenant gets in again once its bucket refills.
    let now = now_nanos();
    eventually(
        "the greedy tenant is admitted again",
        Duration::from_secs(10),
        || match try_push(
            &client,
            "greedy",
            &[("service_name", "later")],
            &cpu_profile(now, "leaf"),
        ) {
            None => Ok(()),
            Some(e) => Err(e.to_string()),
        },
    );
}

/// What is pushed, with which labels and profile, and the expected status,
/// limit key and limit value in the refusal.
type Case<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    &'a str,
    &'a str,
);

#[test]
fn each_limit_refuses_its_bad_input_and_nothing_else_changes() {
    const TENANT: &str = "limits";
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 600_000);

    let kept = cpu_profile(now, "kept_leaf");
    client.push_pprof(Some(TENANT), &[("service_name", "kept")], &kept);
    let (kept_id, before) = the_type_with_data(
        &client,
        Some(TENANT),
        range,
        &service_selector("kept"),
        "cpu",
        "nanoseconds",
    );

    let deep: Vec<String> = (0..2_000).map(|i| format!("frame_{i}")).collect();
    let deep: Vec<&str> = deep.iter().map(String::as_str).collect();
    let deep_stack = PprofBuilder::go_cpu()
        .time(now, 1)
        .sample(&deep, &[1, 1])
        .encode();
    let mut many = PprofBuilder::go_cpu().time(now, 1);
    for _ in 0..16_001 {
        many = many.sample(&["main"], &[1, 1]);
    }
    let many_samples = many.encode();
    let small = cpu_profile(now, "leaf");
    let forty: Vec<(String, String)> = (0..40)
        .map(|i| (format!("label_{i}"), "v".to_string()))
        .collect();
    let mut forty_labels: Vec<(&str, &str)> = forty
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    forty_labels.push(("service_name", "forty"));
    let long_name = "n".repeat(1_025);
    let long_value = "v".repeat(2_049);
    // 80 MiB of zeros gzip to ~80 KB: small on the wire, refused after 64 MiB.
    let bomb = gzip(&vec![0u8; 80 << 20]);
    let huge: Vec<u8> = (0..5u32 << 20).map(|i| (i % 251) as u8).collect();

    let cases: Vec<Case> = vec![
        (
            "gzip bomb",
            vec![("service_name", "bomb")],
            bomb,
            413,
            "limits.max_decompressed_profile_size_bytes",
            "67108864",
        ),
        (
            "5 MiB profile",
            vec![("service_name", "huge")],
            huge,
            413,
            "limits.max_profile_size_bytes",
            "4194304",
        ),
        (
            "2,000-frame stack",
            vec![("service_name", "deep")],
            deep_stack,
            422,
            "limits.max_stack_depth",
            "1000",
        ),
        (
            "16,001 samples",
            vec![("service_name", "many")],
            many_samples,
            422,
            "limits.max_samples_per_profile",
            "16000",
        ),
        (
            "40 labels",
            forty_labels,
            small.clone(),
            422,
            "limits.max_label_names_per_series",
            "30",
        ),
        (
            "1,025-byte label name",
            vec![("service_name", "long-name"), (&long_name, "v")],
            small.clone(),
            422,
            "limits.max_label_name_length",
            "1024",
        ),
        (
            "2,049-byte label value",
            vec![("service_name", "long-value"), ("env", &long_value)],
            small.clone(),
            422,
            "limits.max_label_value_length",
            "2048",
        ),
    ];
    for (what, labels, raw, status, key, value) in cases {
        let err = try_push(&client, TENANT, &labels, &raw)
            .unwrap_or_else(|| panic!("{what}: accepted, expected {status}"));
        err.assert_actionable_4xx(what);
        assert_eq!(err.status, status, "{what}: {err}");
        for needle in [key, value, "\"limits\""] {
            assert!(
                err.message.contains(needle),
                "{what}: {needle} missing from {err}"
            );
        }
        assert_still_serving(&client, Some(TENANT));
    }

    let after = client.flame_graph(
        Some(TENANT),
        &kept_id,
        &service_selector("kept"),
        range,
        None,
        Codec::Json,
    );
    assert_eq!(after, before, "earlier data must not change");
    for service in [
        "bomb",
        "huge",
        "deep",
        "many",
        "forty",
        "long-name",
        "long-value",
    ] {
        let fg = client.flame_graph(
            Some(TENANT),
            &kept_id,
            &service_selector(service),
            range,
            None,
            Codec::Json,
        );
        assert_eq!(
            fg.total, 0,
            "{service}: a refused profile must store nothing"
        );
    }
}

/// Sums of `alloc_space` per stack (function names, root first).
fn alloc_space_by_stack(raw: &[u8]) -> BTreeMap<Vec<String>, i64> {
    let profile = pprof::decode(raw).unwrap();
    let index = pprof::sample_types(&profile)
        .iter()
        .position(|(t, _)| t == "alloc_space")
        .expect("a Go heap profile has alloc_space");
    let symbols = Symbols::new(&profile);
    let mut sums = BTreeMap::new();
    for s in &profile.sample {
        *sums.entry(symbols.stack_root_first(s)).or_default() += s.value[index];
    }
    sums
}

#[test]
fn cumulative_heap_profiles_are_stored_as_deltas() {
    const TENANT: &str = "deltas";
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let dir = "more/parca-many";
    let mut files: Vec<String> = testdata::all_profiles()
        .into_iter()
        .filter(|f| f.starts_with(dir))
        .collect();
    files.sort();
    let raws: Vec<Vec<u8>> = files.iter().map(|f| testdata::read(f)).collect();

    // Precondition: the profiles are cumulative (no stack decreases) and grow.
    let sums: Vec<BTreeMap<Vec<String>, i64>> =
        raws.iter().map(|r| alloc_space_by_stack(r)).collect();
    for w in sums.windows(2) {
        for (stack, v) in &w[0] {
            assert!(
                w[1].get(stack).is_some_and(|n| n >= v),
                "{stack:?} decreased"
            );
        }
    }
    let total = |m: &BTreeMap<Vec<String>, i64>| m.values().sum::<i64>();
    let n = sums.len();
    assert!(
        n >= 3 && total(&sums[n - 1]) > total(&sums[0]),
        "{dir} must hold growing heap profiles: {files:?}"
    );

    let t0 = now_nanos() - 300_000_000_000;
    let times: Vec<i64> = (0..n as i64).map(|i| t0 + i * 10_000_000_000).collect();
    for (service, delta) in [("go-heap", None), ("go-heap-raw", Some("false"))] {
        for (raw, t) in raws.iter().zip(&times) {
            let mut labels = vec![("service_name", service)];
            if let Some(d) = delta {
                labels.push(("__delta__", d));
            }
            client.push_pprof(Some(TENANT), &labels, &pprof::with_time_nanos(raw, *t));
        }
    }
    let at = |i: usize| TimeRange::around_nanos(times[i], 1_000);
    let (id, all) = the_type_with_data(
        &client,
        Some(TENANT),
        TimeRange::around_nanos(t0, 600_000),
        &service_selector("go-heap"),
        "alloc_space",
        "bytes",
    );
    assert_eq!(
        all.total,
        total(&sums[n - 1]) - total(&sums[0]),
        "the deltas add up to the growth since the first profile"
    );
    let stored = |service: &str, i: usize| {
        client
            .flame_graph(
                Some(TENANT),
                &id,
                &service_selector(service),
                at(i),
                None,
                Codec::Json,
            )
            .total
    };
    assert_eq!(
        stored("go-heap", 0),
        0,
        "the first profile is the baseline only"
    );
    for i in 1..n {
        assert_eq!(
            stored("go-heap", i),
            total(&sums[i]) - total(&sums[i - 1]),
            "profile {i}"
        );
        assert_eq!(
            stored("go-heap-raw", i),
            total(&sums[i]),
            "__delta__=\"false\" keeps values"
        );
    }
    // inuse_space is not cumulative: stored as sent.
    let (inuse_id, fg) = the_type_with_data(
        &client,
        Some(TENANT),
        at(0),
        &service_selector("go-heap"),
        "inuse_space",
        "bytes",
    );
    assert!(fg.total > 0, "{inuse_id} of the first profile is stored");
}
