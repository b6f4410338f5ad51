//! Evidence of a broken pre-confirmation (transaction kind 8): the producer's signed promise
//! and a block header it signed for the same slot, with the block's transaction hashes (and,
//! optionally, its receipt hashes) showing that the promised position holds something else.
//!
//! The leaves are carried whole rather than as one Merkle path: the block's tree promotes an
//! odd last node, so a single path does not pin the leaf count, and a path for the wrong count
//! could place a real leaf at a false position. The whole list is checked against the
//! header's root, 32 bytes per transaction, bounded by the transaction size limit. This
//! module is the format and the checks ([`Evidence::verify`], a pure function of the bytes
//! and the chain id, shared by the chain and the CLI); the penalty is the chain's
//! (`aergo-chain` `evidence`).
//!
//! Encoding: `version=1 u8 ‖ preconf (u32 len ‖ bytes) ‖ header (u32 len ‖ bytes) ‖
//! tx count u32 ‖ tx hashes ‖ receipt count u32 ‖ receipt hashes` (receipt count 0 or the tx
//! count).

use crate::block::Header;
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::PublicKey;
use crate::hash::{merkle_root, Hash};
use crate::preconf::Preconfirmation;
use crate::MAX_TX_SIZE;

/// Encoding version.
pub const EVIDENCE_VERSION: u8 = 1;

/// Most leaves (transaction hashes plus receipt hashes) one piece of evidence carries: what
/// fits in a transaction.
pub const MAX_EVIDENCE_LEAVES: usize = MAX_TX_SIZE / 32;

/// A signed promise and the contradicting signed block (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The producer's pre-confirmation.
    pub preconf: Preconfirmation,
    /// A block header the same producer signed for the same slot.
    pub header: Header,
    /// That block's transaction hashes, in order (their Merkle root is `header.tx_root`).
    pub tx_hashes: Vec<Hash>,
    /// That block's receipt hashes, in order (root `header.receipts_root`), or empty.
    pub receipt_hashes: Vec<Hash>,
}

/// What a piece of evidence proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conviction {
    /// The producer.
    pub producer: PublicKey,
    /// The slot whose promise it broke.
    pub slot: u64,
    /// How: what the block holds at the promised position.
    pub how: String,
}

impl Evidence {
    /// Checks evidence against the chain id: both signatures, the same slot, height and parent,
    /// the leaves against the header's roots, and the contradiction. `Err` names the first check
    /// that fails (the evidence proves nothing).
    pub fn verify(&self, chain_id: &Hash) -> Result<Conviction, String> {
        let e = self;
        let p = &e.preconf;
        let h = &e.header;
        if p.chain_id != *chain_id || h.chain_id != *chain_id {
            return Err("the evidence is for another chain".into());
        }
        p.verify()
            .map_err(|err| format!("the pre-confirmation does not hold: {err}"))?;
        if h.producer != p.producer {
            return Err("the header and the pre-confirmation have different producers".into());
        }
        if !h.verify_signature() {
            return Err("the header's signature is not its producer's".into());
        }
        // The DPoS/PoA slot in the header's consensus bytes (8 bytes, big-endian); the height
        // on solo chains, as pre-confirmations count slots.
        let slot = <[u8; 8]>::try_from(h.consensus.as_slice())
            .map(u64::from_be_bytes)
            .unwrap_or(h.height);
        if (h.height, h.parent, slot) != (p.height, p.parent, p.slot) {
            return Err(format!(
                "the header is for height {} in slot {slot}, the pre-confirmation for height {} in slot {} (or another parent)",
                h.height, p.height, p.slot
            ));
        }
        if merkle_root(&e.tx_hashes) != h.tx_root {
            return Err("the transaction hashes do not make the header's tx_root".into());
        }
        if !e.receipt_hashes.is_empty() && merkle_root(&e.receipt_hashes) != h.receipts_root {
            return Err("the receipt hashes do not make the header's receipts_root".into());
        }
        let at = p.position as usize;
        let how = match e.tx_hashes.get(at) {
            None => format!(
                "position {at} was promised; the block holds {} transactions",
                e.tx_hashes.len()
            ),
            Some(t) if *t != p.tx_hash => {
                format!("position {at} holds transaction {t}, not {}", p.tx_hash)
            }
            Some(_) => match e.receipt_hashes.get(at) {
                Some(r) if *r != p.receipt.hash() => {
                    format!("position {at} holds the transaction with another receipt")
                }
                _ => return Err("the block keeps the promise".into()),
            },
        };
        Ok(Conviction {
            producer: p.producer,
            slot: p.slot,
            how,
        })
    }

    /// The encoding (a kind-8 transaction's payload).
    pub fn encode(&self) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(1024 + 32 * (self.tx_hashes.len() + self.receipt_hashes.len()));
        w.u8(EVIDENCE_VERSION);
        w.bytes(&self.preconf.encode());
        w.bytes(&self.header.encode());
        for list in [&self.tx_hashes, &self.receipt_hashes] {
            // Bounded by MAX_EVIDENCE_LEAVES when decoded; an oversized list encodes a count
            // that the decoder refuses.
            w.u32(u32::try_from(list.len()).unwrap_or(u32::MAX));
            for h in list.iter() {
                w.fixed(&h.0);
            }
        }
        w.finish()
    }

    /// Decodes [`Evidence::encode`]'s bytes, strictly and bounded.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("evidence version")?;
        if v != EVIDENCE_VERSION {
            return Err(DecodeError::Invalid {
                what: "evidence version",
                message: format!("unsupported {v}"),
            });
        }
        let preconf = Preconfirmation::decode(r.bytes(MAX_TX_SIZE, "pre-confirmation")?)?;
        let header = Header::decode(r.bytes(MAX_TX_SIZE, "header")?)?;
        let mut lists = [Vec::new(), Vec::new()];
        let mut total = 0usize;
        for list in lists.iter_mut() {
            let n = r.u32("leaf count")? as usize;
            total = total.saturating_add(n);
            if total > MAX_EVIDENCE_LEAVES {
                return Err(DecodeError::Invalid {
                    what: "leaf count",
                    message: format!("more than {MAX_EVIDENCE_LEAVES} hashes"),
                });
            }
            list.reserve(n);
            for _ in 0..n {
                list.push(Hash(r.array("leaf hash")?));
            }
        }
        r.finish()?;
        let [tx_hashes, receipt_hashes] = lists;
        if !receipt_hashes.is_empty() && receipt_hashes.len() != tx_hashes.len() {
            return Err(DecodeError::Invalid {
                what: "receipt hashes",
                message: format!(
                    "{} receipt hashes for {} transactions",
                    receipt_hashes.len(),
                    tx_hashes.len()
                ),
            });
        }
        Ok(Self {
            preconf,
            header,
            tx_hashes,
            receipt_hashes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Receipt, ReceiptStatus};
    use crate::Keypair;

    fn sample() -> Evidence {
        let key = Keypair::from_seed(&[7; 32]);
        let receipt = Receipt {
            tx_hash: Hash::of(b"tx"),
            status: ReceiptStatus::Ok,
            gas_used: 1000,
            fee: 1,
            result: Vec::new(),
            events: Vec::new(),
        };
        let preconf = Preconfirmation::sign(
            &key,
            Hash::of(b"chain"),
            5,
            3,
            Hash::of(b"parent"),
            1,
            Hash::of(b"prev"),
            receipt,
        );
        let mut header = Header {
            chain_id: Hash::of(b"chain"),
            height: 3,
            parent: Hash::of(b"parent"),
            timestamp_ms: 5000,
            producer: key.public(),
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus: vec![1, 2, 3],
            ext: Default::default(),
            signature: Default::default(),
        };
        header.sign(&key);
        Evidence {
            preconf,
            header,
            tx_hashes: vec![Hash::of(b"a"), Hash::of(b"b")],
            receipt_hashes: Vec::new(),
        }
    }

    /// A producer key, the chain, and evidence for a promise of `tx` at `position` against a
    /// block holding `leaves`, both signed by `signer`s.
    fn case(
        position: u32,
        leaves: &[Hash],
        promise_key: &Keypair,
        header_key: &Keypair,
    ) -> Evidence {
        let chain = Hash::of(b"chain");
        let receipt = Receipt {
            tx_hash: Hash::of(b"promised"),
            status: ReceiptStatus::Ok,
            gas_used: 1000,
            fee: 1,
            result: Vec::new(),
            events: Vec::new(),
        };
        let preconf = Preconfirmation::sign(
            promise_key,
            chain,
            9,
            4,
            Hash::of(b"parent"),
            position,
            Hash::of(b"prev"),
            receipt,
        );
        let mut header = Header {
            chain_id: chain,
            height: 4,
            parent: Hash::of(b"parent"),
            timestamp_ms: 9000,
            producer: promise_key.public(),
            tx_root: merkle_root(leaves),
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus: 9u64.to_be_bytes().to_vec(),
            ext: Default::default(),
            signature: Default::default(),
        };
        header.sign(header_key);
        Evidence {
            preconf,
            header,
            tx_hashes: leaves.to_vec(),
            receipt_hashes: Vec::new(),
        }
    }

    #[test]
    fn contradictions_convict_and_everything_else_is_refused() {
        let bp = Keypair::from_seed(&[1; 32]);
        let other = Keypair::from_seed(&[2; 32]);
        let chain = Hash::of(b"chain");
        let (a, x) = (Hash::of(b"a"), Hash::of(b"promised"));
        // Another transaction at the promised position; the block too short.
        let c = case(1, &[x, a], &bp, &bp).verify(&chain).unwrap();
        assert_eq!((c.producer, c.slot), (bp.public(), 9));
        assert!(c.how.contains("position 1 holds"), "{}", c.how);
        let c = case(2, &[a, x], &bp, &bp).verify(&chain).unwrap();
        assert!(c.how.contains("holds 2 transactions"), "{}", c.how);
        // A kept promise is no evidence.
        let kept = case(1, &[a, x], &bp, &bp);
        assert_eq!(
            kept.verify(&chain).unwrap_err(),
            "the block keeps the promise"
        );
        // The same transaction with another receipt convicts once the receipts are given.
        let mut r = kept.clone();
        r.receipt_hashes = vec![Hash::of(b"r0"), Hash::of(b"r1")];
        r.header.receipts_root = merkle_root(&r.receipt_hashes);
        r.header.sign(&bp);
        assert!(r.verify(&chain).unwrap().how.contains("another receipt"));
        let mut same = r.clone();
        same.receipt_hashes[1] = same.preconf.receipt.hash();
        same.header.receipts_root = merkle_root(&same.receipt_hashes);
        same.header.sign(&bp);
        assert_eq!(
            same.verify(&chain).unwrap_err(),
            "the block keeps the promise"
        );
        // Forgeries and mismatches prove nothing.
        let e = case(1, &[x, a], &bp, &bp);
        let refused = |e: &Evidence, want: &str| {
            let err = e.verify(&chain).unwrap_err();
            assert!(err.contains(want), "{err} (wanted {want})");
        };
        refused(
            &case(1, &[x, a], &bp, &other),
            "signature is not its producer's",
        );
        let mut forged = e.clone();
        forged.preconf.signature = other.sign(&forged.preconf.signing_bytes());
        refused(&forged, "bad signature");
        let mut by_other = case(1, &[x, a], &other, &other);
        by_other.header = e.header.clone();
        refused(&by_other, "different producers");
        let mut slot = e.clone();
        slot.header.consensus = 10u64.to_be_bytes().to_vec();
        slot.header.sign(&bp);
        refused(&slot, "slot 10");
        let mut parent = e.clone();
        parent.header.parent = Hash::of(b"elsewhere");
        parent.header.sign(&bp);
        refused(&parent, "another parent");
        let mut leaves = e.clone();
        leaves.tx_hashes.pop();
        refused(&leaves, "tx_root");
        let mut receipts = e.clone();
        receipts.receipt_hashes = vec![Hash::of(b"r0"), Hash::of(b"r1")];
        refused(&receipts, "receipts_root");
        let err = e.verify(&Hash::of(b"another")).unwrap_err();
        assert!(err.contains("another chain"), "{err}");
        let mut tampered = e.clone();
        tampered.preconf.receipt.gas_used += 1;
        refused(&tampered, "sequencing hash");
    }

    #[test]
    fn round_trip_and_strictness() {
        let e = sample();
        let b = e.encode();
        assert_eq!(Evidence::decode(&b).unwrap(), e);
        let mut with = e.clone();
        with.receipt_hashes = vec![Hash::of(b"r1"), Hash::of(b"r2")];
        assert_eq!(Evidence::decode(&with.encode()).unwrap(), with);
        // trailing bytes, truncation, a wrong version, mismatched receipt count
        let mut longer = b.clone();
        longer.push(0);
        assert!(Evidence::decode(&longer).is_err());
        for cut in [0, 1, 10, b.len() - 1] {
            assert!(Evidence::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = b.clone();
        v2[0] = 2;
        assert!(Evidence::decode(&v2).is_err());
        let mut odd = e.clone();
        odd.receipt_hashes = vec![Hash::of(b"r1")];
        let err = Evidence::decode(&odd.encode()).unwrap_err().to_string();
        assert!(err.contains("1 receipt hashes for 2"), "{err}");
        // The header round-trips with its signature.
        let h = Header::decode(&e.header.encode()).unwrap();
        assert!(h.verify_signature());
    }

    #[test]
    fn a_lying_count_is_refused_before_allocating() {
        let e = sample();
        let mut b = e.encode();
        // The tx count sits after the two length-prefixed records.
        let at = b.len() - (4 + 2 * 32 + 4);
        b[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = Evidence::decode(&b).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
    }
}
