//! Queries and DML: SELECT (joins, grouping, ordering, limits, output names), subqueries,
//! INSERT/UPDATE/DELETE with RETURNING, the access path of a filter (primary key, index or
//! scan), and the static size of a plan (its fixed gas).

use super::*;

impl<'a> Compiler<'a> {
    pub(super) fn subquery(&mut self, q: &ast::Query) -> Result<Select> {
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
        if q.fetch.is_some() || !q.locks.is_empty() {
            return unsupported(pos, "FETCH and locking clauses");
        }
        if let Some(w) = &q.with {
            return self.with_query(q, w);
        }
        let sel = match q.body.as_ref() {
            ast::SetExpr::Select(s) => s,
            ast::SetExpr::Query(inner) if q.order_by.is_none() && q.limit_clause.is_none() => {
                return self.select(inner)
            }
            ast::SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => return self.set_operation(q, *op, *set_quantifier, left, right),
            _ => return unsupported(pos, "VALUES as a query"),
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
                // a contract function call: `f(…)`, or `LATERAL f(…)` (the same: function calls
                // in FROM read earlier items anyway, as in PostgreSQL)
                let call = match tf {
                    ast::TableFactor::Table {
                        name,
                        alias,
                        args: Some(targs),
                        with_ordinality,
                        ..
                    } => {
                        if *with_ordinality {
                            return unsupported(pos, "WITH ORDINALITY");
                        }
                        Some((name, targs.args.as_slice(), alias))
                    }
                    ast::TableFactor::Function {
                        name, args, alias, ..
                    } => Some((name, args.as_slice(), alias)),
                    _ => None,
                };
                match tf {
                    _ if call.is_some() => {
                        let Some((name, fargs, alias)) = call else {
                            return unsupported(pos, "this kind of FROM item");
                        };
                        let (kind_, cols) = self.function_source(name, fargs, &scope, pos)?;
                        let an = alias.as_ref().map(|a| lc(&a.name));
                        let single = cols.len() == 1;
                        for (k, (n, t)) in cols.iter().enumerate() {
                            // `FROM f() AS x` names a one-column result `x`, as PostgreSQL
                            let n = match alias.as_ref() {
                                Some(a) if a.columns.get(k).is_some() => {
                                    a.columns.get(k).map(|c| lc(&c.name)).unwrap_or_default()
                                }
                                Some(a) if single && !sets_rows(self.cat, &kind_) => lc(&a.name),
                                _ => n.clone(),
                            };
                            scope.cols.push(ScopeCol {
                                table: Some(
                                    an.clone()
                                        .unwrap_or_else(|| obj_name(name, pos).unwrap_or_default()),
                                ),
                                name: n,
                                ty: *t,
                            });
                        }
                        sources.push(Source {
                            kind: kind_,
                            join: kind,
                            on: None,
                            offset,
                            width: cols.len(),
                        });
                    }
                    ast::TableFactor::Table { name, alias, .. } => {
                        let tn = obj_name(name, pos)?;
                        if let Some(q) = self.named_query(&tn, pos)? {
                            let an = alias.as_ref().map(|a| lc(&a.name)).unwrap_or(tn);
                            for (k, (n, t)) in q.columns.iter().enumerate() {
                                let n = alias
                                    .as_ref()
                                    .and_then(|a| a.columns.get(k))
                                    .map(|c| lc(&c.name))
                                    .unwrap_or_else(|| n.clone());
                                scope.cols.push(ScopeCol {
                                    table: Some(an.clone()),
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
                            on_asts.push(on);
                            continue;
                        }
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
                    ast::TableFactor::UNNEST {
                        alias,
                        array_exprs,
                        with_offset,
                        with_ordinality,
                        ..
                    } => {
                        self.arrays_allowed(SqlError::Unsupported {
                            pos,
                            msg: "this kind of FROM item".into(),
                        })?;
                        if *with_offset || *with_ordinality {
                            return unsupported(pos, "unnest(…) WITH ORDINALITY");
                        }
                        let [arg] = array_exprs.as_slice() else {
                            return unsupported(pos, "unnest() of several arrays");
                        };
                        // as a function's arguments: first without the earlier FROM items
                        let compile = |this: &mut Self, sc: Scope| {
                            this.scopes.push(sc);
                            let r = this.expr(arg);
                            this.scopes.pop();
                            r
                        };
                        let (a, ta) = match compile(self, Scope::default()) {
                            Ok(x) => x,
                            Err(first) => match compile(self, scope.clone()) {
                                Ok(x) => x,
                                Err(_) => return Err(first),
                            },
                        };
                        let SqlType::Array(elem) = ta else {
                            return resolve_err(
                                pos,
                                format!("function unnest({}) does not exist", ta.pg_name()),
                            );
                        };
                        let an = alias.as_ref().map(|a| lc(&a.name));
                        let col = alias
                            .as_ref()
                            .map(|a| {
                                a.columns
                                    .first()
                                    .map(|c| lc(&c.name))
                                    .unwrap_or(lc(&a.name))
                            })
                            .unwrap_or_else(|| "unnest".into());
                        scope.cols.push(ScopeCol {
                            table: Some(an.unwrap_or_else(|| "unnest".into())),
                            name: col,
                            ty: elem.ty(),
                        });
                        let lateral = a.reads_own_row();
                        sources.push(Source {
                            kind: SourceKind::Unnest { arg: a, lateral },
                            join: kind,
                            on: None,
                            offset,
                            width: 1,
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

    /// A contract function called in FROM: the source and its columns (a row-returning
    /// function's, else one column named after the OUT parameter or the function). The
    /// arguments are compiled in the scope of the FROM items before it (`before`: implicitly
    /// LATERAL, as PostgreSQL's function calls in FROM), besides variables and enclosing
    /// queries.
    fn function_source(
        &mut self,
        name: &ast::ObjectName,
        args: &[ast::FunctionArg],
        before: &Scope,
        pos: Pos,
    ) -> Result<(SourceKind, Vec<(String, SqlType)>)> {
        let fname = obj_name(name, pos)?;
        let Some(fi) = self.cat.func(&fname) else {
            return resolve_err(
                pos,
                format!(
                    "function {fname} does not exist (only contract functions may appear in FROM)"
                ),
            );
        };
        let sig = &self.cat.sigs[fi];
        if sig.params.len() != args.len() {
            return resolve_err(
                pos,
                format!(
                    "function {fname} takes {} arguments, got {}",
                    sig.params.len(),
                    args.len()
                ),
            );
        }
        let cols = match &sig.rows {
            Some(r) => r.columns.clone(),
            None if sig.returns == SqlType::Void => {
                return resolve_err(pos, format!("function {fname} returns no value"))
            }
            None => vec![(sig.column.clone(), sig.returns)],
        };
        // First without the earlier FROM items, as before LATERAL references were accepted:
        // arguments that compiled then keep their meaning (a name that is also a variable or
        // an enclosing query's column still reads that); only arguments that need an
        // earlier item (which failed to compile then) read it.
        let args = match self.function_args(args, Scope::default(), pos) {
            Ok(a) => a,
            Err(first) => match self.function_args(args, before.clone(), pos) {
                Ok(a) => a,
                Err(_) => return Err(first),
            },
        };
        let lateral = args.iter().any(Expr::reads_own_row);
        Ok((
            SourceKind::Function {
                func: fi,
                args,
                lateral,
            },
            cols,
        ))
    }

    /// The arguments of a function in FROM, compiled with `scope` as this query level's.
    fn function_args(
        &mut self,
        args: &[ast::FunctionArg],
        scope: Scope,
        pos: Pos,
    ) -> Result<Vec<Expr>> {
        self.scopes.push(scope);
        let r = (|| -> Result<Vec<Expr>> {
            let mut out = Vec::with_capacity(args.len());
            for a in args {
                match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                        out.push(self.expr(e)?.0)
                    }
                    _ => return unsupported(pos, "named or wildcard arguments in FROM"),
                }
            }
            Ok(out)
        })();
        self.scopes.pop();
        r
    }

    /// A WITH query or a view named `name` in FROM, compiled as a derived table.
    fn named_query(&mut self, name: &str, pos: Pos) -> Result<Option<Select>> {
        if let Some((_, q)) = self.ctes.iter().rev().find(|(n, _)| n == name) {
            if matches!(
                q.sources.first().map(|s| &s.kind),
                Some(SourceKind::WorkTable(_))
            ) {
                self.work_refs += 1;
            }
            return Ok(Some(q.clone()));
        }
        let Some(v) = self.cat.view(name).cloned() else {
            return Ok(None);
        };
        if self.expanding.contains(&v.name) || self.expanding.len() > 16 {
            return resolve_err(pos, format!("view \"{name}\" refers to itself"));
        }
        let stmt = parse::parse_single_statement(&v.sql)?;
        let ast::Statement::Query(vq) = stmt else {
            return resolve_err(pos, format!("view \"{name}\" is not a query"));
        };
        // a view sees no enclosing query, variables or WITH names of its user
        let saved_scopes = std::mem::take(&mut self.scopes);
        let saved_vars = self.vars.take();
        let saved_ctes = std::mem::take(&mut self.ctes);
        self.expanding.push(v.name.clone());
        let r = self.subquery(&vq);
        self.expanding.pop();
        self.scopes = saved_scopes;
        self.vars = saved_vars;
        self.ctes = saved_ctes;
        let mut q = r?;
        for (c, n) in q.columns.iter_mut().zip(&v.columns) {
            c.0 = n.clone();
        }
        // the view's columns are at depth 0 of its own query; it has no outer references,
        // so it runs the same wherever it is used
        Ok(Some(q))
    }

    /// `WITH name [(cols)] AS (query), … query`: each WITH query is compiled once and used as a
    /// derived table wherever its name appears in FROM (non-recursive only).
    fn with_query(&mut self, q: &ast::Query, w: &ast::With) -> Result<Select> {
        let pos = self.pos;
        let base = self.ctes.len();
        let r = (|| -> Result<Select> {
            for cte in &w.cte_tables {
                if cte.from.is_some() {
                    return unsupported(pos, "WITH … FROM");
                }
                let name = lc(&cte.alias.name);
                if self.ctes[base..].iter().any(|(n, _)| *n == name) {
                    return resolve_err(
                        pos,
                        format!("WITH query name \"{name}\" specified more than once"),
                    );
                }
                let mut sq = match (w.recursive, cte.query.body.as_ref()) {
                    (
                        true,
                        ast::SetExpr::SetOperation {
                            op: ast::SetOperator::Union,
                            set_quantifier,
                            left,
                            right,
                        },
                    ) if cte.query.order_by.is_none() && cte.query.limit_clause.is_none() => {
                        let all = match set_quantifier {
                            ast::SetQuantifier::All => true,
                            ast::SetQuantifier::Distinct | ast::SetQuantifier::None => false,
                            _ => return unsupported(pos, "UNION BY NAME"),
                        };
                        self.recursive_cte(&name, &cte.alias, &cte.query, left, right, all)?
                    }
                    _ => self.subquery(&cte.query)?,
                };
                if sq.reads_outer_columns() {
                    return unsupported(
                        pos,
                        "a WITH query that reads columns of an enclosing query",
                    );
                }
                if cte.alias.columns.len() > sq.columns.len() {
                    return resolve_err(
                        pos,
                        format!(
                            "WITH query \"{name}\" has {} columns available but {} columns specified",
                            sq.columns.len(),
                            cte.alias.columns.len()
                        ),
                    );
                }
                for (c, a) in sq.columns.iter_mut().zip(&cte.alias.columns) {
                    c.0 = lc(&a.name);
                }
                self.ctes.push((name, sq));
            }
            let mut body = q.clone();
            body.with = None;
            self.select(&body)
        })();
        self.ctes.truncate(base);
        r
    }

    /// One `WITH RECURSIVE name AS (anchor UNION [ALL] step)`; a step that does not read
    /// `name` makes it a plain UNION.
    fn recursive_cte(
        &mut self,
        name: &str,
        alias: &ast::TableAlias,
        q: &ast::Query,
        left: &ast::SetExpr,
        right: &ast::SetExpr,
        all: bool,
    ) -> Result<Select> {
        let pos = self.pos;
        let side = |this: &mut Self, e: &ast::SetExpr| -> Result<Select> {
            let mut sq = q.clone();
            sq.with = None;
            *sq.body = e.clone();
            this.subquery(&sq)
        };
        let anchor = side(self, left)?;
        let mut columns = anchor.columns.clone();
        for (c, a) in columns.iter_mut().zip(&alias.columns) {
            c.0 = lc(&a.name);
        }
        let width = columns.len();
        let id = self.next_work;
        self.next_work += 1;
        let cols_select = |kind: SourceKind, columns: &[(String, SqlType)]| Select {
            sources: vec![Source {
                kind,
                join: JoinKind::Inner,
                on: None,
                offset: 0,
                width,
            }],
            width,
            filter: None,
            agg: None,
            having: None,
            proj: (0..width).map(|idx| Expr::Col { depth: 0, idx }).collect(),
            distinct: false,
            order: Vec::new(),
            limit: None,
            offset: None,
            columns: columns.to_vec(),
        };
        self.ctes.push((
            name.to_string(),
            cols_select(SourceKind::WorkTable(id), &columns),
        ));
        let refs = self.work_refs;
        let step = side(self, right);
        self.ctes.pop();
        let mut step = step?;
        if self.work_refs == refs {
            // not recursive after all: a plain UNION
            let mut sq = q.clone();
            sq.with = None;
            return self.subquery(&sq);
        }
        if step.columns.len() != width {
            return resolve_err(pos, "each UNION query must have the same number of columns");
        }
        for (k, col) in columns.iter().enumerate() {
            let (at, st) = (col.1, step.columns[k].1);
            if unify(at, st, pos).is_err() {
                return resolve_err(
                    pos,
                    format!("recursive query \"{name}\" column {} has type {at} in its non-recursive term but type {st} overall", k + 1),
                );
            }
            let e = std::mem::replace(&mut step.proj[k], Expr::Const(Value::Null));
            step.proj[k] = widen(e, st, at);
        }
        Ok(cols_select(
            SourceKind::Recursive {
                id,
                all,
                anchor: Box::new(anchor),
                step: Box::new(step),
            },
            &columns,
        ))
    }

    /// `left UNION|INTERSECT|EXCEPT [ALL] right [ORDER BY …] [LIMIT …]`: a query over one
    /// source, the set operation, whose columns take the two sides' common types.
    fn set_operation(
        &mut self,
        q: &ast::Query,
        op: ast::SetOperator,
        quant: ast::SetQuantifier,
        left: &ast::SetExpr,
        right: &ast::SetExpr,
    ) -> Result<Select> {
        let pos = self.pos;
        let kind = match op {
            ast::SetOperator::Union => SetOpKind::Union,
            ast::SetOperator::Intersect => SetOpKind::Intersect,
            ast::SetOperator::Except | ast::SetOperator::Minus => SetOpKind::Except,
        };
        let all = match quant {
            ast::SetQuantifier::All => true,
            ast::SetQuantifier::Distinct | ast::SetQuantifier::None => false,
            _ => return unsupported(pos, "UNION BY NAME"),
        };
        let side = |this: &mut Self, e: &ast::SetExpr| -> Result<Select> {
            let mut sq = q.clone();
            sq.with = None;
            sq.order_by = None;
            sq.limit_clause = None;
            *sq.body = e.clone();
            this.subquery(&sq)
        };
        let mut l = side(self, left)?;
        let mut r = side(self, right)?;
        let name = match kind {
            SetOpKind::Union => "UNION",
            SetOpKind::Intersect => "INTERSECT",
            SetOpKind::Except => "EXCEPT",
        };
        if l.columns.len() != r.columns.len() {
            return resolve_err(
                pos,
                format!("each {name} query must have the same number of columns"),
            );
        }
        let mut columns = Vec::new();
        for k in 0..l.columns.len() {
            let (lt, rt) = (l.columns[k].1, r.columns[k].1);
            let ty = unify(lt, rt, pos).map_err(|_| SqlError::Resolve {
                pos,
                msg: format!("{name} types {lt} and {rt} cannot be matched"),
            })?;
            for (side, t) in [(&mut l, lt), (&mut r, rt)] {
                let e = std::mem::replace(&mut side.proj[k], Expr::Const(Value::Null));
                side.proj[k] = widen(e, t, ty);
                side.columns[k].1 = ty;
            }
            columns.push((l.columns[k].0.clone(), ty));
        }
        let width = columns.len();
        let scope = Scope {
            cols: columns
                .iter()
                .map(|(n, t)| ScopeCol {
                    table: None,
                    name: n.clone(),
                    ty: *t,
                })
                .collect(),
        };
        self.scopes.push(scope);
        let r2 = (|| -> Result<(OrderKeys, Option<Expr>, Option<Expr>)> {
            let mut order = Vec::new();
            if let Some(ob) = &q.order_by {
                let ast::OrderByKind::Expressions(v) = &ob.kind else {
                    return unsupported(pos, "ORDER BY ALL");
                };
                for o in v {
                    let e = match &o.expr {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::Number(n, _) => {
                                let k: usize = n.parse().unwrap_or(0);
                                if k == 0 || k > width {
                                    return resolve_err(
                                        pos,
                                        format!("ORDER BY position {n} is not in select list"),
                                    );
                                }
                                Expr::Col {
                                    depth: 0,
                                    idx: k - 1,
                                }
                            }
                            _ => self.expr(&o.expr)?.0,
                        },
                        e => self.expr(e)?.0,
                    };
                    let desc = o.options.asc == Some(false);
                    order.push((e, desc, o.options.nulls_first.unwrap_or(desc)));
                }
            }
            let (limit, offset) = match &q.limit_clause {
                None => (None, None),
                Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => (
                    match limit {
                        Some(l) => Some(self.expr(l)?.0),
                        None => None,
                    },
                    match offset {
                        Some(o) => Some(self.expr(&o.value)?.0),
                        None => None,
                    },
                ),
                Some(_) => return unsupported(pos, "LIMIT offset, count"),
            };
            Ok((order, limit, offset))
        })();
        self.scopes.pop();
        let (order, limit, offset) = r2?;
        Ok(Select {
            sources: vec![Source {
                kind: SourceKind::SetOp {
                    op: kind,
                    all,
                    left: Box::new(l),
                    right: Box::new(r),
                },
                join: JoinKind::Inner,
                on: None,
                offset: 0,
                width,
            }],
            width,
            filter: None,
            agg: None,
            having: None,
            proj: (0..width).map(|idx| Expr::Col { depth: 0, idx }).collect(),
            distinct: false,
            order,
            limit,
            offset,
            columns,
        })
    }

    pub(super) fn select_body(
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
                group_asts.push(self.resolve_output_ref(g, &items, false)?);
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
            let e = self.resolve_output_ref(&o.expr, &items, true)?;
            self.expr(&e)?;
        }
        let aggregating = self.saw_agg || !group_asts.is_empty() || sel.having.is_some();
        let mut agg_plan = None;
        if aggregating {
            let mut group_cols = Vec::new();
            let mut group_types = Vec::new();
            for g in &group_asts {
                let (e, t) = self.expr(g)?;
                group_cols.push(match e {
                    Expr::Col { depth: 0, idx } => Some(idx),
                    _ => None,
                });
                group_types.push(t);
            }
            self.agg = Some(AggState {
                groups: group_asts.clone(),
                group_cols,
                group_types,
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
            let e = self.resolve_output_ref(&o.expr, &items, true)?;
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

    pub(super) fn resolve_output_ref(
        &self,
        e: &ast::Expr,
        items: &[(ast::Expr, String)],
        prefer_output: bool,
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
                // GROUP BY: an input column wins over an output name; ORDER BY: the output
                // name wins (PostgreSQL's rules)
                let is_col = self
                    .scopes
                    .last()
                    .is_some_and(|s| s.cols.iter().any(|c| c.name == n));
                if prefer_output || !is_col {
                    if let Some((x, _)) = items.iter().find(|(_, name)| *name == n) {
                        return Ok(x.clone());
                    }
                }
                Ok(e.clone())
            }
            _ => Ok(e.clone()),
        }
    }

    pub(super) fn returning(
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
                if self.cat.view(&tn).is_some() && self.cat.table(&tn).is_none() {
                    return unsupported(
                        pos,
                        format!("cannot change view \"{tn}\": views are read-only in AergoSQL (write to its tables)"),
                    );
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

    pub(super) fn dml_table(&self, tf: &ast::TableFactor) -> Result<(usize, Option<String>)> {
        match tf {
            ast::TableFactor::Table { name, alias, .. } => {
                let tn = obj_name(name, self.pos)?;
                if self.cat.view(&tn).is_some() && self.cat.table(&tn).is_none() {
                    return unsupported(
                        self.pos,
                        format!("cannot change view \"{tn}\": views are read-only in AergoSQL (write to its tables)"),
                    );
                }
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

    pub(super) fn dml_access(&self, ti: usize, filter: &Option<Expr>) -> Access {
        let mut conj = Vec::new();
        if let Some(f) = filter {
            split_and(f, &mut conj);
        }
        let t = &self.cat.tables[ti];
        choose_access(t, &conj, 0, t.columns.len())
    }
}

pub(super) fn split_and<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    if let Expr::And(a, b) = e {
        split_and(a, out);
        split_and(b, out);
    } else {
        out.push(e);
    }
}

pub(super) fn choose_access(t: &Table, conj: &[&Expr], off: usize, w: usize) -> Access {
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
                        let no_sub = !matches!(
                            **y,
                            Expr::InSub(..)
                                | Expr::Exists(..)
                                | Expr::ScalarSub(_)
                                | Expr::Quantified(..)
                        );
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

pub(super) fn has_no_subquery(e: &Expr) -> bool {
    // Row-independence at depth 0 is checked by the caller; subqueries are
    // excluded to keep lookups cheap and simple.
    let mut ok = true;
    let _ = e.is_row_independent();
    if let Expr::InSub(..) | Expr::Exists(..) | Expr::ScalarSub(_) | Expr::Quantified(..) = e {
        ok = false;
    }
    ok
}

pub(super) fn default_name(e: &ast::Expr) -> String {
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

/// Static size of a select's expressions (its fixed gas).
pub fn select_size(q: &Select) -> u64 {
    let mut n = 0;
    n += q.proj.iter().map(|e| e.size()).sum::<u64>();
    n += q.filter.as_ref().map(|e| e.size()).unwrap_or(0);
    n += q.sources.len() as u64;
    for src in &q.sources {
        if let SourceKind::Function { args, .. } = &src.kind {
            n += args.iter().map(|e| e.size()).sum::<u64>();
        }
        if let SourceKind::Unnest { arg, .. } = &src.kind {
            n += arg.size();
        }
    }
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

/// Whether a FROM function source returns rows of its own shape (then an alias names the
/// table, not the one column).
fn sets_rows(cat: &Catalog, k: &SourceKind) -> bool {
    match k {
        SourceKind::Function { func, .. } => cat
            .sigs
            .get(*func)
            .is_some_and(|s| s.rows.as_ref().is_some_and(|r| !(r.set && s.scalar_set))),
        _ => false,
    }
}
