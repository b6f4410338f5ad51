//! A BP with no node behind it is visible: `aergo testnet init --bps 3` (DPoS, 500 ms slots)
//! with only two of the three nodes running. `consensus_info` (and `aergo node consensus`)
//! count the missing BP's missed slots, the running nodes log a WARN line naming it for every
//! missed slot and an INFO line per block, and the log (a file, not a terminal) carries no ANSI
//! colour codes.

use aergo_e2e::testnet::{base_port, rpc, start_node};
use aergo_e2e::{bin, poll, KillOnDrop};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const NODES: usize = 3;

#[test]
fn a_bp_without_a_node_shows_missed_slots() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("tn");
    let st = Command::new(bin("aergo")?)
        .args(["testnet", "init", "--bps", "3", "--round-slots", "6"])
        .args(["--interval-ms", "500", "--start-delay-ms", "2000"])
        .args(["--base-port", &base_port(NODES)?.to_string()])
        .arg("--out")
        .arg(&out)
        .output()?;
    if !st.status.success() {
        bail!("testnet init: {}", String::from_utf8_lossy(&st.stderr));
    }
    let mut urls = Vec::new();
    for i in 0..NODES {
        let text = std::fs::read_to_string(out.join(format!("node{}/aergo.toml", i + 1)))?;
        let cfg: toml::Value = toml::from_str(&text)?;
        urls.push(format!(
            "http://{}",
            cfg["node"]["rpc_addr"].as_str().context("rpc_addr")?
        ));
    }
    // The third BP's address, from its node key (hex seed).
    let seed_hex = std::fs::read_to_string(out.join("node3/node.key"))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(seed_hex.trim(), &mut seed)?;
    let absent =
        aergo_types::Address::from_public_key(&aergo_types::Keypair::from_seed(&seed).public())
            .encode();
    let url = urls.first().context("url")?.clone();
    let _procs: Vec<KillOnDrop> = urls
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, u)| start_node(&out, i, u))
        .collect::<Result<_>>()?;

    let bp = poll(
        "missed slots counted for the BP without a node",
        Duration::from_secs(40),
        || {
            let v = rpc(&url, "consensus_info", json!({}))?;
            Ok(v["dpos"]["active"]
                .as_array()
                .into_iter()
                .flatten()
                // At least one: the count is per round, and when the absent BP owns the
                // round's last slot its second miss is visible for no time at all.
                .find(|b| b["address"] == json!(absent) && b["missed_slots"].as_u64() >= Some(1))
                .cloned())
        },
    )?;
    assert!(bp["missed_slots"].as_u64() >= Some(1), "{bp}");

    // The WARN line comes with the first block after a missed slot.
    let log = poll(
        "a WARN line naming the BP without a node",
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(out.join("node1.log"))?;
            let warned = log
                .lines()
                .any(|l| l.contains("WARN") && l.contains("missed slot") && l.contains(&absent));
            Ok(warned.then_some(log))
        },
    )?;
    assert!(
        log.lines()
            .any(|l| l.contains("INFO") && l.contains("block height=")),
        "no INFO line per block:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );

    // Missed slots are counted per round (3 s here), so right after a round starts the count
    // is 0 again: poll until a round has run long enough to miss the absent BP's slot.
    let mut text = String::new();
    let seen = poll(
        "node consensus names the absent BP",
        Duration::from_secs(15),
        || {
            let human = Command::new(bin("aergo")?)
                .args(["--rpc", &url, "node", "consensus"])
                .output()?;
            text = String::from_utf8_lossy(&human.stdout).into_owned();
            Ok(text
                .lines()
                .any(|l| l.contains(&absent) && l.contains("is a node running with this BP's key?"))
                .then_some(()))
        },
    );
    assert!(seen.is_ok(), "{text}");
    Ok(())
}
