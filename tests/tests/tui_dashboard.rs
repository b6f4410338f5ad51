//! End-to-end test of `aergo-top` against a live dev node, driven through tmux: the height
//! shown must increase, a block and a transaction (sent with the `aergo` CLI) must open in the
//! drill-down, `q` must quit and restore the terminal. It also measures the dashboard's idle
//! CPU and resident memory on the live node and prints them (docs/BENCHMARKS.md, Dashboard).
//!
//! Needs tmux: under CI (`CI=true`) a missing tmux fails the test; elsewhere it is reported
//! and the test returns early.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aergo_e2e::tmux::{tmux_available, Tmux};
use aergo_e2e::{bin, ci, deploy_figure6, free_port, poll, KillOnDrop};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

/// One JSON-RPC call over a plain HTTP/1.1 connection (no client library in this crate).
fn rpc(port: u16, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let json_start = resp.find("\r\n\r\n").context("no HTTP body")? + 4;
    let v: Value = serde_json::from_str(resp[json_start..].trim())
        .with_context(|| format!("bad JSON-RPC answer: {resp}"))?;
    if let Some(e) = v.get("error") {
        bail!("{method}: {e}");
    }
    Ok(v["result"].clone())
}

/// Total CPU ticks (user + system) of a process.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?)
}

/// The pid of the first child of `parent` (the dashboard under tmux's shell).
fn child_pid(parent: u32) -> Result<Option<u32>> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let s = std::fs::read_to_string(path)?;
    Ok(s.split_whitespace().next().and_then(|p| p.parse().ok()))
}

fn send_tx(cli: &Path, url: &str, to: &str, data_dir: &Path) -> Result<String> {
    let out = Command::new(cli)
        .args([
            "--rpc", url, "send", "--from", "dev", "--to", to, "--amount", "1",
        ])
        .env("HOME", data_dir)
        .output()
        .context("run aergo send")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("aergo send failed: {text}");
    }
    // The hash is the first 64-hex-character word of the output.
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 64)
        .map(str::to_string)
        .with_context(|| format!("no tx hash in: {text}"))
}

#[test]
fn dashboard_follows_a_dev_node_in_tmux() -> Result<()> {
    if !tmux_available() {
        if ci() {
            bail!("tmux is not installed (scripts/setup.sh installs it)");
        }
        eprintln!("SKIPPED: tmux is not installed; this test needs it");
        return Ok(());
    }
    let node_bin = bin("aergo-node")?;
    let top_bin = bin("aergo-top")?;
    let cli_bin = bin("aergo")?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("node.log"))?;
    let _node = KillOnDrop::spawn(
        Command::new(&node_bin)
            .args(["--dev", "--data-dir"])
            .arg(dir.path().join("chain"))
            .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    let status = poll("the dev node's RPC", Duration::from_secs(60), || {
        Ok(rpc(port, "node_status", json!({})).ok())
    })?;
    let node_address = status["node_address"]
        .as_str()
        .context("node_status without node_address")?
        .to_string();

    let tmux = Tmux::new("top");
    let fs_port = free_port()?;
    let top_cmd = format!(
        "{} --rpc {url} --init {} --fs http://127.0.0.1:{fs_port} --theme 256; \
         echo DASHBOARD-EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 600",
        top_bin.display(),
        dir.path().join("no-init.sock").display(),
    );
    tmux.start(120, 40, &top_cmd)?;
    let shell_pid: u32 = tmux
        .run(&["display-message", "-p", "-t", "top", "#{pane_pid}"])?
        .trim()
        .parse()
        .context("pane pid")?;

    // 1. The height shown increases.
    let first = tmux.wait_for("a height on the Overview", Duration::from_secs(30), |s| {
        Tmux::shown_height(s).is_some()
    })?;
    let h1 = Tmux::shown_height(&first).context("height")?;
    tmux.wait_for("the height to increase", Duration::from_secs(30), |s| {
        Tmux::shown_height(s).is_some_and(|h| h > h1)
    })?;

    // 2. Send a transaction and wait until the node includes it.
    let hash = send_tx(&cli_bin, &url, &node_address, dir.path())?;
    let (height, index) = poll(
        "the transaction to be included",
        Duration::from_secs(60),
        || {
            let t = rpc(port, "tx", json!({"hash": hash}))?;
            Ok(t["block_height"]
                .as_u64()
                .map(|h| (h, t["index"].as_u64().unwrap_or(0))))
        },
    )?;

    // 3. Open its block from the Blocks screen (filter by height), then the tx, then the receipt.
    let receipt = open_receipt(&tmux, height, index, &hash)?;
    assert!(receipt.contains("Events (0)"), "{receipt}");
    close_drill_down(&tmux)?;

    // 3a. The whitepaper's Figure 6 deployed and called with the CLI: the call's receipt in the
    // dashboard shows the function's return value.
    let contract = deploy_figure6(&url, dir.path())?;
    let call = aergo_e2e::figure6_transfer(&url, &contract)?;
    assert_eq!(call["result"], json!("OK"), "{call}");
    let call_hash = call["tx_hash"].as_str().context("call: no tx_hash")?;
    let call_height = call["block_height"]
        .as_u64()
        .context("call: no block_height")?;
    let call_index = call["index"].as_u64().context("call: no index")?;
    let receipt = open_receipt(&tmux, call_height, call_index, call_hash)?;
    assert!(
        receipt.lines().filter(|l| l.contains("Result")).any(|l| l
            .split(|c: char| c.is_whitespace() || c == '│')
            .any(|w| w == "OK")),
        "the receipt view does not show the return value OK:\n{receipt}"
    );
    // One step back, the call's transaction shows its function and arguments (as `aergo tx`
    // does) and the fee to the aer, as the receipt view does.
    tmux.keys(&["Escape"])?;
    let tx_view = tmux.wait_for(
        "the call's transaction view",
        Duration::from_secs(10),
        |s| s.contains("Transaction  (Esc back)"),
    )?;
    assert!(
        tx_view.contains("transfer('alice', 'bob', '10')"),
        "the transaction view does not show the call:\n{tx_view}"
    );
    let fee = rpc(port, "receipt", json!({"hash": call_hash}))?["fee"]
        .as_str()
        .context("receipt: no fee")?
        .to_string();
    let fee_aergo = format!("0.{fee:0>18}").trim_end_matches('0').to_string();
    assert!(
        tx_view.contains(&format!("fee {fee_aergo} AERGO")),
        "the transaction view's fee is not {fee_aergo} AERGO:\n{tx_view}"
    );
    tmux.keys(&["Enter"])?;
    tmux.wait_for("the receipt view again", Duration::from_secs(10), |s| {
        s.contains("Receipt") && s.contains("Events (")
    })?;
    close_drill_down(&tmux)?;

    // 3a'. The Mempool screen: the node pre-confirmed what it admitted (every transaction
    // above was promised at admission), with its latency over the last minute.
    tmux.keys(&["3"])?;
    let mp = tmux.wait_for(
        "the Mempool screen's pre-confirmation line",
        Duration::from_secs(10),
        |s| s.contains("preconf p50 ") && s.contains("/min | seq "),
    )?;
    assert!(
        !mp.contains("p50 -/") && mp.contains("/p99 ") && mp.contains(" ms | "),
        "no pre-confirmation latency on the Mempool screen:\n{mp}"
    );
    // 3b. The Peers screen of a dev node: no peers, a solo producer, LIB at the head.
    tmux.keys(&["4"])?;
    tmux.wait_for("the Peers screen", Duration::from_secs(10), |s| {
        s.contains("Peers (0)")
            && s.contains("no peers: a solo/dev node runs alone")
            && s.contains("solo: this node produces every block alone")
            && s.contains("LIB")
    })?;
    tmux.keys(&["1"])?;

    // 4. Idle CPU and RSS on the live node.
    let top_pid = poll("the dashboard's pid", Duration::from_secs(5), || {
        child_pid(shell_pid)
    })?;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let t0 = cpu_ticks(top_pid)?;
    let start = Instant::now();
    let secs = 20.0;
    // Measuring over wall-clock time is the point here, not synchronisation.
    std::thread::sleep(Duration::from_secs_f64(secs));
    let cpu = (cpu_ticks(top_pid)? - t0) as f64 / ticks_per_sec / start.elapsed().as_secs_f64();
    let rss = rss_kib(top_pid)?;
    println!(
        "DASHBOARD idle CPU {:.2}% of one core over {secs:.0} s, RSS {:.1} MiB (120x40, live dev node)",
        cpu * 100.0,
        rss as f64 / 1024.0
    );
    assert!(
        cpu < 0.10,
        "idle CPU {:.2}% of a core is far above the 2% target",
        cpu * 100.0
    );

    // 5. q quits and restores the terminal (the alternate screen is gone).
    tmux.keys(&["q"])?;
    let end = tmux.wait_for("the dashboard to exit", Duration::from_secs(10), |s| {
        s.contains("DASHBOARD-EXIT=")
    })?;
    assert!(end.contains("DASHBOARD-EXIT=0"), "exit status: {end}");
    assert!(!end.contains("1 Over"), "terminal not restored:\n{end}");
    let end = tmux.wait_for("stty's report", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.trim().ends_with("icanon"))
    })?;
    assert!(
        end.lines().any(|l| l.trim() == "icanon"),
        "raw mode left on after quitting:\n{end}"
    );
    Ok(())
}

#[test]
fn a_panic_restores_the_terminal() -> Result<()> {
    if !tmux_available() {
        if ci() {
            bail!("tmux is not installed (scripts/setup.sh installs it)");
        }
        eprintln!("SKIPPED: tmux is not installed; this test needs it");
        return Ok(());
    }
    let top_bin = bin("aergo-top")?;
    let (rpc_port, fs_port) = (free_port()?, free_port()?);
    let tmux = Tmux::new("top");
    let cmd = format!(
        "AERGO_TOP_TEST_PANIC=1 {} --rpc http://127.0.0.1:{rpc_port} --init /nonexistent.sock \
         --fs http://127.0.0.1:{fs_port}; echo DASHBOARD-EXIT=$?; \
         stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 600",
        top_bin.display()
    );
    tmux.start(100, 30, &cmd)?;
    let end = tmux.wait_for(
        "the dashboard to panic and exit",
        Duration::from_secs(20),
        |s| s.contains("DASHBOARD-EXIT=") && s.lines().any(|l| l.trim().ends_with("icanon")),
    )?;
    assert!(
        end.contains("DASHBOARD-EXIT=101"),
        "panic exit status: {end}"
    );
    assert!(
        end.contains("panicking on purpose"),
        "panic message shown: {end}"
    );
    assert!(!end.contains("1 Over"), "alternate screen left on:\n{end}");
    assert!(
        end.lines().any(|l| l.trim() == "icanon"),
        "raw mode left on after the panic:\n{end}"
    );
    Ok(())
}

/// From any screen: Blocks, filter by `height`, open that block, its `index`th transaction
/// (checked by `hash`) and its receipt. Returns the receipt screen.
/// On a host (a dev node, no init, no AergoFS) the dashboard runs in host mode: no
/// "unreachable" alert or banner for what is not there, a note on the Storage and Services
/// screens instead; and `g` then a height opens that block on the Blocks screen.
#[test]
fn host_mode_and_go_to_height() -> Result<()> {
    if !tmux_available() {
        if ci() {
            bail!("tmux is not installed (scripts/setup.sh installs it)");
        }
        eprintln!("SKIPPED: tmux is not installed; this test needs it");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let node = aergo_e2e::start_dev_node(&dir.path().join("chain"), free_port()?, &[])?;
    let fs_port = free_port()?;
    let tmux = Tmux::new("host");
    let top_cmd = format!(
        "{} --rpc {} --init {} --fs http://127.0.0.1:{fs_port} --theme 256; sleep 600",
        bin("aergo-top")?.display(),
        node.url,
        dir.path().join("no-init.sock").display(),
    );
    tmux.start(120, 40, &top_cmd)?;
    tmux.wait_for("a height on the Overview", Duration::from_secs(30), |s| {
        Tmux::shown_height(s).is_some_and(|h| h >= 3)
    })?;
    // Storage: AergoFS has been tried and is absent; a host-mode note, no outage banner.
    tmux.keys(&["6"])?;
    let storage = tmux.wait_for("the host-mode Storage note", Duration::from_secs(20), |s| {
        s.contains("host mode: no AergoFS answers here")
    })?;
    assert!(!storage.contains("unreachable"), "{storage}");
    tmux.keys(&["7"])?;
    let services = tmux.wait_for(
        "the host-mode Services note",
        Duration::from_secs(20),
        |s| s.contains("host mode: no init here"),
    )?;
    assert!(!services.contains("unreachable"), "{services}");
    // Logs: no init, so no service logs, and it says why.
    tmux.keys(&["8"])?;
    let logs = tmux.wait_for("the host-mode Logs note", Duration::from_secs(20), |s| {
        s.contains("host mode: no init here, so no service logs")
    })?;
    assert!(!logs.contains("has not logged anything"), "{logs}");
    // Peers: a solo node's LIB is the head, worded as on the Overview.
    tmux.keys(&["4"])?;
    let peers = tmux.wait_for("the Peers screen's LIB", Duration::from_secs(20), |s| {
        s.lines()
            .any(|l| l.contains("LIB") && l.contains("(the head)"))
    })?;
    assert!(!peers.contains("(-0)"), "{peers}");
    tmux.keys(&["1"])?;
    let overview = tmux.wait_for("the Overview", Duration::from_secs(10), |s| {
        s.contains("Finalized") && s.contains("host")
    })?;
    assert!(
        !overview.contains("unreachable"),
        "host mode must not alert on a missing init or AergoFS:\n{overview}"
    );
    assert!(!overview.contains("(-0)"), "{overview}");

    // Go to a height: `g`, digits, Enter.
    tmux.keys(&["2"])?;
    tmux.wait_for("the Blocks screen", Duration::from_secs(10), |s| {
        s.contains("Blocks (")
    })?;
    tmux.keys(&["g"])?;
    tmux.wait_for("the go-to prompt", Duration::from_secs(10), |s| {
        s.contains("go to height: _")
    })?;
    tmux.keys(&["-l", "2"])?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("block 2", Duration::from_secs(10), |s| {
        s.contains("Block 2") && s.contains("Transactions (")
    })?;
    Ok(())
}

/// `/` on the Blocks screen searches the chain, not only the rows loaded since start. The node
/// is a solo chain of 50 ms blocks, so by the time the dashboard starts, block 2 and a
/// transaction sent first are far below the 50 rows it loads: their hashes are looked up by
/// RPC (`block` by hash, `tx`) and open that block. An unknown hash and a prefix of no loaded
/// row say so.
#[test]
fn search_finds_blocks_from_before_the_dashboard() -> Result<()> {
    if !tmux_available() {
        if ci() {
            bail!("tmux is not installed (scripts/setup.sh installs it)");
        }
        eprintln!("SKIPPED: tmux is not installed; this test needs it");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let cli = bin("aergo")?;
    let ks = dir.path().join("keystore");
    let aergo = |args: &[&str]| -> Result<String> {
        let out = Command::new(&cli)
            .arg("--keystore")
            .arg(&ks)
            .args(["--password", "search-test-password"])
            .args(args)
            .env("HOME", dir.path())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!(
                "aergo {args:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    };
    let acct: Value = serde_json::from_str(aergo(&["--json", "account", "new"])?.trim())?;
    let addr = acct["address"]
        .as_str()
        .context("account new: no address")?;
    let genesis = dir.path().join("genesis.json");
    std::fs::write(
        &genesis,
        json!({
            "chain_name": "aergo-fast", "timestamp_ms": 0,
            "balances": [{"address": addr, "balance": "500000000000000000000000000"}],
            "consensus": {"engine": "solo", "block_interval_ms": 50, "producer": null},
            "gas": {"base": 1000, "per_byte": 10, "min_price": "1000000000"}
        })
        .to_string(),
    )?;
    let port = free_port()?;
    let g = genesis.to_string_lossy().to_string();
    let node = aergo_e2e::start_dev_node(&dir.path().join("chain"), port, &["--genesis", &g])?;
    let sent: Value = serde_json::from_str(
        aergo(&[
            "--rpc", &node.url, "--json", "send", "--from", addr, "--to", addr, "--amount", "1",
        ])?
        .trim(),
    )?;
    let tx_hash = sent["hash"]
        .as_str()
        .or_else(|| sent["tx_hash"].as_str())
        .with_context(|| format!("send: no hash in {sent}"))?
        .to_string();
    let tx_height = poll("the transfer included", Duration::from_secs(30), || {
        Ok(rpc(port, "tx", json!({"hash": tx_hash}))?["block_height"].as_u64())
    })?;
    // Far enough that neither block 2 nor the transfer's block is among the 50 rows loaded.
    poll("60 more blocks", Duration::from_secs(60), || {
        let h = rpc(port, "chain_info", json!({}))?["height"].as_u64();
        Ok(h.filter(|h| *h > tx_height.max(2) + 60))
    })?;
    let block2 = rpc(port, "block", json!({"height": 2}))?["hash"]
        .as_str()
        .context("block 2: no hash")?
        .to_string();

    let tmux = Tmux::new("search");
    let top_cmd = format!(
        "{} --rpc {} --host-mode --init {} --fs http://127.0.0.1:{} --theme 256; sleep 600",
        bin("aergo-top")?.display(),
        node.url,
        dir.path().join("no-init.sock").display(),
        free_port()?,
    );
    tmux.start(120, 40, &top_cmd)?;
    tmux.keys(&["2"])?;
    tmux.wait_for("the Blocks list", Duration::from_secs(30), |s| {
        s.contains("Blocks (") && !s.contains("Blocks (0)")
    })?;
    let search = |text: &str| -> Result<()> {
        tmux.keys(&["/"])?;
        tmux.keys(&["-l", text])?;
        tmux.keys(&["Enter"])
    };

    // Esc twice, one at a time (two Escape bytes in one read are one key to the terminal
    // reader): out of the drill-down, then the filter cleared.
    let back_to_list = || -> Result<()> {
        tmux.keys(&["Escape"])?;
        tmux.wait_for("the Blocks list", Duration::from_secs(10), |s| {
            s.contains("Blocks (") && !s.contains("(Esc back)")
        })?;
        tmux.keys(&["Escape"])?;
        tmux.wait_for("the unfiltered list", Duration::from_secs(10), |s| {
            s.contains("Blocks (") && !s.contains("filter '")
        })
        .map(|_| ())
    };

    // A block hash from before the dashboard started.
    search(&block2)?;
    let shown = tmux.wait_for("block 2 found by its hash", Duration::from_secs(15), |s| {
        s.contains("Block 2  (Esc back)") && s.contains("Transactions (")
    })?;
    assert!(
        shown.contains(&block2[..20]),
        "the block's hash is shown:\n{shown}"
    );
    back_to_list()?;

    // A transaction hash: the block holding it opens.
    search(&tx_hash)?;
    let title = format!("Block {}  (Esc back)", fmt_thousands(tx_height));
    let shown = tmux.wait_for("the transfer's block", Duration::from_secs(15), |s| {
        s.contains(&title) && s.contains("Transactions (1)")
    })?;
    assert!(shown.contains(&tx_hash[..8]), "{shown}");
    back_to_list()?;

    // A hash nothing has, and a prefix of no loaded row.
    search(&"0f".repeat(32))?;
    tmux.wait_for("the no-match message", Duration::from_secs(15), |s| {
        s.contains("no block and no transaction on the chain has hash")
    })?;
    back_to_list()?;
    search("0xfedcba98")?;
    tmux.wait_for("the prefix message", Duration::from_secs(10), |s| {
        s.contains("no loaded block's hash starts with")
    })?;
    Ok(())
}

/// The Peers screen's BP count is governance's: a one-BP DPoS testnet whose BP votes
/// `bp_count` to 2 (quorum 1 of 1). `consensus_info` keeps reporting the genesis value; the
/// dashboard must show "1 of 2 active", as `aergo gov` says 2.
#[test]
fn dpos_bp_count_agrees_with_governance() -> Result<()> {
    if !tmux_available() {
        if ci() {
            bail!("tmux is not installed (scripts/setup.sh installs it)");
        }
        eprintln!("SKIPPED: tmux is not installed; this test needs it");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("tn");
    let cli = bin("aergo")?;
    let st = Command::new(&cli)
        .args(["testnet", "init", "--bps", "1", "--round-slots", "4"])
        .args(["--interval-ms", "500", "--start-delay-ms", "1000"])
        .args([
            "--base-port",
            &aergo_e2e::testnet::base_port(1)?.to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .output()?;
    if !st.status.success() {
        bail!("testnet init: {}", String::from_utf8_lossy(&st.stderr));
    }
    let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(out.join("node1/aergo.toml"))?)?;
    let url = format!(
        "http://{}",
        cfg["node"]["rpc_addr"].as_str().context("rpc_addr")?
    );
    let _node = aergo_e2e::testnet::start_node(&out, 0, &url)?;
    let ks = dir.path().join("keystore");
    let aergo = |args: &[&str]| -> Result<String> {
        let o = Command::new(&cli)
            .args(["--rpc", &url, "--keystore"])
            .arg(&ks)
            .args(["--password", "governance-test-pw"])
            .env("AERGO_KDF_MEMORY_KIB", "1024")
            .args(args)
            .output()?;
        if !o.status.success() {
            bail!("aergo {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    };
    // The BP's key is node 1's node key.
    let seed = std::fs::read_to_string(out.join("node1/node.key"))?;
    let imported: Value = serde_json::from_str(
        aergo(&["--json", "account", "import", "--key", seed.trim()])?.trim(),
    )?;
    let bp = imported["address"]
        .as_str()
        .context("account import: no address")?
        .to_string();
    poll("the first block", Duration::from_secs(30), || {
        Ok(
            aergo_e2e::testnet::rpc(&url, "chain_info", json!({}))?["height"]
                .as_u64()
                .filter(|h| *h >= 1),
        )
    })?;
    aergo(&["gov", "bp_count", "2", "--from", &bp])?;
    poll("bp_count 2 in force", Duration::from_secs(30), || {
        let g = aergo_e2e::testnet::rpc(&url, "dpos_governance", json!({}))?;
        Ok((g["params"]["bp_count"] == json!(2)).then_some(()))
    })?;

    let tmux = Tmux::new("gov");
    let top_cmd = format!(
        "{} --rpc {url} --host-mode --init {} --fs http://127.0.0.1:{} --theme 256; sleep 600",
        bin("aergo-top")?.display(),
        dir.path().join("no-init.sock").display(),
        free_port()?,
    );
    tmux.start(120, 40, &top_cmd)?;
    tmux.keys(&["4"])?;
    let peers = tmux.wait_for("the BP count", Duration::from_secs(30), |s| {
        s.lines()
            .any(|l| l.contains("BPs ") && l.contains(" active"))
    })?;
    let line = peers
        .lines()
        .find(|l| l.contains("BPs ") && l.contains(" active"))
        .unwrap_or_default();
    assert!(
        line.contains("1 of 2 active"),
        "the count must be governance's (consensus_info says {}):\n{peers}",
        aergo_e2e::testnet::rpc(&url, "consensus_info", json!({}))?["dpos"]["bp_count"]
    );
    Ok(())
}

fn open_receipt(tmux: &Tmux, height: u64, index: u64, hash: &str) -> Result<String> {
    tmux.keys(&["2"])?;
    tmux.wait_for("the Blocks screen", Duration::from_secs(10), |s| {
        s.contains("Blocks (")
    })?;
    tmux.keys(&["/"])?;
    tmux.keys(&["-l", &height.to_string()])?;
    tmux.keys(&["Enter"])?;
    // A typed height opens that block (listed first when loaded, fetched when not).
    tmux.wait_for("the filtered list", Duration::from_secs(10), |s| {
        s.contains(&format!("filter '{height}'"))
    })?;
    tmux.keys(&["Enter"])?;
    let shown = fmt_thousands(height);
    let block = tmux.wait_for("the block view", Duration::from_secs(10), |s| {
        s.contains(&format!("Block {shown}")) && s.contains("Transactions (")
    })?;
    if block.contains("Transactions (1)") {
        ensure!(
            block.contains("1 tx, ") && !block.contains("1 txs"),
            "one transaction reads `1 tx`:\n{block}"
        );
    }
    for _ in 0..index {
        tmux.keys(&["Down"])?;
    }
    tmux.keys(&["Enter"])?;
    tmux.wait_for("the transaction view", Duration::from_secs(10), |s| {
        s.contains(hash) && s.contains(&format!("included in block {shown}"))
    })?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("the receipt view", Duration::from_secs(10), |s| {
        s.contains("Receipt") && s.contains("Events (")
    })
}

/// Back from the receipt (receipt → tx → block → list) to the Blocks list, and a fourth
/// Escape clears the height filter. One Escape at a time, each after the screen it leads to:
/// two Escape bytes read together are one key to the terminal reader.
fn close_drill_down(tmux: &Tmux) -> Result<()> {
    type Done = fn(&str) -> bool;
    let steps: [(&str, Done); 4] = [
        ("the transaction view", |s| {
            s.contains("Transaction  (Esc back)")
        }),
        ("the block view", |s| s.contains("Transactions (")),
        ("the filtered Blocks list", |s| s.contains("Blocks (")),
        ("the unfiltered Blocks list", |s| {
            s.contains("Blocks (") && !s.contains("filter '")
        }),
    ];
    for (what, done) in steps {
        tmux.keys(&["Escape"])?;
        tmux.wait_for(what, Duration::from_secs(10), done)?;
    }
    Ok(())
}

fn fmt_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
