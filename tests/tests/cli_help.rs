//! `aergo --help` and the help of every command, found by walking the "Commands:" lists from
//! the top: each answers, lists its own options first, and puts the global options (`--rpc`,
//! `--json`, `--keystore`, `--repo`, `--as`, …) under their own "Global options:" heading,
//! never among the command's own, and only those that matter to it (no `--fs` on `balance`, no
//! `--rpc` on `os`); the hidden ones are still accepted. Offline (no node), about 10 ms per
//! command.

use aergo_e2e::bin;
use anyhow::{bail, ensure, Context, Result};
use std::process::Command;

/// Every global option, as `aergo --help` lists them.
const GLOBALS: &[&str] = &[
    "--rpc",
    "--json",
    "--keystore",
    "--password",
    "--fs",
    "--init-addr",
    "--init-token",
    "--repo",
    "--as",
    "--branch",
];

/// The global options that matter to a command (by its top-level name).
fn expected_globals(top: &str) -> &'static [&'static str] {
    match top {
        "" => GLOBALS,
        "fs" => &["--json", "--fs"],
        "os" => &["--json", "--init-addr", "--init-token"],
        "testnet" | "sql" => &["--json"],
        "completions" => &[],
        _ => &[
            "--rpc",
            "--json",
            "--keystore",
            "--password",
            "--repo",
            "--as",
            "--branch",
        ],
    }
}

/// `aergo ARGS… --help`, which must succeed; its stdout.
fn help(args: &[&str]) -> Result<String> {
    let out = Command::new(bin("aergo")?)
        .args(args)
        .arg("--help")
        .env_remove("AERGO_RPC")
        .output()
        .context("run aergo --help")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "aergo {args:?} --help failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// The lines of the section under `heading` (up to the next unindented line).
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| l.trim_end() != heading)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The long flag an option line starts with (`  -h, --help  …` → `--help`).
fn flag(line: &str) -> Option<&str> {
    line.split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .find(|w| w.starts_with("--"))
}

/// Checks one command's help: own options first, then the globals that matter to it under
/// their heading, and no global among its own options.
fn check(args: &[&str], text: &str) -> Result<()> {
    let want = expected_globals(args.first().copied().unwrap_or(""));
    let own = text
        .find("\nOptions:")
        .with_context(|| format!("aergo {args:?}: no Options section:\n{text}"))?;
    let own_flags: Vec<&str> = section(text, "Options:")
        .into_iter()
        .filter_map(flag)
        .collect();
    ensure!(
        own_flags.contains(&"--help"),
        "aergo {args:?}: {own_flags:?}"
    );
    let global_flags: Vec<&str> = section(text, "Global options:")
        .into_iter()
        .filter_map(flag)
        .collect();
    ensure!(
        global_flags == want,
        "aergo {args:?}: Global options {global_flags:?}, expected {want:?}:\n{text}"
    );
    if !want.is_empty() {
        let global = text.find("\nGlobal options:").context("heading")?;
        ensure!(
            own < global,
            "aergo {args:?}: the command's own options must come first:\n{text}"
        );
    }
    for g in GLOBALS {
        // `testnet init --repo` (repositories in the genesis) is its own option; the global
        // `--repo` is hidden there.
        if own_flags.contains(g) && !(args == ["testnet", "init"] && *g == "--repo") {
            bail!("aergo {args:?}: global {g} among the command's own options:\n{text}");
        }
        ensure!(
            own_flags
                .iter()
                .chain(&global_flags)
                .filter(|f| *f == g)
                .count()
                <= 1,
            "aergo {args:?}: {g} listed twice:\n{text}"
        );
    }
    Ok(())
}

/// The subcommand names of a help text's "Commands:" section (without `help`).
fn commands(text: &str) -> Vec<String> {
    section(text, "Commands:")
        .into_iter()
        // Command lines are indented by two; wrapped descriptions by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_help_lists_own_options_first_and_globals_under_their_heading() -> Result<()> {
    // The top level still works and lists the commands.
    let top = help(&[])?;
    ensure!(top.starts_with("AERGO command-line client"), "{top}");
    ensure!(top.contains("Usage: aergo [OPTIONS] <COMMAND>"), "{top}");
    check(&[], &top)?;
    let top_cmds = commands(&top);
    for c in [
        "account",
        "send",
        "balance",
        "contract",
        "gov",
        "repo",
        "completions",
    ] {
        ensure!(top_cmds.iter().any(|x| x == c), "{c} not in {top_cmds:?}");
    }

    // The example of the issue: `aergo balance --help`.
    let balance = help(&["balance"])?;
    check(&["balance"], &balance)?;
    let own: Vec<&str> = section(&balance, "Options:")
        .into_iter()
        .filter_map(flag)
        .collect();
    ensure!(own == ["--at", "--help"], "{own:?}:\n{balance}");
    ensure!(
        balance.find("--at").context("--at")? < balance.find("--rpc").context("--rpc")?,
        "{balance}"
    );

    // Every command and subcommand, depth first.
    let mut todo: Vec<Vec<String>> = top_cmds.into_iter().map(|c| vec![c]).collect();
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args)?;
        check(&args, &text)?;
        seen += 1;
        for sub in commands(&text) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
    }
    ensure!(seen >= 40, "only {seen} commands walked");

    // Hidden is not refused: globals that do not matter to a command still parse, before or
    // after it (scripts keep working).
    for args in [
        &["--fs", "http://127.0.0.1:1", "completions", "bash"][..],
        &[
            "completions",
            "bash",
            "--init-addr",
            "/nonexistent.sock",
            "--rpc",
            "http://x",
        ],
    ] {
        let out = Command::new(bin("aergo")?).args(args).output()?;
        ensure!(
            out.status.success() && !out.stdout.is_empty(),
            "aergo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("checked the help of {seen} commands");
    Ok(())
}

/// A reader that stops early (`aergo completions bash | head -1`, `aergo blocks | head`) ends the
/// CLI quietly, as any Unix tool: no panic on the broken pipe.
#[test]
fn a_closed_pipe_ends_the_cli_quietly() -> Result<()> {
    let aergo = bin("aergo")?;
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; '{}' completions {shell} | head -c 1 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\"",
                aergo.display()
            ))
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "aergo completions {shell} | head: {stderr}"
        );
        // Killed by SIGPIPE (128 + 13) once the reader left, or done before it did.
        ensure!(
            stdout.contains("status=141") || stdout.contains("status=0"),
            "aergo completions {shell} | head: {stdout}{stderr}"
        );
    }
    Ok(())
}

/// The AergoFS token variables are in the `--help` that needs them: the CLI's `aergo fs` (the
/// token it sends) and the server's `aergofs serve` (the token it requires).
#[test]
fn fs_token_variables_are_in_the_help() -> Result<()> {
    let fs = help(&["fs"])?;
    for v in ["AERGO_FS_TOKEN", "AERGO_FS_TOKEN_FILE", "AERGO_FS"] {
        ensure!(fs.contains(v), "aergo fs --help lacks {v}:\n{fs}");
    }
    let out = Command::new(bin("aergofs")?)
        .args(["serve", "--help"])
        .output()?;
    let serve = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && serve.contains("AERGOFS_TOKEN") && serve.contains("--token-file"),
        "aergofs serve --help:\n{serve}"
    );
    Ok(())
}
