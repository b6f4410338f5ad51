//! The chain in the log, on DPoS: a WARN line per missed slot (naming the BP that owned it)
//! and per election change. It follows the node's new-blocks channel (the one WebSocket
//! subscribers get), so it adds nothing to the producer or import paths. (The INFO line per
//! produced or imported block comes from `Node::on_committed`.)

use crate::node::Node;
use aergo_types::Address;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The addresses of a round's active BPs, for comparing elections.
fn active(node: &Node) -> Option<(u64, BTreeSet<String>)> {
    let st = node.chain.dpos_status().ok().flatten()?;
    Some((
        st.schedule.round,
        st.schedule
            .active
            .iter()
            .map(|k| Address::from_public_key(k).encode())
            .collect(),
    ))
}

/// Logs every block from the node's new-blocks channel until the node stops.
pub fn spawn(node: Arc<Node>) {
    let mut rx = node.blocks_tx.subscribe();
    tokio::spawn(async move {
        let mut last_slot: Option<u64> = None;
        let mut elected = active(&node).map(|(_, a)| a);
        loop {
            let b = match rx.recv().await {
                Ok(b) => b,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "block log lagged behind the chain");
                    last_slot = None;
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Some(st) = node.chain.dpos_status().ok().flatten() else {
                continue;
            };
            let p = &st.params;
            let Some(slot) = p.slot_of(b.timestamp_ms) else {
                continue;
            };
            if let Some(prev) = last_slot.filter(|prev| *prev < slot) {
                for s in prev + 1..slot {
                    let owner = (p.round_of(s) == st.schedule.round)
                        .then(|| {
                            st.schedule
                                .producer_at(s - p.round_start(st.schedule.round))
                        })
                        .flatten()
                        .map(|k| Address::from_public_key(&k).encode());
                    match owner {
                        Some(bp) => tracing::warn!(
                            slot = s,
                            %bp,
                            "missed slot: its BP produced no block (is a node running with that BP's key?)"
                        ),
                        None => tracing::warn!(slot = s, "missed slot: no block"),
                    }
                }
            }
            last_slot = Some(slot);
            if let Some((round, now)) = active(&node) {
                if elected.as_ref().is_some_and(|e| *e != now) {
                    let list: Vec<&str> = now.iter().map(String::as_str).collect();
                    tracing::warn!(
                        round,
                        bps = list.len(),
                        active = %list.join(","),
                        "election changed the active BPs"
                    );
                }
                elected = Some(now);
            }
        }
    });
}
