//! docs/RPC.md against the server. Every method the node dispatches (`dispatch` in
//! node/node/src/rpc.rs and node/node/src/rpc_staking.rs) has a row in the document's method
//! tables, and every row names a dispatched method; every error code the server defines
//! (node/rpc/src/types.rs) has a row. Then a real dev node answers each documented shape
//! (`ChainInfo`, `NodeStatus`, `BlockSummary`, `Block`, `Tx`, `Receipt`, `Repo`) and the `{…}`
//! results of `account`, `get_proof`, `mempool`, `dd_info` and `consensus_info` with exactly
//! the top-level fields the document lists (optional `x?` fields may be absent).

use aergo_e2e::{aergo_json, free_port, repo_root, start_dev_node};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn read(rel: &str) -> Result<String> {
    std::fs::read_to_string(repo_root().join(rel)).with_context(|| format!("read {rel}"))
}

/// Quoted method names on the match arms (`"name" =>`, `"a" | "b" =>`) of `text` between the
/// line containing `from` and the next line containing `to`.
fn arms(text: &str, from: &str, to: &str) -> Result<BTreeSet<String>> {
    let start = text.find(from).with_context(|| format!("no `{from}`"))?;
    let body = &text[start..];
    let end = body
        .find(to)
        .with_context(|| format!("no `{to}` after `{from}`"))?;
    let mut out = BTreeSet::new();
    for line in body[..end].lines() {
        let l = line.trim();
        let Some((pat, _)) = l.split_once("=>") else {
            continue;
        };
        let pat = pat.trim();
        if !pat.starts_with('"') {
            continue;
        }
        for alt in pat.split('|') {
            let name = alt.trim().trim_matches('"');
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                out.insert(name.to_string());
            }
        }
    }
    Ok(out)
}

/// The cells of a Markdown table row (`\|` inside a cell is not a separator).
fn cells(line: &str) -> Option<Vec<String>> {
    let l = line.trim();
    if !l.starts_with('|') {
        return None;
    }
    let l = l.replace("\\|", "\u{1}");
    Some(
        l.trim_matches('|')
            .split('|')
            .map(|c| c.trim().replace('\u{1}', "|"))
            .collect(),
    )
}

/// The method named by a method table's first cell: "`chain_info`", "`admin_x` (loopback
/// only)", "`subscribe` (WebSocket)".
fn row_method(cell: &str) -> Option<String> {
    let rest = cell.strip_prefix('`')?;
    let name = rest.split('`').next()?;
    name.chars()
        .all(|c| c.is_ascii_lowercase() || c == '_')
        .then(|| name.to_string())
}

/// Method rows of the document: name -> result cell.
fn doc_methods(doc: &str) -> Vec<(String, String)> {
    doc.lines()
        .filter_map(cells)
        .filter(|c| c.len() == 3)
        .filter_map(|c| Some((row_method(&c[0])?, c[2].clone())))
        .collect()
}

/// The top-level field names of the first `{…}` in `text` (`x?` marks an optional one).
fn fields(text: &str) -> Result<Vec<(String, bool)>> {
    let start = text.find('{').with_context(|| format!("no {{ in {text}"))?;
    let mut depth = 0i32;
    let mut part = String::new();
    let mut parts = Vec::new();
    for ch in text[start..].chars() {
        match ch {
            '{' | '[' | '(' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' | ']' | ')' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(std::mem::take(&mut part));
                    break;
                }
            }
            ',' if depth == 1 => {
                parts.push(std::mem::take(&mut part));
                continue;
            }
            _ => {}
        }
        part.push(ch);
    }
    Ok(parts
        .iter()
        .filter_map(|p| {
            let p = p.trim();
            let name: String = p
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then(|| (name.clone(), p[name.len()..].starts_with('?')))
        })
        .collect())
}

/// The documented fields of shape `name` (a `- \`Name\`: …` line of "### Shapes").
fn shape(doc: &str, name: &str) -> Result<Vec<(String, bool)>> {
    let prefix = format!("- `{name}`");
    let line = doc
        .lines()
        .find(|l| l.starts_with(&prefix))
        .with_context(|| format!("docs/RPC.md has no shape {name}"))?;
    fields(line.split_once(':').map(|(_, r)| r).unwrap_or(line))
}

fn check(what: &str, documented: &[(String, bool)], answer: &Value) -> Result<()> {
    let got: BTreeSet<String> = answer
        .as_object()
        .with_context(|| format!("{what}: not an object: {answer}"))?
        .keys()
        .cloned()
        .collect();
    let all: BTreeSet<String> = documented.iter().map(|(n, _)| n.clone()).collect();
    let required: BTreeSet<String> = documented
        .iter()
        .filter(|(_, opt)| !opt)
        .map(|(n, _)| n.clone())
        .collect();
    let undocumented: Vec<_> = got.difference(&all).collect();
    let missing: Vec<_> = required.difference(&got).collect();
    ensure!(
        undocumented.is_empty() && missing.is_empty(),
        "docs/RPC.md's {what} differs from the server: undocumented {undocumented:?}, \
         documented but absent {missing:?}\nanswer: {answer}"
    );
    Ok(())
}

#[test]
fn every_dispatched_method_and_error_code_is_documented() -> Result<()> {
    let doc = read("docs/RPC.md")?;
    let rpc = read("node/node/src/rpc.rs")?;
    let mut served = arms(&rpc, "pub fn dispatch(", "\nfn consensus_info")?;
    served.extend(arms(
        &read("node/node/src/rpc_staking.rs")?,
        "pub fn dispatch(",
        "\n}",
    )?);
    ensure!(
        served.len() >= 25 && served.contains("chain_info") && served.contains("dpos_governance"),
        "the dispatch parser found only {served:?}: update this test"
    );
    let documented: BTreeSet<String> = doc_methods(&doc).into_iter().map(|(m, _)| m).collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    ensure!(
        missing.is_empty(),
        "methods the node serves but docs/RPC.md does not list: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&served).collect();
    ensure!(
        stale.is_empty(),
        "docs/RPC.md lists methods the node does not serve: {stale:?}"
    );

    let types = read("node/rpc/src/types.rs")?;
    let codes: Vec<String> = types
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split_once(": i64 = "))
        .map(|(_, v)| v.trim_end_matches(';').trim().to_string())
        .collect();
    ensure!(codes.len() >= 10, "found only the codes {codes:?}");
    for c in &codes {
        ensure!(
            doc.lines()
                .filter_map(cells)
                .any(|row| row.first() == Some(c)),
            "error code {c} has no row in docs/RPC.md's error table"
        );
    }
    Ok(())
}

#[test]
fn documented_shapes_match_a_dev_node() -> Result<()> {
    let doc = read("docs/RPC.md")?;
    let tmp = tempfile::tempdir()?;
    let node = start_dev_node(&tmp.path().join("node"), free_port()?, &[])?;
    let url = node.url.clone();
    let call = |method: &str, params: Value| -> Result<Value> {
        aergo_e2e::testnet::rpc(&url, method, params)
    };
    // A transfer gives a block with a transaction and a receipt.
    let sent = aergo_json(
        &url,
        &[
            "send", "--from", "dev", "--to", "dev", "--amount", "1", "--wait", "included",
        ],
    )?;
    let hash = sent["hash"].as_str().context("send: no hash")?.to_string();
    let height = sent["block_height"]
        .as_u64()
        .with_context(|| format!("send: no block_height: {sent}"))?;

    check(
        "ChainInfo",
        &shape(&doc, "ChainInfo")?,
        &call("chain_info", json!({}))?,
    )?;
    check(
        "NodeStatus",
        &shape(&doc, "NodeStatus")?,
        &call("node_status", json!({}))?,
    )?;
    let summaries = call("blocks", json!({"from": height, "to": height}))?;
    let summary = summaries.get(0).context("blocks: empty")?;
    check("BlockSummary", &shape(&doc, "BlockSummary")?, summary)?;
    let block = call("block", json!({"height": height, "full": true}))?;
    let mut block_fields = shape(&doc, "BlockSummary")?;
    block_fields.extend(shape(&doc, "Block")?);
    check(
        "Block (BlockSummary plus its own fields)",
        &block_fields,
        &block,
    )?;
    let tx = block["txs"].get(0).context("block: no txs")?;
    check("Tx", &shape(&doc, "Tx")?, tx)?;
    check(
        "Receipt",
        &shape(&doc, "Receipt")?,
        &call("receipt", json!({"hash": hash}))?,
    )?;

    let methods = doc_methods(&doc);
    let result_of = |m: &str| -> Result<Vec<(String, bool)>> {
        let (_, result) = methods
            .iter()
            .find(|(n, _)| n == m)
            .with_context(|| format!("docs/RPC.md has no row for {m}"))?;
        fields(result)
    };
    let dev = sent["from"].as_str().context("send: no from")?;
    check(
        "account's result",
        &result_of("account")?,
        &call("account", json!({"address": dev}))?,
    )?;
    check(
        "get_proof's result",
        &result_of("get_proof")?,
        &call("get_proof", json!({"address": dev}))?,
    )?;
    check(
        "mempool's result",
        &result_of("mempool")?,
        &call("mempool", json!({}))?,
    )?;
    // A repository: `Repo` (`repo_show`) and its directory (`dd_info`), once it is hosted.
    aergo_json(&url, &["repo", "create", "docs-check"])?;
    let repo = aergo_e2e::poll(
        "docs-check hosted",
        std::time::Duration::from_secs(30),
        || {
            let r = call("repo_show", json!({"name": "docs-check"}))?;
            Ok((r["hosted"] == json!(true)).then_some(r))
        },
    )?;
    check("Repo", &shape(&doc, "Repo")?, &repo)?;
    let dd = aergo_e2e::poll(
        "docs-check's directory",
        std::time::Duration::from_secs(30),
        || Ok(call("dd_info", json!({"repo": "docs-check"})).ok()),
    )?;
    check("dd_info's result", &result_of("dd_info")?, &dd)?;
    // A solo chain: the common fields only (`dpos` and `poa` are the engines' extras).
    let ci = call("consensus_info", json!({}))?;
    let mut ci_fields = result_of("consensus_info")?;
    ci_fields.extend([("dpos".to_string(), true), ("poa".to_string(), true)]);
    check("consensus_info's result", &ci_fields, &ci)?;
    Ok(())
}
