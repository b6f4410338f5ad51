//! JIT-specific checks: which functions compile, what the generated module
//! imports, and that compiled code behaves like the interpreter.
#![cfg(feature = "jit")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{Contract, Engine, MemKv, MockChain, SqlError, Value};

const FIG6: &str = include_str!("fixtures/figure6.sql");

const COMPUTE: &str = "CREATE FUNCTION compound(principal NUMERIC, rate NUMERIC, periods INTEGER) RETURNS NUMERIC AS $$
DECLARE bal NUMERIC(30,8) := principal; i INTEGER := 0;
BEGIN
  WHILE i < periods LOOP bal := bal + bal * rate; i := i + 1; END LOOP;
  RETURN round(bal, 2);
END $$;
CREATE FUNCTION ints(n BIGINT) RETURNS BIGINT AS $$
DECLARE acc BIGINT := 0; small INTEGER := 0;
BEGIN
  FOR i IN 1..n LOOP
    CONTINUE WHEN i % 7 = 0;
    acc := acc + CASE WHEN i % 2 = 0 THEN i * i ELSE -i END;
    IF acc > 1000000 OR acc IS NULL THEN EXIT; END IF;
  END LOOP;
  small := acc;
  RETURN COALESCE(NULL, acc);
END $$;
CREATE FUNCTION text_fn(s TEXT) RETURNS TEXT AS $$ BEGIN RETURN s || '!'; END $$;
CREATE FUNCTION fib(n INTEGER) RETURNS BIGINT AS $$
BEGIN
  IF n < 2 THEN RETURN n; END IF;
  RAISE NOTICE 'fib %', n;
  RETURN fib(n - 1) + fib(n - 2);
END $$;
CREATE FUNCTION deep(n INTEGER) RETURNS NUMERIC AS $$ BEGIN RETURN 1.5 + deep(n + 1); END $$;";

fn run(
    c: &Contract,
    f: &str,
    args: &[Value],
    gas: u64,
) -> (
    Result<aergo_sql::CallOutcome, SqlError>,
    Result<aergo_sql::CallOutcome, SqlError>,
) {
    let mut kv = MemKv::new();
    let a = c.call_with(
        Engine::Interpreter,
        f,
        args,
        &mut MockChain::default(),
        &mut kv,
        gas,
    );
    let b = c.call_with(
        Engine::Jit,
        f,
        args,
        &mut MockChain::default(),
        &mut kv,
        gas,
    );
    (a, b)
}

#[test]
fn figure6_and_compute_functions_are_compiled() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(FIG6, "o", b"a/", &mut kv, 1_000_000).unwrap();
    assert_eq!(c.jit_functions(), vec!["transfer".to_string()]);
    let (c, _) = Contract::deploy(COMPUTE, "o", b"b/", &mut kv, 1_000_000).unwrap();
    assert_eq!(c.jit_functions(), vec!["compound", "ints", "fib", "deep"]);
    assert!(c.jit_ir().contains("define i32 @aergo_fn_0"));
}

#[test]
fn generated_module_imports_only_runtime_helpers() {
    let mut kv = MemKv::new();
    for (i, src) in [FIG6, COMPUTE].iter().enumerate() {
        let (c, _) = Contract::deploy(
            src,
            "o",
            &[b'p', u8::try_from(i).unwrap()],
            &mut kv,
            1_000_000,
        )
        .unwrap();
        let imports = c.jit_imports();
        assert!(!imports.is_empty());
        for s in &imports {
            assert!(
                s.starts_with("aergo_rt_") || s.starts_with("llvm."),
                "unexpected import {s}"
            );
        }
        assert!(!imports
            .iter()
            .any(|s| s.contains("interp") || s.contains("eval")));
    }
}

#[test]
fn compiled_code_matches_interpreter() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(COMPUTE, "o", b"b/", &mut kv, 1_000_000).unwrap();
    let num = |s: &str| Value::Num(aergo_sql::Decimal::parse(s).unwrap());
    let (a, b) = run(
        &c,
        "compound",
        &[num("1000.00"), num("0.001"), Value::Int(1000)],
        10_000_000,
    );
    assert_eq!(a.clone().unwrap().result.to_string(), "2716.92");
    assert_eq!(a, b);
    // numeric field overflow inside the loop, same error and gas
    let (a, b) = run(
        &c,
        "compound",
        &[num("1000"), num("5"), Value::Int(100)],
        10_000_000,
    );
    assert!(matches!(a, Err(SqlError::Overflow(_))), "{a:?}");
    assert_eq!(a, b);
    // out of gas at the same point
    let (a, b) = run(
        &c,
        "compound",
        &[num("1"), num("0"), Value::Int(1_000_000)],
        5_000,
    );
    assert!(matches!(a, Err(SqlError::OutOfGas { .. })));
    assert_eq!(a, b);
    for n in [0i64, 1, 10, 100, 5000] {
        let (a, b) = run(&c, "ints", &[Value::Int(n)], 10_000_000);
        assert!(a.is_ok());
        assert_eq!(a, b, "ints({n})");
    }
    let (a, b) = run(&c, "fib", &[Value::Int(12)], 10_000_000);
    let out = a.clone().unwrap();
    assert_eq!(out.result.to_string(), "144");
    assert_eq!(out.events.len(), 232);
    assert_eq!(a, b);
    let (a, b) = run(&c, "fib", &[Value::Int(25)], 20_000);
    assert!(matches!(a, Err(SqlError::OutOfGas { .. })));
    assert_eq!(a, b);
    let (a, b) = run(&c, "deep", &[Value::Int(0)], 10_000_000);
    assert_eq!(a, Err(SqlError::StackDepth));
    assert_eq!(a, b);
    let (a, b) = run(&c, "text_fn", &[Value::Text("x".into())], 1000);
    assert_eq!(a.unwrap().result.to_string(), "x!");
    assert!(b.is_ok());
}
