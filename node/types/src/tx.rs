//! Transactions: fields, the deterministic binary encoding, hashing and signing.
//!
//! Encoding (all integers big-endian): `version=1 u8 ‖ kind u8 ‖ nonce u64 ‖ from 32 ‖
//! to_present u8 (0|1) ‖ [to 33 raw bytes] ‖ amount u128 ‖ payload (u32 len ‖ bytes) ‖
//! gas_limit u64 ‖ gas_price u128 ‖ chain_id 32`. The hash is BLAKE3 of that encoding; the
//! signature is ed25519 over the 32-byte hash; a signed transaction is the encoding followed
//! by the 64-byte signature. Decoding is strict and bounded by [`crate::MAX_TX_SIZE`].
//!
//! Version 1 is the only transaction format, and the block format version 2 of
//! [`crate::block_ext`] keeps it: repositories and branches sign their own id in `chain_id`
//! (the root chain's `main` keeps the genesis hash), and the new kinds take reserved kind
//! bytes — 8 evidence of a broken pre-confirmation, 9 repository create and 10
//! directory change, 11 branch create/delete and 12 merge (all defined). Until a kind is defined here, its
//! byte is an unknown kind and the transaction does not decode.

use crate::address::Address;
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{Keypair, PublicKey, Signature};
use crate::hash::Hash;
use crate::MAX_TX_SIZE;
use serde::{Deserialize, Serialize};

/// Encoding version.
pub const TX_VERSION: u8 = 1;

/// What a transaction does. Kinds beyond `Transfer` are reserved for staking/voting (DPoS)
/// and contracts (AergoSQL); a chain rejects kinds it has not enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TxKind {
    /// Native AERGO transfer.
    Transfer = 0,
    /// Deploy an AergoSQL contract (payload: the script).
    Deploy = 1,
    /// Call a contract function (payload: call encoding).
    Call = 2,
    /// Stake AERGO.
    Stake = 3,
    /// Unstake AERGO.
    Unstake = 4,
    /// Vote for block producer candidates.
    Vote = 5,
    /// Register as a block producer candidate.
    RegisterBp = 6,
    /// Governance parameter vote.
    Governance = 7,
    /// Evidence of a broken pre-confirmation (DPoS chains; payload:
    /// [`crate::evidence::Evidence`]).
    Evidence = 8,
    /// Create a repository (root chain only; payload: [`crate::repo::RepoCreate`]).
    RepoCreate = 9,
    /// Change a repository's directory (directories only; payload: [`crate::repo::DdOp`]).
    DirectoryChange = 10,
    /// Create or delete a branch of the chain it is sent to (payload:
    /// [`crate::branch::BranchOp`]).
    Branch = 11,
    /// Merge a branch into the chain it is sent to (payload: [`crate::branch::MergeOp`]).
    Merge = 12,
}

impl TxKind {
    /// From the encoded byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => TxKind::Transfer,
            1 => TxKind::Deploy,
            2 => TxKind::Call,
            3 => TxKind::Stake,
            4 => TxKind::Unstake,
            5 => TxKind::Vote,
            6 => TxKind::RegisterBp,
            7 => TxKind::Governance,
            8 => TxKind::Evidence,
            9 => TxKind::RepoCreate,
            10 => TxKind::DirectoryChange,
            11 => TxKind::Branch,
            12 => TxKind::Merge,
            _ => return None,
        })
    }
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    /// What it does.
    pub kind: TxKind,
    /// The sender's next nonce (starts at 0).
    pub nonce: u64,
    /// The sender's public key (its address is derived).
    pub from: PublicKey,
    /// Recipient (required for transfers).
    pub to: Option<Address>,
    /// Amount in aer.
    pub amount: u128,
    /// Kind-specific data.
    pub payload: Vec<u8>,
    /// Most gas the sender pays for.
    pub gas_limit: u64,
    /// Price per gas unit in aer.
    pub gas_price: u128,
    /// The chain id (genesis hash): a transaction signed for one chain is invalid elsewhere.
    pub chain_id: Hash,
}

/// A signed transaction with its cached hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Tx,
    /// ed25519 signature over `hash`.
    pub signature: Signature,
    /// BLAKE3 of the unsigned encoding.
    pub hash: Hash,
    /// Size of the signed encoding.
    pub size: usize,
}

impl Tx {
    /// The unsigned encoding.
    pub fn encode_unsigned(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160 + self.payload.len());
        w.u8(TX_VERSION);
        w.u8(self.kind as u8);
        w.u64(self.nonce);
        w.fixed(&self.from.0);
        match &self.to {
            Some(a) => {
                w.u8(1);
                w.fixed(&a.to_raw());
            }
            None => w.u8(0),
        }
        w.u128(self.amount);
        w.bytes(&self.payload);
        w.u64(self.gas_limit);
        w.u128(self.gas_price);
        w.fixed(&self.chain_id.0);
        w.finish()
    }
    /// The transaction hash.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode_unsigned())
    }
    /// The sender's address.
    pub fn sender(&self) -> Address {
        Address::from_public_key(&self.from)
    }
    /// Most the sender can be charged in fees.
    pub fn max_fee(&self) -> Option<u128> {
        (self.gas_limit as u128).checked_mul(self.gas_price)
    }
    /// Signs with `key` (which must be the key of `from`).
    pub fn sign(self, key: &Keypair) -> SignedTx {
        let unsigned = self.encode_unsigned();
        let hash = Hash::of(&unsigned);
        let signature = key.sign(&hash.0);
        SignedTx {
            size: unsigned.len() + 64,
            tx: self,
            signature,
            hash,
        }
    }
}

impl SignedTx {
    /// The signed encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.tx.encode_unsigned();
        v.extend_from_slice(&self.signature.0);
        v
    }
    /// Strict decoding of a signed transaction (does not verify the signature).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_SIZE {
            return Err(DecodeError::Invalid {
                what: "transaction",
                message: format!(
                    "{} bytes exceeds the {} byte limit",
                    bytes.len(),
                    MAX_TX_SIZE
                ),
            });
        }
        let mut r = Reader::new(bytes);
        let v = r.u8("version")?;
        if v != TX_VERSION {
            return Err(DecodeError::Invalid {
                what: "version",
                message: format!("unsupported transaction version {v}"),
            });
        }
        let kb = r.u8("kind")?;
        let kind = TxKind::from_u8(kb).ok_or_else(|| DecodeError::Invalid {
            what: "kind",
            message: format!("unknown transaction kind {kb}"),
        })?;
        let nonce = r.u64("nonce")?;
        let from = PublicKey(r.array("from")?);
        let to = match r.u8("to flag")? {
            0 => None,
            1 => {
                let raw: [u8; 33] = r.array("to")?;
                Some(Address::from_raw(&raw).map_err(|e| DecodeError::Invalid {
                    what: "to",
                    message: e.reason.to_string(),
                })?)
            }
            f => {
                return Err(DecodeError::Invalid {
                    what: "to flag",
                    message: format!("must be 0 or 1, got {f}"),
                })
            }
        };
        let amount = r.u128("amount")?;
        let payload = r.bytes(MAX_TX_SIZE, "payload")?.to_vec();
        let gas_limit = r.u64("gas limit")?;
        let gas_price = r.u128("gas price")?;
        let chain_id = Hash(r.array("chain id")?);
        let unsigned_len = r.position();
        let signature = Signature(r.array("signature")?);
        r.finish()?;
        let hash = Hash::of(bytes.get(..unsigned_len).unwrap_or(bytes));
        Ok(SignedTx {
            tx: Tx {
                kind,
                nonce,
                from,
                to,
                amount,
                payload,
                gas_limit,
                gas_price,
                chain_id,
            },
            signature,
            hash,
            size: bytes.len(),
        })
    }
    /// Verifies the signature (ZIP-215).
    pub fn verify_signature(&self) -> bool {
        self.tx.from.verify(&self.hash.0, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample(k: &Keypair) -> Tx {
        Tx {
            kind: TxKind::Transfer,
            nonce: 3,
            from: k.public(),
            to: Some(Address::from_public_key(&Keypair::generate().public())),
            amount: 10u128.pow(20),
            payload: b"memo".to_vec(),
            gas_limit: 100_000,
            gas_price: 1,
            chain_id: Hash::of(b"chain"),
        }
    }

    #[test]
    fn round_trip_sign_verify() {
        let k = Keypair::generate();
        let st = sample(&k).sign(&k);
        let bytes = st.encode();
        let d = SignedTx::decode(&bytes).unwrap();
        assert_eq!(d, st);
        assert!(d.verify_signature());
        let mut tampered = bytes.clone();
        tampered[12] ^= 1;
        let t = SignedTx::decode(&tampered).unwrap();
        assert!(!t.verify_signature());
    }

    #[test]
    fn strict_decoding() {
        let k = Keypair::generate();
        let bytes = sample(&k).sign(&k).encode();
        assert!(SignedTx::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut more = bytes.clone();
        more.push(0);
        assert!(matches!(
            SignedTx::decode(&more),
            Err(DecodeError::Trailing(1))
        ));
        let mut badkind = bytes.clone();
        badkind[1] = 99;
        assert!(SignedTx::decode(&badkind).is_err());
        assert!(SignedTx::decode(&vec![1u8; MAX_TX_SIZE + 1]).is_err());
        assert!(SignedTx::decode(&[]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedTx::decode(&data);
        }

        #[test]
        fn decode_of_mutated_valid_tx_never_panics(idx in 0usize..250, byte in any::<u8>()) {
            let k = Keypair::from_seed(&[7; 32]);
            let mut bytes = sample(&k).sign(&k).encode();
            let i = idx % bytes.len();
            bytes[i] = byte;
            if let Ok(t) = SignedTx::decode(&bytes) {
                prop_assert_eq!(t.encode(), bytes);
            }
        }
    }
}
