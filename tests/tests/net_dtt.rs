//! A producer that forges its blocks' DTTs is refused by every other node, on a DPoS network
//! of three real `aergo-node` processes made by `aergo testnet init` (500 ms slots). Node 1
//! runs with the injected fault `AERGO_FAULT_FORGE_DTT=1`: each block it makes with
//! transactions carries a DTT that is not the canonical one of what they read and wrote (a
//! dependency removed, or a false one added), committed in its signed header. Nodes 2 and 3
//! receive those blocks over libp2p, validate them along the DTT, and must reject every one
//! (`consensus_info.rejected_blocks`, the reason in their logs), while the transactions still
//! reach their chain through the honest producers' blocks.

use aergo_e2e::poll;
use aergo_e2e::testnet::{rpc, start_node, start_node_env};
use aergo_types::Address;
use anyhow::{ensure, Context, Result};
use serde_json::json;
use std::time::Duration;

const NODES: usize = 3;
/// At most this many transfers are sent, a few at a time, until the forger's slot got some.
const TRANSFERS: u64 = 600;

#[test]
fn blocks_with_a_forged_dtt_are_rejected_by_every_other_node() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("tn");
    let urls = aergo_e2e::testnet::init_fast(&dir, NODES)?;
    let _forger = start_node_env(&dir, 0, &urls[0], &[("AERGO_FAULT_FORGE_DTT", "1")])?;
    let _n2 = start_node(&dir, 1, &urls[1])?;
    let _n3 = start_node(&dir, 2, &urls[2])?;
    let log = std::fs::read_to_string(dir.join("node1.log"))?;
    ensure!(log.contains("INJECTED FAULT"), "the forger warns: {log}");
    let forger = rpc(&urls[0], "node_status", json!({}))?["node_address"]
        .as_str()
        .context("node_address")?
        .to_string();

    let (faucet, chain_id) = aergo_e2e::testnet::faucet(&dir, &urls[1])?;
    let from = Address::from_public_key(&faucet.public());
    let start = rpc(&urls[1], "chain_info", json!({}))?["height"]
        .as_u64()
        .context("height")?;

    // Transfers into the forger's mempool (gossiped to the others too), a few per poll and
    // spread over the slots, until node 1 has made a block with transactions and both others
    // refused it (the honest producers may include every transfer before node 1's slot, so
    // the sending goes on).
    let rejected = |u: &String| -> Result<u64> {
        rpc(u, "consensus_info", json!({}))?["rejected_blocks"]
            .as_u64()
            .context("rejected_blocks")
    };
    let mut nonce = 0u64;
    poll(
        "nodes 2 and 3 reject a block of the forger",
        Duration::from_secs(40),
        || {
            if nonce < TRANSFERS {
                for _ in 0..3 {
                    let tx = aergo_e2e::signed_transfer(&faucet, nonce, from, chain_id);
                    rpc(&urls[0], "send_tx", json!({"tx": hex::encode(tx.encode())}))?;
                    nonce += 1;
                }
            }
            Ok((rejected(&urls[1])? >= 1 && rejected(&urls[2])? >= 1).then_some(()))
        },
    )?;
    // Whatever was sent reaches the honest chain: every transfer included on nodes 2 and 3.
    for u in &urls[1..] {
        poll(
            &format!("{u} includes all {nonce} transfers"),
            Duration::from_secs(30),
            || {
                let n = rpc(u, "account", json!({"address": from.encode()}))?["nonce"]
                    .as_u64()
                    .context("nonce")?;
                Ok((n >= nonce).then_some(()))
            },
        )?;
    }
    // No block of the forger with transactions is on the honest nodes' chains (its empty
    // blocks carry no DTT and are valid).
    for u in &urls[1..] {
        let tip = rpc(u, "chain_info", json!({}))?["height"]
            .as_u64()
            .context("height")?;
        let mut from_h = start + 1;
        let mut honest_with_txs = 0;
        while from_h <= tip {
            let to = (from_h + 99).min(tip);
            let blocks = rpc(u, "blocks", json!({"from": from_h, "to": to}))?;
            for b in blocks.as_array().context("blocks")? {
                let txs = b["tx_count"].as_u64().context("tx_count")?;
                if b["producer"] == forger.as_str() {
                    ensure!(txs == 0, "{u} accepted a block of the forger with txs: {b}");
                } else if txs > 0 {
                    honest_with_txs += 1;
                }
            }
            from_h = to + 1;
        }
        ensure!(
            honest_with_txs > 0,
            "{u}: no honest block carried the transfers"
        );
    }
    // The validators had the transfers from gossip, verified at admission: validating the
    // blocks that carry them, they found those signatures verified already.
    let mut hits = 0u64;
    for u in &urls[1..] {
        let (_, text) = aergo_e2e::http::raw("GET", &format!("{u}/metrics"), "")?;
        let hit = text
            .lines()
            .find_map(|l| l.strip_prefix("aergo_sigcache_lookups_total{result=\"hit\"} "))
            .context("aergo_sigcache_lookups_total on /metrics")?;
        hits += hit.trim().parse::<u64>()?;
    }
    ensure!(
        hits > 0,
        "no block transaction was found verified at admission"
    );
    for i in [2, 3] {
        let log = std::fs::read_to_string(dir.join(format!("node{i}.log")))?;
        ensure!(
            log.contains("rejected an invalid block") && log.contains("DTT"),
            "node {i} logs the rejection with its reason"
        );
    }
    Ok(())
}
