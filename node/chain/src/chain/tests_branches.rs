//! Tests of branches and merges on in-process chains: O(1) creation, reads that fall
//! through to the parent at the fork height, transactions bound to their branch, an auto
//! merge with a double spend left out, and a replica re-executing the merge to the same
//! state root.

use super::*;
use crate::branches;
use aergo_os::io::IoConfig;
use aergo_types::block_ext::{ExclusionReason, MergeRef, MergeStrategy};
use aergo_types::branch::{BranchOp, MergeOp};
use aergo_types::{ReceiptStatus, Tx, TxKind, AER_PER_AERGO};
use std::sync::Arc;

pub(super) fn open(dir: &std::path::Path) -> Arc<Chain> {
    Arc::new(
        Chain::open(ChainOptions {
            data_dir: dir.to_path_buf(),
            genesis: Genesis::dev(),
            io: IoService::start(IoConfig::default()),
        })
        .unwrap(),
    )
}

pub(super) fn tx(
    chain_id: Hash,
    k: &Keypair,
    nonce: u64,
    kind: TxKind,
    to: Option<Address>,
    amount: u128,
    payload: Vec<u8>,
) -> SignedTx {
    Tx {
        kind,
        nonce,
        from: k.public(),
        to,
        amount,
        payload,
        gas_limit: 10_000,
        gas_price: Genesis::dev().gas.min_price.0,
        chain_id,
    }
    .sign(k)
}

pub(super) fn addr(k: &Keypair) -> Address {
    Address::from_public_key(&k.public())
}

/// An auto merge of branch `name` (chain `src`) up to its tip: the merge transaction, signed
/// by `k` with `nonce` for the chain `target`, and the block's merge field.
pub(super) fn auto_merge(
    target: Hash,
    k: &Keypair,
    nonce: u64,
    name: &str,
    src: &Chain,
) -> (SignedTx, MergeRef) {
    let op = MergeOp {
        source: name.into(),
        source_height: src.tip().header.height,
    };
    let mref = MergeRef {
        source: src.chain_id(),
        source_tip: src.tip().hash,
        source_height: src.tip().header.height,
        strategy: MergeStrategy::Auto,
        last: true,
        lists_root: Hash::ZERO,
    };
    (
        tx(target, k, nonce, TxKind::Merge, None, 0, op.encode()),
        mref,
    )
}

pub(super) fn open_branch(main: &Arc<Chain>, name: &str, dir: &std::path::Path) -> Chain {
    let view = main.view_at(main.tip().header.height).unwrap();
    let rec = branches::record(&view, name).unwrap().unwrap();
    let fork_hash = main.hash_at(rec.fork_height).unwrap().unwrap();
    let g = branches::branch_genesis(main.genesis(), main.chain_id(), name, &rec, fork_hash);
    Chain::open_branch(main.clone(), g, dir).unwrap()
}

/// Block timestamps a second apart, and blocks that must take every transaction given.
pub(super) struct Blocks {
    clock: std::cell::Cell<u64>,
}

impl Blocks {
    pub(super) fn new() -> Self {
        Self {
            clock: std::cell::Cell::new(1000),
        }
    }

    /// The next block's timestamp.
    pub(super) fn next(&self) -> u64 {
        self.clock.set(self.clock.get() + 1000);
        self.clock.get()
    }

    /// Produces a block of `txs` on `c` with `key`; every transaction must be taken.
    pub(super) fn mk(&self, c: &Chain, txs: Vec<SignedTx>, key: &Keypair) -> Produced {
        let p = c.produce(key, txs, self.next(), vec![]).unwrap();
        assert!(p.rejected.is_empty(), "{:?}", p.rejected);
        p
    }
}

#[test]
fn a_branch_reads_through_its_fork_and_merges_back_with_a_double_spend_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let main = open(&dir.path().join("main"));
    let (dev, bp, feat_bp) = (
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
    // Height 1: bob gets 100 on main.
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
    // Height 2: branch `feat` forks at 1.
    let create = BranchOp::Create {
        name: "feat".into(),
        fork_height: 1,
        producer: feat_bp.public(),
        strategy: MergeStrategy::Auto,
        resolver: None,
        private: false,
    };
    let p = mk(
        &main,
        vec![tx(id, &dev, 1, TxKind::Branch, None, 0, create.encode())],
        &bp,
    );
    assert!(matches!(p.receipts[0].status, ReceiptStatus::Ok));
    // The same name again fails (and pays its fee).
    let p = mk(
        &main,
        vec![tx(id, &dev, 2, TxKind::Branch, None, 0, create.encode())],
        &bp,
    );
    assert!(
        matches!(&p.receipts[0].status, ReceiptStatus::Failed(m) if m.contains("already exists")),
        "{:?}",
        p.receipts[0].status
    );
    let feat = open_branch(&main, "feat", &dir.path().join("feat"));
    let fid = feat.chain_id();
    assert_ne!(fid, id);
    assert_eq!(feat.tip().header.height, 1);
    assert_eq!(feat.tip().hash, main.hash_at(1).unwrap().unwrap());
    // Reads fall through to main at the fork height.
    assert_eq!(
        feat.account_latest(&addr(&bob)).unwrap().balance,
        100 * AER_PER_AERGO
    );
    // Height 2 on feat: bob → carol 60 (nonce 0 on the branch), dev → carol 5 (nonce 1:
    // the branch sees dev's nonce at the fork).
    let spend = tx(
        fid,
        &bob,
        0,
        TxKind::Transfer,
        Some(addr(&carol)),
        60 * AER_PER_AERGO,
        vec![],
    );
    let gift = tx(
        fid,
        &dev,
        1,
        TxKind::Transfer,
        Some(addr(&carol)),
        5 * AER_PER_AERGO,
        vec![],
    );
    let fp = mk(&feat, vec![spend.clone(), gift.clone()], &feat_bp);
    assert_eq!(fp.applied.block.header.height, 2);
    // Only the branch's producer may produce it.
    assert!(!feat.engine().is_producer(&bp.public()));
    assert!(feat.engine().is_producer(&feat_bp.public()));
    assert_eq!(
        feat.account_latest(&addr(&carol)).unwrap().balance,
        65 * AER_PER_AERGO
    );
    assert_eq!(main.account_latest(&addr(&carol)).unwrap().balance, 0);
    // A branch transaction replayed onto main is refused (it signs the branch's id).
    let replay = main
        .produce(&bp, vec![spend.clone()], next(), vec![])
        .unwrap();
    assert_eq!(replay.rejected.len(), 1);
    assert!(
        replay.rejected[0].1.contains("chain id"),
        "{:?}",
        replay.rejected
    );
    // Height 5 on main: bob spends 60 on main first.
    mk(
        &main,
        vec![tx(
            id,
            &bob,
            0,
            TxKind::Transfer,
            Some(addr(&dave)),
            60 * AER_PER_AERGO,
            vec![],
        )],
        &bp,
    );
    // Merge feat into main.
    let op = MergeOp {
        source: "feat".into(),
        source_height: 2,
    };
    let mtx = tx(id, &dev, 3, TxKind::Merge, None, 0, op.encode());
    let mref = MergeRef {
        source: fid,
        source_tip: feat.tip().hash,
        source_height: 2,
        strategy: MergeStrategy::Auto,
        last: true,
        lists_root: Hash::ZERO,
    };
    let candidates = feat.block_by_height(2).unwrap().unwrap().txs;
    // A merge outside a merge block is refused.
    let p = main
        .produce(&bp, vec![mtx.clone()], next(), vec![])
        .unwrap();
    assert_eq!(p.rejected.len(), 1);
    let merged = main
        .produce_merge(&bp, mtx, mref, candidates, next(), vec![])
        .unwrap();
    let section = merged.applied.block.body_ext.merge.clone().unwrap();
    assert_eq!(section.excluded.len(), 1);
    assert_eq!(section.excluded[0].index, 0);
    assert_eq!(
        section.excluded[0].reason,
        ExclusionReason::InsufficientBalance
    );
    assert_eq!(
        main.account_latest(&addr(&carol)).unwrap().balance,
        5 * AER_PER_AERGO
    );
    // Merge receipts: the merge's, then the merged gift's, findable by hash.
    assert_eq!(merged.receipts.len(), 2);
    let loc = main.tx_location(&gift.hash).unwrap().unwrap();
    assert_eq!(loc.index, 1);
    // dev's nonce on main is the larger: 4 (the merge used 3, the branch's gift 1).
    assert_eq!(main.account_latest(&addr(&dev)).unwrap().nonce, 4);
    // Merging again up to the same height: nothing to merge.
    let view = main.view_at(main.tip().header.height).unwrap();
    let e = branches::merge_error(&view, branches::Records::State(&view), &op, None)
        .unwrap()
        .unwrap();
    assert!(e.contains("nothing to merge"), "{e}");
    // Diffs: feat's tip against main's tip part at the fork (height 1); carol differs
    // (65 against 5), and pages continue after their last key.
    let (ft, mt) = (feat.tip().header.height, main.tip().header.height);
    let page = feat.diff(ft, &main, mt, None, 100).unwrap();
    assert_eq!(page.common, 1);
    let carol_key = crate::state::account_key(&addr(&carol));
    let c = page.changes.iter().find(|c| c.key == carol_key).unwrap();
    assert_eq!(
        Account::decode(c.from.as_ref().unwrap()).unwrap().balance,
        65 * AER_PER_AERGO
    );
    assert_eq!(
        Account::decode(c.to.as_ref().unwrap()).unwrap().balance,
        5 * AER_PER_AERGO
    );
    let first = feat.diff(ft, &main, mt, None, 1).unwrap();
    assert_eq!(first.changes.len(), 1);
    let rest = feat
        .diff(ft, &main, mt, first.next.as_deref(), 100)
        .unwrap();
    assert_eq!(rest.changes.len() + 1, page.changes.len());
    assert!(main
        .diff(mt, &main, mt, None, 10)
        .unwrap()
        .changes
        .is_empty());
    // main against itself across the merge: carol 0 → 5.
    let across = main.diff(mt - 1, &main, mt, None, 100).unwrap();
    assert!(across
        .changes
        .iter()
        .any(|c| c.key == carol_key && c.from.is_none()));
    // The merge block survives encoding and a replica re-executes everything to the same
    // state roots.
    let replica = open(&dir.path().join("replica"));
    for h in 1..=main.tip().header.height {
        let b = main.block_by_height(h).unwrap().unwrap();
        let b = Block::decode(&b.encode()).unwrap();
        replica.apply(b).unwrap();
    }
    assert_eq!(replica.tip().hash, main.tip().hash);
    assert_eq!(
        replica.account_latest(&addr(&carol)).unwrap().balance,
        5 * AER_PER_AERGO
    );
    // A merge block whose exclusions were tampered with is invalid (re-signed by its
    // producer, so only the exclusion list is wrong).
    let mut forged = main
        .block_by_height(main.tip().header.height)
        .unwrap()
        .unwrap();
    if let Some(m) = forged.body_ext.merge.as_mut() {
        m.excluded.clear();
        let root = Hash::of(&m.encode());
        if let Some(r) = forged.header.ext.merge.as_mut() {
            r.lists_root = root;
        }
    }
    forged.header.sign(&bp);
    let other = open(&dir.path().join("other"));
    for h in 1..main.tip().header.height {
        other
            .apply(main.block_by_height(h).unwrap().unwrap())
            .unwrap();
    }
    assert!(other.apply(forged).is_err());
    // The branch reopens at its tip; its history below the fork is main's.
    drop(feat);
    let feat = open_branch(&main, "feat", &dir.path().join("feat"));
    assert_eq!(feat.tip().header.height, 2);
    assert_eq!(
        feat.block_by_height(1).unwrap().unwrap().hash(),
        main.hash_at(1).unwrap().unwrap()
    );
    assert_eq!(
        feat.account_at(&addr(&carol), 2).unwrap().balance,
        65 * AER_PER_AERGO
    );
    assert_eq!(feat.account_at(&addr(&carol), 1).unwrap().balance, 0);
    // A producer that embeds merged transactions again: the gift (merged above) and
    // another transaction of dev's with the gift's branch nonce (validly signed for feat,
    // never on it) are left out as already applied; feat's new block merges.
    let more = tx(
        fid,
        &dev,
        2,
        TxKind::Transfer,
        Some(addr(&carol)),
        AER_PER_AERGO,
        vec![],
    );
    mk(&feat, vec![more.clone()], &feat_bp);
    let twin = tx(
        fid,
        &dev,
        1,
        TxKind::Transfer,
        Some(addr(&dave)),
        7 * AER_PER_AERGO,
        vec![],
    );
    let (mtx, mref) = auto_merge(id, &dev, 4, "feat", &feat);
    assert_eq!(mref.source_height, 3);
    let dave_before = main.account_latest(&addr(&dave)).unwrap().balance;
    let again = main
        .produce_merge(
            &bp,
            mtx,
            mref,
            vec![gift.clone(), twin, more.clone()],
            next(),
            vec![],
        )
        .unwrap();
    let section = again.applied.block.body_ext.merge.clone().unwrap();
    let left: Vec<(u32, ExclusionReason)> = section
        .excluded
        .iter()
        .map(|e| (e.index, e.reason))
        .collect();
    assert_eq!(
        left,
        vec![
            (0, ExclusionReason::AlreadyApplied),
            (1, ExclusionReason::AlreadyApplied)
        ],
        "{:?}",
        section.excluded
    );
    assert_eq!(
        main.account_latest(&addr(&carol)).unwrap().balance,
        6 * AER_PER_AERGO
    );
    assert_eq!(
        main.account_latest(&addr(&dave)).unwrap().balance,
        dave_before
    );
    // The mark lives in dev's account record: its next nonce from feat is 3 (after
    // `more`), and nothing marks a branch dev never had merged.
    let marks = main.account_latest(&addr(&dev)).unwrap().marks;
    assert_eq!(marks.next(&fid), 3);
    assert_eq!(marks.iter().count(), 1);
    // And the replica agrees.
    replica
        .apply(
            main.block_by_height(main.tip().header.height)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(replica.tip().hash, main.tip().hash);
}

/// A branch of a branch reads through two levels, and a deletion on the branch hides the
/// parent's value in point reads and scans.
#[test]
fn reads_fall_through_two_levels_and_branch_deletions_hide_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(store::open(&dir.path().join("db")).unwrap());
    let put = |ks: &store::Keyspace, key: &[u8], h: u64, v: Option<&[u8]>| {
        let mut stored = vec![u8::from(v.is_some())];
        stored.extend(v.unwrap_or_default());
        db.put_cf(
            ks.cf(CF_STATE).unwrap(),
            ks.state_version_key(MAIN_BRANCH, key, h),
            stored,
        )
        .unwrap();
    };
    let main = store::Keyspace::root(db.clone());
    let a = store::Keyspace::of_chain(db.clone(), store::SPACE_BRANCH, &Hash::of(b"a"));
    let b = store::Keyspace::of_chain(db.clone(), store::SPACE_BRANCH, &Hash::of(b"b"));
    // main: k1..k5 at height 1; k1 changes at 10 (after a's fork at 5).
    for i in 1u8..=5 {
        put(&main, &[b'c', i], 1, Some(&[i]));
    }
    put(&main, &[b'c', 1], 10, Some(&[100]));
    // a forks main at 5: deletes k2 at 6, writes k6 at 7; b forks a at 7: writes k3 at 8.
    put(&a, &[b'c', 2], 6, None);
    put(&a, &[b'c', 6], 7, Some(&[6]));
    put(&b, &[b'c', 3], 8, Some(&[33]));
    let levels = vec![
        Level {
            ks: b.clone(),
            fork: Some(7),
        },
        Level {
            ks: a.clone(),
            fork: Some(5),
        },
        Level {
            ks: main.clone(),
            fork: None,
        },
    ];
    let at = |h: u64| HeightView {
        levels: &levels,
        height: h,
    };
    let v = at(9);
    assert_eq!(v.get(&[b'c', 1]).unwrap(), Some(vec![1])); // main's change after the fork is not seen
    assert_eq!(v.get(&[b'c', 2]).unwrap(), None); // deleted on a
    assert_eq!(v.get(&[b'c', 3]).unwrap(), Some(vec![33]));
    assert_eq!(v.get(&[b'c', 6]).unwrap(), Some(vec![6]));
    let all = v.scan(b"c", b"d").unwrap();
    let keys: Vec<u8> = all.iter().map(|(k, _)| k[1]).collect();
    assert_eq!(keys, vec![1, 3, 4, 5, 6]);
    for limit in 0..6 {
        assert_eq!(
            v.scan_limit(b"c", b"d", limit).unwrap(),
            all.iter().take(limit).cloned().collect::<Vec<_>>()
        );
    }
    // At b's fork height, b's own writes are not there yet; at 5 neither are a's.
    assert_eq!(at(7).get(&[b'c', 3]).unwrap(), Some(vec![3]));
    assert_eq!(at(5).get(&[b'c', 2]).unwrap(), Some(vec![2]));
    assert_eq!(at(5).scan(b"c", b"d").unwrap().len(), 5);
}

mod histories {
    //! Random histories: branches forked from random heights (auto or consistent), some of
    //! them branches of branches, random transfers on `main` and on each branch, merges of
    //! each branch into its parent in random order — so merges of merges carry a
    //! sub-branch's transfers up with their lineage (a consistent merge whose balance would
    //! go negative is refused and changes nothing). After every step the
    //! accounts that ever hold value keep the genesis supply between them. An independent replica that applies the same
    //! blocks (main's, then each branch's on its own branch chain) ends with the same tips,
    //! merge verdicts and state roots, and every account read at (branch, height) verifies
    //! against that block's state root with a Merkle proof.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Main {
            from: u8,
            to: u8,
            amount: u8,
        },
        OnBranch {
            which: u8,
            from: u8,
            to: u8,
            amount: u8,
        },
        Create {
            back: u8,
            consistent: bool,
            /// Even: a branch of `main`; odd: of an existing branch (if any).
            parent: u8,
        },
        Merge {
            which: u8,
        },
        /// A branch of branch `which` with one transfer, merged into it at once (a later
        /// merge of `which` carries the transfer up).
        Nested {
            which: u8,
            from: u8,
            to: u8,
            amount: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..4, 0u8..4, 1u8..60).prop_map(|(from, to, amount)| Op::Main { from, to, amount }),
            4 => (any::<u8>(), 0u8..4, 0u8..4, 1u8..60)
                .prop_map(|(which, from, to, amount)| Op::OnBranch { which, from, to, amount }),
            2 => (any::<u8>(), any::<bool>(), any::<u8>())
                .prop_map(|(back, consistent, parent)| Op::Create { back, consistent, parent }),
            3 => any::<u8>().prop_map(|which| Op::Merge { which }),
            1 => (any::<u8>(), 0u8..4, 0u8..4, 1u8..60)
                .prop_map(|(which, from, to, amount)| Op::Nested { which, from, to, amount }),
        ]
    }

    struct World {
        main: Arc<Chain>,
        /// In creation order: name, chain, parent (`None`: main; else an earlier index).
        branches: Vec<(String, Arc<Chain>, Option<usize>)>,
        users: Vec<Keypair>,
        clock: u64,
    }

    impl World {
        fn tick(&mut self) -> u64 {
            self.clock += 1000;
            self.clock
        }
        fn transfer(&mut self, c: &Chain, from: u8, to: u8, amount: u8, key: &Keypair) {
            let k = &self.users[usize::from(from)];
            let nonce = c.account_latest(&addr(k)).unwrap().nonce;
            let t = tx(
                c.chain_id(),
                k,
                nonce,
                TxKind::Transfer,
                Some(addr(&self.users[usize::from(to)])),
                u128::from(amount) * AER_PER_AERGO,
                vec![],
            );
            let ts = self.tick();
            c.produce(key, vec![t], ts, vec![]).unwrap();
        }
    }

    fn run(ops: &[Op], dir: &std::path::Path) -> World {
        let main = open(&dir.join("main"));
        let users: Vec<Keypair> = (0..4).map(|i| Keypair::from_seed(&[40 + i; 32])).collect();
        let mut w = World {
            main: main.clone(),
            branches: Vec::new(),
            users,
            clock: 1000,
        };
        let dev = Keypair::dev();
        let funding: Vec<SignedTx> = w
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                tx(
                    main.chain_id(),
                    &dev,
                    i as u64,
                    TxKind::Transfer,
                    Some(addr(u)),
                    100 * AER_PER_AERGO,
                    vec![],
                )
            })
            .collect();
        let ts = w.tick();
        let bp = Keypair::from_seed(&[6; 32]);
        let supply = main.account_latest(&addr(&dev)).unwrap().balance;
        main.produce(&bp, funding, ts, vec![]).unwrap();
        let feat_bp = Keypair::from_seed(&[7; 32]);
        // A nested round is a sub-branch's creation, a transfer on it and its merge.
        let mut expanded = Vec::new();
        for op in ops {
            match op.clone() {
                Op::Nested {
                    which,
                    from,
                    to,
                    amount,
                } if expanded.iter().any(|o| matches!(o, Op::Create { .. })) => {
                    let parent = expanded
                        .iter()
                        .filter(|o| matches!(o, Op::Create { .. }))
                        .count();
                    let made = parent;
                    let under = u8::try_from(usize::from(which) % parent).unwrap_or(0);
                    expanded.push(Op::Create {
                        back: 0,
                        consistent: false,
                        parent: under.saturating_mul(2).saturating_add(1),
                    });
                    expanded.push(Op::OnBranch {
                        which: u8::try_from(made).unwrap_or(u8::MAX),
                        from,
                        to,
                        amount,
                    });
                    expanded.push(Op::Merge {
                        which: u8::try_from(made).unwrap_or(u8::MAX),
                    });
                }
                Op::Nested { .. } => {}
                other => expanded.push(other),
            }
        }
        for op in &expanded {
            match op.clone() {
                Op::Nested { .. } => {}
                Op::Main { from, to, amount } => w.transfer(&main, from, to, amount, &bp),
                Op::OnBranch {
                    which,
                    from,
                    to,
                    amount,
                } => {
                    if w.branches.is_empty() {
                        continue;
                    }
                    let c = w.branches[usize::from(which) % w.branches.len()].1.clone();
                    w.transfer(&c, from, to, amount, &feat_bp);
                }
                Op::Create {
                    back,
                    consistent,
                    parent,
                } => {
                    // One time in two (when there are branches): a branch of a branch, at
                    // its parent's tip.
                    let under = (parent % 2 == 1 && !w.branches.is_empty())
                        .then(|| usize::from(parent / 2) % w.branches.len());
                    let (pc, key) = match under {
                        None => (main.clone(), bp.clone()),
                        Some(i) => (w.branches[i].1.clone(), feat_bp.clone()),
                    };
                    let tip = pc.tip().header.height;
                    let fork = match under {
                        None => tip - u64::from(back) % tip,
                        Some(_) => tip,
                    };
                    let name = format!("b{}", w.branches.len());
                    let nonce = pc.account_latest(&addr(&dev)).unwrap().nonce;
                    let create = BranchOp::Create {
                        name: name.clone(),
                        fork_height: fork,
                        producer: feat_bp.public(),
                        strategy: if consistent {
                            MergeStrategy::Consistent
                        } else {
                            MergeStrategy::Auto
                        },
                        resolver: None,
                        private: false,
                    };
                    let t = tx(
                        pc.chain_id(),
                        &dev,
                        nonce,
                        TxKind::Branch,
                        None,
                        0,
                        create.encode(),
                    );
                    let ts = w.tick();
                    pc.produce(&key, vec![t], ts, vec![]).unwrap();
                    let c = open_branch(&pc, &name, &dir.join(&name));
                    w.branches.push((name, Arc::new(c), under));
                }
                Op::Merge { which } => {
                    if w.branches.is_empty() {
                        continue;
                    }
                    let (name, c, under) =
                        w.branches[usize::from(which) % w.branches.len()].clone();
                    let (pc, key) = match under {
                        None => (main.clone(), bp.clone()),
                        Some(i) => (w.branches[i].1.clone(), feat_bp.clone()),
                    };
                    let view = pc.view_at(pc.tip().header.height).unwrap();
                    let rec = branches::record(&view, &name).unwrap().unwrap();
                    let base = branches::merge_base(&view, &rec).unwrap();
                    let sh = c.tip().header.height;
                    if sh <= base {
                        continue;
                    }
                    let mut candidates = branches::Candidates::default();
                    for h in base + 1..=sh {
                        let b = c.block_by_height(h).unwrap().unwrap();
                        candidates.append(branches::block_candidates(&c, &b).unwrap());
                    }
                    let nonce = pc.account_latest(&addr(&dev)).unwrap().nonce;
                    let (mtx, mut mref) = auto_merge(pc.chain_id(), &dev, nonce, &name, &c);
                    mref.strategy = rec.strategy;
                    let ts = w.tick();
                    let before = pc.tip().hash;
                    match pc.produce_merge_with(&key, mtx, mref, candidates, ts, vec![]) {
                        Ok(_) => {}
                        // A consistent merge whose balance would go negative: refused, and
                        // nothing changed.
                        Err(ChainError::InvalidTx { reason, .. })
                            if rec.strategy == MergeStrategy::Consistent =>
                        {
                            assert!(reason.contains("negative"), "{reason}");
                            assert_eq!(pc.tip().hash, before);
                        }
                        Err(e) => panic!("merge: {e}"),
                    }
                }
            }
            // Merges move value, never make or lose it: the accounts that ever hold any
            // keep the genesis supply between them.
            let holders = w
                .users
                .iter()
                .chain([&dev, &bp, &feat_bp])
                .map(|k| main.account_latest(&addr(k)).unwrap().balance)
                .sum::<u128>();
            assert_eq!(holders, supply, "after {op:?}");
        }
        w
    }

    /// Every user's account at every height of `c` above `from` verifies against that
    /// block's state root.
    fn proofs_verify(c: &Chain, users: &[Keypair], from: u64) {
        for h in from + 1..=c.tip().header.height {
            for u in users {
                let (header, value, proof) = c.account_proof(&addr(u), h).unwrap();
                let key = Hash::of(&account_key(&addr(u)));
                let vh = value.as_ref().map(|v| Hash::of(v));
                assert!(
                    crate::smt::verify(header.state_root, &key, vh.as_ref(), &proof),
                    "account at height {h} does not verify against the state root"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn random_histories_replicate_and_every_read_verifies(ops in proptest::collection::vec(op(), 4..28)) {
            let dir = tempfile::tempdir().unwrap();
            let w = run(&ops, &dir.path().join("a"));
            // The replica: main's blocks, then each branch's on its own chain.
            let rdir = dir.path().join("b");
            let replica = open(&rdir.join("main"));
            for h in 1..=w.main.tip().header.height {
                let b = w.main.block_by_height(h).unwrap().unwrap();
                replica.apply(Block::decode(&b.encode()).unwrap()).unwrap();
            }
            prop_assert_eq!(replica.tip().hash, w.main.tip().hash);
            proofs_verify(&w.main, &w.users, 0);
            // Branches in creation order, each on its parent's replica (whose blocks, the
            // creating one included, are all applied by then).
            let mut replicas: Vec<Arc<Chain>> = Vec::new();
            for (name, c, under) in &w.branches {
                let (rp, parent) = match under {
                    None => (replica.clone(), w.main.clone()),
                    Some(i) => (replicas[*i].clone(), w.branches[*i].1.clone()),
                };
                let r = Arc::new(open_branch(&rp, name, &rdir.join(name)));
                let fork = c.fork_point().map(|(_, f)| f).unwrap();
                for h in fork + 1..=c.tip().header.height {
                    let b = c.block_by_height(h).unwrap().unwrap();
                    r.apply(Block::decode(&b.encode()).unwrap()).unwrap();
                }
                prop_assert_eq!(r.tip().hash, c.tip().hash);
                prop_assert_eq!(r.tip().header.state_root, c.tip().header.state_root);
                proofs_verify(c, &w.users, fork);
                // Below the fork a branch reads its parent's history.
                for u in &w.users {
                    prop_assert_eq!(
                        c.account_at(&addr(u), fork).unwrap(),
                        parent.account_at(&addr(u), fork).unwrap()
                    );
                }
                replicas.push(r);
            }
        }
    }
}

/// A deploy never overwrites a contract at its address; a branch's deploy address mixes in
/// the branch id.
#[test]
fn a_deploy_to_an_occupied_address_is_refused() {
    let state = crate::state::MemState::default();
    let mut ov = Overlay::new(&state);
    let owner = addr(&Keypair::dev());
    let at = Address::contract(&owner, 0);
    let script = "CREATE TABLE t (id BIGINT PRIMARY KEY);";
    crate::contracts::deploy(&mut ov, &at, &owner, script, 1_000_000, false).unwrap();
    let again = crate::contracts::deploy(&mut ov, &at, &owner, script, 1_000_000, false);
    assert!(again.is_err_and(|e| e.contains("already holds a contract")));
    assert_ne!(
        Address::contract_in(&Hash::of(b"feat"), &owner, 0),
        Address::contract(&owner, 0)
    );
}

/// A merge of a merge: `b` (a branch of the branch `a`) is merged into `a`, then `a` into
/// `main`. The transfer made on `b` reaches `main`, carried with its lineage (`b` is a
/// branch of `a`), and a replica re-executes the merge to the same state; a merge block
/// whose lineage names another branch is invalid.
#[test]
fn a_merge_of_a_merge_reaches_main() {
    let dir = tempfile::tempdir().unwrap();
    let main = open(&dir.path().join("main"));
    let (dev, bp, branch_bp) = (
        Keypair::dev(),
        Keypair::from_seed(&[6; 32]),
        Keypair::from_seed(&[7; 32]),
    );
    let carol = Keypair::from_seed(&[12; 32]);
    let blocks = Blocks::new();
    let next = || blocks.next();
    let mk = |c: &Chain, txs: Vec<SignedTx>, key: &Keypair| blocks.mk(c, txs, key);
    let nonce = |c: &Chain| c.account_latest(&addr(&dev)).unwrap().nonce;
    let create = |c: &Chain, name: &str| {
        let op = BranchOp::Create {
            name: name.into(),
            fork_height: c.tip().header.height,
            producer: branch_bp.public(),
            strategy: MergeStrategy::Auto,
            resolver: None,
            private: false,
        };
        tx(
            c.chain_id(),
            &dev,
            nonce(c),
            TxKind::Branch,
            None,
            0,
            op.encode(),
        )
    };
    let merge = |target: &Chain,
                 src: &Chain,
                 name: &str,
                 candidates: branches::Candidates,
                 key: &Keypair| {
        let (mtx, mref) = auto_merge(target.chain_id(), &dev, nonce(target), name, src);
        target
            .produce_merge_with(key, mtx, mref, candidates, next(), vec![])
            .unwrap()
    };
    let since = |src: &Chain, fork: u64| {
        let mut c = branches::Candidates::default();
        for h in fork + 1..=src.tip().header.height {
            let b = src.block_by_height(h).unwrap().unwrap();
            c.append(branches::block_candidates(src, &b).unwrap());
        }
        c
    };
    mk(&main, vec![create(&main, "a")], &bp);
    let a = Arc::new(open_branch(&main, "a", &dir.path().join("a")));
    let a_fork = a.tip().header.height;
    mk(&a, vec![create(&a, "b")], &branch_bp);
    let b = open_branch(&a, "b", &dir.path().join("b"));
    let b_fork = b.tip().header.height;
    let gift = tx(
        b.chain_id(),
        &dev,
        nonce(&b),
        TxKind::Transfer,
        Some(addr(&carol)),
        7 * AER_PER_AERGO,
        vec![],
    );
    mk(&b, vec![gift.clone()], &branch_bp);
    // b into a: an ordinary merge.
    let into_a = merge(&a, &b, "b", since(&b, b_fork), &branch_bp);
    assert!(into_a
        .applied
        .block
        .body_ext
        .merge
        .as_ref()
        .unwrap()
        .excluded
        .is_empty());
    assert_eq!(
        a.account_latest(&addr(&carol)).unwrap().balance,
        7 * AER_PER_AERGO
    );
    // a into main: a's own operations stay on a; b's gift comes with its lineage.
    let candidates = since(&a, a_fork);
    assert_eq!(candidates.len(), 3, "create b, the merge, the gift");
    assert_eq!(candidates.lineage.len(), 1);
    assert_eq!(candidates.lineage[0].index, 2);
    assert_eq!(candidates.lineage[0].branch_of(&a.chain_id()), b.chain_id());
    let into_main = merge(&main, &a, "a", candidates, &bp);
    let section = into_main.applied.block.body_ext.merge.clone().unwrap();
    let left: Vec<u32> = section.excluded.iter().map(|e| e.index).collect();
    assert_eq!(left, vec![0, 1], "{:?}", section.excluded);
    assert_eq!(
        main.account_latest(&addr(&carol)).unwrap().balance,
        7 * AER_PER_AERGO
    );
    assert!(main.tx_location(&gift.hash).unwrap().is_some());
    // A replica (which never had a or b) re-executes everything to the same state.
    let replica = open(&dir.path().join("replica"));
    for h in 1..=main.tip().header.height {
        let blk = main.block_by_height(h).unwrap().unwrap();
        replica
            .apply(Block::decode(&blk.encode()).unwrap())
            .unwrap();
    }
    assert_eq!(replica.tip().hash, main.tip().hash);
    // A lineage that names another branch leads to another id: the gift's chain id no
    // longer matches, so the block's exclusions are wrong and it is invalid.
    let mut forged = main
        .block_by_height(main.tip().header.height)
        .unwrap()
        .unwrap();
    if let Some(m) = forged.body_ext.merge.as_mut() {
        m.lineage[0].path[0].name = "c".into();
        let root = Hash::of(&m.encode());
        if let Some(r) = forged.header.ext.merge.as_mut() {
            r.lists_root = root;
        }
    }
    forged.header.sign(&bp);
    let other = open(&dir.path().join("other"));
    for h in 1..main.tip().header.height {
        other
            .apply(main.block_by_height(h).unwrap().unwrap())
            .unwrap();
    }
    let e = other.apply(forged).unwrap_err();
    assert!(e.to_string().contains("exclu"), "{e}");
}

/// One account creates at most `MAX_BRANCHES_PER_CREATOR` live branches of a chain; another
/// account still can, and a deletion frees a slot.
#[test]
fn one_account_cannot_take_every_branch_slot() {
    let dir = tempfile::tempdir().unwrap();
    let main = open(&dir.path().join("main"));
    let (dev, bp, bob) = (
        Keypair::dev(),
        Keypair::from_seed(&[6; 32]),
        Keypair::from_seed(&[11; 32]),
    );
    let id = main.chain_id();
    let blocks = Blocks::new();
    let nonce = |k: &Keypair| main.account_latest(&addr(k)).unwrap().nonce;
    let create = |k: &Keypair, n: u64, name: String| {
        let op = BranchOp::Create {
            name,
            fork_height: 0,
            producer: bp.public(),
            strategy: MergeStrategy::Auto,
            resolver: None,
            private: false,
        };
        tx(id, k, n, TxKind::Branch, None, 0, op.encode())
    };
    let fund = tx(
        id,
        &dev,
        nonce(&dev),
        TxKind::Transfer,
        Some(addr(&bob)),
        10 * AER_PER_AERGO,
        vec![],
    );
    blocks.mk(&main, vec![fund], &bp);
    let first = nonce(&dev);
    let txs: Vec<SignedTx> = (0..=branches::MAX_BRANCHES_PER_CREATOR as u64)
        .map(|i| create(&dev, first + i, format!("b{i}")))
        .collect();
    let p = blocks.mk(&main, txs, &bp);
    let failed: Vec<&ReceiptStatus> = p
        .receipts
        .iter()
        .map(|r| &r.status)
        .filter(|s| !matches!(s, ReceiptStatus::Ok))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        matches!(failed[0], ReceiptStatus::Failed(m) if m.contains("the most one account may")),
        "{failed:?}"
    );
    assert!(matches!(
        p.receipts.last().map(|r| &r.status),
        Some(ReceiptStatus::Failed(_))
    ));
    // Bob still can; dev can again once one of its branches is deleted.
    let p = blocks.mk(&main, vec![create(&bob, nonce(&bob), "bobs".into())], &bp);
    assert!(matches!(p.receipts[0].status, ReceiptStatus::Ok));
    let del = BranchOp::Delete { name: "b0".into() };
    let n = nonce(&dev);
    let p = blocks.mk(
        &main,
        vec![
            tx(id, &dev, n, TxKind::Branch, None, 0, del.encode()),
            create(&dev, n + 1, "again".into()),
        ],
        &bp,
    );
    assert!(
        p.receipts
            .iter()
            .all(|r| matches!(r.status, ReceiptStatus::Ok)),
        "{:?}",
        p.receipts
    );
}
