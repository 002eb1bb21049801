//! Acceptance: Ember on a real S3-compatible server (moto, see
//! `ember_tests::s3`), path style over plain HTTP as with MinIO or Ceph.
//!
//! - Blocks flushed on SIGTERM land in the bucket, and a new process with an
//!   empty local disk answers the same queries from them.
//! - With the S3 server unreachable for a minute during flushes, every push is
//!   still acknowledged (the write-ahead log and the heads hold the profiles),
//!   the log keeps its segments, and once the server is back the blocks are
//!   uploaded, the segments deleted, and every acknowledged profile is counted
//!   exactly once — also after a SIGKILL and a restart.
//! - A SIGKILL in the middle of an outage, and a restart while S3 is still
//!   down, lose and double nothing either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use ember_tests::block;
use ember_tests::checks::{service_selector, the_type_with_data};
use ember_tests::process::write_file;
use ember_tests::s3::{PausableProxy, S3Server};

use crate::load::{VALUE, counted, try_push};
use ember_tests::{
    Client, Codec, EmberProcess, MULTITENANCY, TimeRange, eventually, flame, now_nanos, pprof,
    testdata,
};

const BUCKET: &str = "ember-blocks";
const SEC: i64 = 1_000_000_000;

type Tree = BTreeMap<Vec<String>, (i64, i64)>;

/// Writes an Ember configuration file storing in `s3`'s bucket through
/// `endpoint`, plus `extra` YAML, and returns the flag that loads it.
fn config_flag(dir: &Path, s3: &S3Server, endpoint: &str, extra: &str) -> String {
    let yaml = format!("{}{extra}", s3.storage_yaml(endpoint));
    let path = write_file(dir, "ember.yaml", yaml.as_bytes());
    format!("-config.file={}", path.display())
}

/// Files pushed by the restart test: (file, service, age in seconds).
const PUSHES: &[(&str, &str, i64)] = &[
    ("cpu.pb.gz", "api", 600),
    ("go.cpu.labels.pprof", "api", 300),
    ("heap.pb.gz", "store", 300),
    ("req_3.pprof", "locks", 0),
];

/// (service, sample type, unit) → the sum of every pushed value.
type Expected = BTreeMap<(String, String, String), i64>;

/// Returns each (service, sample type, unit)'s flame graph: its total and tree.
fn flame_graphs(
    client: &Client,
    tenant: &str,
    range: TimeRange,
    expected: &Expected,
) -> BTreeMap<(String, String, String), (i64, Tree)> {
    expected
        .keys()
        .map(|key @ (service, sample_type, unit)| {
            let (id, _) = the_type_with_data(
                client,
                Some(tenant),
                range,
                &service_selector(service),
                sample_type,
                unit,
            );
            let fg = client.flame_graph(
                Some(tenant),
                &id,
                &service_selector(service),
                range,
                Some(1 << 20),
                Codec::Proto,
            );
            let nodes = flame::checked_nodes(&fg, &format!("{key:?}"));
            (key.clone(), (fg.total, flame::tree(&nodes)))
        })
        .collect()
}

fn assert_totals(
    graphs: &BTreeMap<(String, String, String), (i64, Tree)>,
    expected: &Expected,
    when: &str,
) {
    let totals: Expected = graphs.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
    assert_eq!(
        &totals, expected,
        "{when}: flame-graph totals vs what was pushed"
    );
}

#[test]
fn s3_blocks_answer_queries_after_losing_the_local_disk() {
    const TENANT: &str = "s3-tenant";
    let Some(s3) = S3Server::start(BUCKET) else {
        return;
    };
    let conf = tempfile::tempdir().unwrap();
    // `host:port` without a scheme: `insecure` makes it plain HTTP.
    let config = config_flag(conf.path(), &s3, &s3.addr().to_string(), "");
    let mut ember = EmberProcess::start(&[MULTITENANCY, &config]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 3_600_000);

    let mut expected = Expected::new();
    for (file, service, age) in PUSHES {
        let raw = testdata::read(file);
        let profile = pprof::decode(&raw).unwrap();
        for e in pprof::expectations(&profile) {
            *expected
                .entry((service.to_string(), e.sample_type, e.sample_unit))
                .or_default() += e.sum;
        }
        client.push_pprof(
            Some(TENANT),
            &[("service_name", service), ("__delta__", "false")],
            &pprof::with_time_nanos(&raw, now - age * SEC),
        );
    }
    // cpu+samples (api), 4 memory types (store), contentions+delay (locks).
    assert_eq!(expected.len(), 2 + 4 + 2, "{expected:?}");
    let before = flame_graphs(&client, TENANT, range, &expected);
    assert_totals(&before, &expected, "from the heads");

    ember.stop();
    let blocks = s3.blocks(TENANT);
    assert!(
        !blocks.is_empty(),
        "no block of {TENANT} in the bucket after SIGTERM; it holds:\n{}",
        s3.describe()
    );
    let keys: BTreeSet<String> = s3.list("").into_iter().map(|o| o.key).collect();
    let mut profiles = 0;
    for ulid in &blocks {
        for file in [
            block::layout::META,
            block::layout::PROFILES,
            block::layout::SERIES,
        ] {
            let key = format!("{TENANT}/blocks/{ulid}/{file}");
            assert!(keys.contains(&key), "{key} is missing:\n{}", s3.describe());
        }
        let meta = s3.block_meta(TENANT, ulid);
        profiles += block::json_path(&meta, block::layout::META_PROFILES)
            .and_then(|v| v.as_i64())
            .unwrap_or_else(|| panic!("{ulid}/meta.json has no profile count: {meta}"));
    }
    assert!(profiles >= expected.len() as i64, "{profiles} profile rows");
    assert!(
        block::block_dirs(ember.data_dir(), TENANT).is_empty(),
        "blocks went to the local disk, not to S3:\n{}",
        block::list_files(ember.data_dir())
    );

    // A new process with nothing on its local disk: everything comes from S3.
    let mut fresh = EmberProcess::start(&[MULTITENANCY, &config]);
    let client = fresh.client();
    let after = flame_graphs(&client, TENANT, range, &expected);
    assert_totals(&after, &expected, "from S3 with an empty local disk");
    assert_eq!(before, after, "flame graphs changed across the move to S3");
    assert!(
        client.profile_types(Some("someone-else"), range).is_empty(),
        "another tenant sees the data"
    );
    fresh.stop();
    assert_eq!(
        s3.blocks(TENANT),
        blocks,
        "a process that only read uploaded blocks"
    );
}

/// Multi-tenancy is off: everything belongs to this tenant.
const TENANT: &str = "anonymous";
/// How long the S3 server is unreachable.
const OUTAGE: Duration = Duration::from_secs(60);
/// The time between two pushes during the outage.
const PUSH_EVERY: Duration = Duration::from_millis(250);

/// Pushes `id` and fails the test unless it is acknowledged.
fn push_acked(ember: &EmberProcess, client: &Client, id: usize, when: &str) {
    match try_push(client, id) {
        Ok(200) => {}
        other => panic!(
            "{when}: push {id} was not acknowledged: {other:?}\n----- ember log -----\n{}",
            ember.log_tail()
        ),
    }
}

/// Fails unless each of pushes `0..pushed` is counted exactly once.
fn assert_exactly_once(client: &Client, range: TimeRange, pushed: usize, when: &str) {
    let counted = counted(client, range);
    let expected: BTreeMap<usize, i64> = (0..pushed).map(|id| (id, VALUE)).collect();
    if counted != expected {
        let missing: Vec<_> = (0..pushed).filter(|id| !counted.contains_key(id)).collect();
        let wrong: Vec<_> = counted.iter().filter(|(_, v)| **v != VALUE).collect();
        panic!(
            "{when}: {} of {pushed} acknowledged pushes counted; missing {missing:?}; \
             counted other than once {wrong:?}",
            counted.len()
        );
    }
}

/// Returns the names of the write-ahead log's segment files.
fn wal_segments(data_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data_dir.join("wal"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".wal"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every head is uploaded: the log is down to its open segment and
/// the bucket holds more than `known` blocks.
fn wait_all_uploaded(
    ember: &EmberProcess,
    s3: &S3Server,
    known: &BTreeSet<String>,
    timeout: Duration,
) -> BTreeSet<String> {
    eventually("every head uploaded", timeout, || {
        let segments = wal_segments(ember.data_dir());
        let blocks = s3.blocks(TENANT);
        if segments.len() == 1 && blocks.len() > known.len() && blocks.is_superset(known) {
            Ok(blocks)
        } else {
            Err(format!(
                "write-ahead log segments {segments:?}; {} blocks in the bucket, {} before",
                blocks.len(),
                known.len()
            ))
        }
    })
}

/// Ember on S3 behind a pausable proxy, cutting heads and trying uploads
/// every second, with ten profiles pushed and uploaded before any outage.
struct OutageRig {
    s3: S3Server,
    proxy: PausableProxy,
    ember: EmberProcess,
    client: Client,
    start: i64,
    pushed: usize,
    blocks_before: BTreeSet<String>,
    data: tempfile::TempDir,
    _conf: tempfile::TempDir,
}

impl OutageRig {
    fn start() -> Option<Self> {
        let s3 = S3Server::start(BUCKET)?;
        let proxy = PausableProxy::start(s3.addr());
        let conf = tempfile::tempdir().unwrap();
        let ingester = "ingester:\n  max_block_duration: 1s\n  flush_interval: 1s\n";
        let config = config_flag(conf.path(), &s3, &proxy.endpoint(), ingester);
        let data = tempfile::tempdir().unwrap();
        let ember = EmberProcess::start_in(data.path(), &[&config]);
        let client = ember.client();
        let start = now_nanos() - 60 * SEC;
        // Before: flushes through the proxy reach the bucket.
        for pushed in 0..10 {
            push_acked(&ember, &client, pushed, "before the outage");
        }
        let blocks_before =
            wait_all_uploaded(&ember, &s3, &BTreeSet::new(), Duration::from_secs(60));
        Some(Self {
            s3,
            proxy,
            ember,
            client,
            start,
            pushed: 10,
            blocks_before,
            data,
            _conf: conf,
        })
    }
}

#[test]
fn s3_outage_during_flushes_loses_and_doubles_nothing() {
    let Some(rig) = OutageRig::start() else {
        return;
    };
    // What changes as the test goes on; the rest stays the rig's.
    let (mut ember, client, mut pushed) = (rig.ember, rig.client, rig.pushed);

    // The outage: a minute of pushes, each one acknowledged.
    rig.proxy.pause();
    let outage_start = Instant::now();
    let mut held = BTreeSet::new();
    while outage_start.elapsed() < OUTAGE {
        push_acked(&ember, &client, pushed, "during the outage");
        pushed += 1;
        if held.is_empty() && outage_start.elapsed() > Duration::from_secs(5) {
            // Segments written during the outage; none may go before its upload.
            held = wal_segments(ember.data_dir());
        }
        std::thread::sleep(PUSH_EVERY);
    }
    let segments = wal_segments(ember.data_dir());
    let refused = rig.proxy.refused();
    eprintln!(
        "outage of {:?}: {pushed} pushes acknowledged, {refused} S3 connections refused, \
         write-ahead log segments {segments:?}",
        outage_start.elapsed()
    );
    assert!(
        refused > 0,
        "ember did not try to reach S3 during the outage: were heads cut and flushed?"
    );
    assert_eq!(
        rig.s3.blocks(TENANT),
        rig.blocks_before,
        "no block can be uploaded while S3 is unreachable"
    );
    assert!(
        !held.is_empty() && held.is_subset(&segments),
        "write-ahead log segments were deleted before their upload: {held:?} then {segments:?}"
    );
    assert!(
        segments.len() >= 2,
        "heads cut during the outage keep their closed segments: {segments:?}"
    );
    // An upload is retried inside the object store client (with backoff, about
    // a minute in all) before the flush gives up on it and logs so.
    eprintln!(
        "a failed flush was logged during the outage: {}",
        ember.log().contains("flushing block failed, will retry")
    );

    // S3 is back: the queued heads are uploaded and the log is checkpointed.
    rig.proxy.resume();
    let resumed = Instant::now();
    let blocks_after = wait_all_uploaded(
        &ember,
        &rig.s3,
        &rig.blocks_before,
        Duration::from_secs(120),
    );
    eprintln!(
        "uploaded {} blocks {:?} after the outage ended",
        blocks_after.len() - rig.blocks_before.len(),
        resumed.elapsed()
    );
    let range = TimeRange::new(rig.start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    assert_exactly_once(&client, range, pushed, "after the outage");

    // What the bucket holds alone: a second process on an empty disk, reading
    // the S3 server directly.
    let reader_conf = tempfile::tempdir().unwrap();
    let reader_config = config_flag(reader_conf.path(), &rig.s3, &rig.s3.endpoint(), "");
    let mut reader = EmberProcess::start(&[&reader_config]);
    assert_exactly_once(&reader.client(), range, pushed, "from the bucket alone");
    reader.stop();

    // A crash now replays nothing that is already in a block.
    ember.kill();
    ember.restart();
    let client = ember.client();
    assert_exactly_once(&client, range, pushed, "after SIGKILL and restart");
    push_acked(&ember, &client, pushed, "after the restart");
    pushed += 1;
    ember.stop();
    assert_eq!(wal_segments(rig.data.path()).len(), 1, "everything flushed");
    let blocks_final = rig.s3.blocks(TENANT);
    assert!(
        blocks_final.is_superset(&blocks_after),
        "blocks are never removed"
    );
    let mut reader = EmberProcess::start(&[&reader_config]);
    assert_exactly_once(
        &reader.client(),
        range,
        pushed,
        "from the bucket at the end",
    );
    reader.stop();
}

/// A crash in the middle of an outage: the restarted process replays its log
/// without S3 (it cannot tell which blocks were uploaded, so it replays them
/// all under their own block IDs), takes writes at once, and uploads when S3
/// is back; nothing is lost and nothing counted twice.
#[test]
fn s3_crash_during_outage_restarts_without_s3() {
    let Some(rig) = OutageRig::start() else {
        return;
    };
    // What changes as the test goes on; the rest stays the rig's.
    let (mut ember, client, mut pushed) = (rig.ember, rig.client, rig.pushed);

    rig.proxy.pause();
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        push_acked(&ember, &client, pushed, "during the outage");
        pushed += 1;
        std::thread::sleep(PUSH_EVERY);
    }
    let segments = wal_segments(rig.data.path());
    assert!(
        segments.len() >= 2,
        "cut heads keep their segments: {segments:?}"
    );
    ember.kill();
    let restart = Instant::now();
    ember.restart();
    eprintln!(
        "restarted with S3 unreachable in {:?}, replaying segments {segments:?}",
        restart.elapsed()
    );
    let client = ember.client();
    let after_restart = Instant::now();
    while after_restart.elapsed() < Duration::from_secs(5) {
        push_acked(
            &ember,
            &client,
            pushed,
            "during the outage, after the restart",
        );
        pushed += 1;
        std::thread::sleep(PUSH_EVERY);
    }
    assert!(
        segments.is_subset(&wal_segments(rig.data.path())),
        "the replayed segments are kept until their heads are uploaded"
    );
    assert_eq!(
        rig.s3.blocks(TENANT),
        rig.blocks_before,
        "S3 was unreachable"
    );

    rig.proxy.resume();
    wait_all_uploaded(
        &ember,
        &rig.s3,
        &rig.blocks_before,
        Duration::from_secs(120),
    );
    let range = TimeRange::new(rig.start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    assert_exactly_once(&client, range, pushed, "after the outage");
    ember.stop();
    let reader_conf = tempfile::tempdir().unwrap();
    let reader_config = config_flag(reader_conf.path(), &rig.s3, &rig.s3.endpoint(), "");
    let mut reader = EmberProcess::start(&[&reader_config]);
    assert_exactly_once(&reader.client(), range, pushed, "from the bucket alone");
    reader.stop();
}
