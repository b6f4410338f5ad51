//! AergoFS: a Haystack-style volume store (after Facebook's Haystack, OSDI 2010).
//!
//! Many small files ("needles") are appended to a few large volume files; an in-memory index
//! maps each key to its needle's offset and length, so a read is one positioned read. All file
//! I/O goes through [`aergo_os::io::IoService`] (io_uring, or positional std I/O when io_uring
//! is refused). Modules:
//! - [`needle`]: needle byte layout, encoding and verified decoding.
//! - [`fid`]: file ids `VOLUME,KEYCOOKIE`.
//! - [`limits`]: every limit and default, with their relations checked at compile time.
//! - [`index`]: the compact in-memory index (16 bytes per entry).
//! - [`volume`]: one volume: writes with group commit, reads, deletes, recovery, compaction.
//! - [`store`]: the volume manager over a data directory.
//! - [`upload`]: the memory budget of uploads in flight.
//! - [`http`]: the HTTP API served by `aergofs serve`.
//!
//! The on-disk format is documented in `fs/FORMAT.md`.

pub mod fid;
pub mod http;
pub mod index;
pub mod limits;
pub mod needle;
pub mod store;
pub mod upload;
pub mod volume;

pub use fid::Fid;

// Byte counts and positions of files and needles are u64 and become slice lengths and indexes:
// AergoFS is built for 64-bit targets only, where a usize holds every u64.
const _: () = assert!(usize::BITS >= u64::BITS);

/// A u64 byte count or position as a usize (lossless: see the assertion above).
#[allow(clippy::cast_possible_truncation)]
pub(crate) const fn usize_from(v: u64) -> usize {
    v as usize
}
pub use store::{Store, StoreConfig};
pub use volume::Durability;

/// Crash-test hook: when the environment variable `AERGOFS_FAILPOINT` equals `name`, the
/// process aborts on the spot (no destructors, no flushing), like a SIGKILL at this step.
pub fn failpoint(name: &str) {
    if std::env::var("AERGOFS_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("aergofs: failpoint {name}: aborting");
        std::process::abort();
    }
}
