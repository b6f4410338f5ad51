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
                        slots: s.slots,
                        last_upgrade: s.last_upgrade,
                        reboot_at: s.reboot_at,
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
    let sink2 = sink.clone();
    // A plain thread, not `spawn_blocking`: it may sit in a blocking read until the next log
    // line, and must not hold up runtime shutdown.
    let spawned = std::thread::Builder::new()
        .name("aergo-top-logs".into())
        .spawn(move || {
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
    if let Err(e) = spawned {
        let _ = sink2.try_send(Update::Flash(format!("cannot follow logs: {e}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aergo_os::control::{
        decode_request, encode, Endpoint, LogLine, Op, Reply, Response, ServiceInfo, ServiceState,
        StatusReport,
    };
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;

    fn line(service: &str, seq: u64) -> LogLine {
        LogLine {
            service: service.into(),
            seq,
            ts_ms: seq,
            stream: "stdout".into(),
            text: format!("line {seq}"),
        }
    }

    /// A fake init answering status, restart and followed logs over a Unix socket.
    fn fake_init(path: std::path::PathBuf) {
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut buf = String::new();
                    while r.read_line(&mut buf).unwrap_or(0) > 0 {
                        let req = decode_request(buf.trim()).unwrap();
                        buf.clear();
                        let mut replies = Vec::new();
                        match req.op {
                            Op::Status => replies.push(Reply::Status(StatusReport {
                                services: vec![ServiceInfo {
                                    name: "node".into(),
                                    state: ServiceState::Running,
                                    ..Default::default()
                                }],
                                slots: vec![aergo_os::slots::SlotInfo {
                                    name: "B".into(),
                                    version: "1.1.0".into(),
                                    state: aergo_os::slots::SlotState::Trying,
                                }],
                                last_upgrade: Some("installed 1.1.0 in slot B".into()),
                                ..Default::default()
                            })),
                            Op::Restart { service } => replies.push(Reply::Ack {
                                message: format!("restarted {service}"),
                            }),
                            Op::Logs { service, .. } => {
                                replies.push(Reply::Logs {
                                    lines: vec![line(&service, 1), line(&service, 2)],
                                });
                                replies.push(Reply::Line(line(&service, 3)));
                            }
                            _ => replies.push(Reply::Error {
                                message: "unsupported".into(),
                            }),
                        }
                        for reply in replies {
                            let resp = Response { v: 1, reply };
                            if conn.write_all(&encode(&resp).unwrap()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_restart_and_logs_over_the_control_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("init.sock");
        fake_init(sock.clone());
        let client = Client::new(Endpoint::Unix(sock), None);
        let (tx, mut rx) = mpsc::channel(64);
        let (req_tx, req_rx) = mpsc::channel(4);
        spawn(
            client,
            tx,
            req_rx,
            Duration::from_millis(20),
            Duration::from_millis(100),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        macro_rules! next {
            () => {
                tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .unwrap()
                    .unwrap()
            };
        }
        loop {
            if let Update::Init(Ok(v)) = next!() {
                assert_eq!(v.services[0].name, "node");
                assert_eq!(
                    (v.slots[0].name.as_str(), v.slots[0].version.as_str()),
                    ("B", "1.1.0")
                );
                assert_eq!(v.last_upgrade.as_deref(), Some("installed 1.1.0 in slot B"));
                break;
            }
        }
        req_tx
            .send(InitRequest::Restart("node".into()))
            .await
            .unwrap();
        loop {
            if let Update::Flash(m) = next!() {
                assert_eq!(m, "node: restarted node");
                break;
            }
        }
        req_tx.send(InitRequest::Logs("node".into())).await.unwrap();
        let mut seqs = Vec::new();
        while seqs.len() < 3 {
            match next!() {
                Update::LogLine(l) => {
                    assert_eq!(l.service, "node");
                    seqs.push(l.seq);
                }
                Update::Logs(s, r) => assert_eq!((s.as_str(), r), ("node", Ok(Vec::new()))),
                _ => {}
            }
        }
        assert_eq!(seqs, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn unreachable_init_reports_errors() {
        let client = Client::new(Endpoint::Unix("/nonexistent/init.sock".into()), None);
        let (tx, mut rx) = mpsc::channel(8);
        let (_req_tx, req_rx) = mpsc::channel(1);
        spawn(
            client,
            tx,
            req_rx,
            Duration::from_millis(10),
            Duration::from_millis(20),
        );
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Update::Init(Err(e)))) => assert!(!e.is_empty()),
            other => panic!("expected an init error, got {other:?}"),
        }
    }
}
