//! JSON-RPC methods of DPoS staking (docs/RPC.md, "Staking"): an account's stake, unstaking
//! entries, ballot and registration (`staking_account`), the registered candidates ranked by
//! tally (`dpos_candidates`), and the governance parameters with pending votes
//! (`dpos_governance`). Each reads the state at `height` (default: the best block).

use crate::node::Node;
use aergo_chain::staking;
use aergo_chain::state::StateView;
use aergo_chain::ChainError;
use aergo_rpc::types::*;
use aergo_types::genesis::DposGenesis;
use aergo_types::{Address, Aer, PublicKey};
use serde_json::Value;

type Fail = (i64, String);

/// Handles `method` if it is a staking method (`None` otherwise). Errors are
/// `(JSON-RPC code, message)`.
pub fn dispatch(node: &Node, method: &str, p: &Value) -> Option<Result<Value, (i64, String)>> {
    let run = match method {
        "staking_account" => staking_account,
        "dpos_candidates" => dpos_candidates,
        "dpos_governance" => dpos_governance,
        _ => return None,
    };
    Some(run(node, p))
}

fn params(m: impl Into<String>) -> Fail {
    (codes::INVALID_PARAMS, m.into())
}

fn chain_fail(e: ChainError) -> Fail {
    match e {
        ChainError::NotFound(m) => (codes::NOT_FOUND, m),
        other => (codes::INTERNAL, other.to_string()),
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, Fail> {
    serde_json::to_value(v).map_err(|e| (codes::INTERNAL, e.to_string()))
}

fn p_height(p: &Value) -> Result<Option<u64>, Fail> {
    match p.get("height") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| params("parameter `height` must be a non-negative integer")),
    }
}

fn p_addr(p: &Value) -> Result<Address, Fail> {
    let s = p
        .get("address")
        .and_then(|v| v.as_str())
        .ok_or_else(|| params("missing string parameter `address`"))?;
    Address::decode(s).map_err(|e| params(e.to_string()))
}

fn dpos_genesis(node: &Node) -> Result<&DposGenesis, Fail> {
    node.chain.genesis().consensus.dpos.as_ref().ok_or_else(|| {
        (
            codes::NOT_FOUND,
            "this chain does not run DPoS: it has no candidates or governance".to_string(),
        )
    })
}

/// Runs `f` on the state at `height` (default: the best block) and returns its height too.
fn at_height<T>(
    node: &Node,
    height: Option<u64>,
    f: impl FnOnce(&dyn StateView, u64) -> Result<T, ChainError>,
) -> Result<T, Fail> {
    let h = height.unwrap_or_else(|| node.chain.tip().header.height);
    let view = node.chain.view_at(h).map_err(chain_fail)?;
    f(&view, h).map_err(chain_fail)
}

fn staking_account(node: &Node, p: &Value) -> Result<Value, Fail> {
    let a = p_addr(p)?;
    let out = at_height(node, p_height(p)?, |v, h| account_json(v, &a, h))?;
    to_value(out)
}

fn dpos_candidates(node: &Node, p: &Value) -> Result<Value, Fail> {
    let d = dpos_genesis(node)?;
    let out = at_height(node, p_height(p)?, |v, h| candidates_json(v, d, h))?;
    to_value(out)
}

fn dpos_governance(node: &Node, p: &Value) -> Result<Value, Fail> {
    let d = dpos_genesis(node)?;
    let out = at_height(node, p_height(p)?, |v, h| governance_json(v, d, h))?;
    to_value(out)
}

fn addr_of(k: &PublicKey) -> String {
    Address::from_public_key(k).encode()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// `staking_account` from a state view.
pub fn account_json(
    view: &dyn StateView,
    a: &Address,
    height: u64,
) -> Result<StakingAccountJson, ChainError> {
    let s = staking::account_staking(view, a)?;
    Ok(StakingAccountJson {
        address: a.encode(),
        height,
        staked: Aer(s.staked),
        staked_height: s.staked_height,
        unstaking: s
            .unstaking
            .iter()
            .map(|u| UnstakingJson {
                amount: Aer(u.amount),
                unlock_height: u.unlock_height,
            })
            .collect(),
        ballot: s.ballot.iter().map(addr_of).collect(),
        candidate: s.candidate.map(|r| RegistrationJson {
            p2p_addr: non_empty(r.p2p_addr),
            registered_height: r.height,
        }),
    })
}

fn params_json(g: &staking::GovParams) -> GovParamsJson {
    GovParamsJson {
        bp_count: g.bp_count as u64,
        max_votes: g.max_votes as u64,
        min_stake: Aer(g.min_stake),
        unstake_lock_blocks: g.unstake_lock_blocks,
    }
}

/// `dpos_candidates` from a state view.
pub fn candidates_json(
    view: &dyn StateView,
    d: &DposGenesis,
    height: u64,
) -> Result<DposCandidatesJson, ChainError> {
    let g = staking::gov_params(view, d)?;
    let list = staking::candidates(view, d)?;
    Ok(DposCandidatesJson {
        height,
        params: params_json(&g),
        candidates: list
            .into_iter()
            .enumerate()
            .map(|(i, c)| CandidateJson {
                rank: crate::node::count32(i).saturating_add(1),
                address: c.address.encode(),
                stake: Aer(c.stake),
                tally: Aer(c.tally),
                p2p_addr: non_empty(c.registration.p2p_addr),
                registered_height: c.registration.height,
                eligible: c.eligible,
                excluded: c.excluded,
            })
            .collect(),
    })
}

/// `dpos_governance` from a state view.
pub fn governance_json(
    view: &dyn StateView,
    d: &DposGenesis,
    height: u64,
) -> Result<GovernanceJson, ChainError> {
    let schedule = aergo_chain::rounds::load_schedule(view)?;
    let gv = staking::governance(view, d, schedule.as_ref())?;
    Ok(GovernanceJson {
        height,
        params: params_json(&gv.params),
        pending: gv
            .pending
            .iter()
            .map(|v| GovVoteJson {
                param: v.param.name().to_string(),
                value: v.value.to_string(),
                voters: v.voters.iter().map(addr_of).collect(),
            })
            .collect(),
        schedule_size: gv.schedule_size as u64,
        quorum: gv.quorum as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_chain::state::{account_key, Account, MemState, WriteSet};
    use aergo_types::genesis::{Engine, GenesisAccount, GenesisBp};
    use aergo_types::{Genesis, Keypair, TOTAL_SUPPLY};

    #[test]
    fn views_render_genesis_staking() {
        let k = Keypair::from_seed(&[3; 32]);
        let a = Address::from_public_key(&k.public());
        let mut g = Genesis::dev();
        g.consensus.engine = Engine::Dpos;
        g.balances = vec![GenesisAccount {
            address: a,
            balance: Aer(TOTAL_SUPPLY),
        }];
        g.consensus.dpos = Some(DposGenesis {
            round_slots: 10,
            bp_count: 1,
            max_votes: 3,
            min_stake: Aer(10),
            unstake_lock_blocks: 5,
            bps: vec![GenesisBp {
                address: a,
                stake: Aer(100),
                p2p_addr: Some("/ip4/127.0.0.1/tcp/7846".into()),
            }],
        });
        let mut w = WriteSet::new();
        w.insert(
            account_key(&a),
            Some(Account::new(TOTAL_SUPPLY, 0).encode()),
        );
        staking::genesis_writes(&g, &mut w).unwrap();
        let s = MemState(w.into_iter().filter_map(|(k, v)| Some((k, v?))).collect());
        let d = g.consensus.dpos.as_ref().unwrap();
        let acct = account_json(&s, &a, 0).unwrap();
        assert_eq!(acct.staked, Aer(100));
        assert_eq!(acct.ballot, vec![a.encode()]);
        assert_eq!(
            acct.candidate.unwrap().p2p_addr.as_deref(),
            Some("/ip4/127.0.0.1/tcp/7846")
        );
        let c = candidates_json(&s, d, 0).unwrap();
        assert_eq!(c.candidates.len(), 1);
        assert_eq!((c.candidates[0].rank, c.candidates[0].tally), (1, Aer(100)));
        assert_eq!(c.params.min_stake, Aer(10));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["candidates"][0]["tally"], "100");
        let gv = governance_json(&s, d, 0).unwrap();
        assert!(gv.pending.is_empty());
        assert_eq!((gv.schedule_size, gv.quorum), (0, 1));
    }
}
