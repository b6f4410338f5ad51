//! What every engine shares: [`Slot`] (a slot a node may fill), and the `solo` engine.
//!
//! The engines themselves are one closed enum, [`crate::engine::Engine`] (`solo`, DPoS,
//! PoA): each answers when (and whether) this node produces the next block on a given
//! parent, whether a block's producer and timing are valid on its parent, and which height
//! is final. `solo` is the one-producer case: no slot clock (a block comes at least one
//! interval after its parent), every block final at once, no reorganisation.

use aergo_types::genesis::ConsensusParams;
use aergo_types::{Header, PublicKey};

/// A slot this node may fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The block's timestamp (the node waits until then).
    pub timestamp_ms: u64,
    /// Engine data for the header.
    pub consensus: Vec<u8>,
}

/// One producer: the configured address, or (dev chains) whichever key the node runs with.
pub struct Solo {
    interval_ms: u64,
    producer: Option<PublicKey>,
}

impl Solo {
    /// From the genesis consensus parameters.
    pub fn new(p: &ConsensusParams) -> Self {
        Self {
            interval_ms: p.block_interval_ms,
            producer: p.producer.and_then(|a| a.public_key()),
        }
    }
}

impl Solo {
    /// Slot length: the least time between a block and its parent.
    pub fn block_interval_ms(&self) -> u64 {
        self.interval_ms
    }
    /// Whether `me` may produce at all.
    pub fn is_producer(&self, me: &PublicKey) -> bool {
        self.producer.map(|p| p == *me).unwrap_or(true)
    }
    /// The next slot `me` may fill on top of `parent`: one interval after it, or now.
    pub fn next_slot(&self, parent: &Header, now_ms: u64, me: &PublicKey) -> Option<Slot> {
        if !self.is_producer(me) {
            return None;
        }
        let earliest = parent.timestamp_ms.saturating_add(self.interval_ms);
        Some(Slot {
            timestamp_ms: earliest.max(now_ms),
            consensus: Vec::new(),
        })
    }
    /// Checks a block header's producer and timing against its parent.
    pub fn validate(&self, parent: &Header, header: &Header) -> Result<(), String> {
        if let Some(p) = self.producer {
            if header.producer != p {
                return Err(format!(
                    "producer {} is not the solo producer {}",
                    header.producer, p
                ));
            }
        }
        if parent.height > 0
            && header.timestamp_ms < parent.timestamp_ms.saturating_add(self.interval_ms)
        {
            return Err(format!(
                "timestamp {} is less than one interval after the parent's {}",
                header.timestamp_ms, parent.timestamp_ms
            ));
        }
        if !header.consensus.is_empty() {
            return Err("solo blocks carry no consensus data".into());
        }
        Ok(())
    }
    /// Every block is final at once.
    pub fn finalized_height(&self, best_height: u64) -> u64 {
        best_height
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_types::genesis::Engine;
    use aergo_types::{Address, Hash, Keypair, Signature};

    fn header(ts: u64, height: u64, producer: PublicKey) -> Header {
        Header {
            chain_id: Hash::ZERO,
            height,
            parent: Hash::ZERO,
            timestamp_ms: ts,
            producer,
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus: vec![],
            ext: aergo_types::block_ext::HeaderExt::default(),
            signature: Signature::default(),
        }
    }

    #[test]
    fn solo_slots_and_validation() {
        let k = Keypair::from_seed(&[1; 32]);
        let other = Keypair::from_seed(&[2; 32]);
        let s = Solo::new(&ConsensusParams {
            engine: Engine::Solo,
            block_interval_ms: 1000,
            producer: Some(Address::from_public_key(&k.public())),
            dpos: None,
            poa: None,
        });
        let parent = header(5000, 1, k.public());
        assert_eq!(
            s.next_slot(&parent, 5200, &k.public())
                .unwrap()
                .timestamp_ms,
            6000
        );
        assert_eq!(
            s.next_slot(&parent, 9000, &k.public())
                .unwrap()
                .timestamp_ms,
            9000
        );
        assert!(s.next_slot(&parent, 0, &other.public()).is_none());
        assert!(s.validate(&parent, &header(6000, 2, k.public())).is_ok());
        assert!(s.validate(&parent, &header(5500, 2, k.public())).is_err());
        assert!(s
            .validate(&parent, &header(6000, 2, other.public()))
            .is_err());
        assert_eq!(s.finalized_height(42), 42);
    }
}
