//! Property-based fuzzing: the parser and the plan executor never panic on
//! any input, and the interpreter and the JIT agree exactly (result, error,
//! events, gas and writes) on generated programs and data.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{Contract, Engine, MemKv, MockChain, Value};
use proptest::prelude::*;

const FIG6: &str = include_str!("fixtures/figure6.sql");

const WORDS: &[&str] = &[
    "CREATE",
    "TABLE",
    "FUNCTION",
    "OR",
    "REPLACE",
    "IF",
    "NOT",
    "EXISTS",
    "t",
    "f",
    "(",
    ")",
    ",",
    ";",
    "$$",
    "BEGIN",
    "END",
    "DECLARE",
    "RETURN",
    "RETURNS",
    "AS",
    "SELECT",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "ALL",
    "ANY",
    "WITH",
    "VIEW",
    "DROP",
    "DOUBLE",
    "PRECISION",
    "REAL",
    "FLOAT",
    "'NaN'",
    "1e308",
    "string_agg",
    "GROUP",
    "BY",
    "INTO",
    "FROM",
    "WHERE",
    "INSERT",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "LOOP",
    "WHILE",
    "FOR",
    "IN",
    "..",
    "EXIT",
    "WHEN",
    "THEN",
    "ELSE",
    "ELSIF",
    "RAISE",
    "EXCEPTION",
    "NOTICE",
    "'%'",
    "x",
    ":=",
    "=",
    "+",
    "-",
    "*",
    "/",
    "1",
    "2.5",
    "NULL",
    "BIGINT",
    "NUMERIC(5,2)",
    "TEXT",
    "PRIMARY",
    "KEY",
    "LANGUAGE",
    "plpgsql",
    "PERFORM",
    "CASE",
    "JOIN",
    "ON",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "<<l>>",
    "'a'",
    "||",
    "count(*)",
    "sum(x)",
    "FOUND",
    "AND",
    "IS",
    "'\\x00'",
    "ARRAY[",
    "]",
    "[",
    "INT[]",
    "TEXT[]",
    "FOREACH",
    "IN ARRAY",
    "unnest(",
    "= ANY(",
    "'{1,\"a\",NULL}'",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..60).prop_map(|v| v.join(" "))
}

fn mutated_figure6() -> impl Strategy<Value = String> {
    (0..FIG6.len(), 0usize..20, "[ -~\n]{0,6}").prop_map(|(at, del, ins)| {
        let mut s: Vec<char> = FIG6.chars().collect();
        let at = at.min(s.len());
        let end = (at + del).min(s.len());
        s.splice(at..end, ins.chars());
        s.into_iter().collect()
    })
}

// ------------------------------------------------------------ programs ---

fn int_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (-20i64..20).prop_map(|i| if i < 0 {
            format!("({i})")
        } else {
            i.to_string()
        }),
        Just("x".to_string()),
        Just("z".to_string()),
        Just("a".to_string()),
        Just("9223372036854775807".to_string()),
        Just("g(x)".to_string()),
        Just("NULL".to_string()),
    ];
    leaf.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(&["+", "-", "*", "/", "%"][..]),
                inner.clone()
            )
                .prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            inner.clone().prop_map(|a| format!("abs({a})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("CASE WHEN {c} > 0 THEN {a} ELSE {b} END")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("COALESCE({a}, {b})")),
        ]
    })
}

fn dec_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (-500i64..500, 0u32..4).prop_map(|(m, s)| {
            let d = aergo_sql::Decimal::new(i128::from(m), s)
                .map(|d| d.to_string())
                .unwrap_or_default();
            format!("({d})")
        }),
        Just("y".to_string()),
        Just("b".to_string()),
        Just("x".to_string()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(&["+", "-", "*", "/"][..]),
                inner.clone()
            )
                .prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            (inner.clone(), 0i64..4).prop_map(|(a, n)| format!("round({a}, {n})")),
            inner.prop_map(|a| format!("abs({a})")),
        ]
    })
}

/// DOUBLE PRECISION expressions: native float arithmetic in the JIT, `crate::float` in the
/// interpreter; special values (NaN, ±Infinity, -0) and the functions go through both.
fn float_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (-400i64..400, 0u32..3).prop_map(|(m, s)| {
            let d = aergo_sql::Decimal::new(i128::from(m), s)
                .map(|d| d.to_string())
                .unwrap_or_default();
            format!("({d})::float8")
        }),
        Just("w".to_string()),
        Just("x::float8".to_string()),
        Just("(x * 1.5::float8)".to_string()),
        Just("0.1::float8".to_string()),
        Just("'NaN'::float8".to_string()),
        Just("'-Infinity'::float8".to_string()),
        Just("'-0'::float8".to_string()),
        Just("1e300::float8".to_string()),
        Just("5e-324::float8".to_string()),
        Just("NULL::float8".to_string()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(&["+", "-", "*", "/"][..]),
                inner.clone()
            )
                .prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            inner.clone().prop_map(|a| format!("sqrt(abs({a}))")),
            inner.clone().prop_map(|a| format!("floor({a})")),
            inner.clone().prop_map(|a| format!("round({a})")),
            inner.clone().prop_map(|a| format!("(-{a})")),
            (inner.clone(), inner)
                .prop_map(|(a, b)| format!("CASE WHEN {a} < {b} THEN {a} ELSE {b} END")),
        ]
    })
}

fn cond() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            float_expr(),
            prop::sample::select(&["<", "<=", "=", "<>", ">", ">="][..]),
            float_expr()
        )
            .prop_map(|(a, o, b)| format!("{a} {o} {b}")),
        (
            int_expr(),
            prop::sample::select(&["<", "<=", "=", "<>", ">", ">="][..]),
            int_expr()
        )
            .prop_map(|(a, o, b)| format!("{a} {o} {b}")),
        (
            dec_expr(),
            prop::sample::select(&["<", ">="][..]),
            dec_expr()
        )
            .prop_map(|(a, o, b)| format!("{a} {o} {b}")),
        int_expr().prop_map(|a| format!("{a} IS NULL")),
        Just("FOUND".to_string()),
        int_expr().prop_map(|a| format!("length(s) > {a}")),
        int_expr().prop_map(|a| format!("(s || {a}) = 'a1'")),
        Just("q > w".to_string()),
        Just("(s || NULL) IS NULL".to_string()),
    ]
}

fn stmt(depth: u32) -> BoxedStrategy<String> {
    let simple = prop_oneof![
        int_expr().prop_map(|e| format!("x := {e};")),
        int_expr().prop_map(|e| format!("z := {e};")),
        dec_expr().prop_map(|e| format!("y := {e};")),
        float_expr().prop_map(|e| format!("w := {e};")),
        float_expr().prop_map(|e| format!("x := {e};")),
        float_expr().prop_map(|e| format!("RAISE NOTICE 'w=%', {e};")),
        int_expr().prop_map(|e| format!("RAISE NOTICE 'v=% y=%', {e}, y;")),
        Just("INSERT INTO t VALUES (x, y);".to_string()),
        Just("UPDATE t SET v = v + 1 WHERE k = x;".to_string()),
        Just("SELECT v INTO y FROM t WHERE k = z;".to_string()),
        Just("SELECT COUNT(*) INTO z FROM t;".to_string()),
        Just("DELETE FROM t WHERE k > z;".to_string()),
        // arrays in a SQL statement (the function stays JIT-compiled)
        Just("SELECT COUNT(*) INTO z FROM t WHERE k = ANY(ARRAY[x, z, NULL]);".to_string()),
        cond().prop_map(|c| format!("IF {c} THEN RAISE EXCEPTION 'boom %', x; END IF;")),
        // text and REAL expressions (the JIT's helper stack)
        int_expr().prop_map(|e| format!("s := s || {e} || 'x';")),
        int_expr().prop_map(|e| format!("s := upper(substr(s, 1, 3)) || {e}::text;")),
        float_expr().prop_map(|e| format!("q := (q + {e})::real;")),
        int_expr().prop_map(|e| format!("q := q * 1.5::real - {e};")),
        Just("RAISE NOTICE 's=% q=%', s || '.', -q;".to_string()),
    ];
    if depth == 0 {
        return simple.boxed();
    }
    let body = move || prop::collection::vec(stmt(depth - 1), 1..4).prop_map(|v| v.join(" "));
    prop_oneof![
        4 => simple,
        1 => (cond(), body(), body()).prop_map(|(c, a, b)| format!("IF {c} THEN {a} ELSE {b} END IF;")),
        1 => (0i64..6, body()).prop_map(|(n, b)| format!("FOR i IN 1..{n} LOOP z := z + i; {b} END LOOP;")),
        1 => (cond(), body()).prop_map(|(c, b)| format!("LOOP {b} EXIT WHEN {c}; END LOOP;")),
        1 => body().prop_map(|b| format!("FOR r IN SELECT k, v FROM t ORDER BY v DESC, k LOOP x := x + r.k; y := y + COALESCE(r.v, 0); {b} END LOOP;")),
        // exception blocks: writes rolled back, handlers chosen by condition
        1 => (body(), body()).prop_map(|(b, h)| format!("BEGIN {b} EXCEPTION WHEN division_by_zero OR numeric_value_out_of_range THEN s := s || SQLSTATE; {h} WHEN unique_violation THEN x := x + 1; WHEN others THEN s := s || '!' || SQLERRM; END;")),
    ]
    .boxed()
}

fn program() -> impl Strategy<Value = String> {
    prop::collection::vec(stmt(2), 1..6).prop_map(|stmts| {
        format!(
            "CREATE TABLE t (k BIGINT PRIMARY KEY, v NUMERIC(12,3));\n\
             CREATE FUNCTION g(p BIGINT) RETURNS BIGINT AS $$ BEGIN IF p > 3 THEN RETURN p - 1; END IF; RETURN p * 2; END $$;\n\
             CREATE FUNCTION f(a BIGINT, b NUMERIC) RETURNS NUMERIC AS $$\n\
             DECLARE x BIGINT := 1; y NUMERIC(20,4) := 0; z BIGINT := 2; w DOUBLE PRECISION := 0.5; r RECORD; s TEXT := 'a'; q REAL := 1.5;\n\
             BEGIN\n{}\nRAISE NOTICE 'x=% y=% z=% w=% s=% q=%', x, y, z, w, s, q;\nRETURN y;\nEND $$;",
            stmts.join("\n")
        )
    })
}

fn chain() -> MockChain {
    MockChain::default()
}

proptest! {
    // AERGO_SQL_FUZZ_CASES=N runs longer campaigns
    #![proptest_config(ProptestConfig {
        cases: std::env::var("AERGO_SQL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn parser_never_panics_on_token_soup(src in token_soup()) {
        let mut kv = MemKv::new();
        if let Err(e) = Contract::deploy(&src, "o", b"p/", &mut kv, 100_000) {
            prop_assert!(kv.is_empty(), "failed deploy wrote");
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn parser_never_panics_on_bytes(src in ".{0,200}") {
        let mut kv = MemKv::new();
        if let Err(e) = Contract::deploy(&src, "o", b"p/", &mut kv, 100_000) {
            prop_assert!(kv.is_empty(), "failed deploy wrote");
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn mutated_figure6_never_panics(src in mutated_figure6()) {
        let mut kv = MemKv::new();
        match Contract::deploy(&src, "o", b"p/", &mut kv, 100_000) {
            Ok((c, _)) => {
                let mut ctx = chain();
                let before = kv.entries();
                let r = c.call("transfer", &[Value::Text("a".into()), Value::Text("b".into()), Value::Int(1)], &mut ctx, &mut kv, 100_000);
                if r.is_err() {
                    prop_assert_eq!(kv.entries(), before, "failed call wrote");
                }
            }
            Err(e) => {
                prop_assert!(kv.is_empty());
                if let Some(p) = e.pos() {
                    // positions point into the script
                    prop_assert!(usize::try_from(p.line).unwrap() <= src.lines().count().max(1) + 1, "{} beyond script", p);
                }
            }
        }
    }

    #[test]
    fn queries_never_panic(e in int_expr(), d in dec_expr(), c in cond()) {
        let mut kv = MemKv::new();
        let (con, _) = Contract::deploy("CREATE TABLE t (x BIGINT PRIMARY KEY, y NUMERIC(10,2), z BIGINT, a BIGINT, b NUMERIC); INSERT INTO t VALUES (1, 2.5, 3, 4, 5), (2, NULL, NULL, -1, 0.001);", "o", b"p/", &mut kv, 1_000_000).unwrap();
        let sql = format!("SELECT {e}, {d}, {c} FROM t WHERE {c} ORDER BY {e}");
        match con.query(&sql, &kv, 1_000_000) {
            Ok(r) => prop_assert_eq!(r.columns.len(), 3),
            Err(err) => prop_assert!(err.to_string().len() > 3),
        }
    }

    #[test]
    fn new_query_syntax_never_panics(
        parts in prop::collection::vec(prop::sample::select(&[
            "SELECT x FROM t", "SELECT y::float8 FROM t", "SELECT count(*) FROM t GROUP BY z",
            "SELECT a AS x FROM t", "SELECT string_agg(x::text, ',' ORDER BY x) FROM t",
            "SELECT bool_or(x > 1) FROM t", "SELECT greatest(x, a, NULL) FROM t",
            "SELECT x FROM t WHERE x > ANY (SELECT a FROM t)", "SELECT 1 WHERE NULL NOT IN (SELECT x FROM t WHERE false)",
            "SELECT sqrt(abs(y::float8)) FROM t", "SELECT 'NaN'::float8", "SELECT x FROM v",
            "SELECT n FROM r", "SELECT t.x, count(*) FROM t GROUP BY 1 HAVING count(*) > 0",
            "SELECT x FROM t WHERE x = ANY(ARRAY[1, a, NULL])", "SELECT u FROM unnest(ARRAY[3, 1, 2]) AS u",
            "SELECT (ARRAY[x, a, z])[z] FROM t", "SELECT cardinality(array_append(ARRAY[x], a)) FROM t",
            "SELECT u.v FROM t, unnest(ARRAY[x, a] || z) AS u(v)",
        ][..]), 1..4),
        ops in prop::collection::vec(prop::sample::select(&[
            " UNION ", " UNION ALL ", " INTERSECT ", " EXCEPT ALL ", " EXCEPT ",
        ][..]), 3),
        with in prop::sample::select(&[
            "", "WITH v AS (SELECT x FROM t) ",
            "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 30) ",
            "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) ",
        ][..]),
        tail in prop::sample::select(&["", " ORDER BY 1", " ORDER BY 1 DESC LIMIT 2", " LIMIT 1 OFFSET 1"][..]),
    ) {
        let mut kv = MemKv::new();
        let (con, _) = Contract::deploy("CREATE TABLE t (x BIGINT PRIMARY KEY, y NUMERIC(10,2), z BIGINT, a BIGINT); INSERT INTO t VALUES (1, 2.5, 3, 4), (2, NULL, 3, -1), (3, 0.5, NULL, 2); CREATE VIEW v AS SELECT x FROM t WHERE x > 1;", "o", b"p/", &mut kv, 1_000_000).unwrap();
        let mut sql = with.to_string();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                sql.push_str(ops[i - 1]);
            }
            sql.push_str(p);
        }
        sql.push_str(tail);
        // small gas and memory limits: a runaway recursion must stop, not grow
        let con = con.with_memory_limit(1 << 20);
        match con.query(&sql, &kv, 200_000) {
            Ok(r) => prop_assert!(r.gas_used <= 200_000),
            Err(err) => prop_assert!(err.to_string().len() > 3, "{sql}"),
        }
    }

    #[test]
    fn interpreter_and_jit_agree(src in program(), a in -5i64..5, b in -300i64..300, seed in prop::collection::vec((0i64..6, -50i64..50), 0..4)) {
        let mut kv = MemKv::new();
        let (c, _) = match Contract::deploy(&src, "o", b"p/", &mut kv, 1_000_000) {
            Ok(x) => x,
            Err(e) => {
                // the generator only produces valid programs
                return Err(TestCaseError::fail(format!("deploy failed: {e}\n{src}")));
            }
        };
        if cfg!(feature = "jit") {
            prop_assert_eq!(c.jit_functions(), vec!["g".to_string(), "f".to_string()], "generated program not JIT-compiled:\n{}", src);
        }
        for (k, v) in &seed {
            let _ = c.execute(&format!("INSERT INTO t VALUES ({k}, {v})"), &mut kv, 1_000_000);
        }
        let args = [Value::Int(a), Value::Num(aergo_sql::Decimal::new(i128::from(b), 2).unwrap())];
        let mut kv_i = kv.clone();
        let mut kv_j = kv.clone();
        let ri = c.call_with(Engine::Interpreter, "f", &args, &mut chain(), &mut kv_i, 200_000);
        let rj = c.call_with(Engine::Jit, "f", &args, &mut chain(), &mut kv_j, 200_000);
        prop_assert_eq!(format!("{ri:?}"), format!("{rj:?}"), "program:\n{}", src);
        prop_assert_eq!(kv_i.entries(), kv_j.entries());
        if ri.is_err() {
            prop_assert_eq!(kv_i.entries(), kv.entries(), "failed call wrote");
        }
    }
}
