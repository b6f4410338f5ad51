//! `preconf-bench`: submit → pre-confirmation latency on a solo node at a fixed offered load,
//! through real JSON-RPC over HTTP on loopback, with submit → included measured on the same
//! transactions in the same run as the baseline. Each figure is printed with its baseline and
//! the ratio.
//!
//! Runs, each on a fresh node with the RPC rate limit set explicitly (`--rpc-rate-limit 0`):
//! 1. 1 s blocks at 4,000 tx/s, one pre-signed transaction per request;
//! 2. 500 ms blocks at 5,000 tx/s, one per request;
//! 3. 1 s blocks at 4,000 tx/s in JSON-RPC batches of 20 (latency per transaction, from the
//!    batch's scheduled send);
//! 4. ingest: pre-signed transfers sent as fast as the node takes them (batches of 50, no
//!    waiting), with pre-confirmation on and off (`--no-preconfirm`), in the same run.
//!
//! Latency is measured from each request's scheduled send time (so a client or server that
//! falls behind shows up as latency, not as a lower offered load). Included: when a poller
//! (every 5 ms) first saw the block height the promise named.
//!
//! Run: `cargo build --release --workspace --bins && /var/tmp/aergo-target/release/preconf_bench`
//! (or `cargo run --release -p aergo-e2e --bin preconf_bench`). About a minute.

// Benchmark arithmetic on small counts and sample indexes (far below 2^32).
#![allow(clippy::cast_possible_truncation)]

use aergo_e2e::{bin, free_port, http, poll, KillOnDrop};
use aergo_rpc::RpcClient;
use aergo_types::{Address, Hash, Keypair, Tx, TxKind, AER_PER_AERGO};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SENDERS: usize = 64;
const SECONDS: u64 = 6;

fn transfer(key: &Keypair, nonce: u64, to: Address, chain_id: Hash) -> Vec<u8> {
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
    .sign(key)
    .encode()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * p / 100.0).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

struct Node {
    _proc: KillOnDrop,
    url: String,
    _dir: tempfile::TempDir,
}

/// Starts a solo dev node with `interval_ms` blocks; `block_gas` sets the genesis's block
/// gas limit (absent: the default, 5M gas = 5,000 transfers).
fn start(interval_ms: u64, block_gas: Option<u64>, extra: &[&str]) -> Result<Node> {
    let dir = tempfile::tempdir()?;
    let dev = Address::from_public_key(&Keypair::dev().public()).encode();
    let genesis = dir.path().join("genesis.json");
    std::fs::write(
        &genesis,
        format!(
            "{{\"chain_name\":\"aergo-dev\",\"timestamp_ms\":0,\"balances\":[{{\"address\":\"{dev}\",\"balance\":\"500000000000000000000000000\"}}],\"consensus\":{{\"engine\":\"solo\",\"block_interval_ms\":{interval_ms},\"producer\":null}},\"gas\":{{\"base\":1000,\"per_byte\":10,\"min_price\":\"1000000000\"{gas}}}}}",
            gas = block_gas
                .map(|g| format!(",\"block_gas_limit\":{g}"))
                .unwrap_or_default()
        ),
    )?;
    let port = free_port()?;
    let mut cmd = Command::new(bin("aergo-node")?);
    cmd.args(["--genesis"])
        .arg(&genesis)
        .args(["--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
        .args(["--rpc-rate-limit", "0", "--no-empty-blocks"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::fs::File::create(
            // PRECONF_BENCH_LOG=FILE keeps the last node's log.
            std::env::var("PRECONF_BENCH_LOG")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|_| dir.path().join("node.log")),
        )?));
    let proc = KillOnDrop::spawn(&mut cmd)?;
    let url = format!("http://127.0.0.1:{port}/");
    poll("node health", Duration::from_secs(30), || {
        Ok(http::get_ok(&format!("http://127.0.0.1:{port}/health")).then_some(()))
    })?;
    Ok(Node {
        _proc: proc,
        url,
        _dir: dir,
    })
}

/// Funds `n` fresh senders from dev (batched sends, then waits for inclusion).
async fn fund(c: &RpcClient, n: usize, chain_id: Hash) -> Result<Vec<Keypair>> {
    let dev = Keypair::dev();
    let dev_a = Address::from_public_key(&dev.public());
    let keys: Vec<Keypair> = (0..n)
        .map(|i| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(i as u64 + 1000).to_be_bytes());
            Keypair::from_seed(&s)
        })
        .collect();
    let nonce = c.account(&dev_a.encode(), None).await?.next_nonce;
    let mut last = Hash::ZERO;
    for (i, k) in keys.iter().enumerate() {
        let tx = Tx {
            kind: TxKind::Transfer,
            nonce: nonce + i as u64,
            from: dev.public(),
            to: Some(Address::from_public_key(&k.public())),
            amount: 1000 * AER_PER_AERGO,
            payload: vec![],
            gas_limit: 1000,
            gas_price: 1_000_000_000,
            chain_id,
        }
        .sign(&dev);
        last = c.send_tx(&tx.encode()).await?.hash;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.receipt(&last).await.is_err() {
        if Instant::now() > deadline {
            bail!("funding never included");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(keys)
}

/// Records when each height was first seen.
fn watch_heights(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<HashMap<u64, Instant>> {
    std::thread::spawn(move || {
        let mut seen = HashMap::new();
        let mut last = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let body = json!({"jsonrpc":"2.0","id":1,"method":"chain_info"}).to_string();
            if let Ok((_, t)) = http::raw("POST", &url, &body) {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if let Some(h) = v["result"]["height"].as_u64() {
                        let now = Instant::now();
                        for x in last + 1..=h {
                            seen.entry(x).or_insert(now);
                        }
                        last = last.max(h);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

/// One load run; returns (pre-confirmation latencies, included latencies) in ms.
async fn load(
    url: &str,
    rate: u64,
    batch: usize,
    chain_id: Hash,
) -> Result<(Vec<f64>, Vec<f64>, u64)> {
    let c = Arc::new(RpcClient::new(url, Duration::from_secs(30))?);
    let keys = fund(&c, SENDERS, chain_id).await?;
    let to = Address::from_public_key(&Keypair::from_seed(&[5; 32]).public());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_heights(url.to_string(), stop.clone());
    let total = rate * SECONDS;
    let per_sender = total / SENDERS as u64;
    // Each sender sends its requests (of `batch` transactions) on a fixed schedule.
    let period = Duration::from_secs_f64(SENDERS as f64 * batch as f64 / rate as f64);
    let results: Arc<Mutex<Vec<(Instant, Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Pre-signed before the clock starts.
    let signed: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| {
            (0..per_sender)
                .map(|n| transfer(k, n, to, chain_id))
                .collect()
        })
        .collect();
    // The schedule starts once everything is signed.
    let t0 = Instant::now() + Duration::from_millis(200);
    for (s, txs_of) in signed.into_iter().enumerate() {
        let c = c.clone();
        let results = results.clone();
        let errors = errors.clone();
        let url = url.to_string();
        let offset = period.mul_f64(s as f64 / SENDERS as f64);
        tasks.push(tokio::spawn(async move {
            let mut nonce = 0u64;
            let mut k_req = 0u32;
            while nonce < per_sender {
                let at = t0 + offset + period * k_req;
                k_req += 1;
                tokio::time::sleep_until(at.into()).await;
                let n = (batch as u64).min(per_sender - nonce) as usize;
                let txs = &txs_of[nonce as usize..nonce as usize + n];
                nonce += n as u64;
                if batch == 1 {
                    match c.send_tx_preconfirmed(&txs[0]).await {
                        Ok(r) => results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((at, Instant::now(), r.preconfirmation.height)),
                        Err(_) => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                } else {
                    let body: Vec<Value> = txs
                        .iter()
                        .enumerate()
                        .map(|(i, t)| json!({"jsonrpc":"2.0","id":i,"method":"send_tx","params":{"tx":hex::encode(t),"wait":"preconfirmed"}}))
                        .collect();
                        let u = url.clone();
                        let body = serde_json::to_string(&body)?;
                        let out = tokio::task::spawn_blocking(move || http::raw("POST", &u, &body)).await??;
                        let done = Instant::now();
                        let v: Value = serde_json::from_str(&out.1)?;
                        for item in v.as_array().into_iter().flatten() {
                            match item["result"]["preconfirmation"]["height"].as_u64() {
                                Some(h) => results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((at, done, h)),
                                None => {
                                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                        }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let results = std::mem::take(&mut *results.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let last = results.iter().map(|r| r.2).max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.chain_info().await?.height < last {
        if Instant::now() > deadline {
            bail!("height {last} never came");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))?;
    let mut pre = Vec::new();
    let mut inc = Vec::new();
    for (at, done, h) in results {
        pre.push(done.duration_since(at).as_secs_f64() * 1000.0);
        if let Some(t) = seen.get(&h) {
            inc.push(t.saturating_duration_since(at).as_secs_f64() * 1000.0);
        }
    }
    Ok((pre, inc, errors.load(std::sync::atomic::Ordering::Relaxed)))
}

/// Pre-signed transfers sent as fast as the node takes them, in batches (one nonce of each of 50
/// senders, no waiting); returns transfers per second until the last is included.
async fn ingest(url: &str, chain_id: Hash, total: usize) -> Result<(f64, f64)> {
    let c = RpcClient::new(url, Duration::from_secs(30))?;
    let keys = fund(&c, 50, chain_id).await?;
    let to = Address::from_public_key(&Keypair::from_seed(&[6; 32]).public());
    let per = total / keys.len();
    let mut bodies = Vec::new();
    for n in 0..per as u64 {
        for chunk in keys.chunks(50) {
            let body: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, k)| json!({"jsonrpc":"2.0","id":i,"method":"send_tx","params":{"tx":hex::encode(transfer(k, n, to, chain_id))}}))
                .collect();
            bodies.push(serde_json::to_string(&body)?);
        }
    }
    let last_key = keys.last().context("keys")?;
    let last = Tx {
        kind: TxKind::Transfer,
        nonce: per as u64 - 1,
        from: last_key.public(),
        to: Some(to),
        amount: 1,
        payload: vec![],
        gas_limit: 1000,
        gas_price: 1_000_000_000,
        chain_id,
    }
    .sign(last_key)
    .hash;
    let t0 = Instant::now();
    // One connection, in nonce order (a body holds one nonce of every sender).
    for b in bodies {
        let u = url.to_string();
        let (code, text) = tokio::task::spawn_blocking(move || http::raw("POST", &u, &b)).await??;
        if code != 200 || text.contains("\"error\"") {
            bail!(
                "ingest refused: HTTP {code} {}",
                &text[..text.len().min(300)]
            );
        }
    }
    let accepted = total as f64 / t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.receipt(&last).await.is_err() {
        if Instant::now() > deadline {
            bail!("ingest never included");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((accepted, total as f64 / t0.elapsed().as_secs_f64()))
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let only: Option<usize> = std::env::var("PRECONF_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    println!("preconf-bench: solo node, loopback JSON-RPC, {SENDERS} senders, {SECONDS} s per run, RPC rate limit off (--rpc-rate-limit 0)");
    // The last run sizes 1 s blocks for 5,000 transfers/s by gas (10M: 10,000 transfers,
    // ~2.2 MB, so the 2 MiB block size binds at ~9,700): the default 5M would be exactly the
    // offered rate, and the former 1 MiB (~4,700 transfers) below it.
    for (interval, rate, batch, gas) in [
        (1000u64, 4000u64, 1usize, None),
        (500, 5000, 1, None),
        (1000, 4000, 20, None),
        (1000, 5000, 1, Some(10_000_000u64)),
    ]
    .into_iter()
    .enumerate()
    // PRECONF_BENCH_ONLY=I runs the I-th latency run alone (from 0), and no ingest runs.
    .filter(|(i, _)| only.is_none_or(|o| o == *i))
    .map(|(_, r)| r)
    {
        let node = start(interval, gas, &[])?;
        let chain_id = rt
            .block_on(RpcClient::new(&node.url, Duration::from_secs(10))?.chain_info())?
            .chain_id;
        let (mut pre, mut inc, errors) = rt.block_on(load(&node.url, rate, batch, chain_id))?;
        let st = {
            let body = json!({"jsonrpc":"2.0","id":1,"method":"preconf_status"}).to_string();
            let v: Value = serde_json::from_str(&http::raw("POST", &node.url, &body)?.1)?;
            v["result"].clone()
        };
        let ms = |k: &str| st[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
        let server = format!(
            "node side (admission → durable promise, last minute) p50 {:.2} ms p99 {:.2} ms; JSON-RPC handler (request → answer) p50 {:.2} ms p99 {:.2} ms",
            ms("p50_us"),
            ms("p99_us"),
            ms("request_p50_us"),
            ms("request_p99_us")
        );
        let (p50, p99) = (pct(&mut pre, 50.0), pct(&mut pre, 99.0));
        let (i50, i99) = (pct(&mut inc, 50.0), pct(&mut inc, 99.0));
        println!(
            "{interval} ms blocks{}, {rate} tx/s offered, {} per request: {} promised ({errors} errors); submit → preconfirmed p50 {p50:.2} ms p99 {p99:.2} ms; baseline submit → included p50 {i50:.1} ms p99 {i99:.1} ms; ratio (included/preconfirmed) p50 {:.0}x p99 {:.0}x; {server}",
            gas.map(|g| format!(" of {}M gas", g / 1_000_000))
                .unwrap_or_default(),
            if batch == 1 { "one".to_string() } else { format!("batches of {batch}") },
            pre.len(),
            i50 / p50,
            i99 / p99
        );
    }
    if only.is_some() {
        return Ok(());
    }
    let mut rates = Vec::new();
    for (extra, gas) in [
        (&[][..], None),
        (&["--no-preconfirm"][..], None),
        (&[][..], Some(10_000_000u64)),
    ] {
        let node = start(1000, gas, extra)?;
        let chain_id = rt
            .block_on(RpcClient::new(&node.url, Duration::from_secs(10))?.chain_info())?
            .chain_id;
        rates.push(rt.block_on(ingest(&node.url, chain_id, 20_000))?);
    }
    println!(
        "ingest (batches of 50, no wait): accepted by the RPC: pre-confirmation on {:.0} tx/s, baseline off (--no-preconfirm) {:.0} tx/s, ratio {:.2}x; until included: on {:.0} tx/s, off {:.0} tx/s, ratio {:.2}x (1 s blocks of 5M gas = 5,000 transfers bound these); with 10M-gas blocks: accepted {:.0} tx/s, until included {:.0} tx/s, ratio to 5M {:.2}x",
        rates[0].0,
        rates[1].0,
        rates[0].0 / rates[1].0,
        rates[0].1,
        rates[1].1,
        rates[0].1 / rates[1].1,
        rates[2].0,
        rates[2].1,
        rates[2].1 / rates[0].1
    );
    Ok(())
}
