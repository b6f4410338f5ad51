//! View models: what the screens show, independent of where it came from.
//!
//! The data sources (RPC client, init control protocol, AergoFS status, procfs) convert their
//! answers into these structs; tests fill them from fixtures. Every remote piece of data sits
//! in a [`Feed`], which remembers the last good value and, after a failure, since when the
//! source has been unreachable.

use std::collections::VecDeque;

use aergo_os::control::{LogLine, ServiceInfo, SystemInfo};
use aergo_os::sample::Sample;
use aergo_os::slots::SlotInfo;

use crate::fmt::whole;

/// The last good value of a remote source and its health.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed<T> {
    /// Last value received (kept while the source is down).
    pub value: Option<T>,
    /// When the last value arrived (ms since the epoch).
    pub updated_ms: Option<u64>,
    /// Set while the source fails.
    pub down: Option<Down>,
}

impl<T> Default for Feed<T> {
    fn default() -> Self {
        Self {
            value: None,
            updated_ms: None,
            down: None,
        }
    }
}

/// A source that is failing: since when, and the last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// First failure of the current outage (ms since the epoch).
    pub since_ms: u64,
    /// The latest error text.
    pub error: String,
}

impl<T> Feed<T> {
    /// A feed holding `v`, fresh at `now_ms`.
    pub fn with(v: T, now_ms: u64) -> Self {
        Self {
            value: Some(v),
            updated_ms: Some(now_ms),
            down: None,
        }
    }

    /// Records a good value; clears any outage.
    pub fn ok(&mut self, v: T, now_ms: u64) {
        self.value = Some(v);
        self.updated_ms = Some(now_ms);
        self.down = None;
    }

    /// Records a failure; the outage start is kept from the first failure.
    pub fn fail(&mut self, error: impl Into<String>, now_ms: u64) {
        let error = error.into();
        match &mut self.down {
            Some(d) => d.error = error,
            None => {
                self.down = Some(Down {
                    since_ms: now_ms,
                    error,
                })
            }
        }
    }

    /// The value, if any.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }
}

/// `chain_info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainView {
    /// Chain id (genesis hash).
    pub chain_id: String,
    /// Human name.
    pub chain_name: String,
    /// Best height.
    pub height: u64,
    /// Best block hash.
    pub best_hash: String,
    /// Last final height.
    pub finalized_height: u64,
    /// Consensus engine.
    pub consensus: String,
    /// Target block interval.
    pub block_interval_ms: u64,
    /// Genesis time.
    pub genesis_time_ms: u64,
    /// Best block's time.
    pub best_time_ms: u64,
}

/// `node_status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Node software version.
    pub version: String,
    /// The node's account address.
    pub node_address: String,
    /// Whether this node produces blocks.
    pub producer: bool,
    /// Connected peers.
    pub peers: u64,
    /// Pending transactions.
    pub mempool_size: u64,
    /// Pending transaction bytes.
    pub mempool_bytes: u64,
    /// Whether it is catching up.
    pub syncing: bool,
    /// Sync progress: current height.
    pub sync_current: u64,
    /// Sync progress: target height.
    pub sync_target: u64,
    /// Process uptime.
    pub uptime_secs: u64,
    /// File I/O backend (io_uring or std).
    pub io_backend: String,
    /// The node paused production: its data disk is nearly full.
    pub disk_low: bool,
}

/// One connected peer (`peers`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerRow {
    /// libp2p peer id.
    pub id: String,
    /// Remote address.
    pub address: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The peer's best height.
    pub best_height: u64,
    /// Round-trip time, when measured.
    pub latency_ms: Option<u64>,
    /// The peer's node address (`A…`), once it proved its node key; `None` until then.
    pub node: Option<String>,
}

/// One block producer in the DPoS schedule (lenient: missing fields are `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BpView {
    /// Account address (empty when the node sent none).
    pub address: String,
    /// Reliability score.
    pub score: Option<i64>,
    /// `active`, `probation` or `excluded`.
    pub standing: Option<String>,
    /// Slots of this round it owned that have no block (a BP without a running node).
    pub missed_slots: Option<i64>,
}

/// One upcoming slot of the current round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpcomingSlot {
    /// Slot number.
    pub slot: Option<u64>,
    /// Producer address (empty when the node sent none).
    pub producer: String,
}

/// The `dpos` part of `consensus_info` (absent on solo chains).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DposView {
    /// Current slot.
    pub slot: Option<u64>,
    /// Round of the schedule.
    pub round: Option<u64>,
    /// Slots per round.
    pub round_slots: Option<u64>,
    /// Block producers per schedule in force: governance's `bp_count` (`dpos_governance`,
    /// what `aergo gov` shows) once [`with_governance`](crate::source::rpc::with_governance)
    /// merged it; `None` when unknown.
    pub bp_count: Option<u64>,
    /// Active producers, in schedule order.
    pub active: Vec<BpView>,
    /// Producers on probation (one slot per round).
    pub probation: Vec<BpView>,
    /// The next slots of the round and their producers, current first.
    pub upcoming: Vec<UpcomingSlot>,
    /// Whether this node is in the schedule.
    pub me_scheduled: Option<bool>,
}

/// `consensus_info`, parsed leniently: anything missing or malformed is `None`/empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsensusView {
    /// `dpos` or `solo`.
    pub engine: Option<String>,
    /// Slot length.
    pub block_interval_ms: Option<u64>,
    /// Best height when answered.
    pub height: Option<u64>,
    /// Last irreversible block height.
    pub lib_height: Option<u64>,
    /// Last irreversible block hash.
    pub lib_hash: Option<String>,
    /// Blocks kept on side branches.
    pub side_blocks: Option<u64>,
    /// Fork switches since start.
    pub reorgs: Option<u64>,
    /// Blocks refused since start.
    pub rejected_blocks: Option<u64>,
    /// Blocks fetched by sync since start.
    pub synced_blocks: Option<u64>,
    /// Blocks received by gossip since start.
    pub gossip_blocks: Option<u64>,
    /// This node's libp2p peer id.
    pub peer_id: Option<String>,
    /// Addresses this node listens on.
    pub listen_addrs: Vec<String>,
    /// DPoS state; `None` on solo chains.
    pub dpos: Option<DposView>,
    /// PoA producers (`poa.producers`), in slot order; empty on other engines.
    pub poa_producers: Vec<String>,
}

impl ConsensusView {
    /// LIB distance behind the head, when both are known.
    pub fn lib_lag(&self) -> Option<u64> {
        Some(self.height?.saturating_sub(self.lib_height?))
    }

    /// Whether `address` is an elected producer: in the DPoS schedule (active or probation)
    /// or a PoA producer.
    pub fn is_producer(&self, address: &str) -> bool {
        !address.is_empty()
            && (self.poa_producers.iter().any(|p| p == address)
                || self.dpos.as_ref().is_some_and(|d| {
                    d.active
                        .iter()
                        .chain(&d.probation)
                        .any(|b| b.address == address)
                }))
    }
}

/// One row of the blocks list (`BlockSummary`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockRow {
    /// Block hash.
    pub hash: String,
    /// Height.
    pub height: u64,
    /// Block time.
    pub timestamp_ms: u64,
    /// Producer address.
    pub producer: String,
    /// Transactions.
    pub tx_count: u64,
    /// Encoded size in bytes.
    pub size: u64,
    /// Gas used.
    pub gas_used: u64,
}

/// One transaction in a block's list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxRow {
    /// Hash.
    pub hash: String,
    /// Kind (transfer, call, deploy, …); empty when only the hash is known.
    pub kind: String,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Amount in aer.
    pub amount: String,
    /// Sender nonce.
    pub nonce: u64,
}

/// A whole block (`block` with `full: true`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDetail {
    /// Summary fields.
    pub summary: BlockRow,
    /// Parent hash.
    pub parent_hash: String,
    /// Transactions root.
    pub tx_root: String,
    /// Receipts root.
    pub receipts_root: String,
    /// State root.
    pub state_root: String,
    /// Consensus data (rendered as text).
    pub consensus: String,
    /// Producer signature.
    pub signature: String,
    /// Transactions.
    pub txs: Vec<TxRow>,
    /// What it merged, on a merge block.
    pub merge: Option<MergeView>,
}

/// A merge block's second parent and verdicts (`Block.merge`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeView {
    /// The source branch's name (empty when the chain does not know it).
    pub source: String,
    /// The source branch's id.
    pub source_id: String,
    /// The source tip merged (the second parent).
    pub source_tip: String,
    /// Its height on the source.
    pub source_height: u64,
    /// `auto` or `consistent`.
    pub strategy: String,
    /// The merged transactions, in order.
    pub merged: Vec<String>,
    /// The candidates left out: hash, reason, detail.
    pub excluded: Vec<(String, String, String)>,
}

impl MergeView {
    /// The short label the Blocks list shows: `feat@7` (`?@7` for an unknown source).
    pub fn label(&self) -> String {
        let name = if self.source.is_empty() {
            "?"
        } else {
            &self.source
        };
        format!("{name}@{}", self.source_height)
    }
}

/// A transaction with its inclusion status (`tx`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxView {
    /// Hash.
    pub hash: String,
    /// Kind.
    pub kind: String,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Sender nonce.
    pub nonce: u64,
    /// Amount in aer.
    pub amount: String,
    /// Payload (hex or text).
    pub payload: String,
    /// Gas limit.
    pub gas_limit: u64,
    /// Gas price in aer.
    pub gas_price: String,
    /// Chain id signed.
    pub chain_id: String,
    /// Signature.
    pub signature: String,
    /// Encoded size.
    pub size: u64,
    /// `pending` or `included`.
    pub status: String,
    /// Including block.
    pub block_hash: Option<String>,
    /// Including block height.
    pub block_height: Option<u64>,
    /// Index in the block.
    pub index: Option<u64>,
}

/// An event emitted by a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventView {
    /// Event name.
    pub name: String,
    /// Event data (JSON text).
    pub data: String,
}

/// A receipt (`receipt`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptView {
    /// Transaction hash.
    pub tx_hash: String,
    /// Block hash.
    pub block_hash: String,
    /// Block height.
    pub block_height: u64,
    /// Index in the block.
    pub index: u64,
    /// `ok` or `failed`.
    pub status: String,
    /// Error text when failed.
    pub error: Option<String>,
    /// Gas used.
    pub gas_used: u64,
    /// Fee in aer.
    pub fee: String,
    /// Result (JSON text).
    pub result: String,
    /// Events.
    pub events: Vec<EventView>,
}

/// A transaction and, once included, its receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxDetail {
    /// The transaction.
    pub tx: TxView,
    /// Its receipt (none while pending).
    pub receipt: Option<ReceiptView>,
}

/// What a search of the chain by hash (`/` on the Blocks screen) found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one short-lived answer per search
pub enum Found {
    /// A block with that hash.
    Block(BlockDetail),
    /// A transaction with that hash, in this block at `index`.
    TxInBlock {
        /// The block holding it.
        block: BlockDetail,
        /// Its position in the block.
        index: usize,
    },
    /// A transaction with that hash, still pending (in the mempool).
    PendingTx(TxDetail),
    /// No block and no transaction has that hash.
    Nothing,
}

/// One pending transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MempoolTx {
    /// Hash.
    pub hash: String,
    /// Sender.
    pub from: String,
    /// Nonce.
    pub nonce: u64,
    /// Gas price in aer.
    pub gas_price: String,
    /// Maximum fee in aer.
    pub fee: String,
    /// Time in the pool.
    pub age_ms: u64,
}

/// `mempool`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MempoolView {
    /// Pending transactions.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Limit on transactions.
    pub max_txs: u64,
    /// Limit on bytes.
    pub max_bytes: u64,
    /// The first pending transactions.
    pub txs: Vec<MempoolTx>,
    /// Pre-confirmation at this node (`None`: the node does not report it).
    pub preconf: Option<PreconfView>,
    /// The node's processing stages (`None`: the node does not report them).
    pub pipeline: Option<PipelineView>,
}

/// `pipeline_status`: counters per stage, read at `at_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineView {
    /// When it was read (ms since the epoch).
    pub at_ms: u64,
    /// The stages, in pipeline order.
    pub stages: Vec<StageView>,
    /// The last block's DTT width × 1000.
    pub dtt_width_milli: u64,
    /// Validation workers.
    pub exec_workers: u64,
}

/// One stage's counters since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageView {
    /// Stage name.
    pub name: String,
    /// Runs.
    pub runs: u64,
    /// Items handled.
    pub items: u64,
    /// Time in the stage (µs).
    pub busy_us: u64,
    /// Runs in progress.
    pub inside: u64,
    /// Items queued in front of it.
    pub queue: u64,
}

/// A stage between two readings: what the dashboard shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRate {
    /// Stage name.
    pub name: String,
    /// Items per second between the readings (`None`: no earlier reading).
    pub per_sec: Option<f64>,
    /// Mean time per run between the readings, ms (`None`: no run in between).
    pub latency_ms: Option<f64>,
    /// Queued in front plus in progress, now.
    pub waiting: u64,
}

impl PipelineView {
    /// Each stage's rate and latency since `prev` (an earlier reading of the same node; a
    /// counter that went down — a restarted node — gives no rate).
    pub fn rates(&self, prev: Option<&PipelineView>) -> Vec<StageRate> {
        self.stages
            .iter()
            .map(|s| {
                let before = prev
                    .filter(|p| p.at_ms < self.at_ms)
                    .and_then(|p| p.stages.iter().find(|o| o.name == s.name))
                    .filter(|o| o.items <= s.items && o.runs <= s.runs);
                let secs = prev.map_or(0.0, |p| self.at_ms.saturating_sub(p.at_ms) as f64 / 1000.0);
                StageRate {
                    name: s.name.clone(),
                    per_sec: before.map(|o| (s.items - o.items) as f64 / secs),
                    latency_ms: before.and_then(|o| {
                        let runs = s.runs - o.runs;
                        (runs > 0).then(|| {
                            s.busy_us.saturating_sub(o.busy_us) as f64 / runs as f64 / 1000.0
                        })
                    }),
                    waiting: s.queue.saturating_add(s.inside),
                }
            })
            .collect()
    }
}

/// `preconf_status`: the producer's promises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreconfView {
    /// Whether the node pre-confirms.
    pub enabled: bool,
    /// The open pending block's height.
    pub pending_height: Option<u64>,
    /// Transactions promised in it (the slot's sequence length).
    pub sequence_length: u64,
    /// Promises in the last minute.
    pub last_minute: u64,
    /// Admission → durable promise, p50 and p99 over the last minute (µs).
    pub p50_us: Option<u64>,
    /// p99.
    pub p99_us: Option<u64>,
    /// Promises a restart could not keep.
    pub broken: u64,
    /// Producers convicted of a broken pre-confirmation on the chain (evidence seen).
    pub evidence: u64,
}

/// One AergoFS volume (lenient: missing fields are `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeView {
    /// Volume id.
    pub id: String,
    /// File size in bytes.
    pub size: Option<u64>,
    /// Live needles.
    pub live: Option<u64>,
    /// Live bytes.
    pub live_bytes: Option<u64>,
    /// Deleted needles.
    pub deleted: Option<u64>,
    /// Garbage ratio 0..1.
    pub garbage_ratio: Option<f64>,
    /// Read-only.
    pub read_only: Option<bool>,
    /// Why read-only.
    pub read_only_reason: Option<String>,
    /// Compaction running.
    pub compacting: Option<bool>,
}

/// AergoFS `GET /status`, parsed leniently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageView {
    /// io_uring or the std fallback.
    pub io_backend: Option<String>,
    /// Bytes of the disk holding the volumes.
    pub disk_total: Option<u64>,
    /// Free bytes there.
    pub disk_free: Option<u64>,
    /// Volumes.
    pub volumes: Vec<VolumeView>,
    /// Other top-level scalar fields, as `key = value`.
    pub other: Vec<(String, String)>,
}

impl StorageView {
    /// Parses whatever `/status` returned; unknown shapes yield an empty view plus `other`.
    pub fn from_json(v: &serde_json::Value) -> Self {
        use serde_json::Value;
        let mut out = StorageView::default();
        let Some(obj) = v.as_object() else {
            out.other.push(("status".into(), v.to_string()));
            return out;
        };
        let s = |o: &serde_json::Map<String, Value>, keys: &[&str]| -> Option<String> {
            keys.iter().find_map(|k| match o.get(*k)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
        };
        let n = |o: &serde_json::Map<String, Value>, keys: &[&str]| -> Option<u64> {
            keys.iter().find_map(|k| {
                let v = o.get(*k)?;
                v.as_u64()
                    .or_else(|| v.as_f64().map(crate::fmt::whole))
                    .or_else(|| v.as_str()?.parse().ok())
            })
        };
        out.io_backend = s(obj, &["io_backend", "backend", "io"]);
        let disk = obj.get("disk").and_then(Value::as_object);
        out.disk_total = n(obj, &["disk_total", "disk_total_bytes", "total_bytes"])
            .or_else(|| disk.and_then(|d| n(d, &["total", "total_bytes"])));
        out.disk_free = n(
            obj,
            &[
                "disk_free",
                "disk_free_bytes",
                "free_bytes",
                "available_bytes",
            ],
        )
        .or_else(|| disk.and_then(|d| n(d, &["free", "free_bytes", "available", "avail"])));
        if let Some(vols) = obj.get("volumes").and_then(Value::as_array) {
            for (i, vol) in vols.iter().enumerate() {
                let Some(o) = vol.as_object() else { continue };
                out.volumes.push(VolumeView {
                    id: s(o, &["id", "volume", "name"]).unwrap_or_else(|| i.to_string()),
                    size: n(o, &["size", "size_bytes", "bytes"]),
                    live: n(o, &["live_needles", "live", "needles"]),
                    live_bytes: n(o, &["live_bytes"]),
                    deleted: n(o, &["deleted_needles", "deleted"]),
                    garbage_ratio: o
                        .get("garbage_ratio")
                        .or_else(|| o.get("garbage"))
                        .and_then(Value::as_f64),
                    read_only: o
                        .get("read_only")
                        .or_else(|| o.get("readonly"))
                        .and_then(Value::as_bool),
                    read_only_reason: s(o, &["read_only_reason"]),
                    compacting: o.get("compacting").and_then(Value::as_bool),
                });
            }
        }
        const KNOWN: &[&str] = &[
            "io_backend",
            "backend",
            "io",
            "disk",
            "disk_total",
            "disk_total_bytes",
            "total_bytes",
            "disk_free",
            "disk_free_bytes",
            "free_bytes",
            "available_bytes",
            "volumes",
        ];
        // Most useful first; nulls are left out.
        const FIRST: &[&str] = &[
            "version",
            "live_needles",
            "live_bytes",
            "failed_volumes",
            "durability",
            "dir",
        ];
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort_by_key(|k| FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()));
        for k in keys {
            let Some(v) = obj.get(k) else { continue };
            if KNOWN.contains(&k.as_str()) || v.is_null() {
                continue;
            }
            let text = match v {
                Value::String(s) => s.clone(),
                // A list reads as its values (failed volume ids), or "none".
                Value::Array(a) if a.is_empty() => "none".to_string(),
                Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Value::Array(a) => format!("{} items", a.len()),
                Value::Object(_) => "{…}".to_string(),
                other => other.to_string(),
            };
            out.other.push((k.clone(), text));
        }
        out
    }

    /// Free-space percentage of the disk, when known.
    pub fn free_pct(&self) -> Option<f64> {
        match (self.disk_total, self.disk_free) {
            (Some(t), Some(f)) if t > 0 => Some(f as f64 * 100.0 / t as f64),
            _ => None,
        }
    }
}

/// What init reports: services, system facts and the A/B system slots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitView {
    /// Supervised services.
    pub services: Vec<ServiceInfo>,
    /// System facts.
    pub system: SystemInfo,
    /// The A/B system slots (name, version, state); empty when the disk has none.
    pub slots: Vec<SlotInfo>,
    /// The last upgrade's outcome, one line.
    pub last_upgrade: Option<String>,
    /// When init will reboot into the upgraded slot (Unix seconds, UTC), if an upgrade
    /// scheduled it (`aergo os upgrade --reboot-at`).
    pub reboot_at: Option<u64>,
}

/// Points kept per sparkline.
pub const HISTORY: usize = 240;

/// Resource samples with a bounded history for the graphs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceHistory {
    /// The latest sample.
    pub last: Option<Sample>,
    /// CPU busy percent, oldest first.
    pub cpu: VecDeque<u64>,
    /// Per-core busy percent.
    pub cores: Vec<VecDeque<u64>>,
    /// Memory used percent.
    pub mem: VecDeque<u64>,
    /// Network receive bytes/s summed over non-loopback interfaces.
    pub net_rx: VecDeque<u64>,
    /// Network send bytes/s summed over non-loopback interfaces.
    pub net_tx: VecDeque<u64>,
    /// Disk read bytes/s over all devices.
    pub disk_read: VecDeque<u64>,
    /// Disk write bytes/s over all devices.
    pub disk_write: VecDeque<u64>,
    /// Last sampling error.
    pub error: Option<String>,
}

fn push(q: &mut VecDeque<u64>, v: u64) {
    if q.len() == HISTORY {
        q.pop_front();
    }
    q.push_back(v);
}

impl ResourceHistory {
    /// Adds a sample.
    pub fn push(&mut self, s: Sample) {
        push(&mut self.cpu, whole(f64::from(s.cpu_pct.round())));
        if self.cores.len() != s.cores_pct.len() {
            self.cores = vec![VecDeque::new(); s.cores_pct.len()];
        }
        for (q, p) in self.cores.iter_mut().zip(&s.cores_pct) {
            push(q, whole(f64::from(p.round())));
        }
        push(&mut self.mem, whole(f64::from(s.mem.used_pct().round())));
        let ext = s.nets.iter().filter(|n| n.iface != "lo");
        push(
            &mut self.net_rx,
            whole(ext.clone().map(|n| n.rx_bps).sum::<f64>()),
        );
        push(&mut self.net_tx, whole(ext.map(|n| n.tx_bps).sum::<f64>()));
        push(
            &mut self.disk_read,
            whole(s.disks.iter().map(|d| d.read_bps).sum::<f64>()),
        );
        push(
            &mut self.disk_write,
            whole(s.disks.iter().map(|d| d.write_bps).sum::<f64>()),
        );
        self.last = Some(s);
        self.error = None;
    }
}

/// The root chain's name: the ledger read when no repository is selected.
pub const ROOT: &str = "aergo";

/// What a private repository shows to a reader without a member's signature.
pub const PRIVATE_MSG: &str = "private: reads need a member's signature";

/// One row of the Repositories screen: the root chain or a registered repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoRow {
    /// Repository name (`aergo`: the root chain).
    pub name: String,
    /// `solo`, `poa`, `dpos`, …
    pub engine: String,
    /// `public` or `private`.
    pub visibility: String,
    /// Whether this node hosts it.
    pub hosted: bool,
    /// Best height (hosted only).
    pub height: Option<u64>,
    /// Finalized height (hosted only).
    pub finalized_height: Option<u64>,
    /// Its Distributed Directory's height (hosted public repositories only).
    pub dd_height: Option<u64>,
    /// Members in its directory (hosted public repositories only).
    pub members: Option<u64>,
    /// The last RPC error about this repository (its row shows it).
    pub error: Option<String>,
}

impl RepoRow {
    /// The `dd_info` answer's height and member count, read leniently (missing: `None`).
    pub fn apply_dd_info(&mut self, v: &serde_json::Value) {
        self.dd_height = v.get("height").and_then(serde_json::Value::as_u64);
        self.members = v
            .get("members")
            .and_then(serde_json::Value::as_array)
            .map(|m| u64::try_from(m.len()).unwrap_or(u64::MAX));
    }

    /// Whether it is private.
    pub fn private(&self) -> bool {
        self.visibility == "private"
    }
}

/// One row of the Branches screen: the chain itself (`main`) or one of its branches, a
/// branch of a branch named `a/b` (the `branch` parameter's form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BranchRow {
    /// `main`, `feat`, `feat/fix`.
    pub name: String,
    /// Nesting: 0 for `main`, 1 for its branches, 2 for theirs.
    pub depth: usize,
    /// The parent's height it forked at (none for `main`).
    pub fork_height: Option<u64>,
    /// Its best height (hosted branches and `main`).
    pub tip_height: Option<u64>,
    /// The source height the last merge into it reached (the next merge base).
    pub merged_up_to: Option<u64>,
    /// The producer's address (empty for `main`).
    pub producer: String,
    /// `auto` or `consistent`.
    pub strategy: String,
    /// `produced here`, `hosted`, `not here`, `deleted` (`main`: `chain`).
    pub state: String,
    /// An RPC error reading its own branches.
    pub error: Option<String>,
}

impl BranchRow {
    /// Whether the node screens can read it (`main`, or a branch this node hosts).
    pub fn readable(&self) -> bool {
        matches!(self.state.as_str(), "chain" | "hosted" | "produced here")
    }
}

/// Everything the dashboard knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// `chain_info`.
    pub chain: Feed<ChainView>,
    /// `node_status`.
    pub node: Feed<NodeView>,
    /// Latest blocks, newest first.
    pub blocks: Feed<Vec<BlockRow>>,
    /// `mempool`.
    pub mempool: Feed<MempoolView>,
    /// The pipeline reading before the current one (rates come from the two).
    pub pipeline_prev: Option<PipelineView>,
    /// `peers`.
    pub peers: Feed<Vec<PeerRow>>,
    /// `consensus_info`.
    pub consensus: Feed<ConsensusView>,
    /// The open block (drill-down).
    pub block: Feed<BlockDetail>,
    /// The open transaction (drill-down).
    pub tx: Feed<TxDetail>,
    /// The outcome of the last chain search that opened nothing: (query, what to say).
    pub search_miss: Option<(String, String)>,
    /// Init: services and system.
    pub init: Feed<InitView>,
    /// Log lines of the selected service, oldest first.
    pub logs: Feed<Vec<LogLine>>,
    /// AergoFS status.
    pub storage: Feed<StorageView>,
    /// Local resources.
    pub resources: ResourceHistory,
    /// The root chain and every registered repository (`repo_list`, `dd_info`).
    pub repos: Feed<Vec<RepoRow>>,
    /// The selected ledger's branches (`branch_list`, `main` first, as a tree).
    pub branches: Feed<Vec<BranchRow>>,
    /// Merge blocks seen in a block detail: height → `source@height` (the Blocks list marks
    /// them; block summaries do not say which blocks merge).
    pub merges: std::collections::BTreeMap<u64, String>,
    /// Whether the new-blocks subscription is live.
    pub ws_live: bool,
    /// Last message from an operator action (restart result).
    pub flash: Option<String>,
    /// When the flash message was set (ms since the epoch); shown for [`FLASH_MS`].
    pub flash_ms: u64,
}

/// How long a flash message stays in the status line.
pub const FLASH_MS: u64 = 6_000;

/// Most blocks kept in the list.
pub const MAX_BLOCKS: usize = 200;

impl Model {
    /// Merges a block from the subscription into the list (newest first, no duplicates).
    pub fn add_block(&mut self, b: BlockRow, now_ms: u64) {
        let mut list = self.blocks.value.take().unwrap_or_default();
        list.retain(|x| x.height != b.height);
        let pos = list
            .iter()
            .position(|x| x.height < b.height)
            .unwrap_or(list.len());
        list.insert(pos, b);
        list.truncate(MAX_BLOCKS);
        self.blocks.ok(list, now_ms);
    }

    /// Merges a polled list of blocks (newest first) into the list.
    pub fn merge_blocks(&mut self, fresh: Vec<BlockRow>, now_ms: u64) {
        let mut list = self.blocks.value.take().unwrap_or_default();
        for b in fresh {
            list.retain(|x| x.height != b.height);
            list.push(b);
        }
        list.sort_by_key(|b| std::cmp::Reverse(b.height));
        list.truncate(MAX_BLOCKS);
        self.blocks.ok(list, now_ms);
    }

    /// Transactions per second over the minute before the newest block.
    pub fn tx_rate(&self) -> Option<f64> {
        let blocks = self.blocks.get()?;
        let newest = blocks.first()?.timestamp_ms;
        let from = newest.saturating_sub(60_000);
        let txs: u64 = blocks
            .iter()
            .filter(|b| b.timestamp_ms > from)
            .map(|b| b.tx_count)
            .sum();
        Some(txs as f64 / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_keeps_outage_start_and_recovers() {
        let mut f: Feed<u32> = Feed::default();
        f.ok(1, 10);
        f.fail("refused", 20);
        f.fail("timeout", 30);
        assert_eq!(f.value, Some(1));
        assert_eq!(
            f.down,
            Some(Down {
                since_ms: 20,
                error: "timeout".into()
            })
        );
        f.ok(2, 40);
        assert!(f.down.is_none());
        assert_eq!(f.updated_ms, Some(40));
    }

    #[test]
    fn blocks_merge_newest_first_without_duplicates() {
        let mut m = Model::default();
        let b = |h| BlockRow {
            height: h,
            timestamp_ms: h * 1000,
            tx_count: 6,
            ..Default::default()
        };
        m.merge_blocks(vec![b(3), b(2), b(1)], 0);
        m.add_block(b(4), 0);
        m.add_block(b(3), 0);
        let hs: Vec<u64> = m.blocks.get().unwrap().iter().map(|b| b.height).collect();
        assert_eq!(hs, vec![4, 3, 2, 1]);
        assert!((m.tx_rate().unwrap() - 24.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn storage_status_is_parsed_leniently() {
        let v = serde_json::json!({
            "io_backend": "io_uring",
            "disk": {"total": 1000, "free": 50},
            "volumes": [{"id": 1, "size": 4096, "live_needles": 3, "deleted_needles": 1,
                         "garbage_ratio": 0.25, "read_only": false}, "junk"],
            "needles": 3,
            "failed_volumes": [],
            "tags": ["a", 2],
            "lists": [[1], [2]],
            "weird": {"a": 1}
        });
        let s = StorageView::from_json(&v);
        assert_eq!(s.io_backend.as_deref(), Some("io_uring"));
        assert_eq!(s.volumes.len(), 1);
        assert_eq!(s.volumes[0].id, "1");
        assert_eq!(s.volumes[0].garbage_ratio, Some(0.25));
        assert!((s.free_pct().unwrap() - 5.0).abs() < 1e-9);
        assert!(s.other.contains(&("needles".into(), "3".into())));
        // Lists read as their values, or "none", never as JSON.
        assert!(s.other.contains(&("failed_volumes".into(), "none".into())));
        assert!(s.other.contains(&("tags".into(), "a, 2".into())));
        assert!(s.other.contains(&("lists".into(), "2 items".into())));
        let odd = StorageView::from_json(&serde_json::json!([1, 2]));
        assert!(odd.volumes.is_empty());
        assert_eq!(odd.other.len(), 1);
    }
}
