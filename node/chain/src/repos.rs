//! The root chain's repository registry: `repo_create` execution and reads.
//!
//! State layout (root chain only): repository `name` is registered at key `'r' ‖ name` with
//! value [`Registration::encode`]. Names are unique: a second create of a taken name fails
//! (its sender pays gas only). A create charges the root's `repo_create_fee`, added to the
//! transaction's fee so it is credited to the block's producer with the gas fees.

use crate::ctx::BlockCtx;
use crate::error::ChainError;
use crate::state::{Overlay, StateView};
use aergo_types::repo::{Registration, RepoCreate};
use aergo_types::{Address, SignedTx};

/// Key prefix of the registry.
pub const REGISTRY_PREFIX: u8 = b'r';

/// The state key of repository `name`'s registration.
pub fn registry_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(REGISTRY_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The genesis state of the registry: the root genesis's repositories, registered at height 0.
pub fn genesis_writes(g: &aergo_types::Genesis, out: &mut crate::state::WriteSet) {
    for r in &g.repos {
        let reg = r.registration(g.timestamp_ms);
        out.insert(registry_key(&reg.create.name), Some(reg.encode()));
    }
}

/// Repository `name`'s registration in `view`, if it exists.
pub fn registration(view: &dyn StateView, name: &str) -> Result<Option<Registration>, ChainError> {
    match view.get(&registry_key(name))? {
        Some(b) => Registration::decode(&b)
            .map(Some)
            .map_err(|e| ChainError::Corrupt(format!("registration of {name}: {e}"))),
        None => Ok(None),
    }
}

/// Every registration in `view`, by name.
pub fn registrations(view: &dyn StateView) -> Result<Vec<Registration>, ChainError> {
    registrations_page(view, None, usize::MAX)
}

/// At most `limit` registrations with names after `after` (all when `None`), by name.
pub fn registrations_page(
    view: &dyn StateView,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Registration>, ChainError> {
    let start = match after {
        // The smallest key above `'r' ‖ after`.
        Some(a) => {
            let mut k = registry_key(a);
            k.push(0);
            k
        }
        None => vec![REGISTRY_PREFIX],
    };
    view.scan_limit(&start, &[REGISTRY_PREFIX + 1], limit)?
        .into_iter()
        .map(|(k, v)| {
            Registration::decode(&v).map_err(|e| {
                ChainError::Corrupt(format!(
                    "registration at {}: {e}",
                    String::from_utf8_lossy(&k)
                ))
            })
        })
        .collect()
}

/// Executes a `repo_create` whose nonce is already taken: `Ok(Ok(fee))` registers the
/// repository and returns the creation fee to charge, `Ok(Err(reason))` fails it (nothing
/// written but what the caller keeps: nonce and gas fee).
pub fn execute_create(
    o: &mut Overlay<'_>,
    tx: &SignedTx,
    ctx: &BlockCtx,
    from: &Address,
    fee: u128,
    gas_fee: u128,
) -> Result<Result<u128, String>, ChainError> {
    let create = match RepoCreate::decode(&tx.tx.payload) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if registration(&*o, &create.name)?.is_some() {
        return Ok(Err(format!(
            "repository `{}` already exists; choose another name",
            create.name
        )));
    }
    let balance = o.account(from)?.balance;
    let need = fee.saturating_add(gas_fee);
    if balance < need {
        return Ok(Err(format!(
            "creating a repository costs {fee} aer plus gas; the balance is {balance} aer"
        )));
    }
    let reg = Registration {
        create,
        creator: *from,
        height: ctx.height,
        timestamp_ms: ctx.timestamp_ms,
        tx: tx.hash,
    };
    o.writes
        .insert(registry_key(&reg.create.name), Some(reg.encode()));
    Ok(Ok(fee))
}
