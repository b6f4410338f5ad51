//! Validation along a block's DTT on a pool of workers.
//!
//! Each transaction runs once all its DTT parents finished (a barrier: once everything
//! before it finished), on a view of the state before the block, plus the begin-block
//! writes, plus the versions the block's earlier transactions published (a read of key `k`
//! by transaction `j` sees the latest version written by a transaction `i < j`, never a later
//! one). Each execution records its access set; the caller recomputes the canonical DTT from
//! them and rejects the block unless it equals the block's ([`crate::dtt`]).
//!
//! Why this equals sequential execution whenever the block's DTT is canonical: by induction
//! over the block order, a transaction's reads up to its first differing one are those of
//! sequential execution, so that read's key is the one sequential execution reads; every
//! earlier writer of the key is an ancestor through the canonical DTT (writers of a key are
//! chained, and the last one is a parent), so all of them had published before the
//! transaction started, and the read returns the sequential value — no read differs. And
//! when the DTT is not canonical, no run can make it look canonical: a run whose access
//! sets give back exactly the block's DTT obeyed that DTT, which by the same argument makes
//! the run sequential, and so the DTT is the canonical one of sequential execution. The
//! verdict never depends on timing. Receipts, write sets (merged in block order) and fees
//! are therefore those of [`crate::exec::execute_block`], which also runs a DTT block when
//! there is one worker.
//!
//! A transaction that fails (an invalid transaction, a panic caught as
//! [`crate::exec::EXEC_PANICKED`]) stops the pool; the block is invalid and the error of the
//! lowest failed index is returned. The block gas limit is checked in block order once
//! every receipt is in.

use crate::access::{AccessSet, Recorder};
use crate::ctx::BlockCtx;
use crate::error::ChainError;
use crate::exec::{self, BlockRun, Executed};
use crate::state::{Overlay, Pairs, StateView, WriteSet};
use aergo_types::block::Receipt;
use aergo_types::block_ext::{Dtt, DttEntry};
use aergo_types::SignedTx;
use parking_lot::{Condvar, Mutex, RwLock};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Stack of a worker thread (as the JIT worker's): contract execution's depth is bounded
/// (`aergo_sql::gas::MAX_DEPTH`), and this leaves it more room than a default thread.
const WORKER_STACK: usize = 16 << 20;

/// Configured workers (0: one per core).
static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Sets the number of validation workers for this process (0: one per core; 1: the
/// sequential path).
pub fn set_workers(n: usize) {
    WORKERS.store(n, Ordering::Relaxed);
}

/// The number of validation workers: as configured, else the cores available.
pub fn workers() -> usize {
    match WORKERS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    }
}

/// The versions of keys the block's transactions wrote, each key's sorted by transaction.
type Versions = RwLock<BTreeMap<Vec<u8>, Vec<(u32, Option<Vec<u8>>)>>>;

/// The latest version below `index` in a key's sorted versions.
fn below(vs: &[(u32, Option<Vec<u8>>)], index: u32) -> Option<&Option<Vec<u8>>> {
    let n = vs.partition_point(|(i, _)| *i < index);
    n.checked_sub(1).and_then(|n| vs.get(n)).map(|(_, v)| v)
}

/// The state transaction `index` sees (see the module doc).
struct TxView<'a> {
    base: &'a (dyn StateView + Sync),
    pre: &'a WriteSet,
    versions: &'a Versions,
    index: u32,
}

impl TxView<'_> {
    /// The writes in `[start, end)` the transaction sees above the base: begin-block
    /// writes overridden by earlier transactions' versions.
    fn layer(&self, start: &[u8], end: &[u8]) -> WriteSet {
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        let mut w: WriteSet = self
            .pre
            .range::<[u8], _>(bounds)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, vs) in self.versions.read().range::<[u8], _>(bounds) {
            if let Some(v) = below(vs, self.index) {
                w.insert(k.clone(), v.clone());
            }
        }
        w
    }
}

impl StateView for TxView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        if let Some(v) = self
            .versions
            .read()
            .get(key)
            .and_then(|vs| below(vs, self.index))
        {
            return Ok(v.clone());
        }
        match self.pre.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Pairs, ChainError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Overlay {
            base: self.base,
            writes: self.layer(start, end),
        }
        .scan(start, end)
    }

    fn scan_limit(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, ChainError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Overlay {
            base: self.base,
            writes: self.layer(start, end),
        }
        .scan_limit(start, end, limit)
    }
}

/// Which transactions may run.
struct Sched {
    /// Runnable, lowest index first.
    ready: BinaryHeap<Reverse<u32>>,
    /// Parents not finished yet, per transaction.
    waiting: Vec<usize>,
    children: Vec<Vec<u32>>,
    /// Barriers not runnable yet, ascending.
    barriers: VecDeque<u32>,
    done: Vec<bool>,
    /// Every transaction below this one finished.
    prefix: usize,
    finished: usize,
    /// A transaction failed: stop.
    stop: bool,
}

impl Sched {
    // Indexes are below the block's transaction count (checked to fit u32 by the caller).
    #[allow(clippy::cast_possible_truncation)]
    fn new(dtt: &Dtt) -> Self {
        let n = dtt.entries.len();
        let mut s = Sched {
            ready: BinaryHeap::new(),
            waiting: vec![0; n],
            children: vec![Vec::new(); n],
            barriers: VecDeque::new(),
            done: vec![false; n],
            prefix: 0,
            finished: 0,
            stop: false,
        };
        for (j, e) in dtt.entries.iter().enumerate() {
            match e {
                DttEntry::Barrier if j == 0 => s.ready.push(Reverse(0)),
                DttEntry::Barrier => s.barriers.push_back(j as u32),
                DttEntry::Parents(ps) => {
                    if let Some(w) = s.waiting.get_mut(j) {
                        *w = ps.len();
                    }
                    for p in ps {
                        if let Some(c) = s.children.get_mut(*p as usize) {
                            c.push(j as u32);
                        }
                    }
                    if ps.is_empty() {
                        s.ready.push(Reverse(j as u32));
                    }
                }
            }
        }
        s
    }

    fn complete(&mut self, j: u32) {
        if let Some(d) = self.done.get_mut(j as usize) {
            *d = true;
        }
        self.finished += 1;
        let children = self
            .children
            .get_mut(j as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        for c in children {
            if let Some(w) = self.waiting.get_mut(c as usize) {
                *w = w.saturating_sub(1);
                if *w == 0 {
                    self.ready.push(Reverse(c));
                }
            }
        }
        while self.done.get(self.prefix).copied().unwrap_or(false) {
            self.prefix += 1;
        }
        while let Some(b) = self.barriers.front().copied() {
            if b as usize > self.prefix {
                break;
            }
            self.barriers.pop_front();
            self.ready.push(Reverse(b));
        }
    }
}

type Outcome = Result<(Receipt, WriteSet, AccessSet), ChainError>;

/// Executes `txs` along `dtt` with `workers` workers on `base` plus the begin-block writes
/// `pre`; every transaction's access set is recorded in [`Executed::access`]. `dtt` must be
/// well formed with one entry per transaction ([`crate::dtt::malformed`]); whether it is
/// the canonical one is the caller's check. With one worker (or one transaction) this is
/// [`exec::execute_block`].
pub fn execute(
    base: &(dyn StateView + Sync),
    pre: &WriteSet,
    txs: &[SignedTx],
    dtt: &Dtt,
    ctx: &BlockCtx,
    workers: usize,
) -> Result<Executed, ChainError> {
    if let Some(why) = crate::dtt::malformed(dtt, txs.len()) {
        return Err(ChainError::Consensus(why));
    }
    if workers <= 1 || txs.len() <= 1 || u32::try_from(txs.len()).is_err() {
        let base = Overlay {
            base,
            writes: pre.clone(),
        };
        return exec::execute_block(&base, txs, ctx);
    }
    let versions: Versions = RwLock::new(BTreeMap::new());
    let sched = Mutex::new(Sched::new(dtt));
    let wake = Condvar::new();
    let slots: Vec<Mutex<Option<Outcome>>> = txs.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let j = {
            let mut s = sched.lock();
            loop {
                if s.stop || s.finished == txs.len() {
                    return;
                }
                if let Some(Reverse(j)) = s.ready.pop() {
                    break j;
                }
                wake.wait(&mut s);
            }
        };
        let (Some(tx), Some(slot)) = (txs.get(j as usize), slots.get(j as usize)) else {
            return;
        };
        let view = TxView {
            base,
            pre,
            versions: &versions,
            index: j,
        };
        let rec = Recorder::new(&view);
        let outcome = exec::execute_tx_guarded(&rec, tx, ctx).map(|(r, w)| {
            let a = rec.finish(&w);
            (r, w, a)
        });
        let ok = outcome.is_ok();
        if let Ok((_, w, _)) = &outcome {
            let mut m = versions.write();
            for (k, v) in w {
                let vs = m.entry(k.clone()).or_default();
                let at = vs.partition_point(|(i, _)| *i < j);
                vs.insert(at, (j, v.clone()));
            }
        }
        *slot.lock() = Some(outcome);
        let mut s = sched.lock();
        if ok {
            s.complete(j);
        } else {
            s.stop = true;
        }
        drop(s);
        wake.notify_all();
    };
    std::thread::scope(|scope| {
        for _ in 1..workers.min(txs.len()) {
            // The caller's thread works too: a worker that cannot start only costs speed.
            if let Err(e) = std::thread::Builder::new()
                .name("aergo-exec".into())
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, work)
            {
                tracing::warn!("an execution worker did not start: {e}");
            }
        }
        work();
    });
    let mut run = BlockRun {
        overlay: Overlay {
            base,
            writes: pre.clone(),
        },
        out: Executed::default(),
    };
    let mut outcomes: Vec<Option<Outcome>> = slots.into_iter().map(Mutex::into_inner).collect();
    for j in 0..txs.len() {
        let Some(tx) = txs.get(j) else { break };
        if !run.fits(tx, ctx) {
            return Err(exec::gas_exceeded(tx, ctx, run.out.gas_used));
        }
        match outcomes.get_mut(j).and_then(Option::take) {
            Some(Ok((r, w, a))) => {
                run.out.fees += r.fee;
                run.out.gas_used = run.out.gas_used.saturating_add(r.gas_used);
                run.out.receipts.push(r);
                run.out.access.push(a);
                run.overlay.writes.extend(w);
            }
            Some(Err(e)) => return Err(e),
            // Not run: the pool stopped at a later transaction's failure.
            None => {
                return Err(outcomes
                    .into_iter()
                    .flatten()
                    .find_map(Result::err)
                    .unwrap_or_else(|| {
                        ChainError::Corrupt(format!(
                            "transaction {} did not run along the DTT",
                            tx.hash
                        ))
                    }))
            }
        }
    }
    run.finish(ctx)
}

#[cfg(test)]
mod tests {
    //! Differential tests: random blocks executed along their canonical DTT with 1, 2 and 8
    //! workers give byte-identical receipts, writes and access sets to sequential execution.

    use super::*;
    use crate::exec::{execute_block, ChainRole, GasLimits};
    use crate::state::{account_key, Account, MemState};
    use aergo_types::block::ReceiptStatus;
    use aergo_types::genesis::GasParams;
    use aergo_types::{Address, Aer, Hash, Keypair, Tx, TxKind};
    use proptest::prelude::*;

    const FIGURE6: &str = "CREATE IF NOT EXISTS accounts (
  owner VARCHAR NOT NULL PRIMARY KEY,
  balance NUMERIC (15, 2)
);
CREATE OR REPLACE FUNCTION
transfer (sender TEXT, to TEXT, amount NUMERIC)
RETURNS text
AS
$$
DECLARE
  sender_bal NUMERIC ;
BEGIN
  SELECT balance INTO sender_bal FROM accounts WHERE owner = sender ;
  IF NOT FOUND THEN
    RETURN 'Sender not found' ;
  END IF
  IF sender_bal < amount THEN
    RETURN 'Not enough balance' ;
  END IF
  UPDATE accounts SET balance = balance + amount WHERE owner = to ;
  IF NOT FOUND THEN
    RETURN 'Receiver not found' ;
  END IF;
  UPDATE accounts SET balance = balance - amount WHERE owner = sender ;
  RETURN 'OK' ;
END;
$$
";

    const SEED: &str =
        "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50), ('carol', 7.00);";

    /// A contract whose reads scan ranges.
    const SCANNER: &str = "CREATE TABLE items (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
CREATE FUNCTION put(i BIGINT, x BIGINT) RETURNS BIGINT AS $$
BEGIN
  INSERT INTO items VALUES (i, x);
  RETURN i;
END $$;
CREATE FUNCTION total(a BIGINT, b BIGINT) RETURNS BIGINT AS $$
DECLARE s BIGINT;
BEGIN
  SELECT count(*) INTO s FROM items WHERE id >= a AND id < b;
  RETURN s;
END $$;";

    fn ctx() -> BlockCtx {
        BlockCtx {
            height: 2,
            timestamp_ms: 0,
            producer: Address::from_public_key(&Keypair::from_seed(&[99; 32]).public()),
            chain_id: Hash::of(b"c"),
            gas: GasParams {
                base: 1000,
                per_byte: 10,
                min_price: Aer(1),
                tx_gas_cap: None,
                block_gas_limit: None,
            },
            dpos: None,
            limits: GasLimits::default(),
            role: ChainRole::Root { repo_create_fee: 0 },
            access: None,
            parent: Hash::ZERO,
            merge: None,
        }
    }

    fn key(i: u8) -> Keypair {
        Keypair::from_seed(&[i + 1; 32])
    }

    fn addr(i: u8) -> Address {
        Address::from_public_key(&key(i).public())
    }

    fn tx(
        i: u8,
        nonce: u64,
        kind: TxKind,
        to: Option<Address>,
        amount: u128,
        payload: &[u8],
    ) -> SignedTx {
        Tx {
            kind,
            nonce,
            from: key(i).public(),
            to,
            amount,
            payload: payload.to_vec(),
            gas_limit: if kind == TxKind::Transfer {
                1000
            } else {
                400_000
            },
            gas_price: 1,
            chain_id: Hash::of(b"c"),
        }
        .sign(&key(i))
    }

    fn call(i: u8, nonce: u64, to: Address, f: &str, args: &[&str]) -> SignedTx {
        let p = serde_json::json!({ "function": f, "args": args }).to_string();
        tx(i, nonce, TxKind::Call, Some(to), 0, p.as_bytes())
    }

    /// 32 funded accounts, Figure 6 (seeded) and the scanner contract, deployed by account 0.
    struct World {
        state: MemState,
        fig6: Address,
        scanner: Address,
    }

    fn world() -> &'static World {
        static W: std::sync::OnceLock<World> = std::sync::OnceLock::new();
        W.get_or_init(build_world)
    }

    fn build_world() -> World {
        let mut state = MemState::default();
        for i in 0..32 {
            state.0.insert(
                account_key(&addr(i)),
                Account {
                    balance: 1_000_000_000_000,
                    nonce: 0,
                }
                .encode(),
            );
        }
        let fig6 = Address::contract(&addr(0), 0);
        let scanner = Address::contract(&addr(0), 2);
        let setup = vec![
            tx(0, 0, TxKind::Deploy, None, 0, FIGURE6.as_bytes()),
            tx(0, 1, TxKind::Deploy, Some(fig6), 0, SEED.as_bytes()),
            tx(0, 2, TxKind::Deploy, None, 0, SCANNER.as_bytes()),
        ];
        let ex = execute_block(&state, &setup, &ctx()).unwrap();
        assert!(
            ex.receipts.iter().all(|r| r.status == ReceiptStatus::Ok),
            "{:?}",
            ex.receipts
        );
        for (k, v) in ex.writes {
            match v {
                Some(v) => state.0.insert(k, v),
                None => state.0.remove(&k),
            };
        }
        World {
            state,
            fig6,
            scanner,
        }
    }

    /// One random operation: (kind, sender, a, b).
    fn block(w: &World, ops: &[(u8, u8, u8, u8)], senders: u8) -> Vec<SignedTx> {
        let mut nonces = [0u64; 32];
        nonces[0] = 3;
        let names = ["alice", "bob", "carol", "dave"];
        ops.iter()
            .map(|&(kind, s, a, b)| {
                let s = 1 + s % senders.max(1);
                let n = nonces[s as usize];
                nonces[s as usize] += 1;
                match kind % 5 {
                    0 | 1 => tx(
                        s,
                        n,
                        TxKind::Transfer,
                        Some(addr(a % 32)),
                        u128::from(b),
                        b"",
                    ),
                    2 => call(
                        s,
                        n,
                        w.fig6,
                        "transfer",
                        &[names[(a % 4) as usize], names[(b % 4) as usize], "1.25"],
                    ),
                    3 => call(
                        s,
                        n,
                        w.scanner,
                        "put",
                        &[&(a % 16).to_string(), &b.to_string()],
                    ),
                    _ => call(
                        s,
                        n,
                        w.scanner,
                        "total",
                        &[&(a % 16).to_string(), &(a % 16 + b % 8).to_string()],
                    ),
                }
            })
            .collect()
    }

    fn differential(w: &World, txs: &[SignedTx]) {
        let c = ctx();
        let pre = WriteSet::new();
        let seq = execute_block(&w.state, txs, &c).unwrap();
        assert_eq!(seq.access.len(), txs.len());
        let dtt = crate::dtt::canonical(&seq.access);
        for workers in [1, 2, 8] {
            let par = execute(&w.state, &pre, txs, &dtt, &c, workers).unwrap();
            assert_eq!(par.receipts, seq.receipts, "{workers} workers");
            assert_eq!(par.writes, seq.writes, "{workers} workers");
            assert_eq!(par.access, seq.access, "{workers} workers");
            assert_eq!((par.fees, par.gas_used), (seq.fees, seq.gas_used));
            assert_eq!(crate::dtt::canonical(&par.access), dtt);
        }
    }

    #[test]
    fn fixed_blocks_match_sequential_execution() {
        let w = world();
        // Transfers among disjoint accounts, all to one account, and every kind mixed.
        let disjoint: Vec<_> = (0..30u8).map(|i| (0, i, i + 1, 5)).collect();
        let one: Vec<_> = (0..30u8).map(|i| (1, i, 31, 5)).collect();
        let mixed: Vec<_> = (0..40u8).map(|i| (i, i % 7, i % 5, i % 3)).collect();
        for ops in [&disjoint, &one, &mixed] {
            let txs = block(w, ops, 30);
            differential(w, &txs);
        }
        // The mixed block really runs the contracts: some calls succeed, the scans count.
        let txs = block(w, &mixed, 30);
        let seq = execute_block(&w.state, &txs, &ctx()).unwrap();
        let ok_calls = txs
            .iter()
            .zip(&seq.receipts)
            .filter(|(t, r)| t.tx.kind == TxKind::Call && r.status == ReceiptStatus::Ok)
            .count();
        assert!(ok_calls >= 10, "{:?}", seq.receipts);
        assert!(seq.access.iter().any(|a| !a.ranges.is_empty()));
    }

    #[test]
    fn a_dtt_missing_a_dependency_is_caught_by_the_canonical_check() {
        let w = world();
        // All to one account: a chain of dependencies.
        let txs = block(w, &(0..12u8).map(|i| (1, i, 31, 5)).collect::<Vec<_>>(), 12);
        let seq = execute_block(&w.state, &txs, &ctx()).unwrap();
        let canonical = crate::dtt::canonical(&seq.access);
        let mut forged = canonical.clone();
        forged.entries = forged
            .entries
            .iter()
            .map(|_| DttEntry::Parents(Vec::new()))
            .collect();
        for workers in [1, 2, 8] {
            // Whatever the run observed, it never gives back the forged DTT.
            let run = execute(&w.state, &WriteSet::new(), &txs, &forged, &ctx(), workers);
            if let Ok(ex) = run {
                assert!(
                    crate::dtt::mismatch(&forged, &crate::dtt::canonical(&ex.access), txs.len())
                        .is_some(),
                    "{workers} workers accepted a DTT without dependencies"
                );
            }
        }
        let forward = Dtt {
            entries: vec![DttEntry::Parents(vec![1]); txs.len()],
        };
        assert!(matches!(
            execute(&w.state, &WriteSet::new(), &txs, &forward, &ctx(), 2),
            Err(ChainError::Consensus(m)) if m.contains("not an earlier")
        ));
    }

    #[test]
    fn an_invalid_transaction_fails_the_block_as_sequentially() {
        let w = world();
        let mut txs = block(
            w,
            &(0..10u8).map(|i| (0, i, i + 1, 5)).collect::<Vec<_>>(),
            10,
        );
        // A wrong nonce in the middle.
        txs[5] = tx(6, 7, TxKind::Transfer, Some(addr(0)), 1, b"");
        let seq_err = execute_block(&w.state, &txs, &ctx())
            .unwrap_err()
            .to_string();
        let dtt = Dtt {
            entries: vec![DttEntry::Parents(Vec::new()); txs.len()],
        };
        for workers in [2, 8] {
            let e = execute(&w.state, &WriteSet::new(), &txs, &dtt, &ctx(), workers)
                .unwrap_err()
                .to_string();
            assert_eq!(e, seq_err);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn random_blocks_match_sequential_execution(
            ops in prop::collection::vec((0u8..5, 0u8..32, 0u8..32, 0u8..32), 1..48),
            senders in prop::sample::select(vec![2u8, 8, 30]),
        ) {
            let w = world();
            let txs = block(w, &ops, senders);
            differential(w, &txs);
        }
    }
}
