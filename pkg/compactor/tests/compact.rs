//! The compactor over real profiles, replicated as a cluster stores them:
//! three ingesters flush their own blocks of the same profiles, each with its
//! own symbol tables, one of them missing a profile (a write acknowledged by
//! a quorum). Merged blocks must answer every query exactly as the originals
//! do when each profile ID is counted once.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ember_block::{
    Block, BlockMeta, BlockView, DELETION_MARK_FILE, DeletionMark, META_FILE, MemBlock, block_file,
    blocks_prefix,
};
use ember_compactor::{Compactor, CompactorConfig, CompactorMetrics, Report, Retention};
use ember_model::{
    Labels, ProfileId, flamegraph::FunctionTree, ingest, labels::PROFILE_TYPE, new_profile_id,
    pprof,
};
use ember_proto::google::v1::Profile;
use ember_query::{Downsampling, Plan, ProfileFilter, SourceView};
use ember_symdb::resolve::PprofBuilder;
use ember_testkit::testdata;
use ember_time::ManualClock;
use futures::TryStreamExt;
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, memory::InMemory, path::Path,
};
use ulid::Ulid;

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SECOND;
/// 2024-01-01T00:00:00Z, a multiple of 4 hours (and of a day).
const BASE: i64 = 1_704_067_200 * SECOND;
const TENANT: &str = "tenant-a";

fn at(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos as u64)
}

/// Every profile of the shared test data that decodes.
fn profiles() -> &'static [(String, pprof::FlatProfile)] {
    static PROFILES: OnceLock<Vec<(String, pprof::FlatProfile)>> = OnceLock::new();
    PROFILES.get_or_init(|| {
        let limits = pprof::DecodeLimits {
            max_samples: 0,
            max_stack_depth: 0,
            ..Default::default()
        };
        testdata::decode_all(20, |raw| pprof::decode(raw, &limits))
    })
}

/// One push from a distributor: a profile, its series, time and ID.
#[derive(Clone)]
struct Push {
    profile: usize,
    series: Vec<ingest::SeriesSpec>,
    time: i64,
    id: ProfileId,
}

/// Spreads the test profiles over `hours` hours from [`BASE`], one push
/// each, four services.
fn pushes(hours: i64) -> Vec<Push> {
    pushes_of(hours, usize::MAX)
}

/// Profiles with more samples are left out of tests about blocks rather than
/// their contents: unoptimized builds take seconds over the largest.
const LIGHT: usize = 1000;

/// [`pushes`] of the profiles with at most `max_samples` samples, for tests
/// about blocks rather than their contents.
fn pushes_of(hours: i64, max_samples: usize) -> Vec<Push> {
    profiles()
        .iter()
        .enumerate()
        .filter(|(_, (_, profile))| profile.samples.len() <= max_samples)
        .map(|(i, (path, profile))| {
            let service = format!("svc-{}", i % 4);
            let client = ingest::labels_of(&[("service_name", &service), ("file", path)]);
            Push {
                profile: i,
                series: ingest::series_for(profile, &client),
                time: BASE + (i as i64 % hours) * HOUR + (i as i64 + 1) * SECOND,
                id: new_profile_id(),
            }
        })
        .collect()
}

/// Flushes `pushes` as one ingester would: a head per chunk (`chunk` of each
/// push), appended in the given order. Returns the blocks' ULIDs.
async fn ingest(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    name: &str,
    pushes: &[&Push],
    chunk: impl Fn(&Push) -> i64,
) -> Vec<Ulid> {
    let mut heads: BTreeMap<i64, MemBlock> = BTreeMap::new();
    for p in pushes {
        heads.entry(chunk(p)).or_default().append(
            &profiles()[p.profile].1,
            &p.series,
            p.time,
            p.id,
        );
    }
    let mut ulids = Vec::new();
    for head in heads.values() {
        let block = ember_block::encode_block(&head.to_block_data(name.into())).unwrap();
        ember_block::upload_block(store, tenant, &block)
            .await
            .unwrap();
        ulids.push(head.ulid());
    }
    ulids
}

/// Three replicas of `pushes` with hourly heads: `a` in push order, `b` in
/// reverse (so its services and symbols are numbered differently) with the
/// first hour cut in two, `c` in another order and missing one profile.
/// Returns the blocks by ingester.
async fn replicate(store: &Arc<dyn ObjectStore>, tenant: &str, pushes: &[Push]) -> Vec<Vec<Ulid>> {
    let hour = |p: &Push| (p.time - BASE).div_euclid(HOUR);
    let forward: Vec<&Push> = pushes.iter().collect();
    let reverse: Vec<&Push> = pushes.iter().rev().collect();
    let mut shuffled: Vec<&Push> = pushes.iter().skip(1).collect();
    shuffled.sort_by_key(|p| (p.profile * 7) % 11);
    vec![
        ingest(store, tenant, "ingester-a", &forward, hour).await,
        ingest(store, tenant, "ingester-b", &reverse, |p| {
            hour(p) * 2 + i64::from(hour(p) == 0 && p.profile % 2 == 1)
        })
        .await,
        ingest(store, tenant, "ingester-c", &shuffled, hour).await,
    ]
}

/// [`replicate`]s the pushes of `hours` hours with at most [`LIGHT`] samples
/// for [`TENANT`]; returns every block written.
async fn replicate_light(store: &Arc<dyn ObjectStore>, hours: i64) -> Vec<Ulid> {
    replicate(store, TENANT, &pushes_of(hours, LIGHT))
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn config() -> CompactorConfig {
    CompactorConfig {
        block_ranges: vec![Duration::from_secs(3600), Duration::from_secs(4 * 3600)],
        settle_delay: Duration::from_secs(60),
        deletion_delay: Duration::from_secs(15 * 60),
        compaction_interval: Duration::from_secs(60),
        downsample_resolutions: Vec::new(),
    }
}

fn keep_forever() -> Retention {
    Arc::new(|_: &str| Duration::ZERO)
}

fn compactor(store: &Arc<dyn ObjectStore>, clock: &Arc<ManualClock>) -> Compactor {
    Compactor::new(store.clone(), config(), keep_forever(), clock.clone())
        .unwrap()
        .with_id("compactor-test")
}

/// The complete blocks of `tenant`, with whether each has a deletion mark.
async fn blocks(store: &Arc<dyn ObjectStore>, tenant: &str) -> Vec<(BlockMeta, bool)> {
    let mut out = Vec::new();
    for ulid in ember_block::list_blocks(store, tenant).await.unwrap() {
        let Ok(block) = Block::open(store.clone(), tenant, ulid).await else {
            continue;
        };
        let marked = store
            .head(&block_file(tenant, ulid, DELETION_MARK_FILE))
            .await
            .is_ok();
        out.push((block.meta, marked));
    }
    out
}

/// The blocks a querier reads: complete and not superseded.
async fn live(store: &Arc<dyn ObjectStore>, tenant: &str) -> Vec<BlockMeta> {
    let metas: Vec<BlockMeta> = blocks(store, tenant)
        .await
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    ember_block::live_blocks(&metas)
        .into_iter()
        .cloned()
        .collect()
}

/// Every file under `prefix`.
async fn files(store: &Arc<dyn ObjectStore>, prefix: &Path) -> Vec<Path> {
    store
        .list(Some(prefix))
        .map_ok(|o| o.location)
        .try_collect()
        .await
        .unwrap()
}

async fn views(store: &Arc<dyn ObjectStore>, tenant: &str, ulids: &[Ulid]) -> Vec<BlockView> {
    let mut out = Vec::new();
    for &ulid in ulids {
        let block = Arc::new(Block::open(store.clone(), tenant, ulid).await.unwrap());
        out.push(block.view(true).await.unwrap());
    }
    out
}

/// A pprof sample's stack: per location, leaf first, a hash of its
/// (function, line) frames, address and mapping file. Hashes keep the
/// comparison cheap on profiles of thousands of samples.
type PprofStack = Vec<u64>;

/// What the query API can tell about one profile type.
#[derive(Debug, PartialEq)]
struct TypeAnswers {
    total: i64,
    stacks: BTreeMap<Vec<String>, i64>,
    flamegraph: Option<ember_proto::querier::v1::FlameGraph>,
    pprof: BTreeMap<PprofStack, i64>,
    points: Vec<(Labels, i64, i64, ProfileId)>,
}

#[derive(Debug, PartialEq)]
struct Answers {
    types: BTreeMap<String, TypeAnswers>,
    labels: BTreeSet<Labels>,
}

fn canonical_pprof(p: &Profile) -> BTreeMap<PprofStack, i64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let s = |i: i64| p.string_table[i as usize].as_str();
    let functions: HashMap<u64, &str> = p.function.iter().map(|f| (f.id, s(f.name))).collect();
    let mappings: HashMap<u64, &str> = p.mapping.iter().map(|m| (m.id, s(m.filename))).collect();
    let locations: HashMap<u64, u64> = p
        .location
        .iter()
        .map(|l| {
            let mut h = DefaultHasher::new();
            mappings
                .get(&l.mapping_id)
                .copied()
                .unwrap_or("")
                .hash(&mut h);
            l.address.hash(&mut h);
            for line in &l.line {
                (functions[&line.function_id], line.line).hash(&mut h);
            }
            (l.id, h.finish())
        })
        .collect();
    let mut out = BTreeMap::new();
    for sample in &p.sample {
        let stack: PprofStack = sample.location_id.iter().map(|id| locations[id]).collect();
        *out.entry(stack).or_default() += sample.value[0];
    }
    out.retain(|_, v| *v != 0);
    out
}

/// Evaluates every query over `views`, with a fresh `filter()` per query
/// shared by all the views, as a querier does.
fn answers(views: &[BlockView], filter: impl Fn() -> ProfileFilter) -> Answers {
    let views: Vec<&dyn SourceView> = views.iter().map(|v| v as &dyn SourceView).collect();
    let all = |profile_type: Option<&str>| Plan {
        profiles: filter(),
        ..Plan::new(
            profile_type.map(str::to_owned),
            Vec::new(),
            i64::MIN,
            i64::MAX,
        )
    };
    let mut labels = BTreeSet::new();
    let plan = all(None);
    for v in &views {
        ember_query::series_labels(*v, &plan, &mut |l| {
            labels.insert(l.clone());
        });
    }
    let types: BTreeSet<String> = labels
        .iter()
        .filter_map(|l| l.get(PROFILE_TYPE).map(str::to_owned))
        .collect();
    let mut out = BTreeMap::new();
    for t in types {
        let plan = all(Some(&t));
        let mut tree = FunctionTree::new();
        for v in &views {
            ember_query::merge_tree(*v, &plan, &mut tree).unwrap();
        }
        let plan = all(Some(&t));
        let mut pprof = PprofBuilder::new(("a", "b"), ("", ""), 0);
        for v in &views {
            ember_query::merge_pprof(*v, &plan, &mut pprof).unwrap();
        }
        let plan = all(Some(&t));
        let mut points = Vec::new();
        for v in &views {
            ember_query::points(*v, &plan, &mut |l: &Labels, p| {
                points.push((l.clone(), p.time_nanos, p.total, p.id))
            })
            .unwrap();
        }
        points.sort();
        let mut stacks = BTreeMap::new();
        tree.for_each_stack(|s, v| {
            stacks.insert(s.iter().map(|x| x.to_string()).collect(), v);
        });
        out.insert(
            t,
            TypeAnswers {
                total: tree.total(),
                stacks,
                // Flame graphs draw positive totals only.
                flamegraph: (tree.total() > 0).then(|| tree.to_flamegraph(0)),
                pprof: canonical_pprof(&pprof.finish(0, 0)),
                points,
            },
        );
    }
    Answers { types: out, labels }
}

fn once() -> ProfileFilter {
    ProfileFilter::once_except(Default::default())
}

/// Returns the ID of every profile of `views`.
fn ids(views: &[BlockView]) -> Vec<ProfileId> {
    struct Ids(Vec<ProfileId>);
    impl ember_block::ProfileVisitor for Ids {
        fn visit(&mut self, id: ProfileId, _: u32, _: i64, _: i64, _: Option<(&[u32], &[i64])>) {
            self.0.push(id);
        }
    }
    let mut out = Ids(Vec::new());
    for v in views {
        let selected = vec![true; v.block.series.len()];
        v.scan(&selected, i64::MIN, i64::MAX, false, &mut out)
            .unwrap();
    }
    out.0
}

fn ulids(metas: &[BlockMeta]) -> Vec<Ulid> {
    metas.iter().map(|m| m.ulid).collect()
}

#[tokio::test]
async fn replicas_merge_into_one_block_per_range() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let pushes = pushes(3);
    let replicas = replicate(&store, TENANT, &pushes).await;
    let originals: Vec<Ulid> = replicas.iter().flatten().copied().collect();
    assert_eq!(originals.len(), 3 + 4 + 3);
    let original_views = views(&store, TENANT, &originals).await;
    let before = answers(&original_views, once);
    let mut unique = ids(&original_views);
    let rows_before = unique.len() as u64;
    unique.sort();
    unique.dedup();
    assert!(
        unique.len() * 2 < rows_before as usize,
        "replicas share IDs"
    );
    // The replicas differ in symbols: the same stacks under other IDs. (`a`'s
    // and `b`'s blocks of 01:00 hold the same profiles, appended in reverse.)
    let (a1, b1) = (&original_views[1], &original_views[5]);
    let svc = |v: &BlockView| {
        let p = v
            .block
            .meta
            .partitions
            .iter()
            .position(|p| p == "svc-1")
            .unwrap();
        v.symbols(p as u32).unwrap().stacks.clone()
    };
    let counts = |v: &BlockView| {
        let s = &v.block.meta.stats;
        (s.series, s.profiles, s.samples)
    };
    assert_eq!(counts(a1), counts(b1));
    assert_ne!(svc(a1), svc(b1));

    // Every hour has ended a settle time ago; the 4h range has not.
    let clock = Arc::new(ManualClock::new(at(BASE + 3 * HOUR + 2 * 60 * SECOND)));
    let compactor = compactor(&store, &clock);
    let report = compactor.run_once().await.unwrap();
    assert_eq!(
        report,
        Report {
            tenants: 1,
            groups_merged: 3,
            blocks_written: 3,
            blocks_marked: 10,
            blocks_expired: 0,
            blocks_deleted: 0,
            profiles_before: rows_before,
            profiles_after: unique.len() as u64,
            failures: 0,
        }
    );

    let mut merged = live(&store, TENANT).await;
    merged.sort_by_key(|m| m.min_time_nanos);
    assert_eq!(merged.len(), 3, "one block per hour");
    for (hour, m) in merged.iter().enumerate() {
        assert_eq!(m.compaction.level, 2);
        assert_eq!(m.source, "compactor-test");
        let start = BASE + hour as i64 * HOUR;
        assert!(m.min_time_nanos >= start && m.max_time_nanos < start + HOUR);
        // Its sources: the level-1 blocks of that hour from every ingester.
        let expected: BTreeSet<Ulid> = originals
            .iter()
            .copied()
            .filter(|u| {
                original_views
                    .iter()
                    .find(|v| v.block.meta.ulid == *u)
                    .is_some_and(|v| (v.block.meta.min_time_nanos - BASE) / HOUR == hour as i64)
            })
            .collect();
        assert_eq!(
            m.compaction.sources,
            expected.into_iter().collect::<Vec<_>>()
        );
    }
    // Every original is marked, none deleted yet.
    let all = blocks(&store, TENANT).await;
    assert_eq!(all.len(), 13);
    assert!(
        all.iter()
            .all(|(m, marked)| *marked == originals.contains(&m.ulid))
    );

    let merged_views = views(&store, TENANT, &ulids(&merged)).await;
    let mut merged_ids = ids(&merged_views);
    merged_ids.sort();
    assert_eq!(merged_ids, unique, "each profile once, none lost");
    // Without any de-duplication, the merged blocks answer as the originals
    // do with it.
    let after = answers(&merged_views, || ProfileFilter::All);
    assert_eq!(after, before);
    assert!(before.types.len() > 5 && !before.labels.is_empty());

    // Nothing left to do.
    let again = compactor.run_once().await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

/// A querier reads the merged blocks, never the blocks they replace: with the
/// originals' profiles gone, it still answers as before.
#[tokio::test]
async fn querier_skips_superseded_blocks() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let originals = replicate_light(&store, 2).await;
    let querier = ember_querier::Querier::new(None, store.clone());
    let t = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let plan = Plan::new(Some(t.into()), Vec::new(), i64::MIN, i64::MAX);
    let before = querier.merge_tree(TENANT, &plan).await.unwrap();
    assert!(before.total() > 0);

    let clock = Arc::new(ManualClock::new(at(BASE + 2 * HOUR + 2 * 60 * SECOND)));
    compactor(&store, &clock).run_once().await.unwrap();
    for ulid in &originals {
        store
            .delete(&block_file(TENANT, *ulid, "profiles.parquet"))
            .await
            .unwrap();
    }
    let after = querier.merge_tree(TENANT, &plan).await.unwrap();
    assert_eq!(after.to_flamegraph(0), before.to_flamegraph(0));
}

#[tokio::test]
async fn second_level_merges_level_2_blocks_and_straddlers() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let pushes = pushes(3);
    let hour = |p: &Push| (p.time - BASE) / HOUR;
    let all: Vec<&Push> = pushes.iter().collect();
    let a = ingest(&store, TENANT, "a", &all, hour).await;
    let reverse: Vec<&Push> = pushes.iter().rev().collect();
    let b = ingest(&store, TENANT, "b", &reverse, hour).await;
    // `c` holds 01:00-03:00 in one block, which fits no hour.
    let c = ingest(&store, TENANT, "c", &all, |p| i64::from(hour(p) >= 1)).await;
    let originals: Vec<Ulid> = [a, b, c].concat();
    let before = answers(&views(&store, TENANT, &originals).await, once);

    let clock = Arc::new(ManualClock::new(at(BASE + 3 * HOUR + 2 * 60 * SECOND)));
    let compactor = compactor(&store, &clock);
    let first = compactor.run_once().await.unwrap();
    assert_eq!((first.groups_merged, first.blocks_marked), (3, 7));
    let level_2 = live(&store, TENANT).await;
    let levels: Vec<u32> = level_2.iter().map(|m| m.compaction.level).collect();
    assert_eq!(levels.iter().filter(|l| **l == 2).count(), 3);
    assert_eq!(
        levels.iter().filter(|l| **l == 1).count(),
        1,
        "the straddler waits"
    );

    // The 4h range completes: its level-2 blocks and the straddler merge.
    clock.set(at(BASE + 4 * HOUR + 2 * 60 * SECOND));
    let second = compactor.run_once().await.unwrap();
    assert_eq!(
        (
            second.groups_merged,
            second.blocks_written,
            second.blocks_marked
        ),
        (1, 1, 4)
    );
    let level_3 = live(&store, TENANT).await;
    assert_eq!(level_3.len(), 1);
    assert_eq!(level_3[0].compaction.level, 3);
    let mut sources = originals.clone();
    sources.sort();
    assert_eq!(level_3[0].compaction.sources, sources);
    let merged_views = views(&store, TENANT, &ulids(&level_3)).await;
    let mut merged_ids = ids(&merged_views);
    let n = merged_ids.len();
    merged_ids.sort();
    merged_ids.dedup();
    assert_eq!(merged_ids.len(), n, "no ID twice");
    assert_eq!(answers(&merged_views, || ProfileFilter::All), before);
}

#[tokio::test]
async fn marked_blocks_are_deleted_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let originals = replicate_light(&store, 1).await;
    let marked_at = BASE + HOUR + 2 * 60 * SECOND;
    let clock = Arc::new(ManualClock::new(at(marked_at)));
    let compactor = compactor(&store, &clock);
    assert_eq!(compactor.run_once().await.unwrap().blocks_marked, 4);
    for ulid in &originals {
        let mark = store
            .get(&block_file(TENANT, *ulid, DELETION_MARK_FILE))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mark: DeletionMark = serde_json::from_slice(&mark).unwrap();
        assert_eq!((mark.id, mark.deletion_time), (*ulid, marked_at / SECOND));
    }

    // The bucket index holds every complete block, marked ones included.
    let indexed = || async {
        let index = ember_block::read_index(&store, TENANT).await.unwrap();
        let mut metas = index.expect("written by the pass").blocks;
        metas.sort_by_key(|m| m.ulid);
        metas
    };
    let all = || async {
        blocks(&store, TENANT)
            .await
            .into_iter()
            .map(|(m, _)| m)
            .collect::<Vec<_>>()
    };
    assert_eq!(indexed().await, all().await);
    assert_eq!(indexed().await.len(), 5);

    clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(compactor.run_once().await.unwrap().blocks_deleted, 0);
    assert_eq!(blocks(&store, TENANT).await.len(), 5);

    clock.advance(Duration::from_secs(60));
    let report = compactor.run_once().await.unwrap();
    assert_eq!((report.blocks_deleted, report.failures), (4, 0));
    let left = files(&store, &blocks_prefix(TENANT)).await;
    let merged = live(&store, TENANT).await;
    assert_eq!(merged.len(), 1);
    assert!(
        left.iter()
            .all(|f| f.as_ref().contains(&merged[0].ulid.to_string())),
        "{left:?}"
    );
    assert_eq!(left.len(), 9, "the merged block's files stay");
    assert_eq!(indexed().await, merged, "deleted blocks leave the index");
}

#[tokio::test]
async fn retention_marks_then_deletes_old_blocks() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let pushes = pushes_of(3, LIGHT);
    replicate(&store, "short", &pushes).await;
    replicate(&store, "forever", &pushes).await;
    let retention: Retention = Arc::new(|tenant: &str| {
        if tenant == "short" {
            Duration::from_secs(150 * 60)
        } else {
            Duration::ZERO
        }
    });
    // 2h30 before now is 00:32: the first hour's blocks (00:00-00:01) expire.
    let clock = Arc::new(ManualClock::new(at(BASE + 3 * HOUR + 2 * 60 * SECOND)));
    let metrics = CompactorMetrics::register(&prometheus::Registry::new()).unwrap();
    let compactor = Compactor::new(store.clone(), config(), retention, clock.clone())
        .unwrap()
        .with_id("compactor-test")
        .with_metrics(metrics.clone());
    let report = compactor.run_once().await.unwrap();
    assert_eq!(metrics.runs.get(), 1);
    assert_eq!(metrics.run_failures.get(), 0);
    assert_eq!(metrics.blocks_written.get(), report.blocks_written as u64);
    assert_eq!(metrics.blocks_compacted.get(), 6 + 10);
    assert!(metrics.written_bytes.get() > 0);
    assert!(metrics.last_successful_run.get() > 0.0);
    assert_eq!(report.tenants, 2);
    assert_eq!(report.blocks_expired, 4);
    // "forever" merges 3 hours, "short" only the 2 it keeps.
    assert_eq!(report.groups_merged, 5);
    assert_eq!(report.blocks_marked, 4 + 6 + 10);
    let short = blocks(&store, "short").await;
    assert!(
        short
            .iter()
            .all(|(m, marked)| *marked || m.min_time_nanos >= BASE + HOUR)
    );

    clock.advance(Duration::from_secs(16 * 60));
    assert_eq!(compactor.run_once().await.unwrap().blocks_deleted, 20);
    let deleted = |reason: &str| metrics.blocks_deleted.with_label_values(&[reason]).get();
    assert_eq!((deleted("retention"), deleted("compacted")), (4, 16));
    assert_eq!(blocks(&store, "short").await.len(), 2);
    assert_eq!(blocks(&store, "forever").await.len(), 3);

    // Much later everything of "short" has expired; "forever" merges on.
    clock.advance(Duration::from_secs(10 * 24 * 3600));
    let report = compactor.run_once().await.unwrap();
    assert_eq!(report.blocks_expired, 2);
    clock.advance(Duration::from_secs(16 * 60));
    compactor.run_once().await.unwrap();
    assert!(files(&store, &blocks_prefix("short")).await.is_empty());
    let forever = live(&store, "forever").await;
    assert_eq!(forever.len(), 1);
    assert_eq!(forever[0].compaction.level, 3);
}

#[tokio::test]
async fn blocks_without_meta_are_left_alone() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let pushes = pushes_of(1, LIGHT);
    replicate(&store, TENANT, &pushes).await;
    // Another ingester's upload, still in progress: every file but meta.json.
    let mut head = MemBlock::default();
    for p in &pushes {
        head.append(&profiles()[p.profile].1, &p.series, p.time, p.id);
    }
    let encoded = ember_block::encode_block(&head.to_block_data("d".into())).unwrap();
    for (name, bytes) in &encoded.files {
        store
            .put(
                &block_file(TENANT, head.ulid(), name),
                PutPayload::from_bytes(bytes.clone()),
            )
            .await
            .unwrap();
    }
    let partial = Path::from(format!("{TENANT}/blocks/{}", head.ulid()));
    let partial_files = files(&store, &partial).await;
    assert_eq!(partial_files.len(), 8);

    let clock = Arc::new(ManualClock::new(at(BASE + HOUR + 2 * 60 * SECOND)));
    let compactor = compactor(&store, &clock);
    let report = compactor.run_once().await.unwrap();
    assert_eq!((report.blocks_written, report.blocks_marked), (1, 4));
    clock.advance(Duration::from_secs(3600));
    assert_eq!(compactor.run_once().await.unwrap().blocks_deleted, 4);
    assert_eq!(files(&store, &partial).await, partial_files);
    let merged = live(&store, TENANT).await;
    assert_eq!(merged.len(), 1);
    assert!(!merged[0].compaction.sources.contains(&head.ulid()));
}

/// Rewrites a block as format 1 wrote it: no `id` column, version 1.
async fn downgrade_to_format_1(store: &Arc<dyn ObjectStore>, tenant: &str, ulid: Ulid) {
    use arrow::array::RecordBatchReader;
    use parquet::arrow::{
        ArrowWriter, ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder,
    };
    let path = block_file(tenant, ulid, "profiles.parquet");
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let projection = ProjectionMask::roots(builder.parquet_schema(), 0..5);
    let reader = builder.with_projection(projection).build().unwrap();
    let schema = reader.schema();
    assert_eq!(schema.fields().len(), 5);
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
    for batch in reader {
        writer.write(&batch.unwrap()).unwrap();
    }
    writer.close().unwrap();
    store.put(&path, PutPayload::from(out)).await.unwrap();
    let meta_path = block_file(tenant, ulid, META_FILE);
    let meta = store.get(&meta_path).await.unwrap().bytes().await.unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    meta["version"] = 1.into();
    store
        .put(
            &meta_path,
            PutPayload::from(serde_json::to_vec(&meta).unwrap()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn format_1_blocks_keep_every_profile() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Two blocks of the same profiles, written before IDs existed: nothing
    // says they are copies, so both count.
    let pushes: Vec<Push> = pushes_of(1, LIGHT)
        .into_iter()
        .map(|p| Push { id: 0, ..p })
        .collect();
    let all: Vec<&Push> = pushes.iter().collect();
    let mut originals = ingest(&store, TENANT, "a", &all, |_| 0).await;
    originals.extend(ingest(&store, TENANT, "b", &all, |_| 0).await);
    for ulid in &originals {
        downgrade_to_format_1(&store, TENANT, *ulid).await;
    }
    let original_views = views(&store, TENANT, &originals).await;
    assert!(original_views.iter().all(|v| v.block.meta.version == 1));
    let rows = ids(&original_views);
    assert!(rows.iter().all(|id| *id == 0));
    let before = answers(&original_views, once);

    let clock = Arc::new(ManualClock::new(at(BASE + HOUR + 2 * 60 * SECOND)));
    let report = compactor(&store, &clock).run_once().await.unwrap();
    assert_eq!(report.profiles_before, rows.len() as u64);
    assert_eq!(report.profiles_after, rows.len() as u64);
    let merged = live(&store, TENANT).await;
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].version, ember_block::FORMAT_VERSION);
    let merged_views = views(&store, TENANT, &ulids(&merged)).await;
    assert_eq!(ids(&merged_views).len(), rows.len());
    assert_eq!(answers(&merged_views, || ProfileFilter::All), before);
}

/// A pass that stopped after uploading a merged block but before marking its
/// sources: the next pass marks them and merges nothing again.
#[tokio::test]
async fn unmarked_sources_of_a_merged_block_get_marked() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let originals = replicate_light(&store, 1).await;
    let clock = Arc::new(ManualClock::new(at(BASE + HOUR + 2 * 60 * SECOND)));
    let compactor = compactor(&store, &clock);
    compactor.run_once().await.unwrap();
    for ulid in &originals {
        store
            .delete(&block_file(TENANT, *ulid, DELETION_MARK_FILE))
            .await
            .unwrap();
    }
    let report = compactor.run_once().await.unwrap();
    assert_eq!((report.groups_merged, report.blocks_marked), (0, 4));
    assert!(
        blocks(&store, TENANT)
            .await
            .iter()
            .all(|(m, marked)| *marked == originals.contains(&m.ulid))
    );
}

#[tokio::test]
async fn run_stops_on_shutdown() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    replicate_light(&store, 1).await;
    let clock = Arc::new(ManualClock::new(at(BASE + HOUR + 2 * 60 * SECOND)));
    let compactor = Arc::new(compactor(&store, &clock));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(compactor.clone().run(stopped));
    // The first pass runs at once.
    for _ in 0..200 {
        if live(&store, TENANT).await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(live(&store, TENANT).await.len(), 1);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn config_must_nest_ranges() {
    let mut config = CompactorConfig::default();
    assert!(config.validate().is_ok());
    config.block_ranges = vec![Duration::from_secs(3600), Duration::from_secs(5400)];
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("multiple"), "{err}");
    config.block_ranges.clear();
    assert!(config.validate().is_err());
}

#[tokio::test]
async fn merged_blocks_get_pre_aggregated_copies_with_the_same_totals() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    replicate_light(&store, 4).await;
    let clock = Arc::new(ManualClock::new(at(BASE + 4 * HOUR + 2 * 60 * SECOND)));
    let config = CompactorConfig {
        downsample_resolutions: vec![Duration::from_secs(15 * 60), Duration::from_secs(3600)],
        ..config()
    };
    let compactor = Compactor::new(store.clone(), config, keep_forever(), clock.clone()).unwrap();
    // One pass merges the hours (each with a 15m copy: an hour is 4 of them,
    // too short for 1h), then the 4h range (with both copies).
    compactor.run_once().await.unwrap();
    let live = live(&store, TENANT).await;
    let raw: Vec<&BlockMeta> = live.iter().filter(|m| !m.is_downsampled()).collect();
    assert_eq!(raw.len(), 1, "{live:?}");
    assert_eq!(raw[0].compaction.level, 3);
    let mut copies: Vec<(i64, u32)> = live
        .iter()
        .filter(|m| m.downsamples(raw[0]))
        .map(|m| (m.resolution_nanos / SECOND, m.compaction.level))
        .collect();
    copies.sort();
    assert_eq!(
        copies,
        [(900, 3), (3600, 3)],
        "the hours' copies went with them"
    );
    assert_eq!(live.len(), 3, "{live:?}");

    let raw_views = views(&store, TENANT, &[raw[0].ulid]).await;
    let expected = answers(&raw_views, || ProfileFilter::All);
    for copy in live.iter().filter(|m| m.is_downsampled()) {
        let copy_views = views(&store, TENANT, &[copy.ulid]).await;
        let got = answers(&copy_views, || ProfileFilter::All);
        assert_eq!(got.labels, expected.labels);
        for (t, want) in &expected.types {
            let have = &got.types[t];
            assert_eq!(have.total, want.total, "{t} at {}", copy.resolution_nanos);
            assert_eq!(have.stacks, want.stacks, "{t}");
            assert_eq!(have.pprof, want.pprof, "{t}");
            assert!(have.points.len() <= want.points.len(), "{t}: fewer rows");
            assert!(
                have.points
                    .iter()
                    .all(|p| p.3 == 0 && p.1 % copy.resolution_nanos == 0)
            );
        }
        // Each test series has a profile an hour: as many rows, none more.
        assert!(copy.stats.profiles <= raw[0].stats.profiles);
    }
    // A querier counts the raw block or a copy, never both; a flame graph
    // over a range holding the whole block reads the coarsest copy, so it
    // still answers once the raw block's profiles are gone.
    let querier = ember_querier::Querier::new(None, store.clone());
    let plan = |t: &str, downsampling| Plan {
        downsampling,
        ..Plan::new(Some(t.to_owned()), Vec::new(), i64::MIN, i64::MAX)
    };
    let flame_graphs = |downsampling| {
        let querier = &querier;
        let expected = &expected;
        async move {
            let mut out = BTreeMap::new();
            for t in expected.types.keys() {
                let tree = querier.merge_tree(TENANT, &plan(t, downsampling)).await;
                out.insert(t.clone(), tree.map(|t| t.to_flamegraph(0)).ok());
            }
            out
        }
    };
    store
        .delete(&block_file(TENANT, raw[0].ulid, "profiles.parquet"))
        .await
        .unwrap();
    let from_copies = flame_graphs(Downsampling::Totals).await;
    for (t, want) in &expected.types {
        assert_eq!(from_copies[t], want.flamegraph, "{t}");
    }
    let from_raw = flame_graphs(Downsampling::Off).await;
    assert!(
        from_raw.values().all(Option::is_none),
        "the raw block is gone"
    );
}
