//! Ember profiles itself: with `-self-profiling.enabled` its own CPU profile
//! shows up as service `ember` (with a `target` label) holding Ember's own
//! functions, and `/debug/pprof/profile` serves a CPU profile `go tool pprof`
//! reads, bounded in length.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use ember_tests::client::push_request;
use ember_tests::pprof::PprofBuilder;
use ember_tests::{
    Client, Codec, EmberProcess, PUSH_PATH, TimeRange, eventually, flame, go_binary, now_millis,
    now_nanos, skip_or_fail_missing_tool,
};
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Keeps Ember busy (pushes and queries) until dropped, so its CPU profile has samples.
struct Busy {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start(client: &Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, flag) = (client.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !flag.load(Ordering::Acquire) {
                let leaf = format!("work_{}", i % 500);
                let pprof = PprofBuilder::go_cpu()
                    .time(now_nanos(), 10_000_000_000)
                    .sample(&["main", "loop", &leaf], &[1, 10])
                    .encode();
                let body = push_request(&[("service_name", "busy")], &pprof).encode_to_vec();
                let _ = client.try_request(
                    "POST",
                    PUSH_PATH,
                    &[("Content-Type", Codec::Proto.content_type())],
                    Some(&body),
                );
                i += 1;
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn range() -> TimeRange {
    TimeRange::new(now_millis() - 600_000, now_millis() + 60_000)
}

#[test]
fn ember_shows_up_as_its_own_service_with_its_own_functions() {
    let ember = EmberProcess::start(&[
        "-self-profiling.enabled=true",
        "-self-profiling.interval=2s",
    ]);
    let client = ember.client();
    let _busy = Busy::start(&client);
    eventually("service ember is listed", Duration::from_secs(60), || {
        let services = client.label_values(None, "service_name", &[], range());
        services
            .contains(&"ember".to_string())
            .then_some(())
            .ok_or_else(|| format!("{services:?}"))
    });
    let targets = client.label_values(None, "target", &[r#"{service_name="ember"}"#], range());
    assert_eq!(targets, vec!["all".to_string()]);
    let names = eventually("ember's own functions", Duration::from_secs(60), || {
        let fg = client.flame_graph(
            None,
            CPU,
            r#"{service_name="ember"}"#,
            range(),
            None,
            Codec::Proto,
        );
        let nodes = flame::nodes(&fg)?;
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let own = names
            .iter()
            .filter(|n| n.contains("ember_") || n.contains("tokio"))
            .count();
        (own > 0)
            .then_some(names.clone())
            .ok_or_else(|| format!("{} nodes, none of Ember's: {names:?}", names.len()))
    });
    assert!(
        names.iter().any(|n| n.contains("ember_")),
        "Ember's crates in its own flame graph: {names:?}"
    );
}

#[test]
fn go_tool_pprof_reads_the_cpu_profile_endpoint() {
    let ember = EmberProcess::start(&[]);
    let client = ember.client();
    for bad in ["0", "301", "ten", "-1"] {
        let r = client.get(&format!("/debug/pprof/profile?seconds={bad}"));
        assert_eq!(r.status, 400, "seconds={bad}: {}", r.text());
        assert!(r.text().contains("from 1 to 300"), "{}", r.text());
    }
    let heap = client.get("/debug/pprof/heap");
    assert_eq!(heap.status, 501);
    assert!(heap.text().contains("system allocator"), "{}", heap.text());

    let Some(go) = go_binary() else {
        skip_or_fail_missing_tool("go (golang-go)", "apt-get install golang-go");
        return;
    };
    let _busy = Busy::start(&client);
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(go)
        .args(["tool", "pprof", "-top"])
        .arg(format!(
            "{}/debug/pprof/profile?seconds=2",
            ember.base_url()
        ))
        .env("HOME", dir.path())
        .env("PPROF_TMPDIR", dir.path())
        .output()
        .expect("run go tool pprof");
    let out = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "go tool pprof failed:\n{out}");
    assert!(out.contains("Type: cpu"), "{out}");
    assert!(out.contains("Duration: 2"), "{out}");
    assert!(
        out.contains("ember_") || out.contains("tokio"),
        "Ember's functions in the top list:\n{out}"
    );
}
