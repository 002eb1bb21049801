//! Acceptance: a real Node.js program using `@pyroscope/nodejs` (npm, pinned in
//! tests/node/package-lock.json) pushes to a running `ember` through
//! `POST /ingest?format=pprof&name=app{..}&spyName=nodespy` with a gzipped
//! pprof body; its hottest function appears in its flame graph under a
//! wall/CPU profile type of its `service_name`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ember_tests::checks::service_selector;
use ember_tests::process::run_logged;
use ember_tests::{
    Codec, EmberProcess, MULTITENANCY, TimeRange, eventually, flame, now_nanos,
    skip_or_fail_missing_tool, testdata,
};

const TENANT: &str = "node-sdk";

/// Returns `node` when it runs and tests/node has its dependencies installed.
fn node_with_sdk(dir: &std::path::Path) -> Option<PathBuf> {
    let node = std::env::var_os("EMBER_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"));
    Command::new(&node)
        .current_dir(dir)
        .args(["-e", "require('@pyroscope/nodejs')"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(node)
}

#[test]
fn node_sdk_profile_shows_its_hot_function() {
    let dir = testdata::workspace_root().join("tests/node");
    let Some(node) = node_with_sdk(&dir) else {
        skip_or_fail_missing_tool(
            "Node.js with @pyroscope/nodejs",
            "apt-get install nodejs npm && (cd tests/node && npm ci) (scripts/test.sh does it)",
        );
        return;
    };
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let app = "ember-node-acceptance";
    let started = now_nanos();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("node.log");
    let mut command = Command::new(&node);
    command.current_dir(&dir).env("DEBUG", "pyroscope").args([
        "busy_app.js",
        &ember.base_url(),
        app,
        TENANT,
        "5",
    ]);
    let node_log = run_logged(
        command,
        "the Node.js program",
        &log_path,
        Duration::from_secs(90),
    );
    assert!(
        !node_log.contains("rejected"),
        "the server rejected an upload:\n{node_log}"
    );

    let range = TimeRange::new(
        started / 1_000_000 - 60_000,
        now_nanos() / 1_000_000 + 60_000,
    );
    let selector = service_selector(app);
    let (id, busiest) = eventually(
        "the hot function shows in a wall or CPU flame graph",
        Duration::from_secs(20),
        || {
            let types = client.profile_types(Some(TENANT), range);
            let mut seen = Vec::new();
            for t in types
                .iter()
                .filter(|t| t.name == "wall" || t.name == "process_cpu")
            {
                let fg =
                    client.flame_graph(Some(TENANT), &t.id, &selector, range, None, Codec::Json);
                let nodes = flame::checked_nodes(&fg, &t.id);
                if let Some(b) = nodes
                    .iter()
                    .filter(|n| n.level > 0)
                    .max_by_key(|n| n.self_value)
                {
                    if b.name.contains("emberHotLoop") {
                        return Ok((t.id.clone(), b.name.clone()));
                    }
                    seen.push(format!("{}: busiest {:?}", t.id, b.name));
                }
            }
            Err(format!(
                "types {:?}; {seen:?}",
                types.iter().map(|t| &t.id).collect::<Vec<_>>()
            ))
        },
    );
    eprintln!("{id}: busiest function {busiest}");
    // The SDK's tags and spy name are labels of the series.
    let spies = client.label_values(Some(TENANT), "pyroscope_spy", &[], range);
    assert!(spies.iter().any(|s| s == "nodespy"), "{spies:?}");
    let envs = client.label_values(Some(TENANT), "env", &[], range);
    assert!(envs.iter().any(|s| s == "acceptance"), "{envs:?}");
}
