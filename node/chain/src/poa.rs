//! The PoA engine: a fixed, ordered producer set in round-robin slots, finality from
//! `floor(2N/3) + 1` distinct producers, the DPoS slot guard, and optionally empty slots
//! left empty.
//!
//! Everything here is a pure function of its inputs (chain data and an injected clock),
//! except the [`SlotGuard`], which persists the last signed slot with fsync.
//!
//! # Producers
//! The producer set is a plain value ([`PoaParams::producers`]) the engine is given: today
//! from the genesis `consensus.poa.producers`; repositories and branches will build it from
//! a registration or a directory. It never changes for the engine's life.
//!
//! # Slots
//! As in DPoS ([`crate::dpos`]): slots of `interval_ms` from `genesis_time_ms`; a block of
//! slot `s` carries `timestamp_ms = genesis_time_ms + s × interval_ms` exactly and
//! `consensus = s` as 8 bytes big-endian; slot `s` belongs to `producers[s mod N]`; a block's
//! slot is greater than its parent's, so missed slots are simply skipped. A producer fills
//! the current slot only while less than half of it has passed.
//!
//! # Empty slots
//! With `skip_empty_slots` a producer with nothing to include makes no block in its slot
//! ([`Poa::skips_empty_slots`]; the node's producer obeys it). The next producer's slot works
//! as usual (its block names its own slot). Empty blocks are what carries finality on an idle
//! chain, so the node's producer still fills its slot while the tip is not final, and goes
//! quiet once it is.
//!
//! # Finality and fork choice
//! [`crate::dpos::lib_height`] over the best chain with `N` = the producer count: final once
//! `floor(2N/3) + 1` distinct producers have built it or on top of it, monotonic. The chain's
//! fork choice is DPoS's: the longer chain wins, equal height keeps ours, never a
//! reorganisation below LIB. Another block of the same producer for the same slot is
//! equivocation evidence.

use std::collections::BTreeSet;

use parking_lot::{Mutex, RwLock};

use aergo_types::{Header, PublicKey};

use crate::consensus::Slot;
use crate::dpos::{
    check_slot_clock, encode_slot, lib_height, parent_slot, BlockMeta, DposError, SlotGuard,
};

/// Errors of the PoA engine's set-up.
#[derive(Debug, thiserror::Error)]
pub enum PoaError {
    /// Bad parameters.
    #[error("poa parameters: {0}")]
    Params(String),
}

/// PoA parameters: the slot clock and the producer set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoaParams {
    /// Start of slot 0, ms since the Unix epoch.
    pub genesis_time_ms: u64,
    /// Slot length.
    pub interval_ms: u64,
    /// The producers in slot order.
    pub producers: Vec<PublicKey>,
    /// Whether a producer with nothing to include leaves its slot empty.
    pub skip_empty_slots: bool,
}

impl PoaParams {
    /// Checks the parameters: a positive interval, at least one producer, no duplicates.
    pub fn check(&self) -> Result<(), PoaError> {
        if self.interval_ms == 0 {
            return Err(PoaError::Params("the interval must be positive".into()));
        }
        if self.producers.is_empty() {
            return Err(PoaError::Params("at least one producer".into()));
        }
        let distinct: BTreeSet<&PublicKey> = self.producers.iter().collect();
        if distinct.len() != self.producers.len() {
            return Err(PoaError::Params("a producer is listed twice".into()));
        }
        Ok(())
    }

    /// The slot containing `ts_ms` (`None` before genesis).
    pub fn slot_of(&self, ts_ms: u64) -> Option<u64> {
        ts_ms
            .checked_sub(self.genesis_time_ms)
            .and_then(|d| d.checked_div(self.interval_ms))
    }

    /// The start time of a slot.
    pub fn slot_start(&self, slot: u64) -> u64 {
        self.genesis_time_ms
            .saturating_add(slot.saturating_mul(self.interval_ms))
    }

    /// The owner of a slot.
    pub fn producer_of(&self, slot: u64) -> Option<PublicKey> {
        let n = u64::try_from(self.producers.len()).ok()?;
        let i = usize::try_from(slot.checked_rem(n)?).ok()?;
        self.producers.get(i).copied()
    }
}

/// The PoA engine (the `Poa` variant of [`crate::engine::Engine`]).
pub struct Poa {
    params: PoaParams,
    lib: RwLock<u64>,
    guard: Mutex<Option<SlotGuard>>,
}

impl Poa {
    /// An engine over a checked producer set.
    pub fn new(params: PoaParams) -> Result<Self, PoaError> {
        params.check()?;
        Ok(Self {
            params,
            lib: RwLock::new(0),
            guard: Mutex::new(None),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &PoaParams {
        &self.params
    }

    /// Slot length.
    pub fn block_interval_ms(&self) -> u64 {
        self.params.interval_ms
    }

    /// Whether `me` is one of the producers.
    pub fn is_producer(&self, me: &PublicKey) -> bool {
        self.params.producers.contains(me)
    }

    /// Whether a producer with nothing to include leaves its slot empty.
    pub fn skips_empty_slots(&self) -> bool {
        self.params.skip_empty_slots
    }

    /// Attaches the equivocation guard; [`Poa::next_slot`] then skips slots at or below the
    /// last signed one.
    pub fn attach_guard(&self, guard: SlotGuard) {
        *self.guard.lock() = Some(guard);
    }

    /// Must be called (and succeed) right before signing a block of `slot`.
    pub fn before_signing(&self, slot: u64) -> Result<(), DposError> {
        match self.guard.lock().as_mut() {
            Some(g) => g.record(slot),
            None => Err(DposError::Params("no slot guard attached".into())),
        }
    }

    /// The next slot `me` owns on top of `parent` at `now_ms`: the current slot while less
    /// than half of it has passed, never at or before the parent's slot or the last signed
    /// one. `None` if `me` is not a producer.
    pub fn next_slot(&self, parent: &Header, now_ms: u64, me: &PublicKey) -> Option<Slot> {
        let p = &self.params;
        let index = p.producers.iter().position(|k| k == me)?;
        let n = u64::try_from(p.producers.len()).ok()?;
        let index = u64::try_from(index).ok()?;
        let mut first = match p.slot_of(now_ms) {
            None => 0,
            Some(s) if now_ms - p.slot_start(s) < p.interval_ms / 2 => s,
            Some(s) => s.saturating_add(1),
        };
        if let Ok(Some(ps)) = parent_slot(parent) {
            first = first.max(ps.saturating_add(1));
        }
        if let Some(last) = self.guard.lock().as_ref().and_then(SlotGuard::last_signed) {
            first = first.max(last.saturating_add(1));
        }
        // The first slot at or after `first` that is `index` modulo `n`.
        let rem = first.checked_rem(n)?;
        let slot = first.checked_add((index + n - rem) % n)?;
        Some(Slot {
            timestamp_ms: p.slot_start(slot),
            consensus: encode_slot(slot),
        })
    }

    /// Checks a header's slot, timestamp and producer against its parent.
    pub fn validate(&self, parent: &Header, header: &Header) -> Result<(), String> {
        let p = &self.params;
        let slot = check_slot_clock("poa", parent, header, |s| p.slot_start(s))?;
        match p.producer_of(slot) {
            Some(bp) if bp == header.producer => Ok(()),
            Some(bp) => Err(format!(
                "slot {slot} belongs to {bp}, not {}",
                header.producer
            )),
            None => Err(format!("slot {slot} has no producer")),
        }
    }

    /// Updates LIB from the best chain's blocks (ascending, contiguous, ending at the tip;
    /// everything above the current LIB is enough). LIB never decreases.
    pub fn update_finality(&self, recent: &[BlockMeta]) -> u64 {
        let chain: Vec<(u64, PublicKey)> = recent.iter().map(|b| (b.height, b.producer)).collect();
        let mut lib = self.lib.write();
        if let Some(h) = lib_height(&chain, self.params.producers.len()) {
            *lib = (*lib).max(h);
        }
        *lib
    }

    /// The LIB height.
    pub fn lib(&self) -> u64 {
        *self.lib.read()
    }

    /// Sets LIB when reopening a chain (the chain persists it).
    pub fn restore_lib(&self, height: u64) {
        let mut lib = self.lib.write();
        *lib = (*lib).max(height);
    }

    /// LIB, capped at the best height.
    pub fn finalized_height(&self, best_height: u64) -> u64 {
        self.lib().min(best_height)
    }

    /// The window in which the producer of `slot` may pre-confirm: from the start of the
    /// previous slot (the earliest it can hold the block it builds on) until 90% of its own
    /// slot has passed.
    pub fn preconfirm_window(&self, slot: u64) -> (u64, u64) {
        let p = &self.params;
        let start = p.slot_start(slot.saturating_sub(1));
        let end = p
            .slot_start(slot)
            .saturating_add(p.interval_ms.saturating_mul(9) / 10);
        (start, end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dpos::decode_slot;
    use aergo_types::{Hash, Signature};

    fn pk(i: u8) -> PublicKey {
        PublicKey([i; 32])
    }

    fn params() -> PoaParams {
        PoaParams {
            genesis_time_ms: 1_000_000,
            interval_ms: 1000,
            producers: vec![pk(3), pk(1), pk(2)],
            skip_empty_slots: true,
        }
    }

    fn header(height: u64, slot: u64, producer: PublicKey) -> Header {
        Header {
            chain_id: Hash::ZERO,
            height,
            parent: Hash::ZERO,
            timestamp_ms: params().slot_start(slot),
            producer,
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus: encode_slot(slot),
            ext: aergo_types::block_ext::HeaderExt::default(),
            signature: Signature::default(),
        }
    }

    #[test]
    fn params_are_checked() {
        assert!(params().check().is_ok());
        let mut p = params();
        p.producers.clear();
        assert!(Poa::new(p).is_err());
        let mut p = params();
        p.producers.push(pk(1));
        assert!(Poa::new(p).is_err());
        let mut p = params();
        p.interval_ms = 0;
        assert!(Poa::new(p).is_err());
    }

    #[test]
    fn round_robin_slots_in_the_given_order() {
        let e = Poa::new(params()).unwrap();
        let p = e.params().clone();
        assert_eq!(p.producer_of(0), Some(pk(3)));
        assert_eq!(p.producer_of(1), Some(pk(1)));
        assert_eq!(p.producer_of(5), Some(pk(2)));
        let g = Header {
            consensus: vec![],
            ..header(0, 0, pk(0))
        };
        let s = e.next_slot(&g, p.slot_start(0), &pk(3)).unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(0));
        let s = e.next_slot(&g, p.slot_start(0), &pk(2)).unwrap();
        assert_eq!(
            (s.timestamp_ms, decode_slot(&s.consensus)),
            (p.slot_start(2), Some(2))
        );
        // Past half of its slot, the owner waits for its next turn.
        let s = e.next_slot(&g, p.slot_start(0) + 600, &pk(3)).unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(3));
        // Never at or before the parent's slot.
        let s = e
            .next_slot(&header(4, 7, pk(1)), p.slot_start(2), &pk(1))
            .unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(10));
        assert!(e.next_slot(&g, 0, &pk(9)).is_none());
        assert!(e.is_producer(&pk(1)) && !e.is_producer(&pk(9)));
        assert_eq!(e.validate(&g, &header(1, 0, pk(3))), Ok(()));
        assert_eq!(e.validate(&g, &header(1, 4, pk(1))), Ok(()));
        assert!(e.validate(&g, &header(1, 4, pk(2))).is_err());
        assert!(e
            .validate(&header(1, 4, pk(1)), &header(2, 4, pk(1)))
            .is_err());
        let mut off = header(1, 0, pk(3));
        off.timestamp_ms += 1;
        assert!(e.validate(&g, &off).is_err());
        assert_eq!(
            e.preconfirm_window(5),
            (p.slot_start(4), p.slot_start(5) + 900)
        );
    }

    #[test]
    fn lib_at_two_thirds_plus_one_and_monotonic() {
        let e = Poa::new(params()).unwrap();
        // N = 3: quorum 3 distinct producers.
        let metas: Vec<BlockMeta> = (1..=5)
            .map(|h| BlockMeta {
                height: h,
                slot: h - 1,
                producer: params().producer_of(h - 1).unwrap(),
            })
            .collect();
        assert_eq!(e.update_finality(&metas[..2]), 0);
        assert_eq!(e.update_finality(&metas[..3]), 1);
        assert_eq!(e.update_finality(&metas), 3);
        // A shorter view never lowers it.
        assert_eq!(e.update_finality(&metas[..3]), 3);
        assert_eq!(e.finalized_height(2), 2);
    }
}
