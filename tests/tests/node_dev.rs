//! End-to-end tests of `aergo-node --dev` with the `aergo` CLI and the JSON-RPC API:
//! 1,000 transfers from several accounts, balances and nonces, past heights, restart,
//! bad input, WebSocket subscriptions, metrics, and a SIGKILL crash under load.

use aergo_e2e::{bin, free_port, poll};
use aergo_rpc::types::codes;
use aergo_rpc::{RpcClient, RpcError};
use aergo_types::{Address, Hash, Keypair, Tx, TxKind};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aergo_e2e::{http, start_dev_node as start};

// Test helper: a runtime that cannot be built means the test cannot run at all.
#[allow(clippy::expect_used)]
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn aergo(url: &str, keystore: &Path, args: &[&str]) -> Result<Value> {
    let out = Command::new(bin("aergo")?)
        .args(["--rpc", url, "--json", "--keystore"])
        .arg(keystore)
        .args(args)
        .env("AERGO_PASSWORD", "test-pw")
        .env("AERGO_KDF_MEMORY_KIB", "64")
        .output()?;
    if !out.status.success() {
        bail!(
            "aergo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "aergo {args:?} printed {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn transfer(
    key: &Keypair,
    nonce: u64,
    to: Address,
    amount: u128,
    chain_id: Hash,
    price: u128,
    gas: u64,
) -> Vec<u8> {
    Tx {
        kind: TxKind::Transfer,
        nonce,
        from: key.public(),
        to: Some(to),
        amount,
        payload: vec![],
        gas_limit: gas,
        gas_price: price,
        chain_id,
    }
    .sign(key)
    .encode()
}

/// Sends a JSON-RPC batch of `send_tx` calls; returns the hashes, failing on any error.
async fn send_batch(url: &str, txs: &[Vec<u8>]) -> Result<Vec<Hash>> {
    let body: Vec<Value> = txs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"jsonrpc": "2.0", "id": i, "method": "send_tx", "params": {"tx": hex::encode(t)}}))
        .collect();
    let body = serde_json::to_string(&body)?;
    let url = url.to_string();
    let (code, text) =
        tokio::task::spawn_blocking(move || http::raw("POST", &format!("{url}/"), &body)).await??;
    ensure!(code == 200, "HTTP {code}: {text}");
    let v: Vec<Value> = serde_json::from_str(&text)?;
    let mut out = Vec::new();
    for r in v {
        match r
            .get("result")
            .and_then(|x| x.get("hash"))
            .and_then(|h| h.as_str())
        {
            Some(h) => out.push(Hash::from_hex(h)?),
            None => bail!("send_tx failed: {r}"),
        }
    }
    Ok(out)
}

async fn wait_receipts(c: &RpcClient, hashes: &[Hash]) -> Result<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut max_h = 0;
    for h in hashes {
        loop {
            match c.receipt(h).await {
                Ok(r) => {
                    ensure!(r.status == "ok", "tx {h} failed: {:?}", r.error);
                    max_h = max_h.max(r.block_height);
                    break;
                }
                Err(RpcError::Remote { code, .. }) if code == codes::NOT_FOUND => {}
                Err(e) => return Err(e.into()),
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "receipt for {h} did not appear"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(max_h)
}

#[test]
fn thousand_transfers_balances_history_and_restart() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    let ks = tmp.path().join("keystore");
    let port = free_port()?;
    let mut node = start(&dir, port, &[])?;
    let url = node.url.clone();
    let rt = rt();
    let c = RpcClient::new(&url, Duration::from_secs(10))?;
    let info = rt.block_on(c.chain_info())?;
    let price = info.min_gas_price.0;
    let fee = info.base_gas as u128 * price;
    let dev = Keypair::dev();
    let dev_addr = Address::from_public_key(&dev.public());

    // Ten funded senders.
    let senders: Vec<Keypair> = (0..10u8)
        .map(|i| Keypair::from_seed(&[i + 1; 32]))
        .collect();
    let mut model: HashMap<Address, (u128, u64)> = HashMap::new();
    let dev_start = rt.block_on(c.account(&dev_addr.encode(), None))?;
    model.insert(dev_addr, (dev_start.balance.0, dev_start.nonce));
    let fund = 1_000 * aergo_types::AER_PER_AERGO;
    let mut txs = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let a = Address::from_public_key(&s.public());
        txs.push(transfer(
            &dev,
            dev_start.nonce + i as u64,
            a,
            fund,
            info.chain_id,
            price,
            info.base_gas,
        ));
        model.insert(a, (fund, 0));
        let d = model.get_mut(&dev_addr).context("dev")?;
        d.0 -= fund + fee;
        d.1 += 1;
    }
    let funded_height =
        rt.block_on(async { wait_receipts(&c, &send_batch(&url, &txs).await?).await })?;

    // 1,000 transfers: 100 from each sender to the others and to fresh addresses.
    let mut hashes = Vec::new();
    let fresh: Vec<Address> = (0..20u8)
        .map(|i| Address::from_public_key(&Keypair::from_seed(&[100 + i; 32]).public()))
        .collect();
    for round in 0..10u64 {
        let mut batch = Vec::new();
        for (i, s) in senders.iter().enumerate() {
            for k in 0..10u64 {
                let nonce = round * 10 + k;
                let to = if (nonce + i as u64).is_multiple_of(3) {
                    fresh[(usize::try_from(nonce).unwrap() + i) % fresh.len()]
                } else {
                    Address::from_public_key(
                        &senders[(i + 1 + usize::try_from(k).unwrap()) % senders.len()].public(),
                    )
                };
                let amount = 1_000_000_000_000 + (nonce as u128) * 7 + i as u128;
                batch.push(transfer(
                    s,
                    nonce,
                    to,
                    amount,
                    info.chain_id,
                    price,
                    info.base_gas,
                ));
                let from = Address::from_public_key(&s.public());
                let f = model.get_mut(&from).context("sender")?;
                f.0 -= amount + fee;
                f.1 += 1;
                model.entry(to).or_insert((0, 0)).0 += amount;
            }
        }
        hashes.extend(rt.block_on(send_batch(&url, &batch))?);
    }
    ensure!(hashes.len() == 1000);
    let last_height = rt.block_on(wait_receipts(&c, &hashes))?;

    let check_all = |c: &RpcClient, model: &HashMap<Address, (u128, u64)>| -> Result<()> {
        for (a, (bal, nonce)) in model {
            if *a == dev_addr {
                // The dev account also earns the fees as the dev chain's producer? No: the
                // producer is the node key, so dev's balance is exact.
            }
            let r = rt.block_on(c.account(&a.encode(), None))?;
            ensure!(
                r.balance.0 == *bal,
                "balance of {a}: node {} model {bal}",
                r.balance.0
            );
            ensure!(
                r.nonce == *nonce,
                "nonce of {a}: node {} model {nonce}",
                r.nonce
            );
        }
        Ok(())
    };
    check_all(&c, &model)?;
    // Past heights: right after funding every sender held exactly `fund`.
    let check_history = |c: &RpcClient| -> Result<()> {
        for s in &senders {
            let a = Address::from_public_key(&s.public()).encode();
            let r = rt.block_on(c.account(&a, Some(funded_height)))?;
            ensure!(
                r.balance.0 == fund && r.nonce == 0,
                "{a} at height {funded_height}: {r:?}"
            );
            let before = rt.block_on(c.account(&a, Some(0)))?;
            ensure!(before.balance.0 == 0, "{a} at genesis: {before:?}");
        }
        Ok(())
    };
    check_history(&c)?;
    // Every stage saw the transfers (pipeline_status, and the same on /metrics).
    let pipe = aergo_e2e::testnet::rpc(&url, "pipeline_status", json!({}))?;
    let stage = |name: &str| -> Result<serde_json::Value> {
        pipe["stages"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
            .with_context(|| format!("stage {name} in {pipe}"))
    };
    for name in ["ingest", "verify", "admit", "assemble"] {
        let s = stage(name)?;
        ensure!(s["items"].as_u64() >= Some(1000), "{name}: {s}");
        ensure!(s["busy_us"].as_u64() > Some(0), "{name}: {s}");
    }
    for name in ["commit", "publish"] {
        let s = stage(name)?;
        ensure!(s["runs"].as_u64() >= Some(2), "{name}: {s}");
    }
    let (_, text) = http::raw("GET", &format!("{url}/metrics"), "")?;
    ensure!(
        text.contains("aergo_stage_items_total{stage=\"admit\"}")
            && text.contains("aergo_stage_queue{stage=\"assemble\"}"),
        "{text}"
    );
    // The CLI reads the same history.
    let a0 = Address::from_public_key(&senders[0].public()).encode();
    let v = aergo(
        &url,
        &ks,
        &["balance", &a0, "--at", &funded_height.to_string()],
    )?;
    ensure!(v["balance"] == json!(fund.to_string()), "{v}");

    // Graceful restart keeps everything.
    node.proc.signal(libc::SIGTERM);
    let st = node.proc.wait_timeout(Duration::from_secs(20))?;
    ensure!(st.success(), "node exited with {st}");
    let out = Command::new(bin("aergo-node")?)
        .args(["check", "--data-dir"])
        .arg(&dir)
        .output()?;
    ensure!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node2 = start(&dir, port, &[])?;
    let c2 = RpcClient::new(&node2.url, Duration::from_secs(10))?;
    let h = rt.block_on(c2.chain_info())?.height;
    ensure!(
        h >= last_height,
        "height {h} after restart is below {last_height}"
    );
    check_all(&c2, &model)?;
    check_history(&c2)?;
    Ok(())
}

#[test]
fn cli_accounts_send_wait_proof_and_subscriptions() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ks = tmp.path().join("keystore");
    let node = start(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let rt = rt();
    let c = RpcClient::new(&url, Duration::from_secs(10))?;
    let mut sub = rt.block_on(c.subscribe_new_blocks())?;

    let addr = aergo(&url, &ks, &["account", "new"])?["address"]
        .as_str()
        .context("address")?
        .to_string();
    ensure!(addr.starts_with('A'));
    let list = aergo(&url, &ks, &["account", "list"])?;
    ensure!(list.as_array().map(|a| a.len()) == Some(1), "{list}");
    let sent = aergo(
        &url,
        &ks,
        &[
            "send", "--from", "dev", "--to", &addr, "--amount", "1.5aergo", "--wait", "included",
        ],
    )?;
    let hash = sent["hash"].as_str().context("hash")?.to_string();
    ensure!(sent["block_height"].as_u64().is_some(), "{sent}");
    let bal = aergo(&url, &ks, &["balance", &addr])?;
    ensure!(bal["balance"] == json!("1500000000000000000"), "{bal}");
    ensure!(bal["nonce"] == json!(0));
    let r = aergo(&url, &ks, &["receipt", &hash])?;
    ensure!(r["status"] == json!("ok"), "{r}");
    let t = aergo(&url, &ks, &["tx", &hash])?;
    ensure!(
        t["status"] == json!("included") && t["tx"]["to"] == json!(addr),
        "{t}"
    );
    let chain = aergo(&url, &ks, &["chain"])?;
    for f in ["height", "finalized_height", "best_hash"] {
        ensure!(chain.get(f).is_some(), "chain lacks {f}: {chain}");
    }
    let peers = aergo(&url, &ks, &["node", "peers"])?;
    ensure!(peers == json!([]), "a solo dev node has no peers: {peers}");
    let b = aergo(&url, &ks, &["block", "1"])?;
    ensure!(
        b["height"] == json!(1) && b["hash"].as_str().map(|h| h.len()) == Some(64),
        "{b}"
    );
    let p = aergo(&url, &ks, &["proof", &addr])?;
    ensure!(p["verified"] == json!(true), "{p}");
    // Spend from the keystore account (password from AERGO_PASSWORD).
    let back = aergo(
        &url,
        &ks,
        &[
            "send", "--from", &addr, "--to", "dev", "--amount", "0.5", "--wait", "final",
        ],
    )?;
    ensure!(back["status"] == json!("ok"), "{back}");
    // Wrong password: clear error, nothing sent.
    let out = Command::new(bin("aergo")?)
        .args(["--rpc", &url, "--keystore"])
        .arg(&ks)
        .args(["send", "--from", &addr, "--to", "dev", "--amount", "0.1"])
        .env("AERGO_PASSWORD", "wrong")
        .output()?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("wrong password")
    );
    // Export then import into a second keystore gives the same address.
    let secret = aergo(&url, &ks, &["account", "export", &addr])?["secret_key"]
        .as_str()
        .context("key")?
        .to_string();
    let ks2 = tmp.path().join("ks2");
    let imported = aergo(&url, &ks2, &["account", "import", "--key", &secret])?;
    ensure!(imported["address"] == json!(addr));
    // Bad CLI input.
    for bad in [
        vec!["balance", "notanaddress"],
        vec!["send", "--from", "dev", "--to", "dev", "--amount", "-1"],
        vec!["tx", "abc"],
    ] {
        let out = Command::new(bin("aergo")?)
            .args(["--rpc", &url])
            .args(&bad)
            .output()?;
        ensure!(
            !out.status.success() && !out.stderr.is_empty(),
            "{bad:?} should fail with a message"
        );
    }

    // A block notification arrives over WebSocket.
    let n =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), sub.next()).await })?;
    let blk = n.context("subscription closed")??;
    ensure!(blk.height >= 1);
    // Metrics.
    let (code, text) = http::raw("GET", &format!("{url}/metrics"), "")?;
    ensure!(
        code == 200 && text.contains("aergo_height ") && text.contains("aergo_io_backend{backend="),
        "{text}"
    );
    Ok(())
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = start(
        &tmp.path().join("node"),
        free_port()?,
        &["--no-empty-blocks"],
    )?;
    let url = node.url.clone();
    let rt = rt();
    let c = RpcClient::new(&url, Duration::from_secs(10))?;
    let info = rt.block_on(c.chain_info())?;
    let dev = Keypair::dev();
    let dev_a = Address::from_public_key(&dev.public());
    let before = rt.block_on(c.account(&dev_a.encode(), None))?;
    let call = |body: &str| -> Result<Value> {
        let (code, text) = http::raw("POST", &format!("{url}/"), body)?;
        ensure!(code == 200, "HTTP {code}");
        Ok(serde_json::from_str(&text)?)
    };
    let code_of = |v: &Value| v["error"]["code"].as_i64().unwrap_or(0);
    ensure!(code_of(&call("{not json")?) == codes::PARSE_ERROR);
    ensure!(
        code_of(&call(r#"{"jsonrpc":"1.0","id":1,"method":"chain_info"}"#)?)
            == codes::INVALID_REQUEST
    );
    ensure!(
        code_of(&call(r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#)?) == codes::METHOD_NOT_FOUND
    );
    ensure!(
        code_of(&call(
            r#"{"jsonrpc":"2.0","id":1,"method":"send_tx","params":{"tx":"zz"}}"#
        )?) == codes::INVALID_PARAMS
    );
    ensure!(
        code_of(&call(
            r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"hash":"12"}}"#
        )?) == codes::INVALID_PARAMS
    );
    ensure!(
        code_of(&call(
            r#"{"jsonrpc":"2.0","id":1,"method":"block","params":{"height":99999}}"#
        )?) == codes::NOT_FOUND
    );
    ensure!(
        code_of(&call(
            r#"{"jsonrpc":"2.0","id":1,"method":"account","params":{"address":"Abc"}}"#
        )?) == codes::INVALID_PARAMS
    );
    ensure!(code_of(&call("[]")?) == codes::INVALID_REQUEST);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"send_tx","params":{{"tx":"{}"}}}}"#,
        "00".repeat(700_000)
    );
    let (code, _) = http::raw("POST", &format!("{url}/"), &big)?;
    ensure!(code == 413, "oversized body gave HTTP {code}");

    let to = Address::from_public_key(&Keypair::from_seed(&[7; 32]).public());
    let reason = |tx: Vec<u8>| -> Result<String> {
        let v = call(
            &json!({"jsonrpc":"2.0","id":1,"method":"send_tx","params":{"tx": hex::encode(tx)}})
                .to_string(),
        )?;
        ensure!(code_of(&v) == codes::TX_REJECTED, "expected rejection: {v}");
        Ok(v["error"]["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    let price = info.min_gas_price.0;
    let gas = info.base_gas;
    ensure!(
        reason(transfer(
            &dev,
            before.nonce,
            to,
            1,
            Hash::of(b"other chain"),
            price,
            gas
        ))? == "rule"
    );
    let mut bad_sig = transfer(&dev, before.nonce, to, 1, info.chain_id, price, gas);
    let n = bad_sig.len();
    bad_sig[n - 5] ^= 1;
    ensure!(reason(bad_sig)? == "signature");
    ensure!(
        reason(transfer(
            &dev,
            before.nonce + 5,
            to,
            1,
            info.chain_id,
            price,
            gas
        ))? == "nonce_gap"
    );
    ensure!(
        reason(transfer(
            &dev,
            before.nonce,
            to,
            before.balance.0,
            info.chain_id,
            price,
            gas
        ))? == "insufficient_balance"
    );
    ensure!(
        reason(transfer(
            &dev,
            before.nonce,
            to,
            1,
            info.chain_id,
            price - 1,
            gas
        ))? == "rule"
    );
    ensure!(
        reason(transfer(
            &dev,
            before.nonce,
            to,
            1,
            info.chain_id,
            price,
            gas - 1
        ))? == "rule"
    );
    let mut truncated = transfer(&dev, before.nonce, to, 1, info.chain_id, price, gas);
    truncated.truncate(50);
    ensure!(reason(truncated)? == "malformed");
    // Nothing changed: no block was produced (empty blocks are off) and dev is untouched.
    let after = rt.block_on(c.account(&dev_a.encode(), None))?;
    ensure!(
        after.balance == before.balance
            && after.nonce == before.nonce
            && after.next_nonce == before.nonce
    );
    ensure!(rt.block_on(c.mempool(10))?.count == 0);
    ensure!(rt.block_on(c.chain_info())?.height == info.height);
    // Per-client rate limit.
    let limited = start(
        &tmp.path().join("limited"),
        free_port()?,
        &["--rpc-rate-limit", "2"],
    )?;
    let mut codes_seen = Vec::new();
    for _ in 0..10 {
        let (_, text) = http::raw(
            "POST",
            &format!("{}/", limited.url),
            r#"{"jsonrpc":"2.0","id":1,"method":"chain_info"}"#,
        )?;
        let v: Value = serde_json::from_str(&text)?;
        codes_seen.push(code_of(&v));
    }
    ensure!(
        codes_seen.contains(&codes::RATE_LIMITED) && codes_seen[0] == 0,
        "{codes_seen:?}"
    );
    // On a pre-confirming producer a transaction is executed at admission: its nonce is
    // promised and cannot be replaced, whatever the fee.
    let nonce = rt.block_on(c.account(&dev_a.encode(), None))?.next_nonce;
    let first = transfer(&dev, nonce, to, 1, info.chain_id, price * 2, gas);
    let promised: Value = serde_json::from_str(
        &http::raw(
            "POST",
            &format!("{url}/"),
            &json!({"jsonrpc":"2.0","id":1,"method":"send_tx","params":{"tx": hex::encode(&first), "wait": "preconfirmed"}}).to_string(),
        )?
        .1,
    )?;
    ensure!(
        promised["result"]["preconfirmation"]["receipt"]["status"] == "ok",
        "{promised}"
    );
    let r = reason(transfer(&dev, nonce, to, 2, info.chain_id, price * 4, gas))?;
    ensure!(
        r == "nonce_too_low",
        "a replacement of a promised nonce: {r}"
    );
    // Without pre-confirmation the mempool's replacement rule applies: a same-nonce
    // replacement without a 10% higher fee is refused as underpriced. The producer may
    // include the first transaction before the second arrives (empty blocks are off, so it
    // builds as soon as the mempool has something): then the answer is nonce_too_low, the
    // account's nonce has moved, and the pair is tried again on the next nonce — a few
    // times at most.
    let plain = start(
        &tmp.path().join("plain"),
        free_port()?,
        &["--no-preconfirm", "--no-empty-blocks"],
    )?;
    let pc = RpcClient::new(&plain.url, Duration::from_secs(10))?;
    let preason = |tx: Vec<u8>| -> Result<String> {
        let (_, text) = http::raw(
            "POST",
            &format!("{}/", plain.url),
            &json!({"jsonrpc":"2.0","id":1,"method":"send_tx","params":{"tx": hex::encode(tx)}})
                .to_string(),
        )?;
        let v: Value = serde_json::from_str(&text)?;
        ensure!(code_of(&v) == codes::TX_REJECTED, "expected rejection: {v}");
        Ok(v["error"]["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    let (_, text) = http::raw(
        "POST",
        &format!("{}/", plain.url),
        &json!({"jsonrpc":"2.0","id":1,"method":"send_tx","params":{"tx": hex::encode(&first), "wait": "preconfirmed"}}).to_string(),
    )?;
    let v: Value = serde_json::from_str(&text)?;
    ensure!(
        code_of(&v) == codes::PRECONF_UNAVAILABLE && v["error"]["data"]["reason"] == "off",
        "{v}"
    );
    let mut seen = Vec::new();
    for _ in 0..8 {
        let nonce = rt.block_on(pc.account(&dev_a.encode(), None))?.next_nonce;
        rt.block_on(pc.send_tx(&transfer(&dev, nonce, to, 1, info.chain_id, price * 2, gas)))?;
        let r = preason(transfer(&dev, nonce, to, 2, info.chain_id, price * 2, gas))?;
        if r == "underpriced" {
            seen.push(r);
            break;
        }
        let now = rt.block_on(pc.account(&dev_a.encode(), None))?;
        ensure!(
            r == "nonce_too_low" && now.nonce > nonce,
            "{r} for a same-fee replacement at nonce {nonce} (account nonce {})",
            now.nonce
        );
        seen.push(r);
    }
    ensure!(
        seen.last().is_some_and(|r| r == "underpriced"),
        "never saw underpriced: {seen:?}"
    );
    Ok(())
}

#[test]
fn sigkill_under_load_leaves_a_consistent_chain() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    let port = free_port()?;
    let node = start(&dir, port, &["--rpc-rate-limit", "0"])?;
    let url = node.url.clone();
    let rt = rt();
    let c = RpcClient::new(&url, Duration::from_secs(10))?;
    let info = rt.block_on(c.chain_info())?;
    let dev = Keypair::dev();
    let recipients: Vec<Address> = (0..5u8)
        .map(|i| Address::from_public_key(&Keypair::from_seed(&[50 + i; 32]).public()))
        .collect();
    // Sustained load from another thread: batches of transfers keep arriving while the node
    // is killed mid-stream (the sender's errors after the kill are expected).
    let start_h = info.height;
    let dev_a = Address::from_public_key(&dev.public());
    let sender = {
        let url = url.clone();
        let (chain_id, price, gas) = (info.chain_id, info.min_gas_price.0, info.base_gas);
        std::thread::spawn(move || -> u64 {
            let rt = self::rt();
            let mut nonce = 0u64;
            loop {
                let batch: Vec<Vec<u8>> = (0..200)
                    .map(|i| {
                        transfer(
                            &dev,
                            nonce + i,
                            recipients[usize::try_from(nonce + i).unwrap() % 5],
                            1000 + i as u128,
                            chain_id,
                            price,
                            gas,
                        )
                    })
                    .collect();
                match rt.block_on(send_batch(&url, &batch)) {
                    Ok(_) => nonce += 200,
                    Err(e) if e.to_string().contains("mempool_full") => {
                        // Backpressure: admission outruns the blocks (1 MiB each); go on
                        // from the next nonce the node has not taken.
                        std::thread::sleep(Duration::from_millis(100));
                        let c = RpcClient::new(&url, Duration::from_secs(10)).ok();
                        match c.map(|c| rt.block_on(c.account(&dev_a.encode(), None))) {
                            Some(Ok(a)) => nonce = a.next_nonce,
                            _ => return nonce,
                        }
                    }
                    Err(e) => {
                        // Expected after the kill; before it, the reason shows in the output.
                        eprintln!("the sender stops at nonce {nonce}: {e:#}");
                        return nonce;
                    }
                }
                if nonce > 400_000 {
                    return nonce;
                }
            }
        })
    };
    let mut node = node;
    poll("blocks under load", Duration::from_secs(60), || {
        let h = rt.block_on(c.chain_info())?.height;
        let pending = rt.block_on(c.mempool(1))?.count;
        Ok((h >= start_h + 3 && pending > 0).then_some(()))
    })
    .with_context(|| {
        let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("txs=0"))
            .rev()
            .take(15)
            .collect();
        format!(
            "the node's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })?;
    node.proc.signal(libc::SIGKILL);
    node.proc.wait_timeout(Duration::from_secs(10))?;
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
    ensure!(
        sent >= 600,
        "only {sent} transfers were sent before the kill"
    );
    let dev = Keypair::dev();
    // The log and the index agree after recovery.
    let out = Command::new(bin("aergo-node")?)
        .args(["check", "--data-dir"])
        .arg(&dir)
        .output()?;
    ensure!(
        out.status.success(),
        "check failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let node2 = start(&dir, port, &["--rpc-rate-limit", "0"])?;
    let c2 = RpcClient::new(&node2.url, Duration::from_secs(10))?;
    let tip = rt.block_on(c2.chain_info())?.height;
    // Replay every block from genesis and compare balances.
    let mut model: HashMap<String, u128> = HashMap::new();
    let dev_a = Address::from_public_key(&dev.public()).encode();
    model.insert(dev_a.clone(), aergo_types::TOTAL_SUPPLY);
    let mut fees_to: HashMap<String, u128> = HashMap::new();
    for h in 1..=tip {
        let b = rt.block_on(c2.block_by_height(h, true))?;
        for t in &b.txs {
            let from = t["from"].as_str().context("from")?.to_string();
            let to = t["to"].as_str().context("to")?.to_string();
            let amount: u128 = t["amount"].as_str().context("amount")?.parse()?;
            let hash = Hash::from_hex(t["hash"].as_str().context("hash")?)?;
            let fee = rt.block_on(c2.receipt(&hash))?.fee.0;
            *model.entry(from).or_default() -= amount + fee;
            *model.entry(to).or_default() += amount;
            *fees_to.entry(b.summary.producer.clone()).or_default() += fee;
        }
    }
    for (a, f) in fees_to {
        *model.entry(a).or_default() += f;
    }
    for (a, bal) in &model {
        let r = rt.block_on(c2.account(a, Some(tip)))?;
        ensure!(
            r.balance.0 == *bal,
            "{a}: node {} replay {bal}",
            r.balance.0
        );
    }
    Ok(())
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a real `mib` MiB filesystem (tmpfs) at `mnt`. Mounting needs root, which CI has:
/// under CI a refusal is an error; elsewhere `None` (the caller reports and returns).
fn small_disk(mnt: &Path, mib: u32) -> Result<Option<SmallDisk>> {
    std::fs::create_dir_all(mnt)?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if mounted {
        return Ok(Some(SmallDisk(mnt.to_path_buf())));
    }
    if aergo_e2e::ci() {
        bail!("cannot mount a {mib} MiB tmpfs (this test needs root)");
    }
    eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
    Ok(None)
}

#[test]
fn a_nearly_full_data_disk_is_refused_with_the_figures() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mnt = tmp.path().join("small");
    let Some(_disk) = small_disk(&mnt, 32)? else {
        return Ok(());
    };
    let data = mnt.join("chain");
    let out = Command::new(bin("aergo-node")?)
        .args(["--dev", "--data-dir"])
        .arg(&data)
        .args(["--rpc-addr", &format!("127.0.0.1:{}", free_port()?)])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "exit {:?}: {err}", out.status);
    ensure!(
        err.contains("MiB free of") && err.contains("at least 128 MiB"),
        "{err}"
    );
    // Refused before anything was written: no database, no block log, no key.
    ensure!(
        !data.join("db").exists() && !data.join("blocks").exists(),
        "the node wrote to the full disk"
    );
    Ok(())
}

#[test]
fn a_disk_filling_up_pauses_production_until_space_is_freed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mnt = tmp.path().join("disk");
    // A real 256 MiB filesystem the test can fill.
    let Some(_disk) = small_disk(&mnt, 256)? else {
        return Ok(());
    };
    let node = start(&mnt.join("chain"), free_port()?, &[])?;
    let rt = rt();
    let c = RpcClient::new(&node.url, Duration::from_secs(5))?;
    let h0 = rt.block_on(c.chain_info())?.height;
    poll("blocks on the small disk", Duration::from_secs(30), || {
        Ok((rt.block_on(c.chain_info())?.height >= h0 + 2).then_some(()))
    })?;

    // Fill the disk to 32 MiB free (below the 64 MiB the node keeps writing with).
    let (_, avail, _) = aergo_os::sample::statvfs(&mnt)?;
    let filler = mnt.join("filler");
    let f = std::fs::File::create(&filler)?;
    let want = avail.saturating_sub(32 << 20);
    let mut written = 0u64;
    let chunk = vec![0xa5u8; 1 << 20];
    let mut w = std::io::BufWriter::new(f);
    while written < want {
        std::io::Write::write_all(&mut w, &chunk)?;
        written += chunk.len() as u64;
    }
    std::io::Write::flush(&mut w)?;
    drop(w);
    let st = poll("node_status.disk_low", Duration::from_secs(30), || {
        let s = rt.block_on(c.node_status())?;
        Ok(s.disk_low.then_some(s))
    })?;
    ensure!(st.disk_low);
    // Paused: over three block intervals the height moves by at most the block in flight.
    let paused_at = rt.block_on(c.chain_info())?.height;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        let h = rt.block_on(c.chain_info())?.height;
        ensure!(
            h <= paused_at + 1,
            "blocks kept coming on a full disk: {h} > {paused_at} + 1"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Space freed: production resumes by itself, the node never died.
    std::fs::remove_file(&filler)?;
    poll("production to resume", Duration::from_secs(30), || {
        let s = rt.block_on(c.node_status())?;
        let h = rt.block_on(c.chain_info())?.height;
        Ok((!s.disk_low && h > paused_at + 1).then_some(()))
    })?;
    Ok(())
}
