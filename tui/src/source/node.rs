//! The node source: polling of chain head, node status, mempool, peers, consensus state and
//! recent blocks with backoff, the new-blocks subscription with reconnects, and on-demand fetches of a block or
//! a transaction. Generic over [`NodeApi`] so it can be tested against a fake node.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Backoff, SourceError, Update};
use crate::model::{
    BlockDetail, BlockRow, ChainView, ConsensusView, Found, MempoolView, NodeView, PeerRow,
    TxDetail,
};

/// Time allowed for one RPC call before it counts as a failure.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Blocks fetched by each poll of the list.
pub const BLOCKS_PER_POLL: u64 = 50;
/// Pending transactions fetched by each poll of the mempool.
pub const MEMPOOL_LIMIT: u64 = 200;

/// What the dashboard needs from the node.
pub trait NodeApi: Send + Sync + 'static {
    /// `chain_info`.
    fn chain_info(&self) -> impl Future<Output = Result<ChainView, SourceError>> + Send;
    /// `node_status`.
    fn node_status(&self) -> impl Future<Output = Result<NodeView, SourceError>> + Send;
    /// The last `n` blocks, newest first.
    fn blocks_last(
        &self,
        n: u64,
    ) -> impl Future<Output = Result<Vec<BlockRow>, SourceError>> + Send;
    /// A block with its transactions.
    fn block(&self, height: u64) -> impl Future<Output = Result<BlockDetail, SourceError>> + Send;
    /// A transaction and, once included, its receipt.
    fn tx_detail(&self, hash: String)
        -> impl Future<Output = Result<TxDetail, SourceError>> + Send;
    /// A block with this hash, else the block holding a transaction with it (or the pending
    /// transaction), else [`Found::Nothing`].
    fn find(&self, hash: String) -> impl Future<Output = Result<Found, SourceError>> + Send;
    /// The merge a block makes (`feat@7`), `None` for an ordinary block. Block summaries do
    /// not say which blocks merge, so the poller asks this of each new block with
    /// transactions.
    fn merge_of(
        &self,
        _height: u64,
    ) -> impl Future<Output = Result<Option<String>, SourceError>> + Send {
        async { Ok(None) }
    }
    /// Pending transactions.
    fn mempool(&self, limit: u64) -> impl Future<Output = Result<MempoolView, SourceError>> + Send;
    /// Connected peers.
    fn peers(&self) -> impl Future<Output = Result<Vec<PeerRow>, SourceError>> + Send;
    /// `consensus_info`: engine, LIB, fork counters and the DPoS schedule.
    fn consensus_info(&self) -> impl Future<Output = Result<ConsensusView, SourceError>> + Send;
    /// Subscribes to new blocks: once live, sets `live` and sends
    /// [`Update::Subscribed`]`(true)`, then an [`Update::NewBlock`] per block; returns when
    /// the subscription ends.
    fn subscribe_blocks(
        &self,
        sink: mpsc::Sender<Update>,
        live: Arc<AtomicBool>,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;
}

async fn timed<T>(f: impl Future<Output = Result<T, SourceError>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.0),
        Err(_) => Err(format!("no answer within {}s", CALL_TIMEOUT.as_secs())),
    }
}

/// Requests the UI makes of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRequest {
    /// Fetch a block.
    Block(u64),
    /// Fetch a transaction and its receipt.
    Tx(String),
    /// Search the chain for a block or transaction hash.
    Search(String),
}

/// Polls the node until the channel closes: every `interval` while healthy, backing off to
/// `max_backoff` while it fails. `ws_live` suppresses block-list polls while the subscription
/// delivers blocks (the list is still refreshed every tenth poll to fill gaps).
pub async fn poll<N: NodeApi>(
    api: Arc<N>,
    sink: mpsc::Sender<Update>,
    ws_live: Arc<AtomicBool>,
    interval: Duration,
    max_backoff: Duration,
) {
    let mut backoff = Backoff::new(interval, max_backoff);
    let mut last_height = None;
    let mut n: u64 = 0;
    loop {
        n += 1;
        let chain = timed(api.chain_info()).await;
        let wait = match chain {
            Ok(c) => {
                let height = c.height;
                if sink.send(Update::Chain(Ok(c))).await.is_err() {
                    return;
                }
                let (status, mempool, peers, consensus) = tokio::join!(
                    timed(api.node_status()),
                    timed(api.mempool(MEMPOOL_LIMIT)),
                    timed(api.peers()),
                    timed(api.consensus_info()),
                );
                let need_blocks = last_height != Some(height)
                    && (!ws_live.load(Ordering::Relaxed)
                        || last_height.is_none()
                        || n.is_multiple_of(10));
                let mut updates = vec![
                    Update::Node(status),
                    Update::Mempool(mempool),
                    Update::Peers(peers),
                    Update::Consensus(consensus),
                ];
                if need_blocks {
                    // Only what is new since the last poll (the list keeps the rest).
                    let n = match last_height {
                        Some(l) if height > l => (height - l).min(BLOCKS_PER_POLL),
                        _ => BLOCKS_PER_POLL,
                    };
                    let blocks = timed(api.blocks_last(n)).await;
                    if blocks.is_ok() {
                        last_height = Some(height);
                    }
                    // Which of the new blocks merge (one `block` call per block with
                    // transactions; an error only leaves the mark out).
                    let with_txs: Vec<u64> = blocks
                        .as_ref()
                        .map(|b| {
                            b.iter()
                                .filter(|r| r.tx_count > 0)
                                .map(|r| r.height)
                                .collect()
                        })
                        .unwrap_or_default();
                    updates.push(Update::Blocks(blocks));
                    for h in with_txs {
                        if let Ok(Some(label)) = timed(api.merge_of(h)).await {
                            updates.push(Update::Merge(h, label));
                        }
                    }
                }
                for u in updates {
                    if sink.send(u).await.is_err() {
                        return;
                    }
                }
                backoff.ok()
            }
            Err(e) => {
                last_height = None;
                for u in [
                    Update::Chain(Err(e.clone())),
                    Update::Node(Err(e.clone())),
                    Update::Mempool(Err(e.clone())),
                    Update::Peers(Err(e.clone())),
                    Update::Consensus(Err(e.clone())),
                    Update::Blocks(Err(e)),
                ] {
                    if sink.send(u).await.is_err() {
                        return;
                    }
                }
                backoff.fail()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Keeps the new-blocks subscription open, reconnecting with backoff.
pub async fn subscribe<N: NodeApi>(
    api: Arc<N>,
    sink: mpsc::Sender<Update>,
    ws_live: Arc<AtomicBool>,
    max_backoff: Duration,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), max_backoff);
    loop {
        let r = api.subscribe_blocks(sink.clone(), ws_live.clone()).await;
        ws_live.store(false, Ordering::Relaxed);
        if sink.send(Update::Subscribed(false)).await.is_err() {
            return;
        }
        let wait = match r {
            Ok(()) => backoff.ok(),
            Err(_) => backoff.fail(),
        };
        tokio::time::sleep(wait).await;
    }
}

/// Serves [`NodeRequest`]s until either channel closes.
pub async fn serve<N: NodeApi>(
    api: Arc<N>,
    mut requests: mpsc::Receiver<NodeRequest>,
    sink: mpsc::Sender<Update>,
) {
    while let Some(r) = requests.recv().await {
        let u = match r {
            NodeRequest::Block(h) => Update::Block(h, timed(api.block(h)).await),
            NodeRequest::Tx(hash) => {
                let d = timed(api.tx_detail(hash.clone())).await;
                Update::Tx(hash, d)
            }
            NodeRequest::Search(hash) => {
                let r = timed(api.find(hash.clone())).await;
                Update::Found(hash, r)
            }
        };
        if sink.send(u).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// A node that is down until `up` is set, with a height that grows per call.
    struct Fake {
        up: AtomicBool,
        height: AtomicU64,
    }

    impl NodeApi for Fake {
        async fn chain_info(&self) -> Result<ChainView, SourceError> {
            if !self.up.load(Ordering::SeqCst) {
                return Err(SourceError("connection refused".into()));
            }
            Ok(ChainView {
                height: self.height.fetch_add(1, Ordering::SeqCst),
                ..Default::default()
            })
        }
        async fn node_status(&self) -> Result<NodeView, SourceError> {
            Ok(NodeView::default())
        }
        async fn blocks_last(&self, n: u64) -> Result<Vec<BlockRow>, SourceError> {
            let h = self.height.load(Ordering::SeqCst);
            Ok((h.saturating_sub(n)..h)
                .rev()
                .map(|height| BlockRow {
                    height,
                    ..Default::default()
                })
                .collect())
        }
        async fn block(&self, height: u64) -> Result<BlockDetail, SourceError> {
            Err(SourceError(format!("block {height} not found")))
        }
        async fn tx_detail(&self, hash: String) -> Result<TxDetail, SourceError> {
            Err(SourceError(format!("tx {hash} not found")))
        }
        async fn find(&self, _hash: String) -> Result<Found, SourceError> {
            Ok(Found::Nothing)
        }
        async fn mempool(&self, _limit: u64) -> Result<MempoolView, SourceError> {
            Ok(MempoolView::default())
        }
        async fn peers(&self) -> Result<Vec<PeerRow>, SourceError> {
            Ok(vec![PeerRow {
                id: "12D3KooWpeer".into(),
                ..Default::default()
            }])
        }
        async fn consensus_info(&self) -> Result<ConsensusView, SourceError> {
            Err(SourceError("unknown method `consensus_info`".into()))
        }
        async fn subscribe_blocks(
            &self,
            _sink: mpsc::Sender<Update>,
            _live: Arc<AtomicBool>,
        ) -> Result<(), SourceError> {
            Err(SourceError("no websocket".into()))
        }
    }

    #[tokio::test]
    async fn poller_reports_outage_then_recovers() {
        let api = Arc::new(Fake {
            up: AtomicBool::new(false),
            height: AtomicU64::new(100),
        });
        let (tx, mut rx) = mpsc::channel(64);
        let live = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(poll(
            api.clone(),
            tx,
            live,
            Duration::from_millis(5),
            Duration::from_millis(20),
        ));
        let mut app = crate::app::App::new(
            crate::theme::Theme::new(crate::theme::ThemeKind::Ansi16),
            false,
            Default::default(),
            100,
        );
        // First: failures.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while app.model.chain.down.is_none() || app.model.blocks.down.is_none() {
            let u = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap()
                .unwrap();
            app.apply(u);
        }
        assert_eq!(app.model.chain.down.as_ref().unwrap().since_ms, 100);
        assert!(app.model.node.down.is_some());
        api.up.store(true, Ordering::SeqCst);
        app.now_ms = 200;
        while app.model.blocks.get().is_none() || app.model.chain.down.is_some() {
            let u = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap()
                .unwrap();
            app.apply(u);
        }
        assert!(app.model.chain.get().unwrap().height >= 100);
        assert_eq!(app.model.peers.get().unwrap()[0].id, "12D3KooWpeer");
        assert!(
            app.model
                .consensus
                .down
                .as_ref()
                .unwrap()
                .error
                .contains("consensus_info"),
            "a node without consensus_info shows the error, not a hang"
        );
        assert_eq!(
            app.model.blocks.get().unwrap().len(),
            usize::try_from(BLOCKS_PER_POLL).unwrap()
        );
        task.abort();
    }

    #[tokio::test]
    async fn requests_answer_with_errors_as_text() {
        let api = Arc::new(Fake {
            up: AtomicBool::new(true),
            height: AtomicU64::new(1),
        });
        let (req_tx, req_rx) = mpsc::channel(4);
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(serve(api, req_rx, tx));
        req_tx.send(NodeRequest::Block(7)).await.unwrap();
        match rx.recv().await.unwrap() {
            Update::Block(7, Err(e)) => assert!(e.contains("not found")),
            other => panic!("unexpected {other:?}"),
        }
        req_tx
            .send(NodeRequest::Search("ab".repeat(32)))
            .await
            .unwrap();
        match rx.recv().await.unwrap() {
            Update::Found(h, Ok(Found::Nothing)) => assert_eq!(h, "ab".repeat(32)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
