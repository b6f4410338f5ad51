//! Gas per second of the slowest and the fastest contract work, through the real chain
//! (`Chain::produce`: execution over RocksDB-backed state, Merkle root, log append + fsync).
//! Run with `cargo bench -p aergo-chain --bench gas_rate` (`-- GAS` to change the per-call gas).
//!
//! - fast: a tight `WHILE` loop in a JIT-compiled function, run until it is out of gas;
//! - slow: an interpreted function (it has a text expression) whose loop counts a
//!   10,000-row contract table with `SELECT count(*) … WHERE name <> …`: every row is read
//!   from RocksDB and decoded, 10 gas each; and the same table sorted by
//!   `ORDER BY name DESC, id DESC LIMIT 1` (12 gas a row plus the sort).
//!
//! Prints gas/s of each (block time minus an empty block's), the ratio, and how long a block
//! of the default per-block gas limit takes at the slow rate.

#![allow(clippy::expect_used, clippy::unwrap_used)] // benchmark harness: any failure aborts

use aergo_chain::exec::{DEFAULT_BLOCK_GAS_LIMIT, DEFAULT_TX_GAS_CAP};
use aergo_chain::{Chain, ChainOptions};
use aergo_os::io::{IoConfig, IoService};
use aergo_sql::{Contract, MemKv};
use aergo_types::{Address, Genesis, Keypair, SignedTx, Tx, TxKind};
use std::time::Instant;

/// A tight loop the JIT compiles (the fast kind of work).
const SPIN: &str = include_str!("../tests/fixtures/gas_spin.sql");

/// Interpreted loops over contract rows (the slow kinds of work); `fill` loads the table.
const SCAN: &str = include_str!("../tests/fixtures/gas_scan.sql");

const ROWS: u64 = 10_000;

/// Rows of 64 KiB: a row read costs 10 gas plus 5 per KiB.
const BLOBS: &str = "CREATE TABLE blobs (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
CREATE FUNCTION fill_blobs(start BIGINT, n BIGINT) RETURNS BIGINT AS $$
DECLARE i BIGINT := 0; s TEXT := 'x'; k BIGINT := 0;
BEGIN
  WHILE k < 16 LOOP
    s := s || s;
    k := k + 1;
  END LOOP;
  WHILE i < n LOOP
    INSERT INTO blobs VALUES (start + i, s);
    i := i + 1;
  END LOOP;
  RETURN n;
END $$;
CREATE FUNCTION scan_blobs(n BIGINT) RETURNS TEXT AS $$
DECLARE i BIGINT := 0; c BIGINT := 0; s TEXT := '';
BEGIN
  WHILE i < n LOOP
    SELECT count(*) INTO c FROM blobs WHERE body <> 'none';
    s := 'rows ' || 'counted';
    i := i + 1;
  END LOOP;
  RETURN s;
END $$;";
const BLOB_ROWS: u64 = 200;

struct Bench {
    chain: Chain,
    key: Keypair,
    nonce: u64,
    time: u64,
}

impl Bench {
    fn tx(&mut self, kind: TxKind, to: Option<Address>, payload: Vec<u8>, gas: u64) -> SignedTx {
        let t = Tx {
            kind,
            nonce: self.nonce,
            from: self.key.public(),
            to,
            amount: 0,
            payload,
            gas_limit: gas,
            gas_price: self.chain.genesis().gas.min_price.0,
            chain_id: self.chain.chain_id(),
        }
        .sign(&self.key);
        self.nonce += 1;
        t
    }
    /// Produces one block with `txs`; returns (seconds, gas used, receipts' status).
    fn block(&mut self, txs: Vec<SignedTx>) -> (f64, u64, Vec<String>) {
        self.time += 1000;
        let t = Instant::now();
        let p = self
            .chain
            .produce(&Keypair::dev(), txs, self.time, vec![])
            .expect("produce");
        let secs = t.elapsed().as_secs_f64();
        let gas = p.receipts.iter().map(|r| r.gas_used).sum();
        let st = p
            .receipts
            .iter()
            .map(|r| format!("{:?}", r.status))
            .collect();
        (secs, gas, st)
    }
    fn deploy(&mut self, script: &str) -> Address {
        let from = Address::from_public_key(&self.key.public());
        let addr = Address::contract(&from, self.nonce);
        let tx = self.tx(TxKind::Deploy, None, script.as_bytes().to_vec(), 5_000_000);
        let (_, _, st) = self.block(vec![tx]);
        assert_eq!(st, vec!["Ok".to_string()], "deploy");
        addr
    }
    fn call(&mut self, c: Address, f: &str, args: &[String], gas: u64) -> SignedTx {
        let payload = serde_json::json!({"function": f, "args": args}).to_string();
        self.tx(TxKind::Call, Some(c), payload.into_bytes(), gas)
    }
}

fn main() {
    let gas: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(DEFAULT_TX_GAS_CAP);
    // Which engine runs each function, as the engine itself reports it.
    let (spin, _) =
        Contract::deploy(SPIN, "owner", b"p", &mut MemKv::default(), 1_000_000).expect("spin");
    let (scan, _) =
        Contract::deploy(SCAN, "owner", b"p", &mut MemKv::default(), 1_000_000).expect("scan");
    let jit_spin = spin.jit_functions().contains(&"spin".to_string());
    let jit_scan = scan.jit_functions().contains(&"scan".to_string());
    println!("engines: spin on the JIT = {jit_spin}, scan on the JIT = {jit_scan}");
    assert!(!jit_scan, "scan must stay in the interpreter");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut genesis = Genesis::dev();
    // The benchmark measures single calls above the default cap too.
    genesis.gas.tx_gas_cap = Some(u64::MAX / 4);
    genesis.gas.block_gas_limit = Some(u64::MAX / 2);
    let chain = Chain::open(ChainOptions {
        data_dir: dir.path().to_path_buf(),
        genesis,
        io: IoService::start(IoConfig::default()),
    })
    .expect("open");
    let mut b = Bench {
        chain,
        key: Keypair::dev(),
        nonce: 0,
        time: 0,
    };
    let spin_c = b.deploy(SPIN);
    let scan_c = b.deploy(SCAN);
    let blob_c = b.deploy(BLOBS);
    for start in (0..BLOB_ROWS).step_by(20) {
        let tx = b.call(
            blob_c,
            "fill_blobs",
            &[start.to_string(), "20".into()],
            3_000_000,
        );
        let (_, _, st) = b.block(vec![tx]);
        assert_eq!(st, vec!["Ok".to_string()], "fill_blobs");
    }
    for start in (0..ROWS).step_by(2_000) {
        let tx = b.call(
            scan_c,
            "fill",
            &[start.to_string(), "2000".into()],
            5_000_000,
        );
        let (_, _, st) = b.block(vec![tx]);
        assert_eq!(st, vec!["Ok".to_string()], "fill");
    }
    // Deploys compile in the background: time the JIT loop only once its code is ready.
    let tip = b.chain.tip().header.height;
    let view = b.chain.view_at(tip).expect("view");
    let spin_loaded =
        aergo_chain::contracts::load(&spin_c, &aergo_chain::contracts::ReadKv { view: &view })
            .expect("load")
            .expect("spin contract");
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while !spin_loaded.jit_ready() {
        assert!(Instant::now() < deadline, "JIT not ready after 60 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let jit_calls = spin_loaded.jit_calls();
    let mut empty = f64::MAX;
    for _ in 0..5 {
        empty = empty.min(b.block(vec![]).0);
    }
    let rate = |b: &mut Bench, c: Address, f: &str, gas: u64| -> f64 {
        let mut best = 0f64;
        for _ in 0..3 {
            let tx = b.call(c, f, &[i64::MAX.to_string()], gas);
            let (secs, used, st) = b.block(vec![tx]);
            assert!(st[0].contains("gas"), "{f} should run out of gas: {st:?}");
            best = best.max(used as f64 / (secs - empty).max(1e-6));
        }
        best
    };
    // The JIT loop burns a cap's gas in about a millisecond: give it more to time.
    let fast = rate(&mut b, spin_c, "spin", gas.saturating_mul(100));
    assert!(spin_loaded.jit_calls() > jit_calls, "spin ran on the JIT");
    let scan_rate = rate(&mut b, scan_c, "scan", gas);
    let sort_rate = rate(&mut b, scan_c, "sorted", gas);
    let blob_rate = rate(&mut b, blob_c, "scan_blobs", gas);
    let slow = scan_rate.min(sort_rate).min(blob_rate);
    println!(
        "empty block: {:.1} ms; gas per call: {gas} (JIT: {})",
        empty * 1e3,
        gas.saturating_mul(100)
    );
    println!("fast (JIT loop):                             {fast:>14.0} gas/s");
    println!("interpreter, count {ROWS} RocksDB rows/stmt:  {scan_rate:>14.0} gas/s");
    println!("interpreter, sort {ROWS} RocksDB rows/stmt:   {sort_rate:>14.0} gas/s");
    println!("interpreter, count {BLOB_ROWS} 64 KiB rows/stmt:    {blob_rate:>14.0} gas/s");
    println!("ratio fast/slow: {:.1}x", fast / slow);
    let interval = Genesis::dev().consensus.block_interval_ms as f64;
    println!(
        "default block gas limit {DEFAULT_BLOCK_GAS_LIMIT} at the slow rate: {:.0} ms of a {interval:.0} ms interval ({:.0}%)",
        DEFAULT_BLOCK_GAS_LIMIT as f64 / slow * 1e3,
        DEFAULT_BLOCK_GAS_LIMIT as f64 / slow * 1e3 / interval * 100.0
    );
    println!(
        "default tx gas cap {DEFAULT_TX_GAS_CAP} at the slow rate: {:.0} ms",
        DEFAULT_TX_GAS_CAP as f64 / slow * 1e3
    );
}
