//! The init control protocol: how the dashboard, the CLI and remote operators talk to
//! `aergo-init` (PID 1).
//!
//! # Wire format (version 1)
//! Newline-delimited JSON over a byte stream: the Unix socket [`crate::paths::INIT_SOCKET`]
//! (`/run/aergo/init.sock`, mode 0600, no token needed) or TCP port [`CONTROL_TCP_PORT`]
//! (every request must carry the token stored in [`TOKEN_FILE`], or it is refused).
//!
//! Each request is one JSON object on one line:
//! `{"v":1,"token":"…","op":"status"}`,
//! `{"v":1,"op":"restart","service":"node"}`,
//! `{"v":1,"op":"logs","service":"node","lines":100,"follow":true}`.
//! Each response is one JSON object on one line with `v` and a `kind` tag:
//! `{"v":1,"kind":"status",…}`, `{"v":1,"kind":"ack","message":"…"}`,
//! `{"v":1,"kind":"logs","lines":[…]}`, `{"v":1,"kind":"error","message":"…"}`.
//! A `logs` request with `follow: true` first gets one `logs` response with the backlog,
//! then one `line` response per new log line until the client closes the connection.
//! A connection may carry several requests in sequence (except after a follow).
//! A request with an unknown `v` gets an `error` response naming the supported version.
//!
//! # Client
//! [`Client`] is a small **blocking** client over std sockets (read/write timeouts, default
//! 10 s). From async code call it inside `tokio::task::spawn_blocking`.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// TCP port of the authenticated remote control endpoint.
pub const CONTROL_TCP_PORT: u16 = 7847;
/// Where init keeps the remote-control token (created at first boot).
pub const TOKEN_FILE: &str = "/data/etc/init.token";
/// Longest accepted request or response line in bytes.
pub const MAX_LINE: usize = 4 * 1024 * 1024;
/// Default number of log lines returned by `logs`.
pub const DEFAULT_LOG_LINES: usize = 100;
/// Largest `node_rpc` request sent to the node (the encoded JSON-RPC call).
pub const MAX_NODE_RPC_REQUEST: usize = 64 * 1024;
/// Largest node answer `node_rpc` relays (below [`MAX_LINE`], with room for the envelope).
pub const MAX_NODE_RPC_RESPONSE: usize = 2 * 1024 * 1024;
/// How long `node_rpc` waits for the node at each step (connect, send, answer).
pub const NODE_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the control protocol and client.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Connecting, reading or writing failed.
    #[error("control connection to {endpoint}: {source}")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line was not valid protocol JSON.
    #[error("malformed control message: {0}")]
    Decode(String),
    /// The peer closed the connection before answering.
    #[error("control connection closed by init")]
    Closed,
    /// init answered with an error (refused, unknown service, …).
    #[error("init refused: {0}")]
    Refused(String),
    /// init answered with a different kind of response than the request expects.
    #[error("unexpected response from init: {0}")]
    Unexpected(String),
    /// The endpoint string could not be parsed.
    #[error("bad control endpoint `{0}`: use a socket path, unix:PATH or HOST:PORT")]
    BadEndpoint(String),
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// The token; required over TCP, ignored on the Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The operation.
    #[serde(flatten)]
    pub op: Op,
}

/// What a request asks init to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Services and system facts.
    Status,
    /// Start a stopped service (clears an operator stop).
    Start {
        /// Service name.
        service: String,
    },
    /// Stop a service (SIGTERM, then SIGKILL after its timeout); it stays stopped.
    Stop {
        /// Service name.
        service: String,
    },
    /// Stop then start a service; counts as a restart.
    Restart {
        /// Service name.
        service: String,
    },
    /// Send a signal to a service's process without telling the supervisor: an exit caused
    /// by it is treated as a crash (restart with backoff). Used by tests and operators.
    Signal {
        /// Service name.
        service: String,
        /// Signal number (e.g. 9).
        signal: i32,
    },
    /// The last `lines` lines of a service's log (`init` for init's own), optionally followed.
    Logs {
        /// Service name, or `init`.
        service: String,
        /// How many backlog lines.
        #[serde(default = "default_lines")]
        lines: usize,
        /// Keep the connection open and stream new lines.
        #[serde(default)]
        follow: bool,
    },
    /// Stop services, unmount, reboot.
    Reboot,
    /// Stop services, unmount, power off.
    Poweroff,
    /// Install a signed update bundle into the inactive system slot. Exactly `size` raw bundle
    /// bytes follow the request line on the same connection; init verifies the signature
    /// (before reading the payload) and every hash (before writing anything), writes the
    /// inactive slot, fsyncs it and arms it for one trial boot. The single reply comes after
    /// that (an `ack`, or an `error` and nothing on disk changed).
    Upgrade {
        /// Length of the bundle that follows.
        size: u64,
        /// Accept a version older than the running one.
        #[serde(default)]
        allow_downgrade: bool,
        /// Reboot into the new slot once it is armed.
        #[serde(default)]
        reboot: bool,
        /// Reboot into it at the next `HH:MM` UTC instead ([`crate::schedule`]); replaces a
        /// reboot an earlier upgrade scheduled. Checked before the bundle is read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reboot_at: Option<String>,
    },
    /// Cancel the reboot an upgrade scheduled (`--reboot-at`); the new slot stays armed for
    /// the next reboot, whenever it happens.
    CancelReboot,
    /// What a support bundle needs beyond `status` and `logs`: the config with secrets
    /// redacted, versions, slot bookkeeping, memory and disk figures, the chain's tip.
    SupportInfo,
    /// One JSON-RPC call to the node as its operator, over the node's Unix socket
    /// (`/data/chain/rpc.sock`): `admin_*` methods (which the node answers on loopback or its
    /// socket only, never through the appliance's forwarded port) and private reads
    /// included. The token holder is the operator. The request is at most
    /// [`MAX_NODE_RPC_REQUEST`] bytes, the answer [`MAX_NODE_RPC_RESPONSE`], within
    /// [`NODE_RPC_TIMEOUT`].
    NodeRpc {
        /// The method, e.g. `admin_branch_accept`.
        method: String,
        /// Its parameters (an object; absent: none).
        #[serde(default)]
        params: serde_json::Value,
    },
    /// Diagnostics: make the named init subsystem panic once (it must be caught and logged;
    /// the system keeps running). Subsystems: `control`, `supervisor`.
    InjectPanic {
        /// Subsystem name.
        subsystem: String,
    },
    /// Diagnostics: init's supervisor loop, which feeds the hardware watchdog, stops for good
    /// (services keep running, the control servers keep answering), so the watchdog must
    /// reset the machine. Refused when no watchdog is being fed.
    InjectHang,
}

fn default_lines() -> usize {
    DEFAULT_LOG_LINES
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// The payload.
    #[serde(flatten)]
    pub reply: Reply,
}

/// Response payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `status`.
    Status(StatusReport),
    /// The operation was accepted.
    Ack {
        /// Human-readable note.
        message: String,
    },
    /// Log backlog.
    Logs {
        /// Oldest first.
        lines: Vec<LogLine>,
    },
    /// One followed log line.
    Line(LogLine),
    /// Answer to `support_info`: named text files.
    Support {
        /// The files.
        files: Vec<SupportFile>,
    },
    /// Answer to `node_rpc`: the node's JSON-RPC response as it sent it (`result` or
    /// `error`).
    Rpc {
        /// The response object.
        response: serde_json::Value,
    },
    /// The request failed or was refused.
    Error {
        /// Why.
        message: String,
    },
}

/// Answer to `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusReport {
    /// Services in start order.
    pub services: Vec<ServiceInfo>,
    /// System facts.
    pub system: SystemInfo,
    /// The A/B system slots (empty when the disk has none).
    pub slots: Vec<crate::slots::SlotInfo>,
    /// The last upgrade's outcome, one line.
    pub last_upgrade: Option<String>,
    /// When init will reboot into the upgraded slot (Unix seconds, UTC), if an upgrade
    /// scheduled it (`--reboot-at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot_at: Option<u64>,
}

/// Lifecycle state of a supervised service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for its dependencies to become ready.
    #[default]
    Waiting,
    /// Process running, readiness not yet confirmed.
    Starting,
    /// Process running and ready.
    Running,
    /// Exited; will be restarted after a backoff delay.
    Backoff,
    /// Being stopped (SIGTERM sent).
    Stopping,
    /// Stopped by an operator or at shutdown; not restarted.
    Stopped,
    /// Cannot run (e.g. its binary is not in the image); not retried.
    Missing,
}

impl ServiceState {
    /// Lowercase name as on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Missing => "missing",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExitInfo {
    /// Exit code when it exited.
    pub code: Option<i32>,
    /// Signal number when it was killed.
    pub signal: Option<i32>,
    /// Wall-clock time of the exit, Unix milliseconds.
    pub at_unix_ms: u64,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => f.write_str("unknown"),
        }
    }
}

/// One service as reported by `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceInfo {
    /// Name (`node`, `aergofs`, `dashboard`).
    pub name: String,
    /// Lifecycle state.
    pub state: ServiceState,
    /// Process id while running.
    pub pid: Option<u32>,
    /// How many times it was (re)started after the first start.
    pub restarts: u32,
    /// Milliseconds since the current process started.
    pub uptime_ms: Option<u64>,
    /// How the previous process ended.
    pub last_exit: Option<ExitInfo>,
    /// The command line.
    pub command: Vec<String>,
    /// Extra detail (why it is missing, when the next restart is due, …).
    pub message: Option<String>,
}

/// System facts reported by `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    /// Hostname.
    pub hostname: String,
    /// Kernel release.
    pub kernel: String,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// IPv4 addresses with prefix length, e.g. `10.0.2.15/24`.
    pub addresses: Vec<String>,
    /// Whether `/data` is mounted.
    pub data_mounted: bool,
    /// Size of the `/data` filesystem in bytes.
    pub data_total_bytes: u64,
    /// Free bytes on `/data`.
    pub data_free_bytes: u64,
    /// Last measured clock offset to the SNTP servers in milliseconds (positive: we were behind).
    pub clock_offset_ms: Option<f64>,
    /// init's resident memory in KiB.
    pub init_rss_kib: u64,
    /// Panics caught in init's subsystems since boot.
    pub init_panics: u32,
    /// Whether a hardware watchdog is being fed.
    pub watchdog: bool,
}

/// One file of a support bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SupportFile {
    /// Relative name (`config/aergo.toml`).
    pub name: String,
    /// Contents.
    pub text: String,
}

/// One captured log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogLine {
    /// Service name (`init` for init's own messages).
    pub service: String,
    /// Monotonic sequence number per service.
    pub seq: u64,
    /// Wall-clock time, Unix milliseconds.
    pub ts_ms: u64,
    /// `stdout`, `stderr` or `init`.
    pub stream: String,
    /// The text without the trailing newline.
    pub text: String,
}

/// Encodes a message as one line (JSON plus `\n`).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ControlError> {
    let mut out = serde_json::to_vec(msg).map_err(|e| ControlError::Decode(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// Decodes one request line, checking the version.
pub fn decode_request(line: &str) -> Result<Request, ControlError> {
    let value: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| ControlError::Decode(e.to_string()))?;
    let v = value.get("v").and_then(|v| v.as_u64()).unwrap_or(0);
    if v != u64::from(PROTOCOL_VERSION) {
        return Err(ControlError::Decode(format!(
            "unsupported protocol version {v}; this init speaks v{PROTOCOL_VERSION}"
        )));
    }
    serde_json::from_value(value).map_err(|e| ControlError::Decode(e.to_string()))
}

/// Decodes one response line.
pub fn decode_response(line: &str) -> Result<Response, ControlError> {
    serde_json::from_str(line.trim()).map_err(|e| ControlError::Decode(e.to_string()))
}

/// Compares a presented token with the expected one in constant time.
pub fn token_matches(expected: &str, presented: Option<&str>) -> bool {
    let Some(p) = presented else { return false };
    let (a, b) = (expected.as_bytes(), p.as_bytes());
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where init's control protocol is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The local Unix socket.
    Unix(PathBuf),
    /// The TCP endpoint (`host:port`), token required.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:/path`, `/path` (a socket), or `host:port` / `tcp:host:port`.
    /// A bare host without a port gets [`CONTROL_TCP_PORT`].
    pub fn parse(s: &str) -> Result<Self, ControlError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ControlError::BadEndpoint(s.into()));
        }
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let t = s.strip_prefix("tcp:").unwrap_or(s);
        if t.contains(':') {
            Ok(Endpoint::Tcp(t.to_string()))
        } else {
            Ok(Endpoint::Tcp(format!("{t}:{CONTROL_TCP_PORT}")))
        }
    }

    /// The default local endpoint.
    pub fn local() -> Self {
        Endpoint::Unix(PathBuf::from(crate::paths::INIT_SOCKET))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "{a}"),
        }
    }
}

trait Stream: std::io::Read + Write + Send {}
impl<T: std::io::Read + Write + Send> Stream for T {}

/// A blocking control-protocol client. One connection per call; cheap to keep around.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    /// A client for `endpoint`; `token` is needed for TCP.
    pub fn new(endpoint: Endpoint, token: Option<String>) -> Self {
        Self {
            endpoint,
            token,
            timeout: Duration::from_secs(10),
        }
    }

    /// Client for the local socket `/run/aergo/init.sock`.
    pub fn local() -> Self {
        Self::new(Endpoint::local(), None)
    }

    /// Sets the connect/read/write timeout (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn io_err(&self, source: std::io::Error) -> ControlError {
        ControlError::Io {
            endpoint: self.endpoint.to_string(),
            source,
        }
    }

    fn connect(
        &self,
        timeout: Option<Duration>,
    ) -> Result<BufReader<Box<dyn Stream>>, ControlError> {
        let stream: Box<dyn Stream> = match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = UnixStream::connect(p).map_err(|e| self.io_err(e))?;
                s.set_read_timeout(timeout).map_err(|e| self.io_err(e))?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(|e| self.io_err(e))?;
                Box::new(s)
            }
            Endpoint::Tcp(a) => {
                use std::net::ToSocketAddrs;
                let addrs: Vec<_> = a.to_socket_addrs().map_err(|e| self.io_err(e))?.collect();
                let mut last = None;
                let mut conn = None;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, self.timeout) {
                        Ok(s) => {
                            conn = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = match conn {
                    Some(s) => s,
                    None => {
                        return Err(self.io_err(last.unwrap_or_else(|| {
                            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                        })))
                    }
                };
                s.set_read_timeout(timeout).map_err(|e| self.io_err(e))?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(|e| self.io_err(e))?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
        };
        Ok(BufReader::new(stream))
    }

    fn send(&self, conn: &mut BufReader<Box<dyn Stream>>, op: Op) -> Result<(), ControlError> {
        let req = Request {
            v: PROTOCOL_VERSION,
            token: self.token.clone(),
            op,
        };
        let bytes = encode(&req)?;
        conn.get_mut()
            .write_all(&bytes)
            .and_then(|_| conn.get_mut().flush())
            .map_err(|e| self.io_err(e))
    }

    fn read_reply(&self, conn: &mut BufReader<Box<dyn Stream>>) -> Result<Reply, ControlError> {
        let mut line = String::new();
        let n = (&mut *conn)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .map_err(|e| self.io_err(e))?;
        if n == 0 {
            return Err(ControlError::Closed);
        }
        match decode_response(&line)?.reply {
            Reply::Error { message } => Err(ControlError::Refused(message)),
            r => Ok(r),
        }
    }

    /// Sends one request and returns its single reply (errors from init become `Refused`).
    pub fn call(&self, op: Op) -> Result<Reply, ControlError> {
        let mut conn = self.connect(Some(self.timeout))?;
        self.send(&mut conn, op)?;
        self.read_reply(&mut conn)
    }

    fn ack(&self, op: Op) -> Result<String, ControlError> {
        match self.call(op)? {
            Reply::Ack { message } => Ok(message),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Services and system facts.
    pub fn status(&self) -> Result<StatusReport, ControlError> {
        match self.call(Op::Status)? {
            Reply::Status(s) => Ok(s),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    /// One JSON-RPC call to the node as its operator (see [`Op::NodeRpc`]): the node's
    /// response object (`result` or `error`).
    pub fn node_rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, ControlError> {
        match self.call(Op::NodeRpc {
            method: method.into(),
            params,
        })? {
            Reply::Rpc { response } => Ok(response),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Starts a service.
    pub fn start(&self, service: &str) -> Result<String, ControlError> {
        self.ack(Op::Start {
            service: service.into(),
        })
    }

    /// Stops a service (it stays stopped).
    pub fn stop(&self, service: &str) -> Result<String, ControlError> {
        self.ack(Op::Stop {
            service: service.into(),
        })
    }

    /// Restarts a service.
    pub fn restart(&self, service: &str) -> Result<String, ControlError> {
        self.ack(Op::Restart {
            service: service.into(),
        })
    }

    /// The support files init collects (`support_info`).
    pub fn support_info(&self) -> Result<Vec<SupportFile>, ControlError> {
        match self.call(Op::SupportInfo)? {
            Reply::Support { files } => Ok(files),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Streams the bundle `bundle` (`size` bytes) to init for installation into the inactive
    /// slot; waits up to `wait` for init's answer after the last byte (verification and the
    /// slot write take a while on slow disks). `reboot_at` (`HH:MM`, UTC) schedules the
    /// reboot into it.
    pub fn upgrade(
        &self,
        bundle: &mut dyn Read,
        size: u64,
        allow_downgrade: bool,
        reboot: bool,
        reboot_at: Option<&str>,
        wait: Duration,
    ) -> Result<String, ControlError> {
        let mut conn = self.connect(Some(wait))?;
        self.send(
            &mut conn,
            Op::Upgrade {
                size,
                allow_downgrade,
                reboot,
                reboot_at: reboot_at.map(str::to_string),
            },
        )?;
        let copied = std::io::copy(&mut bundle.take(size), conn.get_mut());
        // init may refuse early (a bad signature) and close: its answer says why.
        let flushed = copied.and_then(|_| conn.get_mut().flush());
        match (self.read_reply(&mut conn), flushed) {
            (Ok(Reply::Ack { message }), Ok(())) => Ok(message),
            (Ok(other), _) => Err(ControlError::Unexpected(format!("{other:?}"))),
            (Err(e @ ControlError::Refused(_)), _) => Err(e),
            (Err(_), Err(e)) => Err(self.io_err(e)),
            (Err(e), Ok(())) => Err(e),
        }
    }

    /// Sends `signal` to a service's process (its exit is handled as a crash).
    pub fn signal(&self, service: &str, signal: i32) -> Result<String, ControlError> {
        self.ack(Op::Signal {
            service: service.into(),
            signal,
        })
    }

    /// The last `lines` log lines of a service (`init` for init's own log).
    pub fn logs(&self, service: &str, lines: usize) -> Result<Vec<LogLine>, ControlError> {
        match self.call(Op::Logs {
            service: service.into(),
            lines,
            follow: false,
        })? {
            Reply::Logs { lines } => Ok(lines),
            other => Err(ControlError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The last `lines` log lines, then every new line as it arrives: `on_line` is called for
    /// each and returns `false` to stop. Blocks until then or until the connection ends.
    pub fn follow(
        &self,
        service: &str,
        lines: usize,
        mut on_line: impl FnMut(&LogLine) -> bool,
    ) -> Result<(), ControlError> {
        let mut conn = self.connect(None)?;
        self.send(
            &mut conn,
            Op::Logs {
                service: service.into(),
                lines,
                follow: true,
            },
        )?;
        match self.read_reply(&mut conn)? {
            Reply::Logs { lines } => {
                for l in &lines {
                    if !on_line(l) {
                        return Ok(());
                    }
                }
            }
            other => return Err(ControlError::Unexpected(format!("{other:?}"))),
        }
        loop {
            match self.read_reply(&mut conn) {
                Ok(Reply::Line(l)) => {
                    if !on_line(&l) {
                        return Ok(());
                    }
                }
                Ok(other) => return Err(ControlError::Unexpected(format!("{other:?}"))),
                Err(ControlError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks init to reboot.
    pub fn reboot(&self) -> Result<String, ControlError> {
        self.ack(Op::Reboot)
    }

    /// Cancels the reboot an upgrade scheduled.
    pub fn cancel_reboot(&self) -> Result<String, ControlError> {
        self.ack(Op::CancelReboot)
    }

    /// Asks init to power off.
    pub fn poweroff(&self) -> Result<String, ControlError> {
        self.ack(Op::Poweroff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_flat_and_tagged() {
        let r = Request {
            v: 1,
            token: Some("t".into()),
            op: Op::Restart {
                service: "node".into(),
            },
        };
        let line = String::from_utf8(encode(&r).unwrap()).unwrap();
        assert_eq!(
            line,
            "{\"v\":1,\"token\":\"t\",\"op\":\"restart\",\"service\":\"node\"}\n"
        );
        assert_eq!(decode_request(&line).unwrap(), r);
    }

    #[test]
    fn logs_request_defaults() {
        let r = decode_request(r#"{"v":1,"op":"logs","service":"node"}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Logs {
                service: "node".into(),
                lines: DEFAULT_LOG_LINES,
                follow: false
            }
        );
        assert!(r.token.is_none());
        let u = decode_request(r#"{"v":1,"op":"upgrade","size":42}"#).unwrap();
        assert_eq!(
            u.op,
            Op::Upgrade {
                size: 42,
                allow_downgrade: false,
                reboot: false,
                reboot_at: None,
            }
        );
        let u = decode_request(r#"{"v":1,"op":"upgrade","size":42,"reboot_at":"03:30"}"#).unwrap();
        assert!(
            matches!(&u.op, Op::Upgrade { reboot_at: Some(t), .. } if t == "03:30"),
            "{u:?}"
        );
        assert_eq!(
            decode_request(r#"{"v":1,"op":"cancel_reboot"}"#)
                .unwrap()
                .op,
            Op::CancelReboot
        );
        let s = decode_request(r#"{"v":1,"op":"support_info"}"#).unwrap();
        assert_eq!(s.op, Op::SupportInfo);
    }

    #[test]
    fn wrong_version_and_unknown_op_are_errors() {
        let e = decode_request(r#"{"v":2,"op":"status"}"#).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        assert!(decode_request(r#"{"v":1,"op":"format_disk"}"#).is_err());
        assert!(decode_request("not json").is_err());
    }

    #[test]
    fn responses_round_trip() {
        let replies = vec![
            Reply::Status(StatusReport {
                services: vec![ServiceInfo {
                    name: "node".into(),
                    state: ServiceState::Running,
                    pid: Some(42),
                    restarts: 1,
                    uptime_ms: Some(5),
                    last_exit: Some(ExitInfo {
                        code: None,
                        signal: Some(9),
                        at_unix_ms: 7,
                    }),
                    command: vec!["aergo-node".into()],
                    message: None,
                }],
                system: SystemInfo::default(),
                slots: vec![crate::slots::SlotInfo {
                    name: "B".into(),
                    version: "1.1.0".into(),
                    state: crate::slots::SlotState::Trying,
                }],
                last_upgrade: Some("installed 1.1.0 in slot B".into()),
                reboot_at: Some(1_796_526_000),
            }),
            Reply::Support {
                files: vec![SupportFile {
                    name: "versions.txt".into(),
                    text: "os 1\n".into(),
                }],
            },
            Reply::Ack {
                message: "ok".into(),
            },
            Reply::Logs { lines: vec![] },
            Reply::Line(LogLine {
                service: "node".into(),
                seq: 3,
                ts_ms: 1,
                stream: "stdout".into(),
                text: "hi".into(),
            }),
            Reply::Error {
                message: "no".into(),
            },
        ];
        for reply in replies {
            let resp = Response { v: 1, reply };
            let line = String::from_utf8(encode(&resp).unwrap()).unwrap();
            assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
            assert_eq!(decode_response(&line).unwrap(), resp);
        }
        let s = decode_response(
            r#"{"v":1,"kind":"status","services":[{"name":"x","state":"backoff"}]}"#,
        )
        .unwrap();
        match s.reply {
            Reply::Status(st) => assert_eq!(st.services[0].state, ServiceState::Backoff),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches("abc", Some("abc")));
        assert!(!token_matches("abc", Some("abd")));
        assert!(!token_matches("abc", Some("ab")));
        assert!(!token_matches("abc", None));
        assert!(!token_matches("", Some("")));
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("/run/aergo/init.sock").unwrap(),
            Endpoint::Unix("/run/aergo/init.sock".into())
        );
        assert_eq!(
            Endpoint::parse("unix:x.sock").unwrap(),
            Endpoint::Unix("x.sock".into())
        );
        assert_eq!(
            Endpoint::parse("10.0.0.2").unwrap(),
            Endpoint::Tcp("10.0.0.2:7847".into())
        );
        assert_eq!(
            Endpoint::parse("tcp:127.0.0.1:9").unwrap(),
            Endpoint::Tcp("127.0.0.1:9".into())
        );
        assert!(Endpoint::parse(" ").is_err());
    }

    #[test]
    fn client_talks_to_a_fake_server_over_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let req = decode_request(&line).unwrap();
                let mut w = s;
                let reply = match req.op {
                    Op::Status => Reply::Status(StatusReport::default()),
                    Op::Logs { follow: true, .. } => {
                        w.write_all(
                            &encode(&Response {
                                v: 1,
                                reply: Reply::Logs { lines: vec![] },
                            })
                            .unwrap(),
                        )
                        .unwrap();
                        Reply::Line(LogLine {
                            text: "new".into(),
                            ..Default::default()
                        })
                    }
                    _ => Reply::Error {
                        message: "unexpected".into(),
                    },
                };
                w.write_all(&encode(&Response { v: 1, reply }).unwrap())
                    .unwrap();
            }
        });
        let c = Client::new(Endpoint::Unix(path), None);
        assert_eq!(c.status().unwrap(), StatusReport::default());
        let mut got = Vec::new();
        c.follow("node", 10, |l| {
            got.push(l.text.clone());
            true
        })
        .unwrap();
        assert_eq!(got, vec!["new".to_string()]);
        server.join().unwrap();
    }
}
