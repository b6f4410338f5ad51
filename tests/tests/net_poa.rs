//! A PoA network of real `aergo-node` processes on 127.0.0.1: `aergo testnet init --engine
//! poa --bps 3` with 500 ms slots, three producers in round-robin. They reach a common LIB
//! above a few blocks and hold the same block at that height. The testnet also registers two
//! repositories at genesis (`--repo team --repo vault:private`): node 1 hosts them from its
//! first start, the others know them but do not host them, and a transfer moves units
//! inside one.

use aergo_e2e::testnet::{base_port, rpc, start_node};
use aergo_e2e::{bin, poll, KillOnDrop};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const NODES: usize = 3;

#[test]
fn poa_network_reaches_a_common_lib() -> Result<()> {
    let begun = Instant::now();
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("tn");
    let st = Command::new(bin("aergo")?)
        .args(["testnet", "init", "--engine", "poa", "--bps", "3"])
        .args(["--interval-ms", "500", "--start-delay-ms", "3000"])
        .args(["--repo", "team", "--repo", "vault:private"])
        .args(["--base-port", &base_port(NODES)?.to_string()])
        .arg("--out")
        .arg(&out)
        .output()?;
    if !st.status.success() {
        bail!("testnet init: {}", String::from_utf8_lossy(&st.stderr));
    }
    let genesis: Value = serde_json::from_str(&std::fs::read_to_string(out.join("genesis.json"))?)?;
    assert_eq!(genesis["consensus"]["engine"], "poa");
    assert!(genesis["consensus"].get("dpos").is_none());
    let mut urls = Vec::new();
    for i in 0..NODES {
        let text = std::fs::read_to_string(out.join(format!("node{}/aergo.toml", i + 1)))?;
        let cfg: toml::Value = toml::from_str(&text)?;
        urls.push(format!(
            "http://{}",
            cfg["node"]["rpc_addr"].as_str().context("rpc_addr")?
        ));
    }
    let _procs: Vec<KillOnDrop> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| start_node(&out, i, u))
        .collect::<Result<_>>()?;
    let info = rpc(&urls[0], "consensus_info", json!({}))?;
    assert_eq!(info["engine"], "poa", "{info}");
    assert_eq!(
        info["poa"]["producers"].as_array().map(|a| a.len()),
        Some(NODES),
        "{info}"
    );
    // All three reach a common LIB of at least 5 and hold the same block there.
    let (lib, hash) = poll("a common LIB >= 5", Duration::from_secs(45), || {
        let libs: Vec<u64> = urls
            .iter()
            .map(|u| {
                rpc(u, "consensus_info", json!({}))?["lib_height"]
                    .as_u64()
                    .context("lib_height")
            })
            .collect::<Result<_>>()?;
        let low = libs.iter().copied().min().unwrap_or(0);
        if low < 5 {
            return Ok(None);
        }
        let hashes: Vec<String> = urls
            .iter()
            .map(|u| {
                Ok(rpc(u, "block", json!({"height": low}))?["hash"]
                    .as_str()
                    .context("hash")?
                    .to_string())
            })
            .collect::<Result<_>>()?;
        if hashes.iter().any(|h| *h != hashes[0]) {
            bail!("final blocks differ at height {low}: {hashes:?} (libs {libs:?})");
        }
        Ok(Some((low, hashes[0].clone())))
    })?;
    // Every producer made blocks: the LIB block has floor(2·3/3)+1 = 3 distinct producers on
    // top of it, so all three took their turns.
    let tip = rpc(&urls[0], "consensus_info", json!({}))?["height"]
        .as_u64()
        .context("height")?;
    assert!(tip >= lib);

    // The genesis repositories: node 1 produces and hosts them; node 2 knows, not hosts.
    let listed = rpc(&urls[0], "repo_list", json!({}))?;
    assert_eq!(listed[0]["name"], "team", "{listed}");
    assert_eq!(listed[1]["visibility"], "private", "{listed}");
    assert!(
        listed
            .as_array()
            .is_some_and(|l| l.iter().all(|r| r["hosted"] == true)),
        "{listed}"
    );
    let elsewhere = rpc(&urls[1], "chain_info", json!({"repo": "team"}));
    assert!(
        elsewhere
            .as_ref()
            .is_err_and(|e| e.to_string().contains("does not host")),
        "{elsewhere:?}"
    );
    let seed = std::fs::read_to_string(out.join("faucet.key"))?;
    let mut b = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut b)?;
    let faucet = aergo_types::Keypair::from_seed(&b);
    let team_id = rpc(&urls[0], "chain_info", json!({"repo": "team"}))?["chain_id"]
        .as_str()
        .context("chain_id")?
        .to_string();
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    let tx = aergo_types::Tx {
        kind: aergo_types::TxKind::Transfer,
        nonce: 0,
        from: faucet.public(),
        to: Some(to),
        amount: 7,
        payload: Vec::new(),
        gas_limit: 1000,
        gas_price: 1_000_000_000,
        chain_id: aergo_types::Hash::from_hex(&team_id)?,
    }
    .sign(&faucet);
    rpc(
        &urls[0],
        "send_tx",
        json!({"repo": "team", "tx": hex::encode(tx.encode())}),
    )?;
    poll("the transfer inside team", Duration::from_secs(20), || {
        let a = rpc(
            &urls[0],
            "account",
            json!({"repo": "team", "address": to.encode()}),
        )?;
        Ok((a["balance"] == "7").then_some(()))
    })?;
    eprintln!(
        "poa: 3 nodes, common LIB {lib} ({hash}) at tip {tip} after {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}
