//! Execution as a pure function: (state view, transaction, block context) → (receipt, write
//! set). Nothing here touches the database or the clock, so every node executing the same
//! block from the same state produces byte-identical writes; the same code serves block
//! validation, block assembly and (later) mempool pre-execution and parallel execution.
//!
//! Fees: a transaction uses `gas.base + gas.per_byte × payload bytes` gas; the sender pays
//! `gas_used × gas_price`. Fees are summed per block and credited to the producer once, at
//! the end of the block, so transactions do not all depend on the producer's account.
//!
//! Gas limits ([`GasLimits`]): a transaction may ask for at most `tx_gas_cap` gas (a larger
//! gas limit is refused at admission and makes a block invalid), and a block includes a
//! transaction only while the gas used so far plus its gas limit stays within
//! `block_gas_limit` — so no block's execution exceeds the limit whatever its transactions
//! do. Both come from the genesis (`gas.tx_gas_cap`, `gas.block_gas_limit`, defaults
//! [`DEFAULT_TX_GAS_CAP`], [`DEFAULT_BLOCK_GAS_LIMIT`]) and, on DPoS chains, governance.

use crate::access::AccessSet;
use crate::contracts;
use crate::error::ChainError;
use crate::staking;
use crate::state::{Overlay, StateView, WriteSet};
use aergo_types::block::{Event, Receipt, ReceiptStatus};
use aergo_types::genesis::GasParams;
use aergo_types::{Address, Hash, SignedTx, TxKind, MAX_TX_SIZE};

pub use crate::ctx::{
    Access, BlockCtx, ChainRole, DposCtx, GasLimits, DEFAULT_BLOCK_GAS_LIMIT, DEFAULT_TX_GAS_CAP,
};

/// Why a transaction of this kind cannot run on a chain of this role (`None`: it can).
/// `repo_create` runs on the root chain only; directory changes only on directories, which
/// take nothing else.
pub fn kind_error(kind: TxKind, role: ChainRole) -> Option<String> {
    match (kind, role) {
        (TxKind::RepoCreate, ChainRole::Root { .. }) => None,
        (TxKind::RepoCreate, _) => {
            Some("repo_create runs on the root chain `aergo` only; send it without --repo".into())
        }
        (TxKind::DirectoryChange, ChainRole::Directory { .. }) => None,
        (TxKind::DirectoryChange, _) => {
            Some("directory changes go to a repository's directory (`--repo NAME/dd`)".into())
        }
        (_, ChainRole::Directory { .. }) => Some(format!(
            "a repository's directory takes directory changes only, not {kind:?}"
        )),
        _ => None,
    }
}

/// Gas a transaction uses before any execution.
pub fn intrinsic_gas(tx: &SignedTx, gas: &GasParams) -> Option<u64> {
    (tx.tx.payload.len() as u64)
        .checked_mul(gas.per_byte)?
        .checked_add(gas.base)
}

/// Admission rules that need no state: size, chain id, enabled kind, gas price and limit,
/// recipient. The signature is checked separately (in batches). The staking kinds are
/// refused: this is [`check_stateless_with`] for a chain without DPoS.
pub fn check_stateless(tx: &SignedTx, chain_id: &Hash, gas: &GasParams) -> Result<(), String> {
    check_stateless_with(tx, chain_id, gas, false)
}

/// [`check_stateless`] with the staking kinds (stake, unstake, vote, register_bp,
/// governance) enabled when `dpos_enabled`: their recipient, amount and payload shape are
/// checked here ([`staking::parse_system_tx`]), so malformed ones are refused at admission.
pub fn check_stateless_with(
    tx: &SignedTx,
    chain_id: &Hash,
    gas: &GasParams,
    dpos_enabled: bool,
) -> Result<(), String> {
    if tx.size > MAX_TX_SIZE {
        return Err(format!(
            "transaction is {} bytes; the limit is {MAX_TX_SIZE}",
            tx.size
        ));
    }
    if tx.tx.chain_id != *chain_id {
        return Err(format!(
            "wrong chain id {} (this chain is {chain_id}): the transaction was signed for another chain",
            tx.tx.chain_id
        ));
    }
    match tx.tx.kind {
        TxKind::Transfer => {
            if tx.tx.to.is_none() {
                return Err("a transfer needs a recipient".into());
            }
        }
        TxKind::Deploy => {
            if tx.tx.payload.is_empty() || std::str::from_utf8(&tx.tx.payload).is_err() {
                return Err("a deploy carries the contract script as UTF-8 text".into());
            }
            if tx
                .tx
                .to
                .is_some_and(|a| a.tag != aergo_types::address::TAG_CONTRACT)
            {
                return Err("an upgrade's recipient must be a contract address".into());
            }
        }
        TxKind::Call => {
            if tx
                .tx
                .to
                .is_none_or(|a| a.tag != aergo_types::address::TAG_CONTRACT)
            {
                return Err("a call's recipient must be a contract address".into());
            }
        }
        TxKind::Stake
        | TxKind::Unstake
        | TxKind::Vote
        | TxKind::RegisterBp
        | TxKind::Governance => {
            if !dpos_enabled {
                return Err(format!(
                    "transaction kind {:?} is not enabled on this chain (staking needs a DPoS chain)",
                    tx.tx.kind
                ));
            }
            staking::parse_system_tx(&tx.tx)?;
        }
        TxKind::Evidence => {
            if !dpos_enabled {
                return Err(
                    "evidence of a broken pre-confirmation needs a DPoS chain (nothing to slash here)"
                        .into(),
                );
            }
            if tx.tx.to.is_some() || tx.tx.amount != 0 {
                return Err("evidence has no recipient and no amount".into());
            }
            // Whether it proves a broken promise is a pure function of the payload and the
            // chain id: forged or empty evidence is refused here, at admission and in blocks
            // alike, and costs its sender nothing. Only "already penalised" needs the state
            // (a failed receipt at execution).
            aergo_types::evidence::Evidence::decode(&tx.tx.payload)
                .map_err(|e| format!("malformed evidence: {e}"))?
                .verify(chain_id)
                .map_err(|why| format!("not evidence of a broken promise: {why}"))?;
        }
        TxKind::Branch => {
            aergo_types::branch::BranchOp::decode(&tx.tx.payload).map_err(|e| e.to_string())?;
            if tx.tx.to.is_some() || tx.tx.amount != 0 {
                return Err("a branch operation has no recipient and no amount".into());
            }
        }
        TxKind::Merge => {
            aergo_types::branch::MergeOp::decode(&tx.tx.payload).map_err(|e| e.to_string())?;
            if tx.tx.to.is_some() || tx.tx.amount != 0 {
                return Err("a merge has no recipient and no amount".into());
            }
        }
        TxKind::DirectoryChange => {
            aergo_types::repo::DdOp::decode(&tx.tx.payload).map_err(|e| e.to_string())?;
            if tx.tx.to.is_some() || tx.tx.amount != 0 {
                return Err("a directory change has no recipient and no amount".into());
            }
        }
        TxKind::RepoCreate => {
            aergo_types::repo::RepoCreate::decode(&tx.tx.payload).map_err(|e| e.to_string())?;
            if tx.tx.to.is_some() || tx.tx.amount != 0 {
                return Err(
                    "a repo_create has no recipient and no amount (the creation fee is charged on its own)"
                        .into(),
                );
            }
        }
    }
    if tx.tx.gas_price < gas.min_price.0 {
        return Err(format!(
            "gas price {} aer is below the minimum {} aer",
            tx.tx.gas_price, gas.min_price.0
        ));
    }
    let need = intrinsic_gas(tx, gas).ok_or("gas overflow")?;
    if tx.tx.gas_limit < need {
        return Err(format!(
            "gas limit {} is below the {need} gas this transaction needs",
            tx.tx.gas_limit
        ));
    }
    if tx.tx.max_fee().is_none() {
        return Err("gas limit × gas price overflows".into());
    }
    Ok(())
}

pub(crate) fn invalid(tx: &SignedTx, reason: String) -> ChainError {
    ChainError::InvalidTx {
        hash: tx.hash,
        reason,
    }
}

/// Executes one transaction against `view`. `Err` means the transaction cannot be included
/// in this state at all (wrong nonce, cannot pay); a transaction that is included but fails
/// yields a receipt with [`ReceiptStatus::Failed`] and still pays its fee.
pub fn execute_tx(
    view: &dyn StateView,
    tx: &SignedTx,
    ctx: &BlockCtx,
) -> Result<(Receipt, WriteSet), ChainError> {
    execute_tx_in(view, tx, ctx, None)
}

/// [`execute_tx`], or with `merged_from` a transaction of that branch merged into this
/// chain: it signs the branch's id, is not checked against this chain's nonce (the sender's
/// nonce becomes the larger of the two), must come after the sender's transactions from
/// that branch merged before (the sender's [`crate::state::Marks`]), and is marked merged.
fn execute_tx_in(
    view: &dyn StateView,
    tx: &SignedTx,
    ctx: &BlockCtx,
    merged_from: Option<&Hash>,
) -> Result<(Receipt, WriteSet), ChainError> {
    let chain_id = merged_from.unwrap_or(&ctx.chain_id);
    check_stateless_with(tx, chain_id, &ctx.gas, ctx.dpos.is_some()).map_err(|r| invalid(tx, r))?;
    if merged_from.is_some() && matches!(tx.tx.kind, TxKind::Branch | TxKind::Merge) {
        return Err(invalid(
            tx,
            "branch and merge operations of a branch stay on it".into(),
        ));
    }
    if let Some(r) = ctx.limits.check_tx(tx) {
        return Err(invalid(tx, r));
    }
    if let Some(r) = kind_error(tx.tx.kind, ctx.role) {
        return Err(invalid(tx, r));
    }
    let from = tx.tx.sender();
    if let Some(e) = ctx.access.as_ref().and_then(|a| a.write_error(&from)) {
        return Err(invalid(tx, e));
    }
    let mut o = Overlay::new(view);
    let mut sender = o.account(&from)?;
    if let Some(source) = merged_from {
        let next = sender.marks.next(source);
        if tx.tx.nonce < next {
            return Err(invalid(
                tx,
                format!(
                    "{}: the sender's transactions from this branch were merged up to nonce {}",
                    crate::branches::ALREADY_APPLIED,
                    next - 1
                ),
            ));
        }
    }
    if merged_from.is_none() && tx.tx.nonce != sender.nonce {
        return Err(invalid(
            tx,
            format!(
                "nonce {} but the account expects {}",
                tx.tx.nonce, sender.nonce
            ),
        ));
    }
    let max_fee = tx
        .tx
        .max_fee()
        .ok_or_else(|| invalid(tx, "fee overflow".into()))?;
    let need = tx
        .tx
        .amount
        .checked_add(max_fee)
        .ok_or_else(|| invalid(tx, "amount overflow".into()))?;
    if sender.balance < need {
        return Err(invalid(
            tx,
            format!(
                "balance {} aer does not cover amount + max fee = {need} aer",
                sender.balance
            ),
        ));
    }
    let intrinsic =
        intrinsic_gas(tx, &ctx.gas).ok_or_else(|| invalid(tx, "gas overflow".into()))?;
    sender.nonce = match merged_from {
        None => sender.nonce + 1,
        Some(_) => sender.nonce.max(
            tx.tx
                .nonce
                .checked_add(1)
                .ok_or_else(|| invalid(tx, "nonce overflow".into()))?,
        ),
    };
    if let Some(source) = merged_from {
        // Marked merged in the record the nonce rewrites anyway: no state key per sender.
        let next = tx.tx.nonce.saturating_add(1);
        if let Err(n) = sender.marks.raise(source, next) {
            return Err(invalid(
                tx,
                format!(
                    "the sender's account carries merge marks of {n} other branches, the most an account can"
                ),
            ));
        }
    }
    o.put_account(&from, &sender);
    let mut result = Vec::new();
    let mut events = Vec::new();
    // Charged on top of gas (the repository creation fee), credited to the producer with it.
    let mut extra_fee = 0u128;
    let (status, gas_used) = match tx.tx.kind {
        TxKind::Transfer => {
            let to = tx.tx.to.ok_or_else(|| invalid(tx, "no recipient".into()))?;
            match contracts::transfer(&mut o, &from, &to, tx.tx.amount) {
                Ok(()) => (ReceiptStatus::Ok, intrinsic),
                Err(m) => (ReceiptStatus::Failed(m), intrinsic),
            }
        }
        TxKind::Deploy | TxKind::Call => {
            let engine_gas = tx.tx.gas_limit - intrinsic;
            let run = {
                let mut child = Overlay::new(&o);
                // Contracts deployed on a branch take addresses derived from its id (also
                // when merged); `main` keeps the original derivation.
                let branch =
                    merged_from.or((ctx.role == ChainRole::Branch).then_some(&ctx.chain_id));
                let r = run_contract(&mut child, tx, ctx, &from, engine_gas, branch);
                r.map(|out| (out, child.writes))
            };
            match run {
                Ok((out, writes)) => {
                    o.writes.extend(writes);
                    result = out.result.into_bytes();
                    events = out
                        .notices
                        .into_iter()
                        .map(|data| Event {
                            name: "notice".into(),
                            data,
                        })
                        .collect();
                    (
                        ReceiptStatus::Ok,
                        intrinsic.saturating_add(out.gas).min(tx.tx.gas_limit),
                    )
                }
                // A failed contract call reverts everything but the nonce and pays its whole
                // gas limit (a bound the sender chose; deterministic).
                Err(m) => (ReceiptStatus::Failed(m), tx.tx.gas_limit),
            }
        }
        // System transactions: intrinsic gas only; a failure keeps only nonce and fee.
        TxKind::Stake
        | TxKind::Unstake
        | TxKind::Vote
        | TxKind::RegisterBp
        | TxKind::Governance => match staking::execute(&mut o, tx, ctx, &from)? {
            Ok(()) => (ReceiptStatus::Ok, intrinsic),
            Err(m) => (ReceiptStatus::Failed(m), intrinsic),
        },
        TxKind::Evidence => match crate::evidence::execute(&mut o, tx, ctx)? {
            Ok(text) => {
                result = text.into_bytes();
                (ReceiptStatus::Ok, intrinsic)
            }
            Err(m) => (ReceiptStatus::Failed(m), intrinsic),
        },
        TxKind::RepoCreate => {
            let ChainRole::Root { repo_create_fee } = ctx.role else {
                return Err(invalid(tx, "repo_create on a repository".into()));
            };
            let gas_fee = (intrinsic as u128) * tx.tx.gas_price;
            match crate::repos::execute_create(&mut o, tx, ctx, &from, repo_create_fee, gas_fee)? {
                Ok(f) => {
                    extra_fee = f;
                    (ReceiptStatus::Ok, intrinsic)
                }
                Err(m) => (ReceiptStatus::Failed(m), intrinsic),
            }
        }
        TxKind::Branch if ctx.access.is_some() => {
            let repo = ctx.access.as_ref().map(|a| a.repo.as_str()).unwrap_or("");
            return Err(invalid(tx, crate::branches::repo_branch_op_error(repo)));
        }
        TxKind::Branch => match crate::branches::execute_op(&mut o, tx, ctx, &from)? {
            Ok(()) => (ReceiptStatus::Ok, intrinsic),
            Err(m) => (ReceiptStatus::Failed(m), intrinsic),
        },
        TxKind::Merge => {
            let Some(m) = &ctx.merge else {
                return Err(invalid(
                    tx,
                    "a merge runs only as the transaction of a merge block (send it with `aergo merge`)"
                        .into(),
                ));
            };
            match crate::branches::execute_merge_op(&mut o, tx, m, ctx)? {
                Ok(()) => (ReceiptStatus::Ok, intrinsic),
                Err(m) => return Err(invalid(tx, m)),
            }
        }
        TxKind::DirectoryChange => {
            let op = aergo_types::repo::DdOp::decode(&tx.tx.payload)
                .map_err(|e| invalid(tx, e.to_string()))?;
            if let Some(e) = crate::directory::change_error(&o, "this repository", &from, &op)? {
                return Err(invalid(tx, e));
            }
            let ChainRole::Directory { repo } = ctx.role else {
                return Err(invalid(
                    tx,
                    "directory changes run on directories only".into(),
                ));
            };
            let c = crate::directory::ChangeCtx {
                from,
                height: ctx.height,
                parent: ctx.parent,
                repo,
            };
            match crate::directory::apply(&mut o, &op, &c)? {
                Ok(()) => (ReceiptStatus::Ok, intrinsic),
                Err(m) => (ReceiptStatus::Failed(m), intrinsic),
            }
        }
    };
    // Gas fee ≤ max_fee; the extra fee was checked against the balance by its kind.
    let fee = ((gas_used as u128) * tx.tx.gas_price).saturating_add(extra_fee);
    let mut s = o.account(&from)?;
    s.balance = s
        .balance
        .checked_sub(fee)
        .ok_or_else(|| invalid(tx, "cannot pay the fee".into()))?;
    o.put_account(&from, &s);
    let receipt = Receipt {
        tx_hash: tx.hash,
        status,
        gas_used,
        fee,
        result,
        events,
    };
    Ok((receipt, o.writes))
}

fn run_contract(
    ov: &mut Overlay<'_>,
    tx: &SignedTx,
    ctx: &BlockCtx,
    from: &Address,
    gas: u64,
    branch: Option<&Hash>,
) -> Result<contracts::Outcome, String> {
    match tx.tx.kind {
        TxKind::Deploy => {
            let script = std::str::from_utf8(&tx.tx.payload)
                .map_err(|_| "script is not UTF-8".to_string())?;
            let (addr, existing) = match (tx.tx.to, branch) {
                (Some(a), _) => (a, true),
                (None, None) => (Address::contract(from, tx.tx.nonce), false),
                (None, Some(b)) => (Address::contract_in(b, from, tx.tx.nonce), false),
            };
            contracts::transfer(ov, from, &addr, tx.tx.amount)?;
            contracts::deploy_version(ov, &addr, from, script, gas, existing, ctx.sql_engine)
        }
        _ => {
            let to = tx.tx.to.ok_or("no contract")?;
            contracts::transfer(ov, from, &to, tx.tx.amount)?;
            contracts::call(
                ov,
                (
                    *from,
                    to,
                    ctx.height,
                    ctx.timestamp_ms,
                    tx.hash,
                    tx.tx.amount,
                ),
                &tx.tx.payload,
                gas,
            )
        }
    }
}

/// The result of executing a block's transactions.
#[derive(Debug, Default)]
pub struct Executed {
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
    /// All writes, fees credited.
    pub writes: WriteSet,
    /// Total fees.
    pub fees: u128,
    /// Total gas.
    pub gas_used: u64,
    /// One access set per receipt (what each transaction read and wrote), when recorded:
    /// every block path but merges records them (`BlockRun::try_tx`).
    pub access: Vec<crate::access::AccessSet>,
}

/// A block's transactions being executed one by one on an overlay: what assembly,
/// validation, merges and the pre-confirmation's pending block (`chain::pending`, which
/// keeps `overlay.writes` and `out` between transactions) share.
pub(crate) struct BlockRun<'a> {
    /// The state so far.
    pub(crate) overlay: Overlay<'a>,
    /// What the transactions so far did.
    pub(crate) out: Executed,
}

impl<'a> BlockRun<'a> {
    /// Whether `tx` still fits the block: gas used so far + its whole gas limit.
    pub(crate) fn fits(&self, tx: &SignedTx, ctx: &BlockCtx) -> bool {
        self.out
            .gas_used
            .checked_add(tx.tx.gas_limit)
            .is_some_and(|g| g <= ctx.limits.block_gas_limit)
    }
    /// Executes `tx` on the state so far, recording what it reads and writes; an invalid
    /// transaction changes nothing.
    pub(crate) fn try_tx(&mut self, tx: &SignedTx, ctx: &BlockCtx) -> Result<(), ChainError> {
        self.try_tx_with(tx, ctx, true)
    }
    /// [`BlockRun::try_tx`] with the access set appended to `batch` instead of
    /// `out.access` (validation's pipeline hands batches to its DTT checker).
    ///
    /// A native transfer's set is not built here: its status is returned (`Some(true)`: it
    /// succeeded), and the checker derives the set from the transaction and that status
    /// ([`TransferKeys`]) on its own thread. Every other transaction's set is appended to
    /// `batch` (`None`).
    pub(crate) fn try_tx_batch(
        &mut self,
        tx: &SignedTx,
        ctx: &BlockCtx,
        batch: &mut crate::access::AccessBatch,
    ) -> Result<Option<bool>, ChainError> {
        let (r, w, reads) = execute_recorded(&self.overlay, tx, ctx)?;
        let derived = match reads {
            Reads::Recorded(rec) => {
                rec.finish_batch(&w, batch);
                None
            }
            Reads::Transfer => Some(r.status == ReceiptStatus::Ok),
        };
        self.add(r, w);
        Ok(derived)
    }
    /// Counts a transaction's receipt and applies its writes.
    fn add(&mut self, r: Receipt, w: WriteSet) {
        self.out.fees += r.fee;
        self.out.gas_used = self.out.gas_used.saturating_add(r.gas_used);
        self.out.receipts.push(r);
        self.overlay.writes.extend(w);
    }
    /// [`BlockRun::try_tx`], recording the access set only when `record`.
    fn try_tx_with(
        &mut self,
        tx: &SignedTx,
        ctx: &BlockCtx,
        record: bool,
    ) -> Result<(), ChainError> {
        let (r, w) = if record {
            let (r, w, reads) = execute_recorded(&self.overlay, tx, ctx)?;
            self.out.access.push(reads.finish(tx, &r, &w));
            (r, w)
        } else {
            execute_tx_guarded(&self.overlay, tx, ctx)?
        };
        self.add(r, w);
        Ok(())
    }
    /// Credits the fees to the producer and returns the execution.
    pub(crate) fn finish(mut self, ctx: &BlockCtx) -> Result<Executed, ChainError> {
        if self.out.fees > 0 {
            let mut p = self.overlay.account(&ctx.producer)?;
            p.balance = p
                .balance
                .checked_add(self.out.fees)
                .ok_or_else(|| ChainError::Corrupt("producer balance overflow".into()))?;
            self.overlay.put_account(&ctx.producer, &p);
        }
        self.out.writes = self.overlay.writes;
        Ok(self.out)
    }
}

/// The reason of a transaction whose execution panicked (a bug, never the sender's right):
/// the producer leaves it out and drops it from its mempool; in a peer's block it makes the
/// block invalid. Execution is a pure function over an overlay, so nothing it touched
/// survives the panic.
pub const EXEC_PANICKED: &str = "execution panicked";

#[cfg(test)]
thread_local! {
    /// Test-only fault injection: `execute_tx` panics on a transaction with this nonce.
    static PANIC_ON_NONCE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// What a transaction read from its view, to be finished into its access set with its
/// receipt and write set ([`execute_recorded`]).
pub(crate) enum Reads<'v> {
    /// Recorded through the view (every kind but native transfers).
    Recorded(crate::access::Recorder<'v>),
    /// A native transfer: nothing recorded, its set follows from the transaction and its
    /// status ([`TransferKeys`]).
    Transfer,
}

impl Reads<'_> {
    /// The access set of `tx`, which ran with receipt `r` and writes `w`.
    pub(crate) fn finish(self, tx: &SignedTx, r: &Receipt, w: &WriteSet) -> AccessSet {
        match self {
            Reads::Recorded(rec) => rec.finish(w),
            Reads::Transfer => {
                TransferKeys::of(tx, r.status == ReceiptStatus::Ok).with(AccessSet::from_keys)
            }
        }
    }
}

/// The keys a valid native transfer reads and writes, as execution reads and writes them
/// ([`execute_tx_in`], [`contracts::transfer`]), inline: validation keeps one per transfer
/// (in the pool's result slot, or the pipeline checker's list) instead of an encoded set,
/// allocated per transaction:
/// - it reads the sender's account, and the recipient's when a non-zero amount moves to
///   another account (the recipient's balance check cannot fail before that read: the
///   sender's balance covered amount and fee);
/// - it writes the sender's account (nonce and fee), and the recipient's when such an
///   amount moved (only on success: the one failure, the recipient's balance overflowing,
///   comes after the read and before the write).
///
/// Every other read is served by the transaction's own writes, and an invalid transfer has
/// no set (its block is invalid). Tests check every transfer they execute against a
/// recorder's set ([`execute_recorded`]).
pub(crate) struct TransferKeys {
    from: [u8; crate::state::ACCOUNT_KEY_LEN],
    /// The recipient's, when a non-zero amount moves to another account.
    to: Option<[u8; crate::state::ACCOUNT_KEY_LEN]>,
    /// The transfer succeeded.
    ok: bool,
}

impl TransferKeys {
    /// The keys of transfer `tx`, which succeeded (`ok`) or failed.
    pub(crate) fn of(tx: &SignedTx, ok: bool) -> Self {
        let sender = tx.tx.sender();
        TransferKeys {
            from: crate::state::account_key_array(&sender),
            to: tx
                .tx
                .to
                .filter(|to| tx.tx.amount > 0 && *to != sender)
                .map(|to| crate::state::account_key_array(&to)),
            ok,
        }
    }

    /// Calls `f` with the keys read and the keys written (each without duplicates).
    pub(crate) fn with<'a, R>(&'a self, f: impl FnOnce(&[&'a [u8]], &[&'a [u8]]) -> R) -> R {
        let from: &[u8] = &self.from;
        match &self.to {
            Some(to) => {
                let to: &[u8] = to;
                let writes: &[&[u8]] = if self.ok { &[from, to] } else { &[from] };
                f(&[from, to], writes)
            }
            None => f(&[from], &[from]),
        }
    }
}

/// [`execute_tx_guarded`] and what the transaction read from `view`, to be finished into
/// its access set: nothing recorded for a native transfer ([`Reads::Transfer`]), a
/// [`crate::access::Recorder`]'s record for the rest. Every path that records access sets
/// (assembly, pre-execution, validation) comes here, so all get the same sets.
pub(crate) fn execute_recorded<'v>(
    view: &'v dyn StateView,
    tx: &SignedTx,
    ctx: &BlockCtx,
) -> Result<(Receipt, WriteSet, Reads<'v>), ChainError> {
    if tx.tx.kind == TxKind::Transfer {
        // The derived set is sound only if it is exactly what execution reads and writes:
        // under test, every transfer also runs through a recorder and the two must agree.
        #[cfg(test)]
        {
            let rec = crate::access::Recorder::new(view);
            if let Ok((r, w)) = execute_tx_guarded(&rec, tx, ctx) {
                let recorded = rec.finish(&w);
                assert_eq!(
                    Reads::Transfer.finish(tx, &r, &w),
                    recorded,
                    "a transfer's derived access set differs from its recorded one"
                );
            }
        }
        let (r, w) = execute_tx_guarded(view, tx, ctx)?;
        return Ok((r, w, Reads::Transfer));
    }
    let rec = crate::access::Recorder::new(view);
    let (r, w) = execute_tx_guarded(&rec, tx, ctx)?;
    Ok((r, w, Reads::Recorded(rec)))
}

/// [`execute_tx`] with a panic turned into an invalid transaction ([`EXEC_PANICKED`]).
pub(crate) fn execute_tx_guarded(
    view: &dyn StateView,
    tx: &SignedTx,
    ctx: &BlockCtx,
) -> Result<(Receipt, WriteSet), ChainError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        #[cfg(test)]
        if PANIC_ON_NONCE.with(|p| p.get()) == Some(tx.tx.nonce) {
            #[allow(clippy::panic)]
            {
                panic!("injected execution panic (test)");
            }
        }
        execute_tx(view, tx, ctx)
    })) {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(tx = %tx.hash, "{EXEC_PANICKED}: the transaction is left out");
            Err(invalid(tx, EXEC_PANICKED.to_string()))
        }
    }
}

/// Executes a block's transactions in order; any transaction that cannot be included makes
/// the block invalid, and so does one whose gas limit does not fit the block gas limit
/// after the gas used before it.
pub fn execute_block(
    base: &dyn StateView,
    txs: &[SignedTx],
    ctx: &BlockCtx,
) -> Result<Executed, ChainError> {
    execute_block_with(base, txs, ctx, true)
}

/// The error of a block whose transaction `tx` does not fit its gas limit after `used` gas.
pub(crate) fn gas_exceeded(tx: &SignedTx, ctx: &BlockCtx, used: u64) -> ChainError {
    invalid(
        tx,
        format!(
            "block gas limit {} exceeded: {used} gas used before a transaction with gas limit {}",
            ctx.limits.block_gas_limit, tx.tx.gas_limit
        ),
    )
}

/// [`execute_block`], recording each transaction's access set only when `record` (without:
/// the execution before access sets existed, the baseline of `aergo-node bench exec`).
pub fn execute_block_with(
    base: &dyn StateView,
    txs: &[SignedTx],
    ctx: &BlockCtx,
    record: bool,
) -> Result<Executed, ChainError> {
    let mut run = BlockRun {
        overlay: Overlay::new(base),
        out: Executed::default(),
    };
    for tx in txs {
        if !run.fits(tx, ctx) {
            return Err(gas_exceeded(tx, ctx, run.out.gas_used));
        }
        run.try_tx_with(tx, ctx, record)?;
    }
    run.finish(ctx)
}

/// Executes a merge block: its merge transaction (which moves the merge base; any error
/// makes the block invalid; `None` for a dry run), then each candidate of the source in order, merged
/// (`execute_tx_in`) or left out with its reason. `signed`: the candidates' signatures were
/// checked already (a producer's or a dry run's candidates come from source blocks the node
/// validated); otherwise — a validator's — each is checked here and a bad one left out.
/// A candidate with a `lineage` entry comes from a branch of the source (merged into it
/// earlier): it is merged as a transaction of that branch (its id, its merged marks). Returns the execution (receipts: the
/// merge transaction's, then each merged candidate's) and the exclusions, which a
/// validator compares with the block's.
///
/// An auto merge runs the candidates on the target's state (`base`). A consistent merge
/// (`merge_base`: the target's state at the merge base) replays them there instead, then
/// merges what they wrote into the target three ways ([`crate::merge3`]); a conflict no
/// resolver decides refuses the merge: an invalid merge transaction listing the conflicts.
pub fn execute_merge(
    base: &dyn StateView,
    merge_tx: Option<&SignedTx>,
    candidates: &[SignedTx],
    lineage: &[aergo_types::block_ext::Lineage],
    signed: bool,
    ctx: &BlockCtx,
    merge_base: Option<&dyn StateView>,
) -> Result<(Executed, Vec<aergo_types::block_ext::Exclusion>), ChainError> {
    let Some(m) = &ctx.merge else {
        return Err(ChainError::Consensus("not a merge block".into()));
    };
    let consistent = m.strategy == aergo_types::block_ext::MergeStrategy::Consistent;
    let replay_base = match (consistent, merge_base) {
        (true, Some(v)) => Some(v),
        (true, None) => {
            return Err(ChainError::Consensus(
                "a consistent merge needs the target's state at its merge base".into(),
            ))
        }
        (false, _) => None,
    };
    let mut run = BlockRun {
        overlay: Overlay::new(base),
        out: Executed::default(),
    };
    // A consistent merge's replay of the candidates: theirs.
    let mut theirs = replay_base.map(Overlay::new);
    // `None`: a dry run of the candidates only.
    if let Some(merge_tx) = merge_tx {
        if merge_tx.tx.kind != TxKind::Merge {
            return Err(invalid(
                merge_tx,
                "a merge block's transaction is a merge".into(),
            ));
        }
        run.try_tx(merge_tx, ctx)?;
    }
    let mut excluded = Vec::new();
    // Every candidate's signature, in batches on the worker pool's threads (a validator that
    // never hosted the source checks them here; the verdicts do not depend on the chunking).
    let valid = if signed {
        vec![true; candidates.len()]
    } else {
        crate::parallel::verify_signatures(candidates, crate::parallel::workers())
    };
    for (i, c) in candidates.iter().enumerate() {
        let index = u32::try_from(i).map_err(|_| ChainError::Corrupt("candidate index".into()))?;
        if !valid.get(i).copied().unwrap_or(false) {
            excluded.push(crate::branches::exclusion(index, "bad signature", false));
            continue;
        }
        if !run.fits(c, ctx) {
            excluded.push(crate::branches::exclusion(
                index,
                "the merge block's gas limit is used up",
                false,
            ));
            continue;
        }
        let on: &dyn StateView = match &theirs {
            Some(t) => t,
            None => &run.overlay,
        };
        // A candidate from one of the source's own branches signs that branch's id, which
        // its lineage derives from the source's (a wrong lineage fails the chain id check).
        let from = lineage
            .binary_search_by_key(&index, |l| l.index)
            .ok()
            .and_then(|k| lineage.get(k))
            .map_or(m.source, |l| l.branch_of(&m.source));
        match execute_tx_in(on, c, ctx, Some(&from)) {
            Ok((r, w)) => match &r.status {
                ReceiptStatus::Ok => {
                    run.out.fees += r.fee;
                    run.out.gas_used = run.out.gas_used.saturating_add(r.gas_used);
                    run.out.receipts.push(r);
                    match &mut theirs {
                        Some(t) => t.writes.extend(w),
                        None => run.overlay.writes.extend(w),
                    }
                }
                ReceiptStatus::Failed(why) => {
                    excluded.push(crate::branches::exclusion(index, why, true));
                }
            },
            Err(ChainError::InvalidTx { reason, .. }) => {
                excluded.push(crate::branches::exclusion(index, &reason, false));
            }
            Err(e) => return Err(e),
        }
    }
    if let (Some(t), Some(mb)) = (theirs, replay_base) {
        let resolver = crate::branches::Records::of(base, ctx)
            .by_id(&m.source)?
            .and_then(|(_, r)| r.resolver)
            .map(|contract| crate::merge3::Resolver {
                contract,
                height: ctx.height,
                time_ms: ctx.timestamp_ms,
                gas: ctx.limits.block_gas_limit.saturating_sub(run.out.gas_used),
            });
        match crate::merge3::three_way(mb, &run.overlay, &t.writes, resolver.as_ref())? {
            Ok(w) => run.overlay.writes.extend(w),
            Err(conflicts) => {
                return Err(ChainError::InvalidTx {
                    hash: merge_tx.map(|t| t.hash).unwrap_or_default(),
                    reason: crate::merge3::refusal(&conflicts),
                })
            }
        }
    }
    Ok((run.finish(ctx)?, excluded))
}

/// What [`assemble`] returns: the included transactions, their execution, and the
/// candidates that could not be included with the reason.
pub type Assembled = (Vec<SignedTx>, Executed, Vec<(Hash, String)>);

/// Builds a block's transaction list from candidates (in priority order): each is executed
/// against the state so far; those that cannot be included are returned with the reason;
/// assembly stops when the next transaction, with the longest DTT entry it could need,
/// would exceed `max_bytes` (the DTT's bytes count). A candidate whose gas
/// limit does not fit the block gas limit any more is skipped without being executed (it
/// stays pending, not rejected), and so are its sender's later candidates; smaller ones of
/// other senders may still fit.
pub fn assemble(
    base: &dyn StateView,
    candidates: Vec<SignedTx>,
    ctx: &BlockCtx,
    max_bytes: usize,
) -> Result<Assembled, ChainError> {
    let mut run = BlockRun {
        overlay: Overlay::new(base),
        out: Executed::default(),
    };
    let mut included = Vec::new();
    let mut rejected = Vec::new();
    // The block's DTT is counted in its size: each entry as it is known, and before a
    // transaction is tried, room for the longest entry it could have.
    let mut dtt = crate::dtt::Builder::<Vec<u8>>::default();
    let mut bytes = crate::dtt::DTT_OVERHEAD;
    let mut deferred: std::collections::HashSet<Address> = std::collections::HashSet::new();
    for tx in candidates {
        let j = u32::try_from(included.len()).unwrap_or(u32::MAX);
        if bytes + tx.size + 4 + crate::dtt::max_entry_len(j) > max_bytes {
            break;
        }
        if deferred.contains(&tx.tx.sender()) {
            continue;
        }
        if !run.fits(&tx, ctx) {
            deferred.insert(tx.tx.sender());
            if run.out.gas_used.saturating_add(ctx.gas.base) > ctx.limits.block_gas_limit {
                break;
            }
            continue;
        }
        match run.try_tx(&tx, ctx) {
            Ok(()) => {
                let entry = run.out.access.last().map(|a| dtt.push(a));
                bytes += tx.size + 4 + entry.map_or(0, |e| crate::dtt::entry_len(j, &e));
                included.push(tx);
            }
            Err(ChainError::InvalidTx { hash, reason }) => rejected.push((hash, reason)),
            Err(e) => return Err(e),
        }
    }
    Ok((included, run.finish(ctx)?, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{account_key, Account, MemState};

    /// A transaction whose execution panics is left out by assembly and makes a block that
    /// carries it invalid; the thread goes on.
    #[test]
    fn an_execution_panic_is_an_invalid_transaction() {
        let k = Keypair::from_seed(&[1; 32]);
        let s = funded(&k, 1_000_000_000);
        let to = Address::from_public_key(&Keypair::from_seed(&[2; 32]).public());
        let txs = vec![transfer(&k, 0, to, 5), transfer(&k, 1, to, 5)];
        PANIC_ON_NONCE.with(|p| p.set(Some(1)));
        let (included, _, rejected) = assemble(&s, txs.clone(), &ctx(), 1 << 20).unwrap();
        assert_eq!(included.len(), 1);
        assert_eq!(rejected, vec![(txs[1].hash, EXEC_PANICKED.to_string())]);
        match execute_block(&s, &txs, &ctx()) {
            Err(ChainError::InvalidTx { reason, .. }) => assert_eq!(reason, EXEC_PANICKED),
            other => panic!("{other:?}"),
        }
        PANIC_ON_NONCE.with(|p| p.set(None));
        assert_eq!(execute_block(&s, &txs, &ctx()).unwrap().receipts.len(), 2);
    }
    use aergo_types::{Keypair, Tx};

    fn ctx() -> BlockCtx {
        crate::ctx::test_ctx(1, 9)
    }

    fn transfer(k: &Keypair, nonce: u64, to: Address, amount: u128) -> SignedTx {
        Tx {
            kind: TxKind::Transfer,
            nonce,
            from: k.public(),
            to: Some(to),
            amount,
            payload: vec![],
            gas_limit: 1000,
            gas_price: 2,
            chain_id: Hash::of(b"c"),
        }
        .sign(k)
    }

    fn funded(k: &Keypair, bal: u128) -> MemState {
        let mut s = MemState::default();
        s.0.insert(
            account_key(&Address::from_public_key(&k.public())),
            Account::new(bal, 0).encode(),
        );
        s
    }

    #[test]
    fn transfer_moves_amount_and_fee() {
        let k = Keypair::from_seed(&[1; 32]);
        let to = Address::from_public_key(&Keypair::from_seed(&[2; 32]).public());
        let s = funded(&k, 10_000);
        let c = ctx();
        let ex = execute_block(&s, &[transfer(&k, 0, to, 100)], &c).unwrap();
        let mut after = s.clone();
        for (key, v) in &ex.writes {
            after.0.insert(key.clone(), v.clone().unwrap());
        }
        let from = Address::from_public_key(&k.public());
        assert_eq!(
            after.account(&from).unwrap(),
            Account::new(10_000 - 100 - 2000, 1)
        );
        assert_eq!(after.account(&to).unwrap().balance, 100);
        assert_eq!(after.account(&c.producer).unwrap().balance, 2000);
        assert_eq!(ex.receipts[0].status, ReceiptStatus::Ok);
        assert_eq!(ex.fees, 2000);
    }

    #[test]
    fn invalid_transactions_are_refused_without_writes() {
        let k = Keypair::from_seed(&[1; 32]);
        let to = Address::from_public_key(&Keypair::from_seed(&[2; 32]).public());
        let s = funded(&k, 2100);
        let c = ctx();
        assert!(execute_tx(&s, &transfer(&k, 1, to, 1), &c)
            .unwrap_err()
            .to_string()
            .contains("nonce"));
        assert!(execute_tx(&s, &transfer(&k, 0, to, 101), &c)
            .unwrap_err()
            .to_string()
            .contains("balance"));
        let mut wrong_chain = transfer(&k, 0, to, 1).tx;
        wrong_chain.chain_id = Hash::ZERO;
        assert!(execute_tx(&s, &wrong_chain.sign(&k), &c)
            .unwrap_err()
            .to_string()
            .contains("chain id"));
        // Assembly drops the invalid one and keeps the valid one.
        let (inc, ex, rej) = assemble(
            &s,
            vec![transfer(&k, 5, to, 1), transfer(&k, 0, to, 1)],
            &c,
            1 << 20,
        )
        .unwrap();
        assert_eq!(inc.len(), 1);
        assert_eq!(rej.len(), 1);
        assert_eq!(ex.receipts.len(), 1);
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)] // small test indices
    fn assembly_leaves_room_for_the_blocks_dtt() {
        // Ten senders, each sending to the next one's account: entries with parents.
        let keys: Vec<Keypair> = (1..=10u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
        let mut s = MemState::default();
        for k in &keys {
            s.0.insert(
                account_key(&Address::from_public_key(&k.public())),
                Account::new(1_000_000_000, 0).encode(),
            );
        }
        let cands: Vec<SignedTx> = (0..200u64)
            .map(|n| {
                let i = (n % 10) as usize;
                let to = Address::from_public_key(&keys[(i + 1) % 10].public());
                transfer(&keys[i], n / 10, to, 1)
            })
            .collect();
        for max in [600, 2_000, 9_000] {
            let (inc, ex, _) = assemble(&s, cands.clone(), &ctx(), max).unwrap();
            assert!(!inc.is_empty());
            let dtt = crate::dtt::canonical(&ex.access);
            let tx_bytes: usize = inc.iter().map(|t| t.size + 4).sum();
            let with_dtt = tx_bytes + dtt.encode().len() - 4 + crate::dtt::DTT_OVERHEAD;
            assert!(with_dtt <= max, "{with_dtt} > {max}");
            // And the room is not wasted: the next candidate would not have fitted.
            if let Some(next) = cands.get(inc.len()) {
                let j = inc.len() as u32;
                assert!(with_dtt + next.size + 4 + crate::dtt::max_entry_len(j) > max);
            }
        }
    }

    #[test]
    fn self_transfer_only_costs_the_fee() {
        let k = Keypair::from_seed(&[1; 32]);
        let me = Address::from_public_key(&k.public());
        let s = funded(&k, 10_000);
        let ex = execute_block(&s, &[transfer(&k, 0, me, 500)], &ctx()).unwrap();
        let v = ex.writes.get(&account_key(&me)).unwrap().clone().unwrap();
        assert_eq!(Account::decode(&v).unwrap(), Account::new(8000, 1));
    }
}
