//! `--json` output is JSON on every line, for the commands that need no node: the `aergo sql`
//! sandbox's line protocol (one object per statement: rows, a call, `{"done", "gas"}`, or
//! `{"error"}`), `aergo testnet init` and `aergo account new`.

use std::io::Write;
use std::process::{Command, Stdio};

use aergo_e2e::{bin, repo_root};
use anyhow::{ensure, Context, Result};
use serde_json::Value;

fn json_lines(stdout: &[u8]) -> Result<Vec<Value>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l:?}")))
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[test]
fn sandbox_answers_one_json_object_per_statement() -> Result<()> {
    let fig6 = repo_root().join("node/sql/tests/fixtures/figure6.sql");
    let mut child = Command::new(bin("aergo")?)
        .args(["sql", "--json"])
        .arg(&fig6)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let input = "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50)\n\
                 CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT)\n\
                 \\sender alice\n\
                 CALL transfer('alice', 'bob', 10)\n\
                 SELECT owner, balance FROM accounts ORDER BY owner\n\
                 SELEKT nonsense\n\
                 \\abi\n";
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    let lines = json_lines(&out.stdout)?;
    ensure!(lines.len() == 7, "one line per statement: {lines:?}");
    let want: [&[&str]; 7] = [
        &["done", "gas"],
        &["done", "gas"],
        &["done", "gas"],
        &["events", "gas_used", "result"],
        &["columns", "rows"],
        &["error"],
        &["functions", "tables"],
    ];
    for (i, (v, w)) in lines.iter().zip(want).enumerate() {
        ensure!(keys(v) == w, "line {i}: {v}");
    }
    ensure!(lines[0]["done"] == "ok" && lines[0]["gas"].as_u64() > Some(0));
    ensure!(lines[1]["done"] == "upgraded");
    ensure!(lines[3]["result"] == "OK");
    ensure!(lines[4]["rows"][0][1] == "90.00" && lines[4]["rows"][1][1] == "15.50");
    // A failed line makes the run fail, but every line was still answered.
    ensure!(!out.status.success());
    Ok(())
}

/// Without `\sender`, the sandbox's `sender()` is a real-looking AERGO address (base58, `A…`),
/// not a placeholder.
#[test]
fn sandbox_sender_is_an_address() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let script = tmp.path().join("who.sql");
    std::fs::write(
        &script,
        "CREATE FUNCTION who() RETURNS TEXT AS $$ BEGIN RETURN sender(); END; $$",
    )?;
    let mut child = Command::new(bin("aergo")?)
        .args(["sql", "--json"])
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"CALL who()\n")?;
    let out = child.wait_with_output()?;
    let lines = json_lines(&out.stdout)?;
    let who = lines
        .first()
        .and_then(|l| l["result"].as_str())
        .with_context(|| format!("no result: {lines:?}"))?;
    ensure!(
        aergo_types::Address::decode(who).is_ok() && who.starts_with('A'),
        "sender() in the sandbox is {who:?}, not an address"
    );
    Ok(())
}

#[test]
fn offline_commands_print_json_lines() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = Command::new(bin("aergo")?)
        .args(["--json", "testnet", "init", "--bps", "2", "--out"])
        .arg(tmp.path().join("tn"))
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout)?;
    ensure!(lines.len() == 1, "{lines:?}");
    ensure!(lines[0]["nodes"].as_array().map(Vec::len) == Some(2));
    ensure!(lines[0]["chain_id"].as_str().map(str::len) == Some(64));
    // Without --json the first slot is a local date and time, not milliseconds.
    let out = Command::new(bin("aergo")?)
        .args(["testnet", "init", "--bps", "2", "--out"])
        .arg(tmp.path().join("tn-text"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let slot = text
        .split("first slot at ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or("");
    ensure!(
        out.status.success()
            && slot.len() == "2026-01-01 00:00:00".len()
            && slot.as_bytes().get(4) == Some(&b'-')
            && !slot.contains("ms"),
        "testnet init: {text}"
    );

    let out = Command::new(bin("aergo")?)
        .args(["--json", "--keystore"])
        .arg(tmp.path().join("ks"))
        .args(["account", "new"])
        .env("AERGO_PASSWORD", "a-long-enough-password")
        .env("AERGO_KDF_MEMORY_KIB", "64")
        .output()?;
    ensure!(out.status.success());
    let lines = json_lines(&out.stdout)?;
    ensure!(
        lines.len() == 1 && lines[0]["address"].is_string(),
        "{lines:?}"
    );
    Ok(())
}
