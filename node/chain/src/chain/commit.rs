//! The commit path: block assembly (`produce`), validation and execution (`prepare`), the
//! commit protocol (`write_block`: log append and fdatasync, then one RocksDB batch, then
//! caches and tip) with its commit points checked before anything is written, and finality
//! advanced after each commit.

use super::queries::HeadView;
use super::*;
use aergo_types::block_ext::Dtt;

pub(super) fn smt_updates(writes: &WriteSet) -> Vec<(Hash, Option<Hash>)> {
    writes
        .iter()
        .map(|(k, v)| (Hash::of(k), v.as_ref().map(|v| Hash::of(v))))
        .collect()
}

impl Chain {
    /// The context of a block built on `parent` (the state its gas limits come from).
    pub(super) fn ctx(
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
            role: crate::ctx::ChainRole::of(&self.genesis),
            access: self.access_at(header)?,
            parent: header.parent,
            merge: header.ext.merge.as_ref().map(|m| crate::ctx::MergeCtx {
                source: m.source,
                source_height: m.source_height,
                strategy: m.strategy,
            }),
            sql_engine: crate::contracts::engine_at(&self.genesis, header.height),
        })
    }

    /// A repository ledger's write rule for a block: the directory's roles at the height its
    /// header names, which must be a final directory block (`None` elsewhere).
    fn access_at(
        &self,
        header: &Header,
    ) -> Result<Option<std::sync::Arc<crate::ctx::Access>>, ChainError> {
        let Some(dd) = &self.directory else {
            return Ok(None);
        };
        let bad = |reason: String| ChainError::InvalidBlock {
            hash: header.hash(),
            height: header.height,
            reason,
        };
        let Some(r) = header.ext.dd else {
            return Err(bad(
                "a repository block names its directory height (header field `dd`)".into(),
            ));
        };
        if r.height > dd.finalized_height() {
            // Not invalid: this node's copy of the directory may be behind the producer's
            // (a member node receives both chains separately). The block is not taken now
            // and is fetched again once the directory caught up.
            return Err(ChainError::Consensus(format!(
                "directory block {} at height {} is not final on this node yet",
                r.hash, r.height
            )));
        }
        if dd.hash_at(r.height)? != Some(r.hash) {
            return Err(bad(format!(
                "directory block {} at height {} is not a final block of this repository's directory",
                r.hash, r.height
            )));
        }
        if let Some((at, a)) = self.access.lock().as_ref() {
            if *at == r {
                return Ok(Some(a.clone()));
            }
        }
        let view = dd.view_at(r.height)?;
        let (_, anonymous_write) = crate::directory::anonymous(&view)?;
        let access = std::sync::Arc::new(crate::ctx::Access {
            repo: self.repo_name(),
            anonymous_write,
            roles: crate::directory::members(&view)?.into_iter().collect(),
            branches: crate::directory::branches_of(&view, &self.branch_path())?,
        });
        *self.access.lock() = Some((r, access.clone()));
        Ok(Some(access))
    }

    /// The directory reference for a block on top of `parent`: the directory's finalized
    /// block, never older than the parent's.
    fn dd_ref(&self, parent: &Header) -> Result<Option<aergo_types::block_ext::DdRef>, ChainError> {
        let Some(dd) = &self.directory else {
            return Ok(None);
        };
        let fin = dd
            .finalized_height()
            .max(parent.ext.dd.map(|r| r.height).unwrap_or(0));
        let hash = dd
            .hash_at(fin)?
            .ok_or_else(|| ChainError::Corrupt(format!("directory block {fin} missing")))?;
        Ok(Some(aergo_types::block_ext::DdRef { height: fin, hash }))
    }

    /// The directory snapshot (write rule and branch records) of this chain's block with
    /// `header`, or of the next block on the tip (`None`); `None` on a chain without a
    /// directory. A block's snapshot is its header's directory height.
    pub fn branch_access(
        &self,
        header: Option<&Header>,
    ) -> Result<Option<std::sync::Arc<crate::ctx::Access>>, ChainError> {
        if self.directory.is_none() {
            return Ok(None);
        }
        match header {
            Some(h) if h.ext.dd.is_some() => self.access_at(h),
            // The genesis (and a branch's blocks at or below its fork that name none) saw
            // the directory's genesis state: no branches.
            Some(_) => self.access_genesis(),
            None => {
                let tip = self.tip();
                let next = Header {
                    ext: HeaderExt {
                        dd: self.dd_ref(&tip.header)?,
                        ..Default::default()
                    },
                    ..tip.header.clone()
                };
                self.access_at(&next)
            }
        }
    }

    fn access_genesis(&self) -> Result<Option<std::sync::Arc<crate::ctx::Access>>, ChainError> {
        let Some(dd) = &self.directory else {
            return Ok(None);
        };
        let view = dd.view_at(0)?;
        Ok(Some(std::sync::Arc::new(crate::ctx::Access {
            repo: self.repo_name(),
            anonymous_write: crate::directory::anonymous(&view)?.1,
            roles: crate::directory::members(&view)?.into_iter().collect(),
            branches: crate::directory::branches_of(&view, &self.branch_path())?,
        })))
    }

    /// The repository this chain belongs to (`""` for the root chain and its branches).
    pub fn repo_name(&self) -> String {
        self.genesis
            .repo
            .as_ref()
            .map(|g| g.name.clone())
            .unwrap_or_default()
    }

    /// This chain's path among its repository's branches: `""` for a chain that is not a
    /// branch, `feat` for a branch of it, `feat/fix` for a branch of `feat`.
    pub fn branch_path(&self) -> String {
        let (Some(base), Some(b)) = (&self.base, &self.genesis.branch) else {
            return String::new();
        };
        let parent = base.parent.branch_path();
        if parent.is_empty() {
            b.name.clone()
        } else {
            format!("{parent}/{}", b.name)
        }
    }

    /// Why `from` may not send a transaction to this repository now (its directory's final
    /// roles; `None`: it may, or this is not a repository).
    pub fn write_error(&self, from: &Address) -> Result<Option<String>, ChainError> {
        if self.directory.is_none() {
            return Ok(None);
        }
        Ok(self.branch_access(None)?.and_then(|a| a.write_error(from)))
    }

    /// The unsigned header of a block on `tip` (roots filled in after execution).
    pub(super) fn next_header(
        &self,
        tip: &Tip,
        producer: PublicKey,
        timestamp_ms: u64,
        consensus: Vec<u8>,
        merge: Option<aergo_types::block_ext::MergeRef>,
    ) -> Result<Header, ChainError> {
        Ok(Header {
            chain_id: self.chain_id,
            height: tip.header.height + 1,
            parent: tip.hash,
            timestamp_ms,
            producer,
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus,
            ext: HeaderExt {
                dd: self.dd_ref(&tip.header)?,
                merge,
                ..Default::default()
            },
            signature: Signature::default(),
        })
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
        let mut header = self.next_header(&tip, key.public(), timestamp_ms, consensus, None)?;
        let built = self.execute_on_tip(&tip, &header, Body::Assemble(candidates), |start| {
            self.engine.check_own_slot(&tip.header, &header, start)
        })?;
        let txs = built.txs.unwrap_or_default();
        header.state_root = built.state_root;
        header.receipts_root = built.receipts_root;
        header.tx_root = Block::compute_tx_root(&txs);
        let dtt = self.attach_dtt(&mut header, &txs, &built.executed, None);
        // Durable record first: never two signatures for one slot, even across restarts.
        self.engine.before_signing(&header)?;
        header.sign(key);
        let receipts = built.executed.receipts.clone();
        let prepared = Prepared {
            block: block_with_dtt(header, txs, dtt),
            executed: built.executed,
            nodes: built.nodes,
        };
        let applied = self.write_block(prepared, None)?;
        self.advance_finality()?;
        Ok(Produced {
            applied,
            receipts,
            rejected: built.rejected,
        })
    }

    /// Builds, signs and commits a merge block: `merge_tx` (a kind-12 transaction naming a
    /// branch of this chain) and the source's transactions since the merge base
    /// (`candidates`, in source order, up to `source_tip` at `source_height`), each merged or
    /// left out with its reason. A merge block carries no other transaction.
    ///
    /// The candidates are taken from the source's blocks this node holds, whose signatures
    /// were checked when they were produced or imported: they are not checked again (as a
    /// producer does not check its mempool's transactions again). Validators check them.
    pub fn produce_merge(
        &self,
        key: &Keypair,
        merge_tx: SignedTx,
        merge: aergo_types::block_ext::MergeRef,
        candidates: Vec<SignedTx>,
        timestamp_ms: u64,
        consensus: Vec<u8>,
    ) -> Result<Produced, ChainError> {
        self.produce_merge_with(
            key,
            merge_tx,
            merge,
            crate::branches::Candidates {
                txs: candidates,
                lineage: Vec::new(),
            },
            timestamp_ms,
            consensus,
        )
    }

    /// [`Chain::produce_merge`] with candidates that may come from the source's own
    /// branches (merged into it before), each with its lineage
    /// ([`crate::branches::block_candidates`]).
    pub fn produce_merge_with(
        &self,
        key: &Keypair,
        merge_tx: SignedTx,
        merge: aergo_types::block_ext::MergeRef,
        candidates: crate::branches::Candidates,
        timestamp_ms: u64,
        consensus: Vec<u8>,
    ) -> Result<Produced, ChainError> {
        let crate::branches::Candidates {
            txs: candidates,
            lineage,
        } = candidates;
        let _g = self.commit.lock();
        let tip = self.tip();
        let mut header =
            self.next_header(&tip, key.public(), timestamp_ms, consensus, Some(merge))?;
        let body = Body::Merge {
            tx: Some(&merge_tx),
            candidates: &candidates,
            lineage: &lineage,
            signed: true,
        };
        let built = self.execute_on_tip(&tip, &header, body, |start| {
            self.engine.check_own_slot(&tip.header, &header, start)
        })?;
        let section = aergo_types::block_ext::MergeBody {
            candidates,
            excluded: built.excluded,
            lineage,
        };
        if let Some(m) = header.ext.merge.as_mut() {
            m.lists_root = Hash::of(&section.encode());
        }
        let txs = vec![merge_tx];
        header.state_root = built.state_root;
        header.receipts_root = built.receipts_root;
        header.tx_root = Block::compute_tx_root(&txs);
        let mut block = Block::new(header, txs);
        block.body_ext.merge = Some(section);
        let max = self.max_block_size();
        if block.encode().len() > max {
            return Err(ChainError::InvalidTx {
                hash: block.txs.first().map(|t| t.hash).unwrap_or_default(),
                reason: format!(
                    "the merge does not fit one block of {max} bytes: merge up to a lower source height"
                ),
            });
        }
        self.engine.before_signing(&block.header)?;
        block.header.sign(key);
        let receipts = built.executed.receipts.clone();
        let prepared = Prepared {
            block,
            executed: built.executed,
            nodes: built.nodes,
        };
        let applied = self.write_block(prepared, None)?;
        self.advance_finality()?;
        Ok(Produced {
            applied,
            receipts,
            rejected: Vec::new(),
        })
    }

    /// What a merge block with `merge` and `candidates` would leave out if `key` built it on
    /// the tip now (a dry run: nothing is written, and the merge transaction's own checks
    /// are left to admission; the candidates' signatures are taken as checked, as by
    /// [`Chain::produce_merge`]).
    pub fn preview_merge(
        &self,
        key: &Keypair,
        merge: &aergo_types::block_ext::MergeRef,
        candidates: &[SignedTx],
    ) -> Result<Vec<aergo_types::block_ext::Exclusion>, ChainError> {
        self.preview_merge_with(key, merge, candidates, &[])
    }

    /// [`Chain::preview_merge`] with the candidates' lineage (see
    /// [`Chain::produce_merge_with`]).
    pub fn preview_merge_with(
        &self,
        key: &Keypair,
        merge: &aergo_types::block_ext::MergeRef,
        candidates: &[SignedTx],
        lineage: &[aergo_types::block_ext::Lineage],
    ) -> Result<Vec<aergo_types::block_ext::Exclusion>, ChainError> {
        let tip = self.tip();
        let interval = self.engine.block_interval_ms();
        let consensus = match dpos::decode_slot(&tip.header.consensus) {
            Some(s) => dpos::encode_slot(s.saturating_add(1)),
            None => Vec::new(),
        };
        let header = self.next_header(
            &tip,
            key.public(),
            tip.header.timestamp_ms.saturating_add(interval),
            consensus,
            Some(merge.clone()),
        )?;
        let body = Body::Merge {
            tx: None,
            candidates,
            lineage,
            signed: true,
        };
        Ok(self
            .execute_on_tip(&tip, &header, body, |_| Ok(()))?
            .excluded)
    }

    /// Validates and executes a block on the tip without committing it.
    pub fn prepare(&self, block: Block) -> Result<Prepared, ChainError> {
        let tip = self.tip();
        let h = &block.header;
        let hash = block.hash();
        let bad = |reason: String| ChainError::InvalidBlock {
            hash,
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
        let mut ext = h.ext.clone();
        if self.directory.is_some() {
            // A repository block names its directory height (checked with the roles in
            // `access_at`), never older than its parent's.
            match (ext.dd.take(), tip.header.ext.dd) {
                (None, _) => {
                    return Err(bad(
                        "a repository block names its directory height (header field `dd`)".into(),
                    ))
                }
                (Some(r), Some(p)) if r.height < p.height => {
                    return Err(bad(format!(
                        "directory height {} is older than the parent's {}",
                        r.height, p.height
                    )))
                }
                _ => {}
            }
        }
        let merge = ext.merge.take();
        let seq_hash = ext.seq_hash.take();
        let dtt_root = ext.dtt_root.take();
        if seq_hash.is_some() && merge.is_some() {
            return Err(bad(
                "a merge block carries no sequencing hash (merges are not pre-confirmed)".into(),
            ));
        }
        if let Some(field) = ext.first_present() {
            // Format version 2 reserves these fields for features this chain does not run
            // yet; a block that fills one cannot be validated, so it is invalid.
            return Err(bad(format!(
                "header field `{field}` is not enabled on this chain"
            )));
        }
        let dtt = match (dtt_root, &block.body_ext.dtt) {
            (None, None) => None,
            (Some(_), Some(_)) if merge.is_some() => {
                return Err(bad("a merge block carries no DTT".into()))
            }
            (Some(root), Some(d)) => {
                if Hash::of(&d.encode()) != root {
                    return Err(bad(
                        "wrong DTT commitment: the header's dtt_root is not the hash of the block's DTT"
                            .into(),
                    ));
                }
                Some(d)
            }
            (Some(_), None) => {
                return Err(bad("the header commits to a DTT the block lacks".into()))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "the block carries a DTT its header does not commit to".into()
                ))
            }
        };
        let body = match (&merge, &block.body_ext.merge) {
            (None, None) => Body::Given(&block.txs, dtt),
            (Some(_), Some(section)) => match block.txs.as_slice() {
                [tx] => Body::Merge {
                    tx: Some(tx),
                    candidates: &section.candidates,
                    lineage: &section.lineage,
                    signed: false,
                },
                _ => {
                    return Err(bad(
                        "a merge block carries exactly one transaction, the merge".into(),
                    ))
                }
            },
            _ => return Err(bad("a merge field without its merge section".into())),
        };
        let checks = |_: &BlockStart| -> Result<(), ChainError> {
            self.engine.validate(&tip.header, h).map_err(bad)?;
            let max = self.max_block_size();
            if block.encode().len() > max {
                return Err(bad(format!("block exceeds {max} bytes")));
            }
            if Block::compute_tx_root(&block.txs) != h.tx_root {
                return Err(bad("tx root mismatch".into()));
            }
            // Batches on the validation workers.
            let run = crate::stages::STAGES.verify.start().items(block.txs.len());
            let verdicts =
                crate::parallel::verify_signatures(&block.txs, crate::parallel::workers());
            drop(run);
            if let Some(i) = verdicts.iter().position(|ok| !ok) {
                return Err(bad(format!("transaction {i} has a bad signature")));
            }
            Ok(())
        };
        let built = self
            .execute_on_tip(&tip, h, body, checks)
            .map_err(|e| match e {
                // The node's own storage failing says nothing about the block.
                e @ (ChainError::Db(_)
                | ChainError::Log(_)
                | ChainError::Corrupt(_)
                | ChainError::Io(_)
                | ChainError::InvalidBlock { .. }) => e,
                other => bad(other.to_string()),
            })?;
        if let Some(section) = &block.body_ext.merge {
            if built.excluded != section.excluded {
                return Err(bad(format!(
                    "the merge's exclusions differ: the block leaves out {} candidates, this node {}",
                    section.excluded.len(),
                    built.excluded.len()
                )));
            }
        }
        if let Some(claimed) = seq_hash {
            // The producer pre-confirmed this block's transactions: the header commits to
            // the last sequencing hash of exactly these transactions and receipts.
            let s = aergo_types::preconf::seq_of(
                &tip.hash,
                block
                    .txs
                    .iter()
                    .map(|t| &t.hash)
                    .zip(built.executed.receipts.iter()),
            );
            if s != claimed {
                return Err(bad(format!(
                    "sequencing hash mismatch: the header says {claimed}, the transactions and receipts give {s}"
                )));
            }
        }
        if built.receipts_root != h.receipts_root {
            return Err(bad("receipts root mismatch".into()));
        }
        if built.state_root != h.state_root {
            return Err(bad(format!(
                "state root mismatch: computed {}",
                built.state_root
            )));
        }
        Ok(Prepared {
            block,
            executed: built.executed,
            nodes: built.nodes,
        })
    }

    /// The block-execution core that producing and validating share: the engine's
    /// begin-block (the round's schedule installed), `checks` (the own-slot rule when
    /// producing; the engine's rules, size, roots and signatures when validating), the
    /// block context, execution over the begin-block writes (`assemble` choosing from
    /// candidates, or `execute_block` running exactly the given transactions), the engine's
    /// end-block, and the receipts and state roots. Nothing is written.
    fn execute_on_tip(
        &self,
        tip: &Tip,
        header: &Header,
        body: Body<'_>,
        checks: impl FnOnce(&BlockStart) -> Result<(), ChainError>,
    ) -> Result<Built, ChainError> {
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        let (ctx, pre) = self.start_on_tip(&view, header, checks)?;
        let base = Overlay {
            base: &view,
            writes: pre.clone(),
        };
        let mut excluded = Vec::new();
        let stage = match &body {
            Body::Assemble(_) => &crate::stages::STAGES.assemble,
            _ => &crate::stages::STAGES.execute,
        };
        let run = stage.start();
        let (txs, mut executed, rejected) = match body {
            Body::Merge {
                tx,
                candidates,
                lineage,
                signed,
            } => {
                // A consistent merge compares with the target's state at its merge base.
                let merge_base = match &ctx.merge {
                    Some(m) if m.strategy == aergo_types::block_ext::MergeStrategy::Consistent => {
                        let (_, rec) = crate::branches::Records::of(&base, &ctx)
                            .by_id(&m.source)?
                            .ok_or_else(|| ChainError::InvalidBlock {
                                hash: header.hash(),
                                height: header.height,
                                reason: format!("no branch {} forks off this chain", m.source),
                            })?;
                        let (_, h) = crate::branches::merge_point(&base, &rec)?;
                        Some(self.view_at(h.min(tip.header.height))?)
                    }
                    _ => None,
                };
                let (executed, ex) = exec::execute_merge(
                    &base,
                    tx,
                    candidates,
                    lineage,
                    signed,
                    &ctx,
                    merge_base.as_ref().map(|v| v as &dyn StateView),
                )?;
                excluded = ex;
                (None, executed, Vec::new())
            }
            Body::Assemble(candidates) => {
                let (txs, executed, rejected) = exec::assemble(
                    &base,
                    candidates,
                    &ctx,
                    self.max_block_size() - BLOCK_HEADER_ROOM,
                )?;
                (Some(txs), executed, rejected)
            }
            Body::Given(txs, None) => (None, exec::execute_block(&base, txs, &ctx)?, Vec::new()),
            Body::Given(txs, Some(dtt)) => {
                let bad = |reason: String| ChainError::InvalidBlock {
                    hash: header.hash(),
                    height: header.height,
                    reason,
                };
                // Valid only if well formed (`parallel::validate` checks that first, before
                // anything runs along it) and equal to the canonical DTT of what the
                // transactions did.
                let workers = crate::parallel::workers();
                match crate::parallel::validate(&view, &pre, txs, dtt, &ctx, workers)? {
                    Ok(executed) => (None, executed, Vec::new()),
                    Err(why) => return Err(bad(why)),
                }
            }
        };
        drop(run.items(executed.receipts.len()));
        let (state_root, receipts_root, nodes) =
            self.finish_on_tip(tip, &view, header, pre, &mut executed, None)?;
        Ok(Built {
            txs,
            rejected,
            excluded,
            executed,
            state_root,
            receipts_root,
            nodes,
        })
    }

    /// Executes `block`'s transactions on the tip and returns what they did, committing
    /// nothing (benchmarks: `aergo-node bench exec`). `None`: sequential `execute_block` as
    /// before access sets existed (nothing recorded); `Some(n)` with `check`: as `prepare`
    /// validates, along the block's DTT with `n` workers and the canonical DTT check;
    /// otherwise sequential, recording access sets.
    pub fn bench_execute(
        &self,
        block: &Block,
        workers: Option<usize>,
        check: bool,
    ) -> Result<Executed, ChainError> {
        let tip = self.tip();
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        let (ctx, pre) = self.start_on_tip(&view, &block.header, |_| Ok(()))?;
        match (workers, &block.body_ext.dtt, check) {
            (Some(n), Some(d), true) => {
                crate::parallel::validate(&view, &pre, &block.txs, d, &ctx, n)?
                    .map_err(ChainError::Consensus)
            }
            (w, _, _) => exec::execute_block_with(
                &Overlay {
                    base: &view,
                    writes: pre,
                },
                &block.txs,
                &ctx,
                w.is_some(),
            ),
        }
    }

    /// A bound for benchmarks, not a validation: `block`'s transactions in two halves, each
    /// executed sequentially on the tip by a thread of its own at the same time, with no
    /// access sets, no DTT, no check and no merge (the results are dropped; the second half
    /// does not see the first's writes). On a block whose halves touch disjoint state this is
    /// the most two threads can gain over [`Chain::bench_execute`]'s sequential run
    /// (`aergo-node bench exec` prints it as the ceiling of the `low contention` line).
    pub fn bench_split(&self, block: &Block) -> Result<(), ChainError> {
        let tip = self.tip();
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        let (ctx, pre) = self.start_on_tip(&view, &block.header, |_| Ok(()))?;
        let (first, second) = block.txs.split_at(block.txs.len() / 2);
        let run = |txs: &[SignedTx]| {
            exec::execute_block_with(
                &Overlay {
                    base: &view,
                    writes: pre.clone(),
                },
                txs,
                &ctx,
                false,
            )
            .map(|_| ())
        };
        std::thread::scope(|s| {
            let other = s.spawn(|| run(second));
            let mine = run(first);
            let theirs = other
                .join()
                .map_err(|_| ChainError::Corrupt("a bench thread panicked".into()))?;
            mine.and(theirs)
        })
    }

    /// The first half of executing a block on the tip: the engine's begin-block (the
    /// round's schedule installed), `checks`, and the block context. Returns the context and
    /// the begin-block writes the transactions run on.
    pub(super) fn start_on_tip(
        &self,
        view: &dyn StateView,
        header: &Header,
        checks: impl FnOnce(&BlockStart) -> Result<(), ChainError>,
    ) -> Result<(BlockCtx, WriteSet), ChainError> {
        let start = self.engine.begin_block(view, header)?;
        self.engine.install(&start);
        checks(&start)?;
        let ctx = self.ctx(header, view, &start)?;
        Ok((ctx, start.writes))
    }

    /// The block's canonical DTT, committed in `header` (`dtt_root`), for a block of `txs`
    /// executed as `executed` — what `produce` and `seal` attach before signing. `built`: the
    /// canonical entries already built one transaction at a time (a pending block's), or
    /// `None` to build them from `executed`'s access sets. `None` (the block carries no DTT
    /// and validators run it sequentially): no transaction, a merge block, access sets not
    /// recorded, or a DTT that would not fit the block's size (assembly budgets for it; a
    /// pending block filled to the byte may not).
    pub(super) fn attach_dtt(
        &self,
        header: &mut Header,
        txs: &[SignedTx],
        executed: &Executed,
        built: Option<Vec<aergo_types::block_ext::DttEntry>>,
    ) -> Option<Dtt> {
        if txs.is_empty() || header.ext.merge.is_some() || executed.access.len() != txs.len() {
            return None;
        }
        let mut dtt = match built {
            Some(entries) => Dtt { entries },
            None => crate::dtt::canonical(&executed.access),
        };
        crate::dtt::forge_if_faulty(&mut dtt);
        let bytes = dtt.encode();
        let tx_bytes: usize = txs.iter().map(|t| t.size + 4).sum();
        if tx_bytes + bytes.len() - 4 + crate::dtt::DTT_OVERHEAD
            > self.max_block_size() - BLOCK_HEADER_ROOM
        {
            return None;
        }
        header.ext.dtt_root = Some(Hash::of(&bytes));
        Some(dtt)
    }

    /// The second half, after the transactions: the engine's end-block, then the receipts
    /// root, the state root and the new Merkle nodes. Nothing is written. `known`: the
    /// receipts root already known for the first `n` receipts (a pending block's, built one
    /// push at a time), used when the end-block added none; else the root is computed from
    /// every receipt.
    pub(super) fn finish_on_tip(
        &self,
        tip: &Tip,
        view: &HeadView<'_>,
        header: &Header,
        pre: WriteSet,
        executed: &mut Executed,
        known: Option<(usize, Hash)>,
    ) -> Result<(Hash, Hash, crate::smt::NodeMap), ChainError> {
        self.engine.end_block(view, header, pre, executed)?;
        let receipts_root = match known {
            Some((n, root)) if n == executed.receipts.len() => root,
            _ => merkle_root(
                &executed
                    .receipts
                    .iter()
                    .map(|r| r.hash())
                    .collect::<Vec<_>>(),
            ),
        };
        let mut up = Updater::new(self);
        let state_root = up.update(tip.header.state_root, &smt_updates(&executed.writes))?;
        Ok((state_root, receipts_root, up.new_nodes))
    }

    /// Validates, executes and commits a block received from elsewhere, with no fork
    /// choice (tests; the node imports through `receive`).
    #[cfg(test)]
    pub fn apply(&self, block: Block) -> Result<(), ChainError> {
        let _g = self.commit.lock();
        let p = self.prepare(block)?;
        self.write_block(p, None)?;
        self.advance_finality()
    }

    /// The commit protocol (see module docs). `existing` is the block's location when it is
    /// already in the log (recovery).
    // Sizes, counts and indexes below are bounded by MAX_BLOCK_SIZE (2 MiB, checked before a
    // block gets here), far inside u32.
    #[allow(clippy::cast_possible_truncation)]
    pub(super) fn write_block(
        &self,
        p: Prepared,
        existing: Option<Location>,
    ) -> Result<Applied, ChainError> {
        let _run = crate::stages::STAGES.commit.start();
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
        let ks = &self.ks;
        let state_cf = ks.cf(CF_STATE)?;
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
            batch.put_cf(state_cf, ks.state_version_key(MAIN_BRANCH, k, height), val);
        }
        // Nodes and transaction hashes are random keys: put in key order, each insertion into
        // the memtable's skip list starts from where the one before ended (RocksDB keeps that
        // splice for sequential inserts) instead of searching from the top. In hash-map order
        // the searches were a third of the producer's thread (`docs/BENCHMARKS.md`).
        let mut nodes: Vec<(&Hash, &crate::smt::Node)> = p.nodes.iter().collect();
        nodes.sort_unstable_by_key(|(h, _)| **h);
        for (h, n) in nodes {
            ks.put(&mut batch, CF_SMT, &h.0, n.encode())?;
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
        ks.put(&mut batch, CF_BLOCKS, &hash.0, meta.encode())?;
        ks.put(
            &mut batch,
            CF_CANON,
            &store::canon_key(MAIN_BRANCH, height),
            hash.0,
        )?;
        let merged = crate::branches::merged_txs(block);
        let mut index: Vec<(usize, &SignedTx, &aergo_types::block::Receipt)> = block
            .txs
            .iter()
            .chain(merged.iter().copied())
            .zip(&p.executed.receipts)
            .enumerate()
            .map(|(i, (tx, r))| (i, tx, r))
            .collect();
        // In key order, as the nodes above; a stable sort, so a hash that appeared twice
        // would keep its last entry, as in block order.
        index.sort_by_key(|(_, tx, _)| tx.hash);
        for (i, tx, r) in index {
            let mut v = Vec::with_capacity(128);
            v.extend_from_slice(&hash.0);
            v.extend_from_slice(&height.to_be_bytes());
            v.extend_from_slice(&(i as u32).to_be_bytes());
            v.extend_from_slice(&r.encode());
            ks.put(&mut batch, CF_TXS, &tx.hash.0, v)?;
        }
        // The keys this block wrote, kept for diffs between any two points of history.
        ks.put(
            &mut batch,
            CF_META,
            &changed_key(height),
            encode_keys(p.executed.writes.keys()),
        )?;
        if self.engine.reorgs() {
            // What this block wrote, so a reorganisation can take it back.
            ks.put(
                &mut batch,
                CF_META,
                &undo_key(height),
                encode_keys(p.executed.writes.keys()),
            )?;
        }
        let end = loc.end();
        let mut tip_rec = Vec::with_capacity(52);
        tip_rec.extend_from_slice(&height.to_be_bytes());
        tip_rec.extend_from_slice(&hash.0);
        tip_rec.extend_from_slice(&end.encode());
        ks.put(&mut batch, CF_META, b"tip", tip_rec)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        ks.db().write_opt(batch, &wo)?;
        {
            let mut nodes = self.nodes.lock();
            if nodes.len() + p.nodes.len() >= NODE_CACHE_MAX {
                nodes.clear();
            }
            nodes.extend(p.nodes);
        }
        // Cache and tip advance together under the head lock (see `HeadView::get`).
        let mut head = self.head.lock_all();
        for (k, v) in &p.executed.writes {
            head.insert(k.clone(), v.clone());
        }
        if let Some(m) = self.engine.on_commit(&p.block.header) {
            self.recent.lock().push_back(m);
        }
        *self.tip.write() = Tip {
            header: p.block.header.clone(),
            hash,
            log_end: end,
        };
        drop(head);
        Ok(Applied {
            nonces: next_nonces(
                p.block
                    .txs
                    .iter()
                    .chain(crate::branches::merged_txs(&p.block)),
                &p.executed.writes,
            ),
            gas_used: p.executed.gas_used,
            size: payload.len(),
            block: p.block,
        })
    }

    /// The commit points, checked in every profile before anything is written (debug
    /// assertions never run in the one release profile): the in-memory tip is the one
    /// recorded in `meta`; the block extends it (height = tip + 1 and parent = tip hash; the
    /// genesis block, height 0 with a zero parent, only while no tip is recorded); and the
    /// block goes where the tip's recorded log position says the log ends — for an append
    /// the log's end is that position, for a frame already in the log (recovery) the frame
    /// starts there or at the start of the next segment (a segment rolled over). A violation
    /// is an impossible state: [`ChainError::Corrupt`], and the commit stops.
    pub(super) fn check_commit_point(
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
            // A branch before its first block: its tip is the parent's fork block.
            None if self.base.is_some() => (tip.header.height + 1, tip.hash),
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

    /// Finality (DPoS, PoA): recomputes LIB from the best chain's recent blocks; persists it
    /// and prunes what only mattered above it.
    pub(super) fn advance_finality(&self) -> Result<(), ChainError> {
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
            let ks = &self.ks;
            let mut batch = WriteBatch::default();
            ks.put(&mut batch, CF_META, b"lib", rec)?;
            // Undo records at or below LIB are never needed again.
            batch.delete_range_cf(
                ks.cf(CF_META)?,
                ks.key(&undo_key(0)),
                ks.key(&undo_key(lib + 1)),
            );
            ks.db().write(batch)?;
            self.recent.lock().retain(|b| b.height >= lib);
            self.side.lock().retain(|b| b.header.height > lib);
        }
        Ok(())
    }
}

/// Meta key of a block's change record (the state keys it wrote; kept, unlike undo records).
pub(super) fn changed_key(height: u64) -> Vec<u8> {
    let mut k = b"chg".to_vec();
    k.extend_from_slice(&height.to_be_bytes());
    k
}

/// Meta key of a block's undo record (the state keys it wrote).
pub(super) fn undo_key(height: u64) -> Vec<u8> {
    let mut k = b"undo".to_vec();
    k.extend_from_slice(&height.to_be_bytes());
    k
}

// A state key is part of a transaction or block (≤ MAX_BLOCK_SIZE): its length fits u32.
#[allow(clippy::cast_possible_truncation)]
pub(super) fn encode_keys<'a>(keys: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut v = Vec::new();
    for k in keys {
        v.extend_from_slice(&(k.len() as u32).to_be_bytes());
        v.extend_from_slice(k);
    }
    v
}

/// A block of `txs` under `header` carrying `dtt` (see [`Chain::attach_dtt`]).
pub(super) fn block_with_dtt(header: Header, txs: Vec<SignedTx>, dtt: Option<Dtt>) -> Block {
    let mut block = Block::new(header, txs);
    block.body_ext.dtt = dtt;
    block
}

/// How `execute_on_tip` finds the block's transactions.
enum Body<'a> {
    /// Producing: choose from these candidates, in priority order.
    Assemble(Vec<SignedTx>),
    /// Validating: exactly these transactions, in this order, along the block's DTT when it
    /// carries one (`parallel::validate`; the DTT must be the canonical one).
    Given(&'a [SignedTx], Option<&'a Dtt>),
    /// A merge block: its merge transaction and the source's candidates.
    Merge {
        tx: Option<&'a SignedTx>,
        candidates: &'a [SignedTx],
        /// The nested candidates' lineage.
        lineage: &'a [aergo_types::block_ext::Lineage],
        /// The candidates' signatures were checked already (they come from the source's
        /// blocks this node holds): a producer or a dry run; a validator checks them.
        signed: bool,
    },
}

/// A block body executed on the tip (nothing written yet).
struct Built {
    /// The transactions chosen (`Body::Assemble` only).
    txs: Option<Vec<SignedTx>>,
    /// Candidates left out, with the reason (`Body::Assemble` only).
    rejected: Vec<(Hash, String)>,
    /// Merge candidates left out (`Body::Merge` only).
    excluded: Vec<aergo_types::block_ext::Exclusion>,
    executed: Executed,
    state_root: Hash,
    receipts_root: Hash,
    nodes: crate::smt::NodeMap,
}

/// Each sender of `txs` and its next nonce, from the block's own state writes.
pub(super) fn next_nonces<'a>(
    txs: impl Iterator<Item = &'a SignedTx>,
    writes: &WriteSet,
) -> HashMap<Address, u64> {
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
