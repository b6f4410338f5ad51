//! Real libp2p nodes on 127.0.0.1: gossip, block-range sync, status, bans, garbage, limits.
//! Every wait polls with a deadline; nothing sleeps to synchronise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aergo_p2p::{
    BlockProvider, NetEvent, P2p, P2pConfig, P2pError, P2pHandle, PeerId, Penalty, Topic,
};
use aergo_types::{Block, Hash, Header, Keypair, Signature, Tx, TxKind};
use tokio::sync::mpsc;

const CHAIN: [u8; 32] = [7; 32];
const DEADLINE: Duration = Duration::from_secs(20);

fn cfg(seed: u8) -> P2pConfig {
    let mut c = P2pConfig::new(CHAIN, [seed; 32], "/ip4/127.0.0.1/tcp/0".parse().unwrap());
    c.maintenance_interval = Duration::from_millis(200);
    c
}

async fn start(c: P2pConfig) -> (P2pHandle, mpsc::Receiver<NetEvent>) {
    P2p::start(c, None).await.unwrap()
}

fn tx_bytes(nonce: u64, chain: [u8; 32]) -> Vec<u8> {
    let k = Keypair::from_seed(&[9; 32]);
    Tx {
        kind: TxKind::Transfer,
        nonce,
        from: k.public(),
        to: None,
        amount: 1,
        payload: vec![],
        gas_limit: 100_000,
        gas_price: 1,
        chain_id: Hash(chain),
    }
    .sign(&k)
    .encode()
}

fn block(height: u64) -> Block {
    Block {
        header: Header {
            chain_id: Hash(CHAIN),
            height,
            parent: Hash::ZERO,
            timestamp_ms: 1000 + height,
            producer: Keypair::from_seed(&[3; 32]).public(),
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus: height.to_be_bytes().to_vec(),
            ext: aergo_types::block_ext::HeaderExt::default(),
            signature: Signature::default(),
        },
        txs: vec![],
        body_ext: Default::default(),
    }
}

/// Polls `f` until it returns `Some`, failing the test at the deadline.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `h` sees every peer in `want` connected with both gossip topics.
async fn gossip_ready(h: &P2pHandle, want: &[PeerId]) {
    until("gossip mesh", move || async move {
        let peers = h.peers().await.ok()?;
        want.iter()
            .all(|w| peers.iter().any(|p| p.id == *w && p.gossip))
            .then_some(())
    })
    .await
}

/// The next gossip event (skipping peer events), with a deadline.
async fn next_gossip(rx: &mut mpsc::Receiver<NetEvent>) -> NetEvent {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(ev @ (NetEvent::Tx { .. } | NetEvent::Block { .. }))) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("timed out waiting for a gossip event"),
        }
    }
}

fn bootnode(h: &P2pHandle) -> Vec<aergo_p2p::Multiaddr> {
    h.listen_addrs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_every_node_exactly_once() {
    let (a, mut a_rx) = start(cfg(1)).await;
    let mut cb = cfg(2);
    cb.bootnodes = bootnode(&a);
    let (b, mut b_rx) = start(cb).await;
    let mut cc = cfg(3);
    cc.bootnodes = bootnode(&b);
    let (c, mut c_rx) = start(cc).await;
    // A line: A — B — C. C hears A only through B's forwarding.
    gossip_ready(&a, &[b.local_peer_id()]).await;
    gossip_ready(&b, &[a.local_peer_id(), c.local_peer_id()]).await;
    gossip_ready(&c, &[b.local_peer_id()]).await;

    let tx1 = tx_bytes(1, CHAIN);
    a.publish_tx(tx1.clone()).await.unwrap();
    for (rx, from) in [
        (&mut b_rx, a.local_peer_id()),
        (&mut c_rx, b.local_peer_id()),
    ] {
        assert_eq!(
            next_gossip(rx).await,
            NetEvent::Tx {
                peer: from,
                bytes: tx1.clone()
            }
        );
    }
    // Publishing the same bytes again (from anywhere) is accepted but delivers nothing new.
    a.publish_tx(tx1.clone()).await.unwrap();
    b.publish_tx(tx1.clone()).await.unwrap();

    let blk = block(5).encode();
    c.publish_block(blk.clone()).await.unwrap();
    // The next gossip event everybody sees is the block: the duplicate tx never came.
    for (rx, from) in [
        (&mut b_rx, c.local_peer_id()),
        (&mut a_rx, b.local_peer_id()),
    ] {
        assert_eq!(
            next_gossip(rx).await,
            NetEvent::Block {
                peer: from,
                bytes: blk.clone(),
                gossip_id: None,
            }
        );
    }
    let tx2 = tx_bytes(2, CHAIN);
    b.publish_tx(tx2.clone()).await.unwrap();
    for rx in [&mut a_rx, &mut c_rx] {
        match next_gossip(rx).await {
            NetEvent::Tx { bytes, .. } => assert_eq!(bytes, tx2),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The block gossiped by C raised C's best height as B sees it.
    let peers = b.peers().await.unwrap();
    let pc = peers.iter().find(|p| p.id == c.local_peer_id()).unwrap();
    assert!(pc.best_height.unwrap_or(0) >= 5);
    // The publisher refuses to gossip what it would itself drop.
    assert!(matches!(
        a.publish_tx(b"junk".to_vec()).await,
        Err(P2pError::Publish(_))
    ));
    assert!(a.publish_tx(tx_bytes(3, [8; 32])).await.is_err());
    let sa = a.stats().await.unwrap();
    assert_eq!(sa.delivered, 2, "{sa:?}");
    assert_eq!(sa.dropped, 0);
    for h in [a, b, c] {
        h.shutdown().await;
    }
}

struct Blocks {
    tip: u64,
    wrong_heights: bool,
}

impl BlockProvider for Blocks {
    fn blocks(&self, from: u64, to: u64, _max_bytes: usize) -> Vec<Vec<u8>> {
        (from..=to.min(self.tip))
            .map(|h| block(if self.wrong_heights { h + 1 } else { h }).encode())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_range_and_status_requests() {
    let provider: Arc<dyn BlockProvider> = Arc::new(Blocks {
        tip: 50,
        wrong_heights: false,
    });
    let (a, _a_rx) = P2p::start(cfg(11), Some(provider)).await.unwrap();
    a.set_status(50, [5; 32]).await.unwrap();
    let mut cb = cfg(12);
    cb.bootnodes = bootnode(&a);
    let (b, mut b_rx) = start(cb).await;
    let pa = a.local_peer_id();

    // On connect B asks A's status by itself and reports it.
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(end, b_rx.recv()).await.unwrap() {
            Some(NetEvent::PeerStatus { peer, status }) => {
                assert_eq!(peer, pa);
                assert_eq!(
                    (status.height, status.hash, status.chain_id),
                    (50, [5; 32], CHAIN)
                );
                break;
            }
            Some(_) => continue,
            None => panic!("closed"),
        }
    }
    let s = b.request_status(pa).await.unwrap();
    assert_eq!(s.height, 50);
    let peers = b.peers().await.unwrap();
    assert_eq!(peers[0].best_height, Some(50));

    let got = b.request_blocks(pa, 5, 9).await.unwrap();
    let heights: Vec<u64> = got
        .iter()
        .map(|b| Block::decode(b).unwrap().header.height)
        .collect();
    assert_eq!(heights, vec![5, 6, 7, 8, 9]);
    // Past the tip: a shorter answer.
    assert_eq!(b.request_blocks(pa, 45, 60).await.unwrap().len(), 6);
    // Larger than the per-request maximum: clamped by the asking side.
    assert_eq!(b.request_blocks(pa, 1, 10_000).await.unwrap().len(), 50);

    // A peer answering with the wrong blocks is penalised.
    let bad: Arc<dyn BlockProvider> = Arc::new(Blocks {
        tip: 50,
        wrong_heights: true,
    });
    let (c, _c_rx) = P2p::start(cfg(13), Some(bad)).await.unwrap();
    let (a, b, c) = (&a, &b, &c);
    b.dial(c.listen_addrs()[0].clone()).await.unwrap();
    let pc = c.local_peer_id();
    until("B connected to C", move || async move {
        b.peers()
            .await
            .ok()?
            .iter()
            .any(|p| p.id == pc)
            .then_some(())
    })
    .await;
    assert!(matches!(
        b.request_blocks(pc, 1, 3).await,
        Err(P2pError::BadResponse { .. })
    ));
    let score = b
        .peers()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.id == pc)
        .unwrap()
        .score;
    assert!(score <= -35, "score {score}");
    // A node without a provider refuses range requests.
    assert!(matches!(
        c.request_blocks(b.local_peer_id(), 1, 3).await,
        Err(P2pError::Request { .. })
    ));
    for h in [a, b, c] {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalized_peer_is_banned_until_the_ban_expires() {
    let mut ca = cfg(21);
    ca.ban_duration = Duration::from_secs(2);
    let (a, mut a_rx) = start(ca).await;
    let mut cb = cfg(22);
    cb.bootnodes = bootnode(&a);
    let (b, _b_rx) = start(cb).await;
    let pb = b.local_peer_id();
    let (a, b) = (&a, &b);
    until("A sees B", move || async move {
        a.peers()
            .await
            .ok()?
            .iter()
            .any(|p| p.id == pb)
            .then_some(())
    })
    .await;

    a.penalize(pb, Penalty::InvalidBlock).await;
    assert_eq!(a.peers().await.unwrap()[0].score, -50);
    a.penalize(pb, Penalty::InvalidBlock).await;
    let end = tokio::time::Instant::now() + DEADLINE;
    let banned_at = loop {
        match tokio::time::timeout_at(end, a_rx.recv()).await.unwrap() {
            Some(NetEvent::PeerBanned { peer, reason }) => {
                assert_eq!((peer, reason), (pb, Penalty::InvalidBlock));
                break Instant::now();
            }
            Some(_) => continue,
            None => panic!("closed"),
        }
    };
    until("B disconnected", move || async move {
        (!a.peers().await.ok()?.iter().any(|p| p.id == pb)).then_some(())
    })
    .await;
    // B keeps redialing its bootnode; A refuses while the ban lasts.
    until("a refused reconnection", move || async move {
        let s = a.stats().await.ok()?;
        (s.denied >= 1).then_some(())
    })
    .await;
    assert!(banned_at.elapsed() < Duration::from_secs(2));
    let back = until("B back after the ban", move || async move {
        a.peers()
            .await
            .ok()?
            .iter()
            .any(|p| p.id == pb)
            .then(Instant::now)
    })
    .await;
    let waited = back.duration_since(banned_at);
    assert!(
        waited >= Duration::from_millis(1900),
        "back after {waited:?}"
    );
    assert_eq!(a.stats().await.unwrap().bans, 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_gossip_is_dropped_and_penalized() {
    let mut ca = cfg(31);
    ca.ban_threshold = -90;
    let (a, mut a_rx) = start(ca).await;
    let mut cb = cfg(32);
    cb.bootnodes = bootnode(&a);
    let (b, _b_rx) = start(cb).await;
    let pb = b.local_peer_id();
    let (a, b) = (&a, &b);
    gossip_ready(a, &[pb]).await;
    gossip_ready(b, &[a.local_peer_id()]).await;

    // Garbage on the tx topic, then a transaction of another chain.
    b.publish_unchecked(Topic::Txs, b"not a transaction".to_vec())
        .await
        .unwrap();
    until("garbage dropped", move || async move {
        (a.stats().await.ok()?.dropped >= 1).then_some(())
    })
    .await;
    let score = a.peers().await.unwrap()[0].score;
    assert!((-40..=-35).contains(&score), "score {score}");
    // A valid transaction still goes through, and is the first gossip event A sees.
    let good = tx_bytes(7, CHAIN);
    b.publish_tx(good.clone()).await.unwrap();
    assert_eq!(
        next_gossip(&mut a_rx).await,
        NetEvent::Tx {
            peer: pb,
            bytes: good
        }
    );
    // Oversized: dropped, and the score crosses the threshold: banned and disconnected.
    b.publish_unchecked(Topic::Txs, vec![1u8; 300 * 1024])
        .await
        .unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(end, a_rx.recv()).await.unwrap() {
            Some(NetEvent::PeerBanned { peer, reason }) => {
                assert_eq!((peer, reason), (pb, Penalty::Oversized));
                break;
            }
            Some(NetEvent::Tx { .. } | NetEvent::Block { .. }) => panic!("bad gossip delivered"),
            Some(_) => continue,
            None => panic!("closed"),
        }
    }
    until("B disconnected", move || async move {
        a.peers().await.ok()?.is_empty().then_some(())
    })
    .await;
    let s = a.stats().await.unwrap();
    assert_eq!((s.delivered, s.dropped, s.bans), (1, 2, 1), "{s:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_limit_and_rate_limit() {
    let mut ca = cfg(41);
    ca.max_peers = 1;
    ca.per_peer_msgs_per_sec = 1;
    let (a, mut a_rx) = start(ca).await;
    let mut cb = cfg(42);
    cb.bootnodes = bootnode(&a);
    let (b, _b_rx) = start(cb).await;
    gossip_ready(&a, &[b.local_peer_id()]).await;
    gossip_ready(&b, &[a.local_peer_id()]).await;
    let mut cc = cfg(43);
    cc.bootnodes = bootnode(&a);
    let (c, _c_rx) = start(cc).await;
    let (a, b, c) = (&a, &b, &c);
    until("C refused", move || async move {
        (a.stats().await.ok()?.denied >= 1).then_some(())
    })
    .await;
    let peers = a.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, b.local_peer_id());

    // Rate 1/s with a burst of 2: of ten quick transactions, most are dropped.
    let t0 = Instant::now();
    for n in 0..10 {
        b.publish_tx(tx_bytes(100 + n, CHAIN)).await.unwrap();
    }
    assert!(matches!(next_gossip(&mut a_rx).await, NetEvent::Tx { .. }));
    until("rate-limited drops", move || async move {
        (a.stats().await.ok()?.dropped >= 5).then_some(())
    })
    .await;
    let s = a.stats().await.unwrap();
    let allowed = 2 + t0.elapsed().as_secs() + 1;
    assert!(s.delivered <= allowed, "{s:?}");
    for h in [a, b, c] {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sync_delivers_in_order_despite_short_and_bad_peers() {
    use aergo_p2p::sync::{fetch_range, SyncOptions};
    let mut nodes = Vec::new();
    for (seed, tip, wrong) in [(51u8, 300u64, false), (52, 120, false), (53, 300, true)] {
        let provider: Arc<dyn BlockProvider> = Arc::new(Blocks {
            tip,
            wrong_heights: wrong,
        });
        nodes.push(P2p::start(cfg(seed), Some(provider)).await.unwrap().0);
    }
    let mut cd = cfg(54);
    cd.bootnodes = nodes.iter().flat_map(|n| n.listen_addrs()).collect();
    let (d, _d_rx) = start(cd).await;
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.local_peer_id()).collect();
    let dr = &d;
    let want = ids.clone();
    until("D connected to all", move || {
        let want = want.clone();
        async move {
            let peers = dr.peers().await.ok()?;
            want.iter()
                .all(|w| peers.iter().any(|p| p.id == *w))
                .then_some(())
        }
    })
    .await;
    // Everybody claims 300; B really has 120 and C answers with wrong heights.
    let claims: Vec<(PeerId, u64)> = ids.iter().map(|p| (*p, 300)).collect();
    let (tx, mut rx) = mpsc::channel::<(u64, Vec<Vec<u8>>)>(4);
    let collector = tokio::spawn(async move {
        let mut heights = Vec::new();
        while let Some((first, blocks)) = rx.recv().await {
            for (i, b) in blocks.iter().enumerate() {
                let h = Block::decode(b).unwrap().header.height;
                assert_eq!(h, first + i as u64);
                heights.push(h);
            }
        }
        heights
    });
    let opts = SyncOptions {
        chunk: 32,
        parallel: 4,
    };
    let n = fetch_range(&d, 1, 300, &claims, opts, tx).await.unwrap();
    assert_eq!(n, 300);
    let heights = collector.await.unwrap();
    assert_eq!(heights, (1..=300).collect::<Vec<u64>>());
    // Only bad answers cost score: C was penalised, A and B were not.
    let peers = d.peers().await.unwrap();
    for p in &peers {
        if p.id == ids[0] || p.id == ids[1] {
            assert_eq!(p.score, 0, "{p:?}");
        } else {
            assert!(p.score < 0, "{p:?}");
        }
    }
    // Nobody has block 301.
    let (tx, _rx) = mpsc::channel(4);
    let only_b = [(ids[1], 120)];
    assert!(fetch_range(&d, 301, 310, &only_b, opts, tx).await.is_err());
    d.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// Each side of a connection learns the other's node key from a signed challenge, and
/// lists it with the peer; a repository push reaches the other side with that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_prove_their_node_keys_and_pushes_carry_them() {
    use aergo_p2p::repo::{RepoBody, RepoResponse};
    let (a, mut a_rx) = start(cfg(61)).await;
    let mut cb = cfg(62);
    cb.bootnodes = bootnode(&a);
    let (b, _b_rx) = start(cb).await;
    let b_key = Keypair::from_seed(&[62; 32]).public().0;
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(end, a_rx.recv()).await {
            Ok(Some(NetEvent::PeerIdentified { peer, node_key })) => {
                assert_eq!(peer, b.local_peer_id());
                assert_eq!(node_key, b_key, "A learned another key than B's node key");
                break;
            }
            Ok(Some(_)) => continue,
            other => panic!("no identity proof from B: {other:?}"),
        }
    }
    let peers = a.peers().await.unwrap();
    assert_eq!(peers[0].node_key, Some(b_key));
    // B pushes a repository transaction to A: A hands it over with B's proven key.
    let repo_chain = [8u8; 32];
    let bytes = tx_bytes(1, repo_chain);
    let r = b
        .repo_request(
            a.local_peer_id(),
            repo_chain,
            RepoBody::Push {
                block: false,
                bytes: aergo_p2p::ByteBuf::from(bytes.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(r, RepoResponse::Ack);
    loop {
        match tokio::time::timeout_at(end, a_rx.recv()).await {
            Ok(Some(NetEvent::Repo {
                node_key,
                chain,
                bytes: got,
                ..
            })) => {
                assert_eq!((node_key, chain), (Some(b_key), repo_chain));
                assert_eq!(got, bytes);
                break;
            }
            Ok(Some(_)) => continue,
            other => panic!("no repository push: {other:?}"),
        }
    }
    // A transaction of another chain than the one named is refused, not handed over.
    let r = b
        .repo_request(
            a.local_peer_id(),
            repo_chain,
            RepoBody::Push {
                block: false,
                bytes: aergo_p2p::ByteBuf::from(tx_bytes(2, CHAIN)),
            },
        )
        .await
        .unwrap();
    assert!(matches!(r, RepoResponse::Refused(_)), "{r:?}");
    // A has no repositories to answer from: questions are refused.
    let r = b
        .repo_request(a.local_peer_id(), repo_chain, RepoBody::Status)
        .await
        .unwrap();
    assert!(matches!(r, RepoResponse::Refused(_)), "{r:?}");
    for h in [a, b] {
        h.shutdown().await;
    }
}

/// A node's pre-confirmation side for the forwarding test: answers every well-formed
/// forward with a fixed promise and counts what reached it.
struct EchoPreconf(Arc<std::sync::atomic::AtomicUsize>);

impl aergo_p2p::preconf::PreconfProvider for EchoPreconf {
    fn forwarded(
        &self,
        _peer: PeerId,
        node_key: Option<[u8; 32]>,
        tx: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<(aergo_p2p::preconf::PreconfResponse, Option<Penalty>)>,
    ) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(
            node_key.is_some(),
            "the forwarding peer proved its key first"
        );
        let mut promise = b"promise:".to_vec();
        promise.extend_from_slice(&tx[..8]);
        let _ = reply.send((
            aergo_p2p::preconf::PreconfResponse::Promised(aergo_p2p::ByteBuf::from(promise)),
            None,
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_preconfirmations_are_answered_and_garbage_is_penalized() {
    use aergo_p2p::preconf::PreconfResponse;
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut ca = cfg(61);
    ca.per_peer_preconf_per_sec = 5;
    let (a, _a_rx) = P2p::start_full(ca, None, None, Some(Arc::new(EchoPreconf(served.clone()))))
        .await
        .unwrap();
    let mut cb = cfg(62);
    cb.bootnodes = bootnode(&a);
    let (b, _b_rx) = start(cb).await;
    let ap = a.local_peer_id();
    let bp = b.local_peer_id();
    // Forwarding waits for the identity proof (the provider is told who forwards).
    until("B's node key proven to A", || {
        let a = a.clone();
        async move {
            a.peers()
                .await
                .ok()?
                .iter()
                .any(|p| p.id == bp && p.node_key.is_some())
                .then_some(())
        }
    })
    .await;

    // A well-formed transaction reaches the provider and its answer comes back unchanged.
    let tx = tx_bytes(0, CHAIN);
    let mut want = b"promise:".to_vec();
    want.extend_from_slice(&tx[..8]);
    let r = b.forward_preconf(ap, tx.clone()).await.unwrap();
    assert_eq!(r, PreconfResponse::Promised(aergo_p2p::ByteBuf::from(want)));
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Another chain's transaction, undecodable bytes and an oversized one are refused by the
    // network layer (the provider never sees them) and cost B score.
    let reason = |r: PreconfResponse| match r {
        PreconfResponse::Refused { reason, code, .. } => {
            assert_eq!(code, 0, "refused by the network layer");
            reason
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    let other_chain = tx_bytes(1, [8; 32]);
    assert_eq!(
        reason(b.forward_preconf(ap, other_chain).await.unwrap()),
        "malformed"
    );
    assert_eq!(
        reason(b.forward_preconf(ap, vec![0xff; 100]).await.unwrap()),
        "malformed"
    );
    let score = a
        .peers()
        .await
        .unwrap()
        .iter()
        .find(|p| p.id == bp)
        .map(|p| p.score)
        .expect("B still connected");
    assert!(score <= -70, "B penalised twice for garbage: score {score}");
    // Oversized on top: past the ban threshold, so the ban may close the connection before
    // the refusal is read.
    let big = vec![0u8; aergo_types::MAX_TX_SIZE + 1];
    match b.forward_preconf(ap, big).await {
        Ok(r) => assert_eq!(reason(r), "oversized"),
        Err(e) => assert!(e.to_string().contains("closed"), "{e}"),
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    let st = a.stats().await.unwrap();
    assert_eq!(st.preconf_requests, 4);
    assert_eq!(st.preconf_refused, 3);
    until("B banned by A", || {
        let a = a.clone();
        async move { a.stats().await.ok().filter(|s| s.bans >= 1).map(|_| ()) }
    })
    .await;

    // Far beyond the codec's limit: A stops reading at the limit and resets the stream (the
    // request never reaches the service, so nothing is spent on it), C gets an error, and A
    // goes on serving C.
    let mut cc = cfg(65);
    cc.bootnodes = bootnode(&a);
    let (c, _c_rx) = start(cc).await;
    let cp = c.local_peer_id();
    until("C connected to A", || {
        let a = a.clone();
        async move {
            a.peers()
                .await
                .ok()?
                .iter()
                .any(|p| p.id == cp)
                .then_some(())
        }
    })
    .await;
    let huge = vec![0u8; aergo_types::MAX_TX_SIZE * 3];
    assert!(c.forward_preconf(ap, huge).await.is_err());
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A still serves a well-formed forward from C.
    assert!(matches!(
        c.forward_preconf(ap, tx_bytes(2, CHAIN)).await.unwrap(),
        PreconfResponse::Promised(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_preconfirmations_are_rate_limited_per_peer() {
    use aergo_p2p::preconf::PreconfResponse;
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut ca = cfg(63);
    ca.per_peer_preconf_per_sec = 2;
    let (a, _a_rx) = P2p::start_full(ca, None, None, Some(Arc::new(EchoPreconf(served.clone()))))
        .await
        .unwrap();
    let mut cb = cfg(64);
    cb.bootnodes = bootnode(&a);
    let (b, _b_rx) = start(cb).await;
    let ap = a.local_peer_id();
    let bp = b.local_peer_id();
    until("B's node key proven to A", || {
        let a = a.clone();
        async move {
            a.peers()
                .await
                .ok()?
                .iter()
                .any(|p| p.id == bp && p.node_key.is_some())
                .then_some(())
        }
    })
    .await;
    // Burst 4 (twice the rate): of 10 back-to-back requests some are refused `rate_limited`.
    let mut limited = 0;
    for n in 0..10 {
        match b.forward_preconf(ap, tx_bytes(n, CHAIN)).await.unwrap() {
            PreconfResponse::Promised(_) => {}
            PreconfResponse::Refused { reason, .. } => {
                assert_eq!(reason, "rate_limited");
                limited += 1;
            }
        }
    }
    assert!(limited >= 4, "{limited} of 10 refused");
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        10 - limited
    );
}
