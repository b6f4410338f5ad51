//! A PoA network of real `aergo-node` processes on 127.0.0.1: `aergo testnet init --engine
//! poa --bps 3` with 500 ms slots, three producers in round-robin. They reach a common LIB
//! above a few blocks and hold the same block at that height.

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
    eprintln!(
        "poa: 3 nodes, common LIB {lib} ({hash}) at tip {tip} after {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}
