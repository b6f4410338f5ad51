//! AergoFS's limits and defaults in one place, with the relations between them checked at
//! compile time.
//!
//! Every size bound, default and tuning constant of the crate lives here; the modules that
//! use one refer to it (a few are re-exported under their historical paths, e.g.
//! [`crate::needle::MAX_DATA_LEN`] or [`crate::volume::MAX_VOLUME_SIZE`]). Byte layouts
//! (magics, header and record lengths) stay with their codecs in [`crate::needle`] and
//! [`crate::volume`]; the assertions at the end of this module check that the limits fit
//! those layouts' fields. Changing a value here that breaks a relation fails the build.
//!
//! The HTTP listener's connection caps and timeouts are not here: they belong to
//! `aergo_os::config::HttpServerConfig` (`[fs.http]` in `aergo.toml`).

use crate::needle::{total_len, ALIGN, FOOTER_LEN, HEADER_LEN, MIN_NEEDLE_LEN};
use crate::volume::{IDX_HEADER_LEN, IDX_RECORD_LEN, IDX_TOMBSTONE, SB_LEN};
use std::time::Duration;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const GIB: u64 = 1 << 30;

// ---- Needles -------------------------------------------------------------------------

/// Longest file name stored with a needle, in bytes (its length is a `u8` header field).
pub const MAX_NAME_LEN: usize = u8::MAX as usize;
/// Longest MIME type stored with a needle, in bytes (its length is a `u8` header field).
pub const MAX_MIME_LEN: usize = u8::MAX as usize;
/// Largest data size of one needle (the index stores needle lengths below 2^31).
pub const MAX_DATA_LEN: usize = (1 << 31) - 1024;
/// Bytes a needle adds around its data at most: header, name and MIME type (255 bytes each),
/// footer and padding.
pub const MAX_OVERHEAD: usize = HEADER_LEN + MAX_NAME_LEN + MAX_MIME_LEN + FOOTER_LEN + ALIGN - 1;
/// On-disk length of the largest needle: [`MAX_DATA_LEN`] of data with the longest name and
/// MIME type.
pub const MAX_NEEDLE_LEN: usize = total_len(MAX_DATA_LEN, MAX_NAME_LEN, MAX_MIME_LEN);

// ---- Keys ----------------------------------------------------------------------------

/// Largest key a volume assigns (keys stay in the index's dense 32-bit slots); a volume
/// whose keys reach it assigns no more, and the store moves on to another volume.
pub const MAX_ASSIGNED_KEY: u64 = u32::MAX as u64;
/// Assignments remembered per volume until their first write (older ones are forgotten, and
/// a first write to a forgotten assignment is refused).
pub const MAX_PENDING: usize = 1 << 20;

// ---- Volumes and index files -----------------------------------------------------------

/// Largest volume size the 32-bit offsets (in 8-byte units) can address.
pub const MAX_VOLUME_SIZE: u64 = (u32::MAX as u64) * 8;
/// Default size limit of a volume's `.dat` file (`--volume-size`); a volume that reaches
/// its limit becomes read-only.
pub const DEFAULT_VOLUME_SIZE: u64 = 30 * GIB;
/// Smallest `--volume-size` accepted.
pub const MIN_VOLUME_SIZE: u64 = MIB as u64;
/// Pending `.idx` records (bytes) that make the flusher run before its interval.
pub const IDX_FLUSH_BYTES: usize = 256 * KIB;
/// How often pending `.idx` records are appended and fsynced.
pub const IDX_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Group-commit fsyncs allowed in flight at once.
pub const COMMIT_PIPELINE: usize = 2;
/// Index records at the end of `.idx` verified against the volume at start-up.
pub const RECOVERY_TAIL_CHECK: usize = 8;
/// Bytes the start-up scanner reads at once.
pub const RECOVERY_SCAN_WINDOW: u64 = 4 * MIB as u64;

// ---- Compaction ----------------------------------------------------------------------

/// Default garbage ratio above which a volume is compacted (`--garbage-threshold`).
pub const DEFAULT_GARBAGE_THRESHOLD: f64 = 0.3;
/// Volumes with less garbage than this many bytes are not compacted automatically.
pub const MIN_GARBAGE_BYTES: u64 = MIB as u64;
/// Default seconds between automatic compaction checks (`--compaction-interval`).
pub const DEFAULT_COMPACTION_INTERVAL_SECS: u64 = 60;
/// Default compaction copy rate in MiB/s (`--compaction-rate-mib`).
pub const DEFAULT_COMPACTION_RATE_MIB: u64 = 64;
/// Default compaction copy rate in bytes per second.
pub const DEFAULT_COMPACTION_RATE: u64 = DEFAULT_COMPACTION_RATE_MIB << 20;
/// Bytes of neighbouring needles compaction reads (and buffers before writing) at once.
pub const COPY_WINDOW: u64 = MIB as u64;
/// Rounds of replaying changed keys while writes continue, before the commit pauses them.
pub const REPLAY_ROUNDS: usize = 8;
/// Fewer changed keys than this end the replay rounds early (the commit replays them).
pub const REPLAY_SMALL: usize = 64;

// ---- HTTP (what `aergofs` owns; the listener's caps live in aergo_os) -----------------

/// Default listen address (`--addr`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7848";
/// Default largest upload in bytes (`--max-upload`).
pub const DEFAULT_MAX_UPLOAD: usize = 256 * MIB;
/// Maximal uploads the default upload memory budget holds at once.
pub const DEFAULT_UPLOADS_IN_MEMORY: usize = 2;
/// Default upload memory budget: room for [`DEFAULT_UPLOADS_IN_MEMORY`] uploads of the
/// default limit (`--upload-memory`; with another `--max-upload`, the same count of those).
pub const DEFAULT_UPLOAD_MEMORY: usize =
    DEFAULT_UPLOADS_IN_MEMORY * (DEFAULT_MAX_UPLOAD + MAX_OVERHEAD);
/// Default milliseconds an upload waits for upload memory before `503` (`--upload-wait-ms`).
pub const DEFAULT_UPLOAD_WAIT_MS: u64 = 10_000;
/// Default time an upload waits for upload memory before `503`.
pub const DEFAULT_UPLOAD_WAIT: Duration = Duration::from_millis(DEFAULT_UPLOAD_WAIT_MS);
/// Smallest step an upload without (or with a wrong) `Content-Length` grows its buffer by.
pub const UPLOAD_MIN_GROWTH: usize = 64 * KIB;
/// `Retry-After` (seconds) of a `503` answer.
pub const RETRY_AFTER_SECS: &str = "1";
/// Largest `/metrics` body the edge middleware extends with the connection counters.
pub const METRICS_BODY_LIMIT: usize = 4 * MIB;
/// Random bytes of a generated write token (hex-encoded in `fs.token`).
pub const TOKEN_BYTES: usize = 24;

// ---- Relations, checked at compile time ------------------------------------------------

// Needle fields: data size is a u32, name and MIME lengths are u8, and a needle's total
// length leaves bit 31 free (the `.idx` tombstone bit and the in-memory index's deleted bit).
const _: () = assert!(MAX_DATA_LEN <= u32::MAX as usize);
const _: () = assert!(MAX_NAME_LEN <= u8::MAX as usize && MAX_MIME_LEN <= u8::MAX as usize);
const _: () = assert!(MAX_NEEDLE_LEN <= MAX_DATA_LEN + MAX_OVERHEAD);
const _: () = assert!(MAX_NEEDLE_LEN < IDX_TOMBSTONE as usize);
const _: () = assert!(IDX_TOMBSTONE == crate::index::DELETED);
const _: () = assert!(MIN_NEEDLE_LEN == total_len(0, 0, 0));
// Uploads: the largest upload is a needle; the default budget holds at least one.
const _: () = assert!(DEFAULT_MAX_UPLOAD <= MAX_DATA_LEN);
const _: () = assert!(DEFAULT_UPLOAD_MEMORY >= DEFAULT_MAX_UPLOAD + MAX_OVERHEAD);
const _: () = assert!(DEFAULT_UPLOAD_MEMORY <= tokio::sync::Semaphore::MAX_PERMITS);
const _: () = assert!(UPLOAD_MIN_GROWTH <= DEFAULT_MAX_UPLOAD);
// Volumes: the largest needle fits a volume of the default size; sizes are ordered and
// addressable with 32-bit offsets in 8-byte units; the superblock keeps needles aligned.
const _: () = assert!(MAX_VOLUME_SIZE == u32::MAX as u64 * ALIGN as u64);
const _: () = assert!(SB_LEN + MAX_NEEDLE_LEN as u64 <= DEFAULT_VOLUME_SIZE);
const _: () = assert!(MIN_VOLUME_SIZE <= DEFAULT_VOLUME_SIZE);
const _: () = assert!(DEFAULT_VOLUME_SIZE <= MAX_VOLUME_SIZE);
const _: () = assert!(MIN_VOLUME_SIZE >= SB_LEN + MIN_NEEDLE_LEN as u64);
const _: () = assert!(SB_LEN.is_multiple_of(ALIGN as u64));
// `.idx` layout: header = magic (8) + volume id (4) + revision (4); record = key (8) +
// offset/8 (4) + length (4); keys fit the index's dense 32-bit slots.
const _: () = assert!(IDX_HEADER_LEN == 8 + 4 + 4);
const _: () = assert!(IDX_RECORD_LEN == 8 + 4 + 4);
const _: () = assert!(MAX_ASSIGNED_KEY <= u32::MAX as u64);
const _: () = assert!(MAX_PENDING >= 1);
// Pipelines and windows are non-empty; a scan window holds a needle header.
const _: () = assert!(COMMIT_PIPELINE >= 1);
const _: () = assert!(RECOVERY_SCAN_WINDOW >= HEADER_LEN as u64);
const _: () = assert!(COPY_WINDOW >= MIN_NEEDLE_LEN as u64);
const _: () = assert!(REPLAY_ROUNDS >= 1);
// Compaction threshold is a ratio.
const _: () = assert!(DEFAULT_GARBAGE_THRESHOLD > 0.0 && DEFAULT_GARBAGE_THRESHOLD <= 1.0);
