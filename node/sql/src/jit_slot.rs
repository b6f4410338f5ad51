//! Background JIT compilation. A [`JitSlot`] is shared by every clone of a contract version:
//! empty until its code is compiled, then holding the compiled program. Compilation can run
//! at once ([`JitSlot::compiled`]) or on a background worker thread ([`JitSlot::queue`]),
//! fed through a bounded queue: a chain deploys and loads contracts without compiling them
//! on the block's critical path, and calls run on the interpreter until the code is ready.
//! Both engines give the same results, errors, events, gas and writes, so which one ran a
//! call never shows in the state.
//!
//! A full queue or a failed compilation leaves the slot empty (the interpreter keeps running
//! the contract); a full queue is retried by the next [`JitSlot::queue`].

use crate::ir::Catalog;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Most contract versions waiting for the compile worker.
pub const QUEUE: usize = 64;

/// The compiled code of one contract version, once ready.
#[derive(Default)]
pub struct JitSlot {
    #[cfg(feature = "jit")]
    program: std::sync::OnceLock<Arc<crate::jit::JitProgram>>,
    queued: AtomicBool,
    failed: AtomicBool,
    calls: AtomicU64,
}

impl std::fmt::Debug for JitSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitSlot")
            .field("ready", &self.ready())
            .field("calls", &self.calls())
            .finish()
    }
}

static COMPILED: AtomicU64 = AtomicU64::new(0);
static STARTED: AtomicU64 = AtomicU64::new(0);

/// Compiles the background worker has begun since start (finished or not).
pub fn started_in_background() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

/// Contract versions compiled by the background worker since start.
pub fn compiled_in_background() -> u64 {
    COMPILED.load(Ordering::Relaxed)
}

impl JitSlot {
    /// A slot with the code compiled now (without the `jit` feature: an empty slot).
    pub fn compiled(cat: &Arc<Catalog>) -> crate::error::Result<Self> {
        let s = Self::default();
        #[cfg(feature = "jit")]
        {
            let _ = s
                .program
                .set(Arc::new(crate::jit::JitProgram::compile(cat)?));
        }
        #[cfg(not(feature = "jit"))]
        let _ = cat;
        Ok(s)
    }

    /// Whether the compiled code is ready.
    pub fn ready(&self) -> bool {
        #[cfg(feature = "jit")]
        {
            self.program.get().is_some()
        }
        #[cfg(not(feature = "jit"))]
        {
            false
        }
    }

    /// Whether compiling failed (the interpreter runs the contract for good).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Calls that ran compiled code.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    #[cfg(feature = "jit")]
    pub(crate) fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The compiled program, when ready.
    #[cfg(feature = "jit")]
    pub fn program(&self) -> Option<&Arc<crate::jit::JitProgram>> {
        self.program.get()
    }

    /// Hands the slot to the background worker unless it is ready, failed or already
    /// queued. Returns whether it is (now) waiting for or done with compilation; `false`
    /// when the queue was full (call again later) or there is no JIT.
    pub fn queue(self: &Arc<Self>, cat: &Arc<Catalog>) -> bool {
        if self.ready() || self.failed() {
            return true;
        }
        if self.queued.swap(true, Ordering::AcqRel) {
            return true;
        }
        let sent = worker::submit(cat.clone(), self.clone());
        if !sent {
            self.queued.store(false, Ordering::Release);
        }
        sent
    }
}

#[cfg(feature = "jit")]
mod worker {
    use super::*;
    use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
    use std::sync::{Mutex, OnceLock};

    type Job = (Arc<Catalog>, Arc<JitSlot>);

    /// Held by the worker while it compiles, and taken for good by [`at_exit`]: the process's
    /// exit runs LLVM's static destructors (its pass registry among them), and a compile
    /// still running then crashes the exiting process (SIGSEGV/SIGABRT after a clean exit).
    static GATE: Mutex<()> = Mutex::new(());
    /// Set by the first run of [`at_exit`].
    static STOPPING: AtomicBool = AtomicBool::new(false);
    /// Longest an exiting process waits for the compile in progress.
    const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

    extern "C" {
        /// The C library's `atexit(3)`: hooks run at `exit`, in reverse order of
        /// registration, before the destructors registered earlier.
        fn atexit(hook: extern "C" fn()) -> std::ffi::c_int;
    }

    /// At `exit`: waits (at most [`EXIT_WAIT`]) for the compile in progress and keeps the
    /// worker from starting another, so LLVM's statics are destroyed with no compile running.
    /// Registered more than once (see [`sender`]); runs its course once.
    extern "C" fn at_exit() {
        if STOPPING.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = std::time::Instant::now() + EXIT_WAIT;
        loop {
            match GATE.try_lock() {
                Ok(g) => return std::mem::forget(g),
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    return std::mem::forget(p.into_inner())
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    if std::time::Instant::now() >= deadline {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }

    fn register_exit_hook() {
        // SAFETY: `atexit` stores a plain function pointer to a function with no captured
        // state, callable at any time; a failed registration (returns non-zero) only loses
        // the wait at exit.
        unsafe {
            atexit(at_exit);
        }
    }

    /// The contract [`warm_up`] compiles: Figure 6's shape (a table, a function with
    /// branches, a select, an insert, an update) and a resolver's casts.
    const WARM_UP: &str = "CREATE TABLE w (k TEXT PRIMARY KEY, v BIGINT);
CREATE FUNCTION f(a TEXT, n BIGINT) RETURNS TEXT AS $$
DECLARE x BIGINT;
BEGIN
  SELECT v INTO x FROM w WHERE k = a;
  IF NOT FOUND THEN
    INSERT INTO w VALUES (a, n);
    RETURN 'new';
  END IF;
  IF x < n THEN
    UPDATE w SET v = v + n WHERE k = a;
  END IF;
  RETURN CAST(CAST(a AS BIGINT) + x AS TEXT);
END $$;";

    /// Compiles a small contract on the calling thread before the worker exists. LLVM
    /// creates some statics at their first use and registers their destructors then; the
    /// exit hook registered after this runs before those destructors, so the worker's first
    /// compile is covered too (without this, a process exiting during its first background
    /// compile crashed: the statics went first). A failure here only loses that cover.
    fn warm_up() -> bool {
        let mut cat = Catalog::default();
        crate::compile::apply_script(&mut cat, WARM_UP, false).is_ok()
            && crate::jit::JitProgram::compile(&Arc::new(cat)).is_ok()
    }

    #[cfg(test)]
    #[test]
    fn the_warm_up_contract_compiles() {
        assert!(warm_up());
    }

    fn sender() -> Option<&'static Mutex<SyncSender<Job>>> {
        static S: OnceLock<Option<Mutex<SyncSender<Job>>>> = OnceLock::new();
        S.get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(QUEUE);
            let _ = warm_up();
            register_exit_hook();
            std::thread::Builder::new()
                .name("aergo-sql-jit".into())
                .stack_size(16 << 20)
                .spawn(move || {
                    while let Ok((cat, slot)) = rx.recv() {
                        // Blocks for good once the process exits (at_exit holds the gate).
                        let Ok(_running) = GATE.lock() else {
                            return;
                        };
                        if STOPPING.load(Ordering::Acquire) {
                            return;
                        }
                        STARTED.fetch_add(1, Ordering::Relaxed);
                        match crate::jit::JitProgram::compile(&cat) {
                            Ok(p) => {
                                let _ = slot.program.set(Arc::new(p));
                                COMPILED.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => slot.failed.store(true, Ordering::Relaxed),
                        }
                        // A code path the warm-up missed may have created more of
                        // LLVM's statics: the hook registered again now runs before them
                        // too (it runs its course once; each registration is a few bytes).
                        register_exit_hook();
                    }
                })
                .ok()
                .map(|_| Mutex::new(tx))
        })
        .as_ref()
    }

    pub(super) fn submit(cat: Arc<Catalog>, slot: Arc<JitSlot>) -> bool {
        let Some(s) = sender() else {
            return false;
        };
        let Ok(s) = s.lock() else {
            return false;
        };
        match s.try_send((cat, slot)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

#[cfg(not(feature = "jit"))]
mod worker {
    use super::*;
    pub(super) fn submit(_: Arc<Catalog>, _: Arc<JitSlot>) -> bool {
        false
    }
}
