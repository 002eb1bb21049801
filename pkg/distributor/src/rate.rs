//! Per-tenant ingestion rate limiting: a token bucket in bytes.
//!
//! The bucket holds up to `burst` bytes and refills at `rate` bytes per second;
//! a push takes its received size from it or is refused whole. A push larger
//! than the burst can never pass, as in Pyroscope's distributor.

use std::{collections::HashMap, sync::Mutex, time::Duration};

/// Bytes in one MB of `ingestion_rate_mb` (as in Pyroscope, 2^20).
pub const BYTES_PER_MB: f64 = (1 << 20) as f64;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Duration,
}

/// Token buckets of every tenant.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes `bytes` from the bucket of `tenant` at time `now`, with the
    /// tenant's current `rate_mb` (MB/s) and `burst_mb` (MB). Returns false
    /// when the bucket has too few tokens; nothing is taken then. A rate of 0
    /// disables the limit; a burst of 0 means one second's worth of rate.
    pub fn allow(
        &self,
        tenant: &str,
        bytes: usize,
        rate_mb: f64,
        burst_mb: f64,
        now: Duration,
    ) -> bool {
        if rate_mb <= 0.0 {
            return true;
        }
        let rate = rate_mb * BYTES_PER_MB;
        let burst = if burst_mb > 0.0 {
            burst_mb * BYTES_PER_MB
        } else {
            rate
        };
        let mut buckets = self.buckets.lock().expect("poisoned");
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_sub(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = bucket.updated.max(now);
        let cost = bytes as f64;
        if cost > bucket.tokens {
            return false;
        }
        bucket.tokens -= cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    #[test]
    fn allows_the_burst_then_the_rate() {
        let limiter = RateLimiter::default();
        let t = Duration::from_secs(100);
        // 1 MB/s with a 2 MB burst: 2 MB pass at once, then nothing.
        assert!(limiter.allow("a", MB, 1.0, 2.0, t));
        assert!(limiter.allow("a", MB, 1.0, 2.0, t));
        assert!(!limiter.allow("a", 1, 1.0, 2.0, t));
        // Half a second later half a MB is back.
        let t = t + Duration::from_millis(500);
        assert!(!limiter.allow("a", MB, 1.0, 2.0, t));
        assert!(limiter.allow("a", MB / 2, 1.0, 2.0, t));
        // The bucket never holds more than the burst.
        let t = t + Duration::from_secs(3600);
        assert!(!limiter.allow("a", 2 * MB + 1, 1.0, 2.0, t));
        assert!(limiter.allow("a", 2 * MB, 1.0, 2.0, t));
    }

    #[test]
    fn tenants_have_their_own_buckets_and_zero_disables() {
        let limiter = RateLimiter::default();
        let t = Duration::ZERO;
        assert!(limiter.allow("a", MB, 1.0, 1.0, t));
        assert!(!limiter.allow("a", MB, 1.0, 1.0, t));
        assert!(limiter.allow("b", MB, 1.0, 1.0, t));
        assert!(limiter.allow("c", 100 * MB, 0.0, 0.0, t));
        // Burst 0 means one second of rate.
        assert!(limiter.allow("d", MB, 1.0, 0.0, t));
        assert!(!limiter.allow("d", 1, 1.0, 0.0, t));
    }
}
