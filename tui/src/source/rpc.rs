//! [`NodeApi`] on the node's JSON-RPC. Placeholder until the `aergo-rpc` client lands: every
//! call fails with a clear message, which the UI shows as "node unreachable".

use tokio::sync::mpsc;

use super::node::NodeApi;
use super::{SourceError, Update};
use crate::model::{BlockDetail, BlockRow, ChainView, MempoolView, NodeView, TxDetail};

/// The node at an RPC URL.
#[derive(Debug, Clone)]
pub struct RpcNode {
    url: String,
}

impl RpcNode {
    /// A node at `url` (e.g. `http://127.0.0.1:7845`).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
        }
    }

    fn unwired<T>(&self) -> Result<T, SourceError> {
        Err(SourceError(format!(
            "{}: RPC client not wired yet",
            self.url
        )))
    }
}

impl NodeApi for RpcNode {
    async fn chain_info(&self) -> Result<ChainView, SourceError> {
        self.unwired()
    }
    async fn node_status(&self) -> Result<NodeView, SourceError> {
        self.unwired()
    }
    async fn blocks_last(&self, _n: u64) -> Result<Vec<BlockRow>, SourceError> {
        self.unwired()
    }
    async fn block(&self, _height: u64) -> Result<BlockDetail, SourceError> {
        self.unwired()
    }
    async fn tx_detail(&self, _hash: String) -> Result<TxDetail, SourceError> {
        self.unwired()
    }
    async fn mempool(&self, _limit: u64) -> Result<MempoolView, SourceError> {
        self.unwired()
    }
    async fn subscribe_blocks(&self, _sink: mpsc::Sender<Update>) -> Result<(), SourceError> {
        self.unwired()
    }
}
