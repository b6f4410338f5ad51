//! I/O buffers: plain byte vectors, and [`DirectBuf`], a `DIRECT_ALIGN`-aligned allocation for
//! O_DIRECT reads.
//!
//! A `DirectBuf` is allocated with the alignment O_DIRECT needs instead of over-allocating a
//! `Vec` and skipping to an aligned address, so a direct read needs no zeroing of the buffer
//! (the kernel fills it; only the bytes it reported are ever exposed) and no move of the data
//! to the start of a `Vec` afterwards. Buffers of the common sizes are recycled through a small
//! per-thread pool.

use super::IoError;
use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;

/// Alignment of O_DIRECT buffers, offsets and lengths.
pub const DIRECT_ALIGN: usize = 4096;

/// Pooled buffer capacities: up to this many bytes (the window of a small needle is one or two
/// pages).
const POOL_MAX_CAP: usize = 4 * DIRECT_ALIGN;
/// Buffers kept per thread.
const POOL_LEN: usize = 32;

/// An aligned allocation, freed on drop.
struct Alloc {
    ptr: NonNull<u8>,
    cap: usize,
}

impl Drop for Alloc {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::from_size_align(self.cap, DIRECT_ALIGN) {
            // SAFETY: allocated with this very layout in `DirectBuf::with_capacity`.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

thread_local! {
    /// Free buffers of this thread (freed with the thread).
    static POOL: RefCell<Vec<Alloc>> = const { RefCell::new(Vec::new()) };
}

/// The bytes of an O_DIRECT read, in a buffer aligned to [`DIRECT_ALIGN`]. Dereferences to
/// the bytes read.
pub struct DirectBuf {
    ptr: NonNull<u8>,
    cap: usize,
    /// Bytes written by the kernel (the only ones ever exposed).
    len: usize,
}

// SAFETY: DirectBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for DirectBuf {}
// SAFETY: shared access only reads the initialised prefix.
unsafe impl Sync for DirectBuf {}

impl DirectBuf {
    /// An empty buffer with room for `cap` bytes (`cap` > 0, a multiple of `DIRECT_ALIGN`).
    pub(super) fn with_capacity(cap: usize) -> Result<DirectBuf, IoError> {
        if cap <= POOL_MAX_CAP {
            let reused = POOL
                .try_with(|p| {
                    let mut p = p.try_borrow_mut().ok()?;
                    let i = p.iter().rposition(|a| a.cap == cap)?;
                    Some(p.swap_remove(i))
                })
                .ok()
                .flatten();
            if let Some(a) = reused {
                let a = std::mem::ManuallyDrop::new(a);
                return Ok(DirectBuf {
                    ptr: a.ptr,
                    cap: a.cap,
                    len: 0,
                });
            }
        }
        let layout = Layout::from_size_align(cap.max(1), DIRECT_ALIGN)
            .map_err(|_| IoError::TooLarge(cap))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(raw)
            .ok_or_else(|| IoError::os("read", std::io::Error::from_raw_os_error(libc::ENOMEM)))?;
        Ok(DirectBuf {
            ptr,
            cap: layout.size(),
            len: 0,
        })
    }

    /// The writable space after the first `done` bytes (pointer and length), for the kernel.
    pub(super) fn spare(&mut self, done: usize) -> (*mut u8, usize) {
        let done = done.min(self.cap);
        // SAFETY: `done <= cap`, so the pointer stays within (or one past) the allocation.
        (unsafe { self.ptr.as_ptr().add(done) }, self.cap - done)
    }

    /// Records that the kernel has written the first `len` bytes.
    ///
    /// # Safety
    /// The first `len` bytes (`len <= cap`) must have been written.
    pub(super) unsafe fn set_len(&mut self, len: usize) {
        self.len = len.min(self.cap);
    }

    /// The bytes read.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by the kernel (`set_len`), and the
        // allocation lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::Deref for DirectBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for DirectBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for DirectBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

impl Drop for DirectBuf {
    fn drop(&mut self) {
        let a = Alloc {
            ptr: self.ptr,
            cap: self.cap,
        };
        if a.cap > POOL_MAX_CAP {
            return; // `a` frees the memory
        }
        let _ = POOL.try_with(move |p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                if p.len() < POOL_LEN {
                    p.push(a);
                }
            }
            // Otherwise `a` is dropped here, freeing the memory.
        });
    }
}

/// A request buffer: the data of a write, or the destination of a read.
pub(super) enum Buf {
    /// A byte vector (writes; reads through the page cache).
    Plain(Vec<u8>),
    /// An aligned buffer (O_DIRECT reads).
    Direct(DirectBuf),
}

impl Buf {
    /// A buffer for a read of `len` bytes (aligned for O_DIRECT when `direct`).
    pub(super) fn for_read(len: usize, direct: bool) -> Result<Buf, IoError> {
        if direct {
            Ok(Buf::Direct(DirectBuf::with_capacity(len)?))
        } else {
            Ok(Buf::Plain(vec![0u8; len]))
        }
    }

    /// Whether this is an O_DIRECT read buffer (a short read then ends the operation: a retry
    /// would be unaligned).
    pub(super) fn is_direct(&self) -> bool {
        matches!(self, Buf::Direct(_))
    }

    /// Total bytes of the buffer (read: requested; write: to write).
    pub(super) fn total(&self) -> usize {
        match self {
            Buf::Plain(v) => v.len(),
            Buf::Direct(d) => d.cap,
        }
    }

    /// Where the kernel reads or writes next, after the first `done` bytes.
    pub(super) fn at(&mut self, done: usize) -> (*mut u8, usize) {
        match self {
            Buf::Plain(v) => {
                let rest = v.get_mut(done..).unwrap_or_default();
                (rest.as_mut_ptr(), rest.len())
            }
            Buf::Direct(d) => d.spare(done),
        }
    }

    /// The result of a read of which the kernel filled the first `done` bytes.
    pub(super) fn finish_read(mut self, done: usize) -> Buf {
        match &mut self {
            Buf::Plain(v) => v.truncate(done),
            // SAFETY: the kernel reported `done` bytes written at the start of the buffer.
            Buf::Direct(d) => unsafe { d.set_len(done) },
        }
        self
    }

    /// The bytes as a vector (a copy for a direct buffer).
    pub(super) fn into_vec(self) -> Vec<u8> {
        match self {
            Buf::Plain(v) => v,
            Buf::Direct(d) => d.as_slice().to_vec(),
        }
    }

    /// The bytes as an aligned buffer (a copy for a plain one).
    pub(super) fn into_direct(self) -> Result<DirectBuf, IoError> {
        match self {
            Buf::Direct(d) => Ok(d),
            Buf::Plain(v) => {
                let cap = v.len().div_ceil(DIRECT_ALIGN).max(1) * DIRECT_ALIGN;
                let mut d = DirectBuf::with_capacity(cap)?;
                let (ptr, _) = d.spare(0);
                // SAFETY: `cap >= v.len()`; the regions do not overlap (fresh allocation).
                unsafe {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), ptr, v.len());
                    d.set_len(v.len());
                }
                Ok(d)
            }
        }
    }
}

impl From<Vec<u8>> for Buf {
    fn from(v: Vec<u8>) -> Buf {
        Buf::Plain(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_buffers_are_aligned_recycled_and_converted() {
        let mut seen = Vec::new();
        for cap in [4096, 8192, 4096, 32768, 8192] {
            let mut b = DirectBuf::with_capacity(cap).unwrap();
            assert_eq!(b.as_ptr() as usize % DIRECT_ALIGN, 0);
            assert!(b.is_empty());
            let (ptr, room) = b.spare(0);
            assert_eq!(room, cap);
            // SAFETY: writes within the buffer, then records those bytes as written.
            unsafe {
                std::ptr::write_bytes(ptr, 7, 100);
                b.set_len(100);
            }
            assert_eq!(&b[..], &[7u8; 100][..]);
            seen.push(b.as_ptr() as usize);
        }
        // A freed 4 KiB buffer comes back from the pool.
        assert_eq!(seen[0], seen[2]);
        let plain = Buf::Plain(vec![1, 2, 3]).into_direct().unwrap();
        assert_eq!(&plain[..], &[1, 2, 3]);
        assert_eq!(plain.as_ptr() as usize % DIRECT_ALIGN, 0);
        let mut d = Buf::for_read(8192, true).unwrap();
        assert!(d.is_direct());
        assert_eq!(d.total(), 8192);
        let (first, _) = d.at(0);
        let (second, room) = d.at(4096);
        assert_eq!(room, 4096);
        // The kernel filled the first page and 10 bytes of the second: only those are exposed.
        // SAFETY: writes within the buffer.
        unsafe {
            std::ptr::write_bytes(first, 5, 4096);
            std::ptr::write_bytes(second, 9, 10);
        }
        let v = d.finish_read(4106).into_vec();
        assert_eq!(v.len(), 4106);
        assert_eq!(v[4095], 5);
        assert_eq!(v[4096..], [9u8; 10]);
    }
}
