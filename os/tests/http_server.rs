//! The hardened HTTP server against real slow and greedy clients over TCP: header, idle and
//! body timeouts, the per-address and global connection caps, canonical IPv4-mapped
//! loopback peers, and graceful shutdown.
// Test harness helpers: a failure to set up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aergo_os::http::{serve, ConnInfo, ServerLimits, ServerStats, TimedBody};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Answers `peer=IP len=N` after reading the whole body; 408 when the body times out.
#[derive(Clone)]
struct Echo;

impl tower_service::Service<Request<TimedBody>> for Echo {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<TimedBody>) -> Self::Future {
        Box::pin(async move {
            let info = req.extensions().get::<ConnInfo>().copied();
            let peer = info.map(|i| i.peer.ip().to_string()).unwrap_or_default();
            match req.into_body().collect().await {
                Ok(b) => Ok(Response::new(Full::new(Bytes::from(format!(
                    "peer={peer} len={}",
                    b.to_bytes().len()
                ))))),
                Err(e) => {
                    let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
                    Ok(r)
                }
            }
        })
    }
}

struct Server {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
    _rt: std::thread::JoinHandle<()>,
}

impl Server {
    fn start(bind: &str, limits: ServerLimits) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stats = Arc::new(ServerStats::default());
        let st = stats.clone();
        let bind = bind.to_string();
        let rt = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind(&bind).await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                serve(l, limits, st, Echo, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
            let _ = done_tx.send(());
        });
        let addr = addr_rx.recv().unwrap();
        Server {
            addr,
            stats,
            stop: Some(stop),
            done,
            _rt: rt,
        }
    }

    /// The address to connect to (loopback for a wildcard listener).
    fn target(&self) -> SocketAddr {
        SocketAddr::new("127.0.0.1".parse().unwrap(), self.addr.port())
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 100,
        max_connections_per_ip: 100,
        limit_loopback: false,
        loopback_reserve: 0,
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(30),
        body_min_rate: 64 * 1024,
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Polls `f` until it is true or `secs` pass.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Reads until the server closes the connection; returns what arrived and when it closed.
/// Panics if it is still open after `secs`.
fn read_until_closed(s: &mut TcpStream, secs: u64) -> (String, Instant) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {secs} s; got {:?}",
            String::from_utf8_lossy(&out)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), Instant::now()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), Instant::now()),
        }
    }
}

/// One keep-alive GET on `s`; returns the body of a 200, an error otherwise.
fn get(s: &mut TcpStream) -> std::io::Result<String> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(std::io::Error::other(head.to_string()));
                }
                return Ok(body.to_string());
            }
        }
    }
}

#[test]
fn half_a_header_is_cut_off_after_the_header_timeout() {
    let srv = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            header_timeout: Duration::from_secs(1),
            ..limits()
        },
    );
    let mut s = TcpStream::connect(srv.target()).unwrap();
    let t0 = Instant::now();
    s.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow:")
        .unwrap();
    let (_, closed) = read_until_closed(&mut s, 8);
    let took = closed - t0;
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(wait_for(5, || srv
        .stats
        .header_timeouts
        .load(Ordering::Relaxed)
        == 1));
    // A well-behaved client is still served.
    let mut ok = TcpStream::connect(srv.target()).unwrap();
    assert_eq!(get(&mut ok).unwrap(), "peer=127.0.0.1 len=0");
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let srv = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            idle_timeout: Duration::from_secs(1),
            ..limits()
        },
    );
    let mut s = TcpStream::connect(srv.target()).unwrap();
    // Served once, then silent on a keep-alive connection.
    get(&mut s).unwrap();
    let t0 = Instant::now();
    let (_, closed) = read_until_closed(&mut s, 8);
    assert!(closed - t0 < Duration::from_secs(5));
    assert!(wait_for(5, || srv
        .stats
        .idle_timeouts
        .load(Ordering::Relaxed)
        == 1));
}

#[test]
fn a_trickled_body_is_cut_off() {
    let srv = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            body_timeout: Duration::from_secs(1),
            body_min_rate: 1 << 20,
            ..limits()
        },
    );
    let mut s = TcpStream::connect(srv.target()).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let t0 = Instant::now();
    // The client keeps trickling a byte every 50 ms until the server hangs up.
    let mut w = s.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if w.write_all(b"x").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let (resp, closed) = read_until_closed(&mut s, 10);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(closed - t0 < Duration::from_secs(6), "{:?}", closed - t0);
    assert!(trickler.join().unwrap(), "the server stopped the trickle");
    assert_eq!(srv.stats.body_timeouts.load(Ordering::Relaxed), 1);
}

#[test]
fn a_body_at_a_reasonable_rate_is_not_cut_off() {
    // 1 s base plus 1 s per 16 KiB: a 64 KiB body sent in 4 KiB pieces over ~1.6 s passes.
    let srv = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            body_timeout: Duration::from_secs(1),
            body_min_rate: 16 * 1024,
            ..limits()
        },
    );
    let mut s = TcpStream::connect(srv.target()).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 65536\r\n\r\n")
        .unwrap();
    for _ in 0..16 {
        s.write_all(&[b'y'; 4096]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut buf = vec![0u8; 4096];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = s.read(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("len=65536"), "{resp}");
}

#[test]
fn per_address_cap_refuses_the_next_connection() {
    let srv = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            max_connections_per_ip: 2,
            limit_loopback: true,
            ..limits()
        },
    );
    let mut a = TcpStream::connect(srv.target()).unwrap();
    let mut b = TcpStream::connect(srv.target()).unwrap();
    get(&mut a).unwrap();
    get(&mut b).unwrap();
    let mut c = TcpStream::connect(srv.target()).unwrap();
    let (resp, _) = read_until_closed(&mut c, 5);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 503"),
        "{resp}"
    );
    assert_eq!(srv.stats.refused_per_ip.load(Ordering::Relaxed), 1);
    // The first two are still served; closing one frees a slot.
    get(&mut a).unwrap();
    drop(b);
    assert!(wait_for(5, || {
        TcpStream::connect(srv.target())
            .and_then(|mut d| get(&mut d))
            .is_ok()
    }));
}

#[test]
fn loopback_is_exempt_from_the_per_address_cap_by_default() {
    // Bound on the IPv6 wildcard: 127.0.0.1 arrives as ::ffff:127.0.0.1 and must still be
    // seen (and exempted) as loopback.
    let srv = Server::start(
        "[::]:0",
        ServerLimits {
            max_connections_per_ip: 1,
            ..limits()
        },
    );
    let mut conns: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(srv.target()).unwrap())
        .collect();
    for c in &mut conns {
        assert_eq!(get(c).unwrap(), "peer=127.0.0.1 len=0");
    }
    assert_eq!(srv.stats.refused_per_ip.load(Ordering::Relaxed), 0);
}

#[test]
fn global_cap_holds() {
    let srv = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            max_connections: 3,
            ..limits()
        },
    );
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(srv.target()).unwrap())
        .collect();
    for c in &mut held {
        get(c).unwrap();
    }
    for _ in 0..5 {
        let mut extra = TcpStream::connect(srv.target()).unwrap();
        let (resp, _) = read_until_closed(&mut extra, 5);
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 503"),
            "{resp}"
        );
    }
    assert_eq!(srv.stats.refused_global.load(Ordering::Relaxed), 5);
    assert_eq!(srv.stats.open.load(Ordering::Relaxed), 3);
    let text = srv.stats.prometheus("t");
    assert!(
        text.contains("t_connections_refused_total{cap=\"global\"} 5"),
        "{text}"
    );
}

#[test]
fn loopback_has_a_reserve_beyond_the_global_cap() {
    // Remote clients could fill the cap; loopback (init's health check, the dashboard) still
    // gets `loopback_reserve` more. Only loopback clients exist here, so the cap of 3 plus a
    // reserve of 2 admits five and refuses the sixth.
    let srv = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            max_connections: 3,
            loopback_reserve: 2,
            ..limits()
        },
    );
    let mut held: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(srv.target()).unwrap())
        .collect();
    for c in &mut held {
        get(c).unwrap();
    }
    let mut extra = TcpStream::connect(srv.target()).unwrap();
    let (resp, _) = read_until_closed(&mut extra, 5);
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 503"),
        "{resp}"
    );
    assert_eq!(srv.stats.refused_global.load(Ordering::Relaxed), 1);
    // With loopback limited like any client, there is no reserve.
    let strict = Server::start(
        "127.0.0.1:0",
        ServerLimits {
            max_connections: 3,
            loopback_reserve: 2,
            limit_loopback: true,
            ..limits()
        },
    );
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(strict.target()).unwrap())
        .collect();
    for c in &mut held {
        get(c).unwrap();
    }
    let mut extra = TcpStream::connect(strict.target()).unwrap();
    let _ = read_until_closed(&mut extra, 5);
    assert_eq!(strict.stats.refused_global.load(Ordering::Relaxed), 1);
}

#[test]
fn graceful_shutdown_closes_idle_connections_and_returns() {
    let mut srv = Server::start("127.0.0.1:0", limits());
    let mut s = TcpStream::connect(srv.target()).unwrap();
    get(&mut s).unwrap();
    let _ = srv.stop.take().unwrap().send(());
    let (_, _) = read_until_closed(&mut s, 5);
    srv.done
        .recv_timeout(Duration::from_secs(5))
        .expect("serve returned after shutdown");
    assert!(TcpStream::connect(srv.target()).is_err(), "listener closed");
}

#[test]
fn shutdown_closes_half_headers_at_once_and_finishes_requests_in_flight() {
    let mut srv = Server::start("127.0.0.1:0", limits());
    // Headers still arriving: nothing in flight, closed at once (not after the 10 s header
    // timeout).
    let mut slow = TcpStream::connect(srv.target()).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-")
        .unwrap();
    // A request in flight: its body is half sent.
    let mut busy = TcpStream::connect(srv.target()).unwrap();
    busy.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n12345")
        .unwrap();
    // Both connections are open on the server, and the request is being served, before the
    // signal.
    assert!(wait_for(5, || srv.stats.open.load(Ordering::Relaxed) == 2
        && srv.stats.in_flight.load(Ordering::Relaxed) == 1));
    let t0 = Instant::now();
    let _ = srv.stop.take().unwrap().send(());
    let (_, closed) = read_until_closed(&mut slow, 5);
    assert!(closed - t0 < Duration::from_secs(3), "{:?}", closed - t0);
    // The request in flight is still served, then its connection closes and serve returns.
    busy.write_all(b"67890").unwrap();
    let (resp, _) = read_until_closed(&mut busy, 5);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("len=10"), "{resp}");
    srv.done
        .recv_timeout(Duration::from_secs(5))
        .expect("serve returned after shutdown");
}
