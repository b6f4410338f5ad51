//! `dpos-bench`: a 4-BP DPoS network on loopback (`aergo testnet init`, 1 s slots) measured
//! end to end, each figure printed with the baseline it is compared with in the same run:
//! - submit → included and submit → final (LIB) latency, p50/p99, at a steady 20 tx/s;
//!   baseline: the floor of 4 block intervals for final;
//! - sustained transfers/s through the network; baseline: a solo dev node on the same
//!   machine, same load, same run;
//! - sync speed of a late joiner (blocks/s); baseline: the production rate (1 block/s).
//!
//! Run: `cargo run --release -p aergo-e2e --bin dpos_bench` (builds the binaries first with
//! `cargo build --release --bins`). About three minutes.

use aergo_e2e::{bin, http, poll, KillOnDrop};
use aergo_types::{Address, Hash, Keypair, Tx, TxKind, AER_PER_AERGO};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 1000;

fn rpc(url: &str, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (_, text) = http::raw("POST", url, &body.to_string())?;
    let v: Value = serde_json::from_str(&text)?;
    if let Some(e) = v.get("error") {
        bail!("{method}: {e}");
    }
    Ok(v["result"].clone())
}

fn send_batch(url: &str, txs: &[Vec<u8>]) -> Result<()> {
    let body: Vec<Value> = txs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"jsonrpc": "2.0", "id": i, "method": "send_tx", "params": {"tx": hex::encode(t)}}))
        .collect();
    let (code, text) = http::raw("POST", url, &serde_json::to_string(&body)?)?;
    if code != 200 {
        bail!("send_tx batch: HTTP {code}");
    }
    if let Some(i) = text.find("\"error\"") {
        bail!("send_tx batch: {}", &text[i..text.len().min(i + 300)]);
    }
    Ok(())
}

fn transfer(key: &Keypair, nonce: u64, to: Address, chain_id: Hash) -> Tx {
    Tx {
        kind: TxKind::Transfer,
        nonce,
        from: key.public(),
        to: Some(to),
        amount: 1,
        payload: vec![],
        gas_limit: 1000,
        gas_price: 1_000_000_000,
        chain_id,
    }
}

fn load_key(path: &Path) -> Result<Keypair> {
    let text = std::fs::read_to_string(path)?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)?;
    Ok(Keypair::from_seed(&seed))
}

// p is a quantile in 0..=1, so the rounded product is an index in 0..len (the float cast
// saturates in any case).
#[allow(clippy::cast_possible_truncation)]
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn start(cfg: &Path, log: &Path, url: &str) -> Result<KillOnDrop> {
    let mut cmd = Command::new(bin("aergo-node")?);
    cmd.arg("--config").arg(cfg).env("AERGO_LOG", "warn");
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::fs::File::create(log)?));
    let p = KillOnDrop::spawn(&mut cmd)?;
    let health = format!("{url}/health");
    poll("node health", Duration::from_secs(30), || {
        Ok(http::get_ok(&health).then_some(()))
    })?;
    Ok(p)
}

fn height(url: &str) -> Result<u64> {
    rpc(url, "chain_info", json!({}))?["height"]
        .as_u64()
        .context("height")
}

/// Funds `n` fresh accounts from `rich` and returns them once the transfers are included.
fn fund(url: &str, rich: &Keypair, n: usize, chain_id: Hash) -> Result<Vec<Keypair>> {
    let rich_addr = Address::from_public_key(&rich.public());
    let nonce = rpc(url, "account", json!({"address": rich_addr.encode()}))?["next_nonce"]
        .as_u64()
        .unwrap_or(0);
    let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate()).collect();
    let txs: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut t = transfer(
                rich,
                nonce + i as u64,
                Address::from_public_key(&k.public()),
                chain_id,
            );
            t.amount = 1000 * AER_PER_AERGO;
            t.sign(rich).encode()
        })
        .collect();
    send_batch(url, &txs)?;
    let last = keys.last().map(|k| Address::from_public_key(&k.public()));
    poll("funding", Duration::from_secs(60), || {
        let Some(a) = last else { return Ok(Some(())) };
        let b = rpc(url, "account", json!({"address": a.encode()}))?["balance"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        Ok((b != "0").then_some(()))
    })?;
    Ok(keys)
}

/// Sends `per_sender` transfers from each key (pre-signed, JSON batches of 500, spread over
/// `urls`) and returns transfers per second until the last one is in a block.
fn throughput(urls: &[String], keys: &[Keypair], per_sender: u64, chain_id: Hash) -> Result<f64> {
    let sink = Address::from_public_key(&Keypair::generate().public());
    // Each sender's transfers go to one node (nonces must arrive in order), senders spread
    // over the nodes.
    let signed: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| {
            (0..per_sender)
                .map(|n| transfer(k, n, sink, chain_id).sign(k).encode())
                .collect()
        })
        .collect();
    let total = per_sender * keys.len() as u64;
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let jobs: Vec<_> = signed
            .iter()
            .enumerate()
            .map(|(i, txs)| {
                let url = &urls[i % urls.len()];
                s.spawn(move || -> Result<()> {
                    for chunk in txs.chunks(500) {
                        send_batch(url, chunk)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for j in jobs {
            j.join()
                .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
        }
        Ok(())
    })?;
    // Every transfer pays 1 aer to `sink`: its balance counts what the chain included
    // (block tx counts would miscount across a fork switch).
    let mut counted = 0u64;
    let res = poll("all transfers included", Duration::from_secs(120), || {
        counted = rpc(&urls[0], "account", json!({"address": sink.encode()}))?["balance"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        Ok((counted >= total).then_some(()))
    });
    if let Err(e) = res {
        for u in urls {
            let i = rpc(u, "consensus_info", json!({}))?;
            let st = rpc(u, "node_status", json!({}))?;
            eprintln!(
                "{u}: height {} lib {} reorgs {} rejected {} side {} mempool {} peers {}",
                i["height"],
                i["lib_height"],
                i["reorgs"],
                i["rejected_blocks"],
                i["side_blocks"],
                st["mempool_size"],
                st["peers"]
            );
        }
        bail!("{e} ({counted} of {total} counted)");
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("tn");
    let base = aergo_e2e::free_port()?.min(50_000);
    let st = Command::new(bin("aergo")?)
        .args(["testnet", "init", "--bps", "4", "--nodes", "5"])
        .args([
            "--interval-ms",
            &INTERVAL_MS.to_string(),
            "--round-slots",
            "100",
        ])
        .args(["--start-delay-ms", "3000", "--base-port", &base.to_string()])
        .arg("--out")
        .arg(&out)
        .output()?;
    if !st.status.success() {
        bail!("testnet init: {}", String::from_utf8_lossy(&st.stderr));
    }
    // The bench measures the chain, not the per-client RPC rate limit.
    for i in 1..=5 {
        let p = out.join(format!("node{i}/aergo.toml"));
        let text =
            std::fs::read_to_string(&p)?.replace("rpc_rate_limit = 2000", "rpc_rate_limit = 0");
        std::fs::write(&p, text)?;
    }
    let urls: Vec<String> = (0..5)
        .map(|i| format!("http://127.0.0.1:{}", base as usize + 10 * i))
        .collect();
    let mut procs = Vec::new();
    for (i, url) in urls.iter().enumerate().take(4) {
        procs.push(start(
            &out.join(format!("node{}/aergo.toml", i + 1)),
            &out.join(format!("node{}.log", i + 1)),
            url,
        )?);
    }
    poll("first blocks", Duration::from_secs(60), || {
        Ok((height(&urls[0])? >= 3).then_some(()))
    })?;
    let chain_id = Hash::from_hex(
        rpc(&urls[0], "chain_info", json!({}))?["chain_id"]
            .as_str()
            .context("chain id")?,
    )?;
    let faucet = load_key(&out.join("faucet.key"))?;

    // 1. Latency at a steady 20 tx/s for 30 s.
    let url = urls[0].clone();
    let sink = Address::from_public_key(&Keypair::generate().public());
    let mut submitted: HashMap<Hash, Instant> = HashMap::new();
    let mut included: HashMap<Hash, (u64, Instant)> = HashMap::new();
    let mut finals: Vec<f64> = Vec::new();
    let mut incl: Vec<f64> = Vec::new();
    let mut nonce = rpc(
        &url,
        "account",
        json!({"address": Address::from_public_key(&faucet.public()).encode()}),
    )?["next_nonce"]
        .as_u64()
        .unwrap_or(0);
    let mut seen_h = height(&url)?;
    let mut lib_seen = 0u64;
    let started = Instant::now();
    let mut next_send = Instant::now();
    let deadline = started + Duration::from_secs(30);
    while started.elapsed() < Duration::from_secs(90) {
        let now = Instant::now();
        if now < deadline && now >= next_send {
            let t = transfer(&faucet, nonce, sink, chain_id).sign(&faucet);
            nonce += 1;
            send_batch(&url, &[t.encode()])?;
            submitted.insert(t.hash, Instant::now());
            next_send += Duration::from_millis(50);
        }
        let info = rpc(&url, "consensus_info", json!({}))?;
        let h = info["height"].as_u64().unwrap_or(0);
        let lib = info["lib_height"].as_u64().unwrap_or(0);
        if h > seen_h {
            for height in seen_h + 1..=h {
                let b = rpc(&url, "block", json!({"height": height}))?;
                for tx in b["txs"].as_array().into_iter().flatten() {
                    let hash = tx.as_str().or_else(|| tx["hash"].as_str()).unwrap_or("");
                    if let Ok(hash) = Hash::from_hex(hash) {
                        if let Some(s) = submitted.get(&hash) {
                            incl.push(s.elapsed().as_secs_f64() * 1000.0);
                            included.insert(hash, (height, Instant::now()));
                        }
                    }
                }
            }
            seen_h = h;
        }
        if lib > lib_seen {
            lib_seen = lib;
            included.retain(|hash, (height, _)| {
                if *height <= lib {
                    if let Some(s) = submitted.get(hash) {
                        finals.push(s.elapsed().as_secs_f64() * 1000.0);
                    }
                    false
                } else {
                    true
                }
            });
        }
        if now >= deadline && finals.len() == submitted.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (p50i, p99i) = (percentile(&mut incl, 0.5), percentile(&mut incl, 0.99));
    let (p50f, p99f) = (percentile(&mut finals, 0.5), percentile(&mut finals, 0.99));
    let floor = 4.0 * INTERVAL_MS as f64;
    println!(
        "latency ({} txs at 20 tx/s, 4 BPs, {INTERVAL_MS} ms slots): submit→included p50 {p50i:.0} ms p99 {p99i:.0} ms; submit→final p50 {p50f:.0} ms p99 {p99f:.0} ms; baseline (floor) 4 intervals = {floor:.0} ms; ratio p50/floor {:.2}",
        submitted.len(),
        p50f / floor
    );
    if finals.len() != submitted.len() {
        println!(
            "  note: {} of {} reached LIB within the run",
            finals.len(),
            submitted.len()
        );
    }

    // 2. Sustained transfers/s: the network vs a solo dev node, same load.
    let senders = fund(&url, &faucet, 8, chain_id)?;
    let net_tps = throughput(&urls[..4], &senders, 2500, chain_id)?;
    let dev_dir = tmp.path().join("dev");
    let dev_port = aergo_e2e::free_port()?;
    let dev = aergo_e2e::start_dev_node(&dev_dir, dev_port, &["--rpc-rate-limit", "0"])?;
    let dev_chain = Hash::from_hex(
        rpc(&dev.url, "chain_info", json!({}))?["chain_id"]
            .as_str()
            .context("chain id")?,
    )?;
    let dev_senders = fund(&dev.url, &Keypair::dev(), 8, dev_chain)?;
    let dev_tps = throughput(
        std::slice::from_ref(&dev.url),
        &dev_senders,
        2500,
        dev_chain,
    )?;
    drop(dev);
    println!(
        "sustained transfers (20,000 from 8 senders): 4-BP DPoS network {net_tps:.0} tx/s; baseline solo dev node {dev_tps:.0} tx/s; ratio {:.2}",
        net_tps / dev_tps
    );

    // 3. A late joiner syncs the whole chain.
    let target = height(&urls[0])?;
    let started = Instant::now();
    let p5 = start(
        &out.join("node5/aergo.toml"),
        &out.join("node5.log"),
        &urls[4],
    )?;
    poll("late joiner sync", Duration::from_secs(300), || {
        Ok((height(&urls[4])? >= target).then_some(()))
    })?;
    let secs = started.elapsed().as_secs_f64();
    let joined = rpc(&urls[4], "consensus_info", json!({}))?;
    if joined["synced_blocks"].as_u64().unwrap_or(0) == 0 {
        bail!("the late joiner reports no synced blocks: {joined}");
    }
    let rate = target as f64 / secs;
    println!(
        "late joiner sync: {target} blocks in {secs:.1} s (incl. start-up) = {rate:.0} blocks/s; baseline production 1 block/s; ratio {rate:.0}"
    );
    drop(p5);
    drop(procs);
    Ok(())
}
