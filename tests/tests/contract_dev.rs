//! AergoSQL on a dev node through the CLI: the whitepaper's Figure 6 deploys verbatim, rows
//! are seeded by an owner's upgrade, `transfer` runs in transactions with its return values
//! in the receipts, queries work at past heights, failures revert, and `aergo sql` runs the
//! local sandbox.

use aergo_e2e::{bin, free_port};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const FIG6: &str = aergo_e2e::FIGURE6_SQL;

fn aergo(url: &str, args: &[&str]) -> Result<Value> {
    aergo_e2e::aergo_json(url, args)
}

fn start(dir: &Path) -> Result<(aergo_e2e::DevNode, String)> {
    let node = aergo_e2e::start_dev_node(dir, free_port()?, &[])?;
    let url = node.url.clone();
    Ok((node, url))
}

#[test]
fn figure6_deploys_verbatim_and_transfers_on_a_dev_node() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_node, url) = start(&tmp.path().join("node"))?;
    let fig6 = tmp.path().join("figure6.sql");
    std::fs::write(&fig6, FIG6)?;
    let d = aergo(
        &url,
        &[
            "contract",
            "deploy",
            fig6.to_str().context("path")?,
            "--from",
            "dev",
        ],
    )?;
    let addr = d["address"].as_str().context("address")?.to_string();
    ensure!(addr.starts_with('A') && d["status"] == json!("ok"), "{d}");

    let abi = aergo(&url, &["contract", "abi", &addr])?;
    ensure!(abi["functions"][0]["name"] == json!("transfer"), "{abi}");
    ensure!(abi["tables"][0]["name"] == json!("accounts"), "{abi}");

    let seed = tmp.path().join("seed.sql");
    std::fs::write(
        &seed,
        "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50);",
    )?;
    aergo(
        &url,
        &[
            "contract",
            "upgrade",
            &addr,
            seed.to_str().context("path")?,
            "--from",
            "dev",
        ],
    )?;
    let seeded_height = aergo(&url, &["chain"])?["height"]
        .as_u64()
        .context("height")?;

    let r = aergo(
        &url,
        &[
            "contract", "call", &addr, "transfer", "alice", "bob", "10", "--from", "dev",
        ],
    )?;
    ensure!(
        r["status"] == json!("ok") && r["result"] == json!("OK"),
        "{r}"
    );
    let r = aergo(
        &url,
        &[
            "contract", "call", &addr, "transfer", "carol", "bob", "1", "--from", "dev",
        ],
    )?;
    ensure!(r["result"] == json!("Sender not found"), "{r}");
    let r = aergo(
        &url,
        &[
            "contract", "call", &addr, "transfer", "bob", "alice", "1000", "--from", "dev",
        ],
    )?;
    ensure!(r["result"] == json!("Not enough balance"), "{r}");

    let q = aergo(
        &url,
        &[
            "contract",
            "query",
            &addr,
            "SELECT owner, balance FROM accounts ORDER BY owner",
        ],
    )?;
    ensure!(
        q == json!({"columns": ["owner", "balance"], "rows": [["alice", "90.00"], ["bob", "15.50"]]}),
        "{q}"
    );
    // MVCC: the same query at the height right after seeding.
    let old = aergo(
        &url,
        &[
            "contract",
            "query",
            &addr,
            "SELECT balance FROM accounts WHERE owner = 'alice'",
            "--at",
            &seeded_height.to_string(),
        ],
    )?;
    ensure!(old["rows"] == json!([["100.00"]]), "{old}");
    let v = aergo(
        &url,
        &["contract", "view", &addr, "transfer", "alice", "bob", "1"],
    )?;
    ensure!(v["result"] == json!("OK"), "{v}");
    let q2 = aergo(
        &url,
        &[
            "contract",
            "query",
            &addr,
            "SELECT balance FROM accounts WHERE owner = 'alice'",
        ],
    )?;
    ensure!(
        q2["rows"] == json!([["90.00"]]),
        "a view must not write: {q2}"
    );

    // A non-owner upgrade fails in its receipt and changes nothing.
    let out = Command::new(bin("aergo")?)
        .args([
            "--rpc", &url, "--json", "contract", "call", &addr, "nope", "--from", "dev",
        ])
        .output()?;
    ensure!(
        !out.status.success(),
        "calling an unknown function must fail"
    );
    // Bad SQL in a query: a clear error naming the position.
    let out = Command::new(bin("aergo")?)
        .args(["--rpc", &url, "contract", "query", &addr, "SELEC x"])
        .output()?;
    ensure!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("syntax error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A deploy with a type error fails with line and column in the receipt, and nothing is deployed.
    let bad = tmp.path().join("bad.sql");
    std::fs::write(&bad, "CREATE TABLE t (a BIGINT PRIMARY KEY);\nCREATE FUNCTION f() RETURNS BIGINT AS $$ BEGIN RETURN nosuch; END; $$")?;
    let out = Command::new(bin("aergo")?)
        .args([
            "--rpc",
            &url,
            "contract",
            "deploy",
            bad.to_str().context("p")?,
            "--from",
            "dev",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(!out.status.success() && err.contains("line 2"), "{err}");
    // The transaction view shows the receipt's return value.
    let blocks = aergo(&url, &["blocks", "--last", "10"])?;
    ensure!(blocks.as_array().map(|b| !b.is_empty()).unwrap_or(false));
    Ok(())
}

#[test]
fn sql_sandbox_runs_figure6_locally() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fig6 = tmp.path().join("figure6.sql");
    std::fs::write(&fig6, FIG6)?;
    let mut child = Command::new(bin("aergo")?)
        .args(["sql"])
        .arg(&fig6)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50)\nCALL transfer('alice', 'bob', 10)\nSELECT owner, balance FROM accounts ORDER BY owner\n")?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "sandbox failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.contains("result: OK") && text.contains("90.00") && text.contains("15.50"),
        "{text}"
    );
    Ok(())
}

/// The dev chain's per-transaction gas cap (`aergo_chain::exec::DEFAULT_TX_GAS_CAP`).
const TX_GAS_CAP: u64 = 4_000_000;

/// A tight loop (JIT-compiled) and an interpreted loop (a text expression keeps it in the
/// interpreter) that counts every row of a table on each iteration.
const HEAVY_SQL: &str = concat!(
    include_str!("../../node/chain/tests/fixtures/gas_scan.sql"),
    include_str!("../../node/chain/tests/fixtures/gas_spin.sql")
);

/// Runs `aergo --json ARGS…`; returns (success, stdout JSON or Null, stderr).
fn aergo_raw(url: &str, args: &[&str]) -> Result<(bool, Value, String)> {
    let out = Command::new(bin("aergo")?)
        .args(["--rpc", url, "--json"])
        .args(args)
        .output()?;
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok((
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

#[test]
fn huge_gas_is_refused_and_the_largest_allowed_call_does_not_stall_blocks() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_node, url) = start(&tmp.path().join("node"))?;
    let script = tmp.path().join("heavy.sql");
    std::fs::write(&script, HEAVY_SQL)?;
    let d = aergo(
        &url,
        &[
            "contract",
            "deploy",
            script.to_str().context("path")?,
            "--from",
            "dev",
        ],
    )?;
    ensure!(d["status"] == json!("ok"), "{d}");
    let addr = d["address"].as_str().context("address")?.to_string();
    for start in ["0", "4000"] {
        let r = aergo(
            &url,
            &[
                "contract", "call", &addr, "fill", start, "4000", "--from", "dev",
            ],
        )?;
        ensure!(r["status"] == json!("ok"), "{r}");
    }
    let info = aergo(&url, &["chain"])?;
    ensure!(
        info["tx_gas_cap"] == json!(TX_GAS_CAP) && info["block_gas_limit"] == json!(5_000_000),
        "{info}"
    );
    let forever = i64::MAX.to_string();
    // ~100 AERGO of gas at the minimum price: refused at admission, nothing is included.
    for f in ["spin", "scan"] {
        let (ok, _, err) = aergo_raw(
            &url,
            &[
                "contract",
                "call",
                &addr,
                f,
                &forever,
                "--from",
                "dev",
                "--gas",
                "100000000000",
            ],
        )?;
        ensure!(
            !ok && err.contains("per-transaction cap of 4000000 gas"),
            "{f}: {err}"
        );
    }
    // The largest allowed gas limit: each call runs out of gas, and the next block still
    // comes in time (1 s slots).
    for f in ["spin", "scan"] {
        let payload = serde_json::to_vec(&json!({"function": f, "args": [forever]}))?;
        let engine = TX_GAS_CAP - 1000 - 10 * payload.len() as u64;
        let sent = std::time::Instant::now();
        let (_, r, err) = aergo_raw(
            &url,
            &[
                "contract",
                "call",
                &addr,
                f,
                &forever,
                "--from",
                "dev",
                "--gas",
                &engine.to_string(),
            ],
        )?;
        ensure!(
            r["gas_used"] == json!(TX_GAS_CAP)
                && r["error"].as_str().unwrap_or("").contains("out of gas"),
            "{f}: {r} {err}"
        );
        let height = r["block_height"].as_u64().context("block height")?;
        let next = aergo_e2e::poll(
            "the block after the largest call",
            std::time::Duration::from_secs(5),
            || {
                let h = aergo(&url, &["chain"])?["height"]
                    .as_u64()
                    .context("height")?;
                Ok((h > height).then_some(h))
            },
        )?;
        ensure!(next > height);
        println!(
            "{f}: {TX_GAS_CAP} gas in block {height}; block {next} seen {:?} after sending",
            sent.elapsed()
        );
    }
    Ok(())
}

const ARRAYS: &str = "CREATE FUNCTION total(xs BIGINT[]) RETURNS BIGINT AS $$
DECLARE x BIGINT; s BIGINT := 0;
BEGIN FOREACH x IN ARRAY xs LOOP s := s + x; END LOOP; RETURN s; END $$;";

/// A fresh dev node deploys under AergoSQL engine 2 (arrays, FOREACH), which its genesis
/// activates from block 0. A dev folder made before engine versions (the legacy dev chain)
/// keeps its chain, and engine 1: the CLI's pre-check refuses arrays there, naming the
/// version, and nothing is sent.
#[test]
fn dev_chains_deploy_under_their_genesis_engine_version() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let script = tmp.path().join("arrays.sql");
    std::fs::write(&script, ARRAYS)?;
    let script = script.to_str().context("non-UTF-8 temporary path")?;

    let (node, url) = start(&tmp.path().join("fresh"))?;
    let info = aergo_e2e::testnet::rpc(&url, "chain_info", json!({}))?;
    ensure!(info["sql_engine"] == 2, "a fresh dev chain: {info}");
    let d = aergo(&url, &["contract", "deploy", script, "--from", "dev"])?;
    ensure!(d["status"] == "ok", "deploy: {d}");
    let addr = d["address"].as_str().context("no address")?.to_string();
    let abi = aergo(&url, &["contract", "abi", &addr])?;
    ensure!(abi["engine"] == 2, "abi: {abi}");
    let r = aergo(
        &url,
        &[
            "contract", "call", &addr, "total", "{1,2,3}", "--from", "dev",
        ],
    )?;
    ensure!(r["result"] == "6", "call: {r}");
    drop(node);

    // A folder holding the legacy dev chain, as a node from before this change made it.
    let legacy = tmp.path().join("legacy");
    let genesis = tmp.path().join("legacy-genesis.json");
    std::fs::write(&genesis, aergo_types::Genesis::dev_legacy().to_json())?;
    let port = free_port()?;
    let mut old = aergo_e2e::KillOnDrop::spawn(
        Command::new(bin("aergo-node")?)
            .arg("--genesis")
            .arg(&genesis)
            .arg("--data-dir")
            .arg(&legacy)
            .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let old_url = format!("http://127.0.0.1:{port}");
    aergo_e2e::poll(
        "legacy node health",
        std::time::Duration::from_secs(30),
        || Ok(aergo_e2e::http::get_ok(&format!("{old_url}/health")).then_some(())),
    )?;
    old.signal(SIGTERM);
    old.wait_timeout(std::time::Duration::from_secs(30))?;

    let (node, url) = start(&legacy)?;
    let info = aergo_e2e::testnet::rpc(&url, "chain_info", json!({}))?;
    ensure!(
        info["chain_id"] == aergo_types::Genesis::dev_legacy().chain_id().to_hex(),
        "the legacy folder keeps its chain: {info}"
    );
    ensure!(info["sql_engine"] == 1, "legacy dev chain: {info}");
    let log = std::fs::read_to_string(legacy.with_extension("log"))?;
    ensure!(
        log.contains("before AergoSQL engine versions"),
        "the node says why: {log}"
    );
    let out = Command::new(bin("aergo")?)
        .args(["--rpc", &url, "contract", "deploy", script, "--from", "dev"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("engine version 2")
            && err.contains("nothing was sent"),
        "arrays on engine 1: {err}"
    );
    let nonce = aergo_e2e::testnet::rpc(
        &url,
        "account",
        json!({"address": aergo_types::Address::from_public_key(&aergo_types::Keypair::dev().public()).encode()}),
    )?;
    ensure!(nonce["next_nonce"] == 0, "nothing was sent: {nonce}");
    drop(node);
    Ok(())
}

const SIGTERM: i32 = 15;
