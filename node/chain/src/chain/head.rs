//! The head cache: state values at the tip, so execution on the tip reads RocksDB once per
//! key and block.
//!
//! It is split into [`SHARDS`] shards by a hash of the key, each behind its own `RwLock`, so
//! concurrent readers (RPC queries, the producer's execution, and later parallel execution)
//! do not serialise on one lock: a hit takes one shard's read lock.
//!
//! The cache and the tip advance together: a commit or a revert holds the write locks of
//! *all* shards (taken in index order, through [`HeadCache::lock_all`]) while it updates the
//! values and moves the tip, and a reader caches a value it read from RocksDB only under its
//! shard's write lock and only if the tip is still at the height it read at. So a value read
//! at an older height can never be cached over a newer one.

use parking_lot::{RwLock, RwLockWriteGuard};
use std::collections::HashMap;

/// Number of shards (a power of two).
pub const SHARDS: usize = 16;

/// foldhash, seeded at random per shard: fast on short keys, and clients cannot aim
/// collisions at a seed they do not know.
type Map = HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::RandomState>;

/// The sharded cache.
pub struct HeadCache {
    shards: [RwLock<Map>; SHARDS],
    /// Entries per shard before that shard is cleared.
    max_per_shard: usize,
}

/// All shards write-locked (a commit or a revert in progress).
pub struct AllShards<'a> {
    guards: Vec<RwLockWriteGuard<'a, Map>>,
    max_per_shard: usize,
}

/// The shard of a key: FNV-1a over its bytes (keys are chosen by clients, but a skewed shard
/// only costs contention, never correctness).
fn shard_of(key: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h as usize) & (SHARDS - 1)
}

impl HeadCache {
    /// An empty cache holding at most about `max_entries` values.
    pub fn new(max_entries: usize) -> Self {
        HeadCache {
            shards: std::array::from_fn(|_| RwLock::new(Map::default())),
            max_per_shard: (max_entries / SHARDS).max(1),
        }
    }

    fn shard(&self, key: &[u8]) -> &RwLock<Map> {
        // shard_of masks with SHARDS - 1: always in range.
        &self.shards[shard_of(key)]
    }

    /// The cached value of `key` at the tip: `Some(None)` for a key known to be absent.
    pub fn get(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.shard(key).read().get(key).cloned()
    }

    /// Caches `value` for `key` if `still_current()` (checked under the shard's write lock,
    /// which a commit also holds while it moves the tip).
    pub fn insert_if(
        &self,
        key: &[u8],
        value: Option<Vec<u8>>,
        still_current: impl FnOnce() -> bool,
    ) {
        let mut s = self.shard(key).write();
        if still_current() {
            if s.len() >= self.max_per_shard {
                s.clear();
            }
            s.insert(key.to_vec(), value);
        }
    }

    /// Write-locks every shard, in index order (the one order, so two writers never
    /// deadlock; the chain's `commit` lock already makes them one at a time).
    pub fn lock_all(&self) -> AllShards<'_> {
        AllShards {
            guards: self.shards.iter().map(|s| s.write()).collect(),
            max_per_shard: self.max_per_shard,
        }
    }
}

impl AllShards<'_> {
    /// Sets `key` to `value` (a committed write).
    pub fn insert(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(s) = self.guards.get_mut(shard_of(&key)) {
            if s.len() >= self.max_per_shard {
                s.clear();
            }
            s.insert(key, value);
        }
    }

    /// Forgets everything (a revert).
    pub fn clear(&mut self) {
        for s in &mut self.guards {
            s.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_shards_and_values_round_trip() {
        let c = HeadCache::new(1 << 10);
        let mut used = std::collections::HashSet::new();
        for i in 0u32..256 {
            let k = i.to_be_bytes().to_vec();
            used.insert(shard_of(&k));
            c.insert_if(&k, Some(vec![1]), || true);
            assert_eq!(c.get(&k), Some(Some(vec![1])));
        }
        assert_eq!(used.len(), SHARDS, "256 keys reach every shard");
        // A stale reader's value is not cached.
        c.insert_if(b"stale", Some(vec![2]), || false);
        assert_eq!(c.get(b"stale"), None);
        // Absence is cached as such.
        c.insert_if(b"gone", None, || true);
        assert_eq!(c.get(b"gone"), Some(None));
        let mut all = c.lock_all();
        all.insert(b"gone".to_vec(), Some(vec![3]));
        all.clear();
        drop(all);
        assert_eq!(c.get(b"gone"), None);
    }

    #[test]
    fn a_full_shard_is_cleared_not_grown() {
        let c = HeadCache::new(SHARDS * 2);
        for i in 0u32..1000 {
            c.insert_if(&i.to_be_bytes(), None, || true);
        }
        let total: usize = c.shards.iter().map(|s| s.read().len()).sum();
        assert!(total <= SHARDS * 2, "{total}");
    }

    #[test]
    fn readers_do_not_block_each_other_while_one_shard_is_written() {
        // A reader of one shard proceeds while another shard is write-locked.
        let c = HeadCache::new(1 << 10);
        let (a, b) = (
            b"a".to_vec(),
            (0u32..)
                .map(|i| i.to_be_bytes().to_vec())
                .find(|k| shard_of(k) != shard_of(b"a"))
                .unwrap_or_default(),
        );
        c.insert_if(&b, Some(vec![9]), || true);
        let _held = c.shard(&a).write();
        assert_eq!(c.get(&b), Some(Some(vec![9])));
    }
}
