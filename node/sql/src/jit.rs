//! LLVM JIT through `inkwell` (feature `jit`, on by default).
//!
//! Every function of a contract is compiled when the contract is deployed or
//! loaded, never on the call path. The JIT covers the compute-bound subset:
//! INTEGER/BIGINT/NUMERIC/BOOLEAN locals and parameters, arithmetic,
//! comparisons, AND/OR/NOT, IS NULL, CASE, COALESCE, abs/round, assignment
//! with type coercion, IF/ELSIF/ELSE, LOOP/WHILE/FOR-range, EXIT/CONTINUE,
//! RETURN and RAISE. Integer arithmetic, control flow, NULL logic and gas
//! metering are native code; SQL statements, decimal arithmetic, frame
//! access and RAISE go through `aergo_rt_*` runtime helpers (the generated
//! module imports nothing else, see [`JitProgram::imported_symbols`]). A
//! function that uses anything else (text expressions, FOR-over-query,
//! nested calls in procedural expressions) runs in the interpreter.
//! Both engines charge identical gas at identical points and report
//! identical errors (the helpers call the same Rust code as the interpreter).

use crate::compile::Catalog;
use crate::decimal::Decimal;
use crate::error::{Result, SqlError};
use crate::exec::Runtime;
use crate::interp::{exec_sql, finish, format_raise, init_vars, JitDispatch};
use crate::ir::*;
use crate::value::{sql_cmp, SqlType, Value};
use inkwell::builder::{Builder, BuilderError};
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::Module;
#[allow(deprecated)]
use inkwell::passes::PassManager;
use inkwell::types::StructType;
use inkwell::values::{BasicMetadataValueEnum, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, IntPredicate, OptimizationLevel};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

/// Decimal as seen by generated code: `{lo, hi, scale, null}`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DecSlot {
    lo: u64,
    hi: u64,
    scale: u32,
    null: u32,
}

impl DecSlot {
    fn get(&self) -> Option<Result<Decimal>> {
        if self.null != 0 {
            return None;
        }
        let m = ((u128::from(self.hi) << 64) | u128::from(self.lo)) as i128;
        Some(Decimal::new(m, self.scale))
    }
    fn set(&mut self, d: Option<Decimal>) {
        match d {
            None => {
                *self = DecSlot {
                    null: 1,
                    ..DecSlot::default()
                }
            }
            Some(d) => {
                let (lo, hi) = halves(d.mantissa() as u128);
                *self = DecSlot {
                    lo,
                    hi,
                    scale: d.scale(),
                    null: 0,
                };
            }
        }
    }
}

/// The low and high 64-bit halves of a 128-bit mantissa (the `DecSlot` layout).
// Keeping only the low 64 bits in `lo` is the point of the split.
#[allow(clippy::cast_possible_truncation)]
fn halves(m: u128) -> (u64, u64) {
    (m as u64, (m >> 64) as u64)
}

/// State shared between a running JIT function and the helpers. The first
/// two fields are read and written by generated code.
#[repr(C)]
pub struct JitCtx {
    gas_used: u64,
    gas_limit: u64,
    rt: *mut c_void,
    vars: *mut Vec<Value>,
    slots: *const Vec<SqlType>,
    err: Option<SqlError>,
    result: Value,
    scratch: Vec<Value>,
    /// Open `FOR … IN query` loops by statement address (few at a time: a
    /// list, not a map built per call).
    cursors: Vec<(usize, std::vec::IntoIter<Vec<Value>>)>,
}

type JitFn = unsafe extern "C" fn(*mut JitCtx) -> i32;

// error codes passed to aergo_rt_err
const E_GAS: u32 = 1;
const E_INT_OVERFLOW: u32 = 2;
const E_DIV_ZERO: u32 = 3;
const E_INTEGER_RANGE: u32 = 4;
const E_FOR_LO: u32 = 5;
const E_FOR_HI: u32 = 6;
const E_FOR_BY: u32 = 7;
const E_FOR_STEP: u32 = 8;

// ------------------------------------------------------------- helpers ---
// The helper contract. The `aergo_rt_*` helpers are called only by code this module generates
// (their addresses are mapped into the module in `JitProgram::compile` and nowhere else), and
// that code upholds, for the duration of one helper call:
// (a) `ctx` is the `JitCtx` the generated function was called with by `JitDispatch::call`:
//     valid, aligned and not otherwise borrowed (generated code only loads and stores its two
//     gas fields between helper calls). Its `rt`, `vars` and `slots` point to the caller's
//     `Runtime`, the frame's variables and the function's slot types, which outlive the call
//     and are not otherwise borrowed while a helper runs (`call` holds them only through
//     `jc`); they are distinct objects, none inside the `JitCtx`.
// (b) `DecSlot`, i64 and i8 pointers are allocas of the generated function: aligned, live for
//     the call, initialised where the helper reads them.
// (c) `stmt` and constant addresses point to IR nodes (`StmtKind`s, constant `Value`s) inside
//     the `Arc<Catalog>` the `JitProgram` keeps (immutable, so the addresses are stable), or to
//     the static `NULL_VALUE`; each `stmt` is matched against the variant the helper expects.
// (d) Indexes (`slot`, `fi`, argument counts) are bounds-checked by the helpers themselves.

/// The `JitCtx` of the running call.
///
/// # Safety
/// `p` must satisfy the helper contract (a); the reference must not outlive the helper call
/// and must be the only one made from `p` at a time.
unsafe fn cx<'x>(p: *mut JitCtx) -> &'x mut JitCtx {
    // SAFETY: per the caller's contract, `p` is the valid, unaliased `JitCtx` of this call.
    unsafe { &mut *p }
}

/// Runs `f` on the runtime, variables and slot types of the call, with the call's gas.
///
/// # Safety
/// `c` must be the `JitCtx` of the running call (helper contract (a)), and no other reference
/// to its runtime, variables or slot types may be live.
unsafe fn with_rt<T>(
    c: &mut JitCtx,
    f: impl FnOnce(&mut Runtime, &mut Vec<Value>, &[SqlType]) -> Result<T>,
) -> Result<T> {
    // SAFETY: contract (a): `rt`, `vars` and `slots` point to three distinct live objects of
    // the caller, borrowed by nothing else during the helper. The runtime's lifetime parameter
    // is erased to 'static only for the duration of `f`, which stores no reference into it.
    let (rt, vars, slots) = unsafe {
        (
            &mut *(c.rt as *mut Runtime<'static>),
            &mut *c.vars,
            &*c.slots,
        )
    };
    rt.gas_used = c.gas_used;
    let r = f(rt, vars, slots);
    c.gas_used = rt.gas_used;
    r
}

/// The fixed message of a call whose runtime helper panicked.
pub const RUNTIME_PANIC: &str =
    "internal error in the contract runtime (the call failed; report it)";

thread_local! {
    /// Set when a helper panicked during the current JIT call (helpers run on the caller's
    /// thread; nested calls save and restore it, so an inner panic fails the outer call too).
    static RT_PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Test-only fault injection: the next `aergo_rt_sql`/`aergo_rt_sql_point` panics.
    #[cfg(test)]
    static INJECT_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a helper's body with panics caught: unwinding into LLVM-generated frames is undefined
/// behaviour (and Rust aborts the process at the `extern "C"` boundary), so a panic becomes
/// `on_panic` (an error code where the helper has one) plus the thread's panicked flag, which
/// fails the whole call with [`RUNTIME_PANIC`] once the generated code returns. Whatever the
/// generated code does in between runs under its gas limit, and a failed call's writes are
/// discarded.
fn guarded<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            RT_PANICKED.with(|p| p.set(true));
            on_panic
        }
    }
}

/// Test-only fault injection point of the SQL helpers.
#[cfg(test)]
fn injected_panic() {
    if INJECT_PANIC.with(|p| p.replace(false)) {
        #[allow(clippy::panic)]
        {
            panic!("injected panic in a runtime helper (test)");
        }
    }
}

fn fail(c: &mut JitCtx, e: SqlError) -> i32 {
    c.err = Some(e);
    1
}

unsafe extern "C" fn aergo_rt_err(ctx: *mut JitCtx, code: u32) -> i32 {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let e = match code {
                E_GAS => SqlError::OutOfGas { limit: c.gas_limit },
                E_INT_OVERFLOW => SqlError::Overflow("bigint out of range".into()),
                E_DIV_ZERO => SqlError::DivisionByZero,
                E_INTEGER_RANGE => SqlError::Overflow("integer out of range".into()),
                E_FOR_LO => SqlError::Type("FOR loop lower bound cannot be NULL".into()),
                E_FOR_HI => SqlError::Type("FOR loop upper bound cannot be NULL".into()),
                E_FOR_BY => SqlError::Type("FOR loop BY value cannot be NULL".into()),
                E_FOR_STEP => {
                    SqlError::Exception("BY value of FOR loop must be greater than zero".into())
                }
                _ => SqlError::Jit(format!("unknown error code {code}")),
            };
            fail(c, e)
        })
    }
}

/// The variable in `slot`, if there is one.
///
/// # Safety
/// `c` must be the `JitCtx` of the running call (helper contract (a)) and no other reference
/// to its variables may be live.
unsafe fn var(c: &mut JitCtx, slot: u64) -> Option<&mut Value> {
    // SAFETY: contract (a): `vars` points to the frame's variables, live and borrowed by
    // nothing else during the helper.
    let v: &mut Vec<Value> = unsafe { &mut *c.vars };
    v.get_mut(usize::try_from(slot).ok()?)
}

unsafe extern "C" fn aergo_rt_load_int(ctx: *mut JitCtx, slot: u64, v: *mut i64, n: *mut u8) {
    // SAFETY: contract (a) for `ctx`; (b): `v` and `n` are the caller's i64 and i8 allocas.
    unsafe {
        // Defined outputs (NULL) before anything can panic: generated code reads them after a
        // caught panic too, until the call fails on return.
        *v = 0;
        *n = 1;
        guarded((), || match var(cx(ctx), slot) {
            Some(Value::Int(i)) => {
                *v = *i;
                *n = 0;
            }
            _ => {
                *v = 0;
                *n = 1;
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_load_bool(ctx: *mut JitCtx, slot: u64, v: *mut u8, n: *mut u8) {
    // SAFETY: contract (a) for `ctx`; (b): `v` and `n` are the caller's i8 allocas.
    unsafe {
        // Defined outputs (NULL) before anything can panic (see `aergo_rt_load_int`).
        *v = 0;
        *n = 1;
        guarded((), || match var(cx(ctx), slot) {
            Some(Value::Bool(b)) => {
                *v = u8::from(*b);
                *n = 0;
            }
            _ => {
                *v = 0;
                *n = 1;
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_load_dec(ctx: *mut JitCtx, slot: u64, out: *mut DecSlot) {
    // SAFETY: contract (a) for `ctx`; (b): `out` is the caller's `DecSlot` alloca.
    unsafe {
        // A defined output (NULL) before anything can panic (see `aergo_rt_load_int`).
        (*out).set(None);
        guarded((), || {
            let d = match var(cx(ctx), slot) {
                Some(Value::Num(d)) => Some(*d),
                Some(Value::Int(i)) => Some(Decimal::from_i64(*i)),
                _ => None,
            };
            (*out).set(d);
        })
    }
}

unsafe extern "C" fn aergo_rt_store_int(ctx: *mut JitCtx, slot: u64, v: i64, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call (`slot` is bounds-checked).
    unsafe {
        guarded((), || {
            if let Some(x) = var(cx(ctx), slot) {
                *x = if n != 0 { Value::Null } else { Value::Int(v) };
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_store_bool(ctx: *mut JitCtx, slot: u64, v: u8, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call (`slot` is bounds-checked).
    unsafe {
        guarded((), || {
            if let Some(x) = var(cx(ctx), slot) {
                *x = if n != 0 {
                    Value::Null
                } else {
                    Value::Bool(v != 0)
                };
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_store_dec(ctx: *mut JitCtx, slot: u64, p: *const DecSlot) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `p` is an initialised `DecSlot` alloca of the caller.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let v = match (*p).get() {
                None => Value::Null,
                Some(Ok(d)) => Value::Num(d),
                Some(Err(e)) => return fail(c, e),
            };
            if let Some(x) = var(c, slot) {
                *x = v;
            }
            0
        })
    }
}

unsafe extern "C" fn aergo_rt_store_null(ctx: *mut JitCtx, slot: u64) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call (`slot` is bounds-checked).
    unsafe {
        guarded((), || {
            if let Some(x) = var(cx(ctx), slot) {
                *x = Value::Null;
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_sql(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (c): `stmt` is the address of a
    // `StmtKind` in the kept catalog, matched against `Sql` before use.
    unsafe {
        guarded(1, || {
            #[cfg(test)]
            injected_panic();
            let c = cx(ctx);
            let StmtKind::Sql(plan, into, strict) = &*(stmt as *const StmtKind) else {
                return fail(c, SqlError::Jit("bad SQL statement pointer".into()));
            };
            match with_rt(c, |rt, vars, slots| {
                exec_sql(rt, plan, into, *strict, vars, slots)
            }) {
                Ok(()) => 0,
                Err(e) => fail(c, e),
            }
        })
    }
}

/// A statement the code generator found to be a primary-key point statement
/// (`exec::is_point_statement`).
unsafe extern "C" fn aergo_rt_sql_point(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (c): `stmt` is the address of a
    // `StmtKind` in the kept catalog, matched against `Sql` before use.
    unsafe {
        guarded(1, || {
            #[cfg(test)]
            injected_panic();
            let c = cx(ctx);
            let StmtKind::Sql(plan, into, strict) = &*(stmt as *const StmtKind) else {
                return fail(c, SqlError::Jit("bad SQL statement pointer".into()));
            };
            match with_rt(c, |rt, vars, slots| {
                rt.point_statement(plan, into, *strict, vars, slots)
            }) {
                Ok(()) => 0,
                Err(e) => fail(c, e),
            }
        })
    }
}

fn dec_of(p: &DecSlot) -> Result<Value> {
    Ok(match p.get() {
        None => Value::Null,
        Some(d) => Value::Num(d?),
    })
}

unsafe extern "C" fn aergo_rt_dec_binop(
    ctx: *mut JitCtx,
    op: u32,
    a: *const DecSlot,
    b: *const DecSlot,
    out: *mut DecSlot,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `a` and `b` are initialised `DecSlot` allocas and `out` a
    // `DecSlot` alloca of the caller (each read ends before `out` is written, so they may alias).
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            // same Decimal operations `exec::arith` applies to numeric operands
            let r = (|| -> Result<Option<Decimal>> {
                let (Some(x), Some(y)) = ((*a).get(), (*b).get()) else {
                    return Ok(None);
                };
                let (x, y) = (x?, y?);
                Ok(Some(match op {
                    0 => x.add(&y)?,
                    1 => x.sub(&y)?,
                    2 => x.mul(&y)?,
                    3 => x.div(&y)?,
                    _ => x.rem(&y)?,
                }))
            })();
            match r {
                Ok(v) => {
                    (*out).set(v);
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_dec_cmp(a: *const DecSlot, b: *const DecSlot) -> i32 {
    // SAFETY: contract (b): `a` and `b` are initialised `DecSlot` allocas of the caller.
    unsafe {
        guarded(0, || {
            let (x, y) = (dec_of(&*a), dec_of(&*b));
            match (x, y) {
                (Ok(x), Ok(y)) => match sql_cmp(&x, &y) {
                    Ok(Some(o)) => o as i32,
                    _ => 0,
                },
                _ => 0,
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_dec_unop(
    ctx: *mut JitCtx,
    op: u32,
    a: *const DecSlot,
    digits: i64,
    out: *mut DecSlot,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `a` is an initialised `DecSlot` alloca and `out` a `DecSlot`
    // alloca of the caller (the read of `a` ends before `out` is written).
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let r = (|| -> Result<Option<Decimal>> {
                let Some(d) = (*a).get() else { return Ok(None) };
                let d = d?;
                Ok(Some(match op {
                    0 => d.neg()?,
                    1 => d.abs()?,
                    _ => d.round(digits)?,
                }))
            })();
            match r {
                Ok(v) => {
                    (*out).set(v);
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_dec_fit(
    ctx: *mut JitCtx,
    a: *const DecSlot,
    p: u32,
    s: u32,
    out: *mut DecSlot,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `a` is an initialised `DecSlot` alloca and `out` a `DecSlot`
    // alloca of the caller (the read of `a` ends before `out` is written).
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            // what `Value::cast` to NUMERIC(p, s) does for a numeric value
            let r = match (*a).get() {
                None => Ok(None),
                Some(d) => d.and_then(|d| d.fit(p, s)).map(Some),
            };
            match r {
                Ok(v) => {
                    (*out).set(v);
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_dec_to_int(
    ctx: *mut JitCtx,
    a: *const DecSlot,
    integer: u32,
    v: *mut i64,
    n: *mut u8,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `a` is an initialised `DecSlot` alloca, `v` and `n` the
    // caller's i64 and i8 allocas.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let ty = if integer != 0 {
                SqlType::Integer
            } else {
                SqlType::BigInt
            };
            match dec_of(&*a).and_then(|x| x.cast(&ty)) {
                Ok(Value::Int(i)) => {
                    *v = i;
                    *n = 0;
                    0
                }
                Ok(_) => {
                    *v = 0;
                    *n = 1;
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_push_int(ctx: *mut JitCtx, v: i64, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded((), || {
            cx(ctx)
                .scratch
                .push(if n != 0 { Value::Null } else { Value::Int(v) });
        })
    }
}
unsafe extern "C" fn aergo_rt_push_bool(ctx: *mut JitCtx, v: u8, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded((), || {
            cx(ctx).scratch.push(if n != 0 {
                Value::Null
            } else {
                Value::Bool(v != 0)
            });
        })
    }
}
unsafe extern "C" fn aergo_rt_push_dec(ctx: *mut JitCtx, p: *const DecSlot) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `p` is an initialised `DecSlot` alloca of the caller.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            match dec_of(&*p) {
                Ok(v) => {
                    c.scratch.push(v);
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}
unsafe extern "C" fn aergo_rt_push_const(ctx: *mut JitCtx, v: usize) {
    // SAFETY: contract (a) for `ctx`; (c): `v` is the address of a constant `Value` in the kept catalog
    // (or the static `NULL_VALUE`).
    unsafe {
        guarded((), || {
            cx(ctx).scratch.push((*(v as *const Value)).clone());
        })
    }
}
unsafe extern "C" fn aergo_rt_push_var(ctx: *mut JitCtx, slot: u64) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call (`slot` is bounds-checked).
    unsafe {
        guarded((), || {
            let c = cx(ctx);
            let v = var(c, slot).map(|x| x.clone()).unwrap_or(Value::Null);
            c.scratch.push(v);
        })
    }
}

/// `FOR rec IN query`: runs the query, keeps its rows for this loop and
/// sets FOUND (as the interpreter does before the first iteration).
unsafe extern "C" fn aergo_rt_query_open(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (c): `stmt` is the address of a
    // `StmtKind` in the kept catalog, matched against `Loop(.., Query, ..)` before use.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let StmtKind::Loop(_, LoopPlan::Query { query, .. }, _) = &*(stmt as *const StmtKind)
            else {
                return fail(c, SqlError::Jit("bad FOR pointer".into()));
            };
            match with_rt(c, |rt, vars, _| {
                let rows = rt.select(query, None, vars)?;
                if let Some(f) = vars.get_mut(FOUND_SLOT) {
                    *f = Value::Bool(!rows.is_empty());
                }
                Ok(rows)
            }) {
                Ok(rows) => {
                    match c.cursors.iter_mut().find(|(s, _)| *s == stmt) {
                        Some((_, it)) => *it = rows.into_iter(),
                        None => c.cursors.push((stmt, rows.into_iter())),
                    }
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

/// Next row of a `FOR rec IN query` loop into the record's slots (cast to
/// their types, as the interpreter does): 1 = row, 0 = done, 2 = error.
unsafe extern "C" fn aergo_rt_query_next(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx`, its `vars` and `slots` (distinct from the `JitCtx` itself, so
    // borrowing them beside `c` aliases nothing); (c): `stmt` is the address of a `StmtKind` in the
    // kept catalog, matched against `Loop(.., Query, ..)` before use.
    unsafe {
        guarded(2, || {
            let c = cx(ctx);
            let StmtKind::Loop(_, LoopPlan::Query { slots, .. }, _) = &*(stmt as *const StmtKind)
            else {
                return 0;
            };
            let Some(row) = c
                .cursors
                .iter_mut()
                .find(|(s, _)| *s == stmt)
                .and_then(|(_, it)| it.next())
            else {
                return 0;
            };
            let vars: &mut Vec<Value> = &mut *c.vars;
            let types: &Vec<SqlType> = &*c.slots;
            for (s, v) in slots.iter().zip(row) {
                if let Err(e) = crate::interp::assign(vars, types, *s, v) {
                    fail(c, e);
                    return 2;
                }
            }
            1
        })
    }
}

/// Removes the last `n` pushed arguments.
fn take_args(c: &mut JitCtx, n: u64) -> Vec<Value> {
    let at = c
        .scratch
        .len()
        .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
    c.scratch.split_off(at)
}

unsafe extern "C" fn aergo_rt_call(
    ctx: *mut JitCtx,
    fi: u64,
    nargs: u64,
    kind: u32,
    iv: *mut i64,
    n: *mut u8,
    dec: *mut DecSlot,
) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (b): `iv`, `n` and `dec` are the caller's
    // i64, i8 and `DecSlot` allocas (all three always passed, whatever `kind`).
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let args = take_args(c, nargs);
            // An index past usize is out of range like any other (`call_function` checks it).
            let fi = usize::try_from(fi).unwrap_or(usize::MAX);
            let r = with_rt(c, |rt, _, _| rt.call_function(fi, args));
            match r {
                Err(e) => fail(c, e),
                Ok(v) => {
                    match (kind, v) {
                        (_, Value::Null) => {
                            *iv = 0;
                            *n = 1;
                            (*dec).set(None);
                        }
                        (0, Value::Int(i)) => {
                            *iv = i;
                            *n = 0;
                        }
                        (1, Value::Bool(b)) => {
                            *iv = i64::from(b);
                            *n = 0;
                        }
                        (2, Value::Num(d)) => (*dec).set(Some(d)),
                        (2, Value::Int(i)) => (*dec).set(Some(Decimal::from_i64(i))),
                        (_, other) => {
                            return fail(
                                c,
                                SqlError::Jit(format!("unexpected {} from call", other.type_of())),
                            )
                        }
                    }
                    0
                }
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_raise(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` and its `rt` (no other reference to the runtime is live during
    // this helper); (c): `stmt` is the address of a `StmtKind` in the kept catalog, matched
    // against `Raise` before use.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let StmtKind::Raise(notice, fmt, exprs) = &*(stmt as *const StmtKind) else {
                return fail(c, SqlError::Jit("bad RAISE pointer".into()));
            };
            let args = take_args(c, exprs.len() as u64);
            let msg = format_raise(fmt, &args);
            if *notice {
                let rt = &mut *(c.rt as *mut Runtime<'static>);
                rt.events.push(msg);
                0
            } else {
                fail(c, SqlError::Exception(msg))
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_ret_int(ctx: *mut JitCtx, v: i64, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded((), || {
            cx(ctx).result = if n != 0 { Value::Null } else { Value::Int(v) };
        })
    }
}
unsafe extern "C" fn aergo_rt_ret_bool(ctx: *mut JitCtx, v: u8, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded((), || {
            cx(ctx).result = if n != 0 {
                Value::Null
            } else {
                Value::Bool(v != 0)
            };
        })
    }
}
unsafe extern "C" fn aergo_rt_ret_dec(ctx: *mut JitCtx, p: *const DecSlot) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `p` is an initialised `DecSlot` alloca of the caller.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            match dec_of(&*p) {
                Ok(v) => {
                    c.result = v;
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}
unsafe extern "C" fn aergo_rt_ret_const(ctx: *mut JitCtx, v: usize) {
    // SAFETY: contract (a) for `ctx`; (c): `v` is the address of a constant `Value` in the kept catalog
    // (or the static `NULL_VALUE`).
    unsafe {
        guarded((), || {
            cx(ctx).result = (*(v as *const Value)).clone();
        })
    }
}
unsafe extern "C" fn aergo_rt_ret_var(ctx: *mut JitCtx, slot: u64) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call (`slot` is bounds-checked).
    unsafe {
        guarded((), || {
            let c = cx(ctx);
            c.result = var(c, slot).map(|x| x.clone()).unwrap_or(Value::Null);
        })
    }
}

// ------------------------------------------------------------- program ---

/// JIT-compiled functions of one contract.
pub struct JitProgram {
    fns: Vec<Option<JitFn>>,
    skipped: Vec<(String, u32)>,
    imports: Vec<String>,
    ir: String,
    // Drop order matters: the engine (which owns the module) goes before
    // the context it was created from.
    _engine: Option<ExecutionEngine<'static>>,
    _context: Box<Context>,
    cat: Arc<Catalog>,
}

// SAFETY: after compilation the engine and context are never touched again
// except to be dropped; the generated code is immutable and reentrant (all
// state lives in the `JitCtx` passed by the caller).
unsafe impl Send for JitProgram {}
// SAFETY: see above.
unsafe impl Sync for JitProgram {}

#[derive(Debug)]
enum GenErr {
    /// Outside the JIT subset (source line of the generator that declined).
    Unsup(u32),
    Llvm(String),
}

impl From<BuilderError> for GenErr {
    fn from(e: BuilderError) -> Self {
        GenErr::Llvm(e.to_string())
    }
}

type G<T> = std::result::Result<T, GenErr>;

#[derive(Clone, Copy)]
enum Repr<'c> {
    Int {
        v: PointerValue<'c>,
        n: PointerValue<'c>,
        integer: bool,
    },
    Bool {
        v: PointerValue<'c>,
        n: PointerValue<'c>,
    },
    Num {
        p: PointerValue<'c>,
        fit: Option<(u32, u32)>,
    },
    Frame,
}

#[derive(Clone, Copy)]
enum JVal<'c> {
    Int(IntValue<'c>, IntValue<'c>),
    Bool(IntValue<'c>, IntValue<'c>),
    Num(PointerValue<'c>),
    Null,
}

struct Gen<'c, 'm> {
    c: &'c Context,
    m: &'m Module<'c>,
    b: Builder<'c>,
    func: FunctionValue<'c>,
    ctxp: PointerValue<'c>,
    dect: StructType<'c>,
    slots: Vec<Repr<'c>>,
    rets: Vec<SqlType>,
    loops: HashMap<
        usize,
        (
            inkwell::basic_block::BasicBlock<'c>,
            inkwell::basic_block::BasicBlock<'c>,
        ),
    >,
    helpers: &'m HashMap<&'static str, FunctionValue<'c>>,
    fail_bb: inkwell::basic_block::BasicBlock<'c>,
}

impl JitProgram {
    /// Compiles every function the JIT supports.
    pub fn compile(cat: &Arc<Catalog>) -> Result<JitProgram> {
        let context = Box::new(Context::create());
        // SAFETY: the context is boxed (stable address) and outlives the
        // engine and module thanks to the field order of `JitProgram`.
        let ctx: &'static Context = unsafe { &*(context.as_ref() as *const Context) };
        let module = ctx.create_module("aergo_sql");
        let helpers = declare_helpers(ctx, &module);
        let rets: Vec<SqlType> = cat.sigs.iter().map(|s| s.returns).collect();
        let mut compiled: Vec<Option<String>> = Vec::new();
        let mut skipped: Vec<(String, u32)> = Vec::new();
        for (fi, f) in cat.funcs.iter().enumerate() {
            let name = format!("aergo_fn_{fi}");
            match gen_function(ctx, &module, &helpers, &rets, f, &name) {
                Ok(()) => compiled.push(Some(name)),
                Err(GenErr::Unsup(line)) => {
                    skipped.push((f.name.clone(), line));
                    compiled.push(None)
                }
                Err(GenErr::Llvm(e)) => return Err(SqlError::Jit(e)),
            }
        }
        module.verify().map_err(|e| SqlError::Jit(e.to_string()))?;
        #[allow(deprecated)]
        let fpm = PassManager::create(());
        fpm.add_promote_memory_to_register_pass();
        fpm.add_instruction_combining_pass();
        fpm.add_cfg_simplification_pass();
        fpm.add_gvn_pass();
        fpm.add_cfg_simplification_pass();
        fpm.run_on(&module);
        let imports: Vec<String> = module
            .get_functions()
            .filter(|f| f.count_basic_blocks() == 0)
            .map(|f| f.get_name().to_string_lossy().into_owned())
            .collect();
        let ir = module.print_to_string().to_string();
        let engine = module
            .create_jit_execution_engine(OptimizationLevel::Aggressive)
            .map_err(|e| SqlError::Jit(e.to_string()))?;
        for (name, addr) in helper_addrs() {
            if let Some(f) = module.get_function(name) {
                engine.add_global_mapping(&f, addr);
            }
        }
        let mut fns = Vec::new();
        for name in compiled {
            fns.push(match name {
                None => None,
                Some(n) => {
                    let addr = engine
                        .get_function_address(&n)
                        .map_err(|e| SqlError::Jit(e.to_string()))?;
                    // SAFETY: the function was generated with signature i32 (ptr).
                    Some(unsafe { std::mem::transmute::<usize, JitFn>(addr) })
                }
            });
        }
        Ok(JitProgram {
            fns,
            skipped,
            imports,
            ir,
            _engine: Some(engine),
            _context: context,
            cat: Arc::clone(cat),
        })
    }

    /// External symbols the generated module imports (helpers and LLVM
    /// intrinsics only).
    pub fn imported_symbols(&self) -> &[String] {
        &self.imports
    }

    /// Functions left to the interpreter, with the code generator's source
    /// line that declined them (for diagnostics).
    pub fn skipped(&self) -> &[(String, u32)] {
        &self.skipped
    }

    /// The optimised LLVM IR (for inspection).
    pub fn ir(&self) -> &str {
        &self.ir
    }
}

impl JitDispatch for JitProgram {
    fn has(&self, fi: usize) -> bool {
        matches!(self.fns.get(fi), Some(Some(_)))
    }

    fn call(&self, fi: usize, rt: &mut Runtime, args: Vec<Value>) -> Result<Value> {
        let (Some(Some(fp)), Some(f)) = (self.fns.get(fi), self.cat.funcs.get(fi)) else {
            return crate::interp::run(rt, fi, args);
        };
        let mut vars = init_vars(f, args)?;
        let mut jc = JitCtx {
            gas_used: rt.gas_used,
            gas_limit: rt.gas_limit,
            rt: rt as *mut Runtime as *mut c_void,
            vars: &mut vars,
            slots: &f.slots,
            err: None,
            result: Value::Null,
            scratch: Vec::new(),
            cursors: Vec::new(),
        };
        let outer_panicked = RT_PANICKED.with(|p| p.replace(false));
        // SAFETY: `fp` was compiled for this catalog's function `fi`; `jc`
        // and everything it points to outlive the call.
        let code = unsafe { fp(&mut jc) };
        let panicked = RT_PANICKED.with(|p| p.replace(outer_panicked));
        rt.gas_used = jc.gas_used;
        if panicked {
            RT_PANICKED.with(|p| p.set(true));
            // The whole gas limit: the call failed inside the runtime, not in the contract.
            rt.gas_used = rt.gas_limit;
            return Err(SqlError::Jit(RUNTIME_PANIC.into()));
        }
        match code {
            0 => finish(f, jc.result),
            2 if f.returns == SqlType::Void => Ok(Value::Null),
            2 => Err(SqlError::Exception(format!(
                "control reached end of function {} without RETURN",
                f.name
            ))),
            _ => Err(jc
                .err
                .take()
                .unwrap_or_else(|| SqlError::Jit("error without detail".into()))),
        }
    }
}

fn helper_addrs() -> Vec<(&'static str, usize)> {
    vec![
        ("aergo_rt_err", aergo_rt_err as *const () as usize),
        ("aergo_rt_load_int", aergo_rt_load_int as *const () as usize),
        (
            "aergo_rt_load_bool",
            aergo_rt_load_bool as *const () as usize,
        ),
        ("aergo_rt_load_dec", aergo_rt_load_dec as *const () as usize),
        (
            "aergo_rt_store_int",
            aergo_rt_store_int as *const () as usize,
        ),
        (
            "aergo_rt_store_bool",
            aergo_rt_store_bool as *const () as usize,
        ),
        (
            "aergo_rt_store_dec",
            aergo_rt_store_dec as *const () as usize,
        ),
        (
            "aergo_rt_store_null",
            aergo_rt_store_null as *const () as usize,
        ),
        ("aergo_rt_sql", aergo_rt_sql as *const () as usize),
        (
            "aergo_rt_sql_point",
            aergo_rt_sql_point as *const () as usize,
        ),
        (
            "aergo_rt_dec_binop",
            aergo_rt_dec_binop as *const () as usize,
        ),
        ("aergo_rt_dec_cmp", aergo_rt_dec_cmp as *const () as usize),
        ("aergo_rt_dec_unop", aergo_rt_dec_unop as *const () as usize),
        ("aergo_rt_dec_fit", aergo_rt_dec_fit as *const () as usize),
        (
            "aergo_rt_dec_to_int",
            aergo_rt_dec_to_int as *const () as usize,
        ),
        ("aergo_rt_push_int", aergo_rt_push_int as *const () as usize),
        (
            "aergo_rt_push_bool",
            aergo_rt_push_bool as *const () as usize,
        ),
        ("aergo_rt_push_dec", aergo_rt_push_dec as *const () as usize),
        (
            "aergo_rt_push_const",
            aergo_rt_push_const as *const () as usize,
        ),
        ("aergo_rt_push_var", aergo_rt_push_var as *const () as usize),
        ("aergo_rt_raise", aergo_rt_raise as *const () as usize),
        ("aergo_rt_call", aergo_rt_call as *const () as usize),
        (
            "aergo_rt_query_open",
            aergo_rt_query_open as *const () as usize,
        ),
        (
            "aergo_rt_query_next",
            aergo_rt_query_next as *const () as usize,
        ),
        ("aergo_rt_ret_int", aergo_rt_ret_int as *const () as usize),
        ("aergo_rt_ret_bool", aergo_rt_ret_bool as *const () as usize),
        ("aergo_rt_ret_dec", aergo_rt_ret_dec as *const () as usize),
        (
            "aergo_rt_ret_const",
            aergo_rt_ret_const as *const () as usize,
        ),
        ("aergo_rt_ret_var", aergo_rt_ret_var as *const () as usize),
    ]
}

fn declare_helpers<'c>(c: &'c Context, m: &Module<'c>) -> HashMap<&'static str, FunctionValue<'c>> {
    let p = c.ptr_type(AddressSpace::default());
    let (i64t, i32t, i8t, void) = (c.i64_type(), c.i32_type(), c.i8_type(), c.void_type());
    let mut h = HashMap::new();
    let mut add = |name: &'static str, ty: inkwell::types::FunctionType<'c>| {
        h.insert(name, m.add_function(name, ty, None));
    };
    add(
        "aergo_rt_err",
        i32t.fn_type(&[p.into(), i32t.into()], false),
    );
    add(
        "aergo_rt_load_int",
        void.fn_type(&[p.into(), i64t.into(), p.into(), p.into()], false),
    );
    add(
        "aergo_rt_load_bool",
        void.fn_type(&[p.into(), i64t.into(), p.into(), p.into()], false),
    );
    add(
        "aergo_rt_load_dec",
        void.fn_type(&[p.into(), i64t.into(), p.into()], false),
    );
    add(
        "aergo_rt_store_int",
        void.fn_type(&[p.into(), i64t.into(), i64t.into(), i8t.into()], false),
    );
    add(
        "aergo_rt_store_bool",
        void.fn_type(&[p.into(), i64t.into(), i8t.into(), i8t.into()], false),
    );
    add(
        "aergo_rt_store_dec",
        i32t.fn_type(&[p.into(), i64t.into(), p.into()], false),
    );
    add(
        "aergo_rt_store_null",
        void.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_sql",
        i32t.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_sql_point",
        i32t.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_dec_binop",
        i32t.fn_type(
            &[p.into(), i32t.into(), p.into(), p.into(), p.into()],
            false,
        ),
    );
    add(
        "aergo_rt_dec_cmp",
        i32t.fn_type(&[p.into(), p.into()], false),
    );
    add(
        "aergo_rt_dec_unop",
        i32t.fn_type(
            &[p.into(), i32t.into(), p.into(), i64t.into(), p.into()],
            false,
        ),
    );
    add(
        "aergo_rt_dec_fit",
        i32t.fn_type(
            &[p.into(), p.into(), i32t.into(), i32t.into(), p.into()],
            false,
        ),
    );
    add(
        "aergo_rt_dec_to_int",
        i32t.fn_type(
            &[p.into(), p.into(), i32t.into(), p.into(), p.into()],
            false,
        ),
    );
    add(
        "aergo_rt_push_int",
        void.fn_type(&[p.into(), i64t.into(), i8t.into()], false),
    );
    add(
        "aergo_rt_push_bool",
        void.fn_type(&[p.into(), i8t.into(), i8t.into()], false),
    );
    add(
        "aergo_rt_push_dec",
        i32t.fn_type(&[p.into(), p.into()], false),
    );
    add(
        "aergo_rt_push_const",
        void.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_push_var",
        void.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_query_open",
        i32t.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_query_next",
        i32t.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_call",
        i32t.fn_type(
            &[
                p.into(),
                i64t.into(),
                i64t.into(),
                i32t.into(),
                p.into(),
                p.into(),
                p.into(),
            ],
            false,
        ),
    );
    add(
        "aergo_rt_raise",
        i32t.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_ret_int",
        void.fn_type(&[p.into(), i64t.into(), i8t.into()], false),
    );
    add(
        "aergo_rt_ret_bool",
        void.fn_type(&[p.into(), i8t.into(), i8t.into()], false),
    );
    add(
        "aergo_rt_ret_dec",
        i32t.fn_type(&[p.into(), p.into()], false),
    );
    add(
        "aergo_rt_ret_const",
        void.fn_type(&[p.into(), i64t.into()], false),
    );
    add(
        "aergo_rt_ret_var",
        void.fn_type(&[p.into(), i64t.into()], false),
    );
    h
}

fn gen_function<'c>(
    c: &'c Context,
    m: &Module<'c>,
    helpers: &HashMap<&'static str, FunctionValue<'c>>,
    rets: &[SqlType],
    f: &Function,
    name: &str,
) -> G<()> {
    let p = c.ptr_type(AddressSpace::default());
    let fty = c.i32_type().fn_type(&[p.into()], false);
    let func = m.add_function(name, fty, None);
    let r = (|| -> G<()> {
        let entry = c.append_basic_block(func, "entry");
        let fail_bb = c.append_basic_block(func, "fail");
        let b = c.create_builder();
        b.position_at_end(fail_bb);
        b.build_return(Some(&c.i32_type().const_int(1, false)))?;
        b.position_at_end(entry);
        let ctxp = func
            .get_nth_param(0)
            .ok_or(GenErr::Unsup(line!()))?
            .into_pointer_value();
        let dect = c.struct_type(
            &[
                c.i64_type().into(),
                c.i64_type().into(),
                c.i32_type().into(),
                c.i32_type().into(),
            ],
            false,
        );
        let mut g = Gen {
            c,
            m,
            b,
            func,
            ctxp,
            dect,
            slots: Vec::new(),
            rets: rets.to_vec(),
            loops: HashMap::new(),
            helpers,
            fail_bb,
        };
        for ty in &f.slots {
            let r = match ty {
                SqlType::BigInt | SqlType::Integer => Repr::Int {
                    v: g.b.build_alloca(c.i64_type(), "v")?,
                    n: g.b.build_alloca(c.i8_type(), "n")?,
                    integer: *ty == SqlType::Integer,
                },
                SqlType::Boolean => Repr::Bool {
                    v: g.b.build_alloca(c.i8_type(), "v")?,
                    n: g.b.build_alloca(c.i8_type(), "n")?,
                },
                SqlType::Numeric(fit) => Repr::Num {
                    p: g.b.build_alloca(dect, "d")?,
                    fit: *fit,
                },
                _ => Repr::Frame,
            };
            g.slots.push(r);
        }
        g.reload_all()?;
        let ended = g.stmts(&f.body)?;
        if !ended {
            g.b.build_return(Some(&c.i32_type().const_int(2, false)))?;
        }
        if !func.verify(false) {
            return Err(GenErr::Llvm(format!(
                "invalid code generated for {}",
                f.name
            )));
        }
        Ok(())
    })();
    if r.is_err() {
        // SAFETY: the half-built function is not referenced anywhere else.
        unsafe { func.delete() };
    }
    let _ = m;
    r
}

impl<'c> Gen<'c, '_> {
    fn h(&self, name: &str) -> G<FunctionValue<'c>> {
        self.helpers
            .get(name)
            .copied()
            .ok_or(GenErr::Llvm(format!("missing helper {name}")))
    }
    fn i64c(&self, v: u64) -> IntValue<'c> {
        self.c.i64_type().const_int(v, false)
    }
    fn i32c(&self, v: u64) -> IntValue<'c> {
        self.c.i32_type().const_int(v, false)
    }
    fn i8c(&self, v: u64) -> IntValue<'c> {
        self.c.i8_type().const_int(v, false)
    }
    fn b1(&self, v: bool) -> IntValue<'c> {
        self.c.bool_type().const_int(u64::from(v), false)
    }

    fn call(&self, name: &str, args: &[BasicMetadataValueEnum<'c>]) -> G<Option<IntValue<'c>>> {
        let f = self.h(name)?;
        let cs = self.b.build_call(f, args, "")?;
        Ok(cs.try_as_basic_value().basic().map(|v| v.into_int_value()))
    }

    /// Calls a helper returning a status; on non-zero, returns 1 from the function.
    fn call_checked(&self, name: &str, args: &[BasicMetadataValueEnum<'c>]) -> G<()> {
        let st = self.call(name, args)?.ok_or(GenErr::Unsup(line!()))?;
        let bad = self
            .b
            .build_int_compare(IntPredicate::NE, st, self.i32c(0), "bad")?;
        let ok = self.c.append_basic_block(self.func, "ok");
        self.b.build_conditional_branch(bad, self.fail_bb, ok)?;
        self.b.position_at_end(ok);
        Ok(())
    }

    /// Branches to an error (by code) when `cond` holds.
    fn err_if(&self, cond: IntValue<'c>, code: u32) -> G<()> {
        let errb = self.c.append_basic_block(self.func, "err");
        let ok = self.c.append_basic_block(self.func, "ok");
        self.b.build_conditional_branch(cond, errb, ok)?;
        self.b.position_at_end(errb);
        self.call(
            "aergo_rt_err",
            &[self.ctxp.into(), self.i32c(u64::from(code)).into()],
        )?;
        self.b.build_unconditional_branch(self.fail_bb)?;
        self.b.position_at_end(ok);
        Ok(())
    }

    fn entry_alloca_dec(&self) -> G<PointerValue<'c>> {
        let entry = self
            .func
            .get_first_basic_block()
            .ok_or(GenErr::Unsup(line!()))?;
        let tb = self.c.create_builder();
        match entry.get_first_instruction() {
            Some(i) => tb.position_before(&i),
            None => tb.position_at_end(entry),
        }
        Ok(tb.build_alloca(self.dect, "t")?)
    }

    fn charge(&self, cost: u64) -> G<()> {
        let i64t = self.c.i64_type();
        let used = self.b.build_load(i64t, self.ctxp, "gas")?.into_int_value();
        // SAFETY: `ctxp` points to a `#[repr(C)]` `JitCtx` that starts with two u64 fields
        // (`gas_used`, `gas_limit`): element 1 of i64 is `gas_limit`, in bounds.
        let limp = unsafe { self.b.build_gep(i64t, self.ctxp, &[self.i64c(1)], "limp")? };
        let lim = self.b.build_load(i64t, limp, "lim")?.into_int_value();
        let sum = self.b.build_int_add(used, self.i64c(cost), "sum")?;
        let wrapped = self
            .b
            .build_int_compare(IntPredicate::ULT, sum, used, "wr")?;
        let new = self
            .b
            .build_select(wrapped, self.i64c(u64::MAX), sum, "new")?
            .into_int_value();
        self.b.build_store(self.ctxp, new)?;
        let over = self
            .b
            .build_int_compare(IntPredicate::UGT, new, lim, "over")?;
        self.err_if(over, E_GAS)
    }

    fn load_flag(&self, p: PointerValue<'c>) -> G<IntValue<'c>> {
        let v = self
            .b
            .build_load(self.c.i8_type(), p, "f")?
            .into_int_value();
        Ok(self
            .b
            .build_int_compare(IntPredicate::NE, v, self.i8c(0), "fb")?)
    }

    fn store_flag(&self, p: PointerValue<'c>, v: IntValue<'c>) -> G<()> {
        let x = self.b.build_int_z_extend(v, self.c.i8_type(), "fz")?;
        self.b.build_store(p, x)?;
        Ok(())
    }

    fn dec_field(&self, p: PointerValue<'c>, idx: u32) -> G<PointerValue<'c>> {
        Ok(self.b.build_struct_gep(self.dect, p, idx, "fld")?)
    }

    fn dec_null(&self, p: PointerValue<'c>) -> G<IntValue<'c>> {
        let np = self.dec_field(p, 3)?;
        let n = self
            .b
            .build_load(self.c.i32_type(), np, "dn")?
            .into_int_value();
        Ok(self
            .b
            .build_int_compare(IntPredicate::NE, n, self.i32c(0), "dnb")?)
    }

    fn int_to_dec(&self, v: IntValue<'c>, n: IntValue<'c>) -> G<PointerValue<'c>> {
        let p = self.entry_alloca_dec()?;
        let hi = self.b.build_right_shift(v, self.i64c(63), true, "hi")?;
        self.b.build_store(self.dec_field(p, 0)?, v)?;
        self.b.build_store(self.dec_field(p, 1)?, hi)?;
        self.b.build_store(self.dec_field(p, 2)?, self.i32c(0))?;
        let nz = self.b.build_int_z_extend(n, self.c.i32_type(), "nz")?;
        self.b.build_store(self.dec_field(p, 3)?, nz)?;
        Ok(p)
    }

    fn null_dec(&self) -> G<PointerValue<'c>> {
        let p = self.entry_alloca_dec()?;
        self.b.build_store(self.dec_field(p, 3)?, self.i32c(1))?;
        Ok(p)
    }

    fn as_dec(&self, v: JVal<'c>) -> G<PointerValue<'c>> {
        match v {
            JVal::Int(x, n) => self.int_to_dec(x, n),
            JVal::Num(p) => Ok(p),
            JVal::Null => self.null_dec(),
            JVal::Bool(..) => Err(GenErr::Unsup(line!())),
        }
    }

    fn as_bool(&self, v: JVal<'c>) -> G<(IntValue<'c>, IntValue<'c>)> {
        match v {
            JVal::Bool(x, n) => Ok((x, n)),
            JVal::Null => Ok((self.b1(false), self.b1(true))),
            _ => Err(GenErr::Unsup(line!())),
        }
    }

    fn null_of(&self, v: JVal<'c>) -> G<IntValue<'c>> {
        Ok(match v {
            JVal::Int(_, n) | JVal::Bool(_, n) => n,
            JVal::Num(p) => self.dec_null(p)?,
            JVal::Null => self.b1(true),
        })
    }

    /// Writes native variables back to the frame before a helper reads it.
    fn spill(&self, only: &[usize]) -> G<()> {
        for &s in only {
            let Some(r) = self.slots.get(s) else { continue };
            let slot = self.i64c(s as u64);
            match *r {
                Repr::Int { v, n, .. } => {
                    let x = self.b.build_load(self.c.i64_type(), v, "x")?;
                    let y = self.b.build_load(self.c.i8_type(), n, "y")?;
                    self.call(
                        "aergo_rt_store_int",
                        &[self.ctxp.into(), slot.into(), x.into(), y.into()],
                    )?;
                }
                Repr::Bool { v, n } => {
                    let x = self.b.build_load(self.c.i8_type(), v, "x")?;
                    let y = self.b.build_load(self.c.i8_type(), n, "y")?;
                    self.call(
                        "aergo_rt_store_bool",
                        &[self.ctxp.into(), slot.into(), x.into(), y.into()],
                    )?;
                }
                Repr::Num { p, .. } => self.call_checked(
                    "aergo_rt_store_dec",
                    &[self.ctxp.into(), slot.into(), p.into()],
                )?,
                Repr::Frame => {}
            }
        }
        Ok(())
    }

    fn reload(&self, s: usize) -> G<()> {
        let slot = self.i64c(s as u64);
        match self.slots.get(s).copied().unwrap_or(Repr::Frame) {
            Repr::Int { v, n, .. } => {
                self.call(
                    "aergo_rt_load_int",
                    &[self.ctxp.into(), slot.into(), v.into(), n.into()],
                )?;
            }
            Repr::Bool { v, n } => {
                self.call(
                    "aergo_rt_load_bool",
                    &[self.ctxp.into(), slot.into(), v.into(), n.into()],
                )?;
            }
            Repr::Num { p, .. } => {
                self.call(
                    "aergo_rt_load_dec",
                    &[self.ctxp.into(), slot.into(), p.into()],
                )?;
            }
            Repr::Frame => {}
        }
        Ok(())
    }

    fn reload_all(&self) -> G<()> {
        for s in 0..self.slots.len() {
            self.reload(s)?;
        }
        Ok(())
    }

    fn expr(&self, e: &Expr) -> G<JVal<'c>> {
        Ok(match e {
            Expr::Const(Value::Int(i)) => JVal::Int(self.i64c(*i as u64), self.b1(false)),
            Expr::Const(Value::Bool(x)) => JVal::Bool(self.b1(*x), self.b1(false)),
            Expr::Const(Value::Null) => JVal::Null,
            Expr::Const(Value::Num(d)) => {
                let p = self.entry_alloca_dec()?;
                let (lo, hi) = halves(d.mantissa() as u128);
                self.b.build_store(self.dec_field(p, 0)?, self.i64c(lo))?;
                self.b.build_store(self.dec_field(p, 1)?, self.i64c(hi))?;
                self.b
                    .build_store(self.dec_field(p, 2)?, self.i32c(u64::from(d.scale())))?;
                self.b.build_store(self.dec_field(p, 3)?, self.i32c(0))?;
                JVal::Num(p)
            }
            Expr::Var(s) => match self.slots.get(*s).copied().unwrap_or(Repr::Frame) {
                Repr::Int { v, n, .. } => JVal::Int(
                    self.b
                        .build_load(self.c.i64_type(), v, "v")?
                        .into_int_value(),
                    self.load_flag(n)?,
                ),
                Repr::Bool { v, n } => JVal::Bool(self.load_flag(v)?, self.load_flag(n)?),
                Repr::Num { p, .. } => {
                    // copy so later assignments to the variable do not alias
                    let t = self.entry_alloca_dec()?;
                    let val = self.b.build_load(self.dect, p, "dv")?;
                    self.b.build_store(t, val)?;
                    JVal::Num(t)
                }
                Repr::Frame => return Err(GenErr::Unsup(line!())),
            },
            Expr::Neg(a) => match self.expr(a)? {
                JVal::Int(v, n) => {
                    let notn = self.b.build_not(n, "nn")?;
                    let min = self.b.build_int_compare(
                        IntPredicate::EQ,
                        v,
                        self.i64c(i64::MIN as u64),
                        "min",
                    )?;
                    let bad = self.b.build_and(notn, min, "bad")?;
                    self.err_if(bad, E_INT_OVERFLOW)?;
                    JVal::Int(self.b.build_int_neg(v, "neg")?, n)
                }
                JVal::Num(p) => JVal::Num(self.dec_unop(0, p, self.i64c(0))?),
                JVal::Null => JVal::Null,
                JVal::Bool(..) => return Err(GenErr::Unsup(line!())),
            },
            Expr::Not(a) => match self.expr(a)? {
                JVal::Bool(v, n) => JVal::Bool(self.b.build_not(v, "not")?, n),
                JVal::Null => JVal::Null,
                _ => return Err(GenErr::Unsup(line!())),
            },
            Expr::Arith(op, a, b) => {
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                self.arith(*op, x, y)?
            }
            Expr::Cmp(op, a, b) => {
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                self.cmp(*op, x, y)?
            }
            Expr::And(a, b) | Expr::Or(a, b) => self.logic(matches!(e, Expr::And(..)), a, b)?,
            Expr::IsNull(a, neg) => {
                let v = self.expr(a)?;
                let n = self.null_of(v)?;
                let r = if *neg { self.b.build_not(n, "nn")? } else { n };
                JVal::Bool(r, self.b1(false))
            }
            Expr::Builtin(Builtin::Abs, args) if args.len() == 1 => match self.expr(&args[0])? {
                JVal::Int(v, n) => {
                    let notn = self.b.build_not(n, "nn")?;
                    let min = self.b.build_int_compare(
                        IntPredicate::EQ,
                        v,
                        self.i64c(i64::MIN as u64),
                        "min",
                    )?;
                    let bad = self.b.build_and(notn, min, "bad")?;
                    self.err_if(bad, E_INT_OVERFLOW)?;
                    let neg = self
                        .b
                        .build_int_compare(IntPredicate::SLT, v, self.i64c(0), "lt")?;
                    let nv = self.b.build_int_neg(v, "nv")?;
                    JVal::Int(self.b.build_select(neg, nv, v, "abs")?.into_int_value(), n)
                }
                JVal::Num(p) => JVal::Num(self.dec_unop(1, p, self.i64c(0))?),
                JVal::Null => JVal::Null,
                JVal::Bool(..) => return Err(GenErr::Unsup(line!())),
            },
            Expr::Builtin(Builtin::Round, args) if !args.is_empty() && args.len() <= 2 => {
                let x = self.expr(&args[0])?;
                let (d, dn) = match args.get(1) {
                    Some(a) => match self.expr(a)? {
                        JVal::Int(v, n) => (v, n),
                        JVal::Null => (self.i64c(0), self.b1(true)),
                        _ => return Err(GenErr::Unsup(line!())),
                    },
                    None => (self.i64c(0), self.b1(false)),
                };
                let p = self.as_dec(x)?;
                // any NULL argument makes the result NULL
                let src = self.entry_alloca_dec()?;
                let val = self.b.build_load(self.dect, p, "rv")?;
                self.b.build_store(src, val)?;
                let n0 = self.dec_null(src)?;
                let any = self.b.build_or(n0, dn, "any")?;
                let anyz = self.b.build_int_z_extend(any, self.c.i32_type(), "anyz")?;
                self.b.build_store(self.dec_field(src, 3)?, anyz)?;
                JVal::Num(self.dec_unop(2, src, d)?)
            }
            Expr::Case(op, whens, el) => self.case(op.as_deref(), whens, el.as_deref())?,
            Expr::Call(fi, args) => {
                let kind = match self.rets.get(*fi) {
                    Some(SqlType::BigInt | SqlType::Integer) => 0u64,
                    Some(SqlType::Boolean) => 1,
                    Some(SqlType::Numeric(_)) => 2,
                    _ => return Err(GenErr::Unsup(line!())),
                };
                for a in args {
                    self.push_arg(a)?;
                }
                let (iv, nv) = {
                    let entry = self
                        .func
                        .get_first_basic_block()
                        .ok_or(GenErr::Unsup(line!()))?;
                    let tb = self.c.create_builder();
                    match entry.get_first_instruction() {
                        Some(i) => tb.position_before(&i),
                        None => tb.position_at_end(entry),
                    }
                    (
                        tb.build_alloca(self.c.i64_type(), "ci")?,
                        tb.build_alloca(self.c.i8_type(), "cn")?,
                    )
                };
                let dec = self.entry_alloca_dec()?;
                self.call_checked(
                    "aergo_rt_call",
                    &[
                        self.ctxp.into(),
                        self.i64c(*fi as u64).into(),
                        self.i64c(args.len() as u64).into(),
                        self.i32c(kind).into(),
                        iv.into(),
                        nv.into(),
                        dec.into(),
                    ],
                )?;
                match kind {
                    0 => JVal::Int(
                        self.b
                            .build_load(self.c.i64_type(), iv, "cv")?
                            .into_int_value(),
                        self.load_flag(nv)?,
                    ),
                    1 => {
                        let v = self
                            .b
                            .build_load(self.c.i64_type(), iv, "cv")?
                            .into_int_value();
                        let b =
                            self.b
                                .build_int_compare(IntPredicate::NE, v, self.i64c(0), "cb")?;
                        JVal::Bool(b, self.load_flag(nv)?)
                    }
                    _ => JVal::Num(dec),
                }
            }
            Expr::Cast(a, SqlType::Numeric(None)) => match self.expr(a)? {
                JVal::Int(v, n) => JVal::Num(self.int_to_dec(v, n)?),
                JVal::Num(p) => JVal::Num(p),
                JVal::Null => JVal::Null,
                JVal::Bool(..) => return Err(GenErr::Unsup(line!())),
            },
            Expr::Coalesce(list) => {
                // CASE WHEN a IS NOT NULL THEN a ... evaluated once each, in order
                self.coalesce(list)?
            }
            _ => return Err(GenErr::Unsup(line!())),
        })
    }

    fn dec_unop(&self, op: u64, p: PointerValue<'c>, digits: IntValue<'c>) -> G<PointerValue<'c>> {
        let out = self.entry_alloca_dec()?;
        self.call_checked(
            "aergo_rt_dec_unop",
            &[
                self.ctxp.into(),
                self.i32c(op).into(),
                p.into(),
                digits.into(),
                out.into(),
            ],
        )?;
        Ok(out)
    }

    fn arith(&self, op: ArithOp, x: JVal<'c>, y: JVal<'c>) -> G<JVal<'c>> {
        match (x, y) {
            (JVal::Null, JVal::Bool(..)) | (JVal::Bool(..), _) | (_, JVal::Bool(..)) => {
                Err(GenErr::Unsup(line!()))
            }
            (JVal::Null, _) | (_, JVal::Null) => Ok(JVal::Null),
            (JVal::Int(a, na), JVal::Int(b, nb)) => {
                let n = self.b.build_or(na, nb, "n")?;
                let notn = self.b.build_not(n, "nn")?;
                let i64t = self.c.i64_type();
                let v = match op {
                    ArithOp::Add | ArithOp::Sub | ArithOp::Mul => {
                        let name = match op {
                            ArithOp::Add => "llvm.sadd.with.overflow",
                            ArithOp::Sub => "llvm.ssub.with.overflow",
                            _ => "llvm.smul.with.overflow",
                        };
                        let intr = Intrinsic::find(name).ok_or(GenErr::Unsup(line!()))?;
                        let f = intr
                            .get_declaration(self.m, &[i64t.into()])
                            .ok_or(GenErr::Unsup(line!()))?;
                        let r = self
                            .b
                            .build_call(f, &[a.into(), b.into()], "ov")?
                            .try_as_basic_value()
                            .basic()
                            .ok_or(GenErr::Unsup(line!()))?
                            .into_struct_value();
                        let v = self.b.build_extract_value(r, 0, "v")?.into_int_value();
                        let o = self.b.build_extract_value(r, 1, "o")?.into_int_value();
                        let bad = self.b.build_and(notn, o, "bad")?;
                        self.err_if(bad, E_INT_OVERFLOW)?;
                        v
                    }
                    ArithOp::Div | ArithOp::Mod => {
                        let zero =
                            self.b
                                .build_int_compare(IntPredicate::EQ, b, self.i64c(0), "z")?;
                        let bad = self.b.build_and(notn, zero, "bad")?;
                        self.err_if(bad, E_DIV_ZERO)?;
                        let amin = self.b.build_int_compare(
                            IntPredicate::EQ,
                            a,
                            self.i64c(i64::MIN as u64),
                            "amin",
                        )?;
                        let bm1 = self.b.build_int_compare(
                            IntPredicate::EQ,
                            b,
                            self.i64c(u64::MAX),
                            "bm1",
                        )?;
                        let ov = self.b.build_and(amin, bm1, "ov")?;
                        let bad = self.b.build_and(notn, ov, "bad2")?;
                        self.err_if(bad, E_INT_OVERFLOW)?;
                        // safe divisor when NULL (or when the checks above passed)
                        let unsafe_div = self.b.build_or(zero, ov, "ud")?;
                        let unsafe_div = self.b.build_or(unsafe_div, n, "ud2")?;
                        let d = self
                            .b
                            .build_select(unsafe_div, self.i64c(1), b, "d")?
                            .into_int_value();
                        if op == ArithOp::Div {
                            self.b.build_int_signed_div(a, d, "q")?
                        } else {
                            self.b.build_int_signed_rem(a, d, "r")?
                        }
                    }
                };
                Ok(JVal::Int(v, n))
            }
            _ => {
                let a = self.as_dec(x)?;
                let b = self.as_dec(y)?;
                let out = self.entry_alloca_dec()?;
                let code = match op {
                    ArithOp::Add => 0,
                    ArithOp::Sub => 1,
                    ArithOp::Mul => 2,
                    ArithOp::Div => 3,
                    ArithOp::Mod => 4,
                };
                self.call_checked(
                    "aergo_rt_dec_binop",
                    &[
                        self.ctxp.into(),
                        self.i32c(code).into(),
                        a.into(),
                        b.into(),
                        out.into(),
                    ],
                )?;
                Ok(JVal::Num(out))
            }
        }
    }

    fn cmp(&self, op: CmpOp, x: JVal<'c>, y: JVal<'c>) -> G<JVal<'c>> {
        let (ord_lt, ord_eq, ord_gt, n): (IntValue, IntValue, IntValue, IntValue) = match (x, y) {
            (JVal::Null, _) | (_, JVal::Null) => {
                return Ok(JVal::Bool(self.b1(false), self.b1(true)))
            }
            (JVal::Int(a, na), JVal::Int(b, nb)) | (JVal::Bool(a, na), JVal::Bool(b, nb)) => {
                let signed = matches!(x, JVal::Int(..));
                let lt = self.b.build_int_compare(
                    if signed {
                        IntPredicate::SLT
                    } else {
                        IntPredicate::ULT
                    },
                    a,
                    b,
                    "lt",
                )?;
                let eq = self.b.build_int_compare(IntPredicate::EQ, a, b, "eq")?;
                let gt = self.b.build_int_compare(
                    if signed {
                        IntPredicate::SGT
                    } else {
                        IntPredicate::UGT
                    },
                    a,
                    b,
                    "gt",
                )?;
                (lt, eq, gt, self.b.build_or(na, nb, "n")?)
            }
            (JVal::Bool(..), _) | (_, JVal::Bool(..)) => return Err(GenErr::Unsup(line!())),
            _ => {
                let a = self.as_dec(x)?;
                let b = self.as_dec(y)?;
                let n = self.b.build_or(self.dec_null(a)?, self.dec_null(b)?, "n")?;
                let r = self
                    .call("aergo_rt_dec_cmp", &[a.into(), b.into()])?
                    .ok_or(GenErr::Unsup(line!()))?;
                let lt = self
                    .b
                    .build_int_compare(IntPredicate::SLT, r, self.i32c(0), "lt")?;
                let eq = self
                    .b
                    .build_int_compare(IntPredicate::EQ, r, self.i32c(0), "eq")?;
                let gt = self
                    .b
                    .build_int_compare(IntPredicate::SGT, r, self.i32c(0), "gt")?;
                (lt, eq, gt, n)
            }
        };
        let v = match op {
            CmpOp::Eq => ord_eq,
            CmpOp::Ne => self.b.build_not(ord_eq, "ne")?,
            CmpOp::Lt => ord_lt,
            CmpOp::Le => self.b.build_not(ord_gt, "le")?,
            CmpOp::Gt => ord_gt,
            CmpOp::Ge => self.b.build_not(ord_lt, "ge")?,
        };
        Ok(JVal::Bool(v, n))
    }

    fn logic(&self, is_and: bool, a: &Expr, b: &Expr) -> G<JVal<'c>> {
        let (va, na) = {
            let x = self.expr(a)?;
            self.as_bool(x)?
        };
        let start = self.b.get_insert_block().ok_or(GenErr::Unsup(line!()))?;
        let rhs = self.c.append_basic_block(self.func, "rhs");
        let done = self.c.append_basic_block(self.func, "done");
        let notna = self.b.build_not(na, "nna")?;
        // AND short-circuits on a definite FALSE, OR on a definite TRUE
        let decisive = if is_and {
            self.b.build_not(va, "nva")?
        } else {
            va
        };
        let short = self.b.build_and(notna, decisive, "short")?;
        self.b.build_conditional_branch(short, done, rhs)?;
        self.b.position_at_end(rhs);
        let (vb, nb) = {
            let y = self.expr(b)?;
            self.as_bool(y)?
        };
        let notnb = self.b.build_not(nb, "nnb")?;
        let a_true = self.b.build_and(notna, va, "at")?;
        let b_true = self.b.build_and(notnb, vb, "bt")?;
        let a_false = self.b.build_and(notna, self.b.build_not(va, "x")?, "af")?;
        let b_false = self.b.build_and(notnb, self.b.build_not(vb, "y")?, "bf")?;
        let (def_true, def_false) = if is_and {
            (
                self.b.build_and(a_true, b_true, "t")?,
                self.b.build_or(a_false, b_false, "f")?,
            )
        } else {
            (
                self.b.build_or(a_true, b_true, "t")?,
                self.b.build_and(a_false, b_false, "f")?,
            )
        };
        let known = self.b.build_or(def_true, def_false, "k")?;
        let rn = self.b.build_not(known, "rn")?;
        let rhs_end = self.b.get_insert_block().ok_or(GenErr::Unsup(line!()))?;
        self.b.build_unconditional_branch(done)?;
        self.b.position_at_end(done);
        let pv = self.b.build_phi(self.c.bool_type(), "pv")?;
        pv.add_incoming(&[(&self.b1(!is_and), start), (&def_true, rhs_end)]);
        let pn = self.b.build_phi(self.c.bool_type(), "pn")?;
        pn.add_incoming(&[(&self.b1(false), start), (&rn, rhs_end)]);
        Ok(JVal::Bool(
            pv.as_basic_value().into_int_value(),
            pn.as_basic_value().into_int_value(),
        ))
    }

    fn truthy(&self, v: JVal<'c>) -> G<IntValue<'c>> {
        let (x, n) = self.as_bool(v)?;
        let nn = self.b.build_not(n, "nn")?;
        Ok(self.b.build_and(x, nn, "truthy")?)
    }

    /// Result storage for CASE/COALESCE: kind of the first non-NULL branch.
    fn result_slot(&self, kinds: &[JKind]) -> G<(JKind, Repr<'c>)> {
        let k = kinds
            .iter()
            .copied()
            .find(|k| *k != JKind::Null)
            .unwrap_or(JKind::Null);
        if kinds.iter().any(|x| *x != k && *x != JKind::Null) {
            return Err(GenErr::Unsup(line!()));
        }
        let entry = self
            .func
            .get_first_basic_block()
            .ok_or(GenErr::Unsup(line!()))?;
        let tb = self.c.create_builder();
        match entry.get_first_instruction() {
            Some(i) => tb.position_before(&i),
            None => tb.position_at_end(entry),
        }
        let r = match k {
            JKind::Int => Repr::Int {
                v: tb.build_alloca(self.c.i64_type(), "cv")?,
                n: tb.build_alloca(self.c.i8_type(), "cn")?,
                integer: false,
            },
            JKind::Bool => Repr::Bool {
                v: tb.build_alloca(self.c.i8_type(), "cv")?,
                n: tb.build_alloca(self.c.i8_type(), "cn")?,
            },
            JKind::Num => Repr::Num {
                p: tb.build_alloca(self.dect, "cd")?,
                fit: None,
            },
            JKind::Null | JKind::Unsupported => Repr::Frame,
        };
        Ok((k, r))
    }

    fn put(&self, r: Repr<'c>, v: JVal<'c>) -> G<()> {
        match (r, v) {
            (Repr::Frame, _) => Ok(()),
            (Repr::Int { v: pv, n: pn, .. }, JVal::Int(x, n)) => {
                self.b.build_store(pv, x)?;
                self.store_flag(pn, n)
            }
            (Repr::Bool { v: pv, n: pn }, JVal::Bool(x, n)) => {
                self.store_flag(pv, x)?;
                self.store_flag(pn, n)
            }
            (Repr::Num { p, .. }, JVal::Num(q)) => {
                let val = self.b.build_load(self.dect, q, "cp")?;
                self.b.build_store(p, val)?;
                Ok(())
            }
            (Repr::Int { n, .. } | Repr::Bool { n, .. }, JVal::Null) => {
                self.b.build_store(n, self.i8c(1))?;
                Ok(())
            }
            (Repr::Num { p, .. }, JVal::Null) => {
                self.b.build_store(self.dec_field(p, 3)?, self.i32c(1))?;
                Ok(())
            }
            _ => Err(GenErr::Unsup(line!())),
        }
    }

    fn get(&self, k: JKind, r: Repr<'c>) -> G<JVal<'c>> {
        Ok(match (k, r) {
            (JKind::Int, Repr::Int { v, n, .. }) => JVal::Int(
                self.b
                    .build_load(self.c.i64_type(), v, "g")?
                    .into_int_value(),
                self.load_flag(n)?,
            ),
            (JKind::Bool, Repr::Bool { v, n }) => {
                JVal::Bool(self.load_flag(v)?, self.load_flag(n)?)
            }
            (JKind::Num, Repr::Num { p, .. }) => JVal::Num(p),
            _ => JVal::Null,
        })
    }

    fn case(&self, op: Option<&Expr>, whens: &[(Expr, Expr)], el: Option<&Expr>) -> G<JVal<'c>> {
        let mut kinds: Vec<JKind> = whens
            .iter()
            .map(|(_, r)| static_kind(r, &self.slots, &self.rets))
            .collect();
        kinds.push(
            el.map(|e| static_kind(e, &self.slots, &self.rets))
                .unwrap_or(JKind::Null),
        );
        if kinds.contains(&JKind::Unsupported) {
            return Err(GenErr::Unsup(line!()));
        }
        let (k, slot) = self.result_slot(&kinds)?;
        let base = match op {
            Some(o) => Some(self.expr(o)?),
            None => None,
        };
        let done = self.c.append_basic_block(self.func, "case_done");
        for (c, r) in whens {
            let cv = self.expr(c)?;
            let hit = match base {
                Some(b) => {
                    let eq = self.cmp(CmpOp::Eq, b, cv)?;
                    self.truthy(eq)?
                }
                None => self.truthy(cv)?,
            };
            let then = self.c.append_basic_block(self.func, "then");
            let next = self.c.append_basic_block(self.func, "next");
            self.b.build_conditional_branch(hit, then, next)?;
            self.b.position_at_end(then);
            let rv = self.expr(r)?;
            self.put(slot, rv)?;
            self.b.build_unconditional_branch(done)?;
            self.b.position_at_end(next);
        }
        match el {
            Some(e) => {
                let v = self.expr(e)?;
                self.put(slot, v)?;
            }
            None => self.put(slot, JVal::Null)?,
        }
        self.b.build_unconditional_branch(done)?;
        self.b.position_at_end(done);
        self.get(k, slot)
    }

    fn coalesce(&self, list: &[Expr]) -> G<JVal<'c>> {
        let kinds: Vec<JKind> = list
            .iter()
            .map(|e| static_kind(e, &self.slots, &self.rets))
            .collect();
        if kinds.contains(&JKind::Unsupported) {
            return Err(GenErr::Unsup(line!()));
        }
        let (k, slot) = self.result_slot(&kinds)?;
        let done = self.c.append_basic_block(self.func, "coal_done");
        for e in list {
            let v = self.expr(e)?;
            self.put(slot, v)?;
            let n = self.null_of(v)?;
            let next = self.c.append_basic_block(self.func, "coal_next");
            self.b.build_conditional_branch(n, next, done)?;
            self.b.position_at_end(next);
        }
        self.put(slot, JVal::Null)?;
        self.b.build_unconditional_branch(done)?;
        self.b.position_at_end(done);
        self.get(k, slot)
    }

    /// Stores a value into a variable with the interpreter's coercion.
    fn assign(&self, slot: usize, v: JVal<'c>) -> G<()> {
        match (self.slots.get(slot).copied().unwrap_or(Repr::Frame), v) {
            (Repr::Frame, JVal::Null) => {
                self.call(
                    "aergo_rt_store_null",
                    &[self.ctxp.into(), self.i64c(slot as u64).into()],
                )?;
                Ok(())
            }
            (Repr::Frame, _) => Err(GenErr::Unsup(line!())),
            (
                Repr::Int {
                    v: pv,
                    n: pn,
                    integer,
                },
                JVal::Int(x, n),
            ) => {
                if integer {
                    let lo = self.b.build_int_compare(
                        IntPredicate::SLT,
                        x,
                        self.i64c(i64::from(i32::MIN) as u64),
                        "lo",
                    )?;
                    let hi = self.b.build_int_compare(
                        IntPredicate::SGT,
                        x,
                        self.i64c(i32::MAX as u64),
                        "hi",
                    )?;
                    let out = self.b.build_or(lo, hi, "out")?;
                    let notn = self.b.build_not(n, "nn")?;
                    let bad = self.b.build_and(out, notn, "bad")?;
                    self.err_if(bad, E_INTEGER_RANGE)?;
                }
                self.b.build_store(pv, x)?;
                self.store_flag(pn, n)
            }
            (
                Repr::Int {
                    v: pv,
                    n: pn,
                    integer,
                },
                JVal::Num(p),
            ) => self.call_checked(
                "aergo_rt_dec_to_int",
                &[
                    self.ctxp.into(),
                    p.into(),
                    self.i32c(u64::from(integer)).into(),
                    pv.into(),
                    pn.into(),
                ],
            ),
            (Repr::Num { p, fit }, JVal::Int(..) | JVal::Num(_)) => {
                let src = self.as_dec(v)?;
                match fit {
                    Some((pp, ss)) => self.call_checked(
                        "aergo_rt_dec_fit",
                        &[
                            self.ctxp.into(),
                            src.into(),
                            self.i32c(u64::from(pp)).into(),
                            self.i32c(u64::from(ss)).into(),
                            p.into(),
                        ],
                    ),
                    None => {
                        let val = self.b.build_load(self.dect, src, "cp")?;
                        self.b.build_store(p, val)?;
                        Ok(())
                    }
                }
            }
            (Repr::Bool { .. }, JVal::Bool(..)) | (_, JVal::Null) => self.put(self.slots[slot], v),
            _ => Err(GenErr::Unsup(line!())),
        }
    }

    /// Evaluates an argument and pushes it for RAISE or a call.
    fn push_arg(&self, a: &Expr) -> G<()> {
        let ctx: BasicMetadataValueEnum<'c> = self.ctxp.into();
        match a {
            Expr::Const(v) if !matches!(v, Value::Num(_)) => {
                self.call(
                    "aergo_rt_push_const",
                    &[ctx, self.i64c(v as *const Value as usize as u64).into()],
                )?;
            }
            Expr::Var(slot) if matches!(self.slots.get(*slot), Some(Repr::Frame)) => {
                self.call("aergo_rt_push_var", &[ctx, self.i64c(*slot as u64).into()])?;
            }
            e => match self.expr(e)? {
                JVal::Int(v, n) => {
                    let nz = self.b.build_int_z_extend(n, self.c.i8_type(), "nz")?;
                    self.call("aergo_rt_push_int", &[ctx, v.into(), nz.into()])?;
                }
                JVal::Bool(v, n) => {
                    let vz = self.b.build_int_z_extend(v, self.c.i8_type(), "vz")?;
                    let nz = self.b.build_int_z_extend(n, self.c.i8_type(), "nz")?;
                    self.call("aergo_rt_push_bool", &[ctx, vz.into(), nz.into()])?;
                }
                JVal::Num(p) => self.call_checked("aergo_rt_push_dec", &[ctx, p.into()])?,
                JVal::Null => {
                    self.call(
                        "aergo_rt_push_const",
                        &[
                            ctx,
                            self.i64c(&NULL_VALUE as *const Value as usize as u64)
                                .into(),
                        ],
                    )?;
                }
            },
        }
        Ok(())
    }

    fn dead_block(&self) {
        let bb = self.c.append_basic_block(self.func, "dead");
        self.b.position_at_end(bb);
    }

    /// Generates statements; returns true when control cannot fall through.
    fn stmts(&mut self, list: &[Stmt]) -> G<bool> {
        for s in list {
            if self.stmt(s)? {
                self.dead_block();
            }
        }
        Ok(false)
    }

    fn int_bound(&self, e: &Expr, code: u32) -> G<IntValue<'c>> {
        match self.expr(e)? {
            JVal::Int(v, n) => {
                self.err_if(n, code)?;
                Ok(v)
            }
            JVal::Null => {
                self.err_if(self.b1(true), code)?;
                Ok(self.i64c(0))
            }
            _ => Err(GenErr::Unsup(line!())),
        }
    }

    fn stmt(&mut self, s: &Stmt) -> G<bool> {
        self.charge(s.cost)?;
        match &s.kind {
            StmtKind::Assign(slot, e) => {
                let v = self.expr(e)?;
                self.assign(*slot, v)?;
            }
            StmtKind::Init(list) => {
                for (slot, def) in list {
                    let v = match def {
                        Some(e) => self.expr(e)?,
                        None => JVal::Null,
                    };
                    self.assign(*slot, v)?;
                }
            }
            StmtKind::Sql(plan, into, _) => {
                if into.iter().any(|s| self.slots.get(*s).is_none()) {
                    return Err(GenErr::Unsup(line!()));
                }
                // the executor reads only the variables the statement names
                self.spill(&plan.vars_used())?;
                let addr = &s.kind as *const StmtKind as usize as u64;
                // A primary-key point statement is resolved here, once: it runs
                // straight from the lookup to the variables (same outcome).
                let helper = if crate::exec::is_point_statement(plan, into) {
                    "aergo_rt_sql_point"
                } else {
                    "aergo_rt_sql"
                };
                self.call_checked(helper, &[self.ctxp.into(), self.i64c(addr).into()])?;
                self.reload(FOUND_SLOT)?;
                for t in into {
                    self.reload(*t)?;
                }
            }
            StmtKind::If(branches, else_) => {
                let merge = self.c.append_basic_block(self.func, "endif");
                for (c, body) in branches {
                    let cv = self.expr(c)?;
                    let t = self.truthy(cv)?;
                    let then = self.c.append_basic_block(self.func, "then");
                    let next = self.c.append_basic_block(self.func, "else");
                    self.b.build_conditional_branch(t, then, next)?;
                    self.b.position_at_end(then);
                    self.stmts(body)?;
                    self.b.build_unconditional_branch(merge)?;
                    self.b.position_at_end(next);
                }
                self.stmts(else_)?;
                self.b.build_unconditional_branch(merge)?;
                self.b.position_at_end(merge);
            }
            StmtKind::Loop(id, plan, body) => {
                let header = self.c.append_basic_block(self.func, "loop");
                let latch = self.c.append_basic_block(self.func, "latch");
                let exit = self.c.append_basic_block(self.func, "endloop");
                self.loops.insert(*id, (latch, exit));
                match plan {
                    LoopPlan::Plain => {
                        self.b.build_unconditional_branch(header)?;
                        self.b.position_at_end(header);
                        self.stmts(body)?;
                        self.b.build_unconditional_branch(latch)?;
                        self.b.position_at_end(latch);
                        self.charge(s.cost)?;
                        self.b.build_unconditional_branch(header)?;
                    }
                    LoopPlan::While(c) => {
                        self.b.build_unconditional_branch(header)?;
                        self.b.position_at_end(header);
                        let cv = self.expr(c)?;
                        let t = self.truthy(cv)?;
                        let bodyb = self.c.append_basic_block(self.func, "body");
                        self.b.build_conditional_branch(t, bodyb, exit)?;
                        self.b.position_at_end(bodyb);
                        self.stmts(body)?;
                        self.b.build_unconditional_branch(latch)?;
                        self.b.position_at_end(latch);
                        self.charge(s.cost)?;
                        self.b.build_unconditional_branch(header)?;
                    }
                    LoopPlan::Range {
                        var,
                        lo,
                        hi,
                        by,
                        reverse,
                    } => {
                        let Some(Repr::Int { v: vp, n: vn, .. }) = self.slots.get(*var).copied()
                        else {
                            return Err(GenErr::Unsup(line!()));
                        };
                        let a = self.int_bound(lo, E_FOR_LO)?;
                        let bnd = self.int_bound(hi, E_FOR_HI)?;
                        let step = match by {
                            Some(e) => self.int_bound(e, E_FOR_BY)?,
                            None => self.i64c(1),
                        };
                        let nonpos = self.b.build_int_compare(
                            IntPredicate::SLE,
                            step,
                            self.i64c(0),
                            "np",
                        )?;
                        self.err_if(nonpos, E_FOR_STEP)?;
                        let ip = {
                            let entry = self
                                .func
                                .get_first_basic_block()
                                .ok_or(GenErr::Unsup(line!()))?;
                            let tb = self.c.create_builder();
                            match entry.get_first_instruction() {
                                Some(i) => tb.position_before(&i),
                                None => tb.position_at_end(entry),
                            }
                            tb.build_alloca(self.c.i64_type(), "i")?
                        };
                        self.b.build_store(ip, a)?;
                        self.b.build_unconditional_branch(header)?;
                        self.b.position_at_end(header);
                        let i = self
                            .b
                            .build_load(self.c.i64_type(), ip, "iv")?
                            .into_int_value();
                        let beyond = self.b.build_int_compare(
                            if *reverse {
                                IntPredicate::SLT
                            } else {
                                IntPredicate::SGT
                            },
                            i,
                            bnd,
                            "beyond",
                        )?;
                        let bodyb = self.c.append_basic_block(self.func, "body");
                        self.b.build_conditional_branch(beyond, exit, bodyb)?;
                        self.b.position_at_end(bodyb);
                        self.b.build_store(vp, i)?;
                        self.b.build_store(vn, self.i8c(0))?;
                        self.stmts(body)?;
                        self.b.build_unconditional_branch(latch)?;
                        self.b.position_at_end(latch);
                        self.charge(s.cost)?;
                        let i = self
                            .b
                            .build_load(self.c.i64_type(), ip, "iv2")?
                            .into_int_value();
                        let name = if *reverse {
                            "llvm.ssub.with.overflow"
                        } else {
                            "llvm.sadd.with.overflow"
                        };
                        let intr = Intrinsic::find(name).ok_or(GenErr::Unsup(line!()))?;
                        let f = intr
                            .get_declaration(self.m, &[self.c.i64_type().into()])
                            .ok_or(GenErr::Unsup(line!()))?;
                        let r = self
                            .b
                            .build_call(f, &[i.into(), step.into()], "nx")?
                            .try_as_basic_value()
                            .basic()
                            .ok_or(GenErr::Unsup(line!()))?
                            .into_struct_value();
                        let nx = self.b.build_extract_value(r, 0, "nxv")?.into_int_value();
                        let o = self.b.build_extract_value(r, 1, "nxo")?.into_int_value();
                        self.b.build_store(ip, nx)?;
                        self.b.build_conditional_branch(o, exit, header)?;
                    }
                    LoopPlan::Query { slots: rec, query } => {
                        let addr = &s.kind as *const StmtKind as usize as u64;
                        self.spill(&query.vars_used())?;
                        self.call_checked(
                            "aergo_rt_query_open",
                            &[self.ctxp.into(), self.i64c(addr).into()],
                        )?;
                        self.reload(FOUND_SLOT)?;
                        self.b.build_unconditional_branch(header)?;
                        self.b.position_at_end(header);
                        let got = self
                            .call(
                                "aergo_rt_query_next",
                                &[self.ctxp.into(), self.i64c(addr).into()],
                            )?
                            .ok_or(GenErr::Unsup(line!()))?;
                        let bad =
                            self.b
                                .build_int_compare(IntPredicate::EQ, got, self.i32c(2), "bad")?;
                        let okb = self.c.append_basic_block(self.func, "ok");
                        self.b.build_conditional_branch(bad, self.fail_bb, okb)?;
                        self.b.position_at_end(okb);
                        let has =
                            self.b
                                .build_int_compare(IntPredicate::EQ, got, self.i32c(1), "has")?;
                        let bodyb = self.c.append_basic_block(self.func, "body");
                        self.b.build_conditional_branch(has, bodyb, exit)?;
                        self.b.position_at_end(bodyb);
                        for r in rec {
                            self.reload(*r)?;
                        }
                        self.stmts(body)?;
                        self.b.build_unconditional_branch(latch)?;
                        self.b.position_at_end(latch);
                        self.charge(s.cost)?;
                        self.b.build_unconditional_branch(header)?;
                    }
                }
                self.b.position_at_end(exit);
            }
            StmtKind::Exit(is_continue, target, cond) => {
                let (latch, exit) = self
                    .loops
                    .get(target)
                    .copied()
                    .ok_or(GenErr::Unsup(line!()))?;
                let dest = if *is_continue { latch } else { exit };
                match cond {
                    Some(c) => {
                        let cv = self.expr(c)?;
                        let t = self.truthy(cv)?;
                        let cont = self.c.append_basic_block(self.func, "cont");
                        self.b.build_conditional_branch(t, dest, cont)?;
                        self.b.position_at_end(cont);
                    }
                    None => {
                        self.b.build_unconditional_branch(dest)?;
                        return Ok(true);
                    }
                }
            }
            StmtKind::Return(e) => {
                let ctx = self.ctxp.into();
                match e {
                    None => {
                        self.call(
                            "aergo_rt_ret_const",
                            &[
                                ctx,
                                self.i64c(&NULL_VALUE as *const Value as usize as u64)
                                    .into(),
                            ],
                        )?;
                    }
                    Some(Expr::Const(v)) if !matches!(v, Value::Num(_)) => {
                        self.call(
                            "aergo_rt_ret_const",
                            &[ctx, self.i64c(v as *const Value as usize as u64).into()],
                        )?;
                    }
                    Some(Expr::Var(slot)) if matches!(self.slots.get(*slot), Some(Repr::Frame)) => {
                        self.call("aergo_rt_ret_var", &[ctx, self.i64c(*slot as u64).into()])?;
                    }
                    Some(e) => match self.expr(e)? {
                        JVal::Int(v, n) => {
                            let nz = self.b.build_int_z_extend(n, self.c.i8_type(), "nz")?;
                            self.call("aergo_rt_ret_int", &[ctx, v.into(), nz.into()])?;
                        }
                        JVal::Bool(v, n) => {
                            let vz = self.b.build_int_z_extend(v, self.c.i8_type(), "vz")?;
                            let nz = self.b.build_int_z_extend(n, self.c.i8_type(), "nz")?;
                            self.call("aergo_rt_ret_bool", &[ctx, vz.into(), nz.into()])?;
                        }
                        JVal::Num(p) => self.call_checked("aergo_rt_ret_dec", &[ctx, p.into()])?,
                        JVal::Null => {
                            self.call(
                                "aergo_rt_ret_const",
                                &[
                                    ctx,
                                    self.i64c(&NULL_VALUE as *const Value as usize as u64)
                                        .into(),
                                ],
                            )?;
                        }
                    },
                }
                self.b.build_return(Some(&self.i32c(0)))?;
                return Ok(true);
            }
            StmtKind::Raise(_, _, args) => {
                let ctx = self.ctxp.into();
                for a in args {
                    self.push_arg(a)?;
                }
                let addr = &s.kind as *const StmtKind as usize as u64;
                self.call_checked("aergo_rt_raise", &[ctx, self.i64c(addr).into()])?;
            }
        }
        Ok(false)
    }
}

static NULL_VALUE: Value = Value::Null;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JKind {
    Int,
    Num,
    Bool,
    Null,
    Unsupported,
}

/// Static kind of an expression as the JIT would produce it.
fn static_kind(e: &Expr, slots: &[Repr], rets: &[SqlType]) -> JKind {
    match e {
        Expr::Const(Value::Int(_)) => JKind::Int,
        Expr::Const(Value::Num(_)) => JKind::Num,
        Expr::Const(Value::Bool(_)) => JKind::Bool,
        Expr::Const(Value::Null) => JKind::Null,
        Expr::Var(s) => match slots.get(*s) {
            Some(Repr::Int { .. }) => JKind::Int,
            Some(Repr::Num { .. }) => JKind::Num,
            Some(Repr::Bool { .. }) => JKind::Bool,
            _ => JKind::Unsupported,
        },
        Expr::Neg(a) => static_kind(a, slots, rets),
        Expr::Builtin(Builtin::Abs, args) => args
            .first()
            .map(|a| static_kind(a, slots, rets))
            .unwrap_or(JKind::Unsupported),
        Expr::Builtin(Builtin::Round, _) => JKind::Num,
        Expr::Not(_) | Expr::Cmp(..) | Expr::And(..) | Expr::Or(..) | Expr::IsNull(..) => {
            JKind::Bool
        }
        Expr::Arith(_, a, b) => match (static_kind(a, slots, rets), static_kind(b, slots, rets)) {
            (JKind::Unsupported, _)
            | (_, JKind::Unsupported)
            | (JKind::Bool, _)
            | (_, JKind::Bool) => JKind::Unsupported,
            (JKind::Null, _) | (_, JKind::Null) => JKind::Null,
            (JKind::Int, JKind::Int) => JKind::Int,
            _ => JKind::Num,
        },
        Expr::Case(_, whens, el) => {
            let mut k = el
                .as_deref()
                .map(|x| static_kind(x, slots, rets))
                .unwrap_or(JKind::Null);
            for (_, r) in whens {
                let rk = static_kind(r, slots, rets);
                if rk == JKind::Unsupported {
                    return rk;
                }
                if k == JKind::Null {
                    k = rk;
                }
            }
            k
        }
        Expr::Call(fi, _) => match rets.get(*fi) {
            Some(SqlType::BigInt | SqlType::Integer) => JKind::Int,
            Some(SqlType::Numeric(_)) => JKind::Num,
            Some(SqlType::Boolean) => JKind::Bool,
            _ => JKind::Unsupported,
        },
        Expr::Cast(a, SqlType::Numeric(None)) => match static_kind(a, slots, rets) {
            JKind::Int | JKind::Num => JKind::Num,
            k => k,
        },
        Expr::Coalesce(l) => l
            .iter()
            .map(|x| static_kind(x, slots, rets))
            .find(|k| *k != JKind::Null)
            .unwrap_or(JKind::Null),
        _ => JKind::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Contract, Engine, MemKv, MockChain};

    const FIG6: &str = include_str!("../tests/fixtures/figure6.sql");
    const GAS: u64 = 1_000_000;

    /// A panic inside a runtime helper called from generated code fails that call with the
    /// fixed message and nothing written; the process, the thread and the next call are fine.
    #[test]
    fn helper_panic_fails_the_call_not_the_process() {
        let mut kv = MemKv::new();
        let (c, _) = Contract::deploy(FIG6, "owner", b"c1/", &mut kv, GAS).unwrap();
        assert!(c.jit_functions().contains(&"transfer".to_string()));
        c.execute(
            "INSERT INTO accounts VALUES ('alice', 100.00), ('bob', 5.50)",
            &mut kv,
            GAS,
        )
        .unwrap();
        let args: Vec<Value> = ["alice", "bob", "10"]
            .iter()
            .map(|s| Value::Text(s.to_string()))
            .collect();
        let before = c.query("SELECT * FROM accounts", &kv, GAS).unwrap().rows;
        let mut ctx = MockChain::default();
        INJECT_PANIC.with(|p| p.set(true));
        let err = c
            .call_with(Engine::Jit, "transfer", &args, &mut ctx, &mut kv, GAS)
            .unwrap_err();
        assert!(
            !INJECT_PANIC.with(|p| p.get()),
            "the injected panic never fired"
        );
        assert_eq!(
            err.to_string(),
            SqlError::Jit(RUNTIME_PANIC.into()).to_string()
        );
        assert_eq!(
            c.query("SELECT * FROM accounts", &kv, GAS).unwrap().rows,
            before,
            "a failed call wrote"
        );
        // The next call on the same thread runs normally.
        let ok = c
            .call_with(Engine::Jit, "transfer", &args, &mut ctx, &mut kv, GAS)
            .unwrap();
        assert_eq!(ok.result, Value::Text("OK".into()));
    }
}
