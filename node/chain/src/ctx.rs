//! What a block gives execution: [`BlockCtx`] (height, time, producer, chain id, gas
//! schedule and limits, and on DPoS chains the staking settings with the schedule of the
//! block's round) and the gas limits ([`GasLimits`]).
//!
//! A leaf module: it names types only (`aergo-types`, the DPoS [`Schedule`] and the
//! directory's branch record [`crate::directory::DirBranch`]; its gas defaults come from the
//! leaf [`crate::limits`]) and imports
//! nothing of execution, staking or rounds, so `exec` → `staking` → (`ctx`, `dpos`) and
//! `rounds` → `staking` form no cycle. The engine computes the round's schedule at block
//! start ([`crate::engine::Engine::begin_block`]) and hands it to execution here; staking
//! reads it from the context instead of from the rounds bookkeeping.

use std::sync::Arc;

use aergo_types::genesis::{DposGenesis, GasParams};
use aergo_types::{Address, Hash, SignedTx};

use crate::dpos::Schedule;

pub use crate::limits::{DEFAULT_BLOCK_GAS_LIMIT, DEFAULT_TX_GAS_CAP};

/// The gas limits a block is built and validated under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasLimits {
    /// Most gas one transaction may ask for.
    pub tx_gas_cap: u64,
    /// Most gas one block may use (counting each transaction's whole gas limit when it is
    /// added: used so far + its limit ≤ this).
    pub block_gas_limit: u64,
}

impl GasLimits {
    /// The genesis values, or the defaults where it sets none.
    pub fn from_genesis(g: &GasParams) -> Self {
        Self::new(
            g.tx_gas_cap.unwrap_or(DEFAULT_TX_GAS_CAP),
            g.block_gas_limit.unwrap_or(DEFAULT_BLOCK_GAS_LIMIT),
        )
    }
    /// Limits from values; a cap above the block limit acts as the block limit (a
    /// transaction that could never fit a block is refused at admission).
    pub fn new(tx_gas_cap: u64, block_gas_limit: u64) -> Self {
        Self {
            tx_gas_cap: tx_gas_cap.min(block_gas_limit),
            block_gas_limit,
        }
    }
    /// Why `tx` may not be admitted or included under these limits (`None`: it may).
    pub fn check_tx(&self, tx: &SignedTx) -> Option<String> {
        (tx.tx.gas_limit > self.tx_gas_cap).then(|| {
            format!(
                "gas limit {} exceeds this chain's per-transaction cap of {} gas",
                tx.tx.gas_limit, self.tx_gas_cap
            )
        })
    }
}

impl Default for GasLimits {
    fn default() -> Self {
        Self::new(DEFAULT_TX_GAS_CAP, DEFAULT_BLOCK_GAS_LIMIT)
    }
}

/// Which kind of chain a block belongs to, for the transaction kinds it enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainRole {
    /// The root chain `aergo`: `repo_create` is enabled and costs this fee (aer).
    Root {
        /// The creation fee in aer.
        repo_create_fee: u128,
    },
    /// A repository's ledger.
    Repo,
    /// A repository's directory.
    Directory {
        /// The repository's id (its ledger's chain id): the parent id of its top-level
        /// branches.
        repo: Hash,
    },
    /// A branch of the root chain or of a repository's ledger.
    Branch,
}

impl ChainRole {
    /// The role a genesis gives its chain.
    pub fn of(g: &aergo_types::Genesis) -> Self {
        if g.branch.is_some() {
            return ChainRole::Branch;
        }
        match &g.repo {
            None => ChainRole::Root {
                repo_create_fee: g.repo_create_fee(),
            },
            Some(r) => match r.part {
                aergo_types::repo::RepoPart::Ledger => ChainRole::Repo,
                aergo_types::repo::RepoPart::Directory => ChainRole::Directory {
                    repo: aergo_types::repo::repo_id(&r.root_chain_id, &r.name),
                },
            },
        }
    }
}

/// What a block gives execution.
#[derive(Debug, Clone)]
pub struct BlockCtx {
    /// Height of the block being executed.
    pub height: u64,
    /// Its timestamp.
    pub timestamp_ms: u64,
    /// Its producer (receives the fees).
    pub producer: Address,
    /// The chain id.
    pub chain_id: Hash,
    /// Gas schedule.
    pub gas: GasParams,
    /// DPoS: the staking settings and the schedule of the block's round (`None` on solo and
    /// PoA chains: the staking kinds are refused there).
    pub dpos: Option<DposCtx>,
    /// The gas limits in force for this block (its parent's state).
    pub limits: GasLimits,
    /// Root, repository or directory.
    pub role: ChainRole,
    /// A repository ledger's write rule, from the directory height its header names.
    pub access: Option<Arc<Access>>,
    /// The block's parent (a branch created in this block takes its id from it).
    pub parent: Hash,
    /// Set on a merge block: what it merges.
    pub merge: Option<MergeCtx>,
    /// The AergoSQL engine version a contract deployed in this block gets (the genesis's
    /// `sql_engine` activations at this height; [`crate::contracts::engine_at`]).
    pub sql_engine: aergo_sql::EngineVersion,
}

/// What a merge block merges (from its header's `merge` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeCtx {
    /// The source branch's id: the chain id its merged transactions sign.
    pub source: Hash,
    /// The source height merged up to.
    pub source_height: u64,
    /// Auto (replay on the target) or consistent (three-way merge of state).
    pub strategy: aergo_types::block_ext::MergeStrategy,
}

/// Who may send transactions to a repository: its directory at one final height.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The repository's name (for errors).
    pub repo: String,
    /// Anyone may write.
    pub anonymous_write: bool,
    /// Members and their roles.
    pub roles: std::collections::BTreeMap<Address, aergo_types::repo::Role>,
    /// The directory's records of the branches forking this chain, by name
    /// ([`crate::branches::Records`]).
    pub branches: Vec<(String, crate::directory::DirBranch)>,
}

impl Access {
    /// Why `from` may not send a transaction (`None`: it may).
    pub fn write_error(&self, from: &Address) -> Option<String> {
        use aergo_types::repo::Role;
        if self.anonymous_write {
            return None;
        }
        match self.roles.get(from) {
            Some(Role::Write | Role::Admin) => None,
            r => Some(format!(
                "account {from} has {} in repository `{}`; sending transactions needs the `write` role",
                r.map(|r| format!("the `{}` role", r.name()))
                    .unwrap_or_else(|| "no role".into()),
                self.repo
            )),
        }
    }
}

/// What a DPoS block gives execution: the staking settings (genesis) and the schedule of the
/// block's round (after the block-start writes: a block that opens a round sees the new one).
#[derive(Debug, Clone)]
pub struct DposCtx {
    /// The DPoS genesis settings (initial governance values).
    pub genesis: Arc<DposGenesis>,
    /// The schedule of the block's round: who may vote on governance.
    pub schedule: Schedule,
}

/// A block context for unit tests: a root chain (chain id `H("c")`), the gas schedule of the
/// tests (base 1,000, 10 per byte, minimum price 1), default limits, no DPoS, engine 1.
#[cfg(test)]
pub(crate) fn test_ctx(height: u64, producer_seed: u8) -> BlockCtx {
    use aergo_types::{Aer, Keypair};
    BlockCtx {
        height,
        timestamp_ms: 0,
        producer: Address::from_public_key(&Keypair::from_seed(&[producer_seed; 32]).public()),
        chain_id: Hash::of(b"c"),
        gas: GasParams {
            base: 1000,
            per_byte: 10,
            min_price: Aer(1),
            tx_gas_cap: None,
            block_gas_limit: None,
        },
        dpos: None,
        limits: GasLimits::default(),
        role: ChainRole::Root { repo_create_fee: 0 },
        access: None,
        parent: Hash::ZERO,
        merge: None,
        sql_engine: aergo_sql::EngineVersion::V1,
    }
}
