//! The AERGO chain: everything between a verified transaction and a committed block.
//!
//! - [`store`]: RocksDB column families and the versioned state key layout.
//! - [`state`]: accounts and the read interface executed code sees ([`state::StateView`]).
//! - [`smt`]: the sparse Merkle tree committing to the whole state (the header's state root).
//! - [`blocklog`]: append-only block segments written through the `aergo_os::io` service;
//!   the block log is the chain's write-ahead log and source of truth.
//! - [`contracts`]: AergoSQL contracts: deploy and call transactions, queries at any height.
//! - [`exec`]: execution as a pure function (state view, tx) → (receipt, write set).
//! - [`access`]: each transaction's read and write sets; [`dtt`]: the canonical
//!   Deterministic Transaction Tree built from them; [`parallel`]: validation along a
//!   block's DTT on a pool of workers.
//! - [`mempool`]: per-account nonce queues, replacement, limits, eviction.
//! - [`ctx`]: what a block gives execution (a leaf: types only).
//! - [`limits`]: every limit of the chain, with compile-time checks of their relations.
//! - [`engine`]: the consensus engines as one closed enum (solo, DPoS, PoA) and their hooks.
//! - [`consensus`]: slots and the `solo` engine; [`dpos`], [`rounds`], [`staking`]: DPoS;
//!   [`poa`]: proof of authority.
//! - [`branches`]: branch records, merge bases and merged marks in a chain's state; branch
//!   and merge transactions; [`merge3`]: the three-way merge of state of consistent merges.
//! - [`chain`]: opening, recovery, block assembly, validation, commit, fork choice and
//!   queries, one file each, with the lock order.

pub mod access;
pub mod blocklog;
pub mod branches;
pub mod chain;
pub mod consensus;
pub mod contracts;
pub mod ctx;
pub mod directory;
pub mod dpos;
pub mod dtt;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod exec;
pub mod limits;
pub mod mempool;
pub mod merge3;
pub mod parallel;
pub mod poa;
pub mod repos;
pub mod rounds;
pub mod sigcache;
pub mod smt;
pub mod stages;
pub mod staking;
pub mod state;
pub mod store;

/// The contract engine the chain runs (for callers that read contract state: `diff`'s rows).
pub use aergo_sql;
pub use chain::{Chain, ChainOptions, Pending, PushOutcome, Pushed, Sealed, Tip};
pub use error::ChainError;
