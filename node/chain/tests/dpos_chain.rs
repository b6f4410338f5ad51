//! DPoS on real chains (RocksDB + block log), deterministic: blocks are made for chosen slots
//! with fixed timestamps and fed to other chains with an injected clock. Covers the
//! schedule's enforcement, LIB, a fork switch that reverts state (and survives reopening),
//! refusal of a fork below LIB, equivocation evidence, and orphans waiting for parents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aergo_chain::chain::Received;
use aergo_chain::dpos::encode_slot;
use aergo_chain::{Chain, ChainError, ChainOptions};
use aergo_os::io::{IoConfig, IoService};
use aergo_types::genesis::{DposGenesis, Engine, GenesisAccount, GenesisBp};
use aergo_types::{
    Address, Aer, Block, Genesis, Keypair, PublicKey, SignedTx, Tx, TxKind, TOTAL_SUPPLY,
};
use std::path::Path;

const T0: u64 = 1_000_000;
const INTERVAL: u64 = 1000;
use common::NOW;

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i; 32])
}

fn genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.consensus.engine = Engine::Dpos;
    g.consensus.block_interval_ms = INTERVAL;
    g.timestamp_ms = T0;
    g.gas.min_price = Aer(1);
    let mut balances: Vec<GenesisAccount> = (1..=4)
        .map(|i| GenesisAccount {
            address: Address::from_public_key(&key(i).public()),
            balance: Aer(1_000_000),
        })
        .collect();
    balances.push(GenesisAccount {
        address: Address::from_public_key(&key(9).public()),
        balance: Aer(TOTAL_SUPPLY - 4_000_000),
    });
    g.balances = balances;
    g.consensus.dpos = Some(DposGenesis {
        round_slots: 100,
        bp_count: 4,
        max_votes: 4,
        min_stake: Aer(100),
        unstake_lock_blocks: 10,
        bps: (1..=4)
            .map(|i| GenesisBp {
                address: Address::from_public_key(&key(i).public()),
                stake: Aer(1000),
                p2p_addr: None,
            })
            .collect(),
    });
    g.validate().unwrap();
    g
}

fn open(dir: &Path) -> Chain {
    Chain::open(ChainOptions {
        data_dir: dir.to_path_buf(),
        genesis: genesis(),
        io: IoService::start(IoConfig::default()),
    })
    .unwrap()
}

/// The BP keys in schedule order (equal stakes: ranked by public key).
fn order() -> Vec<Keypair> {
    let mut ks: Vec<Keypair> = (1..=4).map(key).collect();
    ks.sort_by_key(|k| k.public());
    ks
}

/// Produces the block of `slot` on `chain` with its scheduled producer.
fn make(chain: &Chain, slot: u64, txs: Vec<SignedTx>) -> Block {
    let k = &order()[(slot % 4) as usize];
    chain
        .produce(k, txs, T0 + slot * INTERVAL, encode_slot(slot))
        .unwrap()
        .applied
        .block
}

fn transfer(chain: &Chain, from: &Keypair, to: Address, amount: u128) -> SignedTx {
    let nonce = chain
        .account_latest(&Address::from_public_key(&from.public()))
        .unwrap()
        .nonce;
    Tx {
        kind: TxKind::Transfer,
        nonce,
        from: from.public(),
        to: Some(to),
        amount,
        payload: vec![],
        gas_limit: 1000,
        gas_price: 1,
        chain_id: chain.chain_id(),
    }
    .sign(from)
}

#[test]
fn schedule_is_enforced_and_lib_follows_two_thirds() {
    let d = tempfile::tempdir().unwrap();
    let c = open(&d.path().join("a"));
    // Slot 0 belongs to order()[0]; anyone else is refused without a trace.
    let wrong = &order()[1];
    let err = c
        .produce(wrong, vec![], T0, encode_slot(0))
        .err()
        .expect("wrong producer");
    assert!(matches!(err, ChainError::Consensus(_)), "{err}");
    assert_eq!(c.tip().header.height, 0);
    // LIB: floor(2·4/3)+1 = 3 distinct producers must build on a block.
    let mut libs = Vec::new();
    for slot in 0..6 {
        make(&c, slot, vec![]);
        libs.push(c.finalized_height());
    }
    assert_eq!(libs, vec![0, 0, 1, 2, 3, 4]);
    // Another chain accepts these blocks, refuses a forged timestamp and a stranger's slot.
    let o = open(&d.path().join("b"));
    let mut blocks: Vec<Block> = (1..=6)
        .map(|h| c.block_by_height(h).unwrap().unwrap())
        .collect();
    let mut bad = blocks[0].clone();
    bad.header.timestamp_ms += 1;
    bad.header.sign(&order()[0]);
    assert!(matches!(
        o.receive(bad, NOW),
        Err(ChainError::InvalidBlock { .. })
    ));
    let mut stranger = blocks[0].clone();
    stranger.header.producer = key(9).public();
    stranger.header.sign(&key(9));
    assert!(matches!(
        o.receive(stranger, NOW),
        Err(ChainError::InvalidBlock { .. })
    ));
    // A block from the future (beyond the allowed drift) is refused.
    assert!(o.receive(blocks[0].clone(), T0 - 5000).is_err());
    for b in blocks.drain(..) {
        assert!(matches!(o.receive(b, NOW).unwrap(), Received::Extended(_)));
    }
    assert_eq!(o.tip().hash, c.tip().hash);
    assert_eq!(o.finalized_height(), 4);
}

#[test]
fn longer_fork_wins_reverts_state_and_survives_reopening() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (open(&d.path().join("a")), open(&d.path().join("b")));
    let cdir = d.path().join("c");
    let c = open(&cdir);
    // Common prefix: slots 0..4 (heights 1..4) everywhere.
    for slot in 0..4 {
        let blk = make(&a, slot, vec![]);
        b.receive(blk.clone(), NOW).unwrap();
        c.receive(blk, NOW).unwrap();
    }
    assert_eq!(c.finalized_height(), 2);
    let rich = key(9);
    let x = Address::from_public_key(&PublicKey([42; 32]));
    // Fork 1 (two producers, like one half of a partition): slots 4, 5 with a transfer.
    let tx = transfer(&a, &rich, x, 777);
    let f1 = vec![make(&a, 4, vec![tx.clone()]), make(&a, 5, vec![])];
    // Fork 2 (the other half): slots 6, 7, 10.
    let f2 = vec![
        make(&b, 6, vec![]),
        make(&b, 7, vec![]),
        make(&b, 10, vec![]),
    ];
    for blk in &f1 {
        c.receive(blk.clone(), NOW).unwrap();
    }
    assert_eq!(c.account_latest(&x).unwrap().balance, 777);
    assert_eq!(c.tip().header.height, 6);
    let lib_before = c.finalized_height();
    assert_eq!(lib_before, 4);
    // Equal height: kept aside. Longer: switch.
    assert!(matches!(
        c.receive(f2[0].clone(), NOW).unwrap(),
        Received::Stored
    ));
    assert!(matches!(
        c.receive(f2[1].clone(), NOW).unwrap(),
        Received::Stored
    ));
    match c.receive(f2[2].clone(), NOW).unwrap() {
        Received::Reorged {
            common,
            reverted,
            applied,
        } => {
            assert_eq!(common, 4);
            assert_eq!(reverted, f1);
            let applied: Vec<_> = applied.into_iter().map(|a| a.block).collect();
            assert_eq!(applied, f2);
        }
        other => panic!("expected a reorg, got {other:?}"),
    }
    assert_eq!(c.tip().hash, b.tip().hash);
    assert_eq!(c.tip().header.state_root, b.tip().header.state_root);
    assert_eq!(
        c.account_latest(&x).unwrap().balance,
        0,
        "fork 1's transfer reverted"
    );
    assert!(c.tx_location(&tx.hash).unwrap().is_none());
    assert!(c.finalized_height() >= lib_before, "LIB never decreases");
    // Reads at past heights see the new branch.
    assert_eq!(c.account_at(&x, 5).unwrap().balance, 0);
    // Fork 1 cannot come back below LIB; extending it is now refused as below LIB or kept.
    drop(c);
    let c = open(&cdir);
    assert_eq!(c.tip().hash, b.tip().hash);
    assert!(c.finalized_height() >= lib_before);
    assert_eq!(c.verify_log_matches_index().unwrap(), 8);
}

#[test]
fn fork_below_lib_is_refused_and_equivocation_is_evidence() {
    common::fork_below_lib_is_refused_and_equivocation_is_evidence(open, make, &order()[7 % 4]);
}

#[test]
fn orphans_wait_for_their_parent() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (open(&d.path().join("a")), open(&d.path().join("b")));
    let blocks: Vec<Block> = (0..3).map(|s| make(&a, s, vec![])).collect();
    // Heights 2 and 3 first: they cannot connect yet.
    for blk in &blocks[1..] {
        assert!(matches!(
            b.receive(blk.clone(), NOW).unwrap(),
            Received::MissingParent { .. }
        ));
    }
    assert_eq!(b.tip().header.height, 0);
    // The parent arrives: the whole branch connects.
    let r = b.receive(blocks[0].clone(), NOW).unwrap();
    assert!(
        matches!(r, Received::Reorged { .. } | Received::Extended(_)),
        "{r:?}"
    );
    assert_eq!(b.tip().hash, a.tip().hash);
    assert_eq!(b.side_len(), 0);
}

/// Produces the block of `slot` with whichever BP key the chain accepts for it.
fn make_any(chain: &Chain, slot: u64) -> Block {
    for k in order() {
        if let Ok(p) = chain.produce(&k, vec![], T0 + slot * INTERVAL, encode_slot(slot)) {
            return p.applied.block;
        }
    }
    panic!("no BP may produce slot {slot}");
}

#[test]
fn a_minority_never_excludes_the_others_nor_finalizes_alone() {
    let d = tempfile::tempdir().unwrap();
    // Two of four BPs (one side of a 2/2 split) produce their slots for four rounds.
    let c = open(&d.path().join("half"));
    for slot in (0..400).filter(|s| s % 4 < 2) {
        make(&c, slot, vec![]);
    }
    let st = c.dpos_status().unwrap().unwrap();
    assert_eq!(st.schedule.round, 3);
    assert_eq!(
        st.schedule.members().len(),
        4,
        "a round below quorum excluded BPs: {:?}",
        st.schedule
    );
    assert_eq!(c.finalized_height(), 0, "two of four BPs finalized alone");
    assert!(
        st.scores.scores.values().all(|s| s.score == 0),
        "{:?}",
        st.scores
    );

    // Three of four (a quorum) produce a round: the silent one is scored and left out.
    let c = open(&d.path().join("three"));
    for slot in (0..100).filter(|s| s % 4 < 3) {
        make(&c, slot, vec![]);
    }
    assert!(c.finalized_height() > 0);
    make_any(&c, 100);
    let st = c.dpos_status().unwrap().unwrap();
    assert_eq!(st.schedule.round, 1);
    assert_eq!(st.schedule.members().len(), 3, "{:?}", st.schedule);
    assert!(!st.schedule.members().contains(&order()[3].public()));
}
