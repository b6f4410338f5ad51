//! Background data sources. Each runs in its own task or thread, never blocks the UI, and
//! reports through one channel of [`Update`]s: values, or errors that the UI turns into
//! "unreachable since T" until the source answers again. Failing sources are retried with
//! exponential [`Backoff`].
//!
//! - [`node`]: the node over JSON-RPC ([`node::NodeApi`], implemented on `aergo-rpc` in
//!   [`rpc`]).
//! - [`init`]: init's services and logs over the control protocol.
//! - [`fs`]: AergoFS `GET /status`.
//! - [`repos`]: the Repositories list (`repo_list`, `dd_info`, the root's `chain_info`).
//! - [`resources`]: local procfs sampling.

pub mod branches;
pub mod fs;
pub mod init;
pub mod node;
pub mod repos;
pub mod resources;
pub mod rpc;

use std::time::Duration;

use aergo_os::control::LogLine;
use aergo_os::sample::Sample;

use crate::model::{
    BlockDetail, BlockRow, BranchRow, ChainView, ConsensusView, Found, InitView, MempoolView,
    NodeView, PeerRow, RepoRow, StorageView, TxDetail,
};

/// Most log lines kept for the Logs screen.
pub const MAX_LOG_LINES: usize = 2000;

/// A source's failure, as text for the UI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl SourceError {
    /// From anything displayable.
    pub fn new(e: impl std::fmt::Display) -> Self {
        SourceError(e.to_string())
    }
}

/// Result of one fetch, errors as text.
pub type Fetched<T> = Result<T, String>;

/// One message from a source to the UI.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // short-lived messages; boxing buys nothing
pub enum Update {
    /// `chain_info`.
    Chain(Fetched<ChainView>),
    /// `node_status`.
    Node(Fetched<NodeView>),
    /// Latest blocks (newest first).
    Blocks(Fetched<Vec<BlockRow>>),
    /// A block from the new-blocks subscription.
    NewBlock(BlockRow),
    /// The subscription went live (true) or dropped (false).
    Subscribed(bool),
    /// `mempool`.
    Mempool(Fetched<MempoolView>),
    /// `peers`.
    Peers(Fetched<Vec<PeerRow>>),
    /// `consensus_info`.
    Consensus(Fetched<ConsensusView>),
    /// A requested block.
    Block(u64, Fetched<BlockDetail>),
    /// A requested transaction with its receipt.
    Tx(String, Fetched<TxDetail>),
    /// The answer to a search of the chain for a hash (block or transaction).
    Found(String, Fetched<Found>),
    /// Init status.
    Init(Fetched<InitView>),
    /// The log backlog of a service (replaces what is shown).
    Logs(String, Fetched<Vec<LogLine>>),
    /// One new log line.
    LogLine(LogLine),
    /// AergoFS status.
    Storage(Fetched<StorageView>),
    /// A resource sample.
    Resources(Fetched<Sample>),
    /// A one-line message for the status bar.
    Flash(String),
    /// The Repositories list (root first).
    Repos(Fetched<Vec<RepoRow>>),
    /// A node update read from repository `repo` (`None`: the root chain); applied only
    /// while that repository is still the selected one, so answers that were in flight when
    /// the operator switched ledgers never mix into the new one.
    ForRepo(Option<String>, Box<Update>),
    /// Block `height` is a merge block: its label (`feat@7`).
    Merge(u64, String),
    /// The selected ledger's branches (`main` first, as a tree).
    Branches(Fetched<Vec<BranchRow>>),
    /// A node update read from branch `branch` of the ledger (`None`: `main`); applied only
    /// while that branch is still the selected one (inside [`Update::ForRepo`]).
    ForBranch(Option<String>, Box<Update>),
}

/// Exponential backoff between retries of a failing source.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    cur: Duration,
}

impl Backoff {
    /// Starts at `base` (the healthy polling interval) and doubles up to `max` on failure.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            cur: base,
        }
    }
    /// The wait after a success.
    pub fn ok(&mut self) -> Duration {
        self.cur = self.base;
        self.base
    }
    /// The wait after a failure.
    pub fn fail(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }
}

/// Runs `fetch` until the channel closes: each result goes to `sink` as `wrap(result)`; the
/// next call comes `interval` after a success and backs off to `max` while it fails.
pub async fn poll_loop<T, Fut>(
    sink: &tokio::sync::mpsc::Sender<Update>,
    interval: Duration,
    max: Duration,
    mut fetch: impl FnMut() -> Fut,
    wrap: impl Fn(Result<T, String>) -> Update,
) where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut backoff = Backoff::new(interval, max);
    loop {
        let r = fetch().await;
        let wait = if r.is_ok() {
            backoff.ok()
        } else {
            backoff.fail()
        };
        if sink.send(wrap(r)).await.is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(b.fail(), Duration::from_secs(1));
        assert_eq!(b.fail(), Duration::from_secs(2));
        assert_eq!(b.fail(), Duration::from_secs(4));
        assert_eq!(b.fail(), Duration::from_secs(5));
        assert_eq!(b.ok(), Duration::from_secs(1));
        assert_eq!(b.fail(), Duration::from_secs(1));
    }
}
