//! Every limit of the chain in one place, with the relations between them (and against
//! [`aergo_types::limits`]) checked at compile time (`const _: () = assert!(…)`).
//!
//! A leaf: it imports only `aergo-types`. The modules that apply a limit re-export it where
//! it was public before (`ctx::DEFAULT_TX_GAS_CAP`, `staking::MAX_SYSTEM_PAYLOAD`, …).
//!
//! Relations (each a compile error when broken):
//! - candidates per block against block size: [`MAX_CANDIDATES`] × ([`MIN_TX_SIZE`] + 4)
//!   ≥ [`MAX_BLOCK_SIZE`] − [`BLOCK_HEADER_ROOM`]. The producer takes at most
//!   [`MAX_CANDIDATES`] transactions from the mempool for one block; even if every one were
//!   the smallest possible transaction (each framed by a 4-byte length in the block), they
//!   would fill the space assembly fills, so the candidate cap never leaves a block short
//!   while the pool holds more. The cap only bounds the work of one assembly (each
//!   candidate is executed or skipped once).
//! - [`BLOCK_HEADER_ROOM`] < [`MAX_BLOCK_SIZE`] − [`MAX_TX_SIZE`]: assembly can always take the
//!   largest transaction.
//! - [`MAX_BLOCK_SIZE`] < [`SIDE_MAX_BYTES`]: the side pool holds any block.
//! - gas: [`aergo_types::limits::MIN_GAS_LIMIT_PARAM`] ≤ [`DEFAULT_TX_GAS_CAP`] ≤
//!   [`DEFAULT_BLOCK_GAS_LIMIT`] ≤ [`aergo_types::limits::MAX_GAS_LIMIT_PARAM`]: the defaults
//!   are values a genesis could set, and a block can hold a transaction at the cap.
//! - [`QUERY_GAS_CAP`] ≤ [`aergo_types::limits::MAX_GAS_LIMIT_PARAM`].
//! - [`MAX_SYSTEM_PAYLOAD`] ≤ [`MAX_TX_SIZE`].
//!
//! Undo retention has no constant: a block's undo record (`meta undo‖height`) is kept while
//! the block is above LIB and pruned as LIB passes it, so the retention is the finality
//! depth; blocks in the side pool are likewise kept only above LIB and at most [`SIDE_MAX`].
//! The mempool's count, byte and per-account limits are node configuration
//! (`aergo_os::config::MempoolConfig`), not chain limits.

use aergo_types::limits::{
    MAX_BLOCK_SIZE, MAX_GAS_LIMIT_PARAM, MAX_TX_SIZE, MIN_GAS_LIMIT_PARAM, MIN_TX_SIZE,
};

/// Most candidates taken from the mempool for one block (a 2 MiB block holds ~9,700
/// transfers; the default gas limit admits 5,000).
pub const MAX_CANDIDATES: usize = 12_000;

/// Room assembly leaves in a block for its header: transactions fill at most
/// [`MAX_BLOCK_SIZE`] − this.
pub const BLOCK_HEADER_ROOM: usize = 1024;

/// Most blocks kept off the best chain (the side pool: competing forks and orphans).
pub const SIDE_MAX: usize = 2048;
/// Most encoded bytes kept in the side pool. Orphans are kept before their producer can be
/// checked against a schedule, so any peer can fill the pool: this bounds what that costs
/// (the count bound alone allowed [`SIDE_MAX`] full blocks).
pub const SIDE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Entries in the head cache (state values at the tip) before it is cleared.
pub const HEAD_CACHE_MAX: usize = 1 << 20;

/// Merkle nodes cached before the cache is cleared.
pub const NODE_CACHE_MAX: usize = 1 << 21;

/// Largest segment file of the block log.
pub const SEGMENT_MAX: u64 = 256 * 1024 * 1024;

/// Clock drift allowed on a received block's timestamp (DPoS, PoA).
pub const DRIFT_MS: u64 = 1000;

/// A received block further ahead than [`DRIFT_MS`] but at most this far is *early*
/// ([`crate::ChainError::Early`]): dropped without blaming its sender, since clocks of
/// honest nodes can disagree by seconds (a node without NTP, a virtual machine). Further
/// ahead than this it is invalid.
pub const EARLY_MAX_MS: u64 = 60_000;

/// DPoS schedules kept (older rounds are dropped).
pub const KEEP_ROUNDS: usize = 64;

/// Gas cap for free queries and read-only calls.
pub const QUERY_GAS_CAP: u64 = 10_000_000;

/// Longest p2p address a registration may carry.
pub const MAX_P2P_ADDR: usize = 256;
/// Upper bound of `bp_count` and `max_votes` (also the longest ballot a payload may carry).
pub const MAX_LIST_PARAM: u128 = 1000;
/// Upper bound of `unstake_lock_blocks`.
pub const MAX_UNSTAKE_LOCK_BLOCKS: u128 = 10_000_000;
/// Largest payload of a system transaction (a vote for 1,000 candidates fits).
pub const MAX_SYSTEM_PAYLOAD: usize = 64 * 1024;

/// Per-transaction gas cap when the genesis sets none. Sized from the slowest measured work
/// per gas — an interpreted loop counting or sorting RocksDB-backed contract rows, ~14M
/// gas/s on the loaded 2-core development machine (`cargo bench -p aergo-chain --bench
/// gas_rate`, docs/BENCHMARKS.md), ~400× slower than a JIT-compiled loop: ~0.3 s of that
/// work, and room for a 200 KiB deploy's ~2.05M intrinsic gas plus the CLI's default
/// 1.5M engine gas.
pub const DEFAULT_TX_GAS_CAP: u64 = 4_000_000;
/// Per-block gas limit when the genesis sets none: ~0.36 s of the slowest work per gas on the
/// loaded development machine, well inside a 1 s slot with the commit (Merkle root, log
/// fsync) on top. It binds before the block size does: 5,000 transfers of 1,000 gas are
/// ~1.1 MB of a 2 MiB block.
pub const DEFAULT_BLOCK_GAS_LIMIT: u64 = 5_000_000;

const _: () = assert!(MAX_CANDIDATES * (MIN_TX_SIZE + 4) >= MAX_BLOCK_SIZE - BLOCK_HEADER_ROOM);
const _: () = assert!(BLOCK_HEADER_ROOM < MAX_BLOCK_SIZE - MAX_TX_SIZE);
const _: () = assert!(MAX_BLOCK_SIZE < SIDE_MAX_BYTES);
const _: () = assert!(MIN_GAS_LIMIT_PARAM <= DEFAULT_TX_GAS_CAP);
const _: () = assert!(DEFAULT_TX_GAS_CAP <= DEFAULT_BLOCK_GAS_LIMIT);
const _: () = assert!(DEFAULT_BLOCK_GAS_LIMIT <= MAX_GAS_LIMIT_PARAM);
const _: () = assert!(QUERY_GAS_CAP <= MAX_GAS_LIMIT_PARAM);
const _: () = assert!(MAX_SYSTEM_PAYLOAD <= MAX_TX_SIZE);

// A repository directory's largest change (payload plus the transaction around it) fits its
// 64 KiB block with the header room to spare.
const _: () = assert!(
    aergo_types::repo::MAX_DD_PAYLOAD + 512 < aergo_types::repo::MAX_DD_BLOCK - BLOCK_HEADER_ROOM
);
