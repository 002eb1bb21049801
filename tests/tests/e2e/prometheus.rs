//! Acceptance: Ember's dashboards and alerts work against a real Prometheus.
//!
//! - `promtool check rules` and `promtool test rules` pass on
//!   `operations/alerts/`, every alert has a unit test, a runbook section and
//!   a `runbook_url` pointing at it;
//! - the dashboards in `operations/dashboards/` (and the chart's copies) are
//!   what `build.py` writes;
//! - a Prometheus (Debian's `prometheus`, on loopback) scrapes a cluster —
//!   distributor, three ingesters, querier, compactor and an agent — every
//!   second under push and query load; then every query of every panel of
//!   every dashboard, its variables filled in, returns at least one series
//!   with a value, every variable query finds values, `promtool check metrics`
//!   passes on each target's `/metrics`, and the alerting rules evaluate
//!   without error.
//!
//! A panel without data names the metrics Prometheus does not have, so a
//! missing metric and a wrong query read differently in the failure.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ember_tests::process::{free_port, write_file};
use ember_tests::{
    Codec, EmberProcess, PUSH_PATH, TimeRange, eventually, now_millis, skip_or_fail_missing_tool,
};
use serde_json::Value;

use crate::agent_support::{FakeServer, MEMORY_ONLY, numbered_pprof, respond, start_with_config};
use crate::cluster::{Cluster, Storage, wait_for_active_ingesters};
use crate::load::{CPU, Load, SERVICE};

/// The tenant of an Ember without multi-tenancy: what `$tenant` stands for.
const TENANT: &str = "anonymous";

/// How long the cluster is under load before the panels are queried.
const LOAD: Duration = Duration::from_secs(30);

const PROMETHEUS_HINT: &str = "apt-get install prometheus (Debian's package: \
     /usr/bin/prometheus and /usr/bin/promtool), or bash scripts/test.sh";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Returns `name` from `var`, `/usr/bin`, or `PATH`, when it runs.
fn tool(var: &str, name: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os(var).map(PathBuf::from),
        Some(Path::new("/usr/bin").join(name)),
        Some(PathBuf::from(name)),
    ];
    candidates.into_iter().flatten().find(|path| {
        Command::new(path)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub(crate) fn promtool() -> Option<PathBuf> {
    let found = tool("EMBER_PROMTOOL", "promtool");
    if found.is_none() {
        skip_or_fail_missing_tool("promtool", PROMETHEUS_HINT);
    }
    found
}

/// Runs `promtool check metrics` on exposition `text`; gives promtool's
/// output when it finds a problem.
pub(crate) fn check_metrics(promtool: &Path, text: &str) -> Result<(), String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Runs `command`, returning its combined output; panics with it when it fails.
fn run(mut command: Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// Returns the alert names of `operations/alerts/ember.rules.yaml`.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_has_a_test_and_a_runbook() {
    let Some(promtool) = promtool() else { return };
    let alerts_dir = repo().join("operations/alerts");
    let rules_path = alerts_dir.join("ember.rules.yaml");
    let mut check = Command::new(&promtool);
    check.args(["check", "rules"]).arg(&rules_path);
    let checked = run(check, "promtool check rules");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let alerts = alert_names(&rules);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "promtool found other rules than the {} alerts: {checked}",
        alerts.len()
    );

    let mut tests: Vec<PathBuf> = std::fs::read_dir(alerts_dir.join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    tests.sort();
    let mut unit = Command::new(&promtool);
    unit.args(["test", "rules"])
        .args(&tests)
        .current_dir(alerts_dir.join("tests"));
    let tested = run(unit, "promtool test rules");
    assert_eq!(
        tested.matches("SUCCESS").count(),
        tests.len(),
        "every test file passes: {tested}"
    );

    let runbook = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let test_texts: Vec<String> = tests
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let expected = [
        "EmberFlushFailing",
        "EmberWALCorruptRecords",
        "EmberWALAppendFailing",
        "EmberIngesterNotActive",
        "EmberHighRejectionRate",
        "EmberObjectStoreErrors",
        "EmberCompactorNotRunning",
        "EmberQueriesSlow",
        "EmberReplicationFailures",
        "EmberTargetDown",
    ];
    assert_eq!(
        alerts.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        expected.into_iter().collect::<BTreeSet<_>>(),
        "the alerts"
    );
    for alert in &alerts {
        let fires_and_stays_silent = test_texts.iter().any(|t| {
            t.contains(&format!("alertname: {alert}"))
                && t.contains("exp_alerts: []")
                && t.contains("exp_labels:")
        });
        assert!(
            fires_and_stays_silent,
            "{alert}: no test file makes it fire and stay silent"
        );
        let anchor = alert.to_lowercase();
        assert!(
            rules.contains(&format!("runbook_url: docs/operations.md#{anchor}")),
            "{alert}: runbook_url docs/operations.md#{anchor}"
        );
        assert!(
            runbook.contains(&format!("\n### {alert}\n")),
            "{alert}: docs/operations.md has no `### {alert}` section"
        );
    }
}

/// Reads every dashboard of `operations/dashboards/`, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("operations/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect()
}

/// One query of one panel.
struct PanelQuery {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
}

fn panel_queries() -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for (_, d) in dashboards() {
        let title = d["title"].as_str().unwrap_or_default().to_owned();
        for panel in d["panels"].as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                continue;
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                queries.push(PanelQuery {
                    dashboard: title.clone(),
                    panel: panel["title"].as_str().unwrap_or_default().to_owned(),
                    ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
    }
    queries
}

#[test]
fn dashboards_are_what_build_py_writes_and_share_their_variables() {
    let python = tool("EMBER_PYTHON3", "python3");
    let Some(python) = python else {
        skip_or_fail_missing_tool("python3", "apt-get install python3");
        return;
    };
    let mut check = Command::new(python);
    check
        .arg(repo().join("operations/dashboards/build.py"))
        .arg("--check");
    run(check, "operations/dashboards/build.py --check");

    let all = dashboards();
    let titles: BTreeSet<&str> = all
        .iter()
        .filter_map(|(_, d)| d["title"].as_str())
        .collect();
    assert_eq!(
        titles,
        BTreeSet::from([
            "Ember / Compactor",
            "Ember / Object store",
            "Ember / Overview",
            "Ember / Reads",
            "Ember / Resources",
            "Ember / Writes",
        ])
    );
    for (file, d) in &all {
        assert!(
            d["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: uid"
        );
        assert!(
            d["tags"].as_array().unwrap().contains(&"ember".into()),
            "{file}: tag"
        );
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 39,
            "{file}: schemaVersion"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |name: &str| vars.iter().find(|v| v["name"] == name);
        assert_eq!(var("datasource").unwrap()["query"], "prometheus", "{file}");
        for name in ["namespace", "job"] {
            let v = var(name).unwrap_or_else(|| panic!("{file}: no ${name}"));
            assert_eq!(v["multi"], true, "{file}: ${name} multi");
            assert_eq!(v["includeAll"], true, "{file}: ${name} All");
            assert_eq!(v["allValue"], ".*", "{file}: ${name} allValue");
            assert!(
                v["definition"]
                    .as_str()
                    .unwrap()
                    .starts_with("label_values(ember_build_info"),
                "{file}: ${name} from ember_build_info"
            );
        }
    }
    for q in panel_queries() {
        assert!(
            q.expr.contains(r#"namespace=~"$namespace", job=~"$job""#),
            "{} › {}: the query selects $namespace and $job: {}",
            q.dashboard,
            q.panel,
            q.expr
        );
    }
}

/// Fills in the template variables as Grafana would with "All" chosen.
fn substitute(expr: &str) -> String {
    [
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("$__range", "5m"),
        ("$namespace", "test"),
        ("$job", ".*"),
        ("$tenant", TENANT),
    ]
    .iter()
    .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value))
}

/// Returns the metric names an expression reads (Ember's, `process_*`, `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        if is_word(bytes[i]) && (i == 0 || !is_word(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !is_word(bytes[j]))
                .unwrap_or(bytes.len());
            let word = &expr[i..end];
            if word.starts_with("ember_") || word.starts_with("process_") || word == "up" {
                names.insert(word.to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// A Prometheus server on loopback, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ember-prometheus-")
            .tempdir()
            .unwrap();
        let config_path = write_file(dir.path(), "prometheus.yml", config.as_bytes());
        let log = dir.path().join("prometheus.log");
        let port = free_port();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let mut prometheus = Self {
            child,
            port,
            log,
            agent,
            _dir: dir,
        };
        eventually("prometheus ready", Duration::from_secs(60), || {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log_text());
            }
            prometheus
                .agent
                .get(&prometheus.url("/-/ready"))
                .call()
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        prometheus
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs an API path; returns `data`, or Prometheus's error.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut request = self.agent.get(&self.url(path));
        for (k, v) in params {
            request = request.query(k, v);
        }
        let body: Value = match request.call() {
            Ok(response) => {
                let text = response.into_string().map_err(|e| e.to_string())?;
                serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?
            }
            Err(ureq::Error::Status(code, response)) => {
                let text = response.into_string().unwrap_or_default();
                return Err(serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("HTTP {code}: {text}")));
            }
            Err(e) => return Err(e.to_string()),
        };
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"].clone())
    }

    /// Returns the instant vector `expr` evaluates to now.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "----- prometheus log tail -----\n{}\n-----",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Pushes profiles Ember must reject (not a profile: 400), and asks the
/// querier for flame graphs, series and label names, until stopped.
struct SideLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, usize)>>,
}

impl SideLoad {
    fn start(distributor: ember_tests::Client, querier: ember_tests::Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rejecting = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rejected = 0;
                while !stop.load(Ordering::Acquire) {
                    let body = ember_tests::client::push_request(
                        &[("service_name", "ops-rejected")],
                        b"not a profile",
                    );
                    let body = prost::Message::encode_to_vec(&body);
                    let status = distributor
                        .try_request(
                            "POST",
                            PUSH_PATH,
                            &[("Content-Type", Codec::Proto.content_type())],
                            Some(&body),
                        )
                        .map(|r| r.status);
                    if matches!(status, Ok(s) if (400..500).contains(&s)) {
                        rejected += 1;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                (rejected, 0)
            })
        };
        let querying = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(Ordering::Acquire) {
                    let now = now_millis();
                    let range = TimeRange::new(now - 3_600_000, now + 60_000);
                    let req = ember_proto::querier::v1::SelectMergeStacktracesRequest {
                        profile_type_id: CPU.to_owned(),
                        label_selector: format!(r#"{{service_name="{SERVICE}"}}"#),
                        start: range.start,
                        end: range.end,
                        max_nodes: Some(1024),
                        ..Default::default()
                    };
                    if querier
                        .select_merge_stacktraces(None, &req, Codec::Proto)
                        .is_ok()
                    {
                        answered += 1;
                    }
                    let (status, _) = querier.connect_json(
                        None,
                        "/querier.v1.QuerierService/Series",
                        &serde_json::json!({"matchers": [], "start": range.start, "end": range.end}),
                    );
                    if status == 200 {
                        answered += 1;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
                (0, answered)
            })
        };
        Self {
            stop,
            threads: vec![rejecting, querying],
        }
    }

    /// Stops; returns (pushes rejected, queries answered).
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Release);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }
}

/// `prometheus.yml`: every process scraped every second, a job per component
/// (named as the chart's Services are) and `namespace: test`.
fn prometheus_config(jobs: &[(&str, Vec<u16>)]) -> String {
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\nscrape_configs:\n",
        repo().join("operations/alerts/ember.rules.yaml").display()
    );
    for (job, ports) in jobs {
        let targets: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n        labels: {{namespace: test}}\n",
            targets.join(", ")
        ));
    }
    config
}

#[test]
fn every_dashboard_panel_returns_series_from_a_real_prometheus_scraping_a_cluster() {
    let Some(promtool) = promtool() else { return };
    let Some(prometheus_bin) = tool("EMBER_PROMETHEUS", "prometheus") else {
        skip_or_fail_missing_tool("prometheus", PROMETHEUS_HINT);
        return;
    };
    let Some(moto) = Storage::start("ember-prometheus") else {
        return;
    };
    let storage = &moto.flag;
    let wal = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(storage, wal.path(), &["", "", ""], &[]);
    let push_client = cluster.distributor.client();
    wait_for_active_ingesters(&push_client, 3);
    wait_for_active_ingesters(&cluster.querier.client(), 3);
    let compactor = EmberProcess::start(&[
        storage,
        "-target=compactor",
        "-compactor.block-ranges=10s,40s",
        "-compactor.compaction-interval=1s",
        "-compactor.settle-delay=1s",
        "-compactor.deletion-delay=2s",
    ]);
    // The agent scrapes an application's memory profile every second and
    // pushes it to the distributor.
    let app = FakeServer::start(Arc::new(|_req, stream| {
        respond(
            stream,
            "200 OK",
            "application/octet-stream",
            &numbered_pprof(1),
        );
    }));
    let agent = start_with_config(
        &format!(
            "scrape_configs:\n  - job_name: ops-app\n    scrape_interval: 1s\n    static_configs:\n      \
             - targets: ['{}']\n        labels: {{service_name: ops-app}}\n{MEMORY_ONLY}client:\n  \
             url: {}\n  batch_wait: 100ms\n",
            app.address(),
            cluster.distributor.base_url()
        ),
        &["-target=agent"],
    );

    let jobs = [
        ("ember-distributor", vec![cluster.distributor.port()]),
        (
            "ember-ingester",
            cluster.ingesters.iter().map(EmberProcess::port).collect(),
        ),
        ("ember-querier", vec![cluster.querier.port()]),
        ("ember-compactor", vec![compactor.port()]),
        ("ember-agent", vec![agent.process.port()]),
    ];
    let prometheus = Prometheus::start(&prometheus_bin, &prometheus_config(&jobs));
    eventually(
        "prometheus scrapes every target",
        Duration::from_secs(60),
        || {
            let up = prometheus.query(r#"up{namespace="test"} == 1"#)?;
            if up.len() == 7 {
                Ok(())
            } else {
                Err(format!("{} of 7 targets up: {up:?}", up.len()))
            }
        },
    );

    let load = Load::start(&push_client, false);
    let side = SideLoad::start(push_client.clone(), cluster.querier.client());
    let started = Instant::now();
    std::thread::sleep(LOAD);

    let mut problems = Vec::new();

    // Every target's /metrics is valid exposition text by promtool's linter.
    for (job, ports) in &jobs {
        for port in ports {
            let text = ember_tests::Client::new(&format!("http://127.0.0.1:{port}"))
                .get("/metrics")
                .text();
            if let Err(out) = check_metrics(&promtool, &text) {
                problems.push(format!(
                    "promtool check metrics on {job} (127.0.0.1:{port}):\n    {}",
                    out.trim().replace('\n', "\n    ")
                ));
            }
        }
    }

    // The variables' queries find the cluster.
    for (file, d) in dashboards() {
        for var in d["templating"]["list"].as_array().into_iter().flatten() {
            let Some(definition) = var["definition"].as_str() else {
                continue;
            };
            let Some(args) = definition
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
            else {
                problems.push(format!(
                    "{file}: ${}: not label_values(): {definition}",
                    var["name"]
                ));
                continue;
            };
            let (selector, label) = args.rsplit_once(',').unwrap();
            let selector = substitute(selector.trim());
            let path = format!("/api/v1/label/{}/values", label.trim());
            let values = prometheus.api(&path, &[("match[]", &selector)]);
            let wanted = match var["name"].as_str() {
                Some("namespace") => Some("test"),
                Some("tenant") => Some(TENANT),
                _ => None,
            };
            match values {
                Ok(v) => {
                    let values: Vec<&str> = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if values.is_empty() || wanted.is_some_and(|w| !values.contains(&w)) {
                        problems.push(format!(
                            "{file}: ${} ({definition}) finds {values:?}",
                            var["name"]
                        ));
                    }
                }
                Err(e) => problems.push(format!("{file}: ${} ({definition}): {e}", var["name"])),
            }
        }
    }

    // Every panel's every query has data.
    let queries = panel_queries();
    let mut without_data = 0;
    let mut missing_metrics = BTreeSet::new();
    for q in &queries {
        let expr = substitute(&q.expr);
        let place = format!("{} › {} [{}]", q.dashboard, q.panel, q.ref_id);
        match prometheus.query(&expr) {
            Err(e) => problems.push(format!("{place}: PromQL error: {e}\n    {expr}")),
            Ok(series) => {
                let with_value = series
                    .iter()
                    .filter(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"))
                    .count();
                if with_value > 0 {
                    continue;
                }
                without_data += 1;
                let missing: Vec<String> = metric_names(&expr)
                    .into_iter()
                    .filter(|name| {
                        prometheus
                            .query(&format!(r#"group({name}{{namespace="test"}})"#))
                            .map(|r| r.is_empty())
                            .unwrap_or(true)
                    })
                    .collect();
                let why = if missing.is_empty() {
                    format!(
                        "{} series, none with a value, although its metrics exist",
                        series.len()
                    )
                } else {
                    format!("missing metrics {}", missing.join(", "))
                };
                missing_metrics.extend(missing);
                problems.push(format!("{place}: no data: {why}\n    {expr}"));
            }
        }
    }

    // A panel that falls back to 0 (`or ... * 0`) has data without its metric:
    // every metric the panels name must exist all the same, but for the
    // failure counters whose labels are not known ahead, which appear at the
    // first failure (none happens in this healthy cluster).
    const ON_FIRST_FAILURE: [&str; 2] = [
        "ember_distributor_replication_failures_total",
        "ember_agent_scrape_failures_total",
    ];
    let named: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(&q.expr)).collect();
    for name in &named {
        if ON_FIRST_FAILURE.contains(&name.as_str()) || missing_metrics.contains(name) {
            continue;
        }
        let present = prometheus
            .query(&format!(r#"group({name}{{namespace="test"}})"#))
            .is_ok_and(|r| !r.is_empty());
        if !present {
            missing_metrics.insert(name.clone());
            problems.push(format!(
                "metric {name}, which a panel names, is not in Prometheus"
            ));
        }
    }

    // The alerting rules evaluate on real data without errors.
    match prometheus.api("/api/v1/rules", &[]) {
        Ok(data) => {
            let rules: Vec<&Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            if rules.len()
                != alert_names(
                    &std::fs::read_to_string(repo().join("operations/alerts/ember.rules.yaml"))
                        .unwrap(),
                )
                .len()
            {
                problems.push(format!("prometheus loaded {} rules", rules.len()));
            }
            for rule in rules {
                if rule["health"] == "err" {
                    problems.push(format!(
                        "rule {} fails to evaluate: {}",
                        rule["name"], rule["lastError"]
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("/api/v1/rules: {e}")),
    }

    let (rejected, answered) = side.finish();
    let (acked, sent) = load.finish();
    eprintln!(
        "after {:?} of load: {} of {sent} pushes acknowledged, {rejected} rejected, \
         {answered} queries answered; {} of {} panel queries without data",
        started.elapsed(),
        acked.len(),
        without_data,
        queries.len()
    );
    assert!(
        !acked.is_empty() && rejected > 0 && answered > 0,
        "the load ran"
    );
    assert!(
        problems.is_empty(),
        "{} problems (metrics Prometheus does not have: {}):\n{}",
        problems.len(),
        if missing_metrics.is_empty() {
            "none".to_owned()
        } else {
            missing_metrics.into_iter().collect::<Vec<_>>().join(", ")
        },
        problems.join("\n")
    );
}

#[test]
fn metric_names_are_read_from_a_query() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le) (rate(ember_x_seconds_bucket{job=~"a"}[1m]))) / up - time() + process_cpu_seconds_total"#
        ),
        BTreeSet::from([
            "ember_x_seconds_bucket".to_owned(),
            "process_cpu_seconds_total".to_owned(),
            "up".to_owned()
        ])
    );
    assert_eq!(
        substitute(
            r#"rate(a{namespace=~"$namespace", job=~"$job", tenant=~"$tenant"}[$__rate_interval])"#
        ),
        r#"rate(a{namespace=~"test", job=~".*", tenant=~"anonymous"}[1m])"#
    );
}
