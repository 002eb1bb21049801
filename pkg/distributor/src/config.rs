//! The `distributor` section of the configuration.

use ember_config::Documented;
use serde::{Deserialize, Serialize};

/// The distributor (`distributor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// Ingesters that receive each series; 0: 1 with -target=all, 3 in a cluster.
    ///
    /// A write is acknowledged once a majority of them has it.
    pub replication_factor: usize,
    /// Place each series' replicas in distinct availability zones.
    ///
    /// Zones come from each ingester's `ingester.availability_zone`. A
    /// write is then acknowledged only once ingesters of two zones have it,
    /// and a query tolerates a whole zone not answering. Set the same value
    /// on distributors and queriers.
    pub zone_awareness_enabled: bool,
}

impl DistributorConfig {
    /// Returns the replication factor: the configured one, or when 0, 3 in a
    /// cluster (`clustered`) and 1 in a single process.
    pub fn replication_factor(&self, clustered: bool) -> usize {
        match self.replication_factor {
            0 if clustered => 3,
            0 => 1,
            n => n,
        }
    }
}
