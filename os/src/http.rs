//! The hardened HTTP/1 server shared by the node's JSON-RPC and AergoFS (feature `http`).
//!
//! [`serve`] runs an accept loop over a tokio `TcpListener` and serves each connection with
//! hyper's HTTP/1 connection (upgrades kept, so WebSockets work). What a hostile client finds:
//! - a global connection cap and a per-address cap (an IPv6 client counts per /64; loopback
//!   is exempt from the latter and has [`ServerLimits::loopback_reserve`] slots beyond the
//!   former, unless [`ServerLimits::limit_loopback`]); a connection over a cap gets a
//!   `503` written without waiting and is closed, and is counted in [`ServerStats`]. The
//!   connection's slot is held by its socket, so an upgraded WebSocket keeps counting;
//! - the request headers must arrive within [`ServerLimits::header_timeout`] (hyper's
//!   `header_read_timeout`, restarted for each keep-alive request);
//! - a connection that neither reads nor writes a byte for [`ServerLimits::idle_timeout`]
//!   is closed (a watchdog on the socket's last activity, until it is upgraded);
//! - a request body must arrive within [`ServerLimits::body_timeout`] plus one second per
//!   [`ServerLimits::body_min_rate`] bytes received ([`TimedBody`]), so a trickle is cut off
//!   while a large upload at a reasonable rate is not;
//! - graceful shutdown: the listener closes, connections with nothing in flight (idle, or
//!   headers still arriving) close at once, the others finish their request (response body
//!   included) and close; after [`ServerLimits::shutdown_grace`] the rest are dropped.
//!
//! Peer addresses are canonical (`::ffff:127.0.0.1` is `127.0.0.1`) everywhere: in the caps
//! and in the [`ConnInfo`] each request carries as an extension.
//!
//! [`check_origin_host`] is the cross-site rule both servers apply: a request whose
//! `Origin` is not on the allow-list is refused, and on a loopback listener the `Host` must
//! name loopback (against DNS rebinding).

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// A boxed error, as hyper and tower use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The limits of one server (from [`crate::config::HttpServerConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one address (IPv6: one /64).
    pub max_connections_per_ip: usize,
    /// Apply the per-address cap to loopback clients too, and give them no reserve.
    pub limit_loopback: bool,
    /// Connections beyond `max_connections` kept for loopback clients (unless
    /// `limit_loopback`): when remote clients fill the cap, init's health check and the
    /// local dashboard still get through.
    pub loopback_reserve: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time a connection may go without reading or writing a byte.
    pub idle_timeout: Duration,
    /// Base time for a request body.
    pub body_timeout: Duration,
    /// Bytes per second that earn a body one more second.
    pub body_min_rate: u64,
    /// How long a graceful shutdown waits for connections to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::from(&crate::config::HttpServerConfig::default())
    }
}

/// Default [`ServerLimits::loopback_reserve`].
pub const LOOPBACK_RESERVE: usize = 16;

impl From<&crate::config::HttpServerConfig> for ServerLimits {
    fn from(c: &crate::config::HttpServerConfig) -> Self {
        Self {
            max_connections: c.max_connections.max(1),
            max_connections_per_ip: c.max_connections_per_ip.max(1),
            limit_loopback: c.limit_loopback,
            loopback_reserve: LOOPBACK_RESERVE,
            header_timeout: Duration::from_secs(c.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(c.idle_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(c.body_timeout_secs.max(1)),
            body_min_rate: c.body_min_bytes_per_sec.max(1),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Counters of one server, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Requests being served now (until their response body is sent).
    pub in_flight: AtomicU64,
    /// Connections closed at once because the global cap was reached.
    pub refused_global: AtomicU64,
    /// Connections closed at once because their address reached its cap.
    pub refused_per_ip: AtomicU64,
    /// Connections closed because the request headers did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Connections closed because they made no progress for the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Request bodies cut off because they arrived too slowly.
    pub body_timeouts: AtomicU64,
    /// Failed `accept` calls (e.g. out of descriptors).
    pub accept_errors: AtomicU64,
}

impl ServerStats {
    /// Prometheus text for these counters, metric names starting with `prefix`
    /// (e.g. `aergo_rpc`).
    pub fn prometheus(&self, prefix: &str) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP {p}_connections_accepted_total Connections accepted.\n# TYPE {p}_connections_accepted_total counter\n{p}_connections_accepted_total {}\n\
# HELP {p}_connections_open Connections open now.\n# TYPE {p}_connections_open gauge\n{p}_connections_open {}\n\
# HELP {p}_requests_in_flight Requests being served now.\n# TYPE {p}_requests_in_flight gauge\n{p}_requests_in_flight {}\n\
# HELP {p}_connections_refused_total Connections closed at once over a cap.\n# TYPE {p}_connections_refused_total counter\n{p}_connections_refused_total{{cap=\"global\"}} {}\n{p}_connections_refused_total{{cap=\"per_ip\"}} {}\n\
# HELP {p}_connections_timed_out_total Connections closed by a timeout.\n# TYPE {p}_connections_timed_out_total counter\n{p}_connections_timed_out_total{{timeout=\"header\"}} {}\n{p}_connections_timed_out_total{{timeout=\"idle\"}} {}\n{p}_connections_timed_out_total{{timeout=\"body\"}} {}\n\
# HELP {p}_accept_errors_total Failed accept calls.\n# TYPE {p}_accept_errors_total counter\n{p}_accept_errors_total {}\n",
            g(&self.accepted),
            g(&self.open),
            g(&self.in_flight),
            g(&self.refused_global),
            g(&self.refused_per_ip),
            g(&self.header_timeouts),
            g(&self.idle_timeouts),
            g(&self.body_timeouts),
            g(&self.accept_errors),
            p = prefix,
        )
    }
}

/// The connection a request came on; every request carries it as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client, canonical (an IPv4-mapped IPv6 address is the IPv4 address).
    pub peer: SocketAddr,
    /// The server's address of the connection.
    pub local: SocketAddr,
}

/// `addr` with an IPv4-mapped IPv6 address turned into the IPv4 address.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// True for loopback addresses, IPv4-mapped loopback included.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The key per-address limits count under: the IPv4 address, or the IPv6 /64 (one host
/// usually holds a whole /64).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener's address could not be read.
    #[error("listener address: {0}")]
    LocalAddr(std::io::Error),
}

/// A service failure, handed to hyper (which closes the connection).
#[derive(Debug, thiserror::Error)]
#[error("service failed: {0}")]
pub struct ServiceError(BoxError);

/// A request body cut off when it arrives too slowly (see the module doc).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body did not arrive in time.
    #[error("request body timed out: it did not arrive within the server's time limit")]
    Timeout,
    /// Reading the body failed.
    #[error("reading the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// The request body handed to services: hyper's body under a deadline that grows with the
/// bytes received.
pub struct TimedBody {
    inner: Incoming,
    start: Instant,
    base: Duration,
    rate: u64,
    received: u64,
    sleep: Pin<Box<Sleep>>,
    stats: Arc<ServerStats>,
    timed_out: bool,
}

impl TimedBody {
    fn new(inner: Incoming, limits: &ServerLimits, stats: Arc<ServerStats>) -> Self {
        let start = Instant::now();
        Self {
            inner,
            start,
            base: limits.body_timeout,
            rate: limits.body_min_rate.max(1),
            received: 0,
            sleep: Box::pin(tokio::time::sleep_until(start + limits.body_timeout)),
            stats,
            timed_out: false,
        }
    }

    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs(self.received / self.rate);
        self.start + self.base.saturating_add(earned)
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Some(Err(BodyError::Timeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received = this.received.saturating_add(d.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timed_out = true;
                        this.stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
                        Poll::Ready(Some(Err(BodyError::Timeout)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Live connection counts, total and per address.
#[derive(Debug, Default)]
struct Tracker {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    total: Mutex<usize>,
}

/// One connection's slot; dropping it frees the slot.
struct Slot {
    tracker: Arc<Tracker>,
    key: Option<IpAddr>,
    stats: Arc<ServerStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut t = self.tracker.total.lock();
            *t = t.saturating_sub(1);
        }
        if let Some(k) = self.key {
            let mut m = self.tracker.per_ip.lock();
            if let Some(n) = m.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Refused {
    Global,
    PerIp,
}

impl Tracker {
    fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        limits: &ServerLimits,
        stats: &Arc<ServerStats>,
    ) -> Result<Slot, Refused> {
        let exempt = !limits.limit_loopback && is_loopback(peer);
        let cap = if exempt {
            limits
                .max_connections
                .saturating_add(limits.loopback_reserve)
        } else {
            limits.max_connections
        };
        let mut total = self.total.lock();
        if *total >= cap {
            return Err(Refused::Global);
        }
        let key = if exempt {
            None
        } else {
            let k = ip_key(peer);
            let mut m = self.per_ip.lock();
            let n = m.entry(k).or_insert(0);
            if *n >= limits.max_connections_per_ip {
                return Err(Refused::PerIp);
            }
            *n += 1;
            Some(k)
        };
        *total += 1;
        stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            tracker: self.clone(),
            key,
            stats: stats.clone(),
        })
    }
}

/// Milliseconds since the server started, for the activity clock.
#[derive(Debug)]
struct Activity {
    epoch: std::time::Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    /// Milliseconds since `epoch` (saturating: u64 milliseconds last 584 million years).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn touch(&self) {
        let ms = self.now_ms();
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.now_ms();
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The socket, recording each read or write that moved bytes, and holding the
/// connection's slot for as long as the socket lives (through an upgrade too).
struct WatchedIo {
    // Dropped first (fields drop in order): the slot is free by the time the peer sees the
    // close, so a client that reconnects at once is not refused by its own old connection.
    _slot: Slot,
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once `activity` has been idle for `limit`.
async fn idle_watchdog(activity: &Activity, limit: Duration) {
    loop {
        let idle = activity.idle_for();
        if idle >= limit {
            return;
        }
        tokio::time::sleep(limit - idle).await;
    }
}

const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 24\r\nconnection: close\r\n\r\ntoo many connections...\n";

/// Serves `svc` on `listener` under `limits` until `shutdown` resolves, then shuts down
/// gracefully (see the module doc). `svc` is cloned per request; requests carry a
/// [`ConnInfo`] extension and a [`TimedBody`].
pub async fn serve<S, B, F>(
    listener: TcpListener,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    svc: S,
    shutdown: F,
) -> Result<(), ServeError>
where
    S: tower_service::Service<Request<TimedBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    let local = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let tracker = Arc::new(Tracker::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "accept failed");
                        // Out of descriptors: back off instead of spinning on the error.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let peer = canonical(peer);
                let slot = match tracker.admit(peer.ip(), &limits, &stats) {
                    Ok(s) => s,
                    Err(why) => {
                        let counter = match why {
                            Refused::Global => &stats.refused_global,
                            Refused::PerIp => &stats.refused_per_ip,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        // Best effort, never waits: the socket is closed right after.
                        let _ = stream.try_write(REFUSED_RESPONSE);
                        drop(stream);
                        continue;
                    }
                };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                let activity = Arc::new(Activity::new());
                activity.touch();
                let io = WatchedIo { inner: stream, activity: activity.clone(), _slot: slot };
                let info = ConnInfo { peer, local };
                tasks.spawn(connection(
                    io,
                    activity,
                    info,
                    limits.clone(),
                    stats.clone(),
                    svc.clone(),
                    stop_rx.clone(),
                ));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "connections still open after the shutdown grace period: dropped"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

async fn connection<S, B>(
    io: WatchedIo,
    activity: Arc<Activity>,
    info: ConnInfo,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    svc: S,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tower_service::Service<Request<TimedBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let body_stats = stats.clone();
    let body_limits = limits.clone();
    let in_flight = Arc::new(AtomicU64::new(0));
    let counter = in_flight.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut svc = svc.clone();
        let mut req = req.map(|b| TimedBody::new(b, &body_limits, body_stats.clone()));
        req.extensions_mut().insert(info);
        let guard = InFlight::new(counter.clone(), body_stats.clone());
        async move {
            if let Err(e) = std::future::poll_fn(|cx| svc.poll_ready(cx)).await {
                return Err(ServiceError(e.into()));
            }
            match svc.call(req).await {
                Ok(r) => Ok::<Response<TrackedBody<B>>, ServiceError>(r.map(|inner| TrackedBody {
                    inner,
                    _guard: guard,
                })),
                Err(e) => Err(ServiceError(e.into())),
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        return;
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                // Nothing being served (idle, or headers still arriving): close now. A
                // request in flight (its response body included) finishes first.
                if in_flight.load(Ordering::Relaxed) == 0 {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
            _ = idle_watchdog(&activity, limits.idle_timeout) => {
                stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %info.peer, "idle connection closed");
                return;
            }
        }
    }
}

/// Counts a request in flight on its connection until its response body is dropped.
struct InFlight(Arc<AtomicU64>, Arc<ServerStats>);

impl InFlight {
    fn new(counter: Arc<AtomicU64>, stats: Arc<ServerStats>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(counter, stats)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted in flight until hyper is done with it.
pub struct TrackedBody<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The cross-site rules of one listener (see [`check_origin_host`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed_origins: Vec<String>,
    /// The listener is on a loopback address: `Host` must name a loopback host.
    loopback: bool,
}

fn normalize_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl OriginPolicy {
    /// The policy of a listener on `local` serving browser requests from `allowed_origins`.
    pub fn new(allowed_origins: &[String], local: SocketAddr) -> Self {
        Self {
            allowed_origins: allowed_origins
                .iter()
                .map(|o| normalize_origin(o))
                .collect(),
            loopback: is_loopback(local.ip()),
        }
    }
}

/// Why [`check_origin_host`] refused a request (answer 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSiteRefusal {
    /// The `Origin` header names a web origin that is not allowed.
    #[error("requests from web origin `{0}` are refused (not in the allowed origins)")]
    Origin(String),
    /// The `Host` is not a loopback name on a loopback listener (DNS rebinding).
    #[error("host `{0}` is refused: this server listens on loopback and answers only loopback host names")]
    Host(String),
}

/// Checks a request against the cross-site rules: an `Origin` header, when present, must be
/// on the allow-list (an empty list refuses every request that has one); on a loopback
/// listener the `Host` (and an absolute request URI's authority), when present, must be
/// `localhost`, a loopback IP or `[::1]`, with the listener's port when it names one.
pub fn check_origin_host(
    uri: &Uri,
    headers: &HeaderMap,
    policy: &OriginPolicy,
) -> Result<(), CrossSiteRefusal> {
    for o in headers.get_all(http::header::ORIGIN) {
        let o = String::from_utf8_lossy(o.as_bytes()).into_owned();
        if !policy.allowed_origins.contains(&normalize_origin(&o)) {
            return Err(CrossSiteRefusal::Origin(o));
        }
    }
    if policy.loopback {
        let hosts = headers.get_all(http::header::HOST);
        if hosts.iter().count() > 1 {
            return Err(CrossSiteRefusal::Host("(several Host headers)".into()));
        }
        for h in hosts {
            let h = String::from_utf8_lossy(h.as_bytes()).into_owned();
            if !loopback_host(&h) {
                return Err(CrossSiteRefusal::Host(h));
            }
        }
        if let Some(a) = uri.authority() {
            if !loopback_host(a.as_str()) {
                return Err(CrossSiteRefusal::Host(a.as_str().to_string()));
            }
        }
    }
    Ok(())
}

/// True if `host` (`name[:port]` or `[v6][:port]`) is a loopback name. Any valid port is
/// accepted: DNS rebinding is stopped by the name (a page's own host name never resolves to a
/// loopback Host header), while a different port is the ordinary case of a forwarded port
/// (`ssh -L 9000:127.0.0.1:7845`, a container's published port).
fn loopback_host(host: &str) -> bool {
    let host = host.trim();
    let (loopback, host_port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        let p = match after {
            "" => None,
            a => match a.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        let ip = v6.parse::<Ipv6Addr>().ok();
        (ip.is_some_and(|ip| is_loopback(IpAddr::V6(ip))), p)
    } else {
        let (n, p) = match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        let ok = n.eq_ignore_ascii_case("localhost")
            || n.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        (ok, p)
    };
    loopback
        && match host_port {
            None => true,
            Some(p) => p.parse::<u16>().is_ok(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn origin_and_host_rules() {
        let local: SocketAddr = "127.0.0.1:7845".parse().unwrap();
        let p = OriginPolicy::new(&["https://Wallet.example/".into()], local);
        let root: Uri = "/".parse().unwrap();
        let check = |h: &[(&str, &str)]| check_origin_host(&root, &headers(h), &p);
        assert!(check(&[]).is_ok());
        assert!(check(&[("host", "127.0.0.1:7845")]).is_ok());
        assert!(check(&[("host", "localhost:7845")]).is_ok());
        assert!(check(&[("host", "LOCALHOST")]).is_ok());
        assert!(check(&[("host", "127.0.0.1")]).is_ok());
        // A forwarded port (ssh -L 9000:127.0.0.1:7845) keeps a loopback name.
        assert!(check(&[("host", "localhost:9000")]).is_ok());
        assert!(check(&[("host", "127.0.0.1:80")]).is_ok());
        assert!(check(&[("host", "127.3.2.1:7845")]).is_ok());
        assert!(check(&[("host", "[::1]:7845")]).is_ok());
        assert!(check(&[("host", "[::ffff:127.0.0.1]:7845")]).is_ok());
        assert!(check(&[("origin", "https://wallet.example")]).is_ok());
        for bad in [
            "evil.example:7845",
            "evil.example",
            "127.0.0.1:x",
            "127.0.0.1:70000",
            "[::2]:7845",
            "[::1",
            "localhost.evil.example:7845",
            "10.0.0.1:7845",
        ] {
            assert!(
                matches!(check(&[("host", bad)]), Err(CrossSiteRefusal::Host(_))),
                "{bad}"
            );
        }
        assert!(check(&[("host", "127.0.0.1:7845"), ("host", "127.0.0.1:7845")]).is_err());
        assert!(matches!(
            check(&[("origin", "http://evil.example")]),
            Err(CrossSiteRefusal::Origin(_))
        ));
        assert!(check(&[("origin", "null")]).is_err());
        let abs: Uri = "http://evil.example:7845/".parse().unwrap();
        assert!(check_origin_host(&abs, &headers(&[]), &p).is_err());
        // No allow-list: any Origin is refused.
        let strict = OriginPolicy::new(&[], local);
        let r = check_origin_host(
            &root,
            &headers(&[("origin", "http://127.0.0.1:7845")]),
            &strict,
        );
        assert!(r.is_err());
        // Not on loopback: Host is not checked (the Origin still is).
        let public = OriginPolicy::new(&[], "0.0.0.0:7845".parse().unwrap());
        assert!(check_origin_host(&root, &headers(&[("host", "node.example:1")]), &public).is_ok());
        let mapped = OriginPolicy::new(&[], "[::ffff:127.0.0.1]:7845".parse().unwrap());
        assert!(check_origin_host(&root, &headers(&[("host", "evil.example")]), &mapped).is_err());
    }

    #[test]
    fn canonical_loopback() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().unwrap();
        assert!(
            !mapped.ip().is_loopback(),
            "std does not see it as loopback"
        );
        assert!(is_loopback(mapped.ip()));
        assert_eq!(
            canonical(mapped),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            ip_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
    }
}
