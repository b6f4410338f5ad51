//! Read and write sets: what one transaction's execution read and wrote.
//!
//! [`Recorder`] wraps the state view a transaction runs on and notes every key it reads
//! (`get`, and so accounts, staking keys, contract rows and index entries) and every range
//! it scans. Reads the transaction serves from its own pending writes never reach the view,
//! so a recorded read is always a read of the state before the transaction. A range scan
//! records exactly the part of the key space its result depends on: `[start, end)` when it
//! returned fewer pairs than its limit, else `[start, last key returned]` (a write past the
//! last pair returned cannot change the result). The writes are the keys of the write set.
//!
//! Gas and fees are not state: gas is counted per receipt and the fees are summed per block
//! and credited to the producer once, after every transaction, so neither ever shows in an
//! access set. The sets feed the canonical DTT ([`crate::dtt`]).

use crate::error::ChainError;
use crate::state::{Pairs, StateView, WriteSet};
use std::cell::RefCell;

/// What one transaction read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSet {
    /// Keys read, sorted, without duplicates.
    pub reads: Vec<Vec<u8>>,
    /// Ranges `[start, end)` scanned, in the order scanned, without repeats.
    pub ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys written (or deleted), sorted.
    pub writes: Vec<Vec<u8>>,
}

impl AccessSet {
    /// Whether the set touches nothing.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.ranges.is_empty() && self.writes.is_empty()
    }

    /// Whether the transaction read `key` (a point read or inside a scanned range).
    pub fn reads_key(&self, key: &[u8]) -> bool {
        self.reads
            .binary_search_by(|k| k.as_slice().cmp(key))
            .is_ok()
            || self
                .ranges
                .iter()
                .any(|(s, e)| s.as_slice() <= key && key < e.as_slice())
    }
}

#[derive(Default)]
struct Log {
    reads: Vec<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A state view that records what is read through it (see the module doc).
pub struct Recorder<'a> {
    inner: &'a dyn StateView,
    log: RefCell<Log>,
}

impl<'a> Recorder<'a> {
    /// Records reads of `inner`.
    pub fn new(inner: &'a dyn StateView) -> Self {
        Self {
            inner,
            log: RefCell::new(Log::default()),
        }
    }

    /// The access set: the reads recorded and the keys of `writes`.
    pub fn finish(self, writes: &WriteSet) -> AccessSet {
        let Log { mut reads, ranges } = self.log.into_inner();
        reads.sort_unstable();
        reads.dedup();
        AccessSet {
            reads,
            ranges,
            writes: writes.keys().cloned().collect(),
        }
    }

    fn range(&self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let mut log = self.log.borrow_mut();
        if !log
            .ranges
            .iter()
            .any(|(s, e)| s.as_slice() == start && e.as_slice() == end)
        {
            log.ranges.push((start.to_vec(), end.to_vec()));
        }
    }
}

/// The key right after `key` in key order (`key ‖ 0`).
fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

impl StateView for Recorder<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        self.log.borrow_mut().reads.push(key.to_vec());
        self.inner.get(key)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Pairs, ChainError> {
        self.range(start, end);
        self.inner.scan(start, end)
    }

    fn scan_limit(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, ChainError> {
        let v = self.inner.scan_limit(start, end, limit)?;
        match v.last() {
            // A full result depends only on the keys up to its last one.
            Some((last, _)) if v.len() >= limit => self.range(start, &successor(last)),
            // Nothing asked for: nothing read.
            None if limit == 0 => {}
            _ => self.range(start, end),
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemState;

    #[test]
    fn records_points_ranges_and_writes() {
        let mut s = MemState::default();
        for k in [b"a1", b"a2", b"a3", b"b1"] {
            s.0.insert(k.to_vec(), b"v".to_vec());
        }
        let r = Recorder::new(&s);
        r.get(b"b1").unwrap();
        r.get(b"zz").unwrap();
        r.get(b"b1").unwrap();
        // Full result (limit reached): only up to its last key.
        assert_eq!(r.scan_limit(b"a", b"b", 2).unwrap().len(), 2);
        // Short result: the whole range.
        assert_eq!(r.scan_limit(b"b", b"c", 5).unwrap().len(), 1);
        r.scan(b"c", b"d").unwrap();
        r.scan(b"c", b"d").unwrap();
        r.scan(b"e", b"e").unwrap();
        let mut w = WriteSet::new();
        w.insert(b"k2".to_vec(), None);
        w.insert(b"k1".to_vec(), Some(b"x".to_vec()));
        let a = r.finish(&w);
        assert_eq!(a.reads, vec![b"b1".to_vec(), b"zz".to_vec()]);
        assert_eq!(
            a.ranges,
            vec![
                (b"a".to_vec(), b"a2\0".to_vec()),
                (b"b".to_vec(), b"c".to_vec()),
                (b"c".to_vec(), b"d".to_vec()),
            ]
        );
        assert_eq!(a.writes, vec![b"k1".to_vec(), b"k2".to_vec()]);
        assert!(a.reads_key(b"a2") && !a.reads_key(b"a3") && a.reads_key(b"zz"));
    }
}
