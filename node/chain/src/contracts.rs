//! AergoSQL contracts on the chain: deploy and call transactions, free queries at any height.
//!
//! A contract lives at `Address::contract(creator, nonce)`. Its tables, indexes, scripts and
//! owner are stored by the `aergo-sql` engine under the state-key prefix `'c' ‖ address(33)`,
//! so they are versioned by height, covered by the state root and readable at any height
//! like every other state. Transaction formats:
//! - **deploy** (`kind = Deploy`, no recipient): payload = the script (UTF-8). With a
//!   recipient that is an existing contract, the script is an upgrade (owner only).
//! - **call** (`kind = Call`, recipient = the contract): payload = JSON
//!   `{"function": NAME, "args": [TEXT…]}`; text arguments are cast to the declared types.
//!   The attached amount moves to the contract's account.
//!
//! Engine versions: a deploy records the AergoSQL engine version it ran under in the
//! contract's metadata (`aergo_sql::EngineVersion`, chosen by block height from the genesis's
//! `sql_engine` activations, [`engine_at`]; version 1 records nothing, as before versions
//! existed), and every later load, call and upgrade runs the contract with that version's
//! rules, so a newer engine never changes what a deployed contract computes.
//!
//! Gas: the transaction's intrinsic gas plus what the engine reports; the engine runs with
//! the rest of the gas limit. A failing deploy or call (SQL error, `RAISE EXCEPTION`, out of
//! gas, a failed `send`) reverts every write and transfer of the call: only the fee and the
//! nonce change.

use crate::error::ChainError;
use crate::state::{Account, Overlay, StateView};
use aergo_sql::{ChainContext, Contract, EngineVersion, Kv, KvError, Value};
use aergo_types::{Address, Hash};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::OnceLock;

pub use crate::limits::QUERY_GAS_CAP;

/// The engine versions a genesis activates, with their heights (`Genesis::sql_engine`), or
/// the first version number this node does not know.
pub fn engine_activations(genesis: &aergo_types::Genesis) -> Result<Vec<(EngineVersion, u64)>, u8> {
    genesis
        .sql_engine
        .iter()
        .map(|a| {
            EngineVersion::from_number(a.version)
                .map(|v| (v, a.height))
                .ok_or(a.version)
        })
        .collect()
}

/// The engine version a contract deployed at `height` gets: the newest the genesis activates
/// at or below it, version 1 without any. `Chain::open` refuses a genesis naming a version
/// this node does not know, so none is skipped here.
pub fn engine_at(genesis: &aergo_types::Genesis, height: u64) -> EngineVersion {
    EngineVersion::at_height(height, &engine_activations(genesis).unwrap_or_default())
}

/// The state-key prefix of a contract's storage.
pub fn prefix(addr: &Address) -> Vec<u8> {
    let mut p = Vec::with_capacity(34);
    p.push(b'c');
    p.extend_from_slice(&addr.to_raw());
    p
}

fn kv_err(e: ChainError) -> KvError {
    KvError(e.to_string())
}

/// A writable `Kv` over an execution overlay.
pub struct OverlayKv<'a, 'b> {
    /// The overlay written to.
    pub ov: &'a mut Overlay<'b>,
}

impl Kv for OverlayKv<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.ov.get(key).map_err(kv_err)
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.ov.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }
    fn put_vec(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), KvError> {
        self.ov.writes.insert(key, Some(value));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), KvError> {
        self.ov.writes.insert(key.to_vec(), None);
        Ok(())
    }
    fn scan<'s>(
        &'s self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = aergo_sql::kv::KvItem> + 's> {
        scan_items(self.ov, start, end, usize::MAX)
    }
    fn scan_limit<'s>(
        &'s self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Box<dyn Iterator<Item = aergo_sql::kv::KvItem> + 's> {
        scan_items(self.ov, start, end, limit)
    }
}

/// A read-only `Kv` over any state view (queries at a height).
pub struct ReadKv<'a> {
    /// The view read.
    pub view: &'a dyn StateView,
}

impl Kv for ReadKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.view.get(key).map_err(kv_err)
    }
    fn put(&mut self, _: &[u8], _: &[u8]) -> Result<(), KvError> {
        Err(KvError("read-only state".into()))
    }
    fn delete(&mut self, _: &[u8]) -> Result<(), KvError> {
        Err(KvError("read-only state".into()))
    }
    fn scan<'s>(
        &'s self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = aergo_sql::kv::KvItem> + 's> {
        scan_items(self.view, start, end, usize::MAX)
    }
    fn scan_limit<'s>(
        &'s self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Box<dyn Iterator<Item = aergo_sql::kv::KvItem> + 's> {
        scan_items(self.view, start, end, limit)
    }
}

/// A range of `view` for the engine: the whole range, or the first `limit` pairs read
/// without reading the rest.
fn scan_items<'s>(
    view: &'s dyn StateView,
    start: &[u8],
    end: &[u8],
    limit: usize,
) -> Box<dyn Iterator<Item = aergo_sql::kv::KvItem> + 's> {
    let pairs = if limit == usize::MAX {
        view.scan(start, end)
    } else {
        view.scan_limit(start, end, limit)
    };
    match pairs {
        Ok(pairs) => Box::new(pairs.into_iter().map(Ok)),
        Err(e) => Box::new(std::iter::once(Err(kv_err(e)))),
    }
}

/// Loaded contracts, keyed by content (prefix, owner and every stored script), so a cached
/// entry can never be stale: an upgrade stores a new script and so a new key. JIT compilation
/// happens once per content, never per call, and never inside block execution: deploys,
/// upgrades and loads queue the code for `aergo-sql`'s background JIT worker (bounded queue)
/// and calls run on the interpreter until it is ready — both engines give identical results,
/// gas and writes, so which one ran never shows in the state. A cache hit re-queues a version
/// the full queue turned away.
fn cache() -> &'static Mutex<HashMap<Hash, Contract>> {
    static C: OnceLock<Mutex<HashMap<Hash, Contract>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

fn content_key(pfx: &[u8], kv: &dyn Kv) -> Result<Option<Hash>, ChainError> {
    let mut meta_start = pfx.to_vec();
    meta_start.push(0);
    let mut meta_end = pfx.to_vec();
    meta_end.push(1);
    let mut h = blake3::Hasher::new();
    let mut any = false;
    for item in kv.scan(&meta_start, &meta_end) {
        let (k, v) = item.map_err(|e| ChainError::Db(e.0))?;
        h.update(&(k.len() as u64).to_be_bytes());
        h.update(&k);
        h.update(&(v.len() as u64).to_be_bytes());
        h.update(&v);
        any = true;
    }
    Ok(any.then(|| Hash(*h.finalize().as_bytes())))
}

/// Loads the contract at `addr` as `kv` shows it (None if there is none).
pub fn load(addr: &Address, kv: &dyn Kv) -> Result<Option<Contract>, String> {
    let pfx = prefix(addr);
    let Some(key) = content_key(&pfx, kv).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if let Some(c) = cache().lock().get(&key) {
        c.queue_jit();
        return Ok(Some(c.clone()));
    }
    let c = Contract::load_background(&pfx, kv).map_err(|e| e.to_string())?;
    let mut m = cache().lock();
    if m.len() > 1024 {
        m.clear();
    }
    m.insert(key, c.clone());
    Ok(Some(c))
}

fn remember(addr: &Address, c: &Contract, kv: &dyn Kv) {
    if let Ok(Some(key)) = content_key(&prefix(addr), kv) {
        cache().lock().insert(key, c.clone());
    }
}

/// Chain context for a call: reads balances through the overlay; `send` transfers are
/// buffered and applied by the executor only when the whole call succeeds.
pub struct CallCtx<'a, 'b> {
    /// The overlay (read for balances).
    pub ov: &'a Overlay<'b>,
    /// Signer.
    pub sender: Address,
    /// The contract.
    pub contract: Address,
    /// Block height.
    pub height: u64,
    /// Block time (ms).
    pub time_ms: u64,
    /// Transaction hash.
    pub tx_hash: Hash,
    /// Attached amount (already credited to the contract in `ov`).
    pub amount: u128,
    /// Buffered sends.
    pub sends: Vec<(Address, u128)>,
}

impl CallCtx<'_, '_> {
    fn contract_balance(&self) -> Result<u128, String> {
        let acct = self.ov.account(&self.contract).map_err(|e| e.to_string())?;
        let sent: u128 = self.sends.iter().map(|(_, a)| *a).sum();
        Ok(acct.balance.saturating_sub(sent))
    }
}

impl ChainContext for CallCtx<'_, '_> {
    fn sender(&self) -> String {
        self.sender.encode()
    }
    fn block_height(&self) -> u64 {
        self.height
    }
    fn block_time(&self) -> i64 {
        (self.time_ms / 1000) as i64
    }
    fn tx_hash(&self) -> String {
        self.tx_hash.to_hex()
    }
    fn contract_address(&self) -> String {
        self.contract.encode()
    }
    fn amount(&self) -> u128 {
        self.amount
    }
    fn balance(&self, addr: &str) -> Result<u128, String> {
        let a = Address::decode(addr).map_err(|e| e.to_string())?;
        if a == self.contract {
            return self.contract_balance();
        }
        let base = self.ov.account(&a).map_err(|e| e.to_string())?.balance;
        let incoming: u128 = self
            .sends
            .iter()
            .filter(|(t, _)| *t == a)
            .map(|(_, x)| *x)
            .sum();
        Ok(base.saturating_add(incoming))
    }
    fn send(&mut self, to: &str, amount: u128) -> Result<(), String> {
        let a = Address::decode(to).map_err(|e| e.to_string())?;
        if self.contract_balance()? < amount {
            return Err(format!("contract balance is below {amount} aer"));
        }
        self.sends.push((a, amount));
        Ok(())
    }
}

/// The result of running contract code inside a transaction.
pub struct Outcome {
    /// Engine gas used.
    pub gas: u64,
    /// Return value as text (deploy: the contract address).
    pub result: String,
    /// NOTICE events.
    pub notices: Vec<String>,
}

/// A parsed call payload.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallPayload {
    /// Function name.
    pub function: String,
    /// Arguments as text.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Moves `amount` from `from` to `to` in `ov`.
pub fn transfer(
    ov: &mut Overlay<'_>,
    from: &Address,
    to: &Address,
    amount: u128,
) -> Result<(), String> {
    if amount == 0 || from == to {
        return Ok(());
    }
    let mut f: Account = ov.account(from).map_err(|e| e.to_string())?;
    f.balance = f
        .balance
        .checked_sub(amount)
        .ok_or("insufficient balance")?;
    ov.put_account(from, &f);
    let mut t = ov.account(to).map_err(|e| e.to_string())?;
    t.balance = t.balance.checked_add(amount).ok_or("balance overflow")?;
    ov.put_account(to, &t);
    Ok(())
}

/// Deploys (or upgrades, when `existing`) a contract into `ov` under engine version 1 (no
/// activation height known here: [`deploy_version`] takes the block's). On error nothing is
/// written.
pub fn deploy(
    ov: &mut Overlay<'_>,
    addr: &Address,
    owner: &Address,
    script: &str,
    gas: u64,
    existing: bool,
) -> Result<Outcome, String> {
    deploy_version(ov, addr, owner, script, gas, existing, EngineVersion::V1)
}

/// [`deploy`] under engine `version` (the block's, [`engine_at`]) for a new contract; an
/// upgrade keeps the contract's own version.
pub fn deploy_version(
    ov: &mut Overlay<'_>,
    addr: &Address,
    owner: &Address,
    script: &str,
    gas: u64,
    existing: bool,
    version: EngineVersion,
) -> Result<Outcome, String> {
    let pfx = prefix(addr);
    let mut kv = OverlayKv { ov };
    if existing {
        let mut c = load(addr, &kv)?.ok_or_else(|| format!("no contract at {addr}"))?;
        let used = c
            .upgrade_background(script, &owner.encode(), &mut kv, gas)
            .map_err(|e| e.to_string())?;
        remember(addr, &c, &kv);
        return Ok(Outcome {
            gas: used,
            result: addr.encode(),
            notices: Vec::new(),
        });
    }
    // A deploy never writes over a contract (addresses are unique per creator and nonce, and
    // per branch; this also holds for a deploy merged from a branch).
    let end = crate::staking::prefix_end(&pfx);
    if !kv
        .ov
        .scan_limit(&pfx, &end, 1)
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Err(format!(
            "address {addr} already holds a contract; a deploy never overwrites one"
        ));
    }
    let (c, used) =
        Contract::deploy_version(version, script, &owner.encode(), &pfx, &mut kv, gas, true)
            .map_err(|e| e.to_string())?;
    remember(addr, &c, &kv);
    Ok(Outcome {
        gas: used,
        result: addr.encode(),
        notices: Vec::new(),
    })
}

/// Calls a function; on success its writes are in `ov` and its sends applied.
pub fn call(
    ov: &mut Overlay<'_>,
    ctx_info: (Address, Address, u64, u64, Hash, u128),
    payload: &[u8],
    gas: u64,
) -> Result<Outcome, String> {
    let (sender, contract, height, time_ms, tx_hash, amount) = ctx_info;
    let p: CallPayload = serde_json::from_slice(payload).map_err(|e| {
        format!("bad call payload (expected {{\"function\": NAME, \"args\": [TEXT…]}}): {e}")
    })?;
    let args: Vec<Value> = p.args.into_iter().map(Value::Text).collect();
    let c = load(&contract, &ReadKv { view: &*ov })?
        .ok_or_else(|| format!("no contract at {contract}"))?;
    // The engine needs the overlay mutably (writes) and the context needs it for balances;
    // run the engine on a child overlay and merge it on success.
    let base: &Overlay<'_> = ov;
    let mut child = Overlay::new(base);
    let (out, sends) = {
        let mut cctx = CallCtx {
            ov: base,
            sender,
            contract,
            height,
            time_ms,
            tx_hash,
            amount,
            sends: Vec::new(),
        };
        let mut kv = OverlayKv { ov: &mut child };
        let out = c
            .call(&p.function, &args, &mut cctx, &mut kv, gas)
            .map_err(|e| e.to_string())?;
        (out, cctx.sends)
    };
    let writes = child.writes;
    ov.writes.extend(writes);
    for (to, amt) in sends {
        transfer(ov, &contract, &to, amt)?;
    }
    Ok(Outcome {
        gas: out.gas_used,
        result: out.result.to_text(),
        notices: out.events,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: failures must panic
    use super::*;
    use crate::state::MemState;
    use aergo_types::Keypair;

    const ARRAYS: &str = "CREATE FUNCTION total(xs BIGINT[]) RETURNS BIGINT AS $$
DECLARE x BIGINT; s BIGINT := 0;
BEGIN FOREACH x IN ARRAY xs LOOP s := s + x; END LOOP; RETURN s; END $$;";

    fn engine_key(addr: &Address) -> Vec<u8> {
        let mut k = prefix(addr);
        k.push(0);
        k.extend_from_slice(b"engine");
        k
    }

    /// The genesis's activations pick the version by height; none means version 1 forever;
    /// an unknown version is reported (and `Chain::open` refuses it).
    #[test]
    fn activation_heights_pick_the_engine_version() {
        use aergo_types::genesis::SqlEngineActivation;
        let legacy = aergo_types::Genesis::dev_legacy();
        assert_eq!(engine_at(&legacy, 0), EngineVersion::V1);
        assert_eq!(engine_at(&legacy, u64::MAX), EngineVersion::V1);
        assert_eq!(
            engine_at(&aergo_types::Genesis::dev(), 0),
            EngineVersion::V2
        );
        let mut g = legacy.clone();
        g.sql_engine = vec![SqlEngineActivation {
            version: 2,
            height: 10,
        }];
        assert_eq!(engine_at(&g, 9), EngineVersion::V1);
        assert_eq!(engine_at(&g, 10), EngineVersion::V2);
        g.sql_engine.push(SqlEngineActivation {
            version: 9,
            height: 20,
        });
        assert_eq!(engine_activations(&g), Err(9));
    }

    /// Without an activation height every deploy is version 1: it stores no version (the
    /// bytes a deploy stored before versions existed) and refuses arrays; a contract
    /// deployed under version 2 records it, and loads and calls run under it.
    #[test]
    fn deploys_record_their_engine_version() {
        let state = MemState::default();
        let mut ov = Overlay::new(&state);
        let owner = Address::from_public_key(&Keypair::dev().public());
        let v1 = Address::contract(&owner, 0);
        let plain = "CREATE TABLE t (id BIGINT PRIMARY KEY);";
        let legacy = engine_at(&aergo_types::Genesis::dev_legacy(), 5);
        deploy_version(&mut ov, &v1, &owner, plain, 1_000_000, false, legacy).unwrap();
        assert_eq!(ov.get(&engine_key(&v1)).unwrap(), None);
        let c = load(&v1, &ReadKv { view: &ov }).unwrap().unwrap();
        assert_eq!(c.version(), EngineVersion::V1);
        let v1b = Address::contract(&owner, 1);
        let Err(err) = deploy_version(&mut ov, &v1b, &owner, ARRAYS, 1_000_000, false, legacy)
        else {
            panic!("version 1 deployed arrays");
        };
        assert!(err.contains("array"), "{err}");
        // an upgrade keeps version 1
        assert!(deploy_version(
            &mut ov,
            &v1,
            &owner,
            ARRAYS,
            1_000_000,
            true,
            EngineVersion::V2
        )
        .is_err());

        let v2 = Address::contract(&owner, 2);
        deploy_version(
            &mut ov,
            &v2,
            &owner,
            ARRAYS,
            1_000_000,
            false,
            EngineVersion::V2,
        )
        .unwrap();
        assert_eq!(ov.get(&engine_key(&v2)).unwrap(), Some(vec![2]));
        let c = load(&v2, &ReadKv { view: &ov }).unwrap().unwrap();
        assert_eq!(c.version(), EngineVersion::V2);
        let payload = br#"{"function": "total", "args": ["{1,2,3}"]}"#;
        let out = call(
            &mut ov,
            (owner, v2, 5, 0, Hash::of(b"tx"), 0),
            payload,
            1_000_000,
        )
        .unwrap();
        assert_eq!(out.result, "6");
    }
}
