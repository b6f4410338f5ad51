//! The per-statement memory budget: queries that hold too many rows (scans, joins,
//! groups, DISTINCT, sort buffers) fail with a clear error, the same on both engines;
//! many small statements in a loop do not add up; the budget is given back after each.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{Contract, Engine, MemKv, MockChain, SqlError};

const GAS: u64 = 50_000_000;

const SCRIPT: &str = "
CREATE TABLE t (id BIGINT PRIMARY KEY, grp BIGINT NOT NULL, name TEXT NOT NULL);
CREATE FUNCTION fill(n BIGINT) RETURNS BIGINT AS $$
DECLARE i BIGINT := 0;
BEGIN
  WHILE i < n LOOP
    INSERT INTO t VALUES (i, i % 50, 'name-' || i || '-0123456789012345678901234567890123456789');
    i := i + 1;
  END LOOP;
  RETURN n;
END $$;
CREATE FUNCTION total() RETURNS BIGINT AS $$
DECLARE c BIGINT := 0;
BEGIN
  SELECT count(*) INTO c FROM t a JOIN t b ON a.id = b.id;
  RETURN c;
END $$;
CREATE FUNCTION small_many(n BIGINT) RETURNS BIGINT AS $$
DECLARE i BIGINT := 0; c BIGINT := 0; s BIGINT := 0;
BEGIN
  WHILE i < n LOOP
    SELECT count(*) INTO c FROM t WHERE id = i;
    s := s + c;
    i := i + 1;
  END LOOP;
  RETURN s;
END $$;
";

const ROWS: i64 = 2_000;

fn setup() -> (Contract, MemKv) {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(SCRIPT, "owner", b"k/", &mut kv, GAS).unwrap();
    let mut ctx = MockChain::default();
    c.call(
        "fill",
        &[aergo_sql::Value::Int(ROWS)],
        &mut ctx,
        &mut kv,
        GAS,
    )
    .unwrap();
    (c, kv)
}

fn memory_error(r: Result<impl std::fmt::Debug, SqlError>, limit: usize) {
    match r {
        Err(e @ SqlError::Memory { .. }) => {
            assert_eq!(e, SqlError::Memory { limit });
            assert_eq!(
                e.to_string(),
                format!("query uses more than {limit} bytes of memory")
            );
        }
        other => panic!("expected the memory error, got {other:?}"),
    }
}

#[test]
fn queries_over_the_budget_fail_clearly_and_under_it_succeed() {
    let (c, kv) = setup();
    assert_eq!(c.memory_limit(), aergo_sql::gas::MEMORY_BUDGET);
    let heavy = [
        "SELECT count(*) FROM t",
        "SELECT grp, count(*) FROM t GROUP BY grp",
        "SELECT DISTINCT name FROM t",
        "SELECT name FROM t ORDER BY name DESC LIMIT 1",
        "SELECT count(*) FROM t a JOIN t b ON a.id = b.id",
        "SELECT count(DISTINCT name) FROM t",
    ];
    // The default budget runs them all.
    for sql in heavy {
        c.query(sql, &kv, GAS)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // ~2,000 rows of ~200 estimated bytes each do not fit 64 KiB.
    let small = c.clone().with_memory_limit(64 * 1024);
    for sql in heavy {
        memory_error(small.query(sql, &kv, GAS), 64 * 1024);
    }
    // Primary-key lookups fit (a range still scans, and holds, the whole table).
    let r = small
        .query("SELECT name FROM t WHERE id = 7", &kv, GAS)
        .unwrap();
    assert_eq!(r.rows.len(), 1);
    let r = small
        .query("SELECT count(*) FROM t WHERE id = 20", &kv, GAS)
        .unwrap();
    assert_eq!(r.rows[0][0].to_string(), "1");
}

#[test]
fn both_engines_fail_the_same_way_and_small_statements_do_not_add_up() {
    let (c, kv) = setup();
    let small = c.clone().with_memory_limit(64 * 1024);
    for engine in [Engine::Interpreter, Engine::Jit] {
        let mut kv1 = kv.clone();
        let r = small.call_with(
            engine,
            "total",
            &[],
            &mut MockChain::default(),
            &mut kv1,
            GAS,
        );
        memory_error(r, 64 * 1024);
        // 500 one-row statements (~100 KB together, over the 64 KiB budget): the budget is per
        // statement, so they do not add up.
        let mut kv2 = kv.clone();
        let out = small
            .call_with(
                engine,
                "small_many",
                &[aergo_sql::Value::Int(500)],
                &mut MockChain::default(),
                &mut kv2,
                GAS,
            )
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        assert_eq!(out.result.to_string(), "500");
    }
    // With the default budget the join runs on both engines alike.
    let mut kv3 = kv.clone();
    let j = c
        .call_with(
            Engine::Jit,
            "total",
            &[],
            &mut MockChain::default(),
            &mut kv3,
            GAS,
        )
        .unwrap();
    let i = c
        .call_with(
            Engine::Interpreter,
            "total",
            &[],
            &mut MockChain::default(),
            &mut kv3,
            GAS,
        )
        .unwrap();
    assert_eq!(j.result.to_string(), ROWS.to_string());
    assert_eq!((j.gas_used, i.gas_used), (i.gas_used, j.gas_used));
}
