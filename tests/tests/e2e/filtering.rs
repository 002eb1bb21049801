//! Acceptance: label selectors (`=`, `!=`, `=~`, `!~`), time ranges and tenants
//! filter correctly: a profile outside the range or in another tenant never appears.
//!
//! Each pushed profile has its own leaf function and a power-of-two value, so a
//! flame graph's total names exactly which profiles it merged.

use std::collections::BTreeSet;

use ember_tests::checks::the_type_with_data;
use ember_tests::pprof::PprofBuilder;
use ember_tests::{Codec, EmberProcess, MULTITENANCY, TimeRange, flame, now_nanos};

const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const MIN_MS: i64 = 60_000;

struct Pushed {
    tenant: &'static str,
    env: &'static str,
    leaf: &'static str,
    value: i64,
    age_ns: i64,
}

const PUSHES: &[Pushed] = &[
    Pushed {
        tenant: "team-a",
        env: "prod",
        leaf: "fn_prod",
        value: 1,
        age_ns: 0,
    },
    Pushed {
        tenant: "team-a",
        env: "prod-canary",
        leaf: "fn_canary",
        value: 2,
        age_ns: 0,
    },
    Pushed {
        tenant: "team-a",
        env: "dev",
        leaf: "fn_dev",
        value: 4,
        age_ns: 0,
    },
    Pushed {
        tenant: "team-a",
        env: "staging",
        leaf: "fn_staging",
        value: 8,
        age_ns: 0,
    },
    // Three hours old: outside the default range below.
    Pushed {
        tenant: "team-a",
        env: "prod",
        leaf: "fn_prod_old",
        value: 16,
        age_ns: 3 * HOUR_NS,
    },
    // Another tenant, same service and labels, plus a label value of its own.
    Pushed {
        tenant: "team-b",
        env: "prod",
        leaf: "fn_team_b",
        value: 32,
        age_ns: 0,
    },
    Pushed {
        tenant: "team-b",
        env: "b-only",
        leaf: "fn_team_b_only",
        value: 64,
        age_ns: 0,
    },
];

const SERVICE: &str = "checkout";

fn push_all(client: &ember_tests::Client, now: i64) {
    for p in PUSHES {
        let profile = PprofBuilder::new(&[("cpu", "nanoseconds")])
            .period_type("cpu", "nanoseconds", 1)
            .time(now - p.age_ns, 1_000_000_000)
            .sample(&["main", "handler", p.leaf], &[p.value])
            .encode();
        client.push_pprof(
            Some(p.tenant),
            &[("service_name", SERVICE), ("env", p.env), ("region", "eu")],
            &profile,
        );
    }
}

/// Returns (total, leaves) of the flame graph for `selector` over `range`.
fn query(
    client: &ember_tests::Client,
    tenant: &str,
    id: &str,
    selector: &str,
    range: TimeRange,
    codec: Codec,
) -> (i64, BTreeSet<String>) {
    let fg = client.flame_graph(Some(tenant), id, selector, range, None, codec);
    let nodes = flame::checked_nodes(&fg, &format!("{tenant} {selector}"));
    (fg.total, flame::leaf_names(&nodes))
}

fn leaves(values: i64) -> BTreeSet<String> {
    PUSHES
        .iter()
        .filter(|p| values & p.value != 0)
        .map(|p| p.leaf.to_string())
        .collect()
}

#[test]
fn selectors_time_ranges_and_tenants_filter() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    push_all(&client, now);
    let now_ms = now / 1_000_000;
    let recent = TimeRange::new(now_ms - 30 * MIN_MS, now_ms + 30 * MIN_MS);
    let (id, _) = the_type_with_data(
        &client,
        Some("team-a"),
        recent,
        &format!("{{service_name=\"{SERVICE}\"}}"),
        "cpu",
        "nanoseconds",
    );

    let cases: &[(&str, &str, TimeRange, i64)] = &[
        // Tenant team-a, recent: 1 + 2 + 4 + 8.
        ("team-a", r#"{service_name="checkout"}"#, recent, 15),
        (
            "team-a",
            r#"{service_name="checkout",env="prod"}"#,
            recent,
            1,
        ),
        (
            "team-a",
            r#"{service_name="checkout",env!="prod"}"#,
            recent,
            14,
        ),
        (
            "team-a",
            r#"{service_name="checkout",env=~"prod.*"}"#,
            recent,
            3,
        ),
        (
            "team-a",
            r#"{service_name="checkout",env!~"prod.*"}"#,
            recent,
            12,
        ),
        (
            "team-a",
            r#"{service_name="checkout",env=~"dev|staging"}"#,
            recent,
            12,
        ),
        // Regex matchers are anchored, as in PromQL: "rod" matches nothing.
        (
            "team-a",
            r#"{service_name="checkout",env=~"rod"}"#,
            recent,
            0,
        ),
        (
            "team-a",
            r#"{service_name="checkout",env="prod",region="eu"}"#,
            recent,
            1,
        ),
        (
            "team-a",
            r#"{service_name="checkout",region="us"}"#,
            recent,
            0,
        ),
        ("team-a", r#"{service_name="other"}"#, recent, 0),
        ("team-a", r#"{service_name=~"check.*"}"#, recent, 15),
        // The old profile appears only when the range covers it.
        (
            "team-a",
            r#"{service_name="checkout",env="prod"}"#,
            TimeRange::new(now_ms - 4 * 60 * MIN_MS, now_ms + 30 * MIN_MS),
            17,
        ),
        (
            "team-a",
            r#"{service_name="checkout"}"#,
            TimeRange::new(now_ms - 4 * 60 * MIN_MS, now_ms - 2 * 60 * MIN_MS),
            16,
        ),
        // A range that ends before the recent ones and starts after the old one.
        (
            "team-a",
            r#"{service_name="checkout"}"#,
            TimeRange::new(now_ms - 2 * 60 * MIN_MS, now_ms - 30 * MIN_MS),
            0,
        ),
        // A range in the future.
        (
            "team-a",
            r#"{service_name="checkout"}"#,
            TimeRange::new(now_ms + 30 * MIN_MS, now_ms + 90 * MIN_MS),
            0,
        ),
        // Tenant team-b sees only its own.
        ("team-b", r#"{service_name="checkout"}"#, recent, 96),
        (
            "team-b",
            r#"{service_name="checkout",env="prod"}"#,
            recent,
            32,
        ),
        (
            "team-b",
            r#"{service_name="checkout"}"#,
            TimeRange::new(now_ms - 4 * 60 * MIN_MS, now_ms + 30 * MIN_MS),
            96,
        ),
        // A tenant with no data sees nothing.
        ("team-c", r#"{service_name="checkout"}"#, recent, 0),
    ];
    let mut failures = Vec::new();
    for (i, (tenant, selector, range, want)) in cases.iter().enumerate() {
        let codec = Codec::alternate(i);
        let (total, got_leaves) = query(&client, tenant, &id, selector, *range, codec);
        if total != *want || got_leaves != leaves(*want) {
            failures.push(format!(
                "{tenant} {selector} [{}, {}] ({codec:?}): total {total}, leaves {got_leaves:?}; \
                 expected total {want}, leaves {:?}",
                range.start,
                range.end,
                leaves(*want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "filtering is wrong:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn label_apis_and_profile_types_stay_within_a_tenant() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    push_all(&client, now);
    let now_ms = now / 1_000_000;
    let recent = TimeRange::new(now_ms - 30 * MIN_MS, now_ms + 30 * MIN_MS);
    let all_time = TimeRange::new(now_ms - 4 * 60 * MIN_MS, now_ms + 30 * MIN_MS);
    let selector = r#"{service_name="checkout"}"#;
    // Wait until team-a's data is visible.
    the_type_with_data(
        &client,
        Some("team-a"),
        recent,
        selector,
        "cpu",
        "nanoseconds",
    );

    let envs = |tenant: &str, range: TimeRange| -> BTreeSet<String> {
        client
            .label_values(Some(tenant), "env", &[selector], range)
            .into_iter()
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        envs("team-a", all_time),
        set(&["dev", "prod", "prod-canary", "staging"]),
        "team-a's env values"
    );
    assert_eq!(
        envs("team-b", all_time),
        set(&["b-only", "prod"]),
        "team-b's env values"
    );
    assert!(
        envs("team-c", all_time).is_empty(),
        "team-c has no env values"
    );

    let names: BTreeSet<String> = client
        .label_names(Some("team-a"), &[selector], recent)
        .into_iter()
        .collect();
    for label in ["service_name", "env", "region"] {
        assert!(names.contains(label), "LabelNames lacks {label}: {names:?}");
    }
    let names_c = client.label_names(Some("team-c"), &[], recent);
    assert!(
        !names_c
            .iter()
            .any(|n| ["service_name", "env", "region"].contains(&n.as_str())),
        "team-c must see no labels of other tenants: {names_c:?}"
    );

    let series = client.series(Some("team-b"), &[selector], &[], recent);
    let series_envs: BTreeSet<String> = series
        .iter()
        .flat_map(|l| l.labels.iter())
        .filter(|l| l.name == "env")
        .map(|l| l.value.clone())
        .collect();
    assert_eq!(
        series_envs,
        set(&["b-only", "prod"]),
        "team-b's Series: {series:?}"
    );

    assert!(
        client.profile_types(Some("team-c"), recent).is_empty(),
        "a tenant with no data has no profile types"
    );
    assert!(
        !client.profile_types(Some("team-b"), recent).is_empty(),
        "team-b has profile types"
    );
}
