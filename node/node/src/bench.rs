//! `aergo-node bench`: end-to-end transfer throughput on this machine.
//!
//! Pre-signed transfers (encoded bytes, as they arrive from the network) are pushed through
//! the real pipeline — decode and stateless checks, batch signature verification on a worker
//! pool, mempool admission, block assembly, execution, Merkle state root, and commit (block
//! log append + fdatasync, RocksDB batch) — with full blocks cut back to back (no slot
//! timer). In the same run, the same signatures are verified with pure `ed25519-dalek` batch
//! verification on the same cores; the ratio of the two rates is printed.

use aergo_chain::exec::check_stateless;
use aergo_chain::mempool::Mempool;
use aergo_chain::{Chain, ChainOptions};
use aergo_os::config::MempoolConfig;
use aergo_os::io::{IoConfig, IoService};
use aergo_types::genesis::{ConsensusParams, Engine, GasParams, GenesisAccount};
use aergo_types::{Address, Aer, Genesis, Hash, Keypair, SignedTx, TOTAL_SUPPLY};
use anyhow::{bail, Result};
use parking_lot::Mutex;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Benchmarks other than the end-to-end pipeline.
#[derive(clap::Subcommand, Debug)]
pub enum BenchWhat {
    /// Validation along the DTT on a worker pool against sequential execution of the same
    /// blocks (`low contention`, `full contention`, `100 contracts`, `one contract`).
    Exec(crate::bench_exec::ExecArgs),
}

/// Benchmark options.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// Number of transfers.
    #[arg(long, default_value_t = 200_000)]
    txs: usize,
    /// Number of sending accounts.
    #[arg(long, default_value_t = 2_000)]
    accounts: usize,
    /// Data folder (default: a temporary folder, removed afterwards).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Instead: root-chain throughput with these numbers of idle repositories hosted
    /// (e.g. `0,10,100`; the first is the baseline).
    #[arg(long, value_delimiter = ',')]
    idle_repos: Vec<usize>,
    /// With `--idle-repos`: rounds; each round runs every count once, in a rotated order, and
    /// each count's figure is its median over the rounds (a burst of load on a shared host
    /// then hits every count alike instead of one).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Instead: transfer throughput in one repository, then in two at once, and the time from
    /// a repository's creation to its first block.
    #[arg(long)]
    repos: bool,
    /// Instead: branch creation at `--branch-accounts` accounts, reads at ancestry depth 1, 4
    /// and 16, and an auto merge of `--merge-txs` transfers, each against its baseline.
    #[arg(long)]
    branches: bool,
    /// With `--branches`: the account counts creation is measured at.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000, 1_000_000])]
    branch_accounts: Vec<usize>,
    /// With `--branches`: transfers in the merge (a merge block carries 4,000 of them here;
    /// a larger merge spans consecutive merge blocks).
    #[arg(long, default_value_t = 10_000)]
    merge_txs: usize,
    /// With `--branches`: rows changed on both sides of the consistent merge (each decided by
    /// the resolver contract; a merge calls it at most 10,000 times).
    #[arg(long, default_value_t = 10_000)]
    merge_rows: usize,
}

pub fn bench_genesis(keys: &[Keypair]) -> Genesis {
    let share = TOTAL_SUPPLY / keys.len() as u128;
    let mut balances: Vec<GenesisAccount> = keys
        .iter()
        .map(|k| GenesisAccount {
            address: Address::from_public_key(&k.public()),
            balance: Aer(share),
        })
        .collect();
    if let Some(first) = balances.first_mut() {
        first.balance = Aer(share + TOTAL_SUPPLY - share * keys.len() as u128);
    }
    Genesis {
        chain_name: "aergo-bench".into(),
        timestamp_ms: 0,
        balances,
        consensus: ConsensusParams {
            engine: Engine::Solo,
            block_interval_ms: 1000,
            producer: None,
            dpos: None,
            poa: None,
        },
        gas: GasParams {
            base: 1000,
            per_byte: 10,
            min_price: Aer(1_000_000_000),
            tx_gas_cap: None,
            block_gas_limit: None,
        },
        repo_create_fee: None,
        dd_interval_ms: None,
        repo: None,
        repos: Vec::new(),
        branch: None,
        sql_engine: Vec::new(),
    }
}

/// Runs the benchmark and prints the report.
pub fn run(a: &BenchArgs) -> Result<()> {
    if let Some(BenchWhat::Exec(e)) = &a.what {
        return crate::bench_exec::run(e);
    }
    if a.accounts < 2 || a.txs == 0 {
        bail!("need at least 2 accounts and 1 transaction");
    }
    if !a.idle_repos.is_empty() {
        return crate::bench_repos::idle(a.txs, a.accounts, &a.idle_repos, a.rounds);
    }
    if a.repos {
        return crate::bench_repos::parallel(a.txs, a.accounts);
    }
    if a.branches {
        return crate::bench_branches::run(&a.branch_accounts, a.merge_txs, a.merge_rows);
    }
    let cores = rayon::current_num_threads();
    println!(
        "aergo-node bench: {} transfers from {} accounts on {cores} cores",
        a.txs, a.accounts
    );
    let keys: Vec<Keypair> = (0..a.accounts)
        .into_par_iter()
        .map(|i| Keypair::from_seed(&Hash::of(format!("bench {i}").as_bytes()).0))
        .collect();
    let genesis = bench_genesis(&keys);
    let chain_id = genesis.chain_id();
    let t = Instant::now();
    let encoded = crate::bench_repos::transfers(&keys, a.txs, chain_id);
    println!(
        "  pre-signed {} transfers in {:.2} s ({} bytes each)",
        a.txs,
        t.elapsed().as_secs_f64(),
        encoded.first().map(|e| e.len()).unwrap_or(0)
    );

    let tmp;
    let dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let io = IoService::start(IoConfig::default());
    let backend = io.backend();
    let chain = Arc::new(Chain::open(ChainOptions {
        data_dir: dir.clone(),
        genesis: genesis.clone(),
        io,
    })?);
    let run = pipeline(&chain, &encoded, chain_id, &genesis.gas)?;
    let (secs, n_included, n_blocks, commit_secs) =
        (run.secs, run.included, run.blocks, run.commit_secs);
    let pipeline_tps = n_included as f64 / secs;

    // Baseline: pure ed25519-dalek batch verification of the same signatures, same cores.
    let decoded: Vec<SignedTx> = encoded
        .par_iter()
        .filter_map(|b| SignedTx::decode(b).ok())
        .collect();
    let t = Instant::now();
    let all_ok = decoded.par_chunks(256).all(|part| {
        let msgs: Vec<&[u8]> = part.iter().map(|t| &t.hash.0[..]).collect();
        let sigs: Vec<ed25519_dalek::Signature> = part
            .iter()
            .map(|t| ed25519_dalek::Signature::from_bytes(&t.signature.0))
            .collect();
        let vks: Vec<ed25519_dalek::VerifyingKey> = part
            .iter()
            .filter_map(|t| ed25519_dalek::VerifyingKey::from_bytes(&t.tx.from.0).ok())
            .collect();
        ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok()
    });
    let dalek_secs = t.elapsed().as_secs_f64();
    if !all_ok {
        bail!("baseline verification failed");
    }
    let dalek_rate = decoded.len() as f64 / dalek_secs;
    let ratio = pipeline_tps / dalek_rate;
    let tip = chain.tip();
    println!("  block log I/O backend: {backend}");
    println!(
        "  blocks: {n_blocks} (avg {:.0} transfers/block), tip height {}",
        n_included as f64 / n_blocks.max(1) as f64,
        tip.header.height
    );
    println!(
        "  block assembly+execution+commit time: {:.2} s of {:.2} s wall",
        commit_secs, secs
    );
    println!(
        "pipeline: {:.0} transfers/s ({} in {:.2} s)",
        pipeline_tps, n_included, secs
    );
    println!(
        "baseline: {:.0} signatures/s (ed25519-dalek verify_batch, {} in {:.2} s, {cores} cores)",
        dalek_rate,
        decoded.len(),
        dalek_secs
    );
    println!("ratio:    {:.3} (floor 0.25, goal 0.6)", ratio);
    Ok(())
}

/// One pipeline run's figures.
pub struct Run {
    /// Wall time, s.
    pub secs: f64,
    /// Transactions included.
    pub included: u64,
    /// Blocks made.
    pub blocks: u64,
    /// Time inside block assembly, execution and commit, s.
    pub commit_secs: f64,
}

impl Run {
    /// Transfers per second.
    pub fn tps(&self) -> f64 {
        self.included as f64 / self.secs
    }
}

/// Pushes `encoded` transactions of `chain_id` through decode, stateless checks, batch
/// signature verification, mempool, assembly, execution and commit on `chain`, full blocks
/// back to back; every one must be included.
pub fn pipeline(
    chain: &Arc<Chain>,
    encoded: &[Vec<u8>],
    chain_id: Hash,
    gas: &GasParams,
) -> Result<Run> {
    let limits = MempoolConfig {
        max_txs: encoded.len() + 1,
        max_bytes: usize::MAX / 2,
        max_per_account: encoded.len() + 1,
        ttl_secs: 3600,
    };
    let pool = Arc::new(Mutex::new(Mempool::new(limits)));
    let producer_key = Keypair::from_seed(&[42; 32]);
    let included = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let blocks = Arc::new(AtomicU64::new(0));

    let start = Instant::now();
    let prod = {
        let (chain, pool, included, done, blocks) = (
            chain.clone(),
            pool.clone(),
            included.clone(),
            done.clone(),
            blocks.clone(),
        );
        let total = encoded.len() as u64;
        std::thread::spawn(move || -> Result<f64> {
            let mut commit_secs = 0.0;
            while included.load(Ordering::Relaxed) < total {
                if done.load(Ordering::Relaxed) && pool.lock().is_empty() {
                    break;
                }
                let cands = pool.lock().candidates(crate::producer::MAX_CANDIDATES);
                if cands.is_empty() {
                    std::thread::yield_now();
                    continue;
                }
                let ts = chain.tip().header.timestamp_ms + 1;
                let c0 = Instant::now();
                let p = chain.produce(&producer_key, cands, ts, Vec::new())?;
                if p.applied.block.txs.is_empty() {
                    if let Some((h, reason)) = p.rejected.first() {
                        bail!("the producer left every candidate out ({h}: {reason})");
                    }
                }
                commit_secs += c0.elapsed().as_secs_f64();
                pool.lock().prune(&p.applied.nonces);
                included.fetch_add(p.applied.block.txs.len() as u64, Ordering::Relaxed);
                blocks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(commit_secs)
        })
    };
    let gas = gas.clone();
    let mut rejected = 0usize;
    for chunk in encoded.chunks(4096) {
        let checked: Vec<Option<SignedTx>> = chunk
            .par_chunks(256)
            .flat_map_iter(|part| {
                let txs: Vec<Option<SignedTx>> = part
                    .iter()
                    .map(|b| {
                        SignedTx::decode(b)
                            .ok()
                            .filter(|t| check_stateless(t, &chain_id, &gas).is_ok())
                    })
                    .collect();
                let items: Vec<(aergo_types::PublicKey, &[u8], aergo_types::Signature)> = txs
                    .iter()
                    .flatten()
                    .map(|t| (t.tx.from, &t.hash.0[..], t.signature))
                    .collect();
                let verdicts = aergo_types::crypto::verify_batch(&items);
                let mut vi = verdicts.into_iter();
                txs.into_iter()
                    .map(|t| t.filter(|_| vi.next().unwrap_or(false)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut p = pool.lock();
        for t in checked {
            let Some(t) = t else {
                rejected += 1;
                continue;
            };
            let acct = chain.account_latest(&t.tx.sender())?;
            if p.add(t, acct, 0).is_err() {
                rejected += 1;
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let commit_secs = match prod.join() {
        Ok(r) => r?,
        Err(_) => bail!("producer thread panicked"),
    };
    let secs = start.elapsed().as_secs_f64();
    let n_included = included.load(Ordering::Relaxed);
    let n_blocks = blocks.load(Ordering::Relaxed);
    if rejected > 0 || n_included != encoded.len() as u64 {
        bail!(
            "pipeline lost transactions: {rejected} rejected, {n_included} of {} included",
            encoded.len()
        );
    }
    Ok(Run {
        secs,
        included: n_included,
        blocks: n_blocks,
        commit_secs,
    })
}
