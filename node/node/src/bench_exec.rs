//! `aergo-node bench exec`: validation along a block's DTT on a worker pool against
//! sequential execution of the same block.
//!
//! Each workload's block is produced (with its canonical DTT) on one chain; a second chain
//! with the same genesis imports every block before it and then executes the workload block
//! on its tip again and again without committing (`Chain::bench_execute`): the baseline is
//! `execute_block` as it was before access sets (sequential, nothing recorded) on the same
//! RocksDB-backed view, and the measured run is what `prepare` does with a DTT block —
//! `parallel::validate` with `--workers` workers, the canonical DTT check included. Runs
//! alternate, each figure is the median, and before any timing the two runs' receipts and
//! writes must be identical. Then the second chain imports the block (validating it along
//! its DTT) before the next workload. A second line per workload gives the sequential path
//! with access sets recorded and the canonical DTT computation alone. Contract workloads
//! wait until the background JIT compiled the contracts, so every run executes the same
//! code.

use aergo_chain::contracts::{self, ReadKv};
use aergo_chain::{dtt, Chain, ChainOptions};
use aergo_os::io::{IoConfig, IoService};
use aergo_types::block::{Block, ReceiptStatus};
use aergo_types::{Address, Hash, Keypair, SignedTx, Tx, TxKind};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// `bench exec` options.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Workers of the parallel run (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Transactions offered per workload block (as many as fit the block are included).
    #[arg(long, default_value_t = 4000)]
    txs: usize,
    /// Timed runs of each kind per workload.
    #[arg(long, default_value_t = 9)]
    runs: usize,
    /// Only the workloads whose name contains this (e.g. `contention`).
    #[arg(long)]
    only: Option<String>,
}

/// The whitepaper's Figure 6 (the SQL crate's fixture) and a function that seeds its rows.
const FIGURE6: &str = concat!(
    include_str!("../../sql/tests/fixtures/figure6.sql"),
    "
CREATE FUNCTION seed (a BIGINT, b BIGINT) RETURNS BIGINT AS $$
DECLARE i BIGINT := a;
BEGIN
  WHILE i < b LOOP
    INSERT INTO accounts VALUES ('u' || i, 1000.00);
    i := i + 1;
  END LOOP;
  RETURN i;
END $$;
",
);

/// Contracts of the `100 contracts` workload.
const CONTRACTS: usize = 100;

struct Setup {
    keys: Vec<Keypair>,
    nonces: Vec<u64>,
    chain_id: Hash,
    price: u128,
}

impl Setup {
    #[allow(clippy::too_many_arguments)]
    fn tx(
        &mut self,
        i: usize,
        kind: TxKind,
        to: Option<Address>,
        amount: u128,
        payload: &[u8],
        gas: u64,
    ) -> SignedTx {
        let nonce = self.nonces[i];
        self.nonces[i] += 1;
        Tx {
            kind,
            nonce,
            from: self.keys[i].public(),
            to,
            amount,
            payload: payload.to_vec(),
            gas_limit: gas,
            gas_price: self.price,
            chain_id: self.chain_id,
        }
        .sign(&self.keys[i])
    }
    fn addr(&self, i: usize) -> Address {
        Address::from_public_key(&self.keys[i].public())
    }
}

/// Figure 6 `transfer(from, to, 0.01)` on `contract` from key `i`.
fn fig6_call(s: &mut Setup, i: usize, contract: Address, from: &str, to: &str) -> SignedTx {
    let p = serde_json::json!({ "function": "transfer", "args": [from, to, "0.01"] }).to_string();
    s.tx(i, TxKind::Call, Some(contract), 0, p.as_bytes(), 50_000)
}

/// A call of `seed(a, b)` (rows `u{a} … u{b-1}`) on `contract` from key `i`. (Rows
/// inserted by an upgrade script would be part of every call's contract loading: the
/// stored scripts are hashed to find the loaded contract.)
fn seed_call(s: &mut Setup, i: usize, contract: Address, rows: std::ops::Range<usize>) -> SignedTx {
    let args = [rows.start.to_string(), rows.end.to_string()];
    let p = serde_json::json!({ "function": "seed", "args": args }).to_string();
    s.tx(i, TxKind::Call, Some(contract), 0, p.as_bytes(), 4_000_000)
}

/// Produces blocks on `chain` until every one of `txs` is included.
fn produce_all(
    chain: &Chain,
    producer: &Keypair,
    time: &mut u64,
    mut txs: Vec<SignedTx>,
) -> Result<Vec<Block>> {
    let mut blocks = Vec::new();
    while !txs.is_empty() {
        *time += 1000;
        let p = chain.produce(producer, txs.clone(), *time, Vec::new())?;
        if let Some((h, why)) = p.rejected.first() {
            bail!("the producer left out {h}: {why}");
        }
        if p.applied.block.txs.is_empty() {
            bail!("a setup transaction fits no block");
        }
        if let Some(r) = p.receipts.iter().find(|r| r.status != ReceiptStatus::Ok) {
            bail!("a setup transaction failed: {:?}", r.status);
        }
        let included: std::collections::HashSet<Hash> =
            p.applied.block.txs.iter().map(|t| t.hash).collect();
        txs.retain(|t| !included.contains(&t.hash));
        blocks.push(p.applied.block);
    }
    Ok(blocks)
}

/// Runs the benchmark and prints one line per workload.
pub fn run(a: &ExecArgs) -> Result<()> {
    let workers = a
        .workers
        .unwrap_or_else(aergo_chain::parallel::workers)
        .max(1);
    if a.txs < CONTRACTS * 2 || a.runs == 0 {
        bail!("need at least {} transactions and 1 run", CONTRACTS * 2);
    }
    println!(
        "aergo-node bench exec: {} transactions offered per block, {workers} workers, median of {} runs",
        a.txs, a.runs
    );
    let n = a.txs;
    let keys: Vec<Keypair> = (0..n + 2)
        .into_par_iter()
        .map(|i| Keypair::from_seed(&Hash::of(format!("exec {i}").as_bytes()).0))
        .collect();
    let genesis = crate::bench::bench_genesis(&keys);
    let mut s = Setup {
        nonces: vec![0; keys.len()],
        chain_id: genesis.chain_id(),
        price: genesis.gas.min_price.0,
        keys,
    };
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let open = |dir: &std::path::Path| {
        Chain::open(ChainOptions {
            data_dir: dir.to_path_buf(),
            genesis: genesis.clone(),
            io: IoService::start(IoConfig::default()),
        })
    };
    let (a_chain, b_chain) = (open(d1.path())?, open(d2.path())?);
    let producer = Keypair::from_seed(&[7; 32]);
    let mut time = 0u64;

    // Setup: 100 Figure 6 contracts (keys 0..99) and one more (key n), each seeded with the
    // rows its calls use (two per call, in upgrades of at most 2,000 rows).
    let per_contract = n.div_ceil(CONTRACTS) * 2;
    let mut contracts_100 = Vec::new();
    let mut deploys = Vec::new();
    for i in (0..CONTRACTS).chain([n]) {
        if i < CONTRACTS {
            contracts_100.push(Address::contract(&s.addr(i), 0));
        }
        deploys.push(s.tx(i, TxKind::Deploy, None, 0, FIGURE6.as_bytes(), 100_000));
    }
    let one = Address::contract(&s.addr(n), 0);
    let mut setup = produce_all(&a_chain, &producer, &mut time, deploys)?;
    let mut seeds = Vec::new();
    for (i, c) in contracts_100.iter().enumerate() {
        seeds.push(seed_call(&mut s, i, *c, 0..per_contract));
    }
    for start in (0..2 * n).step_by(1000) {
        seeds.push(seed_call(&mut s, n, one, start..(start + 1000).min(2 * n)));
    }
    setup.extend(produce_all(&a_chain, &producer, &mut time, seeds)?);
    // Every block, in order: the sync measurement imports them again (the set-up ones
    // untimed).
    let mut history: Vec<Block> = setup.clone();
    let setup_len = history.len();
    for blk in setup {
        b_chain.receive(blk, u64::MAX / 2)?;
    }
    // Calls run on the interpreter until the background JIT is ready: wait for it, so both
    // runs of every workload execute the same code.
    let started = Instant::now();
    let all: Vec<Address> = contracts_100.iter().copied().chain([one]).collect();
    let ready = jit_ready(&b_chain, &all)?;
    println!(
        "  JIT: {ready} of {} contracts compiled after {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );

    let sink = Address::from_public_key(&Keypair::from_seed(&[8; 32]).public());
    type Make = Box<dyn Fn(&mut Setup) -> Vec<SignedTx>>;
    let workloads: Vec<(&str, Make)> = vec![
        (
            "low contention",
            Box::new(move |s: &mut Setup| {
                (0..n)
                    .map(|i| {
                        let to = Address::from_public_key(
                            &Keypair::from_seed(&Hash::of(format!("to {i}").as_bytes()).0).public(),
                        );
                        s.tx(i, TxKind::Transfer, Some(to), 1, b"", 1000)
                    })
                    .collect()
            }),
        ),
        (
            "full contention",
            Box::new(move |s: &mut Setup| {
                (0..n)
                    .map(|i| s.tx(i, TxKind::Transfer, Some(sink), 1, b"", 1000))
                    .collect()
            }),
        ),
        (
            "100 contracts",
            Box::new(move |s: &mut Setup| {
                (0..n)
                    .map(|i| {
                        let (c, q) = (contracts_100[i % CONTRACTS], i / CONTRACTS);
                        fig6_call(s, i, c, &format!("u{}", 2 * q), &format!("u{}", 2 * q + 1))
                    })
                    .collect()
            }),
        ),
        (
            "one contract",
            Box::new(move |s: &mut Setup| {
                (0..n)
                    .map(|i| {
                        fig6_call(
                            s,
                            i,
                            one,
                            &format!("u{}", 2 * i),
                            &format!("u{}", 2 * i + 1),
                        )
                    })
                    .collect()
            }),
        ),
        (
            "one contract, one row pair",
            Box::new(move |s: &mut Setup| {
                (0..n).map(|i| fig6_call(s, i, one, "u0", "u1")).collect()
            }),
        ),
    ];
    for (name, make) in workloads {
        if a.only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let candidates = make(&mut s);
        let blk = {
            time += 1000;
            let p = a_chain.produce(&producer, candidates, time, Vec::new())?;
            if let Some((h, why)) = p.rejected.first() {
                bail!("the producer refused {h}: {why}");
            }
            // Candidates that did not fit stay unsent: their senders' nonces go back.
            let included: std::collections::HashSet<_> =
                p.applied.block.txs.iter().map(|t| t.tx.sender()).collect();
            for (i, k) in s.keys.iter().enumerate() {
                let a = Address::from_public_key(&k.public());
                if i < n && !included.contains(&a) {
                    s.nonces[i] = s.nonces[i].saturating_sub(1);
                }
            }
            p.applied.block
        };
        let d = blk
            .body_ext
            .dtt
            .clone()
            .context("the produced block carries no DTT")?;
        // Every transaction succeeds (a Figure 6 call returns 'OK').
        let failed = b_chain
            .bench_execute(&blk, None, false)?
            .receipts
            .into_iter()
            .filter(|r| {
                r.status != ReceiptStatus::Ok || !(r.result.is_empty() || r.result == b"OK")
            })
            .map(|r| format!("{:?} {}", r.status, String::from_utf8_lossy(&r.result)))
            .collect::<Vec<_>>();
        if let Some(first) = failed.first() {
            bail!(
                "{name}: {} transactions failed, the first: {first}",
                failed.len()
            );
        }
        // Identical results first.
        let seq = b_chain.bench_execute(&blk, None, false)?;
        let par = b_chain.bench_execute(&blk, Some(workers), true)?;
        if seq.receipts != par.receipts || seq.writes != par.writes {
            bail!("{name}: the parallel run differs from the sequential one");
        }
        let (mut t_seq, mut t_par, mut t_rec, mut t_can) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.runs {
            let t = Instant::now();
            b_chain.bench_execute(&blk, None, false)?;
            t_seq.push(t.elapsed());
            let t = Instant::now();
            b_chain.bench_execute(&blk, Some(workers), true)?;
            t_par.push(t.elapsed());
            let t = Instant::now();
            let rec = b_chain.bench_execute(&blk, Some(1), false)?;
            t_rec.push(t.elapsed());
            let t = Instant::now();
            let canonical = dtt::canonical(&rec.access);
            t_can.push(t.elapsed());
            if canonical != d {
                bail!("{name}: the block's DTT is not the canonical one");
            }
        }
        let (ms, mp) = (median(&mut t_seq), median(&mut t_par));
        let (mr, mc) = (median(&mut t_rec), median(&mut t_can));
        println!(
            "{name}: {} txs, DTT width {:.1}, sequential {:.2} ms, parallel ({workers} workers, with the DTT check) {:.2} ms, speedup {:.2}x",
            blk.txs.len(),
            dtt::width(&d),
            ms * 1e3,
            mp * 1e3,
            ms / mp
        );
        println!(
            "  sequential recording access sets {:.2} ms ({:+.1}%), canonical DTT {:.2} ms",
            mr * 1e3,
            (mr / ms - 1.0) * 100.0,
            mc * 1e3
        );
        if name == "low contention" {
            // The ceiling: the block as two independent halves on two threads, nothing
            // recorded, checked or merged (`Chain::bench_split`), against the same sequential
            // run, alternating.
            let (mut t_s, mut t_q) = (Vec::new(), Vec::new());
            for _ in 0..a.runs {
                let t = Instant::now();
                b_chain.bench_execute(&blk, None, false)?;
                t_q.push(t.elapsed());
                let t = Instant::now();
                b_chain.bench_split(&blk)?;
                t_s.push(t.elapsed());
            }
            let (mq, msplit) = (median(&mut t_q), median(&mut t_s));
            println!(
                "  ceiling: the same block as two independent halves on 2 threads (no access sets, DTT, check or merge) {:.2} ms, baseline sequential {:.2} ms, speedup {:.2}x",
                msplit * 1e3,
                mq * 1e3,
                mq / msplit
            );
            // The block's signature checks: one batch on one thread (as before) against
            // batches on the workers (what `prepare` does now).
            let sigs: Vec<_> = blk
                .txs
                .iter()
                .map(|t| (t.tx.from, &t.hash.0[..], t.signature))
                .collect();
            let refs: Vec<&SignedTx> = blk.txs.iter().collect();
            let (mut one, mut pool, mut warm) = (Vec::new(), Vec::new(), Vec::new());
            // The signatures verified at admission (what a validator that received the
            // transactions by gossip has before the block comes).
            aergo_chain::sigcache::remember(blk.txs.iter());
            for _ in 0..a.runs {
                let t = Instant::now();
                let v1 = aergo_types::crypto::verify_batch(&sigs);
                one.push(t.elapsed());
                let t = Instant::now();
                let v2 = aergo_chain::parallel::verify_uncached(&refs, workers);
                pool.push(t.elapsed());
                let t = Instant::now();
                let v3 = aergo_chain::parallel::verify_signatures(&blk.txs, workers);
                warm.push(t.elapsed());
                if v1 != v2 || v1 != v3 || v1.contains(&false) {
                    bail!("signature verdicts differ");
                }
            }
            let (m1, mp, mw) = (median(&mut one), median(&mut pool), median(&mut warm));
            println!(
                "signature checks: {} signatures, one batch {:.2} ms, {workers} workers {:.2} ms, speedup {:.2}x",
                sigs.len(),
                m1 * 1e3,
                mp * 1e3,
                m1 / mp
            );
            println!(
                "signature checks of transactions verified at admission (the cache): {:.2} ms, against one batch {:.2} ms, speedup {:.0}x",
                mw * 1e3,
                m1 * 1e3,
                m1 / mw
            );
        }
        history.push(blk.clone());
        b_chain.receive(blk, u64::MAX / 2)?;
    }
    if a.only.as_ref().is_none_or(|o| "sync".contains(o.as_str())) {
        sync(&history, setup_len, &all, &open, workers, a.runs.min(5))?;
    }
    Ok(())
}

/// Block import rate during sync: `history` imported into a fresh chain with one validation
/// worker (one signature batch and sequential execution, what sync did before the DTT) and
/// with `workers` (signatures in batches on the workers, execution along each block's DTT),
/// alternating, `runs` times each; the first `setup` blocks (deploys, seeding) are imported
/// untimed, then the background JIT is awaited for `contracts` (as in the workloads above:
/// otherwise it competes for the cores), and the workload blocks after them are timed.
/// Prints the medians and the ratio.
fn sync(
    history: &[Block],
    setup: usize,
    contracts: &[Address],
    open: &dyn Fn(&std::path::Path) -> Result<Chain, aergo_chain::ChainError>,
    workers: usize,
    runs: usize,
) -> Result<()> {
    let timed = history.get(setup..).unwrap_or_default();
    let txs: usize = timed.iter().map(|b| b.txs.len()).sum();
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..runs.max(1) {
        for (k, w) in [1, workers].into_iter().enumerate() {
            aergo_chain::parallel::set_workers(w);
            let dir = tempfile::tempdir()?;
            let chain = open(dir.path())?;
            let import = |b: Block| -> Result<()> {
                let h = b.header.height;
                match chain.receive(b, u64::MAX / 2)? {
                    aergo_chain::chain::Received::Extended(_) => Ok(()),
                    other => bail!("sync: block {h} was not imported: {other:?}"),
                }
            };
            for b in history.iter().take(setup) {
                import(b.clone())?;
            }
            jit_ready(&chain, contracts)?;
            let blocks = timed.to_vec();
            // A node syncing blocks it never saw the transactions of: it verifies every
            // signature.
            aergo_chain::sigcache::clear();
            let t = Instant::now();
            for b in blocks {
                import(b)?;
            }
            times[k].push(t.elapsed());
        }
    }
    aergo_chain::parallel::set_workers(workers);
    let (m1, mn) = (median(&mut times[0]), median(&mut times[1]));
    println!(
        "sync: the {} workload blocks ({txs} txs) imported into a fresh chain after its set-up: 1 worker {:.0} ms ({:.0} tx/s), {workers} workers {:.0} ms ({:.0} tx/s), speedup {:.2}x",
        timed.len(),
        m1 * 1e3,
        txs as f64 / m1,
        mn * 1e3,
        txs as f64 / mn,
        m1 / mn
    );
    Ok(())
}

/// Waits (at most 300 s) until the background JIT compiled every one of `contracts` at
/// `chain`'s tip; returns how many are compiled.
fn jit_ready(chain: &Chain, contracts: &[Address]) -> Result<usize> {
    let view = chain.view_at(chain.tip().header.height)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut ready = 0;
    while Instant::now() < deadline {
        ready = 0;
        for c in contracts {
            // A load re-queues a version the JIT's full queue turned away.
            let loaded = contracts::load(c, &ReadKv { view: &view })
                .map_err(anyhow::Error::msg)?
                .context("a benchmark contract is missing")?;
            ready += usize::from(loaded.jit_ready());
        }
        if ready == contracts.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ready)
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, Duration::as_secs_f64)
}
