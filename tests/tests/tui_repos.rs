//! End-to-end test of `aergo-top`'s Repositories screen against a live dev node with a
//! public (`team-a`) and a private (`team-b`) repository, driven through tmux: the screen
//! lists the root chain and both repositories (directory height and members for the public
//! one, `-` for the private one), Enter on `team-a` makes the Overview read `team-a`'s chain
//! (its chain id and height, `[team-a]` in the status line), `team-b` shows the "private"
//! message instead of data, and selecting `aergo` returns to the root chain. A second
//! dashboard on the node's operator socket (`--rpc unix:DATA_DIR/rpc.sock`) reads team-b:
//! its directory figures, and its chain on the Overview.
//!
//! Needs tmux: under CI (`CI=true`) a missing tmux fails the test; elsewhere it is reported
//! and the test returns early.

use std::time::Duration;

use aergo_e2e::testnet::rpc;
use aergo_e2e::tmux::{tmux_available, Tmux};
use aergo_e2e::{aergo_json, bin, ci, free_port, poll, start_dev_node};
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;

/// The words of the screen line that shows repository `name` in the table.
fn row<'a>(screen: &'a str, name: &str) -> Option<Vec<&'a str>> {
    screen.lines().find_map(|l| {
        let w: Vec<&str> = l
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty() && *w != "*" && *w != ">>")
            .collect();
        (w.first() == Some(&name)).then_some(w)
    })
}

fn chain(url: &str, repo: Option<&str>) -> Result<(String, u64)> {
    let p = repo
        .map(|r| json!({"repo": r}))
        .unwrap_or_else(|| json!({}));
    let c = rpc(url, "chain_info", p)?;
    Ok((
        c["chain_id"].as_str().context("chain_id")?.to_string(),
        c["height"].as_u64().context("height")?,
    ))
}

#[test]
fn repositories_screen_selects_the_ledger_the_other_screens_read() -> Result<()> {
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
    let node = start_dev_node(&dir.path().join("node"), port, &["--no-empty-blocks"])?;
    let url = node.url.clone();
    let a = aergo_json(&url, &["repo", "create", "team-a"])?;
    ensure!(a["status"] == "ok", "create team-a: {a}");
    let b = aergo_json(&url, &["repo", "create", "team-b", "--private"])?;
    ensure!(b["status"] == "ok", "create team-b: {b}");
    poll("both repositories hosted", Duration::from_secs(20), || {
        let l = aergo_json(&url, &["repo", "list"])?;
        let hosted = l
            .as_array()
            .map(|a| a.iter().filter(|r| r["hosted"] == true).count())
            .unwrap_or(0);
        Ok((hosted == 2).then_some(()))
    })?;
    let to =
        aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public()).encode();
    for _ in 0..3 {
        let s = aergo_json(
            &url,
            &[
                "--repo", "team-a", "send", "--from", "dev", "--to", &to, "--amount", "5",
                "--wait", "included",
            ],
        )?;
        ensure!(s["status"] == "ok", "send in team-a: {s}");
    }
    let (a_id, a_height) = chain(&url, Some("team-a"))?;
    let (root_id, _) = chain(&url, None)?;
    ensure!(a_id != root_id, "team-a shares the root's chain id");

    let tmux = Tmux::new("repos");
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

    // 1. The Repositories screen: root first, then both repositories.
    tmux.keys(&["9"])?;
    let screen = tmux.wait_for("both repositories listed", Duration::from_secs(30), |s| {
        row(s, "team-a").is_some_and(|w| w.len() >= 8 && w[4] != "-")
            && row(s, "team-b").is_some()
            && row(s, "aergo").is_some()
    })?;
    let names: Vec<usize> = ["aergo", "team-a", "team-b"]
        .iter()
        .map(|n| screen.find(&format!(" {n} ")).unwrap_or(usize::MAX))
        .collect();
    ensure!(
        names[0] < names[1] && names[1] < names[2],
        "order:\n{screen}"
    );
    let ra = row(&screen, "team-a").context("team-a row")?;
    // name engine height final dd members access hosted
    ensure!(
        ra[1] == "solo" && ra[6] == "public" && ra[7] == "yes",
        "{ra:?}"
    );
    ensure!(ra[2].replace(',', "").parse::<u64>()? >= 3, "{ra:?}");
    ensure!(ra[4].parse::<u64>().is_ok(), "team-a DD height: {ra:?}");
    ensure!(ra[5].parse::<u64>()? >= 1, "team-a members: {ra:?}");
    let rb = row(&screen, "team-b").context("team-b row")?;
    ensure!(
        rb[4] == "-" && rb[5] == "-" && rb[6] == "private" && rb[7] == "yes",
        "{rb:?}"
    );

    // 2. Enter on team-a: the Overview reads team-a's chain.
    tmux.keys(&["Down"])?;
    tmux.keys(&["Enter"])?;
    let prefix: String = a_id.chars().take(6).collect();
    tmux.wait_for("the Overview of team-a", Duration::from_secs(30), |s| {
        s.contains("[team-a]")
            && s.lines()
                .any(|l| l.contains("Chain ") && l.contains(&prefix))
            && Tmux::shown_height(s) == Some(a_height)
    })?;
    // The Blocks screen reads it too: team-a's head block is listed, the root's is not.
    let head = |repo: Option<&str>, h: u64| -> Result<String> {
        let mut p = json!({"height": h});
        if let Some(r) = repo {
            p["repo"] = json!(r);
        }
        let b = rpc(&url, "block", p)?;
        Ok(b["hash"]
            .as_str()
            .context("hash")?
            .chars()
            .take(9)
            .collect())
    };
    let a_head = head(Some("team-a"), a_height)?;
    let (_, root_height) = chain(&url, None)?;
    let root_head = head(None, root_height)?;
    ensure!(a_head != root_head);
    tmux.keys(&["2"])?;
    let blocks = tmux.wait_for("team-a's blocks", Duration::from_secs(30), |s| {
        s.contains("[team-a]") && s.contains(&a_head)
    })?;
    ensure!(
        !blocks.contains(&root_head),
        "a root block on team-a's list:\n{blocks}"
    );

    // 3. team-b is private: a clear message instead of data.
    tmux.keys(&["9"])?;
    tmux.keys(&["Down"])?;
    tmux.keys(&["Enter"])?;
    tmux.wait_for("team-b's private message", Duration::from_secs(30), |s| {
        s.contains("[team-b]") && s.contains("reads need a member's signature")
    })?;

    // 4. Back to the root.
    tmux.keys(&["9"])?;
    tmux.keys(&["Home"])?;
    tmux.keys(&["Enter"])?;
    let root_prefix: String = root_id.chars().take(6).collect();
    tmux.wait_for(
        "the Overview of the root chain",
        Duration::from_secs(30),
        |s| {
            s.contains("[aergo]")
                && s.lines()
                    .any(|l| l.contains("Chain ") && l.contains(&root_prefix))
        },
    )?;
    tmux.keys(&["q"])?;

    // 5. The operator's socket reads the private repository: its directory figures, and
    // its chain on the Overview.
    let unix = format!("unix:{}", dir.path().join("node/rpc.sock").display());
    let c = aergo_json(&unix, &["--repo", "team-b", "chain"])?;
    let b_id = c["chain_id"].as_str().context("chain_id")?.to_string();
    let op = Tmux::new("repos-op");
    let op_cmd = format!(
        "{} --rpc {unix} --host-mode --theme 256; sleep 600",
        top_bin.display()
    );
    op.start(120, 40, &op_cmd)?;
    op.keys(&["9"])?;
    op.wait_for("team-b's directory figures", Duration::from_secs(30), |s| {
        row(s, "team-b").is_some_and(|w| w.len() >= 8 && w[4] != "-" && w[5] != "-")
    })?;
    op.keys(&["Down", "Down"])?;
    op.keys(&["Enter"])?;
    let b_prefix: String = b_id.chars().take(6).collect();
    op.wait_for("the Overview of team-b", Duration::from_secs(30), |s| {
        s.contains("[team-b]")
            && s.lines()
                .any(|l| l.contains("Chain ") && l.contains(&b_prefix))
    })?;
    op.keys(&["q"])?;
    drop(node);
    Ok(())
}
