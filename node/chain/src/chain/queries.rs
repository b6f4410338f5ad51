//! Queries: state views at a height (`HeightView`, one seek per read, versioned range scans)
//! and at the tip through the head cache (`HeadView`), the Merkle node source, accounts,
//! blocks and transactions, proofs, contract reads at any height, and the consensus status.

use super::*;

/// Reads state at one height straight from RocksDB: on a branch, a key the branch never
/// wrote falls through to its parent at the fork height, recursively (one seek per level).
pub struct HeightView<'a> {
    pub(super) levels: &'a [Level],
    pub(super) height: u64,
}

impl StateView for HeightView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        read_lineage(self.levels, key, self.height)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<crate::state::Pairs, ChainError> {
        scan_lineage(self.levels, start, end, self.height, usize::MAX)
    }

    fn scan_limit(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<crate::state::Pairs, ChainError> {
        scan_lineage(self.levels, start, end, self.height, limit)
    }
}

/// The levels a read at `height` visits, each with the height to read it at: a level is
/// read only above the height it forks from, and the next level at most at that height.
fn visits(levels: &[Level], height: u64) -> Vec<(&store::Keyspace, u64)> {
    let mut out = Vec::with_capacity(levels.len());
    let mut cur = height;
    for l in levels {
        if l.fork.is_none_or(|f| cur > f) {
            out.push((&l.ks, cur));
        }
        match l.fork {
            Some(f) => cur = cur.min(f),
            None => break,
        }
    }
    out
}

/// A point read through the lineage: the first level holding a version (a value or a
/// deletion) at or below its height answers.
pub(super) fn read_lineage(
    levels: &[Level],
    key: &[u8],
    height: u64,
) -> Result<Option<Vec<u8>>, ChainError> {
    for (ks, h) in visits(levels, height) {
        if let Some(v) = read_version(ks, key, h)? {
            return Ok(v);
        }
    }
    Ok(None)
}

/// A range scan through the lineage: upper levels' versions (values and deletions) hide the
/// levels below. Each level is asked for `limit` values plus as many as the levels above
/// can hide, which is enough for the first `limit` values of the merged result.
pub(super) fn scan_lineage(
    levels: &[Level],
    start: &[u8],
    end: &[u8],
    height: u64,
    limit: usize,
) -> Result<crate::state::Pairs, ChainError> {
    let v = visits(levels, height);
    if let [(ks, h)] = v.as_slice() {
        return scan_versioned(ks, start, end, *h, limit, false).map(|rows| {
            rows.into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect()
        });
    }
    let mut merged: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = Default::default();
    for (ks, h) in v {
        let rows = scan_versioned(ks, start, end, h, limit.saturating_add(merged.len()), true)?;
        for (k, val) in rows {
            merged.entry(k).or_insert(val);
        }
    }
    Ok(merged
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .take(limit)
        .collect())
}

/// A scan's rows with deletions kept: `None` is a deleted key.
type Versions = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Versions of one key stepped over one by one before a scan seeks past the rest.
const SCAN_STEPS_BEFORE_SEEK: u32 = 4;

/// Range scan at a height in one keyspace: walks the versions of every key in `[start, end)`
/// and keeps, per key, the newest version at or below `height` (deletions skipped, or kept
/// as `None` with `deletions`); stops after `limit` values. Runs of unused versions longer than [`SCAN_STEPS_BEFORE_SEEK`] are jumped
/// over with one seek.
pub(super) fn scan_versioned(
    ks: &store::Keyspace,
    start: &[u8],
    end: &[u8],
    height: u64,
    limit: usize,
    deletions: bool,
) -> Result<Versions, ChainError> {
    let mut out = Vec::new();
    let mut values = 0usize;
    if start >= end || limit == 0 {
        return Ok(out);
    }
    let branch = ks.state_lead(MAIN_BRANCH);
    let mut seek = branch.clone();
    let mut body = Vec::new();
    store::escape_key(start, &mut body);
    body.truncate(body.len() - 2); // without the terminator: sorts before every key >= start
    seek.extend_from_slice(&body);
    let mut it = ks.db().raw_iterator_cf(ks.cf(CF_STATE)?);
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
        let rest = k.get(branch.len()..).unwrap_or(&[]);
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
                Some((1, val)) => {
                    out.push((key.clone(), Some(val.to_vec())));
                    values += 1;
                }
                Some((0, _)) if deletions => out.push((key.clone(), None)),
                Some((0, _)) => {}
                _ => return Err(ChainError::Corrupt("state value tag".into())),
            }
            if values >= limit {
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
            let oldest = ks.state_version_key(MAIN_BRANCH, &key, 0);
            it.seek(&oldest);
            if it.valid() && it.key() == Some(oldest.as_slice()) {
                it.next();
            }
        } else {
            // To this key's newest version at or below `height`.
            it.seek(ks.state_version_key(MAIN_BRANCH, &key, height));
        }
    }
    it.status()?;
    Ok(out)
}

/// The newest version of `key` at or below `height` in one keyspace: `None` if it has none,
/// `Some(None)` if that version is a deletion.
fn read_version(
    ks: &store::Keyspace,
    key: &[u8],
    height: u64,
) -> Result<Option<Option<Vec<u8>>>, ChainError> {
    let prefix = ks.state_prefix(MAIN_BRANCH, key);
    let mut seek = prefix.clone();
    seek.extend_from_slice(&(!height).to_be_bytes());
    let mut it = ks.db().raw_iterator_cf(ks.cf(CF_STATE)?);
    it.seek(&seek);
    if !it.valid() {
        it.status()?;
        return Ok(None);
    }
    match (it.key(), it.value()) {
        (Some(k), Some(v)) if k.len() == prefix.len() + 8 && k.starts_with(&prefix) => {
            match v.split_first() {
                Some((1, rest)) => Ok(Some(Some(rest.to_vec()))),
                Some((0, _)) => Ok(Some(None)),
                _ => Err(ChainError::Corrupt("state value tag".into())),
            }
        }
        _ => Ok(None),
    }
}

/// Reads the latest state through the head cache (used by block production and admission).
pub(super) struct HeadView<'a> {
    pub(super) chain: &'a Chain,
    pub(super) height: u64,
}

impl StateView for HeadView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        if let Some(v) = self.chain.head.get(key) {
            return Ok(v);
        }
        let v = read_lineage(&self.chain.lineage, key, self.height)?;
        // Cache only if no block committed since this view's height: commits update the
        // cache and the tip holding every shard, so a value read at an older height can never
        // overwrite a newer one.
        self.chain.head.insert_if(key, v.clone(), || {
            self.chain.tip.read().header.height == self.height
        });
        Ok(v)
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<crate::state::Pairs, ChainError> {
        // Every committed write is in RocksDB before the cache sees it.
        scan_lineage(&self.chain.lineage, start, end, self.height, usize::MAX)
    }

    fn scan_limit(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<crate::state::Pairs, ChainError> {
        scan_lineage(&self.chain.lineage, start, end, self.height, limit)
    }
}

impl NodeSource for Chain {
    fn nodes(&self, hs: &[Hash]) -> Result<Vec<Option<Node>>, ChainError> {
        // One lock for the whole batch; the lookups are independent, so their cache misses
        // overlap. Misses go to the database one by one, as `node` does.
        let mut out: Vec<Option<Node>> = {
            let c = self.nodes.lock();
            hs.iter().map(|h| c.get(h).copied()).collect()
        };
        for (h, slot) in hs.iter().zip(out.iter_mut()) {
            if slot.is_none() {
                *slot = self.node(h)?;
            }
        }
        Ok(out)
    }

    fn node(&self, h: &Hash) -> Result<Option<Node>, ChainError> {
        if let Some(n) = self.nodes.lock().get(h) {
            return Ok(Some(*n));
        }
        let mut found = None;
        for l in &self.lineage {
            // Merkle nodes are content-addressed: a branch shares its ancestors' nodes.
            if let Some(b) = l.ks.get(CF_SMT, &h.0)? {
                found = Some(b);
                break;
            }
        }
        match found {
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

impl Chain {
    /// The chain id.
    pub fn chain_id(&self) -> Hash {
        self.chain_id
    }
    /// A repository ledger's Distributed Directory chain (`None` elsewhere).
    pub fn directory(&self) -> Option<&std::sync::Arc<Chain>> {
        self.directory.as_ref()
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
    /// Writes the shared database's memtables to disk (benchmarks measuring on-disk size).
    pub fn flush(&self) -> Result<(), ChainError> {
        for name in [CF_STATE, CF_SMT, CF_BLOCKS, CF_CANON, CF_TXS, CF_META] {
            self.ks.db().flush_cf(self.ks.cf(name)?)?;
        }
        Ok(())
    }

    /// Flushes the shared database's memtables and waits, until `deadline`, for its
    /// background compactions to end (benchmarks that time a step right after writing a large
    /// genesis). Returns whether the database settled in time.
    pub fn settle(&self, deadline: std::time::Instant) -> Result<bool, ChainError> {
        self.flush()?;
        let db = self.ks.db();
        loop {
            let mut busy = db
                .property_int_value(rocksdb::properties::NUM_RUNNING_COMPACTIONS)?
                .unwrap_or(0)
                + db.property_int_value(rocksdb::properties::NUM_RUNNING_FLUSHES)?
                    .unwrap_or(0);
            for name in [CF_STATE, CF_SMT, CF_BLOCKS, CF_CANON, CF_TXS, CF_META] {
                busy += db
                    .property_int_value_cf(
                        self.ks.cf(name)?,
                        rocksdb::properties::COMPACTION_PENDING,
                    )?
                    .unwrap_or(0);
            }
            if busy == 0 {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The largest block this chain takes: 2 MiB, a repository's directory 64 KiB.
    pub fn max_block_size(&self) -> usize {
        match crate::ctx::ChainRole::of(&self.genesis) {
            crate::ctx::ChainRole::Directory { .. } => aergo_types::repo::MAX_DD_BLOCK,
            _ => MAX_BLOCK_SIZE,
        }
    }
    /// The best block.
    pub fn tip(&self) -> Tip {
        self.tip.read().clone()
    }
    /// The finalized height.
    pub fn finalized_height(&self) -> u64 {
        self.engine.finalized_height(self.tip.read().header.height)
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
            levels: &self.lineage,
            height,
        }
        .account(addr)
    }

    /// A block's index record.
    pub fn block_meta(&self, hash: &Hash) -> Result<Option<BlockMeta>, ChainError> {
        match self.ks.get(CF_BLOCKS, &hash.0)? {
            Some(b) => Ok(Some(BlockMeta::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// On a branch, the parent when `height` is at or below the fork height (those blocks
    /// are the parent's).
    pub(super) fn below_fork(&self, height: u64) -> Option<&Chain> {
        self.base
            .as_ref()
            .filter(|b| height <= b.fork)
            .map(|b| b.parent.as_ref())
    }

    /// On a branch: its parent chain and the height it forks from.
    pub fn fork_point(&self) -> Option<(&std::sync::Arc<Chain>, u64)> {
        self.base.as_ref().map(|b| (&b.parent, b.fork))
    }

    /// The canonical block hash at `height`.
    pub fn hash_at(&self, height: u64) -> Result<Option<Hash>, ChainError> {
        if let Some(p) = self.below_fork(height) {
            return p.hash_at(height);
        }
        match self
            .ks
            .get(CF_CANON, &store::canon_key(MAIN_BRANCH, height))?
        {
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
            return match &self.base {
                Some(b) => b.parent.block_by_hash(hash),
                None => Ok(None),
            };
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
        let Some(v) = self.ks.get(CF_TXS, &hash.0)? else {
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
            levels: &self.lineage,
            height,
        }
        .get(&key)?;
        let proof = smt::prove(self, block.header.state_root, &Hash::of(&key))?;
        Ok((block.header, value, proof))
    }

    pub(super) fn contract_at(
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
            levels: &self.lineage,
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
            levels: &self.lineage,
            height: h,
        };
        let kv = crate::contracts::ReadKv { view: &view };
        Ok(c.query(sql, &kv, crate::contracts::QUERY_GAS_CAP)
            .map_err(|e| e.to_string()))
    }

    /// A contract's functions and tables, its owner and the engine version it runs under.
    pub fn contract_abi(
        &self,
        addr: &Address,
        height: Option<u64>,
    ) -> Result<(aergo_sql::Abi, String, aergo_sql::EngineVersion), ChainError> {
        let (_, c) = self.contract_at(addr, height)?;
        Ok((c.abi(), c.owner().to_string(), c.version()))
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
            levels: &self.lineage,
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

    /// A read view of the state at `height` on the best chain.
    pub fn view_at(&self, height: u64) -> Result<HeightView<'_>, ChainError> {
        let tip = self.tip.read().header.height;
        if height > tip {
            return Err(ChainError::NotFound(format!(
                "height {height} is above the best height {tip}"
            )));
        }
        Ok(HeightView {
            levels: &self.lineage,
            height,
        })
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
            levels: &self.lineage,
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
}
