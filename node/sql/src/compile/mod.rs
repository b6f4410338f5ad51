//! Name and type resolution: turns parsed scripts, statements and function
//! bodies into the typed plan of [`crate::ir`]. Every unknown name, arity or
//! type mismatch is reported here (at deploy time) with line and column.
//!
//! Layout: this module holds the [`Compiler`] and the state it carries (variable and table
//! scopes, aggregation state) and the script-level types; `catalog` applies a script's DDL to
//! the [`Catalog`] (tables, columns, indexes, function signatures); `expr` compiles
//! expressions (names, operators, functions, aggregates, literals, type unification);
//! `query` compiles queries and DML (SELECT, INSERT/UPDATE/DELETE, RETURNING, access-path
//! choice, static sizes); `procedural` compiles function bodies (blocks, variables, control
//! flow, RAISE).

mod catalog;
mod expr;
mod procedural;
mod query;

use expr::*;
use procedural::*;

use crate::decimal::Decimal;
use crate::error::{resolve_err, unsupported, Pos, Result, SqlError};
use crate::gas;
use crate::ir::*;
use crate::parse::{
    self, convert_type, span_pos, Block, FuncDef, LoopKind, PStmt, RaiseLevel, ScriptItem,
};
use crate::value::{ArrElem, SqlType, Value};
use sqlparser::ast::{self, BinaryOperator, UnaryOperator};
use std::collections::HashMap;

pub use crate::ir::{Catalog, FuncSig};
pub use catalog::apply_script;
pub use query::{plan_size, select_size};

/// Compiled call arguments, `*` given, DISTINCT given.
type Args = (Vec<(Expr, SqlType)>, bool, bool);

/// ORDER BY keys: expression, descending, nulls first.
type OrderKeys = Vec<(Expr, bool, bool)>;

/// UPDATE assignments and WHERE.
type UpdateParts = (Vec<(usize, Expr)>, Option<Expr>);

/// DML statements from a script, run once at deploy/upgrade.
pub type DeployStmts = Vec<(SqlPlan, Pos)>;

fn lc(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

fn obj_name(n: &ast::ObjectName, pos: Pos) -> Result<String> {
    match n.0.last() {
        Some(ast::ObjectNamePart::Identifier(i)) if n.0.len() == 1 => Ok(lc(i)),
        _ => resolve_err(pos, format!("unsupported qualified name {n}")),
    }
}

// ------------------------------------------------------------- variables ---

#[derive(Debug, Clone, Default)]
struct VarEnv {
    scopes: Vec<HashMap<String, usize>>,
    slots: Vec<SqlType>,
    constants: Vec<bool>,
}

impl VarEnv {
    fn lookup(&self, name: &str) -> Option<usize> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }
    fn declare(&mut self, name: &str, ty: SqlType, constant: bool) -> usize {
        let slot = self.slots.len();
        self.slots.push(ty);
        self.constants.push(constant);
        if let Some(s) = self.scopes.last_mut() {
            s.insert(name.to_string(), slot);
        }
        slot
    }
}

// ---------------------------------------------------------------- scopes ---

#[derive(Debug, Clone)]
struct ScopeCol {
    table: Option<String>,
    name: String,
    ty: SqlType,
}

#[derive(Debug, Clone, Default)]
struct Scope {
    cols: Vec<ScopeCol>,
}

#[derive(Debug, Clone)]
struct AggState {
    groups: Vec<ast::Expr>,
    /// For each group expression that is a plain column of the FROM row: its index (so
    /// `t.c`, `c` and an alias of either all name the same group, as in PostgreSQL).
    group_cols: Vec<Option<usize>>,
    /// Static type of each group expression.
    group_types: Vec<SqlType>,
    aggs: Vec<AggCall>,
    active: bool,
}

/// How a function returns its result, which decides what RETURN, RETURN NEXT and RETURN
/// QUERY mean in its body.
#[derive(Debug, Clone, Default)]
enum ResultMode {
    /// `RETURN expr` (or nothing for VOID).
    #[default]
    Value,
    /// One OUT/INOUT parameter: its slot's value is the result (bare RETURN).
    Out(usize),
    /// Several OUT/INOUT parameters: a bare RETURN (or the end) emits them as one row.
    Record(Vec<(usize, SqlType)>),
    /// A set of the OUT parameters (RETURN NEXT without an expression) or, when `outs` is
    /// empty, of RETURN NEXT's expression (one column).
    Set {
        /// OUT slots and types.
        outs: Vec<(usize, SqlType)>,
        /// Column types of the result.
        types: Vec<SqlType>,
        /// `RETURNS SETOF table`: rows come only from RETURN QUERY.
        table: bool,
    },
}

/// Expression/statement compiler.
pub struct Compiler<'a> {
    cat: &'a Catalog,
    vars: Option<VarEnv>,
    scopes: Vec<Scope>,
    agg: Option<AggState>,
    saw_agg: bool,
    allow_chain: bool,
    pos: Pos,
    loops: Vec<(Option<String>, usize)>,
    next_loop: usize,
    depth: u32,
    /// WITH queries in scope (innermost last): name and compiled query.
    ctes: Vec<(String, Select)>,
    /// Views being expanded (a view that reads itself is an error, not a loop).
    expanding: Vec<String>,
    /// How the function being compiled returns its result (RETURN, RETURN NEXT/QUERY).
    result: ResultMode,
    /// Next `WITH RECURSIVE` work table id, and how many work-table references were
    /// compiled (to tell a recursive term from a plain UNION).
    next_work: usize,
    work_refs: usize,
}

/// Deepest expression nesting accepted (bounds recursion in every engine).
pub const MAX_EXPR_DEPTH: u32 = 200;

impl<'a> Compiler<'a> {
    fn new(cat: &'a Catalog, vars: Option<VarEnv>, allow_chain: bool, pos: Pos) -> Compiler<'a> {
        Compiler {
            cat,
            vars,
            scopes: Vec::new(),
            agg: None,
            saw_agg: false,
            allow_chain,
            pos,
            loops: Vec::new(),
            next_loop: 0,
            depth: 0,
            ctes: Vec::new(),
            expanding: Vec::new(),
            result: ResultMode::Value,
            next_work: 0,
            work_refs: 0,
        }
    }

    /// Whether this contract's engine version has arrays; `refusal` is the error the
    /// version without them gave.
    pub(super) fn arrays_allowed(&self, refusal: SqlError) -> Result<()> {
        if self.cat.version.arrays() {
            Ok(())
        } else {
            Err(refusal)
        }
    }

    /// Checks a declared type against the engine version (arrays need version 2; version 1
    /// refused them as unknown types).
    pub(super) fn check_type(&self, ty: SqlType, pos: Pos) -> Result<()> {
        check_type(self.cat, ty, pos)
    }

    /// A compiler for ad-hoc queries (no variables, no chain functions).
    pub fn for_query(cat: &'a Catalog) -> Compiler<'a> {
        Compiler::new(cat, None, false, Pos::default())
    }
}

/// [`Compiler::check_type`] without a compiler.
pub(super) fn check_type(cat: &Catalog, ty: SqlType, pos: Pos) -> Result<()> {
    match ty {
        SqlType::Array(_) if !cat.version.arrays() => resolve_err(
            pos,
            format!(
                "unsupported type {ty} (arrays need engine version 2; this contract is version {})",
                cat.version
            ),
        ),
        _ => Ok(()),
    }
}
