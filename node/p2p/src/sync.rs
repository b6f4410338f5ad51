//! Parallel block-range download for catching up with the network.
//!
//! [`fetch_range`] splits `from..=to` into chunks, asks several peers at once (each chunk goes
//! to a peer whose best height covers it, round robin), and hands the blocks to the caller
//! strictly in height order, chunk by chunk, so the node can validate and apply them as they
//! come. A chunk that fails (timeout, refusal, a bad answer — bad answers are already
//! penalised by [`P2pHandle::request_blocks`]) is retried with another peer; a short answer
//! (the peer's tip, its size limit) is completed by asking for the rest. A peer that fails
//! `MAX_FAILURES` times is no longer asked. The function ends when everything up to `to`
//! was handed over, or with an error when no usable peer is left.

use std::collections::{BTreeMap, HashMap};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::{P2pError, P2pHandle, PeerId};

/// Failures after which a peer is dropped from one download.
pub const MAX_FAILURES: u32 = 3;

/// How a download is run.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// Blocks per request.
    pub chunk: u64,
    /// Requests in flight at once.
    pub parallel: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            chunk: 128,
            parallel: 8,
        }
    }
}

/// Downloads blocks `from..=to` from `peers` (`(peer, best height)`), sending them to `out`
/// in ascending height order as `(first height, blocks)` batches. Returns the number of
/// blocks delivered. Stops early without error when `out` is closed.
pub async fn fetch_range(
    handle: &P2pHandle,
    from: u64,
    to: u64,
    peers: &[(PeerId, u64)],
    opts: SyncOptions,
    out: mpsc::Sender<(u64, Vec<Vec<u8>>)>,
) -> Result<u64, P2pError> {
    fetch_range_in(handle, None, from, to, peers, opts, out).await
}

/// [`fetch_range`] of a repository's chain (`Some(chain id)`) or the root (`None`).
pub async fn fetch_range_in(
    handle: &P2pHandle,
    chain: Option<[u8; 32]>,
    from: u64,
    to: u64,
    peers: &[(PeerId, u64)],
    opts: SyncOptions,
    out: mpsc::Sender<(u64, Vec<Vec<u8>>)>,
) -> Result<u64, P2pError> {
    let chunk = opts.chunk.max(1);
    let parallel = opts.parallel.max(1);
    let mut best: HashMap<PeerId, u64> = peers.iter().copied().collect();
    let mut failures: HashMap<PeerId, u32> = HashMap::new();
    // Chunks still to ask for: start → end (inclusive).
    let mut todo: BTreeMap<u64, u64> = BTreeMap::new();
    let mut start = from;
    while start <= to {
        let end = start.saturating_add(chunk - 1).min(to);
        todo.insert(start, end);
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    let mut ready: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    let mut next = from;
    let mut delivered = 0u64;
    let mut turn = 0usize;
    let mut in_flight = FuturesUnordered::new();

    loop {
        // Hand over everything contiguous.
        while let Some(blocks) = ready.remove(&next) {
            let n = blocks.len() as u64;
            if out.send((next, blocks)).await.is_err() {
                return Ok(delivered);
            }
            delivered += n;
            next += n;
        }
        if next > to {
            return Ok(delivered);
        }
        // Fill the pipeline, lowest chunks first.
        while in_flight.len() < parallel {
            let Some((&s, &e)) = todo.iter().next() else {
                break;
            };
            let mut candidates: Vec<PeerId> = best
                .iter()
                .filter(|(p, h)| **h >= s && failures.get(*p).copied().unwrap_or(0) < MAX_FAILURES)
                .map(|(p, _)| *p)
                .collect();
            if candidates.is_empty() {
                if in_flight.is_empty() {
                    return Err(P2pError::Request {
                        peer: handle.local_peer_id(),
                        message: format!("no usable peer has block {s}"),
                    });
                }
                break;
            }
            candidates.sort_by_key(|p| p.to_bytes());
            let peer = candidates[turn % candidates.len()];
            turn = turn.wrapping_add(1);
            todo.remove(&s);
            let h = handle.clone();
            in_flight
                .push(async move { (peer, s, e, h.request_blocks_in(chain, peer, s, e).await) });
        }
        let Some((peer, s, e, result)) = in_flight.next().await else {
            continue;
        };
        match result {
            Ok(blocks) if !blocks.is_empty() => {
                let n = blocks.len() as u64;
                if s + n - 1 < e {
                    // Short answer: ask for the rest, and remember the peer's real tip.
                    todo.insert(s + n, e);
                    best.insert(peer, s + n - 1);
                }
                ready.insert(s, blocks);
            }
            Ok(_) => {
                // Nothing at `s`: the peer is behind what it claimed.
                best.insert(peer, s.saturating_sub(1));
                todo.insert(s, e);
            }
            Err(err) => {
                tracing::debug!(%peer, %err, from = s, to = e, "range request failed");
                *failures.entry(peer).or_insert(0) += 1;
                todo.insert(s, e);
            }
        }
    }
}
