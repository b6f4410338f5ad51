//! `aergo-node bench --idle-repos 0,10,100` and `aergo-node bench --repos`: what hosting
//! repositories costs the root chain, and what domain partitioning buys.
//!
//! - Idle repositories: for each count, a fresh root chain registers that many repositories
//!   (one block of `repo_create`s), hosts them as the node does (`Repos::start`: each
//!   ledger and directory opened in the shared database, each with its parked producer
//!   thread), then pushes the same pre-signed root transfers through the real pipeline
//!   (`bench::pipeline`). The first count is the baseline; each line prints its ratio.
//! - Two repositories at once: the pipeline on one repository alone, then on two others
//!   concurrently (their own chains, mempools and producers; one shared database, I/O
//!   service and signature-verification pool), aggregate rate against the single one.
//! - Creation to first block: a `repo_create` committed on the root, then the time until the
//!   repository is hosted and has committed its first block (one transfer), against a root
//!   block of one transfer in the same run.

use crate::bench::{bench_genesis, pipeline, Run};
use crate::node::Node;
use aergo_chain::{Chain, ChainOptions};
use aergo_os::config::MempoolConfig;
use aergo_os::io::{IoConfig, IoService};
use aergo_types::repo::{RepoCreate, RepoEngine, Visibility};
use aergo_types::{Address, Aer, Genesis, Hash, Keypair, SignedTx, Tx, TxKind};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .into_par_iter()
        .map(|i| Keypair::from_seed(&Hash::of(format!("bench {i}").as_bytes()).0))
        .collect()
}

/// `n` transfers among `keys`, signed for `chain_id`.
pub fn transfers(keys: &[Keypair], n: usize, chain_id: Hash) -> Vec<Vec<u8>> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let s = i % keys.len();
            Tx {
                kind: TxKind::Transfer,
                nonce: (i / keys.len()) as u64,
                from: keys[s].public(),
                to: Some(Address::from_public_key(
                    &keys[(s + 1) % keys.len()].public(),
                )),
                amount: 1,
                payload: Vec::new(),
                gas_limit: 1000,
                gas_price: 1_000_000_000,
                chain_id,
            }
            .sign(&keys[s])
            .encode()
        })
        .collect()
}

fn create(
    creator: &Keypair,
    nonce: u64,
    name: &str,
    producer: &Keypair,
    alloc: &[Keypair],
    chain_id: Hash,
) -> SignedTx {
    let c = RepoCreate {
        name: name.into(),
        visibility: Visibility::Public,
        engine: RepoEngine::Solo,
        admins: vec![Address::from_public_key(&creator.public())],
        producers: vec![producer.public()],
        alloc: alloc
            .iter()
            .map(|k| {
                (
                    Address::from_public_key(&k.public()),
                    Aer(1_000_000 * aergo_types::AER_PER_AERGO),
                )
            })
            .collect(),
    };
    Tx {
        kind: TxKind::RepoCreate,
        nonce,
        from: creator.public(),
        to: None,
        amount: 0,
        payload: c.encode(),
        gas_limit: 100_000,
        gas_price: 1_000_000_000,
        chain_id,
    }
    .sign(creator)
}

/// A node on a fresh root chain in `dir` whose `creator` registered `names` (one block) and
/// that hosts them, as `aergo-node` does.
fn root_with_repos(
    dir: &std::path::Path,
    genesis: &Genesis,
    creator: &Keypair,
    producer: &Keypair,
    names: &[String],
    alloc: &[Keypair],
) -> Result<Arc<Node>> {
    let chain = Arc::new(Chain::open(ChainOptions {
        data_dir: dir.to_path_buf(),
        genesis: genesis.clone(),
        io: IoService::start(IoConfig::default()),
    })?);
    let id = genesis.chain_id();
    for (i, chunk) in names.chunks(1000).enumerate() {
        let txs: Vec<SignedTx> = chunk
            .iter()
            .enumerate()
            .map(|(j, n)| create(creator, (i * 1000 + j) as u64, n, producer, alloc, id))
            .collect();
        let ts = chain.tip().header.timestamp_ms + 1000;
        let p = chain.produce(producer, txs, ts, Vec::new())?;
        if let Some(r) = p.rejected.first() {
            bail!("repo_create left out: {}", r.1);
        }
        if let Some(r) = p
            .receipts
            .iter()
            .find(|r| !matches!(r.status, aergo_types::ReceiptStatus::Ok))
        {
            bail!("repo_create failed: {:?}", r.status);
        }
    }
    let node = Arc::new(Node::new(
        chain,
        producer.clone(),
        MempoolConfig::default(),
        false,
    ));
    node.repos
        .start(&node, dir.to_path_buf(), MempoolConfig::default())?;
    if node.repos.all().len() != names.len() {
        bail!(
            "{} of {} repositories hosted",
            node.repos.all().len(),
            names.len()
        );
    }
    Ok(node)
}

/// A directory change by `admin`.
fn dd_change(admin: &Keypair, nonce: u64, dd_id: Hash, op: &aergo_types::repo::DdOp) -> SignedTx {
    Tx {
        kind: TxKind::DirectoryChange,
        nonce,
        from: admin.public(),
        to: None,
        amount: 0,
        payload: op.encode(),
        gas_limit: 100_000,
        gas_price: 0,
        chain_id: dd_id,
    }
    .sign(admin)
}

/// Opens repository `name` (hosted by `node`) to anonymous writes: one directory block by
/// its admin `creator`.
fn open_writes(node: &Node, name: &str, creator: &Keypair, producer: &Keypair) -> Result<()> {
    let h = node.repos.get(name).context("hosted")?;
    let dd = &h.directory.chain;
    let op = aergo_types::repo::DdOp::Anonymous {
        read: true,
        write: true,
    };
    let tx = dd_change(creator, 0, dd.chain_id(), &op);
    let ts = dd.tip().header.timestamp_ms + 60_000;
    let p = dd.produce(producer, vec![tx], ts, Vec::new())?;
    if p.applied.block.txs.len() != 1 {
        bail!("directory change left out: {:?}", p.rejected);
    }
    Ok(())
}

/// The genesis: `senders` split the supply; the creator gets a share too.
fn genesis_with(senders: &[Keypair], creator: &Keypair) -> Genesis {
    let mut all = senders.to_vec();
    all.push(creator.clone());
    bench_genesis(&all)
}

/// Root throughput with each count of idle repositories hosted: `rounds` rounds, each
/// running every count once (a fresh chain each time) in an order rotated by one per round;
/// each count's figure is its median over the rounds, against the first count's median.
pub fn idle(txs: usize, accounts: usize, counts: &[usize], rounds: usize) -> Result<()> {
    let senders = keys(accounts);
    let creator = Keypair::from_seed(&[7; 32]);
    let producer = Keypair::from_seed(&[42; 32]);
    let genesis = genesis_with(&senders, &creator);
    let encoded = transfers(&senders, txs, genesis.chain_id());
    let rounds = rounds.max(1);
    println!(
        "aergo-node bench --idle-repos: {txs} root transfers from {accounts} accounts, {} cores, {rounds} round(s)",
        rayon::current_num_threads()
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    for round in 0..rounds {
        for k in 0..counts.len() {
            let i = (k + round) % counts.len();
            let n = counts[i];
            let dir = tempfile::tempdir()?;
            let names: Vec<String> = (0..n).map(|i| format!("idle-{i:04}")).collect();
            let node = root_with_repos(dir.path(), &genesis, &creator, &producer, &names, &[])?;
            let run: Run = pipeline(&node.chain, &encoded, genesis.chain_id(), &genesis.gas)?;
            node.repos.shutdown();
            println!(
                "  round {}: {:.0} transfers/s with {n} idle repositories ({} blocks)",
                round + 1,
                run.tps(),
                run.blocks
            );
            rates[i].push(run.tps());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let meds: Vec<f64> = rates.iter_mut().map(median).collect();
    let base = meds.first().copied().unwrap_or(0.0);
    for (n, tps) in counts.iter().zip(&meds) {
        println!(
            "root: {tps:.0} transfers/s (median of {rounds}) with {n} idle repositories hosted; baseline {base:.0} transfers/s with {}; ratio {:.3}",
            counts.first().copied().unwrap_or(0),
            tps / base
        );
    }
    Ok(())
}

/// One repository alone, then two at once; then creation → first block.
pub fn parallel(txs: usize, accounts: usize) -> Result<()> {
    // A repository's allocation holds at most 64 accounts.
    let accounts = accounts.min(aergo_types::repo::MAX_REPO_ALLOC);
    let senders = keys(accounts);
    let creator = Keypair::from_seed(&[7; 32]);
    let producer = Keypair::from_seed(&[42; 32]);
    let genesis = genesis_with(&senders, &creator);
    let dir = tempfile::tempdir()?;
    let names: Vec<String> = ["solo-a", "pair-b", "pair-c"].map(String::from).to_vec();
    let node = root_with_repos(dir.path(), &genesis, &creator, &producer, &names, &senders)?;
    let repo = |n: &str| -> Result<Arc<Chain>> {
        Ok(node.repos.get(n).context("hosted")?.node.chain.clone())
    };
    for n in &names {
        open_writes(&node, n, &creator, &producer)?;
    }
    let (a, b, c) = (repo("solo-a")?, repo("pair-b")?, repo("pair-c")?);
    println!(
        "aergo-node bench --repos: {txs} transfers per repository from {accounts} accounts, {} cores",
        rayon::current_num_threads()
    );
    let enc_a = transfers(&senders, txs, a.chain_id());
    let enc_b = transfers(&senders, txs, b.chain_id());
    let enc_c = transfers(&senders, txs, c.chain_id());
    let gas = a.genesis().gas.clone();
    let one = pipeline(&a, &enc_a, a.chain_id(), &gas)?;
    let t = Instant::now();
    let (rb, rc) = rayon::join(
        || pipeline(&b, &enc_b, b.chain_id(), &gas),
        || pipeline(&c, &enc_c, c.chain_id(), &gas),
    );
    let (rb, rc) = (rb?, rc?);
    let both = (rb.included + rc.included) as f64 / t.elapsed().as_secs_f64();
    println!(
        "two repositories at once: {both:.0} transfers/s in all ({:.0} + {:.0}); baseline one repository alone {:.0} transfers/s; ratio {:.3}",
        rb.tps(),
        rc.tps(),
        one.tps(),
        both / one.tps()
    );

    // Creation → first block, against a root block of one transfer.
    let root = &node.chain;
    let id = root.chain_id();
    let ts = root.tip().header.timestamp_ms + 1000;
    let t = Instant::now();
    let first_root = transfers(&[creator.clone(), senders[0].clone()], 1, id);
    let tx = SignedTx::decode(first_root.first().context("tx")?)?;
    // The creator already made 3 creates: nonce 3.
    let tx = Tx { nonce: 3, ..tx.tx }.sign(&creator);
    root.produce(&producer, vec![tx], ts, Vec::new())?;
    let root_block = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let c4 = create(&creator, 4, "fresh", &producer, &senders[..1], id);
    let p = root.produce(&producer, vec![c4], ts + 1000, Vec::new())?;
    node.repos
        .on_root_committed(&node, std::iter::once(&p.applied.block));
    let fresh = node.repos.get("fresh").context("fresh not hosted")?;
    let hosted = t.elapsed().as_secs_f64();
    open_writes(&node, "fresh", &creator, &producer)?;
    let first = transfers(&senders[..1], 1, fresh.node.chain.chain_id());
    let tx = SignedTx::decode(first.first().context("tx")?)?;
    let repo_ts = fresh.node.chain.tip().header.timestamp_ms + 1000;
    fresh
        .node
        .chain
        .produce(&producer, vec![tx], repo_ts, Vec::new())?;
    let created = t.elapsed().as_secs_f64();

    // The directory's size on disk per 1,000 namespace entries: 1,000 identifiers (10 blocks
    // of 100 changes), the database and the directory's block log measured before and after.
    let dd = node
        .repos
        .get("solo-a")
        .context("hosted")?
        .directory
        .chain
        .clone();
    root.flush()?;
    let db_dir = dir.path().join("db");
    let log_dir = dir.path().join("repos/solo-a/directory/blocks");
    let before = (walk(&db_dir), walk(&log_dir));
    let target = Address::from_public_key(&senders[0].public()).encode();
    for b in 0..10u64 {
        let txs: Vec<SignedTx> = (0..100u64)
            .map(|i| {
                let op = aergo_types::repo::DdOp::NameSet {
                    name: format!("contract-{:04}", b * 100 + i),
                    kind: "contract".into(),
                    target: target.clone(),
                    valid_from: 1_000,
                };
                dd_change(&creator, 1 + b * 100 + i, dd.chain_id(), &op)
            })
            .collect();
        let ts = dd.tip().header.timestamp_ms + 60_000;
        let p = dd.produce(&producer, txs, ts, Vec::new())?;
        if p.applied.block.txs.len() != 100 {
            bail!(
                "directory block took {} of 100 changes",
                p.applied.block.txs.len()
            );
        }
    }
    root.flush()?;
    let after = (walk(&db_dir), walk(&log_dir));
    let (db_grew, log_grew) = (
        after.0.saturating_sub(before.0),
        after.1.saturating_sub(before.1),
    );
    node.repos.shutdown();
    println!(
        "directory size: {} bytes per 1,000 identifiers ({} in the database, {} of directory blocks); baseline the entries' own bytes (name, kind, target, heights) {} bytes; ratio {:.1}",
        db_grew + log_grew,
        db_grew,
        log_grew,
        1000 * (13 + 8 + target.len() + 9),
        (db_grew + log_grew) as f64 / (1000 * (13 + 8 + target.len() + 9)) as f64
    );
    println!(
        "repository creation to its first block: {:.1} ms (root block with the create and hosting — ledger and directory opened — {:.1} ms; then a directory block opening writes and the first block); baseline a root block of one transfer {:.1} ms; ratio {:.1}",
        created * 1e3,
        hosted * 1e3,
        root_block * 1e3,
        created / root_block
    );
    Ok(())
}

/// Bytes of the files under `p` (0 when absent).
fn walk(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    };
    rd.flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
