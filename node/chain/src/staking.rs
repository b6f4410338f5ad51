//! Staking, voting, BP registration and governance as system transactions (DPoS chains).
//!
//! STUB: the interface the chain relies on; the implementation is in progress.

use crate::error::ChainError;
use crate::exec::BlockCtx;
use crate::state::{Overlay, StateView, WriteSet};
use aergo_types::genesis::{DposGenesis, Genesis};
use aergo_types::{Address, PublicKey, SignedTx};
use std::collections::{BTreeMap, BTreeSet};

/// The governance parameters in force (genesis values until a governance vote changes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovParams {
    /// Block producers per schedule.
    pub bp_count: usize,
    /// Most candidates one account may vote for.
    pub max_votes: usize,
    /// Least stake to register as a candidate.
    pub min_stake: u128,
    /// Blocks an unstaked amount stays locked.
    pub unstake_lock_blocks: u64,
}

/// What an election reads from state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElectionInputs {
    /// Registered candidates.
    pub candidates: BTreeSet<PublicKey>,
    /// Each account's stake.
    pub stakes: BTreeMap<Address, u128>,
    /// Each account's ballot.
    pub votes: BTreeMap<Address, Vec<PublicKey>>,
}

/// The governance parameters in force in `view`.
pub fn gov_params(_view: &dyn StateView, d: &DposGenesis) -> Result<GovParams, ChainError> {
    Ok(GovParams {
        bp_count: d.bp_count,
        max_votes: d.max_votes,
        min_stake: d.min_stake.0,
        unstake_lock_blocks: d.unstake_lock_blocks,
    })
}

/// Genesis writes for a DPoS chain: each genesis BP's stake (taken from its balance — the
/// account records written here replace the plain genesis balances), its registration and
/// its vote for itself. `writes` already holds the genesis balances.
pub fn genesis_writes(_g: &Genesis, _writes: &mut WriteSet) -> Result<(), ChainError> {
    Ok(())
}

/// Candidates, stakes and ballots in `view`.
pub fn election_inputs(_view: &dyn StateView) -> Result<ElectionInputs, ChainError> {
    Ok(ElectionInputs::default())
}

/// Executes a system transaction (stake, unstake, vote, register, governance) on `o` after
/// the nonce and fee checks. `Ok(Err(reason))` is a failed receipt; `Err` a storage error.
pub fn execute(
    _o: &mut Overlay<'_>,
    _tx: &SignedTx,
    _ctx: &BlockCtx,
    _from: &Address,
) -> Result<Result<(), String>, ChainError> {
    Ok(Err("staking is not implemented yet".into()))
}

/// Releases every unstaking entry that unlocks at or before `height` into its owner's
/// balance; called at the start of every DPoS block.
pub fn begin_block(_o: &mut Overlay<'_>, _height: u64) -> Result<(), ChainError> {
    Ok(())
}
