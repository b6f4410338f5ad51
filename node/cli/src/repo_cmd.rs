//! `aergo repo create|list|show`: repositories, ledgers of their own beside the root chain.
//! A create is a `repo_create` transaction on the root chain, signed with `--from` and
//! charged the root's creation fee; by default the command waits until it is in a block
//! and reports its receipt (a failed receipt is an error).

use crate::contract_cmd::Signer;
use crate::staking_cmd::TxArgs;
use aergo_rpc::{RepoJson, RpcClient};
use aergo_types::repo::{DdOp, RepoCreate, RepoEngine, Role, Tag, Visibility};
use aergo_types::{Address, Hash, PublicKey, TxKind};
use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Engines a repository can run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum EngineArg {
    /// One producer.
    Solo,
    /// Its producers in turn.
    Poa,
}

/// `aergo repo` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum RepoCmd {
    /// Create a repository (a root-chain transaction; costs the creation fee in AERGO).
    Create {
        /// Name: 3 to 32 characters of a-z, 0-9 and -.
        name: String,
        /// Private: replicated to member nodes only (default: public).
        #[arg(long)]
        private: bool,
        /// Admin account (repeatable; default: the sender).
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// Producer node key: the node's address or its 64-hex public key (repeatable;
        /// default: the node this command talks to).
        #[arg(long = "producer")]
        producers: Vec<String>,
        /// Consensus engine.
        #[arg(long, value_enum, default_value_t = EngineArg::Solo)]
        engine: EngineArg,
        /// Initial units: ADDR=AMOUNT (repeatable; default: the sender holds 1,000,000).
        #[arg(long = "alloc")]
        alloc: Vec<String>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Every repository registered on the root chain.
    List,
    /// One repository, with its directory (members, nodes, tags, identifiers).
    Show {
        /// Name.
        name: String,
    },
    /// Give an account a role, or take it away (a directory change; needs `admin`).
    Members {
        /// Repository.
        name: String,
        /// add or remove.
        action: Action,
        /// The account.
        account: String,
        /// Its role (with add).
        #[arg(long, value_enum, default_value_t = RoleArg::Write)]
        role: RoleArg,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Whether anyone may read (public repositories) and write, without a role (needs `admin`).
    Access {
        /// Repository.
        name: String,
        /// Anyone may read.
        #[arg(long)]
        anonymous_read: Option<bool>,
        /// Anyone may send transactions.
        #[arg(long)]
        anonymous_write: Option<bool>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Allow a node key to replicate the repository, or stop it (needs `admin`).
    Nodes {
        /// Repository.
        name: String,
        /// add or remove.
        action: Action,
        /// The node: its address or 64-hex public key.
        node: String,
        #[command(flatten)]
        tx: TxArgs,
    },
}

/// add or remove.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq)]
pub enum Action {
    /// Add.
    Add,
    /// Remove.
    Remove,
}

/// Member roles.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    /// Read a private repository.
    Read,
    /// Send transactions.
    Write,
    /// Change the directory.
    Admin,
}

/// `aergo name` subcommands: identifiers in a repository's directory (with `--repo`).
#[derive(clap::Subcommand, Debug)]
pub enum NameCmd {
    /// Name TARGET (e.g. a contract address) from a repository height on.
    Set {
        /// The identifier.
        name: String,
        /// What it resolves to.
        target: String,
        /// What it names.
        #[arg(long, default_value = "contract")]
        kind: String,
        /// First repository height it resolves at (default: the next block).
        #[arg(long)]
        from_height: Option<u64>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// What NAME resolves to, at the repository's best height or `--at`.
    Show {
        /// The identifier.
        name: String,
        /// Repository height.
        #[arg(long)]
        at: Option<u64>,
    },
    /// Stop NAME resolving from a repository height on (default: the next block).
    Revoke {
        /// The identifier.
        name: String,
        /// First height at which it no longer resolves.
        #[arg(long)]
        at: Option<u64>,
        #[command(flatten)]
        tx: TxArgs,
    },
}

/// A client for repository `repo`'s directory.
fn dd_client(c: &RpcClient, repo: &str) -> Result<RpcClient> {
    Ok(RpcClient::new(c.url(), std::time::Duration::from_secs(30))?
        .with_repo(Some(format!("{repo}/dd")))
        .with_signer(c.signer().cloned()))
}

/// Sends directory change `op` to repository `repo`'s directory.
pub(crate) async fn send_dd(
    c: &RpcClient,
    repo: &str,
    j: bool,
    signer: Signer<'_>,
    tx: TxArgs,
    op: DdOp,
    done: String,
) -> Result<()> {
    if let Err(e) = op.validate() {
        bail!(e);
    }
    let dd = dd_client(c, repo)?;
    crate::staking_cmd::send(
        &dd,
        j,
        signer,
        tx,
        TxKind::DirectoryChange,
        0,
        op.encode(),
        done,
    )
    .await
}

/// The repository's best height (identifier heights are relative to it).
async fn ledger_height(c: &RpcClient, repo: &str) -> Result<u64> {
    let info: aergo_rpc::ChainInfo = c
        .call("chain_info", serde_json::json!({"repo": repo}))
        .await?;
    Ok(info.height)
}

/// Runs `aergo tag NAME [HEIGHT]` in repository `repo`.
pub async fn tag(
    c: &RpcClient,
    repo: &str,
    j: bool,
    signer: Signer<'_>,
    name: String,
    at: Option<u64>,
    tx: TxArgs,
) -> Result<()> {
    let height = match at {
        Some(h) => h,
        None => ledger_height(c, repo).await?,
    };
    let b: Value = c
        .call("block", serde_json::json!({"repo": repo, "height": height}))
        .await?;
    let hash = Hash::from_hex(b["hash"].as_str().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("block {height}: {e}"))?;
    let op = DdOp::TagSet {
        name: name.clone(),
        tag: Tag {
            branch: "main".into(),
            height,
            hash,
        },
    };
    send_dd(
        c,
        repo,
        j,
        signer,
        tx,
        op,
        format!("tagged {repo}@{height} as {name}"),
    )
    .await
}

/// Runs an `aergo name` command in repository `repo`.
pub async fn name(
    cmd: NameCmd,
    c: &RpcClient,
    repo: &str,
    j: bool,
    signer: Signer<'_>,
) -> Result<()> {
    match cmd {
        NameCmd::Set {
            name,
            target,
            kind,
            from_height,
            tx,
        } => {
            let valid_from = match from_height {
                Some(h) => h,
                None => ledger_height(c, repo).await? + 1,
            };
            let op = DdOp::NameSet {
                name: name.clone(),
                kind,
                target: target.clone(),
                valid_from,
            };
            send_dd(
                c,
                repo,
                j,
                signer,
                tx,
                op,
                format!("{name} → {target} from height {valid_from}"),
            )
            .await
        }
        NameCmd::Revoke { name, at, tx } => {
            let at = match at {
                Some(h) => h,
                None => ledger_height(c, repo).await? + 1,
            };
            let op = DdOp::NameRevoke {
                name: name.clone(),
                at,
            };
            send_dd(
                c,
                repo,
                j,
                signer,
                tx,
                op,
                format!("{name} revoked from height {at}"),
            )
            .await
        }
        NameCmd::Show { name, at } => {
            let mut p = serde_json::json!({"repo": repo, "name": name});
            if let Some(h) = at {
                p["height"] = serde_json::json!(h);
            }
            let v: Value = c.call("dd_resolve", p).await?;
            crate::print(j, &v, || {
                format!(
                    "{name} → {} ({}) at height {}",
                    v["target"].as_str().unwrap_or(""),
                    v["kind"].as_str().unwrap_or(""),
                    v["height"]
                )
            });
            Ok(())
        }
    }
}

fn producer_key(s: &str) -> Result<PublicKey> {
    let t = s.trim();
    if t.len() == 64 {
        if let Ok(b) = hex::decode(t) {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b);
            return Ok(PublicKey(k));
        }
    }
    let a = crate::resolve_addr(t)?;
    a.public_key()
        .with_context(|| format!("producer {a} is a contract address, not a node key"))
}

fn lines(r: &RepoJson) -> String {
    let mut s = format!(
        "repository {}\n  id          {}\n  visibility  {}\n  engine      {}\n  creator     {}\n  created     block {} (tx {})",
        r.name, r.id, r.visibility, r.engine, r.creator, r.created_height, r.created_tx
    );
    for a in &r.admins {
        s.push_str(&format!("\n  admin       {a}"));
    }
    for p in &r.producers {
        s.push_str(&format!("\n  producer    {p}"));
    }
    match (r.height, r.finalized_height) {
        (Some(h), Some(f)) => s.push_str(&format!(
            "\n  hosted      height {h}, finalized {f}{}",
            r.role
                .as_deref()
                .map(|role| format!(" (as {role})"))
                .unwrap_or_default()
        )),
        _ => s.push_str("\n  hosted      no (this node does not carry it)"),
    }
    s
}

/// Runs an `aergo repo` command.
pub async fn run(cmd: RepoCmd, c: &RpcClient, j: bool, signer: Signer<'_>) -> Result<()> {
    match cmd {
        RepoCmd::List => {
            let list = c.repo_list().await?;
            crate::print(j, &serde_json::to_value(&list)?, || {
                if list.is_empty() {
                    return "no repositories (create one with `aergo repo create NAME`)".into();
                }
                let mut s = format!(
                    "{:<32} {:<8} {:<5} {:>8} {:>8} {:>6}",
                    "NAME", "VISIBLE", "ENGINE", "HEIGHT", "FINAL", "HOSTED"
                );
                for r in &list {
                    let opt = |v: Option<u64>| v.map(|h| h.to_string()).unwrap_or("-".into());
                    s.push_str(&format!(
                        "\n{:<32} {:<8} {:<5} {:>8} {:>8} {:>6}",
                        r.name,
                        r.visibility,
                        r.engine,
                        opt(r.height),
                        opt(r.finalized_height),
                        if r.hosted { "yes" } else { "no" }
                    ));
                }
                s
            });
        }
        RepoCmd::Show { name } => {
            let r = c.repo_show(&name).await?;
            let mut v = serde_json::to_value(&r)?;
            let dd: Option<Value> = if r.hosted {
                Some(c.call("dd_info", serde_json::json!({"repo": name})).await?)
            } else {
                None
            };
            v["directory"] = dd.clone().unwrap_or(Value::Null);
            crate::print(j, &v, || {
                let mut s = lines(&r);
                if let Some(d) = &dd {
                    s.push_str(&format!(
                        "\n  directory   height {} (finalized {}), anonymous read {}, write {}",
                        d["best_height"],
                        d["finalized_height"],
                        d["anonymous_read"],
                        d["anonymous_write"]
                    ));
                    for m in d["members"].as_array().into_iter().flatten() {
                        s.push_str(&format!(
                            "\n  member      {} {}",
                            m["account"].as_str().unwrap_or(""),
                            m["role"].as_str().unwrap_or("")
                        ));
                    }
                    for n in d["nodes"].as_array().into_iter().flatten() {
                        s.push_str(&format!("\n  node        {}", n.as_str().unwrap_or("")));
                    }
                    for b in d["branches"].as_array().into_iter().flatten() {
                        s.push_str(&format!(
                            "\n  branch      {} forks at {}, {} merge{}, by {}{}",
                            b["path"].as_str().unwrap_or(""),
                            b["fork_height"],
                            b["strategy"].as_str().unwrap_or(""),
                            if b["private"] == true {
                                ", private"
                            } else {
                                ""
                            },
                            b["creator"].as_str().unwrap_or(""),
                            b["deleted"]
                                .as_u64()
                                .map(|h| format!(" (deleted at directory height {h})"))
                                .unwrap_or_default()
                        ));
                    }
                    for t in d["tags"].as_array().into_iter().flatten() {
                        s.push_str(&format!(
                            "\n  tag         {} → {}@{} {}",
                            t["name"].as_str().unwrap_or(""),
                            t["branch"].as_str().unwrap_or(""),
                            t["height"],
                            t["hash"].as_str().unwrap_or("")
                        ));
                    }
                    for i in d["identifiers"].as_array().into_iter().flatten() {
                        s.push_str(&format!(
                            "\n  name        {} → {} ({}) from {}{}",
                            i["name"].as_str().unwrap_or(""),
                            i["target"].as_str().unwrap_or(""),
                            i["kind"].as_str().unwrap_or(""),
                            i["valid_from"],
                            i["revoked_at"]
                                .as_u64()
                                .map(|r| format!(", revoked at {r}"))
                                .unwrap_or_default()
                        ));
                    }
                }
                s
            });
        }
        RepoCmd::Members {
            name,
            action,
            account,
            role,
            tx,
        } => {
            let account = crate::resolve_addr(&account)?;
            let op = match action {
                Action::Add => DdOp::MemberSet {
                    account,
                    role: match role {
                        RoleArg::Read => Role::Read,
                        RoleArg::Write => Role::Write,
                        RoleArg::Admin => Role::Admin,
                    },
                },
                Action::Remove => DdOp::MemberRemove { account },
            };
            let done = format!(
                "{name}: member {account} {}",
                if action == Action::Add {
                    "set"
                } else {
                    "removed"
                }
            );
            send_dd(c, &name, j, signer, tx, op, done).await?;
        }
        RepoCmd::Access {
            name,
            anonymous_read,
            anonymous_write,
            tx,
        } => {
            let now: Value = c.call("dd_info", serde_json::json!({"repo": name})).await?;
            let read = anonymous_read.unwrap_or(now["anonymous_read"] == true);
            let write = anonymous_write.unwrap_or(now["anonymous_write"] == true);
            let op = DdOp::Anonymous { read, write };
            let done = format!("{name}: anonymous read {read}, write {write}");
            send_dd(c, &name, j, signer, tx, op, done).await?;
        }
        RepoCmd::Nodes {
            name,
            action,
            node,
            tx,
        } => {
            let key = producer_key(&node)?;
            let op = match action {
                Action::Add => DdOp::NodeAdd { key },
                Action::Remove => DdOp::NodeRemove { key },
            };
            let done = format!(
                "{name}: node {} {}",
                Address::from_public_key(&key),
                if action == Action::Add {
                    "added"
                } else {
                    "removed"
                }
            );
            send_dd(c, &name, j, signer, tx, op, done).await?;
        }
        RepoCmd::Create {
            name,
            private,
            admins,
            producers,
            engine,
            alloc,
            tx,
        } => {
            if let Some(e) = aergo_types::repo::name_error(&name) {
                bail!(e);
            }
            let from = crate::default_from(c, tx.from.as_deref()).await?;
            let sender = Address::from_public_key(&signer(&from)?.public());
            let admins = if admins.is_empty() {
                vec![sender]
            } else {
                admins
                    .iter()
                    .map(|a| crate::resolve_addr(a))
                    .collect::<Result<_>>()?
            };
            let producers = if producers.is_empty() {
                let st = c.node_status().await?;
                vec![producer_key(&st.node_address).context("the node's key")?]
            } else {
                producers
                    .iter()
                    .map(|p| producer_key(p))
                    .collect::<Result<_>>()?
            };
            let alloc = alloc
                .iter()
                .map(|a| {
                    let (addr, amount) = a
                        .split_once('=')
                        .with_context(|| format!("--alloc `{a}`: write ADDR=AMOUNT"))?;
                    Ok((
                        crate::resolve_addr(addr)?,
                        crate::human::parse_amount(amount)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let create = RepoCreate {
                name: name.clone(),
                visibility: if private {
                    Visibility::Private
                } else {
                    Visibility::Public
                },
                engine: match engine {
                    EngineArg::Solo => RepoEngine::Solo,
                    EngineArg::Poa => RepoEngine::Poa,
                },
                admins,
                producers,
                alloc,
            };
            if let Err(e) = create.validate() {
                bail!(e);
            }
            let tx = TxArgs {
                from: Some(from),
                ..tx
            };
            crate::staking_cmd::send(
                c,
                j,
                signer,
                tx,
                TxKind::RepoCreate,
                0,
                create.encode(),
                format!("created repository {name}"),
            )
            .await?;
        }
    }
    Ok(())
}
