//! The compactor's metrics, `ember_compactor_*`, registered into the
//! process's registry: passes, the blocks merged and written, and deletions.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, exponential_buckets,
};

/// Counters of compaction passes and blocks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CompactorMetrics {
    /// Passes run.
    pub runs: IntCounter,
    /// Passes that failed or in which something failed (retried next pass).
    pub run_failures: IntCounter,
    /// How long a pass takes.
    pub run_duration: Histogram,
    /// When the last pass without a failure ended, in unix seconds.
    pub last_successful_run: Gauge,
    /// Blocks merged into others (blocks in).
    pub blocks_compacted: IntCounter,
    /// Merged blocks uploaded (blocks out).
    pub blocks_written: IntCounter,
    /// Bytes of the merged blocks uploaded.
    pub written_bytes: IntCounter,
    /// Blocks deleted, by reason: `compacted` (merged or superseded) or `retention`.
    pub blocks_deleted: IntCounterVec,
}

impl CompactorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            runs: IntCounter::new("ember_compactor_runs_total", "Compaction passes run")?,
            run_failures: IntCounter::new(
                "ember_compactor_run_failures_total",
                "Compaction passes that failed or had a failure",
            )?,
            run_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ember_compactor_run_duration_seconds",
                    "Compaction pass duration",
                )
                .buckets(exponential_buckets(0.01, 4.0, 10)?),
            )?,
            last_successful_run: Gauge::new(
                "ember_compactor_last_successful_run_timestamp_seconds",
                "When the last compaction pass without a failure ended, unix seconds",
            )?,
            blocks_compacted: IntCounter::new(
                "ember_compactor_blocks_compacted_total",
                "Blocks merged into others",
            )?,
            blocks_written: IntCounter::new(
                "ember_compactor_blocks_written_total",
                "Merged blocks uploaded",
            )?,
            written_bytes: IntCounter::new(
                "ember_compactor_written_bytes_total",
                "Bytes of the merged blocks uploaded",
            )?,
            blocks_deleted: IntCounterVec::new(
                Opts::new(
                    "ember_compactor_blocks_deleted_total",
                    "Blocks deleted, by reason: compacted or retention",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.runs.clone()))?;
        registry.register(Box::new(m.run_failures.clone()))?;
        registry.register(Box::new(m.run_duration.clone()))?;
        registry.register(Box::new(m.last_successful_run.clone()))?;
        registry.register(Box::new(m.blocks_compacted.clone()))?;
        registry.register(Box::new(m.blocks_written.clone()))?;
        registry.register(Box::new(m.written_bytes.clone()))?;
        registry.register(Box::new(m.blocks_deleted.clone()))?;
        m.blocks_deleted.with_label_values(&["compacted"]);
        m.blocks_deleted.with_label_values(&["retention"]);
        Ok(m)
    }

    /// Returns metrics registered nowhere, for a compactor whose owner
    /// records nothing (tests, benchmarks).
    pub fn detached() -> Self {
        Self::register(&Registry::new()).expect("metrics of a new registry are unique")
    }
}
