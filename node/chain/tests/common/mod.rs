//! Scenarios shared by the engine tests (`dpos_chain.rs`, `poa_chain.rs`): each engine file
//! supplies how to open a chain and make the block of a slot, and runs the same checks.

#![allow(dead_code)] // each test binary uses its own subset

use aergo_chain::chain::Received;
use aergo_chain::{Chain, ChainError};
use aergo_types::{Block, Keypair, SignedTx};
use std::path::Path;

/// Far enough in the future that no block is "from the future".
pub const NOW: u64 = u64::MAX / 4;

/// Eight slots on one chain, two of them also on another; then a longer fork from height 2
/// (below LIB 6) is refused and leaves the best chain alone, and the producer of slot 7
/// signing a second block for its slot is equivocation evidence.
pub fn fork_below_lib_is_refused_and_equivocation_is_evidence(
    open: impl Fn(&Path) -> Chain,
    make: impl Fn(&Chain, u64, Vec<SignedTx>) -> Block,
    producer_of_slot_7: &Keypair,
) {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (open(&d.path().join("a")), open(&d.path().join("b")));
    for slot in 0..8 {
        let blk = make(&a, slot, vec![]);
        if slot < 2 {
            b.receive(blk, NOW).unwrap();
        }
    }
    let lib = a.finalized_height();
    assert_eq!(lib, 6);
    let tip = a.tip();
    // A longer fork from height 2 (below LIB 6), built on b from slot 9 on.
    let fork: Vec<Block> = (9..17).map(|s| make(&b, s, vec![])).collect();
    let mut last = Ok(Received::Known);
    for blk in fork {
        last = a.receive(blk, NOW);
        if last.is_err() {
            break;
        }
    }
    assert!(
        matches!(last, Err(ChainError::Consensus(_))),
        "fork below LIB: {last:?}"
    );
    assert_eq!(a.tip().hash, tip.hash, "best chain unchanged");
    let orig = a.block_by_height(8).unwrap().unwrap();
    let mut twin = orig.clone();
    twin.header.state_root = aergo_types::Hash([7; 32]);
    twin.header.sign(producer_of_slot_7);
    assert!(matches!(
        a.receive(twin, NOW),
        Err(ChainError::Equivocation { .. })
    ));
    assert_eq!(a.tip().hash, tip.hash);
}
