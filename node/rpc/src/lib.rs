//! The node's JSON-RPC 2.0 interface: wire types ([`types`]) and a typed async client
//! ([`client`]) shared by the `aergo` CLI and the `aergo-top` dashboard. See docs/RPC.md.
//!
//! Invariant: this crate never links storage or chain internals; it only knows the wire.

pub mod client;
pub mod types;

pub use aergo_types::Hash;
pub use client::{RpcClient, RpcError};
pub use types::*;
