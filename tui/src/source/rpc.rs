//! [`NodeApi`] on the node's JSON-RPC through the `aergo-rpc` client: wire types are
//! converted into the dashboard's view models here and nowhere else.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aergo_rpc::{BlockJson, BlockSummary, ChainInfo, MempoolJson, NodeStatus, RpcClient};
use aergo_rpc::{PeerJson, ReceiptJson, RpcError, TxInfo};
use serde_json::Value;
use tokio::sync::mpsc;

use super::node::NodeApi;
use super::{SourceError, Update};
use crate::model::{
    BlockDetail, BlockRow, BpView, ChainView, ConsensusView, DposView, EventView, Found, MempoolTx,
    MempoolView, MergeView, NodeView, PeerRow, PipelineView, PreconfView, ReceiptView, StageView,
    TxDetail, TxRow, TxView, UpcomingSlot,
};

/// The node at an RPC URL.
pub struct RpcNode {
    url: String,
    client: Result<RpcClient, String>,
}

impl RpcNode {
    /// A node at `url` (e.g. `http://127.0.0.1:7845`); each call times out after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        let url = url.trim_end_matches('/').to_string();
        let client = RpcClient::new(&url, timeout).map_err(|e| e.to_string());
        Self { url, client }
    }

    /// The same node, every call reading repository `repo` (`None`: the root chain).
    pub fn with_repo(mut self, repo: Option<String>) -> Self {
        self.client = self.client.map(|c| c.with_repo(repo));
        self
    }

    /// The same node, every call reading branch `branch` of its ledger (`None`: `main`).
    pub fn with_branch(mut self, branch: Option<String>) -> Self {
        self.client = self.client.map(|c| c.with_branch(branch));
        self
    }

    fn client(&self) -> Result<&RpcClient, SourceError> {
        self.client
            .as_ref()
            .map_err(|e| SourceError(format!("{}: {e}", self.url)))
    }
}

/// An RPC error as the dashboard shows it: a private repository's refusal of an unsigned
/// read becomes [`PRIVATE_MSG`](crate::model::PRIVATE_MSG).
pub fn error_text(e: RpcError) -> String {
    if e.code() == Some(aergo_rpc::types::codes::UNAUTHORIZED) {
        crate::model::PRIVATE_MSG.to_string()
    } else {
        e.to_string()
    }
}

fn err(e: RpcError) -> SourceError {
    SourceError(error_text(e))
}

/// `ChainInfo` → view.
pub fn chain_view(c: ChainInfo) -> ChainView {
    ChainView {
        chain_id: c.chain_id.to_string(),
        chain_name: c.chain_name,
        height: c.height,
        best_hash: c.best_hash.to_string(),
        finalized_height: c.finalized_height,
        consensus: c.consensus,
        block_interval_ms: c.block_interval_ms,
        genesis_time_ms: c.genesis_time_ms,
        best_time_ms: c.best_time_ms,
    }
}

/// `NodeStatus` → view.
pub fn node_view(n: NodeStatus) -> NodeView {
    NodeView {
        version: n.version,
        node_address: n.node_address,
        producer: n.producer,
        peers: n.peers.into(),
        mempool_size: n.mempool_size,
        mempool_bytes: n.mempool_bytes,
        syncing: n.syncing,
        sync_current: n.sync_current,
        sync_target: n.sync_target,
        uptime_secs: n.uptime_secs,
        io_backend: n.io_backend,
        disk_low: n.disk_low,
    }
}

/// `BlockSummary` → row.
pub fn block_row(b: BlockSummary) -> BlockRow {
    BlockRow {
        hash: b.hash.to_string(),
        height: b.height,
        timestamp_ms: b.timestamp_ms,
        producer: b.producer,
        tx_count: b.tx_count.into(),
        size: b.size.into(),
        gas_used: b.gas_used,
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One entry of a block's `txs`: a hash, or a `Tx` object when the block was fetched full.
pub fn tx_row(v: &Value) -> TxRow {
    match v {
        Value::String(h) => TxRow {
            hash: h.clone(),
            ..Default::default()
        },
        Value::Object(o) => TxRow {
            hash: text(o.get("hash")),
            kind: text(o.get("kind")),
            from: text(o.get("from")),
            to: text(o.get("to")),
            amount: text(o.get("amount")),
            nonce: o.get("nonce").and_then(Value::as_u64).unwrap_or(0),
        },
        other => TxRow {
            hash: other.to_string(),
            ..Default::default()
        },
    }
}

/// `BlockJson` → detail.
pub fn block_detail(b: BlockJson) -> BlockDetail {
    BlockDetail {
        txs: b.txs.iter().map(tx_row).collect(),
        summary: block_row(b.summary),
        parent_hash: b.parent_hash.to_string(),
        tx_root: b.tx_root.to_string(),
        receipts_root: b.receipts_root.to_string(),
        state_root: b.state_root.to_string(),
        consensus: b.consensus,
        signature: b.signature,
        merge: b.merge.map(|m| MergeView {
            source: m.source.unwrap_or_default(),
            source_id: m.source_id.to_string(),
            source_tip: m.source_tip.to_string(),
            source_height: m.source_height,
            strategy: m.strategy,
            merged: m.merged.iter().map(ToString::to_string).collect(),
            excluded: m
                .excluded
                .into_iter()
                .map(|e| (e.hash.to_string(), e.reason, e.detail))
                .collect(),
        }),
    }
}

/// `TxInfo` → view.
pub fn tx_view(t: TxInfo) -> TxView {
    let tx = t.tx;
    TxView {
        hash: tx.hash.to_string(),
        kind: tx.kind,
        from: tx.from,
        to: tx.to.unwrap_or_default(),
        nonce: tx.nonce,
        amount: tx.amount.to_string(),
        payload: tx.payload,
        gas_limit: tx.gas_limit,
        gas_price: tx.gas_price.to_string(),
        chain_id: tx.chain_id.to_string(),
        signature: tx.signature,
        size: tx.size.into(),
        status: t.status,
        block_hash: t.block_hash.map(|h| h.to_string()),
        block_height: t.block_height,
        index: t.index.map(u64::from),
    }
}

/// `ReceiptJson` → view.
pub fn receipt_view(r: ReceiptJson) -> ReceiptView {
    ReceiptView {
        tx_hash: r.tx_hash.to_string(),
        block_hash: r.block_hash.to_string(),
        block_height: r.block_height,
        index: r.index.into(),
        status: r.status,
        error: r.error,
        gas_used: r.gas_used,
        fee: r.fee.to_string(),
        result: r.result,
        events: r
            .events
            .into_iter()
            .map(|e| EventView {
                name: e.name,
                data: e.data,
            })
            .collect(),
    }
}

/// `MempoolJson` → view.
pub fn mempool_view(m: MempoolJson) -> MempoolView {
    MempoolView {
        count: m.count,
        bytes: m.bytes,
        max_txs: m.max_txs,
        max_bytes: m.max_bytes,
        txs: m
            .txs
            .into_iter()
            .map(|t| MempoolTx {
                hash: t.hash.to_string(),
                from: t.from,
                nonce: t.nonce,
                gas_price: t.gas_price.to_string(),
                fee: t.fee.to_string(),
                age_ms: t.age_ms,
            })
            .collect(),
        preconf: None,
        pipeline: None,
    }
}

/// `PipelineStatusJson` read at `at_ms` → view.
pub fn pipeline_view(p: aergo_rpc::types::PipelineStatusJson, at_ms: u64) -> PipelineView {
    PipelineView {
        at_ms,
        stages: p
            .stages
            .into_iter()
            .map(|s| StageView {
                name: s.name,
                runs: s.runs,
                items: s.items,
                busy_us: s.busy_us,
                inside: s.inside,
                queue: s.queue,
            })
            .collect(),
        // A width is at most a block's transaction count: × 1000 stays far inside u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        dtt_width_milli: (p.dtt_width.max(0.0) * 1000.0).round() as u64,
        exec_workers: p.exec_workers,
    }
}

/// `PreconfStatusJson` → view.
pub fn preconf_view(p: aergo_rpc::PreconfStatusJson) -> PreconfView {
    PreconfView {
        enabled: p.enabled,
        pending_height: p.pending_height,
        sequence_length: p.sequence_length,
        last_minute: p.last_minute,
        p50_us: p.p50_us,
        p99_us: p.p99_us,
        broken: p.broken,
        evidence: p.evidence,
    }
}

/// `PeerJson` → row.
pub fn peer_row(p: PeerJson) -> PeerRow {
    PeerRow {
        id: p.id,
        address: p.address,
        direction: p.direction,
        best_height: p.best_height,
        latency_ms: p.latency_ms,
        node: p.node.filter(|n| !n.is_empty()),
    }
}

/// A non-negative integer field (also accepted as a decimal string).
fn uint(o: &Value, key: &str) -> Option<u64> {
    let v = o.get(key)?;
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// A signed integer field (also accepted as a decimal string).
fn int(o: &Value, key: &str) -> Option<i64> {
    let v = o.get(key)?;
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// A string field; `null`, missing and non-strings are `None`.
fn string(o: &Value, key: &str) -> Option<String> {
    o.get(key)?.as_str().map(str::to_string)
}

/// The objects of an array field (other entries skipped).
fn objects<'a>(o: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    o.get(key)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|v| v.is_object())
}

fn bp_view(v: &Value) -> BpView {
    BpView {
        address: string(v, "address").unwrap_or_default(),
        score: int(v, "score"),
        standing: string(v, "standing"),
        missed_slots: int(v, "missed_slots"),
    }
}

/// `consensus_info` → view. Lenient: a missing or malformed field becomes `None` (or is left
/// out of a list); `dpos` is kept only when it is an object.
pub fn consensus_view(v: &Value) -> ConsensusView {
    let dpos = v.get("dpos").filter(|d| d.is_object()).map(|d| DposView {
        slot: uint(d, "slot"),
        round: uint(d, "round"),
        round_slots: uint(d, "round_slots"),
        bp_count: uint(d, "bp_count"),
        active: objects(d, "active").map(bp_view).collect(),
        probation: objects(d, "probation").map(bp_view).collect(),
        upcoming: objects(d, "upcoming")
            .map(|u| UpcomingSlot {
                slot: uint(u, "slot"),
                producer: string(u, "producer").unwrap_or_default(),
            })
            .collect(),
        me_scheduled: d.get("me_scheduled").and_then(Value::as_bool),
    });
    ConsensusView {
        engine: string(v, "engine"),
        block_interval_ms: uint(v, "block_interval_ms"),
        height: uint(v, "height"),
        lib_height: uint(v, "lib_height"),
        lib_hash: string(v, "lib_hash"),
        side_blocks: uint(v, "side_blocks"),
        reorgs: uint(v, "reorgs"),
        rejected_blocks: uint(v, "rejected_blocks"),
        synced_blocks: uint(v, "synced_blocks"),
        gossip_blocks: uint(v, "gossip_blocks"),
        peer_id: string(v, "peer_id"),
        listen_addrs: v
            .get("listen_addrs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        dpos,
        poa_producers: v
            .get("poa")
            .and_then(|p| p.get("producers"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Governance's `bp_count` (`dpos_governance`, the figure `aergo gov` shows) in place of the
/// one `consensus_info` reports, which is the genesis value and stays there after a
/// governance vote changes it ("5 of 4 active"). `None` (the governance call failed) makes
/// the count unknown rather than possibly wrong. Nothing changes on a chain without DPoS.
pub fn with_governance(c: &mut ConsensusView, gov_bp_count: Option<u64>) {
    if let Some(d) = c.dpos.as_mut() {
        d.bp_count = gov_bp_count;
    }
}

impl NodeApi for RpcNode {
    async fn chain_info(&self) -> Result<ChainView, SourceError> {
        self.client()?
            .chain_info()
            .await
            .map(chain_view)
            .map_err(err)
    }
    async fn node_status(&self) -> Result<NodeView, SourceError> {
        self.client()?
            .node_status()
            .await
            .map(node_view)
            .map_err(err)
    }
    async fn blocks_last(&self, n: u64) -> Result<Vec<BlockRow>, SourceError> {
        let v = self.client()?.blocks_last(n).await.map_err(err)?;
        Ok(v.into_iter().map(block_row).collect())
    }
    async fn block(&self, height: u64) -> Result<BlockDetail, SourceError> {
        self.client()?
            .block_by_height(height, true)
            .await
            .map(block_detail)
            .map_err(err)
    }
    async fn merge_of(&self, height: u64) -> Result<Option<String>, SourceError> {
        let b = self
            .client()?
            .block_by_height(height, false)
            .await
            .map_err(err)?;
        Ok(b.merge
            .map(|m| format!("{}@{}", m.source.as_deref().unwrap_or("?"), m.source_height)))
    }
    async fn tx_detail(&self, hash: String) -> Result<TxDetail, SourceError> {
        let c = self.client()?;
        // The hash type comes from the client's signature (aergo-rpc does not re-export it).
        let h = match hash.parse() {
            Ok(h) => h,
            Err(e) => return Err(SourceError(format!("bad hash {hash}: {e}"))),
        };
        let info = c.tx(&h).await.map_err(err)?;
        let included = info.status == "included";
        let tx = tx_view(info);
        let receipt = if included {
            match c.receipt(&h).await {
                Ok(r) => Some(receipt_view(r)),
                Err(e) if e.code() == Some(aergo_rpc::codes::NOT_FOUND) => None,
                Err(e) => return Err(err(e)),
            }
        } else {
            None
        };
        Ok(TxDetail { tx, receipt })
    }
    async fn find(&self, hash: String) -> Result<Found, SourceError> {
        let c = self.client()?;
        let h = match hash.parse() {
            Ok(h) => h,
            Err(e) => return Err(SourceError(format!("bad hash {hash}: {e}"))),
        };
        let not_found = |e: &RpcError| e.code() == Some(aergo_rpc::codes::NOT_FOUND);
        match c.block_by_hash(&h, true).await {
            Ok(b) => return Ok(Found::Block(block_detail(b))),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(err(e)),
        }
        let info = match c.tx(&h).await {
            Ok(info) => info,
            Err(e) if not_found(&e) => return Ok(Found::Nothing),
            Err(e) => return Err(err(e)),
        };
        let (Some(block_hash), Some(index)) = (info.block_hash, info.index) else {
            return Ok(Found::PendingTx(TxDetail {
                tx: tx_view(info),
                receipt: None,
            }));
        };
        let block = c.block_by_hash(&block_hash, true).await.map_err(err)?;
        Ok(Found::TxInBlock {
            block: block_detail(block),
            index: usize::try_from(index).unwrap_or(usize::MAX),
        })
    }
    async fn mempool(&self, limit: u64) -> Result<MempoolView, SourceError> {
        let c = self.client()?;
        let mut v = c.mempool(limit).await.map(mempool_view).map_err(err)?;
        // Older nodes do not serve `preconf_status`: the view just leaves it out.
        v.preconf = c.preconf_status().await.ok().map(preconf_view);
        // Likewise `pipeline_status`.
        let at = super::now_ms();
        v.pipeline = c
            .call("pipeline_status", serde_json::json!({}))
            .await
            .ok()
            .and_then(|j: Value| serde_json::from_value(j).ok())
            .map(|p| pipeline_view(p, at));
        Ok(v)
    }
    async fn peers(&self) -> Result<Vec<PeerRow>, SourceError> {
        let v = self.client()?.peers().await.map_err(err)?;
        Ok(v.into_iter().map(peer_row).collect())
    }
    async fn consensus_info(&self) -> Result<ConsensusView, SourceError> {
        let v: Value = self
            .client()?
            .call("consensus_info", serde_json::json!({}))
            .await
            .map_err(err)?;
        let mut view = consensus_view(&v);
        if view.dpos.is_some() {
            // The schedule comes from `consensus_info` (as in `aergo node consensus`), the
            // number of producers from governance (as in `aergo gov`).
            let gov = self.client()?.dpos_governance(None).await;
            with_governance(&mut view, gov.ok().map(|g| g.params.bp_count));
        }
        Ok(view)
    }
    async fn subscribe_blocks(
        &self,
        sink: mpsc::Sender<Update>,
        live: Arc<AtomicBool>,
    ) -> Result<(), SourceError> {
        let mut sub = self.client()?.subscribe_new_blocks().await.map_err(err)?;
        live.store(true, Ordering::Relaxed);
        if sink.send(Update::Subscribed(true)).await.is_err() {
            return Ok(());
        }
        while let Some(b) = sub.next().await {
            let b = b.map_err(err)?;
            if sink.send(Update::NewBlock(block_row(b))).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_txs_are_read_as_hashes_or_objects() {
        let h = "ab".repeat(32);
        assert_eq!(tx_row(&Value::String(h.clone())).hash, h);
        let full = serde_json::json!({
            "hash": h, "kind": "transfer", "from": "Afrom", "to": null,
            "amount": "1000", "nonce": 4
        });
        let r = tx_row(&full);
        assert_eq!(
            (r.kind.as_str(), r.to.as_str(), r.nonce),
            ("transfer", "", 4)
        );
        assert_eq!(r.amount, "1000");
    }

    #[test]
    fn consensus_info_of_a_dpos_node() {
        let v = serde_json::json!({
            "engine": "dpos", "block_interval_ms": 500, "height": 120, "lib_height": 117,
            "lib_hash": "ab".repeat(32), "side_blocks": 1, "reorgs": 2, "rejected_blocks": 3,
            "synced_blocks": 40, "gossip_blocks": 80, "peer_id": "12D3KooWme",
            "listen_addrs": ["/ip4/127.0.0.1/tcp/17846", 7],
            "dpos": {
                "slot": 1234, "round": 123, "round_slots": 10, "bp_count": 4,
                "probation": [{"address": "Aprob", "score": -5, "standing": "probation"}],
                "active": [
                    {"address": "Aone", "score": 100, "standing": "active"},
                    {"address": "Atwo", "score": "-3", "standing": "active", "missed_slots": 4}
                ],
                "upcoming": [{"slot": 1234, "producer": "Aone"}, {"slot": 1235, "producer": "Atwo"}],
                "me_scheduled": true
            }
        });
        let c = consensus_view(&v);
        assert_eq!(c.engine.as_deref(), Some("dpos"));
        assert_eq!(c.lib_lag(), Some(3));
        assert_eq!(c.listen_addrs, vec!["/ip4/127.0.0.1/tcp/17846"]);
        let d = c.dpos.unwrap();
        assert_eq!(
            (d.slot, d.round, d.round_slots),
            (Some(1234), Some(123), Some(10))
        );
        assert_eq!(d.active.len(), 2);
        assert_eq!(d.active[1].score, Some(-3), "decimal strings are accepted");
        assert_eq!(d.active[1].missed_slots, Some(4));
        assert_eq!(d.active[0].missed_slots, None);
        assert_eq!(d.probation[0].score, Some(-5));
        assert_eq!(d.upcoming[1].producer, "Atwo");
        assert_eq!(d.me_scheduled, Some(true));
    }

    #[test]
    fn the_bp_count_is_governances_not_the_genesis_one() {
        // Governance raised bp_count from 4 (genesis, what consensus_info reports) to 5 and
        // five producers were elected: the view says 5 of 5, as `aergo gov` does.
        let bp = |a: &str| serde_json::json!({"address": a, "score": 0, "standing": "active"});
        let v = serde_json::json!({
            "engine": "dpos",
            "dpos": {"bp_count": 4, "active": [bp("A1"), bp("A2"), bp("A3"), bp("A4"), bp("A5")]}
        });
        let mut c = consensus_view(&v);
        assert_eq!(c.dpos.as_ref().and_then(|d| d.bp_count), Some(4));
        with_governance(&mut c, Some(5));
        let d = c.dpos.as_ref().unwrap();
        assert_eq!((d.active.len(), d.bp_count), (5, Some(5)));
        assert!(c.is_producer("A5") && !c.is_producer("A6") && !c.is_producer(""));
        // Governance unknown: no figure rather than the stale one.
        with_governance(&mut c, None);
        assert_eq!(c.dpos.as_ref().unwrap().bp_count, None);
        // Solo and PoA views are left alone; PoA producers count as producers.
        let mut poa = consensus_view(&serde_json::json!({
            "engine": "poa", "poa": {"producers": ["Ap1", 7, "Ap2"]}
        }));
        with_governance(&mut poa, Some(9));
        assert!(poa.dpos.is_none());
        assert_eq!(poa.poa_producers, vec!["Ap1", "Ap2"]);
        assert!(poa.is_producer("Ap2"));
    }

    #[test]
    fn consensus_info_of_a_solo_node_and_malformed_answers() {
        let solo = serde_json::json!({
            "engine": "solo", "block_interval_ms": 1000, "height": 5, "lib_height": 5,
            "lib_hash": null, "side_blocks": 0, "reorgs": 0, "rejected_blocks": 0,
            "synced_blocks": 0, "gossip_blocks": 0, "peer_id": null, "listen_addrs": []
        });
        let c = consensus_view(&solo);
        assert_eq!(c.engine.as_deref(), Some("solo"));
        assert!(c.dpos.is_none());
        assert!(c.lib_hash.is_none() && c.peer_id.is_none());
        assert_eq!(c.lib_lag(), Some(0));

        // Wrong types, missing fields, junk entries: nothing panics, unknowns stay `None`.
        let bad = serde_json::json!({
            "engine": 7, "height": -1, "lib_height": "x", "reorgs": 1.5,
            "listen_addrs": "nope",
            "dpos": {
                "slot": null, "active": [{"score": "lots"}, 3, "A"], "probation": {},
                "upcoming": [{"producer": 9}, {"slot": 4}], "me_scheduled": "yes"
            }
        });
        let c = consensus_view(&bad);
        assert_eq!(c.engine, None);
        assert_eq!((c.height, c.lib_height, c.reorgs), (None, None, None));
        assert_eq!(c.lib_lag(), None);
        assert!(c.listen_addrs.is_empty());
        let d = c.dpos.unwrap();
        assert_eq!(d.slot, None);
        assert_eq!(d.active, vec![BpView::default()]);
        assert!(d.probation.is_empty());
        assert_eq!(d.upcoming.len(), 2);
        assert_eq!(d.upcoming[1].slot, Some(4));
        assert_eq!(d.me_scheduled, None);

        for v in [
            serde_json::json!(null),
            serde_json::json!([1, 2]),
            serde_json::json!("dpos"),
            serde_json::json!({"dpos": null}),
            serde_json::json!({"dpos": [1]}),
        ] {
            let c = consensus_view(&v);
            assert!(c.dpos.is_none() && c.engine.is_none(), "{v}");
        }
    }

    #[test]
    fn peers_convert_field_by_field() {
        let p: PeerJson = serde_json::from_value(serde_json::json!({
            "id": "12D3KooWabc", "address": "/ip4/10.0.0.2/tcp/7846",
            "direction": "outbound", "best_height": 42
        }))
        .unwrap();
        let r = peer_row(p);
        assert_eq!(r.direction, "outbound");
        assert_eq!(r.best_height, 42);
        assert_eq!(r.latency_ms, None, "no RTT measured yet");
        assert_eq!(r.node, None, "no node address proven yet");

        let p: PeerJson = serde_json::from_value(serde_json::json!({
            "id": "12D3KooWabc", "address": "/ip4/10.0.0.2/tcp/7846",
            "direction": "inbound", "best_height": 42, "node": "AmNode"
        }))
        .unwrap();
        assert_eq!(peer_row(p).node.as_deref(), Some("AmNode"));
    }

    #[tokio::test]
    async fn dead_node_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let n = RpcNode::new(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(2));
        let e = n.chain_info().await.unwrap_err();
        assert!(e.0.contains("127.0.0.1"), "{e}");
    }
}
