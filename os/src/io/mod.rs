//! File I/O service: positioned reads, full writes and `fdatasync` through io_uring, with a
//! std fallback.
//!
//! [`IoService::start`] tries to set up an io_uring instance owned by a dedicated thread
//! (see [`uring`]). Callers hand requests to that thread over a channel and get the result back
//! on a oneshot; the thread keeps every buffer and file handle alive until the kernel has
//! completed the operation, so dropping a caller's future never frees memory the kernel still
//! writes to. Many operations are in flight at once (up to [`IoConfig::queue_depth`]).
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

mod uring;

pub use uring::DIRECT_ALIGN;

use serde::Serialize;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
}

#[derive(Default)]
pub(crate) struct Counters {
    submitted: AtomicU64,
    completed: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Counters {
    fn submit(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }
    fn complete(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }
    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
    }
    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
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

impl IoService {
    /// Starts the service. Never fails: when io_uring cannot be used (refused by the kernel or
    /// a seccomp policy, missing opcodes, `AERGO_IO=std`, or `cfg.force_std`) it falls back to
    /// std positional I/O and logs which backend runs and why.
    pub fn start(cfg: IoConfig) -> IoService {
        let counters = Arc::new(Counters::default());
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
            None => match uring::Handle::start(cfg.queue_depth.clamp(1, 4096), counters.clone()) {
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
                queue_depth = cfg.queue_depth,
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
        match &self.inner.engine {
            Engine::Uring(h) => h.read_at(file.clone(), offset, len).await,
            Engine::Std => {
                let (f, c) = (file.clone(), self.inner.counters.clone());
                blocking(move || std_read_at(&c, &f, offset, len)).await
            }
        }
    }

    /// Reads `len` bytes at `offset` into a buffer aligned for `O_DIRECT`, for files opened
    /// with `O_DIRECT` (cold reads that bypass the page cache). `offset` and `len` must be
    /// multiples of [`DIRECT_ALIGN`]; the result is shorter only at end of file.
    pub async fn read_at_direct(
        &self,
        file: &Arc<File>,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, IoError> {
        check_direct(offset, len)?;
        match &self.inner.engine {
            Engine::Uring(h) => h.read_direct(file.clone(), offset, len).await,
            Engine::Std => {
                let (f, c) = (file.clone(), self.inner.counters.clone());
                blocking(move || std_read_direct(&c, &f, offset, len)).await
            }
        }
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
        match &self.inner.engine {
            Engine::Uring(h) => h.read_direct_blocking(file.clone(), offset, len),
            Engine::Std => std_read_direct(&self.inner.counters, file, offset, len),
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
        match &self.inner.engine {
            Engine::Uring(h) => h.read_at_blocking(file.clone(), offset, len),
            Engine::Std => std_read_at(&self.inner.counters, file, offset, len),
        }
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

fn std_read_at(c: &Counters, file: &File, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
    let _op = StdOp::new(c);
    let mut buf = vec![0u8; len];
    let mut done = 0usize;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IoError::os("read", e)),
        }
    }
    buf.truncate(done);
    Ok(buf)
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

fn std_read_direct(c: &Counters, file: &File, offset: u64, len: usize) -> Result<Vec<u8>, IoError> {
    let _op = StdOp::new(c);
    let mut buf = vec![0u8; len + DIRECT_ALIGN];
    let pad = (DIRECT_ALIGN - (buf.as_ptr() as usize % DIRECT_ALIGN)) % DIRECT_ALIGN;
    let n = loop {
        match file.read_at(&mut buf[pad..pad + len], offset) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IoError::os("read", e)),
        }
    };
    buf.truncate(pad + n);
    buf.drain(..pad);
    Ok(buf)
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
