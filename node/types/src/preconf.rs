//! Pre-confirmations: the slot producer's signed promise of a transaction's result before
//! its block exists.
//!
//! The producer of a slot executes each admitted transaction at once on its pending block
//! and answers with a [`Preconfirmation`]: the receipt, the position in the slot's sequence
//! and the sequencing hash chained over every earlier promise of the slot,
//! `s_i = H(s_{i-1} ‖ tx hash ‖ receipt hash)` ([`seq_step`]), with `s_0` the parent block's
//! hash ([`seq_start`]). The block it then produces holds exactly those transactions in that
//! order with those receipts, and its header commits to the last sequencing hash
//! (`HeaderExt::seq_hash`), which validators recompute.
//!
//! The signed bytes ([`Preconfirmation::signing_bytes`]) are
//! `"aergo-preconf-v1" ‖ chain_id ‖ slot u64 ‖ height u64 ‖ parent ‖ position u32 ‖ tx_hash ‖
//! prev_sequencing_hash ‖ sequencing_hash ‖ BLAKE3(receipt encoding)`, integers big-endian;
//! the receipt is bound through the sequencing hash and again directly.

use crate::block::Receipt;
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{Keypair, PublicKey, Signature};
use crate::hash::Hash;

/// Domain separation of the signed bytes.
pub const DOMAIN: &[u8] = b"aergo-preconf-v1";

/// `s_0` of a slot: the hash of the block the slot's block extends.
pub fn seq_start(parent: &Hash) -> Hash {
    *parent
}

/// `s_i = H(s_{i-1} ‖ tx hash ‖ receipt hash)`.
pub fn seq_step(prev: &Hash, tx_hash: &Hash, receipt_hash: &Hash) -> Hash {
    Hash::of_parts(&[&prev.0, &tx_hash.0, &receipt_hash.0])
}

/// The last sequencing hash of a block's transactions and receipts (what its header's
/// `seq_hash` must be).
pub fn seq_of<'a>(parent: &Hash, items: impl Iterator<Item = (&'a Hash, &'a Receipt)>) -> Hash {
    items.fold(seq_start(parent), |s, (t, r)| seq_step(&s, t, &r.hash()))
}

/// A producer's signed promise (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preconfirmation {
    /// The chain (branch) id the transaction signed.
    pub chain_id: Hash,
    /// The slot: the consensus slot number, or the block height on solo chains.
    pub slot: u64,
    /// The height of the promised block.
    pub height: u64,
    /// The block the promised block extends.
    pub parent: Hash,
    /// The transaction's index in the promised block.
    pub position: u32,
    /// The transaction.
    pub tx_hash: Hash,
    /// `s_{i-1}`.
    pub prev_sequencing_hash: Hash,
    /// `s_i`.
    pub sequencing_hash: Hash,
    /// The producer's block-signing key.
    pub producer: PublicKey,
    /// The promised receipt.
    pub receipt: Receipt,
    /// The producer's signature over [`Self::signing_bytes`].
    pub signature: Signature,
}

/// Why a pre-confirmation does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreconfError {
    /// The receipt names another transaction.
    #[error("the receipt is for transaction {receipt}, not {tx}")]
    WrongReceipt {
        /// The receipt's transaction.
        receipt: Hash,
        /// The promised transaction.
        tx: Hash,
    },
    /// The sequencing hash is not `H(prev ‖ tx ‖ receipt)`: the receipt or a hash was altered.
    #[error("the sequencing hash does not match the receipt: recomputed {0}")]
    SeqMismatch(Hash),
    /// The signature is not the producer's.
    #[error("bad signature: not signed by producer {0}")]
    BadSignature(PublicKey),
}

impl Preconfirmation {
    /// The bytes the producer signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.fixed(DOMAIN);
        w.fixed(&self.chain_id.0);
        w.u64(self.slot);
        w.u64(self.height);
        w.fixed(&self.parent.0);
        w.u32(self.position);
        w.fixed(&self.tx_hash.0);
        w.fixed(&self.prev_sequencing_hash.0);
        w.fixed(&self.sequencing_hash.0);
        w.fixed(&self.receipt.hash().0);
        w.finish()
    }

    /// Fills in the sequencing hash from `prev` and the receipt, and signs.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        key: &Keypair,
        chain_id: Hash,
        slot: u64,
        height: u64,
        parent: Hash,
        position: u32,
        prev: Hash,
        receipt: Receipt,
    ) -> Self {
        let mut p = Self {
            chain_id,
            slot,
            height,
            parent,
            position,
            tx_hash: receipt.tx_hash,
            prev_sequencing_hash: prev,
            sequencing_hash: seq_step(&prev, &receipt.tx_hash, &receipt.hash()),
            producer: key.public(),
            receipt,
            signature: Signature::default(),
        };
        p.signature = key.sign(&p.signing_bytes());
        p
    }

    /// Checks the receipt against the sequencing hash and the signature against the
    /// producer. Whether the producer owned the slot is the caller's check (it needs the
    /// schedule).
    pub fn verify(&self) -> Result<(), PreconfError> {
        if self.receipt.tx_hash != self.tx_hash {
            return Err(PreconfError::WrongReceipt {
                receipt: self.receipt.tx_hash,
                tx: self.tx_hash,
            });
        }
        let s = seq_step(
            &self.prev_sequencing_hash,
            &self.tx_hash,
            &self.receipt.hash(),
        );
        if s != self.sequencing_hash {
            return Err(PreconfError::SeqMismatch(s));
        }
        if !self.producer.verify(&self.signing_bytes(), &self.signature) {
            return Err(PreconfError::BadSignature(self.producer));
        }
        Ok(())
    }

    /// The binary encoding (the durable promise log's record).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(384);
        w.fixed(&self.chain_id.0);
        w.u64(self.slot);
        w.u64(self.height);
        w.fixed(&self.parent.0);
        w.u32(self.position);
        w.fixed(&self.tx_hash.0);
        w.fixed(&self.prev_sequencing_hash.0);
        w.fixed(&self.sequencing_hash.0);
        w.fixed(&self.producer.0);
        w.bytes(&self.receipt.encode());
        w.fixed(&self.signature.0);
        w.finish()
    }

    /// Decodes [`Self::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let p = Self {
            chain_id: Hash(r.array("chain id")?),
            slot: r.u64("slot")?,
            height: r.u64("height")?,
            parent: Hash(r.array("parent")?),
            position: r.u32("position")?,
            tx_hash: Hash(r.array("tx hash")?),
            prev_sequencing_hash: Hash(r.array("previous sequencing hash")?),
            sequencing_hash: Hash(r.array("sequencing hash")?),
            producer: PublicKey(r.array("producer")?),
            receipt: Receipt::decode(r.bytes(crate::limits::MAX_BLOCK_SIZE, "receipt")?)?,
            signature: Signature(r.array("signature")?),
        };
        r.finish()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::ReceiptStatus;

    fn sample() -> (Keypair, Preconfirmation) {
        let k = Keypair::from_seed(&[7; 32]);
        let r = Receipt {
            tx_hash: Hash::of(b"tx"),
            status: ReceiptStatus::Ok,
            gas_used: 21_000,
            fee: 5,
            result: b"OK".to_vec(),
            events: Vec::new(),
        };
        let p = Preconfirmation::sign(
            &k,
            Hash::of(b"chain"),
            9,
            9,
            Hash::of(b"parent"),
            3,
            Hash::of(b"prev"),
            r,
        );
        (k, p)
    }

    #[test]
    fn a_signed_promise_verifies_and_round_trips() {
        let (_, p) = sample();
        assert_eq!(p.verify(), Ok(()));
        assert_eq!(Preconfirmation::decode(&p.encode()).as_ref(), Ok(&p));
    }

    #[test]
    fn any_tampering_fails() {
        let (_, p) = sample();
        let mut q = p.clone();
        q.receipt.result = b"NO".to_vec();
        assert!(matches!(q.verify(), Err(PreconfError::SeqMismatch(_))));
        let mut q = p.clone();
        q.position = 4;
        assert!(matches!(q.verify(), Err(PreconfError::BadSignature(_))));
        let mut q = p.clone();
        q.producer = Keypair::from_seed(&[8; 32]).public();
        assert!(matches!(q.verify(), Err(PreconfError::BadSignature(_))));
        let mut q = p.clone();
        q.tx_hash = Hash::of(b"other");
        assert!(matches!(q.verify(), Err(PreconfError::WrongReceipt { .. })));
        let mut bytes = p.encode();
        bytes.push(0);
        assert!(Preconfirmation::decode(&bytes).is_err());
    }

    #[test]
    fn seq_of_chains_the_steps() {
        let (_, p) = sample();
        let parent = Hash::of(b"parent");
        let s1 = seq_step(&parent, &p.tx_hash, &p.receipt.hash());
        assert_eq!(
            seq_of(&parent, std::iter::once((&p.tx_hash, &p.receipt))),
            s1
        );
        assert_eq!(seq_of(&parent, std::iter::empty()), parent);
    }
}
