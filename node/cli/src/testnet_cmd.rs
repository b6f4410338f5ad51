//! `aergo testnet init`: writes a DPoS (default) or PoA (`--engine poa`) testnet — keys, one
//! genesis and an `aergo.toml` per node — so `aergo-node --config DIR/node1/aergo.toml`
//! starts node 1. A PoA testnet's producers are the first `--bps` nodes in that order, and
//! its genesis sets `skip_empty_slots: false` (every slot filled: LIB advances on an idle
//! testnet).
//!
//! Layout: `DIR/genesis.json`, `DIR/faucet.key` (hex seed of the account holding the
//! supply not given to BPs), `DIR/nodeN/{aergo.toml,node.key}`; node data goes to
//! `DIR/nodeN/data`. The first `--bps` nodes are the genesis block producers. On one host
//! every node gets its own loopback ports (`--base-port`: RPC `base + 10·(N−1)`, p2p one
//! above); with `--hosts` (appliances on a private network) every node listens on the
//! standard ports and reaches the others at their host addresses, and the config names
//! appliance paths (`/data/...`).

use aergo_os::config::Config;
use aergo_types::genesis::{
    ConsensusParams, DposGenesis, Engine, GasParams, GenesisAccount, GenesisBp, PoaGenesis,
};
use aergo_types::keystore::write_private;
use aergo_types::{Address, Aer, Genesis, Keypair, AER_PER_AERGO, TOTAL_SUPPLY};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// Testnet commands.
#[derive(Subcommand, Debug)]
pub enum TestnetCmd {
    /// Writes keys, a DPoS or PoA genesis and one aergo.toml per node.
    Init(InitArgs),
}

/// `aergo testnet init` options.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Genesis block producers (the first nodes).
    #[arg(long, default_value_t = 4)]
    pub bps: usize,
    /// Consensus engine: `dpos` (staked, elected producers) or `poa` (the BPs as a fixed
    /// producer set).
    #[arg(long, default_value = "dpos", value_parser = ["dpos", "poa"])]
    pub engine: String,
    /// Nodes in all (producers plus followers); default: the BPs.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Output folder (created; must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
    /// Slot length.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Slots per round (re-election every round).
    #[arg(long, default_value_t = 100)]
    pub round_slots: u64,
    /// Genesis time = now + this delay (nodes produce from then on).
    #[arg(long, default_value_t = 3000)]
    pub start_delay_ms: u64,
    /// One host: the address every node listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// One host: node 1's RPC port; node N uses base + 10·(N−1), its p2p port one above.
    #[arg(long, default_value_t = 17845)]
    pub base_port: u16,
    /// Appliances: comma-separated addresses of the nodes on their private network (one per
    /// node); each listens on 7845 (RPC) and 7846 (p2p) and uses /data paths.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Chain name.
    #[arg(long, default_value = "aergo-testnet")]
    pub chain_name: String,
    /// Repositories registered at genesis (repeatable): `NAME` (public) or `NAME:private`,
    /// produced by node 1 (solo), or with `:poa` (`NAME:poa`, `NAME:private:poa`) by every
    /// block producer's node in turn; administered by the faucet account, which holds their
    /// units.
    /// (`--genesis-repo`, not `--repo`: the global `--repo` names the repository a command
    /// talks to.)
    #[arg(long = "genesis-repo")]
    pub repos: Vec<String>,
    /// Longest wait of a repository directory change for its block (genesis
    /// `dd_interval_ms`; default 10 s).
    #[arg(long)]
    pub dd_interval_ms: Option<u64>,
}

/// Runs a testnet command; `json`: one JSON object on stdout instead of text.
pub fn run(cmd: &TestnetCmd, json: bool) -> Result<()> {
    match cmd {
        TestnetCmd::Init(a) => init(a, json),
    }
}

/// The `--genesis-repo` repositories (`NAME[:private|:public][:poa]`), administered by the
/// faucet: solo on node 1, or with `poa` produced by every block producer's node in turn.
fn genesis_repos(
    specs: &[String],
    faucet: &Keypair,
    bps: &[Keypair],
) -> Result<Vec<aergo_types::repo::GenesisRepo>> {
    use aergo_types::repo::{GenesisRepo, RepoCreate, RepoEngine, Visibility};
    let Some(node1) = bps.first() else {
        return Ok(Vec::new());
    };
    let admin = Address::from_public_key(&faucet.public());
    specs
        .iter()
        .map(|s| {
            let mut parts = s.split(':');
            let name = parts.next().unwrap_or_default();
            let (mut visibility, mut engine) = (Visibility::Public, RepoEngine::Solo);
            for flag in parts {
                match flag {
                    "private" => visibility = Visibility::Private,
                    "public" => visibility = Visibility::Public,
                    "poa" => engine = RepoEngine::Poa,
                    v => bail!(
                        "--genesis-repo {s}: `{v}` is not public, private or poa (NAME[:private][:poa])"
                    ),
                }
            }
            let producers = match engine {
                RepoEngine::Solo => vec![node1.public()],
                RepoEngine::Poa => bps.iter().map(Keypair::public).collect(),
            };
            let create = RepoCreate {
                name: name.into(),
                visibility,
                engine,
                admins: vec![admin],
                producers,
                alloc: Vec::new(),
            };
            create
                .validate()
                .map_err(|e| anyhow::anyhow!("--genesis-repo {s}: {e}"))?;
            Ok(GenesisRepo {
                creator: admin,
                create,
            })
        })
        .collect()
}

fn write_key(path: &Path, k: &Keypair) -> Result<()> {
    write_private(path, format!("{}\n", hex::encode(k.seed())).as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn init(a: &InitArgs, json: bool) -> Result<()> {
    let nodes = a.nodes.unwrap_or(a.bps);
    if a.bps == 0 || a.bps > 100 {
        bail!("--bps must be between 1 and 100");
    }
    if nodes < a.bps || nodes > 200 {
        bail!("--nodes must be at least --bps and at most 200");
    }
    if !(50..=60_000).contains(&a.interval_ms) {
        bail!("--interval-ms must be between 50 and 60000");
    }
    if a.round_slots == 0 {
        bail!("--round-slots must be positive");
    }
    if !a.hosts.is_empty() && a.hosts.len() != nodes {
        bail!(
            "--hosts names {} addresses for {nodes} nodes",
            a.hosts.len()
        );
    }
    for h in std::iter::once(&a.host).chain(&a.hosts) {
        h.parse::<std::net::IpAddr>()
            .with_context(|| format!("`{h}` is not an IP address"))?;
    }
    if a.hosts.is_empty() && (a.base_port as usize) + 10 * nodes > 65_000 {
        bail!("--base-port leaves no room for {nodes} nodes");
    }
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .with_context(|| format!("read {}", a.out.display()))?
            .next()
            .is_some()
    {
        bail!("{} is not empty; pick a new folder", a.out.display());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("create {}", a.out.display()))?;
    let out = a
        .out
        .canonicalize()
        .with_context(|| format!("resolve {}", a.out.display()))?;
    let appliance = !a.hosts.is_empty();

    let keys: Vec<Keypair> = (0..nodes).map(|_| Keypair::generate()).collect();
    let faucet = Keypair::generate();
    let bp_balance = 1_000_000 * AER_PER_AERGO;
    let bp_stake = 100_000 * AER_PER_AERGO;
    let mut balances = Vec::new();
    let mut bps = Vec::new();
    let p2p_addr = |i: usize| -> String {
        if appliance {
            format!("/ip4/{}/tcp/{}", a.hosts[i], aergo_os::paths::P2P_PORT)
        } else {
            format!("/ip4/{}/tcp/{}", a.host, a.base_port as usize + 10 * i + 1)
        }
    };
    let peer_id = |k: &Keypair| -> Result<String> {
        Ok(aergo_p2p::peer_id_of_seed(&k.seed())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_string())
    };
    for (i, k) in keys.iter().enumerate().take(a.bps) {
        let address = Address::from_public_key(&k.public());
        balances.push(GenesisAccount {
            address,
            balance: Aer(bp_balance),
        });
        bps.push(GenesisBp {
            address,
            stake: Aer(bp_stake),
            p2p_addr: Some(format!("{}/p2p/{}", p2p_addr(i), peer_id(k)?)),
        });
    }
    let given = bp_balance * a.bps as u128;
    balances.push(GenesisAccount {
        address: Address::from_public_key(&faucet.public()),
        balance: Aer(TOTAL_SUPPLY - given),
    });
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("clock before 1970")?
            .as_millis(),
    )
    .context("clock beyond u64 milliseconds")?;
    let start = (now + a.start_delay_ms).div_ceil(a.interval_ms) * a.interval_ms;
    let genesis = Genesis {
        chain_name: a.chain_name.clone(),
        timestamp_ms: start,
        balances,
        consensus: if a.engine == "poa" {
            ConsensusParams {
                engine: Engine::Poa,
                block_interval_ms: a.interval_ms,
                producer: None,
                dpos: None,
                poa: Some(PoaGenesis {
                    producers: bps.iter().map(|b| b.address).collect(),
                    skip_empty_slots: false,
                }),
            }
        } else {
            ConsensusParams {
                engine: Engine::Dpos,
                block_interval_ms: a.interval_ms,
                producer: None,
                dpos: Some(DposGenesis {
                    round_slots: a.round_slots,
                    bp_count: a.bps,
                    max_votes: 30,
                    min_stake: Aer(10_000 * AER_PER_AERGO),
                    unstake_lock_blocks: a.round_slots * 2,
                    bps,
                }),
                poa: None,
            }
        },
        gas: GasParams {
            base: 1000,
            per_byte: 10,
            min_price: Aer(1_000_000_000),
            tx_gas_cap: None,
            block_gas_limit: None,
        },
        repo_create_fee: None,
        dd_interval_ms: a.dd_interval_ms,
        repo: None,
        repos: genesis_repos(&a.repos, &faucet, &keys[..a.bps.min(keys.len())])?,
        branch: None,
        // New networks deploy contracts under the newest AergoSQL engine from the start.
        sql_engine: Genesis::dev().sql_engine,
    };
    genesis.validate().context("generated genesis")?;
    let genesis_path = out.join("genesis.json");
    std::fs::write(&genesis_path, genesis.to_json())
        .with_context(|| format!("write {}", genesis_path.display()))?;
    write_key(&out.join("faucet.key"), &faucet)?;

    let mut listed = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let dir = out.join(format!("node{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        write_key(&dir.join("node.key"), k)?;
        let mut cfg = Config::default();
        let peers: Vec<String> = keys
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, kj)| Ok(format!("{}/p2p/{}", p2p_addr(j), peer_id(kj)?)))
            .collect::<Result<_>>()?;
        cfg.node.peers = peers;
        if appliance {
            cfg.node.genesis = Some(PathBuf::from("/data/etc/genesis.json"));
            cfg.node.key = Some(PathBuf::from("/data/etc/node.key"));
            cfg.node.data_dir = Some(PathBuf::from("/data/chain"));
            cfg.fs.dir = Some(PathBuf::from("/data/fs"));
            cfg.fs.addr = format!("0.0.0.0:{}", aergo_os::paths::FS_PORT);
            cfg.node.rpc_addr = format!("0.0.0.0:{}", aergo_os::paths::RPC_PORT);
            cfg.node.p2p_addr = format!("0.0.0.0:{}", aergo_os::paths::P2P_PORT);
        } else {
            cfg.node.genesis = Some(genesis_path.clone());
            cfg.node.key = Some(dir.join("node.key"));
            cfg.node.data_dir = Some(dir.join("data"));
            cfg.node.rpc_addr = format!("{}:{}", a.host, a.base_port as usize + 10 * i);
            cfg.node.p2p_addr = format!("{}:{}", a.host, a.base_port as usize + 10 * i + 1);
        }
        cfg.validate().context("generated config")?;
        let text = toml::to_string_pretty(&cfg).context("render aergo.toml")?;
        let role = if i < a.bps {
            "block producer"
        } else {
            "follower"
        };
        let path = dir.join("aergo.toml");
        std::fs::write(
            &path,
            format!(
                "# {} node {} ({role}), written by `aergo testnet init`.\n{text}",
                a.chain_name,
                i + 1
            ),
        )
        .with_context(|| format!("write {}", path.display()))?;
        let address = Address::from_public_key(&k.public());
        if json {
            listed.push(serde_json::json!({
                "node": i + 1,
                "role": role,
                "address": address.encode(),
                "rpc": cfg.node.rpc_addr,
                "p2p": cfg.node.p2p_addr,
                "config": path.display().to_string(),
            }));
        } else {
            println!(
                "node{}  {role:14}  {address}  rpc {}  p2p {}",
                i + 1,
                cfg.node.rpc_addr,
                cfg.node.p2p_addr
            );
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "nodes": listed,
                "genesis": genesis_path.display().to_string(),
                "chain_id": genesis.chain_id().to_string(),
                "first_slot_ms": start,
                "faucet_key": out.join("faucet.key").display().to_string(),
            })
        );
        return Ok(());
    }
    println!(
        "genesis {} (chain id {}), first slot at {}; faucet key {}",
        genesis_path.display(),
        genesis.chain_id(),
        crate::human::local_time(start),
        out.join("faucet.key").display()
    );
    println!(
        "start node 1: aergo-node --config {}",
        out.join("node1").join("aergo.toml").display()
    );
    Ok(())
}
