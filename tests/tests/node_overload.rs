//! Overload of a dev node through real JSON-RPC over HTTP: several clients send batches of
//! pre-signed transfers as fast as they can, many times what the node's mempool (capped at
//! 4,000 here) and its blocks take. Every batch is answered within the client's 10 s read
//! timeout (no hang), every refused transfer carries a clear reason (`mempool_full`, `busy`
//! or the rate limit), the accepted ones are all included, and the node's resident memory
//! stays flat: it grows less than 64 MiB between the first quarter of the run and its end,
//! although the offered transactions would take far more if they were buffered. The figures
//! are printed.

use aergo_e2e::testnet::{chain_id, rpc};
use aergo_e2e::{free_port, http, poll, signed_transfer, start_dev_node};
use aergo_types::{Address, Keypair};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Senders and transfers each: 60,000 in all.
const SENDERS: usize = 120;
const PER_SENDER: u64 = 500;

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A chunked HTTP/1.1 body's data.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn an_overloaded_node_answers_every_batch_and_its_memory_stays_flat() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("aergo.toml");
    std::fs::write(
        &cfg,
        "[node.mempool]\nmax_txs = 4000\nmax_bytes = 16777216\nmax_per_account = 1000\nttl_secs = 600\n",
    )?;
    let node = start_dev_node(
        &dir.path().join("node"),
        free_port()?,
        &[
            "--config",
            cfg.to_str().context("path")?,
            "--rpc-rate-limit",
            "0",
        ],
    )?;
    let url = node.url.clone();
    let pid = node.proc.0.id();
    let id = chain_id(&url)?;

    // Fund the senders from dev, one batch.
    let dev = Keypair::dev();
    let senders: Vec<Keypair> = (0..SENDERS)
        .map(|i| Keypair::from_seed(&aergo_types::Hash::of(format!("overload {i}").as_bytes()).0))
        .collect();
    let fund: Vec<Value> = senders
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut t = signed_transfer(&dev, i as u64, Address::from_public_key(&k.public()), id);
            t.tx.amount = 10_u128.pow(18);
            let t = t.tx.sign(&dev);
            json!({"jsonrpc": "2.0", "id": i, "method": "send_tx", "params": {"tx": hex::encode(t.encode())}})
        })
        .collect();
    let (code, body) = http::raw("POST", &url, &Value::Array(fund).to_string())?;
    ensure!(code == 200, "funding: {code} {body}");
    let last = Address::from_public_key(&senders[SENDERS - 1].public()).encode();
    poll("the senders funded", Duration::from_secs(30), || {
        let a = rpc(&url, "account", json!({"address": last}))?;
        Ok((a["balance"] != "0").then_some(()))
    })?;

    // Pre-sign everything. Each of 3 clients owns a third of the senders and sends their
    // transfers in nonce order, 1,000 per batch, as fast as the node answers; what the node
    // refuses (full, busy, or a gap behind a refused one) it sends again in the next round,
    // as a client under backpressure does.
    let sink = Address::from_public_key(&Keypair::from_seed(&[9; 32]).public());
    let offered = SENDERS as u64 * PER_SENDER;
    let base_rss = rss_kib(pid).context("the node's VmRSS")?;
    let samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(r) = rss_kib(pid) {
                    if let Ok(mut s) = samples.lock() {
                        s.push((start.elapsed().as_secs_f64(), r));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let senders = Arc::new(senders);
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (senders, url) = (senders.clone(), url.clone());
            std::thread::spawn(move || -> Result<(u64, Vec<String>, f64, u64)> {
                let mut queue: std::collections::VecDeque<String> = std::collections::VecDeque::new();
                for nonce in 0..PER_SENDER {
                    for k in senders.iter().skip(c).step_by(3) {
                        queue.push_back(hex::encode(signed_transfer(k, nonce, sink, id).encode()));
                    }
                }
                let (mut ok, mut reasons, mut slowest, mut sent) = (0u64, Vec::new(), 0f64, 0u64);
                let deadline = Instant::now() + Duration::from_secs(120);
                while !queue.is_empty() {
                    ensure!(Instant::now() < deadline, "{} transfers never accepted", queue.len());
                    let take = queue.len().min(1000);
                    let batch: Vec<String> = queue.drain(..take).collect();
                    let body = Value::Array(
                        batch
                            .iter()
                            .enumerate()
                            .map(|(i, t)| json!({"jsonrpc": "2.0", "id": i, "method": "send_tx", "params": {"tx": t}}))
                            .collect(),
                    )
                    .to_string();
                    sent += batch.len() as u64;
                    let t = Instant::now();
                    // `raw` gives up after 10 s without an answer: a hang fails here.
                    let (code, body) = http::raw("POST", &url, &body)?;
                    slowest = slowest.max(t.elapsed().as_secs_f64());
                    ensure!(code == 200, "batch answered {code}: {}", &body[..body.len().min(300)]);
                    let v: Value = serde_json::from_str(&body)
                        .or_else(|_| serde_json::from_str(&dechunk(&body)))
                        .with_context(|| format!("batch reply: {}", &body[..body.len().min(200)]))?;
                    let replies = v.as_array().context("batch reply is an array")?;
                    ensure!(replies.len() == batch.len(), "a batch reply per request");
                    let mut again = Vec::new();
                    for (r, t) in replies.iter().zip(batch) {
                        if r.get("result").is_some() {
                            ok += 1;
                        } else {
                            reasons.push(
                                r["error"]["data"]["reason"]
                                    .as_str()
                                    .map(String::from)
                                    .unwrap_or_else(|| format!("code {}", r["error"]["code"])),
                            );
                            again.push(t);
                        }
                    }
                    if !again.is_empty() {
                        for t in again.into_iter().rev() {
                            queue.push_front(t);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Ok((ok, reasons, slowest, sent))
            })
        })
        .collect();
    let (mut accepted, mut refused, mut slowest, mut sent) = (0u64, Vec::new(), 0f64, 0u64);
    for c in clients {
        let (ok, reasons, s, n) = c.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        accepted += ok;
        refused.extend(reasons);
        slowest = slowest.max(s);
        sent += n;
    }
    let flood_s = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler panicked"))?;

    let mut by_reason = std::collections::BTreeMap::<String, u64>::new();
    for r in &refused {
        *by_reason.entry(r.clone()).or_default() += 1;
    }
    let s = samples
        .lock()
        .map_err(|_| anyhow::anyhow!("samples"))?
        .clone();
    let quarter = s.len() / 4;
    let early = s
        .iter()
        .take(quarter.max(1))
        .map(|x| x.1)
        .max()
        .unwrap_or(base_rss);
    let peak = s.iter().map(|x| x.1).max().unwrap_or(base_rss);
    let end = s.last().map(|x| x.1).unwrap_or(base_rss);
    println!(
        "overload: {offered} transfers, {sent} sends in {flood_s:.1} s by 3 clients ({:.0} sends/s); accepted {accepted}, refused {} {by_reason:?}; slowest batch {slowest:.2} s",
        sent as f64 / flood_s,
        refused.len()
    );
    println!(
        "overload: node VmRSS before {} MiB, first quarter max {} MiB, peak {} MiB, end {} MiB ({} samples)",
        base_rss / 1024,
        early / 1024,
        peak / 1024,
        end / 1024,
        s.len()
    );
    ensure!(
        accepted == offered,
        "every transfer accepted in the end: {accepted}"
    );
    ensure!(
        accepted + refused.len() as u64 == sent,
        "every send got an answer"
    );
    ensure!(
        !refused.is_empty(),
        "the node took all {offered}: no overload was reached"
    );
    for r in by_reason.keys() {
        ensure!(
            [
                "mempool_full",
                "busy",
                "nonce_gap",
                "code -32003",
                "code -32006"
            ]
            .contains(&r.as_str()),
            "a refusal without a clear overload reason: {r} ({by_reason:?})"
        );
    }
    ensure!(
        peak.saturating_sub(early) < 64 * 1024,
        "memory grew {} MiB under overload (first quarter {} MiB, peak {} MiB)",
        peak.saturating_sub(early) / 1024,
        early / 1024,
        peak / 1024
    );
    // What was accepted is included: the pool drains.
    poll("the mempool to drain", Duration::from_secs(60), || {
        let m = rpc(&url, "mempool", json!({}))?;
        Ok((m["count"] == 0).then_some(()))
    })?;
    drop(node);
    Ok(())
}
