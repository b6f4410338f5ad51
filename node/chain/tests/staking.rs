//! Staking, voting, registration and governance as system transactions, end to end through
//! `exec` on an in-memory state: genesis writes, every kind's success and failure, the
//! unstake lock, election inputs, governance quorum, refusal on solo chains, determinism.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::cast_possible_truncation)] // small test keys and indices

use aergo_chain::dpos::Schedule;
use aergo_chain::exec::{
    check_stateless, check_stateless_with, execute_block, execute_tx, BlockCtx, DposCtx,
};
use aergo_chain::rounds;
use aergo_chain::staking::{self, GovParam};
use aergo_chain::state::{account_key, Account, MemState, Overlay, StateView, WriteSet};
use aergo_chain::ChainError;
use aergo_types::block::ReceiptStatus;
use aergo_types::evidence::Evidence;
use aergo_types::genesis::{DposGenesis, GenesisAccount, GenesisBp};
use aergo_types::preconf::Preconfirmation;
use aergo_types::Hash;
use aergo_types::{Address, Aer, Genesis, Keypair, PublicKey, SignedTx, Tx, TxKind, TOTAL_SUPPLY};
use std::sync::Arc;

const BP_BALANCE: u128 = 1_000_000;
const BP_STAKE: u128 = 5_000;
const MIN_STAKE: u128 = 1_000;
const LOCK: u64 = 10;

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i; 32])
}
fn addr(i: u8) -> Address {
    Address::from_public_key(&key(i).public())
}
fn pk(i: u8) -> PublicKey {
    key(i).public()
}

/// Keys 1..=4 are genesis BPs; 10 is a rich account; 11, 12 hold a plain balance.
fn genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.consensus.engine = aergo_types::genesis::Engine::Dpos;
    let mut balances: Vec<GenesisAccount> = (1..=4)
        .chain([11, 12])
        .map(|i| GenesisAccount {
            address: addr(i),
            balance: Aer(BP_BALANCE),
        })
        .collect();
    balances.push(GenesisAccount {
        address: addr(10),
        balance: Aer(TOTAL_SUPPLY - 6 * BP_BALANCE),
    });
    g.balances = balances;
    g.gas.min_price = Aer(1);
    g.consensus.dpos = Some(DposGenesis {
        round_slots: 12,
        bp_count: 4,
        max_votes: 2,
        min_stake: Aer(MIN_STAKE),
        unstake_lock_blocks: LOCK,
        bps: (1..=4)
            .map(|i| GenesisBp {
                address: addr(i),
                stake: Aer(BP_STAKE),
                p2p_addr: (i == 1).then(|| "/ip4/10.0.0.1/tcp/7846".to_string()),
            })
            .collect(),
    });
    g.validate().unwrap();
    g
}

fn apply(s: &mut MemState, w: &WriteSet) {
    for (k, v) in w {
        match v {
            Some(v) => s.0.insert(k.clone(), v.clone()),
            None => s.0.remove(k),
        };
    }
}

/// The genesis state as the chain builds it: balances, staking, then the round-0 schedule.
fn genesis_state(g: &Genesis) -> MemState {
    let mut w = WriteSet::new();
    for a in &g.balances {
        w.insert(
            account_key(&a.address),
            Some(Account::new(a.balance.0, 0).encode()),
        );
    }
    staking::genesis_writes(g, &mut w).unwrap();
    let mut s = MemState::default();
    apply(&mut s, &w);
    let d = g.consensus.dpos.as_ref().unwrap();
    let mut w2 = WriteSet::new();
    rounds::genesis_writes(&s, d, &mut w2).unwrap();
    apply(&mut s, &w2);
    s
}

/// The context of a block at `height` on top of `s`: the round's schedule is the one in
/// state (what the chain's begin-block hands execution).
fn ctx(s: &dyn StateView, g: &Genesis, height: u64) -> BlockCtx {
    let schedule = rounds::load_schedule(s).unwrap().unwrap();
    BlockCtx {
        height,
        timestamp_ms: 0,
        producer: addr(1),
        chain_id: g.chain_id(),
        gas: g.gas.clone(),
        dpos: g.consensus.dpos.clone().map(|d| DposCtx {
            genesis: Arc::new(d),
            schedule,
        }),
        limits: aergo_chain::exec::GasLimits::from_genesis(&g.gas),
        role: aergo_chain::exec::ChainRole::Root { repo_create_fee: 0 },
        access: None,
        parent: Hash::ZERO,
        merge: None,
        sql_engine: aergo_sql::EngineVersion::V1,
    }
}

fn sys(g: &Genesis, i: u8, nonce: u64, kind: TxKind, amount: u128, payload: &str) -> SignedTx {
    Tx {
        kind,
        nonce,
        from: pk(i),
        to: None,
        amount,
        payload: payload.as_bytes().to_vec(),
        gas_limit: 100_000,
        gas_price: 1,
        chain_id: g.chain_id(),
    }
    .sign(&key(i))
}

fn unstake(amount: u128) -> String {
    format!(r#"{{"amount":"{amount}"}}"#)
}
fn vote(cands: &[u8]) -> String {
    let list: Vec<String> = cands.iter().map(|i| addr(*i).encode()).collect();
    serde_json::json!({ "candidates": list }).to_string()
}
fn gov(param: &str, value: u128) -> String {
    format!(r#"{{"param":"{param}","value":"{value}"}}"#)
}

/// Runs one transaction at `height` and applies its writes; returns the receipt status and fee.
fn run(s: &mut MemState, g: &Genesis, height: u64, tx: &SignedTx) -> (ReceiptStatus, u128) {
    let (r, w) = execute_tx(s, tx, &ctx(s, g, height)).unwrap();
    apply(s, &w);
    (r.status, r.fee)
}

fn ok(s: &mut MemState, g: &Genesis, height: u64, tx: &SignedTx) -> u128 {
    let (st, fee) = run(s, g, height, tx);
    assert_eq!(st, ReceiptStatus::Ok, "{:?} failed", tx.tx.kind);
    fee
}

/// The transaction fails with a receipt whose reason contains `want`, and changes nothing
/// but the sender's nonce and balance (by the fee).
fn fails(s: &mut MemState, g: &Genesis, height: u64, tx: &SignedTx, want: &str) {
    let from = tx.tx.sender();
    let before = s.account(&from).unwrap();
    let (r, w) = execute_tx(s, tx, &ctx(s, g, height)).unwrap();
    match &r.status {
        ReceiptStatus::Failed(m) => assert!(m.contains(want), "`{m}` lacks `{want}`"),
        ReceiptStatus::Ok => panic!("{:?} succeeded; expected `{want}`", tx.tx.kind),
    }
    let keys: Vec<&Vec<u8>> = w.keys().collect();
    assert_eq!(
        keys,
        vec![&account_key(&from)],
        "writes beyond the sender's account"
    );
    apply(s, &w);
    assert_eq!(
        s.account(&from).unwrap(),
        Account::new(before.balance - r.fee, before.nonce + 1)
    );
}

fn refused(s: &MemState, g: &Genesis, height: u64, tx: &SignedTx, want: &str) {
    match execute_tx(s, tx, &ctx(s, g, height)) {
        Err(ChainError::InvalidTx { reason, .. }) => {
            assert!(reason.contains(want), "`{reason}` lacks `{want}`")
        }
        other => panic!("expected a refusal with `{want}`, got {other:?}"),
    }
}

fn balance(s: &MemState, i: u8) -> u128 {
    s.account(&addr(i)).unwrap().balance
}
fn staked(s: &MemState, i: u8) -> u128 {
    staking::stake_of(s, &addr(i)).unwrap().amount
}

#[test]
fn genesis_moves_stake_registers_and_self_votes() {
    let g = genesis();
    let s = genesis_state(&g);
    for i in 1..=4 {
        assert_eq!(balance(&s, i), BP_BALANCE - BP_STAKE);
        let a = staking::account_staking(&s, &addr(i)).unwrap();
        assert_eq!(a.staked, BP_STAKE);
        assert_eq!(a.staked_height, 0);
        assert_eq!(a.ballot, vec![pk(i)]);
        let reg = a.candidate.unwrap();
        assert_eq!(reg.height, 0);
        let want = if i == 1 { "/ip4/10.0.0.1/tcp/7846" } else { "" };
        assert_eq!(reg.p2p_addr, want);
        assert!(a.unstaking.is_empty());
    }
    assert_eq!(balance(&s, 11), BP_BALANCE);
    assert_eq!(staked(&s, 11), 0);
    // The total supply is conserved: balances + stakes.
    let total: u128 = [1, 2, 3, 4, 10, 11, 12]
        .iter()
        .map(|i| balance(&s, *i) + staked(&s, *i))
        .sum();
    assert_eq!(total, TOTAL_SUPPLY);
    let inputs = staking::election_inputs(&s).unwrap();
    assert_eq!(inputs.candidates, (1..=4).map(pk).collect());
    assert_eq!(inputs.stakes.len(), 4);
    assert!(inputs.stakes.values().all(|v| *v == BP_STAKE));
    assert_eq!(inputs.votes[&addr(2)], vec![pk(2)]);
    let d = g.consensus.dpos.as_ref().unwrap();
    let p = staking::gov_params(&s, d).unwrap();
    assert_eq!(
        (p.bp_count, p.max_votes, p.min_stake, p.unstake_lock_blocks),
        (4, 2, MIN_STAKE, LOCK)
    );
    let schedule = rounds::load_schedule(&s).unwrap().unwrap();
    assert_eq!(schedule.members(), (1..=4).map(pk).collect());
    // A solo genesis writes nothing.
    let mut w = WriteSet::new();
    staking::genesis_writes(&Genesis::dev(), &mut w).unwrap();
    assert!(w.is_empty());
}

#[test]
fn stake_moves_balance_to_stake() {
    let g = genesis();
    let mut s = genesis_state(&g);
    let fee = ok(&mut s, &g, 3, &sys(&g, 11, 0, TxKind::Stake, 700, ""));
    assert_eq!(balance(&s, 11), BP_BALANCE - 700 - fee);
    let rec = staking::stake_of(&s, &addr(11)).unwrap();
    assert_eq!((rec.amount, rec.height), (700, 3));
    let fee2 = ok(&mut s, &g, 5, &sys(&g, 11, 1, TxKind::Stake, 300, ""));
    assert_eq!(balance(&s, 11), BP_BALANCE - 1000 - fee - fee2);
    let rec = staking::stake_of(&s, &addr(11)).unwrap();
    assert_eq!((rec.amount, rec.height), (1000, 5));
    // Stateless refusals: nothing is included.
    refused(&s, &g, 6, &sys(&g, 11, 2, TxKind::Stake, 0, ""), "positive");
    refused(
        &s,
        &g,
        6,
        &sys(&g, 11, 2, TxKind::Stake, 1, "x"),
        "no payload",
    );
    let mut to = sys(&g, 11, 2, TxKind::Stake, 1, "").tx;
    to.to = Some(addr(12));
    refused(&s, &g, 6, &to.sign(&key(11)), "have no recipient");
    // More than the balance cannot be included at all (the balance check).
    refused(
        &s,
        &g,
        6,
        &sys(&g, 11, 2, TxKind::Stake, BP_BALANCE, ""),
        "balance",
    );
}

#[test]
fn unstake_locks_then_releases_at_exactly_the_unlock_height() {
    let g = genesis();
    let mut s = genesis_state(&g);
    ok(&mut s, &g, 1, &sys(&g, 11, 0, TxKind::Stake, 1000, ""));
    let bal = balance(&s, 11);
    let fee = ok(
        &mut s,
        &g,
        4,
        &sys(&g, 11, 1, TxKind::Unstake, 0, &unstake(400)),
    );
    assert_eq!(balance(&s, 11), bal - fee);
    assert_eq!(staked(&s, 11), 600);
    // A second unstake in the same block merges into the same entry.
    let fee2 = ok(
        &mut s,
        &g,
        4,
        &sys(&g, 11, 2, TxKind::Unstake, 0, &unstake(100)),
    );
    let a = staking::account_staking(&s, &addr(11)).unwrap();
    assert_eq!(
        a.unstaking,
        vec![staking::Unstaking {
            unlock_height: 4 + LOCK,
            amount: 500
        }]
    );
    let bal = bal - fee - fee2;
    // One block early: nothing.
    let mut o = Overlay::new(&s);
    staking::begin_block(&mut o, 4 + LOCK - 1).unwrap();
    assert!(o.writes.is_empty());
    // At the unlock height: back to the balance, both records gone.
    let mut o = Overlay::new(&s);
    staking::begin_block(&mut o, 4 + LOCK).unwrap();
    let w = o.writes;
    assert_eq!(w.len(), 3, "account + entry + index");
    apply(&mut s, &w);
    assert_eq!(balance(&s, 11), bal + 500);
    assert_eq!(staked(&s, 11), 500);
    assert!(staking::account_staking(&s, &addr(11))
        .unwrap()
        .unstaking
        .is_empty());
    // Nothing left to release later.
    let mut o = Overlay::new(&s);
    staking::begin_block(&mut o, u64::MAX).unwrap();
    assert!(o.writes.is_empty());
    // Unstaking everything deletes the stake record.
    ok(
        &mut s,
        &g,
        20,
        &sys(&g, 11, 3, TxKind::Unstake, 0, &unstake(500)),
    );
    assert_eq!(s.get(&staking::stake_key(&addr(11))).unwrap(), None);
}

#[test]
fn begin_block_releases_entries_of_several_accounts_and_heights() {
    let g = genesis();
    let mut s = genesis_state(&g);
    ok(&mut s, &g, 1, &sys(&g, 11, 0, TxKind::Stake, 100, ""));
    ok(&mut s, &g, 1, &sys(&g, 12, 0, TxKind::Stake, 100, ""));
    ok(
        &mut s,
        &g,
        2,
        &sys(&g, 11, 1, TxKind::Unstake, 0, &unstake(10)),
    );
    ok(
        &mut s,
        &g,
        3,
        &sys(&g, 12, 1, TxKind::Unstake, 0, &unstake(20)),
    );
    ok(
        &mut s,
        &g,
        5,
        &sys(&g, 11, 2, TxKind::Unstake, 0, &unstake(30)),
    );
    let (b11, b12) = (balance(&s, 11), balance(&s, 12));
    // A late block (heights skipped) releases everything due up to it, nothing later.
    let mut o = Overlay::new(&s);
    staking::begin_block(&mut o, 3 + LOCK).unwrap();
    let w = o.writes;
    apply(&mut s, &w);
    assert_eq!(balance(&s, 11), b11 + 10);
    assert_eq!(balance(&s, 12), b12 + 20);
    let left = staking::account_staking(&s, &addr(11)).unwrap().unstaking;
    assert_eq!(
        left,
        vec![staking::Unstaking {
            unlock_height: 5 + LOCK,
            amount: 30
        }]
    );
}

#[test]
fn unstake_failures_change_nothing_but_nonce_and_fee() {
    let g = genesis();
    let mut s = genesis_state(&g);
    fails(
        &mut s,
        &g,
        1,
        &sys(&g, 11, 0, TxKind::Unstake, 0, &unstake(1)),
        "has 0 AERGO staked",
    );
    // A registered candidate keeps min_stake staked.
    fails(
        &mut s,
        &g,
        1,
        &sys(&g, 2, 0, TxKind::Unstake, 0, &unstake(BP_STAKE)),
        "unstake at most 0.000000000000004 AERGO",
    );
    fails(
        &mut s,
        &g,
        1,
        &sys(&g, 2, 1, TxKind::Unstake, 0, &unstake(BP_STAKE + 1)),
        "staked",
    );
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 2, 2, TxKind::Unstake, 0, &unstake(BP_STAKE - MIN_STAKE)),
    );
    fails(
        &mut s,
        &g,
        1,
        &sys(&g, 2, 3, TxKind::Unstake, 0, &unstake(1)),
        "unregister first",
    );
    // After unregistering, everything may go.
    ok(
        &mut s,
        &g,
        2,
        &sys(&g, 2, 4, TxKind::RegisterBp, 0, r#"{"unregister":true}"#),
    );
    ok(
        &mut s,
        &g,
        2,
        &sys(&g, 2, 5, TxKind::Unstake, 0, &unstake(MIN_STAKE)),
    );
    assert_eq!(staked(&s, 2), 0);
    // Stateless refusals.
    refused(
        &s,
        &g,
        3,
        &sys(&g, 2, 6, TxKind::Unstake, 5, &unstake(1)),
        "amount must be 0",
    );
    refused(
        &s,
        &g,
        3,
        &sys(&g, 2, 6, TxKind::Unstake, 0, r#"{"amount":1}"#),
        "payload",
    );
    refused(
        &s,
        &g,
        3,
        &sys(&g, 2, 6, TxKind::Unstake, 0, "{}"),
        "payload",
    );
}

#[test]
fn vote_replaces_the_ballot_with_checks() {
    let g = genesis();
    let mut s = genesis_state(&g);
    ok(&mut s, &g, 1, &sys(&g, 11, 0, TxKind::Stake, 50, ""));
    ok(
        &mut s,
        &g,
        2,
        &sys(&g, 11, 1, TxKind::Vote, 0, &vote(&[3, 1])),
    );
    assert_eq!(
        staking::account_staking(&s, &addr(11)).unwrap().ballot,
        vec![pk(3), pk(1)]
    );
    let inputs = staking::election_inputs(&s).unwrap();
    assert_eq!(inputs.votes[&addr(11)], vec![pk(3), pk(1)]);
    assert_eq!(inputs.stakes[&addr(11)], 50);
    // Replacing.
    ok(&mut s, &g, 3, &sys(&g, 11, 2, TxKind::Vote, 0, &vote(&[2])));
    assert_eq!(
        staking::account_staking(&s, &addr(11)).unwrap().ballot,
        vec![pk(2)]
    );
    // Failures.
    fails(
        &mut s,
        &g,
        4,
        &sys(&g, 11, 3, TxKind::Vote, 0, &vote(&[12])),
        "not a registered",
    );
    fails(
        &mut s,
        &g,
        4,
        &sys(&g, 11, 4, TxKind::Vote, 0, &vote(&[1, 2, 3])),
        "max_votes = 2",
    );
    fails(
        &mut s,
        &g,
        4,
        &sys(&g, 12, 0, TxKind::Vote, 0, &vote(&[1])),
        "no stake",
    );
    refused(
        &s,
        &g,
        4,
        &sys(&g, 11, 5, TxKind::Vote, 0, &vote(&[1, 1])),
        "twice",
    );
    refused(
        &s,
        &g,
        4,
        &sys(&g, 11, 5, TxKind::Vote, 1, &vote(&[1])),
        "amount must be 0",
    );
    // Clearing.
    ok(&mut s, &g, 5, &sys(&g, 11, 5, TxKind::Vote, 0, &vote(&[])));
    assert_eq!(s.get(&staking::ballot_key(&addr(11))).unwrap(), None);
    assert!(!staking::election_inputs(&s)
        .unwrap()
        .votes
        .contains_key(&addr(11)));
}

#[test]
fn register_update_and_unregister() {
    let g = genesis();
    let mut s = genesis_state(&g);
    fails(
        &mut s,
        &g,
        1,
        &sys(&g, 11, 0, TxKind::RegisterBp, 0, ""),
        "min_stake = 0.000000000000001 AERGO",
    );
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 11, 1, TxKind::Stake, MIN_STAKE - 1, ""),
    );
    fails(
        &mut s,
        &g,
        2,
        &sys(&g, 11, 2, TxKind::RegisterBp, 0, "{}"),
        "has 0.000000000000000999 AERGO",
    );
    ok(&mut s, &g, 2, &sys(&g, 11, 3, TxKind::Stake, 1, ""));
    let p = r#"{"p2p_addr":"/ip4/10.0.0.11/tcp/7846"}"#;
    ok(&mut s, &g, 3, &sys(&g, 11, 4, TxKind::RegisterBp, 0, p));
    let reg = staking::registration(&s, &addr(11)).unwrap().unwrap();
    assert_eq!(
        (reg.p2p_addr.as_str(), reg.height),
        ("/ip4/10.0.0.11/tcp/7846", 3)
    );
    assert!(staking::election_inputs(&s)
        .unwrap()
        .candidates
        .contains(&pk(11)));
    // Re-registering replaces the address and keeps the height.
    let p = r#"{"p2p_addr":"/dns4/bp11.example/tcp/7846"}"#;
    ok(&mut s, &g, 7, &sys(&g, 11, 5, TxKind::RegisterBp, 0, p));
    let reg = staking::registration(&s, &addr(11)).unwrap().unwrap();
    assert_eq!(
        (reg.p2p_addr.as_str(), reg.height),
        ("/dns4/bp11.example/tcp/7846", 3)
    );
    // Unregistering.
    ok(
        &mut s,
        &g,
        8,
        &sys(&g, 11, 6, TxKind::RegisterBp, 0, r#"{"unregister":true}"#),
    );
    assert_eq!(staking::registration(&s, &addr(11)).unwrap(), None);
    fails(
        &mut s,
        &g,
        9,
        &sys(&g, 11, 7, TxKind::RegisterBp, 0, r#"{"unregister":true}"#),
        "not a registered",
    );
    refused(
        &s,
        &g,
        9,
        &sys(
            &g,
            11,
            8,
            TxKind::RegisterBp,
            0,
            r#"{"p2p_addr":"no slash"}"#,
        ),
        "multiaddr",
    );
    refused(
        &s,
        &g,
        9,
        &sys(&g, 11, 8, TxKind::RegisterBp, 0, r#"{"p2p":"/x"}"#),
        "unknown field",
    );
}

/// Writes a schedule of BPs `members` (active) as the current round's.
fn set_schedule(s: &mut MemState, members: &[u8]) {
    let sch = Schedule::new(3, members.iter().map(|i| pk(*i)).collect());
    s.0.insert(rounds::SCHEDULE_KEY.to_vec(), rounds::encode_schedule(&sch));
}

#[test]
fn governance_takes_effect_at_quorum() {
    let g = genesis();
    let d = g.consensus.dpos.clone().unwrap();
    let mut s = genesis_state(&g);
    // Four BPs: quorum 3.
    set_schedule(&mut s, &[1, 2, 3, 4]);
    fails(
        &mut s,
        &g,
        1,
        &sys(&g, 11, 0, TxKind::Governance, 0, &gov("bp_count", 7)),
        "only block producers",
    );
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 1, 0, TxKind::Governance, 0, &gov("bp_count", 7)),
    );
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 2, 0, TxKind::Governance, 0, &gov("bp_count", 9)),
    );
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 3, 0, TxKind::Governance, 0, &gov("bp_count", 7)),
    );
    // Another parameter's votes do not count for this one.
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 4, 0, TxKind::Governance, 0, &gov("max_votes", 7)),
    );
    assert_eq!(staking::gov_params(&s, &d).unwrap().bp_count, 4);
    let gv = staking::governance(&s, &d, rounds::load_schedule(&s).unwrap().as_ref()).unwrap();
    assert_eq!((gv.schedule_size, gv.quorum), (4, 3));
    assert_eq!(gv.pending.len(), 3);
    assert_eq!(gv.pending[0].param, GovParam::BpCount);
    assert_eq!((gv.pending[0].value, gv.pending[0].voters.len()), (7, 2));
    // BP 2 changes its mind: its vote is replaced, and the third agreeing vote decides.
    ok(
        &mut s,
        &g,
        2,
        &sys(&g, 2, 1, TxKind::Governance, 0, &gov("bp_count", 7)),
    );
    assert_eq!(staking::gov_params(&s, &d).unwrap().bp_count, 7);
    let gv = staking::governance(&s, &d, rounds::load_schedule(&s).unwrap().as_ref()).unwrap();
    assert_eq!(gv.pending.len(), 1, "the bp_count votes are cleared");
    assert_eq!(gv.pending[0].param, GovParam::MaxVotes);
    // Votes of BPs no longer scheduled do not count.
    ok(
        &mut s,
        &g,
        3,
        &sys(&g, 1, 1, TxKind::Governance, 0, &gov("min_stake", 2000)),
    );
    ok(
        &mut s,
        &g,
        3,
        &sys(&g, 2, 2, TxKind::Governance, 0, &gov("min_stake", 2000)),
    );
    set_schedule(&mut s, &[2, 3, 4]); // quorum 3 of 3; BP 1's vote is stale
    ok(
        &mut s,
        &g,
        4,
        &sys(&g, 3, 1, TxKind::Governance, 0, &gov("min_stake", 2000)),
    );
    assert_eq!(staking::gov_params(&s, &d).unwrap().min_stake, MIN_STAKE);
    ok(
        &mut s,
        &g,
        4,
        &sys(&g, 4, 1, TxKind::Governance, 0, &gov("min_stake", 2000)),
    );
    assert_eq!(staking::gov_params(&s, &d).unwrap().min_stake, 2000);
    // Bounds are checked at admission.
    refused(
        &s,
        &g,
        5,
        &sys(&g, 1, 2, TxKind::Governance, 0, &gov("bp_count", 0)),
        "between",
    );
    refused(
        &s,
        &g,
        5,
        &sys(&g, 1, 2, TxKind::Governance, 0, &gov("round_slots", 5)),
        "fixed in genesis",
    );
}

#[test]
fn governance_changes_apply_to_later_transactions_and_elections() {
    let g = genesis();
    let d = g.consensus.dpos.clone().unwrap();
    let mut s = genesis_state(&g);
    set_schedule(&mut s, &[1]);
    // One BP: quorum 1, so each vote decides at once.
    ok(
        &mut s,
        &g,
        1,
        &sys(
            &g,
            1,
            0,
            TxKind::Governance,
            0,
            &gov("unstake_lock_blocks", 3),
        ),
    );
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 1, 1, TxKind::Governance, 0, &gov("max_votes", 1)),
    );
    ok(&mut s, &g, 2, &sys(&g, 11, 0, TxKind::Stake, 100, ""));
    ok(
        &mut s,
        &g,
        2,
        &sys(&g, 11, 1, TxKind::Unstake, 0, &unstake(10)),
    );
    assert_eq!(
        staking::account_staking(&s, &addr(11)).unwrap().unstaking[0].unlock_height,
        5
    );
    fails(
        &mut s,
        &g,
        3,
        &sys(&g, 11, 2, TxKind::Vote, 0, &vote(&[1, 2])),
        "max_votes = 1",
    );
    // Raising min_stake above the BPs' stake drops them from the election inputs.
    ok(
        &mut s,
        &g,
        4,
        &sys(
            &g,
            1,
            2,
            TxKind::Governance,
            0,
            &gov("min_stake", BP_STAKE + 1),
        ),
    );
    assert!(staking::election_inputs(&s).unwrap().candidates.is_empty());
    let list = staking::candidates(&s, &d).unwrap();
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|c| !c.eligible));
    ok(&mut s, &g, 5, &sys(&g, 3, 0, TxKind::Stake, 1, ""));
    assert_eq!(
        staking::election_inputs(&s).unwrap().candidates,
        [pk(3)].into()
    );
}

#[test]
fn candidates_are_ranked_by_tally_then_key() {
    let g = genesis();
    let d = g.consensus.dpos.clone().unwrap();
    let mut s = genesis_state(&g);
    ok(&mut s, &g, 1, &sys(&g, 11, 0, TxKind::Stake, 777, ""));
    ok(
        &mut s,
        &g,
        1,
        &sys(&g, 11, 1, TxKind::Vote, 0, &vote(&[4, 2])),
    );
    let list = staking::candidates(&s, &d).unwrap();
    let tallies: Vec<(Address, u128)> = list.iter().map(|c| (c.address, c.tally)).collect();
    let mut rest: Vec<Address> = vec![addr(1), addr(3)];
    rest.sort_by_key(|a| a.public_key().unwrap());
    let mut top: Vec<Address> = vec![addr(2), addr(4)];
    top.sort_by_key(|a| a.public_key().unwrap());
    assert_eq!(
        tallies,
        vec![
            (top[0], BP_STAKE + 777),
            (top[1], BP_STAKE + 777),
            (rest[0], BP_STAKE),
            (rest[1], BP_STAKE),
        ]
    );
    assert!(list.iter().all(|c| c.eligible && c.stake == BP_STAKE));
    let one = list.iter().find(|c| c.address == addr(1)).unwrap();
    assert_eq!(one.registration.p2p_addr, "/ip4/10.0.0.1/tcp/7846");
}

#[test]
fn solo_chains_refuse_staking_kinds() {
    let g = genesis();
    let s = genesis_state(&g);
    let mut c = ctx(&s, &g, 1);
    c.dpos = None;
    for (kind, amount, payload) in [
        (TxKind::Stake, 1, String::new()),
        (TxKind::Unstake, 0, unstake(1)),
        (TxKind::Vote, 0, vote(&[1])),
        (TxKind::RegisterBp, 0, String::new()),
        (TxKind::Governance, 0, gov("bp_count", 3)),
    ] {
        let tx = sys(&g, 1, 0, kind, amount, &payload);
        match execute_tx(&s, &tx, &c) {
            Err(ChainError::InvalidTx { reason, .. }) => {
                assert!(reason.contains("not enabled"), "{reason}")
            }
            other => panic!("{kind:?} on a solo chain: {other:?}"),
        }
        let e = check_stateless(&tx, &g.chain_id(), &g.gas).unwrap_err();
        assert!(e.contains("DPoS"), "{e}");
        check_stateless_with(&tx, &g.chain_id(), &g.gas, true).unwrap();
    }
}

#[test]
fn same_transactions_give_the_same_write_set_bytes() {
    let g = genesis();
    let txs = vec![
        sys(&g, 11, 0, TxKind::Stake, 2000, ""),
        sys(
            &g,
            11,
            1,
            TxKind::RegisterBp,
            0,
            r#"{"p2p_addr":"/ip4/1.2.3.4/tcp/1"}"#,
        ),
        sys(&g, 12, 0, TxKind::Stake, 10, ""),
        sys(&g, 12, 1, TxKind::Vote, 0, &vote(&[11, 3])),
        sys(&g, 11, 2, TxKind::Unstake, 0, &unstake(500)),
        sys(&g, 1, 0, TxKind::Governance, 0, &gov("bp_count", 5)),
        sys(&g, 12, 2, TxKind::Vote, 0, &vote(&[99])), // fails: not a candidate
    ];
    let flatten = |w: &WriteSet| -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in w {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            match v {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                None => out.push(0),
            }
        }
        out
    };
    let mut runs = Vec::new();
    for _ in 0..3 {
        let base = genesis_state(&g);
        let ex = execute_block(&base, &txs, &ctx(&base, &g, 7)).unwrap();
        assert_eq!(ex.receipts.len(), txs.len());
        assert!(matches!(
            ex.receipts.last().unwrap().status,
            ReceiptStatus::Failed(_)
        ));
        runs.push((flatten(&ex.writes), ex.fees, ex.gas_used));
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1], runs[2]);
    // The state the block leads to has what the transactions asked for.
    let mut s = genesis_state(&g);
    let ex = execute_block(&s, &txs, &ctx(&s, &g, 7)).unwrap();
    apply(&mut s, &ex.writes);
    assert_eq!(staked(&s, 11), 1500);
    assert!(staking::registration(&s, &addr(11)).unwrap().is_some());
    assert_eq!(
        staking::account_staking(&s, &addr(12)).unwrap().ballot,
        vec![pk(11), pk(3)]
    );
}

#[test]
fn governance_sets_the_gas_limits_within_bounds() {
    let g = genesis();
    let mut s = genesis_state(&g);
    set_schedule(&mut s, &[1, 2, 3, 4]);
    // Nothing recorded at genesis: the defaults (the genesis sets no gas limits).
    assert_eq!(
        staking::gas_limits(&s, &g.gas).unwrap(),
        aergo_chain::exec::GasLimits::default()
    );
    assert!(s
        .0
        .keys()
        .all(|k| !k.starts_with(&[staking::PREFIX, 0x06, GovParam::TxGasCap as u8])));
    for (i, nonce) in [(1u8, 0u64), (2, 0)] {
        ok(
            &mut s,
            &g,
            1,
            &sys(
                &g,
                i,
                nonce,
                TxKind::Governance,
                0,
                &gov("block_gas_limit", 20_000_000),
            ),
        );
    }
    assert_eq!(
        staking::gas_limits(&s, &g.gas).unwrap().block_gas_limit,
        aergo_chain::exec::DEFAULT_BLOCK_GAS_LIMIT,
        "two of four BPs are below the quorum"
    );
    ok(
        &mut s,
        &g,
        1,
        &sys(
            &g,
            3,
            0,
            TxKind::Governance,
            0,
            &gov("block_gas_limit", 20_000_000),
        ),
    );
    for (i, nonce) in [(1u8, 1u64), (2, 1), (3, 1)] {
        ok(
            &mut s,
            &g,
            2,
            &sys(
                &g,
                i,
                nonce,
                TxKind::Governance,
                0,
                &gov("tx_gas_cap", 12_000_000),
            ),
        );
    }
    let l = staking::gas_limits(&s, &g.gas).unwrap();
    assert_eq!((l.tx_gas_cap, l.block_gas_limit), (12_000_000, 20_000_000));
    // A cap voted above the block limit acts as the block limit.
    for (i, nonce) in [(1u8, 2u64), (2, 2), (3, 2)] {
        ok(
            &mut s,
            &g,
            3,
            &sys(
                &g,
                i,
                nonce,
                TxKind::Governance,
                0,
                &gov("tx_gas_cap", 30_000_000),
            ),
        );
    }
    let l = staking::gas_limits(&s, &g.gas).unwrap();
    assert_eq!((l.tx_gas_cap, l.block_gas_limit), (20_000_000, 20_000_000));
    // Bounds are checked at admission.
    refused(
        &s,
        &g,
        4,
        &sys(&g, 1, 3, TxKind::Governance, 0, &gov("tx_gas_cap", 1_000)),
        "between",
    );
    refused(
        &s,
        &g,
        4,
        &sys(
            &g,
            1,
            3,
            TxKind::Governance,
            0,
            &gov("block_gas_limit", 20_000_000_000),
        ),
        "between",
    );
}

/// Evidence (kind 8) that BP `bp` promised transaction "promised" at position 1 of its
/// block for `slot`, and signed a header for that slot whose block holds another transaction
/// there (`header_key` signs the header: a forgery when it is not `bp`).
fn broken_promise(g: &Genesis, bp: u8, header_key: u8, slot: u64) -> Evidence {
    let receipt = aergo_types::block::Receipt {
        tx_hash: Hash::of(b"promised"),
        status: ReceiptStatus::Ok,
        gas_used: 1000,
        fee: 1000,
        result: Vec::new(),
        events: Vec::new(),
    };
    let preconf = Preconfirmation::sign(
        &key(bp),
        g.chain_id(),
        slot,
        slot,
        Hash::of(b"parent"),
        1,
        Hash::of(b"prev"),
        receipt,
    );
    let leaves = vec![Hash::of(b"a"), Hash::of(b"b")];
    let mut header = aergo_types::block::Header {
        chain_id: g.chain_id(),
        height: slot,
        parent: Hash::of(b"parent"),
        timestamp_ms: 1000 * slot,
        producer: pk(bp),
        tx_root: aergo_types::hash::merkle_root(&leaves),
        receipts_root: Hash::ZERO,
        state_root: Hash::ZERO,
        consensus: slot.to_be_bytes().to_vec(),
        ext: Default::default(),
        signature: Default::default(),
    };
    header.sign(&key(header_key));
    Evidence {
        preconf,
        header,
        tx_hashes: leaves,
        receipt_hashes: Vec::new(),
    }
}

fn evidence_tx(g: &Genesis, reporter: u8, nonce: u64, e: &Evidence) -> SignedTx {
    Tx {
        kind: TxKind::Evidence,
        nonce,
        from: pk(reporter),
        to: None,
        amount: 0,
        payload: e.encode(),
        gas_limit: 100_000,
        gas_price: 1,
        chain_id: g.chain_id(),
    }
    .sign(&key(reporter))
}

/// Unstaking right before the evidence lands does not escape it: the producer's locked
/// unstaking entries lose `slash_fraction` too, and the penalty records the whole burn.
#[test]
fn evidence_slashes_stake_on_its_way_out() {
    let g = genesis();
    let mut s = genesis_state(&g);
    ok(
        &mut s,
        &g,
        5,
        &sys(&g, 4, 0, TxKind::Unstake, 0, &unstake(3_000)),
    );
    assert_eq!(staked(&s, 4), BP_STAKE - 3_000);
    ok(
        &mut s,
        &g,
        6,
        &evidence_tx(&g, 11, 0, &broken_promise(&g, 4, 4, 6)),
    );
    assert_eq!(staked(&s, 4), (BP_STAKE - 3_000) * 9 / 10);
    let a = staking::account_staking(&s, &addr(4)).unwrap();
    assert_eq!(
        a.unstaking,
        vec![staking::Unstaking {
            unlock_height: 5 + LOCK,
            amount: 3_000 * 9 / 10
        }]
    );
    assert_eq!(
        aergo_chain::evidence::penalty(&s, &pk(4), 6).unwrap(),
        Some(BP_STAKE / 10)
    );
    // What unlocks is what is left.
    let bal = balance(&s, 4);
    let mut o = Overlay::new(&s);
    staking::begin_block(&mut o, 5 + LOCK).unwrap();
    let w = o.writes;
    apply(&mut s, &w);
    assert_eq!(balance(&s, 4), bal + 2_700);
}

/// A broken promise burns `slash_fraction` (10% by default) of the producer's stake and
/// excludes it from elections, once per producer and slot; a forged piece of evidence, a
/// duplicate and evidence on a solo chain change nothing but the reporter's fee and nonce;
/// `slash_fraction` is a governance parameter with bounds.
#[test]
fn evidence_of_a_broken_promise_slashes_once_and_excludes() {
    let g = genesis();
    let mut s = genesis_state(&g);
    let stake = |s: &MemState| staking::stake_of(s, &addr(2)).unwrap().amount;
    assert!(staking::election_inputs(&s)
        .unwrap()
        .candidates
        .contains(&pk(2)));

    let e = broken_promise(&g, 2, 2, 7);
    let tx = evidence_tx(&g, 11, 0, &e);
    check_stateless_with(&tx, &g.chain_id(), &g.gas, true).unwrap();
    let (r, w) = execute_tx(&s, &tx, &ctx(&s, &g, 20)).unwrap();
    assert_eq!(r.status, ReceiptStatus::Ok);
    let text = String::from_utf8(r.result.clone()).unwrap();
    assert!(
        text.contains("slot 7") && text.contains("500 aer"),
        "{text}"
    );
    apply(&mut s, &w);
    assert_eq!(stake(&s), BP_STAKE - BP_STAKE / 10);
    assert_eq!(
        aergo_chain::evidence::penalty(&s, &pk(2), 7).unwrap(),
        Some(BP_STAKE / 10)
    );
    assert!(aergo_chain::evidence::excluded(&s, &pk(2)).unwrap());
    let inputs = staking::election_inputs(&s).unwrap();
    assert!(
        !inputs.candidates.contains(&pk(2)),
        "excluded from elections"
    );
    assert!(inputs.candidates.contains(&pk(1)));

    // The same broken promise again, from another reporter: penalised once only.
    fails(
        &mut s,
        &g,
        21,
        &evidence_tx(&g, 12, 0, &e),
        "already penalised",
    );
    assert_eq!(stake(&s), BP_STAKE - BP_STAKE / 10);
    // A forgery (the header signed by another BP) and a kept promise prove nothing: refused
    // at admission and in blocks alike, before any fee or nonce changes.
    let forged = evidence_tx(&g, 11, 1, &broken_promise(&g, 3, 4, 8));
    let e = check_stateless_with(&forged, &g.chain_id(), &g.gas, true).unwrap_err();
    assert!(e.contains("signature is not its producer's"), "{e}");
    refused(&s, &g, 22, &forged, "signature is not its producer's");
    let mut kept = broken_promise(&g, 3, 3, 9);
    kept.tx_hashes[1] = kept.preconf.tx_hash;
    kept.header.tx_root = aergo_types::hash::merkle_root(&kept.tx_hashes);
    kept.header.sign(&key(3));
    refused(
        &s,
        &g,
        23,
        &evidence_tx(&g, 11, 1, &kept),
        "keeps the promise",
    );
    assert_eq!(staking::stake_of(&s, &addr(3)).unwrap().amount, BP_STAKE);
    // Another slot's broken promise is another penalty.
    ok(
        &mut s,
        &g,
        24,
        &evidence_tx(&g, 11, 1, &broken_promise(&g, 2, 2, 11)),
    );
    assert_eq!(
        stake(&s),
        BP_STAKE - BP_STAKE / 10 - (BP_STAKE - BP_STAKE / 10) / 10
    );

    // Solo chains refuse evidence at admission; malformed payloads too.
    let e = check_stateless_with(&tx, &g.chain_id(), &g.gas, false).unwrap_err();
    assert!(e.contains("DPoS"), "{e}");
    let mut bad = tx.tx.clone();
    bad.payload.truncate(40);
    let e = check_stateless_with(&bad.sign(&key(11)), &g.chain_id(), &g.gas, true).unwrap_err();
    assert!(e.contains("malformed evidence"), "{e}");

    // slash_fraction: bounded, and its default applies until voted.
    assert_eq!(staking::slash_fraction(&s).unwrap(), 1_000);
    let over = sys(
        &g,
        1,
        0,
        TxKind::Governance,
        0,
        &gov("slash_fraction", 10_001),
    );
    let e = check_stateless_with(&over, &g.chain_id(), &g.gas, true).unwrap_err();
    assert!(e.contains("slash_fraction"), "{e}");
}
