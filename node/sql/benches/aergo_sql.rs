//! AergoSQL benchmark (run with `cargo bench -p aergo-sql`): whitepaper
//! Figure 6 `transfer` among 10,000 accounts through the interpreter, the JIT
//! and SQLite (same statements, prepared, one transaction); deploy time; and
//! a compute-bound function (compound interest over 1,000 periods).

#![allow(clippy::expect_used)] // benchmark harness: any failure must abort the run

use aergo_sql::{Contract, Engine, MemKv, MockChain, Value};
use std::time::{Duration, Instant};

const FIG6: &str = include_str!("../tests/fixtures/figure6.sql");
const ACCOUNTS: usize = 10_000;
const GAS: u64 = 10_000_000;

const COMPOUND: &str = "CREATE FUNCTION compound(principal NUMERIC, rate NUMERIC, periods INTEGER) RETURNS NUMERIC AS $$
DECLARE
  bal NUMERIC(30,8) := principal;
  i INTEGER := 0;
BEGIN
  WHILE i < periods LOOP
    bal := bal + bal * rate;
    i := i + 1;
  END LOOP;
  RETURN round(bal, 2);
END $$;";

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

fn pairs(n: usize) -> Vec<(String, String)> {
    let mut r = Lcg(42);
    (0..n)
        .map(|_| {
            let a = r.next() % ACCOUNTS;
            let mut b = r.next() % ACCOUNTS;
            if b == a {
                b = (b + 1) % ACCOUNTS;
            }
            (format!("acct{a:05}"), format!("acct{b:05}"))
        })
        .collect()
}

fn setup() -> (Contract, MemKv) {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(FIG6, "owner", b"bench/", &mut kv, GAS).expect("deploy");
    for chunk in (0..ACCOUNTS).collect::<Vec<_>>().chunks(500) {
        let vals: Vec<String> = chunk
            .iter()
            .map(|i| format!("('acct{i:05}', 1000000.00)"))
            .collect();
        c.execute(
            &format!("INSERT INTO accounts VALUES {}", vals.join(",")),
            &mut kv,
            u64::MAX,
        )
        .expect("seed");
    }
    (c, kv)
}

fn run_engine(engine: Engine, calls: &[(String, String)]) -> (f64, u64) {
    let (c, mut kv) = setup();
    let mut ctx = MockChain::default();
    let amt = Value::Num(aergo_sql::Decimal::new(100, 2).expect("dec"));
    let start = Instant::now();
    let mut gas = 0;
    for (a, b) in calls {
        let out = c
            .call_with(
                engine,
                "transfer",
                &[Value::Text(a.clone()), Value::Text(b.clone()), amt.clone()],
                &mut ctx,
                &mut kv,
                GAS,
            )
            .expect("transfer");
        assert_eq!(out.result, Value::Text("OK".into()));
        gas = out.gas_used;
    }
    (calls.len() as f64 / start.elapsed().as_secs_f64(), gas)
}

fn run_sqlite(calls: &[(String, String)]) -> f64 {
    let db = rusqlite::Connection::open_in_memory().expect("sqlite");
    db.execute_batch(
        "CREATE TABLE accounts (owner TEXT NOT NULL PRIMARY KEY, balance NUMERIC(15,2));",
    )
    .expect("ddl");
    {
        let tx = db.unchecked_transaction().expect("tx");
        {
            let mut ins = tx
                .prepare("INSERT INTO accounts VALUES (?1, 1000000.00)")
                .expect("prep");
            for i in 0..ACCOUNTS {
                ins.execute([format!("acct{i:05}")]).expect("ins");
            }
        }
        tx.commit().expect("commit");
    }
    let tx = db.unchecked_transaction().expect("tx");
    let start = Instant::now();
    {
        let mut sel = tx
            .prepare("SELECT balance FROM accounts WHERE owner = ?1")
            .expect("prep");
        let mut add = tx
            .prepare("UPDATE accounts SET balance = balance + ?1 WHERE owner = ?2")
            .expect("prep");
        let mut sub = tx
            .prepare("UPDATE accounts SET balance = balance - ?1 WHERE owner = ?2")
            .expect("prep");
        let amount = 1.0f64;
        for (a, b) in calls {
            let bal: Option<f64> = sel.query_row([a], |r| r.get(0)).ok();
            let Some(bal) = bal else { continue };
            if bal < amount {
                continue;
            }
            if add.execute(rusqlite::params![amount, b]).expect("add") == 0 {
                continue;
            }
            sub.execute(rusqlite::params![amount, a]).expect("sub");
        }
    }
    let rate = calls.len() as f64 / start.elapsed().as_secs_f64();
    tx.commit().expect("commit");
    rate
}

fn time_deploy(n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let mut kv = MemKv::new();
        let _ = Contract::deploy(FIG6, "owner", b"d/", &mut kv, GAS).expect("deploy");
    }
    start.elapsed() / n as u32
}

fn compound(engine: Engine, n: usize) -> (f64, String) {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(COMPOUND, "owner", b"c/", &mut kv, GAS).expect("deploy");
    let args = [
        Value::Num(aergo_sql::Decimal::new(100000, 2).expect("d")),
        Value::Num(aergo_sql::Decimal::new(1, 3).expect("d")),
        Value::Int(1000),
    ];
    let mut ctx = MockChain::default();
    let mut last = String::new();
    let start = Instant::now();
    for _ in 0..n {
        let out = c
            .call_with(engine, "compound", &args, &mut ctx, &mut kv, GAS)
            .expect("compound");
        last = out.result.to_string();
    }
    (n as f64 / start.elapsed().as_secs_f64(), last)
}

fn main() {
    let n: usize = std::env::var("AERGO_SQL_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let calls = pairs(n);
    let jit_on = cfg!(feature = "jit");
    let deploy = time_deploy(50);
    // interleaved rounds, best of each (the build machine is shared)
    let (mut interp, mut jit, mut sqlite, mut ci, mut cj, mut gas) =
        (0f64, 0f64, 0f64, 0f64, 0f64, 0);
    let (mut v1, mut v2) = (String::new(), String::new());
    for _ in 0..3 {
        let (r, g) = run_engine(Engine::Interpreter, &calls);
        interp = interp.max(r);
        gas = g;
        jit = jit.max(run_engine(Engine::Jit, &calls).0);
        sqlite = sqlite.max(run_sqlite(&calls));
        let (r, v) = compound(Engine::Interpreter, 200);
        ci = ci.max(r);
        v1 = v;
        let (r, v) = compound(Engine::Jit, 200);
        cj = cj.max(r);
        v2 = v;
    }
    assert_eq!(v1, v2, "engines disagree on compound()");
    println!("AergoSQL benchmark ({n} transfers among {ACCOUNTS} accounts; jit feature: {jit_on})");
    println!("| measurement | value |");
    println!("| --- | --- |");
    println!(
        "| Figure 6 deploy (parse + resolve + JIT) | {:.2} ms |",
        deploy.as_secs_f64() * 1e3
    );
    println!("| transfer, interpreter | {interp:.0} calls/s |");
    println!("| transfer, JIT | {jit:.0} calls/s |");
    println!("| transfer, SQLite (prepared, one transaction) | {sqlite:.0} calls/s |");
    println!("| JIT / interpreter (transfer) | {:.2}x |", jit / interp);
    println!("| JIT / SQLite (transfer) | {:.2}x |", jit / sqlite);
    println!("| gas per transfer | {gas} |");
    println!("| compound interest, 1,000 periods, interpreter | {ci:.0} calls/s |");
    println!("| compound interest, 1,000 periods, JIT | {cj:.0} calls/s |");
    println!("| JIT / interpreter (compound) | {:.2}x |", cj / ci);
    println!("| compound(1000.00, 0.001, 1000) | {v1} |");
}
