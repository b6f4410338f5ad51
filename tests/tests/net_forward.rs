//! Forwarded pre-confirmations on a DPoS network of three real `aergo-node` processes made by
//! `aergo testnet init` (500 ms slots), over real libp2p: a `send_tx` with
//! `wait: "preconfirmed"` sent to any node — also one that does not produce the next slot —
//! returns the slot producer's signed pre-confirmation (relayed unchanged: it names the real
//! producer, `aergo preconf verify` accepts it), and every promise is kept at its position.
//! `aergo send --wait preconfirmed` works against a node that does not produce. Sends to
//! every node at once, drifting across slot boundaries, are promised at most once. With a
//! producer down, a send whose slot is that producer's is refused `not_producer`, naming it
//! and saying it is unreachable. A libp2p peer driven by the test forwards one transaction
//! to every node at once (at most one promise; a node that does not produce refuses without
//! forwarding again), a forged signature and garbage (refused). Prints the client's latency of forwarded and direct
//! pre-confirmations (p50/p99); `AERGO_FWD_SENDS` sets how many transfers (default 90).

use aergo_e2e::testnet::{base_port, promised_once, promises_kept, rpc, start_node};
use aergo_e2e::{bin, poll};
use aergo_types::{Address, Keypair};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const NODES: usize = 3;
const PASSWORD: &str = "forward-test-password";

fn pct(v: &mut [f64], q: usize) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = (v.len() * q).div_ceil(100).saturating_sub(1);
    v[i.min(v.len() - 1)]
}

#[test]
fn any_node_returns_the_producers_preconfirmation() -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("tn");
    let st = Command::new(bin("aergo")?)
        .args(["testnet", "init", "--bps", &NODES.to_string()])
        .args(["--nodes", &NODES.to_string()])
        .args(["--interval-ms", "500", "--round-slots", "6"])
        .args(["--start-delay-ms", "3000"])
        .args(["--base-port", &base_port(NODES)?.to_string()])
        .arg("--out")
        .arg(&dir)
        .output()?;
    ensure!(
        st.status.success(),
        "testnet init: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut urls = Vec::new();
    let mut p2p_ports = Vec::new();
    for i in 0..NODES {
        let text = std::fs::read_to_string(dir.join(format!("node{}/aergo.toml", i + 1)))?;
        let cfg: toml::Value = toml::from_str(&text)?;
        urls.push(format!(
            "http://{}",
            cfg["node"]["rpc_addr"].as_str().context("rpc_addr")?
        ));
        let p2p: std::net::SocketAddr = cfg["node"]["p2p_addr"]
            .as_str()
            .context("p2p_addr")?
            .parse()?;
        p2p_ports.push(p2p.port());
    }
    let mut nodes = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        nodes.push(start_node(&dir, i, u)?);
    }
    let addrs: Vec<String> = urls
        .iter()
        .map(|u| {
            Ok(rpc(u, "node_status", json!({}))?["node_address"]
                .as_str()
                .context("node_address")?
                .to_string())
        })
        .collect::<Result<_>>()?;
    let seed = std::fs::read_to_string(dir.join("faucet.key"))?;
    let mut b = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut b)?;
    let faucet = Keypair::from_seed(&b);
    let chain_id = aergo_types::Hash::from_hex(
        rpc(&urls[0], "chain_info", json!({}))?["chain_id"]
            .as_str()
            .context("chain_id")?,
    )?;
    let from = Address::from_public_key(&faucet.public());
    let next_nonce_of = |urls: &[String]| -> Result<u64> {
        let mut n = 0;
        for u in urls {
            n = n.max(
                rpc(u, "account", json!({"address": from.encode()}))?["next_nonce"]
                    .as_u64()
                    .context("next_nonce")?,
            );
        }
        Ok(n)
    };
    // Every node connected to both others and produced (the network is up).
    for u in &urls {
        poll(&format!("{u} at height 3"), Duration::from_secs(20), || {
            Ok((rpc(u, "chain_info", json!({}))?["height"].as_u64() >= Some(3)).then_some(()))
        })?;
    }

    // Transfers sent to the nodes in turn: each answers with the promise of the producer of
    // the slot (its own, or forwarded), and every promise is kept.
    let sends: usize = std::env::var("AERGO_FWD_SENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    let to = Address::from_public_key(&Keypair::generate().public());
    let mut promised: Vec<Value> = Vec::new();
    let (mut direct_ms, mut forwarded_ms) = (Vec::new(), Vec::new());
    let mut retries = 0;
    let mut nonce = next_nonce_of(&urls)?;
    let mut forwarded_example = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while promised.len() < sends {
        ensure!(
            Instant::now() < deadline,
            "{} of {sends} promised in 60 s ({retries} retries)",
            promised.len()
        );
        let k = promised.len() % NODES;
        let tx = aergo_e2e::signed_transfer(&faucet, nonce, to, chain_id);
        let t0 = Instant::now();
        let r = rpc(
            &urls[k],
            "send_tx",
            json!({"tx": hex::encode(tx.encode()), "wait": "preconfirmed"}),
        );
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(v) => {
                let p = v["preconfirmation"].clone();
                ensure!(p["tx_hash"] == json!(tx.hash), "{v}");
                let producer = p["producer_address"].as_str().context("producer")?;
                ensure!(
                    addrs.iter().any(|a| a == producer),
                    "promise by an unknown producer {producer}"
                );
                if producer == addrs[k] {
                    direct_ms.push(ms);
                } else {
                    forwarded_ms.push(ms);
                    forwarded_example.get_or_insert_with(|| (k, v.clone()));
                }
                promised.push(p);
                nonce += 1;
            }
            // A boundary race (the producer sealed as the forward arrived), or the previous
            // promise not yet known where this one went: send again.
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
                retries += 1;
                ensure!(retries <= sends, "{retries} retries; last: {e}");
                std::thread::sleep(Duration::from_millis(20));
                nonce = next_nonce_of(&urls)?.max(nonce);
            }
            Err(e) => bail!("preconfirmed send to node {}: {e}", k + 1),
        }
    }
    ensure!(
        forwarded_ms.len() >= sends / 3,
        "only {} of {sends} sends were forwarded",
        forwarded_ms.len()
    );
    promises_kept(&urls, &promised)?;
    // The relays count what they forwarded, the producers what they served (`/metrics`).
    let metric = |u: &str, name: &str| -> Result<f64> {
        let (_, text) = aergo_e2e::http::raw("GET", &format!("{u}/metrics"), "")?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    };
    let (mut relayed, mut served) = (0.0, 0.0);
    for u in &urls {
        relayed += metric(u, "aergo_preconf_forwarded_total{outcome=\"promised\"}")?;
        served += metric(u, "aergo_preconf_forwards_served_total")?;
    }
    ensure!(
        relayed >= forwarded_ms.len() as f64 && served >= relayed,
        "metrics: {relayed} relayed, {served} served, {} forwarded",
        forwarded_ms.len()
    );
    let (fp50, fp99) = (pct(&mut forwarded_ms, 50), pct(&mut forwarded_ms, 99));
    let (dp50, dp99) = (pct(&mut direct_ms, 50), pct(&mut direct_ms, 99));
    eprintln!(
        "forwarded pre-confirmation latency (client, HTTP on loopback, 3 BPs, 500 ms slots): forwarded n={} p50 {fp50:.2} ms p99 {fp99:.2} ms; direct n={} p50 {dp50:.2} ms p99 {dp99:.2} ms; ratio p50 {:.2}x p99 {:.2}x; {retries} retries",
        forwarded_ms.len(),
        direct_ms.len(),
        fp50 / dp50,
        fp99 / dp99
    );

    // A JSON-RPC batch of pre-confirmed sends to a node that does not produce: every item is
    // forwarded (a sender's transactions one after another) and promised, in nonce order.
    let mut batch_ok = false;
    for attempt in 0..9 {
        let k = attempt % NODES;
        let n0 = next_nonce_of(&urls)?.max(nonce);
        let items: Vec<Value> = (0..4u64)
            .map(|i| {
                let tx = aergo_e2e::signed_transfer(&faucet, n0 + i, to, chain_id);
                json!({"jsonrpc": "2.0", "id": i, "method": "send_tx",
                       "params": {"tx": hex::encode(tx.encode()), "wait": "preconfirmed"}})
            })
            .collect();
        let (code, text) =
            aergo_e2e::http::raw("POST", &urls[k], &Value::Array(items).to_string())?;
        ensure!(code == 200, "{code}: {text}");
        let answers: Vec<Value> = serde_json::from_str(&text).with_context(|| text.clone())?;
        ensure!(answers.len() == 4, "{text}");
        let ps: Vec<&Value> = answers
            .iter()
            .filter_map(|a| a.get("result").map(|r| &r["preconfirmation"]))
            .collect();
        nonce = n0 + ps.len() as u64;
        if ps.len() < 4 {
            // A boundary race part-way: the rest is sent again in the next batch.
            nonce = next_nonce_of(&urls)?.max(n0);
            continue;
        }
        promised.extend(ps.iter().map(|p| (*p).clone()));
        let forwarded = ps
            .iter()
            .filter(|p| p["producer_address"] != addrs[k].as_str())
            .count();
        if forwarded == 4 {
            // One producer, one block or two: positions grow with the nonces.
            let keys: Vec<(u64, u64)> = ps
                .iter()
                .map(|p| {
                    (
                        p["height"].as_u64().unwrap_or(0),
                        p["position"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            ensure!(keys.windows(2).all(|w| w[0] < w[1]), "order {keys:?}");
            batch_ok = true;
            break;
        }
    }
    ensure!(
        batch_ok,
        "no batch was forwarded and promised whole in 9 tries"
    );
    promises_kept(&urls, &promised)?;

    // A relayed promise verifies with `aergo preconf verify` against the relay's RPC (the
    // signature, the slot's producer, and the block that kept it).
    let (relay, example) = forwarded_example.context("no forwarded promise")?;
    let file = tmp.path().join("promise.json");
    std::fs::write(&file, example.to_string())?;
    let aergo = |url: &str, args: &[&str]| -> Result<(bool, String)> {
        let out = Command::new(bin("aergo")?)
            .args(["--rpc", url, "--keystore"])
            .arg(tmp.path().join("keys"))
            .env("AERGO_PASSWORD", PASSWORD)
            .args(args)
            .output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    };
    let (ok, out) = aergo(
        &urls[relay],
        &["preconf", "verify", file.to_str().context("path")?],
    )?;
    ensure!(ok && out.contains("kept"), "verify: {out}");

    // The CLI against each node in turn: `--wait preconfirmed` returns a promise from
    // whichever node; at least one of them is forwarded.
    let (ok, out) = aergo(
        &urls[0],
        &[
            "account",
            "import",
            "--key",
            seed.trim(),
            "--name",
            "faucet",
        ],
    )?;
    ensure!(ok, "import: {out}");
    let mut cli_forwarded = 0;
    for attempt in 0..12 {
        let u = &urls[attempt % NODES];
        let (ok, out) = aergo(
            u,
            &[
                "--json",
                "send",
                "--from",
                "faucet",
                "--to",
                &from.encode(),
                "--amount",
                "1aer",
                "--wait",
                "preconfirmed",
            ],
        )?;
        if !ok {
            // A boundary race or a nonce the node has not seen yet: the next attempt.
            ensure!(
                ["not_producer", "nonce", "timeout", "forward_failed"]
                    .iter()
                    .any(|r| out.contains(r)),
                "aergo send: {out}"
            );
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let v: Value = serde_json::from_str(out.trim()).with_context(|| out.clone())?;
        let producer = v["preconfirmation"]["producer_address"]
            .as_str()
            .context("producer_address")?;
        if producer != addrs[attempt % NODES] {
            cli_forwarded += 1;
            if cli_forwarded >= 2 {
                break;
            }
        }
    }
    ensure!(cli_forwarded >= 1, "no CLI send was forwarded");

    // Slot boundaries: the same transfer sent to every node at once is promised by at most
    // one producer (the relays answer that one promise), and the promises are kept.
    let (once, none) = promised_once(&urls, &faucet, 8)?;
    ensure!(
        once >= 4,
        "only {once} of 8 simultaneous sends promised ({none} by none)"
    );

    // A peer driven by the test, over the real p2p layer: a valid transaction forwarded to
    // every node at once gets at most one promise and, from a node that does not produce
    // now, a `not_producer` refusal that it did not forward again; a forged signature and
    // garbage are refused; the nodes keep serving.
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(hostile_peer(
        &urls,
        &p2p_ports,
        &faucet,
        chain_id,
        next_nonce_of(&urls)?,
    ))?;

    // Node 3 down: a send whose slot is its own is refused `not_producer`, naming it and
    // saying it is unreachable; nothing is admitted.
    drop(nodes.pop());
    let down = &addrs[NODES - 1];
    poll(
        "a refusal naming the unreachable producer",
        Duration::from_secs(20),
        || {
            let n = next_nonce_of(&urls[..NODES - 1])?;
            let tx = aergo_e2e::signed_transfer(&faucet, n, to, chain_id);
            match rpc(
                &urls[0],
                "send_tx",
                json!({"tx": hex::encode(tx.encode()), "wait": "preconfirmed"}),
            ) {
                Err(e) if e.to_string().contains("unreachable") => {
                    let m = e.to_string();
                    ensure!(
                        m.contains("not_producer") && m.contains(down.as_str()),
                        "{m}"
                    );
                    ensure!(m.contains("its producer is"), "{m}");
                    Ok(Some(()))
                }
                Ok(_) | Err(_) => {
                    std::thread::sleep(Duration::from_millis(30));
                    Ok(None)
                }
            }
        },
    )?;
    eprintln!("net_forward took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn hostile_peer(
    urls: &[String],
    p2p_ports: &[u16],
    faucet: &Keypair,
    chain_id: aergo_types::Hash,
    nonce: u64,
) -> Result<()> {
    use aergo_p2p::preconf::PreconfResponse;
    use aergo_p2p::{P2p, P2pConfig, PeerId};
    let mut cfg = P2pConfig::new(
        chain_id.0,
        Keypair::generate().seed(),
        "/ip4/127.0.0.1/tcp/0".parse()?,
    );
    cfg.bootnodes = p2p_ports
        .iter()
        .map(|p| format!("/ip4/127.0.0.1/tcp/{p}").parse())
        .collect::<Result<_, _>>()?;
    let (me, _events) = P2p::start(cfg, None).await?;
    let ids: Vec<PeerId> = urls
        .iter()
        .map(|u| {
            Ok(rpc(u, "consensus_info", json!({}))?["peer_id"]
                .as_str()
                .context("peer_id")?
                .parse()?)
        })
        .collect::<Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while me
        .peers()
        .await?
        .iter()
        .filter(|p| ids.contains(&p.id))
        .count()
        < ids.len()
    {
        ensure!(
            Instant::now() < deadline,
            "the test peer did not connect to every node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A valid transfer to every node at once.
    let tx = aergo_e2e::signed_transfer(faucet, nonce, faucet_address(faucet), chain_id);
    let answers =
        futures_util::future::join_all(ids.iter().map(|id| me.forward_preconf(*id, tx.encode())))
            .await;
    let mut promises = std::collections::BTreeSet::new();
    let mut not_producer = 0;
    for a in answers {
        match a? {
            PreconfResponse::Promised(b) => {
                let p = aergo_types::preconf::Preconfirmation::decode(&b)?;
                p.verify()?;
                ensure!(p.tx_hash == tx.hash, "a promise for another transaction");
                promises.insert(p.signature.0.to_vec());
            }
            PreconfResponse::Refused { reason, data, .. } => {
                // Never forwarded again: a relay's answer would name `forwarded_to`.
                ensure!(!data.contains("forwarded_to"), "re-forwarded: {data}");
                if reason == "not_producer" {
                    not_producer += 1;
                }
            }
        }
    }
    ensure!(
        promises.len() <= 1,
        "{} promises for one transaction",
        promises.len()
    );
    ensure!(not_producer >= 1, "no node refused not_producer");
    // A forged signature: refused by the node (`signature`; the node penalises the peer,
    // `InvalidTx`, which the p2p tests observe).
    let mut forged =
        aergo_e2e::signed_transfer(faucet, nonce + 1, faucet_address(faucet), chain_id);
    forged.signature.0[0] ^= 1;
    match me.forward_preconf(ids[0], forged.encode()).await? {
        PreconfResponse::Refused { reason, code, .. } => {
            ensure!(reason == "signature" && code == -32002, "{reason} {code}");
        }
        PreconfResponse::Promised(_) => bail!("a forged transaction was promised"),
    }
    // Undecodable bytes: refused by the network layer.
    match me.forward_preconf(ids[1], vec![0xee; 64]).await? {
        PreconfResponse::Refused { reason, .. } => ensure!(reason == "malformed", "{reason}"),
        PreconfResponse::Promised(_) => bail!("garbage was promised"),
    }
    // The nodes are up and answer.
    for u in urls {
        rpc(u, "chain_info", json!({}))?;
    }
    me.shutdown().await;
    Ok(())
}

fn faucet_address(k: &Keypair) -> Address {
    Address::from_public_key(&k.public())
}
