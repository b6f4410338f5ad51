//! AergoFS HTTP API end to end: round trips of random sizes, headers, ranges, deletes,
//! bad input, size limit, auth beyond loopback, status/metrics, graceful shutdown + restart.

mod fs_common;

use fs_common::{bytes, request, Rng, Server};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

#[test]
fn round_trips_headers_ranges_deletes_and_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &[], &[])?;
    let mut rng = Rng(42);
    let mut want: HashMap<String, Vec<u8>> = HashMap::new();
    // Sizes from 0 B to several MiB.
    let mut sizes = vec![0usize, 1, 7, 8, 4095, 4096, 65_537, 3 << 20, (5 << 20) + 3];
    for _ in 0..40 {
        sizes.push(rng.below(200_000) as usize);
    }
    for (i, &n) in sizes.iter().enumerate() {
        let data = bytes(i as u64 + 1, n);
        let fid = srv.put(&data, &[("Content-Type", "application/x-test")])?;
        want.insert(fid, data);
    }
    // Assign + PUT with a name.
    let a = srv.req("POST", "/assign", &[], b"")?.json()?;
    let fid = a["fid"].as_str().unwrap_or_default().to_string();
    let r = srv.req(
        "PUT",
        &format!("/{fid}?name=hello.txt"),
        &[("Content-Type", "text/plain")],
        b"hello world",
    )?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let etag = format!("\"{}\"", r.json()?["etag"].as_str().unwrap_or_default());
    want.insert(fid.clone(), b"hello world".to_vec());

    for (fid, data) in &want {
        let r = srv.get(fid)?;
        assert_eq!(r.status, 200, "{fid}");
        assert_eq!(&r.body, data, "{fid}");
    }
    let r = srv.get(&fid)?;
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r
        .header("content-disposition")
        .unwrap_or("")
        .contains("hello.txt"));
    assert!(r.header("last-modified").unwrap_or("").ends_with("GMT"));
    // Conditional GET.
    let r = srv.req("GET", &format!("/{fid}"), &[("If-None-Match", &etag)], b"")?;
    assert_eq!(r.status, 304);
    // Ranges.
    let r = srv.req("GET", &format!("/{fid}"), &[("Range", "bytes=6-")], b"")?;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"world"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 6-10/11"));
    let r = srv.req("GET", &format!("/{fid}"), &[("Range", "bytes=-5")], b"")?;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"world"[..]));
    let r = srv.req("GET", &format!("/{fid}"), &[("Range", "bytes=50-60")], b"")?;
    assert_eq!(r.status, 416);
    // HEAD: headers without body.
    let r = srv.req("HEAD", &format!("/{fid}"), &[], b"")?;
    assert_eq!((r.status, r.header("content-length")), (200, Some("11")));
    // Delete.
    let r = srv.req("DELETE", &format!("/{fid}"), &[], b"")?;
    assert_eq!(r.status, 200);
    assert_eq!(srv.get(&fid)?.status, 404);
    assert_eq!(srv.req("DELETE", &format!("/{fid}"), &[], b"")?.status, 404);
    want.remove(&fid);

    // Bad input: clear errors, nothing changes.
    let before = srv.status()?["live_needles"].clone();
    let some = want.keys().next().cloned().unwrap_or_default();
    let (vol, kc) = some.split_once(',').unwrap_or_default();
    let wrong_cookie = format!(
        "{vol},{}{:08x}",
        &kc[..kc.len() - 8],
        u32::from_str_radix(&kc[kc.len() - 8..], 16)? ^ 1
    );
    for (path, code) in [
        ("/nonsense".to_string(), 400),
        ("/1,zz".to_string(), 400),
        ("/0,1637037d6".to_string(), 400),
        ("/99,1637037d6".to_string(), 404),
        (format!("/{wrong_cookie}"), 404),
    ] {
        let r = srv.get(path.trim_start_matches('/'))?;
        assert_eq!(
            r.status,
            code,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json()?["error"].is_string(), "{path}");
    }
    assert_eq!(
        srv.req("DELETE", &format!("/{wrong_cookie}"), &[], b"")?
            .status,
        404
    );
    assert_eq!(srv.req("PUT", "/99,1637037d6", &[], b"x")?.status, 404);
    assert_eq!(srv.status()?["live_needles"], before);

    // Status and metrics.
    let st = srv.status()?;
    let backend = st["io_backend"].as_str().unwrap_or_default().to_string();
    assert!(backend == "io_uring" || backend == "std", "{st}");
    if aergo_e2e::ci() && std::env::var("AERGO_IO").is_err() {
        assert_eq!(backend, "io_uring", "io_uring expected on CI: {st}");
    }
    assert_eq!(st["durability"], "group_commit");
    assert_eq!(st["live_needles"].as_u64(), Some(want.len() as u64));
    assert!(st["volumes"][0]["garbage_ratio"].as_f64().is_some());
    // The data folder's disk: sizes the dashboard and operators read.
    let total = st["disk_total_bytes"].as_u64().unwrap_or(0);
    let avail = st["disk"]["available_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(total > 0 && avail <= total, "{st}");
    assert_eq!(st["disk"]["total_bytes"].as_u64(), Some(total), "{st}");
    let m = srv.req("GET", "/metrics", &[], b"")?;
    let text = String::from_utf8_lossy(&m.body);
    assert!(text.contains("aergofs_uploads_total 50"), "{text}");
    assert!(text.contains("aergofs_disk_total_bytes "), "{text}");
    assert!(text.contains("aergofs_volume_size_bytes{volume=\"1\"}"));

    // Graceful shutdown, then everything is back after a restart.
    let mut srv = srv;
    srv.proc.signal(libc::SIGTERM);
    let st = srv.proc.wait_timeout(Duration::from_secs(30))?;
    assert!(st.success(), "exit status {st}");
    let srv = Server::start(dir.path(), &[], &[])?;
    for (fid, data) in &want {
        assert_eq!(&srv.get(fid)?.body, data, "{fid} after restart");
    }
    assert_eq!(srv.get(&fid)?.status, 404, "deleted needle reappeared");
    Ok(())
}

#[test]
fn oversize_and_truncated_uploads_store_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &["--max-upload", "1048576"], &[])?;
    let ok = srv.put(&bytes(1, 1 << 20), &[])?;
    let r = srv.req("POST", "/", &[], &bytes(2, (1 << 20) + 1))?;
    assert_eq!(r.status, 413);
    assert!(r.json()?["error"].as_str().unwrap_or("").contains("limit"));
    // Declared size over the limit: refused before the body is read.
    let r = request(
        &srv.addr,
        "POST",
        "/",
        &[("Content-Length", "99999999")],
        b"",
    )?;
    assert_eq!(r.status, 413);
    // Truncated upload: the client announces 1000 bytes, sends 500 and closes.
    let mut s = std::net::TcpStream::connect(&srv.addr)?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
    )?;
    s.write_all(&[7u8; 500])?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut sink);
    drop(s);
    let st = srv.status()?;
    assert_eq!(st["live_needles"], 1, "{st}");
    assert_eq!(srv.get(&ok)?.body, bytes(1, 1 << 20));
    Ok(())
}

#[test]
fn writes_need_the_token_beyond_loopback() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("etc/fs.token");
    let tf = token_file.to_string_lossy().to_string();
    let srv = Server::start_on(
        "0.0.0.0",
        &dir.path().join("fs"),
        &["--token-file", &tf],
        &[],
    )?;
    let token = std::fs::read_to_string(&token_file)?.trim().to_string();
    assert!(token.len() >= 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file)?.permissions().mode() & 0o777,
        0o600
    );
    let r = srv.req("POST", "/", &[], b"x")?;
    assert_eq!(r.status, 401);
    let r = srv.req("POST", "/", &[("Authorization", "Bearer wrong")], b"x")?;
    assert_eq!(r.status, 401);
    assert_eq!(srv.req("POST", "/assign", &[], b"")?.status, 401);
    let bearer = format!("Bearer {token}");
    let fid = srv.put(b"secret", &[("Authorization", &bearer)])?;
    // Reads are open by default; deletes need the token.
    assert_eq!(srv.get(&fid)?.body, b"secret");
    assert_eq!(srv.req("DELETE", &format!("/{fid}"), &[], b"")?.status, 401);
    assert_eq!(srv.get(&fid)?.status, 200);
    assert_eq!(
        srv.req(
            "DELETE",
            &format!("/{fid}"),
            &[("Authorization", &bearer)],
            b""
        )?
        .status,
        200
    );
    assert_eq!(srv.status()?["writes_require_token"], true);
    Ok(())
}

#[test]
fn std_backend_serves_too_and_reports_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &[], &[("AERGO_IO", "std")])?;
    let fid = srv.put(b"via std", &[])?;
    assert_eq!(srv.get(&fid)?.body, b"via std");
    let st = srv.status()?;
    assert_eq!(st["io_backend"], "std");
    assert!(st["io_fallback_reason"]
        .as_str()
        .unwrap_or("")
        .contains("AERGO_IO"));
    Ok(())
}

#[test]
fn second_server_on_same_dir_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let _srv = Server::start(dir.path(), &[], &[])?;
    let out = std::process::Command::new(aergo_e2e::bin("aergofs")?)
        .args(["serve", "--dir"])
        .arg(dir.path())
        .args(["--addr", &format!("127.0.0.1:{}", aergo_e2e::free_port()?)])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    Ok(())
}
