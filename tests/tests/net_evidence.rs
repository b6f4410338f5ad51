//! A lying producer is penalised, on a DPoS network of three real `aergo-node` processes
//! made by `aergo testnet init` (500 ms slots). Node 1 runs with the injected fault
//! `AERGO_FAULT_PRECONF_LIE=1`: its pre-confirmations name wrong positions. A client gets
//! one of its promises, `aergo preconf verify` finds it BROKEN against the block, and
//! `aergo preconf report` (through an honest node) sends the evidence. Every node then shows
//! the liar's stake cut by `slash_fraction` (10%) exactly once and the liar excluded from
//! elections (and `preconf_status.evidence`, the dashboard's figure, at 1); the same
//! evidence sent again fails as already penalised, and the next rounds' schedules leave the
//! liar out.

use aergo_e2e::testnet::{rpc, start_node, start_node_env};
use aergo_e2e::{bin, poll};
use aergo_types::Address;
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const NODES: usize = 3;
const PASSWORD: &str = "evidence-test-password";

#[test]
fn a_lying_producer_is_slashed_once_on_every_node() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("tn");
    let urls = aergo_e2e::testnet::init_fast(&dir, NODES)?;
    let _liar = start_node_env(&dir, 0, &urls[0], &[("AERGO_FAULT_PRECONF_LIE", "1")])?;
    let _n2 = start_node(&dir, 1, &urls[1])?;
    let _n3 = start_node(&dir, 2, &urls[2])?;
    let log = std::fs::read_to_string(dir.join("node1.log"))?;
    ensure!(log.contains("INJECTED FAULT"), "the liar warns: {log}");
    let liar = rpc(&urls[0], "node_status", json!({}))?["node_address"]
        .as_str()
        .context("node_address")?
        .to_string();

    // A promise from the liar: send to node 1 until it holds the next slot.
    let (faucet, chain_id) = aergo_e2e::testnet::faucet(&dir, &urls[1])?;
    let from = Address::from_public_key(&faucet.public());
    // A promise whose block the liar did produce (a slot it missed, or a block that lost to
    // another, leaves no signed contradiction: the client resends; try again).
    let mut found = None;
    for _ in 0..10 {
        let promise: Value = poll("a promise from node 1", Duration::from_secs(30), || {
            let nonce = rpc(&urls[0], "account", json!({"address": from.encode()}))?["next_nonce"]
                .as_u64()
                .context("next_nonce")?;
            let tx = aergo_e2e::signed_transfer(&faucet, nonce, from, chain_id);
            match rpc(
                &urls[0],
                "send_tx",
                json!({"tx": hex::encode(tx.encode()), "wait": "preconfirmed"}),
            ) {
                // Node 1 produces the slot: its own (lying) promise.
                Ok(v) if v["preconfirmation"]["producer_address"] == liar.as_str() => Ok(Some(v)),
                // Node 1 forwarded it to the slot's honest producer (or could not), or the
                // previous promise has not reached node 1 yet: again, with the next nonce.
                Ok(_) => Ok(None),
                Err(e)
                    if [
                        "not_producer",
                        "nonce_gap",
                        "nonce_too_low",
                        "duplicate",
                        "timeout",
                        "forward_failed",
                    ]
                    .iter()
                    .any(|r| e.to_string().contains(r)) =>
                {
                    std::thread::sleep(Duration::from_millis(40));
                    Ok(None)
                }
                Err(e) => bail!("preconfirmed send to node 1: {e}"),
            }
        })?;
        let p = &promise["preconfirmation"];
        ensure!(p["producer_address"] == liar.as_str(), "{promise}");
        let height = p["height"].as_u64().context("height")?;
        for u in &urls {
            poll(
                &format!("{u} has block {height}"),
                Duration::from_secs(20),
                || {
                    Ok(
                        (rpc(u, "chain_info", json!({}))?["height"].as_u64() >= Some(height))
                            .then_some(()),
                    )
                },
            )?;
        }
        let b = rpc(&urls[1], "block", json!({"height": height}))?;
        if b["producer"] == liar.as_str() && b["parent_hash"] == p["parent"] {
            found = Some(promise);
            break;
        }
        eprintln!("block {height} is not the liar's: {}", b["producer"]);
    }
    let promise = found.context("no promise whose block the liar produced in 10 tries")?;
    let file = tmp.path().join("promise.json");
    std::fs::write(&file, promise.to_string())?;
    let file = file.to_str().context("non-UTF-8 path")?;

    // The client sees the broken promise, and reports it through an honest node.
    let aergo = |args: &[&str]| -> Result<(bool, String, String)> {
        let out = Command::new(bin("aergo")?)
            .args(["--rpc", &urls[1], "--keystore"])
            .arg(tmp.path().join("keys"))
            .env("AERGO_PASSWORD", PASSWORD)
            .args(args)
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        ))
    };
    let (ok, out, err) = aergo(&["preconf", "verify", file])?;
    ensure!(!ok && out.contains("BROKEN"), "verify: {out}{err}");
    let (ok, out, err) = aergo(&[
        "account",
        "import",
        "--key",
        std::fs::read_to_string(dir.join("faucet.key"))?.trim(),
        "--name",
        "faucet",
    ])?;
    ensure!(ok, "import: {out}{err}");
    let stake_before = stake_of(&urls[1], &liar)?;
    let (ok, out, err) = aergo(&["--json", "preconf", "report", file, "--from", "faucet"])?;
    ensure!(ok, "report: {out}{err}");
    let report: Value = serde_json::from_str(&out).with_context(|| out.clone())?;
    ensure!(report["status"] == "ok", "{report}");
    let at = report["block_height"].as_u64().context("block_height")?;

    // Every node applies the penalty once: 10% of the stake burned, excluded.
    for u in &urls {
        poll(
            &format!("{u} has block {at}"),
            Duration::from_secs(20),
            || Ok((rpc(u, "chain_info", json!({}))?["height"].as_u64() >= Some(at)).then_some(())),
        )?;
        let c = candidate(u, &liar, Some(at))?;
        // What the dashboard's Mempool line shows as `evidence N`.
        let seen = rpc(u, "preconf_status", json!({}))?["evidence"].clone();
        ensure!(seen == 1, "{u}: preconf_status evidence {seen}");
        ensure!(c["excluded"] == true && c["eligible"] == false, "{u}: {c}");
        let stake = stake_of_at(u, &liar, Some(at))?;
        ensure!(
            stake == stake_before - stake_before / 10,
            "{u}: stake {stake} after slashing {stake_before}"
        );
    }
    // The same evidence again: included, and refused as already penalised.
    let (ok, out, err) = aergo(&["preconf", "report", file, "--from", "faucet"])?;
    ensure!(
        !ok && err.contains("already penalised"),
        "a second report: {out}{err}"
    );
    for u in &urls {
        ensure!(
            stake_of(u, &liar)? == stake_before - stake_before / 10,
            "{u}: penalised twice"
        );
    }
    // Later schedules leave the liar out (rounds of 6 slots).
    poll(
        "a schedule without the liar",
        Duration::from_secs(30),
        || {
            let info = rpc(&urls[1], "consensus_info", json!({}))?;
            let upcoming: Vec<&str> = info["dpos"]["upcoming"]
                .as_array()
                .context("upcoming")?
                .iter()
                .filter_map(|e| e["producer"].as_str())
                .collect();
            Ok((!upcoming.is_empty() && !upcoming.contains(&liar.as_str())).then_some(()))
        },
    )?;
    Ok(())
}

fn candidate(url: &str, addr: &str, height: Option<u64>) -> Result<Value> {
    let list = rpc(url, "dpos_candidates", json!({"height": height}))?;
    list["candidates"]
        .as_array()
        .context("candidates")?
        .iter()
        .find(|c| c["address"] == addr)
        .cloned()
        .with_context(|| format!("{addr} is not a candidate: {list}"))
}

fn stake_of_at(url: &str, addr: &str, height: Option<u64>) -> Result<u128> {
    let c = candidate(url, addr, height)?;
    c["stake"]
        .as_str()
        .context("stake")?
        .parse()
        .context("stake is not a number")
}

fn stake_of(url: &str, addr: &str) -> Result<u128> {
    stake_of_at(url, addr, None)
}
