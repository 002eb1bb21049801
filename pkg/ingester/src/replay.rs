//! How far the write-ahead log replay of [`crate::Ingester::open_with_progress`]
//! has come: read by `/ready` while it runs, and logged every few seconds.
//!
//! A replay has two phases: reading the segments (progress in bytes, the only
//! measure known before the records are), then decoding the records and
//! rebuilding the heads from them, which overlap (progress in records).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use tracing::info;

/// How often a running replay logs its progress.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(5);

const READING: u8 = 0;
const REBUILDING: u8 = 1;

/// Progress of one replay, shared between the replaying thread and readers.
#[derive(Debug, Default)]
pub struct ReplayProgress {
    pub(crate) wal: ember_wal::ReplayProgress,
    phase: AtomicU8,
    records_total: AtomicU64,
    records_done: AtomicU64,
    finished: AtomicBool,
}

/// A snapshot of a [`ReplayProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySnapshot {
    /// What the replay is doing: `reading` or `rebuilding`.
    pub phase: &'static str,
    /// Percent of the phase done, 0 to 100.
    pub percent: u64,
    /// Units done in this phase (bytes when reading, records otherwise).
    pub done: u64,
    /// Units in this phase.
    pub total: u64,
}

impl ReplayProgress {
    /// Returns a new, shared progress at its start.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn start_records(&self, total: usize) {
        self.records_done.store(0, Ordering::Relaxed);
        self.records_total.store(total as u64, Ordering::Relaxed);
        self.phase.store(REBUILDING, Ordering::Release);
    }

    pub(crate) fn record_done(&self) {
        self.records_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    /// Returns whether the replay is over (done or failed).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Returns where the replay is, or `None` once it is over.
    pub fn snapshot(&self) -> Option<ReplaySnapshot> {
        if self.is_finished() {
            return None;
        }
        let (phase, done, total) = match self.phase.load(Ordering::Acquire) {
            READING => ("reading", self.wal.bytes_read(), self.wal.bytes_total()),
            _ => (
                "rebuilding",
                self.records_done.load(Ordering::Relaxed),
                self.records_total.load(Ordering::Relaxed),
            ),
        };
        let done = done.min(total);
        let percent = (done * 100).checked_div(total).unwrap_or(0);
        Some(ReplaySnapshot {
            phase,
            percent,
            done,
            total,
        })
    }

    /// Returns the line `/ready` shows while the replay runs, e.g.
    /// `replaying write-ahead log: 40%, 4,000 of 10,000 records (rebuilding heads)`;
    /// `None` once it is over.
    pub fn describe(&self) -> Option<String> {
        let s = self.snapshot()?;
        Some(match s.phase {
            "reading" => format!(
                "replaying write-ahead log: {}%, {} of {} bytes of segments read",
                s.percent,
                thousands(s.done),
                thousands(s.total)
            ),
            _ => format!(
                "replaying write-ahead log: {}%, {} of {} records (rebuilding heads)",
                s.percent,
                thousands(s.done),
                thousands(s.total),
            ),
        })
    }

    /// Logs the progress every [`LOG_EVERY`] until the replay is over; the
    /// task ends with it.
    pub(crate) fn log_periodically(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOG_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(s) = self.snapshot() else { return };
                info!(
                    phase = s.phase,
                    percent = s.percent,
                    done = s.done,
                    total = s.total,
                    unit = if s.phase == "reading" {
                        "bytes"
                    } else {
                        "records"
                    },
                    "replaying write-ahead log"
                );
            }
        })
    }
}

/// Returns `n` with commas between thousands: `10,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn describes_each_phase_and_nothing_once_finished() {
        let p = ReplayProgress::default();
        assert_eq!(
            p.describe().unwrap(),
            "replaying write-ahead log: 0%, 0 of 0 bytes of segments read"
        );
        p.start_records(10_000);
        for _ in 0..4_000 {
            p.record_done();
        }
        assert_eq!(
            p.describe().unwrap(),
            "replaying write-ahead log: 40%, 4,000 of 10,000 records (rebuilding heads)"
        );
        p.finish();
        assert_eq!(p.describe(), None);
    }
}
