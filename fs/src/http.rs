//! The HTTP API of `aergofs serve` (axum).
//!
//! | request | effect |
//! | --- | --- |
//! | `POST /assign` | a new file id: `{"fid","url"}` |
//! | `POST /` | assign + upload in one request: `201 {"fid","size","etag"}` |
//! | `PUT /FID`, `POST /FID` | upload to an assigned id |
//! | `GET /FID`, `HEAD /FID` | read (Content-Type, ETag = needle CRC32C, Last-Modified, Range) |
//! | `DELETE /FID` | delete (appends a tombstone) |
//! | `GET /status` | JSON statistics, including `io_backend` and the data disk's size |
//! | `GET /metrics` | Prometheus text |
//! | `POST /compact[?volume=N]` | compact one volume, or every volume over the threshold |
//!
//! Uploads carry the raw bytes as the body; the name comes from `?name=` or a
//! `Content-Disposition` filename, the MIME type from `Content-Type`. Bodies over the limit
//! get `413` (at once when `Content-Length` says so, before the body is read). A body is read
//! into memory counted against the upload budget ([`crate::upload`]): when other uploads hold
//! it for longer than the configured wait, `503` with `Retry-After`. `PUT /FID` writes only
//! an id the volume assigned (first write, with the assigned cookie) or replaces a live file
//! with its own cookie; `DELETE /FID` needs the stored cookie: anything else is `404` and
//! changes nothing (FORMAT.md "Writes and deletes"). When a token is configured (always when
//! listening beyond loopback), writes, deletes, assignment and compaction need
//! `Authorization: Bearer TOKEN` (scheme case-insensitive); reads need it only with the
//! `token` read policy. Files are served with `X-Content-Type-Options: nosniff` and a
//! `Content-Security-Policy` of `default-src 'none'; sandbox`, so an uploaded HTML or SVG
//! file cannot run script in the server's origin.

use crate::fid::Fid;
use crate::limits;
use crate::needle::{Meta, NeedleBuf, MAX_OVERHEAD};
use crate::store::{Store, StoreError};
use crate::upload::{BudgetError, Share, UploadBudget};
use crate::volume::VolumeError;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `Content-Security-Policy` of every served file: no script, no subresources, and a
/// sandboxed (unique) origin if a browser renders it as a document anyway.
pub const FILE_CSP: &str = "default-src 'none'; sandbox";

pub use crate::limits::{DEFAULT_UPLOAD_MEMORY, DEFAULT_UPLOAD_WAIT};

/// Who may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicy {
    /// Anyone who can reach the server (file ids carry a secret cookie).
    Open,
    /// Only holders of the token.
    Token,
}

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Required for writes when set.
    pub token: Option<String>,
    /// Read policy.
    pub read_policy: ReadPolicy,
    /// Largest accepted upload body in bytes.
    pub max_upload: usize,
    /// Bytes all uploads in flight may hold in memory together (at least `max_upload` plus
    /// [`MAX_OVERHEAD`], or the largest uploads are refused with `413`).
    pub upload_memory: usize,
    /// How long an upload waits for upload memory before `503 Retry-After`.
    pub upload_wait: Duration,
    /// The address clients should use (`url` in `/assign`).
    pub public_url: String,
}

#[derive(Default)]
struct Metrics {
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    reads: AtomicU64,
    read_bytes: AtomicU64,
    deletes: AtomicU64,
    assigns: AtomicU64,
    not_found: AtomicU64,
    errors: AtomicU64,
    rejected_auth: AtomicU64,
    too_large: AtomicU64,
    busy: AtomicU64,
}

struct App {
    store: Arc<Store>,
    cfg: HttpConfig,
    metrics: Metrics,
    budget: UploadBudget,
}

type AppState = Arc<App>;

/// An error response: status plus a JSON `{"error": ...}` body.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(limits::RETRY_AFTER_SECS),
            );
        }
        r
    }
}

fn store_error(app: &App, fid: Option<Fid>, e: StoreError) -> ApiError {
    let name = fid.map(|f| f.to_string()).unwrap_or_default();
    let (code, msg) = match &e {
        StoreError::UnknownVolume(v) => {
            (StatusCode::NOT_FOUND, format!("{name}: unknown volume {v}"))
        }
        StoreError::Volume(VolumeError::NotFound) => {
            (StatusCode::NOT_FOUND, format!("{name}: not found"))
        }
        StoreError::Volume(VolumeError::WriteRefused) => {
            (StatusCode::NOT_FOUND, format!("{name}: {e}"))
        }
        StoreError::Volume(VolumeError::KeysExhausted(_)) => {
            (StatusCode::INSUFFICIENT_STORAGE, e.to_string())
        }
        StoreError::Volume(VolumeError::Corrupt { detail, .. }) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{name}: stored needle is corrupt ({detail}); no data returned"),
        ),
        StoreError::Volume(VolumeError::ReadOnly(..)) => {
            (StatusCode::INSUFFICIENT_STORAGE, format!("{name}: {e}"))
        }
        StoreError::Volume(VolumeError::Needle(_)) => (StatusCode::BAD_REQUEST, e.to_string()),
        StoreError::Volume(VolumeError::AlreadyCompacting(_)) => {
            (StatusCode::CONFLICT, e.to_string())
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: {e}")),
    };
    if code == StatusCode::NOT_FOUND {
        app.metrics.not_found.fetch_add(1, Ordering::Relaxed);
    } else {
        app.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    ApiError(code, msg)
}

fn parse_fid(s: &str) -> Result<Fid, ApiError> {
    s.parse::<Fid>()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{s:?}: {e}")))
}

/// Builds the router.
pub fn router(store: Arc<Store>, cfg: HttpConfig) -> Router {
    let budget = UploadBudget::new(cfg.upload_memory, cfg.upload_wait);
    let app = Arc::new(App {
        store,
        cfg,
        metrics: Metrics::default(),
        budget,
    });
    Router::new()
        .route("/", post(upload_new))
        .route("/assign", post(assign))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/compact", post(compact))
        .route("/:fid", get(read).put(upload).post(upload).delete(delete))
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credentials of an `Authorization: Bearer TOKEN` value; the scheme is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_token(v: &str) -> Option<&str> {
    let (scheme, token) = v.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn auth(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &app.cfg.token else {
        return next.run(req).await;
    };
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
    if is_read && app.cfg.read_policy == ReadPolicy::Open {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match given {
        Some(g) if ct_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            app.metrics.rejected_auth.fetch_add(1, Ordering::Relaxed);
            ApiError(
                StatusCode::UNAUTHORIZED,
                "authorization required: send 'Authorization: Bearer TOKEN' (token file of the server)".into(),
            )
            .into_response()
        }
    }
}

async fn assign(State(app): State<AppState>) -> Result<Response, ApiError> {
    let fid = app
        .store
        .assign()
        .await
        .map_err(|e| store_error(&app, None, e))?;
    app.metrics.assigns.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({ "fid": fid.to_string(), "url": app.cfg.public_url })).into_response())
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

/// Reads the body up to `limit` bytes into a needle buffer, holding its memory in the
/// upload budget: 413 past the limit (at once for a declared `Content-Length`), 503 when the
/// budget stays busy, 400 if the client stops mid-way.
async fn read_body(
    app: &App,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<(NeedleBuf, Share), ApiError> {
    let limit = app.cfg.max_upload;
    let too_large = || {
        app.metrics.too_large.fetch_add(1, Ordering::Relaxed);
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("upload larger than the server's limit of {limit} bytes"),
        )
    };
    let budget_error = |e: BudgetError| match e {
        BudgetError::Busy { .. } => {
            app.metrics.busy.fetch_add(1, Ordering::Relaxed);
            ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        BudgetError::TooLarge { .. } => {
            app.metrics.too_large.fetch_add(1, Ordering::Relaxed);
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut share = Share::default();
    // With a declared length the whole buffer is taken (and paid for) before reading.
    let first = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    app.budget
        .grow(&mut share, first + MAX_OVERHEAD)
        .await
        .map_err(budget_error)?;
    let mut buf = NeedleBuf::with_capacity(first);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("upload interrupted, nothing stored: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            let have = buf.data_len();
            if have + data.len() > limit {
                return Err(too_large());
            }
            if buf.capacity() < have + data.len() + MAX_OVERHEAD {
                // No (or a wrong) Content-Length: grow by doubling, paying for the capacity
                // before allocating it.
                let cap = (have * 2)
                    .max(have + data.len())
                    .max(limits::UPLOAD_MIN_GROWTH)
                    .min(limit);
                app.budget
                    .grow(&mut share, cap + MAX_OVERHEAD)
                    .await
                    .map_err(budget_error)?;
                buf.reserve_exact(cap - have);
            }
            buf.extend(&data);
        }
    }
    if declared.is_some_and(|n| n != buf.data_len() as u64) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "body shorter than Content-Length, nothing stored".into(),
        ));
    }
    Ok((buf, share))
}

fn meta_from(headers: &HeaderMap, q: &UploadQuery) -> Result<Meta, ApiError> {
    let name = q.name.clone().or_else(|| {
        let cd = headers.get(header::CONTENT_DISPOSITION)?.to_str().ok()?;
        let f = cd
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("filename="))?;
        Some(f.trim_matches('"').to_string())
    });
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    for (what, v) in [("name", &name), ("content type", &mime)] {
        if v.as_ref().is_some_and(|s| s.len() > 255) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("{what} longer than 255 bytes"),
            ));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .ok();
    Ok(Meta {
        name: name.filter(|s| !s.is_empty()),
        mime: mime.filter(|s| !s.is_empty()),
        last_modified: now,
    })
}

async fn upload_new(
    State(app): State<AppState>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let meta = meta_from(&headers, &q)?;
    let (data, share) = read_body(&app, &headers, body).await?;
    let size = data.data_len();
    let (fid, w) = app
        .store
        .put_buf(data, &meta)
        .await
        .map_err(|e| store_error(&app, None, e))?;
    drop(share);
    app.metrics.uploads.fetch_add(1, Ordering::Relaxed);
    app.metrics
        .upload_bytes
        .fetch_add(size as u64, Ordering::Relaxed);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "fid": fid.to_string(), "size": size, "etag": format!("{:08x}", w.crc) })),
    )
        .into_response())
}

async fn upload(
    State(app): State<AppState>,
    Path(fid): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let fid = parse_fid(&fid)?;
    let meta = meta_from(&headers, &q)?;
    // Refuse a write the volume would refuse before spending memory on its body (the
    // volume checks again when it appends).
    app.store
        .check_write(fid)
        .await
        .map_err(|e| store_error(&app, Some(fid), e))?;
    let (data, share) = read_body(&app, &headers, body).await?;
    let size = data.data_len();
    let w = app
        .store
        .write_buf(fid, data, &meta)
        .await
        .map_err(|e| store_error(&app, Some(fid), e))?;
    drop(share);
    app.metrics.uploads.fetch_add(1, Ordering::Relaxed);
    app.metrics
        .upload_bytes
        .fetch_add(size as u64, Ordering::Relaxed);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "fid": fid.to_string(), "size": size, "etag": format!("{:08x}", w.crc) })),
    )
        .into_response())
}

/// Parses a single `bytes=` range against a body of `len` bytes.
/// `Ok(None)`: no usable range (serve everything); `Err(())`: unsatisfiable.
fn parse_range(v: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: answer with the whole body (allowed by RFC 9110)
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        if !b.is_empty() && b.parse::<u64>().map_err(|_| ())? < start {
            return Err(());
        }
        (start, end)
    };
    if len == 0 || r.0 >= len {
        return Err(());
    }
    Ok(Some(r))
}

/// RFC 7231 IMF-fixdate from Unix seconds.
fn http_date(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][usize::try_from(mo - 1).unwrap_or(0)];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{m:02}:{s:02} GMT")
}

async fn read(
    State(app): State<AppState>,
    Path(fid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let fid = parse_fid(&fid)?;
    let n = app
        .store
        .read(fid)
        .await
        .map_err(|e| store_error(&app, Some(fid), e))?;
    let etag = format!("\"{:08x}\"", n.crc);
    let mut h = HeaderMap::new();
    let hv = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("invalid"));
    h.insert(header::ETAG, hv(&etag));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // The uploader chose the Content-Type: never let a browser sniff or run it.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    h.insert(
        header::CONTENT_TYPE,
        n.mime()
            .and_then(|m| HeaderValue::from_str(m).ok())
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Some(t) = n.last_modified() {
        h.insert(header::LAST_MODIFIED, hv(&http_date(t)));
    }
    if let Some(name) = n.name() {
        let clean: String = name
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{clean}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return Ok((StatusCode::NOT_MODIFIED, h).into_response());
        }
    }
    let range = n.data_range();
    let len = range.len() as u64;
    let bytes = Bytes::from(n.into_buf()).slice(range);
    app.metrics.reads.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        match parse_range(r, len) {
            Ok(Some((a, b))) => {
                h.insert(header::CONTENT_RANGE, hv(&format!("bytes {a}-{b}/{len}")));
                let part = bytes.slice(crate::usize_from(a)..=crate::usize_from(b));
                app.metrics
                    .read_bytes
                    .fetch_add(part.len() as u64, Ordering::Relaxed);
                return Ok((StatusCode::PARTIAL_CONTENT, h, part).into_response());
            }
            Ok(None) => {}
            Err(()) => {
                h.insert(header::CONTENT_RANGE, hv(&format!("bytes */{len}")));
                return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response());
            }
        }
    }
    app.metrics.read_bytes.fetch_add(len, Ordering::Relaxed);
    Ok((StatusCode::OK, h, bytes).into_response())
}

async fn delete(
    State(app): State<AppState>,
    Path(fid): Path<String>,
) -> Result<Response, ApiError> {
    let fid = parse_fid(&fid)?;
    let size = app
        .store
        .delete(fid)
        .await
        .map_err(|e| store_error(&app, Some(fid), e))?;
    app.metrics.deletes.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({ "fid": fid.to_string(), "deleted_bytes": size })).into_response())
}

#[derive(Deserialize)]
struct CompactQuery {
    volume: Option<u32>,
}

async fn compact(
    State(app): State<AppState>,
    Query(q): Query<CompactQuery>,
) -> Result<Response, ApiError> {
    let r = app
        .store
        .compact(q.volume)
        .await
        .map_err(|e| store_error(&app, None, e))?;
    Ok(Json(json!({ "compacted": r })).into_response())
}

/// The data folder's filesystem: (total, available to AergoFS, free) bytes, or `None` when
/// `statvfs` fails (reported as `null`; the rest of the status still answers).
fn disk_space(dir: &str) -> Option<(u64, u64, u64)> {
    aergo_os::sample::statvfs(std::path::Path::new(dir)).ok()
}

async fn status(State(app): State<AppState>) -> Response {
    let s = app.store.stats();
    let disk = disk_space(&s.dir);
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "io_backend": s.io.backend.to_string(),
        "io_fallback_reason": s.io_fallback_reason,
        "durability": s.durability,
        "read_policy": app.cfg.read_policy,
        "writes_require_token": app.cfg.token.is_some(),
        "max_upload": app.cfg.max_upload,
        "upload_memory": app.budget.total(),
        "upload_memory_in_use": app.budget.in_use(),
        "live_needles": s.live_needles,
        "live_bytes": s.live_bytes,
        "index_bytes": s.index_bytes,
        "index_bytes_per_live_needle": s.index_bytes_per_live_needle,
        "io": s.io,
        "volumes": s.volumes,
        "failed_volumes": s.failed_volumes,
        "dir": s.dir,
        "disk_total_bytes": disk.map(|d| d.0),
        "disk_free_bytes": disk.map(|d| d.1),
        "disk": disk.map(|(total, available, free)| json!({
            "total_bytes": total,
            "available_bytes": available,
            "free_bytes": free,
        })),
    }))
    .into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    use std::fmt::Write;
    let s = app.store.stats();
    let m = &app.metrics;
    let mut o = String::new();
    let mut c = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    c(
        "aergofs_uploads_total",
        "Needles written through the API.",
        "counter",
        l(&m.uploads),
    );
    c(
        "aergofs_upload_bytes_total",
        "Bytes uploaded.",
        "counter",
        l(&m.upload_bytes),
    );
    c(
        "aergofs_reads_total",
        "Successful reads.",
        "counter",
        l(&m.reads),
    );
    c(
        "aergofs_read_bytes_total",
        "Bytes served.",
        "counter",
        l(&m.read_bytes),
    );
    c(
        "aergofs_deletes_total",
        "Deletes.",
        "counter",
        l(&m.deletes),
    );
    c(
        "aergofs_assigns_total",
        "File ids assigned.",
        "counter",
        l(&m.assigns),
    );
    c(
        "aergofs_not_found_total",
        "Requests answered 404.",
        "counter",
        l(&m.not_found),
    );
    c(
        "aergofs_errors_total",
        "Requests failed with a server-side error.",
        "counter",
        l(&m.errors),
    );
    c(
        "aergofs_unauthorized_total",
        "Requests refused for a missing/wrong token.",
        "counter",
        l(&m.rejected_auth),
    );
    c(
        "aergofs_too_large_total",
        "Uploads refused with 413.",
        "counter",
        l(&m.too_large),
    );
    c(
        "aergofs_upload_busy_total",
        "Uploads refused with 503: the upload memory stayed in use.",
        "counter",
        l(&m.busy),
    );
    c(
        "aergofs_upload_memory_in_use_bytes",
        "Bytes of upload memory held by uploads in flight.",
        "gauge",
        app.budget.in_use() as f64,
    );
    c(
        "aergofs_live_needles",
        "Live needles.",
        "gauge",
        s.live_needles as f64,
    );
    c(
        "aergofs_live_bytes",
        "Bytes of live needles.",
        "gauge",
        s.live_bytes as f64,
    );
    c(
        "aergofs_index_bytes",
        "Heap bytes of the in-memory indexes.",
        "gauge",
        s.index_bytes as f64,
    );
    c(
        "aergofs_volumes",
        "Loaded volumes.",
        "gauge",
        s.volumes.len() as f64,
    );
    c(
        "aergofs_failed_volumes",
        "Volumes that failed to load.",
        "gauge",
        s.failed_volumes.len() as f64,
    );
    if let Some((total, available, _)) = disk_space(&s.dir) {
        c(
            "aergofs_disk_total_bytes",
            "Size of the data folder's filesystem.",
            "gauge",
            total as f64,
        );
        c(
            "aergofs_disk_available_bytes",
            "Bytes of the data folder's filesystem available for new needles.",
            "gauge",
            available as f64,
        );
    }
    c(
        "aergofs_io_submitted_total",
        "I/O operations submitted.",
        "counter",
        s.io.submitted as f64,
    );
    c(
        "aergofs_io_completed_total",
        "I/O operations completed.",
        "counter",
        s.io.completed as f64,
    );
    c(
        "aergofs_io_max_in_flight",
        "Most I/O operations in flight at once.",
        "gauge",
        s.io.max_in_flight as f64,
    );
    let _ = writeln!(
        o,
        "# HELP aergofs_io_uring 1 when the io_uring backend runs, 0 for std.\n# TYPE aergofs_io_uring gauge\naergofs_io_uring {}",
        u8::from(s.io.backend == aergo_os::io::Backend::IoUring)
    );
    let _ = writeln!(o, "# HELP aergofs_volume_size_bytes Volume file size.\n# TYPE aergofs_volume_size_bytes gauge");
    for v in &s.volumes {
        let _ = writeln!(
            o,
            "aergofs_volume_size_bytes{{volume=\"{}\"}} {}",
            v.id, v.size
        );
    }
    let _ = writeln!(o, "# HELP aergofs_volume_garbage_ratio Garbage bytes / total.\n# TYPE aergofs_volume_garbage_ratio gauge");
    for v in &s.volumes {
        let _ = writeln!(
            o,
            "aergofs_volume_garbage_ratio{{volume=\"{}\"}} {}",
            v.id, v.garbage_ratio
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), Ok(Some((0, 0))));
        assert_eq!(parse_range("bytes=2-", 10), Ok(Some((2, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=5-100", 10), Ok(Some((5, 9))));
        assert_eq!(parse_range("bytes=-30", 10), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=5-2", 10), Err(()));
        assert_eq!(parse_range("bytes=x-2", 10), Err(()));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ok(None));
        assert_eq!(parse_range("items=0-1", 10), Ok(None));
        assert_eq!(parse_range("bytes=0-0", 0), Err(()));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k  "] {
            assert_eq!(bearer_token(v), Some("t0k"), "{v:?}");
        }
        for v in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
