//! Consistent merges: a three-way merge of state.
//!
//! A branch created with the consistent strategy merges by state, not by replaying its
//! transactions on the target's tip. The merge block carries the source's transactions since
//! the merge base (as an auto merge does); every node replays them on the **base** — the
//! target's state at the merge base: the fork point before the first merge, the previous
//! merge block after — which gives *theirs*, the source's changes, without trusting anything
//! but the transactions' signatures. *Ours* is the target's tip. For each key theirs wrote:
//! - unchanged by theirs (equal to base): nothing;
//! - unchanged by ours: theirs applies;
//! - changed on both sides — even to equal values, since two equal spends are two spends: a
//!   conflict, decided by a resolver:
//!   - a native account: the built-in resolver — balance = base + both sides' deltas
//!     (refused if it would be negative), nonce = the larger;
//!   - staking state, branch records and anything else the chain keeps: refused (staking
//!     never merges).
//!
//! Contract state merges by **rows**, not raw keys. A contract whose script differs between
//! base, ours and theirs refuses the merge (the schemas diverged); one deployed on the
//! branch alone applies whole. In the others, each row theirs changed merges cell by cell:
//! a cell changed on one side takes that side's value; a cell changed on both sides (even to
//! equal values) goes to the branch's resolver contract, whose `resolve_<table>(col, base, ours, theirs)` (text
//! values, NULL as NULL) returns the merged cell as text, cast to the column's type, or
//! raises to refuse. Without a resolver such a cell refuses the merge; so do a row deleted
//! on one side and changed on the other, and rows of a table without a primary key gained
//! on both sides. Index entries are not merged as keys: they are rebuilt from the merged
//! rows, and a unique index that would hold two rows refuses the merge.
//!
//! A merge with any conflict left is refused as a whole and changes nothing; its reason lists
//! the conflicts. Everything here is a pure function of the three views and the resolver's
//! code, which runs read-only on ours with a gas cap per call.

use crate::contracts::{CallCtx, ReadKv};
use crate::error::ChainError;
use crate::state::{Account, Overlay, StateView, WriteSet};
use aergo_sql::rows::{self, KeyKind};
use aergo_sql::Value;
use aergo_types::{Address, Hash};
use std::collections::BTreeMap;

/// Most conflicts a refusal lists one by one (the rest are counted).
pub const MAX_LISTED_CONFLICTS: usize = 32;

/// Gas each call of a resolver function may use (and all of them together at most the gas the
/// merge block has left: [`Resolver::gas`]).
pub const RESOLVER_GAS: u64 = 1_000_000;

/// Most resolver calls one merge makes (beyond: refused).
pub const MAX_RESOLVER_CALLS: usize = 10_000;

/// A consistent merge's resolver contract and the block the merge runs in.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// The contract with the `resolve_<table>` functions.
    pub contract: Address,
    /// The merge block's height.
    pub height: u64,
    /// Its timestamp.
    pub time_ms: u64,
    /// The gas the merge block has left for resolver calls (its gas limit less what its
    /// transactions used): a resolver's work is bounded like a block's.
    pub gas: u64,
}

/// A key changed on both sides that no resolver could decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The state key.
    pub key: Vec<u8>,
    /// What it is and why it could not be merged.
    pub reason: String,
}

/// The writes that merge `theirs` (what the source's replay on `base` wrote) into `ours`,
/// or every conflict no resolver could decide.
pub fn three_way(
    base: &dyn StateView,
    ours: &dyn StateView,
    theirs: &WriteSet,
    resolver: Option<&Resolver>,
) -> Result<Result<WriteSet, Vec<Conflict>>, ChainError> {
    let mut m = Merge {
        base,
        ours,
        resolver,
        resolver_code: None,
        calls: 0,
        gas_left: resolver.map(|r| r.gas).unwrap_or(0),
        out: WriteSet::new(),
        conflicts: Vec::new(),
        unique: Vec::new(),
    };
    let mut by_contract: BTreeMap<Address, KeyWrites<'_>> = BTreeMap::new();
    for (k, t) in theirs {
        match (k.first(), addr_of(k)) {
            (Some(b'c'), Some(a)) => by_contract.entry(a).or_default().push((k, t)),
            _ => m.key(k, t)?,
        }
    }
    for (a, writes) in &by_contract {
        m.contract(a, writes)?;
    }
    m.check_unique()?;
    Ok(if m.conflicts.is_empty() {
        Ok(m.out)
    } else {
        Err(m.conflicts)
    })
}

/// Some of theirs' writes: (key, value).
type KeyWrites<'a> = Vec<(&'a Vec<u8>, &'a Option<Vec<u8>>)>;

/// The address in a state key `kind ‖ address 33 ‖ …`.
fn addr_of(k: &[u8]) -> Option<Address> {
    let raw: [u8; 33] = k.get(1..34)?.try_into().ok()?;
    Address::from_raw(&raw).ok()
}

/// A merge in progress.
struct Merge<'a> {
    base: &'a dyn StateView,
    ours: &'a dyn StateView,
    resolver: Option<&'a Resolver>,
    /// The resolver's code, loaded at its first call.
    resolver_code: Option<aergo_sql::Contract>,
    calls: usize,
    /// Gas left for resolver calls.
    gas_left: u64,
    out: WriteSet,
    conflicts: Vec<Conflict>,
    /// Index entries written for a unique index: (key, length of its prefix without the
    /// primary key, the index's name).
    unique: Vec<(Vec<u8>, usize, String)>,
}

impl Merge<'_> {
    fn conflict(&mut self, key: &[u8], reason: String) {
        self.conflicts.push(Conflict {
            key: key.to_vec(),
            reason,
        });
    }

    /// Merges one key by value (anything but contract state).
    fn key(&mut self, k: &[u8], t: &Option<Vec<u8>>) -> Result<(), ChainError> {
        let b = self.base.get(k)?;
        if *t == b {
            return Ok(());
        }
        let o = self.ours.get(k)?;
        if o == b {
            self.out.insert(k.to_vec(), t.clone());
            return Ok(());
        }
        // Changed on both sides — even to equal values: two equal spends are two spends.
        match resolve(k, b.as_deref(), o.as_deref(), t.as_deref())? {
            Ok(v) => {
                self.out.insert(k.to_vec(), v);
            }
            Err(reason) => self.conflict(k, reason),
        }
        Ok(())
    }

    /// The contract's metadata (scripts, owner) in `view`, patched with `writes`.
    fn meta(
        view: &dyn StateView,
        pfx: &[u8],
        writes: &[(&Vec<u8>, &Option<Vec<u8>>)],
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, ChainError> {
        let (mut start, mut end) = (pfx.to_vec(), pfx.to_vec());
        start.push(aergo_sql::exec::keys::META);
        end.push(aergo_sql::exec::keys::META + 1);
        let mut m: BTreeMap<_, _> = view.scan(&start, &end)?.into_iter().collect();
        for (k, v) in writes {
            if k.as_slice() >= start.as_slice() && k.as_slice() < end.as_slice() {
                match v {
                    Some(v) => m.insert(k.to_vec(), v.clone()),
                    None => m.remove(k.as_slice()),
                };
            }
        }
        Ok(m)
    }

    /// Merges what theirs wrote in contract `a` row by row.
    fn contract(
        &mut self,
        a: &Address,
        writes: &[(&Vec<u8>, &Option<Vec<u8>>)],
    ) -> Result<(), ChainError> {
        let pfx = crate::contracts::prefix(a);
        let base_meta = Self::meta(self.base, &pfx, &[])?;
        let ours_meta = Self::meta(self.ours, &pfx, &[])?;
        let theirs_meta = Self::meta(self.base, &pfx, writes)?;
        if base_meta.is_empty() && ours_meta.is_empty() {
            // Deployed on the branch alone: nothing of it on ours to merge with.
            for (k, t) in writes {
                self.key(k, t)?;
            }
            return Ok(());
        }
        if base_meta != ours_meta || base_meta != theirs_meta {
            let side = match (base_meta != ours_meta, base_meta != theirs_meta) {
                (true, true) => "on both sides",
                (true, false) => "on the target",
                _ => "on the branch",
            };
            self.conflict(
                &pfx,
                format!(
                    "contract {a}: its script changed {side} since the merge base (a consistent merge needs one schema)"
                ),
            );
            return Ok(());
        }
        let code = match crate::contracts::load(a, &ReadKv { view: self.ours }) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(ChainError::Corrupt(format!("contract {a} has no code"))),
            Err(e) => return Err(ChainError::Corrupt(format!("contract {a}: {e}"))),
        };
        for (k, t) in writes {
            let rest = k.get(34..).unwrap_or_default();
            match rows::classify(rest) {
                // Equal on all three sides (checked above); index entries are rebuilt.
                KeyKind::Meta | KeyKind::Index(_) => {}
                KeyKind::Row { table, pk } => self.row(a, &code, table, pk, k, t)?,
                KeyKind::Seq(table) => {
                    let before = self.conflicts.len();
                    self.key(k, t)?;
                    if self.conflicts.len() > before {
                        self.conflicts.pop();
                        let name = table_name(&code, table);
                        self.conflict(
                            k,
                            format!(
                                "contract {a}: table {name} has no primary key and gained rows on both sides (merges work on rows of tables with a primary key)"
                            ),
                        );
                    }
                }
                KeyKind::Unknown => self.key(k, t)?,
            }
        }
        Ok(())
    }

    /// Merges row `pk` of table `table` (state key `k`, theirs `t`) cell by cell and
    /// rebuilds its index entries.
    fn row(
        &mut self,
        a: &Address,
        code: &aergo_sql::Contract,
        table: u32,
        pk: &[u8],
        k: &[u8],
        t: &Option<Vec<u8>>,
    ) -> Result<(), ChainError> {
        let b = self.base.get(k)?;
        if *t == b {
            return Ok(());
        }
        let o = self.ours.get(k)?;
        let Some(tbl) = rows::table(code.catalog(), table) else {
            self.conflict(k, format!("contract {a}: a row of unknown table #{table}"));
            return Ok(());
        };
        let dec = |v: &Option<Vec<u8>>| -> Result<Option<Vec<Value>>, ChainError> {
            v.as_ref()
                .map(|b| rows::decode(tbl, b))
                .transpose()
                .map_err(|e| ChainError::Corrupt(format!("contract {a}: {e}")))
        };
        let (br, or, tr) = (dec(&b)?, dec(&o)?, dec(t)?);
        let shown = || row_name(tbl, or.as_ref().or(tr.as_ref()).or(br.as_ref()), pk);
        let merged: Option<Vec<Value>> = if o == b {
            tr.clone()
        } else if tbl.pk.is_empty() {
            self.conflict(
                k,
                format!(
                    "contract {a}: {} changed on both sides, and table {} has no primary key (merges work on rows of tables with a primary key)",
                    shown(),
                    tbl.name
                ),
            );
            return Ok(());
        } else {
            match (&or, &tr) {
                (Some(ov), Some(tv)) => {
                    let mut row = Vec::with_capacity(tbl.columns.len());
                    for (c, col) in tbl.columns.iter().enumerate() {
                        let null = Value::Null;
                        let bv = br.as_ref().and_then(|r| r.get(c)).unwrap_or(&null);
                        let (ovc, tvc) = (ov.get(c).unwrap_or(&null), tv.get(c).unwrap_or(&null));
                        // A cell changed on both sides goes to the resolver even when
                        // both made it equal (two equal debits are two debits).
                        let v = if rows::same_cell(ovc, bv) {
                            tvc.clone()
                        } else if rows::same_cell(tvc, bv) {
                            ovc.clone()
                        } else {
                            match self.resolve_cell(tbl, c, bv, ovc, tvc)? {
                                Ok(v) if v.is_null() && col.not_null => {
                                    self.conflict(
                                        k,
                                        format!(
                                            "contract {a}: {}, column {}: the resolver returned NULL for a NOT NULL column",
                                            shown(),
                                            col.name
                                        ),
                                    );
                                    return Ok(());
                                }
                                Ok(v) => v,
                                Err(why) => {
                                    self.conflict(
                                        k,
                                        format!(
                                            "contract {a}: {}, column {} changed on both sides: {why}",
                                            shown(),
                                            col.name
                                        ),
                                    );
                                    return Ok(());
                                }
                            }
                        };
                        row.push(v);
                    }
                    Some(row)
                }
                _ => {
                    let (gone, kept) = if or.is_none() {
                        ("the target", "the branch")
                    } else {
                        ("the branch", "the target")
                    };
                    self.conflict(
                        k,
                        format!(
                            "contract {a}: {} was deleted on {gone} and changed on {kept}",
                            shown()
                        ),
                    );
                    return Ok(());
                }
            }
        };
        let bytes = merged
            .as_ref()
            .map(|r| rows::encode(r))
            .transpose()
            .map_err(|e| ChainError::Corrupt(format!("contract {a}: {e}")))?;
        if bytes == o {
            return Ok(());
        }
        // Index entries: those of ours' row out, those of the merged row in.
        let pfx = crate::contracts::prefix(a);
        let old = or
            .as_ref()
            .map(|r| rows::index_entries(&pfx, tbl, pk, r))
            .unwrap_or_default();
        let new = merged
            .as_ref()
            .map(|r| rows::index_entries(&pfx, tbl, pk, r))
            .unwrap_or_default();
        for e in &old {
            if !new.iter().any(|n| n.key == e.key) {
                self.out.insert(e.key.clone(), None);
            }
        }
        for e in new {
            if let Some(p) = e.unique_prefix {
                self.unique.push((e.key.clone(), p, e.index.clone()));
            }
            if !old.iter().any(|x| x.key == e.key) {
                self.out.insert(e.key, Some(Vec::new()));
            }
        }
        self.out.insert(k.to_vec(), bytes);
        Ok(())
    }

    /// Asks the resolver for the merged value of column `c` of a row of `tbl`.
    fn resolve_cell(
        &mut self,
        tbl: &aergo_sql::ir::Table,
        c: usize,
        b: &Value,
        o: &Value,
        t: &Value,
    ) -> Result<Result<Value, String>, ChainError> {
        let Some(r) = self.resolver else {
            return Ok(Err(
                "no resolver contract decides it (create the branch with --resolver CONTRACT)"
                    .into(),
            ));
        };
        self.calls += 1;
        if self.calls > MAX_RESOLVER_CALLS {
            return Ok(Err(format!(
                "more than {MAX_RESOLVER_CALLS} cells need the resolver; merge more often"
            )));
        }
        if self.resolver_code.is_none() {
            match crate::contracts::load(&r.contract, &ReadKv { view: self.ours }) {
                Ok(Some(c)) => self.resolver_code = Some(c),
                Ok(None) => {
                    return Ok(Err(format!(
                        "the resolver {} is not a contract on the target",
                        r.contract
                    )))
                }
                Err(e) => return Err(ChainError::Corrupt(format!("resolver: {e}"))),
            }
        }
        let Some(code) = &self.resolver_code else {
            return Ok(Err("the resolver could not be loaded".into()));
        };
        let Some(col) = tbl.columns.get(c) else {
            return Ok(Err(format!("table {} has no column #{c}", tbl.name)));
        };
        let cap = RESOLVER_GAS.min(self.gas_left);
        if cap == 0 {
            return Ok(Err(
                "the resolver calls used up the merge block's gas; merge more often".into(),
            ));
        }
        let text = |v: &Value| {
            if v.is_null() {
                Value::Null
            } else {
                Value::Text(v.to_text())
            }
        };
        let args = [Value::Text(col.name.clone()), text(b), text(o), text(t)];
        let ov = Overlay::new(self.ours);
        let mut ctx = CallCtx {
            ov: &ov,
            sender: r.contract,
            contract: r.contract,
            height: r.height,
            time_ms: r.time_ms,
            tx_hash: Hash::ZERO,
            amount: 0,
            sends: Vec::new(),
        };
        let f = format!("resolve_{}", tbl.name);
        Ok(
            match code.view(&f, &args, &mut ctx, &ReadKv { view: self.ours }, cap) {
                Ok(out) => {
                    self.gas_left = self.gas_left.saturating_sub(out.gas_used);
                    out.result.cast(&col.ty).map_err(|e| {
                        format!(
                            "the resolver's {f} returned a value that is not a {}: {e}",
                            col.ty.pg_name()
                        )
                    })
                }
                Err(e) => {
                    // A refusal (or running out of gas) costs its whole cap.
                    self.gas_left = self.gas_left.saturating_sub(cap);
                    Err(format!("the resolver's {f} refused: {e}"))
                }
            },
        )
    }

    /// Refuses the merge where a unique index would hold two rows.
    fn check_unique(&mut self) -> Result<(), ChainError> {
        if self.unique.is_empty() {
            return Ok(());
        }
        let merged = Overlay {
            base: self.ours,
            writes: std::mem::take(&mut self.out),
        };
        let mut bad = Vec::new();
        for (key, p, index) in &self.unique {
            let prefix = key.get(..*p).unwrap_or_default();
            let end = aergo_sql::encoding::prefix_end(prefix);
            if merged
                .scan_limit(prefix, &end, 2)?
                .iter()
                .any(|(k, _)| k != key)
            {
                bad.push((key.clone(), index.clone()));
            }
        }
        self.out = merged.writes;
        for (key, index) in bad {
            let a = addr_of(&key).map(|a| a.encode()).unwrap_or_default();
            self.conflict(
                &key,
                format!("contract {a}: the merged rows would hold one value twice in unique index {index}"),
            );
        }
        Ok(())
    }
}

/// A table's name, or its id when the catalog has no such table.
fn table_name(code: &aergo_sql::Contract, id: u32) -> String {
    rows::table(code.catalog(), id)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| format!("#{id}"))
}

/// A row as errors show it: `row (key values) of table T`, or its encoded key.
fn row_name(tbl: &aergo_sql::ir::Table, row: Option<&Vec<Value>>, pk: &[u8]) -> String {
    match row {
        Some(r) if !tbl.pk.is_empty() => format!(
            "row ({}) of table {}",
            tbl.pk
                .iter()
                .map(|&c| r.get(c).map(Value::to_text).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
            tbl.name
        ),
        _ => format!("row {} of table {}", hex::encode(pk), tbl.name),
    }
}

/// The merged value of key `k` changed on both sides (`b` base, `o` ours, `t` theirs), or
/// why it cannot be merged.
fn resolve(
    k: &[u8],
    b: Option<&[u8]>,
    o: Option<&[u8]>,
    t: Option<&[u8]>,
) -> Result<Result<Option<Vec<u8>>, String>, ChainError> {
    let addr = || -> Option<Address> {
        let raw: [u8; 33] = k.get(1..34)?.try_into().ok()?;
        Address::from_raw(&raw).ok()
    };
    Ok(match (k.first(), addr()) {
        (Some(b'a'), Some(a)) if k.len() == 34 => {
            let acct = |v: Option<&[u8]>| v.map(Account::decode).transpose();
            let (b, o, t) = (
                acct(b)?.unwrap_or_default(),
                acct(o)?.unwrap_or_default(),
                acct(t)?.unwrap_or_default(),
            );
            // Marks only grow: every branch either side marked, at the larger next nonce.
            let marks = match o.marks.union(&t.marks) {
                Ok(m) => m,
                Err(n) => {
                    return Ok(Err(format!(
                    "account {a}: both sides together carry merge marks of more than {n} branches"
                )))
                }
            };
            match o
                .balance
                .checked_add(t.balance)
                .and_then(|s| s.checked_sub(b.balance))
            {
                Some(balance) => Ok(Some(
                    Account {
                        balance,
                        nonce: o.nonce.max(t.nonce),
                        marks,
                    }
                    .encode(),
                )),
                None => Err(format!(
                    "account {a}: the balance would be negative (base {}, ours {}, theirs {} aer)",
                    b.balance, o.balance, t.balance
                )),
            }
        }
        (Some(b's'), _) => Err(format!(
            "staking state {} changed on both sides (staking never merges)",
            hex::encode(k)
        )),
        _ => Err(format!(
            "state key {} changed on both sides",
            hex::encode(k)
        )),
    })
}

/// The reason of a refused consistent merge: how many conflicts, then each (the first
/// [`MAX_LISTED_CONFLICTS`]).
pub fn refusal(conflicts: &[Conflict]) -> String {
    let mut s = format!(
        "consistent merge refused: {} conflict{} no resolver decided",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" }
    );
    for c in conflicts.iter().take(MAX_LISTED_CONFLICTS) {
        s.push_str("; ");
        s.push_str(&c.reason);
    }
    if conflicts.len() > MAX_LISTED_CONFLICTS {
        s.push_str(&format!(
            "; and {} more",
            conflicts.len() - MAX_LISTED_CONFLICTS
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{account_key, MemState};

    fn acct(balance: u128, nonce: u64) -> Option<Vec<u8>> {
        Some(Account::new(balance, nonce).encode())
    }

    fn state(pairs: &[(&[u8], Option<Vec<u8>>)]) -> MemState {
        let mut m = MemState::default();
        for (k, v) in pairs {
            if let Some(v) = v {
                m.0.insert(k.to_vec(), v.clone());
            }
        }
        m
    }

    #[test]
    fn one_sided_changes_apply_and_accounts_add_both_deltas() {
        let a = account_key(&Address::from_public_key(
            &aergo_types::Keypair::from_seed(&[1; 32]).public(),
        ));
        let b = account_key(&Address::from_public_key(
            &aergo_types::Keypair::from_seed(&[2; 32]).public(),
        ));
        let base = state(&[
            (&a, acct(100, 1)),
            (&b, acct(50, 0)),
            (b"k1", Some(vec![1])),
        ]);
        // ours: a spent 30 (nonce 2); theirs: a received 5, b spent 10, k1 changed.
        let ours = state(&[(&a, acct(70, 2)), (&b, acct(50, 0)), (b"k1", Some(vec![1]))]);
        let mut theirs = WriteSet::new();
        theirs.insert(a.clone(), acct(105, 1));
        theirs.insert(b.clone(), acct(40, 3));
        theirs.insert(b"k1".to_vec(), Some(vec![2]));
        let out = three_way(&base, &ours, &theirs, None).unwrap().unwrap();
        assert_eq!(
            out.get(&a),
            Some(&acct(75, 2)),
            "70 + (105 - 100), nonce max"
        );
        assert_eq!(out.get(&b), Some(&acct(40, 3)), "only theirs changed b");
        assert_eq!(out.get(b"k1".as_slice()), Some(&Some(vec![2])));
    }

    #[test]
    fn merge_marks_of_both_sides_are_kept() {
        let a = account_key(&Address::from_public_key(
            &aergo_types::Keypair::from_seed(&[1; 32]).public(),
        ));
        let marked = |balance: u128, marks: &[(u8, u64)]| {
            let mut x = Account::new(balance, 0);
            for (b, n) in marks {
                x.marks.raise(&aergo_types::Hash([*b; 32]), *n).unwrap();
            }
            Some(x.encode())
        };
        let base = state(&[(&a, marked(100, &[(1, 2)]))]);
        let ours = state(&[(&a, marked(90, &[(1, 5), (2, 1)]))]);
        let mut theirs = WriteSet::new();
        theirs.insert(a.clone(), marked(110, &[(1, 3), (3, 4)]));
        let out = three_way(&base, &ours, &theirs, None).unwrap().unwrap();
        assert_eq!(
            out.get(&a),
            Some(&marked(100, &[(1, 5), (2, 1), (3, 4)])),
            "every branch either side marked, the larger next nonce"
        );
        // Past the bound, the account refuses the merge.
        let many: Vec<(u8, u64)> = (10..10 + 64).map(|b| (b, 1)).collect();
        let ours = state(&[(&a, marked(90, &many))]);
        let c = three_way(&base, &ours, &theirs, None).unwrap().unwrap_err();
        assert!(c[0].reason.contains("merge marks"), "{}", c[0].reason);
    }

    #[test]
    fn a_negative_balance_and_other_double_changes_are_refused() {
        let a = account_key(&Address::from_public_key(
            &aergo_types::Keypair::from_seed(&[1; 32]).public(),
        ));
        let base = state(&[(&a, acct(100, 0)), (b"s-x", Some(vec![0]))]);
        let ours = state(&[(&a, acct(10, 1)), (b"s-x", Some(vec![1]))]);
        let mut theirs = WriteSet::new();
        theirs.insert(a.clone(), acct(20, 1));
        theirs.insert(b"s-x".to_vec(), Some(vec![2]));
        let c = three_way(&base, &ours, &theirs, None).unwrap().unwrap_err();
        assert_eq!(c.len(), 2);
        assert!(c[0].reason.contains("negative"), "{}", c[0].reason);
        assert!(
            c[1].reason.contains("staking never merges"),
            "{}",
            c[1].reason
        );
        let r = refusal(&c);
        assert!(
            r.starts_with("consistent merge refused: 2 conflicts"),
            "{r}"
        );
    }

    /// Contract rows: a deployed table with a unique index, seeded on the base; ours and
    /// theirs are calls executed on the base, as the chain's replay does.
    mod rows {
        use super::*;
        use crate::ctx::BlockCtx;
        use crate::exec::execute_block;
        use aergo_types::{Keypair, ReceiptStatus, SignedTx, Tx, TxKind};

        const TABLE: &str =
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, u TEXT UNIQUE);
CREATE FUNCTION put(i BIGINT, x BIGINT, y TEXT) RETURNS BIGINT AS $$
BEGIN
  INSERT INTO t VALUES (i, x, y);
  RETURN i;
END $$;
CREATE FUNCTION setv(i BIGINT, x BIGINT) RETURNS BIGINT AS $$
BEGIN
  UPDATE t SET v = x WHERE id = i;
  RETURN i;
END $$;
CREATE FUNCTION drop1(i BIGINT) RETURNS BIGINT AS $$
BEGIN
  DELETE FROM t WHERE id = i;
  RETURN i;
END $$;";

        fn key() -> Keypair {
            Keypair::from_seed(&[3; 32])
        }

        fn ctx() -> BlockCtx {
            crate::ctx::test_ctx(2, 99)
        }

        fn tx(nonce: u64, kind: TxKind, to: Option<Address>, payload: &[u8]) -> SignedTx {
            Tx {
                kind,
                nonce,
                from: key().public(),
                to,
                amount: 0,
                payload: payload.to_vec(),
                gas_limit: 400_000,
                gas_price: 1,
                chain_id: Hash::of(b"c"),
            }
            .sign(&key())
        }

        fn call(nonce: u64, to: Address, f: &str, args: &[&str]) -> SignedTx {
            let p = serde_json::json!({ "function": f, "args": args }).to_string();
            tx(nonce, TxKind::Call, Some(to), p.as_bytes())
        }

        /// Runs `txs` on `state` and returns the writes (every transaction must succeed).
        fn run(state: &dyn StateView, txs: &[SignedTx]) -> WriteSet {
            let ex = execute_block(state, txs, &ctx()).unwrap();
            assert!(
                ex.receipts.iter().all(|r| r.status == ReceiptStatus::Ok),
                "{:?}",
                ex.receipts
            );
            ex.writes
        }

        fn apply(state: &MemState, w: &WriteSet) -> MemState {
            let mut s = state.clone();
            for (k, v) in w {
                match v {
                    Some(v) => s.0.insert(k.clone(), v.clone()),
                    None => s.0.remove(k),
                };
            }
            s
        }

        /// The base: the table with rows (1, 0, a) and (2, 0, b); the next nonce is 3.
        fn base() -> (MemState, Address) {
            let mut s = MemState::default();
            s.0.insert(
                crate::state::account_key(&Address::from_public_key(&key().public())),
                Account::new(1_000_000_000_000, 0).encode(),
            );
            let c = Address::contract(&Address::from_public_key(&key().public()), 0);
            let w = run(
                &s,
                &[
                    tx(0, TxKind::Deploy, None, TABLE.as_bytes()),
                    call(1, c, "put", &["1", "0", "a"]),
                    call(2, c, "put", &["2", "0", "b"]),
                ],
            );
            (apply(&s, &w), c)
        }

        fn rows_of(state: &MemState, c: &Address) -> Vec<Vec<String>> {
            let kv = crate::contracts::ReadKv { view: state };
            let code = crate::contracts::load(c, &kv).unwrap().unwrap();
            // Through the unique index (u) and the primary key, so stale entries would show.
            let mut out = Vec::new();
            for q in [
                "SELECT id, v, u FROM t ORDER BY id",
                "SELECT id, v, u FROM t WHERE u >= '' ORDER BY u",
            ] {
                let r = code.query(q, &kv, 1_000_000).unwrap();
                out.push(
                    r.rows
                        .iter()
                        .map(|row| {
                            row.iter()
                                .map(|v| v.to_text())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .collect::<Vec<_>>(),
                );
            }
            out
        }

        #[test]
        fn rows_changed_on_one_side_merge_and_indexes_follow() {
            let (base, c) = base();
            let ours = apply(&base, &run(&base, &[call(3, c, "setv", &["1", "5"])]));
            let theirs = run(
                &base,
                &[
                    call(3, c, "setv", &["2", "7"]),
                    call(4, c, "put", &["3", "1", "c"]),
                ],
            );
            let w = three_way(&base, &ours, &theirs, None).unwrap().unwrap();
            let merged = apply(&ours, &w);
            // The contract's keys — rows, index entries, everything — are those of running
            // both sides' calls one after the other (their changes are disjoint).
            let serial = apply(
                &base,
                &run(
                    &base,
                    &[
                        call(3, c, "setv", &["1", "5"]),
                        call(4, c, "setv", &["2", "7"]),
                        call(5, c, "put", &["3", "1", "c"]),
                    ],
                ),
            );
            let contract = |s: &MemState| -> Vec<(Vec<u8>, Vec<u8>)> {
                let p = crate::contracts::prefix(&c);
                s.0.iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            assert_eq!(contract(&merged), contract(&serial));
            assert_eq!(
                rows_of(&merged, &c),
                vec![
                    vec!["1,5,a".to_string(), "2,7,b".into(), "3,1,c".into()],
                    vec!["1,5,a".to_string(), "2,7,b".into(), "3,1,c".into()],
                ]
            );
        }

        #[test]
        fn a_resolver_decides_a_cell_within_the_block_gas() {
            const RESOLVER: &str = "CREATE FUNCTION resolve_t(col TEXT, base TEXT, ours TEXT, theirs TEXT) RETURNS TEXT AS $$
BEGIN
  RETURN CAST(CAST(ours AS BIGINT) + CAST(theirs AS BIGINT) - CAST(base AS BIGINT) AS TEXT);
END $$;";
            let (base, c) = base();
            let base = apply(
                &base,
                &run(&base, &[tx(3, TxKind::Deploy, None, RESOLVER.as_bytes())]),
            );
            let r = Address::contract(&Address::from_public_key(&key().public()), 3);
            let ours = apply(&base, &run(&base, &[call(4, c, "setv", &["2", "1"])]));
            let theirs = run(&base, &[call(4, c, "setv", &["2", "2"])]);
            let resolver = |gas| Resolver {
                contract: r,
                height: 2,
                time_ms: 0,
                gas,
            };
            let w = three_way(&base, &ours, &theirs, Some(&resolver(1_000_000)))
                .unwrap()
                .unwrap();
            let merged = apply(&ours, &w);
            assert_eq!(
                rows_of(&merged, &c)[0],
                vec!["1,0,a".to_string(), "2,3,b".into()]
            );
            // Without the gas for it, the resolver refuses.
            let conflicts = three_way(&base, &ours, &theirs, Some(&resolver(5)))
                .unwrap()
                .unwrap_err();
            assert!(
                conflicts[0].reason.contains("refused"),
                "{}",
                conflicts[0].reason
            );
        }

        #[test]
        fn a_unique_value_taken_on_both_sides_and_a_delete_against_a_change_refuse() {
            let (base, c) = base();
            // Both sides insert a different row with u = x.
            let ours = apply(&base, &run(&base, &[call(3, c, "put", &["4", "0", "x"])]));
            let theirs = run(&base, &[call(3, c, "put", &["5", "0", "x"])]);
            let conflicts = three_way(&base, &ours, &theirs, None).unwrap().unwrap_err();
            assert!(
                conflicts.iter().any(|x| x.reason.contains("unique index")),
                "{conflicts:?}"
            );
            // Ours deletes row 1, theirs changes it.
            let ours = apply(&base, &run(&base, &[call(3, c, "drop1", &["1"])]));
            let theirs = run(&base, &[call(3, c, "setv", &["1", "9"])]);
            let conflicts = three_way(&base, &ours, &theirs, None).unwrap().unwrap_err();
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
            assert!(
                conflicts[0]
                    .reason
                    .contains("row (1) of table t was deleted on the target"),
                "{}",
                conflicts[0].reason
            );
            // Both change row 2's v, no resolver: refused, naming the row and the column.
            let ours = apply(&base, &run(&base, &[call(3, c, "setv", &["2", "1"])]));
            let theirs = run(&base, &[call(3, c, "setv", &["2", "2"])]);
            let conflicts = three_way(&base, &ours, &theirs, None).unwrap().unwrap_err();
            assert!(
                conflicts[0]
                    .reason
                    .contains("row (2) of table t, column v changed on both sides")
                    && conflicts[0].reason.contains("no resolver"),
                "{}",
                conflicts[0].reason
            );
        }
    }

    #[test]
    fn equal_changes_on_both_sides_still_count_twice() {
        let a = account_key(&Address::from_public_key(
            &aergo_types::Keypair::from_seed(&[1; 32]).public(),
        ));
        // Both sides spent 30: the balance loses 60, not 30.
        let base = state(&[(&a, acct(100, 0)), (b"k", Some(vec![1]))]);
        let ours = state(&[(&a, acct(70, 1))]);
        let mut theirs = WriteSet::new();
        theirs.insert(a.clone(), acct(70, 1));
        let out = three_way(&base, &ours, &theirs, None).unwrap().unwrap();
        assert_eq!(out.get(&a), Some(&acct(40, 1)));
        // Any other key deleted on both sides is a conflict, not a no-op.
        theirs.insert(b"k".to_vec(), None);
        let c = three_way(&base, &ours, &theirs, None).unwrap().unwrap_err();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].key, b"k".to_vec());
    }
}
