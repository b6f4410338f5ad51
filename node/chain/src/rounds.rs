//! DPoS round bookkeeping kept in the chain state, so every node derives the same schedule
//! from the same chain and a reorganisation reverts it with the rest of the state.
//!
//! Keys (all under the `'d'` prefix, which no account, contract or staking key uses):
//! - `d\0schedule` — the schedule of the round of the last block: `round u64 ‖ probation
//!   count u32 ‖ keys ‖ active count u32 ‖ keys`;
//! - `d\0scores` — the [`ScoreBook`]: `count u32 ‖ (key 32 ‖ score i64 ‖ standing u8)*`;
//! - `d\0round_blocks` — `(slot u64 ‖ producer 32)*` of the blocks of that round so far.
//!
//! A block of slot `s` first runs [`begin_block`] on its parent's state: if `s` opens a new
//! round, the round(s) since the stored schedule are closed with the score rule, the next
//! schedule is elected from stakes and votes ([`crate::staking`]) and stored; then its
//! transactions run; then [`end_block`] appends `(s, producer)` to the round's blocks.
//! Validation checks the producer against the schedule [`begin_block`] returns, so the
//! schedule a block is judged by is a pure function of its parent's state.

use crate::dpos::{build_schedule, elect, BpScore, DposParams, Schedule, ScoreBook, Standing};
use crate::error::ChainError;
use crate::staking;
use crate::state::{StateView, WriteSet};
use aergo_types::codec::Reader;
use aergo_types::genesis::DposGenesis;
use aergo_types::PublicKey;

/// State key of the current schedule.
pub const SCHEDULE_KEY: &[u8] = b"d\0schedule";
/// State key of the score book.
pub const SCORES_KEY: &[u8] = b"d\0scores";
/// State key of the current round's blocks.
pub const ROUND_BLOCKS_KEY: &[u8] = b"d\0round_blocks";

fn corrupt(what: &str) -> ChainError {
    ChainError::Corrupt(format!("dpos state: {what}"))
}

/// Encodes a schedule.
// Schedules hold at most the governance's bp_count producers (far below u32::MAX).
#[allow(clippy::cast_possible_truncation)]
pub fn encode_schedule(s: &Schedule) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + 32 * (s.probation.len() + s.active.len()));
    v.extend_from_slice(&s.round.to_be_bytes());
    for list in [&s.probation, &s.active] {
        v.extend_from_slice(&(list.len() as u32).to_be_bytes());
        for k in list {
            v.extend_from_slice(&k.0);
        }
    }
    v
}

/// Decodes a schedule.
pub fn decode_schedule(b: &[u8]) -> Result<Schedule, ChainError> {
    let mut r = Reader::new(b);
    let round = r.u64("round")?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in lists.iter_mut() {
        let n = r.u32("count")?;
        if n > 10_000 {
            return Err(corrupt("schedule too long"));
        }
        for _ in 0..n {
            list.push(PublicKey(r.array("bp")?));
        }
    }
    r.finish()?;
    let [probation, active] = lists;
    Ok(Schedule {
        round,
        probation,
        active,
    })
}

/// Encodes a score book.
// One score per candidate ever scheduled: bounded by registrations, far below u32::MAX.
#[allow(clippy::cast_possible_truncation)]
pub fn encode_scores(book: &ScoreBook) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + 41 * book.scores.len());
    v.extend_from_slice(&(book.scores.len() as u32).to_be_bytes());
    for (k, s) in &book.scores {
        v.extend_from_slice(&k.0);
        v.extend_from_slice(&s.score.to_be_bytes());
        v.push(match s.standing {
            Standing::Active => 0,
            Standing::Excluded => 1,
            Standing::Probation => 2,
        });
    }
    v
}

/// Decodes a score book.
pub fn decode_scores(b: &[u8]) -> Result<ScoreBook, ChainError> {
    let mut r = Reader::new(b);
    let n = r.u32("count")?;
    let mut book = ScoreBook::default();
    for _ in 0..n {
        let k = PublicKey(r.array("bp")?);
        let score = i64::from_be_bytes(r.array("score")?);
        let standing = match r.u8("standing")? {
            0 => Standing::Active,
            1 => Standing::Excluded,
            2 => Standing::Probation,
            _ => return Err(corrupt("standing")),
        };
        book.scores.insert(k, BpScore { score, standing });
    }
    r.finish()?;
    Ok(book)
}

fn encode_round_blocks(blocks: &[(u64, PublicKey)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 * blocks.len());
    for (slot, k) in blocks {
        v.extend_from_slice(&slot.to_be_bytes());
        v.extend_from_slice(&k.0);
    }
    v
}

fn decode_round_blocks(b: &[u8]) -> Result<Vec<(u64, PublicKey)>, ChainError> {
    if !b.len().is_multiple_of(40) {
        return Err(corrupt("round blocks"));
    }
    Ok(b.chunks_exact(40)
        .map(|c| {
            let mut s = [0u8; 8];
            s.copy_from_slice(&c[..8]);
            let mut k = [0u8; 32];
            k.copy_from_slice(&c[8..]);
            (u64::from_be_bytes(s), PublicKey(k))
        })
        .collect())
}

/// The stored schedule (that of the round of the state's last block).
pub fn load_schedule(view: &dyn StateView) -> Result<Option<Schedule>, ChainError> {
    view.get(SCHEDULE_KEY)?
        .map(|b| decode_schedule(&b))
        .transpose()
}

/// The stored score book.
pub fn load_scores(view: &dyn StateView) -> Result<ScoreBook, ChainError> {
    match view.get(SCORES_KEY)? {
        Some(b) => decode_scores(&b),
        None => Ok(ScoreBook::default()),
    }
}

/// The stored blocks of the current round.
pub fn load_round_blocks(view: &dyn StateView) -> Result<Vec<(u64, PublicKey)>, ChainError> {
    match view.get(ROUND_BLOCKS_KEY)? {
        Some(b) => decode_round_blocks(&b),
        None => Ok(Vec::new()),
    }
}

/// Elects the schedule of `round` from the state: candidates ranked by stake-weighted votes
/// (only those with a positive tally), the score book's exclusions applied. `None` when
/// nobody qualifies.
fn elect_schedule(
    view: &dyn StateView,
    d: &DposGenesis,
    book: &ScoreBook,
    round: u64,
) -> Result<Option<Schedule>, ChainError> {
    let gov = staking::gov_params(view, d)?;
    let inputs = staking::election_inputs(view)?;
    let ranked: Vec<(PublicKey, u128)> = elect(
        &inputs.candidates,
        &inputs.stakes,
        &inputs.votes,
        gov.max_votes,
    )
    .into_iter()
    .filter(|(_, tally)| *tally > 0)
    .collect();
    if ranked.is_empty() {
        return Ok(None);
    }
    Ok(Some(build_schedule(round, &ranked, book, gov.bp_count)))
}

/// The genesis schedule (round 0) and empty round bookkeeping, from the genesis state.
pub fn genesis_writes(
    view: &dyn StateView,
    d: &DposGenesis,
    writes: &mut WriteSet,
) -> Result<(), ChainError> {
    let book = ScoreBook::default();
    let schedule = elect_schedule(view, d, &book, 0)?
        .ok_or_else(|| ChainError::Corrupt("genesis elects no block producer".into()))?;
    writes.insert(SCHEDULE_KEY.to_vec(), Some(encode_schedule(&schedule)));
    writes.insert(SCORES_KEY.to_vec(), Some(encode_scores(&book)));
    writes.insert(ROUND_BLOCKS_KEY.to_vec(), Some(Vec::new()));
    Ok(())
}

/// The schedule governing `slot` on top of the state `view` (the parent's), and the writes
/// a block in that slot makes before its transactions (empty unless the slot opens a new
/// round).
pub fn begin_block(
    view: &dyn StateView,
    p: &DposParams,
    d: &DposGenesis,
    slot: u64,
) -> Result<(Schedule, WriteSet), ChainError> {
    let stored = load_schedule(view)?.ok_or_else(|| corrupt("no schedule"))?;
    let round = p.round_of(slot);
    if round == stored.round {
        return Ok((stored, WriteSet::new()));
    }
    if round < stored.round {
        return Err(ChainError::Consensus(format!(
            "slot {slot} lies in round {round}, before the parent's round {}",
            stored.round
        )));
    }
    let mut book = load_scores(view)?;
    let blocks = load_round_blocks(view)?;
    // A round is scored only when a quorum of its schedule (floor(2N/3)+1 distinct BPs, the
    // LIB rule's) produced in it. Fewer says the network was split or down, not which producer
    // failed: scoring it would let each side of a partition exclude the other and then
    // finalize alone on its own fork. A round without any block (the network was down or not
    // started yet) is the extreme case; whole rounds skipped since are not scored either.
    let members = stored.members();
    let producers: std::collections::BTreeSet<_> = blocks
        .iter()
        .map(|(_, pk)| *pk)
        .filter(|pk| members.contains(pk))
        .collect();
    if !blocks.is_empty() && producers.len() >= crate::dpos::quorum(members.len()) {
        book.end_round(p, &stored, &blocks);
    }
    let schedule = match elect_schedule(view, d, &book, round)? {
        Some(s) => s,
        // Nobody has votes any more: the previous producers carry on.
        None => Schedule { round, ..stored },
    };
    let mut w = WriteSet::new();
    w.insert(SCHEDULE_KEY.to_vec(), Some(encode_schedule(&schedule)));
    w.insert(SCORES_KEY.to_vec(), Some(encode_scores(&book)));
    w.insert(ROUND_BLOCKS_KEY.to_vec(), Some(Vec::new()));
    Ok((schedule, w))
}

/// The write recording a block of `slot` by `producer` in the round's blocks; `view` is the
/// state after [`begin_block`]'s writes and the block's transactions.
pub fn end_block(
    view: &dyn StateView,
    slot: u64,
    producer: PublicKey,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ChainError> {
    let mut blocks = load_round_blocks(view)?;
    blocks.push((slot, producer));
    Ok((
        ROUND_BLOCKS_KEY.to_vec(),
        Some(encode_round_blocks(&blocks)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip_and_reject_garbage() {
        let s = Schedule {
            round: 7,
            probation: vec![PublicKey([1; 32])],
            active: vec![PublicKey([2; 32]), PublicKey([3; 32])],
        };
        assert_eq!(decode_schedule(&encode_schedule(&s)).unwrap(), s);
        assert!(decode_schedule(&encode_schedule(&s)[..20]).is_err());
        let mut book = ScoreBook::default();
        book.scores.insert(
            PublicKey([4; 32]),
            BpScore {
                score: -42,
                standing: Standing::Probation,
            },
        );
        assert_eq!(decode_scores(&encode_scores(&book)).unwrap(), book);
        let mut bad = encode_scores(&book);
        let last = bad.len() - 1;
        bad[last] = 9;
        assert!(decode_scores(&bad).is_err());
        let blocks = vec![(5, PublicKey([1; 32])), (6, PublicKey([2; 32]))];
        assert_eq!(
            decode_round_blocks(&encode_round_blocks(&blocks)).unwrap(),
            blocks
        );
        assert!(decode_round_blocks(&[0; 39]).is_err());
    }
}
