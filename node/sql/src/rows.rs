//! Row-level access to a contract's stored tables from outside the engine: what the chain's
//! consistent merge needs to merge rows cell by cell and rebuild their index entries.
//!
//! Key layout under a contract's prefix (`exec::keys`): `kind u8 ‖ …` — kind 0 metadata
//! (scripts, owner), 1 a table's row-id sequence (`‖ table id u32`), 2 a row (`‖ table id
//! u32 ‖ primary key`, the memcomparable encoding of its key columns, or of the hidden row
//! id of a table without one), 3 an index entry (`‖ table id u32 ‖ index id u32 ‖ indexed
//! values ‖ primary key`, empty value). Rows are stored in the tagged row format
//! ([`crate::encoding::encode_row`]); a row stored before an `ADD COLUMN` decodes with the
//! column's fill value.

use crate::encoding::{encode_key, encode_row};
use crate::error::Result;
use crate::exec::keys;
use crate::ir::{Catalog, Table};
use crate::value::Value;

/// What a key under a contract's prefix stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind<'a> {
    /// Scripts and owner.
    Meta,
    /// A table's row-id sequence (tables without a primary key).
    Seq(u32),
    /// A row of a table, under its encoded primary key.
    Row {
        /// The table's id.
        table: u32,
        /// The encoded primary key.
        pk: &'a [u8],
    },
    /// An index entry of a table.
    Index(u32),
    /// Nothing the engine writes.
    Unknown,
}

/// What the key `rest` (a state key after the contract's prefix) stores.
pub fn classify(rest: &[u8]) -> KeyKind<'_> {
    let table = || {
        rest.get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    match (rest.first().copied(), table()) {
        (Some(keys::META), _) => KeyKind::Meta,
        (Some(keys::SEQ), Some(t)) if rest.len() == 5 => KeyKind::Seq(t),
        (Some(keys::ROW), Some(t)) => KeyKind::Row {
            table: t,
            pk: rest.get(5..).unwrap_or_default(),
        },
        (Some(keys::INDEX), Some(t)) => KeyKind::Index(t),
        _ => KeyKind::Unknown,
    }
}

/// The table with id `id`.
pub fn table(cat: &Catalog, id: u32) -> Option<&Table> {
    cat.tables.iter().find(|t| t.id == id)
}

/// Decodes a stored row of `t` (columns added later get their fill value).
pub fn decode(t: &Table, bytes: &[u8]) -> Result<Vec<Value>> {
    crate::exec::decode_table_row(t, bytes)
}

/// Encodes a row for storage.
pub fn encode(row: &[Value]) -> Result<Vec<u8>> {
    encode_row(row)
}

/// Whether two cells hold the same value in the same representation (their stored bytes).
pub fn same_cell(a: &Value, b: &Value) -> bool {
    match (
        encode_row(std::slice::from_ref(a)),
        encode_row(std::slice::from_ref(b)),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// One index entry of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The full state key (its value is empty).
    pub key: Vec<u8>,
    /// For a unique index and a row with no NULL among the indexed values: the length of
    /// the key's prefix (everything but the primary key) under which no other row may be.
    pub unique_prefix: Option<usize>,
    /// The index's name (for errors).
    pub index: String,
}

/// The index entries row `row` of table `t`, stored under primary key `pk` in the contract
/// whose state-key prefix is `prefix`, has.
pub fn index_entries(prefix: &[u8], t: &Table, pk: &[u8], row: &[Value]) -> Vec<IndexEntry> {
    t.indexes
        .iter()
        .map(|ix| {
            let vals: Vec<Value> = ix
                .cols
                .iter()
                .map(|&c| row.get(c).cloned().unwrap_or(Value::Null))
                .collect();
            let mut key = Vec::with_capacity(prefix.len() + 9 + pk.len() + 16);
            key.extend_from_slice(prefix);
            key.push(keys::INDEX);
            key.extend_from_slice(&t.id.to_be_bytes());
            key.extend_from_slice(&ix.id.to_be_bytes());
            for v in &vals {
                encode_key(&mut key, v);
            }
            let unique_prefix =
                (ix.unique && !vals.iter().any(Value::is_null)).then_some(key.len());
            key.extend_from_slice(pk);
            IndexEntry {
                key,
                unique_prefix,
                index: ix.name.clone(),
            }
        })
        .collect()
}
