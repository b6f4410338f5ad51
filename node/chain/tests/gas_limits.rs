//! The per-transaction gas cap and the per-block gas limit through the real chain: the
//! limits in force (defaults, genesis), refusal by the mempool and by execution, block
//! assembly that leaves what does not fit pending, and validation that refuses a block over
//! the limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aergo_chain::exec::{
    self, execute_block, BlockCtx, GasLimits, DEFAULT_BLOCK_GAS_LIMIT, DEFAULT_TX_GAS_CAP,
};
use aergo_chain::mempool::{Mempool, Reject};
use aergo_chain::state::Account;
use aergo_chain::{Chain, ChainError, ChainOptions};
use aergo_os::config::MempoolConfig;
use aergo_os::io::{IoConfig, IoService};
use aergo_types::{Address, Genesis, Keypair, SignedTx, Tx, TxKind, AER_PER_AERGO};

fn open(dir: &std::path::Path, genesis: Genesis) -> Chain {
    Chain::open(ChainOptions {
        data_dir: dir.to_path_buf(),
        genesis,
        io: IoService::start(IoConfig::default()),
    })
    .unwrap()
}

fn limited_genesis(cap: u64, block: u64) -> Genesis {
    let mut g = Genesis::dev();
    g.gas.tx_gas_cap = Some(cap);
    g.gas.block_gas_limit = Some(block);
    g.validate().unwrap();
    g
}

fn transfer(chain: &Chain, k: &Keypair, nonce: u64, gas_limit: u64) -> SignedTx {
    Tx {
        kind: TxKind::Transfer,
        nonce,
        from: k.public(),
        to: Some(Address::from_public_key(
            &Keypair::from_seed(&[7; 32]).public(),
        )),
        amount: AER_PER_AERGO,
        payload: vec![],
        gas_limit,
        gas_price: chain.genesis().gas.min_price.0,
        chain_id: chain.chain_id(),
    }
    .sign(k)
}

/// A funded second sender (so two queues compete for the block).
fn fund(chain: &Chain, to: &Keypair, t: &mut u64) {
    let dev = Keypair::dev();
    let nonce = chain
        .account_latest(&Address::from_public_key(&dev.public()))
        .unwrap()
        .nonce;
    let tx = Tx {
        kind: TxKind::Transfer,
        nonce,
        from: dev.public(),
        to: Some(Address::from_public_key(&to.public())),
        amount: 1_000_000 * AER_PER_AERGO,
        payload: vec![],
        gas_limit: 1000,
        gas_price: chain.genesis().gas.min_price.0,
        chain_id: chain.chain_id(),
    }
    .sign(&dev);
    *t += 1000;
    let p = chain.produce(&dev, vec![tx], *t, vec![]).unwrap();
    assert_eq!(p.applied.block.txs.len(), 1);
}

#[test]
fn limits_come_from_the_genesis_or_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), Genesis::dev());
    assert_eq!(
        c.gas_limits().unwrap(),
        GasLimits {
            tx_gas_cap: DEFAULT_TX_GAS_CAP,
            block_gas_limit: DEFAULT_BLOCK_GAS_LIMIT
        }
    );
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), limited_genesis(3_000_000, 7_000_000));
    assert_eq!(
        c.gas_limits().unwrap(),
        GasLimits {
            tx_gas_cap: 3_000_000,
            block_gas_limit: 7_000_000
        }
    );
}

#[test]
fn a_gas_limit_over_the_cap_is_refused_at_admission_and_by_execution() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), Genesis::dev());
    let dev = Keypair::dev();
    let cap = c.gas_limits().unwrap().tx_gas_cap;
    let mut pool = Mempool::new(MempoolConfig::default());
    pool.set_tx_gas_cap(cap);
    let rich = Account::new(u128::MAX / 4, 0);
    let err = pool
        .add(transfer(&c, &dev, 0, cap + 1), rich.clone(), 0)
        .unwrap_err();
    assert_eq!(
        err,
        Reject::GasCap {
            limit: cap + 1,
            cap
        }
    );
    assert!(err.to_string().contains("per-transaction cap"), "{err}");
    assert!(pool.is_empty());
    pool.add(transfer(&c, &dev, 0, cap), rich, 0).unwrap();
    assert_eq!(pool.len(), 1);
    // A producer that skipped the mempool still cannot include it.
    let p = c
        .produce(&dev, vec![transfer(&c, &dev, 0, cap + 1)], 1000, vec![])
        .unwrap();
    assert!(p.applied.block.txs.is_empty());
    assert_eq!(p.rejected.len(), 1);
    assert!(
        p.rejected[0].1.contains("per-transaction cap"),
        "{:?}",
        p.rejected
    );
}

#[test]
fn assembly_stops_at_the_block_gas_limit_and_leaves_the_rest_pending() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), limited_genesis(3_000_000, 7_000_000));
    let dev = Keypair::dev();
    let other = Keypair::from_seed(&[3; 32]);
    let mut t = 0;
    fund(&c, &other, &mut t);
    let dev_nonce = 1;
    // Dev: two 3M-gas transfers (each uses 1,000 gas); other: one 3M-gas transfer, then a
    // small one. After dev's two (2,000 used), other's 3M fits (3,002,000 + … ≤ 7M), then a
    // third 3M of dev's does not: 2,000 + 3,000 + 3M… computed below.
    let cands = vec![
        transfer(&c, &dev, dev_nonce, 3_000_000),
        transfer(&c, &dev, dev_nonce + 1, 3_000_000),
        transfer(&c, &dev, dev_nonce + 2, 3_000_000),
        transfer(&c, &dev, dev_nonce + 3, 3_000_000),
        transfer(&c, &dev, dev_nonce + 4, 3_000_000),
        transfer(&c, &dev, dev_nonce + 5, 3_000_000),
        transfer(&c, &dev, dev_nonce + 6, 3_000_000),
    ];
    // Every transfer uses 1,000 gas; a 3M-gas one fits while used + 3M ≤ 7M, i.e. always:
    // the limit counts gas used plus the next transaction's limit, not the sum of limits.
    t += 1000;
    let p = c.produce(&dev, cands, t, vec![]).unwrap();
    assert_eq!(p.applied.block.txs.len(), 7);
    assert!(p.rejected.is_empty());

    // Now transactions that use their whole limit: failing contract calls pay their gas
    // limit. Deploy a contract whose function always raises.
    let script = "CREATE FUNCTION boom() RETURNS BIGINT AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;";
    let deploy = Tx {
        kind: TxKind::Deploy,
        nonce: dev_nonce + 7,
        from: dev.public(),
        to: None,
        amount: 0,
        payload: script.as_bytes().to_vec(),
        gas_limit: 1_000_000,
        gas_price: c.genesis().gas.min_price.0,
        chain_id: c.chain_id(),
    }
    .sign(&dev);
    let addr = Address::contract(&Address::from_public_key(&dev.public()), dev_nonce + 7);
    t += 1000;
    let p = c.produce(&dev, vec![deploy], t, vec![]).unwrap();
    assert_eq!(p.applied.block.txs.len(), 1);
    let call = |k: &Keypair, nonce: u64| {
        Tx {
            kind: TxKind::Call,
            nonce,
            from: k.public(),
            to: Some(addr),
            amount: 0,
            payload: br#"{"function":"boom"}"#.to_vec(),
            gas_limit: 3_000_000,
            gas_price: c.genesis().gas.min_price.0,
            chain_id: c.chain_id(),
        }
        .sign(k)
    };
    let d0 = dev_nonce + 8;
    // Dev's three failing calls (3M each, all paid), then other's small transfer.
    let cands = vec![
        call(&dev, d0),
        call(&dev, d0 + 1),
        call(&dev, d0 + 2),
        transfer(&c, &other, 0, 1000),
    ];
    t += 1000;
    let p = c.produce(&dev, cands.clone(), t, vec![]).unwrap();
    // 3M + 3M = 6M used; the third (6M + 3M > 7M) is left out, and with it nothing else of
    // dev's; other's transfer (6M + 1,000 ≤ 7M) still fits.
    assert_eq!(p.applied.block.txs.len(), 3, "{:?}", p.rejected);
    assert_eq!(p.applied.block.txs[0].hash, cands[0].hash);
    assert_eq!(p.applied.block.txs[1].hash, cands[1].hash);
    assert_eq!(p.applied.block.txs[2].hash, cands[3].hash);
    assert!(
        p.rejected.is_empty(),
        "left out, not rejected: {:?}",
        p.rejected
    );
    let used: u64 = p.receipts.iter().map(|r| r.gas_used).sum();
    assert_eq!(used, 6_001_000);
    assert!(used <= 7_000_000);
    // The next block takes the one left out.
    t += 1000;
    let p = c.produce(&dev, vec![cands[2].clone()], t, vec![]).unwrap();
    assert_eq!(p.applied.block.txs.len(), 1);
    assert_eq!(p.receipts[0].gas_used, 3_000_000);
}

#[test]
fn a_block_over_the_gas_limit_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), Genesis::dev());
    let dev = Keypair::dev();
    let view = c.view_at(0).unwrap();
    let ctx = |limits: GasLimits| BlockCtx {
        height: 1,
        timestamp_ms: 1000,
        producer: Address::from_public_key(&dev.public()),
        chain_id: c.chain_id(),
        gas: c.genesis().gas.clone(),
        dpos: None,
        limits,
        role: aergo_chain::exec::ChainRole::Root { repo_create_fee: 0 },
        access: None,
        parent: aergo_types::Hash::ZERO,
        merge: None,
        sql_engine: aergo_sql::EngineVersion::V1,
    };
    let txs = vec![
        transfer(&c, &dev, 0, 3_000_000),
        transfer(&c, &dev, 1, 3_000_000),
    ];
    // Fits 6M: valid.
    let ok = execute_block(&view, &txs, &ctx(GasLimits::new(3_000_000, 6_000_000))).unwrap();
    assert_eq!(ok.gas_used, 2_000);
    // The second transaction's limit on top of the first's use exceeds 3,001,000 - 1: invalid.
    let err = execute_block(&view, &txs, &ctx(GasLimits::new(3_000_000, 3_000_999))).unwrap_err();
    match err {
        ChainError::InvalidTx { hash, reason } => {
            assert_eq!(hash, txs[1].hash);
            assert!(reason.contains("block gas limit"), "{reason}");
        }
        other => panic!("expected an invalid transaction, got {other:?}"),
    }
    // Over the per-transaction cap: invalid too.
    let err =
        exec::execute_tx(&view, &txs[0], &ctx(GasLimits::new(2_999_999, 6_000_000))).unwrap_err();
    assert!(err.to_string().contains("per-transaction cap"), "{err}");
}

#[test]
fn a_peer_block_over_our_limits_is_refused() {
    // Two chains with the same genesis but a producer that ignored the cap cannot exist
    // (the producer applies it); what a peer's block is judged by is the same `execute_block`
    // as above, run by `Chain::receive`. Check that path end to end: a valid block from one
    // node applies on another, and the same block's transactions replayed under a tighter
    // limit are refused by the validation code.
    let g = limited_genesis(3_000_000, 3_000_000);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(d1.path(), g.clone()), open(d2.path(), g));
    let dev = Keypair::dev();
    let cands = vec![
        transfer(&a, &dev, 0, 1000),
        transfer(&a, &dev, 1, 3_000_000),
    ];
    let p = a.produce(&dev, cands.clone(), 1000, vec![]).unwrap();
    // 1,000 used + 3M > 3M: the second is left out by assembly.
    assert_eq!(p.applied.block.txs.len(), 1);
    assert!(matches!(
        b.receive(p.applied.block.clone(), 1000).unwrap(),
        aergo_chain::chain::Received::Extended(_)
    ));
    assert_eq!(b.tip().hash, a.tip().hash);
    // A block carrying both is invalid for every node with these limits.
    let view = b.view_at(0).unwrap();
    let ctx = BlockCtx {
        height: 1,
        timestamp_ms: 1000,
        producer: Address::from_public_key(&dev.public()),
        chain_id: b.chain_id(),
        gas: b.genesis().gas.clone(),
        dpos: None,
        limits: b.gas_limits().unwrap(),
        role: aergo_chain::exec::ChainRole::Root { repo_create_fee: 0 },
        access: None,
        parent: aergo_types::Hash::ZERO,
        merge: None,
        sql_engine: aergo_sql::EngineVersion::V1,
    };
    assert!(execute_block(&view, &cands, &ctx)
        .unwrap_err()
        .to_string()
        .contains("block gas limit"));
}
