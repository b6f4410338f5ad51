//! Procedural code: a function's body compiled into statements — blocks and DECLAREs,
//! variable slots, assignment, IF/CASE, loops with EXIT/CONTINUE, SQL statements with INTO,
//! RETURN and RAISE.

use super::*;

pub(super) fn compile_function(cat: &Catalog, f: &FuncDef) -> Result<Function> {
    let mut env = VarEnv::default();
    env.scopes.push(HashMap::new());
    env.declare("found", SqlType::Boolean, true);
    for (n, t, p) in &f.params {
        if env.scopes.last().is_some_and(|s| s.contains_key(n)) {
            return resolve_err(*p, format!("parameter name \"{n}\" used more than once"));
        }
        env.declare(n, *t, false);
    }
    // the OUT/INOUT parameters and TABLE columns, in order (an INOUT one is the parameter's
    // own variable, declared above at the same position)
    let mut outs: Vec<(usize, SqlType)> = Vec::new();
    for (n, t, p) in &f.outs {
        let slot = match f.params.iter().position(|(pn, _, pp)| pn == n && pp == p) {
            Some(i) => i + 1,
            None => {
                if env.scopes.last().is_some_and(|s| s.contains_key(n)) {
                    return resolve_err(*p, format!("parameter name \"{n}\" used more than once"));
                }
                env.declare(n, *t, false)
            }
        };
        outs.push((slot, *t));
    }
    let (sig, shape) = signature(cat, f)?;
    let mode = match (f.set, outs.len()) {
        (true, _) => ResultMode::Set {
            types: shape
                .as_ref()
                .map(|s| s.columns.iter().map(|c| c.1).collect())
                .unwrap_or_default(),
            outs: outs.clone(),
            table: f.setof_table.is_some(),
        },
        (false, 0) => ResultMode::Value,
        (false, 1) => ResultMode::Out(outs[0].0),
        (false, _) => ResultMode::Record(outs.clone()),
    };
    let mut c = Compiler::new(cat, Some(env), true, f.pos);
    c.result = mode.clone();
    let mut body = c.block(&f.body, f.pos)?;
    match &mode {
        // falling off the end returns the OUT parameter(s)
        ResultMode::Out(s) => body.push(st(1, StmtKind::Return(Some(Expr::Var(*s))))),
        ResultMode::Record(outs) => body.push(record_return(outs)),
        ResultMode::Value | ResultMode::Set { .. } => {}
    }
    let slots = c.vars.map(|v| v.slots).unwrap_or_default();
    Ok(Function {
        name: f.name.clone(),
        params: f.params.iter().map(|(n, t, _)| (n.clone(), *t)).collect(),
        returns: if shape.is_some() {
            SqlType::Void
        } else {
            sig.returns
        },
        slots,
        body,
        pos: f.pos,
        rows: shape,
    })
}

/// A function's signature (what callers see) and, for one returning rows, their shape
/// (`RETURNS SETOF table`: the table's columns, which must exist in `cat`).
pub(super) fn signature(cat: &Catalog, f: &FuncDef) -> Result<(FuncSig, Option<RowShape>)> {
    for (_, t, p) in f.params.iter().chain(&f.outs) {
        check_type(cat, *t, *p)?;
    }
    check_type(cat, f.returns, f.pos)?;
    let table_cols = match &f.setof_table {
        Some(name) => {
            let Some(t) = cat.table(name).and_then(|ti| cat.tables.get(ti)) else {
                return resolve_err(f.pos, format!("type \"{name}\" does not exist"));
            };
            Some(
                t.columns
                    .iter()
                    .map(|c| (c.name.clone(), c.ty))
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let scalar_set = f.set && f.outs.is_empty() && table_cols.is_none();
    let shape = if let Some(columns) = table_cols {
        Some(RowShape { columns, set: true })
    } else if scalar_set {
        Some(RowShape {
            columns: vec![(f.name.clone(), f.returns)],
            set: true,
        })
    } else if f.set || f.outs.len() > 1 {
        Some(RowShape {
            columns: f.outs.iter().map(|(n, t, _)| (n.clone(), *t)).collect(),
            set: f.set,
        })
    } else {
        None
    };
    let returns = match &shape {
        Some(s) if !s.set => SqlType::Text(None),
        Some(_) => SqlType::Void,
        None => f.returns,
    };
    let column = match (f.outs.as_slice(), f.set) {
        ([(n, _, _)], false) => n.clone(),
        _ => f.name.clone(),
    };
    Ok((
        FuncSig {
            name: f.name.clone(),
            params: f.params.iter().map(|(n, t, _)| (n.clone(), *t)).collect(),
            returns,
            rows: shape.clone(),
            column,
            scalar_set,
        },
        shape,
    ))
}

/// The end (or a bare RETURN) of a record function: its OUT parameters as the one row, then
/// RETURN.
fn record_return(outs: &[(usize, SqlType)]) -> Stmt {
    let row = outs.iter().map(|(s, t)| (Expr::Var(*s), *t)).collect();
    st(
        1,
        StmtKind::If(
            vec![(
                Expr::Const(Value::Bool(true)),
                vec![
                    st(1, StmtKind::ReturnNext(row)),
                    st(0, StmtKind::Return(None)),
                ],
            )],
            Vec::new(),
        ),
    )
}

pub(super) fn st(cost: u64, kind: StmtKind) -> Stmt {
    Stmt { cost, kind }
}

impl Compiler<'_> {
    pub(super) fn vars_mut(&mut self) -> Result<&mut VarEnv> {
        let pos = self.pos;
        self.vars.as_mut().ok_or(SqlError::Resolve {
            pos,
            msg: "no variables here".into(),
        })
    }

    pub(super) fn block(&mut self, b: &Block, pos: Pos) -> Result<Vec<Stmt>> {
        self.vars_mut()?.scopes.push(HashMap::new());
        let r = (|| -> Result<Vec<Stmt>> {
            let mut out = Vec::new();
            let mut inits = Vec::new();
            let mut cost = 1;
            for d in &b.decls {
                self.pos = d.pos;
                self.check_type(d.ty, d.pos)?;
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
            if b.handlers.is_empty() {
                for s in &b.stmts {
                    out.push(self.pstmt(s)?);
                }
                return Ok(out);
            }
            // declarations initialise outside the guarded part (an error there is not
            // caught by the block's own handlers, as in PostgreSQL)
            let mut body = Vec::new();
            for s in &b.stmts {
                body.push(self.pstmt(s)?);
            }
            let mut handlers = Vec::new();
            for h in &b.handlers {
                for c in &h.conditions {
                    let known = match c.strip_prefix("sqlstate:") {
                        Some(code) => crate::interp::valid_sqlstate(code),
                        None => crate::interp::CONDITIONS.contains(&c.as_str()),
                    };
                    if !known {
                        return resolve_err(
                            h.pos,
                            match c.strip_prefix("sqlstate:") {
                                Some(code) => format!("invalid SQLSTATE code \"{code}\""),
                                None => format!("unrecognized exception condition \"{c}\""),
                            },
                        );
                    }
                }
                // the handler's own SQLSTATE and SQLERRM (as PL/pgSQL's)
                let v = self.vars_mut()?;
                v.scopes.push(HashMap::new());
                let state = (
                    v.declare("sqlstate", SqlType::Text(None), false),
                    v.declare("sqlerrm", SqlType::Text(None), false),
                );
                let mut hs = Vec::new();
                let r = (|| -> Result<()> {
                    for s in &h.stmts {
                        hs.push(self.pstmt(s)?);
                    }
                    Ok(())
                })();
                if let Some(v) = self.vars.as_mut() {
                    v.scopes.pop();
                }
                r?;
                handlers.push(Handler {
                    conds: h.conditions.clone(),
                    state,
                    body: hs,
                });
            }
            out.push(st(1, StmtKind::Guarded(body, handlers)));
            Ok(out)
        })();
        let _ = pos;
        if let Some(v) = self.vars.as_mut() {
            v.scopes.pop();
        }
        r
    }

    pub(super) fn stmts(&mut self, v: &[PStmt]) -> Result<Vec<Stmt>> {
        v.iter().map(|s| self.pstmt(s)).collect()
    }

    pub(super) fn assign_target(&self, name: &str, pos: Pos) -> Result<usize> {
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

    pub(super) fn bool_expr(&mut self, e: &ast::Expr) -> Result<Expr> {
        let pos = self.expr_pos(e);
        let (x, t) = self.expr(e)?;
        self.want_bool(t, pos)?;
        Ok(x)
    }

    pub(super) fn pstmt(&mut self, s: &PStmt) -> Result<Stmt> {
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
                    LoopKind::ForEach { var, array } => {
                        self.arrays_allowed(SqlError::Parse {
                            pos: *pos,
                            msg: "FOREACH is not supported: AergoSQL has no array types".into(),
                        })?;
                        let (a, ta) = self.expr(array)?;
                        let slot = self.assign_target(var, *pos)?;
                        let vt = self
                            .vars
                            .as_ref()
                            .map(|v| v.slots[slot])
                            .unwrap_or(SqlType::Unknown);
                        let SqlType::Array(_) = ta else {
                            return resolve_err(
                                *pos,
                                format!("FOREACH expression must yield an array, not type {ta}"),
                            );
                        };
                        // an element is assigned as `x := a[i]` would be (cast to the
                        // variable's type); an array variable would need SLICE
                        if class(vt) == Class::Array {
                            return unsupported(
                                *pos,
                                format!(
                                    "FOREACH into the array variable \"{var}\" (that is \
                                     FOREACH … SLICE, arrays have one dimension here)"
                                ),
                            );
                        }
                        let cost = 1 + a.size();
                        (
                            LoopPlan::ForEach {
                                var: slot,
                                array: a,
                            },
                            false,
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
                match (e, &self.result) {
                    (Some(_), ResultMode::Out(_) | ResultMode::Record(_)) => resolve_err(
                        *pos,
                        "RETURN cannot have a parameter in function with OUT parameters",
                    ),
                    (Some(_), ResultMode::Set { .. }) => resolve_err(
                        *pos,
                        "RETURN cannot have a parameter in function returning set; use RETURN \
                         NEXT or RETURN QUERY",
                    ),
                    (None, ResultMode::Out(s)) => Ok(st(1, StmtKind::Return(Some(Expr::Var(*s))))),
                    (None, ResultMode::Record(outs)) => Ok(record_return(&outs.clone())),
                    (None, ResultMode::Set { .. }) => Ok(st(1, StmtKind::Return(None))),
                    (e, ResultMode::Value) => match e {
                        Some(e) => {
                            let (x, _) = self.expr(e)?;
                            Ok(st(1 + x.size(), StmtKind::Return(Some(x))))
                        }
                        None => Ok(st(1, StmtKind::Return(None))),
                    },
                }
            }
            PStmt::ReturnNext(e, pos) => {
                self.pos = *pos;
                let ResultMode::Set { outs, types, table } = self.result.clone() else {
                    return resolve_err(*pos, "cannot use RETURN NEXT in a non-SETOF function");
                };
                if table {
                    return unsupported(
                        *pos,
                        "RETURN NEXT in a function returning SETOF a table needs a row \
                         variable, and AergoSQL has no record variables: use RETURN QUERY",
                    );
                }
                match (e, outs.is_empty()) {
                    (Some(_), false) => resolve_err(
                        *pos,
                        "RETURN NEXT cannot have a parameter in function with OUT parameters",
                    ),
                    (None, true) => resolve_err(*pos, "RETURN NEXT must have a parameter"),
                    (None, false) => {
                        let row = outs.iter().map(|(s, t)| (Expr::Var(*s), *t)).collect();
                        Ok(st(1, StmtKind::ReturnNext(row)))
                    }
                    (Some(e), true) => {
                        let (x, _) = self.expr(e)?;
                        let ty = types.first().copied().unwrap_or(SqlType::Unknown);
                        Ok(st(1 + x.size(), StmtKind::ReturnNext(vec![(x, ty)])))
                    }
                }
            }
            PStmt::ReturnQuery(q, pos) => {
                self.pos = *pos;
                let ResultMode::Set { types, .. } = self.result.clone() else {
                    return resolve_err(*pos, "cannot use RETURN QUERY in a non-SETOF function");
                };
                let q = self.select(q)?;
                if q.columns.len() != types.len() {
                    return resolve_err(
                        *pos,
                        format!(
                            "structure of query does not match function result type: the \
                             query returns {} columns, the function {}",
                            q.columns.len(),
                            types.len()
                        ),
                    );
                }
                let cost = gas::SQL_BASE + select_size(&q);
                Ok(st(cost, StmtKind::ReturnQuery(Box::new(q), types)))
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

pub(super) fn is_perform(_s: &ast::Statement) -> bool {
    true
}
