//! A repository's Distributed Directory (DD): its namespace as the state of a small chain of
//! its own — members and roles, replicating nodes, tags, identifiers and the anonymous-access
//! flags — changed only by `directory_change` transactions (kind 10) signed by an admin.
//!
//! State layout (directory chains only): `'m' ‖ address 33` → role u8; `'n' ‖ node key 32` →
//! `1`; `'t' ‖ tag name` → branch (u32 len ‖ bytes) ‖ height u64 ‖ hash 32; `'i' ‖ identifier` →
//! kind ‖ target (u32 len ‖ bytes each) ‖ valid_from u64 ‖ revoked u8 ‖ [revoked_at u64];
//! `'o' ‖ "anon"` → read u8 ‖ write u8. The genesis state makes the registration's admins
//! `admin` members, its producers replicating nodes, and a public repository readable by
//! anyone.
//!
//! Rules: a change by an account without the `admin` role cannot be included at all (it is
//! refused at admission and makes a block invalid); the others fail in the block, changing
//! nothing (a tag already set — tags are immutable —, a revocation of an unknown or already
//! revoked identifier, or one before it became valid, removing the last admin). Directory
//! changes pay no gas (the directory's minimum gas price is 0): only admins can make them.

use crate::error::ChainError;
use crate::state::{Overlay, StateView, WriteSet};
use aergo_types::codec::{Reader, Writer};
use aergo_types::repo::{DdOp, Identifier, RepoGenesis, Role, Tag, Visibility};
use aergo_types::{Address, Hash, PublicKey};

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

/// Why `from` may not change the directory at all (`None`: it may — it is an admin).
pub fn admin_error(
    view: &dyn StateView,
    repo: &str,
    from: &Address,
) -> Result<Option<String>, ChainError> {
    Ok(match role_of(view, from)? {
        Some(Role::Admin) => None,
        r => Some(format!(
            "account {from} has {} in repository `{repo}`; changing its directory needs the `admin` role",
            r.map(|r| format!("the `{}` role", r.name()))
                .unwrap_or_else(|| "no role".into())
        )),
    })
}

/// Applies one change on top of `o` (the sender is an admin): `Ok(Err(reason))` when it fails
/// in the block, writing nothing.
pub fn apply(o: &mut Overlay<'_>, op: &DdOp) -> Result<Result<(), String>, ChainError> {
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
