//! The node's processing stages and what each is doing, for `/metrics`, `pipeline_status`
//! and the dashboard.
//!
//! A transaction or block passes through seven stages: ingest (decode and stateless rules),
//! signature checks (batched on the workers, for clients' transactions and peers' blocks),
//! admission (mempool, and pre-execution on a pre-confirming producer), assembly (the
//! producer builds a block), execution (a peer's block validated along its DTT), commit
//! (the block log and RocksDB) and publication (gossip and subscribers). Each [`Stage`]
//! counts its runs, the items they handled (transactions, or blocks for commit and
//! publication), the time spent in them, and how many are in it right now. Every queue in
//! front of a stage is bounded where it is built (the mempool's caps, the RPC connection and
//! request caps, the gossip queues, the import channel); the owner reports its depth with
//! [`Stage::set_queue`].
//!
//! One registry per process ([`STAGES`]): the root chain, its repositories and branches add
//! to the same figures. Counters only grow; a reader derives rates and mean latencies from
//! two readings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One stage's counters.
pub struct Stage {
    /// Short name (`ingest`, `verify`, …), the label on `/metrics`.
    pub name: &'static str,
    runs: AtomicU64,
    items: AtomicU64,
    nanos: AtomicU64,
    inside: AtomicU64,
    queue: AtomicU64,
}

/// A reading of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageReading {
    /// The stage's name.
    pub name: &'static str,
    /// Runs since start.
    pub runs: u64,
    /// Items handled since start.
    pub items: u64,
    /// Time spent in the stage since start (µs, summed over concurrent runs).
    pub busy_us: u64,
    /// Runs in progress now.
    pub inside: u64,
    /// Items waiting in front of the stage now (its bounded queue), as its owner last
    /// reported.
    pub queue: u64,
}

impl Stage {
    const fn new(name: &'static str) -> Self {
        Stage {
            name,
            runs: AtomicU64::new(0),
            items: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            inside: AtomicU64::new(0),
            queue: AtomicU64::new(0),
        }
    }

    /// Starts a run; it is counted when the returned guard is finished or dropped.
    pub fn start(&self) -> Run<'_> {
        self.inside.fetch_add(1, Ordering::Relaxed);
        Run {
            stage: self,
            started: Instant::now(),
            items: 1,
        }
    }

    /// Reports the depth of the queue in front of the stage.
    pub fn set_queue(&self, n: u64) {
        self.queue.store(n, Ordering::Relaxed);
    }

    /// The stage's counters now.
    pub fn read(&self) -> StageReading {
        StageReading {
            name: self.name,
            runs: self.runs.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            busy_us: self.nanos.load(Ordering::Relaxed) / 1000,
            inside: self.inside.load(Ordering::Relaxed),
            queue: self.queue.load(Ordering::Relaxed),
        }
    }
}

/// A run of a stage in progress.
pub struct Run<'a> {
    stage: &'a Stage,
    started: Instant,
    items: u64,
}

impl Run<'_> {
    /// Sets how many items the run handled (default 1).
    pub fn items(mut self, n: usize) -> Self {
        self.items = u64::try_from(n).unwrap_or(u64::MAX);
        self
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        let s = self.stage;
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        s.runs.fetch_add(1, Ordering::Relaxed);
        s.items.fetch_add(self.items, Ordering::Relaxed);
        s.nanos.fetch_add(ns, Ordering::Relaxed);
        s.inside.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The stages, in pipeline order.
pub struct Stages {
    /// Decode and stateless rules of submitted and gossiped transactions.
    pub ingest: Stage,
    /// Signature checks: clients' transactions (batched) and peers' blocks (on the
    /// workers).
    pub verify: Stage,
    /// Mempool admission (and pre-execution on a pre-confirming producer).
    pub admit: Stage,
    /// Block assembly by this node's producer (execution included).
    pub assemble: Stage,
    /// Execution of a peer's block (along its DTT on the workers).
    pub execute: Stage,
    /// Writing a block: block log, state and indexes.
    pub commit: Stage,
    /// Publication: gossip of produced blocks, subscribers' notifications.
    pub publish: Stage,
}

impl Stages {
    /// Every stage, in pipeline order.
    pub fn all(&self) -> [&Stage; 7] {
        [
            &self.ingest,
            &self.verify,
            &self.admit,
            &self.assemble,
            &self.execute,
            &self.commit,
            &self.publish,
        ]
    }
}

/// The process's stages.
pub static STAGES: Stages = Stages {
    ingest: Stage::new("ingest"),
    verify: Stage::new("verify"),
    admit: Stage::new("admit"),
    assemble: Stage::new("assemble"),
    execute: Stage::new("execute"),
    commit: Stage::new("commit"),
    publish: Stage::new("publish"),
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_count_items_time_and_occupancy() {
        let s = Stage::new("t");
        let a = s.start();
        let b = s.start().items(40);
        assert_eq!(s.read().inside, 2);
        std::thread::sleep(std::time::Duration::from_millis(2));
        drop(b);
        drop(a);
        let r = s.read();
        assert_eq!((r.runs, r.items, r.inside), (2, 41, 0));
        assert!(r.busy_us >= 4000, "{r:?}");
        s.set_queue(7);
        assert_eq!(s.read().queue, 7);
        assert_eq!(STAGES.all().map(|s| s.name)[4], "execute");
    }
}
