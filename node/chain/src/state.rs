//! Accounts and the state interface that execution reads through.
//!
//! State is a map from state keys to bytes. Account `A` lives at key `'a' ‖ A.raw(33)` with
//! value `balance u128 BE ‖ nonce u64 BE`; an absent account is a zero balance and nonce 0.
//! Other kinds of state (contract tables, staking) get their own key prefixes later.

use crate::error::ChainError;
use aergo_types::Address;
use std::collections::BTreeMap;

/// An account's balance and next nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// Balance in aer.
    pub balance: u128,
    /// Next expected nonce.
    pub nonce: u64,
}

impl Account {
    /// 24-byte encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.balance.to_be_bytes());
        v.extend_from_slice(&self.nonce.to_be_bytes());
        v
    }
    /// Strict decoding.
    pub fn decode(b: &[u8]) -> Result<Self, ChainError> {
        if b.len() != 24 {
            return Err(ChainError::Corrupt(format!(
                "account value of {} bytes",
                b.len()
            )));
        }
        let mut bal = [0u8; 16];
        bal.copy_from_slice(&b[..16]);
        let mut n = [0u8; 8];
        n.copy_from_slice(&b[16..]);
        Ok(Account {
            balance: u128::from_be_bytes(bal),
            nonce: u64::from_be_bytes(n),
        })
    }
}

/// The state key of an account.
pub fn account_key(addr: &Address) -> Vec<u8> {
    let mut k = Vec::with_capacity(34);
    k.push(b'a');
    k.extend_from_slice(&addr.to_raw());
    k
}

/// Key-value pairs from a range scan, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Read access to state at one fixed point (branch and height, plus any overlay).
pub trait StateView {
    /// The value at `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError>;

    /// Every present key with `start <= key < end`, in key order (contract tables).
    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Pairs, ChainError>;

    /// The first `limit` pairs of [`StateView::scan`], reading no more than needed where the
    /// view can (contract scans ask for no more rows than their gas pays for).
    fn scan_limit(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, ChainError> {
        let mut v = self.scan(start, end)?;
        v.truncate(limit);
        Ok(v)
    }

    /// The account at `addr` (zero if absent).
    fn account(&self, addr: &Address) -> Result<Account, ChainError> {
        match self.get(&account_key(addr))? {
            Some(b) => Account::decode(&b),
            None => Ok(Account::default()),
        }
    }
}

/// Writes produced by execution: key → new value (`None` = delete), in key order so that
/// applying them is deterministic.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A view with pending writes layered over a base view.
pub struct Overlay<'a> {
    /// The state below.
    pub base: &'a dyn StateView,
    /// Pending writes.
    pub writes: WriteSet,
}

impl<'a> Overlay<'a> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a dyn StateView) -> Self {
        Self {
            base,
            writes: WriteSet::new(),
        }
    }
    /// Sets an account.
    pub fn put_account(&mut self, addr: &Address, acct: &Account) {
        self.writes.insert(account_key(addr), Some(acct.encode()));
    }
}

impl StateView for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Pairs, ChainError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.base.scan(start, end)?.into_iter().collect();
        if start < end {
            for (k, v) in self.writes.range(start.to_vec()..end.to_vec()) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged.into_iter().collect())
    }

    fn scan_limit(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, ChainError> {
        if start >= end {
            return Ok(Vec::new());
        }
        // Each pending deletion hides at most one base pair: with that many more, at least
        // `limit` base pairs survive, and the first `limit` merged pairs all sort at or before
        // the last base pair read.
        let range = self.writes.range(start.to_vec()..end.to_vec());
        let deletes = range.clone().filter(|(_, v)| v.is_none()).count();
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .base
            .scan_limit(start, end, limit.saturating_add(deletes))?
            .into_iter()
            .collect();
        for (k, v) in range {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

/// An in-memory state (genesis construction, tests).
#[derive(Default, Clone)]
pub struct MemState(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl StateView for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<Pairs, ChainError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .0
            .range(start.to_vec()..end.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_limit(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, ChainError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .0
            .range(start.to_vec()..end.to_vec())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_codec() {
        let a = Account {
            balance: u128::MAX - 5,
            nonce: 9,
        };
        assert_eq!(Account::decode(&a.encode()).unwrap(), a);
        assert!(Account::decode(&[0; 23]).is_err());
    }

    #[test]
    fn overlay_scan_merges_writes_and_deletes() {
        let mut base = MemState::default();
        for k in [b"k1", b"k2", b"k3"] {
            base.0.insert(k.to_vec(), b"base".to_vec());
        }
        let mut o = Overlay::new(&base);
        o.writes.insert(b"k2".to_vec(), None);
        o.writes.insert(b"k25".to_vec(), Some(b"new".to_vec()));
        o.writes.insert(b"k9".to_vec(), Some(b"out".to_vec()));
        let got: Vec<Vec<u8>> = o
            .scan(b"k1", b"k4")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(got, vec![b"k1".to_vec(), b"k25".to_vec(), b"k3".to_vec()]);
    }

    #[test]
    fn overlay_reads_its_writes_first() {
        let mut base = MemState::default();
        let addr = Address {
            tag: 1,
            key: [1; 32],
        };
        base.0.insert(
            account_key(&addr),
            Account {
                balance: 5,
                nonce: 0,
            }
            .encode(),
        );
        let mut o = Overlay::new(&base);
        assert_eq!(o.account(&addr).unwrap().balance, 5);
        o.put_account(
            &addr,
            &Account {
                balance: 7,
                nonce: 1,
            },
        );
        assert_eq!(o.account(&addr).unwrap().balance, 7);
        assert_eq!(base.account(&addr).unwrap().balance, 5);
    }
}
