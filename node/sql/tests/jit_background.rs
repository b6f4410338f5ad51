//! Background JIT compilation: a contract deployed or loaded with `*_background` answers at
//! once on the interpreter, with the same results, gas and writes as the compiled code, and
//! runs the compiled code once the worker has finished.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{CallOutcome, Contract, Engine, MemKv, MockChain, Value};
use std::time::{Duration, Instant};

const GAS: u64 = 10_000_000;

const SCRIPT: &str = "
CREATE TABLE acc (id BIGINT PRIMARY KEY, bal NUMERIC(20,2) NOT NULL);
INSERT INTO acc VALUES (1, 100.00), (2, 5.50);
CREATE FUNCTION spin(n BIGINT) RETURNS BIGINT AS $$
DECLARE i BIGINT := 0; s BIGINT := 0;
BEGIN
  WHILE i < n LOOP
    s := s + i * 3 % 7;
    i := i + 1;
  END LOOP;
  RETURN s;
END $$;
CREATE FUNCTION move(a BIGINT, b BIGINT, x NUMERIC) RETURNS NUMERIC AS $$
DECLARE have NUMERIC;
BEGIN
  SELECT bal INTO have FROM acc WHERE id = a;
  IF have < x THEN RAISE EXCEPTION 'not enough'; END IF;
  UPDATE acc SET bal = bal - x WHERE id = a;
  UPDATE acc SET bal = bal + x WHERE id = b;
  SELECT bal INTO have FROM acc WHERE id = b;
  RETURN have;
END $$;
";

fn run(c: &Contract, engine: Option<Engine>, f: &str, args: &[Value], kv: &mut MemKv) -> String {
    let mut ctx = MockChain::default();
    let r: Result<CallOutcome, _> = match engine {
        Some(e) => c.call_with(e, f, args, &mut ctx, kv, GAS),
        None => c.call(f, args, &mut ctx, kv, GAS),
    };
    format!("{r:?} {:?}", kv.entries())
}

fn wait_ready(c: &Contract) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.jit_ready() {
        assert!(
            Instant::now() < deadline,
            "the JIT worker did not finish in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_call_right_after_a_background_deploy_matches_the_compiled_code() {
    let mut kv = MemKv::new();
    let (c, deploy_gas) =
        Contract::deploy_background(SCRIPT, "owner", b"k/", &mut kv, GAS).unwrap();
    let (_, sync_gas) = Contract::deploy(SCRIPT, "owner", b"k/", &mut MemKv::new(), GAS).unwrap();
    assert_eq!(deploy_gas, sync_gas);
    let calls: Vec<(&str, Vec<Value>)> = vec![
        ("spin", vec![Value::Int(5_000)]),
        (
            "move",
            vec![Value::Int(1), Value::Int(2), Value::Text("10.25".into())],
        ),
        (
            "move",
            vec![Value::Int(2), Value::Int(1), Value::Text("1000".into())],
        ),
    ];
    // Whatever the worker's progress: the default engine answers like the interpreter.
    let before_ready: Vec<String> = calls
        .iter()
        .map(|(f, a)| run(&c, None, f, a, &mut kv.clone()))
        .collect();
    let interp: Vec<String> = calls
        .iter()
        .map(|(f, a)| run(&c, Some(Engine::Interpreter), f, a, &mut kv.clone()))
        .collect();
    assert_eq!(before_ready, interp);
    wait_ready(&c);
    assert!(c.jit_functions().contains(&"spin".to_string()));
    assert!(aergo_sql::jit_slot::compiled_in_background() >= 1);
    let jit_calls = c.jit_calls();
    let after_ready: Vec<String> = calls
        .iter()
        .map(|(f, a)| run(&c, None, f, a, &mut kv.clone()))
        .collect();
    assert_eq!(
        after_ready, interp,
        "the compiled code gives the same results, gas, writes"
    );
    assert!(
        c.jit_calls() > jit_calls,
        "once ready, calls run the compiled code"
    );
    // Clones made before readiness share the compiled code.
    let clone = c.clone();
    assert!(clone.jit_ready());
}

#[test]
fn background_load_and_upgrade_compile_their_own_version() {
    let mut kv = MemKv::new();
    Contract::deploy(SCRIPT, "owner", b"k/", &mut kv, GAS).unwrap();
    let mut c = Contract::load_background(b"k/", &kv).unwrap();
    let interp = run(
        &c,
        Some(Engine::Interpreter),
        "spin",
        &[Value::Int(100)],
        &mut kv.clone(),
    );
    assert_eq!(
        run(&c, None, "spin", &[Value::Int(100)], &mut kv.clone()),
        interp
    );
    wait_ready(&c);
    let old = c.clone();
    c.upgrade_background(
        "CREATE OR REPLACE FUNCTION spin(n BIGINT) RETURNS BIGINT AS $$ BEGIN RETURN n + 1; END $$;",
        "owner",
        &mut kv,
        GAS,
    )
    .unwrap();
    // The old version's code is not the new one's.
    assert!(old.jit_ready());
    let mut ctx = MockChain::default();
    let r = c
        .call("spin", &[Value::Int(41)], &mut ctx, &mut kv.clone(), GAS)
        .unwrap();
    assert_eq!(r.result, Value::Int(42));
    wait_ready(&c);
    let n = c.jit_calls();
    let r = c
        .call("spin", &[Value::Int(41)], &mut ctx, &mut kv.clone(), GAS)
        .unwrap();
    assert_eq!(r.result, Value::Int(42));
    assert_eq!(c.jit_calls(), n + 1);
    assert!(c.queue_jit(), "nothing left to queue once compiled");
}
