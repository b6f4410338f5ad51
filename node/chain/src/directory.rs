//! A repository's Distributed Directory (DD): its namespace as the state of a small chain of
//! its own — members and roles, replicating nodes, tags, identifiers and the anonymous-access
//! flags — changed only by `directory_change` transactions (kind 10) signed by an admin.
//!
//! State layout (directory chains only): `'m' ‖ address 33` → role u8; `'n' ‖ node key 32` →
//! `1`; `'t' ‖ tag name` → branch (u32 len ‖ bytes) ‖ height u64 ‖ hash 32; `'i' ‖ identifier` →
//! kind ‖ target (u32 len ‖ bytes each) ‖ valid_from u64 ‖ revoked u8 ‖ [revoked_at u64];
//! `'o' ‖ "anon"` → read u8 ‖ write u8; `'b' ‖ branch path` → [`DirBranch`] (the branches of
//! the repository's ledger at every depth: `feat` forks `main`, `feat/fix` forks `feat`).
//! The genesis state makes the registration's admins `admin` members, its producers
//! replicating nodes, and a public repository readable by anyone.
//!
//! Rules: a change by an account without the role it needs cannot be included at all (it is
//! refused at admission and makes a block invalid): branch operations need `write`, every
//! other change `admin`. The others fail in the block, changing nothing (a tag already set —
//! tags are immutable —, a revocation of an unknown or already revoked identifier, or one
//! before it became valid, removing the last admin, a branch that exists or whose parent does
//! not, a creator past its cap). Directory changes pay no gas (the directory's minimum gas
//! price is 0): only members can make them, and the branch records one account can hold are
//! capped ([`MAX_LIVE_PER_CREATOR`], [`MAX_RECORDS_PER_CREATOR`]).
//!
//! A branch's id is `branch_id(parent id, name, hash of the directory block before the one
//! that created it)`, the parent id being the repository id for a top-level branch: a
//! re-created name never accepts the old branch's transactions. The directory cannot see the
//! ledger, so a node opens a branch only where the parent holds the named fork block.

use crate::error::ChainError;
use crate::state::{Overlay, StateView, WriteSet};
use aergo_types::branch::{branch_id, BranchRecord};
use aergo_types::codec::{Reader, Writer};
use aergo_types::repo::{DdOp, Identifier, RepoGenesis, Role, Tag, Visibility};
use aergo_types::{Address, Hash, PublicKey};

/// Most live branches one repository records, at every depth.
pub const MAX_LIVE_BRANCHES: usize = 1024;
/// Most live branches one account may have created in one repository.
pub const MAX_LIVE_PER_CREATOR: usize = 64;
/// Most branch records (live and deleted) one account may have created in one repository:
/// directory changes pay no gas, so this bounds what a writer can make every node keep.
/// Re-creating a deleted path reuses its record.
pub const MAX_RECORDS_PER_CREATOR: usize = 256;

/// A branch of the repository's ledger as its directory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirBranch {
    /// The directory block before the one that created it: the hash its id takes.
    pub created_after: Hash,
    /// The parent's block it forks from (at `record.fork_height`).
    pub fork_hash: Hash,
    /// Id, fork height, producer, strategy, creator, and the directory heights it was
    /// created and deleted at.
    pub record: BranchRecord,
}

impl DirBranch {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(160);
        v.extend_from_slice(&self.created_after.0);
        v.extend_from_slice(&self.fork_hash.0);
        v.extend_from_slice(&self.record.encode());
        v
    }
    fn decode(b: &[u8]) -> Result<Self, ChainError> {
        let h = |r: Option<&[u8]>| -> Result<Hash, ChainError> {
            r.and_then(|s| s.try_into().ok())
                .map(Hash)
                .ok_or_else(|| corrupt("branch record"))
        };
        Ok(DirBranch {
            created_after: h(b.get(..32))?,
            fork_hash: h(b.get(32..64))?,
            record: BranchRecord::decode(b.get(64..).unwrap_or_default())
                .map_err(|_| corrupt("branch record"))?,
        })
    }
}

/// What a directory change's execution needs of its block.
#[derive(Debug, Clone, Copy)]
pub struct ChangeCtx {
    /// The sender.
    pub from: Address,
    /// The directory block's height.
    pub height: u64,
    /// Its parent's hash (a branch created here takes it into its id).
    pub parent: Hash,
    /// The repository's id.
    pub repo: Hash,
}

fn branch_key(path: &str) -> Vec<u8> {
    let mut k = vec![b'b'];
    k.extend_from_slice(path.as_bytes());
    k
}

/// Branch `path`'s record (live or deleted).
pub fn branch(view: &dyn StateView, path: &str) -> Result<Option<DirBranch>, ChainError> {
    view.get(&branch_key(path))?
        .map(|b| DirBranch::decode(&b))
        .transpose()
}

/// Every branch record, by path.
pub fn all_branches(view: &dyn StateView) -> Result<Vec<(String, DirBranch)>, ChainError> {
    view.scan(b"b", b"c")?
        .into_iter()
        .map(|(k, v)| {
            let path = String::from_utf8(k.get(1..).unwrap_or_default().to_vec())
                .map_err(|_| corrupt("branch path"))?;
            Ok((path, DirBranch::decode(&v)?))
        })
        .collect()
}

/// The records of the branches that fork `parent` (`""`: the ledger's `main`), by name.
pub fn branches_of(
    view: &dyn StateView,
    parent: &str,
) -> Result<Vec<(String, DirBranch)>, ChainError> {
    let prefix = if parent.is_empty() {
        String::new()
    } else {
        format!("{parent}/")
    };
    let start = branch_key(&prefix);
    let end = if prefix.is_empty() {
        b"c".to_vec()
    } else {
        // `'b' ‖ parent ‖ '0'`: `'0'` follows `'/'`, so this ends the prefix's range.
        let mut e = branch_key(parent);
        e.push(b'0');
        e
    };
    view.scan(&start, &end)?
        .into_iter()
        .filter_map(|(k, v)| {
            let path = String::from_utf8(k.get(1..).unwrap_or_default().to_vec()).ok()?;
            let name = path.strip_prefix(&prefix)?.to_string();
            (!name.contains('/')).then_some((name, v))
        })
        .map(|(name, v)| Ok((name, DirBranch::decode(&v)?)))
        .collect()
}

fn apply_branch(
    o: &mut Overlay<'_>,
    op: &DdOp,
    c: &ChangeCtx,
) -> Result<Result<(), String>, ChainError> {
    match op {
        DdOp::BranchCreate {
            path,
            fork_height,
            fork_hash,
            producer,
            strategy,
            resolver,
            private,
        } => {
            if branch(&*o, path)?.is_some_and(|b| b.record.deleted.is_none()) {
                return Ok(Err(format!("branch `{path}` already exists")));
            }
            let (parent_id, name) = match path.rsplit_once('/') {
                Some((parent, name)) => match branch(&*o, parent)? {
                    Some(p) if p.record.deleted.is_none() => (p.record.id, name),
                    _ => return Ok(Err(format!("no branch `{parent}` to fork `{path}` from"))),
                },
                None => {
                    if tag(&*o, path)?.is_some() {
                        return Ok(Err(format!(
                            "`{path}` is a tag of this repository: a branch needs another name"
                        )));
                    }
                    (c.repo, path.as_str())
                }
            };
            let all = all_branches(&*o)?;
            let live = all
                .iter()
                .filter(|(_, b)| b.record.deleted.is_none())
                .count();
            if live >= MAX_LIVE_BRANCHES {
                return Ok(Err(format!(
                    "this repository has {live} live branches, the most it records; delete one first"
                )));
            }
            let mine = all.iter().filter(|(_, b)| b.record.creator == c.from);
            let mine_live = mine
                .clone()
                .filter(|(_, b)| b.record.deleted.is_none())
                .count();
            if mine_live >= MAX_LIVE_PER_CREATOR {
                return Ok(Err(format!(
                    "{} created {mine_live} live branches of this repository, the most one account may; delete one first",
                    c.from
                )));
            }
            let reuses = all.iter().any(|(p, _)| p == path);
            let mine_all = mine.count();
            if !reuses && mine_all >= MAX_RECORDS_PER_CREATOR {
                return Ok(Err(format!(
                    "{} created {mine_all} branch records in this repository, the most one account may keep; re-create a deleted branch's name instead",
                    c.from
                )));
            }
            let b = DirBranch {
                created_after: c.parent,
                fork_hash: *fork_hash,
                record: BranchRecord {
                    id: branch_id(&parent_id, name, &c.parent),
                    fork_height: *fork_height,
                    producer: *producer,
                    strategy: *strategy,
                    creator: c.from,
                    created: c.height,
                    deleted: None,
                    resolver: *resolver,
                    private: *private,
                },
            };
            o.writes.insert(branch_key(path), Some(b.encode()));
        }
        DdOp::BranchDelete { path } => {
            let Some(mut b) = branch(&*o, path)?.filter(|b| b.record.deleted.is_none()) else {
                return Ok(Err(format!("no branch `{path}`")));
            };
            if b.record.creator != c.from && role_of(&*o, &c.from)? != Some(Role::Admin) {
                return Ok(Err(format!(
                    "branch `{path}` was created by {}; only its creator or an admin may delete it",
                    b.record.creator
                )));
            }
            if let Some((child, _)) = branches_of(&*o, path)?
                .into_iter()
                .find(|(_, c)| c.record.deleted.is_none())
            {
                return Ok(Err(format!(
                    "branch `{path}` has a live branch `{path}/{child}`: delete it first"
                )));
            }
            b.record.deleted = Some(c.height);
            o.writes.insert(branch_key(path), Some(b.encode()));
        }
        _ => {}
    }
    Ok(Ok(()))
}

fn member_key(a: &Address) -> Vec<u8> {
    let mut k = vec![b'm'];
    k.extend_from_slice(&a.to_raw());
    k
}
fn node_key(k: &PublicKey) -> Vec<u8> {
    let mut v = vec![b'n'];
    v.extend_from_slice(&k.0);
    v
}
fn tag_key(name: &str) -> Vec<u8> {
    let mut k = vec![b't'];
    k.extend_from_slice(name.as_bytes());
    k
}
fn ident_key(name: &str) -> Vec<u8> {
    let mut k = vec![b'i'];
    k.extend_from_slice(name.as_bytes());
    k
}
const ANON_KEY: &[u8] = b"oanon";

fn corrupt(what: &str) -> ChainError {
    ChainError::Corrupt(format!("directory {what}"))
}

fn encode_tag(t: &Tag) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.bytes(t.branch.as_bytes());
    w.u64(t.height);
    w.fixed(&t.hash.0);
    w.finish()
}
fn decode_tag(b: &[u8]) -> Result<Tag, ChainError> {
    let mut r = Reader::new(b);
    let branch = String::from_utf8(
        r.bytes(4096, "branch")
            .map_err(|_| corrupt("tag"))?
            .to_vec(),
    )
    .map_err(|_| corrupt("tag"))?;
    let height = r.u64("height").map_err(|_| corrupt("tag"))?;
    let hash = Hash(r.array("hash").map_err(|_| corrupt("tag"))?);
    Ok(Tag {
        branch,
        height,
        hash,
    })
}
fn encode_ident(i: &Identifier) -> Vec<u8> {
    let mut w = Writer::with_capacity(96);
    w.bytes(i.kind.as_bytes());
    w.bytes(i.target.as_bytes());
    w.u64(i.valid_from);
    match i.revoked_at {
        Some(h) => {
            w.u8(1);
            w.u64(h);
        }
        None => w.u8(0),
    }
    w.finish()
}
fn decode_ident(b: &[u8]) -> Result<Identifier, ChainError> {
    let c = |_| corrupt("identifier");
    let mut r = Reader::new(b);
    let kind = String::from_utf8(r.bytes(4096, "kind").map_err(c)?.to_vec())
        .map_err(|_| corrupt("identifier"))?;
    let target = String::from_utf8(r.bytes(4096, "target").map_err(c)?.to_vec())
        .map_err(|_| corrupt("identifier"))?;
    let valid_from = r.u64("from").map_err(c)?;
    let revoked_at = match r.u8("revoked").map_err(c)? {
        0 => None,
        _ => Some(r.u64("at").map_err(c)?),
    };
    Ok(Identifier {
        kind,
        target,
        valid_from,
        revoked_at,
    })
}

/// The genesis state of a directory (see the module docs).
pub fn genesis_writes(r: &RepoGenesis, producers: &[Address], out: &mut WriteSet) {
    for a in &r.admins {
        out.insert(member_key(a), Some(vec![Role::Admin as u8]));
    }
    for p in producers.iter().filter_map(Address::public_key) {
        out.insert(node_key(&p), Some(vec![1]));
    }
    let public = u8::from(r.visibility == Visibility::Public);
    out.insert(ANON_KEY.to_vec(), Some(vec![public, 0]));
}

/// `account`'s role, if any.
pub fn role_of(view: &dyn StateView, account: &Address) -> Result<Option<Role>, ChainError> {
    match view.get(&member_key(account))? {
        Some(b) => Ok(Some(
            b.first()
                .copied()
                .and_then(Role::from_u8)
                .ok_or_else(|| corrupt("role"))?,
        )),
        None => Ok(None),
    }
}

/// Whether anyone may read, and write.
pub fn anonymous(view: &dyn StateView) -> Result<(bool, bool), ChainError> {
    match view.get(ANON_KEY)? {
        Some(b) if b.len() == 2 => Ok((b[0] == 1, b[1] == 1)),
        Some(_) => Err(corrupt("anonymous flags")),
        None => Ok((false, false)),
    }
}

/// Every member and role.
pub fn members(view: &dyn StateView) -> Result<Vec<(Address, Role)>, ChainError> {
    view.scan(b"m", b"n")?
        .into_iter()
        .map(|(k, v)| {
            let raw: [u8; 33] = k
                .get(1..)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| corrupt("member key"))?;
            let a = Address::from_raw(&raw).map_err(|_| corrupt("member key"))?;
            let role = v
                .first()
                .copied()
                .and_then(Role::from_u8)
                .ok_or_else(|| corrupt("role"))?;
            Ok((a, role))
        })
        .collect()
}

/// Every replicating node key.
pub fn nodes(view: &dyn StateView) -> Result<Vec<PublicKey>, ChainError> {
    view.scan(b"n", b"o")?
        .into_iter()
        .map(|(k, _)| {
            k.get(1..)
                .and_then(|s| s.try_into().ok())
                .map(PublicKey)
                .ok_or_else(|| corrupt("node key"))
        })
        .collect()
}

/// Every tag, by name.
pub fn tags(view: &dyn StateView) -> Result<Vec<(String, Tag)>, ChainError> {
    view.scan(b"t", b"u")?
        .into_iter()
        .map(|(k, v)| {
            Ok((
                String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned(),
                decode_tag(&v)?,
            ))
        })
        .collect()
}

/// Tag `name`.
pub fn tag(view: &dyn StateView, name: &str) -> Result<Option<Tag>, ChainError> {
    view.get(&tag_key(name))?
        .map(|b| decode_tag(&b))
        .transpose()
}

/// Every identifier, by name.
pub fn identifiers(view: &dyn StateView) -> Result<Vec<(String, Identifier)>, ChainError> {
    view.scan(b"i", b"j")?
        .into_iter()
        .map(|(k, v)| {
            Ok((
                String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned(),
                decode_ident(&v)?,
            ))
        })
        .collect()
}

/// Identifier `name`.
pub fn identifier(view: &dyn StateView, name: &str) -> Result<Option<Identifier>, ChainError> {
    view.get(&ident_key(name))?
        .map(|b| decode_ident(&b))
        .transpose()
}

/// Why `from` may not make change `op` at all (`None`: it may — it is an admin, or a
/// `write` member and `op` is a branch operation).
pub fn change_error(
    view: &dyn StateView,
    repo: &str,
    from: &Address,
    op: &DdOp,
) -> Result<Option<String>, ChainError> {
    let role = role_of(view, from)?;
    let (ok, needs) = if op.needs_admin() {
        (
            role == Some(Role::Admin),
            "changing its directory needs the `admin` role",
        )
    } else {
        (
            matches!(role, Some(Role::Write | Role::Admin)),
            "creating and deleting its branches needs the `write` role",
        )
    };
    Ok((!ok).then(|| {
        format!(
            "account {from} has {} in repository `{repo}`; {needs}",
            role.map(|r| format!("the `{}` role", r.name()))
                .unwrap_or_else(|| "no role".into())
        )
    }))
}

/// Applies one change on top of `o` (the sender may make it: [`change_error`]):
/// `Ok(Err(reason))` when it fails in the block, writing nothing.
pub fn apply(
    o: &mut Overlay<'_>,
    op: &DdOp,
    c: &ChangeCtx,
) -> Result<Result<(), String>, ChainError> {
    match op {
        DdOp::MemberSet { account, role } => {
            if *role != Role::Admin && role_of(&*o, account)? == Some(Role::Admin) {
                if let Some(e) = last_admin(&*o, account)? {
                    return Ok(Err(e));
                }
            }
            o.writes
                .insert(member_key(account), Some(vec![*role as u8]));
        }
        DdOp::MemberRemove { account } => {
            match role_of(&*o, account)? {
                None => return Ok(Err(format!("{account} is not a member"))),
                Some(Role::Admin) => {
                    if let Some(e) = last_admin(&*o, account)? {
                        return Ok(Err(e));
                    }
                }
                Some(_) => {}
            }
            o.writes.insert(member_key(account), None);
        }
        DdOp::NodeAdd { key } => {
            o.writes.insert(node_key(key), Some(vec![1]));
        }
        DdOp::NodeRemove { key } => {
            if o.get(&node_key(key))?.is_none() {
                return Ok(Err(format!(
                    "node {} does not replicate this repository",
                    Address::from_public_key(key)
                )));
            }
            o.writes.insert(node_key(key), None);
        }
        DdOp::TagSet { name, tag: t } => {
            if let Some(old) = tag(&*o, name)? {
                return Ok(Err(format!(
                    "tag `{name}` is already set (to height {} on {}); tags are immutable",
                    old.height, old.branch
                )));
            }
            if branch(&*o, name)?.is_some_and(|b| b.record.deleted.is_none()) {
                return Ok(Err(format!(
                    "`{name}` is a branch of this repository: a tag needs another name"
                )));
            }
            o.writes.insert(tag_key(name), Some(encode_tag(t)));
        }
        DdOp::NameSet {
            name,
            kind,
            target,
            valid_from,
        } => {
            if let Some(old) = identifier(&*o, name)? {
                if old.revoked_at.is_none() {
                    return Ok(Err(format!(
                        "identifier `{name}` is set (to {}); revoke it first",
                        old.target
                    )));
                }
            }
            let i = Identifier {
                kind: kind.clone(),
                target: target.clone(),
                valid_from: *valid_from,
                revoked_at: None,
            };
            o.writes.insert(ident_key(name), Some(encode_ident(&i)));
        }
        DdOp::NameRevoke { name, at } => {
            let Some(mut i) = identifier(&*o, name)? else {
                return Ok(Err(format!("no identifier `{name}`")));
            };
            if let Some(r) = i.revoked_at {
                return Ok(Err(format!(
                    "identifier `{name}` is already revoked at height {r}"
                )));
            }
            if *at < i.valid_from {
                return Ok(Err(format!(
                    "identifier `{name}` becomes valid at height {}; it cannot be revoked before that ({at})",
                    i.valid_from
                )));
            }
            i.revoked_at = Some(*at);
            o.writes.insert(ident_key(name), Some(encode_ident(&i)));
        }
        DdOp::Anonymous { read, write } => {
            o.writes.insert(
                ANON_KEY.to_vec(),
                Some(vec![u8::from(*read), u8::from(*write)]),
            );
        }
        DdOp::BranchCreate { .. } | DdOp::BranchDelete { .. } => return apply_branch(o, op, c),
    }
    Ok(Ok(()))
}

/// `Some(reason)` when `account` is the only admin left.
fn last_admin(view: &dyn StateView, account: &Address) -> Result<Option<String>, ChainError> {
    let admins = members(view)?
        .into_iter()
        .filter(|(a, r)| *r == Role::Admin && a != account)
        .count();
    Ok((admins == 0)
        .then(|| format!("{account} is the last admin; a repository keeps at least one")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemState;
    use aergo_types::block_ext::MergeStrategy;
    use aergo_types::Keypair;

    fn addr(seed: u8) -> Address {
        Address::from_public_key(&Keypair::from_seed(&[seed; 32]).public())
    }

    /// Applies `op` by `from` in directory block `height` on `state`, keeping its writes
    /// when it holds.
    fn run(state: &mut MemState, from: Address, height: u64, op: &DdOp) -> Result<(), String> {
        if let Some(e) = change_error(state, "docs", &from, op).map_err(|e| e.to_string())? {
            return Err(e);
        }
        let c = ChangeCtx {
            from,
            height,
            parent: Hash::of(&height.to_be_bytes()),
            repo: Hash::of(b"repo"),
        };
        let mut o = Overlay::new(state);
        apply(&mut o, op, &c).map_err(|e| e.to_string())??;
        let writes = o.writes;
        for (k, v) in writes {
            match v {
                Some(v) => state.0.insert(k, v),
                None => state.0.remove(&k),
            };
        }
        Ok(())
    }

    fn create(path: &str) -> DdOp {
        DdOp::BranchCreate {
            path: path.into(),
            fork_height: 3,
            fork_hash: Hash::of(b"fork"),
            producer: Keypair::from_seed(&[9; 32]).public(),
            strategy: MergeStrategy::Auto,
            resolver: None,
            private: false,
        }
    }

    fn delete(path: &str) -> DdOp {
        DdOp::BranchDelete { path: path.into() }
    }

    #[test]
    fn writers_create_branches_whose_ids_derive_from_the_directory_block() {
        let (admin, writer, reader, stranger) = (addr(1), addr(2), addr(3), addr(4));
        let mut s = MemState::default();
        s.0.insert(member_key(&admin), vec![Role::Admin as u8]);
        s.0.insert(member_key(&writer), vec![Role::Write as u8]);
        s.0.insert(member_key(&reader), vec![Role::Read as u8]);

        // Roles: `write` creates branches, `read` and strangers cannot, and a writer still
        // cannot change anything else.
        for who in [reader, stranger] {
            let e = run(&mut s, who, 5, &create("feat")).unwrap_err();
            assert!(e.contains("needs the `write` role"), "{e}");
        }
        let e = run(
            &mut s,
            writer,
            5,
            &DdOp::NodeAdd {
                key: Keypair::dev().public(),
            },
        )
        .unwrap_err();
        assert!(e.contains("needs the `admin` role"), "{e}");
        run(&mut s, writer, 5, &create("feat")).unwrap();
        let feat = branch(&s, "feat").unwrap().unwrap();
        assert_eq!(
            feat.record.id,
            branch_id(&Hash::of(b"repo"), "feat", &Hash::of(&5u64.to_be_bytes()))
        );
        assert_eq!(
            (feat.record.creator, feat.record.created, feat.created_after),
            (writer, 5, Hash::of(&5u64.to_be_bytes()))
        );
        assert!(run(&mut s, admin, 6, &create("feat"))
            .unwrap_err()
            .contains("already exists"));

        // A branch of a branch takes its parent's id; its parent must live.
        assert!(run(&mut s, writer, 6, &create("nope/sub"))
            .unwrap_err()
            .contains("no branch `nope`"));
        run(&mut s, writer, 6, &create("feat/sub")).unwrap();
        let sub = branch(&s, "feat/sub").unwrap().unwrap();
        assert_eq!(
            sub.record.id,
            branch_id(&feat.record.id, "sub", &Hash::of(&6u64.to_be_bytes()))
        );
        let top: Vec<String> = branches_of(&s, "")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(top, ["feat"]);
        let below: Vec<String> = branches_of(&s, "feat")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(below, ["sub"]);

        // Tags and top-level branches never share a name.
        let tag = DdOp::TagSet {
            name: "feat".into(),
            tag: Tag {
                branch: "main".into(),
                height: 1,
                hash: Hash::ZERO,
            },
        };
        assert!(run(&mut s, admin, 7, &tag)
            .unwrap_err()
            .contains("is a branch"));

        // Delete: the creator or an admin, never a parent with a live branch; a deleted
        // name comes back with a new id.
        assert!(run(&mut s, admin, 7, &delete("feat"))
            .unwrap_err()
            .contains("has a live branch `feat/sub`"));
        let other = addr(5);
        s.0.insert(member_key(&other), vec![Role::Write as u8]);
        assert!(run(&mut s, other, 7, &delete("feat/sub"))
            .unwrap_err()
            .contains("only its creator or an admin"));
        run(&mut s, admin, 7, &delete("feat/sub")).unwrap();
        run(&mut s, writer, 8, &delete("feat")).unwrap();
        assert_eq!(branch(&s, "feat").unwrap().unwrap().record.deleted, Some(8));
        assert!(run(&mut s, writer, 9, &delete("feat"))
            .unwrap_err()
            .contains("no branch"));
        run(&mut s, writer, 10, &create("feat")).unwrap();
        assert_ne!(
            branch(&s, "feat").unwrap().unwrap().record.id,
            feat.record.id
        );
    }

    #[test]
    fn one_writer_cannot_take_every_branch_slot_or_grow_the_directory_without_bound() {
        let writer = addr(2);
        let mut s = MemState::default();
        s.0.insert(member_key(&writer), vec![Role::Write as u8]);
        for i in 0..MAX_LIVE_PER_CREATOR {
            run(&mut s, writer, 1, &create(&format!("b{i}"))).unwrap();
        }
        let e = run(&mut s, writer, 2, &create("one-more")).unwrap_err();
        assert!(e.contains("the most one account may"), "{e}");
        // Deleting frees a live slot, but every record counts against the writer's total:
        // churn through new names ends at the cap, and re-using a deleted name does not.
        let mut live: std::collections::VecDeque<String> =
            (0..MAX_LIVE_PER_CREATOR).map(|i| format!("b{i}")).collect();
        let mut n = MAX_LIVE_PER_CREATOR;
        let mut refused = None;
        for i in 0..MAX_RECORDS_PER_CREATOR {
            let oldest = live.pop_front().unwrap();
            run(&mut s, writer, 3, &delete(&oldest)).unwrap();
            let name = format!("c{i}");
            match run(&mut s, writer, 3, &create(&name)) {
                Ok(()) => {
                    n += 1;
                    live.push_back(name);
                }
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert_eq!(n, MAX_RECORDS_PER_CREATOR);
        assert!(refused.unwrap().contains("branch records"));
        run(&mut s, writer, 4, &create("b0")).unwrap();
    }
}
