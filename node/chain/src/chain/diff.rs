//! Diffs between two points of history — a chain (or branch) at a height — from the
//! per-block change records (`meta` `chg ‖ height`: the keys each block wrote). The keys to
//! compare are those written since the two points' common history: along each point's
//! lineage, the blocks above the height where their histories part. Cost: one record per
//! block in those ranges and two point reads per changed key — proportional to the changes,
//! never to the state's size.

use super::*;
use std::collections::BTreeSet;

/// Most distinct keys a diff compares.
pub const MAX_DIFF_KEYS: usize = 1_000_000;

/// Most blocks a diff reads change records of (both sides together).
pub const MAX_DIFF_BLOCKS: u64 = 100_000;

/// One state key that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The state key.
    pub key: Vec<u8>,
    /// Its value at the first point (`None`: absent).
    pub from: Option<Vec<u8>>,
    /// Its value at the second point.
    pub to: Option<Vec<u8>>,
}

/// A page of a diff.
#[derive(Debug, Clone, Default)]
pub struct DiffPage {
    /// The changes, by key.
    pub changes: Vec<Change>,
    /// The last key of this page when more follow (pass it as `after`).
    pub next: Option<Vec<u8>>,
    /// The height where the two points' histories part.
    pub common: u64,
}

impl Chain {
    /// This chain's history at `height` as (chain id, highest height of it that belongs to
    /// the history), from the chain itself up its ancestors.
    fn path(&self, height: u64) -> Vec<(Hash, u64)> {
        let mut out = vec![(self.chain_id, height)];
        let mut cur = height;
        let mut base = self.base.as_ref();
        while let Some(b) = base {
            cur = cur.min(b.fork);
            out.push((b.parent.chain_id, cur));
            base = b.parent.base.as_ref();
        }
        out
    }

    /// The keys written by the block at `height` of this chain's history.
    fn changed_at(&self, height: u64, out: &mut BTreeSet<Vec<u8>>) -> Result<(), ChainError> {
        if let Some(p) = self.below_fork(height) {
            return p.changed_at(height, out);
        }
        let rec = self
            .ks
            .get(CF_META, &commit::changed_key(height))?
            .ok_or_else(|| {
                ChainError::NotFound(format!(
                    "block {height} has no change record (it predates diffs)"
                ))
            })?;
        out.extend(fork::decode_keys(&rec)?);
        if out.len() > MAX_DIFF_KEYS {
            return Err(ChainError::Consensus(format!(
                "the diff spans more than {MAX_DIFF_KEYS} changed keys; compare closer points"
            )));
        }
        Ok(())
    }

    /// The state keys whose values differ between `self` at `height` and `other` at
    /// `other_height`, by key, after `after`, at most `limit`.
    pub fn diff(
        &self,
        height: u64,
        other: &Chain,
        other_height: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<DiffPage, ChainError> {
        let (a, b) = (self.view_at(height)?, other.view_at(other_height)?);
        let (pa, pb) = (self.path(height), other.path(other_height));
        let common = pa
            .iter()
            .find_map(|(id, cap)| {
                pb.iter()
                    .find(|(o, _)| o == id)
                    .map(|(_, ocap)| (*cap).min(*ocap))
            })
            .ok_or_else(|| ChainError::NotFound("the two points share no history".into()))?;
        let span = height
            .saturating_sub(common)
            .saturating_add(other_height.saturating_sub(common));
        if span > MAX_DIFF_BLOCKS {
            return Err(ChainError::Consensus(format!(
                "the two points are {span} blocks apart, more than a diff reads ({MAX_DIFF_BLOCKS}); compare closer points"
            )));
        }
        let mut keys = BTreeSet::new();
        for h in common + 1..=height {
            self.changed_at(h, &mut keys)?;
        }
        for h in common + 1..=other_height {
            other.changed_at(h, &mut keys)?;
        }
        let mut page = DiffPage {
            common,
            ..Default::default()
        };
        let start = match after {
            Some(k) => std::ops::Bound::Excluded(k.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        for key in keys.range((start, std::ops::Bound::Unbounded)) {
            let (from, to) = (a.get(key)?, b.get(key)?);
            if from == to {
                continue;
            }
            if page.changes.len() >= limit {
                page.next = page.changes.last().map(|c| c.key.clone());
                break;
            }
            page.changes.push(Change {
                key: key.clone(),
                from,
                to,
            });
        }
        Ok(page)
    }
}
