//! Acceptance: the web UI in real headless Chromium (Debian's `chromium`,
//! driven by `playwright-core` from `tests/ui`) against `ember` loaded with
//! shared profiles: pickers, flame graph total and names, zoom, search, table
//! sorting, timeline drag, diff, pprof and SVG exports, themes and the empty
//! state. Screenshots go to `target/ui-screenshots/`; the script also measures a
//! 50,000-node flame graph (see docs/benchmarks.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_tests::{EmberProcess, now_nanos, pprof, skip_or_fail_missing_tool, testdata};
use serde_json::{Value, json};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const MINUTE_NANOS: i64 = 60_000_000_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn works(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Returns the sum and (root-first path, total) of the `cpu` sample type.
fn cpu_of(raw: &[u8]) -> (i64, Vec<(Vec<String>, i64)>) {
    let profile = pprof::decode(raw).expect("decode");
    let exp = pprof::expectations(&profile)
        .into_iter()
        .find(|e| e.sample_type == "cpu")
        .expect("a cpu sample type");
    let tree = pprof::expected_tree(&profile, exp.index)
        .into_iter()
        .map(|(path, (total, _))| (path, total))
        .collect();
    (exp.sum, tree)
}

#[test]
fn the_web_ui_works_in_headless_chromium() {
    let root = repo_root();
    let ui_dir = root.join("tests/ui");
    let chromium = std::env::var("EMBER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !works("node", "--version") {
        skip_or_fail_missing_tool("Node.js (`node`)", "apt-get install nodejs npm");
        return;
    }
    if !Path::new(&chromium).exists() {
        skip_or_fail_missing_tool("Chromium (/usr/bin/chromium)", "apt-get install chromium");
        return;
    }
    if !ui_dir.join("node_modules/playwright-core").exists() {
        skip_or_fail_missing_tool("playwright-core", "(cd tests/ui && npm ci)");
        return;
    }

    let ember = EmberProcess::start(&[]);
    let client = ember.client();
    let now = now_nanos();
    let older = testdata::read("cpu.pb.gz");
    let recent = testdata::read("go.cpu.labels.pprof");
    let labels = [("service_name", "ui-go"), ("__delta__", "false")];
    client.push_pprof(
        None,
        &labels,
        &pprof::with_time_nanos(&older, now - 40 * MINUTE_NANOS),
    );
    client.push_pprof(
        None,
        &labels,
        &pprof::with_time_nanos(&recent, now - 5 * MINUTE_NANOS),
    );
    client.push_pprof(
        None,
        &[("service_name", "ui-python"), ("__name__", "process_cpu")],
        &pprof::with_time_nanos(&testdata::read("profile_python"), now - 10 * MINUTE_NANOS),
    );

    let (older_sum, older_tree) = cpu_of(&older);
    let (recent_sum, _) = cpu_of(&recent);
    // Leaf-most frames of the widest stacks are in the top table; the widest
    // first frame is wide enough for the SVG to draw it.
    let mut paths = older_tree.clone();
    paths.sort_by_key(|(path, total)| (-total, path.len()));
    let top = paths
        .iter()
        .find(|(p, _)| p.len() == 1)
        .map(|(p, _)| p[0].clone())
        .expect("a first frame");
    let functions: Vec<String> = paths
        .iter()
        .filter(|(p, _)| p.len() > 1)
        .take(3)
        .map(|(p, _)| p.last().unwrap().clone())
        .collect();
    let search = top.chars().take(4).collect::<String>();
    let expect = json!({
        "services": ["ui-go", "ui-python"],
        "service": "ui-go",
        "type": CPU,
        "total": older_sum + recent_sum,
        "recentTotal": recent_sum,
        "functions": functions,
        "svgFunctions": [top],
        "search": search,
    });

    let screenshots = std::env::var_os("EMBER_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/ui-screenshots"));
    let downloads = tempfile::tempdir().unwrap();
    let out = Command::new("node")
        .arg("ui.test.mjs")
        .current_dir(&ui_dir)
        .env("EMBER_URL", ember.base_url())
        .env("EMBER_UI_EXPECT", expect.to_string())
        .env("SCREENSHOT_DIR", &screenshots)
        .env("DOWNLOAD_DIR", downloads.path())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\n(screenshots in {})",
        out.status,
        screenshots.display()
    );
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("EMBER_UI_RESULT "))
        .map(|l| serde_json::from_str(l).expect("result JSON"))
        .unwrap_or_else(|| panic!("no result from the browser test:\n{stdout}\n{stderr}"));
    eprintln!("ui test result: {result}");
    assert_eq!(result["rootTotal"], json!(older_sum + recent_sum));

    // The pprof the UI downloaded opens in `go tool pprof` with the same total.
    let pprof_path = result["pprof"].as_str().expect("pprof path");
    let Some(go) = ["go", "/usr/lib/go/bin/go", "/usr/local/go/bin/go"]
        .into_iter()
        .find(|g| works(g, "version"))
    else {
        skip_or_fail_missing_tool("Go (`go tool pprof`)", "apt-get install golang-go");
        return;
    };
    let out = Command::new(go)
        .args(["tool", "pprof", "-top", "-unit=ns", "-symbolize=none"])
        .arg(pprof_path)
        .env("HOME", downloads.path())
        .env("PPROF_TMPDIR", downloads.path())
        .output()
        .expect("run go tool pprof");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = format!("of {}ns total", older_sum + recent_sum);
    assert!(
        text.contains(&total),
        "go tool pprof should report {total}:\n{text}"
    );
}
