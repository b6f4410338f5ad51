//! `aergo branch`, `aergo merge` and `aergo switch`: branches of the addressed chain (the
//! root chain, or `--repo NAME`), merges back into their parent, and the CLI's default
//! branch (kept in `~/.aergo/branch`, overridden by `--branch` / `AERGO_BRANCH`).

use crate::contract_cmd::Signer;
use crate::staking_cmd::TxArgs;
use aergo_rpc::RpcClient;
use aergo_types::block_ext::MergeStrategy;
use aergo_types::branch::{BranchOp, MergeOp};
use aergo_types::{Address, PublicKey, TxKind};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Branch subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BranchCmd {
    /// List the branches of the addressed chain (the default).
    List,
    /// Create a branch: O(1), no state is copied. Its producer is the node you talk to,
    /// which must accept it (loopback only), unless --producer names another node's key.
    /// With --repo, a directory change of the repository (needs the `write` role; a branch
    /// of --branch feat is recorded as feat/NAME).
    Create {
        /// Its name (a-z, 0-9, - and _; not all digits; not `main`).
        name: String,
        /// The parent's height to fork from (default: the last final block); a fork point
        /// must be final.
        #[arg(long)]
        at: Option<u64>,
        /// The producing node's key (its address `A…` or 64 hex digits); its operator must
        /// accept the branch with `aergo branch accept NAME` on that node.
        #[arg(long)]
        producer: Option<String>,
        /// How it merges back: `auto` replays its transactions on the parent, leaving out
        /// those that no longer hold; `consistent` merges state three ways (a change made on
        /// one side applies; a native balance changed on both sides gets both deltas; any
        /// other key changed on both sides refuses the merge, listing the conflicts).
        #[arg(long = "merge", value_name = "auto|consistent", default_value = "auto", value_parser = parse_strategy)]
        strategy: MergeStrategy,
        /// With `--merge consistent`: the contract whose function `resolve_<table>(col TEXT,
        /// base TEXT, ours TEXT, theirs TEXT) RETURNS TEXT` decides each cell of a row changed
        /// on both sides (RAISE EXCEPTION refuses the merge). Without one, such rows refuse it.
        #[arg(long)]
        resolver: Option<String>,
        /// Private: only its creator (the signer, --from) reads it and sends to it; other
        /// commands reach it with `aergo --as CREATOR`.
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Delete a branch (only its creator may; in a repository, also an admin); its blocks
    /// stay readable until pruned.
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Accept producing branch NAME on the node you talk to (an operator command: loopback
    /// only).
    Accept {
        /// The branch's name.
        name: String,
    },
}

/// `--merge auto|consistent`.
fn parse_strategy(s: &str) -> std::result::Result<MergeStrategy, String> {
    match s {
        "auto" => Ok(MergeStrategy::Auto),
        "consistent" => Ok(MergeStrategy::Consistent),
        _ => Err(format!("`{s}`: the merge strategy is auto or consistent")),
    }
}

/// The file that keeps the switched branch.
fn switch_file() -> Result<PathBuf> {
    Ok(std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")?
        .join(".aergo")
        .join("branch"))
}

/// The branch commands address: `--branch`, else the switched one, else `main`.
pub fn current(flag: Option<String>) -> Result<Option<String>> {
    if let Some(b) = flag {
        return Ok(Some(b));
    }
    match std::fs::read_to_string(switch_file()?) {
        Ok(t) => Ok(Some(t.trim().to_string()).filter(|b| !b.is_empty() && b != "main")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("read the switched branch"),
    }
}

fn check_name(name: &str) -> Result<()> {
    match aergo_types::branch::name_error(name) {
        Some(e) => bail!(e),
        None => Ok(()),
    }
}

/// `aergo switch BRANCH`: checks the branch exists on the node, then keeps it as the default.
pub async fn switch(c: &RpcClient, branch: &str, j: bool) -> Result<()> {
    let path = switch_file()?;
    if branch == "main" {
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e).context("forget the switched branch");
            }
        }
        crate::print(j, &json!({"branch": "main"}), || "switched to main".into());
        return Ok(());
    }
    for part in branch.split('/') {
        check_name(part)?;
    }
    let info = c
        .clone_for_branch(Some(branch.to_string()))?
        .chain_info()
        .await
        .with_context(|| format!("branch `{branch}`"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, format!("{branch}\n"))?;
    crate::print(
        j,
        &json!({"branch": branch, "chain_id": info.chain_id, "height": info.height}),
        || {
            format!(
                "switched to branch {branch} (height {}); commands address it until `aergo switch main`",
                info.height
            )
        },
    );
    Ok(())
}

/// Extension: a client like `c` addressing another branch.
pub(crate) trait ForBranch {
    fn clone_for_branch(&self, b: Option<String>) -> Result<RpcClient>;
}

impl ForBranch for RpcClient {
    fn clone_for_branch(&self, b: Option<String>) -> Result<RpcClient> {
        Ok(
            RpcClient::new(self.url(), std::time::Duration::from_secs(30))?
                .with_repo(self.repo().map(String::from))
                .with_signer(self.signer().cloned())
                .with_branch(b),
        )
    }
}

/// Branch `name`'s path in the repository `c` addresses: its directory records a branch of
/// `--branch feat` as `feat/NAME`.
fn repo_path(c: &RpcClient, name: &str) -> String {
    match c.branch().filter(|b| *b != aergo_types::branch::MAIN) {
        Some(parent) => format!("{parent}/{name}"),
        None => name.to_string(),
    }
}

fn producer_key(s: &str) -> Result<PublicKey> {
    if let Ok(a) = Address::decode(s.trim()) {
        return a
            .public_key()
            .context("a producer is a node key: an account address, not a contract's");
    }
    let bytes = hex::decode(s.trim()).context("a node key is an address A… or 64 hex digits")?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a node key is 32 bytes (64 hex digits)"))?;
    Ok(PublicKey(arr))
}

/// Runs a branch subcommand on the chain `c` addresses.
pub async fn run(cmd: BranchCmd, c: &RpcClient, j: bool, signer: Signer<'_>) -> Result<()> {
    match cmd {
        BranchCmd::List => list(c, j).await,
        BranchCmd::Accept { name } => {
            check_name(&name)?;
            let v: Value = c.call("admin_branch_accept", json!({"name": name})).await?;
            crate::print(j, &v, || {
                format!(
                    "this node ({}) will produce branch {name} when it names its key",
                    v["producer"].as_str().unwrap_or("?")
                )
            });
            Ok(())
        }
        BranchCmd::Create {
            name,
            at,
            producer,
            strategy,
            resolver,
            private,
            tx,
        } => {
            check_name(&name)?;
            let resolver = match resolver {
                Some(r) if strategy == MergeStrategy::Consistent => Some(
                    Address::decode(&r)
                        .with_context(|| format!("--resolver `{r}` is not a contract address"))?,
                ),
                Some(_) => bail!("--resolver decides consistent merges: add --merge consistent"),
                None => None,
            };
            let info = c.chain_info().await?;
            let fork_height = at.unwrap_or(info.finalized_height);
            let producer = match producer {
                Some(p) => producer_key(&p)?,
                None => {
                    let v: Value = c
                        .call("admin_branch_accept", json!({"name": name}))
                        .await
                        .context(
                            "the node you talk to produces the branch only if you are its operator \
                             (admin requests are served on loopback); give --producer with the key of a node you operate",
                        )?;
                    producer_key(v["producer"].as_str().unwrap_or_default())?
                }
            };
            let done = format!(
                "created branch {name}, forking at height {fork_height}, produced by {}, merging {}",
                Address::from_public_key(&producer),
                match strategy {
                    MergeStrategy::Auto => "auto",
                    MergeStrategy::Consistent => "consistent",
                }
            );
            if let Some(repo) = c.repo() {
                // A repository's branches are recorded by its directory.
                let b: Value = c.call("block", json!({"height": fork_height})).await?;
                let fork_hash = aergo_types::Hash::from_hex(b["hash"].as_str().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!("block {fork_height}: {e}"))?;
                let op = aergo_types::repo::DdOp::BranchCreate {
                    path: repo_path(c, &name),
                    fork_height,
                    fork_hash,
                    producer,
                    strategy,
                    resolver,
                    private,
                };
                return crate::repo_cmd::send_dd(c, repo, j, signer, tx, op, done).await;
            }
            let op = BranchOp::Create {
                name: name.clone(),
                fork_height,
                producer,
                strategy,
                resolver,
                private,
            };
            crate::staking_cmd::send(c, j, signer, tx, TxKind::Branch, 0, op.encode(), done).await
        }
        BranchCmd::Delete { name, tx } => {
            check_name(&name)?;
            let done = format!("deleted branch {name}");
            if let Some(repo) = c.repo() {
                let op = aergo_types::repo::DdOp::BranchDelete {
                    path: repo_path(c, &name),
                };
                return crate::repo_cmd::send_dd(c, repo, j, signer, tx, op, done).await;
            }
            let op = BranchOp::Delete { name: name.clone() };
            crate::staking_cmd::send(c, j, signer, tx, TxKind::Branch, 0, op.encode(), done).await
        }
    }
}

async fn list(c: &RpcClient, j: bool) -> Result<()> {
    let v: Value = c.call("branch_list", json!({})).await?;
    crate::print(j, &v, || {
        let mut out = format!(
            "{:<20} {:>8} {:>8} {:>8}  {:<10} PRODUCER\n",
            "BRANCH", "FORK", "TIP", "MERGED", "STATE"
        );
        out.push_str(&format!(
            "{:<20} {:>8} {:>8} {:>8}  {:<10} -\n",
            c.branch().unwrap_or("main"),
            "-",
            v["height"].to_string(),
            "-",
            "current"
        ));
        for b in v["branches"].as_array().into_iter().flatten() {
            let state = if !b["deleted"].is_null() {
                "deleted"
            } else if b["produced_here"].as_bool() == Some(true) {
                "produced"
            } else if b["hosted"].as_bool() == Some(true) {
                "hosted"
            } else {
                "not here"
            };
            let tip = b["tip_height"]
                .as_u64()
                .map(|h| h.to_string())
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{:<20} {:>8} {:>8} {:>8}  {:<10} {}\n",
                b["name"].as_str().unwrap_or("?"),
                b["fork_height"].to_string(),
                tip,
                b["merged_up_to"].to_string(),
                state,
                b["producer"].as_str().unwrap_or("?")
            ));
        }
        out.trim_end().to_string()
    });
    Ok(())
}

/// `aergo merge SOURCE [--into TARGET] [--dry-run]`: merges branch `source` into its parent
/// `c` addresses (with the strategy the branch was created with), or shows what would be
/// merged and left out; a consistent merge with conflicts is refused with each of them.
pub async fn merge(
    c: &RpcClient,
    source: &str,
    to: Option<u64>,
    dry_run: bool,
    j: bool,
    signer: Signer<'_>,
    tx: TxArgs,
) -> Result<()> {
    for part in source.split('/') {
        check_name(part)?;
    }
    if c.branch() == Some(source) {
        bail!("a branch cannot be merged into itself; give --into its parent (e.g. main)");
    }
    let mut params = json!({"source": source});
    if let Some(h) = to {
        params["source_height"] = json!(h);
    }
    let preview: Value = c.call("merge_preview", params).await?;
    let target = c.branch().unwrap_or("main").to_string();
    if dry_run {
        crate::print(j, &preview, || preview_text(&preview, source, &target));
        return Ok(());
    }
    let source_height = preview["source_height"]
        .as_u64()
        .context("merge_preview without source_height")?;
    // A merge too large for one block goes in parts, one merge block each, in order.
    let parts: Vec<u64> = match preview["parts"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|p| {
                p["source_height"]
                    .as_u64()
                    .context("a merge part without its height")
            })
            .collect::<Result<_>>()?,
        _ => vec![source_height],
    };
    let from = crate::default_from(c, tx.from.as_deref()).await?;
    let key = signer(&from)?;
    let mut done = Vec::new();
    for (i, &part) in parts.iter().enumerate() {
        let op = MergeOp {
            source: source.to_string(),
            source_height: part,
        };
        let opts = crate::TxOpts {
            nonce: tx.nonce.map(|n| n + i as u64),
            gas_price: tx.gas_price,
            gas_limit: None,
        };
        let (hash, _) =
            crate::submit(c, &key, TxKind::Merge, None, 0, op.encode(), 0, opts).await?;
        if tx.no_wait {
            done.push(json!({"hash": hash, "source_height": part}));
            if i + 1 < parts.len() {
                bail!(
                    "the merge takes {} blocks; --no-wait sent the first part only ({hash}): merge again for the rest",
                    parts.len()
                );
            }
            continue;
        }
        let r = crate::wait_for(c, &hash, crate::WaitFor::Included).await?;
        let block: Value = c.call("block", json!({"height": r.block_height})).await?;
        done.push(json!({"hash": hash, "block_height": r.block_height, "merge": block["merge"]}));
    }
    if tx.no_wait {
        let h = done
            .first()
            .map(|d| d["hash"].clone())
            .unwrap_or(Value::Null);
        crate::print(j, &json!({"hash": h}), || {
            format!("submitted merge {}", h.as_str().unwrap_or("?"))
        });
        return Ok(());
    }
    let last = done.last().cloned().unwrap_or(Value::Null);
    let mut out =
        json!({"hash": last["hash"], "block_height": last["block_height"], "merge": last["merge"]});
    if done.len() > 1 {
        out["parts"] = Value::Array(done.clone());
    }
    crate::print(j, &out, || {
        let mut s = String::new();
        for (i, d) in done.iter().enumerate() {
            let m = &d["merge"];
            if i > 0 {
                s.push('\n');
            }
            s.push_str(&format!(
                "merged {source} up to height {} into {target} in block {}: {} merged, {} left out",
                m["source_height"],
                d["block_height"],
                m["merged"].as_array().map(Vec::len).unwrap_or(0),
                m["excluded"].as_array().map(Vec::len).unwrap_or(0)
            ));
            for e in m["excluded"].as_array().into_iter().flatten() {
                s.push_str(&format!(
                    "\n  left out {}: {} ({})",
                    e["hash"].as_str().unwrap_or("?"),
                    e["reason"].as_str().unwrap_or("?"),
                    e["detail"].as_str().unwrap_or("")
                ));
            }
        }
        s
    });
    Ok(())
}

fn preview_text(p: &Value, source: &str, target: &str) -> String {
    let merged = p["merged"].as_array().map(Vec::len).unwrap_or(0);
    let excluded = p["excluded"].as_array().map(Vec::len).unwrap_or(0);
    let mut s = format!(
        "dry run: merging {source} up to height {} into {target} would merge {merged} of {} transactions and leave out {excluded}",
        p["source_height"], p["candidates"]
    );
    let parts = p["parts"].as_array().map(Vec::len).unwrap_or(1);
    if parts > 1 {
        s.push_str(&format!(" (in {parts} consecutive merge blocks)"));
    }
    for e in p["excluded"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "\n  left out {}: {} ({})",
            e["hash"].as_str().unwrap_or("?"),
            e["reason"].as_str().unwrap_or("?"),
            e["detail"].as_str().unwrap_or("")
        ));
    }
    s.push_str("\nnothing was sent");
    s
}

/// A ref as typed: `12` (a height on the addressed branch), `feat` (its tip), `feat@12`,
/// `feat~3` (3 blocks below its tip), `main@1200`, `a/b@7`, or a tag `v1` (a block of the
/// addressed branch; a bare name is a live branch first, then a tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// The branch (`None`: the addressed one).
    pub branch: Option<String>,
    /// A height.
    pub height: Option<u64>,
    /// Blocks below the tip.
    pub back: Option<u64>,
}

/// Parses a ref (see [`Ref`]).
pub fn parse_ref(s: &str) -> Result<Ref> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Ref {
            branch: None,
            height: Some(s.parse().context("height")?),
            back: None,
        });
    }
    let (name, height, back) = if let Some((n, h)) = s.split_once('@') {
        let h: u64 = h
            .parse()
            .with_context(|| format!("`{s}`: after @ comes a height"))?;
        (n, Some(h), None)
    } else if let Some((n, b)) = s.split_once('~') {
        let b: u64 = b
            .parse()
            .with_context(|| format!("`{s}`: after ~ comes a number of blocks"))?;
        (n, None, Some(b))
    } else {
        (s, None, None)
    };
    // A bare name may be a tag, whose names are wider than a branch's.
    let tag_like = height.is_none() && back.is_none() && !name.contains('/');
    if name != "main" && !(tag_like && aergo_types::branch::tag_name_error(name).is_none()) {
        for part in name.split('/') {
            check_name(part).with_context(|| format!("ref `{s}`"))?;
        }
    }
    Ok(Ref {
        branch: Some(name.to_string()),
        height,
        back,
    })
}

/// Resolves a ref against the node: the branch to address (`None`: the one `c` addresses)
/// and the height. `~N` below a branch's fork point is an error (those blocks are its
/// parent's, not its own).
pub async fn resolve_ref(c: &RpcClient, r: &Ref) -> Result<(Option<String>, u64)> {
    if let (Some(name), None, None) = (r.branch.as_deref(), r.height, r.back) {
        if name != "main" && !name.contains('/') {
            // A live branch of the addressed chain, else one of its tags.
            let here = c.clone_for_branch(c.branch().map(String::from))?;
            let list: Value = here.call("branch_list", json!({})).await?;
            let is_branch = list["branches"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|b| b["name"] == name && b["deleted"].is_null());
            let is_tag = list["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["name"] == name);
            if !is_branch && (is_tag || c.repo().is_some()) {
                // The node checks that the tagged block is still the chain's.
                let b: Value = here.call("block", json!({"at": name})).await?;
                let h = b["height"]
                    .as_u64()
                    .with_context(|| format!("tag `{name}`: no height in {b}"))?;
                return Ok((c.branch().map(String::from), h));
            }
            if !is_branch && check_name(name).is_err() {
                bail!("no branch or tag `{name}` (`aergo branch` lists both)");
            }
        }
    }
    let branch = r.branch.clone().or_else(|| c.branch().map(String::from));
    let bc = c.clone_for_branch(branch.clone())?;
    let tip = bc.chain_info().await?.height;
    let height = match (r.height, r.back) {
        (Some(h), _) => h,
        (None, Some(n)) => {
            let h = tip.checked_sub(n).with_context(|| {
                format!("~{n} is below the first block (the tip is at height {tip})")
            })?;
            if let Some(b) = branch.as_deref().filter(|b| *b != "main") {
                let (parent, name) = match b.rsplit_once('/') {
                    Some((p, n)) => (Some(p.to_string()), n),
                    None => (None, b),
                };
                let list: Value = c
                    .clone_for_branch(parent)?
                    .call("branch_list", json!({}))
                    .await?;
                let fork = list["branches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["name"] == name && x["deleted"].is_null())
                    .and_then(|x| x["fork_height"].as_u64())
                    .with_context(|| format!("no branch `{b}`"))?;
                if h < fork {
                    bail!(
                        "{b}~{n} is height {h}, below {b}'s fork point {fork}: those blocks are its parent's (use main@{h})"
                    );
                }
            }
            h
        }
        (None, None) => tip,
    };
    if height > tip {
        bail!("height {height} is above the best height {tip}");
    }
    Ok((branch, height))
}

/// `--at REF` of a read command: the height to read at (`None`: the tip), and the client
/// to read with — re-addressed to the ref's branch when the ref names one (`feat@12`),
/// else `c` as it is (a bare height reads the addressed branch).
pub async fn read_at(c: &RpcClient, at: Option<&str>) -> Result<(RpcClient, Option<u64>)> {
    let Some(s) = at else {
        return Ok((c.clone_for_branch(c.branch().map(String::from))?, None));
    };
    let (c, s) = ledger_of(c, s)?;
    let c = &c;
    let r = parse_ref(s)?;
    let (b, h) = resolve_ref(c, &r).await?;
    let c = if r.branch.is_some() {
        c.clone_for_branch(b)?
    } else {
        c.clone_for_branch(c.branch().map(String::from))?
    };
    Ok((c, Some(h)))
}

/// A ref `REPO:REF` (`docs:feat@3`, `aergo:main~2`): a client addressing that repository's
/// ledger (its `main`, until the rest of the ref names a branch) and the rest; any other
/// ref: `c` as it is.
pub fn ledger_of<'s>(c: &RpcClient, s: &'s str) -> Result<(RpcClient, &'s str)> {
    let Some((repo, rest)) = s.split_once(':') else {
        return Ok((c.clone_for_branch(c.branch().map(String::from))?, s));
    };
    let repo = repo.trim();
    if repo.is_empty() || rest.trim().is_empty() {
        bail!("`{s}`: a ledger's ref is REPO:REF, e.g. docs:feat@3");
    }
    if repo != aergo_types::repo::ROOT_REPO {
        if let Some(e) = aergo_types::repo::name_error(repo) {
            bail!("`{s}`: {e}");
        }
    }
    Ok((
        RpcClient::new(c.url(), std::time::Duration::from_secs(30))?
            .with_repo(Some(repo.to_string()))
            .with_signer(c.signer().cloned())
            .with_branch(None),
        rest.trim(),
    ))
}

/// `aergo tag NAME [REF]` on a chain: a kind-11 tag operation sent to the chain of the ref's
/// branch, naming the block at the ref's height.
pub async fn tag(
    c: &RpcClient,
    j: bool,
    signer: Signer<'_>,
    name: String,
    at: Option<&str>,
    tx: TxArgs,
) -> Result<()> {
    let (c, height) = read_at(c, at).await?;
    let height = match height {
        Some(h) => h,
        None => c.chain_info().await?.height,
    };
    let b: Value = c.call("block", json!({"height": height})).await?;
    let hash = aergo_types::Hash::from_hex(b["hash"].as_str().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("block {height}: {e}"))?;
    let where_ = c.branch().unwrap_or("main").to_string();
    let op = BranchOp::Tag {
        name: name.clone(),
        height,
        hash,
    };
    let done = format!("tagged {where_}@{height} as {name}");
    crate::staking_cmd::send(&c, j, signer, tx, TxKind::Branch, 0, op.encode(), done).await
}

/// `aergo diff REF REF`: accounts and contract state that differ between two refs.
pub async fn diff(
    c: &RpcClient,
    from: &str,
    to: &str,
    limit: u64,
    after: Option<String>,
    j: bool,
) -> Result<()> {
    let (fb, fh) = resolve_ref(c, &parse_ref(from)?).await?;
    let (tb, th) = resolve_ref(c, &parse_ref(to)?).await?;
    let v: Value = c
        .call(
            "diff",
            json!({
                "from": {"branch": fb, "height": fh},
                "to": {"branch": tb, "height": th},
                "limit": limit,
                "after": after,
            }),
        )
        .await?;
    crate::print(j, &v, || {
        let mut s = format!(
            "diff {}@{fh} .. {}@{th} (histories part at height {})",
            fb.as_deref().unwrap_or("main"),
            tb.as_deref().unwrap_or("main"),
            v["common_height"]
        );
        let changes = v["changes"].as_array().cloned().unwrap_or_default();
        if changes.is_empty() {
            s.push_str("\n  no differences");
        }
        let bal = |x: &Value| -> String {
            x["balance"]
                .as_str()
                .and_then(|b| b.parse::<u128>().ok())
                .map(|a| crate::human::aergo(aergo_types::Aer(a)))
                .unwrap_or_else(|| "-".into())
        };
        for ch in &changes {
            let line = match ch["kind"].as_str() {
                Some("account") => format!(
                    "  account  {} {}: {} (nonce {}) -> {} (nonce {})",
                    ch["address"].as_str().unwrap_or("?"),
                    ch["status"].as_str().unwrap_or("?"),
                    bal(&ch["from"]),
                    ch["from"]["nonce"],
                    bal(&ch["to"]),
                    ch["to"]["nonce"]
                ),
                Some("row") => {
                    let key: Vec<String> = ch["key"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|k| {
                            k.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| k.to_string())
                        })
                        .collect();
                    let mut l = format!(
                        "  row      {}.{} ({}) {}",
                        ch["contract"].as_str().unwrap_or("?"),
                        ch["table"].as_str().unwrap_or("?"),
                        key.join(", "),
                        ch["status"].as_str().unwrap_or("?")
                    );
                    let cell = |v: &Value| {
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| "NULL".into())
                    };
                    for c in ch["cells"].as_array().into_iter().flatten() {
                        l.push_str(&format!(
                            "\n             {}: {} -> {}",
                            c["column"].as_str().unwrap_or("?"),
                            cell(&c["from"]),
                            cell(&c["to"])
                        ));
                    }
                    l
                }
                Some("contract_code") => format!(
                    "  contract {} code {}",
                    ch["contract"].as_str().unwrap_or("?"),
                    ch["status"].as_str().unwrap_or("?")
                ),
                Some("contract") => format!(
                    "  contract {} row {} {}",
                    ch["contract"].as_str().unwrap_or("?"),
                    ch["key"].as_str().unwrap_or("?"),
                    ch["status"].as_str().unwrap_or("?")
                ),
                Some(k) => format!(
                    "  {k} {} {}",
                    ch["key"].as_str().unwrap_or("?"),
                    ch["status"].as_str().unwrap_or("?")
                ),
                None => continue,
            };
            s.push('\n');
            s.push_str(&line);
        }
        if let Some(n) = v["next"].as_str() {
            s.push_str(&format!("\n  more: --after {n}"));
        }
        s
    });
    Ok(())
}

/// `aergo log [REF] [-n N]`: blocks from REF down, merges with their second parent and
/// verdicts.
pub async fn log(c: &RpcClient, at: Option<&str>, n: u64, j: bool) -> Result<()> {
    let (c, at) = match at {
        Some(s) => {
            let (c, rest) = ledger_of(c, s)?;
            (c, Some(rest))
        }
        None => (c.clone_for_branch(c.branch().map(String::from))?, None),
    };
    let c = &c;
    let r = match at {
        Some(s) => parse_ref(s)?,
        None => Ref {
            branch: None,
            height: None,
            back: None,
        },
    };
    let (branch, top) = resolve_ref(c, &r).await?;
    let bc = c.clone_for_branch(branch.clone())?;
    let mut out = Vec::new();
    let mut text = String::new();
    let low = top.saturating_sub(n.saturating_sub(1));
    for h in (low..=top).rev() {
        let b: Value = bc.call("block", json!({"height": h})).await?;
        let m = &b["merge"];
        let mut line = format!(
            "{:>8}  {}  {} txs",
            h,
            b["hash"].as_str().unwrap_or("?"),
            b["tx_count"]
        );
        if !m.is_null() {
            line.push_str(&format!(
                "  merge of {} at {} ({}): {} merged, {} left out",
                m["source"].as_str().unwrap_or("?"),
                m["source_height"],
                m["source_tip"].as_str().unwrap_or("?"),
                m["merged"].as_array().map(Vec::len).unwrap_or(0),
                m["excluded"].as_array().map(Vec::len).unwrap_or(0)
            ));
            for e in m["excluded"].as_array().into_iter().flatten() {
                line.push_str(&format!(
                    "\n            left out {}: {}",
                    e["hash"].as_str().unwrap_or("?"),
                    e["reason"].as_str().unwrap_or("?")
                ));
            }
        }
        text.push_str(&line);
        text.push('\n');
        let mut entry = json!({"height": h, "hash": b["hash"], "parent": b["parent_hash"], "tx_count": b["tx_count"]});
        if !m.is_null() {
            entry["merge"] = m.clone();
        }
        out.push(entry);
    }
    crate::print(
        j,
        &json!({"branch": branch.unwrap_or_else(|| "main".into()), "blocks": out}),
        || text.trim_end().to_string(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse_and_bad_ones_say_why() {
        let r = parse_ref("12").unwrap();
        assert_eq!((r.branch, r.height, r.back), (None, Some(12), None));
        let r = parse_ref("feat@7").unwrap();
        assert_eq!((r.branch.as_deref(), r.height), (Some("feat"), Some(7)));
        let r = parse_ref("feat~3").unwrap();
        assert_eq!((r.branch.as_deref(), r.back), (Some("feat"), Some(3)));
        let r = parse_ref("main@1200").unwrap();
        assert_eq!((r.branch.as_deref(), r.height), (Some("main"), Some(1200)));
        assert_eq!(parse_ref("a/b").unwrap().branch.as_deref(), Some("a/b"));
        assert!(parse_ref("feat@x").is_err());
        assert!(parse_ref("feat~").is_err());
        // A bare name that is no branch name may be a tag; with @ or ~ it must be a branch.
        assert_eq!(parse_ref("v1.0").unwrap().branch.as_deref(), Some("v1.0"));
        assert!(parse_ref("Feat@3").is_err());
        assert!(parse_ref("a/B").is_err());
        assert!(parse_ref("").is_err());
    }
}
