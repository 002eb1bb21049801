//! The distributor receives pushes (`push.v1.PusherService`), validates them
//! against the tenant's limits and hands each accepted profile to the
//! ingester. Decoding is CPU-bound and runs off the async runtime.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use ember_ingester::Ingester;
use ember_model::{Labels, ingest, pprof};
use ember_proto::{
    Tenant,
    error::Code,
    google::v1::Profile,
    push::v1::{PushRequest, PushResponse, pusher_service_server::PusherService},
    types::v1::{GetFeatureFlagsRequest, GetFeatureFlagsResponse},
};
use tonic::{Request, Response, Status};
use tracing::debug;

/// Per-tenant limits the distributor enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_profile_size_bytes: usize,
    pub decode: pprof::DecodeLimits,
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_profile_size_bytes: 4 << 20,
            decode: pprof::DecodeLimits::default(),
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
        }
    }
}

/// Cheap to clone: clones share the ingester.
#[derive(Debug, Clone)]
pub struct Distributor {
    ingester: Arc<Ingester>,
    limits: Limits,
}

fn model_error(e: ember_model::Error) -> Status {
    match e {
        ember_model::Error::Malformed(m) => Code::BadRequest.status(m),
        ember_model::Error::Unprocessable(m) => Code::Unprocessable.status(m),
        ember_model::Error::TooLarge(m) => Code::TooLarge.status(m),
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Distributor {
    pub fn new(ingester: Arc<Ingester>, limits: Limits) -> Self {
        Self { ingester, limits }
    }

    fn check_labels(&self, labels: &Labels) -> Result<(), Status> {
        let l = &self.limits;
        if labels.len() > l.max_label_names_per_series {
            return Err(Code::Unprocessable.status(format!(
                "series {labels} has {} labels, more than the limit of {}",
                labels.len(),
                l.max_label_names_per_series
            )));
        }
        for label in labels.iter() {
            if label.name.len() > l.max_label_name_length {
                return Err(Code::Unprocessable.status(format!(
                    "label name {:?} is {} bytes long, more than the limit of {}",
                    label.name,
                    label.name.len(),
                    l.max_label_name_length
                )));
            }
            if label.value.len() > l.max_label_value_length {
                return Err(Code::Unprocessable.status(format!(
                    "value of label {:?} is {} bytes long, more than the limit of {}",
                    label.name,
                    label.value.len(),
                    l.max_label_value_length
                )));
            }
        }
        Ok(())
    }

    /// Decodes, validates and ingests one raw pprof with its client labels.
    /// CPU-bound: call it off the async runtime.
    pub fn ingest_pprof(
        &self,
        tenant: &str,
        client_labels: &Labels,
        raw: &[u8],
    ) -> Result<(), Status> {
        if raw.len() > self.limits.max_profile_size_bytes {
            return Err(Code::TooLarge.status(format!(
                "profile is {} bytes, more than the limit of {} bytes",
                raw.len(),
                self.limits.max_profile_size_bytes
            )));
        }
        let profile = pprof::decode(raw, &self.limits.decode).map_err(model_error)?;
        self.ingest_profile(tenant, client_labels, profile)
    }

    /// Validates and ingests a profile that is already decoded, e.g. converted
    /// from another format. CPU-bound: call it off the async runtime.
    pub fn ingest_profile(
        &self,
        tenant: &str,
        client_labels: &Labels,
        mut profile: Profile,
    ) -> Result<(), Status> {
        pprof::validate(&mut profile, &self.limits.decode).map_err(model_error)?;
        let series = ingest::series_for(&profile, client_labels);
        for s in &series {
            self.check_labels(&s.labels)?;
        }
        let time = if profile.time_nanos > 0 {
            profile.time_nanos
        } else {
            now_nanos()
        };
        debug!(
            tenant,
            series = series.len(),
            samples = profile.sample.len(),
            "ingesting profile"
        );
        self.ingester
            .append(tenant, &profile, &series, time)
            .map_err(|e| Code::Unavailable.status(e.to_string()))
    }
}

#[tonic::async_trait]
impl PusherService for Distributor {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let req = request.into_inner();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            for (i, series) in req.series.iter().enumerate() {
                let labels = Labels::from_proto(&series.labels);
                for sample in &series.samples {
                    this.ingest_pprof(&tenant, &labels, &sample.raw_profile)
                        .map_err(|s| {
                            Status::with_metadata(
                                s.code(),
                                format!("series {i} {labels}: {}", s.message()),
                                s.metadata().clone(),
                            )
                        })?;
                }
            }
            Ok(Response::new(PushResponse {}))
        })
        .await
        .map_err(|e| Code::Internal.status(e.to_string()))?
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
