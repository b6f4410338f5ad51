//! Whitepaper Figure 6 deployed verbatim and exercised through both engines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{Contract, Engine, MemKv, MockChain, SqlError, Value};

const FIG6: &str = include_str!("fixtures/figure6.sql");
const GAS: u64 = 1_000_000;

fn setup() -> (Contract, MemKv) {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(FIG6, "owner", b"c1/", &mut kv, GAS).unwrap();
    c.execute(
        "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50)",
        &mut kv,
        GAS,
    )
    .unwrap();
    (c, kv)
}

fn balances(c: &Contract, kv: &MemKv) -> Vec<String> {
    let r = c
        .query("SELECT owner, balance FROM accounts", kv, GAS)
        .unwrap();
    r.rows
        .iter()
        .map(|r| format!("{}={}", r[0], r[1]))
        .collect()
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn figure6_is_verbatim_from_the_whitepaper() {
    assert!(FIG6.contains("CREATE IF NOT EXISTS accounts"));
    assert!(FIG6.contains("transfer (sender TEXT, to TEXT, amount NUMERIC)"));
    assert!(FIG6.trim_end().ends_with("$$"));
}

#[test]
fn transfer_all_paths_both_engines() {
    for engine in [Engine::Interpreter, Engine::Jit] {
        let (c, mut kv) = setup();
        let mut ctx = MockChain::default();
        let mut call = |args: [&str; 3], kv: &mut MemKv| {
            let a: Vec<Value> = args.iter().map(|s| t(s)).collect();
            c.call_with(engine, "transfer", &a, &mut ctx, kv, GAS)
                .unwrap()
        };
        assert_eq!(call(["alice", "bob", "30.25"], &mut kv).result, t("OK"));
        assert_eq!(balances(&c, &kv), vec!["alice=69.75", "bob=35.75"]);
        assert_eq!(
            call(["carol", "bob", "1"], &mut kv).result,
            t("Sender not found")
        );
        assert_eq!(
            call(["bob", "alice", "1000"], &mut kv).result,
            t("Not enough balance")
        );
        let before = kv.entries();
        let out = call(["alice", "nobody", "1"], &mut kv);
        assert_eq!(out.result, t("Receiver not found"));
        assert_eq!(kv.entries(), before, "nothing changed");
        assert!(out.gas_used > 0);
        assert_eq!(balances(&c, &kv), vec!["alice=69.75", "bob=35.75"]);
    }
}

#[test]
fn transfer_rejects_overflowing_balance_and_reverts() {
    let (c, mut kv) = setup();
    let mut ctx = MockChain::default();
    c.execute(
        "UPDATE accounts SET balance = 9999999999999.00 WHERE owner = 'bob'",
        &mut kv,
        GAS,
    )
    .unwrap();
    let before = kv.entries();
    let err = c
        .call(
            "transfer",
            &[t("alice"), t("bob"), t("50")],
            &mut ctx,
            &mut kv,
            GAS,
        )
        .unwrap_err();
    assert!(matches!(err, SqlError::Overflow(_)), "{err}");
    assert_eq!(kv.entries(), before);
}

#[test]
fn out_of_gas_reverts() {
    let (c, mut kv) = setup();
    let mut ctx = MockChain::default();
    let before = kv.entries();
    let err = c
        .call(
            "transfer",
            &[t("alice"), t("bob"), t("1")],
            &mut ctx,
            &mut kv,
            150,
        )
        .unwrap_err();
    assert!(matches!(err, SqlError::OutOfGas { .. }), "{err}");
    assert_eq!(kv.entries(), before);
}

#[test]
fn abi_and_reload() {
    let (c, kv) = setup();
    let abi = c.abi();
    assert_eq!(abi.functions[0].name, "transfer");
    assert_eq!(
        abi.functions[0].params[1],
        ("to".to_string(), "TEXT".to_string())
    );
    assert_eq!(abi.tables[0].columns[1].1, "NUMERIC(15,2)");
    assert_eq!(abi.tables[0].primary_key, vec!["owner".to_string()]);
    let c2 = Contract::load(b"c1/", &kv).unwrap();
    assert_eq!(c2.abi(), abi);
    assert_eq!(c2.owner(), "owner");
}

#[test]
fn contracts_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>(_: &T) {}
    let (c, kv) = setup();
    assert_send_sync(&c);
    let c2 = c.clone();
    let rows = std::thread::spawn(move || {
        c2.query("SELECT COUNT(*) FROM accounts", &kv, GAS)
            .unwrap()
            .rows
    })
    .join()
    .unwrap();
    assert_eq!(rows[0][0].to_string(), "2");
}
