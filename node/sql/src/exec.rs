//! Shared runtime: expression evaluation, query execution, DML with
//! constraint and index maintenance, gas metering. Used by the interpreter
//! and, through `extern "C"` helpers, by JIT-compiled code.

use crate::ctx::ChainContext;
use crate::decimal::Decimal;
use crate::encoding::{decode_row_into, encode_key, encode_key_tuple, encode_row_into, prefix_end};
use crate::error::{Result, SqlError};
use crate::float;
use crate::gas;
use crate::ir::*;
use crate::kv::Kv;
use crate::value::{sort_cmp, sql_cmp, Array, ArrayRef, SqlType, Value};
use std::cmp::Ordering;

/// Rows with their full row keys.
type KeyedRows = Vec<(Vec<u8>, Vec<Value>)>;

/// Estimated bytes of one entry of a DISTINCT set beyond its encoded key.
const ROW_SET_OVERHEAD: usize = 32;
use std::collections::{BTreeMap, BTreeSet};

/// A query level's current row and the levels around it.
pub struct Frame<'f> {
    /// Row of this level.
    pub row: &'f [Value],
    /// Enclosing level.
    pub parent: Option<&'f Frame<'f>>,
}

/// Empty frame (no FROM).
pub const EMPTY: Frame<'static> = Frame {
    row: &[],
    parent: None,
};

/// Execution state of one call or query.
pub struct Runtime<'a> {
    /// Catalog.
    pub cat: &'a Catalog,
    /// Storage (an overlay during calls).
    pub kv: &'a mut dyn Kv,
    /// Contract key prefix.
    pub prefix: &'a [u8],
    /// Chain context (None for free queries and deploy).
    pub chain: Option<&'a mut dyn ChainContext>,
    /// Gas used so far.
    pub gas_used: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// RAISE NOTICE messages.
    pub events: Vec<String>,
    /// Call depth.
    pub depth: u32,
    /// Reject writes.
    pub read_only: bool,
    /// Runs nested calls: the interpreter ([`crate::interp::Interpreter`]), or the contract's
    /// JIT program when the call runs on the JIT.
    pub dispatch: &'a dyn Dispatch,
    /// Scratch buffer for row keys of point lookups.
    pub key_buf: Vec<u8>,
    /// Scratch row of point statements (decoded into in place, text buffers reused).
    pub row_buf: Vec<Value>,
    /// Scratch row of point UPDATEs whose row is not the one [`Runtime::point_cache`] holds.
    pub upd_buf: Vec<Value>,
    /// `Some(stored length)` while `row_buf` holds the row a point SELECT decoded from the
    /// bytes stored under `key_buf`, unchanged since: a point UPDATE of that key starts from
    /// it instead of reading and decoding the row again (same gas: the read is charged as
    /// if it happened). Every write or delete of that key and every savepoint rollback
    /// clears it.
    pub point_cache: Option<usize>,
    /// The variables of a call that ended, kept so the next call's arguments reuse their
    /// buffers (`Contract::run_call`).
    pub spare_vars: Vec<Value>,
    /// Scratch key of point UPDATEs.
    pub upd_key: Vec<u8>,
    /// Scratch buffer rows are encoded into before the store copies them.
    pub enc_buf: Vec<u8>,
    /// Estimated bytes of rows held now ([`crate::gas::row_bytes`]).
    pub mem_used: usize,
    /// Open `BEGIN … EXCEPTION` blocks (a `send()` inside one is refused: chain transfers
    /// are not rolled back with the block's writes).
    pub guarded: u32,
    /// Work tables of the `WITH RECURSIVE` iterations running now (id, rows).
    pub work: Vec<(usize, Vec<Vec<Value>>)>,
    /// Memory budget ([`crate::gas::MEMORY_BUDGET`] by default).
    pub mem_limit: usize,
    /// Result rows of the row-returning calls running now (innermost last): RETURN NEXT and
    /// RETURN QUERY append to the last one ([`Runtime::return_row`]).
    pub results: Vec<Vec<Vec<Value>>>,
}

/// Runs contract functions for nested calls, so the runtime calls functions without knowing
/// the engine: the interpreter ([`crate::interp::Interpreter`]) and, with the `jit` feature,
/// the JIT program implement it.
pub trait Dispatch {
    /// Runs function `fi` (a JIT program runs the functions it did not compile in the
    /// interpreter).
    fn call(&self, fi: usize, rt: &mut Runtime, args: Vec<Value>) -> Result<Value>;
}

/// Unary minus.
pub fn negate(v: Value) -> Result<Value> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(int_overflow)?),
        Value::Num(d) => Value::Num(d.neg()?),
        Value::Float(x) => Value::Float(float::canon64(-x)),
        Value::Real(x) => Value::Real(float::canon32(-x)),
        other => return Err(SqlError::Type(format!("cannot negate {}", other.type_of()))),
    })
}

/// PostgreSQL's text form of a record (`record_out`): `(a,b)`, NULL as nothing, a value
/// quoted when it is empty or holds `"`, `\`, `(`, `)`, `,` or white space (`"` and `\`
/// doubled inside the quotes).
pub fn record_text(row: &[Value]) -> String {
    let mut s = String::from("(");
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if matches!(v, Value::Null) {
            continue;
        }
        let t = v.to_text();
        let quote = t.is_empty()
            || t.chars()
                .any(|c| matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_ascii_whitespace());
        if quote {
            s.push('"');
            for c in t.chars() {
                if c == '"' || c == '\\' {
                    s.push(c);
                }
                s.push(c);
            }
            s.push('"');
        } else {
            s.push_str(&t);
        }
    }
    s.push(')');
    s
}

/// Stores a value into a variable slot, cast to the slot's declared type.
pub fn assign(vars: &mut [Value], slots: &[SqlType], slot: usize, v: Value) -> Result<()> {
    let ty = slots.get(slot).copied().unwrap_or(SqlType::Unknown);
    let v = v.cast_owned(&ty)?;
    if let Some(x) = vars.get_mut(slot) {
        *x = v;
    }
    Ok(())
}

/// Runs a SQL statement with INTO handling (shared with the JIT helpers).
pub fn exec_sql(
    rt: &mut Runtime,
    plan: &SqlPlan,
    into: &[usize],
    strict: bool,
    vars: &mut [Value],
    slots: &[SqlType],
) -> Result<()> {
    let res = rt.run_plan(plan, vars)?;
    let found = if matches!(plan, SqlPlan::Select(_)) {
        !res.rows.is_empty()
    } else {
        res.count > 0
    };
    if !into.is_empty() {
        if strict && res.rows.len() != 1 {
            return Err(SqlError::Exception(if res.rows.is_empty() {
                "query returned no rows".into()
            } else {
                "query returned more than one row".into()
            }));
        }
        match res.rows.into_iter().next() {
            Some(row) => {
                for (slot, v) in into.iter().zip(row) {
                    assign(vars, slots, *slot, v)?;
                }
            }
            None => {
                for slot in into {
                    assign(vars, slots, *slot, Value::Null)?;
                }
            }
        }
    }
    vars[FOUND_SLOT] = Value::Bool(found);
    Ok(())
}

/// Result of a DML statement.
pub struct DmlResult {
    /// Rows affected.
    pub count: u64,
    /// RETURNING rows.
    pub rows: Vec<Vec<Value>>,
}

fn st_err(e: crate::kv::KvError) -> SqlError {
    SqlError::Storage(e.0)
}

/// Storage key tags under the contract prefix.
pub mod keys {
    /// Metadata (`script/NNNN`, `owner`).
    pub const META: u8 = 0;
    /// Per-table row-id sequence.
    pub const SEQ: u8 = 1;
    /// Table rows.
    pub const ROW: u8 = 2;
    /// Index entries.
    pub const INDEX: u8 = 3;
}

fn int_overflow() -> SqlError {
    SqlError::Overflow("bigint out of range".into())
}

/// Arithmetic on two non-null values.
pub fn arith(op: ArithOp, a: &Value, b: &Value) -> Result<Value> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Int(x), Value::Int(y)) => {
            let r = match op {
                ArithOp::Add => x.checked_add(*y),
                ArithOp::Sub => x.checked_sub(*y),
                ArithOp::Mul => x.checked_mul(*y),
                ArithOp::Div => {
                    if *y == 0 {
                        return Err(SqlError::DivisionByZero);
                    }
                    x.checked_div(*y)
                }
                ArithOp::Mod => {
                    if *y == 0 {
                        return Err(SqlError::DivisionByZero);
                    }
                    x.checked_rem(*y)
                }
            };
            r.map(Value::Int).ok_or_else(int_overflow)
        }
        // REAL with REAL stays REAL; any other mix with a float is DOUBLE PRECISION
        (Value::Real(x), Value::Real(y)) => Ok(Value::Real(float::arith32(op, *x, *y)?)),
        (Value::Float(_) | Value::Real(_), Value::Int(_) | Value::Num(_) | Value::Float(_))
        | (Value::Int(_) | Value::Num(_) | Value::Float(_), Value::Real(_))
        | (Value::Int(_) | Value::Num(_), Value::Float(_)) => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Err(SqlError::Type("float arithmetic".into()));
            };
            Ok(Value::Float(float::arith64(op, x, y)?))
        }
        (Value::Text(_), other) | (other, Value::Text(_)) if !matches!(other, Value::Text(_)) => {
            let ty = match other {
                Value::Int(_) => SqlType::BigInt,
                Value::Float(_) => SqlType::Double,
                Value::Real(_) => SqlType::Real,
                _ => SqlType::Numeric(None),
            };
            let (x, y) = (a.cast(&ty)?, b.cast(&ty)?);
            arith(op, &x, &y)
        }
        _ => {
            let (Some(x), Some(y)) = (a.as_decimal(), b.as_decimal()) else {
                return Err(SqlError::Type(format!(
                    "operator does not exist: {} and {}",
                    a.type_of(),
                    b.type_of()
                )));
            };
            Ok(Value::Num(match op {
                ArithOp::Add => x.add(&y)?,
                ArithOp::Sub => x.sub(&y)?,
                ArithOp::Mul => x.mul(&y)?,
                ArithOp::Div => x.div(&y)?,
                ArithOp::Mod => x.rem(&y)?,
            }))
        }
    }
}

fn truth(v: &Value) -> Result<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(SqlError::Type(format!(
            "argument must be boolean, not {}",
            other.type_of()
        ))),
    }
}

fn like(s: &[char], p: &[char]) -> bool {
    // iterative wildcard matching with backtracking on the last '%'
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && p[j] == '\\' && j + 1 < p.len() && p[j + 1] == s[i] {
            i += 1;
            j += 2;
        } else if j < p.len() && (p[j] == '_' || (p[j] == s[i] && p[j] != '%' && p[j] != '\\')) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    while j < p.len() && p[j] == '%' {
        j += 1;
    }
    j == p.len()
}

impl<'a> Runtime<'a> {
    /// Charges gas.
    #[inline]
    pub fn charge(&mut self, n: u64) -> Result<()> {
        self.gas_used = self.gas_used.saturating_add(n);
        if self.gas_used > self.gas_limit {
            return Err(SqlError::OutOfGas {
                limit: self.gas_limit,
            });
        }
        Ok(())
    }

    /// Accounts for `bytes` more held; fails past the memory budget.
    #[inline]
    pub fn hold(&mut self, bytes: usize) -> Result<()> {
        self.mem_used = self.mem_used.saturating_add(bytes);
        if self.mem_used > self.mem_limit {
            return Err(SqlError::Memory {
                limit: self.mem_limit,
            });
        }
        Ok(())
    }

    /// Rows the gas left can pay [`gas::ROW_READ`] for, plus one (the read that runs out):
    /// scans ask storage for no more.
    fn rows_affordable(&self) -> usize {
        let rows = self.gas_limit.saturating_sub(self.gas_used) / gas::ROW_READ;
        usize::try_from(rows.saturating_add(1)).unwrap_or(usize::MAX)
    }

    /// Gives back `bytes` held earlier.
    #[inline]
    pub fn release(&mut self, bytes: usize) {
        self.mem_used = self.mem_used.saturating_sub(bytes);
    }

    /// [`Runtime::table_rows`], with the bytes the rows hold (to [`Runtime::release`] once
    /// they are consumed).
    fn held_rows(
        &mut self,
        ti: usize,
        access: &Access,
        f: &Frame,
        vars: &[Value],
    ) -> Result<(KeyedRows, usize)> {
        let before = self.mem_used;
        let rows = self.table_rows(ti, access, f, vars)?;
        Ok((rows, self.mem_used.saturating_sub(before)))
    }

    fn chain(&mut self) -> Result<&mut dyn ChainContext> {
        match self.chain.as_deref_mut() {
            Some(c) => Ok(c),
            None => Err(SqlError::Chain(
                "chain functions are not available here".into(),
            )),
        }
    }

    /// Evaluates an expression.
    pub fn eval(&mut self, e: &Expr, f: &Frame, vars: &[Value]) -> Result<Value> {
        Ok(match e {
            Expr::Const(v) => v.clone(),
            Expr::Col { depth, idx } => {
                let mut fr = f;
                for _ in 0..*depth {
                    fr = fr
                        .parent
                        .ok_or_else(|| SqlError::Storage("bad column depth".into()))?;
                }
                fr.row
                    .get(*idx)
                    .cloned()
                    .ok_or_else(|| SqlError::Storage("bad column index".into()))?
            }
            Expr::Var(s) => vars
                .get(*s)
                .cloned()
                .ok_or_else(|| SqlError::Storage("bad variable slot".into()))?,
            Expr::Neg(a) => negate(self.eval(a, f, vars)?)?,
            Expr::Not(a) => match truth(&self.eval(a, f, vars)?)? {
                None => Value::Null,
                Some(b) => Value::Bool(!b),
            },
            Expr::Arith(op, a, b) => match (peek(a, f, vars), peek(b, f, vars)) {
                // plain column/variable/constant operands: no copies
                (Some(x), Some(y)) => arith(*op, x, y)?,
                _ => {
                    let x = self.eval(a, f, vars)?;
                    let y = self.eval(b, f, vars)?;
                    arith(*op, &x, &y)?
                }
            },
            Expr::Cmp(op, a, b) => {
                let ord = match (peek(a, f, vars), peek(b, f, vars)) {
                    // plain column/variable/constant operands: compare in place
                    (Some(x), Some(y)) => sql_cmp(x, y)?,
                    _ => {
                        let x = self.eval(a, f, vars)?;
                        let y = self.eval(b, f, vars)?;
                        sql_cmp(&x, &y)?
                    }
                };
                match ord {
                    None => Value::Null,
                    Some(o) => Value::Bool(match op {
                        CmpOp::Eq => o == Ordering::Equal,
                        CmpOp::Ne => o != Ordering::Equal,
                        CmpOp::Lt => o == Ordering::Less,
                        CmpOp::Le => o != Ordering::Greater,
                        CmpOp::Gt => o == Ordering::Greater,
                        CmpOp::Ge => o != Ordering::Less,
                    }),
                }
            }
            Expr::And(a, b) => {
                let x = truth(&self.eval(a, f, vars)?)?;
                if x == Some(false) {
                    return Ok(Value::Bool(false));
                }
                let y = truth(&self.eval(b, f, vars)?)?;
                match (x, y) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Or(a, b) => {
                let x = truth(&self.eval(a, f, vars)?)?;
                if x == Some(true) {
                    return Ok(Value::Bool(true));
                }
                let y = truth(&self.eval(b, f, vars)?)?;
                match (x, y) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Expr::Concat(a, b) => {
                let x = self.eval(a, f, vars)?;
                let y = self.eval(b, f, vars)?;
                self.concat(&x, &y)?
            }
            Expr::IsNull(a, neg) => match peek(a, f, vars) {
                Some(v) => Value::Bool(v.is_null() != *neg),
                None => Value::Bool(self.eval(a, f, vars)?.is_null() != *neg),
            },
            Expr::IsDistinct(a, b, not_distinct) => {
                let x = self.eval(a, f, vars)?;
                let y = self.eval(b, f, vars)?;
                let same = match (x.is_null(), y.is_null()) {
                    (true, true) => true,
                    (true, false) | (false, true) => false,
                    _ => sql_cmp(&x, &y)? == Some(Ordering::Equal),
                };
                Value::Bool(same == *not_distinct)
            }
            Expr::InList(a, list, neg) => {
                let x = self.eval(a, f, vars)?;
                let mut vals = Vec::with_capacity(list.len());
                for l in list {
                    vals.push(self.eval(l, f, vars)?);
                }
                in_values(&x, vals.iter(), *neg)?
            }
            Expr::InSub(a, q, neg) => {
                let x = self.eval(a, f, vars)?;
                let rows = self.select(q, Some(f), vars)?;
                in_values(&x, rows.iter().filter_map(|r| r.first()), *neg)?
            }
            Expr::Quantified(op, a, q, all) => {
                let x = self.eval(a, f, vars)?;
                let rows = self.select(q, Some(f), vars)?;
                quantified(*op, &x, rows.iter().filter_map(|r| r.first()), *all)?
            }
            Expr::Exists(q, neg) => {
                let rows = self.select(q, Some(f), vars)?;
                Value::Bool(rows.is_empty() == *neg)
            }
            Expr::ScalarSub(q) => {
                let mut rows = self.select(q, Some(f), vars)?;
                if rows.len() > 1 {
                    return Err(SqlError::Type(
                        "more than one row returned by a subquery used as an expression".into(),
                    ));
                }
                rows.pop().and_then(|mut r| r.pop()).unwrap_or(Value::Null)
            }
            Expr::Between(a, lo, hi, neg) => {
                let x = self.eval(a, f, vars)?;
                let l = self.eval(lo, f, vars)?;
                let h = self.eval(hi, f, vars)?;
                let ge = sql_cmp(&x, &l)?.map(|o| o != Ordering::Less);
                let le = sql_cmp(&x, &h)?.map(|o| o != Ordering::Greater);
                let r = match (ge, le) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                match r {
                    None => Value::Null,
                    Some(b) => Value::Bool(b != *neg),
                }
            }
            Expr::Like(a, p, neg, ci) => {
                let x = self.eval(a, f, vars)?;
                let y = self.eval(p, f, vars)?;
                if x.is_null() || y.is_null() {
                    Value::Null
                } else {
                    let (mut s, mut pat) = (x.to_text(), y.to_text());
                    if *ci {
                        s = s.to_lowercase();
                        pat = pat.to_lowercase();
                    }
                    let s: Vec<char> = s.chars().collect();
                    let p: Vec<char> = pat.chars().collect();
                    self.charge((s.len() as u64 * p.len() as u64) / 64)?;
                    Value::Bool(like(&s, &p) != *neg)
                }
            }
            Expr::Case(op, whens, el) => {
                let base = match op {
                    Some(o) => Some(self.eval(o, f, vars)?),
                    None => None,
                };
                for (c, r) in whens {
                    let cv = self.eval(c, f, vars)?;
                    let hit = match &base {
                        Some(b) => sql_cmp(b, &cv)? == Some(Ordering::Equal),
                        None => truth(&cv)? == Some(true),
                    };
                    if hit {
                        return self.eval(r, f, vars);
                    }
                }
                match el {
                    Some(x) => self.eval(x, f, vars)?,
                    None => Value::Null,
                }
            }
            Expr::Coalesce(l) => {
                for x in l {
                    let v = self.eval(x, f, vars)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Value::Null
            }
            Expr::NullIf(a, b) => {
                let x = self.eval(a, f, vars)?;
                let y = self.eval(b, f, vars)?;
                if sql_cmp(&x, &y)? == Some(Ordering::Equal) {
                    Value::Null
                } else {
                    x
                }
            }
            Expr::Cast(a, ty) => {
                let v = self.eval(a, f, vars)?.cast_owned(ty)?;
                if let Value::Array(arr) = &v {
                    self.charge_array(arr)?;
                }
                v
            }
            Expr::Builtin(b, args) => {
                let mut v = Vec::with_capacity(args.len());
                for a in args {
                    v.push(self.eval(a, f, vars)?);
                }
                builtin(*b, &v)?
            }
            Expr::Chain(c, args) => {
                let mut v = Vec::with_capacity(args.len());
                for a in args {
                    v.push(self.eval(a, f, vars)?);
                }
                self.chain_fn(*c, &v)?
            }
            Expr::Call(fi, args) => {
                let mut v = Vec::with_capacity(args.len());
                for a in args {
                    v.push(self.eval(a, f, vars)?);
                }
                self.call_function(*fi, v)?
            }
            Expr::Array(elem, items) => {
                let mut v = Vec::with_capacity(items.len());
                for x in items {
                    v.push(self.eval(x, f, vars)?.cast_owned(&elem.ty())?);
                }
                let built = Array::new(*elem, v)?;
                // the elements are expression nodes (already paid); their text is copied
                self.charge(gas::PER_KB * (built.text_bytes() as u64 / 1024))?;
                Value::Array(ArrayRef::new(built))
            }
            Expr::Subscript(a, i) => {
                let iv = self.eval(i, f, vars)?;
                let idx = match iv {
                    Value::Null => return Ok(Value::Null),
                    v => match v.cast(&SqlType::Integer)? {
                        Value::Int(i) => i,
                        _ => return Ok(Value::Null),
                    },
                };
                let pick = |v: &Value| match v {
                    Value::Array(arr) => usize::try_from(idx)
                        .ok()
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| arr.items.get(i))
                        .cloned()
                        .unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                // a variable's array is read in place (no copy of its elements)
                match peek(a, f, vars) {
                    Some(v) => pick(v),
                    None => pick(&self.eval(a, f, vars)?),
                }
            }
            Expr::QuantArray(op, x, a, all) => {
                let xv = self.eval(x, f, vars)?;
                let each = |v: &Value| -> Result<Value> {
                    match v {
                        Value::Array(arr) => quantified(*op, &xv, arr.items.iter(), *all),
                        _ => Ok(Value::Null),
                    }
                };
                match peek(a, f, vars) {
                    Some(v) => each(v)?,
                    None => each(&self.eval(a, f, vars)?)?,
                }
            }
            Expr::ArrayFn(func, args) => {
                let mut v = Vec::with_capacity(args.len());
                for a in args {
                    v.push(self.eval(a, f, vars)?);
                }
                self.array_fn(*func, v)?
            }
        })
    }

    /// The gas of building or copying `a`: [`gas::ARRAY_ELEM`] per element and
    /// [`gas::PER_KB`] per whole KiB of element text.
    fn charge_array(&mut self, a: &Array) -> Result<()> {
        self.charge(
            gas::ARRAY_ELEM * a.items.len() as u64 + gas::PER_KB * (a.text_bytes() as u64 / 1024),
        )
    }

    /// The rows of `unnest(v)`: one per element ([`gas::ARRAY_ELEM`] each), none for NULL.
    fn unnest_rows(&mut self, v: Value) -> Result<Vec<Vec<Value>>> {
        match v {
            Value::Array(a) => {
                self.charge_array(&a)?;
                Ok(a.items.iter().map(|x| vec![x.clone()]).collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// An array function over evaluated arguments; building a new array charges
    /// [`gas::ARRAY_ELEM`] per element of the result.
    pub fn array_fn(&mut self, func: ArrayFn, mut v: Vec<Value>) -> Result<Value> {
        let len = |x: &Value| match x {
            Value::Array(a) => Some(a.items.len()),
            _ => None,
        };
        let int = |n: usize| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
        let take = |x: Value| -> Option<Array> {
            match x {
                Value::Array(a) => Some(a.into_array()),
                _ => None,
            }
        };
        let mut args = v.drain(..);
        let (a0, a1) = (args.next().unwrap_or(Value::Null), args.next());
        drop(args);
        let built = match func {
            ArrayFn::Length => {
                let dim = a1.unwrap_or(Value::Null);
                return Ok(match (len(&a0), dim.cast(&SqlType::BigInt)?) {
                    (Some(n), Value::Int(1)) if n > 0 => int(n),
                    _ => Value::Null,
                });
            }
            ArrayFn::Cardinality => return Ok(len(&a0).map(int).unwrap_or(Value::Null)),
            ArrayFn::Append(elem) | ArrayFn::Prepend(elem) => {
                let append = matches!(func, ArrayFn::Append(_));
                let (arr, x) = if append {
                    (a0, a1.unwrap_or(Value::Null))
                } else {
                    (a1.unwrap_or(Value::Null), a0)
                };
                // a NULL array is an empty one here, as in PostgreSQL
                let mut arr = take(arr).unwrap_or(Array {
                    elem,
                    items: Vec::new(),
                });
                let x = x.cast_owned(&arr.elem.ty())?;
                if append {
                    arr.items.push(x);
                } else {
                    arr.items.insert(0, x);
                }
                arr
            }
            ArrayFn::Cat(_) => {
                let b = a1.unwrap_or(Value::Null);
                match (take(a0), b) {
                    (None, Value::Null) => return Ok(Value::Null),
                    (None, b) => take(b).ok_or_else(|| SqlError::Type("array_cat".into()))?,
                    (Some(a), Value::Null) => a,
                    (Some(mut a), Value::Array(b)) => {
                        for x in &b.items {
                            a.items.push(x.clone().cast_owned(&a.elem.ty())?);
                        }
                        a
                    }
                    (Some(_), _) => return Err(SqlError::Type("array_cat needs arrays".into())),
                }
            }
        };
        let built = Array::new(built.elem, built.items)?;
        self.charge_array(&built)?;
        Ok(Value::Array(ArrayRef::new(built)))
    }

    fn chain_fn(&mut self, c: ChainFn, v: &[Value]) -> Result<Value> {
        let text_arg = |i: usize| -> Result<Option<String>> {
            match v.get(i) {
                Some(Value::Null) | None => Ok(None),
                Some(x) => Ok(Some(x.to_text())),
            }
        };
        let ch = self.chain()?;
        Ok(match c {
            ChainFn::Sender => Value::Text(ch.sender()),
            ChainFn::BlockHeight => {
                Value::Int(i64::try_from(ch.block_height()).map_err(|_| int_overflow())?)
            }
            ChainFn::BlockTime => Value::Ts(ch.block_time()),
            ChainFn::TxHash => Value::Text(ch.tx_hash()),
            ChainFn::ContractAddress => Value::Text(ch.contract_address()),
            ChainFn::Amount => Value::Num(Decimal::from_u128(ch.amount())?),
            ChainFn::Balance => match text_arg(0)? {
                None => Value::Null,
                Some(a) => Value::Num(Decimal::from_u128(
                    ch.balance(&a).map_err(SqlError::Chain)?,
                )?),
            },
            ChainFn::Send if self.guarded > 0 => {
                return Err(SqlError::Chain(
                    "send() cannot run inside a BEGIN … EXCEPTION block".into(),
                ))
            }
            ChainFn::Send => {
                let Some(to) = text_arg(0)? else {
                    return Err(SqlError::Chain("send: recipient is NULL".into()));
                };
                let amt = match v.get(1).map(|x| x.cast(&SqlType::Numeric(None))) {
                    Some(Ok(Value::Num(d))) => d,
                    _ => return Err(SqlError::Chain("send: amount must be a number".into())),
                };
                if amt.scale() > 0 && amt.normalized().scale() > 0 {
                    return Err(SqlError::Chain(
                        "send: amount must be a whole number of aer".into(),
                    ));
                }
                let whole = amt.trunc_i128()?;
                let amt = u128::try_from(whole)
                    .map_err(|_| SqlError::Chain("send: negative amount".into()))?;
                self.chain()?.send(&to, amt).map_err(SqlError::Chain)?;
                Value::Bool(true)
            }
        })
    }

    /// `x || y`: NULL if either is, else their text forms joined ([`gas::PER_KB`] per whole
    /// KiB built).
    pub fn concat(&mut self, x: &Value, y: &Value) -> Result<Value> {
        if x.is_null() || y.is_null() {
            return Ok(Value::Null);
        }
        let s = x.to_text_cast() + &y.to_text_cast();
        self.charge(gas::PER_KB * (s.len() as u64 / 1024))?;
        Ok(Value::Text(s))
    }

    /// Calls a contract function (used for nested calls). A record function's value is its
    /// row's text form (`(1,abc)`, [`record_text`]); a set-returning one is refused (the
    /// compiler only allows it in FROM).
    pub fn call_function(&mut self, fi: usize, args: Vec<Value>) -> Result<Value> {
        if let Some(shape) = self.cat.sigs.get(fi).and_then(|s| s.rows.as_ref()) {
            if shape.set {
                return Err(SqlError::Call(
                    "a set-returning function is only allowed in FROM".into(),
                ));
            }
            let before = self.mem_used;
            let rows = self.call_rows(fi, args)?;
            self.mem_used = before;
            return Ok(Value::Text(
                rows.first().map_or_else(String::new, |r| record_text(r)),
            ));
        }
        self.call_scalar(fi, args)
    }

    /// Calls function `fi` for its rows (`SELECT * FROM f(…)`): a set-returning function's
    /// RETURN NEXT/QUERY rows, a record function's one row, a scalar function's value as one
    /// row. The rows stay counted as held memory (the caller gives them back).
    pub fn call_rows(&mut self, fi: usize, args: Vec<Value>) -> Result<Vec<Vec<Value>>> {
        let shaped = self.cat.sigs.get(fi).is_some_and(|s| s.rows.is_some());
        if !shaped {
            let v = self.call_scalar(fi, args)?;
            let row = vec![v];
            self.hold(gas::row_bytes(&row))?;
            return Ok(vec![row]);
        }
        self.results.push(Vec::new());
        let r = self.call_scalar(fi, args);
        let rows = self.results.pop().unwrap_or_default();
        r?;
        Ok(rows)
    }

    /// Appends a row to the result of the row-returning call running now (RETURN NEXT, RETURN
    /// QUERY, the end of a record function): [`gas::ROW_OUT`] and the row's memory.
    pub fn return_row(&mut self, row: Vec<Value>) -> Result<()> {
        self.charge(gas::ROW_OUT)?;
        self.hold(gas::row_bytes(&row))?;
        match self.results.last_mut() {
            Some(r) => {
                r.push(row);
                Ok(())
            }
            None => Err(SqlError::Call(
                "RETURN NEXT outside a row-returning call".into(),
            )),
        }
    }

    /// RETURN NEXT: the values cast to their column types, appended as one row.
    pub fn return_next(&mut self, row: &[(Expr, SqlType)], vars: &[Value]) -> Result<()> {
        let mut out = Vec::with_capacity(row.len());
        for (e, t) in row {
            out.push(self.eval(e, &EMPTY, vars)?.cast_owned(t)?);
        }
        self.return_row(out)
    }

    /// RETURN QUERY: the query's rows cast to the column types, appended to the result.
    pub fn return_query(&mut self, q: &Select, types: &[SqlType], vars: &[Value]) -> Result<()> {
        let rows = self.select(q, None, vars)?;
        for r in rows {
            let mut out = Vec::with_capacity(r.len());
            for (v, t) in r.into_iter().zip(types) {
                out.push(v.cast_owned(t)?);
            }
            self.return_row(out)?;
        }
        Ok(())
    }

    fn call_scalar(&mut self, fi: usize, args: Vec<Value>) -> Result<Value> {
        if self.depth >= gas::MAX_DEPTH {
            return Err(SqlError::StackDepth);
        }
        self.charge(gas::CALL)?;
        self.depth += 1;
        let d = self.dispatch;
        let r = d.call(fi, self, args);
        self.depth -= 1;
        r
    }

    // ----------------------------------------------------------- storage ---

    fn table_prefix(&self, tag: u8, tid: u32) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 5);
        k.extend_from_slice(self.prefix);
        k.push(tag);
        k.extend_from_slice(&tid.to_be_bytes());
        k
    }

    fn row_key(&self, t: &Table, pk: &[u8]) -> Vec<u8> {
        // room for a typical encoded primary key appended later
        let mut k = Vec::with_capacity(self.prefix.len() + 5 + pk.len().max(32));
        k.extend_from_slice(self.prefix);
        k.push(keys::ROW);
        k.extend_from_slice(&t.id.to_be_bytes());
        k.extend_from_slice(pk);
        k
    }

    /// Length of `prefix ‖ ROW ‖ tid`: a row key's primary key starts there.
    fn row_prefix_len(&self) -> usize {
        self.prefix.len() + 5
    }

    /// The primary-key part of a full row key.
    fn pk_of<'k>(&self, row_key: &'k [u8]) -> &'k [u8] {
        row_key.get(self.row_prefix_len()..).unwrap_or_default()
    }

    fn index_prefix(&self, t: &Table, ix: &Index, vals: &[Value]) -> Vec<u8> {
        let mut k = self.table_prefix(keys::INDEX, t.id);
        k.extend_from_slice(&ix.id.to_be_bytes());
        for v in vals {
            encode_key(&mut k, v);
        }
        k
    }

    fn decode(&self, t: &Table, bytes: &[u8]) -> Result<Vec<Value>> {
        decode_table_row(t, bytes)
    }

    /// Reads and decodes the row stored under the full row key `key`; a row of 1 KiB or more
    /// also pays [`gas::PER_KB`] per whole KiB read (the caller charged [`gas::ROW_READ`]).
    fn get_row(&mut self, t: &Table, key: &[u8]) -> Result<Option<Vec<Value>>> {
        let mut row = Vec::with_capacity(t.columns.len());
        Ok(self.get_row_into(t, key, &mut row)?.then_some(row))
    }

    /// [`Runtime::get_row`] into `row` (replacing its contents, reusing its buffers); false
    /// when there is no row under `key`.
    fn get_row_into(&mut self, t: &Table, key: &[u8], row: &mut Vec<Value>) -> Result<bool> {
        Ok(self.get_row_len_into(t, key, row)?.is_some())
    }

    /// [`Runtime::get_row_into`] giving the stored row's length in bytes (`None`: no row).
    fn get_row_len_into(
        &mut self,
        t: &Table,
        key: &[u8],
        row: &mut Vec<Value>,
    ) -> Result<Option<usize>> {
        let mut res = Ok(None);
        let mut len = 0usize;
        self.kv
            .get_with(key, &mut |v| {
                len = v.map_or(0, <[u8]>::len);
                if let Some(b) = v {
                    res = decode_table_row_into(t, b, row).map(|()| Some(b.len()));
                }
            })
            .map_err(st_err)?;
        self.charge(gas::PER_KB * (len as u64 / 1024))?;
        res
    }

    /// Rolls the store back to its innermost savepoint (an exception block's error); the
    /// point statements' cached row may be stale after it.
    pub fn rollback_savepoint(&mut self) {
        self.point_cache = None;
        self.kv.rollback_savepoint();
    }

    /// Clears [`Runtime::point_cache`] when `key` is the key of the cached row (it is being
    /// written or deleted).
    fn forget_cached(&mut self, key: &[u8]) {
        if self.point_cache.is_some() && key == self.key_buf.as_slice() {
            self.point_cache = None;
        }
    }

    /// A primary-key lookup: builds the row key into `key` (cleared first)
    /// from one expression per key column, charges the read and returns the
    /// row. A key value that is NULL or does not cast to the column's type
    /// matches nothing (no read, no charge).
    fn pk_lookup(
        &mut self,
        t: &Table,
        exprs: &[Expr],
        f: &Frame,
        vars: &[Value],
        key: &mut Vec<u8>,
    ) -> Result<Option<Vec<Value>>> {
        let mut row = Vec::with_capacity(t.columns.len());
        Ok(self
            .pk_lookup_into(t, exprs, f, vars, key, &mut row)?
            .then_some(row))
    }

    /// [`Runtime::pk_lookup`] into `row` (replacing its contents, reusing its buffers);
    /// false when no row matches.
    fn pk_lookup_into(
        &mut self,
        t: &Table,
        exprs: &[Expr],
        f: &Frame,
        vars: &[Value],
        key: &mut Vec<u8>,
        row: &mut Vec<Value>,
    ) -> Result<bool> {
        Ok(self
            .pk_lookup_len_into(t, exprs, f, vars, key, row)?
            .is_some())
    }

    /// [`Runtime::pk_lookup_into`] giving the stored row's length in bytes (`None`: no row).
    fn pk_lookup_len_into(
        &mut self,
        t: &Table,
        exprs: &[Expr],
        f: &Frame,
        vars: &[Value],
        key: &mut Vec<u8>,
        row: &mut Vec<Value>,
    ) -> Result<Option<usize>> {
        if !self.pk_key_into(t, exprs, f, vars, key)? {
            return Ok(None);
        }
        self.charge(gas::ROW_READ)?;
        self.get_row_len_into(t, key, row)
    }

    /// Builds the full row key of a primary-key lookup into `key` (cleared first) from one
    /// expression per key column; false when a key value is NULL or does not cast to its
    /// column's type (the lookup matches nothing: no read, no charge).
    fn pk_key_into(
        &mut self,
        t: &Table,
        exprs: &[Expr],
        f: &Frame,
        vars: &[Value],
        key: &mut Vec<u8>,
    ) -> Result<bool> {
        key.clear();
        key.reserve(self.prefix.len() + 5 + 32);
        key.extend_from_slice(self.prefix);
        key.push(keys::ROW);
        key.extend_from_slice(&t.id.to_be_bytes());
        for (e, &c) in exprs.iter().zip(&t.pk) {
            let ty = &t.columns[c].ty;
            match peek(e, f, vars) {
                // already of the column's type: encode in place
                Some(v @ Value::Text(_)) if matches!(ty, SqlType::Text(None)) => encode_key(key, v),
                Some(v @ Value::Int(_)) if *ty == SqlType::BigInt => encode_key(key, v),
                _ => {
                    let v = self.eval(e, f, vars)?;
                    match v.cast(ty) {
                        Ok(Value::Null) | Err(_) => return Ok(false),
                        Ok(v) => encode_key(key, &v),
                    }
                }
            }
        }
        Ok(true)
    }

    /// Reads the rows selected by an access path: (full row key, row). The
    /// primary key is the key's part after the table's row prefix (`row_prefix_len`).
    pub fn table_rows(
        &mut self,
        ti: usize,
        access: &Access,
        f: &Frame,
        vars: &[Value],
    ) -> Result<Vec<(Vec<u8>, Vec<Value>)>> {
        let cat = self.cat;
        let t = &cat.tables[ti];
        let mut out = Vec::new();
        match access {
            Access::Scan => {
                let start = self.table_prefix(keys::ROW, t.id);
                let end = prefix_end(&start);
                let plen = start.len();
                let limit = self.rows_affordable();
                let items: Vec<_> = self.kv.scan_limit(&start, &end, limit).collect();
                for it in items {
                    self.charge(gas::ROW_READ)?;
                    let (k, v) = it.map_err(st_err)?;
                    self.charge(gas::PER_KB * (v.len() as u64 / 1024))?;
                    if k.len() < plen {
                        return Err(outside_range());
                    }
                    let row = self.decode(t, &v)?;
                    self.hold(k.len() + gas::row_bytes(&row))?;
                    out.push((k, row));
                }
            }
            Access::Pk(exprs) => {
                let mut key = Vec::with_capacity(self.prefix.len() + 5 + 32);
                if let Some(row) = self.pk_lookup(t, exprs, f, vars, &mut key)? {
                    out.push((key, row));
                }
            }
            Access::Index(k, exprs) => {
                let ix = &t.indexes[*k];
                let mut vals = Vec::with_capacity(exprs.len());
                for (e, &c) in exprs.iter().zip(&ix.cols) {
                    let v = self.eval(e, f, vars)?;
                    match v.cast(&t.columns[c].ty) {
                        Ok(Value::Null) | Err(_) => return Ok(out),
                        Ok(v) => vals.push(v),
                    }
                }
                let start = self.index_prefix(t, ix, &vals);
                let end = prefix_end(&start);
                let plen = start.len();
                let limit = self.rows_affordable();
                let items: Vec<_> = self.kv.scan_limit(&start, &end, limit).collect();
                for it in items {
                    self.charge(gas::ROW_READ)?;
                    let (k, _) = it.map_err(st_err)?;
                    let rk = self.row_key(t, suffix(&k, plen)?);
                    match self.get_row(t, &rk)? {
                        Some(row) => {
                            self.hold(rk.len() + gas::row_bytes(&row))?;
                            out.push((rk, row))
                        }
                        None => return Err(SqlError::Storage("index entry without row".into())),
                    }
                }
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------ select ---

    /// Runs a query, returning its output rows.
    ///
    /// Memory: the rows, groups, sets and buffers the query holds while it runs count
    /// against the budget ([`Runtime::hold`]); all of it is given back when it returns, so
    /// the accounting is the same whichever engine (or statement) consumes the result.
    pub fn select(
        &mut self,
        q: &Select,
        outer: Option<&Frame>,
        vars: &[Value],
    ) -> Result<Vec<Vec<Value>>> {
        let before = self.mem_used;
        let r = self.select_inner(q, outer, vars);
        self.mem_used = before;
        r
    }

    fn select_inner(
        &mut self,
        q: &Select,
        outer: Option<&Frame>,
        vars: &[Value],
    ) -> Result<Vec<Vec<Value>>> {
        if let Some(rows) = self.select_one_table(q, outer, vars)? {
            return Ok(rows);
        }
        // derived tables once
        let mut derived: Vec<Option<Vec<Vec<Value>>>> = Vec::with_capacity(q.sources.len());
        for s in &q.sources {
            derived.push(match &s.kind {
                SourceKind::Sub(sq) => Some(self.select(sq, outer, vars)?),
                SourceKind::SetOp {
                    op,
                    all,
                    left,
                    right,
                } => Some(self.set_op(*op, *all, left, right, outer, vars)?),
                SourceKind::Recursive {
                    id,
                    all,
                    anchor,
                    step,
                } => Some(self.recursive(*id, *all, anchor, step, outer, vars)?),
                SourceKind::WorkTable(id) => {
                    let rows = self
                        .work
                        .iter()
                        .rev()
                        .find(|(w, _)| w == id)
                        .map(|(_, r)| r.clone())
                        .unwrap_or_default();
                    // reading the work table costs what reading rows costs
                    self.charge(gas::ROW_READ.saturating_mul(rows.len() as u64))?;
                    Some(rows)
                }
                // arguments that read earlier FROM items: called per row of those (`join`)
                SourceKind::Function { lateral: true, .. } => None,
                SourceKind::Function { func, args, .. } => {
                    let fr = Frame {
                        row: &[],
                        parent: outer,
                    };
                    let mut v = Vec::with_capacity(args.len());
                    for a in args {
                        v.push(self.eval(a, &fr, vars)?);
                    }
                    Some(self.call_rows(*func, v)?)
                }
                SourceKind::Unnest { lateral: true, .. } => None,
                SourceKind::Unnest { arg, .. } => {
                    let fr = Frame {
                        row: &[],
                        parent: outer,
                    };
                    let v = self.eval(arg, &fr, vars)?;
                    Some(self.unnest_rows(v)?)
                }
                SourceKind::Table { .. } => None,
            });
        }
        let mut row = vec![Value::Null; q.width];
        let mut out: Vec<(Vec<Value>, Vec<Value>)> = match &q.agg {
            // no aggregation: rows are projected as they are produced
            None => {
                let mut sink = Sink::Out(Vec::new());
                self.join(q, 0, &mut row, outer, vars, &derived, &mut sink)?;
                match sink {
                    Sink::Out(o) => o,
                    Sink::Raw(_) => Vec::new(),
                }
            }
            Some(a) => {
                let mut sink = Sink::Raw(Vec::new());
                self.join(q, 0, &mut row, outer, vars, &derived, &mut sink)?;
                let joined = match sink {
                    Sink::Raw(r) => r,
                    Sink::Out(_) => Vec::new(),
                };
                let rows = self.aggregate(a, joined, outer, vars)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let fr = Frame {
                        row: r,
                        parent: outer,
                    };
                    self.emit(q, &fr, vars, &mut out)?;
                }
                out
            }
        };
        if q.distinct {
            let mut seen = BTreeSet::new();
            let mut bytes = 0usize;
            out.retain(|(_, p)| {
                let enc = encode_key_tuple(p);
                let len = enc.len();
                let new = seen.insert(enc);
                if new {
                    bytes = bytes.saturating_add(len + ROW_SET_OVERHEAD);
                }
                new
            });
            self.hold(bytes)?;
        }
        if !q.order.is_empty() {
            let order = &q.order;
            out.sort_by(|(a, _), (b, _)| order_cmp(order, a, b));
        }
        let fr = Frame {
            row: &[],
            parent: outer,
        };
        let offset = match &q.offset {
            Some(e) => count_arg(&self.eval(e, &fr, vars)?, "OFFSET")?,
            None => 0,
        };
        let limit = match &q.limit {
            Some(e) => match self.eval(e, &fr, vars)? {
                Value::Null => usize::MAX,
                v => count_arg(&v, "LIMIT")?,
            },
            None => usize::MAX,
        };
        Ok(out
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(_, p)| p)
            .collect())
    }

    /// The common shape `SELECT exprs FROM t [WHERE …]` (one table, no join,
    /// grouping, DISTINCT, ORDER BY, LIMIT or OFFSET; a primary-key lookup
    /// for `WHERE pk = $x`): the rows go straight from storage to the
    /// projection, without the join machinery. Same rows, order, errors and
    /// gas as the general path; `None` for any other shape.
    fn select_one_table(
        &mut self,
        q: &Select,
        outer: Option<&Frame>,
        vars: &[Value],
    ) -> Result<Option<Vec<Vec<Value>>>> {
        let Some((src, table, access)) = one_table(q) else {
            return Ok(None);
        };
        // The access path sees the same (all-NULL) row the join would give it
        // (only built when a lookup expression could read it).
        let blank = match access {
            Access::Scan => Vec::new(),
            Access::Pk(es) | Access::Index(_, es) if es.iter().all(plain_operand) => Vec::new(),
            _ => vec![Value::Null; q.width],
        };
        let fr = Frame {
            row: &blank,
            parent: outer,
        };
        let mut out = Vec::new();
        match access {
            Access::Pk(exprs) => {
                let t = &self.cat.tables[table];
                let mut key = std::mem::take(&mut self.key_buf);
                let row = self.pk_lookup(t, exprs, &fr, vars, &mut key);
                self.key_buf = key;
                if let Some(row) = row? {
                    self.filter_project(q, src.width, row, outer, vars, &mut out)?;
                }
            }
            _ => {
                let (rows, held) = self.held_rows(table, access, &fr, vars)?;
                for (_, row) in rows {
                    self.filter_project(q, src.width, row, outer, vars, &mut out)?;
                }
                self.release(held);
            }
        }
        Ok(Some(out))
    }

    /// WHERE and projection of one row of a one-table query (see
    /// [`Runtime::select_one_table`]).
    fn filter_project(
        &mut self,
        q: &Select,
        width: usize,
        mut row: Vec<Value>,
        outer: Option<&Frame>,
        vars: &[Value],
        out: &mut Vec<Vec<Value>>,
    ) -> Result<()> {
        if row.len() != q.width {
            row.truncate(width);
            row.resize(q.width, Value::Null);
        }
        let fr = Frame {
            row: &row,
            parent: outer,
        };
        if let Some(fl) = &q.filter {
            if truth(&self.eval(fl, &fr, vars)?)? != Some(true) {
                return Ok(());
            }
        }
        self.charge(gas::ROW_OUT)?;
        let mut p = Vec::with_capacity(q.proj.len());
        for e in &q.proj {
            p.push(self.eval(e, &fr, vars)?);
        }
        self.hold(gas::row_bytes(&p))?;
        out.push(p);
        Ok(())
    }

    /// HAVING, projection and ORDER BY keys of one (joined or grouped) row.
    fn emit(
        &mut self,
        q: &Select,
        fr: &Frame,
        vars: &[Value],
        out: &mut Vec<(Vec<Value>, Vec<Value>)>,
    ) -> Result<()> {
        if let Some(h) = &q.having {
            if truth(&self.eval(h, fr, vars)?)? != Some(true) {
                return Ok(());
            }
        }
        self.charge(gas::ROW_OUT)?;
        let mut p = Vec::with_capacity(q.proj.len());
        for e in &q.proj {
            p.push(self.eval(e, fr, vars)?);
        }
        let mut keys = Vec::with_capacity(q.order.len());
        for (e, _, _) in &q.order {
            keys.push(self.eval(e, fr, vars)?);
        }
        self.hold(gas::row_bytes(&p) + gas::row_bytes(&keys))?;
        out.push((keys, p));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        q: &Select,
        k: usize,
        row: &mut Vec<Value>,
        outer: Option<&Frame>,
        vars: &[Value],
        derived: &[Option<Vec<Vec<Value>>>],
        out: &mut Sink,
    ) -> Result<()> {
        if k == q.sources.len() {
            let fr = Frame { row, parent: outer };
            if let Some(fl) = &q.filter {
                if truth(&self.eval(fl, &fr, vars)?)? != Some(true) {
                    return Ok(());
                }
            }
            match out {
                Sink::Raw(v) => {
                    self.hold(gas::row_bytes(row))?;
                    v.push(row.clone())
                }
                Sink::Out(o) => self.emit(q, &fr, vars, o)?,
            }
            return Ok(());
        }
        let s = &q.sources[k];
        let (cands, held): (Vec<Vec<Value>>, usize) = match (&s.kind, &derived[k]) {
            (_, Some(rows)) => (rows.clone(), 0),
            (SourceKind::Table { table, access }, None) => {
                let fr = Frame { row, parent: outer };
                let (rows, held) = self.held_rows(*table, access, &fr, vars)?;
                (rows.into_iter().map(|(_, r)| r).collect(), held)
            }
            (SourceKind::Function { func, args, .. }, None) => {
                // LATERAL: the arguments read the row joined so far
                let fr = Frame { row, parent: outer };
                let mut v = Vec::with_capacity(args.len());
                for a in args {
                    v.push(self.eval(a, &fr, vars)?);
                }
                (self.call_rows(*func, v)?, 0)
            }
            (SourceKind::Unnest { arg, .. }, None) => {
                let fr = Frame { row, parent: outer };
                let v = self.eval(arg, &fr, vars)?;
                (self.unnest_rows(v)?, 0)
            }
            (
                SourceKind::Sub(_)
                | SourceKind::SetOp { .. }
                | SourceKind::Recursive { .. }
                | SourceKind::WorkTable(_),
                None,
            ) => (Vec::new(), 0),
        };
        let mut matched = false;
        for c in cands {
            for (i, v) in c.into_iter().enumerate().take(s.width) {
                row[s.offset + i] = v;
            }
            if let Some(on) = &s.on {
                let fr = Frame { row, parent: outer };
                if truth(&self.eval(on, &fr, vars)?)? != Some(true) {
                    continue;
                }
            }
            matched = true;
            self.join(q, k + 1, row, outer, vars, derived, out)?;
        }
        self.release(held);
        if !matched && s.join == JoinKind::Left {
            for i in 0..s.width {
                row[s.offset + i] = Value::Null;
            }
            self.join(q, k + 1, row, outer, vars, derived, out)?;
        }
        Ok(())
    }

    /// Rows of a `WITH RECURSIVE` query: the anchor's, then each iteration's step over the
    /// previous iteration's new rows, until one adds none (UNION: rows already produced do
    /// not count as new). Bounded by gas (work rows are charged as reads) and memory.
    fn recursive(
        &mut self,
        id: usize,
        all: bool,
        anchor: &Select,
        step: &Select,
        outer: Option<&Frame>,
        vars: &[Value],
    ) -> Result<Vec<Vec<Value>>> {
        let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut out: Vec<Vec<Value>> = Vec::new();
        let mut fresh: Vec<Vec<Value>> = Vec::new();
        for row in self.select(anchor, outer, vars)? {
            if all || seen.insert(encode_key_tuple(&row)) {
                fresh.push(row);
            }
        }
        while !fresh.is_empty() {
            let bytes: usize = fresh.iter().map(|r| gas::row_bytes(r)).sum();
            self.hold(bytes)?;
            out.extend(fresh.iter().cloned());
            self.work.push((id, std::mem::take(&mut fresh)));
            let r = self.select(step, outer, vars);
            self.work.pop();
            for row in r? {
                if all || seen.insert(encode_key_tuple(&row)) {
                    fresh.push(row);
                }
            }
        }
        Ok(out)
    }

    /// Rows of `left op [ALL] right`. Rows compare by their key encoding, so NULLs match
    /// NULLs and `1 = 1.0` as in PostgreSQL; without ALL the result has no duplicates (first
    /// occurrences, left before right); INTERSECT/EXCEPT ALL keep `min(m, n)` / `m - n` copies.
    fn set_op(
        &mut self,
        op: SetOpKind,
        all: bool,
        left: &Select,
        right: &Select,
        outer: Option<&Frame>,
        vars: &[Value],
    ) -> Result<Vec<Vec<Value>>> {
        let l = self.select(left, outer, vars)?;
        let r = self.select(right, outer, vars)?;
        let held: usize = l.iter().chain(r.iter()).map(|x| gas::row_bytes(x)).sum();
        self.hold(held)?;
        let mut out = Vec::new();
        let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
        match op {
            SetOpKind::Union => {
                for row in l.into_iter().chain(r) {
                    if all || seen.insert(encode_key_tuple(&row)) {
                        out.push(row);
                    }
                }
            }
            SetOpKind::Intersect | SetOpKind::Except => {
                let mut counts: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
                for row in &r {
                    *counts.entry(encode_key_tuple(row)).or_insert(0) += 1;
                }
                for row in l {
                    let k = encode_key_tuple(&row);
                    let n = counts.get_mut(&k);
                    let in_right = n.as_ref().is_some_and(|n| **n > 0);
                    let keep = if op == SetOpKind::Intersect {
                        in_right
                    } else {
                        !in_right
                    };
                    if all {
                        if let Some(n) = n {
                            if *n > 0 {
                                *n -= 1;
                            }
                        }
                        if keep {
                            out.push(row);
                        }
                    } else if keep && seen.insert(k) {
                        out.push(row);
                    }
                }
            }
        }
        self.hold(seen.iter().map(|k| k.len() + ROW_SET_OVERHEAD).sum())?;
        Ok(out)
    }

    fn aggregate(
        &mut self,
        a: &AggPlan,
        rows: Vec<Vec<Value>>,
        outer: Option<&Frame>,
        vars: &[Value],
    ) -> Result<Vec<Vec<Value>>> {
        struct Acc {
            count: i64,
            val: Value,
            seen: BTreeSet<Vec<u8>>,
            /// string_agg with ORDER BY: (sort keys, separator, value), sorted at the end.
            items: Vec<(Vec<Value>, String, String)>,
        }
        let mut groups: BTreeMap<Vec<u8>, (Vec<Value>, Vec<Acc>)> = BTreeMap::new();
        let new_accs = || {
            a.aggs
                .iter()
                .map(|_| Acc {
                    count: 0,
                    val: Value::Null,
                    seen: BTreeSet::new(),
                    items: Vec::new(),
                })
                .collect::<Vec<_>>()
        };
        if a.groups.is_empty() {
            groups.insert(Vec::new(), (Vec::new(), new_accs()));
        }
        for r in &rows {
            let fr = Frame {
                row: r,
                parent: outer,
            };
            let mut gv = Vec::with_capacity(a.groups.len());
            for g in &a.groups {
                gv.push(self.eval(g, &fr, vars)?);
            }
            let key = encode_key_tuple(&gv);
            if !groups.contains_key(&key) {
                self.hold(key.len() + gas::row_bytes(&gv) + 64 * a.aggs.len())?;
            }
            let entry = groups.entry(key).or_insert_with(|| (gv, new_accs()));
            for (call, acc) in a.aggs.iter().zip(entry.1.iter_mut()) {
                let v = match &call.arg {
                    Some(e) => self.eval(e, &fr, vars)?,
                    None => Value::Bool(true),
                };
                if v.is_null() {
                    continue;
                }
                if call.distinct {
                    let enc = encode_key_tuple(std::slice::from_ref(&v));
                    let len = enc.len();
                    if !acc.seen.insert(enc) {
                        continue;
                    }
                    self.hold(len + ROW_SET_OVERHEAD)?;
                }
                acc.count += 1;
                acc.val = match call.func {
                    AggFn::CountStar | AggFn::Count => Value::Null,
                    AggFn::BoolAnd | AggFn::BoolOr => {
                        let b = matches!(v, Value::Bool(true));
                        match (&acc.val, call.func) {
                            (Value::Bool(x), AggFn::BoolAnd) => Value::Bool(*x && b),
                            (Value::Bool(x), _) => Value::Bool(*x || b),
                            _ => Value::Bool(b),
                        }
                    }
                    AggFn::StringAgg => {
                        let sep = match &call.arg2 {
                            Some(e) => self.eval(e, &fr, vars)?,
                            None => Value::Null,
                        };
                        let sep = if sep.is_null() {
                            String::new()
                        } else {
                            sep.to_text()
                        };
                        let text = v.to_text();
                        if !call.order.is_empty() {
                            let mut keys = Vec::with_capacity(call.order.len());
                            for (e, _, _) in &call.order {
                                keys.push(self.eval(e, &fr, vars)?);
                            }
                            self.hold(gas::row_bytes(&keys) + sep.len() + text.len())?;
                            acc.items.push((keys, sep, text));
                            continue;
                        }
                        self.hold(sep.len() + text.len())?;
                        match std::mem::replace(&mut acc.val, Value::Null) {
                            Value::Text(mut s) => {
                                s.push_str(&sep);
                                s.push_str(&text);
                                Value::Text(s)
                            }
                            _ => Value::Text(text),
                        }
                    }
                    AggFn::Sum | AggFn::Avg => {
                        // avg(real) adds in DOUBLE PRECISION, sum(real) in REAL (as PostgreSQL)
                        let v = match (call.func, v) {
                            (AggFn::Avg, Value::Real(x)) => Value::Float(f64::from(x)),
                            (_, v @ (Value::Int(_) | Value::Float(_) | Value::Real(_))) => v,
                            (_, v) => v.cast(&SqlType::Numeric(None))?,
                        };
                        if acc.val.is_null() {
                            v
                        } else {
                            arith(ArithOp::Add, &acc.val, &v)?
                        }
                    }
                    AggFn::Min | AggFn::Max => {
                        if acc.val.is_null() {
                            v
                        } else {
                            let o = sql_cmp(&v, &acc.val)?;
                            let better = match call.func {
                                AggFn::Min => o == Some(Ordering::Less),
                                _ => o == Some(Ordering::Greater),
                            };
                            if better {
                                v
                            } else {
                                std::mem::replace(&mut acc.val, Value::Null)
                            }
                        }
                    }
                };
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (_, (mut gv, accs)) in groups {
            self.charge(gas::ROW_OUT)?;
            for (call, mut acc) in a.aggs.iter().zip(accs) {
                if call.func == AggFn::StringAgg && !call.order.is_empty() {
                    let order = &call.order;
                    acc.items
                        .sort_by(|(a, _, _), (b, _, _)| order_cmp(order, a, b));
                    let mut s: Option<String> = None;
                    for (_, sep, t) in acc.items.drain(..) {
                        match &mut s {
                            None => s = Some(t),
                            Some(x) => {
                                x.push_str(&sep);
                                x.push_str(&t);
                            }
                        }
                    }
                    acc.val = s.map(Value::Text).unwrap_or(Value::Null);
                }
                gv.push(match call.func {
                    AggFn::BoolAnd | AggFn::BoolOr | AggFn::StringAgg => acc.val,
                    AggFn::CountStar | AggFn::Count => Value::Int(acc.count),
                    AggFn::Sum | AggFn::Min | AggFn::Max => acc.val,
                    AggFn::Avg => match &acc.val {
                        Value::Null => Value::Null,
                        Value::Float(s) => {
                            // the count is exact in f64 (far below 2^53 rows)
                            Value::Float(float::arith64(ArithOp::Div, *s, acc.count as f64)?)
                        }
                        v => match v.as_decimal() {
                            None => Value::Null,
                            Some(s) => Value::Num(s.div(&Decimal::from_i64(acc.count))?),
                        },
                    },
                });
            }
            out.push(gv);
        }
        Ok(out)
    }

    // --------------------------------------------------------------- DML ---

    /// Runs a SQL statement plan. SELECT returns its rows as `rows`. What the statement
    /// holds counts against the memory budget until it ends.
    pub fn run_plan(&mut self, p: &SqlPlan, vars: &[Value]) -> Result<DmlResult> {
        let before = self.mem_used;
        let r = self.run_plan_inner(p, vars);
        self.mem_used = before;
        r
    }

    fn run_plan_inner(&mut self, p: &SqlPlan, vars: &[Value]) -> Result<DmlResult> {
        match p {
            SqlPlan::Select(q) => {
                let rows = self.select(q, None, vars)?;
                Ok(DmlResult {
                    count: rows.len() as u64,
                    rows,
                })
            }
            SqlPlan::Insert {
                table,
                cols,
                source,
                returning,
            } => {
                self.writable()?;
                let inputs: Vec<Vec<Value>> = match source {
                    InsertSource::Values(rows) => {
                        let mut v = Vec::with_capacity(rows.len());
                        for r in rows {
                            let mut x = Vec::with_capacity(r.len());
                            for e in r {
                                x.push(self.eval(e, &EMPTY, vars)?);
                            }
                            v.push(x);
                        }
                        v
                    }
                    InsertSource::Query(q) => self.select(q, None, vars)?,
                };
                let cat = self.cat;
                let t = &cat.tables[*table];
                let mut res = DmlResult {
                    count: 0,
                    rows: Vec::new(),
                };
                for input in inputs {
                    let mut row = vec![Value::Null; t.columns.len()];
                    let mut given = vec![false; t.columns.len()];
                    for (k, v) in cols.iter().zip(input) {
                        row[*k] = v;
                        given[*k] = true;
                    }
                    for (i, c) in t.columns.iter().enumerate() {
                        if !given[i] {
                            if let Some(d) = &c.default {
                                row[i] = self.eval(d, &EMPTY, vars)?;
                            }
                        }
                    }
                    let row = self.validate(t, row, vars)?;
                    let key = self.new_row_key(t, &row)?;
                    if self.kv.get(&key).map_err(st_err)?.is_some() {
                        return Err(SqlError::Constraint(format!(
                            "duplicate key value violates primary key of \"{}\"",
                            t.name
                        )));
                    }
                    self.write_row(t, &key, None, &row)?;
                    res.count += 1;
                    if let Some(r) = returning {
                        res.rows.push(self.project(&r.exprs, &row, vars)?);
                    }
                }
                Ok(res)
            }
            SqlPlan::Update {
                table,
                access,
                filter,
                sets,
                returning,
            } => {
                self.writable()?;
                let cat = self.cat;
                let t = &cat.tables[*table];
                let targets = self.targets(*table, access, filter, vars)?;
                let mut res = DmlResult {
                    count: 0,
                    rows: Vec::new(),
                };
                for (key, old) in targets {
                    let new = self.update_row(t, &key, old, sets, vars)?;
                    res.count += 1;
                    if let Some(r) = returning {
                        res.rows.push(self.project(&r.exprs, &new, vars)?);
                    }
                }
                Ok(res)
            }
            SqlPlan::Delete {
                table,
                access,
                filter,
                returning,
            } => {
                self.writable()?;
                let cat = self.cat;
                let t = &cat.tables[*table];
                let targets = self.targets(*table, access, filter, vars)?;
                let mut res = DmlResult {
                    count: 0,
                    rows: Vec::new(),
                };
                for (key, old) in targets {
                    self.delete_row(t, &key, Some(&old))?;
                    res.count += 1;
                    if let Some(r) = returning {
                        res.rows.push(self.project(&r.exprs, &old, vars)?);
                    }
                }
                Ok(res)
            }
        }
    }

    /// Applies an UPDATE's SET list to one target row (read under the full
    /// row key `key`) and stores the result; returns the new row.
    fn update_row(
        &mut self,
        t: &Table,
        key: &[u8],
        old: Vec<Value>,
        sets: &[(usize, Expr)],
        vars: &[Value],
    ) -> Result<Vec<Value>> {
        // every SET expression sees the old row
        let mut vals = SetVals::None;
        {
            let fr = Frame {
                row: &old,
                parent: None,
            };
            for (_, e) in sets {
                vals.push(self.eval(e, &fr, vars)?);
            }
        }
        // Index maintenance needs the old row; without indexes the new row
        // is built in the old one's place (no copy).
        let (mut new, old) = if t.indexes.is_empty() {
            (old, None)
        } else {
            (old.clone(), Some(old))
        };
        vals.each(|i, v| {
            if let Some(slot) = sets.get(i).and_then(|(c, _)| new.get_mut(*c)) {
                *slot = v;
            }
            Ok(())
        })?;
        let new = self.validate_update(t, new, sets, vars)?;
        // An unchanged primary key encodes to the key the row was read under.
        let new_key = if sets.iter().any(|(c, _)| t.pk.contains(c)) {
            Some(self.new_row_key(t, &new)?).filter(|k| k.as_slice() != key)
        } else {
            None
        };
        match new_key {
            Some(new_key) => {
                if self.kv.get(&new_key).map_err(st_err)?.is_some() {
                    return Err(SqlError::Constraint(format!(
                        "duplicate key value violates primary key of \"{}\"",
                        t.name
                    )));
                }
                self.delete_row(t, key, old.as_deref())?;
                self.write_row(t, &new_key, None, &new)?;
            }
            None => self.write_row(t, key, old.as_deref(), &new)?,
        }
        Ok(new)
    }

    // ------------------------------------------------- point statements ---

    /// Runs a statement that [`is_point_statement`] accepted — `SELECT … INTO
    /// … FROM t WHERE pk = …` or `UPDATE t SET … WHERE pk = …` without
    /// RETURNING — straight from the primary-key lookup to the variables,
    /// without result lists. The JIT resolves this shape when it compiles a
    /// function and calls this for it; the outcome (variables, FOUND, writes,
    /// errors, gas) is exactly that of [`exec_sql`], to which any other
    /// statement goes.
    pub fn point_statement(
        &mut self,
        plan: &SqlPlan,
        into: &[usize],
        strict: bool,
        vars: &mut [Value],
        slots: &[SqlType],
    ) -> Result<()> {
        let found = match plan {
            SqlPlan::Select(q) => {
                let Some((src, table, Access::Pk(exprs))) = one_table(q) else {
                    return exec_sql(self, plan, into, strict, vars, slots);
                };
                let cat = self.cat;
                let t = &cat.tables[table];
                let blank = if exprs.iter().all(plain_operand) {
                    Vec::new()
                } else {
                    vec![Value::Null; q.width]
                };
                let fr = Frame {
                    row: &blank,
                    parent: None,
                };
                let mut key = std::mem::take(&mut self.key_buf);
                let mut row = std::mem::take(&mut self.row_buf);
                let checked = filter_is_the_key(&q.filter, t, exprs, &fr, vars);
                self.point_cache = None;
                let hit = self.pk_lookup_len_into(t, exprs, &fr, vars, &mut key, &mut row);
                self.key_buf = key;
                let (vals, len) = match hit? {
                    Some(len) => (
                        self.point_project(q, src.width, &mut row, vars, checked)?,
                        Some(len),
                    ),
                    None => (None, None),
                };
                // the row stays as decoded (no projection resized it): a point UPDATE of
                // the same key may start from it
                self.point_cache = len.filter(|_| row.len() == t.columns.len());
                self.row_buf = row;
                let found = vals.is_some();
                if !into.is_empty() {
                    if strict && !found {
                        return Err(SqlError::Exception("query returned no rows".into()));
                    }
                    match vals {
                        Some(vals) => {
                            vals.each(|i, v| match into.get(i) {
                                Some(slot) => assign(vars, slots, *slot, v),
                                None => Ok(()),
                            })?;
                        }
                        None => {
                            for slot in into {
                                assign(vars, slots, *slot, Value::Null)?;
                            }
                        }
                    }
                }
                found
            }
            SqlPlan::Update {
                table,
                access: Access::Pk(exprs),
                filter,
                sets,
                returning: None,
            } if into.is_empty() => {
                self.writable()?;
                let cat = self.cat;
                let t = &cat.tables[*table];
                let mut key = std::mem::take(&mut self.upd_key);
                let checked = filter_is_the_key(filter, t, exprs, &EMPTY, vars);
                let built = self.pk_key_into(t, exprs, &EMPTY, vars, &mut key)?;
                // the row a point SELECT of this key just decoded, if unchanged since: the
                // read is charged as the lookup would charge it, without reading again
                let cached = match self.point_cache {
                    Some(len) if built && key == self.key_buf => Some(len),
                    _ => None,
                };
                let (mut old, hit) = match cached {
                    Some(len) => {
                        self.point_cache = None;
                        self.charge(gas::ROW_READ)?;
                        self.charge(gas::PER_KB * (len as u64 / 1024))?;
                        (std::mem::take(&mut self.row_buf), true)
                    }
                    None => {
                        let mut old = std::mem::take(&mut self.upd_buf);
                        let hit = built && {
                            self.charge(gas::ROW_READ)?;
                            self.get_row_into(t, &key, &mut old)?
                        };
                        (old, hit)
                    }
                };
                let found = hit && (checked || self.passes(filter, &old, vars)?);
                if found {
                    // the new row is built in the old one's buffer (tables without indexes)
                    old = self.update_row(t, &key, old, sets, vars)?;
                }
                self.upd_key = key;
                if cached.is_some() {
                    self.row_buf = old;
                } else {
                    self.upd_buf = old;
                }
                found
            }
            _ => return exec_sql(self, plan, into, strict, vars, slots),
        };
        if let Some(f) = vars.get_mut(FOUND_SLOT) {
            *f = Value::Bool(found);
        }
        Ok(())
    }

    /// WHERE and projection of the row of a point SELECT (`None`: filtered
    /// out).
    fn point_project(
        &mut self,
        q: &Select,
        width: usize,
        row: &mut Vec<Value>,
        vars: &[Value],
        checked: bool,
    ) -> Result<Option<SetVals>> {
        if row.len() != q.width {
            row.truncate(width);
            row.resize(q.width, Value::Null);
        }
        if !checked && !self.passes(&q.filter, row, vars)? {
            return Ok(None);
        }
        self.charge(gas::ROW_OUT)?;
        let fr = Frame { row, parent: None };
        let mut vals = SetVals::None;
        for e in &q.proj {
            vals.push(self.eval(e, &fr, vars)?);
        }
        Ok(Some(vals))
    }

    /// Whether `row` passes an optional WHERE.
    fn passes(&mut self, filter: &Option<Expr>, row: &[Value], vars: &[Value]) -> Result<bool> {
        match filter {
            None => Ok(true),
            Some(fl) => {
                let fr = Frame { row, parent: None };
                Ok(truth(&self.eval(fl, &fr, vars)?)? == Some(true))
            }
        }
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(SqlError::Permission(
                "cannot write in a read-only query".into(),
            ));
        }
        Ok(())
    }

    fn project(&mut self, exprs: &[Expr], row: &[Value], vars: &[Value]) -> Result<Vec<Value>> {
        let fr = Frame { row, parent: None };
        let mut out = Vec::with_capacity(exprs.len());
        for e in exprs {
            out.push(self.eval(e, &fr, vars)?);
        }
        Ok(out)
    }

    fn targets(
        &mut self,
        ti: usize,
        access: &Access,
        filter: &Option<Expr>,
        vars: &[Value],
    ) -> Result<Vec<(Vec<u8>, Vec<Value>)>> {
        if let Access::Pk(exprs) = access {
            // at most one row: no intermediate list
            let cat = self.cat;
            let t = &cat.tables[ti];
            let mut key = Vec::with_capacity(self.prefix.len() + 5 + 32);
            let Some(row) = self.pk_lookup(t, exprs, &EMPTY, vars, &mut key)? else {
                return Ok(Vec::new());
            };
            if let Some(fl) = filter {
                let fr = Frame {
                    row: &row,
                    parent: None,
                };
                if truth(&self.eval(fl, &fr, vars)?)? != Some(true) {
                    return Ok(Vec::new());
                }
            }
            return Ok(vec![(key, row)]);
        }
        let rows = self.table_rows(ti, access, &EMPTY, vars)?;
        let mut out = Vec::with_capacity(rows.len());
        for (pk, r) in rows {
            if let Some(fl) = filter {
                let fr = Frame {
                    row: &r,
                    parent: None,
                };
                if truth(&self.eval(fl, &fr, vars)?)? != Some(true) {
                    continue;
                }
            }
            out.push((pk, r));
        }
        Ok(out)
    }

    /// Casts to column types and checks NOT NULL and CHECK constraints.
    fn validate(&mut self, t: &Table, row: Vec<Value>, vars: &[Value]) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(row.len());
        for (v, c) in row.into_iter().zip(&t.columns) {
            let v = v.cast_owned(&c.ty).map_err(|e| match e {
                SqlError::Overflow(m) => SqlError::Overflow(format!("{m} (column \"{}\")", c.name)),
                other => other,
            })?;
            if v.is_null() && c.not_null {
                return Err(SqlError::Constraint(format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    c.name, t.name
                )));
            }
            out.push(v);
        }
        for (chk, text) in &t.checks {
            let fr = Frame {
                row: &out,
                parent: None,
            };
            if truth(&self.eval(chk, &fr, vars)?)? == Some(false) {
                return Err(SqlError::Constraint(format!(
                    "new row for relation \"{}\" violates check constraint {text}",
                    t.name
                )));
            }
        }
        Ok(out)
    }

    /// Like `validate` for UPDATE: unchanged columns are already valid.
    fn validate_update(
        &mut self,
        t: &Table,
        mut row: Vec<Value>,
        sets: &[(usize, Expr)],
        vars: &[Value],
    ) -> Result<Vec<Value>> {
        for (ci, _) in sets {
            let (Some(c), Some(v)) = (t.columns.get(*ci), row.get_mut(*ci)) else {
                return Err(SqlError::Storage("bad column in UPDATE".into()));
            };
            let nv = std::mem::replace(v, Value::Null)
                .cast_owned(&c.ty)
                .map_err(|e| match e {
                    SqlError::Overflow(m) => {
                        SqlError::Overflow(format!("{m} (column \"{}\")", c.name))
                    }
                    other => other,
                })?;
            if nv.is_null() && c.not_null {
                return Err(SqlError::Constraint(format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    c.name, t.name
                )));
            }
            *v = nv;
        }
        for (chk, text) in &t.checks {
            let fr = Frame {
                row: &row,
                parent: None,
            };
            if truth(&self.eval(chk, &fr, vars)?)? == Some(false) {
                return Err(SqlError::Constraint(format!(
                    "new row for relation \"{}\" violates check constraint {text}",
                    t.name
                )));
            }
        }
        Ok(row)
    }

    /// The row key of a new row: its primary key, or the next row id of a
    /// table without one.
    fn new_row_key(&mut self, t: &Table, row: &[Value]) -> Result<Vec<u8>> {
        if !t.pk.is_empty() {
            let mut k = self.row_key(t, &[]);
            for &c in &t.pk {
                let v = row
                    .get(c)
                    .ok_or_else(|| SqlError::Storage("bad primary-key column".into()))?;
                encode_key(&mut k, v);
            }
            return Ok(k);
        }
        let key = self.table_prefix(keys::SEQ, t.id);
        let next = match self.kv.get(&key).map_err(st_err)? {
            Some(b) => i64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| SqlError::Storage("bad sequence".into()))?,
            ),
            None => 1,
        };
        self.kv
            .put(&key, &(next + 1).to_be_bytes())
            .map_err(st_err)?;
        let mut k = self.row_key(t, &[]);
        encode_key(&mut k, &Value::Int(next));
        Ok(k)
    }

    fn index_vals(_t: &Table, ix: &Index, row: &[Value]) -> Vec<Value> {
        ix.cols.iter().map(|&c| row[c].clone()).collect()
    }

    /// Stores `row` under its full row key `key`, maintaining the indexes
    /// (`old`: the row it replaces, whose index entries are moved).
    fn write_row(
        &mut self,
        t: &Table,
        key: &[u8],
        old: Option<&[Value]>,
        row: &[Value],
    ) -> Result<()> {
        let pk = self.pk_of(key);
        // encoded into the runtime's buffer: the store copies it (an overlay into buffers
        // it keeps from call to call)
        let mut bytes = std::mem::take(&mut self.enc_buf);
        encode_row_into(&mut bytes, row)?;
        let r = self.write_row_bytes(t, key, pk, old, row, &bytes);
        self.enc_buf = bytes;
        r
    }

    /// [`Runtime::write_row`] once the row is encoded (`bytes`).
    fn write_row_bytes(
        &mut self,
        t: &Table,
        key: &[u8],
        pk: &[u8],
        old: Option<&[Value]>,
        row: &[Value],
        bytes: &[u8],
    ) -> Result<()> {
        self.charge(gas::ROW_WRITE + gas::PER_KB * (bytes.len() as u64 / 1024))?;
        for ix in &t.indexes {
            let nv = Self::index_vals(t, ix, row);
            if let Some(old) = old {
                let ov = Self::index_vals(t, ix, old);
                if encode_key_tuple(&ov) == encode_key_tuple(&nv) {
                    continue;
                }
                let mut k = self.index_prefix(t, ix, &ov);
                k.extend_from_slice(pk);
                self.kv.delete(&k).map_err(st_err)?;
            }
            self.charge(gas::ROW_WRITE)?;
            let p = self.index_prefix(t, ix, &nv);
            if ix.unique && !nv.iter().any(|v| v.is_null()) {
                let end = prefix_end(&p);
                let mut it = self.kv.scan_limit(&p, &end, 1);
                if let Some(e) = it.next() {
                    let (k, _) = e.map_err(st_err)?;
                    if k.get(p.len()..) != Some(pk) {
                        return Err(SqlError::Constraint(format!(
                            "duplicate key value violates unique constraint \"{}\"",
                            ix.name
                        )));
                    }
                }
            }
            let mut k = p;
            k.extend_from_slice(pk);
            self.kv.put(&k, &[]).map_err(st_err)?;
        }
        self.forget_cached(key);
        self.kv.put(key, bytes).map_err(st_err)?;
        Ok(())
    }

    /// Deletes the row under the full row key `key` and (given the old row)
    /// its index entries.
    fn delete_row(&mut self, t: &Table, key: &[u8], old: Option<&[Value]>) -> Result<()> {
        self.charge(gas::ROW_WRITE)?;
        if let Some(old) = old {
            let pk = self.pk_of(key);
            for ix in &t.indexes {
                let mut k = self.index_prefix(t, ix, &Self::index_vals(t, ix, old));
                k.extend_from_slice(pk);
                self.kv.delete(&k).map_err(st_err)?;
            }
        }
        self.forget_cached(key);
        self.kv.delete(key).map_err(st_err)
    }

    /// Builds a new index over existing rows (upgrade with CREATE INDEX).
    pub fn build_index(&mut self, ti: usize, ix_pos: usize) -> Result<()> {
        let before = self.mem_used;
        let r = self.build_index_inner(ti, ix_pos);
        self.mem_used = before;
        r
    }

    fn build_index_inner(&mut self, ti: usize, ix_pos: usize) -> Result<()> {
        let cat = self.cat;
        let t = &cat.tables[ti];
        let ix = &t.indexes[ix_pos];
        for (key, row) in self.table_rows(ti, &Access::Scan, &EMPTY, &[])? {
            let pk = self.pk_of(&key);
            self.charge(gas::ROW_WRITE)?;
            let vals = Self::index_vals(t, ix, &row);
            let p = self.index_prefix(t, ix, &vals);
            if ix.unique && !vals.iter().any(|v| v.is_null()) {
                let end = prefix_end(&p);
                if self.kv.scan_limit(&p, &end, 1).next().is_some() {
                    return Err(SqlError::Constraint(format!(
                        "could not create unique index \"{}\": duplicate values",
                        ix.name
                    )));
                }
            }
            let mut k = p;
            k.extend_from_slice(pk);
            self.kv.put(&k, &[]).map_err(st_err)?;
        }
        Ok(())
    }
}

/// ORDER BY comparison of two key lists (`order` gives each key's direction and NULL
/// placement); a stable sort keeps equal rows in input order.
fn order_cmp(order: &[(Expr, bool, bool)], a: &[Value], b: &[Value]) -> Ordering {
    for (k, (_, desc, nulls_first)) in order.iter().enumerate() {
        let (Some(x), Some(y)) = (a.get(k), b.get(k)) else {
            return Ordering::Equal;
        };
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if *nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if *nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            _ => {
                let o = sort_cmp(x, y);
                if *desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// The part of a scanned key after its prefix (a backend returning keys
/// outside the requested range is a storage error, not a panic).
fn suffix(k: &[u8], plen: usize) -> Result<&[u8]> {
    k.get(plen..).ok_or_else(outside_range)
}

fn outside_range() -> SqlError {
    SqlError::Storage("scan returned a key outside its range".into())
}

/// The one source, its table and access path of `SELECT exprs FROM t [WHERE
/// …]` with no join, grouping, HAVING, DISTINCT, ORDER BY, LIMIT or OFFSET.
fn one_table(q: &Select) -> Option<(&Source, usize, &Access)> {
    let [src] = q.sources.as_slice() else {
        return None;
    };
    let SourceKind::Table { table, access } = &src.kind else {
        return None;
    };
    let simple = src.join == JoinKind::Inner
        && src.on.is_none()
        && src.offset == 0
        && src.width == q.width
        && q.agg.is_none()
        && q.having.is_none()
        && !q.distinct
        && q.order.is_empty()
        && q.limit.is_none()
        && q.offset.is_none();
    simple.then_some((src, *table, access))
}

/// A lookup operand that cannot read the current row.
fn plain_operand(e: &Expr) -> bool {
    matches!(e, Expr::Var(_) | Expr::Const(_))
}

/// Whether [`Runtime::point_statement`] runs `plan` (with `into` as its INTO
/// list) as a primary-key point operation.
pub fn is_point_statement(plan: &SqlPlan, into: &[usize]) -> bool {
    match plan {
        SqlPlan::Select(q) => matches!(one_table(q), Some((_, _, Access::Pk(_)))),
        SqlPlan::Update {
            access: Access::Pk(_),
            returning: None,
            ..
        } => into.is_empty(),
        _ => false,
    }
}

/// Values of an UPDATE's SET list: the usual single assignment without a
/// vector.
enum SetVals {
    None,
    One(Value),
    Many(Vec<Value>),
}

impl SetVals {
    fn push(&mut self, v: Value) {
        match self {
            SetVals::None => *self = SetVals::One(v),
            SetVals::Many(l) => l.push(v),
            SetVals::One(_) => {
                if let SetVals::One(a) = std::mem::replace(self, SetVals::None) {
                    *self = SetVals::Many(vec![a, v]);
                }
            }
        }
    }

    /// Calls `f` with each value and its position, in order.
    fn each(self, mut f: impl FnMut(usize, Value) -> Result<()>) -> Result<()> {
        match self {
            SetVals::None => Ok(()),
            SetVals::One(v) => f(0, v),
            SetVals::Many(l) => {
                for (i, v) in l.into_iter().enumerate() {
                    f(i, v)?;
                }
                Ok(())
            }
        }
    }
}

/// Decodes a stored row of `t`; rows written before `ALTER TABLE … ADD
/// COLUMN` take each added column's fill value.
pub(crate) fn decode_table_row(t: &Table, bytes: &[u8]) -> Result<Vec<Value>> {
    let mut row = Vec::with_capacity(t.columns.len());
    decode_table_row_into(t, bytes, &mut row)?;
    Ok(row)
}

/// [`decode_table_row`] into `row` (its text buffers reused: see `decode_row_into`).
fn decode_table_row_into(t: &Table, bytes: &[u8], row: &mut Vec<Value>) -> Result<()> {
    decode_row_into(row, bytes)?;
    while let Some(c) = t.columns.get(row.len()) {
        row.push(c.fill.clone());
    }
    Ok(())
}

/// Where joined rows go: kept for aggregation, or projected at once.
enum Sink {
    Raw(Vec<Vec<Value>>),
    Out(Vec<(Vec<Value>, Vec<Value>)>),
}

/// Whether `filter` is nothing but the primary-key equality a point lookup of `t` by `exprs`
/// already decided: one key column, the filter `col = e` (either way round) with `e` the very
/// variable or constant the key was built from, whose value has the column's exact type
/// (TEXT, BIGINT: encoded in place, no cast) — equal keys then mean equal values, so the row
/// the lookup found passes, and re-evaluating the filter would only repeat the lookup.
fn filter_is_the_key(
    filter: &Option<Expr>,
    t: &Table,
    exprs: &[Expr],
    f: &Frame,
    vars: &[Value],
) -> bool {
    let ([c], [e], Some(Expr::Cmp(CmpOp::Eq, a, b))) = (t.pk.as_slice(), exprs, filter) else {
        return false;
    };
    // the shape first (cheap, and usually decides), then the value's type
    let is_col = |x: &Expr| matches!(x, Expr::Col { depth: 0, idx } if idx == c);
    let same = |x: &Expr| match (x, e) {
        (Expr::Var(p), Expr::Var(q)) => p == q,
        (Expr::Const(Value::Text(p)), Expr::Const(Value::Text(q))) => p == q,
        (Expr::Const(Value::Int(p)), Expr::Const(Value::Int(q))) => p == q,
        _ => false,
    };
    if !((is_col(a) && same(b)) || (is_col(b) && same(a))) {
        return false;
    }
    let Some(col) = t.columns.get(*c) else {
        return false;
    };
    match peek(e, f, vars) {
        Some(Value::Text(_)) => matches!(col.ty, SqlType::Text(None)),
        Some(Value::Int(_)) => matches!(col.ty, SqlType::BigInt),
        _ => false,
    }
}

/// The value of a column, variable or constant without cloning it.
fn peek<'x>(e: &'x Expr, f: &Frame<'x>, vars: &'x [Value]) -> Option<&'x Value> {
    match e {
        Expr::Const(v) => Some(v),
        Expr::Var(s) => vars.get(*s),
        Expr::Col { depth, idx } => {
            let mut row = f.row;
            let mut parent = f.parent;
            for _ in 0..*depth {
                let p = parent?;
                row = p.row;
                parent = p.parent;
            }
            row.get(*idx)
        }
        _ => None,
    }
}

fn count_arg(v: &Value, what: &str) -> Result<usize> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(usize::try_from(*i).unwrap_or(usize::MAX)),
        Value::Num(d) => match d.to_i64_round() {
            Ok(i) if i >= 0 => Ok(usize::try_from(i).unwrap_or(usize::MAX)),
            _ => Err(SqlError::Type(format!("{what} must not be negative"))),
        },
        _ => Err(SqlError::Type(format!(
            "{what} must be a non-negative integer"
        ))),
    }
}

/// `x [NOT] IN (vals)` with SQL's three-valued logic: over an empty set it is false (NOT IN:
/// true) even when `x` is NULL; otherwise a NULL `x`, or no match with a NULL among the
/// values, is NULL.
fn in_values<'v>(x: &Value, vals: impl Iterator<Item = &'v Value>, neg: bool) -> Result<Value> {
    let mut vals = vals.peekable();
    if vals.peek().is_none() {
        return Ok(Value::Bool(neg));
    }
    if x.is_null() {
        return Ok(Value::Null);
    }
    let mut saw_null = false;
    for v in vals {
        match sql_cmp(x, v)? {
            Some(Ordering::Equal) => return Ok(Value::Bool(!neg)),
            None => saw_null = true,
            _ => {}
        }
    }
    Ok(if saw_null {
        Value::Null
    } else {
        Value::Bool(neg)
    })
}

/// `x op ANY (vals)` (`all` false) / `x op ALL (vals)`: ANY is true when some comparison is
/// true, else NULL when some is NULL, else false (an empty set: false); ALL is false when some
/// comparison is false, else NULL when some is NULL, else true (an empty set: true).
fn quantified<'v>(
    op: CmpOp,
    x: &Value,
    vals: impl Iterator<Item = &'v Value>,
    all: bool,
) -> Result<Value> {
    let mut saw_null = false;
    for v in vals {
        let r = sql_cmp(x, v)?.map(|o| match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        });
        match r {
            None => saw_null = true,
            Some(b) if b != all => return Ok(Value::Bool(b)),
            Some(_) => {}
        }
    }
    Ok(if saw_null {
        Value::Null
    } else {
        Value::Bool(all)
    })
}

/// A built-in scalar function over evaluated arguments.
pub fn builtin(b: Builtin, v: &[Value]) -> Result<Value> {
    if let Builtin::Greatest | Builtin::Least = b {
        let mut best: Option<&Value> = None;
        for x in v.iter().filter(|x| !x.is_null()) {
            best = Some(match best {
                None => x,
                Some(cur) => {
                    let o = sql_cmp(x, cur)?;
                    let better = if b == Builtin::Greatest {
                        o == Some(Ordering::Greater)
                    } else {
                        o == Some(Ordering::Less)
                    };
                    if better {
                        x
                    } else {
                        cur
                    }
                }
            });
        }
        return Ok(best.cloned().unwrap_or(Value::Null));
    }
    if v.iter().any(|x| x.is_null()) {
        return Ok(Value::Null);
    }
    let text = |i: usize| v.get(i).map(|x| x.to_text()).unwrap_or_default();
    let int = |i: usize| -> Result<i64> {
        match v.get(i).map(|x| x.cast(&SqlType::BigInt)) {
            Some(Ok(Value::Int(n))) => Ok(n),
            _ => Err(SqlError::Type("expected an integer argument".into())),
        }
    };
    Ok(match b {
        Builtin::Length => Value::Int(text(0).chars().count() as i64),
        Builtin::Lower => Value::Text(text(0).to_lowercase()),
        Builtin::Upper => Value::Text(text(0).to_uppercase()),
        Builtin::Trim => Value::Text(text(0).trim_matches(' ').to_string()),
        Builtin::Substr => {
            let s: Vec<char> = text(0).chars().collect();
            let from = int(1)?;
            let (start, end) = if v.len() > 2 {
                let len = int(2)?;
                if len < 0 {
                    return Err(SqlError::Type(
                        "negative substring length not allowed".into(),
                    ));
                }
                (from, from.saturating_add(len))
            } else {
                (from, i64::MAX)
            };
            // Positions past usize are past the end of any string, like usize::MAX.
            let lo = usize::try_from(start.max(1)).unwrap_or(usize::MAX) - 1;
            let hi = (usize::try_from(end.max(1)).unwrap_or(usize::MAX) - 1).min(s.len());
            Value::Text(if lo >= hi {
                String::new()
            } else {
                s[lo..hi].iter().collect()
            })
        }
        Builtin::Abs => match &v[0] {
            Value::Int(i) => Value::Int(i.checked_abs().ok_or_else(int_overflow)?),
            Value::Num(d) => Value::Num(d.abs()?),
            Value::Float(x) => Value::Float(float::canon64(x.abs())),
            Value::Real(x) => Value::Real(float::canon32(x.abs())),
            other => return Err(SqlError::Type(format!("abs({})", other.type_of()))),
        },
        // handled before the NULL check above
        Builtin::Greatest | Builtin::Least => Value::Null,
        Builtin::Float(ff) => {
            let arg = |i: usize| -> Result<f64> {
                match v.get(i).map(|x| x.cast(&SqlType::Double)) {
                    Some(Ok(Value::Float(x))) => Ok(x),
                    Some(Err(e)) => Err(e),
                    _ => Ok(0.0),
                }
            };
            Value::Float(float::call(ff, arg(0)?, arg(1)?)?)
        }
        Builtin::Round if matches!(v[0], Value::Float(_) | Value::Real(_)) => {
            let x = v[0].as_f64().unwrap_or(0.0);
            Value::Float(float::canon64(libm::rint(x)))
        }
        Builtin::Round => {
            let d = v[0].cast(&SqlType::Numeric(None))?;
            let Value::Num(d) = d else {
                return Ok(Value::Null);
            };
            let n = if v.len() > 1 { int(1)? } else { 0 };
            Value::Num(d.round(n)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        let m = |s: &str, p: &str| {
            like(
                &s.chars().collect::<Vec<_>>(),
                &p.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("hello", "h%o"));
        assert!(m("hello", "_ello"));
        assert!(!m("hello", "h_o"));
        assert!(m("", "%"));
        assert!(m("a%b", "a\\%b"));
        assert!(!m("axb", "a\\%b"));
        assert!(m("abcabc", "%abc"));
    }
}
