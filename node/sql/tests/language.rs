//! Language coverage: DDL, DML, queries, procedural constructs, chain
//! context, errors (with positions), constraints and atomicity.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{Contract, Engine, MemKv, MockChain, SqlError, Value};

const GAS: u64 = 10_000_000;

fn deploy(src: &str) -> (Contract, MemKv) {
    let mut kv = MemKv::new();
    let (c, _) =
        Contract::deploy(src, "owner", b"k/", &mut kv, GAS).unwrap_or_else(|e| panic!("{e}"));
    (c, kv)
}

fn q(c: &Contract, kv: &MemKv, sql: &str) -> Vec<String> {
    c.query(sql, kv, GAS)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn call(
    c: &Contract,
    kv: &mut MemKv,
    f: &str,
    args: &[Value],
) -> Result<aergo_sql::CallOutcome, SqlError> {
    let mk = || {
        let mut ctx = MockChain {
            sender: "alice".into(),
            height: 42,
            time: 1_700_000_000,
            tx_hash: "ab".repeat(32),
            contract: "Cx1".into(),
            amount: 5,
            ..Default::default()
        };
        ctx.balances.insert("Cx1".into(), 1000);
        ctx
    };
    // the JIT engine must agree exactly: result, events, gas, error and writes
    let mut kv_j = kv.clone();
    let mut ctx_j = mk();
    let j = c.call_with(Engine::Jit, f, args, &mut ctx_j, &mut kv_j, GAS);
    let mut ctx = mk();
    let a = c.call_with(Engine::Interpreter, f, args, &mut ctx, kv, GAS);
    assert_eq!(
        format!("{a:?}"),
        format!("{j:?}"),
        "engines disagree on {f}"
    );
    assert_eq!(
        kv.entries(),
        kv_j.entries(),
        "engines wrote differently in {f}"
    );
    assert_eq!(ctx.balances, ctx_j.balances);
    a
}

const SHOP: &str = r#"
CREATE TABLE items (
  id BIGINT PRIMARY KEY,
  name VARCHAR(10) NOT NULL UNIQUE,
  price NUMERIC(10,2) NOT NULL CHECK (price >= 0),
  qty INTEGER DEFAULT 0,
  active BOOLEAN DEFAULT true
);
CREATE TABLE orders (oid BIGINT PRIMARY KEY, item BIGINT, n INTEGER, buyer TEXT);
CREATE INDEX orders_item ON orders (item);
INSERT INTO items VALUES (1, 'apple', 1.50, 10, true), (2, 'pear', 2.25, 0, true), (3, 'plum', 0.99, 5, false);
INSERT INTO orders VALUES (10, 1, 2, 'bob'), (11, 1, 1, 'carol'), (12, 3, 4, 'bob'), (13, 9, 1, 'dave');

CREATE FUNCTION buy(who TEXT, item_id BIGINT, n INTEGER) RETURNS NUMERIC AS $$
DECLARE
  p NUMERIC(10,2);
  left_qty INTEGER;
  next_id BIGINT;
BEGIN
  SELECT price, qty INTO p, left_qty FROM items WHERE id = item_id AND active;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no such item %', item_id;
  ELSIF left_qty < n THEN
    RAISE EXCEPTION 'only % left', left_qty;
  END IF;
  UPDATE items SET qty = qty - n WHERE id = item_id;
  SELECT COALESCE(MAX(oid), 0) + 1 INTO next_id FROM orders;
  INSERT INTO orders VALUES (next_id, item_id, n, who);
  RAISE NOTICE 'sold % x % to %', n, item_id, who;
  RETURN p * n;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION fact(n BIGINT) RETURNS BIGINT AS $$
BEGIN
  IF n <= 1 THEN RETURN 1; END IF;
  RETURN n * fact(n - 1);
END $$;

CREATE FUNCTION loops(n INTEGER) RETURNS TEXT AS $$
DECLARE
  s TEXT := '';
  i INTEGER := 0;
  total BIGINT := 0;
  r RECORD;
BEGIN
  LOOP
    i := i + 1;
    EXIT WHEN i > n;
    CONTINUE WHEN i % 2 = 0;
    s := s || i;
  END LOOP;
  WHILE i > 0 LOOP i := i - 3; END LOOP;
  FOR k IN REVERSE 10..1 BY 4 LOOP s := s || '/' || k; END LOOP;
  <<outer>>
  FOR a IN 1..3 LOOP
    FOR b IN 1..3 LOOP
      EXIT outer WHEN a * b = 4;
      total := total + a * b;
    END LOOP;
  END LOOP;
  FOR r IN SELECT name, qty FROM items ORDER BY name LOOP
    s := s || ';' || r.name || '=' || r.qty;
  END LOOP;
  RETURN s || ' t=' || total || ' i=' || i;
END $$;

CREATE FUNCTION whoami() RETURNS TEXT AS $$
BEGIN
  PERFORM send('bob', 7);
  RETURN sender() || '@' || block_height() || ' ' || block_time() || ' ' || amount()
      || ' ' || contract_address() || ' ' || balance('bob') || ' ' || length(tx_hash());
END $$;

CREATE FUNCTION noret(x INTEGER) RETURNS INTEGER AS $$
BEGIN
  IF x > 0 THEN RETURN x; END IF;
END $$;
"#;

#[test]
fn queries() {
    let (c, kv) = deploy(SHOP);
    assert_eq!(
        q(&c, &kv, "SELECT name FROM items"),
        vec!["apple", "pear", "plum"]
    );
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT name, price * qty AS v FROM items WHERE qty > 0 ORDER BY v DESC"
        ),
        vec!["apple,15.00", "plum,4.95"]
    );
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT i.name, o.oid FROM orders o JOIN items i ON i.id = o.item ORDER BY o.oid"
        ),
        vec!["apple,10", "apple,11", "plum,12"]
    );
    assert_eq!(
        q(&c, &kv, "SELECT o.oid, i.name FROM orders o LEFT JOIN items i ON i.id = o.item WHERE o.oid > 11"),
        vec!["12,plum", "13,NULL"]
    );
    assert_eq!(
        q(&c, &kv, "SELECT buyer, COUNT(*), SUM(n), MIN(item), MAX(oid) FROM orders GROUP BY buyer HAVING COUNT(*) >= 1 ORDER BY 2 DESC, buyer"),
        vec!["bob,2,6,1,12", "carol,1,1,1,11", "dave,1,1,9,13"]
    );
    assert_eq!(
        q(&c, &kv, "SELECT AVG(price) FROM items"),
        vec!["1.5800000000000000"]
    );
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT COUNT(*), SUM(qty) FROM items WHERE id > 100"
        ),
        vec!["0,NULL"]
    );
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT name FROM items WHERE id IN (SELECT item FROM orders WHERE buyer = 'bob')"
        ),
        vec!["apple", "plum"]
    );
    assert_eq!(
        q(&c, &kv, "SELECT name FROM items i WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.item = i.id)"),
        vec!["pear"]
    );
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT (SELECT MAX(oid) FROM orders), 7 / 2, 7 % 3, -7 / 2"
        ),
        vec!["13,3,1,-3"]
    );
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT name FROM items ORDER BY id LIMIT 1 OFFSET 1"
        ),
        vec!["pear"]
    );
    assert_eq!(
        q(&c, &kv, "SELECT name LIKE 'p%', name BETWEEN 'b' AND 'q', CASE WHEN qty > 5 THEN 'many' WHEN qty > 0 THEN 'few' ELSE 'none' END FROM items"),
        vec!["f,f,many", "t,t,none", "t,t,few"]
    );
    assert_eq!(
        q(&c, &kv, "SELECT upper(name) || '!', lower('AbC'), substr(name, 2, 2), abs(-2.5), round(2.345, 2), NULLIF(qty, 0), COALESCE(NULL, qty, 1) FROM items WHERE id = 2"),
        vec!["PEAR!,abc,ea,2.5,2.35,NULL,0"]
    );
    assert_eq!(q(&c, &kv, "SELECT CAST('12.5' AS NUMERIC(5,1)) + 1, '7'::INTEGER * 2, NULL IS NULL, 1 IN (2, NULL)"), vec!["13.5,14,t,NULL"]);
    assert_eq!(
        q(&c, &kv, "SELECT DISTINCT buyer FROM orders ORDER BY buyer"),
        vec!["bob", "carol", "dave"]
    );
    assert_eq!(q(&c, &kv, "SELECT x.b, x.c FROM (SELECT buyer AS b, COUNT(*) AS c FROM orders GROUP BY buyer) x WHERE x.c > 1"), vec!["bob,2"]);
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT TIMESTAMP '2024-05-06 07:08:09', '\\x0aff'::BYTEA"
        ),
        vec!["2024-05-06 07:08:09,\\x0aff"]
    );
}

#[test]
fn procedural_and_events() {
    let (c, mut kv) = deploy(SHOP);
    let out = call(
        &c,
        &mut kv,
        "buy",
        &[Value::Text("zed".into()), Value::Int(1), Value::Int(3)],
    )
    .unwrap();
    assert_eq!(out.result.to_string(), "4.50");
    assert_eq!(out.events, vec!["sold 3 x 1 to zed".to_string()]);
    assert_eq!(q(&c, &kv, "SELECT qty FROM items WHERE id = 1"), vec!["7"]);
    assert_eq!(
        q(&c, &kv, "SELECT oid, buyer FROM orders WHERE oid = 14"),
        vec!["14,zed"]
    );
    let before = kv.entries();
    let err = call(
        &c,
        &mut kv,
        "buy",
        &[Value::Text("zed".into()), Value::Int(1), Value::Int(99)],
    )
    .unwrap_err();
    assert_eq!(err, SqlError::Exception("only 7 left".into()));
    let err = call(
        &c,
        &mut kv,
        "buy",
        &[Value::Text("zed".into()), Value::Int(3), Value::Int(1)],
    )
    .unwrap_err();
    assert_eq!(err, SqlError::Exception("no such item 3".into()));
    assert_eq!(kv.entries(), before);
    let out = call(&c, &mut kv, "fact", &[Value::Int(20)]).unwrap();
    assert_eq!(out.result.to_string(), "2432902008176640000");
    assert!(matches!(
        call(&c, &mut kv, "fact", &[Value::Int(21)]).unwrap_err(),
        SqlError::Overflow(_)
    ));
    assert!(matches!(
        call(&c, &mut kv, "fact", &[Value::Int(100)]).unwrap_err(),
        SqlError::StackDepth | SqlError::Overflow(_)
    ));
    let out = call(&c, &mut kv, "loops", &[Value::Int(5)]).unwrap();
    assert_eq!(
        out.result.to_string(),
        "135/10/6/2;apple=7;pear=0;plum=5 t=8 i=0"
    );
    let out = call(&c, &mut kv, "whoami", &[]).unwrap();
    assert_eq!(
        out.result.to_string(),
        "alice@42 2023-11-14 22:13:20 5 Cx1 7 64"
    );
    let err = call(&c, &mut kv, "noret", &[Value::Int(0)]).unwrap_err();
    assert!(matches!(err, SqlError::Exception(_)), "{err}");
    assert_eq!(
        call(&c, &mut kv, "noret", &[Value::Text("4".into())])
            .unwrap()
            .result
            .to_string(),
        "4"
    );
    assert!(matches!(
        call(&c, &mut kv, "nope", &[]).unwrap_err(),
        SqlError::Call(_)
    ));
    assert!(matches!(
        call(&c, &mut kv, "fact", &[]).unwrap_err(),
        SqlError::Call(_)
    ));
    assert!(matches!(
        call(&c, &mut kv, "fact", &[Value::Text("x".into())]).unwrap_err(),
        SqlError::Call(_)
    ));
}

#[test]
fn constraints_revert_everything() {
    let (c, mut kv) = deploy(SHOP);
    let before = kv.entries();
    for sql in [
        "INSERT INTO items VALUES (1, 'dup', 1, 1, true)",
        "INSERT INTO items VALUES (4, 'apple', 1, 1, true)",
        "INSERT INTO items (id, price) VALUES (5, 1)",
        "INSERT INTO items VALUES (6, 'x', -1, 1, true)",
        "INSERT INTO items VALUES (7, 'waytoolongname', 1, 1, true)",
        "INSERT INTO items VALUES (8, 'y', 123456789012.00, 1, true)",
        "INSERT INTO items VALUES (9, 'z', 1, 99999999999, true)",
        "UPDATE items SET name = 'pear' WHERE id = 1",
        "UPDATE items SET id = 2 WHERE id = 1",
        "UPDATE items SET qty = qty / 0",
        "INSERT INTO items VALUES (10, 'ok', 1, 1, true), (1, 'bad', 1, 1, true)",
    ] {
        let err = c.execute(sql, &mut kv, GAS).unwrap_err();
        assert!(
            matches!(
                err,
                SqlError::Constraint(_) | SqlError::Overflow(_) | SqlError::DivisionByZero
            ),
            "{sql}: {err}"
        );
        assert_eq!(kv.entries(), before, "{sql} left writes");
    }
    // unique index maintained through updates and deletes
    c.execute(
        "UPDATE items SET name = 'apricot' WHERE id = 1",
        &mut kv,
        GAS,
    )
    .unwrap();
    c.execute(
        "INSERT INTO items (id, name, price) VALUES (4, 'apple', 3)",
        &mut kv,
        GAS,
    )
    .unwrap();
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT id, qty, active FROM items WHERE name = 'apple'"
        ),
        vec!["4,0,t"]
    );
    let r = c
        .execute(
            "DELETE FROM orders WHERE item = 1 RETURNING oid",
            &mut kv,
            GAS,
        )
        .unwrap();
    assert_eq!(r.rows.len(), 2);
    assert_eq!(q(&c, &kv, "SELECT oid FROM orders"), vec!["12", "13"]);
    let r = c
        .execute(
            "UPDATE items SET id = id + 100 WHERE id = 4 RETURNING id, name",
            &mut kv,
            GAS,
        )
        .unwrap();
    assert_eq!(r.rows[0][0].to_string(), "104");
    assert_eq!(
        q(&c, &kv, "SELECT id FROM items WHERE name = 'apple'"),
        vec!["104"]
    );
}

#[test]
fn deploy_errors_have_line_and_column() {
    let cases: &[(&str, u64)] = &[
        ("CREATE TABLE t (a INT PRIMARY KEY);\nCREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  RETURN nosuch;\nEND $$;", 4),
        ("CREATE TABLE t (a INT PRIMARY KEY);\n\nSELEKT 1;", 3),
        ("CREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  SELECT a INTO x FROM t;\nEND $$;", 3),
        ("CREATE TABLE t (a INT);\nCREATE FUNCTION f() RETURNS INT AS $$\nDECLARE x INT;\nBEGIN\n  SELECT zz INTO x FROM t;\n  RETURN x;\nEND $$;", 5),
        ("CREATE TABLE t (a INT);\nCREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  RETURN 1 + 'a'::TEXT || 1 + true;\nEND $$;", 4),
        ("CREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  EXIT;\nEND $$;", 3),
        ("CREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  RETURN g(1);\nEND $$;", 3),
        ("CREATE TABLE t (a INT, a INT);", 1),
        ("CREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  IF true THEN RETURN 1;\nEND $$;", 4),
        // SQLSTATE and SQLERRM exist only inside a handler
        ("CREATE FUNCTION f() RETURNS TEXT AS $$\nBEGIN\n  BEGIN\n    RETURN 'a';\n  EXCEPTION WHEN others THEN RETURN SQLERRM;\n  END;\n  RETURN SQLERRM;\nEND $$;", 7),
        ("CREATE FUNCTION f() RETURNS TEXT AS $$\nBEGIN\n  RETURN SQLSTATE;\nEXCEPTION WHEN others THEN RETURN 'b';\nEND $$;", 3),
        ("CREATE FUNCTION f() RETURNS TEXT AS $$\nBEGIN\n  RETURN 'a';\nEXCEPTION\n  WHEN SQLSTATE 'abcde' THEN RETURN 'b';\nEND $$;", 5),
        // FOREACH needs an array; RETURN QUERY/NEXT only in set-returning functions
        ("CREATE FUNCTION f() RETURNS INT AS $$\nDECLARE x INT;\nBEGIN\n  FOREACH x IN ARRAY 5 LOOP\n  END LOOP;\n  RETURN 1;\nEND $$;", 4),
        ("CREATE TABLE t (a INT);\nCREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  RETURN QUERY SELECT a FROM t;\nEND $$;", 4),
        // a record of OUT parameters is returned by a bare RETURN, its type is record
        ("CREATE FUNCTION f(x INT, OUT a INT, OUT b INT) AS $$\nBEGIN\n  RETURN x;\nEND $$;", 3),
        ("CREATE FUNCTION f(x INT, OUT a INT, OUT b INT) RETURNS INT AS $$\nBEGIN\n  a := x;\nEND $$;", 1),
        ("CREATE FUNCTION f() RETURNS SETOF INT AS $$\nBEGIN\n  RETURN NEXT;\nEND $$;", 3),
        ("CREATE FUNCTION f() RETURNS SETOF INT AS $$\nBEGIN\n  RETURN 1;\nEND $$;", 3),
        ("CREATE FUNCTION f() RETURNS TABLE (a INT) AS $$\nBEGIN\n  RETURN NEXT a + 1;\nEND $$;", 3),
        // a set-returning function is only read in FROM
        ("CREATE FUNCTION s() RETURNS SETOF INT AS $$\nBEGIN\n  RETURN NEXT 1;\nEND $$;\nCREATE FUNCTION f() RETURNS INT AS $$\nBEGIN\n  RETURN s();\nEND $$;", 7),
    ];
    for (src, line) in cases {
        let mut kv = MemKv::new();
        let err = match Contract::deploy(src, "o", b"x/", &mut kv, GAS) {
            Ok(_) => panic!("deployed: {src}"),
            Err(e) => e,
        };
        let pos = err.pos().unwrap_or_else(|| panic!("no position: {err}"));
        assert_eq!(pos.line, *line, "{src}\n=> {err}");
        for (needle, says) in [("FOREACH", "array"), ("RETURN QUERY", "SETOF")] {
            if src.contains(needle) {
                assert!(err.to_string().contains(says), "{err}");
            }
        }
        if src.contains("SQLERRM;\nEND") || src.contains("RETURN SQLSTATE") {
            let e = err.to_string().to_lowercase();
            assert!(e.contains("sqlerrm") || e.contains("sqlstate"), "{err}");
        }
        assert!(kv.is_empty());
    }
}

#[test]
fn gas_limits_loops_and_queries() {
    let (c, mut kv) = deploy("CREATE FUNCTION spin() RETURNS INT AS $$ BEGIN LOOP END LOOP; END $$; CREATE TABLE t (a INT);");
    assert!(matches!(
        call(&c, &mut kv, "spin", &[]).unwrap_err(),
        SqlError::OutOfGas { .. }
    ));
    for i in 0..50 {
        c.execute(&format!("INSERT INTO t VALUES ({i})"), &mut kv, GAS)
            .unwrap();
    }
    assert!(matches!(
        c.query("SELECT a FROM t", &kv, 100).unwrap_err(),
        SqlError::OutOfGas { .. }
    ));
    assert!(matches!(
        c.query("DELETE FROM t", &kv, GAS).unwrap_err(),
        SqlError::Permission(_)
    ));
    assert!(c.query("SELECT sender()", &kv, GAS).is_err());
    assert_eq!(q(&c, &kv, "SELECT COUNT(*) FROM t"), vec!["50"]);
}

#[test]
fn upgrade_owner_only_and_builds_indexes() {
    let (mut c, mut kv) = deploy("CREATE TABLE t (a INT PRIMARY KEY, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');\nCREATE FUNCTION f() RETURNS INT AS $$ BEGIN RETURN 1; END $$;");
    let up = "CREATE TABLE IF NOT EXISTS t (a INT); CREATE UNIQUE INDEX tb ON t (b);\nCREATE OR REPLACE FUNCTION f() RETURNS INT AS $$ BEGIN RETURN (SELECT a FROM t WHERE b = 'y'); END $$;";
    assert!(matches!(
        c.upgrade(up, "mallory", &mut kv, GAS).unwrap_err(),
        SqlError::Permission(_)
    ));
    c.upgrade(up, "owner", &mut kv, GAS).unwrap();
    assert_eq!(call(&c, &mut kv, "f", &[]).unwrap().result.to_string(), "2");
    assert!(c
        .execute("INSERT INTO t VALUES (3, 'x')", &mut kv, GAS)
        .is_err());
    let c2 = Contract::load(b"k/", &kv).unwrap();
    assert_eq!(
        call(&c2, &mut kv, "f", &[]).unwrap().result.to_string(),
        "2"
    );
    assert!(c
        .upgrade(
            "CREATE FUNCTION f() RETURNS INT AS $$ BEGIN RETURN 3; END $$;",
            "owner",
            &mut kv,
            GAS
        )
        .is_err());
}

const GAS_OF_POINT_CALLS: [u64; 16] = [
    101, 101, 97, 87, 101, 90, 101, 99, 95, 93, 138, 88, 93, 143, 186, 227,
];

/// Primary-key point statements (`SELECT … INTO … WHERE pk = …`, `UPDATE …
/// WHERE pk = …`) take a shorter path in the executor (and the JIT resolves
/// them at compile time): results, FOUND, errors, writes and gas must be
/// those of the general path, on every edge.
#[test]
fn point_statements() {
    let src = r#"
CREATE TABLE acc (id BIGINT PRIMARY KEY, bal NUMERIC(10,2) NOT NULL CHECK (bal >= 0), tag TEXT);
CREATE TABLE tk (code VARCHAR(8) PRIMARY KEY, n INTEGER, label TEXT UNIQUE);
INSERT INTO acc VALUES (1, 10.00, 'a'), (2, 20.00, 'b'), (3, 0.50, NULL);
INSERT INTO tk VALUES ('x', 1, 'one'), ('y', 2, 'two');
CREATE FUNCTION get(k BIGINT) RETURNS TEXT AS $$
DECLARE b NUMERIC; t TEXT;
BEGIN
  SELECT bal, tag INTO b, t FROM acc WHERE id = k;
  IF NOT FOUND THEN RETURN 'none:' || coalesce(b::text, 'null'); END IF;
  RETURN b::text || ':' || coalesce(t, 'null');
END $$;
CREATE FUNCTION strict_get(k BIGINT) RETURNS NUMERIC AS $$
DECLARE b NUMERIC;
BEGIN
  SELECT bal INTO STRICT b FROM acc WHERE id = k;
  RETURN b;
END $$;
CREATE FUNCTION swap(k BIGINT) RETURNS TEXT AS $$
DECLARE p TEXT := 'p'; q TEXT := 'q';
BEGIN
  SELECT tag, p INTO p, q FROM acc WHERE id = k;
  RETURN coalesce(p, 'null') || ',' || coalesce(q, 'null');
END $$;
CREATE FUNCTION filtered(k BIGINT, min NUMERIC) RETURNS BOOLEAN AS $$
DECLARE b NUMERIC := 99;
BEGIN
  SELECT bal INTO b FROM acc WHERE id = k AND bal > min;
  RETURN FOUND;
END $$;
CREATE FUNCTION pay(a BIGINT, amt NUMERIC) RETURNS BOOLEAN AS $$
BEGIN
  UPDATE acc SET bal = bal - amt WHERE id = a;
  RETURN FOUND;
END $$;
CREATE FUNCTION pay_if(a BIGINT, amt NUMERIC, t TEXT) RETURNS BOOLEAN AS $$
BEGIN
  UPDATE acc SET bal = bal - amt, tag = t WHERE id = a AND tag = 'a';
  RETURN FOUND;
END $$;
CREATE FUNCTION move(a BIGINT, b BIGINT) RETURNS BOOLEAN AS $$
BEGIN
  UPDATE acc SET id = b WHERE id = a;
  RETURN FOUND;
END $$;
CREATE FUNCTION relabel(c TEXT, l TEXT) RETURNS INTEGER AS $$
DECLARE r INTEGER;
BEGIN
  UPDATE tk SET label = l, n = n + 1 WHERE code = c;
  SELECT n INTO r FROM tk WHERE code = c;
  RETURN r;
END $$;
"#;
    let (c, mut kv) = deploy(src);
    let mut gas = Vec::new();
    let mut ok = |r: Result<aergo_sql::CallOutcome, SqlError>| {
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        gas.push(r.gas_used);
        r
    };
    let int = |i: i64| Value::Int(i);
    let num = |s: &str| Value::Text(s.into());
    // reads: found, missing, NULL key, key needing a cast, text key
    assert_eq!(
        ok(call(&c, &mut kv, "get", &[int(1)])).result,
        Value::Text("10.00:a".into())
    );
    assert_eq!(
        ok(call(&c, &mut kv, "get", &[int(3)])).result,
        Value::Text("0.50:null".into())
    );
    assert_eq!(
        ok(call(&c, &mut kv, "get", &[int(9)])).result,
        Value::Text("none:null".into())
    );
    assert_eq!(
        ok(call(&c, &mut kv, "get", &[Value::Null])).result,
        Value::Text("none:null".into())
    );
    assert_eq!(
        ok(call(&c, &mut kv, "get", &[Value::Text("2".into())])).result,
        Value::Text("20.00:b".into())
    );
    // STRICT
    assert_eq!(
        ok(call(&c, &mut kv, "strict_get", &[int(2)]))
            .result
            .to_string(),
        "20.00"
    );
    let e = call(&c, &mut kv, "strict_get", &[int(7)]).unwrap_err();
    assert!(e.to_string().contains("no rows"), "{e}");
    // INTO sees the values of before the statement
    assert_eq!(
        ok(call(&c, &mut kv, "swap", &[int(1)])).result,
        Value::Text("a,p".into())
    );
    assert_eq!(
        ok(call(&c, &mut kv, "swap", &[int(8)])).result,
        Value::Text("null,null".into())
    );
    // a WHERE beyond the key
    assert_eq!(
        ok(call(&c, &mut kv, "filtered", &[int(2), num("5")])).result,
        Value::Bool(true)
    );
    assert_eq!(
        ok(call(&c, &mut kv, "filtered", &[int(2), num("50")])).result,
        Value::Bool(false)
    );
    // updates: found, missing, CHECK violation (nothing written), filter
    assert_eq!(
        ok(call(&c, &mut kv, "pay", &[int(2), num("5.5")])).result,
        Value::Bool(true)
    );
    assert_eq!(
        ok(call(&c, &mut kv, "pay", &[int(5), num("1")])).result,
        Value::Bool(false)
    );
    let before = kv.entries();
    let e = call(&c, &mut kv, "pay", &[int(3), num("1")]).unwrap_err();
    assert!(e.to_string().contains("check constraint"), "{e}");
    assert_eq!(before, kv.entries());
    assert_eq!(
        ok(call(&c, &mut kv, "pay_if", &[int(2), num("1"), num("z")])).result,
        Value::Bool(false)
    );
    assert_eq!(
        ok(call(&c, &mut kv, "pay_if", &[int(1), num("1"), num("z")])).result,
        Value::Bool(true)
    );
    // primary-key changes: moved, and a duplicate refused
    assert_eq!(
        ok(call(&c, &mut kv, "move", &[int(1), int(4)])).result,
        Value::Bool(true)
    );
    let e = call(&c, &mut kv, "move", &[int(4), int(2)]).unwrap_err();
    assert!(e.to_string().contains("primary key"), "{e}");
    // a table with a unique index (old row kept for index maintenance)
    assert_eq!(
        ok(call(&c, &mut kv, "relabel", &[num("x"), num("uno")])).result,
        Value::Int(2)
    );
    let e = call(&c, &mut kv, "relabel", &[num("x"), num("two")]).unwrap_err();
    assert!(e.to_string().contains("unique"), "{e}");
    // gas is consensus: these are the figures of the general path before
    // point statements had their own
    assert_eq!(gas, GAS_OF_POINT_CALLS);
    assert_eq!(
        q(&c, &kv, "SELECT id, bal, tag FROM acc"),
        ["2,14.50,b", "3,0.50,NULL", "4,9.00,z"]
    );
    assert_eq!(
        q(&c, &kv, "SELECT code, n, label FROM tk"),
        ["x,2,uno", "y,2,two"]
    );
}

/// REAL/DOUBLE PRECISION: results on both engines (`call` compares them), PostgreSQL's text
/// forms, and the gas of float statements pinned (transcendental functions cost
/// `gas::TRANSCENDENTAL` more than a plain node).
#[test]
fn floats_and_their_gas() {
    let src = r#"
CREATE TABLE pts (id BIGINT PRIMARY KEY, x DOUBLE PRECISION NOT NULL, w REAL);
INSERT INTO pts VALUES (1, 3, 0.5), (2, 4, NULL), (3, 'NaN', 'Infinity');
CREATE FUNCTION norm(a DOUBLE PRECISION, b DOUBLE PRECISION) RETURNS DOUBLE PRECISION AS $$
BEGIN
  RETURN sqrt(a * a + b * b);
END $$;
CREATE FUNCTION addp(k BIGINT, v DOUBLE PRECISION) RETURNS DOUBLE PRECISION AS $$
DECLARE s DOUBLE PRECISION;
BEGIN
  INSERT INTO pts VALUES (k, v / 3, v);
  SELECT sum(x) INTO s FROM pts WHERE x < 'NaN';
  RETURN s;
END $$;
"#;
    let (c, mut kv) = deploy(src);
    let r = call(&c, &mut kv, "norm", &[Value::Float(3.0), Value::Float(4.0)]).unwrap();
    assert_eq!(
        (r.result.to_string(), r.gas_used),
        ("5".to_string(), GAS_NORM)
    );
    let r = call(
        &c,
        &mut kv,
        "addp",
        &[Value::Int(4), Value::Text("1".into())],
    )
    .unwrap();
    assert_eq!(
        (r.result.to_string(), r.gas_used),
        ("7.333333333333333".to_string(), GAS_ADDP)
    );
    let e = call(
        &c,
        &mut kv,
        "norm",
        &[Value::Float(1e300), Value::Float(1.0)],
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "overflow: value out of range: overflow");
    assert_eq!(
        q(&c, &kv, "SELECT x, w, x / 3 FROM pts ORDER BY x DESC"),
        vec![
            "NaN,Infinity,NaN",
            "4,NULL,1.3333333333333333",
            "3,0.5,1",
            "0.3333333333333333,1,0.1111111111111111",
        ]
    );
    let r = c
        .query("SELECT sqrt(x), x * 2 FROM pts WHERE x > 1", &kv, GAS)
        .unwrap();
    assert_eq!(r.gas_used, GAS_QUERY);
}

const GAS_NORM: u64 = 63;
const GAS_ADDP: u64 = 197;
const GAS_QUERY: u64 = 66;

/// Gas of one query of each new kind (ANY/ALL and NOT IN over subqueries, GROUP BY through
/// a qualified name and an alias, HAVING without GROUP BY, string_agg with ORDER BY,
/// bool_and/bool_or, greatest/least): pinned, so a change to the schedule is deliberate.
#[test]
fn new_query_kinds_gas() {
    let (c, kv) = deploy(
        "CREATE TABLE t (k BIGINT PRIMARY KEY, g INTEGER, s TEXT, b BOOLEAN);
         CREATE TABLE e (v INTEGER);
         INSERT INTO t VALUES (1, 1, 'x', true), (2, 1, 'y', false), (3, 2, NULL, true);",
    );
    let cases: [(&str, &[&str], u64); 6] = [
        (
            "SELECT k FROM t WHERE g > ANY (SELECT g FROM t WHERE k = 1) OR k NOT IN (SELECT v FROM e)",
            &["1", "2", "3"],
            GAS_ANY,
        ),
        (
            "SELECT t.g AS grp, count(*) FROM t GROUP BY grp ORDER BY 1",
            &["1,2", "2,1"],
            GAS_GROUP,
        ),
        ("SELECT count(*) FROM t HAVING count(*) > 2", &["3"], GAS_HAVING),
        (
            "SELECT string_agg(s, '-' ORDER BY k DESC), bool_and(b), bool_or(b) FROM t",
            &["y-x,f,t"],
            GAS_AGG,
        ),
        (
            "SELECT greatest(g, k, NULL), least(s, 'm') FROM t ORDER BY k",
            &["1,m", "2,m", "3,m"],
            GAS_GREATEST,
        ),
        (
            "SELECT NULL IN (SELECT v FROM e), 1 = ALL (SELECT v FROM e)",
            &["f,t"],
            GAS_EMPTY,
        ),
    ];
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (sql, rows, gas) in cases {
        assert_eq!(q(&c, &kv, sql), rows, "{sql}");
        got.push(c.query(sql, &kv, GAS).unwrap().gas_used);
        want.push(gas);
    }
    assert_eq!(got, want);
}

const GAS_ANY: u64 = 92;
const GAS_GROUP: u64 = 58;
const GAS_HAVING: u64 = 54;
const GAS_AGG: u64 = 54;
const GAS_GREATEST: u64 = 56;
const GAS_EMPTY: u64 = 22;

/// Gas of a derived table, a WITH query, a set operation and a view (pinned); a view is
/// read-only and its query is compiled where it is used.
#[test]
fn derived_with_sets_views_gas() {
    let (c, mut kv) = deploy(
        "CREATE TABLE t (k BIGINT PRIMARY KEY, g INTEGER);
         INSERT INTO t VALUES (1, 1), (2, 1), (3, 2);
         CREATE VIEW big AS SELECT k FROM t WHERE g > 1;",
    );
    let cases: [(&str, &[&str]); 4] = [
        ("SELECT n FROM (SELECT count(*) AS n FROM t) d", &["3"]),
        ("WITH w AS (SELECT g FROM t) SELECT sum(g) FROM w", &["4"]),
        (
            "SELECT g FROM t UNION SELECT k FROM t ORDER BY 1",
            &["1", "2", "3"],
        ),
        ("SELECT k FROM big", &["3"]),
    ];
    let mut got = Vec::new();
    for (sql, rows) in cases {
        assert_eq!(q(&c, &kv, sql), rows, "{sql}");
        got.push(c.query(sql, &kv, GAS).unwrap().gas_used);
    }
    assert_eq!(got, GAS_SETS);
    let e = c.execute("DELETE FROM big", &mut kv, GAS).unwrap_err();
    assert!(e.to_string().contains("views are read-only"), "{e}");
    // WITH RECURSIVE: pinned gas; a recursion that never ends stops at the gas limit
    let sql = "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 20) \
               SELECT sum(n) FROM r";
    assert_eq!(q(&c, &kv, sql), vec!["210"]);
    assert_eq!(c.query(sql, &kv, GAS).unwrap().gas_used, GAS_RECURSIVE);
    let e = c
        .query(
            "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
            &kv,
            100_000,
        )
        .unwrap_err();
    assert!(matches!(e, SqlError::OutOfGas { .. }), "{e}");
}

const GAS_RECURSIVE: u64 = 344;

const GAS_SETS: [u64; 4] = [56, 60, 98, 54];

/// `BEGIN … EXCEPTION`: the failed block's writes are rolled back but its gas stays spent;
/// `send()` is refused inside such a block (a transfer is not rolled back with it); functions
/// with exception blocks are JIT-compiled and `call` compares both engines.
#[test]
fn exception_blocks_keep_gas_and_roll_back() {
    let src = r#"
CREATE TABLE t (k BIGINT PRIMARY KEY);
CREATE FUNCTION work(n BIGINT, fail BOOLEAN) RETURNS TEXT AS $$
DECLARE i BIGINT := 0;
BEGIN
  BEGIN
    INSERT INTO t VALUES (n);
    WHILE i < n LOOP i := i + 1; END LOOP;
    IF fail THEN i := i / 0; END IF;
  EXCEPTION WHEN division_by_zero THEN
    RETURN 'caught';
  END;
  RETURN 'done';
END $$;
CREATE FUNCTION pay() RETURNS TEXT AS $$
BEGIN
  BEGIN
    PERFORM send('bob', 1);
  EXCEPTION WHEN others THEN
    RETURN 'handled';
  END;
  RETURN 'sent';
END $$;
"#;
    let (c, mut kv) = deploy(src);
    assert_eq!(c.jit_functions(), vec!["work", "pay"]);
    let ok = call(&c, &mut kv, "work", &[Value::Int(50), Value::Bool(false)]).unwrap();
    let failed = call(&c, &mut kv, "work", &[Value::Int(60), Value::Bool(true)]).unwrap();
    assert_eq!(ok.result, Value::Text("done".into()));
    assert_eq!(failed.result, Value::Text("caught".into()));
    // the loop's gas is paid although the block was rolled back
    assert_eq!((ok.gas_used, failed.gas_used), GAS_EXC);
    assert_eq!(q(&c, &kv, "SELECT k FROM t"), vec!["50"]);
    // not even OTHERS catches it: the call fails
    let e = call(&c, &mut kv, "pay", &[]).unwrap_err();
    assert!(e.to_string().contains("send() cannot run inside"), "{e}");
}

const GAS_EXC: (u64, u64) = (533, 617);

/// Gas of the row-returning calls (a record of OUT parameters, RETURN NEXT, RETURN QUERY),
/// pinned, and the same on both engines.
#[test]
fn row_functions_gas() {
    let (c, kv) = deploy(
        "CREATE TABLE t (k BIGINT PRIMARY KEY, s TEXT);
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE FUNCTION dm(a BIGINT, b BIGINT, OUT q BIGINT, OUT r BIGINT) AS $$
         BEGIN q := a / b; r := a % b; END $$;
         CREATE FUNCTION sq(n BIGINT) RETURNS SETOF BIGINT AS $$
         BEGIN FOR i IN 1..n LOOP RETURN NEXT i * i; END LOOP; END $$;
         CREATE FUNCTION rows_of(m BIGINT) RETURNS TABLE (k BIGINT, s TEXT) AS $$
         BEGIN RETURN QUERY SELECT t.k, t.s FROM t WHERE t.k >= m; END $$;",
    );
    let cases: [(&str, &[&str], u64); 4] = [
        ("SELECT * FROM dm(17, 5)", &["3,2"], GAS_RECORD_FROM),
        ("SELECT dm(17, 5)", &["(3,2)"], GAS_RECORD_VALUE),
        ("SELECT * FROM sq(3)", &["1", "4", "9"], GAS_NEXT),
        (
            "SELECT * FROM rows_of(2)",
            &["2,b", "3,c"],
            GAS_RETURN_QUERY,
        ),
    ];
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (sql, rows, gas) in cases {
        assert_eq!(q(&c, &kv, sql), rows, "{sql}");
        let mut per_engine = Vec::new();
        for engine in [Engine::Interpreter, Engine::Jit] {
            let mut kv2 = kv.clone();
            per_engine.push(c.execute_with(engine, sql, &mut kv2, GAS).unwrap().gas_used);
        }
        assert_eq!(per_engine[0], per_engine[1], "{sql}");
        got.push(per_engine[0]);
        want.push(gas);
    }
    assert_eq!(got, want);
}

/// Scripts that deployed before record results existed load the same way: `RETURNS record`
/// without OUT parameters still reads as a value of unknown type, and `RETURN next` in an
/// ordinary function still returns a variable named `next`.
#[test]
fn old_record_and_next_spellings_keep_their_meaning() {
    let (c, mut kv) = deploy(
        "CREATE FUNCTION r(x BIGINT) RETURNS record AS $$ BEGIN RETURN x + 1; END $$;
         CREATE FUNCTION n(x BIGINT) RETURNS BIGINT AS $$
         DECLARE next BIGINT := x * 2; BEGIN RETURN next; END $$;",
    );
    assert_eq!(
        call(&c, &mut kv, "r", &[Value::Int(4)]).unwrap().result,
        Value::Int(5)
    );
    assert_eq!(
        call(&c, &mut kv, "n", &[Value::Int(4)]).unwrap().result,
        Value::Int(8)
    );
    assert_eq!(c.abi().functions[0].returns, "UNKNOWN");
}

const GAS_RECORD_FROM: u64 = 84;
const GAS_RECORD_VALUE: u64 = 84;
const GAS_NEXT: u64 = 106;
const GAS_RETURN_QUERY: u64 = 138;

/// A point UPDATE right after a point SELECT of the same key starts from the row the SELECT
/// decoded (`Runtime::point_cache`), on the JIT only: every way the stored row can change in
/// between — an UPDATE, a DELETE and re-INSERT, a nested call's write, an exception block's
/// rollback — must be seen, with the interpreter's results, writes and gas (`call` compares
/// the engines).
#[test]
fn point_update_after_select_sees_every_change() {
    let src = r#"
CREATE TABLE acc (k TEXT PRIMARY KEY, v BIGINT, note TEXT);
INSERT INTO acc VALUES ('a', 10, 'x'), ('b', 20, 'y');
CREATE FUNCTION bump(w TEXT, n BIGINT) RETURNS BIGINT AS $$
BEGIN
  UPDATE acc SET v = v + n WHERE k = w;
  RETURN n;
END $$;
CREATE FUNCTION plain(w TEXT, o TEXT) RETURNS BIGINT AS $$
DECLARE x BIGINT; y BIGINT;
BEGIN
  SELECT v INTO x FROM acc WHERE k = w;
  UPDATE acc SET v = v + 1 WHERE k = o;
  UPDATE acc SET v = v + x WHERE k = w;
  SELECT v INTO y FROM acc WHERE k = w;
  RETURN y;
END $$;
CREATE FUNCTION rolled(w TEXT) RETURNS BIGINT AS $$
DECLARE x BIGINT; y BIGINT;
BEGIN
  SELECT v INTO x FROM acc WHERE k = w;
  BEGIN
    UPDATE acc SET v = v + 100 WHERE k = w;
    SELECT v INTO y FROM acc WHERE k = w;
    RAISE EXCEPTION 'undo %', y;
  EXCEPTION WHEN others THEN
    NULL;
  END;
  UPDATE acc SET v = v + 1 WHERE k = w;
  SELECT v INTO y FROM acc WHERE k = w;
  RETURN y * 1000 + x;
END $$;
CREATE FUNCTION reinsert(w TEXT) RETURNS TEXT AS $$
DECLARE x BIGINT; y BIGINT;
BEGIN
  SELECT v INTO x FROM acc WHERE k = w;
  DELETE FROM acc WHERE k = w;
  UPDATE acc SET v = v + 1 WHERE k = w;
  IF FOUND THEN RETURN 'updated a deleted row'; END IF;
  INSERT INTO acc VALUES (w, 500, 'new');
  UPDATE acc SET v = v + 1 WHERE k = w;
  SELECT v INTO y FROM acc WHERE k = w;
  RETURN x || '/' || y;
END $$;
CREATE FUNCTION nested(w TEXT) RETURNS BIGINT AS $$
DECLARE x BIGINT; y BIGINT;
BEGIN
  SELECT v INTO x FROM acc WHERE k = w;
  PERFORM bump(w, 7);
  UPDATE acc SET v = v * 2 WHERE k = w;
  SELECT v INTO y FROM acc WHERE k = w;
  RETURN y;
END $$;
CREATE FUNCTION filtered(w TEXT) RETURNS TEXT AS $$
DECLARE x BIGINT;
BEGIN
  SELECT v INTO x FROM acc WHERE k = w;
  UPDATE acc SET v = 0 WHERE k = w AND note = 'none';
  IF FOUND THEN RETURN 'wrong'; END IF;
  UPDATE acc SET v = v + 3, note = 'seen' WHERE k = w AND note <> 'none';
  SELECT v INTO x FROM acc WHERE k = w;
  RETURN x || ':' || FOUND;
END $$;
"#;
    let (c, mut kv) = deploy(src);
    for f in ["plain", "rolled", "reinsert", "nested", "filtered"] {
        assert!(
            c.jit_functions().contains(&f.to_string()),
            "{f} not compiled"
        );
    }
    let t = |s: &str| Value::Text(s.into());
    let mut run = |f: &str, args: &[Value]| {
        call(&c, &mut kv, f, args)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .result
    };
    // a = 10, b = 20: b + 1, then a + 10 read before
    assert_eq!(run("plain", &[t("a"), t("b")]), Value::Int(20));
    // the same key on both sides: the first UPDATE changes the cached row
    assert_eq!(run("plain", &[t("a"), t("a")]), Value::Int(41));
    // 41 + 100 rolled back, then + 1
    assert_eq!(run("rolled", &[t("a")]), Value::Int(42_041));
    assert_eq!(run("reinsert", &[t("a")]), t("42/501"));
    // 501 + 7 by the nested call, then doubled
    assert_eq!(run("nested", &[t("a")]), Value::Int(1016));
    assert_eq!(run("filtered", &[t("b")]), t("24:true"));
    assert_eq!(
        q(&c, &kv, "SELECT k, v, note FROM acc"),
        ["a,1016,new", "b,24,seen"]
    );
}

/// `RETURNS SETOF table`: the table's columns are the result (ABI, `SELECT *`), RETURN QUERY
/// fills it on both engines with the same gas as the equivalent `RETURNS TABLE (…)`, the
/// JIT compiles it, and what it cannot be is a deploy error.
#[test]
fn setof_table_functions() {
    let script = "CREATE TABLE t (k BIGINT PRIMARY KEY, s TEXT);
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE FUNCTION from_t(m BIGINT) RETURNS SETOF t AS $$
         BEGIN RETURN QUERY SELECT * FROM t WHERE t.k >= m; END $$;
         CREATE FUNCTION rows_of(m BIGINT) RETURNS TABLE (k BIGINT, s TEXT) AS $$
         BEGIN RETURN QUERY SELECT t.k, t.s FROM t WHERE t.k >= m; END $$;";
    let (c, kv) = deploy(script);
    assert!(c.jit_functions().contains(&"from_t".to_string()));
    let f = c
        .abi()
        .functions
        .into_iter()
        .find(|f| f.name == "from_t")
        .unwrap();
    assert_eq!(f.returns, "TABLE(k BIGINT, s TEXT)");
    assert_eq!(q(&c, &kv, "SELECT * FROM from_t(2)"), ["2,b", "3,c"]);
    assert_eq!(
        q(&c, &kv, "SELECT s FROM from_t(3) AS x WHERE x.k = 3"),
        ["c"]
    );
    let gas = |sql: &str, engine| {
        let mut kv2 = kv.clone();
        c.execute_with(engine, sql, &mut kv2, GAS).unwrap().gas_used
    };
    for engine in [Engine::Interpreter, Engine::Jit] {
        assert_eq!(
            gas("SELECT * FROM from_t(1)", engine),
            gas("SELECT * FROM rows_of(1)", engine)
        );
    }
    for (body, want) in [
        (
            "CREATE FUNCTION f() RETURNS SETOF t AS $$ BEGIN RETURN NEXT 1; END $$;",
            "use RETURN QUERY",
        ),
        (
            "CREATE FUNCTION f(OUT a BIGINT) RETURNS SETOF t AS $$ BEGIN RETURN; END $$;",
            "because of OUT parameters",
        ),
        (
            "CREATE FUNCTION f() RETURNS SETOF nosuch AS $$ BEGIN RETURN; END $$;",
            "type \"nosuch\" does not exist",
        ),
        (
            "CREATE FUNCTION f() RETURNS SETOF t AS $$ BEGIN RETURN QUERY SELECT k FROM t; END $$;",
            "structure of query does not match",
        ),
    ] {
        let mut kv = MemKv::new();
        let src = format!("CREATE TABLE t (k BIGINT PRIMARY KEY, s TEXT); {body}");
        let e = Contract::deploy(&src, "owner", b"k/", &mut kv, GAS)
            .err()
            .unwrap_or_else(|| panic!("{body} deployed"));
        assert!(e.to_string().contains(want), "{body}: {e}");
    }
}

/// Function calls in FROM may read earlier FROM items (implicitly LATERAL), called once per
/// row of them; arguments that compiled before that was accepted keep their meaning — a
/// name that is also a variable, or an enclosing query's column, still reads that (where
/// PostgreSQL reports the conflict or reads the earlier item; node/sql/DIFFERENCES.md).
#[test]
fn lateral_function_arguments_keep_old_meanings() {
    let (c, mut kv) = deploy(
        r#"
CREATE TABLE dept (id BIGINT PRIMARY KEY, size BIGINT);
CREATE TABLE big (id BIGINT PRIMARY KEY, size BIGINT);
INSERT INTO dept VALUES (1, 2), (2, 3);
INSERT INTO big VALUES (1, 1);
CREATE FUNCTION upto(n BIGINT) RETURNS SETOF BIGINT AS $$
BEGIN FOR i IN 1..n LOOP RETURN NEXT i; END LOOP; END $$;
CREATE FUNCTION with_var(size BIGINT) RETURNS BIGINT AS $$
DECLARE n BIGINT;
BEGIN SELECT count(*) INTO n FROM dept AS d, upto(size) AS u; RETURN n; END $$;
CREATE FUNCTION per_row() RETURNS BIGINT AS $$
DECLARE n BIGINT;
BEGIN SELECT sum(u) INTO n FROM dept AS d, upto(d.size) AS u; RETURN n; END $$;
"#,
    );
    assert_eq!(
        call(&c, &mut kv, "with_var", &[Value::Int(4)])
            .unwrap()
            .result,
        Value::Int(8)
    );
    assert_eq!(
        call(&c, &mut kv, "per_row", &[]).unwrap().result,
        Value::Int(9)
    );
    // `size` in the subquery is the enclosing query's column, as before
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT (SELECT count(*) FROM dept AS d, upto(size) AS u) FROM big"
        ),
        ["2"]
    );
    assert_eq!(
        q(
            &c,
            &kv,
            "SELECT (SELECT count(*) FROM dept AS d, upto(d.size) AS u) FROM big"
        ),
        ["5"]
    );
    let gas = |engine| {
        let mut kv2 = kv.clone();
        c.execute_with(
            engine,
            "SELECT * FROM dept AS d, upto(d.size) AS u",
            &mut kv2,
            GAS,
        )
        .unwrap()
        .gas_used
    };
    assert_eq!(gas(Engine::Interpreter), gas(Engine::Jit));
}

#[test]
fn arrays_are_bounded_and_metered() {
    let (c, mut kv) = deploy(
        "CREATE FUNCTION grow(n INT) RETURNS INT AS $$
DECLARE a INT[]; i INT;
BEGIN
  FOR i IN 1..n LOOP a := array_append(a, i); END LOOP;
  RETURN cardinality(a);
END $$;
CREATE FUNCTION sum_of(xs BIGINT[]) RETURNS BIGINT AS $$
DECLARE x BIGINT; s BIGINT := 0;
BEGIN FOREACH x IN ARRAY xs LOOP s := s + x; END LOOP; RETURN s; END $$;
CREATE FUNCTION echo(xs TEXT[]) RETURNS TEXT[] AS $$ BEGIN RETURN xs; END $$;
CREATE FUNCTION note(xs TEXT[]) RETURNS INT AS $$
BEGIN RAISE NOTICE 'xs=% two=% n=%', xs, ARRAY[1, 2], cardinality(xs); RETURN 0; END $$;
CREATE FUNCTION more(a BIGINT[], n INT) RETURNS INT AS $$
BEGIN
  FOR i IN 1..n LOOP a := a || i; END LOOP;
  RETURN array_length(a, 1);
END $$;",
    );
    // gas: call 50 + DECLARE 1 + FOR 3 at the start and 3 per iteration + the assignment 4
    // per iteration + RETURN 3, and array_append 1 per element of the array it builds
    // (1 + 2 + 3)
    let g3 = call(&c, &mut kv, "grow", &[Value::Int(3)]).unwrap();
    let g4 = call(&c, &mut kv, "grow", &[Value::Int(4)]).unwrap();
    assert_eq!(g3.result.to_text(), "3");
    assert_eq!(
        g3.gas_used,
        50 + 1 + 3 + 3 * 3 + 3 * 4 + 3 + (1 + 2 + 3),
        "grow(3) gas"
    );
    // one more iteration: the loop's statements plus 4 elements built
    assert_eq!(g4.gas_used - g3.gas_used, 3 + 4 + 4);
    // the bound: 10,000 elements, one more is an error and nothing else
    let start = Value::Text(format!("{{{}}}", vec!["7"; 9_998].join(",")));
    let ok = call(&c, &mut kv, "more", &[start.clone(), Value::Int(2)]).unwrap();
    assert_eq!(ok.result.to_text(), "10000");
    let err = call(&c, &mut kv, "more", &[start, Value::Int(3)]).unwrap_err();
    assert!(
        err.to_string()
            .contains("array size exceeds the maximum allowed (10000)"),
        "{err}"
    );
    let long = format!("{{{}}}", vec!["1"; 10_001].join(","));
    let err = call(&c, &mut kv, "sum_of", &[Value::Text(long)]).unwrap_err();
    assert!(err.to_string().contains("array size exceeds"), "{err}");
    // text arguments are cast to the array type; arrays print in PostgreSQL's form and as
    // JSON arrays
    let s = call(&c, &mut kv, "sum_of", &[Value::Text("{1, 2, 4}".into())]).unwrap();
    assert_eq!(s.result.to_text(), "7");
    let s = call(&c, &mut kv, "sum_of", &[Value::Text("{1, NULL}".into())]).unwrap();
    assert!(s.result.is_null());
    let e = call(
        &c,
        &mut kv,
        "echo",
        &[Value::Text("{a,\"b c\",NULL}".into())],
    )
    .unwrap();
    assert_eq!(e.result.to_text(), "{a,\"b c\",NULL}");
    assert_eq!(e.result.to_json(), "[\"a\",\"b c\",null]");
    let bad = call(&c, &mut kv, "sum_of", &[Value::Text("{1,x}".into())]).unwrap_err();
    assert!(bad.to_string().contains("invalid input syntax"), "{bad}");
    let bad = call(&c, &mut kv, "sum_of", &[Value::Text("1,2".into())]).unwrap_err();
    assert!(bad.to_string().contains("malformed array literal"), "{bad}");
    assert!(c
        .abi()
        .functions
        .iter()
        .any(|f| f.name == "echo" && f.returns == "TEXT[]"));
    // element text is bounded too (1 MiB) and paid per KiB: 600 elements of 1 KiB fit,
    // 1,100 do not
    let kib = "x".repeat(1024);
    let fits = Value::Text(format!("{{{}}}", vec![kib.as_str(); 600].join(",")));
    let e = call(&c, &mut kv, "echo", &[fits]).unwrap();
    assert!(matches!(&e.result, Value::Array(a) if a.items.len() == 600));
    let big = Value::Text(format!("{{{}}}", vec![kib.as_str(); 1100].join(",")));
    let err = call(&c, &mut kv, "echo", &[big]).unwrap_err();
    assert!(err.to_string().contains("bytes of element text"), "{err}");
    // RAISE arguments split at top-level commas only (not those inside ARRAY[…])
    let n = call(&c, &mut kv, "note", &[Value::Text("{a,\"b c\"}".into())]).unwrap();
    assert_eq!(n.events, vec!["xs={a,\"b c\"} two={1,2} n=2".to_string()]);
}

#[test]
fn engine_version_1_contracts_keep_refusing_arrays() {
    use aergo_sql::{EngineVersion, Kv};
    let arrays = [
        "CREATE FUNCTION f() RETURNS INT AS $$ DECLARE a INT[]; BEGIN RETURN 1; END $$;",
        "CREATE FUNCTION f(a INT[]) RETURNS INT AS $$ BEGIN RETURN 1; END $$;",
        "CREATE FUNCTION f() RETURNS INT AS $$ BEGIN RETURN (ARRAY[1])[1]; END $$;",
        "CREATE FUNCTION f() RETURNS BOOLEAN AS $$ BEGIN RETURN 1 = ANY('{1}'::int[]); END $$;",
        "CREATE FUNCTION f() RETURNS INT AS $$ DECLARE x INT; BEGIN FOREACH x IN ARRAY y LOOP END LOOP; RETURN 1; END $$;",
        "CREATE TABLE t (a INT[]);",
        "CREATE TABLE t (a INT); CREATE VIEW v AS SELECT * FROM unnest(ARRAY[1]);",
        "CREATE FUNCTION f() RETURNS INT AS $$ BEGIN RETURN cardinality(NULL); END $$;",
    ];
    for src in arrays {
        let mut kv = MemKv::new();
        let err =
            Contract::deploy_version(EngineVersion::V1, src, "o", b"v1/", &mut kv, GAS, false)
                .map(|_| ())
                .unwrap_err();
        assert!(kv.is_empty(), "{src}");
        let _ = err;
    }
    // FOREACH keeps version 1's parse error
    let mut kv = MemKv::new();
    let err = Contract::deploy_version(
        EngineVersion::V1,
        arrays[4],
        "o",
        b"v1/",
        &mut kv,
        GAS,
        false,
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        err.to_string().contains("AergoSQL has no array types"),
        "{err}"
    );

    // a version 1 deploy stores exactly what it stored before versions existed; load and
    // upgrade keep version 1
    let base = "CREATE TABLE t (a INT PRIMARY KEY); CREATE FUNCTION one() RETURNS INT AS $$ BEGIN RETURN 1; END $$;";
    let mut kv1 = MemKv::new();
    let (c1, _) =
        Contract::deploy_version(EngineVersion::V1, base, "o", b"v1/", &mut kv1, GAS, false)
            .unwrap();
    assert_eq!(c1.version(), EngineVersion::V1);
    assert_eq!(kv1.get(b"v1/\x00engine").unwrap(), None);
    let mut c1 = Contract::load(b"v1/", &kv1).unwrap();
    assert_eq!(c1.version(), EngineVersion::V1);
    let up = "CREATE FUNCTION two() RETURNS INT AS $$ DECLARE a INT[]; BEGIN RETURN 2; END $$;";
    assert!(c1.upgrade(up, "o", &mut kv1, GAS).is_err());
    assert!(c1.query("SELECT ARRAY[1]", &kv1, GAS).is_err());

    // the latest version records itself and accepts arrays, after a reload too
    let mut kv2 = MemKv::new();
    let (c2, _) = Contract::deploy(base, "o", b"v2/", &mut kv2, GAS).unwrap();
    assert_eq!(c2.version(), EngineVersion::LATEST);
    assert_eq!(kv2.get(b"v2/\x00engine").unwrap(), Some(vec![2]));
    let mut c2 = Contract::load(b"v2/", &kv2).unwrap();
    assert_eq!(c2.version(), EngineVersion::V2);
    c2.upgrade(up, "o", &mut kv2, GAS).unwrap();
    assert_eq!(q(&c2, &kv2, "SELECT ARRAY[1, 2]"), vec!["{1,2}"]);

    // an engine version this node does not know is a clear load error
    kv2.put(b"v2/\x00engine", &[9]).unwrap();
    let err = Contract::load(b"v2/", &kv2).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("engine version 9"), "{err}");
}
