//! AergoFS HTTP API end to end: round trips of random sizes, headers, ranges, deletes,
//! bad input, size limit, auth beyond loopback, status/metrics, graceful shutdown + restart;
//! what a hostile client tries: made-up keys, wrong cookies, oversize declarations, more
//! uploads than the upload memory, HTML uploads, odd `Bearer` spelling; a server that exits
//! during start-up is reported at once with its stderr.

mod fs_common;

use fs_common::{bytes, request, Rng, Server};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// A server that cannot start (here: a volume size below the minimum) fails `Server::start`
/// as soon as it exits, with the server's own message, not after the 60 s start-up wait.
#[test]
fn start_reports_an_early_exit_at_once_with_the_servers_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let t = std::time::Instant::now();
    let err = match Server::start(dir.path(), &["--volume-size", "1"], &[]) {
        Ok(_) => anyhow::bail!("a 1-byte --volume-size was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert!(err.contains("exited during start-up"), "{err}");
    assert!(err.contains("--volume-size must be between"), "{err}");
    Ok(())
}

#[test]
fn round_trips_headers_ranges_deletes_and_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &[], &[])?;
    let mut rng = Rng(42);
    let mut want: HashMap<String, Vec<u8>> = HashMap::new();
    // Sizes from 0 B to several MiB.
    let mut sizes = vec![0usize, 1, 7, 8, 4095, 4096, 65_537, 3 << 20, (5 << 20) + 3];
    for _ in 0..40 {
        sizes.push(rng.below_usize(200_000));
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

/// `VOLUME,KEYCOOKIE` of `fid` with the cookie's low bit flipped.
fn flip_cookie(fid: &str) -> anyhow::Result<String> {
    let (vol, kc) = fid.split_once(',').unwrap_or_default();
    anyhow::ensure!(kc.len() > 8, "bad fid {fid}");
    let (key, cookie) = kc.split_at(kc.len() - 8);
    Ok(format!(
        "{vol},{key}{:08x}",
        u32::from_str_radix(cookie, 16)? ^ 1
    ))
}

/// Sends only a request's head on a raw connection and reads the answer, which must come
/// before any body byte is sent.
fn head_only(addr: &str, head: &str) -> anyhow::Result<fs_common::Resp> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "connection closed without an answer");
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    let headers = text
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(fs_common::Resp {
        status,
        headers,
        body: Vec::new(),
    })
}

#[test]
fn client_chosen_keys_never_make_uploads_collide_or_vanish() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &[], &[])?;
    let first = srv.put(b"first", &[])?;
    // Keys the volume never assigned: the largest one (the counter used to wrap to key 0
    // after it), and one just past the last assigned.
    let key = u64::from_str_radix(&first[2..first.len() - 8], 16)?;
    for path in [
        "/1,ffffffffffffffff00000001".to_string(),
        format!("/1,{:x}1234abcd", key + 1),
        format!("/1,{:x}1234abcd", key + 1000),
    ] {
        for method in ["PUT", "POST"] {
            let r = srv.req(method, &path, &[], b"made-up id")?;
            assert_eq!(
                r.status,
                404,
                "{method} {path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert!(r.json()?["error"].as_str().unwrap_or("").contains("assign"));
        }
    }
    assert_eq!(srv.status()?["live_needles"], 1);
    // Every later upload gets its own readable id; nothing replaces anything.
    let mut want = vec![(first.clone(), b"first".to_vec())];
    for i in 0..20u64 {
        let data = bytes(100 + i, 1000 + usize::try_from(i).unwrap());
        let fid = srv.put(&data, &[])?;
        assert!(fid_ok(&fid), "unparsable fid {fid}");
        assert!(
            want.iter().all(|(f, _)| *f != fid),
            "{fid} handed out twice"
        );
        want.push((fid, data));
    }
    let check = |srv: &Server| -> anyhow::Result<()> {
        for (fid, data) in &want {
            let r = srv.get(fid)?;
            assert_eq!((r.status, &r.body), (200, data), "{fid}");
        }
        Ok(())
    };
    check(&srv)?;
    let mut srv = srv;
    srv.proc.signal(libc::SIGTERM);
    assert!(srv.proc.wait_timeout(Duration::from_secs(30))?.success());
    let srv = Server::start(dir.path(), &[], &[])?;
    check(&srv)?;
    let after = srv.put(b"after restart", &[])?;
    assert!(want.iter().all(|(f, _)| *f != after));
    assert_eq!(srv.get(&after)?.body, b"after restart");
    Ok(())
}

/// Whether `fid` reads as the server prints ids: volume ≥ 1, then 9–24 hex digits, key ≠ 0.
fn fid_ok(fid: &str) -> bool {
    let Some((v, kc)) = fid.split_once(',') else {
        return false;
    };
    v.parse::<u32>().is_ok_and(|v| v > 0)
        && (9..=24).contains(&kc.len())
        && u64::from_str_radix(&kc[..kc.len() - 8], 16).is_ok_and(|k| k > 0)
}

#[test]
fn writes_and_deletes_with_a_wrong_cookie_change_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &[], &[])?;
    let fid = srv.put(b"original", &[("Content-Type", "text/plain")])?;
    let wrong = flip_cookie(&fid)?;
    for method in ["PUT", "POST"] {
        let r = srv.req(method, &format!("/{wrong}"), &[], b"replaced by a stranger")?;
        assert_eq!(
            r.status,
            404,
            "{method}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(
        srv.req("DELETE", &format!("/{wrong}"), &[], b"")?.status,
        404
    );
    let r = srv.get(&fid)?;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"original"[..]));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(srv.get(&wrong)?.status, 404);
    // An assigned id: the first write needs the assigned cookie, then its owner may replace it.
    let a = srv.req("POST", "/assign", &[], b"")?.json()?;
    let a = a["fid"].as_str().unwrap_or_default().to_string();
    let r = srv.req("PUT", &format!("/{}", flip_cookie(&a)?), &[], b"squatter")?;
    assert_eq!(r.status, 404);
    assert_eq!(srv.req("PUT", &format!("/{a}"), &[], b"v1")?.status, 201);
    assert_eq!(srv.req("PUT", &format!("/{a}"), &[], b"v2")?.status, 201);
    assert_eq!(srv.get(&a)?.body, b"v2");
    // The owner deletes; a deleted id is never written again.
    assert_eq!(srv.req("DELETE", &format!("/{fid}"), &[], b"")?.status, 200);
    assert_eq!(
        srv.req("PUT", &format!("/{fid}"), &[], b"again")?.status,
        404
    );
    assert_eq!(srv.get(&fid)?.status, 404);
    assert_eq!(srv.status()?["live_needles"], 1);
    Ok(())
}

#[test]
fn declared_oversize_upload_gets_413_before_the_body() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &[], &[])?;
    let over = (256u64 << 20) + 1;
    let fid = srv.put(b"x", &[])?;
    for (line, expect) in [
        ("POST /", ""),
        (&*format!("PUT /{fid}"), ""),
        ("POST /", "Expect: 100-continue\r\n"),
    ] {
        let r = head_only(
            &srv.addr,
            &format!(
                "{line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{expect}Content-Length: {over}\r\n\r\n"
            ),
        )?;
        assert_eq!(r.status, 413, "{line} {expect}");
    }
    assert_eq!(srv.status()?["live_needles"], 1);
    Ok(())
}

#[test]
fn uploads_wait_for_upload_memory_then_get_503() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Room for one 1 MiB upload (plus needle overhead), not two.
    let srv = Server::start(
        dir.path(),
        &[
            "--max-upload",
            "1048576",
            "--upload-memory",
            "1100000",
            "--upload-wait-ms",
            "300",
        ],
        &[],
    )?;
    let data = bytes(7, 1 << 20);
    // A slow client holds the memory of its declared 1 MiB after sending a part of it.
    let mut slow = std::net::TcpStream::connect(&srv.addr)?;
    slow.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        slow,
        "POST /?name=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )?;
    slow.write_all(&data[..1000])?;
    aergo_e2e::poll("upload memory held", Duration::from_secs(20), || {
        Ok((srv.status()?["upload_memory_in_use"].as_u64() >= Some(1 << 20)).then_some(()))
    })?;
    // Another upload waits for memory, then is told to come back later.
    let r = head_only(
        &srv.addr,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000\r\n\r\n",
    )?;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    // The slow upload completes normally and frees the memory.
    slow.write_all(&data[1000..])?;
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut slow, &mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap_or(0) + 4..];
    let v: serde_json::Value = serde_json::from_str(body)?;
    let slow_fid = v["fid"].as_str().unwrap_or_default().to_string();
    assert_eq!(srv.get(&slow_fid)?.body, data);
    assert_eq!(srv.status()?["upload_memory_in_use"], 0);
    let fid = srv.put(&data, &[])?;
    assert_eq!(srv.get(&fid)?.body, data);
    let m = srv.req("GET", "/metrics", &[], b"")?;
    assert!(String::from_utf8_lossy(&m.body).contains("aergofs_upload_busy_total 1"));
    Ok(())
}

#[test]
fn one_256_mib_upload_costs_about_its_size_in_memory() -> anyhow::Result<()> {
    fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        st.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
    }
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &["--fast"], &[])?;
    let pid = srv.proc.0.id();
    let idle = hwm_kib(pid)?;
    let data = bytes(3, 256 << 20);
    let fid = srv.put(&data, &[])?;
    let grown = hwm_kib(pid)?.saturating_sub(idle);
    let size_kib = data.len() as u64 / 1024;
    eprintln!("aergofs peak RSS grew by {grown} KiB for a {size_kib} KiB upload");
    // Once the body (plus small change), not body + a needle copy (2x) as before.
    assert!(
        grown < size_kib * 5 / 4,
        "peak RSS grew by {grown} KiB for a {size_kib} KiB upload"
    );
    let r = srv.req("HEAD", &format!("/{fid}"), &[], b"")?;
    assert_eq!(r.header("content-length"), Some(&*data.len().to_string()));
    Ok(())
}

#[test]
fn served_files_carry_nosniff_and_a_sandbox_csp() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start(dir.path(), &[], &[])?;
    let html = b"<html><script>alert(document.cookie)</script></html>";
    let fid = srv.put(html, &[("Content-Type", "text/html")])?;
    let r = srv.get(&fid)?;
    let etag = r.header("etag").unwrap_or_default().to_string();
    let p = format!("/{fid}");
    for (what, r) in [
        ("GET", r),
        ("HEAD", srv.req("HEAD", &p, &[], b"")?),
        ("range", srv.req("GET", &p, &[("Range", "bytes=0-5")], b"")?),
        ("304", srv.req("GET", &p, &[("If-None-Match", &etag)], b"")?),
    ] {
        assert!([200, 206, 304].contains(&r.status), "{what}: {}", r.status);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'none'; sandbox"),
            "{what}"
        );
    }
    Ok(())
}

#[test]
fn bearer_scheme_is_case_insensitive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let srv = Server::start_on("0.0.0.0", dir.path(), &["--token", "s3cret-token"], &[])?;
    for auth in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER s3cret-token",
    ] {
        let fid = srv.put(auth.as_bytes(), &[("Authorization", auth)])?;
        assert_eq!(srv.get(&fid)?.body, auth.as_bytes());
    }
    for auth in ["bearer wrong", "Basic s3cret-token", "s3cret-token"] {
        let r = srv.req("POST", "/", &[("Authorization", auth)], b"x")?;
        assert_eq!(r.status, 401, "{auth}");
    }
    Ok(())
}
