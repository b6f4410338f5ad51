//! The running node: chain, mempool, identity, metrics and event channels shared by the
//! producer thread and the RPC server. Transaction admission lives here.

use aergo_chain::chain::Applied;
use aergo_chain::exec::check_stateless_with;
use aergo_chain::mempool::{Mempool, Reject};
use aergo_chain::stages::STAGES;
use aergo_chain::Chain;
use aergo_os::config::MempoolConfig;
use aergo_rpc::types::{BlockSummary, TxSummary};
use aergo_types::{Address, Block, Hash, Keypair, SignedTx};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    t.saturating_add_signed(clock_skew_ms())
}

/// Environment variable that shifts this node's clock by a signed number of milliseconds
/// (an injected fault, for tests of nodes whose clocks disagree). Read once.
pub const CLOCK_SKEW_ENV: &str = "AERGO_FAULT_CLOCK_SKEW_MS";

/// The injected clock skew ([`CLOCK_SKEW_ENV`]), 0 when unset or not a number.
pub fn clock_skew_ms() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var(CLOCK_SKEW_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// A duration in µs, saturating (for latency figures).
pub fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A count for a u32 figure (counts of blocks' transactions and peers are far below it).
pub fn count32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// Not decodable.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// Fails a stateless rule.
    #[error("{0}")]
    Rule(String),
    /// Bad signature.
    #[error("invalid signature")]
    Signature,
    /// The mempool refused it.
    #[error("{0}")]
    Mempool(#[from] Reject),
    /// The outbound transaction gossip queue is full: accepting the transaction now could
    /// leave it in this node's mempool only, unknown to the producers.
    #[error("node busy: its transaction gossip queue is full ({0} waiting); retry shortly")]
    GossipBusy(usize),
    /// Chain failure.
    #[error("node error: {0}")]
    Chain(String),
    /// Valid, but this node cannot take it (a merge of a branch it does not host or has not
    /// seen final): not the sender's fault, so a peer that gossips it is not penalised.
    #[error("{0}")]
    NotHere(String),
}

/// A free contract read was refused: as many as allowed are running.
#[derive(Debug, thiserror::Error)]
#[error("node busy: {max} contract queries or views are already running; retry shortly")]
pub struct Busy {
    /// The concurrency cap.
    pub max: usize,
}

/// Caps how many free contract reads (`contract_query`, `contract_call_view`) run at once.
/// Each may use up to the query gas cap of CPU and its memory budget; without a cap a client
/// could occupy every blocking thread and the memory of as many queries. Beyond the cap a
/// read is refused at once ([`Busy`]), never queued.
pub struct QueryGate {
    max: usize,
    running: std::sync::atomic::AtomicUsize,
    /// Reads refused since start.
    pub refused: AtomicU64,
}

/// A running read; dropping it frees its place.
pub struct QueryPermit<'a>(&'a QueryGate);

impl Drop for QueryPermit<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl QueryGate {
    /// A gate admitting `max` (at least 1) reads at once.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            running: std::sync::atomic::AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }
    /// The default cap: one read per core but one, at least one — a core stays free for the
    /// block producer, whose slot must not wait behind free reads (each may run up to the
    /// query gas cap, ~1 s of the slowest work on the 2-core development machine).
    pub fn default_max() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .saturating_sub(1)
            .max(1)
    }
    /// The cap.
    #[cfg_attr(not(test), allow(dead_code))] // tests and diagnostics
    pub fn max(&self) -> usize {
        self.max
    }
    /// Reads running now.
    #[cfg_attr(not(test), allow(dead_code))] // tests and diagnostics
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
    /// A place for one read, or [`Busy`] when all are taken.
    pub fn try_acquire(&self) -> Result<QueryPermit<'_>, Busy> {
        let got = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        match got {
            Ok(_) => Ok(QueryPermit(self)),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Busy { max: self.max })
            }
        }
    }
}

/// Node metrics.
#[derive(Default)]
pub struct Metrics {
    /// Transactions included since start.
    pub txs_total: AtomicU64,
    /// Blocks produced or applied since start.
    pub blocks_total: AtomicU64,
    /// Sum of commit latencies (µs).
    pub commit_us_sum: AtomicU64,
    /// Last commit latency (µs).
    pub commit_us_last: AtomicU64,
    /// Recent blocks (timestamp ms, tx count) for the 1-minute tx/s figure.
    pub recent: Mutex<VecDeque<(u64, u32)>>,
    /// The last block's DTT width (transactions runnable at once on average), × 1000;
    /// 0 for a block without a DTT.
    pub dtt_width_milli: AtomicU64,
}

impl Metrics {
    /// Records a committed block.
    pub fn block(&self, ts_ms: u64, txs: u32, commit_us: u64) {
        self.txs_total.fetch_add(txs as u64, Ordering::Relaxed);
        self.blocks_total.fetch_add(1, Ordering::Relaxed);
        self.commit_us_sum.fetch_add(commit_us, Ordering::Relaxed);
        self.commit_us_last.store(commit_us, Ordering::Relaxed);
        let mut r = self.recent.lock();
        r.push_back((ts_ms, txs));
        while r
            .front()
            .map(|(t, _)| ts_ms.saturating_sub(*t) > 60_000)
            .unwrap_or(false)
        {
            r.pop_front();
        }
    }
    /// Transactions per second over the last minute.
    pub fn tps_1m(&self, now: u64) -> f64 {
        let r = self.recent.lock();
        let n: u64 = r
            .iter()
            .filter(|(t, _)| now.saturating_sub(*t) <= 60_000)
            .map(|(_, c)| *c as u64)
            .sum();
        n as f64 / 60.0
    }
}

/// The node.
pub struct Node {
    /// The chain.
    pub chain: Arc<Chain>,
    /// Pending transactions.
    pub mempool: Mutex<Mempool>,
    /// The node key.
    pub key: Keypair,
    /// Produce empty blocks.
    pub empty_blocks: AtomicBool,
    /// Set on shutdown.
    pub shutdown: AtomicBool,
    /// Set on a deleted branch's node: it is still hosted, so its blocks stay readable, but
    /// it takes no transactions and produces nothing.
    pub retired: AtomicBool,
    /// Wakes the producer (new tx, shutdown).
    pub wake: (Mutex<bool>, Condvar),
    /// New block notifications.
    pub blocks_tx: broadcast::Sender<BlockSummary>,
    /// Pending tx notifications.
    pub pending_tx: broadcast::Sender<TxSummary>,
    /// Metrics.
    pub metrics: Metrics,
    /// Start time.
    pub started_ms: u64,
    /// Network state (peers, sync) and the outbound gossip queue.
    pub net: NetState,
    /// Free space on the data disk (production and imports pause when it runs out).
    pub disk: crate::disk::DiskGuard,
    /// Concurrency cap of free contract reads.
    pub queries: QueryGate,
    /// Heartbeats of the vital tasks (`/health`).
    pub vital: crate::vital::Heartbeats,
    /// Injectable faults (only with `--allow-fault-injection`).
    pub faults: crate::vital::Faults,
    /// The repositories hosted beside this (root) chain; empty on a repository's own node.
    pub repos: crate::repos::Repos,
    /// On a repository directory's node: the repository's ledger (identifier heights are its
    /// heights).
    pub ledger: parking_lot::RwLock<Option<Arc<Chain>>>,
    /// On a repository directory's node: the ledger's node, whose branches (recorded by the
    /// directory) are synced after each directory commit.
    pub ledger_node: parking_lot::RwLock<Option<std::sync::Weak<Node>>>,
    /// Which ledger this node runs, for log lines: `aergo`, `NAME` or `NAME/dd`.
    pub label: String,
    /// The branches of this chain this node hosts.
    pub branches: crate::branches::Branches,
    /// Pre-confirmation: the pending block, waiting clients, the promise log.
    pub preconf: crate::preconf::Preconf,
}

/// Where committed blocks came from (see [`Node::on_committed`]).
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// This node's producer built the block; `rejected` are the candidates it left out.
    Produced {
        /// Candidates that could not be included, with the reason.
        rejected: &'a [(Hash, String)],
    },
    /// The block came from the network (gossip or sync), possibly with a fork switch.
    Imported,
}

impl Origin<'_> {
    /// The origin in log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Produced { .. } => "produced",
            Origin::Imported => "imported",
        }
    }
}

/// Something to gossip.
#[derive(Debug)]
pub enum Outbound {
    /// `SignedTx::encode()` bytes.
    Tx(Vec<u8>),
    /// `Block::encode()` bytes.
    Block(Vec<u8>),
}

/// Most transactions waiting to be gossiped. Drop policy: a transaction is gossiped from here
/// or not admitted at all — while the queue is full, admission refuses new transactions
/// ([`AdmitError::GossipBusy`], retryable), and a send that still finds it full (a race with
/// another admission) drops the gossip and counts it (`aergo_gossip_tx_dropped_total`; the
/// transaction stays in this node's mempool). Blocks have their own queue and are never
/// dropped: this node produces at most one per slot.
pub const GOSSIP_TX_QUEUE: usize = 8192;

/// The outbound gossip queues (see [`GOSSIP_TX_QUEUE`]), shared by the root chain and the
/// hosted repositories: every item carries the id of the chain it belongs to.
#[derive(Clone)]
pub struct Outbox {
    /// The chain whose node owns this outbox.
    pub chain: [u8; 32],
    /// Transactions (`SignedTx::encode()` bytes), bounded.
    pub txs: tokio::sync::mpsc::Sender<([u8; 32], Vec<u8>)>,
    /// Blocks (`Block::encode()` bytes).
    pub blocks: tokio::sync::mpsc::UnboundedSender<([u8; 32], Vec<u8>)>,
}

/// What the network task shares with the rest of the node.
#[derive(Default)]
pub struct NetState {
    /// Outbound gossip (absent when networking is off).
    pub outbound: Mutex<Option<Outbox>>,
    /// Transaction gossip dropped because its queue was full.
    pub gossip_tx_dropped: AtomicU64,
    /// The last peer table.
    pub peers: Mutex<Vec<aergo_rpc::types::PeerJson>>,
    /// Catching up with the network: the producer waits.
    pub syncing: AtomicBool,
    /// Highest height a peer reported.
    pub target: AtomicU64,
    /// Blocks imported by sync since start.
    pub synced_blocks: AtomicU64,
    /// Blocks received by gossip and applied since start.
    pub gossip_blocks: AtomicU64,
    /// Blocks rejected as invalid since start.
    pub rejected_blocks: AtomicU64,
    /// Blocks dropped as early (slot not started here yet, within the tolerated window).
    pub early_blocks: AtomicU64,
    /// Reorganisations since start.
    pub reorgs: AtomicU64,
    /// This node's libp2p peer id and listen addresses.
    pub identity: Mutex<Option<(String, Vec<String>)>>,
    /// The network (absent when networking is off): forwards pre-confirmation requests.
    pub p2p: Mutex<Option<aergo_p2p::P2pHandle>>,
    /// Connected peers by the node key they proved (a producer's key → its peer).
    pub peer_keys: Mutex<std::collections::HashMap<[u8; 32], aergo_p2p::PeerId>>,
}

impl NetState {
    /// Queues gossip (nothing when networking is off); see [`GOSSIP_TX_QUEUE`] for what is
    /// dropped when.
    pub fn send(&self, o: Outbound) {
        let Some(out) = self.outbound.lock().clone() else {
            return;
        };
        match o {
            Outbound::Tx(b) => {
                if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) =
                    out.txs.try_send((out.chain, b))
                {
                    self.gossip_tx_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outbound::Block(b) => {
                let _ = out.blocks.send((out.chain, b));
            }
        }
    }

    /// Transactions waiting to be gossiped, when the queue is full (admission refuses then).
    pub fn tx_gossip_full(&self) -> Option<usize> {
        let g = self.outbound.lock();
        let txs = &g.as_ref()?.txs;
        (txs.capacity() == 0).then(|| txs.max_capacity())
    }

    /// Transactions waiting to be gossiped.
    pub fn tx_gossip_waiting(&self) -> usize {
        self.outbound
            .lock()
            .as_ref()
            .map(|o| o.txs.max_capacity().saturating_sub(o.txs.capacity()))
            .unwrap_or(0)
    }
}

/// Senders pruned from the mempool under one hold of its lock after a commit.
const PRUNE_CHUNK: usize = 16;

impl Node {
    /// A node around an opened chain.
    pub fn new(
        chain: Arc<Chain>,
        key: Keypair,
        mempool: MempoolConfig,
        empty_blocks: bool,
    ) -> Self {
        Self {
            mempool: Mutex::new(Mempool::new(mempool)),
            key,
            empty_blocks: AtomicBool::new(empty_blocks),
            shutdown: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
            blocks_tx: broadcast::channel(256).0,
            pending_tx: broadcast::channel(4096).0,
            metrics: Metrics::default(),
            started_ms: now_ms(),
            net: NetState::default(),
            disk: crate::disk::DiskGuard::default(),
            queries: QueryGate::new(QueryGate::default_max()),
            vital: Default::default(),
            faults: Default::default(),
            repos: Default::default(),
            ledger: Default::default(),
            ledger_node: Default::default(),
            branches: Default::default(),
            preconf: Default::default(),
            label: chain
                .genesis()
                .branch
                .as_ref()
                .map(|b| format!("branch {}", b.name))
                .unwrap_or_else(|| {
                    chain
                        .genesis()
                        .repo
                        .as_ref()
                        .map(|r| match r.part {
                            aergo_types::repo::RepoPart::Ledger => r.name.clone(),
                            aergo_types::repo::RepoPart::Directory => format!("{}/dd", r.name),
                        })
                        .unwrap_or_else(|| aergo_types::repo::ROOT_REPO.into())
                }),
            chain,
        }
    }

    /// The node key's address.
    pub fn address(&self) -> Address {
        Address::from_public_key(&self.key.public())
    }

    /// Wakes the producer thread.
    pub fn wake(&self) {
        let (m, c) = &self.wake;
        *m.lock() = true;
        c.notify_all();
    }

    /// Decodes and checks a transaction without touching the mempool.
    pub fn check(&self, bytes: &[u8]) -> Result<SignedTx, AdmitError> {
        let tx = self.check_rules(bytes)?;
        let run = STAGES.verify.start();
        let ok = tx.verify_signature();
        drop(run);
        if !ok {
            return Err(AdmitError::Signature);
        }
        // A block that carries it later does not verify it again.
        aergo_chain::sigcache::remember([&tx]);
        Ok(tx)
    }

    /// [`Node::check`] for many transactions at once (a JSON-RPC batch): the signatures are
    /// verified in one batch (about half the cost of one by one), the rules per transaction.
    pub fn check_batch(&self, items: &[&[u8]]) -> Vec<Result<SignedTx, AdmitError>> {
        let ruled: Vec<Result<SignedTx, AdmitError>> =
            items.iter().map(|b| self.check_rules(b)).collect();
        let sigs: Vec<(aergo_types::PublicKey, &[u8], aergo_types::Signature)> = ruled
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|t| (t.tx.from, &t.hash.0[..], t.signature))
            .collect();
        let run = STAGES.verify.start().items(sigs.len());
        let mut valid = aergo_types::crypto::verify_batch(&sigs).into_iter();
        drop(run);
        let checked: Vec<Result<SignedTx, AdmitError>> = ruled
            .into_iter()
            .map(|r| {
                let tx = r?;
                if valid.next().unwrap_or(false) {
                    Ok(tx)
                } else {
                    Err(AdmitError::Signature)
                }
            })
            .collect();
        // A block that carries them later does not verify them again.
        aergo_chain::sigcache::remember(checked.iter().filter_map(|r| r.as_ref().ok()));
        checked
    }

    /// Every admission rule of [`Node::check`] but the signature.
    fn check_rules(&self, bytes: &[u8]) -> Result<SignedTx, AdmitError> {
        let _run = STAGES.ingest.start();
        if self.retired.load(Ordering::SeqCst) {
            return Err(AdmitError::Rule(
                "this branch was deleted: it takes no transactions (its blocks stay readable)"
                    .into(),
            ));
        }
        let tx = SignedTx::decode(bytes).map_err(|e| AdmitError::Malformed(e.to_string()))?;
        check_stateless_with(
            &tx,
            &self.chain.chain_id(),
            &self.chain.genesis().gas,
            self.chain.engine().staking().is_some(),
        )
        .map_err(AdmitError::Rule)?;
        let role = aergo_chain::exec::ChainRole::of(self.chain.genesis());
        if let Some(r) = aergo_chain::exec::kind_error(tx.tx.kind, role) {
            return Err(AdmitError::Rule(r));
        }
        if tx.tx.kind == aergo_types::TxKind::RepoCreate {
            // Refused here with a clear error instead of failing (and paying gas) in a block.
            let name = aergo_types::repo::RepoCreate::decode(&tx.tx.payload)
                .map(|c| c.name)
                .map_err(|e| AdmitError::Rule(e.to_string()))?;
            let tip = self.chain.tip().header.height;
            let view = self
                .chain
                .view_at(tip)
                .map_err(|e| AdmitError::Chain(e.to_string()))?;
            if aergo_chain::repos::registration(&view, &name)
                .map_err(|e| AdmitError::Chain(e.to_string()))?
                .is_some()
            {
                return Err(AdmitError::Rule(format!(
                    "repository `{name}` already exists; choose another name"
                )));
            }
        }
        if tx.tx.kind == aergo_types::TxKind::DirectoryChange {
            self.check_directory_change(&tx)?;
        }
        if tx.tx.kind == aergo_types::TxKind::Branch {
            self.check_branch_op(&tx)?;
        }
        if tx.tx.kind == aergo_types::TxKind::Merge {
            let op = aergo_types::branch::MergeOp::decode(&tx.tx.payload)
                .map_err(|e| AdmitError::Rule(e.to_string()))?;
            let view = self
                .chain
                .view_at(self.chain.tip().header.height)
                .map_err(|e| AdmitError::Chain(e.to_string()))?;
            let access = self
                .chain
                .branch_access(None)
                .map_err(|e| AdmitError::Chain(e.to_string()))?;
            let records = aergo_chain::branches::Records::new(&view, access.as_deref());
            if let Some(e) = aergo_chain::branches::merge_error(&view, records, &op, None)
                .map_err(|e| AdmitError::Chain(e.to_string()))?
            {
                return Err(AdmitError::Rule(e));
            }
            if let Some(e) =
                aergo_chain::branches::private_merge_error(records, &op, &tx.tx.sender())
                    .map_err(|e| AdmitError::Chain(e.to_string()))?
            {
                return Err(AdmitError::Rule(e));
            }
            let (mref, candidates) =
                crate::branches::plan_merge(self, &tx).map_err(AdmitError::NotHere)?;
            if mref.strategy == aergo_types::block_ext::MergeStrategy::Consistent {
                // A consistent merge with conflicts no resolver decides is refused here, with
                // every conflict, rather than left out by the producer later.
                match self.chain.preview_merge_with(
                    &self.key,
                    &mref,
                    &candidates.txs,
                    &candidates.lineage,
                ) {
                    Ok(_) => {}
                    Err(aergo_chain::ChainError::InvalidTx { reason, .. }) => {
                        return Err(AdmitError::Rule(reason))
                    }
                    Err(e) => return Err(AdmitError::Chain(e.to_string())),
                }
            }
        }
        // A repository: the sender needs the `write` role in its directory's final state.
        if let Some(e) = self
            .chain
            .write_error(&tx.tx.sender())
            .map_err(|e| AdmitError::Chain(e.to_string()))?
        {
            return Err(AdmitError::Rule(e));
        }
        Ok(tx)
    }

    /// Refuses at admission, with the reason, a directory change that could not be included
    /// (the sender is not an admin) or would fail in the block (a tag already set, an unknown
    /// identifier…), and identifier heights at or below the repository's height (never
    /// retroactive).
    fn check_directory_change(&self, tx: &SignedTx) -> Result<(), AdmitError> {
        let chain_err = |e: aergo_chain::ChainError| AdmitError::Chain(e.to_string());
        let op = aergo_types::repo::DdOp::decode(&tx.tx.payload)
            .map_err(|e| AdmitError::Rule(e.to_string()))?;
        let name = self.chain.repo_name();
        let view = self
            .chain
            .view_at(self.chain.tip().header.height)
            .map_err(chain_err)?;
        if let Some(e) = aergo_chain::directory::change_error(&view, &name, &tx.tx.sender(), &op)
            .map_err(chain_err)?
        {
            return Err(AdmitError::Rule(e));
        }
        if let aergo_types::repo::DdOp::BranchCreate {
            path,
            fork_height,
            fork_hash,
            ..
        } = &op
        {
            // The parent (the ledger, or the branch a nested path names) must hold the fork
            // point as a final block. This node holds the ledger beside its directory; a
            // parent branch it does not host is checked by the nodes that open the new
            // one: they host it only where the parent holds the named block.
            let parent: Option<(Arc<Chain>, String)> = match path.rsplit_once('/') {
                None => self
                    .ledger
                    .read()
                    .clone()
                    .map(|l| (l, format!("repository `{name}`"))),
                Some((parent, _)) => {
                    let ledger = self.ledger_node.read().as_ref().and_then(|w| w.upgrade());
                    ledger.and_then(|l| {
                        let mut cur = l;
                        for level in parent.split('/') {
                            let next = cur.branches.get(level)?.node.clone();
                            cur = next;
                        }
                        Some((cur.chain.clone(), format!("branch `{parent}`")))
                    })
                }
            };
            if let Some((l, what)) = parent {
                let fin = l.finalized_height();
                if *fork_height > fin {
                    return Err(AdmitError::Rule(format!(
                        "a fork point must be final: height {fork_height} is above {what}'s last final block {fin}"
                    )));
                }
                let at = l.hash_at(*fork_height).map_err(chain_err)?;
                if at != Some(*fork_hash) {
                    return Err(AdmitError::Rule(format!(
                        "{what}'s block at height {fork_height} is {}, not {fork_hash}",
                        at.map(|h| h.to_string())
                            .unwrap_or_else(|| "missing".into())
                    )));
                }
            }
        }
        let ledger_height = self.ledger.read().as_ref().map(|c| c.tip().header.height);
        if let Some(h) = ledger_height {
            let at = match &op {
                aergo_types::repo::DdOp::NameSet { valid_from, .. } => Some(*valid_from),
                aergo_types::repo::DdOp::NameRevoke { at, .. } => Some(*at),
                _ => None,
            };
            if let Some(at) = at.filter(|a| *a <= h) {
                return Err(AdmitError::Rule(format!(
                    "identifier heights are never retroactive: {at} is not above repository `{name}`'s height {h}"
                )));
            }
            if let aergo_types::repo::DdOp::TagSet { tag, .. } = &op {
                let ledger = self.ledger.read().clone();
                let at = ledger
                    .as_ref()
                    .map(|c| c.hash_at(tag.height))
                    .transpose()
                    .map_err(chain_err)?
                    .flatten();
                if at != Some(tag.hash) {
                    return Err(AdmitError::Rule(format!(
                        "repository `{name}` has no block {} at height {}",
                        tag.hash, tag.height
                    )));
                }
            }
        }
        let tip = self.chain.tip();
        let aergo_chain::exec::ChainRole::Directory { repo } =
            aergo_chain::exec::ChainRole::of(self.chain.genesis())
        else {
            return Err(AdmitError::Rule("not a repository's directory".into()));
        };
        let c = aergo_chain::directory::ChangeCtx {
            from: tx.tx.sender(),
            height: tip.header.height + 1,
            parent: tip.hash,
            repo,
        };
        let mut o = aergo_chain::state::Overlay::new(&view);
        if let Err(e) = aergo_chain::directory::apply(&mut o, &op, &c).map_err(chain_err)? {
            return Err(AdmitError::Rule(e));
        }
        Ok(())
    }

    /// Refuses at admission a branch operation that would fail in the block, and a fork
    /// point that is not final.
    fn check_branch_op(&self, tx: &SignedTx) -> Result<(), AdmitError> {
        use aergo_types::branch::BranchOp;
        let chain_err = |e: aergo_chain::ChainError| AdmitError::Chain(e.to_string());
        let op = BranchOp::decode(&tx.tx.payload).map_err(|e| AdmitError::Rule(e.to_string()))?;
        if self.chain.directory().is_some() {
            return Err(AdmitError::Rule(
                aergo_chain::branches::repo_branch_op_error(&self.chain.repo_name()),
            ));
        }
        let view = self
            .chain
            .view_at(self.chain.tip().header.height)
            .map_err(chain_err)?;
        let rec = aergo_chain::branches::record(&view, op.name()).map_err(chain_err)?;
        let live = rec.filter(|r| r.deleted.is_none());
        match (&op, live) {
            (BranchOp::Create { name, .. }, Some(_)) => Err(AdmitError::Rule(format!(
                "branch `{name}` already exists (`aergo branch` lists them)"
            ))),
            (BranchOp::Create { name, .. }, None)
                if aergo_chain::branches::tag(&view, name)
                    .map_err(chain_err)?
                    .is_some() =>
            {
                Err(AdmitError::Rule(format!(
                    "`{name}` is a tag of this chain: a branch needs another name"
                )))
            }
            (BranchOp::Create { fork_height, .. }, None) => {
                let fin = self.chain.finalized_height();
                if *fork_height > fin {
                    return Err(AdmitError::Rule(format!(
                        "a fork point must be final: height {fork_height} is above the last final block {fin}"
                    )));
                }
                Ok(())
            }
            (BranchOp::Delete { name }, None) => Err(AdmitError::Rule(format!(
                "no branch `{name}` (`aergo branch` lists them)"
            ))),
            (BranchOp::Delete { name }, Some(r)) if r.creator != tx.tx.sender() => {
                Err(AdmitError::Rule(format!(
                    "branch `{name}` was created by {}; only its creator may delete it",
                    r.creator
                )))
            }
            (BranchOp::Delete { .. }, Some(_)) => Ok(()),
            (BranchOp::Tag { name, .. }, Some(_)) => Err(AdmitError::Rule(format!(
                "`{name}` is a branch of this chain: a tag needs another name"
            ))),
            (BranchOp::Tag { name, height, hash }, None) => {
                if let Some((h, _)) = aergo_chain::branches::tag(&view, name).map_err(chain_err)? {
                    return Err(AdmitError::Rule(format!(
                        "tag `{name}` exists (height {h}); tags are immutable"
                    )));
                }
                match self.chain.hash_at(*height).map_err(chain_err)? {
                    Some(h) if h == *hash => Ok(()),
                    Some(h) => Err(AdmitError::Rule(format!(
                        "block {height} of this chain is {h}, not {hash}"
                    ))),
                    None => Err(AdmitError::Rule(format!(
                        "this chain has no block {height} yet"
                    ))),
                }
            }
        }
    }

    /// Adds a checked transaction to the mempool and gossips it.
    pub fn admit_checked(&self, tx: SignedTx) -> Result<Hash, AdmitError> {
        if let Some(n) = self.net.tx_gossip_full() {
            return Err(AdmitError::GossipBusy(n));
        }
        let bytes = tx.encode();
        let h = self.admit_quiet(tx)?;
        self.net.send(Outbound::Tx(bytes));
        Ok(h)
    }

    /// Adds a checked transaction to the mempool without gossiping it (it came from gossip,
    /// which forwards it by itself, or from a reverted block).
    pub fn admit_quiet(&self, tx: SignedTx) -> Result<Hash, AdmitError> {
        let _run = STAGES.admit.start();
        let started = std::time::Instant::now();
        let from = tx.tx.sender();
        if let Some(next) = crate::preconf::promised_nonce(self, &from) {
            if tx.tx.nonce < next {
                // Arrival order is final once promised: no replacement, no gas-price
                // reordering for a pre-confirmed nonce.
                return Err(AdmitError::Mempool(Reject::NonceTooLow {
                    expected: next,
                    got: tx.tx.nonce,
                }));
            }
        }
        // On a pre-confirming producer: the sender's account as the pending block left it
        // (a transfer promised a moment ago can be spent at once).
        let acct = match crate::preconf::pending_account(self, &from) {
            Some(a) => a,
            None => self
                .chain
                .account_latest(&from)
                .map_err(|e| AdmitError::Chain(e.to_string()))?,
        };
        let summary = TxSummary {
            hash: tx.hash,
            from: from.encode(),
            nonce: tx.tx.nonce,
            amount: aergo_types::Aer(tx.tx.amount),
        };
        let hash = tx.hash;
        // The cap in force at the tip (genesis, default, or a DPoS governance vote).
        let limits = self
            .chain
            .gas_limits()
            .map_err(|e| AdmitError::Chain(e.to_string()))?;
        let mut pool = self.mempool.lock();
        pool.set_tx_gas_cap(limits.tx_gas_cap);
        pool.add(tx, acct, now_ms())?;
        drop(pool);
        let _ = self.pending_tx.send(summary);
        crate::preconf::on_admitted(self, &from, started);
        self.wake();
        Ok(hash)
    }

    /// Full admission: decode, stateless rules, signature, mempool.
    pub fn admit(&self, bytes: &[u8]) -> Result<Hash, AdmitError> {
        let tx = self.check(bytes)?;
        self.admit_checked(tx)
    }

    /// The one path after a commit, for blocks this node produced and blocks it imported
    /// alike: the mempool drops what the chain used (each sender's next nonce comes from the
    /// committed block's own state writes, computed by the chain the same way for both
    /// origins) and takes back what a fork switch reverted; candidates a producer could not
    /// include are dropped when they can never be; the block is published (gossiped when
    /// produced here; an imported block is re-propagated by gossipsub's validation); metrics
    /// and subscribers learn about each block, and each gets an INFO log line.
    pub fn on_committed(
        &self,
        applied: &[Applied],
        reverted: &[Block],
        origin: Origin<'_>,
        commit_us: u64,
    ) {
        let mut nonces = std::collections::HashMap::new();
        for a in applied {
            // Ascending blocks: a later block's nonce for a sender supersedes an earlier one.
            nonces.extend(a.nonces.iter().map(|(k, v)| (*k, *v)));
        }
        // A few senders at a time, freeing what was removed outside the lock: admissions
        // wait on the pool's lock, and a block removes thousands of transactions.
        let senders: Vec<(Address, u64)> = nonces.into_iter().collect();
        for part in senders.chunks(PRUNE_CHUNK) {
            let removed = self.mempool.lock().prune_some(part.iter().copied());
            drop(removed);
        }
        {
            let mut pool = self.mempool.lock();
            if let Origin::Produced { rejected } = origin {
                for (h, reason) in rejected {
                    tracing::warn!(tx = %h, %reason, "dropping transaction that can no longer be included");
                }
                // Drop only what can never be included: a transaction whose nonce is ahead
                // of its sender's (the tip moved under the producer, e.g. a fork switch)
                // waits for the gap to fill instead of taking its queue with it.
                let doomed: Vec<_> = rejected
                    .iter()
                    .filter(|(h, reason)| {
                        // A transaction that panics execution would fail every block.
                        reason == aergo_chain::exec::EXEC_PANICKED
                            || pool.get(h).is_some_and(|e| {
                                let from = e.tx.tx.sender();
                                self.chain
                                    .account_latest(&from)
                                    .map(|a| e.tx.tx.nonce < a.nonce)
                                    .unwrap_or(true)
                            })
                    })
                    .map(|(h, _)| *h)
                    .collect();
                if !doomed.is_empty() {
                    pool.remove(&doomed);
                }
            }
        }
        let included: std::collections::HashSet<Hash> = applied
            .iter()
            .flat_map(|a| a.block.txs.iter().map(|t| t.hash))
            .collect();
        // Per sender, in an order that keeps its queue contiguous: ascending onto an empty
        // queue, descending (each right before the first pending one) onto a non-empty one.
        let mut by_sender: std::collections::BTreeMap<Address, Vec<&SignedTx>> =
            std::collections::BTreeMap::new();
        for t in reverted.iter().flat_map(|b| b.txs.iter()) {
            if !included.contains(&t.hash) {
                by_sender.entry(t.tx.sender()).or_default().push(t);
            }
        }
        for (from, mut txs) in by_sender {
            txs.sort_by_key(|t| t.tx.nonce);
            let pending = self.mempool.lock().next_nonce(&from, 0) > 0;
            if pending {
                txs.reverse();
            }
            for t in txs {
                if let Err(e) = self.admit_quiet(t.clone()) {
                    tracing::debug!(tx = %t.hash, error = %e, "reverted transaction not taken back");
                }
            }
        }
        for a in applied {
            let b = &a.block;
            let _run = STAGES.publish.start();
            if matches!(origin, Origin::Produced { .. }) {
                self.net.send(Outbound::Block(b.encode()));
            }
            self.metrics
                .block(b.header.timestamp_ms, count32(b.txs.len()), commit_us);
            let width = b
                .body_ext
                .dtt
                .as_ref()
                .map(aergo_chain::dtt::width)
                .unwrap_or(0.0);
            // A width is at most the block's transaction count: far inside u64 after × 1000.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            self.metrics
                .dtt_width_milli
                .store((width * 1000.0).round() as u64, Ordering::Relaxed);
            let merged = b.body_ext.merge.as_ref().map(|m| {
                format!(
                    "{} of {}",
                    m.candidates.len().saturating_sub(m.excluded.len()),
                    m.candidates.len()
                )
            });
            tracing::info!(
                height = b.header.height,
                txs = b.txs.len(),
                merged = merged.as_deref().unwrap_or("-"),
                gas = a.gas_used,
                producer = %Address::from_public_key(&b.header.producer),
                hash = %b.hash(),
                origin = origin.name(),
                commit_us,
                repo = %self.label,
                "block"
            );
            let _ = self
                .blocks_tx
                .send(Self::summary(b, count32(a.size), a.gas_used));
        }
        if matches!(origin, Origin::Imported) {
            // The tip moved under the producer: let it look at its next slot now.
            self.wake();
        }
        self.repos
            .on_root_committed(self, applied.iter().map(|a| &a.block));
        let branch_ops = applied
            .iter()
            .map(|a| &a.block)
            .chain(reverted)
            .flat_map(|b| b.txs.iter())
            .any(|t| t.tx.kind == aergo_types::TxKind::Branch);
        // A repository's branches are recorded by its directory: any block may be the first
        // whose directory height shows a new one.
        if branch_ops || self.chain.directory().is_some() {
            if let Err(e) = self.branches.sync(self) {
                tracing::error!(error = %e, "cannot open a new branch");
            }
        }
        // A directory block may create or delete branches at any depth of its ledger.
        let ledger = self.ledger_node.read().as_ref().and_then(|w| w.upgrade());
        if let Some(l) = ledger {
            if let Err(e) = l.branches.sync_deep(&l) {
                tracing::error!(error = %e, "cannot open a repository's new branch");
            }
        }
    }

    /// Summary of a committed block for subscribers and lists.
    pub fn summary(block: &Block, size: u32, gas_used: u64) -> BlockSummary {
        BlockSummary {
            hash: block.hash(),
            height: block.header.height,
            timestamp_ms: block.header.timestamp_ms,
            producer: Address::from_public_key(&block.header.producer).encode(),
            tx_count: count32(block.txs.len()),
            size,
            gas_used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_gate_admits_up_to_its_cap_and_frees_on_drop() {
        let g = QueryGate::new(2);
        let a = g.try_acquire().unwrap();
        let b = g.try_acquire().unwrap();
        assert_eq!(g.running(), 2);
        let err = g.try_acquire().err().unwrap();
        assert_eq!(err.max, 2);
        assert!(err.to_string().contains("retry"), "{err}");
        assert_eq!(g.refused.load(Ordering::Relaxed), 1);
        drop(a);
        let c = g.try_acquire().unwrap();
        assert!(g.try_acquire().is_err());
        drop((b, c));
        assert_eq!(g.running(), 0);
        assert_eq!(QueryGate::new(0).max(), 1);
    }

    #[test]
    fn the_query_gate_holds_under_contention() {
        let g = Arc::new(QueryGate::new(3));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (g, peak) = (g.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        if let Ok(p) = g.try_acquire() {
                            peak.fetch_max(g.running(), Ordering::AcqRel);
                            drop(p);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::Acquire) <= 3);
        assert!(peak.load(Ordering::Acquire) >= 1);
        assert_eq!(g.running(), 0);
    }
}
