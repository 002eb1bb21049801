//! The querier's metrics, `ember_querier_*`, registered into the process's
//! registry: request latency by RPC and outcome, what each query read, and
//! the querier's calls to ingesters.

use std::{cell::Cell, future::Future, time::Instant};

use ember_block::{ProfileVisitor, SeriesEntry, SpanSamples};
use ember_model::{ProfileId, ingest::Annotation};
use ember_query::SourceView;
use ember_symdb::Symbols;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, Registry, exponential_buckets,
};
use tonic::Status;
use ulid::Ulid;

/// Latencies and counters of queries. Cheap to clone.
#[derive(Debug, Clone)]
pub struct QuerierMetrics {
    /// Request latency, by RPC (`SelectMergeStacktraces`, ...) and status
    /// (`ok` or the Connect code name).
    pub request_duration: HistogramVec,
    /// Profile rows read per query.
    pub query_profiles: Histogram,
    /// Samples (stack and value pairs) read per query.
    pub query_samples: Histogram,
    /// Bytes of block profile files fetched from object storage per query.
    pub query_read_bytes: Histogram,
    /// Blocks opened (their meta and series read), not found in the querier's cache.
    pub blocks_opened: IntCounter,
    /// Of those, the blocks whose meta came from the bucket index.
    pub blocks_opened_from_index: IntCounter,
    /// Reads of a bucket index that failed (blocks then open from `meta.json`).
    pub bucket_index_failures: IntCounter,
    /// Calls to ingesters for their recent data.
    pub ingester_requests: IntCounter,
    /// Calls to ingesters that failed.
    pub ingester_failures: IntCounter,
}

/// The RPCs whose latency series exist from the start.
const RPCS: [&str; 9] = [
    "ProfileTypes",
    "LabelValues",
    "LabelNames",
    "Series",
    "SelectMergeStacktraces",
    "SelectMergeProfile",
    "SelectSeries",
    "Diff",
    "GetProfileStats",
];

impl QuerierMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    "ember_querier_request_duration_seconds",
                    "Querier request latency, by RPC and status",
                )
                .buckets(exponential_buckets(0.001, 4.0, 9)?),
                &["rpc", "status"],
            )?,
            query_profiles: Histogram::with_opts(
                HistogramOpts::new("ember_querier_query_profiles", "Profiles read per query")
                    .buckets(exponential_buckets(1.0, 10.0, 8)?),
            )?,
            query_samples: Histogram::with_opts(
                HistogramOpts::new("ember_querier_query_samples", "Samples read per query")
                    .buckets(exponential_buckets(10.0, 10.0, 8)?),
            )?,
            query_read_bytes: Histogram::with_opts(
                HistogramOpts::new(
                    "ember_querier_query_read_bytes",
                    "Bytes of block profile files fetched from object storage per query",
                )
                .buckets(exponential_buckets(1024.0, 8.0, 8)?),
            )?,
            blocks_opened: IntCounter::new(
                "ember_querier_blocks_opened_total",
                "Blocks opened from object storage",
            )?,
            blocks_opened_from_index: IntCounter::new(
                "ember_querier_blocks_opened_from_index_total",
                "Blocks opened with their meta from the bucket index",
            )?,
            bucket_index_failures: IntCounter::new(
                "ember_querier_bucket_index_failures_total",
                "Reads of a tenant's bucket index that failed",
            )?,
            ingester_requests: IntCounter::new(
                "ember_querier_ingester_requests_total",
                "Calls to ingesters for recent data",
            )?,
            ingester_failures: IntCounter::new(
                "ember_querier_ingester_failures_total",
                "Calls to ingesters for recent data that failed",
            )?,
        };
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.query_profiles.clone()))?;
        registry.register(Box::new(m.query_samples.clone()))?;
        registry.register(Box::new(m.query_read_bytes.clone()))?;
        registry.register(Box::new(m.blocks_opened.clone()))?;
        registry.register(Box::new(m.blocks_opened_from_index.clone()))?;
        registry.register(Box::new(m.bucket_index_failures.clone()))?;
        registry.register(Box::new(m.ingester_requests.clone()))?;
        registry.register(Box::new(m.ingester_failures.clone()))?;
        for rpc in RPCS {
            m.request_duration.with_label_values(&[rpc, "ok"]);
        }
        Ok(m)
    }

    /// Returns metrics registered nowhere, for a querier whose owner records
    /// nothing (tests, benchmarks).
    pub fn detached() -> Self {
        Self::register(&Registry::new()).expect("metrics of a new registry are unique")
    }

    /// Runs `call`, the body of `rpc`, and records its latency and outcome.
    pub(crate) async fn time<T>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let result = call.await;
        let status = match &result {
            Ok(_) => "ok",
            Err(s) => ember_proto::error::connect_code(s.code()),
        };
        self.request_duration
            .with_label_values(&[rpc, status])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Records what one query read.
    pub(crate) fn read(&self, read: &ReadCounts, bytes: usize) {
        self.query_profiles.observe(read.profiles.get() as f64);
        self.query_samples.observe(read.samples.get() as f64);
        self.query_read_bytes.observe(bytes as f64);
    }
}

/// What the scans of one query visited.
#[derive(Debug, Default)]
pub(crate) struct ReadCounts {
    profiles: Cell<u64>,
    samples: Cell<u64>,
}

/// A source that counts the profiles and samples its scans visit. It forwards
/// every method of [`SourceView`], those with a default too: a default here
/// would hide what the wrapped source has (its span samples).
pub(crate) struct Counted<'a> {
    pub(crate) inner: &'a dyn SourceView,
    pub(crate) counts: &'a ReadCounts,
}

/// A visitor that counts what it passes on.
struct CountingVisitor<'a> {
    inner: &'a mut dyn ProfileVisitor,
    counts: &'a ReadCounts,
}

impl ProfileVisitor for CountingVisitor<'_> {
    fn visit(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        samples: Option<(&[u32], &[i64])>,
    ) {
        self.counts.profiles.set(self.counts.profiles.get() + 1);
        if let Some((_, values)) = samples {
            self.counts
                .samples
                .set(self.counts.samples.get() + values.len() as u64);
        }
        self.inner.visit(id, series, time_nanos, total, samples);
    }

    fn visit_spans(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        spans: SpanSamples<'_>,
    ) {
        self.counts
            .samples
            .set(self.counts.samples.get() + spans.values.len() as u64);
        self.inner.visit_spans(id, series, time_nanos, total, spans);
    }
}

impl SourceView for Counted<'_> {
    fn id(&self) -> Ulid {
        self.inner.id()
    }

    fn series(&self) -> &[SeriesEntry] {
        self.inner.series()
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        self.inner.time_range()
    }

    fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> ember_query::Result<()> {
        let mut counting = CountingVisitor {
            inner: visitor,
            counts: self.counts,
        };
        self.inner
            .scan(selected, start, end, with_samples, &mut counting)
    }

    fn symbols(&self, partition: u32) -> Option<&Symbols> {
        self.inner.symbols(partition)
    }

    fn scan_spans(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        visitor: &mut dyn ProfileVisitor,
    ) -> ember_query::Result<()> {
        let mut counting = CountingVisitor {
            inner: visitor,
            counts: self.counts,
        };
        self.inner.scan_spans(selected, start, end, &mut counting)
    }

    fn presampled(&self) -> bool {
        self.inner.presampled()
    }

    fn annotations(&self, id: ProfileId) -> &[Annotation] {
        self.inner.annotations(id)
    }

    fn span_totals(&self, id: ProfileId) -> &[(u64, i64)] {
        self.inner.span_totals(id)
    }
}
