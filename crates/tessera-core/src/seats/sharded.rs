//! A hash map split into [`SHARDS`] maps by the key's top bits, so that it never grows all at
//! once.
//!
//! A `HashMap` doubles its table when it fills: every entry is moved in one call. The seat book's
//! indexes grow by every grant, and at half a million leases one doubling moved them all while a
//! batch of requests waited on the writer: a stall of tens of milliseconds (the p99 of a burst of
//! grants, docs/performance.md). Split by the key, each shard doubles on its own, at a slightly
//! different count from the others (keys are digests, spread evenly), so the same work comes in
//! pieces of a 64th (at a million leases, about a millisecond each: `benches/book_growth.rs`).

use std::collections::HashMap;

/// How many maps a [`Sharded`] map is split into.
pub(crate) const SHARDS: usize = 64;

/// A key that says which shard it goes in: its top bits (the keys are digests, so every bit is
/// as good as another).
pub(crate) trait ShardKey: std::hash::Hash + Eq {
    fn shard(&self) -> usize;
}

impl ShardKey for u64 {
    fn shard(&self) -> usize {
        (*self >> 58) as usize
    }
}

impl ShardKey for u128 {
    fn shard(&self) -> usize {
        (*self >> 122) as usize
    }
}

/// A map split into [`SHARDS`] maps by [`ShardKey::shard`].
#[derive(Debug, Clone)]
pub(crate) struct Sharded<K, V> {
    shards: Box<[HashMap<K, V>]>,
}

impl<K: ShardKey, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
        }
    }
}

impl<K: ShardKey, V: PartialEq> PartialEq for Sharded<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.shards == other.shards
    }
}

impl<K: ShardKey, V> Sharded<K, V> {
    fn shard(&self, k: &K) -> &HashMap<K, V> {
        // `shard()` is below SHARDS by construction; the modulo keeps an odd key type in bounds
        &self.shards[k.shard() % SHARDS]
    }

    fn shard_mut(&mut self, k: &K) -> &mut HashMap<K, V> {
        &mut self.shards[k.shard() % SHARDS]
    }

    /// Entries in all shards (counted: for checks, not for a hot path).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// Every key, shard by shard.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.shards.iter().flat_map(HashMap::keys)
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.shard(k).get(k)
    }

    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.shard_mut(&k).insert(k, v)
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        self.shard_mut(k).remove(k)
    }

    /// The value under `k`, made with `make` when there is none.
    pub(crate) fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        self.shard_mut(&k).entry(k).or_insert_with(make)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_map_keeps_entries_and_count_as_one_map_would() {
        let mut s: Sharded<u64, u32> = Sharded::default();
        let mut m: HashMap<u64, u32> = HashMap::new();
        // keys spread over the top byte, and some in one shard
        let keys: Vec<u64> = (0..2000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .chain(0..50)
            .collect();
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(s.insert(*k, n as u32), m.insert(*k, n as u32));
        }
        for k in keys.iter().step_by(3) {
            assert_eq!(s.remove(k), m.remove(k));
            assert_eq!(s.remove(k), None);
        }
        *s.get_or_insert_with(7, || 0) += 5;
        *m.entry(7).or_insert(0) += 5;
        *s.get_or_insert_with(1 << 63, || 100) += 1;
        *m.entry(1 << 63).or_insert(100) += 1;
        assert_eq!(s.len(), m.len());
        for k in keys.iter().chain([7, 1 << 63].iter()) {
            assert_eq!(s.get(k), m.get(k));
        }
        let mut t = s.clone();
        assert!(t == s);
        t.insert(7, 0);
        assert!(t != s);
        // the top six bits pick the shard
        assert_eq!((0xAB00_0000_0000_0001u64).shard(), 0xAB >> 2);
        assert_eq!((0xCDu128 << 120).shard(), 0xCD >> 2);
        assert_eq!(u64::MAX.shard(), SHARDS - 1);
        assert_eq!(u128::MAX.shard(), SHARDS - 1);
    }
}
