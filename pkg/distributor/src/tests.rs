use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use ember_ingester::{Ingester, IngesterConfig};
use ember_limits::{LimitsOverride, Overrides};
use ember_model::{ingest::labels_of, labels::PROFILE_TYPE};
use ember_proto::error::Code;
use ember_testkit::pprof::{PprofBuilder, gzip};
use ember_time::ManualClock;
use object_store::memory::InMemory;

use super::*;

/// A CPU profile of `samples` samples of 10, each `depth` frames of `main`
/// (strings 1 and 2 are the sample type and unit).
fn cpu(samples: usize, depth: usize) -> Profile {
    let stack = vec!["main"; depth];
    (0..samples)
        .fold(
            PprofBuilder::new(&[("cpu", "nanoseconds")]).time(1_000_000_000, 0),
            |b, _| b.sample(&stack, &[10]),
        )
        .build()
}

fn distributor(limits: impl TenantLimits + 'static) -> (Distributor, Arc<ManualClock>) {
    let (d, clock, _) = distributor_and_ingester(limits);
    (d, clock)
}

fn distributor_and_ingester(
    limits: impl TenantLimits + 'static,
) -> (Distributor, Arc<ManualClock>, Arc<Ingester>) {
    let clock = Arc::new(ManualClock::default());
    let ingester = Arc::new(Ingester::new(
        IngesterConfig::default(),
        Arc::new(InMemory::new()),
        clock.clone(),
    ));
    let d = Distributor::new(ingester.clone(), Arc::new(limits), clock.clone());
    (d, clock, ingester)
}

fn service(name: &str) -> Labels {
    labels_of(&[("service_name", name)])
}

fn refusal(r: Result<()>) -> (u16, String) {
    let s = Status::from(r.expect_err("expected a refusal"));
    (Code::of(&s).http(), s.message().to_owned())
}

#[test]
fn rate_limit_refuses_with_429_per_tenant_and_refills_with_time() {
    let raw = cpu(1, 1).encode_to_vec();
    // Room for exactly three profiles, refilled at one profile per second.
    let per_mb = (1 << 20) as f64;
    let limits = Limits {
        ingestion_rate_mb: raw.len() as f64 / per_mb,
        ingestion_burst_size_mb: 3.0 * raw.len() as f64 / per_mb,
        ..Limits::default()
    };
    let (d, clock) = distributor(limits);
    for _ in 0..3 {
        d.ingest_pprof("a", &service("s"), &raw).unwrap();
    }
    let (status, message) = refusal(d.ingest_pprof("a", &service("s"), &raw));
    assert_eq!(status, 429);
    for needle in [
        "\"a\"",
        "limits.ingestion_rate_mb",
        "limits.ingestion_burst_size_mb",
    ] {
        assert!(message.contains(needle), "{message}");
    }
    d.ingest_pprof("b", &service("s"), &raw)
        .expect("another tenant has its own bucket");
    clock.advance(Duration::from_secs(1));
    d.ingest_pprof("a", &service("s"), &raw)
        .expect("a second later one profile fits again");
    assert!(d.ingest_pprof("a", &service("s"), &raw).is_err());
}

#[test]
fn limits_come_from_the_tenant_and_messages_name_them() {
    let small = LimitsOverride {
        max_samples_per_profile: Some(2),
        max_stack_depth: Some(3),
        max_label_names_per_series: Some(4),
        max_label_name_length: Some(20),
        max_label_value_length: Some(60),
        max_profile_size_bytes: Some(200),
        max_decompressed_profile_size_bytes: Some(1000),
        ..LimitsOverride::default()
    };
    let (d, _) = distributor(Overrides {
        defaults: Limits::default(),
        tenants: [("small".to_string(), small)].into(),
    });
    let ok = cpu(3, 4).encode_to_vec();
    d.ingest_pprof("big", &service("s"), &ok).unwrap();

    let cases: Vec<(Vec<u8>, Labels, u16, &str)> = vec![
        (
            ok.clone(),
            service("s"),
            422,
            "limits.max_samples_per_profile",
        ),
        (
            cpu(1, 4).encode_to_vec(),
            service("s"),
            422,
            "limits.max_stack_depth",
        ),
        (
            cpu(1, 1).encode_to_vec(),
            labels_of(&[("service_name", "s"), ("a", "1"), ("b", "2")]),
            422,
            "limits.max_label_names_per_series",
        ),
        (
            cpu(1, 1).encode_to_vec(),
            labels_of(&[("service_name", "s"), ("a_label_name_too_long", "x")]),
            422,
            "limits.max_label_name_length",
        ),
        (
            cpu(1, 1).encode_to_vec(),
            labels_of(&[("service_name", &"v".repeat(61))]),
            422,
            "limits.max_label_value_length",
        ),
        (
            vec![0; 300],
            service("s"),
            413,
            "limits.max_profile_size_bytes",
        ),
        (
            gzip(&[0; 10_000]),
            service("s"),
            413,
            "limits.max_decompressed_profile_size_bytes",
        ),
    ];
    for (raw, labels, status, key) in cases {
        let (got, message) = refusal(d.ingest_pprof("small", &labels, &raw));
        assert_eq!(got, status, "{key}: {message}");
        assert!(
            message.contains(key) && message.contains("\"small\""),
            "{message}"
        );
    }
}

#[test]
fn active_series_limit_refuses_new_series_only() {
    let limits = Limits {
        max_active_series: 2,
        ..Limits::default()
    };
    let (d, _) = distributor(limits);
    let raw = cpu(1, 1).encode_to_vec();
    d.ingest_pprof("t", &service("one"), &raw).unwrap();
    d.ingest_pprof("t", &service("two"), &raw).unwrap();
    let (status, message) = refusal(d.ingest_pprof("t", &service("three"), &raw));
    assert_eq!(status, 429);
    assert!(
        message.contains("limits.max_active_series") && message.contains("\"t\""),
        "{message}"
    );
    d.ingest_pprof("t", &service("one"), &raw)
        .expect("known series pass");
    d.ingest_pprof("u", &service("three"), &raw)
        .expect("other tenants pass");
}

#[test]
fn delta_false_keeps_cumulative_values() {
    let (d, _, ingester) = distributor_and_ingester(Limits::default());
    let mut p = cpu(1, 1);
    p.string_table[1] = "alloc_space".into();
    p.string_table[2] = "bytes".into();
    let raw = p.encode_to_vec();
    let total = |tenant: &str| {
        let mut v = Visitor(0);
        ingester.with_heads(tenant, &mut |view| {
            let selected = vec![true; view.series().len()];
            view.scan(&selected, i64::MIN, i64::MAX, false, &mut v)
                .unwrap();
        });
        v.0
    };
    d.ingest_pprof("delta", &service("s"), &raw).unwrap();
    d.ingest_pprof("delta", &service("s"), &raw).unwrap();
    assert_eq!(total("delta"), 0, "a baseline, then no growth");
    let raw_labels = labels_of(&[("service_name", "s"), ("__delta__", "false")]);
    d.ingest_pprof("raw", &raw_labels, &raw).unwrap();
    d.ingest_pprof("raw", &raw_labels, &raw).unwrap();
    assert_eq!(total("raw"), 20);
}

struct Visitor(i64);

impl ember_block::ProfileVisitor for Visitor {
    fn visit(
        &mut self,
        _id: u128,
        _series: u32,
        _time: i64,
        total: i64,
        _samples: Option<(&[u32], &[i64])>,
    ) {
        self.0 += total;
    }
}

#[tokio::test]
async fn pushes_and_refusals_are_counted_by_tenant_type_and_reason() {
    let metrics = DistributorMetrics::register(&prometheus::Registry::new()).unwrap();
    let limits = Limits {
        max_samples_per_profile: 3,
        ..Limits::default()
    };
    let d = distributor(limits).0.with_metrics(metrics.clone());
    let raw = gzip(&cpu(2, 1).encode_to_vec());
    let labels = |name: &str| {
        vec![
            ember_proto::types::v1::LabelPair {
                name: "service_name".into(),
                value: "s".into(),
            },
            ember_proto::types::v1::LabelPair {
                name: METRIC_NAME.into(),
                value: name.into(),
            },
        ]
    };
    let push = |raw: Vec<u8>| {
        let mut request = Request::new(PushRequest {
            series: vec![ember_proto::push::v1::RawProfileSeries {
                labels: labels("process_cpu"),
                samples: vec![ember_proto::push::v1::RawSample {
                    raw_profile: raw,
                    id: String::new(),
                }],
                ..Default::default()
            }],
        });
        request.extensions_mut().insert(Tenant("t".into()));
        request
    };
    d.push(push(raw.clone())).await.unwrap();
    d.push(push(raw.clone())).await.unwrap();
    assert!(d.push(push(b"not a profile".to_vec())).await.is_err());
    assert!(
        d.push(push(gzip(&cpu(5, 1).encode_to_vec())))
            .await
            .is_err()
    );

    let get = |c: &prometheus::IntCounterVec| c.with_label_values(&["t", "process_cpu"]).get();
    // The refused 5-sample profile decoded, so it was received too.
    assert_eq!(get(&metrics.received_profiles), 3);
    assert_eq!(get(&metrics.received_samples), 2 + 2 + 5);
    let compressed = get(&metrics.received_compressed_bytes);
    assert!(compressed >= 2 * raw.len() as u64);
    assert!(get(&metrics.received_decompressed_bytes) > 0);
    let rejected = |reason: &str, status: &str| {
        metrics
            .rejected_profiles
            .with_label_values(&["t", reason, status])
            .get()
    };
    assert_eq!(rejected("invalid_profile", "400"), 1);
    assert_eq!(rejected("max_samples_per_profile", "422"), 1);
}

/// Every tenant type's total and flame graph over the heads of `ingester`.
fn heads(ingester: &Ingester) -> BTreeMap<String, String> {
    let mut types = BTreeSet::new();
    ingester.with_heads("t", &mut |v| {
        types.extend(
            v.series()
                .iter()
                .filter_map(|s| s.labels.get(PROFILE_TYPE).map(str::to_owned)),
        )
    });
    let mut out = BTreeMap::new();
    for t in types {
        let plan = ember_query::Plan::new(Some(t.clone()), Vec::new(), i64::MIN, i64::MAX);
        let mut tree = ember_model::flamegraph::FunctionTree::new();
        ingester.with_heads("t", &mut |v| {
            ember_query::merge_tree(v, &plan, &mut tree).unwrap()
        });
        out.insert(t, format!("{} {:?}", tree.total(), tree.to_flamegraph(0)));
    }
    out
}

/// The write-ahead log replays what the head held, whether a push was
/// logged as it came (its decompressed bytes, which the replay validates
/// again) or encoded again after deltas changed it: every shared profile,
/// pushed twice so that cumulative types log a delta too.
#[tokio::test]
async fn the_log_replays_each_push_as_the_head_held_it() {
    let wal = tempfile::tempdir().unwrap();
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::default());
    let open = || {
        Ingester::open(
            IngesterConfig::default(),
            store.clone(),
            clock.clone(),
            wal.path(),
        )
    };
    let ingester = Arc::new(open().await.unwrap());
    let limits = Limits {
        max_samples_per_profile: 0,
        max_stack_depth: 0,
        ..Limits::default()
    };
    let d = Distributor::new(ingester.clone(), Arc::new(limits), clock.clone());
    let names = ember_testkit::testdata::valid_profiles();
    for (i, name) in names.iter().enumerate() {
        let raw = ember_testkit::testdata::read(name);
        for _ in 0..2 {
            d.ingest_pprof("t", &service(&format!("s{i}")), &raw)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            clock.advance(Duration::from_secs(15));
        }
    }
    let before = heads(&ingester);
    assert!(
        before.keys().any(|t| t.starts_with("memory:alloc")),
        "{:?}",
        before.keys()
    );
    drop((d, ingester));
    assert_eq!(heads(&open().await.unwrap()), before);
}
