//! The genesis file (JSON): chain name, initial balances (exactly the total supply),
//! consensus settings and the gas schedule. The chain id that every transaction signs is
//! the genesis hash: BLAKE3 over a domain tag and the canonical JSON of the parsed file, so
//! formatting differences in the file do not change it but any value does.

use crate::address::Address;
use crate::amount::Aer;
use crate::crypto::Keypair;
use crate::hash::Hash;
use crate::TOTAL_SUPPLY;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// A genesis file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// Unreadable file.
    #[error("cannot read genesis {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid JSON for the schema.
    #[error("invalid genesis JSON: {0}")]
    Parse(String),
    /// A rule is broken.
    #[error("invalid genesis: {0}")]
    Invalid(String),
}

/// Which consensus engine the chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// One producer; the zero-config dev mode.
    Solo,
    /// Delegated proof of stake.
    Dpos,
    /// Proof of authority: a fixed, ordered producer set in round-robin slots.
    Poa,
}

/// Consensus settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    /// The engine.
    pub engine: Engine,
    /// Slot length in milliseconds.
    pub block_interval_ms: u64,
    /// Solo: the only address allowed to produce; `null` lets the node's own key produce
    /// (dev chains).
    #[serde(default)]
    pub producer: Option<Address>,
    /// DPoS settings (required when `engine` is `dpos`, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpos: Option<DposGenesis>,
    /// PoA settings (required when `engine` is `poa`, refused otherwise). Left out of the
    /// JSON (and so of the chain id) while absent, so chains created before the field
    /// existed keep their id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poa: Option<PoaGenesis>,
}

/// PoA settings in genesis: the producers, in slot order (slot `s` belongs to
/// `producers[s mod N]`), fixed for the chain's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoaGenesis {
    /// The producers (account-key addresses, no duplicates, at least one).
    pub producers: Vec<Address>,
    /// Whether a producer with nothing to include leaves its slot empty instead of making
    /// an empty block (default `true`). Empty blocks carry finality: a chain that skips
    /// them finalizes its last blocks only once later blocks are made.
    #[serde(default = "default_true")]
    pub skip_empty_slots: bool,
}

fn default_true() -> bool {
    true
}

/// DPoS settings in genesis. `bp_count`, `max_votes`, `min_stake` and
/// `unstake_lock_blocks` are the initial governance parameters (changeable later by a
/// governance vote); `round_slots` and the block interval are fixed for the chain's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DposGenesis {
    /// Slots per round; the schedule is re-elected at every round.
    pub round_slots: u64,
    /// Block producers per schedule.
    pub bp_count: usize,
    /// Most candidates one account may vote for.
    pub max_votes: usize,
    /// Least stake to register as a BP candidate.
    pub min_stake: Aer,
    /// Blocks an unstaked amount stays locked before it returns to the balance.
    pub unstake_lock_blocks: u64,
    /// The initial block producers: registered candidates at genesis, each staking `stake`
    /// out of its balance and voting for itself.
    pub bps: Vec<GenesisBp>,
}

/// One initial block producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBp {
    /// Its account (an account-key address).
    pub address: Address,
    /// Stake taken from its genesis balance.
    pub stake: Aer,
    /// Its libp2p address, informational (e.g. `/ip4/10.0.0.2/tcp/7846`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p_addr: Option<String>,
}

/// Gas schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GasParams {
    /// Gas charged for every transaction.
    pub base: u64,
    /// Gas per payload byte.
    pub per_byte: u64,
    /// Lowest accepted gas price in aer.
    pub min_price: Aer,
    /// Most gas one transaction may ask for (its gas limit); larger ones are refused at
    /// admission and make a block invalid. Absent: the chain's default (see `aergo-chain`
    /// `exec::DEFAULT_TX_GAS_CAP`). Left out of the JSON (and so of the chain id) while
    /// absent, so chains created before the field existed keep their id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_gas_cap: Option<u64>,
    /// Most gas one block may use: a transaction is included only when the gas used so far
    /// plus its gas limit fits. Absent: the chain's default (`exec::DEFAULT_BLOCK_GAS_LIMIT`).
    /// Left out of the JSON while absent, like `tx_gas_cap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_gas_limit: Option<u64>,
}

pub use crate::limits::{MAX_GAS_LIMIT_PARAM, MIN_GAS_LIMIT_PARAM};

/// One initial balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The account.
    pub address: Address,
    /// Its balance in aer.
    pub balance: Aer,
}

/// The genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Human-readable chain name.
    pub chain_name: String,
    /// Genesis time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Initial balances; they must add up to the total supply.
    pub balances: Vec<GenesisAccount>,
    /// Consensus settings.
    pub consensus: ConsensusParams,
    /// Gas schedule.
    pub gas: GasParams,
    /// The root chain's fee for creating a repository, in aer (absent: the default,
    /// [`crate::repo::DEFAULT_REPO_CREATE_FEE`]). Left out of the JSON (and so of the chain
    /// id) while absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_create_fee: Option<Aer>,
    /// The root chain's `dd_interval`: the least time between two blocks of a repository's
    /// directory, in ms (absent: [`crate::repo::DD_INTERVAL_MS`], 10 s). Left out of the JSON
    /// while absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dd_interval_ms: Option<u64>,
    /// Set on a repository's ledger or directory: what it belongs to. Its chain id is then
    /// derived from the root chain id and the name ([`crate::repo`]), and the total-supply
    /// rule does not apply (a repository has its own units). Absent on the root chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<crate::repo::RepoGenesis>,
    /// Repositories registered at genesis (root chain only; `aergo testnet init --repo`):
    /// registrations at height 0, as if created by `creator`. Left out of the JSON while empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<crate::repo::GenesisRepo>,
    /// Set on a branch's chain: where it forks off its parent. Its chain id is then the
    /// branch id ([`crate::branch::branch_id`]). Left out of the JSON while absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<crate::branch::BranchGenesis>,
    /// AergoSQL engine activations: from each entry's `height` on, a new contract deploys
    /// under engine `version` (a contract keeps the version it was deployed under forever).
    /// Versions after 1 only, in increasing order of version and height. Left out of the JSON
    /// (and so of the chain id) while empty: such a chain deploys every contract under
    /// version 1, as before versions existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sql_engine: Vec<SqlEngineActivation>,
}

/// One AergoSQL engine activation ([`Genesis::sql_engine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlEngineActivation {
    /// The engine version (2 or later; which versions exist is the chain crate's to check).
    pub version: u8,
    /// The first block height whose deploys get it.
    pub height: u64,
}

/// Most entries in [`Genesis::sql_engine`].
pub const MAX_SQL_ENGINE_ACTIVATIONS: usize = 16;

impl Genesis {
    /// The built-in dev genesis: solo consensus, 1 s blocks, the whole supply held by the
    /// well-known dev account ([`Keypair::dev`]), AergoSQL engine 2 from block 0.
    pub fn dev() -> Self {
        Genesis {
            sql_engine: vec![SqlEngineActivation {
                version: 2,
                height: 0,
            }],
            ..Self::dev_legacy()
        }
    }

    /// The dev genesis as it was before AergoSQL engine versions ([`Genesis::dev`] without
    /// `sql_engine`): dev data folders created then hold this chain, and a dev node that
    /// finds one keeps running it (every deploy under engine 1).
    pub fn dev_legacy() -> Self {
        Genesis {
            chain_name: "aergo-dev".into(),
            timestamp_ms: 0,
            balances: vec![GenesisAccount {
                address: Address::from_public_key(&Keypair::dev().public()),
                balance: Aer(TOTAL_SUPPLY),
            }],
            consensus: ConsensusParams {
                engine: Engine::Solo,
                block_interval_ms: 1000,
                producer: None,
                dpos: None,
                poa: None,
            },
            gas: GasParams {
                base: 1000,
                per_byte: 10,
                min_price: Aer(1_000_000_000),
                tx_gas_cap: None,
                block_gas_limit: None,
            },
            repo_create_fee: None,
            dd_interval_ms: None,
            repo: None,
            repos: Vec::new(),
            branch: None,
            sql_engine: Vec::new(),
        }
    }

    /// The fee in aer for creating a repository on this (root) chain.
    pub fn repo_create_fee(&self) -> u128 {
        self.repo_create_fee
            .map(|a| a.0)
            .unwrap_or(crate::repo::DEFAULT_REPO_CREATE_FEE)
    }

    /// Parses and validates JSON text.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        let g: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the rules: name, supply, duplicates, interval, gas.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |m: String| Err(GenesisError::Invalid(m));
        if self.chain_name.is_empty() || self.chain_name.len() > 64 {
            return bad("chain_name must be 1 to 64 characters".into());
        }
        let mut seen = HashSet::new();
        let mut total: u128 = 0;
        for a in &self.balances {
            if !seen.insert(a.address) {
                return bad(format!("duplicate balance for {}", a.address));
            }
            total = match total.checked_add(a.balance.0) {
                Some(t) => t,
                None => return bad("balances overflow".into()),
            };
        }
        if let Some(r) = &self.repo {
            if let Some(e) = crate::repo::name_error(&r.name) {
                return bad(e);
            }
            if self.repo_create_fee.is_some()
                || self.dd_interval_ms.is_some()
                || !self.repos.is_empty()
            {
                return bad(
                    "repo_create_fee, dd_interval_ms and repos are root chain settings".into(),
                );
            }
        } else if total != TOTAL_SUPPLY {
            return bad(format!(
                "balances add up to {} aer; the total supply is exactly {} aer (500,000,000 AERGO)",
                total, TOTAL_SUPPLY
            ));
        }
        let mut names = HashSet::new();
        for r in &self.repos {
            r.create.validate().map_err(GenesisError::Invalid)?;
            if r.creator.public_key().is_none() {
                return bad(format!(
                    "repository creator {} is not an account",
                    r.creator
                ));
            }
            if !names.insert(r.create.name.clone()) {
                return bad(format!("repository `{}` is listed twice", r.create.name));
            }
        }
        if self
            .dd_interval_ms
            .is_some_and(|d| !(50..=60_000).contains(&d))
        {
            return bad("dd_interval_ms must be between 50 and 60000".into());
        }
        if self.sql_engine.len() > MAX_SQL_ENGINE_ACTIVATIONS {
            return bad(format!(
                "sql_engine lists at most {MAX_SQL_ENGINE_ACTIVATIONS} activations"
            ));
        }
        let mut last: Option<SqlEngineActivation> = None;
        for a in &self.sql_engine {
            if a.version < 2 {
                return bad(format!(
                    "sql_engine: version {} needs no activation (version 1 is the default)",
                    a.version
                ));
            }
            if let Some(l) = last {
                if a.version <= l.version || a.height < l.height {
                    return bad(
                        "sql_engine must list versions in increasing order of version and height"
                            .into(),
                    );
                }
            }
            last = Some(*a);
        }
        if !(50..=60_000).contains(&self.consensus.block_interval_ms) {
            return bad("consensus.block_interval_ms must be between 50 and 60000".into());
        }
        if self.gas.base == 0 {
            return bad("gas.base must be positive".into());
        }
        for (name, v) in [
            ("tx_gas_cap", self.gas.tx_gas_cap),
            ("block_gas_limit", self.gas.block_gas_limit),
        ] {
            if let Some(v) = v {
                if !(MIN_GAS_LIMIT_PARAM..=MAX_GAS_LIMIT_PARAM).contains(&v) {
                    return bad(format!(
                        "gas.{name} must be between {MIN_GAS_LIMIT_PARAM} and {MAX_GAS_LIMIT_PARAM}"
                    ));
                }
            }
        }
        if let (Some(cap), Some(block)) = (self.gas.tx_gas_cap, self.gas.block_gas_limit) {
            if cap > block {
                return bad("gas.tx_gas_cap must not exceed gas.block_gas_limit".into());
            }
        }
        let c = &self.consensus;
        match (c.engine, &c.dpos, &c.poa) {
            (Engine::Solo | Engine::Poa, Some(_), _) => {
                return bad("consensus.dpos is only for engine \"dpos\"".into())
            }
            (Engine::Solo | Engine::Dpos, _, Some(_)) => {
                return bad("consensus.poa is only for engine \"poa\"".into())
            }
            (Engine::Dpos, None, _) => {
                return bad("engine \"dpos\" needs a consensus.dpos section".into())
            }
            (Engine::Poa, _, None) => {
                return bad("engine \"poa\" needs a consensus.poa section".into())
            }
            (Engine::Dpos, Some(d), None) => self.validate_dpos(d)?,
            (Engine::Poa, None, Some(p)) => Self::validate_poa(p)?,
            (Engine::Solo, None, None) => {}
        }
        Ok(())
    }

    fn validate_poa(p: &PoaGenesis) -> Result<(), GenesisError> {
        let bad = |m: String| Err(GenesisError::Invalid(m));
        if p.producers.is_empty() {
            return bad("consensus.poa.producers must name at least one producer".into());
        }
        if p.producers.len() > 1000 {
            return bad("consensus.poa.producers names more than 1000 producers".into());
        }
        let mut seen = HashSet::new();
        for a in &p.producers {
            if a.public_key().is_none() {
                return bad(format!("PoA producer {a} is not an account-key address"));
            }
            if !seen.insert(*a) {
                return bad(format!("PoA producer {a} is listed twice"));
            }
        }
        Ok(())
    }

    fn validate_dpos(&self, d: &DposGenesis) -> Result<(), GenesisError> {
        let bad = |m: String| Err(GenesisError::Invalid(m));
        if d.round_slots == 0 || d.round_slots > 100_000 {
            return bad("consensus.dpos.round_slots must be between 1 and 100000".into());
        }
        if d.bp_count == 0 || d.bp_count > 1000 {
            return bad("consensus.dpos.bp_count must be between 1 and 1000".into());
        }
        if d.max_votes == 0 || d.max_votes > 1000 {
            return bad("consensus.dpos.max_votes must be between 1 and 1000".into());
        }
        if d.bps.is_empty() {
            return bad("consensus.dpos.bps must name at least one block producer".into());
        }
        let mut seen = HashSet::new();
        for bp in &d.bps {
            if bp.address.public_key().is_none() {
                return bad(format!("BP {} is not an account-key address", bp.address));
            }
            if !seen.insert(bp.address) {
                return bad(format!("BP {} is listed twice", bp.address));
            }
            if bp.stake.0 < d.min_stake.0 {
                return bad(format!(
                    "BP {} stakes {} aer, below min_stake {} aer",
                    bp.address, bp.stake.0, d.min_stake.0
                ));
            }
            let balance = self
                .balances
                .iter()
                .find(|a| a.address == bp.address)
                .map(|a| a.balance.0)
                .unwrap_or(0);
            if balance < bp.stake.0 {
                return bad(format!(
                    "BP {} stakes {} aer but its genesis balance is {} aer",
                    bp.address, bp.stake.0, balance
                ));
            }
        }
        Ok(())
    }

    /// The chain id: the genesis hash (a repository's: derived from root chain id and name).
    pub fn chain_id(&self) -> Hash {
        if let Some(b) = &self.branch {
            return b.id;
        }
        if let Some(r) = &self.repo {
            return r.chain_id();
        }
        let json = serde_json::to_vec(self).unwrap_or_default();
        Hash::of_parts(&[b"aergo-genesis-v1", &json])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_repositories_are_validated_and_kept_out_of_the_id_while_empty() {
        use crate::repo::{GenesisRepo, RepoCreate, RepoEngine, Visibility};
        let dev = Genesis::dev();
        assert!(!dev.to_json().contains("repos"));
        let k = Keypair::dev();
        let admin = Address::from_public_key(&k.public());
        let repo = |name: &str| GenesisRepo {
            creator: admin,
            create: RepoCreate {
                name: name.into(),
                visibility: Visibility::Private,
                engine: RepoEngine::Solo,
                admins: vec![admin],
                producers: vec![k.public()],
                alloc: Vec::new(),
            },
        };
        let mut g = dev.clone();
        g.repos = vec![repo("team"), repo("vault")];
        g.validate().unwrap();
        assert_ne!(g.chain_id(), dev.chain_id());
        assert_eq!(Genesis::from_json(&g.to_json()).unwrap(), g);
        g.repos.push(repo("team"));
        assert!(g.validate().unwrap_err().to_string().contains("twice"));
        g.repos = vec![repo("Bad_Name")];
        assert!(g
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid repository name"));
    }

    #[test]
    fn dev_genesis_is_valid_and_round_trips() {
        let g = Genesis::dev();
        g.validate().unwrap();
        let back = Genesis::from_json(&g.to_json()).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.chain_id(), g.chain_id());
    }

    #[test]
    fn any_change_changes_the_chain_id() {
        let g = Genesis::dev();
        let mut h = g.clone();
        h.chain_name = "other".into();
        assert_ne!(g.chain_id(), h.chain_id());
    }

    /// A dev genesis as written before `tx_gas_cap`/`block_gas_limit` existed, and the
    /// chain id it had then.
    const OLD_DEV_JSON: &str = r#"{"chain_name":"aergo-dev","timestamp_ms":0,
        "balances":[{"address":"ADDR","balance":"500000000000000000000000000"}],
        "consensus":{"engine":"solo","block_interval_ms":1000,"producer":null},
        "gas":{"base":1000,"per_byte":10,"min_price":"1000000000"}}"#;

    #[test]
    fn absent_gas_limits_keep_the_chain_id_and_present_ones_change_it() {
        let dev_addr = Address::from_public_key(&Keypair::dev().public()).encode();
        let old = Genesis::from_json(&OLD_DEV_JSON.replace("ADDR", &dev_addr)).unwrap();
        assert_eq!(old, Genesis::dev_legacy());
        assert_eq!(old.gas.tx_gas_cap, None);
        // The id of a genesis without the fields is the id computed before they existed
        // (pinned: the dev chain's id, unchanged since the dev genesis was introduced).
        assert_eq!(
            old.chain_id().to_hex(),
            Hash::of_parts(&[
                b"aergo-genesis-v1",
                format!(
                    "{{\"chain_name\":\"aergo-dev\",\"timestamp_ms\":0,\"balances\":[{{\"address\":\"{dev_addr}\",\"balance\":\"500000000000000000000000000\"}}],\"consensus\":{{\"engine\":\"solo\",\"block_interval_ms\":1000,\"producer\":null}},\"gas\":{{\"base\":1000,\"per_byte\":10,\"min_price\":\"1000000000\"}}}}"
                )
                .as_bytes()
            ])
            .to_hex()
        );
        assert!(!old.to_json().contains("gas_cap"));
        assert!(!old.to_json().contains("poa"));
        let mut capped = old.clone();
        capped.gas.tx_gas_cap = Some(20_000_000);
        capped.validate().unwrap();
        assert_ne!(capped.chain_id(), old.chain_id());
        let mut limited = old.clone();
        limited.gas.block_gas_limit = Some(50_000_000);
        assert_ne!(limited.chain_id(), old.chain_id());
        assert_ne!(limited.chain_id(), capped.chain_id());
        let back = Genesis::from_json(&capped.to_json()).unwrap();
        assert_eq!(back.gas.tx_gas_cap, Some(20_000_000));
        assert_eq!(back.chain_id(), capped.chain_id());
    }

    /// `sql_engine` is left out of the JSON while empty (the legacy dev chain keeps its
    /// id), changes the id when set, round-trips, and is validated.
    #[test]
    fn sql_engine_activations_change_the_id_and_are_validated() {
        let legacy = Genesis::dev_legacy();
        let dev = Genesis::dev();
        assert!(!legacy.to_json().contains("sql_engine"));
        assert!(dev.to_json().contains("\"sql_engine\""));
        assert_ne!(dev.chain_id(), legacy.chain_id());
        let back = Genesis::from_json(&dev.to_json()).unwrap();
        assert_eq!(back, dev);
        assert_eq!(back.chain_id(), dev.chain_id());
        let act = |version, height| SqlEngineActivation { version, height };
        for (list, want) in [
            (vec![act(1, 0)], "version 1 needs no activation"),
            (vec![act(0, 0)], "version 0 needs no activation"),
            (vec![act(3, 0), act(2, 5)], "increasing order"),
            (vec![act(2, 5), act(3, 4)], "increasing order"),
            (vec![act(2, 0), act(2, 9)], "increasing order"),
            (
                (0..17u8).map(|i| act(i + 2, u64::from(i))).collect(),
                "at most 16",
            ),
        ] {
            let mut g = legacy.clone();
            g.sql_engine = list;
            let e = g.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(Genesis::from_json(&g.to_json()).is_err());
        }
        let mut g = legacy.clone();
        g.sql_engine = vec![act(2, 0), act(3, 0)];
        g.validate().unwrap();
        let e = Genesis::from_json(&legacy.to_json().replacen(
            '{',
            r#"{"sql_engine":[{"version":2,"height":0,"x":1}],"#,
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn poa_section_is_validated_and_changes_the_chain_id() {
        let a = Address::from_public_key(&Keypair::from_seed(&[1; 32]).public());
        let b = Address::from_public_key(&Keypair::from_seed(&[2; 32]).public());
        let mut g = Genesis::dev();
        g.consensus.engine = Engine::Poa;
        assert!(g
            .validate()
            .unwrap_err()
            .to_string()
            .contains("consensus.poa"));
        g.consensus.poa = Some(PoaGenesis {
            producers: vec![a, b],
            skip_empty_slots: true,
        });
        g.validate().unwrap();
        assert_ne!(g.chain_id(), Genesis::dev().chain_id());
        let back = Genesis::from_json(&g.to_json()).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.chain_id(), g.chain_id());
        // `skip_empty_slots` is optional and defaults to true.
        let mut v: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
        v["consensus"]["poa"]
            .as_object_mut()
            .unwrap()
            .remove("skip_empty_slots");
        let text = v.to_string();
        assert!(!text.contains("skip_empty_slots"), "{text}");
        assert_eq!(Genesis::from_json(&text).unwrap(), g);
        let mut e = g.clone();
        e.consensus.poa = Some(PoaGenesis {
            producers: vec![],
            skip_empty_slots: false,
        });
        assert!(e
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        let mut e = g.clone();
        e.consensus.poa = Some(PoaGenesis {
            producers: vec![a, b, a],
            skip_empty_slots: false,
        });
        assert!(e.validate().unwrap_err().to_string().contains("twice"));
        let mut e = g.clone();
        e.consensus.poa = Some(PoaGenesis {
            producers: vec![Address::contract(&a, 0)],
            skip_empty_slots: false,
        });
        assert!(e.validate().is_err());
        let mut e = Genesis::dev();
        e.consensus.poa = g.consensus.poa.clone();
        assert!(e.validate().unwrap_err().to_string().contains("only for"));
    }

    #[test]
    fn gas_limits_out_of_bounds_are_refused() {
        let mut g = Genesis::dev();
        g.gas.tx_gas_cap = Some(10);
        assert!(g.validate().unwrap_err().to_string().contains("tx_gas_cap"));
        let mut g = Genesis::dev();
        g.gas.block_gas_limit = Some(MAX_GAS_LIMIT_PARAM + 1);
        assert!(g
            .validate()
            .unwrap_err()
            .to_string()
            .contains("block_gas_limit"));
        let mut g = Genesis::dev();
        g.gas.tx_gas_cap = Some(40_000_000);
        g.gas.block_gas_limit = Some(30_000_000);
        assert!(g
            .validate()
            .unwrap_err()
            .to_string()
            .contains("must not exceed"));
    }

    #[test]
    fn broken_rules_are_reported() {
        let mut g = Genesis::dev();
        g.balances[0].balance = Aer(1);
        assert!(g
            .validate()
            .unwrap_err()
            .to_string()
            .contains("total supply"));
        let mut g = Genesis::dev();
        g.balances.push(g.balances[0].clone());
        assert!(g.validate().unwrap_err().to_string().contains("duplicate"));
        assert!(Genesis::from_json("{").is_err());
        assert!(Genesis::from_json("{\"chain_name\": 5}").is_err());
        let mut v: serde_json::Value = serde_json::from_str(&Genesis::dev().to_json()).unwrap();
        v["surprise"] = 1.into();
        assert!(Genesis::from_json(&v.to_string()).is_err());
    }
}
