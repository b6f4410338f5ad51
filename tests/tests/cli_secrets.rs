//! Secrets at the edges, tried as a person at a terminal would: the CLI's password prompt must
//! not echo (driven through tmux, the screen read back), creating an account asks twice and
//! warns about short passwords, the keystore folder is private, and no binary's `--help`
//! prints the value of an environment variable (tokens and passwords live there).
//!
//! The tmux tests need tmux: under `CI=true` a missing tmux fails them; elsewhere they report
//! and return early.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aergo_e2e::tmux::{tmux_available, Tmux};
use aergo_e2e::{bin, ci};
use anyhow::{bail, Context, Result};

const SECRET: &str = "s3cret-7f2a9c";

fn need_tmux() -> Result<bool> {
    if tmux_available() {
        return Ok(true);
    }
    if ci() {
        bail!("tmux is not installed (scripts/test.sh installs it)");
    }
    eprintln!("SKIPPED: tmux is not installed; this test needs it");
    Ok(false)
}

/// Every env-backed option of every binary, with a secret-looking value, and `--help` on each
/// command that shows them: the value must never be printed.
#[test]
fn help_never_prints_environment_values() -> Result<()> {
    let runs: &[(&str, &[&str])] = &[
        ("aergo", &["--help"]),
        ("aergo", &["account", "new", "--help"]),
        ("aergo", &["send", "--help"]),
        ("aergo-node", &["--help"]),
        ("aergo-top", &["--help"]),
        ("aergofs", &["serve", "--help"]),
        ("aergo-image", &["--help"]),
    ];
    let envs = [
        "AERGO_INIT_TOKEN",
        "AERGO_PASSWORD",
        "AERGOFS_TOKEN",
        "AERGO_RPC",
        "AERGO_FS",
        "AERGO_INIT_ADDR",
        "AERGO_KEYSTORE",
        "AERGO_CONFIG",
        "AERGO_LOG",
    ];
    for (name, args) in runs {
        let mut cmd = Command::new(bin(name)?);
        cmd.args(*args).stdin(Stdio::null());
        for e in envs {
            cmd.env(e, format!("http://user:{SECRET}@127.0.0.1:1"));
        }
        let out = cmd.output().with_context(|| format!("run {name}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name} {args:?} failed: {text}");
        assert!(
            text.contains("Usage"),
            "{name} {args:?} printed no help: {text}"
        );
        assert!(
            !text.contains(SECRET),
            "{name} {args:?} printed an environment value:\n{text}"
        );
    }
    Ok(())
}

fn accounts_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// Runs `aergo <args>` in a fresh tmux session (with a real terminal) and returns the server.
fn aergo_in_tmux(session: &str, home: &Path, shell_cmd: &str) -> Result<Tmux> {
    let tmux = Tmux::new(session);
    let cmd = format!(
        "export HOME={} AERGO_KDF_MEMORY_KIB=64; {shell_cmd}; echo AERGO-EXIT=$?; sleep 600",
        home.display()
    );
    tmux.start(150, 30, &cmd)?;
    Ok(tmux)
}

/// Answers the password prompt and its repeat with `pw`; the screen once the command ended.
fn type_twice(t: &Tmux, pw: &str) -> Result<String> {
    let wait = Duration::from_secs(30);
    for prompt in ["password:", "repeat password:"] {
        t.wait_for(prompt, wait, |s| s.contains(prompt))?;
        t.keys(&["-l", pw])?;
        t.keys(&["Enter"])?;
    }
    t.wait_for("the command to end", wait, |s| s.contains("AERGO-EXIT="))
}

#[test]
fn password_prompt_hides_what_is_typed() -> Result<()> {
    if !need_tmux()? {
        return Ok(());
    }
    let cli = bin("aergo")?;
    let home = tempfile::tempdir()?;
    let ks = home.path().join(".aergo").join("keystore");
    let wait = Duration::from_secs(30);

    // 1. A new account: the password is typed twice and never shown.
    let pw = "correct-horse-battery-77";
    let t = aergo_in_tmux(
        "new",
        home.path(),
        &format!("{} account new", cli.display()),
    )?;
    let screen = type_twice(&t, pw)?;
    assert!(screen.contains("AERGO-EXIT=0"), "{screen}");
    assert!(screen.contains("created account"), "{screen}");
    assert!(
        !screen.contains(pw),
        "the password was echoed to the terminal:\n{screen}"
    );
    assert!(!screen.contains("warning"), "{screen}");
    assert_eq!(accounts_in(&ks), 1);
    let mode = std::fs::metadata(&ks)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "keystore folder mode {mode:o}");
    for e in std::fs::read_dir(&ks)? {
        let m = e?.metadata()?.permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "keystore file mode {m:o}");
    }

    // 2. A short password draws a warning; two different ones save nothing.
    let t = aergo_in_tmux(
        "short",
        home.path(),
        &format!("{} account new", cli.display()),
    )?;
    t.wait_for("the password prompt", wait, |s| s.contains("password:"))?;
    t.keys(&["-l", "abc12"])?;
    t.keys(&["Enter"])?;
    t.wait_for("the short-password warning and repeat prompt", wait, |s| {
        s.contains("warning: a password under 8 characters") && s.contains("repeat password:")
    })?;
    t.keys(&["-l", "abc13"])?;
    t.keys(&["Enter"])?;
    let screen = t.wait_for("the command to end", wait, |s| s.contains("AERGO-EXIT="))?;
    assert!(screen.contains("passwords differ"), "{screen}");
    assert!(!screen.contains("AERGO-EXIT=0"), "{screen}");
    assert!(
        !screen.contains("abc12") && !screen.contains("abc13"),
        "{screen}"
    );
    assert_eq!(
        accounts_in(&ks),
        1,
        "a mismatched confirmation saved an account"
    );

    // 3. Import with the key on stdin: the password is still asked on the terminal, hidden.
    let key = "11".repeat(32);
    let t = aergo_in_tmux(
        "import",
        home.path(),
        &format!("echo {key} | {} account import", cli.display()),
    )?;
    let screen = type_twice(&t, pw)?;
    assert!(screen.contains("imported account"), "{screen}");
    assert!(!screen.contains(pw), "{screen}");
    assert_eq!(accounts_in(&ks), 2, "{screen}");
    Ok(())
}

/// Without a terminal and without `--password`/`AERGO_PASSWORD` the CLI refuses clearly
/// instead of reading a password from a pipe.
#[test]
fn no_terminal_means_no_prompt() -> Result<()> {
    let home = tempfile::tempdir()?;
    // setsid: a new session without a controlling terminal, whatever runs the tests.
    let out = Command::new("setsid")
        .arg(bin("aergo")?)
        .args(["account", "new"])
        .env("HOME", home.path())
        .env_remove("AERGO_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .context("run setsid aergo account new")?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no password"), "{err}");
    assert_eq!(accounts_in(&home.path().join(".aergo").join("keystore")), 0);
    Ok(())
}

/// A keystore folder made 0755 by an older version is tightened when an account is saved.
#[test]
fn open_keystore_folder_is_tightened() -> Result<()> {
    let home = tempfile::tempdir()?;
    let ks = home.path().join("ks");
    std::fs::create_dir(&ks)?;
    std::fs::set_permissions(&ks, std::fs::Permissions::from_mode(0o755))?;
    let out = Command::new(bin("aergo")?)
        .arg("--keystore")
        .arg(&ks)
        .args(["account", "new", "--json"])
        .env("HOME", home.path())
        .env("AERGO_PASSWORD", "long-enough-password")
        .env("AERGO_KDF_MEMORY_KIB", "64")
        .stdin(Stdio::null())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&ks)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "keystore folder mode {mode:o}");
    // --json output stays JSON: the note went to stderr.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(v["address"].as_str().is_some_and(|a| a.starts_with('A')));
    Ok(())
}
