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
/// Per kilobyte of text built by `||` and per row byte written.
pub const PER_KB: u64 = 5;
/// Maximum nesting of contract-function calls.
pub const MAX_DEPTH: u32 = 64;
