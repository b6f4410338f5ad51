//! The operator's Unix socket: the same JSON-RPC API as the TCP listener, on
//! `DATA_DIR/rpc.sock` with mode 0600, so only the account that runs the node (and root) can
//! connect. A request on it is the operator's ([`Operator`]): reads of private repositories
//! need no signature. Loopback TCP is not trusted that way (any local user, and a browser on
//! the operator's machine, can reach it); a socket file's permissions are.
//!
//! The socket is created under a temporary name, set to 0600 and renamed into place, so it
//! is never reachable with wider permissions. A stale socket left by a crash is replaced
//! (the data folder's lock guarantees no other node uses it). Connections are capped
//! ([`MAX_CONNECTIONS`]); each is served by hyper's HTTP/1.1 with a header read timeout.

use anyhow::{Context, Result};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Marks a request that came over the operator's socket.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

/// Most connections served at once on the socket.
pub const MAX_CONNECTIONS: usize = 64;

/// The socket's path in a data folder.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("rpc.sock")
}

/// Binds the socket at `path` (mode 0600).
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    let tmp = path.with_extension("sock.tmp");
    for p in [path, tmp.as_path()] {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(p)
                .with_context(|| format!("remove the stale socket {}", p.display()))?,
            Ok(_) => anyhow::bail!(
                "{} exists and is not a socket; move it away (the node's operator socket goes there)",
                p.display()
            ),
            Err(_) => {}
        }
    }
    let l = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("create the operator socket {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("move the operator socket to {}", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(l)?)
}

/// Serves `app` (the RPC router) on `listener` until the process stops; every request
/// carries [`Operator`] and a loopback [`aergo_os::http::ConnInfo`].
pub async fn serve(listener: tokio::net::UnixListener, app: axum::Router) {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let app =
        app.layer(axum::Extension(Operator))
            .layer(axum::Extension(aergo_os::http::ConnInfo {
                peer: loopback,
                local: loopback,
            }));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "operator socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let r = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, svc)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "operator socket connection");
            }
            drop(permit);
        });
    }
}
