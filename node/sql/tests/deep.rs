//! Very deep or very long inputs are rejected or handled, never crash.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic

use aergo_sql::{Contract, MemKv};

#[test]
fn long_operator_chains_do_not_overflow_the_stack() {
    let mut kv = MemKv::new();
    let (c, _) = Contract::deploy(
        "CREATE TABLE t (a INT PRIMARY KEY);",
        "o",
        b"d/",
        &mut kv,
        1_000_000,
    )
    .unwrap();
    // short chains work; long ones are rejected with an error
    for (n, ok) in [(150usize, true), (1_000, false), (100_000, false)] {
        let expr = vec!["1"; n].join(" + ");
        let r = c.query(&format!("SELECT {expr}"), &kv, 100_000_000);
        match r {
            Ok(q) => {
                assert!(ok, "{n} terms accepted");
                assert_eq!(q.rows[0][0].to_string(), n.to_string());
            }
            Err(e) => assert!(!ok && e.pos().is_some(), "{n}: {e}"),
        }
        let src = format!("CREATE FUNCTION f() RETURNS BIGINT AS $$ BEGIN RETURN {expr}; END $$;");
        let mut kv2 = MemKv::new();
        assert_eq!(
            Contract::deploy(&src, "o", b"e/", &mut kv2, 1_000_000).is_ok(),
            ok,
            "{n}"
        );
    }
    let nested = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(c.query(&nested, &kv, 1_000_000).is_err());
    let nested = format!("SELECT {}1", "- ".repeat(5_000));
    assert!(c.query(&nested, &kv, 1_000_000).is_err());
}
