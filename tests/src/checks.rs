//! Checks shared by several acceptance tests.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ember_proto::querier::v1::FlameGraph;

use crate::client::{Client, Codec, TimeRange};
use crate::pprof::{PprofBuilder, SampleTypeExpectation};
use crate::{eventually, flame, now_nanos};

/// Returns `{service_name="<service>"}`.
pub fn service_selector(service: &str) -> String {
    format!("{{service_name=\"{service}\"}}")
}

/// Returns the IDs that `ProfileTypes` lists for a sample type and unit.
///
/// The profile type's name (`process_cpu`, `memory`...) is derived by the server;
/// matching on sample type and unit keeps the tests from guessing it.
pub fn candidate_type_ids(
    client: &Client,
    tenant: Option<&str>,
    range: TimeRange,
    sample_type: &str,
    sample_unit: &str,
) -> Vec<String> {
    client
        .profile_types(tenant, range)
        .into_iter()
        .filter(|t| t.sample_type == sample_type && t.sample_unit == sample_unit)
        .map(|t| t.id)
        .collect()
}

/// Returns, among `candidates`, the profile type IDs whose flame graph over
/// `selector` holds data (non-zero total or any level), with those graphs.
pub fn ids_with_data(
    client: &Client,
    tenant: Option<&str>,
    range: TimeRange,
    selector: &str,
    candidates: &[String],
    max_nodes: Option<i64>,
    codec: Codec,
) -> Vec<(String, FlameGraph)> {
    candidates
        .iter()
        .filter_map(|id| {
            let fg = client.flame_graph(tenant, id, selector, range, max_nodes, codec);
            (fg.total != 0).then(|| (id.clone(), fg))
        })
        .collect()
}

/// Waits until exactly one profile type with this sample type and unit has data
/// over `selector`, and returns its ID and flame graph.
pub fn the_type_with_data(
    client: &Client,
    tenant: Option<&str>,
    range: TimeRange,
    selector: &str,
    sample_type: &str,
    sample_unit: &str,
) -> (String, FlameGraph) {
    eventually(
        &format!("a {sample_type}/{sample_unit} profile type has data for {selector}"),
        Duration::from_secs(20),
        || {
            let candidates = candidate_type_ids(client, tenant, range, sample_type, sample_unit);
            let mut found = ids_with_data(
                client,
                tenant,
                range,
                selector,
                &candidates,
                None,
                Codec::Json,
            );
            match found.len() {
                1 => Ok(found.remove(0)),
                0 => Err(format!("none of the listed types {candidates:?} has data")),
                _ => Err(format!(
                    "several types have data: {:?}",
                    found.iter().map(|(id, _)| id).collect::<Vec<_>>()
                )),
            }
        },
    )
}

/// Compares a flame graph's leaf names with a profile's, allowing one extra name
/// per unnamed leaf location of the profile (its naming is up to the server).
pub fn compare_leaves(
    expected: &SampleTypeExpectation,
    actual: &BTreeSet<String>,
) -> Result<(), String> {
    let missing: Vec<&String> = expected.leaves.difference(actual).collect();
    let extra: Vec<&String> = actual.difference(&expected.leaves).collect();
    if missing.is_empty() && extra.len() <= expected.unnamed_leaves {
        return Ok(());
    }
    Err(format!(
        "leaf function names differ: {} expected, {} in the flame graph; missing {:?}; unexpected {:?}",
        expected.leaves.len(),
        actual.len(),
        first(&missing, 8),
        first(&extra, 8)
    ))
}

fn first<'a>(v: &[&'a String], n: usize) -> Vec<&'a str> {
    v.iter().take(n).map(|s| s.as_str()).collect()
}

/// Pushes a tiny profile under a fresh service and checks that its flame graph
/// comes back: proof that the server still ingests and answers.
pub fn assert_still_serving(client: &Client, tenant: Option<&str>) {
    static N: AtomicUsize = AtomicUsize::new(0);
    assert!(client.is_ready(), "GET /ready no longer answers 200");
    let service = format!("canary-{}", N.fetch_add(1, Ordering::Relaxed));
    let now = now_nanos();
    let profile = PprofBuilder::go_cpu()
        .time(now, 10_000_000_000)
        .sample(&["canary_main", "canary_leaf"], &[3, 30_000_000])
        .encode();
    client.push_pprof(tenant, &[("service_name", &service)], &profile);
    let range = TimeRange::around_nanos(now, 600_000);
    let selector = service_selector(&service);
    let (id, fg) = the_type_with_data(client, tenant, range, &selector, "cpu", "nanoseconds");
    assert_eq!(fg.total, 30_000_000, "canary flame graph total ({id})");
    let nodes = flame::checked_nodes(&fg, "canary");
    assert_eq!(
        flame::leaf_names(&nodes),
        BTreeSet::from(["canary_leaf".to_string()])
    );
}
