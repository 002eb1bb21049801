//! The write-ahead log's metrics, `ember_ingester_wal_*`, registered into the
//! process's registry. The log records appends, fsyncs, bytes and segments;
//! the ingester, which replays the log, records replayed and corrupt records.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry, exponential_buckets};

/// Counters and latencies of the write-ahead log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WalMetrics {
    /// How long an append takes, waiting for its group's write and fsync.
    pub append_duration: Histogram,
    /// How long each group's fsync takes.
    pub fsync_duration: Histogram,
    /// Bytes written to segments (records and their headers).
    pub written_bytes: IntCounter,
    /// Segment files on disk.
    pub segments: IntGauge,
    /// Appends that failed (e.g. the disk is full).
    pub append_failures: IntCounter,
    /// Records read back by a replay.
    pub replayed_records: IntCounter,
    /// Records a replay skipped: damaged stretches and undecodable records.
    pub corrupt_records: IntCounter,
}

impl WalMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let buckets = exponential_buckets(0.0001, 4.0, 9)?;
        let m = Self {
            append_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ember_ingester_wal_append_duration_seconds",
                    "Write-ahead log append latency, fsync included",
                )
                .buckets(buckets.clone()),
            )?,
            fsync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ember_ingester_wal_fsync_duration_seconds",
                    "Write-ahead log fsync latency",
                )
                .buckets(buckets),
            )?,
            written_bytes: IntCounter::new(
                "ember_ingester_wal_written_bytes_total",
                "Bytes written to the write-ahead log",
            )?,
            segments: IntGauge::new(
                "ember_ingester_wal_segments",
                "Write-ahead log segment files on disk",
            )?,
            append_failures: IntCounter::new(
                "ember_ingester_wal_append_failures_total",
                "Write-ahead log appends that failed",
            )?,
            replayed_records: IntCounter::new(
                "ember_ingester_wal_replayed_records_total",
                "Write-ahead log records replayed on start",
            )?,
            corrupt_records: IntCounter::new(
                "ember_ingester_wal_corrupt_records_total",
                "Write-ahead log records skipped on replay as damaged or undecodable",
            )?,
        };
        registry.register(Box::new(m.append_duration.clone()))?;
        registry.register(Box::new(m.fsync_duration.clone()))?;
        registry.register(Box::new(m.written_bytes.clone()))?;
        registry.register(Box::new(m.segments.clone()))?;
        registry.register(Box::new(m.append_failures.clone()))?;
        registry.register(Box::new(m.replayed_records.clone()))?;
        registry.register(Box::new(m.corrupt_records.clone()))?;
        Ok(m)
    }

    /// Returns metrics registered nowhere: for a log whose owner records
    /// nothing (tests, benchmarks) until [`Wal::with_metrics`](crate::Wal::with_metrics).
    pub fn detached() -> Self {
        Self::register(&Registry::new()).expect("metrics of a new registry are unique")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Wal, WalOptions};

    #[test]
    fn appends_rotations_and_deletions_move_the_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = WalMetrics::register(&Registry::new()).unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default())
            .unwrap()
            .with_metrics(metrics.clone());
        assert_eq!(metrics.segments.get(), 1);
        wal.append(b"one profile").unwrap();
        wal.append(b"another").unwrap();
        assert_eq!(metrics.append_duration.get_sample_count(), 2);
        assert!(metrics.fsync_duration.get_sample_count() >= 1);
        assert!(metrics.written_bytes.get() > 2 * crate::RECORD_HEADER_LEN);
        let closed = wal.rotate().unwrap();
        assert_eq!(metrics.segments.get(), 2);
        wal.delete_before(closed + 1).unwrap();
        assert_eq!(metrics.segments.get(), 1);
        assert!(
            wal.append(&vec![0; crate::MAX_RECORD_BYTES as usize + 1])
                .is_err()
        );
        assert_eq!(metrics.append_failures.get(), 1);
    }
}
