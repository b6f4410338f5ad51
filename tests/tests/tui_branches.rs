//! End-to-end test of `aergo-top`'s Branches screen and merge blocks against a live dev
//! node, driven through tmux: a branch `feat` is created, a transfer is sent on it and it is
//! merged into `main` with the CLI; the Branches screen (0) lists `main` and `feat` (its fork
//! height, produced here), Enter on `feat` makes the Overview read the branch
//! (`[aergo:feat]`, its height), Esc on the Branches screen returns to `main`, the Blocks
//! list marks the merge block `merge ← feat@N`, and its detail shows its source and merged
//! transaction.
//!
//! Needs tmux: under CI (`CI=true`) a missing tmux fails the test; elsewhere it is reported
//! and the test returns early.

use std::time::Duration;

use aergo_e2e::tmux::{tmux_available, Tmux};
use aergo_e2e::{aergo_json, bin, ci, free_port, start_dev_node};
use anyhow::{bail, ensure, Context, Result};

/// The words of the screen line whose first word (after the `*` mark) is `name`.
fn row<'a>(screen: &'a str, name: &str) -> Option<Vec<&'a str>> {
    screen.lines().find_map(|l| {
        let w: Vec<&str> = l
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty() && *w != "*")
            .collect();
        (w.first() == Some(&name)).then_some(w)
    })
}

#[test]
fn branches_screen_reads_a_branch_and_blocks_show_its_merge() -> Result<()> {
    if !tmux_available() {
        if ci() {
            bail!("tmux is not installed (scripts/setup.sh installs it)");
        }
        eprintln!("SKIPPED: tmux is not installed; this test needs it");
        return Ok(());
    }
    let top_bin = bin("aergo-top")?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let node = start_dev_node(&dir.path().join("node"), port, &[])?;
    let url = node.url.clone();

    // feat, one transfer on it, merged into main.
    let c = aergo_json(&url, &["branch", "create", "feat"])?;
    ensure!(c["status"] == "ok", "branch create: {c}");
    let list = aergo_json(&url, &["branch"])?;
    let fork = list["branches"][0]["fork_height"]
        .as_u64()
        .with_context(|| format!("fork height: {list}"))?;
    let to =
        aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public()).encode();
    let s = aergo_json(
        &url,
        &[
            "--branch", "feat", "send", "--from", "dev", "--to", &to, "--amount", "5", "--wait",
            "included",
        ],
    )?;
    ensure!(s["status"] == "ok", "send on feat: {s}");
    let sent: String = s["hash"]
        .as_str()
        .with_context(|| format!("hash: {s}"))?
        .chars()
        .take(8)
        .collect();
    let m = aergo_json(&url, &["merge", "feat"])?;
    let merge_h = m["block_height"]
        .as_u64()
        .with_context(|| format!("merge: {m}"))?;
    let source_h = m["merge"]["source_height"]
        .as_u64()
        .with_context(|| format!("merge: {m}"))?;
    let feat_h = aergo_json(&url, &["--branch", "feat", "chain"])?["height"]
        .as_u64()
        .context("feat height")?;

    let tmux = Tmux::new("branches");
    let top_cmd = format!(
        "{} --rpc {url} --init {} --fs http://127.0.0.1:{} --theme 256; sleep 600",
        top_bin.display(),
        dir.path().join("no-init.sock").display(),
        free_port()?,
    );
    tmux.start(120, 40, &top_cmd)?;
    tmux.wait_for(
        "the dashboard's first frame",
        Duration::from_secs(30),
        |s| s.contains("Overview") && s.contains("[aergo]"),
    )?;

    // 1. The Branches screen: main, then feat with its fork height, produced here.
    tmux.keys(&["0"])?;
    let screen = tmux.wait_for("feat listed", Duration::from_secs(30), |s| {
        row(s, "feat").is_some() && row(s, "main").is_some()
    })?;
    let feat = row(&screen, "feat").context("feat row")?;
    // name fork tip merged producer state…
    ensure!(
        feat.get(1).map(|f| f.replace(',', "")) == Some(fork.to_string()),
        "fork height {fork}: {feat:?}"
    );
    ensure!(
        feat.windows(2).any(|w| w == ["produced", "here"]),
        "{feat:?}"
    );
    ensure!(
        screen.find(" main ") < screen.find(" feat "),
        "main first:\n{screen}"
    );

    // 2. Enter on feat: the Overview reads the branch.
    tmux.keys(&["Down"])?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("the Overview of feat", Duration::from_secs(30), |s| {
        s.contains("[aergo:feat]") && Tmux::shown_height(s) == Some(feat_h)
    })?;
    // Its Blocks screen lists the transfer's block (above the fork).
    tmux.keys(&["2"])?;
    tmux.wait_for("feat's blocks", Duration::from_secs(30), |s| {
        s.contains("[aergo:feat]") && row(s, &feat_h.to_string()).is_some()
    })?;

    // 3. Esc on the Branches screen: back to main.
    tmux.keys(&["0"])?;
    tmux.keys(&["Escape"])?;
    tmux.wait_for("main again", Duration::from_secs(30), |s| {
        s.contains("[aergo]") && !s.contains("[aergo:feat]")
    })?;

    // 4. The merge block: the list marks it (the poller asks `block` of each new block with
    // transactions), and its detail shows the merge.
    let label = format!("feat@{source_h}");
    tmux.keys(&["2"])?;
    tmux.keys(&["/"])?;
    for d in merge_h.to_string().chars() {
        tmux.keys(&[&d.to_string()])?;
    }
    tmux.keys(&["Enter"])?;
    tmux.wait_for(
        "the merge marked in the list",
        Duration::from_secs(30),
        |s| {
            row(s, &merge_h.to_string())
                .is_some_and(|w| w.join(" ").contains(&format!("merge ← {label}")))
        },
    )?;
    tmux.keys(&["Escape"])?;
    tmux.keys(&["g"])?;
    for d in merge_h.to_string().chars() {
        tmux.keys(&[&d.to_string()])?;
    }
    tmux.keys(&["Enter"])?;
    // The title comes with the block; the merged transactions' rows may take a frame more.
    let detail = tmux.wait_for("the merge block's detail", Duration::from_secs(30), |s| {
        s.contains(&format!("Merge ← {label}")) && s.contains(&sent)
    })?;
    ensure!(
        detail.contains("(1 merged, 0 excluded)"),
        "the merged transfer:\n{detail}"
    );
    tmux.keys(&["q"])?;
    Ok(())
}
