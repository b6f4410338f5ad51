//! Every size and value limit of the chain's primitives, in one place, with the relations
//! between them checked at compile time (`const _: () = assert!(…)`).
//!
//! Relations (each a compile error when broken):
//! - [`MIN_TX_SIZE`] ≤ [`MAX_TX_SIZE`] < [`MAX_BLOCK_SIZE`]: a block can hold the largest
//!   transaction with room for its header;
//! - 2 × [`MAX_TX_SIZE`] + [`RPC_ENVELOPE`] ≤ [`RPC_BODY_LIMIT`]: `send_tx` carries a
//!   transaction as hex (two characters a byte) in a JSON envelope, so the largest valid
//!   transaction can always be submitted;
//! - [`MAX_BLOCK_SIZE`] ≤ `u32::MAX`: the codec's u32 length and count prefixes hold every
//!   consensus value (they all fit in a block);
//! - [`MIN_GAS_LIMIT_PARAM`] ≤ [`MAX_GAS_LIMIT_PARAM`].
//!
//! The chain's own limits (candidates per block, side pool, caches, undo retention, gas
//! defaults) live in `aergo_chain::limits`, which asserts its relations against these.

/// Largest encoded transaction accepted.
pub const MAX_TX_SIZE: usize = 200 * 1024;

/// Smallest possible encoded (signed) transaction: version 1 + kind 1 + nonce 8 + sender
/// key 32 + no-recipient tag 1 + amount 16 + payload length 4 (empty payload) + gas limit 8 +
/// gas price 16 + chain id 32 + signature 64 bytes (the format in [`crate::tx`]). No
/// transaction encodes shorter, so no block holds more than
/// [`MAX_BLOCK_SIZE`] / ([`MIN_TX_SIZE`] + 4) transactions.
pub const MIN_TX_SIZE: usize = 1 + 1 + 8 + 32 + 1 + 16 + 4 + 8 + 16 + 32 + 64;

/// Largest encoded block accepted: a ceiling for the network (gossip, sync, the side pool),
/// not what sizes blocks. Gas does ([`crate::genesis`]'s `block_gas_limit`, 5M by default:
/// 5,000 transfers, ~1.1 MB), and the producer's slot time. At 1 MiB the size bound came
/// first (~4,700 transfers) and capped a 1 s chain below 5,000 transfers/s. No RPC method
/// takes a block, so a request body need not hold one.
pub const MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;

/// Largest HTTP request body the node's JSON-RPC server reads (and largest WebSocket
/// message and frame).
pub const RPC_BODY_LIMIT: usize = 1024 * 1024;

/// Room a JSON-RPC request needs around its hex-encoded transaction (`jsonrpc`, `id`,
/// `method`, the `params` object and `0x`): generous, the real envelope is under 100 bytes.
pub const RPC_ENVELOPE: usize = 4096;

/// Smallest `gas.tx_gas_cap` and `gas.block_gas_limit` a genesis (or a governance vote)
/// may set: room for the largest transaction's intrinsic gas at the dev schedule.
pub const MIN_GAS_LIMIT_PARAM: u64 = 3_000_000;

/// Largest `gas.tx_gas_cap` and `gas.block_gas_limit` a genesis (or a governance vote)
/// may set.
pub const MAX_GAS_LIMIT_PARAM: u64 = 10_000_000_000;

const _: () = assert!(MIN_TX_SIZE <= MAX_TX_SIZE);
const _: () = assert!(MAX_TX_SIZE < MAX_BLOCK_SIZE);
const _: () = assert!(2 * MAX_TX_SIZE + RPC_ENVELOPE <= RPC_BODY_LIMIT);
// The u32 length and count prefixes rely on every consensus value fitting in a block.
const _: () = assert!(MAX_BLOCK_SIZE <= u32::MAX as usize);
const _: () = assert!(MIN_GAS_LIMIT_PARAM <= MAX_GAS_LIMIT_PARAM);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hash, Keypair, SignedTx, Tx, TxKind};

    #[test]
    fn the_smallest_transaction_is_min_tx_size() {
        let k = Keypair::from_seed(&[1; 32]);
        let t = Tx {
            kind: TxKind::Transfer,
            nonce: 0,
            from: k.public(),
            to: None,
            amount: 0,
            payload: vec![],
            gas_limit: 0,
            gas_price: 0,
            chain_id: Hash::ZERO,
        }
        .sign(&k);
        let bytes = t.encode();
        assert_eq!(bytes.len(), MIN_TX_SIZE);
        assert_eq!(t.size, MIN_TX_SIZE);
        assert!(SignedTx::decode(&bytes).is_ok());
        // One byte less never decodes.
        assert!(SignedTx::decode(&bytes[..MIN_TX_SIZE - 1]).is_err());
    }
}
