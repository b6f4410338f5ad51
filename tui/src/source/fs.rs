//! AergoFS source: polls `GET <fs>/status` and parses whatever JSON comes back leniently
//! ([`StorageView::from_json`]).

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Backoff, SourceError, Update};
use crate::model::StorageView;

/// Fetches and parses one status document.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<StorageView, SourceError> {
    let url = format!("{}/status", url.trim_end_matches('/'));
    let resp = client.get(&url).send().await.map_err(SourceError::new)?;
    if !resp.status().is_success() {
        return Err(SourceError(format!("{url}: HTTP {}", resp.status())));
    }
    let v: serde_json::Value = resp.json().await.map_err(SourceError::new)?;
    Ok(StorageView::from_json(&v))
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
    let mut backoff = Backoff::new(interval, max);
    loop {
        let r = fetch(&client, &url).await.map_err(|e| e.0);
        let wait = if r.is_ok() {
            backoff.ok()
        } else {
            backoff.fail()
        };
        if sink.send(Update::Storage(r)).await.is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}
