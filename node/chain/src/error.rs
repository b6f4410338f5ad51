//! The chain's error type.

use aergo_types::Hash;

/// Errors from the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// RocksDB failed.
    #[error("database error: {0}")]
    Db(String),
    /// The block log failed.
    #[error("block log error: {0}")]
    Log(String),
    /// Stored data could not be decoded (corruption).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A block does not follow the rules.
    #[error("invalid block {hash} at height {height}: {reason}")]
    InvalidBlock {
        /// Block hash.
        hash: Hash,
        /// Height.
        height: u64,
        /// Which rule.
        reason: String,
    },
    /// A block producer's block whose slot starts later than the allowed drift but within
    /// [`crate::limits::EARLY_MAX_MS`]: the producer's clock (or ours) runs ahead. Not a
    /// reason to blame the sender; it is dropped and fetched again once its time comes.
    #[error("block {hash} at height {height} is {ahead_ms} ms early")]
    Early {
        /// Block hash.
        hash: Hash,
        /// Height.
        height: u64,
        /// How far its timestamp is ahead of our clock.
        ahead_ms: u64,
    },
    /// A transaction cannot be applied.
    #[error("transaction {hash} rejected: {reason}")]
    InvalidTx {
        /// Transaction hash.
        hash: Hash,
        /// Which rule.
        reason: String,
    },
    /// The data folder belongs to another chain.
    #[error("data folder holds chain {found}, but the genesis gives chain id {expected}")]
    WrongChain {
        /// From the genesis.
        expected: Hash,
        /// In the database.
        found: Hash,
    },
    /// A producer signed two different blocks for one slot.
    #[error("equivocation by {producer}: blocks {first} and {second} for one slot")]
    Equivocation {
        /// The producer.
        producer: aergo_types::PublicKey,
        /// The block seen first.
        first: Hash,
        /// The other one.
        second: Hash,
    },
    /// A consensus rule refused the operation.
    #[error("consensus: {0}")]
    Consensus(String),
    /// Something asked for is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// File system.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rocksdb::Error> for ChainError {
    fn from(e: rocksdb::Error) -> Self {
        ChainError::Db(e.to_string())
    }
}

impl From<aergo_types::codec::DecodeError> for ChainError {
    fn from(e: aergo_types::codec::DecodeError) -> Self {
        ChainError::Corrupt(e.to_string())
    }
}
