//! Blocks, headers and receipts with their deterministic encodings.
//!
//! Header encoding: `version u8 ‖ chain_id 32 ‖ height u64 ‖ parent 32 ‖ timestamp_ms u64 ‖
//! producer 32 ‖ tx_root 32 ‖ receipts_root 32 ‖ state_root 32 ‖ consensus (u32 len ‖ bytes)
//! ‖ [version 2: the header extension section]`, then the 64-byte producer signature over the
//! header hash (BLAKE3 of the fields before it).
//! Block encoding: header ‖ tx count u32 ‖ each signed tx as (u32 len ‖ bytes) ‖ [version 2:
//! the body extension section].
//!
//! Version 1 is the original format; version 2 adds the optional fields of
//! [`crate::block_ext`] (pre-confirmation, parallel execution, merges, directories). A header
//! with none of them encodes as version 1, so blocks, their hashes and chain ids from before
//! version 2 are unchanged, and both versions decode.

use crate::block_ext::{check_commitments, BodyExt, HeaderExt};
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{Keypair, PublicKey, Signature};
use crate::hash::{merkle_root, Hash};
use crate::tx::SignedTx;
use crate::{MAX_BLOCK_SIZE, MAX_TX_SIZE};
use serde::{Deserialize, Serialize};

/// Block header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The chain id (genesis hash).
    pub chain_id: Hash,
    /// Height; the genesis block is 0.
    pub height: u64,
    /// Hash of the parent block.
    pub parent: Hash,
    /// Producer's timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The producer's public key.
    pub producer: PublicKey,
    /// Merkle root of the transaction hashes.
    pub tx_root: Hash,
    /// Merkle root of the receipt hashes.
    pub receipts_root: Hash,
    /// Sparse Merkle root of the whole state after this block.
    pub state_root: Hash,
    /// Engine-specific data (e.g. the DPoS slot).
    pub consensus: Vec<u8>,
    /// Format-version-2 fields; empty for a version-1 header.
    pub ext: HeaderExt,
    /// The producer's signature over [`Header::hash`].
    pub signature: Signature,
}

impl Header {
    /// The format version this header encodes as: 1 without extension fields, else 2.
    pub fn version(&self) -> u8 {
        if self.ext.is_empty() {
            1
        } else {
            2
        }
    }
    fn encode_unsigned_into(&self, w: &mut Writer) {
        w.u8(self.version());
        w.fixed(&self.chain_id.0);
        w.u64(self.height);
        w.fixed(&self.parent.0);
        w.u64(self.timestamp_ms);
        w.fixed(&self.producer.0);
        w.fixed(&self.tx_root.0);
        w.fixed(&self.receipts_root.0);
        w.fixed(&self.state_root.0);
        w.bytes(&self.consensus);
        if !self.ext.is_empty() {
            self.ext.encode_into(w);
        }
    }
    /// The block hash.
    pub fn hash(&self) -> Hash {
        let mut w = Writer::with_capacity(300);
        self.encode_unsigned_into(&mut w);
        Hash::of(&w.buf)
    }
    /// Signs the header.
    pub fn sign(&mut self, key: &Keypair) {
        self.signature = key.sign(&self.hash().0);
    }
    /// Checks the producer's signature.
    pub fn verify_signature(&self) -> bool {
        self.producer.verify(&self.hash().0, &self.signature)
    }
    /// The signed header's encoding (as inside a block).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(400);
        self.encode_into(&mut w);
        w.finish()
    }
    /// Decodes [`Header::encode`]'s bytes, strictly (nothing may follow).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let h = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(h)
    }
    fn encode_into(&self, w: &mut Writer) {
        self.encode_unsigned_into(w);
        w.fixed(&self.signature.0);
    }
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.u8("header version")?;
        if v != 1 && v != 2 {
            return Err(DecodeError::Invalid {
                what: "header version",
                message: format!("unsupported {v}"),
            });
        }
        Ok(Header {
            chain_id: Hash(r.array("chain id")?),
            height: r.u64("height")?,
            parent: Hash(r.array("parent")?),
            timestamp_ms: r.u64("timestamp")?,
            producer: PublicKey(r.array("producer")?),
            tx_root: Hash(r.array("tx root")?),
            receipts_root: Hash(r.array("receipts root")?),
            state_root: Hash(r.array("state root")?),
            consensus: r.bytes(4096, "consensus data")?.to_vec(),
            ext: if v == 2 {
                HeaderExt::decode_from(r)?
            } else {
                HeaderExt::default()
            },
            signature: Signature(r.array("signature")?),
        })
    }
}

/// A block: header and transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions, in execution order.
    pub txs: Vec<SignedTx>,
    /// Format-version-2 body sections, committed by the header's extension fields; empty
    /// for a version-1 block.
    pub body_ext: BodyExt,
}

impl Block {
    /// A block with no body extension.
    pub fn new(header: Header, txs: Vec<SignedTx>) -> Self {
        Block {
            header,
            txs,
            body_ext: BodyExt::default(),
        }
    }
    /// The block hash.
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }
    /// Merkle root of the transaction hashes.
    pub fn compute_tx_root(txs: &[SignedTx]) -> Hash {
        let leaves: Vec<Hash> = txs.iter().map(|t| t.hash).collect();
        merkle_root(&leaves)
    }
    /// The encoding.
    // The format fixes a u32 transaction count; a block holds at most MAX_BLOCK_SIZE bytes
    // of transactions (far below u32::MAX of them), so the count never truncates.
    #[allow(clippy::cast_possible_truncation)]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(400 + self.txs.iter().map(|t| t.size + 4).sum::<usize>());
        self.header.encode_into(&mut w);
        w.u32(self.txs.len() as u32);
        for t in &self.txs {
            w.bytes(&t.encode());
        }
        if self.header.version() == 2 {
            self.body_ext.encode_into(&mut w);
        }
        w.finish()
    }
    /// Strict decoding, bounded by [`MAX_BLOCK_SIZE`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_BLOCK_SIZE {
            return Err(DecodeError::Invalid {
                what: "block",
                message: format!("{} bytes exceeds {}", bytes.len(), MAX_BLOCK_SIZE),
            });
        }
        let mut r = Reader::new(bytes);
        let header = Header::decode_from(&mut r)?;
        let n = r.u32("tx count")? as usize;
        if n > bytes.len() / 100 + 1 {
            return Err(DecodeError::Invalid {
                what: "tx count",
                message: format!("{n} transactions cannot fit in {} bytes", bytes.len()),
            });
        }
        let mut txs = Vec::with_capacity(n);
        for _ in 0..n {
            txs.push(SignedTx::decode(r.bytes(MAX_TX_SIZE, "transaction")?)?);
        }
        let (body_ext, dtt_hash, merge_hash) = if header.version() == 2 {
            BodyExt::decode_from(&mut r)?
        } else {
            (BodyExt::default(), None, None)
        };
        r.finish()?;
        check_commitments(&header.ext, &body_ext, txs.len(), dtt_hash, merge_hash)?;
        Ok(Block {
            header,
            txs,
            body_ext,
        })
    }
}

/// An event emitted by execution (e.g. an AergoSQL `RAISE NOTICE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Event data (UTF-8 text or JSON).
    pub data: String,
}

/// Whether a transaction succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Applied.
    Ok,
    /// Reverted; the fee was still charged. The message says why.
    Failed(String),
}

/// The outcome of one transaction in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction.
    pub tx_hash: Hash,
    /// Status.
    pub status: ReceiptStatus,
    /// Gas used.
    pub gas_used: u64,
    /// Fee charged in aer (gas_used × gas_price), credited to the producer.
    pub fee: u128,
    /// Return value (contracts), empty for transfers.
    pub result: Vec<u8>,
    /// Events in emission order.
    pub events: Vec<Event>,
}

impl Receipt {
    /// The encoding.
    // The format fixes a u32 event count; events are emitted by one transaction's execution,
    // bounded by its gas (far below u32::MAX of them), so the count never truncates.
    #[allow(clippy::cast_possible_truncation)]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.fixed(&self.tx_hash.0);
        match &self.status {
            ReceiptStatus::Ok => w.u8(0),
            ReceiptStatus::Failed(m) => {
                w.u8(1);
                w.bytes(m.as_bytes());
            }
        }
        w.u64(self.gas_used);
        w.u128(self.fee);
        w.bytes(&self.result);
        w.u32(self.events.len() as u32);
        for e in &self.events {
            w.bytes(e.name.as_bytes());
            w.bytes(e.data.as_bytes());
        }
        w.finish()
    }
    /// Strict decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let tx_hash = Hash(r.array("tx hash")?);
        let status = match r.u8("status")? {
            0 => ReceiptStatus::Ok,
            1 => ReceiptStatus::Failed(utf8(r.bytes(65536, "error")?)?),
            s => {
                return Err(DecodeError::Invalid {
                    what: "status",
                    message: format!("unknown {s}"),
                })
            }
        };
        let gas_used = r.u64("gas used")?;
        let fee = r.u128("fee")?;
        let result = r.bytes(MAX_TX_SIZE, "result")?.to_vec();
        let n = r.u32("event count")? as usize;
        let mut events = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let name = utf8(r.bytes(1024, "event name")?)?;
            let data = utf8(r.bytes(MAX_TX_SIZE, "event data")?)?;
            events.push(Event { name, data });
        }
        r.finish()?;
        Ok(Receipt {
            tx_hash,
            status,
            gas_used,
            fee,
            result,
            events,
        })
    }
    /// Hash of the encoding (leaf of the receipts root).
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid {
        what: "text",
        message: "not UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_ext::tests::self_transfer;
    use proptest::prelude::*;

    fn block() -> Block {
        let k = Keypair::generate();
        let tx = self_transfer(&k, 0);
        let mut header = Header {
            chain_id: Hash::ZERO,
            height: 1,
            parent: Hash::of(b"p"),
            timestamp_ms: 1_700_000_000_000,
            producer: k.public(),
            tx_root: Block::compute_tx_root(std::slice::from_ref(&tx)),
            receipts_root: Hash::ZERO,
            state_root: Hash::of(b"s"),
            consensus: vec![1, 2],
            ext: HeaderExt::default(),
            signature: Signature::default(),
        };
        header.sign(&k);
        Block::new(header, vec![tx])
    }

    #[test]
    fn block_round_trip_and_signature() {
        let b = block();
        assert!(b.header.verify_signature());
        let d = Block::decode(&b.encode()).unwrap();
        assert_eq!(d, b);
        assert_eq!(d.hash(), b.hash());
        let mut h = b.header.clone();
        h.height = 2;
        assert!(!h.verify_signature());
    }

    #[test]
    fn receipt_round_trip() {
        let r = Receipt {
            tx_hash: Hash::of(b"t"),
            status: ReceiptStatus::Failed("nope".into()),
            gas_used: 7,
            fee: 70,
            result: b"OK".to_vec(),
            events: vec![Event {
                name: "notice".into(),
                data: "hi".into(),
            }],
        };
        assert_eq!(Receipt::decode(&r.encode()).unwrap(), r);
    }

    proptest! {
        #[test]
        fn block_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Block::decode(&data);
            let _ = Receipt::decode(&data);
        }
    }
}
