//! The distributor's metrics, `ember_distributor_*`, registered into the
//! process's registry: what each tenant pushes, what is refused and why, and
//! how writes to ingester replicas go.

use ember_proto::error::Code;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, exponential_buckets};
use tonic::Status;

/// The limits a refusal may name: each refusal's message names its limit as
/// `(limits.<name>)`, and that name is the `reason` label.
const LIMIT_REASONS: [&str; 10] = [
    "ingestion_rate_mb",
    "max_profile_size_bytes",
    "max_decompressed_profile_size_bytes",
    "max_label_names_per_series",
    "max_label_name_length",
    "max_label_value_length",
    "max_samples_per_profile",
    "max_stack_depth",
    "max_active_series",
    "max_global_series_per_tenant",
];

/// Counters of pushes and replication. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DistributorMetrics {
    /// Profiles decoded, by tenant and type (the profile's `__name__`).
    pub received_profiles: IntCounterVec,
    /// Samples of the profiles decoded, by tenant and type.
    pub received_samples: IntCounterVec,
    /// Bytes of the profiles decoded as pushed (gzipped or not), by tenant and type.
    pub received_compressed_bytes: IntCounterVec,
    /// Bytes of the profiles decoded once decompressed, by tenant and type.
    pub received_decompressed_bytes: IntCounterVec,
    /// Pushes refused, by tenant, reason (the limit's name, `invalid_profile`,
    /// `too_few_ingesters`, ...) and HTTP status.
    pub rejected_profiles: IntCounterVec,
    /// Latency of one write to one replica, by ingester address.
    pub replication_duration: HistogramVec,
    /// Writes to a replica that failed, by ingester address.
    pub replication_failures: IntCounterVec,
}

impl DistributorMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let by_type =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["tenant", "type"]);
        let m = Self {
            received_profiles: by_type(
                "ember_distributor_received_profiles_total",
                "Profiles received, by tenant and type",
            )?,
            received_samples: by_type(
                "ember_distributor_received_samples_total",
                "Samples of the profiles received, by tenant and type",
            )?,
            received_compressed_bytes: by_type(
                "ember_distributor_received_compressed_bytes_total",
                "Bytes of the profiles received as pushed, by tenant and type",
            )?,
            received_decompressed_bytes: by_type(
                "ember_distributor_received_decompressed_bytes_total",
                "Bytes of the profiles received once decompressed, by tenant and type",
            )?,
            rejected_profiles: IntCounterVec::new(
                Opts::new(
                    "ember_distributor_rejected_profiles_total",
                    "Pushes refused, by tenant, reason and HTTP status",
                ),
                &["tenant", "reason", "status"],
            )?,
            replication_duration: HistogramVec::new(
                HistogramOpts::new(
                    "ember_distributor_replication_duration_seconds",
                    "Latency of one write to one ingester replica",
                )
                .buckets(exponential_buckets(0.0005, 4.0, 9)?),
                &["ingester"],
            )?,
            replication_failures: IntCounterVec::new(
                Opts::new(
                    "ember_distributor_replication_failures_total",
                    "Writes to an ingester replica that failed",
                ),
                &["ingester"],
            )?,
        };
        registry.register(Box::new(m.received_profiles.clone()))?;
        registry.register(Box::new(m.received_samples.clone()))?;
        registry.register(Box::new(m.received_compressed_bytes.clone()))?;
        registry.register(Box::new(m.received_decompressed_bytes.clone()))?;
        registry.register(Box::new(m.rejected_profiles.clone()))?;
        registry.register(Box::new(m.replication_duration.clone()))?;
        registry.register(Box::new(m.replication_failures.clone()))?;
        Ok(m)
    }

    /// Returns metrics registered nowhere, for a distributor whose owner
    /// records nothing (tests, benchmarks).
    pub fn detached() -> Self {
        Self::register(&Registry::new()).expect("metrics of a new registry are unique")
    }

    /// Counts one decoded profile of `tenant`.
    pub fn received(
        &self,
        tenant: &str,
        kind: &str,
        samples: usize,
        compressed: usize,
        decompressed: usize,
    ) {
        let labels = [tenant, kind];
        self.received_profiles.with_label_values(&labels).inc();
        self.received_samples
            .with_label_values(&labels)
            .inc_by(samples as u64);
        self.received_compressed_bytes
            .with_label_values(&labels)
            .inc_by(compressed as u64);
        self.received_decompressed_bytes
            .with_label_values(&labels)
            .inc_by(decompressed as u64);
    }

    /// Counts a push of `tenant` refused with `status`.
    pub fn rejected(&self, tenant: &str, status: &Status) {
        let code = Code::of(status);
        let http = code.http().to_string();
        self.rejected_profiles
            .with_label_values(&[tenant, reason(code, status.message()), &http])
            .inc();
    }
}

/// Returns why a push was refused: the limit its message names, else a
/// name for its kind of failure. The values are a fixed set.
pub(crate) fn reason(code: Code, message: &str) -> &'static str {
    if let Some(limit) = message
        .match_indices("(limits.")
        .filter_map(|(i, m)| {
            let rest = &message[i + m.len()..];
            LIMIT_REASONS
                .into_iter()
                .find(|l| rest.strip_prefix(l).is_some_and(|r| r.starts_with(')')))
        })
        .next()
    {
        return limit;
    }
    match code {
        Code::BadRequest | Code::Unprocessable => "invalid_profile",
        Code::TooLarge => "max_request_body_bytes",
        Code::RateLimited => "rate_limited",
        Code::Unavailable => "too_few_ingesters",
        Code::Unauthenticated | Code::Forbidden => "unauthorized",
        Code::Timeout => "timeout",
        Code::Internal | Code::NotFound | Code::Unimplemented => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_the_limit_a_message_names_or_the_kind_of_failure() {
        let cases = [
            (
                Code::TooLarge,
                "tenant \"a\": profile is 9 bytes, more than the limit of 1 bytes (limits.max_profile_size_bytes)",
                "max_profile_size_bytes",
            ),
            (
                Code::RateLimited,
                "over its ingestion rate limit of 1 MB/s (limits.ingestion_rate_mb) with a burst of 2 MB (limits.ingestion_burst_size_mb)",
                "ingestion_rate_mb",
            ),
            (
                Code::RateLimited,
                "tenant has 3 active series, more than the limit of 2 (limits.max_active_series); a series stays",
                "max_active_series",
            ),
            (
                Code::BadRequest,
                "invalid pprof protobuf: eof",
                "invalid_profile",
            ),
            (
                Code::Unavailable,
                "only 0 of 3 ingesters",
                "too_few_ingesters",
            ),
            (
                Code::Unprocessable,
                "(limits.made_up_name)",
                "invalid_profile",
            ),
        ];
        for (code, message, want) in cases {
            assert_eq!(reason(code, message), want, "{message}");
        }
    }

    #[test]
    fn a_rejection_is_counted_with_its_reason_and_status() {
        let m = DistributorMetrics::register(&Registry::new()).unwrap();
        m.rejected(
            "t",
            &Code::TooLarge.status("profile is 9 bytes (limits.max_profile_size_bytes)"),
        );
        m.rejected("t", &Code::BadRequest.status("invalid gzip data"));
        let count = |reason: &str, status: &str| {
            m.rejected_profiles
                .with_label_values(&["t", reason, status])
                .get()
        };
        assert_eq!(count("max_profile_size_bytes", "413"), 1);
        assert_eq!(count("invalid_profile", "400"), 1);
    }
}
