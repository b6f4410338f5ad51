//! `aergo`: the AERGO command-line client.
//!
//! It talks only JSON-RPC to a node (`--rpc URL`, else `AERGO_RPC`, else
//! http://127.0.0.1:7845), keeps wallet accounts in encrypted keystore files
//! (`--keystore DIR`, else `AERGO_KEYSTORE`, else ~/.aergo/keystore), and reaches AergoFS
//! (`aergo fs`) and the appliance's init (`aergo os`). Human output by default; `--json`
//! prints stable field names for scripts.

mod branch_cmd;
mod contract_cmd;
mod fs_cmd;
mod human;
mod os_cmd;
mod preconf_cmd;
mod preflight;
mod repo_cmd;
mod staking_cmd;
mod testnet_cmd;
mod wallet;

use aergo_rpc::{RpcClient, RpcError};
use aergo_types::{Address, Aer, Hash, Tx, TxKind};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "aergo", version, about = "AERGO command-line client")]
struct Cli {
    /// Node JSON-RPC URL, or `unix:PATH` for the node's operator socket (`DATA_DIR/rpc.sock`,
    /// mode 0600), which reads private repositories without `--as`.
    #[arg(long, global = true, help_heading = "Global options", env = "AERGO_RPC", hide_env_values = true, default_value = aergo_os::paths::DEFAULT_RPC_URL)]
    rpc: String,
    /// Print JSON with stable field names.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    /// Keystore folder.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AERGO_KEYSTORE",
        hide_env_values = true
    )]
    keystore: Option<PathBuf>,
    /// Keystore password for non-interactive use.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AERGO_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// AergoFS URL.
    #[arg(long, global = true, help_heading = "Global options", env = "AERGO_FS", hide_env_values = true, default_value = aergo_os::paths::DEFAULT_FS_URL)]
    fs: String,
    /// init control endpoint: a Unix socket path or HOST[:PORT] (default /run/aergo/init.sock).
    // The doc comment is clap's help text, not rustdoc: `[:PORT]` is not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AERGO_INIT_ADDR",
        hide_env_values = true
    )]
    init_addr: Option<String>,
    /// Token for a remote init endpoint.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AERGO_INIT_TOKEN",
        hide_env_values = true
    )]
    init_token: Option<String>,
    /// Repository to address (default: the root chain `aergo`); see `aergo repo list`.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AERGO_REPO",
        hide_env_values = true
    )]
    repo: Option<String>,
    /// Sign every request as this account (a keystore address or name, or `dev`): members
    /// read private repositories this way.
    #[arg(
        long = "as",
        global = true,
        help_heading = "Global options",
        env = "AERGO_AS",
        hide_env_values = true
    )]
    as_account: Option<String>,
    /// Branch to address (default: the one `aergo switch` chose, else `main`); `a/b` is
    /// branch b of branch a.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AERGO_BRANCH",
        hide_env_values = true
    )]
    branch: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Wallet accounts (encrypted keystore files).
    #[command(subcommand)]
    Account(AccountCmd),
    /// Send AERGO.
    Send {
        /// Sender: an address in the keystore, or `dev` for the dev chain's funded account.
        #[arg(long)]
        from: String,
        /// Recipient address.
        #[arg(long)]
        to: String,
        /// Amount: `10` (AERGO), `1.5aergo` or `5000aer`.
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        /// Wait for the producer's signed pre-confirmation (milliseconds), until the transfer
        /// is included in a block, or final.
        #[arg(long)]
        wait: Option<WaitFor>,
        /// Nonce (default: the account's next nonce, counting pending transactions).
        #[arg(long)]
        nonce: Option<u64>,
        /// Gas price in aer (default: the chain's minimum).
        #[arg(long)]
        gas_price: Option<u128>,
        /// Gas limit (default: what the transfer needs).
        #[arg(long)]
        gas_limit: Option<u64>,
    },
    /// A transaction by hash.
    Tx {
        /// Transaction hash.
        hash: String,
    },
    /// A transaction's receipt.
    Receipt {
        /// Transaction hash.
        hash: String,
    },
    /// A block by height, ref or hash (default: the best block).
    Block {
        /// A height, a ref (`feat`, `feat@12`, `feat~3`, `main@1200`) or a block hash.
        id: Option<String>,
        /// Include full transactions.
        #[arg(long)]
        full: bool,
    },
    /// The latest blocks, a range of heights, or new blocks as they come.
    Blocks {
        /// How many of the latest (without --from/--to).
        #[arg(long, default_value_t = 10)]
        last: u64,
        /// First height of a range.
        #[arg(long)]
        from: Option<u64>,
        /// Last height of a range (default: the best height).
        #[arg(long)]
        to: Option<u64>,
        /// Keep printing new blocks as they arrive (over the WebSocket subscription); Ctrl-C
        /// stops.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        follow: bool,
    },
    /// Chain summary: id, height, finalized height, best hash.
    Chain,
    /// An account's balance and nonce, now or at a past height.
    Balance {
        /// Address (or `dev`).
        address: String,
        /// Where to read: a height, or a ref (`feat`, `feat@12`, `feat~3`, `main@1200`).
        #[arg(long)]
        at: Option<String>,
    },
    /// The node.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Pending transactions.
    Mempool {
        /// Most to list.
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// An account's Merkle proof against a block's state root, verified locally.
    Proof {
        /// Address.
        address: String,
        /// Where to read: a height, or a ref (`feat`, `feat@12`, `feat~3`, `main@1200`); the
        /// proof verifies against that block's state root.
        #[arg(long)]
        at: Option<String>,
    },
    /// AergoSQL contracts: deploy, upgrade, call, view, query, abi.
    #[command(subcommand)]
    Contract(contract_cmd::ContractCmd),
    /// A local AergoSQL sandbox: deploys FILE into a throwaway state and runs lines from stdin.
    Sql {
        /// The contract script.
        file: PathBuf,
    },
    /// AergoFS files (`aergofs serve` runs a server).
    #[command(
        subcommand,
        after_help = "Server: --fs URL or AERGO_FS (default http://127.0.0.1:7848).\nWrites to a server listening beyond loopback need its token: AERGO_FS_TOKEN (the token)\nor AERGO_FS_TOKEN_FILE (a file holding it; on the appliance /data/etc/fs.token)."
    )]
    Fs(fs_cmd::FsCmd),
    /// Local DPoS testnets: `aergo testnet init --bps 4 --out DIR`.
    #[command(subcommand)]
    Testnet(testnet_cmd::TestnetCmd),
    /// The appliance (init): services, logs, reboot, power off.
    #[command(subcommand)]
    Os(os_cmd::OsCmd),
    /// DPoS staking: stake, unstake, vote, bp, gov, staking.
    #[command(flatten)]
    Staking(staking_cmd::StakingCmd),
    /// Repositories: ledgers of their own beside the root chain (create, list, show,
    /// members, nodes).
    #[command(subcommand)]
    Repo(repo_cmd::RepoCmd),
    /// Pre-confirmations: `verify FILE|-` checks one offline and against the chain.
    Preconf {
        #[command(subcommand)]
        cmd: PreconfCmd,
    },
    /// Branches of the chain: list (default), create, delete, accept.
    Branch {
        #[command(subcommand)]
        cmd: Option<branch_cmd::BranchCmd>,
    },
    /// Merge a branch into its parent, with the strategy it was created with: auto replays
    /// its transactions since the last merge, leaving out those that no longer hold with
    /// their reason; consistent merges state three ways and refuses on a conflict.
    Merge {
        /// The branch to merge.
        source: String,
        /// The branch to merge into (default: the addressed branch; when that is SOURCE
        /// itself, its parent).
        #[arg(long)]
        into: Option<String>,
        /// Merge the source up to this height (default: its last final block).
        #[arg(long)]
        to: Option<u64>,
        /// Show what would be merged and left out; send nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        tx: staking_cmd::TxArgs,
    },
    /// The state that differs between two refs: accounts (balance, nonce) and contract rows.
    /// A ref is a height (`12`), a branch's tip (`feat`), `feat@12`, `feat~3` or `main@1200`.
    Diff {
        /// The first ref.
        from: String,
        /// The second ref.
        to: String,
        /// Most changes per page.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Continue after this key (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
    },
    /// Blocks from REF (default: the addressed branch's tip) down, merges shown with their
    /// second parent and what they merged and left out.
    Log {
        /// Where to start: a ref (`feat`, `feat~3`, `main@1200`, a height).
        at: Option<String>,
        /// How many blocks.
        #[arg(short = 'n', long, default_value_t = 10)]
        n: u64,
    },
    /// Make BRANCH the default of every command (`main` to go back); kept in ~/.aergo/branch.
    Switch {
        /// The branch.
        #[arg(value_name = "BRANCH")]
        target: String,
    },
    /// Tag a block (default: the addressed branch's best block): NAME then reads as that
    /// block in every ref (`--at v1`). Tags are immutable. On the chain, or with --repo in the
    /// repository's directory (its `main` only).
    Tag {
        /// Tag name (1 to 64 of a-z A-Z 0-9 - _ .; not all digits).
        name: String,
        /// The block: a height or a ref (`feat@12`, `main~3`; default: the best block).
        #[arg(value_name = "REF")]
        at: Option<String>,
        #[command(flatten)]
        tx: staking_cmd::TxArgs,
    },
    /// Identifiers in the directory of the repository given with --repo: set, show, revoke.
    #[command(subcommand)]
    Name(repo_cmd::NameCmd),
    /// Shell completion script: `aergo completions bash > ~/.local/share/bash-completion/completions/aergo`.
    Completions {
        /// bash, zsh or fish.
        shell: CompletionShell,
    },
}

/// Shells `aergo completions` writes for.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand, Debug)]
enum AccountCmd {
    /// Create an account; prints its address.
    New {
        /// A name for the account, usable wherever an address goes (`--to demo`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List keystore accounts with their names and balances.
    List,
    /// Import a secret key (64 hex characters) into the keystore.
    Import {
        /// Hex secret key; read from stdin when absent.
        #[arg(long)]
        key: Option<String>,
        /// A name for the account, usable wherever an address goes.
        #[arg(long)]
        name: Option<String>,
    },
    /// Export an account's secret key (hex). Handle with care.
    Export {
        /// Address.
        address: String,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// Version, peers, mempool, sync state.
    Status,
    /// Connected peers (id, address, direction, best height, latency).
    Peers,
    /// Consensus: engine, LIB, the producer schedule with scores, upcoming slots.
    Consensus,
}

#[derive(Subcommand, Debug)]
pub(crate) enum PreconfCmd {
    /// Verify a pre-confirmation (what `send --wait preconfirmed --json` printed): its
    /// receipt against the sequencing hash, the signature, the slot's producer, and whether
    /// the promised block kept it.
    Verify {
        /// The file, or `-` for stdin.
        file: String,
        /// The slot schedule, offline: a JSON array of `{"slot", "producer"}` (what
        /// `aergo consensus --json` lists as `upcoming`); default: ask the node at --rpc.
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Report a broken pre-confirmation: builds evidence (the promise, the producer's signed
    /// block header for that slot and the block's transaction hashes), checks it locally and
    /// sends it as an evidence transaction (DPoS chains). Every node verifies it; the
    /// producer loses `slash_fraction` of its stake and is never elected again.
    Report {
        /// The pre-confirmation file, or `-` for stdin.
        file: String,
        /// The account that sends the evidence (pays its fee).
        #[arg(long, default_value = "dev")]
        from: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub(crate) enum WaitFor {
    /// Pre-confirmed: the slot producer's signed result, before any block.
    Preconfirmed,
    /// In a block.
    Included,
    /// In a final block.
    Final,
}

/// The global options each top-level command's `--help` lists (by argument id); the others are
/// hidden there, not refused: `aergo --fs URL balance …` still parses. RPC commands use the
/// node, the keystore (signing, names, `--as`) and the repository; `fs` only AergoFS; `os`
/// only init; `testnet`, `sql` and `completions` work offline.
fn globals_shown(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "fs" => &["json", "fs"],
        "os" => &["json", "init_addr", "init_token"],
        "testnet" | "sql" => &["json"],
        "completions" => &[],
        _ => &[
            "rpc",
            "json",
            "keystore",
            "password",
            "repo",
            "as_account",
            "branch",
        ],
    }
}

/// The command line definition: [`Cli`] with, on each top-level command, a hidden copy of
/// every global option that does not matter to it. clap propagates a global option only to
/// commands without an argument of that id, so the copy (same id, type, default and
/// environment variable, so the parsed values are the same) keeps it out of that command's
/// help and of its subcommands' helps.
fn command() -> clap::Command {
    let root = <Cli as clap::CommandFactory>::command();
    let globals: Vec<clap::Arg> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    let names: Vec<String> = root
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.iter().fold(root, |root, name| {
        let shown = globals_shown(name);
        root.mut_subcommand(name, |sub| {
            globals
                .iter()
                .filter(|a| !shown.contains(&a.get_id().as_str()))
                .fold(sub, |sub, a| sub.arg(a.clone().hide(true)))
        })
    })
}

/// The keystore folder given on the command line, for name lookups in [`resolve_addr`].
static KEYSTORE_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

fn main() {
    // SAFETY: signal(2) before any thread exists, restoring the default action: a reader that
    // stops early (`aergo blocks --last 100 | head`) ends this process quietly, as it does any
    // Unix tool, instead of a panic in `println!` on the broken pipe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let _ = KEYSTORE_DIR.set(cli.keystore.clone());
    human::set_repo_unit(cli.repo.as_deref());
    let rpc_url = cli.rpc.clone();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("error: {}", human::aer_to_aergo(&format!("{e:#}")));
        let unreachable = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<RpcError>(),
                Some(RpcError::Unreachable { .. })
            )
        });
        if unreachable {
            eprintln!("hint: {}", human::unreachable_hint(&rpc_url));
        }
        std::process::exit(1);
    }
}

fn block_header() -> String {
    format!(
        "{:>8}  {:<19}  {:>5}  {:>7}  {:<16}",
        "HEIGHT", "TIME", "TXS", "BYTES", "HASH"
    )
}

fn block_line(b: &aergo_rpc::BlockSummary) -> String {
    format!(
        "{:>8}  {:<19}  {:>5}  {:>7}  {}…",
        b.height,
        human::local_time(b.timestamp_ms),
        b.tx_count,
        b.size,
        b.hash.to_hex().get(..16).unwrap_or("")
    )
}

pub(crate) fn print(json_mode: bool, v: &Value, human: impl FnOnce() -> String) {
    if json_mode {
        println!("{}", serde_json::to_string(v).unwrap_or_default());
    } else {
        println!("{}", human());
    }
}

fn aergo(s: &str) -> String {
    Aer::parse_aer(s)
        .map(|a| format!("{} {}", a.to_aergo_string(), human::unit()))
        .unwrap_or_else(|_| s.to_string())
}

fn parse_hash(s: &str) -> Result<Hash> {
    Hash::from_hex(s).map_err(|e| anyhow::anyhow!(e))
}

/// An address from what was typed: `dev`, a name from the address book (`aergo account
/// list`), or a base58 address; common slips (`0x…`, `DEV`) get an error that says what to type.
pub(crate) fn resolve_addr(s: &str) -> Result<Address> {
    let t = s.trim();
    if t == "dev" {
        return Ok(Address::from_public_key(
            &aergo_types::Keypair::dev().public(),
        ));
    }
    if t.eq_ignore_ascii_case("dev") {
        bail!("unknown account `{t}`: did you mean `dev` (lower case), the dev chain's funded account?");
    }
    if let Ok(a) = Address::decode(t) {
        return Ok(a);
    }
    if t.starts_with("0x") || t.starts_with("0X") {
        bail!("`{t}` is a hex address: AERGO addresses are base58 and start with `A` (e.g. from `aergo account list`)");
    }
    if wallet::check_name(t).is_ok() {
        let ks = wallet::Keystore::new(KEYSTORE_DIR.get().cloned().flatten())?;
        if let Some(a) = ks.lookup(t)? {
            return Ok(a);
        }
        bail!(
            "`{t}` is not an address, and no account or contract has that name in {} (see `aergo account list`)",
            ks.dir().display()
        );
    }
    Address::decode(t).map_err(|e| {
        anyhow::anyhow!("`{t}` is not an address (base58, starting with `A`) nor a name: {e}")
    })
}

/// The address book's names, address → name (empty when there is none or it cannot be read):
/// human output shows `A… (node5)` where the reader named an account.
fn names_by_address() -> std::collections::HashMap<String, String> {
    wallet::Keystore::new(KEYSTORE_DIR.get().cloned().flatten())
        .and_then(|ks| ks.names())
        .map(|n| n.into_iter().map(|(name, a)| (a, name)).collect())
        .unwrap_or_default()
}

async fn run(cli: Cli) -> Result<()> {
    let j = cli.json;
    let reader = match &cli.as_account {
        Some(a) => Some(signing_key(
            cli.keystore.clone(),
            cli.password.as_deref(),
            a,
        )?),
        None => None,
    };
    let branch = branch_cmd::current(cli.branch.clone())?;
    let client = || {
        RpcClient::new(&cli.rpc, Duration::from_secs(30))
            .map(|c| {
                c.with_repo(cli.repo.clone())
                    .with_signer(reader.clone())
                    .with_branch(branch.clone())
            })
            .map_err(anyhow::Error::from)
    };
    match cli.cmd {
        Cmd::Account(a) => {
            let ks = wallet::Keystore::new(cli.keystore.clone())?;
            match a {
                AccountCmd::New { name } => {
                    if let Some(n) = &name {
                        wallet::check_name(n)?;
                        if let Some(a) = ks.lookup(n)? {
                            bail!("the name `{n}` is already taken by {a}; choose another");
                        }
                    }
                    let pw = wallet::password(cli.password.as_deref(), true)?;
                    let addr = ks.create(&pw)?;
                    if let Some(n) = &name {
                        ks.set_name(n, &addr)?;
                    }
                    print(j, &json!({"address": addr.encode(), "name": name}), || {
                        format!(
                            "created account {addr}{}\nkeystore: {}",
                            name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
                            ks.path_of(&addr).display()
                        )
                    });
                }
                AccountCmd::List => {
                    let list = ks.list()?;
                    let names = ks.names().unwrap_or_default();
                    let name_of = |a: &Address| {
                        let enc = a.encode();
                        names
                            .iter()
                            .find(|(_, v)| **v == enc)
                            .map(|(k, _)| k.clone())
                    };
                    // Balances when a node answers; `None` (and `-`) otherwise.
                    let c = client()?;
                    let mut balances = Vec::new();
                    let mut reachable = true;
                    for (a, _) in &list {
                        let b = if reachable {
                            match c.account(&a.encode(), None).await {
                                Ok(r) => Some(r.balance),
                                Err(RpcError::Unreachable { .. }) => {
                                    reachable = false;
                                    None
                                }
                                Err(_) => None,
                            }
                        } else {
                            None
                        };
                        balances.push(b);
                    }
                    let v: Vec<Value> = list
                        .iter()
                        .zip(&balances)
                        .map(|((a, p), b)| {
                            json!({"address": a.encode(), "name": name_of(a), "balance": b.map(|b| b.to_string()), "file": p.display().to_string()})
                        })
                        .collect();
                    print(j, &json!(v), || {
                        if list.is_empty() {
                            return format!("no accounts in {}", ks.dir().display());
                        }
                        let mut s = format!("{:<54} {:<16} {:>24}", "ADDRESS", "NAME", "BALANCE");
                        for ((a, _), b) in list.iter().zip(&balances) {
                            s.push_str(&format!(
                                "\n{:<54} {:<16} {:>24}",
                                a.encode(),
                                name_of(a).unwrap_or_else(|| "-".into()),
                                b.map(human::aergo).unwrap_or_else(|| "-".into())
                            ));
                        }
                        if !reachable {
                            s.push_str(&format!("\n(balances: no node answers at {})", cli.rpc));
                        }
                        s
                    });
                }
                AccountCmd::Import { key, name } => {
                    let hex_key = match key {
                        Some(k) => k,
                        None => {
                            let mut s = String::new();
                            std::io::stdin()
                                .read_line(&mut s)
                                .context("read key from stdin")?;
                            s
                        }
                    };
                    if let Some(n) = &name {
                        wallet::check_name(n)?;
                    }
                    let pw = wallet::password(cli.password.as_deref(), true)?;
                    let addr = ks.import(hex_key.trim(), &pw)?;
                    if let Some(n) = &name {
                        ks.set_name(n, &addr)?;
                    }
                    print(j, &json!({"address": addr.encode(), "name": name}), || {
                        format!(
                            "imported account {addr}{}",
                            name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                        )
                    });
                }
                AccountCmd::Export { address } => {
                    let addr = resolve_addr(&address)?;
                    let pw = wallet::password(cli.password.as_deref(), false)?;
                    let k = ks.unlock(&addr, &pw)?;
                    print(
                        j,
                        &json!({"address": addr.encode(), "secret_key": hex::encode(k.seed())}),
                        || hex::encode(k.seed()),
                    );
                }
            }
        }
        Cmd::Send {
            from,
            to,
            amount,
            wait,
            nonce,
            gas_price,
            gas_limit,
        } => {
            let c = client()?;
            let amount = human::parse_amount(&amount)?;
            let to = resolve_addr(&to)?;
            let key = signing_key(cli.keystore.clone(), cli.password.as_deref(), &from)?;
            let sender = Address::from_public_key(&key.public());
            let opts = TxOpts {
                nonce,
                gas_price,
                gas_limit,
            };
            let sent = submit_full(
                &c,
                &key,
                TxKind::Transfer,
                Some(to),
                amount.0,
                Vec::new(),
                0,
                opts,
                wait == Some(WaitFor::Preconfirmed),
            )
            .await?;
            let (hash, nonce) = (sent.hash, sent.nonce);
            let mut out = json!({"hash": hash, "from": sender.encode(), "to": to.encode(), "amount": amount.to_string(), "nonce": nonce});
            if let Some((p, ms)) = &sent.preconf {
                out["latency_ms"] = json!(ms);
                out["preconfirmation"] = serde_json::to_value(p)?;
                let text = preconf_text(p, *ms);
                print(j, &out, || {
                    format!(
                        "sent {} from {sender} to {to}\ntx {hash}\n{text}",
                        human::aergo(amount)
                    )
                });
                return Ok(());
            }
            if let Some(w) = wait {
                let r = wait_for(&c, &hash, w).await?;
                out["block_height"] = json!(r.block_height);
                out["block_hash"] = json!(r.block_hash);
                out["status"] = json!(r.status);
            }
            print(j, &out, || {
                let mut s = format!(
                    "sent {} from {sender} to {to}\ntx {hash}",
                    human::aergo(amount)
                );
                if let Some(h) = out.get("block_height").and_then(|v| v.as_u64()) {
                    s.push_str(&format!(
                        "\nincluded in block {h} ({})",
                        out["status"].as_str().unwrap_or("")
                    ));
                }
                s
            });
        }
        Cmd::Tx { hash } => {
            let c = client()?;
            let t = c.tx(&parse_hash(&hash)?).await?;
            let v = serde_json::to_value(&t)?;
            print(j, &v, || {
                let mut s = format!(
                    "tx {}\n  status    {}\n  kind      {}\n  from      {}\n  to        {}\n  amount    {}\n  nonce     {}\n  gas       limit {} price {} aer\n  size      {} bytes",
                    t.tx.hash, t.status, t.tx.kind, t.tx.from, t.tx.to.clone().unwrap_or_default(), aergo(&t.tx.amount.to_string()), t.tx.nonce, t.tx.gas_limit, t.tx.gas_price, t.tx.size
                );
                if let Some(c) = human::call_of(&t.tx.kind, &t.tx.payload) {
                    s.push_str(&format!("\n  call      {c}"));
                }
                if let (Some(h), Some(b)) = (t.block_height, t.block_hash) {
                    s.push_str(&format!(
                        "\n  block     {h} ({b}) index {}",
                        t.index.unwrap_or(0)
                    ));
                }
                s
            });
        }
        Cmd::Receipt { hash } => {
            let c = client()?;
            let r = c.receipt(&parse_hash(&hash)?).await?;
            let v = serde_json::to_value(&r)?;
            print(j, &v, || {
                let mut s = format!(
                    "receipt {}\n  status    {}{}\n  block     {} ({}) index {}\n  gas used  {}\n  fee       {}",
                    r.tx_hash,
                    r.status,
                    r.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default(),
                    r.block_height,
                    r.block_hash,
                    r.index,
                    r.gas_used,
                    aergo(&r.fee.to_string())
                );
                if !r.result.is_empty() {
                    s.push_str(&format!("\n  result    {}", r.result));
                }
                for e in &r.events {
                    s.push_str(&format!("\n  event     {}: {}", e.name, e.data));
                }
                s
            });
        }
        Cmd::Block { id, full } => {
            let c = client()?;
            let b = match id {
                None => {
                    c.block_by_height(c.chain_info().await?.height, full)
                        .await?
                }
                Some(s) if s.len() == 64 || s.starts_with("0x") => {
                    c.block_by_hash(&parse_hash(&s)?, full).await?
                }
                Some(s) => {
                    // A height, or a ref (`feat`, `feat@12`, `feat~3`, `main@1200`).
                    let (c, h) = branch_cmd::read_at(&c, Some(&s)).await.with_context(|| {
                        format!("`{s}` is neither a height, a ref nor a 64-character hash")
                    })?;
                    match h {
                        Some(h) => c.block_by_height(h, full).await?,
                        None => bail!("`{s}` names no block"),
                    }
                }
            };
            let v = serde_json::to_value(&b)?;
            print(j, &v, || {
                let mut s = format!(
                    "block {}\n  hash       {}\n  parent     {}\n  time       {}\n  producer   {}\n  txs        {}\n  size       {} bytes\n  gas used   {}\n  state root {}\n  tx root    {}",
                    b.summary.height, b.summary.hash, b.parent_hash, human::local_time(b.summary.timestamp_ms), b.summary.producer, b.summary.tx_count, b.summary.size, b.summary.gas_used, b.state_root, b.tx_root
                );
                for t in &b.txs {
                    match t {
                        Value::String(h) => s.push_str(&format!("\n  - {h}")),
                        other => s.push_str(&format!(
                            "\n  - {}",
                            other.get("hash").and_then(|h| h.as_str()).unwrap_or("")
                        )),
                    }
                }
                s
            });
        }
        Cmd::Blocks {
            last,
            from,
            to,
            follow,
        } => {
            let c = client()?;
            let mut list = match (from, to) {
                (None, None) => c.blocks_last(last).await?,
                (f, t) => {
                    let best = c.chain_info().await?.height;
                    let t = t.unwrap_or(best).min(best);
                    let f = f.unwrap_or(t.saturating_sub(last.saturating_sub(1)));
                    if f > t {
                        bail!("--from {f} is above --to {t} (the best height is {best})");
                    }
                    let mut all = Vec::new();
                    let mut start = f;
                    // The node answers at most 100 blocks per call.
                    while start <= t {
                        let end = t.min(start.saturating_add(99));
                        all.extend(c.blocks_range(start, end).await?);
                        if end == u64::MAX {
                            break;
                        }
                        start = end + 1;
                    }
                    all.sort_by_key(|b| b.height);
                    all
                }
            };
            if follow {
                // A stream reads oldest first: the recent blocks, then each new one below them.
                list.sort_by_key(|b| b.height);
            }
            if j {
                for b in &list {
                    if follow {
                        println!("{}", serde_json::to_string(b)?);
                    }
                }
                if !follow {
                    print(j, &serde_json::to_value(&list)?, String::new);
                }
            } else {
                println!("{}", block_header());
                for b in &list {
                    println!("{}", block_line(b));
                }
            }
            if follow {
                let mut sub = c.subscribe_new_blocks().await?;
                let mut last_seen = list.iter().map(|b| b.height).max().unwrap_or(0);
                while let Some(b) = sub.next().await {
                    let b = b?;
                    if b.height <= last_seen {
                        continue;
                    }
                    // Blocks made between the first listing and the subscription (or skipped by a
                    // lagging subscription) are fetched, so the stream has no gap.
                    let mut gap = Vec::new();
                    if b.height > last_seen.saturating_add(1) && last_seen > 0 {
                        let from = last_seen + 1;
                        let to = (b.height - 1).min(from.saturating_add(99));
                        gap = c.blocks_range(from, to).await?;
                        gap.sort_by_key(|g| g.height);
                    }
                    last_seen = b.height;
                    for b in gap.iter().chain(std::iter::once(&b)) {
                        if j {
                            println!("{}", serde_json::to_string(b)?);
                        } else {
                            println!("{}", block_line(b));
                        }
                    }
                }
                bail!("the node closed the new-blocks subscription");
            }
        }
        Cmd::Chain => {
            let c = client()?;
            let i = c.chain_info().await?;
            let v = serde_json::to_value(&i)?;
            print(j, &v, || {
                format!(
                    "chain      {} ({})\n  chain id   {}\n  height     {}\n  finalized  {}\n  best hash  {}\n  consensus  {} ({} ms blocks)",
                    i.chain_name, i.consensus, i.chain_id, i.height, i.finalized_height, i.best_hash, i.consensus, i.block_interval_ms
                )
            });
        }
        Cmd::Balance { address, at } => {
            let a = resolve_addr(&address)?;
            let (c, at) = branch_cmd::read_at(&client()?, at.as_deref()).await?;
            let r = c.account(&a.encode(), at).await?;
            let v = json!({"address": r.address, "balance": r.balance.to_string(), "nonce": r.nonce, "next_nonce": r.next_nonce, "height": r.height});
            print(j, &v, || {
                format!(
                    "{}\n  address  {}\n  nonce    {}\n  height   {}",
                    human::aergo(r.balance),
                    r.address,
                    r.nonce,
                    r.height
                )
            });
        }
        Cmd::Node(NodeCmd::Status) => {
            let c = client()?;
            let s = c.node_status().await?;
            let v = serde_json::to_value(&s)?;
            print(j, &v, || {
                format!(
                    "aergo-node {}\n  address    {}\n  producer   {}\n  peers      {}\n  mempool    {} txs, {} bytes\n  sync       {}\n  uptime     {} s\n  block log  {}",
                    s.version,
                    s.node_address,
                    s.producer,
                    s.peers,
                    s.mempool_size,
                    s.mempool_bytes,
                    if s.syncing { format!("syncing {}/{}", s.sync_current, s.sync_target) } else { "in sync".into() },
                    s.uptime_secs,
                    s.io_backend
                )
            });
        }
        Cmd::Node(NodeCmd::Consensus) => {
            let c = client()?;
            let v: serde_json::Value = c.call("consensus_info", json!({})).await?;
            print(j, &v, || {
                let names = names_by_address();
                let mut s = format!(
                    "engine {}  height {}  LIB {}  reorgs {}  rejected blocks {}",
                    v["engine"].as_str().unwrap_or("?"),
                    v["height"],
                    v["lib_height"],
                    v["reorgs"],
                    v["rejected_blocks"]
                );
                if let Some(d) = v.get("dpos") {
                    s.push_str(&format!(
                        "\nslot {}  round {} ({} slots)",
                        d["slot"], d["round"], d["round_slots"]
                    ));
                    for (kind, list) in [("active", &d["active"]), ("probation", &d["probation"])] {
                        for bp in list.as_array().into_iter().flatten() {
                            let missed = bp["missed_slots"].as_u64().unwrap_or(0);
                            let addr = bp["address"].as_str().unwrap_or("?");
                            let shown = match names.get(addr) {
                                Some(n) => format!("{addr} ({n})"),
                                None => addr.to_string(),
                            };
                            s.push_str(&format!(
                                "\n  {:<10} {}  score {:>4}  {}  missed {}{}",
                                kind,
                                shown,
                                bp["score"],
                                bp["standing"].as_str().unwrap_or("?"),
                                missed,
                                if missed > 0 {
                                    "  <- missed slots this round: is a node running with this BP's key?"
                                } else {
                                    ""
                                }
                            ));
                        }
                    }
                }
                s
            });
        }
        Cmd::Node(NodeCmd::Peers) => {
            let c = client()?;
            let peers = c.peers().await?;
            let v = serde_json::to_value(&peers)?;
            print(j, &v, || {
                if peers.is_empty() {
                    return "no peers".to_string();
                }
                let mut s = format!(
                    "{:<54} {:<28} {:<8} {:>8} {:>8}  NODE",
                    "ID", "ADDRESS", "DIR", "HEIGHT", "RTT(ms)"
                );
                for p in &peers {
                    s.push_str(&format!(
                        "\n{:<54} {:<28} {:<8} {:>8} {:>8}  {}",
                        p.id,
                        // The peer id is the first column: the address without its `/p2p/ID`.
                        p.address.split("/p2p/").next().unwrap_or(&p.address),
                        p.direction,
                        p.best_height,
                        p.latency_ms
                            .map(|l| l.to_string())
                            .unwrap_or_else(|| "-".into()),
                        // The node address the peer proved by signing a challenge.
                        p.node.as_deref().unwrap_or("-")
                    ));
                }
                s
            });
        }
        Cmd::Mempool { limit } => {
            let c = client()?;
            let m = c.mempool(limit).await?;
            let v = serde_json::to_value(&m)?;
            print(j, &v, || {
                let mut s = format!(
                    "{} pending ({}; limits {} txs, {})",
                    m.count,
                    human::bytes(m.bytes),
                    m.max_txs,
                    human::bytes(m.max_bytes)
                );
                for t in &m.txs {
                    s.push_str(&format!(
                        "\n  {}  {} nonce {}  age {} ms",
                        t.hash, t.from, t.nonce, t.age_ms
                    ));
                }
                s
            });
        }
        Cmd::Proof { address, at } => {
            let (c, at) = branch_cmd::read_at(&client()?, at.as_deref()).await?;
            let a = resolve_addr(&address)?;
            let p = c.get_proof(&a.encode(), at).await?;
            let ok = wallet::verify_proof(&p)?;
            let mut v = serde_json::to_value(&p)?;
            v["verified"] = json!(ok);
            v["exists"] = json!(p.value.is_some());
            print(j, &v, || {
                format!(
                    "{} for {} at height {} against state root {}: {}",
                    if p.value.is_some() {
                        "proof of the account"
                    } else {
                        "proof of ABSENCE (no such account at this height)"
                    },
                    p.address,
                    p.height,
                    p.state_root,
                    if ok { "VALID" } else { "INVALID" }
                )
            });
            if !ok {
                bail!("the proof does not verify against the state root");
            }
        }
        Cmd::Contract(cc) => {
            let c = client()?;
            let (ks_dir, pw) = (cli.keystore.clone(), cli.password.clone());
            let signer = move |from: &str| signing_key(ks_dir.clone(), pw.as_deref(), from);
            contract_cmd::run(cc, &c, j, &signer, cli.keystore.clone()).await?
        }
        Cmd::Sql { file } => contract_cmd::sandbox(&file, j)?,
        Cmd::Fs(f) => fs_cmd::run(f, &cli.fs, j).await?,
        Cmd::Staking(sc) => {
            let c = client()?;
            let (ks_dir, pw) = (cli.keystore.clone(), cli.password.clone());
            let signer = move |from: &str| signing_key(ks_dir.clone(), pw.as_deref(), from);
            staking_cmd::run(sc, &c, j, &signer, cli.keystore.clone()).await?
        }
        Cmd::Repo(rc) => {
            if cli.repo.is_some() {
                bail!("`aergo repo` works on the root chain's registry: drop --repo");
            }
            let c = client()?;
            let (ks_dir, pw) = (cli.keystore.clone(), cli.password.clone());
            let signer = move |from: &str| signing_key(ks_dir.clone(), pw.as_deref(), from);
            repo_cmd::run(rc, &c, j, &signer).await?
        }
        Cmd::Tag { name, at, tx } => {
            let (ks_dir, pw) = (cli.keystore.clone(), cli.password.clone());
            let signer = move |from: &str| signing_key(ks_dir.clone(), pw.as_deref(), from);
            if let Some(e) = aergo_types::branch::tag_name_error(&name) {
                bail!(e);
            }
            match cli.repo.clone() {
                Some(repo) if branch.is_none() => {
                    let height = match at.as_deref() {
                        None => None,
                        Some(s) => Some(s.trim().parse::<u64>().with_context(|| {
                            format!("`{s}`: a repository's directory tags a height of its main")
                        })?),
                    };
                    let c = RpcClient::new(&cli.rpc, Duration::from_secs(30))?
                        .with_signer(reader.clone());
                    repo_cmd::tag(&c, &repo, j, &signer, name, height, tx).await?
                }
                _ => branch_cmd::tag(&client()?, j, &signer, name, at.as_deref(), tx).await?,
            }
        }
        Cmd::Name(nc) => {
            let Some(repo) = cli.repo.clone() else {
                bail!("identifiers live in a repository's directory: give --repo NAME");
            };
            let c = RpcClient::new(&cli.rpc, Duration::from_secs(30))?.with_signer(reader.clone());
            let (ks_dir, pw) = (cli.keystore.clone(), cli.password.clone());
            let signer = move |from: &str| signing_key(ks_dir.clone(), pw.as_deref(), from);
            repo_cmd::name(nc, &c, &repo, j, &signer).await?
        }
        Cmd::Preconf {
            cmd: PreconfCmd::Verify { file, schedule },
        } => preconf_cmd::verify(&file, schedule.as_deref(), client, j).await?,
        Cmd::Preconf {
            cmd: PreconfCmd::Report { file, from },
        } => {
            let c = client()?;
            let key = signing_key(cli.keystore.clone(), cli.password.as_deref(), &from)?;
            preconf_cmd::report(&file, &c, &key, j).await?
        }
        Cmd::Branch { cmd } => {
            let c = client()?;
            let (ks_dir, pw) = (cli.keystore.clone(), cli.password.clone());
            let signer = move |from: &str| signing_key(ks_dir.clone(), pw.as_deref(), from);
            branch_cmd::run(cmd.unwrap_or(branch_cmd::BranchCmd::List), &c, j, &signer).await?
        }
        Cmd::Merge {
            source,
            into,
            to,
            dry_run,
            tx,
        } => {
            let target = match into {
                Some(t) if t == source => {
                    bail!("a branch cannot be merged into itself: give --into its parent")
                }
                Some(t) => Some(t),
                // Switched to the source: merge into its parent.
                None if branch.as_deref() == Some(source.as_str()) => source
                    .rsplit_once('/')
                    .map(|(parent, _)| parent.to_string()),
                None => branch.clone(),
            };
            let c = RpcClient::new(&cli.rpc, Duration::from_secs(30))?
                .with_repo(cli.repo.clone())
                .with_signer(reader.clone())
                .with_branch(target);
            let (ks_dir, pw) = (cli.keystore.clone(), cli.password.clone());
            let signer = move |from: &str| signing_key(ks_dir.clone(), pw.as_deref(), from);
            let source = source.rsplit('/').next().unwrap_or(&source).to_string();
            branch_cmd::merge(&c, &source, to, dry_run, j, &signer, tx).await?
        }
        Cmd::Diff {
            from,
            to,
            limit,
            after,
        } => branch_cmd::diff(&client()?, &from, &to, limit, after, j).await?,
        Cmd::Log { at, n } => branch_cmd::log(&client()?, at.as_deref(), n, j).await?,
        Cmd::Switch { target: b } => {
            let c = RpcClient::new(&cli.rpc, Duration::from_secs(30))?
                .with_repo(cli.repo.clone())
                .with_signer(reader.clone());
            branch_cmd::switch(&c, &b, j).await?
        }
        Cmd::Testnet(t) => testnet_cmd::run(&t, j)?,
        Cmd::Completions { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command(), "aergo", &mut std::io::stdout());
        }
        Cmd::Os(o) => {
            let (addr, tok) = (cli.init_addr.clone(), cli.init_token.clone());
            tokio::task::spawn_blocking(move || os_cmd::run(o, addr.as_deref(), tok.as_deref(), j))
                .await??
        }
    }
    Ok(())
}

/// The key for `--from`: `dev` (the dev genesis's funded account) or a keystore address
/// unlocked with `--password`/`AERGO_PASSWORD` (or a prompt).
pub(crate) fn signing_key(
    keystore: Option<PathBuf>,
    password: Option<&str>,
    from: &str,
) -> Result<aergo_types::Keypair> {
    if from == "dev" {
        return Ok(aergo_types::Keypair::dev());
    }
    let addr = resolve_addr(from)?;
    let ks = wallet::Keystore::new(keystore)?;
    let pw = wallet::password(password, false)?;
    ks.unlock(&addr, &pw)
}

/// Overrides for [`submit`]; `None` takes the default.
#[derive(Default)]
pub(crate) struct TxOpts {
    /// Default: the account's next nonce, counting pending transactions.
    pub nonce: Option<u64>,
    /// Default: the chain's minimum gas price.
    pub gas_price: Option<u128>,
    /// Default: intrinsic gas + `engine_gas`.
    pub gas_limit: Option<u64>,
}

/// Signs and submits a transaction; `engine_gas` is added to the intrinsic gas for contract
/// kinds. Returns (hash, nonce).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn submit(
    c: &RpcClient,
    key: &aergo_types::Keypair,
    kind: TxKind,
    to: Option<Address>,
    amount: u128,
    payload: Vec<u8>,
    engine_gas: u64,
    opts: TxOpts,
) -> Result<(Hash, u64)> {
    let s = submit_full(c, key, kind, to, amount, payload, engine_gas, opts, false).await?;
    Ok((s.hash, s.nonce))
}

/// What [`submit_full`] sent.
pub(crate) struct Submitted {
    pub hash: Hash,
    pub nonce: u64,
    /// With `preconfirm`: the producer's promise and the round trip in ms.
    pub preconf: Option<(aergo_rpc::PreconfJson, f64)>,
}

/// One line about a pre-confirmation for people.
pub(crate) fn preconf_text(p: &aergo_rpc::PreconfJson, ms: f64) -> String {
    let outcome = match &p.receipt.error {
        None => format!("result: {}", p.receipt.result),
        Some(e) => format!("FAILED: {e}"),
    };
    format!(
        "pre-confirmed in {ms:.1} ms by {} (slot {}, block {}, position {}, gas {})\n{outcome}",
        p.producer_address, p.slot, p.height, p.position, p.receipt.gas_used
    )
}

/// [`submit`], optionally waiting for the producer's pre-confirmation.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn submit_full(
    c: &RpcClient,
    key: &aergo_types::Keypair,
    kind: TxKind,
    to: Option<Address>,
    amount: u128,
    payload: Vec<u8>,
    engine_gas: u64,
    opts: TxOpts,
    preconfirm: bool,
) -> Result<Submitted> {
    let info = c.chain_info().await?;
    let sender = Address::from_public_key(&key.public());
    let nonce = match opts.nonce {
        Some(n) => n,
        None => c.account(&sender.encode(), None).await?.next_nonce,
    };
    let intrinsic = info.base_gas + info.per_byte_gas * payload.len() as u64;
    let tx = Tx {
        kind,
        nonce,
        from: key.public(),
        to,
        amount,
        payload,
        gas_limit: opts.gas_limit.unwrap_or(intrinsic + engine_gas),
        gas_price: opts.gas_price.unwrap_or(info.min_gas_price.0),
        chain_id: info.chain_id,
    }
    .sign(key);
    if preconfirm {
        let t0 = Instant::now();
        let r = c.send_tx_preconfirmed(&tx.encode()).await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        return Ok(Submitted {
            hash: r.hash,
            nonce,
            preconf: Some((r.preconfirmation, ms)),
        });
    }
    Ok(Submitted {
        hash: c.send_tx(&tx.encode()).await?.hash,
        nonce,
        preconf: None,
    })
}

/// The signer: `from` when given; on a dev chain (the root chain is `aergo-dev`) `dev`.
pub(crate) async fn default_from(c: &RpcClient, from: Option<&str>) -> Result<String> {
    if let Some(f) = from {
        return Ok(f.to_string());
    }
    // The root's `main` (a branch's chain name is `aergo-dev:NAME`).
    use branch_cmd::ForBranch;
    let root: aergo_rpc::ChainInfo = c
        .clone_for_branch(None)?
        .call("chain_info", json!({"repo": "aergo"}))
        .await?;
    if root.chain_name == "aergo-dev" {
        return Ok("dev".into());
    }
    bail!("give --from: the account that signs (a keystore address or name)")
}

pub(crate) async fn wait_for(
    c: &RpcClient,
    hash: &Hash,
    w: WaitFor,
) -> Result<aergo_rpc::ReceiptJson> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match c.receipt(hash).await {
            Ok(r) => {
                if w != WaitFor::Final {
                    return Ok(r);
                }
                let info = c.chain_info().await?;
                if info.finalized_height >= r.block_height {
                    return Ok(r);
                }
            }
            Err(RpcError::Remote { code, .. }) if code == aergo_rpc::types::codes::NOT_FOUND => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() > deadline {
            bail!(
                "transaction {hash} was not {} within 120 s",
                if w == WaitFor::Final {
                    "final"
                } else {
                    "included"
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
