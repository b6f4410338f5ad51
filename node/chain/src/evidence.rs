//! Evidence of a broken pre-confirmation (transaction kind 8, DPoS chains): verification and
//! penalty.
//!
//! A producer's pre-confirmation promises that its block for `(slot, height, parent)` holds a
//! transaction at a position with a receipt. The evidence ([`aergo_types::evidence::Evidence`])
//! pairs it with a block header signed by the same key for the same slot, height and parent,
//! and that block's transaction hashes (and optionally receipt hashes), whose Merkle roots
//! must be the header's. It proves a broken promise when the promised position is past the
//! block's end, holds another transaction, or (with receipt hashes) another receipt. Both
//! statements are signed by the producer, so nothing about the chain's own blocks is needed:
//! the contradiction is in the producer's signatures alone. An honest producer signs one
//! header per slot (the slot guard) and seals exactly what it promised (the promise log), so
//! it can never be convicted; a missing block (an orphaned slot, a power cut) contradicts
//! nothing.
//!
//! The checks are [`Evidence::verify`] (in `aergo-types`, so the CLI builds and checks
//! evidence before sending it). Penalty, once per producer and slot: `slash_fraction`
//! (governance, basis points; default 10%) of the producer's stake is burned, and of each of
//! its unstaking entries still locked (up to `staking::MAX_SLASHED_ENTRIES`, earliest unlock
//! first: unstaking right before the evidence lands does not escape it), and the producer is
//! excluded from every later election
//! (`staking::election_inputs` skips it). State keys (staking's prefix):
//! `s 08 K slot` → the burned amount (u128), `s 09 K` → the height of the first conviction.
//! Verification is a pure function of the payload and the chain id, so every node reaches the
//! same verdict, and evidence that proves nothing is refused statelessly
//! (`exec::check_stateless_with`, at admission and in blocks) before it costs a fee. A second
//! piece of evidence for the same producer and slot is a failed receipt ("already
//! penalised"), the one rule that needs the state.

use crate::ctx::BlockCtx;
use crate::error::ChainError;
use crate::staking::{self, decode_u128, key, SLASH_DENOMINATOR};
use crate::state::{Overlay, StateView};
use aergo_types::evidence::Evidence;
use aergo_types::{Address, PublicKey, SignedTx};

const PENALISED: u8 = 0x08;
const EXCLUDED: u8 = 0x09;

fn penalised_key(k: &PublicKey, slot: u64) -> Vec<u8> {
    key(PENALISED, &[&k.0, &slot.to_be_bytes()])
}

fn excluded_key(k: &PublicKey) -> Vec<u8> {
    key(EXCLUDED, &[&k.0])
}

/// Whether producer `k` has been convicted of a broken pre-confirmation (and so is never
/// elected again).
pub fn excluded(view: &dyn StateView, k: &PublicKey) -> Result<bool, ChainError> {
    Ok(view.get(&excluded_key(k))?.is_some())
}

/// Executes an evidence transaction after the nonce and fee checks: verifies it, then burns
/// `slash_fraction` of the producer's stake and excludes it from elections, once per
/// producer and slot. `Ok(Err(reason))` is a failed receipt (nothing written); `Ok(Ok(text))`
/// the receipt's result.
pub fn execute(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    ctx: &BlockCtx,
) -> Result<Result<String, String>, ChainError> {
    if ctx.dpos.is_none() {
        return Ok(Err("evidence needs a DPoS chain".into()));
    }
    let e = match Evidence::decode(&tx.tx.payload) {
        Ok(e) => e,
        Err(err) => return Ok(Err(format!("malformed evidence: {err}"))),
    };
    let c = match e.verify(&ctx.chain_id) {
        Ok(c) => c,
        Err(why) => return Ok(Err(format!("not evidence of a broken promise: {why}"))),
    };
    let pk = penalised_key(&c.producer, c.slot);
    if let Some(b) = o.get(&pk)? {
        return Ok(Err(format!(
            "already penalised: {} burned for slot {}",
            decode_u128(&b)?,
            c.slot
        )));
    }
    let addr = Address::from_public_key(&c.producer);
    let mut stake = staking::stake_of(o, &addr)?;
    let fraction = staking::slash_fraction(o)?;
    // amount × fraction / 10,000 without overflow: the stake is at most the total supply
    // (< 2^90) and the fraction at most 10,000 (< 2^14).
    let burned = stake
        .amount
        .checked_mul(fraction)
        .map(|v| v / SLASH_DENOMINATOR)
        .ok_or_else(|| ChainError::Corrupt("stake too large to slash".into()))?;
    stake.amount -= burned.min(stake.amount);
    stake.height = ctx.height;
    staking::put_stake(o, &addr, &stake);
    // Stake on its way out (unstaking entries not yet unlocked) is slashed alike.
    let burned = burned
        .checked_add(staking::slash_unstaking(o, &addr, fraction)?)
        .ok_or_else(|| ChainError::Corrupt("slashed amount overflow".into()))?;
    o.writes.insert(pk, Some(burned.to_be_bytes().to_vec()));
    let ek = excluded_key(&c.producer);
    if o.get(&ek)?.is_none() {
        o.writes.insert(ek, Some(ctx.height.to_be_bytes().to_vec()));
    }
    Ok(Ok(format!(
        "producer {addr} broke its pre-confirmation in slot {}: {}; {burned} aer of its stake burned, excluded from elections",
        c.slot, c.how
    )))
}

/// Most convictions [`convictions`] counts (a status figure: it stops there).
pub const MAX_COUNTED: usize = 10_000;

/// Convictions recorded in `view` (penalised producer and slot pairs), up to
/// [`MAX_COUNTED`].
pub fn convictions(view: &dyn StateView) -> Result<u64, ChainError> {
    let start = key(PENALISED, &[]);
    let end = key(PENALISED + 1, &[]);
    Ok(view.scan_limit(&start, &end, MAX_COUNTED)?.len() as u64)
}

/// The burned amount recorded for producer `k`'s broken promise in `slot`, if penalised.
pub fn penalty(view: &dyn StateView, k: &PublicKey, slot: u64) -> Result<Option<u128>, ChainError> {
    view.get(&penalised_key(k, slot))?
        .map(|b| decode_u128(&b))
        .transpose()
}
