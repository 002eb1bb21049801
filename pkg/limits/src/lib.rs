//! Per-tenant limits: the `limits` section of the configuration, changed for single
//! tenants by `overrides`.
//!
//! Several components read them — the distributor (sizes, rates, series), the
//! compactor (retention), the querier (time ranges, flame-graph sizes, timeouts,
//! concurrency) — so they live in a crate of their own, as Pyroscope keeps
//! them in `pkg/validation`, and each component asks a [`TenantLimits`] for the
//! limits of the tenant at hand. A limit set to 0 is disabled, as in Pyroscope.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ember_config::{Documented, duration};
use ember_model::pprof::DecodeLimits;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// Flame-graph nodes kept by default, as in Pyroscope
/// (`max_flamegraph_nodes_default`).
pub const DEFAULT_FLAMEGRAPH_NODES: usize = 8192;

/// Per-tenant limits (`limits`, and per tenant through `overrides`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest profile as received, gzipped or not; 0 disables.
    pub max_profile_size_bytes: u64,
    /// Largest profile after decompression; 0 disables.
    ///
    /// A zip bomb is refused before it is inflated any further.
    pub max_decompressed_profile_size_bytes: u64,
    /// Most samples in one profile; 0 disables.
    pub max_samples_per_profile: usize,
    /// Deepest stack trace; 0 disables.
    pub max_stack_depth: usize,
    /// Most label names on a series; 0 disables.
    ///
    /// `__name__` and `__profile_type__` count.
    pub max_label_names_per_series: usize,
    /// Longest label name in bytes; 0 disables.
    pub max_label_name_length: usize,
    /// Longest label value in bytes; 0 disables.
    pub max_label_value_length: usize,
    /// Sustained ingestion rate per tenant in MB/s; 0 disables.
    ///
    /// 1 MB is 2^20 bytes, counted as received (before decompression).
    pub ingestion_rate_mb: f64,
    /// Ingestion burst per tenant in MB.
    pub ingestion_burst_size_mb: f64,
    /// Most series per tenant in the head block; 0 disables.
    pub max_active_series: usize,
    /// How long the compactor keeps a tenant's blocks; 0s keeps them forever.
    #[serde(with = "duration")]
    pub compactor_blocks_retention_period: Duration,
    /// Longest time range a query may cover; 0s disables.
    ///
    /// A longer query is refused with 400, as in Pyroscope; start=0,end=0 (all
    /// time) reads the last max_query_length up to now. Off by default, so that
    /// all time means all that is stored; Pyroscope's default is 24h.
    #[serde(with = "duration")]
    pub max_query_length: Duration,
    /// How far back queries may read; 0s disables.
    ///
    /// As in Pyroscope, a query starting earlier is clamped to start at
    /// now - lookback, and one ending earlier answers empty.
    #[serde(with = "duration")]
    pub max_query_lookback: Duration,
    /// Flame-graph nodes kept when a query asks for none; 0 keeps every node.
    pub max_flamegraph_nodes_default: usize,
    /// Most flame-graph nodes a query may ask for; 0 disables.
    ///
    /// A query asking for more, or for no limit (max_nodes < 0), is refused with 400.
    pub max_flamegraph_nodes_max: usize,
    /// Longest a query may run in the querier; 0s disables.
    ///
    /// A query still running then is stopped and answered with deadline_exceeded (408).
    #[serde(with = "duration")]
    pub query_timeout: Duration,
    /// Most queries of a tenant running at once in one querier; 0 disables.
    ///
    /// One more is refused at once with resource_exhausted (429).
    pub max_concurrent_queries: usize,
    /// Most bytes of blocks one query may hold in the querier; 0 disables.
    ///
    /// Profile pages and symbols, fetched or from the cache. A query that
    /// needs more is refused with 400 and asked to narrow its range or selector.
    pub max_query_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_profile_size_bytes: 4 * MIB,
            max_decompressed_profile_size_bytes: 64 * MIB,
            max_samples_per_profile: 16_000,
            max_stack_depth: 1_000,
            max_label_names_per_series: 30,
            max_label_name_length: 1_024,
            max_label_value_length: 2_048,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 2.0,
            max_active_series: 5_000,
            compactor_blocks_retention_period: Duration::ZERO,
            max_query_length: Duration::ZERO,
            max_query_lookback: Duration::ZERO,
            max_flamegraph_nodes_default: DEFAULT_FLAMEGRAPH_NODES,
            max_flamegraph_nodes_max: 1 << 20,
            query_timeout: Duration::from_secs(120),
            max_concurrent_queries: 32,
            max_query_bytes: 4 * 1024 * MIB,
        }
    }
}

impl Limits {
    /// Returns limits with every check disabled (benchmarks, tools).
    ///
    /// Flame graphs still keep [`DEFAULT_FLAMEGRAPH_NODES`] when a query asks for
    /// no number: that is a default, not a check.
    pub fn unlimited() -> Self {
        Self {
            max_profile_size_bytes: 0,
            max_decompressed_profile_size_bytes: 0,
            max_samples_per_profile: 0,
            max_stack_depth: 0,
            max_label_names_per_series: 0,
            max_label_name_length: 0,
            max_label_value_length: 0,
            ingestion_rate_mb: 0.0,
            ingestion_burst_size_mb: 0.0,
            max_active_series: 0,
            compactor_blocks_retention_period: Duration::ZERO,
            max_query_length: Duration::ZERO,
            max_query_lookback: Duration::ZERO,
            max_flamegraph_nodes_default: DEFAULT_FLAMEGRAPH_NODES,
            max_flamegraph_nodes_max: 0,
            query_timeout: Duration::ZERO,
            max_concurrent_queries: 0,
            max_query_bytes: 0,
        }
    }

    /// Returns the limits that decoding a profile enforces.
    pub fn decode(&self) -> DecodeLimits {
        DecodeLimits {
            max_decompressed_bytes: usize::try_from(self.max_decompressed_profile_size_bytes)
                .unwrap_or(usize::MAX),
            max_samples: self.max_samples_per_profile,
            max_stack_depth: self.max_stack_depth,
        }
    }

    /// Checks what serde cannot; `prefix` is where these limits are configured
    /// (`limits`, `overrides.<tenant>`), so the message names the key.
    pub fn validate(&self, prefix: &str) -> ember_config::Result<()> {
        for (key, value) in [
            ("ingestion_rate_mb", self.ingestion_rate_mb),
            ("ingestion_burst_size_mb", self.ingestion_burst_size_mb),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ember_config::Error::invalid(format!(
                    "{prefix}.{key} must be a non-negative number, got {value}"
                )));
            }
        }
        Ok(())
    }
}

/// Changes to [`Limits`] for one tenant: each field left out keeps the value of `limits`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsOverride {
    /// See [`Limits::max_profile_size_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_profile_size_bytes: Option<u64>,
    /// See [`Limits::max_decompressed_profile_size_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_decompressed_profile_size_bytes: Option<u64>,
    /// See [`Limits::max_samples_per_profile`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_samples_per_profile: Option<usize>,
    /// See [`Limits::max_stack_depth`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stack_depth: Option<usize>,
    /// See [`Limits::max_label_names_per_series`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_label_names_per_series: Option<usize>,
    /// See [`Limits::max_label_name_length`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_label_name_length: Option<usize>,
    /// See [`Limits::max_label_value_length`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_label_value_length: Option<usize>,
    /// See [`Limits::ingestion_rate_mb`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingestion_rate_mb: Option<f64>,
    /// See [`Limits::ingestion_burst_size_mb`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingestion_burst_size_mb: Option<f64>,
    /// See [`Limits::max_active_series`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_series: Option<usize>,
    /// See [`Limits::compactor_blocks_retention_period`].
    #[serde(skip_serializing_if = "Option::is_none", with = "duration::option")]
    pub compactor_blocks_retention_period: Option<Duration>,
    /// See [`Limits::max_query_length`].
    #[serde(skip_serializing_if = "Option::is_none", with = "duration::option")]
    pub max_query_length: Option<Duration>,
    /// See [`Limits::max_query_lookback`].
    #[serde(skip_serializing_if = "Option::is_none", with = "duration::option")]
    pub max_query_lookback: Option<Duration>,
    /// See [`Limits::max_flamegraph_nodes_default`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_flamegraph_nodes_default: Option<usize>,
    /// See [`Limits::max_flamegraph_nodes_max`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_flamegraph_nodes_max: Option<usize>,
    /// See [`Limits::query_timeout`].
    #[serde(skip_serializing_if = "Option::is_none", with = "duration::option")]
    pub query_timeout: Option<Duration>,
    /// See [`Limits::max_concurrent_queries`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_queries: Option<usize>,
    /// See [`Limits::max_query_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_query_bytes: Option<u64>,
}

impl LimitsOverride {
    /// Returns `base` with every field this override sets replaced.
    pub fn apply(&self, base: &Limits) -> Limits {
        let mut limits = base.clone();
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = self.$field {
                    limits.$field = value;
                })*
            };
        }
        set!(
            max_profile_size_bytes,
            max_decompressed_profile_size_bytes,
            max_samples_per_profile,
            max_stack_depth,
            max_label_names_per_series,
            max_label_name_length,
            max_label_value_length,
            ingestion_rate_mb,
            ingestion_burst_size_mb,
            max_active_series,
            compactor_blocks_retention_period,
            max_query_length,
            max_query_lookback,
            max_flamegraph_nodes_default,
            max_flamegraph_nodes_max,
            query_timeout,
            max_concurrent_queries,
            max_query_bytes,
        );
        limits
    }
}

/// Gives the limits of a tenant.
pub trait TenantLimits: Send + Sync + fmt::Debug {
    /// Returns the limits of `tenant`.
    fn limits(&self, tenant: &str) -> Limits;
}

/// The same limits for every tenant.
impl TenantLimits for Limits {
    fn limits(&self, _tenant: &str) -> Limits {
        self.clone()
    }
}

/// The configured limits: the defaults of every tenant (`limits`) and the changes
/// for some (`overrides`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// The limits of a tenant without overrides.
    pub defaults: Limits,
    /// Per-tenant changes, keyed by tenant ID.
    pub tenants: BTreeMap<String, LimitsOverride>,
}

impl Overrides {
    /// Checks the defaults and every tenant's limits.
    pub fn validate(&self) -> ember_config::Result<()> {
        self.defaults.validate("limits")?;
        for tenant in self.tenants.keys() {
            if tenant.trim().is_empty() {
                return Err(ember_config::Error::invalid(
                    "overrides must not have an empty tenant ID",
                ));
            }
            self.limits(tenant)
                .validate(&format!("overrides.{tenant}"))?;
        }
        Ok(())
    }

    /// Returns the largest decompressed profile any tenant may push, or `None`
    /// when a tenant's limit is disabled (0).
    pub fn largest_decompressed_profile(&self) -> Option<u64> {
        std::iter::once(self.defaults.clone())
            .chain(self.tenants.keys().map(|t| self.limits(t)))
            .map(|l| l.max_decompressed_profile_size_bytes)
            .try_fold(0u64, |max, l| (l != 0).then_some(max.max(l)))
    }
}

impl TenantLimits for Overrides {
    fn limits(&self, tenant: &str) -> Limits {
        match self.tenants.get(tenant) {
            Some(change) => change.apply(&self.defaults),
            None => self.defaults.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_override_has_every_limits_field() {
        let full = serde_yaml::to_string(&Limits::default()).unwrap();
        let change: LimitsOverride = serde_yaml::from_str(&full).unwrap();
        assert_eq!(change.apply(&Limits::default()), Limits::default());
        let set = serde_yaml::to_value(&change).unwrap();
        assert_eq!(
            set.as_mapping().unwrap().len(),
            serde_yaml::to_value(Limits::default())
                .unwrap()
                .as_mapping()
                .unwrap()
                .len()
        );
    }

    #[test]
    fn a_tenant_gets_the_defaults_with_its_changes() {
        let overrides = Overrides {
            defaults: Limits::default(),
            tenants: [(
                "a".to_string(),
                LimitsOverride {
                    max_active_series: Some(7),
                    ..LimitsOverride::default()
                },
            )]
            .into(),
        };
        assert_eq!(overrides.limits("a").max_active_series, 7);
        assert_eq!(overrides.limits("a").max_stack_depth, 1_000);
        assert_eq!(overrides.limits("b"), Limits::default());
        assert_eq!(overrides.largest_decompressed_profile(), Some(64 * MIB));
    }
}
