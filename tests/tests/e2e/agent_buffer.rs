//! Acceptance: while the distributor is down the agent holds at most
//! `client.buffer_max_profiles`, dropping and counting the oldest; once it is up the
//! newest profiles, up to that bound, are delivered.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent_support::{
    FakeServer, MEMORY_ONLY, metric, numbered_pprof, respond, start_with_config,
};
use ember_proto::push::v1::PushRequest;
use ember_tests::{eventually, pprof, process::free_port};
use prost::Message;

const BOUND: usize = 3;

#[test]
fn buffered_profiles_are_delivered_up_to_the_bound() {
    let seq = Arc::new(AtomicI64::new(0));
    let scraped = seq.clone();
    let target = FakeServer::start(Arc::new(move |_req, stream| {
        let n = scraped.fetch_add(1, Ordering::Relaxed) + 1;
        respond(
            stream,
            "200 OK",
            "application/octet-stream",
            &numbered_pprof(n),
        );
    }));
    let distributor_port = free_port();
    let config = format!(
        "scrape_configs:
  - job_name: buffered
    scrape_interval: 1s
    static_configs:
      - targets: ['{}']
        labels: {{service_name: buffered-app}}
{MEMORY_ONLY}client:
  url: http://127.0.0.1:{distributor_port}
  batch_wait: 50ms
  batch_max_profiles: 100
  buffer_max_profiles: {BOUND}
  min_backoff: 200ms
  max_backoff: 400ms
",
        target.address()
    );
    let agent = start_with_config(&config, &["-target=agent"]);
    let client = agent.client();

    // Down: scrapes go on, the buffer stays at the bound and drops the oldest.
    eventually(
        "profiles are dropped while the distributor is down",
        Duration::from_secs(30),
        || {
            let dropped = metric(
                &client,
                "ember_agent_dropped_profiles_total",
                &["buffer_full"],
            );
            if dropped >= 3.0 {
                Ok(())
            } else {
                Err(format!("dropped {dropped}"))
            }
        },
    );
    assert_eq!(
        metric(&client, "ember_agent_buffered_profiles", &[]),
        BOUND as f64
    );

    // Up: a distributor that records which scrapes it receives, per request.
    let requests: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
    let record = requests.clone();
    let listener =
        TcpListener::bind(("127.0.0.1", distributor_port)).expect("bind the distributor port");
    let up_at = seq.load(Ordering::Relaxed);
    let _distributor = FakeServer::start_on(
        listener,
        Arc::new(move |req, stream| {
            assert_eq!(req.path, "/push.v1.PusherService/Push");
            assert_eq!(req.header("content-type"), Some("application/proto"));
            let mut body = req.body.clone();
            if req.header("content-encoding") == Some("gzip") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .unwrap();
                body = out;
            }
            let push = PushRequest::decode(&body[..]).expect("a PushRequest");
            let seqs: Vec<i64> = push
                .series
                .iter()
                .flat_map(|s| &s.samples)
                .map(|s| pprof::decode(&s.raw_profile).unwrap().sample[0].value[0] / 1024)
                .collect();
            for s in &push.series {
                assert!(
                    s.labels
                        .iter()
                        .any(|l| l.name == "__name__" && l.value == "memory")
                );
            }
            record.lock().unwrap().push(seqs);
            respond(stream, "200 OK", "application/proto", b"");
        }),
    );
    eventually(
        "the buffered profiles are delivered",
        Duration::from_secs(20),
        || {
            let got = requests.lock().unwrap().clone();
            if got.iter().map(Vec::len).sum::<usize>() >= BOUND {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    let got = requests.lock().unwrap().clone();
    let first = &got[0];
    assert_eq!(
        first.len(),
        BOUND,
        "the first push holds the whole buffer: {got:?}"
    );
    // They are the newest scrapes of the outage, in order: the oldest were dropped.
    assert!(first.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    assert!(first[0] > 1, "the oldest profiles were dropped: {got:?}");
    assert!(
        *first.last().unwrap() >= up_at - 1,
        "{got:?} (scrape {up_at} when it came up)"
    );
    let delivered: BTreeSet<i64> = got.iter().flatten().copied().collect();
    let dropped = metric(
        &client,
        "ember_agent_dropped_profiles_total",
        &["buffer_full"],
    );
    assert!(
        dropped >= (first[0] - 1) as f64,
        "dropped {dropped}, first delivered {}",
        first[0]
    );
    assert!(!delivered.contains(&1));
    eventually("pushes are counted", Duration::from_secs(10), || {
        let pushed = metric(&client, "ember_agent_pushed_profiles_total", &[]);
        if pushed >= BOUND as f64 {
            Ok(())
        } else {
            Err(format!("pushed {pushed}"))
        }
    });
}
