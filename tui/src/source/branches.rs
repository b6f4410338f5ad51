//! The Branches source: every `interval`, `branch_list` of the selected ledger's `main`, then
//! of each branch this node hosts (its own branches, named `a/b`), down to [`MAX_DEPTH`]
//! levels and [`MAX_ROWS`] rows. The answer is read leniently (a missing field is `None` or
//! empty); an error about one branch's own list goes into its row, and only a failing list of
//! `main` fails the whole screen (which keeps the last one and shows the outage).

use std::time::Duration;

use aergo_rpc::RpcClient;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Update;
use crate::model::BranchRow;

/// Levels of branches of branches read below `main`.
pub const MAX_DEPTH: usize = 4;
/// Rows at most (the list of a chain with more is cut).
pub const MAX_ROWS: usize = 256;

/// The state a `branch_list` entry is in, as the screen shows it.
fn state(e: &Value) -> &'static str {
    if e.get("deleted").is_some_and(|d| !d.is_null()) {
        "deleted"
    } else if e.get("produced_here").and_then(Value::as_bool) == Some(true) {
        "produced here"
    } else if e.get("hosted").and_then(Value::as_bool) == Some(true) {
        "hosted"
    } else {
        "not here"
    }
}

fn text(e: &Value, k: &str) -> String {
    e.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The rows one `branch_list` answer describes, for branches of `parent` (`None`: `main`)
/// at nesting `depth` (1 for `main`'s own); entries without a name are skipped.
pub fn rows_from(v: &Value, parent: Option<&str>, depth: usize) -> Vec<BranchRow> {
    v.get("branches")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|e| {
                    let name = e.get("name")?.as_str()?;
                    Some(BranchRow {
                        name: match parent {
                            Some(p) => format!("{p}/{name}"),
                            None => name.to_string(),
                        },
                        depth,
                        fork_height: e.get("fork_height").and_then(Value::as_u64),
                        tip_height: e.get("tip_height").and_then(Value::as_u64),
                        merged_up_to: e.get("merged_up_to").and_then(Value::as_u64),
                        producer: text(e, "producer"),
                        strategy: text(e, "strategy"),
                        state: state(e).into(),
                        error: None,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `main` row: the addressed chain's height from the same answer.
pub fn main_row(v: &Value) -> BranchRow {
    BranchRow {
        name: "main".into(),
        tip_height: v.get("height").and_then(Value::as_u64),
        state: "chain".into(),
        ..Default::default()
    }
}

/// `branch_list` of `branch` (`None`: `main`) of `client`'s ledger.
async fn list(
    client: &RpcClient,
    branch: Option<&str>,
    timeout: Duration,
) -> Result<Value, String> {
    let params = match branch {
        Some(b) => serde_json::json!({ "branch": b }),
        None => serde_json::json!({}),
    };
    match tokio::time::timeout(timeout, client.call::<Value>("branch_list", params)).await {
        Ok(r) => r.map_err(super::rpc::error_text),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// One reading of the tree: `main`, then each branch followed by its own branches (depth
/// first), for `client`'s ledger (a client addressing `main`).
pub async fn fetch(client: &RpcClient, timeout: Duration) -> Result<Vec<BranchRow>, String> {
    let root = list(client, None, timeout).await?;
    let mut out = vec![main_row(&root)];
    // Depth-first: a stack of rows still to place, in reverse order.
    let mut stack: Vec<BranchRow> = rows_from(&root, None, 1);
    stack.reverse();
    while let Some(mut row) = stack.pop() {
        if out.len() >= MAX_ROWS {
            break;
        }
        let children =
            if row.depth < MAX_DEPTH && matches!(row.state.as_str(), "hosted" | "produced here") {
                match list(client, Some(&row.name), timeout).await {
                    Ok(v) => rows_from(&v, Some(&row.name), row.depth + 1),
                    Err(e) => {
                        row.error = Some(e);
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
        out.push(row);
        stack.extend(children.into_iter().rev());
    }
    Ok(out)
}

/// Polls [`fetch`] until the channel closes, backing off to `max_backoff` while it fails.
pub async fn poll(
    client: RpcClient,
    sink: mpsc::Sender<Update>,
    interval: Duration,
    max_backoff: Duration,
) {
    super::poll_loop(
        &sink,
        interval,
        max_backoff,
        || fetch(&client, super::node::CALL_TIMEOUT),
        Update::Branches,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_every_state_and_skip_junk() {
        let v = serde_json::json!({"chain_id": "00", "height": 12, "branches": [
            {"name": "feat", "fork_height": 5, "tip_height": 9, "merged_up_to": 7,
             "producer": "AmP", "strategy": "auto", "deleted": null, "hosted": true,
             "produced_here": true},
            {"name": "far", "fork_height": 3, "hosted": false, "produced_here": false,
             "deleted": null},
            {"name": "old", "fork_height": 2, "hosted": true, "deleted": 8},
            {"fork_height": 1},
            "junk"
        ]});
        assert_eq!(main_row(&v).tip_height, Some(12));
        let rows = rows_from(&v, Some("x"), 2);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("x/feat", "produced here"),
                ("x/far", "not here"),
                ("x/old", "deleted")
            ]
        );
        assert_eq!(
            (
                rows[0].fork_height,
                rows[0].tip_height,
                rows[0].merged_up_to,
                rows[0].depth
            ),
            (Some(5), Some(9), Some(7), 2)
        );
        assert_eq!(rows[1].tip_height, None);
        assert!(rows[0].readable() && !rows[1].readable() && !rows[2].readable());
        assert!(rows_from(&serde_json::json!({"branches": 3}), None, 1).is_empty());
    }
}
