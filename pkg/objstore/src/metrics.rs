//! The object store's metrics, `ember_objstore_*`, and [`Instrumented`]: an
//! [`ObjectStore`] that wraps another and records every operation into them.
//!
//! Operations are named as operators think of them, whatever the trait method:
//! `get` (a whole object), `get_range` (part of one, or several parts),
//! `head`, `put` (single and multipart), `list` (with or without a delimiter),
//! `delete`, and `copy` (copies and renames). A `get`'s duration runs until
//! the store answers (the first byte), not until the body is read; its bytes
//! are the length of the range the store returns. A `list`'s duration runs
//! until its last entry, and a `delete` of many paths counts each path.

use std::{
    fmt,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
    path::Path,
};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, exponential_buckets,
};

/// Every value of the `operation` label.
pub const OPERATIONS: [&str; 7] = ["get", "get_range", "put", "list", "delete", "head", "copy"];

/// Counters and latencies of object storage operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjstoreMetrics {
    /// Operations started, by operation.
    pub operations: IntCounterVec,
    /// Operations that failed, by operation.
    pub failures: IntCounterVec,
    /// Operation latency, by operation.
    pub duration: HistogramVec,
    /// Bytes returned by gets.
    pub read_bytes: IntCounter,
    /// Bytes written by puts.
    pub written_bytes: IntCounter,
}

impl ObjstoreMetrics {
    /// Creates the metrics and registers them in `registry`, with a zero
    /// series for every operation.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            operations: IntCounterVec::new(
                Opts::new(
                    "ember_objstore_operations_total",
                    "Object storage operations, by operation",
                ),
                &["operation"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "ember_objstore_operation_failures_total",
                    "Object storage operations that failed, by operation",
                ),
                &["operation"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "ember_objstore_operation_duration_seconds",
                    "Object storage operation latency, by operation",
                )
                .buckets(exponential_buckets(0.001, 4.0, 8)?),
                &["operation"],
            )?,
            read_bytes: IntCounter::new(
                "ember_objstore_read_bytes_total",
                "Bytes read from object storage",
            )?,
            written_bytes: IntCounter::new(
                "ember_objstore_written_bytes_total",
                "Bytes written to object storage",
            )?,
        };
        registry.register(Box::new(m.operations.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.read_bytes.clone()))?;
        registry.register(Box::new(m.written_bytes.clone()))?;
        for op in OPERATIONS {
            m.operations.with_label_values(&[op]);
            m.failures.with_label_values(&[op]);
            m.duration.with_label_values(&[op]);
        }
        Ok(m)
    }

    /// Records one finished operation.
    fn observe<T>(&self, operation: &str, started: Instant, result: &Result<T>) {
        self.record(operation, started.elapsed(), result.is_err());
    }

    fn record(&self, operation: &str, elapsed: Duration, failed: bool) {
        self.operations.with_label_values(&[operation]).inc();
        self.duration
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
        if failed {
            self.failures.with_label_values(&[operation]).inc();
        }
    }
}

/// Returns `store` recording its operations into `metrics`.
pub fn instrument(store: Arc<dyn ObjectStore>, metrics: ObjstoreMetrics) -> Arc<dyn ObjectStore> {
    Arc::new(Instrumented {
        inner: store,
        metrics,
    })
}

/// An object store that times and counts the operations of the one it wraps.
#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    metrics: ObjstoreMetrics,
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

/// Returns the operation name of a get with `options`.
fn get_operation(options: &GetOptions) -> &'static str {
    if options.head {
        "head"
    } else if options.range.is_some() {
        "get_range"
    } else {
        "get"
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let bytes = payload.content_length() as u64;
        let started = Instant::now();
        let result = self.inner.put_opts(location, payload, opts).await;
        self.metrics.observe("put", started, &result);
        if result.is_ok() {
            self.metrics.written_bytes.inc_by(bytes);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let started = Instant::now();
        let result = self.inner.put_multipart_opts(location, opts).await;
        match result {
            Ok(upload) => Ok(Box::new(CountedUpload {
                inner: upload,
                metrics: self.metrics.clone(),
                started,
            })),
            Err(e) => {
                self.metrics.record("put", started.elapsed(), true);
                Err(e)
            }
        }
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = get_operation(&options);
        let started = Instant::now();
        let result = self.inner.get_opts(location, options).await;
        self.metrics.observe(operation, started, &result);
        if let Ok(r) = &result
            && operation != "head"
        {
            self.metrics
                .read_bytes
                .inc_by(r.range.end.saturating_sub(r.range.start));
        }
        result
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let started = Instant::now();
        let result = self.inner.get_ranges(location, ranges).await;
        self.metrics.observe("get_range", started, &result);
        if let Ok(parts) = &result {
            let bytes: usize = parts.iter().map(Bytes::len).sum();
            self.metrics.read_bytes.inc_by(bytes as u64);
        }
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let metrics = self.metrics.clone();
        let started = Instant::now();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| metrics.record("delete", started.elapsed(), r.is_err()))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        timed_list(self.metrics.clone(), self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        timed_list(
            self.metrics.clone(),
            self.inner.list_with_offset(prefix, offset),
        )
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let started = Instant::now();
        let result = self.inner.list_with_delimiter(prefix).await;
        self.metrics.observe("list", started, &result);
        result
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.copy_opts(from, to, options).await;
        self.metrics.observe("copy", started, &result);
        result
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.rename_opts(from, to, options).await;
        self.metrics.observe("copy", started, &result);
        result
    }
}

/// Records a listing once its stream ends (or fails at its first error).
fn timed_list(
    metrics: ObjstoreMetrics,
    stream: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let started = Instant::now();
    futures::stream::unfold(
        (stream, Some(metrics)),
        move |(mut stream, mut metrics)| async move {
            let item = stream.next().await;
            match &item {
                Some(Err(_)) => {
                    if let Some(m) = metrics.take() {
                        m.record("list", started.elapsed(), true);
                    }
                }
                None => {
                    if let Some(m) = metrics.take() {
                        m.record("list", started.elapsed(), false);
                    }
                }
                Some(Ok(_)) => {}
            }
            item.map(|item| (item, (stream, metrics)))
        },
    )
    .boxed()
}

/// A multipart upload counting the bytes of its parts; recorded as one `put`
/// when completed or aborted.
#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: ObjstoreMetrics,
    started: Instant,
}

#[async_trait]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let bytes = data.content_length() as u64;
        let written = self.metrics.written_bytes.clone();
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let result = part.await;
            if result.is_ok() {
                written.inc_by(bytes);
            }
            result
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await;
        self.metrics.observe("put", self.started, &result);
        result
    }

    async fn abort(&mut self) -> Result<()> {
        let result = self.inner.abort().await;
        self.metrics.record("put", self.started.elapsed(), true);
        result
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, memory::InMemory};

    use super::*;

    fn value(m: &IntCounterVec, op: &str) -> u64 {
        m.with_label_values(&[op]).get()
    }

    #[tokio::test]
    async fn operations_are_counted_by_name_with_their_bytes() {
        let registry = Registry::new();
        let metrics = ObjstoreMetrics::register(&registry).unwrap();
        let store = instrument(Arc::new(InMemory::new()), metrics.clone());
        let path = Path::from("t/a");
        store
            .put(&path, Bytes::from_static(b"hello").into())
            .await
            .unwrap();
        assert_eq!(metrics.written_bytes.get(), 5);
        let body = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], b"hello");
        store.get_range(&path, 1..3).await.unwrap();
        store.head(&path).await.unwrap();
        assert_eq!(metrics.read_bytes.get(), 5 + 2);
        let listed: Vec<_> = store.list(None).collect().await;
        assert_eq!(listed.len(), 1);
        store.copy(&path, &Path::from("t/b")).await.unwrap();
        store.delete(&path).await.unwrap();
        for op in ["put", "get", "get_range", "head", "list", "copy", "delete"] {
            assert_eq!(value(&metrics.operations, op), 1, "{op}");
            assert_eq!(value(&metrics.failures, op), 0, "{op}");
        }
        assert!(store.get(&path).await.is_err());
        assert_eq!(value(&metrics.failures, "get"), 1);
        assert_eq!(value(&metrics.operations, "get"), 2);
        let text = {
            let mut out = Vec::new();
            prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &registry.gather(),
                &mut out,
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(
            text.contains("ember_objstore_operation_duration_seconds_count{operation=\"put\"} 1")
        );
    }

    #[test]
    fn every_operation_has_a_series_from_the_start() {
        let registry = Registry::new();
        ObjstoreMetrics::register(&registry).unwrap();
        let families = registry.gather();
        let failures = families
            .iter()
            .find(|f| f.name() == "ember_objstore_operation_failures_total")
            .unwrap();
        assert_eq!(failures.get_metric().len(), OPERATIONS.len());
    }
}
