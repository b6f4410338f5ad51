//! Repositories on a dev node, driven through the `aergo` CLI and raw JSON-RPC: creation by a
//! root-chain transaction, transfers inside a public and a private repository in their own
//! units, isolation from the root chain (its height and state root do not move) and from each
//! other (a transaction signed for one is refused by another), bad input refused with a clear
//! error and nothing changed, a name taken twice in one block (the second create fails in the
//! block and is charged gas only), and hosting after a SIGKILL.

use aergo_e2e::testnet::{reply, rpc, rpc_as, sign_headers};
use aergo_e2e::{aergo_json, free_port, poll, start_dev_node};
use aergo_types::repo::{RepoCreate, RepoEngine, Visibility};
use aergo_types::{Address, Hash, Keypair, Tx, TxKind};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

fn str_of(v: &Value, k: &str) -> Result<String> {
    v[k].as_str()
        .map(str::to_string)
        .with_context(|| format!("no `{k}` in {v}"))
}

fn balance(url: &str, repo: Option<&str>, addr: &Address) -> Result<u128> {
    let mut p = json!({"address": addr.encode()});
    if let Some(r) = repo {
        p["repo"] = json!(r);
    }
    // Signed by the dev account: a member of every repository these tests create.
    let a = rpc_as(url, Some(&Keypair::dev()), "account", p)?;
    str_of(&a, "balance")?.parse().context("balance")
}

fn tip(url: &str, repo: Option<&str>) -> Result<(u64, Hash)> {
    let mut p = json!({});
    if let Some(r) = repo {
        p["repo"] = json!(r);
    }
    let info = rpc(url, "chain_info", p.clone())?;
    let h = info["height"].as_u64().context("height")?;
    p["height"] = json!(h);
    let b = rpc(url, "block", p)?;
    Ok((h, Hash::from_hex(&str_of(&b, "state_root")?)?))
}

/// `aergo [--as dev] [--repo REPO] send --from dev --to TO --amount AMOUNT --wait included`;
/// the transfer must be included with status ok.
fn send(url: &str, repo: Option<&str>, signed: bool, to: &str, amount: &str) -> Result<Value> {
    let mut args = Vec::new();
    if signed {
        args.extend(["--as", "dev"]);
    }
    if let Some(r) = repo {
        args.extend(["--repo", r]);
    }
    args.extend(["send", "--from", "dev", "--to", to, "--amount", amount]);
    args.extend(["--wait", "included"]);
    let v = aergo_json(url, &args)?;
    ensure!(v["status"] == "ok", "aergo {args:?}: {v}");
    Ok(v)
}

/// The error text of a failing `aergo` command.
fn aergo_err(url: &str, args: &[&str]) -> Result<String> {
    match aergo_json(url, args) {
        Ok(v) => anyhow::bail!("aergo {args:?} succeeded: {v}"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

fn create_tx(name: &str, nonce: u64, chain_id: Hash, producer: aergo_types::PublicKey) -> String {
    let dev = Keypair::dev();
    let c = RepoCreate {
        name: name.into(),
        visibility: Visibility::Public,
        engine: RepoEngine::Solo,
        admins: vec![Address::from_public_key(&dev.public())],
        producers: vec![producer],
        alloc: Vec::new(),
    };
    let t = Tx {
        kind: TxKind::RepoCreate,
        nonce,
        from: dev.public(),
        to: None,
        amount: 0,
        payload: c.encode(),
        gas_limit: 1_000_000,
        gas_price: 1_000_000_000,
        chain_id,
    }
    .sign(&dev);
    hex::encode(t.encode())
}

#[test]
fn a_dev_node_hosts_repositories_isolated_from_the_root_and_each_other() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    let port = free_port()?;
    let node = start_dev_node(&data, port, &["--no-empty-blocks"])?;
    let url = node.url.clone();
    let dev = Address::from_public_key(&Keypair::dev().public());
    let bob = Address::from_public_key(&Keypair::generate().public());

    // Create a public and a private repository (the CLI waits for the receipt).
    let fee_before = balance(&url, None, &dev)?;
    let a = aergo_json(&url, &["repo", "create", "team-a"])?;
    ensure!(a["status"] == "ok", "create team-a: {a}");
    let b = aergo_json(&url, &["repo", "create", "team-b", "--private"])?;
    ensure!(b["status"] == "ok", "create team-b: {b}");
    let paid = fee_before - balance(&url, None, &dev)?;
    ensure!(
        paid >= 2 * aergo_types::repo::DEFAULT_REPO_CREATE_FEE,
        "two creates cost {paid} aer, less than twice the creation fee"
    );
    let list = poll("both repositories hosted", Duration::from_secs(20), || {
        let l = aergo_json(&url, &["repo", "list"])?;
        let hosted = l
            .as_array()
            .map(|a| a.iter().filter(|r| r["hosted"] == true).count())
            .unwrap_or(0);
        Ok((hosted == 2).then_some(l))
    })?;
    ensure!(list[1]["visibility"] == "private", "{list}");
    let (a_id, b_id) = (str_of(&list[0], "id")?, str_of(&list[1], "id")?);
    ensure!(a_id != b_id, "two repositories share an id");
    let root_id = str_of(&rpc(&url, "chain_info", json!({}))?, "chain_id")?;
    ensure!(a_id != root_id);

    // Transfers inside each, in their own units; the root chain does not move.
    let root_before = tip(&url, None)?;
    let sent_a = send(&url, Some("team-a"), false, &bob.encode(), "5")?;
    ensure!(sent_a["status"] == "ok", "{sent_a}");
    let sent_b = send(&url, Some("team-b"), true, &bob.encode(), "7")?;
    ensure!(sent_b["status"] == "ok", "{sent_b}");
    let unit = aergo_types::AER_PER_AERGO;
    ensure!(balance(&url, Some("team-a"), &bob)? == 5 * unit);
    ensure!(balance(&url, Some("team-b"), &bob)? == 7 * unit);
    ensure!(
        balance(&url, None, &bob)? == 0,
        "a repository transfer reached the root"
    );
    ensure!(
        balance(&url, Some("team-a"), &dev)? < aergo_types::repo::DEFAULT_CREATOR_UNITS,
        "the creator's units did not pay the transfer"
    );
    ensure!(
        tip(&url, None)? == root_before,
        "the root chain moved while only repositories were used"
    );
    let (a_height, _) = tip(&url, Some("team-a"))?;
    ensure!(a_height >= 1);

    // A transaction signed for team-a is refused by team-b, and by the root.
    let dev_key = Keypair::dev();
    let signed_for_a = Tx {
        kind: TxKind::Transfer,
        nonce: 1,
        from: dev_key.public(),
        to: Some(bob),
        amount: 1,
        payload: Vec::new(),
        gas_limit: 1000,
        gas_price: 1_000_000_000,
        chain_id: Hash::from_hex(&a_id)?,
    }
    .sign(&dev_key);
    let hex_a = hex::encode(signed_for_a.encode());
    for target in [json!("team-b"), json!(null)] {
        let e = rpc_as(
            &url,
            Some(&dev_key),
            "send_tx",
            json!({"tx": hex_a, "repo": target}),
        )
        .err()
        .context("a transaction signed for team-a was accepted elsewhere")?;
        ensure!(e.to_string().contains("wrong chain id"), "{e}");
    }

    // The registry pages by name.
    let page = rpc(&url, "repo_list", json!({"limit": 1}))?;
    ensure!(
        page.as_array().map(Vec::len) == Some(1) && page[0]["name"] == "team-a",
        "{page}"
    );
    let next = rpc(&url, "repo_list", json!({"after": "team-a", "limit": 1}))?;
    ensure!(next[0]["name"] == "team-b", "{next}");

    // The private repository answers only requests signed by a member, each once.
    let read = json!({"address": bob.encode(), "repo": "team-b"});
    let e = rpc(&url, "account", read.clone())
        .err()
        .context("an unsigned read of a private repository was answered")?
        .to_string();
    ensure!(e.contains("-32008") && e.contains("private"), "{e}");
    let stranger = Keypair::generate();
    let e = rpc_as(&url, Some(&stranger), "account", read.clone())
        .err()
        .context("a non-member read a private repository")?
        .to_string();
    ensure!(
        e.contains("-32008")
            && e.contains("`team-b`")
            && e.contains(&Address::from_public_key(&stranger.public()).encode())
            && e.contains("`read` role"),
        "{e}"
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "account", "params": read}).to_string();
    let headers = sign_headers(&dev_key, &body);
    let first = reply(aergo_e2e::http::raw_with("POST", &url, &headers, &body)?)?;
    ensure!(str_of(&first, "balance")?.parse::<u128>()? == 7 * unit);
    let e = reply(aergo_e2e::http::raw_with("POST", &url, &headers, &body)?)
        .err()
        .context("a replayed signed request was answered")?
        .to_string();
    ensure!(e.contains("replay"), "{e}");
    // The node's operator socket (mode 0600) reads it without a signature.
    let sock = data.join("rpc.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock)?.permissions());
    ensure!(
        mode & 0o777 == 0o600,
        "operator socket mode {:o}",
        mode & 0o777
    );
    let unix = format!("unix:{}", sock.display());
    let b = aergo_json(&unix, &["--repo", "team-b", "balance", &bob.encode()])?;
    ensure!(b.to_string().contains(&(7 * unit).to_string()), "{b}");
    let e = aergo_err(&url, &["--repo", "team-b", "balance", &bob.encode()])?;
    ensure!(e.contains("private"), "{e}");
    // The public one is readable by anyone.
    ensure!(rpc(
        &url,
        "account",
        json!({"address": bob.encode(), "repo": "team-a"})
    )
    .is_ok());

    // Bad input: a clear error, nothing changes.
    let listed = aergo_json(&url, &["repo", "list"])?;
    let e = aergo_err(&url, &["repo", "create", "team-a"])?;
    ensure!(e.contains("already exists"), "{e}");
    let e = aergo_err(&url, &["repo", "create", "Team_A"])?;
    ensure!(e.contains("invalid repository name"), "{e}");
    let e = aergo_err(&url, &["repo", "create", "aergo"])?;
    ensure!(e.contains("root repository"), "{e}");
    let e = aergo_err(&url, &["--repo", "team-a", "repo", "list"])?;
    ensure!(e.contains("drop --repo"), "{e}");
    let e = aergo_err(&url, &["--repo", "nope", "balance", "dev"])?;
    ensure!(e.contains("no repository `nope`"), "{e}");
    // A huge or malformed name is refused without a lookup, and not echoed in full.
    let huge = "x".repeat(100_000);
    let e = rpc(&url, "chain_info", json!({"repo": huge}))
        .err()
        .context("a huge repository name")?
        .to_string();
    ensure!(e.contains("-32007") && e.len() < 400, "{}", e.len());
    let e = rpc(
        &url,
        "dd_resolve",
        json!({"repo": "team-a", "name": "no spaces"}),
    )
    .err()
    .context("a malformed identifier")?
    .to_string();
    ensure!(e.contains("invalid identifier"), "{e}");
    let e = rpc(&url, "chain_info", json!({"repo": 5}))
        .err()
        .context("repo: 5")?;
    ensure!(e.to_string().contains("-32602"), "{e}");
    let in_repo = rpc(
        &url,
        "send_tx",
        json!({"tx": create_tx("inner", 1, Hash::from_hex(&a_id)?, dev_key.public()), "repo": "team-a"}),
    )
    .err()
    .context("a repo_create inside a repository was accepted")?;
    ensure!(in_repo.to_string().contains("root chain"), "{in_repo}");
    ensure!(aergo_json(&url, &["repo", "list"])? == listed);

    // The same name twice in one block: the second fails there and pays gas only.
    let node_key = Keypair::generate();
    let nonce = rpc(&url, "account", json!({"address": dev.encode()}))?["next_nonce"]
        .as_u64()
        .context("next_nonce")?;
    let root = Hash::from_hex(&root_id)?;
    let before = balance(&url, None, &dev)?;
    // Right after a block the next slot is a whole interval away (1 s): both creates arrive
    // before it, and the producer takes them into one block.
    let pace = send(&url, None, false, &bob.encode(), "1")?;
    ensure!(pace["status"] == "ok", "{pace}");
    let pace_fee: u128 =
        str_of(&rpc(&url, "receipt", json!({"hash": pace["hash"]}))?, "fee")?.parse()?;
    let nonce = nonce + 1;
    let first = rpc(
        &url,
        "send_tx",
        json!({"tx": create_tx("twice", nonce, root, node_key.public())}),
    )?;
    let second = rpc(
        &url,
        "send_tx",
        json!({"tx": create_tx("twice", nonce + 1, root, node_key.public())}),
    )?;
    let receipt = |h: &Value| {
        let h = h["hash"].clone();
        poll("receipt", Duration::from_secs(20), || {
            Ok(rpc(&url, "receipt", json!({"hash": h})).ok())
        })
    };
    let (r1, r2) = (receipt(&first)?, receipt(&second)?);
    ensure!(r1["status"] == "ok", "{r1}");
    ensure!(
        r1["block_height"] == r2["block_height"],
        "not one block: {r1} {r2}"
    );
    ensure!(r2["status"] == "failed", "{r2}");
    ensure!(str_of(&r2, "error")?.contains("already exists"), "{r2}");
    let fee1: u128 = str_of(&r1, "fee")?.parse()?;
    let fee2: u128 = str_of(&r2, "fee")?.parse()?;
    ensure!(fee1 > aergo_types::repo::DEFAULT_REPO_CREATE_FEE && fee2 < 1_000_000_000_000_000);
    ensure!(
        before - balance(&url, None, &dev)? == fee1 + fee2 + aergo_types::AER_PER_AERGO + pace_fee
    );
    let twice = rpc(&url, "repo_show", json!({"name": "twice"}))?;
    // Its producer is another node: registered, not hosted here.
    ensure!(twice["hosted"] == false, "{twice}");
    let e = rpc(&url, "chain_info", json!({"repo": "twice"}))
        .err()
        .context("an unhosted repository answered")?;
    ensure!(e.to_string().contains("does not host"), "{e}");

    // SIGKILL and restart: the repositories come back with their state.
    drop(node);
    let node = start_dev_node(&data, port, &["--no-empty-blocks"])?;
    let url = node.url.clone();
    let back = poll("repositories hosted again", Duration::from_secs(20), || {
        let l = aergo_json(&url, &["repo", "list"])?;
        Ok((l
            .as_array()
            .map(|a| a.iter().filter(|r| r["hosted"] == true).count())
            == Some(2))
        .then_some(l))
    })?;
    ensure!(
        back[0]["name"] == "team-a" && back[1]["name"] == "team-b",
        "{back}"
    );
    ensure!(balance(&url, Some("team-a"), &bob)? == 5 * unit);
    ensure!(balance(&url, Some("team-b"), &bob)? == 7 * unit);
    ensure!(tip(&url, Some("team-a"))?.0 == a_height);
    // Still writable after the restart.
    let again = send(&url, Some("team-a"), false, &bob.encode(), "1")?;
    ensure!(again["status"] == "ok", "{again}");
    ensure!(balance(&url, Some("team-a"), &bob)? == 6 * unit);
    Ok(())
}

/// A dev genesis whose repository directories may make a block every second (the default
/// `dd_interval` is 10 s).
fn quick_dd_genesis(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let mut g = aergo_types::Genesis::dev();
    g.dd_interval_ms = Some(1000);
    let p = dir.join("genesis.json");
    std::fs::write(&p, g.to_json())?;
    Ok(p)
}

fn transfer_hex(key: &Keypair, nonce: u64, to: Address, amount: u128, chain_id: Hash) -> String {
    let t = Tx {
        kind: TxKind::Transfer,
        nonce,
        from: key.public(),
        to: Some(to),
        amount,
        payload: Vec::new(),
        gas_limit: 1000,
        gas_price: 1_000_000_000,
        chain_id,
    }
    .sign(key);
    hex::encode(t.encode())
}

fn dd_tx(key: &Keypair, nonce: u64, dd_id: Hash, payload: Vec<u8>) -> String {
    let t = Tx {
        kind: TxKind::DirectoryChange,
        nonce,
        from: key.public(),
        to: None,
        amount: 0,
        payload,
        gas_limit: 100_000,
        gas_price: 0,
        chain_id: dd_id,
    }
    .sign(key);
    hex::encode(t.encode())
}

#[test]
fn a_repository_directory_holds_members_tags_and_identifiers_at_the_right_heights() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let genesis = quick_dd_genesis(dir.path())?;
    let data = dir.path().join("node");
    let port = free_port()?;
    let g = genesis.to_str().context("path")?;
    let node = start_dev_node(&data, port, &["--no-empty-blocks", "--genesis", g])?;
    let url = node.url.clone();
    let created = aergo_json(&url, &["repo", "create", "docs"])?;
    ensure!(created["status"] == "ok", "{created}");
    poll("docs hosted", Duration::from_secs(20), || {
        Ok((rpc(&url, "repo_show", json!({"name": "docs"}))?["hosted"] == true).then_some(()))
    })?;
    let carol = Keypair::generate();
    let carol_addr = Address::from_public_key(&carol.public());

    // The creator is the admin; the producer node replicates it; public: anyone reads.
    let info = rpc(&url, "dd_info", json!({"repo": "docs"}))?;
    ensure!(
        info["members"].as_array().map(Vec::len) == Some(1),
        "{info}"
    );
    ensure!(info["members"][0]["role"] == "admin", "{info}");
    ensure!(info["nodes"].as_array().map(Vec::len) == Some(1), "{info}");
    ensure!(info["anonymous_read"] == true && info["anonymous_write"] == false);

    // A change by a non-admin is refused, naming the repository, the account and the role.
    let dd_id = Hash::from_hex(&str_of(
        &rpc(&url, "chain_info", json!({"repo": "docs/dd"}))?,
        "chain_id",
    )?)?;
    let op = aergo_types::repo::DdOp::Anonymous {
        read: false,
        write: true,
    };
    let e = rpc(
        &url,
        "send_tx",
        json!({"repo": "docs/dd", "tx": dd_tx(&carol, 0, dd_id, op.encode())}),
    )
    .err()
    .context("a non-admin changed the directory")?
    .to_string();
    ensure!(
        e.contains("docs") && e.contains(&carol_addr.encode()) && e.contains("`admin` role"),
        "{e}"
    );
    // An oversized change is refused.
    let mut big = op.encode();
    big.resize(aergo_types::repo::MAX_DD_PAYLOAD + 1, 0);
    let e = rpc(
        &url,
        "send_tx",
        json!({"repo": "docs/dd", "tx": dd_tx(&Keypair::dev(), 0, dd_id, big)}),
    )
    .err()
    .context("an oversized directory change was accepted")?
    .to_string();
    ensure!(e.contains("at most"), "{e}");

    // Members, a tag on the best block, an identifier from the next height.
    let added = aergo_json(
        &url,
        &[
            "repo",
            "members",
            "docs",
            "add",
            &carol_addr.encode(),
            "--role",
            "write",
        ],
    )?;
    ensure!(added["status"] == "ok", "{added}");
    let tagged = aergo_json(&url, &["--repo", "docs", "tag", "v1"])?;
    ensure!(tagged["status"] == "ok", "{tagged}");
    let e = aergo_err(&url, &["--repo", "docs", "tag", "v1"])?;
    ensure!(e.contains("immutable"), "{e}");
    // A directory tag is a ref of the repository once the directory block holding it is
    // final: `block v1` is the tagged block.
    let (tagged_h, _) = tip(&url, Some("docs"))?;
    let at_v1 = poll("the tag v1 to resolve", Duration::from_secs(20), || {
        Ok(aergo_json(&url, &["--repo", "docs", "block", "v1"]).ok())
    })?;
    ensure!(
        at_v1["height"].as_u64().is_some_and(|h| h <= tagged_h),
        "{at_v1}"
    );
    // `REPO:REF` names the ledger in the ref itself, without --repo.
    let by_ref = aergo_json(&url, &["block", "docs:v1"])?;
    ensure!(by_ref["hash"] == at_v1["hash"], "{by_ref} {at_v1}");
    let b = rpc(&url, "block", json!({"at": "docs:v1"}))?;
    ensure!(b["hash"] == at_v1["hash"], "{b}");
    let e = rpc(&url, "block", json!({"at": "docs:v1", "repo": "other"}))
        .err()
        .context("a contradicting repo was accepted")?;
    ensure!(e.to_string().contains("names repository"), "{e}");
    let (h0, _) = tip(&url, Some("docs"))?;
    let target = carol_addr.encode();
    let set = aergo_json(&url, &["--repo", "docs", "name", "set", "token", &target])?;
    ensure!(set["status"] == "ok", "{set}");
    let e = aergo_err(
        &url,
        &[
            "--repo",
            "docs",
            "name",
            "set",
            "old",
            &target,
            "--from-height",
            &h0.to_string(),
        ],
    )?;
    ensure!(e.contains("never retroactive"), "{e}");
    // Move the repository forward two blocks.
    for _ in 0..2 {
        let s = send(&url, Some("docs"), false, &target, "1")?;
        ensure!(s["status"] == "ok", "{s}");
    }
    let resolve = |h: u64| {
        rpc(
            &url,
            "dd_resolve",
            json!({"repo": "docs", "name": "token", "height": h}),
        )
    };
    ensure!(resolve(h0).is_err(), "token resolved before it was valid");
    ensure!(str_of(&resolve(h0 + 1)?, "target")? == target);
    let revoked = aergo_json(&url, &["--repo", "docs", "name", "revoke", "token"])?;
    ensure!(revoked["status"] == "ok", "{revoked}");
    let (h1, _) = tip(&url, Some("docs"))?;
    let r = h1 + 1;
    poll("the revocation is final", Duration::from_secs(20), || {
        Ok(resolve(r).is_err().then_some(()))
    })?;
    ensure!(
        str_of(&resolve(r - 1)?, "target")? == target,
        "resolution before the revocation height changed"
    );
    let e = resolve(r)
        .err()
        .context("resolved at its revocation height")?
        .to_string();
    ensure!(e.contains("revoked at"), "{e}");

    // Writing needs the `write` role, from the directory's final state: carol has it, dave
    // has no role until anonymous writes are allowed.
    let repo_id = Hash::from_hex(&str_of(
        &rpc(&url, "chain_info", json!({"repo": "docs"}))?,
        "chain_id",
    )?)?;
    let dave = Keypair::generate();
    let dave_addr = Address::from_public_key(&dave.public());
    let funded = send(&url, Some("docs"), false, &dave_addr.encode(), "10")?;
    ensure!(funded["status"] == "ok", "{funded}");
    let send_raw = |k: &Keypair, nonce: u64| {
        rpc(
            &url,
            "send_tx",
            json!({"repo": "docs", "tx": transfer_hex(k, nonce, carol_addr, 1, repo_id)}),
        )
    };
    let e = send_raw(&dave, 0)
        .err()
        .context("a sender without a role wrote to the repository")?
        .to_string();
    ensure!(
        e.contains("`docs`") && e.contains(&dave_addr.encode()) && e.contains("`write` role"),
        "{e}"
    );
    let opened = aergo_json(
        &url,
        &["repo", "access", "docs", "--anonymous-write", "true"],
    )?;
    ensure!(opened["status"] == "ok", "{opened}");
    poll("anonymous writes in force", Duration::from_secs(20), || {
        Ok(send_raw(&dave, 0).ok())
    })?;

    // A contract deployed in the repository, called by its identifier.
    let fig6 = dir.path().join("figure6.sql");
    std::fs::write(&fig6, aergo_e2e::FIGURE6_SQL)?;
    let deployed = aergo_json(
        &url,
        &[
            "--repo",
            "docs",
            "contract",
            "deploy",
            fig6.to_str().context("path")?,
            "--from",
            "dev",
        ],
    )?;
    ensure!(deployed["status"] == "ok", "{deployed}");
    let contract = str_of(&deployed, "address")?;
    let named = aergo_json(
        &url,
        &["--repo", "docs", "name", "set", "ledger", &contract],
    )?;
    ensure!(named["status"] == "ok", "{named}");
    let step = send(&url, Some("docs"), false, &target, "1")?;
    ensure!(step["status"] == "ok", "{step}");
    let rows = poll(
        "the identifier resolves for the CLI",
        Duration::from_secs(20),
        || {
            Ok(aergo_json(
                &url,
                &[
                    "--repo",
                    "docs",
                    "contract",
                    "query",
                    "ledger",
                    "SELECT count(*) FROM accounts",
                ],
            )
            .ok())
        },
    )?;
    ensure!(
        rows["rows"] == json!([[0]]) || rows["rows"] == json!([["0"]]),
        "{rows}"
    );

    // The tag names the block it was set on.
    let info = rpc(&url, "dd_info", json!({"repo": "docs"}))?;
    let tag = &info["tags"][0];
    ensure!(tag["name"] == "v1", "{info}");
    let tagged_block = rpc(
        &url,
        "block",
        json!({"repo": "docs", "height": tag["height"]}),
    )?;
    ensure!(tag["hash"] == tagged_block["hash"], "{tag} {tagged_block}");
    ensure!(
        info["members"].as_array().is_some_and(|m| m
            .iter()
            .any(|x| x["account"] == target.as_str() && x["role"] == "write")),
        "{info}"
    );

    // After a SIGKILL the directory is intact.
    drop(node);
    let node = start_dev_node(&data, port, &["--no-empty-blocks", "--genesis", g])?;
    let again = poll(
        "the directory after a restart",
        Duration::from_secs(20),
        || Ok(rpc(&node.url, "dd_info", json!({"repo": "docs"})).ok()),
    )?;
    ensure!(
        again["members"] == info["members"] && again["tags"] == info["tags"],
        "{again}"
    );
    Ok(())
}

/// SIGKILL at several moments while a repository is created and while its directory
/// changes: after each restart the registration and the directory are both there or both
/// absent, and a directory change is there whole or not at all.
#[test]
fn a_crash_during_creation_or_a_directory_change_leaves_both_or_neither() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let genesis = quick_dd_genesis(dir.path())?;
    let g = genesis.to_str().context("path")?;
    let data = dir.path().join("node");
    let port = free_port()?;
    let dev = Keypair::dev();
    let dev_addr = Address::from_public_key(&dev.public());
    // The moments after the sends at which the node is killed (a crash test's delays, not
    // synchronisation: each round accepts either outcome and checks it is whole).
    let delays_ms = [0u64, 3, 15, 60, 1500];
    let mut created = Vec::new();
    for (round, delay) in delays_ms.iter().enumerate() {
        let node = start_dev_node(&data, port, &["--no-empty-blocks", "--genesis", g])?;
        let url = node.url.clone();
        let info = rpc(&url, "chain_info", json!({}))?;
        let root = Hash::from_hex(&str_of(&info, "chain_id")?)?;
        let nonce = rpc(&url, "account", json!({"address": dev_addr.encode()}))?["next_nonce"]
            .as_u64()
            .context("nonce")?;
        let producer = str_of(&rpc(&url, "node_status", json!({}))?, "node_address")?;
        let producer_key = Address::decode(&producer)?
            .public_key()
            .context("node key")?;
        let name = format!("crash-{round}");
        rpc(
            &url,
            "send_tx",
            json!({"tx": create_tx(&name, nonce, root, producer_key)}),
        )?;
        created.push(name);
        // A directory change on the previous round's repository, when it exists.
        if let Some(prev) = created.len().checked_sub(2).and_then(|i| created.get(i)) {
            if let Ok(dd) = rpc(&url, "chain_info", json!({"repo": format!("{prev}/dd")})) {
                let dd_id = Hash::from_hex(&str_of(&dd, "chain_id")?)?;
                let n = rpc(
                    &url,
                    "account",
                    json!({"address": dev_addr.encode(), "repo": format!("{prev}/dd")}),
                )?["next_nonce"]
                    .as_u64()
                    .context("dd nonce")?;
                let op = aergo_types::repo::DdOp::NameSet {
                    name: format!("id-{round}"),
                    kind: "contract".into(),
                    target: dev_addr.encode(),
                    valid_from: 1_000_000,
                };
                rpc(
                    &url,
                    "send_tx",
                    json!({"repo": format!("{prev}/dd"), "tx": dd_tx(&dev, n, dd_id, op.encode())}),
                )?;
            }
        }
        std::thread::sleep(Duration::from_millis(*delay));
        drop(node); // SIGKILL

        // After the restart every registered repository is hosted with its directory.
        let node = start_dev_node(&data, port, &["--no-empty-blocks", "--genesis", g])?;
        let url = node.url.clone();
        for n in &created {
            match rpc(&url, "repo_show", json!({"name": n})) {
                Ok(r) => {
                    // A transfer promised before the kill is committed right after the restart
                    // (the pre-confirmation log), and its repository hosted as that block
                    // commits: registered now, hosted within moments.
                    if r["hosted"] != true {
                        poll(&format!("{n} hosted"), Duration::from_secs(20), || {
                            let r = rpc(&url, "repo_show", json!({"name": n}))?;
                            Ok((r["hosted"] == true).then_some(()))
                        })?;
                    }
                    let d = rpc(&url, "dd_info", json!({"repo": n}))?;
                    ensure!(
                        d["members"][0]["role"] == "admin",
                        "{n}'s directory is missing its genesis: {d}"
                    );
                    for i in d["identifiers"].as_array().into_iter().flatten() {
                        ensure!(
                            i["target"] == dev_addr.encode().as_str()
                                && i["valid_from"] == 1_000_000,
                            "a torn identifier in {n}: {i}"
                        );
                    }
                }
                Err(e) => ensure!(e.to_string().contains("-32007"), "{n}: {e}"),
            }
        }
        drop(node);
    }
    // Not vacuous: the last round waited past a block interval (1 s), so its repository made it.
    let node = start_dev_node(&data, port, &["--no-empty-blocks", "--genesis", g])?;
    let last = created.last().context("rounds")?;
    poll(
        "the last repository registered",
        Duration::from_secs(20),
        || Ok(rpc(&node.url, "repo_show", json!({"name": last})).ok()),
    )?;
    Ok(())
}
