//! Health an operator can probe: `/live` answers from the moment the port is
//! bound, `/ready` says why the process is not ready (the write-ahead log
//! replay with its progress, an unreachable object store), writes wait for the
//! replay; and logs an operator can ship (`-log.format=json`, no colour codes
//! in a log file, one line per request).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_tests::client::push_request;
use ember_tests::pprof::PprofBuilder;
use ember_tests::process::write_file;
use ember_tests::s3::{PausableProxy, S3Server};
use ember_tests::{
    Client, Codec, EmberProcess, PUSH_PATH, TimeRange, eventually, now_nanos, testdata,
};
use prost::Message;

const SERVICE: &str = "replay-count";
const VALUE: i64 = 5_000;
/// Profiles pushed before the crash; each push also carries a real Go heap
/// profile, so the log is large enough that its replay takes seconds.
const PUSHES: usize = 500;
const PUSHERS: usize = 4;

/// The limits these pushes need: about 40 kB each, as fast as they go.
const NO_RATE_LIMIT: [&str; 2] = [
    "-limits.ingestion-rate-mb=0",
    "-limits.ingestion-burst-size-mb=1000",
];

/// Returns the body of push `id`: a real heap profile (as its own series)
/// and a CPU profile whose one stack ends in a function unique to the push.
fn push_body(heap: &[u8], id: usize) -> Vec<u8> {
    let leaf = format!("push_{id}");
    let cpu = PprofBuilder::go_cpu()
        .time(now_nanos(), 10_000_000_000)
        .sample(&["main", &leaf], &[1, VALUE])
        .encode();
    let mut request = push_request(&[("service_name", SERVICE)], &cpu);
    let bulk = push_request(
        &[("service_name", "replay-bulk"), ("__delta__", "false")],
        heap,
    );
    request.series.extend(bulk.series);
    request.encode_to_vec()
}

fn push(client: &Client, body: &[u8]) -> Result<(u16, String), String> {
    client
        .try_request(
            "POST",
            PUSH_PATH,
            &[("Content-Type", Codec::Proto.content_type())],
            Some(body),
        )
        .map(|r| (r.status, r.text()))
}

#[test]
fn a_restart_with_a_large_log_is_live_and_shows_its_replay_on_ready() {
    let data = tempfile::tempdir().unwrap();
    let mut ember = EmberProcess::start_in(data.path(), &NO_RATE_LIMIT);
    let start = now_nanos() - 60_000_000_000;
    let heap = testdata::read("heap.pb.gz");
    let client = ember.client();
    let pushing = Instant::now();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let (client, acked, heap) = (client.clone(), acked.clone(), heap.clone());
            std::thread::spawn(move || {
                for id in (p..PUSHES).step_by(PUSHERS) {
                    let (status, text) = push(&client, &push_body(&heap, id)).unwrap();
                    assert_eq!(status, 200, "push {id}: {text}");
                    acked.lock().unwrap().insert(id);
                }
            })
        })
        .collect();
    for pusher in pushers {
        pusher.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), PUSHES);
    eprintln!("pushed {PUSHES} in {:?}", pushing.elapsed());
    ember.kill();

    ember.restart_without_waiting();
    let client = ember.client();
    let began = Instant::now();
    let mut replaying = Vec::new();
    let mut refused_write = None;
    let mut live_while_unready = 0;
    let unacked = PUSHES + 1;
    loop {
        assert!(ember.is_running(), "ember exited during the replay");
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "not ready within 120s; /ready said {replaying:?}"
        );
        let Ok(ready) = client.try_request("GET", "/ready", &[], None) else {
            // Not bound yet.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if ready.status == 200 {
            assert_eq!(ready.text(), "ready\n");
            break;
        }
        assert_eq!(ready.status, 503, "{}", ready.text());
        let live = client.try_request("GET", "/live", &[], None).unwrap();
        assert_eq!(live.status, 200, "/live while not ready");
        live_while_unready += 1;
        for line in ready.text().lines() {
            if line.starts_with("replaying write-ahead log: ") {
                replaying.push(line.to_owned());
            }
        }
        if !replaying.is_empty() && refused_write.is_none() {
            // A write during the replay is refused, not half-taken.
            refused_write = Some(push(&client, &push_body(&heap, unacked)).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let replay_took = began.elapsed();
    eprintln!(
        "ready after {replay_took:?}; /ready during the replay ({} answers): first {:?}, last {:?}",
        replaying.len(),
        replaying.first(),
        replaying.last()
    );
    assert!(
        live_while_unready > 0,
        "/live was never asked while unready"
    );
    assert!(
        replaying.iter().any(|l| {
            let rest = l.trim_start_matches("replaying write-ahead log: ");
            rest.split('%')
                .next()
                .is_some_and(|p| p.parse::<u32>().is_ok_and(|p| p <= 100))
                && (rest.contains(" records") || rest.contains(" bytes"))
        }),
        "/ready showed the replay with a percentage: {replaying:?}"
    );
    let (status, text) = refused_write.expect("a write was tried during the replay");
    assert_eq!(status, 503, "a write during the replay: {text}");
    assert!(text.contains("replaying write-ahead log"), "{text}");

    let range = TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    let counted = crate::load::counted_in(&client, SERVICE, range);
    for id in &acked {
        assert_eq!(
            counted.get(id).copied(),
            Some(VALUE),
            "acknowledged push {id} is counted exactly once after the replay"
        );
    }
    assert!(
        !counted.contains_key(&unacked),
        "the write refused during the replay was not kept"
    );
    assert_eq!(counted.len(), acked.len());
    let log = ember.log();
    assert!(log.contains("replayed write-ahead log"));
    if replay_took > Duration::from_secs(7) {
        assert!(
            log.contains("msg=\"replaying write-ahead log\""),
            "a replay of {replay_took:?} logs its progress"
        );
    }
}

#[test]
fn ready_names_an_unreachable_object_store() {
    let Some(s3) = S3Server::start("ember-health") else {
        return;
    };
    let proxy = PausableProxy::start(s3.addr());
    let conf = tempfile::tempdir().unwrap();
    let config = write_file(
        conf.path(),
        "ember.yaml",
        s3.storage_yaml(&proxy.endpoint()).as_bytes(),
    );
    let config = format!("-config.file={}", config.display());
    // A process with an ingester takes writes into its log through an outage:
    // it stays ready and names the store; a compactor cannot work without it.
    let all = EmberProcess::start(&[&config]);
    let compactor = EmberProcess::start(&[&config, "-target=compactor"]);
    let (all, compactor) = (all.client(), compactor.client());
    assert_eq!(all.get("/ready").status, 200);
    assert_eq!(compactor.get("/ready").status, 200);

    proxy.pause();
    let named = |client: &Client, status: u16| {
        let ready = client.get("/ready");
        let text = ready.text();
        if ready.status == status && text.contains("object store unreachable: ") {
            Ok(text)
        } else {
            Err(format!("{}: {text}", ready.status))
        }
    };
    let why = eventually(
        "the compactor's /ready names the store",
        Duration::from_secs(45),
        || named(&compactor, 503),
    );
    eprintln!("compactor /ready with the object store down: {why}");
    let why = eventually(
        "-target=all's /ready names the store",
        Duration::from_secs(45),
        || named(&all, 200),
    );
    assert!(why.starts_with("ready\n"), "{why}");
    assert_eq!(compactor.get("/live").status, 200, "still alive");

    proxy.resume();
    for client in [&all, &compactor] {
        eventually(
            "/ready once the store is back",
            Duration::from_secs(45),
            || {
                let ready = client.get("/ready");
                (ready.status == 200 && ready.text() == "ready\n")
                    .then_some(())
                    .ok_or_else(|| ready.text())
            },
        );
    }
}

/// Pushes one profile and asks for it back, so that requests are logged.
fn exercise(client: &Client) {
    let pprof = PprofBuilder::go_cpu()
        .time(now_nanos(), 10_000_000_000)
        .sample(&["main", "work"], &[1, 10])
        .encode();
    let body = push_request(&[("service_name", "logged")], &pprof).encode_to_vec();
    assert_eq!(push(client, &body).unwrap().0, 200);
    let range = TimeRange::new(
        now_nanos() / 1_000_000 - 60_000,
        now_nanos() / 1_000_000 + 60_000,
    );
    let _ = client.label_values(None, "service_name", &[], range);
}

#[test]
fn json_logs_parse_and_log_files_hold_no_colour_codes() {
    let mut ember = EmberProcess::start(&["-log.format=json", "-log.level=debug"]);
    exercise(&ember.client());
    ember.stop();
    let log = ember.log();
    let mut lines = 0;
    let mut request_line = None;
    for line in log.lines().filter(|l| !l.starts_with("===== ember start")) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["msg"].is_string(), "{line}");
        assert!(value["ts"].is_string(), "{line}");
        if value["msg"] == "request" && value["path"] == PUSH_PATH {
            request_line = Some(value);
        }
        lines += 1;
    }
    assert!(lines > 5, "{log}");
    let request = request_line.unwrap_or_else(|| panic!("no request line for the push:\n{log}"));
    assert_eq!(request["level"], "debug");
    assert_eq!(request["method"], "POST");
    assert_eq!(request["status"], 200);
    assert_eq!(request["tenant"], "anonymous");
    assert!(request["duration"].is_string(), "{request}");
    assert!(!log.contains("\u{1b}["), "colour codes in the log file");

    // The default format, logfmt, into a file: no colour codes either.
    let mut ember = EmberProcess::start(&[]);
    exercise(&ember.client());
    ember.stop();
    let log = ember.log();
    assert!(log.contains("level=info"), "{log}");
    assert!(log.contains("msg=\"ember is serving\""), "{log}");
    assert!(
        !log.contains("\u{1b}["),
        "colour codes in the log file:\n{log}"
    );
    assert!(
        !log.contains("msg=request "),
        "request lines are debug, not info"
    );
}
