//! AergoSQL engine activation by genesis: a chain whose genesis activates engine 2 at height 3
//! refuses arrays in deploys below it and accepts them from it on; a contract deployed before
//! keeps engine 1 forever (its upgrades too); a second node replaying the blocks agrees; a
//! genesis naming an engine this node does not know is refused at open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aergo_chain::{Chain, ChainOptions};
use aergo_os::io::{IoConfig, IoService};
use aergo_sql::EngineVersion;
use aergo_types::block::ReceiptStatus;
use aergo_types::genesis::SqlEngineActivation;
use aergo_types::{Address, Genesis, Keypair, SignedTx, Tx, TxKind};

const PLAIN: &str = "CREATE TABLE t (id BIGINT PRIMARY KEY);";
const ARRAYS: &str = "CREATE FUNCTION total(xs BIGINT[]) RETURNS BIGINT AS $$
DECLARE x BIGINT; s BIGINT := 0;
BEGIN FOREACH x IN ARRAY xs LOOP s := s + x; END LOOP; RETURN s; END $$;";

fn tx(c: &Chain, nonce: u64, kind: TxKind, to: Option<Address>, payload: &[u8]) -> SignedTx {
    let dev = Keypair::dev();
    Tx {
        kind,
        nonce,
        from: dev.public(),
        to,
        amount: 0,
        payload: payload.to_vec(),
        gas_limit: 2_000_000,
        gas_price: c.genesis().gas.min_price.0,
        chain_id: c.chain_id(),
    }
    .sign(&dev)
}

fn open(dir: &std::path::Path, genesis: Genesis) -> Result<Chain, aergo_chain::ChainError> {
    Chain::open(ChainOptions {
        data_dir: dir.to_path_buf(),
        genesis,
        io: IoService::start(IoConfig::default()),
    })
}

fn genesis_activating_at(height: u64) -> Genesis {
    let mut g = Genesis::dev_legacy();
    g.sql_engine = vec![SqlEngineActivation { version: 2, height }];
    g
}

#[test]
fn engine_2_applies_to_deploys_from_its_activation_height() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), genesis_activating_at(3)).unwrap();
    let dev = Keypair::dev();
    let me = Address::from_public_key(&dev.public());
    let plain = Address::contract(&me, 0);
    let early = Address::contract(&me, 1);
    let late = Address::contract(&me, 2);

    // Height 1: engine 1. The plain contract deploys; the array script fails (fee and nonce
    // only), with the engine's reason.
    let p = c
        .produce(
            &dev,
            vec![
                tx(&c, 0, TxKind::Deploy, None, PLAIN.as_bytes()),
                tx(&c, 1, TxKind::Deploy, None, ARRAYS.as_bytes()),
            ],
            1000,
            vec![],
        )
        .unwrap();
    assert_eq!(p.receipts.len(), 2, "{:?}", p.rejected);
    assert_eq!(p.receipts[0].status, ReceiptStatus::Ok);
    let ReceiptStatus::Failed(why) = &p.receipts[1].status else {
        panic!("arrays deployed under engine 1: {:?}", p.receipts[1]);
    };
    assert!(why.contains("[]") || why.contains("array"), "{why}");
    assert!(c.contract_abi(&early, None).is_err(), "nothing deployed");
    c.produce(&dev, vec![], 2000, vec![]).unwrap();

    // Height 3: engine 2. Arrays deploy and run; the height-1 contract stays engine 1, and
    // its upgrade to arrays is refused.
    let call = br#"{"function":"total","args":["{1,2,3}"]}"#;
    let p = c
        .produce(
            &dev,
            vec![
                tx(&c, 2, TxKind::Deploy, None, ARRAYS.as_bytes()),
                tx(&c, 3, TxKind::Call, Some(late), call),
                tx(&c, 4, TxKind::Deploy, Some(plain), ARRAYS.as_bytes()),
            ],
            3000,
            vec![],
        )
        .unwrap();
    assert_eq!(p.applied.block.header.height, 3);
    assert_eq!(p.receipts.len(), 3, "{:?}", p.rejected);
    assert_eq!(p.receipts[0].status, ReceiptStatus::Ok);
    assert_eq!(p.receipts[1].status, ReceiptStatus::Ok);
    assert_eq!(p.receipts[1].result, b"6");
    assert_ne!(p.receipts[2].status, ReceiptStatus::Ok, "engine 1 kept");
    assert_eq!(c.contract_abi(&late, None).unwrap().2, EngineVersion::V2);
    assert_eq!(c.contract_abi(&plain, None).unwrap().2, EngineVersion::V1);

    // Another node with the same genesis re-executes the blocks to the same state.
    let dir2 = tempfile::tempdir().unwrap();
    let replica = open(dir2.path(), genesis_activating_at(3)).unwrap();
    for h in 1..=3 {
        let b = c.block_by_height(h).unwrap().unwrap();
        replica.receive(b, u64::MAX / 2).unwrap();
    }
    assert_eq!(replica.tip().hash, c.tip().hash);
    assert_eq!(
        replica.contract_abi(&late, None).unwrap().2,
        EngineVersion::V2
    );

    // The activation height is part of the chain id: a node with another one never
    // accepts these blocks.
    assert_ne!(
        open(
            tempfile::tempdir().unwrap().path(),
            genesis_activating_at(4)
        )
        .unwrap()
        .chain_id(),
        c.chain_id(),
        "the activation height is part of the chain id"
    );
}

#[test]
fn a_genesis_naming_an_unknown_engine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = genesis_activating_at(0);
    g.sql_engine.push(SqlEngineActivation {
        version: 200,
        height: 10,
    });
    g.validate().unwrap();
    let Err(e) = open(dir.path(), g) else {
        panic!("an unknown engine version was accepted");
    };
    let e = e.to_string();
    assert!(
        e.contains("engine version 200") && e.contains("does not know"),
        "{e}"
    );
    // Nothing was written: the folder opens with a known genesis.
    open(dir.path(), genesis_activating_at(0)).unwrap();
}
