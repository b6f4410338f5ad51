//! Fork choice: blocks from the network (`receive`), the bounded side pool of competing forks
//! and orphans, equivocation evidence, and reorganisation to a longer fork (`try_switch`,
//! never below LIB) by reverting to the common block (`revert_to`, using undo records).

use super::commit::undo_key;
use super::*;
use crate::limits::{DRIFT_MS, EARLY_MAX_MS};

impl Chain {
    /// Takes the best chain back to `common` (a height at or above LIB): state versions,
    /// indexes and the block log above it are removed. Returns the removed blocks, ascending.
    pub(super) fn revert_to(&self, common: u64) -> Result<Vec<Block>, ChainError> {
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
        let ks = &self.ks;
        let state_cf = ks.cf(CF_STATE)?;
        let mut batch = WriteBatch::default();
        for b in &blocks {
            let h = b.header.height;
            let keys = ks
                .get(CF_META, &undo_key(h))?
                .ok_or_else(|| ChainError::Corrupt(format!("no undo record at height {h}")))?;
            for k in decode_keys(&keys)? {
                batch.delete_cf(state_cf, ks.state_version_key(MAIN_BRANCH, &k, h));
            }
            ks.delete(&mut batch, CF_CANON, &store::canon_key(MAIN_BRANCH, h))?;
            ks.delete(&mut batch, CF_BLOCKS, &b.hash().0)?;
            for t in b.txs.iter().chain(crate::branches::merged_txs(b)) {
                ks.delete(&mut batch, CF_TXS, &t.hash.0)?;
            }
            ks.delete(&mut batch, CF_META, &undo_key(h))?;
            ks.delete(&mut batch, CF_META, &super::commit::changed_key(h))?;
        }
        let end = common_meta.loc.end();
        let mut tip_rec = Vec::with_capacity(52);
        tip_rec.extend_from_slice(&common.to_be_bytes());
        tip_rec.extend_from_slice(&common_hash.0);
        tip_rec.extend_from_slice(&end.encode());
        ks.put(&mut batch, CF_META, b"tip", tip_rec)?;
        // Synced: the log is cut next, and the index must never point past the log.
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        ks.db().write_opt(batch, &wo)?;
        self.log.truncate(end)?;
        let mut head = self.head.lock_all();
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
    pub(super) fn same_slot_elsewhere(
        &self,
        block: &Block,
        hash: &Hash,
    ) -> Result<Option<Hash>, ChainError> {
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
            .iter()
            .find(|(_, b)| same(b))
            .map(|(h, _)| *h))
    }

    /// Takes a block from the network: extends the best chain, keeps a competing fork aside,
    /// or switches to a longer fork (never below LIB). `now_ms` bounds DPoS and PoA timestamps.
    /// Errors: [`ChainError::InvalidBlock`] and [`ChainError::Equivocation`] blame the sender;
    /// [`ChainError::Consensus`] is a block that can no longer matter (below LIB).
    pub fn receive(&self, block: Block, now_ms: u64) -> Result<Received, ChainError> {
        let _g = self.commit.lock();
        let hash = block.hash();
        if self.side.lock().contains(&hash) || self.block_meta(&hash)?.is_some() {
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
        if let Err(reason) = self.engine.check_received(h, now_ms) {
            let ahead_ms = h.timestamp_ms.saturating_sub(now_ms);
            // Early only from a block producer: anyone else's future block is invalid, so a
            // stranger cannot send them without cost.
            if ahead_ms > DRIFT_MS
                && ahead_ms <= EARLY_MAX_MS
                && self.engine.is_producer(&h.producer)
            {
                return Err(ChainError::Early {
                    hash,
                    height: h.height,
                    ahead_ms,
                });
            }
            return Err(bad(reason));
        }
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
            let height = h.height;
            let p = self.prepare(block)?;
            let applied = self.write_block(p, None)?;
            self.advance_finality()?;
            return match self.connect_side()? {
                // Kept-aside blocks that build on this one connected after it: it is applied
                // too, first. (A switch from below it reverted it, and lists it there.)
                Some(Received::Reorged {
                    common,
                    reverted,
                    applied: mut rest,
                }) if common >= height => {
                    rest.insert(0, applied);
                    Ok(Received::Reorged {
                        common,
                        reverted,
                        applied: rest,
                    })
                }
                Some(r) => Ok(r),
                None => Ok(Received::Extended(Box::new(applied))),
            };
        }
        // Bounded by count and bytes: the highest (furthest from anything we can connect)
        // go first.
        self.side.lock().insert(hash, block);
        self.try_switch(hash)
    }

    /// After the tip moved: if a kept-aside fork is now longer, switch to it.
    pub(super) fn connect_side(&self) -> Result<Option<Received>, ChainError> {
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
    pub(super) fn try_switch(&self, hash: Hash) -> Result<Received, ChainError> {
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
        let mut applied: Vec<Applied> = Vec::new();
        for b in &branch {
            let res = self
                .prepare(b.clone())
                .and_then(|p| self.write_block(p, None));
            let a = match res {
                Ok(a) => a,
                Err(e) => {
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
            };
            self.side.lock().remove(&b.hash());
            applied.push(a);
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

    /// Encoded bytes of the blocks kept off the best chain.
    pub fn side_bytes(&self) -> usize {
        self.side.lock().bytes()
    }
}

pub(super) fn decode_keys(b: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    let mut r = aergo_types::codec::Reader::new(b);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let n = r.u32("key length")? as usize;
        out.push(r.take(n, "key")?.to_vec());
    }
    Ok(out)
}
