//! Storage interface the chain implements over its versioned state, an
//! in-memory implementation for tests and the sandbox, and the write overlay
//! that makes every call atomic (commit on success, drop on error).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;
use thiserror::Error;

/// A storage failure reported by a [`Kv`] backend.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct KvError(pub String);

/// Items produced by [`Kv::scan`].
pub type KvItem = Result<(Vec<u8>, Vec<u8>), KvError>;

/// Ordered key-value storage. Keys compare bytewise. The engine addresses only
/// keys under the contract prefix it was given (see the crate docs for the
/// layout), so one `Kv` can hold many contracts.
pub trait Kv {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Reads one key and lends its value to `f` (backends that hold their
    /// values lend them without a copy; the default reads with [`Kv::get`]).
    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), KvError> {
        let v = self.get(key)?;
        f(v.as_deref());
        Ok(())
    }
    /// Writes one key.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    /// Writes one key, taking ownership (saves a copy where the backend keeps
    /// the buffers).
    fn put_vec(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.put(&key, &value)
    }
    /// Deletes one key (no error if absent).
    fn delete(&mut self, key: &[u8]) -> Result<(), KvError>;
    /// Starts a savepoint (PL/pgSQL `BEGIN … EXCEPTION`); false when the store cannot roll
    /// back (only buffered stores can: [`Overlay`]).
    fn savepoint(&mut self) -> bool {
        false
    }
    /// Undoes the writes since the latest savepoint and ends it.
    fn rollback_savepoint(&mut self) {}
    /// Keeps the writes since the latest savepoint and ends it.
    fn release_savepoint(&mut self) {}
    /// All pairs with `start <= key < end`, in ascending key order.
    fn scan<'a>(&'a self, start: &[u8], end: &[u8]) -> Box<dyn Iterator<Item = KvItem> + 'a>;
    /// The first `limit` pairs of [`Kv::scan`]. The engine never asks for more rows than the
    /// gas left pays for, so a backend that reads a range ahead (the chain's versioned state)
    /// overrides this to read no more than that: a large table costs the reads the gas pays,
    /// not the whole table.
    fn scan_limit<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Box<dyn Iterator<Item = KvItem> + 'a> {
        Box::new(self.scan(start, end).take(limit))
    }
}

/// In-memory [`Kv`]: the values in a hash map (a point read or an overwrite is one hash
/// probe, not a search of an ordered tree comparing key bytes at every level) and the keys
/// in a `BTreeSet` for ordered scans (touched only when a key is added or removed).
#[derive(Debug, Clone, Default)]
pub struct MemKv {
    keys: BTreeSet<Vec<u8>>,
    vals: HashMap<Vec<u8>, Vec<u8>, BuildHasherDefault<KeyHasher>>,
}

/// A fast non-cryptographic hash for [`MemKv`]'s keys (FxHash's multiply-rotate over 8-byte
/// words, then a finaliser). `MemKv` is the store of tests, the sandbox and benchmarks, not of a node: keys
/// chosen to collide cost time there and nothing else, and iteration order never depends on
/// the hash (scans go through the ordered key set).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl KeyHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(Self::K);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    /// MurmurHash3's 64-bit finaliser: every input bit reaches the low bits the table
    /// indexes by (keys that differ only in their last bytes do not pile up in one bucket).
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl MemKv {
    /// Empty store.
    pub fn new() -> MemKv {
        MemKv::default()
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// All pairs in key order (a copy, for assertions in tests).
    pub fn entries(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.keys
            .iter()
            .filter_map(|k| self.vals.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

fn range<'a, V>(
    map: &'a BTreeMap<Vec<u8>, V>,
    start: &[u8],
    end: &[u8],
) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a V)> + 'a> {
    if start >= end {
        // empty (and inverted) ranges yield nothing instead of panicking
        return Box::new(std::iter::empty());
    }
    Box::new(map.range::<[u8], _>((Bound::Included(start), Bound::Excluded(end))))
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.vals.get(key).cloned())
    }
    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), KvError> {
        f(self.vals.get(key).map(Vec::as_slice));
        Ok(())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        match self.vals.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                self.keys.insert(key.to_vec());
                self.vals.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }
    fn put_vec(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        match self.vals.get_mut(&key) {
            Some(v) => *v = value,
            None => {
                self.keys.insert(key.clone());
                self.vals.insert(key, value);
            }
        }
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), KvError> {
        if self.vals.remove(key).is_some() {
            self.keys.remove(key);
        }
        Ok(())
    }
    fn scan<'a>(&'a self, start: &[u8], end: &[u8]) -> Box<dyn Iterator<Item = KvItem> + 'a> {
        if start >= end {
            // empty (and inverted) ranges yield nothing instead of panicking
            return Box::new(std::iter::empty());
        }
        Box::new(
            self.keys
                .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .filter_map(|k| self.vals.get(k).map(|v| Ok((k.clone(), v.clone())))),
        )
    }
}

/// An overlay's buffered writes (`None` = delete), ordered by key: a sorted vector while
/// there are few (a contract call writes a handful: no tree node to allocate and free per
/// call), a `BTreeMap` once there are more than [`Writes::SMALL`] (bulk inserts stay
/// O(log n) per write).
#[derive(Debug)]
enum Writes {
    Small(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Big(BTreeMap<Vec<u8>, Option<Vec<u8>>>),
}

impl Writes {
    const SMALL: usize = 32;

    fn get(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        match self {
            Writes::Small(v) => v
                .binary_search_by(|(k, _)| k.as_slice().cmp(key))
                .ok()
                .and_then(|i| v.get(i))
                .map(|(_, w)| w),
            Writes::Big(m) => m.get(key),
        }
    }

    fn insert(&mut self, key: Vec<u8>, w: Option<Vec<u8>>) {
        match self {
            Writes::Small(v) => match v.binary_search_by(|(k, _)| k.as_slice().cmp(&key)) {
                Ok(i) => {
                    if let Some(slot) = v.get_mut(i) {
                        slot.1 = w;
                    }
                }
                Err(i) if v.len() < Self::SMALL => v.insert(i, (key, w)),
                Err(_) => {
                    let mut m: BTreeMap<_, _> = std::mem::take(v).into_iter().collect();
                    m.insert(key, w);
                    *self = Writes::Big(m);
                }
            },
            Writes::Big(m) => {
                m.insert(key, w);
            }
        }
    }

    fn remove(&mut self, key: &[u8]) {
        match self {
            Writes::Small(v) => {
                if let Ok(i) = v.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
                    v.remove(i);
                }
            }
            Writes::Big(m) => {
                m.remove(key);
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Writes::Small(v) => v.len(),
            Writes::Big(m) => m.len(),
        }
    }

    /// The writes with `start <= key < end`, in key order.
    fn range<'a>(&'a self, start: &[u8], end: &[u8]) -> OverlayIter<'a> {
        if start >= end {
            return Box::new(std::iter::empty());
        }
        match self {
            Writes::Small(v) => {
                let lo = v.partition_point(|(k, _)| k.as_slice() < start);
                let hi = v.partition_point(|(k, _)| k.as_slice() < end);
                Box::new(
                    v.get(lo..hi)
                        .unwrap_or_default()
                        .iter()
                        .map(|(k, w)| (k, w)),
                )
            }
            Writes::Big(m) => range(m, start, end),
        }
    }
}

/// Buffers writes over a read-only base. Reads see the buffered writes.
pub struct Overlay<'b> {
    base: &'b dyn Kv,
    writes: Writes,
    /// One undo log per open savepoint: each buffered write's previous entry (outer `None`:
    /// the key had none).
    undo: Vec<UndoLog>,
    /// Key and value buffers [`Kv::put`] copies into before allocating
    /// ([`apply_writes_recycle`] gives applied writes' buffers back).
    spare: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Buffers an overlay's writes may reuse: the write vector's room and spare key/value
/// buffers ([`Overlay::with_buffers`], [`Overlay::into_parts`], [`apply_writes_recycle`]).
#[derive(Debug, Default)]
pub struct OverlayBuffers {
    /// The buffered writes' vector (emptied).
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Key and value buffers.
    pub spare: Vec<(Vec<u8>, Vec<u8>)>,
}

/// At most this many spare buffer pairs, each of at most [`SPARE_BYTES`], are kept.
const SPARE_PAIRS: usize = 16;
/// Larger spare buffers are dropped.
const SPARE_BYTES: usize = 1024;

/// Previous buffered entries of the keys written since a savepoint.
type UndoLog = Vec<(Vec<u8>, Option<Option<Vec<u8>>>)>;

impl<'b> Overlay<'b> {
    /// New empty overlay.
    pub fn new(base: &'b dyn Kv) -> Overlay<'b> {
        Overlay {
            base,
            writes: Writes::Small(Vec::new()),
            undo: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// New empty overlay writing into `bufs` (see [`OverlayBuffers`]).
    pub fn with_buffers(base: &'b dyn Kv, bufs: OverlayBuffers) -> Overlay<'b> {
        let OverlayBuffers { mut writes, spare } = bufs;
        writes.clear();
        Overlay {
            base,
            writes: Writes::Small(writes),
            undo: Vec::new(),
            spare,
        }
    }

    /// The buffered writes (`None` = delete), in key order, and the spare buffers.
    pub fn into_parts(self) -> OverlayBuffers {
        let spare = self.spare;
        let writes = match self.writes {
            Writes::Small(v) => v,
            Writes::Big(m) => m.into_iter().collect(),
        };
        OverlayBuffers { writes, spare }
    }

    fn log(&mut self, key: &[u8]) {
        if let Some(log) = self.undo.last_mut() {
            log.push((key.to_vec(), self.writes.get(key).cloned()));
        }
    }
    /// The buffered writes (`None` = delete), in key order.
    pub fn into_writes(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        match self.writes {
            Writes::Small(v) => v,
            Writes::Big(m) => m.into_iter().collect(),
        }
    }
    /// Number of buffered writes.
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }
}

/// Applies buffered writes to a store.
pub fn apply_writes(
    kv: &mut dyn Kv,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Result<(), KvError> {
    for (k, v) in writes {
        match v {
            Some(v) => kv.put_vec(k, v)?,
            None => kv.delete(&k)?,
        }
    }
    Ok(())
}

/// Applies the buffered writes of `bufs` with [`Kv::put`] (the store copies them), leaving
/// the write vector empty and the written buffers in `bufs.spare` for the next overlay
/// ([`Overlay::with_buffers`]).
pub fn apply_writes_recycle(kv: &mut dyn Kv, bufs: &mut OverlayBuffers) -> Result<(), KvError> {
    for (k, v) in bufs.writes.drain(..) {
        let v = match v {
            Some(v) => {
                kv.put(&k, &v)?;
                v
            }
            None => {
                kv.delete(&k)?;
                Vec::new()
            }
        };
        if bufs.spare.len() < SPARE_PAIRS
            && k.capacity() <= SPARE_BYTES
            && v.capacity() <= SPARE_BYTES
        {
            bufs.spare.push((k, v));
        }
    }
    Ok(())
}

impl Kv for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }
    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), KvError> {
        match self.writes.get(key) {
            Some(v) => {
                f(v.as_deref());
                Ok(())
            }
            None => self.base.get_with(key, f),
        }
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.log(key);
        let (mut k, mut v) = self.spare.pop().unwrap_or_default();
        k.clear();
        k.extend_from_slice(key);
        v.clear();
        v.extend_from_slice(value);
        self.writes.insert(k, Some(v));
        Ok(())
    }
    fn put_vec(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.log(&key);
        self.writes.insert(key, Some(value));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), KvError> {
        self.log(key);
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }
    fn savepoint(&mut self) -> bool {
        self.undo.push(Vec::new());
        true
    }
    fn rollback_savepoint(&mut self) {
        if let Some(log) = self.undo.pop() {
            for (k, prev) in log.into_iter().rev() {
                match prev {
                    Some(p) => {
                        self.writes.insert(k, p);
                    }
                    None => {
                        self.writes.remove(&k);
                    }
                }
            }
        }
    }
    fn release_savepoint(&mut self) {
        if let Some(log) = self.undo.pop() {
            // an enclosing savepoint must still be able to undo these writes
            if let Some(outer) = self.undo.last_mut() {
                outer.extend(log);
            }
        }
    }
    fn scan<'a>(&'a self, start: &[u8], end: &[u8]) -> Box<dyn Iterator<Item = KvItem> + 'a> {
        Box::new(Merge {
            base: self.base.scan(start, end).peekable(),
            over: self.writes.range(start, end).peekable(),
        })
    }
    fn scan_limit<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Box<dyn Iterator<Item = KvItem> + 'a> {
        // Buffered deletions can hide at most one base pair each: with that many more base
        // pairs, at least `limit` survive, and every merged pair among the first `limit` sorts
        // at or before the last base pair read (buffered inserts after it come later).
        let deletes = self
            .writes
            .range(start, end)
            .filter(|(_, v)| v.is_none())
            .count();
        Box::new(
            Merge {
                base: self
                    .base
                    .scan_limit(start, end, limit.saturating_add(deletes))
                    .peekable(),
                over: self.writes.range(start, end).peekable(),
            }
            .take(limit),
        )
    }
}

/// Iterator over buffered overlay writes.
type OverlayIter<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

struct Merge<'a, B: Iterator<Item = KvItem>> {
    base: std::iter::Peekable<B>,
    over: std::iter::Peekable<OverlayIter<'a>>,
}

impl<B: Iterator<Item = KvItem>> Iterator for Merge<'_, B> {
    type Item = KvItem;
    fn next(&mut self) -> Option<KvItem> {
        loop {
            let take_over = match (self.base.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.base.next(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((bk, _))), Some((ok, _))) => {
                    if bk == *ok {
                        // overlay shadows base
                        self.base.next();
                        true
                    } else {
                        *ok < bk
                    }
                }
            };
            if take_over {
                match self.over.next() {
                    Some((k, Some(v))) => return Some(Ok((k.clone(), v.clone()))),
                    Some((_, None)) => continue,
                    None => return None,
                }
            } else {
                return self.base.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_write_what_was_put() {
        // call after call, overlays reuse the buffers the previous one applied: longer and
        // shorter keys and values than the buffers held, deletes, savepoints
        let mut m = MemKv::new();
        let mut model = BTreeMap::new();
        let mut bufs = OverlayBuffers::default();
        for round in 0..6u8 {
            let mut o = Overlay::with_buffers(&m, std::mem::take(&mut bufs));
            let mut writes = Vec::new();
            for i in 0..(round as usize * 3 + 1) {
                let k = vec![b'k'; 1 + (i * 7 + round as usize) % 5];
                let v = vec![round; (i * 13 + round as usize) % 40];
                if (i + round as usize) % 4 == 3 {
                    o.delete(&k).unwrap();
                    writes.push((k, None));
                } else {
                    o.put(&k, &v).unwrap();
                    writes.push((k, Some(v)));
                }
                if i == 2 {
                    assert!(o.savepoint());
                    o.put(b"gone", b"rolled back").unwrap();
                    o.rollback_savepoint();
                }
            }
            bufs = o.into_parts();
            apply_writes_recycle(&mut m, &mut bufs).unwrap();
            assert!(bufs.writes.is_empty());
            for (k, v) in writes {
                match v {
                    Some(v) => model.insert(k, v),
                    None => model.remove(&k),
                };
            }
            assert_eq!(m.entries(), model, "round {round}");
        }
        assert!(!bufs.spare.is_empty());
    }

    #[test]
    fn overlay_merges_and_shadows() {
        let mut m = MemKv::new();
        for k in [b"a", b"c", b"e"] {
            m.put(k, b"base").unwrap();
        }
        let mut o = Overlay::new(&m);
        o.put(b"b", b"new").unwrap();
        o.delete(b"c").unwrap();
        o.put(b"e", b"upd").unwrap();
        let got: Vec<_> = o.scan(b"a", b"z").map(|r| r.unwrap()).collect();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"base".to_vec()),
                (b"b".to_vec(), b"new".to_vec()),
                (b"e".to_vec(), b"upd".to_vec())
            ]
        );
        assert_eq!(o.get(b"c").unwrap(), None);
        let w = o.into_writes();
        apply_writes(&mut m, w).unwrap();
        assert_eq!(m.get(b"e").unwrap(), Some(b"upd".to_vec()));
        assert_eq!(m.len(), 3);
        assert_eq!(m.scan(b"z", b"a").count(), 0);
    }

    /// The overlay against a model (a map per open savepoint) through random writes, deletes,
    /// savepoints, rollbacks and releases, across the switch from the small sorted vector to
    /// the B-tree: every read, scan and limited scan agrees, and so do the writes it hands on.
    #[test]
    fn overlay_matches_a_model_small_and_big() {
        let mut base = MemKv::new();
        for i in (0u8..120).step_by(3) {
            base.put(&[b'k', i], &[i]).unwrap();
        }
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..6 {
            let mut o = Overlay::new(&base);
            // model: the visible store, one snapshot per open savepoint
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = base.entries();
            let mut saved: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = Vec::new();
            let keys = if round % 2 == 0 { 20 } else { 120 };
            for step in 0..400u32 {
                let k = vec![b'k', u8::try_from(next(keys)).unwrap()];
                match next(10) {
                    0..=4 => {
                        let v = step.to_le_bytes().to_vec();
                        o.put(&k, &v).unwrap();
                        model.insert(k.clone(), v);
                    }
                    5 | 6 => {
                        o.delete(&k).unwrap();
                        model.remove(&k);
                    }
                    7 => {
                        assert!(o.savepoint());
                        saved.push(model.clone());
                    }
                    8 => {
                        if let Some(m) = saved.pop() {
                            o.rollback_savepoint();
                            model = m;
                        }
                    }
                    _ => {
                        if saved.pop().is_some() {
                            o.release_savepoint();
                        }
                    }
                }
                assert_eq!(o.get(&k).unwrap(), model.get(&k).cloned(), "step {step}");
                if step % 50 == 0 {
                    let all: BTreeMap<_, _> = o.scan(b"k", b"l").map(|r| r.unwrap()).collect();
                    assert_eq!(all, model, "round {round} step {step}");
                    let lim: Vec<_> = o.scan_limit(b"k", b"l", 7).map(|r| r.unwrap()).collect();
                    let want: Vec<_> = model
                        .iter()
                        .take(7)
                        .map(|(a, b)| (a.clone(), b.clone()))
                        .collect();
                    assert_eq!(lim, want);
                }
            }
            let writes = o.into_writes();
            assert!(
                writes.windows(2).all(|w| w[0].0 < w[1].0),
                "writes in key order"
            );
            let mut after = base.clone();
            apply_writes(&mut after, writes).unwrap();
            assert_eq!(after.entries(), model, "round {round}");
        }
    }

    /// The hash map and the ordered key set stay in step through overwrites, deletes and
    /// re-inserts: scans come out in key order with the latest values.
    #[test]
    fn mem_kv_keeps_order_through_overwrites_and_deletes() {
        let mut m = MemKv::new();
        for i in (0u32..200).rev() {
            m.put(&i.to_be_bytes(), &[1]).unwrap();
        }
        for i in (0u32..200).step_by(3) {
            m.delete(&i.to_be_bytes()).unwrap();
        }
        for i in (0u32..200).step_by(6) {
            m.put_vec(i.to_be_bytes().to_vec(), vec![2]).unwrap();
        }
        m.put(&5u32.to_be_bytes(), &[3]).unwrap();
        m.delete(b"absent").unwrap();
        let got: Vec<(u32, u8)> = m
            .scan(&[0; 4], &[0xff; 4])
            .map(|r| {
                let (k, v) = r.unwrap();
                (u32::from_be_bytes(k.try_into().unwrap()), v[0])
            })
            .collect();
        let want: Vec<(u32, u8)> = (0u32..200)
            .filter(|i| i % 3 != 0 || i % 6 == 0)
            .map(|i| {
                (
                    i,
                    if i == 5 {
                        3
                    } else if i % 6 == 0 {
                        2
                    } else {
                        1
                    },
                )
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(m.len(), want.len());
        assert_eq!(m.entries().len(), want.len());
        assert_eq!(m.get(&6u32.to_be_bytes()).unwrap(), Some(vec![2]));
        assert_eq!(m.get(&3u32.to_be_bytes()).unwrap(), None);
    }
}
