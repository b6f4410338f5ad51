//! AERGO networking over libp2p.
//!
//! One tokio task owns the libp2p swarm (TCP + noise + yamux; gossipsub, identify, ping,
//! request-response, optional mDNS, connection limits, a block list). The node talks to it
//! through a cloneable [`P2pHandle`] and receives [`NetEvent`]s on a bounded channel.
//!
//! - **Gossip:** topics `aergo/<chain-id-hex>/txs` and `aergo/<chain-id-hex>/blocks`, so two
//!   chains never mix. Payloads are `SignedTx::encode()` / `Block::encode()` bytes. Message ids
//!   are content hashes, so one payload is delivered once however many peers publish it.
//!   Every received message is size-checked, decoded and chain-id-checked here before it is
//!   forwarded or handed to the node; garbage is dropped and its sender penalised. Full
//!   validation (signatures, state) is the node's job: it reports bad peers with
//!   [`P2pHandle::penalize`].
//! - **Sync:** request-response protocol `/aergo/<chain-id-hex>/sync/1` (CBOR) carrying
//!   [`Request::Status`] and [`Request::Blocks`]. Status is answered from
//!   [`P2pHandle::set_status`]; block ranges from the [`BlockProvider`] given to
//!   [`P2p::start`], on a blocking thread. [`sync::fetch_range`] downloads a long range from
//!   several peers in parallel and hands it over in height order.
//! - **Peers:** limits on established connections, per-peer token-bucket rate limits on
//!   gossip and requests, and scores ([`score`]): a peer at or below the threshold is
//!   disconnected and banned for the ban period.
//! - **Identity:** the libp2p ed25519 key is derived from the node key seed with a
//!   domain-separated hash (`BLAKE3("aergo-p2p-identity-v1" ‖ seed)`), so the peer id is stable
//!   across restarts. The node key itself signs one kind of network message only: the
//!   answer to a peer's connection challenge ([`repo`]), which proves which node runs behind
//!   a peer id ([`NetEvent::PeerIdentified`], [`PeerInfo::node_key`]).
//! - **Repositories** ([`repo`]): public repositories gossip on topics named by their own
//!   chain id ([`P2pHandle::subscribe`]); every repository syncs, and private ones also push
//!   blocks and transactions, over the repository protocol, answered by the node's
//!   [`repo::RepoProvider`] from the requester's proven node key.
//! - **Forwarded pre-confirmations** ([`preconf`]): request-response protocol
//!   `/aergo/<chain-id-hex>/preconf/1` carrying one transaction to the slot's producer and
//!   its signed pre-confirmation (or refusal) back; answered by the node's
//!   [`preconf::PreconfProvider`], rate-limited per peer, capped in flight, always answered.

pub mod preconf;
pub mod repo;
pub mod score;
mod service;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

pub use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
pub use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, oneshot};

pub use score::Penalty;

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// Bad configuration (key, address, limits).
    #[error("p2p configuration: {0}")]
    Config(String),
    /// The transport could not listen.
    #[error("p2p listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The network task has stopped.
    #[error("p2p service stopped")]
    Stopped,
    /// Gossip publication failed (for example no peer subscribes yet).
    #[error("p2p publish: {0}")]
    Publish(String),
    /// A request to a peer failed (timeout, disconnect, unsupported).
    #[error("p2p request to {peer}: {message}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        message: String,
    },
    /// A peer answered with something that does not match the request (it is penalised).
    #[error("p2p bad response from {peer}: {message}")]
    BadResponse {
        /// The peer.
        peer: PeerId,
        /// Why.
        message: String,
    },
    /// Dialing failed.
    #[error("p2p dial {addr}: {message}")]
    Dial {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
}

/// Network configuration.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// The chain id (genesis hash): names the topics and the sync protocol.
    pub chain_id: [u8; 32],
    /// Listen address, e.g. `/ip4/0.0.0.0/tcp/7846` (port 0 picks a free port).
    pub listen: Multiaddr,
    /// Peers dialed at start and redialed while disconnected.
    pub bootnodes: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// The node key seed; the libp2p identity is derived from it.
    pub key_seed: [u8; 32],
    /// Most established connections (inbound + outbound).
    pub max_peers: u32,
    /// Gossip messages plus requests accepted per peer per second (burst twice that).
    pub per_peer_msgs_per_sec: u32,
    /// Largest gossiped transaction.
    pub max_tx_bytes: usize,
    /// Largest gossiped block.
    pub max_block_bytes: usize,
    /// Most blocks in one range response.
    pub max_blocks_per_request: u64,
    /// Largest range response.
    pub max_response_bytes: usize,
    /// Score at or below which a peer is banned (negative).
    pub ban_threshold: i32,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Capacity of the event channel; events beyond it are dropped and counted.
    pub event_capacity: usize,
    /// How often bootnodes are redialed and peers' status refreshed.
    pub maintenance_interval: Duration,
    /// Gossiped blocks are forwarded only once the node validated them and called
    /// [`P2pHandle::report_block`]; otherwise stateless checks are enough to forward. A node
    /// wants this: forwarding an invalid block would make its peers penalise it.
    pub node_validates_blocks: bool,
    /// Forwarded pre-confirmation requests accepted per peer per second (burst twice that),
    /// apart from the gossip rate.
    pub per_peer_preconf_per_sec: u32,
    /// Most forwarded pre-confirmation requests being served at once (more are refused
    /// `busy`).
    pub max_preconf_in_flight: usize,
    /// Timeout of a forwarded pre-confirmation request, and how long a received one waits
    /// for the node's answer before it is refused `timeout`.
    pub preconf_timeout: Duration,
}

impl P2pConfig {
    /// Defaults for a chain, listening on `listen`.
    pub fn new(chain_id: [u8; 32], key_seed: [u8; 32], listen: Multiaddr) -> Self {
        Self {
            chain_id,
            listen,
            bootnodes: Vec::new(),
            mdns: false,
            key_seed,
            max_peers: 50,
            per_peer_msgs_per_sec: 500,
            max_tx_bytes: aergo_types::MAX_TX_SIZE,
            max_block_bytes: aergo_types::MAX_BLOCK_SIZE,
            max_blocks_per_request: 256,
            max_response_bytes: 16 * 1024 * 1024,
            ban_threshold: -100,
            ban_duration: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            event_capacity: 4096,
            maintenance_interval: Duration::from_secs(5),
            node_validates_blocks: false,
            per_peer_preconf_per_sec: 1_000,
            max_preconf_in_flight: 1_024,
            preconf_timeout: Duration::from_secs(10),
        }
    }

    /// The gossip topic of transactions.
    pub fn tx_topic(&self) -> String {
        gossip_topic(&self.chain_id, Topic::Txs)
    }

    /// The gossip topic of blocks.
    pub fn block_topic(&self) -> String {
        gossip_topic(&self.chain_id, Topic::Blocks)
    }

    /// The request-response protocol name.
    pub fn sync_protocol(&self) -> String {
        format!("/aergo/{}/sync/1", hex::encode(self.chain_id))
    }

    /// The node identity protocol name.
    pub fn id_protocol(&self) -> String {
        format!("/aergo/{}/id/1", hex::encode(self.chain_id))
    }

    /// The repository protocol name.
    pub fn repo_protocol(&self) -> String {
        format!("/aergo/{}/repo/1", hex::encode(self.chain_id))
    }

    /// The forwarded pre-confirmation protocol name.
    pub fn preconf_protocol(&self) -> String {
        format!("/aergo/{}/preconf/1", hex::encode(self.chain_id))
    }
}

/// The gossip topic of a chain's blocks or transactions: `aergo/<chain-id-hex>/blocks|txs`
/// (the root's and every public repository's).
pub fn gossip_topic(chain: &[u8; 32], topic: Topic) -> String {
    let kind = match topic {
        Topic::Txs => "txs",
        Topic::Blocks => "blocks",
    };
    format!("aergo/{}/{kind}", hex::encode(chain))
}

/// The libp2p peer id a node key seed yields.
pub fn peer_id_of_seed(seed: &[u8; 32]) -> Result<PeerId, P2pError> {
    Ok(service::keypair_from_seed(seed)?.public().to_peer_id())
}

/// Serves block-range requests from the local chain.
pub trait BlockProvider: Send + Sync + 'static {
    /// Encoded blocks at heights `from..=to` of the best chain, ascending, stopping early at
    /// the tip or once `max_bytes` would be exceeded. Called on a blocking thread.
    fn blocks(&self, from: u64, to: u64, max_bytes: usize) -> Vec<Vec<u8>>;
}

/// A request on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The peer's best block.
    Status,
    /// Blocks at heights `from..=to`.
    Blocks {
        /// First height.
        from: u64,
        /// Last height.
        to: u64,
    },
}

/// A response on the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The peer's status.
    Status(PeerStatus),
    /// Encoded blocks, ascending from the requested `from`.
    Blocks(Vec<serde_bytes::ByteBuf>),
    /// The request was refused (rate limit, no provider, bad range).
    Refused(String),
}

/// A peer's best block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PeerStatus {
    /// Best height.
    pub height: u64,
    /// Best block hash.
    pub hash: [u8; 32],
    /// Chain id (genesis hash).
    pub chain_id: [u8; 32],
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

/// A connected peer, as shown by `aergo node peers` and the RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Peer id (base58).
    pub id: PeerId,
    /// Remote address of the first connection.
    pub address: Multiaddr,
    /// Who dialed.
    pub direction: Direction,
    /// Best height from its last status or gossiped block.
    pub best_height: Option<u64>,
    /// Last ping round trip.
    pub latency_ms: Option<u64>,
    /// Its current score.
    pub score: i32,
    /// Whether it subscribes to both gossip topics.
    pub gossip: bool,
    /// The node key it proved by signing this node's challenge (none yet, or never).
    pub node_key: Option<[u8; 32]>,
}

/// Counters of the network task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    /// Gossip messages handed to the node.
    pub delivered: u64,
    /// Gossip messages dropped (garbage, oversized, rate-limited).
    pub dropped: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
    /// Connections refused (banned peer, limits).
    pub denied: u64,
    /// Bans issued.
    pub bans: u64,
    /// Forwarded pre-confirmation requests received.
    pub preconf_requests: u64,
    /// Of those, refused here before the node saw them (rate, size, garbage, busy).
    pub preconf_refused: u64,
}

/// What the network tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetEvent {
    /// A gossiped transaction (decoded once and chain-id checked; not yet verified).
    Tx {
        /// The peer that sent it to us (penalise it if the transaction is invalid).
        peer: PeerId,
        /// `SignedTx::encode()` bytes.
        bytes: Vec<u8>,
    },
    /// A gossiped block (decoded once and chain-id checked; not yet validated).
    Block {
        /// The peer that sent it to us.
        peer: PeerId,
        /// `Block::encode()` bytes.
        bytes: Vec<u8>,
        /// With [`P2pConfig::node_validates_blocks`]: the id to pass to
        /// [`P2pHandle::report_block`].
        gossip_id: Option<GossipId>,
    },
    /// First connection to a peer.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its address.
        address: Multiaddr,
        /// Who dialed.
        direction: Direction,
    },
    /// Last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer's status arrived (on connect and every maintenance interval).
    PeerStatus {
        /// The peer.
        peer: PeerId,
        /// Its status.
        status: PeerStatus,
    },
    /// A peer was banned.
    PeerBanned {
        /// The peer.
        peer: PeerId,
        /// The penalty that crossed the threshold.
        reason: Penalty,
    },
    /// A peer proved the node key it runs with (it signed this node's challenge).
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// Its node public key.
        node_key: [u8; 32],
    },
    /// A repository's block or transaction: gossiped (public repositories) or pushed
    /// (any repository). Size-, decode- and chain-checked; whether the sender may write
    /// to this repository is the node's decision.
    Repo {
        /// The peer that sent it.
        peer: PeerId,
        /// The sender's proven node key, if any.
        node_key: Option<[u8; 32]>,
        /// The chain (ledger or directory id).
        chain: [u8; 32],
        /// `true`: `Block::encode()` bytes; `false`: `SignedTx::encode()` bytes.
        block: bool,
        /// The bytes.
        bytes: Vec<u8>,
        /// A gossiped block awaiting [`P2pHandle::report_block`].
        gossip_id: Option<GossipId>,
    },
}

/// A gossiped message awaiting the node's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipId {
    pub(crate) id: libp2p::gossipsub::MessageId,
    pub(crate) source: PeerId,
}

/// The node's verdict on a gossiped block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: do not forward; gossipsub lowers the sender's score too.
    Reject,
    /// Not invalid, not worth forwarding (known, stale).
    Ignore,
}

pub(crate) enum Command {
    Report(GossipId, Verdict),
    Publish {
        chain: Option<[u8; 32]>,
        topic: Topic,
        bytes: Vec<u8>,
        checked: bool,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, P2pError>>,
    },
    RepoRequest {
        peer: PeerId,
        request: repo::RepoRequest,
        reply: oneshot::Sender<Result<repo::RepoResponse, P2pError>>,
    },
    PreconfRequest {
        peer: PeerId,
        request: preconf::PreconfRequest,
        reply: oneshot::Sender<Result<preconf::PreconfResponse, P2pError>>,
    },
    Subscribe([u8; 32], bool),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Stats(oneshot::Sender<NetStats>),
    Penalize(PeerId, Penalty),
    SetStatus(u64, [u8; 32]),
    Dial(Multiaddr, oneshot::Sender<Result<(), P2pError>>),
    Shutdown,
}

/// A gossip topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Transactions.
    Txs,
    /// Blocks.
    Blocks,
}

/// The network service.
pub struct P2p;

impl P2p {
    /// Starts the network task on the current tokio runtime, listens, dials the bootnodes and
    /// returns once the listen address is known.
    pub async fn start(
        cfg: P2pConfig,
        provider: Option<Arc<dyn BlockProvider>>,
    ) -> Result<(P2pHandle, mpsc::Receiver<NetEvent>), P2pError> {
        service::start(cfg, provider, None, None).await
    }

    /// [`P2p::start`] with the answers to repository requests.
    pub async fn start_with_repos(
        cfg: P2pConfig,
        provider: Option<Arc<dyn BlockProvider>>,
        repos: Option<Arc<dyn repo::RepoProvider>>,
    ) -> Result<(P2pHandle, mpsc::Receiver<NetEvent>), P2pError> {
        service::start(cfg, provider, repos, None).await
    }

    /// [`P2p::start_with_repos`] with the answers to forwarded pre-confirmation requests.
    pub async fn start_full(
        cfg: P2pConfig,
        provider: Option<Arc<dyn BlockProvider>>,
        repos: Option<Arc<dyn repo::RepoProvider>>,
        preconf: Option<Arc<dyn preconf::PreconfProvider>>,
    ) -> Result<(P2pHandle, mpsc::Receiver<NetEvent>), P2pError> {
        service::start(cfg, provider, repos, preconf).await
    }
}

/// A cheap, cloneable handle to the network task.
#[derive(Clone)]
pub struct P2pHandle {
    cmd: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    listen_addrs: Arc<Vec<Multiaddr>>,
    chain_id: [u8; 32],
    max_blocks_per_request: u64,
}

impl P2pHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses it listens on (with the port chosen when 0 was asked), each ending in
    /// `/p2p/<peer id>` so they can be used as bootnodes.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.as_ref().clone()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// Gossips a transaction (`SignedTx::encode()` bytes). Publishing bytes already seen is Ok.
    pub async fn publish_tx(&self, bytes: Vec<u8>) -> Result<(), P2pError> {
        self.call(|reply| Command::Publish {
            chain: None,
            topic: Topic::Txs,
            bytes,
            checked: true,
            reply,
        })
        .await?
    }

    /// Gossips a block (`Block::encode()` bytes).
    pub async fn publish_block(&self, bytes: Vec<u8>) -> Result<(), P2pError> {
        self.call(|reply| Command::Publish {
            chain: None,
            topic: Topic::Blocks,
            bytes,
            checked: true,
            reply,
        })
        .await?
    }

    /// Test hook: publishes bytes without the local size and decoding checks, to act as a
    /// misbehaving peer.
    #[doc(hidden)]
    pub async fn publish_unchecked(&self, topic: Topic, bytes: Vec<u8>) -> Result<(), P2pError> {
        self.call(|reply| Command::Publish {
            chain: None,
            topic,
            bytes,
            checked: false,
            reply,
        })
        .await?
    }

    /// Fetches blocks `from..=to` (at most the configured per-request maximum) from `peer`.
    /// The answer is checked: each block decodes, belongs to this chain and heights run from
    /// `from` without gaps; otherwise the peer is penalised and an error returned. The answer
    /// may be shorter than asked (the peer's tip or its response size limit).
    pub async fn request_blocks(
        &self,
        peer: PeerId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Vec<u8>>, P2pError> {
        self.request_blocks_in(None, peer, from, to).await
    }

    /// [`P2pHandle::request_blocks`] of a repository's chain (`Some`) or the root (`None`).
    pub async fn request_blocks_in(
        &self,
        chain: Option<[u8; 32]>,
        peer: PeerId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Vec<u8>>, P2pError> {
        let to = to.min(from.saturating_add(self.max_blocks_per_request.saturating_sub(1)));
        let bad = |message: String| P2pError::BadResponse { peer, message };
        let blocks = match chain {
            None => match self
                .call(|reply| Command::Request {
                    peer,
                    request: Request::Blocks { from, to },
                    reply,
                })
                .await??
            {
                Response::Blocks(b) => b,
                Response::Refused(why) => {
                    return Err(P2pError::Request { peer, message: why });
                }
                Response::Status(_) => {
                    self.penalize(peer, Penalty::BadResponse).await;
                    return Err(bad("status in answer to a block request".into()));
                }
            },
            Some(c) => match self
                .repo_request(peer, c, repo::RepoBody::Blocks { from, to })
                .await?
            {
                repo::RepoResponse::Blocks(b) => b,
                repo::RepoResponse::Refused(why) => {
                    return Err(P2pError::Request { peer, message: why });
                }
                _ => {
                    self.penalize(peer, Penalty::BadResponse).await;
                    return Err(bad("not blocks in answer to a block request".into()));
                }
            },
        };
        let expected_chain = chain.unwrap_or(self.chain_id);
        let mut out = Vec::with_capacity(blocks.len());
        let mut problem = None;
        if blocks.len() as u64 > to.saturating_sub(from).saturating_add(1) {
            problem = Some(format!("{} blocks for {from}..={to}", blocks.len()));
        }
        for (i, b) in blocks.into_iter().enumerate() {
            if problem.is_some() {
                break;
            }
            match aergo_types::Block::decode(&b) {
                Ok(block) if block.header.chain_id.0 != expected_chain => {
                    problem = Some(format!("block {i} belongs to another chain"));
                }
                Ok(block) if block.header.height != from.saturating_add(i as u64) => {
                    problem = Some(format!(
                        "block {i} has height {}, expected {}",
                        block.header.height,
                        from.saturating_add(i as u64)
                    ));
                }
                Ok(_) => out.push(b.into_vec()),
                Err(e) => problem = Some(format!("block {i}: {e}")),
            }
        }
        if let Some(p) = problem {
            self.penalize(peer, Penalty::BadResponse).await;
            return Err(bad(p));
        }
        Ok(out)
    }

    /// Asks `peer` for its best block.
    pub async fn request_status(&self, peer: PeerId) -> Result<PeerStatus, P2pError> {
        match self
            .call(|reply| Command::Request {
                peer,
                request: Request::Status,
                reply,
            })
            .await??
        {
            Response::Status(s) => Ok(s),
            Response::Refused(why) => Err(P2pError::Request { peer, message: why }),
            Response::Blocks(_) => {
                self.penalize(peer, Penalty::BadResponse).await;
                Err(P2pError::BadResponse {
                    peer,
                    message: "blocks in answer to a status request".into(),
                })
            }
        }
    }

    /// Sends a repository request to `peer` about `chain` and returns its answer unchecked
    /// (block answers are checked by [`P2pHandle::request_blocks_in`]).
    pub async fn repo_request(
        &self,
        peer: PeerId,
        chain: [u8; 32],
        body: repo::RepoBody,
    ) -> Result<repo::RepoResponse, P2pError> {
        self.call(|reply| Command::RepoRequest {
            peer,
            request: repo::RepoRequest {
                chain: serde_bytes::ByteBuf::from(chain.to_vec()),
                body,
            },
            reply,
        })
        .await?
    }

    /// Forwards a transaction (`SignedTx::encode()` bytes, sent as they are) to `peer` for a
    /// pre-confirmation and returns its answer. The caller checks a promise (signature,
    /// producer, transaction) before it relays it.
    pub async fn forward_preconf(
        &self,
        peer: PeerId,
        tx: Vec<u8>,
    ) -> Result<preconf::PreconfResponse, P2pError> {
        self.call(|reply| Command::PreconfRequest {
            peer,
            request: preconf::PreconfRequest {
                tx: serde_bytes::ByteBuf::from(tx),
            },
            reply,
        })
        .await?
    }

    /// A repository chain's status from `peer`.
    pub async fn repo_status(&self, peer: PeerId, chain: [u8; 32]) -> Result<PeerStatus, P2pError> {
        match self
            .repo_request(peer, chain, repo::RepoBody::Status)
            .await?
        {
            repo::RepoResponse::Status(s) if s.chain_id == chain => Ok(s),
            repo::RepoResponse::Refused(why) => Err(P2pError::Request { peer, message: why }),
            _ => {
                self.penalize(peer, Penalty::BadResponse).await;
                Err(P2pError::BadResponse {
                    peer,
                    message: "not this chain's status".into(),
                })
            }
        }
    }

    /// Gossips a public repository's block (`true`) or transaction on its own topics.
    pub async fn publish_in(
        &self,
        chain: [u8; 32],
        block: bool,
        bytes: Vec<u8>,
    ) -> Result<(), P2pError> {
        self.call(|reply| Command::Publish {
            chain: Some(chain),
            topic: if block { Topic::Blocks } else { Topic::Txs },
            bytes,
            checked: true,
            reply,
        })
        .await?
    }

    /// Subscribes to a public repository's gossip topics (`true`) or leaves them.
    pub async fn subscribe(&self, chain: [u8; 32], on: bool) -> Result<(), P2pError> {
        self.cmd
            .send(Command::Subscribe(chain, on))
            .await
            .map_err(|_| P2pError::Stopped)
    }

    /// The connected peers, sorted by id.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, P2pError> {
        self.call(Command::Peers).await
    }

    /// Counters.
    pub async fn stats(&self) -> Result<NetStats, P2pError> {
        self.call(Command::Stats).await
    }

    /// Lowers a peer's score (the node found its data invalid); past the threshold the peer is
    /// disconnected and banned. Silently ignored once the service stopped.
    pub async fn penalize(&self, peer: PeerId, reason: Penalty) {
        let _ = self.cmd.send(Command::Penalize(peer, reason)).await;
    }

    /// The node's verdict on a gossiped block (see [`P2pConfig::node_validates_blocks`]).
    pub async fn report_block(&self, id: GossipId, verdict: Verdict) {
        let _ = self.cmd.send(Command::Report(id, verdict)).await;
    }

    /// The local best block, served to status requests.
    pub async fn set_status(&self, height: u64, hash: [u8; 32]) -> Result<(), P2pError> {
        self.cmd
            .send(Command::SetStatus(height, hash))
            .await
            .map_err(|_| P2pError::Stopped)
    }

    /// Dials an address; returns once the dial was started (connection events follow).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.call(|reply| Command::Dial(addr, reply)).await?
    }

    /// Stops the network task (also stopped when every handle is dropped).
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
    }
}
