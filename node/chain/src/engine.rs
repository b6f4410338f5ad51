//! The consensus engines as one closed enum, [`Engine`]: `solo`, DPoS and PoA. The chain
//! calls the engine only through the hooks below, and each hook is an exhaustive `match`,
//! so a new engine is a new variant the compiler walks through every decision with.
//!
//! Hooks, in the order a block meets them:
//! - **slots**: [`Engine::prepare_slots`] (DPoS installs the schedules of the current and
//!   next round from the tip's state), [`Engine::next_slot`], [`Engine::skips_empty_slots`]
//!   (whether a producer with nothing to include leaves its slot empty: solo and PoA when
//!   configured; DPoS never, its empty blocks carry finality) and
//!   [`Engine::preconfirm_window`];
//! - **begin-block** ([`Engine::begin_block`]): what a block does before its transactions
//!   (DPoS: closes a round and elects the next schedule, releases unstaked amounts) and what
//!   execution gets from the engine ([`BlockStart::dpos`], the round's schedule for
//!   staking); [`Engine::check_own_slot`] when producing, [`Engine::validate`] when
//!   importing; [`Engine::end_block`] after the transactions (DPoS: the round's record);
//! - **before-signing** ([`Engine::before_signing`]): DPoS and PoA record the slot in the
//!   fsynced slot guard, so no slot is ever signed twice, across restarts;
//! - **on-commit** ([`Engine::on_commit`]): what the finality rule keeps of a committed block;
//! - **finality** ([`Engine::update_finality`], [`Engine::finalized_height`],
//!   [`Engine::restore_lib`]): solo blocks are final at once; DPoS and PoA finalize at
//!   `floor(2N/3) + 1` distinct producers and never reorganise below that (LIB).
//!
//! # Pre-confirmation window
//! [`Engine::preconfirm_window`]`(slot)` is the time in which the producer of `slot` may
//! pre-confirm transactions for its block: from holding the block it builds on — at the
//! earliest the start of slot − 1 — until 90% of its own slot has passed, as
//! `(start_ms, end_ms)` with `end_ms` exclusive; the caller also requires the parent block to
//! be held. On engines with a slot clock (DPoS, PoA) `slot` is the slot number. Solo has no
//! slot clock: there the block height is the slot, and the window is not a time (`None`):
//! the one producer may pre-confirm for height `h` from committing `h − 1` until it produces
//! `h`.

use std::sync::Arc;

use aergo_types::genesis::{ConsensusParams, DposGenesis, Engine as EngineKind};
use aergo_types::{Genesis, Header, PublicKey};

use crate::consensus::{Slot, Solo};
use crate::ctx::DposCtx;
use crate::dpos::{self, BlockMeta, Dpos, DposParams, ScoreParams, SlotGuard};
use crate::error::ChainError;
use crate::exec::Executed;
use crate::limits::DRIFT_MS;
use crate::poa::{Poa, PoaParams};
use crate::rounds;
use crate::staking;
use crate::state::{MemState, Overlay, StateView, WriteSet};

/// The DPoS engine with its genesis settings (a DPoS chain without them cannot exist).
pub struct DposEngine {
    /// The deterministic core: slots, schedules, LIB, slot guard.
    pub core: Dpos,
    /// The genesis settings: initial BPs and governance values.
    pub genesis: Arc<DposGenesis>,
}

/// A consensus engine.
pub enum Engine {
    /// One producer (dev chains).
    Solo(Solo),
    /// Delegated proof of stake.
    Dpos(DposEngine),
    /// Proof of authority: a fixed producer set.
    Poa(Poa),
}

/// What the engine does at the start of a block, before its transactions.
#[derive(Debug, Default)]
pub struct BlockStart {
    /// The state writes made before the transactions.
    pub writes: WriteSet,
    /// DPoS: the staking settings and the round's schedule, for execution.
    pub dpos: Option<DposCtx>,
}

/// The DPoS parameters a genesis gives.
pub fn dpos_params(g: &Genesis) -> Option<DposParams> {
    let d = g.consensus.dpos.as_ref()?;
    Some(DposParams {
        genesis_time_ms: g.timestamp_ms,
        interval_ms: g.consensus.block_interval_ms,
        round_slots: d.round_slots,
        bp_count: d.bp_count,
        max_votes: d.max_votes,
        score: ScoreParams::default(),
    })
}

/// The PoA parameters a genesis gives (`None` without a `consensus.poa` section or with a
/// producer that is not an account key).
pub fn poa_params(g: &Genesis) -> Option<PoaParams> {
    let p = g.consensus.poa.as_ref()?;
    let producers = p
        .producers
        .iter()
        .map(|a| a.public_key())
        .collect::<Option<Vec<PublicKey>>>()?;
    Some(PoaParams {
        genesis_time_ms: g.timestamp_ms,
        interval_ms: g.consensus.block_interval_ms,
        producers,
        skip_empty_slots: p.skip_empty_slots,
    })
}

fn consensus_err(e: impl std::fmt::Display) -> ChainError {
    ChainError::Consensus(e.to_string())
}

fn slot_of(header: &Header, engine: &str) -> Result<u64, ChainError> {
    dpos::decode_slot(&header.consensus)
        .ok_or_else(|| ChainError::Consensus(format!("{engine} blocks carry their slot (8 bytes)")))
}

/// Refuses a header whose slot has not started at `now_ms` plus `drift_ms`.
fn check_not_future(header: &Header, now_ms: u64, drift_ms: u64) -> Result<(), String> {
    if header.timestamp_ms > now_ms.saturating_add(drift_ms) {
        return Err(format!(
            "block timestamp {} is in the future (now {now_ms})",
            header.timestamp_ms
        ));
    }
    Ok(())
}

fn window(slot_start: u64, prev_start: u64, interval_ms: u64) -> (u64, u64) {
    (
        prev_start,
        slot_start.saturating_add(interval_ms.saturating_mul(9) / 10),
    )
}

impl Engine {
    /// The engine a genesis names, with its parameters.
    pub fn from_genesis(g: &Genesis) -> Result<Self, ChainError> {
        let c: &ConsensusParams = &g.consensus;
        match c.engine {
            EngineKind::Solo => Ok(Engine::Solo(Solo::new(c))),
            EngineKind::Dpos => {
                let (Some(p), Some(d)) = (dpos_params(g), c.dpos.clone()) else {
                    return Err(consensus_err(
                        "engine dpos without a consensus.dpos section",
                    ));
                };
                Ok(Engine::Dpos(DposEngine {
                    core: Dpos::new(p).map_err(consensus_err)?,
                    genesis: Arc::new(d),
                }))
            }
            EngineKind::Poa => {
                let p = poa_params(g).ok_or_else(|| {
                    consensus_err("engine poa without a valid consensus.poa section")
                })?;
                Ok(Engine::Poa(Poa::new(p).map_err(consensus_err)?))
            }
        }
    }

    /// Engine name (`solo`, `dpos`, `poa`).
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Solo(_) => "solo",
            Engine::Dpos(_) => "dpos",
            Engine::Poa(_) => "poa",
        }
    }

    /// Slot length.
    pub fn block_interval_ms(&self) -> u64 {
        match self {
            Engine::Solo(s) => s.block_interval_ms(),
            Engine::Dpos(d) => d.core.block_interval_ms(),
            Engine::Poa(p) => p.block_interval_ms(),
        }
    }

    /// Whether `me` may produce at all.
    pub fn is_producer(&self, me: &PublicKey) -> bool {
        match self {
            Engine::Solo(s) => s.is_producer(me),
            Engine::Dpos(d) => d.core.is_producer(me),
            Engine::Poa(p) => p.is_producer(me),
        }
    }

    /// The DPoS genesis settings: staking transactions are enabled only with them.
    pub fn staking(&self) -> Option<&Arc<DposGenesis>> {
        match self {
            Engine::Dpos(d) => Some(&d.genesis),
            Engine::Solo(_) | Engine::Poa(_) => None,
        }
    }

    /// Whether the engine signs slots and so needs the slot guard.
    pub fn uses_slot_guard(&self) -> bool {
        match self {
            Engine::Solo(_) => false,
            Engine::Dpos(_) | Engine::Poa(_) => true,
        }
    }

    /// Attaches the slot guard (DPoS, PoA; ignored by solo).
    pub fn attach_guard(&self, guard: SlotGuard) {
        match self {
            Engine::Solo(_) => {}
            Engine::Dpos(d) => d.core.attach_guard(guard),
            Engine::Poa(p) => p.attach_guard(guard),
        }
    }

    /// Whether the best chain may be reorganised (above LIB): blocks then keep undo records.
    pub fn reorgs(&self) -> bool {
        match self {
            Engine::Solo(_) => false,
            Engine::Dpos(_) | Engine::Poa(_) => true,
        }
    }

    /// The engine's genesis state writes on top of the balances in `writes` (DPoS: stakes,
    /// registrations, votes, governance values and the round-0 schedule).
    pub fn genesis_writes(&self, g: &Genesis, writes: &mut WriteSet) -> Result<(), ChainError> {
        match self {
            Engine::Solo(_) | Engine::Poa(_) => Ok(()),
            Engine::Dpos(d) => {
                staking::genesis_writes(g, writes)?;
                let mem = MemState(
                    writes
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                        .collect(),
                );
                rounds::genesis_writes(&mem, &d.genesis, writes)
            }
        }
    }

    /// Before [`Engine::next_slot`] on the tip whose state is `tip_state`: DPoS installs the
    /// schedules of the current and the next round, as they follow from the tip's state.
    pub fn prepare_slots(&self, tip_state: &dyn StateView, now_ms: u64) -> Result<(), ChainError> {
        match self {
            Engine::Solo(_) | Engine::Poa(_) => Ok(()),
            Engine::Dpos(d) => {
                let stored = rounds::load_schedule(tip_state)?
                    .ok_or_else(|| ChainError::Corrupt("no DPoS schedule in state".into()))?;
                let p = d.core.params();
                let now_round = p.round_of(p.slot_of(now_ms).unwrap_or(0));
                let first = now_round.max(stored.round);
                for r in first..=first.saturating_add(1) {
                    let (s, _) = rounds::begin_block(tip_state, p, &d.genesis, p.round_start(r))?;
                    d.core.set_schedule(s);
                }
                Ok(())
            }
        }
    }

    /// The next slot `me` may fill on top of `parent`, given the current time.
    pub fn next_slot(&self, parent: &Header, now_ms: u64, me: &PublicKey) -> Option<Slot> {
        match self {
            Engine::Solo(s) => s.next_slot(parent, now_ms, me),
            Engine::Dpos(d) => d.core.next_slot(parent, now_ms, me),
            Engine::Poa(p) => p.next_slot(parent, now_ms, me),
        }
    }

    /// Whether a producer with nothing to include leaves its slot empty rather than making
    /// an empty block: solo yes (the node's `empty_blocks` switch overrides it), DPoS never
    /// (its empty blocks carry finality and scores), PoA as configured.
    pub fn skips_empty_slots(&self) -> bool {
        match self {
            Engine::Solo(_) => true,
            Engine::Dpos(_) => false,
            Engine::Poa(p) => p.skips_empty_slots(),
        }
    }

    /// The window in which the producer of `slot` may pre-confirm (see the module doc).
    pub fn preconfirm_window(&self, slot: u64) -> Option<(u64, u64)> {
        match self {
            Engine::Solo(_) => None,
            Engine::Dpos(d) => {
                let p = d.core.params();
                Some(window(
                    p.slot_start(slot),
                    p.slot_start(slot.saturating_sub(1)),
                    p.interval_ms,
                ))
            }
            Engine::Poa(p) => Some(p.preconfirm_window(slot)),
        }
    }

    /// Begin-block: the writes a block makes before its transactions on top of its parent's
    /// state `view`, and what execution gets from the engine. Pure: nothing is installed.
    pub fn begin_block(
        &self,
        view: &dyn StateView,
        header: &Header,
    ) -> Result<BlockStart, ChainError> {
        match self {
            Engine::Solo(_) | Engine::Poa(_) => Ok(BlockStart::default()),
            Engine::Dpos(d) => {
                let slot = slot_of(header, "dpos")?;
                let (schedule, w) = rounds::begin_block(view, d.core.params(), &d.genesis, slot)?;
                let mut o = Overlay::new(view);
                o.writes = w;
                staking::begin_block(&mut o, header.height)?;
                Ok(BlockStart {
                    writes: o.writes,
                    dpos: Some(DposCtx {
                        genesis: d.genesis.clone(),
                        schedule,
                    }),
                })
            }
        }
    }

    /// Producing: checks that `header`'s slot is its producer's on `parent`
    /// ([`ChainError::Consensus`] otherwise: the tip moved or the slot is not ours).
    pub fn check_own_slot(
        &self,
        parent: &Header,
        header: &Header,
        start: &BlockStart,
    ) -> Result<(), ChainError> {
        match self {
            Engine::Solo(_) => Ok(()),
            Engine::Dpos(d) => {
                let slot = slot_of(header, "dpos")?;
                let Some(sched) = &start.dpos else {
                    return Err(consensus_err("no schedule for the block's round"));
                };
                let index = slot.saturating_sub(d.core.params().round_start(sched.schedule.round));
                if sched.schedule.producer_at(index) != Some(header.producer) {
                    return Err(ChainError::Consensus(format!(
                        "slot {slot} is not this node's on the current tip"
                    )));
                }
                Ok(())
            }
            Engine::Poa(p) => p
                .validate(parent, header)
                .map_err(|e| ChainError::Consensus(format!("not this node's slot: {e}"))),
        }
    }

    /// Installs what [`Engine::begin_block`] computed (DPoS: the round's schedule).
    pub fn install(&self, start: &BlockStart) {
        match self {
            Engine::Solo(_) | Engine::Poa(_) => {}
            Engine::Dpos(d) => {
                if let Some(c) = &start.dpos {
                    d.core.set_schedule(c.schedule.clone());
                }
            }
        }
    }

    /// Checks a block header's producer and timing against its parent.
    pub fn validate(&self, parent: &Header, header: &Header) -> Result<(), String> {
        match self {
            Engine::Solo(s) => s.validate(parent, header),
            Engine::Dpos(d) => d.core.validate(parent, header),
            Engine::Poa(p) => p.validate(parent, header),
        }
    }

    /// A block from the network: its timestamp is not in the future (beyond a small drift)
    /// and it carries its slot. Solo: nothing to check here.
    pub fn check_received(&self, header: &Header, now_ms: u64) -> Result<(), String> {
        let name = self.name();
        match self {
            Engine::Solo(_) => Ok(()),
            Engine::Dpos(_) | Engine::Poa(_) => {
                check_not_future(header, now_ms, DRIFT_MS)?;
                slot_of(header, name).map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }

    /// The slot a block claims, where slots make equivocation evidence (DPoS, PoA).
    pub fn equivocation_slot(&self, header: &Header) -> Option<u64> {
        match self {
            Engine::Solo(_) => None,
            Engine::Dpos(_) | Engine::Poa(_) => dpos::decode_slot(&header.consensus),
        }
    }

    /// After the transactions: merges the block-start writes under the transactions' writes
    /// and adds the engine's own (DPoS: the block in its round's record).
    pub fn end_block(
        &self,
        view: &dyn StateView,
        header: &Header,
        pre: WriteSet,
        executed: &mut Executed,
    ) -> Result<(), ChainError> {
        let mut all = pre;
        all.extend(std::mem::take(&mut executed.writes));
        match self {
            Engine::Solo(_) | Engine::Poa(_) => {
                executed.writes = all;
                Ok(())
            }
            Engine::Dpos(_) => {
                let slot = slot_of(header, "dpos")?;
                let o = Overlay {
                    base: view,
                    writes: all,
                };
                let (k, v) = rounds::end_block(&o, slot, header.producer)?;
                let mut all = o.writes;
                all.insert(k, v);
                executed.writes = all;
                Ok(())
            }
        }
    }

    /// Before-signing: DPoS and PoA record the slot in the slot guard (fsynced) and refuse a
    /// slot at or below the last signed one.
    pub fn before_signing(&self, header: &Header) -> Result<(), ChainError> {
        match self {
            Engine::Solo(_) => Ok(()),
            Engine::Dpos(d) => d
                .core
                .before_signing(slot_of(header, "dpos")?)
                .map_err(consensus_err),
            Engine::Poa(p) => p
                .before_signing(slot_of(header, "poa")?)
                .map_err(consensus_err),
        }
    }

    /// On-commit: what the finality rule keeps of a block committed to the best chain.
    pub fn on_commit(&self, header: &Header) -> Option<BlockMeta> {
        match self {
            Engine::Solo(_) => None,
            Engine::Dpos(_) | Engine::Poa(_) => {
                dpos::decode_slot(&header.consensus).map(|slot| BlockMeta {
                    height: header.height,
                    slot,
                    producer: header.producer,
                })
            }
        }
    }

    /// Finality: recomputes LIB from the best chain's recent blocks (`tip_state` is the
    /// tip's state: DPoS's `N` is its round's schedule). `None`: every block is final (solo).
    pub fn update_finality(
        &self,
        tip_state: &dyn StateView,
        recent: &[BlockMeta],
    ) -> Result<Option<u64>, ChainError> {
        match self {
            Engine::Solo(_) => Ok(None),
            Engine::Dpos(d) => {
                if let Some(s) = rounds::load_schedule(tip_state)? {
                    d.core.set_schedule(s);
                }
                Ok(Some(d.core.update_finality(recent)))
            }
            Engine::Poa(p) => Ok(Some(p.update_finality(recent))),
        }
    }

    /// The engine's LIB (`None` on solo: the best block is final).
    pub fn lib(&self) -> Option<u64> {
        match self {
            Engine::Solo(_) => None,
            Engine::Dpos(d) => Some(d.core.lib()),
            Engine::Poa(p) => Some(p.lib()),
        }
    }

    /// Sets LIB when reopening a chain.
    pub fn restore_lib(&self, height: u64) {
        match self {
            Engine::Solo(_) => {}
            Engine::Dpos(d) => d.core.restore_lib(height),
            Engine::Poa(p) => p.restore_lib(height),
        }
    }

    /// The last final height given the best height.
    pub fn finalized_height(&self, best_height: u64) -> u64 {
        match self {
            Engine::Solo(s) => s.finalized_height(best_height),
            Engine::Dpos(d) => d.core.finalized_height(best_height),
            Engine::Poa(p) => p.finalized_height(best_height),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aergo_types::genesis::{DposGenesis, GenesisAccount, GenesisBp, PoaGenesis};
    use aergo_types::{Address, Aer, Keypair, TOTAL_SUPPLY};

    fn addr(i: u8) -> Address {
        Address::from_public_key(&Keypair::from_seed(&[i; 32]).public())
    }

    fn genesis(kind: EngineKind) -> Genesis {
        let mut g = Genesis::dev();
        g.timestamp_ms = 1_000_000;
        g.consensus.engine = kind;
        match kind {
            EngineKind::Solo => {}
            EngineKind::Poa => {
                g.consensus.poa = Some(PoaGenesis {
                    producers: vec![addr(1), addr(2)],
                    skip_empty_slots: false,
                })
            }
            EngineKind::Dpos => {
                g.balances = vec![
                    GenesisAccount {
                        address: addr(1),
                        balance: Aer(1000),
                    },
                    GenesisAccount {
                        address: addr(9),
                        balance: Aer(TOTAL_SUPPLY - 1000),
                    },
                ];
                g.consensus.dpos = Some(DposGenesis {
                    round_slots: 10,
                    bp_count: 1,
                    max_votes: 1,
                    min_stake: Aer(100),
                    unstake_lock_blocks: 1,
                    bps: vec![GenesisBp {
                        address: addr(1),
                        stake: Aer(100),
                        p2p_addr: None,
                    }],
                })
            }
        }
        g.validate().unwrap();
        g
    }

    #[test]
    fn each_engine_answers_every_hook() {
        let solo = Engine::from_genesis(&genesis(EngineKind::Solo)).unwrap();
        let dpos = Engine::from_genesis(&genesis(EngineKind::Dpos)).unwrap();
        let poa = Engine::from_genesis(&genesis(EngineKind::Poa)).unwrap();
        assert_eq!(
            [solo.name(), dpos.name(), poa.name()],
            ["solo", "dpos", "poa"]
        );
        assert_eq!(
            [
                solo.skips_empty_slots(),
                dpos.skips_empty_slots(),
                poa.skips_empty_slots()
            ],
            [true, false, false]
        );
        // Solo has no slot clock: the height is the slot and the window is not a time.
        assert_eq!(solo.preconfirm_window(7), None);
        // Slot 7 of 1 s slots from 1,000,000: from slot 6's start to 90% of slot 7.
        for e in [&dpos, &poa] {
            assert_eq!(e.preconfirm_window(7), Some((1_006_000, 1_007_900)));
        }
        assert_eq!(poa.preconfirm_window(0), Some((1_000_000, 1_000_900)));
        assert!(solo.staking().is_none() && poa.staking().is_none());
        assert!(dpos.staking().is_some());
        assert_eq!(
            [solo.reorgs(), dpos.reorgs(), poa.reorgs()],
            [false, true, true]
        );
        assert_eq!(
            [solo.lib(), dpos.lib(), poa.lib()],
            [None, Some(0), Some(0)]
        );
        // DPoS without its section cannot be built.
        let mut bad = genesis(EngineKind::Dpos);
        bad.consensus.dpos = None;
        assert!(Engine::from_genesis(&bad).is_err());
        let mut bad = genesis(EngineKind::Poa);
        bad.consensus.poa = None;
        assert!(Engine::from_genesis(&bad).is_err());
    }
}
