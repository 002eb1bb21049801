//! Acceptance: a cluster of separate `ember` processes — one distributor,
//! three ingesters with replication factor 3, one querier — keeps every
//! acknowledged profile while an ingester is killed with SIGKILL mid-load, and
//! counts each exactly once although every profile is stored three times.
//! Then a compactor merges the replicated blocks: fewer blocks, the same
//! answers. Blocks go to a real S3-compatible server (moto) started by the test.

use std::path::Path;
use std::time::Duration;

use ember_tests::process::{free_port, write_file};
use ember_tests::s3::S3Server;
use ember_tests::{Client, EmberProcess, TimeRange, eventually, now_nanos};
use serde_json::Value;

use crate::load::{Load, check_exactly_once, counted};
use crate::spans::check_span_heatmap;

/// The members a process sees in its ring, as `(name, state, is an ingester)`.
fn ring(client: &Client) -> Vec<(String, String, bool)> {
    let json = client.get("/ring?format=json").json();
    json["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m: &Value| {
                    (
                        m["name"].as_str().unwrap_or_default().to_owned(),
                        m["state"].as_str().unwrap_or_default().to_owned(),
                        m["roles"]["ingester"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `client`'s ring shows `n` ACTIVE ingesters.
pub(crate) fn wait_for_active_ingesters(client: &Client, n: usize) {
    eventually(
        "ingesters ACTIVE in the ring",
        Duration::from_secs(60),
        || {
            let members = ring(client);
            let active = members
                .iter()
                .filter(|(_, state, ingester)| *ingester && state == "ACTIVE")
                .count();
            if active == n {
                Ok(())
            } else {
                Err(format!("ring: {members:?}"))
            }
        },
    );
}

/// Moto as S3, and the flag that loads an Ember configuration storing there.
pub(crate) struct Storage {
    pub(crate) s3: S3Server,
    pub(crate) flag: String,
    _config_dir: tempfile::TempDir,
}

impl Storage {
    /// Starts moto with `bucket`; `None` when moto is not installed (see
    /// [`S3Server::start`]).
    pub(crate) fn start(bucket: &str) -> Option<Self> {
        let s3 = S3Server::start(bucket)?;
        let dir = tempfile::tempdir().unwrap();
        let config = write_file(
            dir.path(),
            "ember.yaml",
            s3.storage_yaml(&s3.endpoint()).as_bytes(),
        );
        Some(Self {
            s3,
            flag: format!("-config.file={}", config.display()),
            _config_dir: dir,
        })
    }
}

pub(crate) struct Cluster {
    pub(crate) distributor: EmberProcess,
    pub(crate) ingesters: Vec<EmberProcess>,
    pub(crate) querier: EmberProcess,
}

impl Cluster {
    /// Starts one distributor, an ingester per entry of `zones` (its
    /// availability zone, "" for none) and one querier; `storage` is the flag
    /// that loads the S3 configuration, `flags` go to every process.
    pub(crate) fn start(storage: &str, wal: &Path, zones: &[&str], flags: &[&str]) -> Self {
        let seed_port = free_port();
        let seed = format!("-memberlist.join=127.0.0.1:{seed_port}");
        let with = |own: &[&str]| EmberProcess::start(&[&[storage], own, flags].concat());
        let distributor = with(&[
            "-target=distributor",
            &format!("-memberlist.bind-port={seed_port}"),
            "-memberlist.node-name=distributor",
        ]);
        let ingesters = zones
            .iter()
            .zip(1..)
            .map(|(zone, i)| {
                with(&[
                    "-target=ingester",
                    &seed,
                    // Fixed across restarts: the name keeps the tokens.
                    &format!("-memberlist.bind-port={}", free_port()),
                    &format!("-memberlist.node-name=ingester-{i}"),
                    &format!("-ingester.wal-dir={}", wal.join(i.to_string()).display()),
                    &format!("-ingester.availability-zone={zone}"),
                    // Blocks are cut during the test, so reads meet copies in
                    // ingesters and in blocks at once.
                    "-ingester.max-block-duration=5s",
                    "-ingester.flush-interval=1s",
                ])
            })
            .collect();
        let querier = with(&["-target=querier", &seed, "-memberlist.node-name=querier"]);
        Self {
            distributor,
            ingesters,
            querier,
        }
    }
}

#[test]
fn replicated_cluster_survives_an_ingester_sigkill_and_counts_each_profile_once() {
    let Some(moto) = Storage::start("ember-cluster") else {
        return;
    };
    let (s3, storage) = (&moto.s3, &moto.flag);
    let wal = tempfile::tempdir().unwrap();
    let start = now_nanos() - 60_000_000_000;
    let mut cluster = Cluster::start(storage, wal.path(), &["", "", ""], &[]);
    let push_client = cluster.distributor.client();
    wait_for_active_ingesters(&push_client, 3);
    wait_for_active_ingesters(&cluster.querier.client(), 3);
    push_annotated(&push_client);
    let range = TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    assert_eq!(
        annotations(&cluster.querier.client(), range),
        expected_annotations(),
        "from the ingesters"
    );
    let span = [(SPAN.to_owned(), 10_000_000)];
    let querier = cluster.querier.client();
    check_span_heatmap(&querier, "annotated", range, &span, "from the ingesters");

    let load = Load::start(&push_client, false);
    load.wait_for(60, Duration::from_secs(60));
    // Mid-load: one replica dies; a quorum of two still acknowledges.
    cluster.ingesters[1].kill();
    let at_kill = load.acked();
    load.wait_for(at_kill + 60, Duration::from_secs(60));
    // Gossip notices the dead member and stops placing writes on it.
    wait_for_active_ingesters(&push_client, 2);
    load.wait_for(load.acked() + 60, Duration::from_secs(60));
    // Queries go on with one ingester down, and miss nothing acknowledged.
    let acked_before = load.acked_ids();
    let range = TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    let while_down = counted(&cluster.querier.client(), range);
    check_exactly_once(
        &while_down,
        &acked_before,
        usize::MAX,
        "with an ingester down",
    );
    cluster.ingesters[1].restart();
    assert!(
        cluster.ingesters[1]
            .log()
            .contains("replayed write-ahead log"),
        "the restarted ingester replays its log"
    );
    wait_for_active_ingesters(&push_client, 3);
    let at_rejoin = load.acked();
    load.wait_for(at_rejoin + 40, Duration::from_secs(60));
    let (acked, sent) = load.finish();

    let client = cluster.querier.client();
    let range = TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    let counted = counted(&client, range);
    eprintln!(
        "acknowledged {}, sent {sent}, counted {}",
        acked.len(),
        counted.len()
    );
    check_exactly_once(&counted, &acked, sent, "in the cluster");

    // Once heads are flushed, blocks hold three copies of every profile:
    // still each once.
    for ingester in &mut cluster.ingesters {
        ingester.stop();
    }
    let from_blocks = counted_everything(&client, range);
    check_exactly_once(&from_blocks.0, &acked, sent, "from blocks only");

    // The compactor merges the level-1 blocks (5 s each, three copies) into
    // 10 s blocks, then 40 s ones, and deletes the sources after a delay.
    let level_1 = s3.blocks(TENANT);
    let mut compactor = EmberProcess::start(&[
        storage,
        "-target=compactor",
        "-compactor.block-ranges=10s,40s",
        "-compactor.compaction-interval=1s",
        "-compactor.settle-delay=1s",
        "-compactor.deletion-delay=2s",
    ]);
    eventually(
        "sources merged and deleted",
        Duration::from_secs(120),
        || {
            let blocks = s3.blocks(TENANT);
            if blocks.iter().all(|b| !level_1.contains(b)) && !blocks.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} blocks, {} level-1 ones",
                    blocks.len(),
                    blocks.iter().filter(|b| level_1.contains(*b)).count()
                ))
            }
        },
    );
    let compacted = s3.blocks(TENANT);
    eprintln!(
        "{} level-1 blocks compacted into {}",
        level_1.len(),
        compacted.len()
    );
    // How many ranges the run spans, and so how many blocks remain, depends on
    // its pace; every remaining block is a merge, and there are fewer of them.
    assert!(
        compacted.len() < level_1.len(),
        "copies become one: {} blocks from {} level-1 blocks",
        compacted.len(),
        level_1.len()
    );
    for ulid in &compacted {
        let level = s3.block_meta(TENANT, ulid)["compaction"]["level"].as_u64();
        assert!(
            level.is_some_and(|l| l >= 2),
            "{ulid} is not compacted: level {level:?}"
        );
    }
    let after = counted_everything(&client, range);
    check_exactly_once(&after.0, &acked, sent, "after compaction");
    assert_eq!(
        after, from_blocks,
        "the same answers before and after compaction"
    );
    assert_eq!(
        annotations(&client, range),
        expected_annotations(),
        "after compaction"
    );
    let span = [(SPAN.to_owned(), 10_000_000)];
    check_span_heatmap(&client, "annotated", range, &span, "after compaction");
    assert_eq!(compactor.stop().code(), Some(0));
}

const SPAN: &str = "00000000000000c3";
const ANNOTATION: [(&str, &str); 1] = [("pyroscope.ingest.throttled", r#"{"body":{}}"#)];

/// Pushes one profile of service `annotated`, carrying [`ANNOTATION`], its
/// one sample taken in [`SPAN`].
fn push_annotated(client: &Client) {
    let profile = ember_tests::pprof::PprofBuilder::go_cpu()
        .time(now_nanos(), 10_000_000_000)
        .sample_with_labels(
            &["main", "annotated"],
            &[1, 10_000_000],
            &[("span_id", SPAN)],
        )
        .encode();
    let mut req = ember_tests::client::push_request(&[("service_name", "annotated")], &profile);
    req.series[0].annotations = ANNOTATION
        .iter()
        .map(|(key, value)| ember_proto::types::v1::ProfileAnnotation {
            key: (*key).into(),
            value: (*value).into(),
        })
        .collect();
    let resp = client.push(None, &req, ember_tests::PushEncoding::PROTO);
    assert!(resp.is_success(), "{}", resp.text());
}

fn expected_annotations() -> Vec<(String, String)> {
    ANNOTATION
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Returns the annotations on the points of service `annotated`.
fn annotations(client: &Client, range: TimeRange) -> Vec<(String, String)> {
    let (status, answer) = client.connect_json(
        None,
        "/querier.v1.QuerierService/SelectSeries",
        &serde_json::json!({
            "profileTypeID": crate::load::CPU,
            "labelSelector": "{service_name=\"annotated\"}",
            "start": range.start,
            "end": range.end,
            "step": 3600.0,
        }),
    );
    assert_eq!(status, 200, "SelectSeries: {answer}");
    let points = answer["series"][0]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    points
        .iter()
        .flat_map(|p| p["annotations"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (text("key"), text("value"))
        })
        .collect()
}

/// The tenant of an Ember without multi-tenancy.
const TENANT: &str = "anonymous";

/// Returns each push's count, the label sets and the time-series total: what
/// must not change when blocks are compacted.
fn counted_everything(
    client: &Client,
    range: TimeRange,
) -> (std::collections::BTreeMap<usize, i64>, Value, i64) {
    let (status, series) = client.connect_json(
        None,
        "/querier.v1.QuerierService/Series",
        &serde_json::json!({"matchers": [], "start": range.start, "end": range.end}),
    );
    assert_eq!(status, 200, "Series: {series}");
    let (status, points) = client.connect_json(
        None,
        "/querier.v1.QuerierService/SelectSeries",
        &serde_json::json!({
                "profileTypeID": crate::load::CPU,
                "labelSelector": "{}",
                "start": range.start,
                "end": range.end,
            "step": 1.0,
        }),
    );
    assert_eq!(status, 200, "SelectSeries: {points}");
    let total: i64 = points["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["points"].as_array().into_iter().flatten())
        .map(|p| p["value"].as_f64().unwrap_or(0.0) as i64)
        .sum();
    (counted(client, range), series, total)
}
