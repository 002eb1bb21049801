//! What selecting samples costs next to a normal flame graph over the same
//! profiles: a call site (`stack_trace_selector`), one span
//! (`SelectMergeSpanProfile`) and one profile ID, each through the querier
//! over one stored block.
//!
//! `cargo bench -p ember-querier --bench select` prints the median of warm
//! runs per query (the block and its symbols already opened).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_block::{MemBlock, encode_block, upload_block};
use ember_model::{Label, Labels, ProfileType, ingest::SeriesSpec, labels::PROFILE_TYPE};
use ember_proto::{
    Tenant,
    querier::v1::{
        SelectMergeSpanProfileRequest, SelectMergeStacktracesRequest,
        querier_service_server::QuerierService,
    },
    types::v1::{Location, StackTraceSelector},
};
use ember_querier::Querier;
use ember_testkit::pprof::PprofBuilder;
use object_store::{ObjectStore, memory::InMemory};
use tonic::Request;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const PROFILES: usize = 2_000;
const SAMPLES: usize = 400;
const FUNCTIONS: u64 = 300;
const SPANS: u64 = 64;
const RUNS: usize = 9;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn request<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.extensions_mut().insert(Tenant("t".into()));
    r
}

/// Profiles of stacks `main;handler_<k>;f_..;f_..` with half the samples in
/// one of [`SPANS`] spans, as a service traced with `otel-profiling-go` has.
async fn querier() -> Querier {
    let names: Vec<String> = (0..FUNCTIONS).map(|i| format!("f_{i}")).collect();
    let handlers: Vec<String> = (0..8).map(|i| format!("handler_{i}")).collect();
    let spans: Vec<String> = (1..=SPANS).map(|i| format!("{i:016x}")).collect();
    let series = SeriesSpec {
        labels: Labels::new(vec![
            Label::new(PROFILE_TYPE, CPU),
            Label::new("service_name", "bench"),
        ]),
        profile_type: CPU.parse::<ProfileType>().unwrap(),
        sample_type: 0,
        samples: None,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut head = MemBlock::default();
    for p in 0..PROFILES {
        let mut b = PprofBuilder::new(&[("cpu", "nanoseconds")]);
        for _ in 0..SAMPLES {
            let depth = 3 + rng.next(12) as usize;
            let mut stack: Vec<&str> = vec!["main", &handlers[rng.next(8) as usize]];
            for _ in 0..depth {
                stack.push(&names[rng.next(FUNCTIONS) as usize]);
            }
            let value = 10_000_000 * (1 + rng.next(5) as i64);
            b = if rng.next(2) == 0 {
                let span = &spans[rng.next(SPANS) as usize];
                b.sample_with_labels(&stack, &[value], &[("span_id", span)])
            } else {
                b.sample(&stack, &[value])
            };
        }
        let time = 1_000_000_000 * (10 + p as i64);
        head.append(
            &b.build().into(),
            std::slice::from_ref(&series),
            time,
            1 + p as u128,
        );
    }
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let encoded = encode_block(&head.to_block_data("bench".into())).unwrap();
    eprintln!(
        "block: {PROFILES} profiles, {} bytes (profiles.parquet {} bytes)",
        encoded.meta.stats.bytes,
        encoded
            .files
            .iter()
            .find(|(n, _)| *n == "profiles.parquet")
            .map_or(0, |(_, b)| b.len())
    );
    upload_block(&store, "t", &encoded).await.unwrap();
    Querier::new(None, store)
}

fn stacktraces(
    selector: Option<StackTraceSelector>,
    ids: Vec<String>,
) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: "{service_name=\"bench\"}".into(),
        start: 1_000,
        end: 1_000 * (20 + PROFILES as i64),
        stack_trace_selector: selector,
        profile_id_selector: ids,
        ..Default::default()
    }
}

async fn median<F, Fut>(mut f: F) -> (Duration, i64)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = i64>,
{
    let total = f().await; // warm-up: opens the block, loads symbols
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let got = f().await;
        times.push(t.elapsed());
        assert_eq!(got, total, "the same answer every run");
    }
    times.sort();
    (times[RUNS / 2], total)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let q = querier().await;
    let normal = median(|| async {
        let r = q.select_merge_stacktraces(request(stacktraces(None, Vec::new())));
        r.await.unwrap().into_inner().flamegraph.unwrap().total
    })
    .await;
    let call_site = StackTraceSelector {
        call_site: ["main", "handler_3"]
            .iter()
            .map(|n| Location {
                name: n.to_string(),
            })
            .collect(),
        go_pgo: None,
    };
    let site = median(|| async {
        let r =
            q.select_merge_stacktraces(request(stacktraces(Some(call_site.clone()), Vec::new())));
        r.await.unwrap().into_inner().flamegraph.unwrap().total
    })
    .await;
    let span = median(|| async {
        let r = q.select_merge_span_profile(request(SelectMergeSpanProfileRequest {
            profile_type_id: CPU.into(),
            label_selector: "{service_name=\"bench\"}".into(),
            span_selector: vec![format!("{:016x}", 7)],
            start: 1_000,
            end: 1_000 * (20 + PROFILES as i64),
            ..Default::default()
        }));
        r.await.unwrap().into_inner().flamegraph.unwrap().total
    })
    .await;
    let one = ember_query::format_profile_id(PROFILES as u128 / 2);
    let by_id = median(|| async {
        let r = q.select_merge_stacktraces(request(stacktraces(None, vec![one.clone()])));
        r.await.unwrap().into_inner().flamegraph.unwrap().total
    })
    .await;
    println!(
        "| query over {PROFILES} profiles × {SAMPLES} samples | median of {RUNS} warm runs | total |"
    );
    println!("|---|---|---|");
    for (name, (t, total)) in [
        ("flame graph, no selection", normal),
        ("call site main;handler_3 (1/8 of the samples)", site),
        ("one span of 64 (1/128 of the samples)", span),
        ("one profile ID", by_id),
    ] {
        println!("| {name} | {:.1} ms | {total} |", t.as_secs_f64() * 1e3);
    }
}
