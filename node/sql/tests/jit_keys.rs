//! The interpreter and the JIT read the same keys.
//!
//! A block's DTT is computed from the keys each transaction read and the ranges it scanned
//! (the chain's `access::Recorder`, below the engine's `Kv`). A node whose contract is
//! compiled and a node still interpreting it (the background JIT worker is per node) must
//! therefore record the same access sets, or they compute different DTTs for one block and
//! split. This runs every call on two identical stores, one per engine, through a `Kv` that
//! records reads exactly as the chain does — point reads as a sorted set, a `scan_limit` that
//! filled its limit as `[start, successor of its last key)`, otherwise `[start, end)` — and
//! compares the reads, the ranges, the writes, the result and the gas.
#![cfg(feature = "jit")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::kv::{Kv, KvError, KvItem};
use aergo_sql::{Contract, Engine, MemKv, MockChain, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;

const FIG6: &str = include_str!("fixtures/figure6.sql");

/// Point lookups, an index, range scans with and without a limit, updates and deletes.
const ROWS: &str =
    "CREATE TABLE items (id BIGINT PRIMARY KEY, owner TEXT NOT NULL, v BIGINT NOT NULL);
CREATE INDEX items_owner ON items (owner);
CREATE FUNCTION put(i BIGINT, o TEXT, x BIGINT) RETURNS BIGINT AS $$
BEGIN
  INSERT INTO items VALUES (i, o, x);
  RETURN i;
END $$;
CREATE FUNCTION bump(i BIGINT, d BIGINT) RETURNS BIGINT AS $$
DECLARE cur BIGINT;
BEGIN
  SELECT v INTO cur FROM items WHERE id = i;
  IF NOT FOUND THEN RETURN -1; END IF;
  UPDATE items SET v = v + d WHERE id = i;
  RETURN cur + d;
END $$;
CREATE FUNCTION total(a BIGINT, b BIGINT) RETURNS BIGINT AS $$
DECLARE s BIGINT;
BEGIN
  SELECT count(*) INTO s FROM items WHERE id >= a AND id < b;
  RETURN s;
END $$;
CREATE FUNCTION first_of(o TEXT) RETURNS BIGINT AS $$
DECLARE r BIGINT;
BEGIN
  SELECT id INTO r FROM items WHERE owner = o ORDER BY id LIMIT 1;
  IF NOT FOUND THEN RETURN -1; END IF;
  RETURN r;
END $$;
CREATE FUNCTION drop_below(b BIGINT) RETURNS BIGINT AS $$
BEGIN
  DELETE FROM items WHERE id < b;
  RETURN b;
END $$;
CREATE FUNCTION spin(n BIGINT) RETURNS BIGINT AS $$
DECLARE i BIGINT := 0; s BIGINT := 0;
BEGIN
  WHILE i < n LOOP
    SELECT v INTO s FROM items WHERE id = i % 8;
    i := i + 1;
  END LOOP;
  RETURN s;
END $$;";

/// What a call read, as the chain records it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reads {
    points: BTreeSet<Vec<u8>>,
    ranges: BTreeSet<(Vec<u8>, Vec<u8>)>,
}

/// A store that records reads the way the chain's recorder does.
struct Logged {
    inner: MemKv,
    log: RefCell<Reads>,
}

fn successor(k: &[u8]) -> Vec<u8> {
    [k, &[0]].concat()
}

impl Kv for Logged {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.log.borrow_mut().points.insert(key.to_vec());
        self.inner.get(key)
    }
    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), KvError> {
        self.log.borrow_mut().points.insert(key.to_vec());
        self.inner.get_with(key, f)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.inner.put(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), KvError> {
        self.inner.delete(key)
    }
    fn scan<'a>(&'a self, start: &[u8], end: &[u8]) -> Box<dyn Iterator<Item = KvItem> + 'a> {
        if start < end {
            self.log
                .borrow_mut()
                .ranges
                .insert((start.to_vec(), end.to_vec()));
        }
        self.inner.scan(start, end)
    }
    fn scan_limit<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Box<dyn Iterator<Item = KvItem> + 'a> {
        let v: Vec<KvItem> = self.inner.scan_limit(start, end, limit).collect();
        let last = v
            .last()
            .and_then(|r| r.as_ref().ok())
            .map(|(k, _)| k.clone());
        let range = match last {
            Some(last) if v.len() >= limit => Some((start.to_vec(), successor(&last))),
            None if limit == 0 => None,
            _ => Some((start.to_vec(), end.to_vec())),
        };
        if let Some(r) = range.filter(|(a, b)| a < b) {
            self.log.borrow_mut().ranges.insert(r);
        }
        Box::new(v.into_iter())
    }
}

/// Runs `f(args)` on a copy of `kv` with each engine; returns (interpreter, JIT) outcomes
/// with what each read, and asserts both left the same state.
fn both(c: &Contract, kv: &MemKv, f: &str, args: &[Value], gas: u64) -> MemKv {
    let mut runs = Vec::new();
    for engine in [Engine::Interpreter, Engine::Jit] {
        let mut store = Logged {
            inner: kv.clone(),
            log: RefCell::default(),
        };
        let out = c.call_with(engine, f, args, &mut MockChain::default(), &mut store, gas);
        let reads = store.log.into_inner();
        runs.push((out, reads, store.inner));
    }
    let (jit, interp) = (runs.pop().unwrap(), runs.pop().unwrap());
    assert_eq!(interp.0, jit.0, "{f}{args:?}: outcome");
    assert_eq!(interp.1, jit.1, "{f}{args:?}: keys read");
    assert_eq!(interp.2.entries(), jit.2.entries(), "{f}{args:?}: state");
    assert!(
        !interp.1.points.is_empty() || !interp.1.ranges.is_empty(),
        "{f}{args:?} read nothing: the comparison would prove nothing"
    );
    interp.2
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn figure6_reads_the_same_keys_on_both_engines() {
    let mut kv = MemKv::new();
    let seed = "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50), ('carol', 7.00);";
    let (c, _) =
        Contract::deploy(&format!("{FIG6}\n{seed}"), "o", b"f/", &mut kv, 1_000_000).unwrap();
    assert_eq!(c.jit_functions(), vec!["transfer".to_string()]);
    for (from, to, amount) in [
        ("alice", "bob", "1.25"),    // OK
        ("bob", "alice", "500.00"),  // not enough balance
        ("nobody", "alice", "1.00"), // sender not found
        ("alice", "nobody", "1.00"), // receiver not found
        ("carol", "carol", "7.00"),  // to oneself
        ("alice", "bob", "-3.00"),   // negative
    ] {
        kv = both(
            &c,
            &kv,
            "transfer",
            &[text(from), text(to), text(amount)],
            1_000_000,
        );
    }
    // The JIT engine really ran compiled code.
    assert!(c.jit_calls() >= 6, "{}", c.jit_calls());
}

#[test]
fn row_functions_read_the_same_keys_on_both_engines() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(ROWS, "o", b"r/", &mut kv, 1_000_000).unwrap();
    // The comparison means something only for functions the JIT compiles.
    let compiled = c.jit_functions();
    assert!(
        compiled.len() >= 3,
        "too few functions compiled to compare: {compiled:?}"
    );
    for i in 0..12i64 {
        let owner = ["ann", "ben", "cy"][usize::try_from(i % 3).unwrap()];
        kv = both(
            &c,
            &kv,
            "put",
            &[Value::Int(i * 2), text(owner), Value::Int(i)],
            1_000_000,
        );
    }
    let calls: Vec<(&str, Vec<Value>)> = vec![
        ("bump", vec![Value::Int(4), Value::Int(10)]),
        ("bump", vec![Value::Int(5), Value::Int(10)]), // no such row
        ("total", vec![Value::Int(3), Value::Int(15)]),
        ("total", vec![Value::Int(100), Value::Int(200)]), // empty range
        ("first_of", vec![text("ben")]),
        ("first_of", vec![text("zed")]),
        ("spin", vec![Value::Int(20)]),
        ("drop_below", vec![Value::Int(6)]),
        ("total", vec![Value::Int(0), Value::Int(30)]),
        ("put", vec![Value::Int(2), text("ann"), Value::Int(1)]), // duplicate key: error
    ];
    for (f, args) in calls {
        kv = both(&c, &kv, f, &args, 1_000_000);
    }
    // Out of gas half way through a loop of reads: the same keys up to the same point.
    both(&c, &kv, "spin", &[Value::Int(1_000)], 20_000);
    eprintln!("compiled: {compiled:?}, JIT calls: {}", c.jit_calls());
    assert!(c.jit_calls() >= 10, "{}", c.jit_calls());
}
