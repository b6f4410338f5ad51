//! PoA on real chains (RocksDB + block log), deterministic: blocks are made for chosen slots
//! with fixed timestamps and fed to other chains with an injected clock. Covers the
//! round-robin schedule in genesis order and slot ownership, refusal of a block from the
//! wrong producer or slot, LIB at floor(2N/3)+1 distinct producers, equivocation evidence,
//! empty slots left empty, a fork below LIB refused, a fork above it taken, and LIB
//! recomputed on reopening.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aergo_chain::chain::Received;
use aergo_chain::dpos::{decode_slot, encode_slot};
use aergo_chain::engine::Engine;
use aergo_chain::{Chain, ChainError, ChainOptions};
use aergo_os::io::{IoConfig, IoService};
use aergo_types::genesis::{Engine as EngineKind, GenesisAccount, PoaGenesis};
use aergo_types::{Address, Aer, Block, Genesis, Keypair, SignedTx, Tx, TxKind, TOTAL_SUPPLY};
use std::path::Path;

const T0: u64 = 1_000_000;
const INTERVAL: u64 = 500;
use common::NOW;

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i; 32])
}

/// The producers in slot order: deliberately not sorted by key.
fn order() -> Vec<Keypair> {
    vec![key(3), key(1), key(4), key(2)]
}

fn genesis(skip_empty_slots: bool) -> Genesis {
    let mut g = Genesis::dev();
    g.consensus.engine = EngineKind::Poa;
    g.consensus.block_interval_ms = INTERVAL;
    g.timestamp_ms = T0;
    g.gas.min_price = Aer(1);
    g.balances = vec![GenesisAccount {
        address: Address::from_public_key(&key(9).public()),
        balance: Aer(TOTAL_SUPPLY),
    }];
    g.consensus.poa = Some(PoaGenesis {
        producers: order()
            .iter()
            .map(|k| Address::from_public_key(&k.public()))
            .collect(),
        skip_empty_slots,
    });
    g.validate().unwrap();
    g
}

fn open_with(dir: &Path, skip: bool) -> Chain {
    Chain::open(ChainOptions {
        data_dir: dir.to_path_buf(),
        genesis: genesis(skip),
        io: IoService::start(IoConfig::default()),
    })
    .unwrap()
}

fn open(dir: &Path) -> Chain {
    open_with(dir, true)
}

/// Produces the block of `slot` on `chain` with its owner.
fn make(chain: &Chain, slot: u64, txs: Vec<SignedTx>) -> Block {
    let k = &order()[(slot % 4) as usize];
    chain
        .produce(k, txs, T0 + slot * INTERVAL, encode_slot(slot))
        .unwrap()
        .applied
        .block
}

fn tx(chain: &Chain, kind: TxKind, to: Option<Address>, amount: u128) -> SignedTx {
    let from = key(9);
    let nonce = chain
        .account_latest(&Address::from_public_key(&from.public()))
        .unwrap()
        .nonce;
    Tx {
        kind,
        nonce,
        from: from.public(),
        to,
        amount,
        payload: vec![],
        gas_limit: 1000,
        gas_price: 1,
        chain_id: chain.chain_id(),
    }
    .sign(&from)
}

#[test]
fn schedule_slot_ownership_and_lib_at_two_thirds() {
    let d = tempfile::tempdir().unwrap();
    let c = open(&d.path().join("a"));
    assert_eq!(c.engine().name(), "poa");
    assert!(matches!(c.engine(), Engine::Poa(_)));
    // Genesis order, not key order: slot s belongs to order()[s mod 4].
    for (i, k) in order().iter().enumerate() {
        let s = c.next_slot(T0, &k.public()).unwrap().unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(i as u64));
        assert_eq!(s.timestamp_ms, T0 + i as u64 * INTERVAL);
    }
    assert!(c.next_slot(T0, &key(9).public()).unwrap().is_none());
    assert!(!c.engine().is_producer(&key(9).public()));
    // Slot 0 belongs to order()[0]; anyone else is refused without a trace.
    let err = c
        .produce(&order()[1], vec![], T0, encode_slot(0))
        .err()
        .expect("wrong producer");
    assert!(matches!(err, ChainError::Consensus(_)), "{err}");
    // A block without a slot, or with a timestamp off its slot, is not produced either.
    assert!(c.produce(&order()[0], vec![], T0, vec![]).is_err());
    assert!(c
        .produce(&order()[0], vec![], T0 + 1, encode_slot(0))
        .is_err());
    assert_eq!(c.tip().header.height, 0);
    // LIB: floor(2·4/3)+1 = 3 distinct producers must build on a block.
    let mut libs = Vec::new();
    for slot in 0..6 {
        make(&c, slot, vec![]);
        libs.push(c.finalized_height());
    }
    assert_eq!(libs, vec![0, 0, 1, 2, 3, 4]);
    // Another chain accepts these blocks and refuses forgeries.
    let o = open(&d.path().join("b"));
    let blocks: Vec<Block> = (1..=6)
        .map(|h| c.block_by_height(h).unwrap().unwrap())
        .collect();
    let mut bad = blocks[0].clone();
    bad.header.timestamp_ms += 1;
    bad.header.sign(&order()[0]);
    assert!(matches!(
        o.receive(bad, NOW),
        Err(ChainError::InvalidBlock { .. })
    ));
    // A stranger, and a producer in another's slot.
    for k in [key(9), order()[2].clone()] {
        let mut b = blocks[0].clone();
        b.header.producer = k.public();
        b.header.sign(&k);
        assert!(matches!(
            o.receive(b, NOW),
            Err(ChainError::InvalidBlock { .. })
        ));
    }
    // A block from the future (beyond the allowed drift) is refused: seconds ahead, it is
    // early (clocks disagree, the sender is not blamed); minutes ahead, it is invalid.
    // Neither is kept: the block is taken as new below.
    let ts = blocks[0].header.timestamp_ms;
    match o.receive(blocks[0].clone(), ts - 5000) {
        Err(ChainError::Early { ahead_ms, .. }) => assert_eq!(ahead_ms, 5000),
        other => panic!("5 s ahead: {other:?}"),
    }
    assert!(matches!(
        o.receive(blocks[0].clone(), ts - 61_000),
        Err(ChainError::InvalidBlock { .. })
    ));
    // Only a producer's block is early: a stranger's is invalid, its sender blamed.
    let mut stranger = blocks[0].clone();
    stranger.header.producer = key(9).public();
    stranger.header.sign(&key(9));
    assert!(matches!(
        o.receive(stranger, ts - 5000),
        Err(ChainError::InvalidBlock { .. })
    ));
    for b in blocks {
        assert!(matches!(o.receive(b, NOW).unwrap(), Received::Extended(_)));
    }
    assert_eq!(o.tip().hash, c.tip().hash);
    assert_eq!(o.finalized_height(), 4);
    // A slot not after the parent's: slot 5's owner again at slot 5 on top of height 6.
    let tip = o.tip();
    let mut again = o.block_by_height(6).unwrap().unwrap();
    again.header.height = 7;
    again.header.parent = tip.hash;
    again.header.sign(&order()[1]);
    assert!(o.receive(again, NOW).is_err());
}

#[test]
fn staking_transactions_are_refused_on_poa() {
    let d = tempfile::tempdir().unwrap();
    let c = open(d.path());
    assert!(c.engine().staking().is_none());
    let p = c
        .produce(
            &order()[0],
            vec![tx(&c, TxKind::Stake, None, 10)],
            T0,
            encode_slot(0),
        )
        .unwrap();
    assert!(p.applied.block.txs.is_empty());
    assert!(p.rejected[0].1.contains("not enabled"), "{:?}", p.rejected);
}

#[test]
fn empty_slots_are_skipped_and_the_next_slot_still_works() {
    let d = tempfile::tempdir().unwrap();
    let c = open(&d.path().join("a"));
    assert!(c.engine().skips_empty_slots());
    assert!(!open_with(&d.path().join("full"), false)
        .engine()
        .skips_empty_slots());
    // Slot 0 has a transfer; slot 1's producer had nothing and made no block; slot 2's
    // producer builds on slot 0's block.
    let x = Address::from_public_key(&key(42).public());
    make(&c, 0, vec![tx(&c, TxKind::Transfer, Some(x), 5)]);
    // Past half of slot 1, its owner's next turn is slot 5; slot 2's owner is up.
    let late = T0 + INTERVAL + INTERVAL / 2 + 1;
    let s = c.next_slot(late, &order()[1].public()).unwrap().unwrap();
    assert_eq!(decode_slot(&s.consensus), Some(5));
    let s = c.next_slot(late, &order()[2].public()).unwrap().unwrap();
    assert_eq!(decode_slot(&s.consensus), Some(2));
    let b2 = make(&c, 2, vec![tx(&c, TxKind::Transfer, Some(x), 6)]);
    assert_eq!(b2.header.height, 2);
    let o = open(&d.path().join("b"));
    for h in 1..=2 {
        o.receive(c.block_by_height(h).unwrap().unwrap(), NOW)
            .unwrap();
    }
    assert_eq!(o.tip().hash, c.tip().hash);
    assert_eq!(o.account_latest(&x).unwrap().balance, 11);
    // The pre-confirmation window of slot 2: from slot 1's start to 90% of slot 2.
    assert_eq!(
        c.engine().preconfirm_window(2),
        Some((T0 + INTERVAL, T0 + 2 * INTERVAL + INTERVAL * 9 / 10))
    );
}

#[test]
fn fork_below_lib_is_refused_and_equivocation_is_evidence() {
    common::fork_below_lib_is_refused_and_equivocation_is_evidence(open, make, &order()[7 % 4]);
}

#[test]
fn longer_fork_above_lib_wins_and_reopen_recomputes_lib() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (open(&d.path().join("a")), open(&d.path().join("b")));
    let cdir = d.path().join("c");
    let c = open(&cdir);
    for slot in 0..4 {
        let blk = make(&a, slot, vec![]);
        b.receive(blk.clone(), NOW).unwrap();
        c.receive(blk, NOW).unwrap();
    }
    assert_eq!(c.finalized_height(), 2);
    // Fork 1: slots 4, 5. Fork 2: slots 6, 7, 10 — longer.
    let x = Address::from_public_key(&key(42).public());
    let f1 = vec![
        make(&a, 4, vec![tx(&a, TxKind::Transfer, Some(x), 777)]),
        make(&a, 5, vec![]),
    ];
    let f2 = [
        make(&b, 6, vec![]),
        make(&b, 7, vec![]),
        make(&b, 10, vec![]),
    ];
    for blk in &f1 {
        c.receive(blk.clone(), NOW).unwrap();
    }
    assert_eq!(c.account_latest(&x).unwrap().balance, 777);
    let lib_before = c.finalized_height();
    assert_eq!(lib_before, 4);
    assert!(matches!(
        c.receive(f2[0].clone(), NOW).unwrap(),
        Received::Stored
    ));
    c.receive(f2[1].clone(), NOW).unwrap();
    match c.receive(f2[2].clone(), NOW).unwrap() {
        Received::Reorged { common, .. } => assert_eq!(common, 4),
        other => panic!("expected a reorg, got {other:?}"),
    }
    assert_eq!(c.tip().hash, b.tip().hash);
    assert_eq!(c.account_latest(&x).unwrap().balance, 0);
    let lib = c.finalized_height();
    assert!(lib >= lib_before);
    // Reopening recomputes the same LIB from the blocks above the persisted one.
    drop(c);
    let c = open(&cdir);
    assert_eq!(c.finalized_height(), lib);
    assert_eq!(c.tip().hash, b.tip().hash);
    assert_eq!(c.verify_log_matches_index().unwrap(), 8);
    // And keeps finalizing: three more producers on top.
    let before = c.finalized_height();
    for slot in [11, 12, 13] {
        make(&c, slot, vec![]);
    }
    let lib = c.finalized_height();
    assert!(lib > before);
    let tip = c.tip().hash;
    // Without the database (no persisted LIB), the chain is replayed from the block log and
    // LIB recomputed from the blocks alone.
    drop(c);
    std::fs::remove_dir_all(cdir.join("db")).unwrap();
    let c = open(&cdir);
    assert_eq!(c.tip().hash, tip);
    assert_eq!(c.finalized_height(), lib);
}
