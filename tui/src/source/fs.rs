//! AergoFS source: polls `GET <fs>/status` and parses whatever JSON comes back leniently
//! ([`StorageView::from_json`]).

use std::time::Duration;

use tokio::sync::mpsc;

use super::{SourceError, Update};
use crate::model::StorageView;

/// Fetches and parses one status document.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<StorageView, SourceError> {
    let url = format!("{}/status", url.trim_end_matches('/'));
    let resp = client.get(&url).send().await.map_err(SourceError::new)?;
    if !resp.status().is_success() {
        return Err(SourceError(format!("{url}: HTTP {}", resp.status())));
    }
    let v: serde_json::Value = resp.json().await.map_err(SourceError::new)?;
    let mut view = StorageView::from_json(&v);
    fill_disk_locally(&mut view, &v);
    Ok(view)
}

/// AergoFS reports its data disk's size (`disk_total_bytes`, `disk_free_bytes`); when a
/// server does not (an older version, or its `statvfs` failed) and its folder is on this
/// machine (the appliance, or a dev host), measure it here with `statvfs`.
pub fn fill_disk_locally(view: &mut StorageView, status: &serde_json::Value) {
    if view.disk_total.is_some() {
        return;
    }
    let Some(dir) = status.get("dir").and_then(|d| d.as_str()) else {
        return;
    };
    if let Ok((total, avail, _free)) = aergo_os::sample::statvfs(std::path::Path::new(dir)) {
        view.disk_total = Some(total);
        view.disk_free = Some(avail);
    }
}

/// Polls AergoFS until the channel closes.
pub async fn poll(url: String, sink: mpsc::Sender<Update>, interval: Duration, max: Duration) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = sink
                .send(Update::Storage(Err(format!("http client: {e}"))))
                .await;
            return;
        }
    };
    super::poll_loop(
        &sink,
        interval,
        max,
        || async { fetch(&client, &url).await.map_err(|e| e.0) },
        Update::Storage,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_is_measured_locally_when_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let status = serde_json::json!({"dir": dir.path().to_str().unwrap(), "volumes": []});
        let mut v = StorageView::from_json(&status);
        assert!(v.disk_total.is_none());
        fill_disk_locally(&mut v, &status);
        assert!(v.disk_total.unwrap() > 0);
        assert!(v.free_pct().is_some());
        let gone = serde_json::json!({"dir": "/nonexistent/aergofs"});
        let mut v = StorageView::from_json(&gone);
        fill_disk_locally(&mut v, &gone);
        assert!(v.disk_total.is_none());
    }
}
