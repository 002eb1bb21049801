//! The distributor receives pushes (`push.v1.PusherService`), validates them
//! against the tenant's limits and hands each accepted profile to the
//! ingester. Decoding is CPU-bound and runs off the async runtime.
//!
//! Every push goes through, in order: the ingestion rate limit (charged with
//! the bytes received, before any decoding), the size limits, decoding, the
//! sample, stack-depth and label limits, the active-series limit, and the
//! conversion of cumulative series into deltas ([`delta`]). A refusal names
//! the limit, its configuration key, its value and the tenant.

mod config;
pub mod delta;
mod error;
mod metrics;
pub mod rate;
pub mod replication;

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use ember_limits::{Limits, TenantLimits};
use ember_model::{
    Labels,
    ingest::{self, Annotation, IngestSink, ProfileWrite},
    labels::{DELTA, METRIC_NAME},
    pprof::{self, FlatProfile},
};
use ember_proto::{
    Tenant,
    google::v1::Profile,
    push::v1::{PushRequest, PushResponse, pusher_service_server::PusherService},
    types::v1::{GetFeatureFlagsRequest, GetFeatureFlagsResponse},
};
use ember_time::SharedClock;
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::debug;

pub use config::DistributorConfig;
pub use delta::DeltaTracker;
pub use error::{Error, Result};
pub use metrics::DistributorMetrics;
pub use rate::RateLimiter;

/// What a push brought besides its decoded profile.
#[derive(Debug, Clone, Copy)]
struct Received<'a> {
    /// The profile's bytes as received and decompressed.
    sizes: (usize, usize),
    /// The decompressed protobuf, when the profile came as one.
    encoded: Option<&'a [u8]>,
}

/// Cheap to clone: clones share the sink, the limits and the per-tenant state.
#[derive(Debug, Clone)]
pub struct Distributor {
    sink: Arc<dyn IngestSink>,
    limits: Arc<dyn TenantLimits>,
    clock: SharedClock,
    rate: Arc<RateLimiter>,
    deltas: Arc<DeltaTracker>,
    metrics: DistributorMetrics,
}

/// Names the tenant and the limit in a decoding error over the size limit.
fn model_error(tenant: &str, e: ember_model::Error) -> Error {
    match e {
        ember_model::Error::TooLarge(m) => Error::TooLarge(format!(
            "tenant {tenant:?}: {m} (limits.max_decompressed_profile_size_bytes)"
        )),
        e => Error::Profile(e),
    }
}

/// The decompressed-size bound used when that limit is disabled: large, but
/// clear of `usize::MAX`, which `gunzip_bounded` cannot take (it adds one).
const NO_DECOMPRESSED_LIMIT: usize = usize::MAX >> 1;

/// Returns `limit` with 0 (disabled) as "no limit".
fn enabled(limit: usize) -> usize {
    if limit == 0 { usize::MAX } else { limit }
}

/// [`enabled`] for limits in bytes.
fn enabled_u64(limit: u64) -> u64 {
    if limit == 0 { u64::MAX } else { limit }
}

impl Distributor {
    /// Returns a distributor feeding `sink` (the ingester of this process, or
    /// a [`replication::Replicas`] in a cluster), with the limits of each
    /// tenant from `limits` (a [`Limits`] for the same limits everywhere, or
    /// the configured `ember_limits::Overrides`); rates, deltas and the time
    /// of profiles without one follow `clock`.
    pub fn new(
        sink: Arc<dyn IngestSink>,
        limits: Arc<dyn TenantLimits>,
        clock: SharedClock,
    ) -> Self {
        Self {
            sink,
            limits,
            clock,
            rate: Arc::new(RateLimiter::default()),
            deltas: Arc::new(DeltaTracker::default()),
            metrics: DistributorMetrics::detached(),
        }
    }

    /// Records what is pushed and refused into `metrics`.
    pub fn with_metrics(mut self, metrics: DistributorMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts a push of `tenant` refused with `status`; the HTTP ingest
    /// endpoint calls it with its answer, the push service by itself.
    pub fn rejected(&self, tenant: &str, status: &Status) {
        self.metrics.rejected(tenant, status);
    }

    /// Returns the limits of `tenant`.
    pub fn limits(&self, tenant: &str) -> Limits {
        self.limits.limits(tenant)
    }

    /// Charges `bytes` to the ingestion rate limit of `tenant`, refusing with
    /// 429 when its token bucket is empty.
    pub fn charge(&self, tenant: &str, bytes: usize) -> Result<()> {
        let l = self.limits(tenant);
        self.charge_with(tenant, bytes, &l)
    }

    /// Returns the time since the epoch: the clock of rates and deltas.
    fn since_epoch(&self) -> Duration {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn charge_with(&self, tenant: &str, bytes: usize, l: &Limits) -> Result<()> {
        let now = self.since_epoch();
        if self.rate.allow(
            tenant,
            bytes,
            l.ingestion_rate_mb,
            l.ingestion_burst_size_mb,
            now,
        ) {
            return Ok(());
        }
        Err(Error::RateLimited(format!(
            "tenant {tenant:?} is over its ingestion rate limit of {} MB/s (limits.ingestion_rate_mb) with a burst of {} MB (limits.ingestion_burst_size_mb): {bytes} bytes refused; send less often or ask for a higher limit",
            l.ingestion_rate_mb, l.ingestion_burst_size_mb
        )))
    }

    fn check_labels(tenant: &str, labels: &Labels, l: &Limits) -> Result<()> {
        if labels.len() > enabled(l.max_label_names_per_series) {
            return Err(Error::OverLimit(format!(
                "tenant {tenant:?}: series {labels} has {} labels, more than the limit of {} (limits.max_label_names_per_series)",
                labels.len(),
                l.max_label_names_per_series
            )));
        }
        for label in labels.iter() {
            if label.name.len() > enabled(l.max_label_name_length) {
                return Err(Error::OverLimit(format!(
                    "tenant {tenant:?}: label name {:?} is {} bytes long, more than the limit of {} (limits.max_label_name_length)",
                    label.name,
                    label.name.len(),
                    l.max_label_name_length
                )));
            }
            if label.value.len() > enabled(l.max_label_value_length) {
                return Err(Error::OverLimit(format!(
                    "tenant {tenant:?}: value of label {:?} is {} bytes long, more than the limit of {} (limits.max_label_value_length)",
                    label.name,
                    label.value.len(),
                    l.max_label_value_length
                )));
            }
        }
        Ok(())
    }

    fn check_profile(tenant: &str, profile: &FlatProfile, l: &Limits) -> Result<()> {
        let samples = &profile.samples;
        if samples.len() > enabled(l.max_samples_per_profile) {
            return Err(Error::OverLimit(format!(
                "tenant {tenant:?}: profile has {} samples, more than the limit of {} (limits.max_samples_per_profile)",
                samples.len(),
                l.max_samples_per_profile
            )));
        }
        let max_depth = enabled(l.max_stack_depth);
        if let Some((i, s)) = samples
            .iter()
            .enumerate()
            .find(|(_, s)| s.stack.len() > max_depth)
        {
            return Err(Error::OverLimit(format!(
                "tenant {tenant:?}: sample {i} has a stack of {} frames, more than the limit of {} (limits.max_stack_depth)",
                s.stack.len(),
                l.max_stack_depth
            )));
        }
        Ok(())
    }

    /// Decodes, validates and ingests one raw pprof with its client labels,
    /// charging its size to the tenant's ingestion rate.
    /// CPU-bound: call it off the async runtime.
    pub fn ingest_pprof(&self, tenant: &str, client_labels: &Labels, raw: &[u8]) -> Result<()> {
        let l = self.limits(tenant);
        Self::check_size(tenant, raw, &l)?;
        self.charge_with(tenant, raw.len(), &l)?;
        self.ingest_pprof_charged(tenant, client_labels, &[], raw, &l)
    }

    /// Refuses a profile larger than `max_profile_size_bytes` with 413: checked
    /// before the rate limit, so a profile that can never pass is not
    /// answered with a 429 that invites retries.
    fn check_size(tenant: &str, raw: &[u8], l: &Limits) -> Result<()> {
        if raw.len() as u64 > enabled_u64(l.max_profile_size_bytes) {
            return Err(Error::TooLarge(format!(
                "tenant {tenant:?}: profile is {} bytes, more than the limit of {} bytes (limits.max_profile_size_bytes)",
                raw.len(),
                l.max_profile_size_bytes
            )));
        }
        Ok(())
    }

    fn ingest_pprof_charged(
        &self,
        tenant: &str,
        client_labels: &Labels,
        annotations: &[Annotation],
        raw: &[u8],
        l: &Limits,
    ) -> Result<()> {
        // Sample and depth limits are checked here, so messages name the tenant.
        let decode_limits = pprof::DecodeLimits {
            max_decompressed_bytes: match l.decode().max_decompressed_bytes {
                0 => NO_DECOMPRESSED_LIMIT,
                n => n,
            },
            max_samples: 0,
            max_stack_depth: 0,
        };
        // Gunzipped here rather than in `decode`, to count the bytes.
        let bytes = pprof::gunzip_bounded(raw, decode_limits.max_decompressed_bytes)
            .map_err(|e| model_error(tenant, e))?;
        let profile = pprof::decode(&bytes, &decode_limits).map_err(|e| model_error(tenant, e))?;
        let sizes = (raw.len(), bytes.len());
        let received = Received {
            sizes,
            encoded: Some(&bytes),
        };
        self.ingest_validated(tenant, (client_labels, annotations), profile, received, l)
    }

    /// Validates and ingests a profile that is already decoded, e.g. converted
    /// from another format, charging its encoded size to the tenant's
    /// ingestion rate. Cumulative series become deltas as with pprof: callers
    /// whose format is never cumulative should set `__delta__="false"`.
    /// CPU-bound: call it off the async runtime.
    pub fn ingest_profile(
        &self,
        tenant: &str,
        client_labels: &Labels,
        profile: Profile,
    ) -> Result<()> {
        let l = self.limits(tenant);
        let size = profile.encoded_len();
        let mut profile = FlatProfile::from(profile);
        self.charge_with(tenant, size, &l)?;
        let decode_limits = pprof::DecodeLimits {
            max_decompressed_bytes: NO_DECOMPRESSED_LIMIT,
            max_samples: 0,
            max_stack_depth: 0,
        };
        pprof::validate(&mut profile, &decode_limits).map_err(|e| model_error(tenant, e))?;
        let received = Received {
            sizes: (size, size),
            encoded: None,
        };
        self.ingest_validated(tenant, (client_labels, &[]), profile, received, &l)
    }

    fn ingest_validated(
        &self,
        tenant: &str,
        (client_labels, annotations): (&Labels, &[Annotation]),
        mut profile: FlatProfile,
        Received { sizes, encoded }: Received<'_>,
        l: &Limits,
    ) -> Result<()> {
        let (compressed, decompressed) = sizes;
        // `series_for` drops `__` labels, so the delta switch is read first.
        let delta = client_labels.get(DELTA) != Some("false");
        let mut series = ingest::series_for(&profile, client_labels);
        let kind = series
            .first()
            .and_then(|s| s.labels.get(METRIC_NAME))
            .or_else(|| client_labels.get(METRIC_NAME))
            .unwrap_or("unknown");
        self.metrics.received(
            tenant,
            kind,
            profile.samples.len(),
            compressed,
            decompressed,
        );
        Self::check_profile(tenant, &profile, l)?;
        for s in &series {
            Self::check_labels(tenant, &s.labels, l)?;
        }
        // Deltas rewrite a cumulative profile's values: its bytes no longer match.
        let changed = delta
            && self
                .deltas
                .apply(tenant, &mut profile, &mut series, self.since_epoch());
        let encoded = if changed { None } else { encoded };
        let time = if profile.header.time_nanos > 0 {
            profile.header.time_nanos
        } else {
            self.clock.now_nanos()
        };
        debug!(
            tenant,
            series = series.len(),
            samples = profile.samples.len(),
            "ingesting profile"
        );
        self.sink
            .write(
                tenant,
                &ProfileWrite {
                    id: ember_model::new_profile_id(),
                    profile: &profile,
                    series: &series,
                    time_nanos: time,
                    max_active_series: l.max_active_series,
                    annotations,
                    encoded,
                },
            )
            .map_err(Error::Write)
    }
}

#[tonic::async_trait]
impl PusherService for Distributor {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let req = request.into_inner();
        let result = self.push_blocking(tenant.clone(), req).await;
        if let Err(status) = &result {
            self.rejected(&tenant, status);
        }
        result
    }

    async fn get_feature_flags(
        &self,
        _request: Request<GetFeatureFlagsRequest>,
    ) -> Result<Response<GetFeatureFlagsResponse>, Status> {
        Ok(Response::new(GetFeatureFlagsResponse {
            feature_flags: Vec::new(),
        }))
    }
}

impl Distributor {
    /// Validates and ingests every profile of a push, off the async runtime.
    async fn push_blocking(
        &self,
        tenant: String,
        req: PushRequest,
    ) -> Result<Response<PushResponse>, Status> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            // The whole request is charged at once, so a refused push stores nothing.
            let l = this.limits(&tenant);
            let bytes: usize = req
                .series
                .iter()
                .flat_map(|s| &s.samples)
                .map(|s| s.raw_profile.len())
                .sum();
            for series in &req.series {
                for sample in &series.samples {
                    Distributor::check_size(&tenant, &sample.raw_profile, &l)?;
                }
            }
            this.charge_with(&tenant, bytes, &l)?;
            for (i, series) in req.series.iter().enumerate() {
                let labels = Labels::from_proto(&series.labels);
                let in_series = |e: Error| Error::InSeries {
                    index: i,
                    labels: labels.to_string(),
                    source: Box::new(e),
                };
                let annotations =
                    ingest::annotations(&series.annotations).map_err(|e| in_series(e.into()))?;
                for sample in &series.samples {
                    this.ingest_pprof_charged(
                        &tenant,
                        &labels,
                        &annotations,
                        &sample.raw_profile,
                        &l,
                    )
                    .map_err(in_series)?;
                }
            }
            Ok::<_, Error>(Response::new(PushResponse {}))
        })
        .await
        .map_err(Error::from)?
        .map_err(Status::from)
    }
}

#[cfg(test)]
mod tests;
