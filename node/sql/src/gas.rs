//! Gas schedule. Both engines charge exactly the same amounts at the same
//! points: each procedural statement charges its static cost (1 + the number
//! of expression nodes it evaluates) when it starts (per iteration for loops);
//! SQL statements charge a base plus per-row costs inside the shared executor.

/// Fixed cost of running one SQL statement.
pub const SQL_BASE: u64 = 20;
/// Per row read from storage.
pub const ROW_READ: u64 = 10;
/// Per row written or deleted (plus per index entry).
pub const ROW_WRITE: u64 = 50;
/// Per call of a contract function.
pub const CALL: u64 = 50;
/// Per output row produced by a query (sorting, grouping, projection).
pub const ROW_OUT: u64 = 2;
/// Per kilobyte of text built by `||`, per row byte written and per row byte read (whole
/// KiB only: rows under 1 KiB pay nothing extra).
pub const PER_KB: u64 = 5;
/// Default memory budget of one call, deploy or query: the estimated bytes of rows it holds
/// at once (rows read for a statement, joined rows, groups, DISTINCT sets, sort and result
/// buffers). The estimate is deterministic (a fixed cost per value plus text/byte lengths),
/// so every node fails the same statement the same way.
pub const MEMORY_BUDGET: usize = 64 << 20;
/// Estimated bytes of a held row: a fixed overhead plus [`value_bytes`] of each value.
pub const ROW_OVERHEAD: usize = 24;
/// Estimated bytes of one value (its slot plus text/byte contents).
pub fn value_bytes(v: &crate::value::Value) -> usize {
    32 + match v {
        crate::value::Value::Text(s) => s.len(),
        crate::value::Value::Bytes(b) => b.len(),
        crate::value::Value::Array(a) => a.items.iter().map(value_bytes).sum(),
        _ => 0,
    }
}
/// Estimated bytes of a held row.
pub fn row_bytes(r: &[crate::value::Value]) -> usize {
    r.iter().map(value_bytes).sum::<usize>() + ROW_OVERHEAD
}
/// Extra static cost of a transcendental float function (sqrt, exp, ln, sin, power, …: a
/// software libm call costs more than one expression node).
pub const TRANSCENDENTAL: u64 = 4;
/// Per array element an operation builds or copies (`ARRAY[…]`, `array_append`, a cast
/// to an array type, `unnest`), plus [`PER_KB`] per whole KiB of element text; arrays hold
/// at most [`crate::value::MAX_ARRAY_LEN`] elements and [`crate::value::MAX_ARRAY_TEXT`]
/// bytes of element text.
pub const ARRAY_ELEM: u64 = 1;
/// Maximum nesting of contract-function calls.
pub const MAX_DEPTH: u32 = 64;
