//! Acceptance: a target that hangs, one that answers garbage and one that answers
//! 100 MB neither delay nor break the scrapes of a good target; each shows its error
//! on `/targets`. Here the agent runs inside `-target=all` and pushes in-process.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::agent_support::{
    FakeServer, MEMORY_ONLY, metric, numbered_pprof, respond, start_with_config, targets,
};
use ember_tests::checks::service_selector;
use ember_tests::{TimeRange, eventually, now_millis};
use serde_json::Value;

#[test]
fn bad_targets_only_fail_themselves() {
    let seq = Arc::new(AtomicI64::new(0));
    let good = FakeServer::start(Arc::new(move |_req, stream| {
        let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
        respond(
            stream,
            "200 OK",
            "application/octet-stream",
            &numbered_pprof(n),
        );
    }));
    let hang = FakeServer::start(Arc::new(|_req, _stream| {
        std::thread::sleep(Duration::from_secs(3600));
    }));
    let garbage = FakeServer::start(Arc::new(|_req, stream| {
        respond(
            stream,
            "200 OK",
            "text/html",
            b"<html>this is not a profile</html>",
        );
    }));
    let huge = FakeServer::start(Arc::new(|_req, stream| {
        // No Content-Length: the agent finds out while reading.
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..100 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }));
    let job = |name: &str, address: String| {
        format!(
            "  - job_name: {name}
    scrape_interval: 1s
    scrape_timeout: 2s
    body_size_limit: 1048576
    static_configs:
      - targets: ['{address}']
        labels: {{service_name: {name}-app}}
{MEMORY_ONLY}"
        )
    };
    let config = format!(
        "scrape_configs:\n{}{}{}{}client:\n  batch_wait: 100ms\n",
        job("good", good.address()),
        job("hang", hang.address()),
        job("garbage", garbage.address()),
        job("huge", huge.address()),
    );
    let ember = start_with_config(&config, &[]);
    let client = ember.client();

    let by_job = |job: &str| -> Value {
        targets(&client)
            .into_iter()
            .find(|t| t["job"] == job)
            .unwrap_or_else(|| panic!("no target of job {job}"))
    };
    eventually(
        "every bad target shows its error",
        Duration::from_secs(20),
        || {
            let errors: Vec<(String, String)> = ["hang", "garbage", "huge"]
                .iter()
                .map(|j| {
                    (
                        j.to_string(),
                        by_job(j)["lastError"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let ok = errors[0].1.contains("timed out")
                && errors[1].1.contains("not a pprof profile")
                && errors[2].1.contains("body_size_limit");
            if ok {
                Ok(())
            } else {
                Err(format!("{errors:?}"))
            }
        },
    );
    for j in ["hang", "garbage", "huge"] {
        assert_eq!(by_job(j)["health"], "down");
    }

    // Meanwhile the good target keeps its rhythm: about one scrape a second.
    let before = metric(&client, "ember_agent_scrapes_total", &["job=\"good\""]);
    std::thread::sleep(Duration::from_secs(5));
    let after = metric(&client, "ember_agent_scrapes_total", &["job=\"good\""]);
    assert!(
        after - before >= 4.0,
        "good target scraped {} times in 5s",
        after - before
    );
    let good_target = by_job("good");
    assert_eq!(good_target["health"], "up", "{good_target}");
    assert_eq!(
        metric(
            &client,
            "ember_agent_scrape_failures_total",
            &["job=\"good\""]
        ),
        0.0
    );
    assert!(
        metric(
            &client,
            "ember_agent_scrape_failures_total",
            &["job=\"huge\""]
        ) >= 1.0
    );

    // And its profiles arrive, pushed in-process.
    let selector = service_selector("good-app");
    eventually(
        "good-app has a memory series",
        Duration::from_secs(20),
        || {
            let range = TimeRange::new(now_millis() - 120_000, now_millis() + 60_000);
            let series = client.series(None, &[&selector], &[], range);
            let memory = series.iter().any(|s| {
                s.labels
                    .iter()
                    .any(|l| l.name == "__name__" && l.value == "memory")
            });
            if memory {
                Ok(())
            } else {
                Err(format!("{series:?}"))
            }
        },
    );
    // The HTML page lists the errors too, escaped.
    let html = client.get("/targets").text();
    assert!(
        html.contains("&lt;html&gt;") || html.contains("not a pprof profile"),
        "{html}"
    );
    assert!(html.contains("timed out"));
}
