//! `aergo-node bench --branches`: what branches cost, each figure with a baseline measured in
//! the same run and the ratio.
//!
//! - **Creation at N accounts** (default 10k, 100k, 1M): the block that records a branch
//!   plus opening the branch chain and its first block, against a block with one transfer on
//!   the same chain. Creation copies no state, so the ratio stays flat as N grows
//!   (`AERGO_BENCH_DETAIL=1` prints each creation split into the recording block with the
//!   branch chain's opening, and the branch's first block).
//! - **Reads at ancestry depth 1, 4 and 16**: an account written only at genesis, read at the
//!   tip of a branch whose read falls through d levels, against the same read on `main`.
//! - **Auto merge of M transfers** (default 4,000, what one 1 MiB merge block carries): the
//!   merge block (signature checks of the embedded candidates included), against producing
//!   the same transfers directly on `main` in one block (signatures already checked at
//!   admission there).
//! - **Consistent merge of R conflicting rows** (default 10,000): one call on the branch adds
//!   1 to every row of a table, one on `main` adds 2; the merge replays the branch's call on
//!   the merge base and merges every row three ways, each row's changed cell decided by the
//!   resolver contract (both changes add up). Against the same call executed directly on
//!   `main` in one block, producer and validator side.
//! - **`diff` of two refs 10,000 changes apart**: a branch whose blocks pay 10,000 new
//!   accounts, diffed against `main` page by page, against reading those accounts one by one.

use aergo_chain::{branches, Chain, ChainOptions};
use aergo_os::io::{IoConfig, IoService};
use aergo_types::block_ext::{MergeRef, MergeStrategy};
use aergo_types::branch::{BranchOp, MergeOp};
use aergo_types::genesis::GenesisAccount;
use aergo_types::{Address, Aer, Hash, Keypair, PublicKey, SignedTx, Tx, TxKind};
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

struct Fixture {
    main: Arc<Chain>,
    dir: tempfile::TempDir,
    clock: u64,
    bp: Keypair,
}

impl Fixture {
    fn new(keys: &[Keypair], extra_accounts: usize) -> Result<Self> {
        let mut g = crate::bench::bench_genesis(keys);
        let filler: Vec<GenesisAccount> = (0..extra_accounts)
            .into_par_iter()
            .map(|i| GenesisAccount {
                address: Address::from_public_key(&PublicKey(
                    Hash::of(format!("filler {i}").as_bytes()).0,
                )),
                balance: Aer(0),
            })
            .collect();
        g.balances.extend(filler);
        let dir = tempfile::tempdir()?;
        let main = Arc::new(Chain::open(ChainOptions {
            data_dir: dir.path().join("main"),
            genesis: g,
            io: IoService::start(IoConfig::default()),
        })?);
        Ok(Self {
            main,
            dir,
            clock: 1000,
            bp: Keypair::from_seed(&[6; 32]),
        })
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1000;
        self.clock
    }

    fn produce(&mut self, c: &Chain, txs: Vec<SignedTx>) -> Result<()> {
        let ts = self.tick();
        let p = c.produce(&self.bp, txs, ts, vec![])?;
        anyhow::ensure!(p.rejected.is_empty(), "rejected: {:?}", p.rejected.first());
        Ok(())
    }

    /// Merges branch `name` (chain `src`) into `parent` with `strategy`, signed by `k`: the
    /// merge block and the time it took (ms). `part`: one merge block of a merge that spans
    /// several, `src`'s blocks above the first height up to the second (the first is the
    /// merge base: the fork point, or the previous part's end); `None`: from the fork point
    /// up to `src`'s tip.
    fn merge(
        &mut self,
        parent: &Chain,
        src: &Chain,
        name: &str,
        k: &Keypair,
        strategy: MergeStrategy,
        part: Option<(u64, u64)>,
    ) -> Result<(aergo_chain::chain::Produced, f64)> {
        let view = parent.view_at(parent.tip().header.height)?;
        let rec = branches::record(&view, name)?.context("record")?;
        let (from, sh) = part.unwrap_or((rec.fork_height, src.tip().header.height));
        let mut candidates = Vec::new();
        for h in from + 1..=sh {
            candidates.extend(src.block_by_height(h)?.context("block")?.txs);
        }
        let op = MergeOp {
            source: name.into(),
            source_height: sh,
        };
        let mtx = signed(parent, k, TxKind::Merge, None, 0, op.encode())?;
        let mref = MergeRef {
            source: rec.id,
            source_tip: src.hash_at(sh)?.context("source block")?,
            source_height: sh,
            strategy,
            last: true,
            lists_root: Hash::ZERO,
        };
        let t = Instant::now();
        let ts = self.tick();
        let m = parent.produce_merge(&self.bp, mtx, mref, candidates, ts, vec![])?;
        Ok((m, ms(t)))
    }

    /// Imports `last` on a node that never hosted a branch, after `main`'s blocks below it
    /// (signature checks included): the import's time (ms).
    fn import(&self, main: &Chain, last: aergo_types::Block, name: &str) -> Result<f64> {
        self.import_all(main, vec![last], name)
    }

    /// [`Fixture::import`] of consecutive blocks, the first's parent on `main`: the time of
    /// importing them all (ms).
    fn import_all(&self, main: &Chain, blocks: Vec<aergo_types::Block>, name: &str) -> Result<f64> {
        let first = blocks.first().context("no block to import")?.header.height;
        let c = Chain::open(ChainOptions {
            data_dir: self.dir.path().join(name),
            genesis: main.genesis().clone(),
            io: IoService::start(IoConfig::default()),
        })?;
        for h in 1..first {
            replica_apply(&c, main.block_by_height(h)?.context("block")?)?;
        }
        // A validator that never saw these transactions: it verifies every signature.
        aergo_chain::sigcache::clear();
        let t = Instant::now();
        for b in blocks {
            replica_apply(&c, b)?;
        }
        Ok(ms(t))
    }

    /// Creates branch `name` of `parent` at its tip (signed by `k`) and opens it.
    fn branch(&mut self, parent: &Arc<Chain>, k: &Keypair, name: &str) -> Result<Arc<Chain>> {
        self.branch_with(parent, k, name, MergeStrategy::Auto, None)
    }

    /// [`Fixture::branch`] with a merge strategy and resolver.
    fn branch_with(
        &mut self,
        parent: &Arc<Chain>,
        k: &Keypair,
        name: &str,
        strategy: MergeStrategy,
        resolver: Option<Address>,
    ) -> Result<Arc<Chain>> {
        let fork = parent.tip().header.height;
        let op = BranchOp::Create {
            name: name.into(),
            fork_height: fork,
            producer: self.bp.public(),
            strategy,
            resolver,
            private: false,
        };
        let t = signed(parent, k, TxKind::Branch, None, 0, op.encode())?;
        self.produce(parent, vec![t])?;
        let view = parent.view_at(parent.tip().header.height)?;
        let rec = branches::record(&view, name)?.context("no record")?;
        let fork_hash = parent.hash_at(fork)?.context("no fork block")?;
        let g =
            branches::branch_genesis(parent.genesis(), parent.chain_id(), name, &rec, fork_hash);
        Ok(Arc::new(Chain::open_branch(
            parent.clone(),
            g,
            &self.dir.path().join(name),
        )?))
    }
}

fn signed(
    c: &Chain,
    k: &Keypair,
    kind: TxKind,
    to: Option<Address>,
    amount: u128,
    payload: Vec<u8>,
) -> Result<SignedTx> {
    let nonce = c
        .account_latest(&Address::from_public_key(&k.public()))?
        .nonce;
    Ok(Tx {
        kind,
        nonce,
        from: k.public(),
        to,
        amount,
        payload,
        gas_limit: 10_000,
        gas_price: 1_000_000_000,
        chain_id: c.chain_id(),
    }
    .sign(k))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Runs the four measurements.
pub fn run(account_counts: &[usize], merge_txs: usize, merge_rows: usize) -> Result<()> {
    println!(
        "aergo-node bench --branches: {} cores",
        rayon::current_num_threads()
    );
    let keys: Vec<Keypair> = (0..2000)
        .into_par_iter()
        .map(|i| Keypair::from_seed(&Hash::of(format!("bench {i}").as_bytes()).0))
        .collect();
    let dev = &keys[0];
    let to = Address::from_public_key(&keys[1].public());

    println!("creation (a branch's block + opening its chain + its first block) vs a one-transfer block:");
    for &n in account_counts {
        let t = Instant::now();
        let mut f = Fixture::new(&keys, n)?;
        let genesis_s = t.elapsed().as_secs_f64();
        let main = f.main.clone();
        // The genesis's background compaction would land on the first timed steps (at 1M
        // accounts it moved the median between 3 and 9 ms): wait for it to end.
        let t = Instant::now();
        let settled = main.settle(t + std::time::Duration::from_secs(120))?;
        let settle_s = t.elapsed().as_secs_f64();
        // Medians of 5, alternating, after the genesis has settled.
        let (mut creates, mut bases) = (Vec::new(), Vec::new());
        for i in 0..5 {
            let t = Instant::now();
            let tx = signed(&main, dev, TxKind::Transfer, Some(to), 1, vec![])?;
            f.produce(&main, vec![tx])?;
            bases.push(ms(t));
            let t = Instant::now();
            let b = f.branch(&main, dev, &format!("feat{i}"))?;
            let opened = ms(t);
            let tx = signed(&b, dev, TxKind::Transfer, Some(to), 1, vec![])?;
            f.produce(&b, vec![tx])?;
            creates.push(ms(t));
            if std::env::var_os("AERGO_BENCH_DETAIL").is_some() {
                eprintln!(
                    "    create+open {opened:.2} ms, first block {:.2} ms",
                    ms(t) - opened
                );
            }
        }
        let (create, base) = (median(&mut creates), median(&mut bases));
        println!(
            "  {n:>9} accounts (genesis {genesis_s:.1} s, compaction {settle_s:.1} s{}): create {create:.2} ms, baseline {base:.2} ms, ratio {:.2} (medians of 5)",
            if settled { "" } else { ", still running" },
            create / base
        );
    }

    println!("reads of a genesis account at a branch's tip (100,000 reads, no cache) vs on main:");
    let mut f = Fixture::new(&keys, 10_000)?;
    let mut chain = f.main.clone();
    let mut levels = vec![(0usize, chain.clone())];
    for d in 1..=16 {
        chain = f.branch(&chain, dev, &format!("d{d}"))?;
        // One block on each level, writing something else.
        let tx = signed(&chain, dev, TxKind::Transfer, Some(to), 1, vec![])?;
        f.produce(&chain, vec![tx])?;
        levels.push((d, chain.clone()));
    }
    let probe: Vec<Address> = (0..1000)
        .map(|i| Address::from_public_key(&PublicKey(Hash::of(format!("filler {i}").as_bytes()).0)))
        .collect();
    let read = |c: &Chain| -> Result<f64> {
        let view = c.view_at(c.tip().header.height)?;
        let t = Instant::now();
        for _ in 0..100 {
            for a in &probe {
                aergo_chain::state::StateView::account(&view, a)?;
            }
        }
        Ok(t.elapsed().as_secs_f64() * 1e9 / 100_000.0)
    };
    let main_ns = read(&f.main)?;
    for (d, c) in &levels {
        if [1usize, 4, 16].contains(d) {
            let ns = read(c)?;
            println!(
                "  depth {d:>2}: {ns:.0} ns/read, baseline main {main_ns:.0} ns/read, ratio {:.2}",
                ns / main_ns
            );
        }
    }

    println!("auto merge of {merge_txs} transfers vs the same transfers produced on main (medians of {AUTO_ROUNDS} rounds, each on fresh chains):");
    let (mut merges, mut bases, mut merges_v, mut bases_v) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut shape = (0usize, 0usize, 0usize);
    for _ in 0..AUTO_ROUNDS {
        let r = auto_round(&keys, merge_txs)?;
        merges.push(r.merge);
        bases.push(r.base);
        merges_v.push(r.merge_v);
        bases_v.push(r.base_v);
        shape = (r.merged, r.blocks, r.bytes);
        if std::env::var_os("AERGO_BENCH_DETAIL").is_some() {
            eprintln!(
                "    round: producer {:.1} / {:.1} ms, validator {:.1} / {:.1} ms",
                r.merge, r.base, r.merge_v, r.base_v
            );
        }
    }
    let (merge, base) = (median(&mut merges), median(&mut bases));
    let (merge_v, base_v) = (median(&mut merges_v), median(&mut bases_v));
    println!(
        "  producer: {} merge blocks {merge:.1} ms ({} merged, largest block {} bytes), baseline {base:.1} ms (the same transfers in {} blocks on main), ratio {:.2} (goal <= 1.2)",
        shape.1,
        shape.0,
        shape.2,
        shape.1,
        merge / base
    );
    println!(
        "  validator: merge blocks {merge_v:.1} ms, baseline {base_v:.1} ms (importing the direct blocks), ratio {:.2} (goal <= 1.2)",
        merge_v / base_v
    );
    consistent(&keys, merge_rows)?;
    diff(&keys, 10_000)
}

/// Rounds of the auto-merge measurement (each builds its chains afresh).
const AUTO_ROUNDS: usize = 5;

/// One round of the auto-merge measurement: times in ms.
struct AutoRound {
    merge: f64,
    base: f64,
    merge_v: f64,
    base_v: f64,
    merged: usize,
    blocks: usize,
    bytes: usize,
}

/// A branch with `merge_txs` transfers merged into `main` (producer, then a validator
/// importing the merge blocks), against the same transfers in blocks on a replica of `main`
/// (producer) and those blocks imported (validator). The branch's blocks hold 2,000
/// transfers each; a merge block carries two of them (4,000 transfers of 1,000 gas: a third
/// would pass the 5M block gas limit), so a merge of 10,000 spans three consecutive merge
/// blocks, as `aergo merge` splits it, and the direct transfers fill blocks of the same sizes.
fn auto_round(keys: &[Keypair], merge_txs: usize) -> Result<AutoRound> {
    const SOURCE_BLOCK: usize = 2000;
    const PER_BLOCK: usize = 2 * SOURCE_BLOCK;
    let dev = &keys[0];
    let mut f = Fixture::new(keys, 0)?;
    let main = f.main.clone();
    let feat = f.branch(&main, dev, "feat")?;
    let fork = feat_fork(&main)?;
    let make = |c: &Chain| -> Vec<SignedTx> {
        (0..merge_txs)
            .into_par_iter()
            .map(|i| {
                let s = i % keys.len();
                let k = &keys[s];
                let base = c
                    .account_latest(&Address::from_public_key(&k.public()))
                    .map(|a| a.nonce)
                    .unwrap_or(0);
                Tx {
                    kind: TxKind::Transfer,
                    nonce: base + (i / keys.len()) as u64,
                    from: k.public(),
                    to: Some(Address::from_public_key(
                        &keys[(s + 1) % keys.len()].public(),
                    )),
                    amount: 1,
                    payload: Vec::new(),
                    gas_limit: 1000,
                    gas_price: 1_000_000_000,
                    chain_id: c.chain_id(),
                }
                .sign(k)
            })
            .collect()
    };
    // Sort by nonce then sender so each block takes a sender's transactions in order.
    let mut on_feat = make(&feat);
    on_feat.sort_by_key(|t| (t.tx.nonce, t.tx.from.0));
    for chunk in on_feat.chunks(SOURCE_BLOCK) {
        f.produce(&feat, chunk.to_vec())?;
    }
    let mut direct = make(&main);
    direct.sort_by_key(|t| (t.tx.nonce, t.tx.from.0));
    // Baseline first, on a replica of main at the same height.
    let replica_dir = f.dir.path().join("replica");
    let replica = Chain::open(ChainOptions {
        data_dir: replica_dir,
        genesis: main.genesis().clone(),
        io: IoService::start(IoConfig::default()),
    })?;
    for h in 1..=main.tip().header.height {
        replica_apply(&replica, main.block_by_height(h)?.context("block")?)?;
    }
    let (mut base, mut direct_blocks) = (0.0, Vec::new());
    for chunk in direct.chunks(PER_BLOCK) {
        let ts = f.tick();
        let t = Instant::now();
        let p = replica.produce(&f.bp, chunk.to_vec(), ts, vec![])?;
        base += ms(t);
        anyhow::ensure!(
            p.rejected.is_empty() && p.applied.block.txs.len() == chunk.len(),
            "baseline block took {} of {}",
            p.applied.block.txs.len(),
            chunk.len()
        );
        direct_blocks.push(p.applied.block);
    }
    // The merge, in parts of two source blocks.
    let (mut merge, mut merge_blocks, mut merged, mut bytes) = (0.0, Vec::new(), 0usize, 0usize);
    let tip = feat.tip().header.height;
    let mut from = fork;
    while from < tip {
        let to = (from + (PER_BLOCK / SOURCE_BLOCK) as u64).min(tip);
        let (m, t) = f.merge(
            &main,
            &feat,
            "feat",
            dev,
            MergeStrategy::Auto,
            Some((from, to)),
        )?;
        merge += t;
        let section = m
            .applied
            .block
            .body_ext
            .merge
            .clone()
            .context("merge section")?;
        anyhow::ensure!(
            section.excluded.is_empty(),
            "{:?}",
            section.excluded.first()
        );
        merged += section.candidates.len();
        bytes = bytes.max(m.applied.size);
        merge_blocks.push(m.applied.block);
        from = to;
    }
    anyhow::ensure!(
        merged == merge_txs,
        "the merge blocks carried {merged} of {merge_txs} transfers"
    );
    // Validators: import the blocks on a node that never hosted the branch (signature
    // checks of the blocks' transactions included on both sides).
    let base_v = f.import_all(&main, direct_blocks, "validator-direct")?;
    let merge_v = f.import_all(&main, merge_blocks.clone(), "validator-merge")?;
    Ok(AutoRound {
        merge,
        base,
        merge_v,
        base_v,
        merged,
        blocks: merge_blocks.len(),
        bytes,
    })
}

/// The fork height of branch `feat` of `main`.
fn feat_fork(main: &Chain) -> Result<u64> {
    let view = main.view_at(main.tip().header.height)?;
    Ok(branches::record(&view, "feat")?
        .context("no branch feat")?
        .fork_height)
}

/// `diff` of a branch's tip against `main`'s, `changes` accounts apart (transfers to that many
/// new accounts on the branch), paged 1,000 at a time, against reading the same accounts one
/// by one at the branch's tip.
fn diff(keys: &[Keypair], changes: usize) -> Result<()> {
    println!("diff of two refs {changes} new accounts apart vs reading those accounts:");
    let dev = &keys[0];
    let mut f = Fixture::new(keys, 0)?;
    let main = f.main.clone();
    let feat = f.branch(&main, dev, "wide")?;
    let to: Vec<Address> = (0..changes)
        .map(|i| Address::from_public_key(&PublicKey(Hash::of(format!("diff {i}").as_bytes()).0)))
        .collect();
    for chunk in to.chunks(2000) {
        let txs: Vec<SignedTx> = chunk
            .par_iter()
            .enumerate()
            .map(|(i, a)| {
                let k = &keys[i % keys.len()];
                let base = feat
                    .account_latest(&Address::from_public_key(&k.public()))
                    .map(|x| x.nonce)
                    .unwrap_or(0);
                Tx {
                    kind: TxKind::Transfer,
                    nonce: base + (i / keys.len()) as u64,
                    from: k.public(),
                    to: Some(*a),
                    amount: 1,
                    payload: Vec::new(),
                    gas_limit: 1000,
                    gas_price: 1_000_000_000,
                    chain_id: feat.chain_id(),
                }
                .sign(k)
            })
            .collect();
        f.produce(&feat, txs)?;
    }
    let (ft, mt) = (feat.tip().header.height, main.tip().header.height);
    let t = Instant::now();
    let (mut n, mut after) = (0usize, None::<Vec<u8>>);
    loop {
        let page = feat.diff(ft, &main, mt, after.as_deref(), 1000)?;
        n += page.changes.len();
        match page.next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    let d = ms(t);
    anyhow::ensure!(
        n >= changes,
        "the diff found {n} changes, fewer than {changes}"
    );
    let view = feat.view_at(ft)?;
    let t = Instant::now();
    for a in &to {
        aergo_chain::state::StateView::account(&view, a)?;
    }
    let base = ms(t);
    println!(
        "  diff {d:.1} ms ({n} changed keys, pages of 1,000), baseline {base:.1} ms (reading the {changes} accounts), ratio {:.2}",
        d / base
    );
    Ok(())
}

/// The table, its seeding and the call both sides make.
const ROWS_CONTRACT: &str = "
CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
CREATE OR REPLACE FUNCTION seed(n BIGINT) RETURNS BIGINT AS $$
BEGIN
  FOR i IN 1..n LOOP
    INSERT INTO t VALUES (i, 0);
  END LOOP;
  RETURN n;
END;
$$;
CREATE OR REPLACE FUNCTION bump(d BIGINT) RETURNS BIGINT AS $$
BEGIN
  UPDATE t SET v = v + d;
  RETURN d;
END;
$$";

/// The resolver: a cell changed on both sides gets both changes.
const ROWS_RESOLVER: &str = "
CREATE OR REPLACE FUNCTION resolve_t(col TEXT, base TEXT, ours TEXT, theirs TEXT)
RETURNS TEXT AS $$
BEGIN
  RETURN CAST(CAST(ours AS BIGINT) + CAST(theirs AS BIGINT) - CAST(base AS BIGINT) AS TEXT);
END;
$$";

/// A contract transaction with room for many rows' gas.
fn big(
    c: &Chain,
    k: &Keypair,
    kind: TxKind,
    to: Option<Address>,
    payload: Vec<u8>,
) -> Result<SignedTx> {
    let mut t = signed(c, k, kind, to, 0, payload)?.tx;
    t.gas_limit = 4_000_000;
    Ok(t.sign(k))
}

fn call(c: &Chain, k: &Keypair, to: Address, f: &str, arg: u64) -> Result<SignedTx> {
    let p = serde_json::json!({"function": f, "args": [arg.to_string()]}).to_string();
    big(c, k, TxKind::Call, Some(to), p.into_bytes())
}

/// The consistent merge of `rows` conflicting rows against the same call made on `main`.
fn consistent(keys: &[Keypair], rows: usize) -> Result<()> {
    println!("consistent merge of {rows} rows changed on both sides (each cell decided by the resolver contract) vs the branch's call made on main:");
    let dev = &keys[0];
    let mut f = Fixture::new(keys, 0)?;
    let main = f.main.clone();
    let deploy = |f: &mut Fixture, script: &str| -> Result<Address> {
        let t = big(&main, dev, TxKind::Deploy, None, script.as_bytes().to_vec())?;
        let ts = f.tick();
        let p = main.produce(&f.bp, vec![t], ts, vec![])?;
        let r = p.receipts.first().context("deploy receipt")?;
        anyhow::ensure!(
            r.status == aergo_types::ReceiptStatus::Ok,
            "deploy: {:?}",
            r.status
        );
        Ok(Address::decode(std::str::from_utf8(&r.result)?)?)
    };
    let table = deploy(&mut f, ROWS_CONTRACT)?;
    let resolver = deploy(&mut f, ROWS_RESOLVER)?;
    // One call seeds them all (its gas: about 50 per row, under the 4,000,000 cap).
    anyhow::ensure!((1..=20_000).contains(&rows), "--merge-rows is 1 to 20,000");
    f.produce(&main, vec![call(&main, dev, table, "seed", rows as u64)?])?;
    let cons = f.branch_with(
        &main,
        dev,
        "cons",
        MergeStrategy::Consistent,
        Some(resolver),
    )?;
    f.produce(&cons, vec![call(&cons, dev, table, "bump", 1)?])?;
    f.produce(&main, vec![call(&main, dev, table, "bump", 2)?])?;
    // Baseline: the branch's call made directly on a replica of main at the same height.
    let replica = Chain::open(ChainOptions {
        data_dir: f.dir.path().join("replica-rows"),
        genesis: main.genesis().clone(),
        io: IoService::start(IoConfig::default()),
    })?;
    for h in 1..=main.tip().header.height {
        replica_apply(&replica, main.block_by_height(h)?.context("block")?)?;
    }
    let direct = call(&replica, dev, table, "bump", 1)?;
    let t = Instant::now();
    let ts = f.tick();
    let p = replica.produce(&f.bp, vec![direct], ts, vec![])?;
    let base = ms(t);
    anyhow::ensure!(p.rejected.is_empty(), "{:?}", p.rejected.first());
    let (m, merge) = f.merge(&main, &cons, "cons", dev, MergeStrategy::Consistent, None)?;
    // Every row has both changes: 0 + 1 + 2.
    let q = main
        .contract_query(&table, "SELECT count(*) FROM t WHERE v = 3", None)?
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        q.rows.first().and_then(|r| r.first()).map(|v| v.to_text()) == Some(rows.to_string()),
        "merged rows: {:?}",
        q.rows
    );
    println!(
        "  producer: merge block {merge:.1} ms ({rows} rows resolved), baseline {base:.1} ms (the call on main), ratio {:.2}",
        merge / base
    );
    let base_v = f.import(&main, p.applied.block.clone(), "validator-rows-direct")?;
    let merge_v = f.import(&main, m.applied.block.clone(), "validator-rows-merge")?;
    println!(
        "  validator: merge block {merge_v:.1} ms, baseline {base_v:.1} ms (importing the direct block), ratio {:.2}",
        merge_v / base_v
    );
    Ok(())
}

/// Applies a block produced elsewhere (re-execution and commit, as an import does).
fn replica_apply(c: &Chain, b: aergo_types::Block) -> Result<()> {
    match c.receive(b, u64::MAX / 2)? {
        aergo_chain::chain::Received::Extended(_) => Ok(()),
        other => anyhow::bail!("replica did not extend: {other:?}"),
    }
}
