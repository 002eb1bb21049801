//! Acceptance: push, stop with SIGTERM, start again on the same storage: the same
//! queries give the same answers, now read from the Parquet blocks in object
//! storage; and a block opened with the `parquet` crate has the schema and row
//! counts DESIGN.md §3 describes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ember_proto::querier::v1::SelectSeriesRequest;
use ember_tests::block::{self, layout};
use ember_tests::checks::{service_selector, the_type_with_data};
use ember_tests::{
    Client, Codec, EmberProcess, MULTITENANCY, TimeRange, flame, now_nanos, pprof, testdata,
};

const TENANT: &str = "durable";
const SEC: i64 = 1_000_000_000;

type Tree = BTreeMap<Vec<String>, (i64, i64)>;
type SeriesPoints = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;

/// Everything the query API says about the tenant, in a form that does not
/// depend on incidental ordering.
#[derive(Debug, PartialEq)]
struct Answers {
    profile_types: BTreeSet<String>,
    label_names: BTreeSet<String>,
    services: BTreeSet<String>,
    series: BTreeSet<Vec<(String, String)>>,
    /// (service, profile type) → (total, tree) for every pair with data.
    flame_graphs: BTreeMap<(String, String), (i64, Tree)>,
    /// (service, profile type) → sum of `SelectMergeProfile`'s values.
    merged_totals: BTreeMap<(String, String), i64>,
    /// (service, profile type) → `SelectSeries` points (value as f64 bits).
    select_series: BTreeMap<(String, String), SeriesPoints>,
}

fn sorted_labels(labels: &[ember_proto::types::v1::LabelPair]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    v.sort();
    v
}

fn answers(client: &Client, tenant: &str, range: TimeRange) -> Answers {
    let t = Some(tenant);
    let profile_types: BTreeSet<String> = client
        .profile_types(t, range)
        .into_iter()
        .map(|p| p.id)
        .collect();
    let services: BTreeSet<String> = client
        .label_values(t, "service_name", &[], range)
        .into_iter()
        .collect();
    let mut a = Answers {
        label_names: client.label_names(t, &[], range).into_iter().collect(),
        series: client
            .series(t, &[], &[], range)
            .iter()
            .map(|l| sorted_labels(&l.labels))
            .collect(),
        flame_graphs: BTreeMap::new(),
        merged_totals: BTreeMap::new(),
        select_series: BTreeMap::new(),
        profile_types,
        services,
    };
    for service in &a.services {
        let selector = service_selector(service);
        for id in &a.profile_types {
            let fg = client.flame_graph(t, id, &selector, range, Some(1 << 20), Codec::Proto);
            if fg.total == 0 {
                continue;
            }
            let nodes = flame::checked_nodes(&fg, &format!("{service} {id}"));
            let key = (service.clone(), id.clone());
            a.flame_graphs
                .insert(key.clone(), (fg.total, flame::tree(&nodes)));
            let (_, merged) = client.select_merge_profile(t, id, &selector, range);
            let total = merged
                .sample
                .iter()
                .map(|s| s.value.iter().sum::<i64>())
                .sum();
            a.merged_totals.insert(key.clone(), total);
            let req = SelectSeriesRequest {
                profile_type_id: id.clone(),
                label_selector: selector.clone(),
                start: range.start,
                end: range.end,
                group_by: vec!["service_name".into()],
                step: 60.0,
                ..Default::default()
            };
            let series = client
                .select_series(t, &req)
                .unwrap_or_else(|e| panic!("SelectSeries {service} {id}: {e}"));
            let mut points: SeriesPoints = series
                .iter()
                .map(|s| {
                    (
                        sorted_labels(&s.labels),
                        s.points
                            .iter()
                            .map(|p| (p.timestamp, p.value.to_bits()))
                            .collect(),
                    )
                })
                .collect();
            points.sort();
            a.select_series.insert(key, points);
        }
    }
    a
}

/// Files pushed by the restart test: (file, service, age in seconds).
const RESTART_PUSHES: &[(&str, &str, i64)] = &[
    ("cpu.pb.gz", "api", 600),
    ("go.cpu.labels.pprof", "api", 300),
    ("heap.pb.gz", "store", 300),
    ("req_3.pprof", "locks", 0),
    ("profile_python", "py", 0),
];

#[test]
fn answers_survive_sigterm_and_restart_from_blocks() {
    let mut ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 3_600_000);
    let mut expected_cpu_sum = 0;
    for (file, service, age) in RESTART_PUSHES {
        let raw = testdata::read(file);
        let profile = pprof::decode(&raw).unwrap();
        if *service == "api" {
            expected_cpu_sum += pprof::expectations(&profile)
                .iter()
                .find(|e| e.sample_type == "cpu")
                .unwrap()
                .sum;
        }
        let mut labels = vec![("service_name", *service), ("__delta__", "false")];
        if pprof::period_type(&profile).0.is_empty() {
            labels.push(("__name__", "process_cpu"));
        }
        client.push_pprof(
            Some(TENANT),
            &labels,
            &pprof::with_time_nanos(&raw, now - age * SEC),
        );
    }
    let (cpu_id, fg) = the_type_with_data(
        &client,
        Some(TENANT),
        range,
        &service_selector("api"),
        "cpu",
        "nanoseconds",
    );
    assert_eq!(fg.total, expected_cpu_sum, "api's two CPU profiles merge");
    // Wait for every pushed service to be visible before taking the answers.
    for (_, service, _) in RESTART_PUSHES {
        ember_tests::eventually(
            &format!("{service} is listed"),
            std::time::Duration::from_secs(20),
            || {
                let v = client.label_values(Some(TENANT), "service_name", &[], range);
                if v.iter().any(|s| s == service) {
                    Ok(())
                } else {
                    Err(format!("{v:?}"))
                }
            },
        );
    }
    let before = answers(&client, TENANT, range);
    assert_eq!(
        before.services,
        ["api", "locks", "py", "store"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "services before the restart"
    );
    // cpu+samples (api), 4 memory types (store), 2 mutex types (locks), samples (py).
    let pushed_types = 2 + 4 + 2 + 1;
    assert!(
        before.flame_graphs.len() >= pushed_types,
        "expected flame graphs for every pushed type: {:?}",
        before.flame_graphs.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        before.flame_graphs[&("api".to_string(), cpu_id.clone())].0,
        expected_cpu_sum
    );
    for (key, (total, _)) in &before.flame_graphs {
        assert_eq!(
            before.merged_totals[key], *total,
            "{key:?}: SelectMergeProfile and SelectMergeStacktraces disagree"
        );
    }

    ember.stop();
    let blocks = block::block_dirs(ember.data_dir(), TENANT);
    assert!(
        !blocks.is_empty(),
        "no block under {}/{TENANT}/{} after SIGTERM; the store holds:\n{}",
        ember.data_dir().display(),
        layout::BLOCKS_DIR,
        block::list_files(ember.data_dir())
    );
    for dir in &blocks {
        for f in [layout::META, layout::PROFILES] {
            assert!(
                dir.join(f).is_file(),
                "{} lacks {f}; the store holds:\n{}",
                dir.display(),
                block::list_files(ember.data_dir())
            );
        }
    }

    ember.restart();
    let client = ember.client();
    let after = answers(&client, TENANT, range);
    assert_eq!(before, after, "answers changed across SIGTERM and restart");
    assert!(
        client.profile_types(Some("someone-else"), range).is_empty(),
        "another tenant sees the restored data"
    );
    ember.stop();
}

/// The profiles table holds one row per (series, timestamp), sorted by series
/// then time, each row's total the sum of its values; the series it references
/// exist; `meta.json` carries a version and agrees with the tables.
#[test]
fn block_parquet_schema_and_row_counts() {
    let mut ember = EmberProcess::start(&[]);
    let client = ember.client();
    let t0 = now_nanos() - 60 * SEC;
    // (file, service, timestamps): two profiles of the same series at different times.
    let pushes: &[(&str, &str, &[i64])] = &[
        ("cpu.pb.gz", "parquet-cpu", &[t0, t0 + 10 * SEC]),
        ("profile_rust", "parquet-rust", &[t0]),
        ("req_3.pprof", "parquet-mutex", &[t0 + 5 * SEC]),
    ];
    let mut expected_rows = 0;
    let mut expected_series = 0;
    let mut expected_total: i128 = 0;
    let mut times = BTreeSet::new();
    for (file, service, timestamps) in pushes {
        let raw = testdata::read(file);
        let profile = pprof::decode(&raw).unwrap();
        assert_eq!(
            pprof::sample_label_sets(&profile),
            BTreeSet::from([vec![]]),
            "{file} was chosen for having no pprof labels (one series per sample type)"
        );
        let exps = pprof::expectations(&profile);
        assert!(
            exps.iter().all(|e| e.sum != 0),
            "{file}: every type has data"
        );
        expected_series += exps.len();
        for &t in *timestamps {
            client.push_pprof(
                None,
                &[("service_name", service), ("__delta__", "false")],
                &pprof::with_time_nanos(&raw, t),
            );
            expected_rows += exps.len();
            expected_total += exps.iter().map(|e| i128::from(e.sum)).sum::<i128>();
            times.insert(i128::from(t));
        }
    }
    let range = TimeRange::around_nanos(t0, 600_000);
    the_type_with_data(
        &client,
        None,
        range,
        &service_selector("parquet-mutex"),
        "delay",
        "nanoseconds",
    );
    ember.stop();

    // Multi-tenancy is off: everything belongs to tenant "anonymous".
    let blocks = block::block_dirs(ember.data_dir(), "anonymous");
    assert!(
        !blocks.is_empty(),
        "no block for tenant anonymous; the store holds:\n{}",
        block::list_files(ember.data_dir())
    );
    let mut rows_total = 0usize;
    let mut series_total = 0i64;
    let mut value_total: i128 = 0;
    let mut seen_times = BTreeSet::new();
    for dir in &blocks {
        check_block(
            dir,
            &mut rows_total,
            &mut series_total,
            &mut value_total,
            &mut seen_times,
        );
    }
    assert_eq!(
        rows_total, expected_rows,
        "profile rows: one per (series, timestamp)"
    );
    assert_eq!(value_total, expected_total, "sum of all stored values");
    assert_eq!(seen_times, times, "stored timestamps");
    if blocks.len() == 1 {
        assert_eq!(series_total as usize, expected_series, "series rows");
    } else {
        assert!(
            series_total as usize >= expected_series,
            "series rows over all blocks"
        );
    }
}

fn check_block(
    dir: &Path,
    rows_total: &mut usize,
    series_total: &mut i64,
    value_total: &mut i128,
    seen_times: &mut BTreeSet<i128>,
) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    ulid::Ulid::from_string(&name)
        .unwrap_or_else(|e| panic!("block directory {name:?} is not a ULID: {e}"));
    let profiles = dir.join(layout::PROFILES);
    let series = dir.join(layout::SERIES);
    for f in [&profiles, &series, &dir.join(layout::META)] {
        assert!(f.is_file(), "{} is missing", f.display());
    }
    let others: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| ![layout::META, layout::PROFILES, layout::SERIES].contains(&n.as_str()))
        .collect();
    assert!(
        !others.is_empty(),
        "{name}: the block must hold its symbol tables beside the profiles and series"
    );

    // Schema.
    let columns = block::top_level_columns(&profiles);
    for col in [
        layout::COL_SERIES,
        layout::COL_TIME,
        layout::COL_TOTAL,
        layout::COL_STACKTRACE_IDS,
        layout::COL_VALUES,
    ] {
        assert!(
            columns.iter().any(|c| c == col),
            "{name}/{}: no column {col:?}; columns are {columns:?}",
            layout::PROFILES
        );
    }

    // Rows.
    let rows = block::profile_rows(&profiles);
    assert_eq!(
        rows.len() as i64,
        block::row_count(&profiles),
        "{name}: rows read vs metadata"
    );
    let n_series = block::row_count(&series);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row.stacktrace_ids.len(),
            row.values.len(),
            "{name} row {i}: one value per stack-trace ID"
        );
        assert!(
            !row.values.is_empty(),
            "{name} row {i}: a stored profile has samples"
        );
        assert_eq!(
            row.values.iter().sum::<i128>(),
            row.total,
            "{name} row {i}: total is the sum of values"
        );
        assert!(
            (0..i128::from(n_series)).contains(&row.series),
            "{name} row {i}: series {} outside the {n_series} rows of {}",
            row.series,
            layout::SERIES
        );
        *value_total += row.total;
        seen_times.insert(row.time_nanos);
    }
    let keys: Vec<(i128, i128)> = rows.iter().map(|r| (r.series, r.time_nanos)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{name}: rows are sorted by series, then time");
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        keys.len(),
        "{name}: one row per (series, time)"
    );

    // meta.json.
    let meta = block::meta(dir);
    let version = meta
        .get(layout::META_VERSION)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| {
            panic!(
                "{name}/meta.json has no numeric {:?}: {meta}",
                layout::META_VERSION
            )
        });
    assert!(version >= 1, "{name}: format version {version}");
    assert_eq!(
        meta.get(layout::META_ULID).and_then(|v| v.as_str()),
        Some(name.as_str()),
        "{name}: meta.json names its block"
    );
    let num = |path: &[&str]| {
        block::json_path(&meta, path)
            .and_then(|v| v.as_i64())
            .unwrap_or_else(|| panic!("{name}/meta.json has no number at {path:?}: {meta}"))
    };
    assert_eq!(
        num(layout::META_PROFILES),
        rows.len() as i64,
        "{name}: meta profile count"
    );
    assert_eq!(
        num(layout::META_SERIES),
        n_series,
        "{name}: meta series count"
    );
    let (min, max) = (num(&[layout::META_MIN_TIME]), num(&[layout::META_MAX_TIME]));
    for r in &rows {
        assert!(
            (i128::from(min)..=i128::from(max)).contains(&r.time_nanos),
            "{name}: row time {} outside meta's [{min}, {max}]",
            r.time_nanos
        );
    }

    *rows_total += rows.len();
    *series_total += n_series;
}
