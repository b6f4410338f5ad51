//! DPoS networks of real `aergo-node` processes on 127.0.0.1, made by `aergo testnet init`
//! with short slots (500 ms) and short rounds (10 slots). Every node reaches every other
//! through its own TCP proxy that the test controls, so partitions are cut outside the nodes.
//!
//! One network, one scenario in order (each step starts from the state the previous one
//! left, so the network boots once): 4 BPs reach a common LIB → one BP killed, blocks and
//! LIB continue → it comes back and syncs → a 2/2 partition stops LIB and no two nodes
//! finalize different blocks at one height → healed, all converge and LIB moves again → a
//! fifth, non-producing node joins late and syncs → a libp2p peer driven by the test sends
//! an invalid block and an equivocating one: both rejected, the peer banned, chain unchanged.
//! Right after the first step, transfers pre-confirmed by whichever BP produces the next slot
//! are kept on every node, and a transfer sent to every BP at once (across slot boundaries)
//! is promised by at most one.

use aergo_e2e::proxy::TcpProxy;
use aergo_e2e::testnet::{base_port, rpc};
use aergo_e2e::{bin, http, poll, KillOnDrop};
use aergo_types::{Block, Hash, Keypair};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NODES: usize = 5;
const BPS: usize = 4;

struct Net {
    dir: PathBuf,
    urls: Vec<String>,
    p2p: Vec<SocketAddr>,
    /// proxies[(from, to)]: how node `from` reaches node `to`.
    proxies: BTreeMap<(usize, usize), TcpProxy>,
    procs: Vec<Option<KillOnDrop>>,
}

impl Net {
    fn create(dir: &Path) -> Result<Self> {
        let out = dir.join("tn");
        let st = Command::new(bin("aergo")?)
            .args(["testnet", "init", "--bps", &BPS.to_string()])
            .args(["--nodes", &NODES.to_string()])
            .args(["--interval-ms", "500", "--round-slots", "10"])
            .args(["--start-delay-ms", "4000"])
            .args(["--base-port", &base_port(NODES)?.to_string()])
            .arg("--out")
            .arg(&out)
            .output()?;
        if !st.status.success() {
            bail!("testnet init: {}", String::from_utf8_lossy(&st.stderr));
        }
        let mut urls = Vec::new();
        let mut p2p = Vec::new();
        let mut peer_ids = Vec::new();
        for i in 0..NODES {
            let text = std::fs::read_to_string(out.join(format!("node{}/aergo.toml", i + 1)))?;
            let cfg: toml::Value = toml::from_str(&text)?;
            let node = &cfg["node"];
            urls.push(format!(
                "http://{}",
                node["rpc_addr"].as_str().context("rpc_addr")?
            ));
            p2p.push(node["p2p_addr"].as_str().context("p2p_addr")?.parse()?);
            peer_ids.push(node["peers"].clone());
        }
        // Rewrite every node's peers to go through its own proxies.
        let mut proxies = BTreeMap::new();
        for from in 0..NODES {
            for (to, addr) in p2p.iter().enumerate() {
                if from != to {
                    proxies.insert((from, to), TcpProxy::start(*addr)?);
                }
            }
        }
        for (from, _) in p2p.iter().enumerate() {
            let path = out.join(format!("node{}/aergo.toml", from + 1));
            let mut text = std::fs::read_to_string(&path)?;
            for (to, addr) in p2p.iter().enumerate() {
                if from != to {
                    let port = proxies[&(from, to)].port();
                    text =
                        text.replace(&format!("/tcp/{}/", addr.port()), &format!("/tcp/{port}/"));
                }
            }
            std::fs::write(&path, text)?;
        }
        Ok(Self {
            dir: out,
            urls,
            p2p,
            proxies,
            procs: (0..NODES).map(|_| None).collect(),
        })
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let mut cmd = Command::new(bin("aergo-node")?);
        cmd.arg("--config")
            .arg(self.dir.join(format!("node{}/aergo.toml", i + 1)))
            .env("AERGO_LOG", "info,aergo_p2p=warn");
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(format!("node{}.log", i + 1)))?,
            ));
        self.procs[i] = Some(KillOnDrop::spawn(&mut cmd)?);
        let health = format!("{}/health", self.urls[i]);
        let log = self.dir.join(format!("node{}.log", i + 1));
        poll("node health", Duration::from_secs(30), || {
            Ok(http::get_ok(&health).then_some(()))
        })
        .with_context(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            format!("node {} log (newest first):\n{}", i + 1, tail.join("\n"))
        })
    }

    fn kill(&mut self, i: usize) {
        self.procs[i] = None;
    }

    fn info(&self, i: usize) -> Result<Value> {
        rpc(&self.urls[i], "consensus_info", json!({}))
    }

    fn lib(&self, i: usize) -> Result<u64> {
        self.info(i)?["lib_height"].as_u64().context("lib")
    }

    fn height(&self, i: usize) -> Result<u64> {
        self.info(i)?["height"].as_u64().context("height")
    }

    fn hash_at(&self, i: usize, h: u64) -> Result<String> {
        Ok(rpc(&self.urls[i], "block", json!({"height": h}))?["hash"]
            .as_str()
            .context("hash")?
            .to_string())
    }

    /// Cuts (or heals) every link between the two groups, both directions.
    fn partition(&self, a: &[usize], b: &[usize], cut: bool) {
        for &x in a {
            for &y in b {
                for key in [(x, y), (y, x)] {
                    if let Some(p) = self.proxies.get(&key) {
                        p.set_blocked(cut);
                    }
                }
            }
        }
    }

    /// No two of `nodes` finalized different blocks at one height.
    fn assert_finality_agrees(&self, nodes: &[usize]) -> Result<()> {
        let libs: Vec<u64> = nodes.iter().map(|&i| self.lib(i)).collect::<Result<_>>()?;
        let common = libs.iter().copied().min().unwrap_or(0);
        if common == 0 {
            return Ok(());
        }
        let hashes: Vec<String> = nodes
            .iter()
            .map(|&i| self.hash_at(i, common))
            .collect::<Result<_>>()?;
        if hashes.iter().any(|h| *h != hashes[0]) {
            bail!("final blocks differ at height {common}: {hashes:?} (libs {libs:?})");
        }
        Ok(())
    }

    /// Polls until `nodes` share one final block at or above `min_lib`.
    fn wait_common_lib(&self, nodes: &[usize], min_lib: u64, timeout: Duration) -> Result<u64> {
        poll("a common LIB", timeout, || {
            let libs: Vec<u64> = nodes.iter().map(|&i| self.lib(i)).collect::<Result<_>>()?;
            let low = libs.iter().copied().min().unwrap_or(0);
            if low < min_lib {
                return Ok(None);
            }
            self.assert_finality_agrees(nodes)?;
            Ok(Some(low))
        })
    }
}

/// The kernel's ephemeral port range (`ip_local_port_range`).
#[test]
fn dpos_network_survives_faults() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut net = Net::create(tmp.path())?;
    let bps: Vec<usize> = (0..BPS).collect();
    for i in 0..BPS {
        net.start(i)?;
    }

    // 1. Four BPs reach a common LIB.
    let lib = net.wait_common_lib(&bps, 6, Duration::from_secs(60))?;
    let info = net.info(0)?;
    assert_eq!(info["engine"], "dpos");
    assert_eq!(
        info["dpos"]["active"].as_array().map(|a| a.len()),
        Some(BPS)
    );
    let peers = rpc(&net.urls[0], "peers", json!({}))?;
    assert_eq!(peers.as_array().map(|p| p.len()), Some(BPS - 1), "{peers}");
    eprintln!("step 1: common LIB {lib}");

    // 1b. Pre-confirmation across the four BPs: transfers sent to the BPs in turn (each
    // forwarded to the BP that produces the next slot, or promised by it) are kept, at the
    // promised position with the promised receipt, on every node.
    let seed = std::fs::read_to_string(net.dir.join("faucet.key"))?;
    let mut b = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut b)?;
    let faucet = Keypair::from_seed(&b);
    let (n, producers, refusals) =
        aergo_e2e::testnet::preconfirmations_kept(&net.urls[..BPS], &faucet, 12)?;
    assert!(producers >= 2, "promises from {producers} BPs only");
    eprintln!("step 1b: {n} pre-confirmed transfers from {producers} BPs kept on all nodes ({refusals} not_producer refusals)");
    // 1c. Slot boundaries: each transfer sent to all four BPs at once, at moments drifting
    // across slot boundaries, is promised by at most one of them, and every promise is kept.
    let (once, none) = aergo_e2e::testnet::promised_once(&net.urls[..BPS], &faucet, 16)?;
    assert!(
        once >= 8,
        "only {once} of 16 simultaneous sends promised ({none} by none)"
    );
    eprintln!("step 1c: {once} of 16 transfers sent to every BP at once promised by exactly one, kept; {none} refused by all");

    // 2. One BP killed: blocks and LIB continue on the other three.
    net.kill(3);
    let live = [0, 1, 2];
    let h0 = net.height(0)?;
    let lib2 = net.wait_common_lib(&live, lib.max(h0) + 6, Duration::from_secs(60))?;
    assert!(net.height(0)? > h0 + 6);
    eprintln!("step 2: LIB {lib2} with one BP down");

    // 3. It comes back and syncs.
    net.start(3)?;
    let target = net.height(0)?;
    poll("the restarted BP to sync", Duration::from_secs(60), || {
        let h = net.height(3)?;
        Ok((h >= target && net.hash_at(3, target)? == net.hash_at(0, target)?).then_some(h))
    })?;
    let lib3 = net.wait_common_lib(&bps, lib2 + 3, Duration::from_secs(60))?;
    eprintln!("step 3: BP 4 back, common LIB {lib3}");

    // 4. A 2/2 partition: LIB stops, finality never diverges.
    net.partition(&[0, 1], &[2, 3], true);
    let cut_heights = [net.height(0)?, net.height(2)?];
    // Both halves keep producing in their own slots…
    poll("both halves to produce", Duration::from_secs(60), || {
        Ok(
            (net.height(0)? >= cut_heights[0] + 4 && net.height(2)? >= cut_heights[1] + 4)
                .then_some(()),
        )
    })?;
    // …but LIB stays where it was (at most the last block both halves shared).
    let libs_cut: Vec<u64> = bps.iter().map(|&i| net.lib(i)).collect::<Result<_>>()?;
    let before = net.height(0)?;
    poll(
        "more blocks during the partition",
        Duration::from_secs(60),
        || Ok((net.height(0)? >= before + 4).then_some(())),
    )?;
    let libs_later: Vec<u64> = bps.iter().map(|&i| net.lib(i)).collect::<Result<_>>()?;
    assert_eq!(libs_cut, libs_later, "LIB advanced during a 2/2 partition");
    net.assert_finality_agrees(&bps)?;
    let forked = net.hash_at(0, before.min(net.height(2)?))?
        != net.hash_at(2, before.min(net.height(2)?))?;
    assert!(forked, "the halves should have built different blocks");
    eprintln!("step 4: partition held LIB at {libs_cut:?}");

    // 5. Healed: everyone converges on one chain and LIB moves again.
    net.partition(&[0, 1], &[2, 3], false);
    let stuck = libs_later.iter().copied().max().unwrap_or(0);
    let lib5 = net.wait_common_lib(&bps, stuck + 4, Duration::from_secs(90))?;
    poll("one best chain", Duration::from_secs(60), || {
        let h = bps
            .iter()
            .map(|&i| net.height(i))
            .collect::<Result<Vec<_>>>()?;
        let low = h.iter().copied().min().unwrap_or(0);
        let hs: Vec<String> = bps
            .iter()
            .map(|&i| net.hash_at(i, low))
            .collect::<Result<_>>()?;
        Ok(hs.iter().all(|x| *x == hs[0]).then_some(()))
    })?;
    let reorgs: u64 = bps
        .iter()
        .map(|&i| Ok(net.info(i)?["reorgs"].as_u64().unwrap_or(0)))
        .sum::<Result<u64>>()?;
    assert!(
        reorgs >= 1,
        "healing a partition needs a fork switch somewhere"
    );
    eprintln!("step 5: healed, common LIB {lib5}, {reorgs} reorgs");

    // 6. A fifth, non-producing node joins late and syncs.
    net.start(4)?;
    let target = net.lib(0)?;
    poll("the late joiner to sync", Duration::from_secs(60), || {
        let h = net.height(4)?;
        Ok((h >= target && net.hash_at(4, target)? == net.hash_at(0, target)?).then_some(()))
    })?;
    let joiner = net.info(4)?;
    assert!(
        joiner["synced_blocks"].as_u64().unwrap_or(0) > 0,
        "{joiner}"
    );
    assert_eq!(joiner["dpos"]["me_scheduled"], false);
    eprintln!("step 6: late joiner synced to {target}");

    // 7. A peer driven by the test: an invalid block, then an equivocating one.
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bad_peer(&net))?;
    net.assert_finality_agrees(&[0, 1, 2, 3, 4])?;
    Ok(())
}

async fn bad_peer(net: &Net) -> Result<()> {
    use aergo_p2p::{P2p, P2pConfig, PeerId};
    let chain = rpc(&net.urls[0], "chain_info", json!({}))?;
    let chain_id = Hash::from_hex(chain["chain_id"].as_str().context("chain id")?)?;
    let mut cfg = P2pConfig::new(
        chain_id.0,
        Keypair::generate().seed(),
        "/ip4/127.0.0.1/tcp/0".parse()?,
    );
    // Straight to node 1, not through a proxy.
    cfg.bootnodes = vec![format!("/ip4/127.0.0.1/tcp/{}", net.p2p[0].port()).parse()?];
    let (me, _events) = P2p::start(cfg, None).await?;
    let my_id = me.local_peer_id().to_string();
    let node1: PeerId = net.info(0)?["peer_id"]
        .as_str()
        .context("peer id")?
        .parse()?;
    let listed = |net: &Net| -> Result<bool> {
        let peers = rpc(&net.urls[0], "peers", json!({}))?;
        Ok(peers
            .as_array()
            .map(|a| a.iter().any(|p| p["id"] == my_id.as_str()))
            .unwrap_or(false))
    };
    poll(
        "node 1 to list the test peer",
        Duration::from_secs(30),
        || Ok(listed(net)?.then_some(())),
    )?;
    let rejected0 = net.info(0)?["rejected_blocks"].as_u64().unwrap_or(0);

    // Invalid: a block on the tip with a forged signature.
    let tip = me.request_status(node1).await?;
    let parent = me
        .request_blocks(node1, tip.height, tip.height)
        .await?
        .pop()
        .context("tip block")?;
    let parent = Block::decode(&parent)?;
    // Invalid whatever the tip is by then: the producer's signature does not verify.
    let stranger = Keypair::generate();
    let mut bad = parent.clone();
    bad.header.height = parent.header.height + 1;
    bad.header.parent = parent.hash();
    bad.header.producer = stranger.public();
    bad.txs.clear();
    bad.header.tx_root = Block::compute_tx_root(&bad.txs);
    let slot = u64::from_be_bytes(parent.header.consensus[..8].try_into()?) + 1;
    bad.header.consensus = slot.to_be_bytes().to_vec();
    bad.header.timestamp_ms = parent.header.timestamp_ms + 500;
    bad.header.sign(&stranger);
    bad.header.signature.0[0] ^= 1;
    publish(&me, bad.encode()).await?;
    poll(
        "the invalid block to be rejected",
        Duration::from_secs(30),
        || {
            let r = net.info(0)?["rejected_blocks"].as_u64().unwrap_or(0);
            Ok((r > rejected0).then_some(()))
        },
    )?;
    assert_ne!(
        net.hash_at(0, bad.header.height).ok(),
        Some(bad.hash().to_string())
    );

    // Equivocation: a second, different block signed by node 2's key for a slot in which
    // node 2 already produced.
    let seed = std::fs::read_to_string(net.dir.join("node2/node.key"))?;
    let mut raw = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut raw)?;
    let bp2 = Keypair::from_seed(&raw);
    let status = me.request_status(node1).await?;
    let from = status.height.saturating_sub(30).max(1);
    let blocks = me.request_blocks(node1, from, status.height).await?;
    let original = blocks
        .iter()
        .rev()
        .filter_map(|b| Block::decode(b).ok())
        .find(|b| b.header.producer == bp2.public())
        .context("a recent block by node 2")?;
    let mut twin = original.clone();
    twin.header.state_root = Hash([7; 32]);
    twin.header.sign(&bp2);
    assert_ne!(twin.hash(), original.hash());
    publish(&me, twin.encode()).await?;
    poll(
        "the test peer to be banned",
        Duration::from_secs(30),
        || Ok((!listed(net)?).then_some(())),
    )?;
    let r = net.info(0)?["rejected_blocks"].as_u64().unwrap_or(0);
    assert!(r >= rejected0 + 2, "both bad blocks rejected ({r})");
    assert_eq!(
        net.hash_at(0, original.header.height)?,
        original.hash().to_string(),
        "the original block stays"
    );
    // Banned: a new connection is refused too.
    let _ = me
        .dial(format!("/ip4/127.0.0.1/tcp/{}", net.p2p[0].port()).parse()?)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!listed(net)?, "a banned peer came back");
    me.shutdown().await;
    Ok(())
}

/// Publishes once the mesh has formed (gossipsub refuses while no peer subscribes).
async fn publish(me: &aergo_p2p::P2pHandle, bytes: Vec<u8>) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match me.publish_block(bytes.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => bail!("publish: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
