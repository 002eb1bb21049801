//! Acceptance: `ember -target=all` killed with SIGKILL during a steady push and
//! started again on the same data directory loses no acknowledged profile and
//! counts none twice — from the replayed write-ahead log, and again after the
//! replayed heads are flushed into blocks.

use std::time::Duration;

use ember_tests::{EmberProcess, TimeRange, now_nanos};

use crate::load::{Load, check_exactly_once, counted, push};

#[test]
fn sigkill_during_pushes_loses_no_acknowledged_profile() {
    let data = tempfile::tempdir().unwrap();
    let mut ember = EmberProcess::start_in(data.path(), &[]);
    let start = now_nanos() - 60_000_000_000;
    let client = ember.client();

    let load = Load::start(&client, true);
    load.wait_for(60, Duration::from_secs(30));
    // Mid-load: the pushers are still sending.
    ember.kill();
    let (acked, sent) = load.finish();
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
    let wal = std::fs::read_dir(data.path().join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wal")
        })
        .count();
    assert_eq!(
        wal, 1,
        "flushed segments are deleted; only the open one remains"
    );
}

#[test]
fn a_second_process_on_the_same_write_ahead_log_refuses_to_start() {
    let ember = EmberProcess::start(&[]);
    let dir = ember.data_dir().display().to_string();
    let binary = ember_tests::process::ember_binary();
    let output = ember_testkit::process::ember_command(&binary, 0, ember.data_dir())
        .arg("-memberlist.bind-port=0")
        .output()
        .expect("run ember");
    assert!(!output.status.success(), "a second owner started");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains(&format!("{dir}/wal")) && text.contains("-ingester.wal-dir"),
        "the refusal names the directory and the flag: {text}"
    );
    // The first owner is untouched.
    assert!(ember.client().is_ready());
}
