//! AergoFS's network edge against hostile clients over real sockets: browser-style
//! cross-site writes (foreign Origin, DNS-rebinding Host) are refused while reads and plain
//! clients are served, half a header is cut off after the header timeout, the per-address
//! cap refuses the next connection, and the counters show on `/metrics`.

mod fs_common;

use anyhow::{ensure, Result};
use fs_common::{request, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The value of the sample `name` (with its labels) in Prometheus text, 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Reads until the server closes; fails if it is still open after `secs`.
fn read_to_close(s: &mut TcpStream, secs: u64) -> Result<(Vec<u8>, Instant)> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "still open after {secs} s; got {:?}",
            String::from_utf8_lossy(&out)
        );
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok((out, Instant::now())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Ok((out, Instant::now())),
        }
    }
}

fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(raw)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A request with exactly the given `Host`.
fn with_host(addr: &str, method: &str, path: &str, host: &str, body: &[u8]) -> Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    s.write_all(body)?;
    Ok(status_of(&read_to_close(&mut s, 10)?.0))
}

#[test]
fn cross_site_writes_are_refused_reads_and_plain_clients_served() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(
        dir.path(),
        &["--allowed-origin", "https://app.example"],
        &[],
    )?;
    let fid = srv.put(b"hello", &[])?;
    let path = format!("/{fid}");
    for (method, p) in [
        ("POST", "/"),
        ("PUT", path.as_str()),
        ("DELETE", path.as_str()),
    ] {
        let r = srv.req(method, p, &[("Origin", "http://evil.example")], b"x")?;
        ensure!(
            r.status == 403,
            "{method} with a foreign Origin: {}",
            r.status
        );
        ensure!(
            r.json()?["error"]
                .as_str()
                .unwrap_or("")
                .contains("evil.example"),
            "{:?}",
            String::from_utf8_lossy(&r.body)
        );
        let status = with_host(&srv.addr, method, p, "evil.example:80", b"x")?;
        ensure!(status == 403, "{method} with a foreign Host: {status}");
    }
    // Nothing was changed by the refused writes.
    ensure!(srv.get(&fid)?.body == b"hello");
    // Reads are not cross-site checked; the allowed origin may write.
    let r = srv.req("GET", &path, &[("Origin", "http://evil.example")], b"")?;
    ensure!(r.status == 200, "{}", r.status);
    let r = srv.req("POST", "/", &[("Origin", "https://app.example")], b"ok")?;
    ensure!(r.status == 201, "{}", r.status);
    let port = srv.addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
    ensure!(with_host(&srv.addr, "POST", "/", &format!("localhost:{port}"), b"y")? == 201);
    Ok(())
}

#[test]
fn slow_headers_and_the_per_address_cap() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(&dir.path().join("a"), &["--header-timeout-secs", "1"], &[])?;
    let mut s = TcpStream::connect(&srv.addr)?;
    let t0 = Instant::now();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-")?;
    let (_, closed) = read_to_close(&mut s, 8)?;
    ensure!(
        closed - t0 >= Duration::from_millis(900),
        "{:?}",
        closed - t0
    );
    let metrics = fetch_metrics(&srv.addr)?;
    ensure!(
        sample(
            &metrics,
            "aergofs_http_connections_timed_out_total{timeout=\"header\"}"
        ) >= 1.0,
        "{metrics}"
    );
    ensure!(
        metrics.contains("aergofs_uploads_total"),
        "the API's own metrics stay"
    );

    // Per-address cap with loopback not exempt: three served, the fourth refused at once
    // (an accepted one would wait for the 10 s header timeout).
    let srv = Server::start(
        &dir.path().join("b"),
        &["--max-connections-per-ip", "3", "--limit-loopback"],
        &[],
    )?;
    let addr = srv.addr.as_str();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr)?;
        c.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf)?;
        ensure!(status_of(&buf[..n]) == 200);
        held.push(c);
    }
    let mut extra = TcpStream::connect(addr)?;
    let t0 = Instant::now();
    let (raw, _) = read_to_close(&mut extra, 5)?;
    ensure!(
        raw.is_empty() || status_of(&raw) == 503,
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    ensure!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    drop(held);
    let metrics = fetch_metrics(addr)?;
    ensure!(
        sample(
            &metrics,
            "aergofs_http_connections_refused_total{cap=\"per_ip\"}"
        ) >= 1.0,
        "{metrics}"
    );
    Ok(())
}

/// `GET /metrics`, retried until served (a poll may be refused while connections close).
fn fetch_metrics(addr: &str) -> Result<String> {
    aergo_e2e::poll("metrics", Duration::from_secs(10), || {
        Ok(request(addr, "GET", "/metrics", &[], b"")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| String::from_utf8_lossy(&r.body).into_owned()))
    })
}
