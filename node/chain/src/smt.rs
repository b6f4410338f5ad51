//! The sparse Merkle tree over the whole state: a binary trie on 256-bit key hashes where a
//! subtree holding a single entry is replaced by that leaf (so depth grows with log2 of the
//! number of entries, not 256) and an empty subtree hashes to 32 zero bytes.
//!
//! - leaf hash     = BLAKE3(0x00 ‖ key_hash ‖ value_hash)
//! - internal hash = BLAKE3(0x01 ‖ left ‖ right)
//! - empty         = 0³²
//!
//! The shape depends only on the set of (key, value) pairs, never on insertion order, so every
//! node computes the same root. Nodes are stored by hash and never rewritten: every past root
//! stays readable and provable. A proof for a key is the list of sibling hashes from the root
//! down to where the key's path ends, plus the leaf found there (the key's own leaf, another
//! key's leaf — proving absence — or nothing).

use crate::error::ChainError;
use aergo_types::Hash;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A tree node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// One entry.
    Leaf {
        /// BLAKE3 of the state key.
        key: Hash,
        /// BLAKE3 of the value.
        value: Hash,
    },
    /// Two children (either may be empty, not both).
    Internal {
        /// Left child (bit 0).
        left: Hash,
        /// Right child (bit 1).
        right: Hash,
    },
}

impl Node {
    /// The node's hash.
    pub fn hash(&self) -> Hash {
        match self {
            Node::Leaf { key, value } => leaf_hash(key, value),
            Node::Internal { left, right } => internal_hash(left, right),
        }
    }
    /// 65-byte encoding.
    pub fn encode(&self) -> [u8; 65] {
        let mut b = [0u8; 65];
        let (t, x, y) = match self {
            Node::Leaf { key, value } => (0, key, value),
            Node::Internal { left, right } => (1, left, right),
        };
        b[0] = t;
        b[1..33].copy_from_slice(&x.0);
        b[33..].copy_from_slice(&y.0);
        b
    }
    /// Strict decoding.
    pub fn decode(b: &[u8]) -> Result<Self, ChainError> {
        if b.len() != 65 {
            return Err(ChainError::Corrupt(format!(
                "SMT node of {} bytes",
                b.len()
            )));
        }
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(&b[1..33]);
        y.copy_from_slice(&b[33..]);
        match b[0] {
            0 => Ok(Node::Leaf {
                key: Hash(x),
                value: Hash(y),
            }),
            1 => Ok(Node::Internal {
                left: Hash(x),
                right: Hash(y),
            }),
            t => Err(ChainError::Corrupt(format!("SMT node tag {t}"))),
        }
    }
}

/// Leaf hash.
pub fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    Hash::of_parts(&[&[0u8], &key.0, &value.0])
}

/// Internal node hash.
pub fn internal_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(&[&[1u8], &left.0, &right.0])
}

/// Bit `depth` of `key` (most significant first).
pub fn bit(key: &Hash, depth: usize) -> bool {
    let byte = key.0.get(depth / 8).copied().unwrap_or(0);
    (byte >> (7 - (depth % 8))) & 1 == 1
}

/// Where nodes are read from.
pub trait NodeSource {
    /// The node with this hash.
    fn node(&self, h: &Hash) -> Result<Option<Node>, ChainError>;

    /// The nodes with these hashes, in order ([`NodeSource::node`] of each). A source that
    /// can look them up together should (one lock, independent lookups the CPU overlaps).
    fn nodes(&self, hs: &[Hash]) -> Result<Vec<Option<Node>>, ChainError> {
        hs.iter().map(|h| self.node(h)).collect()
    }
}

/// Nodes by hash. foldhash, seeded at random per map: node hashes are BLAKE3 outputs of
/// contents clients partly choose, so a fixed hasher would let them grind for keys that
/// collide; std's SipHash cost a tenth of a block's state-root update.
pub type NodeMap = HashMap<Hash, Node, foldhash::fast::RandomState>;

/// An in-memory node store (tests, and the pending nodes of an update).
#[derive(Default)]
pub struct MemNodes(pub NodeMap);

impl NodeSource for MemNodes {
    fn node(&self, h: &Hash) -> Result<Option<Node>, ChainError> {
        Ok(self.0.get(h).copied())
    }
}

/// A node the update reaches ([`Updater::update`]).
enum Step {
    /// Its new hash (rebuilt from its leaves; before the way up, a placeholder).
    Done(Hash),
    /// An internal node: its new hash joins its children's.
    Split {
        /// Bit 0.
        left: Child,
        /// Bit 1.
        right: Child,
    },
}

/// A child of a [`Step::Split`].
enum Child {
    /// No update reaches it: its hash stays.
    Same(Hash),
    /// The step at this index.
    Step(usize),
}

/// The leaves of a subtree that held at most one leaf (`existing`) once the sorted, unique
/// `ups` under it applied: sorted, deletions left out, the existing leaf kept unless an
/// update names its key.
fn leaves_after(existing: Option<(Hash, Hash)>, ups: &[(Hash, Option<Hash>)]) -> Vec<(Hash, Hash)> {
    let mut leaves: Vec<(Hash, Hash)> = Vec::with_capacity(ups.len() + 1);
    leaves.extend(ups.iter().filter_map(|(k, v)| v.map(|v| (*k, v))));
    if let Some((key, value)) = existing {
        if !ups.iter().any(|(k, _)| *k == key) {
            let at = leaves.partition_point(|(k, _)| *k < key);
            leaves.insert(at, (key, value));
        }
    }
    leaves
}

/// A batch update: reads through `src`, collects new nodes in `new_nodes`.
pub struct Updater<'a> {
    src: &'a dyn NodeSource,
    /// Nodes created by the update (to persist).
    pub new_nodes: NodeMap,
}

impl<'a> Updater<'a> {
    /// An updater reading existing nodes from `src`.
    pub fn new(src: &'a dyn NodeSource) -> Self {
        Self {
            src,
            new_nodes: NodeMap::default(),
        }
    }

    fn load(&self, h: &Hash) -> Result<Option<Node>, ChainError> {
        if *h == Hash::ZERO {
            return Ok(None);
        }
        if let Some(n) = self.new_nodes.get(h) {
            return Ok(Some(*n));
        }
        match self.src.node(h)? {
            Some(n) => Ok(Some(n)),
            None => Err(ChainError::Corrupt(format!("missing SMT node {h}"))),
        }
    }

    fn put(&mut self, n: Node) -> Hash {
        let h = n.hash();
        self.new_nodes.insert(h, n);
        h
    }

    /// Applies `updates` (key hash → Some(value hash) to set, None to delete) to the tree with
    /// root `root`; returns the new root. Updates need not be sorted; duplicates: last wins.
    ///
    /// The tree is walked level by level, not depth first: every node a level needs is looked
    /// up in one batch ([`NodeSource::nodes`]). A block's update makes tens of thousands of
    /// lookups into a node cache far larger than the CPU's caches; depth first, each waited
    /// for the one before it. The result is the recursive definition's: a node the updates
    /// do not reach keeps its hash, an empty slot or a leaf they reach is rebuilt from its
    /// leaves, and an internal node joins its children's results (a lone leaf moves up),
    /// children before parents.
    pub fn update(
        &mut self,
        root: Hash,
        updates: &[(Hash, Option<Hash>)],
    ) -> Result<Hash, ChainError> {
        // Sorted by key, the last update of a key kept (a stable sort keeps their order).
        let mut ups: Vec<(Hash, Option<Hash>)> = updates.to_vec();
        ups.sort_by_key(|u| u.0);
        let mut unique: Vec<(Hash, Option<Hash>)> = Vec::with_capacity(ups.len());
        for u in ups {
            match unique.last_mut() {
                Some(last) if last.0 == u.0 => *last = u,
                _ => unique.push(u),
            }
        }
        if unique.is_empty() {
            return Ok(root);
        }
        // A new leaf per update plus the internal nodes above it that change: about
        // log2(updates) levels are shared, the few below each are new.
        self.new_nodes.reserve(unique.len().saturating_mul(5));
        // Down: each level's reached nodes, loaded together. A step's children are pushed
        // after it, so children always have larger indices than their parents.
        let mut steps: Vec<Step> = vec![Step::Done(Hash::ZERO)];
        let mut level: Vec<(usize, Hash, std::ops::Range<usize>)> =
            vec![(0, root, 0..unique.len())];
        let mut hashes: Vec<Hash> = Vec::new();
        let mut depth = 0usize;
        while !level.is_empty() {
            hashes.clear();
            hashes.extend(level.iter().map(|(_, h, _)| *h));
            let nodes = self.load_many(&hashes)?;
            let mut next = Vec::with_capacity(level.len().saturating_mul(2));
            for ((idx, _, range), node) in level.iter().zip(nodes) {
                let ups = unique
                    .get(range.clone())
                    .ok_or_else(|| ChainError::Corrupt("SMT update range".into()))?;
                let step = match node {
                    None => Step::Done(self.build(depth, &leaves_after(None, ups))),
                    Some(Node::Leaf { key, value }) => {
                        Step::Done(self.build(depth, &leaves_after(Some((key, value)), ups)))
                    }
                    Some(Node::Internal { left, right }) => {
                        if depth >= 256 {
                            return Err(ChainError::Corrupt("SMT deeper than 256".into()));
                        }
                        let split = range.start + ups.partition_point(|(k, _)| !bit(k, depth));
                        let mut child = |h: Hash, r: std::ops::Range<usize>| {
                            if r.is_empty() {
                                return Child::Same(h);
                            }
                            let i = steps.len();
                            steps.push(Step::Done(Hash::ZERO));
                            next.push((i, h, r));
                            Child::Step(i)
                        };
                        let l = child(left, range.start..split);
                        let r = child(right, split..range.end);
                        Step::Split { left: l, right: r }
                    }
                };
                if let Some(s) = steps.get_mut(*idx) {
                    *s = step;
                }
            }
            level = next;
            depth += 1;
        }
        // Up: children before parents.
        let mut results = vec![Hash::ZERO; steps.len()];
        for i in (0..steps.len()).rev() {
            let h = match steps.get(i) {
                Some(Step::Done(h)) => *h,
                Some(Step::Split { left, right }) => {
                    let get = |c: &Child| match c {
                        Child::Same(h) => *h,
                        Child::Step(j) => results.get(*j).copied().unwrap_or(Hash::ZERO),
                    };
                    let (l, r) = (get(left), get(right));
                    self.join(l, r)?
                }
                None => Hash::ZERO,
            };
            if let Some(slot) = results.get_mut(i) {
                *slot = h;
            }
        }
        Ok(results.first().copied().unwrap_or(root))
    }

    /// [`Updater::load`] of each hash, the source's in one batch.
    fn load_many(&self, hs: &[Hash]) -> Result<Vec<Option<Node>>, ChainError> {
        let mut out: Vec<Option<Node>> = Vec::with_capacity(hs.len());
        let mut missing: Vec<Hash> = Vec::new();
        for h in hs {
            let n = if *h == Hash::ZERO {
                None
            } else {
                let n = self.new_nodes.get(h).copied();
                if n.is_none() {
                    missing.push(*h);
                }
                n
            };
            out.push(n);
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let mut found = self.src.nodes(&missing)?.into_iter();
        for (h, slot) in hs.iter().zip(out.iter_mut()) {
            if *h == Hash::ZERO || slot.is_some() {
                continue;
            }
            match found.next().flatten() {
                Some(n) => *slot = Some(n),
                None => return Err(ChainError::Corrupt(format!("missing SMT node {h}"))),
            }
        }
        Ok(out)
    }

    /// The update as the recursive definition reads, depth first (the implementation
    /// before the level-wise walk): the reference of the tests and the baseline of
    /// `level_wise_update_against_recursive`.
    #[cfg(test)]
    fn update_recursive(
        &mut self,
        node: Hash,
        depth: usize,
        ups: &[(Hash, Option<Hash>)],
    ) -> Result<Hash, ChainError> {
        if ups.is_empty() {
            return Ok(node);
        }
        match self.load(&node)? {
            None => Ok(self.build(depth, &leaves_after(None, ups))),
            Some(Node::Leaf { key, value }) => {
                Ok(self.build(depth, &leaves_after(Some((key, value)), ups)))
            }
            Some(Node::Internal { left, right }) => {
                let split = ups.partition_point(|(k, _)| !bit(k, depth));
                let (l, r) = ups.split_at(split);
                let nl = self.update_recursive(left, depth + 1, l)?;
                let nr = self.update_recursive(right, depth + 1, r)?;
                self.join(nl, nr)
            }
        }
    }

    /// Joins two children, collapsing a lone leaf upwards.
    fn join(&mut self, left: Hash, right: Hash) -> Result<Hash, ChainError> {
        if left == Hash::ZERO && right == Hash::ZERO {
            return Ok(Hash::ZERO);
        }
        if right == Hash::ZERO {
            if let Some(n @ Node::Leaf { .. }) = self.load(&left)? {
                return Ok(n.hash());
            }
        }
        if left == Hash::ZERO {
            if let Some(n @ Node::Leaf { .. }) = self.load(&right)? {
                return Ok(n.hash());
            }
        }
        Ok(self.put(Node::Internal { left, right }))
    }

    /// Builds a subtree from sorted, unique leaves.
    fn build(&mut self, depth: usize, leaves: &[(Hash, Hash)]) -> Hash {
        match leaves {
            [] => Hash::ZERO,
            [(k, v)] => self.put(Node::Leaf { key: *k, value: *v }),
            _ => {
                if depth >= 256 {
                    return Hash::ZERO; // unreachable: unique keys differ before depth 256
                }
                let split = leaves.partition_point(|(k, _)| !bit(k, depth));
                let (l, r) = leaves.split_at(split);
                let lh = self.build(depth + 1, l);
                let rh = self.build(depth + 1, r);
                self.put(Node::Internal {
                    left: lh,
                    right: rh,
                })
            }
        }
    }
}

/// A Merkle proof for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The leaf where the key's path ends (the key's own, or another key's proving absence).
    pub leaf: Option<ProofLeaf>,
    /// Sibling hashes from the root downwards.
    pub siblings: Vec<Hash>,
}

/// A leaf in a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofLeaf {
    /// Key hash.
    pub key: Hash,
    /// Value hash.
    pub value_hash: Hash,
}

/// Builds the proof for `key` under `root`.
pub fn prove(src: &dyn NodeSource, root: Hash, key: &Hash) -> Result<Proof, ChainError> {
    let mut siblings = Vec::new();
    let mut cur = root;
    let mut depth = 0;
    loop {
        if cur == Hash::ZERO {
            return Ok(Proof {
                leaf: None,
                siblings,
            });
        }
        match src.node(&cur)? {
            None => return Err(ChainError::Corrupt(format!("missing SMT node {cur}"))),
            Some(Node::Leaf { key: k, value }) => {
                return Ok(Proof {
                    leaf: Some(ProofLeaf {
                        key: k,
                        value_hash: value,
                    }),
                    siblings,
                })
            }
            Some(Node::Internal { left, right }) => {
                if bit(key, depth) {
                    siblings.push(left);
                    cur = right;
                } else {
                    siblings.push(right);
                    cur = left;
                }
                depth += 1;
                if depth > 256 {
                    return Err(ChainError::Corrupt("SMT deeper than 256".into()));
                }
            }
        }
    }
}

/// Independent proof verifier for tests: folds siblings bottom-up.
#[cfg(test)]
pub(crate) fn verify(root: Hash, key: &Hash, value: Option<&Hash>, p: &Proof) -> bool {
    let start = match (&p.leaf, value) {
        (Some(l), Some(v)) => {
            if l.key != *key || l.value_hash != *v {
                return false;
            }
            leaf_hash(&l.key, &l.value_hash)
        }
        (Some(l), None) => {
            if l.key == *key {
                return false;
            }
            for d in 0..p.siblings.len() {
                if bit(&l.key, d) != bit(key, d) {
                    return false;
                }
            }
            leaf_hash(&l.key, &l.value_hash)
        }
        (None, Some(_)) => return false,
        (None, None) => Hash::ZERO,
    };
    let mut acc = start;
    for (d, sib) in p.siblings.iter().enumerate().rev() {
        acc = if bit(key, d) {
            internal_hash(sib, &acc)
        } else {
            internal_hash(&acc, sib)
        };
    }
    acc == root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn h(i: u64) -> Hash {
        Hash::of(&i.to_be_bytes())
    }

    /// Reference root computed from scratch from a full map: independent of update history.
    fn reference_root(entries: &BTreeMap<Hash, Hash>) -> Hash {
        fn go(depth: usize, items: &[(Hash, Hash)]) -> Hash {
            match items {
                [] => Hash::ZERO,
                [(k, v)] => leaf_hash(k, v),
                _ => {
                    let split = items.partition_point(|(k, _)| !bit(k, depth));
                    internal_hash(
                        &go(depth + 1, &items[..split]),
                        &go(depth + 1, &items[split..]),
                    )
                }
            }
        }
        let items: Vec<(Hash, Hash)> = entries.iter().map(|(k, v)| (*k, *v)).collect();
        go(0, &items)
    }

    use super::verify;

    #[test]
    fn empty_and_single() {
        let src = MemNodes::default();
        let mut u = Updater::new(&src);
        assert_eq!(u.update(Hash::ZERO, &[]).unwrap(), Hash::ZERO);
        let r = u.update(Hash::ZERO, &[(h(1), Some(h(2)))]).unwrap();
        assert_eq!(r, leaf_hash(&h(1), &h(2)));
        let r2 = u.update(r, &[(h(1), None)]).unwrap();
        assert_eq!(r2, Hash::ZERO);
    }

    /// Larger trees than the property test's: batches of thousands of sets and deletes over
    /// a tree of ~20,000 keys (levels wide enough that the update loads hundreds of nodes a
    /// level), against the reference root, and every touched key's proof.
    #[test]
    fn large_batches_match_the_reference() {
        let mut store = MemNodes::default();
        let mut root = Hash::ZERO;
        let mut model: BTreeMap<Hash, Hash> = BTreeMap::new();
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for round in 0..6u64 {
            let ups: Vec<(Hash, Option<Hash>)> = (0..4000)
                .map(|_| {
                    let k = h(next() % 20_000);
                    // A quarter of the updates after the first round delete.
                    let v = (round == 0 || next() % 4 != 0).then(|| h(1_000_000 + next()));
                    (k, v)
                })
                .collect();
            let mut sorted = ups.clone();
            // The recursive walk takes the updates sorted, the last of a key kept.
            sorted.reverse();
            sorted.sort_by_key(|u| u.0);
            sorted.dedup_by_key(|u| u.0);
            let recursive = Updater::new(&store)
                .update_recursive(root, 0, &sorted)
                .unwrap();
            let mut u = Updater::new(&store);
            root = u.update(root, &ups).unwrap();
            assert_eq!(root, recursive, "round {round}");
            let new = std::mem::take(&mut u.new_nodes);
            store.0.extend(new);
            for (k, v) in &ups {
                match v {
                    Some(v) => {
                        model.insert(*k, *v);
                    }
                    None => {
                        model.remove(k);
                    }
                }
            }
            assert_eq!(root, reference_root(&model), "round {round}");
            for (k, _) in ups.iter().take(200) {
                let p = prove(&store, root, k).unwrap();
                assert!(verify(root, k, model.get(k), &p));
            }
        }
        // Deleting everything empties the tree.
        let all: Vec<(Hash, Option<Hash>)> = model.keys().map(|k| (*k, None)).collect();
        let mut u = Updater::new(&store);
        assert_eq!(u.update(root, &all).unwrap(), Hash::ZERO);
    }

    /// A benchmark, not a test of speed (`cargo test --release -p aergo-chain --lib
    /// level_wise -- --ignored --nocapture`): 8,000-key updates of a 1M-key tree in memory,
    /// the level-wise walk against the recursive one, medians of 15.
    #[test]
    #[ignore]
    fn level_wise_update_against_recursive() {
        let mut store = MemNodes::default();
        let mut root = Hash::ZERO;
        for c in 0..10u64 {
            let ups: Vec<(Hash, Option<Hash>)> = (0..100_000u64)
                .map(|i| (h(c * 100_000 + i), Some(h(i))))
                .collect();
            let mut u = Updater::new(&store);
            root = u.update(root, &ups).unwrap();
            let new = std::mem::take(&mut u.new_nodes);
            store.0.extend(new);
        }
        let (mut level, mut rec) = (Vec::new(), Vec::new());
        for r in 0..15u64 {
            let ups: Vec<(Hash, Option<Hash>)> = (0..8000u64)
                .map(|i| (h((i * 7919 + r * 13) % 1_000_000), Some(h(r + 5))))
                .collect();
            let t = std::time::Instant::now();
            let x = Updater::new(&store).update(root, &ups).unwrap();
            level.push(t.elapsed().as_secs_f64() * 1e3);
            let t = std::time::Instant::now();
            let mut sorted = ups.clone();
            sorted.sort_by_key(|u| u.0);
            let mut u = Updater::new(&store);
            u.new_nodes.reserve(sorted.len() * 5);
            let y = u.update_recursive(root, 0, &sorted).unwrap();
            rec.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(x, y);
        }
        level.sort_by(f64::total_cmp);
        rec.sort_by(f64::total_cmp);
        println!(
            "8000-key update of a 1M-key tree: level-wise {:.2} ms, baseline recursive {:.2} ms, speedup {:.2}x",
            level[7],
            rec[7],
            rec[7] / level[7]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn incremental_updates_match_reference_and_proofs_verify(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u64..40, proptest::option::of(0u64..5)), 0..12), 1..6)
        ) {
            let mut store = MemNodes::default();
            let mut root = Hash::ZERO;
            let mut model: BTreeMap<Hash, Hash> = BTreeMap::new();
            for batch in batches {
                let ups: Vec<(Hash, Option<Hash>)> = batch.iter().map(|(k, v)| (h(*k), v.map(|v| h(1000 + v)))).collect();
                let mut u = Updater::new(&store);
                root = u.update(root, &ups).unwrap();
                let new = std::mem::take(&mut u.new_nodes);
                store.0.extend(new);
                for (k, v) in &ups {
                    match v { Some(v) => { model.insert(*k, *v); } None => { model.remove(k); } }
                }
                prop_assert_eq!(root, reference_root(&model));
            }
            for k in 0..40u64 {
                let key = h(k);
                let p = prove(&store, root, &key).unwrap();
                prop_assert!(verify(root, &key, model.get(&key), &p));
                // A proof never verifies a wrong value.
                prop_assert!(!verify(root, &key, Some(&h(99_999)), &p));
            }
        }
    }
}
