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
    Reboot,
    /// Stop services cleanly and power the appliance off.
    Poweroff,
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
        OsCmd::Reboot => ack(json, c.reboot().with_context(ctx)?),
        OsCmd::Poweroff => ack(json, c.poweroff().with_context(ctx)?),
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

    #[test]
    fn durations() {
        assert_eq!(human_duration(12_500), "12s");
        assert_eq!(human_duration(184_000), "3m 04s");
        assert_eq!(human_duration(3_720_000), "1h 02m");
        assert_eq!(human_duration(90_000_000), "1d 01h");
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
        };
        let t = render_status(&st);
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
