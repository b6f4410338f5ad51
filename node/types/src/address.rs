//! Account and contract addresses: base58check over a version byte, a type tag and 32 bytes.
//!
//! Layout of the 38 encoded bytes: `0x42` (version) ‖ tag (`0x01` ed25519 account key,
//! `0x02` contract id) ‖ 32-byte key or id ‖ first 4 bytes of SHA-256(SHA-256(the 34 bytes)).
//! With version 0x42 every address is 52 base58 characters starting with `A` (proved over the
//! extreme payloads in the tests), so an AERGO address is recognisable at a glance.

use crate::crypto::PublicKey;
use crate::hash::Hash;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// The version byte of every address.
pub const VERSION: u8 = 0x42;
/// Tag of an ed25519 account address.
pub const TAG_ACCOUNT: u8 = 0x01;
/// Tag of a contract address.
pub const TAG_CONTRACT: u8 = 0x02;

/// An address: a type tag and 32 bytes (an ed25519 public key for accounts).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// [`TAG_ACCOUNT`] or [`TAG_CONTRACT`].
    pub tag: u8,
    /// The key or contract id.
    pub key: [u8; 32],
}

/// A string that is not a valid address.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid address `{input}`: {reason}")]
pub struct AddressError {
    /// The input (truncated).
    pub input: String,
    /// Why.
    pub reason: &'static str,
}

impl Address {
    /// The account address of a public key.
    pub fn from_public_key(pk: &PublicKey) -> Self {
        Address {
            tag: TAG_ACCOUNT,
            key: pk.0,
        }
    }
    /// A contract address derived from its creator and the creator's nonce.
    pub fn contract(creator: &Address, nonce: u64) -> Self {
        let h = Hash::of_parts(&[
            b"contract",
            &[creator.tag],
            &creator.key,
            &nonce.to_be_bytes(),
        ]);
        Address {
            tag: TAG_CONTRACT,
            key: h.0,
        }
    }
    /// A contract address on a branch: derived from the branch id too, so a deploy on a
    /// branch never takes the address the same creator and nonce have on `main` (a merge
    /// carries the branch's deploy to its address).
    pub fn contract_in(branch: &Hash, creator: &Address, nonce: u64) -> Self {
        let h = Hash::of_parts(&[
            b"contract-in-branch",
            &branch.0,
            &[creator.tag],
            &creator.key,
            &nonce.to_be_bytes(),
        ]);
        Address {
            tag: TAG_CONTRACT,
            key: h.0,
        }
    }
    /// The public key of an account address (None for contracts).
    pub fn public_key(&self) -> Option<PublicKey> {
        (self.tag == TAG_ACCOUNT).then_some(PublicKey(self.key))
    }
    /// The 33 raw bytes (tag ‖ key) used in state keys and the binary codec.
    pub fn to_raw(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = self.tag;
        out[1..].copy_from_slice(&self.key);
        out
    }
    /// From the 33 raw bytes.
    pub fn from_raw(raw: &[u8; 33]) -> Result<Self, AddressError> {
        let tag = raw[0];
        if tag != TAG_ACCOUNT && tag != TAG_CONTRACT {
            return Err(AddressError {
                input: hex::encode(raw),
                reason: "unknown type tag",
            });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[1..]);
        Ok(Address { tag, key })
    }
    /// The base58check text form.
    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(38);
        buf.push(VERSION);
        buf.extend_from_slice(&self.to_raw());
        let check = Sha256::digest(Sha256::digest(&buf));
        buf.extend_from_slice(&check[..4]);
        bs58::encode(buf).into_string()
    }
    /// Parses the base58check text form.
    pub fn decode(s: &str) -> Result<Self, AddressError> {
        let err = |reason| AddressError {
            input: s.chars().take(80).collect(),
            reason,
        };
        let bytes = bs58::decode(s.trim())
            .into_vec()
            .map_err(|_| err("not base58"))?;
        if bytes.len() != 38 {
            return Err(err("wrong length"));
        }
        let (body, check) = bytes.split_at(34);
        let want = Sha256::digest(Sha256::digest(body));
        if want[..4] != *check {
            return Err(err("checksum mismatch (mistyped?)"));
        }
        if body[0] != VERSION {
            return Err(err("wrong version byte"));
        }
        let mut raw = [0u8; 33];
        raw.copy_from_slice(&body[1..]);
        Address::from_raw(&raw).map_err(|_| err("unknown type tag"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}
impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.encode())
    }
}
impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::decode(s)
    }
}
impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}
impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::decode(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use proptest::prelude::*;

    #[test]
    fn extreme_payloads_share_the_prefix() {
        for tag in [TAG_ACCOUNT, TAG_CONTRACT] {
            for fill in [0u8, 0xff] {
                let a = Address {
                    tag,
                    key: [fill; 32],
                };
                let s = a.encode();
                assert!(s.starts_with('A'), "{s}");
                assert_eq!(s.len(), 52, "{s}");
            }
        }
    }

    #[test]
    fn round_trip_and_errors() {
        let a = Address::from_public_key(&Keypair::generate().public());
        let s = a.encode();
        assert_eq!(Address::decode(&s).unwrap(), a);
        let mut bad = s.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'a' { b'b' } else { b'a' };
        let e = Address::decode(std::str::from_utf8(&bad).unwrap()).unwrap_err();
        assert!(e.reason.contains("checksum") || e.reason.contains("length"));
        assert!(Address::decode("0OIl").is_err());
        assert!(Address::decode("").is_err());
        assert_eq!(a.public_key().unwrap(), PublicKey(a.key));
        assert!(Address::contract(&a, 1).public_key().is_none());
        assert_ne!(Address::contract(&a, 1), Address::contract(&a, 2));
    }

    proptest! {
        #[test]
        fn every_address_starts_with_a(key in any::<[u8; 32]>(), contract in any::<bool>()) {
            let a = Address { tag: if contract { TAG_CONTRACT } else { TAG_ACCOUNT }, key };
            let s = a.encode();
            prop_assert!(s.starts_with('A'));
            prop_assert_eq!(Address::decode(&s).unwrap(), a);
        }

        #[test]
        fn decode_never_panics(s in ".{0,80}") {
            let _ = Address::decode(&s);
        }
    }
}
