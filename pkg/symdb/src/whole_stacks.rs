//! The whole-stack cache: a stack's node by the 128-bit hash of its path.
//!
//! Appends probe it once per sample, and in a large head the probe is a miss
//! to memory: more than half of the time of a profile's stacks went to
//! waiting for it. So the table is laid out for that wait: open addressing
//! with linear probing, each slot holding its hash and node, so that a probe
//! touches one cache line (a general hash table reads a control byte, then
//! the slot, elsewhere), and [`WholeStacks::prefetch`] lets a caller ask for
//! the slots of the next samples while it resolves the current one.
//!
//! Entries are never removed: the cache lives as long as its head.

/// A stack's hash and node; `node == VACANT` marks a free slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: [u32; 4],
    node: u32,
}

const VACANT: u32 = u32::MAX;

const FREE: Slot = Slot {
    hash: [0; 4],
    node: VACANT,
};

/// Whole stacks by hash; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct WholeStacks {
    /// A power of two long, or empty.
    slots: Vec<Slot>,
    len: usize,
}

/// Returns a hash as four `u32` (20 bytes a slot instead of a `u128`'s 32).
pub(crate) fn split(hash: u128) -> [u32; 4] {
    [
        hash as u32,
        (hash >> 32) as u32,
        (hash >> 64) as u32,
        (hash >> 96) as u32,
    ]
}

impl WholeStacks {
    fn home(&self, hash: &[u32; 4]) -> usize {
        (hash[0] as usize | (hash[1] as usize) << 32) & (self.slots.len() - 1)
    }

    /// Asks the processor for the slot `hash` is probed at, so that a later
    /// [`Self::get`] finds it in cache.
    #[inline]
    pub(crate) fn prefetch(&self, hash: &[u32; 4]) {
        if self.slots.is_empty() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let slot: *const Slot = &self.slots[self.home(hash)];
            // SAFETY: a prefetch is a hint; it reads nothing and cannot fault,
            // and the address is a slot of the table.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(slot.cast()) };
        }
    }

    /// Returns the node of the stack hashed `hash`, if seen before.
    #[inline]
    pub(crate) fn get(&self, hash: &[u32; 4]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let slot = &self.slots[i];
            if slot.node == VACANT {
                return None;
            }
            if slot.hash == *hash {
                return Some(slot.node);
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `node` as the stack hashed `hash`, which must not be present.
    pub(crate) fn insert(&mut self, hash: [u32; 4], node: u32) {
        // At most three quarters full, so that probes stay short.
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(&hash);
        while self.slots[i].node != VACANT {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { hash, node };
        self.len += 1;
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(64);
        let old = std::mem::replace(&mut self.slots, vec![FREE; size]);
        self.len = 0;
        for slot in old.into_iter().filter(|s| s.node != VACANT) {
            self.insert(slot.hash, slot.node);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_stack_inserted_and_no_other() {
        let mut table = WholeStacks::default();
        assert_eq!(table.get(&split(1)), None);
        table.prefetch(&split(1));
        // Hashes sharing their low bits collide on the home slot and probe on.
        let hash = |i: u128| split((i << 64) | ((i % 7) << 40) | (i % 3));
        for i in 0..2_000u128 {
            table.insert(hash(i), i as u32);
            table.prefetch(&hash(i));
        }
        assert_eq!(table.len(), 2_000);
        for i in 0..2_000u128 {
            assert_eq!(table.get(&hash(i)), Some(i as u32), "{i}");
        }
        for i in 2_000..3_000u128 {
            assert_eq!(table.get(&hash(i)), None, "{i}");
        }
        assert!(table.heap_bytes() >= 2_000 * 4 / 3 * size_of::<Slot>());
    }
}
