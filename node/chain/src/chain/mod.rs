//! The chain: opening and recovery, block production and validation, the commit protocol,
//! fork choice and queries at any height.
//!
//! - `open`: opening, the genesis state, recovery from the block log and
//!   finality restored on open;
//! - `commit`: block assembly (`produce`), validation (`prepare`), the commit path
//!   (`write_block`, with its commit-point checks) and finality after a commit;
//! - `fork`: blocks from the network (`receive`), the side pool, reorganisation
//!   (`try_switch`, `revert_to`) and equivocation;
//! - `diff`: the state keys that differ between two points of history (a chain or branch
//!   at a height), from the per-block change records;
//! - `queries`: state views at a height and at the tip (with the head cache), blocks,
//!   transactions, proofs, contract reads and the consensus status.
//!
//! Commit protocol (one fsync per block): (1) the block is appended to the block log and
//! fdatasync'ed — from this instant it is committed; (2) one RocksDB write batch records the
//! state versions, Merkle nodes, indexes, receipts and the new tip with its log position
//! (unsynced: RocksDB's own WAL makes the batch atomic, the block log makes it durable);
//! (3) caches and the tip advance and the block is published. On open, frames found in the
//! log past RocksDB's tip are re-executed and applied (their state roots must match), and a
//! torn tail is cut. A crash at any instant therefore leaves no half-applied block and loses
//! no block that was reported committed.
//!
//! # Locks
//!
//! [`Chain`] holds seven locks:
//! - `commit` (`Mutex<()>`): one writer at a time — held for the whole of `produce`
//!   and `receive` (and the test-only `apply`) (commit, reorganisation, side pool connection). Recovery runs in
//!   `open`, before the chain is shared.
//! - `head` (`head::HeadCache`): the head cache, state values at the tip, in 16 shards each
//!   behind its own `RwLock` (a hit takes one shard's read lock); "taking `head`" below means
//!   write-locking all shards in index order (`HeadCache::lock_all`).
//! - `recent` (`Mutex`): the best chain's blocks above LIB, for finality.
//! - `tip` (`RwLock`): the best block.
//! - `side` (`Mutex`): the side pool.
//! - `nodes` (`Mutex`): the Merkle node cache.
//! - `access` (`Mutex`): a repository ledger's last write rule, built from its directory.
//!
//! Order: **`commit` → `head` → `recent` → `tip`**. A lock may be taken while holding only
//! locks before it in that order: `write_block` holds `head` while it pushes to `recent` and
//! moves `tip` (cache and tip advance together, so `HeadView::get` — `head` then a `tip`
//! read — never caches a value read at an older height); `revert_to` holds `head` while it
//! moves `tip`. `side`, `nodes` and `access` are leaves: taken alone, for a short scope, and never held
//! while another lock is taken (reads copy out of them first). A repository ledger reads its
//! directory (another `Chain`: its `tip` and state) under its own `commit`; a directory never
//! reads its ledger, so the two never wait on each other. The block log's and the
//! engine's own locks are innermost (the engine's `on_commit` runs under `head`). Readers
//! take `tip` for a copy of the tip and release it before anything else.

mod commit;
mod diff;
mod fork;
mod head;
mod open;
mod pending;
mod queries;
mod side;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_branches;
#[cfg(test)]
mod tests_dtt;
#[cfg(test)]
mod tests_merge3;

pub use diff::{Change, DiffPage, MAX_DIFF_BLOCKS, MAX_DIFF_KEYS};
pub use pending::{Pending, PushOutcome, Pushed, Sealed};
pub use queries::HeightView;

use crate::blocklog::{BlockLog, Location, LogPos};
use crate::consensus::Slot;
use crate::ctx::BlockCtx;
use crate::dpos::{self, DposParams, Schedule, SlotGuard};
use crate::engine::{BlockStart, Engine};
use crate::error::ChainError;
use crate::exec::{self, Executed};
use crate::limits::{BLOCK_HEADER_ROOM, HEAD_CACHE_MAX, NODE_CACHE_MAX, SIDE_MAX};
use crate::poa::PoaParams;
use crate::rounds;
use crate::smt::{self, Node, NodeSource, Proof, Updater};
use crate::state::Overlay;
use crate::state::{account_key, Account, StateView, WriteSet};
use crate::store::{self, CF_BLOCKS, CF_CANON, CF_META, CF_SMT, CF_STATE, CF_TXS, MAIN_BRANCH};
use aergo_os::io::IoService;
use aergo_types::block::Receipt;
use aergo_types::block_ext::HeaderExt;
use aergo_types::hash::merkle_root;
use aergo_types::{
    Address, Block, Genesis, Hash, Header, Keypair, PublicKey, Signature, SignedTx, MAX_BLOCK_SIZE,
};
use parking_lot::{Mutex, RwLock};
use rocksdb::{WriteBatch, WriteOptions};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

/// How to open a chain.
pub struct ChainOptions {
    /// Data folder (RocksDB in `db/`, block log in `blocks/`).
    pub data_dir: PathBuf,
    /// The genesis.
    pub genesis: Genesis,
    /// The file I/O service for the block log.
    pub io: IoService,
}

/// The best block.
#[derive(Debug, Clone)]
pub struct Tip {
    /// Its header.
    pub header: Header,
    /// Its hash.
    pub hash: Hash,
    /// Where the log ends after it.
    pub log_end: LogPos,
}

/// What the index keeps about a block (enough for lists without reading the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// Height.
    pub height: u64,
    /// Location in the block log.
    pub loc: Location,
    /// Encoded size.
    pub size: u32,
    /// Number of transactions.
    pub tx_count: u32,
    /// Gas used by all transactions.
    pub gas_used: u64,
    /// Timestamp.
    pub timestamp_ms: u64,
    /// Producer.
    pub producer: PublicKey,
}

impl BlockMeta {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(84);
        v.extend_from_slice(&self.height.to_be_bytes());
        v.extend_from_slice(&self.loc.pos.encode());
        v.extend_from_slice(&self.loc.len.to_be_bytes());
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.tx_count.to_be_bytes());
        v.extend_from_slice(&self.gas_used.to_be_bytes());
        v.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        v.extend_from_slice(&self.producer.0);
        v
    }
    fn decode(b: &[u8]) -> Result<Self, ChainError> {
        let mut r = aergo_types::codec::Reader::new(b);
        let height = r.u64("height")?;
        let pos = LogPos::decode(r.take(12, "pos")?)?;
        let len = r.u32("len")?;
        let m = BlockMeta {
            height,
            loc: Location { pos, len },
            size: r.u32("size")?,
            tx_count: r.u32("tx count")?,
            gas_used: r.u64("gas")?,
            timestamp_ms: r.u64("ts")?,
            producer: PublicKey(r.array("producer")?),
        };
        r.finish()?;
        Ok(m)
    }
}

/// Where a transaction is.
#[derive(Debug, Clone)]
pub struct TxLocation {
    /// Block hash.
    pub block_hash: Hash,
    /// Block height.
    pub height: u64,
    /// Index in the block.
    pub index: u32,
    /// Its receipt.
    pub receipt: Receipt,
}

/// Where a branch's chain forks off its parent.
pub(crate) struct Base {
    /// The parent chain (`main` or another branch).
    pub(crate) parent: std::sync::Arc<Chain>,
    /// The parent's height the branch forks from.
    pub(crate) fork: u64,
}

/// One level of a chain's state lineage: a keyspace and the height it forks from (`None`:
/// the lineage's root, a chain's `main`).
#[derive(Clone)]
pub(crate) struct Level {
    pub(crate) ks: store::Keyspace,
    pub(crate) fork: Option<u64>,
}

/// The chain.
pub struct Chain {
    ks: store::Keyspace,
    /// This chain's state lineage: its own keyspace first, then each ancestor's, each with
    /// the height the level below forks from (a chain that is not a branch: one level).
    lineage: Vec<Level>,
    /// Set on a branch's chain: its parent and fork height.
    base: Option<Base>,
    log: BlockLog,
    /// A repository ledger's directory: its blocks name a final directory height and their
    /// senders are checked against the roles there.
    directory: Option<std::sync::Arc<Chain>>,
    /// The last write rule built from the directory (its height and hash, and the rule): a
    /// directory changes rarely, so admission and blocks reuse it.
    access: Mutex<
        Option<(
            aergo_types::block_ext::DdRef,
            std::sync::Arc<crate::ctx::Access>,
        )>,
    >,
    genesis: Genesis,
    chain_id: Hash,
    engine: Engine,
    /// Valid-looking blocks off the best chain (competing forks, blocks waiting for their
    /// parent), above LIB, bounded.
    side: Mutex<side::SidePool>,
    /// The best chain's blocks above LIB (and the LIB block), for finality.
    recent: Mutex<VecDeque<dpos::BlockMeta>>,
    tip: RwLock<Tip>,
    head: head::HeadCache,
    nodes: Mutex<crate::smt::NodeMap>,
    commit: Mutex<()>,
}

/// A block ready to commit: executed, with its new Merkle nodes.
pub struct Prepared {
    /// The block.
    pub block: Block,
    /// Execution results.
    pub executed: Executed,
    nodes: crate::smt::NodeMap,
}

/// A block just committed to the best chain, with what the node's one post-commit path
/// (`on_committed` in `aergo-node`: mempool, nonces, publication, metrics) needs — the same
/// for a block this node produced and one it imported.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The committed block.
    pub block: Block,
    /// Encoded size of the block.
    pub size: usize,
    /// Gas used by its transactions.
    pub gas_used: u64,
    /// Each sender of the block's transactions and its next nonce after the block, read from
    /// the block's own state writes.
    pub nonces: HashMap<Address, u64>,
}

/// What producing a block returned.
pub struct Produced {
    /// The committed block, as an import would report it.
    pub applied: Applied,
    /// Its receipts.
    pub receipts: Vec<Receipt>,
    /// Candidates that could not be included, with the reason.
    pub rejected: Vec<(Hash, String)>,
}

impl Produced {
    /// The committed block.
    pub fn block(&self) -> &Block {
        &self.applied.block
    }
}

pub use crate::engine::{dpos_params, poa_params};

/// What became of a block received from the network.
#[derive(Debug)]
pub enum Received {
    /// Already known (best chain or kept aside).
    Known,
    /// It extended the best chain (and nothing kept aside connected after it).
    Extended(Box<Applied>),
    /// Kept aside: a competing fork not (yet) longer than the best chain.
    Stored,
    /// Kept aside; its parent (or an older ancestor) is unknown: sync from `from`.
    MissingParent {
        /// Height to fetch from.
        from: u64,
        /// Height of the block received.
        to: u64,
    },
    /// The best chain switched to a longer fork.
    Reorged {
        /// Height of the common ancestor.
        common: u64,
        /// Blocks taken off the best chain (ascending).
        reverted: Vec<Block>,
        /// Blocks applied (ascending).
        applied: Vec<Applied>,
    },
}

/// The DPoS view of the chain at its tip, for RPC and the dashboard.
#[derive(Debug, Clone)]
pub struct DposStatus {
    /// The parameters.
    pub params: DposParams,
    /// The schedule of the tip's round.
    pub schedule: Schedule,
    /// Scores.
    pub scores: dpos::ScoreBook,
    /// LIB height.
    pub lib: u64,
}

/// The PoA view of the chain, for RPC and the dashboard.
#[derive(Debug, Clone)]
pub struct PoaStatus {
    /// The parameters (the producer set in slot order).
    pub params: PoaParams,
    /// LIB height.
    pub lib: u64,
}
