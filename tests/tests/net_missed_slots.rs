//! A BP with no node behind it is visible: `aergo testnet init --bps 3` (DPoS, 500 ms slots)
//! with only two of the three nodes running. `consensus_info` (and `aergo node consensus`)
//! count the missing BP's missed slots, the running nodes log a WARN line naming it for every
//! missed slot and an INFO line per block, and the log (a file, not a terminal) carries no ANSI
//! colour codes.

use aergo_e2e::{bin, http, poll, KillOnDrop};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NODES: usize = 3;

fn rpc(url: &str, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (code, text) = http::raw("POST", url, &body.to_string())?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{code}: {text}"))?;
    if let Some(e) = v.get("error") {
        bail!("{method}: {e}");
    }
    Ok(v["result"].clone())
}

/// Ten ports per node below the kernel's ephemeral range (outgoing connections take ports
/// from it), free when chosen.
fn base_port() -> Result<u16> {
    let span = u16::try_from(NODES * 10)?;
    let eph_lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = if eph_lo >= 10_000 + span {
        (10_000u16, eph_lo - span)
    } else {
        (61_000u16, u16::MAX - span)
    };
    let mut seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
    for _ in 0..50 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = lo + u16::try_from((seed >> 33) % u64::from(hi - lo))?;
        if (0..span).all(|o| std::net::TcpListener::bind(("127.0.0.1", p + o)).is_ok()) {
            return Ok(p);
        }
    }
    bail!("no free port range")
}

fn start(dir: &Path, i: usize, url: &str) -> Result<KillOnDrop> {
    let mut cmd = Command::new(bin("aergo-node")?);
    let log = dir.join(format!("node{}.log", i + 1));
    cmd.arg("--config")
        .arg(dir.join(format!("node{}/aergo.toml", i + 1)))
        .env("AERGO_LOG", "info,aergo_p2p=warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?,
        ));
    let p = KillOnDrop::spawn(&mut cmd)?;
    let health = format!("{url}/health");
    poll("node health", Duration::from_secs(20), || {
        Ok(http::get_ok(&health).then_some(()))
    })
    .with_context(|| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        format!("node {} log (newest first):\n{}", i + 1, tail.join("\n"))
    })?;
    Ok(p)
}

#[test]
fn a_bp_without_a_node_shows_missed_slots() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("tn");
    let st = Command::new(bin("aergo")?)
        .args(["testnet", "init", "--bps", "3", "--round-slots", "6"])
        .args(["--interval-ms", "500", "--start-delay-ms", "2000"])
        .args(["--base-port", &base_port()?.to_string()])
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
        .map(|(i, u)| start(&out, i, u))
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
                .find(|b| b["address"] == json!(absent) && b["missed_slots"].as_u64() >= Some(2))
                .cloned())
        },
    )?;
    assert!(bp["missed_slots"].as_u64() >= Some(2), "{bp}");

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

    let human = Command::new(bin("aergo")?)
        .args(["--rpc", &url, "node", "consensus"])
        .output()?;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains(&absent) && l.contains("is a node running with this BP's key?")),
        "{text}"
    );
    Ok(())
}
