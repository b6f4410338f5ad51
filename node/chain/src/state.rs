//! Accounts and the state interface that execution reads through.
//!
//! State is a map from state keys to bytes. Account `A` lives at key `'a' ‖ A.raw(33)` with
//! value `balance u128 BE ‖ nonce u64 BE`, followed by its merge marks when a merge gave it
//! some ([`Account::encode`]); an absent account is a zero balance and nonce 0.
//! Other kinds of state (contract tables, staking) get their own key prefixes later.

use crate::error::ChainError;
use aergo_types::{Address, Hash};
use std::collections::BTreeMap;

/// An account's balance, next nonce, and merge marks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    /// Balance in aer.
    pub balance: u128,
    /// Next expected nonce.
    pub nonce: u64,
    /// Per branch merged into this chain, the next nonce of this account's transactions from
    /// that branch not merged yet ([`crate::branches`]). Empty on every account no merge
    /// touched, which then encodes in 24 bytes as before marks existed.
    pub marks: Marks,
}

/// Most branches an account carries merge marks for ([`Marks`]): a merged transaction whose
/// sender carries this many, none for its branch, is left out (a bound on the record every
/// transaction of the account reads).
pub const MAX_MARKS: usize = 64;

/// An account's merge marks: `(branch id, next nonce)` sorted by branch id, at most
/// [`MAX_MARKS`]. A candidate of that branch below the next nonce was merged before — the
/// same transaction, or another one with a nonce the branch had used — and is left out.
/// They live in the account record, which a merge rewrites anyway (the sender's nonce), so a
/// merge block adds no state key per sender.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marks(Vec<(Hash, u64)>);

/// Bytes of one mark in an account record (branch id, next nonce).
const MARK_BYTES: usize = 40;

impl Marks {
    /// The next nonce not merged yet from branch `source` (0: none merged).
    pub fn next(&self, source: &Hash) -> u64 {
        self.0
            .binary_search_by(|(b, _)| b.cmp(source))
            .map_or(0, |i| self.0.get(i).map_or(0, |(_, n)| *n))
    }

    /// Raises the next nonce of branch `source` to at least `next`; `Err` when the account
    /// carries [`MAX_MARKS`] marks, none of them `source`'s (nothing changes).
    pub fn raise(&mut self, source: &Hash, next: u64) -> Result<(), usize> {
        match self.0.binary_search_by(|(b, _)| b.cmp(source)) {
            Ok(i) => {
                if let Some((_, n)) = self.0.get_mut(i) {
                    *n = (*n).max(next);
                }
                Ok(())
            }
            Err(_) if self.0.len() >= MAX_MARKS => Err(self.0.len()),
            Err(i) => {
                self.0.insert(i, (*source, next));
                Ok(())
            }
        }
    }

    /// Every mark of `self` and `other`, the larger next nonce of a branch both hold
    /// (a consistent merge of the account); `Err` past [`MAX_MARKS`].
    pub fn union(&self, other: &Marks) -> Result<Marks, usize> {
        let mut m = self.clone();
        for (b, n) in &other.0 {
            m.raise(b, *n)?;
        }
        Ok(m)
    }

    /// `(branch id, next nonce)`, by branch id.
    pub fn iter(&self) -> impl Iterator<Item = &(Hash, u64)> {
        self.0.iter()
    }

    /// Whether no branch is marked.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Account {
    /// An account with no merge marks.
    pub fn new(balance: u128, nonce: u64) -> Self {
        Account {
            balance,
            nonce,
            marks: Marks::default(),
        }
    }

    /// `balance u128 BE ‖ nonce u64 BE`, then, when the account has merge marks, their count
    /// (one byte, 1 to [`MAX_MARKS`]) and each as `branch id 32 ‖ next nonce u64 BE` in
    /// increasing branch id: one encoding per account.
    pub fn encode(&self) -> Vec<u8> {
        // Exactly 24 bytes without marks: the allocation of every account write.
        let marks = match self.marks.0.len() {
            0 => 0,
            n => 1 + n * MARK_BYTES,
        };
        let mut v = Vec::with_capacity(24 + marks);
        v.extend_from_slice(&self.balance.to_be_bytes());
        v.extend_from_slice(&self.nonce.to_be_bytes());
        if !self.marks.0.is_empty() {
            // At most MAX_MARKS (64) marks: `raise` and `decode` keep it so.
            v.push(u8::try_from(self.marks.0.len()).unwrap_or(u8::MAX));
            for (b, n) in &self.marks.0 {
                v.extend_from_slice(&b.0);
                v.extend_from_slice(&n.to_be_bytes());
            }
        }
        v
    }

    /// Strict decoding: the encoding of [`Account::encode`] and nothing else.
    pub fn decode(b: &[u8]) -> Result<Self, ChainError> {
        let bad = |what: String| ChainError::Corrupt(format!("account value: {what}"));
        let (head, rest) = b
            .split_at_checked(24)
            .ok_or_else(|| bad(format!("{} bytes", b.len())))?;
        let mut bal = [0u8; 16];
        bal.copy_from_slice(&head[..16]);
        let mut n = [0u8; 8];
        n.copy_from_slice(&head[16..]);
        let mut marks = Vec::new();
        if let Some((count, body)) = rest.split_first() {
            let count = usize::from(*count);
            if count == 0 || count > MAX_MARKS || body.len() != count * MARK_BYTES {
                return Err(bad(format!(
                    "{count} merge marks in {} bytes (1 to {MAX_MARKS}, {MARK_BYTES} bytes each)",
                    body.len()
                )));
            }
            marks.reserve_exact(count);
            for m in body.chunks_exact(MARK_BYTES) {
                let (id, next) = m.split_at(32);
                let mut h = [0u8; 32];
                h.copy_from_slice(id);
                let mut x = [0u8; 8];
                x.copy_from_slice(next);
                let h = Hash(h);
                if marks.last().is_some_and(|(p, _): &(Hash, u64)| *p >= h) {
                    return Err(bad("merge marks out of order".into()));
                }
                marks.push((h, u64::from_be_bytes(x)));
            }
        }
        Ok(Account {
            balance: u128::from_be_bytes(bal),
            nonce: u64::from_be_bytes(n),
            marks: Marks(marks),
        })
    }
}

/// The state key of an account.
pub fn account_key(addr: &Address) -> Vec<u8> {
    account_key_array(addr).to_vec()
}

/// Bytes of an account's state key: `a` and the address's 33 raw bytes.
pub const ACCOUNT_KEY_LEN: usize = 34;

/// [`account_key`] on the stack.
pub fn account_key_array(addr: &Address) -> [u8; ACCOUNT_KEY_LEN] {
    let mut k = [0u8; ACCOUNT_KEY_LEN];
    k[0] = b'a';
    k[1..].copy_from_slice(&addr.to_raw());
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
        let a = Account::new(u128::MAX - 5, 9);
        assert_eq!(a.encode().len(), 24);
        assert_eq!(Account::decode(&a.encode()).unwrap(), a);
        assert!(Account::decode(&[0; 23]).is_err());
        // With marks: sorted by branch, one byte of count.
        let mut m = a.clone();
        m.marks.raise(&Hash([9; 32]), 4).unwrap();
        m.marks.raise(&Hash([1; 32]), 2).unwrap();
        m.marks.raise(&Hash([9; 32]), 3).unwrap();
        assert_eq!(m.marks.next(&Hash([9; 32])), 4, "a mark never goes down");
        assert_eq!(m.marks.next(&Hash([5; 32])), 0);
        let e = m.encode();
        assert_eq!(e.len(), 24 + 1 + 2 * MARK_BYTES);
        assert_eq!(Account::decode(&e).unwrap(), m);
        // Every other encoding is refused: a count of 0, a wrong length, marks out of order.
        let mut zero = a.encode();
        zero.push(0);
        assert!(Account::decode(&zero).is_err());
        assert!(Account::decode(&e[..e.len() - 1]).is_err());
        let mut swapped = e[..25].to_vec();
        swapped.extend_from_slice(&e[25 + MARK_BYTES..]);
        swapped.extend_from_slice(&e[25..25 + MARK_BYTES]);
        assert!(Account::decode(&swapped).is_err());
    }

    #[test]
    fn marks_are_bounded() {
        let mut m = Marks::default();
        for i in 0..MAX_MARKS {
            m.raise(&Hash([u8::try_from(i).unwrap(); 32]), 1).unwrap();
        }
        assert_eq!(m.raise(&Hash([255; 32]), 1), Err(MAX_MARKS));
        assert_eq!(
            m.next(&Hash([255; 32])),
            0,
            "a refused mark changes nothing"
        );
        // A branch already marked still moves on.
        m.raise(&Hash([3; 32]), 7).unwrap();
        assert_eq!(m.next(&Hash([3; 32])), 7);
        let a = Account {
            balance: 1,
            nonce: 2,
            marks: m.clone(),
        };
        assert_eq!(Account::decode(&a.encode()).unwrap(), a);
        let mut other = Marks::default();
        other.raise(&Hash([254; 32]), 1).unwrap();
        assert_eq!(m.union(&other), Err(MAX_MARKS));
        assert_eq!(other.union(&Marks::default()), Ok(other.clone()));
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
        base.0
            .insert(account_key(&addr), Account::new(5, 0).encode());
        let mut o = Overlay::new(&base);
        assert_eq!(o.account(&addr).unwrap().balance, 5);
        o.put_account(&addr, &Account::new(7, 1));
        assert_eq!(o.account(&addr).unwrap().balance, 7);
        assert_eq!(base.account(&addr).unwrap().balance, 5);
    }
}
