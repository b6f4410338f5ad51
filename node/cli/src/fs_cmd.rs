//! `aergo fs …`: the AergoFS client (put, get, rm, stat, volumes, compact) over its HTTP API.
//!
//! The server URL comes from the global `--fs URL` (env `AERGO_FS`, default
//! http://127.0.0.1:7848). Writes to a server listening beyond loopback need its token:
//! `AERGO_FS_TOKEN`, or `AERGO_FS_TOKEN_FILE` naming the token file (on the appliance
//! `/data/etc/fs.token`).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// AergoFS subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FsCmd {
    /// Upload files; prints one file id per file.
    Put {
        /// Files to upload.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// MIME type for every file (default: guessed from the extension).
        #[arg(long)]
        mime: Option<String>,
    },
    /// Download a file by id (to stdout unless -o).
    Get {
        /// File id, e.g. 3,1637037d6.
        fid: String,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Delete a file by id.
    Rm {
        /// File id.
        fid: String,
    },
    /// Show a file's size, type, ETag, name and modification time.
    Stat {
        /// File id.
        fid: String,
    },
    /// List volumes with their sizes, needles and garbage.
    Volumes,
    /// Compact one volume, or every volume over the server's garbage threshold.
    Compact {
        /// Volume id.
        volume: Option<u32>,
    },
}

fn token() -> Result<Option<String>> {
    if let Ok(t) = std::env::var("AERGO_FS_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(Some(t.trim().to_string()));
        }
    }
    if let Ok(p) = std::env::var("AERGO_FS_TOKEN_FILE") {
        let t = std::fs::read_to_string(&p).with_context(|| format!("read token file {p}"))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(None)
}

fn guess_mime(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "md" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "json" => "application/json",
        "js" => "text/javascript",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Validates a file id locally so typos get a clear message without a round trip.
fn check_fid(fid: &str) -> Result<()> {
    let ok = fid.split_once(',').is_some_and(|(v, kc)| {
        !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && (9..=24).contains(&kc.len())
            && kc.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !ok {
        bail!("malformed file id {fid:?}: expected VOLUME,KEYCOOKIE (e.g. 3,1637037d6)");
    }
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(fs_url: &str) -> Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder().build().context("HTTP client")?,
            base: fs_url.trim_end_matches('/').to_string(),
            token: token()?,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let resp = rb.send().await.with_context(|| {
            format!(
                "{what}: cannot reach AergoFS at {} (is `aergofs serve` running? set --fs or AERGO_FS)",
                self.base
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("{what}: {status}: {msg} (set AERGO_FS_TOKEN or AERGO_FS_TOKEN_FILE)");
        }
        if status == reqwest::StatusCode::NOT_FOUND && msg.trim().is_empty() {
            // A HEAD answer (`stat`) has no body to say why.
            bail!("{what}: no such file (deleted, never stored, or a mistyped id)");
        }
        bail!("{what}: {status}: {msg}");
    }
}

/// Milliseconds since the Unix epoch of an HTTP date (`Sat, 05 Dec 2026 14:09:18 GMT`, RFC 9110's
/// IMF-fixdate); `None` for anything else.
pub fn http_date_ms(s: &str) -> Option<u64> {
    let mut w = s.split_whitespace();
    let _weekday = w.next()?;
    let day: i64 = w.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = w.next()?;
    let m = i64::try_from(MONTHS.iter().position(|x| *x == month)?).ok()? + 1;
    let year: i64 = w.next()?.parse().ok()?;
    let mut hms = w.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if w.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs).ok()?.checked_mul(1000)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// Runs an `aergo fs` subcommand against the AergoFS server at `fs_url`.
pub async fn run(cmd: FsCmd, fs_url: &str, json: bool) -> Result<()> {
    let c = Client::new(fs_url)?;
    match cmd {
        FsCmd::Put { files, mime } => {
            let n = files.len();
            let mut out = Vec::new();
            for (i, f) in files.iter().enumerate() {
                let data = std::fs::read(f).with_context(|| format!("read {}", f.display()))?;
                let size = data.len();
                let name = f
                    .file_name()
                    .and_then(|s| s.to_str())
                    .unwrap_or("")
                    .to_string();
                let ct = mime.clone().unwrap_or_else(|| guess_mime(f).to_string());
                let rb = c
                    .req(reqwest::Method::POST, "/")
                    .query(&[("name", name.as_str())])
                    .header(reqwest::header::CONTENT_TYPE, ct)
                    .body(data);
                let v: Value = c
                    .send(rb, &format!("put {}", f.display()))
                    .await?
                    .json()
                    .await
                    .context("bad answer from server")?;
                let fid = v["fid"].as_str().unwrap_or_default().to_string();
                if n > 1 && !json {
                    eprintln!("[{}/{n}] {} ({size} bytes) -> {fid}", i + 1, f.display());
                }
                if !json {
                    println!("{fid}\t{}", f.display());
                }
                out.push(json!({ "file": f.display().to_string(), "fid": fid, "size": size, "etag": v["etag"] }));
            }
            if json {
                print_json(&Value::Array(out))?;
            }
        }
        FsCmd::Get { fid, output } => {
            check_fid(&fid)?;
            let resp = c
                .send(
                    c.req(reqwest::Method::GET, &format!("/{fid}")),
                    &format!("get {fid}"),
                )
                .await?;
            let bytes = resp.bytes().await.context("download interrupted")?;
            match output {
                Some(p) => {
                    std::fs::write(&p, &bytes).with_context(|| format!("write {}", p.display()))?;
                    if json {
                        print_json(
                            &json!({ "fid": fid, "file": p.display().to_string(), "size": bytes.len() }),
                        )?;
                    } else {
                        eprintln!("{fid}: {} bytes -> {}", bytes.len(), p.display());
                    }
                }
                None => {
                    let mut so = std::io::stdout().lock();
                    so.write_all(&bytes)?;
                    so.flush()?;
                }
            }
        }
        FsCmd::Rm { fid } => {
            check_fid(&fid)?;
            let v: Value = c
                .send(
                    c.req(reqwest::Method::DELETE, &format!("/{fid}")),
                    &format!("rm {fid}"),
                )
                .await?
                .json()
                .await?;
            if json {
                print_json(&v)?;
            } else {
                println!("deleted {fid}");
            }
        }
        FsCmd::Stat { fid } => {
            check_fid(&fid)?;
            let resp = c
                .send(
                    c.req(reqwest::Method::HEAD, &format!("/{fid}")),
                    &format!("stat {fid}"),
                )
                .await?;
            let h = resp.headers();
            let get = |k: reqwest::header::HeaderName| {
                h.get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let disp = get(reqwest::header::CONTENT_DISPOSITION);
            let name = disp
                .split("filename=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string();
            let size: u64 = get(reqwest::header::CONTENT_LENGTH).parse().unwrap_or(0);
            let v = json!({
                "fid": fid,
                "size": size,
                "content_type": get(reqwest::header::CONTENT_TYPE),
                "etag": get(reqwest::header::ETAG).trim_matches('"'),
                "last_modified": get(reqwest::header::LAST_MODIFIED),
                "name": name,
            });
            if json {
                print_json(&v)?;
            } else {
                for k in [
                    "fid",
                    "size",
                    "content_type",
                    "etag",
                    "last_modified",
                    "name",
                ] {
                    let val = match &v[k] {
                        // The HTTP date, as the local time every other command prints.
                        Value::String(s) if k == "last_modified" => http_date_ms(s)
                            .map(crate::human::local_time)
                            .unwrap_or_else(|| s.clone()),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    println!("{k:<14}{val}");
                }
            }
        }
        FsCmd::Volumes => {
            let v: Value = c
                .send(c.req(reqwest::Method::GET, "/status"), "volumes")
                .await?
                .json()
                .await?;
            if json {
                print_json(&json!({
                    "io_backend": v["io_backend"],
                    "volumes": v["volumes"],
                    "failed_volumes": v["failed_volumes"],
                }))?;
            } else {
                println!(
                    "io backend: {}   durability: {}",
                    v["io_backend"].as_str().unwrap_or("?"),
                    v["durability"].as_str().unwrap_or("?")
                );
                println!(
                    "{:>6} {:>14} {:>10} {:>14} {:>9} {:>8} {:>4}",
                    "volume", "size", "live", "live bytes", "deleted", "garbage", "ro"
                );
                for vol in v["volumes"].as_array().into_iter().flatten() {
                    println!(
                        "{:>6} {:>14} {:>10} {:>14} {:>9} {:>7.1}% {:>4}",
                        u(&vol["id"]),
                        u(&vol["size"]),
                        u(&vol["live_needles"]),
                        u(&vol["live_bytes"]),
                        u(&vol["deleted_needles"]),
                        vol["garbage_ratio"].as_f64().unwrap_or(0.0) * 100.0,
                        if vol["read_only"].as_bool().unwrap_or(false) {
                            "yes"
                        } else {
                            "no"
                        }
                    );
                }
                for f in v["failed_volumes"].as_array().into_iter().flatten() {
                    println!(
                        "volume {} NOT LOADED: {}",
                        f[0],
                        f[1].as_str().unwrap_or("")
                    );
                }
            }
        }
        FsCmd::Compact { volume } => {
            let mut rb = c.req(reqwest::Method::POST, "/compact");
            if let Some(v) = volume {
                rb = rb.query(&[("volume", v)]);
            }
            let v: Value = c.send(rb, "compact").await?.json().await?;
            if json {
                print_json(&v)?;
            } else {
                let list = v["compacted"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("nothing to compact");
                }
                for r in list {
                    println!(
                        "volume {}: {} -> {} bytes ({} needles copied) in {} ms",
                        r["volume"], r["before"], r["after"], r["copied"], r["millis"]
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date_ms("Tue, 14 Nov 2023 22:13:20 GMT"),
            Some(1_700_000_000_000)
        );
        assert_eq!(http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date_ms("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400_000)
        );
        assert_eq!(http_date_ms("Tue, 14 Nov 2023 22:13:20 UTC"), None);
        assert_eq!(http_date_ms("yesterday"), None);
        assert_eq!(http_date_ms(""), None);
    }

    #[test]
    fn fid_check() {
        assert!(check_fid("3,1637037d6").is_ok());
        for bad in ["", "3", "3,", "x,1637037d6", "3,zz37037d6", "3,1"] {
            assert!(check_fid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mime_guess() {
        assert_eq!(guess_mime(Path::new("a/b.PNG")), "image/png");
        assert_eq!(guess_mime(Path::new("noext")), "application/octet-stream");
    }
}
