//! `aergo preconf verify FILE|-`: checks a pre-confirmation offline and against the chain.
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

/// Runs `aergo preconf verify`.
pub async fn verify(
    file: &str,
    schedule: Option<&str>,
    client: impl FnOnce() -> Result<RpcClient>,
    json_out: bool,
) -> Result<()> {
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
            let owner = match owner_in(&info["upcoming"], pj.slot) {
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
