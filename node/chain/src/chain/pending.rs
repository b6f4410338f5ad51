//! The pending block of pre-confirmation: the slot producer opens it on its tip
//! ([`Chain::open_pending`]), executes each transaction into it at once, in arrival order
//! ([`Pending::push`], which returns the receipt, the position and the sequencing hash the
//! producer then signs), and seals it into a block without executing anything again
//! ([`Chain::seal`]). The sealed block holds exactly the pushed transactions, in push
//! order, with the receipts `push` returned, and its header commits to the last sequencing
//! hash (`seq_hash`), which every validator recomputes in `prepare`.
//!
//! A pending block belongs to one tip: a push or a seal after the tip moved (a block of
//! another producer arrived) is refused with [`ChainError::Consensus`], and the caller
//! opens a new one.

use super::queries::HeadView;
use super::*;
use crate::ctx::BlockCtx;
use crate::exec::BlockRun;
use aergo_types::preconf;
use std::collections::HashSet;

/// A block being filled one transaction at a time (see the module doc).
pub struct Pending {
    tip: Tip,
    header: Header,
    ctx: BlockCtx,
    /// The engine's begin-block writes.
    pre: WriteSet,
    /// Begin-block writes and every pushed transaction's writes.
    writes: WriteSet,
    out: Executed,
    txs: Vec<SignedTx>,
    hashes: HashSet<Hash>,
    bytes: usize,
    max_bytes: usize,
    seq: Hash,
}

/// One transaction executed into a pending block.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Its index in the block.
    pub position: u32,
    /// Its receipt.
    pub receipt: Receipt,
    /// `s_{i-1}`.
    pub prev_seq: Hash,
    /// `s_i`.
    pub seq: Hash,
}

/// What [`Pending::push`] did with a transaction.
#[derive(Debug)]
pub enum PushOutcome {
    /// Executed into the block.
    Pushed(Pushed),
    /// It does not fit this block (gas or bytes): it waits for the next one.
    Full(String),
}

impl Pending {
    /// The height of the block being built.
    pub fn height(&self) -> u64 {
        self.header.height
    }
    /// The block it extends.
    pub fn parent(&self) -> Hash {
        self.tip.hash
    }
    /// Its timestamp.
    pub fn timestamp_ms(&self) -> u64 {
        self.header.timestamp_ms
    }
    /// Its consensus bytes (the slot on slot engines).
    pub fn consensus(&self) -> &[u8] {
        &self.header.consensus
    }
    /// The transactions pushed so far.
    pub fn len(&self) -> usize {
        self.txs.len()
    }
    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
    /// Whether `hash` was pushed.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.hashes.contains(hash)
    }
    /// The last sequencing hash.
    pub fn seq(&self) -> Hash {
        self.seq
    }
    /// The chain (branch) id its transactions sign.
    pub fn chain_id(&self) -> Hash {
        self.header.chain_id
    }
    /// Gas used so far.
    pub fn gas_used(&self) -> u64 {
        self.out.gas_used
    }

    /// The nonce `addr` has on the pending state (its next transaction's nonce), if its
    /// account was touched by this block.
    pub fn nonce_of(&self, addr: &Address) -> Option<u64> {
        match self.writes.get(&account_key(addr)) {
            Some(Some(v)) => Account::decode(v).ok().map(|a| a.nonce),
            _ => None,
        }
    }

    /// Executes `tx` on the pending state. An invalid transaction
    /// ([`ChainError::InvalidTx`]) changes nothing; [`ChainError::Consensus`]: the tip moved,
    /// this pending block is dead.
    pub fn push(&mut self, chain: &Chain, tx: &SignedTx) -> Result<PushOutcome, ChainError> {
        if chain.tip().hash != self.tip.hash {
            return Err(ChainError::Consensus(
                "the tip moved: the pending block is stale".into(),
            ));
        }
        if self.hashes.contains(&tx.hash) {
            return Err(ChainError::InvalidTx {
                hash: tx.hash,
                reason: "already pre-confirmed in this slot".into(),
            });
        }
        if self.bytes + tx.size + 4 > self.max_bytes {
            return Ok(PushOutcome::Full(format!(
                "the block of height {} is full ({} bytes)",
                self.header.height, self.bytes
            )));
        }
        let view = HeadView {
            chain,
            height: self.tip.header.height,
        };
        let mut run = BlockRun {
            overlay: Overlay {
                base: &view,
                writes: std::mem::take(&mut self.writes),
            },
            out: std::mem::take(&mut self.out),
        };
        if !run.fits(tx, &self.ctx) {
            self.writes = run.overlay.writes;
            self.out = run.out;
            return Ok(PushOutcome::Full(format!(
                "the block of height {} has {} gas left, the transaction's limit is {}",
                self.header.height,
                self.ctx
                    .limits
                    .block_gas_limit
                    .saturating_sub(self.out.gas_used),
                tx.tx.gas_limit
            )));
        }
        let r = run.try_tx(tx, &self.ctx);
        self.writes = run.overlay.writes;
        self.out = run.out;
        r?;
        let receipt = self
            .out
            .receipts
            .last()
            .cloned()
            .ok_or_else(|| ChainError::Corrupt("a pushed transaction has no receipt".into()))?;
        let position = u32::try_from(self.txs.len())
            .map_err(|_| ChainError::Corrupt("pending block position".into()))?;
        let prev_seq = self.seq;
        self.seq = preconf::seq_step(&prev_seq, &tx.hash, &receipt.hash());
        self.bytes += tx.size + 4;
        self.hashes.insert(tx.hash);
        self.txs.push(tx.clone());
        Ok(PushOutcome::Pushed(Pushed {
            position,
            receipt,
            prev_seq,
            seq: self.seq,
        }))
    }
}

impl Chain {
    /// Opens a pending block on the tip for `producer` at `timestamp_ms` (its slot's
    /// time) with the engine's `consensus` bytes. The own-slot rule is checked now.
    pub fn open_pending(
        &self,
        producer: PublicKey,
        timestamp_ms: u64,
        consensus: Vec<u8>,
    ) -> Result<Pending, ChainError> {
        let tip = self.tip();
        let header = self.next_header(&tip, producer, timestamp_ms, consensus, None)?;
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        let (ctx, pre) = self.start_on_tip(&view, &header, |start| {
            self.engine.check_own_slot(&tip.header, &header, start)
        })?;
        let seq = preconf::seq_start(&tip.hash);
        Ok(Pending {
            writes: pre.clone(),
            pre,
            ctx,
            header,
            tip,
            out: Executed::default(),
            txs: Vec::new(),
            hashes: HashSet::new(),
            bytes: 0,
            max_bytes: self.max_block_size() - BLOCK_HEADER_ROOM,
            seq,
        })
    }

    /// Seals `p` into a block (the engine's end-block, the roots, `seq_hash`), signs it
    /// with `key` and commits it, executing no transaction again.
    pub fn seal(&self, key: &Keypair, p: Pending) -> Result<Produced, ChainError> {
        let _g = self.commit.lock();
        let tip = self.tip();
        if tip.hash != p.tip.hash {
            return Err(ChainError::Consensus(
                "the tip moved: the pending block is stale".into(),
            ));
        }
        if key.public() != p.header.producer {
            return Err(ChainError::Consensus(
                "the pending block was opened for another producer".into(),
            ));
        }
        let view = HeadView {
            chain: self,
            height: tip.header.height,
        };
        let run = BlockRun {
            overlay: Overlay {
                base: &view,
                writes: p.writes,
            },
            out: p.out,
        };
        let mut executed = run.finish(&p.ctx)?;
        let mut header = p.header;
        let (state_root, receipts_root, nodes) =
            self.finish_on_tip(&tip, &view, &header, p.pre, &mut executed)?;
        header.state_root = state_root;
        header.receipts_root = receipts_root;
        header.tx_root = Block::compute_tx_root(&p.txs);
        header.ext.seq_hash = Some(p.seq);
        let dtt = self.attach_dtt(&mut header, &p.txs, &executed);
        self.engine.before_signing(&header)?;
        header.sign(key);
        let receipts = executed.receipts.clone();
        let prepared = Prepared {
            block: super::commit::block_with_dtt(header, p.txs, dtt),
            executed,
            nodes,
        };
        let applied = self.write_block(prepared, None)?;
        self.advance_finality()?;
        Ok(Produced {
            applied,
            receipts,
            rejected: Vec::new(),
        })
    }
}
