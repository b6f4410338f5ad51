//! A typed async JSON-RPC client over HTTP, with WebSocket subscriptions.

use crate::types::*;
use aergo_types::Hash;
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The node could not be reached.
    #[error("cannot reach the node at {url}: {message}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("{message} (code {code})")]
    Remote {
        /// Code.
        code: i64,
        /// Message.
        message: String,
        /// Data.
        data: Option<Value>,
    },
    /// The answer was not what the method returns.
    #[error("unexpected answer from the node: {0}")]
    Protocol(String),
}

impl RpcError {
    /// The JSON-RPC error code, if the node answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A JSON-RPC client.
pub struct RpcClient {
    url: String,
    http: reqwest::Client,
    next_id: AtomicU64,
    repo: Option<String>,
    branch: Option<String>,
    signer: Option<aergo_types::Keypair>,
    timeout: Duration,
}

/// Largest answer read from the operator's Unix socket.
const MAX_UNIX_ANSWER: usize = 64 * 1024 * 1024;

/// One HTTP/1.1 POST of `body` to `/` over the Unix socket at `path` (the node's operator
/// socket): `(status, body)`. The request asks the server to close the connection, so the
/// answer ends at end of stream.
async fn post_unix(
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(body).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.take(MAX_UNIX_ANSWER as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    if out.len() > MAX_UNIX_ANSWER {
        return Err(format!("answer larger than {MAX_UNIX_ANSWER} bytes"));
    }
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer is not HTTP")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("the answer has no HTTP status")?;
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"))
    {
        return Err("a chunked answer (not expected from the node)".into());
    }
    Ok((status, rest.to_string()))
}

impl RpcClient {
    /// A client for `url` (e.g. `http://127.0.0.1:7845`), with a request timeout.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| RpcError::Unreachable {
                url: url.into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            http,
            next_id: AtomicU64::new(1),
            repo: None,
            branch: None,
            signer: None,
            timeout,
        })
    }

    /// The same client addressing repository `repo` (`None` or `aergo`: the root chain):
    /// every call carries it as the `repo` parameter.
    pub fn with_repo(mut self, repo: Option<String>) -> Self {
        self.repo = repo.filter(|r| r != "aergo");
        self
    }

    /// The same client addressing branch `branch` (`None` or `main`: the chain's `main`;
    /// `a/b`: branch `b` of branch `a`): every call but `repo_*` carries it as `branch`.
    pub fn with_branch(mut self, branch: Option<String>) -> Self {
        self.branch = branch.filter(|b| b != "main");
        self
    }

    /// The branch this client addresses (`None`: `main`).
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_deref()
    }

    /// The same client signing every request with `key` (`x-aergo-*` headers): how a member
    /// reads a private repository.
    pub fn with_signer(mut self, key: Option<aergo_types::Keypair>) -> Self {
        self.signer = key;
        self
    }

    /// The key signing this client's requests, if any.
    pub fn signer(&self) -> Option<&aergo_types::Keypair> {
        self.signer.as_ref()
    }

    /// The repository this client addresses (`None`: the root chain).
    pub fn repo(&self) -> Option<&str> {
        self.repo.as_deref()
    }

    /// The node URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params` and decodes the result.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut params = params;
        if let (Some(r), Some(obj)) = (&self.repo, params.as_object_mut()) {
            if !method.starts_with("repo_") {
                // A call that names its repository (e.g. the root, `aergo`) keeps it.
                obj.entry("repo")
                    .or_insert_with(|| Value::String(r.clone()));
            }
        }
        if let (Some(b), Some(obj)) = (&self.branch, params.as_object_mut()) {
            if !method.starts_with("repo_") {
                obj.entry("branch")
                    .or_insert_with(|| Value::String(b.clone()));
            }
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let bytes = serde_json::to_vec(&body).map_err(|e| RpcError::Protocol(e.to_string()))?;
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(k) = &self.signer {
            use aergo_types::repo::{
                read_auth_message, AUTH_ACCOUNT_HEADER, AUTH_SIGNATURE_HEADER, AUTH_TIME_HEADER,
            };
            let account = aergo_types::Address::from_public_key(&k.public());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            let sig = k.sign(&read_auth_message(now, &account, &bytes).0);
            headers.push((AUTH_ACCOUNT_HEADER.into(), account.encode()));
            headers.push((AUTH_TIME_HEADER.into(), now.to_string()));
            headers.push((AUTH_SIGNATURE_HEADER.into(), sig.to_hex()));
        }
        let unreachable = |message: String| RpcError::Unreachable {
            url: self.url.clone(),
            message,
        };
        let (status, text) = if let Some(path) = self.url.strip_prefix("unix:") {
            tokio::time::timeout(self.timeout, post_unix(path, &headers, &bytes))
                .await
                .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
                .map_err(unreachable)?
        } else {
            let mut req = self.http.post(format!("{}/", self.url));
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let resp = req
                .body(bytes)
                .send()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            (
                status,
                resp.text().await.map_err(|e| unreachable(e.to_string()))?,
            )
        };
        let r: Response = serde_json::from_str(&text).map_err(|_| {
            RpcError::Protocol(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if let Some(e) = r.error {
            return Err(RpcError::Remote {
                code: e.code,
                message: e.message,
                data: e.data,
            });
        }
        let v = r
            .result
            .ok_or_else(|| RpcError::Protocol("response has neither result nor error".into()))?;
        serde_json::from_value(v).map_err(|e| RpcError::Protocol(e.to_string()))
    }

    /// `chain_info`.
    pub async fn chain_info(&self) -> Result<ChainInfo, RpcError> {
        self.call("chain_info", json!({})).await
    }
    /// `node_status`.
    pub async fn node_status(&self) -> Result<NodeStatus, RpcError> {
        self.call("node_status", json!({})).await
    }
    /// `peers`: connected peers (empty until networking is enabled).
    pub async fn peers(&self) -> Result<Vec<PeerJson>, RpcError> {
        self.call("peers", json!({})).await
    }
    /// `block` by height.
    pub async fn block_by_height(&self, height: u64, full: bool) -> Result<BlockJson, RpcError> {
        self.call("block", json!({"height": height, "full": full}))
            .await
    }
    /// `block` by hash.
    pub async fn block_by_hash(&self, hash: &Hash, full: bool) -> Result<BlockJson, RpcError> {
        self.call("block", json!({"hash": hash, "full": full}))
            .await
    }
    /// The last `n` blocks, newest first.
    pub async fn blocks_last(&self, n: u64) -> Result<Vec<BlockSummary>, RpcError> {
        self.call("blocks", json!({"last": n})).await
    }
    /// Blocks `from..=to`, newest first.
    pub async fn blocks_range(&self, from: u64, to: u64) -> Result<Vec<BlockSummary>, RpcError> {
        self.call("blocks", json!({"from": from, "to": to})).await
    }
    /// `tx`.
    pub async fn tx(&self, hash: &Hash) -> Result<TxInfo, RpcError> {
        self.call("tx", json!({"hash": hash})).await
    }
    /// `receipt`.
    pub async fn receipt(&self, hash: &Hash) -> Result<ReceiptJson, RpcError> {
        self.call("receipt", json!({"hash": hash})).await
    }
    /// `account`, at the tip or a past height.
    pub async fn account(
        &self,
        address: &str,
        height: Option<u64>,
    ) -> Result<AccountJson, RpcError> {
        let mut p = json!({"address": address});
        if let Some(h) = height {
            p["height"] = json!(h);
        }
        self.call("account", p).await
    }
    /// `send_tx` with the signed transaction's encoding.
    pub async fn send_tx(&self, encoded: &[u8]) -> Result<SendResult, RpcError> {
        self.call("send_tx", json!({"tx": hex::encode(encoded)}))
            .await
    }
    /// `send_tx` with `wait: "preconfirmed"`: the slot producer's signed promise.
    pub async fn send_tx_preconfirmed(
        &self,
        encoded: &[u8],
    ) -> Result<PreconfirmedResult, RpcError> {
        self.call(
            "send_tx",
            json!({"tx": hex::encode(encoded), "wait": "preconfirmed"}),
        )
        .await
    }
    /// `preconf_status`.
    pub async fn preconf_status(&self) -> Result<PreconfStatusJson, RpcError> {
        self.call("preconf_status", json!({})).await
    }
    /// `mempool`.
    pub async fn mempool(&self, limit: u64) -> Result<MempoolJson, RpcError> {
        self.call("mempool", json!({"limit": limit})).await
    }
    /// `get_proof`.
    pub async fn get_proof(
        &self,
        address: &str,
        height: Option<u64>,
    ) -> Result<AccountProof, RpcError> {
        let mut p = json!({"address": address});
        if let Some(h) = height {
            p["height"] = json!(h);
        }
        self.call("get_proof", p).await
    }

    /// `contract_query`: `{"columns": [...], "rows": [[...]]}`.
    pub async fn contract_query(
        &self,
        address: &str,
        sql: &str,
        height: Option<u64>,
    ) -> Result<Value, RpcError> {
        let mut p = json!({"address": address, "sql": sql});
        if let Some(h) = height {
            p["height"] = json!(h);
        }
        self.call("contract_query", p).await
    }
    /// `contract_abi`.
    pub async fn contract_abi(&self, address: &str) -> Result<Value, RpcError> {
        self.call("contract_abi", json!({"address": address})).await
    }
    /// `contract_call_view`: runs a function read-only.
    pub async fn contract_call_view(
        &self,
        address: &str,
        function: &str,
        args: &[String],
        height: Option<u64>,
    ) -> Result<Value, RpcError> {
        let mut p = json!({"address": address, "function": function, "args": args});
        if let Some(h) = height {
            p["height"] = json!(h);
        }
        self.call("contract_call_view", p).await
    }

    /// `staking_account`: stake, unstaking entries, ballot and registration.
    pub async fn staking_account(
        &self,
        address: &str,
        height: Option<u64>,
    ) -> Result<StakingAccountJson, RpcError> {
        let mut p = json!({"address": address});
        if let Some(h) = height {
            p["height"] = json!(h);
        }
        self.call("staking_account", p).await
    }
    /// `dpos_candidates`: registered BP candidates, ranked by tally.
    pub async fn dpos_candidates(
        &self,
        height: Option<u64>,
    ) -> Result<DposCandidatesJson, RpcError> {
        let mut p = json!({});
        if let Some(h) = height {
            p["height"] = json!(h);
        }
        self.call("dpos_candidates", p).await
    }
    /// `dpos_governance`: parameters in force and pending governance votes.
    pub async fn dpos_governance(&self, height: Option<u64>) -> Result<GovernanceJson, RpcError> {
        let mut p = json!({});
        if let Some(h) = height {
            p["height"] = json!(h);
        }
        self.call("dpos_governance", p).await
    }

    /// Subscribes to new blocks over WebSocket (`/ws`). Each item is a block summary; the
    /// stream ends when the connection closes.
    pub async fn subscribe_new_blocks(&self) -> Result<Subscription<BlockSummary>, RpcError> {
        Subscription::open(&self.url, "new_blocks").await
    }

    /// Subscribes to pending transactions over WebSocket.
    pub async fn subscribe_pending_txs(&self) -> Result<Subscription<TxSummary>, RpcError> {
        Subscription::open(&self.url, "pending_txs").await
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live WebSocket subscription.
pub struct Subscription<T> {
    ws: Ws,
    _t: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> Subscription<T> {
    async fn open(http_url: &str, topic: &str) -> Result<Self, RpcError> {
        let ws_url = format!("{}/ws", http_url.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
            .await
            .map_err(|e| RpcError::Unreachable {
                url: ws_url.clone(),
                message: e.to_string(),
            })?;
        let req =
            json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topic": topic}});
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            req.to_string(),
        ))
        .await
        .map_err(|e| RpcError::Unreachable {
            url: ws_url.clone(),
            message: e.to_string(),
        })?;
        // The first text message answers the subscribe call.
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let r: Response =
                        serde_json::from_str(&t).map_err(|e| RpcError::Protocol(e.to_string()))?;
                    if let Some(e) = r.error {
                        return Err(RpcError::Remote {
                            code: e.code,
                            message: e.message,
                            data: e.data,
                        });
                    }
                    return Ok(Self {
                        ws,
                        _t: std::marker::PhantomData,
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(RpcError::Unreachable {
                        url: ws_url,
                        message: e.to_string(),
                    })
                }
                None => {
                    return Err(RpcError::Unreachable {
                        url: ws_url,
                        message: "closed".into(),
                    })
                }
            }
        }
    }

    /// The next notification; `None` when the connection closed.
    pub async fn next(&mut self) -> Option<Result<T, RpcError>> {
        loop {
            match self.ws.next().await? {
                Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                    let v: Value = match serde_json::from_str(&t) {
                        Ok(v) => v,
                        Err(e) => return Some(Err(RpcError::Protocol(e.to_string()))),
                    };
                    let res = v.get("params").and_then(|p| p.get("result")).cloned();
                    return Some(match res {
                        Some(r) => {
                            serde_json::from_value(r).map_err(|e| RpcError::Protocol(e.to_string()))
                        }
                        None => Err(RpcError::Protocol(format!("not a notification: {t}"))),
                    });
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => return Some(Err(RpcError::Protocol(e.to_string()))),
            }
        }
    }
}

impl RpcClient {
    /// `repo_list`: every repository registered on the root chain (page by page).
    pub async fn repo_list(&self) -> Result<Vec<crate::types::RepoJson>, RpcError> {
        const PAGE: usize = 1000;
        let mut all: Vec<crate::types::RepoJson> = Vec::new();
        loop {
            let after = all.last().map(|r| r.name.clone());
            let page: Vec<crate::types::RepoJson> = self
                .call("repo_list", json!({"after": after, "limit": PAGE}))
                .await?;
            let n = page.len();
            all.extend(page);
            if n < PAGE {
                return Ok(all);
            }
        }
    }
    /// `repo_show`: one repository.
    pub async fn repo_show(&self, name: &str) -> Result<crate::types::RepoJson, RpcError> {
        self.call("repo_show", json!({"name": name})).await
    }
    /// `dd_info`: repository `repo`'s Distributed Directory at its finalized height (members,
    /// nodes, tags, identifiers, anonymous access), as JSON.
    pub async fn dd_info(&self, repo: &str) -> Result<Value, RpcError> {
        self.call("dd_info", json!({"repo": repo})).await
    }
}
