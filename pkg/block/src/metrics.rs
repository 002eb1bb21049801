//! The block cache's metrics, `ember_block_cache_*` (see `docs/metrics.md`).

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::cache::Kind;

/// Hits, misses and size of a [`crate::BlockCache`]: `ember_block_cache_*`.
#[derive(Debug, Clone)]
pub struct BlockCacheMetrics {
    /// Lookups that found their entry, by kind.
    pub hits: IntCounterVec,
    /// Lookups that did not, by kind (each is then read from the store).
    pub misses: IntCounterVec,
    /// Entries evicted to make room, by kind.
    pub evictions: IntCounterVec,
    /// Bytes held.
    pub bytes: IntGauge,
    /// The configured bound, in bytes.
    pub max_bytes: IntGauge,
}

impl BlockCacheMetrics {
    /// Creates the metrics and registers them in `registry`, with a zero
    /// series for every kind.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::detached();
        registry.register(Box::new(m.hits.clone()))?;
        registry.register(Box::new(m.misses.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.max_bytes.clone()))?;
        Ok(m)
    }

    /// Returns metrics registered nowhere.
    pub fn detached() -> Self {
        let vec = |name: &str, help: &str| {
            let v = IntCounterVec::new(Opts::new(name, help), &["kind"]).expect("valid metric");
            for k in Kind::ALL {
                v.with_label_values(&[k.as_str()]);
            }
            v
        };
        Self {
            hits: vec(
                "ember_block_cache_hits_total",
                "Block cache lookups that found their entry, by kind (footer, symbols, page)",
            ),
            misses: vec(
                "ember_block_cache_misses_total",
                "Block cache lookups that read from object storage, by kind",
            ),
            evictions: vec(
                "ember_block_cache_evictions_total",
                "Block cache entries evicted to stay within the bound, by kind",
            ),
            bytes: IntGauge::new("ember_block_cache_bytes", "Bytes held by the block cache")
                .expect("valid metric"),
            max_bytes: IntGauge::new(
                "ember_block_cache_max_bytes",
                "The block cache's bound in bytes (storage.cache.max_size_bytes)",
            )
            .expect("valid metric"),
        }
    }
}
