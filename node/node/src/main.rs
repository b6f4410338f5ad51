//! `aergo-node`: the AERGO chain node.
//!
//! `aergo-node --dev` runs a single-node chain with the built-in dev genesis under
//! `~/.aergo/dev`; `aergo-node --config aergo.toml` runs from a config file. Subcommands:
//! `bench` (end-to-end transfer throughput) and `check` (verify a data folder's block log
//! against its index).

/// Environment variable that makes this node's producer attach forged DTTs (an injected
/// fault, for tests that validators reject them).
const FORGE_DTT_ENV: &str = "AERGO_FAULT_FORGE_DTT";

mod bench;
mod bench_branches;
mod bench_exec;
mod bench_repos;
mod branches;
mod chainlog;
mod datalock;
mod disk;
mod forward;
mod keyfile;
mod net;
mod node;
mod preconf;
mod producer;
mod repos;
mod rpc;
mod rpc_auth;
mod rpc_socket;
mod rpc_staking;
mod vital;

use aergo_chain::{Chain, ChainOptions};
use aergo_os::config::Config;
use aergo_os::io::{IoConfig, IoService};
use aergo_types::Genesis;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "aergo-node", version, about = "The AERGO chain node")]
struct Args {
    /// Single-node dev chain with the built-in dev genesis (solo consensus, funded dev account).
    #[arg(long)]
    dev: bool,
    /// Config file (aergo.toml).
    #[arg(long, env = "AERGO_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
    /// Data folder (default: ~/.aergo/dev with --dev).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Public JSON-RPC address (HTTP, WebSocket, /metrics), e.g. 127.0.0.1:7845.
    #[arg(long, env = "AERGO_RPC_ADDR", hide_env_values = true)]
    rpc_addr: Option<String>,
    /// Genesis file (JSON); overrides the config.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Node key file; default DATA_DIR/node.key, created when absent.
    #[arg(long)]
    key: Option<PathBuf>,
    /// libp2p listen address (IP:port); overrides the config.
    #[arg(long)]
    p2p_addr: Option<String>,
    /// Bootnode multiaddr (repeatable); added to the config's peers.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Do not produce empty blocks (solo only: DPoS producers fill every slot they own).
    #[arg(long)]
    no_empty_blocks: bool,
    /// Most RPC requests per second per client address (0 = unlimited).
    #[arg(long)]
    rpc_rate_limit: Option<u32>,
    /// Do not pre-confirm (node.preconfirm = false): a producer builds its blocks from the
    /// mempool at the slot's time, in gas-price order, and `send_tx` with
    /// `wait: "preconfirmed"` is refused.
    #[arg(long)]
    no_preconfirm: bool,
    /// Allow `admin_inject_fault` (a producer panic or stall) for tests of the crash policy.
    /// Never on a production node.
    #[arg(long)]
    allow_fault_injection: bool,
    /// How long a vital task (producer, network) may stay silent before /health answers 503
    /// (ms, at least 2000).
    #[arg(long, default_value_t = vital::LATE_AFTER_MS)]
    health_late_ms: u64,
    /// Log filter (e.g. info, debug, aergo_chain=debug).
    #[arg(
        long,
        env = "AERGO_LOG",
        hide_env_values = true,
        default_value = "info"
    )]
    log: String,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// End-to-end transfer throughput: pre-signed transfers through verification, mempool,
    /// execution and commit, with full blocks cut back to back; compared with pure
    /// ed25519-dalek batch verification on the same cores.
    Bench(bench::BenchArgs),
    /// Verifies that every block in the block log is in the index and vice versa.
    Check {
        /// Data folder.
        #[arg(long)]
        data_dir: PathBuf,
        /// Genesis file (default: the dev genesis).
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
}

fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs piped to a file or journal stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let res = match &args.cmd {
        Some(Cmd::Bench(b)) => bench::run(b),
        Some(Cmd::Check { data_dir, genesis }) => check(data_dir, genesis.as_deref()),
        None => run(args),
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Opens the chain in `data_dir`. A dev node started without a genesis file
/// (`dev_default`) whose folder holds the dev chain as it was before AergoSQL engine versions
/// ([`Genesis::dev_legacy`]) keeps running that chain, with a warning: its contracts deploy
/// under engine 1 (no arrays), and a fresh `--data-dir` gets today's dev chain.
fn open_chain(
    data_dir: &std::path::Path,
    genesis: Genesis,
    io: IoService,
    dev_default: bool,
) -> Result<Chain> {
    let opts = |genesis, io| ChainOptions {
        data_dir: data_dir.to_path_buf(),
        genesis,
        io,
    };
    match Chain::open(opts(genesis, io)) {
        Err(aergo_chain::ChainError::WrongChain { found, .. })
            if dev_default && found == Genesis::dev_legacy().chain_id() =>
        {
            tracing::warn!(
                data_dir = %data_dir.display(),
                "this dev folder holds the dev chain from before AergoSQL engine versions: it keeps running it, and contracts deploy under engine 1 (no arrays, no FOREACH); start with a fresh --data-dir for engine 2"
            );
            Ok(Chain::open(opts(
                Genesis::dev_legacy(),
                IoService::start(IoConfig::default()),
            ))?)
        }
        r => Ok(r?),
    }
}

fn check(data_dir: &std::path::Path, genesis: Option<&std::path::Path>) -> Result<()> {
    let dev_default = genesis.is_none();
    let genesis = match genesis {
        Some(p) => Genesis::load(p)?,
        None => Genesis::dev(),
    };
    let _lock = datalock::lock(data_dir)?;
    let chain = open_chain(
        data_dir,
        genesis,
        IoService::start(IoConfig::default()),
        dev_default,
    )?;
    let n = chain.verify_log_matches_index()?;
    println!(
        "ok: {n} blocks in the block log match the index (tip {})",
        chain.tip().hash
    );
    Ok(())
}

fn home_dev_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".aergo")
        .join("dev")
}

fn run(args: Args) -> Result<()> {
    let mut cfg = match &args.config {
        // The flags that decide which chain runs apply before the file's values are checked.
        Some(p) => Config::load_with(p, |c| {
            c.node.dev |= args.dev;
            if let Some(g) = &args.genesis {
                c.node.genesis = Some(g.clone());
            }
        })?,
        None => {
            if !args.dev && args.genesis.is_none() {
                bail!("give --dev for a dev chain, or --config aergo.toml (or --genesis FILE)");
            }
            let mut c = Config::default();
            c.node.dev = args.dev;
            c
        }
    };
    if args.dev {
        cfg.node.dev = true;
    }
    if let Some(d) = &args.data_dir {
        cfg.node.data_dir = Some(d.clone());
    }
    if let Some(a) = &args.rpc_addr {
        cfg.node.rpc_addr = a.clone();
    }
    if let Some(g) = &args.genesis {
        cfg.node.genesis = Some(g.clone());
    }
    if let Some(k) = &args.key {
        cfg.node.key = Some(k.clone());
    }
    if let Some(r) = args.rpc_rate_limit {
        cfg.node.rpc_rate_limit = r;
    }
    if let Some(a) = &args.p2p_addr {
        cfg.node.p2p_addr = a.clone();
    }
    cfg.node.peers.extend(args.peers.iter().cloned());
    if args.no_empty_blocks {
        cfg.node.empty_blocks = false;
    }
    if args.no_preconfirm {
        cfg.node.preconfirm = false;
    }
    cfg.validate()?;
    let genesis = match (&cfg.node.genesis, cfg.node.dev) {
        (Some(p), _) => Genesis::load(p)?,
        (None, true) => Genesis::dev(),
        (None, false) => bail!("no genesis: set node.genesis in the config or use --dev"),
    };
    let data_dir = cfg.node.data_dir.clone().unwrap_or_else(|| {
        if cfg.node.dev {
            home_dev_dir()
        } else {
            PathBuf::from("data")
        }
    });
    let rpc_addr: SocketAddr = cfg
        .node
        .rpc_addr
        .parse()
        .with_context(|| format!("bad rpc address {}", cfg.node.rpc_addr))?;
    let networked = match genesis.consensus.engine {
        aergo_types::genesis::Engine::Solo => !cfg.node.peers.is_empty(),
        aergo_types::genesis::Engine::Dpos | aergo_types::genesis::Engine::Poa => true,
    };
    // Ports first, then the data folder's lock, and only then anything that writes: a node that
    // cannot serve leaves no node.key and no database behind.
    let rpc_listener = std::net::TcpListener::bind(rpc_addr).with_context(|| {
        format!("cannot listen for JSON-RPC on {rpc_addr} (node.rpc_addr / --rpc-addr)")
    })?;
    if networked {
        net::probe_listen(&cfg.node.p2p_addr)?;
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("create data folder {}", data_dir.display()))?;
    let _data_lock = datalock::lock(&data_dir)?;
    disk::check_start(&data_dir)?;
    let key_path = cfg
        .node
        .key
        .clone()
        .unwrap_or_else(|| data_dir.join("node.key"));
    let (key, created) = keyfile::load_or_create(&key_path)?;

    let io = IoService::start(IoConfig::default());
    tracing::info!(backend = %io.backend(), reason = ?io.fallback_reason(), "block log I/O backend");
    let dev_default = cfg.node.dev && cfg.node.genesis.is_none();
    let chain = Arc::new(open_chain(&data_dir, genesis, io, dev_default)?);
    let tip = chain.tip();
    tracing::info!(
        chain = %chain.genesis().chain_name,
        chain_id = %chain.chain_id(),
        height = tip.header.height,
        node = %aergo_types::Address::from_public_key(&key.public()),
        key_created = created,
        data_dir = %data_dir.display(),
        "chain opened"
    );
    let node = Arc::new(node::Node::new(
        chain,
        key,
        cfg.node.mempool.clone(),
        cfg.node.empty_blocks,
    ));
    node.disk.watch(data_dir.clone());
    node.repos
        .start(&node, data_dir.clone(), cfg.node.mempool.clone())
        .context("open the hosted repositories")?;
    node.branches
        .configure(data_dir.join("branches"))
        .context("open the branches folder")?;
    node.branches
        .sync(&node)
        .context("open the hosted branches")?;
    aergo_chain::parallel::set_workers(cfg.node.exec_workers);
    if std::env::var_os(FORGE_DTT_ENV).is_some_and(|v| v == "1") {
        tracing::error!(
            "{FORGE_DTT_ENV}=1: INJECTED FAULT, this producer attaches forged DTTs; every other node rejects its blocks that carry transactions"
        );
        aergo_chain::dtt::set_fault_forge(true);
    }
    if node::clock_skew_ms() != 0 {
        tracing::error!(
            skew_ms = node::clock_skew_ms(),
            "{}: INJECTED FAULT, this node's clock is shifted",
            node::CLOCK_SKEW_ENV
        );
    }
    tracing::info!(
        workers = aergo_chain::parallel::workers(),
        "validation workers for blocks with a DTT (node.exec_workers; 0: one per core)"
    );
    if cfg.node.preconfirm {
        let kept = preconf::Preconf::start(&node, &data_dir).context("start pre-confirmation")?;
        tracing::info!(kept, "pre-confirmation on: the producer of the next slot promises results at admission (DATA/preconf.log)");
    } else {
        tracing::info!("pre-confirmation off (node.preconfirm = false)");
    }
    node.vital.set_late_after(args.health_late_ms);
    if args.allow_fault_injection {
        node.faults.allow();
        tracing::warn!("fault injection allowed (--allow-fault-injection): a test node only");
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if networked {
        // The producer waits until the network task has seen the peers' heights.
        node.net.syncing.store(true, Ordering::SeqCst);
    }
    // Registered before it runs: a task that never beat is not watched, so a producer that
    // stalled (or was held up) before its first beat would otherwise never be reported late.
    node.vital.beat(vital::Task::Producer, node::now_ms());
    let producer = {
        let n = node.clone();
        std::thread::Builder::new()
            .name("producer".into())
            .spawn(move || producer::run(n))?
    };
    let socket_path = rpc_socket::path_in(&data_dir);
    let res: Result<()> = rt.block_on(async {
        chainlog::spawn(node.clone());
        let p2p = if networked {
            Some(net::start(node.clone(), &cfg.node.p2p_addr, &cfg.node.peers, cfg.node.mdns).await?)
        } else {
            tracing::info!("solo chain without peers: networking off");
            None
        };
        rpc_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(rpc_listener).with_context(|| format!("RPC listener on {rpc_addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "JSON-RPC listening (POST /, GET /ws, /metrics, /health)");
        // The shared hardened server: connection caps, header/idle/body timeouts ([node.rpc_http]).
        let opts = rpc::RpcOptions::new(&cfg.node, listener.local_addr()?);
        let stats = opts.server.clone();
        let app = rpc::router(node.clone(), opts);
        match rpc_socket::bind(&socket_path) {
            Ok(l) => {
                tracing::info!(path = %socket_path.display(), "operator socket listening (mode 0600; reads of private repositories need no signature)");
                tokio::spawn(rpc_socket::serve(l, app.clone()));
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "no operator socket: use --as to read private repositories"),
        }
        aergo_os::http::serve(listener, (&cfg.node.rpc_http).into(), stats, app, shutdown_signal())
            .await
            .context("RPC server")?;
        if let Some(p) = p2p {
            p.shutdown().await;
        }
        Ok(())
    });
    tracing::info!("shutting down: finishing the block in progress");
    node.shutdown.store(true, Ordering::SeqCst);
    node.wake();
    if producer.join().is_err() {
        tracing::error!("producer thread panicked");
    }
    node.repos.shutdown();
    node.branches.shutdown();
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    res?;
    tracing::info!(height = node.chain.tip().header.height, "stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM"),
                _ = i.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
