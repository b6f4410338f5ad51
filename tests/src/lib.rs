//! Support code for the end-to-end tests in `tests/tests/`: locating the workspace's built
//! binaries, free ports, polling with deadlines, and child processes that die with the test.
//!
//! The binaries are built by `cargo build --release --workspace` (scripts/test.sh does it
//! before `cargo test --release`); a missing binary is an error that says so, never a skip.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// True when running under CI (`CI=true`): missing tools fail instead of being reported.
pub fn ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// The target profile folder holding the workspace binaries (e.g. `target/release`).
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    // .../target/release/deps/test-xxxx -> .../target/release (tests), or
    // .../target/release/tool -> .../target/release (this crate's own binaries).
    let parent = exe.parent().context("binary has no folder")?;
    let dir = if parent.file_name().is_some_and(|n| n == "deps") {
        parent
            .parent()
            .context("test binary has no grandparent folder")?
    } else {
        parent
    };
    Ok(dir.to_path_buf())
}

/// Path to a workspace binary such as `aergo-node`; errors if it was not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = target_dir()?.join(name);
    if !p.exists() {
        bail!(
            "binary {} not found: run `cargo build --release --workspace` first (scripts/test.sh does)",
            p.display()
        );
    }
    Ok(p)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The whitepaper's Figure 6 (an `accounts` table and `transfer`), verbatim.
pub const FIGURE6_SQL: &str = include_str!("../../node/sql/tests/fixtures/figure6.sql");

/// Runs `aergo --rpc URL --json ARGS…` and parses what it prints; a failing command is an
/// error carrying its output.
pub fn aergo_json(url: &str, args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(bin("aergo")?)
        .args(["--rpc", url, "--json"])
        .args(args)
        .output()
        .with_context(|| format!("run aergo {args:?}"))?;
    if !out.status.success() {
        bail!(
            "aergo {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "aergo {args:?} printed {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Deploys Figure 6 from `dir` with the dev key, seeds alice (100.00) and bob (5.50) by an
/// owner's upgrade, and returns the contract address.
pub fn deploy_figure6(url: &str, dir: &std::path::Path) -> Result<String> {
    let utf8 = |p: &std::path::Path| -> Result<String> {
        p.to_str()
            .map(str::to_string)
            .context("non-UTF-8 temporary path")
    };
    let fig6 = dir.join("figure6.sql");
    std::fs::write(&fig6, FIGURE6_SQL)?;
    let d = aergo_json(url, &["contract", "deploy", &utf8(&fig6)?, "--from", "dev"])?;
    let addr = d["address"]
        .as_str()
        .with_context(|| format!("deploy printed no address: {d}"))?
        .to_string();
    if d["status"] != "ok" {
        bail!("deploy failed: {d}");
    }
    let seed = dir.join("seed.sql");
    std::fs::write(
        &seed,
        "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50);",
    )?;
    aergo_json(
        url,
        &["contract", "upgrade", &addr, &utf8(&seed)?, "--from", "dev"],
    )?;
    Ok(addr)
}

/// Calls Figure 6's `transfer(alice, bob, 10)` on `contract` with the dev key and returns the
/// receipt (`result` is the function's return value).
pub fn figure6_transfer(url: &str, contract: &str) -> Result<serde_json::Value> {
    aergo_json(
        url,
        &[
            "contract", "call", contract, "transfer", "alice", "bob", "10", "--from", "dev",
        ],
    )
}

/// A 1-aer transfer from `key` to `to` with `nonce`, signed for `chain_id` (gas limit 1,000,
/// the dev price): what the pre-confirmation tests send.
pub fn signed_transfer(
    key: &aergo_types::Keypair,
    nonce: u64,
    to: aergo_types::Address,
    chain_id: aergo_types::Hash,
) -> aergo_types::SignedTx {
    aergo_types::Tx {
        kind: aergo_types::TxKind::Transfer,
        nonce,
        from: key.public(),
        to: Some(to),
        amount: 1,
        payload: Vec::new(),
        gas_limit: 1000,
        gas_price: 1_000_000_000,
        chain_id,
    }
    .sign(key)
}

/// A TCP port that was free a moment ago on 127.0.0.1.
/// Never the same port twice in one test process: tests of one binary run in parallel,
/// and the kernel may hand a just-released port out again before the first test's node has
/// bound it (then both tests would talk to one node).
pub fn free_port() -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let mut given = GIVEN
            .lock()
            .map_err(|_| anyhow::anyhow!("port list poisoned"))?;
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    bail!("no port that this test process has not used yet")
}

/// Polls `f` until it returns `Ok(Some(v))` or the deadline passes; the last error is reported.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Spawns `cmd`.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        Ok(Self(cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?))
    }
    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on a pid we own.
        unsafe {
            libc::kill(self.0.id() as i32, sig);
        }
    }
    /// Waits for exit with a deadline, returning the exit status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.0.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!("process {} did not exit within {timeout:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A dev node (`aergo-node --dev`) on 127.0.0.1, killed when dropped; its log goes to
/// `<dir>.log`.
pub struct DevNode {
    /// The process.
    pub proc: KillOnDrop,
    /// Its RPC URL.
    pub url: String,
}

/// Starts `aergo-node --dev` on `port` with data in `dir` (plus `extra` flags) and waits for
/// `/health`.
pub fn start_dev_node(dir: &std::path::Path, port: u16, extra: &[&str]) -> Result<DevNode> {
    let mut cmd = Command::new(bin("aergo-node")?);
    cmd.args(["--dev", "--data-dir"])
        .arg(dir)
        .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
        .args(extra);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::fs::File::create(
            dir.with_extension("log"),
        )?));
    let proc = KillOnDrop::spawn(&mut cmd)?;
    let url = format!("http://127.0.0.1:{port}");
    let health = format!("{url}/health");
    poll("node health", Duration::from_secs(30), || {
        Ok(http::get_ok(&health).then_some(()))
    })?;
    Ok(DevNode { proc, url })
}

pub mod http {
    //! A tiny blocking HTTP/1.1 client over std, for raw requests (malformed bodies,
    //! status codes) that a typed client would not send.
    use std::io::{Read, Write};

    /// True if `GET url` answers 200.
    pub fn get_ok(url: &str) -> bool {
        raw("GET", url, "")
            .map(|(code, _)| code == 200)
            .unwrap_or(false)
    }

    /// Sends one request; returns the status code and the body.
    pub fn raw(method: &str, url: &str, body: &str) -> std::io::Result<(u16, String)> {
        raw_with(method, url, &[], body)
    }

    /// [`raw`] with extra headers.
    pub fn raw_with(
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n", body.len())?;
        // The server may answer (e.g. 413 for a declared length over its limit) and close
        // before the body is sent: keep what it said rather than failing on the broken pipe.
        let wrote = s.write_all(body.as_bytes());
        let mut raw = Vec::new();
        let read = s.read_to_end(&mut raw);
        if raw.is_empty() {
            wrote?;
            read?;
        }
        let out = String::from_utf8_lossy(&raw).into_owned();
        let code = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }
}

pub mod proxy {
    //! A TCP proxy the test controls, for network partitions cut outside the nodes: every
    //! node reaches every other through its own proxy, and blocking a proxy closes its open
    //! connections and refuses new ones until it is unblocked.
    use anyhow::Result;
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// A running proxy (stopped when dropped).
    pub struct TcpProxy {
        port: u16,
        blocked: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
        conns: Arc<Mutex<Vec<TcpStream>>>,
    }

    impl TcpProxy {
        /// Listens on a free 127.0.0.1 port and forwards to `target`.
        pub fn start(target: SocketAddr) -> Result<Self> {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let blocked = Arc::new(AtomicBool::new(false));
            let stop = Arc::new(AtomicBool::new(false));
            let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
            let (b, s, c) = (blocked.clone(), stop.clone(), conns.clone());
            std::thread::spawn(move || {
                for inbound in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(inbound) = inbound else { continue };
                    if b.load(Ordering::SeqCst) {
                        let _ = inbound.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(outbound) = TcpStream::connect(target) else {
                        continue;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let pairs = [
                        (inbound.try_clone(), outbound.try_clone()),
                        (outbound.try_clone(), inbound.try_clone()),
                    ];
                    if let Ok(mut list) = c.lock() {
                        for st in [&inbound, &outbound] {
                            if let Ok(x) = st.try_clone() {
                                list.push(x);
                            }
                        }
                    }
                    for (from, to) in pairs {
                        if let (Ok(mut from), Ok(mut to)) = (from, to) {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(Shutdown::Both);
                                let _ = from.shutdown(Shutdown::Both);
                            });
                        }
                    }
                }
            });
            Ok(Self {
                port,
                blocked,
                stop,
                conns,
            })
        }

        /// The proxy's port on 127.0.0.1.
        pub fn port(&self) -> u16 {
            self.port
        }

        /// Cuts (closing every open connection) or restores the link.
        pub fn set_blocked(&self, on: bool) {
            self.blocked.store(on, Ordering::SeqCst);
            if on {
                if let Ok(mut list) = self.conns.lock() {
                    for c in list.drain(..) {
                        let _ = c.shutdown(Shutdown::Both);
                    }
                }
            }
        }
    }

    impl Drop for TcpProxy {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            self.set_blocked(true);
            // Wake the accept loop so it sees `stop`.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
        }
    }
}

pub mod tmux {
    //! A private tmux server for tests that drive a terminal program as a person would:
    //! keys in with send-keys, the screen out with capture-pane.
    use crate::poll;
    use anyhow::{bail, Context, Result};
    use std::process::Command;
    use std::time::Duration;

    /// A private tmux server (its own socket) killed when dropped.
    pub struct Tmux {
        socket: String,
        session: String,
    }

    impl Tmux {
        /// A new private server whose session ([`Tmux::start`]) is `session`; the socket is
        /// unique to this server.
        pub fn new(session: &str) -> Self {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Self {
                socket: format!("aergo-e2e-{}-{n}-{session}", std::process::id()),
                session: session.to_string(),
            }
        }

        fn cmd(&self) -> Command {
            let mut c = Command::new("tmux");
            c.args(["-L", &self.socket]);
            c
        }

        /// Starts this server's session, `cols`×`rows`, running `sh -c cmd`.
        pub fn start(&self, cols: u16, rows: u16, cmd: &str) -> Result<()> {
            let (x, y) = (cols.to_string(), rows.to_string());
            self.run(&[
                "new-session",
                "-d",
                "-s",
                &self.session,
                "-x",
                &x,
                "-y",
                &y,
                "sh",
                "-c",
                cmd,
            ])
            .map(drop)
        }

        /// The height the dashboard's Overview shows (`Height     1,234`).
        pub fn shown_height(screen: &str) -> Option<u64> {
            let line = screen.lines().find(|l| l.contains("Height "))?;
            let rest = &line[line.find("Height ")? + 7..];
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        }

        /// Runs a tmux command on this server; its stdout.
        pub fn run(&self, args: &[&str]) -> Result<String> {
            let out = self
                .cmd()
                .args(args)
                .output()
                .with_context(|| format!("tmux {args:?}"))?;
            if !out.status.success() {
                bail!(
                    "tmux {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }

        /// The visible pane of the session.
        pub fn capture(&self) -> Result<String> {
            self.run(&["capture-pane", "-p", "-t", &self.session])
        }

        /// Sends keys to the session.
        pub fn keys(&self, keys: &[&str]) -> Result<()> {
            let mut args = vec!["send-keys", "-t", self.session.as_str()];
            args.extend_from_slice(keys);
            self.run(&args).map(|_| ())
        }

        /// Polls the pane until `pred` holds, returning the screen.
        pub fn wait_for(
            &self,
            what: &str,
            timeout: Duration,
            pred: impl Fn(&str) -> bool,
        ) -> Result<String> {
            let mut last = String::new();
            poll(what, timeout, || {
                let s = self.capture()?;
                if pred(&s) {
                    return Ok(Some(s));
                }
                last = s;
                Ok(None)
            })
            .with_context(|| format!("last screen:\n{last}"))
        }
    }

    impl Drop for Tmux {
        fn drop(&mut self) {
            let _ = self.cmd().args(["kill-server"]).output();
        }
    }

    /// True when a tmux binary runs.
    pub fn tmux_available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

pub mod docs {
    //! Runnable documentation: fenced code blocks tagged in their info string (```` ```sh
    //! test=cli ````, ```` ```sql file=x.sql ````, ```` ```text sandbox=x.sql ````) extracted from
    //! a Markdown file, and a block's text split into shell commands.
    use anyhow::{ensure, Context, Result};

    /// One fenced block: its info string's `key=value` words and its lines.
    #[derive(Debug, Clone)]
    pub struct Block {
        /// The info string, e.g. `sh test=cli`.
        pub info: String,
        /// The lines between the fences.
        pub body: Vec<String>,
    }

    impl Block {
        /// The value of `key=` in the info string.
        pub fn attr(&self, key: &str) -> Option<&str> {
            let k = format!("{key}=");
            self.info
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k.as_str()))
        }
        /// The body as text (lines joined with `\n`, ending with one).
        pub fn text(&self) -> String {
            let mut s = self.body.join("\n");
            s.push('\n');
            s
        }
    }

    /// Every fenced block of a Markdown text.
    pub fn blocks(markdown: &str) -> Vec<Block> {
        let mut out = Vec::new();
        let mut cur: Option<Block> = None;
        for line in markdown.lines() {
            if let Some(b) = cur.as_mut() {
                if line.trim_start().starts_with("```") {
                    out.extend(cur.take());
                } else {
                    b.body.push(line.to_string());
                }
                continue;
            }
            if let Some(info) = line.trim_start().strip_prefix("```") {
                cur = Some(Block {
                    info: info.trim().to_string(),
                    body: Vec::new(),
                });
            }
        }
        out
    }

    /// One shell command of a block: its text (with a here-document's lines) and the text a
    /// `# → TEXT` comment says it prints.
    #[derive(Debug, Clone)]
    pub struct ShellCmd {
        /// The command as bash reads it.
        pub text: String,
        /// What its output must contain.
        pub expect: Option<String>,
    }

    /// Splits a block into commands: one per line (comment lines skipped), a here-document
    /// (`<<'EOF'`) taking the lines up to its terminator.
    pub fn commands(body: &[String]) -> Result<Vec<ShellCmd>> {
        let mut out = Vec::new();
        let mut lines = body.iter();
        while let Some(line) = lines.next() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let expect = line
                .split_once("# →")
                .map(|(_, e)| e.trim().to_string())
                .filter(|e| !e.is_empty());
            let mut text = line.clone();
            if let Some((_, rest)) = line.split_once("<<") {
                let term: String = rest
                    .trim_start()
                    .trim_start_matches(['\'', '"'])
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                ensure!(
                    !term.is_empty(),
                    "here-document without a terminator: {line}"
                );
                loop {
                    let l = lines
                        .next()
                        .with_context(|| format!("here-document `{term}` never ends: {line}"))?;
                    text.push('\n');
                    text.push_str(l);
                    if l.trim() == term {
                        break;
                    }
                }
            }
            out.push(ShellCmd { text, expect });
        }
        Ok(out)
    }

    /// The environment documentation commands see: the built binaries first on PATH, `home` as
    /// HOME (so ~/.aergo is the test's), `url` as AERGO_RPC, cheap key derivation, and none of
    /// the caller's AERGO_* settings.
    pub fn shell(home: &std::path::Path, url: &str, script: &str) -> Result<std::process::Command> {
        let path = format!(
            "{}:{}",
            crate::target_dir()?.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = std::process::Command::new("bash");
        c.arg("-c")
            .arg(script)
            .env("PATH", path)
            .env("HOME", home)
            .env("AERGO_RPC", url)
            .env("AERGO_KDF_MEMORY_KIB", "1024");
        for v in [
            "AERGO_PASSWORD",
            "AERGO_KEYSTORE",
            "AERGO_FS",
            "AERGO_CONFIG",
            "AERGO_RPC_ADDR",
        ] {
            c.env_remove(v);
        }
        Ok(c)
    }

    /// Runs `cmds` in order, each through `bash -c` in `dir` with `set -euo pipefail` and the
    /// `export` lines seen so far; a failure, or output without a command's `# →` text, is an
    /// error naming the command. An `export NAME=VALUE` line is evaluated once, as a reader's
    /// shell does (`export FID=$(aergo fs put …)` uploads one file), and its value kept.
    pub fn run_commands(
        cmds: &[ShellCmd],
        dir: &std::path::Path,
        home: &std::path::Path,
        url: &str,
        exports: &mut String,
    ) -> Result<()> {
        for c in cmds {
            if let Some(assign) = c.text.strip_prefix("export ") {
                let name = assign.split('=').next().unwrap_or("").trim();
                ensure!(
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_'),
                    "cannot read the variable of `{}`",
                    c.text
                );
                let code = c.text.split(" #").next().unwrap_or(&c.text);
                let script =
                    format!("set -euo pipefail\n{exports}{code}\nprintf '%s' \"${name}\"\n");
                let out = shell(home, url, &script)?
                    .current_dir(dir)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .with_context(|| format!("run {}", c.text))?;
                ensure!(
                    out.status.success(),
                    "documented command failed ({}):\n{}\n--- stderr\n{}",
                    out.status,
                    c.text,
                    String::from_utf8_lossy(&out.stderr)
                );
                let value = String::from_utf8_lossy(&out.stdout).replace('\'', "'\\''");
                exports.push_str(&format!("export {name}='{value}'\n"));
                continue;
            }
            let script = format!("set -euo pipefail\n{exports}{}\n", c.text);
            let out = shell(home, url, &script)?
                .current_dir(dir)
                .stdin(std::process::Stdio::null())
                .output()
                .with_context(|| format!("run {}", c.text))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(
                out.status.success(),
                "documented command failed ({}):\n{}\n--- stdout\n{stdout}--- stderr\n{stderr}",
                out.status,
                c.text
            );
            if let Some(e) = &c.expect {
                ensure!(
                    stdout.contains(e.as_str()),
                    "the docs say `{}` prints {e:?}; it printed:\n{stdout}{stderr}",
                    c.text
                );
            }
        }
        Ok(())
    }
}

/// Helpers for networks of real `aergo-node` processes made by `aergo testnet init`.
pub mod testnet {
    use super::{bin, http, poll, KillOnDrop};
    use anyhow::{bail, Context, Result};
    use serde_json::{json, Value};
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    /// A DPoS testnet of `nodes` BPs made by `aergo testnet init` in `dir` with 500 ms slots,
    /// 6-slot rounds and a 3 s start delay (what the short multi-node tests use), on ports
    /// from [`base_port`]; returns each node's RPC URL (`http://…`), in node order.
    pub fn init_fast(dir: &Path, nodes: usize) -> Result<Vec<String>> {
        let st = Command::new(bin("aergo")?)
            .args(["testnet", "init", "--bps", &nodes.to_string()])
            .args(["--nodes", &nodes.to_string()])
            .args(["--interval-ms", "500", "--round-slots", "6"])
            .args(["--start-delay-ms", "3000"])
            .args(["--base-port", &base_port(nodes)?.to_string()])
            .arg("--out")
            .arg(dir)
            .output()?;
        if !st.status.success() {
            bail!("testnet init: {}", String::from_utf8_lossy(&st.stderr));
        }
        (0..nodes)
            .map(|i| {
                let text = std::fs::read_to_string(dir.join(format!("node{}/aergo.toml", i + 1)))?;
                let cfg: toml::Value = toml::from_str(&text)?;
                Ok(format!(
                    "http://{}",
                    cfg["node"]["rpc_addr"].as_str().context("rpc_addr")?
                ))
            })
            .collect()
    }

    /// The chain id the node at `url` reports.
    pub fn chain_id(url: &str) -> Result<aergo_types::Hash> {
        Ok(aergo_types::Hash::from_hex(
            rpc(url, "chain_info", json!({}))?["chain_id"]
                .as_str()
                .context("chain_id")?,
        )?)
    }

    /// The faucet's key of the testnet in `dir` (`faucet.key`, hex seed) and the chain id
    /// the node at `url` reports.
    pub fn faucet(dir: &Path, url: &str) -> Result<(aergo_types::Keypair, aergo_types::Hash)> {
        let seed = std::fs::read_to_string(dir.join("faucet.key"))?;
        let mut b = [0u8; 32];
        hex::decode_to_slice(seed.trim(), &mut b)?;
        Ok((aergo_types::Keypair::from_seed(&b), chain_id(url)?))
    }

    /// One JSON-RPC call over HTTP; a JSON-RPC error is an `Err` naming the method.
    pub fn rpc(url: &str, method: &str, params: Value) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (code, text) = http::raw("POST", url, &body.to_string())?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{code}: {text}"))?;
        if let Some(e) = v.get("error") {
            bail!("{method}: {e}");
        }
        Ok(v["result"].clone())
    }

    /// The headers of a request body signed by `key` now (a signed read of a private
    /// repository).
    pub fn sign_headers(key: &aergo_types::Keypair, body: &str) -> Vec<(String, String)> {
        use aergo_types::repo::*;
        let account = aergo_types::Address::from_public_key(&key.public());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        let sig = key.sign(&read_auth_message(now, &account, body.as_bytes()).0);
        vec![
            (AUTH_ACCOUNT_HEADER.into(), account.encode()),
            (AUTH_TIME_HEADER.into(), now.to_string()),
            (AUTH_SIGNATURE_HEADER.into(), sig.to_hex()),
        ]
    }

    /// A JSON-RPC call, signed by `key` when given; a JSON-RPC error is an `Err`. Each call
    /// has its own id, so two identical calls within one millisecond are two different
    /// signed bodies, not a replay.
    pub fn rpc_as(
        url: &str,
        key: Option<&aergo_types::Keypair>,
        method: &str,
        params: Value,
    ) -> Result<Value> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let headers = key.map(|k| sign_headers(k, &body)).unwrap_or_default();
        reply(http::raw_with("POST", url, &headers, &body)?)
    }

    pub fn reply((code, text): (u16, String)) -> Result<Value> {
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{code}: {text}"))?;
        if let Some(e) = v.get("error") {
            bail!("{e}");
        }
        Ok(v["result"].clone())
    }

    /// The kernel's ephemeral port range (outgoing connections and ephemeral listeners take
    /// ports from it).
    fn ephemeral_range() -> (u16, u16) {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32768, 60999))
    }

    /// A base port for `testnet init --base-port` with ten free ports per node, outside the
    /// ephemeral range: a range chosen among ephemeral ports could be taken by an outgoing
    /// connection or a proxy between `testnet init` and a node's start.
    pub fn base_port(nodes: usize) -> Result<u16> {
        let span = u16::try_from(nodes * 10)?;
        let (eph_lo, eph_hi) = ephemeral_range();
        // Below the ephemeral range, or above it when it starts too low to leave room.
        let (lo, hi) = if eph_lo >= 10_000 + span {
            (10_000u16, eph_lo - span)
        } else {
            (eph_hi.saturating_add(1), u16::MAX - span)
        };
        let mut seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::from(d.subsec_nanos()))
                .unwrap_or(0);
        for _ in 0..50 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let p = lo + u16::try_from((seed >> 33) % u64::from(hi.saturating_sub(lo).max(1)))?;
            if (0..span).all(|o| std::net::TcpListener::bind(("127.0.0.1", p + o)).is_ok()) {
                return Ok(p);
            }
        }
        bail!("no free port range")
    }

    /// Starts node `i` (0-based) of the testnet in `dir` (its config `node{i+1}/aergo.toml`,
    /// its log `node{i+1}.log`) and waits until `url` answers `/health`; the error carries the
    /// log's tail.
    pub fn start_node(dir: &Path, i: usize, url: &str) -> Result<KillOnDrop> {
        start_node_env(dir, i, url, &[])
    }

    /// [`start_node`] with extra environment variables (an injected fault).
    pub fn start_node_env(
        dir: &Path,
        i: usize,
        url: &str,
        env: &[(&str, &str)],
    ) -> Result<KillOnDrop> {
        let mut cmd = Command::new(bin("aergo-node")?);
        let log = dir.join(format!("node{}.log", i + 1));
        cmd.arg("--config")
            .arg(dir.join(format!("node{}/aergo.toml", i + 1)))
            .envs(env.iter().copied())
            .env("AERGO_LOG", "info,aergo_p2p=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?,
            ));
        let p = KillOnDrop::spawn(&mut cmd)?;
        let health = format!("{url}/health");
        poll("node health", Duration::from_secs(20), || {
            Ok(http::get_ok(&health).then_some(()))
        })
        .with_context(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            format!("node {} log (newest first):\n{}", i + 1, tail.join("\n"))
        })?;
        Ok(p)
    }

    /// Sends `count` pre-confirmed transfers from `faucet` on the root chain, each to the nodes
    /// in turn (a node that does not produce the next slot forwards it to the one that does;
    /// one that cannot reach it refuses with `not_producer`, naming it), and checks every
    /// promise is kept on every node: the promised block's parent, the transaction at the
    /// promised position, the receipt. Returns (promises, distinct producers, refusals).
    pub fn preconfirmations_kept(
        urls: &[String],
        faucet: &aergo_types::Keypair,
        count: usize,
    ) -> Result<(usize, usize, usize)> {
        let root = chain_id(&urls[0])?;
        let from = aergo_types::Address::from_public_key(&faucet.public());
        let to = aergo_types::Address::from_public_key(&aergo_types::Keypair::generate().public());
        let mut nonce = rpc(
            &urls[0],
            "account",
            serde_json::json!({"address": from.encode()}),
        )?["next_nonce"]
            .as_u64()
            .context("next_nonce")?;
        let mut promised: Vec<serde_json::Value> = Vec::new();
        let mut refusals = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while promised.len() < count {
            if std::time::Instant::now() > deadline {
                bail!(
                    "only {} promises in 30 s ({refusals} refusals)",
                    promised.len()
                );
            }
            let tx = super::signed_transfer(faucet, nonce, to, root);
            let mut sent = false;
            // Each attempt asks the nodes in another order, so every producer gets asked first.
            for k in 0..urls.len() {
                let u = &urls[(promised.len() + k) % urls.len()];
                match rpc(
                    u,
                    "send_tx",
                    serde_json::json!({"tx": hex::encode(tx.encode()), "wait": "preconfirmed"}),
                ) {
                    Ok(v) => {
                        promised.push(v["preconfirmation"].clone());
                        sent = true;
                        break;
                    }
                    Err(e) if e.to_string().contains("not_producer") => {
                        // Refused before admission, naming the slot's producer.
                        assert!(e.to_string().contains("its producer is"), "{e}");
                        refusals += 1;
                    }
                    Err(e) if e.to_string().contains("nonce_gap") => {
                        // The previous promise (another producer's, gossiped once promised)
                        // has not reached this node yet: ask again shortly.
                        break;
                    }
                    Err(e) => bail!("preconfirmed send to {u}: {e}"),
                }
            }
            if sent {
                nonce += 1;
                // Spread over several slots, so several producers promise (a forwarded send
                // answers in milliseconds: all could land in one slot).
                std::thread::sleep(Duration::from_millis(150));
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let producers: std::collections::BTreeSet<String> = promised
            .iter()
            .filter_map(|p| p["producer_address"].as_str().map(str::to_string))
            .collect();
        promises_kept(urls, &promised)?;
        Ok((promised.len(), producers.len(), refusals))
    }
    /// Every promise in `promised` is kept on every node of `urls`: the block at its height
    /// extends its parent and holds its transaction at its position with its receipt.
    pub fn promises_kept(urls: &[String], promised: &[serde_json::Value]) -> Result<()> {
        let last = promised
            .iter()
            .filter_map(|p| p["height"].as_u64())
            .max()
            .unwrap_or(0);
        for u in urls {
            poll(
                &format!("{u} at height {last}"),
                Duration::from_secs(20),
                || {
                    Ok(
                        (rpc(u, "chain_info", serde_json::json!({}))?["height"].as_u64()
                            >= Some(last))
                        .then_some(()),
                    )
                },
            )?;
            for p in promised {
                let h = p["height"].as_u64().context("height")?;
                let b = rpc(u, "block", serde_json::json!({"height": h}))?;
                assert_eq!(b["parent_hash"], p["parent"], "{u}: block {h}'s parent");
                let pos = usize::try_from(p["position"].as_u64().context("position")?)?;
                assert_eq!(b["txs"][pos], p["tx_hash"], "{u}: block {h} position {pos}");
                let r = rpc(u, "receipt", serde_json::json!({"hash": p["tx_hash"]}))?;
                assert_eq!(r["status"], p["receipt"]["status"]);
                assert_eq!(r["gas_used"], p["receipt"]["gas_used"]);
                assert_eq!(r["fee"], p["receipt"]["fee"]);
            }
        }
        Ok(())
    }

    /// Slot boundaries: `attempts` times, one transfer is sent with `wait: "preconfirmed"` to
    /// every node of `urls` at once (one thread each), at moments spread over several slots,
    /// so some land in a slot's last moments. At most one producer may promise it: the nodes
    /// that answer with a promise (the producer itself, and the nodes that forwarded the
    /// transaction to it and relay its answer) all answer the same signed promise; the others
    /// refuse (`not_producer`, or the nonce is taken). Every promise is kept on every node.
    /// Returns (transactions promised, attempts no node promised).
    pub fn promised_once(
        urls: &[String],
        faucet: &aergo_types::Keypair,
        attempts: usize,
    ) -> Result<(usize, usize)> {
        let root = chain_id(&urls[0])?;
        let from = aergo_types::Address::from_public_key(&faucet.public());
        let mut promised = Vec::new();
        let mut unpromised = 0;
        for k in 0..attempts {
            // The highest next nonce any node knows (promises gossip once made).
            let mut nonce = 0;
            for u in urls {
                let n = rpc(u, "account", serde_json::json!({"address": from.encode()}))?
                    ["next_nonce"]
                    .as_u64()
                    .context("next_nonce")?;
                nonce = nonce.max(n);
            }
            let tx = super::signed_transfer(faucet, nonce, from, root);
            let body = serde_json::json!({"tx": hex::encode(tx.encode()), "wait": "preconfirmed"});
            let answers: Vec<Result<serde_json::Value>> = std::thread::scope(|sc| {
                let hs: Vec<_> = urls
                    .iter()
                    .map(|u| {
                        let b = body.clone();
                        sc.spawn(move || rpc(u, "send_tx", b))
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))
                    })
                    .collect()
            });
            let ok: Vec<serde_json::Value> = answers
                .iter()
                .filter_map(|a| a.as_ref().ok())
                .map(|v| v["preconfirmation"].clone())
                .collect();
            let distinct: std::collections::BTreeSet<String> =
                ok.iter().map(|p| p["signature"].to_string()).collect();
            if distinct.len() > 1 {
                bail!(
                    "one transaction promised {} times (by {:?}): {ok:?}",
                    distinct.len(),
                    ok.iter()
                        .map(|p| p["producer_address"].to_string())
                        .collect::<Vec<_>>()
                );
            }
            match ok.into_iter().next() {
                Some(p) => promised.push(p),
                None => unpromised += 1,
            }
            // 137 ms apart: the attempts drift across the slots' boundaries.
            std::thread::sleep(Duration::from_millis(137 + (k as u64 % 3) * 50));
        }
        promises_kept(urls, &promised)?;
        Ok((promised.len(), unpromised))
    }
}
