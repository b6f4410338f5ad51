//! Repositories: ledgers of their own beside the root chain `aergo`, created by a
//! `repo_create` transaction on the root chain.
//!
//! - A repository's name is `[a-z0-9-]{3,32}` (not starting or ending with `-`); `aergo` is the
//!   root's and cannot be taken.
//! - Its id, the chain id its transactions sign, is `BLAKE3("aergo-repo-v1" ‖ root chain id ‖
//!   name)`; its directory's (DD) is `BLAKE3("aergo-dd-v1" ‖ repository id)`.
//! - The `repo_create` payload ([`RepoCreate`]) carries visibility, engine, admins, producer
//!   node keys and the initial allocation of the repository's own units. Encoding (integers
//!   big-endian): `version=1 u8 ‖ name (u32 len ‖ bytes) ‖ visibility u8 ‖ engine u8 ‖
//!   admins (u32 count ‖ 33-byte raw addresses) ‖ producers (u32 count ‖ 32-byte keys) ‖
//!   alloc (u32 count ‖ (33-byte address ‖ u128 amount)…)`; decoding is strict (bounded
//!   counts, no trailing bytes).
//! - The root chain keeps a [`Registration`] per repository (the create payload, creator,
//!   height, time and transaction), from which every hosting node derives the same genesis
//!   ([`Registration::genesis`], [`Registration::directory_genesis`]).

use crate::address::Address;
use crate::amount::Aer;
use crate::block_ext::MergeStrategy;
use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::PublicKey;
use crate::genesis::{ConsensusParams, Engine, GasParams, Genesis, GenesisAccount, PoaGenesis};
use crate::hash::Hash;
use crate::AER_PER_AERGO;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The root repository's name.
pub const ROOT_REPO: &str = "aergo";
/// Most admins a `repo_create` may name.
pub const MAX_REPO_ADMINS: usize = 16;
/// Most producer node keys a `repo_create` may name.
pub const MAX_REPO_PRODUCERS: usize = 16;
/// Most initial allocations a `repo_create` may carry.
pub const MAX_REPO_ALLOC: usize = 64;
/// `repo_create_fee` when the root genesis sets none: 100 AERGO.
pub const DEFAULT_REPO_CREATE_FEE: u128 = 100 * AER_PER_AERGO;
/// Units the creator holds when a `repo_create` carries no allocation: 1,000,000.
pub const DEFAULT_CREATOR_UNITS: u128 = 1_000_000 * AER_PER_AERGO;
/// The directory's block interval (`dd_interval`): at most one block per 10 s.
pub const DD_INTERVAL_MS: u64 = 10_000;
/// Encoding version of [`RepoCreate`].
const CREATE_VERSION: u8 = 1;

/// Who may read a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Readable by anyone.
    Public,
    /// Replicated to member nodes only; reads need a member's signature.
    Private,
}

/// A repository's consensus engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoEngine {
    /// One producer.
    Solo,
    /// Its producers in round-robin slots.
    Poa,
}

/// Which of a repository's two chains a genesis is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoPart {
    /// The repository's ledger.
    Ledger,
    /// Its Distributed Directory.
    Directory,
}

/// What a repository's genesis records about it (absent on the root chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoGenesis {
    /// The root chain's id.
    pub root_chain_id: Hash,
    /// The repository's name.
    pub name: String,
    /// Ledger or directory.
    pub part: RepoPart,
    /// Visibility.
    pub visibility: Visibility,
    /// The initial admins.
    pub admins: Vec<Address>,
}

impl RepoGenesis {
    /// The chain id of this part.
    pub fn chain_id(&self) -> Hash {
        let id = repo_id(&self.root_chain_id, &self.name);
        match self.part {
            RepoPart::Ledger => id,
            RepoPart::Directory => directory_id(&id),
        }
    }
}

/// Why a name cannot be a repository's (`None`: it can).
pub fn name_error(name: &str) -> Option<String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !(3..=32).contains(&name.len()) || !ok_chars {
        return Some(format!(
            "invalid repository name `{}`: use 3 to 32 characters of a-z, 0-9 and -",
            name.chars().take(64).collect::<String>().escape_default()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some(format!(
            "invalid repository name `{name}`: it may not start or end with -"
        ));
    }
    if name == ROOT_REPO {
        return Some(format!(
            "`{ROOT_REPO}` is the root repository's name and cannot be created"
        ));
    }
    None
}

/// The id of repository `name` under root chain `root`.
pub fn repo_id(root: &Hash, name: &str) -> Hash {
    Hash::of_parts(&[b"aergo-repo-v1", &root.0, name.as_bytes()])
}

/// The id of the directory of repository `repo`.
pub fn directory_id(repo: &Hash) -> Hash {
    Hash::of_parts(&[b"aergo-dd-v1", &repo.0])
}

/// The payload of a `repo_create` transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoCreate {
    /// Unique name.
    pub name: String,
    /// Visibility.
    pub visibility: Visibility,
    /// Engine.
    pub engine: RepoEngine,
    /// Accounts that administer the directory (at least one).
    pub admins: Vec<Address>,
    /// Node keys that produce the repository's blocks (exactly one for solo).
    pub producers: Vec<PublicKey>,
    /// Initial balances of the repository's units (empty: the creator gets
    /// [`DEFAULT_CREATOR_UNITS`]).
    pub alloc: Vec<(Address, Aer)>,
}

fn invalid(m: String) -> DecodeError {
    DecodeError::Invalid {
        what: "repo_create",
        message: m,
    }
}

// Counts are bounded by the MAX_REPO_* limits (checked before encoding): they fit u32.
#[allow(clippy::cast_possible_truncation)]
fn count(w: &mut Writer, n: usize) {
    w.u32(n as u32);
}

impl RepoCreate {
    /// The encoding (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + 40 * (self.admins.len() + self.alloc.len()));
        w.u8(CREATE_VERSION);
        w.bytes(self.name.as_bytes());
        w.u8(match self.visibility {
            Visibility::Public => 0,
            Visibility::Private => 1,
        });
        w.u8(match self.engine {
            RepoEngine::Solo => 0,
            RepoEngine::Poa => 1,
        });
        count(&mut w, self.admins.len());
        for a in &self.admins {
            w.fixed(&a.to_raw());
        }
        count(&mut w, self.producers.len());
        for p in &self.producers {
            w.fixed(&p.0);
        }
        count(&mut w, self.alloc.len());
        for (a, amount) in &self.alloc {
            w.fixed(&a.to_raw());
            w.u128(amount.0);
        }
        w.finish()
    }

    /// Strict decoding, then [`RepoCreate::validate`].
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let v = r.u8("version")?;
        if v != CREATE_VERSION {
            return Err(invalid(format!("unknown repo_create version {v}")));
        }
        let name = std::str::from_utf8(r.bytes(64, "name")?)
            .map_err(|_| invalid("the name is not UTF-8".into()))?
            .to_string();
        let visibility = match r.u8("visibility")? {
            0 => Visibility::Public,
            1 => Visibility::Private,
            x => return Err(invalid(format!("unknown visibility {x}"))),
        };
        let engine = match r.u8("engine")? {
            0 => RepoEngine::Solo,
            1 => RepoEngine::Poa,
            x => return Err(invalid(format!("unknown engine {x}"))),
        };
        let n = bounded(&mut r, MAX_REPO_ADMINS, "admins")?;
        let mut admins = Vec::with_capacity(n);
        for _ in 0..n {
            admins.push(Address::from_raw(&r.array("admin")?).map_err(|e| invalid(e.to_string()))?);
        }
        let n = bounded(&mut r, MAX_REPO_PRODUCERS, "producers")?;
        let mut producers = Vec::with_capacity(n);
        for _ in 0..n {
            producers.push(PublicKey(r.array("producer")?));
        }
        let n = bounded(&mut r, MAX_REPO_ALLOC, "alloc")?;
        let mut alloc = Vec::with_capacity(n);
        for _ in 0..n {
            let a = Address::from_raw(&r.array("alloc address")?)
                .map_err(|e| invalid(e.to_string()))?;
            alloc.push((a, Aer(r.u128("alloc amount")?)));
        }
        r.finish()?;
        let c = RepoCreate {
            name,
            visibility,
            engine,
            admins,
            producers,
            alloc,
        };
        c.validate().map_err(invalid)?;
        Ok(c)
    }

    /// The rules that need no state: name, counts, no duplicates, account addresses, solo
    /// with one producer, an allocation that does not overflow.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = name_error(&self.name) {
            return Err(e);
        }
        if self.admins.is_empty() || self.admins.len() > MAX_REPO_ADMINS {
            return Err(format!(
                "a repository needs 1 to {MAX_REPO_ADMINS} admins, not {}",
                self.admins.len()
            ));
        }
        if self.producers.is_empty() || self.producers.len() > MAX_REPO_PRODUCERS {
            return Err(format!(
                "a repository needs 1 to {MAX_REPO_PRODUCERS} producers, not {}",
                self.producers.len()
            ));
        }
        if self.engine == RepoEngine::Solo && self.producers.len() != 1 {
            return Err(format!(
                "engine solo takes exactly one producer, not {} (use --engine poa)",
                self.producers.len()
            ));
        }
        if self.alloc.len() > MAX_REPO_ALLOC {
            return Err(format!(
                "at most {MAX_REPO_ALLOC} initial allocations, not {}",
                self.alloc.len()
            ));
        }
        let mut seen = HashSet::new();
        for a in &self.admins {
            if a.public_key().is_none() {
                return Err(format!("admin {a} is not an account address"));
            }
            if !seen.insert(*a) {
                return Err(format!("admin {a} is listed twice"));
            }
        }
        let mut seen = HashSet::new();
        for p in &self.producers {
            if !seen.insert(p.0) {
                return Err(format!(
                    "producer {} is listed twice",
                    Address::from_public_key(p)
                ));
            }
        }
        let mut seen = HashSet::new();
        let mut total: u128 = 0;
        for (a, amount) in &self.alloc {
            if !seen.insert(*a) {
                return Err(format!("{a} is allocated twice"));
            }
            total = total
                .checked_add(amount.0)
                .ok_or("the allocation overflows")?;
        }
        Ok(())
    }
}

fn bounded(r: &mut Reader<'_>, max: usize, what: &'static str) -> Result<usize, DecodeError> {
    let n = r.u32(what)? as usize;
    if n > max {
        return Err(invalid(format!("{n} {what}; at most {max}")));
    }
    Ok(n)
}

/// A repository registered in the root genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisRepo {
    /// Who created it (its default allocation's holder).
    pub creator: Address,
    /// The repository.
    pub create: RepoCreate,
}

impl GenesisRepo {
    /// Its registration at height 0 of a chain starting at `timestamp_ms`.
    pub fn registration(&self, timestamp_ms: u64) -> Registration {
        Registration {
            create: self.create.clone(),
            creator: self.creator,
            height: 0,
            timestamp_ms,
            tx: Hash::ZERO,
        }
    }
}

/// A repository as the root chain records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// What the creator asked for.
    pub create: RepoCreate,
    /// Who created it.
    pub creator: Address,
    /// The root height of the block that created it.
    pub height: u64,
    /// That block's timestamp (the repository's genesis time).
    pub timestamp_ms: u64,
    /// The creating transaction.
    pub tx: Hash,
}

impl Registration {
    /// Encoding: the create payload (u32 len ‖ bytes) ‖ creator 33 ‖ height u64 ‖ time u64 ‖
    /// tx 32.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.bytes(&self.create.encode());
        w.fixed(&self.creator.to_raw());
        w.u64(self.height);
        w.u64(self.timestamp_ms);
        w.fixed(&self.tx.0);
        w.finish()
    }

    /// Strict decoding.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let create = RepoCreate::decode(r.bytes(crate::MAX_TX_SIZE, "create")?)?;
        let creator =
            Address::from_raw(&r.array("creator")?).map_err(|e| invalid(e.to_string()))?;
        let reg = Registration {
            create,
            creator,
            height: r.u64("height")?,
            timestamp_ms: r.u64("time")?,
            tx: Hash(r.array("tx")?),
        };
        r.finish()?;
        Ok(reg)
    }

    /// Whether node key `key` produces this repository.
    pub fn is_producer(&self, key: &PublicKey) -> bool {
        self.create.producers.iter().any(|p| p.0 == key.0)
    }

    fn consensus(&self, interval_ms: u64) -> ConsensusParams {
        let addrs: Vec<Address> = self
            .create
            .producers
            .iter()
            .map(Address::from_public_key)
            .collect();
        match self.create.engine {
            RepoEngine::Solo => ConsensusParams {
                engine: Engine::Solo,
                block_interval_ms: interval_ms,
                producer: addrs.first().copied(),
                dpos: None,
                poa: None,
            },
            RepoEngine::Poa => ConsensusParams {
                engine: Engine::Poa,
                block_interval_ms: interval_ms,
                producer: None,
                dpos: None,
                poa: Some(PoaGenesis {
                    producers: addrs,
                    skip_empty_slots: true,
                }),
            },
        }
    }

    fn repo_genesis(&self, root: &Genesis, part: RepoPart) -> RepoGenesis {
        RepoGenesis {
            root_chain_id: root.chain_id(),
            name: self.create.name.clone(),
            part,
            visibility: self.create.visibility,
            admins: self.create.admins.clone(),
        }
    }

    /// The repository ledger's genesis: its allocation, its producers, the root's slot length
    /// and gas schedule.
    pub fn genesis(&self, root: &Genesis) -> Genesis {
        let balances = if self.create.alloc.is_empty() {
            vec![GenesisAccount {
                address: self.creator,
                balance: Aer(DEFAULT_CREATOR_UNITS),
            }]
        } else {
            self.create
                .alloc
                .iter()
                .map(|(address, balance)| GenesisAccount {
                    address: *address,
                    balance: *balance,
                })
                .collect()
        };
        Genesis {
            chain_name: self.create.name.clone(),
            timestamp_ms: self.timestamp_ms,
            balances,
            consensus: self.consensus(root.consensus.block_interval_ms),
            gas: root.gas.clone(),
            repo_create_fee: None,
            dd_interval_ms: None,
            repos: Vec::new(),
            branch: None,
            repo: Some(self.repo_genesis(root, RepoPart::Ledger)),
            sql_engine: root.sql_engine.clone(),
        }
    }

    /// The directory's genesis: no balances (directory changes pay no gas; only admins may
    /// make them), the same producers, a block at most every `dd_interval` (the root's
    /// `dd_interval_ms`, default [`DD_INTERVAL_MS`]).
    pub fn directory_genesis(&self, root: &Genesis) -> Genesis {
        Genesis {
            chain_name: format!("{}/dd", self.create.name),
            timestamp_ms: self.timestamp_ms,
            balances: Vec::new(),
            consensus: self.consensus(root.dd_interval_ms.unwrap_or(DD_INTERVAL_MS)),
            gas: GasParams {
                base: root.gas.base,
                per_byte: root.gas.per_byte,
                min_price: Aer(0),
                tx_gas_cap: None,
                block_gas_limit: None,
            },
            repo_create_fee: None,
            dd_interval_ms: None,
            repos: Vec::new(),
            branch: None,
            repo: Some(self.repo_genesis(root, RepoPart::Directory)),
            sql_engine: Vec::new(),
        }
    }
}

/// A member's role in a repository (each includes the ones before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read a private repository.
    Read = 1,
    /// Send transactions.
    Write = 2,
    /// Change the directory.
    Admin = 3,
}

impl Role {
    /// From its byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Role::Read),
            2 => Some(Role::Write),
            3 => Some(Role::Admin),
            _ => None,
        }
    }
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
    /// From its name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Largest directory-change payload.
pub const MAX_DD_PAYLOAD: usize = 4096;
/// Largest directory block.
pub const MAX_DD_BLOCK: usize = 64 * 1024;

/// A tag: an immutable name for a block of the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// The branch (`main` until branches exist).
    pub branch: String,
    /// The repository height.
    pub height: u64,
    /// The block hash at that height.
    pub hash: Hash,
}

/// An identifier: a name for something in the repository (e.g. a contract), valid from a
/// repository height until it is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    /// What it names (e.g. `contract`).
    pub kind: String,
    /// What it resolves to (e.g. a contract address).
    pub target: String,
    /// First repository height at which it resolves.
    pub valid_from: u64,
    /// Repository height from which it no longer resolves.
    pub revoked_at: Option<u64>,
}

impl Identifier {
    /// Whether it resolves at repository height `h`.
    pub fn resolves_at(&self, h: u64) -> bool {
        h >= self.valid_from && self.revoked_at.is_none_or(|r| h < r)
    }
}

/// One change to a repository's directory (the payload of a `directory_change`, kind 10).
/// Encoding: `version=1 u8 ‖ op u8 ‖ fields` (strings as u32 len ‖ UTF-8, integers
/// big-endian): 0 member set (address 33 ‖ role u8), 1 member remove (address 33), 2 node add
/// (key 32), 3 node remove (key 32), 4 tag (name ‖ branch ‖ height u64 ‖ hash 32), 5 name set
/// (name ‖ kind ‖ target ‖ valid_from u64), 6 name revoke (name ‖ at u64), 7 anonymous access
/// (read u8 ‖ write u8), 8 branch create (path ‖ fork height u64 ‖ fork hash 32 ‖ producer
/// key 32 ‖ strategy u8 (0 auto, 1 consistent; bit 0x80 private) ‖ resolver flag u8 ‖
/// [address 33]), 9 branch delete (path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum DdOp {
    /// Give `account` a role.
    MemberSet {
        /// The account.
        account: Address,
        /// Its role.
        role: Role,
    },
    /// Take `account`'s role away.
    MemberRemove {
        /// The account.
        account: Address,
    },
    /// Allow node `key` to replicate the repository.
    NodeAdd {
        /// The node key.
        key: PublicKey,
    },
    /// Stop node `key` replicating it.
    NodeRemove {
        /// The node key.
        key: PublicKey,
    },
    /// Set tag `name` (immutable once set).
    TagSet {
        /// Tag name.
        name: String,
        /// The tag.
        tag: Tag,
    },
    /// Set identifier `name`.
    NameSet {
        /// Identifier name.
        name: String,
        /// Kind.
        kind: String,
        /// Target.
        target: String,
        /// First repository height it resolves at.
        valid_from: u64,
    },
    /// Revoke identifier `name` from repository height `at`.
    NameRevoke {
        /// Identifier name.
        name: String,
        /// First height at which it no longer resolves.
        at: u64,
    },
    /// Whether anyone may read, and write.
    Anonymous {
        /// Anonymous reads.
        read: bool,
        /// Anonymous writes.
        write: bool,
    },
    /// Create a branch of the repository's ledger (a `write` or `admin` member may).
    BranchCreate {
        /// Its path: `feat` forks `main`, `feat/fix` forks branch `feat` ([`branch_path_error`]).
        path: String,
        /// The parent's height it forks from: a final block of the parent.
        fork_height: u64,
        /// That block's hash (a node opens the branch only where the parent holds it).
        fork_hash: Hash,
        /// The node key that produces its blocks.
        producer: PublicKey,
        /// How it merges back.
        strategy: MergeStrategy,
        /// A consistent merge's resolver contract.
        resolver: Option<Address>,
        /// Private: only its creator reads it and sends to it.
        private: bool,
    },
    /// Delete a branch (its creator or an admin may); its blocks stay readable.
    BranchDelete {
        /// Its path.
        path: String,
    },
}

impl DdOp {
    /// Whether only an `admin` may make this change (branch operations need `write`).
    pub fn needs_admin(&self) -> bool {
        !matches!(self, DdOp::BranchCreate { .. } | DdOp::BranchDelete { .. })
    }
}

/// Why `path` cannot name a branch of a repository (`None`: it can): branch names
/// ([`crate::branch::name_error`]) joined by `/`, at most
/// [`crate::block_ext::MAX_LINEAGE_DEPTH`] levels.
pub fn branch_path_error(path: &str) -> Option<String> {
    let levels: Vec<&str> = path.split('/').collect();
    if levels.len() > crate::block_ext::MAX_LINEAGE_DEPTH {
        return Some(format!(
            "branch path `{}` has {} levels; at most {}",
            path.chars().take(64).collect::<String>().escape_default(),
            levels.len(),
            crate::block_ext::MAX_LINEAGE_DEPTH
        ));
    }
    levels.into_iter().find_map(crate::branch::name_error)
}

const DD_VERSION: u8 = 1;

fn dd_invalid(m: String) -> DecodeError {
    DecodeError::Invalid {
        what: "directory change",
        message: m,
    }
}

/// Why `s` cannot be a tag or identifier name (`None`: it can).
pub fn label_error(what: &str, s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (!ok).then(|| {
        format!(
            "invalid {what} `{}`: use 1 to 64 characters of A-Z, a-z, 0-9, ., _ and -",
            s.chars().take(64).collect::<String>().escape_default()
        )
    })
}

impl DdOp {
    /// The encoding (see the type's docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.u8(DD_VERSION);
        match self {
            DdOp::MemberSet { account, role } => {
                w.u8(0);
                w.fixed(&account.to_raw());
                w.u8(*role as u8);
            }
            DdOp::MemberRemove { account } => {
                w.u8(1);
                w.fixed(&account.to_raw());
            }
            DdOp::NodeAdd { key } => {
                w.u8(2);
                w.fixed(&key.0);
            }
            DdOp::NodeRemove { key } => {
                w.u8(3);
                w.fixed(&key.0);
            }
            DdOp::TagSet { name, tag } => {
                w.u8(4);
                w.bytes(name.as_bytes());
                w.bytes(tag.branch.as_bytes());
                w.u64(tag.height);
                w.fixed(&tag.hash.0);
            }
            DdOp::NameSet {
                name,
                kind,
                target,
                valid_from,
            } => {
                w.u8(5);
                w.bytes(name.as_bytes());
                w.bytes(kind.as_bytes());
                w.bytes(target.as_bytes());
                w.u64(*valid_from);
            }
            DdOp::NameRevoke { name, at } => {
                w.u8(6);
                w.bytes(name.as_bytes());
                w.u64(*at);
            }
            DdOp::Anonymous { read, write } => {
                w.u8(7);
                w.u8(u8::from(*read));
                w.u8(u8::from(*write));
            }
            DdOp::BranchCreate {
                path,
                fork_height,
                fork_hash,
                producer,
                strategy,
                resolver,
                private,
            } => {
                w.u8(8);
                w.bytes(path.as_bytes());
                w.u64(*fork_height);
                w.fixed(&fork_hash.0);
                w.fixed(&producer.0);
                w.u8(crate::branch::strategy_byte(*strategy, *private));
                match resolver {
                    Some(a) => {
                        w.u8(1);
                        w.fixed(&a.to_raw());
                    }
                    None => w.u8(0),
                }
            }
            DdOp::BranchDelete { path } => {
                w.u8(9);
                w.bytes(path.as_bytes());
            }
        }
        w.finish()
    }

    /// Strict decoding, with the rules of [`DdOp::validate`].
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() > MAX_DD_PAYLOAD {
            return Err(dd_invalid(format!(
                "{} bytes; a directory change is at most {MAX_DD_PAYLOAD}",
                b.len()
            )));
        }
        let mut r = Reader::new(b);
        let v = r.u8("version")?;
        if v != DD_VERSION {
            return Err(dd_invalid(format!("unknown version {v}")));
        }
        let text = |r: &mut Reader<'_>, what: &'static str| -> Result<String, DecodeError> {
            std::str::from_utf8(r.bytes(MAX_DD_PAYLOAD, what)?)
                .map(str::to_string)
                .map_err(|_| dd_invalid(format!("{what} is not UTF-8")))
        };
        let addr = |r: &mut Reader<'_>| -> Result<Address, DecodeError> {
            Address::from_raw(&r.array("account")?).map_err(|e| dd_invalid(e.to_string()))
        };
        let flag = |r: &mut Reader<'_>, what: &'static str| -> Result<bool, DecodeError> {
            match r.u8(what)? {
                0 => Ok(false),
                1 => Ok(true),
                x => Err(dd_invalid(format!("{what} flag {x}"))),
            }
        };
        let op = match r.u8("op")? {
            0 => {
                let account = addr(&mut r)?;
                let rb = r.u8("role")?;
                let role = Role::from_u8(rb).ok_or_else(|| dd_invalid(format!("role {rb}")))?;
                DdOp::MemberSet { account, role }
            }
            1 => DdOp::MemberRemove {
                account: addr(&mut r)?,
            },
            2 => DdOp::NodeAdd {
                key: PublicKey(r.array("node key")?),
            },
            3 => DdOp::NodeRemove {
                key: PublicKey(r.array("node key")?),
            },
            4 => DdOp::TagSet {
                name: text(&mut r, "tag name")?,
                tag: Tag {
                    branch: text(&mut r, "branch")?,
                    height: r.u64("height")?,
                    hash: Hash(r.array("hash")?),
                },
            },
            5 => DdOp::NameSet {
                name: text(&mut r, "name")?,
                kind: text(&mut r, "kind")?,
                target: text(&mut r, "target")?,
                valid_from: r.u64("valid_from")?,
            },
            6 => DdOp::NameRevoke {
                name: text(&mut r, "name")?,
                at: r.u64("at")?,
            },
            7 => DdOp::Anonymous {
                read: flag(&mut r, "read")?,
                write: flag(&mut r, "write")?,
            },
            8 => {
                let path = text(&mut r, "branch path")?;
                let fork_height = r.u64("fork height")?;
                let fork_hash = Hash(r.array("fork hash")?);
                let producer = PublicKey(r.array("producer")?);
                let (strategy, private) = crate::branch::strategy_flags(r.u8("strategy")?)?;
                let resolver = if flag(&mut r, "resolver")? {
                    Some(addr(&mut r)?)
                } else {
                    None
                };
                DdOp::BranchCreate {
                    path,
                    fork_height,
                    fork_hash,
                    producer,
                    strategy,
                    resolver,
                    private,
                }
            }
            9 => DdOp::BranchDelete {
                path: text(&mut r, "branch path")?,
            },
            x => return Err(dd_invalid(format!("unknown operation {x}"))),
        };
        r.finish()?;
        op.validate().map_err(dd_invalid)?;
        Ok(op)
    }

    /// Rules that need no state: names, lengths, account addresses.
    pub fn validate(&self) -> Result<(), String> {
        let short = |what: &str, s: &str, max: usize| {
            (s.len() > max)
                .then(|| format!("{what} is {} bytes; at most {max}", s.len()))
                .map_or(Ok(()), Err)
        };
        match self {
            DdOp::MemberSet { account, .. } | DdOp::MemberRemove { account } => {
                if account.public_key().is_none() {
                    return Err(format!("{account} is not an account address"));
                }
            }
            DdOp::TagSet { name, tag } => {
                label_error("tag name", name).map_or(Ok(()), Err)?;
                if tag.branch != "main" {
                    return Err(format!(
                        "branch `{}` does not exist (only `main` until branches are created)",
                        tag.branch.escape_default()
                    ));
                }
            }
            DdOp::NameSet {
                name, kind, target, ..
            } => {
                label_error("identifier", name).map_or(Ok(()), Err)?;
                label_error("identifier kind", kind).map_or(Ok(()), Err)?;
                short("target", target, 256)?;
                if target.is_empty() {
                    return Err("an identifier needs a target".into());
                }
            }
            DdOp::NameRevoke { name, .. } => {
                label_error("identifier", name).map_or(Ok(()), Err)?;
            }
            DdOp::BranchCreate {
                path,
                strategy,
                resolver,
                ..
            } => {
                branch_path_error(path).map_or(Ok(()), Err)?;
                if let Some(a) = resolver {
                    if *strategy != MergeStrategy::Consistent {
                        return Err("a resolver decides consistent merges only".into());
                    }
                    if a.public_key().is_some() {
                        return Err(format!("resolver {a} is an account, not a contract"));
                    }
                }
            }
            DdOp::BranchDelete { path } => branch_path_error(path).map_or(Ok(()), Err)?,
            DdOp::NodeAdd { .. } | DdOp::NodeRemove { .. } | DdOp::Anonymous { .. } => {}
        }
        Ok(())
    }
}

/// HTTP header naming the account that signed an RPC request (reads of private
/// repositories).
pub const AUTH_ACCOUNT_HEADER: &str = "x-aergo-account";
/// HTTP header with the signing time, ms since the Unix epoch.
pub const AUTH_TIME_HEADER: &str = "x-aergo-timestamp";
/// HTTP header with the ed25519 signature (hex) of [`read_auth_message`].
pub const AUTH_SIGNATURE_HEADER: &str = "x-aergo-signature";
/// Most a signed request's time may differ from the node's clock.
pub const AUTH_MAX_SKEW_MS: u64 = 30_000;

/// What a signed RPC request's signature covers: `BLAKE3("aergo-rpc-read-v1" ‖ time u64 BE ‖
/// account 33 raw ‖ the request body)`.
pub fn read_auth_message(time_ms: u64, account: &Address, body: &[u8]) -> Hash {
    Hash::of_parts(&[
        b"aergo-rpc-read-v1",
        &time_ms.to_be_bytes(),
        &account.to_raw(),
        body,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn create(name: &str) -> RepoCreate {
        let k = Keypair::dev();
        RepoCreate {
            name: name.into(),
            visibility: Visibility::Private,
            engine: RepoEngine::Solo,
            admins: vec![Address::from_public_key(&k.public())],
            producers: vec![k.public()],
            alloc: vec![(Address::from_public_key(&k.public()), Aer(5))],
        }
    }

    #[test]
    fn create_round_trips_and_refuses_bad_input() {
        let c = create("team-ledger");
        assert_eq!(RepoCreate::decode(&c.encode()).unwrap(), c);
        let mut long = c.encode();
        long.push(0);
        assert!(RepoCreate::decode(&long).is_err());
        for n in 0..c.encode().len() {
            assert!(RepoCreate::decode(&c.encode()[..n]).is_err(), "cut at {n}");
        }
        for bad in ["ab", "Abc", "a_b", "-ab", "ab-", "aergo", &"x".repeat(33)] {
            let e = RepoCreate::decode(&create(bad).encode()).unwrap_err();
            assert!(e.to_string().contains("repository"), "{bad}: {e}");
        }
        let mut two = create("two-producers");
        two.producers.push(Keypair::generate().public());
        assert!(two.validate().unwrap_err().contains("exactly one producer"));
        two.engine = RepoEngine::Poa;
        two.validate().unwrap();
    }

    #[test]
    fn ids_and_genesis_are_derived_from_root_and_name() {
        let root = Genesis::dev();
        let reg = Registration {
            create: create("team"),
            creator: Address::from_public_key(&Keypair::dev().public()),
            height: 7,
            timestamp_ms: 7000,
            tx: Hash::of(b"tx"),
        };
        assert_eq!(Registration::decode(&reg.encode()).unwrap(), reg);
        let g = reg.genesis(&root);
        g.validate().unwrap();
        assert_eq!(g.chain_id(), repo_id(&root.chain_id(), "team"));
        assert_ne!(g.chain_id(), root.chain_id());
        let d = reg.directory_genesis(&root);
        d.validate().unwrap();
        assert_eq!(d.chain_id(), directory_id(&g.chain_id()));
        // Directory changes round-trip; cut or padded ones are refused.
        let ops = [
            DdOp::MemberSet {
                account: reg.creator,
                role: Role::Write,
            },
            DdOp::MemberRemove {
                account: reg.creator,
            },
            DdOp::NodeAdd {
                key: Keypair::dev().public(),
            },
            DdOp::TagSet {
                name: "v1.0".into(),
                tag: Tag {
                    branch: "main".into(),
                    height: 3,
                    hash: Hash::of(b"b"),
                },
            },
            DdOp::NameSet {
                name: "token".into(),
                kind: "contract".into(),
                target: "Aabc".into(),
                valid_from: 4,
            },
            DdOp::NameRevoke {
                name: "token".into(),
                at: 9,
            },
            DdOp::Anonymous {
                read: true,
                write: false,
            },
            DdOp::BranchCreate {
                path: "feat/fix".into(),
                fork_height: 7,
                fork_hash: Hash::of(b"f"),
                producer: Keypair::dev().public(),
                strategy: MergeStrategy::Consistent,
                resolver: Some(Address::contract(&reg.creator, 1)),
                private: true,
            },
            DdOp::BranchCreate {
                path: "feat".into(),
                fork_height: 0,
                fork_hash: Hash::ZERO,
                producer: Keypair::dev().public(),
                strategy: MergeStrategy::Auto,
                resolver: None,
                private: false,
            },
            DdOp::BranchDelete {
                path: "feat".into(),
            },
        ];
        for op in ops {
            let b = op.encode();
            assert_eq!(DdOp::decode(&b).unwrap(), op);
            assert!(DdOp::decode(&b[..b.len() - 1]).is_err());
            let mut long = b.clone();
            long.push(0);
            assert!(DdOp::decode(&long).is_err());
        }
        let bad = DdOp::TagSet {
            name: "no spaces".into(),
            tag: Tag {
                branch: "main".into(),
                height: 1,
                hash: Hash::ZERO,
            },
        };
        assert!(DdOp::decode(&bad.encode()).is_err());
        assert!(DdOp::decode(&vec![1u8; MAX_DD_PAYLOAD + 1]).is_err());
        // Branch paths: names joined by `/`; a resolver only for consistent merges, and a
        // contract.
        for path in [
            "",
            "main",
            "12",
            "a//b",
            "feat/",
            "Feat",
            &["a"; 17].join("/"),
        ] {
            let op = DdOp::BranchDelete { path: path.into() };
            assert!(DdOp::decode(&op.encode()).is_err(), "{path}");
        }
        let create = |strategy, resolver| DdOp::BranchCreate {
            path: "feat".into(),
            fork_height: 1,
            fork_hash: Hash::ZERO,
            producer: Keypair::dev().public(),
            strategy,
            resolver,
            private: false,
        };
        let contract = Address::contract(&reg.creator, 1);
        assert!(create(MergeStrategy::Auto, Some(contract))
            .validate()
            .is_err());
        assert!(create(MergeStrategy::Consistent, Some(reg.creator))
            .validate()
            .is_err());
        assert!(!create(MergeStrategy::Auto, None).needs_admin());
        assert!(DdOp::NodeAdd {
            key: Keypair::dev().public()
        }
        .needs_admin());
        // A genesis that went through JSON keeps its id.
        assert_eq!(
            Genesis::from_json(&g.to_json()).unwrap().chain_id(),
            g.chain_id()
        );
    }
}
