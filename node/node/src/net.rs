//! The node on the network: gossip of transactions and blocks over libp2p, block import
//! (with fork choice in the chain), catch-up sync from peers, the peer table for the RPC.
//!
//! One tokio task reads the network's events and the node's outbound gossip queue. Block
//! import runs on the blocking pool (it executes the block). A block that does not connect
//! starts a sync task (at most one at a time) that downloads ranges from the peers at the
//! best height and imports them in order; while it runs the producer does not produce, so a
//! node that was away never builds on a stale tip.
//!
//! The same task carries the hosted repositories (see [`crate::repos`]):
//! - every peer proves its node key on connection; the task keeps `peer → node key`;
//! - a public repository's blocks and transactions go on its own gossip topics; a private
//!   one's are pushed by request-response to the connected peers whose proven node key is one
//!   of the repository's nodes at this node's directory tip, and to nobody else;
//! - a repository's status and block ranges are asked of the peers that are its nodes or
//!   producers, and answered ([`RepoServe`]) only to peers that may read it: anyone for a
//!   public repository, its nodes for a private one;
//! - a pushed or gossiped repository block or transaction is taken only from a peer that may
//!   read the repository, and imported into that repository's own chain;
//! - registrations this node does not produce are asked about (`Member`) until a producer
//!   says this node is one of the repository's nodes; then it hosts it.
//!
//! Branches ride the same paths ([`Part`]): every node hosts every live branch of the chains
//! it hosts, and a branch's blocks and transactions travel on its own chain id — on gossip
//! topics for a branch of the root or of a public repository, pushed to the repository's
//! nodes for a branch of a private one. Status and block ranges of a branch are asked of
//! the peer whose node key produces it. A **private branch** never leaves its producer:
//! nothing of it is sent, taken or served (its reads need its creator's signature, which
//! other nodes' operators could not be held to).

use crate::node::{now_ms, Node, Origin};
use crate::vital::Task as Vital;
use aergo_chain::chain::Received;
use aergo_chain::ChainError;
use aergo_p2p::repo::{RepoBody, RepoProvider, RepoResponse};
use aergo_p2p::sync::{fetch_range_in, SyncOptions};
use aergo_p2p::{
    BlockProvider, Multiaddr, NetEvent, P2p, P2pConfig, P2pHandle, PeerId, PeerStatus, Penalty,
    Verdict,
};
use aergo_rpc::types::PeerJson;
use aergo_types::{Address, Block, PublicKey};
use anyhow::{Context, Result};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Serves block ranges from the chain.
struct ChainBlocks(Arc<Node>);

impl BlockProvider for ChainBlocks {
    fn blocks(&self, from: u64, to: u64, max_bytes: usize) -> Vec<Vec<u8>> {
        blocks_of(&self.0.chain, from, to, max_bytes)
    }
}

/// Encoded best-chain blocks `from..=to`, stopping at the tip or before `max_bytes`.
fn blocks_of(chain: &aergo_chain::Chain, from: u64, to: u64, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let tip = chain.tip().header.height;
    for h in from..=to.min(tip) {
        match chain.block_by_height(h) {
            Ok(Some(b)) => {
                let enc = b.encode();
                bytes += enc.len();
                if bytes > max_bytes && !out.is_empty() {
                    break;
                }
                out.push(enc);
            }
            _ => break,
        }
    }
    out
}

/// A node key as an address, for messages.
fn node_name(key: Option<&[u8; 32]>) -> String {
    key.map(|k| format!("node {}", Address::from_public_key(&PublicKey(*k))))
        .unwrap_or_else(|| "a peer that proved no node key".into())
}

/// A chain this node replicates beside the root: a hosted repository's ledger or directory,
/// or a branch (of the root or of a repository's ledger, at any depth).
struct Part {
    /// The repository it belongs to (`None`: a branch of the root chain).
    repo: Option<Arc<crate::repos::Hosted>>,
    /// Its node.
    node: Arc<Node>,
    /// The branch, when it is one.
    branch: Option<Arc<crate::branches::HostedBranch>>,
}

impl Part {
    /// The hosted chain whose id is `chain`.
    fn find(root: &Node, chain: &[u8; 32]) -> Option<Part> {
        if let Some(b) = root.branches.find(chain) {
            return Some(Part {
                repo: None,
                node: b.node.clone(),
                branch: Some(b),
            });
        }
        if let Some((h, node)) = root.repos.by_chain(chain) {
            return Some(Part {
                repo: Some(h),
                node,
                branch: None,
            });
        }
        root.repos.all().into_iter().find_map(|h| {
            let b = h.node.branches.find(chain)?;
            Some(Part {
                node: b.node.clone(),
                branch: Some(b),
                repo: Some(h),
            })
        })
    }

    /// For logs.
    fn label(&self) -> String {
        match (&self.repo, &self.branch) {
            (Some(h), None) => format!("repository {}", h.registration.create.name),
            (Some(h), Some(_)) => {
                format!(
                    "repository {} branch {}",
                    h.registration.create.name, self.node.label
                )
            }
            (None, _) => format!("branch {}", self.node.label),
        }
    }

    /// A private branch: it stays on its producer.
    fn private_branch(&self) -> bool {
        self.branch.as_ref().is_some_and(|b| b.record.private)
    }

    /// Whether its blocks and transactions go on gossip topics (else they are pushed to the
    /// repository's nodes).
    fn public(&self) -> bool {
        self.repo.as_ref().is_none_or(|h| h.public())
    }

    /// Whether a peer with `key` may send or be sent its data.
    fn may_read(&self, key: Option<&[u8; 32]>) -> bool {
        !self.private_branch() && self.repo.as_ref().is_none_or(|h| h.may_read(key))
    }
}

/// Answers repository and branch requests from the hosted chains: a private repository only
/// to a peer whose proven node key is one of its nodes at this node's directory tip; a
/// private branch to nobody.
struct RepoServe(Arc<Node>);

impl RepoProvider for RepoServe {
    fn serve(
        &self,
        chain: &[u8; 32],
        node_key: Option<&[u8; 32]>,
        body: &RepoBody,
        max_blocks: u64,
        max_bytes: usize,
    ) -> RepoResponse {
        let Some(p) = Part::find(&self.0, chain) else {
            return RepoResponse::Refused("this node does not host that chain".into());
        };
        if p.private_branch() {
            return RepoResponse::Refused(format!(
                "{} is private: it stays on its producer",
                p.label()
            ));
        }
        let member = match (&p.repo, &p.branch) {
            (Some(h), _) => {
                let name = &h.registration.create.name;
                let readers = match h.readers() {
                    Ok(r) => r,
                    Err(e) => return RepoResponse::Refused(format!("repository {name}: {e:#}")),
                };
                let member = node_key.is_some_and(|k| readers.contains(k));
                if !h.public() && !member {
                    return RepoResponse::Refused(format!(
                        "repository {name} is private and {} is not one of its nodes",
                        node_name(node_key)
                    ));
                }
                member
            }
            (None, _) => false,
        };
        let part = p.node;
        match body {
            RepoBody::Member if p.branch.is_some() => {
                RepoResponse::Refused("a branch has no members".into())
            }
            RepoBody::Member => RepoResponse::Member(member),
            RepoBody::Status => {
                let tip = part.chain.tip();
                RepoResponse::Status(PeerStatus {
                    height: tip.header.height,
                    hash: tip.hash.0,
                    chain_id: *chain,
                })
            }
            RepoBody::Blocks { from, to } => {
                let to = (*to).min(from.saturating_add(max_blocks.saturating_sub(1)));
                RepoResponse::Blocks(
                    blocks_of(&part.chain, *from, to, max_bytes)
                        .into_iter()
                        .map(aergo_p2p::ByteBuf::from)
                        .collect(),
                )
            }
            RepoBody::Push { .. } => RepoResponse::Refused("a push is not a question".into()),
        }
    }
}

/// `ip:port` → `/ip4/ip/tcp/port` (or `/ip6/…`).
pub fn listen_multiaddr(addr: &str) -> Result<Multiaddr> {
    let sa: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("bad p2p address {addr}"))?;
    let proto = if sa.is_ipv4() { "ip4" } else { "ip6" };
    format!("/{proto}/{}/tcp/{}", sa.ip(), sa.port())
        .parse()
        .with_context(|| format!("bad p2p address {addr}"))
}

/// Fails when the libp2p listen address is taken, so a node refuses to start before it writes
/// anything (libp2p itself binds later; a port taken in between still fails its start).
pub fn probe_listen(addr: &str) -> Result<()> {
    let sa: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("bad p2p address {addr}"))?;
    if sa.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(sa)
        .map(drop)
        .with_context(|| format!("cannot listen for peers on {sa} (node.p2p_addr / --p2p-addr)"))
}

/// Starts the network and its task. Returns the handle.
pub async fn start(
    node: Arc<Node>,
    listen: &str,
    bootnodes: &[String],
    mdns: bool,
) -> Result<P2pHandle> {
    let mut cfg = P2pConfig::new(
        node.chain.chain_id().0,
        node.key.seed(),
        listen_multiaddr(listen)?,
    );
    for b in bootnodes {
        cfg.bootnodes.push(
            b.parse()
                .with_context(|| format!("bad bootnode multiaddr `{b}`"))?,
        );
    }
    cfg.mdns = mdns;
    cfg.maintenance_interval = Duration::from_secs(2);
    cfg.node_validates_blocks = true;
    // Transactions are gossiped one message each: a busy peer legitimately forwards
    // thousands per second, which must not read as flooding (and end in a ban).
    cfg.per_peer_msgs_per_sec = 20_000;
    // A relay forwards its clients' pre-confirmed sends: thousands per second under load.
    cfg.per_peer_preconf_per_sec = 5_000;
    cfg.max_preconf_in_flight = crate::forward::MAX_FORWARDED;
    // A forwarded transaction waits at most two block intervals at the producer.
    cfg.preconf_timeout = crate::forward::relay_timeout(&node);
    let provider: Arc<dyn BlockProvider> = Arc::new(ChainBlocks(node.clone()));
    let repos: Arc<dyn RepoProvider> = Arc::new(RepoServe(node.clone()));
    let preconf: Arc<dyn aergo_p2p::preconf::PreconfProvider> =
        Arc::new(crate::forward::PreconfServe(node.clone()));
    let (handle, events) = P2p::start_full(cfg, Some(provider), Some(repos), Some(preconf))
        .await
        .context("start libp2p")?;
    *node.net.p2p.lock() = Some(handle.clone());
    let addrs: Vec<String> = handle
        .listen_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    tracing::info!(peer_id = %handle.local_peer_id(), addrs = ?addrs, "p2p listening");
    *node.net.identity.lock() = Some((handle.local_peer_id().to_string(), addrs));
    let (ttx, trx) = mpsc::channel(crate::node::GOSSIP_TX_QUEUE);
    let (btx, brx) = mpsc::unbounded_channel();
    let outbox = crate::node::Outbox {
        chain: node.chain.chain_id().0,
        txs: ttx,
        blocks: btx,
    };
    *node.net.outbound.lock() = Some(outbox.clone());
    node.branches.set_outbox(&outbox);
    node.repos.set_outbox(outbox);
    // Until the first look at the peers, assume the network is ahead.
    node.net.syncing.store(true, Ordering::SeqCst);
    let tip = node.chain.tip();
    let _ = handle.set_status(tip.header.height, tip.hash.0).await;
    // Registered before it runs (see the producer's registration in `main`).
    node.vital.beat(Vital::Network, now_ms());
    crate::vital::spawn_vital(Vital::Network, run(node, handle.clone(), events, trx, brx));
    Ok(handle)
}

/// How long a starting node listens for peers' heights before it produces.
const STARTUP_GRACE: Duration = Duration::from_millis(2500);

/// A hosted repository chain's view of its peers.
#[derive(Default)]
struct Follow {
    best: HashMap<PeerId, u64>,
    running: Arc<AtomicBool>,
}

/// Answers of the requests the task sent without waiting.
enum Answer {
    /// A repository chain's status from a peer.
    Status([u8; 32], PeerId, u64),
    /// A producer said this node is one of the repository's nodes.
    Member(String),
}

/// How often hosted repositories ask their peers' heights.
const REPO_STATUS_EVERY: Duration = Duration::from_secs(2);

struct Task {
    node: Arc<Node>,
    handle: P2pHandle,
    best: HashMap<PeerId, u64>,
    sync_running: Arc<AtomicBool>,
    started: std::time::Instant,
    root: [u8; 32],
    /// Proven node keys of the connected peers.
    keys: HashMap<PeerId, [u8; 32]>,
    follows: HashMap<[u8; 32], Follow>,
    subscribed: HashSet<[u8; 32]>,
    /// The branch topics subscribed to (a subset of `subscribed`).
    branch_topics: HashSet<[u8; 32]>,
    answers: mpsc::Sender<Answer>,
    last_repo_status: std::time::Instant,
}

async fn run(
    node: Arc<Node>,
    handle: P2pHandle,
    mut events: mpsc::Receiver<NetEvent>,
    mut out_txs: mpsc::Receiver<([u8; 32], Vec<u8>)>,
    mut out_blocks: mpsc::UnboundedReceiver<([u8; 32], Vec<u8>)>,
) {
    let (answers, mut answers_rx) = mpsc::channel(1024);
    let mut t = Task {
        root: node.chain.chain_id().0,
        node,
        handle,
        best: HashMap::new(),
        sync_running: Arc::new(AtomicBool::new(false)),
        started: std::time::Instant::now(),
        keys: HashMap::new(),
        follows: HashMap::new(),
        subscribed: HashSet::new(),
        branch_topics: HashSet::new(),
        answers,
        last_repo_status: std::time::Instant::now(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(1000));
    loop {
        tokio::select! {
            // Separate queues: a block never waits behind the transactions queued before it.
            b = out_blocks.recv() => match b {
                Some((chain, b)) if chain == t.root => {
                    if let Err(e) = t.handle.publish_block(b).await {
                        tracing::debug!(error = %e, "block gossip");
                    }
                    let tip = t.node.chain.tip();
                    let _ = t.handle.set_status(tip.header.height, tip.hash.0).await;
                }
                Some((chain, b)) => t.repo_out(chain, true, b).await,
                None => break,
            },
            o = out_txs.recv() => match o {
                Some((chain, b)) if chain == t.root => {
                    if let Err(e) = t.handle.publish_tx(b).await {
                        tracing::debug!(error = %e, "tx gossip");
                    }
                }
                Some((chain, b)) => t.repo_out(chain, false, b).await,
                None => break,
            },
            e = events.recv() => match e {
                Some(e) => t.event(e).await,
                None => break,
            },
            Some(a) = answers_rx.recv() => t.answer(a).await,
            _ = tick.tick() => {
                t.node.vital.beat(Vital::Network, now_ms());
                t.maintain().await
            }
        }
        if t.node.shutdown.load(Ordering::SeqCst) {
            break;
        }
    }
    tracing::info!("network task stopped");
}

impl Task {
    async fn event(&mut self, e: NetEvent) {
        match e {
            NetEvent::Tx { peer, bytes } => self.admit(self.node.clone(), peer, bytes).await,
            NetEvent::Block {
                peer,
                bytes,
                gossip_id,
            } => {
                let Ok(block) = Block::decode(&bytes) else {
                    if let Some(g) = gossip_id {
                        self.handle.report_block(g, Verdict::Reject).await;
                    }
                    self.handle.penalize(peer, Penalty::Garbage).await;
                    return;
                };
                let h = block.header.height;
                self.best
                    .entry(peer)
                    .and_modify(|b| *b = (*b).max(h))
                    .or_insert(h);
                let outcome = import(&self.node, block, false).await;
                if let Some(g) = gossip_id {
                    let verdict = match &outcome {
                        Ok(Imported::Applied) => Verdict::Accept,
                        Ok(_) => Verdict::Ignore,
                        Err(_) => Verdict::Reject,
                    };
                    self.handle.report_block(g, verdict).await;
                }
                match outcome {
                    Ok(Imported::Sync(from, to)) => self.start_sync(from, to),
                    Ok(_) => {}
                    Err(p) => self.handle.penalize(peer, p).await,
                }
                let tip = self.node.chain.tip();
                let _ = self.handle.set_status(tip.header.height, tip.hash.0).await;
            }
            NetEvent::PeerStatus { peer, status } => {
                self.best.insert(peer, status.height);
                let ours = self.node.chain.tip().header.height;
                if status.height > ours {
                    self.start_sync(ours + 1, status.height);
                }
            }
            NetEvent::PeerDisconnected { peer } => {
                self.best.remove(&peer);
                self.forget(&peer);
            }
            NetEvent::PeerBanned { peer, reason } => {
                tracing::warn!(%peer, ?reason, "peer banned");
                self.best.remove(&peer);
                self.forget(&peer);
            }
            NetEvent::PeerIdentified { peer, node_key } => {
                self.keys.insert(peer, node_key);
                self.node.net.peer_keys.lock().insert(node_key, peer);
            }
            NetEvent::Repo {
                peer,
                node_key,
                chain,
                block,
                bytes,
                gossip_id,
            } => {
                let verdict = self.repo_in(peer, node_key, chain, block, bytes).await;
                if let Some(g) = gossip_id {
                    self.handle.report_block(g, verdict).await;
                }
            }
            _ => {}
        }
    }

    /// A transaction from `peer` into `node`'s mempool (off the async workers); an invalid
    /// one costs the peer.
    async fn admit(&self, node: Arc<Node>, peer: PeerId, bytes: Vec<u8>) {
        let res = tokio::task::spawn_blocking(move || {
            node.check(&bytes).and_then(|tx| node.admit_quiet(tx))
        })
        .await;
        if let Ok(Err(
            crate::node::AdmitError::Malformed(_)
            | crate::node::AdmitError::Signature
            | crate::node::AdmitError::Rule(_),
        )) = res
        {
            self.handle.penalize(peer, Penalty::InvalidTx).await;
        }
    }

    fn forget(&mut self, peer: &PeerId) {
        if let Some(k) = self.keys.remove(peer) {
            let mut by_key = self.node.net.peer_keys.lock();
            if by_key.get(&k) == Some(peer) {
                by_key.remove(&k);
            }
        }
        for f in self.follows.values_mut() {
            f.best.remove(peer);
        }
    }

    /// A hosted repository's block or transaction leaves this node: on its gossip topics
    /// when public, pushed to its connected member nodes when private.
    async fn repo_out(&mut self, chain: [u8; 32], block: bool, bytes: Vec<u8>) {
        let Some(p) = Part::find(&self.node, &chain) else {
            return;
        };
        if p.private_branch() {
            return;
        }
        // A branch's transaction goes straight to its producer when connected: a gossip
        // topic's mesh forms only after the branch appeared, and a transaction published
        // before would be lost.
        let producer = p
            .branch
            .as_ref()
            .filter(|b| !block && !b.producer)
            .map(|b| b.record.producer.0);
        if let Some(peer) = producer.and_then(|k| {
            self.keys
                .iter()
                .find(|(_, key)| **key == k && p.may_read(Some(key)))
                .map(|(peer, _)| *peer)
        }) {
            let handle = self.handle.clone();
            tokio::spawn(async move {
                let body = RepoBody::Push {
                    block,
                    bytes: aergo_p2p::ByteBuf::from(bytes),
                };
                if let Err(e) = handle.repo_request(peer, chain, body).await {
                    tracing::debug!(%peer, error = %e, "branch transaction push");
                }
            });
            return;
        }
        let Some(h) = p.repo.as_ref().filter(|h| !h.public()) else {
            if let Err(e) = self.handle.publish_in(chain, block, bytes).await {
                tracing::debug!(chain = %p.label(), error = %e, "repository or branch gossip");
            }
            return;
        };
        let readers = match h.readers() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(repo = %h.registration.create.name, error = %format!("{e:#}"), "cannot read the directory's nodes; nothing sent");
                return;
            }
        };
        let me = self.node.key.public().0;
        for (peer, key) in &self.keys {
            if *key == me || !readers.contains(key) {
                continue;
            }
            let (handle, peer, bytes) = (self.handle.clone(), *peer, bytes.clone());
            tokio::spawn(async move {
                let body = RepoBody::Push {
                    block,
                    bytes: aergo_p2p::ByteBuf::from(bytes),
                };
                if let Err(e) = handle.repo_request(peer, chain, body).await {
                    tracing::debug!(%peer, error = %e, "repository push");
                }
            });
        }
    }

    /// A repository's block or transaction arrived from `peer`.
    async fn repo_in(
        &mut self,
        peer: PeerId,
        node_key: Option<[u8; 32]>,
        chain: [u8; 32],
        block: bool,
        bytes: Vec<u8>,
    ) -> Verdict {
        let Some(p) = Part::find(&self.node, &chain) else {
            return Verdict::Ignore;
        };
        if !p.may_read(node_key.as_ref()) {
            // Not penalised: a node just removed from the directory may still send what its
            // users gave it, and must not lose the root network for that (the per-peer rate
            // limit bounds a flood).
            tracing::debug!(%peer, chain = %p.label(), from = %node_name(node_key.as_ref()), "dropped a private repository's or branch's data from a peer that may not send it");
            return Verdict::Ignore;
        }
        let part = p.node;
        if !block {
            self.admit(part, peer, bytes).await;
            return Verdict::Accept;
        }
        let Ok(b) = Block::decode(&bytes) else {
            self.handle.penalize(peer, Penalty::Garbage).await;
            return Verdict::Reject;
        };
        let height = b.header.height;
        let f = self.follows.entry(chain).or_default();
        let e = f.best.entry(peer).or_insert(height);
        *e = (*e).max(height);
        match import(&part, b, false).await {
            Ok(Imported::Applied) => Verdict::Accept,
            Ok(Imported::Other) => Verdict::Ignore,
            Ok(Imported::Sync(from, to)) => {
                self.start_repo_sync(chain, &part, from, to);
                Verdict::Ignore
            }
            Err(p) => {
                self.handle.penalize(peer, p).await;
                Verdict::Reject
            }
        }
    }

    async fn answer(&mut self, a: Answer) {
        match a {
            Answer::Status(chain, peer, height) => {
                let Some(Part { node: part, .. }) = Part::find(&self.node, &chain) else {
                    return;
                };
                self.follows
                    .entry(chain)
                    .or_default()
                    .best
                    .insert(peer, height);
                let ours = part.chain.tip().header.height;
                if height > ours {
                    self.start_repo_sync(chain, &part, ours + 1, height);
                }
            }
            Answer::Member(name) => {
                let node = self.node.clone();
                let n = name.clone();
                let r =
                    tokio::task::spawn_blocking(move || node.repos.host_member(&node, &n)).await;
                match r {
                    Ok(Ok(())) => {
                        tracing::info!(repo = %name, "this node is one of the repository's nodes: replicating it")
                    }
                    Ok(Err(e)) => {
                        tracing::error!(repo = %name, error = %format!("{e:#}"), "cannot open repository; not hosting it")
                    }
                    Err(e) => {
                        tracing::error!(repo = %name, error = %e, "repository open task failed")
                    }
                }
                self.repo_maintain(true).await;
            }
        }
    }

    /// Repositories: gossip subscriptions of public ones, peers' heights, membership
    /// questions about registrations this node does not host yet.
    async fn repo_maintain(&mut self, force: bool) {
        let hosted = self.node.repos.all();
        for h in &hosted {
            if !h.public() {
                continue;
            }
            for n in [&h.node, &h.directory] {
                let id = n.chain.chain_id().0;
                if self.subscribed.insert(id) {
                    let _ = self.handle.subscribe(id, true).await;
                }
            }
        }
        let me = self.node.key.public().0;
        for reg in self.node.repos.candidates_due() {
            let producers: HashSet<[u8; 32]> = reg.create.producers.iter().map(|p| p.0).collect();
            let Some(peer) = self
                .keys
                .iter()
                .find(|(_, k)| producers.contains(*k) && **k != me)
                .map(|(p, _)| *p)
            else {
                continue;
            };
            let chain = aergo_types::repo::repo_id(&self.node.chain.chain_id(), &reg.create.name).0;
            let (handle, answers, name) = (
                self.handle.clone(),
                self.answers.clone(),
                reg.create.name.clone(),
            );
            tokio::spawn(async move {
                match handle.repo_request(peer, chain, RepoBody::Member).await {
                    Ok(RepoResponse::Member(true)) => {
                        let _ = answers.send(Answer::Member(name)).await;
                    }
                    Ok(other) => {
                        tracing::debug!(repo = %name, answer = ?other, "not one of the repository's nodes")
                    }
                    Err(e) => tracing::debug!(repo = %name, error = %e, "membership question"),
                }
            });
        }
        // Branches (of the root and of the hosted repositories' ledgers): the topics of
        // those that travel on gossip, and nothing of private ones.
        let mut branches: Vec<Part> = self
            .node
            .branches
            .all_deep()
            .into_iter()
            .map(|b| Part {
                repo: None,
                node: b.node.clone(),
                branch: Some(b),
            })
            .collect();
        for h in &hosted {
            branches.extend(h.node.branches.all_deep().into_iter().map(|b| Part {
                repo: Some(h.clone()),
                node: b.node.clone(),
                branch: Some(b),
            }));
        }
        branches.retain(|p| !p.private_branch());
        let topics: HashSet<[u8; 32]> = branches
            .iter()
            .filter(|p| p.public())
            .map(|p| p.node.chain.chain_id().0)
            .collect();
        for id in &topics {
            if self.subscribed.insert(*id) {
                let _ = self.handle.subscribe(*id, true).await;
            }
        }
        // A branch deleted (or taken away by a fork switch) leaves its topic.
        let gone: Vec<[u8; 32]> = self.branch_topics.difference(&topics).copied().collect();
        for id in gone {
            self.subscribed.remove(&id);
            self.follows.remove(&id);
            let _ = self.handle.subscribe(id, false).await;
        }
        self.branch_topics = topics;
        if !force && self.last_repo_status.elapsed() < REPO_STATUS_EVERY {
            return;
        }
        self.last_repo_status = std::time::Instant::now();
        // A branch's height is asked of its producer (no other node makes its blocks).
        for p in &branches {
            let Some(b) = p.branch.as_ref().filter(|b| !b.producer) else {
                continue;
            };
            let chain = p.node.chain.chain_id().0;
            let producer = b.record.producer.0;
            for (&peer, _) in self
                .keys
                .iter()
                .filter(|(_, k)| **k == producer && **k != me)
            {
                let (handle, answers) = (self.handle.clone(), self.answers.clone());
                tokio::spawn(async move {
                    if let Ok(s) = handle.repo_status(peer, chain).await {
                        let _ = answers.send(Answer::Status(chain, peer, s.height)).await;
                    }
                });
            }
        }
        for h in hosted {
            let Ok(readers) = h.readers() else {
                continue;
            };
            let mut ask: HashSet<[u8; 32]> = readers.as_ref().clone();
            ask.extend(h.registration.create.producers.iter().map(|p| p.0));
            let peers: Vec<PeerId> = self
                .keys
                .iter()
                .filter(|(_, k)| **k != me && ask.contains(*k))
                .map(|(p, _)| *p)
                .collect();
            for n in [&h.node, &h.directory] {
                let chain = n.chain.chain_id().0;
                for &peer in &peers {
                    let (handle, answers) = (self.handle.clone(), self.answers.clone());
                    tokio::spawn(async move {
                        if let Ok(s) = handle.repo_status(peer, chain).await {
                            let _ = answers.send(Answer::Status(chain, peer, s.height)).await;
                        }
                    });
                }
            }
        }
    }

    fn start_repo_sync(&mut self, chain: [u8; 32], part: &Arc<Node>, from: u64, to: u64) {
        let f = self.follows.entry(chain).or_default();
        let peers: Vec<(PeerId, u64)> = f
            .best
            .iter()
            .filter(|(_, h)| **h >= from)
            .map(|(p, h)| (*p, *h))
            .collect();
        spawn_sync(
            part.clone(),
            self.handle.clone(),
            Some(chain),
            f.running.clone(),
            peers,
            from,
            to,
        );
    }

    async fn maintain(&mut self) {
        let Ok(peers) = self.handle.peers().await else {
            return;
        };
        let table: Vec<PeerJson> = peers
            .iter()
            .map(|p| PeerJson {
                id: p.id.to_string(),
                address: p.address.to_string(),
                direction: match p.direction {
                    aergo_p2p::Direction::Inbound => "inbound".into(),
                    aergo_p2p::Direction::Outbound => "outbound".into(),
                },
                best_height: p
                    .best_height
                    .or_else(|| self.best.get(&p.id).copied())
                    .unwrap_or(0),
                latency_ms: p.latency_ms,
                node: p
                    .node_key
                    .map(|k| Address::from_public_key(&PublicKey(k)).to_string()),
            })
            .collect();
        for p in &peers {
            if let Some(h) = p.best_height {
                let e = self.best.entry(p.id).or_insert(h);
                *e = (*e).max(h);
            }
        }
        self.best.retain(|id, _| peers.iter().any(|p| p.id == *id));
        *self.node.net.peers.lock() = table;
        let target = self.best.values().copied().max().unwrap_or(0);
        self.node.net.target.store(target, Ordering::Relaxed);
        self.repo_maintain(false).await;
        let tip = self.node.chain.tip();
        let _ = self.handle.set_status(tip.header.height, tip.hash.0).await;
        if target > tip.header.height {
            self.start_sync(tip.header.height + 1, target);
        } else if !self.sync_running.load(Ordering::SeqCst)
            && self.started.elapsed() > STARTUP_GRACE
            && self.node.net.syncing.swap(false, Ordering::SeqCst)
        {
            // Start-up: peers had their chance to show a longer chain.
            tracing::info!(height = tip.header.height, "caught up; producing");
            self.node.wake();
        }
    }

    fn start_sync(&self, from: u64, to: u64) {
        let peers: Vec<(PeerId, u64)> = self.best.iter().map(|(p, h)| (*p, *h)).collect();
        spawn_sync(
            self.node.clone(),
            self.handle.clone(),
            None,
            self.sync_running.clone(),
            peers,
            from,
            to,
        );
    }
}

/// Starts a catch-up download of `chain` (`None`: the root) into `node` from the peers at
/// (or near) the best height, unless one runs already for it.
fn spawn_sync(
    node: Arc<Node>,
    handle: P2pHandle,
    chain: Option<[u8; 32]>,
    running: Arc<AtomicBool>,
    best: Vec<(PeerId, u64)>,
    from: u64,
    to: u64,
) {
    if to < from || running.swap(true, Ordering::SeqCst) {
        return;
    }
    let top = best.iter().map(|(_, h)| *h).max().unwrap_or(0).max(to);
    // Peers at (or near) the best height: one chain, not a mix of forks.
    let peers: Vec<(PeerId, u64)> = best.into_iter().filter(|(_, h)| *h + 1 >= top).collect();
    if peers.is_empty() {
        running.store(false, Ordering::SeqCst);
        return;
    }
    tokio::spawn(async move {
        node.net.syncing.store(true, Ordering::SeqCst);
        node.net.target.fetch_max(top, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let n = sync(&node, &handle, chain, from, top, &peers).await;
        if n > 0 {
            tracing::info!(
                blocks = n,
                height = node.chain.tip().header.height,
                secs = started.elapsed().as_secs_f64(),
                repo = %node.label,
                "synced"
            );
        }
        node.net.syncing.store(false, Ordering::SeqCst);
        running.store(false, Ordering::SeqCst);
        node.wake();
    });
}

/// Downloads `from..=to` and imports it; restarts once from LIB when the range does not
/// connect (this node is on a fork). Returns the blocks imported.
async fn sync(
    node: &Arc<Node>,
    handle: &P2pHandle,
    chain: Option<[u8; 32]>,
    mut from: u64,
    to: u64,
    peers: &[(PeerId, u64)],
) -> u64 {
    let mut imported = 0u64;
    for attempt in 0..2 {
        let (tx, mut rx) = mpsc::channel::<(u64, Vec<Vec<u8>>)>(4);
        let h = handle.clone();
        let peers = peers.to_vec();
        let fetch = tokio::spawn(async move {
            fetch_range_in(&h, chain, from, to, &peers, SyncOptions::default(), tx).await
        });
        let mut missing = None;
        'outer: while let Some((_, blocks)) = rx.recv().await {
            for b in blocks {
                let Ok(block) = Block::decode(&b) else {
                    break 'outer;
                };
                match import(node, block, true).await {
                    Ok(Imported::Applied) => imported += 1,
                    Ok(Imported::Other) => {}
                    Ok(Imported::Sync(f, _)) => {
                        missing = Some(f);
                        break 'outer;
                    }
                    Err(_) => break 'outer,
                }
            }
        }
        drop(rx);
        if let Ok(Err(e)) = fetch.await {
            tracing::debug!(error = %e, "sync download ended");
        }
        match missing {
            Some(f) if attempt == 0 && f < from => from = f,
            _ => break,
        }
    }
    node.net
        .synced_blocks
        .fetch_add(imported, Ordering::Relaxed);
    imported
}

/// What importing a block did.
enum Imported {
    /// It is on the best chain now (extended it or won a fork switch).
    Applied,
    /// Known, kept aside, or too old to matter.
    Other,
    /// It does not connect: sync this range.
    Sync(u64, u64),
}

/// Imports one block through the chain's fork choice and updates the mempool, metrics and
/// subscribers. `Err` is the penalty for the sender.
async fn import(
    node: &Arc<Node>,
    block: Block,
    from_sync: bool,
) -> std::result::Result<Imported, Penalty> {
    if node.disk.low() {
        // Not the sender's fault: the block is dropped and fetched again by sync once the
        // disk has room (peers will be ahead).
        return Ok(Imported::Other);
    }
    let n = node.clone();
    let started = std::time::Instant::now();
    let res = tokio::task::spawn_blocking(move || n.chain.receive(block, now_ms())).await;
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            if e.is_panic() {
                // Execution panics are caught inside the chain (an invalid block); one that
                // escapes comes from the commit path, whose state the process cannot trust.
                crate::vital::die(
                    Vital::Network.name(),
                    "a block import panicked outside execution (commit path)",
                );
            }
            tracing::error!(error = %e, "block import task failed");
            return Ok(Imported::Other);
        }
    };
    let commit_us = crate::node::micros(started.elapsed());
    match res {
        Ok(Received::Extended(b)) => {
            if !from_sync {
                node.net.gossip_blocks.fetch_add(1, Ordering::Relaxed);
            }
            node.on_committed(std::slice::from_ref(&*b), &[], Origin::Imported, commit_us);
            Ok(Imported::Applied)
        }
        Ok(Received::Reorged {
            common,
            reverted,
            applied,
        }) => {
            node.net.reorgs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                common,
                reverted = reverted.len(),
                applied = applied.len(),
                "switched to a longer fork"
            );
            node.on_committed(&applied, &reverted, Origin::Imported, commit_us);
            Ok(Imported::Applied)
        }
        Ok(Received::Known) | Ok(Received::Stored) => Ok(Imported::Other),
        Ok(Received::MissingParent { from, to }) => Ok(Imported::Sync(from, to)),
        Err(ChainError::InvalidBlock { hash, reason, .. }) => {
            node.net.rejected_blocks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%hash, %reason, "rejected an invalid block");
            Err(Penalty::InvalidBlock)
        }
        Err(e @ ChainError::Equivocation { .. }) => {
            node.net.rejected_blocks.fetch_add(1, Ordering::Relaxed);
            // The producer signed twice; the peer that sent it may only have forwarded the
            // copy it saw first, so it loses what an invalid block costs, not a ban.
            tracing::warn!(error = %e, "equivocation evidence: block rejected");
            Err(Penalty::InvalidBlock)
        }
        Err(ChainError::Early { hash, ahead_ms, .. }) => {
            // Clocks disagree (ours or the producer's): not the sender's fault. Sync fetches
            // it again once its slot has started here.
            let n = node.net.early_blocks.fetch_add(1, Ordering::Relaxed) + 1;
            // A producer whose clock runs ahead sends one per slot: warn at the 1st, 2nd,
            // 4th, 8th… so the log shows it without filling up.
            if n.is_power_of_two() {
                tracing::warn!(%hash, ahead_ms, early_blocks = n, "dropped a block from the future (is this node's clock, or its producer's, synchronised?)");
            } else {
                tracing::debug!(%hash, ahead_ms, "dropped a block from the future");
            }
            Ok(Imported::Other)
        }
        Err(ChainError::Consensus(m)) => {
            tracing::debug!(reason = %m, "ignored block");
            Ok(Imported::Other)
        }
        Err(e) => {
            tracing::error!(error = %e, "block import failed");
            Ok(Imported::Other)
        }
    }
}
