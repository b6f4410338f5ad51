//! The CLI for a newcomer and a contract author, against a real dev node: contract pre-flight
//! (a deploy or upgrade script that does not compile, and a call with a wrong function, argument
//! count or type, send nothing: the dev account's nonce and the mempool stay as they were;
//! `--dry-run` prints the result and gas and sends nothing), errors for common slips (`0x…`
//! addresses, `DEV`, negative amounts, more than 18 decimals, no node running), named accounts
//! and contracts, and `account list` with balances.

use aergo_e2e::{aergo_json, bin, free_port, start_dev_node, FIGURE6_SQL};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `aergo --rpc URL ARGS…` with a private keystore; returns the output.
fn run(url: &str, ks: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut c = Command::new(bin("aergo")?);
    c.args(["--rpc", url, "--keystore"])
        .arg(ks)
        .args(args)
        .env("AERGO_PASSWORD", "newcomer-pw")
        .env("AERGO_KDF_MEMORY_KIB", "1024")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c.spawn()?;
    if let (Some(text), Some(mut si)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut si, text.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

fn err_of(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    )
}

/// The dev account's next nonce and the mempool's size: what a sent transaction changes.
fn sent_state(url: &str) -> Result<(u64, u64)> {
    let b = aergo_json(url, &["balance", "dev"])?;
    let m = aergo_json(url, &["mempool"])?;
    Ok((
        b["next_nonce"].as_u64().context("next_nonce")?,
        m["count"].as_u64().context("count")?,
    ))
}

#[test]
fn contract_preflight_sends_nothing_on_mistakes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let ks = tmp.path().join("ks");
    let fig6 = tmp.path().join("figure6.sql");
    std::fs::write(&fig6, FIGURE6_SQL)?;
    let fig6 = fig6.to_str().context("path")?;

    // A syntax error: file:line:column, nothing sent.
    let bad = tmp.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE t (a BIGINT PRIMARY KEY);\nCREATE FUNCTION f() RETURNS BIGINT AS $$ BEGIN RETURN 1 +; END; $$",
    )?;
    let before = sent_state(&url)?;
    let o = run(
        &url,
        &ks,
        &[
            "contract",
            "deploy",
            bad.to_str().context("p")?,
            "--from",
            "dev",
        ],
        None,
    )?;
    let e = err_of(&o);
    ensure!(!o.status.success(), "{e}");
    ensure!(
        e.contains("bad.sql:2:") && e.contains("nothing was sent"),
        "{e}"
    );
    ensure!(
        sent_state(&url)? == before,
        "a deploy that does not compile was sent"
    );

    // A good deploy under a name, then an upgrade naming a missing table: nothing sent.
    let o = run(
        &url,
        &ks,
        &[
            "--json", "contract", "deploy", fig6, "--from", "dev", "--name", "bank",
        ],
        None,
    )?;
    ensure!(o.status.success(), "{}", err_of(&o));
    let before = sent_state(&url)?;
    let o = run(
        &url,
        &ks,
        &["contract", "upgrade", "bank", "-", "--from", "dev"],
        Some("INSERT INTO acounts VALUES ('alice', 1);\n"),
    )?;
    let e = err_of(&o);
    ensure!(!o.status.success() && e.contains("stdin:1:"), "{e}");
    ensure!(sent_state(&url)? == before, "a bad upgrade was sent");
    let o = run(
        &url,
        &ks,
        &["contract", "upgrade", "bank", "-", "--from", "dev"],
        Some("INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50);\n"),
    )?;
    ensure!(o.status.success(), "{}", err_of(&o));

    // Wrong argument count, unknown function, wrong type: nothing sent.
    let before = sent_state(&url)?;
    for (args, want) in [
        (
            vec!["transfer", "alice", "bob"],
            "takes 3 arguments, 2 given",
        ),
        (
            vec!["tranfer", "alice", "bob", "1"],
            "no function `tranfer`",
        ),
        (vec!["transfer", "alice", "bob", "ten"], "not a number"),
    ] {
        let mut a = vec!["contract", "call", "bank"];
        a.extend(&args);
        a.extend(["--from", "dev"]);
        let o = run(&url, &ks, &a, None)?;
        let e = err_of(&o);
        ensure!(!o.status.success() && e.contains(want), "{args:?}: {e}");
        ensure!(e.contains("nothing was sent"), "{e}");
    }
    ensure!(sent_state(&url)? == before, "a bad call was sent");

    // --dry-run: the result and the gas, nothing sent.
    let o = run(
        &url,
        &ks,
        &[
            "--json",
            "contract",
            "call",
            "bank",
            "transfer",
            "alice",
            "bob",
            "10",
            "--from",
            "dev",
            "--dry-run",
        ],
        None,
    )?;
    ensure!(o.status.success(), "{}", err_of(&o));
    let v: Value = serde_json::from_slice(&o.stdout)?;
    ensure!(
        v["result"] == json!("OK") && v["gas_used"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    ensure!(sent_state(&url)? == before, "a dry run was sent");

    // `contract view` prints the result as `call` does (text, unquoted) and its gas.
    let o = run(
        &url,
        &ks,
        &["contract", "view", "bank", "transfer", "alice", "bob", "1"],
        None,
    )?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    ensure!(
        o.status.success()
            && text.lines().next() == Some("result: OK")
            && text.contains("gas: ")
            && text.contains("writes discarded"),
        "{text}{}",
        err_of(&o)
    );
    ensure!(sent_state(&url)? == before, "a view was sent");

    // A real call takes its gas limit from the estimate.
    let r = aergo_json(
        &url,
        &[
            "--keystore",
            ks.to_str().context("p")?,
            "contract",
            "call",
            "bank",
            "transfer",
            "alice",
            "bob",
            "10",
            "--from",
            "dev",
        ],
    )?;
    ensure!(r["result"] == json!("OK"), "{r}");
    // `aergo tx` of a call shows the function and its arguments.
    let o = run(
        &url,
        &ks,
        &["tx", r["tx_hash"].as_str().context("tx_hash")?],
        None,
    )?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    ensure!(
        text.lines()
            .any(|l| l.trim() == "call      transfer('alice', 'bob', '10')"),
        "{text}{}",
        err_of(&o)
    );
    let tx = aergo_json(&url, &["tx", r["tx_hash"].as_str().context("tx_hash")?])?;
    let limit = tx["tx"]["gas_limit"].as_u64().context("gas_limit")?;
    ensure!(
        limit < 1_000_000 && limit > r["gas_used"].as_u64().unwrap_or(u64::MAX),
        "estimated gas limit {limit}: {tx} {r}"
    );
    Ok(())
}

#[test]
fn common_slips_get_errors_that_say_what_to_type() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ks = tmp.path().join("ks");
    // Nothing listens on this port.
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let cases: [(&[&str], &str); 6] = [
        (
            &["balance", "0x1234abcd"],
            "AERGO addresses are base58 and start with `A`",
        ),
        (&["balance", "DEV"], "did you mean `dev`"),
        (
            &["send", "--from", "dev", "--to", "dev", "--amount", "-5"],
            "amounts are positive",
        ),
        (
            &[
                "send",
                "--from",
                "dev",
                "--to",
                "dev",
                "--amount",
                "0.0000000000000000001",
            ],
            "19 decimals: AERGO has 18",
        ),
        (&["chain"], "aergo-node --dev"),
        (
            &["balance", "nobody"],
            "no account or contract has that name",
        ),
    ];
    for (args, want) in cases {
        let o = run(&dead, &ks, args, None)?;
        let e = err_of(&o);
        ensure!(!o.status.success() && e.contains(want), "{args:?}: {e}");
    }
    let o = run(&dead, &ks, &["chain"], None)?;
    ensure!(err_of(&o).contains("--rpc"), "{}", err_of(&o));
    Ok(())
}

#[test]
fn named_accounts_and_list_with_balances() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let ks = tmp.path().join("ks");
    let o = run(
        &url,
        &ks,
        &["--json", "account", "new", "--name", "demo"],
        None,
    )?;
    ensure!(o.status.success(), "{}", err_of(&o));
    let created: Value = serde_json::from_slice(&o.stdout)?;
    ensure!(created["name"] == json!("demo"), "{created}");
    // A taken name is refused before anything is created.
    let o = run(&url, &ks, &["account", "new", "--name", "demo"], None)?;
    ensure!(
        !o.status.success() && err_of(&o).contains("already taken"),
        "{}",
        err_of(&o)
    );
    let o = run(
        &url,
        &ks,
        &[
            "send", "--from", "dev", "--to", "demo", "--amount", "2.5", "--wait", "included",
        ],
        None,
    )?;
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    ensure!(
        o.status.success() && out.contains("sent 2.5 AERGO"),
        "{}",
        err_of(&o)
    );
    let o = run(&url, &ks, &["--json", "account", "list"], None)?;
    let list: Value = serde_json::from_slice(&o.stdout)?;
    ensure!(
        list[0]["name"] == json!("demo")
            && list[0]["balance"] == json!("2500000000000000000")
            && list[0]["address"] == created["address"],
        "{list}"
    );
    let o = run(&url, &ks, &["account", "list"], None)?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    ensure!(
        text.contains("demo") && text.contains("2.5 AERGO"),
        "{text}"
    );
    // A balance error speaks AERGO, not 22-digit aer.
    let o = run(
        &url,
        &ks,
        &["send", "--from", "demo", "--to", "dev", "--amount", "1000"],
        None,
    )?;
    let e = err_of(&o);
    let long_number = e
        .split(|c: char| !c.is_ascii_digit())
        .any(|w| w.len() >= 19);
    ensure!(
        !o.status.success() && e.contains("2.5 AERGO") && !long_number,
        "{e}"
    );
    // An account that never received anything: the proof says it proves absence.
    let o = run(&url, &ks, &["account", "new", "--name", "empty"], None)?;
    ensure!(o.status.success(), "{}", err_of(&o));
    let o = run(&url, &ks, &["proof", "empty"], None)?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    ensure!(
        o.status.success() && text.contains("ABSENCE") && text.contains("VALID"),
        "{text}{}",
        err_of(&o)
    );
    Ok(())
}

/// `blocks --from/--to` lists that range, oldest first; `blocks --follow` (over the WebSocket
/// subscription) prints the recent blocks and then each new one, one stream in height order
/// with no gap and no repeat, as text and as JSON lines. `mempool` prints sizes in units.
#[test]
fn blocks_ranges_and_follow() -> Result<()> {
    use std::io::BufRead;
    let tmp = tempfile::tempdir()?;
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let ks = tmp.path().join("ks");
    aergo_e2e::poll("height 5", std::time::Duration::from_secs(30), || {
        Ok(aergo_json(&url, &["chain"])?["height"]
            .as_u64()
            .filter(|h| *h >= 5))
    })?;
    let range = aergo_json(&url, &["blocks", "--from", "2", "--to", "4"])?;
    let heights: Vec<u64> = range
        .as_array()
        .context("blocks --from/--to: not a list")?
        .iter()
        .filter_map(|b| b["height"].as_u64())
        .collect();
    ensure!(heights == [2, 3, 4], "{range}");
    let o = run(&url, &ks, &["blocks", "--from", "2", "--to", "4"], None)?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    ensure!(
        o.status.success()
            && rows.len() == 3
            && rows
                .iter()
                .zip(["2", "3", "4"])
                .all(|(r, h)| r.split_whitespace().next() == Some(h)),
        "{text}{}",
        err_of(&o)
    );

    // The mempool's sizes read in units, not raw byte counts.
    let o = run(&url, &ks, &["mempool"], None)?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    ensure!(
        o.status.success() && text.contains("MiB") && !text.contains("268435456"),
        "{text}"
    );

    for json_out in [false, true] {
        let mut c = Command::new(bin("aergo")?);
        c.args(["--rpc", &url]);
        if json_out {
            c.arg("--json");
        }
        c.args(["blocks", "--follow", "--last", "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = aergo_e2e::KillOnDrop::spawn(&mut c)?;
        let out = child.0.stdout.take().context("stdout")?;
        // Reading blocks until a deadline: the dev node makes one a second.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut heights = Vec::new();
        while heights.len() < 6 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .with_context(|| format!("blocks --follow printed only {heights:?}"))?;
            let h = if json_out {
                serde_json::from_str::<Value>(&line)?["height"].as_u64()
            } else {
                line.split_whitespace().next().and_then(|w| w.parse().ok())
            };
            heights.extend(h);
        }
        ensure!(
            heights.windows(2).all(|w| w[1] == w[0] + 1),
            "blocks --follow (json {json_out}) must stream heights in order: {heights:?}"
        );
    }
    Ok(())
}

/// At a terminal the sandbox continues a statement until `;` (a `$$` body may hold `;`), prints
/// `\abi` as a table, and remembers history across runs (`~/.aergo/sql_history`). Driven in
/// tmux; under `CI=true` a missing tmux fails.
#[test]
fn interactive_sandbox_takes_multi_line_statements_and_keeps_history() -> Result<()> {
    use aergo_e2e::tmux::{tmux_available, Tmux};
    use std::time::Duration;
    if !tmux_available() {
        anyhow::ensure!(
            !aergo_e2e::ci(),
            "tmux is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("SKIPPED: tmux is not installed; this test needs it");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let fig6 = tmp.path().join("figure6.sql");
    std::fs::write(&fig6, FIGURE6_SQL)?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let start = |session: &str| -> Result<Tmux> {
        let t = Tmux::new(session);
        let cmd = format!(
            "export HOME={}; {} sql {}; echo SANDBOX-EXIT=$?; sleep 600",
            home.display(),
            bin("aergo")?.display(),
            fig6.display()
        );
        t.start(150, 40, &cmd)?;
        t.wait_for("the sandbox prompt", Duration::from_secs(20), |s| {
            s.lines().any(|l| l.trim_end() == "sql>")
        })
        .with_context(|| format!("session {session}: {cmd}"))?;
        Ok(t)
    };
    let wait = Duration::from_secs(20);
    let t = start("sbx1")?;
    t.keys(&["-l", "INSERT INTO accounts VALUES ('alice', 100.00),"])?;
    t.keys(&["Enter"])?;
    t.wait_for("the continuation prompt", wait, |s| s.contains("...>"))?;
    t.keys(&["-l", "('bob', 5.50)"])?;
    // tmux reads a trailing `;` as its own command separator: send it as hex.
    t.keys(&["-H", "3b"])?;
    t.keys(&["Enter"])?;
    t.wait_for("the two-line INSERT", wait, |s| s.contains("ok (gas"))?;
    // Each line is typed once its continuation prompt shows: the line editor discards input
    // typed ahead of a new prompt.
    let conts = |s: &str| s.lines().filter(|l| l.starts_with("...>")).count();
    let next_prompt = |t: &Tmux| -> Result<()> {
        let before = conts(&t.capture()?);
        t.keys(&["Enter"])?;
        t.wait_for("the next continuation prompt", wait, |s| conts(s) > before)
            .map(|_| ())
    };
    t.keys(&["-l", "CREATE FUNCTION one() RETURNS BIGINT AS $$"])?;
    next_prompt(&t)?;
    t.keys(&["-l", "BEGIN RETURN 1"])?;
    // tmux reads a trailing `;` as its own command separator: send it as hex.
    t.keys(&["-H", "3b"])?;
    next_prompt(&t)?;
    t.keys(&["-l", "END; $$"])?;
    // tmux reads a trailing `;` as its own command separator: send it as hex.
    t.keys(&["-H", "3b"])?;
    t.keys(&["Enter"])?;
    t.wait_for("the upgrade across lines", wait, |s| s.contains("upgraded"))?;
    t.keys(&["-l", "CALL transfer('alice', 'bob', 10)"])?;
    // tmux reads a trailing `;` as its own command separator: send it as hex.
    t.keys(&["-H", "3b"])?;
    t.keys(&["Enter"])?;
    t.wait_for("the call", wait, |s| s.contains("result: OK"))?;
    // `\help` lists the sandbox's commands (not an SQL syntax error).
    t.keys(&["-l", "\\help"])?;
    t.keys(&["Enter"])?;
    let help = t.wait_for("the command list", wait, |s| {
        s.contains("what block_height() returns")
    })?;
    ensure!(!help.contains("syntax error"), "{help}");
    t.keys(&["-l", "\\abi"])?;
    t.keys(&["Enter"])?;
    t.wait_for("the ABI table", wait, |s| {
        s.contains("kind") && s.contains("function | transfer") && s.contains("table    | accounts")
    })?;
    t.keys(&["C-d"])?;
    t.wait_for("the sandbox to exit", wait, |s| {
        s.contains("SANDBOX-EXIT=0")
    })?;
    drop(t);
    // History survives: Up at a new prompt brings back the last statement.
    let t = start("sbx2")?;
    t.keys(&["Up"])?;
    t.wait_for("the last statement from history", wait, |s| {
        s.lines().any(|l| l.starts_with("sql> \\abi"))
    })?;
    t.keys(&["C-c"])?;
    // Ctrl-D only once the fresh prompt is up: sent earlier, between two line reads, the
    // terminal's own line discipline takes it.
    t.wait_for("a fresh prompt after Ctrl-C", wait, |s| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::trim_end)
            == Some("sql>")
    })?;
    t.keys(&["C-d"])?;
    t.wait_for("the sandbox to exit", wait, |s| {
        s.contains("SANDBOX-EXIT=0")
    })?;
    Ok(())
}
