//! The io_uring backend: one thread owns the ring and does all submission and completion.
//!
//! Callers send a [`Request`] over an mpsc channel. The ring thread moves it into a slab slot
//! (the slot owns the buffer and an `Arc<File>`, so neither the memory nor the descriptor can
//! go away while the kernel uses them), pushes an SQE whose `user_data` is the slot index, and
//! answers on the request's oneshot when the operation has finished. Short reads and writes
//! are resubmitted for the remainder; `EINTR`/`EAGAIN` completions are retried.
//!
//! Wake-ups: the thread keeps a `POLL_ADD` armed on an eventfd. Before it blocks in
//! `io_uring_enter` it sets `sleeping` and checks the channel once more; a caller that finds
//! `sleeping` set after sending writes the eventfd. So a caller pays the eventfd write only
//! when the thread is actually asleep.
//!
//! Shutdown: dropping the last [`Handle`] closes the channel and writes the eventfd; the thread
//! finishes every operation already in the ring, then exits and is joined.

use super::buf::Buf;
use super::{Counters, IoError, Res};
use io_uring::{opcode, types, IoUring};
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// `user_data` of the eventfd poll.
const WAKE: u64 = u64::MAX;

enum Reply {
    Async(tokio::sync::oneshot::Sender<Res>),
    Sync(mpsc::SyncSender<Res>),
}

impl Reply {
    fn send(self, r: Res) {
        // The caller may have gone away (its future dropped): nothing to do then.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
            Reply::Sync(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

enum Kind {
    Read,
    Write,
    Fsync,
}

struct Request {
    kind: Kind,
    file: Arc<File>,
    offset: u64,
    /// Read: the destination, of the requested length (aligned for O_DIRECT). Write: the
    /// data. Fsync: empty.
    buf: Buf,
    reply: Reply,
}

/// A request owned by the ring thread while the kernel works on it.
struct Op {
    req: Request,
    /// Bytes already transferred.
    done: usize,
}

pub(super) struct Shared {
    sleeping: AtomicBool,
    eventfd: OwnedFd,
}

impl Shared {
    /// Wakes the ring thread (or makes its next wait return at once).
    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own. EAGAIN (counter
        // saturated) means a wake-up is already pending, which is all we need.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// Owner-side handle of the ring thread.
pub(super) struct Handle {
    tx: Option<mpsc::Sender<Request>>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Sets up the ring (probing the opcodes we need and running a no-op through it) and
    /// starts the thread. Any failure is returned so the caller can fall back to std I/O.
    pub(super) fn start(queue_depth: u32, counters: Arc<Counters>) -> std::io::Result<Handle> {
        // SAFETY: eventfd(2) returns a new descriptor or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh descriptor we own.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let shared = Arc::new(Shared {
            sleeping: AtomicBool::new(false),
            eventfd,
        });
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let worker_shared = shared.clone();
        // Operations of caller-thread rings release budget the ring thread may be waiting for.
        let _ = counters.central.set(shared.clone());
        // The ring is created on the thread that will drive it (single issuer).
        let thread = std::thread::Builder::new()
            .name("aergo-io-uring".into())
            .spawn(move || {
                let ring = match setup_ring(queue_depth) {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok(()));
                        r
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                Worker {
                    ring,
                    rx,
                    shared: worker_shared,
                    counters,
                    qd: queue_depth as usize,
                    slab: Vec::with_capacity(queue_depth as usize),
                    free: Vec::new(),
                    live: 0,
                    pending: VecDeque::new(),
                    retry: Vec::new(),
                    armed: false,
                    closed: false,
                }
                .run()
            })?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("io_uring thread died at start")));
        if let Err(e) = ready {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Handle {
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    fn send(&self, req: Request) -> Result<(), IoError> {
        let tx = self.tx.as_ref().ok_or(IoError::Shutdown)?;
        tx.send(req).map_err(|_| IoError::Shutdown)?;
        fence(Ordering::SeqCst);
        if self.shared.sleeping.swap(false, Ordering::SeqCst) {
            self.shared.wake();
        }
        Ok(())
    }

    async fn call(&self, kind: Kind, file: Arc<File>, offset: u64, buf: Buf) -> Res {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Request {
            kind,
            file,
            offset,
            buf,
            reply: Reply::Async(tx),
        })?;
        rx.await.map_err(|_| IoError::Shutdown)?
    }

    fn call_blocking(&self, kind: Kind, file: Arc<File>, offset: u64, buf: Buf) -> Res {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request {
            kind,
            file,
            offset,
            buf,
            reply: Reply::Sync(tx),
        })?;
        rx.recv().map_err(|_| IoError::Shutdown)?
    }

    /// Reads `len` bytes at `offset` (O_DIRECT into an aligned buffer when `direct`).
    pub(super) async fn read(&self, file: Arc<File>, offset: u64, len: usize, direct: bool) -> Res {
        let buf = Buf::for_read(len, direct)?;
        self.call(Kind::Read, file, offset, buf).await
    }
    pub(super) async fn write_at(
        &self,
        file: Arc<File>,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), IoError> {
        self.call(Kind::Write, file, offset, Buf::Plain(data))
            .await
            .map(drop)
    }
    pub(super) async fn fsync(&self, file: Arc<File>) -> Result<(), IoError> {
        self.call(Kind::Fsync, file, 0, Buf::Plain(Vec::new()))
            .await
            .map(drop)
    }
    /// Blocking form of [`Handle::read`].
    pub(super) fn read_blocking(
        &self,
        file: Arc<File>,
        offset: u64,
        len: usize,
        direct: bool,
    ) -> Res {
        let buf = Buf::for_read(len, direct)?;
        self.call_blocking(Kind::Read, file, offset, buf)
    }
    pub(super) fn write_at_blocking(
        &self,
        file: Arc<File>,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), IoError> {
        self.call_blocking(Kind::Write, file, offset, Buf::Plain(data))
            .map(drop)
    }
    pub(super) fn fsync_blocking(&self, file: Arc<File>) -> Result<(), IoError> {
        self.call_blocking(Kind::Fsync, file, 0, Buf::Plain(Vec::new()))
            .map(drop)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        drop(self.tx.take());
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("io_uring thread panicked");
            }
        }
    }
}

struct Worker {
    ring: IoUring,
    rx: mpsc::Receiver<Request>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    qd: usize,
    slab: Vec<Option<Op>>,
    free: Vec<usize>,
    /// Occupied slab slots.
    live: usize,
    /// Accepted requests waiting for a slot.
    pending: VecDeque<Request>,
    /// Slots whose (next) SQE could not be pushed yet.
    retry: Vec<usize>,
    armed: bool,
    closed: bool,
}

impl Worker {
    fn run(mut self) {
        let mut failures = 0u32;
        loop {
            self.intake();
            self.fill();
            if self.closed && self.live == 0 && self.pending.is_empty() {
                break;
            }
            // Armed while callers may send, and while requests wait for budget (a release by a
            // caller-thread ring wakes us through the eventfd).
            if (!self.closed || !self.pending.is_empty()) && !self.armed {
                self.arm();
            }
            // Announce that we are about to sleep, then look at the channel one last time.
            self.shared.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            match self.rx.try_recv() {
                Ok(req) => {
                    self.shared.sleeping.store(false, Ordering::SeqCst);
                    self.accept(req);
                    continue;
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    if !self.closed {
                        self.closed = true;
                        self.shared.sleeping.store(false, Ordering::SeqCst);
                        continue;
                    }
                }
            }
            let waited = self.ring.submit_and_wait(1);
            self.shared.sleeping.store(false, Ordering::SeqCst);
            match waited {
                Ok(_) => failures = 0,
                Err(e) => match e.raw_os_error() {
                    // Interrupted, completion queue busy, or kernel short of memory: reap and retry.
                    Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                    _ => {
                        failures += 1;
                        tracing::error!(error = %e, failures, "io_uring_enter failed");
                        if failures >= 100 {
                            self.abandon(&e);
                            return;
                        }
                        std::thread::yield_now();
                    }
                },
            }
            self.reap();
        }
    }

    /// The ring is unusable: answer every request with an error. Operations the kernel may
    /// still hold keep their buffers (leaked on purpose) so the kernel never writes to freed
    /// memory.
    fn abandon(&mut self, e: &std::io::Error) {
        let msg = format!("io_uring failed: {e}");
        for op in self.slab.drain(..).flatten() {
            let Op { req, .. } = op;
            let Request {
                buf, file, reply, ..
            } = req;
            std::mem::forget(buf);
            std::mem::forget(file);
            reply.send(Err(IoError::os(
                "io_uring",
                std::io::Error::other(msg.clone()),
            )));
            self.counters.leave();
            self.counters.complete();
        }
        while let Some(req) = self.pending.pop_front() {
            req.reply.send(Err(IoError::os(
                "io_uring",
                std::io::Error::other(msg.clone()),
            )));
            self.counters.complete();
        }
    }

    fn accept(&mut self, req: Request) {
        self.counters.submit();
        self.pending.push_back(req);
    }

    fn intake(&mut self) {
        if self.closed {
            return;
        }
        loop {
            match self.rx.try_recv() {
                Ok(req) => self.accept(req),
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Moves pending requests into slots (up to the queue depth) and pushes their SQEs.
    fn fill(&mut self) {
        let retry = std::mem::take(&mut self.retry);
        for idx in retry {
            self.push(idx);
        }
        while self.live < self.qd && !self.pending.is_empty() {
            // The service's budget is shared with the caller-thread rings; when they hold it,
            // say so before looking again, so the next release wakes this thread.
            if !self.counters.try_enter() {
                self.counters.starved.store(true, Ordering::SeqCst);
                if !self.counters.try_enter() {
                    break;
                }
            }
            self.counters.starved.store(false, Ordering::SeqCst);
            let Some(req) = self.pending.pop_front() else {
                self.counters.leave();
                break;
            };
            let op = Op { req, done: 0 };
            let idx = match self.free.pop() {
                Some(i) => {
                    self.slab[i] = Some(op);
                    i
                }
                None => {
                    self.slab.push(Some(op));
                    self.slab.len() - 1
                }
            };
            self.live += 1;
            self.push(idx);
        }
    }

    /// Pushes the next SQE for slot `idx`; if the submission queue is full, submits first.
    fn push(&mut self, idx: usize) {
        let Some(Some(op)) = self.slab.get_mut(idx) else {
            return;
        };
        let fd = types::Fd(op.req.file.as_raw_fd());
        let off = op.req.offset + op.done as u64;
        let entry = match op.req.kind {
            Kind::Read => {
                let (ptr, len) = op.req.buf.at(op.done);
                opcode::Read::new(fd, ptr, super::sqe_len(len))
                    .offset(off)
                    .build()
            }
            Kind::Write => {
                let (ptr, len) = op.req.buf.at(op.done);
                opcode::Write::new(fd, ptr.cast_const(), super::sqe_len(len))
                    .offset(off)
                    .build()
            }
            Kind::Fsync => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(idx as u64);
        if !self.push_entry(&entry) {
            self.retry.push(idx);
        }
    }

    fn push_entry(&mut self, entry: &io_uring::squeue::Entry) -> bool {
        for _ in 0..2 {
            // SAFETY: the entry points into a buffer owned by a slab slot (or no memory for
            // fsync/poll); the slot is only freed after the entry's completion is reaped, and
            // the Arc<File> in the slot keeps the descriptor open until then.
            let pushed = unsafe { self.ring.submission().push(entry).is_ok() };
            if pushed {
                return true;
            }
            // Queue full: hand what we have to the kernel and try once more.
            if let Err(e) = self.ring.submit() {
                tracing::debug!(error = %e, "io_uring submit while queue full");
            }
        }
        false
    }

    fn arm(&mut self) {
        let fd = types::Fd(self.shared.eventfd.as_raw_fd());
        let entry = opcode::PollAdd::new(fd, libc::POLLIN as u32)
            .build()
            .user_data(WAKE);
        self.armed = self.push_entry(&entry);
    }

    fn reap(&mut self) {
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in done {
            if ud == WAKE {
                self.armed = false;
                drain_eventfd(self.shared.eventfd.as_raw_fd());
                continue;
            }
            // `user_data` is the slot index we set; anything else is reported as an empty slot.
            self.complete(usize::try_from(ud).unwrap_or(usize::MAX), res);
        }
    }

    fn complete(&mut self, idx: usize, res: i32) {
        let Some(Some(op)) = self.slab.get_mut(idx) else {
            tracing::error!(idx, "io_uring completion for an empty slot");
            return;
        };
        // Finished: Ok(()) or the error; None: submit the rest.
        let outcome: Option<Result<(), IoError>> = if res < 0 {
            let errno = -res;
            if errno == libc::EINTR || errno == libc::EAGAIN {
                None
            } else {
                let op_name = match op.req.kind {
                    Kind::Read => "read",
                    Kind::Write => "write",
                    Kind::Fsync => "fsync",
                };
                Some(Err(IoError::os(
                    op_name,
                    std::io::Error::from_raw_os_error(errno),
                )))
            }
        } else {
            let n = res as usize;
            match op.req.kind {
                Kind::Fsync => Some(Ok(())),
                Kind::Read => {
                    op.done += n;
                    // An O_DIRECT read ends at its first short read (end of file: a retry
                    // would be unaligned).
                    if n == 0 || op.req.buf.is_direct() || op.done >= op.req.buf.total() {
                        Some(Ok(()))
                    } else {
                        None
                    }
                }
                Kind::Write => {
                    if n == 0 {
                        Some(Err(IoError::WriteZero {
                            offset: op.req.offset + op.done as u64,
                        }))
                    } else {
                        op.done += n;
                        if op.done >= op.req.buf.total() {
                            Some(Ok(()))
                        } else {
                            None
                        }
                    }
                }
            }
        };
        match outcome {
            None => self.push(idx),
            Some(r) => {
                let Some(op) = self.slab.get_mut(idx).and_then(Option::take) else {
                    return;
                };
                self.free.push(idx);
                self.live -= 1;
                self.counters.leave();
                self.counters.complete();
                let Op { req, done } = op;
                let r = match (r, req.kind) {
                    (Ok(()), Kind::Read) => Ok(req.buf.finish_read(done)),
                    (Ok(()), _) => Ok(Buf::Plain(Vec::new())),
                    (Err(e), _) => Err(e),
                };
                req.reply.send(r);
            }
        }
    }
}

/// Creates the ring on the calling thread, checks the opcodes we need and runs a NOP through
/// it. Prefers `SINGLE_ISSUER | DEFER_TASKRUN` (Linux ≥ 6.1): completions are then processed
/// when this thread waits, and the waiting thread is woken directly by them.
fn setup_ring(queue_depth: u32) -> std::io::Result<IoUring> {
    let entries = (queue_depth + 1).next_power_of_two();
    let mut ring: IoUring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
    {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries)?,
        Err(e) => return Err(e),
    };
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
    ] {
        if !probe.is_supported(code) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("kernel io_uring lacks IORING_OP_{name}"),
            ));
        }
    }
    // Requests the kernel cannot run inline (e.g. an O_DIRECT read that would block) go to its
    // io-wq worker threads, by default at most 4 per CPU: raise that to the queue depth so
    // every queued operation can be in flight. Best effort (kernel ≥ 5.15).
    let mut max = [queue_depth, 0];
    if let Err(e) = ring.submitter().register_iowq_max_workers(&mut max) {
        tracing::debug!(error = %e, "io_uring: cannot raise io-wq worker limit");
    }
    // A no-op round trip proves io_uring_enter is allowed too.
    // SAFETY: a NOP references no memory.
    unsafe {
        ring.submission()
            .push(&opcode::Nop::new().build().user_data(0))
            .map_err(|_| std::io::Error::other("submission queue full at start"))?;
    }
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    let nop = ring.completion().next().map(|c| c.result());
    if nop != Some(0) {
        return Err(std::io::Error::other(format!(
            "io_uring NOP failed: {nop:?}"
        )));
    }
    Ok(ring)
}

fn drain_eventfd(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 from a non-blocking eventfd we own.
    unsafe {
        libc::read(fd, (&mut v as *mut u64).cast(), std::mem::size_of::<u64>());
    }
}
