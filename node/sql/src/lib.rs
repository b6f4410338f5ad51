//! AergoSQL: smart contracts as SQL tables and PL/pgSQL-style functions.
//!
//! # Pipeline
//! script → [`parse`] (sqlparser's PostgreSQL tokenizer and parser for SQL;
//! our own parser for `CREATE FUNCTION` and the procedural layer) →
//! [`compile`] (name and type resolution, deploy-time errors with line and
//! column) → typed plan ([`ir`]) → [`interp`]/[`exec`] (interpreter and
//! shared runtime) or, with the `jit` feature, LLVM code via `inkwell`.
//!
//! # API for the chain
//! [`Contract::deploy`], [`Contract::load`], [`Contract::upgrade`],
//! [`Contract::call`] (writes applied only on success), [`Contract::view`],
//! [`Contract::query`], [`Contract::execute`], [`Contract::abi`]. Storage is
//! the [`Kv`] trait ([`MemKv`] in memory); the chain context is
//! [`ChainContext`] ([`MockChain`] for tests). [`Sandbox`] runs a script in a
//! throwaway store for `aergo sql FILE.sql`; `to_json` methods render values,
//! query results and call outcomes.
//!
//! # Features
//! `jit` (default): LLVM 16 through inkwell; functions are compiled at
//! deploy/load and calls run the compiled code ([`Engine::Jit`]), falling back
//! to the interpreter for functions outside the JIT's subset. Without the
//! feature there is no LLVM dependency and every call is interpreted.
//!
//! # Storage layout (under the contract prefix `P`)
//! | key | value |
//! | --- | --- |
//! | `P 00 "owner"` | deployer address |
//! | `P 00 "engine"` | engine version number (one byte; absent: version 1), see [`version`] |
//! | `P 00 "script/NNNN"` | deploy script (0000) and upgrade scripts, replayed by `load` |
//! | `P 01 tid:u32be` | next hidden row id (tables without a primary key) |
//! | `P 02 tid:u32be pk` | row (tagged encoding), `pk` = memcomparable primary key |
//! | `P 03 tid:u32be iid:u32be vals pk` | index entry (empty value) |
//!
//! Rows are therefore ordered by primary key; scans without ORDER BY return
//! primary-key order.
//!
//! # Leniencies (whitepaper Figure 6)
//! `CREATE IF NOT EXISTS t (…)` is read as `CREATE TABLE IF NOT EXISTS`; `;`
//! after `END IF`/`END LOOP` is optional; the last statement needs no `;`;
//! `LANGUAGE` is optional; parameter names may be keywords (`to`).
//!
//! # Determinism
//! NUMERIC is an exact i128 decimal; REAL/DOUBLE PRECISION are IEEE binary32/binary64 with
//! correctly rounded basic operations, a pure-Rust software libm for transcendental
//! functions and one canonical NaN ([`float`]), so every node computes the same bits. No
//! clock, no randomness; overflow and division by zero are errors.

pub mod compile;
pub mod contract;
pub mod ctx;
pub mod decimal;
pub mod encoding;
pub mod error;
pub mod exec;
pub mod float;
pub mod gas;
pub mod interp;
pub mod ir;
#[cfg(feature = "jit")]
pub mod jit;
pub mod jit_slot;
pub mod kv;
pub mod parse;
pub mod rows;
pub mod sandbox;
pub mod value;
pub mod version;

pub use contract::{Abi, AbiFunction, AbiTable, CallOutcome, Contract, Engine, QueryResult};
pub use ctx::{ChainContext, MockChain};
pub use decimal::Decimal;
pub use error::{Pos, SqlError};
pub use kv::{Kv, KvError, MemKv, Overlay};
pub use sandbox::{Sandbox, SandboxOutput};
pub use value::{SqlType, Value};
pub use version::EngineVersion;
