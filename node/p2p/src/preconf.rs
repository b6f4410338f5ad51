//! Forwarded pre-confirmations on the wire (`/aergo/<root-id-hex>/preconf/1`).
//!
//! A node that does not produce the imminent slot forwards a client's signed transaction to
//! the peer that does (found by the node key it proved, see [`crate::repo`]) and relays the
//! answer: the producer's signed pre-confirmation, or its refusal. One request carries one
//! `SignedTx::encode()` transaction of the root chain; it is size-, decode- and
//! chain-checked here (an oversized or undecodable one is refused and its sender
//! penalised), rate-limited per peer ([`crate::P2pConfig::per_peer_preconf_per_sec`]) and
//! capped in flight ([`crate::P2pConfig::max_preconf_in_flight`]). What passes goes to the
//! node's [`PreconfProvider`], and every request gets an answer: the provider's, or a
//! refusal once [`crate::P2pConfig::preconf_timeout`] passes without one. The receiving
//! node never forwards a forwarded request again.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A forwarded transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreconfRequest {
    /// `SignedTx::encode()` bytes.
    pub tx: serde_bytes::ByteBuf,
}

/// The producer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreconfResponse {
    /// `Preconfirmation::encode()` bytes: the signed promise, relayed unchanged.
    Promised(serde_bytes::ByteBuf),
    /// No promise.
    Refused {
        /// The JSON-RPC error code the producer would have answered a local client
        /// (0: refused by the network layer, before the node saw it).
        code: i64,
        /// Why (`data.reason`: `not_producer`, `timeout`, `rate_limited`, `busy`, …).
        reason: String,
        /// The producer's message.
        message: String,
        /// The producer's `data` as JSON text (empty: none).
        data: String,
    },
}

impl PreconfResponse {
    /// A refusal by the network layer.
    pub fn refused(reason: &str, message: impl Into<String>) -> Self {
        PreconfResponse::Refused {
            code: 0,
            reason: reason.to_string(),
            message: message.into(),
            data: String::new(),
        }
    }
}

/// Serves forwarded transactions: the node's admission and pre-execution path.
pub trait PreconfProvider: Send + Sync + 'static {
    /// Handles a forwarded transaction (size-, decode- and chain-checked) from `peer`, whose
    /// proven node key is `node_key`. Must answer on `reply` (with a penalty for the peer
    /// when the transaction is invalid); called on the network task, so it must not block.
    fn forwarded(
        &self,
        peer: libp2p::PeerId,
        node_key: Option<[u8; 32]>,
        tx: Vec<u8>,
        reply: oneshot::Sender<(PreconfResponse, Option<crate::Penalty>)>,
    );
}
