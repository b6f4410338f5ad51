//! Branches and merges in a chain's state.
//!
//! Keys (in the state of the chain a branch forks off, `main` or another branch):
//! - `'b' ‖ name` → [`BranchRecord`]: the branch's id, fork height, producer, strategy,
//!   creator, and the heights it was created and deleted at;
//! - `'m' ‖ branch id` → `u64`: the source height a merge of that branch into this chain
//!   reached (absent: the fork height) — the next merge base;
//! - `'g' ‖ tag` → `height u64 ‖ block hash 32`: a tag of this chain (kind 11, op 2), immutable,
//!   never the name of a live branch (so a ref `NAME` means one thing).
//!
//! Merge marks live in the sender's account record ([`crate::state::Marks`]): per branch,
//! the next nonce of the sender's transactions from that branch not merged into this chain
//! yet. A candidate below it was merged before — the same transaction, or another one with
//! a nonce the branch had used — and is left out (`already applied`), so no transaction is
//! ever applied twice, whatever candidates a producer embeds. One mark per sender and
//! branch, not per transaction: a branch's nonces grow per sender in its block order, which
//! is the candidates' order. The merge rewrites the sender's record anyway (its nonce), so
//! the marks add no state key (a key per sender and branch made the producer's merge block
//! 1.6 times as slow as the same transactions on `main`).
//!
//! A branch is created (kind 11) by a transaction on its parent; the branch's own chain is
//! opened by the node ([`crate::Chain::open_branch`]). A merge (kind 12) is the first and
//! only ordinary transaction of a merge block: the block's merge section carries the source's
//! transactions since the merge base (the candidates), which are executed in order on this
//! chain's state without its nonce rule (the merge base guarantees each merges once; a
//! sender's nonce becomes the larger of the two), and those that no longer hold are left out
//! with their reason. Every node re-executes the merge and must reach the same exclusions
//! and state root. A merge block of the source contributes the candidates it merged, with
//! their lineage ([`block_candidates`]): a merge of a merge carries a sub-branch's
//! transactions up, each checked against the id its lineage derives.

use crate::ctx::{BlockCtx, MergeCtx};
use crate::error::ChainError;
use crate::state::{Overlay, StateView};
use aergo_types::block_ext::{
    Exclusion, ExclusionReason, Lineage, LineageStep, MergeStrategy, MAX_EXCLUSION_DETAIL,
    MAX_LINEAGE_DEPTH,
};
use aergo_types::branch::{branch_id, BranchOp, BranchRecord, MergeOp};
use aergo_types::genesis::{ConsensusParams, Engine as EngineKind};
use aergo_types::{Address, Genesis, Hash, SignedTx};

/// Key prefix of branch records.
pub const RECORD_PREFIX: u8 = b'b';
/// Key prefix of merge bases.
pub const BASE_PREFIX: u8 = b'm';
/// Key prefix of tags.
pub const TAG_PREFIX: u8 = b'g';

/// Most tags one chain records (a tag costs its sender a fee; this bounds the state a node
/// scans to list them).
pub const MAX_TAGS: usize = 4096;

fn tag_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(TAG_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Tag `name` of this chain: (height, block hash).
pub fn tag(view: &dyn StateView, name: &str) -> Result<Option<(u64, Hash)>, ChainError> {
    view.get(&tag_key(name))?
        .map(|v| decode_tag(&v))
        .transpose()
}

/// Every tag of this chain, by name: (height, block hash).
pub fn tags(view: &dyn StateView) -> Result<Vec<(String, u64, Hash)>, ChainError> {
    view.scan(&[TAG_PREFIX], &[TAG_PREFIX + 1])?
        .into_iter()
        .map(|(k, v)| {
            let (h, hash) = decode_tag(&v)?;
            Ok((
                String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned(),
                h,
                hash,
            ))
        })
        .collect()
}

fn decode_tag(v: &[u8]) -> Result<(u64, Hash), ChainError> {
    let h: [u8; 8] = v
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("tag"))?;
    let hash: [u8; 32] = v
        .get(8..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("tag"))?;
    Ok((u64::from_be_bytes(h), Hash(hash)))
}

/// Most live branches one chain records (a branch costs its creator a fee; this bounds the
/// state a node scans to list them).
pub const MAX_BRANCHES: usize = 1024;

/// Most live branches one account may have created on one chain, so no single account can
/// take every slot of [`MAX_BRANCHES`].
pub const MAX_BRANCHES_PER_CREATOR: usize = 64;

/// The state key of branch `name`'s record.
pub fn record_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(RECORD_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

fn base_key(id: &Hash) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(BASE_PREFIX);
    k.extend_from_slice(&id.0);
    k
}

fn corrupt(e: impl std::fmt::Display) -> ChainError {
    ChainError::Corrupt(format!("branch record: {e}"))
}

/// Branch `name`'s record (live or deleted), if it was ever created.
pub fn record(view: &dyn StateView, name: &str) -> Result<Option<BranchRecord>, ChainError> {
    match view.get(&record_key(name))? {
        Some(b) => Ok(Some(BranchRecord::decode(&b).map_err(corrupt)?)),
        None => Ok(None),
    }
}

/// Every branch record, by name.
pub fn list(view: &dyn StateView) -> Result<Vec<(String, BranchRecord)>, ChainError> {
    let rows = view.scan(&[RECORD_PREFIX], &[RECORD_PREFIX + 1])?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let name = String::from_utf8(k.get(1..).unwrap_or_default().to_vec()).map_err(corrupt)?;
        out.push((name, BranchRecord::decode(&v).map_err(corrupt)?));
    }
    Ok(out)
}

/// The source height the last merge of branch `rec` into this chain reached (its fork
/// height before the first merge): the merge base.
pub fn merge_base(view: &dyn StateView, rec: &BranchRecord) -> Result<u64, ChainError> {
    Ok(merge_point(view, rec)?.0)
}

/// The merge base of branch `rec` on both sides: (source height, this chain's height whose
/// state a consistent merge compares with). Before the first merge both are the fork
/// height; after a consistent merge, the source height it reached and the height of its
/// merge block (the value `source u64 ‖ target u64`); an auto merge records the source
/// height alone (`u64`), its target side unused.
pub fn merge_point(view: &dyn StateView, rec: &BranchRecord) -> Result<(u64, u64), ChainError> {
    let be = |b: &[u8]| -> Result<u64, ChainError> {
        let a: [u8; 8] = b.try_into().map_err(|_| corrupt("merge base"))?;
        Ok(u64::from_be_bytes(a))
    };
    match view.get(&base_key(&rec.id))? {
        Some(b) if b.len() == 8 => {
            let s = be(&b)?;
            Ok((s, s))
        }
        Some(b) if b.len() == 16 => Ok((be(&b[..8])?, be(&b[8..])?)),
        Some(_) => Err(corrupt("merge base")),
        None => Ok((rec.fork_height, rec.fork_height)),
    }
}

/// Where a chain's branch records live: its own state (the root chain, and every branch
/// chain of the root), or its repository's directory (a repository's ledger and its
/// branches), snapshotted at the directory height the chain's block names
/// ([`crate::ctx::Access::branches`]).
#[derive(Clone, Copy)]
pub enum Records<'a> {
    /// The chain's state: `'b' ‖ name` keys.
    State(&'a dyn StateView),
    /// The directory's records of the branches forking this chain, by name.
    Directory(&'a [(String, crate::directory::DirBranch)]),
}

impl<'a> Records<'a> {
    /// The records a block sees: its directory's when it has one (`access`), else `view`'s.
    pub fn new(view: &'a dyn StateView, access: Option<&'a crate::ctx::Access>) -> Self {
        match access {
            Some(a) => Records::Directory(&a.branches),
            None => Records::State(view),
        }
    }

    /// The records a block executed with `ctx` on `view` sees.
    pub fn of(view: &'a dyn StateView, ctx: &'a BlockCtx) -> Self {
        Self::new(view, ctx.access.as_deref())
    }

    /// Branch `name`'s record (live or deleted).
    pub fn get(&self, name: &str) -> Result<Option<BranchRecord>, ChainError> {
        match self {
            Records::State(v) => record(*v, name),
            Records::Directory(d) => Ok(d
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.record.clone())),
        }
    }

    /// Every record, by name.
    pub fn list(&self) -> Result<Vec<(String, BranchRecord)>, ChainError> {
        match self {
            Records::State(v) => list(*v),
            Records::Directory(d) => Ok(d
                .iter()
                .map(|(n, b)| (n.clone(), b.record.clone()))
                .collect()),
        }
    }

    /// The record of the branch whose id is `id`, with its name.
    pub fn by_id(&self, id: &Hash) -> Result<Option<(String, BranchRecord)>, ChainError> {
        Ok(self.list()?.into_iter().find(|(_, r)| r.id == *id))
    }

    /// The hash branch `rec` (of `chain`) takes into its id: the block before the one that
    /// created it — the directory's, when the directory records it.
    pub fn created_after(
        &self,
        chain: &crate::Chain,
        rec: &BranchRecord,
    ) -> Result<Hash, ChainError> {
        match self {
            Records::Directory(d) => d
                .iter()
                .find(|(_, b)| b.record.id == rec.id)
                .map(|(_, b)| b.created_after)
                .ok_or_else(|| corrupt("directory record vanished")),
            Records::State(_) => chain
                .hash_at(rec.created.saturating_sub(1))?
                .ok_or_else(|| ChainError::Corrupt(format!("no block before {}", rec.created))),
        }
    }
}

/// The record of the branch whose id is `id`, live or deleted.
pub fn record_by_id(view: &dyn StateView, id: &Hash) -> Result<Option<BranchRecord>, ChainError> {
    Ok(list(view)?
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.id == *id))
}

/// A merge's candidates: the source's transactions in source order, and the lineage of
/// those that come from the source's own branches (merged into it before).
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// The transactions.
    pub txs: Vec<SignedTx>,
    /// By ascending index: the candidates from a branch of the source, and how it descends.
    pub lineage: Vec<Lineage>,
}

impl Candidates {
    /// Appends `other`'s candidates after these (its lineage indexes shifted).
    pub fn append(&mut self, other: Candidates) {
        let shift = u32::try_from(self.txs.len()).unwrap_or(u32::MAX);
        self.lineage.extend(other.lineage.into_iter().map(|mut l| {
            l.index = l.index.saturating_add(shift);
            l
        }));
        self.txs.extend(other.txs);
    }

    /// Candidates `start..start + count` (lineage indexes shifted to the slice), if in range.
    pub fn slice(&self, start: usize, count: usize) -> Option<Candidates> {
        let txs = self.txs.get(start..start.checked_add(count)?)?.to_vec();
        let (lo, hi) = (
            u32::try_from(start).ok()?,
            u32::try_from(start + count).ok()?,
        );
        let lineage = self
            .lineage
            .iter()
            .filter(|l| l.index >= lo && l.index < hi)
            .map(|l| Lineage {
                index: l.index - lo,
                path: l.path.clone(),
            })
            .collect();
        Some(Candidates { txs, lineage })
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
}

/// What block `block` of branch chain `src` gives a merge of `src` into its parent: its
/// transactions in order and, for a merge block (a branch of `src` merged into it), the
/// candidates it merged — not those it left out — right after its merge transaction, each
/// with its lineage: the merged branch's step (its name and the block before its creation,
/// from `src`'s state), then the step it already had. Validators of the parent check each
/// against the transaction's chain id, so a merge of a merge reaches `main` whole.
pub fn block_candidates(
    src: &crate::Chain,
    block: &aergo_types::Block,
) -> Result<Candidates, ChainError> {
    let mut out = Candidates {
        txs: block.txs.clone(),
        lineage: Vec::new(),
    };
    let (Some(section), Some(mref)) = (&block.body_ext.merge, &block.header.ext.merge) else {
        return Ok(out);
    };
    let view = src.view_at(block.header.height)?;
    let access = src.branch_access(Some(&block.header))?;
    let records = Records::new(&view, access.as_deref());
    let (name, rec) = records.by_id(&mref.source)?.ok_or_else(|| {
        ChainError::Corrupt(format!(
            "block {} merges branch {} that the chain does not record",
            block.header.height, mref.source
        ))
    })?;
    let created_after = records.created_after(src, &rec)?;
    if branch_id(&src.chain_id(), &name, &created_after) != rec.id {
        return Err(ChainError::Corrupt(format!(
            "branch {name}'s id does not derive from its creation"
        )));
    }
    let step = LineageStep {
        name,
        created_after,
    };
    let left_out: std::collections::HashSet<u32> =
        section.excluded.iter().map(|e| e.index).collect();
    for (j, c) in section.candidates.iter().enumerate() {
        let j = u32::try_from(j).map_err(|_| ChainError::Corrupt("candidate index".into()))?;
        if left_out.contains(&j) {
            continue;
        }
        let mut path = vec![step.clone()];
        if let Ok(k) = section.lineage.binary_search_by_key(&j, |l| l.index) {
            path.extend(
                section
                    .lineage
                    .get(k)
                    .map(|l| l.path.clone())
                    .unwrap_or_default(),
            );
        }
        if path.len() > MAX_LINEAGE_DEPTH {
            return Err(ChainError::InvalidTx {
                hash: c.hash,
                reason: format!(
                    "merged through more than {MAX_LINEAGE_DEPTH} levels of branches: merge the deeper branches first"
                ),
            });
        }
        out.lineage.push(Lineage {
            index: u32::try_from(out.txs.len())
                .map_err(|_| ChainError::Corrupt("candidate index".into()))?,
            path,
        });
        out.txs.push(c.clone());
    }
    Ok(out)
}

/// Executes a branch operation (kind 11) sent by `from`: `Ok(Err(reason))` is a failed
/// transaction (it pays its fee, nothing else changes).
pub(crate) fn execute_op(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    ctx: &BlockCtx,
    from: &Address,
) -> Result<Result<(), String>, ChainError> {
    let op = match BranchOp::decode(&tx.tx.payload) {
        Ok(op) => op,
        Err(e) => return Ok(Err(format!("malformed branch operation: {e}"))),
    };
    let existing = record(o, op.name())?;
    match op {
        BranchOp::Create {
            name,
            fork_height,
            producer,
            strategy,
            resolver,
            private,
        } => {
            if existing.as_ref().is_some_and(|r| r.deleted.is_none()) {
                return Ok(Err(format!("branch `{name}` already exists")));
            }
            if tag(o, &name)?.is_some() {
                return Ok(Err(format!(
                    "`{name}` is a tag of this chain: a branch needs another name"
                )));
            }
            if fork_height >= ctx.height {
                return Ok(Err(format!(
                    "fork height {fork_height} is not below this block's height {}",
                    ctx.height
                )));
            }
            let all = list(o)?;
            let live = all.iter().filter(|(_, r)| r.deleted.is_none()).count();
            if live >= MAX_BRANCHES {
                return Ok(Err(format!(
                    "this chain has {live} branches, the most it records; delete one first"
                )));
            }
            let mine = all
                .iter()
                .filter(|(_, r)| r.deleted.is_none() && r.creator == *from)
                .count();
            if mine >= MAX_BRANCHES_PER_CREATOR {
                return Ok(Err(format!(
                    "{from} created {mine} live branches of this chain, the most one account may; delete one first"
                )));
            }
            let rec = BranchRecord {
                id: branch_id(&ctx.chain_id, &name, &ctx.parent),
                fork_height,
                producer,
                strategy,
                creator: *from,
                created: ctx.height,
                deleted: None,
                resolver,
                private,
            };
            o.writes.insert(record_key(&name), Some(rec.encode()));
            Ok(Ok(()))
        }
        BranchOp::Tag { name, height, hash } => {
            if let Some((h, _)) = tag(o, &name)? {
                return Ok(Err(format!(
                    "tag `{name}` exists (height {h}); tags are immutable"
                )));
            }
            if existing.as_ref().is_some_and(|r| r.deleted.is_none()) {
                return Ok(Err(format!(
                    "`{name}` is a branch of this chain: a tag needs another name"
                )));
            }
            if height >= ctx.height {
                return Ok(Err(format!(
                    "a tag names an earlier block: height {height} is not below this block's {}",
                    ctx.height
                )));
            }
            if tags(o)?.len() >= MAX_TAGS {
                return Ok(Err(format!(
                    "this chain has {MAX_TAGS} tags, the most it records"
                )));
            }
            let mut v = height.to_be_bytes().to_vec();
            v.extend_from_slice(&hash.0);
            o.writes.insert(tag_key(&name), Some(v));
            Ok(Ok(()))
        }
        BranchOp::Delete { name } => {
            let Some(mut rec) = existing.filter(|r| r.deleted.is_none()) else {
                return Ok(Err(format!("no branch `{name}`")));
            };
            if rec.creator != *from {
                return Ok(Err(format!(
                    "branch `{name}` was created by {}; only its creator may delete it",
                    rec.creator
                )));
            }
            rec.deleted = Some(ctx.height);
            o.writes.insert(record_key(&name), Some(rec.encode()));
            Ok(Ok(()))
        }
    }
}

/// Why a branch operation (kind 11) is refused on a chain of repository `repo`: its branches
/// and tags are directory changes.
pub fn repo_branch_op_error(repo: &str) -> String {
    format!(
        "branches and tags of repository `{repo}` live in its directory: create and delete them with a directory change (`aergo --repo {repo} branch create|delete`, `aergo --repo {repo} tag`)"
    )
}

/// Why merge operation `op` cannot run on a chain whose state is `view` (`None`: it can),
/// given the merge block's `m` (on a merge block) — the checks the node also runs before
/// it builds a merge block, so a refused merge is reported at once and never mined.
pub fn merge_error(
    view: &dyn StateView,
    records: Records<'_>,
    op: &MergeOp,
    m: Option<&MergeCtx>,
) -> Result<Option<String>, ChainError> {
    let Some(rec) = records.get(&op.source)? else {
        return Ok(Some(format!(
            "no branch `{}` forks off this chain (a merge goes into the branch's parent)",
            op.source
        )));
    };
    if let Some(d) = rec.deleted {
        return Ok(Some(format!(
            "branch `{}` was deleted at height {d}",
            op.source
        )));
    }
    let base = merge_base(view, &rec)?;
    if op.source_height <= base {
        return Ok(Some(format!(
            "nothing to merge: `{}` is merged up to height {base}",
            op.source
        )));
    }
    if let Some(m) = m {
        if m.source != rec.id || m.source_height != op.source_height {
            return Ok(Some(format!(
                "the merge block merges {} up to {}, the transaction `{}` ({}) up to {}",
                m.source, m.source_height, op.source, rec.id, op.source_height
            )));
        }
        if m.strategy != rec.strategy {
            return Ok(Some(format!(
                "the merge block merges with the {} strategy, branch `{}` was created with {}",
                strategy_name(m.strategy),
                op.source,
                strategy_name(rec.strategy)
            )));
        }
    }
    Ok(None)
}

/// Why `from` may not merge branch `op.source` (`None`: it may): a private branch is merged
/// by its creator only (a merge publishes its transactions).
pub fn private_merge_error(
    records: Records<'_>,
    op: &MergeOp,
    from: &Address,
) -> Result<Option<String>, ChainError> {
    Ok(records
        .get(&op.source)?
        .filter(|r| r.private && r.creator != *from)
        .map(|r| {
            format!(
                "branch `{}` is private to {}: only its creator merges it",
                op.source, r.creator
            )
        }))
}

/// `auto` or `consistent`.
pub fn strategy_name(s: MergeStrategy) -> &'static str {
    match s {
        MergeStrategy::Auto => "auto",
        MergeStrategy::Consistent => "consistent",
    }
}

/// Executes a merge operation (kind 12) on a merge block: checks it against the block's
/// merge field and moves the merge base. A merge that cannot run is an invalid
/// transaction: the node checks it before building the block ([`merge_error`]).
pub(crate) fn execute_merge_op(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    m: &MergeCtx,
    ctx: &BlockCtx,
) -> Result<Result<(), String>, ChainError> {
    let height = ctx.height;
    let op = match MergeOp::decode(&tx.tx.payload) {
        Ok(op) => op,
        Err(e) => return Ok(Err(format!("malformed merge operation: {e}"))),
    };
    let access = ctx.access.clone();
    let records = Records::new(&*o, access.as_deref());
    if let Some(e) = merge_error(&*o, records, &op, Some(m))? {
        return Ok(Err(e));
    }
    if let Some(e) = private_merge_error(records, &op, &tx.tx.sender())? {
        return Ok(Err(e));
    }
    let mut v = op.source_height.to_be_bytes().to_vec();
    if m.strategy == MergeStrategy::Consistent {
        // The next consistent merge compares with this block's state.
        v.extend_from_slice(&height.to_be_bytes());
    }
    o.writes.insert(base_key(&m.source), Some(v));
    Ok(Ok(()))
}

/// An exclusion from an execution error's reason.
pub(crate) fn exclusion(index: u32, reason: &str, failed: bool) -> Exclusion {
    let kind = if failed {
        ExclusionReason::Failed
    } else if reason.starts_with(ALREADY_APPLIED) {
        ExclusionReason::AlreadyApplied
    } else if reason.contains("balance") {
        ExclusionReason::InsufficientBalance
    } else {
        ExclusionReason::Invalid
    };
    let mut detail = String::new();
    for c in reason.chars() {
        if detail.len() + c.len_utf8() > MAX_EXCLUSION_DETAIL {
            break;
        }
        detail.push(c);
    }
    Exclusion {
        index,
        reason: kind,
        detail,
    }
}

/// The start of the reason of a candidate merged before.
pub const ALREADY_APPLIED: &str = "already applied";

/// The genesis a branch's chain opens with: its parent's, with the branch's producer as a
/// solo engine (no empty blocks) and the fork point; its chain id is the branch id.
pub fn branch_genesis(
    parent: &Genesis,
    parent_id: Hash,
    name: &str,
    rec: &BranchRecord,
    fork_hash: Hash,
) -> Genesis {
    // Field by field: the parent's balances (its genesis state, possibly millions of
    // accounts) are never copied; a branch's state comes from its parent's.
    Genesis {
        chain_name: format!("{}:{name}", parent.chain_name),
        timestamp_ms: parent.timestamp_ms,
        balances: Vec::new(),
        consensus: ConsensusParams {
            engine: EngineKind::Solo,
            block_interval_ms: parent.consensus.block_interval_ms,
            producer: Some(Address::from_public_key(&rec.producer)),
            dpos: None,
            poa: None,
        },
        gas: parent.gas.clone(),
        repo_create_fee: parent.repo_create_fee,
        dd_interval_ms: parent.dd_interval_ms,
        repo: parent.repo.clone(),
        repos: Vec::new(),
        sql_engine: parent.sql_engine.clone(),
        branch: Some(aergo_types::branch::BranchGenesis {
            name: name.to_string(),
            id: rec.id,
            parent: parent_id,
            fork_height: rec.fork_height,
            fork_hash,
        }),
    }
}

/// A merge block's merged candidates (those not excluded), in order; none elsewhere.
/// Their receipts (and transaction index entries) follow the block's own transactions'.
pub fn merged_txs(block: &aergo_types::Block) -> Vec<&SignedTx> {
    let Some(m) = &block.body_ext.merge else {
        return Vec::new();
    };
    let mut ex = m.excluded.iter().map(|e| e.index).peekable();
    let mut out = Vec::with_capacity(m.candidates.len());
    for (i, c) in m.candidates.iter().enumerate() {
        if ex
            .peek()
            .is_some_and(|x| usize::try_from(*x).ok() == Some(i))
        {
            ex.next();
            continue;
        }
        out.push(c);
    }
    out
}
