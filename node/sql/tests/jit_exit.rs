//! A process that exits while the background JIT worker is compiling exits cleanly: exit
//! runs LLVM's static destructors, and a compile still running then used to crash the
//! exiting process (SIGSEGV or SIGABRT after everything had finished). Each run is a child
//! process (this test binary again) that queues a compile and exits at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aergo_sql::{Contract, MemKv};
use std::process::Command;

const CHILD: &str = "AERGO_SQL_JIT_EXIT_CHILD";
const FIG6: &str = include_str!("fixtures/figure6.sql");

#[test]
fn exiting_while_the_jit_worker_compiles_is_clean() {
    if std::env::var_os(CHILD).is_some() {
        // Several contracts queued; once the first is compiled the next compile is under
        // way, and the process exits in the middle of it.
        let mut kv = MemKv::new();
        for i in 0..8u8 {
            Contract::deploy_background(FIG6, "owner", &[b'c', i], &mut kv, 10_000_000).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while aergo_sql::jit_slot::compiled_in_background() == 0 {
            assert!(std::time::Instant::now() < deadline, "nothing compiled");
            std::thread::yield_now();
        }
        std::process::exit(0);
    }
    let exe = std::env::current_exe().unwrap();
    for run in 0..12 {
        let out = Command::new(&exe)
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
