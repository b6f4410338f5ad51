//! The Repositories source: every `interval`, the root chain's `chain_info` (its row),
//! `repo_list`, and `dd_info` of each hosted repository (its directory's height and member
//! count). An error about one repository goes into its row; only a failing `repo_list` fails
//! the whole list (the screen keeps the last one and shows the outage). A private
//! repository's directory answers only the operator's socket (`--rpc unix:DATA_DIR/rpc.sock`;
//! the appliance's console) or a signed read; over TCP its refusal is not an error: the row
//! shows no directory figures.

use std::time::Duration;

use aergo_rpc::{RepoJson, RpcClient};
use tokio::sync::mpsc;

use super::Update;
use crate::model::{RepoRow, ROOT};

/// The rows `repo_list` describes, before `dd_info` (in the node's order).
pub fn rows_from(list: Vec<RepoJson>) -> Vec<RepoRow> {
    list.into_iter()
        .filter(|r| r.name != ROOT)
        .map(|r| RepoRow {
            name: r.name,
            engine: r.engine,
            visibility: r.visibility,
            hosted: r.hosted,
            height: r.height,
            finalized_height: r.finalized_height,
            ..Default::default()
        })
        .collect()
}

async fn timed<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, aergo_rpc::RpcError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(super::rpc::error_text),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}

/// One reading of the list: the root's row first, then every registered repository.
pub async fn fetch(client: &RpcClient, timeout: Duration) -> Result<Vec<RepoRow>, String> {
    let list = timed(timeout, client.repo_list()).await?;
    let mut root = RepoRow {
        name: ROOT.into(),
        visibility: "public".into(),
        hosted: true,
        ..Default::default()
    };
    match timed(timeout, client.chain_info()).await {
        Ok(c) => {
            root.engine = c.consensus;
            root.height = Some(c.height);
            root.finalized_height = Some(c.finalized_height);
        }
        Err(e) => root.error = Some(e),
    }
    let mut rows = vec![root];
    for mut row in rows_from(list) {
        if row.hosted && (!row.private() || client.url().starts_with("unix:")) {
            match timed(timeout, client.dd_info(&row.name)).await {
                Ok(v) => row.apply_dd_info(&v),
                Err(e) => row.error = Some(format!("dd_info: {e}")),
            }
        }
        rows.push(row);
    }
    Ok(rows)
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
        Update::Repos,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, visibility: &str, hosted: bool) -> RepoJson {
        serde_json::from_value(serde_json::json!({
            "name": name, "id": "11".repeat(32), "visibility": visibility, "engine": "solo",
            "admins": [], "producers": [], "creator": "A", "created_height": 3,
            "created_tx": "22".repeat(32), "hosted": hosted,
            "height": if hosted { Some(7) } else { None }, "finalized_height": 7
        }))
        .unwrap()
    }

    #[test]
    fn rows_keep_wire_fields_and_dd_info_is_lenient() {
        let rows = rows_from(vec![
            repo("team-a", "public", true),
            repo("team-b", "private", false),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].height, Some(7));
        assert!(rows[1].private() && !rows[1].hosted && rows[1].height.is_none());
        let mut r = rows[0].clone();
        r.apply_dd_info(&serde_json::json!({"height": 4, "members": [{}, {}, {}]}));
        assert_eq!((r.dd_height, r.members), (Some(4), Some(3)));
        r.apply_dd_info(&serde_json::json!({"height": "x", "members": 5}));
        assert_eq!((r.dd_height, r.members), (None, None));
    }
}
