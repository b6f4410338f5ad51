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
        // A new leaf per update plus the internal nodes above it that change: about
        // log2(updates) levels are shared, the few below each are new.
        self.new_nodes.reserve(unique.len().saturating_mul(5));
        self.update_at(root, 0, &unique)
    }

    fn update_at(
        &mut self,
        node: Hash,
        depth: usize,
        ups: &[(Hash, Option<Hash>)],
    ) -> Result<Hash, ChainError> {
        if ups.is_empty() {
            return Ok(node);
        }
        match self.load(&node)? {
            None => {
                let leaves: Vec<(Hash, Hash)> =
                    ups.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).collect();
                Ok(self.build(depth, &leaves))
            }
            Some(Node::Leaf { key, value }) => {
                let mut leaves: Vec<(Hash, Hash)> = Vec::with_capacity(ups.len() + 1);
                let mut existing_seen = false;
                for (k, v) in ups {
                    if *k == key {
                        existing_seen = true;
                    }
                    if let Some(v) = v {
                        leaves.push((*k, *v));
                    }
                }
                if !existing_seen {
                    leaves.push((key, value));
                    leaves.sort_by_key(|a| a.0);
                }
                Ok(self.build(depth, &leaves))
            }
            Some(Node::Internal { left, right }) => {
                if depth >= 256 {
                    return Err(ChainError::Corrupt("SMT deeper than 256".into()));
                }
                let split = ups.partition_point(|(k, _)| !bit(k, depth));
                let (l, r) = ups.split_at(split);
                let nl = self.update_at(left, depth + 1, l)?;
                let nr = self.update_at(right, depth + 1, r)?;
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
