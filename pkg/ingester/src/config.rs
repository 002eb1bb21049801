//! The `ingester` section of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use ember_config::{Documented, duration};
use serde::{Deserialize, Serialize};

/// The ingester (`ingester`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterConfig {
    /// Longest time range of a head block before it is cut.
    ///
    /// Heads are cut when the wall clock enters a new window of this length,
    /// aligned to the epoch (10:00, 11:00, ...), so that every ingester cuts at
    /// the same instants and replicas' blocks cover the same range. Default 1h.
    #[serde(with = "duration")]
    pub max_block_duration: Duration,
    /// Largest in-memory head block before it is cut.
    ///
    /// Default 512 MiB.
    pub max_block_bytes: u64,
    /// How often heads are cut when due and cut heads uploaded.
    ///
    /// Heads whose upload failed are retried at each check. Default 10s; tests
    /// shorten it to see blocks within seconds.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Write-ahead log directory; empty for <storage.filesystem.dir>/wal.
    ///
    /// Every accepted profile is written (and, with `wal_fsync`, fsynced) to
    /// the log before the push is acknowledged, and the log is replayed on
    /// start. It must survive a restart: it is the only local state an
    /// ingester needs. The default holds whatever the storage backend.
    pub wal_dir: PathBuf,
    /// Fsync the write-ahead log before acknowledging a push; false may lose acknowledged profiles if the machine crashes.
    ///
    /// Off, an acknowledged profile survives a crash of the process (it is in
    /// the kernel's page cache) but not a crash or power loss of the machine;
    /// for benchmarks and disposable setups. Default true.
    pub wal_fsync: bool,
    /// The availability zone this ingester runs in; empty for none.
    ///
    /// Gossiped in the ring, as Pyroscope's `-ingester.availability-zone`.
    /// With `distributor.zone_awareness_enabled`, the replicas of a series
    /// go to distinct zones, so that losing a whole zone loses no
    /// acknowledged profile; every ingester must then name its zone.
    pub availability_zone: String,
}

const MIB: u64 = 1024 * 1024;

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            max_block_duration: Duration::from_secs(3600),
            max_block_bytes: 512 * MIB,
            flush_interval: Duration::from_secs(10),
            wal_dir: PathBuf::new(),
            wal_fsync: true,
            availability_zone: String::new(),
        }
    }
}

impl IngesterConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> ember_config::Result<()> {
        let invalid = |message: &str| Err(ember_config::Error::invalid(message));
        if self.max_block_duration.is_zero() {
            return invalid("ingester.max_block_duration must be greater than 0s");
        }
        if self.max_block_bytes == 0 {
            return invalid("ingester.max_block_bytes must be greater than 0");
        }
        if self.flush_interval.is_zero() {
            return invalid("ingester.flush_interval must be greater than 0s");
        }
        Ok(())
    }

    /// Returns the write-ahead log's options.
    pub fn wal_options(&self) -> ember_wal::WalOptions {
        ember_wal::WalOptions {
            fsync: self.wal_fsync,
            ..ember_wal::WalOptions::default()
        }
    }
}
