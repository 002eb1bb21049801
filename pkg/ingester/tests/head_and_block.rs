//! A head and the block it is flushed into answer every query identically,
//! for every real profile in the shared test data.

use std::sync::Arc;

use ember_block::Block;
use ember_ingester::{Head, Ingester, IngesterConfig};
use ember_model::{
    Labels, flamegraph::FunctionTree, ingest, labels::PROFILE_TYPE, new_profile_id, pprof,
};
use ember_query::{Plan, SourceView};
use ember_symdb::resolve::PprofBuilder;
use ember_testkit::testdata;
use ember_time::SystemClock;
use object_store::{ObjectStore, local::LocalFileSystem, memory::InMemory};

/// Every shared profile that decodes, with its path.
fn valid_profiles() -> Vec<(String, pprof::FlatProfile)> {
    let limits = pprof::DecodeLimits {
        max_samples: 0,
        max_stack_depth: 0,
        ..Default::default()
    };
    testdata::decode_all(20, |raw| pprof::decode(raw, &limits))
        .into_iter()
        .map(|(name, p)| (testdata::path(&name).display().to_string(), p))
        .collect()
}

fn all_time(profile_type: &str) -> Plan {
    Plan::new(
        Some(profile_type.to_owned()),
        Vec::new(),
        i64::MIN,
        i64::MAX,
    )
}

fn profile_types(view: &dyn SourceView) -> Vec<String> {
    let mut types: Vec<String> = view
        .series()
        .iter()
        .filter_map(|s| s.labels.get(PROFILE_TYPE).map(str::to_owned))
        .collect();
    types.sort();
    types.dedup();
    types
}

fn tree_of(view: &dyn SourceView, plan: &Plan) -> FunctionTree {
    let mut tree = FunctionTree::new();
    ember_query::merge_tree(view, plan, &mut tree).unwrap();
    tree
}

#[tokio::test(flavor = "multi_thread")]
async fn flushed_block_answers_like_its_head() {
    let head = Arc::new(Head::new(std::time::SystemTime::now()));
    let mut expected_totals = std::collections::BTreeMap::<String, i64>::new();
    for (i, (path, profile)) in valid_profiles().iter().enumerate() {
        let service = format!("svc-{}", i % 5);
        let client = ingest::labels_of(&[("service_name", &service), ("file", path)]);
        let series = ingest::series_for(profile, &client);
        for s in &series {
            let sum: i64 = match &s.samples {
                Some(indices) => indices
                    .iter()
                    .map(|&i| profile.samples.values(i as usize)[s.sample_type])
                    .sum(),
                None => profile
                    .samples
                    .iter()
                    .map(|x| x.values[s.sample_type])
                    .sum(),
            };
            *expected_totals.entry(s.profile_type.id()).or_default() += sum;
        }
        head.append(profile, &series, 1_000 + i as i64, new_profile_id());
    }

    // Written as the ingester's flush writes it: streamed from the head.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (h, s) = (head.clone(), store.clone());
    let meta = tokio::task::spawn_blocking(move || h.read().write(&s, "t", "test".into()))
        .await
        .unwrap()
        .unwrap();
    let block = Arc::new(Block::open(store, "t", head.ulid).await.unwrap());
    assert_eq!(block.meta, meta);
    assert_eq!(
        block.meta.stats.profiles,
        head.read().profile_count() as u64
    );
    let view = block.view(true).await.unwrap();
    let head_data = head.read();

    let types = profile_types(&*head_data);
    assert_eq!(types, profile_types(&view));
    for t in &types {
        let plan = all_time(t);
        let (from_head, from_block) = (tree_of(&*head_data, &plan), tree_of(&view, &plan));
        // Positive totals only: flame graphs do not draw negative values.
        if from_head.total() > 0 {
            assert_eq!(
                from_head.to_flamegraph(0),
                from_block.to_flamegraph(0),
                "{t}"
            );
        }
        // Raw sums survive the round trip exactly, negative values included.
        let pprof_of = |view: &dyn SourceView| {
            let mut b = PprofBuilder::new(("a", "b"), ("", ""), 0);
            ember_query::merge_pprof(view, &plan, &mut b).unwrap();
            b.finish(0, 0)
                .sample
                .iter()
                .map(|s| s.value[0])
                .sum::<i64>()
        };
        assert_eq!(pprof_of(&*head_data), expected_totals[t], "{t}");
        assert_eq!(pprof_of(&view), expected_totals[t], "{t}");
    }

    // Time ranges and selectors prune the same way in both.
    let mut plan = all_time(&types[0]);
    plan.start = 1_003;
    plan.end = 1_010;
    plan.selectors = vec![ember_model::Selector::parse(r#"{service_name=~"svc-[12]"}"#).unwrap()];
    let mut points_head = Vec::new();
    let mut points_block = Vec::new();
    ember_query::points(&*head_data, &plan, &mut |l: &Labels, p| {
        points_head.push((l.clone(), p.time_nanos, p.total))
    })
    .unwrap();
    ember_query::points(&view, &plan, &mut |l: &Labels, p| {
        points_block.push((l.clone(), p.time_nanos, p.total))
    })
    .unwrap();
    points_head.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    points_block.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    assert_eq!(points_head, points_block);
    assert!(
        points_head
            .iter()
            .all(|(l, t, _)| (1_003..=1_010).contains(t)
                && ["svc-1", "svc-2"].contains(&l.service_name()))
    );
}

#[tokio::test]
async fn ingester_flushes_on_stop_and_refuses_writes_after() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ingester = Ingester::new(
        IngesterConfig::default(),
        store.clone(),
        SystemClock::shared(),
    );
    let (_, profile) = valid_profiles()
        .into_iter()
        .find(|(p, _)| p.ends_with("/cpu.pb.gz"))
        .unwrap();
    let series = ingest::series_for(&profile, &Labels::default());
    ingester
        .append("tenant-a", &profile, &series, 5, new_profile_id())
        .unwrap();
    ingester.stop().await.unwrap();
    let blocks = ember_block::list_blocks(&store, "tenant-a").await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(
        ingester
            .heads("tenant-a")
            .iter()
            .all(|h| h.size().0 || blocks.contains(&h.ulid)),
        "after stop, the only heads with data are uploaded ones, kept for queries in flight"
    );
    assert!(
        ember_block::list_blocks(&store, "tenant-b")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        ingester
            .append("tenant-a", &profile, &series, 6, new_profile_id())
            .is_err()
    );
}

#[tokio::test]
async fn heads_are_cut_when_the_clock_enters_the_next_window() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // 10:59:50 on some day: ten seconds before the next aligned hour.
    let clock = Arc::new(ember_time::ManualClock::new(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_002_800 - 10),
    ));
    let ingester = Ingester::new(IngesterConfig::default(), store.clone(), clock.clone());
    let (_, profile) = valid_profiles()
        .into_iter()
        .find(|(p, _)| p.ends_with("/cpu.pb.gz"))
        .unwrap();
    let series = ingest::series_for(&profile, &Labels::default());
    let append = |time| {
        ingester
            .append("tenant-a", &profile, &series, time, new_profile_id())
            .unwrap()
    };
    append(1);
    ingester.flush_due().await.unwrap();
    let listed = || ember_block::list_blocks(&store, "tenant-a");
    assert!(listed().await.unwrap().is_empty(), "the hour is not over");

    clock.advance(std::time::Duration::from_secs(9));
    ingester.flush_due().await.unwrap();
    assert!(listed().await.unwrap().is_empty(), "still 10:59:59");

    clock.advance(std::time::Duration::from_secs(2));
    ingester.flush_due().await.unwrap();
    let blocks = listed().await.unwrap();
    assert_eq!(blocks.len(), 1, "cut at 11:00:00");

    // The next head was created in the new window: it is not cut again.
    append(2);
    clock.advance(std::time::Duration::from_secs(3598));
    ingester.flush_due().await.unwrap();
    assert_eq!(listed().await.unwrap(), blocks);
    clock.advance(std::time::Duration::from_secs(1));
    ingester.flush_due().await.unwrap();
    assert_eq!(listed().await.unwrap().len(), 2, "and again at 12:00:00");
}

/// An upload that fails fails the flush and keeps the head, queryable, for
/// the next flush to upload.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upload_keeps_the_head_for_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    std::fs::create_dir(&root).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    let ingester = Ingester::new(
        IngesterConfig::default(),
        store.clone(),
        SystemClock::shared(),
    );
    let (_, profile) = &valid_profiles()[0];
    let series = ingest::series_for(profile, &ingest::labels_of(&[("service_name", "svc")]));
    ingester
        .append("t", profile, &series, 1_000, new_profile_id())
        .unwrap();
    let rows = ingester.heads("t")[0].read().profile_count();
    assert!(rows > 0);

    // The store's directory becomes a file: every upload fails.
    std::fs::remove_dir(&root).unwrap();
    std::fs::write(&root, b"").unwrap();
    assert!(ingester.flush_all().await.is_err());
    let kept: usize = ingester
        .heads("t")
        .iter()
        .map(|h| h.read().profile_count())
        .sum();
    assert_eq!(kept, rows);

    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    ingester.flush_all().await.unwrap();
    let blocks = ember_block::list_blocks(&store, "t").await.unwrap();
    assert_eq!(blocks.len(), 1);
    let block = Block::open(store, "t", blocks[0]).await.unwrap();
    assert_eq!(block.meta.stats.profiles, rows as u64);
}
