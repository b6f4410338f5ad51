//! The procedural interpreter: runs a compiled function's statements over
//! its variable slots, delegating expressions and SQL to the runtime.

use crate::error::{Result, SqlError};
pub use crate::exec::{assign, exec_sql};
use crate::exec::{Dispatch, Runtime, EMPTY};
use crate::ir::*;
use crate::value::{SqlType, Value};

/// The interpreter as a [`Dispatch`]: runs every function with [`run`]. The runtime's
/// dispatcher when no JIT program is installed.
pub struct Interpreter;

impl Dispatch for Interpreter {
    fn call(&self, fi: usize, rt: &mut Runtime, args: Vec<Value>) -> Result<Value> {
        run(rt, fi, args)
    }
}

enum Flow {
    Next,
    Exit(usize),
    Continue(usize),
    Return(Value),
}

/// Prepares the variable slots of a call: FOUND = false, parameters cast to
/// their declared types, everything else NULL.
pub fn init_vars(f: &Function, args: Vec<Value>) -> Result<Vec<Value>> {
    if args.len() != f.params.len() {
        return Err(SqlError::Call(format!(
            "function {} takes {} arguments, got {}",
            f.name,
            f.params.len(),
            args.len()
        )));
    }
    // The arguments' vector becomes the variables (FOUND, the parameters, then the rest),
    // without a second allocation when the caller left room for them.
    let mut vars = args;
    vars.insert(FOUND_SLOT, Value::Bool(false));
    for (a, (pname, ty)) in vars.iter_mut().skip(1).zip(&f.params) {
        let v = std::mem::replace(a, Value::Null);
        *a = v
            .cast_owned(ty)
            .map_err(|e| SqlError::Call(format!("argument {pname}: {e}")))?;
    }
    vars.resize(f.slots.len(), Value::Null);
    Ok(vars)
}

/// Casts a function result to its declared return type.
pub fn finish(f: &Function, v: Value) -> Result<Value> {
    match f.returns {
        SqlType::Void => Ok(Value::Null),
        ty => v.cast_owned(&ty),
    }
}

/// Runs function `fi` in the interpreter.
pub fn run(rt: &mut Runtime, fi: usize, args: Vec<Value>) -> Result<Value> {
    let cat = rt.cat;
    let f = cat
        .funcs
        .get(fi)
        .ok_or_else(|| SqlError::Call(format!("no function #{fi}")))?;
    let mut vars = init_vars(f, args)?;
    let flow = exec_stmts(rt, &f.body, &mut vars, &f.slots);
    // the variables' buffers serve the next call's arguments
    rt.spare_vars = vars;
    match flow? {
        Flow::Return(v) => finish(f, v),
        _ if f.returns == SqlType::Void => Ok(Value::Null),
        _ => Err(SqlError::Exception(format!(
            "control reached end of function {} without RETURN",
            f.name
        ))),
    }
}

/// Formats a RAISE message: each `%` takes the next argument, `%%` is `%`.
pub fn format_raise(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            if chars.peek() == Some(&'%') {
                chars.next();
                out.push('%');
            } else {
                match it.next() {
                    Some(Value::Null) => out.push_str("<NULL>"),
                    Some(v) => out.push_str(&v.to_text()),
                    None => out.push('%'),
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Condition names an EXCEPTION handler may use.
pub const CONDITIONS: &[&str] = &[
    "others",
    "raise_exception",
    "division_by_zero",
    "numeric_value_out_of_range",
    "unique_violation",
    "not_null_violation",
    "check_violation",
    "string_data_right_truncation",
    "no_data_found",
    "too_many_rows",
    "invalid_text_representation",
    "data_exception",
];

/// Whether a handler condition catches `e`. Out of gas, memory, stack depth, storage, chain
/// and runtime errors are never caught (not even by OTHERS): they end the call.
pub fn condition_matches(e: &SqlError, cond: &str) -> bool {
    if let Some(code) = cond.strip_prefix("sqlstate:") {
        // a class code (`22000`) matches every code of its class, as in PostgreSQL
        return match condition_class(e) {
            None => false,
            Some(class) => {
                let have = sqlstate_of(class);
                have == code || (code.ends_with("000") && have.get(..2) == code.get(..2))
            }
        };
    }
    let Some(class) = condition_class(e) else {
        return false;
    };
    cond == "others"
        || cond == class
        || (cond == "data_exception"
            && matches!(
                class,
                "division_by_zero" | "numeric_value_out_of_range" | "invalid_text_representation"
            ))
}

/// Whether `code` is a SQLSTATE a handler may name: five digits or upper-case letters.
pub fn valid_sqlstate(code: &str) -> bool {
    code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// PostgreSQL's SQLSTATE of a condition class of [`CONDITIONS`].
fn sqlstate_of(class: &str) -> &'static str {
    match class {
        "raise_exception" => "P0001",
        "no_data_found" => "P0002",
        "too_many_rows" => "P0003",
        "division_by_zero" => "22012",
        "numeric_value_out_of_range" => "22003",
        "string_data_right_truncation" => "22001",
        "invalid_text_representation" => "22P02",
        "unique_violation" => "23505",
        "not_null_violation" => "23502",
        "check_violation" => "23514",
        _ => "22000",
    }
}

/// `SQLSTATE` and `SQLERRM` of a caught error: the code of its condition class and its
/// message without the engine's category prefix.
pub fn error_state(e: &SqlError) -> (&'static str, String) {
    let code = condition_class(e).map_or("22000", sqlstate_of);
    let msg = match e {
        SqlError::Exception(m)
        | SqlError::Constraint(m)
        | SqlError::Overflow(m)
        | SqlError::Type(m)
        | SqlError::Call(m) => m.clone(),
        other => other.to_string(),
    };
    (code, msg)
}

/// The condition class (one of [`CONDITIONS`] but `others`) of a catchable error; `None` for
/// the errors no handler catches (gas, memory, stack depth, storage, chain, runtime).
fn condition_class(e: &SqlError) -> Option<&'static str> {
    Some(match e {
        SqlError::Exception(m) if m.starts_with("query returned no rows") => "no_data_found",
        SqlError::Exception(m) if m.starts_with("query returned more than one row") => {
            "too_many_rows"
        }
        SqlError::Exception(_) => "raise_exception",
        SqlError::DivisionByZero => "division_by_zero",
        SqlError::Overflow(_) => "numeric_value_out_of_range",
        SqlError::Constraint(m) if m.contains("duplicate key") => "unique_violation",
        SqlError::Constraint(m) if m.starts_with("null value") => "not_null_violation",
        SqlError::Constraint(m) if m.contains("check constraint") => "check_violation",
        SqlError::Constraint(m) if m.starts_with("value too long") => {
            "string_data_right_truncation"
        }
        SqlError::Type(m) if m.starts_with("invalid input syntax") => "invalid_text_representation",
        SqlError::Type(_) | SqlError::Constraint(_) | SqlError::Call(_) => "data_exception",
        _ => return None,
    })
}

fn truthy(v: &Value) -> Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        other => Err(SqlError::Type(format!(
            "condition must be boolean, not {}",
            other.type_of()
        ))),
    }
}

fn int_of(v: Value, what: &str) -> Result<i64> {
    match v.cast(&SqlType::BigInt)? {
        Value::Int(i) => Ok(i),
        _ => Err(SqlError::Type(format!("FOR loop {what} cannot be NULL"))),
    }
}

fn exec_stmts(
    rt: &mut Runtime,
    stmts: &[Stmt],
    vars: &mut Vec<Value>,
    slots: &[SqlType],
) -> Result<Flow> {
    for s in stmts {
        rt.charge(s.cost)?;
        match &s.kind {
            StmtKind::Assign(slot, e) => {
                let v = rt.eval(e, &EMPTY, vars)?;
                assign(vars, slots, *slot, v)?;
            }
            StmtKind::Init(list) => {
                for (slot, def) in list {
                    let v = match def {
                        Some(e) => rt.eval(e, &EMPTY, vars)?,
                        None => Value::Null,
                    };
                    assign(vars, slots, *slot, v)?;
                }
            }
            StmtKind::Sql(plan, into, strict) => exec_sql(rt, plan, into, *strict, vars, slots)?,
            StmtKind::Guarded(body, handlers) => {
                if !rt.kv.savepoint() {
                    return Err(SqlError::Exception(
                        "exception blocks need a buffered store".into(),
                    ));
                }
                rt.guarded += 1;
                let r = exec_stmts(rt, body, vars, slots);
                rt.guarded -= 1;
                let flow = match r {
                    Ok(flow) => {
                        rt.kv.release_savepoint();
                        flow
                    }
                    Err(e) => {
                        rt.rollback_savepoint();
                        let h = handlers
                            .iter()
                            .find(|h| h.conds.iter().any(|c| condition_matches(&e, c)));
                        match h {
                            Some(h) => {
                                let (code, msg) = error_state(&e);
                                let (s, m) = h.state;
                                assign(vars, slots, s, Value::Text(code.into()))?;
                                assign(vars, slots, m, Value::Text(msg))?;
                                exec_stmts(rt, &h.body, vars, slots)?
                            }
                            None => return Err(e),
                        }
                    }
                };
                if !matches!(flow, Flow::Next) {
                    return Ok(flow);
                }
            }
            StmtKind::If(branches, else_) => {
                let mut taken = None;
                for (c, body) in branches {
                    if truthy(&rt.eval(c, &EMPTY, vars)?)? {
                        taken = Some(body);
                        break;
                    }
                }
                let body = taken.unwrap_or(else_);
                match exec_stmts(rt, body, vars, slots)? {
                    Flow::Next => {}
                    other => return Ok(other),
                }
            }
            StmtKind::Loop(id, plan, body) => {
                if let Some(flow) = exec_loop(rt, *id, plan, body, s.cost, vars, slots)? {
                    return Ok(flow);
                }
            }
            StmtKind::Exit(is_continue, target, cond) => {
                let go = match cond {
                    Some(c) => truthy(&rt.eval(c, &EMPTY, vars)?)?,
                    None => true,
                };
                if go {
                    return Ok(if *is_continue {
                        Flow::Continue(*target)
                    } else {
                        Flow::Exit(*target)
                    });
                }
            }
            StmtKind::Return(e) => {
                let v = match e {
                    Some(e) => rt.eval(e, &EMPTY, vars)?,
                    None => Value::Null,
                };
                return Ok(Flow::Return(v));
            }
            StmtKind::ReturnNext(row) => rt.return_next(row, vars)?,
            StmtKind::ReturnQuery(q, types) => rt.return_query(q, types, vars)?,
            StmtKind::Raise(notice, fmt, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(rt.eval(a, &EMPTY, vars)?);
                }
                let msg = format_raise(fmt, &vals);
                if *notice {
                    rt.events.push(msg);
                } else {
                    return Err(SqlError::Exception(msg));
                }
            }
        }
    }
    Ok(Flow::Next)
}

/// Returns Some(flow) when the loop ends by RETURN or an outer EXIT/CONTINUE.
fn body_flow(
    rt: &mut Runtime,
    id: usize,
    body: &[Stmt],
    vars: &mut Vec<Value>,
    slots: &[SqlType],
) -> Result<Option<Option<Flow>>> {
    // Ok(None) = keep looping; Ok(Some(None)) = leave this loop; Ok(Some(Some(f))) = propagate
    match exec_stmts(rt, body, vars, slots)? {
        Flow::Next => Ok(None),
        Flow::Continue(t) if t == id => Ok(None),
        Flow::Exit(t) if t == id => Ok(Some(None)),
        other => Ok(Some(Some(other))),
    }
}

fn exec_loop(
    rt: &mut Runtime,
    id: usize,
    plan: &LoopPlan,
    body: &[Stmt],
    cost: u64,
    vars: &mut Vec<Value>,
    slots: &[SqlType],
) -> Result<Option<Flow>> {
    match plan {
        LoopPlan::Plain => loop {
            if let Some(r) = body_flow(rt, id, body, vars, slots)? {
                return Ok(r);
            }
            rt.charge(cost)?;
        },
        LoopPlan::While(c) => loop {
            if !truthy(&rt.eval(c, &EMPTY, vars)?)? {
                return Ok(None);
            }
            if let Some(r) = body_flow(rt, id, body, vars, slots)? {
                return Ok(r);
            }
            rt.charge(cost)?;
        },
        LoopPlan::Range {
            var,
            lo,
            hi,
            by,
            reverse,
        } => {
            let a = int_of(rt.eval(lo, &EMPTY, vars)?, "lower bound")?;
            let b = int_of(rt.eval(hi, &EMPTY, vars)?, "upper bound")?;
            let step = match by {
                Some(e) => int_of(rt.eval(e, &EMPTY, vars)?, "BY value")?,
                None => 1,
            };
            if step <= 0 {
                return Err(SqlError::Exception(
                    "BY value of FOR loop must be greater than zero".into(),
                ));
            }
            let mut i = a;
            loop {
                if (!*reverse && i > b) || (*reverse && i < b) {
                    return Ok(None);
                }
                vars[*var] = Value::Int(i);
                if let Some(r) = body_flow(rt, id, body, vars, slots)? {
                    return Ok(r);
                }
                rt.charge(cost)?;
                let next = if *reverse {
                    i.checked_sub(step)
                } else {
                    i.checked_add(step)
                };
                match next {
                    Some(n) => i = n,
                    None => return Ok(None),
                }
            }
        }
        LoopPlan::ForEach { var, array } => {
            // the loop reads the array it started with (a shared copy: no elements copied)
            let arr = match rt.eval(array, &EMPTY, vars)? {
                Value::Array(a) => a,
                Value::Null => {
                    return Err(SqlError::Exception(
                        "FOREACH expression must not be null".into(),
                    ))
                }
                other => {
                    return Err(SqlError::Type(format!(
                        "FOREACH expression must yield an array, not type {}",
                        other.type_of()
                    )))
                }
            };
            for v in &arr.items {
                assign(vars, slots, *var, v.clone())?;
                if let Some(r) = body_flow(rt, id, body, vars, slots)? {
                    return Ok(r);
                }
                rt.charge(cost)?;
            }
            Ok(None)
        }
        LoopPlan::Query { slots: rec, query } => {
            let rows = rt.select(query, None, vars)?;
            vars[FOUND_SLOT] = Value::Bool(!rows.is_empty());
            for row in rows {
                for (s, v) in rec.iter().zip(row) {
                    assign(vars, slots, *s, v)?;
                }
                if let Some(r) = body_flow(rt, id, body, vars, slots)? {
                    return Ok(r);
                }
                rt.charge(cost)?;
            }
            Ok(None)
        }
    }
}
