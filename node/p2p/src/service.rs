//! The network task: owns the libp2p swarm and serves [`crate::P2pHandle`] commands.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, identify, identity, mdns, noise, ping, tcp, yamux,
    Multiaddr, PeerId, StreamProtocol, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::preconf::{PreconfProvider, PreconfRequest, PreconfResponse};
use crate::repo::{IdRequest, IdResponse, RepoBody, RepoProvider, RepoRequest, RepoResponse};
use crate::score::{Bucket, Penalty, Scores, Verdict};
use crate::{
    BlockProvider, Command, Direction, NetEvent, NetStats, P2pConfig, P2pError, P2pHandle,
    PeerInfo, PeerStatus, Request, Response, Topic,
};

type Rr = request_response::cbor::Behaviour<Request, Response>;
type IdRr = request_response::cbor::Behaviour<IdRequest, IdResponse>;
type RepoRr = request_response::cbor::Behaviour<RepoRequest, RepoResponse>;
type PreconfRr = request_response::cbor::Behaviour<PreconfRequest, PreconfResponse>;

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    rr: Rr,
    id: IdRr,
    repo: RepoRr,
    preconf: PreconfRr,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

pub(crate) fn keypair_from_seed(seed: &[u8; 32]) -> Result<identity::Keypair, P2pError> {
    let derived = aergo_types::Hash::of_parts(&[&b"aergo-p2p-identity-v1"[..], &seed[..]]);
    identity::Keypair::ed25519_from_bytes(derived.0).map_err(|e| P2pError::Config(e.to_string()))
}

struct Peer {
    address: Multiaddr,
    direction: Direction,
    best_height: Option<u64>,
    latency_ms: Option<u64>,
    bucket: Bucket,
    /// Its forwarded pre-confirmation requests' rate.
    preconf_bucket: Bucket,
    /// The node key the peer proved.
    node_key: Option<[u8; 32]>,
    /// The challenge sent to it, until it answers.
    challenge: Option<[u8; 32]>,
    /// Challenges of its answered (at most [`MAX_ID_ANSWERS`] per connection; they do not
    /// take from the message rate, so proving identity never costs a peer its first blocks).
    id_answers: u32,
}

/// Identity challenges answered per connected peer.
const MAX_ID_ANSWERS: u32 = 4;

type Served = (request_response::ResponseChannel<Response>, Response);
type ServedRepo = (
    request_response::ResponseChannel<RepoResponse>,
    RepoResponse,
);
type RepoReply = oneshot::Sender<Result<RepoResponse, P2pError>>;
type PreconfReply = oneshot::Sender<Result<PreconfResponse, P2pError>>;
/// A forwarded request's answer, ready to send: the channel, the answer, the peer and the
/// penalty its request earned.
type ServedPreconf = (
    request_response::ResponseChannel<PreconfResponse>,
    PreconfResponse,
    PeerId,
    Option<Penalty>,
);

struct Service {
    cfg: P2pConfig,
    swarm: Swarm<Behaviour>,
    events: mpsc::Sender<NetEvent>,
    provider: Option<Arc<dyn BlockProvider>>,
    tx_topic: TopicHash,
    block_topic: TopicHash,
    peers: HashMap<PeerId, Peer>,
    scores: Scores,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, P2pError>>>,
    status_requests: HashSet<OutboundRequestId>,
    status: PeerStatus,
    stats: NetStats,
    served_tx: mpsc::Sender<Served>,
    bootnode_peers: HashMap<Multiaddr, PeerId>,
    last_decay: Instant,
    repos: Option<Arc<dyn RepoProvider>>,
    /// The node key: it signs identity proofs only.
    node_key: aergo_types::Keypair,
    /// Public repositories' topics → (chain, kind).
    repo_topics: HashMap<TopicHash, ([u8; 32], Topic)>,
    pending_repo: HashMap<OutboundRequestId, RepoReply>,
    served_repo_tx: mpsc::Sender<ServedRepo>,
    nonces: u64,
    /// Answers forwarded pre-confirmation requests.
    preconf: Option<Arc<dyn PreconfProvider>>,
    pending_preconf: HashMap<OutboundRequestId, PreconfReply>,
    served_preconf_tx: mpsc::Sender<ServedPreconf>,
    /// Received forwarded requests not answered yet.
    preconf_in_flight: usize,
}

pub(crate) async fn start(
    cfg: P2pConfig,
    provider: Option<Arc<dyn BlockProvider>>,
    repos: Option<Arc<dyn RepoProvider>>,
    preconf: Option<Arc<dyn PreconfProvider>>,
) -> Result<(P2pHandle, mpsc::Receiver<NetEvent>), P2pError> {
    let key = keypair_from_seed(&cfg.key_seed)?;
    let key_seed = cfg.key_seed;
    let local_peer_id = key.public().to_peer_id();
    let conf = |e: &dyn std::fmt::Display| P2pError::Config(e.to_string());

    let hard_max = cfg.max_block_bytes.max(cfg.max_tx_bytes).saturating_mul(2);
    let gcfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(hard_max)
        .duplicate_cache_time(Duration::from_secs(300))
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(
                aergo_types::Hash::of_parts(&[m.topic.as_str().as_bytes(), &m.data])
                    .0
                    .to_vec(),
            )
        })
        .build()
        .map_err(|e| conf(&e))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)
            .map_err(|e| conf(&e))?;
    let tx_topic = IdentTopic::new(cfg.tx_topic());
    let block_topic = IdentTopic::new(cfg.block_topic());
    gossipsub.subscribe(&tx_topic).map_err(|e| conf(&e))?;
    gossipsub.subscribe(&block_topic).map_err(|e| conf(&e))?;

    let protocol = StreamProtocol::try_from_owned(cfg.sync_protocol()).map_err(|e| conf(&e))?;
    let codec = request_response::cbor::codec::Codec::<Request, Response>::default()
        .set_request_size_maximum(4096)
        .set_response_size_maximum(cfg.max_response_bytes as u64 * 2 + 65536);
    let rr = Rr::with_codec(
        codec,
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(cfg.request_timeout),
    );

    let id_protocol = StreamProtocol::try_from_owned(cfg.id_protocol()).map_err(|e| conf(&e))?;
    let id = IdRr::with_codec(
        request_response::cbor::codec::Codec::<IdRequest, IdResponse>::default()
            .set_request_size_maximum(1024)
            .set_response_size_maximum(1024),
        [(id_protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(cfg.request_timeout),
    );
    let repo_protocol =
        StreamProtocol::try_from_owned(cfg.repo_protocol()).map_err(|e| conf(&e))?;
    let push_max = cfg.max_block_bytes.max(cfg.max_tx_bytes) as u64 + 4096;
    let repo = RepoRr::with_codec(
        request_response::cbor::codec::Codec::<RepoRequest, RepoResponse>::default()
            .set_request_size_maximum(push_max * 2)
            .set_response_size_maximum(cfg.max_response_bytes as u64 * 2 + 65536),
        [(repo_protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(cfg.request_timeout),
    );

    let preconf_protocol =
        StreamProtocol::try_from_owned(cfg.preconf_protocol()).map_err(|e| conf(&e))?;
    // One transaction and the CBOR around it, with room to spare: a request up to this size is
    // read and, when its transaction is too large, refused with a reason and penalised; the
    // codec resets the stream of a larger one after reading this much (libp2p reports no
    // event for it, so it costs the sender no score, and the receiver no more than this).
    let preconf_rr = PreconfRr::with_codec(
        request_response::cbor::codec::Codec::<PreconfRequest, PreconfResponse>::default()
            .set_request_size_maximum(cfg.max_tx_bytes as u64 * 2 + 4096)
            .set_response_size_maximum(cfg.max_tx_bytes as u64 * 4 + 65536),
        [(preconf_protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(cfg.preconf_timeout),
    );

    let mdns = if cfg.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), local_peer_id)
                .map_err(|e| conf(&e))?,
        )
    } else {
        None
    };
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(cfg.max_peers))
        .with_max_established_per_peer(Some(2))
        .with_max_pending_incoming(Some(cfg.max_peers));

    let behaviour = Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        gossipsub,
        identify: identify::Behaviour::new(identify::Config::new(
            "/aergo/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(5))),
        rr,
        id,
        repo,
        preconf: preconf_rr,
        mdns: Toggle::from(mdns),
    };

    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| conf(&e))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| conf(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();

    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| P2pError::Listen {
            addr: cfg.listen.to_string(),
            message: e.to_string(),
        })?;
    // Wait for the listen address (the port chosen for port 0).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut listen_addrs = Vec::new();
    while listen_addrs.is_empty() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => {
                listen_addrs.push(address.with(Protocol::P2p(local_peer_id)))
            }
            Ok(SwarmEvent::ListenerError { error, .. }) => {
                return Err(P2pError::Listen {
                    addr: cfg.listen.to_string(),
                    message: error.to_string(),
                })
            }
            Ok(SwarmEvent::ListenerClosed { reason, .. }) => {
                return Err(P2pError::Listen {
                    addr: cfg.listen.to_string(),
                    message: format!("closed: {reason:?}"),
                })
            }
            Ok(_) => {}
            Err(_) => {
                return Err(P2pError::Listen {
                    addr: cfg.listen.to_string(),
                    message: "no listen address within 10 s".into(),
                })
            }
        }
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (ev_tx, ev_rx) = mpsc::channel(cfg.event_capacity.max(1));
    let (served_tx, served_rx) = mpsc::channel(256);
    let (served_repo_tx, served_repo_rx) = mpsc::channel(256);
    let (served_preconf_tx, served_preconf_rx) = mpsc::channel(256);
    let handle = P2pHandle {
        cmd: cmd_tx,
        local_peer_id,
        listen_addrs: Arc::new(listen_addrs),
        chain_id: cfg.chain_id,
        max_blocks_per_request: cfg.max_blocks_per_request.max(1),
    };
    let mut svc = Service {
        scores: Scores::new(cfg.ban_threshold, cfg.ban_duration),
        status: PeerStatus {
            chain_id: cfg.chain_id,
            ..PeerStatus::default()
        },
        cfg,
        swarm,
        events: ev_tx,
        provider,
        tx_topic: tx_topic.hash(),
        block_topic: block_topic.hash(),
        peers: HashMap::new(),
        pending: HashMap::new(),
        status_requests: HashSet::new(),
        stats: NetStats::default(),
        served_tx,
        bootnode_peers: HashMap::new(),
        last_decay: Instant::now(),
        repos,
        node_key: aergo_types::Keypair::from_seed(&key_seed),
        repo_topics: HashMap::new(),
        pending_repo: HashMap::new(),
        served_repo_tx,
        nonces: 0,
        preconf,
        pending_preconf: HashMap::new(),
        served_preconf_tx,
        preconf_in_flight: 0,
    };
    svc.dial_bootnodes();
    // The swarm is vital: a panic in it aborts the process (its supervisor restarts it)
    // rather than leave a node whose every network call fails.
    aergo_os::task::spawn_vital(
        "p2p swarm",
        svc.run(cmd_rx, served_rx, served_repo_rx, served_preconf_rx),
    );
    Ok((handle, ev_rx))
}

impl Service {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut served: mpsc::Receiver<Served>,
        mut served_repo: mpsc::Receiver<ServedRepo>,
        mut served_preconf: mpsc::Receiver<ServedPreconf>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_maintenance = Instant::now();
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = cmds.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(c) => self.on_command(c),
                },
                Some((ch, resp)) = served.recv() => {
                    let _ = self.swarm.behaviour_mut().rr.send_response(ch, resp);
                }
                Some((ch, resp)) = served_repo.recv() => {
                    let _ = self.swarm.behaviour_mut().repo.send_response(ch, resp);
                }
                Some((ch, resp, peer, penalty)) = served_preconf.recv() => {
                    self.preconf_in_flight = self.preconf_in_flight.saturating_sub(1);
                    if let Some(p) = penalty {
                        self.penalize(peer, p);
                    }
                    let _ = self.swarm.behaviour_mut().preconf.send_response(ch, resp);
                }
                _ = tick.tick() => {
                    self.housekeeping();
                    if last_maintenance.elapsed() >= self.cfg.maintenance_interval {
                        last_maintenance = Instant::now();
                        self.dial_bootnodes();
                        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
                        for p in peers {
                            self.ask_status(p);
                        }
                    }
                }
            }
        }
        tracing::debug!("p2p service stopped");
    }

    fn emit(&mut self, ev: NetEvent) {
        if self.events.try_send(ev).is_err() {
            self.stats.events_dropped += 1;
        }
    }

    fn dial_bootnodes(&mut self) {
        let me = *self.swarm.local_peer_id();
        for addr in self.cfg.bootnodes.clone() {
            let known = self.bootnode_peers.get(&addr).copied().or_else(|| {
                addr.iter().find_map(|p| match p {
                    Protocol::P2p(id) => Some(id),
                    _ => None,
                })
            });
            if let Some(p) = known {
                if p == me
                    || self.peers.contains_key(&p)
                    || self.scores.is_banned(&p, Instant::now())
                {
                    continue;
                }
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "bootnode dial failed");
            }
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_decay).as_secs();
        if secs == 0 {
            // Bans are still checked every tick so they end on time.
            let expired = self.scores.decay(0, now);
            self.unban(expired);
            return;
        }
        self.last_decay += Duration::from_secs(secs);
        let expired = self
            .scores
            .decay(u32::try_from(secs).unwrap_or(u32::MAX), now);
        self.unban(expired);
    }

    fn unban(&mut self, peers: Vec<PeerId>) {
        for p in peers {
            tracing::info!(peer = %p, "ban expired");
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
        }
    }

    fn penalize(&mut self, peer: PeerId, reason: Penalty) {
        match self.scores.penalize(peer, reason, Instant::now()) {
            Verdict::Keep(score) => {
                tracing::debug!(%peer, ?reason, score, "peer penalised");
            }
            Verdict::Ban(_) => {
                if self.swarm.behaviour_mut().blocked.block_peer(peer) {
                    tracing::warn!(%peer, ?reason, "peer banned");
                    self.stats.bans += 1;
                    self.emit(NetEvent::PeerBanned { peer, reason });
                }
                // Blocking closes the connections; make sure anyway.
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn ask_status(&mut self, peer: PeerId) {
        let id = self
            .swarm
            .behaviour_mut()
            .rr
            .send_request(&peer, Request::Status);
        self.status_requests.insert(id);
    }

    fn rate_ok(&mut self, peer: &PeerId) -> bool {
        let now = Instant::now();
        match self.peers.get_mut(peer) {
            Some(p) => p.bucket.take(now),
            None => true,
        }
    }

    /// Stateless checks of a gossiped payload: size, decoding, chain id.
    fn check_payload(&self, topic: Topic, data: &[u8]) -> Result<(), Penalty> {
        self.check_payload_of(&self.cfg.chain_id, topic, data)
    }

    /// [`Service::check_payload`] for any chain.
    fn check_payload_of(&self, chain: &[u8; 32], topic: Topic, data: &[u8]) -> Result<(), Penalty> {
        match topic {
            Topic::Txs => {
                if data.len() > self.cfg.max_tx_bytes {
                    return Err(Penalty::Oversized);
                }
                match aergo_types::SignedTx::decode(data) {
                    Ok(t) if t.tx.chain_id.0 == *chain => Ok(()),
                    _ => Err(Penalty::Garbage),
                }
            }
            Topic::Blocks => {
                if data.len() > self.cfg.max_block_bytes {
                    return Err(Penalty::Oversized);
                }
                match aergo_types::Block::decode(data) {
                    Ok(b) if b.header.chain_id.0 == *chain => Ok(()),
                    _ => Err(Penalty::Garbage),
                }
            }
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, msg: gossipsub::Message) {
        if let Some((chain, topic)) = self.repo_topics.get(&msg.topic).copied() {
            self.on_repo_gossip(source, id, msg, chain, topic);
            return;
        }
        let topic = if msg.topic == self.tx_topic {
            Some(Topic::Txs)
        } else if msg.topic == self.block_topic {
            Some(Topic::Blocks)
        } else {
            None
        };
        let verdict = match topic {
            None => Err(Penalty::Garbage),
            Some(_) if !self.rate_ok(&source) => Err(Penalty::RateLimited),
            Some(t) => self.check_payload(t, &msg.data).map(|()| t),
        };
        let acceptance = match verdict {
            Ok(_) => MessageAcceptance::Accept,
            Err(Penalty::RateLimited) => MessageAcceptance::Ignore,
            Err(_) => MessageAcceptance::Reject,
        };
        let deferred = matches!(verdict, Ok(Topic::Blocks)) && self.cfg.node_validates_blocks;
        let gossip_id = deferred.then(|| crate::GossipId {
            id: id.clone(),
            source,
        });
        if !deferred {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, acceptance);
        }
        match verdict {
            Ok(Topic::Txs) => {
                self.stats.delivered += 1;
                self.emit(NetEvent::Tx {
                    peer: source,
                    bytes: msg.data,
                });
            }
            Ok(Topic::Blocks) => {
                self.stats.delivered += 1;
                if let Ok(b) = aergo_types::Block::decode(&msg.data) {
                    if let Some(p) = self.peers.get_mut(&source) {
                        p.best_height = Some(p.best_height.unwrap_or(0).max(b.header.height));
                    }
                }
                self.emit(NetEvent::Block {
                    peer: source,
                    bytes: msg.data,
                    gossip_id,
                });
            }
            Err(reason) => {
                self.stats.dropped += 1;
                tracing::debug!(peer = %source, ?reason, "gossip message dropped");
                self.penalize(source, reason);
            }
        }
    }

    /// Sends `peer` a fresh identity challenge.
    fn challenge(&mut self, peer: PeerId) {
        self.nonces = self.nonces.wrapping_add(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Unpredictable to the peer: keyed by the node's secret seed.
        let nonce = aergo_types::Hash::of_parts(&[
            &b"aergo-id-nonce-v1"[..],
            &self.node_key.seed()[..],
            &self.nonces.to_le_bytes()[..],
            &now.to_le_bytes()[..],
            &peer.to_bytes()[..],
        ])
        .0;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.challenge = Some(nonce);
        }
        self.swarm.behaviour_mut().id.send_request(
            &peer,
            IdRequest {
                nonce: serde_bytes::ByteBuf::from(nonce.to_vec()),
            },
        );
    }

    fn on_id_request(
        &mut self,
        peer: PeerId,
        request: IdRequest,
        channel: request_response::ResponseChannel<IdResponse>,
    ) {
        let answered = self.peers.get_mut(&peer).map(|p| {
            p.id_answers = p.id_answers.saturating_add(1);
            p.id_answers
        });
        let resp = if answered.is_none_or(|n| n > MAX_ID_ANSWERS) {
            IdResponse::Refused(format!(
                "at most {MAX_ID_ANSWERS} identity challenges per connection"
            ))
        } else if request.nonce.len() != 32 {
            IdResponse::Refused("a challenge is 32 bytes".into())
        } else {
            let me = *self.swarm.local_peer_id();
            let msg = crate::repo::id_message(&self.cfg.chain_id, &request.nonce, &me, &peer);
            IdResponse::Proof {
                node_key: serde_bytes::ByteBuf::from(self.node_key.public().0.to_vec()),
                signature: serde_bytes::ByteBuf::from(self.node_key.sign(&msg).0.to_vec()),
            }
        };
        let _ = self.swarm.behaviour_mut().id.send_response(channel, resp);
    }

    fn on_id_response(&mut self, peer: PeerId, response: IdResponse) {
        let Some(nonce) = self.peers.get_mut(&peer).and_then(|p| p.challenge.take()) else {
            return;
        };
        let IdResponse::Proof {
            node_key,
            signature,
        } = response
        else {
            return;
        };
        let (Ok(key), Ok(sig)) = (
            <[u8; 32]>::try_from(node_key.as_slice()),
            <[u8; 64]>::try_from(signature.as_slice()),
        ) else {
            self.penalize(peer, Penalty::BadResponse);
            return;
        };
        let me = *self.swarm.local_peer_id();
        let msg = crate::repo::id_message(&self.cfg.chain_id, &nonce, &peer, &me);
        if !aergo_types::PublicKey(key).verify(&msg, &aergo_types::Signature(sig)) {
            tracing::warn!(%peer, "peer failed its node identity proof");
            self.penalize(peer, Penalty::BadResponse);
            return;
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.node_key = Some(key);
        }
        tracing::debug!(%peer, node = %aergo_types::Address::from_public_key(&aergo_types::PublicKey(key)), "peer proved its node key");
        self.emit(NetEvent::PeerIdentified {
            peer,
            node_key: key,
        });
    }

    fn on_repo_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        msg: gossipsub::Message,
        chain: [u8; 32],
        topic: Topic,
    ) {
        let verdict = if !self.rate_ok(&source) {
            Err(Penalty::RateLimited)
        } else {
            self.check_payload_of(&chain, topic, &msg.data)
        };
        let block = topic == Topic::Blocks;
        let deferred = verdict.is_ok() && block && self.cfg.node_validates_blocks;
        if !deferred {
            let acceptance = match verdict {
                Ok(()) => MessageAcceptance::Accept,
                Err(Penalty::RateLimited) => MessageAcceptance::Ignore,
                Err(_) => MessageAcceptance::Reject,
            };
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, acceptance);
        }
        match verdict {
            Ok(()) => {
                self.stats.delivered += 1;
                let node_key = self.peers.get(&source).and_then(|p| p.node_key);
                self.emit(NetEvent::Repo {
                    peer: source,
                    node_key,
                    chain,
                    block,
                    bytes: msg.data,
                    gossip_id: deferred.then_some(crate::GossipId { id, source }),
                });
            }
            Err(reason) => {
                self.stats.dropped += 1;
                self.penalize(source, reason);
            }
        }
    }

    fn on_repo_request(
        &mut self,
        peer: PeerId,
        request: RepoRequest,
        channel: request_response::ResponseChannel<RepoResponse>,
    ) {
        let respond = |svc: &mut Self, ch, r| {
            let _ = svc.swarm.behaviour_mut().repo.send_response(ch, r);
        };
        if !self.rate_ok(&peer) {
            self.penalize(peer, Penalty::RateLimited);
            respond(self, channel, RepoResponse::Refused("rate limited".into()));
            return;
        }
        let Ok(chain) = <[u8; 32]>::try_from(request.chain.as_slice()) else {
            self.penalize(peer, Penalty::Garbage);
            respond(
                self,
                channel,
                RepoResponse::Refused("a chain id is 32 bytes".into()),
            );
            return;
        };
        let node_key = self.peers.get(&peer).and_then(|p| p.node_key);
        match request.body {
            RepoBody::Push { block, bytes } => {
                let topic = if block { Topic::Blocks } else { Topic::Txs };
                if let Err(p) = self.check_payload_of(&chain, topic, &bytes) {
                    self.stats.dropped += 1;
                    self.penalize(peer, p);
                    respond(self, channel, RepoResponse::Refused(format!("{p:?}")));
                    return;
                }
                self.stats.delivered += 1;
                self.emit(NetEvent::Repo {
                    peer,
                    node_key,
                    chain,
                    block,
                    bytes: bytes.into_vec(),
                    gossip_id: None,
                });
                respond(self, channel, RepoResponse::Ack);
            }
            body => {
                let max = self.cfg.max_blocks_per_request.max(1);
                if let RepoBody::Blocks { from, to } = body {
                    let why = if to < from {
                        Some("empty range".to_string())
                    } else if to - from >= max {
                        Some(format!("more than {max} blocks"))
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        respond(self, channel, RepoResponse::Refused(why));
                        return;
                    }
                }
                let (Some(provider), Ok(rt)) =
                    (self.repos.clone(), tokio::runtime::Handle::try_current())
                else {
                    respond(
                        self,
                        channel,
                        RepoResponse::Refused("no repositories".into()),
                    );
                    return;
                };
                let max_bytes = self.cfg.max_response_bytes;
                let served = self.served_repo_tx.clone();
                rt.spawn(async move {
                    let resp = tokio::task::spawn_blocking(move || {
                        provider.serve(&chain, node_key.as_ref(), &body, max, max_bytes)
                    })
                    .await
                    .unwrap_or_else(|_| RepoResponse::Refused("internal error".into()));
                    let _ = served.send((channel, resp)).await;
                });
            }
        }
    }

    /// A forwarded transaction: checked here (rate, size, decoding, chain, capacity), then
    /// handed to the node; its answer (or a `timeout` refusal) goes back on `channel`.
    fn on_preconf_request(
        &mut self,
        peer: PeerId,
        request: PreconfRequest,
        channel: request_response::ResponseChannel<PreconfResponse>,
    ) {
        self.stats.preconf_requests += 1;
        let now = Instant::now();
        let rate_ok = match self.peers.get_mut(&peer) {
            Some(p) => p.preconf_bucket.take(now),
            None => false,
        };
        let refusal = if !rate_ok {
            self.penalize(peer, Penalty::RateLimited);
            Some(PreconfResponse::refused(
                "rate_limited",
                "too many forwarded pre-confirmation requests; slow down",
            ))
        } else if let Err(p) = self.check_payload(Topic::Txs, &request.tx) {
            self.penalize(peer, p);
            Some(PreconfResponse::refused(
                if p == Penalty::Oversized {
                    "oversized"
                } else {
                    "malformed"
                },
                match p {
                    Penalty::Oversized => format!(
                        "a forwarded transaction is at most {} bytes, got {}",
                        self.cfg.max_tx_bytes,
                        request.tx.len()
                    ),
                    _ => "the forwarded bytes are not a transaction of this chain".to_string(),
                },
            ))
        } else if self.preconf_in_flight >= self.cfg.max_preconf_in_flight {
            Some(PreconfResponse::refused(
                "busy",
                format!(
                    "{} forwarded pre-confirmation requests are already being served; retry shortly",
                    self.preconf_in_flight
                ),
            ))
        } else {
            None
        };
        let served = self.served_preconf_tx.clone();
        let (provider, rt) = match (
            refusal,
            self.preconf.clone(),
            tokio::runtime::Handle::try_current(),
        ) {
            (None, Some(p), Ok(rt)) => (p, rt),
            (refusal, _, _) => {
                self.stats.preconf_refused += 1;
                let resp = refusal.unwrap_or_else(|| {
                    PreconfResponse::refused("off", "this node does not pre-confirm")
                });
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .preconf
                    .send_response(channel, resp);
                return;
            }
        };
        self.preconf_in_flight += 1;
        let node_key = self.peers.get(&peer).and_then(|p| p.node_key);
        let wait = self.cfg.preconf_timeout;
        let (tx, rx) = oneshot::channel();
        provider.forwarded(peer, node_key, request.tx.into_vec(), tx);
        rt.spawn(async move {
            let (resp, penalty) = match tokio::time::timeout(wait, rx).await {
                Ok(Ok(answer)) => answer,
                _ => (
                    PreconfResponse::refused(
                        "timeout",
                        format!("no answer from the node within {} ms", wait.as_millis()),
                    ),
                    None,
                ),
            };
            // Always answered: the network task decrements the in-flight count there.
            let _ = served.send((channel, resp, peer, penalty)).await;
        });
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: request_response::ResponseChannel<Response>,
    ) {
        if !self.rate_ok(&peer) {
            self.penalize(peer, Penalty::RateLimited);
            let _ = self
                .swarm
                .behaviour_mut()
                .rr
                .send_response(channel, Response::Refused("rate limited".into()));
            return;
        }
        match request {
            Request::Status => {
                let s = self.status;
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, Response::Status(s));
            }
            Request::Blocks { from, to } => {
                let max = self.cfg.max_blocks_per_request.max(1);
                let refuse = if to < from {
                    Some("empty range".to_string())
                } else if to - from >= max {
                    Some(format!("more than {max} blocks"))
                } else if self.provider.is_none() {
                    Some("no block provider".to_string())
                } else {
                    None
                };
                if let Some(why) = refuse {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rr
                        .send_response(channel, Response::Refused(why));
                    return;
                }
                let (Some(provider), Ok(rt)) =
                    (self.provider.clone(), tokio::runtime::Handle::try_current())
                else {
                    return;
                };
                let max_bytes = self.cfg.max_response_bytes;
                let served = self.served_tx.clone();
                rt.spawn(async move {
                    let blocks =
                        tokio::task::spawn_blocking(move || provider.blocks(from, to, max_bytes))
                            .await
                            .unwrap_or_default();
                    let blocks = blocks.into_iter().map(serde_bytes::ByteBuf::from).collect();
                    let _ = served.send((channel, Response::Blocks(blocks))).await;
                });
            }
        }
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    if self.cfg.bootnodes.contains(address) {
                        self.bootnode_peers.insert(address.clone(), peer_id);
                    }
                }
                if num_established.get() == 1 && !self.peers.contains_key(&peer_id) {
                    let direction = if endpoint.is_dialer() {
                        Direction::Outbound
                    } else {
                        Direction::Inbound
                    };
                    let address = endpoint.get_remote_address().clone();
                    self.peers.insert(
                        peer_id,
                        Peer {
                            address: address.clone(),
                            direction,
                            best_height: None,
                            latency_ms: None,
                            bucket: Bucket::new(self.cfg.per_peer_msgs_per_sec, Instant::now()),
                            preconf_bucket: Bucket::new(
                                self.cfg.per_peer_preconf_per_sec,
                                Instant::now(),
                            ),
                            node_key: None,
                            challenge: None,
                            id_answers: 0,
                        },
                    );
                    self.challenge(peer_id);
                    tracing::info!(peer = %peer_id, %address, ?direction, "peer connected");
                    self.emit(NetEvent::PeerConnected {
                        peer: peer_id,
                        address,
                        direction,
                    });
                    self.ask_status(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if self.peers.contains_key(&peer_id) => {
                self.peers.remove(&peer_id);
                tracing::info!(peer = %peer_id, "peer disconnected");
                self.emit(NetEvent::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                self.stats.denied += 1;
                tracing::debug!(%error, "incoming connection refused");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour(b),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Rr(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => self.on_response(peer, request_id, response),
                }
            }
            BehaviourEvent::Rr(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                self.status_requests.remove(&request_id);
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        message: error.to_string(),
                    }));
                }
            }
            BehaviourEvent::Id(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_id_request(peer, request, channel),
                    request_response::Message::Response { response, .. } => {
                        self.on_id_response(peer, response)
                    }
                }
            }
            BehaviourEvent::Repo(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_repo_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_repo.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Repo(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending_repo.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        message: error.to_string(),
                    }));
                }
            }
            BehaviourEvent::Preconf(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_preconf_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending_preconf.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                }
            }
            BehaviourEvent::Preconf(request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            }) => {
                if let Some(reply) = self.pending_preconf.remove(&request_id) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        message: error.to_string(),
                    }));
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.latency_ms = Some(u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX));
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    if !self.peers.contains_key(&peer)
                        && !self.scores.is_banned(&peer, Instant::now())
                    {
                        let _ = self.swarm.dial(addr.with(Protocol::P2p(peer)));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_response(&mut self, peer: PeerId, id: OutboundRequestId, response: Response) {
        if self.status_requests.remove(&id) {
            match response {
                Response::Status(s) if s.chain_id == self.cfg.chain_id => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.best_height = Some(s.height);
                    }
                    self.emit(NetEvent::PeerStatus { peer, status: s });
                }
                Response::Refused(_) => {}
                _ => self.penalize(peer, Penalty::BadResponse),
            }
            return;
        }
        if let Some(reply) = self.pending.remove(&id) {
            if let Response::Status(s) = &response {
                if s.chain_id != self.cfg.chain_id {
                    self.penalize(peer, Penalty::BadResponse);
                } else if let Some(p) = self.peers.get_mut(&peer) {
                    p.best_height = Some(s.height);
                }
            }
            let _ = reply.send(Ok(response));
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish {
                chain,
                topic,
                bytes,
                checked,
                reply,
            } => {
                if checked {
                    let c = chain.unwrap_or(self.cfg.chain_id);
                    if let Err(p) = self.check_payload_of(&c, topic, &bytes) {
                        let _ = reply.send(Err(P2pError::Publish(format!(
                            "refusing to publish: {p:?}"
                        ))));
                        return;
                    }
                }
                let t = match (chain, topic) {
                    (None, Topic::Txs) => self.tx_topic.clone(),
                    (None, Topic::Blocks) => self.block_topic.clone(),
                    (Some(c), t) => IdentTopic::new(crate::gossip_topic(&c, t)).hash(),
                };
                let r = match self.swarm.behaviour_mut().gossipsub.publish(t, bytes) {
                    Ok(_) | Err(gossipsub::PublishError::Duplicate) => Ok(()),
                    Err(e) => Err(P2pError::Publish(e.to_string())),
                };
                let _ = reply.send(r);
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().rr.send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Command::RepoRequest {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().repo.send_request(&peer, request);
                self.pending_repo.insert(id, reply);
            }
            Command::PreconfRequest {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .preconf
                    .send_request(&peer, request);
                self.pending_preconf.insert(id, reply);
            }
            Command::Subscribe(chain, on) => {
                for t in [Topic::Txs, Topic::Blocks] {
                    let topic = IdentTopic::new(crate::gossip_topic(&chain, t));
                    let g = &mut self.swarm.behaviour_mut().gossipsub;
                    if on {
                        if let Err(e) = g.subscribe(&topic) {
                            tracing::warn!(error = %e, "cannot subscribe to a repository topic");
                            continue;
                        }
                        self.repo_topics.insert(topic.hash(), (chain, t));
                    } else {
                        g.unsubscribe(&topic);
                        self.repo_topics.remove(&topic.hash());
                    }
                }
            }
            Command::Peers(reply) => {
                let gossip: HashMap<PeerId, usize> = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .map(|(p, topics)| {
                        let n = topics
                            .iter()
                            .filter(|t| ***t == self.tx_topic || ***t == self.block_topic)
                            .count();
                        (*p, n)
                    })
                    .collect();
                let mut out: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .map(|(id, p)| PeerInfo {
                        id: *id,
                        address: p.address.clone(),
                        direction: p.direction,
                        best_height: p.best_height,
                        latency_ms: p.latency_ms,
                        score: self.scores.score(id),
                        gossip: gossip.get(id).copied().unwrap_or(0) == 2,
                        node_key: p.node_key,
                    })
                    .collect();
                out.sort_by_key(|p| p.id.to_bytes());
                let _ = reply.send(out);
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats);
            }
            Command::Penalize(peer, reason) => self.penalize(peer, reason),
            Command::Report(g, verdict) => {
                let acceptance = match verdict {
                    crate::Verdict::Accept => MessageAcceptance::Accept,
                    crate::Verdict::Reject => MessageAcceptance::Reject,
                    crate::Verdict::Ignore => MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&g.id, &g.source, acceptance);
            }
            Command::SetStatus(height, hash) => {
                self.status.height = height;
                self.status.hash = hash;
            }
            Command::Dial(addr, reply) => {
                let r = self.swarm.dial(addr.clone()).map_err(|e| P2pError::Dial {
                    addr: addr.to_string(),
                    message: e.to_string(),
                });
                let _ = reply.send(r);
            }
            Command::Shutdown => {}
        }
    }
}
