//! The block producer thread: waits for the consensus engine's next slot, assembles a block
//! from the mempool, commits it (block log fsync, then RocksDB) and hands it to the node's one
//! post-commit path (`Node::on_committed`: mempool, publication, metrics). On shutdown
//! it finishes the block in progress and returns.

use crate::node::{now_ms, Node, Origin};
use crate::vital::Task;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use aergo_chain::limits::MAX_CANDIDATES;

/// Runs until `node.shutdown` is set. A vital thread: it beats every loop (and loops at least
/// once a second, idle or not), and a panic in it aborts the process (`vital`).
pub fn run(node: Arc<Node>) {
    crate::vital::run_vital_thread(Task::Producer, || produce_loop(node));
}

fn produce_loop(node: Arc<Node>) {
    let me = node.key.public();
    let interval = node.chain.engine().block_interval_ms();
    let mut last_evict = now_ms();
    while !node.shutdown.load(Ordering::SeqCst) {
        let now = now_ms();
        if node.faults.producer_check() {
            // An injected stall: alive but silent, as a deadlocked producer would be.
            wait(&node, Duration::from_millis(100));
            continue;
        }
        node.vital.beat(Task::Producer, now);
        if now.saturating_sub(last_evict) > 10_000 {
            let n = node.mempool.lock().evict_stale(now);
            if n > 0 {
                tracing::info!(dropped = n, "evicted stale mempool transactions");
            }
            last_evict = now;
        }
        if !node.disk.check(now) {
            // A full data disk: writing a block now would fail inside RocksDB.
            wait(&node, Duration::from_millis(1000));
            continue;
        }
        if node.net.syncing.load(Ordering::SeqCst) {
            // Never build on a tip the network has left behind.
            wait(&node, Duration::from_millis(interval.min(200)));
            continue;
        }
        let slot = match node.chain.next_slot(now, &me) {
            Ok(Some(s)) => s,
            Ok(None) => {
                wait(&node, Duration::from_millis(interval.clamp(50, 500)));
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot compute the next slot");
                wait(&node, Duration::from_millis(interval.clamp(50, 500)));
                continue;
            }
        };
        if node.preconf.enabled() {
            match preconf_step(&node, &slot, now, interval) {
                Step::Wait(d) => {
                    wait(&node, d);
                    continue;
                }
                Step::Done => continue,
                Step::Plain => {}
            }
        }
        if slot.timestamp_ms > now {
            wait(&node, Duration::from_millis(slot.timestamp_ms - now));
            continue;
        }
        let candidates = node.mempool.lock().candidates(MAX_CANDIDATES);
        // DPoS producers fill every slot they own (empty blocks carry finality); solo, and
        // PoA when configured, leave a slot empty when there is nothing to include (the
        // next producer's slot works as usual), unless empty blocks are switched on — or the
        // tip is not final yet: then an empty block carries the last change to finality
        // (on an idle chain nothing else would), and the chain goes quiet once it is final.
        if candidates.is_empty()
            && node.chain.engine().skips_empty_slots()
            && !node.empty_blocks.load(Ordering::Relaxed)
            && node.chain.finalized_height() >= node.chain.tip().header.height
        {
            wait(&node, Duration::from_millis(interval));
            continue;
        }
        let started = Instant::now();
        // A merge is built into a block of its own: the candidates before the first merge
        // make a block now; a merge that is first makes a merge block.
        let mut candidates = candidates;
        if let Some(i) = candidates.iter().position(crate::branches::is_merge) {
            if i == 0 {
                let tx = candidates.swap_remove(0);
                produce_merge(&node, tx, slot.timestamp_ms, slot.consensus, started);
                continue;
            }
            candidates.truncate(i);
        }
        match node
            .chain
            .produce(&node.key, candidates, slot.timestamp_ms, slot.consensus)
        {
            Ok(p) => {
                let commit_us = crate::node::micros(started.elapsed());
                node.on_committed(
                    std::slice::from_ref(&p.applied),
                    &[],
                    Origin::Produced {
                        rejected: &p.rejected,
                    },
                    commit_us,
                );
            }
            Err(aergo_chain::ChainError::Consensus(m)) => {
                // The tip moved under us (a block arrived): try again on the new tip.
                tracing::debug!(reason = %m, "slot no longer ours");
            }
            Err(e) => {
                tracing::error!(error = %e, "block production failed; retrying next slot");
                wait(&node, Duration::from_millis(interval));
            }
        }
    }
    tracing::info!("producer stopped");
}

/// Whether a merge transaction waits among the first candidates (it makes a block of its
/// own, built the ordinary way).
fn merge_waiting(node: &Node) -> bool {
    node.mempool
        .lock()
        .candidates(64)
        .iter()
        .any(crate::branches::is_merge)
}

/// What the pre-confirming producer does next.
enum Step {
    /// Nothing until then (or until woken).
    Wait(Duration),
    /// A block was sealed, or the slot is not ours any more: look again.
    Done,
    /// Produce this slot the ordinary way (a merge block, or a slot whose parent this node
    /// does not hold, so it pre-confirmed nothing).
    Plain,
}

/// One turn of the pre-confirming producer for its next `slot`: keeps a pending block open
/// on the tip from one interval before the slot (when the tip is the slot's parent), and
/// seals it at the slot's time. See `crate::preconf`.
fn preconf_step(node: &Node, slot: &aergo_chain::consensus::Slot, now: u64, interval: u64) -> Step {
    use crate::preconf;
    let tip = node.chain.tip();
    let mut pending = node.preconf.pending.lock();
    if pending.as_ref().is_some_and(|p| p.parent() != tip.hash) {
        // Another producer's block moved the tip: this pending block can never be sealed.
        tracing::warn!(
            promised = pending.as_ref().map(|p| p.len()).unwrap_or(0),
            "the tip moved under the pending block: its promises are void"
        );
        *pending = None;
        node.preconf.reset_log();
    }
    if pending
        .as_ref()
        .is_some_and(|p| p.is_empty() && now > p.timestamp_ms().saturating_add(interval))
    {
        // An idle solo chain: a fresh timestamp for the next block.
        *pending = None;
    }
    if pending.is_none() {
        // The slot's parent must be the tip (solo: always; slot engines: the tip's slot is
        // the one before), else nothing can be promised for it.
        let holds_parent = match aergo_chain::dpos::decode_slot(&slot.consensus) {
            None => true,
            Some(s) => {
                aergo_chain::dpos::decode_slot(&tip.header.consensus) == Some(s.saturating_sub(1))
                    || tip.header.height == 0
            }
        };
        // A slot engine's previous producer may have left its slot empty (PoA skips empty
        // slots; a producer may be down): once that slot is nearly over without its block,
        // the tip is this slot's parent as far as anyone can know.
        let previous_over = now.saturating_add(interval / 10) >= slot.timestamp_ms;
        if !holds_parent && !previous_over {
            return Step::Plain;
        }
        if slot.timestamp_ms > now.saturating_add(interval) {
            return Step::Wait(Duration::from_millis(
                slot.timestamp_ms - now.saturating_add(interval),
            ));
        }
        if merge_waiting(node) {
            // A merge is built into a block of its own, the ordinary way (the candidates
            // before it first).
            return Step::Plain;
        }
        preconf::open(
            node,
            &mut pending,
            slot.timestamp_ms,
            slot.consensus.clone(),
        );
        if pending.is_none() {
            return Step::Plain;
        }
    }
    let Some(p) = pending.as_ref() else {
        return Step::Plain;
    };
    if p.timestamp_ms() > now {
        return Step::Wait(Duration::from_millis(p.timestamp_ms() - now));
    }
    // The slot's time: what arrived without being pushed (a sender's gap filled late) goes
    // in now, then the block is sealed.
    preconf::push_candidates(node, &mut pending);
    // Before the pending block leaves the slot: admission holds to its promises until the
    // commit has pruned the mempool (cleared at every exit below).
    if let Some(p) = pending.as_ref() {
        *node.preconf.sealing.lock() = Some(p.promised_nonces());
    }
    let Some(p) = pending.take() else {
        *node.preconf.sealing.lock() = None;
        return Step::Done;
    };
    if p.is_empty()
        && node.chain.engine().skips_empty_slots()
        && !node.empty_blocks.load(Ordering::Relaxed)
        && node.chain.finalized_height() >= tip.header.height
    {
        if merge_waiting(node) {
            // Nothing promised: the merge goes first.
            *node.preconf.sealing.lock() = None;
            return Step::Plain;
        }
        *pending = Some(p);
        *node.preconf.sealing.lock() = None;
        return Step::Wait(Duration::from_millis(interval));
    }
    drop(pending);
    let step = seal_and_commit(node, p, interval);
    *node.preconf.sealing.lock() = None;
    step
}

/// Seals pending block `p`, opens the next one on it (solo), commits it and publishes it.
fn seal_and_commit(node: &Node, p: aergo_chain::Pending, interval: u64) -> Step {
    let started = Instant::now();
    let sealed = match node.chain.seal_block(&node.key, p) {
        Ok(s) => s,
        Err(aergo_chain::ChainError::Consensus(m)) => {
            node.preconf.reset_log();
            tracing::warn!(reason = %m, "the pending block could not be sealed: its promises are void");
            return Step::Done;
        }
        Err(e) => {
            node.preconf.reset_log();
            tracing::error!(error = %e, "sealing the pending block failed; retrying next slot");
            return Step::Wait(Duration::from_millis(interval));
        }
    };
    let height = sealed.block().header.height;
    if node.chain.engine().name() == "solo" && !merge_waiting(node) {
        // The one producer makes the next block too: it opens on the sealed block at
        // once, so promises go on while this one is committed.
        let ts = sealed.block().header.timestamp_ms.saturating_add(interval);
        match node
            .chain
            .open_pending_after(&sealed, node.key.public(), ts, Vec::new())
        {
            Ok(next) => {
                node.preconf.log_open(&next);
                let mut slot = node.preconf.pending.lock();
                *slot = Some(next);
                // What arrived while the block was sealed waits in the mempool: promise it
                // now, on the new pending block, not after the commit (10–13 ms for a block
                // of 4,000 transfers).
                crate::preconf::push_arrived(node, &mut slot);
                drop(slot);
                node.preconf.note_opened();
            }
            Err(e) => tracing::debug!(error = %e, "no pending block on the sealed one"),
        }
    }
    match node.chain.commit_sealed(sealed) {
        Ok(p) => {
            let commit_us = crate::node::micros(started.elapsed());
            node.on_committed(
                std::slice::from_ref(&p.applied),
                &[],
                Origin::Produced {
                    rejected: &p.rejected,
                },
                commit_us,
            );
            node.preconf.committed(height);
            let mut pending = node.preconf.pending.lock();
            if pending.is_some() {
                crate::preconf::push_candidates(node, &mut pending);
            }
            Step::Done
        }
        Err(e) => {
            // Nothing was written: the next pending block (on this one) is void too.
            *node.preconf.pending.lock() = None;
            node.preconf.reset_log();
            tracing::error!(error = %e, "committing the sealed block failed; retrying next slot");
            Step::Wait(Duration::from_millis(interval))
        }
    }
}

/// Builds and commits a merge block for merge transaction `tx`; a merge that cannot run
/// any more (the branch was merged or deleted meanwhile, the merge does not fit a block)
/// leaves the mempool with its reason.
fn produce_merge(
    node: &Node,
    tx: aergo_types::SignedTx,
    ts: u64,
    consensus: Vec<u8>,
    started: Instant,
) {
    let hash = tx.hash;
    let (mref, candidates) = match crate::branches::plan_merge(node, &tx) {
        Ok(plan) => plan,
        Err(reason) => {
            tracing::warn!(tx = %hash, %reason, "merge left out");
            node.mempool.lock().remove(&[hash]);
            return;
        }
    };
    let result = node
        .chain
        .produce_merge_with(&node.key, tx, mref, candidates, ts, consensus);
    match result {
        Ok(p) => {
            let commit_us = crate::node::micros(started.elapsed());
            node.on_committed(
                std::slice::from_ref(&p.applied),
                &[],
                Origin::Produced { rejected: &[] },
                commit_us,
            );
        }
        // The merge itself cannot be included: it leaves the mempool with its reason.
        Err(aergo_chain::ChainError::InvalidTx { reason, .. }) => {
            tracing::warn!(tx = %hash, %reason, "merge left out");
            node.mempool.lock().remove(&[hash]);
        }
        // The tip moved under us: the merge stays pending for the next slot.
        Err(aergo_chain::ChainError::Consensus(m)) => {
            tracing::debug!(reason = %m, "slot no longer ours");
        }
        Err(e) => {
            tracing::error!(error = %e, "merge block production failed; retrying next slot");
            wait(
                node,
                Duration::from_millis(node.chain.engine().block_interval_ms()),
            );
        }
    }
}

/// Sleeps until woken or `d` passes, at most one heartbeat period.
fn wait(node: &Node, d: Duration) {
    let d = d.min(Duration::from_millis(1000));
    let (m, c) = &node.wake;
    let mut woke = m.lock();
    if !*woke && !node.shutdown.load(Ordering::SeqCst) {
        c.wait_for(&mut woke, d);
    }
    *woke = false;
}
