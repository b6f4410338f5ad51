//! Contract pre-flight: checks made locally before a contract transaction is sent, so a
//! mistake costs no gas. A deploy script is deployed into a throwaway in-memory store with the
//! engine the node and the sandbox use; an upgrade script is applied to a stand-in rebuilt from
//! the contract's ABI (its tables and function signatures, no rows); a call's function name,
//! argument count and argument types are checked against the ABI. Errors name the file, line
//! and column (`figure6.sql:3:14: …`) and show the offending line.

use aergo_sql::{Contract, EngineVersion, MemKv, SqlError};

/// The engine version a stored number names, for the pre-check: the chain's own (from
/// `chain_info.sql_engine` for a deploy, `contract_abi.engine` for an upgrade), so the check
/// refuses what the chain would refuse. A number this CLI does not know (a newer node) checks
/// under the newest version it knows.
pub fn engine(number: Option<u64>) -> EngineVersion {
    match number.and_then(|n| u8::try_from(n).ok()) {
        None | Some(1) => EngineVersion::V1,
        Some(n) => EngineVersion::from_number(n).unwrap_or(EngineVersion::LATEST),
    }
}
use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// Owner of the throwaway contracts.
const OWNER: &str = "preflight";

/// `file:line:column: error`, with the script's line and a caret under the column (for errors
/// outside a transaction: nothing to say about sending).
pub fn located_error(label: &str, script: &str, e: &SqlError) -> anyhow::Error {
    let msg = located(label, script, e).to_string();
    anyhow!("{}", msg.trim_end_matches("\nnothing was sent"))
}

/// `file:line:column: error`, with the script's line and a caret under the column.
fn located(label: &str, script: &str, e: &SqlError) -> anyhow::Error {
    let pos = match e {
        SqlError::Parse { pos, .. }
        | SqlError::Resolve { pos, .. }
        | SqlError::Unsupported { pos, .. } => Some(*pos),
        _ => None,
    };
    match pos {
        Some(p) if p.line > 0 => {
            let text = usize::try_from(p.line - 1)
                .ok()
                .and_then(|i| script.lines().nth(i))
                .unwrap_or("");
            let caret = " ".repeat(usize::try_from(p.col.saturating_sub(1)).unwrap_or(0));
            anyhow!(
                "{label}:{}:{}: {e}\n  {text}\n  {caret}^\nnothing was sent",
                p.line,
                p.col
            )
        }
        _ => anyhow!("{label}: {e}\nnothing was sent"),
    }
}

/// Compiles and runs a deploy script locally with `engine_gas` under `version`, as the node
/// will.
pub fn check_deploy(
    label: &str,
    script: &str,
    engine_gas: u64,
    version: EngineVersion,
) -> Result<()> {
    let mut kv = MemKv::new();
    match Contract::deploy_version(version, script, OWNER, b"preflight/", &mut kv, engine_gas, false) {
        Ok(_) => Ok(()),
        Err(SqlError::OutOfGas { limit }) => bail!(
            "{label}: the deploy runs out of gas (engine gas {limit}): raise --gas\nnothing was sent"
        ),
        Err(e) => Err(located(label, script, &e)),
    }
}

/// A script that recreates the ABI's tables (with their primary keys) and functions (same
/// signatures, trivial bodies).
pub fn stand_in(abi: &Value) -> String {
    let mut s = String::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    for t in list(&abi["tables"]) {
        let mut cols: Vec<String> = list(&t["columns"])
            .iter()
            .map(|c| {
                format!(
                    "{} {}{}",
                    text(&c["name"]),
                    text(&c["type"]),
                    if c["not_null"] == Value::Bool(true) {
                        " NOT NULL"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let pk: Vec<String> = list(&t["primary_key"]).iter().map(text).collect();
        if !pk.is_empty() {
            cols.push(format!("PRIMARY KEY ({})", pk.join(", ")));
        }
        s.push_str(&format!(
            "CREATE TABLE {} ({});\n",
            text(&t["name"]),
            cols.join(", ")
        ));
    }
    for f in list(&abi["functions"]) {
        let mut params: Vec<String> = list(&f["params"])
            .iter()
            .map(|p| format!("{} {}", text(&p["name"]), text(&p["type"])))
            .collect();
        let mut ret = text(&f["returns"]);
        let upper = ret.to_ascii_uppercase();
        // `RECORD(a T, b U)`: several OUT parameters; `SETOF T` and `TABLE(…)`: rows.
        let record = upper
            .strip_prefix("RECORD(")
            .and_then(|_| ret.get(7..ret.len().saturating_sub(1)))
            .filter(|_| upper.ends_with(')'))
            .map(str::to_string);
        let body = if let Some(fields) = record {
            for field in top_level_split(&fields) {
                // An output named like an input is an INOUT parameter.
                let name = field.split_whitespace().next().unwrap_or("").to_string();
                match params
                    .iter_mut()
                    .find(|p| p.split_whitespace().next() == Some(name.as_str()))
                {
                    Some(p) => *p = format!("INOUT {p}"),
                    None => params.push(format!("OUT {field}")),
                }
            }
            ret = "record".into();
            "RETURN;"
        } else if ret.eq_ignore_ascii_case("void")
            || upper.starts_with("SETOF ")
            || upper.starts_with("TABLE(")
        {
            "RETURN;"
        } else {
            "RETURN NULL;"
        };
        s.push_str(&format!(
            "CREATE FUNCTION {}({}) RETURNS {ret} AS $$ BEGIN {body} END; $$;\n",
            text(&f["name"]),
            params.join(", ")
        ));
    }
    s
}

/// `a T, b NUMERIC(10,2)` → `a T`, `b NUMERIC(10,2)`: split at the commas outside
/// parentheses.
fn top_level_split(s: &str) -> impl Iterator<Item = String> + '_ {
    let mut depth = 0i32;
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(s[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim().to_string());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// Checks an upgrade script against a stand-in of the deployed contract: syntax, names and
/// types. Errors that depend on the stored rows (constraints, exceptions) are left to the node.
pub fn check_upgrade(label: &str, script: &str, abi: &Value) -> Result<()> {
    let mut kv = MemKv::new();
    let gas = 100_000_000;
    let stub = stand_in(abi);
    let version = engine(abi["engine"].as_u64());
    match Contract::deploy_version(version, &stub, OWNER, b"preflight/", &mut kv, gas, false) {
        Ok((mut c, _)) => match c.upgrade(script, OWNER, &mut kv, gas) {
            Ok(_) => Ok(()),
            Err(
                e @ (SqlError::Parse { .. }
                | SqlError::Resolve { .. }
                | SqlError::Unsupported { .. }),
            ) => Err(located(label, script, &e)),
            Err(_) => Ok(()),
        },
        // A contract the stand-in cannot mimic: check the syntax only.
        Err(_) => match aergo_sql::parse::parse_script(script) {
            Ok(_) => Ok(()),
            Err(e) => Err(located(label, script, &e)),
        },
    }
}

/// Checks a call's function, argument count and argument types against the ABI; returns the
/// function's signature for messages.
pub fn check_call(abi: &Value, contract: &str, function: &str, args: &[String]) -> Result<()> {
    let funcs = abi["functions"].as_array().cloned().unwrap_or_default();
    let sig = |f: &Value| {
        let ps: Vec<String> = f["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} {}",
                    p["name"].as_str().unwrap_or("?"),
                    p["type"].as_str().unwrap_or("?")
                )
            })
            .collect();
        format!("{}({})", f["name"].as_str().unwrap_or("?"), ps.join(", "))
    };
    let Some(f) = funcs.iter().find(|f| {
        f["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(function))
    }) else {
        let have: Vec<String> = funcs.iter().map(sig).collect();
        bail!(
            "contract {contract} has no function `{function}`{}; nothing was sent",
            if have.is_empty() {
                " (it has no functions)".to_string()
            } else {
                format!("; it has {}", have.join(", "))
            }
        );
    };
    let params = f["params"].as_array().cloned().unwrap_or_default();
    if params.len() != args.len() {
        bail!(
            "{} takes {} argument{}, {} given; nothing was sent",
            sig(f),
            params.len(),
            if params.len() == 1 { "" } else { "s" },
            args.len()
        );
    }
    for (i, (p, a)) in params.iter().zip(args).enumerate() {
        let ty = p["type"].as_str().unwrap_or("").to_ascii_uppercase();
        if let Err(why) = check_arg(&ty, a) {
            bail!(
                "argument {} of {} ({} {ty}): {why}; nothing was sent",
                i + 1,
                sig(f),
                p["name"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

fn check_arg(ty: &str, a: &str) -> std::result::Result<(), String> {
    let t = a.trim();
    let is_int = |s: &str| {
        let d = s.strip_prefix('-').unwrap_or(s);
        !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
    };
    if ty == "BIGINT" || ty == "INTEGER" {
        let range_ok = if ty == "BIGINT" {
            t.parse::<i64>().is_ok()
        } else {
            t.parse::<i32>().is_ok()
        };
        if !is_int(t) {
            return Err(format!("`{a}` is not a whole number"));
        }
        if !range_ok {
            return Err(format!("`{a}` is out of range for {ty}"));
        }
    } else if ty.starts_with("NUMERIC") {
        let (w, f) = t.split_once('.').unwrap_or((t, "0"));
        if !is_int(w) || !f.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{a}` is not a number"));
        }
    } else if ty == "BOOLEAN" {
        if !matches!(
            t.to_ascii_lowercase().as_str(),
            "true" | "false" | "t" | "f" | "yes" | "no" | "on" | "off" | "1" | "0"
        ) {
            return Err(format!("`{a}` is not a boolean (true or false)"));
        }
    } else if let Some(n) = ty
        .strip_prefix("VARCHAR(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|n| n.parse::<usize>().ok())
    {
        if a.chars().count() > n {
            return Err(format!("{} characters, at most {n}", a.chars().count()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIG6: &str = include_str!("../../sql/tests/fixtures/figure6.sql");

    fn fig6_abi() -> Value {
        json!({
            "functions": [{"name": "transfer", "params": [{"name": "sender", "type": "TEXT"}, {"name": "to", "type": "TEXT"}, {"name": "amount", "type": "NUMERIC"}], "returns": "TEXT"}],
            "tables": [{"name": "accounts", "columns": [{"name": "owner", "type": "TEXT", "not_null": true}, {"name": "balance", "type": "NUMERIC(15,2)", "not_null": false}], "primary_key": ["owner"]}]
        })
    }

    /// The pre-check follows the chain's engine version: arrays are refused under version 1
    /// (a node whose genesis activates nothing) and accepted under version 2.
    #[test]
    fn deploy_check_follows_the_chain_engine_version() {
        let arrays = "CREATE FUNCTION total(xs BIGINT[]) RETURNS BIGINT AS $$ DECLARE x BIGINT; s BIGINT := 0; BEGIN FOREACH x IN ARRAY xs LOOP s := s + x; END LOOP; RETURN s; END $$;";
        assert_eq!(engine(None), EngineVersion::V1);
        assert_eq!(engine(Some(1)), EngineVersion::V1);
        assert_eq!(engine(Some(2)), EngineVersion::V2);
        assert_eq!(engine(Some(200)), EngineVersion::LATEST);
        assert!(check_deploy("a.sql", arrays, 1_500_000, engine(Some(2))).is_ok());
        let e = check_deploy("a.sql", arrays, 1_500_000, engine(Some(1)))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("a.sql:1:") && e.contains("nothing was sent"),
            "{e}"
        );
    }

    #[test]
    fn deploy_errors_name_file_line_and_column() {
        assert!(check_deploy("f.sql", FIG6, 1_500_000, EngineVersion::V1).is_ok());
        let bad = "CREATE TABLE t (a BIGINT PRIMARY KEY);\nCREATE FUNCTION f() RETURNS BIGINT AS $$ BEGIN RETURN nosuch; END; $$";
        let e = check_deploy("bad.sql", bad, 1_500_000, EngineVersion::V1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("bad.sql:2:"), "{e}");
        assert!(e.contains("nothing was sent"), "{e}");
        let e = check_deploy("s.sql", "CREATE TABLE (", 1_500_000, EngineVersion::V1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("s.sql:1:") && e.contains("syntax error"),
            "{e}"
        );
    }

    #[test]
    fn upgrades_are_checked_against_a_stand_in() {
        let abi = fig6_abi();
        assert!(check_upgrade(
            "seed.sql",
            "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50);",
            &abi
        )
        .is_ok());
        let e = check_upgrade("u.sql", "INSERT INTO acounts VALUES ('a', 1);", &abi)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("u.sql:1:"), "{e}");
        let e = check_upgrade("u.sql", "INSERT INTO", &abi)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("syntax error"), "{e}");
    }

    /// Functions returning a record of OUT parameters or rows get a stand-in that deploys,
    /// so an upgrade next to them is still checked for names, not only syntax.
    #[test]
    fn stand_ins_mimic_record_and_set_returning_functions() {
        let abi = json!({
            "functions": [
                {"name": "divmod", "params": [{"name": "a", "type": "BIGINT"}, {"name": "b", "type": "BIGINT"}], "returns": "RECORD(q BIGINT, r NUMERIC(10,2))"},
                {"name": "upto", "params": [{"name": "n", "type": "BIGINT"}], "returns": "SETOF BIGINT"},
                {"name": "owners", "params": [], "returns": "TABLE(n TEXT, p NUMERIC)"},
                {"name": "bump", "params": [{"name": "x", "type": "BIGINT"}], "returns": "RECORD(x BIGINT, y TEXT)"}
            ],
            "tables": [{"name": "accounts", "columns": [{"name": "owner", "type": "TEXT", "not_null": true}], "primary_key": ["owner"]}]
        });
        let stub = stand_in(&abi);
        let mut kv = MemKv::new();
        let deployed = Contract::deploy(&stub, OWNER, b"t/", &mut kv, 100_000_000);
        assert!(deployed.is_ok(), "{stub}: {:?}", deployed.err());
        // A misspelt table is caught (it would pass a syntax-only check).
        let e = check_upgrade("u.sql", "INSERT INTO acounts VALUES ('a');", &abi)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("u.sql:1:"), "{e}");
    }

    #[test]
    fn calls_are_checked_against_the_abi() {
        let abi = fig6_abi();
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_call(&abi, "C", "transfer", &args(&["a", "b", "10.5"])).is_ok());
        let e = |f: &str, a: &[&str]| {
            check_call(&abi, "C", f, &args(a))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(e("transfer", &["a", "b"]).contains("takes 3 arguments, 2 given"));
        assert!(
            e("tranfer", &["a"]).contains("has no function `tranfer`; it has transfer(sender TEXT")
        );
        assert!(e("transfer", &["a", "b", "ten"]).contains("argument 3"));
        assert!(check_arg("BIGINT", "99999999999999999999").is_err());
        assert!(check_arg("INTEGER", "-7").is_ok());
        assert!(check_arg("BOOLEAN", "maybe").is_err());
        assert!(check_arg("VARCHAR(3)", "abcd").is_err());
    }
}
