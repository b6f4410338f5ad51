//! Tests of opening, recovery, the commit path, queries and the commit-point checks.

#![allow(clippy::cast_possible_truncation)] // small test indices and values

use super::*;
use aergo_os::io::IoConfig;
use aergo_types::{Aer, Tx, TxKind, AER_PER_AERGO};

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

#[test]
fn produce_query_reopen_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Keypair::dev();
    let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
    let producer = Keypair::from_seed(&[6; 32]);
    let (h1, root1);
    {
        let c = open(dir.path());
        assert_eq!(c.tip().header.height, 0);
        let p = c
            .produce(
                &producer,
                vec![transfer(&c, &dev, 0, bob, 7 * AER_PER_AERGO)],
                1000,
                vec![],
            )
            .unwrap();
        assert_eq!(p.applied.block.txs.len(), 1);
        h1 = p.applied.block.hash();
        root1 = p.applied.block.header.state_root;
        let p2 = c
            .produce(
                &producer,
                vec![transfer(&c, &dev, 1, bob, 3 * AER_PER_AERGO)],
                2000,
                vec![],
            )
            .unwrap();
        assert_eq!(
            p2.applied.nonces[&Address::from_public_key(&dev.public())],
            2
        );
        assert_eq!(c.account_latest(&bob).unwrap().balance, 10 * AER_PER_AERGO);
        assert_eq!(c.account_at(&bob, 1).unwrap().balance, 7 * AER_PER_AERGO);
        assert_eq!(c.account_at(&bob, 0).unwrap().balance, 0);
        assert!(c.account_at(&bob, 3).is_err());
    }
    let c = open(dir.path());
    assert_eq!(c.tip().header.height, 2);
    assert_eq!(c.block_by_height(1).unwrap().unwrap().hash(), h1);
    assert_eq!(
        c.block_by_height(1).unwrap().unwrap().header.state_root,
        root1
    );
    let loc = c
        .tx_location(&c.block_by_height(2).unwrap().unwrap().txs[0].hash)
        .unwrap()
        .unwrap();
    assert_eq!(loc.height, 2);
    assert_eq!(c.account_latest(&bob).unwrap().balance, 10 * AER_PER_AERGO);
    assert_eq!(c.verify_log_matches_index().unwrap(), 3);
    let fee_total = c
        .account_latest(&Address::from_public_key(&producer.public()))
        .unwrap()
        .balance;
    assert_eq!(fee_total, 2 * 1000 * c.genesis().gas.min_price.0);
    let (hdr, val, proof) = c.account_proof(&bob, 1).unwrap();
    assert_eq!(hdr.state_root, root1);
    assert!(val.is_some());
    assert!(proof.leaf.is_some());
}

/// Versioned range scans against a reference: keys rewritten many times (the seek path),
/// deletions, keys newer than the height, and limits, including through overlays.
#[test]
fn versioned_scans_skip_unused_versions_and_stop_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(store::open(&dir.path().join("db")).unwrap());
    // The same keys in the root keyspace and in a repository's, with different values: each
    // view must see only its own.
    let spaces = [
        (store::Keyspace::root(db.clone()), 0u8),
        (
            store::Keyspace::of_chain(db.clone(), store::SPACE_REPO, &Hash::of(b"repo")),
            0xEE,
        ),
    ];
    for (ks, mark) in &spaces {
        scans_in_keyspace(ks, *mark);
    }
}

fn scans_in_keyspace(ks: &store::Keyspace, mark: u8) {
    use crate::state::{MemState, Overlay};
    let mut batch = WriteBatch::default();
    let mut history: Vec<std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>> =
        vec![Default::default(); 41];
    // Key i is written at heights i, i+3, …, up to 40 (key 0: 14 versions); every 4th
    // write deletes it; keys 20.. are only written above height 20.
    for k in 0u8..30 {
        let key = vec![b'c', 7, k];
        let first = if k >= 20 {
            21 + (k as u64 % 5)
        } else {
            k as u64
        };
        let mut h = first;
        let mut n = 0;
        while h <= 40 {
            let value = (n % 4 != 3).then(|| vec![mark, k, n as u8]);
            let mut stored = vec![u8::from(value.is_some())];
            stored.extend(value.clone().unwrap_or_default());
            batch.put_cf(
                ks.cf(CF_STATE).unwrap(),
                ks.state_version_key(MAIN_BRANCH, &key, h),
                stored,
            );
            for snap in history.iter_mut().skip(h as usize) {
                snap.insert(key.clone(), value.clone());
            }
            h += 3;
            n += 1;
        }
    }
    ks.db().write(batch).unwrap();
    let (start, end) = (vec![b'c', 7], vec![b'c', 8]);
    for height in [0u64, 1, 7, 19, 20, 25, 40] {
        let want: Vec<(Vec<u8>, Vec<u8>)> = history[height as usize]
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let levels = [Level {
            ks: ks.clone(),
            fork: None,
        }];
        let view = HeightView {
            levels: &levels,
            height,
        };
        assert_eq!(view.scan(&start, &end).unwrap(), want, "height {height}");
        for limit in [0usize, 1, 3, 10, 100] {
            let got = view.scan_limit(&start, &end, limit).unwrap();
            assert_eq!(got, want.iter().take(limit).cloned().collect::<Vec<_>>());
            // Through an overlay that deletes the first keys and adds new ones.
            let mut ov = Overlay::new(&view);
            for (k, _) in want.iter().take(2) {
                ov.writes.insert(k.clone(), None);
            }
            ov.writes.insert(vec![b'c', 7, 3, 1], Some(vec![9]));
            ov.writes.insert(vec![b'c', 7, 200], Some(vec![8]));
            let mut reference = MemState::default();
            for (k, v) in &want {
                reference.0.insert(k.clone(), v.clone());
            }
            for (k, v) in &ov.writes {
                match v {
                    Some(v) => reference.0.insert(k.clone(), v.clone()),
                    None => reference.0.remove(k),
                };
            }
            assert_eq!(
                ov.scan_limit(&start, &end, limit).unwrap(),
                reference.scan_limit(&start, &end, limit).unwrap(),
                "overlay, height {height}, limit {limit}"
            );
        }
    }
}

#[test]
fn wrong_genesis_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let mut g = Genesis::dev();
    g.chain_name = "other".into();
    let e = Chain::open(ChainOptions {
        data_dir: dir.path().to_path_buf(),
        genesis: g,
        io: IoService::start(IoConfig::default()),
    });
    assert!(matches!(e, Err(ChainError::WrongChain { .. })));
}

#[test]
fn blocks_in_log_but_not_in_db_are_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Keypair::dev();
    let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
    let producer = Keypair::from_seed(&[6; 32]);
    let tip_hash;
    {
        let c = open(dir.path());
        c.produce(&producer, vec![transfer(&c, &dev, 0, bob, 1)], 1000, vec![])
            .unwrap();
        tip_hash = c
            .produce(&producer, vec![transfer(&c, &dev, 1, bob, 2)], 2000, vec![])
            .unwrap()
            .applied
            .block
            .hash();
    }
    // Lose the database entirely: everything must come back from the log.
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let c = open(dir.path());
    assert_eq!(c.tip().hash, tip_hash);
    assert_eq!(c.account_latest(&bob).unwrap().balance, 3);
    assert_eq!(c.verify_log_matches_index().unwrap(), 3);
}

#[test]
fn invalid_blocks_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    let producer = Keypair::from_seed(&[6; 32]);
    let dev = Keypair::dev();
    let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
    let other_dir = tempfile::tempdir().unwrap();
    let c2 = open(other_dir.path());
    let good = c2
        .produce(
            &producer,
            vec![transfer(&c2, &dev, 0, bob, 1)],
            1000,
            vec![],
        )
        .unwrap()
        .applied
        .block;
    let mut forged = good.clone();
    forged.header.state_root = Hash::of(b"x");
    forged.header.sign(&producer);
    assert!(c
        .apply(forged)
        .unwrap_err()
        .to_string()
        .contains("state root"));
    let mut unsigned = good.clone();
    unsigned.header.timestamp_ms += 1;
    assert!(c
        .apply(unsigned)
        .unwrap_err()
        .to_string()
        .contains("signature"));
    assert_eq!(c.tip().header.height, 0);
    c.apply(good).unwrap();
    assert_eq!(c.tip().header.height, 1);
    assert_eq!(c.account_latest(&bob).unwrap().balance, 1);
    let _ = Aer::ZERO;
}

/// Commits `p` through the commit path and expects a refusal that changes nothing.
fn assert_refused(c: &Chain, p: Prepared, existing: Option<Location>, what: &str) {
    let tip = c.tip();
    let log_end = c.log.end();
    let err = c.write_block(p, existing).unwrap_err();
    assert!(matches!(err, ChainError::Corrupt(_)), "{what}: {err}");
    assert!(err.to_string().contains(what), "{what}: {err}");
    assert_eq!(c.tip().hash, tip.hash);
    assert_eq!(c.tip().log_end, tip.log_end);
    assert_eq!(c.log.end(), log_end);
    assert_eq!(c.tip_record().unwrap().map(|t| t.1), Some(tip.hash));
}

fn unexecuted(block: Block) -> Prepared {
    Prepared {
        block,
        executed: Executed::default(),
        nodes: crate::smt::NodeMap::default(),
    }
}

#[test]
fn commit_points_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    let producer = Keypair::from_seed(&[6; 32]);
    let other_dir = tempfile::tempdir().unwrap();
    let c2 = open(other_dir.path());
    let b1 = c2
        .produce(&producer, vec![], 1000, vec![])
        .unwrap()
        .applied
        .block;
    let b2 = c2
        .produce(&producer, vec![], 2000, vec![])
        .unwrap()
        .applied
        .block;

    // Height: a block two above the tip.
    assert_refused(&c, unexecuted(b2.clone()), None, "does not follow the tip");
    // Height: the genesis block again.
    let genesis = c.block_by_height(0).unwrap().unwrap();
    assert_refused(&c, unexecuted(genesis), None, "does not follow the tip");
    // Parent: the right height on another parent.
    let mut orphan = b1.clone();
    orphan.header.parent = Hash::of(b"elsewhere");
    assert_refused(&c, unexecuted(orphan), None, "names parent");
    // Log end: a recovered frame somewhere else than the tip's log position.
    let wrong = Location {
        pos: LogPos {
            seg: c.tip().log_end.seg,
            offset: c.tip().log_end.offset + 1,
        },
        len: 10,
    };
    let p = c.prepare(b1.clone()).unwrap();
    assert_refused(&c, p, Some(wrong), "does not start at the tip's recorded");
    // Log end: the log grew past the tip's recorded position behind the chain's back.
    c.log.append(1, b"not a block").unwrap();
    let p = c.prepare(b1.clone()).unwrap();
    assert_refused(&c, p, None, "the block log ends at");
    assert_eq!(c.tip().header.height, 0);
    // Once the log is back where the tip says, the same block commits.
    c.log.truncate(c.tip().log_end).unwrap();
    c.apply(b1).unwrap();
    c.apply(b2).unwrap();
    assert_eq!(c.tip().header.height, 2);
    assert_eq!(c.verify_log_matches_index().unwrap(), 3);
}

#[test]
fn version_2_fields_are_refused_until_their_feature_runs() {
    // Format version 2 reserves header fields and body sections for the next features; a
    // block that fills one, validly signed and otherwise correct, is invalid on a chain that
    // does not run the feature, and changes nothing.
    let producer = Keypair::from_seed(&[6; 32]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    let good = a
        .produce(&producer, vec![], 1000, vec![])
        .unwrap()
        .applied
        .block;
    type Fill = fn(&mut Header);
    // A DTT is checked (parallel execution runs on every chain): tests_dtt.rs.
    let fields: [(&str, Fill); 3] = [
        // A sequencing hash is checked (pre-confirmation runs on every chain): a wrong one
        // is refused as a mismatch.
        ("sequencing hash mismatch", |h| {
            h.ext.seq_hash = Some(Hash::of(b"s"))
        }),
        ("merge", |h| {
            h.ext.merge = Some(aergo_types::block_ext::MergeRef {
                source: Hash::of(b"feature"),
                source_tip: Hash::of(b"tip"),
                source_height: 1,
                strategy: aergo_types::block_ext::MergeStrategy::Auto,
                last: true,
                lists_root: Hash::of(&aergo_types::block_ext::MergeBody::default().encode()),
            })
        }),
        ("dd", |h| {
            h.ext.dd = Some(aergo_types::block_ext::DdRef {
                height: 0,
                hash: Hash::ZERO,
            })
        }),
    ];
    for (name, fill) in fields {
        let mut blk = good.clone();
        fill(&mut blk.header);
        if blk.header.ext.dtt_root.is_some() {
            blk.body_ext.dtt = Some(Default::default());
        }
        if blk.header.ext.merge.is_some() {
            blk.body_ext.merge = Some(Default::default());
        }
        blk.header.sign(&producer);
        // It survives the codec (the format knows the field) …
        let blk = Block::decode(&blk.encode()).unwrap();
        assert_eq!(blk.header.version(), 2);
        // … and the chain refuses it, naming the field.
        match b.receive(blk, 1000) {
            Err(ChainError::InvalidBlock { reason, .. }) => {
                assert!(reason.contains(name), "{name}: {reason}")
            }
            other => panic!("{name}: expected an invalid block, got {other:?}"),
        }
        assert_eq!(b.tip().header.height, 0);
    }
    // The same block without the fields is fine.
    assert!(matches!(
        b.receive(good, 1000).unwrap(),
        Received::Extended(_)
    ));
}

#[test]
fn a_block_that_connects_kept_aside_children_is_reported_with_them() {
    // The child arrives first (kept aside, parent missing); when the parent arrives, both
    // are committed, and both are reported as applied, in order — the node's post-commit
    // path prunes the mempool and publishes from exactly this list.
    let producer = Keypair::from_seed(&[6; 32]);
    let dev = Keypair::dev();
    let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    let p1 = a
        .produce(&producer, vec![transfer(&a, &dev, 0, bob, 1)], 1000, vec![])
        .unwrap();
    let p2 = a
        .produce(&producer, vec![transfer(&a, &dev, 1, bob, 1)], 2000, vec![])
        .unwrap();
    assert!(matches!(
        b.receive(p2.applied.block.clone(), 2000).unwrap(),
        Received::MissingParent { .. }
    ));
    match b.receive(p1.applied.block.clone(), 2000).unwrap() {
        Received::Reorged {
            common,
            reverted,
            applied,
        } => {
            assert_eq!(common, 1);
            assert!(reverted.is_empty());
            let hashes: Vec<Hash> = applied.iter().map(|x| x.block.hash()).collect();
            assert_eq!(
                hashes,
                vec![p1.applied.block.hash(), p2.applied.block.hash()]
            );
            let dev_addr = Address::from_public_key(&dev.public());
            // Nonces come from each block's own writes, as for the producer.
            assert_eq!(applied[0].nonces[&dev_addr], 1);
            assert_eq!(applied[1].nonces[&dev_addr], 2);
            assert_eq!(applied[1].nonces, p2.applied.nonces);
            assert_eq!(applied[1].size, p2.applied.size);
            assert_eq!(applied[1].gas_used, p2.applied.gas_used);
        }
        other => panic!("expected both blocks reported, got {other:?}"),
    }
    assert_eq!(b.tip().hash, a.tip().hash);
}

#[test]
fn a_pending_block_seals_exactly_what_it_promised() {
    let producer = Keypair::from_seed(&[6; 32]);
    let dev = Keypair::dev();
    let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b, c) = (open(d1.path()), open(d2.path()), open(d3.path()));
    let mut p = a.open_pending(producer.public(), 1000, vec![]).unwrap();
    assert_eq!(p.height(), 1);
    assert_eq!(p.seq(), a.tip().hash, "s_0 is the parent's hash");
    let mut promised = Vec::new();
    for n in 0..3 {
        let t = transfer(&a, &dev, n, bob, 1 + u128::from(n));
        match p.push(&a, &t).unwrap() {
            PushOutcome::Pushed(x) => {
                assert_eq!(x.position as u64, n);
                promised.push((t.hash, x));
            }
            other => panic!("expected a push, got {other:?}"),
        }
    }
    // A gap in the nonces, a replay and a double push change nothing.
    let gap = transfer(&a, &dev, 9, bob, 1);
    assert!(matches!(
        p.push(&a, &gap),
        Err(ChainError::InvalidTx { .. })
    ));
    let again = transfer(&a, &dev, 2, bob, 3);
    assert!(matches!(
        p.push(&a, &again),
        Err(ChainError::InvalidTx { .. })
    ));
    assert_eq!(p.len(), 3);
    assert_eq!(
        p.nonce_of(&Address::from_public_key(&dev.public())),
        Some(3)
    );
    let last = promised.last().unwrap().1.seq;
    let produced = a.seal(&producer, p).unwrap();
    let block = produced.applied.block.clone();
    assert_eq!(block.header.ext.seq_hash, Some(last));
    assert_eq!(block.txs.len(), 3);
    for (i, (h, x)) in promised.iter().enumerate() {
        assert_eq!(&block.txs[i].hash, h);
        assert_eq!(produced.receipts[i], x.receipt, "receipt {i} as promised");
    }
    assert_eq!(a.account_latest(&bob).unwrap().balance, 6);
    // Validators recompute the sequencing hash …
    assert!(matches!(
        b.receive(block.clone(), 1000).unwrap(),
        Received::Extended(_)
    ));
    assert_eq!(b.tip().hash, block.hash());
    // … and refuse a header that commits to another sequence.
    let mut forged = block.clone();
    forged.header.ext.seq_hash = Some(promised[1].1.seq);
    forged.header.sign(&producer);
    match c.receive(forged, 1000) {
        Err(ChainError::InvalidBlock { reason, .. }) => {
            assert!(reason.contains("sequencing hash"), "{reason}")
        }
        other => panic!("expected an invalid block, got {other:?}"),
    }
    assert_eq!(c.tip().header.height, 0);
    // A pending block dies with its tip.
    let mut stale = a.open_pending(producer.public(), 2000, vec![]).unwrap();
    a.produce(&producer, vec![transfer(&a, &dev, 3, bob, 1)], 2000, vec![])
        .unwrap();
    assert!(matches!(
        stale.push(&a, &transfer(&a, &dev, 4, bob, 1)),
        Err(ChainError::Consensus(_))
    ));
    assert!(matches!(
        a.seal(&producer, stale),
        Err(ChainError::Consensus(_))
    ));
    assert_eq!(a.tip().header.height, 2);
}

#[test]
fn a_pending_block_opens_on_its_sealed_parent_before_the_commit() {
    let producer = Keypair::from_seed(&[6; 32]);
    let dev = Keypair::dev();
    let dev_a = Address::from_public_key(&dev.public());
    let bob_k = Keypair::from_seed(&[5; 32]);
    let bob = Address::from_public_key(&bob_k.public());
    let carol = Address::from_public_key(&Keypair::from_seed(&[9; 32]).public());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    let mut p1 = a.open_pending(producer.public(), 1000, vec![]).unwrap();
    let fund = transfer(&a, &dev, 0, bob, 5 * AER_PER_AERGO);
    assert!(matches!(
        p1.push(&a, &fund).unwrap(),
        PushOutcome::Pushed(_)
    ));
    let sealed = a.seal_block(&producer, p1).unwrap();
    // Block 1 is signed but not committed: block 2 opens on it, and bob spends what block
    // 1 gave him.
    let mut p2 = a
        .open_pending_after(&sealed, producer.public(), 2000, vec![])
        .unwrap();
    assert_eq!(p2.height(), 2);
    assert_eq!(a.tip().header.height, 0);
    assert_eq!(p2.account_of(&bob).unwrap().balance, 5 * AER_PER_AERGO);
    assert_eq!(p2.nonce_of(&dev_a), Some(1));
    let spend = transfer(&a, &bob_k, 0, carol, AER_PER_AERGO);
    assert!(matches!(
        p2.push(&a, &spend).unwrap(),
        PushOutcome::Pushed(_)
    ));
    // The commit lands; pushing goes on.
    let first = a.commit_sealed(sealed).unwrap().applied.block;
    assert_eq!(a.tip().header.height, 1);
    let more = transfer(&a, &dev, 1, carol, 2);
    assert!(matches!(
        p2.push(&a, &more).unwrap(),
        PushOutcome::Pushed(_)
    ));
    let second = a.seal(&producer, p2).unwrap().applied.block;
    assert_eq!(second.txs.len(), 2);
    assert_eq!(a.account_latest(&carol).unwrap().balance, AER_PER_AERGO + 2);
    // A validator agrees with both blocks.
    for blk in [first, second] {
        assert!(matches!(
            b.receive(blk, 3000).unwrap(),
            Received::Extended(_)
        ));
    }
    assert_eq!(b.tip().hash, a.tip().hash);
    assert_eq!(b.account_latest(&carol).unwrap().balance, AER_PER_AERGO + 2);
}

#[test]
fn a_full_pending_block_keeps_room_for_its_dtt() {
    let producer = Keypair::from_seed(&[6; 32]);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path()), open(d2.path()));
    let dev = Keypair::dev();
    let mut p = a.open_pending(producer.public(), 1000, vec![]).unwrap();
    let mut n = 0u64;
    loop {
        let to = Address::from_public_key(&Keypair::from_seed(&[(n % 200) as u8; 32]).public());
        match p.push(&a, &transfer(&a, &dev, n, to, 1)).unwrap() {
            PushOutcome::Pushed(_) => n += 1,
            PushOutcome::Full(_) => break,
        }
    }
    assert!(n > 1000, "only {n} transfers fit");
    let block = a.seal(&producer, p).unwrap().applied.block;
    assert_eq!(block.txs.len() as u64, n);
    assert!(
        block.header.ext.dtt_root.is_some(),
        "a full block lost its DTT"
    );
    assert!(block.encode().len() <= a.max_block_size());
    assert!(matches!(
        b.receive(block, 2000).unwrap(),
        Received::Extended(_)
    ));
}
