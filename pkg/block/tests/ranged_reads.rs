//! Ranged reads: a query of one service in a block of ten fetches a small
//! part of the block, through a byte-counting store; the cache serves a
//! second query; blocks written before page indexes and per-partition row
//! groups read the same profiles.

use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use ember_block::{
    Block, BlockCache, BlockCacheMetrics, BlockData, Compaction, Fetch, ProfileRow, ProfileVisitor,
    SeriesEntry, encode_block, upload_block,
};
use ember_model::{Label, Labels, ProfileId};
use ember_objstore::{ObjstoreMetrics, instrument};
use ember_symdb::{Function, Line, Location, Mapping, StackTree, Symbols};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use ulid::Ulid;

const SERVICES: usize = 10;
const TYPES: [&str; 3] = [
    "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
    "memory:alloc_space:bytes:space:bytes",
    "memory:inuse_space:bytes:space:bytes",
];
const PROFILES_PER_SERIES: usize = 360;
const NODES: u32 = 2000;
const HOUR_NANOS: i64 = 3_600_000_000_000;

/// A deterministic pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self, bound: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % bound as u64) as u32
    }
}

fn symbols(service: usize, rng: &mut Rng) -> Symbols {
    let functions = 400u32;
    let mut strings = vec![String::new()];
    strings.extend(
        (0..functions).map(|f| format!("github.com/acme/service{service}/pkg.Function{f}")),
    );
    Symbols {
        strings,
        mappings: vec![Mapping::default()],
        functions: (0..functions)
            .map(|f| Function {
                name: f + 1,
                system_name: f + 1,
                filename: 0,
                start_line: f as i64,
            })
            .collect(),
        locations: (0..functions)
            .map(|f| Location {
                mapping: 0,
                address: 0x1000 + f as u64,
                lines: vec![Line {
                    function: f,
                    line: 10,
                }],
            })
            .collect(),
        stacks: StackTree {
            parents: (0..NODES)
                .map(|i| if i == 0 { 0 } else { rng.next(i) })
                .collect(),
            locations: (0..NODES).map(|_| rng.next(functions)).collect(),
        },
    }
}

/// Ten services, three profile types each, an hour of profiles every 10 s.
fn block_data() -> BlockData {
    block_data_of(SERVICES, &TYPES, PROFILES_PER_SERIES)
}

/// `services` services, a series per profile type of `types` each, with
/// `per_series` profiles 10 s apart.
fn block_data_of(services: usize, types: &[&str], per_series: usize) -> BlockData {
    let mut rng = Rng(7);
    let mut series = Vec::new();
    for t in types {
        for s in 0..services {
            series.push(SeriesEntry {
                labels: Labels::new(vec![
                    Label::new("__profile_type__", *t),
                    Label::new("service_name", format!("service{s}")),
                ]),
                partition: s as u32,
            });
        }
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut profiles = Vec::new();
    for (i, _) in series.iter().enumerate() {
        for k in 0..per_series {
            let mut ids: Vec<u32> = (0..60).map(|_| 1 + rng.next(NODES - 1)).collect();
            ids.sort_unstable();
            ids.dedup();
            let values: Vec<i64> = ids.iter().map(|_| 1 + rng.next(10_000) as i64).collect();
            profiles.push(ProfileRow {
                id: ((i as u128) << 32) | k as u128 | 1 << 100,
                series: i as u32,
                time_nanos: HOUR_NANOS + k as i64 * 10_000_000_000,
                total: values.iter().sum(),
                stacktrace_ids: ids,
                values,
                ..Default::default()
            });
        }
    }
    BlockData {
        ulid: Ulid::from_parts(1, 1),
        source: "test".into(),
        compaction: Compaction {
            level: 1,
            sources: Vec::new(),
        },
        series,
        profiles,
        partitions: (0..services)
            .map(|s| (format!("service{s}"), Arc::new(symbols(s, &mut rng))))
            .collect(),
        annotations: Default::default(),
    }
}

/// The profiles a scan visits, with the sum of their sample values.
#[derive(Default, PartialEq, Debug)]
struct Seen(Vec<(ProfileId, u32, i64, i64, i64)>);

impl ProfileVisitor for Seen {
    fn visit(
        &mut self,
        id: ProfileId,
        series: u32,
        time: i64,
        total: i64,
        samples: Option<(&[u32], &[i64])>,
    ) {
        let sum = samples.map_or(-1, |(_, v)| v.iter().sum());
        self.0.push((id, series, time, total, sum));
    }
}

struct Stored {
    store: Arc<dyn ObjectStore>,
    metrics: ObjstoreMetrics,
    bytes: u64,
}

async fn stored(data: &BlockData) -> Stored {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let encoded = encode_block(data).unwrap();
    upload_block(&inner, "t", &encoded).await.unwrap();
    let metrics = ObjstoreMetrics::register(&prometheus::Registry::new()).unwrap();
    Stored {
        store: instrument(inner, metrics.clone()),
        metrics,
        bytes: encoded.meta.stats.bytes,
    }
}

fn service_of(block: &Block, service: usize, profile_type: &str) -> Vec<bool> {
    let name = format!("service{service}");
    block
        .series
        .iter()
        .map(|s| {
            s.labels.get("service_name") == Some(&name)
                && s.labels.get("__profile_type__") == Some(profile_type)
        })
        .collect()
}

fn want(selected: Vec<bool>, start: i64, end: i64) -> Fetch {
    Fetch {
        selected,
        start,
        end,
        samples: true,
        spans: false,
        symbols: true,
    }
}

#[tokio::test]
async fn one_service_of_ten_fetches_a_small_part_and_the_cache_serves_it_again() {
    let data = block_data();
    let s = stored(&data).await;
    let cache = Arc::new(BlockCache::new(64 << 20, BlockCacheMetrics::detached()));
    let block = Arc::new(
        Block::open_cached(s.store.clone(), cache.clone(), "t", data.ulid)
            .await
            .unwrap(),
    );
    let opened = s.metrics.read_bytes.get();
    let selected = service_of(&block, 3, TYPES[0]);
    let view = block
        .fetch(&want(selected.clone(), i64::MIN, i64::MAX))
        .await
        .unwrap();
    let fetched = s.metrics.read_bytes.get() - opened;
    assert_eq!(
        view.fetched_bytes() as u64,
        fetched,
        "the view counts what the store served"
    );
    let share = fetched as f64 / s.bytes as f64;
    assert!(
        share < 0.15,
        "one series of 30 fetched {fetched} of {} bytes ({:.1}%)",
        s.bytes,
        share * 100.0
    );
    let mut seen = Seen::default();
    view.scan(&selected, i64::MIN, i64::MAX, true, &mut seen)
        .unwrap();
    assert_eq!(seen.0.len(), PROFILES_PER_SERIES);
    // The same profiles as a read of the whole block.
    let whole = block.view(false).await.unwrap();
    let mut all = Seen::default();
    whole
        .scan(&selected, i64::MIN, i64::MAX, true, &mut all)
        .unwrap();
    assert_eq!(seen, all);
    let partition = block.series[selected.iter().position(|s| *s).unwrap()].partition;
    assert!(view.symbols(partition).is_some());
    assert!(view.symbols((partition + 1) % SERVICES as u32).is_none());
    assert_eq!(
        view.symbols(partition).unwrap(),
        data.partitions[partition as usize].1.as_ref()
    );

    // Warm: nothing is fetched again.
    let before = s.metrics.read_bytes.get();
    let again = block
        .fetch(&want(selected.clone(), i64::MIN, i64::MAX))
        .await
        .unwrap();
    assert_eq!(s.metrics.read_bytes.get(), before);
    assert_eq!(again.fetched_bytes(), 0);
    let mut seen_again = Seen::default();
    again
        .scan(&selected, i64::MIN, i64::MAX, true, &mut seen_again)
        .unwrap();
    assert_eq!(seen_again, seen);
    assert!(cache.bytes() <= cache.capacity());
}

#[tokio::test]
async fn a_narrow_time_range_fetches_less_and_reads_only_it() {
    // Ten hours of two services, as a compacted block holds.
    let data = block_data_of(2, &TYPES[..1], 3600);
    let s = stored(&data).await;
    let block = Arc::new(Block::open(s.store.clone(), "t", data.ulid).await.unwrap());
    let selected = service_of(&block, 1, TYPES[0]);
    let full = block
        .fetch(&want(selected.clone(), i64::MIN, i64::MAX))
        .await
        .unwrap();
    // Ten minutes in the middle of the hour.
    let minute = 60_000_000_000;
    let (start, end) = (HOUR_NANOS + 25 * minute, HOUR_NANOS + 35 * minute - 1);
    let narrow = block
        .fetch(&want(selected.clone(), start, end))
        .await
        .unwrap();
    assert!(
        narrow.held_profile_bytes() * 5 < full.held_profile_bytes(),
        "{} vs {}",
        narrow.held_profile_bytes(),
        full.held_profile_bytes()
    );
    let mut seen = Seen::default();
    narrow.scan(&selected, start, end, true, &mut seen).unwrap();
    assert_eq!(seen.0.len(), 60);
    assert!(seen.0.iter().all(|p| p.2 >= start && p.2 <= end));
}

#[tokio::test]
async fn nothing_selected_fetches_nothing_and_a_scan_beyond_the_fetch_fails_clearly() {
    let data = block_data();
    let s = stored(&data).await;
    let block = Arc::new(Block::open(s.store.clone(), "t", data.ulid).await.unwrap());
    let none = vec![false; block.series.len()];
    let view = block
        .fetch(&want(none.clone(), i64::MIN, i64::MAX))
        .await
        .unwrap();
    assert_eq!(view.fetched_bytes(), 0);
    let selected = service_of(&block, 1, TYPES[2]);
    let mut totals = want(selected.clone(), i64::MIN, i64::MAX);
    totals.samples = false;
    let view = block.fetch(&totals).await.unwrap();
    let mut seen = Seen::default();
    view.scan(&selected, i64::MIN, i64::MAX, false, &mut seen)
        .unwrap();
    assert_eq!(seen.0.len(), PROFILES_PER_SERIES);
    let err = view
        .scan(&selected, i64::MIN, i64::MAX, true, &mut Seen::default())
        .unwrap_err();
    assert!(err.to_string().contains("did not fetch"), "{err}");
}

#[tokio::test]
async fn the_cache_stays_within_its_bound() {
    let data = block_data();
    let s = stored(&data).await;
    let metrics = BlockCacheMetrics::detached();
    let cache = Arc::new(BlockCache::new(400 << 10, metrics.clone()));
    let block = Arc::new(
        Block::open_cached(s.store.clone(), cache.clone(), "t", data.ulid)
            .await
            .unwrap(),
    );
    for service in 0..SERVICES {
        for t in TYPES {
            let selected = service_of(&block, service, t);
            block
                .fetch(&want(selected, i64::MIN, i64::MAX))
                .await
                .unwrap();
            assert!(cache.bytes() <= 400 << 10);
        }
    }
    assert!(metrics.evictions.with_label_values(&["page"]).get() > 0);
    assert!(metrics.misses.with_label_values(&["footer"]).get() >= 1);
    assert!(metrics.hits.with_label_values(&["footer"]).get() > 0);
}

/// Re-encodes a Parquet file as blocks were written before ranged reads:
/// one row group (for the symbol tables), chunk statistics, no page index
/// and, with `offset_index`, no offset index either; no key-value metadata.
fn legacy(bytes: Bytes, offset_index: bool) -> Bytes {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let schema = arrow::array::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let props = WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(4096))
        .set_offset_index_disabled(!offset_index)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    Bytes::from(out)
}

#[tokio::test]
async fn blocks_written_before_page_indexes_read_the_same() {
    let data = block_data();
    let s = stored(&data).await;
    let new = Arc::new(Block::open(s.store.clone(), "t", data.ulid).await.unwrap());
    let selected = service_of(&new, 7, TYPES[0]);
    let expected = {
        let v = new
            .fetch(&want(selected.clone(), i64::MIN, i64::MAX))
            .await
            .unwrap();
        let mut seen = Seen::default();
        v.scan(&selected, i64::MIN, i64::MAX, true, &mut seen)
            .unwrap();
        seen
    };
    let partition = new.series[selected.iter().position(|s| *s).unwrap()].partition;
    for offset_index in [true, false] {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for file in [
            "series.parquet",
            "profiles.parquet",
            "strings.parquet",
            "mappings.parquet",
            "functions.parquet",
            "locations.parquet",
            "stacktraces.parquet",
            "meta.json",
        ] {
            let path = Path::from(format!("t/blocks/{}/{file}", data.ulid));
            let bytes = s.store.get(&path).await.unwrap().bytes().await.unwrap();
            let bytes = if file.ends_with(".parquet") {
                legacy(bytes, offset_index)
            } else {
                bytes
            };
            store
                .put(&path, PutPayload::from_bytes(bytes))
                .await
                .unwrap();
        }
        let old = Arc::new(Block::open(store, "t", data.ulid).await.unwrap());
        let view = old
            .fetch(&want(selected.clone(), i64::MIN, i64::MAX))
            .await
            .unwrap();
        let mut seen = Seen::default();
        view.scan(&selected, i64::MIN, i64::MAX, true, &mut seen)
            .unwrap();
        assert_eq!(seen, expected, "offset index: {offset_index}");
        assert_eq!(
            view.symbols(partition).unwrap(),
            data.partitions[partition as usize].1.as_ref()
        );
    }
}
