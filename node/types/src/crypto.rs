//! ed25519 keys, signing and the consensus rule for signature validity.
//!
//! Keys and signing use `ed25519-dalek`. Verification uses the ZIP-215 rule: single
//! verification is `ed25519-zebra`'s, batch verification ([`verify_batch`]) is
//! `ed25519-zebra`'s batch equation written out here on the same `curve25519-dalek`, so it can
//! take public keys already decompressed from a bounded cache (a sender's key is a square root
//! to decompress, about a sixth of a batch's cost per signature) and draw its random
//! coefficients from one seeded ChaCha generator per batch instead of one OS call each. Both
//! paths check the cofactored equation and accept exactly the same set of (key, message,
//! signature) triples; tests pin our batch against `ed25519-zebra`'s. `ed25519-dalek`'s own
//! batch verification is cofactored while its single verification is not, so the two can
//! disagree on crafted small-order inputs; a node that verified blocks in batches and
//! transactions singly with dalek could fork. Tests below pin the agreement on such inputs.
//!
//! Until 2026-12-06 verification used `ed25519-consensus`, the same rule on
//! `curve25519-dalek-ng`, whose arithmetic is serial only; `ed25519-zebra` runs on
//! `curve25519-dalek` 4, which picks its AVX2 / AVX-512 backend at run time. Tests pin that
//! the two accept exactly the same signatures (the small-order grid, non-canonical
//! encodings, random corruptions), so no chain verified before changes its verdicts.

use crate::hash::Hash;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A key or signature that could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    /// Wrong length or not hex.
    #[error("invalid {what}: expected {len} hex-encoded bytes")]
    Format {
        /// What was parsed.
        what: &'static str,
        /// Expected byte length.
        len: usize,
    },
}

/// An ed25519 public key (32 bytes, not validated as a curve point until verification).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Default for Signature {
    fn default() -> Self {
        Signature([0; 64])
    }
}

/// A signing key pair. The secret is zeroised on drop by `ed25519-dalek`.
#[derive(Clone)]
pub struct Keypair {
    inner: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// A fresh random key from the OS RNG.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        Self {
            inner: ed25519_dalek::SigningKey::generate(&mut rng),
        }
    }
    /// From a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }
    /// The well-known funded account of the dev genesis. Never use it on a real network.
    pub fn dev() -> Self {
        Self::from_seed(&Hash::of(b"aergo dev account").0)
    }
    /// The secret seed (handle with care).
    pub fn seed(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }
    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.inner.verifying_key().to_bytes())
    }
    /// Signs a message.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.inner.sign(msg).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

impl PublicKey {
    /// Verifies `sig` over `msg` under the ZIP-215 rule.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        match ed25519_zebra::VerificationKey::try_from(self.0) {
            Ok(vk) => vk
                .verify(&ed25519_zebra::Signature::from(sig.0), msg)
                .is_ok(),
            Err(_) => false,
        }
    }
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| KeyError::Format {
            what: "public key",
            len: 32,
        })?;
        Ok(PublicKey(b))
    }
}

impl Signature {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 128 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut b = [0u8; 64];
        hex::decode_to_slice(s, &mut b).map_err(|_| KeyError::Format {
            what: "signature",
            len: 64,
        })?;
        Ok(Signature(b))
    }
}

/// Verifies many signatures at once. Returns one verdict per item, identical to what
/// [`PublicKey::verify`] returns for each (ZIP-215 makes batch and single agree). A batch
/// that fails is bisected to find the invalid items.
pub fn verify_batch(items: &[(PublicKey, &[u8], Signature)]) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    verify_range(items, 0, &mut out);
    out
}

fn verify_range(items: &[(PublicKey, &[u8], Signature)], base: usize, out: &mut [bool]) {
    if items.is_empty() {
        return;
    }
    if items.len() <= 2 {
        for (i, (pk, msg, sig)) in items.iter().enumerate() {
            if let Some(slot) = out.get_mut(base + i) {
                *slot = pk.verify(msg, sig);
            }
        }
        return;
    }
    if batch_holds(items) {
        for slot in out.iter_mut().skip(base).take(items.len()) {
            *slot = true;
        }
        return;
    }
    let mid = items.len() / 2;
    let (a, b) = items.split_at(mid);
    verify_range(a, base, out);
    verify_range(b, base + mid, out);
}

/// Shards of the decompressed-key cache.
const KEY_SHARDS: usize = 16;
/// Keys per shard before the shard is cleared (16 × 2,048 keys, ~6 MB in all).
const KEYS_PER_SHARD: usize = 2048;

type KeyShard = parking_lot::Mutex<std::collections::HashMap<[u8; 32], EdwardsPoint>>;

/// Public keys already decompressed: a sender's next transactions skip the square root
/// that decompressing its key costs. A pure function's results, so the cache cannot change
/// a verdict; keys that do not decompress are not kept, and a full shard is cleared.
static KEYS: std::sync::LazyLock<[KeyShard; KEY_SHARDS]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|_| Default::default()));

/// `key` as a curve point (ZIP-215: any encoding `CompressedEdwardsY::decompress` takes).
fn point_of(key: &[u8; 32]) -> Option<EdwardsPoint> {
    let shard = &KEYS[usize::from(key[0]) % KEY_SHARDS];
    if let Some(p) = shard.lock().get(key) {
        return Some(*p);
    }
    let p = CompressedEdwardsY(*key).decompress()?;
    let mut s = shard.lock();
    if s.len() >= KEYS_PER_SHARD {
        s.clear();
    }
    s.insert(*key, p);
    Some(p)
}

/// Whether every signature of the batch holds: `ed25519-zebra`'s batch equation (ZIP-215),
/// `[8]([−Σ zᵢsᵢ]B + Σ zᵢRᵢ + Σ (Σ zᵢkᵢ)A) = 0` with one term per distinct key, random
/// 128-bit `zᵢ` (from a ChaCha generator seeded by the OS once per batch), `kᵢ =
/// SHA-512(R ‖ A ‖ M) mod ℓ`, `s` canonical, `R` and `A` any encoding that decompresses.
/// Keys come from the cache ([`point_of`]). The tests pin that it agrees with
/// `ed25519-zebra`'s batch verifier and with single verification.
#[allow(non_snake_case)]
fn batch_holds(items: &[(PublicKey, &[u8], Signature)]) -> bool {
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use rand::{RngCore, SeedableRng};
    use sha2::Digest;
    let mut rng = match rand::rngs::StdRng::from_rng(rand::rngs::OsRng) {
        Ok(r) => r,
        Err(_) => return false, // No entropy: the caller falls back to single checks.
    };
    // Items grouped by key (sorted indices), so each key's point and coefficient is one
    // term of the multiscalar multiplication.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_unstable_by_key(|i| items.get(*i).map(|t| t.0 .0));
    let mut B_coeff = Scalar::ZERO;
    let mut coeffs = Vec::with_capacity(items.len() * 2 + 1);
    let mut points = Vec::with_capacity(items.len() * 2 + 1);
    let mut a_terms: Vec<(Scalar, EdwardsPoint)> = Vec::new();
    let mut current: Option<[u8; 32]> = None;
    for i in order {
        let Some((pk, msg, sig)) = items.get(i) else {
            return false;
        };
        if current != Some(pk.0) {
            let Some(A) = point_of(&pk.0) else {
                return false;
            };
            a_terms.push((Scalar::ZERO, A));
            current = Some(pk.0);
        }
        let (r_bytes, s_bytes) = sig.0.split_at(32);
        let Ok(r_arr) = <[u8; 32]>::try_from(r_bytes) else {
            return false;
        };
        let Ok(s_arr) = <[u8; 32]>::try_from(s_bytes) else {
            return false;
        };
        let Some(R) = CompressedEdwardsY(r_arr).decompress() else {
            return false;
        };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_arr)) else {
            return false;
        };
        let k = Scalar::from_bytes_mod_order_wide(
            &sha2::Sha512::new()
                .chain_update(r_arr)
                .chain_update(pk.0)
                .chain_update(msg)
                .finalize()
                .into(),
        );
        let mut zb = [0u8; 16];
        rng.fill_bytes(&mut zb);
        let z = Scalar::from(u128::from_le_bytes(zb));
        B_coeff -= z * s;
        coeffs.push(z);
        points.push(R);
        if let Some(t) = a_terms.last_mut() {
            t.0 += z * k;
        }
    }
    coeffs.push(B_coeff);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    for (c, p) in a_terms {
        coeffs.push(c);
        points.push(p);
    }
    EdwardsPoint::vartime_multiscalar_mul(coeffs.iter(), points.iter())
        .mul_by_cofactor()
        .is_identity()
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}
impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

macro_rules! hex_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_serde!(PublicKey);
hex_serde!(Signature);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sign_and_verify() {
        let k = Keypair::generate();
        let sig = k.sign(b"msg");
        assert!(k.public().verify(b"msg", &sig));
        assert!(!k.public().verify(b"msh", &sig));
        let other = Keypair::generate();
        assert!(!other.public().verify(b"msg", &sig));
        assert_eq!(Keypair::from_seed(&k.seed()).public(), k.public());
    }

    /// Small-order key and R with s = 0: valid under ZIP-215's cofactored equation
    /// ([8]([s]B - R - [k]A) = 0). dalek's strict single verification rejects it while a
    /// cofactored batch accepts it — the disagreement our rule must not have.
    #[test]
    fn batch_and_single_agree_on_small_order_edge_cases() {
        // The identity point encoding (y = 1) is a small-order point.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&ident);
        let pk = PublicKey(ident);
        let sig = Signature(sig);
        let single = pk.verify(b"anything", &sig);
        assert!(single, "ZIP-215 accepts the small-order identity triple");
        let k = Keypair::generate();
        let good = k.sign(b"x");
        let items = vec![
            (pk, &b"anything"[..], sig),
            (k.public(), &b"x"[..], good),
            (k.public(), &b"x"[..], good),
        ];
        assert_eq!(verify_batch(&items), vec![true, true, true]);
        // dalek's strict verification would reject the same triple: prove the difference.
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&ident).unwrap();
        assert!(vk
            .verify_strict(b"anything", &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_err());
    }

    #[test]
    fn batch_finds_each_invalid_item() {
        let keys: Vec<Keypair> = (0..9).map(|_| Keypair::generate()).collect();
        let msgs: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; 10]).collect();
        let mut items: Vec<(PublicKey, &[u8], Signature)> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| (k.public(), m.as_slice(), k.sign(m)))
            .collect();
        items[3].2 .0[5] ^= 1;
        items[7].1 = b"other";
        let got = verify_batch(&items);
        let want: Vec<bool> = items.iter().map(|(p, m, s)| p.verify(m, s)).collect();
        assert_eq!(got, want);
        assert_eq!(got.iter().filter(|b| !**b).count(), 2);
    }

    /// The verdict of `ed25519-consensus`, the verifier before `ed25519-zebra`.
    fn consensus_verdict(pk: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
        ed25519_consensus::VerificationKey::try_from(*pk)
            .and_then(|vk| vk.verify(&ed25519_consensus::Signature::from(*sig), msg))
            .is_ok()
    }

    /// Every pair of small-order points as key and R, with s = 0, s = 1, s = ℓ (not
    /// canonical) and s = 2^255 - 19 + 1, and each point's non-canonical encodings: both
    /// verifiers give the same verdict, singly and in a batch (ZIP-215 accepts the s = 0
    /// triples).
    #[test]
    fn zebra_and_consensus_agree_on_the_small_order_grid() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let mut points: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().0).collect();
        // Non-canonical encodings: y + p where it fits in 255 bits, and the sign bit set on x = 0.
        for p in points.clone() {
            let mut y = p;
            y[31] &= 0x7f;
            let mut carry = 0u16;
            let mut big = y;
            // y + (2^255 - 19): add 2^255 - 19 = 0x7fff...ffed in little endian.
            let mut modulus = [0xffu8; 32];
            modulus[0] = 0xed;
            modulus[31] = 0x7f;
            for i in 0..32 {
                let s = u16::from(big[i]) + u16::from(modulus[i]) + carry;
                big[i] = (s & 0xff) as u8;
                carry = s >> 8;
            }
            if carry == 0 && big[31] & 0x80 == 0 {
                big[31] |= p[31] & 0x80;
                points.push(big);
            }
            let mut signed = p;
            signed[31] |= 0x80;
            points.push(signed);
        }
        let ell: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut scalars: Vec<[u8; 32]> = vec![[0; 32], ell];
        let mut one = [0u8; 32];
        one[0] = 1;
        scalars.push(one);
        let mut accepted = 0;
        let mut items = Vec::new();
        for a in &points {
            for r in &points {
                for s in &scalars {
                    let mut sig = [0u8; 64];
                    sig[..32].copy_from_slice(r);
                    sig[32..].copy_from_slice(s);
                    let ours = PublicKey(*a).verify(b"zip215", &Signature(sig));
                    assert_eq!(
                        ours,
                        consensus_verdict(a, b"zip215", &sig),
                        "A {} R {} s {}",
                        hex::encode(a),
                        hex::encode(r),
                        hex::encode(s)
                    );
                    accepted += usize::from(ours);
                    items.push((PublicKey(*a), &b"zip215"[..], Signature(sig)));
                }
            }
        }
        assert!(accepted >= 64, "ZIP-215 accepts the small-order s = 0 grid");
        let single: Vec<bool> = items.iter().map(|(p, m, s)| p.verify(m, s)).collect();
        assert_eq!(verify_batch(&items), single);
        // Our batch equation against `ed25519-zebra`'s, chunk by chunk, each chunk twice (the
        // second time with its keys cached), mixed with valid signatures.
        let k = Keypair::from_seed(&[3; 32]);
        let good = (k.public(), &b"zip215"[..], k.sign(b"zip215"));
        let mut held = 0;
        let accepted_items: Vec<_> = items
            .iter()
            .zip(&single)
            .filter(|(_, ok)| **ok)
            .map(|(t, _)| *t)
            .collect();
        for (n, chunk) in items.chunks(5).chain(accepted_items.chunks(4)).enumerate() {
            let mut batch = chunk.to_vec();
            batch.insert(n % batch.len(), good);
            for _ in 0..2 {
                let want = zebra_batch(&batch);
                assert_eq!(batch_holds(&batch), want, "chunk {n}");
                held += usize::from(want);
            }
        }
        assert!(held > 0, "some chunks hold");
    }

    fn zebra_batch(items: &[(PublicKey, &[u8], Signature)]) -> bool {
        let mut v = ed25519_zebra::batch::Verifier::new();
        for (pk, msg, sig) in items {
            v.queue((
                ed25519_zebra::VerificationKeyBytes::from(pk.0),
                ed25519_zebra::Signature::from(sig.0),
                msg,
            ));
        }
        v.verify(rand::rngs::OsRng).is_ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random keys, messages and signatures, valid ones corrupted here and there:
        /// `ed25519-zebra` and `ed25519-consensus` agree.
        #[test]
        fn zebra_and_consensus_agree(
            seed in any::<[u8; 32]>(),
            msg in proptest::collection::vec(any::<u8>(), 0..64),
            flip in any::<(bool, u8, u8)>(),
            raw_pk in any::<[u8; 32]>(),
            raw_sig in proptest::collection::vec(any::<u8>(), 64),
        ) {
            let k = Keypair::from_seed(&seed);
            let mut sig = k.sign(&msg);
            let (on, idx, bit) = flip;
            if on { sig.0[(idx as usize) % 64] ^= 1 << (bit % 8); }
            prop_assert_eq!(k.public().verify(&msg, &sig), consensus_verdict(&k.public().0, &msg, &sig.0));
            let mut rs = [0u8; 64];
            rs.copy_from_slice(&raw_sig);
            prop_assert_eq!(PublicKey(raw_pk).verify(&msg, &Signature(rs)), consensus_verdict(&raw_pk, &msg, &rs));
            // The key's own point with a random R and s.
            prop_assert_eq!(k.public().verify(&msg, &Signature(rs)), consensus_verdict(&k.public().0, &msg, &rs));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random (possibly invalid) keys, messages and signatures: batch == single.
        #[test]
        fn batch_equals_single(
            seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..6),
            flips in proptest::collection::vec(any::<(bool, u8, u8)>(), 6),
            raw_pk in any::<[u8; 32]>(),
            raw_sig in proptest::collection::vec(any::<u8>(), 64),
        ) {
            let mut items = Vec::new();
            for (i, s) in seeds.iter().enumerate() {
                let k = Keypair::from_seed(s);
                let mut sig = k.sign(b"m");
                let (flip, idx, bit) = flips[i];
                if flip { sig.0[(idx as usize) % 64] ^= 1 << (bit % 8); }
                items.push((k.public(), &b"m"[..], sig));
            }
            let mut rs = [0u8; 64];
            rs.copy_from_slice(&raw_sig);
            items.push((PublicKey(raw_pk), &b"m"[..], Signature(rs)));
            let want: Vec<bool> = items.iter().map(|(p, m, s)| p.verify(m, s)).collect();
            prop_assert_eq!(verify_batch(&items), want);
        }
    }
}
