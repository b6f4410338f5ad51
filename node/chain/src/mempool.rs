//! The mempool: per-account nonce queues, replacement by a higher fee, limits with clear
//! rejections, and eviction of stale transactions.
//!
//! Rules, applied against the account state at the tip:
//! - a nonce below the account's is refused (already used);
//! - a nonce already pending replaces that transaction only if its gas price is at least
//!   10% higher, otherwise it is refused as underpriced;
//! - otherwise the nonce must be the next one after the account's pending queue: gaps are
//!   refused, so a queue is always contiguous and every pending transaction is includable;
//! - the account's balance must cover amount + max fee of all its pending transactions;
//! - per-account and total count and byte limits are enforced; a full pool refuses;
//! - a gas limit above the chain's per-transaction cap ([`Mempool::set_tx_gas_cap`], kept
//!   current by the node from the tip's state) is refused: it could never be included.
//!
//! Block candidates come out in a deterministic priority order: account queues merged by
//! their head's gas price (higher first), then arrival order.

use crate::state::Account;
use aergo_os::config::MempoolConfig;
use aergo_types::{Address, Hash, SignedTx};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

/// Why a transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Already in the pool.
    #[error("transaction {0} is already pending")]
    Duplicate(Hash),
    /// Nonce already used.
    #[error("nonce {got} is too low: the account's next nonce is {expected}")]
    NonceTooLow {
        /// Next nonce.
        expected: u64,
        /// Given nonce.
        got: u64,
    },
    /// A gap in the account's nonces.
    #[error("nonce gap: expected nonce {expected} (after pending transactions), got {got}")]
    NonceGap {
        /// Next nonce.
        expected: u64,
        /// Given nonce.
        got: u64,
    },
    /// Replacement without a high enough fee.
    #[error("replacement underpriced: a pending transaction with nonce {nonce} pays gas price {old}; a replacement needs at least {min}")]
    Underpriced {
        /// The nonce.
        nonce: u64,
        /// Current price.
        old: u128,
        /// Needed price.
        min: u128,
    },
    /// Cannot pay for everything pending.
    #[error("insufficient balance: {balance} aer does not cover {needed} aer (amount + max fee of this and pending transactions)")]
    InsufficientBalance {
        /// Balance.
        balance: u128,
        /// Needed.
        needed: u128,
    },
    /// A limit was hit.
    #[error("mempool full: {0}")]
    Full(String),
    /// The gas limit is above the chain's per-transaction cap.
    #[error(
        "gas limit {limit} exceeds this chain's per-transaction cap of {cap} gas (lower --gas)"
    )]
    GasCap {
        /// The transaction's gas limit.
        limit: u64,
        /// The cap.
        cap: u64,
    },
}

/// One pending transaction.
#[derive(Debug, Clone)]
pub struct PoolEntry {
    /// The transaction.
    pub tx: Arc<SignedTx>,
    /// When it arrived (ms).
    pub arrived_ms: u64,
    seq: u64,
}

/// The mempool.
pub struct Mempool {
    limits: MempoolConfig,
    accounts: HashMap<Address, BTreeMap<u64, PoolEntry>>,
    by_hash: HashMap<Hash, (Address, u64)>,
    bytes: usize,
    seq: u64,
    tx_gas_cap: u64,
}

fn cost(tx: &SignedTx) -> u128 {
    tx.tx
        .amount
        .saturating_add(tx.tx.max_fee().unwrap_or(u128::MAX))
}

impl Mempool {
    /// The limits this pool was made with.
    pub fn config(&self) -> &MempoolConfig {
        &self.limits
    }

    /// An empty pool.
    pub fn new(limits: MempoolConfig) -> Self {
        Self {
            limits,
            accounts: HashMap::new(),
            by_hash: HashMap::new(),
            bytes: 0,
            seq: 0,
            tx_gas_cap: u64::MAX,
        }
    }
    /// Sets the per-transaction gas cap that [`Mempool::add`] enforces (no cap until set).
    pub fn set_tx_gas_cap(&mut self, cap: u64) {
        self.tx_gas_cap = cap;
    }
    /// The per-transaction gas cap in force.
    pub fn tx_gas_cap(&self) -> u64 {
        self.tx_gas_cap
    }
    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
    /// Bytes of pending transactions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The limits.
    pub fn limits(&self) -> &MempoolConfig {
        &self.limits
    }
    /// A pending transaction by hash.
    pub fn get(&self, h: &Hash) -> Option<&PoolEntry> {
        let (a, n) = self.by_hash.get(h)?;
        self.accounts.get(a)?.get(n)
    }
    /// The pending transaction of `addr` with `nonce`.
    pub fn by_nonce(&self, addr: &Address, nonce: u64) -> Option<&PoolEntry> {
        self.accounts.get(addr)?.get(&nonce)
    }
    /// The next nonce for `addr` counting pending transactions.
    pub fn next_nonce(&self, addr: &Address, state_nonce: u64) -> u64 {
        match self.accounts.get(addr).and_then(|q| q.keys().next_back()) {
            Some(last) if *last >= state_nonce => last + 1,
            _ => state_nonce,
        }
    }

    /// Adds a transaction that passed stateless checks and signature verification. `acct`
    /// is the sender's state at the tip.
    pub fn add(&mut self, tx: SignedTx, acct: Account, now_ms: u64) -> Result<(), Reject> {
        if self.by_hash.contains_key(&tx.hash) {
            return Err(Reject::Duplicate(tx.hash));
        }
        if tx.tx.gas_limit > self.tx_gas_cap {
            return Err(Reject::GasCap {
                limit: tx.tx.gas_limit,
                cap: self.tx_gas_cap,
            });
        }
        let from = tx.tx.sender();
        let nonce = tx.tx.nonce;
        if nonce < acct.nonce {
            return Err(Reject::NonceTooLow {
                expected: acct.nonce,
                got: nonce,
            });
        }
        let queue_len = self.accounts.get(&from).map(|q| q.len()).unwrap_or(0);
        let existing = self
            .accounts
            .get(&from)
            .and_then(|q| q.get(&nonce))
            .cloned();
        let pending_cost: u128 = self
            .accounts
            .get(&from)
            .map(|q| {
                // Below the account's nonce: already executed (in a committed block, or in
                // the pending block whose state `acct` is), already paid.
                q.values()
                    .filter(|e| e.tx.tx.nonce != nonce && e.tx.tx.nonce >= acct.nonce)
                    .map(|e| cost(&e.tx))
                    .fold(0u128, |a, c| a.saturating_add(c))
            })
            .unwrap_or(0);
        let needed = pending_cost.saturating_add(cost(&tx));
        match &existing {
            Some(old) => {
                let min = old
                    .tx
                    .tx
                    .gas_price
                    .saturating_add(old.tx.tx.gas_price.div_ceil(10))
                    .max(old.tx.tx.gas_price + 1);
                if tx.tx.gas_price < min {
                    return Err(Reject::Underpriced {
                        nonce,
                        old: old.tx.tx.gas_price,
                        min,
                    });
                }
            }
            None => {
                let expected = self.next_nonce(&from, acct.nonce);
                // Right before the queue's first nonce also keeps it contiguous: how
                // transactions of a reverted block come back (highest nonce first).
                let prepends = self
                    .accounts
                    .get(&from)
                    .and_then(|q| q.keys().next())
                    .is_some_and(|first| nonce.checked_add(1) == Some(*first));
                if nonce != expected && !prepends {
                    return Err(Reject::NonceGap {
                        expected,
                        got: nonce,
                    });
                }
                if queue_len >= self.limits.max_per_account {
                    return Err(Reject::Full(format!(
                        "the sender already has {queue_len} pending transactions (limit {})",
                        self.limits.max_per_account
                    )));
                }
                if self.by_hash.len() >= self.limits.max_txs {
                    return Err(Reject::Full(format!(
                        "{} transactions pending (limit {})",
                        self.by_hash.len(),
                        self.limits.max_txs
                    )));
                }
            }
        }
        if needed > acct.balance {
            return Err(Reject::InsufficientBalance {
                balance: acct.balance,
                needed,
            });
        }
        let freed = existing.as_ref().map(|e| e.tx.size).unwrap_or(0);
        if self.bytes - freed + tx.size > self.limits.max_bytes {
            return Err(Reject::Full(format!(
                "{} bytes pending (limit {})",
                self.bytes, self.limits.max_bytes
            )));
        }
        if let Some(old) = existing {
            self.by_hash.remove(&old.tx.hash);
            self.bytes -= old.tx.size;
        }
        self.seq += 1;
        self.bytes += tx.size;
        self.by_hash.insert(tx.hash, (from, nonce));
        self.accounts.entry(from).or_default().insert(
            nonce,
            PoolEntry {
                tx: Arc::new(tx),
                arrived_ms: now_ms,
                seq: self.seq,
            },
        );
        Ok(())
    }

    /// Block candidates in priority order, at most `max` of them.
    pub fn candidates(&self, max: usize) -> Vec<SignedTx> {
        #[derive(PartialEq, Eq)]
        struct Head {
            price: u128,
            seq: u64,
            addr: Address,
            nonce: u64,
        }
        impl Ord for Head {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.price
                    .cmp(&o.price)
                    .then(o.seq.cmp(&self.seq))
                    .then(o.addr.cmp(&self.addr))
            }
        }
        impl PartialOrd for Head {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        let mut heap = BinaryHeap::new();
        for (addr, q) in &self.accounts {
            if let Some((n, e)) = q.iter().next() {
                heap.push(Head {
                    price: e.tx.tx.gas_price,
                    seq: e.seq,
                    addr: *addr,
                    nonce: *n,
                });
            }
        }
        let mut out = Vec::new();
        while let Some(h) = heap.pop() {
            if out.len() >= max {
                break;
            }
            let Some(q) = self.accounts.get(&h.addr) else {
                continue;
            };
            if let Some(e) = q.get(&h.nonce) {
                out.push((*e.tx).clone());
            }
            if let Some((n, e)) = q.range(h.nonce + 1..).next() {
                heap.push(Head {
                    price: e.tx.tx.gas_price,
                    seq: e.seq,
                    addr: h.addr,
                    nonce: *n,
                });
            }
        }
        out
    }

    /// Drops transactions whose nonces the chain has used: call after a block commits, with
    /// each affected sender's new nonce.
    pub fn prune(&mut self, new_nonces: &HashMap<Address, u64>) {
        drop(self.prune_some(new_nonces.iter().map(|(a, n)| (*a, *n))));
    }

    /// [`Mempool::prune`] for some senders, handing back what it removed, so the caller
    /// can free it after releasing the pool's lock (a block's thousands of transactions
    /// take a while to free, and admissions wait on that lock).
    pub fn prune_some(
        &mut self,
        new_nonces: impl IntoIterator<Item = (Address, u64)>,
    ) -> Vec<BTreeMap<u64, PoolEntry>> {
        let mut removed = Vec::new();
        for (addr, next) in new_nonces {
            let Some(q) = self.accounts.get_mut(&addr) else {
                continue;
            };
            let keep = q.split_off(&next);
            for e in q.values() {
                self.by_hash.remove(&e.tx.hash);
                self.bytes -= e.tx.size;
            }
            removed.push(std::mem::replace(q, keep));
            if q.is_empty() {
                self.accounts.remove(&addr);
            }
        }
        removed
    }

    /// Removes the given transactions and, since a queue must stay contiguous, the later
    /// nonces of the same senders.
    pub fn remove(&mut self, hashes: &[Hash]) {
        for h in hashes {
            let Some((addr, nonce)) = self.by_hash.get(h).copied() else {
                continue;
            };
            let Some(q) = self.accounts.get_mut(&addr) else {
                continue;
            };
            let gone = q.split_off(&nonce);
            for e in gone.values() {
                self.by_hash.remove(&e.tx.hash);
                self.bytes -= e.tx.size;
            }
            if q.is_empty() {
                self.accounts.remove(&addr);
            }
        }
    }

    /// Removes transactions older than the configured TTL (and the rest of their account's
    /// queue, which could no longer be included). Returns how many were dropped.
    pub fn evict_stale(&mut self, now_ms: u64) -> usize {
        let ttl = self.limits.ttl_secs.saturating_mul(1000);
        let mut dropped = 0;
        let addrs: Vec<Address> = self.accounts.keys().copied().collect();
        for a in addrs {
            let Some(q) = self.accounts.get_mut(&a) else {
                continue;
            };
            let cut = q
                .iter()
                .find(|(_, e)| now_ms.saturating_sub(e.arrived_ms) > ttl)
                .map(|(n, _)| *n);
            if let Some(n) = cut {
                let gone = q.split_off(&n);
                for e in gone.values() {
                    self.by_hash.remove(&e.tx.hash);
                    self.bytes -= e.tx.size;
                    dropped += 1;
                }
                if q.is_empty() {
                    self.accounts.remove(&a);
                }
            }
        }
        dropped
    }

    /// Up to `limit` pending entries, oldest first.
    pub fn list(&self, limit: usize) -> Vec<PoolEntry> {
        let mut v: Vec<PoolEntry> = self
            .accounts
            .values()
            .flat_map(|q| q.values().cloned())
            .collect();
        v.sort_by_key(|e| e.seq);
        v.truncate(limit);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_types::{Keypair, Tx, TxKind};

    fn tx(k: &Keypair, nonce: u64, price: u128) -> SignedTx {
        Tx {
            kind: TxKind::Transfer,
            nonce,
            from: k.public(),
            to: Some(Address::from_public_key(&k.public())),
            amount: 10,
            payload: vec![],
            gas_limit: 10,
            gas_price: price,
            chain_id: Hash::ZERO,
        }
        .sign(k)
    }

    fn rich() -> Account {
        Account::new(1_000_000, 0)
    }

    #[test]
    fn nonce_rules() {
        let k = Keypair::from_seed(&[1; 32]);
        let mut p = Mempool::new(MempoolConfig::default());
        p.add(tx(&k, 0, 1), rich(), 0).unwrap();
        assert!(matches!(
            p.add(tx(&k, 2, 1), rich(), 0),
            Err(Reject::NonceGap {
                expected: 1,
                got: 2
            })
        ));
        p.add(tx(&k, 1, 1), rich(), 0).unwrap();
        assert!(matches!(
            p.add(tx(&k, 0, 7), Account::new(1_000_000, 1), 0),
            Err(Reject::NonceTooLow { .. })
        ));
        assert!(matches!(
            p.add(tx(&k, 1, 1), rich(), 0),
            Err(Reject::Duplicate(_))
        ));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn replacement_needs_ten_percent_more() {
        let k = Keypair::from_seed(&[1; 32]);
        let mut p = Mempool::new(MempoolConfig::default());
        p.add(tx(&k, 0, 100), rich(), 0).unwrap();
        assert!(matches!(
            p.add(tx(&k, 0, 105), rich(), 0),
            Err(Reject::Underpriced { min: 110, .. })
        ));
        p.add(tx(&k, 0, 110), rich(), 0).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p.candidates(10)[0].tx.gas_price, 110);
    }

    #[test]
    fn reverted_transactions_come_back_before_the_pending_queue() {
        // A fork switch took nonces 3..=5 back out of the chain while 6..=7 still wait.
        let k = Keypair::from_seed(&[1; 32]);
        let mut p = Mempool::new(MempoolConfig::default());
        let state = Account { nonce: 3, ..rich() };
        p.add(tx(&k, 6, 1), Account { nonce: 6, ..rich() }, 0)
            .unwrap();
        p.add(tx(&k, 7, 1), Account { nonce: 6, ..rich() }, 0)
            .unwrap();
        // Not adjacent: still a gap.
        assert!(matches!(
            p.add(tx(&k, 4, 1), state.clone(), 0),
            Err(Reject::NonceGap { .. })
        ));
        for n in [5, 4, 3] {
            p.add(tx(&k, n, 1), state.clone(), 0).unwrap();
        }
        let nonces: Vec<u64> = p.candidates(10).iter().map(|t| t.tx.nonce).collect();
        assert_eq!(nonces, vec![3, 4, 5, 6, 7]);
        assert!(matches!(
            p.add(tx(&k, 2, 1), state, 0),
            Err(Reject::NonceTooLow { .. })
        ));
    }

    #[test]
    fn balance_covers_all_pending() {
        let k = Keypair::from_seed(&[1; 32]);
        let mut p = Mempool::new(MempoolConfig::default());
        let acct = Account::new(45, 0); // each tx costs 10 + 10×1 = 20
        p.add(tx(&k, 0, 1), acct.clone(), 0).unwrap();
        p.add(tx(&k, 1, 1), acct.clone(), 0).unwrap();
        assert!(matches!(
            p.add(tx(&k, 2, 1), acct, 0),
            Err(Reject::InsufficientBalance { .. })
        ));
    }

    #[test]
    fn limits_prune_evict_and_priority() {
        let a = Keypair::from_seed(&[1; 32]);
        let b = Keypair::from_seed(&[2; 32]);
        let lim = MempoolConfig {
            max_txs: 3,
            max_per_account: 2,
            ttl_secs: 10,
            ..Default::default()
        };
        let mut p = Mempool::new(lim);
        p.add(tx(&a, 0, 1), rich(), 0).unwrap();
        p.add(tx(&a, 1, 1), rich(), 0).unwrap();
        assert!(matches!(
            p.add(tx(&a, 2, 1), rich(), 0),
            Err(Reject::Full(_))
        ));
        p.add(tx(&b, 0, 5), rich(), 5000).unwrap();
        assert!(matches!(
            p.add(tx(&b, 1, 5), rich(), 0),
            Err(Reject::Full(_))
        ));
        let c = p.candidates(10);
        assert_eq!(c[0].tx.from, b.public(), "higher price first");
        assert_eq!(c.len(), 3);
        let mut n = HashMap::new();
        n.insert(Address::from_public_key(&a.public()), 1);
        p.prune(&n);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p.evict_stale(12_000),
            1,
            "a's nonce-1 tx (arrived at 0) is stale"
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p.bytes(), p.list(10)[0].tx.size);
    }
}
