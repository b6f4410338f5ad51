//! The in-memory needle index: key → (offset, length), 16 bytes per entry.
//!
//! Entries are `(key: u64, offset: u32 in 8-byte units, len: u32)` kept sorted by key in
//! fixed-capacity chunks of [`CHUNK`] entries, so the only slack is the unfilled part of the
//! last chunk (no `Vec` doubling). Keys assigned by the server grow monotonically, so inserts
//! are appends. A key lower than the largest one that is not yet present (a client writing an
//! id it chose) goes to a small overflow map, merged into the chunks when it grows.
//!
//! A deleted key keeps its entry with the [`DELETED`] bit set in `len` and the offset of its
//! tombstone, so later needles for the key are ordered correctly; compaction drops them.

use std::collections::BTreeMap;

/// Entries per chunk.
pub const CHUNK: usize = 4096;
/// Bit of [`Entry::len`] marking a deleted key.
pub const DELETED: u32 = 0x8000_0000;

/// One index entry (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
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

/// The compact sorted index.
#[derive(Debug, Default)]
pub struct CompactIndex {
    chunks: Vec<Vec<Entry>>,
    overflow: BTreeMap<u64, (u32, u32)>,
    count: usize,
}

impl CompactIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn max_key(&self) -> Option<u64> {
        self.chunks.last().and_then(|c| c.last()).map(|e| e.key)
    }

    fn find(&self, key: u64) -> Option<(usize, usize)> {
        let ci = self
            .chunks
            .partition_point(|c| c.first().is_some_and(|e| e.key <= key));
        let ci = ci.checked_sub(1)?;
        let c = &self.chunks[ci];
        c.binary_search_by_key(&key, |e| e.key)
            .ok()
            .map(|i| (ci, i))
    }

    /// Looks a key up (deleted entries included).
    pub fn get(&self, key: u64) -> Option<Entry> {
        if let Some(&(offset, len)) = self.overflow.get(&key) {
            return Some(Entry { key, offset, len });
        }
        self.find(key).map(|(c, i)| self.chunks[c][i])
    }

    /// Inserts or replaces the entry for `e.key`, returning the previous one.
    pub fn put(&mut self, e: Entry) -> Option<Entry> {
        if let Some((c, i)) = self.find(e.key) {
            let prev = self.chunks[c][i];
            self.chunks[c][i] = e;
            return Some(prev);
        }
        if let Some(prev) = self.overflow.get_mut(&e.key) {
            let old = Entry {
                key: e.key,
                offset: prev.0,
                len: prev.1,
            };
            *prev = (e.offset, e.len);
            return Some(old);
        }
        self.count += 1;
        let in_last = self
            .chunks
            .last()
            .and_then(|c| c.first())
            .is_some_and(|f| f.key < e.key);
        if self.max_key().is_none_or(|m| e.key > m) {
            self.push_last(e);
        } else if in_last {
            // Out of order but within the last chunk (concurrent writes settle slightly out
            // of key order): insert in place; if the chunk is full its largest entry moves on
            // to a new chunk.
            if let Some(c) = self.chunks.last_mut() {
                let spill = if c.len() == CHUNK { c.pop() } else { None };
                let at = c.partition_point(|x| x.key < e.key);
                c.insert(at, e);
                if let Some(s) = spill {
                    self.push_last(s);
                }
            }
        } else {
            self.overflow.insert(e.key, (e.offset, e.len));
            if self.overflow.len() > CHUNK.max(self.count / 32) {
                self.merge_overflow();
            }
        }
        None
    }

    fn push_last(&mut self, e: Entry) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(e),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(e);
                self.chunks.push(c);
            }
        }
    }

    fn merge_overflow(&mut self) {
        let old = std::mem::take(&mut self.chunks);
        let over = std::mem::take(&mut self.overflow);
        let mut a = old.into_iter().flatten().peekable();
        let mut b = over
            .into_iter()
            .map(|(key, (offset, len))| Entry { key, offset, len })
            .peekable();
        let mut out = CompactIndex::new();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.key < y.key => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some(e) = next {
                out.put(e);
            }
        }
        *self = out;
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
        let mut a = self.chunks.iter().flatten().copied().peekable();
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
            .map(|c| c.capacity() * std::mem::size_of::<Entry>())
            .sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>()
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
    fn entry_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn appends_lookups_replacements() {
        let mut ix = CompactIndex::new();
        for k in 1..=10_000u64 {
            assert!(ix.put(e(k, k as u32)).is_none());
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
    fn memory_per_entry_at_most_16_bytes_plus_last_chunk() {
        let mut ix = CompactIndex::new();
        let n = 1_000_000u64;
        for k in 1..=n {
            ix.put(e(k * 3, k as u32));
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
        fn behaves_like_a_map(ops in proptest::collection::vec((1u64..3000, any::<u32>()), 0..6000)) {
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
