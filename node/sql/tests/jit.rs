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
    assert_eq!(
        c.jit_functions(),
        vec!["compound", "ints", "text_fn", "fib", "deep"]
    );
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

const FLOATS: &str =
    "CREATE FUNCTION fpoly(x DOUBLE PRECISION, n INTEGER) RETURNS DOUBLE PRECISION AS $$
DECLARE acc DOUBLE PRECISION := 0; t DOUBLE PRECISION := 1;
BEGIN
  FOR i IN 1..n LOOP
    t := t * x / i;
    acc := acc + t * 0.5 - x / 3.0;
    IF acc > 1e12 OR acc < -1e12 THEN acc := sqrt(abs(acc)); END IF;
  END LOOP;
  RETURN acc;
END $$;
CREATE FUNCTION fdiv(a DOUBLE PRECISION, b DOUBLE PRECISION) RETURNS DOUBLE PRECISION AS $$
BEGIN RETURN a / b; END $$;
CREATE FUNCTION fmix(a DOUBLE PRECISION, b BIGINT) RETURNS BIGINT AS $$
DECLARE r BIGINT;
BEGIN
  r := a * b + round(a) - floor(-a);
  RETURN r;
END $$;
CREATE FUNCTION fcmp(a DOUBLE PRECISION, b DOUBLE PRECISION) RETURNS INTEGER AS $$
BEGIN
  IF a < b THEN RETURN -1; ELSIF a = b THEN RETURN 0; ELSIF a > b THEN RETURN 1; END IF;
  RETURN 99;
END $$;";

/// The bits of a float result (NaN, -0 and the last ulp all count).
fn bits(r: &Result<aergo_sql::CallOutcome, SqlError>) -> String {
    match r {
        Ok(o) => match &o.result {
            Value::Float(x) => format!("f64 {:016x} gas {}", x.to_bits(), o.gas_used),
            v => format!("{v:?} gas {}", o.gas_used),
        },
        Err(e) => format!("error {e}"),
    }
}

#[test]
fn float_functions_compile_and_give_identical_bits() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(FLOATS, "o", b"f/", &mut kv, 1_000_000).unwrap();
    assert_eq!(c.jit_functions(), vec!["fpoly", "fdiv", "fmix", "fcmp"]);
    // no fused multiply-add, no fast-math flags anywhere in the module
    let ir = c.jit_ir();
    for bad in [
        "fmuladd",
        "llvm.fma",
        " fast ",
        " contract ",
        " reassoc ",
        " afn ",
        " nnan ",
        " ninf ",
    ] {
        assert!(!ir.contains(bad), "generated code contains {bad:?}");
    }
    assert!(ir.contains("fmul double") && ir.contains("fadd double"));
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        1e308,
        -1e-308,
        5e-324,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::from_bits(0xfff8_0000_0000_0001),
        std::f64::consts::PI,
        123_456_789.123,
    ];
    // a fixed pseudo-random walk over bit patterns adds ordinary and odd values
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut xs: Vec<f64> = specials.to_vec();
    for _ in 0..60 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        xs.push(f64::from_bits(seed));
        xs.push((seed >> 11) as f64 / 9_007_199_254_740_992.0 * 200.0 - 100.0);
    }
    let mut checked = 0;
    for &a in &xs {
        for &b in specials.iter().chain(xs.iter().take(8)) {
            for (f, args) in [
                ("fdiv", vec![Value::Float(a), Value::Float(b)]),
                ("fcmp", vec![Value::Float(a), Value::Float(b)]),
            ] {
                let (i, j) = run(&c, f, &args, 100_000);
                assert_eq!(bits(&i), bits(&j), "{f}({a:e}, {b:e})");
                checked += 1;
            }
        }
        let (i, j) = run(&c, "fpoly", &[Value::Float(a), Value::Int(40)], 1_000_000);
        assert_eq!(bits(&i), bits(&j), "fpoly({a:e})");
        let (i, j) = run(&c, "fmix", &[Value::Float(a), Value::Int(3)], 100_000);
        assert_eq!(bits(&i), bits(&j), "fmix({a:e})");
        checked += 2;
    }
    assert!(checked > 2000);
    // PostgreSQL's order and errors, on both engines
    let (i, _) = run(
        &c,
        "fcmp",
        &[Value::Float(f64::NAN), Value::Float(f64::INFINITY)],
        100_000,
    );
    assert_eq!(i.unwrap().result, Value::Int(1));
    let (i, _) = run(&c, "fdiv", &[Value::Float(1.0), Value::Float(0.0)], 100_000);
    assert!(matches!(i, Err(SqlError::DivisionByZero)));
    let (i, _) = run(
        &c,
        "fdiv",
        &[Value::Float(1e300), Value::Float(1e-300)],
        100_000,
    );
    assert_eq!(
        i.unwrap_err().to_string(),
        "overflow: value out of range: overflow"
    );
    let (i, j) = run(
        &c,
        "fdiv",
        &[Value::Float(f64::INFINITY), Value::Float(f64::INFINITY)],
        100_000,
    );
    assert_eq!(
        bits(&i),
        format!(
            "f64 {:016x} gas {}",
            0x7ff8_0000_0000_0000u64,
            i.as_ref().unwrap().gas_used
        )
    );
    assert_eq!(bits(&i), bits(&j));
}

const DECIMALS: &str = "CREATE FUNCTION dadd(a NUMERIC, b NUMERIC) RETURNS NUMERIC AS $$ BEGIN RETURN a + b; END $$;
CREATE FUNCTION dsub(a NUMERIC, b NUMERIC) RETURNS NUMERIC AS $$ BEGIN RETURN a - b; END $$;
CREATE FUNCTION dmul(a NUMERIC, b NUMERIC) RETURNS NUMERIC AS $$ BEGIN RETURN a * b; END $$;
CREATE FUNCTION dcmp(a NUMERIC, b NUMERIC) RETURNS INTEGER AS $$
BEGIN
  IF a < b THEN RETURN -1; ELSIF a = b THEN RETURN 0; ELSIF a > b THEN RETURN 1; END IF;
  RETURN 99;
END $$;
CREATE FUNCTION dfit(a NUMERIC) RETURNS NUMERIC AS $$ DECLARE x NUMERIC(5,2); BEGIN x := a; RETURN x; END $$;
CREATE FUNCTION dfit0(a NUMERIC) RETURNS NUMERIC AS $$ DECLARE x NUMERIC(38,0); BEGIN x := a; RETURN x; END $$;
CREATE FUNCTION dfit20(a NUMERIC) RETURNS NUMERIC AS $$ DECLARE x NUMERIC(30,20); BEGIN x := a * 1; RETURN x; END $$;";

/// The inline decimal paths of the JIT (`+`, `-`, `*`, comparisons and NUMERIC(p, s)
/// assignment on i64-sized mantissas) against the interpreter at their edges: rounding half
/// away from zero both signs, the precision bound, scales far apart, mantissas beyond i64,
/// NULL — same results, errors and gas.
#[test]
fn inline_decimal_paths_match_interpreter() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(DECIMALS, "o", b"d/", &mut kv, 1_000_000).unwrap();
    assert_eq!(
        c.jit_functions(),
        vec!["dadd", "dsub", "dmul", "dcmp", "dfit", "dfit0", "dfit20"]
    );
    let vals = [
        "0",
        "1",
        "-1",
        "0.005",
        "-0.005",
        "0.015",
        "-0.015",
        "999.994",
        "999.995",
        "-999.995",
        "-999.994",
        "123.456",
        "0.00000000000000000001",
        "12345678901234567890",
        "9223372036854775807",
        "-9223372036854775808",
        "-9223372036854775809",
        "92233720368547758.08",
        "0.0000000000000000001",
        "1.000000000000000000000000000000000001",
        "99999999999999999999999999999999999999",
        "1e-38",
        "5e-19",
        "-5e-19",
        "2.5",
        "-2.5",
    ];
    let mut args: Vec<Value> = vals
        .iter()
        .map(|s| Value::Num(aergo_sql::Decimal::parse(s).unwrap()))
        .collect();
    args.push(Value::Null);
    let mut checked = 0;
    for a in &args {
        for f in ["dfit", "dfit0", "dfit20"] {
            let (x, y) = run(&c, f, std::slice::from_ref(a), 10_000);
            assert_eq!(x, y, "{f}({a:?})");
            checked += 1;
        }
        for b in &args {
            for f in ["dadd", "dsub", "dmul", "dcmp"] {
                let (x, y) = run(&c, f, &[a.clone(), b.clone()], 10_000);
                assert_eq!(x, y, "{f}({a:?}, {b:?})");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 27 * 3 + 27 * 27 * 4);
    // a few pinned results (rounding half away from zero, both signs)
    let num = |s: &str| Value::Num(aergo_sql::Decimal::parse(s).unwrap());
    for (arg, want) in [
        ("999.994", "999.99"),
        ("-0.005", "-0.01"),
        ("0.015", "0.02"),
    ] {
        let (x, _) = run(&c, "dfit", &[num(arg)], 10_000);
        assert_eq!(x.unwrap().result.to_string(), want);
    }
    let (x, _) = run(&c, "dfit", &[num("999.995")], 10_000);
    assert!(matches!(x, Err(SqlError::Overflow(_))), "{x:?}");
}

const FRAME_OPS: &str = "CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT);
CREATE FUNCTION classify(s TEXT, n BIGINT) RETURNS TEXT AS $$
DECLARE r TEXT := 'none'; other TEXT; i BIGINT := 0; t TIMESTAMP;
BEGIN
  IF s IS NULL THEN RETURN 'null'; END IF;
  IF s = 'open' OR s = 'OPEN' THEN r := 'o'; ELSIF s < 'm' THEN r := 'early'; ELSE r := s; END IF;
  other := r;
  WHILE i < n LOOP
    i := i + 1;
    IF other <> s THEN other := s; ELSE other := 'x'; END IF;
  END LOOP;
  IF other IS NOT NULL AND other >= 'x' THEN RETURN other; END IF;
  SELECT v INTO i FROM kv WHERE k = s;
  IF NOT FOUND THEN RETURN r; END IF;
  RETURN other;
END $$;
CREATE FUNCTION badcast(s TEXT) RETURNS BOOLEAN AS $$
DECLARE t VARCHAR(3);
BEGIN
  t := s;
  RETURN t IS NULL;
END $$;";

/// Functions with TEXT (and other frame-held) variables compile when they only assign,
/// compare and test them for NULL (frame operands, `aergo_rt_assign_ref`/`aergo_rt_cmp_ref`),
/// and behave exactly like the interpreter: results, NULLs, errors and gas.
#[test]
fn text_assignments_and_comparisons_compile() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(FRAME_OPS, "o", b"t/", &mut kv, 1_000_000).unwrap();
    assert_eq!(c.jit_functions(), vec!["classify", "badcast"]);
    let t = |s: &str| Value::Text(s.into());
    for s in [
        Value::Null,
        t("open"),
        t("OPEN"),
        t("apple"),
        t("zebra"),
        t("x"),
        t("m"),
        t(""),
    ] {
        for n in [0i64, 1, 2, 5] {
            let (a, b) = run(&c, "classify", &[s.clone(), Value::Int(n)], 100_000);
            assert!(a.is_ok(), "{a:?}");
            assert_eq!(a, b, "classify({s:?}, {n})");
        }
    }
    let (a, _) = run(&c, "classify", &[t("zebra"), Value::Int(1)], 100_000);
    assert_eq!(a.unwrap().result, t("x"));
    let (a, _) = run(&c, "classify", &[t("apple"), Value::Int(0)], 100_000);
    assert_eq!(a.unwrap().result, t("early"));
    // a VARCHAR(3) overflow in the assignment, the same error on both engines
    let (a, b) = run(&c, "badcast", &[t("too long")], 100_000);
    assert!(a.is_err(), "{a:?}");
    assert_eq!(a, b);
    let (a, b) = run(&c, "badcast", &[Value::Null], 100_000);
    assert_eq!(a.clone().unwrap().result, Value::Bool(true));
    assert_eq!(a, b);
    let (a, b) = run(&c, "classify", &[t("open"), Value::Int(1_000_000)], 2_000);
    assert!(matches!(a, Err(SqlError::OutOfGas { .. })), "{a:?}");
    assert_eq!(a, b);
}

/// Point statements skip re-checking a WHERE that is only the key equality the lookup
/// decided; a WHERE with more than that (another conjunct, a cast key) is still evaluated.
#[test]
fn point_statement_filters_beyond_the_key_still_apply() {
    let src = "CREATE TABLE acc (k TEXT PRIMARY KEY, v BIGINT);
CREATE TABLE num (n BIGINT PRIMARY KEY, v BIGINT);
CREATE FUNCTION probe(s TEXT, i INTEGER) RETURNS BIGINT AS $$
DECLARE x BIGINT := -1; hits BIGINT := 0;
BEGIN
  SELECT v INTO x FROM acc WHERE k = s;
  IF FOUND THEN hits := hits + 1; END IF;
  SELECT v INTO x FROM acc WHERE k = s AND v > 10;
  IF FOUND THEN hits := hits + 10; END IF;
  UPDATE acc SET v = v + 1 WHERE s = k AND v < 5;
  IF FOUND THEN hits := hits + 100; END IF;
  SELECT v INTO x FROM num WHERE n = i;
  IF FOUND THEN hits := hits + 1000; END IF;
  UPDATE num SET v = v + 1 WHERE n = i AND v > 100;
  IF FOUND THEN hits := hits + 10000; END IF;
  RETURN hits;
END $$;";
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(src, "o", b"p/", &mut kv, 1_000_000).unwrap();
    assert_eq!(c.jit_functions(), vec!["probe"]);
    c.execute(
        "INSERT INTO acc VALUES ('low', 1), ('high', 50)",
        &mut kv,
        1_000_000,
    )
    .unwrap();
    c.execute(
        "INSERT INTO num VALUES (7, 500), (8, 5)",
        &mut kv,
        1_000_000,
    )
    .unwrap();
    for (s, i, want) in [("low", 7, 11_101), ("high", 8, 1_011), ("none", 9, 0)] {
        let args = [Value::Text(s.into()), Value::Int(i)];
        let mut kv_i = kv.clone();
        let a = c.call_with(
            Engine::Interpreter,
            "probe",
            &args,
            &mut MockChain::default(),
            &mut kv_i,
            1_000_000,
        );
        let mut kv_j = kv.clone();
        let b = c.call_with(
            Engine::Jit,
            "probe",
            &args,
            &mut MockChain::default(),
            &mut kv_j,
            1_000_000,
        );
        assert_eq!(a.clone().unwrap().result, Value::Int(want), "{s} {i}");
        assert_eq!(a, b, "{s} {i}");
        assert_eq!(kv_i.entries(), kv_j.entries());
    }
}

const ROWS: &str = "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price NUMERIC(10,2));
INSERT INTO item VALUES (1, 'apple', 0.50), (2, 'pear', 0.75), (3, 'melon', 3.00);
CREATE FUNCTION divmod(a BIGINT, b BIGINT, OUT q BIGINT, OUT r BIGINT) AS $$
BEGIN q := a / b; r := a % b; END $$;
CREATE FUNCTION split(x NUMERIC, OUT whole BIGINT, OUT frac NUMERIC, OUT neg BOOLEAN) AS $$
BEGIN
  neg := x < 0;
  IF x IS NULL THEN RETURN; END IF;
  whole := trunc_int(x);
  frac := x - whole;
END $$;
CREATE FUNCTION trunc_int(x NUMERIC) RETURNS BIGINT AS $$
BEGIN IF x < 0 THEN RETURN -trunc_int(-x); END IF; RETURN round(x - 0.5, 0); END $$;
CREATE FUNCTION squares(n BIGINT) RETURNS SETOF BIGINT AS $$
DECLARE i BIGINT := 1;
BEGIN
  WHILE i <= n LOOP RETURN NEXT i * i; i := i + 1; END LOOP;
END $$;
CREATE FUNCTION forever() RETURNS SETOF BIGINT AS $$
BEGIN LOOP RETURN NEXT 1; END LOOP; END $$;
CREATE FUNCTION cheap(maxp NUMERIC) RETURNS TABLE (n TEXT, p NUMERIC) AS $$
BEGIN
  RETURN QUERY SELECT name, price FROM item WHERE price <= maxp ORDER BY price;
  n := 'limit'; p := maxp; RETURN NEXT;
END $$;
CREATE FUNCTION total(n BIGINT) RETURNS BIGINT AS $$
DECLARE s BIGINT; q BIGINT; r BIGINT;
BEGIN
  SELECT sum(squares) INTO s FROM squares(n);
  SELECT d.q, d.r INTO q, r FROM divmod(s, 7) AS d;
  RETURN s * 100 + q * 10 + r;
END $$;";

/// Functions with several OUT parameters and set-returning functions (RETURN NEXT, RETURN
/// QUERY) are JIT-compiled, and give the interpreter's rows, results, errors and gas.
#[test]
fn row_returning_functions_compile_and_match_interpreter() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(ROWS, "o", b"r/", &mut kv, 1_000_000).unwrap();
    let compiled = c.jit_functions();
    for f in ["divmod", "split", "squares", "forever", "cheap", "total"] {
        assert!(
            compiled.contains(&f.to_string()),
            "{f} not compiled: {compiled:?}"
        );
    }
    let q = |engine: Engine, sql: &str, gas: u64| {
        let mut kv = kv.clone();
        c.execute_with(engine, sql, &mut kv, gas)
    };
    for sql in [
        "SELECT * FROM divmod(17, 5)",
        "SELECT divmod(-17, 5), divmod(4, 2)",
        "SELECT * FROM divmod(1, 0)",
        "SELECT * FROM split(-3.25)",
        "SELECT split(12.5), split(NULL)",
        "SELECT * FROM squares(6)",
        "SELECT count(*), sum(s) FROM squares(100) AS s",
        "SELECT * FROM cheap(1.00)",
        "SELECT * FROM cheap(NULL)",
        "SELECT total(10)",
        "SELECT * FROM forever()",
    ] {
        for gas in [100_000, 3_000, 700] {
            let a = q(Engine::Interpreter, sql, gas);
            let b = q(Engine::Jit, sql, gas);
            assert_eq!(a, b, "{sql} with gas {gas}");
        }
    }
    let rows = q(Engine::Jit, "SELECT * FROM squares(4)", 100_000)
        .unwrap()
        .rows;
    assert_eq!(rows, [1, 4, 9, 16].map(|i| vec![Value::Int(i)]).to_vec());
    let r = q(Engine::Jit, "SELECT split(-3.25)", 100_000).unwrap().rows;
    assert_eq!(r, vec![vec![Value::Text("(-3,-0.25,t)".into())]]);
    assert_eq!(
        q(Engine::Jit, "SELECT total(10)", 100_000).unwrap().rows,
        vec![vec![Value::Int(38500 + 550)]]
    );
    // a runaway set ends at the gas limit…
    let e = q(Engine::Jit, "SELECT * FROM forever()", 50_000).unwrap_err();
    assert!(matches!(e, SqlError::OutOfGas { .. }), "{e}");
    // …or at the memory budget, whichever comes first, on both engines
    let small = c.clone().with_memory_limit(100_000);
    for engine in [Engine::Interpreter, Engine::Jit] {
        let mut kv2 = kv.clone();
        let e = small
            .execute_with(
                engine,
                "SELECT count(*) FROM forever()",
                &mut kv2,
                10_000_000,
            )
            .unwrap_err();
        assert!(matches!(e, SqlError::Memory { .. }), "{engine:?}: {e}");
    }
    // direct calls: a record's text form, a set's rows one per line
    for (f, args, want) in [
        ("divmod", vec![Value::Int(17), Value::Int(5)], "(3,2)"),
        ("squares", vec![Value::Int(3)], "1\n4\n9"),
        (
            "cheap",
            vec![Value::Int(1)],
            "(apple,0.50)\n(pear,0.75)\n(limit,1)",
        ),
    ] {
        let (a, b) = run_on(&c, &kv, f, &args, 100_000);
        assert_eq!(a.as_ref().unwrap().result, Value::Text(want.into()), "{f}");
        assert_eq!(a, b, "{f}");
    }
    // the ABI describes the outputs
    let abi = c.abi();
    let ret = |n: &str| {
        abi.functions
            .iter()
            .find(|f| f.name == n)
            .map(|f| f.returns.clone())
            .unwrap()
    };
    assert_eq!(ret("divmod"), "RECORD(q BIGINT, r BIGINT)");
    assert_eq!(ret("squares"), "SETOF BIGINT");
    assert_eq!(ret("cheap"), "TABLE(n TEXT, p NUMERIC)");
    assert_eq!(ret("total"), "BIGINT");
}

fn run_on(
    c: &Contract,
    kv: &MemKv,
    f: &str,
    args: &[Value],
    gas: u64,
) -> (
    Result<aergo_sql::CallOutcome, SqlError>,
    Result<aergo_sql::CallOutcome, SqlError>,
) {
    let call = |e: Engine| {
        let mut kv = kv.clone();
        c.call_with(e, f, args, &mut MockChain::default(), &mut kv, gas)
    };
    (call(Engine::Interpreter), call(Engine::Jit))
}

const STACK_OPS: &str = "CREATE FUNCTION label(s TEXT, n BIGINT) RETURNS TEXT AS $$
DECLARE out TEXT := ''; i INTEGER := 0; k BIGINT;
BEGIN
  IF s IS NULL THEN RETURN 'none:' || n; END IF;
  WHILE i < n LOOP
    out := out || upper(substr(s, 1, 1)) || '-' || i::text;
    i := i + 1;
  END LOOP;
  k := length(out) + n * 2;
  IF length(s || out) > 12 THEN
    RAISE NOTICE 'long % %', s || '!', k;
  END IF;
  IF (s || 'x') = 'abx' THEN RETURN 'ab' || k; END IF;
  IF (out || NULL) IS NULL AND n >= 0 THEN out := out || '.'; END IF;
  RETURN lower(out) || ':' || k || ':' || -n;
END $$;
CREATE FUNCTION short(s TEXT) RETURNS VARCHAR(4) AS $$
DECLARE v VARCHAR(4);
BEGIN v := s || '!'; RETURN v; END $$;
CREATE FUNCTION reals(a REAL, b REAL, n INTEGER) RETURNS REAL AS $$
DECLARE acc REAL := 0; i INTEGER := 0; d DOUBLE PRECISION;
BEGIN
  WHILE i < n LOOP
    acc := acc * b + a / (i + 1);
    i := i + 1;
  END LOOP;
  d := acc::float8 * 2;
  IF acc > a OR d < 0 THEN acc := -acc; END IF;
  IF acc IS NULL THEN RETURN NULL; END IF;
  RETURN acc + 0.5::real;
END $$;
CREATE FUNCTION real_text(a REAL) RETURNS TEXT AS $$
BEGIN RETURN 'r=' || (a * 3) || ',' || (a / 0.1::real)::text; END $$;
CREATE FUNCTION wrap(s TEXT) RETURNS TEXT AS $$
DECLARE t TEXT;
BEGIN
  t := label(s, 1);
  IF label(s, 2) = t THEN RETURN 'same'; END IF;
  RETURN '[' || t || '|' || short(s) || ']';
END $$;";

/// Text expressions (`||`, text functions, casts to text) and REAL arithmetic are compiled
/// (through the helper stack), with the interpreter's results, events, errors and gas.
#[test]
fn text_and_real_expressions_compile_and_match_interpreter() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(STACK_OPS, "o", b"s/", &mut kv, 1_000_000).unwrap();
    assert_eq!(
        c.jit_functions(),
        vec!["label", "short", "reals", "real_text", "wrap"]
    );
    let ir = c.jit_ir();
    assert!(
        ir.contains("aergo_rt_stack_op"),
        "no stack helper in the IR"
    );
    let t = |s: &str| Value::Text(s.into());
    let mut checked = 0;
    for s in [Value::Null, t("ab"), t("a"), t("zebra crossing"), t("")] {
        for n in [0i64, 1, 3, -2] {
            for gas in [100_000, 300] {
                let (a, b) = run(&c, "label", &[s.clone(), Value::Int(n)], gas);
                assert_eq!(a, b, "label({s:?}, {n}) gas {gas}");
                checked += usize::from(a.is_ok());
            }
        }
    }
    assert!(checked > 20);
    let (a, _) = run(&c, "label", &[t("ab"), Value::Int(2)], 100_000);
    assert_eq!(a.unwrap().result, t("ab10"));
    let (a, _) = run(&c, "label", &[t("a"), Value::Int(2)], 100_000);
    assert_eq!(a.unwrap().result, t("a-0a-1.:10:-2"));
    let (a, _) = run(&c, "label", &[Value::Null, Value::Int(4)], 100_000);
    assert_eq!(a.unwrap().result, t("none:4"));
    // VARCHAR(4) overflow through a stack assignment: the same error
    let (a, b) = run(&c, "short", &[t("abcd")], 100_000);
    assert!(a.is_err(), "{a:?}");
    assert_eq!(a, b);
    let (a, b) = run(&c, "short", &[t("abc")], 100_000);
    assert_eq!(a.clone().unwrap().result, t("abc!"));
    assert_eq!(a, b);
    let r = |x: f32| Value::Real(x);
    for (x, y) in [
        (1.5f32, 0.5f32),
        (-2.25, 1.1),
        (3.0e38, 10.0),
        (f32::NAN, 1.0),
        (0.1, -0.3),
        (f32::INFINITY, 0.0),
    ] {
        for n in [0i64, 1, 5] {
            let args = [r(x), r(y), Value::Int(n)];
            let (a, b) = run(&c, "reals", &args, 100_000);
            assert_eq!(bits(&a), bits(&b), "reals({x}, {y}, {n})");
            assert_eq!(
                a.as_ref().map(|o| o.gas_used).ok(),
                b.as_ref().map(|o| o.gas_used).ok()
            );
        }
        let (a, b) = run(&c, "real_text", &[r(x)], 100_000);
        assert_eq!(a, b, "real_text({x})");
    }
    // calls of functions returning TEXT leave their result on the stack
    for s in [t("a"), t("xyz"), t("abcd"), Value::Null] {
        let (a, b) = run(&c, "wrap", std::slice::from_ref(&s), 100_000);
        assert_eq!(a, b, "wrap({s:?})");
    }
    let (a, _) = run(&c, "wrap", &[t("a")], 100_000);
    assert_eq!(a.unwrap().result, t("[a-0.:5:-1|a!]"));
    let (a, _) = run(&c, "reals", &[r(1.5), r(0.5), Value::Int(2)], 100_000);
    // acc = 0*0.5 + 1.5/1 = 1.5; acc = 1.5*0.5 + 1.5/2 = 1.5; not > a; + 0.5
    assert_eq!(a.unwrap().result, r(2.0));
}

const GUARDS: &str = "CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT);
CREATE FUNCTION guarded(n BIGINT, mode INTEGER) RETURNS TEXT AS $$
DECLARE i BIGINT := 0; log TEXT := ''; x BIGINT;
BEGIN
  FOR j IN 1..3 LOOP
    BEGIN
      INSERT INTO t VALUES (n * 10 + j, 'row' || j);
      i := i + j;
      IF mode = 1 AND j = 2 THEN x := 1 / (j - 2); END IF;
      IF mode = 2 AND j = 2 THEN EXIT; END IF;
      IF mode = 3 AND j = 3 THEN RETURN 'early ' || i || log; END IF;
      IF mode = 4 THEN INSERT INTO t VALUES (n * 10 + j, 'dup'); END IF;
      IF mode = 5 THEN
        BEGIN
          RAISE EXCEPTION 'inner % %', n, j;
        EXCEPTION WHEN division_by_zero THEN
          log := log || ' never';
        END;
      END IF;
      IF mode = 6 AND j = 1 THEN CONTINUE; END IF;
      log := log || ' ok' || j;
    EXCEPTION
      WHEN division_by_zero THEN
        log := log || ' div:' || SQLSTATE;
      WHEN unique_violation OR check_violation THEN
        log := log || ' uniq:' || SQLSTATE;
      WHEN raise_exception THEN
        log := log || ' raised[' || SQLERRM || ']';
    END;
  END LOOP;
  RETURN i || log;
END $$;
CREATE FUNCTION spin_guarded(n BIGINT) RETURNS TEXT AS $$
DECLARE i BIGINT := 0;
BEGIN
  BEGIN
    WHILE i < n LOOP i := i + 1; END LOOP;
  EXCEPTION WHEN others THEN
    RETURN 'caught';
  END;
  RETURN 'done ' || i;
END $$;
CREATE FUNCTION outer_catch(n BIGINT) RETURNS TEXT AS $$
BEGIN
  BEGIN
    BEGIN
      INSERT INTO t VALUES (n, 'a');
      PERFORM 1 / (n - n);
    EXCEPTION WHEN unique_violation THEN
      RETURN 'inner';
    END;
  EXCEPTION WHEN SQLSTATE '22000' THEN
    RETURN 'outer ' || SQLSTATE || ' ' || SQLERRM;
  END;
  RETURN 'none';
END $$;";

/// Functions with exception blocks are JIT-compiled: savepoints, rollback, handler choice,
/// SQLSTATE/SQLERRM, RETURN/EXIT/CONTINUE out of a block, nested blocks and errors no handler
/// may catch give the interpreter's results, writes, events and gas.
#[test]
fn exception_blocks_compile_and_match_interpreter() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(GUARDS, "o", b"g/", &mut kv, 1_000_000).unwrap();
    assert_eq!(
        c.jit_functions(),
        vec!["guarded", "spin_guarded", "outer_catch"]
    );
    let dump = |kv: &MemKv| {
        c.query("SELECT k, v FROM t ORDER BY k", kv, 1_000_000)
            .unwrap()
            .rows
    };
    let both = |f: &str, args: &[Value], gas: u64| {
        let mut k1 = kv.clone();
        let mut k2 = kv.clone();
        let a = c.call_with(
            Engine::Interpreter,
            f,
            args,
            &mut MockChain::default(),
            &mut k1,
            gas,
        );
        let b = c.call_with(
            Engine::Jit,
            f,
            args,
            &mut MockChain::default(),
            &mut k2,
            gas,
        );
        assert_eq!(a, b, "{f}({args:?}) gas {gas}");
        assert_eq!(dump(&k1), dump(&k2), "{f}({args:?}) writes");
        (a, dump(&k1))
    };
    let calls_before = c.jit_calls();
    for mode in 0..=6i64 {
        for gas in [1_000_000, 2_000, 600] {
            let _ = both("guarded", &[Value::Int(1), Value::Int(mode)], gas);
        }
    }
    let (r, rows) = both("guarded", &[Value::Int(1), Value::Int(1)], 1_000_000);
    assert_eq!(r.unwrap().result, Value::Text("6 ok1 div:22012 ok3".into()));
    assert_eq!(
        rows.len(),
        2,
        "the failed block's insert was rolled back: {rows:?}"
    );
    let (r, _) = both("guarded", &[Value::Int(1), Value::Int(3)], 1_000_000);
    assert_eq!(r.unwrap().result, Value::Text("early 6 ok1 ok2".into()));
    let (r, _) = both("guarded", &[Value::Int(1), Value::Int(5)], 1_000_000);
    assert_eq!(
        r.unwrap().result,
        Value::Text("6 raised[inner 1 1] raised[inner 1 2] raised[inner 1 3]".into())
    );
    let (r, rows) = both("guarded", &[Value::Int(1), Value::Int(4)], 1_000_000);
    assert_eq!(
        r.unwrap().result,
        Value::Text("6 uniq:23505 uniq:23505 uniq:23505".into())
    );
    assert!(rows.is_empty(), "{rows:?}");
    // out of gas inside a block is never caught, on both engines
    let (r, _) = both("spin_guarded", &[Value::Int(1_000_000)], 50_000);
    assert!(matches!(r, Err(SqlError::OutOfGas { .. })), "{r:?}");
    let (r, _) = both("spin_guarded", &[Value::Int(10)], 50_000);
    assert_eq!(r.unwrap().result, Value::Text("done 10".into()));
    // an error the inner block does not handle reaches the outer one (a class code)
    let (r, rows) = both("outer_catch", &[Value::Int(7)], 1_000_000);
    assert_eq!(
        r.unwrap().result,
        Value::Text("outer 22012 division by zero".into())
    );
    assert!(rows.is_empty());
    assert!(
        c.jit_calls() > calls_before,
        "the JIT ran none of these calls"
    );
}

#[test]
fn array_functions_stay_in_the_interpreter_and_agree() {
    // functions with array variables, parameters, results or expressions run on the
    // interpreter; one that only runs a SQL statement over an array is compiled
    let src = "CREATE TABLE t (id INTEGER PRIMARY KEY);
INSERT INTO t VALUES (1), (2), (3);
CREATE FUNCTION total(xs INT[]) RETURNS BIGINT AS $$
DECLARE x INT; s BIGINT := 0;
BEGIN FOREACH x IN ARRAY xs LOOP s := s + x; END LOOP; RETURN s; END $$;
CREATE FUNCTION member(k INT) RETURNS BOOLEAN AS $$
BEGIN RETURN k = ANY(ARRAY[1, 3]); END $$;
CREATE FUNCTION count_in(lo INT) RETURNS BIGINT AS $$
DECLARE n BIGINT;
BEGIN SELECT count(*) INTO n FROM t WHERE id = ANY(ARRAY[lo, lo + 1]); RETURN n; END $$;";
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(src, "o", b"arr/", &mut kv, 1_000_000).unwrap();
    assert_eq!(c.jit_functions(), vec!["count_in".to_string()]);
    for (f, args) in [
        ("total", vec![Value::Text("{1,2,3}".into())]),
        ("member", vec![Value::Int(3)]),
        ("count_in", vec![Value::Int(2)]),
    ] {
        let mut kv_i = kv.clone();
        let mut kv_j = kv.clone();
        let a = c.call_with(
            Engine::Interpreter,
            f,
            &args,
            &mut MockChain::default(),
            &mut kv_i,
            1_000_000,
        );
        let b = c.call_with(
            Engine::Jit,
            f,
            &args,
            &mut MockChain::default(),
            &mut kv_j,
            1_000_000,
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{f}");
        assert!(a.is_ok(), "{f}: {a:?}");
    }
}
