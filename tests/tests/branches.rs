//! Branches and auto merges on a dev node through the CLI, as a user runs them: a branch is
//! created (the node's operator accepts producing it), a transfer made on the branch appears
//! on `main` after the merge, a double spend against `main` is left out with the reason
//! `insufficient balance`, bad requests get clear errors and change nothing, `aergo switch`
//! changes the default branch, and the branch survives a restart. A consistent merge of the
//! whitepaper's Figure 6 resolves a row changed on both sides with a resolver contract, and a
//! merge the resolver refuses changes nothing.

use aergo_e2e::{bin, free_port, poll, start_dev_node};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `aergo --rpc URL --json ARGS…` with HOME (the switched branch, the keystore) in
/// `home`; `Ok(Err(stderr))` when the command fails.
fn run(home: &Path, url: &str, args: &[&str]) -> Result<std::result::Result<Value, String>> {
    let out = Command::new(bin("aergo")?)
        .env("HOME", home)
        .env("AERGO_PASSWORD", "correct horse battery")
        .env_remove("AERGO_BRANCH")
        .args(["--rpc", url, "--json"])
        .args(args)
        .output()
        .with_context(|| format!("run aergo {args:?}"))?;
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).to_string()));
    }
    Ok(Ok(serde_json::from_slice(&out.stdout).with_context(
        || {
            format!(
                "aergo {args:?} printed {}",
                String::from_utf8_lossy(&out.stdout)
            )
        },
    )?))
}

fn ok(home: &Path, url: &str, args: &[&str]) -> Result<Value> {
    match run(home, url, args)? {
        Ok(v) => Ok(v),
        Err(e) => bail!("aergo {args:?} failed: {e}"),
    }
}

fn refused(home: &Path, url: &str, args: &[&str], want: &str) -> Result<()> {
    match run(home, url, args)? {
        Ok(v) => bail!("aergo {args:?} succeeded: {v}"),
        Err(e) => {
            ensure!(
                e.contains(want),
                "aergo {args:?}: wanted `{want}`, got: {e}"
            );
            Ok(())
        }
    }
}

fn aer(v: &Value) -> Result<u128> {
    v["balance"]
        .as_str()
        .context("balance")?
        .parse()
        .context("balance in aer")
}

const AERGO: u128 = 1_000_000_000_000_000_000;

#[test]
fn a_branch_transfer_merges_into_main_and_a_double_spend_is_left_out() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let data = tmp.path().join("node");
    let port = free_port()?;
    let node = start_dev_node(&data, port, &[])?;
    let url = node.url.clone();
    let new_account = |what: &str| -> Result<String> {
        let v = ok(&home, &url, &["account", "new"])?;
        v["address"]
            .as_str()
            .map(String::from)
            .with_context(|| format!("{what}: {v}"))
    };
    let (bob, carol, dave) = (
        new_account("bob")?,
        new_account("carol")?,
        new_account("dave")?,
    );
    ok(
        &home,
        &url,
        &[
            "send", "--from", "dev", "--to", &bob, "--amount", "100", "--wait", "included",
        ],
    )?;

    // Create `feat` from main's last final block; the node accepts producing it.
    let c = ok(&home, &url, &["branch", "create", "feat"])?;
    ensure!(c["status"] == "ok", "{c}");
    let list = ok(&home, &url, &["branch"])?;
    let feat = &list["branches"][0];
    ensure!(
        feat["name"] == "feat" && feat["hosted"] == true && feat["produced_here"] == true,
        "{list}"
    );
    let fork = feat["fork_height"].as_u64().context("fork height")?;

    // On feat: bob → carol 60, dev → carol 5. Main does not see them.
    for (from, amount) in [(bob.as_str(), "60"), ("dev", "5")] {
        let s = ok(
            &home,
            &url,
            &[
                "--branch", "feat", "send", "--from", from, "--to", &carol, "--amount", amount,
                "--wait", "included",
            ],
        )?;
        ensure!(s["status"] == "ok", "{s}");
        ensure!(s["block_height"].as_u64() > Some(fork), "{s}");
    }
    let on = |branch: &str, who: &str| -> Result<u128> {
        aer(&ok(&home, &url, &["--branch", branch, "balance", who])?)
    };
    ensure!(on("feat", &carol)? == 65 * AERGO);
    ensure!(on("main", &carol)? == 0);
    // A read at a height at or below the fork falls through to main.
    let at_fork = ok(
        &home,
        &url,
        &[
            "--branch",
            "feat",
            "balance",
            &bob,
            "--at",
            &fork.to_string(),
        ],
    )?;
    ensure!(aer(&at_fork)? == 100 * AERGO, "{at_fork}");

    // Meanwhile bob spends 60 on main: his branch transfer can no longer hold there.
    ok(
        &home,
        &url,
        &[
            "send", "--from", &bob, "--to", &dave, "--amount", "60", "--wait", "included",
        ],
    )?;

    // A dry run shows the verdicts and changes nothing.
    let height = |b: &str| -> Result<u64> {
        ok(&home, &url, &["--branch", b, "chain"])?["height"]
            .as_u64()
            .context("height")
    };
    let dry = ok(&home, &url, &["merge", "feat", "--dry-run"])?;
    ensure!(dry["merged"].as_array().map(Vec::len) == Some(1), "{dry}");
    ensure!(
        dry["excluded"][0]["reason"] == "insufficient balance",
        "{dry}"
    );
    ensure!(on("main", &carol)? == 0);

    let m = ok(&home, &url, &["merge", "feat"])?;
    let merge = &m["merge"];
    ensure!(merge["source"] == "feat", "{m}");
    ensure!(merge["merged"].as_array().map(Vec::len) == Some(1), "{m}");
    ensure!(
        merge["excluded"][0]["reason"] == "insufficient balance",
        "{m}"
    );
    ensure!(
        on("main", &carol)? == 5 * AERGO,
        "the merged gift is on main"
    );
    ensure!(on("feat", &carol)? == 65 * AERGO, "the branch is unchanged");
    // The merge block shows its merge in `block`.
    let b = ok(
        &home,
        &url,
        &[
            "block",
            &m["block_height"].as_u64().context("height")?.to_string(),
        ],
    )?;
    ensure!(b["merge"]["source_height"].as_u64().is_some(), "{b}");

    // Refs, diff and log: feat's tip against main's differs for carol (65 against 5).
    let d = ok(&home, &url, &["diff", "feat", "main"])?;
    let carol_change = d["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["address"] == carol.as_str())
        .with_context(|| format!("{d}"))?;
    ensure!(
        carol_change["from"]["balance"] == (65 * AERGO).to_string(),
        "{d}"
    );
    ensure!(
        carol_change["to"]["balance"] == (5 * AERGO).to_string(),
        "{d}"
    );
    ensure!(d["common_height"].as_u64() == Some(fork), "{d}");
    let log = ok(&home, &url, &["log", "-n", "1"])?;
    ensure!(log["blocks"][0]["merge"]["source"] == "feat", "{log}");
    let fh = height("feat")?;
    let at = ok(
        &home,
        &url,
        &["balance", &carol, "--at", &format!("feat@{fh}")],
    )?;
    ensure!(aer(&at)? == 65 * AERGO, "{at}");
    let at = ok(
        &home,
        &url,
        &["balance", &carol, "--at", &format!("aergo:feat@{fh}")],
    )?;
    ensure!(aer(&at)? == 65 * AERGO, "REPO:REF: {at}");
    // Every read takes a ref: a proof at feat@H verifies against that block's state root, a
    // block by ref, and main@fork.
    let proof = ok(
        &home,
        &url,
        &["proof", &carol, "--at", &format!("feat@{fh}")],
    )?;
    ensure!(
        proof["verified"] == true && proof["exists"] == true && proof["height"] == fh,
        "{proof}"
    );
    let tip_block = ok(&home, &url, &["block", "feat"])?;
    let at_block = ok(&home, &url, &["block", &format!("feat@{fh}")])?;
    ensure!(
        tip_block["height"] == fh && at_block["hash"] == tip_block["hash"],
        "{tip_block} {at_block}"
    );
    ensure!(
        proof["state_root"] == at_block["state_root"],
        "{proof} {at_block}"
    );
    let main_fork = ok(&home, &url, &["block", &format!("main@{fork}")])?;
    ensure!(main_fork["height"] == fork, "{main_fork}");
    refused(&home, &url, &["block", "nope@3"], "no branch `nope`")?;
    // The RPC takes the same refs as `at`.
    let rpc = aergo_e2e::testnet::rpc;
    let acct = rpc(
        &url,
        "account",
        json!({"address": carol, "at": format!("feat@{fh}")}),
    )?;
    ensure!(
        acct["balance"] == (65 * AERGO).to_string() && acct["height"] == fh,
        "{acct}"
    );
    let p = rpc(&url, "get_proof", json!({"address": carol, "at": "feat"}))?;
    ensure!(p["state_root"] == at_block["state_root"], "{p}");
    let b = rpc(&url, "block", json!({"at": format!("main@{fork}")}))?;
    ensure!(b["height"] == fork, "{b}");
    for (params, want) in [
        (
            json!({"address": carol, "at": "feat", "height": 1}),
            "not both",
        ),
        (
            json!({"address": carol, "at": "feat", "branch": "other"}),
            "names branch",
        ),
        (json!({"address": carol, "at": "feat@x"}), "comes a number"),
        (json!({"address": carol, "at": 7}), "ref string"),
        (
            json!({"address": carol, "at": "feat@999999"}),
            "above the best height",
        ),
    ] {
        let e = rpc(&url, "account", params.clone())
            .err()
            .with_context(|| format!("{params} was accepted"))?;
        ensure!(e.to_string().contains(want), "{params}: {e}");
    }
    refused(
        &home,
        &url,
        &["proof", &carol, "--at", "feat@x"],
        "after @ comes a height",
    )?;
    refused(
        &home,
        &url,
        &["log", &format!("feat~{}", fh - fork + 1)],
        "below feat's fork point",
    )?;
    refused(&home, &url, &["diff", "nope", "main"], "no branch `nope`")?;

    // Tags: `v1.0` names main's block now; reads at it stay put while main moves on. A tag
    // on feat reads feat's block. Tags are immutable and never a branch's name.
    let main_h = height("main")?;
    let t = ok(&home, &url, &["tag", "v1.0"])?;
    ensure!(t["status"] == "ok", "{t}");
    ok(
        &home,
        &url,
        &[
            "send", "--from", "dev", "--to", &carol, "--amount", "1", "--wait", "included",
        ],
    )?;
    let at_tag = ok(&home, &url, &["balance", &carol, "--at", "v1.0"])?;
    ensure!(
        aer(&at_tag)? == 5 * AERGO && at_tag["height"] == main_h,
        "{at_tag}"
    );
    ensure!(aer(&ok(&home, &url, &["balance", &carol])?)? == 6 * AERGO);
    let tb = rpc(&url, "block", json!({"at": "v1.0"}))?;
    ensure!(tb["height"] == main_h, "{tb}");
    let tags = ok(&home, &url, &["branch"])?["tags"].clone();
    ensure!(
        tags[0]["name"] == "v1.0" && tags[0]["height"] == main_h,
        "{tags}"
    );
    refused(&home, &url, &["tag", "v1.0"], "tags are immutable")?;
    refused(&home, &url, &["tag", "feat"], "is a branch")?;
    refused(&home, &url, &["tag", "99"], "digits only")?;
    refused(
        &home,
        &url,
        &["tag", "v2", "999999"],
        "above the best height",
    )?;
    refused(
        &home,
        &url,
        &["balance", &carol, "--at", "nope.1"],
        "no branch or tag",
    )?;
    ok(&home, &url, &["tag", "taken"])?;
    refused(&home, &url, &["branch", "create", "taken"], "is a tag")?;

    // Bad requests: clear errors, nothing changes.
    let before = (height("main")?, on("main", &carol)?);
    refused(&home, &url, &["merge", "feat"], "nothing to merge")?;
    refused(
        &home,
        &url,
        &["merge", "feat", "--into", "feat"],
        "into itself",
    )?;
    refused(&home, &url, &["merge", "nope"], "no branch `nope`")?;
    refused(
        &home,
        &url,
        &["--branch", "nope", "chain"],
        "no branch `nope`",
    )?;
    refused(
        &home,
        &url,
        &["branch", "delete", "main"],
        "cannot be created or deleted",
    )?;
    refused(&home, &url, &["branch", "create", "12"], "digits only")?;
    refused(&home, &url, &["branch", "create", "feat"], "already exists")?;
    refused(
        &home,
        &url,
        &["branch", "create", "late", "--at", "999999"],
        "must be final",
    )?;
    ensure!(
        ok(&home, &url, &["mempool"])?["count"] == 0,
        "nothing was queued"
    );
    ensure!(on("main", &carol)? == before.1);

    // `aergo switch feat` makes feat the default; `switch main` goes back.
    ok(&home, &url, &["switch", "feat"])?;
    ensure!(aer(&ok(&home, &url, &["balance", &carol])?)? == 65 * AERGO);
    ok(&home, &url, &["switch", "main"])?;
    ensure!(aer(&ok(&home, &url, &["balance", &carol])?)? == 6 * AERGO);

    // A tag on feat names feat's block (the branch's tag transaction is feat's own).
    ok(
        &home,
        &url,
        &["--branch", "feat", "tag", "f1", &format!("feat@{fh}")],
    )?;
    let f1 = ok(
        &home,
        &url,
        &["--branch", "feat", "balance", &carol, "--at", "f1"],
    )?;
    ensure!(aer(&f1)? == 65 * AERGO && f1["height"] == fh, "{f1}");

    // After a restart the branch is hosted and produced again.
    let feat_height = height("feat")?;
    drop(node);
    let node = start_dev_node(&data, port, &[])?;
    ensure!(height("feat")? == feat_height);
    let s = ok(
        &home,
        &url,
        &[
            "--branch", "feat", "send", "--from", "dev", "--to", &dave, "--amount", "1", "--wait",
            "included",
        ],
    )?;
    ensure!(s["status"] == "ok", "{s}");

    // Deleting it: listed as deleted, it takes no transactions, and its blocks stay
    // readable.
    let feat_tip = ok(&home, &url, &["--branch", "feat", "chain"])?["height"].clone();
    ok(&home, &url, &["branch", "delete", "feat"])?;
    poll("feat listed as deleted", Duration::from_secs(10), || {
        let list = ok(&home, &url, &["branch"])?;
        Ok(list["branches"][0]["deleted"].is_u64().then_some(()))
    })?;
    refused(
        &home,
        &url,
        &[
            "--branch", "feat", "send", "--from", "dev", "--to", &carol, "--amount", "1", "--wait",
            "included",
        ],
        "was deleted",
    )?;
    let after = ok(&home, &url, &["--branch", "feat", "chain"])?;
    ensure!(
        after["height"] == feat_tip,
        "{after} against tip {feat_tip}"
    );
    ensure!(
        on("feat", &carol)? == 65 * AERGO,
        "the deleted branch's state stays readable"
    );
    // And after a restart.
    drop(node);
    let node = start_dev_node(&data, port, &[])?;
    let again = ok(&home, &url, &["--branch", "feat", "chain"])?;
    ensure!(again["height"] == feat_tip, "{again} after a restart");
    drop(node);
    Ok(())
}

/// A private branch is read, written, diffed and merged by its creator only: requests
/// signed by it (`aergo --as`) pass, anonymous ones and other accounts' are refused with the
/// reason.
#[test]
fn a_private_branch_answers_its_creator_only() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let bob = ok(&home, &url, &["account", "new"])?["address"]
        .as_str()
        .context("address")?
        .to_string();
    let c = ok(&home, &url, &["branch", "create", "secret", "--private"])?;
    ensure!(c["status"] == "ok", "{c}");
    let list = ok(&home, &url, &["branch"])?;
    ensure!(list["branches"][0]["private"] == true, "{list}");
    refused(&home, &url, &["--branch", "secret", "chain"], "is private")?;
    let s = ok(
        &home,
        &url,
        &[
            "--as", "dev", "--branch", "secret", "send", "--from", "dev", "--to", &bob, "--amount",
            "4", "--wait", "included",
        ],
    )?;
    ensure!(s["status"] == "ok", "{s}");
    let b = ok(
        &home,
        &url,
        &["--as", "dev", "--branch", "secret", "balance", &bob],
    )?;
    ensure!(aer(&b)? == 4 * AERGO, "{b}");
    refused(
        &home,
        &url,
        &["--as", &bob, "--branch", "secret", "balance", &bob],
        "may not read or write it",
    )?;
    refused(
        &home,
        &url,
        &["balance", &bob, "--at", "secret"],
        "is private",
    )?;
    refused(&home, &url, &["diff", "secret", "main"], "is private")?;
    refused(&home, &url, &["merge", "secret", "--dry-run"], "is private")?;
    ensure!(aer(&ok(&home, &url, &["balance", &bob])?)? == 0);
    // Its creator merges it: the transfer reaches main.
    let m = ok(&home, &url, &["--as", "dev", "merge", "secret"])?;
    ensure!(
        m["merge"]["merged"].as_array().map(Vec::len) == Some(1),
        "{m}"
    );
    ensure!(aer(&ok(&home, &url, &["balance", &bob])?)? == 4 * AERGO);
    drop(node);
    Ok(())
}

/// A merge larger than one block goes in parts: two branch blocks whose transactions' gas
/// limits together exceed the block gas limit merge in two consecutive merge blocks, with one
/// `aergo merge`, and everything is merged.
#[test]
fn a_merge_larger_than_a_block_spans_consecutive_merge_blocks() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let carol = ok(&home, &url, &["account", "new"])?["address"]
        .as_str()
        .context("address")?
        .to_string();
    ok(&home, &url, &["branch", "create", "big"])?;
    // Each transfer reserves 3,000,000 gas: two do not fit one block's 5,000,000.
    for amount in ["1", "2"] {
        let s = ok(
            &home,
            &url,
            &[
                "--branch",
                "big",
                "send",
                "--from",
                "dev",
                "--to",
                &carol,
                "--amount",
                amount,
                "--gas-limit",
                "3000000",
                "--wait",
                "included",
            ],
        )?;
        ensure!(s["status"] == "ok", "{s}");
    }
    let dry = ok(&home, &url, &["merge", "big", "--dry-run"])?;
    ensure!(
        dry["parts"].as_array().map(Vec::len) == Some(2)
            && dry["merged"].as_array().map(Vec::len) == Some(2),
        "{dry}"
    );
    let m = ok(&home, &url, &["merge", "big"])?;
    let parts = m["parts"].as_array().context("parts")?;
    ensure!(parts.len() == 2, "{m}");
    let (h1, h2) = (
        parts[0]["block_height"].as_u64().context("h1")?,
        parts[1]["block_height"].as_u64().context("h2")?,
    );
    ensure!(h2 > h1, "{m}");
    for p in parts {
        ensure!(
            p["merge"]["merged"].as_array().map(Vec::len) == Some(1)
                && p["merge"]["excluded"].as_array().map(Vec::len) == Some(0),
            "{p}"
        );
    }
    ensure!(
        aer(&ok(&home, &url, &["balance", &carol])?)? == 3 * AERGO,
        "both parts merged"
    );
    refused(&home, &url, &["merge", "big"], "nothing to merge")?;
    drop(node);
    Ok(())
}

/// kill -9 at several points while a merge is being built and committed: after a restart
/// the merge is either complete (its gift on `main`, nothing left to merge) or absent (the
/// balance as before, and merging again works), the branch keeps its blocks, and the block
/// log matches the index (`aergo-node check`).
#[test]
fn a_merge_cut_by_kill_9_is_complete_or_absent() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let data = tmp.path().join("node");
    let port = free_port()?;
    let mut node = start_dev_node(&data, port, &[])?;
    let url = node.url.clone();
    let carol = ok(&home, &url, &["account", "new"])?["address"]
        .as_str()
        .context("address")?
        .to_string();
    ok(&home, &url, &["branch", "create", "feat"])?;
    let bal =
        |b: &str| -> Result<u128> { aer(&ok(&home, &url, &["--branch", b, "balance", &carol])?) };
    let (mut complete, mut absent) = (0, 0);
    for (i, delay_ms) in [0u64, 400, 900, 1400, 2500].into_iter().enumerate() {
        ok(
            &home,
            &url,
            &[
                "--branch", "feat", "send", "--from", "dev", "--to", &carol, "--amount", "1",
                "--wait", "included",
            ],
        )?;
        let feat_height = ok(&home, &url, &["--branch", "feat", "chain"])?["height"]
            .as_u64()
            .context("height")?;
        let before = bal("main")?;
        ensure!(before == i as u128 * AERGO, "round {i}: main has {before}");
        ok(&home, &url, &["merge", "feat", "--no-wait"])?;
        // The fault: SIGKILL after a delay (the point in the merge it hits varies).
        std::thread::sleep(Duration::from_millis(delay_ms));
        node.proc.signal(9);
        node.proc.wait_timeout(Duration::from_secs(10))?;
        drop(node);
        node = start_dev_node(&data, port, &[])?;
        ensure!(
            ok(&home, &url, &["--branch", "feat", "chain"])?["height"].as_u64()
                == Some(feat_height),
            "round {i}: the branch lost blocks"
        );
        // The merge may still be pending in nobody's mempool (a mempool is not durable):
        // the state is either before or after, never between.
        let after = bal("main")?;
        if after == before {
            absent += 1;
            let m = ok(&home, &url, &["merge", "feat"])?;
            ensure!(
                m["merge"]["merged"].as_array().map(Vec::len) == Some(1),
                "{m}"
            );
        } else {
            ensure!(
                after == before + AERGO,
                "round {i}: main has {after}, before {before}"
            );
            complete += 1;
            refused(&home, &url, &["merge", "feat"], "nothing to merge")?;
        }
        ensure!(bal("main")? == (i as u128 + 1) * AERGO);
    }
    node.proc.signal(9);
    node.proc.wait_timeout(Duration::from_secs(10))?;
    let check = Command::new(bin("aergo-node")?)
        .args(["check", "--data-dir"])
        .arg(&data)
        .output()?;
    ensure!(
        check.status.success(),
        "aergo-node check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    eprintln!("merges complete at the kill: {complete}, absent: {absent}");
    Ok(())
}

/// The resolver of the consistent-merge test: a balance changed on both sides gets both
/// sides' changes; one that would go negative, or any other column, refuses the merge.
const RESOLVER: &str = "\
CREATE OR REPLACE FUNCTION resolve_accounts(col TEXT, base TEXT, ours TEXT, theirs TEXT)
RETURNS TEXT AS $$
DECLARE
  merged NUMERIC;
BEGIN
  IF col <> 'balance' THEN
    RAISE EXCEPTION 'column % cannot merge', col;
  END IF;
  merged := CAST(ours AS NUMERIC) + CAST(theirs AS NUMERIC) - COALESCE(CAST(base AS NUMERIC), 0);
  IF merged < 0 THEN
    RAISE EXCEPTION 'the balance would be negative: %', merged;
  END IF;
  RETURN CAST(merged AS TEXT);
END;
$$";

/// A consistent merge of the whitepaper's Figure 6 through the CLI: a row changed on both
/// sides goes to the resolver contract (both sides' balance changes add up), a row changed
/// on the branch alone applies, and a merge the resolver refuses changes nothing and says
/// why.
#[test]
fn a_consistent_merge_resolves_figure6_rows_with_a_resolver_contract() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let file = |name: &str, text: &str| -> Result<String> {
        let p = tmp.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.to_str().context("path")?.to_string())
    };
    let fig6 = ok(
        &home,
        &url,
        &[
            "contract",
            "deploy",
            &file("figure6.sql", aergo_e2e::FIGURE6_SQL)?,
            "--from",
            "dev",
        ],
    )?["address"]
        .as_str()
        .context("figure 6 address")?
        .to_string();
    ok(
        &home,
        &url,
        &[
            "contract",
            "upgrade",
            &fig6,
            &file(
                "seed.sql",
                "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50), ('carol', 0);",
            )?,
            "--from",
            "dev",
        ],
    )?;
    let resolver = ok(
        &home,
        &url,
        &[
            "contract",
            "deploy",
            &file("resolver.sql", RESOLVER)?,
            "--from",
            "dev",
        ],
    )?["address"]
        .as_str()
        .context("resolver address")?
        .to_string();
    let c = ok(
        &home,
        &url,
        &[
            "branch",
            "create",
            "cons",
            "--merge",
            "consistent",
            "--resolver",
            &resolver,
        ],
    )?;
    ensure!(c["status"] == "ok", "{c}");
    let list = ok(&home, &url, &["branch"])?;
    ensure!(list["branches"][0]["strategy"] == "consistent", "{list}");
    ensure!(
        list["branches"][0]["resolver"] == resolver.as_str(),
        "{list}"
    );
    let transfer = |branch: &str, from: &str, to: &str, amount: &str| -> Result<()> {
        let r = ok(
            &home,
            &url,
            &[
                "--branch", branch, "contract", "call", &fig6, "transfer", from, to, amount,
                "--from", "dev",
            ],
        )?;
        ensure!(
            r["result"] == "OK",
            "{branch}: transfer {from} {to} {amount}: {r}"
        );
        Ok(())
    };
    let rows = |branch: &str| -> Result<Value> {
        Ok(ok(
            &home,
            &url,
            &[
                "--branch",
                branch,
                "contract",
                "query",
                &fig6,
                "SELECT owner, balance FROM accounts ORDER BY owner",
            ],
        )?["rows"]
            .clone())
    };
    // The branch moves 10 from alice to bob; main moves 20 from alice to carol.
    transfer("cons", "alice", "bob", "10")?;
    transfer("main", "alice", "carol", "20")?;
    ensure!(
        rows("cons")? == json!([["alice", "90.00"], ["bob", "15.50"], ["carol", "0.00"]]),
        "{}",
        rows("cons")?
    );
    let dry = ok(&home, &url, &["merge", "cons", "--dry-run"])?;
    ensure!(dry["strategy"] == "consistent", "{dry}");
    ensure!(
        rows("main")? == json!([["alice", "80.00"], ["bob", "5.50"], ["carol", "20.00"]]),
        "the dry run wrote nothing"
    );
    let m = ok(&home, &url, &["merge", "cons"])?;
    ensure!(m["merge"]["strategy"] == "consistent", "{m}");
    // alice: 80 + (90 − 100) by the resolver; bob from the branch; carol from main.
    ensure!(
        rows("main")? == json!([["alice", "70.00"], ["bob", "15.50"], ["carol", "20.00"]]),
        "{}",
        rows("main")?
    );

    // `diff` reads contract rows cell by cell: only the cells that differ.
    let d = ok(&home, &url, &["diff", "cons", "main"])?;
    let row = |owner: &str| -> Result<Value> {
        d["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["kind"] == "row" && c["key"][0] == owner)
            .cloned()
            .with_context(|| format!("no row {owner} in {d}"))
    };
    ensure!(
        row("alice")?
            == json!({"kind": "row", "contract": fig6, "table": "accounts", "key": ["alice"],
                "status": "modified", "cells": [{"column": "balance", "from": "90.00", "to": "70.00"}]}),
        "{d}"
    );
    ensure!(row("carol")?["cells"][0]["to"] == "20.00", "{d}");
    ensure!(row("bob").is_err(), "bob is equal on both: {d}");
    ensure!(
        !d["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["kind"] == "contract"),
        "every contract change reads as a row: {d}"
    );

    // Both sides now move 60 from alice: 70 − 60 − 60 would be negative. The resolver
    // refuses, and the merge changes nothing.
    transfer("cons", "alice", "bob", "60")?;
    transfer("main", "alice", "carol", "60")?;
    let before = rows("main")?;
    let merged_up_to = || -> Result<Value> {
        Ok(ok(&home, &url, &["branch"])?["branches"][0]["merged_up_to"].clone())
    };
    let base = merged_up_to()?;
    refused(
        &home,
        &url,
        &["merge", "cons", "--dry-run"],
        "the balance would be negative",
    )?;
    refused(
        &home,
        &url,
        &["merge", "cons"],
        "consistent merge refused: 1 conflict",
    )?;
    ensure!(rows("main")? == before, "a refused merge changed rows");
    ensure!(
        merged_up_to()? == base,
        "a refused merge moved the merge base"
    );
    ensure!(
        ok(&home, &url, &["mempool"])?["count"] == 0,
        "a refused merge was queued"
    );
    // A resolver on an auto branch is a clear error.
    refused(
        &home,
        &url,
        &["branch", "create", "auto2", "--resolver", &resolver],
        "add --merge consistent",
    )?;
    drop(node);
    Ok(())
}

/// A merge of a merge through the CLI: `inner` branches off the branch `outer`; a transfer
/// on `outer/inner` is merged into `outer` (`aergo --branch outer merge inner`), then `outer` into
/// `main`, where it arrives — `outer`'s own branch and merge operations stay on `outer`.
#[test]
fn a_merge_of_a_merge_reaches_main_through_the_cli() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let port = free_port()?;
    let node = start_dev_node(&tmp.path().join("node"), port, &[])?;
    let url = node.url.clone();
    let erin = ok(&home, &url, &["account", "new"])?["address"]
        .as_str()
        .context("address")?
        .to_string();
    ok(&home, &url, &["branch", "create", "outer"])?;
    let c = ok(
        &home,
        &url,
        &["--branch", "outer", "branch", "create", "inner"],
    )?;
    ensure!(c["status"] == "ok", "{c}");
    let s = ok(
        &home,
        &url,
        &[
            "--branch",
            "outer/inner",
            "send",
            "--from",
            "dev",
            "--to",
            &erin,
            "--amount",
            "3",
            "--wait",
            "included",
        ],
    )?;
    ensure!(s["status"] == "ok", "{s}");
    let on = |branch: &str| -> Result<u128> {
        aer(&ok(&home, &url, &["--branch", branch, "balance", &erin])?)
    };
    ensure!(on("outer/inner")? == 3 * AERGO && on("outer")? == 0 && on("main")? == 0);
    let m = ok(&home, &url, &["--branch", "outer", "merge", "inner"])?;
    ensure!(
        m["merge"]["merged"].as_array().map(Vec::len) == Some(1),
        "{m}"
    );
    ensure!(on("outer")? == 3 * AERGO, "merged into outer");
    // Into main: the dry run shows the nested transfer merged, outer's own operations left out.
    let dry = ok(&home, &url, &["merge", "outer", "--dry-run"])?;
    ensure!(dry["merged"].as_array().map(Vec::len) == Some(1), "{dry}");
    ensure!(
        dry["merged"][0] == s["hash"],
        "the nested transfer is what merges: {dry} / {s}"
    );
    let m = ok(&home, &url, &["merge", "outer"])?;
    ensure!(
        m["merge"]["merged"].as_array().map(Vec::len) == Some(1),
        "{m}"
    );
    ensure!(
        on("main")? == 3 * AERGO,
        "the merge of a merge reached main"
    );
    // Merged once: nothing is left to merge from outer.
    refused(&home, &url, &["merge", "outer"], "nothing to merge")?;
    Ok(())
}

/// A repository's branches live in its directory: a `write` member creates and deletes
/// them with a directory change (an account without the role is refused), the ledger opens
/// the branch from the directory's record, a transfer made on it merges back, a branch of
/// it is recorded as `feat/sub`, a kind-11 operation sent to the ledger is refused and
/// points at the directory, and a re-created name gets a new id.
#[test]
fn a_repository_records_its_branches_in_its_directory() -> Result<()> {
    use aergo_types::branch::BranchOp;
    use aergo_types::{Keypair, Tx, TxKind};
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let data = tmp.path().join("node");
    let port = free_port()?;
    // Directory blocks every second (the default is 10 s).
    let mut g = aergo_types::Genesis::dev();
    g.dd_interval_ms = Some(1000);
    let genesis = tmp.path().join("genesis.json");
    std::fs::write(&genesis, g.to_json())?;
    let g = genesis.to_str().context("path")?;
    let node = start_dev_node(&data, port, &["--genesis", g])?;
    let url = node.url.clone();
    let new_account = |what: &str| -> Result<String> {
        let v = ok(&home, &url, &["account", "new"])?;
        v["address"]
            .as_str()
            .map(String::from)
            .with_context(|| format!("{what}: {v}"))
    };
    let (bob, carol) = (new_account("bob")?, new_account("carol")?);
    let c = ok(&home, &url, &["repo", "create", "docs"])?;
    ensure!(c["status"] == "ok", "{c}");
    poll("docs hosted", Duration::from_secs(30), || {
        Ok(run(&home, &url, &["--repo", "docs", "chain"])?.ok())
    })?;
    let r = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--repo".into(), "docs".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let okr = |args: &[&str]| -> Result<Value> {
        let a = r(args);
        ok(
            &home,
            &url,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let refusedr = |args: &[&str], want: &str| -> Result<()> {
        let a = r(args);
        refused(
            &home,
            &url,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            want,
        )
    };
    okr(&[
        "send", "--from", "dev", "--to", &bob, "--amount", "10", "--wait", "included",
    ])?;
    ok(
        &home,
        &url,
        &["repo", "members", "docs", "add", &bob, "--role", "write"],
    )?;

    // Only members with `write` create branches.
    refusedr(
        &["branch", "create", "nope", "--from", &carol],
        "needs the `write` role",
    )?;
    let c = okr(&["branch", "create", "feat", "--from", &bob])?;
    ensure!(c["status"] == "ok", "{c}");
    let listed = |branch: Option<&str>, name: &str| -> Result<Option<Value>> {
        let mut a = vec!["branch"];
        if let Some(b) = branch {
            a = vec!["--branch", b, "branch"];
        }
        let l = okr(&a)?;
        Ok(l["branches"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["name"] == name && b["deleted"].is_null())
            .cloned())
    };
    let feat = poll("feat listed by the ledger", Duration::from_secs(30), || {
        listed(None, "feat")
    })?;
    ensure!(
        feat["recorded_in"] == "directory"
            && feat["creator"] == bob.as_str()
            && feat["hosted"] == true
            && feat["produced_here"] == true,
        "{feat}"
    );
    let dd = ok(&home, &url, &["repo", "show", "docs"])?;
    ensure!(
        dd.to_string().contains("\"path\":\"feat\""),
        "the directory lists the branch: {dd}"
    );

    // A transfer on feat merges into the repository's main.
    let s = okr(&[
        "--branch", "feat", "send", "--from", &bob, "--to", &carol, "--amount", "4", "--wait",
        "included",
    ])?;
    ensure!(s["status"] == "ok", "{s}");
    let carol_on = |b: &str| -> Result<u128> { aer(&okr(&["--branch", b, "balance", &carol])?) };
    ensure!(carol_on("feat")? == 4 * AERGO && carol_on("main")? == 0);
    let m = okr(&["merge", "feat", "--from", &bob])?;
    ensure!(
        m["merge"]["merged"].as_array().map(Vec::len) == Some(1),
        "{m}"
    );
    ensure!(
        carol_on("main")? == 4 * AERGO,
        "the merged transfer is on main"
    );

    // A branch of feat is `feat/sub` in the directory; feat cannot go while it lives.
    okr(&[
        "--branch", "feat", "branch", "create", "sub", "--from", &bob,
    ])?;
    poll("feat/sub listed", Duration::from_secs(30), || {
        listed(Some("feat"), "sub")
    })?;
    refusedr(
        &["branch", "delete", "feat", "--from", &bob],
        "has a live branch `feat/sub`",
    )?;

    // A kind-11 operation sent to the ledger is refused and names the directory.
    let info = okr(&["chain"])?;
    let chain_id = aergo_types::Hash::from_hex(info["chain_id"].as_str().context("chain id")?)?;
    let dev = Keypair::dev();
    let tx = Tx {
        kind: TxKind::Branch,
        nonce: 1_000,
        from: dev.public(),
        to: None,
        amount: 0,
        payload: BranchOp::Delete {
            name: "feat".into(),
        }
        .encode(),
        gas_limit: 100_000,
        gas_price: 1_000_000_000,
        chain_id,
    }
    .sign(&dev);
    match aergo_e2e::testnet::rpc(
        &url,
        "send_tx",
        json!({"repo": "docs", "tx": hex::encode(tx.encode())}),
    ) {
        Ok(v) => bail!("a kind-11 operation on a repository ledger was admitted: {v}"),
        Err(e) => ensure!(format!("{e:#}").contains("live in its directory"), "{e:#}"),
    }

    // Deleting and re-creating a name gives the branch a new id.
    okr(&[
        "--branch", "feat", "branch", "delete", "sub", "--from", &bob,
    ])?;
    okr(&["branch", "delete", "feat", "--from", &bob])?;
    poll("feat deleted", Duration::from_secs(30), || {
        Ok(listed(None, "feat")?.is_none().then_some(()))
    })?;
    okr(&["branch", "create", "feat", "--from", &bob])?;
    let again = poll("feat re-created", Duration::from_secs(30), || {
        listed(None, "feat")
    })?;
    ensure!(again["id"] != feat["id"], "{again} against {feat}");
    Ok(())
}
