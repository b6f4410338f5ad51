//! A script's DDL applied to the [`Catalog`]: CREATE TABLE, ALTER TABLE … ADD COLUMN, CREATE
//! INDEX, and the function signatures and bodies a deploy or upgrade defines (bodies through
//! `procedural`); the script's DML is returned to run.

use super::*;

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
                ast::Statement::CreateView {
                    or_replace,
                    materialized,
                    name,
                    columns,
                    query,
                    if_not_exists,
                    temporary,
                    ..
                } => {
                    if *materialized || *temporary {
                        return unsupported(*pos, "MATERIALIZED or TEMPORARY views");
                    }
                    let vn = obj_name(name, *pos)?;
                    if cat.table(&vn).is_some() {
                        return resolve_err(*pos, format!("relation \"{vn}\" already exists"));
                    }
                    let exists = cat.view(&vn).is_some();
                    if exists && *if_not_exists {
                        continue;
                    }
                    if exists && !*or_replace {
                        return resolve_err(*pos, format!("relation \"{vn}\" already exists"));
                    }
                    let view = View {
                        name: vn.clone(),
                        sql: query.to_string(),
                        columns: columns.iter().map(|c| lc(&c.name)).collect(),
                    };
                    // the query must compile now (unknown names are deploy errors)
                    {
                        let mut probe = cat.clone();
                        probe.views.retain(|v| v.name != vn);
                        probe.views.push(view.clone());
                        let mut c = Compiler::new(&probe, None, false, *pos);
                        let q = c.select(query)?;
                        if view.columns.len() > q.columns.len() {
                            return resolve_err(*pos, "CREATE VIEW specifies more column names than columns");
                        }
                    }
                    cat.views.retain(|v| v.name != vn);
                    cat.views.push(view);
                }
                ast::Statement::Drop {
                    object_type: ast::ObjectType::View,
                    if_exists,
                    names,
                    ..
                } => {
                    for n in names {
                        let vn = obj_name(n, *pos)?;
                        if cat.view(&vn).is_none() {
                            if *if_exists {
                                continue;
                            }
                            return resolve_err(*pos, format!("view \"{vn}\" does not exist"));
                        }
                        cat.views.retain(|v| v.name != vn);
                    }
                }
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
                _ => return unsupported(*pos, "only CREATE TABLE, CREATE INDEX, CREATE VIEW, DROP VIEW, CREATE FUNCTION, INSERT, UPDATE and DELETE may appear in a contract script"),
            },
        }
    }
    let _ = upgrade;
    // pass 2: signatures (so functions may call each other in any order)
    for f in &new_funcs {
        let (sig, _) = super::procedural::signature(cat, f)?;
        match cat.func(&f.name) {
            Some(i) => {
                // callers compiled against the old signature must keep reading the same shape
                if cat.sigs[i].rows != sig.rows {
                    return resolve_err(
                        f.pos,
                        format!(
                            "cannot change return type of existing function {} (rows ↔ value)",
                            f.name
                        ),
                    );
                }
                cat.sigs[i] = sig
            }
            None => {
                cat.sigs.push(sig);
                cat.funcs.push(Function {
                    name: f.name.clone(),
                    params: Vec::new(),
                    returns: SqlType::Void,
                    slots: Vec::new(),
                    body: Vec::new(),
                    pos: f.pos,
                    rows: None,
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

pub(super) fn create_table(cat: &mut Catalog, ct: &ast::CreateTable, pos: Pos) -> Result<()> {
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
        let ty = column_type(cat, &cd.data_type, cpos)?;
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
pub(super) fn add_column(
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
    let ty = column_type(cat, &cd.data_type, cpos)?;
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

pub(super) fn create_index(cat: &mut Catalog, ci: &ast::CreateIndex, pos: Pos) -> Result<()> {
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

/// A column's type: any scalar type; arrays are refused (they live in variables,
/// parameters, results and expressions only).
fn column_type(cat: &Catalog, dt: &ast::DataType, pos: Pos) -> Result<SqlType> {
    let ty = convert_type(dt, pos)?;
    check_type(cat, ty, pos)?;
    if let SqlType::Array(_) = ty {
        return unsupported(
            pos,
            format!(
                "array columns ({ty}): arrays are values of variables, parameters and results \
                 only; store one row per element instead"
            ),
        );
    }
    Ok(ty)
}
