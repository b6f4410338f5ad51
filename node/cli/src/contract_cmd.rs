//! `aergo contract …` (deploy, upgrade, call, view, query, abi) over JSON-RPC, and
//! `aergo sql FILE.sql`: a local sandbox that deploys a script into a throwaway state and
//! reads lines (`CALL f(args)`, any SQL statement, `\abi`, `\sender A`, `\amount N`, …) from
//! standard input, for contract authors.

use aergo_rpc::RpcClient;
use aergo_types::{Address, Keypair, TxKind};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
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
        /// The script (.sql).
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
    },
    /// Upgrade a contract (owner only): new tables, indexes, functions, CREATE OR REPLACE.
    Upgrade {
        /// Contract address.
        address: String,
        /// The upgrade script.
        file: PathBuf,
        /// Owner.
        #[arg(long)]
        from: String,
        /// Gas limit for the engine.
        #[arg(long, default_value_t = DEFAULT_ENGINE_GAS)]
        gas: u64,
    },
    /// Call a function in a transaction; waits for the receipt and prints its result.
    Call {
        /// Contract address.
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
        /// Gas limit for the engine.
        #[arg(long, default_value_t = DEFAULT_ENGINE_GAS)]
        gas: u64,
    },
    /// Run a function read-only (free; writes are discarded).
    View {
        /// Contract address.
        address: String,
        /// Function name.
        function: String,
        /// Arguments.
        args: Vec<String>,
        /// Height to read at.
        #[arg(long)]
        at: Option<u64>,
    },
    /// Run a read-only SQL query on the contract's tables (free), at any height.
    Query {
        /// Contract address.
        address: String,
        /// The SELECT statement.
        sql: String,
        /// Height to read at.
        #[arg(long)]
        at: Option<u64>,
    },
    /// The contract's functions and tables with their types.
    Abi {
        /// Contract address.
        address: String,
    },
}

/// Signs and submits a transaction; returns (hash, nonce, sender).
pub type Signer<'a> = &'a dyn Fn(&str) -> Result<Keypair>;

/// Runs an `aergo contract` command.
pub async fn run(
    cmd: ContractCmd,
    c: &RpcClient,
    json_out: bool,
    signer: Signer<'_>,
) -> Result<()> {
    match cmd {
        ContractCmd::Deploy {
            file,
            from,
            amount,
            gas,
        } => {
            let script = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let key = signer(&from)?;
            let amount = aergo_types::Aer::parse_cli(&amount)?;
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
            crate::print(json_out, &out, || {
                format!(
                    "deployed contract {addr}\ntx {hash} in block {}",
                    r.block_height
                )
            });
        }
        ContractCmd::Upgrade {
            address,
            file,
            from,
            gas,
        } => {
            let to = Address::decode(&address).map_err(|e| anyhow::anyhow!(e))?;
            let script = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
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
        } => {
            let to = Address::decode(&address).map_err(|e| anyhow::anyhow!(e))?;
            let key = signer(&from)?;
            let amount = aergo_types::Aer::parse_cli(&amount)?;
            let payload = serde_json::to_vec(&json!({"function": function, "args": args}))?;
            let (hash, _) = crate::submit(
                c,
                &key,
                TxKind::Call,
                Some(to),
                amount.0,
                payload,
                gas,
                Default::default(),
            )
            .await?;
            let r = crate::wait_for(c, &hash, crate::WaitFor::Included).await?;
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
            let v = c.contract_call_view(&address, &function, &args, at).await?;
            crate::print(json_out, &v, || format!("result: {}", v["result"]));
        }
        ContractCmd::Query { address, sql, at } => {
            let v = c.contract_query(&address, &sql, at).await?;
            crate::print(json_out, &v, || render_rows(&v));
        }
        ContractCmd::Abi { address } => {
            let v = c.contract_abi(&address).await?;
            crate::print(json_out, &v, || render_abi(&v));
        }
    }
    Ok(())
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

fn render_abi(v: &Value) -> String {
    let mut s = format!(
        "contract {} (owner {})",
        v["address"].as_str().unwrap_or(""),
        v["owner"].as_str().unwrap_or("")
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

/// `aergo sql FILE.sql`: the local sandbox.
pub fn sandbox(file: &PathBuf, json_out: bool) -> Result<()> {
    let script =
        std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let mut sb =
        aergo_sql::Sandbox::new(&script).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "AergoSQL sandbox: {} deployed in a throwaway state.",
            file.display()
        );
        eprintln!("Type CALL f(args), any SQL statement, \\abi, \\sender ADDR, \\amount N, \\height N; Ctrl-D quits.");
    }
    let stdin = std::io::stdin();
    let mut failures = 0;
    loop {
        if interactive {
            eprint!("sql> ");
            std::io::stderr().flush().ok();
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        match sb.run(line) {
            Ok(out) => println!("{}", render_sandbox(&out, json_out)),
            Err(e) => {
                failures += 1;
                if json_out {
                    println!("{}", json!({"error": e.to_string()}));
                } else {
                    println!("error: {e}");
                }
            }
        }
    }
    if !interactive && failures > 0 {
        bail!("{failures} line(s) failed");
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
            Ok(mut v) => {
                v["address"] = json!("(sandbox)");
                v["owner"] = json!("sandbox-owner");
                render_abi(&v)
            }
            Err(e) => format!("error: ABI rendering: {e}"),
        },
        O::Done { message, gas } if *gas > 0 => format!("{message} (gas {gas})"),
        O::Done { message, .. } => message.clone(),
    }
}
