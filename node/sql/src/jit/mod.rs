//! LLVM JIT through `inkwell` (feature `jit`, on by default).
//!
//! Every function of a contract is compiled when the contract is deployed or
//! loaded, never on the call path. The JIT covers the compute-bound subset:
//! INTEGER/BIGINT/NUMERIC/BOOLEAN locals and parameters, arithmetic,
//! comparisons, AND/OR/NOT, IS NULL, CASE, COALESCE, abs/round, assignment
//! with type coercion, IF/ELSIF/ELSE, LOOP/WHILE/FOR-range, EXIT/CONTINUE,
//! RETURN and RAISE. Integer arithmetic, control flow, NULL logic and gas
//! metering are native code, and so are NUMERIC `+`, `-`, `*`, comparisons and
//! `NUMERIC(p, s)` assignment on i64-sized mantissas (`codegen`'s `dec_fast_*`); SQL
//! statements, the rest of decimal arithmetic, frame
//! access and RAISE go through `aergo_rt_*` runtime helpers (the generated
//! module imports nothing else, see [`JitProgram::imported_symbols`]). Text expressions
//! (`||`, text functions, casts), REAL arithmetic and other values held in the frame are
//! computed on the helper stack, one IR node per helper call; exception blocks are compiled
//! with savepoint helpers and a catch block per `BEGIN … EXCEPTION`. A function that uses
//! anything else (chain functions in expressions, LIKE, IN lists, BETWEEN, subqueries, …)
//! runs in the interpreter.
//! Both engines charge identical gas at identical points and report
//! identical errors (the helpers call the same Rust code as the interpreter).
//!
//! Layout: `abi` holds the unsafe runtime ABI (context layout, `aergo_rt_*` helpers and
//! their SAFETY contract, panic containment); `codegen` the LLVM code generation; this module
//! the [`JitProgram`] that compiles a catalog and dispatches calls into it.

mod abi;
mod codegen;

pub use abi::{DecSlot, JitCtx, RUNTIME_PANIC};

use crate::error::{Result, SqlError};
use crate::exec::{Dispatch, Runtime};
use crate::ir::Catalog;
use crate::value::{SqlType, Value};
use abi::{call_compiled, JitFn};
use codegen::{declare_helpers, gen_function, GenErr};
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
#[allow(deprecated)]
use inkwell::passes::PassManager;
use inkwell::OptimizationLevel;
use std::sync::Arc;

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
        for helper in abi::helpers() {
            if let Some(f) = module.get_function(helper.name) {
                engine.add_global_mapping(&f, helper.addr);
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

impl JitProgram {
    /// True when function `fi` was compiled.
    pub fn has(&self, fi: usize) -> bool {
        matches!(self.fns.get(fi), Some(Some(_)))
    }
}

impl Dispatch for JitProgram {
    fn call(&self, fi: usize, rt: &mut Runtime, args: Vec<Value>) -> Result<Value> {
        let (Some(Some(fp)), Some(f)) = (self.fns.get(fi), self.cat.funcs.get(fi)) else {
            return crate::interp::run(rt, fi, args);
        };
        call_compiled(*fp, f, rt, args)
    }
}
