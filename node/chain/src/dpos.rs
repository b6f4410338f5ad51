//! The DPoS engine's deterministic core: election, slots, LIB finality, fork choice,
//! score-based autonomous delegation and the equivocation guard.
//!
//! Everything here is a pure function of its inputs (chain data and an injected clock),
//! except [`SlotGuard`], which persists one number with fsync.
//!
//! # Slots and rounds
//! Time is cut into slots of `interval_ms` from `genesis_time_ms`:
//! `slot(ts) = (ts − genesis_time_ms) / interval_ms`, and a block of slot `s` carries
//! `timestamp_ms = genesis_time_ms + s × interval_ms` exactly and `consensus = s` as 8 bytes
//! big-endian. A round is `round_slots` consecutive slots: round `r` covers slots
//! `[r × round_slots, (r + 1) × round_slots)` (with no missed slot this is the issue's "every
//! `round_slots` blocks"). Each round has a [`Schedule`]: its probation BPs own the first slots
//! of the round, one each; the active BPs take the remaining slots in rotation. Missed slots
//! are simply skipped: the next block names a later slot. A block's slot must be greater than
//! its parent's.
//!
//! # Election
//! [`elect`]: every voter's whole stake counts for each distinct registered candidate it votes
//! for (at most `max_votes`, extra votes ignored). Candidates are ranked by tally descending,
//! then by public key ascending; [`build_schedule`] takes the first `bp_count` that are not
//! excluded by their score. The schedule of round `r + 1` is computed from the chain state at
//! the last block of round `r` (stakes, votes, candidates, [`ScoreBook`]).
//!
//! # LIB
//! With `N` BPs in the schedule a block is final once `floor(2N/3) + 1` distinct producers have
//! built it or on top of it ([`lib_height`]). Four BPs tolerate one down; a 2/2 split never
//! gathers three distinct producers on either side, so LIB stops. The engine keeps the LIB
//! monotonic, and [`fork_choice`] refuses any reorganisation whose common ancestor lies below
//! LIB (reverting the LIB block itself, or anything under it, is impossible).
//!
//! # Score-based autonomous delegation
//! Each BP has an integer score in `[min, max]` (defaults −100..=100), neutral 0; a BP never
//! seen starts at 0. At the end of every round, computed from the blocks of that round on the
//! chain only ([`ScoreBook::end_round`]):
//! - an **active** BP scores `+gain` per produced slot and `−loss` per missed slot (defaults
//!   +1 / −3: missing more than a quarter of its slots lowers the score); if the score is then
//!   below `threshold` (default −30) it becomes **excluded**;
//! - an **excluded** BP (not in any schedule, so it cannot produce) moves `decay` (default 10)
//!   toward 0 each round; once at or above `threshold` it becomes **on probation**;
//! - a BP **on probation** gets exactly one slot (the round's first slots) when elected: if it
//!   produces it, it becomes active (plus the gain); if it misses it, it is excluded again with
//!   the score set to `min`, so each failed return doubles-and-more the time out.
//! - a BP on probation that is not elected keeps waiting on probation.
//!
//! A round is scored only if a quorum of its schedule — `floor(2N/3) + 1` distinct BPs, the
//! LIB rule's — produced in it (see [`crate::rounds`]). A round below quorum (a partition, a
//! network down or not started yet) says nothing about which producer failed; scoring it
//! would let each side of a split exclude the other, shrink its schedule and finalize alone on
//! its own fork. So a minority can never change the schedule, and LIB stays frozen until the
//! network heals.
//!
//! Invalid blocks never enter the chain, so a BP that produced one simply missed that slot
//! (the network layer penalises the peer that sent it). If every elected BP is excluded the
//! exclusion is ignored for that round so the chain cannot halt by itself.
//!
//! # Equivocation guard
//! [`SlotGuard`] records the last slot this node signed in a file, written with fsync through
//! a temporary file and rename, before the signature is made; a slot at or below the recorded
//! one is refused, across restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};

use aergo_types::{Address, Hash, Header, PublicKey};

use crate::consensus::Slot;
use crate::limits::KEEP_ROUNDS;

/// Errors of the DPoS core.
#[derive(Debug, thiserror::Error)]
pub enum DposError {
    /// Refused: this node already signed this slot or a later one.
    #[error("equivocation refused: slot {slot} is not after the last signed slot {last}")]
    Equivocation {
        /// The slot asked for.
        slot: u64,
        /// The last slot signed.
        last: u64,
    },
    /// The guard file could not be read or written.
    #[error("slot guard {path}: {message}")]
    Guard {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Bad parameters.
    #[error("dpos parameters: {0}")]
    Params(String),
}

/// Score rule parameters (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreParams {
    /// Points per produced slot.
    pub gain: i64,
    /// Points lost per missed slot.
    pub loss: i64,
    /// Below this an active BP is excluded; at or above it an excluded BP is on probation.
    pub threshold: i64,
    /// Points an excluded BP moves toward 0 per round.
    pub decay: i64,
    /// Lowest score (and the score after a failed probation).
    pub min: i64,
    /// Highest score.
    pub max: i64,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            gain: 1,
            loss: 3,
            threshold: -30,
            decay: 10,
            min: -100,
            max: 100,
        }
    }
}

/// DPoS parameters (from genesis / governance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DposParams {
    /// Start of slot 0, ms since the Unix epoch.
    pub genesis_time_ms: u64,
    /// Slot length.
    pub interval_ms: u64,
    /// Slots per round.
    pub round_slots: u64,
    /// Block producers per schedule.
    pub bp_count: usize,
    /// Most candidates one voter may vote for.
    pub max_votes: usize,
    /// Score rule.
    pub score: ScoreParams,
}

impl DposParams {
    /// Checks the parameters.
    pub fn check(&self) -> Result<(), DposError> {
        if self.interval_ms == 0 || self.round_slots == 0 || self.bp_count == 0 {
            return Err(DposError::Params(
                "interval, round length and BP count must be positive".into(),
            ));
        }
        let s = &self.score;
        if !(s.min <= s.threshold && s.threshold <= 0 && 0 <= s.max) || s.decay <= 0 {
            return Err(DposError::Params(
                "score bounds must satisfy min <= threshold <= 0 <= max, decay > 0".into(),
            ));
        }
        Ok(())
    }

    /// The slot containing `ts_ms` (`None` before genesis).
    pub fn slot_of(&self, ts_ms: u64) -> Option<u64> {
        ts_ms
            .checked_sub(self.genesis_time_ms)
            .map(|d| d / self.interval_ms)
    }

    /// The start time of a slot.
    pub fn slot_start(&self, slot: u64) -> u64 {
        self.genesis_time_ms
            .saturating_add(slot.saturating_mul(self.interval_ms))
    }

    /// The round of a slot.
    pub fn round_of(&self, slot: u64) -> u64 {
        slot / self.round_slots
    }

    /// The first slot of a round.
    pub fn round_start(&self, round: u64) -> u64 {
        round.saturating_mul(self.round_slots)
    }
}

/// Encodes a slot for `Header::consensus`.
pub fn encode_slot(slot: u64) -> Vec<u8> {
    slot.to_be_bytes().to_vec()
}

/// Decodes `Header::consensus`.
pub fn decode_slot(data: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(data).ok().map(u64::from_be_bytes)
}

/// Ranks registered candidates by stake-weighted votes: tally descending, then public key
/// ascending. Every candidate is listed (zero tallies last). Votes for unregistered keys,
/// duplicates within one ballot and votes past `max_votes` are ignored; a voter without
/// stake counts nothing.
pub fn elect(
    candidates: &BTreeSet<PublicKey>,
    stakes: &BTreeMap<Address, u128>,
    votes: &BTreeMap<Address, Vec<PublicKey>>,
    max_votes: usize,
) -> Vec<(PublicKey, u128)> {
    let mut tally: BTreeMap<PublicKey, u128> = candidates.iter().map(|c| (*c, 0)).collect();
    for (voter, ballot) in votes {
        let stake = stakes.get(voter).copied().unwrap_or(0);
        if stake == 0 {
            continue;
        }
        let mut seen = BTreeSet::new();
        for c in ballot {
            if seen.len() >= max_votes {
                break;
            }
            if seen.insert(*c) {
                if let Some(t) = tally.get_mut(c) {
                    *t = t.saturating_add(stake);
                }
            }
        }
    }
    let mut ranked: Vec<(PublicKey, u128)> = tally.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

/// The producers of one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The round.
    pub round: u64,
    /// BPs on probation: one slot each, the first slots of the round.
    pub probation: Vec<PublicKey>,
    /// Active BPs, in rotation over the remaining slots.
    pub active: Vec<PublicKey>,
}

impl Schedule {
    /// A schedule of active BPs only.
    pub fn new(round: u64, active: Vec<PublicKey>) -> Self {
        Self {
            round,
            probation: Vec::new(),
            active,
        }
    }

    /// Number of distinct BPs (the `N` of the LIB rule).
    pub fn len(&self) -> usize {
        self.members().len()
    }

    /// Whether nobody is scheduled.
    pub fn is_empty(&self) -> bool {
        self.probation.is_empty() && self.active.is_empty()
    }

    /// Everybody scheduled.
    pub fn members(&self) -> BTreeSet<PublicKey> {
        self.probation
            .iter()
            .chain(self.active.iter())
            .copied()
            .collect()
    }

    /// The producer of the `index`-th slot of the round.
    pub fn producer_at(&self, index: u64) -> Option<PublicKey> {
        let p = self.probation.len() as u64;
        if index < p {
            return self.probation.get(usize::try_from(index).ok()?).copied();
        }
        if self.active.is_empty() {
            // Only probation BPs: they rotate (nobody else could produce).
            let n = self.probation.len() as u64;
            if n == 0 {
                return None;
            }
            return self
                .probation
                .get(usize::try_from(index % n).ok()?)
                .copied();
        }
        let n = self.active.len() as u64;
        self.active
            .get(usize::try_from((index - p) % n).ok()?)
            .copied()
    }

    /// Slots owned by each BP in a round of `round_slots` slots.
    pub fn assigned(&self, round_slots: u64) -> BTreeMap<PublicKey, u64> {
        let mut out: BTreeMap<PublicKey, u64> =
            self.members().into_iter().map(|m| (m, 0)).collect();
        for i in 0..round_slots {
            if let Some(p) = self.producer_at(i) {
                *out.entry(p).or_insert(0) += 1;
            }
        }
        out
    }
}

/// A BP's standing under the score rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Normal.
    Active,
    /// Out of the schedule until its score recovers.
    Excluded,
    /// Back with one slot per round until it produces one.
    Probation,
}

/// Score and standing of one BP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpScore {
    /// Score.
    pub score: i64,
    /// Standing.
    pub standing: Standing,
}

impl Default for BpScore {
    fn default() -> Self {
        Self {
            score: 0,
            standing: Standing::Active,
        }
    }
}

/// Scores of all BPs, folded round by round from chain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScoreBook {
    /// Per BP.
    pub scores: BTreeMap<PublicKey, BpScore>,
}

impl ScoreBook {
    /// A BP's entry (default when never seen).
    pub fn get(&self, bp: &PublicKey) -> BpScore {
        self.scores.get(bp).copied().unwrap_or_default()
    }

    /// Applies the rule at the end of a round. `blocks` are the `(slot, producer)` of the
    /// blocks of that round on the chain (others are ignored).
    pub fn end_round(&mut self, p: &DposParams, schedule: &Schedule, blocks: &[(u64, PublicKey)]) {
        let sp = p.score;
        let start = p.round_start(schedule.round);
        let end = start.saturating_add(p.round_slots);
        let mut produced: BTreeMap<PublicKey, i64> = BTreeMap::new();
        for (slot, producer) in blocks {
            if *slot >= start
                && *slot < end
                && schedule.producer_at(slot - start) == Some(*producer)
            {
                *produced.entry(*producer).or_insert(0) += 1;
            }
        }
        let assigned = schedule.assigned(p.round_slots);
        let scheduled = schedule.members();
        // Excluded BPs (never scheduled) decay toward 0 and may come back on probation.
        for (bp, e) in self.scores.iter_mut() {
            if e.standing == Standing::Excluded && !scheduled.contains(bp) {
                e.score = if e.score < 0 {
                    (e.score + sp.decay).min(0)
                } else {
                    (e.score - sp.decay).max(0)
                };
                if e.score >= sp.threshold {
                    e.standing = Standing::Probation;
                }
            }
        }
        for (bp, slots) in assigned {
            let made = produced.get(&bp).copied().unwrap_or(0);
            let missed = i64::try_from(slots)
                .unwrap_or(i64::MAX)
                .saturating_sub(made);
            let e = self.scores.entry(bp).or_default();
            let was_probation = e.standing == Standing::Probation;
            e.score = e
                .score
                .saturating_add(made.saturating_mul(sp.gain))
                .saturating_sub(missed.saturating_mul(sp.loss))
                .clamp(sp.min, sp.max);
            if was_probation {
                if made > 0 {
                    e.standing = Standing::Active;
                    e.score = e.score.max(sp.threshold);
                } else {
                    e.standing = Standing::Excluded;
                    e.score = sp.min;
                }
            } else if e.score < sp.threshold {
                e.standing = Standing::Excluded;
            }
        }
    }
}

/// The schedule of `round` from the ranked candidates and the score book: the first
/// `bp_count` candidates not excluded; those on probation get one slot each. If that leaves
/// nobody, exclusion is ignored for this round.
pub fn build_schedule(
    round: u64,
    ranked: &[(PublicKey, u128)],
    book: &ScoreBook,
    bp_count: usize,
) -> Schedule {
    let eligible: Vec<PublicKey> = ranked
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| book.get(k).standing != Standing::Excluded)
        .take(bp_count)
        .collect();
    if eligible.is_empty() {
        return Schedule::new(
            round,
            ranked.iter().take(bp_count).map(|(k, _)| *k).collect(),
        );
    }
    let (probation, active) = eligible
        .into_iter()
        .partition(|k| book.get(k).standing == Standing::Probation);
    Schedule {
        round,
        probation,
        active,
    }
}

/// The last irreversible height: walking back from the tip over `chain` (`(height, producer)`,
/// ascending and contiguous, ending at the tip), the first height at which
/// `floor(2N/3) + 1` distinct producers have built it or on top of it. `None` if not reached
/// within `chain`.
pub fn lib_height(chain: &[(u64, PublicKey)], n: usize) -> Option<u64> {
    let quorum = quorum(n);
    let mut seen = BTreeSet::new();
    for (height, producer) in chain.iter().rev() {
        seen.insert(*producer);
        if seen.len() >= quorum {
            return Some(*height);
        }
    }
    None
}

/// `floor(2N/3) + 1`.
pub fn quorum(n: usize) -> usize {
    n.saturating_mul(2) / 3 + 1
}

/// What to do with a competing tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkChoice {
    /// Stay on the current tip.
    Keep,
    /// Reorganise to the candidate: revert the current chain above `common` and apply the
    /// candidate's blocks above it.
    Switch {
        /// Height of the common ancestor.
        common: u64,
    },
    /// Never: the candidate would revert a final block (or its ancestry cannot be checked).
    Refuse(String),
}

/// Fork choice between the current and a candidate chain. Each is a contiguous ancestry
/// `(height, hash)` ascending up to its tip, reaching down to at least `lib` (the current LIB
/// height). The longer chain wins; on equal height the current one stays. A switch whose
/// common ancestor is below `lib` is refused, as is a candidate that does not contain the LIB
/// block.
pub fn fork_choice(lib: u64, current: &[(u64, Hash)], candidate: &[(u64, Hash)]) -> ForkChoice {
    let (Some(cur_tip), Some(cand_tip)) = (current.last(), candidate.last()) else {
        return ForkChoice::Refuse("empty ancestry".into());
    };
    if cand_tip.0 <= cur_tip.0 {
        return ForkChoice::Keep;
    }
    let cur: BTreeMap<u64, Hash> = current.iter().copied().collect();
    let cand: BTreeMap<u64, Hash> = candidate.iter().copied().collect();
    match (cur.get(&lib), cand.get(&lib)) {
        (Some(a), Some(b)) if a == b => {}
        (Some(_), Some(_)) => {
            return ForkChoice::Refuse(format!(
                "the candidate has another block at LIB height {lib}"
            ))
        }
        _ => {
            return ForkChoice::Refuse(format!("ancestry does not reach down to LIB height {lib}"))
        }
    }
    let common = cur
        .iter()
        .rev()
        .find(|(h, hash)| cand.get(h) == Some(hash))
        .map(|(h, _)| *h)
        .unwrap_or(lib);
    if common < lib {
        return ForkChoice::Refuse(format!("common ancestor {common} is below LIB {lib}"));
    }
    ForkChoice::Switch { common }
}

/// Persisted record of the last slot this node signed (see the module doc).
#[derive(Debug)]
pub struct SlotGuard {
    path: PathBuf,
    last: Option<u64>,
}

const GUARD_MAGIC: &str = "aergo-slot-guard-v1";

impl SlotGuard {
    /// Opens (or starts) the record at `path`. A file that does not parse is an error: the
    /// node must not guess and risk signing a slot twice.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DposError> {
        let path = path.as_ref().to_path_buf();
        let err = |message: String| DposError::Guard {
            path: path.clone(),
            message,
        };
        let last = match fs::read_to_string(&path) {
            Ok(text) => {
                let mut parts = text.split_whitespace();
                match (parts.next(), parts.next().map(str::parse::<u64>)) {
                    (Some(GUARD_MAGIC), Some(Ok(slot))) => Some(slot),
                    _ => return Err(err("unreadable record".into())),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(Self { path, last })
    }

    /// The last slot signed.
    pub fn last_signed(&self) -> Option<u64> {
        self.last
    }

    /// Records that this node is about to sign `slot`; refuses a slot at or below the last
    /// one. Returns only after the record is durable (fsync of the file and its directory).
    pub fn record(&mut self, slot: u64) -> Result<(), DposError> {
        if let Some(last) = self.last {
            if slot <= last {
                return Err(DposError::Equivocation { slot, last });
            }
        }
        let err = |e: std::io::Error| DposError::Guard {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(err)?;
            f.write_all(format!("{GUARD_MAGIC} {slot}\n").as_bytes())
                .map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        self.last = Some(slot);
        Ok(())
    }
}

/// One block of the best chain, as the engine needs it for finality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMeta {
    /// Height.
    pub height: u64,
    /// Its slot.
    pub slot: u64,
    /// Its producer.
    pub producer: PublicKey,
}

/// The DPoS engine (the `Dpos` variant of [`crate::engine::Engine`]). The chain feeds it schedules
/// ([`Dpos::set_schedule`]) and the best chain's recent blocks ([`Dpos::update_finality`]);
/// it answers slots, validation and finality.
pub struct Dpos {
    params: DposParams,
    schedules: RwLock<BTreeMap<u64, Schedule>>,
    lib: RwLock<u64>,
    guard: Mutex<Option<SlotGuard>>,
}

impl Dpos {
    /// An engine with no schedule yet.
    pub fn new(params: DposParams) -> Result<Self, DposError> {
        params.check()?;
        Ok(Self {
            params,
            schedules: RwLock::new(BTreeMap::new()),
            lib: RwLock::new(0),
            guard: Mutex::new(None),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &DposParams {
        &self.params
    }

    /// Installs the schedule of a round (computed by the chain with [`elect`],
    /// [`ScoreBook`] and [`build_schedule`] from the state at the end of the previous round).
    pub fn set_schedule(&self, schedule: Schedule) {
        let mut s = self.schedules.write();
        s.insert(schedule.round, schedule);
        while s.len() > KEEP_ROUNDS {
            s.pop_first();
        }
    }

    /// The schedule of a round, if installed.
    pub fn schedule(&self, round: u64) -> Option<Schedule> {
        self.schedules.read().get(&round).cloned()
    }

    /// The scheduled producer of a slot, if its round's schedule is installed.
    pub fn producer_of(&self, slot: u64) -> Option<PublicKey> {
        let round = self.params.round_of(slot);
        let index = slot - self.params.round_start(round);
        self.schedules.read().get(&round)?.producer_at(index)
    }

    /// Attaches the equivocation guard; [`Dpos::next_slot`] then skips slots at or below
    /// the last signed one.
    pub fn attach_guard(&self, guard: SlotGuard) {
        *self.guard.lock() = Some(guard);
    }

    /// Must be called (and succeed) right before signing a block of `slot`.
    pub fn before_signing(&self, slot: u64) -> Result<(), DposError> {
        match self.guard.lock().as_mut() {
            Some(g) => g.record(slot),
            None => Err(DposError::Params("no slot guard attached".into())),
        }
    }

    /// Updates LIB from the best chain's blocks (ascending, contiguous, ending at the tip;
    /// everything above the current LIB is enough). `N` is the size of the tip's round
    /// schedule. LIB never decreases. Returns the LIB height.
    pub fn update_finality(&self, recent: &[BlockMeta]) -> u64 {
        let Some(tip) = recent.last() else {
            return *self.lib.read();
        };
        let n = match self.schedule(self.params.round_of(tip.slot)) {
            Some(s) => s.len(),
            None => return *self.lib.read(),
        };
        let chain: Vec<(u64, PublicKey)> = recent.iter().map(|b| (b.height, b.producer)).collect();
        let mut lib = self.lib.write();
        if let Some(h) = lib_height(&chain, n) {
            *lib = (*lib).max(h);
        }
        *lib
    }

    /// The LIB height.
    pub fn lib(&self) -> u64 {
        *self.lib.read()
    }

    /// Sets LIB when reopening a chain (the chain persists it).
    pub fn restore_lib(&self, height: u64) {
        let mut lib = self.lib.write();
        *lib = (*lib).max(height);
    }

    /// Fork choice against the engine's LIB (see [`fork_choice`]).
    pub fn choose(&self, current: &[(u64, Hash)], candidate: &[(u64, Hash)]) -> ForkChoice {
        fork_choice(self.lib(), current, candidate)
    }

    /// Rejects a header whose slot has not started at `now_ms` (plus `drift_ms`). The
    /// engine's `validate` has no clock; the chain calls this for blocks from the network.
    pub fn check_not_future(
        &self,
        header: &Header,
        now_ms: u64,
        drift_ms: u64,
    ) -> Result<(), String> {
        if header.timestamp_ms > now_ms.saturating_add(drift_ms) {
            return Err(format!(
                "block timestamp {} is in the future (now {now_ms})",
                header.timestamp_ms
            ));
        }
        Ok(())
    }
}

/// The slot a parent block carries; `None` for the genesis block, which carries none.
pub fn parent_slot(parent: &Header) -> Result<Option<u64>, String> {
    if parent.height == 0 {
        return Ok(None);
    }
    decode_slot(&parent.consensus)
        .map(Some)
        .ok_or_else(|| "parent carries no slot".to_string())
}

/// The slot-clock rules every slotted engine (DPoS, PoA) applies to a header: it carries its
/// slot, its timestamp is that slot's start (`slot_start`), and the slot comes after the
/// parent's (a child of genesis: not older than it). Returns the slot; the engine then checks
/// who owns it.
pub fn check_slot_clock(
    engine: &str,
    parent: &Header,
    header: &Header,
    slot_start: impl Fn(u64) -> u64,
) -> Result<u64, String> {
    let slot = decode_slot(&header.consensus)
        .ok_or_else(|| format!("{engine} blocks carry their slot (8 bytes)"))?;
    if header.timestamp_ms != slot_start(slot) {
        return Err(format!(
            "timestamp {} is not the start {} of slot {slot}",
            header.timestamp_ms,
            slot_start(slot)
        ));
    }
    match parent_slot(parent)? {
        Some(ps) if slot <= ps => Err(format!("slot {slot} is not after the parent's slot {ps}")),
        None if header.timestamp_ms < parent.timestamp_ms => {
            Err("block is older than genesis".into())
        }
        _ => Ok(slot),
    }
}

impl Dpos {
    /// Slot length.
    pub fn block_interval_ms(&self) -> u64 {
        self.params.interval_ms
    }

    /// Whether `me` is in one of the two latest installed schedules.
    pub fn is_producer(&self, me: &PublicKey) -> bool {
        self.schedules
            .read()
            .values()
            .rev()
            .take(2)
            .any(|s| s.members().contains(me))
    }

    /// The next slot `me` owns on top of `parent` at `now_ms`: the current slot while less
    /// than half of it has passed, never at or before the parent's slot or the last signed one.
    pub fn next_slot(&self, parent: &Header, now_ms: u64, me: &PublicKey) -> Option<Slot> {
        let p = &self.params;
        let now_slot = p.slot_of(now_ms).unwrap_or(0);
        // The current slot only while less than half of it has passed.
        let mut first = if now_ms < p.genesis_time_ms {
            0
        } else if now_ms - p.slot_start(now_slot) < p.interval_ms / 2 {
            now_slot
        } else {
            now_slot + 1
        };
        if let Ok(Some(ps)) = parent_slot(parent) {
            first = first.max(ps + 1);
        }
        if let Some(last) = self.guard.lock().as_ref().and_then(SlotGuard::last_signed) {
            first = first.max(last + 1);
        }
        let horizon = first.saturating_add(p.round_slots.saturating_mul(2));
        (first..horizon)
            .find(|s| self.producer_of(*s) == Some(*me))
            .map(|s| Slot {
                timestamp_ms: p.slot_start(s),
                consensus: encode_slot(s),
            })
    }

    /// Checks a header's slot, timestamp and producer against its parent and the schedule.
    pub fn validate(&self, parent: &Header, header: &Header) -> Result<(), String> {
        let p = &self.params;
        let slot = check_slot_clock("dpos", parent, header, |s| p.slot_start(s))?;
        match self.producer_of(slot) {
            Some(bp) if bp == header.producer => Ok(()),
            Some(bp) => Err(format!(
                "slot {slot} belongs to {bp}, not {}",
                header.producer
            )),
            None => Err(format!(
                "no schedule for round {} of slot {slot}",
                p.round_of(slot)
            )),
        }
    }

    /// LIB, capped at the best height.
    pub fn finalized_height(&self, best_height: u64) -> u64 {
        self.lib().min(best_height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_types::Signature;

    fn pk(i: u8) -> PublicKey {
        PublicKey([i; 32])
    }

    fn params() -> DposParams {
        DposParams {
            genesis_time_ms: 1_000_000,
            interval_ms: 1000,
            round_slots: 12,
            bp_count: 4,
            max_votes: 3,
            score: ScoreParams::default(),
        }
    }

    fn header(height: u64, slot: u64, producer: PublicKey, p: &DposParams) -> Header {
        Header {
            chain_id: Hash::ZERO,
            height,
            parent: Hash::ZERO,
            timestamp_ms: p.slot_start(slot),
            producer,
            tx_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            consensus: encode_slot(slot),
            ext: aergo_types::block_ext::HeaderExt::default(),
            signature: Signature::default(),
        }
    }

    fn genesis(p: &DposParams) -> Header {
        Header {
            consensus: vec![],
            ..header(0, 0, pk(0), p)
        }
    }

    fn addr(i: u8) -> Address {
        Address::from_public_key(&PublicKey([100 + i; 32]))
    }

    #[test]
    fn election_ranks_by_stake_weight_with_tie_break() {
        let candidates: BTreeSet<PublicKey> = (1..=6).map(pk).collect();
        let stakes: BTreeMap<Address, u128> =
            [(addr(1), 100), (addr(2), 50), (addr(3), 0), (addr(4), 50)].into();
        let votes: BTreeMap<Address, Vec<PublicKey>> = [
            // Duplicate and over-the-limit votes are ignored: pk(6) gets nothing from addr 1.
            (addr(1), vec![pk(1), pk(1), pk(2), pk(3), pk(6)]),
            (addr(2), vec![pk(4), pk(5), pk(99)]),
            (addr(3), vec![pk(6)]),
            (addr(4), vec![pk(5), pk(4)]),
        ]
        .into();
        let ranked = elect(&candidates, &stakes, &votes, 3);
        assert_eq!(
            ranked,
            vec![
                (pk(1), 100),
                (pk(2), 100),
                (pk(3), 100),
                (pk(4), 100),
                (pk(5), 100),
                (pk(6), 0)
            ]
        );
        let stakes2: BTreeMap<Address, u128> = [(addr(1), 10), (addr(2), 50)].into();
        let ranked = elect(&candidates, &stakes2, &votes, 3);
        assert_eq!(ranked[0], (pk(4), 50));
        assert_eq!(ranked[1], (pk(5), 50));
        assert_eq!(ranked[2], (pk(1), 10));
        let s = build_schedule(7, &ranked, &ScoreBook::default(), 4);
        assert_eq!(s.active, vec![pk(4), pk(5), pk(1), pk(2)]);
        assert!(s.probation.is_empty());
        assert_eq!(s.round, 7);
    }

    #[test]
    fn slot_math_at_boundaries() {
        let p = params();
        assert_eq!(p.slot_of(999_999), None);
        assert_eq!(p.slot_of(1_000_000), Some(0));
        assert_eq!(p.slot_of(1_000_999), Some(0));
        assert_eq!(p.slot_of(1_001_000), Some(1));
        assert_eq!(p.slot_start(11), 1_011_000);
        assert_eq!(p.round_of(11), 0);
        assert_eq!(p.round_of(12), 1);
        assert_eq!(p.round_start(2), 24);
        assert_eq!(decode_slot(&encode_slot(u64::MAX - 1)), Some(u64::MAX - 1));
        assert_eq!(decode_slot(&[1, 2, 3]), None);
        let s = Schedule::new(0, vec![pk(1), pk(2), pk(3), pk(4)]);
        assert_eq!(s.producer_at(0), Some(pk(1)));
        assert_eq!(s.producer_at(3), Some(pk(4)));
        assert_eq!(s.producer_at(4), Some(pk(1)));
        assert_eq!(
            s.assigned(12).values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
    }

    fn engine() -> Dpos {
        let d = Dpos::new(params()).unwrap();
        for r in 0..3 {
            d.set_schedule(Schedule::new(r, vec![pk(1), pk(2), pk(3), pk(4)]));
        }
        d
    }

    #[test]
    fn next_slot_and_validation() {
        let p = params();
        let d = engine();
        let g = genesis(&p);
        // At slot 0's start pk(1) produces at once; pk(2) waits for slot 1.
        let s = d.next_slot(&g, p.slot_start(0), &pk(1)).unwrap();
        assert_eq!(
            (s.timestamp_ms, decode_slot(&s.consensus)),
            (p.slot_start(0), Some(0))
        );
        let s = d.next_slot(&g, p.slot_start(0), &pk(2)).unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(1));
        // Past half of its own slot, pk(1) waits for its next turn (slot 4).
        let s = d.next_slot(&g, p.slot_start(0) + 600, &pk(1)).unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(4));
        // Never a slot at or before the parent's.
        let b5 = header(1, 5, pk(2), &p);
        let s = d.next_slot(&b5, p.slot_start(4), &pk(2)).unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(9));
        assert!(d.next_slot(&g, 0, &pk(9)).is_none());
        assert!(d.is_producer(&pk(3)) && !d.is_producer(&pk(9)));

        assert_eq!(d.validate(&g, &header(1, 0, pk(1), &p)), Ok(()));
        // Missed slots are skipped: slot 2 directly on genesis is fine for its owner.
        assert_eq!(d.validate(&g, &header(1, 2, pk(3), &p)), Ok(()));
        assert!(d.validate(&g, &header(1, 2, pk(1), &p)).is_err());
        let b1 = header(1, 1, pk(2), &p);
        assert!(d.validate(&b1, &header(2, 1, pk(2), &p)).is_err());
        assert!(d.validate(&b1, &header(2, 0, pk(1), &p)).is_err());
        let mut off = header(2, 2, pk(3), &p);
        off.timestamp_ms += 1;
        assert!(d.validate(&b1, &off).is_err());
        let mut no_slot = header(2, 2, pk(3), &p);
        no_slot.consensus.clear();
        assert!(d.validate(&b1, &no_slot).is_err());
        // Round 5 has no schedule.
        assert!(d.validate(&b1, &header(2, 60, pk(1), &p)).is_err());
        assert!(d
            .check_not_future(&header(2, 10, pk(3), &p), p.slot_start(9), 500)
            .is_err());
        assert!(d
            .check_not_future(&header(2, 10, pk(3), &p), p.slot_start(10), 0)
            .is_ok());
    }

    /// Builds a chain over `slots` where the producers in `down` miss their slots.
    fn run(d: &Dpos, slots: std::ops::Range<u64>, down: &[PublicKey]) -> Vec<BlockMeta> {
        let mut out = Vec::new();
        for slot in slots {
            let bp = d.producer_of(slot).unwrap();
            if !down.contains(&bp) {
                out.push(BlockMeta {
                    height: out.len() as u64 + 1,
                    slot,
                    producer: bp,
                });
            }
        }
        out
    }

    #[test]
    fn lib_with_four_bps_and_one_down() {
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(13), 9);
        assert_eq!(quorum(1), 1);
        let d = engine();
        let chain = run(&d, 0..20, &[pk(4)]);
        assert_eq!(chain.len(), 15);
        let lib = d.update_finality(&chain);
        // The tip's two predecessors bring the third distinct producer.
        assert_eq!(lib, chain.len() as u64 - 2);
        assert_eq!(d.finalized_height(chain.len() as u64), lib);
        // All four up: also three back (the third producer makes the quorum).
        let d = engine();
        let chain = run(&d, 0..20, &[]);
        assert_eq!(d.update_finality(&chain), 18);
    }

    #[test]
    fn lib_never_advances_in_a_two_two_split_and_never_decreases() {
        let d = engine();
        let pre = run(&d, 0..8, &[]);
        let lib0 = d.update_finality(&pre);
        assert_eq!(lib0, 6);
        // Side A (pk1, pk2) and side B (pk3, pk4) keep producing on their own forks.
        let mut a = pre.clone();
        let mut b = pre.clone();
        for slot in 8..36 {
            let bp = d.producer_of(slot).unwrap();
            let side = if bp == pk(1) || bp == pk(2) {
                &mut a
            } else {
                &mut b
            };
            let height = side.len() as u64 + 1;
            side.push(BlockMeta {
                height,
                slot,
                producer: bp,
            });
        }
        let chain_a: Vec<(u64, PublicKey)> = a.iter().map(|m| (m.height, m.producer)).collect();
        let chain_b: Vec<(u64, PublicKey)> = b.iter().map(|m| (m.height, m.producer)).collect();
        let lib_a = lib_height(&chain_a, 4).unwrap();
        let lib_b = lib_height(&chain_b, 4).unwrap();
        // Neither side finalizes anything produced after the split.
        assert!(lib_a <= 8 && lib_b <= 8, "{lib_a} {lib_b}");
        assert_eq!(d.update_finality(&a), lib0.max(lib_a));
        assert_eq!(d.update_finality(&b), lib0.max(lib_a));
        // Both sides agree on every block at or below either LIB (shared prefix).
        assert!(lib_a.max(lib_b) <= pre.len() as u64);
    }

    fn h(i: u64, fork: u8) -> (u64, Hash) {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&i.to_be_bytes());
        b[8] = fork;
        (i, Hash(b))
    }

    #[test]
    fn fork_choice_never_reverts_at_or_below_lib() {
        let base: Vec<(u64, Hash)> = (0..=10).map(|i| h(i, 0)).collect();
        let mut current = base.clone();
        current.extend((11..=12).map(|i| h(i, 1)));
        // Candidate forks at 10, longer: allowed when LIB <= 10.
        let mut cand = base.clone();
        cand.extend((11..=14).map(|i| h(i, 2)));
        assert_eq!(
            fork_choice(10, &current, &cand),
            ForkChoice::Switch { common: 10 }
        );
        assert_eq!(
            fork_choice(9, &current, &cand),
            ForkChoice::Switch { common: 10 }
        );
        // LIB at 11 (on the current fork): the candidate would revert it.
        assert!(matches!(
            fork_choice(11, &current, &cand),
            ForkChoice::Refuse(_)
        ));
        // A fork below LIB.
        let mut deep: Vec<(u64, Hash)> = (0..=5).map(|i| h(i, 0)).collect();
        deep.extend((6..=20).map(|i| h(i, 3)));
        assert!(matches!(
            fork_choice(8, &current, &deep),
            ForkChoice::Refuse(_)
        ));
        // Shorter or equal candidates never win.
        assert_eq!(fork_choice(0, &cand, &current), ForkChoice::Keep);
        assert_eq!(fork_choice(0, &current, &current), ForkChoice::Keep);
        // Ancestry that does not reach LIB cannot be checked.
        assert!(matches!(
            fork_choice(3, &current, &cand[5..]),
            ForkChoice::Refuse(_)
        ));
        // Through the engine.
        let d = engine();
        d.restore_lib(11);
        assert!(matches!(d.choose(&current, &cand), ForkChoice::Refuse(_)));
    }

    #[test]
    fn score_exclusion_decay_and_probation() {
        let p = params();
        let bps = vec![pk(1), pk(2), pk(3), pk(4), pk(5)];
        let ranked: Vec<(PublicKey, u128)> = bps
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, 100 - i as u128))
            .collect();
        let mut book = ScoreBook::default();
        let mut schedule = build_schedule(0, &ranked, &book, 4);
        assert_eq!(schedule.active, vec![pk(1), pk(2), pk(3), pk(4)]);
        let blocks_of = |s: &Schedule, down: &[PublicKey]| -> Vec<(u64, PublicKey)> {
            let start = p.round_start(s.round);
            (0..p.round_slots)
                .filter_map(|i| s.producer_at(i).map(|bp| (start + i, bp)))
                .filter(|(_, bp)| !down.contains(bp))
                .collect()
        };
        // pk(4) misses all 3 slots per round: -9 per round, excluded after 4 rounds (-36).
        let mut round = 0;
        for _ in 0..4 {
            book.end_round(&p, &schedule, &blocks_of(&schedule, &[pk(4)]));
            round += 1;
            schedule = build_schedule(round, &ranked, &book, 4);
        }
        assert_eq!(
            book.get(&pk(4)),
            BpScore {
                score: -36,
                standing: Standing::Excluded
            }
        );
        assert_eq!(book.get(&pk(1)).score, 12);
        // pk(5) takes the seat.
        assert_eq!(schedule.active, vec![pk(1), pk(2), pk(3), pk(5)]);
        // One round out: -36 decays to -26 >= -30: probation, one slot at the round start.
        book.end_round(&p, &schedule, &blocks_of(&schedule, &[]));
        assert_eq!(
            book.get(&pk(4)),
            BpScore {
                score: -26,
                standing: Standing::Probation
            }
        );
        round += 1;
        schedule = build_schedule(round, &ranked, &book, 4);
        assert_eq!(schedule.probation, vec![pk(4)]);
        assert_eq!(schedule.active, vec![pk(1), pk(2), pk(3)]);
        assert_eq!(schedule.assigned(p.round_slots).get(&pk(4)), Some(&1));
        assert_eq!(schedule.producer_at(0), Some(pk(4)));
        assert_eq!(schedule.producer_at(1), Some(pk(1)));
        // It misses its probation slot: excluded at the minimum score.
        book.end_round(&p, &schedule, &blocks_of(&schedule, &[pk(4)]));
        assert_eq!(
            book.get(&pk(4)),
            BpScore {
                score: -100,
                standing: Standing::Excluded
            }
        );
        // Seven rounds of decay (-100 -> -30), then probation again; now it produces.
        for i in 0..7 {
            round += 1;
            schedule = build_schedule(round, &ranked, &book, 4);
            assert!(!schedule.members().contains(&pk(4)), "round {i}");
            book.end_round(&p, &schedule, &blocks_of(&schedule, &[]));
        }
        assert_eq!(
            book.get(&pk(4)),
            BpScore {
                score: -30,
                standing: Standing::Probation
            }
        );
        round += 1;
        schedule = build_schedule(round, &ranked, &book, 4);
        assert_eq!(schedule.probation, vec![pk(4)]);
        book.end_round(&p, &schedule, &blocks_of(&schedule, &[]));
        assert_eq!(
            book.get(&pk(4)),
            BpScore {
                score: -29,
                standing: Standing::Active
            }
        );
        round += 1;
        schedule = build_schedule(round, &ranked, &book, 4);
        assert_eq!(schedule.active, vec![pk(1), pk(2), pk(3), pk(4)]);
        // Everyone excluded: exclusion is ignored so the chain cannot halt.
        let mut all_out = ScoreBook::default();
        for k in &bps {
            all_out.scores.insert(
                *k,
                BpScore {
                    score: -100,
                    standing: Standing::Excluded,
                },
            );
        }
        assert_eq!(build_schedule(0, &ranked, &all_out, 4).active.len(), 4);
    }

    /// Four BPs driven by an injected clock over three rounds: exactly one may produce per
    /// slot, every block validates on its parent, and LIB trails the tip by two blocks with
    /// everyone up (three slots: within the four-interval floor) and keeps advancing with one
    /// BP down.
    #[test]
    fn simulated_network_with_injected_clock() {
        let p = params();
        for down in [None, Some(pk(2))] {
            let d = engine();
            let mut chain = vec![genesis(&p)];
            let mut metas: Vec<BlockMeta> = Vec::new();
            let mut max_lag = 0;
            for slot in 0..36 {
                let now = p.slot_start(slot) + 10;
                let tip = chain.last().unwrap().clone();
                let ready: Vec<(PublicKey, Slot)> = (1..=4)
                    .map(pk)
                    .filter(|bp| Some(*bp) != down)
                    .filter_map(|bp| d.next_slot(&tip, now, &bp).map(|s| (bp, s)))
                    .filter(|(_, s)| s.timestamp_ms <= now)
                    .collect();
                assert!(ready.len() <= 1, "two producers at slot {slot}");
                let Some((bp, s)) = ready.into_iter().next() else {
                    assert_eq!(Some(d.producer_of(slot).unwrap()), down);
                    continue;
                };
                let mut h = header(tip.height + 1, slot, bp, &p);
                h.consensus = s.consensus;
                assert_eq!(h.timestamp_ms, s.timestamp_ms);
                d.validate(&tip, &h).unwrap();
                metas.push(BlockMeta {
                    height: h.height,
                    slot,
                    producer: bp,
                });
                chain.push(h);
                let lib = d.update_finality(&metas);
                if metas.len() > 4 {
                    max_lag = max_lag.max(chain.len() as u64 - 1 - lib);
                }
            }
            assert_eq!(max_lag, 2, "down {down:?}");
            let expected_blocks = if down.is_some() { 27 } else { 36 };
            assert_eq!(metas.len(), expected_blocks);
        }
    }

    #[test]
    fn equivocation_guard_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot-guard");
        let mut g = SlotGuard::open(&path).unwrap();
        assert_eq!(g.last_signed(), None);
        g.record(5).unwrap();
        assert!(matches!(
            g.record(5),
            Err(DposError::Equivocation { slot: 5, last: 5 })
        ));
        assert!(g.record(4).is_err());
        g.record(9).unwrap();
        drop(g);
        // "Restart".
        let mut g = SlotGuard::open(&path).unwrap();
        assert_eq!(g.last_signed(), Some(9));
        assert!(matches!(g.record(9), Err(DposError::Equivocation { .. })));
        // Through the engine: next_slot skips signed slots, before_signing refuses them.
        let p = params();
        let d = engine();
        d.attach_guard(g);
        let s = d.next_slot(&genesis(&p), p.slot_start(0), &pk(2)).unwrap();
        assert_eq!(decode_slot(&s.consensus), Some(13));
        assert!(d.before_signing(9).is_err());
        d.before_signing(13).unwrap();
        assert_eq!(SlotGuard::open(&path).unwrap().last_signed(), Some(13));
        // A corrupt record refuses to open.
        std::fs::write(&path, b"garbage").unwrap();
        assert!(SlotGuard::open(&path).is_err());
    }
}
