//! Forwarded pre-confirmations: a `send_tx` with `wait: "preconfirmed"` that reaches a node
//! which does not produce the imminent slot is forwarded over libp2p
//! (`/aergo/<root-id>/preconf/1`, `aergo_p2p::preconf`) to the producer that does, and the
//! producer's answer is relayed to the client unchanged.
//!
//! - **The relay** ([`relay`]) checks the transaction itself (garbage is refused here, never
//!   forwarded), picks the producer from the schedule ([`target`]: the next slot's, or the one
//!   after it in the last tenth of the current slot, when the next one stops pre-confirming),
//!   finds the connected peer that proved that producer's node key, and forwards. A promise
//!   comes back as the producer signed it; the relay checks it (signature, producer,
//!   transaction, chain) before relaying it, and penalises a peer whose answer is not one.
//!   No producer peer: the usual `not_producer` refusal, saying it is unreachable. Only the
//!   root chain's `main` branch forwards: a repository's or branch's send keeps its
//!   refusal, so pre-confirmations never cross ledgers.
//! - **The producer** ([`serve`], on a blocking thread) runs the forwarded transaction
//!   through exactly the path of a local pre-confirmed send (`rpc::preconf_begin_checked`,
//!   `rpc::preconf_wait`), with a deadline of two block intervals. A forwarded transaction
//!   that cannot be admitted yet because this node does not hold the current slot's block
//!   (its sender's previous transaction is promised in that block: a nonce gap here) waits
//!   in a bounded queue ([`MAX_QUEUED`], [`MAX_QUEUED_BYTES`]) until this node's pending
//!   block opens, then is admitted again; when the deadline passes it is refused with the
//!   reason. Every request gets an answer. A forwarded request that reaches a node which
//!   does not produce the imminent slot is refused (`not_producer`), never forwarded again.

use crate::node::Node;
use crate::rpc::{MResult, RpcFail};
use aergo_p2p::preconf::{PreconfProvider, PreconfResponse};
use aergo_p2p::{PeerId, Penalty};
use aergo_rpc::codes;
use aergo_rpc::types::{PreconfJson, PreconfirmedResult};
use aergo_types::preconf::Preconfirmation;
use aergo_types::{Address, PublicKey};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most forwarded requests a producer serves at once (the network layer refuses more).
pub const MAX_FORWARDED: usize = 1_024;
/// Most forwarded transactions queued until the pending block opens.
pub const MAX_QUEUED: u64 = 512;
/// Most bytes of forwarded transactions queued until the pending block opens.
pub const MAX_QUEUED_BYTES: u64 = 4 << 20;

/// How long a relay waits for the producer: its two block intervals and two seconds for the
/// network.
pub fn relay_timeout(node: &Node) -> Duration {
    Duration::from_millis(
        node.chain
            .engine()
            .block_interval_ms()
            .saturating_mul(2)
            .saturating_add(2_000),
    )
}

/// Answers forwarded requests from peers (see [`serve`]).
pub struct PreconfServe(pub Arc<Node>);

impl PreconfProvider for PreconfServe {
    fn forwarded(
        &self,
        _peer: PeerId,
        _node_key: Option<[u8; 32]>,
        tx: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<(PreconfResponse, Option<Penalty>)>,
    ) {
        let node = self.0.clone();
        // Called on the network task, inside its runtime.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || {
                let _ = reply.send(serve(&node, &tx));
            });
        } else {
            let _ = reply.send((
                PreconfResponse::refused("internal", "no runtime to serve the request"),
                None,
            ));
        }
    }
}

/// A refusal as the network answer: the RPC error a local client would get.
fn refused(f: RpcFail) -> PreconfResponse {
    let reason = f
        .data
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or("refused")
        .to_string();
    PreconfResponse::Refused {
        code: f.code,
        reason,
        message: f.message,
        data: f.data.map(|d| d.to_string()).unwrap_or_default(),
    }
}

/// A slot in the queue of forwarded transactions waiting for the pending block; released on
/// drop.
struct Queued<'a>(&'a Node, u64);

impl<'a> Queued<'a> {
    fn take(node: &'a Node, bytes: u64) -> Option<Self> {
        let (count, size) = &node.preconf.queued;
        if count.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        if size
            .fetch_add(bytes, Ordering::SeqCst)
            .saturating_add(bytes)
            > MAX_QUEUED_BYTES
        {
            count.fetch_sub(1, Ordering::SeqCst);
            size.fetch_sub(bytes, Ordering::SeqCst);
            return None;
        }
        Some(Self(node, bytes))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let (count, size) = &self.0.preconf.queued;
        count.fetch_sub(1, Ordering::SeqCst);
        size.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// Whether a failure is a nonce gap (the sender's previous transaction is not known here
/// yet).
fn is_gap(f: &RpcFail) -> bool {
    f.data
        .as_ref()
        .and_then(|d| d.get("reason"))
        .is_some_and(|r| r == "nonce_gap")
}

/// The producer's side: a forwarded transaction through the local pre-confirmed path, with a
/// deadline of two block intervals. Blocks the calling thread until the answer.
pub fn serve(node: &Node, bytes: &[u8]) -> (PreconfResponse, Option<Penalty>) {
    node.preconf.forwards_served.fetch_add(1, Ordering::Relaxed);
    let interval = node.chain.engine().block_interval_ms();
    let deadline = Instant::now() + Duration::from_millis(interval.saturating_mul(2));
    let tx = match node.check(bytes) {
        Ok(t) => t,
        Err(
            e @ (crate::node::AdmitError::Malformed(_)
            | crate::node::AdmitError::Signature
            | crate::node::AdmitError::Rule(_)),
        ) => return (refused(e.into()), Some(Penalty::InvalidTx)),
        Err(e) => return (refused(e.into()), None),
    };
    let mut queued = None;
    loop {
        let opened = node.preconf.opened_count();
        match crate::rpc::preconf_begin_checked(node, || Ok(tx.clone()), true, false) {
            Ok((hash, w)) => {
                drop(queued);
                return match crate::rpc::preconf_wait(node, hash, &w, deadline, bytes) {
                    Ok(p) => (
                        PreconfResponse::Promised(aergo_p2p::ByteBuf::from(p.encode())),
                        None,
                    ),
                    Err(f) => (refused(f), None),
                };
            }
            // This node produces the slot but does not hold the current slot's block yet, in
            // which the sender's previous transaction is promised: queue until it opens its
            // pending block on it.
            Err(f) if is_gap(&f) && node.preconf.pending.lock().is_none() => {
                if queued.is_none() {
                    queued = Queued::take(node, bytes.len() as u64);
                    if queued.is_none() {
                        return (
                            refused(RpcFail {
                                code: codes::PRECONF_UNAVAILABLE,
                                message: format!(
                                    "{MAX_QUEUED} forwarded transactions (or {MAX_QUEUED_BYTES} bytes) already wait for this producer's slot; retry shortly"
                                ),
                                data: Some(json!({"reason": "busy"})),
                            }),
                            None,
                        );
                    }
                }
                if !node.preconf.wait_opened(opened, deadline) {
                    let mut f = f;
                    f.message = format!(
                        "{} (the producer did not hold the block before its slot within {} ms)",
                        f.message,
                        interval.saturating_mul(2)
                    );
                    return (refused(f), None);
                }
            }
            Err(f) => return (refused(f), None),
        }
    }
}

/// The producer of the slot that pre-confirms now (see the module doc), by the schedule.
/// `prepare`: install the rounds' schedules first (not needed right after
/// `Chain::next_slot`).
pub fn target(node: &Node, now: u64, prepare: bool) -> Option<PublicKey> {
    use aergo_chain::engine::Engine;
    if prepare {
        // Installs the current and next rounds' schedules (DPoS).
        let _ = node.chain.next_slot(now, &node.key.public());
    }
    let pick = |slot_of: Option<u64>, start: &dyn Fn(u64) -> u64, interval: u64| {
        let s = slot_of?;
        let into = now.saturating_sub(start(s));
        // The next slot's producer pre-confirms until its slot starts; in the last tenth of
        // the current slot the one after it takes over.
        Some(if into.saturating_mul(10) >= interval.saturating_mul(9) {
            s.saturating_add(2)
        } else {
            s.saturating_add(1)
        })
    };
    match node.chain.engine() {
        Engine::Solo(_) => node
            .chain
            .genesis()
            .consensus
            .producer
            .and_then(|a| a.public_key()),
        Engine::Dpos(d) => {
            let p = d.core.params();
            let slot = pick(p.slot_of(now), &|s| p.slot_start(s), p.interval_ms)?;
            d.core.producer_of(slot)
        }
        Engine::Poa(e) => {
            let p = e.params();
            let slot = pick(p.slot_of(now), &|s| p.slot_start(s), p.interval_ms)?;
            p.producer_of(slot)
        }
    }
}

/// A transaction forwarded to a producer, its answer still to come ([`relay_begin`]).
pub struct Forwarding {
    answer: std::sync::mpsc::Receiver<Result<PreconfResponse, aergo_p2p::P2pError>>,
    hash: aergo_types::Hash,
    producer: PublicKey,
    addr: String,
    peer: PeerId,
    handle: aergo_p2p::P2pHandle,
    rt: tokio::runtime::Handle,
    until: Instant,
}

/// The relay's side of `send_tx` with `wait: "preconfirmed"` on a node that does not produce
/// the imminent slot: forwards to the producer and relays its answer. `refusal` is the
/// `not_producer` error this node would answer without forwarding.
pub fn relay(node: &Node, bytes: &[u8], refusal: RpcFail) -> MResult {
    relay_finish(node, relay_begin(node, bytes, refusal)?)
}

/// [`relay`]'s first half: checks the transaction, picks the producer and its peer, and
/// sends the request (a batch sends all of its forwards before it waits for any).
pub fn relay_begin(node: &Node, bytes: &[u8], refusal: RpcFail) -> Result<Forwarding, RpcFail> {
    let g = node.chain.genesis();
    if g.repo.is_some() || g.branch.is_some() {
        // Pre-confirmations never cross ledgers: only the root's main chain forwards.
        return Err(refusal);
    }
    let Some(handle) = node.net.p2p.lock().clone() else {
        return Err(refusal);
    };
    let tx = node.check(bytes)?;
    let now = crate::node::now_ms();
    let Some(producer) = target(node, now, true) else {
        return Err(refusal);
    };
    if producer == node.key.public() {
        // This node produces it but cannot pre-confirm now (syncing): never forwarded.
        return Err(refusal);
    }
    let addr = Address::from_public_key(&producer).encode();
    let Some(peer) = node.net.peer_keys.lock().get(&producer.0).copied() else {
        let mut data = refusal.data.clone().unwrap_or_else(|| json!({}));
        data["producer"] = json!(addr);
        data["unreachable"] = json!(true);
        return Err(RpcFail {
            code: refusal.code,
            message: format!(
                "this node ({}) does not produce the next slot: its producer is {addr}, which is unreachable (not a connected peer of this node, so the transaction cannot be forwarded to it); send the transaction to that producer's RPC for a pre-confirmation, or with wait \"included\"",
                node.address().encode()
            ),
            data: Some(data),
        });
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Err(refusal);
    };
    let (done, answer) = std::sync::mpsc::sync_channel(1);
    let h = handle.clone();
    let b = bytes.to_vec();
    rt.spawn(async move {
        let _ = done.send(h.forward_preconf(peer, b).await);
    });
    Ok(Forwarding {
        answer,
        hash: tx.hash,
        producer,
        addr,
        peer,
        handle,
        rt,
        until: Instant::now() + relay_timeout(node),
    })
}

/// [`relay`]'s second half: waits for the producer's answer, checks a promise, and returns
/// what the client gets.
pub fn relay_finish(node: &Node, f: Forwarding) -> MResult {
    let r = relay_answer(node, f);
    let (promised, not) = &node.preconf.forwarded;
    match &r {
        Ok(_) => promised.fetch_add(1, Ordering::Relaxed),
        Err(_) => not.fetch_add(1, Ordering::Relaxed),
    };
    r
}

/// [`relay_finish`] before it is counted.
fn relay_answer(node: &Node, f: Forwarding) -> MResult {
    let Forwarding {
        answer,
        hash,
        producer,
        addr,
        peer,
        handle,
        rt,
        until,
    } = f;
    let failed = |why: String| {
        RpcFail {
        code: codes::PRECONF_UNAVAILABLE,
        message: format!(
            "this node forwarded transaction {hash} to the slot's producer {addr}, which gave no answer: {why}; it may still be pre-confirmed and included: wait for its receipt, or send it again"
        ),
        data: Some(json!({"reason": "forward_failed", "producer": addr, "hash": hash})),
    }
    };
    let penalize = |why: &str| {
        tracing::warn!(%peer, producer = %addr, reason = why, "bad answer to a forwarded pre-confirmation");
        let h = handle.clone();
        rt.spawn(async move { h.penalize(peer, Penalty::BadResponse).await });
    };
    match answer.recv_timeout(until.saturating_duration_since(Instant::now())) {
        Ok(Ok(PreconfResponse::Promised(b))) => {
            let p = match Preconfirmation::decode(&b) {
                Ok(p) => p,
                Err(e) => {
                    penalize("undecodable");
                    return Err(failed(format!("its answer is not a pre-confirmation: {e}")));
                }
            };
            let bad = if p.tx_hash != hash {
                Some("it promises another transaction")
            } else if p.producer != producer {
                Some("it is signed by another producer")
            } else if p.chain_id != node.chain.chain_id() {
                Some("it is for another chain")
            } else if p.verify().is_err() {
                Some("its signature is invalid")
            } else {
                None
            };
            if let Some(why) = bad {
                penalize(why);
                return Err(failed(format!("its pre-confirmation is invalid: {why}")));
            }
            crate::rpc::ok(PreconfirmedResult {
                hash,
                preconfirmation: PreconfJson::of(&p),
            })
        }
        Ok(Ok(PreconfResponse::Refused {
            code,
            reason,
            message,
            data,
        })) => {
            let mut d: Value = serde_json::from_str(&data).unwrap_or_else(|_| json!({}));
            if !d.is_object() {
                d = json!({});
            }
            if d.get("reason").is_none() {
                d["reason"] = json!(reason);
            }
            d["forwarded_to"] = json!(addr);
            let code = if code == 0 {
                codes::PRECONF_UNAVAILABLE
            } else {
                code
            };
            Err(RpcFail {
                code,
                message,
                data: Some(d),
            })
        }
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!(
            "no answer within {} ms",
            relay_timeout(node).as_millis()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn node(dir: &std::path::Path) -> Node {
        crate::rpc::tests::node(dir)
    }

    #[test]
    fn the_queue_is_bounded_by_count_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let held: Vec<Queued> = (0..MAX_QUEUED)
            .map(|_| Queued::take(&n, 100).expect("room"))
            .collect();
        assert!(Queued::take(&n, 100).is_none(), "count limit");
        drop(held);
        assert_eq!(n.preconf.queued.0.load(Ordering::SeqCst), 0);
        assert_eq!(n.preconf.queued.1.load(Ordering::SeqCst), 0);
        let big = Queued::take(&n, MAX_QUEUED_BYTES - 10).expect("room");
        assert!(Queued::take(&n, 11).is_none(), "byte limit");
        let small = Queued::take(&n, 10).expect("exactly full");
        drop((big, small));
        assert_eq!(n.preconf.queued.1.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn bad_forwarded_bytes_are_refused_and_penalised_and_nothing_is_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let (r, p) = serve(&n, &[0xee; 40]);
        assert_eq!(p, Some(Penalty::InvalidTx));
        let PreconfResponse::Refused { reason, code, .. } = r else {
            panic!("garbage promised");
        };
        assert_eq!((reason.as_str(), code), ("malformed", codes::TX_REJECTED));
        // A valid transaction on a node that does not pre-confirm (the promise log never
        // started): refused `off`, no penalty, the mempool untouched.
        let k = aergo_types::Keypair::from_seed(&[3; 32]);
        let tx = aergo_types::Tx {
            kind: aergo_types::TxKind::Transfer,
            nonce: 0,
            from: k.public(),
            to: Some(Address::from_public_key(&k.public())),
            amount: 1,
            payload: Vec::new(),
            gas_limit: 1000,
            gas_price: 1_000_000_000,
            chain_id: n.chain.chain_id(),
        }
        .sign(&k);
        let (r, p) = serve(&n, &tx.encode());
        assert_eq!(p, None);
        let PreconfResponse::Refused { reason, .. } = r else {
            panic!("promised with pre-confirmation off");
        };
        assert_eq!(reason, "off");
        assert_eq!(n.mempool.lock().len(), 0);
    }

    #[test]
    fn without_a_network_the_refusal_stands() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let refusal = RpcFail {
            code: codes::PRECONF_UNAVAILABLE,
            message: "its producer is X".into(),
            data: Some(json!({"reason": "not_producer", "producer": "X"})),
        };
        let Err(f) = relay(&n, &[1, 2, 3], refusal) else {
            panic!("relayed without a network");
        };
        assert_eq!(f.code, codes::PRECONF_UNAVAILABLE);
        assert_eq!(
            f.data,
            Some(json!({"reason": "not_producer", "producer": "X"}))
        );
    }
}
