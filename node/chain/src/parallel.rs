//! Validation along a block's DTT on a pool of workers.
//!
//! Workers claim transactions in block order (one atomic counter; `CHUNK` at a time when
//! the DTT is wide) and each waits only for its claimed transaction's DTT parents (a
//! barrier: for everything before it), spinning briefly and then yielding; the lowest
//! unfinished claimed transaction always has its parents finished (a worker runs its
//! claim in order), so the pool always progresses. Transaction `j` runs on the state
//! before the block, plus the begin-block writes, plus its parents' write sets (nearest
//! first: for each key the highest-index parent that wrote it wins; a barrier sees every
//! earlier transaction's). Nothing is shared but finished write sets (read by children
//! only) and the in-order check, so a transaction with no parents reads the base directly.
//! Each execution records its access set (a native transfer's is derived from the
//! transaction and its status, `exec::TransferKeys`, and kept as keys, never encoded),
//! and the canonical DTT recomputed from them must equal the block's ([`crate::dtt`];
//! [`validate`]). A DTT narrower than 1.5 transactions
//! per level (nearly one chain) runs in a two-stage pipeline instead: the caller's thread
//! executes in block order and a second thread computes and compares the canonical DTT as
//! the access sets come (workers would only hand each other the next transaction).
//!
//! Memory crosses threads only where it must, and is freed by the thread that allocated
//! it or after the other threads ended: with glibc's allocator, freeing a block another
//! running thread allocated takes that thread's arena lock, and the pool ran at a third of
//! sequential speed when the check freed each access set it consumed. So the check borrows
//! the sets (and the keys in them) until the block is done, and each worker gathers and
//! sorts the write sets of the transactions it ran once every transaction ran.
//!
//! Why this equals sequential execution whenever the block's DTT is the canonical one of
//! the run's access sets: by induction over the block order, take the first read of `j`
//! whose result differs from sequential execution. The reads before it are equal, so its
//! key (or range) is the one sequential execution reads, and it is in `j`'s recorded set.
//! For a point read of `k`, the canonical DTT makes the last earlier writer of `k` a
//! parent, and no parent is later than it among `k`'s writers, so the view returns its
//! value — the sequential one (no earlier writer: the base, also sequential). For a range
//! read, the recorded range (up to the last pair returned when the limit was reached)
//! makes the last writer of every key written inside it a parent, so every key of the
//! range that decides the result has its sequential value, and the result is the
//! sequential one. So no read differs, the run is sequential execution, and the DTT is the
//! canonical one of sequential execution. Conversely, with that DTT the same induction
//! holds. The verdict (DTT equal to the canonical one of the recorded sets, or not) is
//! therefore the same on every node whatever the timing, and an accepted block's receipts,
//! write sets (merged in block order) and fees are those of [`crate::exec::execute_block`],
//! which also runs a DTT block when there is one worker.
//!
//! A transaction that fails (an invalid transaction, a panic caught as
//! [`crate::exec::EXEC_PANICKED`]) stops the pool; the block is invalid and the error of the
//! lowest failed index is returned. The block gas limit is checked in block order once
//! every receipt is in.

use crate::access::{AccessBatch, AccessSet};
use crate::ctx::BlockCtx;
use crate::error::ChainError;
use crate::exec::{self, BlockRun, Executed};
use crate::state::{Overlay, Pairs, StateView, WriteSet};
use aergo_types::block::{Receipt, ReceiptStatus};
use aergo_types::block_ext::{Dtt, DttEntry};
use aergo_types::SignedTx;
use parking_lot::Mutex;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Stack of a worker thread (as the JIT worker's): contract execution's depth is bounded
/// (`aergo_sql::gas::MAX_DEPTH`), and this leaves it more room than a default thread.
const WORKER_STACK: usize = 16 << 20;

/// Below this DTT width (transactions per level of the longest chain) the block runs
/// sequentially: a chain of dependencies leaves the workers nothing to share.
const MIN_WIDTH: f64 = 1.5;

/// Transactions a worker claims at a time when the DTT is at least [`WIDE`] wide: claiming
/// one at a time, the two workers took alternate transactions and wrote adjacent result slots
/// (the same cache lines) for every one.
const CHUNK: usize = 8;

/// The DTT width from which workers claim [`CHUNK`] transactions at a time (below it, a
/// worker holding several consecutive transactions could hold up the chain through them).
const WIDE: f64 = 64.0;

/// A worker tries to retire (check) the finished transactions after every this many of its
/// own. Trying after each one, a worker that found the lock free kept retiring right behind
/// the other's execution, one transaction at a time, each a cache miss on lines the other
/// core had just written; some runs spent a third of the pool on that (the low-contention
/// block at 0.8x instead of 1.2-1.4x). What is left is retired after the run.
const RETIRE_EVERY: usize = 16;

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

/// Runs `helper` on `helpers` threads of its own while the caller runs `main`, and returns
/// `main`'s result once every helper returned; `None` (nothing ran) when no thread could
/// start. A helper that panics (a bug) is caught and logged; each caller checks that its
/// work was done.
///
/// Threads start per call (~30 µs each). Pools kept between blocks measured no faster here:
/// rayon's was slower (its idle threads cost the caller's thread even between blocks), and
/// threads parked on a channel gave the same figures (docs/BENCHMARKS.md).
fn with_helpers<R>(
    helpers: usize,
    helper: &(dyn Fn() + Sync),
    main: impl FnOnce() -> R,
) -> Option<R> {
    std::thread::scope(|scope| {
        let mut started = 0;
        for _ in 0..helpers {
            match std::thread::Builder::new()
                .name("aergo-exec".into())
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, || {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(helper)).is_err() {
                        tracing::error!("an execution worker panicked (a bug)");
                    }
                }) {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!("an execution worker did not start: {e}"),
            }
        }
        (started > 0 || helpers == 0).then(main)
    })
}

/// Where transaction `index` finds the block's earlier writes: its DTT parents' write
/// sets (nearest first), or for a barrier every earlier transaction's.
enum Sources<'a> {
    Parents(&'a [u32]),
    All,
}

/// Each transaction's write set once it finished (`None` before, and again once taken for
/// the block's merge, when no transaction can read it any more).
type Writes = [Mutex<Option<WriteSet>>];

/// The state transaction `index` sees (see the module doc).
struct TxView<'a> {
    base: &'a (dyn StateView + Sync),
    pre: &'a WriteSet,
    writes: &'a Writes,
    sources: Sources<'a>,
    index: usize,
}

impl TxView<'_> {
    /// The write sets this transaction reads through, latest first (no allocation: a read
    /// of a transaction without parents must cost what a sequential read costs).
    fn layers(&self) -> impl DoubleEndedIterator<Item = &Mutex<Option<WriteSet>>> + '_ {
        let (parents, all): (&[u32], usize) = match self.sources {
            Sources::Parents(ps) => (ps, 0),
            Sources::All => (&[], self.index),
        };
        let parents = parents.iter().filter_map(|p| self.writes.get(*p as usize));
        let all = self.writes.iter().take(all).rev();
        parents.chain(all)
    }

    /// The writes in `[start, end)` the transaction sees above the base: begin-block
    /// writes overridden by its sources' (the latest source of each key wins).
    fn layer(&self, start: &[u8], end: &[u8]) -> WriteSet {
        let bounds = (Bound::Included(start), Bound::Excluded(end));
        let mut w: WriteSet = self
            .pre
            .range::<[u8], _>(bounds)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Oldest first, so a later source's value replaces an earlier one's.
        for layer in self.layers().rev() {
            if let Some(layer) = layer.lock().as_ref() {
                for (k, v) in layer.range::<[u8], _>(bounds) {
                    w.insert(k.clone(), v.clone());
                }
            }
        }
        w
    }
}

impl StateView for TxView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        for layer in self.layers() {
            if let Some(v) = layer.lock().as_ref().and_then(|w| w.get(key)) {
                return Ok(v.clone());
            }
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

/// A finished transaction's access set, as the pool keeps it until the check ends.
enum Held {
    /// Recorded.
    Set(AccessSet),
    /// A native transfer's keys, inline (no allocation per transfer).
    Transfer(exec::TransferKeys),
}

type Outcome = Result<(Receipt, Held), ChainError>;

/// Each transaction's signature verdict: `true` for a signature this process verified
/// before ([`crate::sigcache`]: at admission, or in another block), the others checked in
/// batches on `workers` threads and remembered when they verify.
pub fn verify_signatures(txs: &[SignedTx], workers: usize) -> Vec<bool> {
    let entries: Vec<crate::sigcache::Entry> = txs.iter().map(crate::sigcache::entry).collect();
    let known = crate::sigcache::seen_entries(&entries);
    let (todo, todo_entries): (Vec<&SignedTx>, Vec<crate::sigcache::Entry>) = txs
        .iter()
        .zip(&entries)
        .zip(&known)
        .filter(|(_, k)| !**k)
        .map(|((t, e), _)| (t, *e))
        .unzip();
    let checked = verify_uncached(&todo, workers);
    crate::sigcache::remember_entries(
        todo_entries
            .into_iter()
            .zip(&checked)
            .filter(|(_, ok)| **ok)
            .map(|(e, _)| e),
    );
    let mut checked = checked.into_iter();
    known
        .into_iter()
        .map(|k| k || checked.next().unwrap_or(false))
        .collect()
}

/// Each signature's verdict, checked in batches on `workers` threads (one contiguous chunk
/// each; `aergo_types::crypto::verify_batch` per chunk, which gives every signature the same
/// verdict as checking it alone, so the chunking never shows). No cache (benchmarks measure
/// this).
pub fn verify_uncached(txs: &[&SignedTx], workers: usize) -> Vec<bool> {
    let sigs: Vec<(aergo_types::PublicKey, &[u8], aergo_types::Signature)> = txs
        .iter()
        .map(|t| (t.tx.from, &t.hash.0[..], t.signature))
        .collect();
    // Below this many signatures per worker a thread costs more than it saves.
    const MIN_CHUNK: usize = 64;
    let chunk = sigs.len().div_ceil(workers.max(1)).max(MIN_CHUNK);
    if chunk >= sigs.len() {
        return aergo_types::crypto::verify_batch(&sigs);
    }
    let parts: Vec<_> = sigs.chunks(chunk).collect();
    let verdicts: Vec<OnceLock<Vec<bool>>> = parts.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let claim = || {
        while let (Some(part), Some(v)) = {
            let i = next.fetch_add(1, Ordering::Relaxed);
            (parts.get(i), verdicts.get(i))
        } {
            let _ = v.set(aergo_types::crypto::verify_batch(part));
        }
    };
    if with_helpers(parts.len().min(workers) - 1, &claim, claim).is_none() {
        claim();
    }
    let mut out = Vec::with_capacity(sigs.len());
    for (part, v) in parts.iter().zip(verdicts) {
        // A part no one checked (a helper that failed): checked here.
        out.extend(
            v.into_inner()
                .unwrap_or_else(|| aergo_types::crypto::verify_batch(part)),
        );
    }
    out
}

/// Validates `txs` along `dtt` with `workers` workers on `base` plus the begin-block writes
/// `pre`: `Ok(Ok(execution))` when every transaction ran and `dtt` is the canonical DTT
/// of what they read and wrote ([`Executed::access`] is left empty: the check consumes the
/// sets);
/// `Ok(Err(why))` when `dtt` is malformed or not the canonical one; `Err` when a
/// transaction cannot be included (the block is invalid) or storage failed. While workers
/// run, a worker that finished another `RETIRE_EVERY` transactions and finds the
/// retirement free retires every finished transaction in block order: its canonical DTT
/// entry is computed and compared, and a difference stops the pool early. With one worker
/// (or a narrow DTT) this is [`exec::execute_block`] followed by the same comparison.
pub fn validate(
    base: &(dyn StateView + Sync),
    pre: &WriteSet,
    txs: &[SignedTx],
    dtt: &Dtt,
    ctx: &BlockCtx,
    workers: usize,
) -> Result<Result<Executed, String>, ChainError> {
    let width = match crate::dtt::shape(dtt, txs.len()) {
        Ok(w) => w,
        Err(why) => return Ok(Err(why)),
    };
    if workers <= 1 || txs.len() <= 1 {
        let base = Overlay {
            base,
            writes: pre.clone(),
        };
        let mut ex = exec::execute_block(&base, txs, ctx)?;
        let sets = std::mem::take(&mut ex.access);
        let mut b = crate::dtt::Builder::<&[u8]>::for_block(txs.len());
        let canonical = Dtt {
            entries: sets.iter().map(|a| b.push(a)).collect(),
        };
        return Ok(match crate::dtt::mismatch(dtt, &canonical, txs.len()) {
            Some(why) => Err(why),
            None => Ok(ex),
        });
    }
    if width < MIN_WIDTH {
        return pipelined(base, pre, txs, dtt, ctx);
    }
    // Workers claim transactions in block order and wait for the claimed one's parents:
    // the lowest unfinished claimed transaction always has its parents finished (they
    // are lower and were claimed earlier), so the pool always progresses.
    let next = AtomicUsize::new(0);
    let writes: Vec<Mutex<Option<WriteSet>>> = txs.iter().map(|_| Mutex::new(None)).collect();
    // Each worker's writes, sorted (see `gather`).
    let runs: Mutex<Vec<Vec<Keyed>>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let slots: Vec<OnceLock<Outcome>> = txs.iter().map(|_| OnceLock::new()).collect();
    let retire = Mutex::new(Retire {
        builder: crate::dtt::Builder::<&[u8]>::for_block(txs.len()),
        next: 0,
        mismatch: None,
    });
    // Waits until transaction `i` finished; false: the pool stopped.
    let wait = |i: usize| {
        let mut spins = 0u32;
        while slots.get(i).is_some_and(|s| s.get().is_none()) {
            if stop.load(Ordering::Acquire) {
                return false;
            }
            spins = spins.saturating_add(1);
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        true
    };
    let chunk = if width >= WIDE { CHUNK } else { 1 };
    let work = || {
        let (mut j, mut end) = (0, 0);
        // The transactions this worker ran.
        let mut mine: Vec<usize> = Vec::new();
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            if j == end {
                j = next.fetch_add(chunk, Ordering::Relaxed);
                end = j + chunk;
            }
            let claimed = j;
            j += 1;
            let j = claimed;
            let (Some(tx), Some(slot), Some(entry), Some(out)) =
                (txs.get(j), slots.get(j), dtt.entries.get(j), writes.get(j))
            else {
                break;
            };
            let (ready, sources) = match entry {
                DttEntry::Barrier => ((0..j).all(wait), Sources::All),
                DttEntry::Parents(ps) => {
                    (ps.iter().all(|p| wait(*p as usize)), Sources::Parents(ps))
                }
            };
            if !ready {
                break;
            }
            let view = TxView {
                base,
                pre,
                writes: &writes,
                sources,
                index: j,
            };
            let outcome = exec::execute_recorded(&view, tx, ctx).map(|(r, w, reads)| {
                let a = match reads {
                    exec::Reads::Transfer => {
                        Held::Transfer(exec::TransferKeys::of(tx, r.status == ReceiptStatus::Ok))
                    }
                    exec::Reads::Recorded(rec) => Held::Set(rec.finish(&w)),
                };
                *out.lock() = Some(w);
                (r, a)
            });
            let failed = outcome.is_err();
            // Published last: a waiting child reads the write set once this is set.
            let _ = slot.set(outcome);
            mine.push(j);
            if failed {
                stop.store(true, Ordering::Release);
            } else if mine.len().is_multiple_of(RETIRE_EVERY) {
                if let Some(mut r) = retire.try_lock() {
                    r.advance(&slots, dtt, &stop);
                }
            }
        }
        // Once every transaction ran, no one reads a write set any more: each worker gathers
        // and sorts the writes of the transactions it ran, so their memory is freed by the
        // thread that allocated it, and the sort runs on every core.
        if !stop.load(Ordering::Acquire) && (0..txs.len()).all(wait) {
            let run = gather(&writes, &mine);
            runs.lock().push(run);
        }
    };
    // A worker that panics (a bug) stops the others, which could wait for its transaction
    // forever, and the block is validated sequentially instead: a bug must not make a valid
    // block invalid.
    let panicked = AtomicBool::new(false);
    let guarded = || {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(&work)).is_err() {
            panicked.store(true, Ordering::Release);
            stop.store(true, Ordering::Release);
        }
    };
    // The caller's thread works too: a helper that cannot start only costs speed.
    if with_helpers(workers.min(txs.len()) - 1, &guarded, guarded).is_none() {
        guarded();
    }
    if panicked.load(Ordering::Acquire) {
        tracing::error!("a validation worker panicked (a bug): validating the block sequentially");
        return validate(base, pre, txs, dtt, ctx, 1);
    }
    let mut r = retire.into_inner();
    if r.mismatch.is_none() {
        r.advance(&slots, dtt, &stop);
    }
    if let Some(why) = r.mismatch {
        return Ok(Err(why));
    }
    drop(r);
    let mut run = BlockRun {
        overlay: Overlay {
            base,
            writes: WriteSet::new(),
        },
        out: Executed::default(),
    };
    run.out.receipts.reserve(txs.len());
    // Consumed in place (a copy of every outcome into another vector cost 0.1-0.3 ms).
    let mut outcomes = slots.into_iter().map(OnceLock::into_inner);
    for tx in txs {
        if !run.fits(tx, ctx) {
            return Err(exec::gas_exceeded(tx, ctx, run.out.gas_used));
        }
        match outcomes.next().flatten() {
            Some(Ok((r, _))) => {
                run.out.fees += r.fee;
                run.out.gas_used = run.out.gas_used.saturating_add(r.gas_used);
                run.out.receipts.push(r);
            }
            Some(Err(e)) => return Err(e),
            // Not run: the pool stopped at a later transaction's failure.
            None => {
                return Err(outcomes.flatten().find_map(Result::err).unwrap_or_else(|| {
                    ChainError::Corrupt(format!(
                        "transaction {} did not run along the DTT",
                        tx.hash
                    ))
                }))
            }
        }
    }
    let mut runs = runs.into_inner();
    // Writes no worker gathered (a helper that did not start or failed).
    let rest: Vec<usize> = (0..writes.len())
        .filter(|i| writes.get(*i).is_some_and(|w| w.lock().is_some()))
        .collect();
    if !rest.is_empty() {
        runs.push(gather(&writes, &rest));
    }
    run.overlay.writes = merge(pre, runs);
    run.finish(ctx).map(Ok)
}

/// Access sets handed to the DTT checker at a time (each batch wakes it once; the last one
/// is checked after the execution ended).
const BATCH: usize = 256;

/// Transactions per handoff in a block's last [`BATCH`].
const TAIL: usize = 32;

/// How long [`pipelined`]'s checker spins for the next handoff before it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(300);

/// The next value of `recv`, spinning up to [`SPIN`] before sleeping (`None` once the sender
/// is gone). A sleeping checker cost the executing thread a futex wake per handoff, and the
/// last handoff's wake-up latency (an idle virtual CPU takes tens of microseconds to wake)
/// came at the end of every block; a handoff of transfers comes every ~0.2 ms, so the
/// checker of such a block never sleeps, and one of a slow block sleeps after 0.3 ms.
fn recv_spinning<T>(recv: &std::sync::mpsc::Receiver<T>) -> Option<T> {
    let start = std::time::Instant::now();
    let mut spins = 0u32;
    loop {
        match recv.try_recv() {
            Ok(v) => return Some(v),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && start.elapsed() > SPIN {
            return recv.recv().ok();
        }
        std::hint::spin_loop();
    }
}

/// What the executing thread of [`pipelined`] hands the checker for a run of consecutive
/// transactions: for each, whether it was a native transfer that succeeded, failed, or
/// neither (then its recorded set is the next one of `sets`).
struct Handoff {
    kinds: Vec<Handed>,
    sets: AccessBatch,
}

/// One transaction of a [`Handoff`].
#[derive(Clone, Copy)]
enum Handed {
    /// Its set is the next of the handoff's recorded sets.
    Recorded,
    /// A native transfer, with its status (`true`: it succeeded): the checker derives its
    /// keys ([`exec::TransferKeys`]).
    Transfer(bool),
}

/// A narrow DTT's validation: the caller's thread executes the block in order (as
/// [`exec::execute_block`]) and hands each transaction's access set, in batches, to a
/// second thread that computes the canonical DTT entry and compares it with the block's.
/// A native transfer's set is not even built on the executing thread: it hands over the
/// transfer's status, and the checker derives the set from the transaction (building ~90
/// bytes per transaction cost the executing thread ~8% on a block of transfers). The two
/// overlap; a difference stops the execution early. Nothing is shared but the handoffs,
/// through a bounded channel.
fn pipelined(
    base: &(dyn StateView + Sync),
    pre: &WriteSet,
    txs: &[SignedTx],
    dtt: &Dtt,
    ctx: &BlockCtx,
) -> Result<Result<Executed, String>, ChainError> {
    let stop = AtomicBool::new(false);
    let (send, recv) = std::sync::mpsc::sync_channel::<Handoff>(8);
    // The handoffs checked and the sets the checker derived, kept until the check ends: the
    // builder borrows its keys from them (no copy per key). Each is freed by the thread that
    // allocated it, or after both threads ended. Every handoff but the last carries at least
    // `TAIL` transactions.
    let handoffs = txs.len().div_ceil(TAIL) + 1;
    let kept: Vec<OnceLock<Handoff>> = (0..handoffs).map(|_| OnceLock::new()).collect();
    let derived: Vec<OnceLock<Vec<exec::TransferKeys>>> =
        (0..handoffs).map(|_| OnceLock::new()).collect();
    let check = |recv: std::sync::mpsc::Receiver<Handoff>| -> Option<String> {
        let mut b = crate::dtt::Builder::<&[u8]>::for_block(txs.len());
        let mut j = 0usize;
        for (i, handoff) in std::iter::from_fn(|| recv_spinning(&recv)).enumerate() {
            let (Some(h), Some(d)) = (kept.get(i), derived.get(i)) else {
                return Some(format!("the DTT check got more than {handoffs} handoffs"));
            };
            let h = h.get_or_init(|| handoff);
            let d = d.get_or_init(|| {
                let kinds = h.kinds.iter().enumerate();
                kinds
                    .filter_map(|(k, kind)| match (kind, txs.get(j + k)) {
                        (Handed::Transfer(ok), Some(tx)) => Some(exec::TransferKeys::of(tx, *ok)),
                        _ => None,
                    })
                    .collect()
            });
            let (mut recorded, mut transfers) = (h.sets.iter(), d.iter());
            for kind in &h.kinds {
                let want = match kind {
                    Handed::Recorded => recorded.next().map(|a| b.push_ref(a)),
                    Handed::Transfer(_) => {
                        transfers.next().map(|t| t.with(|r, w| b.push_keys(r, w)))
                    }
                };
                let (Some(want), Some(given)) = (want, dtt.entries.get(j)) else {
                    // `malformed` already matched the counts; never reached.
                    return Some(format!(
                        "the DTT check has no set or entry for transaction {j}"
                    ));
                };
                if want != *given {
                    stop.store(true, Ordering::Release);
                    return Some(crate::dtt::entry_mismatch(j, given, &want));
                }
                j += 1;
            }
        }
        // Every transaction's set was checked (fewer: the execution stopped on an error,
        // which is then the verdict, or a batch did not decode — never accepted unchecked).
        (j != dtt.entries.len()).then(|| {
            format!(
                "the DTT check saw {j} of {} transactions",
                dtt.entries.len()
            )
        })
    };
    let run = |send: std::sync::mpsc::SyncSender<Handoff>| {
        let mut run = BlockRun {
            overlay: Overlay {
                base,
                writes: pre.clone(),
            },
            out: Executed::default(),
        };
        let fresh = || Handoff {
            kinds: Vec::with_capacity(BATCH),
            sets: AccessBatch::default(),
        };
        let mut handoff = fresh();
        for (i, tx) in txs.iter().enumerate() {
            if stop.load(Ordering::Acquire) {
                // The checker found a difference: its verdict is the result.
                return Ok(None);
            }
            if !run.fits(tx, ctx) {
                return Err(exec::gas_exceeded(tx, ctx, run.out.gas_used));
            }
            handoff
                .kinds
                .push(match run.try_tx_batch(tx, ctx, &mut handoff.sets)? {
                    Some(ok) => Handed::Transfer(ok),
                    None => Handed::Recorded,
                });
            // Near the end, smaller handoffs: what the checker has left once the execution
            // ended is what the block waits for.
            let tail = txs.len() - i <= BATCH;
            if handoff.kinds.len() >= if tail { TAIL } else { BATCH } {
                let full = std::mem::replace(&mut handoff, fresh());
                if send.send(full).is_err() {
                    return Ok(None);
                }
            }
        }
        // The checker ended early only on a difference, whose verdict is the result.
        if !handoff.kinds.is_empty() && send.send(handoff).is_err() {
            return Ok(None);
        }
        drop(send);
        run.finish(ctx).map(Some)
    };
    // The checker runs on a helper; its verdict: `Some(None)` equal, `Some(Some(why))` a
    // difference, `None` it did not run (or failed, a bug).
    let verdict: Mutex<Option<Option<String>>> = Mutex::new(None);
    let recv = Mutex::new(Some(recv));
    let helper = || {
        if let Some(r) = recv.lock().take() {
            *verdict.lock() = Some(check(r));
        }
    };
    let Some(executed) = with_helpers(1, &helper, || run(send)) else {
        tracing::warn!("the DTT checker did not start");
        return validate(base, pre, txs, dtt, ctx, 1);
    };
    let mismatch = verdict.into_inner().ok_or(());
    match (executed?, mismatch) {
        (_, Ok(Some(why))) => Ok(Err(why)),
        (Some(ex), Ok(None)) => Ok(Ok(ex)),
        // No checker (it did not start or failed): the sequential path decides.
        (_, Err(())) => validate(base, pre, txs, dtt, ctx, 1),
        (None, Ok(None)) => Err(ChainError::Corrupt(
            "the DTT check stopped without a verdict".into(),
        )),
    }
}

/// The in-order retirement of finished transactions (see [`validate`]), its builder holding
/// keys borrowed from the transactions' sets.
struct Retire<'s> {
    builder: crate::dtt::Builder<&'s [u8]>,
    /// The next transaction to retire.
    next: usize,
    /// The first entry of the block's DTT found not canonical.
    mismatch: Option<String>,
}

impl<'s> Retire<'s> {
    /// Retires every finished transaction in block order from `self.next` on: computes its
    /// canonical entry (the builder borrows the keys from its set, which `slots` keeps until
    /// the check ends: no copy per key, and no set freed on a thread other than the one that
    /// allocated it while that one still runs — that free took the other thread's allocator
    /// lock, and the pool ran at a third of sequential speed) and compares it with `dtt`'s.
    /// A difference is kept and stops the pool.
    fn advance(&mut self, slots: &'s [OnceLock<Outcome>], dtt: &Dtt, stop: &AtomicBool) {
        while let (Some(slot), Some(given)) = (slots.get(self.next), dtt.entries.get(self.next)) {
            let Some(Ok((_, a))) = slot.get() else {
                break;
            };
            let want = match a {
                Held::Set(s) => self.builder.push(s),
                Held::Transfer(t) => t.with(|r, w| self.builder.push_keys(r, w)),
            };
            if want != *given {
                self.mismatch = Some(crate::dtt::entry_mismatch(self.next, given, &want));
                stop.store(true, Ordering::Release);
                break;
            }
            self.next += 1;
        }
    }
}

/// The first 16 bytes of `key` (zero-padded) as a big-endian number: when two keys'
/// prefixes differ, they order as the keys do (equal prefixes say nothing), so a sort
/// compares numbers first and touches key bytes only on a tie.
fn prefix(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    if let (Some(d), Some(s)) = (b.get_mut(..n), key.get(..n)) {
        d.copy_from_slice(s);
    }
    u128::from_be_bytes(b)
}

/// A write with its key's prefix and its transaction's position in the block.
type Keyed = (u128, usize, Vec<u8>, Option<Vec<u8>>);

/// The order of the block's writes: by key, then block order (a transaction writes a key
/// once, so the order is total).
fn by_key(a: &Keyed, b: &Keyed) -> std::cmp::Ordering {
    a.0.cmp(&b.0)
        .then_with(|| a.2.cmp(&b.2))
        .then(a.1.cmp(&b.1))
}

/// The write sets of transactions `of`, taken out of `writes` and sorted [`by_key`].
fn gather(writes: &Writes, of: &[usize]) -> Vec<Keyed> {
    let mut sets: Vec<(usize, WriteSet)> = Vec::with_capacity(of.len());
    for &i in of {
        if let Some(w) = writes.get(i).and_then(|w| w.lock().take()) {
            sets.push((i, w));
        }
    }
    let mut run: Vec<Keyed> = Vec::with_capacity(sets.iter().map(|(_, w)| w.len()).sum());
    for (i, w) in sets {
        for (k, v) in w {
            run.push((prefix(&k), i, k, v));
        }
    }
    run.sort_unstable_by(by_key);
    run
}

/// The block's writes: `pre`, then each transaction's write set in block order (a later
/// write of a key replaces an earlier one), as sequential execution applies them, from the
/// workers' sorted runs: merged in one pass (the least head [`by_key`] among the runs, a
/// handful), each key's last write kept, straight into the map's sorted input. (Appending
/// the runs and stable-sorting them copied every write several times: ~0.35 ms of a 4,000
/// transfer block.)
fn merge(pre: &WriteSet, runs: Vec<Vec<Keyed>>) -> WriteSet {
    let total = runs.iter().map(Vec::len).sum();
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<Keyed>>> =
        runs.into_iter().map(|r| r.into_iter().peekable()).collect();
    let mut last: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(total);
    loop {
        let mut least: Option<(usize, &Keyed)> = None;
        for (i, h) in heads.iter_mut().enumerate() {
            if let Some(k) = h.peek() {
                if least.is_none_or(|(_, l)| by_key(k, l) == std::cmp::Ordering::Less) {
                    least = Some((i, k));
                }
            }
        }
        let Some((_, _, k, v)) = least.map(|(i, _)| i).and_then(|i| heads.get_mut(i)?.next())
        else {
            break;
        };
        match last.last_mut() {
            // The last write of a key wins (equal keys come in block order).
            Some(l) if l.0 == k => l.1 = v,
            _ => last.push((k, v)),
        }
    }
    // Sorted and unique: the map is built in one pass.
    let mut out: WriteSet = last.into_iter().collect();
    for (k, v) in pre {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    //! Differential tests: random blocks executed along their canonical DTT with 1, 2 and 8
    //! workers give byte-identical receipts, writes and access sets to sequential execution.

    use super::*;
    use crate::exec::execute_block;
    use crate::state::{account_key, Account, MemState};
    use aergo_types::block::ReceiptStatus;
    use aergo_types::{Address, Hash, Keypair, Tx, TxKind};
    use proptest::prelude::*;

    /// The whitepaper's Figure 6, as the SQL crate's fixture holds it.
    const FIGURE6: &str = include_str!("../../sql/tests/fixtures/figure6.sql");

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
        crate::ctx::test_ctx(2, 99)
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
                Account::new(1_000_000_000_000, 0).encode(),
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
            let par = validate(&w.state, &pre, txs, &dtt, &c, workers)
                .unwrap()
                .unwrap();
            assert_eq!(par.receipts, seq.receipts, "{workers} workers");
            assert_eq!(par.writes, seq.writes, "{workers} workers");
            // The check consumed the sets: accepted means they give `dtt`.
            assert!(par.access.is_empty());
            assert_eq!((par.fees, par.gas_used), (seq.fees, seq.gas_used));
        }
    }

    /// A native transfer's access set is derived, not recorded (`exec::TransferKeys`):
    /// every case of a transfer — a payment, a zero amount, one to itself, one to a new
    /// account, one whose recipient's balance would overflow (failed) — gives the set a
    /// recorder gives (`exec::execute_recorded` asserts it under test for every transfer),
    /// and a block of them validates on the pool and on the pipeline (where the checker
    /// derives the sets from the statuses it is handed).
    #[test]
    fn transfer_sets_are_derived_exactly() {
        let mut state = world().state.clone();
        let rich = Address::from_public_key(&Keypair::from_seed(&[200; 32]).public());
        state
            .0
            .insert(account_key(&rich), Account::new(u128::MAX - 5, 0).encode());
        let fresh = Address::from_public_key(&Keypair::from_seed(&[201; 32]).public());
        let round = |r: u64| {
            let n = r * 5;
            vec![
                tx(1, n, TxKind::Transfer, Some(addr(2)), 10, b""),
                tx(1, n + 1, TxKind::Transfer, Some(addr(2)), 0, b""),
                tx(1, n + 2, TxKind::Transfer, Some(addr(1)), 7, b""),
                tx(1, n + 3, TxKind::Transfer, Some(fresh), 3, b""),
                tx(1, n + 4, TxKind::Transfer, Some(rich), 100, b""),
                tx(2, r, TxKind::Transfer, Some(rich), 1, b""),
            ]
        };
        let c = ctx();
        // Sender 1's chain: narrow, so validation takes the pipeline.
        let txs: Vec<SignedTx> = (0..40).flat_map(round).collect();
        let seq = execute_block(&state, &txs, &c).unwrap();
        let failed = seq
            .receipts
            .iter()
            .filter(|r| matches!(&r.status, ReceiptStatus::Failed(m) if m == "balance overflow"))
            .count();
        assert!(failed >= 40, "the overflow case fails ({failed})");
        // The set of a failed transfer: the sender written, the recipient only read.
        let i = seq
            .receipts
            .iter()
            .position(|r| r.status != ReceiptStatus::Ok)
            .unwrap();
        let a = &seq.access[i];
        assert_eq!(a.reads().count(), 2);
        assert_eq!(
            a.writes().collect::<Vec<_>>(),
            vec![account_key(&addr(1)).as_slice()]
        );
        let dtt = crate::dtt::canonical(&seq.access);
        assert!(crate::dtt::width(&dtt) < MIN_WIDTH, "the pipeline's case");
        for workers in [1, 2, 8] {
            let par = validate(&state, &WriteSet::new(), &txs, &dtt, &c, workers)
                .unwrap()
                .unwrap();
            assert_eq!(par.receipts, seq.receipts, "{workers} workers");
            assert_eq!(par.writes, seq.writes, "{workers} workers");
        }
        // The same transfers from distinct senders: wide, so the pool runs them.
        let wide: Vec<SignedTx> = (3..30u8)
            .map(|s| tx(s, 0, TxKind::Transfer, Some(rich), 1, b""))
            .chain((3..30u8).map(|s| tx(s, 1, TxKind::Transfer, Some(addr(s)), 5, b"")))
            .collect();
        let seq = execute_block(&state, &wide, &c).unwrap();
        let dtt = crate::dtt::canonical(&seq.access);
        assert!(crate::dtt::width(&dtt) >= MIN_WIDTH, "the pool's case");
        for workers in [2, 8] {
            let par = validate(&state, &WriteSet::new(), &wide, &dtt, &c, workers)
                .unwrap()
                .unwrap();
            assert_eq!(par.receipts, seq.receipts, "{workers} workers");
            assert_eq!(par.writes, seq.writes, "{workers} workers");
        }
        // The pool's check of the kept transfer keys catches a dropped dependency too (the
        // second payment to `rich` on the first).
        let mut forged = dtt.clone();
        forged.entries[1] = aergo_types::block_ext::DttEntry::Parents(vec![]);
        for workers in [2, 8] {
            let verdict = validate(&state, &WriteSet::new(), &wide, &forged, &c, workers);
            assert!(verdict.unwrap().is_err(), "{workers} workers");
        }
        // A DTT that drops a transfer's dependencies (among them a failed transfer that
        // read its recipient) is caught by the pipeline's checker, which derived the sets.
        let mut forged = crate::dtt::canonical(&execute_block(&state, &txs, &c).unwrap().access);
        let k = txs
            .iter()
            .position(|t| t.tx.from == key(2).public() && t.tx.nonce == 1)
            .unwrap();
        forged.entries[k] = aergo_types::block_ext::DttEntry::Parents(vec![]);
        let verdict = validate(&state, &WriteSet::new(), &txs, &forged, &c, 2).unwrap();
        assert!(verdict.is_err(), "a forged entry {k} passed");
    }

    #[test]
    fn signature_verdicts_do_not_depend_on_the_workers() {
        let mut txs: Vec<SignedTx> = (0..300u64)
            .map(|n| tx((n % 20) as u8, n, TxKind::Transfer, Some(addr(1)), 1, b""))
            .collect();
        // Two bad signatures in different chunks.
        txs[7].signature = txs[8].signature;
        txs[250].signature = txs[3].signature;
        let want: Vec<bool> = (0..300).map(|i| i != 7 && i != 250).collect();
        let refs: Vec<&SignedTx> = txs.iter().collect();
        for workers in [1, 2, 3, 8] {
            assert_eq!(verify_uncached(&refs, workers), want, "{workers} workers");
            // Through the cache: the first call remembers the good signatures, the later
            // ones find them; the verdicts are the same.
            assert_eq!(verify_signatures(&txs, workers), want, "{workers} workers");
        }
        // A bad signature is never remembered.
        let seen = crate::sigcache::seen(&txs);
        assert!(!seen[7] && !seen[250]);
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
        // The disjoint block runs on the pool, the chain of transfers to one account
        // sequentially.
        let width = |ops: &[(u8, u8, u8, u8)]| {
            let txs = block(w, ops, 30);
            let seq = execute_block(&w.state, &txs, &ctx()).unwrap();
            crate::dtt::width(&crate::dtt::canonical(&seq.access))
        };
        assert!(width(&disjoint) >= MIN_WIDTH && width(&mixed) >= MIN_WIDTH);
        assert!(width(&one) < MIN_WIDTH);
        // The mixed block really runs the contracts: some calls succeed, the scans count.
        let txs = block(w, &mixed, 30);
        let seq = execute_block(&w.state, &txs, &ctx()).unwrap();
        let ok_calls = txs
            .iter()
            .zip(&seq.receipts)
            .filter(|(t, r)| t.tx.kind == TxKind::Call && r.status == ReceiptStatus::Ok)
            .count();
        assert!(ok_calls >= 10, "{:?}", seq.receipts);
        assert!(seq.access.iter().any(|a| a.ranges().next().is_some()));
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
            // Whatever the run observed, it never accepts the forged DTT.
            let run = validate(&w.state, &WriteSet::new(), &txs, &forged, &ctx(), workers);
            match run {
                Ok(Err(why)) => assert!(why.contains("not the canonical one"), "{why}"),
                Err(ChainError::InvalidTx { .. }) => {}
                other => panic!("{workers} workers: {other:?}"),
            }
        }
        let forward = Dtt {
            entries: vec![DttEntry::Parents(vec![1]); txs.len()],
        };
        assert!(matches!(
            validate(&w.state, &WriteSet::new(), &txs, &forward, &ctx(), 2),
            Ok(Err(m)) if m.contains("not an earlier")
        ));
    }

    proptest! {
        /// `gather` by any split of the transactions among workers, then `merge`, equals
        /// applying the write sets in block order, whatever the keys share: long common
        /// prefixes, keys that are prefixes of others, zero bytes.
        #[test]
        fn merge_applies_writes_in_block_order(
            sets in prop::collection::vec(
                prop::collection::vec(
                    (prop::sample::select(vec![
                        b"".to_vec(), b"a".to_vec(), b"a\0".to_vec(), b"a\0\0".to_vec(),
                        vec![7; 16], vec![7; 17], [vec![7; 16], vec![0]].concat(),
                        [vec![7; 16], vec![1]].concat(), vec![7; 15], vec![255; 20],
                    ]), prop::option::of(prop::collection::vec(any::<u8>(), 0..3))),
                    0..4,
                ),
                0..12,
            ),
            owners in prop::collection::vec(0usize..3, 12),
            pre_keys in prop::collection::vec(prop::sample::select(vec![
                b"a".to_vec(), vec![7; 17], b"z".to_vec(),
            ]), 0..3),
        ) {
            let pre: WriteSet = pre_keys.into_iter().map(|k| (k, Some(b"p".to_vec()))).collect();
            let mut want = pre.clone();
            let writes: Vec<Mutex<Option<WriteSet>>> = sets
                .into_iter()
                .map(|s| {
                    let w: WriteSet = s.into_iter().collect();
                    want.extend(w.clone());
                    Mutex::new(Some(w))
                })
                .collect();
            let runs: Vec<Vec<Keyed>> = (0..3)
                .map(|o| {
                    let mine: Vec<usize> =
                        (0..writes.len()).filter(|i| owners[*i] == o).collect();
                    gather(&writes, &mine)
                })
                .collect();
            prop_assert!(writes.iter().all(|w| w.lock().is_none()), "every set taken");
            prop_assert_eq!(merge(&pre, runs), want);
        }
    }

    #[test]
    fn a_narrow_dtt_is_checked_by_the_pipeline() {
        let w = world();
        // 600 transfers all to one account (several batches of access sets): a chain.
        let ops: Vec<_> = (0..600u32).map(|i| (1, (i % 30) as u8, 31, 1)).collect();
        let txs = block(w, &ops, 30);
        let seq = execute_block(&w.state, &txs, &ctx()).unwrap();
        let canonical = crate::dtt::canonical(&seq.access);
        assert!(crate::dtt::width(&canonical) < MIN_WIDTH);
        differential(w, &txs);
        // Still narrow, but transaction 500 names the wrong parent: the checker, which sees
        // it in the second batch, stops the run with its verdict.
        let mut forged = canonical.clone();
        forged.entries[500] = DttEntry::Parents(vec![498]);
        assert!(crate::dtt::width(&forged) < MIN_WIDTH);
        for workers in [2, 8] {
            match validate(&w.state, &WriteSet::new(), &txs, &forged, &ctx(), workers) {
                Ok(Err(why)) => assert!(why.contains("transaction 500"), "{why}"),
                other => panic!("{workers} workers: {other:?}"),
            }
        }
        // The last transaction's entry, checked after the execution ended.
        let mut last = canonical;
        last.entries[599] = DttEntry::Parents(Vec::new());
        assert!(matches!(
            validate(&w.state, &WriteSet::new(), &txs, &last, &ctx(), 2),
            Ok(Err(why)) if why.contains("transaction 599")
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
            let e = validate(&w.state, &WriteSet::new(), &txs, &dtt, &ctx(), workers)
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

    /// Staking: keys 1..=4 are genesis BPs, 11..=20 hold balances.
    mod staking_blocks {
        use super::super::*;
        use crate::exec::{execute_block, DposCtx};
        use crate::state::{account_key, Account, MemState};
        use aergo_types::genesis::{DposGenesis, GenesisAccount, GenesisBp};
        use aergo_types::{Address, Aer, Genesis, Keypair, Tx, TxKind, TOTAL_SUPPLY};
        use proptest::prelude::*;
        use std::sync::Arc;

        fn key(i: u8) -> Keypair {
            Keypair::from_seed(&[i; 32])
        }
        fn addr(i: u8) -> Address {
            Address::from_public_key(&key(i).public())
        }

        fn genesis() -> Genesis {
            let mut g = Genesis::dev();
            g.consensus.engine = aergo_types::genesis::Engine::Dpos;
            let mut balances: Vec<GenesisAccount> = (1..=4)
                .chain(11..=20)
                .map(|i| GenesisAccount {
                    address: addr(i),
                    balance: Aer(1_000_000),
                })
                .collect();
            balances.push(GenesisAccount {
                address: addr(10),
                balance: Aer(TOTAL_SUPPLY - 14 * 1_000_000),
            });
            g.balances = balances;
            g.gas.min_price = Aer(1);
            g.consensus.dpos = Some(DposGenesis {
                round_slots: 12,
                bp_count: 4,
                max_votes: 2,
                min_stake: Aer(1000),
                unstake_lock_blocks: 10,
                bps: (1..=4)
                    .map(|i| GenesisBp {
                        address: addr(i),
                        stake: Aer(5000),
                        p2p_addr: None,
                    })
                    .collect(),
            });
            g.validate().unwrap();
            g
        }

        fn apply(s: &mut MemState, w: &WriteSet) {
            for (k, v) in w {
                match v {
                    Some(v) => s.0.insert(k.clone(), v.clone()),
                    None => s.0.remove(k),
                };
            }
        }

        fn state(g: &Genesis) -> MemState {
            let mut w = WriteSet::new();
            for a in &g.balances {
                let acct = Account::new(a.balance.0, 0);
                w.insert(account_key(&a.address), Some(acct.encode()));
            }
            crate::staking::genesis_writes(g, &mut w).unwrap();
            let mut s = MemState::default();
            apply(&mut s, &w);
            let mut w2 = WriteSet::new();
            crate::rounds::genesis_writes(&s, g.consensus.dpos.as_ref().unwrap(), &mut w2).unwrap();
            apply(&mut s, &w2);
            s
        }

        fn ctx(s: &MemState, g: &Genesis) -> BlockCtx {
            BlockCtx {
                height: 7,
                timestamp_ms: 0,
                producer: addr(1),
                chain_id: g.chain_id(),
                gas: g.gas.clone(),
                dpos: g.consensus.dpos.clone().map(|d| DposCtx {
                    genesis: Arc::new(d),
                    schedule: crate::rounds::load_schedule(s).unwrap().unwrap(),
                }),
                limits: crate::exec::GasLimits::from_genesis(&g.gas),
                role: crate::exec::ChainRole::Root { repo_create_fee: 0 },
                access: None,
                parent: aergo_types::Hash::ZERO,
                merge: None,
                sql_engine: aergo_sql::EngineVersion::V1,
            }
        }

        /// Runs `ops` sequentially and along their canonical DTT with 1, 2 and 8 workers,
        /// asserting identical results; returns the receipts.
        fn differential(ops: &[(u8, u8, u8, u16)]) -> Vec<aergo_types::block::Receipt> {
            let g = genesis();
            let s = state(&g);
            let c = ctx(&s, &g);
            let mut nonces = [0u64; 32];
            let txs: Vec<SignedTx> = ops
                .iter()
                .map(|&(kind, who, bp, amount)| {
                    let i = 11 + who;
                    let nonce = nonces[i as usize];
                    nonces[i as usize] += 1;
                    let (kind, to, amount, payload) = match kind {
                        0 => (TxKind::Stake, None, u128::from(amount), String::new()),
                        1 => {
                            let list = vec![addr(1 + bp).encode(), addr(1 + (bp + 1) % 4).encode()];
                            (
                                TxKind::Vote,
                                None,
                                0,
                                serde_json::json!({ "candidates": list }).to_string(),
                            )
                        }
                        2 => (
                            TxKind::Unstake,
                            None,
                            0,
                            format!(r#"{{"amount":"{amount}"}}"#),
                        ),
                        3 => (
                            TxKind::RegisterBp,
                            None,
                            0,
                            r#"{"p2p_addr":"/ip4/1.2.3.4/tcp/1"}"#.to_string(),
                        ),
                        _ => (
                            TxKind::Transfer,
                            Some(addr(11 + bp)),
                            u128::from(amount),
                            String::new(),
                        ),
                    };
                    Tx {
                        kind,
                        nonce,
                        from: key(i).public(),
                        to,
                        amount,
                        payload: payload.into_bytes(),
                        gas_limit: 100_000,
                        gas_price: 1,
                        chain_id: g.chain_id(),
                    }
                    .sign(&key(i))
                })
                .collect();
            let seq = execute_block(&s, &txs, &c).unwrap();
            let dtt = crate::dtt::canonical(&seq.access);
            for workers in [1, 2, 8] {
                let par = validate(&s, &WriteSet::new(), &txs, &dtt, &c, workers)
                    .unwrap()
                    .unwrap();
                assert_eq!(par.receipts, seq.receipts);
                assert_eq!(par.writes, seq.writes);
                assert!(par.access.is_empty());
            }
            seq.receipts
        }

        #[test]
        fn staking_runs_along_the_dtt() {
            // Stake, vote, register, then a transfer and a stake of another account.
            let ops = [
                (0, 0, 0, 2000),
                (1, 0, 1, 0),
                (3, 0, 0, 0),
                (4, 1, 2, 5),
                (0, 1, 0, 1500),
            ];
            let receipts = differential(&ops);
            assert!(
                receipts
                    .iter()
                    .all(|r| r.status == aergo_types::block::ReceiptStatus::Ok),
                "{receipts:?}"
            );
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
            /// Stakes, votes, unstakes, registrations and transfers among few accounts:
            /// identical to sequential execution with 1, 2 and 8 workers.
            #[test]
            fn staking_blocks_match_sequential_execution(
                ops in prop::collection::vec((0u8..5, 0u8..10, 0u8..4, 1u16..3000), 1..40),
            ) {
                differential(&ops);
            }
        }
    }
}
