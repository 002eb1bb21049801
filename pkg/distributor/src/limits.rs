//! Per-tenant limits and where the distributor gets them from.

use ember_model::pprof;
use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

/// The limits the distributor enforces for one tenant. A limit of 0 is disabled.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest profile as received, gzipped or not (`max_profile_size_bytes`).
    pub max_profile_size_bytes: usize,
    /// Largest profile after decompression (`max_decompressed_profile_size_bytes`),
    /// most samples in one profile (`max_samples_per_profile`) and most frames
    /// in one stack (`max_stack_depth`).
    pub decode: pprof::DecodeLimits,
    /// Most labels on one series, `__name__` and `__profile_type__` included
    /// (`max_label_names_per_series`).
    pub max_label_names_per_series: usize,
    /// Longest label name in bytes (`max_label_name_length`).
    pub max_label_name_length: usize,
    /// Longest label value in bytes (`max_label_value_length`).
    pub max_label_value_length: usize,
    /// Sustained ingestion rate in MB/s (`ingestion_rate_mb`, 1 MB = 2^20 bytes).
    pub ingestion_rate_mb: f64,
    /// Ingestion burst in MB (`ingestion_burst_size_mb`).
    pub ingestion_burst_size_mb: f64,
    /// Most active series (`max_active_series`).
    pub max_active_series: usize,
}

impl Default for Limits {
    /// Returns the defaults of DESIGN.md §2.
    fn default() -> Self {
        Self {
            max_profile_size_bytes: 4 << 20,
            decode: pprof::DecodeLimits {
                max_decompressed_bytes: 64 << 20,
                max_samples: 16_000,
                max_stack_depth: 1_000,
            },
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 2.0,
            max_active_series: 5_000,
        }
    }
}

impl Limits {
    /// Returns limits with every check disabled (benchmarks, tools).
    pub fn unlimited() -> Self {
        Self {
            max_profile_size_bytes: 0,
            decode: pprof::DecodeLimits {
                max_decompressed_bytes: 0,
                max_samples: 0,
                max_stack_depth: 0,
            },
            max_label_names_per_series: 0,
            max_label_name_length: 0,
            max_label_value_length: 0,
            ingestion_rate_mb: 0.0,
            ingestion_burst_size_mb: 0.0,
            max_active_series: 0,
        }
    }
}

/// Gives the limits of a tenant: the defaults with its overrides applied.
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

/// Limits computed by a function, e.g. from the configuration's `overrides`.
pub struct LimitsFn<F>(pub F);

impl<F> fmt::Debug for LimitsFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimitsFn")
    }
}

impl<F: Fn(&str) -> Limits + Send + Sync> TenantLimits for LimitsFn<F> {
    fn limits(&self, tenant: &str) -> Limits {
        (self.0)(tenant)
    }
}

/// A monotonic clock, injected so that tests of time-based limits need no sleeps.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Returns the time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::Mutex<Duration>);

impl ManualClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("poisoned") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.0.lock().expect("poisoned")
    }
}

/// Shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
