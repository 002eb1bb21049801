//! An ingester with a write-ahead log that is dropped without flushing (a
//! crash) answers the same after it is opened again from the log, and drops
//! the log's segments once their blocks are uploaded.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use ember_ingester::{Ingester, IngesterConfig};
use ember_model::{flamegraph::FunctionTree, ingest, labels::PROFILE_TYPE, new_profile_id, pprof};
use ember_query::{Plan, SourceView};
use ember_testkit::testdata;
use ember_time::SystemClock;
use object_store::{ObjectStore, ObjectStoreExt, memory::InMemory};

/// Every shared profile that decodes within the default limits.
fn profiles() -> Vec<pprof::FlatProfile> {
    testdata::decode_all(10, |raw| {
        pprof::decode(raw, &pprof::DecodeLimits::default())
    })
    .into_iter()
    .map(|(_, p)| p)
    .collect()
}

/// Every tenant's flame graph per profile type, over all its heads.
fn answers(ingester: &Ingester) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut tenants = ingester.tenants();
    tenants.sort();
    for tenant in tenants {
        let mut types = Vec::new();
        ingester.with_heads(&tenant, &mut |v: &dyn SourceView| {
            types.extend(
                v.series()
                    .iter()
                    .filter_map(|s| s.labels.get(PROFILE_TYPE).map(str::to_owned)),
            )
        });
        types.sort();
        types.dedup();
        for t in types {
            let plan = Plan::new(Some(t.clone()), Vec::new(), i64::MIN, i64::MAX);
            let mut tree = FunctionTree::new();
            ingester.with_heads(&tenant, &mut |v: &dyn SourceView| {
                ember_query::merge_tree(v, &plan, &mut tree).unwrap()
            });
            out.insert(
                (tenant.clone(), t),
                format!("{} {:?}", tree.total(), tree.to_flamegraph(0)),
            );
        }
    }
    out
}

/// Opens an ingester with its write-ahead log in `wal`, replaying it.
async fn open(store: Arc<dyn ObjectStore>, wal: &Path) -> Ingester {
    Ingester::open(IngesterConfig::default(), store, SystemClock::shared(), wal)
        .await
        .unwrap()
}

/// Opens an ingester on `wal` and appends one profile to tenant `a`.
async fn with_one_profile(store: Arc<dyn ObjectStore>, wal: &Path) -> Ingester {
    let ingester = open(store, wal).await;
    let profile = profiles().remove(0);
    let series = ingest::series_for(&profile, &ingest::labels_of(&[("service_name", "s")]));
    ingester
        .append("a", &profile, &series, 1, new_profile_id())
        .unwrap();
    ingester
}

/// Appends one profile on `wal` and flushes it to `store`, leaving in
/// `crashed` the log a crash right after the upload would leave behind: hard
/// links keep the segments as they are when the flush deletes them.
async fn flush_leaving_the_log_in(store: Arc<dyn ObjectStore>, wal: &Path, crashed: &Path) {
    let ingester = with_one_profile(store, wal).await;
    for seq in ember_wal::segments(wal).unwrap() {
        let path = wal.join(format!("{seq:020}.wal"));
        std::fs::hard_link(&path, crashed.join(path.file_name().unwrap())).unwrap();
    }
    ingester.flush_all().await.unwrap();
}

fn segment_files(dir: &Path) -> usize {
    ember_wal::segments(dir).unwrap().len()
}

#[tokio::test]
async fn replayed_wal_answers_like_the_lost_heads() {
    let wal = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ingester = open(store.clone(), wal.path()).await;
    for (i, profile) in profiles().iter().enumerate() {
        let tenant = if i % 2 == 0 { "tenant-a" } else { "tenant-b" };
        let client = ingest::labels_of(&[("service_name", &format!("svc-{}", i % 3))]);
        let series = ingest::series_for(profile, &client);
        ingester
            .append(tenant, profile, &series, 1_000 + i as i64, new_profile_id())
            .unwrap();
    }
    let before = answers(&ingester);
    assert!(before.len() > 2, "{:?}", before.keys());
    // A crash: nothing is flushed.
    drop(ingester);

    let ingester = open(store.clone(), wal.path()).await;
    assert_eq!(answers(&ingester), before);

    // Once flushed, the blocks hold the data and the log is emptied.
    ingester.flush_all().await.unwrap();
    for tenant in ["tenant-a", "tenant-b"] {
        assert_eq!(
            ember_block::list_blocks(&store, tenant)
                .await
                .unwrap()
                .len(),
            1,
            "{tenant}"
        );
    }
    assert_eq!(
        segment_files(wal.path()),
        1,
        "only the open segment is left"
    );
    drop(ingester);
    let ingester = open(store, wal.path()).await;
    assert!(answers(&ingester).is_empty(), "nothing is replayed twice");
}

#[tokio::test]
async fn segments_of_unflushed_heads_are_kept() {
    let wal = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ingester = with_one_profile(store.clone(), wal.path()).await;
    let before = answers(&ingester);
    assert!(!before.is_empty());
    // Flushing with nothing cut keeps the active head's segment.
    ingester.flush_due().await.unwrap();
    drop(ingester);
    let ingester = open(store, wal.path()).await;
    assert_eq!(answers(&ingester), before);
}

#[tokio::test]
async fn crash_after_upload_before_segment_deletion_counts_once() {
    let wal = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    flush_leaving_the_log_in(store.clone(), wal.path(), crashed.path()).await;
    let blocks = ember_block::list_blocks(&store, "a").await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(segment_files(crashed.path()) >= 1);

    let reopened = open(store.clone(), crashed.path()).await;
    assert!(
        answers(&reopened).is_empty(),
        "profiles already in block {} are not replayed",
        blocks[0]
    );

    // Without the block, the same log is replayed into a head with the block's ID.
    let empty: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crashed.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    let reopened = open(empty, copy.path()).await;
    assert!(!answers(&reopened).is_empty());
    assert_eq!(reopened.heads("a")[0].ulid, blocks[0]);
}

#[tokio::test]
async fn a_head_whose_block_was_compacted_and_deleted_is_not_uploaded_again() {
    let wal = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    flush_leaving_the_log_in(store.clone(), wal.path(), crashed.path()).await;
    let head = ember_block::list_blocks(&store, "a").await.unwrap()[0];
    // The compactor merged the block into another and deleted it.
    let meta_of = |ulid| ember_block::block_file("a", ulid, ember_block::META_FILE);
    let bytes = store
        .get(&meta_of(head))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut meta: ember_block::BlockMeta = serde_json::from_slice(&bytes).unwrap();
    meta.ulid = ulid::Ulid::new();
    meta.compaction = ember_block::Compaction {
        level: 2,
        sources: vec![head],
    };
    let compacted = serde_json::to_vec(&meta).unwrap();
    store
        .put(&meta_of(meta.ulid), compacted.into())
        .await
        .unwrap();
    let prefix = object_store::path::Path::from(format!("a/blocks/{head}"));
    let listed = store.list_with_delimiter(Some(&prefix)).await.unwrap();
    assert!(!listed.objects.is_empty());
    for object in listed.objects {
        store.delete(&object.location).await.unwrap();
    }

    let reopened = open(store.clone(), crashed.path()).await;
    assert!(
        answers(&reopened).is_empty(),
        "the compacted block holds the head's profiles"
    );
    reopened.flush_all().await.unwrap();
    let blocks = ember_block::list_blocks(&store, "a").await.unwrap();
    assert_eq!(blocks, [meta.ulid], "nothing uploaded again");
}

/// The profiles on each side of a cut whose block never reached the store go
/// to their own heads: before it, the head with the cut's ID; after it, a new one.
#[tokio::test]
async fn profiles_after_a_cut_go_to_a_head_of_their_own() {
    let (wal, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    flush_leaving_the_log_in(store.clone(), wal.path(), crashed.path()).await;
    let cut = ember_block::list_blocks(&store, "a").await.unwrap()[0];
    // A second life, on a store without the block, appends one more profile
    // and crashes too.
    let empty: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    drop(with_one_profile(empty.clone(), crashed.path()).await);

    let reopened = open(empty, crashed.path()).await;
    // Besides the new active head, empty: one profile's rows each.
    let mut heads: Vec<(bool, u64)> = reopened
        .heads("a")
        .iter()
        .map(|h| (h.ulid == cut, h.counts().profiles))
        .filter(|(_, rows)| *rows > 0)
        .collect();
    heads.sort();
    let rows = heads[0].1;
    assert_eq!(heads, [(false, rows), (true, rows)]);
}
