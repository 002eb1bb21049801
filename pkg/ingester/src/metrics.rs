//! The ingester's metrics, `ember_ingester_*`, registered into the process's
//! registry. The write-ahead log has its own ([`ember_wal::WalMetrics`]); the
//! ring reports this ingester's ring state.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry, exponential_buckets};

/// Gauges of the open heads and counters of cuts and flushes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IngesterMetrics {
    /// Series in the open (active) heads of all tenants.
    pub head_series: IntGauge,
    /// Profile rows (one per series a profile was split into) in the open heads.
    pub head_profiles: IntGauge,
    /// Samples (stack and value pairs) in the open heads.
    pub head_samples: IntGauge,
    /// Heap bytes of the open heads ([`ember_block::MemBlock::heap_bytes`]),
    /// as of their last append.
    pub head_bytes: IntGauge,
    /// Profiles appended.
    pub ingested_profiles: IntCounter,
    /// Heads cut, to be flushed.
    pub head_cuts: IntCounter,
    /// Head flushes attempted (one per head, retries included).
    pub flushes: IntCounter,
    /// Head flushes that failed and will be retried.
    pub flush_failures: IntCounter,
    /// How long a head's flush takes: encoding and upload.
    pub flush_duration: Histogram,
    /// Bytes of the blocks flushed.
    pub flushed_bytes: IntCounter,
    /// Blocks uploaded to object storage.
    pub blocks_uploaded: IntCounter,
}

impl IngesterMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            head_series: IntGauge::new(
                "ember_ingester_head_series",
                "Series in the open heads of all tenants",
            )?,
            head_profiles: IntGauge::new(
                "ember_ingester_head_profiles",
                "Profile rows in the open heads of all tenants",
            )?,
            head_samples: IntGauge::new(
                "ember_ingester_head_samples",
                "Samples in the open heads of all tenants",
            )?,
            head_bytes: IntGauge::new(
                "ember_ingester_head_bytes",
                "Heap bytes of the open heads of all tenants, from the capacities of their vectors and tables",
            )?,
            ingested_profiles: IntCounter::new(
                "ember_ingester_ingested_profiles_total",
                "Profiles appended to heads",
            )?,
            head_cuts: IntCounter::new("ember_ingester_head_cuts_total", "Heads cut")?,
            flushes: IntCounter::new("ember_ingester_flushes_total", "Head flushes attempted")?,
            flush_failures: IntCounter::new(
                "ember_ingester_flush_failures_total",
                "Head flushes that failed",
            )?,
            flush_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ember_ingester_flush_duration_seconds",
                    "Head flush latency: encoding and upload",
                )
                .buckets(exponential_buckets(0.01, 4.0, 8)?),
            )?,
            flushed_bytes: IntCounter::new(
                "ember_ingester_flushed_bytes_total",
                "Bytes of the blocks flushed",
            )?,
            blocks_uploaded: IntCounter::new(
                "ember_ingester_blocks_uploaded_total",
                "Blocks uploaded to object storage",
            )?,
        };
        registry.register(Box::new(m.head_series.clone()))?;
        registry.register(Box::new(m.head_profiles.clone()))?;
        registry.register(Box::new(m.head_samples.clone()))?;
        registry.register(Box::new(m.head_bytes.clone()))?;
        registry.register(Box::new(m.ingested_profiles.clone()))?;
        registry.register(Box::new(m.head_cuts.clone()))?;
        registry.register(Box::new(m.flushes.clone()))?;
        registry.register(Box::new(m.flush_failures.clone()))?;
        registry.register(Box::new(m.flush_duration.clone()))?;
        registry.register(Box::new(m.flushed_bytes.clone()))?;
        registry.register(Box::new(m.blocks_uploaded.clone()))?;
        Ok(m)
    }

    /// Returns metrics registered nowhere, for an ingester whose owner
    /// records nothing (tests, benchmarks).
    pub fn detached() -> Self {
        Self::register(&Registry::new()).expect("metrics of a new registry are unique")
    }

    /// Adds (or, negated, removes) a head's contents to the open-head gauges.
    pub fn add_head(&self, c: HeadCounts, sign: i64) {
        self.head_series.add(sign * c.series as i64);
        self.head_profiles.add(sign * c.profiles as i64);
        self.head_samples.add(sign * c.samples as i64);
        self.head_bytes.add(sign * c.bytes as i64);
    }
}

/// What a head holds, or what an append added to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadCounts {
    pub series: u64,
    pub profiles: u64,
    pub samples: u64,
    /// Heap bytes ([`ember_block::MemBlock::heap_bytes`]).
    pub bytes: u64,
}
