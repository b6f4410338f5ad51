//! A throwaway local contract for authors (`aergo sql FILE.sql`): deploys a
//! script into an in-memory store with a mock chain context and runs lines
//! typed at a prompt. Also the JSON rendering of values for `--json` output.

use crate::contract::{Abi, CallOutcome, Contract, QueryResult};
use crate::ctx::MockChain;
use crate::error::{Result, SqlError};
use crate::kv::MemKv;
use crate::value::Value;

/// What one sandbox line produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SandboxOutput {
    /// `CALL f(args)`: the call's outcome.
    Call(CallOutcome),
    /// A SELECT (or DML with RETURNING): its rows.
    Rows(QueryResult),
    /// `\abi`.
    Abi(Abi),
    /// A statement without rows (DDL upgrade, DML, `\sender …`): what it did and its gas.
    Done {
        /// What happened, e.g. `upgraded`, `ok`, `sender = bob`.
        message: String,
        /// Gas the statement used (0 for the sandbox's own `\` commands).
        gas: u64,
    },
}

/// An in-memory contract with a mock chain.
pub struct Sandbox {
    kv: MemKv,
    contract: Contract,
    /// Chain context used by calls (`\sender`, `\amount`, `\height`, `\time` change it).
    pub chain: MockChain,
    /// Gas limit of each line.
    pub gas_limit: u64,
}

/// Owner address the sandbox deploys with.
pub const SANDBOX_OWNER: &str = "sandbox-owner";

impl Sandbox {
    /// Deploys `script` into a fresh store.
    pub fn new(script: &str) -> Result<Sandbox> {
        let mut kv = MemKv::new();
        let gas_limit = 100_000_000;
        let (contract, _) =
            Contract::deploy(script, SANDBOX_OWNER, b"sandbox/", &mut kv, gas_limit)?;
        let mut chain = MockChain {
            sender: SANDBOX_OWNER.into(),
            height: 1,
            time: 0,
            tx_hash: "00".repeat(32),
            contract: "sandbox-contract".into(),
            amount: 0,
            ..MockChain::default()
        };
        chain.balances.insert(chain.contract.clone(), 0);
        Ok(Sandbox {
            kv,
            contract,
            chain,
            gas_limit,
        })
    }

    /// The deployed contract.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// Runs one line: `CALL f(arg, …)`, any single SQL statement, `CREATE …`/
    /// `ALTER …` (an owner upgrade), `\abi`, `\sender ADDR`, `\amount AER`,
    /// `\height N`, `\time UNIX_SECONDS`, `\balance ADDR AER`.
    pub fn run(&mut self, line: &str) -> Result<SandboxOutput> {
        let s = line.trim().trim_end_matches(';').trim();
        let head = s
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let arg = |i: usize| s.split_whitespace().nth(i).unwrap_or("").to_string();
        let bad = |m: &str| SqlError::Call(m.to_string());
        match head.as_str() {
            "" => Ok(done(String::new(), 0)),
            "\\abi" => Ok(SandboxOutput::Abi(self.contract.abi())),
            "\\sender" => {
                self.chain.sender = arg(1);
                Ok(done(format!("sender = {}", self.chain.sender), 0))
            }
            "\\amount" => {
                self.chain.amount = arg(1).parse().map_err(|_| bad("\\amount AER"))?;
                Ok(done(format!("amount = {}", self.chain.amount), 0))
            }
            "\\height" => {
                self.chain.height = arg(1).parse().map_err(|_| bad("\\height N"))?;
                Ok(done(format!("height = {}", self.chain.height), 0))
            }
            "\\time" => {
                self.chain.time = arg(1).parse().map_err(|_| bad("\\time UNIX_SECONDS"))?;
                Ok(done(format!("time = {}", self.chain.time), 0))
            }
            "\\balance" => {
                let v: u128 = arg(2).parse().map_err(|_| bad("\\balance ADDR AER"))?;
                self.chain.balances.insert(arg(1), v);
                Ok(done(format!("balance of {} = {v}", arg(1)), 0))
            }
            "call" => {
                let rest = s[4..].trim();
                let open = rest.find('(').ok_or_else(|| bad("CALL f(args)"))?;
                let name = rest[..open].trim();
                let inner = rest[open + 1..].trim();
                let inner = inner.strip_suffix(')').ok_or_else(|| bad("CALL f(args)"))?;
                let args = if inner.trim().is_empty() {
                    Vec::new()
                } else {
                    let r = self.contract.query(
                        &format!("SELECT {inner}"),
                        &self.kv,
                        self.gas_limit,
                    )?;
                    r.rows.into_iter().next().unwrap_or_default()
                };
                let out = self.contract.call(
                    name,
                    &args,
                    &mut self.chain,
                    &mut self.kv,
                    self.gas_limit,
                )?;
                Ok(SandboxOutput::Call(out))
            }
            "create" | "alter" => {
                let gas = self
                    .contract
                    .upgrade(s, SANDBOX_OWNER, &mut self.kv, self.gas_limit)?;
                Ok(done("upgraded".into(), gas))
            }
            _ => {
                let r = self.contract.execute(s, &mut self.kv, self.gas_limit)?;
                if r.columns.is_empty() {
                    Ok(done("ok".into(), r.gas_used))
                } else {
                    Ok(SandboxOutput::Rows(r))
                }
            }
        }
    }
}

fn done(message: String, gas: u64) -> SandboxOutput {
    SandboxOutput::Done { message, gas }
}

impl SandboxOutput {
    /// The sandbox's line protocol (`aergo sql FILE --json`): exactly one JSON object per
    /// line run — `{"columns": [...], "rows": [[...]]}` for rows, `{"result": …, "events":
    /// [...], "gas_used": N}` for a CALL, `{"functions": [...], "tables": [...]}` for `\abi`,
    /// `{"done": "...", "gas": N}` for anything else (failures are `{"error": "..."}`, written
    /// by the caller). Stable: scripts depend on it.
    pub fn to_json(&self) -> String {
        match self {
            SandboxOutput::Call(c) => c.to_json(),
            SandboxOutput::Rows(r) => r.to_json(),
            SandboxOutput::Abi(a) => a.to_json(),
            SandboxOutput::Done { message, gas } => {
                format!("{{\"done\":{},\"gas\":{gas}}}", json_str(message))
            }
        }
    }
}

impl Abi {
    /// `{"functions": [{"name", "params": [{"name", "type"}], "returns"}], "tables": [{"name",
    /// "columns": [{"name", "type", "not_null"}], "primary_key": [...]}]}` — the shape of the
    /// node's `contract_abi` answer (without its address and owner).
    pub fn to_json(&self) -> String {
        let list = |v: Vec<String>| format!("[{}]", v.join(","));
        let functions = self
            .functions
            .iter()
            .map(|f| {
                let params = f
                    .params
                    .iter()
                    .map(|(n, t)| format!("{{\"name\":{},\"type\":{}}}", json_str(n), json_str(t)))
                    .collect();
                format!(
                    "{{\"name\":{},\"params\":{},\"returns\":{}}}",
                    json_str(&f.name),
                    list(params),
                    json_str(&f.returns)
                )
            })
            .collect();
        let tables = self
            .tables
            .iter()
            .map(|t| {
                let cols = t
                    .columns
                    .iter()
                    .map(|(n, ty, nn)| {
                        format!(
                            "{{\"name\":{},\"type\":{},\"not_null\":{nn}}}",
                            json_str(n),
                            json_str(ty)
                        )
                    })
                    .collect();
                let pk = t.primary_key.iter().map(|c| json_str(c)).collect();
                format!(
                    "{{\"name\":{},\"columns\":{},\"primary_key\":{}}}",
                    json_str(&t.name),
                    list(cols),
                    list(pk)
                )
            })
            .collect();
        format!(
            "{{\"functions\":{},\"tables\":{}}}",
            list(functions),
            list(tables)
        )
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Value {
    /// JSON rendering: BIGINT/INTEGER as numbers, BOOLEAN as booleans, NULL
    /// as null, NUMERIC as a string with its exact digits (amounts must not
    /// pass through floating point), REAL/DOUBLE PRECISION as strings in
    /// PostgreSQL's text form (`"NaN"` and `"Infinity"` are not JSON numbers),
    /// text/bytes/timestamps as strings, arrays as JSON arrays of their elements.
    pub fn to_json(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(a) => format!(
                "[{}]",
                a.items
                    .iter()
                    .map(Value::to_json)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            v => json_str(&v.to_text()),
        }
    }
}

impl QueryResult {
    /// `{"columns": [...], "rows": [[...], ...]}`.
    pub fn to_json(&self) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| json_str(c)).collect();
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "[{}]",
                    r.iter().map(|v| v.to_json()).collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        format!(
            "{{\"columns\":[{}],\"rows\":[{}]}}",
            cols.join(","),
            rows.join(",")
        )
    }

    /// A plain-text table for the sandbox prompt.
    pub fn to_table(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|v| v.to_string()).collect())
            .collect();
        for r in &cells {
            for (i, c) in r.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let line = |vals: &[String]| -> String {
            vals.iter()
                .enumerate()
                .map(|(i, v)| format!("{v:<w$}", w = widths.get(i).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let mut out = line(&self.columns);
        out.push('\n');
        out.push_str(
            &widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-+-"),
        );
        for r in &cells {
            out.push('\n');
            out.push_str(&line(r));
        }
        out.push_str(&format!(
            "\n({} row{})",
            cells.len(),
            if cells.len() == 1 { "" } else { "s" }
        ));
        out
    }
}

impl CallOutcome {
    /// `{"result": …, "events": [...], "gas_used": N}`.
    pub fn to_json(&self) -> String {
        let ev: Vec<String> = self.events.iter().map(|e| json_str(e)).collect();
        format!(
            "{{\"result\":{},\"events\":[{}],\"gas_used\":{}}}",
            self.result.to_json(),
            ev.join(","),
            self.gas_used
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of line answers one line of JSON with the documented keys.
    #[test]
    fn json_protocol_one_object_per_line() {
        let fig6 = include_str!("../tests/fixtures/figure6.sql");
        let mut sb = Sandbox::new(fig6).unwrap();
        let cases: [(&str, &[&str]); 7] = [
            (
                "INSERT INTO accounts VALUES ('a', 10), ('b', 0)",
                &["done", "gas"],
            ),
            ("CREATE TABLE t2 (k BIGINT PRIMARY KEY)", &["done", "gas"]),
            ("\\sender bob", &["done", "gas"]),
            (
                "CALL transfer('a', 'b', 2.5)",
                &["result", "events", "gas_used"],
            ),
            ("SELECT owner, balance FROM accounts", &["columns", "rows"]),
            (
                "SELECT owner FROM accounts WHERE owner = 'zz'",
                &["columns", "rows"],
            ),
            ("\\abi", &["functions", "tables"]),
        ];
        for (line, keys) in cases {
            let out = sb.run(line).unwrap().to_json();
            assert!(!out.contains('\n'), "{line}: {out}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let obj = v.as_object().unwrap();
            let mut got: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
            got.sort_unstable();
            let mut want = keys.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{line}: {out}");
        }
        let done = sb
            .run("UPDATE accounts SET balance = 1 WHERE owner = 'a'")
            .unwrap();
        assert!(
            matches!(done, SandboxOutput::Done { ref message, gas } if message == "ok" && gas > 0)
        );
        let abi: serde_json::Value = serde_json::from_str(&sb.contract().abi().to_json()).unwrap();
        assert_eq!(abi["functions"][0]["name"], "transfer");
        assert_eq!(abi["functions"][0]["params"][1]["name"], "to");
        assert_eq!(abi["tables"][0]["primary_key"][0], "owner");
    }

    #[test]
    fn sandbox_session() {
        let fig6 = include_str!("../tests/fixtures/figure6.sql");
        let mut sb = Sandbox::new(fig6).unwrap();
        assert!(matches!(
            sb.run("INSERT INTO accounts VALUES ('a', 10), ('b', 0)")
                .unwrap(),
            SandboxOutput::Done { .. }
        ));
        match sb.run("CALL transfer('a', 'b', 2.5);").unwrap() {
            SandboxOutput::Call(out) => {
                assert_eq!(out.result, Value::Text("OK".into()));
                assert!(out
                    .to_json()
                    .starts_with("{\"result\":\"OK\",\"events\":[],\"gas_used\":"));
            }
            other => panic!("{other:?}"),
        }
        match sb.run("SELECT owner, balance FROM accounts").unwrap() {
            SandboxOutput::Rows(r) => {
                assert_eq!(
                    r.to_json(),
                    r#"{"columns":["owner","balance"],"rows":[["a","7.50"],["b","2.50"]]}"#
                );
                assert!(r.to_table().contains("a     | 7.50"), "{}", r.to_table());
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(sb.run("\\abi").unwrap(), SandboxOutput::Abi(a) if a.functions.len() == 1)
        );
        sb.run("\\sender bob").unwrap();
        assert_eq!(sb.chain.sender, "bob");
        assert!(sb.run("CALL transfer('a')").is_err());
        assert!(sb.run("CALL nope()").is_err());
        assert!(sb.run("\\amount x").is_err());
        sb.run("CREATE FUNCTION who() RETURNS TEXT AS $$ BEGIN RETURN sender(); END $$")
            .unwrap();
        match sb.run("CALL who()").unwrap() {
            SandboxOutput::Call(out) => assert_eq!(out.result.to_json(), "\"bob\""),
            other => panic!("{other:?}"),
        }
        assert_eq!(Value::Text("a\"\n".into()).to_json(), r#""a\"\n""#);
        assert_eq!(Value::Null.to_json(), "null");
        assert_eq!(Value::Int(-3).to_json(), "-3");
    }
}
