//! Reading a row pays for its size: 10 gas a row plus 5 per whole KiB of its stored bytes,
//! by scan, index and primary-key lookup alike, on both engines — so a table of large rows
//! cannot be read for the price of small ones.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{Contract, Engine, MemKv, MockChain, Value};

const GAS: u64 = 10_000_000;

const SCRIPT: &str = "
CREATE TABLE t (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
CREATE FUNCTION put(id BIGINT, kib BIGINT) RETURNS BIGINT AS $$
DECLARE s TEXT := ''; k BIGINT := 0;
BEGIN
  WHILE k < kib * 16 LOOP
    s := s || '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
    k := k + 1;
  END LOOP;
  INSERT INTO t VALUES (id, s);
  RETURN length(s);
END $$;
CREATE FUNCTION get(k BIGINT) RETURNS BIGINT AS $$
DECLARE b TEXT;
BEGIN
  SELECT body INTO b FROM t WHERE id = k;
  RETURN length(b);
END $$;
";

fn gas_of(c: &Contract, kv: &MemKv, engine: Engine, f: &str, args: &[Value]) -> u64 {
    let mut kv = kv.clone();
    c.call_with(engine, f, args, &mut MockChain::default(), &mut kv, GAS)
        .unwrap()
        .gas_used
}

#[test]
fn a_row_read_costs_five_gas_per_whole_kib() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(SCRIPT, "owner", b"k/", &mut kv, GAS).unwrap();
    let mut ctx = MockChain::default();
    // Row 1: no text (a few bytes); row 2: 8 KiB of text (8 whole KiB stored, plus a header).
    c.call(
        "put",
        &[Value::Int(1), Value::Int(0)],
        &mut ctx,
        &mut kv,
        GAS,
    )
    .unwrap();
    c.call(
        "put",
        &[Value::Int(2), Value::Int(8)],
        &mut ctx,
        &mut kv,
        GAS,
    )
    .unwrap();
    for engine in [Engine::Interpreter, Engine::Jit] {
        let small = gas_of(&c, &kv, engine, "get", &[Value::Int(1)]);
        let big = gas_of(&c, &kv, engine, "get", &[Value::Int(2)]);
        assert_eq!(big - small, 8 * 5, "{engine:?}: pk lookup of an 8 KiB row");
    }
    let q = |sql: &str| c.query(sql, &kv, GAS).unwrap().gas_used;
    // A scan reads both rows: 2 × 10 + 8 × 5 on top of the statement.
    assert_eq!(
        q("SELECT count(*) FROM t") - q("SELECT count(*) FROM t WHERE id = 1"),
        10 + 8 * 5
    );
}

/// A store that counts the pairs its scans hand out.
struct Counting {
    inner: MemKv,
    pulled: std::cell::Cell<usize>,
}

impl aergo_sql::Kv for Counting {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, aergo_sql::KvError> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), aergo_sql::KvError> {
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), aergo_sql::KvError> {
        self.inner.delete(key)
    }
    fn scan<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = aergo_sql::kv::KvItem> + 'a> {
        Box::new(self.inner.scan(start, end).inspect(|_| {
            self.pulled.set(self.pulled.get() + 1);
        }))
    }
}

#[test]
fn a_scan_reads_no_more_rows_than_its_gas_pays_for() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(SCRIPT, "owner", b"k/", &mut kv, GAS).unwrap();
    let mut ctx = MockChain::default();
    for id in 0..2_000 {
        c.call(
            "put",
            &[Value::Int(id), Value::Int(0)],
            &mut ctx,
            &mut kv,
            GAS,
        )
        .unwrap();
    }
    let counting = Counting {
        inner: kv,
        pulled: std::cell::Cell::new(0),
    };
    let full = c.query("SELECT count(*) FROM t", &counting, GAS).unwrap();
    assert_eq!(full.rows[0][0], Value::Int(2_000));
    assert_eq!(counting.pulled.get(), 2_000);
    counting.pulled.set(0);
    // 1,000 gas pays for fewer than 100 row reads: the scan stops there.
    let err = c
        .query("SELECT count(*) FROM t", &counting, 1_000)
        .unwrap_err();
    assert!(err.to_string().contains("out of gas"), "{err}");
    assert!(
        counting.pulled.get() <= 101,
        "{} rows read",
        counting.pulled.get()
    );
}
