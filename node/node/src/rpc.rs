//! The JSON-RPC 2.0 server (HTTP `POST /`, WebSocket `/ws`), Prometheus `/metrics` and
//! `/health`, with per-client rate limits (WebSocket messages included), a request size
//! limit (a declared `Content-Length` over it is answered 413 before the body is read),
//! caps on WebSocket connections and subscriptions, the cross-site rules of
//! `aergo_os::http::check_origin_host` (403), `Content-Type: application/json` for
//! `POST /` (415), notifications answered with nothing (204), and admin methods served
//! only to loopback clients. The connection-level limits (caps, timeouts) are the shared
//! server's, `aergo_os::http::serve`. Method semantics are in docs/RPC.md.

use crate::node::{now_ms, AdmitError, Node};
use aergo_chain::aergo_sql;
use aergo_chain::ChainError;
use aergo_os::http::{check_origin_host, ConnInfo, OriginPolicy, ServerStats};
use aergo_rpc::types::*;
use aergo_types::block::ReceiptStatus;
use aergo_types::{Address, Aer, Block, Hash, SignedTx};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body.
pub const MAX_BODY: usize = aergo_types::RPC_BODY_LIMIT;
/// Most requests in one JSON-RPC batch.
pub const MAX_BATCH: usize = 1000;

/// Shared server state.
#[derive(Clone)]
pub struct Rpc {
    node: Arc<Node>,
    limiter: Arc<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
    rate: f64,
    origins: Arc<OriginPolicy>,
    ws_slots: Arc<tokio::sync::Semaphore>,
    ws_max: usize,
    ws_per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ws_per_ip_max: usize,
    ws_limit_loopback: bool,
    ws_subscriptions: usize,
    server: Arc<ServerStats>,
    auth: Arc<crate::rpc_auth::ReplayGuard>,
}

/// The server's settings beyond the node (from `[node]` and the listener's address).
pub struct RpcOptions {
    /// Requests (and WebSocket messages) per second per client address; 0 = unlimited.
    pub rate_per_sec: u32,
    /// The cross-site rules of the listener.
    pub origins: OriginPolicy,
    /// Most WebSocket connections at once.
    pub ws_connections: usize,
    /// Most WebSocket connections per client address.
    pub ws_connections_per_ip: usize,
    /// Apply `ws_connections_per_ip` to loopback clients too.
    pub ws_limit_loopback: bool,
    /// Most subscriptions per WebSocket connection.
    pub ws_subscriptions: usize,
    /// The shared server's counters, shown on `/metrics`.
    pub server: Arc<ServerStats>,
}

impl RpcOptions {
    /// The options of `cfg` for a listener on `local`.
    pub fn new(cfg: &aergo_os::config::NodeConfig, local: SocketAddr) -> Self {
        Self {
            rate_per_sec: cfg.rpc_rate_limit,
            origins: OriginPolicy::new(&cfg.rpc_http.allowed_origins, local),
            ws_connections: cfg.rpc_ws_connections,
            ws_connections_per_ip: cfg.rpc_ws_connections_per_ip,
            ws_limit_loopback: cfg.rpc_http.limit_loopback,
            ws_subscriptions: cfg.rpc_ws_subscriptions,
            server: Arc::new(ServerStats::default()),
        }
    }
}

/// A method failure.
pub struct RpcFail {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcFail {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
    fn params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(codes::NOT_FOUND, message)
    }
}

impl From<ChainError> for RpcFail {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::NotFound(m) => RpcFail::not_found(m),
            other => RpcFail::new(codes::INTERNAL, other.to_string()),
        }
    }
}

impl From<AdmitError> for RpcFail {
    fn from(e: AdmitError) -> Self {
        let reason = match &e {
            AdmitError::Malformed(_) => "malformed",
            AdmitError::Rule(_) => "rule",
            AdmitError::Signature => "signature",
            AdmitError::Mempool(r) => match r {
                aergo_chain::mempool::Reject::Duplicate(_) => "duplicate",
                aergo_chain::mempool::Reject::NonceTooLow { .. } => "nonce_too_low",
                aergo_chain::mempool::Reject::NonceGap { .. } => "nonce_gap",
                aergo_chain::mempool::Reject::Underpriced { .. } => "underpriced",
                aergo_chain::mempool::Reject::InsufficientBalance { .. } => "insufficient_balance",
                aergo_chain::mempool::Reject::Full(_) => "mempool_full",
                aergo_chain::mempool::Reject::GasCap { .. } => "gas_cap",
            },
            AdmitError::GossipBusy(_) => "busy",
            AdmitError::Chain(_) => "internal",
            AdmitError::NotHere(_) => "not_here",
        };
        RpcFail {
            code: codes::TX_REJECTED,
            message: format!("transaction rejected: {e}"),
            data: Some(json!({"reason": reason})),
        }
    }
}

pub(crate) type MResult = Result<Value, RpcFail>;

/// Builds the router (served by `aergo_os::http::serve`, which supplies [`ConnInfo`]).
pub fn router(node: Arc<Node>, opts: RpcOptions) -> Router {
    let rpc = Rpc::new(node, opts);
    Router::new()
        .route("/", post(http_rpc))
        .route("/ws", get(ws_upgrade))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(rpc.clone(), guard))
        .with_state(rpc)
}

/// `GET /health`: 200 `ok` while every vital task beats; 503 with the late tasks otherwise
/// (init restarts a node whose health fails 3 times in a row).
async fn health(State(rpc): State<Rpc>) -> HttpResponse {
    let late = rpc.node.vital.late(crate::node::now_ms());
    if late.is_empty() {
        return (StatusCode::OK, "ok").into_response();
    }
    let tasks: Vec<Value> = late
        .iter()
        .map(|(t, age)| json!({"task": t, "silent_ms": age}))
        .collect();
    json_resp(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "unhealthy", "late": tasks}),
    )
}

/// A refusal before any method runs: `status` with a JSON-RPC error (id null) whose
/// `data.reason` names the rule.
fn transport_error(status: StatusCode, code: i64, message: String, reason: &str) -> HttpResponse {
    let f = RpcFail {
        code,
        message,
        data: Some(json!({ "reason": reason })),
    };
    json_resp(status, err_response(Value::Null, f))
}

/// True if `Content-Type` is `application/json` (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Checks every request before its handler: the cross-site rules (403), and for `POST /`
/// the content type (415) and a declared length over [`MAX_BODY`] (413, without reading the
/// body).
async fn guard(State(rpc): State<Rpc>, req: axum::extract::Request, next: Next) -> HttpResponse {
    if let Err(e) = check_origin_host(req.uri(), req.headers(), &rpc.origins) {
        return transport_error(
            StatusCode::FORBIDDEN,
            codes::INVALID_REQUEST,
            e.to_string(),
            "cross_site",
        );
    }
    if req.method() == Method::POST && req.uri().path() == "/" {
        if !is_json(req.headers()) {
            return transport_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::INVALID_REQUEST,
                "JSON-RPC requests need `Content-Type: application/json`".into(),
                "content_type",
            );
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return too_large();
        }
    }
    next.run(req).await
}

fn too_large() -> HttpResponse {
    transport_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::INVALID_REQUEST,
        format!("request body larger than {MAX_BODY} bytes"),
        "body_too_large",
    )
}

impl Rpc {
    fn new(node: Arc<Node>, opts: RpcOptions) -> Self {
        let ws_max = opts.ws_connections.max(1);
        Self {
            node,
            limiter: Arc::new(Mutex::new(HashMap::new())),
            rate: opts.rate_per_sec as f64,
            origins: Arc::new(opts.origins),
            ws_slots: Arc::new(tokio::sync::Semaphore::new(ws_max)),
            ws_max,
            ws_per_ip: Arc::new(Mutex::new(HashMap::new())),
            ws_per_ip_max: opts.ws_connections_per_ip.max(1),
            ws_limit_loopback: opts.ws_limit_loopback,
            ws_subscriptions: opts.ws_subscriptions.max(1),
            server: opts.server,
            auth: Default::default(),
        }
    }

    fn allow(&self, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut m = self.limiter.lock();
        if m.len() > 100_000 {
            m.clear();
        }
        let now = Instant::now();
        let burst = self.rate * 2.0;
        let e = m.entry(aergo_os::http::ip_key(ip)).or_insert((burst, now));
        e.0 = (e.0 + now.duration_since(e.1).as_secs_f64() * self.rate).min(burst);
        e.1 = now;
        if e.0 >= 1.0 {
            e.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

fn err_response(id: Value, f: RpcFail) -> Value {
    let mut e = json!({"code": f.code, "message": f.message});
    if let Some(d) = f.data {
        e["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": e})
}

async fn http_rpc(
    State(rpc): State<Rpc>,
    Extension(conn): Extension<ConnInfo>,
    operator: Option<Extension<crate::rpc_socket::Operator>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let peer = conn.peer;
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(r) => {
            let timed_out = body_timed_out(&r);
            let (status, reason) = if timed_out {
                (StatusCode::REQUEST_TIMEOUT, "body_timeout")
            } else {
                (StatusCode::BAD_REQUEST, "body_unreadable")
            };
            return transport_error(status, codes::INVALID_REQUEST, r.body_text(), reason);
        }
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let r = err_response(
                Value::Null,
                RpcFail::new(codes::PARSE_ERROR, format!("request body is not JSON: {e}")),
            );
            return json_resp(StatusCode::OK, r);
        }
    };
    // Who signed the request (reads of private repositories need a member); the operator's
    // Unix socket needs no signature.
    let signed = match operator {
        Some(_) => Caller::Operator,
        None => match rpc.auth.verify(&headers, &body, now_ms()) {
            Ok(Some(a)) => Caller::Signed(a),
            Ok(None) => Caller::Anonymous,
            Err(e) => {
                let r = err_response(
                    Value::Null,
                    RpcFail::new(codes::UNAUTHORIZED, e.to_string()),
                );
                return json_resp(StatusCode::OK, r);
            }
        },
    };
    let out = match v {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                err_response(
                    Value::Null,
                    RpcFail::new(
                        codes::INVALID_REQUEST,
                        format!("a batch holds 1 to {MAX_BATCH} requests"),
                    ),
                )
            } else {
                let mut outs = Vec::with_capacity(items.len());
                if let Some(preconfirmed) = send_batch(&items) {
                    outs = send_batch_run(&rpc, peer, items, preconfirmed).await;
                } else {
                    for it in items {
                        outs.extend(handle_request(&rpc, peer, signed, it).await);
                    }
                }
                if outs.is_empty() {
                    // Only notifications: nothing to answer.
                    return StatusCode::NO_CONTENT.into_response();
                }
                Value::Array(outs)
            }
        }
        other => match handle_request(&rpc, peer, signed, other).await {
            Some(v) => v,
            None => return StatusCode::NO_CONTENT.into_response(),
        },
    };
    json_resp(StatusCode::OK, out)
}

/// True if the body was cut off by the server's body timeout.
fn body_timed_out(r: &BytesRejection) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(r);
    while let Some(err) = e {
        if matches!(
            err.downcast_ref::<aergo_os::http::BodyError>(),
            Some(aergo_os::http::BodyError::Timeout)
        ) {
            return true;
        }
        e = err.source();
    }
    false
}

/// A JSON-RPC notification: a request object without an `id` member. It is executed and
/// never answered.
fn is_notification(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| !o.contains_key("id") && o.get("method").is_some_and(Value::is_string))
}

/// One request of a call or batch; `None` for a notification.
async fn handle_request(rpc: &Rpc, peer: SocketAddr, signed: Caller, v: Value) -> Option<Value> {
    let notification = is_notification(&v);
    let reply = handle_one(rpc, peer, signed, v).await;
    (!notification).then_some(reply)
}

fn json_resp(status: StatusCode, v: Value) -> HttpResponse {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Who makes a request, for reads of private repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No signature.
    Anonymous,
    /// The account that signed the HTTP request.
    Signed(Address),
    /// The node's operator, on its Unix socket (mode 0600): reads everything it hosts.
    Operator,
}

/// One request; `signed` is who made it.
async fn handle_one(rpc: &Rpc, peer: SocketAddr, signed: Caller, v: Value) -> Value {
    let started = std::time::Instant::now();
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    if !rpc.allow(peer.ip()) {
        return err_response(
            id,
            RpcFail::new(
                codes::RATE_LIMITED,
                "rate limit exceeded; slow down and retry",
            ),
        );
    }
    let req: Request = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => {
            return err_response(
                id,
                RpcFail::new(
                    codes::INVALID_REQUEST,
                    format!("not a JSON-RPC 2.0 request: {e}"),
                ),
            )
        }
    };
    if req.jsonrpc != "2.0" {
        return err_response(
            id,
            RpcFail::new(codes::INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        );
    }
    if req.method.starts_with("admin_") && !aergo_os::http::is_loopback(peer.ip()) {
        return err_response(
            id,
            RpcFail::new(
                codes::ADMIN_REFUSED,
                "admin methods are served only to loopback clients",
            ),
        );
    }
    let params = if req.params.is_null() {
        json!({})
    } else {
        req.params
    };
    let params = match take_repo_of_at(params) {
        Ok(p) => p,
        Err(f) => return err_response(id, f),
    };
    let root = rpc.node.clone();
    let (m, p) = (req.method.clone(), params.clone());
    let names_repo = !matches!(params.get("repo"), None | Some(Value::Null));
    // The registry and directory reads may touch disk: off the async workers (a request
    // for the root chain needs none).
    let selected = if names_repo || m.starts_with("dd_") {
        tokio::task::spawn_blocking(move || select_repo(&root, &m, &p, signed)).await
    } else {
        Ok(Ok(root))
    };
    let node = match selected {
        Ok(Ok(n)) => n,
        Ok(Err(f)) => return err_response(id, f),
        Err(e) => {
            return err_response(
                id,
                RpcFail::new(codes::INTERNAL, format!("handler failed: {e}")),
            )
        }
    };
    let method = req.method.clone();
    let preconf_send =
        method == "send_tx" && params.get("wait").and_then(Value::as_str) == Some("preconfirmed");
    let timed = preconf_send.then(|| node.clone());
    if preconf_send
        && params
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "tx" || k == "wait"))
        && names_transfer(&params)
    {
        // A transfer on the ledger's main branch (no `branch`, no `at`): nothing to resolve,
        // and its pre-execution is short (a contract call may run up to its gas cap: on the
        // blocking pool, so it never holds an async worker).
        let res = send_preconfirmed_inline(node, &params).await;
        return match res {
            Ok(v) => {
                if let Some(n) = timed.filter(|_| v.get("preconfirmation").is_some()) {
                    n.preconf
                        .sample_request(crate::node::micros(started.elapsed()));
                }
                json!({"jsonrpc": "2.0", "id": id, "result": v})
            }
            Err(f) => err_response(id, f),
        };
    }
    // Refs, branches (which may open a branch chain) and chain reads may touch disk: keep
    // them off the async workers.
    let res = tokio::task::spawn_blocking(move || {
        let (node, params) = address(node, params, &method, signed)?;
        dispatch(&node, &method, &params)
    })
    .await;
    match res {
        Ok(Ok(v)) => {
            if let Some(n) = timed.filter(|_| v.get("preconfirmation").is_some()) {
                n.preconf
                    .sample_request(crate::node::micros(started.elapsed()));
            }
            json!({"jsonrpc": "2.0", "id": id, "result": v})
        }
        Ok(Err(f)) => err_response(id, f),
        Err(e) => err_response(
            id,
            RpcFail::new(codes::INTERNAL, format!("handler failed: {e}")),
        ),
    }
}

/// Resolves what a request addresses inside the selected ledger `node`: a tag or `REF` in
/// `at`, the private branches it names (`branch`, `diff`'s sides, `merge_preview`'s source),
/// the branch's node, and the `at` point as `height`.
fn address(
    node: Arc<Node>,
    params: Value,
    method: &str,
    signed: Caller,
) -> Result<(Arc<Node>, Value), RpcFail> {
    let params = resolve_tag(&node, params)?;
    let (params, at) = take_at(params)?;
    private_branch_check(&node, &params, signed)?;
    let here = params
        .get("branch")
        .and_then(|b| b.as_str())
        .map(String::from);
    let others: Vec<String> = match method {
        "diff" => ["from", "to"]
            .iter()
            .filter_map(|k| {
                params
                    .pointer(&format!("/{k}/branch"))
                    .and_then(|b| b.as_str())
            })
            .map(String::from)
            .collect(),
        "merge_preview" => params
            .get("source")
            .and_then(|b| b.as_str())
            .map(|s| match &here {
                Some(h) if h != aergo_types::branch::MAIN => format!("{h}/{s}"),
                _ => s.to_string(),
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    for b in others {
        private_branch_check(&node, &json!({ "branch": b }), signed)?;
    }
    let node = select_branch(node, &params)?;
    let params = match at {
        None => params,
        Some(a) => apply_at(&node, params, a)?,
    };
    Ok((node, params))
}

/// A client-given name for an error message: at most 64 characters, escaped.
fn shown(name: &str) -> String {
    name.chars()
        .take(64)
        .collect::<String>()
        .escape_default()
        .to_string()
}

/// The node a request addresses: the root chain's, or with `repo` a hosted repository's
/// (`repo_*` methods are about the registry and always go to the root).
fn select_repo(
    root: &Arc<Node>,
    method: &str,
    p: &Value,
    signed: Caller,
) -> Result<Arc<Node>, RpcFail> {
    if method.starts_with("repo_") {
        return Ok(root.clone());
    }
    let name = match p.get("repo") {
        None | Some(Value::Null) if method.starts_with("dd_") => {
            return Err(RpcFail::params(
                "`dd_*` methods need `repo`: the repository whose directory to read",
            ))
        }
        None | Some(Value::Null) => return Ok(root.clone()),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(RpcFail::params("`repo` must be a repository name")),
    };
    if name == aergo_types::repo::ROOT_REPO {
        return Ok(root.clone());
    }
    let (name, dd) = match name.strip_suffix("/dd") {
        Some(n) => (n, true),
        None => (name, method.starts_with("dd_")),
    };
    if aergo_types::repo::name_error(name).is_some() {
        // Not a name a repository can have: no lookup (a client may send any string here).
        return Err(RpcFail::new(
            codes::NO_REPO,
            format!(
                "no repository `{}` (`aergo repo list` shows them)",
                shown(name)
            ),
        ));
    }
    if let Some(h) = root.repos.get(name) {
        if let Some(e) = read_error(&h, signed)? {
            return Err(RpcFail::new(codes::UNAUTHORIZED, e));
        }
        return Ok(if dd {
            h.directory.clone()
        } else {
            h.node.clone()
        });
    }
    let known = root
        .chain
        .view_at(root.chain.tip().header.height)
        .and_then(|v| aergo_chain::repos::registration(&v, name))
        .map_err(RpcFail::from)?;
    Err(RpcFail::new(
        codes::NO_REPO,
        match known {
            Some(_) => format!("repository `{name}` exists, but this node does not host it"),
            None => format!(
                "no repository `{}` (`aergo repo list` shows them)",
                shown(name)
            ),
        },
    ))
}

/// An `at` ref `REPO:REST` (`docs:feat@3`, `aergo:main@9`) names its ledger: `REPO` becomes
/// the `repo` parameter (it may not contradict one given) and `REST` the ref.
fn take_repo_of_at(mut p: Value) -> Result<Value, RpcFail> {
    let Some(Value::String(at)) = p.get("at") else {
        return Ok(p);
    };
    let Some((repo, rest)) = at.split_once(':') else {
        return Ok(p);
    };
    let (repo, rest) = (repo.trim().to_string(), rest.trim().to_string());
    if repo.is_empty() || rest.is_empty() || repo.len() > 64 {
        return Err(RpcFail::params(format!(
            "`at` {at}: a ledger's ref is REPO:REF, e.g. docs:feat@3"
        )));
    }
    let Some(obj) = p.as_object_mut() else {
        return Ok(p);
    };
    match obj.get("repo") {
        None | Some(Value::Null) => {}
        Some(Value::String(r)) if *r == repo => {}
        Some(other) => {
            return Err(RpcFail::params(format!(
                "`at` names repository `{repo}` but `repo` is {other}"
            )))
        }
    }
    if repo == aergo_types::repo::ROOT_REPO {
        obj.remove("repo");
    } else {
        obj.insert("repo".into(), Value::String(repo));
    }
    obj.insert("at".into(), Value::String(rest));
    Ok(p)
}

/// Turns an `at` ref that names a tag (`v1`) into that block's height on the addressed
/// chain (`branch`, else `node`'s): a name that is a live branch stays a branch; otherwise a
/// tag of the chain's own (`aergo tag`), then, on a repository ledger, of its directory. A
/// tag whose block is no longer the chain's block at that height is refused.
fn resolve_tag(node: &Arc<Node>, mut p: Value) -> Result<Value, RpcFail> {
    let name = match p.get("at") {
        Some(Value::String(s)) => s.trim().to_string(),
        _ => return Ok(p),
    };
    if name.is_empty()
        || name == aergo_types::branch::MAIN
        || name.bytes().all(|b| b.is_ascii_digit())
        || name.contains(['@', '~', '/'])
        || aergo_types::branch::tag_name_error(&name).is_some()
    {
        return Ok(p);
    }
    // A `branch` that does not exist is reported by the steps after this one.
    let Ok(target) = select_branch(node.clone(), &p) else {
        return Ok(p);
    };
    let chain = &target.chain;
    let view = chain.view_at(chain.tip().header.height)?;
    let access = chain.branch_access(None)?;
    if aergo_chain::branches::Records::new(&view, access.as_deref())
        .get(&name)?
        .is_some_and(|r| r.deleted.is_none())
    {
        return Ok(p);
    }
    let found = match aergo_chain::branches::tag(&view, &name)? {
        Some(t) => Some(t),
        None => match chain.directory() {
            Some(dd) => aergo_chain::directory::tag(&dd.view_at(dd.finalized_height())?, &name)?
                .filter(|t| t.branch == aergo_types::branch::MAIN)
                .map(|t| (t.height, t.hash)),
            None => None,
        },
    };
    let Some((height, hash)) = found else {
        return Ok(p);
    };
    match chain.hash_at(height)? {
        Some(h) if h == hash => {}
        other => {
            return Err(RpcFail::not_found(format!(
                "tag `{name}` names block {hash} at height {height}, which this chain no longer holds (it holds {})",
                other.map(|h| h.to_string()).unwrap_or_else(|| "nothing".into())
            )))
        }
    }
    if let Some(o) = p.as_object_mut() {
        o.insert("at".into(), Value::String(height.to_string()));
    }
    Ok(p)
}

/// Where in a branch a ref points: a height, blocks below the tip, or the tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtPoint {
    Height(u64),
    Back(u64),
    Tip,
}

/// Takes a read's `at` ref (`12`, `feat`, `feat@12`, `feat~3`, `main@1200`, `a/b@7`) out of
/// `p`: a named branch becomes the `branch` parameter (`main`: the root), the point is
/// returned for [`apply_at`]. `at` together with `height`, or naming another branch than
/// `branch`, is refused.
fn take_at(mut p: Value) -> Result<(Value, Option<AtPoint>), RpcFail> {
    let s = match p.get("at") {
        None | Some(Value::Null) => return Ok((p, None)),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => {
            return Err(RpcFail::params(
                "`at` must be a ref string such as \"feat@12\"",
            ))
        }
    };
    if p.get("height").is_some_and(|h| !h.is_null()) {
        return Err(RpcFail::params("give `at` or `height`, not both"));
    }
    if s.is_empty() || s.len() > 300 {
        return Err(RpcFail::params(
            "`at` must be a ref: 12, feat, feat@12, feat~3 or main@1200",
        ));
    }
    let num = |x: &str, what: &str| {
        x.parse::<u64>()
            .map_err(|_| RpcFail::params(format!("`at` {s}: after {what} comes a number")))
    };
    let (name, point) = if s.bytes().all(|b| b.is_ascii_digit()) {
        (None, AtPoint::Height(num(&s, "the start")?))
    } else if let Some((n, h)) = s.split_once('@') {
        (Some(n.to_string()), AtPoint::Height(num(h, "@")?))
    } else if let Some((n, b)) = s.split_once('~') {
        (Some(n.to_string()), AtPoint::Back(num(b, "~")?))
    } else {
        (Some(s.clone()), AtPoint::Tip)
    };
    if let (Some(n), Some(obj)) = (name, p.as_object_mut()) {
        let given = obj
            .get("branch")
            .and_then(|b| b.as_str())
            .map(str::to_string);
        let want = if n == "main" { None } else { Some(n.clone()) };
        match (given.as_deref(), want) {
            (Some(g), w) if w.as_deref() != Some(g) && !(g == "main" && w.is_none()) => {
                return Err(RpcFail::params(format!(
                    "`at` {s} names branch `{n}` but `branch` is `{g}`"
                )))
            }
            (_, Some(w)) => {
                obj.insert("branch".into(), Value::String(w));
            }
            (_, None) => {
                obj.remove("branch");
            }
        }
    }
    if let Some(obj) = p.as_object_mut() {
        obj.remove("at");
    }
    Ok((p, Some(point)))
}

/// Sets `height` in `p` from an `at` point on `node`'s chain (the branch the ref named).
fn apply_at(node: &Node, mut p: Value, at: AtPoint) -> Result<Value, RpcFail> {
    let tip = node.chain.tip().header.height;
    let h = match at {
        AtPoint::Height(h) if h > tip => {
            return Err(RpcFail::not_found(format!(
                "height {h} is above the best height {tip}"
            )))
        }
        AtPoint::Height(h) => h,
        AtPoint::Back(n) => tip.checked_sub(n).ok_or_else(|| {
            RpcFail::not_found(format!(
                "~{n} is below the first block (the tip is at height {tip})"
            ))
        })?,
        AtPoint::Tip => tip,
    };
    if let Some(obj) = p.as_object_mut() {
        obj.insert("height".into(), json!(h));
    }
    Ok(p)
}

/// Refuses a request addressing a private branch (at any level of the `branch` path) unless
/// it is signed by the branch's creator or comes from the node's operator: a private branch
/// is read and written by its creator only.
fn private_branch_check(node: &Arc<Node>, p: &Value, signed: Caller) -> Result<(), RpcFail> {
    let Some(path) = p
        .get("branch")
        .and_then(|b| b.as_str())
        .filter(|b| *b != aergo_types::branch::MAIN)
    else {
        return Ok(());
    };
    let mut here = node.clone();
    for name in path.split('/') {
        let Some(h) = here.branches.get_or_sync(&here, name) else {
            // `select_branch` reports it.
            return Ok(());
        };
        if h.record.private {
            let creator = h.record.creator;
            match signed {
                Caller::Operator => {}
                Caller::Signed(a) if a == creator => {}
                Caller::Signed(a) => {
                    return Err(RpcFail::new(
                        codes::UNAUTHORIZED,
                        format!("branch `{name}` is private to {creator}; account {a} may not read or write it"),
                    ))
                }
                Caller::Anonymous => {
                    return Err(RpcFail::new(
                        codes::UNAUTHORIZED,
                        format!("branch `{name}` is private: a request to it needs the signature of its creator {creator} (aergo --as ACCOUNT)"),
                    ))
                }
            }
        }
        here = h.node.clone();
    }
    Ok(())
}

/// The node of the branch a request names with `branch` (`main` or absent: `node` itself;
/// `a/b`: branch `b` of branch `a`).
fn select_branch(node: Arc<Node>, p: &Value) -> Result<Arc<Node>, RpcFail> {
    let path = match p.get("branch") {
        None | Some(Value::Null) => return Ok(node),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(RpcFail::params("`branch` must be a branch name")),
    };
    Ok(branch_of(&node, Some(path))?.unwrap_or(node))
}

/// Why the signer of a request may not read repository `h` (`None`: it may): a repository
/// without anonymous reads (a private one) is read only by its members, each request signed.
fn read_error(h: &crate::repos::Hosted, signed: Caller) -> Result<Option<String>, RpcFail> {
    use aergo_chain::directory as dd;
    let chain = &h.directory.chain;
    let view = chain.view_at(chain.finalized_height())?;
    if dd::anonymous(&view)?.0 {
        return Ok(None);
    }
    let name = &h.registration.create.name;
    Ok(match signed {
        Caller::Operator => None,
        Caller::Anonymous => Some(format!(
            "repository `{name}` is private: reading it needs a request signed by a member (aergo --as ACCOUNT)"
        )),
        Caller::Signed(a) => match dd::role_of(&view, &a)? {
            Some(_) => None,
            None => Some(format!(
                "account {a} has no role in repository `{name}`; reading it needs the `read` role"
            )),
        },
    })
}

fn repo_json(root: &Node, reg: &aergo_types::repo::Registration) -> RepoJson {
    let c = &reg.create;
    let hosted = root.repos.get(&c.name);
    RepoJson {
        name: c.name.clone(),
        id: aergo_types::repo::repo_id(&root.chain.chain_id(), &c.name),
        visibility: match c.visibility {
            aergo_types::repo::Visibility::Public => "public".into(),
            aergo_types::repo::Visibility::Private => "private".into(),
        },
        engine: match c.engine {
            aergo_types::repo::RepoEngine::Solo => "solo".into(),
            aergo_types::repo::RepoEngine::Poa => "poa".into(),
        },
        admins: c.admins.iter().map(|a| a.encode()).collect(),
        producers: c
            .producers
            .iter()
            .map(|k| Address::from_public_key(k).encode())
            .collect(),
        creator: reg.creator.encode(),
        created_height: reg.height,
        created_tx: reg.tx,
        hosted: hosted.is_some(),
        height: hosted.as_ref().map(|h| h.node.chain.tip().header.height),
        finalized_height: hosted.as_ref().map(|h| h.node.chain.finalized_height()),
        role: hosted
            .as_ref()
            .map(|h| if h.producer { "producer" } else { "member" }.into()),
    }
}

/// `dd_info`: a directory's namespace at its finalized height (or `height`).
fn dd_info(node: &Node, p: &Value) -> MResult {
    use aergo_chain::directory as dd;
    let chain = &node.chain;
    let fin = chain.finalized_height();
    let h = p_u64(p, "height")?.unwrap_or(fin);
    // Each list is capped (a directory's entries grow with its history).
    let cap = p_u64(p, "limit")?.unwrap_or(1000).clamp(1, 1000) as usize;
    let view = chain.view_at(h)?;
    let (anon_read, anon_write) = dd::anonymous(&view)?;
    Ok(json!({
        "repo": chain.genesis().repo.as_ref().map(|r| r.name.clone()),
        "height": h,
        "best_height": chain.tip().header.height,
        "finalized_height": fin,
        "members": dd::members(&view)?.iter().take(cap).map(|(a, r)| json!({"account": a.encode(), "role": r.name()})).collect::<Vec<_>>(),
        "nodes": dd::nodes(&view)?.iter().take(cap).map(|k| Address::from_public_key(k).encode()).collect::<Vec<_>>(),
        "tags": dd::tags(&view)?.iter().take(cap).map(|(n, t)| json!({"name": n, "branch": t.branch, "height": t.height, "hash": t.hash})).collect::<Vec<_>>(),
        "identifiers": dd::identifiers(&view)?.iter().take(cap).map(|(n, i)| json!({"name": n, "kind": i.kind, "target": i.target, "valid_from": i.valid_from, "revoked_at": i.revoked_at})).collect::<Vec<_>>(),
        "anonymous_read": anon_read,
        "anonymous_write": anon_write,
        "branches": dd::all_branches(&view)?.iter().take(cap).map(|(path, b)| json!({
            "path": path,
            "id": b.record.id,
            "fork_height": b.record.fork_height,
            "fork_hash": b.fork_hash,
            "producer": Address::from_public_key(&b.record.producer).encode(),
            "strategy": aergo_chain::branches::strategy_name(b.record.strategy),
            "private": b.record.private,
            "creator": b.record.creator.encode(),
            "created": b.record.created,
            "deleted": b.record.deleted,
        })).collect::<Vec<_>>(),
    }))
}

/// `branch_list`: every branch the addressed chain records, with this node's view of it.
fn branch_list(node: &Node) -> MResult {
    let chain = &node.chain;
    let view = chain.view_at(chain.tip().header.height)?;
    let access = chain.branch_access(None)?;
    let mut out = Vec::new();
    for (name, r) in aergo_chain::branches::Records::new(&view, access.as_deref()).list()? {
        let hosted = node.branches.get(&name).filter(|h| h.record.id == r.id);
        let tip = hosted.as_ref().map(|h| h.node.chain.tip());
        out.push(json!({
            "name": name,
            "id": r.id,
            "fork_height": r.fork_height,
            "fork_hash": chain.hash_at(r.fork_height)?,
            "producer": Address::from_public_key(&r.producer).encode(),
            "strategy": aergo_chain::branches::strategy_name(r.strategy),
            "resolver": r.resolver.map(|a| a.encode()),
            "private": r.private,
            "creator": r.creator.encode(),
            "created": r.created,
            "deleted": r.deleted,
            // A repository's branches are recorded by its directory: `created` and
            // `deleted` are directory heights there.
            "recorded_in": if access.is_some() { "directory" } else { "chain" },
            "merged_up_to": aergo_chain::branches::merge_base(&view, &r)?,
            "hosted": hosted.is_some(),
            "produced_here": hosted
                .as_ref()
                .is_some_and(|h| h.producer && !h.node.retired.load(std::sync::atomic::Ordering::SeqCst)),
            "tip_height": tip.as_ref().map(|t| t.header.height),
            "tip_hash": tip.as_ref().map(|t| t.hash),
        }));
    }
    let tags: Vec<Value> = aergo_chain::branches::tags(&view)?
        .into_iter()
        .map(|(name, height, hash)| json!({"name": name, "height": height, "hash": hash}))
        .collect();
    ok(json!({
        "chain_id": chain.chain_id(),
        "height": chain.tip().header.height,
        "branches": out,
        "tags": tags,
    }))
}

/// The node of branch `path` under `node` (`None`: `node` itself).
fn branch_of(node: &Node, path: Option<&str>) -> Result<Option<Arc<Node>>, RpcFail> {
    let Some(path) = path.filter(|p| *p != aergo_types::branch::MAIN) else {
        return Ok(None);
    };
    let mut cur: Option<Arc<Node>> = None;
    for name in path.split('/') {
        if let Some(e) = aergo_types::branch::name_error(name) {
            return Err(RpcFail::new(codes::NO_BRANCH, e));
        }
        let here = cur.as_deref().unwrap_or(node);
        let next = here
            .branches
            .get_or_sync(here, name)
            .map(|h| h.node.clone())
            .ok_or_else(|| {
                RpcFail::new(
                    codes::NO_BRANCH,
                    format!("no branch `{name}` on this node (`aergo branch` lists the branches)"),
                )
            })?;
        cur = Some(next);
    }
    Ok(cur)
}

/// A diff's side: `{"branch"?: NAME, "height"?: N}` (default: the branch's best height).
fn diff_point(node: &Node, p: &Value, k: &str) -> Result<(Option<Arc<Node>>, u64), RpcFail> {
    let v = p.get(k).cloned().unwrap_or(json!({}));
    if !v.is_object() {
        return Err(RpcFail::params(format!(
            "`{k}` is an object: {{\"branch\"?: NAME, \"height\"?: N}}"
        )));
    }
    let branch = match v.get("branch") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(RpcFail::params(format!("`{k}.branch` must be a name"))),
    };
    let n = branch_of(node, branch)?;
    let tip = n.as_deref().unwrap_or(node).chain.tip().header.height;
    let h = p_u64(&v, "height")?.unwrap_or(tip);
    if h > tip {
        return Err(RpcFail::not_found(format!(
            "`{k}`: height {h} is above the best height {tip}"
        )));
    }
    Ok((n, h))
}

fn account_json(v: &Option<Vec<u8>>) -> Value {
    match v.as_deref().map(aergo_chain::state::Account::decode) {
        Some(Ok(a)) => json!({"balance": a.balance.to_string(), "nonce": a.nonce}),
        _ => Value::Null,
    }
}

/// `diff`: the state that differs between two points (a branch at a height).
fn diff(node: &Node, p: &Value) -> MResult {
    // Reads a change record per block and two values per key: capped like contract reads.
    let _permit = node
        .queries
        .try_acquire()
        .map_err(|e| RpcFail::new(codes::BUSY, e.to_string()))?;
    let (fa, ha) = diff_point(node, p, "from")?;
    let (tb, hb) = diff_point(node, p, "to")?;
    let limit = p_u64(p, "limit")?.unwrap_or(100).clamp(1, 1000) as usize;
    let after = match p.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(hex::decode(s).map_err(|e| RpcFail::params(format!("`after`: {e}")))?)
        }
        Some(_) => return Err(RpcFail::params("`after` is a hex key from `next`")),
    };
    let a = &fa.as_deref().unwrap_or(node).chain;
    let b = &tb.as_deref().unwrap_or(node).chain;
    let page = a.diff(ha, b, hb, after.as_deref(), limit)?;
    let (va, vb) = (a.view_at(ha)?, b.view_at(hb)?);
    let mut rows = RowDiff::default();
    let status = |c: &aergo_chain::chain::Change| match (&c.from, &c.to) {
        (None, _) => "added",
        (_, None) => "removed",
        _ => "modified",
    };
    let changes: Vec<Value> = page
        .changes
        .iter()
        .filter_map(|c| {
            let raw = |k: &[u8]| -> Option<Address> {
                let r: [u8; 33] = k.get(1..34)?.try_into().ok()?;
                Address::from_raw(&r).ok()
            };
            Some(match (c.key.first(), raw(&c.key)) {
                (Some(b'a'), Some(a)) if c.key.len() == 34 => json!({
                    "kind": "account", "address": a.encode(), "status": status(c),
                    "from": account_json(&c.from), "to": account_json(&c.to),
                }),
                (Some(b'c'), Some(a)) => {
                    use aergo_sql::rows::KeyKind;
                    match aergo_sql::rows::classify(c.key.get(34..).unwrap_or_default()) {
                        // Derived from the rows (index entries, row-id sequences): the rows'
                        // own changes say it.
                        KeyKind::Index(_) | KeyKind::Seq(_) => return None,
                        KeyKind::Meta => json!({
                            "kind": "contract_code", "contract": a.encode(), "status": status(c),
                        }),
                        KeyKind::Row { table, pk } => {
                            match rows.row(&a, table, pk, c, &va, &vb, status(c)) {
                                Some(v) => v,
                                None => raw_contract(&a, c, status(c)),
                            }
                        }
                        KeyKind::Unknown => raw_contract(&a, c, status(c)),
                    }
                }
                (first, _) => json!({
                    "kind": match first {
                        Some(b's') => "staking",
                        Some(b'b') => "branch",
                        Some(b'm') => "merge_base",
                        Some(b'x') => "merged",
                        Some(b'r') => "repository",
                        _ => "other",
                    },
                    "status": status(c),
                    "key": hex::encode(&c.key),
                }),
            })
        })
        .collect();
    ok(json!({
        "from": {"chain_id": a.chain_id(), "height": ha},
        "to": {"chain_id": b.chain_id(), "height": hb},
        "common_height": page.common,
        "changes": changes,
        "next": page.next.map(hex::encode),
    }))
}

/// A contract key `diff` cannot read as a row: its bytes.
fn raw_contract(a: &Address, c: &aergo_chain::chain::Change, status: &str) -> Value {
    json!({
        "kind": "contract", "contract": a.encode(), "status": status,
        "key": hex::encode(c.key.get(34..).unwrap_or_default()),
        "from": c.from.as_ref().map(hex::encode), "to": c.to.as_ref().map(hex::encode),
    })
}

/// `diff`'s contract rows, read cell by cell with the contracts' catalogs (each contract
/// loaded once per side and page).
#[derive(Default)]
struct RowDiff {
    code: std::collections::HashMap<(Address, bool), Option<aergo_sql::Contract>>,
}

impl RowDiff {
    fn code(
        &mut self,
        a: &Address,
        to_side: bool,
        view: &dyn aergo_chain::state::StateView,
    ) -> Option<aergo_sql::Contract> {
        self.code
            .entry((*a, to_side))
            .or_insert_with(|| {
                aergo_chain::contracts::load(a, &aergo_chain::contracts::ReadKv { view })
                    .ok()
                    .flatten()
            })
            .clone()
    }

    /// A changed row: its table, key columns and the cells that differ (all of them for an
    /// added or removed row); `None` when no catalog knows the table.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        a: &Address,
        table: u32,
        pk: &[u8],
        c: &aergo_chain::chain::Change,
        from_view: &dyn aergo_chain::state::StateView,
        to_view: &dyn aergo_chain::state::StateView,
        status: &str,
    ) -> Option<Value> {
        use aergo_sql::rows;
        let decode = |code: Option<aergo_sql::Contract>, bytes: &Option<Vec<u8>>| {
            let code = code?;
            let t = rows::table(code.catalog(), table)?.clone();
            // A value that does not decode reads as raw bytes, not as an absent row.
            let row = match bytes {
                Some(b) => Some(rows::decode(&t, b).ok()?),
                None => None,
            };
            Some((t, row))
        };
        let from = decode(self.code(a, false, from_view), &c.from);
        let to = decode(self.code(a, true, to_view), &c.to);
        if (c.from.is_some() && from.is_none()) || (c.to.is_some() && to.is_none()) {
            return None;
        }
        let t = to.as_ref().or(from.as_ref()).map(|(t, _)| t.clone())?;
        let (fr, tr) = (from.and_then(|(_, r)| r), to.and_then(|(_, r)| r));
        let text = |v: Option<&aergo_sql::Value>| -> Value {
            match v {
                None | Some(aergo_sql::Value::Null) => Value::Null,
                Some(v) => Value::String(v.to_text()),
            }
        };
        let any = tr.as_ref().or(fr.as_ref());
        let key: Vec<Value> = if t.pk.is_empty() {
            vec![Value::String(hex::encode(pk))]
        } else {
            t.pk.iter()
                .map(|&i| text(any.and_then(|r| r.get(i))))
                .collect()
        };
        let cells: Vec<Value> = t
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, col)| {
                let (f, to) = (
                    fr.as_ref().and_then(|r| r.get(i)),
                    tr.as_ref().and_then(|r| r.get(i)),
                );
                let same = match (f, to) {
                    (Some(x), Some(y)) => rows::same_cell(x, y),
                    _ => false,
                };
                (!same).then(|| json!({"column": col.name, "from": text(f), "to": text(to)}))
            })
            .collect();
        Some(json!({
            "kind": "row", "contract": a.encode(), "table": t.name, "key": key,
            "status": status, "cells": cells,
        }))
    }
}

/// `merge_preview`: what `aergo merge SOURCE --dry-run` shows — the candidates a merge of
/// branch `source` (up to `source_height`, default its final tip) would carry and which would
/// be left out, executed on this chain's tip without writing anything.
fn merge_preview(node: &Node, p: &Value) -> MResult {
    let source = p_str(p, "source")?;
    if let Some(e) = aergo_types::branch::name_error(source) {
        return Err(RpcFail::params(e));
    }
    let height = match p_u64(p, "source_height")? {
        Some(h) => h,
        // Not hosted: `plan` says whether the branch exists at all.
        None => node
            .branches
            .get(source)
            .map(|h| h.node.chain.finalized_height())
            .unwrap_or(u64::MAX),
    };
    let op = aergo_types::branch::MergeOp {
        source: source.to_string(),
        source_height: height,
    };
    let (mref, blocks) = crate::branches::plan_blocks(node, &op)
        .map_err(|e| RpcFail::new(codes::MERGE_REFUSED, e))?;
    let parts = crate::branches::plan_parts(node, &op, &blocks)
        .map_err(|e| RpcFail::new(codes::MERGE_REFUSED, e))?;
    let mut candidates = aergo_chain::branches::Candidates::default();
    for (_, c) in blocks {
        candidates.append(c);
    }
    // One dry run per part (a large merge spans consecutive merge blocks), each on the tip
    // as it is now: a later part's dependence on an earlier one is not previewed.
    let mut excluded = Vec::new();
    let mut start = 0usize;
    for &(end, count) in &parts {
        let slice = candidates
            .slice(start, count)
            .ok_or_else(|| RpcFail::new(codes::INTERNAL, "merge parts and candidates disagree"))?;
        let part_ref = aergo_types::block_ext::MergeRef {
            source_height: end,
            source_tip: if end == mref.source_height {
                mref.source_tip
            } else {
                node.branches
                    .get(source)
                    .and_then(|h| h.node.chain.hash_at(end).ok().flatten())
                    .unwrap_or(mref.source_tip)
            },
            ..mref.clone()
        };
        match node
            .chain
            .preview_merge_with(&node.key, &part_ref, &slice.txs, &slice.lineage)
        {
            Ok(x) => excluded.extend(x.into_iter().map(|mut e| {
                e.index += u32::try_from(start).unwrap_or(u32::MAX);
                e
            })),
            // A consistent merge with conflicts left: refused, each conflict in the message.
            Err(aergo_chain::ChainError::InvalidTx { reason, .. }) => {
                return Err(RpcFail::new(codes::MERGE_REFUSED, reason))
            }
            Err(e) => return Err(e.into()),
        }
        start += count;
    }
    let mut skip = excluded.iter().map(|e| e.index as usize).peekable();
    let mut merged = Vec::new();
    for (i, c) in candidates.txs.iter().enumerate() {
        if skip.peek() == Some(&i) {
            skip.next();
            continue;
        }
        merged.push(c.hash);
    }
    ok(json!({
        "source": source,
        "source_id": mref.source,
        "source_height": height,
        "source_tip": mref.source_tip,
        "strategy": aergo_chain::branches::strategy_name(mref.strategy),
        "parts": parts.iter().map(|(h, n)| json!({"source_height": h, "candidates": n})).collect::<Vec<_>>(),
        "candidates": candidates.len(),
        "merged": merged,
        "excluded": excluded.iter().map(|e| json!({
            "hash": candidates.txs.get(e.index as usize).map(|c| c.hash),
            "index": e.index,
            "reason": e.reason.as_str(),
            "detail": e.detail,
        })).collect::<Vec<_>>(),
    }))
}

fn p_str<'a>(p: &'a Value, k: &str) -> Result<&'a str, RpcFail> {
    p.get(k)
        .and_then(|v| v.as_str())
        .ok_or_else(|| RpcFail::params(format!("missing string parameter `{k}`")))
}
fn p_u64(p: &Value, k: &str) -> Result<Option<u64>, RpcFail> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            RpcFail::params(format!("parameter `{k}` must be a non-negative integer"))
        }),
    }
}
fn p_hash(p: &Value, k: &str) -> Result<Hash, RpcFail> {
    Hash::from_hex(p_str(p, k)?).map_err(|e| RpcFail::params(e.to_string()))
}
fn p_addr(p: &Value, k: &str) -> Result<Address, RpcFail> {
    Address::decode(p_str(p, k)?).map_err(|e| RpcFail::params(e.to_string()))
}
fn args_param(p: &Value) -> Result<Vec<String>, RpcFail> {
    match p.get("args") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(RpcFail::params("`args` holds strings, numbers or booleans")),
            })
            .collect(),
        Some(_) => Err(RpcFail::params("`args` must be an array")),
    }
}

pub(crate) fn ok<T: serde::Serialize>(v: T) -> MResult {
    serde_json::to_value(v).map_err(|e| RpcFail::new(codes::INTERNAL, e.to_string()))
}

/// Executes one method.
pub fn dispatch(node: &Node, method: &str, p: &Value) -> MResult {
    if !p.is_object() {
        return Err(RpcFail::params("params must be an object"));
    }
    let chain = &node.chain;
    match method {
        "branch_list" => branch_list(node),
        "admin_branch_accept" => {
            let name = p_str(p, "name")?;
            node.branches
                .accept(name)
                .map_err(|e| RpcFail::params(format!("{e:#}")))?;
            ok(json!({"accepted": name, "producer": node.address().encode()}))
        }
        "merge_preview" => merge_preview(node, p),
        "diff" => diff(node, p),
        "chain_info" => {
            let tip = chain.tip();
            let g = chain.genesis();
            let limits = chain.gas_limits()?;
            ok(ChainInfo {
                chain_id: chain.chain_id(),
                chain_name: g.chain_name.clone(),
                height: tip.header.height,
                best_hash: tip.hash,
                finalized_height: chain.finalized_height(),
                consensus: chain.engine().name().into(),
                block_interval_ms: chain.engine().block_interval_ms(),
                genesis_time_ms: g.timestamp_ms,
                best_time_ms: tip.header.timestamp_ms,
                base_gas: g.gas.base,
                per_byte_gas: g.gas.per_byte,
                min_gas_price: g.gas.min_price,
                tx_gas_cap: limits.tx_gas_cap,
                block_gas_limit: limits.block_gas_limit,
                sql_engine: aergo_chain::contracts::engine_at(g, tip.header.height + 1).number(),
            })
        }
        "node_status" => {
            let pool = node.mempool.lock();
            let h = chain.tip().header.height;
            ok(NodeStatus {
                version: env!("CARGO_PKG_VERSION").into(),
                node_address: node.address().encode(),
                producer: chain.engine().is_producer(&node.key.public()),
                peers: crate::node::count32(node.net.peers.lock().len()),
                mempool_size: pool.len() as u64,
                mempool_bytes: pool.bytes() as u64,
                syncing: node.net.syncing.load(Ordering::Relaxed),
                sync_current: h,
                sync_target: node.net.target.load(Ordering::Relaxed).max(h),
                uptime_secs: now_ms().saturating_sub(node.started_ms) / 1000,
                io_backend: chain.io().backend().to_string(),
                started_ms: node.started_ms,
                disk_low: node.disk.low(),
            })
        }
        "block" => {
            let full = p.get("full").and_then(|v| v.as_bool()).unwrap_or(false);
            let block = if let Some(h) = p_u64(p, "height")? {
                chain.block_by_height(h)?.ok_or_else(|| {
                    RpcFail::not_found(format!(
                        "no block at height {h} (best is {})",
                        chain.tip().header.height
                    ))
                })?
            } else if p.get("hash").is_some() {
                let h = p_hash(p, "hash")?;
                chain
                    .block_by_hash(&h)?
                    .ok_or_else(|| RpcFail::not_found(format!("no block {h}")))?
            } else {
                return Err(RpcFail::params("give `height` or `hash`"));
            };
            ok(block_json(node, &block, full)?)
        }
        "blocks" => {
            let best = chain.tip().header.height;
            let (from, to) = if let Some(n) = p_u64(p, "last")? {
                let n = n.clamp(1, 100);
                (best.saturating_sub(n - 1), best)
            } else {
                let from = p_u64(p, "from")?
                    .ok_or_else(|| RpcFail::params("give `last` or `from` and `to`"))?;
                let to = p_u64(p, "to")?.unwrap_or(best).min(best);
                if from > to {
                    return Ok(json!([]));
                }
                if to - from >= 100 {
                    return Err(RpcFail::params("at most 100 blocks per call"));
                }
                (from, to)
            };
            let mut out = Vec::new();
            for h in (from..=to).rev() {
                let Some(hash) = chain.hash_at(h)? else {
                    continue;
                };
                let Some(m) = chain.block_meta(&hash)? else {
                    continue;
                };
                out.push(BlockSummary {
                    hash,
                    height: m.height,
                    timestamp_ms: m.timestamp_ms,
                    producer: Address::from_public_key(&m.producer).encode(),
                    tx_count: m.tx_count,
                    size: m.size,
                    gas_used: m.gas_used,
                });
            }
            ok(out)
        }
        "tx" => {
            let h = p_hash(p, "hash")?;
            if let Some(loc) = chain.tx_location(&h)? {
                let block = chain
                    .block_by_hash(&loc.block_hash)?
                    .ok_or_else(|| RpcFail::not_found("block missing"))?;
                // A merge block's merged transactions follow its own.
                let merged = aergo_chain::branches::merged_txs(&block);
                let tx = block
                    .txs
                    .iter()
                    .chain(merged.iter().copied())
                    .nth(loc.index as usize)
                    .ok_or_else(|| RpcFail::new(codes::INTERNAL, "tx index out of range"))?;
                return ok(TxInfo {
                    tx: tx_json(tx),
                    status: "included".into(),
                    block_hash: Some(loc.block_hash),
                    block_height: Some(loc.height),
                    index: Some(loc.index),
                });
            }
            let pool = node.mempool.lock();
            match pool.get(&h) {
                Some(e) => ok(TxInfo {
                    tx: tx_json(&e.tx),
                    status: "pending".into(),
                    block_hash: None,
                    block_height: None,
                    index: None,
                }),
                None => Err(RpcFail::not_found(format!(
                    "no transaction {h} (neither included nor pending)"
                ))),
            }
        }
        "receipt" => {
            let h = p_hash(p, "hash")?;
            let loc = chain.tx_location(&h)?.ok_or_else(|| {
                if node.mempool.lock().get(&h).is_some() {
                    RpcFail::not_found(format!(
                        "transaction {h} is pending: no receipt until it is included"
                    ))
                } else {
                    RpcFail::not_found(format!("no receipt for {h}"))
                }
            })?;
            let r = &loc.receipt;
            let (status, error) = match &r.status {
                ReceiptStatus::Ok => ("ok", None),
                ReceiptStatus::Failed(m) => ("failed", Some(m.clone())),
            };
            let result = match std::str::from_utf8(&r.result) {
                Ok(s) => s.to_string(),
                Err(_) => hex::encode(&r.result),
            };
            ok(ReceiptJson {
                tx_hash: h,
                block_hash: loc.block_hash,
                block_height: loc.height,
                index: loc.index,
                status: status.into(),
                error,
                gas_used: r.gas_used,
                fee: Aer(r.fee),
                result,
                events: r
                    .events
                    .iter()
                    .map(|e| EventJson {
                        name: e.name.clone(),
                        data: e.data.clone(),
                    })
                    .collect(),
            })
        }
        "account" => {
            let a = p_addr(p, "address")?;
            let (acct, height, next_nonce) = match p_u64(p, "height")? {
                Some(h) => {
                    let acct = chain.account_at(&a, h)?;
                    let n = acct.nonce;
                    (acct, h, n)
                }
                None => {
                    let acct = chain.account_latest(&a)?;
                    // Promised in the pending block (a transaction kept from the promise log
                    // after a restart is there and not in the mempool) counts as pending.
                    let promised = crate::preconf::promised_nonce(node, &a).unwrap_or(0);
                    let next = node.mempool.lock().next_nonce(&a, acct.nonce.max(promised));
                    (acct, chain.tip().header.height, next)
                }
            };
            ok(AccountJson {
                address: a.encode(),
                balance: Aer(acct.balance),
                nonce: acct.nonce,
                next_nonce,
                height,
            })
        }
        "get_proof" => {
            let a = p_addr(p, "address")?;
            let h = p_u64(p, "height")?.unwrap_or(chain.tip().header.height);
            let (hdr, value, proof) = chain.account_proof(&a, h)?;
            ok(AccountProof {
                address: a.encode(),
                height: h,
                state_root: hdr.state_root,
                key: hex::encode(aergo_chain::state::account_key(&a)),
                value: value.map(hex::encode),
                proof: ProofJson {
                    leaf: proof.leaf.map(|l| ProofLeafJson {
                        key: l.key,
                        value_hash: l.value_hash,
                    }),
                    siblings: proof.siblings,
                },
            })
        }
        "send_tx" => {
            let hx = p_str(p, "tx")?;
            let bytes = hex::decode(hx.strip_prefix("0x").unwrap_or(hx))
                .map_err(|e| RpcFail::params(format!("`tx` is not hex: {e}")))?;
            match p.get("wait") {
                None | Some(Value::Null) => ok(SendResult {
                    hash: node.admit(&bytes)?,
                }),
                Some(Value::String(w)) if w == "preconfirmed" => send_preconfirmed(node, &bytes),
                Some(Value::String(w)) if w == "included" || w == "final" => {
                    let hash = node.admit(&bytes)?;
                    wait_receipt(node, hash, w == "final")
                }
                Some(_) => Err(RpcFail::params(
                    "`wait` must be \"preconfirmed\", \"included\" or \"final\" (or absent)",
                )),
            }
        }
        "preconf_status" => ok(node.preconf.status_on(&node.chain)),
        "pipeline_status" => ok(pipeline_status(node)),
        "mempool" => {
            let limit = p_u64(p, "limit")?.unwrap_or(100).min(1000) as usize;
            let pool = node.mempool.lock();
            let now = now_ms();
            let txs = pool
                .list(limit)
                .into_iter()
                .map(|e| PendingTx {
                    hash: e.tx.hash,
                    from: e.tx.tx.sender().encode(),
                    nonce: e.tx.tx.nonce,
                    gas_price: Aer(e.tx.tx.gas_price),
                    fee: Aer(e.tx.tx.max_fee().unwrap_or(0)),
                    age_ms: now.saturating_sub(e.arrived_ms),
                })
                .collect();
            ok(MempoolJson {
                count: pool.len() as u64,
                bytes: pool.bytes() as u64,
                max_txs: pool.limits().max_txs as u64,
                max_bytes: pool.limits().max_bytes as u64,
                txs,
            })
        }
        "peers" => ok(node.net.peers.lock().clone()),
        "consensus_info" => consensus_info(node),
        "contract_query" => {
            let _permit = node
                .queries
                .try_acquire()
                .map_err(|e| RpcFail::new(codes::BUSY, e.to_string()))?;
            let a = p_addr(p, "address")?;
            let sql = p_str(p, "sql")?;
            let out = chain
                .contract_query(&a, sql, p_u64(p, "height")?)?
                .map_err(|e| RpcFail::new(codes::CONTRACT_ERROR, e))?;
            serde_json::from_str(&out.to_json())
                .map_err(|e| RpcFail::new(codes::INTERNAL, e.to_string()))
        }
        "contract_call_view" => {
            let _permit = node
                .queries
                .try_acquire()
                .map_err(|e| RpcFail::new(codes::BUSY, e.to_string()))?;
            let a = p_addr(p, "address")?;
            let f = p_str(p, "function")?;
            let args = args_param(p)?;
            let caller = match p.get("caller") {
                Some(_) => p_addr(p, "caller")?,
                None => a,
            };
            let out = chain
                .contract_view(&a, f, args, caller, p_u64(p, "height")?)?
                .map_err(|e| RpcFail::new(codes::CONTRACT_ERROR, e))?;
            serde_json::from_str(&out.to_json())
                .map_err(|e| RpcFail::new(codes::INTERNAL, e.to_string()))
        }
        "contract_abi" => {
            let a = p_addr(p, "address")?;
            let (abi, owner, engine) = chain.contract_abi(&a, p_u64(p, "height")?)?;
            Ok(json!({
                "address": a.encode(),
                "owner": owner,
                "engine": engine.number(),
                "functions": abi.functions.iter().map(|f| json!({
                    "name": f.name,
                    "params": f.params.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
                    "returns": f.returns,
                })).collect::<Vec<_>>(),
                "tables": abi.tables.iter().map(|t| json!({
                    "name": t.name,
                    "columns": t.columns.iter().map(|(n, ty, nn)| json!({"name": n, "type": ty, "not_null": nn})).collect::<Vec<_>>(),
                    "primary_key": t.primary_key,
                })).collect::<Vec<_>>(),
            }))
        }
        "repo_list" => {
            let limit = p_u64(p, "limit")?.unwrap_or(100).clamp(1, 1000) as usize;
            let after = match p.get("after") {
                None | Some(Value::Null) => None,
                Some(_) => Some(p_str(p, "after")?),
            };
            let view = chain.view_at(chain.tip().header.height)?;
            let regs = aergo_chain::repos::registrations_page(&view, after, limit)?;
            ok(regs.iter().map(|r| repo_json(node, r)).collect::<Vec<_>>())
        }
        "repo_show" => {
            let name = p_str(p, "name")?;
            if aergo_types::repo::name_error(name).is_some() {
                return Err(RpcFail::new(
                    codes::NO_REPO,
                    format!("no repository `{}`", shown(name)),
                ));
            }
            let view = chain.view_at(chain.tip().header.height)?;
            match aergo_chain::repos::registration(&view, name)? {
                Some(r) => ok(repo_json(node, &r)),
                None => Err(RpcFail::new(
                    codes::NO_REPO,
                    format!("no repository `{}`", shown(name)),
                )),
            }
        }
        "dd_info" => dd_info(node, p),
        "dd_resolve" => {
            let name = p_str(p, "name")?;
            let ledger = node
                .ledger
                .read()
                .clone()
                .ok_or_else(|| RpcFail::params("not a repository's directory"))?;
            let at = match p_u64(p, "height")? {
                Some(h) => h,
                None => ledger.tip().header.height,
            };
            if let Some(e) = aergo_types::repo::label_error("identifier", name) {
                return Err(RpcFail::params(e));
            }
            let view = chain.view_at(chain.finalized_height())?;
            let found = aergo_chain::directory::identifier(&view, name)?;
            match found {
                Some(i) if i.resolves_at(at) => Ok(json!({
                    "name": name, "kind": i.kind, "target": i.target, "valid_from": i.valid_from,
                    "revoked_at": i.revoked_at, "height": at,
                })),
                Some(i) => Err(RpcFail::not_found(format!(
                    "identifier `{name}` does not resolve at height {at} (valid from {}{})",
                    i.valid_from,
                    i.revoked_at
                        .map(|r| format!(", revoked at {r}"))
                        .unwrap_or_default()
                ))),
                None => Err(RpcFail::not_found(format!(
                    "no identifier `{}`",
                    shown(name)
                ))),
            }
        }
        "admin_set_empty_blocks" => {
            let on = p
                .get("enabled")
                .and_then(|v| v.as_bool())
                .ok_or_else(|| RpcFail::params("missing boolean `enabled`"))?;
            node.empty_blocks.store(on, Ordering::Relaxed);
            node.wake();
            Ok(json!(on))
        }
        "admin_inject_fault" => {
            let fault = p_str(p, "fault")?;
            node.faults
                .inject(fault)
                .map_err(|e| RpcFail::new(codes::INVALID_PARAMS, e))?;
            node.wake();
            Ok(json!(fault))
        }
        "subscribe" | "unsubscribe" => Err(RpcFail::new(
            codes::METHOD_NOT_FOUND,
            format!("`{method}` is available over WebSocket (/ws) only"),
        )),
        other => match crate::rpc_staking::dispatch(node, other, p) {
            Some(Ok(v)) => Ok(v),
            Some(Err((code, message))) => Err(RpcFail::new(code, message)),
            None => Err(RpcFail::new(
                codes::METHOD_NOT_FOUND,
                format!("unknown method `{other}`; see docs/RPC.md"),
            )),
        },
    }
}

/// Whether a batch is only `send_tx` calls to the root chain (each with an id), all without
/// `wait` (`Some(false)`) or all with `wait: "preconfirmed"` (`Some(true)`). Such a batch has
/// its signatures verified together, and pre-confirmed ones are admitted in order and then
/// awaited together, so the batch costs one group commit of the promise log.
fn send_batch(items: &[Value]) -> Option<bool> {
    let plain = |it: &Value| {
        it.get("jsonrpc") == Some(&json!("2.0"))
            && it.get("method") == Some(&json!("send_tx"))
            && !matches!(it.get("id"), None | Some(Value::Null))
            && it.pointer("/params/tx").is_some_and(|t| t.is_string())
            && it.pointer("/params/repo").is_none()
            && it.pointer("/params/branch").is_none()
    };
    if !items.iter().all(plain) {
        return None;
    }
    if items.iter().all(|it| it.pointer("/params/wait").is_none()) {
        return Some(false);
    }
    if items
        .iter()
        .all(|it| it.pointer("/params/wait") == Some(&json!("preconfirmed")))
    {
        return Some(true);
    }
    None
}

/// Runs a [`send_batch`]: the rate limit per item, one batch signature verification, the
/// admissions in order, then (pre-confirmed) the waits.
async fn send_batch_run(
    rpc: &Rpc,
    peer: SocketAddr,
    items: Vec<Value>,
    preconfirmed: bool,
) -> Vec<Value> {
    let allowed: Vec<bool> = items.iter().map(|_| rpc.allow(peer.ip())).collect();
    let node = rpc.node.clone();
    let res = tokio::task::spawn_blocking(move || {
        let mut decoded: Vec<(Value, Result<Vec<u8>, RpcFail>)> = Vec::with_capacity(items.len());
        for (it, ok) in items.iter().zip(allowed) {
            let id = it.get("id").cloned().unwrap_or(Value::Null);
            let r = if ok {
                let hx = it
                    .pointer("/params/tx")
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                hex::decode(hx.strip_prefix("0x").unwrap_or(hx))
                    .map_err(|e| RpcFail::params(format!("`tx` is not hex: {e}")))
            } else {
                Err(RpcFail::new(
                    codes::RATE_LIMITED,
                    "rate limit exceeded; slow down and retry",
                ))
            };
            decoded.push((id, r));
        }
        let bytes: Vec<&[u8]> = decoded
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|b| b.as_slice()))
            .collect();
        let mut checked = node.check_batch(&bytes).into_iter();
        let mut begun: Vec<(Value, Result<Begun, RpcFail>)> = Vec::with_capacity(decoded.len());
        // Senders with a forward in flight: a later transaction of one of them waits until
        // those answers are in, so the producer admits a sender's nonces in order.
        let mut forwarding = std::collections::HashSet::new();
        for (id, r) in decoded {
            let r = r.and_then(|b| {
                let c = checked
                    .next()
                    .unwrap_or(Err(AdmitError::Chain("batch check out of step".into())));
                if preconfirmed {
                    let sender = c.as_ref().ok().map(|t| t.tx.sender());
                    match preconf_begin_checked(&node, || c, false, false) {
                        Ok((h, w)) => Ok(Begun::Local(h, w, b)),
                        // Not the producer: forwarded to it now (the batch's forwards go out
                        // before any answer is awaited), answered below.
                        Err(f) if is_not_producer(&f) => {
                            if sender.is_some_and(|s| forwarding.contains(&s)) {
                                finish_forwards(&node, &mut begun);
                                forwarding.clear();
                            }
                            forwarding.extend(sender);
                            crate::forward::relay_begin(&node, &b, f)
                                .map(|fw| Begun::Forwarded(Box::new(fw)))
                        }
                        Err(f) => Err(f),
                    }
                } else {
                    let h = node.admit_checked(c?)?;
                    Ok(Begun::Done(ok(SendResult { hash: h })))
                }
            });
            begun.push((id, r));
        }
        let deadline = std::time::Instant::now() + preconf_deadline(&node);
        begun
            .into_iter()
            .map(|(id, r)| {
                let v = r.and_then(|x| match x {
                    Begun::Local(h, w, b) => preconf_finish(&node, h, &w, deadline, &b),
                    Begun::Forwarded(fw) => crate::forward::relay_finish(&node, *fw),
                    Begun::Done(v) => v,
                });
                match v {
                    Ok(v) => json!({"jsonrpc": "2.0", "id": id, "result": v}),
                    Err(f) => err_response(id, f),
                }
            })
            .collect::<Vec<Value>>()
    })
    .await;
    res.unwrap_or_else(|e| {
        vec![err_response(
            Value::Null,
            RpcFail::new(codes::INTERNAL, format!("handler failed: {e}")),
        )]
    })
}

/// Whether a failure is the `not_producer` refusal (the send can be forwarded).
fn is_not_producer(f: &RpcFail) -> bool {
    f.data
        .as_ref()
        .and_then(|d| d.get("reason"))
        .is_some_and(|r| r == "not_producer")
}

/// One send of a [`send_batch`] once begun.
enum Begun {
    /// Admitted here, waiting for this node's promise.
    Local(Hash, crate::preconf::Waiter, Vec<u8>),
    /// Forwarded to the slot's producer.
    Forwarded(Box<crate::forward::Forwarding>),
    /// Answered.
    Done(MResult),
}

/// Waits for the batch's forwards begun so far and keeps their answers.
fn finish_forwards(node: &Node, begun: &mut [(Value, Result<Begun, RpcFail>)]) {
    for (_, r) in begun.iter_mut() {
        if matches!(r, Ok(Begun::Forwarded(_))) {
            if let Ok(Begun::Forwarded(fw)) = std::mem::replace(r, Ok(Begun::Done(ok(())))) {
                *r = Ok(Begun::Done(crate::forward::relay_finish(node, *fw)));
            }
        }
    }
}

/// How long `send_tx` waits for a pre-confirmation: two block intervals and a second.
pub(crate) fn preconf_deadline(node: &Node) -> Duration {
    Duration::from_millis(
        node.chain
            .engine()
            .block_interval_ms()
            .saturating_mul(2)
            .saturating_add(1000),
    )
}

/// `send_tx` with `wait: "preconfirmed"`: admits the transaction and waits for the slot
/// producer's signed, durable promise. When this node is not the producer of an imminent
/// slot, nothing is admitted here: the transaction is forwarded to that producer over
/// libp2p and its answer relayed (`crate::forward::relay`).
fn send_preconfirmed(node: &Node, bytes: &[u8]) -> MResult {
    let (hash, w) = match preconf_begin(node, bytes) {
        Ok(x) => x,
        Err(f) if is_not_producer(&f) => return crate::forward::relay(node, bytes, f),
        Err(f) => return Err(f),
    };
    preconf_finish(
        node,
        hash,
        &w,
        std::time::Instant::now() + preconf_deadline(node),
        bytes,
    )
}

/// The first half of a pre-confirmed send: checks that this node produces an imminent
/// slot, decodes, registers the waiter and admits (in the caller's order).
fn preconf_begin(node: &Node, bytes: &[u8]) -> Result<(Hash, crate::preconf::Waiter), RpcFail> {
    preconf_begin_checked(node, || node.check(bytes), false, false)
}

/// [`preconf_begin`] with the transaction's checks given (`checked`: decode, rules,
/// signature — a batch verifies its signatures together). Shared by local clients and
/// transactions forwarded by peers (`crate::forward::serve`), which are never forwarded
/// again.
pub(crate) fn preconf_begin_checked(
    node: &Node,
    checked: impl FnOnce() -> Result<SignedTx, AdmitError>,
    forwarded: bool,
    async_task: bool,
) -> Result<(Hash, crate::preconf::Waiter), RpcFail> {
    if !node.preconf.enabled() {
        return Err(RpcFail {
            code: codes::PRECONF_UNAVAILABLE,
            message: "pre-confirmation is off on this node (node.preconfirm = false); send with wait \"included\"".into(),
            data: Some(json!({"reason": "off"})),
        });
    }
    let now = now_ms();
    let interval = node.chain.engine().block_interval_ms();
    let me = node.key.public();
    let mine = node
        .chain
        .next_slot(now, &me)?
        .is_some_and(|s| s.timestamp_ms <= now.saturating_add(interval.saturating_mul(2)))
        // Its pending block is open, or by the schedule it is the producer that pre-confirms
        // now (the next slot's; the one after in the current slot's last tenth). A producer
        // whose slot comes later forwards to that one rather than keep the client waiting. A
        // forwarded transaction skips this test: the relay chose this producer by its own
        // clock, which may differ by a few milliseconds at a slot's edge.
        && (forwarded
            || node.preconf.pending.lock().is_some()
            || crate::forward::target(node, now, false).is_none_or(|t| t == me));
    if !mine || node.net.syncing.load(Ordering::SeqCst) {
        let info = consensus_info(node).unwrap_or(Value::Null);
        let next = info
            .pointer("/upcoming/0/producer")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let who = next
            .clone()
            .unwrap_or_else(|| "the chain's producer".to_string());
        return Err(RpcFail {
            code: codes::PRECONF_UNAVAILABLE,
            message: format!(
                "this node ({}) does not produce the next slot: its producer is {who}; send the transaction to that producer's RPC for a pre-confirmation, or with wait \"included\"",
                node.address().encode()
            ),
            data: Some(json!({"reason": "not_producer", "producer": next})),
        });
    }
    let tx = checked()?;
    let hash = tx.hash;
    let w = node
        .preconf
        .wait_for(hash, async_task)
        .map_err(|m| RpcFail::new(codes::BUSY, m))?;
    // Not gossiped: the promise is this producer's, and another producer must not include
    // the transaction first (it goes on chain in this node's block; if this node fails,
    // the client resends).
    match node.admit_quiet(tx) {
        Ok(_) => {}
        // The same transaction sent through another node a moment ago, still waiting: this
        // client gets the same promise.
        Err(AdmitError::Mempool(aergo_chain::mempool::Reject::Duplicate(_))) if w.joined => {}
        Err(e) => {
            node.preconf.unwait(&hash, w.id);
            return Err(e.into());
        }
    }
    Ok((hash, w))
}

/// The second half: waits (until `deadline`) for the durable promise.
fn preconf_finish(
    node: &Node,
    hash: Hash,
    w: &crate::preconf::Waiter,
    deadline: std::time::Instant,
    bytes: &[u8],
) -> MResult {
    let p = preconf_wait(node, hash, w, deadline, bytes)?;
    ok(PreconfirmedResult {
        hash,
        preconfirmation: PreconfJson::of(&p),
    })
}

/// [`preconf_finish`]'s wait: the promise itself.
pub(crate) fn preconf_wait(
    node: &Node,
    hash: Hash,
    w: &crate::preconf::Waiter,
    deadline: std::time::Instant,
    bytes: &[u8],
) -> Result<Arc<aergo_types::preconf::Preconfirmation>, RpcFail> {
    let got = match &w.rx {
        crate::preconf::WaitRx::Blocking(rx) => rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .ok(),
        crate::preconf::WaitRx::Async(_) => {
            return Err(RpcFail::new(
                codes::INTERNAL,
                "an async waiter was waited for on a thread (a bug)",
            ))
        }
    };
    preconf_answered(node, hash, w, got, bytes)
}

/// What a waiter got (`None`: nothing before its deadline), as the client's answer.
fn preconf_answered(
    node: &Node,
    hash: Hash,
    w: &crate::preconf::Waiter,
    got: Option<crate::preconf::Answer>,
    bytes: &[u8],
) -> Result<Arc<aergo_types::preconf::Preconfirmation>, RpcFail> {
    match got {
        Some(Ok(p)) => {
            // Promised: now the other nodes may learn it (later nonces of the sender sent
            // elsewhere are then no gap), while this producer's block is next.
            node.net.send(crate::node::Outbound::Tx(bytes.to_vec()));
            Ok(p)
        }
        Some(Err(m)) => Err(RpcFail {
            code: codes::TX_REJECTED,
            message: format!("transaction rejected: {m}"),
            data: Some(json!({"reason": "execution", "hash": hash})),
        }),
        None => {
            node.preconf.unwait(&hash, w.id);
            Err(RpcFail {
                code: codes::PRECONF_UNAVAILABLE,
                message: format!(
                    "transaction {hash} is pending but was not pre-confirmed in time (about two block intervals, {} ms each: a full block or a slot change); wait for its receipt",
                    node.chain.engine().block_interval_ms()
                ),
                data: Some(json!({"reason": "timeout", "hash": hash})),
            })
        }
    }
}

/// Whether `params.tx` (hex) encodes a native transfer: its kind byte, after the version
/// byte, without decoding the rest (a malformed transaction is refused by the full decode
/// either way).
fn names_transfer(params: &Value) -> bool {
    let Some(hx) = params.get("tx").and_then(Value::as_str) else {
        return false;
    };
    let hx = hx.strip_prefix("0x").unwrap_or(hx);
    hx.get(2..4)
        .and_then(|k| u8::from_str_radix(k, 16).ok())
        .is_some_and(|k| k == aergo_types::TxKind::Transfer as u8)
}

/// `send_tx` with `wait: "preconfirmed"` for a transfer on the ledger's main branch, on the async worker
/// that parsed the request (the JSON-RPC fast path): the checks and the admission (a
/// signature check and one pre-execution, ~0.1 ms of CPU) run inline, and the wait for the
/// durable promise is a task's, not a thread's. On the blocking pool each send was a thread
/// of its own doing that CPU work: with more runnable threads than cores, a send was
/// descheduled in the middle of its signature check or while it held the pending block's
/// lock, and the slowest 1% took several milliseconds more (docs/BENCHMARKS.md). A send this
/// node cannot pre-confirm (another producer's slot) is relayed from the blocking pool.
async fn send_preconfirmed_inline(node: Arc<Node>, params: &Value) -> MResult {
    let hx = p_str(params, "tx")?;
    let bytes = hex::decode(hx.strip_prefix("0x").unwrap_or(hx))
        .map_err(|e| RpcFail::params(format!("`tx` is not hex: {e}")))?;
    let (hash, mut w) = match preconf_begin_checked(&node, || node.check(&bytes), false, true) {
        Ok(x) => x,
        Err(f) if is_not_producer(&f) => {
            return tokio::task::spawn_blocking(move || crate::forward::relay(&node, &bytes, f))
                .await
                .map_err(|e| RpcFail::new(codes::INTERNAL, format!("handler failed: {e}")))?
        }
        Err(f) => return Err(f),
    };
    let got = match &mut w.rx {
        crate::preconf::WaitRx::Async(rx) => tokio::time::timeout(preconf_deadline(&node), rx)
            .await
            .ok()
            .and_then(Result::ok),
        crate::preconf::WaitRx::Blocking(_) => {
            return Err(RpcFail::new(
                codes::INTERNAL,
                "a thread's waiter was awaited by a task (a bug)",
            ))
        }
    };
    let p = preconf_answered(&node, hash, &w, got, &bytes)?;
    ok(PreconfirmedResult {
        hash,
        preconfirmation: PreconfJson::of(&p),
    })
}

/// `send_tx` with `wait: "included"` or `"final"`: the receipt once the transaction is in
/// a block (and that block is final), within 60 s.
fn wait_receipt(node: &Node, hash: Hash, final_: bool) -> MResult {
    // Each wait holds a blocking thread for up to 60 s: at most this many at once; the
    // transaction is admitted either way, and the client can poll `receipt` instead.
    const MAX_RECEIPT_WAITS: usize = 256;
    static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_RECEIPT_WAITS {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        return Err(RpcFail {
            code: codes::BUSY,
            message: format!(
                "transaction {hash} is pending; {MAX_RECEIPT_WAITS} clients already wait for receipts: poll `receipt`"
            ),
            data: Some(json!({"reason": "busy", "hash": hash})),
        });
    }
    let _slot = Slot;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(loc) = node.chain.tx_location(&hash)? {
            if !final_ || loc.height <= node.chain.finalized_height() {
                return dispatch(node, "receipt", &json!({"hash": hash}));
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(RpcFail {
                code: codes::BUSY,
                message: format!(
                    "transaction {hash} is pending: not {} within 60 s; poll `receipt`",
                    if final_ { "final" } else { "included" }
                ),
                data: Some(json!({"reason": "timeout", "hash": hash})),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn consensus_info(node: &Node) -> MResult {
    let chain = &node.chain;
    let tip = chain.tip();
    let net = &node.net;
    let identity = net.identity.lock().clone();
    let mut v = json!({
        "engine": chain.engine().name(),
        "block_interval_ms": chain.engine().block_interval_ms(),
        "height": tip.header.height,
        "lib_height": chain.finalized_height(),
        "lib_hash": chain.hash_at(chain.finalized_height())?,
        "side_blocks": chain.side_len(),
        "side_bytes": chain.side_bytes(),
        "reorgs": net.reorgs.load(Ordering::Relaxed),
        "rejected_blocks": net.rejected_blocks.load(Ordering::Relaxed),
        "early_blocks": net.early_blocks.load(Ordering::Relaxed),
        "now_ms": now_ms(),
        "synced_blocks": net.synced_blocks.load(Ordering::Relaxed),
        "gossip_blocks": net.gossip_blocks.load(Ordering::Relaxed),
        "peer_id": identity.as_ref().map(|i| i.0.clone()),
        "listen_addrs": identity.map(|i| i.1).unwrap_or_default(),
    });
    if let Some(st) = chain.dpos_status()? {
        let p = &st.params;
        let now = now_ms();
        let slot = p.slot_of(now).unwrap_or(0);
        let missed = missed_slots(chain, &st, slot)?;
        let index = |k: &aergo_types::PublicKey| {
            let s = st.scores.get(k);
            json!({
                "address": Address::from_public_key(k).encode(),
                "score": s.score,
                "standing": format!("{:?}", s.standing).to_lowercase(),
                "missed_slots": missed.get(k).copied().unwrap_or(0),
            })
        };
        let upcoming: Vec<Value> = (slot..slot + 8)
            .filter_map(|s| {
                let r = p.round_of(s);
                if r != st.schedule.round {
                    return None;
                }
                st.schedule
                    .producer_at(s - p.round_start(r))
                    .map(|k| json!({"slot": s, "producer": Address::from_public_key(&k).encode()}))
            })
            .collect();
        v["dpos"] = json!({
            "slot": slot,
            "round": st.schedule.round,
            "round_slots": p.round_slots,
            "bp_count": p.bp_count,
            "probation": st.schedule.probation.iter().map(index).collect::<Vec<_>>(),
            "active": st.schedule.active.iter().map(index).collect::<Vec<_>>(),
            "upcoming": upcoming,
            "me_scheduled": st.schedule.members().contains(&node.key.public()),
        });
    }
    if let Some(st) = chain.poa_status() {
        let p = &st.params;
        let slot = p.slot_of(now_ms()).unwrap_or(0);
        let upcoming: Vec<Value> = (slot..slot + 8)
            .filter_map(|s| {
                p.producer_of(s)
                    .map(|k| json!({"slot": s, "producer": Address::from_public_key(&k).encode()}))
            })
            .collect();
        v["poa"] = json!({
            "slot": slot,
            "producers": p
                .producers
                .iter()
                .map(|k| Address::from_public_key(k).encode())
                .collect::<Vec<_>>(),
            "skip_empty_slots": p.skip_empty_slots,
            "upcoming": upcoming,
            "me_scheduled": p.producers.contains(&node.key.public()),
        });
    }
    Ok(v)
}

/// Slots of the tip's round before `now_slot` that have no block on the best chain, counted per
/// scheduled BP: a BP with missed slots has no node producing for it (or a broken one).
fn missed_slots(
    chain: &aergo_chain::Chain,
    st: &aergo_chain::chain::DposStatus,
    now_slot: u64,
) -> Result<std::collections::HashMap<aergo_types::PublicKey, u64>, RpcFail> {
    let p = &st.params;
    let start = p.round_start(st.schedule.round);
    let mut produced = std::collections::HashSet::new();
    let mut h = chain.tip().header.height;
    while h > 0 {
        let Some(m) = chain
            .hash_at(h)?
            .and_then(|hash| chain.block_meta(&hash).ok().flatten())
        else {
            break;
        };
        match p.slot_of(m.timestamp_ms) {
            Some(s) if s >= start => {
                produced.insert(s);
            }
            _ => break,
        }
        h -= 1;
    }
    let mut missed = std::collections::HashMap::new();
    for s in start..now_slot {
        if p.round_of(s) != st.schedule.round || produced.contains(&s) {
            continue;
        }
        if let Some(k) = st.schedule.producer_at(s - start) {
            *missed.entry(k).or_insert(0u64) += 1;
        }
    }
    Ok(missed)
}

fn tx_json(t: &SignedTx) -> TxJson {
    let kind = serde_json::to_value(t.tx.kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    TxJson {
        hash: t.hash,
        kind,
        from: t.tx.sender().encode(),
        to: t.tx.to.map(|a| a.encode()),
        nonce: t.tx.nonce,
        amount: Aer(t.tx.amount),
        payload: hex::encode(&t.tx.payload),
        gas_limit: t.tx.gas_limit,
        gas_price: Aer(t.tx.gas_price),
        chain_id: t.tx.chain_id,
        signature: t.signature.to_hex(),
        size: crate::node::count32(t.size),
    }
}

fn block_json(node: &Node, b: &Block, full: bool) -> Result<BlockJson, RpcFail> {
    let hash = b.hash();
    let meta = node.chain.block_meta(&hash)?;
    let (size, gas) = meta
        .map(|m| (m.size, m.gas_used))
        .unwrap_or((crate::node::count32(b.encode().len()), 0));
    let txs = b
        .txs
        .iter()
        .map(|t| {
            if full {
                serde_json::to_value(tx_json(t)).unwrap_or(Value::Null)
            } else {
                json!(t.hash)
            }
        })
        .collect();
    Ok(BlockJson {
        summary: Node::summary(b, size, gas),
        parent_hash: b.header.parent,
        tx_root: b.header.tx_root,
        receipts_root: b.header.receipts_root,
        state_root: b.header.state_root,
        consensus: hex::encode(&b.header.consensus),
        signature: b.header.signature.to_hex(),
        header: hex::encode(b.header.encode()),
        txs,
        merge: merge_json(node, b)?,
    })
}

fn merge_json(node: &Node, b: &Block) -> Result<Option<aergo_rpc::types::MergeJson>, RpcFail> {
    let (Some(m), Some(section)) = (&b.header.ext.merge, &b.body_ext.merge) else {
        return Ok(None);
    };
    // The source's name, from the records of the chain at the merge block.
    let view = node.chain.view_at(b.header.height)?;
    let access = node.chain.branch_access(Some(&b.header))?;
    let source = aergo_chain::branches::Records::new(&view, access.as_deref())
        .by_id(&m.source)?
        .map(|(n, _)| n);
    Ok(Some(aergo_rpc::types::MergeJson {
        source,
        source_id: m.source,
        source_tip: m.source_tip,
        source_height: m.source_height,
        strategy: match m.strategy {
            aergo_types::block_ext::MergeStrategy::Auto => "auto".into(),
            aergo_types::block_ext::MergeStrategy::Consistent => "consistent".into(),
        },
        merged: aergo_chain::branches::merged_txs(b)
            .iter()
            .map(|t| t.hash)
            .collect(),
        excluded: section
            .excluded
            .iter()
            .filter_map(|e| {
                let c = section.candidates.get(e.index as usize)?;
                Some(aergo_rpc::types::ExcludedJson {
                    hash: c.hash,
                    reason: e.reason.as_str().into(),
                    detail: e.detail.clone(),
                })
            })
            .collect(),
    }))
}

/// The stages' counters, with the queues in front of them read now: the mempool before
/// assembly, the transaction gossip queue before publication.
fn pipeline_status(node: &Node) -> aergo_rpc::types::PipelineStatusJson {
    use aergo_chain::stages::STAGES;
    STAGES
        .assemble
        .set_queue(u64::try_from(node.mempool.lock().len()).unwrap_or(u64::MAX));
    STAGES
        .publish
        .set_queue(u64::try_from(node.net.tx_gossip_waiting()).unwrap_or(u64::MAX));
    aergo_rpc::types::PipelineStatusJson {
        stages: STAGES
            .all()
            .iter()
            .map(|s| {
                let r = s.read();
                aergo_rpc::types::StageJson {
                    name: r.name.into(),
                    runs: r.runs,
                    items: r.items,
                    busy_us: r.busy_us,
                    inside: r.inside,
                    queue: r.queue,
                }
            })
            .collect(),
        dtt_width: node.metrics.dtt_width_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        exec_workers: aergo_chain::parallel::workers() as u64,
    }
}

async fn metrics(State(rpc): State<Rpc>) -> HttpResponse {
    let n = &rpc.node;
    let tip = n.chain.tip();
    let (size, bytes) = {
        let p = n.mempool.lock();
        (p.len(), p.bytes())
    };
    let m = &n.metrics;
    let blocks = m.blocks_total.load(Ordering::Relaxed);
    let sum = m.commit_us_sum.load(Ordering::Relaxed) as f64 / 1e6;
    let io = n.chain.io().stats();
    let text = format!(
        "# HELP aergo_height Best block height.\n# TYPE aergo_height gauge\naergo_height {}\n\
# HELP aergo_finalized_height Last final height.\n# TYPE aergo_finalized_height gauge\naergo_finalized_height {}\n\
# HELP aergo_mempool_size Pending transactions.\n# TYPE aergo_mempool_size gauge\naergo_mempool_size {}\n\
# HELP aergo_mempool_bytes Pending bytes.\n# TYPE aergo_mempool_bytes gauge\naergo_mempool_bytes {}\n\
# HELP aergo_txs_total Transactions committed since start.\n# TYPE aergo_txs_total counter\naergo_txs_total {}\n\
# HELP aergo_tx_per_second Transactions per second over the last minute.\n# TYPE aergo_tx_per_second gauge\naergo_tx_per_second {:.3}\n\
# HELP aergo_block_commit_seconds Block assembly and commit latency.\n# TYPE aergo_block_commit_seconds summary\naergo_block_commit_seconds_sum {:.6}\naergo_block_commit_seconds_count {}\n\
# HELP aergo_block_commit_last_seconds Latency of the last block commit.\n# TYPE aergo_block_commit_last_seconds gauge\naergo_block_commit_last_seconds {:.6}\n\
# HELP aergo_io_backend File I/O backend in use.\n# TYPE aergo_io_backend gauge\naergo_io_backend{{backend=\"{}\"}} 1\n\
# HELP aergo_io_ops_total Block log I/O operations completed.\n# TYPE aergo_io_ops_total counter\naergo_io_ops_total {}\n",
        tip.header.height,
        n.chain.finalized_height(),
        size,
        bytes,
        m.txs_total.load(Ordering::Relaxed),
        m.tps_1m(now_ms()),
        sum,
        blocks,
        m.commit_us_last.load(Ordering::Relaxed) as f64 / 1e6,
        io.backend,
        io.completed,
    );
    let text = format!(
        "{text}# HELP aergo_gossip_tx_queue Transactions waiting to be gossiped.\n# TYPE aergo_gossip_tx_queue gauge\naergo_gossip_tx_queue {}\n\
# HELP aergo_gossip_tx_dropped_total Transaction gossip dropped on a full queue.\n# TYPE aergo_gossip_tx_dropped_total counter\naergo_gossip_tx_dropped_total {}\n",
        n.net.tx_gossip_waiting(),
        n.net.gossip_tx_dropped.load(Ordering::Relaxed),
    );
    let pc = n.preconf.status_on(&n.chain);
    let text = format!(
        "{text}# HELP aergo_dtt_width The last block's DTT width: transactions runnable at once on average (0: no DTT).
# TYPE aergo_dtt_width gauge
aergo_dtt_width {:.3}
# HELP aergo_exec_workers Validation workers (parallel execution along the DTT).
# TYPE aergo_exec_workers gauge
aergo_exec_workers {}
# HELP aergo_preconf_promised_total Pre-confirmations made since start.
# TYPE aergo_preconf_promised_total counter
aergo_preconf_promised_total {}
# HELP aergo_preconf_broken_total Logged promises a restart could not keep.
# TYPE aergo_preconf_broken_total counter
aergo_preconf_broken_total {}
# HELP aergo_preconf_sequence Transactions promised in the open pending block.
# TYPE aergo_preconf_sequence gauge
aergo_preconf_sequence {}
# HELP aergo_preconf_latency_seconds Admission to durable promise over the last minute.
# TYPE aergo_preconf_latency_seconds gauge
aergo_preconf_latency_seconds{{quantile=\"0.5\"}} {:.6}
aergo_preconf_latency_seconds{{quantile=\"0.99\"}} {:.6}
# HELP aergo_preconf_evidence Producers convicted of a broken pre-confirmation on this chain.
# TYPE aergo_preconf_evidence gauge
aergo_preconf_evidence {}
# HELP aergo_preconf_forwarded_total Pre-confirmed sends this node forwarded to the slot's producer, by outcome.
# TYPE aergo_preconf_forwarded_total counter
aergo_preconf_forwarded_total{{outcome=\"promised\"}} {}
aergo_preconf_forwarded_total{{outcome=\"refused\"}} {}
# HELP aergo_preconf_forwards_served_total Forwarded sends this node served as the producer.
# TYPE aergo_preconf_forwards_served_total counter
aergo_preconf_forwards_served_total {}
# HELP aergo_preconf_forward_queue Forwarded sends waiting for this producer's pending block.
# TYPE aergo_preconf_forward_queue gauge
aergo_preconf_forward_queue {}
",
        m.dtt_width_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        aergo_chain::parallel::workers(),
        pc.promised,
        pc.broken,
        pc.sequence_length,
        pc.p50_us.unwrap_or(0) as f64 / 1e6,
        pc.p99_us.unwrap_or(0) as f64 / 1e6,
        pc.evidence,
        n.preconf.forwarded.0.load(Ordering::Relaxed),
        n.preconf.forwarded.1.load(Ordering::Relaxed),
        n.preconf.forwards_served.load(Ordering::Relaxed),
        n.preconf.queued.0.load(Ordering::Relaxed),
    );
    let pipe = pipeline_status(n);
    let mut text = text;
    text.push_str(
        "# HELP aergo_stage_items_total Items a stage handled (transactions; blocks for commit and publish).\n# TYPE aergo_stage_items_total counter\n",
    );
    for s in &pipe.stages {
        text.push_str(&format!(
            "aergo_stage_items_total{{stage=\"{}\"}} {}\n",
            s.name, s.items
        ));
    }
    text.push_str(
        "# HELP aergo_stage_seconds Time in a stage per run.\n# TYPE aergo_stage_seconds summary\n",
    );
    for s in &pipe.stages {
        text.push_str(&format!(
            "aergo_stage_seconds_sum{{stage=\"{}\"}} {:.6}\naergo_stage_seconds_count{{stage=\"{}\"}} {}\n",
            s.name,
            s.busy_us as f64 / 1e6,
            s.name,
            s.runs
        ));
    }
    text.push_str(
        "# HELP aergo_stage_inside Runs of a stage in progress.\n# TYPE aergo_stage_inside gauge\n",
    );
    for s in &pipe.stages {
        text.push_str(&format!(
            "aergo_stage_inside{{stage=\"{}\"}} {}\n",
            s.name, s.inside
        ));
    }
    text.push_str("# HELP aergo_stage_queue Items waiting in front of a stage (bounded queues).\n# TYPE aergo_stage_queue gauge\n");
    for s in &pipe.stages {
        text.push_str(&format!(
            "aergo_stage_queue{{stage=\"{}\"}} {}\n",
            s.name, s.queue
        ));
    }
    let (sig_hits, sig_misses) = aergo_chain::sigcache::stats();
    text.push_str(&format!(
        "# HELP aergo_sigcache_lookups_total Block transactions whose signature was (hit) or was not (miss) verified before, at admission or in another block.\n# TYPE aergo_sigcache_lookups_total counter\naergo_sigcache_lookups_total{{result=\"hit\"}} {sig_hits}\naergo_sigcache_lookups_total{{result=\"miss\"}} {sig_misses}\n"
    ));
    let ws_open = rpc.ws_max.saturating_sub(rpc.ws_slots.available_permits());
    let text = format!(
        "{text}{}# HELP aergo_rpc_ws_connections WebSocket connections open.\n# TYPE aergo_rpc_ws_connections gauge\naergo_rpc_ws_connections {ws_open}\n",
        rpc.server.prometheus("aergo_rpc")
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn ws_upgrade(
    State(rpc): State<Rpc>,
    Extension(conn): Extension<ConnInfo>,
    ws: WebSocketUpgrade,
) -> HttpResponse {
    let addr_slot = if !rpc.ws_limit_loopback && aergo_os::http::is_loopback(conn.peer.ip()) {
        None
    } else {
        let key = aergo_os::http::ip_key(conn.peer.ip());
        let mut m = rpc.ws_per_ip.lock();
        let n = m.entry(key).or_insert(0);
        if *n >= rpc.ws_per_ip_max {
            return transport_error(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::RATE_LIMITED,
                format!(
                    "the node serves at most {} WebSocket connections per client address",
                    rpc.ws_per_ip_max
                ),
                "ws_connections_per_ip",
            );
        }
        *n += 1;
        Some(WsAddrSlot {
            map: rpc.ws_per_ip.clone(),
            key,
        })
    };
    let Ok(slot) = rpc.ws_slots.clone().try_acquire_owned() else {
        return transport_error(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::RATE_LIMITED,
            format!(
                "the node serves at most {} WebSocket connections; retry later",
                rpc.ws_max
            ),
            "ws_connections",
        );
    };
    let peer = conn.peer;
    ws.max_message_size(MAX_BODY)
        .max_frame_size(MAX_BODY)
        .on_upgrade(move |socket| async move {
            ws_session(rpc, peer, socket).await;
            drop(slot);
            drop(addr_slot);
        })
}

/// One WebSocket connection counted against its address; dropping it frees the count.
struct WsAddrSlot {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    key: IpAddr,
}

impl Drop for WsAddrSlot {
    fn drop(&mut self) {
        let mut m = self.map.lock();
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

fn rate_limited() -> RpcFail {
    RpcFail::new(
        codes::RATE_LIMITED,
        "rate limit exceeded; slow down and retry",
    )
}

async fn ws_session(rpc: Rpc, peer: SocketAddr, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(Message::Text(m)).await.is_err() {
                break;
            }
        }
    });
    let mut subs: HashMap<u64, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut next_sub = 1u64;
    while let Some(Ok(msg)) = stream.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            // Binary, ping and pong frames cost a request too; they get no answer.
            _ => {
                rpc.allow(peer.ip());
                continue;
            }
        };
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let reply = if rpc.allow(peer.ip()) {
                    RpcFail::new(codes::PARSE_ERROR, e.to_string())
                } else {
                    rate_limited()
                };
                let _ = out_tx
                    .send(err_response(Value::Null, reply).to_string())
                    .await;
                continue;
            }
        };
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let notification = is_notification(&v);
        let method = v.get("method").and_then(|m| m.as_str()).unwrap_or("");
        let own = matches!(method, "subscribe" | "unsubscribe");
        // Other methods are charged by `handle_one`.
        let reply = if own && !rpc.allow(peer.ip()) {
            err_response(id, rate_limited())
        } else {
            match method {
                "subscribe" if subs.len() >= rpc.ws_subscriptions => {
                    let f = RpcFail {
                        code: codes::RATE_LIMITED,
                        message: format!(
                            "at most {} subscriptions per connection; unsubscribe first",
                            rpc.ws_subscriptions
                        ),
                        data: Some(json!({"reason": "subscriptions"})),
                    };
                    err_response(id, f)
                }
                "subscribe" => {
                    let topic = v
                        .get("params")
                        .and_then(|p| p.get("topic"))
                        .and_then(|t| t.as_str())
                        .unwrap_or("");
                    let sub = next_sub;
                    let tx = out_tx.clone();
                    let task = match topic {
                        "new_blocks" => Some(forward(rpc.node.blocks_tx.subscribe(), tx, sub)),
                        "pending_txs" => Some(forward(rpc.node.pending_tx.subscribe(), tx, sub)),
                        "preconfirmations" => {
                            Some(forward(rpc.node.preconf.topic.subscribe(), tx, sub))
                        }
                        _ => None,
                    };
                    match task {
                        Some(t) => {
                            next_sub += 1;
                            subs.insert(sub, t);
                            json!({"jsonrpc": "2.0", "id": id, "result": sub})
                        }
                        None => err_response(
                            id,
                            RpcFail::params(
                                "topic must be `new_blocks`, `pending_txs` or `preconfirmations`",
                            ),
                        ),
                    }
                }
                "unsubscribe" => {
                    let sub = v
                        .get("params")
                        .and_then(|p| p.get("subscription"))
                        .and_then(|s| s.as_u64())
                        .unwrap_or(0);
                    match subs.remove(&sub) {
                        Some(t) => {
                            t.abort();
                            json!({"jsonrpc": "2.0", "id": id, "result": true})
                        }
                        None => {
                            err_response(id, RpcFail::not_found(format!("no subscription {sub}")))
                        }
                    }
                }
                _ => handle_one(&rpc, peer, Caller::Anonymous, v).await,
            }
        };
        if notification {
            continue;
        }
        if out_tx.send(reply.to_string()).await.is_err() {
            break;
        }
    }
    for (_, t) in subs {
        t.abort();
    }
    writer.abort();
}

fn forward<T: serde::Serialize + Clone + Send + 'static>(
    mut rx: tokio::sync::broadcast::Receiver<T>,
    tx: tokio::sync::mpsc::Sender<String>,
    sub: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(item) => {
                    let m = json!({"jsonrpc": "2.0", "method": "subscription", "params": {"subscription": sub, "result": item}});
                    if tx.send(m.to_string()).await.is_err() {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        skipped = n,
                        "slow WebSocket subscriber skipped notifications"
                    );
                }
                Err(_) => break,
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aergo_chain::{Chain, ChainOptions};
    use aergo_os::io::{IoConfig, IoService};
    use proptest::prelude::*;

    #[test]
    fn at_refs_become_branch_and_point() {
        let t = |p: Value| take_at(p).map_err(|f| f.message);
        assert_eq!(t(json!({"a": 1})).unwrap(), (json!({"a": 1}), None));
        assert_eq!(
            t(json!({"at": "12"})).unwrap(),
            (json!({}), Some(AtPoint::Height(12)))
        );
        assert_eq!(
            t(json!({"at": "feat@7"})).unwrap(),
            (json!({"branch": "feat"}), Some(AtPoint::Height(7)))
        );
        assert_eq!(
            t(json!({"at": "a/b~3", "branch": "a/b"})).unwrap(),
            (json!({"branch": "a/b"}), Some(AtPoint::Back(3)))
        );
        assert_eq!(
            t(json!({"at": "main", "branch": "main"})).unwrap(),
            (json!({}), Some(AtPoint::Tip))
        );
        for (bad, want) in [
            (json!({"at": "feat", "height": 3}), "not both"),
            (json!({"at": "feat", "branch": "x"}), "names branch"),
            (json!({"at": "feat@"}), "comes a number"),
            (json!({"at": "~"}), "comes a number"),
            (json!({"at": ""}), "must be a ref"),
            (json!({"at": 5}), "ref string"),
        ] {
            let e = t(bad.clone()).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    /// A dev-chain node in `dir` (also `forward`'s tests).
    pub(crate) fn node(dir: &std::path::Path) -> Node {
        let chain = Chain::open(ChainOptions {
            data_dir: dir.to_path_buf(),
            genesis: aergo_types::Genesis::dev(),
            io: IoService::start(IoConfig::default()),
        })
        .unwrap();
        Node::new(
            Arc::new(chain),
            aergo_types::Keypair::from_seed(&[3; 32]),
            Default::default(),
            true,
        )
    }

    const METHODS: &[&str] = &[
        "branch_list",
        "merge_preview",
        "diff",
        "admin_branch_accept",
        "dd_info",
        "dd_resolve",
        "repo_list",
        "repo_show",
        "chain_info",
        "consensus_info",
        "staking_account",
        "dpos_candidates",
        "dpos_governance",
        "node_status",
        "block",
        "blocks",
        "tx",
        "receipt",
        "account",
        "get_proof",
        "send_tx",
        "preconf_status",
        "pipeline_status",
        "mempool",
        "admin_set_empty_blocks",
        "admin_inject_fault",
        "subscribe",
        "peers",
        "contract_query",
        "contract_abi",
        "contract_call_view",
        "nope",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            "[0-9a-fA-Zx]{0,70}".prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("height".to_string()),
                        Just("hash".to_string()),
                        Just("address".to_string()),
                        Just("tx".to_string()),
                        Just("last".to_string()),
                        Just("from".to_string()),
                        Just("to".to_string()),
                        Just("full".to_string()),
                        Just("limit".to_string()),
                        ".{0,6}".prop_map(String::from)
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Random methods and parameters never panic and never change the chain.
        #[test]
        fn dispatch_never_panics(m in 0usize..METHODS.len(), params in json_value()) {
            thread_local!(static DIR: tempfile::TempDir = tempfile::tempdir().unwrap());
            thread_local!(static NODE: Node = DIR.with(|d| node(d.path())));
            NODE.with(|n| {
                let before = n.chain.tip().hash;
                let r = dispatch(n, METHODS[m], &params);
                if let Err(f) = &r {
                    prop_assert!(!f.message.is_empty());
                    prop_assert!(f.code < 0);
                }
                prop_assert_eq!(n.chain.tip().hash, before);
                Ok(())
            })?;
        }

        /// Any request body parses to a request or a clear JSON-RPC error.
        #[test]
        fn request_parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = serde_json::from_slice::<Value>(&body).map(serde_json::from_value::<Request>);
        }
    }

    /// Admin methods answer loopback clients only (no traffic: the peer address is given).
    /// The methods `dispatch` (and the staking dispatcher) answer, read from their source.
    fn dispatched_methods() -> Vec<String> {
        let mut out = Vec::new();
        for (src, start) in [
            (include_str!("rpc.rs"), "pub fn dispatch("),
            (include_str!("rpc_staking.rs"), "pub fn dispatch("),
        ] {
            let body = &src[src.find(start).unwrap()..];
            let body = &body[..body.find("\n}\n").unwrap()];
            for line in body.lines() {
                let t = line.trim();
                if !t.starts_with('"') || !t.contains("=>") {
                    continue;
                }
                let arm = &t[..t.find("=>").unwrap()];
                for name in arm.split('|') {
                    let name = name.trim().trim_matches('"');
                    if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    {
                        out.push(name.to_string());
                    }
                }
            }
        }
        out
    }

    /// A full transaction gossip queue refuses new transactions (retryable `busy`) instead
    /// of admitting what could never reach the producers; a send that still finds it full is
    /// dropped and counted; blocks are never dropped.
    /// A transfer of 1 aer from the dev key with `nonce` on `n`'s chain.
    fn dev_transfer(n: &Node, nonce: u64) -> aergo_types::SignedTx {
        let key = aergo_types::Keypair::dev();
        aergo_types::Tx {
            kind: aergo_types::tx::TxKind::Transfer,
            nonce,
            from: key.public(),
            to: Some(aergo_types::Address::from_public_key(
                &aergo_types::Keypair::from_seed(&[9; 32]).public(),
            )),
            amount: 1,
            payload: Vec::new(),
            gas_limit: 100_000,
            gas_price: n.chain.genesis().gas.min_price.0,
            chain_id: n.chain.chain_id(),
        }
        .sign(&key)
    }

    /// Only transfers take the async fast path of pre-confirmed sends.
    #[test]
    fn the_fast_path_takes_transfers_only() {
        let key = aergo_types::Keypair::dev();
        let tx = |kind| {
            aergo_types::Tx {
                kind,
                nonce: 0,
                from: key.public(),
                to: Some(aergo_types::Address::from_public_key(&key.public())),
                amount: 1,
                payload: Vec::new(),
                gas_limit: 100_000,
                gas_price: 1,
                chain_id: Hash::ZERO,
            }
            .sign(&key)
            .encode()
        };
        let transfer = hex::encode(tx(aergo_types::tx::TxKind::Transfer));
        let call = hex::encode(tx(aergo_types::tx::TxKind::Call));
        assert!(names_transfer(&json!({"tx": transfer})));
        assert!(names_transfer(&json!({"tx": format!("0x{transfer}")})));
        assert!(!names_transfer(&json!({"tx": call})));
        assert!(!names_transfer(&json!({"tx": "0"})));
        assert!(!names_transfer(&json!({"tx": "00zz"})));
        assert!(!names_transfer(&json!({"tx": 5})));
        assert!(!names_transfer(&json!({})));
    }

    #[test]
    fn a_full_gossip_queue_refuses_transactions_and_never_drops_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let n = node(dir.path());
        let (txs, mut trx) = tokio::sync::mpsc::channel(2);
        let (blocks, mut brx) = tokio::sync::mpsc::unbounded_channel();
        *n.net.outbound.lock() = Some(crate::node::Outbox {
            chain: n.chain.chain_id().0,
            txs,
            blocks,
        });
        let tx = |nonce: u64| dev_transfer(&n, nonce);
        let send = |nonce: u64| {
            dispatch(
                &n,
                "send_tx",
                &json!({"tx": hex::encode(tx(nonce).encode())}),
            )
            .map_err(|f| (f.message, f.data))
        };
        send(0).unwrap();
        send(1).unwrap();
        assert_eq!(n.net.tx_gossip_waiting(), 2);
        let (message, data) = send(2).unwrap_err();
        assert_eq!(data.unwrap()["reason"], "busy", "{message}");
        assert_eq!(
            n.mempool.lock().len(),
            2,
            "a refused transaction was admitted"
        );
        // A send racing past the check is dropped and counted, not queued without bound.
        n.net.send(crate::node::Outbound::Tx(vec![1]));
        assert_eq!(n.net.gossip_tx_dropped.load(Ordering::Relaxed), 1);
        // Blocks have their own queue.
        for _ in 0..10 {
            n.net.send(crate::node::Outbound::Block(vec![2]));
        }
        assert_eq!(std::iter::from_fn(|| brx.try_recv().ok()).count(), 10);
        // Once the network task drains it, transactions are admitted again.
        while trx.try_recv().is_ok() {}
        send(2).unwrap();
    }

    /// `send_tx` with `wait: "included"` answers the receipt once a block holds the
    /// transaction (it once asked a method that no longer existed).
    #[test]
    fn send_tx_waits_for_its_block() {
        let dir = tempfile::tempdir().unwrap();
        let n = Arc::new(node(dir.path()));
        let key = aergo_types::Keypair::dev();
        let tx = dev_transfer(&n, 0);
        let hash = tx.hash;
        let waiting = n.clone();
        let waiter = std::thread::spawn(move || {
            dispatch(
                &waiting,
                "send_tx",
                &json!({"tx": hex::encode(tx.encode()), "wait": "included"}),
            )
            .map_err(|f| f.message)
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while n.mempool.lock().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never admitted");
            std::thread::sleep(Duration::from_millis(5));
        }
        let txs = n.mempool.lock().candidates(10);
        n.chain
            .produce(&key, txs, crate::node::now_ms(), vec![])
            .unwrap();
        let r = waiter.join().unwrap().unwrap();
        assert!(r.to_string().contains(&hash.to_string()), "{r}");
        assert!(!r["status"].is_null(), "{r}");
    }

    /// docs/RPC.md documents every method the node serves, and the dispatch tests above call
    /// every one of them.
    #[test]
    fn every_dispatched_method_is_documented_and_tested() {
        let doc = include_str!("../../../docs/RPC.md");
        let methods = dispatched_methods();
        assert!(methods.len() >= 20, "parsed too few methods: {methods:?}");
        for m in &methods {
            assert!(
                doc.contains(&format!("| `{m}`")),
                "docs/RPC.md does not document `{m}` (a table row starting with | `{m}`)"
            );
            assert!(
                METHODS.contains(&m.as_str()) || m == "unsubscribe",
                "METHODS lacks `{m}`"
            );
        }
    }

    #[test]
    fn admin_methods_refuse_remote_clients() {
        let d = tempfile::tempdir().unwrap();
        let cfg = aergo_os::config::NodeConfig {
            rpc_rate_limit: 0,
            ..Default::default()
        };
        let rpc = Rpc::new(
            Arc::new(node(d.path())),
            RpcOptions::new(&cfg, "127.0.0.1:7845".parse().unwrap()),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": "admin_set_empty_blocks", "params": {"enabled": false}});
        let remote: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        let r = rt.block_on(handle_one(&rpc, remote, Caller::Anonymous, req.clone()));
        assert_eq!(r["error"]["code"], json!(codes::ADMIN_REFUSED), "{r}");
        assert!(
            rpc.node.empty_blocks.load(Ordering::Relaxed),
            "a refused call changes nothing"
        );
        let r = rt.block_on(handle_one(&rpc, local, Caller::Anonymous, req));
        assert_eq!(r["result"], json!(false), "{r}");
        assert!(!rpc.node.empty_blocks.load(Ordering::Relaxed));
        // Public methods answer remote clients.
        let r = rt.block_on(handle_one(
            &rpc,
            remote,
            Caller::Anonymous,
            json!({"jsonrpc": "2.0", "id": 2, "method": "chain_info"}),
        ));
        assert!(r.get("result").is_some(), "{r}");
    }

    #[test]
    fn contract_reads_beyond_the_concurrency_cap_are_busy() {
        let d = tempfile::tempdir().unwrap();
        let n = node(d.path());
        let held: Vec<_> = (0..n.queries.max())
            .map(|_| n.queries.try_acquire().unwrap())
            .collect();
        let some = aergo_types::Address::contract(&n.address(), 0).encode();
        for (m, p) in [
            (
                "contract_query",
                json!({"address": some, "sql": "SELECT 1"}),
            ),
            (
                "contract_call_view",
                json!({"address": some, "function": "f"}),
            ),
        ] {
            let f = dispatch(&n, m, &p).err().unwrap();
            assert_eq!(f.code, codes::BUSY, "{m}: {}", f.message);
            assert!(f.message.contains("retry"), "{}", f.message);
        }
        drop(held);
        // With a free place the same read gets its own answer (no such contract).
        let f = dispatch(
            &n,
            "contract_query",
            &json!({"address": some, "sql": "SELECT 1"}),
        )
        .err()
        .unwrap();
        assert_ne!(f.code, codes::BUSY);
        assert_eq!(n.queries.running(), 0);
    }

    #[test]
    fn typed_errors_for_bad_params() {
        let d = tempfile::tempdir().unwrap();
        let n = node(d.path());
        let code = |m: &str, p: Value| dispatch(&n, m, &p).err().map(|f| f.code);
        assert_eq!(code("block", json!({})), Some(codes::INVALID_PARAMS));
        assert_eq!(code("block", json!({"height": 5})), Some(codes::NOT_FOUND));
        assert_eq!(
            code("block", json!({"height": -1})),
            Some(codes::INVALID_PARAMS)
        );
        assert_eq!(
            code("account", json!({"address": 5})),
            Some(codes::INVALID_PARAMS)
        );
        assert_eq!(
            code("send_tx", json!({"tx": "00"})),
            Some(codes::TX_REJECTED)
        );
        assert_eq!(code("chain_info", json!([1])), Some(codes::INVALID_PARAMS));
        assert_eq!(code("subscribe", json!({})), Some(codes::METHOD_NOT_FOUND));
        assert!(dispatch(&n, "chain_info", &json!({})).is_ok());
    }
}
