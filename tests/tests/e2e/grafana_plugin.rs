//! Acceptance: the Grafana datasource plugin (`grafana-plugin/`) against the real
//! binary. `ember` runs with multi-tenancy and holds two shared Go CPU profiles of one
//! tenant; `grafana-plugin/e2e/run.mjs` builds the plugin's browser test page with
//! Vite, and in Debian's headless Chromium the plugin's own `query()` (Grafana's backend
//! service bound to `fetch`) asks that Ember for a flame graph, series and a diff. The
//! frames must hold the totals computed here from the profiles, another tenant must see
//! nothing, and Grafana's flame graph (`@grafana/flamegraph`) must draw the profiles'
//! function names. Screenshots go to `target/plugin-screenshots/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ember_tests::{
    EmberProcess, MULTITENANCY, now_nanos, pprof, skip_or_fail_missing_tool, testdata,
};
use serde_json::{Value, json};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const TENANT: &str = "plugin-tenant";
const MINUTE_NANOS: i64 = 60_000_000_000;

/// Returns the sum of the `cpu` sample type and its tree (root-first path to total, self).
fn cpu_tree(raw: &[u8]) -> (i64, BTreeMap<Vec<String>, (i64, i64)>) {
    let profile = pprof::decode(raw).expect("decode");
    let exp = pprof::expectations(&profile)
        .into_iter()
        .find(|e| e.sample_type == "cpu")
        .expect("a cpu sample type");
    (exp.sum, pprof::expected_tree(&profile, exp.index))
}

#[test]
fn the_grafana_plugin_queries_ember_and_grafanas_flame_graph_draws_it() {
    let dir = testdata::workspace_root().join("grafana-plugin");
    let chromium = std::env::var("EMBER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip_or_fail_missing_tool("Node.js (`node`)", "apt-get install nodejs npm");
        return;
    }
    if !Path::new(&chromium).exists() {
        skip_or_fail_missing_tool("Chromium (/usr/bin/chromium)", "apt-get install chromium");
        return;
    }
    if !dir.join("node_modules/@grafana/flamegraph").exists() {
        skip_or_fail_missing_tool("the plugin's npm packages", "(cd grafana-plugin && npm ci)");
        return;
    }

    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let older = testdata::read("cpu.pb.gz");
    let recent = testdata::read("go.cpu.labels.pprof");
    let labels = [("service_name", "plugin-go"), ("__delta__", "false")];
    client.push_pprof(
        Some(TENANT),
        &labels,
        &pprof::with_time_nanos(&older, now - 40 * MINUTE_NANOS),
    );
    client.push_pprof(
        Some(TENANT),
        &labels,
        &pprof::with_time_nanos(&recent, now - 5 * MINUTE_NANOS),
    );

    let (older_sum, older_tree) = cpu_tree(&older);
    let (recent_sum, recent_tree) = cpu_tree(&recent);
    let mut tree = older_tree;
    for (path, (total, own)) in recent_tree {
        let node = tree.entry(path).or_default();
        node.0 += total;
        node.1 += own;
    }
    // The widest frame of the first two levels is wide enough to carry its label.
    let canvas_names: Vec<String> = (1..=2)
        .filter_map(|depth| {
            tree.iter()
                .filter(|(p, _)| p.len() == depth)
                .max_by_key(|(p, (total, _))| (*total, std::cmp::Reverse((*p).clone())))
                .map(|(p, _)| p[depth - 1].clone())
        })
        .collect();
    // The top table lists functions by self, largest first.
    let mut own_by_name: BTreeMap<String, i64> = BTreeMap::new();
    for (path, (_, own)) in &tree {
        *own_by_name.entry(path.last().unwrap().clone()).or_default() += own;
    }
    let mut by_own: Vec<(String, i64)> = own_by_name.into_iter().filter(|(_, s)| *s > 0).collect();
    by_own.sort_by_key(|(name, own)| (-own, name.clone()));
    let table_names: Vec<String> = by_own.into_iter().take(3).map(|(n, _)| n).collect();
    assert_eq!(canvas_names.len(), 2, "the profiles have two levels");
    assert!(!table_names.is_empty(), "the profiles have self time");

    let now_ms = now / 1_000_000;
    let expect = json!({
        "total": older_sum + recent_sum,
        "baselineTotal": older_sum,
        "comparisonTotal": recent_sum,
        "canvasNames": canvas_names,
        "tableNames": table_names,
        "config": {
            "tenant": TENANT,
            "otherTenant": "someone-else",
            "profileTypeId": CPU,
            "labelSelector": "{service_name=\"plugin-go\"}",
            "from": now_ms - 60 * 60_000,
            "to": now_ms + 60_000,
            "intervalMs": 60_000,
            "baseline": {"from": "now-50m", "to": "now-30m"},
            "comparison": {"from": "now-10m", "to": "now"},
        },
    });

    let screenshots = std::env::var_os("EMBER_PLUGIN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| testdata::workspace_root().join("target/plugin-screenshots"));
    let out = Command::new("node")
        .arg("e2e/run.mjs")
        .current_dir(&dir)
        .env("EMBER_URL", ember.base_url())
        .env("EMBER_PLUGIN_EXPECT", expect.to_string())
        .env("SCREENSHOT_DIR", &screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the plugin's browser test failed ({}):\n{stdout}\n{stderr}\n(screenshots in {})",
        out.status,
        screenshots.display()
    );
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("EMBER_PLUGIN_RESULT "))
        .map(|l| serde_json::from_str(l).expect("result JSON"))
        .unwrap_or_else(|| panic!("no result from the plugin's browser test:\n{stdout}\n{stderr}"));
    eprintln!("plugin test result: {result}");
    // The script checked these; they are asserted here too so the Rust side states them.
    assert_eq!(result["flame"]["rootValue"], json!(older_sum + recent_sum));
    assert_eq!(result["series"]["sum"], json!(older_sum + recent_sum));
    assert_eq!(result["diff"]["rootValue"], json!(older_sum));
    assert_eq!(result["diff"]["rootValueRight"], json!(recent_sum));
    assert_eq!(result["otherTenant"]["rootValue"], json!(0));
}
