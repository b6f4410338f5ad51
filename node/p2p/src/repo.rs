//! Repositories on the wire: node identity proofs and the repository protocol.
//!
//! - **Identity** (`/aergo/<root-id-hex>/id/1`): on every new connection each side sends a
//!   random 32-byte challenge; the other answers with its node public key and an ed25519
//!   signature by that node key over [`id_message`] — a domain tag, the root chain id, the
//!   challenge, the prover's and the verifier's peer ids. Binding both peer ids (which noise
//!   authenticated) means a proof is useless on any other connection, and the fresh
//!   challenge means it cannot be replayed on this one later. The signed message is longer
//!   than 32 bytes, so it can never be mistaken for a block or transaction signature (those
//!   sign 32-byte hashes). Until a peer proved a key, it has none: it is served like an
//!   anonymous client.
//! - **Repository protocol** (`/aergo/<root-id-hex>/repo/1`): every request names a chain
//!   (a repository's ledger or directory id). `Status`, `Blocks` and `Member` are answered by
//!   the node's [`RepoProvider`], which decides from the requester's proven node key whether
//!   it may read that chain (private repositories: only node keys registered in the
//!   repository's directory). `Push` carries a block or transaction to a member; it is
//!   size-, decode- and chain-checked here and handed to the node as
//!   [`crate::NetEvent::Repo`] with the sender's proven key, and the node decides whether to
//!   take it. Private repositories use only this protocol, never gossipsub: a gossip topic
//!   reaches whoever subscribes.

use serde::{Deserialize, Serialize};

/// A challenge sent on connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRequest {
    /// 32 random bytes.
    pub nonce: serde_bytes::ByteBuf,
}

/// The answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdResponse {
    /// The node key and its signature over [`id_message`].
    Proof {
        /// The node's ed25519 public key.
        node_key: serde_bytes::ByteBuf,
        /// The signature (64 bytes).
        signature: serde_bytes::ByteBuf,
    },
    /// Refused (rate limit).
    Refused(String),
}

/// The message a node key signs to prove it runs behind `prover` (to `verifier`).
pub fn id_message(
    root_chain: &[u8; 32],
    nonce: &[u8],
    prover: &libp2p::PeerId,
    verifier: &libp2p::PeerId,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(160);
    m.extend_from_slice(b"aergo-node-id-v1");
    m.extend_from_slice(root_chain);
    m.extend_from_slice(nonce);
    let p = prover.to_bytes();
    let v = verifier.to_bytes();
    for part in [&p, &v] {
        m.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
        m.extend_from_slice(part);
    }
    m
}

/// What a repository request asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepoBody {
    /// The chain's best block.
    Status,
    /// Blocks at heights `from..=to`.
    Blocks {
        /// First height.
        from: u64,
        /// Last height.
        to: u64,
    },
    /// Whether the requester's proven node key is one of the repository's nodes.
    Member,
    /// A block (`Block::encode()`) or transaction (`SignedTx::encode()`) for a member.
    Push {
        /// `true` for a block.
        block: bool,
        /// The bytes.
        bytes: serde_bytes::ByteBuf,
    },
}

/// A request about one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRequest {
    /// The chain (ledger or directory id).
    pub chain: serde_bytes::ByteBuf,
    /// What is asked.
    pub body: RepoBody,
}

/// The answer to a [`RepoRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepoResponse {
    /// The chain's best block.
    Status(crate::PeerStatus),
    /// Encoded blocks, ascending from the requested `from`.
    Blocks(Vec<serde_bytes::ByteBuf>),
    /// Whether the requester is one of the repository's nodes.
    Member(bool),
    /// A push was taken for checking.
    Ack,
    /// Refused, with the reason (not hosted, not a member, rate limit, bad range).
    Refused(String),
}

/// Answers repository requests from the node's hosted repositories. Called on a blocking
/// thread.
pub trait RepoProvider: Send + Sync + 'static {
    /// Answers `body` about `chain` for a peer whose proven node key is `node_key` (`None`:
    /// it proved none). Blocks stop early at the tip, at `max_blocks` or once `max_bytes`
    /// would be exceeded. Never called for [`RepoBody::Push`].
    fn serve(
        &self,
        chain: &[u8; 32],
        node_key: Option<&[u8; 32]>,
        body: &RepoBody,
        max_blocks: u64,
        max_bytes: usize,
    ) -> RepoResponse;
}
