//! Shared helpers for the AergoFS end-to-end tests: start `aergofs serve` on a free port and
//! talk HTTP/1.1 to it with a minimal blocking client (no extra dependencies).

#![allow(dead_code)]

use aergo_e2e::{bin, free_port, poll, KillOnDrop};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of the server's stderr kept for error messages (the last ones).
const LOG_KEEP: usize = 64 << 10;

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // The server may answer (e.g. 413) and close before the whole body is sent: keep what
    // it said rather than failing on the broken pipe.
    let wrote = s.write_all(body);
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    if raw.is_empty() {
        wrote?;
        read?;
    }
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head: bool) -> Result<Resp> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let text = std::str::from_utf8(&raw[..end])?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().context("empty response")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .context("no status")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked && !head {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("bad chunk")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl])?.trim(), 16)?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = out;
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A running `aergofs serve`.
pub struct Server {
    pub proc: KillOnDrop,
    pub addr: String,
    /// The last [`LOG_KEEP`] bytes of the server's stderr (also copied to this process's
    /// stderr as they arrive).
    pub log: Arc<Mutex<Vec<u8>>>,
}

/// Copies the child's stderr to ours and keeps its tail in `log`, until the pipe closes.
fn tee_stderr(mut pipe: ChildStderr, log: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let _ = std::io::stderr().write_all(&buf[..n]);
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            l.extend_from_slice(&buf[..n]);
            let excess = l.len().saturating_sub(LOG_KEEP);
            l.drain(..excess);
        }
    })
}

fn log_text(log: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

impl Server {
    /// Starts `aergofs serve --dir DIR --addr 127.0.0.1:PORT EXTRA…` and waits for /status.
    pub fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Server> {
        Self::start_on("127.0.0.1", dir, extra, env)
    }

    /// Same, binding `ip`.
    pub fn start_on(ip: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Server> {
        let port = free_port()?;
        let listen = format!("{ip}:{port}");
        let mut cmd = Command::new(bin("aergofs")?);
        cmd.args(["serve", "--dir"])
            .arg(dir)
            .args(["--addr", &listen])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = KillOnDrop::spawn(&mut cmd)?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let tee = proc.0.stderr.take().map(|p| tee_stderr(p, log.clone()));
        let addr = format!("127.0.0.1:{port}");
        // Ok(Some(None)): serving; Ok(Some(Some(status))): the server exited — stop at once
        // (an error from the closure would only make `poll` retry until its deadline).
        let waited = poll("aergofs /status", Duration::from_secs(60), || {
            if let Some(st) = proc.0.try_wait()? {
                return Ok(Some(Some(st)));
            }
            Ok(request(&addr, "GET", "/status", &[], b"")
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| None))
        });
        match waited {
            Ok(None) => Ok(Server { proc, addr, log }),
            Ok(Some(st)) => {
                // The pipe closes with the process: wait (briefly) for its last bytes.
                if let Some(t) = tee {
                    let until = Instant::now() + Duration::from_secs(5);
                    while !t.is_finished() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                bail!(
                    "aergofs exited during start-up ({st}); its stderr:\n{}",
                    log_text(&log)
                )
            }
            Err(e) => Err(e.context(format!(
                "aergofs did not start; its stderr so far:\n{}",
                log_text(&log)
            ))),
        }
    }

    pub fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Resp> {
        request(&self.addr, method, path, headers, body)
    }

    /// Uploads through `POST /` and returns the fid.
    pub fn put(&self, body: &[u8], headers: &[(&str, &str)]) -> Result<String> {
        let r = self.req("POST", "/", headers, body)?;
        if r.status != 201 {
            bail!("upload: {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
        Ok(r.json()?["fid"].as_str().context("no fid")?.to_string())
    }

    pub fn get(&self, fid: &str) -> Result<Resp> {
        self.req("GET", &format!("/{fid}"), &[], b"")
    }

    pub fn status(&self) -> Result<serde_json::Value> {
        self.req("GET", "/status", &[], b"")?.json()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A small deterministic generator for sizes and choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// A number in `0..n` as a usize (a size or an index).
    pub fn below_usize(&mut self, n: usize) -> usize {
        // Below n, which is a usize: the conversion cannot fail.
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }
}
