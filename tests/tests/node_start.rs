//! How `aergo-node` refuses to start: on an occupied port it fails before it writes anything
//! (no node.key, no database), and a second node on a data folder in use names the first
//! instead of surfacing a raw RocksDB lock error.

use std::process::{Command, Stdio};
use std::time::Duration;

use aergo_e2e::{bin, free_port, start_dev_node, KillOnDrop};
use anyhow::Result;

/// Runs `aergo-node --dev` to its exit; returns (success, stderr).
fn run_node(data: &std::path::Path, rpc: &str, extra: &[&str]) -> Result<(bool, String)> {
    let mut p = KillOnDrop::spawn(
        Command::new(bin("aergo-node")?)
            .args(["--dev", "--data-dir"])
            .arg(data)
            .args(["--rpc-addr", rpc])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let st = p.wait_timeout(Duration::from_secs(30))?;
    let mut err = String::new();
    if let Some(mut e) = p.0.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut err)?;
    }
    Ok((st.success(), err))
}

#[test]
fn occupied_rpc_port_fails_before_anything_is_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let (ok, err) = run_node(&data, &addr, &[])?;
    assert!(!ok, "the node started on a taken port: {err}");
    assert!(
        err.contains("cannot listen for JSON-RPC") && err.contains(&addr),
        "{err}"
    );
    assert!(!data.exists(), "the data folder was created: {err}");
    assert!(!data.join("node.key").exists());
    Ok(())
}

#[test]
fn second_node_on_a_data_folder_names_the_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let first = start_dev_node(&data, free_port()?, &[])?;
    let key_before = std::fs::read(data.join("node.key"))?;
    let (ok, err) = run_node(&data, &format!("127.0.0.1:{}", free_port()?), &[])?;
    assert!(!ok, "a second node opened a data folder in use: {err}");
    assert!(
        err.contains("another aergo-node is running on the data folder"),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", first.proc.0.id())),
        "the refusal does not name the first node's pid: {err}"
    );
    assert!(!err.contains("LOCK"), "raw RocksDB error: {err}");
    assert_eq!(std::fs::read(data.join("node.key"))?, key_before);
    // The first node is unharmed.
    assert!(aergo_e2e::http::get_ok(&format!("{}/health", first.url)));
    Ok(())
}
