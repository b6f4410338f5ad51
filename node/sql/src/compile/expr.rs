//! Expressions: column and variable names in scope, operators and their types, built-in and
//! contract function calls, aggregates, literals, and the numeric widening and unification of
//! branch types.

use super::*;

pub(super) fn is_agg_name(n: &str) -> bool {
    matches!(
        n,
        "count" | "sum" | "min" | "max" | "avg" | "bool_and" | "bool_or" | "every" | "string_agg"
    )
}

/// Result type of arithmetic (PostgreSQL's operator resolution): REAL with REAL (or an
/// untyped operand) is REAL, any other mix with a float DOUBLE PRECISION.
pub(super) fn num_type(a: SqlType, b: SqlType) -> SqlType {
    match (a, b) {
        (SqlType::Real, SqlType::Real | SqlType::Unknown) | (SqlType::Unknown, SqlType::Real) => {
            SqlType::Real
        }
        (SqlType::Real | SqlType::Double, _) | (_, SqlType::Real | SqlType::Double) => {
            SqlType::Double
        }
        (SqlType::Numeric(_), _) | (_, SqlType::Numeric(_)) => SqlType::Numeric(None),
        (SqlType::Unknown, SqlType::Unknown) => SqlType::Unknown,
        _ => SqlType::BigInt,
    }
}

#[derive(PartialEq)]
pub(super) enum Class {
    Num,
    Text,
    Bool,
    Bytes,
    Ts,
    Array,
    Any,
}

pub(super) fn class(t: SqlType) -> Class {
    match t {
        SqlType::BigInt
        | SqlType::Integer
        | SqlType::Numeric(_)
        | SqlType::Real
        | SqlType::Double => Class::Num,
        SqlType::Text(_) => Class::Text,
        SqlType::Boolean => Class::Bool,
        SqlType::Bytea => Class::Bytes,
        SqlType::Timestamp => Class::Ts,
        SqlType::Array(_) => Class::Array,
        SqlType::Unknown | SqlType::Void => Class::Any,
    }
}

pub(super) fn is_text_literal(e: &Expr) -> bool {
    matches!(e, Expr::Const(Value::Text(_)) | Expr::Const(Value::Null))
}

impl<'a> Compiler<'a> {
    pub(super) fn push_table_scope(&mut self, ti: usize, alias: Option<String>) {
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

    pub(super) fn lookup_col(
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

    pub(super) fn ident(&mut self, parts: &[ast::Ident]) -> Result<(Expr, SqlType)> {
        let pos = parts.first().map(|i| span_pos(&i.span)).unwrap_or(self.pos);
        let names: Vec<String> = parts.iter().map(lc).collect();
        if let Some(a) = self.agg.as_ref().filter(|a| a.active) {
            // A column of the FROM row is a group when a plain-column group names the same
            // column (qualified or not); an outer column is a constant here; anything else is
            // a variable, resolved below.
            let is_record_var = names.len() == 2
                && self
                    .vars
                    .as_ref()
                    .is_some_and(|v| v.lookup(&names.join(".")).is_some());
            let col = match names.as_slice() {
                [n] => self.lookup_col(None, n, pos)?,
                [t, n] if !is_record_var => self.lookup_col(Some(t), n, pos)?,
                _ => None,
            };
            if let Some((Expr::Col { depth, idx }, ty)) = col {
                if depth > 0 {
                    return Ok((Expr::Col { depth, idx }, ty));
                }
                if let Some(g) = a.group_cols.iter().position(|c| *c == Some(idx)) {
                    return Ok((Expr::Col { depth: 0, idx: g }, ty));
                }
                return resolve_err(pos, format!("column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function", names.join(".")));
            }
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

    pub(super) fn expr_pos(&self, e: &ast::Expr) -> Pos {
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

    pub(super) fn expr_inner(&mut self, e: &ast::Expr) -> Result<(Expr, SqlType)> {
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
                self.check_type(ty, pos)?;
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
            A::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | A::AllOp {
                left,
                compare_op,
                right,
            } => {
                let all = matches!(e, A::AllOp { .. });
                let op = match compare_op {
                    BinaryOperator::Eq => CmpOp::Eq,
                    BinaryOperator::NotEq => CmpOp::Ne,
                    BinaryOperator::Lt => CmpOp::Lt,
                    BinaryOperator::LtEq => CmpOp::Le,
                    BinaryOperator::Gt => CmpOp::Gt,
                    BinaryOperator::GtEq => CmpOp::Ge,
                    other => return unsupported(pos, format!("operator {other} with ANY/ALL")),
                };
                let A::Subquery(sq) = right.as_ref() else {
                    self.arrays_allowed(SqlError::Unsupported {
                        pos,
                        msg: "ANY/ALL over an array (use a subquery)".into(),
                    })?;
                    let (x, tx) = self.expr(left)?;
                    let (a, ta) = self.expr(right)?;
                    let elem = match ta {
                        SqlType::Array(e) => e.ty(),
                        SqlType::Unknown => tx,
                        t => {
                            return resolve_err(
                                pos,
                                format!("op ANY/ALL (array) requires array on right side, not {t}"),
                            )
                        }
                    };
                    // a text literal on the right is an array of the left side's type
                    let a = match (a, tx) {
                        (Expr::Const(v @ Value::Text(_)), t) => {
                            let e = ArrElem::of(t).unwrap_or(ArrElem::Text);
                            Expr::Const(v.cast(&SqlType::Array(e))?)
                        }
                        (a, _) => a,
                    };
                    self.comparable(tx, elem, &x, &Expr::Const(Value::Int(0)), pos)?;
                    return Ok((
                        Expr::QuantArray(op, Box::new(x), Box::new(a), all),
                        SqlType::Boolean,
                    ));
                };
                let (x, tx) = self.expr(left)?;
                let q = self.subquery(sq)?;
                if q.columns.len() != 1 {
                    return resolve_err(pos, "subquery has too many columns");
                }
                let ty = q.columns[0].1;
                self.comparable(tx, ty, &x, &Expr::Const(Value::Int(0)), pos)?;
                (
                    Expr::Quantified(op, Box::new(x), Box::new(q), all),
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
                self.check_type(ty, pos)?;
                if let (A::Array(arr), SqlType::Array(e)) = (expr.as_ref(), ty) {
                    if arr.elem.is_empty() {
                        let empty = crate::value::Array::new(e, Vec::new())?;
                        return Ok((
                            Expr::Const(Value::Array(crate::value::ArrayRef::new(empty))),
                            ty,
                        ));
                    }
                }
                // A number literal cast to a float type reads straight into the float (the
                // same correctly rounded value PostgreSQL gets through NUMERIC, also for
                // literals beyond NUMERIC's 38 digits here, such as 1e300).
                if ty.is_float() {
                    let lit = match expr.as_ref() {
                        A::Value(v) => match &v.value {
                            ast::Value::Number(n, _) => Some(n.clone()),
                            _ => None,
                        },
                        A::UnaryOp {
                            op: UnaryOperator::Minus,
                            expr: inner,
                        } => match inner.as_ref() {
                            A::Value(v) => match &v.value {
                                ast::Value::Number(n, _) => Some(format!("-{n}")),
                                _ => None,
                            },
                            _ => None,
                        },
                        _ => None,
                    };
                    if let Some(n) = lit {
                        return Ok((fold_cast(Value::Text(n), ty), ty));
                    }
                }
                let (x, _) = self.expr(expr)?;
                match x {
                    Expr::Const(v) => (fold_cast(v, ty), ty),
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
            A::Floor { expr, field } | A::Ceil { expr, field } => {
                if !matches!(
                    field,
                    ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime)
                ) {
                    return unsupported(pos, "FLOOR/CEIL with a scale or a date field");
                }
                let name = if matches!(e, A::Floor { .. }) {
                    "floor"
                } else {
                    "ceil"
                };
                let xt = self.expr(expr)?;
                self.float_fn(name, vec![xt], pos)?
            }
            A::Array(arr) => {
                self.arrays_allowed(SqlError::Unsupported {
                    pos,
                    msg: format!("expression {e}"),
                })?;
                let mut ty = SqlType::Unknown;
                let mut items = Vec::new();
                for x in &arr.elem {
                    let (e, t) = self.expr(x)?;
                    ty = unify(ty, t, pos)?;
                    items.push(e);
                }
                if items.is_empty() {
                    return resolve_err(
                        pos,
                        "cannot determine type of empty array (write ARRAY[]::INTEGER[])",
                    );
                }
                let ty = if ty == SqlType::Unknown {
                    SqlType::Text(None)
                } else {
                    ty
                };
                let Some(elem) = ArrElem::of(ty) else {
                    return unsupported(
                        pos,
                        format!(
                            "arrays of {} (INTEGER[], BIGINT[] and TEXT[] are supported)",
                            ty.pg_name()
                        ),
                    );
                };
                (Expr::Array(elem, items), SqlType::Array(elem))
            }
            A::CompoundFieldAccess { root, access_chain } => {
                self.arrays_allowed(SqlError::Unsupported {
                    pos,
                    msg: format!("expression {e}"),
                })?;
                let [ast::AccessExpr::Subscript(ast::Subscript::Index { index })] =
                    access_chain.as_slice()
                else {
                    return unsupported(
                        pos,
                        "this subscript (arrays have one dimension; slices and fields are not \
                         supported)",
                    );
                };
                let (a, ta) = self.expr(root)?;
                let SqlType::Array(elem) = ta else {
                    return resolve_err(
                        pos,
                        format!(
                            "cannot subscript type {} because it does not support subscripting",
                            ta.pg_name()
                        ),
                    );
                };
                let (i, ti) = self.expr(index)?;
                if !matches!(class(ti), Class::Num | Class::Any) {
                    return resolve_err(pos, "array subscript must have type integer");
                }
                (Expr::Subscript(Box::new(a), Box::new(i)), elem.ty())
            }
            other => return unsupported(pos, format!("expression {other}")),
        })
    }

    pub(super) fn group_type(&self, i: usize) -> Result<SqlType> {
        Ok(self
            .agg
            .as_ref()
            .and_then(|a| a.group_types.get(i).copied())
            .unwrap_or(SqlType::Unknown))
    }

    pub(super) fn want_bool(&self, t: SqlType, pos: Pos) -> Result<()> {
        if matches!(class(t), Class::Bool | Class::Any) {
            Ok(())
        } else {
            resolve_err(pos, format!("argument must be type boolean, not type {t}"))
        }
    }

    pub(super) fn comparable(
        &self,
        a: SqlType,
        b: SqlType,
        x: &Expr,
        y: &Expr,
        pos: Pos,
    ) -> Result<()> {
        let (ca, cb) = (class(a), class(b));
        if ca == cb
            || ca == Class::Any
            || cb == Class::Any
            || is_text_literal(x)
            || is_text_literal(y)
        {
            Ok(())
        } else {
            resolve_err(
                pos,
                format!("operator does not exist: {} = {}", a.pg_name(), b.pg_name()),
            )
        }
    }

    pub(super) fn binop(
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
                    return resolve_err(
                        pos,
                        format!(
                            "operator does not exist: {} {op} {}",
                            ta.pg_name(),
                            tb.pg_name()
                        ),
                    );
                }
            }
            let _ = this;
            if o == ArithOp::Mod && (ta.is_float() || tb.is_float()) {
                return resolve_err(
                    pos,
                    format!(
                        "operator does not exist: {} % {}",
                        ta.pg_name(),
                        tb.pg_name()
                    ),
                );
            }
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
            BinaryOperator::StringConcat => match (ta, tb) {
                (SqlType::Array(e), SqlType::Array(_)) => Ok((
                    Expr::ArrayFn(ArrayFn::Cat(e), vec![a, b]),
                    SqlType::Array(e),
                )),
                // an untyped literal or NULL next to an array is an array, as in PostgreSQL
                // (`a || NULL` is `a`, `a || '{3,4}'` appends both)
                (SqlType::Array(e), SqlType::Unknown) if is_text_literal(&b) => Ok((
                    Expr::ArrayFn(ArrayFn::Cat(e), vec![a, untyped_array(b, e)?]),
                    SqlType::Array(e),
                )),
                (SqlType::Unknown, SqlType::Array(e)) if is_text_literal(&a) => Ok((
                    Expr::ArrayFn(ArrayFn::Cat(e), vec![untyped_array(a, e)?, b]),
                    SqlType::Array(e),
                )),
                (SqlType::Array(e), _) => Ok((
                    Expr::ArrayFn(ArrayFn::Append(e), vec![a, b]),
                    SqlType::Array(e),
                )),
                (_, SqlType::Array(e)) => Ok((
                    Expr::ArrayFn(ArrayFn::Prepend(e), vec![a, b]),
                    SqlType::Array(e),
                )),
                _ => Ok((Expr::Concat(bx(a), bx(b)), SqlType::Text(None))),
            },
            other => unsupported(pos, format!("operator {other}")),
        }
    }

    pub(super) fn args(&mut self, f: &ast::Function, pos: Pos) -> Result<Args> {
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

    /// An aggregate's arguments and its `ORDER BY` clause (the only clause accepted).
    pub(super) fn agg_args(&mut self, f: &ast::Function, pos: Pos) -> Result<(Args, OrderKeys)> {
        let mut order = Vec::new();
        let mut plain = f.clone();
        if let ast::FunctionArguments::List(l) = &mut plain.args {
            for c in std::mem::take(&mut l.clauses) {
                match c {
                    ast::FunctionArgumentClause::OrderBy(v) => {
                        for o in v {
                            let (e, _) = self.expr(&o.expr)?;
                            let desc = o.options.asc == Some(false);
                            order.push((e, desc, o.options.nulls_first.unwrap_or(desc)));
                        }
                    }
                    _ => return unsupported(pos, "function argument clauses"),
                }
            }
        }
        Ok((self.args(&plain, pos)?, order))
    }

    pub(super) fn function(&mut self, f: &ast::Function, pos: Pos) -> Result<(Expr, SqlType)> {
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
            "round" if first_ty.is_float() => {
                if n != 1 {
                    return resolve_err(
                        pos,
                        format!("function round({first_ty}, integer) does not exist"),
                    );
                }
                Ok((Expr::Builtin(Builtin::Round, exprs), SqlType::Double))
            }
            "round" => {
                arity(1, 2)?;
                Ok((Expr::Builtin(Builtin::Round, exprs), SqlType::Numeric(None)))
            }
            _ if self.cat.func(&name).is_none()
                && crate::float::FloatFn::by_name(&name).is_some() =>
            {
                self.float_fn(&name, args, pos)
            }
            "greatest" | "least" if self.cat.func(&name).is_none() => {
                arity(1, usize::MAX)?;
                let mut ty = SqlType::Unknown;
                for a in &args {
                    ty = unify(ty, a.1, pos)?;
                }
                let exprs = args.into_iter().map(|(e, t)| widen(e, t, ty)).collect();
                let b = if name == "greatest" {
                    Builtin::Greatest
                } else {
                    Builtin::Least
                };
                Ok((Expr::Builtin(b, exprs), ty))
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
            "array_length" | "cardinality" | "array_append" | "array_prepend" | "array_cat"
                if self.cat.func(&name).is_none() && self.cat.version.arrays() =>
            {
                self.array_fn(&name, args, pos)
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
                    if sig.rows.as_ref().is_some_and(|r| r.set) {
                        return unsupported(
                            pos,
                            format!(
                                "set-returning function {name}() outside FROM (write SELECT * \
                                 FROM {name}(…))"
                            ),
                        );
                    }
                    Ok((Expr::Call(fi, exprs), sig.returns))
                }
                None => resolve_err(pos, format!("function {name} does not exist")),
            },
        }
    }

    /// An array function: `array_length(a, dim)`, `cardinality(a)`, `array_append(a, x)`,
    /// `array_prepend(x, a)`, `array_cat(a, b)`.
    pub(super) fn array_fn(
        &mut self,
        name: &str,
        args: Vec<(Expr, SqlType)>,
        pos: Pos,
    ) -> Result<(Expr, SqlType)> {
        let sig = || {
            args.iter()
                .map(|a| a.1.pg_name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let no_fn = || resolve_err(pos, format!("function {name}({}) does not exist", sig()));
        // a text literal where the array goes is an array of the other argument's type
        let arr = |e: Expr, t: SqlType, other: SqlType| -> Result<(Expr, SqlType)> {
            match (e, t) {
                (e, SqlType::Array(_)) => Ok((e, t)),
                (Expr::Const(v @ Value::Text(_)), SqlType::Unknown) => {
                    let at = match other {
                        SqlType::Array(x) => SqlType::Array(x),
                        o => SqlType::Array(ArrElem::of(o).unwrap_or(ArrElem::Text)),
                    };
                    Ok((Expr::Const(v.cast(&at)?), at))
                }
                (Expr::Const(Value::Null), SqlType::Unknown) => Ok((
                    Expr::Const(Value::Null),
                    match other {
                        SqlType::Array(x) => SqlType::Array(x),
                        o => SqlType::Array(ArrElem::of(o).unwrap_or(ArrElem::Text)),
                    },
                )),
                _ => Err(SqlError::Resolve {
                    pos,
                    msg: format!("function {name}({}) does not exist", sig()),
                }),
            }
        };
        let mut a = args.clone();
        let (f, ty) = match (name, a.len()) {
            ("array_length", 2) => {
                let (e, t) = a.remove(0);
                a.insert(0, arr(e, t, SqlType::Unknown)?);
                if !matches!(class(a[1].1), Class::Num | Class::Any) {
                    return no_fn();
                }
                (ArrayFn::Length, SqlType::Integer)
            }
            ("cardinality", 1) => {
                let (e, t) = a.remove(0);
                a.insert(0, arr(e, t, SqlType::Unknown)?);
                (ArrayFn::Cardinality, SqlType::Integer)
            }
            ("array_append", 2) => {
                let (e, t) = a.remove(0);
                let x = arr(e, t, a[0].1)?;
                a.insert(0, x);
                (ArrayFn::Append(elem_or_text(a[0].1)), a[0].1)
            }
            ("array_prepend", 2) => {
                let (e, t) = a.remove(1);
                let x = arr(e, t, a[0].1)?;
                a.push(x);
                (ArrayFn::Prepend(elem_or_text(a[1].1)), a[1].1)
            }
            ("array_cat", 2) => {
                let (e, t) = a.remove(0);
                let x = arr(e, t, a[0].1)?;
                a.insert(0, x);
                let (e, t) = a.remove(1);
                let y = arr(e, t, a[0].1)?;
                a.push(y);
                (ArrayFn::Cat(elem_or_text(a[0].1)), a[0].1)
            }
            _ => return no_fn(),
        };
        // the element must fit the array's element class
        let elem_of = |t: SqlType| match t {
            SqlType::Array(e) => Some(e.ty()),
            _ => None,
        };
        let elem_ok = match f {
            ArrayFn::Append(_) => elem_of(a[0].1).map(|et| (et, a[1].1)),
            ArrayFn::Prepend(_) => elem_of(a[1].1).map(|et| (et, a[0].1)),
            ArrayFn::Cat(_) => elem_of(a[0].1).zip(elem_of(a[1].1)),
            ArrayFn::Length | ArrayFn::Cardinality => None,
        };
        if let Some((et, xt)) = elem_ok {
            let x_lit = match f {
                ArrayFn::Append(_) => is_text_literal(&a[1].0),
                ArrayFn::Prepend(_) => is_text_literal(&a[0].0),
                _ => false,
            };
            if class(et) != class(xt) && class(xt) != Class::Any && !x_lit {
                return no_fn();
            }
        }
        Ok((Expr::ArrayFn(f, a.into_iter().map(|x| x.0).collect()), ty))
    }

    /// A DOUBLE PRECISION function call (`crate::float::FloatFn`): integer arguments are
    /// converted; NUMERIC ones are refused (PostgreSQL would compute those in decimal).
    pub(super) fn float_fn(
        &mut self,
        name: &str,
        args: Vec<(Expr, SqlType)>,
        pos: Pos,
    ) -> Result<(Expr, SqlType)> {
        let Some((ff, k)) = crate::float::FloatFn::by_name(name) else {
            return resolve_err(pos, format!("function {name} does not exist"));
        };
        if args.len() != k {
            return resolve_err(
                pos,
                format!(
                    "function {name} takes {k}..{k} arguments, got {}",
                    args.len()
                ),
            );
        }
        for (_, t) in &args {
            if matches!(t, SqlType::Numeric(_)) {
                return resolve_err(
                    pos,
                    format!(
                        "function {name}(numeric) is not supported: AergoSQL computes {name} \
                         in double precision only; cast the argument, e.g. \
                         {name}(x::double precision)"
                    ),
                );
            }
            if !matches!(class(*t), Class::Num | Class::Any) {
                return resolve_err(
                    pos,
                    format!("function {name}({}) does not exist", t.pg_name()),
                );
            }
        }
        let exprs = args.into_iter().map(|a| a.0).collect();
        Ok((Expr::Builtin(Builtin::Float(ff), exprs), SqlType::Double))
    }

    pub(super) fn aggregate(
        &mut self,
        name: &str,
        f: &ast::Function,
        pos: Pos,
    ) -> Result<(Expr, SqlType)> {
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
        let r = self.agg_args(f, pos);
        if let Some(a) = self.agg.as_mut() {
            a.active = true;
        }
        let ((args, star, distinct), order) = r?;
        if !order.is_empty() && name != "string_agg" {
            return unsupported(pos, format!("ORDER BY inside {name}()"));
        }
        let (func, arg, ty) = match (name, star, args.len()) {
            ("count", true, 0) => (AggFn::CountStar, None, SqlType::BigInt),
            ("count", false, 1) => (AggFn::Count, Some(args[0].0.clone()), SqlType::BigInt),
            ("sum", false, 1) => (
                AggFn::Sum,
                Some(args[0].0.clone()),
                match args[0].1 {
                    t @ (SqlType::Real | SqlType::Double) => t,
                    t => num_type(t, SqlType::BigInt),
                },
            ),
            ("avg", false, 1) => (
                AggFn::Avg,
                Some(args[0].0.clone()),
                if args[0].1.is_float() {
                    SqlType::Double
                } else {
                    SqlType::Numeric(None)
                },
            ),
            ("min", false, 1) => (AggFn::Min, Some(args[0].0.clone()), args[0].1),
            ("max", false, 1) => (AggFn::Max, Some(args[0].0.clone()), args[0].1),
            ("bool_and" | "every" | "bool_or", false, 1) => {
                if !matches!(class(args[0].1), Class::Bool | Class::Any) {
                    return resolve_err(
                        pos,
                        format!("function {name}({}) does not exist", args[0].1.pg_name()),
                    );
                }
                let f = if name == "bool_or" {
                    AggFn::BoolOr
                } else {
                    AggFn::BoolAnd
                };
                (f, Some(args[0].0.clone()), SqlType::Boolean)
            }
            ("string_agg", false, 2) => {
                for (_, t) in &args {
                    if !matches!(class(*t), Class::Text | Class::Any) {
                        return resolve_err(
                            pos,
                            format!(
                                "function string_agg({}, {}) does not exist",
                                args[0].1.pg_name(),
                                args[1].1.pg_name()
                            ),
                        );
                    }
                }
                (
                    AggFn::StringAgg,
                    Some(args[0].0.clone()),
                    SqlType::Text(None),
                )
            }
            _ => return resolve_err(pos, format!("wrong arguments for aggregate {name}")),
        };
        if matches!(func, AggFn::Sum | AggFn::Avg)
            && !matches!(class(args[0].1), Class::Num | Class::Any)
        {
            return resolve_err(
                pos,
                format!("function {name}({}) does not exist", args[0].1.pg_name()),
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
            arg2: if func == AggFn::StringAgg {
                args.get(1).map(|x| x.0.clone())
            } else {
                None
            },
            order,
        });
        Ok((Expr::Col { depth: 0, idx }, ty))
    }
}

/// An untyped literal (or NULL) read as an array of `e`.
fn untyped_array(x: Expr, e: ArrElem) -> Result<Expr> {
    Ok(match x {
        Expr::Const(v) => Expr::Const(v.cast(&SqlType::Array(e))?),
        x => x,
    })
}

/// The element type of an array type (TEXT for anything else).
fn elem_or_text(t: SqlType) -> ArrElem {
    match t {
        SqlType::Array(e) => e,
        _ => ArrElem::Text,
    }
}

/// Casts an integer-typed branch to NUMERIC when the common type is NUMERIC, and any other
/// numeric branch to the common float type.
pub(super) fn widen(e: Expr, t: SqlType, common: SqlType) -> Expr {
    match (t, common) {
        (SqlType::Real, SqlType::Real) | (SqlType::Double, SqlType::Double) => e,
        (SqlType::BigInt | SqlType::Integer | SqlType::Numeric(_) | SqlType::Real, c)
            if c.is_float() =>
        {
            match e {
                Expr::Const(v) => match v.cast(&c) {
                    Ok(v) => Expr::Const(v),
                    Err(_) => Expr::Cast(Box::new(Expr::Const(v)), c),
                },
                e => Expr::Cast(Box::new(e), c),
            }
        }
        (SqlType::BigInt | SqlType::Integer, SqlType::Numeric(_)) => match e {
            Expr::Const(Value::Int(i)) => Expr::Const(Value::Num(Decimal::from_i64(i))),
            e => Expr::Cast(Box::new(e), SqlType::Numeric(None)),
        },
        _ => e,
    }
}

pub(super) fn unify(a: SqlType, b: SqlType, pos: Pos) -> Result<SqlType> {
    match (class(a), class(b)) {
        (Class::Any, _) => Ok(b),
        (_, Class::Any) => Ok(a),
        (x, y) if x == y => Ok(if x == Class::Num { unify_num(a, b) } else { a }),
        _ => resolve_err(pos, format!("types {a} and {b} cannot be matched")),
    }
}

/// A cast of a constant, done now; one that fails stays a cast, so the error comes when (and
/// only if) it is evaluated — `coalesce(1, 1e308::float8::real)` is 1, as in PostgreSQL.
pub(super) fn fold_cast(v: Value, ty: SqlType) -> Expr {
    match v.cast(&ty) {
        Ok(c) => Expr::Const(c),
        Err(_) => Expr::Cast(Box::new(Expr::Const(v)), ty),
    }
}

/// Common type of numeric branches (CASE, COALESCE, UNION, greatest/least): DOUBLE
/// PRECISION if any is, else REAL if any is, else NUMERIC if any is, else BIGINT.
pub(super) fn unify_num(a: SqlType, b: SqlType) -> SqlType {
    match (a, b) {
        (SqlType::Double, _) | (_, SqlType::Double) => SqlType::Double,
        (SqlType::Real, _) | (_, SqlType::Real) => SqlType::Real,
        _ => num_type(a, b),
    }
}

pub(super) fn literal(v: &ast::Value, pos: Pos) -> Result<(Expr, SqlType)> {
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
