//! The canonical Deterministic Transaction Tree of a block, from its transactions' access
//! sets ([`crate::access`]).
//!
//! Transaction `j` conflicts with an earlier `i` on a key when `i` writes what `j` reads or
//! writes, or reads what `j` writes (a key inside a range `i` scanned counts as read by
//! `i`). The canonical DTT keeps, per key, only the immediate conflicting predecessors:
//! - for a key `j` reads (a point read, or any key written so far inside a range `j`
//!   scanned): the last earlier transaction that wrote it;
//! - for a key `j` writes: the last earlier transaction that wrote it, and every earlier
//!   transaction that read it (point or range) after that write.
//!
//! Every other conflicting predecessor is an ancestor through these (writers of a key form
//! a chain; a reader before the last write is a parent of that writer), so running each
//! transaction after its parents orders every conflict as the block does. The parents are
//! listed nearest first; more than [`MAX_DTT_PARENTS`] make the transaction a barrier (it
//! waits for everything before it). A block's DTT is valid exactly when it equals this one:
//! the function is pure, so every node computes the same.

use crate::access::{AccessRef, AccessSet};
use aergo_types::block_ext::{Dtt, DttEntry, DTT_BARRIER, MAX_DTT_PARENTS};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// The transactions that read a key since its last write (most keys have one or two).
type Readers = smallvec::SmallVec<[u32; 2]>;

#[derive(Default)]
struct KeyState {
    /// The last transaction that wrote the key.
    writer: Option<u32>,
    /// Transactions that read the key (point reads) since that write.
    readers: Readers,
}

/// A range scanned, and the transactions that scanned it, in order.
struct Scan {
    start: Vec<u8>,
    end: Vec<u8>,
    txs: Vec<u32>,
}

/// The longest common prefix of `a` and `b`. Every key inside `[a, b)` starts with it: the
/// keys with a given prefix are one interval of the key order, and both bounds lie in the
/// interval of their common prefix.
fn common_prefix<'k>(a: &'k [u8], b: &[u8]) -> &'k [u8] {
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    a.get(..n).unwrap_or(a)
}

/// Keys to their state. foldhash, seeded at random per map: fast on the short keys of state,
/// and a client cannot choose keys that collide without knowing the seed (a collision would
/// only cost time: the map compares whole keys).
type Keys<K> = HashMap<K, KeyState, foldhash::fast::RandomState>;

/// How a [`Builder`] holds the keys it saw: copies (`Vec<u8>`, the default: the sets may go
/// before the builder does), or borrowed from sets that outlive it (`&[u8]`: validation keeps
/// every set until its check ends, and a copy per key was a tenth of the check's time).
pub trait Key<'s>: Ord + Clone + std::hash::Hash + std::borrow::Borrow<[u8]> {
    /// The key held for `k`.
    fn hold(k: &'s [u8]) -> Self;
}

impl Key<'_> for Vec<u8> {
    fn hold(k: &[u8]) -> Self {
        k.to_vec()
    }
}

impl<'s> Key<'s> for &'s [u8] {
    fn hold(k: &'s [u8]) -> Self {
        k
    }
}

/// The canonical DTT built one transaction at a time, in block order (assembly sizes each
/// entry as it includes a transaction; [`canonical`] runs it over a whole block).
pub struct Builder<K = Vec<u8>> {
    /// Every key read or written so far.
    keys: Keys<K>,
    /// Written keys in key order with their last writer, kept once a range was scanned
    /// (built then from `keys`).
    written: Option<BTreeMap<K, u32>>,
    /// Distinct ranges scanned so far, by the common prefix of their bounds: a written key
    /// looks only at the ranges whose prefix it starts with (one lookup per distinct prefix
    /// length), not at every range that starts before it — a block calling 100 contracts
    /// scans 100 ranges, and each write walked most of them.
    scans: HashMap<Vec<u8>, Vec<Scan>, foldhash::fast::RandomState>,
    /// The distinct lengths of those prefixes.
    prefix_lens: std::collections::BTreeSet<usize>,
    next: u32,
    parents: Vec<u32>,
}

impl<K> Default for Builder<K> {
    fn default() -> Self {
        Builder {
            keys: Keys::default(),
            written: None,
            scans: HashMap::default(),
            prefix_lens: std::collections::BTreeSet::new(),
            next: 0,
            parents: Vec::new(),
        }
    }
}

impl<K> Builder<K> {
    /// A builder with room for `txs` transactions' keys (a transfer touches two), so the
    /// map does not grow key by key.
    pub fn for_block(txs: usize) -> Self {
        Builder {
            keys: Keys::with_capacity_and_hasher(txs.saturating_mul(2), Default::default()),
            ..Builder::default()
        }
    }

    /// The entry of the next transaction, which accessed `s`.
    pub fn push<'s>(&mut self, s: &'s AccessSet) -> DttEntry
    where
        K: Key<'s>,
    {
        self.push_ref(s.view())
    }

    /// [`Builder::push`] of a borrowed set (one of an [`crate::access::AccessBatch`]).
    pub fn push_ref<'s>(&mut self, s: AccessRef<'s>) -> DttEntry
    where
        K: Key<'s>,
    {
        self.push_parts(s.reads(), s.ranges(), s.writes())
    }

    /// The entry of the next transaction, which read the point keys `reads` and wrote
    /// `writes` (each without duplicates) and scanned no range: a set known without being
    /// built (a native transfer's, `crate::exec::TransferKeys`).
    pub fn push_keys<'s>(&mut self, reads: &[&'s [u8]], writes: &[&'s [u8]]) -> DttEntry
    where
        K: Key<'s>,
    {
        self.push_parts(
            reads.iter().copied(),
            std::iter::empty(),
            writes.iter().copied(),
        )
    }

    /// The entry of the next transaction, of these reads (without duplicates), ranges and
    /// writes (without duplicates).
    fn push_parts<'s>(
        &mut self,
        reads: impl Iterator<Item = &'s [u8]>,
        ranges: impl Iterator<Item = (&'s [u8], &'s [u8])> + Clone,
        writes: impl Iterator<Item = &'s [u8]>,
    ) -> DttEntry
    where
        K: Key<'s>,
    {
        let j = self.next;
        self.next = self.next.saturating_add(1);
        let parents = &mut self.parents;
        parents.clear();
        // One lookup per key: its parent, then `j` noted as a reader.
        for k in reads {
            match self.keys.get_mut(k) {
                Some(st) => {
                    parents.extend(st.writer);
                    st.readers.push(j);
                }
                None => {
                    let mut readers = Readers::new();
                    readers.push(j);
                    self.keys.insert(
                        K::hold(k),
                        KeyState {
                            writer: None,
                            readers,
                        },
                    );
                }
            }
        }
        if ranges.clone().next().is_some() && self.written.is_none() {
            self.written = Some(
                self.keys
                    .iter()
                    .filter_map(|(k, st)| st.writer.map(|w| (k.clone(), w)))
                    .collect(),
            );
        }
        if let Some(written) = &self.written {
            for (a, b) in ranges.clone() {
                if a < b {
                    let range = written.range::<[u8], _>((Bound::Included(a), Bound::Excluded(b)));
                    parents.extend(range.map(|(_, w)| *w));
                }
            }
        }
        for key in writes {
            // The last writer and the readers since (not `j`, noted just above).
            let writer = match self.keys.get(key) {
                Some(st) => {
                    parents.extend(st.writer);
                    parents.extend(st.readers.iter().copied().filter(|r| *r != j));
                    st.writer
                }
                None => None,
            };
            // Range readers since the last write (this transaction's ranges are added
            // below).
            for n in &self.prefix_lens {
                let Some(scans) = key.get(..*n).and_then(|p| self.scans.get(p)) else {
                    continue;
                };
                for sc in scans {
                    if sc.start.as_slice() <= key && key < sc.end.as_slice() {
                        let after = writer.map_or(0, |w| sc.txs.partition_point(|i| *i <= w));
                        parents.extend(sc.txs.iter().skip(after).copied());
                    }
                }
            }
            if let Some(written) = &mut self.written {
                match written.get_mut(key) {
                    Some(w) => *w = j,
                    None => {
                        written.insert(K::hold(key), j);
                    }
                }
            }
            // Now `j` is the writer.
            match self.keys.get_mut(key) {
                Some(st) => {
                    st.writer = Some(j);
                    st.readers.clear();
                }
                None => {
                    self.keys.insert(
                        K::hold(key),
                        KeyState {
                            writer: Some(j),
                            readers: Readers::new(),
                        },
                    );
                }
            }
        }
        for (a, b) in ranges {
            if a < b {
                let p = common_prefix(a, b);
                let scans = match self.scans.get_mut(p) {
                    Some(e) => e,
                    None => {
                        self.prefix_lens.insert(p.len());
                        self.scans.entry(p.to_vec()).or_default()
                    }
                };
                match scans
                    .iter_mut()
                    .find(|sc| sc.start.as_slice() == a && sc.end.as_slice() == b)
                {
                    Some(sc) => sc.txs.push(j),
                    None => scans.push(Scan {
                        start: a.to_vec(),
                        end: b.to_vec(),
                        txs: vec![j],
                    }),
                }
            }
        }
        parents.sort_unstable_by(|x, y| y.cmp(x));
        parents.dedup();
        if parents.len() > MAX_DTT_PARENTS {
            DttEntry::Barrier
        } else {
            DttEntry::Parents(parents.clone())
        }
    }
}

/// Injected fault (tests of validation only): the producer attaches forged DTTs.
static FORGE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this process's producer attach a DTT that is not the canonical one (an injected
/// fault, for tests that every other node rejects such blocks; `aergo-node` sets it from
/// `AERGO_FAULT_FORGE_DTT=1` and warns loudly).
pub fn set_fault_forge(on: bool) {
    FORGE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Applies the injected fault to `dtt` when it is on: the first dependency is removed; a
/// DTT without one gets a false one (transaction 1 waiting for 0), or a barrier for a
/// single transaction. Each is a DTT other than the canonical one.
pub(crate) fn forge_if_faulty(dtt: &mut Dtt) {
    if !FORGE.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Some(e) = dtt
        .entries
        .iter_mut()
        .find(|e| matches!(e, DttEntry::Parents(p) if !p.is_empty()))
    {
        *e = DttEntry::Parents(Vec::new());
    } else if let Some(e) = dtt.entries.get_mut(1) {
        *e = DttEntry::Parents(vec![0]);
    } else if let Some(e) = dtt.entries.get_mut(0) {
        *e = DttEntry::Barrier;
    }
    tracing::warn!("INJECTED FAULT: this block carries a forged DTT");
}

/// The canonical DTT of transactions with these access sets, in block order.
pub fn canonical(sets: &[AccessSet]) -> Dtt {
    let mut b = Builder::<&[u8]>::for_block(sets.len());
    Dtt {
        entries: sets.iter().map(|s| b.push(s)).collect(),
    }
}

/// Bytes of a varint.
fn varint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Bytes `e`, the entry of transaction `j`, takes in the DTT's encoding.
pub fn entry_len(j: u32, e: &DttEntry) -> usize {
    match e {
        DttEntry::Barrier => varint_len(DTT_BARRIER),
        DttEntry::Parents(ps) => {
            let mut prev = j;
            let mut n = varint_len(u32::try_from(ps.len()).unwrap_or(u32::MAX));
            for p in ps {
                n += varint_len(prev.saturating_sub(*p));
                prev = *p;
            }
            n
        }
    }
}

/// The most bytes the entry of transaction `j` can take: [`MAX_DTT_PARENTS`] deltas of at
/// most `j` each (a barrier is shorter).
pub fn max_entry_len(j: u32) -> usize {
    1 + MAX_DTT_PARENTS * varint_len(j)
}

/// Bytes a block's DTT adds besides its entries: the entry count (4), the body section's
/// count, tag and length (6) and the header's `dtt_root` field with its tag and length
/// (37), plus the header extension's count byte (1).
pub const DTT_OVERHEAD: usize = 4 + 6 + 37 + 1;

/// Why `given` cannot be the DTT of a block with `n` transactions (`None`: it can): one
/// entry per transaction, each parent an earlier transaction, nearest first (a cycle or a
/// forward reference is refused here, before anything runs along it).
pub fn malformed(given: &Dtt, n: usize) -> Option<String> {
    shape(given, n).err()
}

/// [`width`] of `given`, or why it cannot be the DTT of a block with `n` transactions
/// ([`malformed`]), in one pass over the entries (validation needs both).
pub fn shape(given: &Dtt, n: usize) -> Result<f64, String> {
    if given.entries.len() != n {
        return Err(format!(
            "the DTT has {} entries for {n} transactions",
            given.entries.len()
        ));
    }
    match walk(given) {
        (true, width) => Ok(width),
        (false, _) => Err(
            "the DTT lists a parent that is not an earlier transaction (a cycle or a forward reference)"
                .into(),
        ),
    }
}

/// Why `given` is not the canonical DTT `want` of a block with `n` transactions (`None`:
/// they are equal), naming the first transaction whose entry differs.
pub fn mismatch(given: &Dtt, want: &Dtt, n: usize) -> Option<String> {
    if let Some(why) = malformed(given, n) {
        return Some(why);
    }
    let (j, (g, w)) = given
        .entries
        .iter()
        .zip(&want.entries)
        .enumerate()
        .find(|(_, (g, w))| g != w)?;
    Some(entry_mismatch(j, g, w))
}

/// Why entry `j` of a block's DTT, `given`, is not the canonical `want`.
pub fn entry_mismatch(j: usize, given: &DttEntry, want: &DttEntry) -> String {
    let show = |e: &DttEntry| match e {
        DttEntry::Barrier => "a barrier".to_string(),
        DttEntry::Parents(p) if p.is_empty() => "no parents".to_string(),
        DttEntry::Parents(p) => format!("parents {p:?}"),
    };
    format!(
        "the DTT is not the canonical one: transaction {j} has {} in the block, its reads and writes give {}",
        show(given),
        show(want)
    )
}

/// The average number of transactions runnable at once along `dtt`: transactions divided
/// by the length of the longest chain of parents (a barrier is on every chain before it).
/// 0 for an empty block.
pub fn width(dtt: &Dtt) -> f64 {
    walk(dtt).1
}

/// Whether every entry of `dtt` is well formed, and its [`width`] (parents out of range
/// count as depth 0).
// Counts are bounded by a block's transaction count.
#[allow(clippy::cast_precision_loss)]
fn walk(dtt: &Dtt) -> (bool, f64) {
    let mut depth: Vec<usize> = Vec::with_capacity(dtt.entries.len());
    let mut deepest = 0usize;
    let mut formed = true;
    for (j, e) in dtt.entries.iter().enumerate() {
        formed &= e.well_formed_at(j);
        let d = match e {
            DttEntry::Barrier => deepest + 1,
            DttEntry::Parents(ps) => {
                ps.iter()
                    .filter_map(|p| depth.get(*p as usize))
                    .max()
                    .copied()
                    .unwrap_or(0)
                    + 1
            }
        };
        deepest = deepest.max(d);
        depth.push(d);
    }
    let width = if deepest == 0 {
        0.0
    } else {
        dtt.entries.len() as f64 / deepest as f64
    };
    (formed, width)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small test indices
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(reads: &[&str], ranges: &[(&str, &str)], writes: &[&str]) -> AccessSet {
        let v = |xs: &[&str]| {
            let mut v: Vec<Vec<u8>> = xs.iter().map(|x| x.as_bytes().to_vec()).collect();
            v.sort();
            v.dedup();
            v
        };
        AccessSet::new(
            v(reads),
            ranges
                .iter()
                .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
                .collect(),
            v(writes),
        )
    }

    fn p(xs: &[u32]) -> DttEntry {
        DttEntry::Parents(xs.to_vec())
    }

    #[test]
    fn conflicts_give_immediate_parents() {
        let sets = vec![
            set(&["a"], &[], &["a"]),         // 0
            set(&["b"], &[], &["b"]),         // 1: independent
            set(&["a"], &[], &[]),            // 2: reads 0's write
            set(&["a"], &[], &[]),            // 3: reads 0's write
            set(&[], &[], &["a"]),            // 4: writes after 0 and readers 2, 3
            set(&[], &[("a", "c")], &[]),     // 5: scans a..c: last writers 4 (a), 1 (b)
            set(&[], &[], &["bb"]),           // 6: writes into 5's range
            set(&["x"], &[("y", "z")], &[]),  // 7: nothing written there
            set(&[], &[], &["a", "b", "bb"]), // 8
        ];
        let d = canonical(&sets);
        assert_eq!(
            d.entries,
            vec![
                p(&[]),
                p(&[]),
                p(&[0]),
                p(&[0]),
                p(&[3, 2, 0]),
                p(&[4, 1]),
                p(&[5]),
                p(&[]),
                p(&[6, 5, 4, 1]),
            ]
        );
        assert!(d.well_formed());
        assert_eq!(mismatch(&d, &d, sets.len()), None);
    }

    #[test]
    fn more_than_sixteen_parents_make_a_barrier() {
        let mut sets: Vec<AccessSet> = (0..17)
            .map(|i| set(&[&format!("k{i}")], &[], &[]))
            .collect();
        let all: Vec<String> = (0..17).map(|i| format!("k{i}")).collect();
        let all: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        sets.push(set(&[], &[], &all));
        let d = canonical(&sets);
        assert_eq!(d.entries.last(), Some(&DttEntry::Barrier));
        sets.pop();
        sets.push(set(&[], &[], &all[..16]));
        let d = canonical(&sets);
        assert_eq!(
            d.entries.last(),
            Some(&p(&(0..16).rev().collect::<Vec<u32>>()))
        );
    }

    #[test]
    fn mismatches_are_named() {
        let sets = vec![set(&[], &[], &["a"]), set(&["a"], &[], &[])];
        let d = canonical(&sets);
        let removed = Dtt {
            entries: vec![p(&[]), p(&[])],
        };
        assert!(mismatch(&removed, &d, 2).unwrap().contains("transaction 1"));
        let barrier = Dtt {
            entries: vec![p(&[]), DttEntry::Barrier],
        };
        assert!(mismatch(&barrier, &d, 2).unwrap().contains("a barrier"));
        let forward = Dtt {
            entries: vec![p(&[1]), p(&[0])],
        };
        assert!(mismatch(&forward, &d, 2)
            .unwrap()
            .contains("not an earlier"));
        assert!(mismatch(&d, &d, 3).unwrap().contains("2 entries for 3"));
    }

    #[test]
    fn entry_lengths_match_the_encoding() {
        let d = Dtt {
            entries: vec![p(&[]), p(&[0]), DttEntry::Barrier, p(&[2, 1, 0])],
        };
        let body: usize = d
            .entries
            .iter()
            .enumerate()
            .map(|(j, e)| entry_len(j as u32, e))
            .sum();
        assert_eq!(d.encode().len(), 4 + body);
        let big = Dtt {
            entries: (0..300u32)
                .map(|j| p(&(1..=j.min(16)).map(|k| j - k).collect::<Vec<_>>()))
                .collect(),
        };
        let body: usize = big
            .entries
            .iter()
            .enumerate()
            .map(|(j, e)| entry_len(j as u32, e))
            .sum();
        assert_eq!(big.encode().len(), 4 + body);
        for (j, e) in big.entries.iter().enumerate() {
            assert!(entry_len(j as u32, e) <= max_entry_len(j as u32));
        }
    }

    #[test]
    fn width_is_transactions_over_the_longest_chain() {
        assert_eq!(width(&Dtt::default()), 0.0);
        let d = Dtt {
            entries: vec![p(&[]), p(&[]), p(&[0]), p(&[]), DttEntry::Barrier, p(&[])],
        };
        // Depths 1, 1, 2, 1, 3, 1: 6 transactions over 3 levels.
        assert_eq!(width(&d), 2.0);
    }

    /// Whether `i` is an ancestor of `j` (or `j` itself) along `d`.
    fn reaches(d: &Dtt, j: usize, i: usize) -> bool {
        let mut stack = vec![j];
        let mut seen = vec![false; d.entries.len()];
        while let Some(x) = stack.pop() {
            if x == i {
                return true;
            }
            if x < i || std::mem::replace(&mut seen[x], true) {
                continue;
            }
            match &d.entries[x] {
                DttEntry::Barrier => stack.extend(0..x),
                DttEntry::Parents(ps) => stack.extend(ps.iter().map(|p| *p as usize)),
            }
        }
        false
    }

    fn conflict(a: &AccessSet, b: &AccessSet) -> bool {
        a.writes()
            .any(|k| b.reads_key(k) || b.writes().any(|x| x == k))
            || b.writes().any(|k| a.reads_key(k))
    }

    fn arb_set() -> impl Strategy<Value = AccessSet> {
        // Keys that share prefixes of every length, so ranges fall in different buckets of
        // the builder's scans (by their bounds' common prefix), nest and overlap.
        let key = prop::sample::select(vec![
            "", "a", "ab", "abc", "abd", "ac", "b", "ba", "bab", "bb", "c", "d",
        ]);
        (
            prop::collection::vec(key.clone(), 0..3),
            prop::collection::vec((key.clone(), key.clone()), 0..2),
            prop::collection::vec(key, 0..3),
        )
            .prop_map(|(r, g, w)| {
                let g: Vec<(&str, &str)> = g;
                set(&r, &g, &w)
            })
    }

    /// Whether `s` read `k`, by a point read or inside a range it scanned.
    fn reads(s: &AccessSet, k: &[u8]) -> bool {
        s.reads().any(|r| r == k) || s.ranges().any(|(a, b)| a <= k && k < b)
    }

    /// The canonical DTT straight from its definition (the module doc), quadratic.
    fn by_definition(sets: &[AccessSet]) -> Dtt {
        let last_writer =
            |j: usize, k: &[u8]| (0..j).rev().find(|i| sets[*i].writes().any(|w| w == k));
        let entries = (0..sets.len())
            .map(|j| {
                let s = &sets[j];
                let mut ps: Vec<u32> = Vec::new();
                let mut read_keys: Vec<&[u8]> = s.reads().collect();
                for (a, b) in s.ranges() {
                    for earlier in &sets[..j] {
                        read_keys.extend(earlier.writes().filter(|k| a <= *k && *k < b));
                    }
                }
                for k in read_keys {
                    ps.extend(last_writer(j, k).map(|i| i as u32));
                }
                for k in s.writes() {
                    let lw = last_writer(j, k);
                    ps.extend(lw.map(|i| i as u32));
                    let from = lw.map_or(0, |w| w + 1);
                    ps.extend((from..j).filter(|i| reads(&sets[*i], k)).map(|i| i as u32));
                }
                ps.sort_unstable_by(|x, y| y.cmp(x));
                ps.dedup();
                if ps.len() > MAX_DTT_PARENTS {
                    DttEntry::Barrier
                } else {
                    DttEntry::Parents(ps)
                }
            })
            .collect();
        Dtt { entries }
    }

    proptest! {
        /// The builder computes the DTT of the definition, over ranges that nest, overlap
        /// and share prefixes.
        #[test]
        fn the_builder_follows_the_definition(sets in prop::collection::vec(arb_set(), 0..24)) {
            prop_assert_eq!(canonical(&sets), by_definition(&sets));
            let mut owned = Builder::<Vec<u8>>::default();
            let entries: Vec<DttEntry> = sets.iter().map(|s| owned.push(s)).collect();
            prop_assert_eq!(Dtt { entries }, by_definition(&sets));
        }

        /// Every conflicting earlier transaction is an ancestor; every parent conflicts;
        /// the DTT is well formed and survives its codec.
        #[test]
        fn conflicts_are_ordered_and_parents_are_real(sets in prop::collection::vec(arb_set(), 0..24)) {
            let d = canonical(&sets);
            prop_assert!(d.well_formed());
            prop_assert_eq!(d.entries.len(), sets.len());
            prop_assert_eq!(Dtt::decode(&d.encode()).unwrap(), d.clone());
            for j in 0..sets.len() {
                for i in 0..j {
                    if conflict(&sets[i], &sets[j]) {
                        prop_assert!(reaches(&d, j, i), "{} must wait for {}", j, i);
                    }
                }
                if let DttEntry::Parents(ps) = &d.entries[j] {
                    for p in ps {
                        prop_assert!(conflict(&sets[*p as usize], &sets[j]));
                    }
                }
            }
        }
    }
}
