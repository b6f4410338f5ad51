//! DPoS staking commands: `aergo stake`, `unstake`, `vote`, `bp register|unregister|list`,
//! `gov` and `staking`. Transactions are signed with the `--from` key (keystore address or
//! `dev`) and submitted like `aergo send`; by default the command waits until the
//! transaction is in a block and reports its receipt (a failed receipt is an error).
//! Payload formats are in docs/RPC.md ("Staking").

use crate::contract_cmd::Signer;
use aergo_rpc::RpcClient;
use aergo_types::{Address, Aer, TxKind};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::PathBuf;

/// How a staking transaction is signed and sent.
#[derive(clap::Args, Debug)]
pub struct TxArgs {
    /// Signer: an address in the keystore, or `dev` (the default on a dev chain).
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Do not wait for the transaction to be included; print its hash.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Nonce (default: the account's next nonce, counting pending transactions).
    #[arg(long)]
    pub(crate) nonce: Option<u64>,
    /// Gas price in aer (default: the chain's minimum).
    #[arg(long)]
    pub(crate) gas_price: Option<u128>,
}

/// Staking subcommands (flattened into `aergo`'s top level).
#[derive(clap::Subcommand, Debug)]
pub enum StakingCmd {
    /// Stake AERGO: moves AMOUNT from the balance to the stake (DPoS chains).
    Stake {
        /// Amount: `10` (AERGO), `1.5aergo` or `5000aer`.
        #[arg(allow_hyphen_values = true)]
        amount: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Unstake AERGO: AMOUNT leaves the stake and returns to the balance after the lock
    /// (`unstake_lock_blocks`). A registered BP candidate keeps at least `min_stake`.
    Unstake {
        /// Amount: `10` (AERGO), `1.5aergo` or `5000aer`.
        #[arg(allow_hyphen_values = true)]
        amount: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Vote for BP candidates: replaces the ballot (no address clears it). Your whole stake
    /// weighs on each candidate.
    Vote {
        /// Candidate addresses (at most `max_votes`).
        candidates: Vec<String>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Block producer candidacy.
    #[command(subcommand)]
    Bp(BpCmd),
    /// Governance: with PARAM and VALUE, vote as a BP of the current round; without, show
    /// the parameters in force and the pending votes.
    Gov {
        /// `bp_count`, `max_votes`, `min_stake`, `unstake_lock_blocks`, `tx_gas_cap`,
        /// `block_gas_limit` or `slash_fraction` (basis points of a convicted producer's
        /// stake burned; default 1000).
        param: Option<String>,
        /// A whole number; for `min_stake` an amount (`10`, `1.5aergo`, `5000aer`).
        value: Option<String>,
        /// Signer (required to vote): a keystore address or `dev`.
        #[arg(long)]
        from: Option<String>,
        /// Do not wait for the transaction to be included.
        #[arg(long)]
        no_wait: bool,
        /// Height to read at (showing only).
        #[arg(long)]
        at: Option<u64>,
    },
    /// An account's stake, unstaking entries, ballot and BP registration.
    Staking {
        /// Address or `dev` (default: the keystore's only account).
        address: Option<String>,
        /// Height to read at.
        #[arg(long)]
        at: Option<u64>,
    },
}

/// `aergo bp` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BpCmd {
    /// Register (or update) as a BP candidate; needs at least `min_stake` staked.
    Register {
        /// Your libp2p address, e.g. /ip4/10.0.0.2/tcp/7846/p2p/<peer id>.
        // The doc comment is clap's help text, not rustdoc: `<peer id>` is not an HTML tag.
        #[allow(rustdoc::invalid_html_tags)]
        #[arg(long)]
        p2p_addr: Option<String>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Withdraw your BP candidacy.
    Unregister {
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Registered candidates ranked by stake-weighted votes.
    List {
        /// Height to read at.
        #[arg(long)]
        at: Option<u64>,
    },
}

/// The JSON payload of a governance vote; `min_stake` takes a CLI amount.
pub fn gov_payload(param: &str, value: &str) -> Result<Vec<u8>> {
    let v = match param {
        "min_stake" => crate::human::parse_amount(value)?.0,
        "bp_count" | "max_votes" | "unstake_lock_blocks" | "tx_gas_cap" | "block_gas_limit"
        | "slash_fraction" => value
            .trim()
            .parse::<u128>()
            .map_err(|_| anyhow::anyhow!("{param} takes a whole number, not `{value}`"))?,
        other => bail!(
            "unknown parameter `{other}`: one of bp_count, max_votes, min_stake, \
             unstake_lock_blocks, tx_gas_cap, block_gas_limit, slash_fraction (block interval and round length are fixed in genesis)"
        ),
    };
    Ok(serde_json::to_vec(
        &json!({"param": param, "value": v.to_string()}),
    )?)
}

/// After a governance vote: `bp_count is now 5` once the parameter took the value, else how
/// many BPs of the round agree on it and how many must.
pub fn gov_outcome(g: &aergo_rpc::GovernanceJson, param: &str, payload: &[u8]) -> String {
    let value = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v["value"].as_str().map(str::to_string))
        .unwrap_or_default();
    let in_force = match param {
        "bp_count" => Some(g.params.bp_count.to_string()),
        "max_votes" => Some(g.params.max_votes.to_string()),
        "unstake_lock_blocks" => Some(g.params.unstake_lock_blocks.to_string()),
        "min_stake" => Some(g.params.min_stake.0.to_string()),
        _ => None,
    };
    let agree = g
        .pending
        .iter()
        .find(|p| p.param == param && p.value == value)
        .map(|p| p.voters.len());
    match (agree, in_force) {
        (Some(n), _) => format!(
            "{n} of the {} BPs agree on {param} = {value} ({} needed)",
            g.schedule_size, g.quorum
        ),
        (None, Some(now)) if now == value => format!("{param} is now {value}"),
        _ => format!("{param}: no pending vote for {value} (see `aergo gov`)"),
    }
}

/// The JSON payload of an unstake.
pub fn unstake_payload(amount: Aer) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(
        &json!({"amount": amount.0.to_string()}),
    )?)
}

/// The JSON payload of a vote.
pub fn vote_payload(candidates: &[Address]) -> Result<Vec<u8>> {
    let list: Vec<String> = candidates.iter().map(|a| a.encode()).collect();
    Ok(serde_json::to_vec(&json!({ "candidates": list }))?)
}

/// The JSON payload of a registration.
pub fn register_payload(p2p_addr: Option<&str>) -> Result<Vec<u8>> {
    Ok(match p2p_addr {
        Some(a) => serde_json::to_vec(&json!({ "p2p_addr": a }))?,
        None => b"{}".to_vec(),
    })
}

/// Signs, submits and (unless `no_wait`) waits for a staking transaction; prints the
/// outcome with `done` as the human summary. A failed receipt is an error.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    c: &RpcClient,
    json_out: bool,
    signer: Signer<'_>,
    tx: TxArgs,
    kind: TxKind,
    amount: u128,
    payload: Vec<u8>,
    done: String,
) -> Result<()> {
    let from = crate::default_from(c, tx.from.as_deref()).await?;
    let key = signer(&from)?;
    let sender = Address::from_public_key(&key.public());
    let opts = crate::TxOpts {
        nonce: tx.nonce,
        gas_price: tx.gas_price,
        gas_limit: None,
    };
    let (hash, nonce) = crate::submit(c, &key, kind, None, amount, payload, 0, opts).await?;
    let mut out = json!({"hash": hash, "from": sender.encode(), "nonce": nonce});
    if tx.no_wait {
        crate::print(json_out, &out, || format!("submitted tx {hash}"));
        return Ok(());
    }
    let r = crate::wait_for(c, &hash, crate::WaitFor::Included).await?;
    out["status"] = json!(r.status);
    out["error"] = json!(r.error);
    out["block_height"] = json!(r.block_height);
    out["fee"] = json!(r.fee.to_string());
    if r.status != "ok" {
        if json_out {
            crate::print(true, &out, String::new);
        }
        bail!(
            "transaction {hash} failed in block {}: {}",
            r.block_height,
            r.error.unwrap_or_default()
        );
    }
    crate::print(json_out, &out, || {
        format!("{done}\ntx {hash} in block {}", r.block_height)
    });
    Ok(())
}

fn default_address(keystore: Option<PathBuf>) -> Result<Address> {
    let ks = crate::wallet::Keystore::new(keystore)?;
    let list = ks.list()?;
    match list.as_slice() {
        [(a, _)] => Ok(*a),
        [] => bail!(
            "give an address: the keystore {} has no account",
            ks.dir().display()
        ),
        _ => bail!(
            "give an address: the keystore {} has {} accounts",
            ks.dir().display(),
            list.len()
        ),
    }
}

/// A warning when no node this CLI can see (the node it talks to, or a peer that proved its
/// node key) runs with `candidate` as its key: elected, such a producer misses every slot it
/// owns. `None` when one does, or when the node cannot say (an RPC error).
async fn no_node_warning(c: &RpcClient, candidate: &Address) -> Option<String> {
    let me = c.node_status().await.ok()?.node_address;
    let peers = c.peers().await.ok()?;
    let who = candidate.encode();
    if me == who
        || peers
            .iter()
            .any(|p| p.node.as_deref() == Some(who.as_str()))
    {
        return None;
    }
    Some(format!(
        "warning: no running node known here has {who}'s key (not this node, nor any of its {}          connected peers): if elected, every slot it owns is a missed slot. A producer's          account is its node's key (NODE_DIR/node.key); register from that account once the          node runs",
        peers.len()
    ))
}

fn aergo(a: Aer) -> String {
    format!("{} {}", a.to_aergo_string(), crate::human::unit())
}

/// Runs a staking command.
pub async fn run(
    cmd: StakingCmd,
    c: &RpcClient,
    json_out: bool,
    signer: Signer<'_>,
    keystore: Option<PathBuf>,
) -> Result<()> {
    match cmd {
        StakingCmd::Stake { amount, tx } => {
            let a = crate::human::parse_amount(&amount)?;
            if a.0 == 0 {
                bail!("the amount to stake must be positive");
            }
            let done = format!("staked {}", aergo(a));
            send(
                c,
                json_out,
                signer,
                tx,
                TxKind::Stake,
                a.0,
                Vec::new(),
                done,
            )
            .await
        }
        StakingCmd::Unstake { amount, tx } => {
            let a = crate::human::parse_amount(&amount)?;
            if a.0 == 0 {
                bail!("the amount to unstake must be positive");
            }
            let done = format!(
                "unstaked {}; it returns to the balance after the lock (see `aergo staking`)",
                aergo(a)
            );
            let payload = unstake_payload(a)?;
            send(c, json_out, signer, tx, TxKind::Unstake, 0, payload, done).await
        }
        StakingCmd::Vote { candidates, tx } => {
            let list = candidates
                .iter()
                .map(|s| crate::resolve_addr(s))
                .collect::<Result<Vec<_>>>()?;
            let done = if list.is_empty() {
                "ballot cleared".to_string()
            } else {
                // As the reader named them (`node5`, or the address given).
                format!("voted for {}", candidates.join(", "))
            };
            let payload = vote_payload(&list)?;
            send(c, json_out, signer, tx, TxKind::Vote, 0, payload, done).await
        }
        StakingCmd::Bp(BpCmd::Register { p2p_addr, tx }) => {
            let payload = register_payload(p2p_addr.as_deref())?;
            let from = crate::default_from(c, tx.from.as_deref()).await?;
            if let Some(w) = no_node_warning(c, &crate::resolve_addr(&from)?).await {
                eprintln!("{w}");
            }
            let done = "registered as a BP candidate".to_string();
            send(
                c,
                json_out,
                signer,
                tx,
                TxKind::RegisterBp,
                0,
                payload,
                done,
            )
            .await
        }
        StakingCmd::Bp(BpCmd::Unregister { tx }) => {
            let payload = serde_json::to_vec(&json!({"unregister": true}))?;
            let done = "BP candidacy withdrawn".to_string();
            send(
                c,
                json_out,
                signer,
                tx,
                TxKind::RegisterBp,
                0,
                payload,
                done,
            )
            .await
        }
        StakingCmd::Bp(BpCmd::List { at }) => {
            let r = c.dpos_candidates(at).await?;
            let v = serde_json::to_value(&r)?;
            crate::print(json_out, &v, || {
                let mut s = format!(
                    "candidates at height {} (bp_count {}, min_stake {})\n{:>4}  {:<52}  {:>22}  {:>22}  {:<3}  P2P",
                    r.height,
                    r.params.bp_count,
                    aergo(r.params.min_stake),
                    "RANK",
                    "ADDRESS",
                    "STAKE (AERGO)",
                    "VOTES (AERGO)",
                    "OK"
                );
                for x in &r.candidates {
                    s.push_str(&format!(
                        "\n{:>4}  {:<52}  {:>22}  {:>22}  {:<3}  {}",
                        x.rank,
                        x.address,
                        x.stake.to_aergo_string(),
                        x.tally.to_aergo_string(),
                        if x.eligible { "yes" } else { "no" },
                        x.p2p_addr.as_deref().unwrap_or("-")
                    ));
                }
                if r.candidates.is_empty() {
                    s.push_str("\n(no registered candidates)");
                }
                s
            });
            Ok(())
        }
        StakingCmd::Gov {
            param,
            value,
            from,
            no_wait,
            at,
        } => match (param, value) {
            (Some(param), Some(value)) => {
                let Some(from) = from else {
                    bail!("voting needs --from (a BP of the current round)");
                };
                let payload = gov_payload(&param, &value)?;
                let tx = TxArgs {
                    from: Some(from),
                    no_wait,
                    nonce: None,
                    gas_price: None,
                };
                let done = format!(
                    "voted {param} = {value} (it changes once a quorum of BPs agrees; see `aergo gov`)"
                );
                send(
                    c,
                    json_out,
                    signer,
                    tx,
                    TxKind::Governance,
                    0,
                    payload.clone(),
                    done,
                )
                .await?;
                if !no_wait && !json_out {
                    // Where the vote left the parameter: in force, or how many BPs agree so far.
                    if let Ok(g) = c.dpos_governance(None).await {
                        println!("{}", gov_outcome(&g, &param, &payload));
                    }
                }
                Ok(())
            }
            (Some(_), None) => bail!("give both PARAM and VALUE to vote, or neither to show"),
            _ => {
                let r = c.dpos_governance(at).await?;
                let v = serde_json::to_value(&r)?;
                crate::print(json_out, &v, || {
                    let mut s = format!(
                        "governance at height {}\n  bp_count             {}\n  max_votes            {}\n  min_stake            {}\n  unstake_lock_blocks  {}\n  quorum               {} of {} BPs",
                        r.height,
                        r.params.bp_count,
                        r.params.max_votes,
                        aergo(r.params.min_stake),
                        r.params.unstake_lock_blocks,
                        r.quorum,
                        r.schedule_size
                    );
                    if r.pending.is_empty() {
                        s.push_str("\nno pending votes");
                    }
                    for p in &r.pending {
                        s.push_str(&format!(
                            "\npending {} = {}: {} vote(s) ({})",
                            p.param,
                            p.value,
                            p.voters.len(),
                            p.voters.join(", ")
                        ));
                    }
                    s
                });
                Ok(())
            }
        },
        StakingCmd::Staking { address, at } => {
            let a = match address {
                Some(s) => crate::resolve_addr(&s)?,
                None => default_address(keystore)?,
            };
            let r = c.staking_account(&a.encode(), at).await?;
            let v = serde_json::to_value(&r)?;
            crate::print(json_out, &v, || {
                let mut s = format!(
                    "{}\n  height     {}\n  staked     {}",
                    r.address,
                    r.height,
                    aergo(r.staked)
                );
                if r.staked.0 > 0 {
                    s.push_str(&format!(" (last changed in block {})", r.staked_height));
                }
                for u in &r.unstaking {
                    s.push_str(&format!(
                        "\n  unstaking  {} unlocks at block {}",
                        aergo(u.amount),
                        u.unlock_height
                    ));
                }
                if r.ballot.is_empty() {
                    s.push_str("\n  ballot     (none)");
                } else {
                    for (i, b) in r.ballot.iter().enumerate() {
                        let label = if i == 0 { "ballot" } else { "" };
                        s.push_str(&format!("\n  {label:<9}  {b}"));
                    }
                }
                match &r.candidate {
                    Some(reg) => s.push_str(&format!(
                        "\n  candidate  registered at block {}, p2p {}",
                        reg.registered_height,
                        reg.p2p_addr.as_deref().unwrap_or("-")
                    )),
                    None => s.push_str("\n  candidate  no"),
                }
                s
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_governance_vote_says_where_the_parameter_stands() {
        let g = |bp_count: u64, pending: Vec<aergo_rpc::GovVoteJson>| aergo_rpc::GovernanceJson {
            height: 10,
            params: aergo_rpc::GovParamsJson {
                bp_count,
                max_votes: 30,
                min_stake: Aer(10),
                unstake_lock_blocks: 20,
            },
            pending,
            schedule_size: 4,
            quorum: 3,
        };
        let payload = gov_payload("bp_count", "5").unwrap();
        let vote = aergo_rpc::GovVoteJson {
            param: "bp_count".into(),
            value: "5".into(),
            voters: vec!["A1".into(), "A2".into()],
        };
        assert_eq!(
            gov_outcome(&g(4, vec![vote]), "bp_count", &payload),
            "2 of the 4 BPs agree on bp_count = 5 (3 needed)"
        );
        assert_eq!(
            gov_outcome(&g(5, vec![]), "bp_count", &payload),
            "bp_count is now 5"
        );
        assert!(gov_outcome(&g(4, vec![]), "bp_count", &payload).contains("no pending vote"));
    }

    #[test]
    fn payloads_match_the_chain_formats() {
        assert_eq!(
            gov_payload("min_stake", "1.5aergo").unwrap(),
            br#"{"param":"min_stake","value":"1500000000000000000"}"#.to_vec()
        );
        assert_eq!(
            gov_payload("bp_count", "21").unwrap(),
            br#"{"param":"bp_count","value":"21"}"#.to_vec()
        );
        assert!(gov_payload("bp_count", "1.5").is_err());
        assert!(gov_payload("round_slots", "5").is_err());
        assert_eq!(
            unstake_payload(Aer(5000)).unwrap(),
            br#"{"amount":"5000"}"#.to_vec()
        );
        assert_eq!(register_payload(None).unwrap(), b"{}".to_vec());
        assert_eq!(
            register_payload(Some("/ip4/1.2.3.4/tcp/1")).unwrap(),
            br#"{"p2p_addr":"/ip4/1.2.3.4/tcp/1"}"#.to_vec()
        );
        let a = Address {
            tag: aergo_types::address::TAG_ACCOUNT,
            key: [1; 32],
        };
        assert_eq!(
            vote_payload(&[a]).unwrap(),
            format!(r#"{{"candidates":["{}"]}}"#, a.encode()).into_bytes()
        );
        assert_eq!(vote_payload(&[]).unwrap(), br#"{"candidates":[]}"#.to_vec());
    }
}
