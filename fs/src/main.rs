//! `aergofs`: the AergoFS server (`aergofs serve`) and benchmark (`aergofs bench`).

mod bench;

use aergo_os::io::{IoConfig, IoService};
use aergofs::http::{self, HttpConfig, ReadPolicy};
use aergofs::limits;
use aergofs::volume::{Durability, VolumeConfig};
use aergofs::{Store, StoreConfig};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "aergofs",
    version,
    about = "AergoFS: Haystack-style blob store on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReadPolicyArg {
    Open,
    Token,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Cmd {
    /// Serve the HTTP API over a data directory.
    Serve {
        /// Data directory (created if missing). /data/fs on the appliance.
        #[arg(long)]
        dir: PathBuf,
        /// Listen address.
        #[arg(long, default_value = limits::DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Token required for writes/deletes (overrides --token-file).
        #[arg(long, env = "AERGOFS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// File holding the write token; created with a random token (mode 0600) if missing.
        /// Default when listening beyond loopback without --token: DIR/fs.token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Who may read: open (anyone reaching the port; ids carry a secret cookie) or token.
        #[arg(long, value_enum, default_value = "open")]
        read_policy: ReadPolicyArg,
        /// Largest upload in bytes.
        #[arg(long, default_value_t = limits::DEFAULT_MAX_UPLOAD)]
        max_upload: usize,
        /// Memory all uploads in flight may hold together, in bytes (default: room for two
        /// uploads of --max-upload). Uploads beyond it wait, then get 503 + Retry-After.
        #[arg(long)]
        upload_memory: Option<usize>,
        /// Milliseconds an upload waits for upload memory before 503.
        #[arg(long, default_value_t = limits::DEFAULT_UPLOAD_WAIT_MS)]
        upload_wait_ms: u64,
        /// Volume size limit in bytes (at most 32 GiB).
        #[arg(long, default_value_t = limits::DEFAULT_VOLUME_SIZE)]
        volume_size: u64,
        /// Fast mode: acknowledge writes without fsync (a power cut can lose recent writes).
        #[arg(long)]
        fast: bool,
        /// Compact volumes whose garbage ratio passes this.
        #[arg(long, default_value_t = limits::DEFAULT_GARBAGE_THRESHOLD)]
        garbage_threshold: f64,
        /// Compaction copy rate limit in MiB/s (0 = unlimited).
        #[arg(long, default_value_t = limits::DEFAULT_COMPACTION_RATE_MIB)]
        compaction_rate_mib: u64,
        /// Seconds between automatic compaction checks (0 = never).
        #[arg(long, default_value_t = limits::DEFAULT_COMPACTION_INTERVAL_SECS)]
        compaction_interval: u64,
        /// Force the std I/O backend (also: AERGO_IO=std).
        #[arg(long)]
        io_std: bool,
        /// Connection caps, timeouts and allowed web origins of the listener.
        #[command(flatten)]
        net: NetArgs,
    },
    /// Benchmark AergoFS against one-file-per-blob and RocksDB (and raw O_DIRECT reads).
    Bench(bench::BenchArgs),
}

/// The listener's limits: `[fs.http]` of `--config` (defaults without it), each
/// overridable by a flag. Served by `aergo_os::http::serve`.
#[derive(clap::Args)]
struct NetArgs {
    /// aergo.toml to read `[fs.http]` from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Most connections open at once.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most connections open at once from one client address (loopback exempt).
    #[arg(long)]
    max_connections_per_ip: Option<usize>,
    /// Apply the per-address cap to loopback clients too.
    #[arg(long)]
    limit_loopback: bool,
    /// Seconds a client has to send a request's headers.
    #[arg(long)]
    header_timeout_secs: Option<u64>,
    /// Seconds a connection may stay without reading or writing a byte.
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
    /// Base seconds for a request body (plus one per --body-min-bytes-per-sec received).
    #[arg(long)]
    body_timeout_secs: Option<u64>,
    /// Body bytes per second that earn one more second.
    #[arg(long)]
    body_min_bytes_per_sec: Option<u64>,
    /// A web origin (scheme://host[:port]) allowed to write (repeatable); writes carrying
    /// any other Origin are refused with 403.
    #[arg(long = "allowed-origin")]
    allowed_origins: Vec<String>,
}

impl NetArgs {
    fn resolve(&self) -> Result<aergo_os::config::HttpServerConfig> {
        let mut c = match &self.config {
            Some(p) => aergo_os::config::Config::load(p)?.fs.http,
            None => aergo_os::config::HttpServerConfig::default(),
        };
        let set = |v: Option<u64>, dst: &mut u64| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.max_connections_per_ip {
            c.max_connections_per_ip = v;
        }
        c.limit_loopback |= self.limit_loopback;
        set(self.header_timeout_secs, &mut c.header_timeout_secs);
        set(self.idle_timeout_secs, &mut c.idle_timeout_secs);
        set(self.body_timeout_secs, &mut c.body_timeout_secs);
        set(self.body_min_bytes_per_sec, &mut c.body_min_bytes_per_sec);
        c.allowed_origins
            .extend(self.allowed_origins.iter().cloned());
        c.validate("fs.http")?;
        Ok(c)
    }
}

/// The network edge in front of the API: writes (PUT, POST, DELETE) must pass the
/// cross-site rules (403 otherwise), and `/metrics` gains the server's connection counters.
async fn edge(
    origins: Arc<aergo_os::http::OriginPolicy>,
    stats: Arc<aergo_os::http::ServerStats>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, Method, StatusCode};
    use axum::response::IntoResponse;
    let m = req.method().clone();
    if matches!(m, Method::PUT | Method::POST | Method::DELETE) {
        if let Err(e) = aergo_os::http::check_origin_host(req.uri(), req.headers(), &origins) {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    }
    let metrics = m == Method::GET && req.uri().path() == "/metrics";
    let resp = next.run(req).await;
    if !metrics || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    match axum::body::to_bytes(body, limits::METRICS_BODY_LIMIT).await {
        Ok(b) => {
            let mut text = b.to_vec();
            text.extend_from_slice(stats.prometheus("aergofs_http").as_bytes());
            parts.headers.remove(header::CONTENT_LENGTH);
            axum::response::Response::from_parts(parts, axum::body::Body::from(text))
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn is_loopback(addr: &SocketAddr) -> bool {
    aergo_os::http::is_loopback(addr.ip())
}

fn random_token() -> String {
    let b: [u8; limits::TOKEN_BYTES] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads the token file, creating it with a random token (mode 0600) when missing.
fn load_or_create_token(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let t = s.trim().to_string();
            if t.is_empty() {
                bail!("token file {} is empty", path.display());
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("create {}", parent.display()))?;
            }
            let t = random_token();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("create token file {}", path.display()))?;
            writeln!(f, "{t}")?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "created write token file");
            Ok(t)
        }
        Err(e) => Err(e).with_context(|| format!("read token file {}", path.display())),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown signal received");
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    dir: PathBuf,
    addr: SocketAddr,
    token: Option<String>,
    token_file: Option<PathBuf>,
    read_policy: ReadPolicyArg,
    max_upload: usize,
    upload_memory: Option<usize>,
    upload_wait_ms: u64,
    volume_size: u64,
    fast: bool,
    garbage_threshold: f64,
    compaction_rate_mib: u64,
    compaction_interval: u64,
    io_std: bool,
    net: NetArgs,
) -> Result<()> {
    let net = net.resolve()?;
    if max_upload > limits::MAX_DATA_LEN {
        bail!(
            "--max-upload must be at most {} bytes",
            limits::MAX_DATA_LEN
        );
    }
    let per_upload = max_upload + limits::MAX_OVERHEAD;
    let upload_memory = upload_memory.unwrap_or(limits::DEFAULT_UPLOADS_IN_MEMORY * per_upload);
    if upload_memory < per_upload {
        bail!("--upload-memory must hold one upload of --max-upload: at least {per_upload} bytes");
    }
    if !(0.0..=1.0).contains(&garbage_threshold) {
        bail!("--garbage-threshold must be between 0 and 1");
    }
    if !(limits::MIN_VOLUME_SIZE..=limits::MAX_VOLUME_SIZE).contains(&volume_size) {
        bail!(
            "--volume-size must be between {} and {} bytes (1 MiB and 32 GiB)",
            limits::MIN_VOLUME_SIZE,
            limits::MAX_VOLUME_SIZE
        );
    }
    let token = match (token, token_file) {
        (Some(t), _) if t.trim().is_empty() => bail!("--token is empty"),
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(f)) => Some(load_or_create_token(&f)?),
        (None, None) if !is_loopback(&addr) => Some(load_or_create_token(&dir.join("fs.token"))?),
        (None, None) => None,
    };
    let read_policy = match read_policy {
        ReadPolicyArg::Open => ReadPolicy::Open,
        ReadPolicyArg::Token => ReadPolicy::Token,
    };
    if read_policy == ReadPolicy::Token && token.is_none() {
        bail!("--read-policy token needs a token (--token or --token-file)");
    }
    let io = IoService::start(IoConfig {
        force_std: io_std,
        ..IoConfig::default()
    });
    let cfg = StoreConfig {
        volume: VolumeConfig {
            max_size: volume_size,
            durability: if fast {
                Durability::Fast
            } else {
                Durability::GroupCommit
            },
            compaction_rate: compaction_rate_mib << 20,
        },
        garbage_threshold,
        compaction_interval: (compaction_interval > 0)
            .then(|| Duration::from_secs(compaction_interval)),
        ..StoreConfig::default()
    };
    let store = Store::open(&dir, cfg, io.clone())
        .await
        .with_context(|| format!("open data directory {}", dir.display()))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        addr = %local,
        dir = %dir.display(),
        io_backend = %io.backend(),
        io_fallback_reason = io.fallback_reason().unwrap_or_default(),
        durability = if fast { "fast" } else { "group_commit" },
        writes_require_token = token.is_some(),
        "aergofs listening"
    );
    let app = http::router(
        store.clone(),
        HttpConfig {
            token,
            read_policy,
            max_upload,
            upload_memory,
            upload_wait: Duration::from_millis(upload_wait_ms),
            public_url: format!("http://{local}"),
        },
    );
    // The shared hardened server: connection caps, header/idle/body timeouts ([fs.http]).
    let origins = Arc::new(aergo_os::http::OriginPolicy::new(
        &net.allowed_origins,
        local,
    ));
    let stats = Arc::new(aergo_os::http::ServerStats::default());
    let edge_stats = stats.clone();
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        edge(origins.clone(), edge_stats.clone(), req, next)
    }));
    aergo_os::http::serve(listener, (&net).into(), stats, app, shutdown_signal())
        .await
        .context("HTTP server")?;
    store.close().await.context("flush on shutdown")?;
    tracing::info!("index flushed, volumes synced; bye");
    Ok(())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aergofs: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve {
                dir,
                addr,
                token,
                token_file,
                read_policy,
                max_upload,
                upload_memory,
                upload_wait_ms,
                volume_size,
                fast,
                garbage_threshold,
                compaction_rate_mib,
                compaction_interval,
                io_std,
                net,
            } => {
                serve(
                    dir,
                    addr,
                    token,
                    token_file,
                    read_policy,
                    max_upload,
                    upload_memory,
                    upload_wait_ms,
                    volume_size,
                    fast,
                    garbage_threshold,
                    compaction_rate_mib,
                    compaction_interval,
                    io_std,
                    net,
                )
                .await
            }
            Cmd::Bench(a) => bench::run(a).await,
        }
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aergofs: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
