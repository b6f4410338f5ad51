//! The README's walkthroughs, run as written. Fenced blocks tagged `sh test=NAME` in
//! README.md are extracted and run against the built binaries: `test=build` is checked (it
//! must build every binary the README uses), `test=node` starts the dev node exactly as
//! written (in a private HOME, on a free port given through `AERGO_RPC_ADDR`/`AERGO_RPC`), and
//! every command of the `test=cli` and `test=contract` blocks runs in order through bash from
//! the repository's root and must succeed; a `# → TEXT` comment on a command means its output
//! must contain TEXT. When the README and the binaries disagree, this test fails.

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
    for tag in ["build", "node", "cli", "contract"] {
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
    for tag in ["cli", "contract"] {
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
