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
//! access set. The sets feed the canonical DTT ([`crate::dtt`]). A native transfer is not
//! recorded: its set follows from the transaction and its status
//! (`crate::exec::TransferKeys`, [`AccessSet::from_keys`]), and tests check it against a
//! recorder's.

use crate::error::ChainError;
use crate::state::{Pairs, StateView, WriteSet};
use std::cell::RefCell;

/// What one transaction read and wrote, in one buffer (one allocation per transaction:
/// validation hands sets from thread to thread, and every allocation freed on another
/// thread costs a cache line moving between cores).
///
/// Layout: three little-endian `u32` counts (point reads, ranges, writes), then every key
/// as a `u32` length and its bytes: the reads sorted without duplicates, each range's start
/// and end in the order scanned (without repeats), the writes sorted; the empty set is the
/// empty buffer (no allocation). The layout is canonical, so two sets are equal exactly
/// when their buffers are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccessSet {
    bytes: Vec<u8>,
}

/// A borrowed [`AccessSet`] (inside a set or a batch of them).
#[derive(Clone, Copy)]
pub struct AccessRef<'a> {
    bytes: &'a [u8],
}

/// Bytes of the header (the three counts).
const HEADER: usize = 12;

fn read_u32(b: &[u8], at: usize) -> Option<usize> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(x)).ok()
}

/// Appends `key` as a length and its bytes.
fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    // Keys are state keys (bounded far below 4 GiB by the transaction size).
    let n = u32::try_from(key.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(key);
}

/// Appends a set (counts, then keys) to `out`.
fn put_set<'k>(
    out: &mut Vec<u8>,
    reads: &[&'k [u8]],
    ranges: &[(&'k [u8], &'k [u8])],
    writes: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
) {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let size = HEADER
        + reads.iter().map(|k| 4 + k.len()).sum::<usize>()
        + ranges
            .iter()
            .map(|(a, b)| 8 + a.len() + b.len())
            .sum::<usize>()
        + writes.clone().map(|k| 4 + k.len()).sum::<usize>();
    out.reserve(size);
    out.extend_from_slice(&count(reads.len()));
    out.extend_from_slice(&count(ranges.len()));
    out.extend_from_slice(&count(writes.len()));
    for k in reads {
        put_key(out, k);
    }
    for (a, b) in ranges {
        put_key(out, a);
        put_key(out, b);
    }
    for k in writes {
        put_key(out, k);
    }
}

/// The keys of a set's buffer, in layout order.
#[derive(Clone)]
pub struct Keys<'a> {
    bytes: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let n = read_u32(self.bytes, self.at)?;
        let k = self.bytes.get(self.at + 4..self.at + 4 + n)?;
        self.at += 4 + n;
        self.left -= 1;
        Some(k)
    }
}

impl<'a> AccessRef<'a> {
    /// (point reads, ranges, writes).
    fn counts(&self) -> (usize, usize, usize) {
        (
            read_u32(self.bytes, 0).unwrap_or(0),
            read_u32(self.bytes, 4).unwrap_or(0),
            read_u32(self.bytes, 8).unwrap_or(0),
        )
    }

    fn keys(&self) -> Keys<'a> {
        let (r, g, w) = self.counts();
        Keys {
            bytes: self.bytes,
            at: HEADER,
            left: r + 2 * g + w,
        }
    }

    /// Keys read (point reads), sorted, without duplicates.
    pub fn reads(&self) -> impl Iterator<Item = &'a [u8]> + Clone {
        let (r, _, _) = self.counts();
        self.keys().take(r)
    }

    /// Ranges `[start, end)` scanned, in the order scanned, without repeats.
    pub fn ranges(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone {
        let (r, g, _) = self.counts();
        let mut k = self.keys().skip(r);
        std::iter::from_fn(move || Some((k.next()?, k.next()?))).take(g)
    }

    /// Keys written (or deleted), sorted.
    pub fn writes(&self) -> impl Iterator<Item = &'a [u8]> + Clone {
        let (r, g, _) = self.counts();
        self.keys().skip(r + 2 * g)
    }

    /// Whether the set touches nothing.
    pub fn is_empty(&self) -> bool {
        self.counts() == (0, 0, 0)
    }

    /// Whether the transaction read `key` (a point read or inside a scanned range).
    pub fn reads_key(&self, key: &[u8]) -> bool {
        self.reads().any(|k| k == key) || self.ranges().any(|(s, e)| s <= key && key < e)
    }

    /// The set at the start of `bytes` and what follows it (a batch), `None` past the end.
    fn split(bytes: &'a [u8]) -> Option<(AccessRef<'a>, &'a [u8])> {
        let head = AccessRef { bytes };
        let mut keys = head.keys();
        for _ in keys.by_ref() {}
        if keys.left != 0 {
            return None;
        }
        let (this, rest) = bytes.split_at_checked(keys.at)?;
        Some((AccessRef { bytes: this }, rest))
    }
}

impl AccessSet {
    /// A set of these reads and writes (sorted and deduplicated here) and ranges (as given).
    pub fn new(reads: Vec<Vec<u8>>, ranges: Vec<(Vec<u8>, Vec<u8>)>, writes: Vec<Vec<u8>>) -> Self {
        let r: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
        let g: Vec<(&[u8], &[u8])> = ranges
            .iter()
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .collect();
        let w: Vec<&[u8]> = writes.iter().map(Vec::as_slice).collect();
        AccessSet::from_parts(&r, &g, &w)
    }

    /// The set of these point reads and writes and no range (sorted and deduplicated here):
    /// a set known without recording (a native transfer's, `crate::exec::TransferKeys`).
    pub fn from_keys(reads: &[&[u8]], writes: &[&[u8]]) -> Self {
        AccessSet::from_parts(reads, &[], writes)
    }

    /// The set of these reads and writes (sorted and deduplicated here) and ranges (as given).
    fn from_parts(reads: &[&[u8]], ranges: &[(&[u8], &[u8])], writes: &[&[u8]]) -> Self {
        let mut r: smallvec::SmallVec<[&[u8]; 4]> = reads.iter().copied().collect();
        r.sort_unstable();
        r.dedup();
        let mut w: smallvec::SmallVec<[&[u8]; 4]> = writes.iter().copied().collect();
        w.sort_unstable();
        w.dedup();
        let mut bytes = Vec::new();
        put_set(&mut bytes, &r, ranges, w.iter().copied());
        AccessSet::of(bytes)
    }

    /// The set of one encoded buffer, the empty set as the empty buffer.
    fn of(bytes: Vec<u8>) -> Self {
        if bytes
            .get(..HEADER)
            .is_some_and(|h| h.iter().all(|b| *b == 0))
        {
            return AccessSet::default();
        }
        AccessSet { bytes }
    }

    /// The set, borrowed.
    pub fn view(&self) -> AccessRef<'_> {
        AccessRef { bytes: &self.bytes }
    }

    /// Keys read (point reads), sorted, without duplicates.
    pub fn reads(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.view().reads()
    }

    /// Ranges `[start, end)` scanned, in the order scanned, without repeats.
    pub fn ranges(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.view().ranges()
    }

    /// Keys written (or deleted), sorted.
    pub fn writes(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.view().writes()
    }

    /// Whether the set touches nothing.
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// Whether the transaction read `key` (a point read or inside a scanned range).
    pub fn reads_key(&self, key: &[u8]) -> bool {
        self.view().reads_key(key)
    }
}

impl std::fmt::Debug for AccessSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
        f.debug_struct("AccessSet")
            .field("reads", &self.reads().map(show).collect::<Vec<_>>())
            .field(
                "ranges",
                &self
                    .ranges()
                    .map(|(a, b)| (show(a), show(b)))
                    .collect::<Vec<_>>(),
            )
            .field("writes", &self.writes().map(show).collect::<Vec<_>>())
            .finish()
    }
}

/// Access sets of consecutive transactions in one buffer (validation hands them to the
/// DTT checker in batches: one allocation crosses threads per batch).
#[derive(Default)]
pub struct AccessBatch {
    bytes: Vec<u8>,
}

impl AccessBatch {
    /// Appends a set (tests build batches this way; validation appends with
    /// [`Recorder::finish_batch`]).
    #[cfg(test)]
    pub fn push(&mut self, s: &AccessSet) {
        if s.bytes.is_empty() {
            // The empty set still takes its place: a header of zero counts.
            self.bytes.extend_from_slice(&[0; HEADER]);
        } else {
            self.bytes.extend_from_slice(&s.bytes);
        }
    }

    /// The sets, in order.
    pub fn iter(&self) -> impl Iterator<Item = AccessRef<'_>> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (this, after) = AccessRef::split(rest)?;
            rest = after;
            Some(this)
        })
    }
}

#[derive(Default)]
struct Log {
    /// Every key read, concatenated; `reads` holds each one's span.
    buf: Vec<u8>,
    reads: Vec<(usize, usize)>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A state view that records what is read through it (see the module doc).
pub struct Recorder<'a> {
    inner: &'a dyn StateView,
    log: RefCell<Log>,
}

thread_local! {
    /// A finished recorder's log, kept (emptied) for the thread's next one: recording then
    /// allocates nothing per transaction but its set.
    static SPARE: RefCell<Option<Log>> = const { RefCell::new(None) };
}

impl<'a> Recorder<'a> {
    /// Records reads of `inner`.
    pub fn new(inner: &'a dyn StateView) -> Self {
        let log = SPARE
            .with(|s| s.borrow_mut().take())
            .unwrap_or_else(|| Log {
                // Room for a few keys: a transfer reads two accounts.
                buf: Vec::with_capacity(128),
                reads: Vec::with_capacity(8),
                ranges: Vec::new(),
            });
        Self {
            inner,
            log: RefCell::new(log),
        }
    }

    /// The access set: the reads recorded and the keys of `writes`.
    pub fn finish(self, writes: &WriteSet) -> AccessSet {
        let mut bytes = Vec::new();
        self.finish_into(writes, &mut bytes);
        AccessSet::of(bytes)
    }

    /// [`Recorder::finish`] appended to a batch.
    pub fn finish_batch(self, writes: &WriteSet, batch: &mut AccessBatch) {
        self.finish_into(writes, &mut batch.bytes);
    }

    fn finish_into(self, writes: &WriteSet, out: &mut Vec<u8>) {
        let log = self.log.into_inner();
        let mut reads: smallvec::SmallVec<[&[u8]; 8]> = log
            .reads
            .iter()
            .filter_map(|(a, b)| log.buf.get(*a..*b))
            .collect();
        reads.sort_unstable();
        reads.dedup();
        let ranges: Vec<(&[u8], &[u8])> = log
            .ranges
            .iter()
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .collect();
        put_set(out, &reads, &ranges, writes.keys().map(Vec::as_slice));
        drop((reads, ranges));
        let mut log = log;
        // A log grown by an unusual transaction (a large scan) is not kept.
        if log.buf.capacity() <= 4096 && log.reads.capacity() <= 64 {
            log.buf.clear();
            log.reads.clear();
            log.ranges.clear();
            SPARE.with(|s| *s.borrow_mut() = Some(log));
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
        {
            let mut log = self.log.borrow_mut();
            let a = log.buf.len();
            log.buf.extend_from_slice(key);
            let b = log.buf.len();
            log.reads.push((a, b));
        }
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
        assert_eq!(a.reads().collect::<Vec<_>>(), vec![&b"b1"[..], b"zz"]);
        assert_eq!(
            a.ranges().collect::<Vec<_>>(),
            vec![
                (&b"a"[..], &b"a2\0"[..]),
                (&b"b"[..], &b"c"[..]),
                (&b"c"[..], &b"d"[..]),
            ]
        );
        assert_eq!(a.writes().collect::<Vec<_>>(), vec![&b"k1"[..], b"k2"]);
        // Equal to the set built from its parts, and a batch gives it back.
        let same = AccessSet::new(
            vec![b"zz".to_vec(), b"b1".to_vec(), b"b1".to_vec()],
            vec![
                (b"a".to_vec(), b"a2\0".to_vec()),
                (b"b".to_vec(), b"c".to_vec()),
                (b"c".to_vec(), b"d".to_vec()),
            ],
            vec![b"k2".to_vec(), b"k1".to_vec()],
        );
        assert_eq!(a, same);
        assert_eq!(AccessSet::new(vec![], vec![], vec![]), AccessSet::default());
        assert!(Recorder::new(&s).finish(&WriteSet::new()).is_empty());
        let mut batch = AccessBatch::default();
        batch.push(&AccessSet::default());
        batch.push(&a);
        batch.push(&same);
        let back: Vec<_> = batch.iter().collect();
        assert_eq!(back.len(), 3);
        assert!(back[0].is_empty() && !back[1].is_empty());
        assert_eq!(
            back[2].writes().collect::<Vec<_>>(),
            vec![&b"k1"[..], b"k2"]
        );
        assert_eq!(back[1].ranges().count(), 3);
        assert!(a.reads_key(b"a2") && !a.reads_key(b"a3") && a.reads_key(b"zz"));
    }
}
