//! The chain: opening and recovery, block production and validation, the commit protocol,
//! and queries at any height.
//!
//! Commit protocol (one fsync per block): (1) the block is appended to the block log and
//! fdatasync'ed — from this instant it is committed; (2) one RocksDB write batch records the
//! state versions, Merkle nodes, indexes, receipts and the new tip with its log position
//! (unsynced: RocksDB's own WAL makes the batch atomic, the block log makes it durable);
//! (3) caches and the tip advance and the block is published. On open, frames found in the
//! log past RocksDB's tip are re-executed and applied (their state roots must match), and a
//! torn tail is cut. A crash at any instant therefore leaves no half-applied block and loses
//! no block that was reported committed.

use crate::blocklog::{BlockLog, Location, LogPos};
use crate::consensus::Slot;
use crate::ctx::BlockCtx;
use crate::dpos::{self, DposParams, Schedule, SlotGuard};
use crate::engine::{BlockStart, Engine};
use crate::error::ChainError;
use crate::exec::{self, Executed};
use crate::limits::{BLOCK_HEADER_ROOM, HEAD_CACHE_MAX, NODE_CACHE_MAX, SIDE_MAX};
use crate::poa::PoaParams;
use crate::rounds;
use crate::smt::{self, Node, NodeSource, Proof, Updater};
use crate::state::Overlay;
use crate::state::{account_key, Account, StateView, WriteSet};
use crate::store::{self, CF_BLOCKS, CF_CANON, CF_META, CF_SMT, CF_STATE, CF_TXS, MAIN_BRANCH};
use aergo_os::io::IoService;
use aergo_types::block::Receipt;
use aergo_types::hash::merkle_root;
use aergo_types::{
    Address, Block, Genesis, Hash, Header, Keypair, PublicKey, Signature, SignedTx, MAX_BLOCK_SIZE,
};
use parking_lot::{Mutex, RwLock};
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

/// How to open a chain.
pub struct ChainOptions {
    /// Data folder (RocksDB in `db/`, block log in `blocks/`).
    pub data_dir: PathBuf,
    /// The genesis.
    pub genesis: Genesis,
    /// The file I/O service for the block log.
    pub io: IoService,
}

/// The best block.
#[derive(Debug, Clone)]
pub struct Tip {
    /// Its header.
    pub header: Header,
    /// Its hash.
    pub hash: Hash,
    /// Where the log ends after it.
    pub log_end: LogPos,
}

/// What the index keeps about a block (enough for lists without reading the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// Height.
    pub height: u64,
    /// Location in the block log.
    pub loc: Location,
    /// Encoded size.
    pub size: u32,
    /// Number of transactions.
    pub tx_count: u32,
    /// Gas used by all transactions.
    pub gas_used: u64,
    /// Timestamp.
    pub timestamp_ms: u64,
    /// Producer.
    pub producer: PublicKey,
}

impl BlockMeta {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(84);
        v.extend_from_slice(&self.height.to_be_bytes());
        v.extend_from_slice(&self.loc.pos.encode());
        v.extend_from_slice(&self.loc.len.to_be_bytes());
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.tx_count.to_be_bytes());
        v.extend_from_slice(&self.gas_used.to_be_bytes());
        v.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        v.extend_from_slice(&self.producer.0);
        v
    }
    fn decode(b: &[u8]) -> Result<Self, ChainError> {
        let mut r = aergo_types::codec::Reader::new(b);
        let height = r.u64("height")?;
        let pos = LogPos::decode(r.take(12, "pos")?)?;
        let len = r.u32("len")?;
        let m = BlockMeta {
            height,
            loc: Location { pos, len },
            size: r.u32("size")?,
            tx_count: r.u32("tx count")?,
            gas_used: r.u64("gas")?,
            timestamp_ms: r.u64("ts")?,
            producer: PublicKey(r.array("producer")?),
        };
        r.finish()?;
        Ok(m)
    }
}

/// Where a transaction is.
#[derive(Debug, Clone)]
pub struct TxLocation {
    /// Block hash.
    pub block_hash: Hash,
    /// Block height.
    pub height: u64,
    /// Index in the block.
    pub index: u32,
    /// Its receipt.
    pub receipt: Receipt,
}

/// The chain.
pub struct Chain {
    db: DB,
    log: BlockLog,
    genesis: Genesis,
    chain_id: Hash,
    engine: Engine,
    /// Valid-looking blocks off the best chain (competing forks, blocks waiting for their
    /// parent), above LIB, bounded.
    side: Mutex<HashMap<Hash, Block>>,
    /// The best chain's blocks above LIB (and the LIB block), for finality.
    recent: Mutex<VecDeque<dpos::BlockMeta>>,
    tip: RwLock<Tip>,
    head: Mutex<HashMap<Vec<u8>, Option<Vec<u8>>>>,
    nodes: Mutex<HashMap<Hash, Node>>,
    commit: Mutex<()>,
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, ChainError> {
    db.cf_handle(name)
        .ok_or_else(|| ChainError::Db(format!("missing column family {name}")))
}

/// Reads state at one height on `main` straight from RocksDB.
pub struct HeightView<'a> {
    db: &'a DB,
    height: u64,
}

impl StateView for HeightView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        read_versioned(self.db, key, self.height)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<crate::state::Pairs, ChainError> {
        scan_versioned(self.db, start, end, self.height, usize::MAX)
    }

    fn scan_limit(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<crate::state::Pairs, ChainError> {
        scan_versioned(self.db, start, end, self.height, limit)
    }
}

/// Versions of one key stepped over one by one before a scan seeks past the rest.
const SCAN_STEPS_BEFORE_SEEK: u32 = 4;

/// Range scan at a height: walks the versions of every key in `[start, end)` on `main` and
/// keeps, per key, the newest version at or below `height` (skipping deletions); stops after
/// `limit` pairs. Runs of unused versions longer than [`SCAN_STEPS_BEFORE_SEEK`] are jumped
/// over with one seek.
fn scan_versioned(
    db: &DB,
    start: &[u8],
    end: &[u8],
    height: u64,
    limit: usize,
) -> Result<crate::state::Pairs, ChainError> {
    let mut out = Vec::new();
    if start >= end || limit == 0 {
        return Ok(out);
    }
    let branch = MAIN_BRANCH.to_be_bytes();
    let mut seek = branch.to_vec();
    let mut body = Vec::new();
    store::escape_key(start, &mut body);
    body.truncate(body.len() - 2); // without the terminator: sorts before every key >= start
    seek.extend_from_slice(&body);
    let mut it = db.raw_iterator_cf(cf(db, CF_STATE)?);
    it.seek(&seek);
    let mut last_key: Option<Vec<u8>> = None;
    let mut steps = 0u32;
    while it.valid() {
        let (Some(k), Some(v)) = (it.key(), it.value()) else {
            break;
        };
        if !k.starts_with(&branch) {
            break;
        }
        let rest = k.get(4..).unwrap_or(&[]);
        let (key, used) = store::unescape_key(rest)
            .ok_or_else(|| ChainError::Corrupt("state key encoding".into()))?;
        if key.as_slice() >= end {
            break;
        }
        let ver_bytes: [u8; 8] = rest
            .get(used..used + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ChainError::Corrupt("state version".into()))?;
        let version = !u64::from_be_bytes(ver_bytes);
        let seen = last_key.as_deref() == Some(key.as_slice());
        if !seen && version <= height {
            match v.split_first() {
                Some((1, val)) => out.push((key.clone(), val.to_vec())),
                Some((0, _)) => {}
                _ => return Err(ChainError::Corrupt("state value tag".into())),
            }
            if out.len() >= limit {
                break;
            }
            last_key = Some(key);
            steps = 0;
            it.next();
            continue;
        }
        // A version this scan does not use: an older one of a key already read, or one newer
        // than `height`. A few are stepped over; past that, one seek jumps over the rest, so
        // a key rewritten a million times costs a seek, not a million steps.
        steps += 1;
        if steps <= SCAN_STEPS_BEFORE_SEEK {
            it.next();
            continue;
        }
        steps = 0;
        if seen {
            // Past the oldest possible version (height 0 sorts last) of this key.
            let oldest = store::state_version_key(MAIN_BRANCH, &key, 0);
            it.seek(&oldest);
            if it.valid() && it.key() == Some(oldest.as_slice()) {
                it.next();
            }
        } else {
            // To this key's newest version at or below `height`.
            it.seek(store::state_version_key(MAIN_BRANCH, &key, height));
        }
    }
    it.status()?;
    Ok(out)
}

fn read_versioned(db: &DB, key: &[u8], height: u64) -> Result<Option<Vec<u8>>, ChainError> {
    let prefix = store::state_prefix(MAIN_BRANCH, key);
    let seek = store::state_version_key(MAIN_BRANCH, key, height);
    let mut it = db.raw_iterator_cf(cf(db, CF_STATE)?);
    it.seek(&seek);
    if !it.valid() {
        it.status()?;
        return Ok(None);
    }
    match (it.key(), it.value()) {
        (Some(k), Some(v)) if k.len() == prefix.len() + 8 && k.starts_with(&prefix) => {
            match v.split_first() {
                Some((1, rest)) => Ok(Some(rest.to_vec())),
                Some((0, _)) => Ok(None),
                _ => Err(ChainError::Corrupt("state value tag".into())),
            }
        }
        _ => Ok(None),
    }
}

/// Reads the latest state through the head cache (used by block production and admission).
struct HeadView<'a> {
    chain: &'a Chain,
    height: u64,
}

impl StateView for HeadView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        if let Some(v) = self.chain.head.lock().get(key) {
            return Ok(v.clone());
        }
        let v = read_versioned(&self.chain.db, key, self.height)?;
        let mut h = self.chain.head.lock();
        // Cache only if no block committed since this view's height: commits update the
        // cache and the tip under this same lock, so a value read at an older height can
        // never overwrite a newer one.
        if self.chain.tip.read().header.height == self.height {
            if h.len() >= HEAD_CACHE_MAX {
                h.clear();
            }
            h.insert(key.to_vec(), v.clone());
        }
        Ok(v)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<crate::state::Pairs, ChainError> {
        // Every committed write is in RocksDB before the cache sees it.
        scan_versioned(&self.chain.db, start, end, self.height, usize::MAX)
    }

    fn scan_limit(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<crate::state::Pairs, ChainError> {
        scan_versioned(&self.chain.db, start, end, self.height, limit)
    }
}

impl NodeSource for Chain {
    fn node(&self, h: &Hash) -> Result<Option<Node>, ChainError> {
        if let Some(n) = self.nodes.lock().get(h) {
            return Ok(Some(*n));
        }
        match self.db.get_cf(cf(&self.db, CF_SMT)?, h.0)? {
            Some(b) => {
                let n = Node::decode(&b)?;
                let mut c = self.nodes.lock();
                if c.len() >= NODE_CACHE_MAX {
                    c.clear();
                }
                c.insert(*h, n);
                Ok(Some(n))
            }
            None => Ok(None),
        }
    }
}

/// A block ready to commit: executed, with its new Merkle nodes.
pub struct Prepared {
    /// The block.
    pub block: Block,
    /// Execution results.
    pub executed: Executed,
    nodes: HashMap<Hash, Node>,
}

/// What producing a block returned.
pub struct Produced {
    /// The committed block.
    pub block: Block,
    /// Its receipts.
    pub receipts: Vec<Receipt>,
    /// Candidates that could not be included, with the reason.
    pub rejected: Vec<(Hash, String)>,
    /// Each sender's next nonce after the block.
    pub nonces: HashMap<Address, u64>,
    /// Encoded size of the block.
    pub size: usize,
}

fn smt_updates(writes: &WriteSet) -> Vec<(Hash, Option<Hash>)> {
    writes
        .iter()
        .map(|(k, v)| (Hash::of(k), v.as_ref().map(|v| Hash::of(v))))
        .collect()
}

fn genesis_block(g: &Genesis, chain_id: Hash, state_root: Hash) -> Block {
    Block {
        header: Header {
            chain_id,
            height: 0,
            parent: Hash::ZERO,
            timestamp_ms: g.timestamp_ms,
            producer: PublicKey([0; 32]),
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root,
            consensus: Vec::new(),
            signature: Signature::default(),
        },
        txs: Vec::new(),
    }
}

pub use crate::engine::{dpos_params, poa_params};

/// What became of a block received from the network.
#[derive(Debug)]
pub enum Received {
    /// Already known (best chain or kept aside).
    Known,
    /// It extended the best chain.
    Extended(Box<Block>),
    /// Kept aside: a competing fork not (yet) longer than the best chain.
    Stored,
    /// Kept aside; its parent (or an older ancestor) is unknown: sync from `from`.
    MissingParent {
        /// Height to fetch from.
        from: u64,
        /// Height of the block received.
        to: u64,
    },
    /// The best chain switched to a longer fork.
    Reorged {
        /// Height of the common ancestor.
        common: u64,
        /// Blocks taken off the best chain (ascending).
        reverted: Vec<Block>,
        /// Blocks applied (ascending).
        applied: Vec<Block>,
    },
}

impl Chain {
    /// Opens the chain in `opts.data_dir`, creating the genesis state on first start and
    /// recovering from the block log after a crash.
    pub fn open(opts: ChainOptions) -> Result<Self, ChainError> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let db = store::open(&opts.data_dir.join("db"))?;
        let log = BlockLog::open(&opts.data_dir.join("blocks"), opts.io)?;
        let chain_id = opts.genesis.chain_id();
        if let Some(found) = db.get_cf(cf(&db, CF_META)?, b"chain_id")? {
            let found = Hash(
                found
                    .as_slice()
                    .try_into()
                    .map_err(|_| ChainError::Corrupt("chain id".into()))?,
            );
            if found != chain_id {
                return Err(ChainError::WrongChain {
                    expected: chain_id,
                    found,
                });
            }
        }
        let engine = Engine::from_genesis(&opts.genesis)?;
        if engine.uses_slot_guard() {
            let guard = SlotGuard::open(opts.data_dir.join("slot.guard"))
                .map_err(|e| ChainError::Consensus(e.to_string()))?;
            engine.attach_guard(guard);
        }
        let placeholder = Tip {
            header: genesis_block(&opts.genesis, chain_id, Hash::ZERO).header,
            hash: Hash::ZERO,
            log_end: LogPos::default(),
        };
        let chain = Chain {
            db,
            log,
            genesis: opts.genesis,
            chain_id,
            engine,
            side: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            tip: RwLock::new(placeholder),
            head: Mutex::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
            commit: Mutex::new(()),
        };
        chain.recover()?;
        chain.restore_finality()?;
        Ok(chain)
    }

    /// The tip record in `meta` (`tip` = height u64 BE ‖ hash ‖ log end as [`LogPos`]),
    /// written in the same batch as the block it names.
    fn tip_record(&self) -> Result<Option<(u64, Hash, LogPos)>, ChainError> {
        let Some(b) = self.db.get_cf(cf(&self.db, CF_META)?, b"tip")? else {
            return Ok(None);
        };
        if b.len() != 8 + 32 + 12 {
            return Err(ChainError::Corrupt("tip record".into()));
        }
        let mut h = [0u8; 8];
        h.copy_from_slice(&b[..8]);
        let hash = Hash(
            b[8..40]
                .try_into()
                .map_err(|_| ChainError::Corrupt("tip".into()))?,
        );
        let log_end = LogPos::decode(&b[40..])?;
        Ok(Some((u64::from_be_bytes(h), hash, log_end)))
    }

    fn load_tip(&self) -> Result<Option<Tip>, ChainError> {
        let Some((_, hash, log_end)) = self.tip_record()? else {
            return Ok(None);
        };
        let block = self
            .block_by_hash(&hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("tip block {hash} missing")))?;
        Ok(Some(Tip {
            header: block.header,
            hash,
            log_end,
        }))
    }

    fn recover(&self) -> Result<(), ChainError> {
        let scan_from = match self.load_tip()? {
            Some(tip) => {
                let end = tip.log_end;
                *self.tip.write() = tip;
                end
            }
            None => {
                // Fresh database: the genesis state, then whatever the log already holds.
                let (frames, _) = self.log.scan_from(LogPos::default())?;
                let mut writes = WriteSet::new();
                for a in &self.genesis.balances {
                    let v = Account {
                        balance: a.balance.0,
                        nonce: 0,
                    }
                    .encode();
                    writes.insert(account_key(&a.address), Some(v));
                }
                self.engine.genesis_writes(&self.genesis, &mut writes)?;

                let src = smt::MemNodes::default();
                let mut up = Updater::new(&src);
                let root = up.update(Hash::ZERO, &smt_updates(&writes))?;
                let block = genesis_block(&self.genesis, self.chain_id, root);
                let prepared = Prepared {
                    block,
                    executed: Executed {
                        writes,
                        ..Default::default()
                    },
                    nodes: up.new_nodes,
                };
                let existing = match frames.first() {
                    Some(f) => {
                        let b = Block::decode(&f.payload)?;
                        if f.height != 0 || b.hash() != prepared.block.hash() {
                            return Err(ChainError::Log(
                                "the block log starts with a different genesis block".into(),
                            ));
                        }
                        Some(f.loc)
                    }
                    None => None,
                };
                // The chain id first: a crash before the genesis block lands repeats this.
                self.db
                    .put_cf(cf(&self.db, CF_META)?, b"chain_id", self.chain_id.0)?;
                self.write_block(prepared, existing)?;
                self.tip.read().log_end
            }
        };
        let (frames, torn) = self.log.scan_from(scan_from)?;
        let mut replayed = 0;
        for f in frames {
            let block = Block::decode(&f.payload)?;
            let prepared = self.prepare(block)?;
            self.write_block(prepared, Some(f.loc))?;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::warn!(
                replayed,
                "recovered blocks from the block log that the database had not applied"
            );
        }
        if let Some(pos) = torn {
            tracing::warn!(
                segment = pos.seg,
                offset = pos.offset,
                "cutting a torn tail off the block log"
            );
            self.log.truncate(pos)?;
        } else if self.log.end() != self.tip.read().log_end {
            self.log.truncate(self.tip.read().log_end)?;
        }
        Ok(())
    }

    /// The chain id.
    pub fn chain_id(&self) -> Hash {
        self.chain_id
    }
    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    /// The consensus engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    /// The I/O service behind the block log.
    pub fn io(&self) -> &IoService {
        self.log.io()
    }
    /// The best block.
    pub fn tip(&self) -> Tip {
        self.tip.read().clone()
    }
    /// The finalized height.
    pub fn finalized_height(&self) -> u64 {
        self.engine.finalized_height(self.tip.read().header.height)
    }

    /// The context of a block built on `parent` (the state its gas limits come from).
    fn ctx(
        &self,
        header: &Header,
        parent: &dyn StateView,
        start: &BlockStart,
    ) -> Result<BlockCtx, ChainError> {
        Ok(BlockCtx {
            height: header.height,
            timestamp_ms: header.timestamp_ms,
            producer: Address::from_public_key(&header.producer),
            chain_id: self.chain_id,
            gas: self.genesis.gas.clone(),
            dpos: start.dpos.clone(),
            limits: crate::staking::gas_limits(parent, &self.genesis.gas)?,
        })
    }

    /// The gas limits the next block is built under (the tip's state): what admission
    /// checks a transaction's gas limit against.
    pub fn gas_limits(&self) -> Result<exec::GasLimits, ChainError> {
        let h = self.tip.read().header.height;
        crate::staking::gas_limits(
            &HeadView {
                chain: self,
                height: h,
            },
            &self.genesis.gas,
        )
    }

    /// An account at the tip (through the head cache).
    pub fn account_latest(&self, addr: &Address) -> Result<Account, ChainError> {
        let h = self.tip.read().header.height;
        HeadView {
            chain: self,
            height: h,
        }
        .account(addr)
    }

    /// An account at a past height.
    pub fn account_at(&self, addr: &Address, height: u64) -> Result<Account, ChainError> {
        let tip = self.tip.read().header.height;
        if height > tip {
            return Err(ChainError::NotFound(format!(
                "height {height} is above the best height {tip}"
            )));
        }
        HeightView {
            db: &self.db,
            height,
        }
        .account(addr)
    }

    /// Builds, signs and commits a block from `candidates` (in priority order).
    pub fn produce(
        &self,
        key: &Keypair,
        candidates: Vec<SignedTx>,
        timestamp_ms: u64,
        consensus: Vec<u8>,
    ) -> Result<Produced, ChainError> {
        let _g = self.commit.lock();
        let tip = self.tip();
        let mut header = Header {
            chain_id: self.chain_id,
            height: tip.header.height + 1,
            parent: tip.hash,
            timestamp_ms,
            producer: key.public(),
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus,
            signature: Signature::default(),
        };
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        let start = self.engine.begin_block(&view, &header)?;
        self.engine.check_own_slot(&tip.header, &header, &start)?;
        self.engine.install(&start);
        let ctx = self.ctx(&header, &view, &start)?;
        let pre = start.writes;
        let base = Overlay {
            base: &view,
            writes: pre.clone(),
        };
        let (txs, mut executed, rejected) =
            exec::assemble(&base, candidates, &ctx, MAX_BLOCK_SIZE - BLOCK_HEADER_ROOM)?;
        self.engine.end_block(&view, &header, pre, &mut executed)?;
        let mut up = Updater::new(self);
        header.state_root = up.update(tip.header.state_root, &smt_updates(&executed.writes))?;
        header.tx_root = Block::compute_tx_root(&txs);
        header.receipts_root = merkle_root(
            &executed
                .receipts
                .iter()
                .map(|r| r.hash())
                .collect::<Vec<_>>(),
        );
        // Durable record first: never two signatures for one slot, even across restarts.
        self.engine.before_signing(&header)?;
        header.sign(key);
        let nonces = next_nonces(&txs, &executed.writes);
        let block = Block { header, txs };
        let receipts = executed.receipts.clone();
        let prepared = Prepared {
            block: block.clone(),
            executed,
            nodes: up.new_nodes,
        };
        let size = self.write_block(prepared, None)?;
        self.advance_finality()?;
        Ok(Produced {
            block,
            receipts,
            rejected,
            nonces,
            size,
        })
    }

    /// Validates and executes a block on the tip without committing it.
    pub fn prepare(&self, block: Block) -> Result<Prepared, ChainError> {
        let tip = self.tip();
        let h = &block.header;
        let bad = |reason: String| ChainError::InvalidBlock {
            hash: block.hash(),
            height: h.height,
            reason,
        };
        if h.chain_id != self.chain_id {
            return Err(bad("wrong chain id".into()));
        }
        if h.height != tip.header.height + 1 || h.parent != tip.hash {
            return Err(bad(format!(
                "does not extend the tip {} at height {}",
                tip.hash, tip.header.height
            )));
        }
        if !h.verify_signature() {
            return Err(bad("bad producer signature".into()));
        }
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        let start = self
            .engine
            .begin_block(&view, h)
            .map_err(|e| bad(e.to_string()))?;
        self.engine.install(&start);
        self.engine.validate(&tip.header, h).map_err(bad)?;
        if block.encode().len() > MAX_BLOCK_SIZE {
            return Err(bad("block exceeds 1 MiB".into()));
        }
        if Block::compute_tx_root(&block.txs) != h.tx_root {
            return Err(bad("tx root mismatch".into()));
        }
        let sigs: Vec<(PublicKey, &[u8], Signature)> = block
            .txs
            .iter()
            .map(|t| (t.tx.from, &t.hash.0[..], t.signature))
            .collect();
        if let Some(i) = aergo_types::crypto::verify_batch(&sigs)
            .iter()
            .position(|ok| !ok)
        {
            return Err(bad(format!("transaction {i} has a bad signature")));
        }
        let ctx = self.ctx(h, &view, &start).map_err(|e| bad(e.to_string()))?;
        let pre = start.writes;
        let base = Overlay {
            base: &view,
            writes: pre.clone(),
        };
        let mut executed =
            exec::execute_block(&base, &block.txs, &ctx).map_err(|e| bad(e.to_string()))?;
        self.engine
            .end_block(&view, h, pre, &mut executed)
            .map_err(|e| bad(e.to_string()))?;
        let receipts_root = merkle_root(
            &executed
                .receipts
                .iter()
                .map(|r| r.hash())
                .collect::<Vec<_>>(),
        );
        if receipts_root != h.receipts_root {
            return Err(bad("receipts root mismatch".into()));
        }
        let mut up = Updater::new(self);
        let root = up.update(tip.header.state_root, &smt_updates(&executed.writes))?;
        if root != h.state_root {
            return Err(bad(format!("state root mismatch: computed {root}")));
        }
        Ok(Prepared {
            block,
            executed,
            nodes: up.new_nodes,
        })
    }

    /// Validates, executes and commits a block received from elsewhere.
    pub fn apply(&self, block: Block) -> Result<(), ChainError> {
        let _g = self.commit.lock();
        let p = self.prepare(block)?;
        self.write_block(p, None)?;
        self.advance_finality()
    }

    /// The commit protocol (see module docs). `existing` is the block's location when it is
    /// already in the log (recovery).
    // Sizes, counts and indexes below are bounded by MAX_BLOCK_SIZE (1 MiB, checked before a
    // block gets here), far inside u32.
    #[allow(clippy::cast_possible_truncation)]
    fn write_block(&self, p: Prepared, existing: Option<Location>) -> Result<usize, ChainError> {
        let block = &p.block;
        let height = block.header.height;
        self.check_commit_point(&block.header, existing)?;
        let hash = block.hash();
        let payload = block.encode();
        let loc = match existing {
            Some(l) => l,
            None => self.log.append(height, &payload)?,
        };
        let mut batch = WriteBatch::default();
        let state_cf = cf(&self.db, CF_STATE)?;
        for (k, v) in &p.executed.writes {
            let val = match v {
                Some(v) => {
                    let mut b = Vec::with_capacity(v.len() + 1);
                    b.push(1);
                    b.extend_from_slice(v);
                    b
                }
                None => vec![0],
            };
            batch.put_cf(
                state_cf,
                store::state_version_key(MAIN_BRANCH, k, height),
                val,
            );
        }
        let smt_cf = cf(&self.db, CF_SMT)?;
        for (h, n) in &p.nodes {
            batch.put_cf(smt_cf, h.0, n.encode());
        }
        let meta = BlockMeta {
            height,
            loc,
            size: payload.len() as u32,
            tx_count: block.txs.len() as u32,
            gas_used: p.executed.gas_used,
            timestamp_ms: block.header.timestamp_ms,
            producer: block.header.producer,
        };
        batch.put_cf(cf(&self.db, CF_BLOCKS)?, hash.0, meta.encode());
        batch.put_cf(
            cf(&self.db, CF_CANON)?,
            store::canon_key(MAIN_BRANCH, height),
            hash.0,
        );
        let txs_cf = cf(&self.db, CF_TXS)?;
        for (i, (tx, r)) in block.txs.iter().zip(&p.executed.receipts).enumerate() {
            let mut v = Vec::with_capacity(128);
            v.extend_from_slice(&hash.0);
            v.extend_from_slice(&height.to_be_bytes());
            v.extend_from_slice(&(i as u32).to_be_bytes());
            v.extend_from_slice(&r.encode());
            batch.put_cf(txs_cf, tx.hash.0, v);
        }
        if self.engine.reorgs() {
            // What this block wrote, so a reorganisation can take it back.
            batch.put_cf(
                cf(&self.db, CF_META)?,
                undo_key(height),
                encode_keys(p.executed.writes.keys()),
            );
        }
        let end = loc.end();
        let mut tip_rec = Vec::with_capacity(52);
        tip_rec.extend_from_slice(&height.to_be_bytes());
        tip_rec.extend_from_slice(&hash.0);
        tip_rec.extend_from_slice(&end.encode());
        batch.put_cf(cf(&self.db, CF_META)?, b"tip", tip_rec);
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.write_opt(batch, &wo)?;
        {
            let mut nodes = self.nodes.lock();
            if nodes.len() + p.nodes.len() >= NODE_CACHE_MAX {
                nodes.clear();
            }
            nodes.extend(p.nodes);
        }
        // Cache and tip advance together under the head lock (see `HeadView::get`).
        let mut head = self.head.lock();
        for (k, v) in &p.executed.writes {
            head.insert(k.clone(), v.clone());
        }
        if let Some(m) = self.engine.on_commit(&p.block.header) {
            self.recent.lock().push_back(m);
        }
        *self.tip.write() = Tip {
            header: p.block.header,
            hash,
            log_end: end,
        };
        Ok(payload.len())
    }

    /// The commit points, checked in every profile before anything is written (debug
    /// assertions never run in the one release profile): the in-memory tip is the one
    /// recorded in `meta`; the block extends it (height = tip + 1 and parent = tip hash; the
    /// genesis block, height 0 with a zero parent, only while no tip is recorded); and the
    /// block goes where the tip's recorded log position says the log ends — for an append
    /// the log's end is that position, for a frame already in the log (recovery) the frame
    /// starts there or at the start of the next segment (a segment rolled over). A violation
    /// is an impossible state: [`ChainError::Corrupt`], and the commit stops.
    fn check_commit_point(
        &self,
        header: &Header,
        existing: Option<Location>,
    ) -> Result<(), ChainError> {
        let tip = self.tip();
        let refused = |what: String| ChainError::Corrupt(format!("commit refused: {what}"));
        let (want_height, want_parent) = match self.tip_record()? {
            Some((height, hash, log_end)) => {
                if height != tip.header.height || hash != tip.hash || log_end != tip.log_end {
                    return Err(refused(format!(
                        "the recorded tip (height {height}, {hash}) is not the chain's tip \
                         (height {}, {})",
                        tip.header.height, tip.hash
                    )));
                }
                let next = height
                    .checked_add(1)
                    .ok_or_else(|| refused("the tip height is at its maximum".into()))?;
                (next, hash)
            }
            // No tip yet: only the genesis block may be committed.
            None if tip.hash == Hash::ZERO => (0, Hash::ZERO),
            None => {
                return Err(refused(format!(
                    "no tip is recorded, the chain's tip is {}",
                    tip.hash
                )))
            }
        };
        if header.height != want_height {
            return Err(refused(format!(
                "block at height {} does not follow the tip (next height {want_height})",
                header.height
            )));
        }
        if header.parent != want_parent {
            return Err(refused(format!(
                "block at height {} names parent {}, the tip is {want_parent}",
                header.height, header.parent
            )));
        }
        match existing {
            None => {
                let end = self.log.end();
                if end != tip.log_end {
                    return Err(refused(format!(
                        "the block log ends at {end:?}, the tip's recorded log position is {:?}",
                        tip.log_end
                    )));
                }
            }
            Some(loc) => {
                let next_segment = tip
                    .log_end
                    .seg
                    .checked_add(1)
                    .map(|seg| LogPos { seg, offset: 0 });
                if loc.pos != tip.log_end && Some(loc.pos) != next_segment {
                    return Err(refused(format!(
                        "the frame at {:?} does not start at the tip's recorded log position {:?}",
                        loc.pos, tip.log_end
                    )));
                }
            }
        }
        Ok(())
    }

    /// A block's index record.
    pub fn block_meta(&self, hash: &Hash) -> Result<Option<BlockMeta>, ChainError> {
        match self.db.get_cf(cf(&self.db, CF_BLOCKS)?, hash.0)? {
            Some(b) => Ok(Some(BlockMeta::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// The canonical block hash at `height`.
    pub fn hash_at(&self, height: u64) -> Result<Option<Hash>, ChainError> {
        match self.db.get_cf(
            cf(&self.db, CF_CANON)?,
            store::canon_key(MAIN_BRANCH, height),
        )? {
            Some(b) => Ok(Some(Hash(
                b.as_slice()
                    .try_into()
                    .map_err(|_| ChainError::Corrupt("canon".into()))?,
            ))),
            None => Ok(None),
        }
    }

    /// A block by hash (read from the block log).
    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, ChainError> {
        let Some(m) = self.block_meta(hash)? else {
            return Ok(None);
        };
        let bytes = self.log.read(&m.loc, m.height)?;
        let b = Block::decode(&bytes)?;
        if b.hash() != *hash {
            return Err(ChainError::Corrupt(format!(
                "block log frame for {hash} holds another block"
            )));
        }
        Ok(Some(b))
    }

    /// A block by height.
    pub fn block_by_height(&self, height: u64) -> Result<Option<Block>, ChainError> {
        match self.hash_at(height)? {
            Some(h) => self.block_by_hash(&h),
            None => Ok(None),
        }
    }

    /// Where a transaction was included, with its receipt.
    pub fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, ChainError> {
        let Some(v) = self.db.get_cf(cf(&self.db, CF_TXS)?, hash.0)? else {
            return Ok(None);
        };
        let mut r = aergo_types::codec::Reader::new(&v);
        let block_hash = Hash(r.array("block hash")?);
        let height = r.u64("height")?;
        let index = r.u32("index")?;
        let receipt = Receipt::decode(r.take(r.remaining(), "receipt")?)?;
        Ok(Some(TxLocation {
            block_hash,
            height,
            index,
            receipt,
        }))
    }

    /// A Merkle proof of an account's state at `height` against that block's state root.
    pub fn account_proof(
        &self,
        addr: &Address,
        height: u64,
    ) -> Result<(Header, Option<Vec<u8>>, Proof), ChainError> {
        let block = self
            .block_by_height(height)?
            .ok_or_else(|| ChainError::NotFound(format!("no block at height {height}")))?;
        let key = account_key(addr);
        let value = HeightView {
            db: &self.db,
            height,
        }
        .get(&key)?;
        let proof = smt::prove(self, block.header.state_root, &Hash::of(&key))?;
        Ok((block.header, value, proof))
    }

    fn contract_at(
        &self,
        addr: &Address,
        height: Option<u64>,
    ) -> Result<(u64, aergo_sql::Contract), ChainError> {
        let tip = self.tip.read().header.height;
        let h = height.unwrap_or(tip);
        if h > tip {
            return Err(ChainError::NotFound(format!(
                "height {h} is above the best height {tip}"
            )));
        }
        let view = HeightView {
            db: &self.db,
            height: h,
        };
        let kv = crate::contracts::ReadKv { view: &view };
        match crate::contracts::load(addr, &kv) {
            Ok(Some(c)) => Ok((h, c)),
            Ok(None) => Err(ChainError::NotFound(format!(
                "no contract at {addr} at height {h}"
            ))),
            Err(e) => Err(ChainError::Corrupt(e)),
        }
    }

    /// A free read-only SQL query on a contract's tables at a height (default: the tip).
    pub fn contract_query(
        &self,
        addr: &Address,
        sql: &str,
        height: Option<u64>,
    ) -> Result<Result<aergo_sql::QueryResult, String>, ChainError> {
        let (h, c) = self.contract_at(addr, height)?;
        let view = HeightView {
            db: &self.db,
            height: h,
        };
        let kv = crate::contracts::ReadKv { view: &view };
        Ok(c.query(sql, &kv, crate::contracts::QUERY_GAS_CAP)
            .map_err(|e| e.to_string()))
    }

    /// A contract's functions and tables.
    pub fn contract_abi(
        &self,
        addr: &Address,
        height: Option<u64>,
    ) -> Result<(aergo_sql::Abi, String), ChainError> {
        let (_, c) = self.contract_at(addr, height)?;
        Ok((c.abi(), c.owner().to_string()))
    }

    /// Runs a function read-only (writes discarded) at a height, as `caller`.
    pub fn contract_view(
        &self,
        addr: &Address,
        function: &str,
        args: Vec<String>,
        caller: Address,
        height: Option<u64>,
    ) -> Result<Result<aergo_sql::CallOutcome, String>, ChainError> {
        let (h, c) = self.contract_at(addr, height)?;
        let view = HeightView {
            db: &self.db,
            height: h,
        };
        let ov = crate::state::Overlay::new(&view);
        let ts = self
            .block_by_height(h)?
            .map(|b| b.header.timestamp_ms)
            .unwrap_or(0);
        let mut ctx = crate::contracts::CallCtx {
            ov: &ov,
            sender: caller,
            contract: *addr,
            height: h,
            time_ms: ts,
            tx_hash: Hash::ZERO,
            amount: 0,
            sends: Vec::new(),
        };
        let kv = crate::contracts::ReadKv { view: &view };
        let args: Vec<aergo_sql::Value> = args.into_iter().map(aergo_sql::Value::Text).collect();
        Ok(c.view(
            function,
            &args,
            &mut ctx,
            &kv,
            crate::contracts::QUERY_GAS_CAP,
        )
        .map_err(|e| e.to_string()))
    }

    /// Every block in the log, checked against the index: used by consistency tests and
    /// `aergo-node check`. Returns the number of blocks verified.
    pub fn verify_log_matches_index(&self) -> Result<u64, ChainError> {
        let (frames, torn) = self.log.scan_from(LogPos::default())?;
        if torn.is_some() {
            return Err(ChainError::Log("block log has an invalid tail".into()));
        }
        let tip = self.tip();
        if frames.len() as u64 != tip.header.height + 1 {
            return Err(ChainError::Log(format!(
                "log holds {} blocks, index tip is height {}",
                frames.len(),
                tip.header.height
            )));
        }
        for (i, f) in frames.iter().enumerate() {
            let b = Block::decode(&f.payload)?;
            if f.height != i as u64 || self.hash_at(f.height)? != Some(b.hash()) {
                return Err(ChainError::Log(format!(
                    "log block at height {} differs from the index",
                    f.height
                )));
            }
        }
        Ok(frames.len() as u64)
    }
}

/// Meta key of a block's undo record (the state keys it wrote).
fn undo_key(height: u64) -> Vec<u8> {
    let mut k = b"undo".to_vec();
    k.extend_from_slice(&height.to_be_bytes());
    k
}

// A state key is part of a transaction or block (≤ MAX_BLOCK_SIZE): its length fits u32.
#[allow(clippy::cast_possible_truncation)]
fn encode_keys<'a>(keys: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut v = Vec::new();
    for k in keys {
        v.extend_from_slice(&(k.len() as u32).to_be_bytes());
        v.extend_from_slice(k);
    }
    v
}

fn decode_keys(b: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    let mut r = aergo_types::codec::Reader::new(b);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let n = r.u32("key length")? as usize;
        out.push(r.take(n, "key")?.to_vec());
    }
    Ok(out)
}

/// The DPoS view of the chain at its tip, for RPC and the dashboard.
#[derive(Debug, Clone)]
pub struct DposStatus {
    /// The parameters.
    pub params: DposParams,
    /// The schedule of the tip's round.
    pub schedule: Schedule,
    /// Scores.
    pub scores: dpos::ScoreBook,
    /// LIB height.
    pub lib: u64,
}

/// The PoA view of the chain, for RPC and the dashboard.
#[derive(Debug, Clone)]
pub struct PoaStatus {
    /// The parameters (the producer set in slot order).
    pub params: PoaParams,
    /// LIB height.
    pub lib: u64,
}

impl Chain {
    /// A read view of the state at `height` on the best chain.
    pub fn view_at(&self, height: u64) -> Result<HeightView<'_>, ChainError> {
        let tip = self.tip.read().header.height;
        if height > tip {
            return Err(ChainError::NotFound(format!(
                "height {height} is above the best height {tip}"
            )));
        }
        Ok(HeightView {
            db: &self.db,
            height,
        })
    }

    /// Finality (DPoS, PoA): recomputes LIB from the best chain's recent blocks; persists it
    /// and prunes what only mattered above it.
    fn advance_finality(&self) -> Result<(), ChainError> {
        let Some(before) = self.engine.lib() else {
            return Ok(());
        };
        let tip_height = self.tip.read().header.height;
        let recent: Vec<dpos::BlockMeta> = self.recent.lock().iter().copied().collect();
        let view = HeadView {
            chain: self,
            height: tip_height,
        };
        let Some(lib) = self.engine.update_finality(&view, &recent)? else {
            return Ok(());
        };
        let lib = lib.min(tip_height);
        if lib > before {
            let hash = self.hash_at(lib)?.unwrap_or(Hash::ZERO);
            let mut rec = lib.to_be_bytes().to_vec();
            rec.extend_from_slice(&hash.0);
            let meta = cf(&self.db, CF_META)?;
            let mut batch = WriteBatch::default();
            batch.put_cf(meta, b"lib", rec);
            // Undo records at or below LIB are never needed again.
            batch.delete_range_cf(meta, undo_key(0), undo_key(lib + 1));
            self.db.write(batch)?;
            self.recent.lock().retain(|b| b.height >= lib);
            self.side.lock().retain(|_, b| b.header.height > lib);
        }
        Ok(())
    }

    /// DPoS, PoA: LIB from the database and the recent blocks from the log, on open.
    fn restore_finality(&self) -> Result<(), ChainError> {
        if self.engine.lib().is_none() {
            return Ok(());
        }
        let lib = match self.db.get_cf(cf(&self.db, CF_META)?, b"lib")? {
            Some(b) if b.len() == 40 => {
                let mut h = [0u8; 8];
                h.copy_from_slice(&b[..8]);
                u64::from_be_bytes(h)
            }
            Some(_) => return Err(ChainError::Corrupt("lib record".into())),
            None => 0,
        };
        let tip = self.tip.read().header.height;
        let lib = lib.min(tip);
        self.engine.restore_lib(lib);
        let mut recent = VecDeque::new();
        for h in lib.max(1)..=tip {
            let b = self
                .block_by_height(h)?
                .ok_or_else(|| ChainError::Corrupt(format!("no block at height {h}")))?;
            if let Some(m) = self.engine.on_commit(&b.header) {
                recent.push_back(m);
            }
        }
        *self.recent.lock() = recent;
        self.advance_finality()
    }

    /// The next slot `me` may fill on the current tip (DPoS: installs the schedules of the
    /// current and the next round first, as they follow from the tip's state).
    pub fn next_slot(&self, now_ms: u64, me: &PublicKey) -> Result<Option<Slot>, ChainError> {
        let tip = self.tip();
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        self.engine.prepare_slots(&view, now_ms)?;
        Ok(self.engine.next_slot(&tip.header, now_ms, me))
    }

    /// PoA: the producer set and LIB.
    pub fn poa_status(&self) -> Option<PoaStatus> {
        match &self.engine {
            Engine::Poa(p) => Some(PoaStatus {
                params: p.params().clone(),
                lib: p.lib(),
            }),
            Engine::Solo(_) | Engine::Dpos(_) => None,
        }
    }

    /// DPoS: parameters, the tip round's schedule, scores and LIB.
    pub fn dpos_status(&self) -> Result<Option<DposStatus>, ChainError> {
        let d = match &self.engine {
            Engine::Dpos(d) => &d.core,
            Engine::Solo(_) | Engine::Poa(_) => return Ok(None),
        };
        let h = self.tip.read().header.height;
        let view = HeightView {
            db: &self.db,
            height: h,
        };
        let schedule = rounds::load_schedule(&view)?
            .ok_or_else(|| ChainError::Corrupt("no DPoS schedule in state".into()))?;
        Ok(Some(DposStatus {
            params: d.params().clone(),
            schedule,
            scores: rounds::load_scores(&view)?,
            lib: d.lib(),
        }))
    }

    /// Takes the best chain back to `common` (a height at or above LIB): state versions,
    /// indexes and the block log above it are removed. Returns the removed blocks, ascending.
    fn revert_to(&self, common: u64) -> Result<Vec<Block>, ChainError> {
        let tip = self.tip();
        if common >= tip.header.height {
            return Ok(Vec::new());
        }
        let lib = self.finalized_height();
        if common < lib {
            return Err(ChainError::Consensus(format!(
                "refusing to revert below LIB {lib} (to {common})"
            )));
        }
        let mut blocks = Vec::new();
        for h in common + 1..=tip.header.height {
            blocks.push(
                self.block_by_height(h)?
                    .ok_or_else(|| ChainError::Corrupt(format!("no block at height {h}")))?,
            );
        }
        let common_hash = self
            .hash_at(common)?
            .ok_or_else(|| ChainError::Corrupt(format!("no block at height {common}")))?;
        let common_meta = self
            .block_meta(&common_hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("no index for {common_hash}")))?;
        let common_block = self
            .block_by_hash(&common_hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("no block {common_hash}")))?;
        let meta = cf(&self.db, CF_META)?;
        let state_cf = cf(&self.db, CF_STATE)?;
        let mut batch = WriteBatch::default();
        for b in &blocks {
            let h = b.header.height;
            let keys = self
                .db
                .get_cf(meta, undo_key(h))?
                .ok_or_else(|| ChainError::Corrupt(format!("no undo record at height {h}")))?;
            for k in decode_keys(&keys)? {
                batch.delete_cf(state_cf, store::state_version_key(MAIN_BRANCH, &k, h));
            }
            batch.delete_cf(cf(&self.db, CF_CANON)?, store::canon_key(MAIN_BRANCH, h));
            batch.delete_cf(cf(&self.db, CF_BLOCKS)?, b.hash().0);
            let txs_cf = cf(&self.db, CF_TXS)?;
            for t in &b.txs {
                batch.delete_cf(txs_cf, t.hash.0);
            }
            batch.delete_cf(meta, undo_key(h));
        }
        let end = common_meta.loc.end();
        let mut tip_rec = Vec::with_capacity(52);
        tip_rec.extend_from_slice(&common.to_be_bytes());
        tip_rec.extend_from_slice(&common_hash.0);
        tip_rec.extend_from_slice(&end.encode());
        batch.put_cf(meta, b"tip", tip_rec);
        // Synced: the log is cut next, and the index must never point past the log.
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        self.log.truncate(end)?;
        let mut head = self.head.lock();
        head.clear();
        *self.tip.write() = Tip {
            header: common_block.header,
            hash: common_hash,
            log_end: end,
        };
        drop(head);
        self.recent.lock().retain(|b| b.height <= common);
        tracing::warn!(
            from = tip.header.height,
            to = common,
            "reverted blocks for a longer fork"
        );
        Ok(blocks)
    }

    /// Equivocation: another block of the same producer for the same slot.
    fn same_slot_elsewhere(&self, block: &Block, hash: &Hash) -> Result<Option<Hash>, ChainError> {
        let Some(slot) = self.engine.equivocation_slot(&block.header) else {
            return Ok(None);
        };
        let same = |b: &Block| {
            b.header.producer == block.header.producer
                && dpos::decode_slot(&b.header.consensus) == Some(slot)
                && b.hash() != *hash
        };
        if block.header.height <= self.tip.read().header.height {
            if let Some(b) = self.block_by_height(block.header.height)? {
                if same(&b) {
                    return Ok(Some(b.hash()));
                }
            }
        }
        Ok(self
            .side
            .lock()
            .values()
            .find(|b| same(b))
            .map(|b| b.hash()))
    }

    /// Takes a block from the network: extends the best chain, keeps a competing fork aside,
    /// or switches to a longer fork (never below LIB). `now_ms` bounds DPoS and PoA timestamps.
    /// Errors: [`ChainError::InvalidBlock`] and [`ChainError::Equivocation`] blame the sender;
    /// [`ChainError::Consensus`] is a block that can no longer matter (below LIB).
    pub fn receive(&self, block: Block, now_ms: u64) -> Result<Received, ChainError> {
        let _g = self.commit.lock();
        let hash = block.hash();
        if self.side.lock().contains_key(&hash) || self.block_meta(&hash)?.is_some() {
            return Ok(Received::Known);
        }
        let h = &block.header;
        let bad = |reason: String| ChainError::InvalidBlock {
            hash,
            height: h.height,
            reason,
        };
        if h.chain_id != self.chain_id {
            return Err(bad("wrong chain id".into()));
        }
        if h.height == 0 {
            return Err(bad("a second genesis block".into()));
        }
        if !h.verify_signature() {
            return Err(bad("bad producer signature".into()));
        }
        self.engine.check_received(h, now_ms).map_err(bad)?;
        // Proof of a double signature, at any height (before the LIB check on purpose); only
        // engines whose blocks name a slot give such proof.
        if let Some(other) = self.same_slot_elsewhere(&block, &hash)? {
            return Err(ChainError::Equivocation {
                producer: h.producer,
                first: other,
                second: hash,
            });
        }
        let lib = self.finalized_height();
        if h.height <= lib {
            return Err(ChainError::Consensus(format!(
                "block {hash} at height {} is at or below LIB {lib}",
                h.height
            )));
        }
        let tip = self.tip();
        if h.parent == tip.hash {
            let p = self.prepare(block.clone())?;
            self.write_block(p, None)?;
            self.advance_finality()?;
            return match self.connect_side()? {
                Some(r) => Ok(r),
                None => Ok(Received::Extended(Box::new(block))),
            };
        }
        {
            let mut side = self.side.lock();
            if side.len() >= SIDE_MAX {
                // Forget the highest (furthest from anything we can connect) first.
                if let Some(k) = side
                    .iter()
                    .max_by_key(|(_, b)| b.header.height)
                    .map(|(k, _)| *k)
                {
                    side.remove(&k);
                }
            }
            side.insert(hash, block);
        }
        self.try_switch(hash)
    }

    /// After the tip moved: if a kept-aside fork is now longer, switch to it.
    fn connect_side(&self) -> Result<Option<Received>, ChainError> {
        let tip_height = self.tip.read().header.height;
        let mut higher: Vec<(u64, Hash)> = self
            .side
            .lock()
            .iter()
            .filter(|(_, b)| b.header.height > tip_height)
            .map(|(k, b)| (b.header.height, *k))
            .collect();
        higher.sort_by(|a, b| b.cmp(a));
        for (_, h) in higher.into_iter().take(8) {
            match self.try_switch(h) {
                Ok(r @ Received::Reorged { .. }) => return Ok(Some(r)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "kept-aside fork is invalid"),
            }
        }
        Ok(None)
    }

    /// Switches the best chain to the fork ending at the kept-aside block `hash` if that fork
    /// connects to the best chain at or above LIB and is longer.
    fn try_switch(&self, hash: Hash) -> Result<Received, ChainError> {
        let mut branch = Vec::new();
        let mut cur = hash;
        let common = loop {
            let found = self.side.lock().get(&cur).cloned();
            if let Some(b) = found {
                cur = b.header.parent;
                branch.push(b);
                if branch.len() > SIDE_MAX {
                    return Err(ChainError::Consensus(
                        "fork longer than the side pool".into(),
                    ));
                }
                continue;
            }
            match self.block_meta(&cur)? {
                Some(m) if self.hash_at(m.height)? == Some(cur) => break m.height,
                _ => {
                    let top = branch.first().map(|b| b.header.height).unwrap_or(0);
                    return Ok(Received::MissingParent {
                        from: self.finalized_height() + 1,
                        to: top,
                    });
                }
            }
        };
        branch.reverse();
        let Some(cand_tip) = branch.last().map(|b| b.header.height) else {
            return Ok(Received::Known);
        };
        let tip_height = self.tip.read().header.height;
        if cand_tip <= tip_height {
            return Ok(Received::Stored);
        }
        let lib = self.finalized_height();
        if common < lib {
            let mut side = self.side.lock();
            for b in &branch {
                side.remove(&b.hash());
            }
            return Err(ChainError::Consensus(format!(
                "fork from height {common} lies below LIB {lib}"
            )));
        }
        let reverted = self.revert_to(common)?;
        let mut applied: Vec<Block> = Vec::new();
        for b in &branch {
            let res = self
                .prepare(b.clone())
                .and_then(|p| self.write_block(p, None));
            if let Err(e) = res {
                // The fork is invalid from `b` on: forget that part, restore the old chain.
                {
                    let mut side = self.side.lock();
                    let mut drop_rest = false;
                    for x in &branch {
                        if x.hash() == b.hash() {
                            drop_rest = true;
                        }
                        if drop_rest {
                            side.remove(&x.hash());
                        }
                    }
                }
                self.revert_to(common)?;
                for old in &reverted {
                    let p = self.prepare(old.clone())?;
                    self.write_block(p, None)?;
                }
                self.advance_finality()?;
                return Err(e);
            }
            self.side.lock().remove(&b.hash());
            applied.push(b.clone());
        }
        {
            // The old branch may still win later.
            let mut side = self.side.lock();
            for r in &reverted {
                side.insert(r.hash(), r.clone());
            }
        }
        self.advance_finality()?;
        Ok(Received::Reorged {
            common,
            reverted,
            applied,
        })
    }

    /// Blocks kept off the best chain.
    pub fn side_len(&self) -> usize {
        self.side.lock().len()
    }
}

fn next_nonces(txs: &[SignedTx], writes: &WriteSet) -> HashMap<Address, u64> {
    let mut out = HashMap::new();
    for t in txs {
        let a = t.tx.sender();
        if let Some(Some(v)) = writes.get(&account_key(&a)) {
            if let Ok(acct) = Account::decode(v) {
                out.insert(a, acct.nonce);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small test indices and values
mod tests {
    use super::*;
    use aergo_os::io::IoConfig;
    use aergo_types::{Aer, Tx, TxKind, AER_PER_AERGO};

    fn open(dir: &std::path::Path) -> Chain {
        Chain::open(ChainOptions {
            data_dir: dir.to_path_buf(),
            genesis: Genesis::dev(),
            io: IoService::start(IoConfig::default()),
        })
        .unwrap()
    }

    fn transfer(chain: &Chain, k: &Keypair, nonce: u64, to: Address, amount: u128) -> SignedTx {
        Tx {
            kind: TxKind::Transfer,
            nonce,
            from: k.public(),
            to: Some(to),
            amount,
            payload: vec![],
            gas_limit: 10_000,
            gas_price: chain.genesis().gas.min_price.0,
            chain_id: chain.chain_id(),
        }
        .sign(k)
    }

    #[test]
    fn produce_query_reopen_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Keypair::dev();
        let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
        let producer = Keypair::from_seed(&[6; 32]);
        let (h1, root1);
        {
            let c = open(dir.path());
            assert_eq!(c.tip().header.height, 0);
            let p = c
                .produce(
                    &producer,
                    vec![transfer(&c, &dev, 0, bob, 7 * AER_PER_AERGO)],
                    1000,
                    vec![],
                )
                .unwrap();
            assert_eq!(p.block.txs.len(), 1);
            h1 = p.block.hash();
            root1 = p.block.header.state_root;
            let p2 = c
                .produce(
                    &producer,
                    vec![transfer(&c, &dev, 1, bob, 3 * AER_PER_AERGO)],
                    2000,
                    vec![],
                )
                .unwrap();
            assert_eq!(p2.nonces[&Address::from_public_key(&dev.public())], 2);
            assert_eq!(c.account_latest(&bob).unwrap().balance, 10 * AER_PER_AERGO);
            assert_eq!(c.account_at(&bob, 1).unwrap().balance, 7 * AER_PER_AERGO);
            assert_eq!(c.account_at(&bob, 0).unwrap().balance, 0);
            assert!(c.account_at(&bob, 3).is_err());
        }
        let c = open(dir.path());
        assert_eq!(c.tip().header.height, 2);
        assert_eq!(c.block_by_height(1).unwrap().unwrap().hash(), h1);
        assert_eq!(
            c.block_by_height(1).unwrap().unwrap().header.state_root,
            root1
        );
        let loc = c
            .tx_location(&c.block_by_height(2).unwrap().unwrap().txs[0].hash)
            .unwrap()
            .unwrap();
        assert_eq!(loc.height, 2);
        assert_eq!(c.account_latest(&bob).unwrap().balance, 10 * AER_PER_AERGO);
        assert_eq!(c.verify_log_matches_index().unwrap(), 3);
        let fee_total = c
            .account_latest(&Address::from_public_key(&producer.public()))
            .unwrap()
            .balance;
        assert_eq!(fee_total, 2 * 1000 * c.genesis().gas.min_price.0);
        let (hdr, val, proof) = c.account_proof(&bob, 1).unwrap();
        assert_eq!(hdr.state_root, root1);
        assert!(val.is_some());
        assert!(proof.leaf.is_some());
    }

    /// Versioned range scans against a reference: keys rewritten many times (the seek path),
    /// deletions, keys newer than the height, and limits, including through overlays.
    #[test]
    fn versioned_scans_skip_unused_versions_and_stop_at_the_limit() {
        use crate::state::{MemState, Overlay};
        let dir = tempfile::tempdir().unwrap();
        let db = store::open(&dir.path().join("db")).unwrap();
        let mut batch = WriteBatch::default();
        let mut history: Vec<std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>> =
            vec![Default::default(); 41];
        // Key i is written at heights i, i+3, …, up to 40 (key 0: 14 versions); every 4th
        // write deletes it; keys 20.. are only written above height 20.
        for k in 0u8..30 {
            let key = vec![b'c', 7, k];
            let first = if k >= 20 {
                21 + (k as u64 % 5)
            } else {
                k as u64
            };
            let mut h = first;
            let mut n = 0;
            while h <= 40 {
                let value = (n % 4 != 3).then(|| vec![k, n as u8]);
                let mut stored = vec![u8::from(value.is_some())];
                stored.extend(value.clone().unwrap_or_default());
                batch.put_cf(
                    cf(&db, CF_STATE).unwrap(),
                    store::state_version_key(MAIN_BRANCH, &key, h),
                    stored,
                );
                for snap in history.iter_mut().skip(h as usize) {
                    snap.insert(key.clone(), value.clone());
                }
                h += 3;
                n += 1;
            }
        }
        db.write(batch).unwrap();
        let (start, end) = (vec![b'c', 7], vec![b'c', 8]);
        for height in [0u64, 1, 7, 19, 20, 25, 40] {
            let want: Vec<(Vec<u8>, Vec<u8>)> = history[height as usize]
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect();
            let view = HeightView { db: &db, height };
            assert_eq!(view.scan(&start, &end).unwrap(), want, "height {height}");
            for limit in [0usize, 1, 3, 10, 100] {
                let got = view.scan_limit(&start, &end, limit).unwrap();
                assert_eq!(got, want.iter().take(limit).cloned().collect::<Vec<_>>());
                // Through an overlay that deletes the first keys and adds new ones.
                let mut ov = Overlay::new(&view);
                for (k, _) in want.iter().take(2) {
                    ov.writes.insert(k.clone(), None);
                }
                ov.writes.insert(vec![b'c', 7, 3, 1], Some(vec![9]));
                ov.writes.insert(vec![b'c', 7, 200], Some(vec![8]));
                let mut reference = MemState::default();
                for (k, v) in &want {
                    reference.0.insert(k.clone(), v.clone());
                }
                for (k, v) in &ov.writes {
                    match v {
                        Some(v) => reference.0.insert(k.clone(), v.clone()),
                        None => reference.0.remove(k),
                    };
                }
                assert_eq!(
                    ov.scan_limit(&start, &end, limit).unwrap(),
                    reference.scan_limit(&start, &end, limit).unwrap(),
                    "overlay, height {height}, limit {limit}"
                );
            }
        }
    }

    #[test]
    fn wrong_genesis_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        let mut g = Genesis::dev();
        g.chain_name = "other".into();
        let e = Chain::open(ChainOptions {
            data_dir: dir.path().to_path_buf(),
            genesis: g,
            io: IoService::start(IoConfig::default()),
        });
        assert!(matches!(e, Err(ChainError::WrongChain { .. })));
    }

    #[test]
    fn blocks_in_log_but_not_in_db_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Keypair::dev();
        let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
        let producer = Keypair::from_seed(&[6; 32]);
        let tip_hash;
        {
            let c = open(dir.path());
            c.produce(&producer, vec![transfer(&c, &dev, 0, bob, 1)], 1000, vec![])
                .unwrap();
            tip_hash = c
                .produce(&producer, vec![transfer(&c, &dev, 1, bob, 2)], 2000, vec![])
                .unwrap()
                .block
                .hash();
        }
        // Lose the database entirely: everything must come back from the log.
        std::fs::remove_dir_all(dir.path().join("db")).unwrap();
        let c = open(dir.path());
        assert_eq!(c.tip().hash, tip_hash);
        assert_eq!(c.account_latest(&bob).unwrap().balance, 3);
        assert_eq!(c.verify_log_matches_index().unwrap(), 3);
    }

    #[test]
    fn invalid_blocks_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let producer = Keypair::from_seed(&[6; 32]);
        let dev = Keypair::dev();
        let bob = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
        let other_dir = tempfile::tempdir().unwrap();
        let c2 = open(other_dir.path());
        let good = c2
            .produce(
                &producer,
                vec![transfer(&c2, &dev, 0, bob, 1)],
                1000,
                vec![],
            )
            .unwrap()
            .block;
        let mut forged = good.clone();
        forged.header.state_root = Hash::of(b"x");
        forged.header.sign(&producer);
        assert!(c
            .apply(forged)
            .unwrap_err()
            .to_string()
            .contains("state root"));
        let mut unsigned = good.clone();
        unsigned.header.timestamp_ms += 1;
        assert!(c
            .apply(unsigned)
            .unwrap_err()
            .to_string()
            .contains("signature"));
        assert_eq!(c.tip().header.height, 0);
        c.apply(good).unwrap();
        assert_eq!(c.tip().header.height, 1);
        assert_eq!(c.account_latest(&bob).unwrap().balance, 1);
        let _ = Aer::ZERO;
    }

    /// Commits `p` through the commit path and expects a refusal that changes nothing.
    fn assert_refused(c: &Chain, p: Prepared, existing: Option<Location>, what: &str) {
        let tip = c.tip();
        let log_end = c.log.end();
        let err = c.write_block(p, existing).unwrap_err();
        assert!(matches!(err, ChainError::Corrupt(_)), "{what}: {err}");
        assert!(err.to_string().contains(what), "{what}: {err}");
        assert_eq!(c.tip().hash, tip.hash);
        assert_eq!(c.tip().log_end, tip.log_end);
        assert_eq!(c.log.end(), log_end);
        assert_eq!(c.tip_record().unwrap().map(|t| t.1), Some(tip.hash));
    }

    fn unexecuted(block: Block) -> Prepared {
        Prepared {
            block,
            executed: Executed::default(),
            nodes: HashMap::new(),
        }
    }

    #[test]
    fn commit_points_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let producer = Keypair::from_seed(&[6; 32]);
        let other_dir = tempfile::tempdir().unwrap();
        let c2 = open(other_dir.path());
        let b1 = c2.produce(&producer, vec![], 1000, vec![]).unwrap().block;
        let b2 = c2.produce(&producer, vec![], 2000, vec![]).unwrap().block;

        // Height: a block two above the tip.
        assert_refused(&c, unexecuted(b2.clone()), None, "does not follow the tip");
        // Height: the genesis block again.
        let genesis = c.block_by_height(0).unwrap().unwrap();
        assert_refused(&c, unexecuted(genesis), None, "does not follow the tip");
        // Parent: the right height on another parent.
        let mut orphan = b1.clone();
        orphan.header.parent = Hash::of(b"elsewhere");
        assert_refused(&c, unexecuted(orphan), None, "names parent");
        // Log end: a recovered frame somewhere else than the tip's log position.
        let wrong = Location {
            pos: LogPos {
                seg: c.tip().log_end.seg,
                offset: c.tip().log_end.offset + 1,
            },
            len: 10,
        };
        let p = c.prepare(b1.clone()).unwrap();
        assert_refused(&c, p, Some(wrong), "does not start at the tip's recorded");
        // Log end: the log grew past the tip's recorded position behind the chain's back.
        c.log.append(1, b"not a block").unwrap();
        let p = c.prepare(b1.clone()).unwrap();
        assert_refused(&c, p, None, "the block log ends at");
        assert_eq!(c.tip().header.height, 0);
        // Once the log is back where the tip says, the same block commits.
        c.log.truncate(c.tip().log_end).unwrap();
        c.apply(b1).unwrap();
        c.apply(b2).unwrap();
        assert_eq!(c.tip().header.height, 2);
        assert_eq!(c.verify_log_matches_index().unwrap(), 3);
    }
}
