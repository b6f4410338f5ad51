//! RocksDB layout.
//!
//! Column families:
//! - `state`: versioned state. Key = branch (u32 BE) ‖ escaped state key ‖ `!height` (u64 BE,
//!   bitwise-inverted so the newest version sorts first). Value = `1 ‖ bytes` (present) or
//!   `0` (deleted). The state key is escaped order-preservingly (`0x00` → `0x00 0xFF`,
//!   terminated by `0x00 0x01`), so every key's versions are contiguous, no key is a prefix
//!   of another, and range scans over state keys (contract tables) keep key order. A read at
//!   (branch, h) is one seek to `branch ‖ key ‖ !h`: the first entry with the same key prefix
//!   is the newest version at or below `h`. The branch number is always 0 within a keyspace:
//!   a branch is a chain of its own in keyspace [`SPACE_BRANCH`], and a read on it falls
//!   through to its parent's keyspace at the fork height (`chain::Level`).
//! - `smt`: sparse Merkle tree nodes by hash (content-addressed, never rewritten), so the
//!   state root of every past block stays provable.
//! - `blocks`: block hash → location in the block log and height.
//! - `canon`: branch ‖ height → block hash.
//! - `txs`: tx hash → block hash ‖ height ‖ index ‖ receipt.
//! - `meta`: `chain_id`, `tip` (height ‖ hash ‖ log end position).
//!
//! One database holds every ledger a node hosts (the root chain, each repository and each
//! repository's directory): each is a [`Keyspace`], a key prefix applied to every key of
//! every column family. The root chain's prefix is empty (its layout predates repositories);
//! every other chain's is `0xFF ‖ kind ‖ the first 8 bytes of its chain id`, so its keys
//! never equal a root key (root point keys are shorter: 32-byte hashes, 12-byte canon keys,
//! short ASCII meta names) and never fall inside a root state scan (root state keys start
//! with the branch number, which stays below `0xFF00_0000`). A chain reads and writes only
//! through its keyspace: it cannot see or change another's keys.

use crate::error::ChainError;
use aergo_types::Hash;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, DB};
use std::path::Path;
use std::sync::Arc;

/// Column family names.
pub const CF_STATE: &str = "state";
/// SMT nodes.
pub const CF_SMT: &str = "smt";
/// Block index.
pub const CF_BLOCKS: &str = "blocks";
/// Canonical chain.
pub const CF_CANON: &str = "canon";
/// Transaction index and receipts.
pub const CF_TXS: &str = "txs";
/// Metadata.
pub const CF_META: &str = "meta";

/// The `main` branch.
pub const MAIN_BRANCH: u32 = 0;

/// Opens (creating if needed) the database with all column families.
pub fn open(path: &Path) -> Result<DB, ChainError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.increase_parallelism(2);
    opts.set_max_open_files(512);
    let cfs = [CF_STATE, CF_SMT, CF_BLOCKS, CF_CANON, CF_TXS, CF_META]
        .into_iter()
        .map(|n| {
            let mut o = Options::default();
            o.set_write_buffer_size(32 * 1024 * 1024);
            ColumnFamilyDescriptor::new(n, o)
        });
    Ok(DB::open_cf_descriptors(&opts, path, cfs)?)
}

/// The kind byte of a repository's keyspace prefix.
pub const SPACE_REPO: u8 = b'r';
/// The kind byte of a repository directory's keyspace prefix.
pub const SPACE_DIRECTORY: u8 = b'd';
/// The kind byte of a branch's keyspace prefix (its chain id is the branch id).
pub const SPACE_BRANCH: u8 = b'b';

/// One chain's part of the shared database: every key it reads or writes, in every column
/// family, carries its prefix (see the module docs).
#[derive(Clone)]
pub struct Keyspace {
    db: Arc<DB>,
    prefix: Vec<u8>,
}

impl Keyspace {
    /// The root chain's keyspace (no prefix).
    pub fn root(db: Arc<DB>) -> Self {
        Self {
            db,
            prefix: Vec::new(),
        }
    }
    /// The keyspace of the chain `id` of `kind` ([`SPACE_REPO`], [`SPACE_DIRECTORY`]).
    pub fn of_chain(db: Arc<DB>, kind: u8, id: &Hash) -> Self {
        let mut prefix = vec![0xFF, kind];
        prefix.extend_from_slice(&id.0[..8]);
        Self { db, prefix }
    }
    /// The prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }
    /// The shared database.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }
    /// `key` inside this keyspace.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.prefix.len() + key.len());
        v.extend_from_slice(&self.prefix);
        v.extend_from_slice(key);
        v
    }
    /// A column family handle.
    pub fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, ChainError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| ChainError::Db(format!("missing column family {name}")))
    }
    /// Reads `key` of column family `cf`.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.db.get_cf(self.cf(cf)?, self.key(key))?)
    }
    /// Adds a write of `key` to `batch`.
    pub fn put(
        &self,
        batch: &mut WriteBatch,
        cf: &str,
        key: &[u8],
        value: impl AsRef<[u8]>,
    ) -> Result<(), ChainError> {
        batch.put_cf(self.cf(cf)?, self.key(key), value);
        Ok(())
    }
    /// Adds a deletion of `key` to `batch`.
    pub fn delete(&self, batch: &mut WriteBatch, cf: &str, key: &[u8]) -> Result<(), ChainError> {
        batch.delete_cf(self.cf(cf)?, self.key(key));
        Ok(())
    }
    /// Writes one key at once (not in a block's batch).
    pub fn put_now(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), ChainError> {
        Ok(self.db.put_cf(self.cf(cf)?, self.key(key), value)?)
    }
    /// The state keys' common start for `branch`: prefix ‖ branch.
    pub fn state_lead(&self, branch: u32) -> Vec<u8> {
        self.key(&branch.to_be_bytes())
    }
    /// [`state_prefix`] inside this keyspace.
    pub fn state_prefix(&self, branch: u32, key: &[u8]) -> Vec<u8> {
        let mut v = self.state_lead(branch);
        escape_key(key, &mut v);
        v
    }
    /// [`state_version_key`] inside this keyspace.
    pub fn state_version_key(&self, branch: u32, key: &[u8], height: u64) -> Vec<u8> {
        let mut v = self.state_prefix(branch, key);
        v.extend_from_slice(&(!height).to_be_bytes());
        v
    }
}

/// Order-preserving escape of a state key (see module docs).
pub fn escape_key(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.push(0);
    out.push(1);
}

/// The prefix shared by every version of `key` on `branch`.
pub fn state_prefix(branch: u32, key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + key.len() + 10);
    v.extend_from_slice(&branch.to_be_bytes());
    escape_key(key, &mut v);
    v
}

/// The versioned key of `key` at `height` on `branch`.
pub fn state_version_key(branch: u32, key: &[u8], height: u64) -> Vec<u8> {
    let mut v = state_prefix(branch, key);
    v.extend_from_slice(&(!height).to_be_bytes());
    v
}

/// Inverse of [`escape_key`]: the key and the number of bytes consumed, or `None` if the
/// terminator is missing.
pub fn unescape_key(enc: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < enc.len() {
        let b = enc[i];
        if b == 0 {
            match enc.get(i + 1) {
                Some(0xff) => {
                    out.push(0);
                    i += 2;
                }
                Some(1) => return Some((out, i + 2)),
                _ => return None,
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    None
}

/// branch ‖ height.
pub fn canon_key(branch: u32, height: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&branch.to_be_bytes());
    k[4..].copy_from_slice(&height.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_preserves_order_and_prefix_freedom() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x00\x00",
            b"\x00\x01",
            b"a",
            b"a\x00",
            b"ab",
            b"b",
        ];
        let enc: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| {
                let mut v = Vec::new();
                escape_key(k, &mut v);
                v
            })
            .collect();
        for i in 0..enc.len() {
            for j in 0..enc.len() {
                assert_eq!(
                    keys[i].cmp(keys[j]),
                    enc[i].cmp(&enc[j]),
                    "{:?} {:?}",
                    keys[i],
                    keys[j]
                );
                if i != j {
                    assert!(!enc[j].starts_with(&enc[i]));
                }
            }
        }
    }

    #[test]
    fn unescape_inverts_escape() {
        for k in [&b""[..], b"\x00", b"a\x00b\x00\x00", b"\xff\x00\x01"] {
            let mut v = Vec::new();
            escape_key(k, &mut v);
            v.extend_from_slice(b"tail");
            let (back, n) = unescape_key(&v).unwrap();
            assert_eq!(back, k);
            assert_eq!(&v[n..], b"tail");
        }
        assert!(unescape_key(b"abc").is_none());
    }

    #[test]
    fn newer_versions_sort_first() {
        assert!(state_version_key(0, b"k", 10) < state_version_key(0, b"k", 9));
        assert!(state_version_key(0, b"k", 0) < state_version_key(0, b"l", 1000));
    }
}
