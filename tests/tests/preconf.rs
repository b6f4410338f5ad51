//! Pre-confirmation end to end on `aergo-node --dev`, through real JSON-RPC over HTTP:
//! hundreds of promised transfers and Figure-6 calls (some failing) from concurrent
//! clients, each found in the promised block at the promised position with the promised
//! receipt, field by field; tampered and forged promises refused by `aergo preconf verify`;
//! and a producer killed (SIGKILL) right after promising, whose restart keeps the promises.

// Test arithmetic on small counts (far below 2^32); `signed` takes a transaction's fields.
#![allow(clippy::cast_possible_truncation, clippy::too_many_arguments)]

use aergo_e2e::{bin, deploy_figure6, free_port, start_dev_node as start};
use aergo_rpc::{PreconfJson, RpcClient};
use aergo_types::{Address, Hash, Keypair, Tx, TxKind, AER_PER_AERGO};
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

// Test helper: a runtime that cannot be built means the test cannot run at all.
#[allow(clippy::expect_used)]
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

fn signed(
    key: &Keypair,
    nonce: u64,
    kind: TxKind,
    to: Address,
    amount: u128,
    payload: Vec<u8>,
    gas: u64,
    chain_id: Hash,
) -> Vec<u8> {
    Tx {
        kind,
        nonce,
        from: key.public(),
        to: Some(to),
        amount,
        payload,
        gas_limit: gas,
        gas_price: 1_000_000_000,
        chain_id,
    }
    .sign(key)
    .encode()
}

/// One promise and what was sent.
struct Promised {
    p: PreconfJson,
}

/// Checks that every promise is kept: the block at the promised height extends the
/// promised parent and holds the transaction at the promised position, and the receipt is
/// the promised one, field by field.
async fn assert_kept(c: &RpcClient, promised: &[Promised]) -> Result<()> {
    let last = promised.iter().map(|x| x.p.height).max().unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while c.chain_info().await?.height < last {
        ensure!(
            std::time::Instant::now() < deadline,
            "height {last} never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut blocks = std::collections::HashMap::new();
    for x in promised {
        let p = &x.p;
        if let std::collections::hash_map::Entry::Vacant(e) = blocks.entry(p.height) {
            e.insert(c.block_by_height(p.height, false).await?);
        }
        let b = &blocks[&p.height];
        ensure!(
            b.parent_hash == p.parent,
            "block {} has another parent",
            p.height
        );
        let at = b
            .txs
            .get(p.position as usize)
            .and_then(|t| t.as_str())
            .map(str::to_string);
        ensure!(
            at.as_deref() == Some(p.tx_hash.to_string().as_str()),
            "block {} holds {at:?} at position {}, promised {}",
            p.height,
            p.position,
            p.tx_hash
        );
        let r = c.receipt(&p.tx_hash).await?;
        ensure!(
            r.block_height == p.height && r.index == p.position,
            "{} moved",
            p.tx_hash
        );
        ensure!(r.block_hash == b.summary.hash);
        ensure!(r.status == p.receipt.status, "status of {}", p.tx_hash);
        ensure!(r.error == p.receipt.error, "error of {}", p.tx_hash);
        ensure!(r.gas_used == p.receipt.gas_used, "gas of {}", p.tx_hash);
        ensure!(r.fee == p.receipt.fee, "fee of {}", p.tx_hash);
        ensure!(r.result == p.receipt.result, "result of {}", p.tx_hash);
        ensure!(r.events == p.receipt.events, "events of {}", p.tx_hash);
    }
    Ok(())
}

fn aergo(url: &str, args: &[&str], stdin: Option<&str>) -> Result<std::process::Output> {
    use std::io::Write;
    let mut child = Command::new(bin("aergo")?)
        .args(["--rpc", url])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(s.as_bytes())?;
    }
    drop(child.stdin.take());
    Ok(child.wait_with_output()?)
}

#[test]
fn promises_from_concurrent_clients_are_kept_field_by_field() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let port = free_port()?;
    let node = start(&tmp.path().join("node"), port, &["--rpc-rate-limit", "0"])?;
    let url = format!("{}/", node.url);
    let contract = deploy_figure6(&url, tmp.path())?;
    let contract = Address::decode(&contract).context("contract address")?;
    let rt = rt();
    let c = std::sync::Arc::new(RpcClient::new(&url, Duration::from_secs(20))?);
    let info = rt.block_on(c.chain_info())?;
    let dev = Keypair::dev();
    let dev_a = Address::from_public_key(&dev.public());
    // Eight funded senders (funded with promised transfers too).
    let keys: Vec<Keypair> = (0..8u8)
        .map(|i| Keypair::from_seed(&[40 + i; 32]))
        .collect();
    let mut nonce = rt.block_on(c.account(&dev_a.encode(), None))?.next_nonce;
    let mut promised = Vec::new();
    for k in &keys {
        let to = Address::from_public_key(&k.public());
        let tx = signed(
            &dev,
            nonce,
            TxKind::Transfer,
            to,
            1000 * AER_PER_AERGO,
            vec![],
            info.base_gas,
            info.chain_id,
        );
        let r = rt.block_on(c.send_tx_preconfirmed(&tx))?;
        ensure!(r.preconfirmation.receipt.status == "ok");
        promised.push(Promised {
            p: r.preconfirmation,
        });
        nonce += 1;
    }
    // Concurrent clients: each sender's transfers in nonce order, each waiting for its
    // promise; dev calls Figure 6's transfer (a third OK, a third "Sender not found", a third
    // failing).
    const PER_SENDER: u64 = 50;
    const CALLS: u64 = 42;
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let c = c.clone();
            let k = k.clone();
            let (chain_id, gas) = (info.chain_id, info.base_gas);
            let to = Address::from_public_key(&keys[(i + 1) % keys.len()].public());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for n in 0..PER_SENDER {
                    let tx = signed(
                        &k,
                        n,
                        TxKind::Transfer,
                        to,
                        1 + u128::from(n),
                        vec![],
                        gas,
                        chain_id,
                    );
                    out.push(c.send_tx_preconfirmed(&tx).await?.preconfirmation);
                }
                anyhow::Ok(out)
            }));
        }
        let c2 = c.clone();
        let chain_id = info.chain_id;
        let dev = dev.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in 0..CALLS {
                // OK, a returned "Sender not found", and an exception (a failed receipt).
                let (from, amount) = match n % 3 {
                    0 => ("alice", "1"),
                    1 => ("carol", "1"),
                    _ => ("alice", "not a number"),
                };
                let payload = serde_json::to_vec(
                    &json!({"function": "transfer", "args": [from, "bob", amount]}),
                )?;
                let tx = signed(
                    &dev,
                    nonce + n,
                    TxKind::Call,
                    contract,
                    0,
                    payload,
                    200_000,
                    chain_id,
                );
                out.push(c2.send_tx_preconfirmed(&tx).await?.preconfirmation);
            }
            anyhow::Ok(out)
        }));
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        anyhow::Ok(all)
    })?;
    ensure!(results.len() as u64 == 8 * PER_SENDER + CALLS);
    let failed = results
        .iter()
        .filter(|p| p.receipt.status == "failed")
        .count();
    let oks = results.iter().filter(|p| p.receipt.result == "OK").count();
    let absent = results
        .iter()
        .filter(|p| p.receipt.result == "Sender not found")
        .count();
    ensure!(failed == CALLS as usize / 3, "{failed} failed calls");
    ensure!(oks == CALLS as usize / 3, "{oks} calls answered OK");
    ensure!(
        absent == CALLS as usize / 3,
        "{absent} calls: Sender not found"
    );
    for p in &results {
        p.to_preconf().map_err(anyhow::Error::msg)?.verify()?;
    }
    promised.extend(results.into_iter().map(|p| Promised { p }));
    // Positions within each block are distinct and dense from 0.
    let mut by_height: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
    for x in &promised {
        by_height.entry(x.p.height).or_default().push(x.p.position);
    }
    for (h, mut v) in by_height.clone() {
        v.sort_unstable();
        ensure!(
            v == (0..v.len() as u32).collect::<Vec<_>>(),
            "block {h} positions {v:?}"
        );
    }
    rt.block_on(assert_kept(&c, &promised))?;
    let st = aergo_e2e::testnet::rpc(&url, "preconf_status", json!({}))?;
    ensure!(
        st["promised"].as_u64() >= Some(promised.len() as u64),
        "{st}"
    );
    ensure!(st["p99_us"].as_u64().is_some() && st["broken"] == 0, "{st}");
    // The handler's own time of those sends (request → answer) is reported too.
    ensure!(
        st["request_p50_us"].as_u64().is_some()
            && st["request_p99_us"].as_u64() >= st["request_p50_us"].as_u64(),
        "{st}"
    );

    // `aergo preconf verify`: a genuine promise verifies and is kept; a tampered receipt, a
    // shifted position and a promise signed by another key (not the slot's producer) fail.
    let genuine = serde_json::to_string(&json!({"preconfirmation": promised[3].p}))?;
    let out = aergo(&url, &["preconf", "verify", "-"], Some(&genuine))?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(String::from_utf8_lossy(&out.stdout).contains("kept"));
    let mut t = promised[3].p.clone();
    t.receipt.gas_used += 1;
    let out = aergo(
        &url,
        &["preconf", "verify", "-"],
        Some(&serde_json::to_string(&t)?),
    )?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("tampered"));
    let mut t = promised[3].p.clone();
    t.receipt_bytes = {
        let mut r = aergo_types::Receipt::decode(&hex::decode(&t.receipt_bytes)?)?;
        r.gas_used += 1;
        t.receipt.gas_used += 1;
        hex::encode(r.encode())
    };
    let out = aergo(
        &url,
        &["preconf", "verify", "-"],
        Some(&serde_json::to_string(&t)?),
    )?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("sequencing hash"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = promised[3].p.clone();
    t.position += 1;
    let out = aergo(
        &url,
        &["preconf", "verify", "-"],
        Some(&serde_json::to_string(&t)?),
    )?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("signature"));
    let liar = Keypair::from_seed(&[99; 32]);
    let forged = aergo_types::preconf::Preconfirmation::sign(
        &liar,
        promised[3].p.chain_id,
        promised[3].p.slot,
        promised[3].p.height,
        promised[3].p.parent,
        promised[3].p.position,
        promised[3].p.prev_sequencing_hash,
        promised[3]
            .p
            .to_preconf()
            .map_err(anyhow::Error::msg)?
            .receipt,
    );
    let out = aergo(
        &url,
        &["preconf", "verify", "-"],
        Some(&serde_json::to_string(&PreconfJson::of(&forged))?),
    )?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(!out.status.success() && err.contains("belongs to"), "{err}");
    // /metrics: promises, the latency, the last block's DTT width (a block of many
    // independent transfers runs several at once).
    let (code, metrics) = aergo_e2e::http::raw("GET", &format!("{url}metrics"), "")?;
    ensure!(code == 200, "GET /metrics: {code}");
    let value = |name: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    ensure!(
        value("aergo_preconf_promised_total") >= Some(promised.len() as f64),
        "{metrics}"
    );
    ensure!(
        value("aergo_preconf_broken_total") == Some(0.0),
        "{metrics}"
    );
    ensure!(value("aergo_exec_workers") >= Some(1.0), "{metrics}");
    ensure!(value("aergo_dtt_width").is_some(), "{metrics}");
    // Batches: the signatures are verified together, each item keeps its own answer: a
    // tampered signature fails alone, plain and pre-confirmed alike.
    for (wait, first) in [(None, 0usize), (Some("preconfirmed"), 3)] {
        let items: Vec<serde_json::Value> = (first..first + 3)
            .map(|i| {
                let mut tx = signed(
                    &keys[i],
                    PER_SENDER,
                    TxKind::Transfer,
                    dev_a,
                    1,
                    vec![],
                    info.base_gas,
                    info.chain_id,
                );
                if i == first + 1 {
                    let n = tx.len();
                    tx[n - 3] ^= 1;
                }
                let mut params = json!({"tx": hex::encode(&tx)});
                if let Some(w) = wait {
                    params["wait"] = json!(w);
                }
                json!({"jsonrpc": "2.0", "id": i, "method": "send_tx", "params": params})
            })
            .collect();
        let (code, text) = aergo_e2e::http::raw("POST", &url, &serde_json::to_string(&items)?)?;
        ensure!(code == 200, "HTTP {code}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let out = v.as_array().context("a batch answer")?;
        ensure!(out.len() == 3, "{v}");
        ensure!(
            out[0]["result"]["hash"].is_string() && out[2]["result"]["hash"].is_string(),
            "{v}"
        );
        ensure!(out[1]["error"]["data"]["reason"] == "signature", "{v}");
        if wait.is_some() {
            ensure!(
                out[0]["result"]["preconfirmation"]["receipt"]["status"] == "ok",
                "{v}"
            );
        }
    }
    // A bad `wait` value is refused and admits nothing.
    let tx = signed(
        &dev,
        10_000,
        TxKind::Transfer,
        dev_a,
        1,
        vec![],
        info.base_gas,
        info.chain_id,
    );
    let v = aergo_e2e::testnet::rpc(
        &url,
        "send_tx",
        json!({"tx": hex::encode(&tx), "wait": "soon"}),
    );
    ensure!(v.is_err(), "{v:?}");
    Ok(())
}

fn recovered(log: &Path) -> Result<bool> {
    Ok(std::fs::read_to_string(log)?.contains("promises of the previous run kept"))
}

#[test]
fn a_producer_killed_after_promising_keeps_its_promises() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    let port = free_port()?;
    let rt = rt();
    let dev = Keypair::dev();
    let to = Address::from_public_key(&Keypair::from_seed(&[77; 32]).public());
    let mut promised = Vec::new();
    let mut recoveries = 0;
    // Kill right after the last promise of a burst, before the slot (1 s) is sealed: the
    // restarted node seals the logged promises. A kill that lands after the seal is fine
    // too (the block holds them); at least one of the attempts must exercise recovery.
    for attempt in 0..4 {
        let mut node = start(&dir, port, &["--rpc-rate-limit", "0"])?;
        let c = RpcClient::new(&node.url, Duration::from_secs(20))?;
        let info = rt.block_on(c.chain_info())?;
        let dev_a = Address::from_public_key(&dev.public());
        let first = rt.block_on(c.account(&dev_a.encode(), None))?.next_nonce;
        for nonce in first..first + 10 {
            let tx = signed(
                &dev,
                nonce,
                TxKind::Transfer,
                to,
                1,
                vec![],
                info.base_gas,
                info.chain_id,
            );
            promised.push(Promised {
                p: rt.block_on(c.send_tx_preconfirmed(&tx))?.preconfirmation,
            });
        }
        node.proc.signal(libc::SIGKILL);
        node.proc.wait_timeout(Duration::from_secs(10))?;
        drop(node);
        let node = start(&dir, port, &["--rpc-rate-limit", "0"])?;
        if recovered(&dir.with_extension("log"))? {
            recoveries += 1;
        }
        let c = RpcClient::new(&node.url, Duration::from_secs(20))?;
        rt.block_on(assert_kept(&c, &promised))
            .with_context(|| format!("attempt {attempt}"))?;
        let st = aergo_e2e::testnet::rpc(&node.url, "preconf_status", json!({}))?;
        ensure!(st["broken"] == 0, "{st}");
        if recoveries >= 1 && attempt >= 1 {
            break;
        }
    }
    if recoveries == 0 {
        bail!("no kill landed before a seal: the recovery path was never exercised");
    }
    Ok(())
}
