//! `aergo repo create|list|show`: repositories, ledgers of their own beside the root chain.
//! A create is a `repo_create` transaction on the root chain, signed with `--from` and
//! charged the root's creation fee; by default the command waits until it is in a block
//! and reports its receipt (a failed receipt is an error).

use crate::contract_cmd::Signer;
use crate::staking_cmd::TxArgs;
use aergo_rpc::{RepoJson, RpcClient};
use aergo_types::repo::{RepoCreate, RepoEngine, Visibility};
use aergo_types::{Address, PublicKey, TxKind};
use anyhow::{bail, Context, Result};

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
    /// One repository.
    Show {
        /// Name.
        name: String,
    },
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
        (Some(h), Some(f)) => s.push_str(&format!("\n  hosted      height {h}, finalized {f}")),
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
            crate::print(j, &serde_json::to_value(&r)?, || lines(&r));
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
