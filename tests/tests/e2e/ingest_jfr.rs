//! Acceptance: a JFR recording made by the machine's JDK
//! (`java -XX:StartFlightRecording=...` on tests/java/EmberBusy.java), uploaded
//! to `POST /ingest?format=jfr` raw and as the Java agent's multipart form,
//! yields a CPU flame graph containing the program's hot method.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ember_tests::checks::service_selector;
use ember_tests::{
    Client, Codec, EmberProcess, MULTITENANCY, TimeRange, flame, now_nanos,
    skip_or_fail_missing_tool, testdata,
};

const TENANT: &str = "jfr";

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin").join(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name));
    Command::new(&path)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(path)
}

/// Compiles and runs EmberBusy under the flight recorder; returns the recording.
fn record(java: &Path, javac: &Path, dir: &Path) -> Vec<u8> {
    let src = testdata::workspace_root().join("tests/java");
    let out = dir.join("classes");
    let status = Command::new(javac)
        .arg("-d")
        .arg(&out)
        .arg(src.join("EmberBusy.java"))
        .status()
        .expect("run javac");
    assert!(status.success(), "javac failed");
    let jfr = dir.join("busy.jfr");
    let output = Command::new(java)
        .arg(format!(
            "-XX:StartFlightRecording=filename={},settings={}",
            jfr.display(),
            src.join("ember.jfc").display()
        ))
        .arg("-cp")
        .arg(&out)
        .args(["EmberBusy", "3"])
        .output()
        .expect("run java");
    assert!(
        output.status.success(),
        "java failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&jfr).expect("read the recording")
}

fn hot_method_is_busiest(client: &Client, app: &str, range: TimeRange) {
    let id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let fg = client.flame_graph(
        Some(TENANT),
        id,
        &service_selector(app),
        range,
        None,
        Codec::Json,
    );
    let nodes = flame::checked_nodes(&fg, id);
    let busiest = nodes
        .iter()
        .filter(|n| n.level > 0)
        .max_by_key(|n| n.self_value)
        .unwrap_or_else(|| panic!("{app}: empty CPU flame graph"));
    assert_eq!(
        busiest.name,
        "EmberBusy.emberHotLoop",
        "{app}: leaves {:?}",
        flame::leaf_names(&nodes)
    );
    assert!(
        fg.total > 0 && fg.total % 10_000_000 == 0,
        "{app}: total {}",
        fg.total
    );
}

#[test]
fn jdk_recording_yields_the_hot_method() {
    let (Some(java), Some(javac)) = (tool("java"), tool("javac")) else {
        skip_or_fail_missing_tool(
            "a JDK (java and javac, 11 or newer)",
            "apt-get install default-jdk-headless",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let recording = record(&java, &javac, dir.path());

    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let s = now / 1_000_000_000;
    let range = TimeRange::around_nanos(now, 600_000);

    // Raw body, as `curl --data-binary @busy.jfr` sends it.
    let r = client.request(
        "POST",
        &format!(
            "/ingest?name=java-raw&format=jfr&from={}&until={s}&sampleRate=100&spyName=javaspy",
            s - 3
        ),
        &[
            ("Content-Type", "application/octet-stream"),
            ("X-Scope-OrgID", TENANT),
        ],
        Some(&recording),
    );
    assert!(r.is_success(), "raw JFR: {} {}", r.status, r.text());
    hot_method_is_busiest(&client, "java-raw", range);

    // The Java agent's form: `jfr` plus `labels`.
    let boundary = "ember-jfr-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"jfr\"; filename=\"jfr\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&recording);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"labels\"; filename=\"labels\"\r\n\r\n\r\n--{boundary}--\r\n").as_bytes(),
    );
    let r = client.request(
        "POST",
        &format!(
            "/ingest?name=java-agent.cpu&format=jfr&from={}&until={s}&sampleRate=100",
            s - 3
        ),
        &[
            (
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            ),
            ("X-Scope-OrgID", TENANT),
        ],
        Some(&body),
    );
    assert!(r.is_success(), "multipart JFR: {} {}", r.status, r.text());
    hot_method_is_busiest(&client, "java-agent", range);

    // Allocations and lock contention become memory and mutex types.
    let ids: Vec<String> = client
        .profile_types(Some(TENANT), range)
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert!(
        ids.iter().any(|id| id.starts_with("memory:alloc_")),
        "no allocation profile type in {ids:?}"
    );
}
