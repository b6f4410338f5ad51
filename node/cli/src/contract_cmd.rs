//! `aergo contract …` (deploy, upgrade, call, view, query, abi) over JSON-RPC, and
//! `aergo sql FILE.sql`: a local sandbox that deploys a script into a throwaway state and
//! reads lines (`CALL f(args)`, any SQL statement, `\abi`, `\sender A`, `\amount N`, …) from
//! standard input, for contract authors.

use aergo_rpc::RpcClient;
use aergo_types::{Address, Keypair, TxKind};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

/// Default engine gas of deploy, upgrade and call transactions (on top of the intrinsic
/// gas): with the largest script's intrinsic gas (200 KiB × 10 + 1,000 ≈ 2.05M at the dev
/// schedule) it stays under the default per-transaction gas cap of 4,000,000.
pub const DEFAULT_ENGINE_GAS: u64 = 1_500_000;

/// `aergo contract` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ContractCmd {
    /// Deploy a contract script; prints the contract's address.
    Deploy {
        /// The script (.sql); `-` reads it from stdin.
        file: PathBuf,
        /// Deployer (keystore address, or `dev`).
        #[arg(long)]
        from: String,
        /// AERGO to send to the new contract.
        #[arg(long, default_value = "0")]
        amount: String,
        /// Gas limit for the engine (on top of the transaction's intrinsic gas; the whole must
        /// stay within the chain's per-transaction cap).
        #[arg(long, default_value_t = DEFAULT_ENGINE_GAS)]
        gas: u64,
        /// A name for the contract in your address book, usable wherever an address goes.
        #[arg(long)]
        name: Option<String>,
        /// Send without compiling the script locally first.
        #[arg(long)]
        no_check: bool,
    },
    /// Upgrade a contract (owner only): new tables, indexes, functions, CREATE OR REPLACE.
    Upgrade {
        /// Contract address or name.
        address: String,
        /// The upgrade script; `-` reads it from stdin.
        file: PathBuf,
        /// Owner.
        #[arg(long)]
        from: String,
        /// Gas limit for the engine.
        #[arg(long, default_value_t = DEFAULT_ENGINE_GAS)]
        gas: u64,
        /// Send without checking the script locally first.
        #[arg(long)]
        no_check: bool,
    },
    /// Call a function in a transaction; waits for the receipt and prints its result.
    Call {
        /// Contract address or name.
        address: String,
        /// Function name.
        function: String,
        /// Arguments (text, cast to the declared types).
        args: Vec<String>,
        /// Caller (keystore address, or `dev`).
        #[arg(long)]
        from: String,
        /// AERGO attached to the call.
        #[arg(long, default_value = "0")]
        amount: String,
        /// Gas limit for the engine (default: the estimate of a read-only run plus a margin;
        /// giving it skips that run).
        #[arg(long)]
        gas: Option<u64>,
        /// Run the call read-only and print its result and gas; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Skip the checks against the ABI and the read-only run.
        #[arg(long)]
        no_check: bool,
        /// `preconfirmed`: print the producer's signed result at once, before any block;
        /// `included` (the default) or `final`: wait for the block.
        #[arg(long)]
        wait: Option<crate::WaitFor>,
    },
    /// Run a function read-only (free; writes are discarded).
    View {
        /// Contract address or name.
        address: String,
        /// Function name.
        function: String,
        /// Arguments.
        args: Vec<String>,
        /// Where to read: a height, or a ref (`feat`, `feat@12`, `feat~3`, `main@1200`).
        #[arg(long)]
        at: Option<String>,
    },
    /// Run a read-only SQL query on the contract's tables (free), at any height.
    Query {
        /// Contract address or name.
        address: String,
        /// The SELECT statement.
        sql: String,
        /// Where to read: a height, or a ref (`feat`, `feat@12`, `feat~3`, `main@1200`).
        #[arg(long)]
        at: Option<String>,
    },
    /// The contract's functions and tables with their types.
    Abi {
        /// Contract address or name.
        address: String,
    },
}

/// Reads a script from `file`, or from stdin when it is `-`.
fn read_script(file: &std::path::Path) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("read the script from stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))
}

/// Signs and submits a transaction; returns (hash, nonce, sender).
pub type Signer<'a> = &'a dyn Fn(&str) -> Result<Keypair>;

/// A contract from what was typed: an address, inside a repository (`--repo`) an identifier
/// of its directory that resolves at its best height, else a name of the address book.
async fn contract_addr(c: &RpcClient, s: &str) -> Result<aergo_types::Address> {
    if let Ok(a) = aergo_types::Address::decode(s.trim()) {
        return Ok(a);
    }
    if let Some(repo) = c.repo().filter(|r| !r.ends_with("/dd")) {
        let found: Result<serde_json::Value, _> = c
            .call("dd_resolve", json!({"repo": repo, "name": s.trim()}))
            .await;
        if let Ok(v) = found {
            let target = v["target"].as_str().unwrap_or_default();
            return aergo_types::Address::decode(target).map_err(|e| {
                anyhow::anyhow!(
                    "identifier `{s}` of repository `{repo}` names `{target}`, not an address: {e}"
                )
            });
        }
    }
    crate::resolve_addr(s)
}

/// Runs an `aergo contract` command.
pub async fn run(
    cmd: ContractCmd,
    c: &RpcClient,
    json_out: bool,
    signer: Signer<'_>,
    keystore: Option<PathBuf>,
) -> Result<()> {
    match cmd {
        ContractCmd::Deploy {
            file,
            from,
            amount,
            gas,
            name,
            no_check,
        } => {
            let script = read_script(&file)?;
            if !no_check {
                let version =
                    crate::preflight::engine(Some(c.chain_info().await?.sql_engine.into()));
                crate::preflight::check_deploy(&label(&file), &script, gas, version)?;
            }
            let ks = crate::wallet::Keystore::new(keystore.clone())?;
            if let Some(n) = &name {
                crate::wallet::check_name(n)?;
                if let Some(a) = ks.lookup(n)? {
                    bail!("the name `{n}` is already taken by {a}; choose another");
                }
            }
            let key = signer(&from)?;
            let amount = crate::human::parse_amount(&amount)?;
            let (hash, nonce) = crate::submit(
                c,
                &key,
                TxKind::Deploy,
                None,
                amount.0,
                script.into_bytes(),
                gas,
                Default::default(),
            )
            .await?;
            let addr = Address::contract(&Address::from_public_key(&key.public()), nonce);
            let r = crate::wait_for(c, &hash, crate::WaitFor::Included).await?;
            let out = json!({"address": addr.encode(), "hash": hash, "status": r.status, "error": r.error, "block_height": r.block_height, "gas_used": r.gas_used});
            if r.status != "ok" {
                bail!("deploy failed: {}", r.error.unwrap_or_default());
            }
            if let Some(n) = &name {
                ks.set_name(n, &addr)?;
            }
            crate::print(json_out, &out, || {
                format!(
                    "deployed contract {addr}{}\ntx {hash} in block {}",
                    name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
                    r.block_height
                )
            });
        }
        ContractCmd::Upgrade {
            address,
            file,
            from,
            gas,
            no_check,
        } => {
            let to = contract_addr(c, &address).await?;
            let script = read_script(&file)?;
            if !no_check {
                let abi = c.contract_abi(&to.encode()).await?;
                crate::preflight::check_upgrade(&label(&file), &script, &abi)?;
            }
            let key = signer(&from)?;
            let (hash, _) = crate::submit(
                c,
                &key,
                TxKind::Deploy,
                Some(to),
                0,
                script.into_bytes(),
                gas,
                Default::default(),
            )
            .await?;
            let r = crate::wait_for(c, &hash, crate::WaitFor::Included).await?;
            if r.status != "ok" {
                bail!("upgrade failed: {}", r.error.unwrap_or_default());
            }
            crate::print(
                json_out,
                &json!({"address": to.encode(), "hash": hash, "status": r.status}),
                || format!("upgraded {to} (tx {hash})"),
            );
        }
        ContractCmd::Call {
            address,
            function,
            args,
            from,
            amount,
            gas,
            dry_run,
            no_check,
            wait,
        } => {
            let to = contract_addr(c, &address).await?;
            let amount = crate::human::parse_amount(&amount)?;
            let caller = crate::resolve_addr(&from)?;
            let payload = serde_json::to_vec(&json!({"function": function, "args": args}))?;
            if !no_check {
                let abi = c.contract_abi(&to.encode()).await?;
                crate::preflight::check_call(&abi, &address, &function, &args)?;
            }
            let gas = match gas {
                Some(g) if !dry_run => g,
                _ => {
                    let view: Value = c
                        .call(
                            "contract_call_view",
                            json!({"address": to.encode(), "function": function, "args": args, "caller": caller.encode()}),
                        )
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "the call fails in a read-only run: {e}\nnothing was sent (give --gas to send it anyway)"
                            )
                        })?;
                    let used = view["gas_used"].as_u64().unwrap_or(0);
                    let info = c.chain_info().await?;
                    let intrinsic = info.base_gas + info.per_byte_gas * payload.len() as u64;
                    let est = estimate(used, intrinsic, info.tx_gas_cap);
                    if dry_run {
                        let out = json!({"dry_run": true, "result": view["result"], "events": view["events"], "gas_used": used, "gas_limit": intrinsic + est});
                        crate::print(json_out, &out, || {
                            let mut s = format!("result: {}", cell(&view["result"]));
                            for e in view["events"].as_array().into_iter().flatten() {
                                s.push_str(&format!(
                                    "\nnotice: {}",
                                    e.get("data").map(cell).unwrap_or_else(|| cell(e))
                                ));
                            }
                            s.push_str(&format!(
                                "\ngas: {used} in a read-only run; a call would set its limit to {} (intrinsic {intrinsic} + engine {est})\ndry run: nothing was sent",
                                intrinsic + est
                            ));
                            s
                        });
                        return Ok(());
                    }
                    est
                }
            };
            let key = signer(&from)?;
            let wait = wait.unwrap_or(crate::WaitFor::Included);
            let sent = crate::submit_full(
                c,
                &key,
                TxKind::Call,
                Some(to),
                amount.0,
                payload,
                gas,
                Default::default(),
                wait == crate::WaitFor::Preconfirmed,
            )
            .await?;
            let hash = sent.hash;
            if let Some((p, ms)) = &sent.preconf {
                let out = json!({"hash": hash, "latency_ms": ms, "preconfirmation": p});
                crate::print(json_out, &out, || {
                    let mut s = crate::preconf_text(p, *ms);
                    for e in &p.receipt.events {
                        s.push_str(&format!("\nnotice: {}", e.data));
                    }
                    s.push_str(&format!("\ntx {hash}"));
                    s
                });
                if let Some(e) = &p.receipt.error {
                    bail!("call failed (pre-confirmed): {e}");
                }
                return Ok(());
            }
            let r = crate::wait_for(c, &hash, wait).await?;
            let v = serde_json::to_value(&r)?;
            crate::print(json_out, &v, || {
                let mut s = match &r.error {
                    None => format!("result: {}", r.result),
                    Some(e) => format!("FAILED: {e}"),
                };
                for e in &r.events {
                    s.push_str(&format!("\nnotice: {}", e.data));
                }
                s.push_str(&format!(
                    "\ntx {hash} in block {} (gas {})",
                    r.block_height, r.gas_used
                ));
                s
            });
            if r.status != "ok" {
                bail!("call failed: {}", r.error.unwrap_or_default());
            }
        }
        ContractCmd::View {
            address,
            function,
            args,
            at,
        } => {
            let (c, at) = crate::branch_cmd::read_at(c, at.as_deref()).await?;
            let address = contract_addr(&c, &address).await?.encode();
            let v = c.contract_call_view(&address, &function, &args, at).await?;
            crate::print(json_out, &v, || {
                // As `call` prints it (text unquoted), with the notices and the gas it would use.
                let mut s = format!("result: {}", cell(&v["result"]));
                for e in v["events"].as_array().into_iter().flatten() {
                    s.push_str(&format!("\nnotice: {}", cell(e)));
                }
                s.push_str(&format!(
                    "\ngas: {} (read-only: writes discarded, nothing sent)",
                    v["gas_used"].as_u64().unwrap_or(0)
                ));
                s
            });
        }
        ContractCmd::Query { address, sql, at } => {
            let (c, at) = crate::branch_cmd::read_at(c, at.as_deref()).await?;
            let address = contract_addr(&c, &address).await?.encode();
            let v = c.contract_query(&address, &sql, at).await?;
            crate::print(json_out, &v, || render_rows(&v));
        }
        ContractCmd::Abi { address } => {
            let address = contract_addr(c, &address).await?.encode();
            let v = c.contract_abi(&address).await?;
            crate::print(json_out, &v, || {
                let head = render_abi(&v);
                let first = head.lines().next().unwrap_or("").to_string();
                format!("{first}\n{}", abi_table(&v))
            });
        }
    }
    Ok(())
}

/// The label of a script in messages: its path, or `stdin`.
fn label(file: &std::path::Path) -> String {
    if file.as_os_str() == "-" {
        "stdin".into()
    } else {
        file.display().to_string()
    }
}

/// Engine gas for a call whose read-only run used `used`: a quarter more plus 10,000 (the state
/// can change before the call is included), kept within the per-transaction cap.
pub fn estimate(used: u64, intrinsic: u64, tx_gas_cap: u64) -> u64 {
    let want = used.saturating_add(used / 4).saturating_add(10_000);
    if tx_gas_cap == 0 {
        return want;
    }
    want.min(tx_gas_cap.saturating_sub(intrinsic))
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A text table of `{"columns", "rows"}`.
pub fn render_rows(v: &Value) -> String {
    let cols: Vec<String> = v["columns"]
        .as_array()
        .map(|a| a.iter().map(cell).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = v["rows"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|row| {
                    row.as_array()
                        .map(|c| c.iter().map(cell).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut w: Vec<usize> = cols.iter().map(|c| c.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&w)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let mut s = line(&cols);
    s.push('\n');
    s.push_str(
        &w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    for r in &rows {
        s.push('\n');
        s.push_str(&line(r));
    }
    s.push_str(&format!(
        "\n({} row{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    s
}

/// The ABI as a table: one row per function and per table.
pub fn abi_table(v: &Value) -> String {
    let mut rows = Vec::new();
    for f in v["functions"].as_array().into_iter().flatten() {
        let ps: Vec<String> = f["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{} {}", cell(&p["name"]), cell(&p["type"])))
            .collect();
        rows.push(json!([
            "function",
            cell(&f["name"]),
            format!("({}) RETURNS {}", ps.join(", "), cell(&f["returns"]))
        ]));
    }
    for t in v["tables"].as_array().into_iter().flatten() {
        let pk: Vec<String> = t["primary_key"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        let cols: Vec<String> = t["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let name = cell(&c["name"]);
                format!(
                    "{name} {}{}{}",
                    cell(&c["type"]),
                    if c["not_null"] == json!(true) {
                        " NOT NULL"
                    } else {
                        ""
                    },
                    if pk.len() == 1 && pk.first() == Some(&name) {
                        " PRIMARY KEY"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let mut sig = format!("({})", cols.join(", "));
        if pk.len() > 1 {
            sig.push_str(&format!(" PRIMARY KEY ({})", pk.join(", ")));
        }
        rows.push(json!(["table", cell(&t["name"]), sig]));
    }
    let t = render_rows(&json!({"columns": ["kind", "name", "signature"], "rows": rows}));
    // render_rows ends with a row count; the ABI reads better without it.
    t.rsplit_once('\n').map(|(a, _)| a.to_string()).unwrap_or(t)
}

fn render_abi(v: &Value) -> String {
    let mut s = format!(
        "contract {} (owner {}{})",
        v["address"].as_str().unwrap_or(""),
        v["owner"].as_str().unwrap_or(""),
        v["engine"]
            .as_u64()
            .map(|e| format!(", AergoSQL engine {e}"))
            .unwrap_or_default()
    );
    for t in v["tables"].as_array().into_iter().flatten() {
        let cols: Vec<String> = t["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} {}{}",
                    cell(&c["name"]),
                    cell(&c["type"]),
                    if c["not_null"] == json!(true) {
                        " NOT NULL"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        s.push_str(&format!(
            "\ntable {} ({})",
            cell(&t["name"]),
            cols.join(", ")
        ));
    }
    for f in v["functions"].as_array().into_iter().flatten() {
        let ps: Vec<String> = f["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{} {}", cell(&p["name"]), cell(&p["type"])))
            .collect();
        s.push_str(&format!(
            "\nfunction {}({}) RETURNS {}",
            cell(&f["name"]),
            ps.join(", "),
            cell(&f["returns"])
        ));
    }
    s
}

/// The address `sender()` returns in the sandbox until `\sender` changes it: a real-looking
/// AERGO address (of a fixed throwaway key), so code that stores or compares addresses behaves
/// as on a chain.
pub fn sandbox_sender() -> Address {
    Address::from_public_key(&Keypair::from_seed(&[7u8; 32]).public())
}

/// `aergo sql FILE.sql`: the local sandbox. At a terminal: line editing and history, and a
/// statement may span lines until `;`. Otherwise one statement per line and, with `--json`,
/// one JSON line back per statement (scripts depend on it).
pub fn sandbox(file: &std::path::Path, json_out: bool) -> Result<()> {
    let script = read_script(file)?;
    let label = label(file);
    let mut sb = match aergo_sql::Sandbox::new(&script) {
        Ok(sb) => sb,
        Err(e) => {
            return Err(crate::preflight::located_error(&label, &script, &e));
        }
    };
    let sender = sandbox_sender();
    sb.chain.balances.remove(&sb.chain.contract);
    sb.chain.sender = sender.encode();
    sb.chain.contract = Address::contract(&sender, 0).encode();
    sb.chain.balances.insert(sb.chain.contract.clone(), 0);
    if std::io::stdin().is_terminal() {
        return interactive(sb, &label, json_out);
    }
    let stdin = std::io::stdin();
    let mut failures = 0;
    loop {
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        if !run_line(&mut sb, line, json_out) {
            failures += 1;
        }
    }
    if failures > 0 {
        bail!("{failures} line(s) failed");
    }
    Ok(())
}

/// Runs one statement and prints its answer; false when it failed. As on a chain, a `CALL`
/// first moves `\amount` to the contract's balance, and a failed one undoes its balance changes
/// (the attached amount and any `send()`).
fn run_line(sb: &mut aergo_sql::Sandbox, stmt: &str, json_out: bool) -> bool {
    let is_call = stmt
        .trim_start()
        .get(..5)
        .is_some_and(|h| h.eq_ignore_ascii_case("call "));
    let balances = sb.chain.balances.clone();
    if is_call && sb.chain.amount > 0 {
        let c = sb.chain.contract.clone();
        let b = sb.chain.balances.entry(c).or_insert(0);
        *b = b.saturating_add(sb.chain.amount);
    }
    let res = sb.run(stmt);
    if res.is_err() {
        sb.chain.balances = balances;
    }
    match res {
        Ok(out) => {
            println!("{}", render_sandbox(&out, json_out));
            true
        }
        Err(e) => {
            if json_out {
                println!("{}", json!({"error": e.to_string()}));
            } else {
                println!("error: {e}");
            }
            false
        }
    }
}

/// True when `buf` holds a whole statement: a `\` command, or text ending with `;` outside a
/// `$$ … $$` body.
pub fn statement_complete(buf: &str) -> bool {
    let t = buf.trim();
    t.starts_with('\\') || (t.ends_with(';') && t.matches("$$").count().is_multiple_of(2))
}

/// What `\help` prints at the interactive prompt (a terminal only: piped input keeps the
/// one-statement-one-answer protocol).
const SANDBOX_HELP: &str = "\
statements end with `;` and may span lines ($$ bodies may hold `;`)
  CALL f(args)        call a contract function (as a transaction: its writes stay)
  SELECT … / any SQL  run it on the contract's state (CREATE, ALTER: an upgrade)
  \\abi                the functions and tables with their types
  \\sender ADDR        what sender() returns (any text)
  \\amount AER         what amount() returns; a CALL moves it to the contract first
  \\balance ADDR AER   an account's balance, for balance() and send()
  \\height N           what block_height() returns
  \\time SECS          what block_time() returns (seconds since the Unix epoch)
  \\help               this list
Ctrl-C drops a half-typed statement; Ctrl-D quits. The language: docs/AERGOSQL.md";

fn interactive(mut sb: aergo_sql::Sandbox, label: &str, json_out: bool) -> Result<()> {
    use rustyline::error::ReadlineError;
    eprintln!(
        "AergoSQL sandbox: {label} deployed in a throwaway state; sender() is {}.",
        sb.chain.sender
    );
    eprintln!(
        "End statements with `;` (they may span lines). CALL f(args), any SQL, \\abi, \\sender ADDR, \\amount AER, \\balance ADDR AER, \\height N, \\time SECS; \\help lists them; Ctrl-D quits."
    );
    let mut rl = rustyline::DefaultEditor::new().context("line editor")?;
    let history = std::env::var_os("HOME")
        .map(PathBuf::from)
        .map(|h| h.join(".aergo").join("sql_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "sql> " } else { "...> " };
        match rl.readline(prompt) {
            Ok(line) => {
                if buf.is_empty() && (line.trim().is_empty() || line.trim().starts_with("--")) {
                    continue;
                }
                buf.push_str(&line);
                buf.push('\n');
                if statement_complete(&buf) {
                    let stmt = buf.trim().to_string();
                    buf.clear();
                    let _ = rl.add_history_entry(stmt.as_str());
                    if matches!(stmt.as_str(), "\\help" | "\\?" | "\\h") {
                        println!("{SANDBOX_HELP}");
                        continue;
                    }
                    run_line(&mut sb, &stmt, json_out);
                }
            }
            // Ctrl-C drops a half-typed statement.
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        if let Some(d) = h.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = rl.save_history(h);
    }
    Ok(())
}

fn render_sandbox(out: &aergo_sql::SandboxOutput, json_out: bool) -> String {
    use aergo_sql::SandboxOutput as O;
    if json_out {
        return out.to_json();
    }
    match out {
        O::Call(c) => {
            let mut s = format!("result: {}", c.result.to_text());
            for e in &c.events {
                s.push_str(&format!("\nnotice: {e}"));
            }
            s.push_str(&format!("\n(gas {})", c.gas_used));
            s
        }
        O::Rows(r) => r.to_table(),
        O::Abi(a) => match serde_json::from_str::<Value>(&a.to_json()) {
            Ok(v) => abi_table(&v),
            Err(e) => format!("error: ABI rendering: {e}"),
        },
        O::Done { message, gas } if *gas > 0 => format!("{message} (gas {gas})"),
        O::Done { message, .. } => message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_a_semicolon_outside_dollar_bodies() {
        assert!(statement_complete("CALL f(1);\n"));
        assert!(statement_complete("\\abi\n"));
        assert!(!statement_complete("CALL f(1)\n"));
        assert!(!statement_complete(
            "CREATE FUNCTION f() RETURNS BIGINT AS $$\nBEGIN RETURN 1;\n"
        ));
        assert!(statement_complete(
            "CREATE FUNCTION f() RETURNS BIGINT AS $$\nBEGIN RETURN 1;\nEND; $$;\n"
        ));
    }

    #[test]
    fn abi_is_a_table() {
        let v = json!({
            "functions": [{"name": "transfer", "params": [{"name": "to", "type": "TEXT"}], "returns": "TEXT"}],
            "tables": [{"name": "accounts", "columns": [{"name": "owner", "type": "TEXT", "not_null": true}], "primary_key": ["owner"]}]
        });
        let t = abi_table(&v);
        assert!(t.starts_with("kind"), "{t}");
        assert!(
            t.contains("function | transfer | (to TEXT) RETURNS TEXT"),
            "{t}"
        );
        assert!(
            t.contains("table    | accounts | (owner TEXT NOT NULL PRIMARY KEY)"),
            "{t}"
        );
        assert!(!t.contains("row"), "{t}");
    }

    #[test]
    fn gas_estimate_has_a_margin_within_the_cap() {
        assert_eq!(estimate(1000, 1000, 4_000_000), 11_250);
        assert_eq!(estimate(10_000_000, 1000, 4_000_000), 3_999_000);
        assert!(sandbox_sender().encode().starts_with('A'));
    }
}
