//! The control protocol's `node_rpc`: one JSON-RPC call to the node as its operator, over
//! the node's Unix socket (HTTP/1.1, `Connection: close`).
//!
//! The node answers `admin_*` methods only on loopback or that socket, and the appliance's
//! RPC port is reached through a forwarded port, so this is how the holder of init's token
//! (the operator) accepts a branch or reads a private repository on the appliance. Bounds:
//! a method name of at most 64 characters (`[A-Za-z0-9_]`), a request of at most
//! `MAX_NODE_RPC_REQUEST` bytes, an answer of at most `MAX_NODE_RPC_RESPONSE` bytes, and
//! `NODE_RPC_TIMEOUT` for each of connect, send and answer. Anything else is an error
//! reply; nothing here can panic init.

use aergo_os::control::{MAX_NODE_RPC_REQUEST, MAX_NODE_RPC_RESPONSE, NODE_RPC_TIMEOUT};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Calls `method` with `params` on the node listening on `socket`: the node's JSON-RPC
/// response object, or why there is none.
pub fn call(
    socket: &Path,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    if method.is_empty()
        || method.len() > 64
        || !method
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "bad method name `{}` (letters, digits and `_`, at most 64)",
            method.chars().take(64).collect::<String>()
        ));
    }
    let params = match params {
        serde_json::Value::Null => serde_json::json!({}),
        p @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)) => p,
        _ => return Err("params must be an object or an array".into()),
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": method,
        "params": params,
    }))
    .map_err(|e| format!("encode the request: {e}"))?;
    if body.len() > MAX_NODE_RPC_REQUEST {
        return Err(format!(
            "the request is {} bytes; at most {MAX_NODE_RPC_REQUEST}",
            body.len()
        ));
    }
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "the node's operator socket {}: {e} (is the node running?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(NODE_RPC_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(NODE_RPC_TIMEOUT)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(&body))
        .map_err(|e| format!("send to the node: {e}"))?;
    // Headers plus the largest answer; one byte more tells an oversized answer apart.
    let cap = MAX_NODE_RPC_RESPONSE + 16 * 1024;
    let mut raw = Vec::new();
    (&mut s)
        .take(cap as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("the node's answer: {e}"))?;
    if raw.len() > cap {
        return Err(format!(
            "the node's answer is larger than {MAX_NODE_RPC_RESPONSE} bytes"
        ));
    }
    parse_response(&raw)
}

/// The JSON body of an HTTP/1.1 response (`Content-Length`, chunked, or until close).
fn parse_response(raw: &[u8]) -> Result<serde_json::Value, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the node's answer has no HTTP header end")?;
    let (head, rest) = raw.split_at(split);
    let head = std::str::from_utf8(head).map_err(|_| "the node's HTTP header is not UTF-8")?;
    let rest = rest.get(4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or("the node's answer is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    serde_json::from_slice(&body).map_err(|e| {
        format!(
            "the node answered HTTP {code} with no JSON-RPC response ({e}): {}",
            String::from_utf8_lossy(body.get(..200).unwrap_or(&body))
        )
    })
}

/// A chunked HTTP body, joined.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line without its end")?;
        let (line, after) = rest.split_at(eol);
        let size_text = std::str::from_utf8(line).map_err(|_| "a chunk size is not text")?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "a bad chunk size")?;
        rest = after.get(2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("a chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("a chunk without its end")?;
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A fake node on a Unix socket that answers each connection with `answer`.
    fn fake_node(answer: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpc.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(answer);
            }
        });
        (dir, path)
    }

    #[test]
    fn relays_the_nodes_answer_with_length_or_chunks() {
        let (_d, p) = fake_node(
            b"HTTP/1.1 200 OK\r\ncontent-length: 35\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":7}",
        );
        assert_eq!(
            call(&p, "chain_info", serde_json::Value::Null).unwrap()["result"],
            7
        );
        let (_d, p) = fake_node(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
        );
        assert_eq!(call(&p, "x", serde_json::json!({})).unwrap()["a"], 1);
    }

    #[test]
    fn refuses_bad_input_and_reports_a_missing_node() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rpc.sock");
        let e = call(&p, "chain_info", serde_json::Value::Null).unwrap_err();
        assert!(e.contains("is the node running"), "{e}");
        assert!(call(&p, "a b", serde_json::Value::Null)
            .unwrap_err()
            .contains("bad method"));
        assert!(call(&p, &"a".repeat(65), serde_json::Value::Null)
            .unwrap_err()
            .contains("bad method"));
        assert!(call(&p, "x", serde_json::json!(3))
            .unwrap_err()
            .contains("object"));
        let big = serde_json::json!({"a": "x".repeat(MAX_NODE_RPC_REQUEST)});
        assert!(call(&p, "x", big).unwrap_err().contains("at most"));
        let (_d, p) = fake_node(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 4\r\n\r\noops");
        let e = call(&p, "x", serde_json::Value::Null).unwrap_err();
        assert!(e.contains("HTTP 502"), "{e}");
    }
}
