//! A de-duplicating append-only table: values live once in a `Vec`, and a
//! hash table of indices finds them by content without storing them twice.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    table: HashTable<u32>,
}

impl Index {
    /// Builds the index over existing values (used when appending to loaded symbols).
    pub(crate) fn build<T: Hash + Eq>(values: &[T]) -> Self {
        let mut index = Self::default();
        for (i, v) in values.iter().enumerate() {
            let hash = FxBuildHasher.hash_one(v);
            index.table.insert_unique(hash, i as u32, |&j| {
                FxBuildHasher.hash_one(&values[j as usize])
            });
        }
        index
    }

    /// Returns the bytes the index's table has allocated: one `u32` and one
    /// control byte per bucket.
    pub(crate) fn heap_bytes(&self) -> usize {
        table_bytes(self.table.capacity(), size_of::<u32>())
    }

    /// Returns the index of `value` in `values`, pushing it first when absent.
    pub(crate) fn intern<T, Q>(&mut self, values: &mut Vec<T>, value: &Q) -> u32
    where
        T: Hash + Eq + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = T>,
    {
        let hash = FxBuildHasher.hash_one(value);
        if let Some(&i) = self
            .table
            .find(hash, |&i| values[i as usize].borrow() == value)
        {
            return i;
        }
        let i = values.len() as u32;
        values.push(value.to_owned());
        self.table.insert_unique(hash, i, |&j| {
            FxBuildHasher.hash_one(values[j as usize].borrow())
        });
        i
    }
}

/// Returns the bytes a hashbrown table (`HashTable`, `HashMap`) holding up
/// to `capacity` entries of `entry` bytes has allocated: its buckets, at a
/// load of at most 7/8 and a power of two, each an entry and a control byte.
pub fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (entry + 1) + 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once() {
        let mut values: Vec<String> = Vec::new();
        let mut index = Index::default();
        assert_eq!(index.intern(&mut values, "a"), 0);
        assert_eq!(index.intern(&mut values, "b"), 1);
        assert_eq!(index.intern(&mut values, "a"), 0);
        assert_eq!(values, ["a", "b"]);
        let mut rebuilt = Index::build(&values);
        assert_eq!(rebuilt.intern(&mut values, "b"), 1);
    }
}
