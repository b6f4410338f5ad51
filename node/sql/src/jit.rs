//! LLVM JIT (placeholder while the code generator is written).

use crate::compile::Catalog;
use crate::error::Result;
use crate::exec::Runtime;
use crate::interp::JitDispatch;
use crate::value::Value;

/// JIT-compiled functions of one contract.
pub struct JitProgram;

impl JitProgram {
    /// Compiles what the JIT supports.
    pub fn compile(_cat: &Catalog) -> Result<JitProgram> {
        Ok(JitProgram)
    }
}

impl JitDispatch for JitProgram {
    fn has(&self, _fi: usize) -> bool {
        false
    }
    fn call(&self, fi: usize, rt: &mut Runtime, args: Vec<Value>) -> Result<Value> {
        crate::interp::run(rt, fi, args)
    }
}
