//! The README's walkthroughs, run as written. Fenced blocks tagged `sh test=NAME` in
//! README.md are extracted and run against the built binaries: `test=build` is checked (it
//! must build every binary the README uses), `test=node` starts the dev node exactly as
//! written (in a private HOME, on a free port given through `AERGO_RPC_ADDR`/`AERGO_RPC`), and
//! every command of the `test=cli`, `test=contract`, `test=repos` and `test=branches` blocks runs in order
//! through bash from the repository's root and must succeed; a `# → TEXT` comment on a command
//! means its output must contain TEXT. `test=fs` starts AergoFS as written and the `test=fs-cli`
//! commands run against it. The `test=testnet` and `test=staking` blocks run the same way, with
//! the test's own folder for `/tmp/tn` and free ports (`--base-port`) so runs never collide; a
//! command ending in `&` runs in its own process group, killed with the test. When the README
//! and the binaries disagree, this test fails.

use aergo_e2e::{bin, free_port, poll, repo_root, KillOnDrop};
use anyhow::{ensure, Context, Result};
use std::process::Stdio;
use std::time::Duration;

use aergo_e2e::docs::{blocks, commands, run_commands, shell, Block, ShellCmd};

fn tagged_blocks(readme: &str) -> Vec<(String, Block)> {
    blocks(readme)
        .into_iter()
        .filter_map(|b| b.attr("test").map(|t| (t.to_string(), b.clone())))
        .collect()
}

fn readme() -> Result<String> {
    std::fs::read_to_string(repo_root().join("README.md")).context("read README.md")
}

fn block_cmds(blocks: &[(String, Block)], tag: &str) -> Result<Vec<ShellCmd>> {
    let mut v = Vec::new();
    for (_, b) in blocks.iter().filter(|(t, _)| t == tag) {
        v.extend(commands(&b.body)?);
    }
    ensure!(!v.is_empty(), "README.md has no `sh test={tag}` block");
    Ok(v)
}

#[test]
fn tagged_blocks_have_no_placeholders() -> Result<()> {
    let blocks = tagged_blocks(&readme()?);
    for tag in [
        "build", "node", "cli", "contract", "repos", "branches", "fs", "fs-cli", "testnet",
        "staking",
    ] {
        ensure!(
            blocks.iter().any(|(t, _)| t == tag),
            "README.md lost its `sh test={tag}` block"
        );
    }
    for (tag, b) in &blocks {
        for l in &b.body {
            let code = l.split('#').next().unwrap_or("");
            ensure!(
                !(code.contains('<') && code.contains('>') && !code.contains("<<")),
                "README block test={tag} has a placeholder the reader must fill in: {l}"
            );
        }
    }
    Ok(())
}

#[test]
fn build_line_builds_every_binary_the_readme_uses() -> Result<()> {
    let text = readme()?;
    let cmds = block_cmds(&tagged_blocks(&text), "build")?;
    // (package, binary): every binary the README runs must come out of its build line.
    let needed = [
        ("aergo-node", "aergo-node"),
        ("aergo-cli", "aergo"),
        ("aergo-top", "aergo-top"),
        ("aergofs", "aergofs"),
    ];
    for c in &cmds {
        ensure!(
            c.text.starts_with("cargo build --release"),
            "the build block must be `cargo build --release …` (the one profile): {}",
            c.text
        );
    }
    let all: String = cmds.iter().map(|c| c.text.clone()).collect();
    for (pkg, binary) in needed {
        ensure!(
            text.contains(&format!("{binary} ")) || text.contains(&format!("`{binary}`")),
            "README.md no longer mentions {binary}; update this test"
        );
        ensure!(
            all.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["-p", pkg]),
            "the README's build line does not build {binary} (package {pkg}): {all}"
        );
        bin(binary)?;
    }
    for word in [
        "scripts/setup.sh",
        "librocksdb",
        "LLVM 16",
        "$CARGO_TARGET_DIR/release",
    ] {
        ensure!(text.contains(word), "README.md no longer says {word}");
    }
    Ok(())
}

#[test]
fn dev_node_and_contract_walkthroughs_run_as_written() -> Result<()> {
    let blocks = tagged_blocks(&readme()?);
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");

    // The dev node, exactly as the README starts it.
    let node_cmds = block_cmds(&blocks, "node")?;
    ensure!(
        node_cmds.len() == 1,
        "one command starts the node: {node_cmds:?}"
    );
    let node_cmd = node_cmds.first().context("node command")?;
    let log = tmp.path().join("node.log");
    let mut sh = shell(&home, &url, &format!("exec {}", node_cmd.text))?;
    sh.current_dir(repo_root());
    sh.env("AERGO_RPC_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    let _node = KillOnDrop::spawn(&mut sh)?;
    let health = format!("{url}/health");
    poll("the README's dev node", Duration::from_secs(30), || {
        Ok(aergo_e2e::http::get_ok(&health).then_some(()))
    })
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
    ensure!(
        home.join(".aergo/dev").is_dir(),
        "the README says the dev node keeps its data in ~/.aergo/dev"
    );

    let mut exports = String::new();
    for tag in ["cli", "contract", "repos", "branches"] {
        run_commands(
            &block_cmds(&blocks, tag)?,
            &repo_root(),
            &home,
            &url,
            &mut exports,
        )?;
    }
    Ok(())
}

/// AergoFS on the host as the README runs it: `test=fs` starts the server exactly as written
/// (its folder and port moved to the test's), then every `test=fs-cli` command runs in order
/// from a copy of the repository's README.md and docs/ (so `-o copy.md` lands in the test's
/// folder). A file removed as the README does is gone: `stat` says so in words.
#[test]
fn aergofs_walkthrough_runs_as_written() -> Result<()> {
    let blocks = tagged_blocks(&readme()?);
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&home)?;
    std::fs::create_dir_all(work.join("docs"))?;
    std::fs::copy(repo_root().join("README.md"), work.join("README.md"))?;
    for e in std::fs::read_dir(repo_root().join("docs"))? {
        let e = e?;
        std::fs::copy(e.path(), work.join("docs").join(e.file_name()))?;
    }
    let port = free_port()?;
    let fs_url = format!("http://127.0.0.1:{port}");
    let data = tmp.path().join("aergofs");
    let data = data.to_str().context("path")?;

    let serve = block_cmds(&blocks, "fs")?;
    ensure!(serve.len() == 1, "one command starts AergoFS: {serve:?}");
    let serve = serve.first().context("fs command")?;
    ensure!(
        serve.text.contains("aergofs serve --dir /tmp/aergofs"),
        "update this test: {}",
        serve.text
    );
    let code = serve.text.split(" #").next().unwrap_or("").replace(
        "aergofs serve --dir /tmp/aergofs",
        &format!("aergofs serve --addr 127.0.0.1:{port} --dir {data}"),
    );
    let log = tmp.path().join("aergofs.log");
    let mut sh = shell(&home, "http://127.0.0.1:1", &format!("exec {code}"))?;
    sh.current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    let _fs = KillOnDrop::spawn(&mut sh)?;
    let status = format!("{fs_url}/status");
    poll("the README's AergoFS", Duration::from_secs(30), || {
        Ok(aergo_e2e::http::get_ok(&status).then_some(()))
    })
    .with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;

    // The CLI's default server is 127.0.0.1:7848; the test's is elsewhere.
    let mut exports = format!("export AERGO_FS={fs_url}\n");
    let cmds = block_cmds(&blocks, "fs-cli")?;
    run_commands(&cmds, &work, &home, "http://127.0.0.1:1", &mut exports)?;
    ensure!(
        std::fs::read(work.join("copy.md"))? == std::fs::read(work.join("docs/RPC.md"))?,
        "`aergo fs get $FID -o copy.md` did not bring docs/RPC.md back"
    );
    // `stat` prints the modification time as local date and time, not an HTTP date.
    let out = shell(
        &home,
        "http://127.0.0.1:1",
        &format!("{exports}aergo fs stat $(aergo fs put README.md | cut -f1)"),
    )?
    .current_dir(&work)
    .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let when = text
        .lines()
        .find_map(|l| l.strip_prefix("last_modified"))
        .map(str::trim)
        .unwrap_or("");
    ensure!(
        out.status.success()
            && when.len() == "2026-01-01 00:00:00".len()
            && when.as_bytes().get(4) == Some(&b'-')
            && !when.contains("GMT"),
        "aergo fs stat: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The file the README removed is gone, and `stat` says so in words.
    let stat = ShellCmd {
        text: "aergo fs stat $FID".into(),
        expect: None,
    };
    let err = run_commands(&[stat], &work, &home, "http://127.0.0.1:1", &mut exports)
        .err()
        .context("stat of a removed file succeeded")?;
    ensure!(
        format!("{err:#}").contains("no such file"),
        "stat of a removed file: {err:#}"
    );
    Ok(())
}

/// A background command's process group, killed (SIGKILL) when dropped.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) on the process group this test created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.0.wait();
    }
}

/// Ten ports per node for five nodes, free when chosen, below the ephemeral range.
fn base_port() -> Result<u16> {
    for _ in 0..100 {
        let p = free_port()?;
        let b = p.saturating_sub(p % 10);
        if !(1024..=65_000).contains(&b) {
            continue;
        }
        if (0..50u16).all(|o| std::net::TcpListener::bind(("127.0.0.1", b + o)).is_ok()) {
            return Ok(b);
        }
    }
    anyhow::bail!("no free range of 50 ports")
}

#[test]
fn testnet_and_staking_walkthroughs_run_as_written() -> Result<()> {
    let blocks = tagged_blocks(&readme()?);
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let tn = tmp.path().join("tn");
    let tn = tn.to_str().context("path")?;
    let base = base_port()?;
    // The test's folder and ports instead of /tmp/tn and 17845.
    let localize = |t: &str| {
        t.replace("/tmp/tn", tn)
            .replace("17845", &base.to_string())
            .replace("testnet init", &format!("testnet init --base-port {base}"))
    };
    let url = format!("http://127.0.0.1:{base}");
    let mut groups = Vec::new();
    let mut exports = String::new();
    for tag in ["testnet", "staking"] {
        for c in block_cmds(&blocks, tag)? {
            let text = localize(&c.text);
            let code = text.split(" #").next().unwrap_or("").trim_end();
            if code.ends_with('&') || code.ends_with("& done") {
                let mut sh = shell(&home, &url, &format!("{exports}{code}\nwait"))?;
                std::os::unix::process::CommandExt::process_group(&mut sh, 0);
                sh.current_dir(tmp.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(std::fs::File::create(
                        tmp.path().join(format!("bg{}.log", groups.len())),
                    )?));
                groups.push(Group(sh.spawn()?));
                // A reader waits for what they started before the next command.
                poll(
                    "the nodes started in the background",
                    Duration::from_secs(30),
                    || Ok(aergo_e2e::http::get_ok(&format!("{url}/health")).then_some(())),
                )?;
                continue;
            }
            let cmd = aergo_e2e::docs::ShellCmd {
                text,
                expect: c.expect.clone(),
            };
            run_commands(&[cmd], tmp.path(), &home, &url, &mut exports)?;
        }
    }
    // The README promises: from the next round, five active BPs, node5 among them, and no BP
    // missing slots.
    let node5 = {
        let hex_seed = std::fs::read_to_string(std::path::Path::new(tn).join("node5/node.key"))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hex_seed.trim(), &mut seed)?;
        aergo_types::Address::from_public_key(&aergo_types::Keypair::from_seed(&seed).public())
            .encode()
    };
    let body =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "consensus_info", "params": {}});
    let first_round = poll("node5 elected", Duration::from_secs(60), || {
        let (_, text) = aergo_e2e::http::raw("POST", &url, &body.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let d = &v["result"]["dpos"];
        let active = d["active"].as_array().cloned().unwrap_or_default();
        Ok((active.len() == 5
            && active
                .iter()
                .any(|b| b["address"] == serde_json::json!(node5)))
        .then(|| d["round"].as_u64().unwrap_or(0)))
    })?;
    // A full round later, nobody has missed a slot of the new round.
    let v = poll(
        "the round after the election",
        Duration::from_secs(30),
        || {
            let (_, text) = aergo_e2e::http::raw("POST", &url, &body.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let d = &v["result"]["dpos"];
            let slot = d["slot"].as_u64().unwrap_or(0);
            let round_slots = d["round_slots"].as_u64().unwrap_or(10);
            Ok(
                (d["round"].as_u64() > Some(first_round) && slot % round_slots >= round_slots - 2)
                    .then_some(v),
            )
        },
    )?;
    let active = v["result"]["dpos"]["active"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        active.len() == 5 && active.iter().all(|b| b["missed_slots"].as_u64() == Some(0)),
        "after the election every BP must produce: {v}"
    );
    // `aergo node consensus` names the BPs the reader named (`account import --name`).
    let cons = std::process::Command::new(bin("aergo")?)
        .args(["--rpc", &url, "node", "consensus"])
        .env("HOME", &home)
        .env_remove("AERGO_KEYSTORE")
        .output()?;
    let text = String::from_utf8_lossy(&cons.stdout).to_string();
    ensure!(
        cons.status.success() && text.contains(&format!("{node5} (node5)")),
        "aergo node consensus: {text}"
    );
    // The nodes' logs (stderr, not a terminal: no colour codes) say when the election changed.
    let logs = std::fs::read_to_string(tmp.path().join("bg0.log"))?;
    ensure!(
        logs.contains("election changed the active BPs") && !logs.contains('\u{1b}'),
        "the BPs' log has no plain WARN line for the election:\n{}",
        logs.lines()
            .filter(|l| l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // `aergo node peers` shows each peer's address without the `/p2p/ID` its first column holds.
    let peers = std::process::Command::new(bin("aergo")?)
        .args(["--rpc", &url, "node", "peers"])
        .output()?;
    let text = String::from_utf8_lossy(&peers.stdout).to_string();
    ensure!(
        peers.status.success() && text.contains("/ip4/127.0.0.1/tcp/") && !text.contains("/p2p/"),
        "aergo node peers: {text}"
    );
    // Registering an account no running node has the key of warns (the faucet: a key file, no
    // node behind it).
    let reg = std::process::Command::new(bin("aergo")?)
        .args(["--rpc", &url, "bp", "register", "--from", "faucet"])
        .env("HOME", &home)
        .env("AERGO_PASSWORD", "choose-one")
        .env("AERGO_KDF_MEMORY_KIB", "1024")
        .env_remove("AERGO_KEYSTORE")
        .output()?;
    let err = String::from_utf8_lossy(&reg.stderr).to_string();
    ensure!(
        reg.status.success() && err.contains("warning: no running node known here"),
        "bp register --from faucet: {err}{}",
        String::from_utf8_lossy(&reg.stdout)
    );
    drop(groups);
    Ok(())
}
