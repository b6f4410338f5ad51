//! LLVM code generation: the declarations of the `aergo_rt_*` helpers in the module, and the
//! translation of one catalog function (its slots, expressions and statements) into LLVM IR
//! that calls only those helpers and intrinsics. A construct outside the JIT subset is
//! [`GenErr::Unsup`], and the function is left to the interpreter.

use super::abi::*;
use crate::ir::*;
use crate::value::{SqlType, Value};
use inkwell::builder::{Builder, BuilderError};
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::Module;
use inkwell::types::StructType;
use inkwell::values::{BasicMetadataValueEnum, FloatValue, FunctionValue, IntValue, PointerValue};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};
use std::collections::HashMap;

#[derive(Debug)]
pub(super) enum GenErr {
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
    /// DOUBLE PRECISION: value and NULL flag.
    Flt {
        v: PointerValue<'c>,
        n: PointerValue<'c>,
    },
    Frame,
}

#[derive(Clone, Copy)]
enum JVal<'c> {
    Int(IntValue<'c>, IntValue<'c>),
    Bool(IntValue<'c>, IntValue<'c>),
    Num(PointerValue<'c>),
    /// DOUBLE PRECISION value and NULL flag.
    Flt(FloatValue<'c>, IntValue<'c>),
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
    /// Where an error goes: the function's failure exit, or the catch block of the innermost
    /// exception block being generated.
    fail_bb: inkwell::basic_block::BasicBlock<'c>,
    /// Exception blocks open at the point being generated (RETURN leaves them all).
    guard_depth: u32,
    /// Exception blocks open where each loop starts (EXIT/CONTINUE leave the ones inside).
    loop_guards: HashMap<usize, u32>,
}

/// Declares every runtime helper of [`helpers`] in the module, by its signature there.
pub(super) fn declare_helpers<'c>(
    c: &'c Context,
    m: &Module<'c>,
) -> HashMap<&'static str, FunctionValue<'c>> {
    let p = c.ptr_type(AddressSpace::default());
    let basic = |t: HTy| -> inkwell::types::BasicTypeEnum<'c> {
        match t {
            HTy::P => p.into(),
            HTy::I64 => c.i64_type().into(),
            HTy::I32 => c.i32_type().into(),
            HTy::I8 => c.i8_type().into(),
            HTy::F64 => c.f64_type().into(),
        }
    };
    let mut h = HashMap::new();
    for helper in helpers() {
        let params: Vec<inkwell::types::BasicMetadataTypeEnum<'c>> =
            helper.params.iter().map(|t| basic(*t).into()).collect();
        let ty = match helper.ret {
            None => c.void_type().fn_type(&params, false),
            Some(r) => inkwell::types::BasicType::fn_type(&basic(r), &params, false),
        };
        h.insert(helper.name, m.add_function(helper.name, ty, None));
    }
    h
}

pub(super) fn gen_function<'c>(
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
        // arrays (variables, parameters, results) stay in the interpreter
        if f.slots.iter().any(|t| matches!(t, SqlType::Array(_)))
            || matches!(f.returns, SqlType::Array(_))
            || f.rows
                .as_ref()
                .is_some_and(|r| r.columns.iter().any(|c| matches!(c.1, SqlType::Array(_))))
        {
            return Err(GenErr::Unsup(line!()));
        }
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
            guard_depth: 0,
            loop_guards: HashMap::new(),
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
                SqlType::Double => Repr::Flt {
                    v: g.b.build_alloca(c.f64_type(), "f")?,
                    n: g.b.build_alloca(c.i8_type(), "n")?,
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
        self.entry_alloca(self.dect.into())
    }

    /// A stack slot in the entry block (so `mem2reg` can promote it, and a loop does not
    /// grow the stack).
    fn entry_alloca(&self, ty: inkwell::types::BasicTypeEnum<'c>) -> G<PointerValue<'c>> {
        let entry = self
            .func
            .get_first_basic_block()
            .ok_or(GenErr::Unsup(line!()))?;
        let tb = self.c.create_builder();
        match entry.get_first_instruction() {
            Some(i) => tb.position_before(&i),
            None => tb.position_at_end(entry),
        }
        Ok(tb.build_alloca(ty, "t")?)
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

    /// The fields of a `DecSlot`: the low mantissa half, the mantissa as i128, the scale
    /// (i32), the NULL flag and whether the mantissa fits an i64 (for the fast paths).
    fn dec_parts(
        &self,
        p: PointerValue<'c>,
    ) -> G<(
        IntValue<'c>,
        IntValue<'c>,
        IntValue<'c>,
        IntValue<'c>,
        IntValue<'c>,
    )> {
        let (i64t, i32t, i128t) = (self.c.i64_type(), self.c.i32_type(), self.c.i128_type());
        let lo = self
            .b
            .build_load(i64t, self.dec_field(p, 0)?, "lo")?
            .into_int_value();
        let hi = self
            .b
            .build_load(i64t, self.dec_field(p, 1)?, "hi")?
            .into_int_value();
        let sc = self
            .b
            .build_load(i32t, self.dec_field(p, 2)?, "sc")?
            .into_int_value();
        let null = self.dec_null(p)?;
        let sign = self.b.build_right_shift(lo, self.i64c(63), true, "sg")?;
        let fits = self
            .b
            .build_int_compare(IntPredicate::EQ, hi, sign, "fits")?;
        let lo128 = self.b.build_int_z_extend(lo, i128t, "lo128")?;
        let hi128 = self.b.build_int_z_extend(hi, i128t, "hi128")?;
        let hi128 = self
            .b
            .build_left_shift(hi128, i128t.const_int(64, false), "hish")?;
        let m = self.b.build_or(lo128, hi128, "m")?;
        Ok((lo, m, sc, null, fits))
    }

    /// Stores a non-NULL decimal (i128 mantissa, i32 scale) into a `DecSlot`.
    fn dec_store(&self, p: PointerValue<'c>, m: IntValue<'c>, sc: IntValue<'c>) -> G<()> {
        let (i64t, i128t) = (self.c.i64_type(), self.c.i128_type());
        let lo = self.b.build_int_truncate(m, i64t, "mlo")?;
        let hi = self
            .b
            .build_right_shift(m, i128t.const_int(64, false), false, "mhi")?;
        let hi = self.b.build_int_truncate(hi, i64t, "mhi64")?;
        self.b.build_store(self.dec_field(p, 0)?, lo)?;
        self.b.build_store(self.dec_field(p, 1)?, hi)?;
        self.b.build_store(self.dec_field(p, 2)?, sc)?;
        self.b.build_store(self.dec_field(p, 3)?, self.i32c(0))?;
        Ok(())
    }

    /// `10^k` for `k` in 0..=18 (i64; `k` an i32 known to be in range).
    fn pow10_i64(&self, k: IntValue<'c>) -> G<IntValue<'c>> {
        let i64t = self.c.i64_type();
        let table: Vec<IntValue<'c>> = (0..=18u32)
            .map(|e| i64t.const_int(10u64.pow(e), false))
            .collect();
        let v = inkwell::types::VectorType::const_vector(&table);
        Ok(self.b.build_extract_element(v, k, "p10")?.into_int_value())
    }

    /// Emits `fast` when `cond` holds and `slow` (a runtime helper) otherwise; both continue
    /// at one join block.
    fn fast_or_slow(
        &self,
        cond: IntValue<'c>,
        fast: impl FnOnce(&Self) -> G<()>,
        slow: impl FnOnce(&Self) -> G<()>,
    ) -> G<()> {
        let fb = self.c.append_basic_block(self.func, "dfast");
        let sb = self.c.append_basic_block(self.func, "dslow");
        let join = self.c.append_basic_block(self.func, "djoin");
        self.b.build_conditional_branch(cond, fb, sb)?;
        self.b.position_at_end(fb);
        fast(self)?;
        self.b.build_unconditional_branch(join)?;
        self.b.position_at_end(sb);
        slow(self)?;
        self.b.build_unconditional_branch(join)?;
        self.b.position_at_end(join);
        Ok(())
    }

    /// Decimal `+`, `-`, `*` inline when both operands are non-NULL with mantissas that fit
    /// an i64 (and, for `+`/`-`, scales at most 18 apart; for `*`, a result scale of at most
    /// `MAX_SCALE`): then the exact i128 result can neither overflow nor need rounding, so it
    /// is what `Decimal::add`/`sub`/`mul` return. Anything else goes to the runtime helper.
    fn dec_fast_binop(
        &self,
        op: ArithOp,
        a: PointerValue<'c>,
        b: PointerValue<'c>,
        out: PointerValue<'c>,
        slow: impl FnOnce(&Self) -> G<()>,
    ) -> G<()> {
        let (i128t, i32t) = (self.c.i128_type(), self.c.i32_type());
        let (la, _, sa, na, fa) = self.dec_parts(a)?;
        let (lb, _, sb, nb, fb) = self.dec_parts(b)?;
        let nn = self.b.build_or(na, nb, "nn")?;
        let ok = self.b.build_not(nn, "ok")?;
        let ok = self.b.build_and(ok, fa, "ok1")?;
        let ok = self.b.build_and(ok, fb, "ok2")?;
        let xa = self.b.build_int_s_extend(la, i128t, "xa")?;
        let xb = self.b.build_int_s_extend(lb, i128t, "xb")?;
        if op == ArithOp::Mul {
            let s = self.b.build_int_add(sa, sb, "ms")?;
            let sok = self.b.build_int_compare(
                IntPredicate::ULE,
                s,
                i32t.const_int(u64::from(crate::decimal::MAX_SCALE), false),
                "msok",
            )?;
            let cond = self.b.build_and(ok, sok, "mok")?;
            return self.fast_or_slow(
                cond,
                |g| {
                    let m = g.b.build_int_mul(xa, xb, "mm")?;
                    g.dec_store(out, m, s)
                },
                slow,
            );
        }
        // scales: both at most MAX_SCALE, so the differences below do not wrap in i32
        let da = self.b.build_int_sub(sa, sb, "da")?;
        let db = self.b.build_int_sub(sb, sa, "db")?;
        let a_big = self
            .b
            .build_int_compare(IntPredicate::SGE, sa, sb, "abig")?;
        let diff = self.b.build_select(a_big, da, db, "diff")?.into_int_value();
        let sok =
            self.b
                .build_int_compare(IntPredicate::ULE, diff, i32t.const_int(18, false), "dok")?;
        let cond = self.b.build_and(ok, sok, "aok")?;
        self.fast_or_slow(
            cond,
            |g| {
                let f = g.pow10_i64(diff)?;
                let f = g.b.build_int_s_extend(f, i128t, "f")?;
                // the operand with the smaller scale is brought up to the larger one
                let ua = g.b.build_int_mul(xa, f, "ua")?;
                let ub = g.b.build_int_mul(xb, f, "ub")?;
                let ya = g.b.build_select(a_big, xa, ua, "ya")?.into_int_value();
                let yb = g.b.build_select(a_big, ub, xb, "yb")?.into_int_value();
                let s = g.b.build_select(a_big, sa, sb, "s")?.into_int_value();
                let m = if op == ArithOp::Add {
                    g.b.build_int_add(ya, yb, "sum")?
                } else {
                    g.b.build_int_sub(ya, yb, "dif")?
                };
                g.dec_store(out, m, s)
            },
            slow,
        )
    }

    /// Decimal comparison (-1, 0, 1 as i32): inline for equal scales (an i128 compare), the
    /// runtime helper otherwise. A NULL operand's result is never used.
    fn dec_fast_cmp(&self, a: PointerValue<'c>, b: PointerValue<'c>) -> G<IntValue<'c>> {
        let i32t = self.c.i32_type();
        let (_, ma, sa, _, _) = self.dec_parts(a)?;
        let (_, mb, sb, _, _) = self.dec_parts(b)?;
        let same = self.b.build_int_compare(IntPredicate::EQ, sa, sb, "same")?;
        let res = self.entry_alloca(i32t.into())?;
        self.fast_or_slow(
            same,
            |g| {
                let lt = g.b.build_int_compare(IntPredicate::SLT, ma, mb, "clt")?;
                let gt = g.b.build_int_compare(IntPredicate::SGT, ma, mb, "cgt")?;
                let lt = g.b.build_int_z_extend(lt, i32t, "lt32")?;
                let gt = g.b.build_int_z_extend(gt, i32t, "gt32")?;
                let r = g.b.build_int_sub(gt, lt, "c")?;
                g.b.build_store(res, r)?;
                Ok(())
            },
            |g| {
                let r = g
                    .call("aergo_rt_dec_cmp", &[a.into(), b.into()])?
                    .ok_or(GenErr::Unsup(line!()))?;
                g.b.build_store(res, r)?;
                Ok(())
            },
        )?;
        Ok(self.b.build_load(i32t, res, "cmpv")?.into_int_value())
    }

    /// Assignment to a `NUMERIC(p, s)` slot (`Decimal::fit`): inline when the value is
    /// non-NULL, its mantissa fits an i64 and its scale is at most 18 from `s` — rescaled
    /// exactly (up) or rounded half away from zero (down) in i64/i128, then checked against
    /// `10^max(p, s)` — with the runtime helper for everything else, including the
    /// overflow error itself.
    fn dec_fast_fit(
        &self,
        src: PointerValue<'c>,
        pp: u32,
        ss: u32,
        dst: PointerValue<'c>,
    ) -> G<()> {
        let slow = |g: &Self| {
            g.call_checked(
                "aergo_rt_dec_fit",
                &[
                    g.ctxp.into(),
                    src.into(),
                    g.i32c(u64::from(pp)).into(),
                    g.i32c(u64::from(ss)).into(),
                    dst.into(),
                ],
            )
        };
        let max = crate::decimal::MAX_SCALE;
        if pp > max || ss > max {
            return slow(self);
        }
        let (i64t, i32t, i128t) = (self.c.i64_type(), self.c.i32_type(), self.c.i128_type());
        let (lo, _, sc, null, fits) = self.dec_parts(src)?;
        let target = i32t.const_int(u64::from(ss), false);
        let down = self
            .b
            .build_int_compare(IntPredicate::SGE, sc, target, "down")?;
        let dd = self.b.build_int_sub(sc, target, "dd")?;
        let du = self.b.build_int_sub(target, sc, "du")?;
        let diff = self.b.build_select(down, dd, du, "fdiff")?.into_int_value();
        let sok =
            self.b
                .build_int_compare(IntPredicate::ULE, diff, i32t.const_int(18, false), "fsok")?;
        let ok = self.b.build_not(null, "fnn")?;
        let ok = self.b.build_and(ok, fits, "fok1")?;
        let ok = self.b.build_and(ok, sok, "fok2")?;
        // the bound |r| < 10^max(p, s) as an i128 constant (at most 10^38 < 2^127)
        let bound = 10u128.pow(pp.max(ss));
        let (blo, bhi) = halves(bound);
        let bound = i128t.const_int_arbitrary_precision(&[blo, bhi]);
        let nbound = self.b.build_int_neg(bound, "nb")?;
        let r = self.entry_alloca(i128t.into())?;
        let inb = self.entry_alloca(self.c.bool_type().into())?;
        self.b.build_store(inb, self.b1(false))?;
        self.fast_or_slow(
            ok,
            |g| {
                let f = g.pow10_i64(diff)?;
                // down: q = lo / f rounded half away from zero (|lo % f| < f <= 10^18)
                let q = g.b.build_int_signed_div(lo, f, "fq")?;
                let rem = g.b.build_int_signed_rem(lo, f, "fr")?;
                let neg =
                    g.b.build_int_compare(IntPredicate::SLT, rem, i64t.const_zero(), "rneg")?;
                let nrem = g.b.build_int_neg(rem, "nrem")?;
                let arem = g.b.build_select(neg, nrem, rem, "arem")?.into_int_value();
                let twice = g.b.build_int_add(arem, arem, "twice")?;
                let up = g.b.build_int_compare(IntPredicate::SGE, twice, f, "rup")?;
                let lneg =
                    g.b.build_int_compare(IntPredicate::SLT, lo, i64t.const_zero(), "lneg")?;
                let step =
                    g.b.build_select(
                        lneg,
                        i64t.const_all_ones(),
                        i64t.const_int(1, false),
                        "step",
                    )?
                    .into_int_value();
                let q1 = g.b.build_int_add(q, step, "q1")?;
                let qd = g.b.build_select(up, q1, q, "qd")?.into_int_value();
                let md = g.b.build_int_s_extend(qd, i128t, "md")?;
                // up: lo * f, exact in i128
                let xl = g.b.build_int_s_extend(lo, i128t, "xl")?;
                let xf = g.b.build_int_s_extend(f, i128t, "xf")?;
                let mu = g.b.build_int_mul(xl, xf, "mu")?;
                let m = g.b.build_select(down, md, mu, "fm")?.into_int_value();
                let lt = g.b.build_int_compare(IntPredicate::SLT, m, bound, "blt")?;
                let gt = g.b.build_int_compare(IntPredicate::SGT, m, nbound, "bgt")?;
                let within = g.b.build_and(lt, gt, "within")?;
                g.b.build_store(r, m)?;
                g.b.build_store(inb, within)?;
                Ok(())
            },
            |_| Ok(()),
        )?;
        let within = self
            .b
            .build_load(self.c.bool_type(), inb, "inbv")?
            .into_int_value();
        self.fast_or_slow(
            within,
            |g| {
                let m = g.b.build_load(i128t, r, "fmv")?.into_int_value();
                g.dec_store(dst, m, target)
            },
            slow,
        )
    }

    fn as_dec(&self, v: JVal<'c>) -> G<PointerValue<'c>> {
        match v {
            JVal::Int(x, n) => self.int_to_dec(x, n),
            JVal::Num(p) => Ok(p),
            JVal::Null => self.null_dec(),
            JVal::Bool(..) | JVal::Flt(..) => Err(GenErr::Unsup(line!())),
        }
    }

    fn f64c(&self, x: f64) -> FloatValue<'c> {
        self.c.f64_type().const_float(x)
    }

    /// Any NaN becomes the canonical NaN (as `crate::float::canon64`).
    fn canon(&self, x: FloatValue<'c>) -> G<FloatValue<'c>> {
        let nan = self
            .b
            .build_float_compare(FloatPredicate::UNO, x, x, "isnan")?;
        let cn = self
            .c
            .f64_type()
            .const_float(f64::from_bits(crate::float::NAN64_BITS));
        Ok(self.b.build_select(nan, cn, x, "canon")?.into_float_value())
    }

    /// Whether `x` is ±Infinity.
    fn is_inf(&self, x: FloatValue<'c>) -> G<IntValue<'c>> {
        let pi =
            self.b
                .build_float_compare(FloatPredicate::OEQ, x, self.f64c(f64::INFINITY), "pinf")?;
        let ni = self.b.build_float_compare(
            FloatPredicate::OEQ,
            x,
            self.f64c(f64::NEG_INFINITY),
            "ninf",
        )?;
        Ok(self.b.build_or(pi, ni, "inf")?)
    }

    /// A value as DOUBLE PRECISION (integers convert exactly as Rust's `as f64`: IEEE round
    /// to nearest even; decimals through the runtime's conversion).
    fn as_f64(&self, v: JVal<'c>) -> G<(FloatValue<'c>, IntValue<'c>)> {
        match v {
            JVal::Flt(x, n) => Ok((x, n)),
            JVal::Int(x, n) => Ok((
                self.b
                    .build_signed_int_to_float(x, self.c.f64_type(), "itof")?,
                n,
            )),
            JVal::Null => Ok((self.f64c(0.0), self.b1(true))),
            JVal::Num(p) => {
                let (fv, fnp) = self.entry_alloca_f64()?;
                self.call_checked(
                    "aergo_rt_dec_to_f64",
                    &[self.ctxp.into(), p.into(), fv.into(), fnp.into()],
                )?;
                Ok((
                    self.b
                        .build_load(self.c.f64_type(), fv, "df")?
                        .into_float_value(),
                    self.load_flag(fnp)?,
                ))
            }
            JVal::Bool(..) => Err(GenErr::Unsup(line!())),
        }
    }

    fn entry_alloca_f64(&self) -> G<(PointerValue<'c>, PointerValue<'c>)> {
        let entry = self
            .func
            .get_first_basic_block()
            .ok_or(GenErr::Unsup(line!()))?;
        let tb = self.c.create_builder();
        match entry.get_first_instruction() {
            Some(i) => tb.position_before(&i),
            None => tb.position_at_end(entry),
        }
        Ok((
            tb.build_alloca(self.c.f64_type(), "tf")?,
            tb.build_alloca(self.c.i8_type(), "tn")?,
        ))
    }

    /// DOUBLE PRECISION arithmetic with PostgreSQL's checks (`crate::float::arith64`): plain
    /// IEEE instructions, no fast-math flags (so no contraction into fused multiply-add).
    fn farith(&self, op: ArithOp, x: JVal<'c>, y: JVal<'c>) -> G<JVal<'c>> {
        let (a, na) = self.as_f64(x)?;
        let (b, nb) = self.as_f64(y)?;
        let n = self.b.build_or(na, nb, "n")?;
        let notn = self.b.build_not(n, "nn")?;
        let zero = self.f64c(0.0);
        if op == ArithOp::Div {
            let bz = self
                .b
                .build_float_compare(FloatPredicate::OEQ, b, zero, "bz")?;
            let anan = self
                .b
                .build_float_compare(FloatPredicate::UNO, a, a, "anan")?;
            let notnan = self.b.build_not(anan, "nnan")?;
            let bad = self.b.build_and(notn, bz, "bad")?;
            let bad = self.b.build_and(bad, notnan, "bad")?;
            self.err_if(bad, E_DIV_ZERO)?;
        }
        let r = match op {
            ArithOp::Add => self.b.build_float_add(a, b, "fadd")?,
            ArithOp::Sub => self.b.build_float_sub(a, b, "fsub")?,
            ArithOp::Mul => self.b.build_float_mul(a, b, "fmul")?,
            ArithOp::Div => self.b.build_float_div(a, b, "fdiv")?,
            ArithOp::Mod => return Err(GenErr::Unsup(line!())),
        };
        let rinf = self.is_inf(r)?;
        let ainf = self.is_inf(a)?;
        let binf = self.is_inf(b)?;
        let nainf = self.b.build_not(ainf, "nainf")?;
        let nbinf = self.b.build_not(binf, "nbinf")?;
        let over = self.b.build_and(rinf, nainf, "ov")?;
        let over = if op == ArithOp::Div {
            over
        } else {
            self.b.build_and(over, nbinf, "ov")?
        };
        let over = self.b.build_and(over, notn, "ov")?;
        self.err_if(over, E_FLOAT_OVERFLOW)?;
        if matches!(op, ArithOp::Mul | ArithOp::Div) {
            let rz = self
                .b
                .build_float_compare(FloatPredicate::OEQ, r, zero, "rz")?;
            // `!= 0.0` is true for NaN, as in C
            let anz = self
                .b
                .build_float_compare(FloatPredicate::UNE, a, zero, "anz")?;
            let other = if op == ArithOp::Mul {
                self.b
                    .build_float_compare(FloatPredicate::UNE, b, zero, "bnz")?
            } else {
                nbinf
            };
            let under = self.b.build_and(rz, anz, "un")?;
            let under = self.b.build_and(under, other, "un")?;
            let under = self.b.build_and(under, notn, "un")?;
            self.err_if(under, E_FLOAT_UNDERFLOW)?;
        }
        Ok(JVal::Flt(self.canon(r)?, n))
    }

    /// PostgreSQL's float order: NaN = NaN, NaN above everything, -0 = 0.
    fn fcmp(
        &self,
        x: JVal<'c>,
        y: JVal<'c>,
    ) -> G<(IntValue<'c>, IntValue<'c>, IntValue<'c>, IntValue<'c>)> {
        let (a, na) = self.as_f64(x)?;
        let (b, nb) = self.as_f64(y)?;
        let an = self
            .b
            .build_float_compare(FloatPredicate::UNO, a, a, "an")?;
        let bn = self
            .b
            .build_float_compare(FloatPredicate::UNO, b, b, "bn")?;
        let nan_an = self.b.build_not(an, "nan_a")?;
        let nan_bn = self.b.build_not(bn, "nan_b")?;
        let both = self.b.build_and(an, bn, "both")?;
        let olt = self
            .b
            .build_float_compare(FloatPredicate::OLT, a, b, "olt")?;
        let oeq = self
            .b
            .build_float_compare(FloatPredicate::OEQ, a, b, "oeq")?;
        let ogt = self
            .b
            .build_float_compare(FloatPredicate::OGT, a, b, "ogt")?;
        let lt = self
            .b
            .build_or(olt, self.b.build_and(nan_an, bn, "l")?, "lt")?;
        let eq = self.b.build_or(oeq, both, "eq")?;
        let gt = self
            .b
            .build_or(ogt, self.b.build_and(an, nan_bn, "g")?, "gt")?;
        Ok((lt, eq, gt, self.b.build_or(na, nb, "n")?))
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
            JVal::Int(_, n) | JVal::Bool(_, n) | JVal::Flt(_, n) => n,
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
                Repr::Flt { v, n } => {
                    let x = self.b.build_load(self.c.f64_type(), v, "x")?;
                    let y = self.b.build_load(self.c.i8_type(), n, "y")?;
                    self.call(
                        "aergo_rt_store_f64",
                        &[self.ctxp.into(), slot.into(), x.into(), y.into()],
                    )?;
                }
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
            Repr::Flt { v, n } => {
                self.call(
                    "aergo_rt_load_f64",
                    &[self.ctxp.into(), slot.into(), v.into(), n.into()],
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
            Expr::Const(Value::Float(x)) => JVal::Flt(self.f64c(*x), self.b1(false)),
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
                Repr::Flt { v, n } => JVal::Flt(
                    self.b
                        .build_load(self.c.f64_type(), v, "fv")?
                        .into_float_value(),
                    self.load_flag(n)?,
                ),
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
                JVal::Flt(x, n) => JVal::Flt(self.canon(self.b.build_float_neg(x, "fneg")?)?, n),
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
            Expr::Cmp(op, a, b) if self.frame_cmp(a, b) => self.cmp_ref(*op, a, b)?,
            Expr::Cmp(op, a, b) if self.on_stack(a) || self.on_stack(b) => {
                self.cmp_stack(*op, a, b)?
            }
            Expr::Cmp(op, a, b)
                if (self.frame_operand(a).is_some() || self.frame_operand(b).is_some())
                    && [a, b]
                        .iter()
                        .any(|x| static_kind(x, &self.slots, &self.rets) == JKind::Unsupported)
                    && self.stackable(a)
                    && self.stackable(b) =>
            {
                self.cmp_stack(*op, a, b)?
            }
            Expr::IsNull(a, neg) if self.on_stack(a) => {
                self.push_arg(a)?;
                let r = self
                    .call("aergo_rt_pop_is_null", &[self.ctxp.into()])?
                    .ok_or(GenErr::Unsup(line!()))?;
                let n = self
                    .b
                    .build_int_compare(IntPredicate::NE, r, self.i32c(0), "isn")?;
                let r = if *neg { self.b.build_not(n, "nn")? } else { n };
                JVal::Bool(r, self.b1(false))
            }
            Expr::Cmp(op, a, b) => {
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                self.cmp(*op, x, y)?
            }
            Expr::And(a, b) | Expr::Or(a, b) => self.logic(matches!(e, Expr::And(..)), a, b)?,
            Expr::IsNull(a, neg) if self.frame_operand(a).is_some_and(|(k, _)| k == 1) => {
                let slot = match &**a {
                    Expr::Var(s) => *s as u64,
                    _ => return Err(GenErr::Unsup(line!())),
                };
                let r = self
                    .call(
                        "aergo_rt_var_is_null",
                        &[self.ctxp.into(), self.i64c(slot).into()],
                    )?
                    .ok_or(GenErr::Unsup(line!()))?;
                let n = self
                    .b
                    .build_int_compare(IntPredicate::NE, r, self.i32c(0), "isn")?;
                let r = if *neg { self.b.build_not(n, "nn")? } else { n };
                JVal::Bool(r, self.b1(false))
            }
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
                JVal::Flt(x, n) => {
                    let f = Intrinsic::find("llvm.fabs")
                        .and_then(|i| i.get_declaration(self.m, &[self.c.f64_type().into()]))
                        .ok_or(GenErr::Unsup(line!()))?;
                    let r = self
                        .b
                        .build_call(f, &[x.into()], "fabs")?
                        .try_as_basic_value()
                        .basic()
                        .ok_or(GenErr::Unsup(line!()))?
                        .into_float_value();
                    JVal::Flt(self.canon(r)?, n)
                }
                JVal::Null => JVal::Null,
                JVal::Bool(..) => return Err(GenErr::Unsup(line!())),
            },
            Expr::Builtin(Builtin::Round, args)
                if args.len() == 1
                    && static_kind(&args[0], &self.slots, &self.rets) == JKind::Null =>
            {
                JVal::Null
            }
            Expr::Builtin(Builtin::Round, args)
                if args.len() == 1
                    && static_kind(&args[0], &self.slots, &self.rets) == JKind::Flt =>
            {
                let x = self.expr(&args[0])?;
                self.f64_fn(F64_RINT, &[x])?
            }
            Expr::Builtin(Builtin::Float(ff), args) => {
                let code = F64_FNS
                    .iter()
                    .position(|x| x == ff)
                    .ok_or(GenErr::Unsup(line!()))?;
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.expr(a)?);
                }
                self.f64_fn(
                    u32::try_from(code).map_err(|_| GenErr::Unsup(line!()))?,
                    &vals,
                )?
            }
            Expr::Cast(a, SqlType::Double) => match self.expr(a)? {
                JVal::Bool(..) => return Err(GenErr::Unsup(line!())),
                JVal::Null => JVal::Null,
                v => {
                    let (x, n) = self.as_f64(v)?;
                    JVal::Flt(x, n)
                }
            },
            Expr::Cast(a, ty @ (SqlType::BigInt | SqlType::Integer))
                if static_kind(a, &self.slots, &self.rets) == JKind::Flt =>
            {
                let JVal::Flt(x, n) = self.expr(a)? else {
                    return Err(GenErr::Unsup(line!()));
                };
                let out = self.f64_to_int(x, n, *ty == SqlType::Integer)?;
                JVal::Int(out, n)
            }
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
                    Some(SqlType::Double) => 3,
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
                    3 => {
                        let v = self
                            .b
                            .build_load(self.c.i64_type(), iv, "cv")?
                            .into_int_value();
                        let f = self
                            .b
                            .build_bit_cast(v, self.c.f64_type(), "cf")?
                            .into_float_value();
                        JVal::Flt(f, self.load_flag(nv)?)
                    }
                    _ => JVal::Num(dec),
                }
            }
            Expr::Cast(a, SqlType::Numeric(None)) => match self.expr(a)? {
                JVal::Int(v, n) => JVal::Num(self.int_to_dec(v, n)?),
                JVal::Num(p) => JVal::Num(p),
                JVal::Null => JVal::Null,
                JVal::Bool(..) | JVal::Flt(..) => return Err(GenErr::Unsup(line!())),
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

    /// Calls a float function through `aergo_rt_f64_fn` (NULL in, NULL out).
    fn f64_fn(&self, code: u32, args: &[JVal<'c>]) -> G<JVal<'c>> {
        let mut xs = Vec::new();
        let mut n = self.b1(false);
        for a in args {
            let (x, na) = self.as_f64(*a)?;
            n = self.b.build_or(n, na, "n")?;
            xs.push(x);
        }
        let a = xs.first().copied().unwrap_or(self.f64c(0.0));
        let b = xs.get(1).copied().unwrap_or(self.f64c(0.0));
        let (out, _) = self.entry_alloca_f64()?;
        // only called for non-NULL arguments (a NULL argument could fail a domain check)
        let call_bb = self.c.append_basic_block(self.func, "ffn");
        let done = self.c.append_basic_block(self.func, "ffn_done");
        self.b.build_store(out, self.f64c(0.0))?;
        self.b.build_conditional_branch(n, done, call_bb)?;
        self.b.position_at_end(call_bb);
        self.call_checked(
            "aergo_rt_f64_fn",
            &[
                self.ctxp.into(),
                self.i32c(u64::from(code)).into(),
                a.into(),
                b.into(),
                out.into(),
            ],
        )?;
        self.b.build_unconditional_branch(done)?;
        self.b.position_at_end(done);
        let r = self
            .b
            .build_load(self.c.f64_type(), out, "fr")?
            .into_float_value();
        Ok(JVal::Flt(r, n))
    }

    /// DOUBLE PRECISION → integer through `aergo_rt_f64_to_int` (skipped when NULL).
    fn f64_to_int(&self, x: FloatValue<'c>, n: IntValue<'c>, integer: bool) -> G<IntValue<'c>> {
        let (fv, _) = self.entry_alloca_f64()?;
        // an f64 alloca holds the i64 result (same size and alignment)
        let out = fv;
        self.b.build_store(out, self.i64c(0))?;
        let call_bb = self.c.append_basic_block(self.func, "ftoi");
        let done = self.c.append_basic_block(self.func, "ftoi_done");
        self.b.build_conditional_branch(n, done, call_bb)?;
        self.b.position_at_end(call_bb);
        self.call_checked(
            "aergo_rt_f64_to_int",
            &[
                self.ctxp.into(),
                x.into(),
                self.i32c(u64::from(integer)).into(),
                out.into(),
            ],
        )?;
        self.b.build_unconditional_branch(done)?;
        self.b.position_at_end(done);
        Ok(self
            .b
            .build_load(self.c.i64_type(), out, "fiv")?
            .into_int_value())
    }

    fn arith(&self, op: ArithOp, x: JVal<'c>, y: JVal<'c>) -> G<JVal<'c>> {
        match (x, y) {
            (JVal::Flt(..), JVal::Bool(..)) | (JVal::Bool(..), JVal::Flt(..)) => {
                Err(GenErr::Unsup(line!()))
            }
            (JVal::Flt(..), JVal::Int(..) | JVal::Num(_) | JVal::Flt(..))
            | (JVal::Int(..) | JVal::Num(_), JVal::Flt(..)) => self.farith(op, x, y),
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
                let slow = |g: &Self| {
                    g.call_checked(
                        "aergo_rt_dec_binop",
                        &[
                            g.ctxp.into(),
                            g.i32c(code).into(),
                            a.into(),
                            b.into(),
                            out.into(),
                        ],
                    )
                };
                match op {
                    ArithOp::Add | ArithOp::Sub | ArithOp::Mul => {
                        self.dec_fast_binop(op, a, b, out, slow)?
                    }
                    ArithOp::Div | ArithOp::Mod => slow(self)?,
                }
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
            (JVal::Flt(..), _) | (_, JVal::Flt(..)) => self.fcmp(x, y)?,
            _ => {
                let a = self.as_dec(x)?;
                let b = self.as_dec(y)?;
                let n = self.b.build_or(self.dec_null(a)?, self.dec_null(b)?, "n")?;
                let r = self.dec_fast_cmp(a, b)?;
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
            JKind::Flt => Repr::Flt {
                v: tb.build_alloca(self.c.f64_type(), "cf")?,
                n: tb.build_alloca(self.c.i8_type(), "cn")?,
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
            (Repr::Flt { v: pv, n: pn }, JVal::Flt(x, n)) => {
                self.b.build_store(pv, x)?;
                self.store_flag(pn, n)
            }
            (Repr::Int { n, .. } | Repr::Bool { n, .. } | Repr::Flt { n, .. }, JVal::Null) => {
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
            (JKind::Flt, Repr::Flt { v, n }) => JVal::Flt(
                self.b
                    .build_load(self.c.f64_type(), v, "g")?
                    .into_float_value(),
                self.load_flag(n)?,
            ),
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
                    Some((pp, ss)) => self.dec_fast_fit(src, pp, ss, p),
                    None => {
                        let val = self.b.build_load(self.dect, src, "cp")?;
                        self.b.build_store(p, val)?;
                        Ok(())
                    }
                }
            }
            (Repr::Flt { .. }, JVal::Flt(..) | JVal::Int(..) | JVal::Num(_)) => {
                let (x, n) = self.as_f64(v)?;
                self.put(self.slots[slot], JVal::Flt(x, n))
            }
            (
                Repr::Int {
                    v: pv,
                    n: pn,
                    integer,
                },
                JVal::Flt(x, n),
            ) => {
                let i = self.f64_to_int(x, n, integer)?;
                self.b.build_store(pv, i)?;
                self.store_flag(pn, n)
            }
            (Repr::Bool { .. }, JVal::Bool(..)) | (_, JVal::Null) => self.put(self.slots[slot], v),
            _ => Err(GenErr::Unsup(line!())),
        }
    }

    /// A value that stays in the frame (see `abi`'s frame operands): `(0, address)` for a
    /// constant, `(1, slot)` for a variable the generated code does not hold natively.
    fn frame_operand(&self, e: &Expr) -> Option<(u32, u64)> {
        match e {
            Expr::Const(v) => Some((0, v as *const Value as usize as u64)),
            Expr::Var(s) if matches!(self.slots.get(*s), Some(Repr::Frame)) => Some((1, *s as u64)),
            _ => None,
        }
    }

    /// Whether a comparison goes through `aergo_rt_cmp_ref`: both operands are frame operands
    /// and at least one is not a natively held type (a frame variable, or a constant of a
    /// type the generated code has no representation for).
    fn frame_cmp(&self, a: &Expr, b: &Expr) -> bool {
        let foreign = |e: &Expr| match e {
            Expr::Const(v) => !matches!(
                v,
                Value::Null | Value::Int(_) | Value::Bool(_) | Value::Num(_) | Value::Float(_)
            ),
            Expr::Var(s) => matches!(self.slots.get(*s), Some(Repr::Frame)),
            _ => false,
        };
        self.frame_operand(a).is_some()
            && self.frame_operand(b).is_some()
            && (foreign(a) || foreign(b))
    }

    /// A comparison of two frame operands through the runtime's `sql_cmp`.
    fn cmp_ref(&self, op: CmpOp, a: &Expr, b: &Expr) -> G<JVal<'c>> {
        let ((ka, xa), (kb, xb)) = (
            self.frame_operand(a).ok_or(GenErr::Unsup(line!()))?,
            self.frame_operand(b).ok_or(GenErr::Unsup(line!()))?,
        );
        let ordp = self.entry_alloca(self.c.i32_type().into())?;
        let nullp = self.entry_alloca(self.c.i8_type().into())?;
        self.call_checked(
            "aergo_rt_cmp_ref",
            &[
                self.ctxp.into(),
                self.i32c(u64::from(ka)).into(),
                self.i64c(xa).into(),
                self.i32c(u64::from(kb)).into(),
                self.i64c(xb).into(),
                ordp.into(),
                nullp.into(),
            ],
        )?;
        let r = self
            .b
            .build_load(self.c.i32_type(), ordp, "ord")?
            .into_int_value();
        let n = self.load_flag(nullp)?;
        let z = self.i32c(0);
        let v = match op {
            CmpOp::Eq => self.b.build_int_compare(IntPredicate::EQ, r, z, "eq")?,
            CmpOp::Ne => self.b.build_int_compare(IntPredicate::NE, r, z, "ne")?,
            CmpOp::Lt => self.b.build_int_compare(IntPredicate::SLT, r, z, "lt")?,
            CmpOp::Le => self.b.build_int_compare(IntPredicate::SLE, r, z, "le")?,
            CmpOp::Gt => self.b.build_int_compare(IntPredicate::SGT, r, z, "gt")?,
            CmpOp::Ge => self.b.build_int_compare(IntPredicate::SGE, r, z, "ge")?,
        };
        Ok(JVal::Bool(v, n))
    }

    /// `slot := e` for a frame slot and a frame operand, through `aergo_rt_assign_ref`
    /// (false: not that shape).
    fn assign_ref(&self, slot: usize, e: &Expr) -> G<bool> {
        if !matches!(self.slots.get(slot), Some(Repr::Frame)) {
            return Ok(false);
        }
        let Some((k, x)) = self.frame_operand(e) else {
            return Ok(false);
        };
        self.call_checked(
            "aergo_rt_assign_ref",
            &[
                self.ctxp.into(),
                self.i64c(slot as u64).into(),
                self.i32c(u64::from(k)).into(),
                self.i64c(x).into(),
            ],
        )?;
        Ok(true)
    }

    /// Whether `e` can be pushed on the helper stack: natively compiled, a constant, a frame
    /// variable, or `||`, arithmetic, a cast, unary minus or a built-in function over such
    /// operands (see `abi`'s stack helpers).
    fn stackable(&self, e: &Expr) -> bool {
        if static_kind(e, &self.slots, &self.rets) != JKind::Unsupported {
            return true;
        }
        match e {
            Expr::Const(_) => true,
            Expr::Var(s) => matches!(self.slots.get(*s), Some(Repr::Frame)),
            Expr::Concat(a, b) | Expr::Arith(_, a, b) => self.stackable(a) && self.stackable(b),
            Expr::Cast(_, SqlType::Array(_)) => false,
            Expr::Cast(a, _) | Expr::Neg(a) => self.stackable(a),
            Expr::Builtin(_, args) => !args.is_empty() && args.iter().all(|a| self.stackable(a)),
            Expr::Call(fi, args) => {
                !matches!(
                    self.rets.get(*fi),
                    None | Some(SqlType::Void | SqlType::Array(_))
                ) && args.iter().all(|a| self.stackable(a))
            }
            _ => false,
        }
    }

    /// An expression the generated code computes on the helper stack rather than natively.
    fn on_stack(&self, e: &Expr) -> bool {
        static_kind(e, &self.slots, &self.rets) == JKind::Unsupported
            && !matches!(e, Expr::Const(_) | Expr::Var(_))
            && self.stackable(e)
    }

    /// Evaluates an argument and pushes it (RAISE, calls, RETURN NEXT, stack operands).
    fn push_arg(&self, a: &Expr) -> G<()> {
        if !self.on_stack(a) {
            return self.push_leaf(a);
        }
        match a {
            Expr::Concat(x, y) | Expr::Arith(_, x, y) => {
                self.push_arg(x)?;
                self.push_arg(y)?;
            }
            Expr::Cast(x, _) | Expr::Neg(x) => self.push_arg(x)?,
            Expr::Builtin(_, args) => {
                for x in args {
                    self.push_arg(x)?;
                }
            }
            // a call whose result the generated code does not hold (TEXT, REAL, a record's
            // text): `aergo_rt_call` leaves it on the stack
            Expr::Call(fi, args) => {
                for x in args {
                    self.push_arg(x)?;
                }
                let iv = self.entry_alloca(self.c.i64_type().into())?;
                let nv = self.entry_alloca(self.c.i8_type().into())?;
                let dec = self.entry_alloca_dec()?;
                return self.call_checked(
                    "aergo_rt_call",
                    &[
                        self.ctxp.into(),
                        self.i64c(*fi as u64).into(),
                        self.i64c(args.len() as u64).into(),
                        self.i32c(4).into(),
                        iv.into(),
                        nv.into(),
                        dec.into(),
                    ],
                );
            }
            _ => return Err(GenErr::Unsup(line!())),
        }
        let addr = a as *const Expr as usize as u64;
        self.call_checked(
            "aergo_rt_stack_op",
            &[self.ctxp.into(), self.i64c(addr).into()],
        )
    }

    /// `slot := e` through the helper stack (false: `e` is not a stack expression).
    fn assign_stack(&self, slot: usize, e: &Expr) -> G<bool> {
        if !self.on_stack(e) {
            return Ok(false);
        }
        self.push_arg(e)?;
        self.call_checked(
            "aergo_rt_pop_assign",
            &[self.ctxp.into(), self.i64c(slot as u64).into()],
        )?;
        self.reload(slot)?;
        Ok(true)
    }

    /// A comparison with an operand computed on the helper stack.
    fn cmp_stack(&self, op: CmpOp, a: &Expr, b: &Expr) -> G<JVal<'c>> {
        self.push_arg(a)?;
        self.push_arg(b)?;
        let ordp = self.entry_alloca(self.c.i32_type().into())?;
        let nullp = self.entry_alloca(self.c.i8_type().into())?;
        self.call_checked(
            "aergo_rt_cmp_pop",
            &[self.ctxp.into(), ordp.into(), nullp.into()],
        )?;
        let r = self
            .b
            .build_load(self.c.i32_type(), ordp, "ord")?
            .into_int_value();
        let n = self.load_flag(nullp)?;
        let z = self.i32c(0);
        let v = match op {
            CmpOp::Eq => self.b.build_int_compare(IntPredicate::EQ, r, z, "eq")?,
            CmpOp::Ne => self.b.build_int_compare(IntPredicate::NE, r, z, "ne")?,
            CmpOp::Lt => self.b.build_int_compare(IntPredicate::SLT, r, z, "lt")?,
            CmpOp::Le => self.b.build_int_compare(IntPredicate::SLE, r, z, "le")?,
            CmpOp::Gt => self.b.build_int_compare(IntPredicate::SGT, r, z, "gt")?,
            CmpOp::Ge => self.b.build_int_compare(IntPredicate::SGE, r, z, "ge")?,
        };
        Ok(JVal::Bool(v, n))
    }

    /// Evaluates a leaf argument (constant, variable, native expression) and pushes it.
    fn push_leaf(&self, a: &Expr) -> G<()> {
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
                JVal::Flt(v, n) => {
                    let nz = self.b.build_int_z_extend(n, self.c.i8_type(), "nz")?;
                    self.call("aergo_rt_push_f64", &[ctx, v.into(), nz.into()])?;
                }
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

    /// Releases the savepoints of `n` open exception blocks (RETURN, EXIT or CONTINUE out of
    /// them), as the interpreter does when the flow passes their end.
    fn leave_guards(&self, n: u32) -> G<()> {
        for _ in 0..n {
            self.call("aergo_rt_guard_leave", &[self.ctxp.into()])?;
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
            StmtKind::Guarded(body, handlers) => {
                let ctx: BasicMetadataValueEnum<'c> = self.ctxp.into();
                let addr = &s.kind as *const StmtKind as usize as u64;
                // the body runs under a savepoint; its errors go to `catch`
                self.call_checked("aergo_rt_guard_enter", &[ctx])?;
                let catch = self.c.append_basic_block(self.func, "catch");
                let after = self.c.append_basic_block(self.func, "guard_end");
                let outer = std::mem::replace(&mut self.fail_bb, catch);
                self.guard_depth += 1;
                let r = self.stmts(body);
                self.guard_depth -= 1;
                self.fail_bb = outer;
                r?;
                self.call("aergo_rt_guard_leave", &[ctx])?;
                self.b.build_unconditional_branch(after)?;
                // rolled back; the first matching handler runs, else the error goes on
                self.b.position_at_end(catch);
                let h = self
                    .call("aergo_rt_guard_catch", &[ctx, self.i64c(addr).into()])?
                    .ok_or(GenErr::Unsup(line!()))?;
                let mut cases = Vec::new();
                let mut blocks = Vec::new();
                for k in 0..handlers.len() {
                    let hb = self.c.append_basic_block(self.func, "handler");
                    cases.push((self.i32c(k as u64), hb));
                    blocks.push(hb);
                }
                self.b.build_switch(h, self.fail_bb, &cases)?;
                for (hd, hb) in handlers.iter().zip(blocks) {
                    self.b.position_at_end(hb);
                    self.stmts(&hd.body)?;
                    self.b.build_unconditional_branch(after)?;
                }
                self.b.position_at_end(after);
            }
            StmtKind::Assign(slot, e) => {
                if !self.assign_ref(*slot, e)? && !self.assign_stack(*slot, e)? {
                    let v = self.expr(e)?;
                    self.assign(*slot, v)?;
                }
            }
            StmtKind::Init(list) => {
                for (slot, def) in list {
                    if let Some(e) = def {
                        if self.assign_ref(*slot, e)? || self.assign_stack(*slot, e)? {
                            continue;
                        }
                    }
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
                self.loop_guards.insert(*id, self.guard_depth);
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
                    LoopPlan::ForEach { .. } => return Err(GenErr::Unsup(line!())),
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
                // leaving exception blocks opened inside the loop releases their savepoints
                let inside = self
                    .guard_depth
                    .saturating_sub(self.loop_guards.get(target).copied().unwrap_or(0));
                let dest = if inside == 0 {
                    dest
                } else {
                    let here = self.b.get_insert_block().ok_or(GenErr::Unsup(line!()))?;
                    let leave = self.c.append_basic_block(self.func, "leave_guards");
                    self.b.position_at_end(leave);
                    self.leave_guards(inside)?;
                    self.b.build_unconditional_branch(dest)?;
                    self.b.position_at_end(here);
                    leave
                };
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
                    Some(e) if self.on_stack(e) => {
                        self.push_arg(e)?;
                        self.call("aergo_rt_ret_pop", &[ctx])?;
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
                        JVal::Flt(v, n) => {
                            let nz = self.b.build_int_z_extend(n, self.c.i8_type(), "nz")?;
                            self.call("aergo_rt_ret_f64", &[ctx, v.into(), nz.into()])?;
                        }
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
                self.leave_guards(self.guard_depth)?;
                self.b.build_return(Some(&self.i32c(0)))?;
                return Ok(true);
            }
            StmtKind::ReturnNext(cols) => {
                for (e, _) in cols {
                    self.push_arg(e)?;
                }
                let addr = &s.kind as *const StmtKind as usize as u64;
                self.call_checked(
                    "aergo_rt_return_next",
                    &[self.ctxp.into(), self.i64c(addr).into()],
                )?;
            }
            StmtKind::ReturnQuery(q, _) => {
                self.spill(&q.vars_used())?;
                let addr = &s.kind as *const StmtKind as usize as u64;
                self.call_checked(
                    "aergo_rt_return_query",
                    &[self.ctxp.into(), self.i64c(addr).into()],
                )?;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JKind {
    Int,
    Num,
    Bool,
    /// DOUBLE PRECISION.
    Flt,
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
        Expr::Const(Value::Float(_)) => JKind::Flt,
        Expr::Var(s) => match slots.get(*s) {
            Some(Repr::Flt { .. }) => JKind::Flt,
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
        Expr::Builtin(Builtin::Round, args) => {
            match args.first().map(|a| static_kind(a, slots, rets)) {
                Some(JKind::Flt) => JKind::Flt,
                Some(JKind::Null) if args.len() == 1 => JKind::Null,
                Some(JKind::Unsupported) => JKind::Unsupported,
                _ => JKind::Num,
            }
        }
        Expr::Builtin(Builtin::Float(_), args) => {
            if args.iter().any(|a| {
                matches!(
                    static_kind(a, slots, rets),
                    JKind::Unsupported | JKind::Bool
                )
            }) {
                JKind::Unsupported
            } else {
                JKind::Flt
            }
        }
        Expr::Cast(a, SqlType::Double) => match static_kind(a, slots, rets) {
            JKind::Int | JKind::Num | JKind::Flt => JKind::Flt,
            JKind::Null => JKind::Null,
            _ => JKind::Unsupported,
        },
        Expr::Cast(a, SqlType::BigInt | SqlType::Integer)
            if static_kind(a, slots, rets) == JKind::Flt =>
        {
            JKind::Int
        }
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
            (JKind::Flt, _) | (_, JKind::Flt) => JKind::Flt,
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
            Some(SqlType::Double) => JKind::Flt,
            _ => JKind::Unsupported,
        },
        Expr::Cast(a, SqlType::Numeric(None)) => match static_kind(a, slots, rets) {
            JKind::Flt => JKind::Unsupported,
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
