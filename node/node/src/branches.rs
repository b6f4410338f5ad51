//! The branches a node hosts: for every live branch its chain's state records, a branch
//! chain ([`Chain::open_branch`]) wrapped in its own [`Node`] (mempool, RPC routing with
//! `branch`, and a producer thread when this node produces it), and the merge blocks this
//! node builds when it produces the parent.
//!
//! A node produces a branch only if the branch names its node key **and** its operator
//! accepted the branch by name (`admin_branch_accept`, loopback only; kept in
//! `DIR/accepted`), so no client can make a public node produce a branch. Branch chains live
//! in `DIR/<branch id, 16 hex>/`; their state falls through to the parent's (no copy).

use crate::node::Node;
use aergo_chain::branches::{self, Candidates};
use aergo_chain::Chain;
use aergo_types::block_ext::MergeRef;
use aergo_types::branch::{BranchRecord, MergeOp};
use aergo_types::{SignedTx, TxKind};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One hosted branch.
pub struct HostedBranch {
    /// Its record in the parent's state.
    pub record: BranchRecord,
    /// Its node (chain, mempool, producer state).
    pub node: Arc<Node>,
    /// Whether this node produces it.
    pub producer: bool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What a node's branches at every level share: the folder and the operator's acceptances.
struct Shared {
    dir: PathBuf,
    accepted: Mutex<BTreeSet<String>>,
}

/// The branches of one chain hosted by this node.
#[derive(Default)]
pub struct Branches {
    shared: Mutex<Option<Arc<Shared>>>,
    hosted: RwLock<BTreeMap<String, Arc<HostedBranch>>>,
    /// Held by [`Branches::sync`]: the commit path and a request may both sync, one at a
    /// time (a branch is opened once).
    syncing: Mutex<()>,
}

impl Branches {
    /// Where branch chains live (`DATA/branches`), with the operator's acceptances.
    pub fn configure(&self, dir: PathBuf) -> anyhow::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let accepted = match std::fs::read_to_string(dir.join("accepted")) {
            Ok(t) => t
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e.into()),
        };
        *self.shared.lock() = Some(Arc::new(Shared {
            dir,
            accepted: Mutex::new(accepted),
        }));
        Ok(())
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.lock().clone()
    }

    /// The operator accepts to produce branch `name` when it names this node's key.
    pub fn accept(&self, name: &str) -> anyhow::Result<()> {
        if let Some(e) = aergo_types::branch::name_error(name) {
            anyhow::bail!(e);
        }
        let sh = self
            .shared()
            .ok_or_else(|| anyhow::anyhow!("branches are not configured on this node"))?;
        let mut a = sh.accepted.lock();
        if a.len() >= branches::MAX_BRANCHES && !a.contains(name) {
            anyhow::bail!("this node accepted {} branches, the most it keeps", a.len());
        }
        a.insert(name.to_string());
        let text: String = a.iter().map(|n| format!("{n}\n")).collect();
        let tmp = sh.dir.join("accepted.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, sh.dir.join("accepted"))?;
        Ok(())
    }

    /// Whether the operator accepted branch `name`.
    pub fn accepted(&self, name: &str) -> bool {
        self.shared()
            .is_some_and(|sh| sh.accepted.lock().contains(name))
    }

    /// A hosted branch by name.
    pub fn get(&self, name: &str) -> Option<Arc<HostedBranch>> {
        self.hosted.read().get(name).cloned()
    }

    /// [`Branches::get`], first hosting the branch if `parent`'s chain records it live but
    /// the commit path has not opened it yet: a client that saw the creating block included
    /// may address the branch at once.
    pub fn get_or_sync(&self, parent: &Node, name: &str) -> Option<Arc<HostedBranch>> {
        if let Some(h) = self.get(name) {
            return Some(h);
        }
        let chain = &parent.chain;
        let live = chain
            .view_at(chain.tip().header.height)
            .and_then(|v| {
                let access = chain.branch_access(None)?;
                branches::Records::new(&v, access.as_deref()).get(name)
            })
            .ok()
            .flatten()
            .is_some_and(|r| r.deleted.is_none());
        if live {
            if let Err(e) = self.sync(parent) {
                tracing::error!(error = %e, branch = name, "cannot open a new branch");
            }
        }
        self.get(name)
    }

    /// The hosted branch, at any depth below this chain, whose chain id is `chain`.
    pub fn find(&self, chain: &[u8; 32]) -> Option<Arc<HostedBranch>> {
        self.all().into_iter().find_map(|(_, h)| {
            if h.node.chain.chain_id().0 == *chain {
                Some(h)
            } else {
                h.node.branches.find(chain)
            }
        })
    }

    /// Gives every hosted branch, at any depth, the network's outbound queues `out` (with
    /// its own chain id): its producer's blocks and its clients' transactions are gossiped.
    /// Branches hosted later take their parent's in [`Branches::host`].
    pub fn set_outbox(&self, out: &crate::node::Outbox) {
        for (_, h) in self.all() {
            let mine = crate::node::Outbox {
                chain: h.node.chain.chain_id().0,
                ..out.clone()
            };
            *h.node.net.outbound.lock() = Some(mine.clone());
            h.node.branches.set_outbox(&mine);
        }
    }

    /// Every hosted branch at any depth below this chain, parents first.
    pub fn all_deep(&self) -> Vec<Arc<HostedBranch>> {
        let mut out = Vec::new();
        for (_, h) in self.all() {
            let below = h.node.branches.all_deep();
            out.push(h);
            out.extend(below);
        }
        out
    }

    /// Every hosted branch, by name.
    pub fn all(&self) -> Vec<(String, Arc<HostedBranch>)> {
        self.hosted
            .read()
            .iter()
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect()
    }

    /// Hosts every live branch `parent`'s chain records that is not hosted yet (and whose
    /// fork block this node has), and stops producing deleted ones (their blocks stay) and
    /// those whose record a fork switch took away. Runs on the parent's commit path: stopping
    /// a branch waits for its producer to finish its block (at most one heartbeat, 1 s).
    pub fn sync(&self, parent: &Node) -> anyhow::Result<()> {
        let Some(sh) = self.shared() else {
            return Ok(());
        };
        let _one = self.syncing.lock();
        let dir = sh.dir.clone();
        let chain = &parent.chain;
        let tip = chain.tip().header.height;
        let view = chain.view_at(tip)?;
        let access = chain.branch_access(None)?;
        let records = branches::Records::new(&view, access.as_deref()).list()?;
        // A hosted branch whose record is gone (its creating block was reverted by a fork
        // switch) or now names another branch (created again) stops and is no longer
        // hosted; a deleted one stops producing and taking transactions, and stays hosted
        // so its blocks stay readable.
        for (name, h) in self.all() {
            let current = records
                .iter()
                .find(|(n, r)| *n == name && r.id == h.record.id)
                .map(|(_, r)| r);
            match current {
                None => {
                    self.hosted.write().remove(&name);
                    stop(&h);
                    tracing::info!(branch = %name, id = %h.record.id, "branch no longer recorded: not hosted any more");
                }
                Some(r) if r.deleted.is_some() && !h.node.retired.swap(true, Ordering::SeqCst) => {
                    stop(&h);
                    tracing::info!(branch = %name, id = %h.record.id, "branch deleted: not produced any more, its blocks stay readable");
                }
                Some(_) => {}
            }
        }
        for (name, rec) in records {
            if self.get(&name).is_some() || rec.fork_height > tip {
                continue;
            }
            if rec.deleted.is_some() {
                // Hosted again after a restart, read-only, where this node kept its blocks.
                let hex = rec.id.to_string();
                if !dir.join(hex.get(..16).unwrap_or(&hex)).exists() {
                    continue;
                }
            }
            // A directory's record names the fork block: the directory cannot see the
            // ledger, so a node opens the branch only where the parent holds that block.
            let named = access
                .as_ref()
                .and_then(|a| a.branches.iter().find(|(n, _)| *n == name))
                .map(|(_, b)| b.fork_hash);
            if let Some(want) = named {
                let have = chain.hash_at(rec.fork_height)?;
                if have != Some(want) {
                    tracing::warn!(branch = %name, fork = rec.fork_height, %want, "branch not opened: its fork block is not this chain's");
                    continue;
                }
            }
            self.host(parent, &dir, &name, rec)?;
        }
        Ok(())
    }

    /// [`Branches::sync`] here and in every hosted branch below, parents first.
    pub fn sync_deep(&self, parent: &Node) -> anyhow::Result<()> {
        self.sync(parent)?;
        for (_, h) in self.all() {
            h.node.branches.sync_deep(&h.node)?;
        }
        Ok(())
    }

    fn host(
        &self,
        parent: &Node,
        dir: &std::path::Path,
        name: &str,
        rec: BranchRecord,
    ) -> anyhow::Result<()> {
        let chain = &parent.chain;
        let fork_hash = chain
            .hash_at(rec.fork_height)?
            .ok_or_else(|| anyhow::anyhow!("no block at fork height {}", rec.fork_height))?;
        let genesis =
            branches::branch_genesis(chain.genesis(), chain.chain_id(), name, &rec, fork_hash);
        let hex = rec.id.to_string();
        let path = dir.join(hex.get(..16).unwrap_or(&hex));
        let branch = Arc::new(Chain::open_branch(chain.clone(), genesis, &path)?);
        let node = Arc::new(Node::new(
            branch,
            parent.key.clone(),
            parent.mempool.lock().config().clone(),
            false,
        ));
        *node.branches.shared.lock() = self.shared();
        if let Some(out) = parent.net.outbound.lock().clone() {
            *node.net.outbound.lock() = Some(crate::node::Outbox {
                chain: node.chain.chain_id().0,
                ..out
            });
        }
        node.branches.sync(&node)?;
        if rec.deleted.is_some() {
            node.retired.store(true, Ordering::SeqCst);
        }
        let producer =
            rec.deleted.is_none() && rec.producer == parent.key.public() && self.accepted(name);
        let thread = if producer {
            let n = node.clone();
            Some(
                std::thread::Builder::new()
                    .name(format!("branch-{name}"))
                    .spawn(move || crate::producer::run(n))?,
            )
        } else {
            None
        };
        tracing::info!(
            branch = %name,
            id = %rec.id,
            fork = rec.fork_height,
            height = node.chain.tip().header.height,
            producer,
            "hosting branch"
        );
        self.hosted.write().insert(
            name.to_string(),
            Arc::new(HostedBranch {
                record: rec,
                node,
                producer,
                thread: Mutex::new(thread),
            }),
        );
        Ok(())
    }

    /// Stops every branch's producer (each finishes its block in progress), branches of
    /// branches first.
    pub fn shutdown(&self) {
        for (_, h) in self.all() {
            stop(&h);
        }
    }
}

fn stop(h: &HostedBranch) {
    h.node.branches.shutdown();
    h.node.shutdown.store(true, Ordering::SeqCst);
    h.node.wake();
    if let Some(t) = h.thread.lock().take() {
        let _ = t.join();
    }
}

/// What a merge transaction would merge on `node`'s chain now: the source's record, its
/// transactions since the merge base up to the requested height, and the merge field of
/// the block; or why it cannot run (checked at admission and again when the block is built).
pub fn plan_merge(node: &Node, tx: &SignedTx) -> Result<(MergeRef, Candidates), String> {
    let op = MergeOp::decode(&tx.tx.payload).map_err(|e| e.to_string())?;
    plan(node, &op)
}

/// [`plan_merge`] for an operation (also the dry run).
pub fn plan(node: &Node, op: &MergeOp) -> Result<(MergeRef, Candidates), String> {
    let (mref, blocks) = plan_blocks(node, op)?;
    let mut candidates = Candidates::default();
    for (_, c) in blocks {
        candidates.append(c);
    }
    Ok((mref, candidates))
}

/// The candidates of a merge, by source block: [`plan`] before they are joined, so that
/// [`plan_parts`] splits them without reading the source's blocks again.
pub type SourceBlocks = Vec<(u64, Candidates)>;

/// [`plan`], the candidates grouped by the source block they come from (ascending height).
pub fn plan_blocks(node: &Node, op: &MergeOp) -> Result<(MergeRef, SourceBlocks), String> {
    let chain = &node.chain;
    let view = chain
        .view_at(chain.tip().header.height)
        .map_err(|e| e.to_string())?;
    let access = chain.branch_access(None).map_err(|e| e.to_string())?;
    let records = branches::Records::new(&view, access.as_deref());
    if let Some(e) = branches::merge_error(&view, records, op, None).map_err(|e| e.to_string())? {
        return Err(e);
    }
    let rec = records
        .get(&op.source)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no branch `{}`", op.source))?;
    let src = node
        .branches
        .get(&op.source)
        .filter(|h| h.record.id == rec.id)
        .ok_or_else(|| format!("this node does not host branch `{}`", op.source))?;
    let sc = &src.node.chain;
    let final_height = sc.finalized_height();
    if op.source_height > final_height {
        return Err(format!(
            "branch `{}` is final up to height {final_height}; a merge takes final blocks only",
            op.source
        ));
    }
    let base = branches::merge_base(&view, &rec).map_err(|e| e.to_string())?;
    let mut blocks = Vec::new();
    for h in base + 1..=op.source_height {
        let b = sc
            .block_by_height(h)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("branch `{}` has no block {h}", op.source))?;
        blocks.push((
            h,
            branches::block_candidates(sc, &b).map_err(|e| e.to_string())?,
        ));
    }
    let source_tip = sc
        .hash_at(op.source_height)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("branch `{}` has no block {}", op.source, op.source_height))?;
    Ok((
        MergeRef {
            source: rec.id,
            source_tip,
            source_height: op.source_height,
            strategy: rec.strategy,
            last: true,
            lists_root: aergo_types::Hash::ZERO,
        },
        blocks,
    ))
}

/// Room a merge block keeps for its merge transaction and the sections' counts.
const MERGE_TX_ROOM: usize = 2048;

/// Gas a merge block keeps for its merge transaction.
const MERGE_TX_GAS: u64 = 100_000;

/// The source heights a merge of `op` splits at so that each part's merge block fits a block,
/// each with its number of candidates: ascending, the last one `op.source_height` (one
/// element: it fits one block). A part ends at a source block boundary; it holds
/// candidates whose bytes — each with the room an exclusion of the longest reason would
/// take, and their lineage — and gas limits fit the block size and gas limit. A single
/// source block too large for a merge block is an error. `blocks`: [`plan_blocks`]'s.
pub fn plan_parts(
    node: &Node,
    op: &MergeOp,
    blocks: &SourceBlocks,
) -> Result<Vec<(u64, usize)>, String> {
    use aergo_types::block_ext::MAX_EXCLUSION_DETAIL;
    let chain = &node.chain;
    let view = chain
        .view_at(chain.tip().header.height)
        .map_err(|e| e.to_string())?;
    let limits =
        aergo_chain::staking::gas_limits(&view, &chain.genesis().gas).map_err(|e| e.to_string())?;
    let bytes_budget = chain
        .max_block_size()
        .saturating_sub(aergo_chain::limits::BLOCK_HEADER_ROOM + MERGE_TX_ROOM);
    let gas_budget = limits.block_gas_limit.saturating_sub(MERGE_TX_GAS);
    let mut parts = Vec::new();
    let (mut bytes, mut gas, mut count) = (0usize, 0u64, 0usize);
    for (h, c) in blocks {
        let h = *h;
        let lineage_bytes: usize = c
            .lineage
            .iter()
            .map(|l| 5 + l.path.iter().map(|s| 4 + s.name.len() + 32).sum::<usize>())
            .sum();
        let (bb, bg) = c.txs.iter().fold((lineage_bytes, 0u64), |(x, g), t| {
            (
                x + t.encode().len() + 4 + 9 + MAX_EXCLUSION_DETAIL,
                g.saturating_add(t.tx.gas_limit),
            )
        });
        if bb > bytes_budget || bg > gas_budget {
            return Err(format!(
                "block {h} of `{}` alone does not fit a merge block ({bb} bytes of {bytes_budget}, {bg} gas of {gas_budget})",
                op.source
            ));
        }
        if bytes + bb > bytes_budget || gas.saturating_add(bg) > gas_budget {
            parts.push((h - 1, count));
            (bytes, gas, count) = (0, 0, 0);
        }
        bytes += bb;
        gas = gas.saturating_add(bg);
        count += c.len();
    }
    parts.push((op.source_height, count));
    Ok(parts)
}

/// Whether `tx` is a merge (the producer builds a merge block for it alone).
pub fn is_merge(tx: &SignedTx) -> bool {
    tx.tx.kind == TxKind::Merge
}
