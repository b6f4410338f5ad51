//! Init source: polls `status` over the control protocol, follows the selected service's
//! log, and carries out restarts. The control client is blocking, so each job runs on a
//! blocking thread; a newer log selection makes older followers stop at their next line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aergo_os::control::Client;
use tokio::sync::{mpsc, Notify};

use super::{Backoff, Update};
use crate::model::InitView;

/// Log lines fetched when a service's log is opened.
pub const BACKLOG: usize = 500;

/// Operator requests for init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitRequest {
    /// Restart a service.
    Restart(String),
    /// Show (and follow) a service's log.
    Logs(String),
}

/// Starts the init tasks on the current tokio runtime.
pub fn spawn(
    client: Client,
    sink: mpsc::Sender<Update>,
    mut requests: mpsc::Receiver<InitRequest>,
    interval: Duration,
    max: Duration,
) {
    let refresh = Arc::new(Notify::new());
    {
        let client = client.clone();
        let sink = sink.clone();
        let refresh = refresh.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(interval, max);
            loop {
                let c = client.clone();
                let r = tokio::task::spawn_blocking(move || c.status())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map(|s| InitView {
                        services: s.services,
                        system: s.system,
                    });
                let wait = if r.is_ok() {
                    backoff.ok()
                } else {
                    backoff.fail()
                };
                if sink.send(Update::Init(r)).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = refresh.notified() => {}
                }
            }
        });
    }
    let generation = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Some(r) = requests.recv().await {
            match r {
                InitRequest::Restart(name) => {
                    let c = client.clone();
                    let n = name.clone();
                    let r = tokio::task::spawn_blocking(move || c.restart(&n)).await;
                    let msg = match r {
                        Ok(Ok(m)) if m.is_empty() => format!("{name}: restart requested"),
                        Ok(Ok(m)) => format!("{name}: {m}"),
                        Ok(Err(e)) => format!("{name}: restart failed: {e}"),
                        Err(e) => format!("{name}: restart failed: {e}"),
                    };
                    if sink.send(Update::Flash(msg)).await.is_err() {
                        return;
                    }
                    refresh.notify_one();
                }
                InitRequest::Logs(name) => {
                    let mine = generation.fetch_add(1, Ordering::SeqCst) + 1;
                    follow(
                        client.clone(),
                        name,
                        sink.clone(),
                        generation.clone(),
                        mine,
                        max,
                    );
                }
            }
        }
    });
}

/// Follows one service's log on a blocking thread until a newer selection supersedes it or
/// the UI goes away; reconnects with backoff when init drops the stream.
fn follow(
    client: Client,
    name: String,
    sink: mpsc::Sender<Update>,
    generation: Arc<AtomicU64>,
    mine: u64,
    max: Duration,
) {
    tokio::task::spawn_blocking(move || {
        let current = || generation.load(Ordering::SeqCst) == mine;
        let mut backoff = Backoff::new(Duration::from_secs(1), max);
        while current() {
            if sink
                .blocking_send(Update::Logs(name.clone(), Ok(Vec::new())))
                .is_err()
            {
                return;
            }
            let r = client.follow(&name, BACKLOG, |line| {
                current() && sink.blocking_send(Update::LogLine(line.clone())).is_ok()
            });
            if !current() || sink.is_closed() {
                return;
            }
            let wait = match r {
                Ok(()) => backoff.ok(),
                Err(e) => {
                    if sink
                        .blocking_send(Update::Logs(name.clone(), Err(e.to_string())))
                        .is_err()
                    {
                        return;
                    }
                    backoff.fail()
                }
            };
            std::thread::sleep(wait);
        }
    });
}
