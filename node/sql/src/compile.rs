//! Name and type resolution: turns parsed scripts, statements and function
//! bodies into the typed plan of [`crate::ir`]. Every unknown name, arity or
//! type mismatch is reported here (at deploy time) with line and column.

use crate::decimal::Decimal;
use crate::error::{resolve_err, unsupported, Pos, Result, SqlError};
use crate::gas;
use crate::ir::*;
use crate::parse::{
    self, convert_type, span_pos, Block, FuncDef, LoopKind, PStmt, RaiseLevel, ScriptItem,
};
use crate::value::{SqlType, Value};
use sqlparser::ast::{self, BinaryOperator, UnaryOperator};
use std::collections::HashMap;

pub use crate::ir::{Catalog, FuncSig};

/// Compiled call arguments, `*` given, DISTINCT given.
type Args = (Vec<(Expr, SqlType)>, bool, bool);

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

/// Applies a script to a catalog (deploy or upgrade). Returns DML to run.
pub fn apply_script(cat: &mut Catalog, src: &str, upgrade: bool) -> Result<DeployStmts> {
    let items = parse::parse_script(src)?;
    let mut new_funcs: Vec<FuncDef> = Vec::new();
    let mut dml = Vec::new();
    // pass 1: tables and indexes in order; collect functions
    for item in &items {
        match item {
            ScriptItem::Function(f) => {
                if let Some(existing) = cat.func(&f.name) {
                    let _ = existing;
                    if !f.or_replace {
                        return resolve_err(f.pos, format!("function {} already exists (use CREATE OR REPLACE)", f.name));
                    }
                }
                if new_funcs.iter().any(|g| g.name == f.name) {
                    return resolve_err(f.pos, format!("function {} defined twice", f.name));
                }
                new_funcs.push(f.clone());
            }
            ScriptItem::Sql(stmt, pos) => match stmt {
                ast::Statement::CreateTable(ct) => create_table(cat, ct, *pos)?,
                ast::Statement::CreateIndex(ci) => create_index(cat, ci, *pos)?,
                ast::Statement::AlterTable {
                    name, operations, ..
                } => {
                    let tn = obj_name(name, *pos)?;
                    let Some(ti) = cat.table(&tn) else {
                        return resolve_err(*pos, format!("table {tn} does not exist"));
                    };
                    for op in operations {
                        match op {
                            ast::AlterTableOperation::AddColumn {
                                if_not_exists,
                                column_def,
                                column_position: None,
                                ..
                            } => add_column(cat, ti, column_def, *if_not_exists, *pos)?,
                            _ => return unsupported(*pos, "only ALTER TABLE … ADD COLUMN is supported"),
                        }
                    }
                }
                ast::Statement::Insert(_)
                | ast::Statement::Update { .. }
                | ast::Statement::Delete(_) => {
                    dml.push((*pos, stmt.clone()));
                }
                _ => return unsupported(*pos, "only CREATE TABLE, CREATE INDEX, CREATE FUNCTION, INSERT, UPDATE and DELETE may appear in a contract script"),
            },
        }
    }
    let _ = upgrade;
    // pass 2: signatures (so functions may call each other in any order)
    for f in &new_funcs {
        let sig = FuncSig {
            name: f.name.clone(),
            params: f.params.iter().map(|(n, t, _)| (n.clone(), *t)).collect(),
            returns: f.returns,
        };
        match cat.func(&f.name) {
            Some(i) => cat.sigs[i] = sig,
            None => {
                cat.sigs.push(sig);
                cat.funcs.push(Function {
                    name: f.name.clone(),
                    params: Vec::new(),
                    returns: SqlType::Void,
                    slots: Vec::new(),
                    body: Vec::new(),
                    pos: f.pos,
                });
            }
        }
    }
    // pass 3: bodies
    for f in &new_funcs {
        let compiled = compile_function(cat, f)?;
        if let Some(i) = cat.func(&f.name) {
            cat.funcs[i] = compiled;
        }
    }
    let mut plans = Vec::new();
    for (pos, stmt) in dml {
        let mut c = Compiler::new(cat, None, true, pos);
        plans.push((c.statement(&stmt)?, pos));
    }
    Ok(plans)
}

fn create_table(cat: &mut Catalog, ct: &ast::CreateTable, pos: Pos) -> Result<()> {
    let name = obj_name(&ct.name, pos)?;
    if cat.table(&name).is_some() {
        if ct.if_not_exists {
            return Ok(());
        }
        return resolve_err(pos, format!("table {name} already exists"));
    }
    if ct.query.is_some() {
        return unsupported(pos, "CREATE TABLE AS");
    }
    let mut t = Table {
        id: cat.next_table_id,
        name: name.clone(),
        columns: Vec::new(),
        pk: Vec::new(),
        checks: Vec::new(),
        indexes: Vec::new(),
    };
    let mut uniques: Vec<Vec<usize>> = Vec::new();
    let mut check_asts: Vec<ast::Expr> = Vec::new();
    for cd in &ct.columns {
        let cpos = span_pos(&cd.name.span);
        let cname = lc(&cd.name);
        if t.columns.iter().any(|c| c.name == cname) {
            return resolve_err(cpos, format!("column {cname} specified more than once"));
        }
        let ty = convert_type(&cd.data_type, cpos)?;
        let idx = t.columns.len();
        let mut col = Column {
            name: cname,
            ty,
            not_null: false,
            default: None,
            fill: Value::Null,
        };
        for opt in &cd.options {
            match &opt.option {
                ast::ColumnOption::Null => {}
                ast::ColumnOption::NotNull => col.not_null = true,
                ast::ColumnOption::Default(e) => {
                    let mut c = Compiler::new(cat, None, true, cpos);
                    let (e, _) = c.expr(e)?;
                    col.default = Some(e);
                }
                ast::ColumnOption::Unique {
                    is_primary: true, ..
                } => {
                    if !t.pk.is_empty() {
                        return resolve_err(cpos, "multiple primary keys");
                    }
                    t.pk = vec![idx];
                    col.not_null = true;
                }
                ast::ColumnOption::Unique {
                    is_primary: false, ..
                } => uniques.push(vec![idx]),
                ast::ColumnOption::Check(e) => check_asts.push(e.clone()),
                other => return unsupported(cpos, format!("column option {other}")),
            }
        }
        t.columns.push(col);
    }
    let col_idx = |t: &Table, e: &ast::Expr, pos: Pos| -> Result<usize> {
        match e {
            ast::Expr::Identifier(i) => {
                let n = lc(i);
                t.columns
                    .iter()
                    .position(|c| c.name == n)
                    .ok_or_else(|| SqlError::Resolve {
                        pos: span_pos(&i.span),
                        msg: format!("column {n} does not exist"),
                    })
            }
            _ => resolve_err(pos, "expected a column name"),
        }
    };
    for c in &ct.constraints {
        match c {
            ast::TableConstraint::PrimaryKey { columns, .. } => {
                if !t.pk.is_empty() {
                    return resolve_err(pos, "multiple primary keys");
                }
                for ic in columns {
                    let i = col_idx(&t, &ic.column.expr, pos)?;
                    t.pk.push(i);
                    t.columns[i].not_null = true;
                }
            }
            ast::TableConstraint::Unique { columns, .. } => {
                let mut v = Vec::new();
                for ic in columns {
                    v.push(col_idx(&t, &ic.column.expr, pos)?);
                }
                uniques.push(v);
            }
            ast::TableConstraint::Check { expr, .. } => check_asts.push((**expr).clone()),
            other => return unsupported(pos, format!("table constraint {other}")),
        }
    }
    for (k, cols) in uniques.into_iter().enumerate() {
        let Ok(id) = u32::try_from(t.indexes.len()) else {
            return unsupported(pos, "more than 2^32 indexes on one table");
        };
        t.indexes.push(Index {
            id,
            name: format!("{name}_unique_{k}"),
            cols,
            unique: true,
        });
    }
    cat.tables.push(t);
    cat.next_table_id += 1;
    let ti = cat.tables.len() - 1;
    for e in check_asts {
        let mut c = Compiler::new(cat, None, false, pos);
        c.push_table_scope(ti, None);
        let (ce, ty) = c.expr(&e)?;
        if !matches!(ty, SqlType::Boolean | SqlType::Unknown) {
            return resolve_err(pos, "CHECK expression must be boolean");
        }
        let text = e.to_string();
        cat.tables[ti].checks.push((ce, text));
    }
    Ok(())
}

/// `ALTER TABLE t ADD COLUMN c type [NOT NULL] [DEFAULT constant]`. Stored
/// rows are not rewritten: they decode with the constant default (or NULL),
/// so they stay valid; NOT NULL therefore needs a non-NULL constant default.
fn add_column(
    cat: &mut Catalog,
    ti: usize,
    cd: &ast::ColumnDef,
    if_not_exists: bool,
    pos: Pos,
) -> Result<()> {
    let cpos = span_pos(&cd.name.span);
    let cname = lc(&cd.name);
    if cat.tables[ti].columns.iter().any(|c| c.name == cname) {
        if if_not_exists {
            return Ok(());
        }
        return resolve_err(cpos, format!("column {cname} already exists"));
    }
    let ty = convert_type(&cd.data_type, cpos)?;
    let mut col = Column {
        name: cname.clone(),
        ty,
        not_null: false,
        default: None,
        fill: Value::Null,
    };
    for opt in &cd.options {
        match &opt.option {
            ast::ColumnOption::Null => {}
            ast::ColumnOption::NotNull => col.not_null = true,
            ast::ColumnOption::Default(e) => {
                let mut c = Compiler::new(cat, None, false, cpos);
                match c.expr(e)?.0 {
                    Expr::Const(v) => {
                        let v = v.cast(&ty)?;
                        col.fill = v.clone();
                        col.default = Some(Expr::Const(v));
                    }
                    _ => return resolve_err(cpos, "ADD COLUMN needs a constant DEFAULT"),
                }
            }
            other => return unsupported(cpos, format!("ADD COLUMN with {other}")),
        }
    }
    if col.not_null && col.fill.is_null() {
        return resolve_err(pos, format!("column {cname} is NOT NULL: it needs a non-NULL constant DEFAULT for existing rows"));
    }
    cat.tables[ti].columns.push(col);
    Ok(())
}

fn create_index(cat: &mut Catalog, ci: &ast::CreateIndex, pos: Pos) -> Result<()> {
    let tname = obj_name(&ci.table_name, pos)?;
    let Some(ti) = cat.table(&tname) else {
        return resolve_err(pos, format!("table {tname} does not exist"));
    };
    let name = match &ci.name {
        Some(n) => obj_name(n, pos)?,
        None => format!("{tname}_idx_{}", cat.tables[ti].indexes.len()),
    };
    if cat
        .tables
        .iter()
        .any(|t| t.indexes.iter().any(|i| i.name == name))
    {
        if ci.if_not_exists {
            return Ok(());
        }
        return resolve_err(pos, format!("index {name} already exists"));
    }
    let t = &cat.tables[ti];
    let mut cols = Vec::new();
    for ic in &ci.columns {
        match &ic.column.expr {
            ast::Expr::Identifier(i) => {
                let n = lc(i);
                match t.columns.iter().position(|c| c.name == n) {
                    Some(k) => cols.push(k),
                    None => {
                        return resolve_err(span_pos(&i.span), format!("column {n} does not exist"))
                    }
                }
            }
            _ => return unsupported(pos, "expression indexes"),
        }
    }
    let id = t.indexes.iter().map(|i| i.id + 1).max().unwrap_or(0);
    cat.tables[ti].indexes.push(Index {
        id,
        name,
        cols,
        unique: ci.unique,
    });
    Ok(())
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
    aggs: Vec<AggCall>,
    active: bool,
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
}

/// Deepest expression nesting accepted (bounds recursion in every engine).
pub const MAX_EXPR_DEPTH: u32 = 200;

fn is_agg_name(n: &str) -> bool {
    matches!(n, "count" | "sum" | "min" | "max" | "avg")
}

fn num_type(a: SqlType, b: SqlType) -> SqlType {
    match (a, b) {
        (SqlType::Numeric(_), _) | (_, SqlType::Numeric(_)) => SqlType::Numeric(None),
        (SqlType::Unknown, SqlType::Unknown) => SqlType::Unknown,
        _ => SqlType::BigInt,
    }
}

#[derive(PartialEq)]
enum Class {
    Num,
    Text,
    Bool,
    Bytes,
    Ts,
    Any,
}

fn class(t: SqlType) -> Class {
    match t {
        SqlType::BigInt | SqlType::Integer | SqlType::Numeric(_) => Class::Num,
        SqlType::Text(_) => Class::Text,
        SqlType::Boolean => Class::Bool,
        SqlType::Bytea => Class::Bytes,
        SqlType::Timestamp => Class::Ts,
        SqlType::Unknown | SqlType::Void => Class::Any,
    }
}

fn is_text_literal(e: &Expr) -> bool {
    matches!(e, Expr::Const(Value::Text(_)) | Expr::Const(Value::Null))
}

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
        }
    }

    /// A compiler for ad-hoc queries (no variables, no chain functions).
    pub fn for_query(cat: &'a Catalog) -> Compiler<'a> {
        Compiler::new(cat, None, false, Pos::default())
    }

    fn push_table_scope(&mut self, ti: usize, alias: Option<String>) {
        let t = &self.cat.tables[ti];
        let tn = alias.unwrap_or_else(|| t.name.clone());
        self.scopes.push(Scope {
            cols: t
                .columns
                .iter()
                .map(|c| ScopeCol {
                    table: Some(tn.clone()),
                    name: c.name.clone(),
                    ty: c.ty,
                })
                .collect(),
        });
    }

    fn lookup_col(
        &self,
        table: Option<&str>,
        name: &str,
        pos: Pos,
    ) -> Result<Option<(Expr, SqlType)>> {
        for (d, sc) in self.scopes.iter().rev().enumerate() {
            let mut found: Option<(usize, SqlType)> = None;
            let mut table_seen = false;
            for (i, c) in sc.cols.iter().enumerate() {
                if let Some(t) = table {
                    if c.table.as_deref() != Some(t) {
                        continue;
                    }
                    table_seen = true;
                }
                if c.name == name {
                    if found.is_some() {
                        return resolve_err(
                            pos,
                            format!("column reference \"{name}\" is ambiguous"),
                        );
                    }
                    found = Some((i, c.ty));
                }
            }
            if let Some((i, ty)) = found {
                let Ok(depth) = u32::try_from(d) else {
                    return resolve_err(pos, "queries nested too deeply");
                };
                return Ok(Some((Expr::Col { depth, idx: i }, ty)));
            }
            if table_seen {
                return resolve_err(
                    pos,
                    format!("column {}.{name} does not exist", table.unwrap_or("")),
                );
            }
        }
        Ok(None)
    }

    fn ident(&mut self, parts: &[ast::Ident]) -> Result<(Expr, SqlType)> {
        let pos = parts.first().map(|i| span_pos(&i.span)).unwrap_or(self.pos);
        let names: Vec<String> = parts.iter().map(lc).collect();
        if self.agg.as_ref().is_some_and(|a| a.active) {
            return resolve_err(pos, format!("column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function", names.join(".")));
        }
        match names.as_slice() {
            [n] => {
                let col = self.lookup_col(None, n, pos)?;
                let var = self.vars.as_ref().and_then(|v| v.lookup(n));
                match (col, var) {
                    (Some(_), Some(_)) => resolve_err(
                        pos,
                        format!(
                            "name \"{n}\" is ambiguous: it could refer to a variable or a column"
                        ),
                    ),
                    (Some(c), None) => Ok(c),
                    (None, Some(s)) => Ok((
                        Expr::Var(s),
                        self.vars
                            .as_ref()
                            .map(|v| v.slots[s])
                            .unwrap_or(SqlType::Unknown),
                    )),
                    (None, None) => {
                        if n == "found" {
                            return resolve_err(pos, "FOUND is only available inside functions");
                        }
                        resolve_err(pos, format!("column or variable \"{n}\" does not exist"))
                    }
                }
            }
            [t, n] => {
                let rec = format!("{t}.{n}");
                if let Some(s) = self.vars.as_ref().and_then(|v| v.lookup(&rec)) {
                    return Ok((
                        Expr::Var(s),
                        self.vars
                            .as_ref()
                            .map(|v| v.slots[s])
                            .unwrap_or(SqlType::Unknown),
                    ));
                }
                match self.lookup_col(Some(t), n, pos)? {
                    Some(c) => Ok(c),
                    None => {
                        resolve_err(pos, format!("missing FROM-clause entry for table \"{t}\""))
                    }
                }
            }
            _ => unsupported(pos, "names with more than two parts"),
        }
    }

    fn expr_pos(&self, e: &ast::Expr) -> Pos {
        match e {
            ast::Expr::Identifier(i) => span_pos(&i.span),
            ast::Expr::CompoundIdentifier(v) => {
                v.first().map(|i| span_pos(&i.span)).unwrap_or(self.pos)
            }
            ast::Expr::Value(v) if v.span.start.line > 0 => span_pos(&v.span),
            ast::Expr::Function(f) => f
                .name
                .0
                .first()
                .and_then(|p| p.as_ident())
                .map(|i| span_pos(&i.span))
                .unwrap_or(self.pos),
            ast::Expr::BinaryOp { left, .. } => self.expr_pos(left),
            _ => self.pos,
        }
    }

    /// Compiles an expression, returning it with its static type.
    pub fn expr(&mut self, e: &ast::Expr) -> Result<(Expr, SqlType)> {
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            self.depth -= 1;
            let pos = self.expr_pos(e);
            return resolve_err(
                pos,
                format!("expression nested more than {MAX_EXPR_DEPTH} levels deep"),
            );
        }
        let r = self.expr_inner(e);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: &ast::Expr) -> Result<(Expr, SqlType)> {
        if let Some(a) = &self.agg {
            if a.active {
                if let Some(i) = a.groups.iter().position(|g| g == e) {
                    let ty = self.group_type(i)?;
                    return Ok((Expr::Col { depth: 0, idx: i }, ty));
                }
            }
        }
        let pos = self.expr_pos(e);
        use ast::Expr as A;
        Ok(match e {
            A::Identifier(i) => self.ident(std::slice::from_ref(i))?,
            A::CompoundIdentifier(v) => self.ident(v)?,
            A::Value(v) => literal(&v.value, pos)?,
            A::Nested(x) => self.expr(x)?,
            A::TypedString(ts) => {
                let ty = convert_type(&ts.data_type, pos)?;
                let s = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => return unsupported(pos, format!("typed literal {other}")),
                };
                (Expr::Const(Value::Text(s).cast(&ty)?), ty)
            }
            A::UnaryOp { op, expr } => {
                let (x, t) = self.expr(expr)?;
                match op {
                    UnaryOperator::Minus => {
                        if class(t) != Class::Num && class(t) != Class::Any {
                            return resolve_err(pos, format!("operator does not exist: - {t}"));
                        }
                        match x {
                            Expr::Const(Value::Int(i)) => (
                                Expr::Const(Value::Int(i.checked_neg().ok_or_else(|| {
                                    SqlError::Overflow("bigint out of range".into())
                                })?)),
                                t,
                            ),
                            Expr::Const(Value::Num(d)) => (Expr::Const(Value::Num(d.neg()?)), t),
                            x => (Expr::Neg(Box::new(x)), t),
                        }
                    }
                    UnaryOperator::Plus => (x, t),
                    UnaryOperator::Not => {
                        self.want_bool(t, pos)?;
                        (Expr::Not(Box::new(x)), SqlType::Boolean)
                    }
                    other => return unsupported(pos, format!("operator {other}")),
                }
            }
            A::BinaryOp { left, op, right } => self.binop(left, op, right, pos)?,
            A::IsNull(x) => (
                Expr::IsNull(Box::new(self.expr(x)?.0), false),
                SqlType::Boolean,
            ),
            A::IsNotNull(x) => (
                Expr::IsNull(Box::new(self.expr(x)?.0), true),
                SqlType::Boolean,
            ),
            A::IsTrue(x) | A::IsNotTrue(x) | A::IsFalse(x) | A::IsNotFalse(x) => {
                let (c, t) = self.expr(x)?;
                self.want_bool(t, pos)?;
                let want = matches!(e, A::IsTrue(_) | A::IsNotTrue(_));
                let not_distinct = matches!(e, A::IsTrue(_) | A::IsFalse(_));
                (
                    Expr::IsDistinct(
                        Box::new(c),
                        Box::new(Expr::Const(Value::Bool(want))),
                        not_distinct,
                    ),
                    SqlType::Boolean,
                )
            }
            A::IsDistinctFrom(a, b) | A::IsNotDistinctFrom(a, b) => {
                let (x, tx) = self.expr(a)?;
                let (y, ty) = self.expr(b)?;
                self.comparable(tx, ty, &x, &y, pos)?;
                (
                    Expr::IsDistinct(
                        Box::new(x),
                        Box::new(y),
                        matches!(e, A::IsNotDistinctFrom(..)),
                    ),
                    SqlType::Boolean,
                )
            }
            A::InList {
                expr,
                list,
                negated,
            } => {
                let (x, tx) = self.expr(expr)?;
                let mut items = Vec::new();
                for l in list {
                    let (y, ty) = self.expr(l)?;
                    self.comparable(tx, ty, &x, &y, pos)?;
                    items.push(y);
                }
                (Expr::InList(Box::new(x), items, *negated), SqlType::Boolean)
            }
            A::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                let (x, _) = self.expr(expr)?;
                let q = self.subquery(subquery)?;
                if q.columns.len() != 1 {
                    return resolve_err(pos, "subquery has too many columns");
                }
                (
                    Expr::InSub(Box::new(x), Box::new(q), *negated),
                    SqlType::Boolean,
                )
            }
            A::Exists { subquery, negated } => {
                let q = self.subquery(subquery)?;
                (Expr::Exists(Box::new(q), *negated), SqlType::Boolean)
            }
            A::Subquery(q) => {
                let q = self.subquery(q)?;
                if q.columns.len() != 1 {
                    return resolve_err(pos, "subquery must return only one column");
                }
                let ty = q.columns[0].1;
                (Expr::ScalarSub(Box::new(q)), ty)
            }
            A::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, tx) = self.expr(expr)?;
                let (l, tl) = self.expr(low)?;
                let (h, th) = self.expr(high)?;
                self.comparable(tx, tl, &x, &l, pos)?;
                self.comparable(tx, th, &x, &h, pos)?;
                (
                    Expr::Between(Box::new(x), Box::new(l), Box::new(h), *negated),
                    SqlType::Boolean,
                )
            }
            A::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any,
                ..
            }
            | A::ILike {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            } => {
                if escape_char.is_some() || *any {
                    return unsupported(pos, "LIKE … ESCAPE / ANY");
                }
                let (x, tx) = self.expr(expr)?;
                let (p, tp) = self.expr(pattern)?;
                for t in [tx, tp] {
                    if !matches!(class(t), Class::Text | Class::Any) {
                        return resolve_err(pos, format!("operator does not exist: {t} ~~ text"));
                    }
                }
                (
                    Expr::Like(
                        Box::new(x),
                        Box::new(p),
                        *negated,
                        matches!(e, A::ILike { .. }),
                    ),
                    SqlType::Boolean,
                )
            }
            A::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let op = match operand {
                    Some(o) => Some(Box::new(self.expr(o)?.0)),
                    None => None,
                };
                let mut ty = SqlType::Unknown;
                let mut whens = Vec::new();
                let mut types = Vec::new();
                for cw in conditions {
                    let (c, tc) = self.expr(&cw.condition)?;
                    if op.is_none() {
                        self.want_bool(tc, pos)?;
                    }
                    let (r, tr) = self.expr(&cw.result)?;
                    ty = unify(ty, tr, pos)?;
                    whens.push((c, r));
                    types.push(tr);
                }
                let el = match else_result {
                    Some(x) => {
                        let (r, tr) = self.expr(x)?;
                        ty = unify(ty, tr, pos)?;
                        Some((r, tr))
                    }
                    None => None,
                };
                // branches take the common type (an integer branch of a NUMERIC CASE is NUMERIC)
                let whens = whens
                    .into_iter()
                    .zip(types)
                    .map(|((c, r), t)| (c, widen(r, t, ty)))
                    .collect();
                let el = el.map(|(r, t)| Box::new(widen(r, t, ty)));
                (Expr::Case(op, whens, el), ty)
            }
            A::Cast {
                expr, data_type, ..
            } => {
                let ty = convert_type(data_type, pos)?;
                let (x, _) = self.expr(expr)?;
                match x {
                    Expr::Const(v) => (Expr::Const(v.cast(&ty)?), ty),
                    x => (Expr::Cast(Box::new(x), ty), ty),
                }
            }
            A::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.expr(expr)?.0];
                args.push(match substring_from {
                    Some(f) => self.expr(f)?.0,
                    None => Expr::Const(Value::Int(1)),
                });
                if let Some(f) = substring_for {
                    args.push(self.expr(f)?.0);
                }
                (Expr::Builtin(Builtin::Substr, args), SqlType::Text(None))
            }
            A::Trim {
                expr,
                trim_where,
                trim_what,
                ..
            } => {
                if trim_where.is_some() || trim_what.is_some() {
                    return unsupported(pos, "TRIM with options");
                }
                (
                    Expr::Builtin(Builtin::Trim, vec![self.expr(expr)?.0]),
                    SqlType::Text(None),
                )
            }
            A::Function(f) => self.function(f, pos)?,
            other => return unsupported(pos, format!("expression {other}")),
        })
    }

    fn group_type(&self, _i: usize) -> Result<SqlType> {
        Ok(SqlType::Unknown)
    }

    fn want_bool(&self, t: SqlType, pos: Pos) -> Result<()> {
        if matches!(class(t), Class::Bool | Class::Any) {
            Ok(())
        } else {
            resolve_err(pos, format!("argument must be type boolean, not type {t}"))
        }
    }

    fn comparable(&self, a: SqlType, b: SqlType, x: &Expr, y: &Expr, pos: Pos) -> Result<()> {
        let (ca, cb) = (class(a), class(b));
        if ca == cb
            || ca == Class::Any
            || cb == Class::Any
            || is_text_literal(x)
            || is_text_literal(y)
        {
            Ok(())
        } else {
            resolve_err(pos, format!("operator does not exist: {a} = {b}"))
        }
    }

    fn binop(
        &mut self,
        l: &ast::Expr,
        op: &BinaryOperator,
        r: &ast::Expr,
        pos: Pos,
    ) -> Result<(Expr, SqlType)> {
        let (a, ta) = self.expr(l)?;
        let (b, tb) = self.expr(r)?;
        let bx = |x: Expr| Box::new(x);
        let arith = |o: ArithOp, this: &Self| -> Result<(Expr, SqlType)> {
            for (t, e) in [(ta, &a), (tb, &b)] {
                if !matches!(class(t), Class::Num | Class::Any) && !is_text_literal(e) {
                    return resolve_err(pos, format!("operator does not exist: {ta} {op} {tb}"));
                }
            }
            let _ = this;
            Ok((
                Expr::Arith(o, bx(a.clone()), bx(b.clone())),
                num_type(ta, tb),
            ))
        };
        let cmp = |o: CmpOp, this: &Self| -> Result<(Expr, SqlType)> {
            this.comparable(ta, tb, &a, &b, pos)?;
            Ok((Expr::Cmp(o, bx(a.clone()), bx(b.clone())), SqlType::Boolean))
        };
        match op {
            BinaryOperator::Plus => arith(ArithOp::Add, self),
            BinaryOperator::Minus => arith(ArithOp::Sub, self),
            BinaryOperator::Multiply => arith(ArithOp::Mul, self),
            BinaryOperator::Divide => arith(ArithOp::Div, self),
            BinaryOperator::Modulo => arith(ArithOp::Mod, self),
            BinaryOperator::Eq => cmp(CmpOp::Eq, self),
            BinaryOperator::NotEq => cmp(CmpOp::Ne, self),
            BinaryOperator::Lt => cmp(CmpOp::Lt, self),
            BinaryOperator::LtEq => cmp(CmpOp::Le, self),
            BinaryOperator::Gt => cmp(CmpOp::Gt, self),
            BinaryOperator::GtEq => cmp(CmpOp::Ge, self),
            BinaryOperator::And | BinaryOperator::Or => {
                self.want_bool(ta, pos)?;
                self.want_bool(tb, pos)?;
                if *op == BinaryOperator::And {
                    Ok((Expr::And(bx(a), bx(b)), SqlType::Boolean))
                } else {
                    Ok((Expr::Or(bx(a), bx(b)), SqlType::Boolean))
                }
            }
            BinaryOperator::StringConcat => Ok((Expr::Concat(bx(a), bx(b)), SqlType::Text(None))),
            other => unsupported(pos, format!("operator {other}")),
        }
    }

    fn args(&mut self, f: &ast::Function, pos: Pos) -> Result<Args> {
        let mut out = Vec::new();
        let mut star = false;
        let mut distinct = false;
        match &f.args {
            ast::FunctionArguments::None => {}
            ast::FunctionArguments::Subquery(_) => {
                return unsupported(pos, "subquery as function argument")
            }
            ast::FunctionArguments::List(l) => {
                if !l.clauses.is_empty() {
                    return unsupported(pos, "function argument clauses");
                }
                distinct = matches!(
                    l.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                );
                for a in &l.args {
                    match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                            out.push(self.expr(e)?)
                        }
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => star = true,
                        _ => return unsupported(pos, "named or qualified-wildcard arguments"),
                    }
                }
            }
        }
        Ok((out, star, distinct))
    }

    fn function(&mut self, f: &ast::Function, pos: Pos) -> Result<(Expr, SqlType)> {
        let name = match f.name.0.as_slice() {
            [ast::ObjectNamePart::Identifier(i)] => lc(i),
            _ => return unsupported(pos, format!("function name {}", f.name)),
        };
        if f.over.is_some()
            || f.filter.is_some()
            || !matches!(f.parameters, ast::FunctionArguments::None)
        {
            return unsupported(pos, "window functions, FILTER and parametric functions");
        }
        if is_agg_name(&name) && self.cat.func(&name).is_none() {
            return self.aggregate(&name, f, pos);
        }
        let (args, star, _) = self.args(f, pos)?;
        if star {
            return resolve_err(pos, format!("{name}(*) is not valid"));
        }
        let n = args.len();
        let arity = |lo: usize, hi: usize| -> Result<()> {
            if n < lo || n > hi {
                resolve_err(
                    pos,
                    format!("function {name} takes {lo}..{hi} arguments, got {n}"),
                )
            } else {
                Ok(())
            }
        };
        let first_ty = args.first().map(|a| a.1).unwrap_or(SqlType::Unknown);
        let exprs: Vec<Expr> = args.iter().map(|a| a.0.clone()).collect();
        let chain = |c: ChainFn, lo: usize, ty: SqlType, this: &Self| -> Result<(Expr, SqlType)> {
            if !this.allow_chain {
                return resolve_err(pos, format!("{name}() is only available in contract calls"));
            }
            arity(lo, lo)?;
            Ok((Expr::Chain(c, exprs.clone()), ty))
        };
        match name.as_str() {
            "length" | "char_length" => {
                arity(1, 1)?;
                Ok((Expr::Builtin(Builtin::Length, exprs), SqlType::BigInt))
            }
            "lower" | "upper" | "trim" => {
                arity(1, 1)?;
                let b = match name.as_str() {
                    "lower" => Builtin::Lower,
                    "upper" => Builtin::Upper,
                    _ => Builtin::Trim,
                };
                Ok((Expr::Builtin(b, exprs), SqlType::Text(None)))
            }
            "substr" | "substring" => {
                arity(2, 3)?;
                Ok((Expr::Builtin(Builtin::Substr, exprs), SqlType::Text(None)))
            }
            "abs" => {
                arity(1, 1)?;
                Ok((Expr::Builtin(Builtin::Abs, exprs), first_ty))
            }
            "round" => {
                arity(1, 2)?;
                Ok((Expr::Builtin(Builtin::Round, exprs), SqlType::Numeric(None)))
            }
            "coalesce" => {
                arity(1, usize::MAX)?;
                let mut ty = SqlType::Unknown;
                for a in &args {
                    ty = unify(ty, a.1, pos)?;
                }
                let exprs = args.into_iter().map(|(e, t)| widen(e, t, ty)).collect();
                Ok((Expr::Coalesce(exprs), ty))
            }
            "nullif" => {
                arity(2, 2)?;
                Ok((
                    Expr::NullIf(Box::new(exprs[0].clone()), Box::new(exprs[1].clone())),
                    first_ty,
                ))
            }
            "sender" => chain(ChainFn::Sender, 0, SqlType::Text(None), self),
            "block_height" => chain(ChainFn::BlockHeight, 0, SqlType::BigInt, self),
            "block_time" => chain(ChainFn::BlockTime, 0, SqlType::Timestamp, self),
            "tx_hash" => chain(ChainFn::TxHash, 0, SqlType::Text(None), self),
            "contract_address" => chain(ChainFn::ContractAddress, 0, SqlType::Text(None), self),
            "amount" => chain(ChainFn::Amount, 0, SqlType::Numeric(None), self),
            "balance" => chain(ChainFn::Balance, 1, SqlType::Numeric(None), self),
            "send" => chain(ChainFn::Send, 2, SqlType::Boolean, self),
            _ => match self.cat.func(&name) {
                Some(fi) => {
                    let sig = &self.cat.sigs[fi];
                    if sig.params.len() != n {
                        return resolve_err(
                            pos,
                            format!(
                                "function {name} takes {} arguments, got {n}",
                                sig.params.len()
                            ),
                        );
                    }
                    Ok((Expr::Call(fi, exprs), sig.returns))
                }
                None => resolve_err(pos, format!("function {name} does not exist")),
            },
        }
    }

    fn aggregate(&mut self, name: &str, f: &ast::Function, pos: Pos) -> Result<(Expr, SqlType)> {
        self.saw_agg = true;
        let active = self.agg.as_ref().is_some_and(|a| a.active);
        if !active {
            // detection pass (or aggregate in a non-aggregate context)
            if self.agg.is_some() {
                return resolve_err(pos, "aggregate function calls cannot be nested");
            }
            return Ok((Expr::Const(Value::Null), SqlType::Unknown));
        }
        // compile the argument against the input row
        if let Some(a) = self.agg.as_mut() {
            a.active = false;
        }
        let r = self.args(f, pos);
        if let Some(a) = self.agg.as_mut() {
            a.active = true;
        }
        let (args, star, distinct) = r?;
        let (func, arg, ty) = match (name, star, args.len()) {
            ("count", true, 0) => (AggFn::CountStar, None, SqlType::BigInt),
            ("count", false, 1) => (AggFn::Count, Some(args[0].0.clone()), SqlType::BigInt),
            ("sum", false, 1) => (
                AggFn::Sum,
                Some(args[0].0.clone()),
                num_type(args[0].1, SqlType::BigInt),
            ),
            ("avg", false, 1) => (AggFn::Avg, Some(args[0].0.clone()), SqlType::Numeric(None)),
            ("min", false, 1) => (AggFn::Min, Some(args[0].0.clone()), args[0].1),
            ("max", false, 1) => (AggFn::Max, Some(args[0].0.clone()), args[0].1),
            _ => return resolve_err(pos, format!("wrong arguments for aggregate {name}")),
        };
        if matches!(func, AggFn::Sum | AggFn::Avg)
            && !matches!(class(args[0].1), Class::Num | Class::Any)
        {
            return resolve_err(
                pos,
                format!("function {name}({}) does not exist", args[0].1),
            );
        }
        let Some(a) = self.agg.as_mut() else {
            return resolve_err(pos, "internal: aggregate state missing");
        };
        let idx = a.groups.len() + a.aggs.len();
        a.aggs.push(AggCall {
            func,
            arg,
            distinct,
        });
        Ok((Expr::Col { depth: 0, idx }, ty))
    }

    fn subquery(&mut self, q: &ast::Query) -> Result<Select> {
        let saved = self.agg.take();
        let saved_saw = self.saw_agg;
        let r = self.select(q);
        self.agg = saved;
        self.saw_agg = saved_saw;
        r
    }

    /// Compiles a query.
    pub fn select(&mut self, q: &ast::Query) -> Result<Select> {
        let pos = self.pos;
        if q.with.is_some() || q.fetch.is_some() || !q.locks.is_empty() {
            return unsupported(pos, "WITH, FETCH and locking clauses");
        }
        let sel = match q.body.as_ref() {
            ast::SetExpr::Select(s) => s,
            ast::SetExpr::Query(inner) if q.order_by.is_none() && q.limit_clause.is_none() => {
                return self.select(inner)
            }
            _ => return unsupported(pos, "UNION/INTERSECT/EXCEPT and VALUES as a query"),
        };
        if sel.into.is_some() {
            return unsupported(pos, "SELECT INTO outside a function");
        }
        if sel.having.is_some() && matches!(sel.group_by, ast::GroupByExpr::All(_)) {
            return unsupported(pos, "GROUP BY ALL");
        }
        // FROM
        let mut sources = Vec::new();
        let mut scope = Scope::default();
        let mut on_asts: Vec<Option<ast::Expr>> = Vec::new();
        for twj in &sel.from {
            let mut items = vec![(&twj.relation, JoinKind::Inner, None)];
            for j in &twj.joins {
                let (kind, cons) = match &j.join_operator {
                    ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => {
                        (JoinKind::Inner, c)
                    }
                    ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => {
                        (JoinKind::Left, c)
                    }
                    ast::JoinOperator::CrossJoin(c) => (JoinKind::Inner, c),
                    _ => return unsupported(pos, "RIGHT/FULL/SEMI/ANTI joins"),
                };
                let on = match cons {
                    ast::JoinConstraint::On(e) => Some(e.clone()),
                    ast::JoinConstraint::None => None,
                    _ => return unsupported(pos, "USING/NATURAL joins"),
                };
                items.push((&j.relation, kind, on));
            }
            for (tf, kind, on) in items {
                let offset = scope.cols.len();
                match tf {
                    ast::TableFactor::Table {
                        name, alias, args, ..
                    } => {
                        if args.is_some() {
                            return unsupported(pos, "table functions");
                        }
                        let tn = obj_name(name, pos)?;
                        let Some(ti) = self.cat.table(&tn) else {
                            let p = name
                                .0
                                .first()
                                .and_then(|p| p.as_ident())
                                .map(|i| span_pos(&i.span))
                                .unwrap_or(pos);
                            return resolve_err(p, format!("relation \"{tn}\" does not exist"));
                        };
                        let an = alias.as_ref().map(|a| lc(&a.name)).unwrap_or(tn);
                        let t = &self.cat.tables[ti];
                        for c in &t.columns {
                            scope.cols.push(ScopeCol {
                                table: Some(an.clone()),
                                name: c.name.clone(),
                                ty: c.ty,
                            });
                        }
                        sources.push(Source {
                            kind: SourceKind::Table {
                                table: ti,
                                access: Access::Scan,
                            },
                            join: kind,
                            on: None,
                            offset,
                            width: t.columns.len(),
                        });
                    }
                    ast::TableFactor::Derived {
                        subquery,
                        alias,
                        lateral,
                    } => {
                        if *lateral {
                            return unsupported(pos, "LATERAL");
                        }
                        let q = self.subquery(subquery)?;
                        let an = alias.as_ref().map(|a| lc(&a.name));
                        for (k, (n, t)) in q.columns.iter().enumerate() {
                            let n = alias
                                .as_ref()
                                .and_then(|a| a.columns.get(k))
                                .map(|c| lc(&c.name))
                                .unwrap_or_else(|| n.clone());
                            scope.cols.push(ScopeCol {
                                table: an.clone(),
                                name: n,
                                ty: *t,
                            });
                        }
                        let w = q.columns.len();
                        sources.push(Source {
                            kind: SourceKind::Sub(Box::new(q)),
                            join: kind,
                            on: None,
                            offset,
                            width: w,
                        });
                    }
                    _ => return unsupported(pos, "this kind of FROM item"),
                }
                on_asts.push(on);
            }
        }
        let width = scope.cols.len();
        self.scopes.push(scope);
        let r = self.select_body(q, sel, sources, on_asts, width);
        self.scopes.pop();
        r
    }

    fn select_body(
        &mut self,
        q: &ast::Query,
        sel: &ast::Select,
        mut sources: Vec<Source>,
        on_asts: Vec<Option<ast::Expr>>,
        width: usize,
    ) -> Result<Select> {
        let pos = self.pos;
        for (s, on) in sources.iter_mut().zip(on_asts) {
            if let Some(on) = on {
                let (e, t) = self.expr(&on)?;
                self.want_bool(t, pos)?;
                s.on = Some(e);
            }
        }
        let filter = match &sel.selection {
            Some(w) => {
                self.saw_agg = false;
                let (e, t) = self.expr(w)?;
                if self.saw_agg {
                    return resolve_err(pos, "aggregate functions are not allowed in WHERE");
                }
                self.want_bool(t, pos)?;
                Some(e)
            }
            None => None,
        };
        // projection items as (ast, name) pairs, wildcards expanded
        let mut items: Vec<(ast::Expr, String)> = Vec::new();
        for it in &sel.projection {
            match it {
                ast::SelectItem::UnnamedExpr(e) => items.push((e.clone(), default_name(e))),
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    items.push((expr.clone(), lc(alias)))
                }
                ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                    let want: Option<String> = match it {
                        ast::SelectItem::QualifiedWildcard(
                            ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                            _,
                        ) => Some(obj_name(n, pos)?),
                        ast::SelectItem::QualifiedWildcard(..) => {
                            return unsupported(pos, "expression wildcard")
                        }
                        _ => None,
                    };
                    let sc = self.scopes.last().cloned().unwrap_or_default();
                    if sc.cols.is_empty() {
                        return resolve_err(pos, "SELECT * with no tables specified is not valid");
                    }
                    let mut any = false;
                    for c in &sc.cols {
                        if want.is_some() && c.table != want {
                            continue;
                        }
                        any = true;
                        let mut parts = Vec::new();
                        if let Some(t) = &c.table {
                            parts.push(ast::Ident::new(t.clone()));
                        }
                        parts.push(ast::Ident::new(c.name.clone()));
                        let e = if parts.len() == 1 {
                            ast::Expr::Identifier(parts.remove(0))
                        } else {
                            ast::Expr::CompoundIdentifier(parts)
                        };
                        items.push((e, c.name.clone()));
                    }
                    if !any {
                        return resolve_err(
                            pos,
                            format!(
                                "missing FROM-clause entry for table \"{}\"",
                                want.unwrap_or_default()
                            ),
                        );
                    }
                }
            }
        }
        // GROUP BY expressions (ordinals and output aliases allowed)
        let mut group_asts: Vec<ast::Expr> = Vec::new();
        if let ast::GroupByExpr::Expressions(gs, mods) = &sel.group_by {
            if !mods.is_empty() {
                return unsupported(pos, "GROUP BY modifiers");
            }
            for g in gs {
                group_asts.push(self.resolve_output_ref(g, &items)?);
            }
        } else {
            return unsupported(pos, "GROUP BY ALL");
        }
        // detect aggregation
        self.saw_agg = false;
        for (e, _) in &items {
            self.expr(e)?;
        }
        if let Some(h) = &sel.having {
            self.expr(h)?;
        }
        let order_asts: Vec<&ast::OrderByExpr> = match &q.order_by {
            Some(ob) => match &ob.kind {
                ast::OrderByKind::Expressions(v) => v.iter().collect(),
                ast::OrderByKind::All(_) => return unsupported(pos, "ORDER BY ALL"),
            },
            None => Vec::new(),
        };
        for o in &order_asts {
            let e = self.resolve_output_ref(&o.expr, &items)?;
            self.expr(&e)?;
        }
        let aggregating = self.saw_agg || !group_asts.is_empty() || sel.having.is_some();
        let mut agg_plan = None;
        if aggregating {
            let mut groups = Vec::new();
            for g in &group_asts {
                let (e, _) = self.expr(g)?;
                groups.push(e);
            }
            self.agg = Some(AggState {
                groups: group_asts.clone(),
                aggs: Vec::new(),
                active: true,
            });
            // the post-aggregation row has no source scope; keep scope for error messages only
        }
        let mut proj = Vec::new();
        let mut columns = Vec::new();
        for (e, n) in &items {
            let (c, t) = self.expr(e)?;
            proj.push(c);
            columns.push((n.clone(), t));
        }
        let having = match &sel.having {
            Some(h) => {
                let (c, t) = self.expr(h)?;
                self.want_bool(t, pos)?;
                Some(c)
            }
            None => None,
        };
        let mut order = Vec::new();
        for o in &order_asts {
            let e = self.resolve_output_ref(&o.expr, &items)?;
            let (c, _) = self.expr(&e)?;
            let desc = o.options.asc == Some(false);
            let nulls_first = o.options.nulls_first.unwrap_or(desc);
            order.push((c, desc, nulls_first));
        }
        if aggregating {
            let st = self.agg.take();
            if let Some(st) = st {
                let mut groups = Vec::new();
                for g in &group_asts {
                    let (e, _) = self.expr(g)?;
                    groups.push(e);
                }
                agg_plan = Some(AggPlan {
                    groups,
                    aggs: st.aggs,
                });
            }
        }
        let (limit, offset) = match &q.limit_clause {
            None => (None, None),
            Some(ast::LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return unsupported(pos, "LIMIT BY");
                }
                let l = match limit {
                    Some(l) => Some(self.expr(l)?.0),
                    None => None,
                };
                let o = match offset {
                    Some(o) => Some(self.expr(&o.value)?.0),
                    None => None,
                };
                (l, o)
            }
            Some(_) => return unsupported(pos, "LIMIT offset, count"),
        };
        let distinct = match &sel.distinct {
            None => false,
            Some(ast::Distinct::Distinct) => true,
            Some(ast::Distinct::On(_)) => return unsupported(pos, "DISTINCT ON"),
        };
        // access paths
        let inner_only = sources.iter().all(|s| s.join == JoinKind::Inner);
        #[allow(clippy::needless_range_loop)]
        for k in 0..sources.len() {
            let mut conj: Vec<&Expr> = Vec::new();
            if sources[k].join == JoinKind::Inner && (inner_only || k == 0) {
                if let Some(f) = &filter {
                    split_and(f, &mut conj);
                }
            }
            if let Some(on) = &sources[k].on {
                split_and(on, &mut conj);
            }
            let (off, w) = (sources[k].offset, sources[k].width);
            if let SourceKind::Table { table, .. } = sources[k].kind {
                let acc = choose_access(&self.cat.tables[table], &conj, off, w);
                if let SourceKind::Table { access, .. } = &mut sources[k].kind {
                    *access = acc;
                }
            }
        }
        Ok(Select {
            sources,
            width,
            filter,
            agg: agg_plan,
            having,
            proj,
            distinct,
            order,
            limit,
            offset,
            columns,
        })
    }

    fn resolve_output_ref(
        &self,
        e: &ast::Expr,
        items: &[(ast::Expr, String)],
    ) -> Result<ast::Expr> {
        match e {
            ast::Expr::Value(v) => {
                if let ast::Value::Number(n, _) = &v.value {
                    let k: usize = n.parse().map_err(|_| SqlError::Resolve {
                        pos: span_pos(&v.span),
                        msg: format!("invalid position {n}"),
                    })?;
                    return match items.get(k.wrapping_sub(1)) {
                        Some((x, _)) => Ok(x.clone()),
                        None => resolve_err(
                            span_pos(&v.span),
                            format!("position {k} is not in select list"),
                        ),
                    };
                }
                Ok(e.clone())
            }
            ast::Expr::Identifier(i) => {
                let n = lc(i);
                let is_col = self
                    .scopes
                    .last()
                    .is_some_and(|s| s.cols.iter().any(|c| c.name == n));
                if !is_col {
                    if let Some((x, _)) = items.iter().find(|(_, name)| *name == n) {
                        return Ok(x.clone());
                    }
                }
                Ok(e.clone())
            }
            _ => Ok(e.clone()),
        }
    }

    fn returning(
        &mut self,
        ti: usize,
        items: &Option<Vec<ast::SelectItem>>,
    ) -> Result<Option<Returning>> {
        let Some(items) = items else { return Ok(None) };
        self.push_table_scope(ti, None);
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        let r = (|| -> Result<()> {
            for it in items {
                match it {
                    ast::SelectItem::UnnamedExpr(e) => {
                        let (c, t) = self.expr(e)?;
                        exprs.push(c);
                        columns.push((default_name(e), t));
                    }
                    ast::SelectItem::ExprWithAlias { expr, alias } => {
                        let (c, t) = self.expr(expr)?;
                        exprs.push(c);
                        columns.push((lc(alias), t));
                    }
                    ast::SelectItem::Wildcard(_) => {
                        for (i, col) in self.cat.tables[ti].columns.iter().enumerate() {
                            exprs.push(Expr::Col { depth: 0, idx: i });
                            columns.push((col.name.clone(), col.ty));
                        }
                    }
                    _ => return unsupported(self.pos, "qualified wildcard in RETURNING"),
                }
            }
            Ok(())
        })();
        self.scopes.pop();
        r?;
        Ok(Some(Returning { exprs, columns }))
    }

    /// Compiles a SQL statement (SELECT/INSERT/UPDATE/DELETE).
    pub fn statement(&mut self, s: &ast::Statement) -> Result<SqlPlan> {
        let pos = self.pos;
        match s {
            ast::Statement::Query(q) => Ok(SqlPlan::Select(Box::new(self.select(q)?))),
            ast::Statement::Insert(ins) => {
                let tn = match &ins.table {
                    ast::TableObject::TableName(n) => obj_name(n, pos)?,
                    _ => return unsupported(pos, "INSERT INTO FUNCTION"),
                };
                if ins.on.is_some() || ins.or.is_some() || !ins.assignments.is_empty() {
                    return unsupported(pos, "ON CONFLICT / INSERT OR / INSERT SET");
                }
                let Some(ti) = self.cat.table(&tn) else {
                    return resolve_err(pos, format!("relation \"{tn}\" does not exist"));
                };
                let t = &self.cat.tables[ti];
                let cols: Vec<usize> = if ins.columns.is_empty() {
                    (0..t.columns.len()).collect()
                } else {
                    let mut v = Vec::new();
                    for c in &ins.columns {
                        let n = lc(c);
                        match t.columns.iter().position(|x| x.name == n) {
                            Some(i) if !v.contains(&i) => v.push(i),
                            Some(_) => {
                                return resolve_err(
                                    span_pos(&c.span),
                                    format!("column \"{n}\" specified more than once"),
                                )
                            }
                            None => {
                                return resolve_err(
                                    span_pos(&c.span),
                                    format!("column \"{n}\" of relation \"{tn}\" does not exist"),
                                )
                            }
                        }
                    }
                    v
                };
                let Some(src) = &ins.source else {
                    return unsupported(pos, "INSERT without VALUES or SELECT");
                };
                let source = match src.body.as_ref() {
                    ast::SetExpr::Values(vals) => {
                        let mut rows = Vec::new();
                        for row in &vals.rows {
                            if row.len() != cols.len() {
                                return resolve_err(
                                    pos,
                                    format!(
                                        "INSERT has {} expressions but {} target columns",
                                        row.len(),
                                        cols.len()
                                    ),
                                );
                            }
                            let mut r = Vec::new();
                            for (k, e) in row.iter().enumerate() {
                                let (c, ty) = self.expr(e)?;
                                let cty = self.cat.tables[ti].columns[cols[k]].ty;
                                if class(ty) != class(cty)
                                    && class(ty) != Class::Any
                                    && !is_text_literal(&c)
                                {
                                    return resolve_err(self.expr_pos(e), format!("column \"{}\" is of type {cty} but expression is of type {ty}", self.cat.tables[ti].columns[cols[k]].name));
                                }
                                r.push(c);
                            }
                            rows.push(r);
                        }
                        InsertSource::Values(rows)
                    }
                    _ => {
                        let q = self.select(src)?;
                        if q.columns.len() != cols.len() {
                            return resolve_err(
                                pos,
                                format!(
                                    "INSERT has {} expressions but {} target columns",
                                    q.columns.len(),
                                    cols.len()
                                ),
                            );
                        }
                        InsertSource::Query(Box::new(q))
                    }
                };
                let returning = self.returning(ti, &ins.returning)?;
                Ok(SqlPlan::Insert {
                    table: ti,
                    cols,
                    source,
                    returning,
                })
            }
            ast::Statement::Update {
                table,
                assignments,
                from,
                selection,
                returning,
                or,
                limit,
            } => {
                if from.is_some() || or.is_some() || limit.is_some() || !table.joins.is_empty() {
                    return unsupported(pos, "UPDATE … FROM / LIMIT / joins");
                }
                let (ti, alias) = self.dml_table(&table.relation)?;
                self.push_table_scope(ti, alias);
                let r = (|| -> Result<UpdateParts> {
                    let mut sets = Vec::new();
                    for a in assignments {
                        let n = match &a.target {
                            ast::AssignmentTarget::ColumnName(n) => match n.0.last() {
                                Some(ast::ObjectNamePart::Identifier(i)) => lc(i),
                                _ => return unsupported(pos, "assignment target"),
                            },
                            _ => return unsupported(pos, "tuple assignment"),
                        };
                        let t = &self.cat.tables[ti];
                        let Some(ci) = t.columns.iter().position(|c| c.name == n) else {
                            return resolve_err(
                                pos,
                                format!("column \"{n}\" of relation \"{}\" does not exist", t.name),
                            );
                        };
                        let (e, ty) = self.expr(&a.value)?;
                        let cty = self.cat.tables[ti].columns[ci].ty;
                        if class(ty) != class(cty)
                            && class(ty) != Class::Any
                            && !is_text_literal(&e)
                        {
                            return resolve_err(self.expr_pos(&a.value), format!("column \"{n}\" is of type {cty} but expression is of type {ty}"));
                        }
                        sets.push((ci, e));
                    }
                    let filter = match selection {
                        Some(w) => {
                            let (e, t) = self.expr(w)?;
                            self.want_bool(t, pos)?;
                            Some(e)
                        }
                        None => None,
                    };
                    Ok((sets, filter))
                })();
                self.scopes.pop();
                let (sets, filter) = r?;
                let returning = self.returning(ti, returning)?;
                let access = self.dml_access(ti, &filter);
                Ok(SqlPlan::Update {
                    table: ti,
                    access,
                    filter,
                    sets,
                    returning,
                })
            }
            ast::Statement::Delete(d) => {
                let tables = match &d.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                if tables.len() != 1
                    || d.using.is_some()
                    || !d.tables.is_empty()
                    || d.limit.is_some()
                    || !d.order_by.is_empty()
                    || !tables[0].joins.is_empty()
                {
                    return unsupported(pos, "multi-table DELETE / USING / LIMIT");
                }
                let (ti, alias) = self.dml_table(&tables[0].relation)?;
                self.push_table_scope(ti, alias);
                let r = match &d.selection {
                    Some(w) => self.expr(w).map(|(e, t)| (Some(e), t)),
                    None => Ok((None, SqlType::Boolean)),
                };
                self.scopes.pop();
                let (filter, t) = r?;
                self.want_bool(t, pos)?;
                let returning = self.returning(ti, &d.returning)?;
                let access = self.dml_access(ti, &filter);
                Ok(SqlPlan::Delete {
                    table: ti,
                    access,
                    filter,
                    returning,
                })
            }
            _ => unsupported(
                pos,
                "only SELECT, INSERT, UPDATE and DELETE are allowed here",
            ),
        }
    }

    fn dml_table(&self, tf: &ast::TableFactor) -> Result<(usize, Option<String>)> {
        match tf {
            ast::TableFactor::Table { name, alias, .. } => {
                let tn = obj_name(name, self.pos)?;
                match self.cat.table(&tn) {
                    Some(ti) => Ok((ti, alias.as_ref().map(|a| lc(&a.name)))),
                    None => {
                        let p = name
                            .0
                            .first()
                            .and_then(|p| p.as_ident())
                            .map(|i| span_pos(&i.span))
                            .unwrap_or(self.pos);
                        resolve_err(p, format!("relation \"{tn}\" does not exist"))
                    }
                }
            }
            _ => unsupported(self.pos, "DML on a derived table"),
        }
    }

    fn dml_access(&self, ti: usize, filter: &Option<Expr>) -> Access {
        let mut conj = Vec::new();
        if let Some(f) = filter {
            split_and(f, &mut conj);
        }
        let t = &self.cat.tables[ti];
        choose_access(t, &conj, 0, t.columns.len())
    }
}

fn split_and<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    if let Expr::And(a, b) = e {
        split_and(a, out);
        split_and(b, out);
    } else {
        out.push(e);
    }
}

fn choose_access(t: &Table, conj: &[&Expr], off: usize, w: usize) -> Access {
    // column (relative) -> driving expression
    let mut eq: HashMap<usize, Expr> = HashMap::new();
    for c in conj {
        if let Expr::Cmp(CmpOp::Eq, a, b) = c {
            for (x, y) in [(a, b), (b, a)] {
                if let Expr::Col { depth: 0, idx } = **x {
                    if idx >= off && idx < off + w {
                        let ok = match y.max_local_col() {
                            None => true,
                            Some(m) => m < off,
                        };
                        let no_sub =
                            !matches!(**y, Expr::InSub(..) | Expr::Exists(..) | Expr::ScalarSub(_));
                        if ok && no_sub && has_no_subquery(y) {
                            eq.entry(idx - off).or_insert_with(|| (**y).clone());
                        }
                    }
                }
            }
        }
    }
    if !t.pk.is_empty() && t.pk.iter().all(|c| eq.contains_key(c)) {
        return Access::Pk(t.pk.iter().filter_map(|c| eq.get(c).cloned()).collect());
    }
    let mut best: Option<(usize, bool)> = None;
    for (k, ix) in t.indexes.iter().enumerate() {
        if ix.cols.iter().all(|c| eq.contains_key(c)) && best.is_none_or(|(_, u)| !u && ix.unique) {
            best = Some((k, ix.unique));
        }
    }
    match best {
        Some((k, _)) => Access::Index(
            k,
            t.indexes[k]
                .cols
                .iter()
                .filter_map(|c| eq.get(c).cloned())
                .collect(),
        ),
        None => Access::Scan,
    }
}

fn has_no_subquery(e: &Expr) -> bool {
    // Row-independence at depth 0 is checked by the caller; subqueries are
    // excluded to keep lookups cheap and simple.
    let mut ok = true;
    let _ = e.is_row_independent();
    if let Expr::InSub(..) | Expr::Exists(..) | Expr::ScalarSub(_) = e {
        ok = false;
    }
    ok
}

/// Casts an integer-typed branch to NUMERIC when the common type is NUMERIC.
fn widen(e: Expr, t: SqlType, common: SqlType) -> Expr {
    match (t, common) {
        (SqlType::BigInt | SqlType::Integer, SqlType::Numeric(_)) => match e {
            Expr::Const(Value::Int(i)) => Expr::Const(Value::Num(Decimal::from_i64(i))),
            e => Expr::Cast(Box::new(e), SqlType::Numeric(None)),
        },
        _ => e,
    }
}

fn unify(a: SqlType, b: SqlType, pos: Pos) -> Result<SqlType> {
    match (class(a), class(b)) {
        (Class::Any, _) => Ok(b),
        (_, Class::Any) => Ok(a),
        (x, y) if x == y => Ok(if x == Class::Num { num_type(a, b) } else { a }),
        _ => resolve_err(pos, format!("types {a} and {b} cannot be matched")),
    }
}

fn default_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(i) => lc(i),
        ast::Expr::CompoundIdentifier(v) => v.last().map(lc).unwrap_or_default(),
        ast::Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(lc)
            .unwrap_or_else(|| "?column?".into()),
        ast::Expr::Cast { expr, .. } | ast::Expr::Nested(expr) => default_name(expr),
        ast::Expr::Case { .. } => "case".into(),
        ast::Expr::Exists { .. } => "exists".into(),
        _ => "?column?".into(),
    }
}

fn literal(v: &ast::Value, pos: Pos) -> Result<(Expr, SqlType)> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                (Expr::Const(Value::Int(i)), SqlType::BigInt)
            } else {
                let d = Decimal::parse(n).map_err(|_| SqlError::Resolve {
                    pos,
                    msg: format!("invalid number {n}"),
                })?;
                (Expr::Const(Value::Num(d)), SqlType::Numeric(None))
            }
        }
        ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => {
            (Expr::Const(Value::Text(s.clone())), SqlType::Unknown)
        }
        ast::Value::Boolean(b) => (Expr::Const(Value::Bool(*b)), SqlType::Boolean),
        ast::Value::Null => (Expr::Const(Value::Null), SqlType::Unknown),
        ast::Value::HexStringLiteral(h) => (
            Expr::Const(Value::Text(format!("\\x{h}")).cast(&SqlType::Bytea)?),
            SqlType::Bytea,
        ),
        other => return unsupported(pos, format!("literal {other}")),
    })
}

// ------------------------------------------------------------ functions ---

fn compile_function(cat: &Catalog, f: &FuncDef) -> Result<Function> {
    let mut env = VarEnv::default();
    env.scopes.push(HashMap::new());
    env.declare("found", SqlType::Boolean, true);
    for (n, t, p) in &f.params {
        if env.scopes.last().is_some_and(|s| s.contains_key(n)) {
            return resolve_err(*p, format!("parameter name \"{n}\" used more than once"));
        }
        env.declare(n, *t, false);
    }
    let mut c = Compiler::new(cat, Some(env), true, f.pos);
    let body = c.block(&f.body, f.pos)?;
    let slots = c.vars.map(|v| v.slots).unwrap_or_default();
    Ok(Function {
        name: f.name.clone(),
        params: f.params.iter().map(|(n, t, _)| (n.clone(), *t)).collect(),
        returns: f.returns,
        slots,
        body,
        pos: f.pos,
    })
}

fn st(cost: u64, kind: StmtKind) -> Stmt {
    Stmt { cost, kind }
}

impl Compiler<'_> {
    fn vars_mut(&mut self) -> Result<&mut VarEnv> {
        let pos = self.pos;
        self.vars.as_mut().ok_or(SqlError::Resolve {
            pos,
            msg: "no variables here".into(),
        })
    }

    fn block(&mut self, b: &Block, pos: Pos) -> Result<Vec<Stmt>> {
        self.vars_mut()?.scopes.push(HashMap::new());
        let r = (|| -> Result<Vec<Stmt>> {
            let mut out = Vec::new();
            let mut inits = Vec::new();
            let mut cost = 1;
            for d in &b.decls {
                self.pos = d.pos;
                let def = match &d.default {
                    Some(e) => {
                        let (x, _) = self.expr(e)?;
                        cost += x.size();
                        Some(x)
                    }
                    None => None,
                };
                if d.constant && def.is_none() {
                    return resolve_err(
                        d.pos,
                        format!("constant \"{}\" must have a default value", d.name),
                    );
                }
                let v = self.vars_mut()?;
                if v.scopes.last().is_some_and(|s| s.contains_key(&d.name)) {
                    return resolve_err(d.pos, format!("variable \"{}\" declared twice", d.name));
                }
                let slot = v.declare(&d.name, d.ty, d.constant);
                inits.push((slot, def));
            }
            if !inits.is_empty() {
                out.push(st(cost, StmtKind::Init(inits)));
            }
            for s in &b.stmts {
                out.push(self.pstmt(s)?);
            }
            Ok(out)
        })();
        let _ = pos;
        if let Some(v) = self.vars.as_mut() {
            v.scopes.pop();
        }
        r
    }

    fn stmts(&mut self, v: &[PStmt]) -> Result<Vec<Stmt>> {
        v.iter().map(|s| self.pstmt(s)).collect()
    }

    fn assign_target(&self, name: &str, pos: Pos) -> Result<usize> {
        let Some(v) = self.vars.as_ref() else {
            return resolve_err(pos, "no variables here");
        };
        match v.lookup(name) {
            Some(s) if v.constants[s] => {
                resolve_err(pos, format!("variable \"{name}\" is declared CONSTANT"))
            }
            Some(s) => Ok(s),
            None => resolve_err(pos, format!("variable \"{name}\" does not exist")),
        }
    }

    fn bool_expr(&mut self, e: &ast::Expr) -> Result<Expr> {
        let pos = self.expr_pos(e);
        let (x, t) = self.expr(e)?;
        self.want_bool(t, pos)?;
        Ok(x)
    }

    fn pstmt(&mut self, s: &PStmt) -> Result<Stmt> {
        match s {
            PStmt::Assign { target, expr, pos } => {
                self.pos = *pos;
                let slot = self.assign_target(&target.join("."), *pos)?;
                let (e, t) = self.expr(expr)?;
                let vt = self
                    .vars
                    .as_ref()
                    .map(|v| v.slots[slot])
                    .unwrap_or(SqlType::Unknown);
                if class(t) != class(vt)
                    && class(t) != Class::Any
                    && class(vt) != Class::Any
                    && !is_text_literal(&e)
                {
                    return resolve_err(
                        *pos,
                        format!(
                            "cannot assign {t} to variable \"{}\" of type {vt}",
                            target.join(".")
                        ),
                    );
                }
                Ok(st(1 + e.size(), StmtKind::Assign(slot, e)))
            }
            PStmt::Sql {
                stmt,
                into,
                strict,
                pos,
            } => {
                self.pos = *pos;
                let plan = self.statement(stmt)?;
                let ncols = match &plan {
                    SqlPlan::Select(q) => Some(q.columns.len()),
                    SqlPlan::Insert { returning, .. }
                    | SqlPlan::Update { returning, .. }
                    | SqlPlan::Delete { returning, .. } => {
                        returning.as_ref().map(|r| r.exprs.len())
                    }
                };
                let mut slots = Vec::new();
                for (n, p) in into {
                    slots.push(self.assign_target(n, *p)?);
                }
                if !into.is_empty() && ncols != Some(into.len()) {
                    return resolve_err(
                        *pos,
                        format!(
                            "INTO has {} targets but the statement returns {} columns",
                            into.len(),
                            ncols.unwrap_or(0)
                        ),
                    );
                }
                if into.is_empty() && matches!(plan, SqlPlan::Select(_)) && !is_perform(stmt) {
                    // a bare SELECT in a function discards its rows (like PERFORM)
                }
                let cost = gas::SQL_BASE + plan_size(&plan);
                Ok(st(cost, StmtKind::Sql(Box::new(plan), slots, *strict)))
            }
            PStmt::If {
                branches,
                else_,
                pos,
            } => {
                self.pos = *pos;
                let mut bs = Vec::new();
                let mut cost = 1;
                for (c, body) in branches {
                    let ce = self.bool_expr(c)?;
                    cost += ce.size();
                    let b = self.stmts(body)?;
                    bs.push((ce, b));
                }
                let e = self.stmts(else_)?;
                Ok(st(cost, StmtKind::If(bs, e)))
            }
            PStmt::Loop {
                label,
                kind,
                body,
                pos,
            } => {
                self.pos = *pos;
                let id = self.next_loop;
                self.next_loop += 1;
                if let Some(l) = label {
                    if self.loops.iter().any(|(x, _)| x.as_deref() == Some(l)) {
                        return resolve_err(*pos, format!("label \"{l}\" already in use"));
                    }
                }
                let (plan, scoped, cost) = match kind {
                    LoopKind::Plain => (LoopPlan::Plain, false, 1),
                    LoopKind::While(c) => {
                        let ce = self.bool_expr(c)?;
                        let cost = 1 + ce.size();
                        (LoopPlan::While(ce), false, cost)
                    }
                    LoopKind::Range {
                        var,
                        lo,
                        hi,
                        by,
                        reverse,
                    } => {
                        let (l, tl) = self.expr(lo)?;
                        let (h, th) = self.expr(hi)?;
                        let b = match by {
                            Some(b) => Some(self.expr(b)?),
                            None => None,
                        };
                        for t in [Some(tl), Some(th), b.as_ref().map(|x| x.1)]
                            .into_iter()
                            .flatten()
                        {
                            if !matches!(class(t), Class::Num | Class::Any) {
                                return resolve_err(*pos, "FOR loop bounds must be integers");
                            }
                        }
                        let cost =
                            1 + l.size() + h.size() + b.as_ref().map(|x| x.0.size()).unwrap_or(0);
                        let v = self.vars_mut()?;
                        v.scopes.push(HashMap::new());
                        let slot = v.declare(var, SqlType::BigInt, false);
                        (
                            LoopPlan::Range {
                                var: slot,
                                lo: l,
                                hi: h,
                                by: b.map(|x| x.0),
                                reverse: *reverse,
                            },
                            true,
                            cost,
                        )
                    }
                    LoopKind::Query { var, query } => {
                        let q = self.select(query)?;
                        let cost = gas::SQL_BASE + select_size(&q);
                        let v = self.vars_mut()?;
                        v.scopes.push(HashMap::new());
                        let mut slots = Vec::new();
                        for (n, t) in &q.columns {
                            slots.push(v.declare(&format!("{var}.{n}"), *t, false));
                        }
                        (
                            LoopPlan::Query {
                                slots,
                                query: Box::new(q),
                            },
                            true,
                            cost,
                        )
                    }
                };
                self.loops.push((label.clone(), id));
                let b = self.stmts(body);
                self.loops.pop();
                if scoped {
                    if let Some(v) = self.vars.as_mut() {
                        v.scopes.pop();
                    }
                }
                Ok(st(cost, StmtKind::Loop(id, plan, b?)))
            }
            PStmt::Exit {
                is_continue,
                label,
                cond,
                pos,
            } => {
                self.pos = *pos;
                let target = match label {
                    None => self.loops.last().map(|x| x.1),
                    Some(l) => self
                        .loops
                        .iter()
                        .rev()
                        .find(|x| x.0.as_deref() == Some(l))
                        .map(|x| x.1),
                };
                let Some(target) = target else {
                    let w = if *is_continue { "CONTINUE" } else { "EXIT" };
                    return resolve_err(
                        *pos,
                        match label {
                            Some(l) => {
                                format!("there is no label \"{l}\" attached to any enclosing loop")
                            }
                            None => format!("{w} cannot be used outside a loop"),
                        },
                    );
                };
                let c = match cond {
                    Some(c) => Some(self.bool_expr(c)?),
                    None => None,
                };
                let cost = 1 + c.as_ref().map(|x| x.size()).unwrap_or(0);
                Ok(st(cost, StmtKind::Exit(*is_continue, target, c)))
            }
            PStmt::Return(e, pos) => {
                self.pos = *pos;
                match e {
                    Some(e) => {
                        let (x, _) = self.expr(e)?;
                        Ok(st(1 + x.size(), StmtKind::Return(Some(x))))
                    }
                    None => Ok(st(1, StmtKind::Return(None))),
                }
            }
            PStmt::Raise {
                level,
                fmt,
                args,
                pos,
            } => {
                self.pos = *pos;
                let mut v = Vec::new();
                let mut cost = 1;
                for a in args {
                    let (x, _) = self.expr(a)?;
                    cost += x.size();
                    v.push(x);
                }
                Ok(st(
                    cost,
                    StmtKind::Raise(*level == RaiseLevel::Notice, fmt.clone(), v),
                ))
            }
            PStmt::Block(b, pos) => {
                let inner = self.block(b, *pos)?;
                Ok(st(
                    1,
                    StmtKind::If(vec![(Expr::Const(Value::Bool(true)), inner)], Vec::new()),
                ))
            }
            PStmt::Null => Ok(st(1, StmtKind::If(Vec::new(), Vec::new()))),
        }
    }
}

fn is_perform(_s: &ast::Statement) -> bool {
    true
}

/// Static size of a select's expressions (its fixed gas).
pub fn select_size(q: &Select) -> u64 {
    let mut n = 0;
    n += q.proj.iter().map(|e| e.size()).sum::<u64>();
    n += q.filter.as_ref().map(|e| e.size()).unwrap_or(0);
    n += q.sources.len() as u64;
    n
}

/// Static size of a statement plan.
pub fn plan_size(p: &SqlPlan) -> u64 {
    match p {
        SqlPlan::Select(q) => select_size(q),
        SqlPlan::Insert { source, .. } => match source {
            InsertSource::Values(rows) => rows.iter().flatten().map(|e| e.size()).sum(),
            InsertSource::Query(q) => select_size(q),
        },
        SqlPlan::Update { sets, filter, .. } => {
            sets.iter().map(|s| s.1.size()).sum::<u64>()
                + filter.as_ref().map(|e| e.size()).unwrap_or(0)
        }
        SqlPlan::Delete { filter, .. } => filter.as_ref().map(|e| e.size()).unwrap_or(0),
    }
}
