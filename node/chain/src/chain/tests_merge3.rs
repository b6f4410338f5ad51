//! Tests of consistent merges on in-process chains: a native balance changed on both sides
//! gets both deltas, a one-sided change applies, a replica re-executes the merge block to the
//! same state root, a merge block claiming the wrong strategy is invalid, and a merge whose
//! balance would go negative is refused and changes nothing. A private branch is merged by its
//! creator only.

use super::tests_branches::{addr, open, open_branch, tx, Blocks};
use super::*;
use crate::branches;
use aergo_types::block_ext::{MergeRef, MergeStrategy};
use aergo_types::branch::{BranchOp, MergeOp};
use aergo_types::{TxKind, AER_PER_AERGO};

#[test]
fn a_consistent_merge_adds_both_sides_deltas_and_refuses_a_negative_balance() {
    let dir = tempfile::tempdir().unwrap();
    let main = open(&dir.path().join("main"));
    let (dev, bp, cons_bp) = (
        Keypair::dev(),
        Keypair::from_seed(&[6; 32]),
        Keypair::from_seed(&[7; 32]),
    );
    let (bob, carol, dave) = (
        Keypair::from_seed(&[11; 32]),
        Keypair::from_seed(&[12; 32]),
        Keypair::from_seed(&[13; 32]),
    );
    let id = main.chain_id();
    let blocks = Blocks::new();
    let next = || blocks.next();
    let mk = |c: &Chain, txs: Vec<SignedTx>, key: &Keypair| blocks.mk(c, txs, key);
    let bal = |c: &Chain, k: &Keypair| c.account_latest(&addr(k)).unwrap().balance;
    // Height 1: bob gets 100. Height 2: branch `cons` (consistent) forks at 1.
    mk(
        &main,
        vec![tx(
            id,
            &dev,
            0,
            TxKind::Transfer,
            Some(addr(&bob)),
            100 * AER_PER_AERGO,
            vec![],
        )],
        &bp,
    );
    let create = BranchOp::Create {
        name: "cons".into(),
        fork_height: 1,
        producer: cons_bp.public(),
        strategy: MergeStrategy::Consistent,
        resolver: None,
        private: false,
    };
    mk(
        &main,
        vec![tx(id, &dev, 1, TxKind::Branch, None, 0, create.encode())],
        &bp,
    );
    let cons = open_branch(&main, "cons", &dir.path().join("cons"));
    let cid = cons.chain_id();
    let bob_base = bal(&main, &bob);
    // On cons: bob → carol 60. On main: bob → dave 30. Both sides changed bob.
    mk(
        &cons,
        vec![tx(
            cid,
            &bob,
            0,
            TxKind::Transfer,
            Some(addr(&carol)),
            60 * AER_PER_AERGO,
            vec![],
        )],
        &cons_bp,
    );
    mk(
        &main,
        vec![tx(
            id,
            &bob,
            0,
            TxKind::Transfer,
            Some(addr(&dave)),
            30 * AER_PER_AERGO,
            vec![],
        )],
        &bp,
    );
    let (bob_ours, bob_theirs) = (bal(&main, &bob), bal(&cons, &bob));
    let merge = |c: &Chain, nonce: u64, source_height: u64| {
        let op = MergeOp {
            source: "cons".into(),
            source_height,
        };
        let mtx = tx(id, &dev, nonce, TxKind::Merge, None, 0, op.encode());
        let mref = MergeRef {
            source: cid,
            source_tip: cons.hash_at(source_height).unwrap().unwrap(),
            source_height,
            strategy: MergeStrategy::Consistent,
            last: true,
            lists_root: Hash::ZERO,
        };
        let base = branches::merge_base(&c.view_at(c.tip().header.height).unwrap(), &{
            let v = c.view_at(c.tip().header.height).unwrap();
            branches::record(&v, "cons").unwrap().unwrap()
        })
        .unwrap();
        let mut candidates = Vec::new();
        for h in base + 1..=source_height {
            candidates.extend(cons.block_by_height(h).unwrap().unwrap().txs);
        }
        c.produce_merge(&bp, mtx, mref, candidates, next(), vec![])
    };
    let merged = merge(&main, 2, 2).unwrap();
    assert!(merged
        .applied
        .block
        .body_ext
        .merge
        .as_ref()
        .unwrap()
        .excluded
        .is_empty());
    // bob: ours + (theirs − base); carol only changed on cons; dave only on main.
    assert_eq!(bal(&main, &bob), bob_ours + bob_theirs - bob_base);
    assert_eq!(bal(&main, &carol), 60 * AER_PER_AERGO);
    assert_eq!(bal(&main, &dave), 30 * AER_PER_AERGO);
    // bob's nonce is the larger of the two sides' (1 on each).
    assert_eq!(main.account_latest(&addr(&bob)).unwrap().nonce, 1);
    // The merge base moved to (2 on cons, this block on main).
    let v = main.view_at(main.tip().header.height).unwrap();
    let rec = branches::record(&v, "cons").unwrap().unwrap();
    assert_eq!(
        branches::merge_point(&v, &rec).unwrap(),
        (2, main.tip().header.height)
    );

    // A replica re-executes every block, the merge too, to the same state root; a merge
    // block re-signed claiming the auto strategy is invalid.
    let replica = open(&dir.path().join("replica"));
    let top = main.tip().header.height;
    for h in 1..top {
        replica
            .apply(main.block_by_height(h).unwrap().unwrap())
            .unwrap();
    }
    let mut forged = main.block_by_height(top).unwrap().unwrap();
    if let Some(m) = forged.header.ext.merge.as_mut() {
        m.strategy = MergeStrategy::Auto;
    }
    forged.header.sign(&bp);
    let e = replica.apply(forged).unwrap_err().to_string();
    assert!(e.contains("strategy"), "{e}");
    let b = Block::decode(&main.block_by_height(top).unwrap().unwrap().encode()).unwrap();
    replica.apply(b).unwrap();
    assert_eq!(replica.tip().hash, main.tip().hash);

    // Second round: bob spends 9 on cons (the replay on the last merge's state holds), and
    // all but ~5 on main: together his balance would go negative. Refused, nothing changes.
    let left = bal(&main, &bob);
    mk(
        &cons,
        vec![tx(
            cid,
            &bob,
            1,
            TxKind::Transfer,
            Some(addr(&carol)),
            9 * AER_PER_AERGO,
            vec![],
        )],
        &cons_bp,
    );
    mk(
        &main,
        vec![tx(
            id,
            &bob,
            1,
            TxKind::Transfer,
            Some(addr(&dave)),
            left - 5 * AER_PER_AERGO - AER_PER_AERGO / 10,
            vec![],
        )],
        &bp,
    );
    let before = (main.tip().hash, bal(&main, &carol));
    match merge(&main, 3, 3) {
        Err(ChainError::InvalidTx { reason, .. }) => {
            assert!(
                reason.starts_with("consistent merge refused: 1 conflict"),
                "{reason}"
            );
            assert!(reason.contains("balance would be negative"), "{reason}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a merge into a negative balance was made"),
    }
    assert_eq!((main.tip().hash, bal(&main, &carol)), before);
}

/// A private branch is merged by its creator only: another account's merge transaction is
/// invalid, its creator's goes through.
#[test]
fn a_private_branch_is_merged_by_its_creator_only() {
    let dir = tempfile::tempdir().unwrap();
    let main = open(&dir.path().join("main"));
    let (dev, bp, sbp, eve) = (
        Keypair::dev(),
        Keypair::from_seed(&[6; 32]),
        Keypair::from_seed(&[7; 32]),
        Keypair::from_seed(&[14; 32]),
    );
    let id = main.chain_id();
    let blocks = Blocks::new();
    let next = || blocks.next();
    let mk = |c: &Chain, txs: Vec<SignedTx>, key: &Keypair| blocks.mk(c, txs, key);
    mk(
        &main,
        vec![tx(
            id,
            &dev,
            0,
            TxKind::Transfer,
            Some(addr(&eve)),
            AER_PER_AERGO,
            vec![],
        )],
        &bp,
    );
    let create = BranchOp::Create {
        name: "secret".into(),
        fork_height: 1,
        producer: sbp.public(),
        strategy: MergeStrategy::Auto,
        resolver: None,
        private: true,
    };
    mk(
        &main,
        vec![tx(id, &dev, 1, TxKind::Branch, None, 0, create.encode())],
        &bp,
    );
    let rec = branches::record(&main.view_at(2).unwrap(), "secret")
        .unwrap()
        .unwrap();
    assert!(rec.private);
    let secret = open_branch(&main, "secret", &dir.path().join("secret"));
    let sid = secret.chain_id();
    mk(
        &secret,
        vec![tx(
            sid,
            &dev,
            1,
            TxKind::Transfer,
            Some(addr(&eve)),
            7,
            vec![],
        )],
        &sbp,
    );
    let merge = |who: &Keypair, nonce: u64| {
        let op = MergeOp {
            source: "secret".into(),
            source_height: 2,
        };
        let mref = MergeRef {
            source: sid,
            source_tip: secret.tip().hash,
            source_height: 2,
            strategy: MergeStrategy::Auto,
            last: true,
            lists_root: Hash::ZERO,
        };
        let candidates = secret.block_by_height(2).unwrap().unwrap().txs;
        main.produce_merge(
            &bp,
            tx(id, who, nonce, TxKind::Merge, None, 0, op.encode()),
            mref,
            candidates,
            next(),
            vec![],
        )
    };
    match merge(&eve, 0) {
        Err(ChainError::InvalidTx { reason, .. }) => {
            assert!(reason.contains("only its creator merges it"), "{reason}")
        }
        other => panic!("eve merged a private branch: {:?}", other.map(|_| ())),
    }
    merge(&dev, 2).unwrap();
    assert_eq!(
        main.account_latest(&addr(&eve)).unwrap().balance,
        AER_PER_AERGO + 7
    );
}
