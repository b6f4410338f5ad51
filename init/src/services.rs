//! The service table (node, AergoFS, dashboard) derived from `aergo.toml`, and the real
//! [`Runner`] that spawns processes, captures their output into the log store and probes
//! readiness.

use crate::logs::LogStore;
use crate::supervisor::{Liveness, Readiness, Runner, Spec};
use aergo_os::config::Config;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Folder holding service binaries in the initramfs.
pub const BIN_DIR: &str = "/bin";
/// AergoFS's write token, created by init at first boot and shown on the console (there is
/// no shell to read it from).
pub const FS_TOKEN_FILE: &str = "/data/etc/fs.token";

/// Longest AergoFS waits at boot for the node to answer before it starts anyway.
pub const AERGOFS_AFTER_NODE: Duration = Duration::from_secs(10);

fn port_of(addr: &str, default: u16) -> u16 {
    addr.parse::<SocketAddr>()
        .map(|a| a.port())
        .unwrap_or(default)
}

/// The node's `/health` is polled every 5 s once it runs; 3 failures in a row (a hung server,
/// or the node reporting a late heartbeat) restart it with backoff.
pub const NODE_LIVENESS: Liveness = Liveness {
    every: Duration::from_secs(5),
    failures: 3,
};

/// How long a liveness check waits for an answer (longer than readiness: under load, or
/// under software emulation, a healthy node can be slow to answer).
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The service table in start order. `console` is the device the dashboard takes
/// (`/dev/ttyS0`, `/dev/tty1`) or `None` to not run it.
pub fn table(cfg: &Config, config_path: &str, console: Option<String>) -> Vec<Spec> {
    let rpc_port = port_of(&cfg.node.rpc_addr, aergo_os::paths::RPC_PORT);
    let fs_port = port_of(&cfg.fs.addr, aergo_os::paths::FS_PORT);
    let fs_dir = cfg
        .fs
        .dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| aergo_os::paths::APPLIANCE_FS_DIR.to_string());
    vec![
        Spec {
            name: "node".into(),
            argv: vec![
                format!("{BIN_DIR}/aergo-node"),
                "--config".into(),
                config_path.into(),
            ],
            deps: vec![],
            after: vec![],
            after_wait: Duration::ZERO,
            ready: Readiness::Http(format!("127.0.0.1:{rpc_port}"), "/health".into()),
            liveness: Some(NODE_LIVENESS),
            stop_timeout: Duration::from_secs(20),
            console: None,
            enabled: true,
        },
        Spec {
            name: "aergofs".into(),
            argv: vec![
                format!("{BIN_DIR}/aergofs"),
                "serve".into(),
                "--dir".into(),
                fs_dir,
                "--addr".into(),
                cfg.fs.addr.clone(),
                "--token-file".into(),
                FS_TOKEN_FILE.into(),
                // [fs.http]: connection caps, timeouts, allowed origins.
                "--config".into(),
                config_path.into(),
            ],
            deps: vec![],
            // The node first: its start (and its first block) gets the boot's CPU; AergoFS
            // follows once the node answers, or after at most AERGOFS_AFTER_NODE.
            after: vec!["node".into()],
            after_wait: AERGOFS_AFTER_NODE,
            ready: Readiness::Tcp(format!("127.0.0.1:{fs_port}")),
            liveness: None,
            stop_timeout: Duration::from_secs(10),
            console: None,
            enabled: cfg.fs.enabled,
        },
        Spec {
            name: "dashboard".into(),
            argv: vec![
                format!("{BIN_DIR}/aergo-top"),
                "--rpc".into(),
                format!("http://127.0.0.1:{rpc_port}"),
                "--init".into(),
                aergo_os::paths::INIT_SOCKET.into(),
                "--fs".into(),
                format!("http://127.0.0.1:{fs_port}"),
                "--no-quit".into(),
            ],
            deps: vec!["node".into()],
            after: vec![],
            after_wait: Duration::ZERO,
            ready: Readiness::Immediate,
            liveness: None,
            stop_timeout: Duration::from_secs(5),
            enabled: console.is_some(),
            console,
        },
    ]
}

/// Spawns real processes.
#[derive(Clone)]
pub struct ProcRunner {
    /// Where output goes.
    pub logs: Arc<LogStore>,
    /// Working folder of services (`/data` when mounted).
    pub cwd: String,
}

fn pump<R: Read + Send + 'static>(
    logs: Arc<LogStore>,
    service: String,
    stream: &'static str,
    r: R,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("log-{service}"))
        .spawn(move || {
            let mut reader = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => logs.service(&service, stream, &String::from_utf8_lossy(&buf)),
                }
            }
        });
    if spawned.is_err() {
        // Without a reader the pipe fills and the service blocks; it is better to say so.
        eprintln!("aergo-init: cannot start log reader");
    }
}

/// A serial line has no size: give it 80x24 so full-screen programs can lay out.
fn set_default_winsize(tty: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write a winsize struct on an open tty.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col == 0 {
            ws.ws_col = 80;
            ws.ws_row = 24;
            libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// One HTTP/1.0 GET; true on status 200.
pub fn http_ok(addr: &str, path: &str, timeout: Duration) -> bool {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&sa, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut line = String::new();
    let mut r = BufReader::new(s);
    if r.read_line(&mut line).is_err() {
        return false;
    }
    line.split_whitespace().nth(1) == Some("200")
}

impl Runner for ProcRunner {
    fn available(&mut self, spec: &Spec) -> Result<(), String> {
        let Some(prog) = spec.argv.first() else {
            return Err("empty command".into());
        };
        match std::fs::metadata(prog) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(_) => Err(format!("{prog} is not an executable file")),
            Err(_) => Err(format!("{prog} is not in this image")),
        }
    }

    fn spawn(&mut self, spec: &Spec) -> Result<u32, String> {
        let prog = spec.argv.first().ok_or("empty command")?;
        let mut cmd = Command::new(prog);
        cmd.args(spec.argv.iter().skip(1))
            .env_clear()
            .env("PATH", "/bin:/sbin")
            .env("HOME", &self.cwd)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .current_dir(if Path::new(&self.cwd).is_dir() {
                &self.cwd
            } else {
                "/"
            })
            .stderr(Stdio::piped());
        let on_tty = match &spec.console {
            Some(tty) => {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(tty)
                    .map_err(|e| format!("open {tty}: {e}"))?;
                set_default_winsize(&f);
                let f2 = f.try_clone().map_err(|e| e.to_string())?;
                let term = if tty.contains("ttyS") {
                    "vt100"
                } else {
                    "linux"
                };
                cmd.env("TERM", term).stdin(f).stdout(f2);
                true
            }
            None => {
                cmd.stdin(Stdio::null()).stdout(Stdio::piped());
                false
            }
        };
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // init blocks the signals it waits for; children start with none blocked.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::setsid();
                if on_tty {
                    libc::ioctl(0, libc::TIOCSCTTY, 1);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn {prog}: {e}"))?;
        if let Some(out) = child.stdout.take() {
            pump(self.logs.clone(), spec.name.clone(), "stdout", out);
        }
        if let Some(err) = child.stderr.take() {
            pump(self.logs.clone(), spec.name.clone(), "stderr", err);
        }
        // The reaper (SIGCHLD) collects the exit status; dropping Child neither waits nor kills.
        Ok(child.id())
    }

    fn kill(&mut self, pid: u32, signal: i32) {
        crate::sys::kill(pid, signal);
    }

    fn ready(&mut self, spec: &Spec) -> bool {
        let t = Duration::from_millis(300);
        match &spec.ready {
            Readiness::Immediate => true,
            Readiness::Tcp(a) => a
                .parse::<SocketAddr>()
                .map(|sa| TcpStream::connect_timeout(&sa, t).is_ok())
                .unwrap_or(false),
            Readiness::Http(a, p) => http_ok(a, p, t),
        }
    }

    fn alive(&mut self, spec: &Spec) -> bool {
        match &spec.ready {
            Readiness::Immediate => true,
            Readiness::Tcp(a) => a
                .parse::<SocketAddr>()
                .map(|sa| TcpStream::connect_timeout(&sa, LIVENESS_TIMEOUT).is_ok())
                .unwrap_or(false),
            Readiness::Http(a, p) => http_ok(a, p, LIVENESS_TIMEOUT),
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn table_follows_config() {
        let mut cfg = Config::default();
        cfg.node.rpc_addr = "0.0.0.0:9000".into();
        cfg.fs.enabled = false;
        let t = table(&cfg, "/data/etc/aergo.toml", Some("/dev/ttyS0".into()));
        assert_eq!(
            t.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            vec!["node", "aergofs", "dashboard"]
        );
        assert_eq!(
            t[0].argv,
            vec!["/bin/aergo-node", "--config", "/data/etc/aergo.toml"]
        );
        assert_eq!(
            t[0].ready,
            Readiness::Http("127.0.0.1:9000".into(), "/health".into())
        );
        assert!(!t[1].enabled);
        assert!(t[1]
            .argv
            .windows(2)
            .any(|w| w[0] == "--config" && w[1] == "/data/etc/aergo.toml"));
        assert_eq!(t[2].deps, vec!["node"]);
        assert!(t[2].argv.contains(&"http://127.0.0.1:9000".to_string()));
        assert!(t[2].enabled);
        let t = table(&cfg, "x", None);
        assert!(!t[2].enabled);
    }

    #[test]
    fn runner_spawns_captures_output_and_probes() {
        let logs = Arc::new(LogStore::new(100, 1 << 20));
        let mut r = ProcRunner {
            logs: logs.clone(),
            cwd: "/".into(),
        };
        let spec = Spec {
            name: "echo".into(),
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo hello; echo oops >&2".into(),
            ],
            deps: vec![],
            after: vec![],
            after_wait: Duration::ZERO,
            ready: Readiness::Immediate,
            liveness: None,
            stop_timeout: Duration::from_secs(1),
            console: None,
            enabled: true,
        };
        assert!(r.available(&spec).is_ok());
        let pid = r.spawn(&spec).unwrap();
        assert!(pid > 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while logs.tail("echo", 10).len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut lines: Vec<(String, String)> = logs
            .tail("echo", 10)
            .into_iter()
            .map(|l| (l.stream, l.text))
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            vec![
                ("stderr".to_string(), "oops".to_string()),
                ("stdout".to_string(), "hello".to_string())
            ]
        );
        // SAFETY: reap our own child.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
        let missing = Spec {
            argv: vec!["/nonexistent/aergo-x".into()],
            ..spec
        };
        assert!(r
            .available(&missing)
            .unwrap_err()
            .contains("not in this image"));
    }

    #[test]
    fn http_probe() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            for code in ["200 OK", "503 Busy"] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).unwrap();
                s.write_all(format!("HTTP/1.1 {code}\r\n\r\n").as_bytes())
                    .unwrap();
            }
        });
        assert!(http_ok(&addr, "/health", Duration::from_secs(2)));
        assert!(!http_ok(&addr, "/health", Duration::from_secs(2)));
        h.join().unwrap();
        assert!(!http_ok(
            "127.0.0.1:1",
            "/health",
            Duration::from_millis(200)
        ));
    }
}
