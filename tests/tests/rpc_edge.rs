//! The node's JSON-RPC network edge against hostile clients over real sockets: slow headers
//! and bodies, the per-address connection cap, a declared body over the limit (413 before
//! the body), browser-style cross-site requests (Origin, Content-Type, Host, WebSocket
//! upgrades), notifications, WebSocket caps and rate limits, and admin calls from
//! 127.0.0.1 to a node bound to `[::]` (IPv4-mapped loopback).

use aergo_e2e::{bin, free_port, poll, KillOnDrop};
use aergo_rpc::types::codes;
use anyhow::{bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The value of the sample `name` (with its labels) in Prometheus text, 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

// Test helper: a runtime that cannot be built means the test cannot run at all.
#[allow(clippy::expect_used)]
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

struct Node {
    _proc: KillOnDrop,
    /// 127.0.0.1:port (also for a node bound to `[::]`).
    addr: String,
}

/// Starts a dev node bound to `bind:port` with `extra` appended to its aergo.toml.
fn start(dir: &Path, bind: &str, extra: &str) -> Result<Node> {
    let port = free_port()?;
    std::fs::create_dir_all(dir)?;
    let listen = if bind.contains(':') {
        format!("[{bind}]:{port}")
    } else {
        format!("{bind}:{port}")
    };
    let data = dir.join("data");
    let cfg = format!(
        "[node]\ndev = true\ndata_dir = \"{}\"\nrpc_addr = \"{listen}\"\n{extra}",
        data.display()
    );
    let cfg_path = dir.join("aergo.toml");
    std::fs::write(&cfg_path, cfg)?;
    let mut cmd = Command::new(bin("aergo-node")?);
    cmd.arg("--config").arg(&cfg_path);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::fs::File::create(
            dir.join("node.log"),
        )?));
    let proc = KillOnDrop::spawn(&mut cmd)?;
    let addr = format!("127.0.0.1:{port}");
    poll("node health", Duration::from_secs(30), || {
        Ok(exchange(
            &addr,
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .ok()
        .filter(|r| r.status == 200)
        .map(|_| ()))
    })?;
    Ok(Node { _proc: proc, addr })
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Reads until the server closes; fails if it is still open after `secs`.
fn read_to_close(s: &mut TcpStream, secs: u64) -> Result<(Vec<u8>, Instant)> {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "still open after {secs} s; got {:?}",
                String::from_utf8_lossy(&out)
            );
        }
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

/// Sends `req` (which should say `Connection: close`) and reads the reply.
fn exchange(addr: &str, req: &[u8]) -> Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(req)?;
    Ok(parse(&read_to_close(&mut s, 10)?.0))
}

/// `POST /` with `headers` (each ending in `\r\n`) and `body`.
fn post(addr: &str, headers: &str, body: &str) -> Result<Reply> {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, req.as_bytes())
}

const JSON: &str = "Content-Type: application/json\r\n";

fn error_of(r: &Reply) -> Result<(i64, String)> {
    let v: Value = serde_json::from_str(&r.body).with_context(|| format!("body {:?}", r.body))?;
    let code = v["error"]["code"].as_i64().context("error code")?;
    Ok((
        code,
        v["error"]["data"]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    ))
}

#[test]
fn slow_clients_early_413_and_the_websocket_per_address_cap() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = start(
        tmp.path(),
        "127.0.0.1",
        "rpc_ws_connections_per_ip = 1\n[node.rpc_http]\nheader_timeout_secs = 1\nbody_timeout_secs = 1\nbody_min_bytes_per_sec = 1048576\nlimit_loopback = true\n",
    )?;
    let addr = node.addr.as_str();

    // Half a header, then nothing: cut off after the header timeout.
    let mut s = TcpStream::connect(addr)?;
    let t0 = Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")?;
    let (_, closed) = read_to_close(&mut s, 8)?;
    let took = closed - t0;
    ensure!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );

    // A body trickled a byte at a time: cut off, answered 408 with a JSON-RPC error.
    let mut s = TcpStream::connect(addr)?;
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: 10000\r\n\r\n")
            .as_bytes(),
    )?;
    let t0 = Instant::now();
    let mut w = s.try_clone()?;
    let trickler = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if w.write_all(b" ").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let (raw, closed) = read_to_close(&mut s, 10)?;
    let r = parse(&raw);
    ensure!(r.status == 408, "{}", r.head);
    ensure!(
        error_of(&r)? == (codes::INVALID_REQUEST, "body_timeout".into()),
        "{}",
        r.body
    );
    ensure!(closed - t0 < Duration::from_secs(6));
    ensure!(trickler.join().unwrap_or(false), "the trickle was stopped");

    // A declared body over the limit: 413 at once, before any body byte is sent.
    let mut s = TcpStream::connect(addr)?;
    let t0 = Instant::now();
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: 5000000\r\n\r\n")
            .as_bytes(),
    )?;
    let (raw, _) = read_to_close(&mut s, 10)?;
    let r = parse(&raw);
    ensure!(r.status == 413, "{}", r.head);
    ensure!(
        t0.elapsed() < Duration::from_millis(900),
        "413 took {:?} (before the 1 s body timeout)",
        t0.elapsed()
    );
    ensure!(
        error_of(&r)? == (codes::INVALID_REQUEST, "body_too_large".into()),
        "{}",
        r.body
    );

    let metrics = scrape_metrics(addr, "metrics")?;
    ensure!(
        sample(
            &metrics,
            "aergo_rpc_connections_timed_out_total{timeout=\"header\"}"
        ) >= 1.0,
        "{metrics}"
    );
    ensure!(
        sample(
            &metrics,
            "aergo_rpc_connections_timed_out_total{timeout=\"body\"}"
        ) >= 1.0,
        "{metrics}"
    );

    // One WebSocket connection per address here (loopback not exempt): a second one is
    // answered 503, and the slot is free again once the first closes.
    let url = format!("ws://{addr}/ws");
    rt().block_on(async {
        let (ws1, _) = tokio_tungstenite::connect_async(&url).await?;
        match tokio_tungstenite::connect_async(&url).await {
            Err(WsError::Http(resp)) => ensure!(resp.status() == 503, "{:?}", resp.status()),
            Err(e) => bail!("unexpected error {e}"),
            Ok(_) => bail!("a second WebSocket connection from one address was accepted"),
        }
        drop(ws1);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio_tungstenite::connect_async(&url).await {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => bail!("the freed WebSocket slot was not reused: {e}"),
            }
        }
    })?;
    Ok(())
}

#[test]
fn browser_requests_notifications_and_the_per_address_cap() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = start(
        tmp.path(),
        "127.0.0.1",
        "[node.rpc_http]\nallowed_origins = [\"https://wallet.example\"]\nmax_connections_per_ip = 6\nlimit_loopback = true\n",
    )?;
    let addr = node.addr.as_str();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"chain_info"}"#;
    let admin =
        r#"{"jsonrpc":"2.0","id":1,"method":"admin_set_empty_blocks","params":{"enabled":false}}"#;

    ensure!(post(addr, JSON, call)?.status == 200);
    // A foreign Origin: 403 with a JSON-RPC error, for public and admin methods alike.
    for body in [call, admin] {
        let r = post(
            addr,
            &format!("Origin: http://evil.example\r\n{JSON}"),
            body,
        )?;
        ensure!(r.status == 403, "{}", r.head);
        ensure!(
            error_of(&r)? == (codes::INVALID_REQUEST, "cross_site".into()),
            "{}",
            r.body
        );
    }
    // The allowed origin is served.
    let r = post(
        addr,
        &format!("Origin: https://wallet.example\r\n{JSON}"),
        call,
    )?;
    ensure!(r.status == 200, "{}", r.head);
    // A "simple" cross-site POST (text/plain, or no type): 415.
    for ct in [
        "Content-Type: text/plain\r\n",
        "",
        "Content-Type: application/x-www-form-urlencoded\r\n",
    ] {
        let r = post(addr, ct, admin)?;
        ensure!(r.status == 415, "{ct:?}: {}", r.head);
        ensure!(
            error_of(&r)? == (codes::INVALID_REQUEST, "content_type".into()),
            "{}",
            r.body
        );
    }
    ensure!(
        post(
            addr,
            "Content-Type: application/json; charset=utf-8\r\n",
            call
        )?
        .status
            == 200
    );
    // DNS rebinding: a foreign Host on a loopback listener is refused.
    let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
    for host in [format!("evil.example:{port}"), "evil.example".into()] {
        let req = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\n{JSON}Content-Length: {}\r\nConnection: close\r\n\r\n{call}",
            call.len()
        );
        let r = exchange(addr, req.as_bytes())?;
        ensure!(r.status == 403, "{host}: {}", r.head);
    }
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("127.0.0.1:{port}"),
        // A forwarded port (ssh -L 9000:127.0.0.1:PORT) keeps a loopback name.
        "localhost:9000".to_string(),
    ] {
        let req = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\n{JSON}Content-Length: {}\r\nConnection: close\r\n\r\n{call}",
            call.len()
        );
        ensure!(exchange(addr, req.as_bytes())?.status == 200, "{host}");
    }

    // WebSocket upgrades: a foreign Origin is refused, none is served.
    let rt = rt();
    rt.block_on(async {
        let mut req = format!("ws://{addr}/ws").into_client_request()?;
        req.headers_mut()
            .insert("Origin", "http://evil.example".parse()?);
        match tokio_tungstenite::connect_async(req).await {
            Err(WsError::Http(resp)) => ensure!(resp.status() == 403, "{:?}", resp.status()),
            Err(e) => bail!("unexpected error {e}"),
            Ok(_) => bail!("a WebSocket upgrade with a foreign Origin was accepted"),
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
        ws.send(Message::Text(call.into())).await?;
        let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .context("closed")??;
        ensure!(reply.to_text()?.contains("\"result\""), "{reply}");
        Ok(())
    })?;

    // Notifications (no id): executed, never answered.
    let r = post(addr, JSON, r#"{"jsonrpc":"2.0","method":"chain_info"}"#)?;
    ensure!(
        r.status == 204 && r.body.is_empty(),
        "{} {:?}",
        r.head,
        r.body
    );
    let r = post(
        addr,
        JSON,
        r#"[{"jsonrpc":"2.0","method":"chain_info"},{"jsonrpc":"2.0","id":7,"method":"peers"},{"jsonrpc":"2.0","method":"nope"}]"#,
    )?;
    let v: Value = serde_json::from_str(&r.body)?;
    ensure!(
        v.as_array().map(Vec::len) == Some(1) && v[0]["id"] == json!(7),
        "{v}"
    );
    let r = post(
        addr,
        JSON,
        r#"[{"jsonrpc":"2.0","method":"chain_info"},{"jsonrpc":"2.0","method":"peers"}]"#,
    )?;
    ensure!(
        r.status == 204 && r.body.is_empty(),
        "{} {:?}",
        r.head,
        r.body
    );
    // A notification is executed: the admin switch flips without a reply.
    let r = post(
        addr,
        JSON,
        r#"{"jsonrpc":"2.0","method":"admin_set_empty_blocks","params":{"enabled":false}}"#,
    )?;
    ensure!(r.status == 204, "{}", r.head);
    let r = post(addr, JSON, admin)?;
    ensure!(r.body.contains("\"result\""), "{}", r.body);

    // Per-address cap (loopback not exempt here): six served, the seventh refused at once.
    // Earlier connections (the WebSocket above) may take a moment to close on the server: a
    // refused one is retried until six are held.
    let keep_alive = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < 6 {
        ensure!(Instant::now() < deadline, "could not hold six connections");
        let mut c = TcpStream::connect(addr)?;
        c.write_all(keep_alive.as_bytes())?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap_or(0);
        if buf[..n].starts_with(b"HTTP/1.1 200") {
            held.push(c);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut extra = TcpStream::connect(addr)?;
    let t0 = Instant::now();
    let (raw, _) = read_to_close(&mut extra, 5)?;
    let r = parse(&raw);
    ensure!(raw.is_empty() || r.status == 503, "{}", r.head);
    // At once: an accepted connection would wait for the 10 s header timeout.
    ensure!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    drop(held);
    let metrics = scrape_metrics(addr, "metrics after the cap")?;
    ensure!(
        sample(
            &metrics,
            "aergo_rpc_connections_refused_total{cap=\"per_ip\"}"
        ) >= 1.0,
        "{metrics}"
    );
    Ok(())
}

/// Sends `msg` and returns the next reply (skipping subscription notifications).
async fn ws_call<S>(ws: &mut S, msg: Value) -> Result<Value>
where
    S: futures_util::Sink<Message, Error = WsError>
        + futures_util::Stream<Item = Result<Message, WsError>>
        + Unpin,
{
    ws.send(Message::Text(msg.to_string())).await?;
    ws_reply(ws).await
}

async fn ws_reply<S>(ws: &mut S) -> Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .context("WebSocket closed")??;
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t)?;
        if v["method"] != json!("subscription") {
            return Ok(v);
        }
    }
}

#[test]
fn websocket_connection_and_subscription_caps_and_rate_limit() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = start(
        tmp.path(),
        "127.0.0.1",
        "rpc_rate_limit = 10\nrpc_ws_connections = 2\nrpc_ws_subscriptions = 3\n[node.rpc_http]\nidle_timeout_secs = 1\n",
    )?;
    let url = format!("ws://{}/ws", node.addr);
    rt().block_on(async {
        let (mut ws1, _) = tokio_tungstenite::connect_async(&url).await?;
        for i in 0..3 {
            let r = ws_call(
                &mut ws1,
                json!({"jsonrpc": "2.0", "id": i, "method": "subscribe", "params": {"topic": "new_blocks"}}),
            )
            .await?;
            ensure!(r["result"].is_u64(), "{r}");
        }
        let r = ws_call(
            &mut ws1,
            json!({"jsonrpc": "2.0", "id": 9, "method": "subscribe", "params": {"topic": "pending_txs"}}),
        )
        .await?;
        ensure!(r["error"]["code"] == json!(codes::RATE_LIMITED), "{r}");
        ensure!(r["error"]["data"]["reason"] == json!("subscriptions"), "{r}");

        // Two WebSocket connections at most; a third is answered 503.
        let (mut ws2, _) = tokio_tungstenite::connect_async(&url).await?;
        // An upgraded connection is not an idle HTTP connection: silent for longer than the
        // 1 s idle timeout, it still answers.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let r = ws_call(
            &mut ws2,
            json!({"jsonrpc": "2.0", "id": 1, "method": "chain_info"}),
        )
        .await?;
        ensure!(r["result"]["height"].is_u64(), "{r}");
        match tokio_tungstenite::connect_async(&url).await {
            Err(WsError::Http(resp)) => ensure!(resp.status() == 503, "{:?}", resp.status()),
            Err(e) => bail!("unexpected error {e}"),
            Ok(_) => bail!("a third WebSocket connection was accepted"),
        }
        drop(ws2);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio_tungstenite::connect_async(&url).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => bail!("the freed WebSocket slot was not reused: {e}"),
            }
        }

        // Messages count against the per-address rate limit (10/s, burst 20).
        for i in 0..60 {
            ws1.send(Message::Text(
                json!({"jsonrpc": "2.0", "id": 100 + i, "method": "unsubscribe", "params": {"subscription": 999}})
                    .to_string(),
            ))
            .await?;
        }
        let mut limited = 0;
        for _ in 0..60 {
            let r = ws_reply(&mut ws1).await?;
            if r["error"]["code"] == json!(codes::RATE_LIMITED) {
                limited += 1;
            }
        }
        ensure!(limited >= 20, "only {limited} of 60 messages were rate limited");
        Ok(())
    })
}

#[test]
fn admin_calls_from_ipv4_mapped_loopback_on_a_dual_stack_listener() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = start(tmp.path(), "::", "")?;
    let admin =
        r#"{"jsonrpc":"2.0","id":1,"method":"admin_set_empty_blocks","params":{"enabled":false}}"#;
    let r = post(&node.addr, JSON, admin)?;
    ensure!(r.status == 200, "{}", r.head);
    let v: Value = serde_json::from_str(&r.body)?;
    ensure!(
        v["result"] == json!(false),
        "127.0.0.1 via [::] was refused: {v}"
    );
    Ok(())
}

/// `GET /metrics` once the server answers it (polled with a deadline).
fn scrape_metrics(addr: &str, what: &str) -> Result<String> {
    poll(what, Duration::from_secs(10), || {
        Ok(exchange(
            addr,
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.body))
    })
}
