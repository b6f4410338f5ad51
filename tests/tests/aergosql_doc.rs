//! Every example in docs/AERGOSQL.md runs: each ```` ```sql file=NAME ```` block is saved as
//! NAME, each ```` ```text sandbox=NAME ```` block is typed into `aergo sql NAME` (lines after
//! `sql> ` are input; every other line must appear in the output, in order, with runs of spaces
//! compared as one), and each ```` ```sh test=node ```` block runs against a dev node from the
//! folder holding the saved files (`# → TEXT` comments are checked). An example the binaries
//! disagree with fails the test.

use aergo_e2e::docs::{blocks, commands, run_commands, Block};
use aergo_e2e::{bin, free_port, repo_root, start_dev_node};
use anyhow::{ensure, Context, Result};
use std::io::Write;
use std::process::{Command, Stdio};

fn doc() -> Result<Vec<Block>> {
    let text = std::fs::read_to_string(repo_root().join("docs/AERGOSQL.md"))
        .context("read docs/AERGOSQL.md")?;
    Ok(blocks(&text))
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs one sandbox session and checks its output.
fn session(dir: &std::path::Path, file: &str, b: &Block) -> Result<()> {
    let mut input = String::new();
    let mut expect = Vec::new();
    for l in &b.body {
        if let Some(i) = l.strip_prefix("sql> ") {
            input.push_str(i);
            input.push('\n');
        } else if !l.trim().is_empty() {
            expect.push(squash(l));
        }
    }
    ensure!(!input.is_empty(), "sandbox={file}: no `sql> ` input line");
    let mut child = Command::new(bin("aergo")?)
        .arg("sql")
        .arg(dir.join(file))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<String> = stdout.lines().map(squash).collect();
    let mut at = 0;
    for e in &expect {
        let found = lines
            .iter()
            .skip(at)
            .position(|l| l.contains(e.as_str()))
            .with_context(|| {
                format!(
                    "docs/AERGOSQL.md, sandbox={file}: expected {e:?} (in order); the sandbox printed:\n{stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        at += found + 1;
    }
    let shows_error = expect.iter().any(|e| e.starts_with("error:"));
    ensure!(
        out.status.success() != shows_error,
        "sandbox={file}: exit status {} does not match the example (errors shown: {shows_error})",
        out.status
    );
    Ok(())
}

#[test]
fn every_aergosql_doc_example_runs() -> Result<()> {
    let blocks = doc()?;
    let tmp = tempfile::tempdir()?;
    let files: Vec<&Block> = blocks.iter().filter(|b| b.attr("file").is_some()).collect();
    ensure!(files.len() >= 4, "docs/AERGOSQL.md lost its examples");
    for b in &files {
        let name = b.attr("file").context("file")?;
        std::fs::write(tmp.path().join(name), b.text())?;
    }
    let mut sessions = 0;
    for b in blocks.iter().filter(|b| b.attr("sandbox").is_some()) {
        let name = b.attr("sandbox").context("sandbox")?;
        session(tmp.path(), name, b)?;
        sessions += 1;
    }
    for b in &files {
        let name = b.attr("file").context("file")?;
        ensure!(
            blocks.iter().any(|s| s.attr("sandbox") == Some(name)),
            "docs/AERGOSQL.md: {name} is never run in a sandbox= block"
        );
    }
    ensure!(sessions >= files.len(), "{sessions} sessions");
    // Untagged shell or SQL blocks would be examples no test runs.
    for b in &blocks {
        let lang = b.info.split_whitespace().next().unwrap_or("");
        ensure!(
            b.info.contains('=') || !(lang == "sh" || lang == "sql"),
            "docs/AERGOSQL.md has an untested ```{} block",
            b.info
        );
    }

    // The command-line examples, against a dev node.
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    let mut exports = String::new();
    let mut ran = 0;
    for b in blocks.iter().filter(|b| b.attr("test") == Some("node")) {
        let cmds = commands(&b.body)?;
        ran += cmds.len();
        run_commands(&cmds, tmp.path(), &home, &node.url, &mut exports)?;
    }
    ensure!(ran > 0, "docs/AERGOSQL.md has no `sh test=node` block");
    Ok(())
}
