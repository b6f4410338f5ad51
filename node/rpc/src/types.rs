//! JSON-RPC wire types. Amounts are decimal strings in aer, hashes lowercase hex, addresses
//! base58check (see docs/RPC.md). Field names are stable: scripts depend on them.

use aergo_types::{Aer, Hash};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// JSON-RPC error codes.
pub mod codes {
    /// Body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a JSON-RPC 2.0 request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Node failure.
    pub const INTERNAL: i64 = -32603;
    /// Block, transaction or receipt not found.
    pub const NOT_FOUND: i64 = -32001;
    /// Transaction rejected.
    pub const TX_REJECTED: i64 = -32002;
    /// Too many requests.
    pub const RATE_LIMITED: i64 = -32003;
    /// Admin method from a non-loopback client.
    pub const ADMIN_REFUSED: i64 = -32004;
    /// A contract query or read-only call failed (SQL error, exception, gas cap).
    pub const CONTRACT_ERROR: i64 = -32005;
    /// Too many contract queries/views running at once: retry shortly.
    pub const BUSY: i64 = -32006;
    /// The `repo` parameter names no repository, or one this node does not host.
    pub const NO_REPO: i64 = -32007;
    /// A private repository's read without a member's signature, or a bad signature.
    pub const UNAUTHORIZED: i64 = -32008;
    /// The `branch` parameter names no branch this node hosts.
    pub const NO_BRANCH: i64 = -32009;
    /// A merge that cannot run (nothing to merge, a deleted branch, a source not final…).
    pub const MERGE_REFUSED: i64 = -32010;
    /// No pre-confirmation: this node does not produce the next slot, pre-confirmation is
    /// off, or none came in time (`data.reason`: `not_producer`, `off`, `timeout`).
    pub const PRECONF_UNAVAILABLE: i64 = -32011;
}

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Request id (absent for notifications).
    #[serde(default)]
    pub id: Value,
    /// Method name.
    pub method: String,
    /// Parameters (an object).
    #[serde(default)]
    pub params: Value,
}

/// An error object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorObject {
    /// Code (see [`codes`]).
    pub code: i64,
    /// What went wrong and what to do.
    pub message: String,
    /// Extra data, e.g. `{"reason": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The request's id.
    pub id: Value,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

/// `chain_info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChainInfo {
    /// Chain id (genesis hash).
    pub chain_id: Hash,
    /// Chain name.
    pub chain_name: String,
    /// Best height.
    pub height: u64,
    /// Best block hash.
    pub best_hash: Hash,
    /// Last final height.
    pub finalized_height: u64,
    /// Engine name.
    pub consensus: String,
    /// Slot length.
    pub block_interval_ms: u64,
    /// Genesis time.
    pub genesis_time_ms: u64,
    /// Best block's timestamp.
    pub best_time_ms: u64,
    /// Gas per transaction.
    pub base_gas: u64,
    /// Gas per payload byte.
    pub per_byte_gas: u64,
    /// Lowest gas price.
    pub min_gas_price: Aer,
    /// Most gas one transaction may ask for (its gas limit) on the next block.
    #[serde(default)]
    pub tx_gas_cap: u64,
    /// Most gas one block may use.
    #[serde(default)]
    pub block_gas_limit: u64,
    /// The AergoSQL engine version a contract deployed in the next block gets (1 from a node
    /// that predates the field).
    #[serde(default = "engine_v1")]
    pub sql_engine: u8,
}

fn engine_v1() -> u8 {
    1
}

/// `node_status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    /// Node version.
    pub version: String,
    /// The node key's address.
    pub node_address: String,
    /// Whether this node produces blocks.
    pub producer: bool,
    /// Connected peers.
    pub peers: u32,
    /// Pending transactions.
    pub mempool_size: u64,
    /// Pending bytes.
    pub mempool_bytes: u64,
    /// Catching up with the network.
    pub syncing: bool,
    /// Sync: our height.
    pub sync_current: u64,
    /// Sync: the network's height.
    pub sync_target: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// `io_uring` or `std`.
    pub io_backend: String,
    /// Start time (ms).
    pub started_ms: u64,
    /// The data disk is nearly full: production and block imports are paused.
    #[serde(default)]
    pub disk_low: bool,
}

/// A block in lists and subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockSummary {
    /// Block hash.
    pub hash: Hash,
    /// Height.
    pub height: u64,
    /// Timestamp.
    pub timestamp_ms: u64,
    /// Producer address.
    pub producer: String,
    /// Number of transactions.
    pub tx_count: u32,
    /// Encoded size.
    pub size: u32,
    /// Gas used.
    pub gas_used: u64,
}

/// A transaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxJson {
    /// Hash.
    pub hash: Hash,
    /// `transfer`, …
    pub kind: String,
    /// Sender address.
    pub from: String,
    /// Recipient address.
    pub to: Option<String>,
    /// Nonce.
    pub nonce: u64,
    /// Amount in aer.
    pub amount: Aer,
    /// Payload, hex.
    pub payload: String,
    /// Gas limit.
    pub gas_limit: u64,
    /// Gas price in aer.
    pub gas_price: Aer,
    /// Chain id.
    pub chain_id: Hash,
    /// Signature, hex.
    pub signature: String,
    /// Encoded size.
    pub size: u32,
}

/// `block`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockJson {
    /// Summary fields.
    #[serde(flatten)]
    pub summary: BlockSummary,
    /// Parent hash.
    pub parent_hash: Hash,
    /// Tx Merkle root.
    pub tx_root: Hash,
    /// Receipts Merkle root.
    pub receipts_root: Hash,
    /// State root.
    pub state_root: Hash,
    /// Consensus data, hex.
    pub consensus: String,
    /// Producer signature, hex.
    pub signature: String,
    /// The signed header's binary encoding, hex (what evidence of a broken pre-confirmation
    /// carries; empty from a node that predates the field).
    #[serde(default)]
    pub header: String,
    /// Transactions: hashes, or full objects when requested.
    pub txs: Vec<Value>,
    /// Set on a merge block: what it merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeJson>,
}

/// A merge block's second parent and its lists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergeJson {
    /// The source branch's name (as the chain records it; absent if unknown).
    pub source: Option<String>,
    /// The source branch's id.
    pub source_id: Hash,
    /// The source tip merged (the second parent).
    pub source_tip: Hash,
    /// Its height on the source.
    pub source_height: u64,
    /// `auto` or `consistent`.
    pub strategy: String,
    /// The merged transactions, in order.
    pub merged: Vec<Hash>,
    /// The candidates left out.
    pub excluded: Vec<ExcludedJson>,
}

/// A merge candidate left out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExcludedJson {
    /// The transaction.
    pub hash: Hash,
    /// `already applied`, `insufficient balance`, `failed` or `invalid`.
    pub reason: String,
    /// Details.
    pub detail: String,
}

/// `tx`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxInfo {
    /// The transaction.
    pub tx: TxJson,
    /// `pending` or `included`.
    pub status: String,
    /// Including block.
    pub block_hash: Option<Hash>,
    /// Its height.
    pub block_height: Option<u64>,
    /// Index in the block.
    pub index: Option<u32>,
}

/// An event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventJson {
    /// Name.
    pub name: String,
    /// Data.
    pub data: String,
}

/// `receipt`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReceiptJson {
    /// Transaction hash.
    pub tx_hash: Hash,
    /// Including block.
    pub block_hash: Hash,
    /// Its height.
    pub block_height: u64,
    /// Index in the block.
    pub index: u32,
    /// `ok` or `failed`.
    pub status: String,
    /// Failure reason.
    pub error: Option<String>,
    /// Gas used.
    pub gas_used: u64,
    /// Fee in aer.
    pub fee: Aer,
    /// Return value (UTF-8 when printable, else hex).
    pub result: String,
    /// Events.
    pub events: Vec<EventJson>,
}

/// `account`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountJson {
    /// Address.
    pub address: String,
    /// Balance in aer.
    pub balance: Aer,
    /// Next nonce in state at that height.
    pub nonce: u64,
    /// Next nonce counting this node's pending transactions (equals `nonce` for past heights).
    pub next_nonce: u64,
    /// Height read.
    pub height: u64,
}

/// `send_tx`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendResult {
    /// The transaction hash.
    pub hash: Hash,
}

/// A pending transaction in `mempool`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingTx {
    /// Hash.
    pub hash: Hash,
    /// Sender.
    pub from: String,
    /// Nonce.
    pub nonce: u64,
    /// Gas price.
    pub gas_price: Aer,
    /// Max fee (gas limit × price).
    pub fee: Aer,
    /// Time pending.
    pub age_ms: u64,
}

/// `mempool`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MempoolJson {
    /// Pending transactions.
    pub count: u64,
    /// Pending bytes.
    pub bytes: u64,
    /// Count limit.
    pub max_txs: u64,
    /// Bytes limit.
    pub max_bytes: u64,
    /// The oldest pending transactions.
    pub txs: Vec<PendingTx>,
}

/// A leaf in a proof.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProofLeafJson {
    /// Key hash.
    pub key: Hash,
    /// Value hash.
    pub value_hash: Hash,
}

/// A Merkle proof.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProofJson {
    /// The leaf where the path ends.
    pub leaf: Option<ProofLeafJson>,
    /// Siblings from the root down.
    pub siblings: Vec<Hash>,
}

/// `get_proof`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountProof {
    /// Address.
    pub address: String,
    /// Height.
    pub height: u64,
    /// That block's state root.
    pub state_root: Hash,
    /// The state key (hex) whose BLAKE3 is the tree key.
    pub key: String,
    /// The account value, hex (balance u128 ‖ nonce u64, then the merge marks of an account
    /// a merge touched), or null if absent.
    pub value: Option<String>,
    /// The proof.
    pub proof: ProofJson,
}

/// A connected peer (`peers`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerJson {
    /// libp2p peer id.
    pub id: String,
    /// Remote address.
    pub address: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The peer's best height.
    pub best_height: u64,
    /// Round-trip latency.
    pub latency_ms: Option<u64>,
    /// The peer's node address (`A…`), once it proved its node key by signing this node's
    /// challenge on connection; absent until then (or for a peer that never proves one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A pending transaction notification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxSummary {
    /// Hash.
    pub hash: Hash,
    /// Sender.
    pub from: String,
    /// Nonce.
    pub nonce: u64,
    /// Amount.
    pub amount: Aer,
}

/// An unstaking entry (`staking_account`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnstakingJson {
    /// Amount in aer.
    pub amount: Aer,
    /// Height at whose block start the amount returns to the balance.
    pub unlock_height: u64,
}

/// A BP candidate registration (`staking_account`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegistrationJson {
    /// The candidate's libp2p address, if it gave one.
    pub p2p_addr: Option<String>,
    /// Height of its first registration.
    pub registered_height: u64,
}

/// `staking_account`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StakingAccountJson {
    /// Address.
    pub address: String,
    /// Height read.
    pub height: u64,
    /// Staked aer.
    pub staked: Aer,
    /// Height of the stake's last change (0 if never staked).
    pub staked_height: u64,
    /// Pending unstaking entries, by unlock height.
    pub unstaking: Vec<UnstakingJson>,
    /// The ballot: candidate addresses, in the order voted.
    pub ballot: Vec<String>,
    /// The candidate registration, if registered.
    pub candidate: Option<RegistrationJson>,
}

/// A candidate in `dpos_candidates`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CandidateJson {
    /// 1-based rank (tally descending, then public key).
    pub rank: u32,
    /// Address.
    pub address: String,
    /// Its own stake in aer.
    pub stake: Aer,
    /// Stake-weighted votes in aer.
    pub tally: Aer,
    /// Its libp2p address, if it gave one.
    pub p2p_addr: Option<String>,
    /// Height of its first registration.
    pub registered_height: u64,
    /// Whether it can be elected: its stake meets `min_stake` and it was never convicted of a
    /// broken pre-confirmation.
    pub eligible: bool,
    /// Convicted of a broken pre-confirmation: never elected again.
    #[serde(default)]
    pub excluded: bool,
}

/// The governance parameters in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GovParamsJson {
    /// Block producers per schedule.
    pub bp_count: u64,
    /// Most candidates per ballot.
    pub max_votes: u64,
    /// Least stake of a candidate, in aer.
    pub min_stake: Aer,
    /// Blocks an unstaked amount stays locked.
    pub unstake_lock_blocks: u64,
}

/// `dpos_candidates`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DposCandidatesJson {
    /// Height read.
    pub height: u64,
    /// Parameters in force.
    pub params: GovParamsJson,
    /// Every registered candidate, ranked.
    pub candidates: Vec<CandidateJson>,
}

/// Pending governance votes for one value of one parameter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GovVoteJson {
    /// `bp_count`, `max_votes`, `min_stake` or `unstake_lock_blocks`.
    pub param: String,
    /// The value proposed (decimal string; aer for `min_stake`).
    pub value: String,
    /// Addresses of the BPs voting for it.
    pub voters: Vec<String>,
}

/// `dpos_governance`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GovernanceJson {
    /// Height read.
    pub height: u64,
    /// Parameters in force.
    pub params: GovParamsJson,
    /// Pending votes, by parameter then value.
    pub pending: Vec<GovVoteJson>,
    /// BPs in the current schedule.
    pub schedule_size: u64,
    /// Agreeing BPs of the current schedule needed to change a parameter.
    pub quorum: u64,
}

/// A repository as `repo_list` and `repo_show` report it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoJson {
    /// Its name.
    pub name: String,
    /// Its id (the chain id its transactions sign).
    pub id: Hash,
    /// `public` or `private`.
    pub visibility: String,
    /// `solo` or `poa`.
    pub engine: String,
    /// Admin accounts.
    pub admins: Vec<String>,
    /// Producer node keys, as addresses.
    pub producers: Vec<String>,
    /// The account that created it.
    pub creator: String,
    /// Root height of the block that created it.
    pub created_height: u64,
    /// The creating transaction.
    pub created_tx: Hash,
    /// Whether this node hosts it (then `height` and `finalized_height` are set).
    pub hosted: bool,
    /// Its best height, when hosted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Its finalized height, when hosted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_height: Option<u64>,
    /// How this node hosts it: `producer` (it produces it) or `member` (one of its nodes in
    /// the directory, following the producers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A pre-confirmation's receipt in readable form (the signed receipt is `receipt_bytes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreconfReceiptJson {
    /// `ok` or `failed`.
    pub status: String,
    /// Failure reason.
    pub error: Option<String>,
    /// Gas used.
    pub gas_used: u64,
    /// Fee in aer.
    pub fee: Aer,
    /// Return value (UTF-8 when printable, else hex).
    pub result: String,
    /// Events.
    pub events: Vec<EventJson>,
}

/// A signed pre-confirmation (`send_tx` with `wait: "preconfirmed"`, the `preconfirmations`
/// WebSocket topic). The signed bytes are in docs/RPC.md; [`PreconfJson::to_preconf`]
/// rebuilds the signed value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreconfJson {
    /// The chain (branch) id.
    pub chain_id: Hash,
    /// The slot (the block height on solo chains).
    pub slot: u64,
    /// The promised block's height.
    pub height: u64,
    /// The block it extends.
    pub parent: Hash,
    /// The transaction's index in the promised block.
    pub position: u32,
    /// The transaction.
    pub tx_hash: Hash,
    /// `s_{i-1}`.
    pub prev_sequencing_hash: Hash,
    /// `s_i = H(s_{i-1} ‖ tx hash ‖ receipt hash)`.
    pub sequencing_hash: Hash,
    /// The producer's public key (hex).
    pub producer: aergo_types::PublicKey,
    /// The producer's address.
    pub producer_address: String,
    /// The receipt, readable.
    pub receipt: PreconfReceiptJson,
    /// The receipt's canonical encoding (hex): what the sequencing hash and signature bind.
    pub receipt_bytes: String,
    /// The producer's ed25519 signature (hex).
    pub signature: aergo_types::Signature,
}

impl PreconfJson {
    /// The wire form of `p`.
    pub fn of(p: &aergo_types::preconf::Preconfirmation) -> Self {
        let r = &p.receipt;
        let (status, error) = match &r.status {
            aergo_types::ReceiptStatus::Ok => ("ok", None),
            aergo_types::ReceiptStatus::Failed(m) => ("failed", Some(m.clone())),
        };
        Self {
            chain_id: p.chain_id,
            slot: p.slot,
            height: p.height,
            parent: p.parent,
            position: p.position,
            tx_hash: p.tx_hash,
            prev_sequencing_hash: p.prev_sequencing_hash,
            sequencing_hash: p.sequencing_hash,
            producer: p.producer,
            producer_address: aergo_types::Address::from_public_key(&p.producer).encode(),
            receipt: PreconfReceiptJson {
                status: status.into(),
                error,
                gas_used: r.gas_used,
                fee: Aer(r.fee),
                result: match std::str::from_utf8(&r.result) {
                    Ok(s) => s.to_string(),
                    Err(_) => hex::encode(&r.result),
                },
                events: r
                    .events
                    .iter()
                    .map(|e| EventJson {
                        name: e.name.clone(),
                        data: e.data.clone(),
                    })
                    .collect(),
            },
            receipt_bytes: hex::encode(r.encode()),
            signature: p.signature,
        }
    }

    /// The signed value: `receipt_bytes` decoded, and the readable receipt checked against
    /// it (so neither can be altered alone).
    pub fn to_preconf(&self) -> Result<aergo_types::preconf::Preconfirmation, String> {
        let bytes = hex::decode(&self.receipt_bytes)
            .map_err(|e| format!("receipt_bytes is not hex: {e}"))?;
        let receipt = aergo_types::Receipt::decode(&bytes)
            .map_err(|e| format!("receipt_bytes is not a receipt: {e}"))?;
        let p = aergo_types::preconf::Preconfirmation {
            chain_id: self.chain_id,
            slot: self.slot,
            height: self.height,
            parent: self.parent,
            position: self.position,
            tx_hash: self.tx_hash,
            prev_sequencing_hash: self.prev_sequencing_hash,
            sequencing_hash: self.sequencing_hash,
            producer: self.producer,
            receipt,
            signature: self.signature,
        };
        if Self::of(&p).receipt != self.receipt {
            return Err("the readable receipt differs from receipt_bytes".into());
        }
        if aergo_types::Address::from_public_key(&self.producer).encode() != self.producer_address {
            return Err("producer_address is not the producer key's address".into());
        }
        Ok(p)
    }
}

/// `send_tx` with `wait: "preconfirmed"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreconfirmedResult {
    /// The transaction hash.
    pub hash: Hash,
    /// The producer's signed promise.
    pub preconfirmation: PreconfJson,
}

/// One processing stage in `pipeline_status` (counters since start; rates and mean
/// latencies come from two readings).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageJson {
    /// `ingest`, `verify`, `admit`, `assemble`, `execute`, `commit` or `publish`.
    pub name: String,
    /// Runs since start.
    pub runs: u64,
    /// Items handled since start (transactions; blocks for `commit` and `publish`).
    pub items: u64,
    /// Time spent in the stage since start, summed over concurrent runs (µs).
    pub busy_us: u64,
    /// Runs in progress now.
    pub inside: u64,
    /// Items waiting in front of the stage (its bounded queue) now.
    pub queue: u64,
}

/// `pipeline_status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PipelineStatusJson {
    /// The stages, in pipeline order.
    pub stages: Vec<StageJson>,
    /// The last block's DTT width: transactions runnable at once on average (0: no DTT).
    pub dtt_width: f64,
    /// Validation workers.
    pub exec_workers: u64,
}

/// `preconf_status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PreconfStatusJson {
    /// Whether this node pre-confirms.
    pub enabled: bool,
    /// The open pending block's height, if any.
    pub pending_height: Option<u64>,
    /// Transactions promised in the open pending block (the slot's sequence length).
    pub sequence_length: u64,
    /// Promises made since start.
    pub promised: u64,
    /// Logged promises that a restart could not keep.
    pub broken: u64,
    /// Promises in the last minute.
    pub last_minute: u64,
    /// p50 of admission → durable promise over the last minute (µs).
    pub p50_us: Option<u64>,
    /// p99 of the same.
    pub p99_us: Option<u64>,
    /// p50 over the last minute of single `send_tx` calls with `wait: "preconfirmed"`
    /// answered with a promise, from the request's arrival in the JSON-RPC handler to its
    /// answer (µs): the node's whole share of what a client waits, apart from HTTP itself.
    #[serde(default)]
    pub request_p50_us: Option<u64>,
    /// p99 of the same.
    #[serde(default)]
    pub request_p99_us: Option<u64>,
    /// Producers convicted of a broken pre-confirmation on this chain (evidence
    /// transactions that penalised someone; 0 from a node that predates them).
    #[serde(default)]
    pub evidence: u64,
}
