//! File I/O service: positioned reads, full writes and `fdatasync` through io_uring, with a
//! std fallback.
//!
//! [`IoService::start`] tries to set up an io_uring instance owned by a dedicated thread
//! (see the private `uring` module). Callers hand requests to that thread over a channel and
//! get the result back on a oneshot; the thread keeps every buffer and file handle alive until
//! the kernel has completed the operation, so dropping a caller's future never frees memory
//! the kernel still writes to. Many operations are in flight at once (up to
//! [`IoConfig::queue_depth`]).
//!
//! When the kernel or a sandbox refuses io_uring (`ENOSYS`, `EPERM` from seccomp, missing
//! opcodes), or when `AERGO_IO=std` is set, or [`IoConfig::force_std`] is true, the service runs
//! the same operations with positional std I/O (`pread`/`pwrite`/`fdatasync`), on tokio's
//! blocking pool for async callers. The choice and its reason are logged with `tracing::warn!`
//! (`info!` for io_uring) and reported by [`IoService::backend`] and
//! [`IoService::fallback_reason`].
//!
//! Semantics shared by both backends:
//! - `read_at` loops on short reads and returns fewer bytes than asked only at end of file;
//! - `write_at` writes every byte (looping on short writes) or fails;
//! - `fsync` is `fdatasync`: data and the metadata needed to read it back (file size).

mod buf;
mod local;
mod uring;

pub use buf::{DirectBuf, DIRECT_ALIGN};

use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The result of an operation: for reads, the bytes read.
type Res = Result<buf::Buf, IoError>;

/// Which backend an [`IoService`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// A dedicated thread owning an io_uring instance.
    IoUring,
    /// Positional std I/O (`pread`/`pwrite`/`fdatasync`).
    Std,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::IoUring => "io_uring",
            Backend::Std => "std",
        })
    }
}

/// Start-up options of an [`IoService`].
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// Use the std backend even when io_uring is available.
    pub force_std: bool,
    /// Maximum number of operations in the kernel at once (io_uring backend). Clamped to 1..=4096.
    pub queue_depth: u32,
}

impl Default for IoConfig {
    fn default() -> Self {
        Self {
            force_std: false,
            queue_depth: 256,
        }
    }
}

/// Errors of the I/O service.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The operating system reported an error for this operation.
    #[error("{op} failed: {source}")]
    Os {
        /// `read`, `write` or `fsync`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel accepted no byte of a write (a zero-length completion).
    #[error("write returned 0 bytes at offset {offset}")]
    WriteZero {
        /// Offset at which no progress was made.
        offset: u64,
    },
    /// The service's thread has stopped (it only stops when every handle is dropped, or if
    /// the ring failed irrecoverably).
    #[error("I/O service is shut down")]
    Shutdown,
    /// The blocking pool could not run the operation (std backend in async context).
    #[error("blocking I/O task failed: {0}")]
    Join(String),
    /// An O_DIRECT read whose offset or length is not a multiple of [`DIRECT_ALIGN`].
    #[error("direct read at {offset} of {len} bytes is not {DIRECT_ALIGN}-byte aligned")]
    Unaligned {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: usize,
    },
    /// A request too large for one kernel operation.
    #[error("request of {0} bytes is too large")]
    TooLarge(usize),
}

impl IoError {
    fn os(op: &'static str, source: std::io::Error) -> Self {
        IoError::Os { op, source }
    }

    /// The raw OS error number, when this is an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Counters of an [`IoService`], for `/status` pages and tests.
#[derive(Debug, Clone, Serialize)]
pub struct IoStats {
    /// The backend in use.
    pub backend: Backend,
    /// Operations accepted (each read/write/fsync call counts once).
    pub submitted: u64,
    /// Operations finished (successfully or not).
    pub completed: u64,
    /// Operations currently in flight.
    pub in_flight: u64,
    /// The largest number of operations that were in flight at the same time.
    pub max_in_flight: u64,
    /// Reads submitted from the caller's own thread (io_uring backend: a ring owned by that
    /// thread) instead of through the ring thread.
    pub caller_thread_reads: u64,
}

pub(crate) struct Counters {
    submitted: AtomicU64,
    completed: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    caller_thread_reads: AtomicU64,
    /// The most operations in flight at once (io_uring backend: the queue depth).
    limit: u64,
    /// The ring thread has requests waiting for budget.
    starved: AtomicBool,
    /// The ring thread, woken when budget is released while it is starved.
    central: OnceLock<Arc<uring::Shared>>,
}

impl Counters {
    fn new(limit: u64) -> Counters {
        Counters {
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            caller_thread_reads: AtomicU64::new(0),
            limit,
            starved: AtomicBool::new(false),
            central: OnceLock::new(),
        }
    }
    /// Takes one unit of the in-flight budget, if any is left.
    fn try_enter(&self) -> bool {
        let mut cur = self.in_flight.load(Ordering::SeqCst);
        loop {
            if cur >= self.limit {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    self.max_in_flight.fetch_max(cur + 1, Ordering::Relaxed);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }
    fn submit(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }
    /// An operation accepted by a caller-thread ring.
    fn submit_local(&self) {
        self.submit();
        self.caller_thread_reads.fetch_add(1, Ordering::Relaxed);
    }
    fn complete(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
    }
    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.starved.load(Ordering::SeqCst) {
            if let Some(c) = self.central.get() {
                c.wake();
            }
        }
    }
}

/// RAII guard counting one std-backend operation in flight.
struct StdOp<'a>(&'a Counters);

impl<'a> StdOp<'a> {
    fn new(c: &'a Counters) -> Self {
        c.submit();
        c.enter();
        StdOp(c)
    }
}

impl Drop for StdOp<'_> {
    fn drop(&mut self) {
        self.0.leave();
        self.0.complete();
    }
}

enum Engine {
    Uring(uring::Handle),
    Std,
}

struct Inner {
    engine: Engine,
    counters: Arc<Counters>,
    fallback_reason: Option<String>,
}

/// Handle to the file I/O service. Cloning is cheap (an `Arc`); the service's thread stops
/// once the last handle is dropped, after the operations already submitted have completed.
#[derive(Clone)]
pub struct IoService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IoService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoService")
            .field("backend", &self.backend())
            .field("fallback_reason", &self.inner.fallback_reason)
            .finish()
    }
}

/// The largest single operation accepted (the kernel caps one read/write near 2 GiB).
const MAX_OP: usize = 0x7fff_f000;

/// The length field of one io_uring read or write. Operations are at most [`MAX_OP`] bytes
/// (checked when they are accepted), which fits a u32; a longer remainder would be capped at
/// `MAX_OP` and the rest resubmitted like any short transfer.
fn sqe_len(len: usize) -> u32 {
    u32::try_from(len.min(MAX_OP)).unwrap_or(u32::MAX)
}

impl IoService {
    /// Starts the service. Never fails: when io_uring cannot be used (refused by the kernel or
    /// a seccomp policy, missing opcodes, `AERGO_IO=std`, or `cfg.force_std`) it falls back to
    /// std positional I/O and logs which backend runs and why.
    pub fn start(cfg: IoConfig) -> IoService {
        let queue_depth = cfg.queue_depth.clamp(1, 4096);
        let counters = Arc::new(Counters::new(queue_depth as u64));
        let env_std = std::env::var("AERGO_IO")
            .map(|v| v.eq_ignore_ascii_case("std"))
            .unwrap_or(false);
        let reason = if cfg.force_std {
            Some("std backend forced by configuration".to_string())
        } else if env_std {
            Some("std backend forced by AERGO_IO=std".to_string())
        } else {
            None
        };
        let (engine, fallback_reason) = match reason {
            Some(r) => (Engine::Std, Some(r)),
            None => match uring::Handle::start(queue_depth, counters.clone()) {
                Ok(h) => (Engine::Uring(h), None),
                Err(e) => (Engine::Std, Some(format!("io_uring unavailable: {e}"))),
            },
        };
        match &fallback_reason {
            Some(r) => {
                tracing::warn!(backend = "std", reason = %r, "I/O service: using std positional I/O")
            }
            None => tracing::info!(
                backend = "io_uring",
                queue_depth,
                "I/O service: using io_uring"
            ),
        }
        IoService {
            inner: Arc::new(Inner {
                engine,
                counters,
                fallback_reason,
            }),
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.inner.engine {
            Engine::Uring(_) => Backend::IoUring,
            Engine::Std => Backend::Std,
        }
    }

    /// Why the std backend runs, or `None` when io_uring runs.
    pub fn fallback_reason(&self) -> Option<String> {
        self.inner.fallback_reason.clone()
    }

    /// Current counters.
    pub fn stats(&self) -> IoStats {
        let c = &self.inner.counters;
        IoStats {
            backend: self.backend(),
            submitted: c.submitted.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
            max_in_flight: c.max_in_flight.load(Ordering::Relaxed),
            caller_thread_reads: c.caller_thread_reads.load(Ordering::Relaxed),
        }
    }

    /// Reads up to `len` bytes at `offset`. Loops on short reads: the result is shorter than
    /// `len` only when end of file was reached.
    pub async fn read_at(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, IoError> {
        if len > MAX_OP {
            return Err(IoError::TooLarge(len));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(self.read(file, offset, len, false).await?.into_vec())
    }

    /// Reads `len` bytes at `offset` into a buffer aligned for `O_DIRECT`, for files opened
    /// with `O_DIRECT` (cold reads that bypass the page cache). `offset` and `len` must be
    /// multiples of [`DIRECT_ALIGN`]; the result is shorter only at end of file. Returns the
    /// aligned buffer itself (no copy); [`IoService::read_at_direct`] copies into a `Vec`.
    pub async fn read_direct(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> Result<DirectBuf, IoError> {
        check_direct(offset, len)?;
        self.read(file, offset, len, true).await?.into_direct()
    }

    /// Like [`IoService::read_direct`], returning a copy of the bytes in a `Vec`.
    pub async fn read_at_direct(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, IoError> {
        check_direct(offset, len)?;
        Ok(self.read(file, offset, len, true).await?.into_vec())
    }

    /// Blocking form of [`IoService::read_direct`] (same caveat as
    /// [`IoService::read_at_blocking`]).
    pub fn read_direct_blocking(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> Result<DirectBuf, IoError> {
        check_direct(offset, len)?;
        self.read_blocking(file, offset, len, true)?.into_direct()
    }

    /// Blocking form of [`IoService::read_at_direct`] (same caveat as
    /// [`IoService::read_at_blocking`]).
    pub fn read_at_direct_blocking(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, IoError> {
        check_direct(offset, len)?;
        Ok(self.read_blocking(file, offset, len, true)?.into_vec())
    }

    /// A read, on io_uring from the calling thread's ring when it can take it (else through
    /// the ring thread), or on the blocking pool with std I/O.
    async fn read(&self, file: &Arc<File>, offset: u64, len: usize, direct: bool) -> Res {
        match &self.inner.engine {
            Engine::Uring(h) => {
                match local::start_read(file, offset, len, direct, &self.inner.counters) {
                    Some(op) => op.await,
                    None => h.read(file.clone(), offset, len, direct).await,
                }
            }
            Engine::Std => {
                let (f, c) = (file.clone(), self.inner.counters.clone());
                blocking(move || std_read(&c, &f, offset, len, direct)).await
            }
        }
    }

    /// Blocking form of [`IoService::read`]: the calling thread's private ring when it has
    /// one, else the ring thread, or std I/O.
    fn read_blocking(&self, file: &Arc<File>, offset: u64, len: usize, direct: bool) -> Res {
        match &self.inner.engine {
            Engine::Uring(h) => {
                local::read_blocking(file, offset, len, direct, &self.inner.counters)
                    .unwrap_or_else(|| h.read_blocking(file.clone(), offset, len, direct))
            }
            Engine::Std => std_read(&self.inner.counters, file, offset, len, direct),
        }
    }

    /// Writes all of `data` at `offset`.
    pub async fn write_at(
        &self,
        file: &Arc<File>,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), IoError> {
        if data.len() > MAX_OP {
            return Err(IoError::TooLarge(data.len()));
        }
        if data.is_empty() {
            return Ok(());
        }
        match &self.inner.engine {
            Engine::Uring(h) => h.write_at(file.clone(), offset, data).await,
            Engine::Std => {
                let (f, c) = (file.clone(), self.inner.counters.clone());
                blocking(move || std_write_at(&c, &f, offset, &data)).await
            }
        }
    }

    /// Flushes the file's data (and the metadata needed to read it, e.g. its size) to stable
    /// storage: `fdatasync` semantics.
    pub async fn fsync(&self, file: &Arc<File>) -> Result<(), IoError> {
        match &self.inner.engine {
            Engine::Uring(h) => h.fsync(file.clone()).await,
            Engine::Std => {
                let (f, c) = (file.clone(), self.inner.counters.clone());
                blocking(move || std_fsync(&c, &f)).await
            }
        }
    }

    /// Blocking form of [`IoService::read_at`]. It parks the calling thread until the
    /// operation completes: do not call it on a tokio runtime worker thread except inside
    /// `tokio::task::block_in_place` or `spawn_blocking`.
    pub fn read_at_blocking(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, IoError> {
        if len > MAX_OP {
            return Err(IoError::TooLarge(len));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(self.read_blocking(file, offset, len, false)?.into_vec())
    }

    /// Blocking form of [`IoService::write_at`] (same caveat as [`IoService::read_at_blocking`]).
    pub fn write_at_blocking(
        &self,
        file: &Arc<File>,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), IoError> {
        if data.len() > MAX_OP {
            return Err(IoError::TooLarge(data.len()));
        }
        if data.is_empty() {
            return Ok(());
        }
        match &self.inner.engine {
            Engine::Uring(h) => h.write_at_blocking(file.clone(), offset, data),
            Engine::Std => std_write_at(&self.inner.counters, file, offset, &data),
        }
    }

    /// Blocking form of [`IoService::fsync`] (same caveat as [`IoService::read_at_blocking`]).
    pub fn fsync_blocking(&self, file: &Arc<File>) -> Result<(), IoError> {
        match &self.inner.engine {
            Engine::Uring(h) => h.fsync_blocking(file.clone()),
            Engine::Std => std_fsync(&self.inner.counters, file),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IoError> + Send + 'static,
) -> Result<T, IoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IoError::Join(e.to_string()))?
}

/// A positional read with std I/O: loops on short reads, except O_DIRECT ones (a short direct
/// read is end of file; a retry would be unaligned).
fn std_read(c: &Counters, file: &File, offset: u64, len: usize, direct: bool) -> Res {
    use std::os::fd::AsRawFd;
    let _op = StdOp::new(c);
    let mut buf = buf::Buf::for_read(len, direct)?;
    let mut done = 0usize;
    while done < len {
        let (ptr, room) = buf.at(done);
        // SAFETY: `ptr` points to `room` writable bytes of `buf`, which outlives the call.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                ptr.cast(),
                room,
                (offset + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(IoError::os("read", e));
        }
        done += n as usize;
        if n == 0 || direct {
            break;
        }
    }
    Ok(buf.finish_read(done))
}

fn check_direct(offset: u64, len: usize) -> Result<(), IoError> {
    if len > MAX_OP {
        return Err(IoError::TooLarge(len));
    }
    if !offset.is_multiple_of(DIRECT_ALIGN as u64) || !len.is_multiple_of(DIRECT_ALIGN) || len == 0
    {
        return Err(IoError::Unaligned { offset, len });
    }
    Ok(())
}

fn std_write_at(c: &Counters, file: &File, offset: u64, data: &[u8]) -> Result<(), IoError> {
    let _op = StdOp::new(c);
    let mut done = 0usize;
    while done < data.len() {
        match file.write_at(&data[done..], offset + done as u64) {
            Ok(0) => {
                return Err(IoError::WriteZero {
                    offset: offset + done as u64,
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IoError::os("write", e)),
        }
    }
    Ok(())
}

fn std_fsync(c: &Counters, file: &File) -> Result<(), IoError> {
    let _op = StdOp::new(c);
    loop {
        match file.sync_data() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IoError::os("fsync", e)),
        }
    }
}

#[cfg(test)]
mod tests;
