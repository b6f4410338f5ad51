//! `aergo os …`: talks to the appliance's init (PID 1) through the control protocol
//! ([`aergo_os::control`]): locally over `/run/aergo/init.sock`, or remotely with
//! `--init-addr HOST[:7847]` and the token printed on the appliance's console (stored in
//! `/data/etc/init.token`). Synchronous: [`run`] blocks until init answers (or, for
//! `logs --follow`, until interrupted).

use aergo_os::control::{Client, Endpoint, LogLine, ServiceInfo, StatusReport};
use anyhow::{bail, Context, Result};

/// `aergo os` subcommands.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum OsCmd {
    /// Services (state, pid, restarts, uptime, last exit) and system facts.
    Status,
    /// Start a stopped service.
    Start {
        /// Service name (node, aergofs, dashboard).
        service: String,
    },
    /// Stop a service (it stays stopped until started).
    Stop {
        /// Service name.
        service: String,
    },
    /// Restart a service.
    Restart {
        /// Service name.
        service: String,
    },
    /// Show a service's log (`init` for init's own messages).
    Logs {
        /// Service name, or `init`.
        service: String,
        /// How many recent lines.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop services cleanly and reboot the appliance.
    Reboot {
        /// Instead: cancel the reboot an upgrade scheduled (`upgrade --reboot-at`); the new
        /// slot stays armed for the next reboot.
        #[arg(long)]
        cancel: bool,
    },
    /// Install a signed update bundle (`aergo-image bundle`) into the inactive system slot:
    /// init verifies it before writing anything and boots it once on trial at the next
    /// reboot; the slot becomes permanent once the node runs healthy on it, else the
    /// appliance falls back to the current slot by itself.
    Upgrade {
        /// The bundle file.
        bundle: std::path::PathBuf,
        /// Reboot into the new slot as soon as it is installed.
        #[arg(long, conflicts_with = "reboot_at")]
        reboot: bool,
        /// Reboot into the new slot at the next HH:MM, UTC, 24-hour clock (today if still
        /// ahead by the appliance's clock, else tomorrow; at once if the install ends
        /// after it). `aergo os status` shows it; `aergo os reboot --cancel` cancels it; a
        /// later upgrade replaces it.
        #[arg(long, value_name = "HH:MM")]
        reboot_at: Option<String>,
        /// Accept a bundle older than the running version.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Stop services cleanly and power the appliance off.
    Poweroff,
    /// Call the node's JSON-RPC API as its operator, through init (the node's Unix
    /// socket): `admin_*` methods and private reads included, e.g. `aergo os rpc
    /// admin_branch_accept '{"name":"feat"}'`. Prints the `result` (or fails with the
    /// node's error).
    Rpc {
        /// The method.
        method: String,
        /// Its parameters, a JSON object (default `{}`).
        params: Option<String>,
    },
    /// Write a support bundle (tar.zst) to stdout: init's and every service's logs, the
    /// config with secrets redacted, versions, slot states, disk and memory figures, the
    /// chain's tip. `aergo os support-bundle > support.tar.zst`.
    SupportBundle,
}

/// Builds the client for `init_addr` (default: the local socket) and `token`.
pub fn client(init_addr: Option<&str>, token: Option<&str>) -> Result<Client> {
    let endpoint = match init_addr {
        Some(a) if !a.trim().is_empty() => Endpoint::parse(a)?,
        _ => Endpoint::local(),
    };
    if matches!(endpoint, Endpoint::Tcp(_)) && token.is_none() {
        bail!(
            "remote control of {endpoint} needs the token shown on the appliance's console \
             (--init-token or AERGO_INIT_TOKEN)"
        );
    }
    Ok(Client::new(endpoint, token.map(str::to_string)))
}

/// Runs one `aergo os` command. `json` prints init's answers as JSON.
pub fn run(cmd: OsCmd, init_addr: Option<&str>, token: Option<&str>, json: bool) -> Result<()> {
    let c = client(init_addr, token)?;
    let ctx = || format!("talking to init at {}", c.endpoint());
    match cmd {
        OsCmd::Status => {
            let st = c.status().with_context(ctx)?;
            if json {
                println!("{}", serde_json::to_string(&st)?);
            } else {
                print!("{}", render_status(&st));
            }
        }
        OsCmd::Start { service } => ack(json, c.start(&service).with_context(ctx)?),
        OsCmd::Stop { service } => ack(json, c.stop(&service).with_context(ctx)?),
        OsCmd::Restart { service } => ack(json, c.restart(&service).with_context(ctx)?),
        OsCmd::Reboot { cancel: false } => ack(json, c.reboot().with_context(ctx)?),
        OsCmd::Reboot { cancel: true } => ack(json, c.cancel_reboot().with_context(ctx)?),
        OsCmd::SupportBundle => {
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                bail!("the support bundle is binary: redirect it, `aergo os support-bundle > support.tar.zst`");
            }
            let bytes = support_bundle(&c).with_context(ctx)?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
            out.flush()?;
            eprintln!("support bundle: {} bytes (tar.zst)", bytes.len());
        }
        OsCmd::Upgrade {
            bundle,
            reboot,
            reboot_at,
            allow_downgrade,
        } => {
            // A bad time is refused here, before 100 MB are streamed for nothing.
            if let Some(t) = &reboot_at {
                aergo_os::schedule::TimeOfDay::parse(t)?;
            }
            let mut f = std::fs::File::open(&bundle)
                .with_context(|| format!("opening {}", bundle.display()))?;
            let size = f.metadata()?.len();
            let t = std::time::Instant::now();
            let msg = c
                .upgrade(
                    &mut f,
                    size,
                    allow_downgrade,
                    reboot,
                    reboot_at.as_deref(),
                    std::time::Duration::from_secs(600),
                )
                .with_context(ctx)?;
            let secs = t.elapsed().as_secs_f64();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": true, "message": msg, "bytes": size, "seconds": secs })
                );
            } else {
                println!("{msg} ({} sent, {secs:.1} s)", mib(size));
            }
        }
        OsCmd::Poweroff => ack(json, c.poweroff().with_context(ctx)?),
        OsCmd::Rpc { method, params } => {
            let params: serde_json::Value = match params.as_deref() {
                None => serde_json::json!({}),
                Some(p) => serde_json::from_str(p)
                    .with_context(|| format!("the parameters `{p}` are not JSON"))?,
            };
            let r = c.node_rpc(&method, params).with_context(ctx)?;
            if let Some(e) = r.get("error") {
                bail!(
                    "the node refused {method}: {} (code {})",
                    e["message"].as_str().unwrap_or("no message"),
                    e["code"]
                );
            }
            let result = r.get("result").cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&result)?);
            }
        }
        OsCmd::Logs {
            service,
            lines,
            follow,
        } => {
            let print = |l: &LogLine| {
                if json {
                    println!("{}", serde_json::to_string(l).unwrap_or_default());
                } else {
                    println!("{}", render_line(l));
                }
                true
            };
            if follow {
                c.follow(&service, lines, print).with_context(ctx)?;
            } else {
                for l in c.logs(&service, lines).with_context(ctx)? {
                    print(&l);
                }
            }
        }
    }
    Ok(())
}

/// Collects the support bundle's files over the control protocol and packs them.
fn support_bundle(c: &Client) -> Result<Vec<u8>> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let st = c.status()?;
    files.push((
        "status.json".into(),
        serde_json::to_vec_pretty(&st).unwrap_or_default(),
    ));
    files.push(("status.txt".into(), render_status(&st).into_bytes()));
    let mut names = vec!["init".to_string()];
    names.extend(st.services.iter().map(|s| s.name.clone()));
    for name in names {
        let text = match c.logs(&name, 2000) {
            Ok(lines) => lines
                .iter()
                .map(|l| render_line(l) + "\n")
                .collect::<String>(),
            Err(e) => format!("(logs unavailable: {e})\n"),
        };
        files.push((format!("logs/{name}.log"), text.into_bytes()));
    }
    for f in c.support_info()? {
        files.push((f.name, f.text.into_bytes()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(zstd_stored(&tar(&files, "aergo-support", now)))
}

/// A ustar archive of `files` under the folder `root`.
pub fn tar(files: &[(String, Vec<u8>)], root: &str, mtime: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        let path = format!("{root}/{name}");
        let n = path.len().min(99);
        h[..n].copy_from_slice(&path.as_bytes()[..n]);
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = len - 1);
            h[at..at + len].copy_from_slice(&s.as_bytes()[s.len() - len..]);
        };
        octal(&mut h, 100, 8, 0o644);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, data.len() as u64);
        octal(&mut h, 136, 12, mtime);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// `data` as one zstd frame of stored (raw) blocks: any zstd reads it, no compressor needed
/// (logs and texts of a few MiB).
pub fn zstd_stored(data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 128 * 1024;
    let mut out = Vec::with_capacity(data.len() + data.len() / BLOCK * 3 + 32);
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    // Frame header: 8-byte content size, single segment, no checksum, no dictionary.
    out.push(0xE0);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut chunks = data.chunks(BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0]);
    }
    while let Some(c) = chunks.next() {
        let last = u32::from(chunks.peek().is_none());
        // Block header: last flag, type 0 (raw), size; c.len() ≤ 128 KiB fits 21 bits.
        let hdr = last | (u32::try_from(c.len()).unwrap_or(0) << 3);
        out.extend_from_slice(&hdr.to_le_bytes()[..3]);
        out.extend_from_slice(c);
    }
    out
}

fn ack(json: bool, message: String) {
    if json {
        println!("{}", serde_json::json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
}

/// `1h 02m`, `3m 04s`, `12s`.
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn mib(b: u64) -> String {
    format!("{} MiB", b >> 20)
}

fn service_row(s: &ServiceInfo) -> String {
    format!(
        "{:<10} {:<9} {:>6} {:>8}  {:<8} {:<10} {}",
        s.name,
        s.state.as_str(),
        s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        s.restarts,
        s.uptime_ms
            .map(human_duration)
            .unwrap_or_else(|| "-".into()),
        s.last_exit
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "-".into()),
        s.message.clone().unwrap_or_default()
    )
    .trim_end()
    .to_string()
}

/// The human-readable `status` table.
pub fn render_status(st: &StatusReport) -> String {
    let mut out = format!(
        "{:<10} {:<9} {:>6} {:>8}  {:<8} {:<10} NOTE\n",
        "SERVICE", "STATE", "PID", "RESTARTS", "UPTIME", "LAST EXIT"
    );
    for s in &st.services {
        out.push_str(&service_row(s));
        out.push('\n');
    }
    let y = &st.system;
    out.push_str(&format!(
        "\nhost {}  kernel {}  up {}  addresses {}\n",
        y.hostname,
        y.kernel,
        human_duration(y.uptime_ms),
        if y.addresses.is_empty() {
            "none".to_string()
        } else {
            y.addresses.join(", ")
        }
    ));
    out.push_str(&format!(
        "data {}  clock offset {}  init RSS {} KiB  panics caught {}  watchdog {}\n",
        if y.data_mounted {
            format!(
                "{} ({} free)",
                mib(y.data_total_bytes),
                mib(y.data_free_bytes)
            )
        } else {
            "NOT MOUNTED (RAM only)".to_string()
        },
        y.clock_offset_ms
            .map(|o| format!("{o:+.1} ms"))
            .unwrap_or_else(|| "unknown".into()),
        y.init_rss_kib,
        y.init_panics,
        if y.watchdog { "fed" } else { "none" }
    ));
    if !st.slots.is_empty() {
        let slots: Vec<String> = st
            .slots
            .iter()
            .map(|s| {
                let state = serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let v = if s.version.is_empty() {
                    "-"
                } else {
                    &s.version
                };
                format!("{} {v} ({state})", s.name)
            })
            .collect();
        out.push_str(&format!(
            "slots {}
",
            slots.join(", ")
        ));
    }
    if let Some(l) = &st.last_upgrade {
        out.push_str(&format!(
            "last upgrade: {l}
"
        ));
    }
    if let Some(at) = st.reboot_at {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        out.push_str(&format!(
            "reboot scheduled at {} ({}; aergo os reboot --cancel)\n",
            aergo_os::schedule::format_utc(at),
            aergo_os::schedule::format_left(at, now)
        ));
    }
    out
}

/// One log line for the terminal.
pub fn render_line(l: &LogLine) -> String {
    let secs = l.ts_ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let tag = if l.stream == "stderr" { " !" } else { "" };
    format!(
        "{h:02}:{m:02}:{s:02}.{:03} {}{tag} {}",
        l.ts_ms % 1000,
        l.service,
        l.text
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_os::control::{ExitInfo, ServiceState, SystemInfo};
    use aergo_os::slots::{SlotInfo, SlotState};

    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn support_bundle_is_a_tar_zst_that_tar_and_zstd_read() {
        let big: Vec<u8> = (0..300_000usize)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
            .collect();
        let files = vec![
            ("status.json".to_string(), b"{}".to_vec()),
            ("logs/node.log".to_string(), big.clone()),
            ("empty".to_string(), Vec::new()),
        ];
        let packed = zstd_stored(&tar(&files, "aergo-support", 1_700_000_000));
        let dir = std::env::temp_dir().join(format!("aergo-support-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s.tar.zst");
        std::fs::write(&f, &packed).unwrap();
        let out = std::process::Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(&f)
            .arg("-C")
            .arg(&dir)
            .output();
        let _cleanup = Cleanup(dir.clone());
        match out {
            Ok(o) if o.status.success() => {
                let root = dir.join("aergo-support");
                assert_eq!(std::fs::read(root.join("logs/node.log")).unwrap(), big);
                assert_eq!(std::fs::read(root.join("status.json")).unwrap(), b"{}");
                assert!(std::fs::read(root.join("empty")).unwrap().is_empty());
            }
            // tar or zstd missing: only CI must have them (scripts/setup.sh installs zstd).
            other => assert!(std::env::var("CI").is_err(), "{other:?}"),
        }
        assert_eq!(zstd_stored(&[]).len(), 4 + 1 + 8 + 3);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(12_500), "12s");
        assert_eq!(human_duration(184_000), "3m 04s");
        assert_eq!(human_duration(3_720_000), "1h 02m");
        assert_eq!(human_duration(90_000_000), "1d 01h");
    }

    #[test]
    fn upgrade_reboot_options_parse() {
        use clap::Parser;
        #[derive(clap::Parser, Debug)]
        struct T {
            #[command(subcommand)]
            cmd: OsCmd,
        }
        let t = T::try_parse_from(["os", "upgrade", "b.bundle", "--reboot-at", "03:30"]).unwrap();
        assert!(
            matches!(&t.cmd, OsCmd::Upgrade { reboot_at: Some(a), reboot: false, .. } if a == "03:30"),
            "{t:?}"
        );
        let e = T::try_parse_from(["os", "upgrade", "b", "--reboot", "--reboot-at", "03:30"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let t = T::try_parse_from(["os", "reboot", "--cancel"]).unwrap();
        assert_eq!(t.cmd, OsCmd::Reboot { cancel: true });
        // A bad time is refused before anything is sent (no appliance needed).
        let e = run(
            OsCmd::Upgrade {
                bundle: "/nonexistent.bundle".into(),
                reboot: false,
                reboot_at: Some("3:3".into()),
                allow_downgrade: false,
            },
            None,
            None,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad reboot time `3:3`"), "{e}");
    }

    #[test]
    fn status_table() {
        let st = StatusReport {
            services: vec![
                ServiceInfo {
                    name: "node".into(),
                    state: ServiceState::Running,
                    pid: Some(132),
                    restarts: 2,
                    uptime_ms: Some(65_000),
                    last_exit: Some(ExitInfo {
                        code: None,
                        signal: Some(9),
                        at_unix_ms: 1,
                    }),
                    command: vec![],
                    message: None,
                },
                ServiceInfo {
                    name: "aergofs".into(),
                    state: ServiceState::Missing,
                    message: Some("/bin/aergofs is not in this image".into()),
                    ..Default::default()
                },
            ],
            system: SystemInfo {
                hostname: "aergo-123456".into(),
                data_mounted: true,
                data_total_bytes: 1 << 30,
                data_free_bytes: 512 << 20,
                addresses: vec!["10.0.2.15/24".into()],
                ..Default::default()
            },
            slots: vec![
                SlotInfo {
                    name: "A".into(),
                    version: "1.2.0".into(),
                    state: SlotState::Bad,
                },
                SlotInfo {
                    name: "B".into(),
                    version: "1.1.0".into(),
                    state: SlotState::Active,
                },
            ],
            last_upgrade: Some("fell back: slot A (1.2.0) is bad".into()),
            reboot_at: None,
        };
        let t = render_status(&st);
        assert!(t.contains("slots A 1.2.0 (bad), B 1.1.0 (active)"), "{t}");
        assert!(t.contains("last upgrade: fell back"), "{t}");
        assert!(!t.contains("reboot scheduled"), "{t}");
        let mut later = st.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        later.reboot_at = Some(now + 3 * 3600 + 1800);
        let t = render_status(&later);
        let line = t
            .lines()
            .find(|l| l.starts_with("reboot scheduled at "))
            .unwrap();
        assert!(
            line.contains(" UTC (in 3 h ") && line.ends_with("; aergo os reboot --cancel)"),
            "{line}"
        );
        assert_eq!(
            serde_json::to_value(&later).unwrap()["reboot_at"],
            serde_json::json!(now + 3 * 3600 + 1800)
        );
        let j: serde_json::Value = serde_json::to_value(&st).unwrap();
        assert_eq!(
            j["slots"][1],
            serde_json::json!({"name": "B", "version": "1.1.0", "state": "active"})
        );
        let node = t.lines().find(|l| l.starts_with("node")).unwrap();
        assert!(node.contains("running") && node.contains("132") && node.contains("signal 9"));
        assert!(node.contains("1m 05s"), "{node}");
        assert!(t.contains("missing") && t.contains("not in this image"));
        assert!(t.contains("1024 MiB (512 MiB free)"));
        assert!(t.contains("10.0.2.15/24"));
    }

    #[test]
    fn remote_needs_a_token() {
        assert!(client(Some("10.0.0.5"), None).is_err());
        let c = client(Some("10.0.0.5"), Some("t")).unwrap();
        assert_eq!(c.endpoint(), &Endpoint::Tcp("10.0.0.5:7847".into()));
        let c = client(None, None).unwrap();
        assert_eq!(c.endpoint(), &Endpoint::local());
    }

    #[test]
    fn log_line_format() {
        let l = LogLine {
            service: "node".into(),
            seq: 1,
            ts_ms: 3_723_004,
            stream: "stderr".into(),
            text: "boom".into(),
        };
        assert_eq!(render_line(&l), "01:02:03.004 node ! boom");
    }

    #[test]
    fn parses_as_a_subcommand() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            os: OsCmd,
        }
        let c = Cli::try_parse_from(["aergo", "logs", "node", "-n", "5", "-f"]).unwrap();
        assert_eq!(
            c.os,
            OsCmd::Logs {
                service: "node".into(),
                lines: 5,
                follow: true
            }
        );
        assert!(Cli::try_parse_from(["aergo", "restart"]).is_err());
    }
}
