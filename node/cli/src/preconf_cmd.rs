//! `aergo preconf verify FILE|-`: checks a pre-confirmation offline and against the chain.
//! `aergo preconf report FILE|-`: sends evidence that the producer broke it.
//!
//! The input is what `aergo send --wait preconfirmed --json` (or `contract call`) printed,
//! or the bare `preconfirmation` object (`send_tx`'s result, the `preconfirmations` topic).
//! Checks, in order: the readable receipt equals the signed `receipt_bytes`; the sequencing
//! hash recomputed from the receipt; the producer's signature; that the producer owned the
//! slot, from `--schedule FILE` (a JSON array of `{"slot", "producer"}`, as
//! `aergo consensus --json` lists `upcoming`) or from the node; and, when the node has the
//! promised block, that it keeps the promise (the transaction at the position, the receipt).

use aergo_rpc::{PreconfJson, RpcClient};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Reads a pre-confirmation (a file or `-`; the bare object or `send --json`'s output) and
/// checks its receipt, sequencing hash and signature.
fn read(file: &str) -> Result<(PreconfJson, aergo_types::preconf::Preconfirmation)> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("read stdin")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("read {file}"))?
    };
    let v: Value = serde_json::from_str(&text).context("the input is not JSON")?;
    let inner = v.get("preconfirmation").cloned().unwrap_or(v);
    let pj: PreconfJson = serde_json::from_value(inner)
        .context("the input is not a pre-confirmation (see docs/RPC.md)")?;
    let p = pj
        .to_preconf()
        .map_err(|e| anyhow::anyhow!("tampered: {e}"))?;
    p.verify().map_err(|e| anyhow::anyhow!("invalid: {e}"))?;
    Ok((pj, p))
}

/// Runs `aergo preconf report`: evidence from the node's block of the promised height,
/// checked here with the chain's own rule before anything is sent.
pub async fn report(
    file: &str,
    c: &RpcClient,
    key: &aergo_types::Keypair,
    json_out: bool,
) -> Result<()> {
    let (pj, p) = read(file)?;
    let block = c.block_by_height(pj.height, false).await.with_context(|| {
        format!(
            "the node has no block {} yet: nothing to contradict the promise with",
            pj.height
        )
    })?;
    if block.header.is_empty() {
        bail!("the node does not serve block headers (it predates evidence); use a newer node");
    }
    let header = aergo_types::block::Header::decode(
        &hex::decode(&block.header).context("the node sent a header that is not hex")?,
    )
    .context("the node sent a header that does not decode")?;
    let tx_hashes = block
        .txs
        .iter()
        .map(|t| {
            t.as_str()
                .and_then(|s| aergo_types::Hash::from_hex(s).ok())
                .context("the node sent a transaction hash that does not parse")
        })
        .collect::<Result<Vec<_>>>()?;
    let e = aergo_types::evidence::Evidence {
        preconf: p,
        header,
        tx_hashes,
        receipt_hashes: Vec::new(),
    };
    let chain_id = c.chain_info().await?.chain_id;
    let conviction = e.verify(&chain_id).map_err(|why| {
        anyhow::anyhow!("not evidence of a broken promise: {why}; nothing was sent")
    })?;
    let (hash, _) = crate::submit(
        c,
        key,
        aergo_types::TxKind::Evidence,
        None,
        0,
        e.encode(),
        0,
        Default::default(),
    )
    .await?;
    let r = crate::wait_for(c, &hash, crate::WaitFor::Included).await?;
    let out = json!({"hash": hash, "producer": pj.producer_address, "slot": conviction.slot, "how": conviction.how, "status": r.status, "result": r.result, "error": r.error, "block_height": r.block_height});
    if r.status != "ok" {
        bail!(
            "the evidence was included in block {} but failed: {}",
            r.block_height,
            r.error.unwrap_or_default()
        );
    }
    crate::print(json_out, &out, || {
        format!(
            "evidence {hash} in block {}
{}",
            r.block_height,
            out["result"].as_str().unwrap_or_default()
        )
    });
    Ok(())
}

/// Runs `aergo preconf verify`.
pub async fn verify(
    file: &str,
    schedule: Option<&str>,
    client: impl FnOnce() -> Result<RpcClient>,
    json_out: bool,
) -> Result<()> {
    let (pj, _) = read(file)?;
    let producer = pj.producer_address.clone();
    // Who owned the slot.
    let (owner, block): (Option<String>, Option<aergo_rpc::BlockJson>) = match schedule {
        Some(f) => {
            let s: Value = serde_json::from_str(
                &std::fs::read_to_string(f).with_context(|| format!("read {f}"))?,
            )
            .with_context(|| format!("{f} is not JSON"))?;
            (owner_in(&s, pj.slot), None)
        }
        None => {
            let c = client()?;
            let block = c.block_by_height(pj.height, true).await.ok();
            let info: Value = c.call("consensus_info", json!({})).await?;
            // DPoS and PoA list the next slots under their engine's section.
            let upcoming = [&info["dpos"]["upcoming"], &info["poa"]["upcoming"]];
            let owner = match upcoming.iter().find_map(|u| owner_in(u, pj.slot)) {
                Some(o) => Some(o),
                None => match (&block, info["engine"].as_str()) {
                    // A past slot: the block of that height names its producer.
                    (Some(b), _) => Some(b.summary.producer.clone()),
                    (None, Some("solo")) => Some(producer.clone()),
                    _ => None,
                },
            };
            (owner, block)
        }
    };
    match &owner {
        Some(o) if *o == producer => {}
        Some(o) => bail!(
            "invalid: slot {} belongs to {o}, not to the signer {producer}",
            pj.slot
        ),
        None => bail!(
            "cannot tell who owned slot {}: give --schedule FILE or a node that knows it",
            pj.slot
        ),
    }
    // Kept, broken or still pending.
    let verdict = match &block {
        None => "valid (the promised block is not on the node yet)".to_string(),
        Some(b) if b.parent_hash != pj.parent => format!(
            "valid, but block {} on the node extends another parent: the promise could not be kept (resend the transaction)",
            pj.height
        ),
        Some(b) if b.summary.producer != producer => format!(
            "valid, but block {} on the node is {}'s: the promised block is missing (a lost slot, not a contradiction; resend the transaction)",
            pj.height, b.summary.producer
        ),
        Some(b) => {
            let at = b
                .txs
                .get(pj.position as usize)
                .and_then(|t| t.get("hash"))
                .and_then(|h| h.as_str())
                .map(str::to_string);
            if at.as_deref() != Some(&pj.tx_hash.to_string()) {
                format!(
                    "BROKEN: block {} holds {} at position {}, not {}",
                    pj.height,
                    at.unwrap_or_else(|| "nothing".into()),
                    pj.position,
                    pj.tx_hash
                )
            } else {
                "kept: the block holds the transaction at the promised position".to_string()
            }
        }
    };
    let broken = verdict.starts_with("BROKEN");
    crate::print(
        json_out,
        &json!({"valid": true, "producer": producer, "slot": pj.slot, "height": pj.height, "position": pj.position, "tx_hash": pj.tx_hash, "verdict": verdict, "broken": broken}),
        || {
            format!(
                "signature ok, sequencing hash ok, slot {} owned by {producer}\n{verdict}",
                pj.slot
            )
        },
    );
    if broken {
        bail!("the producer broke this promise");
    }
    Ok(())
}

/// The producer of `slot` in a list of `{"slot", "producer"}`.
fn owner_in(list: &Value, slot: u64) -> Option<String> {
    list.as_array()?
        .iter()
        .find(|e| e["slot"].as_u64() == Some(slot))
        .and_then(|e| e["producer"].as_str())
        .map(str::to_string)
}
