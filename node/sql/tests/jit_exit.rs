//! A process that exits while the background JIT worker is compiling exits cleanly: exit
//! runs LLVM's static destructors, and a compile still running then used to crash the
//! exiting process (SIGSEGV or SIGABRT after everything had finished). Each run is a child
//! process (this test binary again) that queues compiles and exits during one: half the
//! runs during the worker's first compile (LLVM then creates statics whose destructors
//! could run before the exit hook), half during a later one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aergo_sql::{Contract, MemKv};
use std::process::Command;

const CHILD: &str = "AERGO_SQL_JIT_EXIT_CHILD";
const FIRST: &str = "AERGO_SQL_JIT_EXIT_FIRST";
const FIG6: &str = include_str!("fixtures/figure6.sql");
/// A merge resolver's shape: text cast to integers and back.
const CASTS: &str =
    "CREATE FUNCTION resolve_t(col TEXT, base TEXT, ours TEXT, theirs TEXT) RETURNS TEXT AS $$
BEGIN
  RETURN CAST(CAST(ours AS BIGINT) + CAST(theirs AS BIGINT) - CAST(base AS BIGINT) AS TEXT);
END $$;";

#[test]
fn exiting_while_the_jit_worker_compiles_is_clean() {
    if std::env::var_os(CHILD).is_some() {
        // Several contracts queued; once the first is compiled the next compile is under
        // way, and the process exits in the middle of it.
        let mut kv = MemKv::new();
        for i in 0..8u8 {
            let src = if i % 2 == 0 { FIG6 } else { CASTS };
            Contract::deploy_background(src, "owner", &[b'c', i], &mut kv, 10_000_000).unwrap();
        }
        // Half the runs exit during the worker's first compile, half during a later one.
        let first = std::env::var_os(FIRST).is_some();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while if first {
            aergo_sql::jit_slot::started_in_background() == 0
        } else {
            aergo_sql::jit_slot::compiled_in_background() == 0
        } {
            assert!(std::time::Instant::now() < deadline, "nothing compiled");
            std::thread::yield_now();
        }
        std::process::exit(0);
    }
    let exe = std::env::current_exe().unwrap();
    for run in 0..12 {
        let mut cmd = Command::new(&exe);
        if run % 2 == 0 {
            cmd.env(FIRST, "1");
        }
        let out = cmd
            .args([
                "--exact",
                "exiting_while_the_jit_worker_compiles_is_clean",
                "--test-threads",
                "1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: the exiting process ended with {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
