//! The in-memory needle index: key → (offset, length), 12 bytes per entry.
//!
//! Keys below 2^32 (every key the server assigns, in practice) are kept as 12-byte slots
//! `(key: u32, offset: u32 in 8-byte units, len: u32)`, sorted by key in fixed-capacity chunks
//! of [`CHUNK`] slots, so the only slack is the unfilled part of the last chunk (no `Vec`
//! doubling). Keys assigned by the server grow monotonically, so inserts are appends; writes
//! that settle slightly out of order are inserted in place in the chunk they belong to (its
//! largest slot spilling into the next chunk when it is full). Other keys — 64-bit ones (volumes
//! only assign keys below 2^32; larger ones come from volumes written before client-chosen keys
//! were refused), or an old small key settling late — go to a small overflow map; small keys
//! there are merged into the chunks when it grows.
//!
//! A deleted key keeps its entry with the [`DELETED`] bit set in `len` and the offset of its
//! tombstone, so later needles for the key are ordered correctly; compaction drops them.

use std::collections::BTreeMap;

/// Slots per chunk.
pub const CHUNK: usize = 4096;
/// Bit of [`Entry::len`] marking a deleted key.
pub const DELETED: u32 = 0x8000_0000;

/// An index entry as seen by callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Needle key.
    pub key: u64,
    /// Needle offset in the volume divided by 8.
    pub offset: u32,
    /// Needle length in bytes, with [`DELETED`] set for a tombstoned key.
    pub len: u32,
}

impl Entry {
    /// Whether the key is deleted.
    pub fn is_deleted(&self) -> bool {
        self.len & DELETED != 0
    }
    /// Byte offset in the volume.
    pub fn byte_offset(&self) -> u64 {
        self.offset as u64 * 8
    }
    /// Needle length in bytes (without the deleted bit).
    pub fn byte_len(&self) -> u32 {
        self.len & !DELETED
    }
}

/// The stored form of an entry with a key below 2^32: 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    key: u32,
    offset: u32,
    len: u32,
}

impl Slot {
    fn entry(self) -> Entry {
        Entry {
            key: self.key as u64,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// The compact sorted index.
#[derive(Debug, Default)]
pub struct CompactIndex {
    chunks: Vec<Vec<Slot>>,
    overflow: BTreeMap<u64, (u32, u32)>,
    /// Overflow entries whose key would fit a slot (merged into chunks when many).
    overflow_small: usize,
    count: usize,
}

impl CompactIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn max_key(&self) -> Option<u32> {
        self.chunks.last().and_then(|c| c.last()).map(|e| e.key)
    }

    /// Index of the chunk whose range holds `key` (the last chunk starting at or below it).
    fn chunk_for(&self, key: u32) -> Option<usize> {
        self.chunks
            .partition_point(|c| c.first().is_some_and(|e| e.key <= key))
            .checked_sub(1)
    }

    fn find(&self, key: u32) -> Option<(usize, usize)> {
        let ci = self.chunk_for(key)?;
        let c = self.chunks.get(ci)?;
        // Keys are mostly assigned one after another, so a chunk is usually dense: try the
        // slot the key would have then (one cache line instead of a dozen probes).
        let guess = c
            .first()
            .map(|f| (key - f.key) as usize)
            .filter(|&g| c.get(g).is_some_and(|e| e.key == key));
        guess
            .or_else(|| c.binary_search_by_key(&key, |e| e.key).ok())
            .map(|i| (ci, i))
    }

    /// Looks a key up (deleted entries included).
    pub fn get(&self, key: u64) -> Option<Entry> {
        if let Some(&(offset, len)) = self.overflow.get(&key) {
            return Some(Entry { key, offset, len });
        }
        let k = u32::try_from(key).ok()?;
        self.find(k).map(|(c, i)| self.chunks[c][i].entry())
    }

    /// Inserts or replaces the entry for `e.key`, returning the previous one.
    pub fn put(&mut self, e: Entry) -> Option<Entry> {
        if let Some(prev) = self.overflow.get_mut(&e.key) {
            let old = Entry {
                key: e.key,
                offset: prev.0,
                len: prev.1,
            };
            *prev = (e.offset, e.len);
            return Some(old);
        }
        let Ok(k) = u32::try_from(e.key) else {
            self.overflow.insert(e.key, (e.offset, e.len));
            self.count += 1;
            return None;
        };
        let slot = Slot {
            key: k,
            offset: e.offset,
            len: e.len,
        };
        if let Some((c, i)) = self.find(k) {
            let prev = self.chunks[c][i];
            self.chunks[c][i] = slot;
            return Some(prev.entry());
        }
        self.count += 1;
        if self.max_key().is_none_or(|m| k > m) {
            self.push_last(slot);
            return None;
        }
        // A key below the first chunk's first key belongs at the front of chunk 0.
        let home = self.chunk_for(k).or((!self.chunks.is_empty()).then_some(0));
        if let Some(ci) = home {
            let last = self.chunks.len() - 1;
            let room_here = self.chunks[ci].len() < CHUNK;
            let room_next = ci < last && self.chunks[ci + 1].len() < CHUNK;
            let beyond = self.chunks[ci].last().is_some_and(|m| k > m.key);
            if room_here || room_next || ci == last {
                // In place; a full chunk hands its largest slot to the next chunk (a new one
                // after the last), or the slot goes to the next chunk's front directly.
                if !room_here && beyond {
                    // Only possible with ci < last (k < the last chunk's max): room_next.
                    self.chunks[ci + 1].insert(0, slot);
                    return None;
                }
                let spill = if room_here {
                    None
                } else {
                    self.chunks[ci].pop()
                };
                let c = &mut self.chunks[ci];
                let at = c.partition_point(|x| x.key < k);
                c.insert(at, slot);
                if let Some(sp) = spill {
                    if ci == last {
                        self.push_last(sp);
                    } else {
                        self.chunks[ci + 1].insert(0, sp);
                    }
                }
                return None;
            }
        }
        self.overflow.insert(e.key, (e.offset, e.len));
        self.overflow_small += 1;
        if self.overflow_small > CHUNK.max(self.count / 64) {
            self.merge_overflow();
        }
        None
    }

    fn push_last(&mut self, s: Slot) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(s),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(s);
                self.chunks.push(c);
            }
        }
    }

    fn merge_overflow(&mut self) {
        let all: Vec<Entry> = self.iter().collect();
        *self = CompactIndex::new();
        for e in all {
            match u32::try_from(e.key) {
                // Keys arrive in order: every small one is an append.
                Ok(k) => {
                    self.push_last(Slot {
                        key: k,
                        offset: e.offset,
                        len: e.len,
                    });
                    self.count += 1;
                }
                Err(_) => {
                    self.overflow.insert(e.key, (e.offset, e.len));
                    self.count += 1;
                }
            }
        }
    }

    /// Number of entries (deleted ones included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut a = self.chunks.iter().flatten().map(|s| s.entry()).peekable();
        let mut b = self
            .overflow
            .iter()
            .map(|(&key, &(offset, len))| Entry { key, offset, len })
            .peekable();
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.key < y.key => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        })
    }

    /// Heap bytes held by the index: chunk capacities, the chunk table, and an estimate of
    /// 64 bytes per overflow entry (B-tree node share included).
    pub fn memory_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.capacity() * std::mem::size_of::<Slot>())
            .sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Slot>>()
            + self.overflow.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(key: u64, offset: u32) -> Entry {
        Entry {
            key,
            offset,
            len: 40,
        }
    }

    #[test]
    fn slot_is_12_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 12);
    }

    #[test]
    fn big_keys_and_out_of_order_keys() {
        let mut ix = CompactIndex::new();
        for k in (1..=20_000u64).rev() {
            ix.put(e(k, u32::try_from(k).unwrap()));
        }
        ix.put(e(u64::MAX, 7));
        ix.put(e(1 << 40, 8));
        assert_eq!(ix.len(), 20_002);
        assert_eq!(ix.get(u64::MAX).unwrap().offset, 7);
        assert_eq!(ix.get(1 << 40).unwrap().offset, 8);
        assert_eq!(ix.get(12_345).unwrap().offset, 12_345);
        let keys: Vec<u64> = ix.iter().map(|e| e.key).collect();
        assert_eq!(keys.len(), 20_002);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn nearly_ordered_inserts_stay_compact() {
        // Concurrent writers settle keys slightly out of order.
        let mut ix = CompactIndex::new();
        let n = 100_000u64;
        for base in (0..n).step_by(16) {
            for k in (base..base + 16).rev() {
                ix.put(e(k + 1, u32::try_from(k).unwrap()));
            }
        }
        assert!(ix.overflow.is_empty());
        let per = ix.memory_bytes() as f64 / n as f64;
        assert!(
            per <= 12.0 + (CHUNK * 12) as f64 / n as f64 + 0.05,
            "{per} B/entry"
        );
    }

    #[test]
    fn appends_lookups_replacements() {
        let mut ix = CompactIndex::new();
        for k in 1..=10_000u64 {
            assert!(ix.put(e(k, u32::try_from(k).unwrap())).is_none());
        }
        assert_eq!(ix.len(), 10_000);
        assert_eq!(ix.get(5000).unwrap().offset, 5000);
        assert!(ix.get(0).is_none() && ix.get(10_001).is_none());
        let prev = ix.put(e(5000, 1)).unwrap();
        assert_eq!(prev.offset, 5000);
        assert_eq!(ix.get(5000).unwrap().offset, 1);
        assert_eq!(ix.len(), 10_000);
        let keys: Vec<u64> = ix.iter().map(|e| e.key).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn memory_per_entry_is_12_bytes_plus_last_chunk() {
        let mut ix = CompactIndex::new();
        let n = 1_000_000u64;
        for k in 1..=n {
            ix.put(e(k * 3, u32::try_from(k).unwrap()));
        }
        let per = ix.memory_bytes() as f64 / n as f64;
        // The only slack is the unfilled tail of the last chunk and the chunk table.
        assert!(
            per <= 16.0 + (CHUNK * 16) as f64 / n as f64 + 0.05,
            "{per} B/entry"
        );
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(
            (prop_oneof![1u64..3000, 1u64..20_000, any::<u64>()], any::<u32>()), 0..12_000)) {
            let mut ix = CompactIndex::new();
            let mut model = BTreeMap::new();
            for (k, off) in ops {
                let prev = ix.put(e(k, off)).map(|p| p.offset);
                prop_assert_eq!(prev, model.insert(k, off));
            }
            prop_assert_eq!(ix.len(), model.len());
            for (k, off) in &model {
                prop_assert_eq!(ix.get(*k).map(|p| p.offset), Some(*off));
            }
            let all: Vec<(u64, u32)> = ix.iter().map(|p| (p.key, p.offset)).collect();
            let want: Vec<(u64, u32)> = model.into_iter().collect();
            prop_assert_eq!(all, want);
        }
    }
}
