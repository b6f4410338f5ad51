//! The side pool: blocks kept off the best chain (competing forks and orphans whose parent
//! has not arrived), bounded by count ([`SIDE_MAX`]) and by bytes ([`SIDE_MAX_BYTES`]). When
//! either bound would be passed, the highest blocks go first: they are the furthest from
//! anything the chain can connect.

use std::collections::HashMap;

use aergo_types::{Block, Hash};

use crate::limits::{SIDE_MAX, SIDE_MAX_BYTES};

/// Blocks by hash, with their encoded sizes and the sum of those.
#[derive(Default)]
pub(super) struct SidePool {
    blocks: HashMap<Hash, (Block, usize)>,
    bytes: usize,
}

impl SidePool {
    /// How many blocks it holds.
    pub(super) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// The encoded bytes it holds.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether it holds `hash`.
    pub(super) fn contains(&self, hash: &Hash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// The block `hash`.
    pub(super) fn get(&self, hash: &Hash) -> Option<&Block> {
        self.blocks.get(hash).map(|(b, _)| b)
    }

    /// Every block with its hash.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Hash, &Block)> {
        self.blocks.iter().map(|(h, (b, _))| (h, b))
    }

    /// Keeps `block`, first dropping the highest blocks while it would pass a bound. A block
    /// larger than the whole byte bound is not kept.
    pub(super) fn insert(&mut self, hash: Hash, block: Block) {
        let size = block.encode().len();
        if size > SIDE_MAX_BYTES {
            return;
        }
        self.remove(&hash);
        while !self.blocks.is_empty()
            && (self.blocks.len() >= SIDE_MAX || self.bytes + size > SIDE_MAX_BYTES)
        {
            let Some(k) = self
                .blocks
                .iter()
                .max_by_key(|(_, (b, _))| b.header.height)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.remove(&k);
        }
        self.bytes += size;
        self.blocks.insert(hash, (block, size));
    }

    /// Drops `hash` if held.
    pub(super) fn remove(&mut self, hash: &Hash) {
        if let Some((_, size)) = self.blocks.remove(hash) {
            self.bytes -= size;
        }
    }

    /// Keeps only the blocks `keep` accepts.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Block) -> bool) {
        let mut freed = 0;
        self.blocks.retain(|_, (b, size)| {
            let k = keep(b);
            if !k {
                freed += *size;
            }
            k
        });
        self.bytes -= freed;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aergo_types::{Header, Keypair, Signature, SignedTx, Tx, TxKind};

    fn block(height: u64, payload: usize) -> Block {
        let k = Keypair::from_seed(&[7; 32]);
        let tx: SignedTx = Tx {
            kind: TxKind::Transfer,
            nonce: height,
            from: k.public(),
            to: None,
            amount: 0,
            payload: vec![0; payload],
            gas_limit: 1,
            gas_price: 0,
            chain_id: Hash::ZERO,
        }
        .sign(&k);
        let header = Header {
            chain_id: Hash::ZERO,
            height,
            parent: Hash::ZERO,
            timestamp_ms: 0,
            producer: k.public(),
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus: Vec::new(),
            ext: Default::default(),
            signature: Signature::default(),
        };
        Block::new(header, vec![tx])
    }

    #[test]
    fn bytes_and_count_stay_bounded_and_the_highest_go_first() {
        let mut p = SidePool::default();
        // Blocks of ~190 KiB: the byte bound holds far fewer than SIDE_MAX of them.
        let big = 190 * 1024;
        let per = block(1, big).encode().len();
        let fit = SIDE_MAX_BYTES / per;
        assert!(fit < SIDE_MAX);
        for h in 1..=fit as u64 + 5 {
            let b = block(h, big);
            p.insert(b.hash(), b);
            assert!(p.bytes() <= SIDE_MAX_BYTES);
        }
        assert_eq!(p.len(), fit);
        // The newest insert stays; the highest of the older ones made room for it.
        let top = block(fit as u64 + 5, big);
        assert!(p.contains(&top.hash()));
        assert!(p.contains(&block(1, big).hash()));
        assert!(!p.contains(&block(fit as u64 + 4, big).hash()));
        // Removal and retain keep the byte count exact.
        p.remove(&top.hash());
        p.remove(&top.hash());
        assert_eq!(p.bytes(), p.len() * per);
        p.retain(|b| b.header.height <= 3);
        assert_eq!((p.len(), p.bytes()), (3, 3 * per));
        assert!(p.get(&block(2, big).hash()).is_some());
        assert_eq!(p.iter().count(), 3);
        // Small blocks: the count bound.
        let mut q = SidePool::default();
        for h in 1..=SIDE_MAX as u64 + 3 {
            let b = block(h, 0);
            q.insert(b.hash(), b);
        }
        assert_eq!(q.len(), SIDE_MAX);
    }
}
