//! Where accepted profiles go: the ingester of this process, or replicas of
//! each series on ingesters of the ring ([`crate::replication`]).

use std::fmt::Debug;

use ember_ingester::Ingester;
use ember_model::{ProfileId, ingest::SeriesSpec};
use ember_proto::{error::Code, google::v1::Profile};
use tonic::Status;

/// One accepted profile, validated and turned into deltas.
#[derive(Debug, Clone, Copy)]
pub struct ProfileWrite<'a> {
    pub id: ProfileId,
    pub profile: &'a Profile,
    pub series: &'a [SeriesSpec],
    pub time_nanos: i64,
    /// The tenant's active-series limit (0: none), enforced by each ingester.
    pub max_active_series: usize,
}

/// Stores accepted profiles durably. Blocking: called off the async runtime.
pub trait IngestSink: Send + Sync + Debug {
    /// Returns once the profile is durable (in a write-ahead log, or on a
    /// quorum of replicas), or why it was refused.
    fn write(&self, tenant: &str, write: &ProfileWrite<'_>) -> Result<(), Status>;
}

impl IngestSink for Ingester {
    fn write(&self, tenant: &str, w: &ProfileWrite<'_>) -> Result<(), Status> {
        self.admit_series(tenant, w.series, w.max_active_series)
            .map_err(|e| Code::RateLimited.status(e.to_string()))?;
        self.append(tenant, w.profile, w.series, w.time_nanos, w.id)
            .map_err(|e| Code::Unavailable.status(e.to_string()))
    }
}
