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
    /// The block this one extends (possibly sealed but not committed yet: then
    /// `parent_writes` holds its writes and `grandparent` its parent).
    tip: Tip,
    parent_writes: Option<WriteSet>,
    grandparent: Option<Hash>,
    header: Header,
    ctx: BlockCtx,
    /// The engine's begin-block writes.
    pre: WriteSet,
    /// Begin-block writes and every pushed transaction's writes.
    writes: WriteSet,
    out: Executed,
    txs: Vec<SignedTx>,
    hashes: HashSet<Hash>,
    /// The block's size so far: transactions and their DTT entries (counted as each is
    /// known; before a push, room for the longest entry it could have).
    bytes: usize,
    max_bytes: usize,
    dtt: crate::dtt::Builder,
    /// Each pushed transaction's DTT entry, as the builder gave it: the canonical DTT of the
    /// block so far (the seal does not compute it again).
    dtt_entries: Vec<aergo_types::block_ext::DttEntry>,
    /// The transactions' and receipts' Merkle roots, one leaf per push (the seal reads them
    /// instead of hashing the block again).
    tx_root: aergo_types::hash::MerkleAcc,
    receipts_root: aergo_types::hash::MerkleAcc,
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
    /// A pending block on `tip` (with `parent`: `tip` is sealed but not committed, its
    /// writes and its own parent's hash) after the begin-block writes `pre`.
    fn new(
        chain: &Chain,
        tip: Tip,
        header: Header,
        ctx: BlockCtx,
        pre: WriteSet,
        parent: Option<(WriteSet, Hash)>,
    ) -> Self {
        let (parent_writes, grandparent) = match parent {
            Some((w, g)) => (Some(w), Some(g)),
            None => (None, None),
        };
        Pending {
            parent_writes,
            grandparent,
            writes: pre.clone(),
            pre,
            ctx,
            header,
            seq: preconf::seq_start(&tip.hash),
            tip,
            out: Executed::default(),
            txs: Vec::new(),
            hashes: HashSet::new(),
            bytes: crate::dtt::DTT_OVERHEAD,
            max_bytes: chain.max_block_size() - BLOCK_HEADER_ROOM,
            dtt: Default::default(),
            dtt_entries: Vec::new(),
            tx_root: Default::default(),
            receipts_root: Default::default(),
        }
    }

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

    /// Whether this pending block can still be sealed: its parent is the tip, or (a
    /// parent sealed but not committed yet) its parent's parent still is. Once the parent
    /// is committed, its writes are read from the chain.
    fn check_tip(&mut self, chain: &Chain) -> Result<(), ChainError> {
        let tip = chain.tip().hash;
        if tip == self.tip.hash {
            if self.parent_writes.is_some() {
                self.parent_writes = None;
                self.grandparent = None;
            }
            return Ok(());
        }
        if self.grandparent.is_some() && self.grandparent == Some(tip) {
            return Ok(());
        }
        Err(ChainError::Consensus(
            "the tip moved: the pending block is stale".into(),
        ))
    }

    /// `addr`'s account on the pending state, if this block (or its sealed, uncommitted
    /// parent) touched it (admission checks balances against what was promised, not only
    /// against the committed tip).
    pub fn account_of(&self, addr: &Address) -> Option<Account> {
        let k = account_key(addr);
        let v = match self.writes.get(&k) {
            Some(v) => v,
            None => self.parent_writes.as_ref()?.get(&k)?,
        };
        match v {
            Some(v) => Account::decode(v).ok(),
            None => Some(Account::default()),
        }
    }

    /// `addr`'s account on the pending state (touched or not).
    pub fn account(&self, chain: &Chain, addr: &Address) -> Result<Account, ChainError> {
        if let Some(a) = self.account_of(addr) {
            return Ok(a);
        }
        // Untouched by this block and its uncommitted parent: as of the parent's parent
        // then (a value only the parent could have changed is in `parent_writes`).
        let head = HeadView {
            chain,
            height: if self.parent_writes.is_some() {
                self.tip.header.height.saturating_sub(1)
            } else {
                self.tip.header.height
            },
        };
        head.account(addr)
    }

    /// Each sender's next nonce after the transactions promised in this block (what
    /// admission must hold to while the block is being sealed and committed, when no
    /// pending block answers [`Pending::nonce_of`]).
    pub fn promised_nonces(&self) -> std::collections::HashMap<Address, u64> {
        let mut m = std::collections::HashMap::new();
        for t in &self.txs {
            let next = t.tx.nonce.saturating_add(1);
            let e = m.entry(t.tx.sender()).or_insert(next);
            *e = (*e).max(next);
        }
        m
    }

    /// The nonce `addr` has on the pending state (its next transaction's nonce), if its
    /// account was touched by this block or its uncommitted parent.
    pub fn nonce_of(&self, addr: &Address) -> Option<u64> {
        self.account_of(addr).map(|a| a.nonce)
    }

    /// Executes `tx` on the pending state. An invalid transaction
    /// ([`ChainError::InvalidTx`]) changes nothing; [`ChainError::Consensus`]: the tip moved,
    /// this pending block is dead.
    pub fn push(&mut self, chain: &Chain, tx: &SignedTx) -> Result<PushOutcome, ChainError> {
        self.check_tip(chain)?;
        if self.hashes.contains(&tx.hash) {
            return Err(ChainError::InvalidTx {
                hash: tx.hash,
                reason: "already pre-confirmed in this slot".into(),
            });
        }
        let j = u32::try_from(self.txs.len()).unwrap_or(u32::MAX);
        if self.bytes + tx.size + 4 + crate::dtt::max_entry_len(j) > self.max_bytes {
            return Ok(PushOutcome::Full(format!(
                "the block of height {} is full ({} bytes)",
                self.header.height, self.bytes
            )));
        }
        // The parent's state: committed (the head), or the head below a sealed parent with
        // the parent's writes on top.
        let layered = self.parent_writes.is_some();
        let head = HeadView {
            chain,
            height: if layered {
                self.tip.header.height.saturating_sub(1)
            } else {
                self.tip.header.height
            },
        };
        let parent = Overlay {
            base: &head,
            writes: self.parent_writes.take().unwrap_or_default(),
        };
        let mut run = BlockRun {
            overlay: Overlay {
                base: &parent,
                writes: std::mem::take(&mut self.writes),
            },
            out: std::mem::take(&mut self.out),
        };
        let fits = run.fits(tx, &self.ctx);
        let r = if fits {
            run.try_tx(tx, &self.ctx)
        } else {
            Ok(())
        };
        self.writes = run.overlay.writes;
        self.out = run.out;
        if layered {
            self.parent_writes = Some(parent.writes);
        }
        if !fits {
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
        let receipt_hash = receipt.hash();
        self.seq = preconf::seq_step(&prev_seq, &tx.hash, &receipt_hash);
        self.tx_root.push(&tx.hash);
        self.receipts_root.push(&receipt_hash);
        let entry = self.out.access.last().map(|a| self.dtt.push(a));
        self.bytes += tx.size + 4 + entry.as_ref().map_or(0, |e| crate::dtt::entry_len(j, e));
        self.dtt_entries.extend(entry);
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
        Ok(Pending::new(self, tip, header, ctx, pre, None))
    }

    /// Seals `p` into a block (the engine's end-block, the roots, `seq_hash`), signs it
    /// with `key` and commits it, executing no transaction again.
    pub fn seal(&self, key: &Keypair, p: Pending) -> Result<Produced, ChainError> {
        let sealed = self.seal_block(key, p)?;
        self.commit_sealed(sealed)
    }

    /// The first half of [`Chain::seal`]: the signed block, not committed yet. The next
    /// pending block can open on it at once ([`Chain::open_pending_after`]) while it is
    /// committed ([`Chain::commit_sealed`]).
    pub fn seal_block(&self, key: &Keypair, mut p: Pending) -> Result<Sealed, ChainError> {
        // Assembly of a pre-executed block: its transactions ran at admission.
        let _run = crate::stages::STAGES
            .assemble
            .start()
            .items(p.out.receipts.len());
        let _g = self.commit.lock();
        let tip = self.tip();
        p.check_tip(self)?;
        if tip.hash != p.tip.hash {
            return Err(ChainError::Consensus(
                "the pending block's parent is not committed yet".into(),
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
        let known = Some((p.receipts_root.len(), p.receipts_root.root()));
        let (state_root, receipts_root, nodes) =
            self.finish_on_tip(&tip, &view, &header, p.pre, &mut executed, known)?;
        header.state_root = state_root;
        header.receipts_root = receipts_root;
        header.tx_root = p.tx_root.root();
        header.ext.seq_hash = Some(p.seq);
        let built = (p.dtt_entries.len() == p.txs.len()).then_some(p.dtt_entries);
        let dtt = self.attach_dtt(&mut header, &p.txs, &executed, built);
        self.engine.before_signing(&header)?;
        header.sign(key);
        let receipts = executed.receipts.clone();
        Ok(Sealed {
            prepared: Prepared {
                block: super::commit::block_with_dtt(header, p.txs, dtt),
                executed,
                nodes,
            },
            receipts,
            log_end: tip.log_end,
        })
    }

    /// Commits a sealed block (the second half of [`Chain::seal`]).
    pub fn commit_sealed(&self, s: Sealed) -> Result<Produced, ChainError> {
        let _g = self.commit.lock();
        if self.tip().hash != s.prepared.block.header.parent {
            return Err(ChainError::Consensus(
                "the tip moved: the sealed block is stale".into(),
            ));
        }
        let applied = self.write_block(s.prepared, None)?;
        self.advance_finality()?;
        Ok(Produced {
            applied,
            receipts: s.receipts,
            rejected: Vec::new(),
        })
    }

    /// Opens the next pending block on `sealed` before it is committed (the same producer
    /// makes the next block too: solo): its state is the head below `sealed` with
    /// `sealed`'s writes on top until the commit lands.
    pub fn open_pending_after(
        &self,
        sealed: &Sealed,
        producer: PublicKey,
        timestamp_ms: u64,
        consensus: Vec<u8>,
    ) -> Result<Pending, ChainError> {
        let parent = &sealed.prepared.block.header;
        let tip = Tip {
            header: parent.clone(),
            hash: parent.hash(),
            log_end: sealed.log_end,
        };
        let header = self.next_header(&tip, producer, timestamp_ms, consensus, None)?;
        let head = HeadView {
            chain: self,
            height: parent.height.saturating_sub(1),
        };
        let view = Overlay {
            base: &head,
            writes: sealed.prepared.executed.writes.clone(),
        };
        let (ctx, pre) = self.start_on_tip(&view, &header, |start| {
            self.engine.check_own_slot(&tip.header, &header, start)
        })?;
        let grandparent = parent.parent;
        Ok(Pending::new(
            self,
            tip,
            header,
            ctx,
            pre,
            Some((view.writes, grandparent)),
        ))
    }
}

/// A block sealed and signed from a pending block, not committed yet.
pub struct Sealed {
    prepared: Prepared,
    receipts: Vec<Receipt>,
    log_end: crate::blocklog::LogPos,
}

impl Sealed {
    /// The block.
    pub fn block(&self) -> &Block {
        &self.prepared.block
    }
}
