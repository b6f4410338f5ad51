//! Deploys compile outside the block: a deploy and a call of the new contract in the same
//! block work (the interpreter runs it while the background JIT worker compiles), the call's
//! result and gas are the same once the compiled code runs it, and the compiled code is used
//! once ready.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aergo_chain::contracts::{self, ReadKv};
use aergo_chain::{Chain, ChainOptions};
use aergo_os::io::{IoConfig, IoService};
use aergo_types::block::ReceiptStatus;
use aergo_types::{Address, Genesis, Keypair, SignedTx, Tx, TxKind};
use std::time::{Duration, Instant};

const SCRIPT: &str = "CREATE TABLE log (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
CREATE FUNCTION spin(n BIGINT) RETURNS BIGINT AS $$
DECLARE i BIGINT := 0; s BIGINT := 0;
BEGIN
  WHILE i < n LOOP
    s := s + i * 7 % 13;
    i := i + 1;
  END LOOP;
  RETURN s;
END $$;";

fn tx(c: &Chain, nonce: u64, kind: TxKind, to: Option<Address>, payload: &[u8]) -> SignedTx {
    let dev = Keypair::dev();
    Tx {
        kind,
        nonce,
        from: dev.public(),
        to,
        amount: 0,
        payload: payload.to_vec(),
        gas_limit: 1_000_000,
        gas_price: c.genesis().gas.min_price.0,
        chain_id: c.chain_id(),
    }
    .sign(&dev)
}

#[test]
fn a_call_in_the_deploys_block_matches_the_compiled_run() {
    let dir = tempfile::tempdir().unwrap();
    let c = Chain::open(ChainOptions {
        data_dir: dir.path().to_path_buf(),
        genesis: Genesis::dev(),
        io: IoService::start(IoConfig::default()),
    })
    .unwrap();
    let dev = Keypair::dev();
    let me = Address::from_public_key(&dev.public());
    let addr = Address::contract(&me, 0);
    let call = br#"{"function":"spin","args":["20000"]}"#;
    let p = c
        .produce(
            &dev,
            vec![
                tx(&c, 0, TxKind::Deploy, None, SCRIPT.as_bytes()),
                tx(&c, 1, TxKind::Call, Some(addr), call),
            ],
            1000,
            vec![],
        )
        .unwrap();
    assert_eq!(p.applied.block.txs.len(), 2, "{:?}", p.rejected);
    assert!(p.receipts.iter().all(|r| r.status == ReceiptStatus::Ok));
    let first = &p.receipts[1];

    // The compiled code becomes ready without any block being produced.
    let view = c.view_at(1).unwrap();
    let contract = contracts::load(&addr, &ReadKv { view: &view })
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !contract.jit_ready() {
        assert!(Instant::now() < deadline, "the JIT worker did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(contract.jit_functions().contains(&"spin".to_string()));
    let used_before = contract.jit_calls();
    let p = c
        .produce(
            &dev,
            vec![tx(&c, 2, TxKind::Call, Some(addr), call)],
            2000,
            vec![],
        )
        .unwrap();
    let second = &p.receipts[0];
    assert_eq!(second.status, ReceiptStatus::Ok);
    assert_eq!(
        (&second.result, second.gas_used),
        (&first.result, first.gas_used)
    );
    assert_eq!(
        contract.jit_calls(),
        used_before + 1,
        "the call ran the compiled code"
    );
}
