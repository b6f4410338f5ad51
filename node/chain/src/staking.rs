//! Staking, voting, BP registration and governance as system transactions (DPoS chains).
//!
//! Everything lives in the chain state under the prefix `'s'` (accounts use `'a'`, contracts
//! `'c'`, round bookkeeping `'d'`), so it is versioned by height, covered by the state root
//! and reverted with the rest of the state on a reorganisation. Execution reads and writes
//! through [`StateView`]/[`Overlay`] only; every collection is a `BTreeMap`/`BTreeSet` or a
//! key-ordered scan, so the write set is a pure function of the state and the transactions.
//!
//! # State layout
//! `A` is an address as its 33 raw bytes (tag ‖ key), `K` a 32-byte public key, integers
//! big-endian.
//!
//! | key | value | meaning |
//! | --- | --- | --- |
//! | `s 01 A` | `amount u128 ‖ height u64` | staked aer and the height of the last change (absent = 0) |
//! | `s 02 A unlock:u64` | `amount u128` | an unstaking entry: returns to the balance at `unlock` |
//! | `s 03 unlock:u64 A` | empty | index of the entries by unlock height ([`begin_block`] scans a prefix) |
//! | `s 04 A` | `K*` (1..=1000 keys) | the account's ballot, in the order given (absent = no ballot) |
//! | `s 05 A` | `height u64 ‖ p2p address (UTF-8)` | a BP candidate registration (height of first registration) |
//! | `s 06 P` | `value u128` | governance parameter `P` in force |
//! | `s 07 P K` | `value u128` | a pending governance vote by BP `K` for parameter `P` |
//! | `s 08 K slot:u64` | `burned u128` | a broken pre-confirmation of BP `K` in `slot` was penalised (`crate::evidence`) |
//! | `s 09 K` | `height u64` | BP `K` is excluded from elections since `height` (`crate::evidence`) |
//!
//! Parameters `P`: `1` bp_count, `2` max_votes, `3` min_stake (aer), `4` unstake_lock_blocks,
//! `5` tx_gas_cap, `6` block_gas_limit, `7` slash_fraction (basis points, default 1,000;
//! recorded only once voted, like the gas limits). [`genesis_writes`] records the first four from the
//! genesis, so [`gov_params`] and [`election_inputs`] read them from state; a missing record
//! falls back to the genesis value (respectively 0 for the election's min_stake filter).
//! The gas limits (5, 6) are recorded only once a governance vote sets them (so genesis
//! state roots of chains created before they existed do not change); until then
//! [`gas_limits`] gives the genesis `gas` values or the defaults. The block interval and the
//! round length (`round_slots`) are genesis-only: no governance vote changes them.
//!
//! # Transactions (payloads are UTF-8 JSON, unknown fields refused; `to` must be absent)
//! - `stake` (kind 3): `amount` > 0 aer moves from the balance to the stake; empty payload.
//! - `unstake` (kind 4): `{"amount":"<aer>"}`, transaction `amount` 0. The amount leaves the
//!   stake into an unstaking entry unlocking at `height + unstake_lock_blocks`; at the start
//!   of the block at that height ([`begin_block`]) it returns to the balance. A registered
//!   candidate cannot unstake below `min_stake`: it unregisters first.
//! - `vote` (kind 5): `{"candidates":["<address>",…]}`, at most `max_votes` distinct
//!   registered candidates; replaces the ballot (an empty list clears it). The voter needs a
//!   stake (clearing does not); its whole current stake weighs on every candidate of the
//!   ballot at each election (a ballot longer than a later, lowered `max_votes` counts its
//!   first entries only).
//! - `register_bp` (kind 6): `{}` or `{"p2p_addr":"/ip4/…/tcp/…/p2p/…"}` (≤ 256 printable
//!   ASCII characters starting with `/`) registers the sender as a candidate; it needs a
//!   stake of at least `min_stake` (and more than 0). Registering again replaces the address
//!   (none clears it) and keeps the registration height. `{"unregister":true}` withdraws.
//!   A registered candidate whose stake falls below `min_stake` (governance raised it) stays
//!   registered but is not elected until it stakes enough.
//! - `governance` (kind 7): `{"param":"bp_count"|"max_votes"|"min_stake"|
//!   "unstake_lock_blocks"|"tx_gas_cap"|"block_gas_limit","value":"<decimal>"}`; only a BP of the current schedule may vote,
//!   one vote per BP and parameter (a new vote replaces the old one). When
//!   `floor(2N/3)+1` BPs of the current schedule (`N` its size) vote for the same value, the
//!   parameter takes it and that parameter's votes are cleared. Bounds: bp_count and
//!   max_votes 1..=1000, unstake_lock_blocks ≤ 10,000,000, min_stake ≤ the total supply,
//!   tx_gas_cap and block_gas_limit 3,000,000..=10,000,000,000 (a cap above the block limit
//!   acts as the block limit). New values apply from the next transaction (min_stake, lock),
//!   the next block (gas limits) or the next election (bp_count, max_votes).
//!
//! The payload shape is checked before admission ([`parse_system_tx`], called by
//! `exec::check_stateless_with`); the state rules at execution, where a failure is a failed
//! receipt that keeps only the nonce and the fee (intrinsic gas).

use crate::ctx::{BlockCtx, GasLimits, DEFAULT_TX_GAS_CAP};
use crate::dpos::{self, Schedule};
use crate::error::ChainError;
use crate::state::{account_key, Account, Overlay, StateView, WriteSet};
use aergo_types::address::TAG_ACCOUNT;
use aergo_types::genesis::{
    DposGenesis, GasParams, Genesis, MAX_GAS_LIMIT_PARAM, MIN_GAS_LIMIT_PARAM,
};
use aergo_types::{Address, PublicKey, SignedTx, Tx, TxKind, TOTAL_SUPPLY};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The state-key prefix of everything staking keeps.
pub const PREFIX: u8 = b's';
const STAKE: u8 = 0x01;
const UNSTAKING: u8 = 0x02;
const UNLOCK_INDEX: u8 = 0x03;
const BALLOT: u8 = 0x04;
const CANDIDATE: u8 = 0x05;
const GOV_PARAM: u8 = 0x06;
const GOV_VOTE: u8 = 0x07;

pub use crate::limits::{
    MAX_LIST_PARAM, MAX_P2P_ADDR, MAX_SYSTEM_PAYLOAD, MAX_UNSTAKE_LOCK_BLOCKS,
};

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

/// A governance parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GovParam {
    /// `bp_count`.
    BpCount = 1,
    /// `max_votes`.
    MaxVotes = 2,
    /// `min_stake` (aer).
    MinStake = 3,
    /// `unstake_lock_blocks`.
    UnstakeLockBlocks = 4,
    /// `tx_gas_cap`: most gas one transaction may ask for.
    TxGasCap = 5,
    /// `block_gas_limit`: most gas one block may use.
    BlockGasLimit = 6,
    /// `slash_fraction`: the share of a producer's stake burned for a broken
    /// pre-confirmation, in basis points (1/10,000).
    SlashFraction = 7,
}

impl GovParam {
    /// Every parameter, in id order.
    pub const ALL: [GovParam; 7] = [
        GovParam::BpCount,
        GovParam::MaxVotes,
        GovParam::MinStake,
        GovParam::UnstakeLockBlocks,
        GovParam::TxGasCap,
        GovParam::BlockGasLimit,
        GovParam::SlashFraction,
    ];
    /// The parameters [`genesis_writes`] records.
    const AT_GENESIS: [GovParam; 4] = [
        GovParam::BpCount,
        GovParam::MaxVotes,
        GovParam::MinStake,
        GovParam::UnstakeLockBlocks,
    ];

    /// The name used in payloads and RPC.
    pub fn name(self) -> &'static str {
        match self {
            GovParam::BpCount => "bp_count",
            GovParam::MaxVotes => "max_votes",
            GovParam::MinStake => "min_stake",
            GovParam::UnstakeLockBlocks => "unstake_lock_blocks",
            GovParam::TxGasCap => "tx_gas_cap",
            GovParam::BlockGasLimit => "block_gas_limit",
            GovParam::SlashFraction => "slash_fraction",
        }
    }

    /// From its name.
    pub fn from_name(s: &str) -> Option<Self> {
        GovParam::ALL.into_iter().find(|p| p.name() == s)
    }

    fn from_id(b: u8) -> Option<Self> {
        GovParam::ALL.into_iter().find(|p| *p as u8 == b)
    }

    /// Checks `value` against the parameter's bounds.
    pub fn check(self, value: u128) -> Result<(), String> {
        let (lo, hi) = match self {
            GovParam::BpCount | GovParam::MaxVotes => (1, MAX_LIST_PARAM),
            GovParam::MinStake => (0, TOTAL_SUPPLY),
            GovParam::UnstakeLockBlocks => (0, MAX_UNSTAKE_LOCK_BLOCKS),
            GovParam::TxGasCap | GovParam::BlockGasLimit => {
                (MIN_GAS_LIMIT_PARAM as u128, MAX_GAS_LIMIT_PARAM as u128)
            }
            GovParam::SlashFraction => (0, SLASH_DENOMINATOR),
        };
        if value < lo || value > hi {
            return Err(format!(
                "{} must be between {lo} and {hi}; {value} is out of bounds",
                self.name()
            ));
        }
        Ok(())
    }

    fn of(self, g: &GovParams) -> Option<u128> {
        match self {
            GovParam::BpCount => Some(g.bp_count as u128),
            GovParam::MaxVotes => Some(g.max_votes as u128),
            GovParam::MinStake => Some(g.min_stake),
            GovParam::UnstakeLockBlocks => Some(g.unstake_lock_blocks as u128),
            GovParam::TxGasCap | GovParam::BlockGasLimit | GovParam::SlashFraction => None,
        }
    }
}

/// A system transaction, parsed and checked statelessly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemOp {
    /// Move `amount` from the balance to the stake.
    Stake {
        /// Aer.
        amount: u128,
    },
    /// Move `amount` from the stake to an unstaking entry.
    Unstake {
        /// Aer.
        amount: u128,
    },
    /// Replace the ballot.
    Vote {
        /// Distinct account addresses, in the order given.
        candidates: Vec<Address>,
    },
    /// Register (or update the registration) as a BP candidate.
    Register {
        /// The libp2p address, informational.
        p2p_addr: Option<String>,
    },
    /// Withdraw the registration.
    Unregister,
    /// Vote for a governance parameter value.
    Governance {
        /// Which parameter.
        param: GovParam,
        /// The value proposed.
        value: u128,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnstakePayload {
    amount: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VotePayload {
    candidates: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterPayload {
    #[serde(default)]
    p2p_addr: Option<String>,
    #[serde(default)]
    unregister: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GovPayload {
    param: String,
    value: String,
}

fn json<'a, T: Deserialize<'a>>(payload: &'a [u8], what: &str, form: &str) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| format!("{what} payload must be {form}: {e}"))
}

fn decimal(s: &str, what: &str) -> Result<u128, String> {
    if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{what} must be a decimal string of digits (e.g. \"1000\"), got {:?}",
            s.chars().take(64).collect::<String>()
        ));
    }
    s.parse::<u128>()
        .map_err(|_| format!("{what} {s} is too large"))
}

/// Checks a p2p address: 1..=256 printable ASCII characters (no spaces), starting with `/`.
pub fn check_p2p_addr(a: &str) -> Result<(), String> {
    if a.is_empty() {
        return Err("p2p_addr is empty: omit it instead".into());
    }
    if a.len() > MAX_P2P_ADDR {
        return Err(format!(
            "p2p_addr is {} bytes; the limit is {MAX_P2P_ADDR}",
            a.len()
        ));
    }
    if !a.starts_with('/') || !a.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "p2p_addr must be a multiaddr such as /ip4/10.0.0.2/tcp/7846/p2p/<peer id> \
             (printable ASCII, no spaces)"
                .into(),
        );
    }
    Ok(())
}

/// Parses and checks a system transaction without state: kind, recipient, amount, payload
/// shape and bounds. Every other kind is an error.
pub fn parse_system_tx(tx: &Tx) -> Result<SystemOp, String> {
    let kind = match tx.kind {
        TxKind::Stake => "stake",
        TxKind::Unstake => "unstake",
        TxKind::Vote => "vote",
        TxKind::RegisterBp => "register_bp",
        TxKind::Governance => "governance",
        k => return Err(format!("{k:?} is not a staking transaction")),
    };
    if tx.to.is_some() {
        return Err(format!("{kind} transactions have no recipient"));
    }
    if tx.payload.len() > MAX_SYSTEM_PAYLOAD {
        return Err(format!(
            "the {kind} payload is {} bytes; the limit is {MAX_SYSTEM_PAYLOAD}",
            tx.payload.len()
        ));
    }
    if tx.kind == TxKind::Stake {
        if tx.amount == 0 {
            return Err("a stake transaction stakes its amount, which must be positive".into());
        }
        if !tx.payload.is_empty() {
            return Err("a stake transaction carries no payload".into());
        }
        return Ok(SystemOp::Stake { amount: tx.amount });
    }
    if tx.amount != 0 {
        return Err(format!(
            "{kind} transactions move no funds: the amount must be 0{}",
            if tx.kind == TxKind::Unstake {
                " (the amount to unstake goes in the payload: {\"amount\":\"<aer>\"})"
            } else {
                ""
            }
        ));
    }
    match tx.kind {
        TxKind::Unstake => {
            let p: UnstakePayload = json(&tx.payload, kind, "{\"amount\":\"<aer>\"}")?;
            let amount = decimal(&p.amount, "amount")?;
            if amount == 0 {
                return Err("the amount to unstake must be positive".into());
            }
            Ok(SystemOp::Unstake { amount })
        }
        TxKind::Vote => {
            let p: VotePayload = json(&tx.payload, kind, "{\"candidates\":[\"<address>\",…]}")?;
            if p.candidates.len() as u128 > MAX_LIST_PARAM {
                return Err(format!(
                    "a ballot names at most {MAX_LIST_PARAM} candidates; this one names {}",
                    p.candidates.len()
                ));
            }
            let mut seen = BTreeSet::new();
            let mut candidates = Vec::with_capacity(p.candidates.len());
            for s in &p.candidates {
                let a = Address::decode(s).map_err(|e| format!("candidate: {e}"))?;
                if a.tag != TAG_ACCOUNT {
                    return Err(format!("candidate {a} is a contract, not an account"));
                }
                if !seen.insert(a) {
                    return Err(format!("candidate {a} appears twice in the ballot"));
                }
                candidates.push(a);
            }
            Ok(SystemOp::Vote { candidates })
        }
        TxKind::RegisterBp => {
            if tx.payload.is_empty() {
                return Ok(SystemOp::Register { p2p_addr: None });
            }
            let p: RegisterPayload = json(
                &tx.payload,
                kind,
                "{}, {\"p2p_addr\":\"/ip4/…\"} or {\"unregister\":true}",
            )?;
            if p.unregister {
                if p.p2p_addr.is_some() {
                    return Err("unregister takes no p2p_addr".into());
                }
                return Ok(SystemOp::Unregister);
            }
            if let Some(a) = &p.p2p_addr {
                check_p2p_addr(a)?;
            }
            Ok(SystemOp::Register {
                p2p_addr: p.p2p_addr,
            })
        }
        _ => {
            let p: GovPayload = json(
                &tx.payload,
                kind,
                "{\"param\":\"bp_count|max_votes|min_stake|unstake_lock_blocks|tx_gas_cap|block_gas_limit\",\"value\":\"<decimal>\"}",
            )?;
            let param = GovParam::from_name(&p.param).ok_or_else(|| {
                format!(
                    "unknown governance parameter {:?}: one of bp_count, max_votes, min_stake, \
                     unstake_lock_blocks, tx_gas_cap, block_gas_limit (the block interval and round length are fixed in genesis)",
                    p.param.chars().take(64).collect::<String>()
                )
            })?;
            let value = decimal(&p.value, "value")?;
            param.check(value)?;
            Ok(SystemOp::Governance { param, value })
        }
    }
}

// ---- keys and records ----

pub(crate) fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![PREFIX, tag];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// State key of an account's stake record.
pub fn stake_key(a: &Address) -> Vec<u8> {
    key(STAKE, &[&a.to_raw()])
}
fn unstaking_key(a: &Address, unlock: u64) -> Vec<u8> {
    key(UNSTAKING, &[&a.to_raw(), &unlock.to_be_bytes()])
}
fn unlock_index_key(unlock: u64, a: &Address) -> Vec<u8> {
    key(UNLOCK_INDEX, &[&unlock.to_be_bytes(), &a.to_raw()])
}
/// State key of an account's ballot.
pub fn ballot_key(a: &Address) -> Vec<u8> {
    key(BALLOT, &[&a.to_raw()])
}
/// State key of a candidate registration.
pub fn candidate_key(a: &Address) -> Vec<u8> {
    key(CANDIDATE, &[&a.to_raw()])
}
fn gov_param_key(p: GovParam) -> Vec<u8> {
    key(GOV_PARAM, &[&[p as u8]])
}
fn gov_vote_key(p: GovParam, voter: &PublicKey) -> Vec<u8> {
    key(GOV_VOTE, &[&[p as u8], &voter.0])
}

/// The smallest key after every key that starts with `p`.
pub(crate) fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return e;
        }
    }
    vec![0xff; p.len() + 1]
}

fn scan_prefix(view: &dyn StateView, p: &[u8]) -> Result<crate::state::Pairs, ChainError> {
    view.scan(p, &prefix_end(p))
}

fn corrupt(what: &str) -> ChainError {
    ChainError::Corrupt(format!("staking state: {what}"))
}

fn addr_at(k: &[u8], at: usize) -> Result<Address, ChainError> {
    let raw: [u8; 33] = k
        .get(at..at + 33)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("address in key"))?;
    Address::from_raw(&raw).map_err(|_| corrupt("address in key"))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, ChainError> {
    b.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt("height"))
}

pub(crate) fn decode_u128(b: &[u8]) -> Result<u128, ChainError> {
    let a: [u8; 16] = b.try_into().map_err(|_| corrupt("amount"))?;
    Ok(u128::from_be_bytes(a))
}

/// An account's stake record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StakeRecord {
    /// Staked aer.
    pub amount: u128,
    /// Height of the last change.
    pub height: u64,
}

impl StakeRecord {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.amount.to_be_bytes().to_vec();
        v.extend_from_slice(&self.height.to_be_bytes());
        v
    }
    fn decode(b: &[u8]) -> Result<Self, ChainError> {
        if b.len() != 24 {
            return Err(corrupt("stake record"));
        }
        Ok(StakeRecord {
            amount: decode_u128(&b[..16])?,
            height: u64_at(b, 16)?,
        })
    }
}

/// A candidate registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Its libp2p address (empty when none was given).
    pub p2p_addr: String,
    /// Height of the first registration.
    pub height: u64,
}

impl Registration {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.height.to_be_bytes().to_vec();
        v.extend_from_slice(self.p2p_addr.as_bytes());
        v
    }
    fn decode(b: &[u8]) -> Result<Self, ChainError> {
        let height = u64_at(b, 0)?;
        let p2p_addr = std::str::from_utf8(&b[8..])
            .map_err(|_| corrupt("p2p address"))?
            .to_string();
        Ok(Registration { p2p_addr, height })
    }
}

fn encode_ballot(keys: &[PublicKey]) -> Vec<u8> {
    keys.iter().flat_map(|k| k.0).collect()
}

fn decode_ballot(b: &[u8]) -> Result<Vec<PublicKey>, ChainError> {
    if !b.len().is_multiple_of(32) {
        return Err(corrupt("ballot"));
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut k = [0u8; 32];
            k.copy_from_slice(c);
            PublicKey(k)
        })
        .collect())
}

/// An account's stake (zero when absent).
pub fn stake_of(view: &dyn StateView, a: &Address) -> Result<StakeRecord, ChainError> {
    match view.get(&stake_key(a))? {
        Some(b) => StakeRecord::decode(&b),
        None => Ok(StakeRecord::default()),
    }
}

pub(crate) fn put_stake(o: &mut Overlay<'_>, a: &Address, s: &StakeRecord) {
    let v = (s.amount > 0).then(|| s.encode());
    o.writes.insert(stake_key(a), v);
}

/// A candidate's registration, if registered.
pub fn registration(view: &dyn StateView, a: &Address) -> Result<Option<Registration>, ChainError> {
    view.get(&candidate_key(a))?
        .map(|b| Registration::decode(&b))
        .transpose()
}

fn gov_value(view: &dyn StateView, p: GovParam) -> Result<Option<u128>, ChainError> {
    view.get(&gov_param_key(p))?
        .map(|b| decode_u128(&b))
        .transpose()
}

/// The governance parameters in force in `view`: the genesis values of `d`, overridden by
/// the values recorded in state (at genesis and by governance votes).
pub fn gov_params(view: &dyn StateView, d: &DposGenesis) -> Result<GovParams, ChainError> {
    let size = |p: GovParam, dflt: usize| -> Result<usize, ChainError> {
        match gov_value(view, p)? {
            Some(v) => usize::try_from(v).map_err(|_| corrupt(p.name())),
            None => Ok(dflt),
        }
    };
    Ok(GovParams {
        bp_count: size(GovParam::BpCount, d.bp_count)?,
        max_votes: size(GovParam::MaxVotes, d.max_votes)?,
        min_stake: gov_value(view, GovParam::MinStake)?.unwrap_or(d.min_stake.0),
        unstake_lock_blocks: match gov_value(view, GovParam::UnstakeLockBlocks)? {
            Some(v) => u64::try_from(v).map_err(|_| corrupt("unstake_lock_blocks"))?,
            None => d.unstake_lock_blocks,
        },
    })
}

/// The gas limits in force in `view`: governance values recorded in state (DPoS), else the
/// genesis `gas` values, else the defaults.
pub fn gas_limits(view: &dyn StateView, g: &GasParams) -> Result<GasLimits, ChainError> {
    let genesis = GasLimits::from_genesis(g);
    let get = |p: GovParam, dflt: u64| -> Result<u64, ChainError> {
        match gov_value(view, p)? {
            Some(v) => u64::try_from(v).map_err(|_| corrupt(p.name())),
            None => Ok(dflt),
        }
    };
    Ok(GasLimits::new(
        get(
            GovParam::TxGasCap,
            g.tx_gas_cap.unwrap_or(DEFAULT_TX_GAS_CAP),
        )?,
        get(GovParam::BlockGasLimit, genesis.block_gas_limit)?,
    ))
}

/// `slash_fraction`'s unit: basis points.
pub const SLASH_DENOMINATOR: u128 = 10_000;
/// `slash_fraction` until a governance vote sets it: 10% of the stake.
pub const DEFAULT_SLASH_FRACTION: u128 = 1_000;

/// The `slash_fraction` in force in `view`, in basis points (recorded only once a governance
/// vote sets it, so genesis state roots do not change).
pub fn slash_fraction(view: &dyn StateView) -> Result<u128, ChainError> {
    Ok(gov_value(view, GovParam::SlashFraction)?.unwrap_or(DEFAULT_SLASH_FRACTION))
}

/// Genesis writes for a DPoS chain: each genesis BP's stake (taken from its balance — the
/// account records written here replace the plain genesis balances), its registration and
/// its vote for itself, and the four governance parameters. `writes` already holds the
/// genesis balances. Nothing on solo chains.
pub fn genesis_writes(g: &Genesis, writes: &mut WriteSet) -> Result<(), ChainError> {
    let Some(d) = &g.consensus.dpos else {
        return Ok(());
    };
    let bad = |m: String| ChainError::Consensus(format!("genesis: {m}"));
    for bp in &d.bps {
        let pk = bp
            .address
            .public_key()
            .ok_or_else(|| bad(format!("BP {} is not an account address", bp.address)))?;
        let ak = account_key(&bp.address);
        let mut acct = match writes.get(&ak) {
            Some(Some(v)) => Account::decode(v)?,
            _ => Account::default(),
        };
        acct.balance = acct.balance.checked_sub(bp.stake.0).ok_or_else(|| {
            bad(format!(
                "BP {} stakes {} aer but its balance is {} aer",
                bp.address, bp.stake.0, acct.balance
            ))
        })?;
        writes.insert(ak, Some(acct.encode()));
        if bp.stake.0 > 0 {
            let rec = StakeRecord {
                amount: bp.stake.0,
                height: 0,
            };
            writes.insert(stake_key(&bp.address), Some(rec.encode()));
        }
        let reg = Registration {
            p2p_addr: bp.p2p_addr.clone().unwrap_or_default(),
            height: 0,
        };
        writes.insert(candidate_key(&bp.address), Some(reg.encode()));
        writes.insert(ballot_key(&bp.address), Some(encode_ballot(&[pk])));
    }
    let params = GovParams {
        bp_count: d.bp_count,
        max_votes: d.max_votes,
        min_stake: d.min_stake.0,
        unstake_lock_blocks: d.unstake_lock_blocks,
    };
    for p in GovParam::AT_GENESIS {
        if let Some(v) = p.of(&params) {
            writes.insert(gov_param_key(p), Some(v.to_be_bytes().to_vec()));
        }
    }
    Ok(())
}

fn all_stakes(view: &dyn StateView) -> Result<BTreeMap<Address, StakeRecord>, ChainError> {
    let mut out = BTreeMap::new();
    for (k, v) in scan_prefix(view, &[PREFIX, STAKE])? {
        out.insert(addr_at(&k, 2)?, StakeRecord::decode(&v)?);
    }
    Ok(out)
}

fn all_registrations(view: &dyn StateView) -> Result<BTreeMap<Address, Registration>, ChainError> {
    let mut out = BTreeMap::new();
    for (k, v) in scan_prefix(view, &[PREFIX, CANDIDATE])? {
        out.insert(addr_at(&k, 2)?, Registration::decode(&v)?);
    }
    Ok(out)
}

fn all_ballots(view: &dyn StateView) -> Result<BTreeMap<Address, Vec<PublicKey>>, ChainError> {
    let mut out = BTreeMap::new();
    for (k, v) in scan_prefix(view, &[PREFIX, BALLOT])? {
        out.insert(addr_at(&k, 2)?, decode_ballot(&v)?);
    }
    Ok(out)
}

/// Candidates, stakes and ballots in `view`. Candidates are the registered accounts whose
/// stake is at least the `min_stake` recorded in state (0 if none is recorded), except
/// producers excluded by evidence of a broken pre-confirmation.
pub fn election_inputs(view: &dyn StateView) -> Result<ElectionInputs, ChainError> {
    let min_stake = gov_value(view, GovParam::MinStake)?.unwrap_or(0);
    let stakes: BTreeMap<Address, u128> = all_stakes(view)?
        .into_iter()
        .map(|(a, s)| (a, s.amount))
        .collect();
    let mut candidates = BTreeSet::new();
    for a in all_registrations(view)?.keys() {
        if stakes.get(a).copied().unwrap_or(0) >= min_stake {
            if let Some(pk) = a.public_key() {
                // A producer proven to have broken a pre-confirmation is never elected again.
                if !crate::evidence::excluded(view, &pk)? {
                    candidates.insert(pk);
                }
            }
        }
    }
    Ok(ElectionInputs {
        candidates,
        stakes,
        votes: all_ballots(view)?,
    })
}

/// Most unstaking entries of one account a slash reaches (the earliest unlocks first): the
/// scan stays bounded however many entries a producer made; the unstake lock gives evidence
/// time to land before any of them unlocks.
pub const MAX_SLASHED_ENTRIES: usize = 1024;

/// Burns `fraction` (basis points) of each of `a`'s unstaking entries (up to
/// [`MAX_SLASHED_ENTRIES`], earliest unlock first): stake on its way out is still at stake.
/// Returns the amount burned.
pub fn slash_unstaking(
    o: &mut Overlay<'_>,
    a: &Address,
    fraction: u128,
) -> Result<u128, ChainError> {
    let start = key(UNSTAKING, &[&a.to_raw()]);
    // Past every `start ‖ unlock:u64`.
    let end = [start.as_slice(), &[0xff; 8], &[0]].concat();
    let mut burned = 0u128;
    for (k, v) in o.scan_limit(&start, &end, MAX_SLASHED_ENTRIES)? {
        let amount = decode_u128(&v)?;
        // amount × fraction / 10,000 without overflow (amount < 2^90, fraction ≤ 10,000).
        let cut = amount
            .checked_mul(fraction)
            .map(|x| x / SLASH_DENOMINATOR)
            .ok_or_else(|| corrupt("unstaking entry too large to slash"))?
            .min(amount);
        if cut > 0 {
            o.writes
                .insert(k, Some((amount - cut).to_be_bytes().to_vec()));
            burned = burned
                .checked_add(cut)
                .ok_or_else(|| corrupt("slashed amount overflow"))?;
        }
    }
    Ok(burned)
}

/// Block start on DPoS chains: every unstaking entry with an unlock height at or below
/// `height` returns to its account's balance (a prefix scan of the unlock index).
pub fn begin_block(o: &mut Overlay<'_>, height: u64) -> Result<(), ChainError> {
    let start = key(UNLOCK_INDEX, &[]);
    let end = match height.checked_add(1) {
        Some(h) => key(UNLOCK_INDEX, &[&h.to_be_bytes()]),
        None => key(UNLOCK_INDEX + 1, &[]),
    };
    for (k, _) in o.scan(&start, &end)? {
        let unlock = u64_at(&k, 2)?;
        let a = addr_at(&k, 10)?;
        let ek = unstaking_key(&a, unlock);
        let amount = decode_u128(
            &o.get(&ek)?
                .ok_or_else(|| corrupt("index entry without its unstaking entry"))?,
        )?;
        let mut acct = o.account(&a)?;
        acct.balance = acct
            .balance
            .checked_add(amount)
            .ok_or_else(|| corrupt("balance overflow on release"))?;
        o.put_account(&a, &acct);
        o.writes.insert(ek, None);
        o.writes.insert(k, None);
    }
    Ok(())
}

/// Executes a system transaction (stake, unstake, vote, register, governance) on `o` after
/// the nonce and fee checks. `Ok(Err(reason))` is a failed receipt (nothing written); `Err`
/// a storage error. All writes land in `o` only on success.
pub fn execute(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    ctx: &BlockCtx,
    from: &Address,
) -> Result<Result<(), String>, ChainError> {
    let Some(d) = ctx.dpos.as_ref() else {
        return Ok(Err("staking transactions need a DPoS chain".into()));
    };
    let op = match parse_system_tx(&tx.tx) {
        Ok(op) => op,
        Err(m) => return Ok(Err(m)),
    };
    let (r, writes) = {
        let mut child = Overlay::new(&*o);
        let r = apply(
            &mut child,
            op,
            ctx.height,
            (&d.genesis, &d.schedule),
            from,
            &tx.tx.from,
        )?;
        (r, child.writes)
    };
    if r.is_ok() {
        o.writes.extend(writes);
    }
    Ok(r)
}

/// An amount for messages: exact AERGO, e.g. `1.5 AERGO`.
fn ag(aer: u128) -> String {
    format!("{} AERGO", aergo_types::Aer(aer).to_aergo_string())
}

fn apply(
    o: &mut Overlay<'_>,
    op: SystemOp,
    height: u64,
    (d, schedule): (&DposGenesis, &Schedule),
    from: &Address,
    from_key: &PublicKey,
) -> Result<Result<(), String>, ChainError> {
    macro_rules! fail {
        ($($t:tt)*) => { return Ok(Err(format!($($t)*))) };
    }
    let g = gov_params(o, d)?;
    match op {
        SystemOp::Stake { amount } => {
            let mut acct = o.account(from)?;
            let Some(rest) = acct.balance.checked_sub(amount) else {
                fail!(
                    "balance {} does not cover the stake of {}",
                    ag(acct.balance),
                    ag(amount)
                );
            };
            acct.balance = rest;
            o.put_account(from, &acct);
            let mut s = stake_of(o, from)?;
            let Some(total) = s.amount.checked_add(amount) else {
                fail!("stake overflow");
            };
            s.amount = total;
            s.height = height;
            put_stake(o, from, &s);
        }
        SystemOp::Unstake { amount } => {
            let mut s = stake_of(o, from)?;
            if s.amount < amount {
                fail!(
                    "cannot unstake {}: {from} has {} staked",
                    ag(amount),
                    ag(s.amount)
                );
            }
            let rest = s.amount - amount;
            if rest < g.min_stake && registration(o, from)?.is_some() {
                if s.amount <= g.min_stake {
                    fail!(
                        "{from} is a registered BP candidate and must keep min_stake ({}) \
                         staked: unregister first (aergo bp unregister)",
                        ag(g.min_stake)
                    );
                }
                fail!(
                    "{from} is a registered BP candidate and must keep min_stake ({}) \
                     staked: unstake at most {}, or unregister first (aergo bp unregister)",
                    ag(g.min_stake),
                    ag(s.amount - g.min_stake)
                );
            }
            s.amount = rest;
            s.height = height;
            put_stake(o, from, &s);
            let unlock = height.saturating_add(g.unstake_lock_blocks);
            let ek = unstaking_key(from, unlock);
            let before = match o.get(&ek)? {
                Some(b) => decode_u128(&b)?,
                None => 0,
            };
            let Some(total) = before.checked_add(amount) else {
                fail!("unstaking amount overflow");
            };
            o.writes.insert(ek, Some(total.to_be_bytes().to_vec()));
            o.writes
                .insert(unlock_index_key(unlock, from), Some(Vec::new()));
        }
        SystemOp::Vote { candidates } => {
            if candidates.len() > g.max_votes {
                fail!(
                    "a ballot names at most max_votes = {} candidates; this one names {}",
                    g.max_votes,
                    candidates.len()
                );
            }
            if !candidates.is_empty() && stake_of(o, from)?.amount == 0 {
                fail!("{from} has no stake: stake first, then vote");
            }
            let mut keys = Vec::with_capacity(candidates.len());
            for c in &candidates {
                if registration(o, c)?.is_none() {
                    fail!("{c} is not a registered BP candidate");
                }
                match c.public_key() {
                    Some(k) => keys.push(k),
                    None => fail!("candidate {c} is not an account"),
                }
            }
            let v = (!keys.is_empty()).then(|| encode_ballot(&keys));
            o.writes.insert(ballot_key(from), v);
        }
        SystemOp::Register { p2p_addr } => {
            let s = stake_of(o, from)?;
            if s.amount == 0 || s.amount < g.min_stake {
                fail!(
                    "registering as a BP candidate needs at least min_stake = {} staked \
                     (and more than 0); {from} has {}",
                    ag(g.min_stake),
                    ag(s.amount)
                );
            }
            let since = registration(o, from)?.map(|r| r.height).unwrap_or(height);
            let reg = Registration {
                p2p_addr: p2p_addr.unwrap_or_default(),
                height: since,
            };
            o.writes.insert(candidate_key(from), Some(reg.encode()));
        }
        SystemOp::Unregister => {
            if registration(o, from)?.is_none() {
                fail!("{from} is not a registered BP candidate");
            }
            o.writes.insert(candidate_key(from), None);
        }
        SystemOp::Governance { param, value } => {
            // The schedule of the block's round, from the block context.
            let members = schedule.members();
            if !members.contains(from_key) {
                fail!(
                    "only block producers of the current round may vote on governance; \
                     {from} is not one"
                );
            }
            o.writes.insert(
                gov_vote_key(param, from_key),
                Some(value.to_be_bytes().to_vec()),
            );
            let prefix = key(GOV_VOTE, &[&[param as u8]]);
            let votes = scan_prefix(o, &prefix)?;
            let mut agree = 0usize;
            for (k, v) in &votes {
                let voter: [u8; 32] = k
                    .get(3..35)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("governance vote key"))?;
                if members.contains(&PublicKey(voter)) && decode_u128(v)? == value {
                    agree += 1;
                }
            }
            if agree >= dpos::quorum(members.len()) {
                o.writes
                    .insert(gov_param_key(param), Some(value.to_be_bytes().to_vec()));
                for (k, _) in votes {
                    o.writes.insert(k, None);
                }
            }
        }
    }
    Ok(Ok(()))
}

// ---- queries (RPC) ----

/// An unstaking entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unstaking {
    /// Height at whose block start the amount returns to the balance.
    pub unlock_height: u64,
    /// Aer.
    pub amount: u128,
}

/// What an account has at stake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountStaking {
    /// Staked aer.
    pub staked: u128,
    /// Height of the stake's last change (0 when never staked).
    pub staked_height: u64,
    /// Pending unstaking entries, by unlock height.
    pub unstaking: Vec<Unstaking>,
    /// The ballot, in order.
    pub ballot: Vec<PublicKey>,
    /// The candidate registration, if any.
    pub candidate: Option<Registration>,
}

/// An account's stake, unstaking entries, ballot and registration in `view`.
pub fn account_staking(view: &dyn StateView, a: &Address) -> Result<AccountStaking, ChainError> {
    let s = stake_of(view, a)?;
    let mut unstaking = Vec::new();
    for (k, v) in scan_prefix(view, &key(UNSTAKING, &[&a.to_raw()]))? {
        unstaking.push(Unstaking {
            unlock_height: u64_at(&k, 35)?,
            amount: decode_u128(&v)?,
        });
    }
    let ballot = match view.get(&ballot_key(a))? {
        Some(b) => decode_ballot(&b)?,
        None => Vec::new(),
    };
    Ok(AccountStaking {
        staked: s.amount,
        staked_height: s.height,
        unstaking,
        ballot,
        candidate: registration(view, a)?,
    })
}

/// A registered candidate with its standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateInfo {
    /// Its account.
    pub address: Address,
    /// Its own stake.
    pub stake: u128,
    /// Stake-weighted votes (each voter's stake, counted once per candidate).
    pub tally: u128,
    /// Its registration.
    pub registration: Registration,
    /// Whether it can be elected: its stake meets `min_stake` and it is not excluded.
    pub eligible: bool,
    /// Convicted of a broken pre-confirmation (`crate::evidence`): never elected again.
    pub excluded: bool,
}

/// Every registered candidate with stake and tally, by tally descending then public key.
pub fn candidates(view: &dyn StateView, d: &DposGenesis) -> Result<Vec<CandidateInfo>, ChainError> {
    let g = gov_params(view, d)?;
    let regs = all_registrations(view)?;
    let stakes: BTreeMap<Address, u128> = all_stakes(view)?
        .into_iter()
        .map(|(a, s)| (a, s.amount))
        .collect();
    let keys: BTreeSet<PublicKey> = regs.keys().filter_map(|a| a.public_key()).collect();
    let ranked = dpos::elect(&keys, &stakes, &all_ballots(view)?, g.max_votes);
    let mut out = Vec::with_capacity(ranked.len());
    for (pk, tally) in ranked {
        let address = Address::from_public_key(&pk);
        let Some(registration) = regs.get(&address).cloned() else {
            continue;
        };
        let stake = stakes.get(&address).copied().unwrap_or(0);
        let excluded = crate::evidence::excluded(view, &pk)?;
        out.push(CandidateInfo {
            address,
            stake,
            tally,
            registration,
            eligible: stake >= g.min_stake && !excluded,
            excluded,
        });
    }
    Ok(out)
}

/// Pending votes for one value of one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGov {
    /// The parameter.
    pub param: GovParam,
    /// The value proposed.
    pub value: u128,
    /// BPs voting for it (members of the current schedule or not), by key.
    pub voters: Vec<PublicKey>,
}

/// The governance picture: parameters in force, pending votes, and the current schedule's
/// size and quorum (0 and 1 without a schedule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governance {
    /// In force.
    pub params: GovParams,
    /// Pending, by parameter then value.
    pub pending: Vec<PendingGov>,
    /// BPs in the current schedule.
    pub schedule_size: usize,
    /// Agreeing BPs needed.
    pub quorum: usize,
}

/// Parameters in force and pending governance votes in `view`.
/// `schedule` is the current round's (the caller reads it with [`crate::rounds::load_schedule`];
/// taking it here keeps `staking` free of an import of `rounds`, which imports `staking`).
pub fn governance(
    view: &dyn StateView,
    d: &DposGenesis,
    schedule: Option<&Schedule>,
) -> Result<Governance, ChainError> {
    let params = gov_params(view, d)?;
    let mut grouped: BTreeMap<(GovParam, u128), Vec<PublicKey>> = BTreeMap::new();
    for (k, v) in scan_prefix(view, &[PREFIX, GOV_VOTE])? {
        let param = k
            .get(2)
            .and_then(|b| GovParam::from_id(*b))
            .ok_or_else(|| corrupt("governance vote parameter"))?;
        let voter: [u8; 32] = k
            .get(3..35)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("governance vote key"))?;
        grouped
            .entry((param, decode_u128(&v)?))
            .or_default()
            .push(PublicKey(voter));
    }
    let schedule_size = schedule.map(Schedule::len).unwrap_or(0);
    Ok(Governance {
        params,
        pending: grouped
            .into_iter()
            .map(|((param, value), voters)| PendingGov {
                param,
                value,
                voters,
            })
            .collect(),
        schedule_size,
        quorum: dpos::quorum(schedule_size),
    })
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small test indices
mod tests {
    use super::*;
    use crate::state::MemState;

    fn addr(i: u8) -> Address {
        Address {
            tag: TAG_ACCOUNT,
            key: [i; 32],
        }
    }

    fn tx(kind: TxKind, amount: u128, payload: &str) -> Tx {
        Tx {
            kind,
            nonce: 0,
            from: PublicKey([1; 32]),
            to: None,
            amount,
            payload: payload.as_bytes().to_vec(),
            gas_limit: 100_000,
            gas_price: 1,
            chain_id: aergo_types::Hash::ZERO,
        }
    }

    #[test]
    fn keys_stay_inside_the_staking_prefix_and_apart() {
        let a = addr(0xff);
        let keys = [
            stake_key(&a),
            unstaking_key(&a, u64::MAX),
            unlock_index_key(u64::MAX, &a),
            ballot_key(&a),
            candidate_key(&a),
            gov_param_key(GovParam::UnstakeLockBlocks),
            gov_vote_key(GovParam::MinStake, &PublicKey([0xff; 32])),
        ];
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k[0], b's');
            assert_eq!(k[1], i as u8 + 1);
        }
        assert_eq!(prefix_end(&[b's', 3]), vec![b's', 4]);
        assert_eq!(prefix_end(&[b's', 3, 0xff]), vec![b's', 4]);
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let s = StakeRecord {
            amount: u128::MAX,
            height: 7,
        };
        assert_eq!(StakeRecord::decode(&s.encode()).unwrap(), s);
        assert!(StakeRecord::decode(&[0; 23]).is_err());
        let r = Registration {
            p2p_addr: "/ip4/1.2.3.4/tcp/1".into(),
            height: 9,
        };
        assert_eq!(Registration::decode(&r.encode()).unwrap(), r);
        assert!(Registration::decode(&[0; 7]).is_err());
        assert!(Registration::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff]).is_err());
        let b = vec![PublicKey([1; 32]), PublicKey([2; 32])];
        assert_eq!(decode_ballot(&encode_ballot(&b)).unwrap(), b);
        assert!(decode_ballot(&[0; 33]).is_err());
    }

    #[test]
    fn payloads_are_checked_statelessly() {
        let ok = |t: Tx| parse_system_tx(&t).unwrap();
        let err = |t: Tx| parse_system_tx(&t).unwrap_err();
        assert_eq!(ok(tx(TxKind::Stake, 5, "")), SystemOp::Stake { amount: 5 });
        assert!(err(tx(TxKind::Stake, 0, "")).contains("positive"));
        assert!(err(tx(TxKind::Stake, 5, "{}")).contains("no payload"));
        let mut to = tx(TxKind::Stake, 5, "");
        to.to = Some(addr(2));
        assert!(err(to).contains("no recipient"));

        assert_eq!(
            ok(tx(TxKind::Unstake, 0, r#"{"amount":"12"}"#)),
            SystemOp::Unstake { amount: 12 }
        );
        assert!(err(tx(TxKind::Unstake, 1, r#"{"amount":"12"}"#)).contains("payload"));
        assert!(err(tx(TxKind::Unstake, 0, r#"{"amount":12}"#)).contains("amount"));
        assert!(err(tx(TxKind::Unstake, 0, r#"{"amount":"0"}"#)).contains("positive"));
        assert!(err(tx(TxKind::Unstake, 0, r#"{"amount":"-1"}"#)).contains("digits"));
        assert!(err(tx(TxKind::Unstake, 0, r#"{"amount":"1","x":1}"#)).contains("unknown"));
        assert!(err(tx(
            TxKind::Unstake,
            0,
            r#"{"amount":"999999999999999999999999999999999999999"}"#
        ))
        .contains("too large"));

        let a2 = addr(2).encode();
        let a3 = addr(3).encode();
        assert_eq!(
            ok(tx(
                TxKind::Vote,
                0,
                &format!(r#"{{"candidates":["{a2}","{a3}"]}}"#)
            )),
            SystemOp::Vote {
                candidates: vec![addr(2), addr(3)]
            }
        );
        assert_eq!(
            ok(tx(TxKind::Vote, 0, r#"{"candidates":[]}"#)),
            SystemOp::Vote { candidates: vec![] }
        );
        assert!(err(tx(
            TxKind::Vote,
            0,
            &format!(r#"{{"candidates":["{a2}","{a2}"]}}"#)
        ))
        .contains("twice"));
        assert!(err(tx(TxKind::Vote, 0, r#"{"candidates":["nope"]}"#)).contains("address"));
        let contract = Address::contract(&addr(2), 0).encode();
        assert!(err(tx(
            TxKind::Vote,
            0,
            &format!(r#"{{"candidates":["{contract}"]}}"#)
        ))
        .contains("contract"));
        let many: Vec<String> = (0..1001u32)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_be_bytes());
                Address {
                    tag: TAG_ACCOUNT,
                    key: k,
                }
                .encode()
            })
            .collect();
        let p = serde_json::json!({ "candidates": many }).to_string();
        assert!(err(tx(TxKind::Vote, 0, &p)).contains("at most"));

        assert_eq!(
            ok(tx(TxKind::RegisterBp, 0, "")),
            SystemOp::Register { p2p_addr: None }
        );
        assert_eq!(
            ok(tx(TxKind::RegisterBp, 0, "{}")),
            SystemOp::Register { p2p_addr: None }
        );
        assert_eq!(
            ok(tx(
                TxKind::RegisterBp,
                0,
                r#"{"p2p_addr":"/ip4/10.0.0.2/tcp/7846"}"#
            )),
            SystemOp::Register {
                p2p_addr: Some("/ip4/10.0.0.2/tcp/7846".into())
            }
        );
        assert_eq!(
            ok(tx(TxKind::RegisterBp, 0, r#"{"unregister":true}"#)),
            SystemOp::Unregister
        );
        assert!(err(tx(
            TxKind::RegisterBp,
            0,
            r#"{"unregister":true,"p2p_addr":"/x"}"#
        ))
        .contains("unregister"));
        assert!(err(tx(TxKind::RegisterBp, 0, r#"{"p2p_addr":"ip4 x"}"#)).contains("multiaddr"));
        assert!(err(tx(TxKind::RegisterBp, 0, r#"{"p2p_addr":""}"#)).contains("empty"));
        let long = format!(r#"{{"p2p_addr":"/{}"}}"#, "a".repeat(MAX_P2P_ADDR));
        assert!(err(tx(TxKind::RegisterBp, 0, &long)).contains("limit"));

        assert_eq!(
            ok(tx(
                TxKind::Governance,
                0,
                r#"{"param":"bp_count","value":"21"}"#
            )),
            SystemOp::Governance {
                param: GovParam::BpCount,
                value: 21
            }
        );
        assert!(err(tx(
            TxKind::Governance,
            0,
            r#"{"param":"bp_count","value":"0"}"#
        ))
        .contains("between"));
        assert!(err(tx(
            TxKind::Governance,
            0,
            r#"{"param":"max_votes","value":"1001"}"#
        ))
        .contains("between"));
        assert!(err(tx(
            TxKind::Governance,
            0,
            r#"{"param":"unstake_lock_blocks","value":"10000001"}"#
        ))
        .contains("between"));
        assert!(err(tx(
            TxKind::Governance,
            0,
            r#"{"param":"round_slots","value":"5"}"#
        ))
        .contains("fixed in genesis"));
        assert!(err(tx(TxKind::Governance, 0, "not json")).contains("payload"));
        assert!(err(tx(TxKind::Transfer, 0, "")).contains("not a staking"));
        let big = tx(TxKind::Vote, 0, &" ".repeat(MAX_SYSTEM_PAYLOAD + 1));
        assert!(err(big).contains("limit"));
    }

    #[test]
    fn gov_params_fall_back_to_genesis_and_follow_state() {
        let d = DposGenesis {
            round_slots: 10,
            bp_count: 3,
            max_votes: 2,
            min_stake: aergo_types::Aer(100),
            unstake_lock_blocks: 5,
            bps: vec![],
        };
        let mut s = MemState::default();
        let g = gov_params(&s, &d).unwrap();
        assert_eq!(
            (g.bp_count, g.max_votes, g.min_stake, g.unstake_lock_blocks),
            (3, 2, 100, 5)
        );
        s.0.insert(
            gov_param_key(GovParam::BpCount),
            7u128.to_be_bytes().to_vec(),
        );
        assert_eq!(gov_params(&s, &d).unwrap().bp_count, 7);
        s.0.insert(gov_param_key(GovParam::UnstakeLockBlocks), vec![1, 2]);
        assert!(gov_params(&s, &d).is_err());
    }
}
