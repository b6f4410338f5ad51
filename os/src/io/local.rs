//! Reads submitted on the caller's own thread, through a ring that thread owns.
//!
//! The shared ring thread ([`super::uring`]) costs every operation thread hand-offs: the
//! caller wakes the ring thread, the kernel wakes the ring thread again at completion, and the
//! ring thread wakes the caller. A raw `pread` costs one wake-up (the kernel wakes the reader).
//! On a loaded machine each extra wake-up waits for the scheduler, and the single ring thread
//! delays every operation in flight whenever it is not running — that, not the kernel work, was
//! the gap between AergoFS's cold reads and raw O_DIRECT reads. Reads are latency-bound, so
//! they are submitted from the calling thread instead:
//!
//! - **Blocking callers** use a private ring per thread (`SINGLE_ISSUER | DEFER_TASKRUN`, one
//!   operation at a time). The thread pushes the SQE and waits in the same `io_uring_enter`;
//!   the kernel wakes it directly when the read completes — one wake-up, as `pread`.
//! - **Async callers** (tokio) use a ring per runtime thread with an eventfd registered for
//!   completions. The future pushes its SQE and submits on the thread that polls it; reads the
//!   page cache can serve complete inside that `io_uring_enter` and are returned at once (the
//!   eventfd is muted around that submission, so they cost no wake-up at all). Reads that go to
//!   the device complete later: the kernel runs the completion on the submitting thread and
//!   signals the eventfd, which the runtime's I/O driver watches; one reaper task per ring
//!   drains every completion available and wakes the futures (completions are batched).
//!
//! Guarantees are those of the ring thread: a slot owns the buffer and an `Arc<File>` until
//! the kernel has completed the operation (a dropped future only marks its slot abandoned; a
//! ring torn down with operations in the kernel waits for them, and leaks them if the ring
//! fails), short reads are resubmitted for the rest, `EINTR`/`EAGAIN` completions retried.
//! Operations count against the service's queue depth like those of the ring thread.
//!
//! Either path declines a request (returns `None`) when it cannot take it: no ring on this
//! thread (set-up refused — logged once per thread at `debug`), no tokio runtime with an I/O
//! driver, the ring full, or the service's in-flight budget spent. The caller then goes
//! through the shared ring thread, which queues.

use super::buf::Buf;
use super::{Counters, IoError, Res};
use io_uring::{opcode, types, IoUring};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::fs::File;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Entries of a blocking caller's private ring (it holds one operation at a time).
const PRIVATE_ENTRIES: u32 = 4;
/// Entries of an async ring, and the most operations it holds at once (its completion queue
/// has twice as many entries, so it cannot overflow).
const ASYNC_ENTRIES: u32 = 256;

/// Why a ring operation must be given up: the ring itself failed while the kernel may still
/// hold the operation (its buffer and file have been leaked on purpose).
struct RingFailed(IoError);

fn read_entry(file: &File, buf: &mut Buf, done: usize, offset: u64) -> io_uring::squeue::Entry {
    let (ptr, len) = buf.at(done);
    opcode::Read::new(types::Fd(file.as_raw_fd()), ptr, super::sqe_len(len))
        .offset(offset + done as u64)
        .build()
}

/// What a read completion means for the operation: `None` = submit again (interrupted or
/// short), `Some(Ok(bytes))` = finished with `bytes` read in total, `Some(Err)` = failed.
fn read_outcome(
    res: i32,
    done: &mut usize,
    want: usize,
    direct: bool,
) -> Option<Result<(), IoError>> {
    if res < 0 {
        let errno = -res;
        if errno == libc::EINTR || errno == libc::EAGAIN {
            return None;
        }
        return Some(Err(IoError::os(
            "read",
            std::io::Error::from_raw_os_error(errno),
        )));
    }
    let n = res as usize;
    *done += n;
    // An O_DIRECT read ends at its first short read (end of file: a retry would be unaligned).
    if n == 0 || direct || *done >= want {
        Some(Ok(()))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking callers: a private ring per thread.

enum Private {
    Unset,
    Ready(Box<IoUring>),
    /// Set-up failed or the ring broke: this thread uses the ring thread.
    Off,
}

thread_local! {
    static PRIVATE: RefCell<Private> = const { RefCell::new(Private::Unset) };
}

fn private_ring() -> std::io::Result<IoUring> {
    match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(PRIVATE_ENTRIES)
    {
        Ok(r) => Ok(r),
        // Kernels before 6.1 lack DEFER_TASKRUN: a plain ring works the same, minus the
        // direct wake-up.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(PRIVATE_ENTRIES),
        Err(e) => Err(e),
    }
}

/// Reads on this thread's private ring and waits for the result; `None` when this thread has
/// no usable ring or the service's budget is spent (use the ring thread then).
pub(super) fn read_blocking(
    file: &Arc<File>,
    offset: u64,
    len: usize,
    direct: bool,
    counters: &Counters,
) -> Option<Res> {
    PRIVATE
        .try_with(|cell| {
            let mut st = cell.try_borrow_mut().ok()?;
            if matches!(*st, Private::Unset) {
                *st = match private_ring() {
                    Ok(r) => Private::Ready(Box::new(r)),
                    Err(e) => {
                        tracing::debug!(error = %e, "io: no private ring on this thread; reads use the ring thread");
                        Private::Off
                    }
                };
            }
            let Private::Ready(ring) = &mut *st else {
                return None;
            };
            if !counters.try_enter() {
                return None;
            }
            counters.submit_local();
            let r = run_blocking(ring, file, offset, len, direct);
            counters.leave();
            counters.complete();
            Some(match r {
                Ok(r) => r,
                Err(RingFailed(e)) => {
                    tracing::error!(error = %e, "io: private ring failed; this thread now uses the ring thread");
                    *st = Private::Off;
                    Err(e)
                }
            })
        })
        .ok()
        .flatten()
}

fn run_blocking(
    ring: &mut IoUring,
    file: &Arc<File>,
    offset: u64,
    len: usize,
    direct: bool,
) -> Result<Res, RingFailed> {
    let mut buf = match Buf::for_read(len, direct) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let mut done = 0usize;
    loop {
        let entry = read_entry(file, &mut buf, done, offset).user_data(0);
        // SAFETY: the entry points into `buf` and uses `file`'s descriptor; this function does
        // not return before the entry's completion has been reaped, or leaks both (below) when
        // the ring fails with the entry possibly in the kernel.
        if unsafe { ring.submission().push(&entry) }.is_err() {
            // Cannot happen: the ring holds no other entry. Nothing was queued.
            return Ok(Err(IoError::os(
                "read",
                std::io::Error::other("private ring full"),
            )));
        }
        let res = match wait_one(ring) {
            Ok(r) => r,
            Err(e) => {
                std::mem::forget(buf);
                std::mem::forget(Arc::clone(file));
                return Err(RingFailed(IoError::os("io_uring", e)));
            }
        };
        match read_outcome(res, &mut done, len, direct) {
            None => continue,
            Some(Ok(())) => return Ok(Ok(buf.finish_read(done))),
            Some(Err(e)) => return Ok(Err(e)),
        }
    }
}

/// Submits what is queued and waits for one completion.
fn wait_one(ring: &mut IoUring) -> std::io::Result<i32> {
    let mut transient = 0u32;
    loop {
        if let Some(c) = ring.completion().next() {
            return Ok(c.result());
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => {}
                // Kernel short of memory or completion queue busy: try again, for a while.
                Some(libc::EAGAIN) | Some(libc::EBUSY) if transient < 10_000 => {
                    transient += 1;
                    std::thread::yield_now();
                }
                _ => return Err(e),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Async callers: a ring per runtime thread, completions through an eventfd.

enum OpState {
    /// In the kernel (or about to be resubmitted); the waker of the future awaiting it.
    Running(Option<Waker>),
    /// Done; the future has not collected the result yet.
    Finished(Res),
    /// The future went away; the slot is freed when the kernel is done with it.
    Abandoned,
}

struct AsyncOp {
    file: Arc<File>,
    buf: Buf,
    offset: u64,
    len: usize,
    direct: bool,
    done: usize,
    counters: Arc<Counters>,
    /// Its entry is in the ring or the kernel: the buffer must stay.
    in_kernel: bool,
    state: OpState,
}

struct RingState {
    ring: IoUring,
    slab: Vec<Option<AsyncOp>>,
    free: Vec<usize>,
    /// Occupied slots.
    live: usize,
    /// Entries pushed whose completion has not been reaped.
    in_kernel: usize,
    /// A submit failed: entries wait in the submission queue.
    unsubmitted: bool,
    /// The owning thread is gone: the reaper stops once the ring is empty.
    owner_gone: bool,
    eventfd: RawFd,
    scratch: Vec<(u64, i32)>,
}

/// A ring owned by one runtime thread, reaped by one task.
pub(super) struct AsyncRing {
    state: Mutex<RingState>,
    // Declared after `state`: the ring is closed before its eventfd.
    eventfd: OwnedFd,
    reaper_alive: AtomicBool,
}

/// The calling thread's async ring, tied to the runtime it was made for.
struct LocalRing {
    runtime: tokio::runtime::Id,
    /// `None`: set-up failed for this runtime on this thread.
    ring: Option<Arc<AsyncRing>>,
}

impl Drop for LocalRing {
    fn drop(&mut self) {
        if let Some(r) = &self.ring {
            r.state.lock().owner_gone = true;
            signal(r.eventfd.as_raw_fd());
        }
    }
}

thread_local! {
    static ASYNC: RefCell<Option<LocalRing>> = const { RefCell::new(None) };
}

/// The calling thread's ring for the current tokio runtime, made on first use.
fn async_ring() -> Option<Arc<AsyncRing>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let id = handle.id();
    ASYNC
        .try_with(|cell| {
            let mut cur = cell.try_borrow_mut().ok()?;
            let usable = match &*cur {
                Some(l) if l.runtime == id => l
                    .ring
                    .as_ref()
                    .is_none_or(|r| r.reaper_alive.load(Ordering::Acquire)),
                _ => false,
            };
            if !usable {
                let ring = match AsyncRing::start(&handle) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::debug!(error = %e, "io: no async ring on this thread; reads use the ring thread");
                        None
                    }
                };
                *cur = Some(LocalRing { runtime: id, ring });
            }
            cur.as_ref()?.ring.clone()
        })
        .ok()
        .flatten()
}

/// The ring's eventfd as the runtime's I/O driver sees it; holding the ring keeps the
/// descriptor open for as long as it is registered.
struct EventFd(Arc<AsyncRing>);

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.eventfd.as_raw_fd()
    }
}

impl AsyncRing {
    fn start(handle: &tokio::runtime::Handle) -> std::io::Result<Arc<AsyncRing>> {
        // SAFETY: eventfd(2) returns a new descriptor or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh descriptor we own.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        // Not SINGLE_ISSUER: the reaper may resubmit from another thread (under the lock).
        // Not DEFER_TASKRUN: completions must be posted without the owner entering the ring.
        let ring = IoUring::new(ASYNC_ENTRIES)?;
        ring.submitter().register_eventfd(efd)?;
        let ring = Arc::new(AsyncRing {
            state: Mutex::new(RingState {
                ring,
                slab: Vec::new(),
                free: Vec::new(),
                live: 0,
                in_kernel: 0,
                unsubmitted: false,
                owner_gone: false,
                eventfd: efd,
                scratch: Vec::new(),
            }),
            eventfd,
            reaper_alive: AtomicBool::new(true),
        });
        let afd = {
            let _guard = handle.enter();
            let efd = EventFd(ring.clone());
            // `AsyncFd` panics when the runtime was built without its I/O driver; there is no
            // way to ask first. Such a runtime gets no ring (reads use the ring thread).
            let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: `EventFd` holds the ring, which owns the descriptor, so it stays open
                // and the same for as long as the registration lives.
                unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        efd,
                        tokio::io::Interest::READABLE,
                    )
                }
            }));
            match registered {
                Ok(Ok(afd)) => afd,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(std::io::Error::other("tokio runtime without an I/O driver")),
            }
        };
        handle.spawn(reaper(ring.clone(), afd));
        Ok(ring)
    }
}

/// Marks the reaper gone when its task ends or is dropped (runtime shutdown).
struct ReaperAlive(Arc<AsyncRing>);

impl Drop for ReaperAlive {
    fn drop(&mut self) {
        self.0.reaper_alive.store(false, Ordering::Release);
    }
}

async fn reaper(ring: Arc<AsyncRing>, afd: tokio::io::unix::AsyncFd<EventFd>) {
    let alive = ReaperAlive(ring);
    loop {
        let (exit, retry) = {
            let mut st = alive.0.state.lock();
            st.reap();
            (st.owner_gone && st.live == 0, st.unsubmitted)
        };
        if exit {
            break;
        }
        if retry {
            // A submit failed (kernel short of memory): try again soon.
            tokio::task::yield_now().await;
            continue;
        }
        match afd.readable().await {
            Ok(mut guard) => {
                // Drain first, then reap (top of the loop): a completion posted after the drain
                // signals the eventfd again.
                drain(afd.as_raw_fd());
                guard.clear_ready();
            }
            Err(e) => {
                tracing::warn!(error = %e, "io: async ring reaper stopped");
                break;
            }
        }
    }
    drop(afd);
    drop(alive);
}

impl RingState {
    fn insert(&mut self, op: AsyncOp) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slab.get_mut(i) {
                    *s = Some(op);
                }
                i
            }
            None => {
                self.slab.push(Some(op));
                self.slab.len() - 1
            }
        }
    }

    fn release(&mut self, idx: usize) -> Option<AsyncOp> {
        let op = self.slab.get_mut(idx)?.take()?;
        self.free.push(idx);
        self.live -= 1;
        Some(op)
    }

    /// Queues the (next) entry of slot `idx`; false if the submission queue is full.
    fn push(&mut self, idx: usize) -> bool {
        let Some(Some(op)) = self.slab.get_mut(idx) else {
            return false;
        };
        let entry = read_entry(&op.file, &mut op.buf, op.done, op.offset).user_data(idx as u64);
        // SAFETY: the entry points into the slot's buffer and uses the slot's file; the slot is
        // freed only after the entry's completion is reaped (`in_kernel`), and a ring torn down
        // earlier waits for the kernel or leaks the slots.
        let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        if pushed {
            op.in_kernel = true;
            self.in_kernel += 1;
        }
        pushed
    }

    /// Submits the queued entries from this thread and collects what completed meanwhile.
    /// Reads served from the page cache complete inside the submit; the eventfd is muted
    /// meanwhile so they do not wake the reaper (completions of other reads posted in that
    /// window are collected too).
    fn submit_now(&mut self) {
        self.ring.completion().disable_eventfd();
        self.submit();
        self.ring.completion().enable_eventfd();
        self.reap();
    }

    fn submit(&mut self) {
        loop {
            match self.ring.submit() {
                Ok(_) => {
                    self.unsubmitted = !self.ring.submission().is_empty();
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    if !self.unsubmitted {
                        tracing::debug!(error = %e, "io: async ring submit failed; retrying");
                    }
                    self.unsubmitted = true;
                }
            }
            break;
        }
        if self.unsubmitted {
            // The reaper retries.
            signal(self.eventfd);
        }
    }

    /// Handles every completion available; resubmits short or interrupted reads.
    fn reap(&mut self) {
        let mut done = std::mem::take(&mut self.scratch);
        done.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        let mut resubmit = false;
        for &(ud, res) in &done {
            // `user_data` is the slot index we set; anything else is reported as an empty slot.
            resubmit |= self.complete(usize::try_from(ud).unwrap_or(usize::MAX), res);
        }
        done.clear();
        self.scratch = done;
        if resubmit || self.unsubmitted {
            self.submit();
        }
    }

    /// Applies one completion; true if an entry was queued again.
    fn complete(&mut self, idx: usize, res: i32) -> bool {
        let outcome = {
            let Some(Some(op)) = self.slab.get_mut(idx) else {
                tracing::error!(idx, "io: async ring completion for an empty slot");
                return false;
            };
            op.in_kernel = false;
            read_outcome(res, &mut op.done, op.len, op.direct)
        };
        self.in_kernel -= 1;
        if outcome.is_none() && self.push(idx) {
            return true;
        }
        let Some(Some(op)) = self.slab.get_mut(idx) else {
            return false;
        };
        let r = match outcome {
            Some(Ok(())) => {
                Ok(std::mem::replace(&mut op.buf, Buf::Plain(Vec::new())).finish_read(op.done))
            }
            Some(Err(e)) => Err(e),
            // Cannot happen (the queue has room for every slot); fail the read, nothing of it
            // is in the kernel.
            None => Err(IoError::os(
                "read",
                std::io::Error::other("submission queue full"),
            )),
        };
        op.counters.leave();
        op.counters.complete();
        let abandoned = match std::mem::replace(&mut op.state, OpState::Abandoned) {
            OpState::Running(waker) => {
                op.state = OpState::Finished(r);
                if let Some(w) = waker {
                    w.wake();
                }
                false
            }
            OpState::Abandoned | OpState::Finished(_) => true,
        };
        if abandoned {
            drop(self.release(idx));
        }
        false
    }
}

impl Drop for RingState {
    fn drop(&mut self) {
        // Entries still in the kernel own their buffers: wait for them before freeing.
        let mut failures = 0u32;
        while self.in_kernel > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    failures += 1;
                    if failures >= 100 {
                        tracing::error!(error = %e, "io: async ring failed with reads in flight; leaking their buffers");
                        std::mem::forget(std::mem::take(&mut self.slab));
                        return;
                    }
                    std::thread::yield_now();
                }
            }
            self.reap();
        }
    }
}

/// An async read in flight on a caller-thread ring.
pub(super) struct LocalRead {
    ring: Arc<AsyncRing>,
    idx: usize,
    collected: bool,
}

/// Starts a read on the calling thread's async ring; `None` when it cannot take it (use the
/// ring thread then).
pub(super) fn start_read(
    file: &Arc<File>,
    offset: u64,
    len: usize,
    direct: bool,
    counters: &Arc<Counters>,
) -> Option<LocalRead> {
    let ring = async_ring()?;
    let buf = Buf::for_read(len, direct).ok()?;
    let idx = {
        let mut st = ring.state.lock();
        if st.live >= ASYNC_ENTRIES as usize || st.owner_gone || !counters.try_enter() {
            return None;
        }
        counters.submit_local();
        let idx = st.insert(AsyncOp {
            file: file.clone(),
            buf,
            offset,
            len,
            direct,
            done: 0,
            counters: counters.clone(),
            in_kernel: false,
            state: OpState::Running(None),
        });
        if !st.push(idx) {
            // Cannot happen (the queue has room for every slot); nothing is in the kernel.
            drop(st.release(idx));
            counters.leave();
            counters.complete();
            return None;
        }
        st.submit_now();
        idx
    };
    Some(LocalRead {
        ring,
        idx,
        collected: false,
    })
}

impl Future for LocalRead {
    type Output = Res;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Res> {
        let this = &mut *self;
        let mut st = this.ring.state.lock();
        let reaper_alive = this.ring.reaper_alive.load(Ordering::Acquire);
        if !reaper_alive {
            // Nobody else reaps this ring (its runtime is shutting down).
            st.reap();
        }
        let Some(Some(op)) = st.slab.get_mut(this.idx) else {
            this.collected = true;
            return Poll::Ready(Err(IoError::Shutdown));
        };
        match &mut op.state {
            OpState::Running(w) => {
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                if !reaper_alive {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            OpState::Finished(_) | OpState::Abandoned => {
                this.collected = true;
                match st.release(this.idx).map(|op| op.state) {
                    Some(OpState::Finished(r)) => Poll::Ready(r),
                    _ => Poll::Ready(Err(IoError::Shutdown)),
                }
            }
        }
    }
}

impl Drop for LocalRead {
    fn drop(&mut self) {
        if self.collected {
            return;
        }
        let mut st = self.ring.state.lock();
        let finished = match st.slab.get_mut(self.idx) {
            Some(Some(op)) => match op.state {
                OpState::Running(_) => {
                    op.state = OpState::Abandoned;
                    false
                }
                _ => true,
            },
            _ => false,
        };
        if finished {
            drop(st.release(self.idx));
        }
    }
}

fn signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd. EAGAIN (counter saturated) means
    // a wake-up is already pending, which is all we need.
    unsafe {
        libc::write(fd, (&one as *const u64).cast(), std::mem::size_of::<u64>());
    }
}

fn drain(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 from a non-blocking eventfd.
    unsafe {
        libc::read(fd, (&mut v as *mut u64).cast(), std::mem::size_of::<u64>());
    }
}
