//! AergoSQL benchmark (run with `cargo bench -p aergo-sql`): whitepaper
//! Figure 6 `transfer` among 10,000 accounts through the interpreter, the JIT
//! and SQLite (same statements, prepared, one transaction); deploy time; and
//! a compute-bound function (compound interest over 1,000 periods, on NUMERIC and on DOUBLE
//! PRECISION).

#![allow(clippy::expect_used)] // benchmark harness: any failure must abort the run

use aergo_sql::{Contract, Engine, MemKv, MockChain, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts heap allocations while `COUNTING` is set (profiling mode only; a
/// relaxed load per allocation otherwise).
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's `alloc` contract (a valid, non-zero-size layout) is passed on.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: `p` was allocated by `System` with layout `l` (every allocation goes there).
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `p` was allocated by `System` with layout `l`; the caller's `realloc`
        // contract on `n` is passed on.
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

const FCOMPOUND: &str = "CREATE FUNCTION fcompound(principal DOUBLE PRECISION, rate DOUBLE PRECISION, periods INTEGER) RETURNS DOUBLE PRECISION AS $$
DECLARE
  bal DOUBLE PRECISION := principal;
  i INTEGER := 0;
BEGIN
  WHILE i < periods LOOP
    bal := bal + bal * rate;
    i := i + 1;
  END LOOP;
  RETURN bal;
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

/// One engine's Figure 6 contract over its own store, with the transfer
/// arguments prepared.
struct AergoRunner {
    engine: Engine,
    c: Contract,
    kv: MemKv,
    ctx: MockChain,
    args: Vec<[Value; 3]>,
    gas: u64,
}

impl AergoRunner {
    fn new(engine: Engine, calls: &[(String, String)]) -> AergoRunner {
        let (c, kv) = setup();
        let amt = Value::Num(aergo_sql::Decimal::new(100, 2).expect("dec"));
        let args = calls
            .iter()
            .map(|(a, b)| [Value::Text(a.clone()), Value::Text(b.clone()), amt.clone()])
            .collect();
        AergoRunner {
            engine,
            c,
            kv,
            ctx: MockChain::default(),
            args,
            gas: 0,
        }
    }

    /// Runs transfers `range`; returns the time taken.
    fn run(&mut self, range: std::ops::Range<usize>) -> Duration {
        let start = Instant::now();
        for args in &self.args[range] {
            let out = self
                .c
                .call_with(
                    self.engine,
                    "transfer",
                    args,
                    &mut self.ctx,
                    &mut self.kv,
                    GAS,
                )
                .expect("transfer");
            assert_eq!(out.result, Value::Text("OK".into()));
            self.gas = out.gas_used;
        }
        start.elapsed()
    }
}

/// The same transfers on SQLite: in-memory database, the three statements
/// prepared (cached), all transfers in one transaction.
struct SqliteRunner {
    db: rusqlite::Connection,
    calls: Vec<(String, String)>,
}

impl SqliteRunner {
    fn new(calls: &[(String, String)]) -> SqliteRunner {
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
        db.execute_batch("BEGIN").expect("begin");
        SqliteRunner {
            db,
            calls: calls.to_vec(),
        }
    }

    fn run(&mut self, range: std::ops::Range<usize>) -> Duration {
        let start = Instant::now();
        let mut sel = self
            .db
            .prepare_cached("SELECT balance FROM accounts WHERE owner = ?1")
            .expect("prep");
        let mut add = self
            .db
            .prepare_cached("UPDATE accounts SET balance = balance + ?1 WHERE owner = ?2")
            .expect("prep");
        let mut sub = self
            .db
            .prepare_cached("UPDATE accounts SET balance = balance - ?1 WHERE owner = ?2")
            .expect("prep");
        let amount = 1.0f64;
        for (a, b) in &self.calls[range] {
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
        start.elapsed()
    }
}

impl Drop for SqliteRunner {
    fn drop(&mut self) {
        let _ = self.db.execute_batch("COMMIT");
    }
}

/// Transfers per chunk: the engines take turns chunk by chunk, so a change in
/// the machine's load hits all of them alike.
const CHUNK: usize = 500;

/// One round: interpreter, JIT and SQLite over the same transfers, interleaved
/// by chunks (the order rotating). Returns calls/s of each — from the median
/// chunk time, so a chunk during which the shared machine preempted the
/// benchmark does not count — and the gas.
fn transfer_round(calls: &[(String, String)]) -> ([f64; 3], u64) {
    let mut interp = AergoRunner::new(Engine::Interpreter, calls);
    let mut jit = AergoRunner::new(Engine::Jit, calls);
    let mut sqlite = SqliteRunner::new(calls);
    let mut t: [Vec<f64>; 3] = Default::default();
    let full = calls.len() / CHUNK;
    for k in 0..full.max(1) {
        let range = k * CHUNK..((k + 1) * CHUNK).min(calls.len());
        let per_call = |d: Duration| d.as_secs_f64() / range.len().max(1) as f64;
        for i in 0..3 {
            let e = (i + k) % 3;
            let d = match e {
                0 => interp.run(range.clone()),
                1 => jit.run(range.clone()),
                _ => sqlite.run(range.clone()),
            };
            t[e].push(per_call(d));
        }
    }
    assert_eq!(interp.gas, jit.gas, "engines disagree on gas");
    let rate = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        1.0 / v.get(v.len() / 2).copied().unwrap_or(1.0).max(1e-12)
    };
    let [a, b, c] = &mut t;
    ([rate(a), rate(b), rate(c)], interp.gas)
}

fn time_deploy(n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let mut kv = MemKv::new();
        let _ = Contract::deploy(FIG6, "owner", b"d/", &mut kv, GAS).expect("deploy");
    }
    start.elapsed() / u32::try_from(n).expect("iteration count fits u32")
}

fn compound(engine: Engine, n: usize, float: bool) -> (f64, String) {
    let mut kv = MemKv::new();
    let (src, f) = if float {
        (FCOMPOUND, "fcompound")
    } else {
        (COMPOUND, "compound")
    };
    let (c, _) = Contract::deploy(src, "owner", b"c/", &mut kv, GAS).expect("deploy");
    if float && engine == Engine::Jit {
        assert_eq!(c.jit_functions(), vec!["fcompound".to_string()]);
    }
    let args = if float {
        [Value::Float(1000.0), Value::Float(0.001), Value::Int(1000)]
    } else {
        [
            Value::Num(aergo_sql::Decimal::new(100000, 2).expect("d")),
            Value::Num(aergo_sql::Decimal::new(1, 3).expect("d")),
            Value::Int(1000),
        ]
    };
    let mut ctx = MockChain::default();
    let mut last = String::new();
    let start = Instant::now();
    for _ in 0..n {
        let out = c
            .call_with(engine, f, &args, &mut ctx, &mut kv, GAS)
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
    // For profilers: only the transfer loop of one engine (`interpreter`, `jit`, `sqlite`),
    // only Figure 6 deploys (`deploy`), or
    // only the NUMERIC compound
    // function on one engine (`compound-interpreter`, `compound-jit`).
    if let Ok(which) = std::env::var("AERGO_SQL_BENCH_ONLY") {
        if let Some(e) = which.strip_prefix("compound-") {
            let engine = if e == "jit" {
                Engine::Jit
            } else {
                Engine::Interpreter
            };
            let (rate, v) = compound(engine, n, false);
            println!("compound, {e}: {rate:.0} calls/s, result {v}");
            return;
        }
        if which == "deploy" {
            let d = time_deploy(20);
            println!("Figure 6 deploy: {:.2} ms", d.as_secs_f64() * 1e3);
            return;
        }
        if which == "sqlite" {
            let mut r = SqliteRunner::new(&calls);
            let d = r.run(0..calls.len());
            println!(
                "transfer, sqlite: {:.0} calls/s",
                n as f64 / d.as_secs_f64()
            );
            return;
        }
        let engine = if which == "jit" {
            Engine::Jit
        } else {
            Engine::Interpreter
        };
        let mut r = AergoRunner::new(engine, &calls);
        COUNTING.store(true, Ordering::Relaxed);
        let a0 = ALLOCS.load(Ordering::Relaxed);
        let d = r.run(0..calls.len());
        let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / n.max(1) as f64;
        let rate = n as f64 / d.as_secs_f64();
        println!(
            "transfer, {which}: {rate:.0} calls/s, gas {}, {allocs:.1} allocations/call",
            r.gas
        );
        return;
    }
    let jit_on = cfg!(feature = "jit");
    let deploy = time_deploy(50);
    // rounds of interleaved chunks, best of each (the build machine is shared)
    let (mut interp, mut jit, mut sqlite, mut ci, mut cj, mut gas) =
        (0f64, 0f64, 0f64, 0f64, 0f64, 0);
    let mut jit_interp: Vec<f64> = Vec::new();
    let mut jit_sqlite: Vec<f64> = Vec::new();
    let (mut v1, mut v2) = (String::new(), String::new());
    let (mut fi, mut fj) = (0f64, 0f64);
    let (mut w1, mut w2) = (String::new(), String::new());
    for _ in 0..3 {
        let ([ri, rj, rs], g) = transfer_round(&calls);
        interp = interp.max(ri);
        jit = jit.max(rj);
        sqlite = sqlite.max(rs);
        jit_interp.push(rj / ri);
        jit_sqlite.push(rj / rs);
        gas = g;
        let (r, v) = compound(Engine::Interpreter, 200, false);
        ci = ci.max(r);
        v1 = v;
        let (r, v) = compound(Engine::Jit, 200, false);
        cj = cj.max(r);
        v2 = v;
        let (r, v) = compound(Engine::Interpreter, 200, true);
        fi = fi.max(r);
        w1 = v;
        let (r, v) = compound(Engine::Jit, 200, true);
        fj = fj.max(r);
        w2 = v;
    }
    assert_eq!(v1, v2, "engines disagree on compound()");
    assert_eq!(w1, w2, "engines disagree on fcompound()");
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
    let span = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0f64, f64::max);
        format!("{lo:.2}–{hi:.2}x")
    };
    println!(
        "| JIT / interpreter (transfer) | {:.2}x (rounds: {}) |",
        jit / interp,
        span(&jit_interp)
    );
    println!(
        "| JIT / SQLite (transfer) | {:.2}x (rounds: {}) |",
        jit / sqlite,
        span(&jit_sqlite)
    );
    println!("| gas per transfer | {gas} |");
    println!("| compound interest, 1,000 periods, interpreter | {ci:.0} calls/s |");
    println!("| compound interest, 1,000 periods, JIT | {cj:.0} calls/s |");
    println!("| JIT / interpreter (compound) | {:.2}x |", cj / ci);
    println!("| compound(1000.00, 0.001, 1000) | {v1} |");
    println!("| compound on DOUBLE PRECISION, interpreter | {fi:.0} calls/s |");
    println!("| compound on DOUBLE PRECISION, JIT | {fj:.0} calls/s |");
    println!(
        "| JIT / interpreter (DOUBLE PRECISION compound) | {:.2}x |",
        fj / fi
    );
    println!("| fcompound(1000, 0.001, 1000) | {w1} |");
}
