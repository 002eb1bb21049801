//! Acceptance: a real Go program serving `net/http/pprof` is scraped by
//! `ember -target=agent`, which pushes to `ember -target=all` over Connect; its CPU
//! flame graph holds the function that burns CPU, and the memory, goroutine, mutex
//! and block profile types appear under their own names.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::agent_support::start_with_config;
use ember_tests::checks::service_selector;
use ember_tests::{
    Codec, EmberProcess, TimeRange, build_go_program, eventually, go_binary, now_millis,
    skip_or_fail_missing_tool,
};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn go_program_is_scraped_and_pushed() {
    let Some(go) = go_binary() else {
        skip_or_fail_missing_tool("Go (to build tests/go)", "apt-get install golang-go");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let binary = build_go_program(&go, "go", work.path());
    let mut child = Command::new(&binary)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Go program");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _go_program = Kill(child);
    let address = line.trim().to_string();
    assert!(address.starts_with("127.0.0.1:"), "{address:?}");

    let server = EmberProcess::start(&[]);
    let config = format!(
        "scrape_configs:
  - job_name: go
    scrape_interval: 2s
    static_configs:
      - targets: ['{address}']
        labels: {{service_name: go-burner, env: test}}
client:
  url: {}
  batch_wait: 100ms
",
        server.base_url()
    );
    let agent = start_with_config(&config, &["-target=agent"]);
    let client = server.client();
    let start = now_millis() - 60_000;
    let selector = service_selector("go-burner");

    // CPU: the burning function is in the flame graph.
    eventually(
        "the CPU flame graph of go-burner holds main.emberBurnCPU",
        Duration::from_secs(40),
        || {
            let range = TimeRange::new(start, now_millis() + 60_000);
            let fg = client.flame_graph(
                None,
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                &selector,
                range,
                None,
                Codec::Json,
            );
            if fg.names.iter().any(|n| n == "main.emberBurnCPU") {
                Ok(())
            } else {
                Err(format!("names: {:?}", fg.names))
            }
        },
    );
    // The other types, each under its own profile name.
    let wanted = [
        "memory:alloc_space:bytes:",
        "goroutines:goroutine:count:",
        "mutex:contentions:count:",
        "mutex:delay:nanoseconds:",
        "block:contentions:count:",
        "block:delay:nanoseconds:",
    ];
    eventually(
        "memory, goroutine, mutex and block profile types appear",
        Duration::from_secs(30),
        || {
            let range = TimeRange::new(start, now_millis() + 60_000);
            let ids: Vec<String> = client
                .profile_types(None, range)
                .into_iter()
                .map(|t| t.id)
                .collect();
            match wanted
                .iter()
                .find(|w| !ids.iter().any(|id| id.starts_with(*w)))
            {
                None => Ok(()),
                Some(missing) => Err(format!("{missing} missing from {ids:?}")),
            }
        },
    );
    // The agent shows its five targets as healthy.
    let targets = crate::agent_support::targets(&agent.client());
    assert_eq!(targets.len(), 5, "{targets:?}");
    let cpu = targets.iter().find(|t| t["type"] == "cpu").unwrap();
    assert_eq!(
        cpu["url"],
        format!("http://{address}/debug/pprof/profile?seconds=1")
    );
    assert_eq!(cpu["labels"]["service_name"], "go-burner");
    assert!(
        crate::agent_support::metric(&agent.client(), "ember_agent_pushed_profiles_total", &[])
            >= 5.0
    );
}
