//! A bounded, in-memory cache of what queries read from blocks: Parquet
//! footers (with their page indexes), symbol partitions and column pages.
//!
//! Blocks are immutable, so an entry never goes stale: it only leaves when
//! the cache is full and it is the least recently used. Every entry is
//! weighed by its (estimated) size in bytes; the total stays at or under
//! [`BlockCache::capacity`]. An entry larger than the whole cache is not
//! kept at all. A capacity of 0 turns caching off (every read goes to the
//! store), which is what a block opened without a cache gets.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use ember_symdb::Symbols;
use object_store::path::Path;

use crate::metrics::BlockCacheMetrics;

/// What an entry holds; the metrics' `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A Parquet file's footer and page indexes.
    Footer,
    /// One service's symbols in one block.
    Symbols,
    /// One page (or a whole column chunk) of a Parquet file.
    Page,
}

impl Kind {
    /// Every kind, in the order the metrics list them.
    pub(crate) const ALL: [Kind; 3] = [Kind::Footer, Kind::Symbols, Kind::Page];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Footer => "footer",
            Kind::Symbols => "symbols",
            Kind::Page => "page",
        }
    }
}

/// The key of an entry: a file and what of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Footer(Path),
    /// The symbols of a partition; the path is the block's `strings.parquet`.
    Symbols(Path, u32),
    /// Bytes `start..end` of a file.
    Page(Path, u64, u64),
}

impl Key {
    fn kind(&self) -> Kind {
        match self {
            Key::Footer(_) => Kind::Footer,
            Key::Symbols(..) => Kind::Symbols,
            Key::Page(..) => Kind::Page,
        }
    }
}

/// A cached value. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Footer(Arc<crate::fetch::Footer>),
    Symbols(Arc<Symbols>),
    Page(Bytes),
}

struct Entry {
    value: Value,
    weight: u64,
    /// Position in [`Inner::order`].
    tick: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, Key>,
    next_tick: u64,
    bytes: u64,
}

/// A least-recently-used cache bounded in bytes, shared by every block a
/// querier opens.
pub struct BlockCache {
    capacity: u64,
    inner: Mutex<Inner>,
    metrics: BlockCacheMetrics,
}

impl fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl BlockCache {
    /// Returns a cache holding at most `capacity` bytes, recording into `metrics`.
    pub fn new(capacity: u64, metrics: BlockCacheMetrics) -> Self {
        metrics.max_bytes.set(capacity as i64);
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
            metrics,
        }
    }

    /// Returns a cache that keeps nothing.
    pub fn disabled() -> Self {
        Self::new(0, BlockCacheMetrics::detached())
    }

    /// Returns the bound in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Returns the bytes held.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().expect("poisoned").bytes
    }

    /// Returns the entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("poisoned").entries.len()
    }

    /// Returns whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the entry of `key`, marking it used, and counts a hit or a miss.
    pub(crate) fn get(&self, key: &Key) -> Option<Value> {
        let kind = key.kind().as_str();
        let mut inner = self.inner.lock().expect("poisoned");
        let tick = inner.next_tick;
        let found = inner.entries.get_mut(key).map(|e| {
            let old = std::mem::replace(&mut e.tick, tick);
            (old, e.value.clone())
        });
        match found {
            Some((old, value)) => {
                inner.next_tick += 1;
                let k = inner.order.remove(&old).expect("ordered entry");
                inner.order.insert(tick, k);
                drop(inner);
                self.metrics.hits.with_label_values(&[kind]).inc();
                Some(value)
            }
            None => {
                drop(inner);
                self.metrics.misses.with_label_values(&[kind]).inc();
                None
            }
        }
    }

    /// Keeps `value` under `key`, weighing `weight` bytes, evicting the least
    /// recently used entries until it fits. A value larger than the cache is
    /// not kept.
    pub(crate) fn insert(&self, key: Key, value: Value, weight: u64) {
        if weight > self.capacity {
            return;
        }
        let mut inner = self.inner.lock().expect("poisoned");
        if let Some(old) = inner.entries.remove(&key) {
            inner.order.remove(&old.tick);
            inner.bytes -= old.weight;
        }
        while inner.bytes + weight > self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            let e = inner.entries.remove(&oldest).expect("entry of ordered key");
            inner.bytes -= e.weight;
            self.metrics
                .evictions
                .with_label_values(&[oldest.kind().as_str()])
                .inc();
        }
        let tick = inner.next_tick;
        inner.next_tick += 1;
        inner.order.insert(tick, key.clone());
        inner.entries.insert(
            key,
            Entry {
                value,
                weight,
                tick,
            },
        );
        inner.bytes += weight;
        self.metrics.bytes.set(inner.bytes as i64);
    }
}

/// Returns an estimate of the bytes `symbols` occupies in memory.
pub(crate) fn symbols_weight(s: &Symbols) -> u64 {
    let strings: usize = s
        .strings
        .iter()
        .map(|x| x.len() + std::mem::size_of::<String>())
        .sum();
    let locations: usize = s
        .locations
        .iter()
        .map(|l| {
            std::mem::size_of_val(l) + l.lines.len() * std::mem::size_of::<ember_symdb::Line>()
        })
        .sum();
    (strings
        + locations
        + std::mem::size_of_val(s.mappings.as_slice())
        + std::mem::size_of_val(s.functions.as_slice())
        + s.stacks.len() * 8) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: u64) -> Key {
        Key::Page(Path::from("f"), n, n + 1)
    }

    fn bytes(n: usize) -> Value {
        Value::Page(Bytes::from(vec![0u8; n]))
    }

    #[test]
    fn evicts_least_recently_used_within_bound() {
        let metrics = BlockCacheMetrics::detached();
        let cache = BlockCache::new(100, metrics.clone());
        cache.insert(page(1), bytes(40), 40);
        cache.insert(page(2), bytes(40), 40);
        // Using 1 makes 2 the oldest.
        assert!(cache.get(&page(1)).is_some());
        cache.insert(page(3), bytes(40), 40);
        assert_eq!(cache.bytes(), 80);
        assert!(cache.get(&page(2)).is_none());
        assert!(cache.get(&page(1)).is_some());
        assert!(cache.get(&page(3)).is_some());
        assert_eq!(metrics.hits.with_label_values(&["page"]).get(), 3);
        assert_eq!(metrics.misses.with_label_values(&["page"]).get(), 1);
        assert_eq!(metrics.evictions.with_label_values(&["page"]).get(), 1);
        assert_eq!(metrics.bytes.get(), 80);
        // Never above the bound, whatever goes in.
        for i in 10..200 {
            cache.insert(page(i), bytes(7), 7 + i % 13);
            assert!(cache.bytes() <= 100);
        }
    }

    #[test]
    fn keeps_nothing_larger_than_itself() {
        let cache = BlockCache::new(10, BlockCacheMetrics::detached());
        cache.insert(page(1), bytes(5), 5);
        cache.insert(page(2), bytes(11), 11);
        assert!(cache.get(&page(2)).is_none());
        assert!(
            cache.get(&page(1)).is_some(),
            "a too-large entry evicts nothing"
        );
        let off = BlockCache::disabled();
        off.insert(page(1), bytes(1), 1);
        assert!(off.is_empty());
    }

    #[test]
    fn replacing_an_entry_reweighs_it() {
        let cache = BlockCache::new(100, BlockCacheMetrics::detached());
        cache.insert(page(1), bytes(60), 60);
        cache.insert(page(1), bytes(30), 30);
        assert_eq!((cache.bytes(), cache.len()), (30, 1));
    }
}
