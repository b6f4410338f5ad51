//! 32-byte BLAKE3 hashes, printed and parsed as lowercase hex.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A 32-byte hash (BLAKE3 everywhere in the chain).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

/// A hex string that is not a 32-byte hash.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("invalid hash `{input}`: expected 64 lowercase hex characters")]
pub struct HashParseError {
    /// What was given (truncated).
    pub input: String,
}

impl Hash {
    /// The all-zero hash (parent of the genesis block, empty trees).
    pub const ZERO: Hash = Hash([0; 32]);

    /// BLAKE3 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Hash(*blake3::hash(data).as_bytes())
    }

    /// BLAKE3 over several parts (no separators: callers use fixed-size or prefixed parts).
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (an optional `0x` prefix is accepted).
    pub fn from_hex(s: &str) -> Result<Self, HashParseError> {
        let t = s.strip_prefix("0x").unwrap_or(s);
        let err = || HashParseError {
            input: s.chars().take(80).collect(),
        };
        if t.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(t, &mut out).map_err(|_| err())?;
        Ok(Hash(out))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl std::str::FromStr for Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Binary Merkle root of a list of leaf hashes (BLAKE3; odd nodes are promoted; empty = ZERO).
/// Leaves and inner nodes are domain-separated so a leaf can never pose as an inner node.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves
        .iter()
        .map(|l| Hash::of_parts(&[&[0u8], &l.0]))
        .collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [a, b] => next.push(Hash::of_parts(&[&[1u8], &a.0, &b.0])),
                [a] => next.push(*a),
                _ => {}
            }
        }
        level = next;
    }
    level.first().copied().unwrap_or(Hash::ZERO)
}

/// [`merkle_root`] built one leaf at a time: the root of the leaves pushed so far, at any
/// moment, for about one hash per leaf. Pairing level by level with an odd last node
/// promoted is a binary counter: the pushed leaves form complete subtrees of decreasing size
/// (the peaks), and the root joins them from the right.
#[derive(Debug, Clone, Default)]
pub struct MerkleAcc {
    /// (height, root) of each complete subtree, largest first.
    peaks: Vec<(u32, Hash)>,
    len: usize,
}

impl MerkleAcc {
    /// Adds the next leaf.
    pub fn push(&mut self, leaf: &Hash) {
        let mut node = (0u32, Hash::of_parts(&[&[0u8], &leaf.0]));
        while let Some((h, left)) = self.peaks.last().copied() {
            if h != node.0 {
                break;
            }
            self.peaks.pop();
            node = (h + 1, Hash::of_parts(&[&[1u8], &left.0, &node.1 .0]));
        }
        self.peaks.push(node);
        self.len += 1;
    }

    /// How many leaves were pushed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// [`merkle_root`] of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some((_, mut acc)) = it.next().copied() else {
            return Hash::ZERO;
        };
        for (_, left) in it {
            acc = Hash::of_parts(&[&[1u8], &left.0, &acc.0]);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accumulator_equals_the_root_at_every_length() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| Hash::of(&i.to_be_bytes())).collect();
        let mut acc = MerkleAcc::default();
        assert_eq!(acc.root(), merkle_root(&[]));
        for (n, l) in leaves.iter().enumerate() {
            acc.push(l);
            assert_eq!(acc.len(), n + 1);
            assert_eq!(acc.root(), merkle_root(&leaves[..=n]), "{} leaves", n + 1);
        }
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::of(b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(Hash::from_hex(&format!("0x{}", h.to_hex())).unwrap(), h);
        assert!(Hash::from_hex("abc").is_err());
        assert!(Hash::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(h.to_hex(), h.to_hex().to_lowercase());
    }

    #[test]
    fn merkle_root_depends_on_order_and_content() {
        let a = Hash::of(b"a");
        let b = Hash::of(b"b");
        let c = Hash::of(b"c");
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
        assert_ne!(merkle_root(&[a, b, c]), merkle_root(&[a, b]));
        assert_ne!(merkle_root(&[a]), a);
    }
}
