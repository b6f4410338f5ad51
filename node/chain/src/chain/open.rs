//! Opening and recovery: the genesis state on first start, the frames the block log holds
//! past RocksDB's tip re-executed and applied (state roots must match), a torn tail cut, and
//! finality (LIB and the recent blocks) restored.

use super::commit::smt_updates;
use super::*;

pub(super) fn genesis_block(g: &Genesis, chain_id: Hash, state_root: Hash) -> Block {
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
            ext: aergo_types::block_ext::HeaderExt::default(),
            signature: Signature::default(),
        },
        txs: Vec::new(),
        body_ext: Default::default(),
    }
}

impl Chain {
    /// Opens the chain in `opts.data_dir`, creating the genesis state on first start and
    /// recovering from the block log after a crash.
    pub fn open(opts: ChainOptions) -> Result<Self, ChainError> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let db = std::sync::Arc::new(store::open(&opts.data_dir.join("db"))?);
        Self::open_in(
            store::Keyspace::root(db),
            &opts.data_dir,
            opts.genesis,
            opts.io,
            None,
        )
    }

    /// Opens a chain in keyspace `ks` of a database that is already open (a repository or a
    /// repository's directory, hosted beside the root chain), with its block log and slot
    /// guard in `dir`; creates the genesis state on first open and recovers like [`Chain::open`].
    /// A repository's ledger is given its `directory` (opened first): its blocks are checked
    /// against the directory's roles.
    pub fn open_in(
        ks: store::Keyspace,
        dir: &std::path::Path,
        genesis: Genesis,
        io: IoService,
        directory: Option<std::sync::Arc<Chain>>,
    ) -> Result<Self, ChainError> {
        Self::open_with(ks, dir, genesis, io, directory, None)
    }

    /// Opens the chain of a branch of `parent` (`genesis.branch` says where it forks off;
    /// see [`aergo_types::branch`]) in `parent`'s database, with its block log in `dir`. No
    /// state is copied: reads above the fork height fall through to the parent at the fork
    /// height. A branch of a repository's ledger is checked against the same directory.
    pub fn open_branch(
        parent: std::sync::Arc<Chain>,
        genesis: Genesis,
        dir: &std::path::Path,
    ) -> Result<Chain, ChainError> {
        let Some(b) = genesis.branch.clone() else {
            return Err(ChainError::Consensus(
                "a branch's chain opens with a branch genesis".into(),
            ));
        };
        if b.parent != parent.chain_id {
            return Err(ChainError::Consensus(format!(
                "branch `{}` forks off chain {}, not {}",
                b.name, b.parent, parent.chain_id
            )));
        }
        if parent.hash_at(b.fork_height)? != Some(b.fork_hash) {
            return Err(ChainError::Consensus(format!(
                "branch `{}` forks off block {} at height {}, which is not on its parent",
                b.name, b.fork_hash, b.fork_height
            )));
        }
        let ks = store::Keyspace::of_chain(parent.ks.db().clone(), store::SPACE_BRANCH, &b.id);
        let io = parent.log.io().clone();
        let directory = parent.directory.clone();
        let base = Base {
            parent,
            fork: b.fork_height,
        };
        Self::open_with(ks, dir, genesis, io, directory, Some(base))
    }

    fn open_with(
        ks: store::Keyspace,
        dir: &std::path::Path,
        genesis: Genesis,
        io: IoService,
        directory: Option<std::sync::Arc<Chain>>,
        base: Option<Base>,
    ) -> Result<Self, ChainError> {
        std::fs::create_dir_all(dir)?;
        let log = BlockLog::open(&dir.join("blocks"), io)?;
        let chain_id = genesis.chain_id();
        if let Some(found) = ks.get(CF_META, b"chain_id")? {
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
        if let Err(v) = crate::contracts::engine_activations(&genesis) {
            return Err(ChainError::Consensus(format!(
                "the genesis activates AergoSQL engine version {v}, which this node does not know (it knows up to version {})",
                aergo_sql::EngineVersion::LATEST
            )));
        }
        let engine = Engine::from_genesis(&genesis)?;
        if engine.uses_slot_guard() {
            let guard = SlotGuard::open(dir.join("slot.guard"))
                .map_err(|e| ChainError::Consensus(e.to_string()))?;
            engine.attach_guard(guard);
        }
        let placeholder = Tip {
            header: genesis_block(&genesis, chain_id, Hash::ZERO).header,
            hash: Hash::ZERO,
            log_end: LogPos::default(),
        };
        let lineage = match &base {
            None => vec![Level {
                ks: ks.clone(),
                fork: None,
            }],
            Some(b) => {
                let mut l = vec![Level {
                    ks: ks.clone(),
                    fork: Some(b.fork),
                }];
                l.extend(b.parent.lineage.iter().cloned());
                l
            }
        };
        let chain = Chain {
            ks,
            lineage,
            base,
            log,
            directory,
            access: Mutex::new(None),
            genesis,
            chain_id,
            engine,
            side: Mutex::new(side::SidePool::default()),
            recent: Mutex::new(VecDeque::new()),
            tip: RwLock::new(placeholder),
            head: head::HeadCache::new(HEAD_CACHE_MAX),
            nodes: Mutex::new(crate::smt::NodeMap::default()),
            commit: Mutex::new(()),
        };
        chain.recover()?;
        chain.restore_finality()?;
        Ok(chain)
    }

    /// Opens (creating on first open) another chain in this chain's database and I/O
    /// service: a repository's ledger or directory (`genesis.repo` must be set; its keyspace
    /// follows from its part and chain id), with its block log and slot guard in `dir`; a
    /// ledger gets its `directory`.
    pub fn open_sibling(
        &self,
        genesis: Genesis,
        dir: &std::path::Path,
        directory: Option<std::sync::Arc<Chain>>,
    ) -> Result<Chain, ChainError> {
        let kind = match genesis.repo.as_ref().map(|r| r.part) {
            Some(aergo_types::repo::RepoPart::Ledger) => store::SPACE_REPO,
            Some(aergo_types::repo::RepoPart::Directory) => store::SPACE_DIRECTORY,
            None => {
                return Err(ChainError::Consensus(
                    "only a repository's chains open beside the root chain".into(),
                ))
            }
        };
        let ks = store::Keyspace::of_chain(self.ks.db().clone(), kind, &genesis.chain_id());
        if kind == store::SPACE_REPO && directory.is_none() {
            return Err(ChainError::Consensus(
                "a repository's ledger opens with its directory".into(),
            ));
        }
        Chain::open_in(ks, dir, genesis, self.log.io().clone(), directory)
    }

    /// The tip record in `meta` (`tip` = height u64 BE ‖ hash ‖ log end as [`LogPos`]),
    /// written in the same batch as the block it names.
    pub(super) fn tip_record(&self) -> Result<Option<(u64, Hash, LogPos)>, ChainError> {
        let Some(b) = self.ks.get(CF_META, b"tip")? else {
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

    pub(super) fn load_tip(&self) -> Result<Option<Tip>, ChainError> {
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

    pub(super) fn recover(&self) -> Result<(), ChainError> {
        let scan_from = match self.load_tip()? {
            Some(tip) => {
                let end = tip.log_end;
                *self.tip.write() = tip;
                end
            }
            None if self.base.is_some() => {
                // A fresh branch: its tip is the parent's block at the fork height; no state
                // is written (reads fall through to the parent).
                let fork = self.fork_tip()?;
                *self.tip.write() = fork;
                self.ks.put_now(CF_META, b"chain_id", &self.chain_id.0)?;
                LogPos::default()
            }
            None => {
                // Fresh database: the genesis state, then whatever the log already holds.
                let (frames, _) = self.log.scan_from(LogPos::default())?;
                let mut writes = WriteSet::new();
                for a in &self.genesis.balances {
                    let v = Account::new(a.balance.0, 0).encode();
                    writes.insert(account_key(&a.address), Some(v));
                }
                self.engine.genesis_writes(&self.genesis, &mut writes)?;
                crate::repos::genesis_writes(&self.genesis, &mut writes);
                if let Some(r) = &self.genesis.repo {
                    if r.part == aergo_types::repo::RepoPart::Directory {
                        let c = &self.genesis.consensus;
                        let producers: Vec<Address> = match &c.poa {
                            Some(p) => p.producers.clone(),
                            None => c.producer.into_iter().collect(),
                        };
                        crate::directory::genesis_writes(r, &producers, &mut writes);
                    }
                }

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
                self.ks.put_now(CF_META, b"chain_id", &self.chain_id.0)?;
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

    /// A branch's tip before its first block: the parent's block at the fork height.
    pub(super) fn fork_tip(&self) -> Result<Tip, ChainError> {
        let Some(b) = &self.base else {
            return Err(ChainError::Corrupt("not a branch".into()));
        };
        let block = b
            .parent
            .block_by_height(b.fork)?
            .ok_or_else(|| ChainError::Corrupt(format!("fork block {} missing", b.fork)))?;
        Ok(Tip {
            hash: block.hash(),
            header: block.header,
            log_end: LogPos::default(),
        })
    }

    /// DPoS, PoA: LIB from the database and the recent blocks from the log, on open.
    pub(super) fn restore_finality(&self) -> Result<(), ChainError> {
        if self.engine.lib().is_none() {
            return Ok(());
        }
        let lib = match self.ks.get(CF_META, b"lib")? {
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
}
