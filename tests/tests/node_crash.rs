//! The node's crash policy, on a real dev node: a panic in the producer thread ends the
//! process (so its supervisor restarts it) instead of leaving a node that answers `/health`
//! and produces nothing; a stalled producer turns `/health` into a 503 naming it (init
//! restarts a node whose health fails 3 times in a row); and faults can be injected only when
//! the node was started with `--allow-fault-injection`.

use std::time::Duration;

use aergo_e2e::http::raw;
use aergo_e2e::{free_port, poll, start_dev_node};
use anyhow::{ensure, Result};
use serde_json::{json, Value};

fn inject(url: &str, fault: &str) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "admin_inject_fault",
                      "params": {"fault": fault}})
    .to_string();
    let (code, text) = raw("POST", url, &body)?;
    ensure!(code == 200, "HTTP {code}: {text}");
    Ok(serde_json::from_str(&text)?)
}

fn health(url: &str) -> Result<(u16, String)> {
    Ok(raw("GET", &format!("{url}/health"), "")?)
}

#[test]
fn faults_are_refused_without_the_flag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = start_dev_node(&dir.path().join("d"), free_port()?, &[])?;
    let v = inject(&node.url, "producer_panic")?;
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    ensure!(msg.contains("--allow-fault-injection"), "{v}");
    ensure!(health(&node.url)? == (200, "ok".into()));
    Ok(())
}

#[test]
fn producer_panic_ends_the_process() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("d");
    let mut node = start_dev_node(&data, free_port()?, &["--allow-fault-injection"])?;
    ensure!(health(&node.url)? == (200, "ok".into()));
    let v = inject(&node.url, "producer_panic")?;
    ensure!(v["result"] == "producer_panic", "{v}");
    let st = node.proc.wait_timeout(Duration::from_secs(20))?;
    ensure!(
        !st.success(),
        "the node exited cleanly after a producer panic: {st:?}"
    );
    let log = std::fs::read_to_string(data.with_extension("log"))?;
    ensure!(
        log.contains("vital task producer died") && log.contains("injected producer panic"),
        "{log}"
    );
    Ok(())
}

#[test]
fn stalled_producer_fails_health() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = start_dev_node(
        &dir.path().join("d"),
        free_port()?,
        &["--allow-fault-injection", "--health-late-ms", "2000"],
    )?;
    ensure!(health(&node.url)? == (200, "ok".into()));
    let v = inject(&node.url, "producer_stall")?;
    ensure!(v["result"] == "producer_stall", "{v}");
    let (code, body) = poll("/health to fail", Duration::from_secs(20), || {
        let h = health(&node.url)?;
        Ok((h.0 != 200).then_some(h))
    })?;
    ensure!(code == 503, "{code} {body}");
    let v: Value = serde_json::from_str(&body)?;
    ensure!(v["late"][0]["task"] == "producer", "{v}");
    ensure!(v["late"][0]["silent_ms"].as_u64() > Some(2000), "{v}");
    Ok(())
}
