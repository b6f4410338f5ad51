//! Signatures this process already verified, so a validator checks a transaction's signature
//! once: at admission (JSON-RPC, gossip, forwarding), not again when a peer's block carries
//! it. A node that admitted a transaction from gossip and then validates the block that
//! includes it would otherwise verify the same signature twice, and signatures are most of a
//! block's validation (docs/BENCHMARKS.md).
//!
//! An entry is BLAKE3 of a domain tag, the transaction's hash (which commits to the sender's
//! public key and every signed field) and its signature. It is added only after that exact
//! signature verified, so finding it proves the same verdict: ed25519 verification is a pure
//! function of (key, message, signature), and single and batch checks give every signature
//! the same verdict (`aergo_types::crypto::verify_batch`). A miss only costs a verification.
//!
//! Bounded: two generations of [`GENERATION`] entries; when the current one is full it
//! becomes the previous one and the old previous one is dropped, so the newest entries
//! survive and the memory stays under ~5 MB (2 × 65,536 slots of 33 bytes). A client that floods it with its own valid
//! transactions can only evict entries, which costs verifications, never a wrong verdict.

use aergo_types::{Hash, SignedTx};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

/// Entries per generation: 7/8 of 65,536, the most a table of 65,536 slots holds before
/// it doubles.
pub const GENERATION: usize = 57_344;

/// The entry of a transaction's signature ([`entry`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry([u8; 32]);

/// foldhash, seeded at random: entries are BLAKE3 outputs, but of transactions clients
/// choose.
type Set = HashSet<Entry, foldhash::fast::RandomState>;

#[derive(Default)]
struct Generations {
    now: Set,
    old: Set,
}

/// The process's verified signatures.
static SEEN: LazyLock<Mutex<Generations>> = LazyLock::new(Default::default);

/// Lookups that found the signature verified already, and lookups that did not.
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);

/// The entry of `tx`'s signature (hashed once per lookup and remember: a caller that does
/// both computes it once).
pub fn entry(tx: &SignedTx) -> Entry {
    Entry(Hash::of_parts(&[b"aergo sigcache v1", &tx.hash.0, &tx.signature.0]).0)
}

impl Generations {
    /// Adds `e`, turning a full current generation into the previous one first.
    fn insert(&mut self, e: Entry) {
        if self.now.len() >= GENERATION {
            self.old = std::mem::take(&mut self.now);
        }
        self.now.insert(e);
    }
}

/// Notes that the signatures of `txs` verified.
pub fn remember<'a>(txs: impl IntoIterator<Item = &'a SignedTx>) {
    let entries: Vec<Entry> = txs.into_iter().map(entry).collect();
    remember_entries(entries);
}

/// [`remember`] of entries already computed.
pub fn remember_entries(entries: impl IntoIterator<Item = Entry>) {
    let mut g = SEEN.lock();
    for e in entries {
        g.insert(e);
    }
}

/// For each of `txs`, whether its signature verified before (one lock for all).
pub fn seen(txs: &[SignedTx]) -> Vec<bool> {
    seen_entries(&txs.iter().map(entry).collect::<Vec<_>>())
}

/// [`seen`] of entries already computed.
pub fn seen_entries(entries: &[Entry]) -> Vec<bool> {
    let out: Vec<bool> = {
        let g = SEEN.lock();
        entries
            .iter()
            .map(|e| g.now.contains(e) || g.old.contains(e))
            .collect()
    };
    let hits = out.iter().filter(|s| **s).count() as u64;
    HITS.fetch_add(hits, Ordering::Relaxed);
    MISSES.fetch_add(out.len() as u64 - hits, Ordering::Relaxed);
    out
}

/// Forgets every signature (benchmarks that measure verification, and tests).
pub fn clear() {
    let mut g = SEEN.lock();
    g.now.clear();
    g.old.clear();
}

/// Lookups so far that found a signature verified already, and that did not.
pub fn stats() -> (u64, u64) {
    (HITS.load(Ordering::Relaxed), MISSES.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_types::crypto::Keypair;
    use aergo_types::tx::{Tx, TxKind};

    fn tx(seed: u8, nonce: u64) -> SignedTx {
        let k = Keypair::from_seed(&[seed; 32]);
        Tx {
            chain_id: Hash::of(b"c"),
            kind: TxKind::Transfer,
            from: k.public(),
            to: None,
            amount: 1,
            nonce,
            gas_limit: 1000,
            gas_price: 1,
            payload: Vec::new(),
        }
        .sign(&k)
    }

    #[test]
    fn only_the_exact_signature_verified_is_known() {
        // One test touches the global cache (tests run in parallel in one process).
        clear();
        let a = tx(1, 0);
        let b = tx(1, 1);
        assert_eq!(seen(&[a.clone(), b.clone()]), vec![false, false]);
        remember([&a]);
        assert_eq!(seen(&[a.clone(), b.clone()]), vec![true, false]);
        // The same transaction with another signature (here: another transaction's) is
        // not known.
        let mut forged = a.clone();
        forged.signature = b.signature;
        assert_eq!(seen(&[forged]), vec![false]);
        // Generations: the newest entries survive, the memory stays bounded.
        let many: Vec<SignedTx> = (0..3u64).map(|n| tx(2, n)).collect();
        {
            let mut g = SEEN.lock();
            g.now.clear();
            g.old.clear();
            for i in 0..(2 * GENERATION) as u64 {
                let mut e = [0u8; 32];
                e[..8].copy_from_slice(&i.to_le_bytes());
                g.insert(Entry(e));
            }
        }
        remember(&many);
        assert_eq!(seen(&many), vec![true, true, true]);
        let g = SEEN.lock();
        assert!(g.now.len() + g.old.len() <= 2 * GENERATION);
        drop(g);
        clear();
        assert_eq!(seen(&many), vec![false, false, false]);
    }
}
