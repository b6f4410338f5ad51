//! Branches and merges: the payloads of the branch (kind 11) and merge (kind 12)
//! transactions, branch names and ids, and the genesis a branch's chain opens with.
//!
//! A branch is a chain of blocks extending a parent chain (`main` or another branch) from a
//! final fork height. It is created by a kind-11 transaction sent to the parent: the parent's
//! state records it at `'b' ‖ name` ([`BranchRecord`]). Its id — the chain id its
//! transactions sign — is `BLAKE3("aergo-branch-v1" ‖ parent chain id ‖ name ‖ hash of the
//! block before the one that created it)`, so a name created again later never accepts the
//! old branch's transactions.
//!
//! Encodings (integers big-endian, strings `u32 length ‖ UTF-8`, no trailing bytes):
//! - [`BranchOp`]: `op u8` — `0` create: `name ‖ fork_height u64 ‖ producer 32 ‖ strategy u8
//!   (0 auto, 1 consistent; + [`PRIVATE`] for a private branch) [‖ resolver 33]` (a resolver contract: consistent only); `1`
//!   delete: `name`; `2` tag: `name ‖ height u64 ‖ hash 32` (an immutable name for the block
//!   `hash` at `height` of the chain the transaction is sent to).
//! - [`MergeOp`]: `source name ‖ source_height u64` (the source height to merge up to: the
//!   sender names what they saw, so a merge never takes blocks the sender did not).
//! - [`BranchRecord`]: `id 32 ‖ fork_height u64 ‖ producer 32 ‖ strategy u8 ‖ creator 33 ‖
//!   created u64 ‖ deleted u64 (0: live) [‖ resolver 33]`.

use crate::address::Address;
use crate::block_ext::MergeStrategy;
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::PublicKey;
use crate::hash::Hash;
use serde::{Deserialize, Serialize};

/// The name of every chain's own line of blocks.
pub const MAIN: &str = "main";

/// Longest branch name.
pub const MAX_NAME: usize = 32;

/// Why `name` cannot be a branch name (`None`: it can): 1 to 32 characters of `a-z`, `0-9`,
/// `-` and `_`, not all digits (`--at 12` stays a height), not `main`.
pub fn name_error(name: &str) -> Option<String> {
    label_error(
        name,
        Label {
            what: "branch name",
            max: MAX_NAME,
            allowed: "a-z, 0-9, - and _",
            ok: |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_',
            main: "`main` exists on every chain and cannot be created or deleted",
        },
    )
}

/// The rules of a name a ref can hold (branch names, tags).
struct Label {
    what: &'static str,
    max: usize,
    allowed: &'static str,
    ok: fn(u8) -> bool,
    /// The refusal of `main`.
    main: &'static str,
}

/// Why `name` breaks `rule`: its characters and length, all digits (it would read as a
/// height), or `main`.
fn label_error(name: &str, rule: Label) -> Option<String> {
    if name.is_empty() || name.len() > rule.max || !name.bytes().all(rule.ok) {
        return Some(format!(
            "invalid {} `{}`: use 1 to {} characters of {}",
            rule.what,
            name.chars().take(80).collect::<String>().escape_default(),
            rule.max,
            rule.allowed
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "invalid {} `{name}`: a name of digits only would read as a height",
            rule.what
        ));
    }
    (name == MAIN).then(|| rule.main.to_string())
}

/// The id of branch `name` of the chain `parent`, created in the block whose parent is
/// `created_after`.
pub fn branch_id(parent: &Hash, name: &str, created_after: &Hash) -> Hash {
    Hash::of_parts(&[
        b"aergo-branch-v1",
        &parent.0,
        name.as_bytes(),
        &created_after.0,
    ])
}

/// A kind-11 transaction's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchOp {
    /// Create a branch.
    Create {
        /// Its name.
        name: String,
        /// The parent's height it forks from (must be final when the transaction is admitted).
        fork_height: u64,
        /// The node key that produces its blocks.
        producer: PublicKey,
        /// How it merges back.
        strategy: MergeStrategy,
        /// The contract whose `resolve_<table>` functions decide rows changed on both sides
        /// of a consistent merge (`None`: such rows refuse the merge).
        resolver: Option<Address>,
        /// Private: only its creator reads it and sends to it (requests signed by the
        /// creator, or the node's operator).
        private: bool,
    },
    /// Delete a branch (its blocks stay readable until pruned).
    Delete {
        /// Its name.
        name: String,
    },
    /// Tag a block of this chain: `name` reads as that block in every ref.
    Tag {
        /// The tag ([`tag_name_error`]).
        name: String,
        /// The block's height.
        height: u64,
        /// The block's hash (a ref through the tag checks it is still the chain's block).
        hash: Hash,
    },
}

/// Longest tag name.
pub const MAX_TAG: usize = 64;

/// Why `name` cannot be a tag (`None`: it can): 1 to 64 characters of `a-z`, `A-Z`, `0-9`,
/// `-`, `_` and `.`, not all digits (a height), not `main`.
pub fn tag_name_error(name: &str) -> Option<String> {
    label_error(
        name,
        Label {
            what: "tag",
            max: MAX_TAG,
            allowed: "a-z, A-Z, 0-9, -, _ and .",
            ok: |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'),
            main: "`main` names the chain's own line of blocks, not a tag",
        },
    )
}

fn put_name(w: &mut Writer, name: &str) {
    w.bytes(name.as_bytes());
}

fn get_name(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let b = r.bytes(MAX_NAME, "branch name")?;
    let s = std::str::from_utf8(b).map_err(|_| DecodeError::Invalid {
        what: "branch name",
        message: "not UTF-8".into(),
    })?;
    if let Some(e) = name_error(s) {
        return Err(DecodeError::Invalid {
            what: "branch name",
            message: e,
        });
    }
    Ok(s.to_string())
}

/// The flag added to the strategy byte of a private branch.
pub const PRIVATE: u8 = 0x80;

pub(crate) fn strategy_byte(s: MergeStrategy, private: bool) -> u8 {
    let b = match s {
        MergeStrategy::Auto => 0,
        MergeStrategy::Consistent => 1,
    };
    if private {
        b | PRIVATE
    } else {
        b
    }
}

/// The strategy and the private flag of a strategy byte.
pub(crate) fn strategy_flags(b: u8) -> Result<(MergeStrategy, bool), DecodeError> {
    Ok((strategy_of(b & !PRIVATE)?, b & PRIVATE != 0))
}

fn put_resolver(w: &mut Writer, r: &Option<Address>) {
    if let Some(a) = r {
        w.fixed(&a.to_raw());
    }
}

/// An optional trailing resolver address (present only when bytes remain).
fn get_resolver(r: &mut Reader<'_>) -> Result<Option<Address>, DecodeError> {
    if r.remaining() == 0 {
        return Ok(None);
    }
    Address::from_raw(&r.array("resolver")?)
        .map(Some)
        .map_err(|e| DecodeError::Invalid {
            what: "resolver",
            message: e.to_string(),
        })
}

fn strategy_of(b: u8) -> Result<MergeStrategy, DecodeError> {
    match b {
        0 => Ok(MergeStrategy::Auto),
        1 => Ok(MergeStrategy::Consistent),
        _ => Err(DecodeError::Invalid {
            what: "merge strategy",
            message: format!("{b}"),
        }),
    }
}

impl BranchOp {
    /// The name it is about.
    pub fn name(&self) -> &str {
        match self {
            BranchOp::Create { name, .. }
            | BranchOp::Delete { name }
            | BranchOp::Tag { name, .. } => name,
        }
    }

    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(80);
        match self {
            BranchOp::Create {
                name,
                fork_height,
                producer,
                strategy,
                resolver,
                private,
            } => {
                w.u8(0);
                put_name(&mut w, name);
                w.u64(*fork_height);
                w.fixed(&producer.0);
                w.u8(strategy_byte(*strategy, *private));
                put_resolver(&mut w, resolver);
            }
            BranchOp::Delete { name } => {
                w.u8(1);
                put_name(&mut w, name);
            }
            BranchOp::Tag { name, height, hash } => {
                w.u8(2);
                w.bytes(name.as_bytes());
                w.u64(*height);
                w.fixed(&hash.0);
            }
        }
        w.finish()
    }

    /// Strict decoding.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let op = match r.u8("branch op")? {
            0 => {
                let (name, fork_height, producer, (strategy, private)) = (
                    get_name(&mut r)?,
                    r.u64("fork height")?,
                    PublicKey(r.array("producer")?),
                    strategy_flags(r.u8("strategy")?)?,
                );
                let resolver = get_resolver(&mut r)?;
                if resolver.is_some() && strategy != MergeStrategy::Consistent {
                    return Err(DecodeError::Invalid {
                        what: "resolver",
                        message: "a resolver contract decides consistent merges only".into(),
                    });
                }
                BranchOp::Create {
                    name,
                    fork_height,
                    producer,
                    strategy,
                    resolver,
                    private,
                }
            }
            1 => BranchOp::Delete {
                name: get_name(&mut r)?,
            },
            2 => {
                let b = r.bytes(MAX_TAG, "tag")?;
                let name = std::str::from_utf8(b)
                    .ok()
                    .filter(|s| tag_name_error(s).is_none())
                    .ok_or_else(|| DecodeError::Invalid {
                        what: "tag",
                        message: tag_name_error(&String::from_utf8_lossy(b))
                            .unwrap_or_else(|| "not UTF-8".into()),
                    })?
                    .to_string();
                BranchOp::Tag {
                    name,
                    height: r.u64("tag height")?,
                    hash: Hash(r.array("tag hash")?),
                }
            }
            o => {
                return Err(DecodeError::Invalid {
                    what: "branch op",
                    message: format!("{o}"),
                })
            }
        };
        r.finish()?;
        Ok(op)
    }
}

/// A kind-12 transaction's payload: merge branch `source` (a branch of the chain the
/// transaction is sent to) up to `source_height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOp {
    /// The source branch's name.
    pub source: String,
    /// Merge the source's blocks up to this height.
    pub source_height: u64,
}

impl MergeOp {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(48);
        put_name(&mut w, &self.source);
        w.u64(self.source_height);
        w.finish()
    }

    /// Strict decoding.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let op = MergeOp {
            source: get_name(&mut r)?,
            source_height: r.u64("source height")?,
        };
        r.finish()?;
        Ok(op)
    }
}

/// A branch as its parent's state records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchRecord {
    /// Its id (the chain id its transactions sign).
    pub id: Hash,
    /// The parent's height it forks from.
    pub fork_height: u64,
    /// Its producer's node key.
    pub producer: PublicKey,
    /// How it merges back.
    pub strategy: MergeStrategy,
    /// The account that created it (and may delete it).
    pub creator: Address,
    /// The parent's height at which it was created.
    pub created: u64,
    /// The parent's height at which it was deleted (`None`: live).
    pub deleted: Option<u64>,
    /// The resolver contract of a consistent merge (`None`: none).
    pub resolver: Option<Address>,
    /// Private: read and written only by its creator (encoded in the strategy byte).
    pub private: bool,
}

impl BranchRecord {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(96);
        w.fixed(&self.id.0);
        w.u64(self.fork_height);
        w.fixed(&self.producer.0);
        w.u8(strategy_byte(self.strategy, self.private));
        w.fixed(&self.creator.to_raw());
        w.u64(self.created);
        w.u64(self.deleted.unwrap_or(0));
        put_resolver(&mut w, &self.resolver);
        w.finish()
    }

    /// Strict decoding.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let (id, fork_height, producer, (strategy, private)) = (
            Hash(r.array("id")?),
            r.u64("fork height")?,
            PublicKey(r.array("producer")?),
            strategy_flags(r.u8("strategy")?)?,
        );
        let rec = BranchRecord {
            id,
            fork_height,
            producer,
            strategy,
            private,
            creator: Address::from_raw(&r.array("creator")?).map_err(|e| DecodeError::Invalid {
                what: "creator",
                message: e.to_string(),
            })?,
            created: r.u64("created")?,
            deleted: Some(r.u64("deleted")?).filter(|d| *d != 0),
            resolver: get_resolver(&mut r)?,
        };
        r.finish()?;
        Ok(rec)
    }
}

/// Set in the genesis a branch's chain opens with: where it forks off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchGenesis {
    /// The branch's name.
    pub name: String,
    /// Its id: the branch chain's chain id.
    pub id: Hash,
    /// The parent chain's id.
    pub parent: Hash,
    /// The fork height on the parent.
    pub fork_height: u64,
    /// The parent's block at the fork height.
    pub fork_hash: Hash,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_reject_trailing_bytes_and_bad_names() {
        let c = BranchOp::Create {
            name: "feat-1".into(),
            fork_height: 7,
            producer: PublicKey([3; 32]),
            strategy: MergeStrategy::Consistent,
            resolver: None,
            private: false,
        };
        assert_eq!(BranchOp::decode(&c.encode()).unwrap(), c);
        let resolver = Address::from_public_key(&PublicKey([5; 32]));
        let with = BranchOp::Create {
            name: "feat-1".into(),
            fork_height: 7,
            producer: PublicKey([3; 32]),
            strategy: MergeStrategy::Consistent,
            resolver: Some(resolver),
            private: false,
        };
        assert_eq!(BranchOp::decode(&with.encode()).unwrap(), with);
        let auto_with = BranchOp::Create {
            name: "feat-1".into(),
            fork_height: 7,
            producer: PublicKey([3; 32]),
            strategy: MergeStrategy::Auto,
            resolver: Some(resolver),
            private: false,
        };
        assert!(BranchOp::decode(&auto_with.encode()).is_err());
        let mut long = c.encode();
        long.push(0);
        assert!(BranchOp::decode(&long).is_err());
        let d = BranchOp::Delete { name: "x".into() };
        assert_eq!(BranchOp::decode(&d.encode()).unwrap(), d);
        let t = BranchOp::Tag {
            name: "v1.0-rc_2".into(),
            height: 12,
            hash: Hash([8; 32]),
        };
        assert_eq!(BranchOp::decode(&t.encode()).unwrap(), t);
        for bad in ["", "12", "main", "a@b", "a~1", "a/b", "a:b"] {
            let t = BranchOp::Tag {
                name: bad.into(),
                height: 1,
                hash: Hash([8; 32]),
            };
            assert!(BranchOp::decode(&t.encode()).is_err(), "{bad}");
        }
        let bad = BranchOp::Delete {
            name: "main".into(),
        };
        assert!(BranchOp::decode(&bad.encode()).is_err());
        let m = MergeOp {
            source: "feat".into(),
            source_height: 9,
        };
        assert_eq!(MergeOp::decode(&m.encode()).unwrap(), m);
        assert!(MergeOp::decode(&m.encode()[..5]).is_err());
        let r = BranchRecord {
            id: Hash([1; 32]),
            fork_height: 4,
            producer: PublicKey([2; 32]),
            strategy: MergeStrategy::Auto,
            creator: Address::from_public_key(&PublicKey([4; 32])),
            created: 5,
            deleted: Some(9),
            resolver: None,
            private: false,
        };
        assert_eq!(BranchRecord::decode(&r.encode()).unwrap(), r);
        let with = BranchRecord {
            resolver: Some(resolver),
            private: false,
            ..r.clone()
        };
        assert_eq!(BranchRecord::decode(&with.encode()).unwrap(), with);
    }

    #[test]
    fn names_are_checked() {
        assert!(name_error("feature").is_none());
        assert!(name_error("f_1-x").is_none());
        assert!(name_error("12").is_some());
        assert!(name_error("main").is_some());
        assert!(name_error("").is_some());
        assert!(name_error("Feat").is_some());
        assert!(name_error("a@b").is_some());
        assert!(name_error(&"a".repeat(33)).is_some());
    }

    #[test]
    fn ids_differ_by_creation_block() {
        let p = Hash([9; 32]);
        assert_ne!(
            branch_id(&p, "f", &Hash([1; 32])),
            branch_id(&p, "f", &Hash([2; 32]))
        );
    }
}
