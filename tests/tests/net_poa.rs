//! A PoA network of real `aergo-node` processes on 127.0.0.1: `aergo testnet init --engine
//! poa --bps 3` with 500 ms slots, three producers in round-robin. They reach a common LIB
//! above a few blocks and hold the same block at that height. The testnet also registers two
//! repositories at genesis (`--genesis-repo team --genesis-repo vault:private`): node 1 hosts them from its
//! first start, the others know them but do not host them, and a transfer moves units
//! inside one.
//!
//! Then the private repository's replication: node 2 is added to vault's nodes in its
//! directory and starts replicating it (same blocks, same directory); node 3 and a
//! hand-made libp2p peer (subscribed to vault's would-be topics, asking for its status,
//! blocks and membership) never get a block, a transaction or a sync answer of it. Once
//! node 2 is removed from the directory, it receives no new vault block. Node 3, added to
//! the public repository team's nodes, replicates it over its gossip topics. The PoA
//! repository `trio` is produced by all three nodes in turn: they agree on its blocks, and a
//! transfer sent to node 3 is in all three copies.
//!
//! Last, a branch of the root chain produced by node 1 (its operator accepts it): a transfer
//! sent to node 3 reaches node 1 over the branch's gossip topic, and the branch's blocks
//! replicate to nodes 2 and 3 (the same block at the same height on every node). Node 2, a
//! replica, takes the merge into `main`; every node re-executes the merge block from the
//! candidates it embeds to the same state. A branch of the repository `trio` replicates the
//! same way (a transfer sent to node 3 is on every node's copy, in the same block), a
//! private branch never leaves its producer, and a consistent merge of a branch with a
//! transfer on each side to the same account gives that account both on every node.
//!
//! And pre-confirmation across producers: transfers sent with `wait: "preconfirmed"` to the
//! nodes in turn (a node that does not produce the next slot forwards it to the one that
//! does) are on every node in the promised block, at the promised position, with the
//! promised receipt.

use aergo_e2e::testnet::{base_port, rpc, rpc_as, start_node};
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
        .args([
            "--genesis-repo",
            "team",
            "--genesis-repo",
            "vault:private",
            "--genesis-repo",
            "trio:poa",
            "--dd-interval-ms",
            "500",
        ])
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
    assert_eq!(listed[1]["engine"], "poa", "{listed}");
    assert_eq!(listed[2]["visibility"], "private", "{listed}");
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
    private_repository_replication(&out, &urls, &faucet)?;
    public_repository_replication(&out, &urls, &faucet)?;
    poa_repository_across_nodes(&urls, &faucet)?;
    branch_merge_across_nodes(&urls, &faucet)?;
    repository_branch_replicates(&urls, &faucet)?;
    consistent_merge_across_nodes(&urls, &faucet)?;
    preconfirmations_across_nodes(&urls, &faucet)?;
    eprintln!(
        "poa: private repository replication done after {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}

fn key_file(path: &std::path::Path) -> Result<aergo_types::Keypair> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(std::fs::read_to_string(path)?.trim(), &mut b)?;
    Ok(aergo_types::Keypair::from_seed(&b))
}

/// A chain id: the root's, a repository's ledger (`NAME`) or directory (`NAME/dd`),
/// derived from the root's as every node derives it.
fn chain_id(url: &str, repo: &str) -> Result<aergo_types::Hash> {
    let v = rpc(url, "chain_info", json!({}))?;
    let root = aergo_types::Hash::from_hex(v["chain_id"].as_str().context("chain_id")?)?;
    Ok(match repo.split_once('/') {
        _ if repo == "aergo" => root,
        Some((name, _)) => {
            aergo_types::repo::directory_id(&aergo_types::repo::repo_id(&root, name))
        }
        None => aergo_types::repo::repo_id(&root, repo),
    })
}

/// Sends a transaction signed by `key` to node `url`'s `repo`. (The arguments are a
/// transaction's fields; a struct would only rename them.)
#[allow(clippy::too_many_arguments)]
fn send_in(
    url: &str,
    repo: &str,
    key: &aergo_types::Keypair,
    kind: aergo_types::TxKind,
    nonce: u64,
    to: Option<aergo_types::Address>,
    amount: u128,
    payload: Vec<u8>,
) -> Result<()> {
    let (gas_limit, gas_price) = match kind {
        aergo_types::TxKind::DirectoryChange => (100_000, 0),
        _ => (1000, 1_000_000_000),
    };
    let tx = aergo_types::Tx {
        kind,
        nonce,
        from: key.public(),
        to,
        amount,
        payload,
        gas_limit,
        gas_price,
        chain_id: chain_id(url, repo)?,
    }
    .sign(key);
    rpc_as(
        url,
        Some(key),
        "send_tx",
        json!({"repo": repo, "tx": hex::encode(tx.encode())}),
    )?;
    Ok(())
}

/// A repository's height on node `url`, read with a request signed by `key`.
fn height_in(url: &str, key: &aergo_types::Keypair, repo: &str) -> Result<u64> {
    rpc_as(url, Some(key), "chain_info", json!({"repo": repo}))?["height"]
        .as_u64()
        .context("height")
}

/// Waits until `to` holds `balance` in `repo` on node `url` (reads signed by `key` when
/// given) and returns that node's height of the repository then.
fn wait_balance(
    url: &str,
    key: Option<&aergo_types::Keypair>,
    repo: &str,
    to: &aergo_types::Address,
    balance: &str,
) -> Result<u64> {
    poll(
        &format!("{url} to hold {balance} in {repo}"),
        Duration::from_secs(30),
        || {
            let a = rpc_as(
                url,
                key,
                "account",
                json!({"repo": repo, "address": to.encode()}),
            )?;
            if a["balance"] != balance {
                return Ok(None);
            }
            let c = rpc_as(url, key, "chain_info", json!({"repo": repo}))?;
            Ok(c["height"].as_u64())
        },
    )
}

fn private_repository_replication(
    out: &std::path::Path,
    urls: &[String],
    faucet: &aergo_types::Keypair,
) -> Result<()> {
    use aergo_p2p::repo::{RepoBody, RepoResponse};
    use aergo_p2p::{NetEvent, P2p, P2pConfig, PeerId};
    use aergo_types::repo::DdOp;
    use aergo_types::TxKind;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let read = |url: &str, method: &str, params: Value| rpc_as(url, Some(faucet), method, params);
    let n2 = key_file(&out.join("node2/node.key"))?.public();
    let vault = chain_id(&urls[0], "vault")?;
    let vault_dd = chain_id(&urls[0], "vault/dd")?;
    let root = chain_id(&urls[0], "aergo")?;

    // The hand-made peer: a real libp2p node with a key no directory lists.
    let rt = tokio::runtime::Runtime::new()?;
    let info = rpc(&urls[0], "consensus_info", json!({}))?;
    let node1_addr: aergo_p2p::Multiaddr = info["listen_addrs"][0]
        .as_str()
        .context("listen addr")?
        .parse()?;
    let node1: PeerId = info["peer_id"].as_str().context("peer id")?.parse()?;
    let mut cfg = P2pConfig::new(
        root.0,
        aergo_types::Keypair::generate().seed(),
        "/ip4/127.0.0.1/tcp/0".parse()?,
    );
    cfg.bootnodes = vec![node1_addr];
    let (stranger, mut events) = rt.block_on(P2p::start(cfg, None))?;
    let leaked = Arc::new(AtomicUsize::new(0));
    let l = leaked.clone();
    let private = [vault.0, vault_dd.0];
    rt.spawn(async move {
        while let Some(e) = events.recv().await {
            if let NetEvent::Repo { chain, .. } = e {
                if private.contains(&chain) {
                    l.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    for c in private {
        rt.block_on(stranger.subscribe(c, true))?;
    }
    poll(
        "node 1 to list the stranger",
        Duration::from_secs(30),
        || {
            let peers = rpc(&urls[0], "peers", json!({}))?;
            let me = stranger.local_peer_id().to_string();
            Ok(peers
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["id"] == me.as_str()))
                .then_some(()))
        },
    )?;

    // Peers proved their node keys: node 1 lists node 2's node address; the stranger has
    // one too (its own key), which no directory lists.
    let n2_addr = aergo_types::Address::from_public_key(&n2).encode();
    poll(
        "node 1 to know node 2's node key",
        Duration::from_secs(30),
        || {
            let peers = rpc(&urls[0], "peers", json!({}))?;
            Ok(peers
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["node"] == n2_addr.as_str()))
                .then_some(()))
        },
    )?;

    // Node 2 becomes one of vault's nodes and replicates it.
    let add = DdOp::NodeAdd { key: n2 }.encode();
    send_in(
        &urls[0],
        "vault/dd",
        faucet,
        TxKind::DirectoryChange,
        0,
        None,
        0,
        add,
    )?;
    poll("node 2 to replicate vault", Duration::from_secs(30), || {
        Ok(read(&urls[1], "chain_info", json!({"repo": "vault"})).ok())
    })?;
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    send_in(
        &urls[0],
        "vault",
        faucet,
        TxKind::Transfer,
        0,
        Some(to),
        5,
        Vec::new(),
    )?;
    let at = wait_balance(&urls[1], Some(faucet), "vault", &to, "5")?;
    for repo in ["vault", "vault/dd"] {
        let h = at.min(height_in(&urls[1], faucet, repo)?);
        let b1 = read(&urls[0], "block", json!({"repo": repo, "height": h}))?;
        let b2 = read(&urls[1], "block", json!({"repo": repo, "height": h}))?;
        assert_eq!(b1["hash"], b2["hash"], "{repo} at {h}: {b1} vs {b2}");
    }
    let dd1 = read(&urls[0], "dd_info", json!({"repo": "vault/dd"}))?;
    let dd2 = read(
        &urls[1],
        "dd_info",
        json!({"repo": "vault/dd", "height": dd1["height"]}),
    )?;
    assert_eq!(dd1["nodes"], dd2["nodes"], "{dd1} vs {dd2}");
    assert_eq!(dd1["nodes"].as_array().map(Vec::len), Some(2), "{dd1}");
    let listed = read(&urls[1], "repo_show", json!({"name": "vault"}))?;
    assert_eq!(listed["role"], "member", "{listed}");

    // Node 3 and the stranger get nothing: no hosting, refusals naming the reason.
    let e = read(&urls[2], "chain_info", json!({"repo": "vault"}));
    assert!(
        e.as_ref()
            .is_err_and(|e| e.to_string().contains("does not host")),
        "{e:?}"
    );
    for c in private {
        for body in [
            RepoBody::Status,
            RepoBody::Member,
            RepoBody::Blocks { from: 0, to: 5 },
        ] {
            let r = rt.block_on(stranger.repo_request(node1, c, body.clone()))?;
            match r {
                RepoResponse::Refused(why) => {
                    assert!(why.contains("private") && why.contains("vault"), "{why}")
                }
                other => panic!("a non-member got {other:?} for {body:?}"),
            }
        }
    }

    // Node 2 is removed: from that directory block on it receives no new vault block.
    let remove = DdOp::NodeRemove { key: n2 }.encode();
    send_in(
        &urls[0],
        "vault/dd",
        faucet,
        TxKind::DirectoryChange,
        1,
        None,
        0,
        remove,
    )?;
    poll(
        "node 1's directory to drop node 2",
        Duration::from_secs(30),
        || {
            let d = read(
                &urls[0],
                "dd_info",
                json!({"repo": "vault/dd", "height": height_in(&urls[0], faucet, "vault/dd")?}),
            )?;
            Ok((d["nodes"].as_array().map(Vec::len) == Some(1)).then_some(()))
        },
    )?;
    let cut = height_in(&urls[0], faucet, "vault")?;
    for nonce in 1..=3 {
        send_in(
            &urls[0],
            "vault",
            faucet,
            TxKind::Transfer,
            nonce,
            Some(to),
            1,
            Vec::new(),
        )?;
    }
    poll(
        "vault's next transfers on node 1",
        Duration::from_secs(30),
        || {
            let a = read(
                &urls[0],
                "account",
                json!({"repo": "vault", "address": to.encode()}),
            )?;
            Ok((a["balance"] == "8").then_some(()))
        },
    )?;
    // The stranger pushes a well-formed vault transaction: node 1 takes nothing from a
    // peer that is not one of vault's nodes (checked after the quiet window below).
    // Nonce 4 is the faucet's next in vault, so node 1 would include it if it took it.
    let pushed = aergo_types::Tx {
        kind: TxKind::Transfer,
        nonce: 4,
        from: faucet.public(),
        to: Some(to),
        amount: 1,
        payload: Vec::new(),
        gas_limit: 1000,
        gas_price: 1_000_000_000,
        chain_id: vault,
    }
    .sign(faucet);
    let body = RepoBody::Push {
        block: false,
        bytes: aergo_p2p::ByteBuf::from(pushed.encode()),
    };
    let r = rt.block_on(stranger.repo_request(node1, vault.0, body))?;
    assert_eq!(
        r,
        RepoResponse::Ack,
        "the push was not even taken for checking"
    );

    let after = height_in(&urls[0], faucet, "vault")?;
    assert!(
        after > cut,
        "no new vault block after the removal ({cut} → {after})"
    );
    // Two status rounds (2 s each) of node 2 asking node 1: still nothing new.
    let quiet = Instant::now() + Duration::from_secs(5);
    while Instant::now() < quiet {
        let h2 = height_in(&urls[1], faucet, "vault")?;
        assert!(
            h2 <= cut,
            "node 2 received vault block {h2} after its removal at {cut}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        leaked.load(Ordering::SeqCst),
        0,
        "the stranger received private repository data"
    );
    let a = read(
        &urls[0],
        "account",
        json!({"repo": "vault", "address": to.encode()}),
    )?;
    assert_eq!(
        a["balance"], "8",
        "a non-member's pushed transfer was included: {a}"
    );
    let pool = read(&urls[0], "mempool", json!({"repo": "vault"}))?;
    assert!(
        !pool.to_string().contains(&pushed.hash.to_string()),
        "node 1 admitted a vault transaction pushed by a non-member: {pool}"
    );
    rt.block_on(stranger.shutdown());
    Ok(())
}

fn public_repository_replication(
    out: &std::path::Path,
    urls: &[String],
    faucet: &aergo_types::Keypair,
) -> Result<()> {
    use aergo_types::repo::DdOp;
    use aergo_types::TxKind;
    let n3 = key_file(&out.join("node3/node.key"))?.public();
    let add = DdOp::NodeAdd { key: n3 }.encode();
    send_in(
        &urls[0],
        "team/dd",
        faucet,
        TxKind::DirectoryChange,
        0,
        None,
        0,
        add,
    )?;
    poll("node 3 to replicate team", Duration::from_secs(30), || {
        Ok(rpc(&urls[2], "chain_info", json!({"repo": "team"})).ok())
    })?;
    let listed = rpc(&urls[2], "repo_show", json!({"name": "team"}))?;
    assert_eq!(listed["role"], "member", "{listed}");
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    // The faucet's second transfer in team (the first is above).
    send_in(
        &urls[0],
        "team",
        faucet,
        TxKind::Transfer,
        1,
        Some(to),
        3,
        Vec::new(),
    )?;
    let h = wait_balance(&urls[2], None, "team", &to, "3")?;
    let b1 = rpc(&urls[0], "block", json!({"repo": "team", "height": h}))?;
    let b3 = rpc(&urls[2], "block", json!({"repo": "team", "height": h}))?;
    assert_eq!(b1["hash"], b3["hash"], "team at {h}: {b1} vs {b3}");
    // Node 2 is not one of team's nodes: it does not replicate it.
    let e = rpc(&urls[1], "chain_info", json!({"repo": "team"}));
    assert!(
        e.as_ref()
            .is_err_and(|e| e.to_string().contains("does not host")),
        "{e:?}"
    );
    Ok(())
}

fn poa_repository_across_nodes(urls: &[String], faucet: &aergo_types::Keypair) -> Result<()> {
    use aergo_types::TxKind;
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    send_in(
        &urls[2],
        "trio",
        faucet,
        TxKind::Transfer,
        0,
        Some(to),
        4,
        Vec::new(),
    )?;
    // Final on every node: the balance read at each node's finalized height.
    let h = poll(
        "trio's transfer final on all three nodes",
        Duration::from_secs(45),
        || {
            let mut heights = Vec::new();
            for u in urls {
                let c = rpc(u, "chain_info", json!({"repo": "trio"}))?;
                let fin = c["finalized_height"].as_u64().context("finalized_height")?;
                let a = rpc(
                    u,
                    "account",
                    json!({"repo": "trio", "address": to.encode(), "height": fin}),
                )?;
                if a["balance"] != "4" {
                    return Ok(None);
                }
                heights.push(fin);
            }
            Ok(heights.into_iter().min())
        },
    )?;
    let hashes: Vec<Value> = urls
        .iter()
        .map(|u| Ok(rpc(u, "block", json!({"repo": "trio", "height": h}))?["hash"].clone()))
        .collect::<Result<_>>()?;
    assert!(
        hashes.iter().all(|x| *x == hashes[0]),
        "trio's final blocks differ at {h}: {hashes:?}"
    );
    let tip = rpc(&urls[0], "chain_info", json!({"repo": "trio"}))?["height"]
        .as_u64()
        .context("height")?;
    let producers: std::collections::HashSet<String> = (1..=tip)
        .map(|i| {
            Ok(
                rpc(&urls[0], "block", json!({"repo": "trio", "height": i}))?["producer"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect::<Result<_>>()?;
    // The transfer's block is final everywhere: the empty blocks that carried it there were
    // made by the other nodes in their slots (finality needs 3 distinct producers).
    assert!(h >= 1, "trio's transfer never became final");
    assert!(
        producers.len() >= 2,
        "one producer made all of trio: {producers:?}"
    );
    eprintln!(
        "poa: trio final at {h} on all nodes, {} producers",
        producers.len()
    );
    Ok(())
}

/// A signed transaction for chain `chain_id` (the next nonce of `key` on `url`'s `branch`).
fn signed_for(
    url: &str,
    branch: Option<&str>,
    key: &aergo_types::Keypair,
    kind: aergo_types::TxKind,
    to: Option<aergo_types::Address>,
    amount: u128,
    payload: Vec<u8>,
) -> Result<String> {
    let mut p = json!({"address": aergo_types::Address::from_public_key(&key.public()).encode()});
    let mut c = json!({});
    if let Some(b) = branch {
        p["branch"] = json!(b);
        c["branch"] = json!(b);
    }
    // Signed requests: a private branch answers its creator only.
    let nonce = rpc_as(url, Some(key), "account", p)?["next_nonce"]
        .as_u64()
        .context("next_nonce")?;
    let id = rpc_as(url, Some(key), "chain_info", c)?["chain_id"]
        .as_str()
        .context("chain_id")?
        .to_string();
    let tx = aergo_types::Tx {
        kind,
        nonce,
        from: key.public(),
        to,
        amount,
        payload,
        gas_limit: 10_000,
        gas_price: 1_000_000_000,
        chain_id: aergo_types::Hash::from_hex(&id)?,
    }
    .sign(key);
    Ok(hex::encode(tx.encode()))
}

/// Branch `name` of the root chain with `strategy` (and `private`), produced by node 1 (its
/// operator accepts it), created by `faucet` at node 1's last final block. Returns once every
/// node hosts it: the fork height.
fn create_root_branch(
    urls: &[String],
    faucet: &aergo_types::Keypair,
    name: &str,
    strategy: aergo_types::block_ext::MergeStrategy,
    private: bool,
) -> Result<u64> {
    let accepted = rpc(&urls[0], "admin_branch_accept", json!({"name": name}))?;
    let producer =
        aergo_types::Address::decode(accepted["producer"].as_str().context("producer")?)?
            .public_key()
            .context("node key")?;
    let fork = rpc(&urls[0], "chain_info", json!({}))?["finalized_height"]
        .as_u64()
        .context("finalized")?;
    let op = aergo_types::branch::BranchOp::Create {
        name: name.into(),
        fork_height: fork,
        producer,
        strategy,
        resolver: None,
        private,
    };
    let tx = signed_for(
        &urls[0],
        None,
        faucet,
        aergo_types::TxKind::Branch,
        None,
        0,
        op.encode(),
    )?;
    rpc(&urls[0], "send_tx", json!({"tx": tx}))?;
    // Every node learns the branch from main and hosts it; node 1 produces it.
    for (i, u) in urls.iter().enumerate() {
        poll(
            &format!("node {} to host {name}", i + 1),
            Duration::from_secs(30),
            || Ok(branch_listed(u, name)?.filter(|b| b["tip_height"].is_u64())),
        )?;
    }
    Ok(fork)
}

/// Branch `name` as `branch_list` on `url` lists it.
fn branch_listed(url: &str, name: &str) -> Result<Option<Value>> {
    let l = rpc(url, "branch_list", json!({}))?;
    Ok(l["branches"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == name).cloned()))
}

/// A branch of the root produced by node 1 and replicated by nodes 2 and 3, merged into
/// `main` through node 2; every node re-executes the merge block from its embedded
/// candidates.
fn branch_merge_across_nodes(urls: &[String], faucet: &aergo_types::Keypair) -> Result<()> {
    use aergo_types::block_ext::MergeStrategy;
    use aergo_types::branch::MergeOp;
    use aergo_types::TxKind;
    let fork = create_root_branch(urls, faucet, "feat", MergeStrategy::Auto, false)?;
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    // Sent to node 3, which does not produce feat: the branch's gossip topic takes it to
    // node 1.
    let tx = signed_for(
        &urls[2],
        Some("feat"),
        faucet,
        TxKind::Transfer,
        Some(to),
        9,
        vec![],
    )?;
    rpc(&urls[2], "send_tx", json!({"branch": "feat", "tx": tx}))?;
    // Every node reads it on feat: the branch's blocks replicate.
    let mut heights = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        heights.push(poll(
            &format!("node {} to hold the transfer on feat", i + 1),
            Duration::from_secs(30),
            || {
                let a = rpc(
                    u,
                    "account",
                    json!({"branch": "feat", "address": to.encode()}),
                )?;
                Ok((a["balance"] == "9")
                    .then_some(a["height"].as_u64())
                    .flatten())
            },
        )?);
    }
    let feat_height = heights.iter().copied().min().context("heights")?;
    let feat_blocks: Vec<Value> = urls
        .iter()
        .map(|u| rpc(u, "block", json!({"branch": "feat", "height": feat_height})))
        .collect::<Result<_>>()?;
    for b in &feat_blocks[1..] {
        assert_eq!(b["hash"], feat_blocks[0]["hash"], "feat@{feat_height}");
        assert_eq!(b["state_root"], feat_blocks[0]["state_root"]);
    }
    let listed = rpc(&urls[1], "branch_list", json!({}))?;
    assert_eq!(listed["branches"][0]["produced_here"], false, "{listed}");
    assert!(
        listed["branches"][0]["tip_height"].as_u64() >= Some(feat_height),
        "{listed}"
    );
    assert_eq!(
        rpc(&urls[1], "account", json!({"address": to.encode()}))?["balance"],
        "0"
    );
    let op = MergeOp {
        source: "feat".into(),
        source_height: feat_height,
    };
    // Node 2 replicates feat: it takes the merge though it does not produce the branch.
    let tx = signed_for(&urls[1], None, faucet, TxKind::Merge, None, 0, op.encode())?;
    rpc(&urls[1], "send_tx", json!({"tx": tx}))?;
    let (_, merges) = merged_on_every_node(urls, &to, "9", "feat", fork)?;
    assert_eq!(
        merges[0]["merged"].as_array().map(Vec::len),
        Some(1),
        "{merges:?}"
    );
    assert!(merges.iter().all(|m| *m == merges[0]), "{merges:?}");
    private_branch_stays_on_its_producer(urls, faucet)
}

/// After a merge of branch `source` was sent: waits until every node holds `balance` in `to`
/// on `main`, checks that all hold the same block (hash and state root) at the highest
/// height where one saw it, and returns that height and each node's section of the latest
/// merge of `source` at or below it (above `fork`).
fn merged_on_every_node(
    urls: &[String],
    to: &aergo_types::Address,
    balance: &str,
    source: &str,
    fork: u64,
) -> Result<(u64, Vec<Value>)> {
    let mut at = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        at.push(poll(
            &format!(
                "node {} to hold {balance} after the merge of {source}",
                i + 1
            ),
            Duration::from_secs(30),
            || {
                let a = rpc(u, "account", json!({"address": to.encode()}))?;
                Ok((a["balance"] == balance)
                    .then_some(a["height"].as_u64())
                    .flatten())
            },
        )?);
    }
    let h = at.iter().copied().max().context("heights")?;
    let blocks: Vec<Value> = urls
        .iter()
        .map(|u| {
            poll(
                "the merge height everywhere",
                Duration::from_secs(20),
                || Ok(rpc(u, "block", json!({"height": h})).ok()),
            )
        })
        .collect::<Result<_>>()?;
    for b in &blocks[1..] {
        assert_eq!(b["hash"], blocks[0]["hash"]);
        assert_eq!(b["state_root"], blocks[0]["state_root"]);
    }
    let merges = urls
        .iter()
        .map(|u| {
            for k in (fork..=h).rev() {
                let b = rpc(u, "block", json!({"height": k}))?;
                if b["merge"]["source"] == source {
                    return Ok(b["merge"].clone());
                }
            }
            bail!("no merge of {source} on {u} up to {h}")
        })
        .collect::<Result<_>>()?;
    Ok((h, merges))
}

/// A branch of the PoA repository `trio` (hosted by all three nodes), produced by node 1,
/// created by a change of trio's directory (a kind-11 operation on the ledger is refused): a
/// transfer sent to node 3 is on the branch on every node, with the same block.
fn repository_branch_replicates(urls: &[String], faucet: &aergo_types::Keypair) -> Result<()> {
    use aergo_types::branch::BranchOp;
    use aergo_types::repo::DdOp;
    use aergo_types::TxKind;
    let accepted = rpc(
        &urls[0],
        "admin_branch_accept",
        json!({"name": "tb", "repo": "trio"}),
    )?;
    let producer =
        aergo_types::Address::decode(accepted["producer"].as_str().context("producer")?)?
            .public_key()
            .context("node key")?;
    let faucet_addr = aergo_types::Address::from_public_key(&faucet.public());
    let nonce_in = |u: &str, branch: Option<&str>| -> Result<u64> {
        let mut p = json!({"repo": "trio", "address": faucet_addr.encode()});
        if let Some(b) = branch {
            p["branch"] = json!(b);
        }
        rpc(u, "account", p)?["next_nonce"]
            .as_u64()
            .context("next_nonce")
    };
    // A transaction of the faucet's on trio (or its branch), sent to `u`.
    let send = |u: &str,
                branch: Option<&str>,
                kind: TxKind,
                to: Option<aergo_types::Address>,
                amount: u128,
                payload: Vec<u8>|
     -> Result<()> {
        let mut c = json!({"repo": "trio"});
        if let Some(b) = branch {
            c["branch"] = json!(b);
        }
        let chain_id = aergo_types::Hash::from_hex(
            rpc(u, "chain_info", c.clone())?["chain_id"]
                .as_str()
                .context("chain_id")?,
        )?;
        let tx = aergo_types::Tx {
            kind,
            nonce: nonce_in(u, branch)?,
            from: faucet.public(),
            to,
            amount,
            payload,
            gas_limit: 10_000,
            gas_price: 1_000_000_000,
            chain_id,
        }
        .sign(faucet);
        c["tx"] = json!(hex::encode(tx.encode()));
        rpc(u, "send_tx", c)?;
        Ok(())
    };
    let fork = rpc(&urls[0], "chain_info", json!({"repo": "trio"}))?["finalized_height"]
        .as_u64()
        .context("finalized")?;
    // A repository's branches are directory changes (free: gas price 0).
    let fork_hash = aergo_types::Hash::from_hex(
        rpc(&urls[0], "block", json!({"repo": "trio", "height": fork}))?["hash"]
            .as_str()
            .context("fork hash")?,
    )?;
    let op = DdOp::BranchCreate {
        path: "tb".into(),
        fork_height: fork,
        fork_hash,
        producer,
        strategy: aergo_types::block_ext::MergeStrategy::Auto,
        resolver: None,
        private: false,
    };
    let dd_nonce = rpc(
        &urls[0],
        "account",
        json!({"repo": "trio/dd", "address": faucet_addr.encode()}),
    )?["next_nonce"]
        .as_u64()
        .context("next_nonce")?;
    send_in(
        &urls[0],
        "trio/dd",
        faucet,
        TxKind::DirectoryChange,
        dd_nonce,
        None,
        0,
        op.encode(),
    )?;
    // The ledger refuses the root's way (a kind-11 operation), naming the directory.
    let old_way = BranchOp::Create {
        name: "tb2".into(),
        fork_height: fork,
        producer,
        strategy: aergo_types::block_ext::MergeStrategy::Auto,
        resolver: None,
        private: false,
    };
    let refused = send(&urls[0], None, TxKind::Branch, None, 0, old_way.encode())
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(refused.contains("live in its directory"), "{refused}");
    for (i, u) in urls.iter().enumerate() {
        poll(
            &format!("node {} to host trio's branch tb", i + 1),
            Duration::from_secs(30),
            || {
                let l = rpc(u, "branch_list", json!({"repo": "trio"}))?;
                Ok(l["branches"]
                    .as_array()
                    .is_some_and(|b| {
                        b.iter()
                            .any(|b| b["name"] == "tb" && b["tip_height"].is_u64())
                    })
                    .then_some(()))
            },
        )?;
    }
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    send(
        &urls[2],
        Some("tb"),
        TxKind::Transfer,
        Some(to),
        6,
        Vec::new(),
    )?;
    let mut heights = Vec::new();
    for (i, u) in urls.iter().enumerate() {
        heights.push(poll(
            &format!("node {} to hold the transfer on trio's tb", i + 1),
            Duration::from_secs(30),
            || {
                let a = rpc(
                    u,
                    "account",
                    json!({"repo": "trio", "branch": "tb", "address": to.encode()}),
                )?;
                Ok((a["balance"] == "6")
                    .then_some(a["height"].as_u64())
                    .flatten())
            },
        )?);
    }
    let h = heights.iter().copied().min().context("heights")?;
    let hashes: Vec<Value> = urls
        .iter()
        .map(|u| {
            Ok(rpc(
                u,
                "block",
                json!({"repo": "trio", "branch": "tb", "height": h}),
            )?["hash"]
                .clone())
        })
        .collect::<Result<_>>()?;
    assert!(hashes.iter().all(|x| *x == hashes[0]), "tb@{h}: {hashes:?}");
    eprintln!("poa: trio's branch tb replicated on 3 nodes (block {h})");
    Ok(())
}

/// A consistent branch produced by node 1: a transfer on it (sent to node 2) and one on
/// `main` to the same account, then the merge (sent to node 3): every node holds the same
/// merge block, and the account has both transfers (ours + theirs − base).
fn consistent_merge_across_nodes(urls: &[String], faucet: &aergo_types::Keypair) -> Result<()> {
    use aergo_types::block_ext::MergeStrategy;
    use aergo_types::branch::MergeOp;
    use aergo_types::TxKind;
    let fork = create_root_branch(urls, faucet, "cons", MergeStrategy::Consistent, false)?;
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    let balance = |u: &str, branch: Option<&str>| -> Result<String> {
        let mut p = json!({"address": to.encode()});
        if let Some(b) = branch {
            p["branch"] = json!(b);
        }
        Ok(rpc(u, "account", p)?["balance"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let tx = signed_for(
        &urls[1],
        Some("cons"),
        faucet,
        TxKind::Transfer,
        Some(to),
        2,
        vec![],
    )?;
    rpc(&urls[1], "send_tx", json!({"branch": "cons", "tx": tx}))?;
    let source_height = poll("the transfer on cons", Duration::from_secs(30), || {
        let a = rpc(
            &urls[0],
            "account",
            json!({"branch": "cons", "address": to.encode()}),
        )?;
        Ok((a["balance"] == "2")
            .then_some(a["height"].as_u64())
            .flatten())
    })?;
    let tx = signed_for(
        &urls[0],
        None,
        faucet,
        TxKind::Transfer,
        Some(to),
        3,
        vec![],
    )?;
    rpc(&urls[0], "send_tx", json!({"tx": tx}))?;
    poll("the transfer on main", Duration::from_secs(30), || {
        Ok((balance(&urls[0], None)? == "3").then_some(()))
    })?;
    // Node 3 must hold cons's block before it can take the merge.
    poll("node 3 to replicate cons", Duration::from_secs(30), || {
        Ok((balance(&urls[2], Some("cons"))? == "2").then_some(()))
    })?;
    let op = MergeOp {
        source: "cons".into(),
        source_height,
    };
    let tx = signed_for(&urls[2], None, faucet, TxKind::Merge, None, 0, op.encode())?;
    rpc(&urls[2], "send_tx", json!({"tx": tx}))?;
    // The merge block, the same on every node: consistent, the branch's transfer merged.
    let (h, merges) = merged_on_every_node(urls, &to, "5", "cons", fork)?;
    assert_eq!(merges[0]["strategy"], "consistent", "{merges:?}");
    assert_eq!(
        merges[0]["merged"].as_array().map(Vec::len),
        Some(1),
        "{merges:?}"
    );
    assert!(merges.iter().all(|m| *m == merges[0]), "{merges:?}");
    eprintln!("poa: consistent merge of cons on 3 nodes (both transfers: 5 at height {h})");
    Ok(())
}

/// A private branch produced by node 1: its blocks never reach nodes 2 and 3, which know
/// the branch (from `main`) but keep it at its fork point, while a public branch's later
/// block does reach them.
fn private_branch_stays_on_its_producer(
    urls: &[String],
    faucet: &aergo_types::Keypair,
) -> Result<()> {
    use aergo_types::block_ext::MergeStrategy;
    use aergo_types::TxKind;
    create_root_branch(urls, faucet, "hidden", MergeStrategy::Auto, true)?;
    let hidden = |u: &str| branch_listed(u, "hidden");
    let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    let tx = signed_for(
        &urls[0],
        Some("hidden"),
        faucet,
        TxKind::Transfer,
        Some(to),
        4,
        vec![],
    )?;
    rpc_as(
        &urls[0],
        Some(faucet),
        "send_tx",
        json!({"branch": "hidden", "tx": tx}),
    )?;
    let made = poll("the transfer on hidden", Duration::from_secs(20), || {
        let a = rpc_as(
            &urls[0],
            Some(faucet),
            "account",
            json!({"branch": "hidden", "address": to.encode()}),
        )?;
        Ok((a["balance"] == "4")
            .then_some(a["height"].as_u64())
            .flatten())
    })?;
    // Then a public branch block, replicated: what replication would have carried of
    // hidden had its chance.
    let to2 = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
    let tx = signed_for(
        &urls[0],
        Some("feat"),
        faucet,
        TxKind::Transfer,
        Some(to2),
        1,
        vec![],
    )?;
    rpc(&urls[0], "send_tx", json!({"branch": "feat", "tx": tx}))?;
    for (i, u) in urls.iter().enumerate().skip(1) {
        poll(
            &format!("node {} to hold the later transfer on feat", i + 1),
            Duration::from_secs(30),
            || {
                let a = rpc(
                    u,
                    "account",
                    json!({"branch": "feat", "address": to2.encode()}),
                )?;
                Ok((a["balance"] == "1").then_some(()))
            },
        )?;
    }
    // A negative needs a window: three of the 2 s rounds in which a node asks a branch's
    // producer for its height (and gossip had its chance meanwhile).
    let window = Instant::now() + Duration::from_secs(6);
    while Instant::now() < window {
        for (i, u) in urls.iter().enumerate().skip(1) {
            let h = hidden(u)?.context("hidden listed")?;
            assert!(
                h["tip_height"].as_u64() < Some(made),
                "node {} holds hidden's block {made}: {h}",
                i + 1
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, u) in urls.iter().enumerate().skip(1) {
        let a = rpc_as(
            u,
            Some(faucet),
            "account",
            json!({"branch": "hidden", "address": to.encode()}),
        )?;
        assert_eq!(a["balance"], "0", "node {}: {a}", i + 1);
    }
    eprintln!("poa: branch feat replicated on 3 nodes; private branch hidden stayed on node 1 (its block {made})");
    Ok(())
}

/// Pre-confirmed transfers on the root chain, sent to the nodes in turn (forwarded to the
/// slot's producer), are kept on every node.
fn preconfirmations_across_nodes(urls: &[String], faucet: &aergo_types::Keypair) -> Result<()> {
    let (n, producers, refusals) = aergo_e2e::testnet::preconfirmations_kept(urls, faucet, 12)?;
    assert!(producers >= 2, "promises from {producers} producers only");
    eprintln!(
        "poa: {n} pre-confirmed transfers kept on all {} nodes ({producers} producers promised; {refusals} not_producer refusals)",
        urls.len()
    );
    Ok(())
}
