//! Block format version 2: the fields the next features fill in, decided once.
//!
//! A header whose [`HeaderExt`] is empty encodes exactly as version 1, byte for byte, so every
//! existing block, block hash and chain id (the genesis block's hash) is unchanged. A header
//! with any extension field present encodes as version 2: the version-1 fields, then the
//! header extension section, all covered by the block hash and the producer's signature. A
//! version-2 block carries a body extension section after its transactions.
//!
//! # Header extension section (after the `consensus` field, before the signature)
//!
//! `count u8 ‖ count × (tag u8 ‖ length u32 ‖ value)`, tags strictly ascending, each value
//! exactly its field's length. An unknown tag is a decoding error: a node cannot validate a
//! field it does not know, so a new field is a new format version of the software.
//!
//! | tag | field | value | feature |
//! | --- | --- | --- | --- |
//! | 1 | [`HeaderExt::seq_hash`] | 32-byte hash | pre-confirmation: the slot's last sequencing hash `s_n`, `s_i = H(s_{i-1} ‖ tx hash ‖ receipt hash)` |
//! | 2 | [`HeaderExt::dtt_root`] | 32-byte hash | parallel execution: BLAKE3 of the body's DTT section |
//! | 3 | [`HeaderExt::merge`] | [`MergeRef`], 106 bytes | branches: a merge block (second parent, strategy, part) |
//! | 4 | [`HeaderExt::dd`] | [`DdRef`], 40 bytes | repositories: the final Distributed Directory block the block's roles were checked against |
//!
//! [`MergeRef`]: `source 32 ‖ source_tip 32 ‖ source_height u64 ‖ strategy u8 (0
//! auto, 1 consistent) ‖ last u8 (0|1) ‖ lists_root 32`. [`DdRef`]: `height u64 ‖ hash 32`.
//!
//! # Body extension section (after the transactions; version 2 only)
//!
//! The same `count u8 ‖ (tag u8 ‖ length u32 ‖ value)` layout, ascending, unknown tags
//! rejected:
//!
//! | tag | field | committed by |
//! | --- | --- | --- |
//! | 1 | [`BodyExt::dtt`], the Deterministic Transaction Tree | `dtt_root` = BLAKE3 of this value |
//! | 2 | [`BodyExt::merge`], the merge candidates and exclusions | `merge.lists_root` = BLAKE3 of this value |
//!
//! DTT: `entries u32 (= the block's transaction count) ‖ per transaction j: varint n ‖ n
//! varint deltas`. `n` ≤ [`MAX_DTT_PARENTS`] is the number of parents, listed nearest first:
//! the first delta is `j − p₁`, each next one `p_{k−1} − p_k` (all ≥ 1, so parents are
//! distinct and earlier than `j`); `n` = [`DTT_BARRIER`] marks a barrier (waits for every
//! earlier transaction) and has no deltas. Varints are canonical LEB128.
//!
//! Merge section: `candidates u32 ‖ each signed transaction (u32 length ‖ bytes) ‖ excluded
//! u32 ‖ each (index u32 ‖ reason u8 ‖ detail: u32 length ‖ UTF-8, ≤ 256 bytes)`. The
//! candidates are the source branch's transactions in order (signed with the source's chain
//! id); the excluded indexes are strictly ascending and below the candidate count; every
//! other candidate was merged.
//!
//! Decoding checks the structure (presence of a commitment ⇔ presence of its section, the
//! commitments' hashes, DTT length and parent order, exclusion order). Whether the content is
//! right — the canonical DTT, the merge's verdicts — is the chain's validation.
//!
//! Transactions keep format version 1: the wave needs no new transaction field. Repository
//! and branch transactions sign the repository's or branch's id in `chain_id`; new
//! transaction kinds take the reserved kind bytes listed in [`crate::tx`].

use crate::codec::{DecodeError, Reader, Writer};
use crate::hash::Hash;
use crate::tx::SignedTx;
use crate::MAX_TX_SIZE;

/// Most parents a DTT entry lists; a transaction with more conflicting predecessors is a
/// barrier.
pub const MAX_DTT_PARENTS: usize = 16;

/// The parent count that marks a barrier in the DTT encoding.
pub const DTT_BARRIER: u32 = 17;

/// Longest merge exclusion detail, in bytes.
pub const MAX_EXCLUSION_DETAIL: usize = 256;

/// Header extension tags.
const TAG_SEQ_HASH: u8 = 1;
const TAG_DTT_ROOT: u8 = 2;
const TAG_MERGE: u8 = 3;
const TAG_DD: u8 = 4;

/// Body extension tags.
const BODY_TAG_DTT: u8 = 1;
const BODY_TAG_MERGE: u8 = 2;

/// The optional header fields of format version 2 (all absent: the header is version 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderExt {
    /// Pre-confirmation: the last sequencing hash of the block's slot.
    pub seq_hash: Option<Hash>,
    /// Parallel execution: the commitment to the body's DTT.
    pub dtt_root: Option<Hash>,
    /// Branches: present on a merge block.
    pub merge: Option<MergeRef>,
    /// Repositories: the directory block the block's roles were checked against.
    pub dd: Option<DdRef>,
}

/// How a merge combines two branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStrategy {
    /// Replay the source's transactions on the target; leave out those that fail.
    Auto,
    /// Three-way merge of state, conflicts decided by a resolver contract.
    Consistent,
}

/// A merge block's reference to its source (the second parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRef {
    /// The source branch's id (the chain id its transactions sign).
    pub source: Hash,
    /// The source tip being merged: the block's second parent.
    pub source_tip: Hash,
    /// The height of `source_tip` on the source branch.
    pub source_height: u64,
    /// The strategy.
    pub strategy: MergeStrategy,
    /// Whether this block is the last of a merge spanning consecutive merge blocks.
    pub last: bool,
    /// BLAKE3 of the body's merge section.
    pub lists_root: Hash,
}

/// A repository block's reference to its Distributed Directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdRef {
    /// The directory block's height.
    pub height: u64,
    /// The directory block's hash.
    pub hash: Hash,
}

/// The optional body sections of format version 2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyExt {
    /// The block's Deterministic Transaction Tree.
    pub dtt: Option<Dtt>,
    /// A merge block's candidates and exclusions.
    pub merge: Option<MergeBody>,
}

/// The Deterministic Transaction Tree: for each transaction of the block, the earlier
/// transactions it must wait for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dtt {
    /// One entry per transaction, in block order.
    pub entries: Vec<DttEntry>,
}

/// One transaction's place in the DTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DttEntry {
    /// Waits for these earlier transactions (indexes, strictly descending: nearest first;
    /// at most [`MAX_DTT_PARENTS`]).
    Parents(Vec<u32>),
    /// Waits for every earlier transaction.
    Barrier,
}

/// Why a merge left a candidate out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExclusionReason {
    /// Its hash is already on the target.
    AlreadyApplied,
    /// The sender cannot pay on the target.
    InsufficientBalance,
    /// Its execution failed on the target (the detail says why).
    Failed,
    /// It is not valid on the target (the detail says why).
    Invalid,
}

impl ExclusionReason {
    fn code(self) -> u8 {
        match self {
            ExclusionReason::AlreadyApplied => 1,
            ExclusionReason::InsufficientBalance => 2,
            ExclusionReason::Failed => 3,
            ExclusionReason::Invalid => 4,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => ExclusionReason::AlreadyApplied,
            2 => ExclusionReason::InsufficientBalance,
            3 => ExclusionReason::Failed,
            4 => ExclusionReason::Invalid,
            _ => return None,
        })
    }
    /// The reason as clients see it (`already applied`, `insufficient balance`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionReason::AlreadyApplied => "already applied",
            ExclusionReason::InsufficientBalance => "insufficient balance",
            ExclusionReason::Failed => "failed",
            ExclusionReason::Invalid => "invalid",
        }
    }
}

/// A candidate a merge left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    /// Its index among the candidates.
    pub index: u32,
    /// Why.
    pub reason: ExclusionReason,
    /// Details (at most [`MAX_EXCLUSION_DETAIL`] bytes).
    pub detail: String,
}

/// A merge block's body section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeBody {
    /// The source's transactions, in source order.
    pub candidates: Vec<SignedTx>,
    /// The candidates left out, by ascending index.
    pub excluded: Vec<Exclusion>,
    /// The candidates that come from a branch of the source (merged into it earlier), by
    /// ascending index: how their branch descends from the source. Absent for the others.
    pub lineage: Vec<Lineage>,
}

/// Most levels of sub-branches a merged transaction can come through.
pub const MAX_LINEAGE_DEPTH: usize = 16;

/// One level of descent: the branch `name` created on its parent after block
/// `created_after` — its id is `branch::branch_id(parent id, name, created_after)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageStep {
    /// The branch's name on its parent.
    pub name: String,
    /// The hash of the parent's block before the one that created it.
    pub created_after: Hash,
}

/// Where candidate `index` of a merge comes from: the branch reached from the merge's
/// source through `path` (outermost first), whose id the candidate signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    /// The candidate's index.
    pub index: u32,
    /// From the source down to the candidate's own branch (1 to [`MAX_LINEAGE_DEPTH`]).
    pub path: Vec<LineageStep>,
}

impl Lineage {
    /// The id of the branch `path` leads to from `source`.
    pub fn branch_of(&self, source: &Hash) -> Hash {
        self.path.iter().fold(*source, |id, s| {
            crate::branch::branch_id(&id, &s.name, &s.created_after)
        })
    }
}

fn invalid(what: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        what,
        message: message.into(),
    }
}

/// Writes one `tag ‖ length ‖ value` entry.
fn entry(w: &mut Writer, tag: u8, value: &[u8]) {
    w.u8(tag);
    w.bytes(value);
}

/// Reads a section's entries: ascending tags, no duplicates, each value at most `max` bytes.
fn read_section<'a>(
    r: &mut Reader<'a>,
    max: usize,
    what: &'static str,
) -> Result<Vec<(u8, &'a [u8])>, DecodeError> {
    let n = r.u8(what)?;
    let mut out: Vec<(u8, &'a [u8])> = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let tag = r.u8(what)?;
        if out.last().is_some_and(|(t, _)| *t >= tag) {
            return Err(invalid(what, format!("tag {tag} out of order or repeated")));
        }
        out.push((tag, r.bytes(max, what)?));
    }
    Ok(out)
}

impl HeaderExt {
    /// Whether no field is present (the header is version 1).
    pub fn is_empty(&self) -> bool {
        self.first_present().is_none()
    }

    /// The name of the first field present, if any.
    pub fn first_present(&self) -> Option<&'static str> {
        if self.seq_hash.is_some() {
            Some("seq_hash")
        } else if self.dtt_root.is_some() {
            Some("dtt_root")
        } else if self.merge.is_some() {
            Some("merge")
        } else if self.dd.is_some() {
            Some("dd")
        } else {
            None
        }
    }

    // At most four entries: the count fits a u8.
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        let mut entries: Vec<(u8, Vec<u8>)> = Vec::new();
        if let Some(h) = &self.seq_hash {
            entries.push((TAG_SEQ_HASH, h.0.to_vec()));
        }
        if let Some(h) = &self.dtt_root {
            entries.push((TAG_DTT_ROOT, h.0.to_vec()));
        }
        if let Some(m) = &self.merge {
            let mut v = Writer::with_capacity(106);
            v.fixed(&m.source.0);
            v.fixed(&m.source_tip.0);
            v.u64(m.source_height);
            v.u8(match m.strategy {
                MergeStrategy::Auto => 0,
                MergeStrategy::Consistent => 1,
            });
            v.u8(u8::from(m.last));
            v.fixed(&m.lists_root.0);
            entries.push((TAG_MERGE, v.finish()));
        }
        if let Some(d) = &self.dd {
            let mut v = Writer::with_capacity(40);
            v.u64(d.height);
            v.fixed(&d.hash.0);
            entries.push((TAG_DD, v.finish()));
        }
        w.u8(entries.len() as u8);
        for (tag, v) in &entries {
            entry(w, *tag, v);
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut ext = HeaderExt::default();
        for (tag, value) in read_section(r, 1024, "header extension")? {
            let mut v = Reader::new(value);
            match tag {
                TAG_SEQ_HASH => ext.seq_hash = Some(Hash(v.array("sequencing hash")?)),
                TAG_DTT_ROOT => ext.dtt_root = Some(Hash(v.array("DTT root")?)),
                TAG_MERGE => {
                    let source = Hash(v.array("merge source")?);
                    let source_tip = Hash(v.array("merge source tip")?);
                    let source_height = v.u64("merge source height")?;
                    let strategy = match v.u8("merge strategy")? {
                        0 => MergeStrategy::Auto,
                        1 => MergeStrategy::Consistent,
                        s => return Err(invalid("merge strategy", format!("unknown {s}"))),
                    };
                    let last = match v.u8("merge last part")? {
                        0 => false,
                        1 => true,
                        b => return Err(invalid("merge last part", format!("{b} is not 0 or 1"))),
                    };
                    let lists_root = Hash(v.array("merge lists root")?);
                    ext.merge = Some(MergeRef {
                        source,
                        source_tip,
                        source_height,
                        strategy,
                        last,
                        lists_root,
                    });
                }
                TAG_DD => {
                    ext.dd = Some(DdRef {
                        height: v.u64("directory height")?,
                        hash: Hash(v.array("directory hash")?),
                    })
                }
                t => {
                    return Err(invalid(
                        "header extension",
                        format!("unknown tag {t} (a newer format version)"),
                    ))
                }
            }
            v.finish()?;
        }
        if ext.is_empty() {
            // Version 2 with nothing in it would give one header two encodings.
            return Err(invalid(
                "header extension",
                "a version-2 header with no field (it must be encoded as version 1)",
            ));
        }
        Ok(ext)
    }
}

impl Dtt {
    /// The encoding (the value of body tag 1; `dtt_root` is its BLAKE3).
    // Entry counts are bounded by the block's transaction count and parent indexes by it
    // too (far below u32::MAX); a parent count is at most MAX_DTT_PARENTS.
    #[allow(clippy::cast_possible_truncation)]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4 + self.entries.len() * 2);
        w.u32(self.entries.len() as u32);
        for (j, e) in self.entries.iter().enumerate() {
            match e {
                DttEntry::Barrier => w.varint(DTT_BARRIER),
                DttEntry::Parents(ps) => {
                    w.varint(ps.len() as u32);
                    let mut prev = j as u32;
                    for p in ps {
                        w.varint(prev.saturating_sub(*p));
                        prev = *p;
                    }
                }
            }
        }
        w.finish()
    }

    /// Strict decoding of the encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.u32("DTT entries")?;
        if n as usize > bytes.len() {
            return Err(invalid(
                "DTT entries",
                format!("{n} entries in {} bytes", bytes.len()),
            ));
        }
        let mut entries = Vec::with_capacity(n as usize);
        for j in 0..n {
            let k = r.varint("DTT parent count")?;
            if k == DTT_BARRIER {
                entries.push(DttEntry::Barrier);
                continue;
            }
            if k as usize > MAX_DTT_PARENTS {
                return Err(invalid(
                    "DTT parent count",
                    format!("{k} exceeds {MAX_DTT_PARENTS}"),
                ));
            }
            let mut ps = Vec::with_capacity(k as usize);
            let mut prev = j;
            for _ in 0..k {
                let d = r.varint("DTT parent delta")?;
                let p = match prev.checked_sub(d) {
                    Some(p) if d > 0 => p,
                    _ => {
                        return Err(invalid(
                            "DTT parent delta",
                            format!("transaction {j}: parents must be distinct and earlier"),
                        ))
                    }
                };
                ps.push(p);
                prev = p;
            }
            entries.push(DttEntry::Parents(ps));
        }
        r.finish()?;
        Ok(Dtt { entries })
    }

    /// Whether every entry lists valid parents for its position (what decoding checks, for
    /// a DTT built in memory).
    pub fn well_formed(&self) -> bool {
        self.entries
            .iter()
            .enumerate()
            .all(|(j, e)| e.well_formed_at(j))
    }
}

impl DttEntry {
    /// Whether this entry lists valid parents for transaction `j`: at most
    /// [`MAX_DTT_PARENTS`], each an earlier transaction, nearest first, no repeat.
    pub fn well_formed_at(&self, j: usize) -> bool {
        match self {
            DttEntry::Barrier => true,
            DttEntry::Parents(ps) => {
                ps.len() <= MAX_DTT_PARENTS
                    && ps.iter().all(|p| (*p as usize) < j)
                    && ps.windows(2).all(|w| w.first() > w.get(1))
            }
        }
    }
}

impl MergeBody {
    /// The encoding (the value of body tag 2; `merge.lists_root` is its BLAKE3).
    // Counts and indexes are bounded by the block size (far below u32::MAX).
    #[allow(clippy::cast_possible_truncation)]
    pub fn encode(&self) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(8 + self.candidates.iter().map(|t| t.size + 4).sum::<usize>());
        w.u32(self.candidates.len() as u32);
        for t in &self.candidates {
            w.bytes(&t.encode());
        }
        w.u32(self.excluded.len() as u32);
        for e in &self.excluded {
            w.u32(e.index);
            w.u8(e.reason.code());
            w.bytes(e.detail.as_bytes());
        }
        // Only when present: a merge without nested candidates encodes as before.
        if !self.lineage.is_empty() {
            w.u32(self.lineage.len() as u32);
            for l in &self.lineage {
                w.u32(l.index);
                w.u8(l.path.len() as u8);
                for s in &l.path {
                    w.bytes(s.name.as_bytes());
                    w.fixed(&s.created_after.0);
                }
            }
        }
        w.finish()
    }

    /// Strict decoding of the encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.u32("merge candidates")? as usize;
        if n > bytes.len() / 100 + 1 {
            return Err(invalid(
                "merge candidates",
                format!("{n} cannot fit in {} bytes", bytes.len()),
            ));
        }
        let mut candidates = Vec::with_capacity(n);
        for _ in 0..n {
            candidates.push(SignedTx::decode(r.bytes(MAX_TX_SIZE, "merge candidate")?)?);
        }
        let m = r.u32("merge exclusions")? as usize;
        if m > n {
            return Err(invalid(
                "merge exclusions",
                format!("{m} exclusions of {n} candidates"),
            ));
        }
        let mut excluded: Vec<Exclusion> = Vec::with_capacity(m);
        for _ in 0..m {
            let index = r.u32("exclusion index")?;
            if index as usize >= n || excluded.last().is_some_and(|e| e.index >= index) {
                return Err(invalid(
                    "exclusion index",
                    format!("{index}: indexes must ascend and be below {n}"),
                ));
            }
            let code = r.u8("exclusion reason")?;
            let reason = ExclusionReason::from_code(code)
                .ok_or_else(|| invalid("exclusion reason", format!("unknown {code}")))?;
            let detail =
                String::from_utf8(r.bytes(MAX_EXCLUSION_DETAIL, "exclusion detail")?.to_vec())
                    .map_err(|_| invalid("exclusion detail", "not UTF-8"))?;
            excluded.push(Exclusion {
                index,
                reason,
                detail,
            });
        }
        let mut lineage: Vec<Lineage> = Vec::new();
        if r.remaining() > 0 {
            let k = r.u32("merge lineage")? as usize;
            if k == 0 || k > n {
                return Err(invalid(
                    "merge lineage",
                    format!("{k} entries of {n} candidates (absent when none)"),
                ));
            }
            for _ in 0..k {
                let index = r.u32("lineage index")?;
                if index as usize >= n || lineage.last().is_some_and(|l| l.index >= index) {
                    return Err(invalid(
                        "lineage index",
                        format!("{index}: indexes must ascend and be below {n}"),
                    ));
                }
                let depth = usize::from(r.u8("lineage depth")?);
                if depth == 0 || depth > MAX_LINEAGE_DEPTH {
                    return Err(invalid(
                        "lineage depth",
                        format!("{depth}: 1 to {MAX_LINEAGE_DEPTH}"),
                    ));
                }
                let mut path = Vec::with_capacity(depth);
                for _ in 0..depth {
                    let name = r.bytes(crate::branch::MAX_NAME, "lineage branch name")?;
                    let name = String::from_utf8(name.to_vec())
                        .map_err(|_| invalid("lineage branch name", "not UTF-8"))?;
                    if let Some(e) = crate::branch::name_error(&name) {
                        return Err(invalid("lineage branch name", e));
                    }
                    let created_after = Hash(r.array::<32>("lineage block hash")?);
                    path.push(LineageStep {
                        name,
                        created_after,
                    });
                }
                lineage.push(Lineage { index, path });
            }
        }
        r.finish()?;
        Ok(MergeBody {
            candidates,
            excluded,
            lineage,
        })
    }
}

impl BodyExt {
    /// Whether no section is present.
    pub fn is_empty(&self) -> bool {
        self.dtt.is_none() && self.merge.is_none()
    }

    // At most two entries: the count fits a u8.
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        let mut entries: Vec<(u8, Vec<u8>)> = Vec::new();
        if let Some(d) = &self.dtt {
            entries.push((BODY_TAG_DTT, d.encode()));
        }
        if let Some(m) = &self.merge {
            entries.push((BODY_TAG_MERGE, m.encode()));
        }
        w.u8(entries.len() as u8);
        for (tag, v) in &entries {
            entry(w, *tag, v);
        }
    }

    /// Decodes the section and returns it with the BLAKE3 of each value present (for the
    /// header's commitments).
    pub(crate) fn decode_from(
        r: &mut Reader<'_>,
    ) -> Result<(Self, Option<Hash>, Option<Hash>), DecodeError> {
        let mut ext = BodyExt::default();
        let (mut dtt_hash, mut merge_hash) = (None, None);
        for (tag, value) in read_section(r, crate::MAX_BLOCK_SIZE, "body extension")? {
            match tag {
                BODY_TAG_DTT => {
                    ext.dtt = Some(Dtt::decode(value)?);
                    dtt_hash = Some(Hash::of(value));
                }
                BODY_TAG_MERGE => {
                    ext.merge = Some(MergeBody::decode(value)?);
                    merge_hash = Some(Hash::of(value));
                }
                t => {
                    return Err(invalid(
                        "body extension",
                        format!("unknown tag {t} (a newer format version)"),
                    ))
                }
            }
        }
        Ok((ext, dtt_hash, merge_hash))
    }
}

/// The structural rules between a header's extension and a body's: each commitment is
/// present exactly when its section is, and equals the section's hash; a DTT has one entry
/// per transaction. `dtt_hash`/`merge_hash` are the hashes of the encoded sections.
pub(crate) fn check_commitments(
    header: &HeaderExt,
    body: &BodyExt,
    tx_count: usize,
    dtt_hash: Option<Hash>,
    merge_hash: Option<Hash>,
) -> Result<(), DecodeError> {
    match (&header.dtt_root, dtt_hash) {
        (None, None) => {}
        (Some(root), Some(h)) if *root == h => {}
        (Some(_), Some(_)) => return Err(invalid("DTT", "does not match the header's dtt_root")),
        (Some(_), None) => {
            return Err(invalid("DTT", "the header commits to a DTT the body lacks"))
        }
        (None, Some(_)) => return Err(invalid("DTT", "a DTT the header does not commit to")),
    }
    if let Some(d) = &body.dtt {
        if d.entries.len() != tx_count {
            return Err(invalid(
                "DTT",
                format!("{} entries for {tx_count} transactions", d.entries.len()),
            ));
        }
    }
    match (header.merge.as_ref().map(|m| m.lists_root), merge_hash) {
        (None, None) => {}
        (Some(root), Some(h)) if root == h => {}
        (Some(_), Some(_)) => {
            return Err(invalid(
                "merge lists",
                "do not match the header's lists_root",
            ))
        }
        (Some(_), None) => {
            return Err(invalid(
                "merge lists",
                "a merge header without its merge lists",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid("merge lists", "merge lists without a merge header"))
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::address::Address;
    use crate::block::{Block, Header};
    use crate::crypto::{Keypair, Signature};
    use crate::tx::{Tx, TxKind};
    use proptest::prelude::*;

    /// A small signed transfer from `k` to itself (shared by the codec tests).
    pub(crate) fn self_transfer(k: &Keypair, nonce: u64) -> SignedTx {
        Tx {
            kind: TxKind::Transfer,
            nonce,
            from: k.public(),
            to: Some(Address::from_public_key(&k.public())),
            amount: 5,
            payload: vec![],
            gas_limit: 10,
            gas_price: 1,
            chain_id: Hash::ZERO,
        }
        .sign(k)
    }

    /// A deterministic version-1 block (seeded key; ed25519 signatures are deterministic).
    fn v1_block() -> (Keypair, Block) {
        let k = Keypair::from_seed(&[7; 32]);
        let txs = vec![
            self_transfer(&k, 0),
            self_transfer(&k, 1),
            self_transfer(&k, 2),
        ];
        let mut header = Header {
            chain_id: Hash::of(b"chain"),
            height: 5,
            parent: Hash::of(b"parent"),
            timestamp_ms: 1_700_000_000_000,
            producer: k.public(),
            tx_root: Block::compute_tx_root(&txs),
            receipts_root: Hash::of(b"receipts"),
            state_root: Hash::of(b"state"),
            consensus: vec![0, 0, 0, 0, 0, 0, 0, 9],
            ext: HeaderExt::default(),
            signature: Signature::default(),
        };
        header.sign(&k);
        (k, Block::new(header, txs))
    }

    /// `v1_block` with every version-2 field filled, consistently, and re-signed.
    fn v2_block() -> Block {
        let (k, mut b) = v1_block();
        let dtt = Dtt {
            entries: vec![
                DttEntry::Parents(vec![]),
                DttEntry::Parents(vec![0]),
                DttEntry::Barrier,
            ],
        };
        let merge = MergeBody {
            candidates: vec![self_transfer(&k, 9), self_transfer(&k, 10)],
            excluded: vec![Exclusion {
                index: 1,
                reason: ExclusionReason::InsufficientBalance,
                detail: "needs 10 AERGO".into(),
            }],
            lineage: vec![],
        };
        b.header.ext = HeaderExt {
            seq_hash: Some(Hash::of(b"s_n")),
            dtt_root: Some(Hash::of(&dtt.encode())),
            merge: Some(MergeRef {
                source: Hash::of(b"feature"),
                source_tip: Hash::of(b"tip"),
                source_height: 40,
                strategy: MergeStrategy::Auto,
                last: true,
                lists_root: Hash::of(&merge.encode()),
            }),
            dd: Some(DdRef {
                height: 3,
                hash: Hash::of(b"dd"),
            }),
        };
        b.body_ext = BodyExt {
            dtt: Some(dtt),
            merge: Some(merge),
        };
        b.header.sign(&k);
        b
    }

    /// Nested candidates' lineage: round trip, the same encoding as before without any,
    /// and strict refusals.
    #[test]
    fn merge_lineage_round_trips_and_is_strict() {
        let k = Keypair::from_seed(&[4; 32]);
        let plain = MergeBody {
            candidates: vec![self_transfer(&k, 1), self_transfer(&k, 2)],
            excluded: vec![],
            lineage: vec![],
        };
        let step = |n: &str| LineageStep {
            name: n.into(),
            created_after: Hash::of(n.as_bytes()),
        };
        let nested = MergeBody {
            lineage: vec![Lineage {
                index: 1,
                path: vec![step("b"), step("c")],
            }],
            ..plain.clone()
        };
        assert_eq!(MergeBody::decode(&plain.encode()).unwrap(), plain);
        let bytes = nested.encode();
        assert_eq!(MergeBody::decode(&bytes).unwrap(), nested);
        assert!(bytes.starts_with(&plain.encode()));
        let src = Hash::of(b"a");
        let b = crate::branch::branch_id(&src, "b", &Hash::of(b"b"));
        assert_eq!(
            nested.lineage[0].branch_of(&src),
            crate::branch::branch_id(&b, "c", &Hash::of(b"c"))
        );
        let bad = |l: Vec<Lineage>| {
            MergeBody {
                lineage: l,
                ..plain.clone()
            }
            .encode()
        };
        // An index past the candidates, out of order, an empty or too deep path, a bad name.
        for l in [
            vec![Lineage {
                index: 2,
                path: vec![step("b")],
            }],
            vec![
                Lineage {
                    index: 1,
                    path: vec![step("b")],
                },
                Lineage {
                    index: 0,
                    path: vec![step("b")],
                },
            ],
            vec![Lineage {
                index: 0,
                path: vec![],
            }],
            vec![Lineage {
                index: 0,
                path: vec![step("b"); MAX_LINEAGE_DEPTH + 1],
            }],
            vec![Lineage {
                index: 0,
                path: vec![step("B!")],
            }],
        ] {
            assert!(MergeBody::decode(&bad(l.clone())).is_err(), "{l:?}");
        }
        // An empty lineage written explicitly is not the canonical encoding.
        let mut explicit = plain.encode();
        explicit.extend_from_slice(&0u32.to_be_bytes());
        assert!(MergeBody::decode(&explicit).is_err());
    }

    #[test]
    fn version_1_blocks_encode_and_hash_as_before() {
        let (_, b) = v1_block();
        let bytes = b.encode();
        assert_eq!(b.header.version(), 1);
        assert_eq!(bytes.first(), Some(&1));
        // Pinned: the block hash and the hash of the encoding of this same block computed by
        // the code before version 2 existed (commit 76c84ca). A change here would change
        // every existing block hash, or make old blocks undecodable.
        assert_eq!(
            b.hash().to_hex(),
            "74bdea3e42d2532f31c00b38a704f1ce262c7bdc05614d5aebe7d49214f6aeb3"
        );
        assert_eq!(
            Hash::of(&bytes).to_hex(),
            "f49c60cca45490a1c1a69ae69da9185cc4cc90ef482a13eb88d1bc23efa026cd"
        );
        let d = Block::decode(&bytes).unwrap();
        assert_eq!(d, b);
        assert!(d.header.verify_signature());
    }

    #[test]
    fn version_2_round_trips_and_the_signature_covers_every_field() {
        let b = v2_block();
        assert_eq!(b.header.version(), 2);
        let bytes = b.encode();
        assert_eq!(bytes.first(), Some(&2));
        let d = Block::decode(&bytes).unwrap();
        assert_eq!(d, b);
        assert!(d.header.verify_signature());
        assert_ne!(d.hash(), v1_block().1.hash());
        let mut h = d.header.clone();
        h.ext.seq_hash = Some(Hash::of(b"another"));
        assert!(!h.verify_signature());
        let mut h = d.header.clone();
        if let Some(dd) = h.ext.dd.as_mut() {
            dd.height = 4;
        }
        assert!(!h.verify_signature());
        // Each field alone is enough to make a header version 2.
        let (_, mut one) = v1_block();
        one.header.ext.dd = Some(DdRef {
            height: 1,
            hash: Hash::ZERO,
        });
        let d = Block::decode(&one.encode()).unwrap();
        assert_eq!(d.header.ext.first_present(), Some("dd"));
    }

    /// Re-encodes a block with its header fields as given but body sections replaced, so
    /// commitments can disagree with the body.
    fn with_body(mut b: Block, body: BodyExt) -> Vec<u8> {
        b.body_ext = body;
        b.encode()
    }

    fn err(bytes: &[u8]) -> String {
        match Block::decode(bytes) {
            Ok(_) => "decoded".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn commitments_must_match_their_sections() {
        let b = v2_block();
        let mut no_dtt = b.body_ext.clone();
        no_dtt.dtt = None;
        assert!(err(&with_body(b.clone(), no_dtt)).contains("body lacks"));
        let mut other_dtt = b.body_ext.clone();
        other_dtt.dtt = Some(Dtt {
            entries: vec![DttEntry::Barrier; 3],
        });
        assert!(err(&with_body(b.clone(), other_dtt)).contains("does not match"));
        let mut no_merge = b.body_ext.clone();
        no_merge.merge = None;
        assert!(err(&with_body(b.clone(), no_merge)).contains("without its merge lists"));
        // A DTT the header does not commit to.
        let (k, mut only_seq) = v1_block();
        only_seq.header.ext.seq_hash = Some(Hash::ZERO);
        only_seq.header.sign(&k);
        let stray = BodyExt {
            dtt: Some(Dtt {
                entries: vec![DttEntry::Barrier; 3],
            }),
            merge: None,
        };
        assert!(err(&with_body(only_seq.clone(), stray)).contains("does not commit"));
        // A DTT with the wrong number of entries, committed correctly.
        let short = Dtt {
            entries: vec![DttEntry::Barrier],
        };
        only_seq.header.ext.dtt_root = Some(Hash::of(&short.encode()));
        let body = BodyExt {
            dtt: Some(short),
            merge: None,
        };
        assert!(err(&with_body(only_seq, body)).contains("1 entries for 3 transactions"));
    }

    #[test]
    fn malformed_sections_are_refused() {
        let (_, b) = v1_block();
        let v1 = b.encode();
        // The header's version-2 section starts right after the consensus field; build the
        // header prefix by hand: version 2, the same fields, then the section.
        let consensus_end = 1 + 32 + 8 + 32 + 8 + 32 + 32 + 32 + 32 + 4 + 8;
        let with_section = |section: &[u8]| {
            let mut v = v1.clone();
            if let Some(first) = v.first_mut() {
                *first = 2;
            }
            let tail = v.split_off(consensus_end);
            v.extend_from_slice(section);
            v.extend_from_slice(&tail);
            v
        };
        // No field at all: version 2 must not be a second encoding of a version-1 header.
        assert!(err(&with_section(&[0])).contains("no field"));
        // An unknown tag.
        let mut unknown = vec![1, 9];
        unknown.extend_from_slice(&32u32.to_be_bytes());
        unknown.extend_from_slice(&[0; 32]);
        assert!(err(&with_section(&unknown)).contains("unknown tag 9"));
        // Tags out of order.
        let mut twice = vec![2];
        for _ in 0..2 {
            twice.push(1);
            twice.extend_from_slice(&32u32.to_be_bytes());
            twice.extend_from_slice(&[0; 32]);
        }
        assert!(err(&with_section(&twice)).contains("out of order or repeated"));
        // A field of the wrong length.
        let mut short = vec![1, 1];
        short.extend_from_slice(&31u32.to_be_bytes());
        short.extend_from_slice(&[0; 31]);
        assert!(err(&with_section(&short)).contains("truncated"));
    }

    #[test]
    fn dtt_encoding_is_strict() {
        let d = Dtt {
            entries: vec![
                DttEntry::Parents(vec![]),
                DttEntry::Parents(vec![0]),
                DttEntry::Parents(vec![1, 0]),
                DttEntry::Barrier,
                DttEntry::Parents(vec![3, 1]),
            ],
        };
        assert!(d.well_formed());
        assert_eq!(Dtt::decode(&d.encode()).unwrap(), d);
        // Parent not earlier: transaction 1 naming itself (delta 0).
        let mut bad = 2u32.to_be_bytes().to_vec();
        bad.extend_from_slice(&[0, 1, 0]);
        assert!(Dtt::decode(&bad).is_err());
        // Below zero: transaction 1 naming parent -1 (delta 2).
        let mut bad = 2u32.to_be_bytes().to_vec();
        bad.extend_from_slice(&[0, 1, 2]);
        assert!(Dtt::decode(&bad).is_err());
        // More than 16 parents without being a barrier.
        let mut many = 1u32.to_be_bytes().to_vec();
        many.push(18);
        assert!(Dtt::decode(&many).is_err());
        // Not well formed in memory: ascending parents.
        assert!(!Dtt {
            entries: vec![
                DttEntry::Barrier,
                DttEntry::Barrier,
                DttEntry::Parents(vec![0, 1])
            ]
        }
        .well_formed());
    }

    #[test]
    fn merge_lists_are_strict() {
        let b = v2_block();
        let Some(m) = b.body_ext.merge.clone() else {
            panic!("v2 block has merge lists");
        };
        assert_eq!(MergeBody::decode(&m.encode()).unwrap(), m);
        let mut dup = m.clone();
        dup.excluded.push(dup.excluded[0].clone());
        assert!(MergeBody::decode(&dup.encode()).is_err());
        let mut out_of_range = m.clone();
        out_of_range.excluded[0].index = 2;
        assert!(MergeBody::decode(&out_of_range.encode()).is_err());
        let mut bad_reason = m.encode();
        // The reason byte follows the last candidate, the exclusion count and the index.
        let pos = bad_reason.len() - (4 + "needs 10 AERGO".len()) - 1;
        bad_reason[pos] = 99;
        assert!(MergeBody::decode(&bad_reason)
            .unwrap_err()
            .to_string()
            .contains("unknown 99"));
        assert_eq!(ExclusionReason::AlreadyApplied.as_str(), "already applied");
    }

    proptest! {
        #[test]
        fn decoding_mutated_version_2_blocks_never_panics(
            pos in 0usize..2000,
            byte in any::<u8>(),
            cut in 0usize..2000,
        ) {
            let mut bytes = v2_block().encode();
            let n = bytes.len();
            if let Some(b) = bytes.get_mut(pos % n) {
                *b = byte;
            }
            let _ = Block::decode(&bytes);
            bytes.truncate(cut % n);
            let _ = Block::decode(&bytes);
        }
    }
}
