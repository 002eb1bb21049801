//! Acceptance: a real Python program using the `pyroscope-io` SDK (PyPI) pushes
//! to a running `ember`; its busiest function appears in its service's flame graph.
//!
//! The SDK (1.x) sends `POST /push.v1.PusherService/Push` with
//! `Content-Type: application/proto`, `Content-Encoding: gzip`, the tenant in
//! `X-Scope-OrgID`, labels `service_name`, `__name__=process_cpu` and the tags,
//! and an uncompressed pprof of `cpu/nanoseconds` samples.

use std::process::Command;
use std::time::Duration;

use ember_tests::checks::{service_selector, the_type_with_data};
use ember_tests::process::run_logged;
use ember_tests::{
    EmberProcess, MULTITENANCY, TimeRange, flame, now_nanos, skip_or_fail_missing_tool, testdata,
};

const TENANT: &str = "python-sdk";

#[test]
fn python_sdk_profile_shows_its_busiest_function() {
    let Some(python) = ember_tests::python_with_sdk() else {
        skip_or_fail_missing_tool(
            "the pyroscope-io Python SDK",
            "pip install pyroscope-io (or run scripts/test.sh, which sets EMBER_PYTHON)",
        );
        return;
    };
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let app = "ember-python-acceptance";
    let started = now_nanos();
    let script = testdata::workspace_root().join("tests/python/busy_app.py");

    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("python.log");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args([
            "--server",
            &ember.base_url(),
            "--app",
            app,
            "--tenant",
            TENANT,
        ])
        .args(["--seconds", "4"]);
    let python_log = run_logged(
        command,
        "the Python program",
        &log_path,
        Duration::from_secs(90),
    );

    let range = TimeRange::new(
        started / 1_000_000 - 60_000,
        now_nanos() / 1_000_000 + 60_000,
    );
    let selector = service_selector(app);
    let (id, fg) = the_type_with_data(
        &client,
        Some(TENANT),
        range,
        &selector,
        "cpu",
        "nanoseconds",
    );
    let nodes = flame::checked_nodes(&fg, &id);
    let busiest = nodes
        .iter()
        .filter(|n| n.level > 0)
        .max_by_key(|n| n.self_value)
        .unwrap_or_else(|| panic!("{id}: empty flame graph for {app}"));
    assert!(
        busiest.name.contains("ember_hot_loop"),
        "{id}: the busiest function should be ember_hot_loop, got {:?} (self {} of {}); \
         leaves: {:?}\npython log:\n{python_log}",
        busiest.name,
        busiest.self_value,
        fg.total,
        flame::leaf_names(&nodes)
    );
    // The SDK's samples are 10 ms of CPU each at 100 Hz: four seconds of work
    // give far more than one sample.
    assert!(
        fg.total >= 500_000_000,
        "{id}: only {} ns of CPU recorded for a 4 s busy loop",
        fg.total
    );
    // Another tenant sees nothing of it.
    let other = client.profile_types(Some("someone-else"), range);
    assert!(other.is_empty(), "another tenant sees {other:?}");
}
