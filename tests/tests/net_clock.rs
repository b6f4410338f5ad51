//! Nodes whose clocks disagree by more than the 1 s drift a block's timestamp may have, on a
//! DPoS network of two real `aergo-node` processes made by `aergo testnet init` (500 ms
//! slots). Node 2 runs with its clock 3 s fast (the injected fault
//! `AERGO_FAULT_CLOCK_SKEW_MS=3000`), so every block it makes reaches node 1 before its slot
//! has started there. Node 1 drops those blocks as early (`consensus_info.early_blocks`)
//! without blaming node 2, and the two stay peers. Before, each such block cost its sender
//! an invalid block's score (−50 of the −100 ban threshold), and two appliances in QEMU
//! whose clocks had drifted apart banned each other for good and forked.

use aergo_e2e::poll;
use aergo_e2e::testnet::{rpc, start_node, start_node_env};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

/// Early blocks node 1 must have dropped: more than enough for a ban under the old rule.
const EARLY: u64 = 6;

#[test]
fn a_producer_with_a_fast_clock_stays_a_peer() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("tn");
    let urls = aergo_e2e::testnet::init_fast(&dir, 2)?;
    let _n1 = start_node(&dir, 0, &urls[0])?;
    let _n2 = start_node_env(&dir, 1, &urls[1], &[("AERGO_FAULT_CLOCK_SKEW_MS", "3000")])?;
    let log = std::fs::read_to_string(dir.join("node2.log"))?;
    ensure!(log.contains("INJECTED FAULT"), "node 2 warns: {log}");
    let info = |i: usize| rpc(&urls[i], "consensus_info", json!({}));
    let peers = |i: usize| -> Result<usize> {
        Ok(rpc(&urls[i], "peers", json!({}))?
            .as_array()
            .context("peers")?
            .len())
    };

    // Node 2's clock reads about 3 s ahead of node 1's.
    let (a, b) = (info(0)?, info(1)?);
    let skew = b["now_ms"].as_i64().context("now_ms")? - a["now_ms"].as_i64().context("now_ms")?;
    ensure!(
        (2_500..4_000).contains(&skew),
        "node 2's clock is {skew} ms ahead"
    );

    // Node 1 drops node 2's blocks as early, one after another...
    poll("node 1 drops early blocks", Duration::from_secs(60), || {
        Ok((info(0)?["early_blocks"].as_u64().unwrap_or(0) >= EARLY).then_some(()))
    })?;
    // ...and each node still has the other as a peer: nobody was banned.
    let (a, b): (Value, Value) = (info(0)?, info(1)?);
    ensure!(
        peers(0)? == 1 && peers(1)? == 1,
        "peers: node 1 {}, node 2 {} (node 1: {a}, node 2: {b})",
        peers(0)?,
        peers(1)?
    );
    eprintln!(
        "net_clock: node 1 dropped {} early blocks from node 2 (3 s fast) and kept it as a peer; rejected blocks: node 1 {}, node 2 {}",
        a["early_blocks"], a["rejected_blocks"], b["rejected_blocks"]
    );
    Ok(())
}
