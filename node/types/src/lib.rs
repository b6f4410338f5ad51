//! AERGO chain primitives shared by the node, the CLI and the dashboard.
//!
//! Nothing here touches storage or the network: amounts ([`amount`]), hashes ([`hash`]),
//! ed25519 keys and consensus-critical signature verification ([`crypto`]), pre-confirmations
//! ([`preconf`]), addresses
//! ([`address`]), transactions ([`tx`]), repositories ([`repo`]), blocks and receipts ([`block`]), the genesis file
//! ([`genesis`]), the deterministic binary codec ([`codec`]) and encrypted wallet keystores
//! ([`keystore`]); every size and value limit, with the relations between them checked at
//! compile time, is in [`limits`].

pub mod address;
pub mod amount;
pub mod block;
pub mod block_ext;
pub mod branch;
pub mod codec;
pub mod crypto;
pub mod evidence;
pub mod genesis;
pub mod hash;
pub mod keystore;
pub mod limits;
pub mod preconf;
pub mod repo;
pub mod tx;

pub use address::Address;
pub use amount::Aer;
pub use block::{Block, Event, Header, Receipt, ReceiptStatus};
pub use crypto::{Keypair, PublicKey, Signature};
pub use genesis::Genesis;
pub use hash::Hash;
pub use limits::{MAX_BLOCK_SIZE, MAX_TX_SIZE, MIN_TX_SIZE, RPC_BODY_LIMIT};
pub use tx::{SignedTx, Tx, TxKind};

/// 1 AERGO in aer.
pub const AER_PER_AERGO: u128 = 1_000_000_000_000_000_000;
/// Total supply fixed by the whitepaper: 500,000,000 AERGO.
pub const TOTAL_SUPPLY: u128 = 500_000_000 * AER_PER_AERGO;
