//! The DTT through the chain: produced and sealed blocks carry the canonical DTT and its
//! commitment, peers validate along it (`Chain::receive`), and forged DTTs are refused.

#![allow(clippy::cast_possible_truncation)] // small test indices and values

use super::*;
use aergo_os::io::IoConfig;
use aergo_types::block_ext::{Dtt, DttEntry};
use aergo_types::{Tx, TxKind, AER_PER_AERGO};

fn open(dir: &std::path::Path) -> Chain {
    Chain::open(ChainOptions {
        data_dir: dir.to_path_buf(),
        genesis: Genesis::dev(),
        io: IoService::start(IoConfig::default()),
    })
    .unwrap()
}

fn transfer(chain: &Chain, k: &Keypair, nonce: u64, to: Address, amount: u128) -> SignedTx {
    Tx {
        kind: TxKind::Transfer,
        nonce,
        from: k.public(),
        to: Some(to),
        amount,
        payload: vec![],
        gas_limit: 10_000,
        gas_price: chain.genesis().gas.min_price.0,
        chain_id: chain.chain_id(),
    }
    .sign(k)
}

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i + 10; 32])
}

fn addr(i: u8) -> Address {
    Address::from_public_key(&key(i).public())
}

/// Chains `a` (producing) and `b` (receiving), with block 1 funding accounts 0..8 from the
/// dev key received by `b`, and block 2's transfers: each account to its own recipient,
/// and three to one common account.
fn setup(a: &Chain, b: &Chain, producer: &Keypair) -> Vec<SignedTx> {
    let dev = Keypair::dev();
    let fund: Vec<SignedTx> = (0..8)
        .map(|i| transfer(a, &dev, u64::from(i), addr(i), 10 * AER_PER_AERGO))
        .collect();
    let b1 = a
        .produce(producer, fund, 1000, vec![])
        .unwrap()
        .applied
        .block;
    // One sender: each transfer waits for the one before it (the sender's nonce).
    let d = b1.body_ext.dtt.clone().unwrap();
    let chain: Vec<DttEntry> = (0..8u32)
        .map(|j| DttEntry::Parents(j.checked_sub(1).into_iter().collect()))
        .collect();
    assert_eq!(d.entries, chain);
    assert_eq!(b1.header.ext.dtt_root, Some(Hash::of(&d.encode())));
    assert!(matches!(
        b.receive(b1, 1000).unwrap(),
        Received::Extended(_)
    ));
    let mut txs: Vec<SignedTx> = (0..5)
        .map(|i| transfer(a, &key(i), 0, addr(100 + i), AER_PER_AERGO))
        .collect();
    txs.extend((5..8).map(|i| transfer(a, &key(i), 0, addr(200), AER_PER_AERGO)));
    txs
}

#[test]
fn produced_blocks_carry_the_canonical_dtt_and_peers_validate_along_it() {
    let producer = Keypair::from_seed(&[6; 32]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    let txs = setup(&a, &b, &producer);
    let p = a.produce(&producer, txs, 2000, vec![]).unwrap();
    let blk = p.applied.block;
    assert_eq!(blk.txs.len(), 8);
    let d = blk.body_ext.dtt.clone().unwrap();
    // Disjoint transfers are independent; the three to one account are chained.
    let mut want = vec![DttEntry::Parents(Vec::new()); 6];
    want.push(DttEntry::Parents(vec![5]));
    want.push(DttEntry::Parents(vec![6]));
    assert_eq!(d.entries, want);
    // The block survives the codec, and the peer validates it to the same state.
    let blk = Block::decode(&blk.encode()).unwrap();
    assert!(matches!(
        b.receive(blk.clone(), 2000).unwrap(),
        Received::Extended(_)
    ));
    assert_eq!(b.tip().header.state_root, a.tip().header.state_root);
    assert_eq!(b.tip().hash, blk.hash());
    assert_eq!(
        b.account_latest(&addr(200)).unwrap().balance,
        3 * AER_PER_AERGO
    );
    // An empty block carries no DTT.
    let empty = a
        .produce(&producer, vec![], 3000, vec![])
        .unwrap()
        .applied
        .block;
    assert_eq!(empty.body_ext.dtt, None);
    assert_eq!(empty.header.ext.dtt_root, None);
}

#[test]
fn a_sealed_pending_block_carries_the_dtt() {
    let producer = Keypair::from_seed(&[6; 32]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    let txs = setup(&a, &b, &producer);
    let mut p = a.open_pending(producer.public(), 2000, vec![]).unwrap();
    for t in &txs {
        assert!(matches!(p.push(&a, t).unwrap(), PushOutcome::Pushed(_)));
    }
    let blk = a.seal(&producer, p).unwrap().applied.block;
    let d = blk.body_ext.dtt.clone().unwrap();
    assert_eq!(d.entries.len(), 8);
    assert_eq!(d.entries[7], DttEntry::Parents(vec![6]));
    assert!(blk.header.ext.seq_hash.is_some());
    assert!(matches!(
        b.receive(blk, 2000).unwrap(),
        Received::Extended(_)
    ));
    assert_eq!(b.tip().header.state_root, a.tip().header.state_root);
}

#[test]
fn forged_dtts_are_refused() {
    let producer = Keypair::from_seed(&[6; 32]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    let txs = setup(&a, &b, &producer);
    let good = a
        .produce(&producer, txs, 2000, vec![])
        .unwrap()
        .applied
        .block;
    let d = good.body_ext.dtt.clone().unwrap();
    let set = |blk: &mut Block, d: Dtt| {
        blk.header.ext.dtt_root = Some(Hash::of(&d.encode()));
        blk.body_ext.dtt = Some(d);
    };
    let with_entry = |d: &Dtt, j: usize, e: DttEntry| {
        let mut d = d.clone();
        d.entries[j] = e;
        d
    };
    let forged: Vec<(&str, Block)> = vec![
        // A dependency removed: the last transfer to the common account runs with the
        // one before it.
        ("not the canonical one: transaction 7 has no parents", {
            let mut blk = good.clone();
            set(&mut blk, with_entry(&d, 7, DttEntry::Parents(Vec::new())));
            blk
        }),
        // A dependency added that no access needs.
        ("transaction 3 has parents [2]", {
            let mut blk = good.clone();
            set(&mut blk, with_entry(&d, 3, DttEntry::Parents(vec![2])));
            blk
        }),
        // A barrier where none is needed.
        ("transaction 4 has a barrier", {
            let mut blk = good.clone();
            set(&mut blk, with_entry(&d, 4, DttEntry::Barrier));
            blk
        }),
        // A cycle: a forward reference.
        ("not an earlier transaction", {
            let mut blk = good.clone();
            set(&mut blk, with_entry(&d, 0, DttEntry::Parents(vec![7])));
            blk
        }),
        ("8 transactions", {
            let mut blk = good.clone();
            let mut short = d.clone();
            short.entries.pop();
            set(&mut blk, short);
            blk
        }),
        ("wrong DTT commitment", {
            let mut blk = good.clone();
            blk.header.ext.dtt_root = Some(Hash::of(b"not the DTT"));
            blk
        }),
        ("does not commit to", {
            let mut blk = good.clone();
            blk.header.ext.dtt_root = None;
            blk
        }),
        ("the block lacks", {
            let mut blk = good.clone();
            blk.body_ext.dtt = None;
            blk
        }),
    ];
    for (want, mut blk) in forged {
        blk.header.sign(&producer);
        match b.receive(blk, 2000) {
            Err(ChainError::InvalidBlock { reason, .. }) => {
                assert!(reason.contains(want), "{want}: {reason}")
            }
            other => panic!("{want}: expected an invalid block, got {other:?}"),
        }
        assert_eq!(b.tip().header.height, 1);
    }
    // The producer's own block is fine.
    assert!(matches!(
        b.receive(good, 2000).unwrap(),
        Received::Extended(_)
    ));
    assert_eq!(b.tip().header.state_root, a.tip().header.state_root);
}

#[test]
fn a_chain_of_random_blocks_syncs_along_its_dtts() {
    // 30 blocks of transfers among 8 accounts (some independent, some chained), produced
    // on `a` and received by `b`, validated along each block's DTT: `b` reaches `a`'s state
    // root at every height.
    use rand::{Rng, SeedableRng};
    let producer = Keypair::from_seed(&[6; 32]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    setup(&a, &b, &producer);
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut nonces = [0u64; 8];
    for h in 2..32u64 {
        let n = rng.gen_range(1..24);
        let txs: Vec<SignedTx> = (0..n)
            .map(|_| {
                let from = rng.gen_range(0..8u8);
                let to = if rng.gen_bool(0.3) {
                    addr(rng.gen_range(0..8))
                } else {
                    addr(100 + rng.gen_range(0..50))
                };
                let nonce = nonces[from as usize];
                nonces[from as usize] += 1;
                transfer(&a, &key(from), nonce, to, 1000)
            })
            .collect();
        let blk = a
            .produce(&producer, txs, h * 1000, vec![])
            .unwrap()
            .applied
            .block;
        assert_eq!(blk.txs.len(), n as usize, "height {h}");
        assert!(blk.body_ext.dtt.is_some());
        assert!(matches!(
            b.receive(blk, h * 1000).unwrap(),
            Received::Extended(_)
        ));
        assert_eq!(b.tip().header.state_root, a.tip().header.state_root);
    }
    assert_eq!(b.tip().header.height, 31);
}
