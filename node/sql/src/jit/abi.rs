//! The unsafe runtime ABI between generated code and Rust: the [`JitCtx`] and [`DecSlot`]
//! layouts generated code reads and writes, the error codes it passes to `aergo_rt_err`, the
//! `aergo_rt_*` helpers with their SAFETY contract (below), [`guarded`] and [`RUNTIME_PANIC`]
//! (a panic in a helper fails the call, it never unwinds into generated frames), the helper
//! table ([`helpers`]: name, address and signature of each, from which the module declares
//! and maps them), and [`call_compiled`],
//! the one place a compiled function is entered. Code generation is in `codegen`.

use crate::decimal::Decimal;
use crate::error::{Result, SqlError};
use crate::exec::{assign, exec_sql, Runtime};
use crate::interp::{condition_matches, error_state, finish, format_raise, init_vars};
use crate::ir::*;
use crate::value::{sql_cmp, SqlType, Value};
use std::ffi::c_void;

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
pub(super) fn halves(m: u128) -> (u64, u64) {
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
    /// Open exception blocks: the `scratch` depth at each one's start (an error inside one
    /// may leave pushed operands behind; its catch drops them).
    guards: Vec<usize>,
}

pub(super) type JitFn = unsafe extern "C" fn(*mut JitCtx) -> i32;

// error codes passed to aergo_rt_err
pub(super) const E_GAS: u32 = 1;
pub(super) const E_INT_OVERFLOW: u32 = 2;
pub(super) const E_DIV_ZERO: u32 = 3;
pub(super) const E_INTEGER_RANGE: u32 = 4;
pub(super) const E_FOR_LO: u32 = 5;
pub(super) const E_FOR_HI: u32 = 6;
pub(super) const E_FOR_BY: u32 = 7;
pub(super) const E_FOR_STEP: u32 = 8;
pub(super) const E_FLOAT_OVERFLOW: u32 = 9;
pub(super) const E_FLOAT_UNDERFLOW: u32 = 10;

// ------------------------------------------------------------- helpers ---
// The helper contract. The `aergo_rt_*` helpers are called only by code this module generates
// (their addresses are mapped into the module in `JitProgram::compile` and nowhere else), and
// that code upholds, for the duration of one helper call:
// (a) `ctx` is the `JitCtx` the generated function was called with by `Dispatch::call`:
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
                E_FLOAT_OVERFLOW => crate::float::overflow(),
                E_FLOAT_UNDERFLOW => crate::float::underflow(),
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
                if let Err(e) = assign(vars, types, *s, v) {
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
                        // a value the generated code keeps on the helper stack (TEXT, REAL, …)
                        (4, v) => c.scratch.push(v),
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
                        (3, Value::Float(x)) => {
                            *iv = i64::from_ne_bytes(x.to_ne_bytes());
                            *n = 0;
                        }
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

/// RETURN NEXT: the values the generated code pushed (one per column), cast to the column
/// types and appended to the call's result rows (`Runtime::return_row`).
unsafe extern "C" fn aergo_rt_return_next(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (c): `stmt` is the address of
    // a `StmtKind` in the kept catalog, matched against `ReturnNext` before use.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let StmtKind::ReturnNext(cols) = &*(stmt as *const StmtKind) else {
                return fail(c, SqlError::Jit("bad RETURN NEXT pointer".into()));
            };
            let vals = take_args(c, cols.len() as u64);
            match with_rt(c, |rt, _, _| {
                let mut row = Vec::with_capacity(cols.len());
                for (v, (_, t)) in vals.into_iter().zip(cols) {
                    row.push(v.cast_owned(t)?);
                }
                rt.return_row(row)
            }) {
                Ok(()) => 0,
                Err(e) => fail(c, e),
            }
        })
    }
}

/// RETURN QUERY: the shared executor runs the query; its rows are appended to the call's
/// result rows (`Runtime::return_query`).
unsafe extern "C" fn aergo_rt_return_query(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (c): `stmt` is the address of
    // a `StmtKind` in the kept catalog, matched against `ReturnQuery` before use.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let StmtKind::ReturnQuery(q, types) = &*(stmt as *const StmtKind) else {
                return fail(c, SqlError::Jit("bad RETURN QUERY pointer".into()));
            };
            match with_rt(c, |rt, vars, _| rt.return_query(q, types, vars)) {
                Ok(()) => 0,
                Err(e) => fail(c, e),
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

// ------------------------------------------------------ frame operands ---
// Values the generated code does not hold natively (TEXT, BYTEA, TIMESTAMP, REAL variables and
// constants of those types) stay in the frame; these helpers assign and compare them there
// with the interpreter's own `assign` and `sql_cmp` (no evaluator is called).

/// A frame operand: `kind` 0 = the constant `Value` at address `x` (helper contract (c)),
/// 1 = the variable in slot `x`.
///
/// # Safety
/// As [`var`]; for `kind` 0, `x` must satisfy helper contract (c).
unsafe fn operand(c: &mut JitCtx, kind: u32, x: u64) -> Value {
    if kind == 0 {
        match usize::try_from(x) {
            // SAFETY: contract (c): `x` is the address of a constant `Value` in the kept
            // catalog (or the static `NULL_VALUE`).
            Ok(addr) => unsafe { (*(addr as *const Value)).clone() },
            Err(_) => Value::Null,
        }
    } else {
        // SAFETY: per this function's contract.
        unsafe { var(c, x) }
            .map(|v| v.clone())
            .unwrap_or(Value::Null)
    }
}

/// `slot := operand`, cast to the slot's type as the interpreter's assignment does.
unsafe extern "C" fn aergo_rt_assign_ref(ctx: *mut JitCtx, slot: u64, kind: u32, x: u64) -> i32 {
    // SAFETY: contract (a) for `ctx`, its `vars` and `slots` (distinct from the `JitCtx`);
    // (c) for a constant operand (`operand`).
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let v = operand(c, kind, x);
            let Ok(slot) = usize::try_from(slot) else {
                return fail(c, SqlError::Jit("bad slot".into()));
            };
            let vars: &mut Vec<Value> = &mut *c.vars;
            let types: &Vec<SqlType> = &*c.slots;
            match assign(vars, types, slot, v) {
                Ok(()) => 0,
                Err(e) => fail(c, e),
            }
        })
    }
}

/// Compares two frame operands as SQL does (`sql_cmp`): `*ord` -1/0/1, `*null` 1 when the
/// result is NULL; a comparison error (incomparable types) fails the call.
unsafe extern "C" fn aergo_rt_cmp_ref(
    ctx: *mut JitCtx,
    ka: u32,
    a: u64,
    kb: u32,
    b: u64,
    ord: *mut i32,
    null: *mut u8,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `ord` and `null` are the caller's i32 and i8
    // allocas; (c) for constant operands.
    unsafe {
        *ord = 0;
        *null = 1;
        guarded(1, || {
            let c = cx(ctx);
            let (x, y) = (operand(c, ka, a), operand(c, kb, b));
            match sql_cmp(&x, &y) {
                Ok(Some(o)) => {
                    *ord = o as i32;
                    *null = 0;
                    0
                }
                Ok(None) => 0,
                Err(e) => fail(c, e),
            }
        })
    }
}

// ---------------------------------------------------- exception blocks ---
// `BEGIN … EXCEPTION … END`: the generated code enters the block (savepoint), and leaves it
// at its end or when RETURN/EXIT/CONTINUE passes out of it (release); an error inside goes
// to its catch, which rolls the savepoint back and picks the handler exactly as the
// interpreter does (`interp::condition_matches`, `interp::error_state`).

/// Start of an exception block: a savepoint of the call's store.
unsafe extern "C" fn aergo_rt_guard_enter(ctx: *mut JitCtx) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers).
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let depth = c.scratch.len();
            match with_rt(c, |rt, _, _| {
                if !rt.kv.savepoint() {
                    return Err(SqlError::Exception(
                        "exception blocks need a buffered store".into(),
                    ));
                }
                rt.guarded += 1;
                Ok(())
            }) {
                Ok(()) => {
                    c.guards.push(depth);
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

/// Normal end of an exception block (or a jump out of it): the savepoint is released.
unsafe extern "C" fn aergo_rt_guard_leave(ctx: *mut JitCtx) {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers).
    unsafe {
        guarded((), || {
            let c = cx(ctx);
            c.guards.pop();
            let _ = with_rt(c, |rt, _, _| {
                rt.kv.release_savepoint();
                rt.guarded = rt.guarded.saturating_sub(1);
                Ok(())
            });
        })
    }
}

/// An error inside an exception block: rolls its writes back (gas stays spent) and returns
/// the index of the first handler whose conditions match, with its `SQLSTATE`/`SQLERRM`
/// variables set, or -1 with the error left for the enclosing code.
unsafe extern "C" fn aergo_rt_guard_catch(ctx: *mut JitCtx, stmt: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (c): `stmt` is the address of
    // a `StmtKind` in the kept catalog, matched against `Guarded` before use.
    unsafe {
        guarded(-1, || {
            let c = cx(ctx);
            let depth = c.guards.pop().unwrap_or(0);
            c.scratch.truncate(depth);
            let _ = with_rt(c, |rt, _, _| {
                rt.rollback_savepoint();
                rt.guarded = rt.guarded.saturating_sub(1);
                Ok(())
            });
            let StmtKind::Guarded(_, handlers) = &*(stmt as *const StmtKind) else {
                fail(c, SqlError::Jit("bad exception block pointer".into()));
                return -1;
            };
            // a helper that panicked fails the whole call: never caught
            if RT_PANICKED.with(|p| p.get()) {
                return -1;
            }
            let Some(e) = c.err.take() else {
                return -1;
            };
            let found = handlers
                .iter()
                .position(|h| h.conds.iter().any(|cd| condition_matches(&e, cd)));
            let Some(k) = found.and_then(|k| handlers.get(k).map(|h| (k, h))) else {
                c.err = Some(e);
                return -1;
            };
            let (code, msg) = error_state(&e);
            let (s, m) = k.1.state;
            match with_rt(c, |_, vars, slots| {
                assign(vars, slots, s, Value::Text(code.into()))?;
                assign(vars, slots, m, Value::Text(msg))
            }) {
                Ok(()) => i32::try_from(k.0).unwrap_or(-1),
                Err(e2) => {
                    c.err = Some(e2);
                    -1
                }
            }
        })
    }
}

// ------------------------------------------------------------- stack ---
// Expressions the generated code cannot hold in registers (text `||`, REAL arithmetic, casts
// and text functions over frame values) are computed on the `scratch` stack: the code pushes
// the operands (`aergo_rt_push_*`) and `aergo_rt_stack_op` replaces them by the node's value,
// computed by the same functions the interpreter applies to that node (`Runtime::concat`,
// `exec::arith`, `exec::negate`, `Value::cast_owned`, `exec::builtin`) — one node at a time,
// never the evaluator. The value is then consumed by an assignment, RETURN, a comparison,
// IS NULL or as an argument.

/// Replaces the top operands of the stack by the value of the node at `expr`.
unsafe extern "C" fn aergo_rt_stack_op(ctx: *mut JitCtx, expr: usize) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers); (c): `expr` is the address of
    // an `Expr` in the kept catalog.
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let e = &*(expr as *const Expr);
            let n = match e {
                Expr::Concat(..) | Expr::Arith(..) => 2,
                Expr::Cast(..) | Expr::Neg(_) => 1,
                Expr::Builtin(_, args) => args.len() as u64,
                _ => return fail(c, SqlError::Jit("bad stack expression pointer".into())),
            };
            let mut v = take_args(c, n);
            if v.len() as u64 != n || v.is_empty() {
                return fail(c, SqlError::Jit("stack underflow".into()));
            }
            let r = with_rt(c, |rt, _, _| match e {
                Expr::Concat(..) => rt.concat(&v[0], &v[1]),
                Expr::Arith(op, ..) => crate::exec::arith(*op, &v[0], &v[1]),
                Expr::Cast(_, ty) => std::mem::replace(&mut v[0], Value::Null).cast_owned(ty),
                Expr::Neg(_) => crate::exec::negate(std::mem::replace(&mut v[0], Value::Null)),
                Expr::Builtin(b, _) => crate::exec::builtin(*b, &v),
                _ => Err(SqlError::Jit("bad stack expression".into())),
            });
            match r {
                Ok(x) => {
                    c.scratch.push(x);
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

/// Pops the top of the stack into the variable in `slot` (cast to its type, as `:=`).
unsafe extern "C" fn aergo_rt_pop_assign(ctx: *mut JitCtx, slot: u64) -> i32 {
    // SAFETY: contract (a) for `ctx` (and `with_rt`'s pointers).
    unsafe {
        guarded(1, || {
            let c = cx(ctx);
            let v = c.scratch.pop().unwrap_or(Value::Null);
            let slot = usize::try_from(slot).unwrap_or(usize::MAX);
            match with_rt(c, |_, vars, slots| assign(vars, slots, slot, v)) {
                Ok(()) => 0,
                Err(e) => fail(c, e),
            }
        })
    }
}

/// RETURN of the top of the stack.
unsafe extern "C" fn aergo_rt_ret_pop(ctx: *mut JitCtx) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded((), || {
            let c = cx(ctx);
            c.result = c.scratch.pop().unwrap_or(Value::Null);
        })
    }
}

/// Compares the two top values of the stack (popped): `ord` gets -1/0/1, `null` 1 when either
/// is NULL (as `aergo_rt_cmp_ref`).
unsafe extern "C" fn aergo_rt_cmp_pop(ctx: *mut JitCtx, ord: *mut i32, null: *mut u8) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `ord` and `null` are the caller's i32 and i8 allocas.
    unsafe {
        *ord = 0;
        *null = 1;
        guarded(1, || {
            let c = cx(ctx);
            let v = take_args(c, 2);
            let (Some(x), Some(y)) = (v.first(), v.get(1)) else {
                return fail(c, SqlError::Jit("stack underflow".into()));
            };
            match sql_cmp(x, y) {
                Ok(Some(o)) => {
                    *ord = o as i32;
                    *null = 0;
                    0
                }
                Ok(None) => 0,
                Err(e) => fail(c, e),
            }
        })
    }
}

/// Pops the top of the stack: 1 when it is NULL, else 0.
unsafe extern "C" fn aergo_rt_pop_is_null(ctx: *mut JitCtx) -> i32 {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded(1, || {
            i32::from(cx(ctx).scratch.pop().is_none_or(|v| v.is_null()))
        })
    }
}

/// Whether the variable in `slot` is NULL (1) or not (0).
unsafe extern "C" fn aergo_rt_var_is_null(ctx: *mut JitCtx, slot: u64) -> i32 {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call (`slot` is bounds-checked).
    unsafe {
        guarded(1, || {
            i32::from(var(cx(ctx), slot).is_none_or(|v| v.is_null()))
        })
    }
}

// ------------------------------------------------------ DOUBLE PRECISION ---
// Arithmetic and comparisons on DOUBLE PRECISION are native code (plain IEEE instructions,
// no fast-math flags, no fused multiply-add); these helpers move floats between the frame and
// generated code and run what goes through `crate::float` in both engines (functions, casts).

unsafe extern "C" fn aergo_rt_load_f64(ctx: *mut JitCtx, slot: u64, v: *mut f64, n: *mut u8) {
    // SAFETY: contract (a) for `ctx`; (b): `v` and `n` are the caller's f64 and i8 allocas.
    unsafe {
        // Defined outputs (NULL) before anything can panic (see `aergo_rt_load_int`).
        *v = 0.0;
        *n = 1;
        guarded((), || {
            if let Some(Value::Float(x)) = var(cx(ctx), slot) {
                *v = *x;
                *n = 0;
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_store_f64(ctx: *mut JitCtx, slot: u64, v: f64, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call (`slot` is bounds-checked).
    unsafe {
        guarded((), || {
            if let Some(x) = var(cx(ctx), slot) {
                *x = if n != 0 {
                    Value::Null
                } else {
                    Value::Float(crate::float::canon64(v))
                };
            }
        })
    }
}

unsafe extern "C" fn aergo_rt_push_f64(ctx: *mut JitCtx, v: f64, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded((), || {
            cx(ctx).scratch.push(if n != 0 {
                Value::Null
            } else {
                Value::Float(crate::float::canon64(v))
            });
        })
    }
}

unsafe extern "C" fn aergo_rt_ret_f64(ctx: *mut JitCtx, v: f64, n: u8) {
    // SAFETY: contract (a): `ctx` is the live `JitCtx` of this call.
    unsafe {
        guarded((), || {
            cx(ctx).result = if n != 0 {
                Value::Null
            } else {
                Value::Float(crate::float::canon64(v))
            };
        })
    }
}

/// NUMERIC → DOUBLE PRECISION (the interpreter's `Value::as_f64`); NULL stays NULL.
unsafe extern "C" fn aergo_rt_dec_to_f64(
    ctx: *mut JitCtx,
    p: *const DecSlot,
    v: *mut f64,
    n: *mut u8,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `p` is an initialised `DecSlot` alloca, `v` and `n`
    // the caller's f64 and i8 allocas.
    unsafe {
        *v = 0.0;
        *n = 1;
        guarded(1, || {
            let c = cx(ctx);
            match (*p).get() {
                None => 0,
                Some(Ok(d)) => {
                    *v = crate::float::from_decimal64(&d);
                    *n = 0;
                    0
                }
                Some(Err(e)) => fail(c, e),
            }
        })
    }
}

/// Code of `round(double precision)` for [`aergo_rt_f64_fn`] (other codes index
/// [`F64_FNS`]).
pub(super) const F64_RINT: u32 = 255;

/// The float functions generated code calls by index.
pub(super) const F64_FNS: [crate::float::FloatFn; 20] = {
    use crate::float::FloatFn::*;
    [
        Sqrt, Cbrt, Exp, Ln, Log10, Power, Sin, Cos, Tan, Asin, Acos, Atan, Atan2, Floor, Ceil,
        Trunc, Sign, Degrees, Radians, Pi,
    ]
};

/// A DOUBLE PRECISION function: the same `crate::float::call` as the interpreter.
unsafe extern "C" fn aergo_rt_f64_fn(
    ctx: *mut JitCtx,
    code: u32,
    a: f64,
    b: f64,
    out: *mut f64,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `out` is the caller's f64 alloca.
    unsafe {
        *out = 0.0;
        guarded(1, || {
            let c = cx(ctx);
            let r = if code == F64_RINT {
                Ok(crate::float::canon64(libm::rint(a)))
            } else {
                match F64_FNS.get(code as usize) {
                    Some(f) => crate::float::call(*f, a, b),
                    None => Err(SqlError::Jit("bad float function".into())),
                }
            };
            match r {
                Ok(x) => {
                    *out = x;
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

/// DOUBLE PRECISION → BIGINT (`integer` = 0) or INTEGER (1): round half to even, range
/// checked (the interpreter's cast).
unsafe extern "C" fn aergo_rt_f64_to_int(
    ctx: *mut JitCtx,
    x: f64,
    integer: u32,
    out: *mut i64,
) -> i32 {
    // SAFETY: contract (a) for `ctx`; (b): `out` is the caller's i64 alloca.
    unsafe {
        *out = 0;
        guarded(1, || {
            let c = cx(ctx);
            let r = if integer != 0 {
                crate::float::to_int(x, i64::from(i32::MIN), i64::from(i32::MAX), "integer")
            } else {
                crate::float::to_int(x, i64::MIN, i64::MAX, "bigint")
            };
            match r {
                Ok(i) => {
                    *out = i;
                    0
                }
                Err(e) => fail(c, e),
            }
        })
    }
}

/// A helper parameter's or result's type in the generated module's declaration.
#[derive(Debug, Clone, Copy)]
pub(super) enum HTy {
    /// A pointer (`JitCtx`, `DecSlot`, i64/i8/f64 out-parameters).
    P,
    /// i64 (slots, addresses of IR nodes, integers).
    I64,
    /// i32 (codes, status).
    I32,
    /// i8 (booleans, NULL flags).
    I8,
    /// f64.
    F64,
}

/// One runtime helper: the symbol the generated code calls, the address it is mapped to,
/// its result type (`None`: void) and parameter types. [`helpers`] is the one table: the
/// code generator declares each helper from it and the program maps each address from it,
/// so a helper's name, signature and address are written once.
pub(super) struct Helper {
    pub name: &'static str,
    pub addr: usize,
    pub ret: Option<HTy>,
    pub params: &'static [HTy],
}

macro_rules! helper_table {
    ($($f:ident : ($($p:ident),*) -> $r:ident;)*) => {
        /// Every `aergo_rt_*` helper with its signature (see [`Helper`]).
        pub(super) fn helpers() -> Vec<Helper> {
            vec![$(Helper {
                name: stringify!($f),
                addr: $f as *const () as usize,
                ret: helper_table!(@ret $r),
                params: &[$(HTy::$p),*],
            }),*]
        }
    };
    (@ret void) => { None };
    (@ret $r:ident) => { Some(HTy::$r) };
}

helper_table! {
    aergo_rt_err: (P, I32) -> I32;
    aergo_rt_load_f64: (P, I64, P, P) -> void;
    aergo_rt_store_f64: (P, I64, F64, I8) -> void;
    aergo_rt_push_f64: (P, F64, I8) -> void;
    aergo_rt_ret_f64: (P, F64, I8) -> void;
    aergo_rt_dec_to_f64: (P, P, P, P) -> I32;
    aergo_rt_f64_fn: (P, I32, F64, F64, P) -> I32;
    aergo_rt_f64_to_int: (P, F64, I32, P) -> I32;
    aergo_rt_load_int: (P, I64, P, P) -> void;
    aergo_rt_load_bool: (P, I64, P, P) -> void;
    aergo_rt_load_dec: (P, I64, P) -> void;
    aergo_rt_store_int: (P, I64, I64, I8) -> void;
    aergo_rt_store_bool: (P, I64, I8, I8) -> void;
    aergo_rt_store_dec: (P, I64, P) -> I32;
    aergo_rt_store_null: (P, I64) -> void;
    aergo_rt_sql: (P, I64) -> I32;
    aergo_rt_sql_point: (P, I64) -> I32;
    aergo_rt_dec_binop: (P, I32, P, P, P) -> I32;
    aergo_rt_dec_cmp: (P, P) -> I32;
    aergo_rt_dec_unop: (P, I32, P, I64, P) -> I32;
    aergo_rt_dec_fit: (P, P, I32, I32, P) -> I32;
    aergo_rt_dec_to_int: (P, P, I32, P, P) -> I32;
    aergo_rt_push_int: (P, I64, I8) -> void;
    aergo_rt_push_bool: (P, I8, I8) -> void;
    aergo_rt_push_dec: (P, P) -> I32;
    aergo_rt_push_const: (P, I64) -> void;
    aergo_rt_push_var: (P, I64) -> void;
    aergo_rt_query_open: (P, I64) -> I32;
    aergo_rt_query_next: (P, I64) -> I32;
    aergo_rt_call: (P, I64, I64, I32, P, P, P) -> I32;
    aergo_rt_raise: (P, I64) -> I32;
    aergo_rt_return_next: (P, I64) -> I32;
    aergo_rt_return_query: (P, I64) -> I32;
    aergo_rt_ret_int: (P, I64, I8) -> void;
    aergo_rt_ret_bool: (P, I8, I8) -> void;
    aergo_rt_ret_dec: (P, P) -> I32;
    aergo_rt_ret_const: (P, I64) -> void;
    aergo_rt_ret_var: (P, I64) -> void;
    aergo_rt_assign_ref: (P, I64, I32, I64) -> I32;
    aergo_rt_cmp_ref: (P, I32, I64, I32, I64, P, P) -> I32;
    aergo_rt_var_is_null: (P, I64) -> I32;
    aergo_rt_stack_op: (P, I64) -> I32;
    aergo_rt_guard_enter: (P) -> I32;
    aergo_rt_guard_leave: (P) -> void;
    aergo_rt_guard_catch: (P, I64) -> I32;
    aergo_rt_pop_assign: (P, I64) -> I32;
    aergo_rt_ret_pop: (P) -> void;
    aergo_rt_cmp_pop: (P, P, P) -> I32;
    aergo_rt_pop_is_null: (P) -> I32;
}

pub(super) static NULL_VALUE: Value = Value::Null;

/// Enters compiled function `f` (`fp`) with `args`: sets up the [`JitCtx`], contains a helper
/// panic (the call fails with [`RUNTIME_PANIC`] and its whole gas limit) and turns the return
/// code into the call's result or error.
pub(super) fn call_compiled(
    fp: JitFn,
    f: &Function,
    rt: &mut Runtime,
    args: Vec<Value>,
) -> Result<Value> {
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
        guards: Vec::new(),
    };
    let outer_panicked = RT_PANICKED.with(|p| p.replace(false));
    // SAFETY: `fp` was compiled for this catalog's function `fi`; `jc`
    // and everything it points to outlive the call.
    let code = unsafe { fp(&mut jc) };
    let panicked = RT_PANICKED.with(|p| p.replace(outer_panicked));
    rt.gas_used = jc.gas_used;
    let JitCtx { result, err, .. } = jc;
    // the variables' buffers serve the next call's arguments
    rt.spare_vars = vars;
    if panicked {
        RT_PANICKED.with(|p| p.set(true));
        // The whole gas limit: the call failed inside the runtime, not in the contract.
        rt.gas_used = rt.gas_limit;
        return Err(SqlError::Jit(RUNTIME_PANIC.into()));
    }
    match code {
        0 => finish(f, result),
        2 if f.returns == SqlType::Void => Ok(Value::Null),
        2 => Err(SqlError::Exception(format!(
            "control reached end of function {} without RETURN",
            f.name
        ))),
        _ => Err(err.unwrap_or_else(|| SqlError::Jit("error without detail".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Contract, Engine, MemKv, MockChain};

    const FIG6: &str = include_str!("../../tests/fixtures/figure6.sql");
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
