//! Acceptance: `ember -target=all` killed with SIGKILL during a steady push and
//! started again on the same data directory loses no acknowledged profile and
//! counts none twice — from the replayed write-ahead log, and again after the
//! replayed heads are flushed into blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use ember_tests::client::push_request;
use ember_tests::pprof::PprofBuilder;
use ember_tests::{
    Client, Codec, EmberProcess, PUSH_PATH, TimeRange, eventually, flame, now_nanos,
};
use prost::Message;

const SERVICE: &str = "crash-recovery";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// The CPU value of each push's one sample.
const VALUE: i64 = 7_000;
const PUSHERS: usize = 4;

/// Pushes profile `id`, whose one stack ends in a function unique to it.
/// Returns whether the server acknowledged it (HTTP 200).
fn push(client: &Client, id: usize) -> bool {
    let leaf = format!("push_{id}");
    let pprof = PprofBuilder::go_cpu()
        .time(now_nanos(), 10_000_000_000)
        .sample(&["main", &leaf], &[1, VALUE])
        .encode();
    let body = push_request(&[("service_name", SERVICE)], &pprof).encode_to_vec();
    client
        .try_request(
            "POST",
            PUSH_PATH,
            &[("Content-Type", Codec::Proto.content_type())],
            Some(&body),
        )
        .is_ok_and(|r| r.status == 200)
}

/// Returns each push's CPU total in the flame graph, by push id.
fn counted(client: &Client, range: TimeRange) -> BTreeMap<usize, i64> {
    let fg = client.flame_graph(
        None,
        CPU,
        &format!(r#"{{service_name="{SERVICE}"}}"#),
        range,
        Some(1 << 20),
        Codec::Proto,
    );
    let nodes = flame::checked_nodes(&fg, "crash recovery");
    flame::tree(&nodes)
        .into_iter()
        .filter_map(|(path, (total, _))| {
            let id = path.get(1)?.strip_prefix("push_")?.parse().ok()?;
            (path.len() == 2).then_some((id, total))
        })
        .collect()
}

fn check_exactly_once(
    counted: &BTreeMap<usize, i64>,
    acked: &BTreeSet<usize>,
    sent: usize,
    when: &str,
) {
    for id in acked {
        assert_eq!(
            counted.get(id).copied(),
            Some(VALUE),
            "{when}: acknowledged push {id} must be counted exactly once"
        );
    }
    for (id, total) in counted {
        assert!(*id < sent, "{when}: push {id} was never sent");
        // A push in flight at the kill may or may not have been stored, but never twice.
        assert_eq!(*total, VALUE, "{when}: push {id} counted {total}");
    }
}

#[test]
fn sigkill_during_pushes_loses_no_acknowledged_profile() {
    let data = tempfile::tempdir().unwrap();
    let mut ember = EmberProcess::start_in(data.path(), &[]);
    let start = now_nanos() - 60_000_000_000;
    let client = ember.client();

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sent = 0;
                // Ids p, p + PUSHERS, ... until the server goes away.
                while !stop.load(Ordering::Acquire) {
                    let id = p + sent * PUSHERS;
                    sent += 1;
                    if push(&client, id) {
                        acked.lock().unwrap().insert(id);
                    } else {
                        break;
                    }
                }
                sent
            })
        })
        .collect();

    eventually("pushes acknowledged", Duration::from_secs(30), || {
        let n = acked.lock().unwrap().len();
        if n >= 60 {
            Ok(())
        } else {
            Err(format!("{n} acknowledged"))
        }
    });
    // Mid-load: the pushers are still sending.
    ember.kill();
    stop.store(true, Ordering::Release);
    let sent_per_pusher: Vec<usize> = pushers.into_iter().map(|t| t.join().unwrap()).collect();
    let sent = sent_per_pusher.iter().max().unwrap() * PUSHERS;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 60);

    ember.restart();
    let client = ember.client();
    let range = TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    let after_crash = counted(&client, range);
    eprintln!(
        "acknowledged {}, sent {sent}, counted after restart {}",
        acked.len(),
        after_crash.len()
    );
    check_exactly_once(&after_crash, &acked, sent, "after SIGKILL and restart");
    assert!(
        ember.log().contains("replayed write-ahead log"),
        "the restart replays the log"
    );

    // The restarted process takes writes, and a clean stop flushes the replayed
    // heads into blocks: still every acknowledged push exactly once.
    let mut acked = acked;
    for id in sent..sent + 10 {
        assert!(push(&client, id), "push {id} after restart");
        acked.insert(id);
    }
    ember.stop();
    ember.restart();
    let client = ember.client();
    let range = TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    let from_blocks = counted(&client, range);
    check_exactly_once(&from_blocks, &acked, sent + 10, "after flush and restart");
    assert_eq!(
        from_blocks.keys().filter(|id| **id < sent).count(),
        after_crash.len(),
        "the flush keeps what the replay had"
    );
    let wal = std::fs::read_dir(data.path().join("wal")).unwrap().count();
    assert_eq!(
        wal, 1,
        "flushed segments are deleted; only the open one remains"
    );
}
