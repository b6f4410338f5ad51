//! The public contract API the chain calls: deploy, load, upgrade, call,
//! query and ABI. Every call runs against a write overlay that is applied to
//! storage only when the call succeeds.

use crate::compile::{apply_script, Catalog, Compiler};
use crate::ctx::ChainContext;
use crate::encoding::prefix_end;
use crate::error::{Result, SqlError};
use crate::exec::{keys, Dispatch, Runtime};
use crate::interp::{self, Interpreter};
use crate::ir::SqlPlan;
use crate::jit_slot::JitSlot;
use crate::kv::{apply_writes, apply_writes_recycle, Kv, Overlay, OverlayBuffers};
use crate::parse;
use crate::value::Value;
use crate::version::EngineVersion;
use std::sync::Arc;

/// Which engine runs calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The tree-walking interpreter.
    Interpreter,
    /// LLVM JIT code where available (falls back to the interpreter for
    /// functions the JIT does not cover).
    Jit,
}

/// Result of a successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    /// The function's return value (NULL for `RETURNS void`).
    pub result: Value,
    /// `RAISE NOTICE` messages, in order.
    pub events: Vec<String>,
    /// Gas consumed.
    pub gas_used: u64,
}

/// Result of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
    /// Gas consumed (queries are free but capped).
    pub gas_used: u64,
}

/// A function in the ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiFunction {
    /// Name.
    pub name: String,
    /// (name, SQL type).
    pub params: Vec<(String, String)>,
    /// SQL return type.
    pub returns: String,
}

/// A table in the ABI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiTable {
    /// Name.
    pub name: String,
    /// (name, SQL type, NOT NULL).
    pub columns: Vec<(String, String, bool)>,
    /// Primary-key column names.
    pub primary_key: Vec<String>,
}

/// Contract interface: functions and tables with types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abi {
    /// Functions in definition order.
    pub functions: Vec<AbiFunction>,
    /// Tables in creation order.
    pub tables: Vec<AbiTable>,
}

/// A deployed contract. Cheap to clone (the compiled program is shared).
#[derive(Clone)]
pub struct Contract {
    prefix: Vec<u8>,
    owner: String,
    scripts: Vec<String>,
    cat: Arc<Catalog>,
    /// The compiled code, shared by the clones of this version (empty until compiled).
    jit: Arc<JitSlot>,
    mem_limit: usize,
}

/// When a contract's JIT code is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JitMode {
    /// Before the constructor returns.
    Now,
    /// On the background worker ([`crate::jit_slot`]); calls run on the interpreter until
    /// it is ready.
    Background,
}

thread_local! {
    /// Point statements' key and row buffers, kept between the calls on one thread (a text
    /// column decodes into the string the previous call left; see `Runtime::row_buf`).
    static SCRATCH: std::cell::RefCell<Scratch> = const {
        std::cell::RefCell::new(Scratch {
            key: Vec::new(),
            row: Vec::new(),
            upd: Vec::new(),
            vars: Vec::new(),
            upd_key: Vec::new(),
            enc: Vec::new(),
            overlay: OverlayBuffers {
                writes: Vec::new(),
                spare: Vec::new(),
            },
        })
    };
}

/// Buffers larger than this (bytes) are not kept between calls.
const SCRATCH_KEEP: usize = 1024;

/// Buffers one call leaves to the next on its thread: the point statements' key and rows
/// (`Runtime::key_buf`, `row_buf`, `upd_buf`), the variables (`Runtime::spare_vars`: the
/// next call's arguments are cloned into their strings) and the write overlay's vector.
#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    row: Vec<Value>,
    upd: Vec<Value>,
    vars: Vec<Value>,
    upd_key: Vec<u8>,
    enc: Vec<u8>,
    overlay: OverlayBuffers,
}

/// Runs `f` with the thread's scratch buffers (empty ones while another call on the thread
/// holds them), in place: no buffer moves but those `f` makes.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut sc) => f(&mut sc),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Whether a scratch row is small enough to keep between calls.
fn small_row(row: &[Value]) -> bool {
    row.len() <= 64
        && row.iter().all(|v| match v {
            Value::Text(t) => t.capacity() <= SCRATCH_KEEP,
            Value::Bytes(b) => b.capacity() <= SCRATCH_KEEP,
            Value::Array(_) => false,
            _ => true,
        })
}

fn meta_key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.push(keys::META);
    k.extend_from_slice(name.as_bytes());
    k
}

fn st(e: crate::kv::KvError) -> SqlError {
    SqlError::Storage(e.0)
}

impl Contract {
    /// Parses, resolves and (with the `jit` feature) compiles `script`, stores
    /// it under `prefix` and runs the script's DML (e.g. seed INSERTs) with
    /// `gas_limit`. Fails with a positioned error on any parse/name/type error
    /// and leaves `kv` untouched on any failure.
    pub fn deploy(
        script: &str,
        owner: &str,
        prefix: &[u8],
        kv: &mut dyn Kv,
        gas_limit: u64,
    ) -> Result<(Contract, u64)> {
        Self::deploy_with(
            script,
            owner,
            prefix,
            kv,
            gas_limit,
            JitMode::Now,
            EngineVersion::LATEST,
        )
    }

    /// [`Contract::deploy`] under an older engine version (the contract keeps its rules
    /// forever: see [`crate::version`]); `background` queues the JIT compilation as
    /// [`Contract::deploy_background`] does.
    pub fn deploy_version(
        version: EngineVersion,
        script: &str,
        owner: &str,
        prefix: &[u8],
        kv: &mut dyn Kv,
        gas_limit: u64,
        background: bool,
    ) -> Result<(Contract, u64)> {
        let mode = if background {
            JitMode::Background
        } else {
            JitMode::Now
        };
        Self::deploy_with(script, owner, prefix, kv, gas_limit, mode, version)
    }

    /// [`Contract::deploy`] without compiling: the code is queued for the background JIT
    /// worker and calls run on the interpreter until it is ready ([`Contract::jit_ready`]).
    /// Same results, gas and writes either way. A JIT failure never fails the deploy.
    pub fn deploy_background(
        script: &str,
        owner: &str,
        prefix: &[u8],
        kv: &mut dyn Kv,
        gas_limit: u64,
    ) -> Result<(Contract, u64)> {
        Self::deploy_with(
            script,
            owner,
            prefix,
            kv,
            gas_limit,
            JitMode::Background,
            EngineVersion::LATEST,
        )
    }

    fn deploy_with(
        script: &str,
        owner: &str,
        prefix: &[u8],
        kv: &mut dyn Kv,
        gas_limit: u64,
        mode: JitMode,
        version: EngineVersion,
    ) -> Result<(Contract, u64)> {
        if kv.get(&meta_key(prefix, "owner")).map_err(st)?.is_some() {
            return Err(SqlError::Permission(
                "a contract already exists at this prefix".into(),
            ));
        }
        let mut cat = Catalog {
            version,
            ..Catalog::default()
        };
        let dml = apply_script(&mut cat, script, false)?;
        let mut c = Contract {
            prefix: prefix.to_vec(),
            owner: owner.to_string(),
            scripts: vec![script.to_string()],
            cat: Arc::new(cat),
            jit: Arc::default(),
            mem_limit: crate::gas::MEMORY_BUDGET,
        };
        c.compile_jit(mode)?;
        let gas = {
            let mut ov = Overlay::new(kv);
            let gas = c.run_dml(&dml, &mut ov, gas_limit, &[])?;
            ov.put(&meta_key(prefix, "owner"), owner.as_bytes())
                .map_err(st)?;
            ov.put(&meta_key(prefix, "script/0000"), script.as_bytes())
                .map_err(st)?;
            // version 1 stores nothing, as before versions existed
            if version != EngineVersion::V1 {
                ov.put(&meta_key(prefix, "engine"), &[version.number()])
                    .map_err(st)?;
            }
            let w = ov.into_writes();
            apply_writes(kv, w).map_err(st)?;
            gas
        };
        Ok((c, gas))
    }

    /// Reloads a contract stored under `prefix` (e.g. at node start).
    pub fn load(prefix: &[u8], kv: &dyn Kv) -> Result<Contract> {
        Self::load_with(prefix, kv, JitMode::Now)
    }

    /// [`Contract::load`] with the JIT compilation queued for the background worker.
    pub fn load_background(prefix: &[u8], kv: &dyn Kv) -> Result<Contract> {
        Self::load_with(prefix, kv, JitMode::Background)
    }

    fn load_with(prefix: &[u8], kv: &dyn Kv, mode: JitMode) -> Result<Contract> {
        let owner = kv
            .get(&meta_key(prefix, "owner"))
            .map_err(st)?
            .ok_or_else(|| SqlError::Storage("no contract at this prefix".into()))?;
        let owner = String::from_utf8(owner).map_err(|_| SqlError::Storage("bad owner".into()))?;
        let start = meta_key(prefix, "script/");
        let end = prefix_end(&start);
        let mut scripts = Vec::new();
        for it in kv.scan(&start, &end) {
            let (_, v) = it.map_err(st)?;
            scripts.push(String::from_utf8(v).map_err(|_| SqlError::Storage("bad script".into()))?);
        }
        let version = match kv.get(&meta_key(prefix, "engine")).map_err(st)? {
            None => EngineVersion::V1,
            Some(b) => match b.as_slice() {
                [n] => EngineVersion::from_number(*n).ok_or_else(|| {
                    SqlError::Storage(format!(
                        "contract needs AergoSQL engine version {n}, newer than this node's {}",
                        EngineVersion::LATEST
                    ))
                })?,
                _ => return Err(SqlError::Storage("bad engine version".into())),
            },
        };
        let mut cat = Catalog {
            version,
            ..Catalog::default()
        };
        for s in &scripts {
            apply_script(&mut cat, s, true)?;
        }
        let mut c = Contract {
            prefix: prefix.to_vec(),
            owner,
            scripts,
            cat: Arc::new(cat),
            jit: Arc::default(),
            mem_limit: crate::gas::MEMORY_BUDGET,
        };
        c.compile_jit(mode)?;
        Ok(c)
    }

    /// Applies an upgrade script (owner only): new tables, new indexes (built
    /// over existing rows), new functions and `CREATE OR REPLACE FUNCTION`.
    /// Existing tables cannot be redefined (`CREATE TABLE IF NOT EXISTS` of an
    /// existing table is a no-op), so stored rows always match their schema.
    pub fn upgrade(
        &mut self,
        script: &str,
        caller: &str,
        kv: &mut dyn Kv,
        gas_limit: u64,
    ) -> Result<u64> {
        self.upgrade_with(script, caller, kv, gas_limit, JitMode::Now)
    }

    /// [`Contract::upgrade`] with the new version's JIT compilation queued for the
    /// background worker.
    pub fn upgrade_background(
        &mut self,
        script: &str,
        caller: &str,
        kv: &mut dyn Kv,
        gas_limit: u64,
    ) -> Result<u64> {
        self.upgrade_with(script, caller, kv, gas_limit, JitMode::Background)
    }

    fn upgrade_with(
        &mut self,
        script: &str,
        caller: &str,
        kv: &mut dyn Kv,
        gas_limit: u64,
        mode: JitMode,
    ) -> Result<u64> {
        if caller != self.owner {
            return Err(SqlError::Permission(
                "only the contract owner may upgrade it".into(),
            ));
        }
        let mut cat = (*self.cat).clone();
        let old_idx: Vec<usize> = cat.tables.iter().map(|t| t.indexes.len()).collect();
        let dml = apply_script(&mut cat, script, true)?;
        let mut next = self.clone();
        next.cat = Arc::new(cat);
        next.scripts.push(script.to_string());
        next.compile_jit(mode)?;
        let n = self.scripts.len();
        let gas = {
            let mut ov = Overlay::new(kv);
            let mut rt = next.runtime(&mut ov, None, gas_limit, false);
            for (ti, t) in next.cat.tables.iter().enumerate() {
                let from = old_idx.get(ti).copied().unwrap_or(0);
                for k in from..t.indexes.len() {
                    rt.build_index(ti, k)?;
                }
            }
            let used = rt.gas_used;
            let gas = used + next.run_dml(&dml, &mut ov, gas_limit.saturating_sub(used), &[])?;
            ov.put(
                &meta_key(&self.prefix, &format!("script/{n:04}")),
                script.as_bytes(),
            )
            .map_err(st)?;
            let w = ov.into_writes();
            apply_writes(kv, w).map_err(st)?;
            gas
        };
        *self = next;
        Ok(gas)
    }

    fn runtime<'a>(
        &'a self,
        kv: &'a mut dyn Kv,
        chain: Option<&'a mut dyn ChainContext>,
        gas_limit: u64,
        read_only: bool,
    ) -> Runtime<'a> {
        Runtime {
            cat: &self.cat,
            kv,
            prefix: &self.prefix,
            chain,
            gas_used: 0,
            gas_limit,
            events: Vec::new(),
            depth: 0,
            read_only,
            dispatch: &Interpreter,
            key_buf: Vec::new(),
            row_buf: Vec::new(),
            upd_buf: Vec::new(),
            point_cache: None,
            spare_vars: Vec::new(),
            upd_key: Vec::new(),
            enc_buf: Vec::new(),
            mem_used: 0,
            mem_limit: self.mem_limit,
            guarded: 0,
            work: Vec::new(),
            results: Vec::new(),
        }
    }

    /// The memory budget of each call, deploy, upgrade and query (default
    /// [`crate::gas::MEMORY_BUDGET`]); over it a statement fails with
    /// [`SqlError::Memory`]. Part of the consensus rules when used on a chain.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.mem_limit = bytes;
        self
    }

    /// The memory budget in bytes.
    pub fn memory_limit(&self) -> usize {
        self.mem_limit
    }

    fn run_dml(
        &self,
        dml: &[(SqlPlan, crate::error::Pos)],
        kv: &mut dyn Kv,
        gas_limit: u64,
        vars: &[Value],
    ) -> Result<u64> {
        let mut rt = self.runtime(kv, None, gas_limit, false);
        for (p, _) in dml {
            rt.charge(crate::gas::SQL_BASE)?;
            rt.run_plan(p, vars)?;
        }
        Ok(rt.gas_used)
    }

    /// A fresh slot for this version's code, compiled now or queued.
    fn compile_jit(&mut self, mode: JitMode) -> Result<()> {
        match mode {
            JitMode::Now => self.jit = Arc::new(JitSlot::compiled(&self.cat)?),
            JitMode::Background => {
                self.jit = Arc::default();
                self.jit.queue(&self.cat);
            }
        }
        Ok(())
    }

    /// Whether the JIT code of this version is compiled (calls then run it).
    pub fn jit_ready(&self) -> bool {
        self.jit.ready()
    }

    /// Calls of this version that ran JIT-compiled code.
    pub fn jit_calls(&self) -> u64 {
        self.jit.calls()
    }

    /// Queues this version for the background JIT worker if it is not compiled or queued
    /// yet (a full queue earlier, a clone made before). Cheap when there is nothing to do.
    pub fn queue_jit(&self) -> bool {
        self.jit.queue(&self.cat)
    }

    /// Calls `function` with `args` (text arguments are cast to the declared
    /// parameter types). On success the writes are applied to `kv`; on any
    /// error nothing is written.
    pub fn call(
        &self,
        function: &str,
        args: &[Value],
        ctx: &mut dyn ChainContext,
        kv: &mut dyn Kv,
        gas_limit: u64,
    ) -> Result<CallOutcome> {
        self.call_with(Engine::Jit, function, args, ctx, kv, gas_limit)
    }

    /// Like [`Contract::call`] with an explicit engine.
    pub fn call_with(
        &self,
        engine: Engine,
        function: &str,
        args: &[Value],
        ctx: &mut dyn ChainContext,
        kv: &mut dyn Kv,
        gas_limit: u64,
    ) -> Result<CallOutcome> {
        // the buffers the previous call on this thread left
        with_scratch(|sc| {
            let (out, mut bufs) = {
                let mut ov = Overlay::with_buffers(kv, std::mem::take(&mut sc.overlay));
                let out = self.invoke(
                    engine,
                    function,
                    args,
                    Some(ctx),
                    &mut ov,
                    gas_limit,
                    false,
                    sc,
                );
                (out, ov.into_parts())
            };
            let out = out.and_then(|out| {
                apply_writes_recycle(kv, &mut bufs)
                    .map_err(st)
                    .map(|()| out)
            });
            if bufs.writes.capacity() <= 64 {
                bufs.writes.clear();
                sc.overlay = bufs;
            }
            out
        })
    }

    /// Runs a function without keeping its writes (a free read-only call at
    /// whatever state `kv` shows).
    pub fn view(
        &self,
        function: &str,
        args: &[Value],
        ctx: &mut dyn ChainContext,
        kv: &dyn Kv,
        gas_cap: u64,
    ) -> Result<CallOutcome> {
        let mut ov = Overlay::new(kv);
        with_scratch(|sc| {
            self.invoke(
                Engine::Jit,
                function,
                args,
                Some(ctx),
                &mut ov,
                gas_cap,
                false,
                sc,
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke<'a>(
        &'a self,
        engine: Engine,
        function: &str,
        args: &[Value],
        ctx: Option<&'a mut dyn ChainContext>,
        kv: &'a mut dyn Kv,
        gas_limit: u64,
        read_only: bool,
        sc: &mut Scratch,
    ) -> Result<CallOutcome> {
        let name = if function.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(function.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(function)
        };
        let fi = self
            .cat
            .func(&name)
            .ok_or_else(|| SqlError::Call(format!("function {function} does not exist")))?;
        let mut rt = self.runtime(kv, ctx, gas_limit, read_only);
        rt.charge(crate::gas::CALL)?;
        // the thread's scratch buffers, handed on from call to call (swapped with the new
        // runtime's empty ones: nothing to drop here)
        std::mem::swap(&mut rt.key_buf, &mut sc.key);
        std::mem::swap(&mut rt.row_buf, &mut sc.row);
        std::mem::swap(&mut rt.upd_buf, &mut sc.upd);
        std::mem::swap(&mut rt.spare_vars, &mut sc.vars);
        std::mem::swap(&mut rt.upd_key, &mut sc.upd_key);
        std::mem::swap(&mut rt.enc_buf, &mut sc.enc);
        let result = match self.cat.sigs.get(fi).and_then(|s| s.rows.as_ref()) {
            // a record function's result is its row's text form, a set-returning function's
            // its rows' text forms one per line (one column: the values themselves)
            Some(shape) => {
                rt.results.push(Vec::new());
                let r = self.run_call(engine, fi, args, &mut rt);
                let rows = rt.results.pop().unwrap_or_default();
                r.map(|_| rows_result(shape, &rows))
            }
            None => self.run_call(engine, fi, args, &mut rt),
        };
        if rt.key_buf.capacity() <= SCRATCH_KEEP
            && rt.upd_key.capacity() <= SCRATCH_KEEP
            && rt.enc_buf.capacity() <= SCRATCH_KEEP
            && small_row(&rt.row_buf)
            && small_row(&rt.upd_buf)
            && small_row(&rt.spare_vars)
        {
            std::mem::swap(&mut sc.key, &mut rt.key_buf);
            std::mem::swap(&mut sc.row, &mut rt.row_buf);
            std::mem::swap(&mut sc.upd, &mut rt.upd_buf);
            std::mem::swap(&mut sc.vars, &mut rt.spare_vars);
            std::mem::swap(&mut sc.upd_key, &mut rt.upd_key);
            std::mem::swap(&mut sc.enc, &mut rt.enc_buf);
        }
        Ok(CallOutcome {
            result: result?,
            events: rt.events,
            gas_used: rt.gas_used,
        })
    }

    /// Runs function `fi` on `engine` (the body of [`Contract::invoke`]; a row-returning
    /// function's rows go to `rt.results`).
    fn run_call<'a>(
        &'a self,
        engine: Engine,
        fi: usize,
        args: &[Value],
        rt: &mut Runtime<'a>,
    ) -> Result<Value> {
        // room for the function's variables: `init_vars` turns this vector into them. It is
        // the variables' vector an earlier call left (`Runtime::spare_vars`, FOUND first):
        // the arguments are cloned into the strings of its first slots.
        let slots = self.cat.funcs.get(fi).map_or(0, |f| f.slots.len());
        let mut v = std::mem::take(&mut rt.spare_vars);
        if !v.is_empty() {
            v.remove(0);
        }
        v.truncate(args.len());
        v.reserve(slots.max(args.len()).saturating_sub(v.len()));
        for (i, a) in args.iter().enumerate() {
            match (v.get_mut(i), a) {
                (Some(Value::Text(d)), Value::Text(s)) => d.clone_from(s),
                (Some(slot), a) => *slot = a.clone(),
                (None, a) => v.push(a.clone()),
            }
        }
        let mut v = Some(v);
        let mut args = || v.take().unwrap_or_default();
        Ok(match engine {
            Engine::Interpreter => interp::run(rt, fi, args())?,
            Engine::Jit => {
                #[cfg(feature = "jit")]
                {
                    match self.jit.program() {
                        Some(j) => {
                            let d: &dyn Dispatch = j.as_ref();
                            rt.dispatch = d;
                            if j.has(fi) {
                                self.jit.count_call();
                                j.call(fi, rt, args())?
                            } else {
                                interp::run(rt, fi, args())?
                            }
                        }
                        None => interp::run(rt, fi, args())?,
                    }
                }
                #[cfg(not(feature = "jit"))]
                {
                    let _: Option<&dyn Dispatch> = None;
                    interp::run(rt, fi, args())?
                }
            }
        })
    }

    /// Runs a read-only `SELECT` over the contract's tables, capped by `gas_cap`.
    pub fn query(&self, sql: &str, kv: &dyn Kv, gas_cap: u64) -> Result<QueryResult> {
        let stmt = parse::parse_single_statement(sql)?;
        let mut c = Compiler::for_query(&self.cat);
        let plan = c.statement(&stmt)?;
        let SqlPlan::Select(q) = plan else {
            return Err(SqlError::Permission(
                "queries must be SELECT statements".into(),
            ));
        };
        let mut ov = Overlay::new(kv);
        let mut rt = self.runtime(&mut ov, None, gas_cap, true);
        rt.charge(crate::gas::SQL_BASE)?;
        let rows = rt.select(&q, None, &[])?;
        Ok(QueryResult {
            columns: q.columns.iter().map(|c| c.0.clone()).collect(),
            rows,
            gas_used: rt.gas_used,
        })
    }

    /// Runs any single SQL statement (SELECT/INSERT/UPDATE/DELETE) as the
    /// owner would in the sandbox; writes are applied on success.
    pub fn execute(&self, sql: &str, kv: &mut dyn Kv, gas_limit: u64) -> Result<QueryResult> {
        self.execute_with(Engine::Interpreter, sql, kv, gas_limit)
    }

    /// Like [`Contract::execute`], with contract functions the statement calls run on
    /// `engine` (the JIT runs the functions it compiled; results, gas and writes are the
    /// interpreter's, which the conformance suite checks by running it both ways).
    pub fn execute_with(
        &self,
        engine: Engine,
        sql: &str,
        kv: &mut dyn Kv,
        gas_limit: u64,
    ) -> Result<QueryResult> {
        let stmt = parse::parse_single_statement(sql)?;
        let mut c = Compiler::for_query(&self.cat);
        let plan = c.statement(&stmt)?;
        let cols: Vec<String> = match &plan {
            SqlPlan::Select(q) => q.columns.iter().map(|c| c.0.clone()).collect(),
            SqlPlan::Insert { returning, .. }
            | SqlPlan::Update { returning, .. }
            | SqlPlan::Delete { returning, .. } => returning
                .as_ref()
                .map(|r| r.columns.iter().map(|c| c.0.clone()).collect())
                .unwrap_or_default(),
        };
        let (res, gas, writes) = {
            let mut ov = Overlay::new(kv);
            let mut rt = self.runtime(&mut ov, None, gas_limit, false);
            #[cfg(feature = "jit")]
            let program = match engine {
                Engine::Jit => self.jit.program(),
                Engine::Interpreter => None,
            };
            #[cfg(feature = "jit")]
            if let Some(j) = &program {
                let d: &dyn Dispatch = j.as_ref();
                rt.dispatch = d;
            }
            #[cfg(not(feature = "jit"))]
            let _ = engine;
            rt.charge(crate::gas::SQL_BASE)?;
            let r = rt.run_plan(&plan, &[])?;
            let g = rt.gas_used;
            (r, g, ov.into_writes())
        };
        apply_writes(kv, writes).map_err(st)?;
        Ok(QueryResult {
            columns: cols,
            rows: res.rows,
            gas_used: gas,
        })
    }

    /// Functions and tables with their types.
    pub fn abi(&self) -> Abi {
        Abi {
            functions: self
                .cat
                .sigs
                .iter()
                .map(|s| AbiFunction {
                    name: s.name.clone(),
                    params: s
                        .params
                        .iter()
                        .map(|(n, t)| (n.clone(), t.to_string()))
                        .collect(),
                    returns: match &s.rows {
                        Some(r) => r.describe(s.scalar_set),
                        None => s.returns.to_string(),
                    },
                })
                .collect(),
            tables: self
                .cat
                .tables
                .iter()
                .map(|t| AbiTable {
                    name: t.name.clone(),
                    columns: t
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.ty.to_string(), c.not_null))
                        .collect(),
                    primary_key: t.pk.iter().map(|&i| t.columns[i].name.clone()).collect(),
                })
                .collect(),
        }
    }

    /// The engine version the contract was deployed under (its scripts' rules).
    pub fn version(&self) -> EngineVersion {
        self.cat.version
    }

    /// The deployer.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The storage prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Names of functions that the JIT compiled (empty without the feature).
    pub fn jit_functions(&self) -> Vec<String> {
        #[cfg(feature = "jit")]
        if let Some(j) = self.jit.program() {
            return self
                .cat
                .funcs
                .iter()
                .enumerate()
                .filter(|(i, _)| j.has(*i))
                .map(|(_, f)| f.name.clone())
                .collect();
        }
        Vec::new()
    }

    /// External symbols imported by the JIT module (runtime helpers and LLVM
    /// intrinsics only); empty without the `jit` feature.
    pub fn jit_imports(&self) -> Vec<String> {
        #[cfg(feature = "jit")]
        if let Some(j) = self.jit.program() {
            return j.imported_symbols().to_vec();
        }
        Vec::new()
    }

    /// The optimised LLVM IR of the contract (empty without the `jit` feature).
    pub fn jit_ir(&self) -> String {
        #[cfg(feature = "jit")]
        if let Some(j) = self.jit.program() {
            return j.ir().to_string();
        }
        String::new()
    }

    /// The compiled catalog (for tools and tests).
    pub fn catalog(&self) -> &Catalog {
        &self.cat
    }
}

/// The call result of a row-returning function: a record's text form `(1,abc)`; a set's rows,
/// one per line (a one-column set's values as they are, NULL as an empty line).
fn rows_result(shape: &crate::ir::RowShape, rows: &[Vec<Value>]) -> Value {
    if !shape.set {
        return Value::Text(
            rows.first()
                .map_or_else(String::new, |r| crate::exec::record_text(r)),
        );
    }
    let lines: Vec<String> = rows
        .iter()
        .map(|r| match r.as_slice() {
            [v] if shape.columns.len() == 1 => v.to_text(),
            r => crate::exec::record_text(r),
        })
        .collect();
    Value::Text(lines.join("\n"))
}
